//! Write throughput of `SqliteStore`: group commit against one transaction per request.
//!
//! Many concurrent callers (tokio tasks) store messages, and in the second group also
//! mark each one delivered, as the server does when it relays a message live. Run with
//! `cargo bench -p vcom-store --bench store -- --warm-up-time 1 --measurement-time 3`.
//! Results and the machine are in `docs/benchmarks.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use vcom_protocol::{DeviceId, MessageKind, Timestamp, UserId};
use vcom_store::{NewMessage, SqliteStore, Store, StoreConfig, Synchronous};

/// Concurrent callers: the sessions of a busy server writing at once. Group commit can
/// only batch what is waiting, so its throughput grows with this number.
const CALLERS: u64 = 4096;
/// Recipients rotate over this many users.
const USERS: usize = 100;

struct Fixture {
    store: SqliteStore,
    _dir: tempfile::TempDir,
    sender: DeviceId,
    /// Shared by every caller task: cloning it per task would be measured too.
    devices: std::sync::Arc<Vec<(UserId, DeviceId)>>,
    body: Bytes,
}

fn fixture(rt: &Runtime, max_batch: usize, synchronous: Synchronous) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        max_batch,
        synchronous,
        // Every message goes to few users; the cap would turn the benchmark into one
        // of eviction. It is measured by the tests, not here.
        pending_cap_per_user: None,
        ..StoreConfig::default()
    };
    let store = SqliteStore::open(&dir.path().join("bench.sqlite3"), config).unwrap();
    let (sender, devices) = rt.block_on(async {
        let alice = UserId::new("alice").unwrap();
        store
            .register_user(&alice, None, Timestamp(1))
            .await
            .unwrap();
        let sender = store.issue_device(&alice, Timestamp(1)).await.unwrap();
        let mut devices = Vec::new();
        for i in 0..USERS {
            let user = UserId::new(format!("user{i}")).unwrap();
            store
                .register_user(&user, None, Timestamp(1))
                .await
                .unwrap();
            let device = store.issue_device(&user, Timestamp(1)).await.unwrap();
            devices.push((user, device));
        }
        (sender, devices)
    });
    Fixture {
        store,
        _dir: dir,
        sender,
        devices: std::sync::Arc::new(devices),
        body: Bytes::from(vec![b'x'; 100]),
    }
}

/// Runs `iters` operations spread over [`CALLERS`] concurrent tasks; returns the time.
fn run(rt: &Runtime, f: &Fixture, iters: u64, mark_delivered: bool) -> Duration {
    rt.block_on(async {
        // Fewer callers than operations would only measure spawning idle tasks.
        let callers = CALLERS.min(iters.max(1));
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|caller| {
                let store = f.store.clone();
                let devices = std::sync::Arc::clone(&f.devices);
                let (sender, body) = (f.sender, f.body.clone());
                let count = iters / callers + u64::from(caller < iters % callers);
                tokio::spawn(async move {
                    for i in 0..count {
                        let (user, device) = &devices[((caller + i * callers) as usize) % USERS];
                        let message = NewMessage {
                            sender: UserId::new("alice").unwrap(),
                            origin_device: sender,
                            group: None,
                            recipients: vec![user.clone()],
                            tag: None,
                            sent_at: Timestamp(1),
                            received_at: Timestamp(2),
                            kind: MessageKind::Text,
                            data: body.clone(),
                        };
                        let id = store
                            .store_message(message, Box::new(|_| {}))
                            .await
                            .unwrap()
                            .id
                            .expect("stored");
                        if mark_delivered {
                            store.advance_cursor(*device, id).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn writes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, mark_delivered) in [("store_message", false), ("store_and_advance_cursor", true)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        let default_batch = StoreConfig::default().max_batch;
        for (mode, max_batch, synchronous) in [
            ("group_commit", default_batch, Synchronous::Full),
            ("one_tx_per_message", 1, Synchronous::Full),
            // Not durable against power loss: shows what the fsync costs.
            (
                "group_commit_sync_normal",
                default_batch,
                Synchronous::Normal,
            ),
        ] {
            let f = fixture(&rt, max_batch, synchronous);
            group.bench_function(BenchmarkId::from_parameter(mode), |b| {
                b.iter_custom(|iters| run(&rt, &f, iters, mark_delivered));
            });
            let stats = f.store.write_stats();
            eprintln!(
                "{name}/{mode}: {} requests in {} transactions (mean batch {:.1})",
                stats.requests,
                stats.batches,
                stats.requests as f64 / stats.batches.max(1) as f64
            );
            rt.block_on(f.store.close());
        }
        group.finish();
    }
}

criterion_group!(benches, writes);
criterion_main!(benches);
