//! Relay throughput of file transfers: a file goes sender -> server -> recipient over
//! TLS on loopback, with the server in this process, and criterion reports MB/s.
//!
//! Each iteration offers a 32 MiB file, has it accepted, then times the data alone: from
//! the sender's first chunk to the recipient's 274. The sender writes pre-encoded chunks
//! in large writes, so the figure is the server's relay (read, decode, check, queue,
//! encode, write, TLS both ways) rather than the test client's per-packet flushes. Run
//! with `cargo bench -p vcom-tests --bench relay -- --warm-up-time 1 --measurement-time 5`.
//! Results and the machine are in `docs/benchmarks.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use vcom_protocol::{
    ClientPacket, FileChunk, FileSize, FileTransferAccept, FileTransferComplete,
    FileTransferRequest, ServerPacket, TransferId, UserId,
};
use vcom_tests::harness::{Session, TestServer, login};

/// Bytes relayed per iteration.
const FILE: usize = 32 * 1024 * 1024;
/// The largest chunk the protocol allows.
const CHUNK: usize = 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    _server: TestServer,
    alice: Session,
    bob: Option<Session>,
    data: Bytes,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), |_| {}).await;
        let alice = login(&server, "alice").await;
        let bob = login(&server, "bob").await;
        let data: Vec<u8> = (0..FILE).map(|i| (i * 31 + i / 4096) as u8).collect();
        Fixture {
            _dir: dir,
            _server: server,
            alice,
            bob: Some(bob),
            data: Bytes::from(data),
        }
    }

    /// Offers and accepts one file; returns its id and its chunks, encoded, with 274.
    async fn prepare(&mut self) -> (TransferId, BytesMut) {
        let bob = self.bob.as_mut().unwrap();
        self.alice
            .client
            .send(FileTransferRequest {
                recipient: UserId::new("bob").unwrap(),
                size: FileSize::new(FILE as u64).unwrap(),
                name: "bench.bin".into(),
            })
            .await;
        let ServerPacket::FileTransferId(p) = self.alice.client.recv().await else {
            panic!("expected 269")
        };
        let id = p.transfer;
        let ServerPacket::FileTransferOffer(_) = bob.client.recv().await else {
            panic!("expected 271")
        };
        bob.client.send(FileTransferAccept { transfer: id }).await;
        let ServerPacket::FileTransferAccept(_) = self.alice.client.recv().await else {
            panic!("expected 272")
        };
        let mut wire = BytesMut::with_capacity(FILE + FILE / CHUNK * 12 + 8);
        for start in (0..FILE).step_by(CHUNK) {
            let data = self.data.slice(start..(start + CHUNK).min(FILE));
            ClientPacket::from(FileChunk { transfer: id, data }).encode(&mut wire);
        }
        ClientPacket::from(FileTransferComplete { transfer: id }).encode(&mut wire);
        (id, wire)
    }

    /// Relays one prepared file and returns how long the data took.
    async fn relay(&mut self, id: TransferId, wire: &[u8]) -> Duration {
        let mut bob = self.bob.take().unwrap();
        let start = Instant::now();
        let receiver = tokio::spawn(async move {
            let mut got = 0;
            loop {
                match bob.client.recv().await {
                    ServerPacket::FileChunk(c) => got += c.data.len(),
                    ServerPacket::FileTransferComplete(c) if c.transfer == id => break,
                    other => panic!("expected 273 or 274, got {other:?}"),
                }
            }
            assert_eq!(got, FILE);
            bob
        });
        // Large writes: the client's encryption stays off the critical path.
        for piece in wire.chunks(256 * 1024) {
            self.alice.client.send_raw(piece).await;
        }
        self.bob = Some(receiver.await.unwrap());
        start.elapsed()
    }
}

fn relay(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut fixture = rt.block_on(Fixture::start());
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Bytes(FILE as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function("32MiB-file", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (id, wire) = fixture.prepare().await;
                    total += fixture.relay(id, &wire).await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
