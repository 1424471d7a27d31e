//! Coverage measured, not claimed: sums the tap files every `vcom-server` of a run wrote
//! (`VCOM_PACKET_TAP`), prints the table, and names every legal (identifier,
//! direction), 258 code, 270 reason and 517 outcome that never crossed the wire.
//!
//! Which directions are legal is asked of the decoder itself (`vcom_protocol`), so the
//! requirement cannot drift from the protocol crate. Pure functions over counts: no IO
//! here except reading the tap files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use vcom_protocol::{AbortReason, ClientPacket, DenyCode, Limits, SendOutcome, ServerPacket, id};
use vcom_server::tap::{Direction, TapRecord};

/// Packet counts of a whole run: (identifier, direction, code) to how many were seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    seen: BTreeMap<(i32, Direction, Option<i32>), u64>,
}

impl Counts {
    /// Adds one tap record.
    pub fn add(&mut self, record: &TapRecord) {
        *self
            .seen
            .entry((record.id, record.direction, record.code))
            .or_default() += record.count;
    }

    /// Adds every record of one tap file (JSON lines).
    pub fn add_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the tap file {}", path.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let record: TapRecord = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a tap record", path.display(), n + 1))?;
            self.add(&record);
        }
        Ok(())
    }

    /// How many packets `id` travelled in `direction`, whatever their code.
    pub fn packets(&self, id: i32, direction: Direction) -> u64 {
        self.seen
            .iter()
            .filter(|((i, d, _), _)| *i == id && *d == direction)
            .map(|(_, n)| n)
            .sum()
    }

    /// How many packets `id` travelled in `direction` with `code`.
    pub fn with_code(&self, id: i32, direction: Direction, code: i32) -> u64 {
        self.seen
            .get(&(id, direction, Some(code)))
            .copied()
            .unwrap_or(0)
    }

    /// The codes seen for `id` in `direction`, ascending.
    fn codes(&self, id: i32, direction: Direction) -> Vec<i32> {
        self.seen
            .keys()
            .filter(|(i, d, _)| *i == id && *d == direction)
            .filter_map(|(_, _, c)| *c)
            .collect()
    }

    /// Every identifier seen, ascending.
    fn ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.seen.keys().map(|(i, _, _)| *i).collect();
        ids.dedup();
        ids
    }
}

/// Whether the protocol lets packet `id` travel in `direction`: the decoder, given only
/// the identifier, asks for more bytes (legal) or rejects it (wrong direction).
pub fn legal(id: i32, direction: Direction) -> bool {
    let bytes = id.to_be_bytes();
    let limits = Limits::default();
    match direction {
        Direction::ClientToServer => ClientPacket::decode(&bytes, &limits).is_ok(),
        Direction::ServerToClient => ServerPacket::decode(&bytes, &limits).is_ok(),
    }
}

/// Legal but not required: the server never originates a Ping, so it never receives a
/// Pong and never sends a Ping (only answers them).
fn exempt(id: i32, direction: Direction) -> bool {
    matches!(
        (id, direction),
        (id::PING, Direction::ServerToClient) | (id::PONG, Direction::ClientToServer)
    )
}

/// The identifiers the run must cover: the seed protocol and the extensions the server
/// implements.
fn required_ids() -> Vec<i32> {
    id::ALL.into_iter().chain(id::EXTENSIONS).collect()
}

const DIRECTIONS: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

fn arrow(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToServer => "C->S",
        Direction::ServerToClient => "S->C",
    }
}

fn name(id: i32) -> &'static str {
    id::name(id).unwrap_or("(unknown)")
}

/// One line per requirement the run did not meet, e.g.
/// `missing: 262 BlockList S->C never seen`; empty when coverage is complete.
pub fn missing(counts: &Counts) -> Vec<String> {
    let mut out = Vec::new();
    for id in required_ids() {
        for direction in DIRECTIONS {
            if legal(id, direction) && !exempt(id, direction) && counts.packets(id, direction) == 0
            {
                out.push(format!(
                    "missing: {id} {} {} never seen",
                    name(id),
                    arrow(direction)
                ));
            }
        }
    }
    for code in DenyCode::ALL {
        let code = i32::from(code.code());
        if counts.with_code(id::CONNECTION_DENIED, Direction::ServerToClient, code) == 0 {
            out.push(format!("missing: 258 code {code} never seen"));
        }
    }
    for reason in AbortReason::ALL {
        let reason = reason.code();
        if counts.with_code(id::FILE_TRANSFER_ABORT, Direction::ServerToClient, reason) == 0 {
            out.push(format!("missing: 270 reason {reason} S->C never seen"));
        }
    }
    // 517 outcomes a run produces: stored, unknown user, not a member (a full inbox
    // needs a server with a tiny inbox cap; the integration tests cover it).
    for outcome in [
        SendOutcome::Stored,
        SendOutcome::UnknownRecipient,
        SendOutcome::NotAMember,
    ] {
        let code = i32::from(outcome.code());
        if counts.with_code(id::SEND_ACK, Direction::ServerToClient, code) == 0 {
            out.push(format!("missing: 517 outcome {code} never seen"));
        }
    }
    // A client aborts as the recipient (declines, 0) or as the sender (cancels, 8).
    for reason in [AbortReason::Declined, AbortReason::Cancelled] {
        let reason = reason.code();
        if counts.with_code(id::FILE_TRANSFER_ABORT, Direction::ClientToServer, reason) == 0 {
            out.push(format!("missing: 270 reason {reason} C->S never seen"));
        }
    }
    out
}

/// The coverage table: id, name, C->S count, S->C count, codes seen, then its legend.
pub fn table(counts: &Counts) -> String {
    let mut ids = required_ids();
    ids.extend(counts.ids());
    ids.sort_unstable();
    ids.dedup();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<22} {:>7} {:>7}  codes seen",
        "id", "name", "C->S", "S->C"
    );
    for id in ids {
        let cell = |direction| {
            let n = counts.packets(id, direction);
            match (legal(id, direction), exempt(id, direction)) {
                (false, _) if n == 0 => "-".to_owned(),
                (_, true) => format!("({n})"),
                _ => n.to_string(),
            }
        };
        let codes: Vec<String> = DIRECTIONS
            .iter()
            .filter_map(|&d| {
                let codes = counts.codes(id, d);
                (!codes.is_empty()).then(|| {
                    let list: Vec<String> = codes.iter().map(i32::to_string).collect();
                    format!("{} {}", arrow(d), list.join(" "))
                })
            })
            .collect();
        let _ = writeln!(
            out,
            "{id:>4}  {:<22} {:>7} {:>7}  {}",
            name(id),
            cell(Direction::ClientToServer),
            cell(Direction::ServerToClient),
            codes.join("; ")
        );
    }
    out.push_str(
        "legend: counts summed over every server of the run; '-' = the protocol forbids that\n\
         direction; '(n)' = legal but not required: the server never originates a Ping, so\n\
         512 S->C and 513 C->S are not expected. Required: every other legal direction,\n\
         258 codes 0-7, 270 reasons 0-8 S->C, 270 reasons 0 and 8 C->S, 517 outcomes 0-2.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn record(id: i32, direction: Direction, code: Option<i32>) -> TapRecord {
        TapRecord {
            id,
            direction,
            code,
            count: 1,
        }
    }

    fn everything() -> Counts {
        let mut counts = Counts::default();
        for id in required_ids() {
            for d in DIRECTIONS {
                if legal(id, d) && !exempt(id, d) {
                    counts.add(&record(id, d, None));
                }
            }
        }
        for c in 0..=7 {
            counts.add(&record(258, Direction::ServerToClient, Some(c)));
        }
        for r in 0..=8 {
            counts.add(&record(270, Direction::ServerToClient, Some(r)));
        }
        for r in [0, 8] {
            counts.add(&record(270, Direction::ClientToServer, Some(r)));
        }
        for outcome in 0..=2 {
            counts.add(&record(517, Direction::ServerToClient, Some(outcome)));
        }
        counts
    }

    #[test]
    fn the_decoder_decides_which_directions_are_legal() {
        assert!(legal(256, Direction::ClientToServer));
        assert!(!legal(256, Direction::ServerToClient));
        assert!(legal(270, Direction::ClientToServer));
        assert!(legal(270, Direction::ServerToClient));
        assert!(!legal(264, Direction::ClientToServer));
        assert!(!legal(999, Direction::ClientToServer));
    }

    #[test]
    fn full_counts_miss_nothing() {
        assert_eq!(missing(&everything()), Vec::<String>::new());
    }

    #[test]
    fn a_packet_never_sent_is_named() {
        let mut counts = Counts::default();
        for ((id, d, c), n) in &everything().seen {
            if *id != 262 {
                counts.seen.insert((*id, *d, *c), *n);
            }
        }
        assert_eq!(missing(&counts), ["missing: 262 BlockList S->C never seen"]);
    }

    #[test]
    fn a_code_never_sent_is_named() {
        let mut counts = everything();
        counts
            .seen
            .remove(&(258, Direction::ServerToClient, Some(5)));
        counts
            .seen
            .remove(&(270, Direction::ServerToClient, Some(6)));
        counts
            .seen
            .remove(&(517, Direction::ServerToClient, Some(1)));
        assert_eq!(
            missing(&counts),
            [
                "missing: 258 code 5 never seen",
                "missing: 270 reason 6 S->C never seen",
                "missing: 517 outcome 1 never seen"
            ]
        );
    }

    #[test]
    fn the_table_has_a_row_per_packet_and_marks_forbidden_directions() {
        let table = table(&everything());
        let row = table.lines().find(|l| l.contains("BlockList")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["262", "BlockList", "-", "1"]
        );
        assert!(table.contains("0 1 2 3 4 5 6 7"));
    }
}
