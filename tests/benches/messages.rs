//! Direct messages end to end: sender -> server -> recipient over TLS on loopback, with
//! the server (the real `vcom_server::Server` and its SQLite store) in this process.
//!
//! - `throughput`: 50 sender/recipient pairs; each sender keeps a window of messages in
//!   flight (pipelined, in batched writes) while its recipient reads them, and criterion
//!   reports messages delivered per second. Every message is committed to the store
//!   before it is relayed, so this includes the store's group commit.
//! - `latency`: one message at a time on an otherwise idle server, from the sender's
//!   write to the recipient's decoded 264; `ping` is a Ping/Pong round trip on the same
//!   connection, the same path without the store. Besides criterion's mean, the p50,
//!   p90 and p99 of every sample taken are printed.
//!
//! Run with `cargo bench -p vcom-tests --bench messages -- --warm-up-time 1 --measurement-time 10`.
//! Results and the machine are in `docs/benchmarks.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use vcom_protocol::{
    ClientPacket, MessageKind, Ping, SendUserMessage, ServerPacket, Timestamp, UserId,
};
use vcom_tests::harness::{Session, TestServer, login};

/// Sender/recipient pairs.
const PAIRS: usize = 50;
/// Messages each sender sends per iteration.
const PER_SENDER: usize = 200;
/// Messages a sender may have sent that its recipient has not read yet. Far below the
/// server's outbound queue (1 024), so a recipient is never dropped as not reading.
const WINDOW: usize = 64;
/// Messages per write: a client with a backlog writes them together, not one per flush.
const BATCH: usize = 8;
/// The body of every message: a short chat line.
const TEXT: &[u8] = b"Hello Bob! This is a short chat message of about one hundred bytes, as people type them......";
/// The bound on one iteration; the benchmark fails rather than hang.
const ITERATION_LIMIT: Duration = Duration::from_secs(120);
/// Quiet time before each latency sample (not counted), so the previous message's delivery record
/// has been committed and the server is idle.
const IDLE: Duration = Duration::from_millis(5);

fn message_to(recipient: &str) -> ClientPacket {
    ClientPacket::from(SendUserMessage {
        recipient: UserId::new(recipient).unwrap(),
        sent_at: Timestamp(1_700_000_000_000),
        kind: MessageKind::Text,
        data: Bytes::from_static(TEXT),
    })
}

struct Pair {
    sender: Session,
    recipient: Session,
    /// `BATCH` messages to the recipient, encoded.
    batch: Bytes,
}

struct Fixture {
    _dir: tempfile::TempDir,
    _server: TestServer,
    pairs: Vec<Pair>,
    alice: Session,
    bob: Session,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), |_| {}).await;
        let mut pairs = Vec::with_capacity(PAIRS);
        for i in 0..PAIRS {
            let to = format!("recipient-{i:02}");
            // The recipient logs in first: a message to an unknown user is dropped.
            let recipient = login(&server, &to).await;
            let sender = login(&server, &format!("sender-{i:02}")).await;
            let mut batch = BytesMut::new();
            for _ in 0..BATCH {
                message_to(&to).encode(&mut batch);
            }
            pairs.push(Pair {
                sender,
                recipient,
                batch: batch.freeze(),
            });
        }
        let bob = login(&server, "bob").await;
        let alice = login(&server, "alice").await;
        Fixture {
            _dir: dir,
            _server: server,
            pairs,
            alice,
            bob,
        }
    }

    /// Every pair exchanges `PER_SENDER` messages at once; returns the time taken.
    async fn round(&mut self) -> Duration {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(PAIRS);
        for pair in self.pairs.drain(..) {
            tasks.push(tokio::spawn(exchange(pair)));
        }
        for task in tasks {
            self.pairs.push(task.await.unwrap());
        }
        start.elapsed()
    }

    /// One message from alice to bob: from the write to bob's decoded 264.
    async fn one_message(&mut self, message: &ClientPacket) -> Duration {
        tokio::time::sleep(IDLE).await;
        let start = Instant::now();
        self.alice.client.send(message.clone()).await;
        match self.bob.client.recv().await {
            ServerPacket::UserMessage(m) => assert_eq!(m.data.len(), TEXT.len()),
            other => panic!("expected 264, got {other:?}"),
        }
        start.elapsed()
    }

    /// A Ping and its Pong on alice's connection.
    async fn ping(&mut self) -> Duration {
        tokio::time::sleep(IDLE).await;
        let start = Instant::now();
        self.alice.client.send(Ping { nonce: 7 }).await;
        match self.alice.client.recv().await {
            ServerPacket::Pong(p) => assert_eq!(p.nonce, 7),
            other => panic!("expected a Pong, got {other:?}"),
        }
        start.elapsed()
    }
}

/// Sends `PER_SENDER` messages, at most `WINDOW` unread, while the recipient reads them.
async fn exchange(pair: Pair) -> Pair {
    let Pair {
        mut sender,
        mut recipient,
        batch,
    } = pair;
    let window = Arc::new(Semaphore::new(WINDOW));
    let reader = {
        let window = window.clone();
        tokio::spawn(async move {
            for _ in 0..PER_SENDER {
                match recipient.client.recv().await {
                    ServerPacket::UserMessage(m) => assert_eq!(m.data.len(), TEXT.len()),
                    other => panic!("expected 264, got {other:?}"),
                }
                window.add_permits(1);
            }
            recipient
        })
    };
    for _ in 0..PER_SENDER / BATCH {
        window.acquire_many(BATCH as u32).await.unwrap().forget();
        sender.client.send_raw(&batch).await;
    }
    let recipient = reader.await.unwrap();
    Pair {
        sender,
        recipient,
        batch,
    }
}

/// CPU time this process has used so far, user and system (Linux: `/proc/self/stat`).
fn cpu_time() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let mut ticks = || fields.next()?.parse::<u64>().ok();
    let (user, system) = (ticks()?, ticks()?);
    // USER_HZ is 100 on Linux.
    Some((
        Duration::from_millis(user * 10),
        Duration::from_millis(system * 10),
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        return; // filtered out
    }
    samples.sort();
    eprintln!(
        "{name}: {} samples, p50 {:?}, p90 {:?}, p99 {:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
    );
}

fn messages(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut fixture = rt.block_on(Fixture::start());
    let bounded = |f: std::pin::Pin<Box<dyn Future<Output = Duration> + '_>>| {
        rt.block_on(async {
            tokio::time::timeout(ITERATION_LIMIT, f)
                .await
                .expect("an iteration finishes within its bound")
        })
    };

    let mut group = c.benchmark_group("messages");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements((PAIRS * PER_SENDER) as u64));
    let mut rounds = 0;
    let cpu_before = cpu_time();
    group.bench_function("throughput-50-pairs", |b| {
        b.iter_custom(|iters| {
            rounds += iters;
            (0..iters).map(|_| bounded(Box::pin(fixture.round()))).sum()
        })
    });
    if let (Some(before), Some(after), true) = (cpu_before, cpu_time(), rounds > 0) {
        // The whole process: server, store and the 100 clients.
        let messages = rounds as u32 * (PAIRS * PER_SENDER) as u32;
        eprintln!(
            "messages/throughput-50-pairs: {messages} messages, CPU per message: user {:?}, system {:?}",
            (after.0 - before.0) / messages,
            (after.1 - before.1) / messages,
        );
    }

    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    let message = message_to("bob");
    let mut latencies = Vec::new();
    group.bench_function("latency-one-message", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let took = bounded(Box::pin(fixture.one_message(&message)));
                latencies.push(took);
                total += took;
            }
            total
        })
    });
    let mut pings = Vec::new();
    group.bench_function("latency-ping", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let took = bounded(Box::pin(fixture.ping()));
                pings.push(took);
                total += took;
            }
            total
        })
    });
    group.finish();
    report("messages/latency-one-message", latencies);
    report("messages/latency-ping", pings);
}

criterion_group!(benches, messages);
criterion_main!(benches);
