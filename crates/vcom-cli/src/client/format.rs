//! How messages look: one human line, or one JSON object for scripts.
//!
//! `listen --json` and `history --json` print the same object shape, documented on
//! [`message_json`]. Times are UTC here, the same on every machine; only `vcom chat`
//! shows local time.

use base64::Engine;
use serde_json::{Value, json};
use vcom_client::{
    DeliveryState, Direction, Group, GroupId, HistoryEntry, Message, MessageKind, Timestamp, UserId,
};

/// The fields of a message that the program shows, from an event (always incoming) or
/// the history (either direction) alike.
pub(crate) struct Shown<'a> {
    pub(crate) direction: Direction,
    pub(crate) sender: &'a UserId,
    /// The other user of a direct message: its sender if incoming, its recipient if
    /// outgoing; `None` for a group message.
    pub(crate) peer: Option<&'a UserId>,
    pub(crate) group: Option<GroupId>,
    /// The group's name, where this device knows it (client-side groups, extended
    /// mode); see [`Shown::named`].
    pub(crate) group_name: Option<&'a str>,
    pub(crate) sent_at: Timestamp,
    pub(crate) kind: MessageKind,
    pub(crate) data: &'a [u8],
    pub(crate) read: bool,
    pub(crate) history_id: i64,
    /// What became of an outgoing message; `None` for an incoming one.
    pub(crate) delivery: Option<DeliveryState>,
}

impl<'a> Shown<'a> {
    /// The same message with its group's name, looked up in `groups` (what the profile
    /// or the connection knows); a group not among them keeps its number alone.
    pub(crate) fn named(mut self, groups: &'a [Group]) -> Self {
        if let Some(id) = self.group {
            self.group_name = groups.iter().find(|g| g.id == id).map(|g| g.name.as_str());
        }
        self
    }
}

impl<'a> From<&'a Message> for Shown<'a> {
    fn from(m: &'a Message) -> Self {
        Shown {
            direction: Direction::Incoming,
            sender: &m.sender,
            peer: m.group.is_none().then_some(&m.sender),
            group: m.group,
            group_name: None,
            sent_at: m.sent_at,
            kind: m.kind,
            data: &m.data,
            read: m.read,
            history_id: m.history_id,
            delivery: None,
        }
    }
}

impl<'a> From<&'a HistoryEntry> for Shown<'a> {
    fn from(e: &'a HistoryEntry) -> Self {
        Shown {
            direction: e.direction,
            sender: &e.sender,
            peer: e.peer.as_ref(),
            group: e.group,
            group_name: None,
            sent_at: e.sent_at,
            kind: e.kind,
            data: &e.data,
            read: e.read,
            history_id: e.id,
            delivery: e.delivery,
        }
    }
}

/// `"in"` or `"out"`: a direction as scripts see it.
pub(crate) fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Incoming => "in",
        Direction::Outgoing => "out",
    }
}

/// `"pending"`, `"stored"`, `"refused"` or `"unconfirmed"`: a delivery state as
/// scripts see it.
pub(crate) fn delivery_name(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "pending",
        DeliveryState::Stored => "stored",
        DeliveryState::Refused(_) => "refused",
        DeliveryState::Unconfirmed => "unconfirmed",
    }
}

/// The mark after a sent message for people: `pending …`, `✓ stored`,
/// `✗ refused: no such user` or `unconfirmed` (a server that does not confirm).
pub(crate) fn delivery_mark(state: DeliveryState) -> String {
    match state {
        DeliveryState::Pending => "pending …".to_owned(),
        DeliveryState::Stored => "✓ stored".to_owned(),
        DeliveryState::Refused(outcome) => format!("✗ refused: {outcome}"),
        DeliveryState::Unconfirmed => "unconfirmed".to_owned(),
    }
}

/// `2024-05-01 12:00:03 UTC` for a protocol timestamp.
pub(crate) fn utc(ts: Timestamp) -> String {
    let t = ts.utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Text from other users made safe for a terminal: control characters (escape
/// sequences that retitle, clear or move the cursor, newlines that fake whole lines)
/// and the invisible direction and width marks that make text read otherwise than it
/// is are shown escaped (`\u{1b}`, `\n`, `\u{202e}`), everything else as is.
pub(crate) fn printable(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    if !text.chars().any(hidden) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The body for people: the text (made [`printable`]), or a note for an image.
pub(crate) fn body(kind: MessageKind, data: &[u8]) -> String {
    match kind {
        MessageKind::Text => printable(&String::from_utf8_lossy(data)),
        MessageKind::Image => format!("[image, {}]", size(data.len() as u64)),
    }
}

/// `[2024-05-01 12:00:03 UTC] bob: hello` or `[...] bob in ops (group 3): hello` (`group 3`
/// alone where the name is not known) for a
/// received message; `[...] alice -> bob: hello [✓ stored]` or
/// `[...] alice -> group 3: hello [pending …]` for one this device sent (with its
/// [`delivery_mark`]), so both sides of a conversation read apart at a glance.
pub(crate) fn message_line(m: &Shown<'_>) -> String {
    let line = message_text(m);
    match m.delivery {
        Some(state) => format!("{line} [{}]", delivery_mark(state)),
        None => line,
    }
}

fn message_text(m: &Shown<'_>) -> String {
    let at = utc(m.sent_at);
    let body = body(m.kind, m.data);
    let sender = printable(m.sender.as_str());
    let peer = m.peer.map(|p| printable(p.as_str()));
    let group = m.group.map(|id| match m.group_name {
        Some(name) => format!("{} (group {id})", printable(name)),
        None => format!("group {id}"),
    });
    match (m.direction, group, peer) {
        (Direction::Outgoing, Some(group), _) => format!("[{at}] {sender} -> {group}: {body}"),
        (Direction::Outgoing, None, Some(to)) => format!("[{at}] {sender} -> {to}: {body}"),
        (_, Some(group), _) => format!("[{at}] {sender} in {group}: {body}"),
        (_, None, _) => format!("[{at}] {sender}: {body}"),
    }
}

/// One message as a JSON object:
/// `{"type": "message" | "group_message", "direction": "in" | "out", "sender": "bob",
///   "peer": "bob" | null, "group": 3 | null, "group_name": "ops" | null,
///   "sent_at": <ms since 1970>,
///   "kind": "text" | "image", "text": "..." (text) or "image_base64": "..." (image),
///   "read": false, "history_id": 12, "delivery": null | "pending" | "stored" | "refused"
///   | "unconfirmed"}`, and `"refusal": "no such user"` (why) when refused.
///
/// `peer` is the other user of a direct message: the sender of an incoming one, the
/// recipient of an outgoing one; `null` for a group message. `delivery` is what became
/// of an outgoing message, `null` for an incoming one.
pub(crate) fn message_json(m: &Shown<'_>) -> Value {
    let mut object = json!({
        "type": if m.group.is_some() { "group_message" } else { "message" },
        "direction": direction_name(m.direction),
        "sender": m.sender.as_str(),
        "peer": m.peer.map(UserId::as_str),
        "group": m.group.map(GroupId::get),
        "group_name": m.group_name,
        "sent_at": m.sent_at.0,
        "read": m.read,
        "history_id": m.history_id,
        "delivery": m.delivery.map(delivery_name),
    });
    if let Value::Object(fields) = &mut object {
        if let Some(DeliveryState::Refused(outcome)) = m.delivery {
            fields.insert("refusal".into(), outcome.to_string().into());
        }
        match m.kind {
            MessageKind::Text => {
                fields.insert("kind".into(), "text".into());
                fields.insert(
                    "text".into(),
                    String::from_utf8_lossy(m.data).into_owned().into(),
                );
            }
            MessageKind::Image => {
                fields.insert("kind".into(), "image".into());
                fields.insert(
                    "image_base64".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(m.data)
                        .into(),
                );
            }
        }
    }
    object
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_shown_as_utc_dates() {
        assert_eq!(utc(Timestamp(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(Timestamp(1_714_564_803_000)), "2024-05-01 12:00:03 UTC");
        assert_eq!(utc(Timestamp(951_782_400_000)), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(Timestamp(-1000)), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn an_image_becomes_base64_in_json_and_a_note_for_people() {
        let bob = UserId::new("bob").unwrap_or_else(|e| panic!("{e}"));
        let m = Shown {
            direction: Direction::Incoming,
            sender: &bob,
            peer: None,
            group: Some(GroupId(3)),
            group_name: None,
            sent_at: Timestamp(1000),
            kind: MessageKind::Image,
            data: &[0, 1, 2],
            read: true,
            history_id: 9,
            delivery: None,
        };
        let v = message_json(&m);
        assert_eq!(v["type"], "group_message");
        assert_eq!(v["direction"], "in");
        assert_eq!(v["peer"], Value::Null);
        assert_eq!(v["group"], 3);
        assert_eq!(v["image_base64"], "AAEC");
        assert_eq!(v["read"], true);
        assert!(v.get("text").is_none());
        assert_eq!(
            message_line(&m),
            "[1970-01-01 00:00:01 UTC] bob in group 3: [image, 3 B]"
        );
    }

    #[test]
    fn a_group_message_shows_the_groups_name_where_it_is_known() {
        let bob = UserId::new("bob").unwrap_or_else(|e| panic!("{e}"));
        let groups = [Group {
            id: GroupId(3),
            name: "ops\u{7}".into(),
            owner: Some(bob.clone()),
            members: vec![bob.clone()],
        }];
        let in_group = |id| Shown {
            direction: Direction::Incoming,
            sender: &bob,
            peer: None,
            group: Some(GroupId(id)),
            group_name: None,
            sent_at: Timestamp(1000),
            kind: MessageKind::Text,
            data: b"deploy done",
            read: false,
            history_id: 1,
            delivery: None,
        };
        let known = in_group(3).named(&groups);
        // The name is shown as printable text: a control character cannot ring a bell.
        assert_eq!(
            message_line(&known),
            "[1970-01-01 00:00:01 UTC] bob in ops\\u{7} (group 3): deploy done"
        );
        assert_eq!(message_json(&known)["group_name"], "ops\u{7}");
        let unknown = in_group(4).named(&groups);
        assert_eq!(
            message_line(&unknown),
            "[1970-01-01 00:00:01 UTC] bob in group 4: deploy done"
        );
        assert_eq!(message_json(&unknown)["group_name"], Value::Null);
    }

    #[test]
    fn a_sent_message_names_its_recipient_and_is_out_in_json() {
        let alice = UserId::new("alice").unwrap_or_else(|e| panic!("{e}"));
        let bob = UserId::new("bob").unwrap_or_else(|e| panic!("{e}"));
        let direct = Shown {
            direction: Direction::Outgoing,
            sender: &alice,
            peer: Some(&bob),
            group: None,
            group_name: None,
            sent_at: Timestamp(1000),
            kind: MessageKind::Text,
            data: b"hi bob",
            read: true,
            history_id: 4,
            delivery: Some(DeliveryState::Stored),
        };
        assert_eq!(
            message_line(&direct),
            "[1970-01-01 00:00:01 UTC] alice -> bob: hi bob [✓ stored]"
        );
        let v = message_json(&direct);
        assert_eq!(v["direction"], "out");
        assert_eq!(v["sender"], "alice");
        assert_eq!(v["peer"], "bob");
        assert_eq!(v["type"], "message");
        assert_eq!(v["delivery"], "stored");
        let group = Shown {
            peer: None,
            group: Some(GroupId(3)),
            group_name: None,
            delivery: Some(DeliveryState::Refused(vcom_client::SendOutcome::NotAMember)),
            ..direct
        };
        assert_eq!(
            message_line(&group),
            "[1970-01-01 00:00:01 UTC] alice -> group 3: hi bob \
             [✗ refused: no such group, or not a member of it (outcome 2)]"
        );
        let v = message_json(&group);
        assert_eq!(v["delivery"], "refused");
        assert_eq!(
            v["refusal"],
            "no such group, or not a member of it (outcome 2)"
        );
    }

    #[test]
    fn a_received_direct_message_keeps_its_short_line_and_is_in_in_json() {
        let bob = UserId::new("bob").unwrap_or_else(|e| panic!("{e}"));
        let m = Shown {
            direction: Direction::Incoming,
            sender: &bob,
            peer: Some(&bob),
            group: None,
            group_name: None,
            sent_at: Timestamp(1000),
            kind: MessageKind::Text,
            data: b"hi alice",
            read: false,
            history_id: 5,
            delivery: None,
        };
        assert_eq!(message_line(&m), "[1970-01-01 00:00:01 UTC] bob: hi alice");
        assert_eq!(message_json(&m)["direction"], "in");
        assert_eq!(message_json(&m)["delivery"], Value::Null);
        assert_eq!(message_json(&m)["peer"], "bob");
    }

    #[test]
    fn control_and_direction_characters_from_others_are_shown_escaped() {
        assert_eq!(printable("hello bob"), "hello bob");
        assert_eq!(printable("grüße 👋"), "grüße 👋");
        assert_eq!(
            printable("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(printable("a\n[x] fake line"), "a\\n[x] fake line");
        assert_eq!(printable("evil\u{202e}gnp.exe"), "evil\\u{202e}gnp.exe");
        assert_eq!(printable("zero\u{200b}width"), "zero\\u{200b}width");
    }
}
