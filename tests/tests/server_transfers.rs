//! File transfers (268-274) over real TLS, `docs/protocol.md`: the relay is byte-exact
//! and in order, every 270 reason is sent when its rule says, transfers are logged, chat
//! overtakes file data, and a recipient that stops reading holds the sender back instead
//! of growing the server's memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use vcom_protocol::{
    AbortReason, FileChunk, FileSize, FileTransferAbort, FileTransferAccept, FileTransferComplete,
    FileTransferOffer, FileTransferRequest, ServerPacket, TransferId,
};
use vcom_server::ServerConfig;
use vcom_store::{SqliteStore, Store, StoreConfig};
use vcom_tests::harness::{Session, TIMEOUT, TestServer, login, start_with_users, text_to, uid};
use vcom_tests::recv_packet;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Bytes that differ from chunk to chunk, so a lost, repeated or reordered chunk shows.
fn file_data(len: u64) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn request(to: &str, size: u64, name: &str) -> FileTransferRequest {
    FileTransferRequest {
        recipient: uid(to),
        size: FileSize::new(size).unwrap(),
        name: name.to_owned(),
    }
}

fn chunk(transfer: TransferId, data: &[u8]) -> FileChunk {
    FileChunk {
        transfer,
        data: Bytes::copy_from_slice(data),
    }
}

/// A 270 for `transfer` with `reason`.
fn abort(transfer: TransferId, reason: AbortReason) -> FileTransferAbort {
    FileTransferAbort { transfer, reason }
}

/// Sends 268 and returns the identifier the 269 carries.
async fn request_id(sender: &mut Session, to: &str, size: u64, name: &str) -> TransferId {
    sender.client.send(request(to, size, name)).await;
    recv_packet!(sender.client, FileTransferId).transfer
}

/// Waits for the next packet, which must be a 271 offer.
async fn expect_offer(s: &mut Session) -> FileTransferOffer {
    recv_packet!(s.client, FileTransferOffer)
}

/// Waits for the next packet, which must be a 272; returns the transfer it accepts.
async fn expect_accept(s: &mut Session) -> TransferId {
    recv_packet!(s.client, FileTransferAccept).transfer
}

/// Waits for the next packet, which must be a 270: (transfer, reason).
async fn expect_abort(s: &mut Session) -> (TransferId, AbortReason) {
    let p = recv_packet!(s.client, FileTransferAbort);
    (p.transfer, p.reason)
}

/// Requests a transfer from `sender` to `to`, and waits until `recipient` (logged in as
/// `to`) receives the 271 carrying the id of the 269.
async fn offered(
    sender: &mut Session,
    recipient: &mut Session,
    to: &str,
    size: u64,
    name: &str,
) -> TransferId {
    let id = request_id(sender, to, size, name).await;
    assert_eq!(expect_offer(recipient).await.transfer, id);
    id
}

/// Offers 5 bytes from `sender` to bob's two devices, waits until both have the offer,
/// lets `first` accept and waits for the sender's 272.
async fn accepted_by_first_of_two(
    sender: &mut Session,
    first: &mut Session,
    second: &mut Session,
) -> TransferId {
    let id = request_id(sender, "bob", 5, "x.txt").await;
    assert_eq!(expect_offer(first).await.transfer, id);
    assert_eq!(expect_offer(second).await.transfer, id);
    first.client.send(FileTransferAccept { transfer: id }).await;
    assert_eq!(expect_accept(sender).await, id);
    id
}

/// Skips relayed chunks of `id` until a 270 arrives: (reason, chunk bytes skipped).
async fn abort_after_chunks(s: &mut Session, id: TransferId) -> (AbortReason, u64) {
    let mut skipped = 0;
    loop {
        match s.client.recv().await {
            ServerPacket::FileChunk(c) if c.transfer == id => skipped += c.data.len() as u64,
            ServerPacket::FileTransferAbort(p) => {
                assert_eq!(p.transfer, id, "the abort names the transfer");
                return (p.reason, skipped);
            }
            other => panic!("expected 273 or 270 for {id}, got {other:?}"),
        }
    }
}

/// Offers a file from `sender` to `recipient` (logged in as `to`), who accepts it.
async fn accepted(
    sender: &mut Session,
    recipient: &mut Session,
    to: &str,
    size: u64,
) -> TransferId {
    let id = request_id(sender, to, size, "data.bin").await;
    let offer = expect_offer(recipient).await;
    assert_eq!(offer.transfer, id);
    recipient
        .client
        .send(FileTransferAccept { transfer: id })
        .await;
    assert_eq!(expect_accept(sender).await, id);
    id
}

/// Streams `data` as chunks of at most 1024 bytes, then 274.
async fn send_file(sender: &mut Session, id: TransferId, data: &[u8]) {
    for piece in data.chunks(1024) {
        sender.client.send(chunk(id, piece)).await;
    }
    sender
        .client
        .send(FileTransferComplete { transfer: id })
        .await;
}

/// Reads chunks of `id` until its 274 and returns them joined, failing on anything else.
async fn receive_file(recipient: &mut Session, id: TransferId) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        match recipient.client.recv().await {
            ServerPacket::FileChunk(c) => {
                assert_eq!(c.transfer, id);
                assert!(
                    (1..=1024).contains(&c.data.len()),
                    "a chunk holds 1..=1024 bytes"
                );
                data.extend_from_slice(&c.data);
            }
            ServerPacket::FileTransferComplete(c) => {
                assert_eq!(c.transfer, id);
                return data;
            }
            other => panic!("expected 273 or 274, got {other:?}"),
        }
    }
}

/// The process's resident memory, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * KIB
}

/// A sender that streams a large file as fast as the server takes it, in its own task,
/// counting the bytes whose writes completed; it cancels (270) when told to stop.
struct Pusher {
    pushed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Session>,
}

static FILLER: [u8; 1024] = [0x5a; 1024];

impl Pusher {
    fn start(mut sender: Session, id: TransferId, size: u64) -> Pusher {
        let pushed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (pushed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while p.load(Ordering::Relaxed) < size {
                if s.load(Ordering::Relaxed) {
                    sender.client.send(abort(id, AbortReason::Cancelled)).await;
                    return sender;
                }
                let data = Bytes::from_static(&FILLER);
                sender.client.send(FileChunk { transfer: id, data }).await;
                p.fetch_add(1024, Ordering::Relaxed);
            }
            sender
        });
        Pusher { pushed, stop, task }
    }

    fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Waits until no write has completed for `STALL`, and returns the bytes pushed.
    ///
    /// Fails if the whole file went through (nothing held the sender back) or if no stall
    /// is seen within [`TIMEOUT`]. A slow machine can only make a stall look earlier, with
    /// fewer bytes pushed, so the bounds asserted on the result stay sound.
    async fn until_stalled(&self, size: u64) -> u64 {
        const STALL: Duration = Duration::from_secs(2);
        let start = Instant::now();
        let (mut last, mut since) = (self.pushed(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.pushed();
            assert!(
                now < size,
                "the whole file went through: nothing held the sender back"
            );
            assert!(
                start.elapsed() < TIMEOUT,
                "the sender never stalled within {TIMEOUT:?}"
            );
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= STALL {
                return now;
            }
        }
    }

    /// Waits (bounded) until the sender has pushed more than `than`.
    async fn until_past(&self, than: u64) {
        tokio::time::timeout(TIMEOUT, async {
            while self.pushed() <= than {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the sender resumes once the recipient reads");
    }

    /// Makes the sender cancel (270) and hands its session back.
    async fn cancel(self) -> Session {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the sender finishes in time")
            .unwrap()
    }
}

// ---- the happy path --------------------------------------------------------------------

#[tokio::test]
async fn a_file_arrives_byte_exact_and_in_order_whatever_its_size() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    for size in [1, 1024, 1025, 3 * MIB + 7] {
        let data = file_data(size);
        let name = format!("file-{size}.bin");
        let id = request_id(&mut alice, "bob", size, &name).await;
        let offer = expect_offer(&mut bob).await;
        assert_eq!(offer.sender, uid("alice"));
        assert_eq!(offer.size.bytes(), size);
        assert_eq!(offer.name, name);
        assert_eq!(
            offer.transfer, id,
            "271 carries the id the sender got in 269"
        );
        bob.client.send(FileTransferAccept { transfer: id }).await;
        assert_eq!(expect_accept(&mut alice).await, id);

        // The recipient reads in its own task while the sender streams.
        let receiver = tokio::spawn(async move {
            let got = receive_file(&mut bob, id).await;
            (bob, got)
        });
        send_file(&mut alice, id, &data).await;
        let (b, got) = tokio::time::timeout(TIMEOUT, receiver)
            .await
            .unwrap()
            .unwrap();
        bob = b;
        assert_eq!(
            got.len() as u64,
            size,
            "{size} bytes announced, {size} relayed"
        );
        assert!(
            got == data,
            "the {size}-byte file arrived byte-exact, in order"
        );
        assert!(
            alice.client.round_trip().await.is_empty(),
            "the sender hears nothing after a completed transfer"
        );
    }
    server.stop().await;
}

// ---- every 270 reason ------------------------------------------------------------------

#[tokio::test]
async fn a_declined_offer_reaches_the_sender_as_reason_0() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = offered(&mut alice, &mut bob, "bob", 10, "x.txt").await;
    bob.client.send(abort(id, AbortReason::Declined)).await;
    assert_eq!(expect_abort(&mut alice).await, (id, AbortReason::Declined));
    assert!(
        bob.client.round_trip().await.is_empty(),
        "the decliner hears nothing back"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_file_larger_than_max_file_size_is_refused_with_reason_1() {
    let (_dir, server, [mut alice, mut bob]) =
        start_with_users(|c| c.max_file_size = 1000, ["alice", "bob"]).await;
    let id = request_id(&mut alice, "bob", 1001, "big.bin").await;
    assert_eq!(expect_abort(&mut alice).await, (id, AbortReason::TooLarge));
    assert!(
        bob.client.round_trip().await.is_empty(),
        "no offer was made"
    );

    // Exactly the limit is fine.
    offered(&mut alice, &mut bob, "bob", 1000, "ok.bin").await;
    server.stop().await;
}

#[tokio::test]
async fn a_file_for_a_known_user_who_is_not_online_is_refused_with_reason_2() {
    let (dir, server, [bob]) = start_with_users(|_| {}, ["bob"]).await;
    drop(bob);
    // A restart makes sure bob's session is gone, without guessing when it ends.
    server.stop().await;
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut alice = login(&server, "alice").await;
    let id = request_id(&mut alice, "bob", 10, "x.txt").await;
    assert_eq!(
        expect_abort(&mut alice).await,
        (id, AbortReason::RecipientOffline)
    );
    server.stop().await;
}

#[tokio::test]
async fn the_recipient_gets_reason_3_when_the_sender_drops_mid_stream() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 10 * KIB).await;
    alice.client.send(chunk(id, &[1; 1024])).await;
    alice.client.send(chunk(id, &[2; 1024])).await;
    drop(alice);
    let (reason, _) = abort_after_chunks(&mut bob, id).await;
    assert_eq!(reason, AbortReason::ConnectionDropped);
    assert!(
        bob.client
            .round_trip()
            .await
            .iter()
            .all(|p| matches!(p, ServerPacket::FileChunk(_)))
    );
    server.stop().await;
}

#[tokio::test]
async fn the_sender_gets_reason_3_when_the_recipient_drops_mid_stream() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 10 * KIB).await;
    alice.client.send(chunk(id, &[1; 1024])).await;
    assert_eq!(recv_packet!(bob.client, FileChunk).transfer, id);
    drop(bob);
    assert_eq!(
        expect_abort(&mut alice).await,
        (id, AbortReason::ConnectionDropped)
    );
    // Chunks that crossed the abort are ignored: the sender stays connected.
    alice.client.send(chunk(id, &[3; 1024])).await;
    assert!(alice.client.round_trip().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_sender_gets_reason_3_when_the_only_offered_device_drops_before_answering() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = offered(&mut alice, &mut bob, "bob", 10, "x.txt").await;
    drop(bob);
    assert_eq!(
        expect_abort(&mut alice).await,
        (id, AbortReason::ConnectionDropped)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_recipient_and_one_who_blocked_the_sender_look_the_same_reason_4() {
    let (_dir, server, [mut bob]) = start_with_users(|_| {}, ["bob"]).await;
    bob.block(&["mallory"]).await;
    let mut mallory = login(&server, "mallory").await;

    let blocked = request_id(&mut mallory, "bob", 10, "x.txt").await;
    let blocked_answer = mallory.client.round_trip().await;
    let unknown = request_id(&mut mallory, "nobody", 10, "x.txt").await;
    let unknown_answer = mallory.client.round_trip().await;

    let not_allowed = |id| vec![ServerPacket::from(abort(id, AbortReason::NotAllowed))];
    assert_eq!(blocked_answer, not_allowed(blocked));
    assert_eq!(unknown_answer, not_allowed(unknown));
    assert!(
        bob.client.round_trip().await.is_empty(),
        "the blocker sees nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn more_bytes_than_announced_abort_both_sides_with_reason_5() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 1500).await;
    alice.client.send(chunk(id, &[1; 1024])).await;
    alice.client.send(chunk(id, &[2; 477])).await; // one byte too many
    assert_eq!(
        expect_abort(&mut alice).await,
        (id, AbortReason::ProtocolViolation)
    );
    let (reason, relayed) = abort_after_chunks(&mut bob, id).await;
    assert_eq!(reason, AbortReason::ProtocolViolation);
    assert!(relayed <= 1024, "the chunk that overflows is not relayed");
    assert!(
        alice.client.round_trip().await.is_empty(),
        "the sender stays connected"
    );
    server.stop().await;
}

#[tokio::test]
async fn completing_before_every_byte_was_sent_aborts_both_sides_with_reason_5() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 2048).await;
    alice.client.send(chunk(id, &[1; 1024])).await;
    alice
        .client
        .send(FileTransferComplete { transfer: id })
        .await;
    assert_eq!(
        expect_abort(&mut alice).await,
        (id, AbortReason::ProtocolViolation)
    );
    let (reason, _) = abort_after_chunks(&mut bob, id).await;
    assert_eq!(reason, AbortReason::ProtocolViolation);
    assert!(
        bob.client.round_trip().await.is_empty(),
        "no 274 reaches the recipient"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_chunk_before_the_offer_is_accepted_aborts_with_reason_5() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = offered(&mut alice, &mut bob, "bob", 10, "x.txt").await;
    alice.client.send(chunk(id, b"too early")).await;
    assert_eq!(
        expect_abort(&mut alice).await,
        (id, AbortReason::ProtocolViolation)
    );
    assert_eq!(
        expect_abort(&mut bob).await,
        (id, AbortReason::ProtocolViolation),
        "the offered device learns the offer is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_chunk_over_1024_bytes_closes_the_sender_connection_and_others_carry_on() {
    let (_dir, server, [mut alice, mut bob, mut carol]) =
        start_with_users(|_| {}, ["alice", "bob", "carol"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 4 * KIB).await;
    // 273, the transfer, a length of 1025 and 1025 bytes: a decode error, not a packet.
    let mut raw = 273i32.to_be_bytes().to_vec();
    raw.extend_from_slice(&id.0.to_be_bytes());
    raw.extend_from_slice(&1025i32.to_be_bytes());
    raw.extend_from_slice(&[7; 1025]);
    alice.client.send_raw(&raw).await;
    assert!(alice.client.recv_until_closed().await.is_empty());
    assert_eq!(
        expect_abort(&mut bob).await,
        (id, AbortReason::ConnectionDropped),
        "the recipient learns the sender's connection dropped"
    );
    carol.client.send(text_to("bob", "still here", 1)).await;
    assert_eq!(
        &recv_packet!(bob.client, UserMessage).data[..],
        b"still here"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_transfer_times_out_with_reason_6_on_both_sides() {
    let (_dir, server, [mut alice, mut bob]) =
        start_with_users(|c| c.transfer_idle_timeout_secs = 1, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 10 * KIB).await;
    alice.client.send(chunk(id, &[1; 100])).await;
    // Nothing more is sent: the sweep aborts it about a second later.
    assert_eq!(expect_abort(&mut alice).await, (id, AbortReason::TimedOut));
    let (reason, relayed) = abort_after_chunks(&mut bob, id).await;
    assert_eq!((reason, relayed), (AbortReason::TimedOut, 100));
    server.stop().await;
}

#[tokio::test]
async fn the_first_device_to_accept_wins_and_the_other_gets_reason_7() {
    let (_dir, server, [mut alice, mut bob1]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut bob2 = bob1.second_device(&server, "bob").await;
    let id = accepted_by_first_of_two(&mut alice, &mut bob1, &mut bob2).await;
    assert_eq!(
        expect_abort(&mut bob2).await,
        (id, AbortReason::AcceptedElsewhere)
    );
    send_file(&mut alice, id, b"hello").await;
    assert_eq!(receive_file(&mut bob1, id).await, b"hello");
    assert!(
        bob2.client.round_trip().await.is_empty(),
        "the other device gets no data"
    );
    server.stop().await;
}

/// Two devices that accept at about the same time: the loser's 272 (or 270) crossed the
/// 270 reason 7 on the wire. That is a race, not a protocol violation; the loser stays
/// connected and the transfer goes on.
#[tokio::test]
async fn a_late_answer_from_the_device_that_lost_the_race_is_ignored() {
    let (_dir, server, [mut alice, mut bob1]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut bob2 = bob1.second_device(&server, "bob").await;
    let id = accepted_by_first_of_two(&mut alice, &mut bob1, &mut bob2).await;
    // bob2 answers as if it had not yet read its 270.
    bob2.client.send(FileTransferAccept { transfer: id }).await;
    bob2.client.send(abort(id, AbortReason::Declined)).await;
    assert_eq!(
        bob2.client.round_trip().await,
        vec![ServerPacket::from(abort(
            id,
            AbortReason::AcceptedElsewhere
        ))],
        "the loser is still connected and heard only reason 7"
    );
    send_file(&mut alice, id, b"hello").await;
    assert_eq!(receive_file(&mut bob1, id).await, b"hello");
    assert!(
        alice.client.round_trip().await.is_empty(),
        "the sender saw no abort"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_transfer_cancelled_by_the_sender_reaches_the_recipient_as_reason_8() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", 10 * KIB).await;
    alice.client.send(chunk(id, &[1; 1024])).await;
    alice.client.send(abort(id, AbortReason::Cancelled)).await;
    let (reason, _) = abort_after_chunks(&mut bob, id).await;
    assert_eq!(reason, AbortReason::Cancelled);
    assert!(
        alice.client.round_trip().await.is_empty(),
        "the sender is not told about its own cancel"
    );
    server.stop().await;
}

// ---- the transfer log ------------------------------------------------------------------

#[tokio::test]
async fn completed_and_aborted_transfers_are_logged_with_their_outcome() {
    let (dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;

    let done = accepted(&mut alice, &mut bob, "bob", 2000).await;
    send_file(&mut alice, done, &file_data(2000)).await;
    // The 274 is handled, and so logged, before the sender's Pong.
    alice.client.round_trip().await;
    assert_eq!(receive_file(&mut bob, done).await.len(), 2000);

    let declined = request_id(&mut alice, "bob", 300, "no.txt").await;
    expect_offer(&mut bob).await;
    bob.client
        .send(abort(declined, AbortReason::Declined))
        .await;
    bob.client.round_trip().await; // the decline is logged before bob's Pong
    assert_eq!(
        expect_abort(&mut alice).await,
        (declined, AbortReason::Declined)
    );
    let stats = server.admin(vcom_server::AdminRequest::Stats).await;
    assert!(stats.lines().any(|l| l == "logged_transfers 2"), "{stats}");
    server.stop().await;

    let path = ServerConfig::new(dir.path()).database_path();
    let store = SqliteStore::open(&path, StoreConfig::default()).unwrap();
    let log = store.transfers(10).await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    let (newest, oldest) = (&log[0], &log[1]);
    assert_eq!(
        (
            oldest.id,
            oldest.abort_reason,
            oldest.size,
            oldest.bytes_relayed
        ),
        (done, None, 2000, 2000),
        "completed: no reason, every byte relayed"
    );
    assert_eq!(
        (oldest.sender.as_str(), oldest.recipient.as_str()),
        ("alice", "bob")
    );
    assert_eq!(oldest.name, "data.bin");
    assert_eq!(
        (newest.id, newest.abort_reason, newest.bytes_relayed),
        (declined, Some(AbortReason::Declined.code()), 0),
        "declined: reason 0, nothing relayed"
    );
    assert_eq!(newest.name, "no.txt");
    assert!(oldest.ended_at >= oldest.started_at);
}

// ---- chat beside transfers, and bounded memory -----------------------------------------

/// Alice streams a 64 MiB file to bob, who accepted it and then stops reading, until the
/// whole pipe (sockets, TLS buffers, bob's 16-chunk queue) is full and alice is blocked.
/// Carol's message to bob then goes into bob's message queue, which the writer serves
/// first: when bob reads again, the message comes before the chunks that were waiting in
/// the chunk queue (at least 16 KiB of what alice pushed), long before the file ends, and
/// bob was never disconnected for the full pipe.
#[tokio::test]
async fn a_message_overtakes_file_data_queued_for_a_recipient_who_is_not_reading() {
    const SIZE: u64 = 64 * MIB;
    let (_dir, server, [mut alice, mut bob, mut carol]) =
        start_with_users(|c| c.write_timeout_secs = 120, ["alice", "bob", "carol"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", SIZE).await;
    let pusher = Pusher::start(alice, id, SIZE);
    let pushed = pusher.until_stalled(SIZE).await;

    carol.client.send(text_to("bob", "are you there?", 1)).await;
    carol.client.round_trip().await; // stored and queued for bob
    let mut skipped = 0;
    let before_message = loop {
        match bob.client.recv().await {
            ServerPacket::FileChunk(c) => skipped += c.data.len() as u64,
            ServerPacket::UserMessage(m) => {
                assert_eq!(&m.data[..], b"are you there?");
                break skipped;
            }
            other => panic!("expected 273 or 264, got {other:?}"),
        }
    };
    assert!(
        before_message + 16 * KIB <= pushed,
        "the message overtook the queued chunks: {before_message} bytes came before it, \
         {pushed} were pushed"
    );

    // Bob reads on, so alice can get her cancel through.
    let reader = tokio::spawn(async move { abort_after_chunks(&mut bob, id).await });
    let mut alice = pusher.cancel().await;
    let (reason, _) = tokio::time::timeout(TIMEOUT, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, AbortReason::Cancelled);
    assert!(alice.client.round_trip().await.is_empty());
    server.stop().await;
}

/// Bob accepts a 100 MiB file and stops reading; alice streams as fast as the server
/// lets her. This proves the relay reads from the sender only as fast as the recipient
/// takes data (`docs/protocol.md`):
///
/// - alice stalls (no write completes for 2 s) after pushing a few MiB: what the TCP and
///   TLS buffers on both legs hold plus bob's 16-chunk queue, far below the file size;
/// - the process's resident memory (server and clients share it) grows by less than
///   64 MiB meanwhile, so the server is not buffering the file in user space (kernel
///   socket buffers are not part of it: they are the bytes the first point allows);
/// - the stall is backpressure, not a broken transfer: once bob reads, alice moves on,
///   and her cancel still reaches bob.
#[tokio::test]
async fn a_recipient_that_stops_reading_holds_the_sender_back_with_bounded_memory() {
    const SIZE: u64 = 100 * MIB;
    let (_dir, server, [mut alice, mut bob]) =
        start_with_users(|c| c.write_timeout_secs = 120, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", SIZE).await;
    let rss_before = resident_bytes();

    let pusher = Pusher::start(alice, id, SIZE);
    let pushed = pusher.until_stalled(SIZE).await;
    let grown = resident_bytes().saturating_sub(rss_before);
    eprintln!(
        "backpressure: sender stalled after {} KiB of a {} MiB file; RSS grew {} KiB",
        pushed / KIB,
        SIZE / MIB,
        grown / KIB
    );
    // What the kernel may hold: both legs' send buffers (tcp_wmem max, 4 MiB on a stock
    // Linux) and receive windows that do not grow while nobody reads. 7.5 MiB measured.
    assert!(
        pushed < 24 * MIB,
        "the server took {pushed} bytes from a sender whose recipient reads nothing"
    );
    assert!(grown < 64 * MIB, "resident memory grew by {grown} bytes");

    // Bob reads a few MiB; alice, held back until then, moves past her stall.
    let mut read = 0;
    while read < 4 * MIB {
        read += recv_packet!(bob.client, FileChunk).data.len() as u64;
    }
    let reader = tokio::spawn(async move {
        let r = abort_after_chunks(&mut bob, id).await;
        (bob, r)
    });
    pusher.until_past(pushed).await;
    let mut alice = pusher.cancel().await;
    let (bob, (reason, _)) = tokio::time::timeout(TIMEOUT, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, AbortReason::Cancelled);
    assert!(alice.client.round_trip().await.is_empty());
    drop(bob); // its unread chunks must not hold up the shutdown
    server.stop().await;
}

/// While the relay waits for room in a stalled recipient's queue, the sender's packets
/// are not read: that is the backpressure. Once the transfer ends another way (here the
/// recipient declines mid-stream), that wait must end at once, so the sender's connection
/// is served again long before any write or idle timeout (both far above [`TIMEOUT`]).
#[tokio::test]
async fn a_sender_held_back_by_a_recipient_who_then_declines_is_released_at_once() {
    const SIZE: u64 = 100 * MIB;
    let (_dir, server, [mut alice, mut bob]) =
        start_with_users(|c| c.write_timeout_secs = 120, ["alice", "bob"]).await;
    let id = accepted(&mut alice, &mut bob, "bob", SIZE).await;
    let pusher = Pusher::start(alice, id, SIZE);
    let pushed = pusher.until_stalled(SIZE).await;

    bob.client.send(abort(id, AbortReason::Declined)).await;
    // Bob still reads nothing, yet alice's connection moves again.
    pusher.until_past(pushed).await;
    let mut alice = pusher.cancel().await;
    assert_eq!(expect_abort(&mut alice).await, (id, AbortReason::Declined));
    assert!(alice.client.round_trip().await.is_empty());
    drop(bob);
    server.stop().await;
}

#[tokio::test]
async fn a_sender_may_hold_only_max_transfers_per_user_open_offers() {
    let (_dir, server, [mut alice, mut bob]) =
        start_with_users(|c| c.max_transfers_per_user = 2, ["alice", "bob"]).await;
    let first = request_id(&mut alice, "bob", 10, "one.txt").await;
    let second = request_id(&mut alice, "bob", 10, "two.txt").await;
    for expected in [first, second] {
        assert_eq!(
            recv_packet!(bob.client, FileTransferOffer).transfer,
            expected
        );
    }
    // Bob answers neither; a third offer is refused at once, like a blocked one.
    let third = request_id(&mut alice, "bob", 10, "three.txt").await;
    assert_eq!(
        recv_packet!(alice.client, FileTransferAbort),
        abort(third, AbortReason::NotAllowed)
    );
    assert!(
        bob.client.round_trip().await.is_empty(),
        "bob is not offered it"
    );
    // Once one ends, there is room again.
    alice
        .client
        .send(abort(first, AbortReason::Cancelled))
        .await;
    let fourth = request_id(&mut alice, "bob", 10, "four.txt").await;
    assert_eq!(
        recv_packet!(bob.client, FileTransferAbort),
        abort(first, AbortReason::Cancelled)
    );
    assert_eq!(recv_packet!(bob.client, FileTransferOffer).transfer, fourth);
    server.stop().await;
}
