//! The packet tap: a test-only switch that counts every packet the server reads or
//! writes, by identifier, direction and (for 258, 270 and 517) code.
//!
//! `cargo xtask e2e` turns it on (environment variable `VCOM_PACKET_TAP=FILE` for the
//! `vcom-server` program, or [`crate::ServerConfig::packet_tap`]) to prove every part of
//! the protocol was exercised. The counts are written as JSON lines when the server
//! stops. Off by default: then recording is a single branch.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vcom_protocol::{ClientPacket, ServerPacket};

/// Which way a packet travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    /// Client to server.
    #[serde(rename = "C->S")]
    ClientToServer,
    /// Server to client.
    #[serde(rename = "S->C")]
    ServerToClient,
}

/// One line of the tap file: how often a packet (with a code) was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapRecord {
    /// The packet identifier.
    pub id: i32,
    /// Which way it travelled.
    pub direction: Direction,
    /// The 258 error code, 270 reason or 517 outcome, for those packets.
    pub code: Option<i32>,
    /// How many were seen.
    pub count: u64,
}

type Key = (i32, Direction, Option<i32>);

/// Counts packets when enabled.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    file: Option<PathBuf>,
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl Tap {
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Tap {
            file,
            counts: Mutex::default(),
        }
    }

    fn bump(&self, key: Key) {
        if self.file.is_some() {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            *counts.entry(key).or_default() += 1;
        }
    }

    pub(crate) fn inbound(&self, packet: &ClientPacket) {
        let code = match packet {
            ClientPacket::FileTransferAbort(p) => Some(p.reason.code()),
            _ => None,
        };
        self.bump((packet.id(), Direction::ClientToServer, code));
    }

    pub(crate) fn outbound(&self, packet: &ServerPacket) {
        let code = match packet {
            ServerPacket::ConnectionDenied(p) => Some(i32::from(p.code.code())),
            ServerPacket::FileTransferAbort(p) => Some(p.reason.code()),
            ServerPacket::SendAck(p) => Some(i32::from(p.outcome.code())),
            _ => None,
        };
        self.bump((packet.id(), Direction::ServerToClient, code));
    }

    /// Writes the counts to the tap file, if the tap is on.
    pub(crate) fn write(&self) {
        let Some(path) = &self.file else { return };
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Err(e) = write_records(path, &counts) {
            tracing::error!(file = %path.display(), error = %e, "cannot write the packet tap");
        }
    }
}

fn write_records(path: &Path, counts: &BTreeMap<Key, u64>) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (&(id, direction, code), &count) in counts {
        let line = serde_json::to_string(&TapRecord {
            id,
            direction,
            code,
            count,
        })?;
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// The server's framing codec: [`vcom_protocol::VcomCodec`] plus the tap, so every
/// packet read or written passes one place that can count it.
#[derive(Debug)]
pub(crate) struct TappedCodec {
    inner: vcom_protocol::VcomCodec<ClientPacket, ServerPacket>,
    tap: std::sync::Arc<Tap>,
}

impl TappedCodec {
    pub(crate) fn new(limits: vcom_protocol::Limits, tap: std::sync::Arc<Tap>) -> Self {
        TappedCodec {
            inner: vcom_protocol::VcomCodec::new(limits),
            tap,
        }
    }

    /// Enforces `limits` from the next packet on.
    pub(crate) fn set_limits(&mut self, limits: vcom_protocol::Limits) {
        self.inner.set_limits(limits);
    }
}

impl tokio_util::codec::Decoder for TappedCodec {
    type Item = ClientPacket;
    type Error = vcom_protocol::codec::CodecError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<ClientPacket>, Self::Error> {
        let packet = self.inner.decode(src)?;
        if let Some(p) = &packet {
            self.tap.inbound(p);
        }
        Ok(packet)
    }

    /// The inner codec's end of stream (it decodes what is left once more).
    fn decode_eof(
        &mut self,
        src: &mut bytes::BytesMut,
    ) -> Result<Option<ClientPacket>, Self::Error> {
        let packet = self.inner.decode_eof(src)?;
        if let Some(p) = &packet {
            self.tap.inbound(p);
        }
        Ok(packet)
    }
}

impl tokio_util::codec::Encoder<&ServerPacket> for TappedCodec {
    type Error = vcom_protocol::codec::CodecError;

    fn encode(
        &mut self,
        item: &ServerPacket,
        dst: &mut bytes::BytesMut,
    ) -> Result<(), Self::Error> {
        self.tap.outbound(item);
        self.inner.encode(item, dst)
    }
}

impl tokio_util::codec::Encoder<ServerPacket> for TappedCodec {
    type Error = vcom_protocol::codec::CodecError;

    fn encode(&mut self, item: ServerPacket, dst: &mut bytes::BytesMut) -> Result<(), Self::Error> {
        self.encode(&item, dst)
    }
}
