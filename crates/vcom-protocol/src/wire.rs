//! Primitive readers and writers: Java `DataOutputStream` conventions, big-endian.
//!
//! The [`Reader`] never allocates before a length has been checked, and tells "not enough
//! bytes yet" ([`ReadError::Incomplete`]) apart from "these bytes are wrong".

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, UserId};

/// Why a read stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// At least `needed` bytes in total are required.
    Incomplete { needed: usize },
    /// The bytes are not a valid packet.
    Invalid(DecodeError),
}

impl From<DecodeError> for ReadError {
    fn from(e: DecodeError) -> Self {
        ReadError::Invalid(e)
    }
}

pub(crate) type ReadResult<T> = Result<T, ReadError>;

/// A cursor over the bytes received so far, naming the packet it is reading for errors.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    packet: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            packet: "packet",
        }
    }

    /// Names the packet being read, for error messages.
    pub(crate) fn set_packet(&mut self, packet: &'static str) {
        self.packet = packet;
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> ReadResult<&'a [u8]> {
        let end = self.pos.saturating_add(n);
        match self.buf.get(self.pos..end) {
            Some(slice) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(ReadError::Incomplete { needed: end }),
        }
    }

    fn array<const N: usize>(&mut self) -> ReadResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn i8(&mut self) -> ReadResult<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub(crate) fn bool(&mut self) -> ReadResult<bool> {
        Ok(self.i8()? != 0)
    }

    pub(crate) fn i32(&mut self) -> ReadResult<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> ReadResult<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Reads an `i32` length or count and checks it against `min..=max`.
    pub(crate) fn len(&mut self, field: &'static str, min: usize, max: usize) -> ReadResult<usize> {
        let len = self.i32()?;
        let Ok(n) = usize::try_from(len) else {
            return Err(DecodeError::NegativeLength {
                packet: self.packet,
                field,
                len,
            }
            .into());
        };
        if n < min || n > max {
            return Err(DecodeError::LengthOutOfRange {
                packet: self.packet,
                field,
                len,
                min,
                max,
            }
            .into());
        }
        Ok(n)
    }

    /// Reads `i32` length + bytes, the length within `min..=max`.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> ReadResult<&'a [u8]> {
        let n = self.len(field, min, max)?;
        self.take(n)
    }

    /// Reads `i32` length + bytes into an owned [`Bytes`].
    pub(crate) fn owned_bytes(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> ReadResult<Bytes> {
        Ok(Bytes::copy_from_slice(self.bytes(field, min, max)?))
    }

    /// Reads `i32` length + UTF-8 text.
    pub(crate) fn string(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> ReadResult<String> {
        let raw = self.bytes(field, min, max)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::InvalidUtf8 {
                packet: self.packet,
                field,
            }
            .into()),
        }
    }

    /// Reads a user identifier of at most `max` bytes.
    pub(crate) fn user_id(&mut self, field: &'static str, max: usize) -> ReadResult<UserId> {
        let text = self.string(field, 1, max)?;
        UserId::with_max_len(text, max).map_err(|e| {
            DecodeError::InvalidValue {
                packet: self.packet,
                field,
                problem: e.to_string(),
            }
            .into()
        })
    }

    /// Runs `walk` on a copy of this reader and reports only whether it ran out of bytes.
    ///
    /// A list is parsed entry by entry, allocating each one, and a list still arriving
    /// would be parsed again from its start on every read until it is whole (a full
    /// 260 of 280 KiB: 18 times). Walking its lengths first, allocating nothing, tells
    /// "incomplete" at the cost of the walk alone, so the parse runs once. Anything
    /// `walk` finds wrong is left to the parse, which reports errors in wire order as
    /// before; the only difference is that an entry whose content is invalid (say bad
    /// UTF-8) is reported once the whole list is here, not as soon as it arrives.
    pub(crate) fn wait_for(
        &self,
        walk: impl FnOnce(&mut Reader<'a>) -> ReadResult<()>,
    ) -> ReadResult<()> {
        let mut probe = Reader {
            buf: self.buf,
            pos: self.pos,
            packet: self.packet,
        };
        match walk(&mut probe) {
            Err(ReadError::Incomplete { needed }) => Err(ReadError::Incomplete { needed }),
            Ok(()) | Err(ReadError::Invalid(_)) => Ok(()),
        }
    }

    /// Reads an `i32` count (at most `max`) followed by that many entries.
    pub(crate) fn list<T>(
        &mut self,
        field: &'static str,
        max: usize,
        mut entry: impl FnMut(&mut Self) -> ReadResult<T>,
    ) -> ReadResult<Vec<T>> {
        let count = self.len(field, 0, max)?;
        // Every entry takes at least four bytes: reserve only what the bytes already here
        // could hold, so an announced count alone never allocates.
        let remaining = self.buf.len().saturating_sub(self.pos);
        let mut out = Vec::with_capacity(count.min(remaining / 4));
        for _ in 0..count {
            out.push(entry(self)?);
        }
        Ok(out)
    }

    pub(crate) fn invalid(&self, field: &'static str, problem: impl Into<String>) -> ReadError {
        DecodeError::InvalidValue {
            packet: self.packet,
            field,
            problem: problem.into(),
        }
        .into()
    }
}

/// Writes a length or count as `i32`.
///
/// Packet values are built within [`crate::Limits`], far below `i32::MAX`; a larger
/// length cannot be expressed on the wire at all, and saturates.
pub(crate) fn put_len(dst: &mut BytesMut, len: usize) {
    dst.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

pub(crate) fn put_bool(dst: &mut BytesMut, value: bool) {
    dst.put_i8(i8::from(value));
}

pub(crate) fn put_bytes(dst: &mut BytesMut, data: &[u8]) {
    put_len(dst, data.len());
    dst.put_slice(data);
}

pub(crate) fn put_str(dst: &mut BytesMut, text: &str) {
    put_bytes(dst, text.as_bytes());
}

pub(crate) fn put_user_list(dst: &mut BytesMut, users: &[UserId]) {
    put_len(dst, users.len());
    for user in users {
        put_str(dst, user.as_str());
    }
}
