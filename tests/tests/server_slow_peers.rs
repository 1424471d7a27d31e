//! Slow and dead peers (`docs/reliability.md`, "Slow and dead peers"): a peer that goes
//! silent, one that dribbles its handshake, its login or its packets a byte at a time, and
//! a file recipient that stops reading mid-transfer. Each is bounded in memory and time by
//! the configured timeouts (short ones here, instead of real minutes) and cleaned up,
//! and meanwhile an unaffected pair's messages keep arriving within [`LATENCY_BOUND`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hostile::{
    MEASURING, Raw, Sampler, be, client_hello, no_sessions_of, resident_bytes, stat, string,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vcom_protocol::{
    AbortReason, ClientPacket, DeviceId, FileChunk, FileSize, FileTransferAbort,
    FileTransferAccept, FileTransferRequest, ServerPacket, TransferId,
};
use vcom_tests::harness::{
    Identity, TIMEOUT, login_ext, start_with_users, text_to, tls_connect, uid,
};
use vcom_tests::recv_packet;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Writes `bytes` one at a time, one every `pace`, while watching for the server to close
/// the connection; returns how many bytes went out and how long it took until the close.
/// Fails if every byte was written before the server closed (nothing cut it off).
async fn dribble_until_closed<R, W>(
    mut read: R,
    mut write: W,
    bytes: &[u8],
    pace: Duration,
) -> (usize, Duration)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let mut tick = tokio::time::interval(pace);
    let mut sent = 0;
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            r = read.read(&mut buf) => match r {
                Ok(0) | Err(_) => return (sent, start.elapsed()),
                Ok(n) => panic!("the server answered a partial packet: {:02x?}", &buf[..n]),
            },
            _ = tick.tick() => {
                assert!(sent < bytes.len(), "all {sent} bytes went out and the server waited");
                if write.write_all(&bytes[sent..=sent]).await.is_err()
                    || write.flush().await.is_err()
                {
                    return (sent, start.elapsed());
                }
                sent += 1;
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the server held the dribbling connection for {TIMEOUT:?}"
        );
    }
}

/// A ClientHello sent one byte every 50 ms (the whole would take over 10 s): the
/// handshake timeout (1 s here, 5 s by default) closes the connection long before.
#[tokio::test]
async fn a_handshake_dribbled_a_byte_at_a_time_is_cut_off_by_the_handshake_timeout() {
    let (_dir, server, [alice, bob]) = start_with_users(
        |c| {
            c.handshake_timeout_secs = 1;
            c.login_timeout_secs = 600;
        },
        ["alice", "bob"],
    )
    .await;
    let sampler = Sampler::start(alice, bob, "bob");
    let hello = client_hello();
    let pace = Duration::from_millis(50).max(Duration::from_secs(12) / hello.len() as u32);
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let (read, write) = tcp.split();
    let (sent, after) = dribble_until_closed(read, write, &hello, pace).await;
    let (_, _, latencies) = sampler.finish().await;
    eprintln!(
        "handshake dribble: closed after {sent} of {} bytes, {after:?}",
        hello.len()
    );
    latencies.report("a handshake was dribbled");
    server.stop().await;
}

/// After the handshake, a login (256 with a 4000-byte identifier) sent one byte every
/// 10 ms (40 s for the whole): the login timeout (2 s here, 10 s by default) closes the
/// connection without an answer.
#[tokio::test]
async fn a_login_dribbled_a_byte_at_a_time_is_cut_off_by_the_login_timeout() {
    let (_dir, server, [alice, bob]) = start_with_users(
        |c| {
            c.handshake_timeout_secs = 1;
            c.login_timeout_secs = 2;
        },
        ["alice", "bob"],
    )
    .await;
    let sampler = Sampler::start(alice, bob, "bob");
    let login = [be(256), string(&[b'x'; 4000]), be(-1), string(b"")].concat();
    let tls = tls_connect(&server, Some(&Identity::generate("slow"))).await;
    let (read, write) = tokio::io::split(tls);
    let (sent, after) = dribble_until_closed(read, write, &login, Duration::from_millis(10)).await;
    let (_, _, latencies) = sampler.finish().await;
    eprintln!(
        "login dribble: closed after {sent} of {} bytes, {after:?}",
        login.len()
    );
    latencies.report("a login was dribbled");
    assert_eq!(stat(&server, "logins").await, 2, "only alice and bob");
    server.stop().await;
}

/// Twenty logged-in connections each dribble a message to carol, one byte every 20 ms:
/// the server holds each partial packet (for at most `packet_timeout_secs`, 60 s by
/// default; these take under a second) without holding anyone else up, and delivers every
/// message once it is whole.
#[tokio::test]
async fn logged_in_connections_dribbling_packets_hold_up_nobody_else() {
    const DRIBBLERS: usize = 20;
    let (_dir, server, [alice, bob, mut carol]) =
        start_with_users(|_| {}, ["alice", "bob", "carol"]).await;
    let sampler = Sampler::start(alice, bob, "bob");
    let mallory = Identity::generate("mallory");
    let mut tasks = Vec::new();
    let (first, device) = Raw::login(&server, "mallory", &mallory, DeviceId::NEW, false).await;
    drop(first);
    for i in 0..DRIBBLERS {
        let (mut raw, _) = Raw::login(&server, "mallory", &mallory, device, false).await;
        tasks.push(tokio::spawn(async move {
            let bytes =
                ClientPacket::from(text_to("carol", &format!("slowly {i:02}"), 1)).to_bytes();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for byte in bytes.iter() {
                tick.tick().await;
                raw.send_raw(&[*byte]).await;
            }
            raw
        }));
    }
    let mut held = Vec::new();
    for task in tasks {
        held.push(tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap());
    }
    let mut got = Vec::new();
    for _ in 0..DRIBBLERS {
        let m = recv_packet!(carol.client, UserMessage);
        assert_eq!(m.sender, uid("mallory"));
        got.push(String::from_utf8(m.data.to_vec()).unwrap());
    }
    got.sort();
    let want: Vec<String> = (0..DRIBBLERS).map(|i| format!("slowly {i:02}")).collect();
    assert_eq!(got, want);
    let (_, _, latencies) = sampler.finish().await;
    latencies.report(&format!("{DRIBBLERS} logged-in connections dribbled"));
    drop(held);
    no_sessions_of(&server, "mallory").await;
    server.stop().await;
}

/// Sixty-four logged-in connections each announce a 1 MiB message and send half of it:
/// the server holds what they sent (a partial packet costs at most `max_message_len`
/// plus a header per connection) and nothing more, serves everyone else, and releases it
/// all when they go.
#[tokio::test]
async fn half_sent_large_messages_cost_what_was_sent_and_are_released() {
    const HOLDERS: usize = 64;
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [alice, bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let sampler = Sampler::start(alice, bob, "bob");
    let mallory = Identity::generate("mallory");
    let (first, device) = Raw::login(&server, "mallory", &mallory, DeviceId::NEW, false).await;
    drop(first);
    let ts = 1i64.to_be_bytes();
    let header = [&be(266)[..], &string(b"bob"), &ts, &[1], &be(1_048_576)].concat();
    let half = vec![b'.'; 512 * 1024];
    let rss_before = resident_bytes();
    let mut held = Vec::new();
    for _ in 0..HOLDERS {
        let (mut raw, _) = Raw::login(&server, "mallory", &mallory, device, false).await;
        raw.send_raw(&header).await;
        raw.send_raw(&half).await;
        held.push(raw);
    }
    // The last holder's bytes reached the server once alice's next message got through
    // after them; sample once more to be sure the server read everything.
    let (alice, bob, latencies) = sampler.finish().await;
    let grown = resident_bytes().saturating_sub(rss_before);
    let sent = HOLDERS as u64 * (header.len() + half.len()) as u64;
    eprintln!(
        "{HOLDERS} half-sent 1 MiB messages: {} KiB sent, resident memory grew {} KiB",
        sent / KIB,
        grown / KIB
    );
    latencies.report(&format!("{HOLDERS} connections held half a message each"));
    // Client and server share the process: the clients' own buffers count too.
    assert!(
        grown < HOLDERS as u64 * (MIB + 64 * KIB) + 64 * MIB,
        "resident memory grew by {grown} bytes for {sent} bytes held"
    );
    drop(held);
    no_sessions_of(&server, "mallory").await;
    let sampler = Sampler::start(alice, bob, "bob");
    sampler.finish().await;
    server.stop().await;
}

/// A peer that goes silent after login (reads nothing, writes nothing, never closes: to
/// the server, a peer that vanished without FIN or RST) while alice sends it a 64 KiB
/// message every 10 ms: once a write to it has waited `write_timeout_secs` (1 s here;
/// its queue of 1024 would take ten more seconds to fill), it is disconnected and its
/// session, queue and socket are released; every message stays stored for its next login
/// (it negotiated receipts and confirmed none); an unaffected pair is served meanwhile.
#[tokio::test]
async fn a_peer_that_goes_silent_is_dropped_by_the_write_timeout_and_loses_nothing() {
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [mut alice, carol, dave]) =
        start_with_users(|c| c.write_timeout_secs = 1, ["alice", "carol", "dave"]).await;
    let bob_identity = Identity::generate("bob");
    let bob = login_ext(&server, "bob", &bob_identity, DeviceId::NEW).await;
    let bob_device = bob.device;
    let sampler = Sampler::start(carol, dave, "dave");
    let rss_before = resident_bytes();
    let start = Instant::now();
    let body = vec![b'.'; 64 * 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0;
    while stat(&server, "online_sessions").await == 4 {
        assert!(start.elapsed() < TIMEOUT, "bob was never dropped");
        tick.tick().await;
        let mut data = format!("{sent:05}").into_bytes();
        data.extend_from_slice(&body);
        alice
            .client
            .send(vcom_protocol::SendUserMessage {
                recipient: uid("bob"),
                sent_at: vcom_protocol::Timestamp(1),
                kind: vcom_protocol::MessageKind::Text,
                data: Bytes::from(data),
            })
            .await;
        sent += 1;
    }
    let after = start.elapsed();
    let grown = resident_bytes().saturating_sub(rss_before);
    alice.client.round_trip().await; // every message sent is stored
    let (_, _, latencies) = sampler.finish().await;
    eprintln!(
        "silent peer: dropped after {after:?}, {sent} messages of 64 KiB sent to it; \
         resident memory grew {} KiB",
        grown / KIB
    );
    latencies.report("a silent peer was being written to");
    assert!(grown < 128 * MIB, "resident memory grew by {grown} bytes");
    drop(bob);
    no_sessions_of(&server, "bob").await;

    let mut again = login_ext(&server, "bob", &bob_identity, bob_device).await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < sent {
        match again.client.recv().await {
            ServerPacket::Sequence(_) => {}
            ServerPacket::UserMessage(m) => {
                seen.insert(String::from_utf8(m.data[..5].to_vec()).unwrap());
            }
            other => panic!("expected 514 or 264, got {other:?}"),
        }
    }
    assert_eq!(seen.len(), sent, "every message arrives at the next login");
    server.stop().await;
}

/// A sender streaming a large file on a raw connection split in two, so it can read the
/// server's 270 while its writes are held back.
struct Pusher {
    pushed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<futures::stream::SplitSink<hostile::Transport, ClientPacket>>,
    stream: futures::stream::SplitStream<hostile::Transport>,
}

static FILLER: [u8; 1024] = [0x5a; 1024];

impl Pusher {
    fn start(raw: Raw, id: TransferId, size: u64) -> Pusher {
        let (mut sink, stream) = raw.io.split();
        let pushed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (pushed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while p.load(Ordering::Relaxed) < size && !s.load(Ordering::Relaxed) {
                let data = Bytes::from_static(&FILLER);
                let chunk = ClientPacket::from(FileChunk { transfer: id, data });
                if sink.send(chunk).await.is_err() {
                    break;
                }
                p.fetch_add(1024, Ordering::Relaxed);
            }
            sink
        });
        Pusher {
            pushed,
            stop,
            task,
            stream,
        }
    }

    /// Waits for the server's 270 (the only packet expected) and returns it with the
    /// bytes pushed by then; fails if the whole file went through.
    async fn until_aborted(&mut self) -> (FileTransferAbort, u64) {
        let abort = tokio::time::timeout(TIMEOUT, async {
            match self.stream.next().await {
                Some(Ok(ServerPacket::FileTransferAbort(a))) => a,
                other => panic!("expected 270, got {other:?}"),
            }
        })
        .await
        .expect("the transfer is aborted in time");
        (abort, self.pushed.load(Ordering::Relaxed))
    }

    /// Stops pushing and hands the connection back.
    async fn stop(self) -> Raw {
        self.stop.store(true, Ordering::Relaxed);
        let sink = tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the sender stops in time")
            .unwrap();
        Raw {
            io: sink.reunite(self.stream).unwrap(),
        }
    }
}

/// Alice (raw, so she can push and read at once) offers bob a file of `size`; bob accepts.
async fn accepted_transfer(
    server: &vcom_tests::harness::TestServer,
    bob: &mut vcom_tests::harness::Session,
    size: u64,
) -> (Raw, TransferId) {
    let (mut alice, _) = Raw::login(
        server,
        "alice",
        &Identity::generate("alice"),
        DeviceId::NEW,
        false,
    )
    .await;
    alice
        .send(FileTransferRequest {
            recipient: uid("bob"),
            size: FileSize::new(size).unwrap(),
            name: "big.bin".into(),
        })
        .await;
    let id = match alice.recv().await {
        ServerPacket::FileTransferId(t) => t.transfer,
        other => panic!("expected 269, got {other:?}"),
    };
    assert_eq!(recv_packet!(bob.client, FileTransferOffer).transfer, id);
    bob.client.send(FileTransferAccept { transfer: id }).await;
    match alice.recv().await {
        ServerPacket::FileTransferAccept(a) => assert_eq!(a.transfer, id),
        other => panic!("expected 272, got {other:?}"),
    }
    (alice, id)
}

/// Bob accepts a 100 MiB file, reads a little of it and stops reading altogether. The
/// sender is held back by the relay (a few MiB in flight at most), bob is disconnected
/// once a write to him has waited `write_timeout_secs` (1 s here), the transfer is
/// aborted with reason 3, the sender's connection goes on, memory stays bounded, and an
/// unaffected pair is served throughout.
#[tokio::test]
async fn a_file_recipient_that_stops_reading_is_dropped_and_the_sender_released() {
    const SIZE: u64 = 100 * MIB;
    let _measuring = MEASURING.lock().await;
    let (_dir, server, [carol, dave, mut bob]) = start_with_users(
        |c| {
            c.write_timeout_secs = 1;
            c.transfer_idle_timeout_secs = 600;
        },
        ["carol", "dave", "bob"],
    )
    .await;
    let sampler = Sampler::start(carol, dave, "dave");
    let (alice, id) = accepted_transfer(&server, &mut bob, SIZE).await;
    let rss_before = resident_bytes();
    let start = Instant::now();
    let mut pusher = Pusher::start(alice, id, SIZE);
    let mut read = 0;
    while read < 256 * KIB {
        read += recv_packet!(bob.client, FileChunk).data.len() as u64;
    }
    // Bob reads no more.
    let (abort, pushed) = pusher.until_aborted().await;
    let after = start.elapsed();
    let grown = resident_bytes().saturating_sub(rss_before);
    assert_eq!(
        (abort.transfer, abort.reason),
        (id, AbortReason::ConnectionDropped)
    );
    let mut alice = pusher.stop().await;
    let (_, _, latencies) = sampler.finish().await;
    eprintln!(
        "recipient stopped reading: sender held at {} KiB of {} MiB, aborted after {after:?}; \
         resident memory grew {} KiB",
        pushed / KIB,
        SIZE / MIB,
        grown / KIB
    );
    latencies.report("a file recipient had stopped reading");
    assert!(pushed < 24 * MIB, "the server took {pushed} bytes");
    assert!(grown < 64 * MIB, "resident memory grew by {grown} bytes");
    assert!(alice.round_trip().await.is_empty(), "the sender is served");
    drop(bob);
    no_sessions_of(&server, "bob").await;
    assert_eq!(stat(&server, "active_transfers").await, 0);
    server.stop().await;
}

/// With writes allowed to wait long (`write_timeout_secs` 120) but transfers not
/// (`transfer_idle_timeout_secs` 1 here), a recipient that stops reading keeps its
/// connection, the transfer is aborted with reason 6 on both sides once the relay has
/// waited that long for room, and the sender is released at once.
#[tokio::test]
async fn a_file_recipient_that_stops_reading_times_the_transfer_out_with_reason_6() {
    const SIZE: u64 = 100 * MIB;
    let (_dir, server, [carol, dave, mut bob]) = start_with_users(
        |c| {
            c.write_timeout_secs = 120;
            c.transfer_idle_timeout_secs = 1;
        },
        ["carol", "dave", "bob"],
    )
    .await;
    let sampler = Sampler::start(carol, dave, "dave");
    let (alice, id) = accepted_transfer(&server, &mut bob, SIZE).await;
    let mut pusher = Pusher::start(alice, id, SIZE);
    let (abort, pushed) = pusher.until_aborted().await;
    assert_eq!((abort.transfer, abort.reason), (id, AbortReason::TimedOut));
    let mut alice = pusher.stop().await;
    let (_, _, latencies) = sampler.finish().await;
    latencies.report("a file recipient was not reading (idle timeout)");
    assert!(pushed < 24 * MIB, "the server took {pushed} bytes");
    assert!(alice.round_trip().await.is_empty(), "the sender is served");
    assert_eq!(stat(&server, "active_transfers").await, 0);
    // Bob is still connected: reading again, he gets the 270 and the chunks that were
    // queued for him. The 270 may overtake them (the writer serves control packets
    // before file data), so chunks of the ended transfer can follow it.
    let mut told = false;
    for p in bob.client.round_trip().await {
        match p {
            ServerPacket::FileChunk(c) => assert_eq!(c.transfer, id),
            ServerPacket::FileTransferAbort(a) if !told => {
                assert_eq!((a.transfer, a.reason), (id, AbortReason::TimedOut));
                told = true;
            }
            other => panic!("expected 273 or one 270, got {other:?}"),
        }
    }
    assert!(told, "bob learns the transfer timed out");
    server.stop().await;
}
