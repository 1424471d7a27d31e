//! Properties of the encoder and the decoder over arbitrary packets and arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use vcom_protocol::codec::{Incoming, Outgoing};
use vcom_protocol::{ClientPacket, Decoded, Limits, ServerPacket, id};
use vcom_tests::fuzz_check::{Stream, check_direction, decode_in_pieces, decode_whole};
use vcom_tests::strategies::{client_packet, server_packet};

fn encode_all<P: Outgoing>(packets: &[P]) -> BytesMut {
    let mut buf = BytesMut::new();
    for packet in packets {
        packet.encode_into(&mut buf);
    }
    buf
}

fn round_trips<P>(packet: &P) -> Result<(), TestCaseError>
where
    P: Incoming + Outgoing + std::fmt::Debug + PartialEq + Clone,
{
    let bytes = encode_all(std::slice::from_ref(packet));
    let decoded = P::decode_from(&bytes, &Limits::default());
    prop_assert_eq!(
        decoded,
        Ok(Decoded::Complete {
            packet: packet.clone(),
            len: bytes.len()
        })
    );
    Ok(())
}

/// Cut positions within a buffer of `len` bytes, from a list of random indices.
fn cuts(indices: &[Index], len: usize) -> Vec<usize> {
    indices.iter().map(|i| i.index(len + 1)).collect()
}

/// A few bytes at the front of random input that make it start like a real packet, so
/// random bytes reach the packet bodies and not only the "unknown identifier" check.
fn packet_start() -> impl Strategy<Value = Vec<u8>> {
    let ids: Vec<i32> = id::ALL
        .into_iter()
        .chain(id::EXTENSIONS)
        .chain([0, -1, 275, 511, 527])
        .collect();
    prop_oneof![
        Just(Vec::new()),
        proptest::sample::select(ids).prop_map(|id| id.to_be_bytes().to_vec()),
    ]
}

/// Random bytes, often starting with a packet identifier.
fn random_stream() -> impl Strategy<Value = Vec<u8>> {
    (packet_start(), vec(any::<u8>(), 0..96)).prop_map(|(mut start, rest)| {
        start.extend(rest);
        start
    })
}

/// A change to a valid encoding, applied at a random position.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip the bits of one byte.
    Flip(Index, u8),
    /// Overwrite four bytes with a length that matters (-1, 0, limits and one past).
    Length(Index, i32),
    /// Cut the bytes short.
    Truncate(Index),
    /// Insert a byte.
    Insert(Index, u8),
    /// Remove a byte.
    Remove(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let lengths = vec![
        -1,
        0,
        1,
        64,
        65,
        255,
        256,
        257,
        1024,
        1025,
        4097,
        10_001,
        1024 * 1024 + 1,
        i32::MAX,
        i32::MIN,
    ];
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), proptest::sample::select(lengths))
            .prop_map(|(i, l)| Mutation::Length(i, l)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match m {
            Mutation::Flip(i, x) => bytes[i.index(len)] ^= x,
            Mutation::Length(i, l) => {
                let at = i.index(len);
                for (k, b) in l.to_be_bytes().into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = b;
                    }
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(len));
            }
        }
    }
    bytes
}

fn same_whole_and_in_pieces(data: &[u8], indices: &[Index]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let cuts = cuts(indices, data.len());
    let whole: Stream<ClientPacket> = decode_whole(data, &limits);
    prop_assert_eq!(&whole, &decode_in_pieces(data, &cuts, &limits));
    let whole: Stream<ServerPacket> = decode_whole(data, &limits);
    prop_assert_eq!(&whole, &decode_in_pieces(data, &cuts, &limits));
    // And the fuzz target's own checks, with one of the cuts.
    let cut = cuts.first().copied().unwrap_or(0);
    check_direction::<ClientPacket>(data, cut, &limits);
    check_direction::<ServerPacket>(data, cut, &limits);
    Ok(())
}

proptest! {
    #[test]
    fn any_client_packet_decodes_back_to_itself_with_its_encoded_length(packet in client_packet()) {
        round_trips(&packet)?;
    }

    #[test]
    fn any_server_packet_decodes_back_to_itself_with_its_encoded_length(packet in server_packet()) {
        round_trips(&packet)?;
    }

    #[test]
    fn random_bytes_decode_the_same_whole_or_in_pieces_and_never_panic(
        data in random_stream(),
        indices in vec(any::<Index>(), 0..8),
    ) {
        same_whole_and_in_pieces(&data, &indices)?;
    }

    #[test]
    fn mutated_client_packets_decode_the_same_whole_or_in_pieces(
        packets in vec(client_packet(), 1..4),
        mutations in vec(mutation(), 1..4),
        indices in vec(any::<Index>(), 0..8),
    ) {
        let data = mutate(encode_all(&packets).to_vec(), &mutations);
        same_whole_and_in_pieces(&data, &indices)?;
    }

    #[test]
    fn mutated_server_packets_decode_the_same_whole_or_in_pieces(
        packets in vec(server_packet(), 1..4),
        mutations in vec(mutation(), 1..4),
        indices in vec(any::<Index>(), 0..8),
    ) {
        let data = mutate(encode_all(&packets).to_vec(), &mutations);
        same_whole_and_in_pieces(&data, &indices)?;
    }

    #[test]
    fn concatenated_client_packets_decode_to_the_same_sequence_whatever_the_split(
        packets in vec(client_packet(), 0..6),
        indices in vec(any::<Index>(), 0..12),
    ) {
        let data = encode_all(&packets);
        let cuts = cuts(&indices, data.len());
        let expected = Stream { packets, end: Ok(0) };
        prop_assert_eq!(&decode_in_pieces(&data, &cuts, &Limits::default()), &expected);
        prop_assert_eq!(&decode_whole(&data, &Limits::default()), &expected);
    }

    #[test]
    fn concatenated_server_packets_decode_to_the_same_sequence_whatever_the_split(
        packets in vec(server_packet(), 0..6),
        indices in vec(any::<Index>(), 0..12),
    ) {
        let data = encode_all(&packets);
        let cuts = cuts(&indices, data.len());
        let expected = Stream { packets, end: Ok(0) };
        prop_assert_eq!(&decode_in_pieces(&data, &cuts, &Limits::default()), &expected);
        prop_assert_eq!(&decode_whole(&data, &Limits::default()), &expected);
    }

    #[test]
    fn every_strict_prefix_of_a_packet_asks_for_more_bytes_but_never_past_its_end(
        packet in server_packet(),
    ) {
        let bytes = encode_all(std::slice::from_ref(&packet));
        for end in 0..bytes.len() {
            match ServerPacket::decode(&bytes[..end], &Limits::default()) {
                Ok(Decoded::Incomplete { needed }) => {
                    prop_assert!(needed > end && needed <= bytes.len(), "prefix {end}: needs {needed} of {}", bytes.len());
                }
                other => prop_assert!(false, "prefix {end} of {packet:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_packet_fed_one_byte_at_a_time_through_the_codec_decodes_once_it_is_whole() {
    for vector in vcom_tests::vectors::all() {
        let bytes = vector.packet.to_bytes();
        let every_byte: Vec<usize> = (0..=bytes.len()).collect();
        let limits = Limits::default();
        let n = match vector.packet {
            vcom_tests::vectors::AnyPacket::Client(_) => {
                decode_in_pieces::<ClientPacket>(&bytes, &every_byte, &limits)
                    .packets
                    .len()
            }
            vcom_tests::vectors::AnyPacket::Server(_) => {
                decode_in_pieces::<ServerPacket>(&bytes, &every_byte, &limits)
                    .packets
                    .len()
            }
        };
        assert_eq!(n, 1, "{}", vector.name);
    }
}
