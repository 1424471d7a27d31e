//! Messages this device sends, and what the server says became of them.
//!
//! With a server that negotiated the extension set (`vcom/1+ext`), every message is
//! named with a client message id (516) and the send completes when the server answers
//! (517) once the message is durable: [`Delivery::Stored`], or why it is not stored. A
//! message sent again with the same id (say after a reconnect, when the answer never
//! came) is stored once.

use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use vcom_protocol::{GroupId, MessageKind, SendOutcome, UserId};

use crate::history::Recipient;

/// A message to send; keep it (it is cheap to clone) to send it again with the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The user or group it goes to.
    pub to: Recipient,
    /// Text or image.
    pub kind: MessageKind,
    /// The body.
    pub data: Bytes,
    /// The client message id: unique per device, the same for every resend.
    pub client_id: i64,
}

impl Outgoing {
    /// A message with a fresh client message id.
    pub fn new(to: Recipient, kind: MessageKind, data: Bytes) -> Outgoing {
        Outgoing {
            to,
            kind,
            data,
            client_id: fresh_id(),
        }
    }

    /// A text message to a user.
    pub fn text(to: &UserId, text: &str) -> Outgoing {
        Outgoing::new(
            Recipient::User(to.clone()),
            MessageKind::Text,
            Bytes::copy_from_slice(text.as_bytes()),
        )
    }

    /// A text message to a group.
    pub fn group_text(group: GroupId, text: &str) -> Outgoing {
        Outgoing::new(
            Recipient::Group(group),
            MessageKind::Text,
            Bytes::copy_from_slice(text.as_bytes()),
        )
    }
}

/// What became of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The server has stored it durably: it reaches the recipients' devices now or when
    /// they next log in. (Also the answer when the recipient blocked this user: blocking
    /// is invisible.)
    Stored,
    /// The server did not store it, and says why (an unknown user, a group this user is
    /// not a member of, a full inbox).
    Refused(SendOutcome),
    /// The server does not confirm messages (it did not negotiate `vcom/1+ext`): the
    /// message was handed to the connection, nothing more is known.
    Unconfirmed,
}

impl Delivery {
    /// The answer for an outcome the server sent.
    pub(crate) fn from_outcome(outcome: SendOutcome) -> Delivery {
        match outcome {
            SendOutcome::Stored => Delivery::Stored,
            other => Delivery::Refused(other),
        }
    }
}

/// Nanoseconds since the epoch, made strictly increasing within the process: unique per
/// device across restarts (a device's clock does not run backwards by more than the
/// time between two of its sessions in practice, and within one process ids only grow).
fn fresh_id() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_only_grow() {
        let ids: Vec<i64> = (0..1000).map(|_| fresh_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_stored_outcome_is_stored_and_any_other_is_a_refusal() {
        assert_eq!(
            Delivery::from_outcome(SendOutcome::Stored),
            Delivery::Stored
        );
        assert_eq!(
            Delivery::from_outcome(SendOutcome::UnknownRecipient),
            Delivery::Refused(SendOutcome::UnknownRecipient)
        );
    }
}
