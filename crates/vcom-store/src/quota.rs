//! The inbox quotas, one rule for both backends: how many undelivered direct messages a
//! user may have waiting, and how many of those from one sender. Each backend reads the
//! counts its own way and asks these functions what they mean.

use vcom_protocol::UserId;

use crate::StoreConfig;

/// How much of a user's inbox may wait: in all, and from one sender.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quotas {
    /// Undelivered direct messages one user may have waiting.
    pub(crate) per_user: Option<u64>,
    /// Of those, how many may come from one sender.
    pub(crate) per_sender: Option<u64>,
}

/// Why a recipient refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The recipient's inbox holds `per_user` messages.
    Inbox,
    /// The sender already has `per_sender` messages waiting for the recipient.
    SendersShare,
}

/// What the recipient's whole inbox says about one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Decided: admitted (with whether the recipient's senders are counted), or refused.
    Done(Result<bool, Full>),
    /// The sender's share decides: read it with [`by_sender`], starting to count the
    /// recipient's senders first when `track` says so.
    CountSender {
        /// The recipient's senders are not counted yet and must be from now on.
        track: bool,
    },
}

impl Quotas {
    /// The quotas a store configuration sets.
    pub(crate) fn of(config: &StoreConfig) -> Quotas {
        Quotas {
            per_user: config.pending_cap_per_user,
            per_sender: config.pending_per_sender,
        }
    }

    /// Whether neither quota is set, so nothing need be read to admit a message.
    pub(crate) fn off(self) -> bool {
        self.per_user.is_none() && self.per_sender.is_none()
    }

    /// The verdict from the recipient's `pending` messages, and whether its senders are
    /// already counted (`tracked`).
    pub(crate) fn inbox(self, pending: u64, tracked: bool) -> Verdict {
        if self.per_user.is_some_and(|cap| pending >= cap) {
            return Verdict::Done(Err(Full::Inbox));
        }
        match self.per_sender {
            None => Verdict::Done(Ok(tracked)),
            // No sender can have a full share of fewer messages than the share.
            Some(quota) if !tracked && pending < quota => Verdict::Done(Ok(false)),
            Some(_) => Verdict::CountSender { track: !tracked },
        }
    }

    /// The verdict from the `from_sender` messages the sender has waiting (its senders
    /// are counted by then).
    pub(crate) fn by_sender(self, from_sender: i64) -> Result<bool, Full> {
        match self.per_sender {
            Some(quota) if u64::try_from(from_sender).unwrap_or(0) >= quota => {
                Err(Full::SendersShare)
            }
            _ => Ok(true),
        }
    }
}

impl Full {
    /// Logs the refusal of a message from `sender` to `recipient`.
    pub(crate) fn log(self, sender: &UserId, recipient: &UserId, quotas: Quotas) {
        match self {
            Full::Inbox => tracing::warn!(
                from = %sender, to = %recipient,
                cap = quotas.per_user.unwrap_or(0),
                "store: a message was refused: the recipient's inbox is full \
                 (retention.pending_per_user undelivered messages); nothing it \
                 had was dropped"
            ),
            Full::SendersShare => tracing::warn!(
                from = %sender, to = %recipient,
                quota = quotas.per_sender.unwrap_or(0),
                "store: a message was refused: the sender already has \
                 retention.pending_per_sender messages waiting for this \
                 recipient; nothing it had was dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Quotas = Quotas {
        per_user: Some(10),
        per_sender: Some(4),
    };

    #[test]
    fn a_full_inbox_refuses_before_any_share_is_read() {
        assert_eq!(BOTH.inbox(10, true), Verdict::Done(Err(Full::Inbox)));
        assert_eq!(BOTH.inbox(12, false), Verdict::Done(Err(Full::Inbox)));
    }

    #[test]
    fn senders_are_counted_only_once_the_inbox_could_hold_a_full_share() {
        assert_eq!(BOTH.inbox(3, false), Verdict::Done(Ok(false)));
        assert_eq!(BOTH.inbox(4, false), Verdict::CountSender { track: true });
        assert_eq!(BOTH.inbox(2, true), Verdict::CountSender { track: false });
    }

    #[test]
    fn a_sender_at_its_share_is_refused() {
        assert_eq!(BOTH.by_sender(3), Ok(true));
        assert_eq!(BOTH.by_sender(4), Err(Full::SendersShare));
    }

    #[test]
    fn without_a_share_only_the_inbox_counts() {
        let inbox_only = Quotas {
            per_user: Some(10),
            per_sender: None,
        };
        assert_eq!(inbox_only.inbox(9, true), Verdict::Done(Ok(true)));
        assert_eq!(inbox_only.inbox(9, false), Verdict::Done(Ok(false)));
        assert!(!inbox_only.off());
        assert!(
            Quotas {
                per_user: None,
                per_sender: None
            }
            .off()
        );
    }
}
