//! What the connection reports to the application, in order, through [`EventStream`].

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;
use vcom_protocol::{AbortReason, GroupExit, GroupId, MessageKind, Timestamp, TransferId, UserId};

use crate::ClientError;
use crate::groups::Group;
use crate::sync::Lists;
use crate::transfer::FileOffer;

/// A message delivered to this device (direct or group), already stored in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who sent it.
    pub sender: UserId,
    /// The group it was sent to; `None` for a direct message.
    pub group: Option<GroupId>,
    /// The timestamp the sender gave.
    pub sent_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The body, byte-exact.
    pub data: Bytes,
    /// True when another device of this user received it before.
    pub read: bool,
    /// Its row in the local history.
    pub history_id: i64,
}

impl Message {
    /// The body as text, for a text message that is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Text => std::str::from_utf8(&self.data).ok(),
            MessageKind::Image => None,
        }
    }
}

/// How a file transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Every byte was handed to the server (sending; `path` is the source file), or
    /// received and saved (receiving; `path` is where the file now is).
    Completed {
        /// The file.
        path: PathBuf,
    },
    /// The server, the peer or this client aborted the transfer with this reason.
    Aborted(AbortReason),
    /// A local error (disk full, unwritable directory) ended a receiving transfer; the
    /// server was told with a FileTransferAbort (270) reason 0.
    Failed(String),
}

/// Why the connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The application called [`crate::Client::close`] or dropped every handle.
    Closed,
    /// The server closed the connection.
    ServerClosed,
    /// An error ended the connection (network, protocol violation, keep-alive).
    Error(ClientError),
}

/// Something that happened on the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A direct message (264).
    Message(Message),
    /// A group message (265); its `group` is set.
    GroupMessage(Message),
    /// A broadcast from the server's administrator (263).
    Broadcast {
        /// The text.
        text: String,
    },
    /// The friend or block list was replaced by the server's newer one.
    ListsChanged(Lists),
    /// A group this user is a member of was created, renamed, or its members or owner
    /// changed (GroupInfo, 525, extended mode; also at login for a group that changed
    /// while this device was away).
    GroupChanged(Group),
    /// This user is no longer a member of a group (GroupRemoved, 526, extended mode).
    /// A group left or lost while this device was away raises no event: it is simply
    /// gone from [`crate::Client::groups`] once the login's group list has arrived.
    GroupRemoved {
        /// The group.
        group: GroupId,
        /// The user left (from any device), or was removed by the owner or the
        /// administrator.
        reason: GroupExit,
    },
    /// Someone offers a file (271): accept or decline it with the handle.
    FileOffer(FileOffer),
    /// Bytes of an accepted incoming file arrived (reported at most about every 1% or
    /// 64 KiB, and at the end).
    TransferProgress {
        /// The transfer.
        transfer: TransferId,
        /// Bytes received so far.
        done: u64,
        /// The announced size.
        total: u64,
    },
    /// An accepted incoming transfer, or an offer not yet answered, ended.
    TransferFinished {
        /// The transfer.
        transfer: TransferId,
        /// How.
        outcome: TransferOutcome,
    },
    /// The connection ended; this is the last event.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
}

/// The events of one connection, in the order they happened.
///
/// The queue is bounded: while it is full the client stops reading from the server, so
/// an application must keep reading, or drop the stream if it does not want events
/// (messages are still stored in the history).
#[derive(Debug)]
pub struct EventStream {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event; `None` after [`Event::Disconnected`] has been delivered.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
