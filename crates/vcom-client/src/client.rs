//! The application's handle: cheap to clone, it talks to the connection's session task.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use vcom_protocol::{
    ClientPacket, DeviceId, GroupId, Limits, MessageKind, SendGroupMessage, SendUserMessage, UserId,
};

use crate::ClientError;
use crate::config::ClientConfig;
use crate::event::EventStream;
use crate::groups::{Group, GroupRequest};
use crate::history::{History, HistoryEntry, HistoryQuery, Recipient, SentEntry};
use crate::outgoing::{Delivery, Outgoing};
use crate::session::{Command, Handles, Send};
use crate::sync::{ListKind, Lists};
use crate::transfer::{self, TransferHandle};

/// A connection to a vCom server, logged in as one user on one device.
///
/// Clones share the connection. Dropping every clone (and every unanswered file offer)
/// closes it, as does [`Client::close`]. Every method fails with
/// [`ClientError::Closed`] once the connection has ended.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    user: UserId,
    device: DeviceId,
    limits: Limits,
    out: mpsc::Sender<ClientPacket>,
    commands: mpsc::Sender<Command>,
    sends: mpsc::Sender<Send>,
    lists: watch::Receiver<Lists>,
    groups: watch::Receiver<Vec<Group>>,
    history: History,
    received: Arc<AtomicU64>,
    request_slot: Arc<Semaphore>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.inner.user)
            .field("device", &self.inner.device)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server, verifies it, logs in, and starts the connection task.
    ///
    /// Creates the profile and the identity on first use, pins the server's certificate
    /// as the trust mode says, and stores the device identifier the server issues.
    /// Returns the handle and the stream of events; read the stream (or drop it).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use vcom_client::{Client, ClientConfig, Trust, UserId};
    ///
    /// let config = ClientConfig::new("127.0.0.1:7420", UserId::new("alice")?, "alice-profile")
    ///     .with_trust(Trust::TrustOnFirstUse);
    /// let (client, events) = Client::connect(config).await?;
    /// println!("logged in as device {}", client.device_id());
    /// # drop(events);
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: ClientConfig) -> Result<(Client, EventStream), ClientError> {
        crate::login::connect(config).await
    }

    /// Logs in and runs the connection over `stream` instead of a verified TLS
    /// connection: the ConnectionRequest (256) is written to it, and what it yields is
    /// read as the server's packets. `ext` says whether the extension set
    /// (`vcom/1+ext`) counts as negotiated; the configuration's server, trust and server
    /// name are not used. For the fuzz target `client` (`fuzz/`) and the replay of its
    /// corpus; applications use [`Client::connect`].
    #[doc(hidden)]
    pub async fn connect_over<S>(
        stream: S,
        config: ClientConfig,
        ext: bool,
    ) -> Result<(Client, EventStream), ClientError>
    where
        S: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + std::marker::Send
            + Sync
            + Unpin
            + 'static,
    {
        let timeout = config.connect_timeout;
        tokio::time::timeout(timeout, async {
            let (profile, _identity) = crate::login::open_profile(&config).await?;
            let history = History::open(profile.history_path()).await?;
            crate::login::log_in(Box::new(stream), config, profile, history, ext).await
        })
        .await
        .map_err(|_| ClientError::Timeout("connecting and logging in"))?
    }

    pub(crate) fn new(
        user: UserId,
        device: DeviceId,
        limits: Limits,
        history: History,
        handles: Handles,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                user,
                device,
                limits,
                out: handles.out,
                commands: handles.commands,
                sends: handles.sends,
                lists: handles.lists,
                groups: handles.groups,
                history,
                received: handles.received,
                request_slot: Arc::new(Semaphore::new(1)),
            }),
        }
    }

    /// The logged-in user.
    pub fn user(&self) -> &UserId {
        &self.inner.user
    }

    /// The device identifier the server issued (stored in the profile for next time).
    pub fn device_id(&self) -> DeviceId {
        self.inner.device
    }

    /// Sends a text message to a user (266) and returns once the server has stored it
    /// (see [`Client::send_message`]).
    ///
    /// ```no_run
    /// # async fn demo(client: vcom_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use vcom_client::{Delivery, UserId};
    ///
    /// match client.send_text(&UserId::new("bob")?, "lunch at one?").await? {
    ///     Delivery::Stored => println!("stored by the server"),
    ///     Delivery::Refused(why) => eprintln!("not sent: {why}"),
    ///     Delivery::Unconfirmed => println!("handed to a server that does not confirm"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_text(&self, to: &UserId, text: &str) -> Result<Delivery, ClientError> {
        self.send_message(Outgoing::text(to, text)).await
    }

    /// Sends image data to a user (266); see [`Client::send_message`].
    pub async fn send_image(&self, to: &UserId, data: Bytes) -> Result<Delivery, ClientError> {
        self.send_message(Outgoing::new(
            Recipient::User(to.clone()),
            MessageKind::Image,
            data,
        ))
        .await
    }

    /// Sends a text message to a group this user is a member of (267); see
    /// [`Client::send_message`].
    pub async fn send_group_text(
        &self,
        group: GroupId,
        text: &str,
    ) -> Result<Delivery, ClientError> {
        self.send_message(Outgoing::group_text(group, text)).await
    }

    /// Sends image data to a group this user is a member of (267); see
    /// [`Client::send_message`].
    pub async fn send_group_image(
        &self,
        group: GroupId,
        data: Bytes,
    ) -> Result<Delivery, ClientError> {
        self.send_message(Outgoing::new(
            Recipient::Group(group),
            MessageKind::Image,
            data,
        ))
        .await
    }

    /// Sends a message (266 or 267) and says what became of it.
    ///
    /// The history records the message as [`DeliveryState::Pending`] before it is
    /// written to the server, then records the answer. With a server that confirms
    /// messages (`vcom/1+ext`), this returns once the server has stored the message
    /// durably ([`Delivery::Stored`]) or refused it ([`Delivery::Refused`], recorded
    /// with the reason). If the connection ends first the result is
    /// [`ClientError::Closed`], the fate of the message is unknown and its row stays
    /// pending: send the same [`Outgoing`] again (same `client_id`) on a new connection
    /// and the server stores it once, and its row is settled. With a server that does not
    /// confirm, it returns [`Delivery::Unconfirmed`] once the message is handed to the
    /// connection.
    ///
    /// [`DeliveryState::Pending`]: crate::DeliveryState::Pending
    pub async fn send_message(&self, message: Outgoing) -> Result<Delivery, ClientError> {
        self.check_message_len(&message.data)?;
        let sent_at = crate::now();
        let packet = match &message.to {
            Recipient::User(to) => ClientPacket::from(SendUserMessage {
                recipient: to.clone(),
                sent_at,
                kind: message.kind,
                data: message.data.clone(),
            }),
            Recipient::Group(group) => ClientPacket::from(SendGroupMessage {
                group: *group,
                sent_at,
                kind: message.kind,
                data: message.data.clone(),
            }),
        };
        let entry = SentEntry {
            sender: self.inner.user.clone(),
            to: message.to,
            sent_at,
            kind: message.kind,
            data: message.data,
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .sends
            .send(Send {
                client_id: message.client_id,
                packet,
                entry,
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)?
    }

    fn check_message_len(&self, data: &[u8]) -> Result<(), ClientError> {
        let max = self.inner.limits.max_message_len;
        if data.len() > max {
            return Err(ClientError::InvalidInput(format!(
                "a message may hold at most {max} bytes, this one has {}",
                data.len()
            )));
        }
        Ok(())
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(make(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// Both lists as they are now, with their timestamps.
    pub fn lists(&self) -> Lists {
        self.inner.lists.borrow().clone()
    }

    /// The friend list.
    pub fn friends(&self) -> Vec<UserId> {
        self.inner.lists.borrow().friends.entries.clone()
    }

    /// The block list.
    pub fn blocks(&self) -> Vec<UserId> {
        self.inner.lists.borrow().blocks.entries.clone()
    }

    async fn change_list(
        &self,
        kind: ListKind,
        user: &UserId,
        add: bool,
    ) -> Result<bool, ClientError> {
        let user = user.clone();
        self.command(|reply| Command::ChangeList {
            kind,
            user,
            add,
            reply,
        })
        .await?
    }

    /// Adds a friend and uploads the friend list; `false` if already a friend.
    pub async fn add_friend(&self, user: &UserId) -> Result<bool, ClientError> {
        self.change_list(ListKind::Friends, user, true).await
    }

    /// Removes a friend and uploads the friend list; `false` if not a friend.
    pub async fn remove_friend(&self, user: &UserId) -> Result<bool, ClientError> {
        self.change_list(ListKind::Friends, user, false).await
    }

    /// Blocks a user (the server drops their messages to us) and uploads the block list;
    /// `false` if already blocked.
    pub async fn block(&self, user: &UserId) -> Result<bool, ClientError> {
        self.change_list(ListKind::Blocks, user, true).await
    }

    /// Unblocks a user and uploads the block list; `false` if not blocked.
    pub async fn unblock(&self, user: &UserId) -> Result<bool, ClientError> {
        self.change_list(ListKind::Blocks, user, false).await
    }

    /// The groups this user is a member of, as the server last described them (kept in
    /// the profile, so known before the first packet of a new connection). Extended
    /// mode only: with a server that does not offer client-side groups, only groups
    /// saved earlier. A group's messages carry its identifier; this gives its name.
    pub fn groups(&self) -> Vec<Group> {
        self.inner.groups.borrow().clone()
    }

    /// One group of [`Client::groups`].
    pub fn group(&self, group: GroupId) -> Option<Group> {
        self.inner
            .groups
            .borrow()
            .iter()
            .find(|g| g.id == group)
            .cloned()
    }

    async fn group_request(&self, request: GroupRequest) -> Result<GroupId, ClientError> {
        self.command(|reply| Command::Group { request, reply })
            .await?
    }

    /// Creates a group (518) owned by this user, with `members` (known users) and this
    /// user as its members, and returns its identifier once the server has made it;
    /// [`Client::groups`] then holds it. Refusals are
    /// [`ClientError::GroupRefused`] with the server's reason (an invalid name, an
    /// unknown user, too many groups or members); without the extension set,
    /// [`ClientError::ExtensionRequired`].
    pub async fn create_group(
        &self,
        name: &str,
        members: &[UserId],
    ) -> Result<GroupId, ClientError> {
        let name = vcom_protocol::GroupName::new(name)
            .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        self.group_request(GroupRequest::Create {
            name: name.into_string(),
            members: members.to_vec(),
        })
        .await
    }

    /// Renames a group this user owns (519).
    pub async fn rename_group(&self, group: GroupId, name: &str) -> Result<(), ClientError> {
        let name = vcom_protocol::GroupName::new(name)
            .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        self.group_request(GroupRequest::Rename {
            group,
            name: name.into_string(),
        })
        .await
        .map(drop)
    }

    /// Adds a member to a group this user owns (520); adding a member already in it
    /// succeeds and changes nothing.
    pub async fn add_group_member(&self, group: GroupId, user: &UserId) -> Result<(), ClientError> {
        self.group_request(GroupRequest::Add {
            group,
            user: user.clone(),
        })
        .await
        .map(drop)
    }

    /// Removes a member from a group this user owns (521); removing someone who is not
    /// a member succeeds and changes nothing, removing oneself is leaving.
    pub async fn remove_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> Result<(), ClientError> {
        self.group_request(GroupRequest::Remove {
            group,
            user: user.clone(),
        })
        .await
        .map(drop)
    }

    /// Leaves a group (522), the administrator's groups included. An owner who leaves
    /// hands the group to the remaining member first by identifier; the last member of
    /// a user's group to leave deletes it.
    pub async fn leave_group(&self, group: GroupId) -> Result<(), ClientError> {
        self.group_request(GroupRequest::Leave { group })
            .await
            .map(drop)
    }

    /// Starts sending the file at `path` to a user; the file name sent is the path's
    /// last component. Fails at once if the file cannot be opened, is empty, or is
    /// larger than 2 GiB - 1 (the protocol's limit). File requests of one connection are
    /// made one at a time, as the protocol requires.
    ///
    /// ```no_run
    /// # async fn demo(client: vcom_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::path::Path;
    /// use vcom_client::{TransferOutcome, UserId};
    ///
    /// let mut transfer = client.send_file(&UserId::new("bob")?, Path::new("report.pdf")).await?;
    /// while let Some(p) = transfer.progress_changed().await {
    ///     eprint!("\r{} of {} bytes", p.done, p.total);
    /// }
    /// match transfer.finish().await? {
    ///     TransferOutcome::Completed { .. } => eprintln!("\nsent"),
    ///     other => eprintln!("\nnot sent: {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_file(&self, to: &UserId, path: &Path) -> Result<TransferHandle, ClientError> {
        let ctx = transfer::Outgoing {
            commands: self.inner.commands.clone(),
            out: self.inner.out.clone(),
            request_slot: self.inner.request_slot.clone(),
        };
        transfer::start(ctx, to.clone(), path, &self.inner.limits).await
    }

    /// Messages from the local history, received and sent, oldest first.
    ///
    /// ```no_run
    /// # async fn demo(client: vcom_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use vcom_client::{HistoryQuery, UserId};
    ///
    /// for entry in client.history(HistoryQuery::With(UserId::new("bob")?)).await? {
    ///     println!("{:?} {}: {} bytes", entry.direction, entry.sender, entry.data.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<HistoryEntry>, ClientError> {
        self.inner.history.query(query).await
    }

    /// The local history database.
    pub fn history_store(&self) -> &History {
        &self.inner.history
    }

    /// How many messages (direct and group) this connection has received and stored;
    /// the messages it sent are not counted.
    pub fn received_count(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Sends a Ping (512) and waits for its Pong; returns the round-trip time.
    ///
    /// Packets are handled in order, so when this returns, everything the server sent
    /// before its Pong (e.g. the messages stored for this device at login) has been
    /// written to the history; with a server that takes receipts, the messages
    /// received before the Ping are also confirmed (the server answers only once it has
    /// recorded that), so the user's other devices get them as read.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.command(|reply| Command::Ping { reply }).await?;
        Ok(start.elapsed())
    }

    /// Closes the connection: sends what is queued, ends TLS cleanly, and waits until
    /// that is done. The event stream then ends with `Disconnected { reason: Closed }`.
    /// Closing a closed connection is not an error.
    pub async fn close(&self) -> Result<(), ClientError> {
        match self.command(|reply| Command::Close { reply }).await {
            Ok(()) | Err(ClientError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
