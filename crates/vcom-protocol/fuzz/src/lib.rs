//! The checks behind the fuzz target `decode`, kept apart from libFuzzer.
//!
//! The workspace's test package (`vcom-tests`) compiles this same file as
//! `vcom_tests::fuzz_check`, so its property tests and the replay of the committed
//! corpus run exactly what the fuzzer runs. Everything here panics when the decoder
//! breaks one of its promises: that is how the fuzzer and the tests notice.

use std::fmt::Debug;

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use vcom_protocol::codec::{CodecError, Incoming, Outgoing};
use vcom_protocol::{ClientPacket, DecodeError, Decoded, Limits, ServerPacket, VcomCodec};

/// What became of a byte stream once as many packets as possible were decoded from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream<P> {
    /// The packets decoded, in order.
    pub packets: Vec<P>,
    /// Why decoding stopped: `Ok(n)` when `n` bytes are left waiting for more, or the
    /// error that made the bytes after the last packet invalid.
    pub end: Result<usize, DecodeError>,
}

/// Decodes `data` the way a reader holding all of it at once would: packet after
/// packet with the sans-IO decoder, until the rest is incomplete or invalid.
///
/// Panics if the decoder claims a length outside the buffer, or reports an incomplete
/// packet that needs no more bytes than it already has.
pub fn decode_whole<P: Incoming>(data: &[u8], limits: &Limits) -> Stream<P> {
    let mut packets = Vec::new();
    let mut rest = data;
    loop {
        match P::decode_from(rest, limits) {
            Ok(Decoded::Complete { packet, len }) => {
                assert!(
                    (4..=rest.len()).contains(&len),
                    "a complete packet claims {len} bytes of a {}-byte buffer",
                    rest.len()
                );
                packets.push(packet);
                rest = &rest[len..];
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(
                    needed > rest.len(),
                    "an incomplete packet needs {needed} bytes but {} are already here",
                    rest.len()
                );
                return Stream {
                    packets,
                    end: Ok(rest.len()),
                };
            }
            Err(error) => {
                return Stream {
                    packets,
                    end: Err(error),
                };
            }
        }
    }
}

/// Decodes `data` the way a connection receiving it in pieces would: through
/// [`VcomCodec`], appending the bytes up to each cut in `cuts` (in any order; cuts past
/// the end are clamped) to one `BytesMut`, draining the codec after every piece, and
/// ending the stream after the last (`decode_eof`, which finds a malformed entry of a
/// list the codec was still waiting on).
///
/// Panics if the codec reports an i/o error before the end, which it cannot have
/// without i/o.
pub fn decode_in_pieces<P: Incoming>(data: &[u8], cuts: &[usize], limits: &Limits) -> Stream<P> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&cut| cut.min(data.len())).collect();
    cuts.sort_unstable();
    cuts.push(data.len());

    let mut codec = VcomCodec::<P, ()>::new(*limits);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut fed = 0;
    // Drains the codec (`decode`, or at the end `decode_eof`); the error that ends the
    // stream, if one does.
    let mut drain = |buf: &mut BytesMut, packets: &mut Vec<P>, at_end: bool| loop {
        let decoded = if at_end {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        match decoded {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return None,
            Err(CodecError::Protocol(error)) => return Some(error),
            // The stream ended inside a packet: the bytes are left over.
            Err(CodecError::Io(_)) if at_end => return None,
            Err(CodecError::Io(error)) => {
                panic!("the codec reported an i/o error without doing i/o: {error}")
            }
        }
    };
    for cut in cuts {
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        if let Some(error) = drain(&mut buf, &mut packets, false) {
            return Stream {
                packets,
                end: Err(error),
            };
        }
    }
    let end = match drain(&mut buf, &mut packets, true) {
        Some(error) => Err(error),
        None => Ok(buf.len()),
    };
    Stream { packets, end }
}

/// Checks one direction's decoder on arbitrary bytes.
///
/// A packet decoded from the front of `data` must re-encode to bytes that decode to the
/// same packet with the encoded length, and the stream must decode to the same packets
/// and the same ending whether it arrives whole or in two pieces split at `cut`.
pub fn check_direction<P>(data: &[u8], cut: usize, limits: &Limits)
where
    P: Incoming + Outgoing + Debug + PartialEq,
{
    if let Ok(Decoded::Complete { packet, .. }) = P::decode_from(data, limits) {
        let mut encoded = BytesMut::new();
        packet.encode_into(&mut encoded);
        match P::decode_from(&encoded, limits) {
            Ok(Decoded::Complete { packet: again, len }) => {
                assert_eq!(again, packet, "a re-encoded packet decodes differently");
                assert_eq!(
                    len,
                    encoded.len(),
                    "a re-encoded packet has a different length"
                );
            }
            other => panic!("a re-encoded {packet:?} does not decode: {other:?}"),
        }
    }
    let whole = decode_whole::<P>(data, limits);
    let pieces = decode_in_pieces::<P>(data, &[cut], limits);
    assert_eq!(whole, pieces, "split at {cut} of {}", data.len());
}

/// Everything the fuzz target `decode` does with one input: offers it to the client's
/// and the server's decoder with the default limits, whole and through [`VcomCodec`] in
/// two pieces (split where the first byte says, scaled to the input's length).
pub fn decode_everywhere(data: &[u8]) {
    let limits = Limits::default();
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) * data.len() / 255);
    check_direction::<ClientPacket>(data, cut, &limits);
    check_direction::<ServerPacket>(data, cut, &limits);
}
