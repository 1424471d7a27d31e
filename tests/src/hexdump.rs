//! Annotated hex dumps of encoded packets, for golden snapshots a reader checks by eye.
//!
//! The annotator reads the bytes with its own, deliberately plain copy of the layouts in
//! `docs/protocol.md` (the wiki plus this project's decisions), not with `vcom-protocol`'s decoder:
//! a snapshot is then a second opinion on the encoder, and a field out of place shows up
//! as a dump that does not parse or that names the wrong values.

use std::fmt::Write as _;

use vcom_protocol::{AbortReason, DenyCode, id};

/// How many bytes one dump line shows; longer fields continue on following lines.
const BYTES_PER_LINE: usize = 8;

/// Why bytes could not be annotated: they do not follow the documented layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// Where in the packet the problem is.
    pub offset: usize,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {:#06x}: {}", self.offset, self.problem)
    }
}

impl std::error::Error for DumpError {}

/// Annotates one whole packet, one line per field:
/// `offset  hex bytes  field name and decoded value`.
///
/// Fails when the bytes do not follow the layout of their identifier, or when bytes are
/// left over after the last field.
pub fn annotate(bytes: &[u8]) -> Result<String, DumpError> {
    let mut dump = Dump {
        bytes,
        pos: 0,
        out: String::new(),
    };
    dump.packet()?;
    if dump.pos != bytes.len() {
        return Err(dump.error(format!(
            "{} bytes left over after the last field",
            bytes.len() - dump.pos
        )));
    }
    Ok(dump.out)
}

struct Dump<'a> {
    bytes: &'a [u8],
    pos: usize,
    out: String,
}

impl Dump<'_> {
    fn error(&self, problem: impl Into<String>) -> DumpError {
        DumpError {
            offset: self.pos,
            problem: problem.into(),
        }
    }

    /// Takes `n` bytes and prints them, labelled on the first line.
    fn field(&mut self, n: usize, label: &str) -> Result<Vec<u8>, DumpError> {
        let end = self.pos + n;
        let Some(taken) = self.bytes.get(self.pos..end) else {
            return Err(self.error(format!("{label}: {n} bytes announced, not present")));
        };
        let taken = taken.to_vec();
        if taken.is_empty() {
            // A zero-length field has no bytes to show; say so rather than print nothing.
            self.line(self.pos, "", &format!("{label} (no bytes)"));
        }
        for (i, chunk) in taken.chunks(BYTES_PER_LINE).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let label = if i == 0 { label } else { "" };
            self.line(self.pos + i * BYTES_PER_LINE, &hex.join(" "), label);
        }
        self.pos = end;
        Ok(taken)
    }

    fn line(&mut self, offset: usize, hex: &str, label: &str) {
        let width = BYTES_PER_LINE * 3 - 1;
        let line = format!("{offset:04x}  {hex:<width$}  {label}");
        let _ = writeln!(self.out, "{}", line.trim_end());
    }

    fn peek_i32(&self) -> Result<i32, DumpError> {
        self.bytes
            .get(self.pos..self.pos + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
            .ok_or_else(|| self.error("an i32 is cut short"))
    }

    fn peek_i64(&self) -> Result<i64, DumpError> {
        self.bytes
            .get(self.pos..self.pos + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| self.error("an i64 is cut short"))
    }

    fn peek_i8(&self) -> Result<i8, DumpError> {
        self.bytes
            .get(self.pos)
            .map(|&b| i8::from_be_bytes([b]))
            .ok_or_else(|| self.error("an i8 is cut short"))
    }

    fn i8(&mut self, name: &str, meaning: impl FnOnce(i8) -> String) -> Result<i8, DumpError> {
        let value = self.peek_i8()?;
        self.field(1, &format!("{name} {value}{}", meaning(value)))?;
        Ok(value)
    }

    fn bool(&mut self, name: &str) -> Result<bool, DumpError> {
        let value = self.i8(name, |v| format!(" ({})", v != 0))?;
        Ok(value != 0)
    }

    fn i32(&mut self, name: &str, meaning: impl FnOnce(i32) -> String) -> Result<i32, DumpError> {
        let value = self.peek_i32()?;
        self.field(4, &format!("{name} {value}{}", meaning(value)))?;
        Ok(value)
    }

    fn timestamp(&mut self, name: &str) -> Result<(), DumpError> {
        let value = self.peek_i64()?;
        self.field(8, &format!("{name} {value} ({})", utc(value)))?;
        Ok(())
    }

    fn i64(&mut self, name: &str) -> Result<(), DumpError> {
        let value = self.peek_i64()?;
        self.field(8, &format!("{name} {value}"))?;
        Ok(())
    }

    fn len(&mut self, name: &str) -> Result<usize, DumpError> {
        let len = self.peek_i32()?;
        let Ok(n) = usize::try_from(len) else {
            return Err(self.error(format!("{name}: negative length {len}")));
        };
        self.field(4, &format!("{name}.len {len}"))?;
        Ok(n)
    }

    /// `i32` length + UTF-8 text.
    fn text(&mut self, name: &str) -> Result<(), DumpError> {
        let n = self.len(name)?;
        let raw = self.bytes.get(self.pos..self.pos + n).unwrap_or_default();
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(self.error(format!("{name}: not UTF-8")));
        };
        self.field(n, &format!("{name} {text:?}"))?;
        Ok(())
    }

    /// `i32` length + raw bytes, shown as text when `is_text` and they are UTF-8.
    fn data(&mut self, name: &str, is_text: bool) -> Result<(), DumpError> {
        let n = self.len(name)?;
        let raw = self.bytes.get(self.pos..self.pos + n).unwrap_or_default();
        let label = match std::str::from_utf8(raw) {
            Ok(text) if is_text => format!("{name} {text:?}"),
            _ => format!("{name} ({n} raw bytes)"),
        };
        self.field(n, &label)?;
        Ok(())
    }

    /// `i32` count + that many texts.
    fn list(&mut self, name: &str) -> Result<(), DumpError> {
        let count = self.peek_i32()?;
        let Ok(n) = usize::try_from(count) else {
            return Err(self.error(format!("{name}: negative count {count}")));
        };
        self.field(4, &format!("{name}.count {count}"))?;
        for i in 0..n {
            self.text(&format!("{name}[{i}]"))?;
        }
        Ok(())
    }

    /// One 260 block: the flag and, only for flag 2, the list.
    fn sync_block(&mut self, name: &str) -> Result<(), DumpError> {
        let flag = self.i8(&format!("{name}.flag"), |f| {
            match f {
                0 => " (in sync, nothing follows)",
                1 => " (send me the server's list, nothing follows)",
                2 => " (the client's list follows)",
                _ => " (not a valid flag)",
            }
            .to_owned()
        })?;
        match flag {
            0 | 1 => Ok(()),
            2 => self.list(name),
            other => Err(self.error(format!("{name}: sync flag {other}"))),
        }
    }

    fn packet(&mut self) -> Result<(), DumpError> {
        let packet = self.i32("id", |id| match id::name(id) {
            Some(name) => format!(" {name}"),
            None => " (unknown)".to_owned(),
        })?;
        let none = |_| String::new();
        match packet {
            id::CONNECTION_REQUEST => {
                self.text("user")?;
                self.i32("device", |d| {
                    if d == -1 {
                        " (new)".into()
                    } else {
                        String::new()
                    }
                })?;
                self.data("password", true)?;
            }
            id::CONNECTION_ACCEPTED => {
                self.i32("device", none)?;
            }
            id::CONNECTION_DENIED => {
                self.i8("code", |c| format!(" ({:?})", DenyCode::from_code(c)))?;
            }
            id::REQUEST_USER_LISTS_SYNC => {
                self.timestamp("friends")?;
                self.timestamp("blocks")?;
            }
            id::USER_LISTS_SYNC => {
                self.sync_block("friends")?;
                self.sync_block("blocks")?;
            }
            id::FRIEND_LIST | id::BLOCK_LIST => {
                self.list("entries")?;
            }
            id::BROADCAST => {
                self.data("text", true)?;
            }
            id::USER_MESSAGE => {
                self.text("sender")?;
                self.bool("read")?;
                self.timestamp("sent_at")?;
                let is_text = self.bool("is_text")?;
                self.data("data", is_text)?;
            }
            id::GROUP_MESSAGE => {
                self.text("sender")?;
                self.i32("group", none)?;
                self.bool("read")?;
                self.timestamp("sent_at")?;
                let is_text = self.bool("is_text")?;
                self.data("data", is_text)?;
            }
            id::SEND_USER_MESSAGE => {
                self.text("recipient")?;
                self.timestamp("sent_at")?;
                let is_text = self.bool("is_text")?;
                self.data("data", is_text)?;
            }
            id::SEND_GROUP_MESSAGE => {
                self.i32("group", none)?;
                self.timestamp("sent_at")?;
                let is_text = self.bool("is_text")?;
                self.data("data", is_text)?;
            }
            id::FILE_TRANSFER_REQUEST => {
                self.text("recipient")?;
                self.i32("size", none)?;
                self.text("name")?;
            }
            id::FILE_TRANSFER_ABORT => {
                self.i32("transfer", none)?;
                self.i32("reason", |r| format!(" ({:?})", AbortReason::from_code(r)))?;
            }
            id::FILE_TRANSFER_OFFER => {
                self.text("sender")?;
                self.i32("size", none)?;
                self.text("name")?;
                self.i32("transfer", none)?;
            }
            id::FILE_TRANSFER_ID | id::FILE_TRANSFER_ACCEPT | id::FILE_TRANSFER_COMPLETE => {
                self.i32("transfer", none)?;
            }
            id::FILE_CHUNK => {
                self.i32("transfer", none)?;
                self.data("data", false)?;
            }
            id::PING | id::PONG => {
                self.i64("nonce")?;
            }
            id::SEQUENCE => {
                self.i64("seq")?;
            }
            id::RECEIPT => {
                self.i64("through")?;
            }
            id::MESSAGE_TAG => {
                self.i64("client_id")?;
            }
            id::SEND_ACK => {
                self.i64("client_id")?;
                self.i8("outcome", |o| {
                    match o {
                        0 => " (Stored)",
                        1 => " (UnknownRecipient)",
                        2 => " (NotAMember)",
                        3 => " (InboxFull)",
                        _ => " (unknown outcome)",
                    }
                    .to_owned()
                })?;
            }
            id::GROUP_CREATE => {
                self.i64("request")?;
                self.text("name")?;
                self.list("members")?;
            }
            id::GROUP_RENAME => {
                self.i64("request")?;
                self.i32("group", none)?;
                self.text("name")?;
            }
            id::GROUP_ADD_MEMBER | id::GROUP_REMOVE_MEMBER => {
                self.i64("request")?;
                self.i32("group", none)?;
                self.text("user")?;
            }
            id::GROUP_LEAVE => {
                self.i64("request")?;
                self.i32("group", none)?;
            }
            id::GROUP_RESULT => {
                self.i64("request")?;
                self.i8("outcome", |o| {
                    match o {
                        0 => " (Done)",
                        1 => " (NotOwner)",
                        2 => " (NotAMember)",
                        3 => " (UnknownGroup)",
                        4 => " (UnknownUser)",
                        5 => " (AdminGroup)",
                        6 => " (InvalidName)",
                        7 => " (TooManyGroups)",
                        8 => " (TooManyMembers)",
                        _ => " (unknown outcome)",
                    }
                    .to_owned()
                })?;
                self.i32("group", none)?;
            }
            id::GROUP_LIST => {
                let count = self.peek_i32()?;
                let Ok(n) = usize::try_from(count) else {
                    return Err(self.error(format!("groups: negative count {count}")));
                };
                self.field(4, &format!("groups.count {count}"))?;
                for i in 0..n {
                    self.i32(&format!("groups[{i}]"), none)?;
                }
            }
            id::GROUP_INFO => {
                self.i32("group", none)?;
                self.text("name")?;
                if self.peek_i32()? == 0 {
                    self.field(4, "owner.len 0 (none: the administrator's group)")?;
                } else {
                    self.text("owner")?;
                }
                self.list("members")?;
            }
            id::GROUP_REMOVED => {
                self.i32("group", none)?;
                self.i8("reason", |r| {
                    match r {
                        0 => " (Left)",
                        1 => " (Removed)",
                        _ => " (unknown reason)",
                    }
                    .to_owned()
                })?;
            }
            other => return Err(self.error(format!("no layout for packet {other}"))),
        }
        Ok(())
    }
}

/// A timestamp (milliseconds since the Unix epoch) as an ISO 8601 UTC date and time.
pub fn utc(millis: i64) -> String {
    vcom_protocol::Timestamp(millis).utc().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_the_epoch_and_a_known_instant() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_packet_with_bytes_left_over_does_not_annotate() {
        let bytes = [0, 0, 1, 1, 0, 0, 0, 7, 0xff];
        assert!(annotate(&bytes).is_err());
        assert!(annotate(&bytes[..8]).is_ok());
    }
}
