//! The registry of online sessions, keyed by user and device, and their outbound queues.
//!
//! Each logged-in connection registers a [`SessionHandle`]. Anything addressed to a user
//! is pushed into the queues of that user's sessions without waiting, so the queue is
//! bounded without ever holding a sender back. A stored message that finds the queue
//! full is not lost and does not cost the recipient its session: the session falls
//! *behind*, takes no more messages into its queue, and its writer, once it has written
//! what is queued, reads what it missed from the store (where every message already is)
//! and goes on live. Only a packet that is not stored (an answer, a notice) finding the
//! queue full ends the session. File chunks travel in a second, small queue so that a
//! transfer waits for a slow recipient instead of filling the message queue.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vcom_protocol::{DeviceId, ServerPacket, Timestamp, UserId};
use vcom_store::MessageId;

/// One item for a session's writer.
///
/// Small on purpose (three words): a session's queue allocates its slots in blocks of
/// 32 when it is created, so the size of an item is paid by every idle connection. A
/// message's packet is shared by all the sessions it goes to.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A packet to write.
    Packet(Box<ServerPacket>),
    /// A stored message (264/265): once written, the device has received it.
    Message {
        id: MessageId,
        packet: Arc<ServerPacket>,
    },
    /// Nothing to write: wakes the writer of a session that fell behind, so it reads
    /// from the store what its queue could not take.
    CatchUp,
}

impl Outbound {
    /// A packet to write.
    pub(crate) fn packet(packet: impl Into<ServerPacket>) -> Outbound {
        Outbound::Packet(Box::new(packet.into()))
    }
}

/// A logged-in session as the rest of the server sees it: one allocation shared by the
/// registry, the connection's reader and writer, and any transfer it is part of, so a
/// copy is a reference count (a file's relay takes one per chunk).
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle(Arc<Session>);

impl SessionHandle {
    pub(crate) fn new(session: Session) -> SessionHandle {
        SessionHandle(Arc::new(session))
    }
}

impl std::ops::Deref for SessionHandle {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}

/// What the server knows of a logged-in session, and its queues.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) conn: u64,
    pub(crate) user: UserId,
    pub(crate) device: DeviceId,
    pub(crate) addr: SocketAddr,
    pub(crate) since: Timestamp,
    pub(crate) tx: mpsc::Sender<Outbound>,
    /// File data (273) and completions (274) for this session as a recipient.
    /// Boxed, for the same reason as [`Outbound`].
    pub(crate) chunks: mpsc::Sender<Box<ServerPacket>>,
    /// Cancelled to disconnect the session.
    pub(crate) kill: CancellationToken,
    /// Whether the client negotiated the extension set (`vcom/1+ext`): it is told each
    /// message's sequence number and confirms what it stored with receipts.
    pub(crate) ext: bool,
    /// A stored message found the queue full: messages are no longer queued, and the
    /// writer reads them from the store once the queue is empty (see the module).
    pub(crate) behind: AtomicBool,
}

impl SessionHandle {
    /// Queues a packet that is not stored without waiting; a full queue disconnects the
    /// session (the client is not reading, and the packet cannot be fetched later).
    ///
    /// Once the session is ended nothing more is queued.
    pub(crate) fn push(&self, item: Outbound) -> bool {
        if self.kill.is_cancelled() {
            return false;
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    user = %self.user, device = %self.device, addr = %self.addr,
                    "client is not reading (outbound queue full): disconnecting"
                );
                self.kill.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a stored message without waiting, unless the session is behind. A full
    /// queue puts it behind: this message and every later one stay in the store for the
    /// writer to read once the queue is empty. Nothing later is queued while it is
    /// behind, so the writer never writes (and so never records as received) a message
    /// past one it has not written.
    fn push_stored(&self, id: MessageId, packet: &Arc<ServerPacket>) {
        if self.kill.is_cancelled() || self.behind.load(Ordering::Acquire) {
            return;
        }
        let message = Outbound::Message {
            id,
            packet: Arc::clone(packet),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(message) {
            tracing::info!(
                user = %self.user, device = %self.device, addr = %self.addr,
                "client is behind on its messages (outbound queue full): it will read them \
                 from the store"
            );
            self.behind.store(true, Ordering::Release);
            // If the writer emptied the queue in between, this wakes it; if the queue is
            // still full, the writer sees the flag once it has written what is queued.
            let _ = self.tx.try_send(Outbound::CatchUp);
        }
    }
}

impl SessionHandle {
    /// Makes the writer read from the store what this session has not received: a
    /// cluster node's way of delivering (see `cluster`). Never waits; a full queue
    /// already holds a wake-up or will be emptied before the writer looks at the flag.
    pub(crate) fn catch_up(&self) {
        if self.kill.is_cancelled() {
            return;
        }
        self.behind.store(true, Ordering::Release);
        let _ = self.tx.try_send(Outbound::CatchUp);
    }
}

#[cfg(test)]
impl SessionHandle {
    /// A session of `user` (device 1, from 127.0.0.1) whose queues nobody reads.
    pub(crate) fn for_test(conn: u64, user: &str) -> SessionHandle {
        let (tx, _) = mpsc::channel(1);
        SessionHandle::with_queue_for_test(conn, user, tx)
    }

    /// Like [`SessionHandle::for_test`], with `tx` as its outbound queue.
    pub(crate) fn with_queue_for_test(
        conn: u64,
        user: &str,
        tx: mpsc::Sender<Outbound>,
    ) -> SessionHandle {
        let (chunks, _) = mpsc::channel(1);
        SessionHandle::new(Session {
            conn,
            user: UserId::new(user).unwrap_or_else(|e| panic!("{user}: {e}")),
            device: DeviceId(1),
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            since: Timestamp(0),
            tx,
            chunks,
            kill: CancellationToken::new(),
            ext: false,
            behind: AtomicBool::new(false),
        })
    }
}

#[derive(Debug, Default)]
struct Sessions {
    by_user: HashMap<UserId, Vec<SessionHandle>>,
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
    /// How many times each user's key was reset while this server runs (users never
    /// reset are absent): see [`Registry::key_resets`].
    key_resets: HashMap<String, u64>,
}

impl Sessions {
    fn count_in(&mut self, ip: IpAddr) {
        self.total += 1;
        *self.per_ip.entry(ip).or_default() += 1;
    }

    fn count_out(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// Every online session.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Arc<Mutex<Sessions>>,
    next_conn: AtomicU64,
}

/// A place taken in the connection limits by a login that passed the capacity check:
/// it counts as a session from the check on, so logins running at once cannot pass the
/// limits together. Given back when dropped, unless the session was registered with it.
#[derive(Debug)]
pub(crate) struct Reservation {
    sessions: Arc<Mutex<Sessions>>,
    ip: IpAddr,
    held: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            lock(&self.sessions).count_out(self.ip);
        }
    }
}

fn lock(sessions: &Mutex<Sessions>) -> std::sync::MutexGuard<'_, Sessions> {
    // Every critical section leaves the maps consistent before anything that could
    // panic, so a poisoned lock still holds usable data.
    sessions.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// A fresh connection number, for logs and for telling sessions apart.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    /// Takes a place for a login from `ip` unless the server already holds
    /// `max_total` sessions, or `max_per_ip` from that address (0: no per-address cap).
    pub(crate) fn reserve(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Option<Reservation> {
        let mut inner = self.lock();
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if inner.total >= max_total || (max_per_ip > 0 && from_ip >= max_per_ip) {
            return None;
        }
        inner.count_in(ip);
        Some(Reservation {
            sessions: self.sessions.clone(),
            ip,
            held: true,
        })
    }

    /// How many times the key of `user` has been reset ([`Registry::end_user`]) while
    /// this server runs.
    ///
    /// A login reads this before it checks the key against the store and hands it to
    /// [`Registry::insert`]: a reset that lands between that check and the session's
    /// registration would otherwise miss the session, and leave a key that is no longer
    /// bound connected.
    pub(crate) fn key_resets(&self, user: &str) -> u64 {
        self.lock().key_resets.get(user).copied().unwrap_or(0)
    }

    /// Adds a session whose login read `key_resets` ([`Registry::key_resets`]) before
    /// checking its key.
    ///
    /// If the user's key has been reset since, the key this login proved may no longer
    /// be bound: the session is disconnected at once (still registered, so that it
    /// leaves like any other) and the client logs in again against the new binding.
    ///
    /// A device may hold several sessions at once (say `vcom listen` in one terminal and
    /// a one-shot `vcom send` of the same profile in another): each gets what is
    /// addressed to the user. A session whose peer vanished is found by TCP keep-alive
    /// or the write timeout, not by a newer login.
    pub(crate) fn insert(&self, handle: SessionHandle, key_resets: u64, mut place: Reservation) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let resets_now = inner
            .key_resets
            .get(handle.user.as_str())
            .copied()
            .unwrap_or(0);
        if resets_now != key_resets {
            tracing::info!(
                user = %handle.user, device = %handle.device, addr = %handle.addr,
                "the user's key was reset during this login: disconnecting"
            );
            handle.kill.cancel();
        }
        // The place counted since the login's capacity check is now this session's; it
        // is counted out when the session is removed.
        if place.ip != handle.addr.ip() {
            inner.count_out(place.ip);
            inner.count_in(handle.addr.ip());
        }
        place.held = false;
        inner
            .by_user
            .entry(handle.user.clone())
            .or_default()
            .push(handle);
    }

    /// Removes the session with this connection number, if still registered.
    pub(crate) fn remove(&self, user: &UserId, conn: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(sessions) = inner.by_user.get_mut(user) else {
            return;
        };
        let mut removed = None;
        sessions.retain(|s| {
            if s.conn == conn {
                removed = Some(s.addr.ip());
                false
            } else {
                true
            }
        });
        if sessions.is_empty() {
            inner.by_user.remove(user);
        }
        if let Some(ip) = removed {
            inner.count_out(ip);
        }
    }

    /// Queues a stored message for every session of each recipient but the connection
    /// `except` (the one it came from), under one lock and without cloning handles.
    /// Pushing never waits (see [`SessionHandle::push`]).
    pub(crate) fn push_message<'u>(
        &self,
        recipients: impl IntoIterator<Item = &'u UserId>,
        except: u64,
        id: MessageId,
        packet: &Arc<ServerPacket>,
    ) {
        let guard = self.lock();
        for user in recipients {
            let Some(sessions) = guard.by_user.get(user) else {
                continue;
            };
            for session in sessions.iter().filter(|s| s.conn != except) {
                session.push_stored(id, packet);
            }
        }
    }

    /// Makes every session of each user but the connection `except` read its messages
    /// from the store ([`SessionHandle::catch_up`]), under one lock.
    pub(crate) fn catch_up(&self, users: &[UserId], except: u64) {
        let guard = self.lock();
        for user in users {
            let Some(sessions) = guard.by_user.get(user) else {
                continue;
            };
            for session in sessions.iter().filter(|s| s.conn != except) {
                session.catch_up();
            }
        }
    }

    /// Disconnects every session of `user`, and any of its logins that checked the key
    /// before now (see [`Registry::key_resets`]); returns how many sessions it ended
    /// (sessions already on their way out are not counted).
    ///
    /// Called after the user's key binding changed in the store: a session proved only
    /// the key bound when it logged in, so it must not outlive that binding.
    pub(crate) fn end_user(&self, user: &UserId) -> usize {
        let mut guard = self.lock();
        *guard
            .key_resets
            .entry(user.as_str().to_owned())
            .or_default() += 1;
        let sessions = guard.by_user.get(user).map_or(&[][..], Vec::as_slice);
        let mut ended = 0;
        for session in sessions.iter().filter(|s| !s.kill.is_cancelled()) {
            tracing::info!(
                user = %session.user, device = %session.device, addr = %session.addr,
                "the user's key was reset: disconnecting"
            );
            session.kill.cancel();
            ended += 1;
        }
        ended
    }

    /// Ends the online sessions of these devices of the user (retired devices).
    pub(crate) fn end_devices(&self, user: &UserId, devices: &[DeviceId]) {
        let guard = self.lock();
        let sessions = guard.by_user.get(user).map_or(&[][..], Vec::as_slice);
        for session in sessions.iter().filter(|s| devices.contains(&s.device)) {
            tracing::info!(
                user = %session.user, device = %session.device, addr = %session.addr,
                "the device was retired: disconnecting"
            );
            session.kill.cancel();
        }
    }

    /// The user's online sessions.
    pub(crate) fn of_user(&self, user: &UserId) -> Vec<SessionHandle> {
        self.lock().by_user.get(user).cloned().unwrap_or_default()
    }

    /// Every online session.
    pub(crate) fn all(&self) -> Vec<SessionHandle> {
        self.lock().by_user.values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(registry: &Registry, handle: &SessionHandle) -> Reservation {
        registry
            .reserve(handle.addr.ip(), usize::MAX, 0)
            .expect("no limit in these tests")
    }

    fn handle(registry: &Registry, user: &str) -> SessionHandle {
        SessionHandle::for_test(registry.next_conn(), user)
    }

    /// A stored message that finds the queue full puts the session behind: it stays
    /// connected, nothing later is queued (the writer reads it all from the store), and
    /// the writer is woken once there is room.
    #[test]
    fn a_full_queue_puts_the_session_behind_and_later_messages_stay_in_the_store() {
        let registry = Registry::default();
        let (tx, mut rx) = mpsc::channel(1);
        let session = SessionHandle::with_queue_for_test(registry.next_conn(), "bob", tx);
        let packet = Arc::new(ServerPacket::from(vcom_protocol::Pong { nonce: 0 }));
        session.push_stored(MessageId(1), &packet);
        session.push_stored(MessageId(2), &packet);
        assert!(session.behind.load(Ordering::Acquire));
        assert!(
            !session.kill.is_cancelled(),
            "a session behind stays connected"
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Outbound::Message {
                id: MessageId(1),
                ..
            })
        ));
        session.push_stored(MessageId(3), &packet);
        assert!(
            rx.try_recv().is_err(),
            "room again, but nothing is queued behind a message that was not"
        );
    }

    #[test]
    fn a_full_queue_for_a_packet_not_stored_ends_the_session_and_nothing_later_is_queued() {
        let registry = Registry::default();
        let (tx, mut rx) = mpsc::channel(1);
        let session = SessionHandle::with_queue_for_test(registry.next_conn(), "bob", tx);
        let packet = |nonce| Outbound::packet(vcom_protocol::Pong { nonce });
        assert!(session.push(packet(1)));
        assert!(!session.push(packet(2)), "the queue is full");
        assert!(session.kill.is_cancelled());
        assert!(rx.try_recv().is_ok());
        assert!(
            !session.push(packet(3)),
            "room again, but the session has ended: a later message must not follow one \
             that was refused"
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn ending_a_user_disconnects_its_sessions_only_and_counts_them() {
        let registry = Registry::default();
        let alice = [handle(&registry, "alice"), handle(&registry, "alice")];
        let bob = handle(&registry, "bob");
        for h in alice.iter().chain([&bob]) {
            registry.insert(h.clone(), 0, place(&registry, h));
        }
        assert_eq!(registry.end_user(&alice[0].user), 2);
        assert!(alice.iter().all(|h| h.kill.is_cancelled()));
        assert!(!bob.kill.is_cancelled());
        assert_eq!(
            registry.end_user(&alice[0].user),
            0,
            "sessions already ending are not counted again"
        );
    }

    #[test]
    fn a_login_that_checked_its_key_before_a_reset_is_disconnected_when_it_registers() {
        let registry = Registry::default();
        let raced = handle(&registry, "alice");
        let before = registry.key_resets("alice");
        // The reset lands between the login's key check and its registration.
        assert_eq!(registry.end_user(&raced.user), 0);
        registry.insert(raced.clone(), before, place(&registry, &raced));
        assert!(raced.kill.is_cancelled());

        let after = handle(&registry, "alice");
        registry.insert(
            after.clone(),
            registry.key_resets("alice"),
            place(&registry, &after),
        );
        assert!(
            !after.kill.is_cancelled(),
            "a login checked against the new binding stays"
        );
        let other = handle(&registry, "bob");
        registry.insert(other.clone(), before, place(&registry, &other));
        assert!(!other.kill.is_cancelled(), "other users are not affected");
    }

    #[test]
    fn places_count_from_the_capacity_check_and_come_back_when_a_login_fails() {
        let registry = Registry::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = registry.reserve(ip, 2, 0).unwrap();
        let _second = registry.reserve(ip, 2, 0).unwrap();
        assert!(
            registry.reserve(ip, 2, 0).is_none(),
            "two logins hold both places"
        );
        drop(first);
        assert!(
            registry.reserve(ip, 2, 0).is_some(),
            "a failed login gave its back"
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let _a = registry.reserve(other, 100, 1).unwrap();
        assert!(registry.reserve(other, 100, 1).is_none(), "per address too");
    }
}
