//! How messages look: one human line, or one JSON object for scripts.
//!
//! `listen --json` and `history --json` print the same object shape, documented on
//! [`message_json`]. Times are UTC: the program has no time-zone database.

use base64::Engine;
use serde_json::{Value, json};
use vcom_client::{Direction, GroupId, HistoryEntry, Message, MessageKind, Timestamp, UserId};

/// The fields of a message that the program shows, from an event (always incoming) or
/// the history (either direction) alike.
pub(crate) struct Shown<'a> {
    pub(crate) direction: Direction,
    pub(crate) sender: &'a UserId,
    /// The other user of a direct message: its sender if incoming, its recipient if
    /// outgoing; `None` for a group message.
    pub(crate) peer: Option<&'a UserId>,
    pub(crate) group: Option<GroupId>,
    pub(crate) sent_at: Timestamp,
    pub(crate) kind: MessageKind,
    pub(crate) data: &'a [u8],
    pub(crate) read: bool,
    pub(crate) history_id: i64,
}

impl<'a> From<&'a Message> for Shown<'a> {
    fn from(m: &'a Message) -> Self {
        Shown {
            direction: Direction::Incoming,
            sender: &m.sender,
            peer: m.group.is_none().then_some(&m.sender),
            group: m.group,
            sent_at: m.sent_at,
            kind: m.kind,
            data: &m.data,
            read: m.read,
            history_id: m.history_id,
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
            sent_at: e.sent_at,
            kind: e.kind,
            data: &e.data,
            read: e.read,
            history_id: e.id,
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

/// `2024-05-01 12:00:03 UTC` for a protocol timestamp.
pub(crate) fn utc(ts: Timestamp) -> String {
    let t = ts.utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `12:00` (UTC) for a protocol timestamp: the chat view's short form.
pub(crate) fn clock(ts: Timestamp) -> String {
    let t = ts.utc();
    format!("{:02}:{:02}", t.hour, t.minute)
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

/// `[2024-05-01 12:00:03 UTC] bob: hello` or `[...] bob in group 3: hello` for a
/// received message; `[...] alice -> bob: hello` or `[...] alice -> group 3: hello` for
/// one this device sent, so both sides of a conversation read apart at a glance.
pub(crate) fn message_line(m: &Shown<'_>) -> String {
    let at = utc(m.sent_at);
    let body = body(m.kind, m.data);
    let sender = printable(m.sender.as_str());
    let peer = m.peer.map(|p| printable(p.as_str()));
    match (m.direction, m.group, peer) {
        (Direction::Outgoing, Some(group), _) => {
            format!("[{at}] {sender} -> group {group}: {body}")
        }
        (Direction::Outgoing, None, Some(to)) => format!("[{at}] {sender} -> {to}: {body}"),
        (_, Some(group), _) => format!("[{at}] {sender} in group {group}: {body}"),
        (_, None, _) => format!("[{at}] {sender}: {body}"),
    }
}

/// One message as a JSON object:
/// `{"type": "message" | "group_message", "direction": "in" | "out", "sender": "bob",
///   "peer": "bob" | null, "group": 3 | null, "sent_at": <ms since 1970>,
///   "kind": "text" | "image", "text": "..." (text) or "image_base64": "..." (image),
///   "read": false, "history_id": 12}`.
///
/// `peer` is the other user of a direct message: the sender of an incoming one, the
/// recipient of an outgoing one; `null` for a group message.
pub(crate) fn message_json(m: &Shown<'_>) -> Value {
    let mut object = json!({
        "type": if m.group.is_some() { "group_message" } else { "message" },
        "direction": direction_name(m.direction),
        "sender": m.sender.as_str(),
        "peer": m.peer.map(UserId::as_str),
        "group": m.group.map(GroupId::get),
        "sent_at": m.sent_at.0,
        "read": m.read,
        "history_id": m.history_id,
    });
    if let Value::Object(fields) = &mut object {
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
        assert_eq!(clock(Timestamp(1_714_564_803_000)), "12:00");
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
            sent_at: Timestamp(1000),
            kind: MessageKind::Image,
            data: &[0, 1, 2],
            read: true,
            history_id: 9,
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
    fn a_sent_message_names_its_recipient_and_is_out_in_json() {
        let alice = UserId::new("alice").unwrap_or_else(|e| panic!("{e}"));
        let bob = UserId::new("bob").unwrap_or_else(|e| panic!("{e}"));
        let direct = Shown {
            direction: Direction::Outgoing,
            sender: &alice,
            peer: Some(&bob),
            group: None,
            sent_at: Timestamp(1000),
            kind: MessageKind::Text,
            data: b"hi bob",
            read: true,
            history_id: 4,
        };
        assert_eq!(
            message_line(&direct),
            "[1970-01-01 00:00:01 UTC] alice -> bob: hi bob"
        );
        let v = message_json(&direct);
        assert_eq!(v["direction"], "out");
        assert_eq!(v["sender"], "alice");
        assert_eq!(v["peer"], "bob");
        assert_eq!(v["type"], "message");
        let group = Shown {
            peer: None,
            group: Some(GroupId(3)),
            ..direct
        };
        assert_eq!(
            message_line(&group),
            "[1970-01-01 00:00:01 UTC] alice -> group 3: hi bob"
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
            sent_at: Timestamp(1000),
            kind: MessageKind::Text,
            data: b"hi alice",
            read: false,
            history_id: 5,
        };
        assert_eq!(message_line(&m), "[1970-01-01 00:00:01 UTC] bob: hi alice");
        assert_eq!(message_json(&m)["direction"], "in");
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
