//! File transfers (268-274), `docs/protocol.md`: offers, first accept wins, the relay
//! of chunks, and an abort with a reason both sides learn.
//!
//! The rules are a state machine, [`Table`], with no socket, store or clock inside:
//! each input (a decoded packet, a closed connection, the result of a relay, a tick with
//! the time passed in) updates the transfers and returns the [`Effect`]s to carry out,
//! packets for sessions and the log of each transfer that ended. The `on_*` handlers,
//! `connection_closed` and `sweep` are the IO shell: they lock, feed the table, and
//! carry the effects out.
//!
//! File data is relayed, never stored. A chunk waits for room in the recipient's small
//! chunk queue before the sender's next packet is read, so the server's buffer per
//! transfer is a few KiB whatever the file size or the recipient's speed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vcom_protocol::{
    AbortReason, DeviceId, FileChunk, FileSize, FileTransferAbort, FileTransferAccept,
    FileTransferComplete, FileTransferId, FileTransferOffer, FileTransferRequest, ServerPacket,
    Timestamp, TransferId, UserId,
};
use vcom_store::{Store, TransferRecord};

use crate::connection::{Close, Conn};
use crate::server::Shared;
use crate::session::{Outbound, SessionHandle};
use crate::stats::Stats;

/// A connection as the transfer rules see it: the server's [`SessionHandle`], a plain
/// value in the tests. The rules compare connections and users, nothing else.
pub(crate) trait Peer: Clone {
    /// The connection, unique for the server's lifetime.
    fn conn(&self) -> u64;
    /// Who is logged in on it.
    fn user(&self) -> &UserId;
    /// Its device, for the log only.
    fn device(&self) -> DeviceId;
}

impl Peer for SessionHandle {
    fn conn(&self) -> u64 {
        self.conn
    }

    fn user(&self) -> &UserId {
        &self.user
    }

    fn device(&self) -> DeviceId {
        self.device
    }
}

/// The server's limits on a request, from its configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) max_file_size: u64,
    /// Transfers one user may have in progress (offered or streaming) at once.
    pub(crate) max_transfers_per_user: usize,
    /// File offers one user may make a minute, refused or not (0: no limit): each is a
    /// row of the transfer log, so this bounds what one user can make the log grow by.
    pub(crate) offers_per_minute: u32,
}

/// A 268, with the identifier its 269 announced and when it arrived (for the log).
#[derive(Debug)]
pub(crate) struct Request<H> {
    pub(crate) id: TransferId,
    pub(crate) sender: H,
    pub(crate) packet: FileTransferRequest,
    pub(crate) at: Timestamp,
}

/// What the server knows of a request's recipient when the request arrives.
#[derive(Debug)]
pub(crate) struct Recipient<H> {
    pub(crate) known: bool,
    pub(crate) blocks_sender: bool,
    /// Its online sessions; the sender's own is among them when a user sends to itself.
    pub(crate) sessions: Vec<H>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect<H> {
    /// Queue this packet for this session (a push, which never waits).
    Send(H, ServerPacket),
    /// The transfer is over: count it and write it to the transfer log.
    Log(Ended),
}

/// A transfer that ended, as the log records it (the shell adds the time it ended).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ended {
    pub(crate) id: TransferId,
    pub(crate) sender: UserId,
    pub(crate) recipient: UserId,
    pub(crate) size: FileSize,
    pub(crate) name: String,
    pub(crate) relayed: u64,
    pub(crate) started_at: Timestamp,
    /// `None` when every byte was relayed, else why it was aborted.
    pub(crate) outcome: Option<AbortReason>,
}

/// What becomes of the sender's file data (273) or completion (274).
#[derive(Debug, PartialEq)]
pub(crate) enum Data<H> {
    /// The transfer is over (the packet crossed its end): drop the packet.
    Ignore,
    /// Hand the packet to this session's chunk queue. If that fails, say so with
    /// [`Table::relay_failed`]; once a 274 is handed over, call [`Table::completed`].
    Relay(H),
    /// The packet breaks the transfer's rules: the transfer is aborted with these.
    Abort(Vec<Effect<H>>),
}

/// Why a relay could not hand a packet to the recipient's chunk queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayFailure {
    /// The queue is closed: the recipient's connection is ending.
    RecipientGone,
    /// The queue stayed full for the idle timeout: the recipient is not reading.
    NoRoom,
}

/// A packet its connection may not send: the shell closes that connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A 270, 272 or file data for a transfer the connection is not part of.
    NotAParty {
        id: TransferId,
        packet: &'static str,
    },
    /// A 272 from the device already streaming the transfer.
    AlreadyAccepted(TransferId),
    /// A 273 or 274 from the recipient.
    DataFromRecipient(TransferId),
}

impl From<Violation> for Close {
    fn from(v: Violation) -> Close {
        Close::Violation(match v {
            Violation::NotAParty { id, packet } => {
                format!("{packet} for transfer {id}, which this connection is not part of")
            }
            Violation::AlreadyAccepted(id) => {
                format!("FileTransferAccept (272) for transfer {id}, which was already accepted")
            }
            Violation::DataFromRecipient(id) => {
                format!("the recipient of transfer {id} sent file data")
            }
        })
    }
}

#[derive(Debug)]
enum Phase<H> {
    /// Offered to these devices of the recipient; none has answered.
    Offered(Vec<H>),
    /// Accepted by one device; data flows to it.
    Streaming(H),
}

/// Which side of a transfer a connection is on.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    Sender,
    Recipient,
    None,
}

#[derive(Debug)]
struct Transfer<H> {
    sender: H,
    recipient: UserId,
    size: FileSize,
    name: String,
    phase: Phase<H>,
    relayed: u64,
    started_at: Timestamp,
    /// When the transfer last moved on (offer, accept, data): the idle timeout counts
    /// from here.
    last_activity: Instant,
}

impl<H: Peer> Transfer<H> {
    /// The recipient's sessions still in the transfer.
    fn recipients(&self) -> &[H] {
        match &self.phase {
            Phase::Offered(devices) => devices,
            Phase::Streaming(device) => std::slice::from_ref(device),
        }
    }

    /// Everyone in the transfer, the recipient's sessions first.
    fn parties(&self) -> impl Iterator<Item = &H> {
        self.recipients().iter().chain([&self.sender])
    }

    fn role(&self, conn: u64) -> Role {
        if self.sender.conn() == conn {
            Role::Sender
        } else if self.recipients().iter().any(|s| s.conn() == conn) {
            Role::Recipient
        } else {
            Role::None
        }
    }

    /// A device of the recipient that is not the one streaming: it was offered the file
    /// and lost the race to accept it, so its 272 or 270 crossed our 270 (reason 7) on
    /// the wire. That answer is stale, not a protocol violation, and is ignored.
    fn lost_the_race(&self, user: &UserId) -> bool {
        matches!(self.phase, Phase::Streaming(_)) && self.recipient == *user
    }

    /// Takes connection `conn` out of the transfer; whether the transfer ends with it
    /// (it was the sender, the streaming device, or the last device offered the file).
    fn lose(&mut self, conn: u64) -> bool {
        if self.sender.conn() == conn {
            return true;
        }
        match &mut self.phase {
            Phase::Streaming(device) => device.conn() == conn,
            Phase::Offered(devices) => {
                devices.retain(|d| d.conn() != conn);
                devices.is_empty()
            }
        }
    }

    fn ended(self, id: TransferId, outcome: Option<AbortReason>) -> Ended {
        Ended {
            id,
            sender: self.sender.user().clone(),
            recipient: self.recipient,
            size: self.size,
            name: self.name,
            relayed: self.relayed,
            started_at: self.started_at,
            outcome,
        }
    }

    /// The end of an aborted transfer: a 270 with `reason` to every party but `except`
    /// (the connection whose own 270 or drop ended it), then the log.
    fn aborted(self, id: TransferId, reason: AbortReason, except: Option<u64>) -> Vec<Effect<H>> {
        let mut effects: Vec<_> = self
            .parties()
            .filter(|p| Some(p.conn()) != except)
            .map(|p| Effect::Send(p.clone(), abort_packet(id, reason)))
            .collect();
        effects.push(Effect::Log(self.ended(id, Some(reason))));
        effects
    }
}

fn abort_packet(id: TransferId, reason: AbortReason) -> ServerPacket {
    FileTransferAbort {
        transfer: id,
        reason,
    }
    .into()
}

/// Every transfer in progress, and the rules they follow. Each input returns what the
/// shell must do; the time is always passed in.
#[derive(Debug)]
pub(crate) struct Table<H> {
    /// The last identifier given out.
    last_id: i32,
    active: HashMap<TransferId, Transfer<H>>,
    /// Each user's offer rate, as the time its budget of offers is spent until (one
    /// minute's worth of offers may be spent ahead). Only users that offered within the
    /// last minute have an entry ([`Table::tick`] forgets the others).
    offer_budget: HashMap<UserId, Instant>,
}

/// A minute: the window of [`Rules::offers_per_minute`].
const OFFER_WINDOW: Duration = Duration::from_secs(60);

impl<H: Peer> Table<H> {
    /// Identifiers continue after the highest one logged, so they stay unique.
    pub(crate) fn new(max_logged: i32) -> Self {
        Table {
            last_id: max_logged.max(0),
            active: HashMap::new(),
            offer_budget: HashMap::new(),
        }
    }

    /// Takes one offer from `user`'s budget: `false` when it has made
    /// `offers_per_minute` offers in the last minute (a budget refilled evenly, so the
    /// offers may come in a burst or spread out).
    fn within_offer_rate(&mut self, user: &UserId, rules: Rules, now: Instant) -> bool {
        if rules.offers_per_minute == 0 {
            return true;
        }
        let cost = OFFER_WINDOW / rules.offers_per_minute;
        let spent_until = self
            .offer_budget
            .get(user)
            .map_or(now, |&until| until.max(now));
        let after = spent_until + cost;
        if after.saturating_duration_since(now) > OFFER_WINDOW {
            return false;
        }
        self.offer_budget.insert(user.clone(), after);
        true
    }

    /// How many transfers are in progress.
    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }

    /// A fresh identifier: positive, and never one of a transfer still in progress
    /// (after `i32::MAX` they start again at 1, stepping over those in use).
    pub(crate) fn next_id(&mut self) -> TransferId {
        let active = &self.active;
        TransferId(next_free(&mut self.last_id, |id| {
            active.contains_key(&TransferId(id))
        }))
    }

    /// 268: offers the file to the recipient's online devices (271), or refuses it at
    /// once with a 270 to the sender.
    pub(crate) fn request(
        &mut self,
        request: Request<H>,
        recipient: Recipient<H>,
        rules: Rules,
        now: Instant,
    ) -> Vec<Effect<H>> {
        let Request {
            id,
            sender,
            packet,
            at,
        } = request;
        if !self.within_offer_rate(sender.user(), rules, now) {
            // Refused before it is a transfer at all: no row in the log.
            tracing::warn!(
                user = %sender.user(), limit = rules.offers_per_minute,
                "file offer refused: more than file_offers_per_minute offers from this user"
            );
            return vec![Effect::Send(
                sender,
                abort_packet(id, AbortReason::NotAllowed),
            )];
        }
        let refusal = self.refusal(&sender, &packet, &recipient, rules);
        let devices: Vec<H> = recipient
            .sessions
            .into_iter()
            .filter(|s| s.conn() != sender.conn())
            .collect();
        let refusal = refusal.or(devices.is_empty().then_some(AbortReason::RecipientOffline));
        let mut transfer = Transfer {
            sender,
            recipient: packet.recipient,
            size: packet.size,
            name: packet.name,
            phase: Phase::Offered(Vec::new()),
            relayed: 0,
            started_at: at,
            last_activity: now,
        };
        if let Some(reason) = refusal {
            return transfer.aborted(id, reason, None);
        }
        let offer = ServerPacket::from(FileTransferOffer {
            sender: transfer.sender.user().clone(),
            size: transfer.size,
            name: transfer.name.clone(),
            transfer: id,
        });
        let effects = devices
            .iter()
            .map(|d| Effect::Send(d.clone(), offer.clone()))
            .collect();
        tracing::info!(transfer = %id, from = %transfer.sender.user(), to = %transfer.recipient, size = %transfer.size, devices = devices.len(), "file offered");
        transfer.phase = Phase::Offered(devices);
        self.active.insert(id, transfer);
        effects
    }

    /// Why a request is refused before anyone is asked, checked in this order.
    fn refusal(
        &self,
        sender: &H,
        p: &FileTransferRequest,
        recipient: &Recipient<H>,
        rules: Rules,
    ) -> Option<AbortReason> {
        if p.size.bytes() > rules.max_file_size {
            Some(AbortReason::TooLarge)
        } else if self.sending(sender.user()) >= rules.max_transfers_per_user {
            tracing::warn!(user = %sender.user(), limit = rules.max_transfers_per_user, "file offer refused: too many transfers in progress from this user");
            Some(AbortReason::NotAllowed)
        } else if !recipient.known || recipient.blocks_sender {
            // Unknown and blocked look the same to the sender, on purpose.
            Some(AbortReason::NotAllowed)
        } else {
            None
        }
    }

    /// How many transfers `user` is sending now (offered or streaming), from any of its
    /// connections.
    fn sending(&self, user: &UserId) -> usize {
        self.active
            .values()
            .filter(|t| t.sender.user() == user)
            .count()
    }

    /// 272 from a recipient device: the first accept wins. The sender gets the 272 and
    /// the other devices offered the file a 270 (reason 7).
    pub(crate) fn accept(
        &mut self,
        by: &H,
        id: TransferId,
        now: Instant,
    ) -> Result<Vec<Effect<H>>, Violation> {
        let Some(t) = self.active.get_mut(&id) else {
            tracing::debug!(transfer = %id, "accept for a finished transfer ignored");
            return Ok(Vec::new());
        };
        match t.role(by.conn()) {
            Role::Recipient => {}
            Role::None if t.lost_the_race(by.user()) => {
                tracing::debug!(transfer = %id, device = %by.device(), "accept that lost the race ignored");
                return Ok(Vec::new());
            }
            Role::Sender | Role::None => {
                let packet = "FileTransferAccept (272)";
                return Err(Violation::NotAParty { id, packet });
            }
        }
        let Phase::Offered(devices) = &mut t.phase else {
            return Err(Violation::AlreadyAccepted(id));
        };
        let mut effects: Vec<_> = std::mem::take(devices)
            .into_iter()
            .filter(|d| d.conn() != by.conn())
            .map(|d| Effect::Send(d, abort_packet(id, AbortReason::AcceptedElsewhere)))
            .collect();
        t.phase = Phase::Streaming(by.clone());
        t.last_activity = now;
        let accepted = FileTransferAccept { transfer: id };
        effects.push(Effect::Send(t.sender.clone(), accepted.into()));
        tracing::info!(transfer = %id, by = %by.user(), device = %by.device(), "file accepted");
        Ok(effects)
    }

    /// 270 from a client: the sender cancels (reason 8), or a recipient device declines
    /// (reason 0, whatever reason it gave); everyone else in the transfer is told.
    pub(crate) fn abort(&mut self, by: &H, id: TransferId) -> Result<Vec<Effect<H>>, Violation> {
        // None: already over, the abort crossed another end.
        let Some(t) = self.active.get(&id) else {
            return Ok(Vec::new());
        };
        let reason = match t.role(by.conn()) {
            Role::Sender => AbortReason::Cancelled,
            Role::Recipient => AbortReason::Declined,
            Role::None if t.lost_the_race(by.user()) => return Ok(Vec::new()),
            Role::None => {
                let packet = "FileTransferAbort (270)";
                return Err(Violation::NotAParty { id, packet });
            }
        };
        Ok(self.end(id, reason, Some(by.conn())))
    }

    /// 273 of `len` bytes from the sender: relayed to the accepting device while the
    /// total stays within the announced size.
    pub(crate) fn chunk(
        &mut self,
        by: &H,
        id: TransferId,
        len: u64,
        now: Instant,
    ) -> Result<Data<H>, Violation> {
        self.data(by, id, len, false, now)
    }

    /// 274 from the sender: relayed once every announced byte was.
    pub(crate) fn complete(
        &mut self,
        by: &H,
        id: TransferId,
        now: Instant,
    ) -> Result<Data<H>, Violation> {
        self.data(by, id, 0, true, now)
    }

    /// The rules 273 and 274 share: only the sender sends data, only once accepted, and
    /// the bytes add up to the announced size, no more, and all of it by the 274.
    /// Anything else aborts both sides with reason 5.
    fn data(
        &mut self,
        by: &H,
        id: TransferId,
        len: u64,
        completing: bool,
        now: Instant,
    ) -> Result<Data<H>, Violation> {
        let Some(t) = self.active.get_mut(&id) else {
            return Ok(Data::Ignore);
        };
        match t.role(by.conn()) {
            Role::Sender => {}
            Role::Recipient => return Err(Violation::DataFromRecipient(id)),
            Role::None => {
                let packet = "file data";
                return Err(Violation::NotAParty { id, packet });
            }
        }
        let relayed = t.relayed + len;
        let size = t.size.bytes();
        let fits = relayed <= size && (!completing || relayed == size);
        let to = match &t.phase {
            Phase::Streaming(device) if fits => device.clone(),
            _ => {
                let effects = self.end(id, AbortReason::ProtocolViolation, None);
                return Ok(Data::Abort(effects));
            }
        };
        t.relayed = relayed;
        t.last_activity = now;
        Ok(Data::Relay(to))
    }

    /// A relay could not hand the sender's packet over: both sides learn why (reason 3
    /// when the recipient is gone, 6 when it stopped reading).
    pub(crate) fn relay_failed(&mut self, id: TransferId, failure: RelayFailure) -> Vec<Effect<H>> {
        let reason = match failure {
            RelayFailure::RecipientGone => AbortReason::ConnectionDropped,
            RelayFailure::NoRoom => AbortReason::TimedOut,
        };
        self.end(id, reason, None)
    }

    /// The 274 was handed to the recipient: the transfer is complete. Nothing if it
    /// ended some other way while the 274 waited for room.
    pub(crate) fn completed(&mut self, id: TransferId) -> Vec<Effect<H>> {
        self.active
            .remove(&id)
            .map(|t| vec![Effect::Log(t.ended(id, None))])
            .unwrap_or_default()
    }

    /// A connection ended: every transfer that cannot go on without it is aborted, and
    /// the others in it learn why (reason 3).
    pub(crate) fn connection_closed(&mut self, conn: u64) -> Vec<Effect<H>> {
        let gone: Vec<TransferId> = self
            .active
            .iter_mut()
            .filter_map(|(id, t)| t.lose(conn).then_some(*id))
            .collect();
        self.end_all(gone, AbortReason::ConnectionDropped, Some(conn))
    }

    /// The time is `now`: transfers that have not moved on for `idle` or longer are
    /// aborted on both sides (reason 6).
    pub(crate) fn tick(&mut self, now: Instant, idle: Duration) -> Vec<Effect<H>> {
        self.offer_budget.retain(|_, until| *until > now);
        let stale: Vec<TransferId> = self
            .active
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.last_activity) >= idle)
            .map(|(id, _)| *id)
            .collect();
        self.end_all(stale, AbortReason::TimedOut, None)
    }

    /// Ends these transfers in identifier order, so the effects do not depend on the
    /// map's order.
    fn end_all(
        &mut self,
        mut ids: Vec<TransferId>,
        reason: AbortReason,
        except: Option<u64>,
    ) -> Vec<Effect<H>> {
        ids.sort_unstable();
        ids.into_iter()
            .flat_map(|id| self.end(id, reason, except))
            .collect()
    }

    /// Aborts a transfer in progress (see [`Transfer::aborted`]); nothing if it is over.
    fn end(&mut self, id: TransferId, reason: AbortReason, except: Option<u64>) -> Vec<Effect<H>> {
        self.active
            .remove(&id)
            .map(|t| t.aborted(id, reason, except))
            .unwrap_or_default()
    }
}

/// The identifier after `prev` that `in_use` does not claim, wrapping from `i32::MAX`
/// to 1; `prev` becomes it. In-use identifiers are far fewer than `i32::MAX` (each
/// sender holds a bounded number), so the loop ends.
fn next_free(prev: &mut i32, in_use: impl Fn(i32) -> bool) -> i32 {
    loop {
        *prev = prev.checked_add(1).filter(|n| *n > 0).unwrap_or(1);
        if !in_use(*prev) {
            return *prev;
        }
    }
}

/// Every transfer in progress: the [`Table`], fed by the IO shell below.
#[derive(Debug)]
pub(crate) struct Transfers {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    table: Table<SessionHandle>,
    /// Cancelled when a transfer ends, however it ends: it releases a sender's reader
    /// that is waiting for room in the recipient's chunk queue. Made by the first relay.
    waits: HashMap<TransferId, CancellationToken>,
}

impl Transfers {
    /// Identifiers continue after the highest one logged, so they stay unique.
    pub(crate) fn new(max_logged: i32) -> Self {
        Transfers {
            state: Mutex::new(State {
                table: Table::new(max_logged),
                waits: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section is one input to the table, which never panics halfway;
        // a poisoned lock guards a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many transfers are in progress.
    pub(crate) fn len(&self) -> usize {
        self.lock().table.len()
    }

    /// Feeds one input to the table, under the lock (never held across an await).
    fn input<T>(&self, input: impl FnOnce(&mut Table<SessionHandle>) -> T) -> T {
        input(&mut self.lock().table)
    }

    /// Releases a relay waiting on a transfer that ended. A wait is only made while its
    /// transfer is in the table, so none is made after this.
    fn release(&self, id: TransferId) {
        if let Some(wait) = self.lock().waits.remove(&id) {
            wait.cancel();
        }
    }
}

/// Carries out the table's effects: packets are pushed (never waiting); an ended
/// transfer releases its relay, is counted and is logged.
async fn carry_out<S: Store>(shared: &Shared<S>, effects: Vec<Effect<SessionHandle>>) {
    for effect in effects {
        match effect {
            Effect::Send(session, packet) => {
                session.push(Outbound::packet(packet));
            }
            Effect::Log(ended) => {
                shared.transfers.release(ended.id);
                log(shared, ended).await;
            }
        }
    }
}

async fn log<S: Store>(shared: &Shared<S>, ended: Ended) {
    let id = ended.id;
    match ended.outcome {
        None => {
            Stats::bump(&shared.stats.transfers_completed);
            tracing::info!(transfer = %id, from = %ended.sender, to = %ended.recipient, bytes = ended.relayed, "file transferred");
        }
        Some(reason) => {
            Stats::bump(&shared.stats.transfers_aborted);
            tracing::info!(transfer = %id, from = %ended.sender, to = %ended.recipient, %reason, "file transfer aborted");
        }
    }
    let record = TransferRecord {
        id,
        sender: ended.sender,
        recipient: ended.recipient,
        size: i64::from(ended.size.get()),
        name: ended.name,
        bytes_relayed: i64::try_from(ended.relayed).unwrap_or(i64::MAX),
        started_at: ended.started_at,
        ended_at: crate::now(),
        abort_reason: ended.outcome.map(AbortReason::code),
    };
    if let Err(e) = shared.store.log_transfer(record).await {
        tracing::error!(transfer = %id, error = %e, "cannot log file transfer");
    }
}

/// 268: answer with 269, then offer the file or abort at once.
pub(crate) async fn on_request<S: Store>(
    conn: &Conn<S>,
    p: FileTransferRequest,
) -> Result<(), Close> {
    let shared = &conn.shared;
    let id = shared.transfers.input(Table::next_id);
    conn.reply(FileTransferId { transfer: id }).await?;
    // On a cluster, a user who logged in only on another node is known from the store.
    if let Some(lookup) = crate::cluster::lookup_user(shared, &p.recipient) {
        crate::cluster::look_up(shared, lookup).await;
    }
    let recipient = Recipient {
        known: shared.directory.knows(&p.recipient),
        blocks_sender: shared.directory.blocks(&p.recipient, conn.user()),
        sessions: shared.sessions.of_user(&p.recipient),
    };
    let request = Request {
        id,
        sender: conn.session.clone(),
        packet: p,
        at: crate::now(),
    };
    let rules = Rules {
        max_file_size: shared.config.max_file_size,
        max_transfers_per_user: shared.config.max_transfers_per_user,
        offers_per_minute: shared.config.file_offers_per_minute,
    };
    let effects = shared
        .transfers
        .input(|t| t.request(request, recipient, rules, Instant::now()));
    carry_out(shared, effects).await;
    Ok(())
}

/// 272 from a recipient device: the first accept wins.
pub(crate) async fn on_accept<S: Store>(
    conn: &Conn<S>,
    p: FileTransferAccept,
) -> Result<(), Close> {
    let effects = conn
        .shared
        .transfers
        .input(|t| t.accept(&conn.session, p.transfer, Instant::now()))?;
    carry_out(&conn.shared, effects).await;
    Ok(())
}

/// 270 from a client: the sender cancels, or a recipient declines.
pub(crate) async fn on_abort<S: Store>(conn: &Conn<S>, p: FileTransferAbort) -> Result<(), Close> {
    let effects = conn
        .shared
        .transfers
        .input(|t| t.abort(&conn.session, p.transfer))?;
    carry_out(&conn.shared, effects).await;
    Ok(())
}

/// The sender's 273 or 274 as decided under the lock.
enum Next {
    /// Nothing to relay: carry these out (none when the packet is dropped).
    Done(Vec<Effect<SessionHandle>>),
    /// Relay to this session; the token ends the wait if the transfer ends first.
    Relay(SessionHandle, CancellationToken),
}

/// Feeds the sender's 273 or 274 to the table, with the time.
fn next<S>(
    conn: &Conn<S>,
    id: TransferId,
    input: impl FnOnce(&mut Table<SessionHandle>, Instant) -> Result<Data<SessionHandle>, Violation>,
) -> Result<Next, Close> {
    let mut state = conn.shared.transfers.lock();
    Ok(match input(&mut state.table, Instant::now())? {
        Data::Ignore => Next::Done(Vec::new()),
        Data::Abort(effects) => Next::Done(effects),
        Data::Relay(to) => Next::Relay(to, state.waits.entry(id).or_default().clone()),
    })
}

/// Hands a packet to the recipient's chunk queue, waiting for room at most the idle
/// timeout: this wait is the backpressure that keeps the relay's memory constant.
///
/// The wait also ends as soon as the transfer ends some other way (the recipient
/// declines, its connection drops, the sweep times it out): while it lasts, nothing else
/// the sender sends is read, so it must not outlive the transfer.
async fn forward<S: Store>(
    conn: &Conn<S>,
    id: TransferId,
    recipient: &SessionHandle,
    ended: &CancellationToken,
    packet: ServerPacket,
) -> bool {
    // Room in the queue is the common case: no timer and no waiter for it.
    let failure = match recipient.chunks.try_send(Box::new(packet)) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => RelayFailure::RecipientGone,
        Err(mpsc::error::TrySendError::Full(packet)) => {
            let timeout = conn.shared.config.transfer_idle_timeout();
            let send = tokio::time::timeout(timeout, recipient.chunks.send(packet));
            let sent = tokio::select! {
                // The send first: room may come back before the token is ever polled.
                biased;
                r = send => r,
                _ = ended.cancelled() => return false,
            };
            match sent {
                Ok(Ok(())) => return true,
                Ok(Err(_)) => RelayFailure::RecipientGone,
                Err(_) => RelayFailure::NoRoom,
            }
        }
    };
    let effects = conn.shared.transfers.input(|t| t.relay_failed(id, failure));
    carry_out(&conn.shared, effects).await;
    false
}

/// 273 from the sender: relay it unchanged.
pub(crate) async fn on_chunk<S: Store>(conn: &Conn<S>, p: FileChunk) -> Result<(), Close> {
    let id = p.transfer;
    let len = p.data.len() as u64;
    match next(conn, id, |table, now| {
        table.chunk(&conn.session, id, len, now)
    })? {
        Next::Done(effects) => carry_out(&conn.shared, effects).await,
        Next::Relay(recipient, ended) => {
            if forward(conn, id, &recipient, &ended, p.into()).await {
                conn.shared
                    .stats
                    .file_bytes_relayed
                    .fetch_add(len, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// 274 from the sender: every byte was sent; relay the completion and log it.
pub(crate) async fn on_complete<S: Store>(
    conn: &Conn<S>,
    p: FileTransferComplete,
) -> Result<(), Close> {
    let id = p.transfer;
    match next(conn, id, |table, now| {
        table.complete(&conn.session, id, now)
    })? {
        Next::Done(effects) => carry_out(&conn.shared, effects).await,
        Next::Relay(recipient, ended) => {
            if forward(conn, id, &recipient, &ended, p.into()).await {
                let effects = conn.shared.transfers.input(|t| t.completed(id));
                carry_out(&conn.shared, effects).await;
            }
        }
    }
    Ok(())
}

/// A connection ended: abort its transfers, telling the other side (270 reason 3).
pub(crate) async fn connection_closed<S: Store>(conn: &Conn<S>) {
    let me = conn.session.conn;
    let effects = conn.shared.transfers.input(|t| t.connection_closed(me));
    carry_out(&conn.shared, effects).await;
}

/// Aborts transfers idle longer than the configured timeout (270 reason 6).
pub(crate) async fn sweep<S: Store>(shared: Arc<Shared<S>>) {
    let idle = shared.config.transfer_idle_timeout();
    let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let effects = shared.transfers.input(|t| t.tick(Instant::now(), idle));
        carry_out(&shared, effects).await;
    }
}

#[cfg(test)]
mod tests {
    //! The transfer rules as a specification. Connections are plain values, the clock is
    //! a number of milliseconds the tests choose (nothing here waits), and effects are
    //! compared exactly.

    use std::collections::HashSet;
    use std::sync::LazyLock;

    use super::*;
    use AbortReason::{
        AcceptedElsewhere, Cancelled, ConnectionDropped, Declined, NotAllowed, ProtocolViolation,
        RecipientOffline, TimedOut, TooLarge,
    };

    /// A connection: its number and its user. The rules tell devices apart by
    /// connection, so every test device is device 1.
    #[derive(Debug, Clone, PartialEq)]
    struct Dev {
        conn: u64,
        user: UserId,
    }

    impl Peer for Dev {
        fn conn(&self) -> u64 {
            self.conn
        }

        fn user(&self) -> &UserId {
            &self.user
        }

        fn device(&self) -> DeviceId {
            DeviceId(1)
        }
    }

    // Alice sends; bob has two devices online and a third that logs in after the offer;
    // carol is in no transfer unless a test says so.
    const ALICE: u64 = 1;
    const BOB1: u64 = 2;
    const BOB2: u64 = 3;
    const CAROL: u64 = 4;
    const ALICE2: u64 = 5;
    const BOB3: u64 = 6;

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    fn who(conn: u64) -> Dev {
        let user = match conn {
            ALICE | ALICE2 => "alice",
            BOB1 | BOB2 | BOB3 => "bob",
            _ => "carol",
        };
        Dev {
            conn,
            user: uid(user),
        }
    }

    fn alice() -> Dev {
        who(ALICE)
    }

    fn bob1() -> Dev {
        who(BOB1)
    }

    fn bob2() -> Dev {
        who(BOB2)
    }

    fn carol() -> Dev {
        who(CAROL)
    }

    const RULES: Rules = Rules {
        max_file_size: 100,
        max_transfers_per_user: 2,
        offers_per_minute: 0,
    };
    const IDLE_MS: u64 = 60_000;
    const IDLE: Duration = Duration::from_millis(IDLE_MS);
    /// The size of the file in most tests.
    const SIZE: u64 = 10;

    /// The fake clock: `at(ms)` is `ms` milliseconds after the tests' origin.
    fn at(ms: u64) -> Instant {
        static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
        *ORIGIN + Duration::from_millis(ms)
    }

    /// A recipient that is known, does not block the sender, and has these sessions.
    fn reachable(sessions: &[Dev]) -> Recipient<Dev> {
        Recipient {
            known: true,
            blocks_sender: false,
            sessions: sessions.to_vec(),
        }
    }

    /// `from` asks to send `size` bytes to `to` at `now`: the 269's identifier and the
    /// request's effects.
    fn ask(
        table: &mut Table<Dev>,
        from: Dev,
        to: &str,
        size: u64,
        recipient: Recipient<Dev>,
        now: Instant,
    ) -> (TransferId, Vec<Effect<Dev>>) {
        let id = table.next_id();
        let packet = FileTransferRequest {
            recipient: uid(to),
            size: FileSize::new(size).unwrap(),
            name: "notes.txt".into(),
        };
        let request = Request {
            id,
            sender: from,
            packet,
            at: Timestamp(7),
        };
        (id, table.request(request, recipient, RULES, now))
    }

    /// Alice's file of `SIZE` bytes, offered at time 0 to bob's two devices.
    fn offered() -> (Table<Dev>, TransferId) {
        let mut table = Table::new(0);
        let online = reachable(&[bob1(), bob2()]);
        let (id, effects) = ask(&mut table, alice(), "bob", SIZE, online, at(0));
        assert_eq!(sent(&effects).len(), 2, "offered to both devices");
        (table, id)
    }

    /// The same file, accepted by bob's first device at time 0.
    fn streaming() -> (Table<Dev>, TransferId) {
        let (mut table, id) = offered();
        assert_eq!(table.accept(&bob1(), id, at(0)).map(|e| e.len()), Ok(2));
        (table, id)
    }

    fn accept_packet(id: TransferId) -> ServerPacket {
        FileTransferAccept { transfer: id }.into()
    }

    /// The packets the effects send: (connection, packet).
    fn sent(effects: &[Effect<Dev>]) -> Vec<(u64, ServerPacket)> {
        let packet = |e: &Effect<Dev>| match e {
            Effect::Send(to, p) => Some((to.conn, p.clone())),
            Effect::Log(_) => None,
        };
        effects.iter().filter_map(packet).collect()
    }

    /// The 270s the effects send: (connection, transfer, reason).
    fn aborts(effects: &[Effect<Dev>]) -> Vec<(u64, TransferId, AbortReason)> {
        let abort = |(conn, p)| match p {
            ServerPacket::FileTransferAbort(a) => Some((conn, a.transfer, a.reason)),
            _ => None,
        };
        sent(effects).into_iter().filter_map(abort).collect()
    }

    /// The transfers the effects end: (transfer, outcome, bytes relayed).
    fn logged(effects: &[Effect<Dev>]) -> Vec<(TransferId, Option<AbortReason>, u64)> {
        let log = |e: &Effect<Dev>| match e {
            Effect::Log(e) => Some((e.id, e.outcome, e.relayed)),
            Effect::Send(..) => None,
        };
        effects.iter().filter_map(log).collect()
    }

    /// The effects of a 273 or 274 that aborts the transfer.
    fn abort_effects(data: Result<Data<Dev>, Violation>) -> Vec<Effect<Dev>> {
        match data {
            Ok(Data::Abort(effects)) => effects,
            other => panic!("expected an abort, got {other:?}"),
        }
    }

    type Scenario = fn() -> (TransferId, Vec<Effect<Dev>>);

    /// A request from alice to bob, on a table with no transfer.
    fn refused(size: u64, recipient: Recipient<Dev>) -> (TransferId, Vec<Effect<Dev>>) {
        ask(&mut Table::new(0), alice(), "bob", size, recipient, at(0))
    }

    /// Every reason the server sends in a 270, each situation that produces it, and
    /// which connections get it. Each ends the transfer and logs that reason, but 7,
    /// which ends only the offer to the devices that lost the race.
    #[test]
    fn every_abort_reason_the_server_sends_when_and_to_whom() {
        let cases: &[(AbortReason, &str, Scenario, &[u64])] = &[
            (
                Declined,
                "a device declines the offer",
                || {
                    let (mut t, id) = offered();
                    (id, t.abort(&bob1(), id).unwrap())
                },
                &[BOB2, ALICE],
            ),
            (
                Declined,
                "the streaming device declines",
                || {
                    let (mut t, id) = streaming();
                    (id, t.abort(&bob1(), id).unwrap())
                },
                &[ALICE],
            ),
            (
                TooLarge,
                "the file is over max_file_size",
                || refused(RULES.max_file_size + 1, reachable(&[bob1()])),
                &[ALICE],
            ),
            (
                RecipientOffline,
                "no device of the recipient is online",
                || refused(SIZE, reachable(&[])),
                &[ALICE],
            ),
            (
                RecipientOffline,
                "a user sending to itself has no other device online",
                || {
                    let online = reachable(&[alice()]);
                    ask(&mut Table::new(0), alice(), "alice", SIZE, online, at(0))
                },
                &[ALICE],
            ),
            (
                ConnectionDropped,
                "the sender drops while offering",
                || {
                    let (mut t, id) = offered();
                    (id, t.connection_closed(ALICE))
                },
                &[BOB1, BOB2],
            ),
            (
                ConnectionDropped,
                "the sender drops while streaming",
                || {
                    let (mut t, id) = streaming();
                    (id, t.connection_closed(ALICE))
                },
                &[BOB1],
            ),
            (
                ConnectionDropped,
                "the streaming device drops",
                || {
                    let (mut t, id) = streaming();
                    (id, t.connection_closed(BOB1))
                },
                &[ALICE],
            ),
            (
                ConnectionDropped,
                "the last device offered the file drops",
                || {
                    let (mut t, id) = offered();
                    assert_eq!(t.connection_closed(BOB1), []);
                    (id, t.connection_closed(BOB2))
                },
                &[ALICE],
            ),
            (
                ConnectionDropped,
                "the streaming device's chunk queue is closed",
                || {
                    let (mut t, id) = streaming();
                    (id, t.relay_failed(id, RelayFailure::RecipientGone))
                },
                &[BOB1, ALICE],
            ),
            (
                NotAllowed,
                "the recipient is unknown",
                || {
                    let unknown = Recipient {
                        known: false,
                        blocks_sender: false,
                        sessions: Vec::new(),
                    };
                    refused(SIZE, unknown)
                },
                &[ALICE],
            ),
            (
                NotAllowed,
                "the recipient blocks the sender",
                || {
                    let blocking = Recipient {
                        known: true,
                        blocks_sender: true,
                        sessions: vec![bob1()],
                    };
                    refused(SIZE, blocking)
                },
                &[ALICE],
            ),
            (
                NotAllowed,
                "the sender has max_transfers_per_user transfers in progress",
                || {
                    let (mut t, _) = offered();
                    ask(&mut t, alice(), "carol", SIZE, reachable(&[carol()]), at(0));
                    ask(&mut t, alice(), "carol", SIZE, reachable(&[carol()]), at(0))
                },
                &[ALICE],
            ),
            (
                ProtocolViolation,
                "a chunk before the accept",
                || {
                    let (mut t, id) = offered();
                    (id, abort_effects(t.chunk(&alice(), id, 1, at(0))))
                },
                &[BOB1, BOB2, ALICE],
            ),
            (
                ProtocolViolation,
                "more bytes than announced",
                || {
                    let (mut t, id) = streaming();
                    (id, abort_effects(t.chunk(&alice(), id, SIZE + 1, at(0))))
                },
                &[BOB1, ALICE],
            ),
            (
                ProtocolViolation,
                "a 274 before every byte was sent",
                || {
                    let (mut t, id) = streaming();
                    assert_eq!(
                        t.chunk(&alice(), id, SIZE - 1, at(0)),
                        Ok(Data::Relay(bob1()))
                    );
                    (id, abort_effects(t.complete(&alice(), id, at(0))))
                },
                &[BOB1, ALICE],
            ),
            (
                ProtocolViolation,
                "a 274 before the accept",
                || {
                    let (mut t, id) = offered();
                    (id, abort_effects(t.complete(&alice(), id, at(0))))
                },
                &[BOB1, BOB2, ALICE],
            ),
            (
                TimedOut,
                "nothing moved for the idle timeout",
                || {
                    let (mut t, id) = offered();
                    (id, t.tick(at(IDLE_MS), IDLE))
                },
                &[BOB1, BOB2, ALICE],
            ),
            (
                TimedOut,
                "the streaming device's chunk queue stayed full for the idle timeout",
                || {
                    let (mut t, id) = streaming();
                    (id, t.relay_failed(id, RelayFailure::NoRoom))
                },
                &[BOB1, ALICE],
            ),
            (
                AcceptedElsewhere,
                "another device accepted the offer",
                || {
                    let (mut t, id) = offered();
                    (id, t.accept(&bob1(), id, at(0)).unwrap())
                },
                &[BOB2],
            ),
            (
                Cancelled,
                "the sender cancels the offer",
                || {
                    let (mut t, id) = offered();
                    (id, t.abort(&alice(), id).unwrap())
                },
                &[BOB1, BOB2],
            ),
            (
                Cancelled,
                "the sender cancels while streaming",
                || {
                    let (mut t, id) = streaming();
                    (id, t.abort(&alice(), id).unwrap())
                },
                &[BOB1],
            ),
        ];
        for (reason, case, scenario, to) in cases {
            let (id, effects) = scenario();
            let told: Vec<_> = to.iter().map(|conn| (*conn, id, *reason)).collect();
            assert_eq!(aborts(&effects), told, "{case}");
            let ends: Vec<_> = logged(&effects)
                .into_iter()
                .map(|(id, r, _)| (id, r))
                .collect();
            let expected =
                Vec::from_iter((*reason != AcceptedElsewhere).then_some((id, Some(*reason))));
            assert_eq!(ends, expected, "{case}");
        }
        let covered: HashSet<AbortReason> = cases.iter().map(|case| case.0).collect();
        assert_eq!(
            covered.len(),
            AbortReason::ALL.len(),
            "a case for every reason"
        );
    }

    #[test]
    fn an_offer_goes_to_every_online_device_of_the_recipient() {
        let mut table = Table::new(0);
        let online = reachable(&[bob1(), bob2()]);
        let (id, effects) = ask(&mut table, alice(), "bob", SIZE, online, at(0));
        let offer = ServerPacket::from(FileTransferOffer {
            sender: uid("alice"),
            size: FileSize::new(SIZE).unwrap(),
            name: "notes.txt".into(),
            transfer: id,
        });
        assert_eq!(sent(&effects), [(BOB1, offer.clone()), (BOB2, offer)]);
        assert_eq!(logged(&effects), []);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn sending_to_oneself_offers_the_file_to_ones_other_devices() {
        let mut table = Table::new(0);
        let online = reachable(&[alice(), who(ALICE2)]);
        let (id, effects) = ask(&mut table, alice(), "alice", SIZE, online, at(0));
        let to: Vec<u64> = sent(&effects).iter().map(|(conn, _)| *conn).collect();
        assert_eq!(to, [ALICE2]);
        let accepted = table.accept(&who(ALICE2), id, at(0)).unwrap();
        assert_eq!(sent(&accepted), [(ALICE, accept_packet(id))]);
    }

    /// The checks run in a fixed order and the first that fails gives the reason: the
    /// size, the sender's limit, the recipient (unknown and blocking look the same,
    /// online or not), then whether any of its devices is online.
    #[test]
    fn a_request_is_refused_by_the_first_check_it_fails() {
        // (case, size, known, blocks the sender, online, transfers alice has, outcome)
        let cases = [
            (
                "too large beats unknown",
                101,
                false,
                false,
                false,
                0,
                Some(TooLarge),
            ),
            (
                "exactly max_file_size is allowed",
                100,
                true,
                false,
                true,
                0,
                None,
            ),
            (
                "too large beats the limit",
                101,
                true,
                false,
                true,
                2,
                Some(TooLarge),
            ),
            (
                "the limit beats a reachable recipient",
                10,
                true,
                false,
                true,
                2,
                Some(NotAllowed),
            ),
            (
                "one below the limit is allowed",
                10,
                true,
                false,
                true,
                1,
                None,
            ),
            (
                "blocked, even when offline",
                10,
                true,
                true,
                false,
                0,
                Some(NotAllowed),
            ),
            ("unknown", 10, false, false, false, 0, Some(NotAllowed)),
            (
                "known, with no device online",
                10,
                true,
                false,
                false,
                0,
                Some(RecipientOffline),
            ),
        ];
        for (case, size, known, blocks_sender, online, prior, outcome) in cases {
            let mut table = Table::new(0);
            for _ in 0..prior {
                ask(
                    &mut table,
                    alice(),
                    "carol",
                    SIZE,
                    reachable(&[carol()]),
                    at(0),
                );
            }
            let sessions = if online { vec![bob1()] } else { Vec::new() };
            let recipient = Recipient {
                known,
                blocks_sender,
                sessions,
            };
            let (id, effects) = ask(&mut table, alice(), "bob", size, recipient, at(0));
            match outcome {
                Some(reason) => {
                    assert_eq!(
                        sent(&effects),
                        [(ALICE, abort_packet(id, reason))],
                        "{case}"
                    );
                    assert_eq!(logged(&effects), [(id, Some(reason), 0)], "{case}");
                    assert_eq!(table.len(), prior, "{case}: a refusal holds nothing");
                }
                None => {
                    assert_eq!(aborts(&effects), [], "{case}");
                    assert_eq!(table.len(), prior + 1, "{case}");
                }
            }
        }
    }

    /// The limit counts what a user sends from any of its connections, offered or
    /// streaming, and a transfer that ends frees its place.
    #[test]
    fn a_user_sends_at_most_max_transfers_per_user_files_at_once() {
        let (mut table, first) = streaming();
        let to_carol = || reachable(&[carol()]);
        let (_, effects) = ask(&mut table, who(ALICE2), "carol", SIZE, to_carol(), at(0));
        assert_eq!(aborts(&effects), [], "the second");
        let (third, effects) = ask(&mut table, alice(), "carol", SIZE, to_carol(), at(0));
        assert_eq!(aborts(&effects), [(ALICE, third, NotAllowed)], "the third");
        let (_, effects) = ask(
            &mut table,
            carol(),
            "bob",
            SIZE,
            reachable(&[bob1()]),
            at(0),
        );
        assert_eq!(aborts(&effects), [], "carol's limit is her own");
        table.abort(&alice(), first).unwrap();
        let (_, effects) = ask(&mut table, alice(), "carol", SIZE, to_carol(), at(0));
        assert_eq!(
            aborts(&effects),
            [],
            "the cancelled transfer freed its place"
        );
    }

    /// With `offers_per_minute = 2`: two offers at once, then a third refused (reason
    /// 4, and not logged: a flood of offers cannot grow the transfer log); the budget
    /// refills evenly, one offer per 30 s, and is each user's own.
    #[test]
    fn offers_past_the_rate_are_refused_unlogged_and_the_budget_refills_evenly() {
        let rules = Rules {
            offers_per_minute: 2,
            max_transfers_per_user: 100,
            ..RULES
        };
        let mut table = Table::new(0);
        // Whether the offer went out, and whether the refusal was logged.
        let offer = |table: &mut Table<Dev>, from: Dev, ms: u64| {
            let id = table.next_id();
            let conn = from.conn;
            let request = Request {
                id,
                sender: from,
                packet: FileTransferRequest {
                    recipient: uid("bob"),
                    size: FileSize::new(SIZE).unwrap(),
                    name: "notes.txt".into(),
                },
                at: Timestamp(7),
            };
            let effects = table.request(request, reachable(&[bob1()]), rules, at(ms));
            let refused = aborts(&effects);
            if !refused.is_empty() {
                assert_eq!(refused, [(conn, id, NotAllowed)]);
                assert!(!effects.iter().any(|e| matches!(e, Effect::Log(_))));
            }
            refused.is_empty()
        };
        assert!(offer(&mut table, alice(), 0));
        assert!(offer(&mut table, alice(), 0));
        assert!(!offer(&mut table, alice(), 0), "the third at once");
        assert!(offer(&mut table, carol(), 0), "carol's own budget");
        assert!(!offer(&mut table, alice(), 29_999));
        assert!(offer(&mut table, alice(), 30_000), "one back per 30 s");
        assert!(!offer(&mut table, alice(), 30_000));
        // A user whose budget is whole again is forgotten.
        table.tick(at(60_000), IDLE);
        assert_eq!(
            table.offer_budget.len(),
            1,
            "alice still spent ahead, not carol"
        );
        table.tick(at(90_000), IDLE);
        assert!(table.offer_budget.is_empty());
    }

    #[test]
    fn the_first_accept_wins_and_late_answers_from_the_other_devices_are_ignored() {
        let (mut table, id) = offered();
        let effects = table.accept(&bob1(), id, at(0)).unwrap();
        let lost = abort_packet(id, AcceptedElsewhere);
        assert_eq!(sent(&effects), [(BOB2, lost), (ALICE, accept_packet(id))]);
        assert_eq!(logged(&effects), []);
        // Bob2's 272 or 270 crossed the 270 (reason 7) on the wire: stale, not a
        // violation. So is an answer from a device of bob's that was never offered it.
        assert_eq!(table.accept(&bob2(), id, at(0)), Ok(vec![]));
        assert_eq!(table.abort(&bob2(), id), Ok(vec![]));
        assert_eq!(table.accept(&who(BOB3), id, at(0)), Ok(vec![]));
        assert_eq!(table.chunk(&alice(), id, 1, at(0)), Ok(Data::Relay(bob1())));
    }

    /// A 272 or 270 from a connection outside the transfer, or a second 272 from the
    /// device that accepted, closes that connection; the transfer goes on.
    #[test]
    fn answers_from_outside_the_transfer_close_that_connection() {
        let accept = |id| Violation::NotAParty {
            id,
            packet: "FileTransferAccept (272)",
        };
        let abort = |id| Violation::NotAParty {
            id,
            packet: "FileTransferAbort (270)",
        };
        let (mut table, id) = offered();
        // Bob3 logged in after the offer: while it stands, it is not a party.
        for by in [carol(), alice(), who(BOB3)] {
            assert_eq!(table.accept(&by, id, at(0)), Err(accept(id)), "{by:?}");
        }
        for by in [carol(), who(BOB3)] {
            assert_eq!(table.abort(&by, id), Err(abort(id)), "{by:?}");
        }
        assert_eq!(
            table.accept(&bob1(), id, at(0)).map(|e| e.len()),
            Ok(2),
            "it stands"
        );
        assert_eq!(
            table.accept(&bob1(), id, at(0)),
            Err(Violation::AlreadyAccepted(id))
        );
        assert_eq!(table.accept(&alice(), id, at(0)), Err(accept(id)));
        assert_eq!(table.abort(&carol(), id), Err(abort(id)));
        assert_eq!(table.chunk(&alice(), id, 1, at(0)), Ok(Data::Relay(bob1())));
    }

    /// Chunks go to the device that accepted, in any sizes that add up to the announced
    /// size; the transfer is complete once the 274 after them was handed over.
    #[test]
    fn chunks_adding_up_to_the_size_then_a_274_complete_the_transfer() {
        let (mut table, id) = streaming();
        assert_eq!(table.chunk(&alice(), id, 4, at(1)), Ok(Data::Relay(bob1())));
        assert_eq!(table.chunk(&alice(), id, 6, at(2)), Ok(Data::Relay(bob1())));
        assert_eq!(table.complete(&alice(), id, at(3)), Ok(Data::Relay(bob1())));
        assert_eq!(table.len(), 1, "not complete until the 274 is handed over");
        let ended = Ended {
            id,
            sender: uid("alice"),
            recipient: uid("bob"),
            size: FileSize::new(SIZE).unwrap(),
            name: "notes.txt".into(),
            relayed: SIZE,
            started_at: Timestamp(7),
            outcome: None,
        };
        // The relayed 274 told the recipient, and the sender sent it: no 270.
        assert_eq!(table.completed(id), [Effect::Log(ended)]);
        assert_eq!(table.len(), 0);
    }

    /// The announced size is exact: a chunk that would pass it, or a 274 short of it,
    /// aborts both sides with reason 5, and the log keeps the bytes relayed before.
    #[test]
    fn the_bytes_must_add_up_to_exactly_the_announced_size() {
        // (chunk lengths, a 274 after them, the step that aborts, bytes relayed)
        let cases: [(&[u64], bool, Option<usize>, u64); 7] = [
            (&[10], true, None, 10),
            (&[1; 10], true, None, 10),
            (&[11], false, Some(0), 0),
            (&[5, 6], false, Some(1), 5),
            (&[10, 1], false, Some(1), 10),
            (&[9], true, Some(1), 9),
            (&[], true, Some(0), 0),
        ];
        for (chunks, complete, aborts_at, relayed) in cases {
            let case = format!("chunks {chunks:?}, then a 274: {complete}");
            let (mut table, id) = streaming();
            let inputs = chunks.iter().map(|len| Some(*len));
            let mut ended = None;
            for (step, input) in inputs.chain(complete.then_some(None)).enumerate() {
                let data = match input {
                    Some(len) => table.chunk(&alice(), id, len, at(0)),
                    None => table.complete(&alice(), id, at(0)),
                };
                match data {
                    Ok(Data::Relay(to)) => assert_eq!(to, bob1(), "{case}"),
                    Ok(Data::Abort(effects)) => {
                        let told = [
                            (BOB1, id, ProtocolViolation),
                            (ALICE, id, ProtocolViolation),
                        ];
                        assert_eq!(aborts(&effects), told, "{case}");
                        ended = Some((step, logged(&effects)));
                        break;
                    }
                    other => panic!("{case}: {other:?}"),
                }
            }
            let log = |outcome| vec![(id, outcome, relayed)];
            match aborts_at {
                Some(step) => {
                    assert_eq!(ended, Some((step, log(Some(ProtocolViolation)))), "{case}")
                }
                None => {
                    assert_eq!(ended, None, "{case}");
                    assert_eq!(logged(&table.completed(id)), log(None), "{case}");
                }
            }
        }
    }

    /// File data comes from the sender only. From the recipient, or from anyone else
    /// (the device that lost the race too: data is never a late answer), it closes that
    /// connection; the transfer goes on.
    #[test]
    fn file_data_from_anyone_but_the_sender_closes_that_connection() {
        let (mut table, id) = streaming();
        let recipient = Err(Violation::DataFromRecipient(id));
        assert_eq!(table.chunk(&bob1(), id, 1, at(0)), recipient);
        assert_eq!(table.complete(&bob1(), id, at(0)), recipient);
        let stranger = Err(Violation::NotAParty {
            id,
            packet: "file data",
        });
        for by in [bob2(), carol()] {
            assert_eq!(table.chunk(&by, id, 1, at(0)), stranger, "{by:?}");
            assert_eq!(table.complete(&by, id, at(0)), stranger, "{by:?}");
        }
        assert_eq!(
            table.chunk(&alice(), id, SIZE, at(0)),
            Ok(Data::Relay(bob1()))
        );
        // While the offer stands, every device offered the file is the recipient.
        let (mut table, id) = offered();
        assert_eq!(
            table.chunk(&bob2(), id, 1, at(0)),
            Err(Violation::DataFromRecipient(id))
        );
    }

    /// Once a transfer is over, packets naming it crossed its end on the wire: all are
    /// dropped, whoever sends them, as are those naming a transfer that never was.
    #[test]
    fn packets_for_a_transfer_that_is_over_are_dropped() {
        let (mut table, id) = streaming();
        table.abort(&alice(), id).unwrap();
        for id in [id, TransferId(99)] {
            for by in [alice(), bob1(), bob2(), carol()] {
                assert_eq!(table.accept(&by, id, at(0)), Ok(vec![]));
                assert_eq!(table.abort(&by, id), Ok(vec![]));
                assert_eq!(table.chunk(&by, id, 1, at(0)), Ok(Data::Ignore));
                assert_eq!(table.complete(&by, id, at(0)), Ok(Data::Ignore));
            }
            assert_eq!(table.relay_failed(id, RelayFailure::NoRoom), []);
            assert_eq!(table.completed(id), []);
        }
    }

    /// A 274 waits for room in the recipient's queue. If the transfer ends meanwhile
    /// (here the recipient declines), handing the 274 over afterwards ends nothing.
    #[test]
    fn a_transfer_that_ends_while_its_274_waits_is_logged_once() {
        let (mut table, id) = streaming();
        assert_eq!(
            table.chunk(&alice(), id, SIZE, at(0)),
            Ok(Data::Relay(bob1()))
        );
        assert_eq!(table.complete(&alice(), id, at(0)), Ok(Data::Relay(bob1())));
        let declined = table.abort(&bob1(), id).unwrap();
        assert_eq!(logged(&declined), [(id, Some(Declined), SIZE)]);
        assert_eq!(table.completed(id), []);
    }

    /// A drop ends every transfer that cannot go on without that connection, in
    /// identifier order, and no other.
    #[test]
    fn a_drop_ends_the_transfers_of_that_connection_only() {
        let (mut table, to_bob) = offered();
        let (to_carol, _) = ask(
            &mut table,
            alice(),
            "carol",
            SIZE,
            reachable(&[carol()]),
            at(0),
        );
        table.accept(&carol(), to_carol, at(0)).unwrap();
        ask(
            &mut table,
            carol(),
            "bob",
            SIZE,
            reachable(&[bob1()]),
            at(0),
        );
        let effects = table.connection_closed(ALICE);
        let dropped = ConnectionDropped;
        let told = [
            (BOB1, to_bob, dropped),
            (BOB2, to_bob, dropped),
            (CAROL, to_carol, dropped),
        ];
        assert_eq!(aborts(&effects), told);
        let ended: Vec<_> = logged(&effects).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(ended, [to_bob, to_carol]);
        assert_eq!(table.len(), 1, "carol's offer to bob goes on");
        assert_eq!(
            table.connection_closed(ALICE2),
            [],
            "alice's other device is in none"
        );
    }

    /// The devices offered the file may drop one by one: only the last ends the offer
    /// (see the reasons above), and one that dropped is not told when another accepts.
    #[test]
    fn an_offer_stands_while_one_device_offered_it_remains() {
        let (mut table, id) = offered();
        assert_eq!(table.connection_closed(BOB1), []);
        let accepted = table.accept(&bob2(), id, at(0)).unwrap();
        assert_eq!(sent(&accepted), [(ALICE, accept_packet(id))]);
    }

    /// Once a device accepted, the others are out of the transfer.
    #[test]
    fn the_drop_of_a_device_that_lost_the_race_changes_nothing() {
        let (mut table, id) = streaming();
        assert_eq!(table.connection_closed(BOB2), []);
        assert_eq!(table.chunk(&alice(), id, 1, at(0)), Ok(Data::Relay(bob1())));
    }

    /// With the fake clock: a transfer that has not moved on for exactly the idle
    /// timeout is aborted on both sides; a millisecond earlier it is not.
    #[test]
    fn an_idle_transfer_times_out_at_exactly_the_idle_timeout() {
        let (mut table, id) = offered();
        assert_eq!(table.tick(at(IDLE_MS - 1), IDLE), []);
        let effects = table.tick(at(IDLE_MS), IDLE);
        let told = [
            (BOB1, id, TimedOut),
            (BOB2, id, TimedOut),
            (ALICE, id, TimedOut),
        ];
        assert_eq!(aborts(&effects), told);
        assert_eq!(logged(&effects), [(id, Some(TimedOut), 0)]);
        assert_eq!(table.tick(at(2 * IDLE_MS), IDLE), [], "it ended once");
    }

    /// The accept and each relayed chunk start the idle wait again.
    #[test]
    fn the_accept_and_each_chunk_restart_the_idle_wait() {
        let (mut table, id) = offered();
        table.accept(&bob1(), id, at(30_000)).unwrap();
        assert_eq!(table.tick(at(30_000 + IDLE_MS - 1), IDLE), []);
        assert_eq!(
            table.chunk(&alice(), id, 1, at(50_000)),
            Ok(Data::Relay(bob1()))
        );
        assert_eq!(table.tick(at(50_000 + IDLE_MS - 1), IDLE), []);
        let effects = table.tick(at(50_000 + IDLE_MS), IDLE);
        assert_eq!(logged(&effects), [(id, Some(TimedOut), 1)]);
    }

    /// Packets that move nothing on (a late answer, a violation) leave the wait as is.
    #[test]
    fn packets_that_move_nothing_on_do_not_restart_the_idle_wait() {
        let (mut table, id) = streaming();
        let late = at(IDLE_MS - 1);
        assert_eq!(table.accept(&bob2(), id, late), Ok(vec![]));
        assert!(table.accept(&bob1(), id, late).is_err());
        assert!(table.chunk(&carol(), id, 1, late).is_err());
        let effects = table.tick(at(IDLE_MS), IDLE);
        assert_eq!(logged(&effects), [(id, Some(TimedOut), 0)]);
    }

    /// Each transfer has its own idle wait: a tick ends only those idle for the timeout.
    #[test]
    fn a_tick_ends_only_the_transfers_idle_for_the_timeout() {
        let (mut table, first) = offered();
        let to_bob = reachable(&[bob1()]);
        let (second, _) = ask(&mut table, carol(), "bob", SIZE, to_bob, at(10_000));
        let ended = |effects: Vec<Effect<Dev>>| -> Vec<TransferId> {
            logged(&effects).into_iter().map(|(id, ..)| id).collect()
        };
        assert_eq!(ended(table.tick(at(IDLE_MS), IDLE)), [first]);
        assert_eq!(ended(table.tick(at(10_000 + IDLE_MS), IDLE)), [second]);
    }

    #[test]
    fn identifiers_continue_after_the_highest_logged_one() {
        let mut table = Table::<Dev>::new(41);
        assert_eq!(table.next_id(), TransferId(42));
        assert_eq!(table.next_id(), TransferId(43));
        assert_eq!(Table::<Dev>::new(0).next_id(), TransferId(1));
    }

    #[test]
    fn transfer_ids_wrap_to_1_and_step_over_those_in_use() {
        let mut prev = i32::MAX - 1;
        assert_eq!(next_free(&mut prev, |_| false), i32::MAX);
        let in_use = |id: i32| id == 1 || id == 2;
        assert_eq!(
            next_free(&mut prev, in_use),
            3,
            "1 and 2 are still in progress"
        );
        assert_eq!(next_free(&mut prev, in_use), 4);
    }

    /// One input of the exhaustive test below.
    #[derive(Debug, Clone, Copy)]
    enum Input {
        Accept(u64),
        Abort(u64),
        /// A chunk of half the file from this connection, handed over.
        Chunk(u64),
        /// A chunk from alice that finds the recipient's chunk queue closed.
        ChunkToNobody,
        /// A chunk from alice that finds no room in it for the idle timeout.
        ChunkStalled,
        /// A 274 from alice, handed over.
        Complete,
        Closed(u64),
        Tick,
    }

    impl Input {
        /// The connection that sends it, if any.
        fn sender(self) -> Option<u64> {
            match self {
                Input::Accept(c) | Input::Abort(c) | Input::Chunk(c) | Input::Closed(c) => Some(c),
                Input::ChunkToNobody | Input::ChunkStalled | Input::Complete => Some(ALICE),
                Input::Tick => None,
            }
        }
    }

    const INPUTS: [Input; 15] = [
        Input::Accept(BOB1),
        Input::Accept(BOB2),
        Input::Accept(CAROL),
        Input::Abort(ALICE),
        Input::Abort(BOB1),
        Input::Abort(BOB2),
        Input::Chunk(ALICE),
        Input::Chunk(BOB1),
        Input::ChunkToNobody,
        Input::ChunkStalled,
        Input::Complete,
        Input::Closed(ALICE),
        Input::Closed(BOB1),
        Input::Closed(BOB2),
        Input::Tick,
    ];

    type Relayed = fn(&mut Table<Dev>, TransferId) -> Vec<Effect<Dev>>;

    /// Carries a 273 or 274 through, as the shell does: a relay ends with `relayed`.
    fn through(
        table: &mut Table<Dev>,
        id: TransferId,
        data: Result<Data<Dev>, Violation>,
        relayed: Relayed,
    ) -> Result<Vec<Effect<Dev>>, Violation> {
        Ok(match data? {
            Data::Ignore => Vec::new(),
            Data::Abort(effects) => effects,
            Data::Relay(_) => relayed(table, id),
        })
    }

    /// Feeds one input as the shell does; a violation closes the connection that sent
    /// it. The effects, and the connection that closed, if one did.
    fn feed(
        table: &mut Table<Dev>,
        id: TransferId,
        input: Input,
        now: Instant,
    ) -> (Vec<Effect<Dev>>, Option<u64>) {
        let handed_over: Relayed = |_, _| Vec::new();
        let to_nobody: Relayed = |t, id| t.relay_failed(id, RelayFailure::RecipientGone);
        let stalled: Relayed = |t, id| t.relay_failed(id, RelayFailure::NoRoom);
        let result = match input {
            Input::Accept(c) => table.accept(&who(c), id, now),
            Input::Abort(c) => table.abort(&who(c), id),
            Input::Chunk(c) => {
                let data = table.chunk(&who(c), id, SIZE / 2, now);
                through(table, id, data, handed_over)
            }
            Input::ChunkToNobody => {
                let data = table.chunk(&alice(), id, SIZE / 2, now);
                through(table, id, data, to_nobody)
            }
            Input::ChunkStalled => {
                let data = table.chunk(&alice(), id, SIZE / 2, now);
                through(table, id, data, stalled)
            }
            Input::Complete => {
                let data = table.complete(&alice(), id, now);
                through(table, id, data, Table::completed)
            }
            Input::Closed(c) => return (table.connection_closed(c), Some(c)),
            Input::Tick => Ok(table.tick(now, IDLE)),
        };
        match result {
            Ok(effects) => (effects, None),
            Err(_) => {
                let by = input.sender().expect("a violation comes from a connection");
                (table.connection_closed(by), Some(by))
            }
        }
    }

    /// What a sequence of inputs did to one transfer.
    #[derive(Default)]
    struct Run {
        /// The connections sent a 270.
        told: Vec<u64>,
        /// The connections closed (dropped, or closed for a violation).
        closed: Vec<u64>,
        /// How the transfer ended, and the connection whose input ended it.
        end: Option<(Ended, Option<u64>)>,
    }

    impl Run {
        fn step(&mut self, effects: Vec<Effect<Dev>>, by: Option<u64>, case: &[Input]) {
            if self.end.is_some() {
                assert_eq!(effects, [], "{case:?}: something happened after the end");
                return;
            }
            for effect in effects {
                match effect {
                    Effect::Send(to, packet) => {
                        let to = to.conn;
                        assert!(
                            [ALICE, BOB1, BOB2].contains(&to),
                            "{case:?}: {to} is no party"
                        );
                        assert!(!self.closed.contains(&to), "{case:?}: {to} is closed");
                        if let ServerPacket::FileTransferAbort(_) = packet {
                            assert!(!self.told.contains(&to), "{case:?}: a second 270 to {to}");
                            self.told.push(to);
                        }
                    }
                    Effect::Log(ended) => {
                        assert!(self.end.is_none(), "{case:?}: logged twice");
                        self.end = Some((ended, by));
                    }
                }
            }
        }

        /// A completed transfer relayed every byte, an aborted one no more than them,
        /// and every party still connected knows the transfer is over.
        fn check_end(&self, case: &[Input]) {
            let Some((ended, by)) = &self.end else {
                return;
            };
            let completed = ended.outcome.is_none();
            assert!(ended.relayed <= SIZE, "{case:?}: more than the size");
            assert!(
                !completed || ended.relayed == SIZE,
                "{case:?}: completed short"
            );
            for conn in [ALICE, BOB1, BOB2] {
                let knows = completed
                    || *by == Some(conn)
                    || self.told.contains(&conn)
                    || self.closed.contains(&conn);
                assert!(knows, "{case:?}: {conn} was not told the transfer is over");
            }
        }
    }

    /// Every sequence of four inputs, 30 s apart, from an offer and from an accepted
    /// transfer (all 15^4 of each), keeps the invariants: only the parties hear of the
    /// transfer, each 270 at most once and never on a closed connection; it is logged
    /// once, and leaves the table then; after that nothing happens; and its end is
    /// consistent (see [`Run::check_end`]).
    #[test]
    fn every_sequence_of_four_inputs_keeps_the_invariants() {
        type Start = fn() -> (Table<Dev>, TransferId);
        // Bob2 was told (reason 7) when bob1 accepted.
        let starts: [(Start, &[u64]); 2] = [(offered, &[]), (streaming, &[BOB2])];
        let n = INPUTS.len();
        for (start, told) in starts {
            for number in 0..n.pow(4) {
                let case: Vec<Input> = (0..4).map(|i| INPUTS[number / n.pow(i) % n]).collect();
                let (mut table, id) = start();
                let mut run = Run {
                    told: told.to_vec(),
                    ..Run::default()
                };
                for (step, input) in (1..).zip(&case) {
                    // A closed connection sends nothing more.
                    if input.sender().is_some_and(|c| run.closed.contains(&c)) {
                        continue;
                    }
                    let (effects, closed) = feed(&mut table, id, *input, at(30_000 * step));
                    run.step(effects, input.sender(), &case);
                    run.closed.extend(closed);
                    let over = run.end.is_some();
                    assert_eq!(
                        table.len() == 0,
                        over,
                        "{case:?}: in the table until logged"
                    );
                }
                run.check_end(&case);
            }
        }
    }
}
