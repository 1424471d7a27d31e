//! The connection task: owns the read half of the TLS stream and all per-connection
//! state, turns server packets into history rows and events, and carries out the
//! commands of the client handles.
//!
//! It never blocks on the application: while the event queue is full it stops reading
//! from the server (backpressure) but keeps serving commands, so a handle awaiting an
//! answer cannot deadlock against an unread event. Writes go through a separate writer
//! task and its bounded queue.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Interval;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use vcom_protocol::{
    AbortReason, ClientPacket, FileTransferAbort, FileTransferAccept, FileTransferRequest,
    MessageTag, Ping, Pong, Receipt, ServerPacket, TransferId, UserId, VcomCodec,
};

use crate::event::{DisconnectReason, Event, Message, TransferOutcome};
use crate::groups::{Group, GroupReply, GroupRequest, GroupsState};
use crate::history::{History, NewEntry, SentEntry};
use crate::outgoing::Delivery;
use crate::profile::Profile;
use crate::sync::{ListKind, Lists, ListsState};
use crate::transfer::{Destination, FileOffer, Signal, place};
use crate::{ClientError, ProtocolError};

pub(crate) type Codec = VcomCodec<ServerPacket, ClientPacket>;
/// The connection's bytes: the verified TLS stream, or any stream handed to
/// [`crate::Client::connect_over`].
pub(crate) type Transport = Box<dyn Bytestream>;
pub(crate) type Reader = FramedRead<ReadHalf<Transport>, Codec>;
pub(crate) type Writer = FramedWrite<WriteHalf<Transport>, Codec>;

/// A byte stream both ways, owned by the session.
pub(crate) trait Bytestream:
    AsyncRead + AsyncWrite + std::marker::Send + Sync + Unpin + 'static
{
}
impl<T: AsyncRead + AsyncWrite + std::marker::Send + Sync + Unpin + 'static> Bytestream for T {}

/// How many packets may wait for the writer task.
pub(crate) const SEND_QUEUE: usize = 64;
/// How many commands may wait for the session.
pub(crate) const COMMAND_QUEUE: usize = 32;
/// How long closing may wait for the server to take the last bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many sent messages may wait for the server's answer (517) at once; more sends
/// wait their turn.
const MAX_AWAITING: usize = 256;
/// Received messages confirmed by one receipt (515) at most...
const RECEIPT_EVERY: u32 = 64;
/// ...and the longest a stored message waits for its receipt.
const RECEIPT_DELAY: Duration = Duration::from_millis(20);

/// A message for the server, from [`crate::Client::send_message`].
#[derive(Debug)]
pub(crate) struct Send {
    pub(crate) client_id: i64,
    pub(crate) packet: ClientPacket,
    /// Written to the history as pending before the message is written to the server,
    /// then settled with the server's answer.
    pub(crate) entry: SentEntry,
    pub(crate) reply: oneshot::Sender<Result<Delivery, ClientError>>,
}

/// What goes to the writer task: a packet, or a tagged message whose 516 and 266/267
/// must be written back to back.
#[derive(Debug)]
pub(crate) enum Frame {
    One(ClientPacket),
    Tagged(MessageTag, ClientPacket),
}

/// What a client handle asks the session to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Add `user` to or remove it from a list, and upload the list.
    ChangeList {
        kind: ListKind,
        user: UserId,
        add: bool,
        reply: oneshot::Sender<Result<bool, ClientError>>,
    },
    /// Send a 268 and hand back the 269's identifier with the transfer's signals.
    RequestTransfer {
        request: FileTransferRequest,
        reply: oneshot::Sender<(TransferId, mpsc::Receiver<Signal>)>,
    },
    /// An outgoing transfer has ended: stop routing its packets.
    ForgetOutgoing(TransferId),
    /// Accept an offered file into a destination.
    Accept {
        transfer: TransferId,
        to: Destination,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// Decline an offered file.
    Decline(TransferId),
    /// Send a group request (518-522) and answer with the server's GroupResult.
    Group {
        request: GroupRequest,
        reply: GroupReply,
    },
    /// Send a Ping and answer when its Pong has been processed.
    Ping { reply: oneshot::Sender<()> },
    /// Close the connection; answered once the last bytes were written.
    Close { reply: oneshot::Sender<()> },
}

/// Why the session loop stopped without an error.
enum Stop {
    Closed(Option<oneshot::Sender<()>>),
    ServerClosed,
}

/// An incoming file, from offer to completion.
enum Incoming {
    /// Offered (271) and not yet answered; the announced size.
    Offered {
        size: u64,
    },
    Receiving(Receiving),
}

struct Receiving {
    file: tokio::fs::File,
    temp: PathBuf,
    to: Destination,
    size: u64,
    done: u64,
    reported: u64,
}

/// Everything the session needs, handed over by `login`.
pub(crate) struct Parts {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
    pub(crate) profile: Profile,
    pub(crate) history: History,
    pub(crate) keepalive: Option<Duration>,
    /// Whether the server negotiated the extension set (`vcom/1+ext`).
    pub(crate) ext: bool,
}

/// The channels the client handles use to reach the session.
pub(crate) struct Handles {
    pub(crate) out: mpsc::Sender<ClientPacket>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) sends: mpsc::Sender<Send>,
    pub(crate) lists: watch::Receiver<Lists>,
    pub(crate) groups: watch::Receiver<Vec<Group>>,
    pub(crate) received: Arc<AtomicU64>,
}

pub(crate) struct Session {
    reader: Reader,
    out: mpsc::Sender<ClientPacket>,
    commands: mpsc::Receiver<Command>,
    /// For offer handles; weak so that dropping every client handle still ends the
    /// session.
    command_tx: mpsc::WeakSender<Command>,
    events: mpsc::Sender<Event>,
    events_open: bool,
    /// Events produced but not yet taken by the application; while any wait, no
    /// packet is read, so this holds at most what one packet produces.
    staged: VecDeque<Event>,
    profile: Profile,
    lists: ListsState,
    lists_tx: watch::Sender<Lists>,
    /// The groups (extended mode) and the group requests waiting for their answer.
    groups: GroupsState,
    groups_tx: watch::Sender<Vec<Group>>,
    history: History,
    received: Arc<AtomicU64>,
    pending_request: Option<oneshot::Sender<(TransferId, mpsc::Receiver<Signal>)>>,
    outgoing: HashMap<TransferId, mpsc::Sender<Signal>>,
    incoming: HashMap<TransferId, Incoming>,
    keepalive: Option<Interval>,
    keepalive_nonce: Option<i64>,
    pings: HashMap<i64, oneshot::Sender<()>>,
    next_nonce: i64,
    writer: Option<JoinHandle<Result<(), ClientError>>>,
    stop_writer: CancellationToken,
    /// Sent messages, from the application.
    sends: mpsc::Receiver<Send>,
    /// Tagged messages for the writer.
    frames: mpsc::Sender<Frame>,
    ext: bool,
    /// Sent messages waiting for the server's answer, by client message id.
    awaiting: HashMap<i64, oneshot::Sender<Result<Delivery, ClientError>>>,
    /// The sequence number (514) of the message that comes next.
    next_seq: Option<i64>,
    /// The highest sequence number stored in the history and not yet confirmed.
    unconfirmed: Option<i64>,
    unconfirmed_count: u32,
    receipt_due: Option<tokio::time::Instant>,
}

impl Session {
    /// Starts the writer task and builds the session; the caller spawns [`Session::run`].
    pub(crate) fn start(parts: Parts, events: mpsc::Sender<Event>) -> (Session, Handles) {
        let (out, out_rx) = mpsc::channel(SEND_QUEUE);
        let (frames, frames_rx) = mpsc::channel(SEND_QUEUE);
        let (sends_tx, sends) = mpsc::channel(COMMAND_QUEUE);
        let (command_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let lists = parts.profile.state().lists.clone();
        let (lists_tx, lists_rx) = watch::channel(lists.clone());
        let saved_groups = parts.profile.state().groups.clone();
        let (groups_tx, groups_rx) = watch::channel(saved_groups.clone());
        let received = Arc::new(AtomicU64::new(0));
        let stop_writer = CancellationToken::new();
        let writer = tokio::spawn(write_loop(
            parts.writer,
            out_rx,
            frames_rx,
            stop_writer.clone(),
        ));
        let keepalive = parts.keepalive.map(|period| {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let session = Session {
            reader: parts.reader,
            out: out.clone(),
            commands,
            command_tx: command_tx.downgrade(),
            events,
            events_open: true,
            staged: VecDeque::new(),
            profile: parts.profile,
            lists: ListsState::new(lists),
            lists_tx,
            groups: GroupsState::new(saved_groups),
            groups_tx,
            history: parts.history,
            received: received.clone(),
            pending_request: None,
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            keepalive,
            keepalive_nonce: None,
            pings: HashMap::new(),
            next_nonce: 1,
            writer: Some(writer),
            stop_writer,
            sends,
            frames,
            ext: parts.ext,
            awaiting: HashMap::new(),
            next_seq: None,
            unconfirmed: None,
            unconfirmed_count: 0,
            receipt_due: None,
        };
        let handles = Handles {
            out,
            commands: command_tx,
            sends: sends_tx,
            lists: lists_rx,
            groups: groups_rx,
            received,
        };
        (session, handles)
    }

    /// Serves the connection until it ends, then reports how it ended as the last event.
    pub(crate) async fn run(mut self) {
        let result = self.serve().await;
        let (reason, close_reply) = match result {
            Ok(Stop::Closed(reply)) => (DisconnectReason::Closed, reply),
            Ok(Stop::ServerClosed) => (DisconnectReason::ServerClosed, None),
            Err(e) => {
                debug!(error = %e, "connection ended with an error");
                (DisconnectReason::Error(e), None)
            }
        };
        // Refuse further commands at once, so no handle waits on a dead session. A send
        // still waiting for its answer fails: whether it was stored is unknown, and
        // sending it again with the same id stores it once.
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        self.sends.close();
        while self.sends.try_recv().is_ok() {}
        self.awaiting.clear();
        self.stop_writer().await;
        self.abandon_transfers().await;
        self.pings.clear();
        if let Some(reply) = close_reply {
            let _ = reply.send(());
        }
        self.stage(Event::Disconnected { reason });
        while let Some(event) = self.staged.pop_front() {
            if self.events.send(event).await.is_err() {
                break;
            }
        }
    }

    async fn serve(&mut self) -> Result<Stop, ClientError> {
        loop {
            let writer_slot = &mut self.writer;
            let writer = async move {
                match writer_slot.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                done = writer => {
                    self.writer = None;
                    return Err(match done {
                        Ok(Err(e)) => e,
                        _ => ClientError::Closed,
                    });
                }
                // An owned permit: a borrowed one would keep `self` borrowed in every arm.
                permit = self.events.clone().reserve_owned(), if !self.staged.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.staged.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => {
                        // The application dropped the event stream: it wants no events.
                        self.events_open = false;
                        self.staged.clear();
                    }
                },
                command = self.commands.recv() => match command {
                    None => return Ok(Stop::Closed(None)),
                    Some(Command::Close { reply }) => {
                        // What is stored is confirmed before the connection closes.
                        self.send_receipt().await?;
                        return Ok(Stop::Closed(Some(reply)));
                    }
                    Some(command) => self.on_command(command).await?,
                },
                Some(send) = self.sends.recv(), if self.awaiting.len() < MAX_AWAITING => {
                    self.on_send(send).await?;
                }
                () = due(self.receipt_due) => self.send_receipt().await?,
                packet = self.reader.next(), if self.staged.is_empty() => match packet {
                    None => return Ok(Stop::ServerClosed),
                    Some(packet) => self.on_packet(packet?).await?,
                },
                () = tick(&mut self.keepalive) => self.on_keepalive_tick().await?,
            }
        }
    }

    fn stage(&mut self, event: Event) {
        if self.events_open {
            self.staged.push_back(event);
        }
    }

    async fn send(&self, packet: impl Into<ClientPacket>) -> Result<(), ClientError> {
        self.out
            .send(packet.into())
            .await
            .map_err(|_| ClientError::Closed)
    }

    async fn on_packet(&mut self, packet: ServerPacket) -> Result<(), ClientError> {
        match packet {
            ServerPacket::ConnectionAccepted(_) | ServerPacket::ConnectionDenied(_) => {
                return Err(unexpected(&packet, "no login answer after the login"));
            }
            ServerPacket::RequestUserListsSync(request) => {
                let before = self.lists.lists().clone();
                let answer = self.lists.on_sync_request(&request);
                if *self.lists.lists() != before {
                    self.persist_lists().await;
                }
                self.send(answer).await?;
            }
            ServerPacket::FriendList(ref list) => {
                let entries = list.entries.clone();
                self.on_server_list(ListKind::Friends, entries, &packet)
                    .await?;
            }
            ServerPacket::BlockList(ref list) => {
                let entries = list.entries.clone();
                self.on_server_list(ListKind::Blocks, entries, &packet)
                    .await?;
            }
            ServerPacket::Broadcast(broadcast) => self.stage(Event::Broadcast {
                text: broadcast.text,
            }),
            ServerPacket::UserMessage(m) => {
                let message = self
                    .record(NewEntry {
                        sender: m.sender,
                        group: None,
                        sent_at: m.sent_at,
                        kind: m.kind,
                        data: m.data,
                        read: m.read,
                    })
                    .await?;
                if let Some(message) = message {
                    self.stage(Event::Message(message));
                }
            }
            ServerPacket::GroupMessage(m) => {
                let message = self
                    .record(NewEntry {
                        sender: m.sender,
                        group: Some(m.group),
                        sent_at: m.sent_at,
                        kind: m.kind,
                        data: m.data,
                        read: m.read,
                    })
                    .await?;
                if let Some(message) = message {
                    self.stage(Event::GroupMessage(message));
                }
            }
            ServerPacket::Sequence(ref sequence) => {
                if !self.ext || self.next_seq.is_some() || sequence.seq < 1 {
                    return Err(unexpected(
                        &packet,
                        "a Sequence only with vcom/1+ext, once before each message",
                    ));
                }
                self.next_seq = Some(sequence.seq);
            }
            ServerPacket::SendAck(ref ack) => {
                if !self.ext {
                    return Err(unexpected(&packet, "a SendAck only with vcom/1+ext"));
                }
                match self.awaiting.remove(&ack.client_id) {
                    Some(reply) => {
                        let delivery = Delivery::from_outcome(ack.outcome);
                        if let Err(e) = self.history.settle(ack.client_id, delivery).await {
                            warn!(error = %e, "the answer for a sent message could not be written to the history");
                        }
                        let _ = reply.send(Ok(delivery));
                    }
                    None => debug!(
                        client_id = ack.client_id,
                        "an answer for a send nobody waits for"
                    ),
                }
            }
            ServerPacket::FileTransferId(ref id) => {
                let Some(reply) = self.pending_request.take() else {
                    return Err(unexpected(&packet, "FileTransferId only after a request"));
                };
                let (signals, rx) = mpsc::channel(4);
                self.outgoing.insert(id.transfer, signals);
                if reply.send((id.transfer, rx)).is_err() {
                    // The sending task is gone: withdraw the request.
                    self.outgoing.remove(&id.transfer);
                    self.send(FileTransferAbort {
                        transfer: id.transfer,
                        reason: AbortReason::Cancelled,
                    })
                    .await?;
                }
            }
            ServerPacket::FileTransferAbort(abort) => {
                if let Some(signals) = self.outgoing.remove(&abort.transfer) {
                    let _ = signals.try_send(Signal::Aborted(abort.reason));
                } else if let Some(incoming) = self.incoming.remove(&abort.transfer) {
                    discard(incoming).await;
                    self.stage(Event::TransferFinished {
                        transfer: abort.transfer,
                        outcome: TransferOutcome::Aborted(abort.reason),
                    });
                } else {
                    debug!(transfer = %abort.transfer, "abort for a transfer that already ended");
                }
            }
            ServerPacket::FileTransferOffer(ref offer)
                if self.incoming.contains_key(&offer.transfer) =>
            {
                // Replacing it would lose a partial file: identifiers are unique among
                // the transfers in progress.
                return Err(unexpected(
                    &packet,
                    "a FileTransferOffer for a new transfer, not one in progress",
                ));
            }
            ServerPacket::FileTransferOffer(offer) => {
                self.incoming.insert(
                    offer.transfer,
                    Incoming::Offered {
                        size: offer.size.bytes(),
                    },
                );
                let commands = self.command_tx.upgrade();
                self.stage(Event::FileOffer(FileOffer {
                    sender: offer.sender,
                    size: offer.size.bytes(),
                    offered_name: offer.name,
                    transfer: offer.transfer,
                    commands,
                }));
            }
            ServerPacket::FileTransferAccept(accept) => match self.outgoing.get(&accept.transfer) {
                Some(signals) => {
                    let _ = signals.try_send(Signal::Accepted);
                }
                None => debug!(transfer = %accept.transfer, "accept for a transfer that ended"),
            },
            ServerPacket::FileChunk(chunk) => {
                self.on_chunk(chunk.transfer, &chunk.data).await?;
            }
            ServerPacket::FileTransferComplete(complete) => {
                self.on_complete(complete.transfer).await?;
            }
            ServerPacket::GroupResult(_)
            | ServerPacket::GroupList(_)
            | ServerPacket::GroupInfo(_)
            | ServerPacket::GroupRemoved(_)
                if !self.ext =>
            {
                return Err(unexpected(
                    &packet,
                    "group packets (523-526) only with vcom/1+ext",
                ));
            }
            ServerPacket::GroupResult(result) => self.groups.on_result(&result),
            ServerPacket::GroupList(list) => {
                if self.groups.on_list(&list.groups) {
                    self.persist_groups().await;
                }
            }
            ServerPacket::GroupInfo(info) => {
                if let Some(group) = self.groups.on_info(info) {
                    self.persist_groups().await;
                    self.stage(Event::GroupChanged(group));
                }
            }
            ServerPacket::GroupRemoved(removed) => {
                if self.groups.on_removed(removed.group) {
                    self.persist_groups().await;
                }
                self.stage(Event::GroupRemoved {
                    group: removed.group,
                    reason: removed.reason,
                });
            }
            ServerPacket::Ping(ping) => self.send(Pong { nonce: ping.nonce }).await?,
            ServerPacket::Pong(pong) => {
                if self.keepalive_nonce == Some(pong.nonce) {
                    self.keepalive_nonce = None;
                }
                if let Some(reply) = self.pings.remove(&pong.nonce) {
                    let _ = reply.send(());
                }
            }
        }
        Ok(())
    }

    async fn on_server_list(
        &mut self,
        kind: ListKind,
        entries: Vec<UserId>,
        packet: &ServerPacket,
    ) -> Result<(), ClientError> {
        if !self.lists.on_server_list(kind, entries) {
            return Err(unexpected(
                packet,
                "a list only after asking for it (sync flag 1)",
            ));
        }
        self.persist_lists().await;
        self.stage(Event::ListsChanged(self.lists.lists().clone()));
        Ok(())
    }

    /// Writes a message to the history before anything else is done with it; with
    /// receipts, then confirms it. `None` for a message the history already holds (the
    /// server sent it again because its receipt never arrived).
    async fn record(&mut self, entry: NewEntry) -> Result<Option<Message>, ClientError> {
        let seq = self.next_seq.take();
        if self.ext && seq.is_none() {
            return Err(ClientError::Protocol(ProtocolError::Unexpected {
                expected: "a Sequence before each stored message (vcom/1+ext)",
                got: "a message without one",
            }));
        }
        let (history_id, new) = self.history.record_numbered(entry.clone(), seq).await?;
        if let Some(seq) = seq {
            self.confirm(seq).await?;
        }
        if !new {
            return Ok(None);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Message {
            sender: entry.sender,
            group: entry.group,
            sent_at: entry.sent_at,
            kind: entry.kind,
            data: entry.data,
            read: entry.read,
            history_id,
        }))
    }

    /// The message numbered `seq` is in the history: confirm it, with the ones before,
    /// in one receipt per [`RECEIPT_EVERY`] messages or after [`RECEIPT_DELAY`].
    async fn confirm(&mut self, seq: i64) -> Result<(), ClientError> {
        self.unconfirmed = Some(self.unconfirmed.map_or(seq, |u| u.max(seq)));
        self.unconfirmed_count += 1;
        if self.unconfirmed_count >= RECEIPT_EVERY {
            return self.send_receipt().await;
        }
        if self.receipt_due.is_none() {
            self.receipt_due = Some(tokio::time::Instant::now() + RECEIPT_DELAY);
        }
        Ok(())
    }

    /// Sends the receipt for everything stored so far, if anything is unconfirmed.
    async fn send_receipt(&mut self) -> Result<(), ClientError> {
        self.receipt_due = None;
        self.unconfirmed_count = 0;
        if let Some(through) = self.unconfirmed.take() {
            self.send(Receipt { through }).await?;
        }
        Ok(())
    }

    /// Sends a message: tagged, and answered when the server does, with the extension
    /// set; else handed to the connection and answered at once.
    async fn on_send(&mut self, send: Send) -> Result<(), ClientError> {
        if !self.ext {
            self.send(send.packet).await?;
            self.record_sent(send.entry).await;
            let _ = send.reply.send(Ok(Delivery::Unconfirmed));
            return Ok(());
        }
        if self.awaiting.contains_key(&send.client_id) {
            let _ = send.reply.send(Err(ClientError::InvalidInput(format!(
                "message {} is already waiting for the server's answer",
                send.client_id
            ))));
            return Ok(());
        }
        // Pending in the history before it leaves: a message the program stops waiting
        // for (a crash, a lost connection) stays there as pending, never lost.
        if let Err(e) = self
            .history
            .record_pending(send.entry, send.client_id)
            .await
        {
            warn!(error = %e, "a sent message could not be written to the history");
        }
        let tag = MessageTag {
            client_id: send.client_id,
        };
        self.frames
            .send(Frame::Tagged(tag, send.packet))
            .await
            .map_err(|_| ClientError::Closed)?;
        self.awaiting.insert(send.client_id, send.reply);
        Ok(())
    }

    /// Writes a message handed to a server that does not confirm to the history. A
    /// failure is logged, not returned: the message is already on its way and cannot be
    /// called back.
    async fn record_sent(&self, entry: SentEntry) {
        if let Err(e) = self.history.record_sent(entry).await {
            warn!(error = %e, "a sent message could not be written to the history");
        }
    }

    /// Saves the lists in the profile. A failure is logged, not fatal: the server keeps
    /// the lists, and a stale local copy is only downloaded again.
    async fn persist_lists(&mut self) {
        let lists = self.lists.lists().clone();
        self.lists_tx.send_replace(lists.clone());
        self.profile.state_mut().lists = lists;
        let profile = self.profile.clone();
        match tokio::task::spawn_blocking(move || profile.save()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not save the lists in the profile"),
            Err(e) => warn!(error = %e, "could not save the lists in the profile"),
        }
    }

    /// Saves the groups in the profile and shows them to the handles. A failure is
    /// logged, not fatal: the server sends them all again at the next login.
    async fn persist_groups(&mut self) {
        let groups = self.groups.list();
        self.groups_tx.send_replace(groups.clone());
        self.profile.state_mut().groups = groups;
        let profile = self.profile.clone();
        match tokio::task::spawn_blocking(move || profile.save()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not save the groups in the profile"),
            Err(e) => warn!(error = %e, "could not save the groups in the profile"),
        }
    }

    async fn on_command(&mut self, command: Command) -> Result<(), ClientError> {
        match command {
            Command::ChangeList {
                kind,
                user,
                add,
                reply,
            } => {
                let changed = match self.lists.change(kind, &user, add, crate::now()) {
                    None => false,
                    Some(upload) => {
                        self.persist_lists().await;
                        self.send(upload).await?;
                        true
                    }
                };
                let _ = reply.send(Ok(changed));
            }
            Command::RequestTransfer { request, reply } => {
                if self.pending_request.is_some() {
                    // Unreachable through the public API (one request slot); dropping
                    // the reply fails that request instead of breaking the protocol.
                    warn!("a second file request while one awaits its identifier");
                    return Ok(());
                }
                self.send(request).await?;
                self.pending_request = Some(reply);
            }
            Command::ForgetOutgoing(transfer) => {
                self.outgoing.remove(&transfer);
            }
            Command::Accept {
                transfer,
                to,
                reply,
            } => {
                let result = self.accept(transfer, to).await;
                let _ = reply.send(result);
            }
            Command::Decline(transfer) => {
                if let Some(Incoming::Offered { .. }) = self.incoming.get(&transfer) {
                    self.incoming.remove(&transfer);
                    self.send(FileTransferAbort {
                        transfer,
                        reason: AbortReason::Declined,
                    })
                    .await?;
                }
            }
            Command::Group { request, reply } => {
                if !self.ext {
                    let _ = reply.send(Err(ClientError::ExtensionRequired("a group request")));
                    return Ok(());
                }
                let id = self.groups.start(reply);
                self.send(request.packet(id)).await?;
            }
            Command::Ping { reply } => {
                // The receipt for what is stored goes first: the server answers a Ping
                // only once the receipts before it are durable, so when `ping` returns,
                // every other device of the user sees these messages as read.
                self.send_receipt().await?;
                let nonce = self.nonce();
                self.pings.insert(nonce, reply);
                self.send(Ping { nonce }).await?;
            }
            // Handled by the loop, which stops on it.
            Command::Close { reply } => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    fn nonce(&mut self) -> i64 {
        self.next_nonce = self.next_nonce.wrapping_add(1);
        self.next_nonce
    }

    /// Prepares a temporary file in the target directory and tells the server (272).
    async fn accept(&mut self, transfer: TransferId, to: Destination) -> Result<(), ClientError> {
        let Some(&Incoming::Offered { size }) = self.incoming.get(&transfer) else {
            return Err(ClientError::NoSuchTransfer(transfer));
        };
        tokio::fs::create_dir_all(&to.dir).await?;
        let (file, temp) = create_temp(&to, transfer).await?;
        self.send(FileTransferAccept { transfer }).await?;
        self.incoming.insert(
            transfer,
            Incoming::Receiving(Receiving {
                file,
                temp,
                to,
                size,
                done: 0,
                reported: 0,
            }),
        );
        Ok(())
    }

    async fn on_chunk(&mut self, transfer: TransferId, data: &[u8]) -> Result<(), ClientError> {
        let Some(Incoming::Receiving(receiving)) = self.incoming.get_mut(&transfer) else {
            // Chunks still in flight for a transfer this side already ended.
            debug!(%transfer, "chunk for a transfer that is not being received");
            return Ok(());
        };
        let len = data.len() as u64;
        if receiving.done + len > receiving.size {
            return self
                .fail_incoming(transfer, AbortReason::ProtocolViolation, None)
                .await;
        }
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut receiving.file, data).await {
            return self
                .fail_incoming(transfer, AbortReason::Declined, Some(e.to_string()))
                .await;
        }
        receiving.done += len;
        let step = (receiving.size / 100).max(64 * 1024);
        if receiving.done == receiving.size || receiving.done - receiving.reported >= step {
            receiving.reported = receiving.done;
            let (done, total) = (receiving.done, receiving.size);
            self.stage(Event::TransferProgress {
                transfer,
                done,
                total,
            });
        }
        Ok(())
    }

    async fn on_complete(&mut self, transfer: TransferId) -> Result<(), ClientError> {
        let Some(Incoming::Receiving(receiving)) = self.incoming.remove(&transfer) else {
            debug!(%transfer, "completion for a transfer that is not being received");
            return Ok(());
        };
        if receiving.done != receiving.size {
            self.incoming
                .insert(transfer, Incoming::Receiving(receiving));
            return self
                .fail_incoming(transfer, AbortReason::ProtocolViolation, None)
                .await;
        }
        let outcome = match finish_file(receiving).await {
            Ok(path) => TransferOutcome::Completed { path },
            Err(e) => TransferOutcome::Failed(e.to_string()),
        };
        self.stage(Event::TransferFinished { transfer, outcome });
        Ok(())
    }

    /// Ends an incoming transfer from this side: deletes the temporary file, tells the
    /// server with 270, and reports the end.
    async fn fail_incoming(
        &mut self,
        transfer: TransferId,
        reason: AbortReason,
        local_error: Option<String>,
    ) -> Result<(), ClientError> {
        if let Some(incoming) = self.incoming.remove(&transfer) {
            discard(incoming).await;
        }
        self.send(FileTransferAbort { transfer, reason }).await?;
        let outcome = match local_error {
            Some(error) => TransferOutcome::Failed(error),
            None => TransferOutcome::Aborted(reason),
        };
        self.stage(Event::TransferFinished { transfer, outcome });
        Ok(())
    }

    async fn on_keepalive_tick(&mut self) -> Result<(), ClientError> {
        if self.keepalive_nonce.is_some() {
            // Only a Ping that could have been answered counts: while events wait for
            // the application no packet is read, so its Pong may be unread.
            if self.staged.is_empty() {
                return Err(ClientError::KeepaliveTimeout);
            }
            return Ok(());
        }
        let nonce = self.nonce();
        self.keepalive_nonce = Some(nonce);
        self.send(Ping { nonce }).await
    }

    async fn stop_writer(&mut self) {
        self.stop_writer.cancel();
        if let Some(writer) = self.writer.take() {
            match tokio::time::timeout(CLOSE_TIMEOUT, writer).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => debug!(error = %e, "closing the connection failed"),
                Ok(Err(e)) => debug!(error = %e, "the writer task failed"),
                Err(_) => debug!("the server did not take the last bytes in time"),
            }
        }
    }

    /// The connection is gone: incoming files are deleted and reported as dropped;
    /// outgoing transfers learn it when their signal channel closes.
    async fn abandon_transfers(&mut self) {
        self.outgoing.clear();
        self.pending_request = None;
        let incoming: Vec<_> = self.incoming.drain().collect();
        for (transfer, state) in incoming {
            let was_receiving = matches!(state, Incoming::Receiving(_));
            discard(state).await;
            if was_receiving {
                self.stage(Event::TransferFinished {
                    transfer,
                    outcome: TransferOutcome::Aborted(AbortReason::ConnectionDropped),
                });
            }
        }
    }
}

fn unexpected(packet: &ServerPacket, expected: &'static str) -> ClientError {
    ClientError::Protocol(ProtocolError::Unexpected {
        expected,
        got: packet.name(),
    })
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Creates a new, empty, owner-only temporary file for a transfer inside the target
/// directory (so the final rename never crosses file systems).
async fn create_temp(
    to: &Destination,
    transfer: TransferId,
) -> Result<(tokio::fs::File, PathBuf), ClientError> {
    for n in 0..100u32 {
        let temp = to.dir.join(format!(".vcom-transfer-{transfer}-{n}.part"));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        match options.open(&temp).await {
            Ok(file) => return Ok((file, temp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ClientError::Io(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    )))
}

/// Flushes the received file and moves it into place.
async fn finish_file(mut receiving: Receiving) -> std::io::Result<PathBuf> {
    let result = async {
        receiving.file.flush().await?;
        receiving.file.sync_all().await?;
        drop(receiving.file);
        let temp = receiving.temp.clone();
        let to = receiving.to.clone();
        tokio::task::spawn_blocking(move || place(&temp, &to))
            .await
            .map_err(std::io::Error::other)?
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&receiving.temp).await;
    }
    result
}

/// Drops an incoming transfer, deleting its temporary file.
async fn discard(incoming: Incoming) {
    if let Incoming::Receiving(receiving) = incoming {
        drop(receiving.file);
        if let Err(e) = tokio::fs::remove_file(&receiving.temp).await {
            debug!(error = %e, path = %receiving.temp.display(), "could not delete a partial file");
        }
    }
}

/// The writer task: sends queued packets and tagged messages, flushing once per batch,
/// until stopped; then sends what was already queued and closes TLS cleanly.
async fn write_loop(
    mut sink: Writer,
    mut queue: mpsc::Receiver<ClientPacket>,
    mut frames: mpsc::Receiver<Frame>,
    stop: CancellationToken,
) -> Result<(), ClientError> {
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            packet = queue.recv() => match packet {
                Some(packet) => Frame::One(packet),
                None => break,
            },
            Some(frame) = frames.recv() => frame,
        };
        feed(&mut sink, first).await?;
        feed_queued(&mut sink, &mut queue, &mut frames).await?;
        SinkExt::<ClientPacket>::flush(&mut sink).await?;
    }
    queue.close();
    frames.close();
    feed_queued(&mut sink, &mut queue, &mut frames).await?;
    SinkExt::<ClientPacket>::close(&mut sink).await?;
    Ok(())
}

/// Feeds what is already queued, packets first, at most one queue's worth.
async fn feed_queued(
    sink: &mut Writer,
    queue: &mut mpsc::Receiver<ClientPacket>,
    frames: &mut mpsc::Receiver<Frame>,
) -> Result<(), ClientError> {
    for _ in 0..SEND_QUEUE {
        if let Ok(packet) = queue.try_recv() {
            sink.feed(packet).await?;
        } else if let Ok(frame) = frames.try_recv() {
            feed(sink, frame).await?;
        } else {
            break;
        }
    }
    Ok(())
}

async fn feed(sink: &mut Writer, frame: Frame) -> Result<(), ClientError> {
    match frame {
        Frame::One(packet) => sink.feed(packet).await?,
        Frame::Tagged(tag, packet) => {
            sink.feed(ClientPacket::from(tag)).await?;
            sink.feed(packet).await?;
        }
    }
    Ok(())
}

/// Resolves at `deadline`, never without one.
async fn due(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
