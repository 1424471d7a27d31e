//! The administrator's commands: in process through [`AdminHandle`], and for the
//! `vcom-server admin` program through the Unix socket `DATA_DIR/admin.sock` (mode 0600,
//! so only the server's own user can use it).
//!
//! The socket speaks one JSON [`AdminRequest`] per line and answers one JSON
//! [`AdminResponse`] per line. Every change is written to the store first, so it
//! survives a restart, and takes effect at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use vcom_protocol::{Broadcast, GroupId, ServerPacket, UserId};
use vcom_store::{KeyFingerprint, PolicyEntry, PolicyList, Store, StoreError};

use crate::cluster::Notice;
use crate::policy::{PolicyCache, parse_net};
use crate::server::{ServerError, Shared};
use crate::session::Outbound;
use crate::stats::Stats;

/// Which policy list a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    /// The blacklist.
    Blacklist,
    /// The whitelist.
    Whitelist,
}

/// What a policy entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A user identifier.
    User,
    /// An IP address or CIDR block.
    Ip,
}

/// One administrator command: the `vcom-server admin` program parses its command line
/// into this very type (it derives the parser), sends it over the socket as JSON, and
/// the server runs it. Each is answered with an [`AdminReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Send TEXT to every online device.
    Broadcast {
        /// The message.
        text: String,
    },
    /// Manage the blacklist.
    Blacklist {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: PolicyAction,
    },
    /// Manage the whitelist (enforced while it has at least one entry).
    Whitelist {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: PolicyAction,
    },
    /// Manage groups.
    Group {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: GroupAction,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: UserAction,
    },
    /// Invitation tokens, for `registration = "token"`.
    Invite {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: InviteAction,
    },
    /// List online sessions.
    Sessions,
    /// Show counters and store sizes.
    Stats,
    /// Write a consistent copy of the database to FILE (which must not exist) while the
    /// server keeps serving; `vcom-server restore FILE` puts it back.
    Backup {
        /// The file to write, on the server's machine (absolute in a request; the
        /// program makes a relative one absolute from where it runs).
        file: PathBuf,
    },
}

/// A blacklist or whitelist command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyAction {
    /// Add an entry.
    Add {
        /// What the entry names.
        #[arg(value_enum)]
        kind: EntryKind,
        /// A user identifier, or an IP address or CIDR block.
        value: String,
    },
    /// Remove an entry.
    Remove {
        /// What the entry names.
        #[arg(value_enum)]
        kind: EntryKind,
        /// A user identifier, or an IP address or CIDR block.
        value: String,
    },
    /// List the entries.
    List,
}

/// A group command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum GroupAction {
    /// Create a group and print its id.
    Create {
        /// Its name.
        name: String,
        /// A first member (repeat for more).
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
    },
    /// Add USER to group ID.
    Add {
        /// The group.
        id: i32,
        /// The user.
        user: String,
    },
    /// Remove USER from group ID.
    Remove {
        /// The group.
        id: i32,
        /// The user.
        user: String,
    },
    /// List groups and members.
    List,
    /// Show one group: its name and members, and who of them is online.
    Show {
        /// The group.
        id: i32,
    },
}

/// A user command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum UserAction {
    /// List known users.
    List,
    /// Show one user: key, devices, groups, online sessions and waiting messages.
    Show {
        /// The user.
        user: String,
    },
    /// Create USER ahead of its first login (with `registration = "closed"`, only known
    /// users may log in), bound to a key with --fingerprint.
    Add {
        /// The user.
        user: String,
        /// Bind this key: the SHA-256 that `vcom identity fingerprint` prints on the
        /// user's device (64 hex digits, colons between byte pairs allowed).
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
    },
    /// Delete USER and everything of theirs (devices, lists, group memberships, the
    /// messages waiting for them), ending their sessions. Messages they sent stay with
    /// their recipients.
    Remove {
        /// The user.
        user: String,
    },
    /// Replace USER's key and end USER's online sessions: the next login binds a new
    /// key, or with --fingerprint only that key can log in.
    ResetKey {
        /// The user.
        user: String,
        /// Bind this key instead of leaving the user unbound: the SHA-256 that `vcom
        /// identity fingerprint` prints on the user's device (64 hex digits, colons
        /// between byte pairs allowed).
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
    },
}

/// An invitation command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum InviteAction {
    /// Make an invitation token and print it (it is shown only this once: the server
    /// keeps its SHA-256). A new user logs in with it in the password's place.
    Create {
        /// How many new users it may admit.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        uses: u32,
        /// How long it works: seconds, or a number with s, m, h, d or w (`7d`). No end
        /// without it.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<u64>,
    },
    /// List the invitations still usable (by the start of their hash; never a token).
    List,
}

/// A duration as `invite create --expires` takes it, in seconds: `3600`, `90s`, `30m`,
/// `12h`, `7d`, `2w`; at least a second, at most ten years.
fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let seconds_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h, d or w")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 3600, 30m, 12h or 7d)"))?;
    let seconds = n.saturating_mul(seconds_per);
    if !(1..=10 * 365 * 86_400).contains(&seconds) {
        return Err(format!("{text:?} is not between a second and ten years"));
    }
    Ok(seconds)
}

impl AdminRequest {
    /// The command's name, for logs (which never show a broadcast's text).
    pub fn name(&self) -> &'static str {
        match self {
            AdminRequest::Broadcast { .. } => "broadcast",
            AdminRequest::Blacklist { action } | AdminRequest::Whitelist { action } => match action
            {
                PolicyAction::Add { .. } => "policy-add",
                PolicyAction::Remove { .. } => "policy-remove",
                PolicyAction::List => "policy-list",
            },
            AdminRequest::Group { action } => match action {
                GroupAction::Create { .. } => "group-create",
                GroupAction::Add { .. } => "group-add",
                GroupAction::Remove { .. } => "group-remove",
                GroupAction::List => "group-list",
                GroupAction::Show { .. } => "group-show",
            },
            AdminRequest::User { action } => match action {
                UserAction::List => "user-list",
                UserAction::Show { .. } => "user-show",
                UserAction::Add { .. } => "user-add",
                UserAction::Remove { .. } => "user-remove",
                UserAction::ResetKey { .. } => "user-reset-key",
            },
            AdminRequest::Invite { action } => match action {
                InviteAction::Create { .. } => "invite-create",
                InviteAction::List => "invite-list",
            },
            AdminRequest::Sessions => "sessions",
            AdminRequest::Stats => "stats",
            AdminRequest::Backup { .. } => "backup",
        }
    }
}

/// A user as the administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// The identifier.
    pub user: String,
    /// The SHA-256 of the key bound to it, if any.
    pub key: Option<String>,
    /// How many sessions it has online.
    pub online: usize,
}

/// A device of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Its identifier.
    pub device: i32,
    /// When it was issued (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// Its last login (milliseconds since the Unix epoch).
    pub last_seen: i64,
    /// How many sessions it has online.
    pub online: usize,
}

/// One user in detail (`user show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDetail {
    /// The identifier.
    pub user: String,
    /// The SHA-256 of the key bound to it, if any.
    pub key: Option<String>,
    /// When it first logged in or was added (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// Its devices.
    pub devices: Vec<DeviceView>,
    /// The groups it is a member of.
    pub groups: Vec<i32>,
}

/// A group as the administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// Its identifier.
    pub id: i32,
    /// Its name.
    pub name: String,
    /// Its members, in order.
    pub members: Vec<String>,
    /// Those of them online now.
    pub online: Vec<String>,
}

/// An invitation as the administrator lists it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteView {
    /// The first 12 hex digits of its token's SHA-256.
    pub id: String,
    /// New users it may still admit.
    pub uses_left: u32,
    /// When it stops working (milliseconds since the Unix epoch), if ever.
    pub expires_at: Option<i64>,
    /// When it was made.
    pub created_at: i64,
}

/// An online session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The user.
    pub user: String,
    /// The device.
    pub device: i32,
    /// The client's address.
    pub addr: String,
    /// When it logged in (milliseconds since the Unix epoch).
    pub since: i64,
}

/// What a command did or found: the `vcom-server admin` program prints it as text, or
/// with `--json` as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum AdminReply {
    /// A broadcast went to this many devices.
    Broadcast {
        /// How many.
        devices: usize,
    },
    /// A policy entry was added or removed (`changed`: false when there was nothing to
    /// do).
    Policy {
        /// Which list.
        list: ListName,
        /// `add` or `remove`.
        action: String,
        /// The entry as stored.
        value: String,
        /// Whether the list changed.
        changed: bool,
    },
    /// A list's entries, as `user NAME` or `ip ADDRESS`.
    PolicyList {
        /// The entries.
        entries: Vec<String>,
    },
    /// A group was created.
    GroupCreated {
        /// Its identifier.
        id: i32,
    },
    /// A member was added to or removed from a group.
    GroupMember {
        /// The group.
        id: i32,
        /// The user.
        user: String,
        /// `add` or `remove`.
        action: String,
        /// Whether the membership changed.
        changed: bool,
    },
    /// Groups.
    Groups {
        /// Every group.
        groups: Vec<GroupView>,
    },
    /// One group.
    Group(GroupView),
    /// Users.
    Users {
        /// Every user.
        users: Vec<UserView>,
    },
    /// One user.
    User(UserDetail),
    /// A user was created.
    UserAdded {
        /// The user.
        user: String,
        /// The key it is bound to, if one was given.
        key: Option<String>,
    },
    /// A user was deleted.
    UserRemoved {
        /// The user.
        user: String,
        /// How many of its sessions were ended.
        sessions_ended: usize,
    },
    /// A user's key binding was replaced.
    KeyReset {
        /// The user.
        user: String,
        /// The key now bound, if one was given.
        key: Option<String>,
        /// How many of its sessions were ended.
        sessions_ended: usize,
    },
    /// An invitation was made.
    InviteCreated {
        /// The token: shown this once.
        token: String,
        /// How many new users it may admit.
        uses: u32,
        /// When it stops working (milliseconds since the Unix epoch), if ever.
        expires_at: Option<i64>,
    },
    /// The invitations still usable.
    Invites {
        /// Each, by the start of its token's SHA-256.
        invites: Vec<InviteView>,
    },
    /// Online sessions.
    Sessions {
        /// Each session, by user then device.
        sessions: Vec<SessionView>,
    },
    /// Counters and store sizes, by name.
    Stats {
        /// `(name, value)`, in a fixed order.
        counters: Vec<(String, u64)>,
    },
    /// A backup was written.
    Backup {
        /// Where.
        path: String,
        /// Its size in bytes.
        bytes: u64,
        /// The schema version it holds.
        schema_version: usize,
        /// How many users it holds.
        users: u64,
    },
}

impl std::fmt::Display for AdminReply {
    /// The reply as `vcom-server admin` prints it without `--json`: one line, or one
    /// line per item (tab-separated fields) for lists.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list_name = |list: &ListName| match list {
            ListName::Blacklist => "blacklist",
            ListName::Whitelist => "whitelist",
        };
        match self {
            AdminReply::Broadcast { devices } => {
                writeln!(f, "broadcast sent to {devices} device(s)")
            }
            AdminReply::Policy {
                list,
                action,
                value,
                changed,
            } => {
                let list = list_name(list);
                match (action.as_str(), changed) {
                    ("add", true) => writeln!(f, "added {value} to the {list}"),
                    ("add", false) => writeln!(f, "{value} was already on the {list}"),
                    (_, true) => writeln!(f, "removed {value} from the {list}"),
                    (_, false) => writeln!(f, "{value} was not on the {list}"),
                }
            }
            AdminReply::PolicyList { entries } => {
                entries.iter().try_for_each(|e| writeln!(f, "{e}"))
            }
            AdminReply::GroupCreated { id } => writeln!(f, "{id}"),
            AdminReply::GroupMember {
                id,
                user,
                action,
                changed,
            } => match (action.as_str(), changed) {
                ("add", true) => writeln!(f, "added {user} to group {id}"),
                ("add", false) => writeln!(f, "{user} is already in group {id}"),
                (_, true) => writeln!(f, "removed {user} from group {id}"),
                (_, false) => writeln!(f, "{user} is not in group {id}"),
            },
            AdminReply::Groups { groups } => groups
                .iter()
                .try_for_each(|g| writeln!(f, "{}\t{}\t{}", g.id, g.name, g.members.join(","))),
            AdminReply::Group(g) => {
                writeln!(f, "group {}\t{}", g.id, g.name)?;
                writeln!(f, "members\t{}", g.members.join(","))?;
                writeln!(f, "online\t{}", g.online.join(","))
            }
            AdminReply::Users { users } => users.iter().try_for_each(|u| {
                writeln!(
                    f,
                    "{}\tkey={}\tonline={}",
                    u.user,
                    u.key.as_deref().unwrap_or("-"),
                    u.online
                )
            }),
            AdminReply::User(u) => {
                writeln!(f, "user\t{}", u.user)?;
                writeln!(f, "key\t{}", u.key.as_deref().unwrap_or("-"))?;
                writeln!(f, "created_at\t{}", u.created_at)?;
                let groups: Vec<String> = u.groups.iter().map(i32::to_string).collect();
                writeln!(f, "groups\t{}", groups.join(","))?;
                u.devices.iter().try_for_each(|d| {
                    writeln!(
                        f,
                        "device {}\tcreated_at={}\tlast_seen={}\tonline={}",
                        d.device, d.created_at, d.last_seen, d.online
                    )
                })
            }
            AdminReply::UserAdded { user, key } => match key {
                Some(key) => writeln!(f, "added {user}, bound to key {key}"),
                None => writeln!(f, "added {user}: its first login binds its key"),
            },
            AdminReply::UserRemoved {
                user,
                sessions_ended,
            } => writeln!(
                f,
                "removed {user} and everything of theirs; ended {sessions_ended} session(s)"
            ),
            AdminReply::KeyReset {
                user,
                key,
                sessions_ended,
            } => {
                let bound = match key {
                    Some(key) => format!("now bound to key {key}: only it can log in"),
                    None => "reset: its next login binds a new key".to_owned(),
                };
                writeln!(
                    f,
                    "the key of {user} was {bound}; ended {sessions_ended} session(s)"
                )
            }
            AdminReply::InviteCreated {
                token,
                uses,
                expires_at,
            } => {
                let until = expires_at.map_or_else(
                    || "no end".to_owned(),
                    |t| format!("until {t} (ms since the epoch)"),
                );
                writeln!(f, "{token}")?;
                writeln!(
                    f,
                    "# admits {uses} new user(s), {until}; shown only this once"
                )
            }
            AdminReply::Invites { invites } => invites.iter().try_for_each(|i| {
                let until = i
                    .expires_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_string());
                writeln!(
                    f,
                    "{}	uses_left={}	expires_at={until}	created_at={}",
                    i.id, i.uses_left, i.created_at
                )
            }),
            AdminReply::Sessions { sessions } => sessions.iter().try_for_each(|s| {
                writeln!(
                    f,
                    "{}\tdevice={}\taddr={}\tsince={}",
                    s.user, s.device, s.addr, s.since
                )
            }),
            AdminReply::Stats { counters } => counters
                .iter()
                .try_for_each(|(name, value)| writeln!(f, "{name} {value}")),
            AdminReply::Backup {
                path,
                bytes,
                schema_version,
                users,
            } => writeln!(
                f,
                "backup written: {path} ({bytes} bytes, schema version {schema_version}, {users} users)"
            ),
        }
    }
}

/// The answer to one [`AdminRequest`] on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminResponse {
    /// Whether the command succeeded.
    pub ok: bool,
    /// What it did or found, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<AdminReply>,
    /// Why it failed, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it failed: true if the command itself was malformed (a bad address, user
    /// identifier or name), which `vcom-server admin` reports as bad usage.
    #[serde(default)]
    pub usage_error: bool,
}

/// Why an administrator command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The command's arguments are malformed.
    #[error("{0}")]
    Invalid(String),
    /// The command names a user or group the server does not know.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AdminError::NotFound(format!("{what} not found")),
            other => AdminError::Store(other),
        }
    }
}

/// Replaces the database of the stopped server on `data_dir` with the backup `file`
/// (`vcom-server restore`): the backup is checked first, and the database it replaces
/// is kept beside it, renamed.
pub fn restore(file: &Path, data_dir: &Path) -> Result<vcom_store::BackupReport, StoreError> {
    vcom_store::restore(file, &crate::ServerConfig::new(data_dir).database_path())
}

/// The administrator's commands against a running server.
pub struct AdminHandle<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for AdminHandle<S> {
    fn clone(&self) -> Self {
        AdminHandle {
            shared: self.shared.clone(),
        }
    }
}

fn user_id(text: &str) -> Result<UserId, AdminError> {
    UserId::new(text)
        .map_err(|e| AdminError::Invalid(format!("invalid user identifier {text:?}: {e}")))
}

/// Parses a key fingerprint as `vcom identity fingerprint` prints it: 64 hex digits,
/// either case, optionally with a colon between each pair (as many tools show digests).
fn key_fingerprint(text: &str) -> Result<KeyFingerprint, AdminError> {
    let invalid = || {
        AdminError::Invalid(format!(
            "{text:?} is not a key fingerprint (SHA-256: 64 hex digits, as `vcom identity fingerprint` prints it)"
        ))
    };
    let trimmed = text.trim();
    let pairs: Vec<&str> = if trimmed.contains(':') {
        trimmed.split(':').collect()
    } else {
        trimmed
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap_or(""))
            .collect()
    };
    let mut out = [0u8; 32];
    if pairs.len() != out.len() {
        return Err(invalid());
    }
    for (byte, pair) in out.iter_mut().zip(pairs) {
        if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(KeyFingerprint(out))
}

fn policy_entry(kind: EntryKind, value: &str) -> Result<PolicyEntry, AdminError> {
    match kind {
        EntryKind::User => Ok(PolicyEntry::User(user_id(value)?.into_string())),
        EntryKind::Ip => {
            // Stored in one canonical spelling, so removal matches what was added.
            let text = match value.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.to_canonical().to_string(),
                Err(_) => parse_net(value)
                    .map(|n| n.trunc().to_string())
                    .ok_or_else(|| {
                        AdminError::Invalid(format!("{value:?} is not an IP address or CIDR block"))
                    })?,
            };
            Ok(PolicyEntry::Ip(text))
        }
    }
}

fn store_list(list: ListName) -> PolicyList {
    match list {
        ListName::Blacklist => PolicyList::Blacklist,
        ListName::Whitelist => PolicyList::Whitelist,
    }
}

impl<S: Store> AdminHandle<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>) -> Self {
        AdminHandle { shared }
    }

    /// Copies a group as the store now holds it into the in-memory directory, and tells
    /// its members' devices with the extension set what it now is (and `removed`'s that
    /// it is no longer a member).
    async fn refresh_group(
        &self,
        group: GroupId,
        removed: Option<&UserId>,
    ) -> Result<(), AdminError> {
        if let Some(group) = self.shared.store.group(group).await? {
            self.shared.directory.set_group(&group);
            crate::groups::admin_changed(&self.shared, &group, removed);
        }
        // The other nodes re-read it and tell their sessions.
        self.shared.cluster.notify(Notice::Group {
            group: group.0,
            removed: removed.map(|u| u.as_str().to_owned()),
            exit: vcom_protocol::GroupExit::Removed.code(),
        });
        Ok(())
    }

    /// Runs one command and says what it did or found.
    pub async fn execute(&self, request: AdminRequest) -> Result<AdminReply, AdminError> {
        match request {
            AdminRequest::Broadcast { text } => {
                // Clients decode with the same limit: a longer broadcast would be a
                // protocol violation in every client's eyes.
                let max = self.shared.limits.max_message_len;
                if text.len() > max {
                    return Err(AdminError::Invalid(format!(
                        "a broadcast may be at most {max} bytes (limits.max_message_len), this one is {}",
                        text.len()
                    )));
                }
                let devices = self.broadcast(&text);
                Ok(AdminReply::Broadcast { devices })
            }
            AdminRequest::Blacklist { action } => self.policy(ListName::Blacklist, action).await,
            AdminRequest::Whitelist { action } => self.policy(ListName::Whitelist, action).await,
            AdminRequest::Group { action } => self.group(action).await,
            AdminRequest::User { action } => self.user(action).await,
            AdminRequest::Invite { action } => self.invite(action).await,
            AdminRequest::Sessions => {
                let mut sessions = self.shared.sessions.all();
                sessions.sort_by(|a, b| (&a.user, a.device).cmp(&(&b.user, b.device)));
                Ok(AdminReply::Sessions {
                    sessions: sessions
                        .iter()
                        .map(|s| SessionView {
                            user: s.user.to_string(),
                            device: s.device.0,
                            addr: s.addr.to_string(),
                            since: s.since.0,
                        })
                        .collect(),
                })
            }
            AdminRequest::Stats => {
                let live = self.shared.stats.snapshot();
                let stored = self.shared.store.stats().await?;
                let online = self.shared.sessions.all().len() as u64;
                let transfers = self.shared.transfers.len() as u64;
                let counters = [
                    ("online_sessions", online),
                    ("active_transfers", transfers),
                    ("connections", live.connections),
                    ("logins", live.logins),
                    ("denials", live.denials),
                    ("violations", live.violations),
                    ("messages", live.messages),
                    ("broadcasts", live.broadcasts),
                    ("transfers_completed", live.transfers_completed),
                    ("transfers_aborted", live.transfers_aborted),
                    ("file_bytes_relayed", live.file_bytes_relayed),
                    ("stored_users", stored.users),
                    ("stored_devices", stored.devices),
                    ("stored_groups", stored.groups),
                    ("stored_messages", stored.messages),
                    ("pending_deliveries", stored.pending_deliveries),
                    ("logged_transfers", stored.transfers),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                Ok(AdminReply::Stats { counters })
            }
            AdminRequest::Backup { file } => {
                if !file.is_absolute() {
                    return Err(AdminError::Invalid(format!(
                        "the backup path must be absolute: {}",
                        file.display()
                    )));
                }
                let report = self.shared.store.backup(file).await.map_err(|e| match e {
                    StoreError::Backup(why) => AdminError::Invalid(why),
                    other => AdminError::Store(other),
                })?;
                tracing::info!(path = %report.path.display(), bytes = report.bytes, "backup written");
                Ok(AdminReply::Backup {
                    path: report.path.display().to_string(),
                    bytes: report.bytes,
                    schema_version: report.schema_version,
                    users: report.users,
                })
            }
        }
    }

    async fn policy(&self, list: ListName, action: PolicyAction) -> Result<AdminReply, AdminError> {
        let (kind, value, add) = match action {
            PolicyAction::List => {
                let policy = self.shared.store.policy().await?;
                let entries = match list {
                    ListName::Blacklist => policy.blacklist,
                    ListName::Whitelist => policy.whitelist,
                };
                return Ok(AdminReply::PolicyList {
                    entries: entries
                        .into_iter()
                        .map(|entry| match entry {
                            PolicyEntry::User(u) => format!("user {u}"),
                            PolicyEntry::Ip(ip) => format!("ip {ip}"),
                        })
                        .collect(),
                });
            }
            PolicyAction::Add { kind, value } => (kind, value, true),
            PolicyAction::Remove { kind, value } => (kind, value, false),
        };
        let entry = policy_entry(kind, &value)?;
        let store = &self.shared.store;
        let changed = if add {
            store.add_policy(store_list(list), entry).await?
        } else {
            store.remove_policy(store_list(list), entry).await?
        };
        self.reload_policy().await?;
        self.shared.cluster.notify(Notice::Policy);
        Ok(AdminReply::Policy {
            list,
            action: if add { "add" } else { "remove" }.to_owned(),
            value,
            changed,
        })
    }

    async fn group(&self, action: GroupAction) -> Result<AdminReply, AdminError> {
        let store = &self.shared.store;
        // One change at a time, a client's or the administrator's (see `groups`).
        let _one_at_a_time = self.shared.group_changes.lock().await;
        match action {
            GroupAction::Create { name, members } => {
                if name.trim().is_empty() {
                    return Err(AdminError::Invalid("a group name must not be empty".into()));
                }
                let members = members
                    .iter()
                    .map(|m| user_id(m))
                    .collect::<Result<Vec<_>, _>>()?;
                let id = store.create_group(&name, &members, crate::now()).await?;
                self.refresh_group(id, None).await?;
                Ok(AdminReply::GroupCreated { id: id.0 })
            }
            GroupAction::Add { id, user } => {
                let changed = store
                    .add_group_member(GroupId(id), &user_id(&user)?)
                    .await?;
                if changed {
                    self.refresh_group(GroupId(id), None).await?;
                }
                Ok(AdminReply::GroupMember {
                    id,
                    user,
                    action: "add".into(),
                    changed,
                })
            }
            GroupAction::Remove { id, user } => {
                let member = user_id(&user)?;
                let changed = store.remove_group_member(GroupId(id), &member).await?;
                if changed {
                    self.refresh_group(GroupId(id), Some(&member)).await?;
                }
                Ok(AdminReply::GroupMember {
                    id,
                    user,
                    action: "remove".into(),
                    changed,
                })
            }
            GroupAction::List => Ok(AdminReply::Groups {
                groups: store
                    .groups()
                    .await?
                    .into_iter()
                    .map(|g| self.group_view(g))
                    .collect(),
            }),
            GroupAction::Show { id } => match store.group(GroupId(id)).await? {
                Some(g) => Ok(AdminReply::Group(self.group_view(g))),
                None => Err(AdminError::NotFound(format!("group {id} not found"))),
            },
        }
    }

    fn group_view(&self, g: vcom_store::Group) -> GroupView {
        let online = g
            .members
            .iter()
            .filter(|m| !self.shared.sessions.of_user(m).is_empty())
            .map(UserId::to_string)
            .collect();
        GroupView {
            id: g.id.0,
            name: g.name,
            members: g.members.iter().map(UserId::to_string).collect(),
            online,
        }
    }

    async fn invite(&self, action: InviteAction) -> Result<AdminReply, AdminError> {
        let store = &self.shared.store;
        let now = crate::now();
        match action {
            InviteAction::Create { uses, expires } => {
                let mut secret = [0u8; 16];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                    .map_err(|_| AdminError::Invalid("no randomness for a token".into()))?;
                let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                let expires_at = expires.map(|secs| {
                    let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
                    vcom_protocol::Timestamp(now.0.saturating_add(ms))
                });
                store
                    .create_invite(
                        crate::login::invite_hash(token.as_bytes()),
                        uses,
                        expires_at,
                        now,
                    )
                    .await?;
                tracing::info!(uses, expires_secs = expires, "invitation created");
                Ok(AdminReply::InviteCreated {
                    token,
                    uses,
                    expires_at: expires_at.map(|t| t.0),
                })
            }
            InviteAction::List => Ok(AdminReply::Invites {
                invites: store
                    .invites(now)
                    .await?
                    .into_iter()
                    .map(|i| InviteView {
                        id: i.hash.0[..6].iter().map(|b| format!("{b:02x}")).collect(),
                        uses_left: i.uses_left,
                        expires_at: i.expires_at.map(|t| t.0),
                        created_at: i.created_at.0,
                    })
                    .collect(),
            }),
        }
    }

    async fn user(&self, action: UserAction) -> Result<AdminReply, AdminError> {
        let store = &self.shared.store;
        match action {
            UserAction::List => Ok(AdminReply::Users {
                users: store
                    .users()
                    .await?
                    .into_iter()
                    .map(|u| UserView {
                        online: self.shared.sessions.of_user(&u.id).len(),
                        user: u.id.to_string(),
                        key: u.key.map(|k| k.to_hex()),
                    })
                    .collect(),
            }),
            UserAction::Show { user } => {
                let id = user_id(&user)?;
                let Some(record) = store.user(&id).await? else {
                    return Err(AdminError::NotFound(format!("unknown user {user}")));
                };
                let sessions = self.shared.sessions.of_user(&id);
                let devices = store
                    .devices(&id)
                    .await?
                    .into_iter()
                    .map(|d| DeviceView {
                        device: d.id.0,
                        created_at: d.created_at.0,
                        last_seen: d.last_seen.0,
                        online: sessions.iter().filter(|s| s.device == d.id).count(),
                    })
                    .collect();
                let groups = store
                    .groups()
                    .await?
                    .into_iter()
                    .filter(|g| g.members.contains(&id))
                    .map(|g| g.id.0)
                    .collect();
                Ok(AdminReply::User(UserDetail {
                    user: id.to_string(),
                    key: record.key.map(|k| k.to_hex()),
                    created_at: record.created_at.0,
                    devices,
                    groups,
                }))
            }
            UserAction::Add { user, fingerprint } => {
                let id = user_id(&user)?;
                let key = fingerprint.as_deref().map(key_fingerprint).transpose()?;
                if store.user(&id).await?.is_some() {
                    return Err(AdminError::Invalid(format!("user {user} already exists")));
                }
                store.register_user(&id, key, crate::now()).await?;
                self.shared.directory.add_user(&id);
                self.shared.cluster.notify(Notice::User {
                    user: id.as_str().to_owned(),
                });
                tracing::info!(%user, bound = key.is_some(), "user added");
                Ok(AdminReply::UserAdded {
                    user,
                    key: key.map(|k| k.to_hex()),
                })
            }
            UserAction::Remove { user } => {
                let id = user_id(&user)?;
                let _one_at_a_time = self.shared.group_changes.lock().await;
                let member_of = self.shared.directory.groups_of(&id);
                if !store.remove_user(&id).await? {
                    return Err(AdminError::NotFound(format!("unknown user {user}")));
                }
                self.shared.directory.remove_user(&id);
                self.shared.cluster.notify(Notice::UserRemoved {
                    user: id.as_str().to_owned(),
                });
                // The other members of the user's groups are told who is left.
                for (group, _) in member_of {
                    self.refresh_group(group, None).await?;
                }
                // The groups in memory lost the user too; any login in flight is ended
                // when it registers (as after a key reset).
                let sessions_ended = self.shared.sessions.end_user(&id);
                tracing::info!(%user, sessions = sessions_ended, "user removed");
                Ok(AdminReply::UserRemoved {
                    user,
                    sessions_ended,
                })
            }
            UserAction::ResetKey { user, fingerprint } => {
                let id = user_id(&user)?;
                let key = fingerprint.as_deref().map(key_fingerprint).transpose()?;
                if !store.reset_key(&id, key).await? {
                    return Err(AdminError::NotFound(format!("unknown user {user}")));
                }
                // Only once the new binding is stored: a login from now on is checked
                // against it, and every session (or login in flight) that proved the old
                // key is ended.
                let sessions_ended = self.shared.sessions.end_user(&id);
                self.shared.cluster.notify(Notice::KeyReset {
                    user: id.as_str().to_owned(),
                });
                tracing::info!(%user, sessions = sessions_ended, bound = key.is_some(), "key reset");
                Ok(AdminReply::KeyReset {
                    user,
                    key: key.map(|k| k.to_hex()),
                    sessions_ended,
                })
            }
        }
    }

    /// Sends a broadcast to every online device; returns how many (of this node: on a
    /// cluster, the other nodes send it to theirs).
    pub fn broadcast(&self, text: &str) -> usize {
        self.shared.cluster.notify(Notice::Broadcast {
            text: text.to_owned(),
        });
        Stats::bump(&self.shared.stats.broadcasts);
        let packet = ServerPacket::from(Broadcast {
            text: text.to_owned(),
        });
        let sessions = self.shared.sessions.all();
        tracing::info!(devices = sessions.len(), "broadcast sent");
        sessions
            .iter()
            .filter(|s| s.push(Outbound::packet(packet.clone())))
            .count()
    }

    /// Rebuilds the login policy from the store and disconnects sessions it now refuses.
    async fn reload_policy(&self) -> Result<(), AdminError> {
        let cache = PolicyCache::new(&self.shared.store.policy().await?);
        for s in self.shared.sessions.all() {
            let ip = s.addr.ip();
            if cache.user_blacklisted(s.user.as_str())
                || cache.ip_blacklisted(ip)
                || !cache.whitelisted(s.user.as_str(), ip)
            {
                tracing::info!(user = %s.user, addr = %s.addr, "session no longer allowed by policy: disconnecting");
                s.kill.cancel();
            }
        }
        *self
            .shared
            .policy
            .write()
            .unwrap_or_else(|p| p.into_inner()) = cache;
        Ok(())
    }
}

/// The bound admin socket.
pub(crate) struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// Creates a new directory with mode 0700 beside the admin socket, named after this
/// process so that two starts never share it.
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = parent.join(format!(".admin-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

impl AdminSocket {
    /// Binds `path` with mode 0600. A leftover socket of a server that is gone is
    /// replaced; one that still answers means another server uses this data directory.
    pub(crate) fn bind(path: &Path) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind {
            addr: path.display().to_string(),
            source,
        };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(bind_error(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another vcom-server is running with this data directory",
                )));
            }
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        // Bound inside a fresh directory only the server's user may enter, made private,
        // then moved into place: the socket is never reachable by others, not even for
        // the moment between bind and chmod.
        let parent = path.parent().unwrap_or_else(|| Path::new("."));
        let staging = tempfile_dir(parent).map_err(bind_error)?;
        let staged = staging.join("admin.sock");
        let listener = UnixListener::bind(&staged).map_err(bind_error)?;
        use std::os::unix::fs::PermissionsExt;
        let placed = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&staged, path));
        let _ = std::fs::remove_dir(&staging);
        placed.map_err(bind_error)?;
        Ok(AdminSocket {
            listener,
            path: path.to_owned(),
        })
    }

    pub(crate) async fn serve<S: Store>(self, admin: AdminHandle<S>, shutdown: CancellationToken) {
        let places = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
                            tracing::warn!(
                                limit = MAX_ADMIN_CONNECTIONS,
                                "admin connection refused: too many at once"
                            );
                            tokio::spawn(refuse_client(stream));
                            continue;
                        };
                        let admin = admin.clone();
                        tokio::spawn(async move {
                            serve_client(admin, stream).await;
                            drop(place);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Longest admin request line accepted (a broadcast text fits easily).
const MAX_REQUEST: u64 = 2 * 1024 * 1024;

/// Admin connections served at once; more are answered with an error and closed.
const MAX_ADMIN_CONNECTIONS: usize = 16;

/// Answers a connection past [`MAX_ADMIN_CONNECTIONS`] with an error, within a second.
async fn refuse_client(stream: UnixStream) {
    let response = AdminResponse {
        ok: false,
        reply: None,
        error: Some(format!(
            "too many admin connections at once (at most {MAX_ADMIN_CONNECTIONS})"
        )),
        usage_error: false,
    };
    if let Ok(mut text) = serde_json::to_string(&response) {
        text.push('\n');
        let (_, mut write) = stream.into_split();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            write.write_all(text.as_bytes()),
        )
        .await;
    }
}

/// Serves one admin connection: a request per line. The connection has
/// `login_timeout_secs` to send each request and the same to take each answer, like any
/// connection that has not logged in.
async fn serve_client<S: Store>(admin: AdminHandle<S>, stream: UnixStream) {
    let timeout = admin.shared.config.login_timeout();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST)).lines();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(timeout, lines.next_line()).await {
        let response = match serde_json::from_str::<AdminRequest>(&line) {
            Err(e) => AdminResponse {
                ok: false,
                reply: None,
                error: Some(format!("invalid request: {e}")),
                usage_error: true,
            },
            Ok(request) => {
                tracing::info!(command = request.name(), "admin command");
                match admin.execute(request).await {
                    Ok(reply) => AdminResponse {
                        ok: true,
                        reply: Some(reply),
                        error: None,
                        usage_error: false,
                    },
                    Err(e) => AdminResponse {
                        ok: false,
                        reply: None,
                        usage_error: matches!(e, AdminError::Invalid(_)),
                        error: Some(e.to_string()),
                    },
                }
            }
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if !matches!(
            tokio::time::timeout(timeout, write.write_all(text.as_bytes())).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_64_hex_digits_in_either_case_with_or_without_colons() {
        let plain = "00ff".repeat(16);
        let expected = KeyFingerprint(std::array::from_fn(|i| if i % 2 == 0 { 0 } else { 0xff }));
        assert_eq!(key_fingerprint(&plain).ok(), Some(expected));
        assert_eq!(key_fingerprint(&plain.to_uppercase()).ok(), Some(expected));
        let colons = ["00", "FF"].repeat(16).join(":");
        assert_eq!(key_fingerprint(&colons).ok(), Some(expected));
        assert_eq!(key_fingerprint(&expected.to_hex()).ok(), Some(expected));
    }

    #[test]
    fn a_malformed_fingerprint_is_an_invalid_argument() {
        let long = "ab".repeat(33);
        let short = "ab".repeat(31);
        let odd = format!("{}a", "ab".repeat(31));
        let not_hex = format!("{}zz", "ab".repeat(31));
        let sign = format!("{}+f", "ab".repeat(31));
        let bad_colons = format!("a:b{}", "ab".repeat(31));
        let empty_pair = format!("{}:", ["ab"].repeat(31).join(":"));
        let multibyte = format!("{}é", "ab".repeat(31));
        for bad in [
            "",
            &long,
            &short,
            &odd,
            &not_hex,
            &sign,
            &bad_colons,
            &empty_pair,
            &multibyte,
        ] {
            assert!(
                matches!(key_fingerprint(bad), Err(AdminError::Invalid(_))),
                "{bad:?} was accepted"
            );
        }
    }
}
