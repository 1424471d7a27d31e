//! How received messages look: one human line, or one JSON object for scripts.
//!
//! `listen --json` and `history --json` print the same object shape, documented on
//! [`message_json`]. Times are UTC: the program has no time-zone database.

use base64::Engine;
use serde_json::{Value, json};
use vcom_client::{GroupId, HistoryEntry, Message, MessageKind, Timestamp, UserId};

/// The fields of a received message that the program shows, from an event or the
/// history alike.
pub(crate) struct Received<'a> {
    pub(crate) sender: &'a UserId,
    pub(crate) group: Option<GroupId>,
    pub(crate) sent_at: Timestamp,
    pub(crate) kind: MessageKind,
    pub(crate) data: &'a [u8],
    pub(crate) read: bool,
    pub(crate) history_id: i64,
}

impl<'a> From<&'a Message> for Received<'a> {
    fn from(m: &'a Message) -> Self {
        Received {
            sender: &m.sender,
            group: m.group,
            sent_at: m.sent_at,
            kind: m.kind,
            data: &m.data,
            read: m.read,
            history_id: m.history_id,
        }
    }
}

impl<'a> From<&'a HistoryEntry> for Received<'a> {
    fn from(e: &'a HistoryEntry) -> Self {
        Received {
            sender: &e.sender,
            group: e.group,
            sent_at: e.sent_at,
            kind: e.kind,
            data: &e.data,
            read: e.read,
            history_id: e.id,
        }
    }
}

/// `2024-05-01 12:00:03 UTC` for a protocol timestamp.
pub(crate) fn utc(ts: Timestamp) -> String {
    let (date, secs) = split(ts);
    let (y, m, d) = civil_from_days(date);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `12:00` (UTC) for a protocol timestamp: the chat view's short form.
pub(crate) fn clock(ts: Timestamp) -> String {
    let (_, secs) = split(ts);
    format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// Days since 1970-01-01 and seconds into that day.
fn split(ts: Timestamp) -> (i64, i64) {
    let secs = ts.0.div_euclid(1000);
    (secs.div_euclid(86_400), secs.rem_euclid(86_400))
}

/// The proleptic Gregorian date of a day count (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are small by construction (1..=12 and 1..=31).
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The body for people: the text, or a note for an image.
pub(crate) fn body(kind: MessageKind, data: &[u8]) -> String {
    match kind {
        MessageKind::Text => String::from_utf8_lossy(data).into_owned(),
        MessageKind::Image => format!("[image, {}]", size(data.len() as u64)),
    }
}

/// `[2024-05-01 12:00:03 UTC] bob: hello` or `[...] bob in group 3: hello`.
pub(crate) fn message_line(m: &Received<'_>) -> String {
    let at = utc(m.sent_at);
    let body = body(m.kind, m.data);
    match m.group {
        Some(group) => format!("[{at}] {} in group {group}: {body}", m.sender),
        None => format!("[{at}] {}: {body}", m.sender),
    }
}

/// One received message as a JSON object:
/// `{"type": "message" | "group_message", "sender": "bob", "group": 3 | null,
///   "sent_at": <ms since 1970>, "kind": "text" | "image", "text": "..." (text) or
///   "image_base64": "..." (image), "read": false, "history_id": 12}`.
pub(crate) fn message_json(m: &Received<'_>) -> Value {
    let mut object = json!({
        "type": if m.group.is_some() { "group_message" } else { "message" },
        "sender": m.sender.as_str(),
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
        let m = Received {
            sender: &bob,
            group: Some(GroupId(3)),
            sent_at: Timestamp(1000),
            kind: MessageKind::Image,
            data: &[0, 1, 2],
            read: true,
            history_id: 9,
        };
        let v = message_json(&m);
        assert_eq!(v["type"], "group_message");
        assert_eq!(v["group"], 3);
        assert_eq!(v["image_base64"], "AAEC");
        assert_eq!(v["read"], true);
        assert!(v.get("text").is_none());
        assert_eq!(
            message_line(&m),
            "[1970-01-01 00:00:01 UTC] bob in group 3: [image, 3 B]"
        );
    }
}
