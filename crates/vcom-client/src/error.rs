//! Everything that can go wrong in the SDK, as typed errors.
//!
//! Each variant says what failed in words a user can act on; nothing the server sends
//! can make the SDK panic, only return one of these.

use vcom_protocol::{DecodeError, DenyCode};

use crate::file_name::UnsafeFileName;
use crate::profile::ProfileError;

/// An error from the client SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Reading or writing the network connection or a local file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS layer failed (handshake, certificate, configuration).
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    /// The server refused the login with ConnectionDenied (258).
    #[error("login denied: {0}")]
    LoginDenied(DenyCode),
    /// The server presented a certificate whose fingerprint differs from the pinned one.
    ///
    /// Either the server's certificate was replaced or someone is intercepting the
    /// connection; the SDK refuses to talk to it until the pin is changed on purpose.
    #[error(
        "the server's certificate does not match the pinned fingerprint: \
         expected sha256 {expected}, found sha256 {found}; \
         if the server's certificate was replaced on purpose, pin the new fingerprint"
    )]
    FingerprintMismatch {
        /// The pinned fingerprint (lower-case hex SHA-256 of the certificate DER).
        expected: String,
        /// The fingerprint of the certificate the server presented.
        found: String,
    },
    /// No fingerprint is pinned for the server and trust on first use was not allowed.
    #[error("no certificate fingerprint is pinned for this server and trust on first use is off")]
    NoPinnedFingerprint,
    /// The server broke the protocol; the connection was closed.
    #[error("protocol violation by the server: {0}")]
    Protocol(#[from] ProtocolError),
    /// The profile directory could not be read or written.
    #[error("profile: {0}")]
    Profile(#[from] ProfileError),
    /// The local message history (SQLite) failed.
    #[error("history: {0}")]
    History(#[from] rusqlite::Error),
    /// The history database was written by a newer version of the SDK; its schema is
    /// left untouched rather than misread.
    #[error(
        "the history database has schema version {found}, newer than the {known} this \
         version knows: use a newer vcom with this profile"
    )]
    HistoryTooNew {
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this SDK knows.
        known: i64,
    },
    /// The configuration is not usable (bad address, bad fingerprint, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The caller asked for something the protocol cannot carry (a message over the
    /// size limit, an empty file, a file name that is not UTF-8, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The file transfer is not (or no longer) known: it finished, was aborted, or was
    /// never offered.
    #[error("no file transfer {0} is waiting for an answer")]
    NoSuchTransfer(vcom_protocol::TransferId),
    /// A file offered by the peer has a name that cannot be used safely.
    #[error("unsafe file name: {0}")]
    UnsafeFileName(#[from] UnsafeFileName),
    /// Connecting, the handshake or the login took longer than allowed.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// The server did not answer a keep-alive Ping in time.
    #[error("the server did not answer a keep-alive ping in time")]
    KeepaliveTimeout,
    /// The connection is closed; the handle can no longer be used.
    #[error("the connection is closed")]
    Closed,
    /// The server refused a group request (GroupResult, 523) and said why.
    #[error("the server refused: {0}")]
    GroupRefused(vcom_protocol::GroupOutcome),
    /// The request needs the extension set (`vcom/1+ext`), which this connection did
    /// not negotiate (the server does not offer it, or `extensions` is off).
    #[error("{0} needs the extension set (vcom/1+ext), which this connection does not have")]
    ExtensionRequired(&'static str),
}

/// How the server broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The server sent bytes that are not a valid server packet.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The server sent a valid packet at a moment it must not.
    #[error("unexpected {got}: expected {expected}")]
    Unexpected {
        /// What the SDK was waiting for, or why the packet is out of place.
        expected: &'static str,
        /// The name of the packet that arrived.
        got: &'static str,
    },
}

impl From<vcom_protocol::codec::CodecError> for ClientError {
    fn from(e: vcom_protocol::codec::CodecError) -> Self {
        match e {
            vcom_protocol::codec::CodecError::Io(e) => ClientError::Io(e),
            vcom_protocol::codec::CodecError::Protocol(e) => {
                ClientError::Protocol(ProtocolError::Decode(e))
            }
        }
    }
}
