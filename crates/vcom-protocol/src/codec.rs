//! A tokio-util [`Decoder`]/[`Encoder`] over the sans-IO decoder, for `Framed`.
//!
//! The codec remembers how many bytes the last incomplete packet needed, so a large
//! packet arriving in many small reads is parsed once it is whole, not once per read.

use std::marker::PhantomData;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{ClientPacket, DecodeError, Decoded, Limits, ServerPacket};

/// What a codec reads: [`ClientPacket`] on a server, [`ServerPacket`] on a client.
pub trait Incoming: Sized {
    /// Decodes the packet at the front of `src`.
    fn decode_from(src: &[u8], limits: &Limits) -> Result<Decoded<Self>, DecodeError>;
}

/// What a codec writes: [`ServerPacket`] on a server, [`ClientPacket`] on a client.
pub trait Outgoing {
    /// Appends the packet to `dst`.
    fn encode_into(&self, dst: &mut BytesMut);
}

impl Incoming for ClientPacket {
    fn decode_from(src: &[u8], limits: &Limits) -> Result<Decoded<Self>, DecodeError> {
        ClientPacket::decode(src, limits)
    }
}

impl Incoming for ServerPacket {
    fn decode_from(src: &[u8], limits: &Limits) -> Result<Decoded<Self>, DecodeError> {
        ServerPacket::decode(src, limits)
    }
}

impl Outgoing for ClientPacket {
    fn encode_into(&self, dst: &mut BytesMut) {
        self.encode(dst);
    }
}

impl Outgoing for ServerPacket {
    fn encode_into(&self, dst: &mut BytesMut) {
        self.encode(dst);
    }
}

/// Errors from [`VcomCodec`]: the transport's, or the peer's bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid packet.
    #[error("protocol violation: {0}")]
    Protocol(#[from] DecodeError),
}

/// Frames a byte stream into packets: decodes `In`, encodes `Out`.
///
/// A server uses `VcomCodec<ClientPacket, ServerPacket>`, a client the reverse.
#[derive(Debug)]
pub struct VcomCodec<In, Out> {
    limits: Limits,
    needed: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> VcomCodec<In, Out> {
    /// A codec enforcing `limits` on what it decodes.
    pub fn new(limits: Limits) -> Self {
        VcomCodec {
            limits,
            needed: 0,
            _types: PhantomData,
        }
    }

    /// Enforces `limits` from the next packet on (a server widens them after login).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
}

impl<In: Incoming, Out> Decoder for VcomCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        if src.len() < self.needed.max(1) {
            return Ok(None);
        }
        match In::decode_from(src, &self.limits)? {
            Decoded::Complete { packet, len } => {
                src.advance(len);
                self.needed = 0;
                Ok(Some(packet))
            }
            Decoded::Incomplete { needed } => {
                // Reserve at most one message's worth ahead: `needed` was checked
                // against the limits before it was reported.
                src.reserve(needed.saturating_sub(src.len()));
                self.needed = needed;
                Ok(None)
            }
        }
    }

    /// At the end of the stream, what is left is decoded once more whatever the last
    /// attempt said it needed: a list reports the least its remaining entries can take
    /// (so it is not walked again for every entry), and a malformed entry among the
    /// bytes already here is found now, exactly as if the bytes had arrived at once.
    /// Bytes that still do not make a packet are an unexpected end of the stream.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        self.needed = 0;
        match self.decode(src)? {
            Some(packet) => Ok(Some(packet)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the stream ended inside a packet ({} bytes)", src.len()),
            ))),
        }
    }
}

impl<In, Out: Outgoing> Encoder<Out> for VcomCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode_into(dst);
        Ok(())
    }
}

impl<In, Out: Outgoing> Encoder<&Out> for VcomCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode_into(dst);
        Ok(())
    }
}
