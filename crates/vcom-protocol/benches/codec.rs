//! Encode and decode throughput of the packets that dominate traffic, and of a stream of
//! small packets framed by [`VcomCodec`] from 16 KiB pieces, as a TLS reader hands them
//! over (one TLS record holds at most 16 KiB of plaintext).
//!
//! Criterion reports packets/s and bytes/s. Run with
//! `cargo bench -p vcom-protocol --features codec --bench codec -- --warm-up-time 1 --measurement-time 3`.
//! Results and the machine are in `docs/benchmarks.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::codec::Decoder;
use vcom_protocol::{
    ClientPacket, Decoded, FileChunk, Limits, ListSync, MessageKind, SendUserMessage, ServerPacket,
    Timestamp, TransferId, UserId, UserListsSync, UserMessage, VcomCodec,
};

/// What a TLS reader hands the framing layer at most per read.
const PIECE: usize = 16 * 1024;
/// Packets in the framed stream.
const STREAM_PACKETS: usize = 10_000;

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

/// A text of `len` bytes, as a chat message would be.
fn text(len: usize) -> Bytes {
    let words = "the quick brown fox jumps over the lazy dog ";
    Bytes::from(words.repeat(len / words.len() + 1)[..len].to_owned())
}

fn image(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i * 31 + i / 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn send_user_message(kind: MessageKind, data: Bytes) -> ClientPacket {
    ClientPacket::from(SendUserMessage {
        recipient: user("bob"),
        sent_at: Timestamp(1_700_000_000_000),
        kind,
        data,
    })
}

fn user_message(kind: MessageKind, data: Bytes) -> ServerPacket {
    ServerPacket::from(UserMessage {
        sender: user("alice"),
        read: false,
        sent_at: Timestamp(1_700_000_000_000),
        kind,
        data,
    })
}

fn chunk() -> ClientPacket {
    ClientPacket::from(FileChunk {
        transfer: TransferId(42),
        data: image(1024),
    })
}

fn users(entries: usize) -> Vec<UserId> {
    (0..entries)
        .map(|i| user(&format!("user-{i:05}")))
        .collect()
}

fn list_upload(entries: usize) -> ClientPacket {
    ClientPacket::from(UserListsSync {
        friends: ListSync::Upload(users(entries)),
        blocks: ListSync::InSync,
    })
}

/// The largest 260 the default limits allow: both lists full.
fn both_lists_full() -> ClientPacket {
    let max = Limits::default().max_list_len;
    ClientPacket::from(UserListsSync {
        friends: ListSync::Upload(users(max)),
        blocks: ListSync::Upload(users(max)),
    })
}

/// Either direction, so one table covers what a server and a client decode.
enum Case {
    Client(ClientPacket),
    Server(ServerPacket),
}

impl Case {
    fn encode(&self, dst: &mut BytesMut) {
        match self {
            Case::Client(p) => p.encode(dst),
            Case::Server(p) => p.encode(dst),
        }
    }

    fn bytes(&self) -> Bytes {
        let mut dst = BytesMut::new();
        self.encode(&mut dst);
        dst.freeze()
    }

    /// Decodes `src` the way its receiver does and returns the length used.
    fn decode(&self, src: &[u8], limits: &Limits) -> usize {
        let len = match self {
            Case::Client(_) => match ClientPacket::decode(src, limits).unwrap() {
                Decoded::Complete { packet, len } => {
                    black_box(packet);
                    len
                }
                Decoded::Incomplete { .. } => panic!("the whole packet was given"),
            },
            Case::Server(_) => match ServerPacket::decode(src, limits).unwrap() {
                Decoded::Complete { packet, len } => {
                    black_box(packet);
                    len
                }
                Decoded::Incomplete { .. } => panic!("the whole packet was given"),
            },
        };
        assert_eq!(len, src.len());
        len
    }
}

fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "266-text-100B",
            Case::Client(send_user_message(MessageKind::Text, text(100))),
        ),
        (
            "264-text-100B",
            Case::Server(user_message(MessageKind::Text, text(100))),
        ),
        (
            "266-image-64KiB",
            Case::Client(send_user_message(MessageKind::Image, image(64 * 1024))),
        ),
        (
            "264-image-64KiB",
            Case::Server(user_message(MessageKind::Image, image(64 * 1024))),
        ),
        ("273-chunk-1KiB", Case::Client(chunk())),
        ("260-upload-1000", Case::Client(list_upload(1000))),
        ("260-both-lists-10000", Case::Client(both_lists_full())),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, case) in cases() {
        let bytes = case.bytes().len() as u64;
        group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes });
        // A reused buffer, as the framing layer's write buffer is.
        let mut dst = BytesMut::with_capacity(bytes as usize);
        group.bench_function(name, |b| {
            b.iter(|| {
                dst.clear();
                black_box(&case).encode(&mut dst);
                black_box(dst.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");
    for (name, case) in cases() {
        let wire = case.bytes();
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: wire.len() as u64,
        });
        group.bench_function(name, |b| b.iter(|| case.decode(black_box(&wire), &limits)));
    }
    group.finish();
}

/// Frames `wire` with a server's codec from `PIECE`-sized reads; returns the packets.
fn frame_stream(wire: &[u8], limits: Limits) -> usize {
    let mut codec = VcomCodec::<ClientPacket, ServerPacket>::new(limits);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut packets = 0;
    for piece in wire.chunks(PIECE) {
        buf.extend_from_slice(piece);
        while let Some(packet) = codec.decode(&mut buf).unwrap() {
            black_box(packet);
            packets += 1;
        }
    }
    assert!(buf.is_empty(), "the stream ends on a packet boundary");
    packets
}

fn stream(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("stream-16KiB-reads");
    let streams = [
        (
            "266-text-100B",
            send_user_message(MessageKind::Text, text(100)),
            STREAM_PACKETS,
        ),
        ("273-chunk-1KiB", chunk(), STREAM_PACKETS),
        (
            "266-image-64KiB",
            send_user_message(MessageKind::Image, image(64 * 1024)),
            100,
        ),
        // About 14 KiB each: most straddle a read boundary.
        ("260-upload-1000", list_upload(1000), 100),
        // About 280 KiB each: 18 reads per packet.
        ("260-both-lists-10000", both_lists_full(), 4),
    ];
    for (name, packet, count) in streams {
        let mut wire = BytesMut::new();
        for _ in 0..count {
            packet.encode(&mut wire);
        }
        group.throughput(Throughput::ElementsAndBytes {
            elements: count as u64,
            bytes: wire.len() as u64,
        });
        group.bench_function(name, |b| {
            b.iter(|| assert_eq!(frame_stream(black_box(&wire), limits), count))
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode, stream);
criterion_main!(benches);
