//! The vCom wire protocol: every packet as a Rust type, encoded and decoded without IO.
//!
//! This crate is **sans-IO**: it never touches a socket, a file or a clock. Callers hand
//! [`ClientPacket::decode`] / [`ServerPacket::decode`] whatever bytes have arrived and get
//! back a whole packet, or how many bytes are needed before one can be complete. Every
//! length on the wire is checked against [`Limits`] before anything is allocated.
//!
//! # Layout
//! - [`id`]: the packet identifiers (256-274 and the extensions from 512) as named constants.
//! - [`types`]: validated newtypes for the values packets carry ([`UserId`], [`DeviceId`],
//!   [`GroupId`], [`GroupName`], [`TransferId`], [`Timestamp`], [`FileSize`], [`MessageKind`]).
//! - [`codes`]: the ConnectionDenied error codes ([`DenyCode`]) and the file-transfer
//!   abort reasons ([`AbortReason`]), including this project's extensions.
//! - [`limits`]: [`Limits`], the configurable bounds the decoder enforces.
//! - [`alpn`]: the names a client offers to negotiate the extension set.
//! - [`packets`]: one struct per packet, and the two direction enums [`ClientPacket`]
//!   (client to server) and [`ServerPacket`] (server to client).
//! - `wire` (private): the primitive readers and writers (Java `DataOutputStream` style).
//! - `codec` (feature `codec`): a tokio-util `Decoder`/`Encoder` for `Framed`.
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use vcom_protocol::{ClientPacket, ConnectionRequest, Decoded, DeviceId, Limits};
//!
//! let packet = ClientPacket::ConnectionRequest(ConnectionRequest {
//!     user: "alice".into(),
//!     device: DeviceId::NEW,
//!     password: Default::default(),
//! });
//! let mut buf = BytesMut::new();
//! packet.encode(&mut buf);
//! match ClientPacket::decode(&buf, &Limits::default()).unwrap() {
//!     Decoded::Complete { packet: back, len } => {
//!         assert_eq!(back, packet);
//!         assert_eq!(len, buf.len());
//!     }
//!     Decoded::Incomplete { .. } => unreachable!("the whole packet was given"),
//! }
//! ```

#[cfg(feature = "codec")]
pub mod codec;
pub mod codes;
mod error;
pub mod id;
pub mod limits;
pub mod packets;
pub mod types;
mod wire;

#[cfg(feature = "codec")]
pub use codec::VcomCodec;
pub use codes::{AbortReason, DenyCode, GroupExit, GroupOutcome, SendOutcome};

/// TLS ALPN protocol names: how a client and a server agree, before login, on the packets
/// they use (`docs/protocol.md`, "Negotiation").
pub mod alpn {
    /// The wiki's packets 256-274 alone (and the Ping/Pong keep-alive): exactly the
    /// behaviour of a client that offers no ALPN at all.
    pub const WIKI: &[u8] = b"vcom/1";
    /// The wiki's packets plus the extension set: sequence numbers and delivery receipts
    /// (514, 515), send acknowledgements (516, 517), client-side groups (518-526).
    pub const EXT: &[u8] = b"vcom/1+ext";
}
pub use error::DecodeError;
pub use limits::Limits;
pub use packets::*;
pub use types::{
    DeviceId, FileSize, GroupId, GroupName, InvalidGroupName, InvalidUserId, MessageKind,
    Timestamp, TransferId, UserId, UtcDateTime,
};

/// The result of offering bytes to a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<P> {
    /// A whole packet was at the front of the buffer; it used `len` bytes.
    Complete {
        /// The decoded packet.
        packet: P,
        /// How many bytes of the buffer the packet used.
        len: usize,
    },
    /// The buffer holds the start of a packet; at least `needed` bytes in total are
    /// required before decoding can finish (it may turn out that more are needed).
    Incomplete {
        /// The minimum total buffer length that could complete the packet.
        needed: usize,
    },
}
