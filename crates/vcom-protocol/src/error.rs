//! What can be wrong with bytes offered to the decoder.

/// Bytes that are not a valid packet for the receiving side.
///
/// Every variant names the packet and the field at fault, so a log line says exactly what
/// a peer did wrong. Any of these is a protocol violation: the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The identifier is neither a seed packet nor a known extension.
    #[error("unknown packet identifier {id}")]
    UnknownId {
        /// The identifier read from the wire.
        id: i32,
    },
    /// A known packet that this side never receives (e.g. a client sending 264).
    #[error("packet {id} ({name}) is not accepted in this direction")]
    WrongDirection {
        /// The identifier read from the wire.
        id: i32,
        /// The packet's name.
        name: &'static str,
    },
    /// A length or count field holds a negative number.
    #[error("{packet}.{field}: negative length {len}")]
    NegativeLength {
        /// The packet's name.
        packet: &'static str,
        /// The field's name.
        field: &'static str,
        /// The length read from the wire.
        len: i32,
    },
    /// A length or count is outside the range the limits allow.
    #[error("{packet}.{field}: length {len} is outside {min}..={max}")]
    LengthOutOfRange {
        /// The packet's name.
        packet: &'static str,
        /// The field's name.
        field: &'static str,
        /// The length read from the wire.
        len: i32,
        /// The smallest length allowed.
        min: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// A text field is not valid UTF-8.
    #[error("{packet}.{field}: not valid UTF-8")]
    InvalidUtf8 {
        /// The packet's name.
        packet: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A field's value breaks a rule of the protocol (a flag out of range, a control
    /// character in a user identifier, a file size below 1).
    #[error("{packet}.{field}: {problem}")]
    InvalidValue {
        /// The packet's name.
        packet: &'static str,
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}
