//! Persistence for the vCom server: the [`Store`] trait and its SQLite backend.
//!
//! The server talks only to [`Store`]; [`SqliteStore`] is the embedded default (rusqlite,
//! bundled SQLite, so a fresh machine needs nothing installed). [`PostgresStore`]
//! implements the same trait on a PostgreSQL database shared by several nodes, and the
//! server does not change.
//!
//! **Architecture invariant:** this is the only crate that speaks SQL for the server.
//! It never sees a socket and never decides policy: the server computes who receives a
//! message, and the store remembers it.
//!
//! # Layout
//! - `lib.rs`: the [`Store`] trait and the records it takes and returns.
//! - `sqlite`: [`SqliteStore`], schema migrations, the writer thread with group commit.
//! - `postgres`: [`PostgresStore`], the same trait on a PostgreSQL database that several
//!   server nodes share: versioned migrations, a connection pool, a message writer task
//!   with group commit.

use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use vcom_protocol::{DeviceId, GroupId, MessageKind, Timestamp, TransferId, UserId};

mod postgres;
mod quota;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::{
    BackupReport, SqliteStore, StoreConfig, Synchronous, WriteStats, check_backup, restore,
};

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server reported an error, or the connection to it failed. The
    /// message holds the whole cause (one line, so it is not a `source`).
    #[error("PostgreSQL: {}", postgres::describe(.0))]
    Postgres(tokio_postgres::Error),
    /// No connection to the PostgreSQL server could be had (the pool timed out, or a
    /// new connection could not be made).
    #[error("PostgreSQL connection: {0}")]
    Connection(String),
    /// The database was written by a newer version of vCom than this one.
    #[error("the database schema is version {found}, newer than this program's {supported}")]
    NewerSchema {
        /// The version found in the file.
        found: usize,
        /// The newest version this program knows.
        supported: usize,
    },
    /// Applying schema migrations failed.
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// A named thing does not exist (an unknown group, user or device).
    #[error("{0} not found")]
    NotFound(String),
    /// The store has been shut down, or its writer thread is gone.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be turned back into a record (a damaged row).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The change contradicts what is stored: `bind_key` on a user already bound to a
    /// different key (two first logins raced; the first one won).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A backup or restore could not be made (the message names the file and why).
    #[error("backup: {0}")]
    Backup(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// SHA-256 of a client certificate's SubjectPublicKeyInfo: the key a user is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(pub [u8; 32]);

impl KeyFingerprint {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A user the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The identifier.
    pub id: UserId,
    /// The key the identifier is bound to; `None` until bound, or after a reset.
    pub key: Option<KeyFingerprint>,
    /// When the user first logged in.
    pub created_at: Timestamp,
}

/// A device issued to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device identifier (positive, unique per server).
    pub id: DeviceId,
    /// Whose device it is.
    pub user: UserId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it last logged in.
    pub last_seen: Timestamp,
}

/// Which of a user's two lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// The friend list.
    Friends,
    /// The block list.
    Blocks,
}

/// One stored list: its entries in order and the time of its last change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserList {
    /// Milliseconds of the last change; [`Timestamp::NEVER`] when never set.
    pub timestamp: Timestamp,
    /// The entries, in the order the client uploaded them.
    pub entries: Vec<UserId>,
}

/// Both lists of a user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserLists {
    /// The friend list.
    pub friends: UserList,
    /// The block list.
    pub blocks: UserList,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its identifier (positive, unique per server).
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// The user who created it and alone may change it; `None` for a group the
    /// administrator made (and alone changes).
    pub owner: Option<UserId>,
    /// Its members, ordered by identifier.
    pub members: Vec<UserId>,
}

/// The identifier the store gives a message, assigned in the commit: it only grows, in
/// the order messages are committed. It is also the message's sequence number: a
/// device's cursor says "has every message through this one".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub i64);

/// A message to store, addressed to the users the server computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Who sent it.
    pub sender: UserId,
    /// The device it came from: it is never delivered back to that device.
    pub origin_device: DeviceId,
    /// `None` for a direct message, the group for a group message.
    pub group: Option<GroupId>,
    /// For a direct message, the users whose inbox it goes to. A group message is
    /// stored once and read by the group's members (from when they joined, skipping
    /// senders they block): the store ignores this field for it.
    pub recipients: Vec<UserId>,
    /// The client message id the origin device named it with (516), if any: a second
    /// message with the same tag from the same device is not stored again.
    pub tag: Option<i64>,
    /// The timestamp the sender gave (sent back as the mailing date).
    pub sent_at: Timestamp,
    /// The server's receive time (for retention).
    pub received_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The body, stored byte-exact.
    pub data: Bytes,
}

/// What [`Store::store_message`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The message's identifier; `None` when every recipient refused it (nothing was
    /// stored).
    pub id: Option<MessageId>,
    /// Recipients whose inbox already held the most undelivered messages the store
    /// keeps (`pending_cap_per_user`): the message is not stored for them. Messages
    /// already accepted are never dropped to make room.
    pub refused: Vec<UserId>,
    /// The origin device had already stored a message with this tag: `id` is that
    /// message, and nothing new was stored (nothing is to be relayed again).
    pub duplicate: bool,
}

/// Runs once a message's fate is known (see [`Store::store_message`]).
pub type OnCommit = Box<dyn FnOnce(&StoreResult<Stored>) + Send>;

/// A stored message as one device should receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// The store's identifier: the message's sequence number.
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// `None` for a direct message, the group for a group message.
    pub group: Option<GroupId>,
    /// The sender's timestamp.
    pub sent_at: Timestamp,
    /// Text or image.
    pub kind: MessageKind,
    /// The body.
    pub data: Bytes,
    /// True when another device of the same user already holds it (its cursor is at
    /// or past this message).
    pub read: bool,
}

/// What a successful login changed, from [`Store::record_login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRecord {
    /// The user is registered (if new), bound to the key (if it had none), and the device
    /// is issued (if new) and marked as seen.
    Recorded {
        /// The device (newly issued, or the one given).
        device: DeviceId,
        /// Whether the device was issued by this login.
        new_device: bool,
        /// The user's devices this login retired to stay within the store's device cap
        /// (least recently seen first); their identifiers are refused from now on.
        retired: Vec<DeviceId>,
    },
    /// The user is bound to another key (two first logins raced with different keys;
    /// the first won). Nothing was changed.
    KeyConflict,
    /// The invitation is unknown, used up or expired, or the user is not new. Nothing
    /// was changed.
    InviteRefused,
}

/// The SHA-256 of an invitation token: the store never holds a token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InviteHash(pub [u8; 32]);

/// An invitation, as the administrator lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Its token's SHA-256.
    pub hash: InviteHash,
    /// New users it may still admit.
    pub uses_left: u32,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was made.
    pub created_at: Timestamp,
}

/// What the server's message path keeps in memory, read in one go at start so that no
/// message waits on a store read: every known user, every non-empty block list, every
/// group with its members.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directory {
    /// Every known user, ordered by identifier.
    pub users: Vec<UserId>,
    /// `(owner, blocked users)` for every non-empty block list.
    pub blocks: Vec<(UserId, Vec<UserId>)>,
    /// Every group, ordered by identifier.
    pub groups: Vec<Group>,
}

/// Which server policy list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyList {
    /// Refused logins (258 codes 0 and 1).
    Blacklist,
    /// When not empty, only these may log in (258 code 2).
    Whitelist,
}

/// One policy entry: a user identifier, or an IP address or CIDR block as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyEntry {
    /// A user identifier.
    User(String),
    /// An IP address or CIDR block, e.g. `10.0.0.0/8` (validated by the server).
    Ip(String),
}

/// All policy entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Blacklisted users and addresses.
    pub blacklist: Vec<PolicyEntry>,
    /// Whitelisted users and addresses.
    pub whitelist: Vec<PolicyEntry>,
}

/// How a file transfer ended, for the transfer log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// The transfer identifier.
    pub id: TransferId,
    /// Who sent the file.
    pub sender: UserId,
    /// Who it was for.
    pub recipient: UserId,
    /// The announced size.
    pub size: i64,
    /// The file name as announced.
    pub name: String,
    /// Bytes relayed before the end.
    pub bytes_relayed: i64,
    /// When it was requested.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Timestamp,
    /// `None` when completed, else the 270 reason code.
    pub abort_reason: Option<i32>,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Messages deleted.
    pub messages_deleted: u64,
    /// Transfer-log rows deleted.
    pub transfers_deleted: u64,
}

/// Row counts, for `vcom-server admin stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Known users.
    pub users: u64,
    /// Issued devices.
    pub devices: u64,
    /// Groups.
    pub groups: u64,
    /// Stored messages.
    pub messages: u64,
    /// (direct message, recipient user) pairs no device of that user holds yet.
    pub pending_deliveries: u64,
    /// Logged file transfers.
    pub transfers: u64,
}

/// Everything the server remembers.
///
/// Every method is async and never blocks the caller's runtime. A write method returns
/// only once its change is durable (committed to disk); a read sees every write that
/// has returned. Implementations are cheap to clone and shared between tasks.
pub trait Store: Clone + Send + Sync + 'static {
    // ---- users and keys -------------------------------------------------------------

    /// The user with this identifier, if known.
    fn user(&self, user: &UserId) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;
    /// Creates the user if unknown (binding `key` if given) and returns the record; an
    /// existing user is returned unchanged.
    fn register_user(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<UserRecord>> + Send;
    /// Binds `key` to a known user that has none. `NotFound` for an unknown user.
    fn bind_key(
        &self,
        user: &UserId,
        key: KeyFingerprint,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records a login that passed every check, in one transaction: registers the user
    /// if unknown, binds `key` if the user has none, issues a device for
    /// [`DeviceId::NEW`], and marks the device as seen now.
    ///
    /// With `invite` (the SHA-256 of an invitation token), the user must be new and the
    /// invitation valid: one of its uses is spent in the same transaction, or nothing is
    /// written and the answer is [`LoginRecord::InviteRefused`].
    fn record_login(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        device: DeviceId,
        now: Timestamp,
        invite: Option<InviteHash>,
    ) -> impl Future<Output = StoreResult<LoginRecord>> + Send;
    /// Stores an invitation: its token's SHA-256, how many new users it may admit, and
    /// until when (`None`: no end).
    fn create_invite(
        &self,
        invite: InviteHash,
        uses: u32,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The invitations with uses left that have not expired at `now`.
    fn invites(&self, now: Timestamp) -> impl Future<Output = StoreResult<Vec<Invite>>> + Send;
    /// Replaces the user's key binding, whatever it was: with `key`, so that only the
    /// holder of that key can log in next (the administrator binds a key the user
    /// handed over, leaving no window for anyone else), or with none, so that the next
    /// login binds its own. False if the user is unknown.
    fn reset_key(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Every known user, ordered by identifier.
    fn users(&self) -> impl Future<Output = StoreResult<Vec<UserRecord>>> + Send;
    /// Deletes the user and everything of theirs: devices (and their cursors and
    /// message tags), lists, group memberships, and the messages waiting for them.
    /// Messages they sent stay with their recipients. False for an unknown user.
    fn remove_user(&self, user: &UserId) -> impl Future<Output = StoreResult<bool>> + Send;

    // ---- devices --------------------------------------------------------------------

    /// Issues a new device identifier to a known user: positive, never issued before.
    ///
    /// A new device receives the messages stored after this call, and older ones only
    /// while no device of the user has received them yet.
    fn issue_device(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<DeviceId>> + Send;
    /// The user a device was issued to, if any.
    fn device_owner(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = StoreResult<Option<UserId>>> + Send;
    /// Records a login of the device.
    fn touch_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The user's devices, ordered by identifier.
    fn devices(&self, user: &UserId)
    -> impl Future<Output = StoreResult<Vec<DeviceRecord>>> + Send;

    // ---- friend and block lists -----------------------------------------------------

    /// Both lists of the user (empty with timestamp 0 when never set).
    fn lists(&self, user: &UserId) -> impl Future<Output = StoreResult<UserLists>> + Send;
    /// Replaces one list and returns its new timestamp, `max(now, previous + 1)`.
    fn replace_list(
        &self,
        user: &UserId,
        kind: ListKind,
        entries: Vec<UserId>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Timestamp>> + Send;
    /// Everything the message path keeps in memory (see [`Directory`]), in one read.
    fn directory(&self) -> impl Future<Output = StoreResult<Directory>> + Send;
    /// Whether `owner`'s block list holds `other`.
    fn is_blocked(
        &self,
        owner: &UserId,
        other: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ---- groups ---------------------------------------------------------------------

    /// Creates a group of the administrator's (no owner) and returns its new identifier
    /// (positive).
    fn create_group(
        &self,
        name: &str,
        members: &[UserId],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<GroupId>> + Send;
    /// Creates a group owned by `owner` (a client-side group) and returns its new
    /// identifier (positive). `members` are all its members, the owner included: the
    /// store adds no one itself. The server checks its limits before.
    fn create_owned_group(
        &self,
        owner: &UserId,
        name: &str,
        members: &[UserId],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<GroupId>> + Send;
    /// Renames a group. `NotFound` for an unknown group.
    fn rename_group(
        &self,
        group: GroupId,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Makes `owner` the group's owner (when its owner left, the server hands it on).
    /// `NotFound` for an unknown group.
    fn set_group_owner(
        &self,
        group: GroupId,
        owner: &UserId,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes a group with its members (the last member of a user's group left); its
    /// messages go with retention. False for an unknown group.
    fn delete_group(&self, group: GroupId) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Adds a member; false if already one. `NotFound` for an unknown group.
    fn add_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Removes a member; false if not one. `NotFound` for an unknown group.
    fn remove_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// One group, if it exists.
    fn group(&self, group: GroupId) -> impl Future<Output = StoreResult<Option<Group>>> + Send;
    /// Every group, ordered by identifier.
    fn groups(&self) -> impl Future<Output = StoreResult<Vec<Group>>> + Send;

    // ---- messages -------------------------------------------------------------------

    /// Stores a message durably (for a direct message, in every recipient inbox with
    /// room); only then may the server relay it, and only to those.
    ///
    /// Messages are committed **in the order of the calls** to this method: the call
    /// itself queues the message, whenever its future is first polled.
    ///
    /// `on_commit` runs exactly once with the outcome, once it is known: after the
    /// commit that made the message durable (or with the error), **in the order the
    /// messages were committed**, and before the returned future resolves. The server
    /// relays the message from it, so that every device receives messages in sequence
    /// order. It runs on the store's own thread and must not block.
    fn store_message(
        &self,
        message: NewMessage,
        on_commit: OnCommit,
    ) -> impl Future<Output = StoreResult<Stored>> + Send + 'static;
    /// Records that `device` holds every message through `through`: its cursor moves
    /// up (never down). One small write, however many messages it covers.
    fn advance_cursor(
        &self,
        device: DeviceId,
        through: MessageId,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Up to `limit` messages that `device` of `user` should still receive (above its
    /// cursor), oldest first, with identifiers above `after` (to page through a long
    /// backlog), and no more than `max_bytes` of message data unless the first message
    /// alone is larger (a page always holds at least one message when one waits).
    fn pending(
        &self,
        user: &UserId,
        device: DeviceId,
        after: Option<MessageId>,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = StoreResult<Vec<PendingMessage>>> + Send;

    // ---- policy ---------------------------------------------------------------------

    /// Every blacklist and whitelist entry.
    fn policy(&self) -> impl Future<Output = StoreResult<Policy>> + Send;
    /// Adds an entry; false if it was there already.
    fn add_policy(
        &self,
        list: PolicyList,
        entry: PolicyEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Removes an entry; false if it was not there.
    fn remove_policy(
        &self,
        list: PolicyList,
        entry: PolicyEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ---- file transfers -------------------------------------------------------------

    /// Appends a finished transfer to the log (never its data).
    fn log_transfer(&self, record: TransferRecord) -> impl Future<Output = StoreResult<()>> + Send;
    /// The highest transfer identifier ever logged (0 if none), so identifiers stay
    /// unique across restarts.
    fn max_transfer_id(&self) -> impl Future<Output = StoreResult<i32>> + Send;
    /// The most recent `limit` logged transfers, newest first.
    fn transfers(
        &self,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<TransferRecord>>> + Send;

    // ---- housekeeping ---------------------------------------------------------------

    /// Applies the retention rules of the store's configuration as of `now`.
    fn prune(&self, now: Timestamp) -> impl Future<Output = StoreResult<PruneReport>> + Send;
    /// Row counts.
    fn stats(&self) -> impl Future<Output = StoreResult<StoreStats>> + Send;
    /// Writes a consistent copy of everything stored to `to` (a new file) while the
    /// store keeps serving.
    fn backup(&self, to: PathBuf) -> impl Future<Output = StoreResult<BackupReport>> + Send;
}
