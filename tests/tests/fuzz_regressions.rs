//! The committed corpora of the fuzz targets in `fuzz/` (`server`, `config`, `client`),
//! replayed on every `cargo test` through the very checks the fuzzer runs, so CI runs
//! them without a fuzzer. Every `seed-*` file in `fuzz/corpus/<target>/` is replayed:
//! the seeds this file makes (below) and any input kept by hand, such as a crash the
//! fuzzer found (`seed-crash-<what>`).
//!
//! To rewrite the generated seeds after a deliberate change, run
//! `VCOM_WRITE_SEEDS=1 cargo test -p vcom-tests --test fuzz_regressions -- --test-threads=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unreachable_pub)]
#[path = "../../fuzz/src/client.rs"]
mod client_check;
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/config.rs"]
mod config_check;

use std::path::PathBuf;

use bytes::Bytes;
use vcom_protocol::{
    AbortReason, BlockList, Broadcast, ClientPacket, ConnectionAccepted, ConnectionDenied,
    DenyCode, DeviceId, FileChunk, FileSize, FileTransferAbort, FileTransferComplete,
    FileTransferId, FileTransferOffer, FileTransferRequest, FriendList, GroupId, GroupMessage,
    MessageKind, Ping, RequestUserListsSync, SendAck, SendOutcome, Sequence, ServerPacket,
    Timestamp, TransferId, UserId, UserMessage,
};
use vcom_server::fuzzing::Reached;

use client_check::Outcome;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../fuzz/corpus/{target}"))
}

/// Every `seed-*` file of a target's corpus: its name and bytes, in name order.
fn committed(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            // Files the fuzzer added locally are not replayed; only committed seeds are.
            name.starts_with("seed-")
                .then(|| (name, std::fs::read(&path).unwrap()))
        })
        .collect();
    files.sort();
    files
}

/// Writes the generated seeds when asked to, then checks the committed files are exactly
/// them (files added by hand, such as crashes, are left alone).
fn check_generated(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = corpus_dir(target);
    if std::env::var_os("VCOM_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}.bin")), bytes).unwrap();
        }
    }
    for (name, bytes) in seeds {
        let path = dir.join(format!("seed-{name}.bin"));
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with VCOM_WRITE_SEEDS=1)",
                path.display()
            )
        });
        // Not assert_eq!: a seed is kilobytes, and its bytes as numbers help nobody.
        assert!(
            on_disk == *bytes,
            "{} is stale ({} bytes committed, {} generated): regenerate with \
             VCOM_WRITE_SEEDS=1 cargo test -p vcom-tests --test fuzz_regressions",
            path.display(),
            on_disk.len(),
            bytes.len()
        );
    }
}

fn uid(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

// ------------------------------------------------------------------------- server

/// A script for `vcom_server::fuzzing::connections`, written byte by byte in the
/// layout that function reads: the rules, then one operation after another.
struct Script(Vec<u8>);

/// Indices of the harness's choices.
const ALICE: u8 = 0;
const BOB: u8 = 1;
const CAROL: u8 = 2;
const DAVE: u8 = 3;
const NEW: u8 = 0;
/// Packet kinds.
const SYNC: u8 = 1;
const SEND: u8 = 2;
const REQUEST: u8 = 4;
const ABORT: u8 = 5;
const ACCEPT: u8 = 6;
const CHUNK: u8 = 7;
const COMPLETE: u8 = 8;
const PING: u8 = 9;
const RECEIPT: u8 = 11;
const TAG: u8 = 12;
/// File sizes (index into 1, 2, 3, 10, 1024, 1025, 2^31-1) and chunk lengths (into 0,
/// 1, 2, 3, 5, 10, 1024).
const SIZE_3: u8 = 2;
const SIZE_10: u8 = 3;
const SIZE_1024: u8 = 4;
const LEN_5: u8 = 4;
const LEN_10: u8 = 5;
/// Relay outcomes.
const HANDED: u8 = 1;
const PENDING: u8 = 0;
const NO_ROOM: u8 = 3;

impl Script {
    /// The rules. `flags`: bit 0 a server password, bit 1 closed registration, bit 2
    /// open authentication, bit 3 no password throttle. `black` and `white` index the
    /// harness's policy entries; `max_file_size` indexes 1, 10, 1024, 2^31-1;
    /// `max_logged` indexes 0, 41, 2^31-3, 2^31-1, -5; `known` has a bit per user known
    /// from the start. At most eight connections, none per address, one free password.
    #[allow(clippy::too_many_arguments)]
    fn new(
        flags: u8,
        black: &[u8],
        white: &[u8],
        max_file_size: u8,
        per_user: u8,
        idle_ms: u16,
        max_logged: u8,
        known: u8,
    ) -> Script {
        let mut b = vec![flags, black.len() as u8];
        b.extend(black);
        b.push(white.len() as u8);
        b.extend(white);
        b.extend([1, 0, 7, 0, max_file_size, per_user - 1]);
        b.extend((idle_ms - 1).to_be_bytes());
        b.extend([max_logged, known]);
        Script(b)
    }

    fn ops(mut self, bytes: &[u8]) -> Script {
        self.0.extend(bytes);
        self
    }

    /// A login: `device` 0 asks for a new one, `3, i` names the i-th device issued;
    /// `password` 0 is the server's, 2 a wrong one; `ip` and `key` index the harness's.
    fn login(self, user: u8, device: &[u8], password: u8, ip: u8, key: u8, ext: bool) -> Script {
        let mut b = vec![0, user];
        b.extend(device);
        b.extend([password, ip, key, u8::from(ext), 1, 1]);
        self.ops(&b)
    }

    /// A packet from the `conn`-th open connection about the `transfer`-th identifier
    /// issued (past them: 0, 1, -1, 2^31-1).
    fn packet(self, conn: u8, transfer: u8, kind: u8, fields: &[u8]) -> Script {
        let mut b = vec![1, conn, transfer, kind];
        b.extend(fields);
        self.ops(&b)
    }

    /// A packet's bytes through the decoder, to the `conn`-th open connection.
    fn raw(self, packet: impl Into<ClientPacket>, conn: u8) -> Script {
        let bytes = packet.into().to_bytes();
        let mut b = vec![4, bytes.len() as u8];
        b.extend(&bytes[..]);
        b.push(conn);
        self.ops(&b)
    }

    /// Time passes (`by` indexes 0, 1, 10, 100, 1000, 60000 ms, plus `extra` ms), the
    /// idle sweep runs when `tick`, and the writer of the `conn`-th open connection
    /// flushes messages through a sequence number (`seq` indexes 1, 2, 5, 100, 2^63-1).
    fn wait(self, by: u8, extra: u8, tick: bool, conn: u8, seq: u8) -> Script {
        self.ops(&[7, by, extra, u8::from(tick), conn, seq])
    }
}

fn server_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let open = || Script::new(0, &[], &[], 2, 2, 10_000, 0, 0);
    let transfer_completes = open()
        .login(ALICE, &[NEW], 0, 0, 1, true)
        .login(BOB, &[NEW], 0, 1, 2, false)
        .login(BOB, &[NEW], 0, 2, 2, false)
        .packet(0, 0, REQUEST, &[SIZE_10, BOB, 0])
        .packet(1, 0, ACCEPT, &[])
        .packet(0, 0, CHUNK, &[LEN_5, HANDED])
        .packet(0, 0, CHUNK, &[LEN_5, HANDED])
        .packet(0, 0, COMPLETE, &[HANDED])
        .packet(1, 0, PING, &[7]);
    let aborts = Script::new(0, &[], &[], 1, 2, 1000, 2, 0)
        .login(ALICE, &[NEW], 0, 0, 1, false)
        .login(BOB, &[NEW], 0, 1, 2, false)
        .login(BOB, &[NEW], 0, 2, 2, false)
        .login(CAROL, &[NEW], 0, 2, 3, false)
        // Offered to both of bob's devices (the identifier before 2^31-1).
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        // Too large for the limit of 10 bytes.
        .packet(0, 0, REQUEST, &[SIZE_1024, BOB, 0])
        // Identifiers wrap to 1; alice now sends two, her limit.
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 1])
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 1])
        // Carol is no party: her accept closes her connection.
        .packet(3, 0, ACCEPT, &[])
        // Bob's second device wins, the first lost the race.
        .packet(2, 0, ACCEPT, &[])
        .packet(1, 0, ACCEPT, &[])
        // Five bytes of a three-byte file.
        .packet(0, 0, CHUNK, &[LEN_5])
        // Bob declines the other.
        .packet(1, 2, ABORT, &[0])
        // Dave never logged in.
        .packet(0, 0, REQUEST, &[SIZE_3, DAVE, 0])
        // Idle past the timeout.
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .wait(4, 1, true, 0, 0)
        // One device drops, the offer stands; the other drops, it ends.
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .ops(&[6, 1])
        .ops(&[6, 1])
        // No device of bob's is online.
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0]);
    let relays = open()
        .login(ALICE, &[NEW], 0, 0, 1, false)
        .login(BOB, &[NEW], 0, 1, 2, false)
        .packet(0, 0, REQUEST, &[SIZE_10, BOB, 0])
        .packet(1, 0, ACCEPT, &[])
        // The chunk waits for room (alice's packets are not read meanwhile), then goes.
        .packet(0, 0, CHUNK, &[LEN_10, PENDING])
        .ops(&[5, 0, HANDED])
        .packet(0, 0, COMPLETE, &[HANDED])
        // The 274 waits; bob declines meanwhile; the 274 then goes through: logged once.
        .packet(0, 0, REQUEST, &[SIZE_10, BOB, 0])
        .packet(1, 1, ACCEPT, &[])
        .packet(0, 1, CHUNK, &[LEN_10, HANDED])
        .packet(0, 1, COMPLETE, &[PENDING])
        .packet(1, 1, ABORT, &[0])
        .ops(&[5, 0, HANDED])
        // A relay that finds no room for the idle timeout.
        .packet(0, 0, REQUEST, &[SIZE_10, BOB, 0])
        .packet(1, 2, ACCEPT, &[])
        .packet(0, 2, CHUNK, &[LEN_5, NO_ROOM])
        // The recipient sends data: a violation, which drops its connection.
        .packet(0, 0, REQUEST, &[SIZE_10, BOB, 0])
        .packet(1, 3, ACCEPT, &[])
        .packet(1, 3, CHUNK, &[LEN_5]);
    let logins = Script::new(1, &[7], &[], 2, 2, 10_000, 0, 0)
        // Two wrong passwords (the first is free), then the right one while the address
        // waits; a second later it is let in. No connection is open for the wait's
        // flush.
        .login(CAROL, &[NEW], 2, 2, 1, false)
        .login(CAROL, &[NEW], 2, 2, 1, false)
        .login(CAROL, &[NEW], 0, 2, 1, false)
        .ops(&[7, 4, 0, 0])
        .login(CAROL, &[NEW], 0, 2, 1, false)
        // Blacklisted user; an empty identifier; a device of carol's; no key; the
        // wrong key.
        .login(BOB, &[NEW], 0, 0, 2, false)
        .ops(&[0, 250, 0, 0, 0, 0, 1, 0, 1, 1])
        .login(ALICE, &[3, 0], 0, 0, 2, false)
        .login(ALICE, &[NEW], 0, 0, 0, false)
        .login(CAROL, &[NEW], 0, 3, 2, false)
        // The right key from another address, the device carol has.
        .login(CAROL, &[3, 0], 0, 3, 1, false);
    let closed = Script::new(2 | 4, &[1], &[6, 2], 2, 2, 10_000, 0, 1)
        // Known alice from a blacklisted address; from a whitelisted one; unknown bob.
        .login(ALICE, &[NEW], 0, 0, 0, false)
        .login(ALICE, &[NEW], 0, 3, 0, false)
        .login(BOB, &[NEW], 0, 3, 0, false)
        .login(DAVE, &[NEW], 0, 5, 0, false);
    let extensions = open()
        .login(ALICE, &[NEW], 0, 0, 1, true)
        .login(ALICE, &[NEW], 0, 0, 1, true)
        .login(BOB, &[NEW], 0, 1, 2, false)
        // A tagged message, then a tag followed by a Ping: closed.
        .packet(0, 0, TAG, &[9])
        .packet(0, 0, SEND, &[BOB, 2])
        .packet(0, 0, TAG, &[10])
        .packet(0, 0, PING, &[1])
        // A receipt without the extension set: closed.
        .packet(1, 0, RECEIPT, &[3])
        // Five messages written, a receipt through five, one through more.
        .wait(0, 0, false, 0, 2)
        .packet(0, 0, RECEIPT, &[5])
        .packet(0, 0, RECEIPT, &[7])
        // A second login on a logged-in connection: closed.
        .packet(0, 0, 0, &[ALICE]);
    let lists = open()
        .login(ALICE, &[NEW], 0, 0, 1, false)
        .login(CAROL, &[NEW], 0, 1, 3, false)
        // Alice uploads friends with a repeat and blocks carol; asks for nothing else.
        .packet(0, 0, SYNC, &[2, 3, BOB, BOB, CAROL, 2, 1, CAROL])
        .packet(0, 0, SYNC, &[1, 0])
        // Carol's file to alice is refused.
        .packet(1, 0, REQUEST, &[SIZE_3, ALICE, 0]);
    let raw = open()
        .login(ALICE, &[NEW], 0, 0, 1, false)
        .login(BOB, &[NEW], 0, 1, 2, false)
        .raw(Ping { nonce: 3 }, 0)
        .raw(
            FileTransferRequest {
                recipient: uid("bob"),
                size: FileSize::new(2).unwrap(),
                name: "notes.txt".into(),
            },
            0,
        )
        .raw(
            FileTransferAbort {
                transfer: TransferId(1),
                reason: AbortReason::Declined,
            },
            1,
        );
    // Two offers a minute (flags bits 4-5): two at once, the third refused; a minute
    // later (the first two timed out) two more, the third refused again.
    let offer_rate = Script::new(2 << 4, &[], &[], 2, 3, 60_000, 0, 0)
        .login(ALICE, &[NEW], 0, 0, 1, false)
        .login(BOB, &[NEW], 0, 1, 2, false)
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .wait(5, 1, true, 0, 0)
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0])
        .packet(0, 0, REQUEST, &[SIZE_3, BOB, 0]);
    // `registration = "token"` (flags bit 6) with a server password: a newcomer's
    // invitation (password choice 3) is used up once; no secret, a wrong one; a known
    // user with the server password, then with a wrong one.
    let invitations = Script::new(64 | 1, &[], &[], 2, 2, 10_000, 0, 0)
        .login(ALICE, &[NEW], 3, 0, 1, false)
        .login(BOB, &[NEW], 3, 1, 2, false)
        .login(CAROL, &[NEW], 1, 2, 3, false)
        .login(CAROL, &[NEW], 2, 2, 3, false)
        .login(ALICE, &[NEW], 0, 0, 1, false)
        .login(ALICE, &[NEW], 2, 3, 1, false);
    vec![
        ("transfer_completes", transfer_completes.0),
        ("transfer_aborts", aborts.0),
        ("relays", relays.0),
        ("logins", logins.0),
        ("closed_registration", closed.0),
        ("extension_rules", extensions.0),
        ("lists", lists.0),
        ("raw_packets", raw.0),
        ("offer_rate", offer_rate.0),
        ("invitations", invitations.0),
    ]
}

#[test]
fn the_server_seeds_are_committed_and_reach_what_they_are_named_for() {
    let seeds = server_seeds();
    check_generated("server", &seeds);
    let reached = |name: &str| {
        let (_, bytes) = seeds.iter().find(|(n, _)| *n == name).unwrap();
        vcom_server::fuzzing::connections(bytes)
    };
    use AbortReason::*;
    let code = |r: AbortReason| r.code();
    assert_eq!(
        reached("transfer_completes"),
        Reached {
            logins: 3,
            completed: 1,
            aborted: vec![],
            ..Reached::default()
        }
    );
    let aborts = reached("transfer_aborts");
    assert_eq!(aborts.logins, 4);
    assert_eq!(aborts.closed_by_packet, 1, "carol's accept");
    assert_eq!(
        aborts.aborted,
        [
            TooLarge,
            NotAllowed,
            ProtocolViolation,
            Declined,
            NotAllowed,
            TimedOut,
            ConnectionDropped,
            RecipientOffline
        ]
        .map(code)
    );
    let relays = reached("relays");
    assert_eq!(relays.completed, 1);
    assert_eq!(
        relays.aborted,
        [Declined, TimedOut, ConnectionDropped].map(code)
    );
    assert_eq!(relays.closed_by_packet, 1, "data from the recipient");
    let logins = reached("logins");
    assert_eq!(logins.logins, 2);
    let denied: Vec<i8> = [
        DenyCode::WrongPassword,
        DenyCode::WrongPassword,
        DenyCode::WrongPassword,
        DenyCode::UserBlacklisted,
        DenyCode::InvalidUser,
        DenyCode::UnknownDevice,
        DenyCode::KeyMismatch,
        DenyCode::KeyMismatch,
    ]
    .map(DenyCode::code)
    .into();
    assert_eq!(logins.denied, denied);
    let closed = reached("closed_registration");
    assert_eq!(closed.logins, 1);
    let denied: Vec<i8> = [
        DenyCode::IpBlacklisted,
        DenyCode::InvalidUser,
        DenyCode::NotWhitelisted,
    ]
    .map(DenyCode::code)
    .into();
    assert_eq!(closed.denied, denied);
    assert_eq!(reached("extension_rules").closed_by_packet, 3);
    assert_eq!(reached("lists").aborted, [NotAllowed].map(code));
    let rate = reached("offer_rate");
    assert_eq!(
        rate.rate_limited, 2,
        "the third at once, the fifth 30 s later"
    );
    let invitations = reached("invitations");
    assert_eq!(invitations.logins, 2);
    let denied: Vec<i8> = [
        DenyCode::InvalidUser,
        DenyCode::InvalidUser,
        DenyCode::InvalidUser,
        DenyCode::WrongPassword,
    ]
    .map(DenyCode::code)
    .into();
    assert_eq!(invitations.denied, denied);
    let raw = reached("raw_packets");
    assert_eq!(raw.logins, 2);
    assert_eq!(raw.aborted, [Declined].map(code));
}

#[test]
fn every_committed_server_input_keeps_the_state_machines_rules() {
    let files = committed("server");
    assert!(files.len() >= server_seeds().len(), "{} files", files.len());
    for (name, bytes) in files {
        eprintln!("{name}");
        vcom_server::fuzzing::connections(&bytes);
    }
}

// ------------------------------------------------------------------------- config

fn config_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Every key: the generated example (`vcom-server config example`) with each
    // setting uncommented.
    let full: String = vcom_server::config::keys::example()
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        ("empty", Vec::new()),
        ("every_key", full.as_bytes().to_vec()),
        ("unknown_key", b"pasword = \"x\"\n".to_vec()),
        ("out_of_range", b"max_file_size = 0\n".to_vec()),
        ("wrong_type", b"max_connections = \"ten\"\n".to_vec()),
        ("cert_without_key", b"[tls]\ncert = \"a\"\n".to_vec()),
        // `names` may be left out like every other key (it once could not).
        (
            "tls_without_names",
            b"[tls]\ncert = \"/etc/vcom/cert.pem\"\nkey = \"/etc/vcom/key.pem\"\n".to_vec(),
        ),
        (
            "password_past_its_limit",
            b"password = \"abcdef\"\n[limits]\nmax_password_len = 3\n".to_vec(),
        ),
        ("duplicate_table", b"[tls]\n[tls]\n".to_vec()),
        (
            "error_after_multibyte_text",
            "password = \"\u{e9}\u{e9}\u{e9}\"\n# \u{1f600}\nauth = \u{e9}\n"
                .as_bytes()
                .to_vec(),
        ),
        ("invalid_utf8", b"password = \"\xff\xfe\"\n".to_vec()),
        (
            "integer_overflow",
            b"max_file_size = 18446744073709551616\n".to_vec(),
        ),
        // Read as choices of keys and values: table, key, value, three bytes each.
        (
            "choices",
            vec![0, 9, 21, 1, 2, 19, 2, 2, 41, 3, 0, 1, 4, 0, 0],
        ),
    ]
}

#[test]
fn every_committed_config_input_is_a_valid_configuration_or_a_clear_error() {
    check_generated("config", &config_seeds());
    let files = committed("config");
    assert!(files.len() >= config_seeds().len(), "{} files", files.len());
    for (name, bytes) in files {
        eprintln!("{name}");
        config_check::check(&bytes);
    }
}

#[test]
fn the_config_checks_see_what_each_seed_is_named_for() {
    use std::path::Path;
    use vcom_server::{ConfigError, ServerConfig};
    let parse = |text: &str| ServerConfig::from_toml(text, Path::new("fuzz.toml"));
    let seeds = config_seeds();
    let text = |name: &str| {
        let (_, bytes) = seeds.iter().find(|(n, _)| *n == name).unwrap();
        String::from_utf8_lossy(bytes).into_owned()
    };
    assert!(parse(&text("empty")).is_ok());
    assert!(parse(&text("every_key")).is_ok());
    let tls = parse(&text("tls_without_names")).unwrap().tls;
    assert!(tls.key.is_some() && tls.names.is_empty(), "{tls:?}");
    for name in [
        "unknown_key",
        "wrong_type",
        "duplicate_table",
        "integer_overflow",
    ] {
        assert!(
            matches!(parse(&text(name)), Err(ConfigError::Parse { .. })),
            "{name}"
        );
    }
    for (name, key) in [
        ("out_of_range", "max_file_size"),
        ("cert_without_key", "tls"),
        ("password_past_its_limit", "password"),
    ] {
        match parse(&text(name)) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // The choices seed writes keys of every table.
    let written = config_check::toml_from(&seeds.last().unwrap().1);
    for table in ["[limits]", "[tls]", "[retention]", "[no_such_table]"] {
        assert!(written.contains(table), "{written}");
    }
}

// ------------------------------------------------------------------------- client

/// Flags of the client target's first byte.
const EXT: u8 = 1;
const ACCEPT_OFFERS: u8 = 1 << 1;
const DECLINE_OFFERS: u8 = 2 << 1;
const ONE_EVENT: u8 = 8;
const ACCEPTED_FIRST: u8 = 16;

fn stream(flags: u8, packets: &[ServerPacket]) -> Vec<u8> {
    let mut bytes = vec![flags];
    for p in packets {
        bytes.extend_from_slice(&p.to_bytes());
    }
    bytes
}

fn offer(transfer: i32, size: u64, name: &str) -> ServerPacket {
    FileTransferOffer {
        sender: uid("bob"),
        size: FileSize::new(size).unwrap(),
        name: name.into(),
        transfer: TransferId(transfer),
    }
    .into()
}

fn chunk(transfer: i32, data: &'static [u8]) -> ServerPacket {
    FileChunk {
        transfer: TransferId(transfer),
        data: Bytes::from_static(data),
    }
    .into()
}

fn complete(transfer: i32) -> ServerPacket {
    FileTransferComplete {
        transfer: TransferId(transfer),
    }
    .into()
}

fn direct(text: &'static str) -> ServerPacket {
    UserMessage {
        sender: uid("bob"),
        read: false,
        sent_at: Timestamp(1_700_000_000_000),
        kind: MessageKind::Text,
        data: Bytes::from_static(text.as_bytes()),
    }
    .into()
}

fn client_seeds() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let ok = |messages, files| Outcome {
        logged_in: true,
        server_closed: true,
        messages,
        files,
    };
    let failed = Outcome {
        logged_in: true,
        ..Outcome::default()
    };
    let group = GroupMessage {
        sender: uid("carol"),
        group: GroupId(3),
        read: true,
        sent_at: Timestamp(5),
        kind: MessageKind::Image,
        data: Bytes::from_static(&[0x89, b'P', b'N', b'G']),
    };
    let accepted = ConnectionAccepted {
        device: DeviceId(7),
    };
    vec![
        (
            "session",
            stream(
                0,
                &[
                    accepted.clone().into(),
                    RequestUserListsSync {
                        friends: Timestamp(5),
                        blocks: Timestamp(0),
                    }
                    .into(),
                    FriendList {
                        entries: vec![uid("bob"), uid("carol"), uid("bob")],
                    }
                    .into(),
                    Broadcast {
                        text: "maintenance at 18:00".into(),
                    }
                    .into(),
                    direct("hello"),
                    group.clone().into(),
                    Ping { nonce: 7 }.into(),
                ],
            ),
            ok(2, 0),
        ),
        (
            "extension_set",
            stream(
                EXT | ACCEPTED_FIRST,
                &[
                    Sequence { seq: 1 }.into(),
                    direct("one"),
                    Sequence { seq: 2 }.into(),
                    group.into(),
                    Sequence { seq: 1 }.into(),
                    direct("one"),
                    SendAck {
                        client_id: 4,
                        outcome: SendOutcome::Stored,
                    }
                    .into(),
                ],
            ),
            ok(2, 0),
        ),
        (
            "file_accepted",
            stream(
                ACCEPTED_FIRST | ACCEPT_OFFERS,
                &[
                    offer(5, 10, "notes.txt"),
                    chunk(5, b"0123"),
                    chunk(5, b"456789"),
                    complete(5),
                ],
            ),
            ok(0, 1),
        ),
        (
            "file_with_a_hostile_name",
            stream(
                ACCEPTED_FIRST | ACCEPT_OFFERS | ONE_EVENT,
                &[
                    offer(6, 2, "../../.bashrc"),
                    chunk(6, b"ab"),
                    complete(6),
                    offer(7, 1, "con.txt"),
                    chunk(7, b"x"),
                    complete(7),
                ],
            ),
            ok(0, 1),
        ),
        (
            "file_too_long",
            stream(
                ACCEPTED_FIRST | ACCEPT_OFFERS,
                &[offer(8, 3, "a"), chunk(8, b"abcd"), complete(8)],
            ),
            ok(0, 0),
        ),
        (
            "file_reoffered_while_received",
            stream(
                ACCEPTED_FIRST | ACCEPT_OFFERS,
                &[offer(9, 4, "a"), chunk(9, b"ab"), offer(9, 4, "b")],
            ),
            failed,
        ),
        (
            "file_declined_then_aborted",
            stream(
                ACCEPTED_FIRST | DECLINE_OFFERS,
                &[
                    offer(10, 4, "a"),
                    FileTransferAbort {
                        transfer: TransferId(10),
                        reason: AbortReason::Cancelled,
                    }
                    .into(),
                    chunk(10, b"ab"),
                ],
            ),
            ok(0, 0),
        ),
        (
            "denied",
            stream(
                0,
                &[ConnectionDenied {
                    code: DenyCode::WrongPassword,
                }
                .into()],
            ),
            Outcome::default(),
        ),
        (
            "device_zero",
            stream(
                0,
                &[ConnectionAccepted {
                    device: DeviceId(0),
                }
                .into()],
            ),
            Outcome::default(),
        ),
        (
            "second_login_answer",
            stream(ACCEPTED_FIRST, &[accepted.into()]),
            failed,
        ),
        (
            "unrequested_lists_and_transfer_id",
            stream(
                ACCEPTED_FIRST,
                &[
                    BlockList {
                        entries: vec![uid("x")],
                    }
                    .into(),
                    FileTransferId {
                        transfer: TransferId(1),
                    }
                    .into(),
                ],
            ),
            failed,
        ),
        (
            "sequence_without_extensions",
            stream(ACCEPTED_FIRST, &[Sequence { seq: 1 }.into()]),
            failed,
        ),
        (
            "message_without_sequence",
            stream(EXT | ACCEPTED_FIRST, &[direct("unnumbered")]),
            failed,
        ),
        (
            "garbage_after_login",
            [stream(ACCEPTED_FIRST, &[]), vec![0, 0, 1, 255, 1, 2]].concat(),
            failed,
        ),
        (
            "truncated_message",
            {
                let mut bytes = stream(ACCEPTED_FIRST, &[direct("cut short")]);
                bytes.truncate(bytes.len() - 3);
                bytes
            },
            failed,
        ),
    ]
}

#[test]
fn the_client_seeds_are_committed_and_end_as_they_are_named() {
    let seeds = client_seeds();
    let bytes: Vec<(&str, Vec<u8>)> = seeds.iter().map(|(n, b, _)| (*n, b.clone())).collect();
    check_generated("client", &bytes);
    for (name, bytes, expected) in seeds {
        assert_eq!(client_check::check(&bytes), expected, "{name}");
    }
}

#[test]
fn every_committed_client_input_is_handled_without_breaking_a_rule() {
    let files = committed("client");
    assert!(files.len() >= client_seeds().len(), "{} files", files.len());
    for (name, bytes) in files {
        eprintln!("{name}");
        client_check::check(&bytes);
    }
}
