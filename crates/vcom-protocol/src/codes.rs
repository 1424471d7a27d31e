//! ConnectionDenied (258) error codes, FileTransferAbort (270) reasons, and the codes of
//! the extension packets SendAck (517), GroupResult (523) and GroupRemoved (526).
//!
//! The wiki defines 258 codes 0-2 and no 270 reasons; the rest are this project's
//! (`docs/protocol.md`). Unknown values from a peer are kept as `Other` rather than rejected, so
//! a newer server's codes still reach the application.

macro_rules! wire_enum {
    (
        $(#[$doc:meta])* $name:ident($repr:ty) {
            $($(#[$vdoc:meta])* $variant:ident = $value:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A value this version does not know.
            Other($repr),
        }

        impl $name {
            /// Every known value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The value on the wire.
            pub fn code(self) -> $repr {
                match self {
                    $($name::$variant => $value,)*
                    $name::Other(v) => v,
                }
            }

            /// The variant for a wire value.
            pub fn from_code(code: $repr) -> Self {
                match code {
                    $($value => $name::$variant,)*
                    v => $name::Other(v),
                }
            }
        }
    };
}

wire_enum! {
    /// Why a login was refused: the error code of ConnectionDenied (258).
    DenyCode(i8) {
        /// 0: the user identifier is blacklisted on this server.
        UserBlacklisted = 0,
        /// 1: the client's IP address is blacklisted on this server.
        IpBlacklisted = 1,
        /// 2: neither the user identifier nor the IP address is whitelisted.
        NotWhitelisted = 2,
        /// 3 (extension): wrong or missing server password.
        WrongPassword = 3,
        /// 4 (extension): the client's key does not match the one bound to the user, or
        /// no client certificate was presented.
        KeyMismatch = 4,
        /// 5 (extension): the device identifier was not issued to this user.
        UnknownDevice = 5,
        /// 6 (extension): the server is full or the address has too many connections.
        ServerFull = 6,
        /// 7 (extension): the user identifier is invalid, or unknown while registration
        /// is closed.
        InvalidUser = 7,
    }
}

wire_enum! {
    /// Why a file transfer ended early: the reason of FileTransferAbort (270).
    AbortReason(i32) {
        /// 0: the recipient declined the file.
        Declined = 0,
        /// 1: the file is larger than the server's `max_file_size`.
        TooLarge = 1,
        /// 2: the recipient is not online.
        RecipientOffline = 2,
        /// 3: the sender's or the recipient's connection dropped.
        ConnectionDropped = 3,
        /// 4: not allowed (the recipient is unknown or has blocked the sender).
        NotAllowed = 4,
        /// 5: a protocol violation (size mismatch, early completion, bad chunk).
        ProtocolViolation = 5,
        /// 6: the transfer was idle for too long.
        TimedOut = 6,
        /// 7: another device of the recipient accepted the file.
        AcceptedElsewhere = 7,
        /// 8: the sender cancelled the transfer.
        Cancelled = 8,
    }
}

wire_enum! {
    /// What became of a tagged message: the outcome of SendAck (517).
    SendOutcome(i8) {
        /// 0: stored durably; it reaches the recipients' devices now or when they log in.
        /// Also the answer when a recipient has blocked the sender: blocking stays
        /// invisible.
        Stored = 0,
        /// 1: no such user; nothing was stored.
        UnknownRecipient = 1,
        /// 2: no such group, or the sender is not a member; nothing was stored.
        NotAMember = 2,
        /// 3: the recipient's inbox is full (too many undelivered messages); nothing was
        /// stored for them. Sending again later may succeed.
        InboxFull = 3,
    }
}

wire_enum! {
    /// What became of a group request (518-522): the outcome of GroupResult (523).
    GroupOutcome(i8) {
        /// 0: done (also when nothing had to change: adding a member already in, removing
        /// one already gone).
        Done = 0,
        /// 1: only the group's owner may do this.
        NotOwner = 1,
        /// 2: the requester is not a member of the group.
        NotAMember = 2,
        /// 3: no such group.
        UnknownGroup = 3,
        /// 4: a user named in the request is unknown to the server.
        UnknownUser = 4,
        /// 5: the group was made by the server's administrator, who alone changes it
        /// (members may still leave it).
        AdminGroup = 5,
        /// 6: the name is empty, too long or holds control characters.
        InvalidName = 6,
        /// 7: the requester already owns as many groups as the server allows.
        TooManyGroups = 7,
        /// 8: the group would have more members than the server allows.
        TooManyMembers = 8,
    }
}

wire_enum! {
    /// Why a user is no longer a member of a group: the reason of GroupRemoved (526).
    GroupExit(i8) {
        /// 0: the user left (from this device or another one).
        Left = 0,
        /// 1: the owner or the administrator removed the user.
        Removed = 1,
    }
}

impl std::fmt::Display for GroupOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            GroupOutcome::Done => "done",
            GroupOutcome::NotOwner => "only the group's owner may do this",
            GroupOutcome::NotAMember => "not a member of this group",
            GroupOutcome::UnknownGroup => "no such group",
            GroupOutcome::UnknownUser => "no such user",
            GroupOutcome::AdminGroup => {
                "the administrator's group: only the administrator changes it"
            }
            GroupOutcome::InvalidName => "invalid group name",
            GroupOutcome::TooManyGroups => "you already own as many groups as the server allows",
            GroupOutcome::TooManyMembers => {
                "the group would have more members than the server allows"
            }
            GroupOutcome::Other(code) => return write!(f, "unknown outcome {code}"),
        };
        write!(f, "{text} (outcome {})", self.code())
    }
}

impl std::fmt::Display for GroupExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupExit::Left => f.write_str("left"),
            GroupExit::Removed => f.write_str("removed"),
            GroupExit::Other(code) => write!(f, "unknown reason {code}"),
        }
    }
}

impl std::fmt::Display for SendOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            SendOutcome::Stored => "stored",
            SendOutcome::UnknownRecipient => "no such user",
            SendOutcome::NotAMember => "no such group, or not a member of it",
            SendOutcome::InboxFull => "the recipient's inbox is full",
            SendOutcome::Other(code) => return write!(f, "unknown outcome {code}"),
        };
        write!(f, "{text} (outcome {})", self.code())
    }
}

impl std::fmt::Display for DenyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            DenyCode::UserBlacklisted => "the user identifier is blacklisted",
            DenyCode::IpBlacklisted => "the IP address is blacklisted",
            DenyCode::NotWhitelisted => "the user identifier or IP address is not whitelisted",
            DenyCode::WrongPassword => "wrong or missing server password",
            DenyCode::KeyMismatch => "the key does not match the one bound to this user",
            DenyCode::UnknownDevice => "unknown device identifier for this user",
            DenyCode::ServerFull => "the server is full or this address has too many connections",
            DenyCode::InvalidUser => "invalid or unknown user identifier",
            DenyCode::Other(code) => return write!(f, "unknown denial code {code}"),
        };
        write!(f, "{text} (code {})", self.code())
    }
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            AbortReason::Declined => "declined by the recipient",
            AbortReason::TooLarge => "larger than the server allows",
            AbortReason::RecipientOffline => "the recipient is not online",
            AbortReason::ConnectionDropped => "a connection dropped",
            AbortReason::NotAllowed => "not allowed",
            AbortReason::ProtocolViolation => "protocol violation",
            AbortReason::TimedOut => "timed out",
            AbortReason::AcceptedElsewhere => "accepted on another device",
            AbortReason::Cancelled => "cancelled by the sender",
            AbortReason::Other(code) => return write!(f, "unknown abort reason {code}"),
        };
        write!(f, "{text} (reason {})", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_values() {
        for code in DenyCode::ALL {
            assert_eq!(DenyCode::from_code(code.code()), *code);
        }
        for reason in AbortReason::ALL {
            assert_eq!(AbortReason::from_code(reason.code()), *reason);
        }
        for outcome in SendOutcome::ALL {
            assert_eq!(SendOutcome::from_code(outcome.code()), *outcome);
        }
        for outcome in GroupOutcome::ALL {
            assert_eq!(GroupOutcome::from_code(outcome.code()), *outcome);
        }
        for exit in GroupExit::ALL {
            assert_eq!(GroupExit::from_code(exit.code()), *exit);
        }
        assert_eq!(GroupOutcome::ALL.len(), 9);
        assert_eq!(GroupExit::ALL.len(), 2);
        assert_eq!(SendOutcome::ALL.len(), 4);
        assert_eq!(DenyCode::ALL.len(), 8);
        assert_eq!(AbortReason::ALL.len(), 9);
        assert_eq!(DenyCode::from_code(42), DenyCode::Other(42));
        assert_eq!(AbortReason::from_code(-3), AbortReason::Other(-3));
    }
}
