//! The bounds the decoder enforces before it allocates anything.
//!
//! Every length or count read from the wire is compared with these values first, so a
//! peer cannot make us reserve memory by announcing a large field.

/// Configurable bounds on decoded fields; [`Limits::default`] holds `docs/protocol.md`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest user identifier in bytes (default 64). Identifiers are never empty.
    pub max_user_id_len: usize,
    /// Longest server password in bytes (default 256).
    pub max_password_len: usize,
    /// Longest message body (text or image) or broadcast in bytes (default 1 MiB).
    pub max_message_len: usize,
    /// Most entries in a friend or block list (default 10 000).
    pub max_list_len: usize,
    /// Longest file name in bytes (default 255). File names are never empty.
    pub max_file_name_len: usize,
}

impl Limits {
    /// The hard cap on the user identifier inside a ConnectionRequest (256).
    ///
    /// A login names an identifier that the server judges itself, answering an invalid
    /// one with ConnectionDenied code 7; only identifiers beyond this cap are a protocol
    /// violation that closes the connection without an answer.
    pub const LOGIN_USER_ID_CAP: usize = 4096;

    /// The longest group name a packet may carry (GroupCreate 518, GroupRename 519,
    /// GroupInfo 525), in bytes. The server judges names itself (see
    /// [`crate::GroupName`]), answering a bad one with GroupResult outcome 6; only a name
    /// beyond this cap (or not UTF-8) is a protocol violation.
    pub const GROUP_NAME_CAP: usize = 256;

    /// The largest chunk of file data one FileChunk (273) may carry.
    pub const MAX_CHUNK_LEN: usize = 1024;

    /// The limits for a connection that has not logged in: only a ConnectionRequest
    /// (256) is legal there, so every other field a packet could announce (a message
    /// body, a list, a file name) may be empty at most. A peer that has not logged in
    /// then makes a server buffer no more than one 256 before it is refused.
    pub fn before_login(self) -> Limits {
        Limits {
            max_message_len: 0,
            max_list_len: 0,
            max_file_name_len: 0,
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_user_id_len: 64,
            max_password_len: 256,
            max_message_len: 1024 * 1024,
            max_list_len: 10_000,
            max_file_name_len: 255,
        }
    }
}
