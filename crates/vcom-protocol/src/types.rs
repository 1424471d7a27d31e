//! Validated newtypes for the values packets carry: a value that exists is valid.

use std::fmt;

/// A user identifier: 1 to [`UserId::MAX_LEN`] bytes of UTF-8 without control characters.
///
/// The configured [`crate::Limits::max_user_id_len`] (64 by default) is checked by the
/// decoder and the server; this type enforces the rules that hold for every server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

/// Why a string is not a [`UserId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUserId {
    /// The identifier is empty.
    #[error("a user identifier must not be empty")]
    Empty,
    /// The identifier is longer than the allowed number of bytes.
    #[error("a user identifier must be at most {max} bytes, this one is {len}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The identifier contains a control character (such as NUL or a newline).
    #[error("a user identifier must not contain control characters")]
    ControlCharacter,
}

impl UserId {
    /// The longest identifier any server may allow, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Validates `id` as a user identifier of at most [`UserId::MAX_LEN`] bytes.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidUserId> {
        Self::with_max_len(id, Self::MAX_LEN)
    }

    /// Validates `id` as a user identifier of at most `max_len` bytes.
    pub fn with_max_len(id: impl Into<String>, max_len: usize) -> Result<Self, InvalidUserId> {
        let id = id.into();
        let max = max_len.min(Self::MAX_LEN);
        if id.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        if id.len() > max {
            return Err(InvalidUserId::TooLong { len: id.len(), max });
        }
        if id.chars().any(char::is_control) {
            return Err(InvalidUserId::ControlCharacter);
        }
        Ok(UserId(id))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier as text, consuming it.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for UserId {
    type Err = InvalidUserId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserId::new(s)
    }
}

macro_rules! i32_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i32);

        impl $name {
            /// The raw wire value.
            pub fn get(self) -> i32 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

i32_id!(
    /// A device identifier, issued by the server per device of a user.
    ///
    /// [`DeviceId::NEW`] (-1) in a login asks the server for a new one.
    DeviceId
);
i32_id!(
    /// A group identifier.
    GroupId
);
i32_id!(
    /// A file-transfer identifier, issued by the server in FileTransferId (269).
    TransferId
);

/// A group's name: 1 to [`GroupName::MAX_LEN`] bytes of UTF-8, not blank, without control
/// characters.
///
/// Packets carry names as plain strings (up to [`crate::Limits::GROUP_NAME_CAP`] bytes)
/// so that a server can answer a bad one with GroupResult outcome 6 rather than close
/// the connection; this type is the rule the server applies and the SDK checks first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

/// Why a string is not a [`GroupName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidGroupName {
    /// The name is empty or only white space.
    #[error("a group name must not be blank")]
    Blank,
    /// The name is longer than [`GroupName::MAX_LEN`] bytes.
    #[error("a group name must be at most {max} bytes, this one is {len}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The name contains a control character (such as NUL or a newline).
    #[error("a group name must not contain control characters")]
    ControlCharacter,
}

impl GroupName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `name` as a group name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidGroupName> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(InvalidGroupName::Blank);
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidGroupName::TooLong {
                len: name.len(),
                max: Self::MAX_LEN,
            });
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidGroupName::ControlCharacter);
        }
        Ok(GroupName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as text, consuming it.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeviceId {
    /// Sent in a ConnectionRequest by a device that has no identifier yet.
    pub const NEW: DeviceId = DeviceId(-1);
}

/// Milliseconds since 1970-01-01T00:00:00Z, as a Java `long`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// "Never set": the timestamp of a list that has never been stored.
    pub const NEVER: Timestamp = Timestamp(0);

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

/// A [`Timestamp`] as a calendar date and time of day in UTC (proleptic Gregorian).
///
/// Displayed as RFC 3339 with milliseconds, e.g. `2023-11-14T22:13:20.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDateTime {
    /// The year (may be before 1970 or after 9999).
    pub year: i64,
    /// 1 to 12.
    pub month: u8,
    /// 1 to 31.
    pub day: u8,
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59.
    pub second: u8,
    /// 0 to 999.
    pub millis: u16,
}

impl Timestamp {
    /// The date and time this timestamp names, in UTC. Pure arithmetic: no clock and
    /// no time-zone database (Howard Hinnant's `civil_from_days`).
    pub fn utc(self) -> UtcDateTime {
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        // Every value below is in range by construction; the fallbacks never apply.
        let small = |v: i64| u8::try_from(v).unwrap_or(0);
        UtcDateTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: small(month),
            day: small(day),
            hour: small(tod / 3600),
            minute: small(tod / 60 % 60),
            second: small(tod % 60),
            millis: u16::try_from(self.0.rem_euclid(1000)).unwrap_or(0),
        }
    }
}

impl fmt::Display for UtcDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A file size in bytes: 1 to `i32::MAX`, as the wire's `i32` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileSize(i32);

impl FileSize {
    /// A size of `bytes`, or `None` when it is below 1 or above `i32::MAX`.
    pub fn new(bytes: u64) -> Option<Self> {
        i32::try_from(bytes).ok().filter(|b| *b >= 1).map(FileSize)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        // The invariant `self.0 >= 1` makes this conversion lossless.
        self.0.unsigned_abs().into()
    }

    /// The raw wire value.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for FileSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a message's data holds: the wire's "is text message" boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (the flag is true).
    Text,
    /// Image data (the flag is false).
    Image,
}

impl MessageKind {
    /// The wire flag: true for text.
    pub fn is_text(self) -> bool {
        matches!(self, MessageKind::Text)
    }

    /// The kind a wire flag stands for.
    pub fn from_is_text(is_text: bool) -> Self {
        if is_text {
            MessageKind::Text
        } else {
            MessageKind::Image
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rejects_empty_long_and_control_characters() {
        assert_eq!(UserId::new(""), Err(InvalidUserId::Empty));
        assert_eq!(
            UserId::with_max_len("abcdef", 5),
            Err(InvalidUserId::TooLong { len: 6, max: 5 })
        );
        assert_eq!(UserId::new("a\nb"), Err(InvalidUserId::ControlCharacter));
        assert_eq!(
            UserId::new("äliçe").map(|u| u.to_string()),
            Ok("äliçe".into())
        );
    }

    #[test]
    fn timestamps_convert_to_utc_calendar_dates() {
        assert_eq!(Timestamp(0).utc().to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_700_000_000_000).utc().to_string(),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            Timestamp(951_782_400_123).utc().to_string(),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(Timestamp(-1).utc().to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn file_size_is_one_to_i32_max() {
        assert_eq!(FileSize::new(0), None);
        assert_eq!(FileSize::new(1).map(FileSize::bytes), Some(1));
        assert_eq!(
            FileSize::new(i32::MAX as u64).map(FileSize::get),
            Some(i32::MAX)
        );
        assert_eq!(FileSize::new(i32::MAX as u64 + 1), None);
    }
}
