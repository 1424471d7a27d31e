//! File transfers (268-274), `docs/protocol.md`: offers, first accept wins, the relay
//! of chunks, and an abort with a reason both sides learn.
//!
//! File data is relayed, never stored. A chunk waits for room in the recipient's small
//! chunk queue before the sender's next packet is read, so the server's buffer per
//! transfer is a few KiB whatever the file size or the recipient's speed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vcom_protocol::{
    AbortReason, FileChunk, FileSize, FileTransferAbort, FileTransferAccept, FileTransferComplete,
    FileTransferId, FileTransferOffer, FileTransferRequest, ServerPacket, Timestamp, TransferId,
    UserId,
};
use vcom_store::{Store, TransferRecord};

use crate::connection::{Close, Conn};
use crate::server::Shared;
use crate::session::{Outbound, SessionHandle};
use crate::stats::Stats;

#[derive(Debug)]
enum Phase {
    /// Offered to these devices of the recipient; none has answered.
    Offered(Vec<SessionHandle>),
    /// Accepted by one device; data flows to it.
    Streaming(SessionHandle),
}

#[derive(Debug)]
struct Transfer {
    sender: SessionHandle,
    recipient: UserId,
    size: FileSize,
    name: String,
    phase: Phase,
    relayed: u64,
    started_at: Timestamp,
    last_activity: Instant,
    /// Cancelled when the transfer ends, however it ends: it releases a sender's reader
    /// that is waiting for room in the recipient's chunk queue.
    ended: CancellationToken,
}

impl Transfer {
    fn recipient_sessions(&self) -> Vec<SessionHandle> {
        match &self.phase {
            Phase::Offered(devices) => devices.clone(),
            Phase::Streaming(device) => vec![device.clone()],
        }
    }
}

/// Every transfer in progress.
#[derive(Debug)]
pub(crate) struct Transfers {
    next: AtomicI32,
    active: Mutex<HashMap<TransferId, Transfer>>,
}

impl Transfers {
    /// Identifiers continue after the highest one logged, so they stay unique.
    pub(crate) fn new(max_logged: i32) -> Self {
        Transfers {
            next: AtomicI32::new(max_logged.max(0)),
            active: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TransferId, Transfer>> {
        // Each critical section is a single map operation; a poisoned map is consistent.
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh identifier: positive, and never one of a transfer still in progress
    /// (after `i32::MAX` they start again at 1, stepping over those in use).
    fn next_id(&self) -> TransferId {
        let active = self.lock();
        let mut prev = self.next.load(Ordering::Relaxed);
        let id = next_free(&mut prev, |id| active.contains_key(&TransferId(id)));
        self.next.store(prev, Ordering::Relaxed);
        TransferId(id)
    }

    /// How many transfers `user` is sending now (offered or streaming).
    fn sending(&self, user: &UserId) -> usize {
        self.lock()
            .values()
            .filter(|t| t.sender.user == *user)
            .count()
    }

    /// How many transfers are in progress.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The transfers that have been idle for `idle` or longer as of `now` (the clock is
    /// the caller's, so the rule is tested without waiting).
    fn stale(&self, now: Instant, idle: Duration) -> Vec<TransferId> {
        self.lock()
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.last_activity) >= idle)
            .map(|(id, _)| *id)
            .collect()
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

fn abort_packet(id: TransferId, reason: AbortReason) -> ServerPacket {
    FileTransferAbort {
        transfer: id,
        reason,
    }
    .into()
}

/// Ends a transfer: tells each listed session why, and logs the outcome.
async fn finish<S: Store>(
    shared: &Shared<S>,
    id: TransferId,
    t: Transfer,
    outcome: Option<AbortReason>,
    notify: &[(SessionHandle, AbortReason)],
) {
    t.ended.cancel();
    for (session, reason) in notify {
        session.push(Outbound::Packet(abort_packet(id, *reason)));
    }
    match outcome {
        None => Stats::bump(&shared.stats.transfers_completed),
        Some(reason) => {
            Stats::bump(&shared.stats.transfers_aborted);
            tracing::info!(transfer = %id, from = %t.sender.user, to = %t.recipient, %reason, "file transfer aborted");
        }
    }
    let record = TransferRecord {
        id,
        sender: t.sender.user.clone(),
        recipient: t.recipient.clone(),
        size: i64::from(t.size.get()),
        name: t.name.clone(),
        bytes_relayed: i64::try_from(t.relayed).unwrap_or(i64::MAX),
        started_at: t.started_at,
        ended_at: crate::now(),
        abort_reason: outcome.map(AbortReason::code),
    };
    if let Err(e) = shared.store.log_transfer(record).await {
        tracing::error!(transfer = %id, error = %e, "cannot log file transfer");
    }
}

/// Aborts a transfer for both sides with one reason.
async fn abort_both<S: Store>(shared: &Shared<S>, id: TransferId, reason: AbortReason) {
    let Some(t) = shared.transfers.lock().remove(&id) else {
        return;
    };
    let mut notify: Vec<_> = t
        .recipient_sessions()
        .into_iter()
        .map(|s| (s, reason))
        .collect();
    notify.push((t.sender.clone(), reason));
    finish(shared, id, t, Some(reason), &notify).await;
}

/// 268: answer with 269, then offer the file or abort at once.
pub(crate) async fn on_request<S: Store>(
    conn: &Conn<S>,
    p: FileTransferRequest,
) -> Result<(), Close> {
    let shared = &conn.shared;
    let id = shared.transfers.next_id();
    conn.reply(FileTransferId { transfer: id }).await?;
    let transfer = Transfer {
        sender: conn.session.clone(),
        recipient: p.recipient.clone(),
        size: p.size,
        name: p.name.clone(),
        phase: Phase::Offered(Vec::new()),
        relayed: 0,
        started_at: crate::now(),
        last_activity: Instant::now(),
        ended: CancellationToken::new(),
    };
    let refusal = if p.size.bytes() > shared.config.max_file_size {
        Some(AbortReason::TooLarge)
    } else if shared.transfers.sending(conn.user()) >= shared.config.max_transfers_per_user {
        tracing::warn!(user = %conn.user(), limit = shared.config.max_transfers_per_user, "file offer refused: too many transfers in progress from this user");
        Some(AbortReason::NotAllowed)
    } else if !shared.directory.knows(&p.recipient)
        || shared.directory.blocks(&p.recipient, conn.user())
    {
        // Unknown and blocked look the same to the sender, on purpose.
        Some(AbortReason::NotAllowed)
    } else {
        None
    };
    let devices: Vec<SessionHandle> = shared
        .sessions
        .of_user(&p.recipient)
        .into_iter()
        .filter(|s| s.conn != conn.session.conn)
        .collect();
    let refusal = refusal.or(devices.is_empty().then_some(AbortReason::RecipientOffline));
    if let Some(reason) = refusal {
        finish(
            shared,
            id,
            transfer,
            Some(reason),
            &[(conn.session.clone(), reason)],
        )
        .await;
        return Ok(());
    }
    let offer = ServerPacket::from(FileTransferOffer {
        sender: conn.user().clone(),
        size: p.size,
        name: p.name,
        transfer: id,
    });
    for device in &devices {
        device.push(Outbound::Packet(offer.clone()));
    }
    tracing::info!(transfer = %id, from = %conn.user(), to = %p.recipient, size = %p.size, devices = devices.len(), "file offered");
    shared.transfers.lock().insert(
        id,
        Transfer {
            phase: Phase::Offered(devices),
            ..transfer
        },
    );
    Ok(())
}

/// Which side of a transfer a connection is on.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    Sender,
    Recipient,
    None,
}

fn role(t: &Transfer, conn: u64) -> Role {
    if t.sender.conn == conn {
        Role::Sender
    } else if t.recipient_sessions().iter().any(|s| s.conn == conn) {
        Role::Recipient
    } else {
        Role::None
    }
}

/// A device of the recipient that is not the one streaming: it was offered the file and
/// lost the race to accept it, so its 272 or 270 crossed our 270 (reason 7) on the wire.
/// That answer is stale, not a protocol violation, and is ignored.
fn lost_the_race(t: &Transfer, user: &UserId) -> bool {
    matches!(t.phase, Phase::Streaming(_)) && t.recipient == *user
}

fn no_role(id: TransferId, packet: &str) -> Close {
    Close::Violation(format!(
        "{packet} for transfer {id}, which this connection is not part of"
    ))
}

/// 272 from a recipient device: the first accept wins.
pub(crate) async fn on_accept<S: Store>(
    conn: &Conn<S>,
    p: FileTransferAccept,
) -> Result<(), Close> {
    let id = p.transfer;
    let (sender, others) = {
        let mut map = conn.shared.transfers.lock();
        let Some(t) = map.get_mut(&id) else {
            tracing::debug!(transfer = %id, "accept for a finished transfer ignored");
            return Ok(());
        };
        match role(t, conn.session.conn) {
            Role::Recipient => {}
            Role::None if lost_the_race(t, conn.user()) => {
                tracing::debug!(transfer = %id, device = %conn.device(), "accept that lost the race ignored");
                return Ok(());
            }
            _ => return Err(no_role(id, "FileTransferAccept (272)")),
        }
        let Phase::Offered(devices) = &t.phase else {
            return Err(Close::Violation(format!(
                "FileTransferAccept (272) for transfer {id}, which was already accepted"
            )));
        };
        let others: Vec<_> = devices
            .iter()
            .filter(|s| s.conn != conn.session.conn)
            .cloned()
            .collect();
        t.phase = Phase::Streaming(conn.session.clone());
        t.last_activity = Instant::now();
        (t.sender.clone(), others)
    };
    for other in others {
        other.push(Outbound::Packet(abort_packet(
            id,
            AbortReason::AcceptedElsewhere,
        )));
    }
    sender.push(Outbound::Packet(FileTransferAccept { transfer: id }.into()));
    tracing::info!(transfer = %id, by = %conn.user(), device = %conn.device(), "file accepted");
    Ok(())
}

/// 270 from a client: the sender cancels, or a recipient declines.
pub(crate) async fn on_abort<S: Store>(conn: &Conn<S>, p: FileTransferAbort) -> Result<(), Close> {
    let id = p.transfer;
    let shared = &conn.shared;
    let t = {
        let mut map = shared.transfers.lock();
        // None: already over, the abort crossed another end.
        let Some(t) = map.get(&id) else { return Ok(()) };
        match role(t, conn.session.conn) {
            Role::None if lost_the_race(t, conn.user()) => return Ok(()),
            Role::None => return Err(no_role(id, "FileTransferAbort (270)")),
            Role::Sender | Role::Recipient => map.remove(&id),
        }
    };
    let Some(t) = t else { return Ok(()) };
    if t.sender.conn == conn.session.conn {
        let reason = AbortReason::Cancelled;
        let notify: Vec<_> = t
            .recipient_sessions()
            .into_iter()
            .map(|s| (s, reason))
            .collect();
        finish(shared, id, t, Some(reason), &notify).await;
    } else {
        let reason = AbortReason::Declined;
        let mut notify: Vec<_> = t
            .recipient_sessions()
            .into_iter()
            .filter(|s| s.conn != conn.session.conn)
            .map(|s| (s, reason))
            .collect();
        notify.push((t.sender.clone(), reason));
        finish(shared, id, t, Some(reason), &notify).await;
    }
    Ok(())
}

/// What the sender's packet may do next, decided under the lock.
enum Step {
    Ignore,
    Violation(AbortReason),
    Forward(SessionHandle, CancellationToken),
}

fn step_for<S>(conn: &Conn<S>, id: TransferId, len: u64, completing: bool) -> Result<Step, Close> {
    let mut map = conn.shared.transfers.lock();
    let Some(t) = map.get_mut(&id) else {
        return Ok(Step::Ignore);
    };
    if t.sender.conn != conn.session.conn {
        return match role(t, conn.session.conn) {
            Role::None => Err(no_role(id, "file data")),
            _ => Err(Close::Violation(format!(
                "the recipient of transfer {id} sent file data"
            ))),
        };
    }
    let Phase::Streaming(recipient) = &t.phase else {
        return Ok(Step::Violation(AbortReason::ProtocolViolation));
    };
    let size = t.size.bytes();
    let relayed = t.relayed + len;
    if relayed > size || (completing && relayed != size) {
        return Ok(Step::Violation(AbortReason::ProtocolViolation));
    }
    t.relayed = relayed;
    t.last_activity = Instant::now();
    Ok(Step::Forward(recipient.clone(), t.ended.clone()))
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
    let timeout = conn.shared.config.transfer_idle_timeout();
    let send = tokio::time::timeout(timeout, recipient.chunks.send(packet));
    let sent = tokio::select! {
        // The send first: while there is room, the token is never polled (polling it
        // registers a waiter, a cost on every chunk).
        biased;
        r = send => r,
        _ = ended.cancelled() => return false,
    };
    match sent {
        Ok(Ok(())) => true,
        Ok(Err(_)) => {
            abort_both(&conn.shared, id, AbortReason::ConnectionDropped).await;
            false
        }
        Err(_) => {
            abort_both(&conn.shared, id, AbortReason::TimedOut).await;
            false
        }
    }
}

/// 273 from the sender: relay it unchanged.
pub(crate) async fn on_chunk<S: Store>(conn: &Conn<S>, p: FileChunk) -> Result<(), Close> {
    let id = p.transfer;
    let len = p.data.len() as u64;
    match step_for(conn, id, len, false)? {
        Step::Ignore => Ok(()),
        Step::Violation(reason) => {
            abort_both(&conn.shared, id, reason).await;
            Ok(())
        }
        Step::Forward(recipient, ended) => {
            if forward(conn, id, &recipient, &ended, p.into()).await {
                conn.shared
                    .stats
                    .file_bytes_relayed
                    .fetch_add(len, Ordering::Relaxed);
            }
            Ok(())
        }
    }
}

/// 274 from the sender: every byte was sent; relay the completion and log it.
pub(crate) async fn on_complete<S: Store>(
    conn: &Conn<S>,
    p: FileTransferComplete,
) -> Result<(), Close> {
    let id = p.transfer;
    match step_for(conn, id, 0, true)? {
        Step::Ignore => Ok(()),
        Step::Violation(reason) => {
            abort_both(&conn.shared, id, reason).await;
            Ok(())
        }
        Step::Forward(recipient, ended) => {
            if forward(conn, id, &recipient, &ended, p.into()).await {
                let done = conn.shared.transfers.lock().remove(&id);
                if let Some(t) = done {
                    tracing::info!(transfer = %id, from = %t.sender.user, to = %t.recipient, bytes = t.relayed, "file transferred");
                    finish(&conn.shared, id, t, None, &[]).await;
                }
            }
            Ok(())
        }
    }
}

/// A connection ended: abort its transfers, telling the other side (270 reason 3).
pub(crate) async fn connection_closed<S: Store>(conn: &Conn<S>) {
    let shared = &conn.shared;
    let me = conn.session.conn;
    let mut ended = Vec::new();
    {
        let mut map = shared.transfers.lock();
        let ids: Vec<TransferId> = map.keys().copied().collect();
        for id in ids {
            let Some(t) = map.get_mut(&id) else { continue };
            let gone = t.sender.conn == me
                || match &mut t.phase {
                    Phase::Streaming(recipient) => recipient.conn == me,
                    Phase::Offered(devices) => {
                        devices.retain(|d| d.conn != me);
                        devices.is_empty()
                    }
                };
            if gone && let Some(t) = map.remove(&id) {
                ended.push((id, t));
            }
        }
    }
    for (id, t) in ended {
        let reason = AbortReason::ConnectionDropped;
        let mut notify: Vec<_> = t
            .recipient_sessions()
            .into_iter()
            .filter(|s| s.conn != me)
            .map(|s| (s, reason))
            .collect();
        if t.sender.conn != me {
            notify.push((t.sender.clone(), reason));
        }
        finish(shared, id, t, Some(reason), &notify).await;
    }
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
        for id in shared.transfers.stale(Instant::now(), idle) {
            abort_both(&shared, id, AbortReason::TimedOut).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str) -> SessionHandle {
        SessionHandle::for_test(1, user)
    }

    /// The idle rule with a clock the test moves: a transfer times out after exactly
    /// `transfer_idle_timeout` without a packet, and any packet starts the wait again.
    #[test]
    fn a_transfer_is_stale_once_idle_for_the_timeout_and_not_a_moment_before() {
        let transfers = Transfers::new(0);
        let start = Instant::now();
        let idle = Duration::from_secs(60);
        let id = TransferId(1);
        transfers.lock().insert(
            id,
            Transfer {
                sender: session("alice"),
                recipient: UserId::new("bob").unwrap(),
                size: FileSize::new(10).unwrap(),
                name: "f".into(),
                phase: Phase::Streaming(session("bob")),
                relayed: 0,
                started_at: Timestamp(0),
                last_activity: start,
                ended: CancellationToken::new(),
            },
        );
        let almost = start + idle - Duration::from_millis(1);
        assert!(transfers.stale(almost, idle).is_empty());
        assert_eq!(transfers.stale(start + idle, idle), [id]);
        // A chunk at `almost` (what `on_chunk` records) starts the wait again.
        if let Some(t) = transfers.lock().get_mut(&id) {
            t.last_activity = almost;
        }
        assert!(transfers.stale(start + idle, idle).is_empty());
        assert_eq!(transfers.stale(almost + idle, idle), [id]);
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
}
