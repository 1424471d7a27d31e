//! The checks behind the fuzz target `client`: the SDK's handling of what a server
//! sends. An input is a flags byte and then the bytes a server writes, from the login's
//! answer on; the SDK logs in and runs its session over an in-memory pipe
//! (`Client::connect_over`), with the real profile, history and file handling in a
//! temporary directory, while an application reads every event and answers file offers
//! as the flags say.
//!
//! What must hold, whatever the bytes (`crates/vcom-client/src/lib.rs`, "Invariants",
//! and `docs/protocol.md`): nothing panics and nothing hangs; the login succeeds exactly
//! when the first packet is a ConnectionAccepted (257) with a positive device, and a
//! ConnectionDenied (258) is reported with its code; the event stream ends with one
//! `Disconnected`; a server that closes cleanly after valid packets is reported as such
//! and anything invalid ends the connection with an error; messages and broadcasts
//! arrive as sent, in order; a received file is saved whole inside the chosen directory
//! and no partial file is left behind; and everything the client writes back is valid:
//! its login, a Pong for each Ping, a list answer per request, receipts only for
//! sequence numbers the server sent (and only with the extension set), answers only to
//! offers, and nothing it was not asked to send.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use vcom_client::{
    Client, ClientConfig, ClientError, DisconnectReason, Event, Message, TransferOutcome, UserId,
};
use vcom_protocol::{
    ClientPacket, ConnectionAccepted, DecodeError, Decoded, DeviceId, Limits, ListSync,
    ServerPacket, TransferId,
};

/// How long one input may take before the SDK counts as hung.
const HANG: Duration = Duration::from_secs(20);

/// How one input ended, so that tests can check their seeds go where they mean to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The login succeeded.
    pub logged_in: bool,
    /// The connection ended because the server closed it (not with an error).
    pub server_closed: bool,
    /// Messages that became events.
    pub messages: usize,
    /// Files received whole.
    pub files: usize,
}

/// Everything the fuzz target `client` does with one input.
///
/// The flags byte: bit 0, the extension set is negotiated; bits 1-2, what the
/// application does with a file offer (0 keeps it unanswered, 1 accepts it, 2 declines
/// it, 3 drops it); bit 3, an event queue of one instead of 64; bit 4, a
/// ConnectionAccepted (257) comes before the bytes.
pub fn check(data: &[u8]) -> Outcome {
    let Some((&flags, stream)) = data.split_first() else {
        return Outcome::default();
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot start a runtime: {e}"),
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot make a temporary directory: {e}"),
    };
    let script = Script::new(flags, stream);
    let seen = runtime.block_on(run(&script, dir.path()));
    script.check(&seen, dir.path());
    Outcome {
        logged_in: matches!(seen.login, Some(Ok(_))),
        server_closed: matches!(seen.disconnected, Some(DisconnectReason::ServerClosed)),
        messages: seen.messages.len(),
        files: seen.completed.len(),
    }
}

/// The server's side of one input, decoded as the SDK will decode it.
struct Script {
    ext: bool,
    policy: u8,
    capacity: usize,
    bytes: Vec<u8>,
    /// The packets at the front of `bytes`, each with the offset of its end.
    packets: Vec<(ServerPacket, usize)>,
    /// What follows them: `Ok(n)` for `n` bytes of an incomplete packet, or the error
    /// that makes the next packet invalid.
    end: Result<usize, DecodeError>,
}

impl Script {
    fn new(flags: u8, stream: &[u8]) -> Script {
        let mut bytes = Vec::new();
        if flags & 16 != 0 {
            let accepted = ConnectionAccepted {
                device: DeviceId(1),
            };
            bytes.extend_from_slice(&ServerPacket::from(accepted).to_bytes());
        }
        bytes.extend_from_slice(stream);
        let limits = Limits::default();
        let mut packets = Vec::new();
        let mut at = 0;
        let end = loop {
            match ServerPacket::decode(&bytes[at..], &limits) {
                Ok(Decoded::Complete { packet, len }) => {
                    at += len;
                    packets.push((packet, at));
                }
                Ok(Decoded::Incomplete { .. }) => break Ok(bytes.len() - at),
                Err(e) => break Err(e),
            }
        };
        Script {
            ext: flags & 1 != 0,
            policy: (flags >> 1) & 3,
            capacity: if flags & 8 != 0 { 1 } else { 64 },
            bytes,
            packets,
            end,
        }
    }

    /// The packets after the login's answer.
    fn session(&self) -> impl Iterator<Item = &ServerPacket> {
        self.packets.iter().skip(1).map(|(p, _)| p)
    }

    /// Packets the SDK must refuse whatever came before them: a second login answer, a
    /// transfer identifier it never asked for, extension packets without the extension
    /// set.
    fn always_refused(&self) -> bool {
        self.session().any(|p| match p {
            ServerPacket::ConnectionAccepted(_)
            | ServerPacket::ConnectionDenied(_)
            | ServerPacket::FileTransferId(_) => true,
            ServerPacket::Sequence(_)
            | ServerPacket::SendAck(_)
            | ServerPacket::GroupResult(_)
            | ServerPacket::GroupList(_)
            | ServerPacket::GroupInfo(_)
            | ServerPacket::GroupRemoved(_) => !self.ext,
            _ => false,
        })
    }

    /// The sizes of the files offered, by transfer.
    fn offers(&self) -> HashMap<TransferId, HashSet<u64>> {
        let mut offers: HashMap<TransferId, HashSet<u64>> = HashMap::new();
        for p in self.session() {
            if let ServerPacket::FileTransferOffer(o) = p {
                offers.entry(o.transfer).or_default().insert(o.size.bytes());
            }
        }
        offers
    }

    /// Checks what the SDK did with the script.
    fn check(&self, seen: &Seen, dir: &Path) {
        let Some(login) = &seen.login else {
            panic!("no login outcome")
        };
        let login_answer = self.packets.first().map(|(p, _)| p);
        match (login, login_answer) {
            (Ok(device), Some(ServerPacket::ConnectionAccepted(a))) => {
                assert!(a.device.get() >= 1, "logged in with device {}", a.device);
                assert_eq!(*device, a.device, "the device issued");
            }
            (Ok(device), other) => panic!("logged in as {device} after {other:?}"),
            (Err(e), Some(ServerPacket::ConnectionAccepted(a))) if a.device.get() >= 1 => {
                panic!("a valid ConnectionAccepted ({}) refused: {e}", a.device)
            }
            (Err(ClientError::LoginDenied(code)), Some(ServerPacket::ConnectionDenied(d))) => {
                assert_eq!(*code, d.code, "the denial's code");
            }
            (Err(ClientError::LoginDenied(code)), other) => {
                panic!("login denied ({code}) after {other:?}")
            }
            (Err(_), _) => {}
        }
        self.check_written(seen);
        if login.is_err() {
            return;
        }
        let Some(reason) = &seen.disconnected else {
            panic!("the event stream ended without Disconnected")
        };
        assert_eq!(seen.after_disconnect, 0, "events after Disconnected");
        let clean = self.end == Ok(0);
        match reason {
            DisconnectReason::ServerClosed => {
                assert!(clean, "ServerClosed after invalid bytes ({:?})", self.end);
                assert!(
                    !self.always_refused(),
                    "ServerClosed after a refused packet"
                );
            }
            DisconnectReason::Error(_) => {}
            other => panic!("disconnected with {other:?}, the application closed nothing"),
        }
        if !clean || self.always_refused() {
            assert!(
                matches!(reason, DisconnectReason::Error(_)),
                "{reason:?} after invalid input"
            );
        }

        // Broadcasts in order: those read, all of them when the server closed cleanly.
        let sent: Vec<&str> = self
            .session()
            .filter_map(|p| match p {
                ServerPacket::Broadcast(b) => Some(b.text.as_str()),
                _ => None,
            })
            .collect();
        let got: Vec<&str> = seen.broadcasts.iter().map(String::as_str).collect();
        assert!(sent.starts_with(&got), "broadcasts {got:?} of {sent:?}");
        if matches!(reason, DisconnectReason::ServerClosed) {
            assert_eq!(got, sent, "broadcasts lost");
        }

        // Messages: each one the server sent, in order, none twice for one packet.
        let mut messages = self.session().filter_map(|p| match p {
            ServerPacket::UserMessage(m) => Some((
                m.sender.clone(),
                None,
                m.sent_at,
                m.kind,
                m.data.clone(),
                m.read,
            )),
            ServerPacket::GroupMessage(m) => Some((
                m.sender.clone(),
                Some(m.group),
                m.sent_at,
                m.kind,
                m.data.clone(),
                m.read,
            )),
            _ => None,
        });
        for m in &seen.messages {
            assert!(m.history_id > 0, "history id {}", m.history_id);
            let event = (
                m.sender.clone(),
                m.group,
                m.sent_at,
                m.kind,
                m.data.clone(),
                m.read,
            );
            assert!(
                messages.any(|sent| sent == event),
                "a message the server did not send, or out of order: {m:?}"
            );
        }

        // Files: whole, inside the directory, and no partial file left behind.
        let offers = self.offers();
        let files = dir.join("files");
        for (transfer, done, total) in &seen.progress {
            assert!(done <= total, "{transfer}: {done} of {total} bytes");
            assert!(
                offers
                    .get(transfer)
                    .is_some_and(|sizes| sizes.contains(total)),
                "{transfer}: progress of a file never offered"
            );
        }
        for (transfer, path) in &seen.completed {
            assert_eq!(self.policy, 1, "{transfer} completed but was not accepted");
            assert_eq!(path.parent(), Some(files.as_path()), "{}", path.display());
            let len = match std::fs::metadata(path) {
                Ok(meta) => meta.len(),
                Err(e) => panic!("{}: {e}", path.display()),
            };
            assert!(
                offers
                    .get(transfer)
                    .is_some_and(|sizes| sizes.contains(&len)),
                "{transfer}: {len} bytes saved"
            );
        }
        if let Ok(entries) = std::fs::read_dir(&files) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(".vcom-transfer-"), "{name} left behind");
            }
        }
    }

    /// Checks what the client wrote to the server.
    fn check_written(&self, seen: &Seen) {
        let limits = Limits::default();
        let mut written = Vec::new();
        let mut at = 0;
        while at < seen.written.len() {
            match ClientPacket::decode(&seen.written[at..], &limits) {
                Ok(Decoded::Complete { packet, len }) => {
                    written.push(packet);
                    at += len;
                }
                other => panic!("the client wrote invalid bytes at {at}: {other:?}"),
            }
        }
        let Some((ClientPacket::ConnectionRequest(login), rest)) = written.split_first() else {
            panic!("the client did not log in first: {written:?}")
        };
        assert_eq!(login.user, "alice");
        assert_eq!(
            login.device,
            DeviceId::NEW,
            "a fresh profile asks for a device"
        );
        let pings: Vec<i64> = self
            .session()
            .filter_map(|p| match p {
                ServerPacket::Ping(p) => Some(p.nonce),
                _ => None,
            })
            .collect();
        let sequences: HashSet<i64> = self
            .session()
            .filter_map(|p| match p {
                ServerPacket::Sequence(s) => Some(s.seq),
                _ => None,
            })
            .collect();
        let requests = self
            .session()
            .filter(|p| matches!(p, ServerPacket::RequestUserListsSync(_)))
            .count();
        let offers = self.offers();
        let mut pongs = Vec::new();
        let mut syncs = 0;
        let mut accepted = HashSet::new();
        for packet in rest {
            match packet {
                ClientPacket::Pong(p) => pongs.push(p.nonce),
                ClientPacket::UserListsSync(s) => {
                    syncs += 1;
                    for list in [&s.friends, &s.blocks] {
                        if let ListSync::Upload(entries) = list {
                            let unique: HashSet<&UserId> = entries.iter().collect();
                            assert_eq!(unique.len(), entries.len(), "a list with repeats");
                        }
                    }
                }
                ClientPacket::Receipt(r) => {
                    assert!(self.ext, "a receipt without the extension set");
                    assert!(
                        sequences.contains(&r.through),
                        "receipt through {}",
                        r.through
                    );
                }
                ClientPacket::FileTransferAccept(a) => {
                    assert_eq!(self.policy, 1, "accepted {} unasked", a.transfer);
                    assert!(offers.contains_key(&a.transfer), "accepted {}", a.transfer);
                    accepted.insert(a.transfer);
                }
                ClientPacket::FileTransferAbort(a) => {
                    assert!(offers.contains_key(&a.transfer), "aborted {}", a.transfer);
                }
                other => panic!("the client sent {} unasked", other.name()),
            }
        }
        assert!(
            pings.starts_with(&pongs),
            "pongs {pongs:?} for pings {pings:?}"
        );
        assert!(
            syncs <= requests,
            "{syncs} list answers to {requests} requests"
        );
    }
}

/// What the application saw.
#[derive(Default)]
struct Seen {
    login: Option<Result<DeviceId, ClientError>>,
    messages: Vec<Message>,
    broadcasts: Vec<String>,
    progress: Vec<(TransferId, u64, u64)>,
    completed: Vec<(TransferId, PathBuf)>,
    disconnected: Option<DisconnectReason>,
    after_disconnect: usize,
    /// Everything the client wrote.
    written: Vec<u8>,
}

/// Plays the script to the SDK over an in-memory pipe: the server's bytes are written in
/// pieces that end after each file offer, the next piece once the application has
/// answered it (so the answer and the file's data meet in a fixed order).
async fn run(script: &Script, dir: &Path) -> Seen {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (mut from_client, mut to_client) = tokio::io::split(server_end);
    let (answered, mut answers) = mpsc::unbounded_channel::<()>();
    let pauses: Vec<usize> = script
        .packets
        .iter()
        .skip(1)
        .filter(|(p, _)| matches!(p, ServerPacket::FileTransferOffer(_)))
        .map(|(_, end)| *end)
        .collect();
    let bytes = script.bytes.clone();
    let server = tokio::spawn(async move {
        let mut from = 0;
        for pause in pauses {
            if to_client.write_all(&bytes[from..pause]).await.is_err() {
                return;
            }
            from = pause;
            // None: the application is gone; the rest goes to a closed pipe.
            let _ = answers.recv().await;
        }
        let _ = to_client.write_all(&bytes[from..]).await;
        let _ = to_client.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut written = Vec::new();
        let _ = from_client.read_to_end(&mut written).await;
        written
    });
    let mut config = ClientConfig::new(
        "fuzz.invalid:7420",
        UserId::new("alice").unwrap_or_else(|e| panic!("{e}")),
        dir.join("profile"),
    );
    config.event_capacity = script.capacity;
    config.connect_timeout = HANG;
    config.extensions = script.ext;
    let files = dir.join("files");
    let app = application(
        Client::connect_over(client_end, config, script.ext),
        script.policy,
        files,
        answered,
    );
    let Ok(mut seen) = tokio::time::timeout(HANG, app).await else {
        panic!("the SDK hung: no Disconnected within {HANG:?}")
    };
    let Ok(Ok(())) = tokio::time::timeout(HANG, server).await else {
        panic!("the server's writes hung")
    };
    match tokio::time::timeout(HANG, reader).await {
        Ok(Ok(written)) => seen.written = written,
        _ => panic!("the client never closed its side"),
    }
    seen
}

/// The application: reads every event until the stream ends, answering offers.
async fn application(
    connecting: impl std::future::Future<
        Output = Result<(Client, vcom_client::EventStream), ClientError>,
    >,
    policy: u8,
    files: PathBuf,
    answered: mpsc::UnboundedSender<()>,
) -> Seen {
    let mut seen = Seen::default();
    let (client, mut events) = match connecting.await {
        Ok(connected) => connected,
        Err(e) => {
            seen.login = Some(Err(e));
            return seen;
        }
    };
    seen.login = Some(Ok(client.device_id()));
    let mut kept = Vec::new();
    while let Some(event) = events.next().await {
        if seen.disconnected.is_some() {
            seen.after_disconnect += 1;
            continue;
        }
        match event {
            Event::Message(m) | Event::GroupMessage(m) => seen.messages.push(m),
            Event::Broadcast { text } => seen.broadcasts.push(text),
            Event::ListsChanged(lists) => {
                for list in [&lists.friends, &lists.blocks] {
                    let unique: HashSet<&UserId> = list.entries.iter().collect();
                    assert_eq!(unique.len(), list.entries.len(), "a list with repeats");
                }
            }
            Event::FileOffer(offer) => {
                match policy {
                    0 => kept.push(offer),
                    1 => {
                        let _ = offer.accept(&files).await;
                    }
                    2 => {
                        let _ = offer.decline().await;
                    }
                    _ => drop(offer),
                }
                let _ = answered.send(());
            }
            Event::TransferProgress {
                transfer,
                done,
                total,
            } => seen.progress.push((transfer, done, total)),
            Event::TransferFinished { transfer, outcome } => {
                if let TransferOutcome::Completed { path } = outcome {
                    seen.completed.push((transfer, path));
                }
            }
            Event::Disconnected { reason } => seen.disconnected = Some(reason),
            other => panic!("an event this SDK does not have: {other:?}"),
        }
    }
    drop(kept);
    drop(client);
    seen
}
