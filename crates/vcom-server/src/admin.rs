//! The administrator's commands: in process through [`AdminHandle`], and for the
//! `vcom-server admin` program through the Unix socket `DATA_DIR/admin.sock` (mode 0600,
//! so only the server's own user can use it).
//!
//! The socket speaks one JSON [`AdminRequest`] per line and answers one JSON
//! [`AdminResponse`] per line. Every change is written to the store first, so it
//! survives a restart, and takes effect at once.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use vcom_protocol::{Broadcast, GroupId, ServerPacket, UserId};
use vcom_store::{KeyFingerprint, PolicyEntry, PolicyList, Store, StoreError};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A user identifier.
    User,
    /// An IP address or CIDR block.
    Ip,
}

/// One administrator command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Sends a broadcast (263) to every online device.
    Broadcast {
        /// The text.
        text: String,
    },
    /// Adds a blacklist or whitelist entry.
    PolicyAdd {
        /// Which list.
        list: ListName,
        /// User or IP.
        kind: EntryKind,
        /// The identifier, address or CIDR block.
        value: String,
    },
    /// Removes a blacklist or whitelist entry.
    PolicyRemove {
        /// Which list.
        list: ListName,
        /// User or IP.
        kind: EntryKind,
        /// The identifier, address or CIDR block.
        value: String,
    },
    /// Lists a blacklist or whitelist.
    PolicyList {
        /// Which list.
        list: ListName,
    },
    /// Creates a group.
    GroupCreate {
        /// Its name.
        name: String,
        /// Its first members.
        members: Vec<String>,
    },
    /// Adds a member to a group.
    GroupAdd {
        /// The group.
        group: i32,
        /// The user.
        user: String,
    },
    /// Removes a member from a group.
    GroupRemove {
        /// The group.
        group: i32,
        /// The user.
        user: String,
    },
    /// Lists every group with its members.
    GroupList,
    /// Lists every known user.
    UserList,
    /// Replaces the key bound to a user and ends the user's online sessions, which
    /// proved only the old key.
    UserResetKey {
        /// The user.
        user: String,
        /// The new key's fingerprint (SHA-256 of the client certificate's
        /// SubjectPublicKeyInfo, 64 hex digits, colons between byte pairs allowed), as
        /// `vcom identity fingerprint` prints it: only that key can log in next. `None`
        /// leaves the user unbound, so the next login, whoever makes it, binds its key.
        /// Absent from requests of older `vcom-server admin` programs.
        #[serde(default)]
        fingerprint: Option<String>,
    },
    /// Lists the online sessions.
    Sessions,
    /// Counters and store sizes.
    Stats,
    /// Writes a consistent copy of the database to `path` (absolute; must not exist)
    /// while the server keeps serving.
    Backup {
        /// Where to write it, on the server's machine.
        path: String,
    },
}

impl AdminRequest {
    /// The command's name, for logs (which never show a broadcast's text).
    pub fn name(&self) -> &'static str {
        match self {
            AdminRequest::Broadcast { .. } => "broadcast",
            AdminRequest::PolicyAdd { .. } => "policy-add",
            AdminRequest::PolicyRemove { .. } => "policy-remove",
            AdminRequest::PolicyList { .. } => "policy-list",
            AdminRequest::GroupCreate { .. } => "group-create",
            AdminRequest::GroupAdd { .. } => "group-add",
            AdminRequest::GroupRemove { .. } => "group-remove",
            AdminRequest::GroupList => "group-list",
            AdminRequest::UserList => "user-list",
            AdminRequest::UserResetKey { .. } => "user-reset-key",
            AdminRequest::Sessions => "sessions",
            AdminRequest::Stats => "stats",
            AdminRequest::Backup { .. } => "backup",
        }
    }
}

/// The answer to one [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminResponse {
    /// Whether the command succeeded.
    pub ok: bool,
    /// What to show the administrator (or the error, when `ok` is false).
    pub output: String,
    /// When `ok` is false: true if the command itself was malformed (a bad address,
    /// user identifier or name), which `vcom-server admin` reports as bad usage.
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

    /// Copies a group as the store now holds it into the in-memory directory.
    async fn refresh_group(&self, group: GroupId) -> Result<(), AdminError> {
        if let Some(group) = self.shared.store.group(group).await? {
            self.shared.directory.set_group(&group);
        }
        Ok(())
    }

    /// Runs one command and returns the text to show.
    pub async fn execute(&self, request: AdminRequest) -> Result<String, AdminError> {
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
                let n = self.broadcast(&text);
                Ok(format!("broadcast sent to {n} device(s)"))
            }
            AdminRequest::PolicyAdd { list, kind, value } => {
                let entry = policy_entry(kind, &value)?;
                let added = self
                    .shared
                    .store
                    .add_policy(store_list(list), entry)
                    .await?;
                self.reload_policy().await?;
                Ok(if added {
                    format!("added {value} to the {list:?}")
                } else {
                    format!("{value} was already on the {list:?}")
                }
                .to_lowercase())
            }
            AdminRequest::PolicyRemove { list, kind, value } => {
                let entry = policy_entry(kind, &value)?;
                let removed = self
                    .shared
                    .store
                    .remove_policy(store_list(list), entry)
                    .await?;
                self.reload_policy().await?;
                Ok(if removed {
                    format!("removed {value} from the {list:?}")
                } else {
                    format!("{value} was not on the {list:?}")
                }
                .to_lowercase())
            }
            AdminRequest::PolicyList { list } => {
                let policy = self.shared.store.policy().await?;
                let entries = match list {
                    ListName::Blacklist => policy.blacklist,
                    ListName::Whitelist => policy.whitelist,
                };
                let mut out = String::new();
                for entry in entries {
                    let _ = match entry {
                        PolicyEntry::User(u) => writeln!(out, "user {u}"),
                        PolicyEntry::Ip(ip) => writeln!(out, "ip {ip}"),
                    };
                }
                Ok(out)
            }
            AdminRequest::GroupCreate { name, members } => {
                if name.trim().is_empty() {
                    return Err(AdminError::Invalid("a group name must not be empty".into()));
                }
                let members = members
                    .iter()
                    .map(|m| user_id(m))
                    .collect::<Result<Vec<_>, _>>()?;
                let id = self
                    .shared
                    .store
                    .create_group(&name, &members, crate::now())
                    .await?;
                self.refresh_group(id).await?;
                Ok(format!("{id}"))
            }
            AdminRequest::GroupAdd { group, user } => {
                let added = self
                    .shared
                    .store
                    .add_group_member(GroupId(group), &user_id(&user)?)
                    .await?;
                self.refresh_group(GroupId(group)).await?;
                Ok(if added {
                    format!("added {user} to group {group}")
                } else {
                    format!("{user} is already in group {group}")
                })
            }
            AdminRequest::GroupRemove { group, user } => {
                let removed = self
                    .shared
                    .store
                    .remove_group_member(GroupId(group), &user_id(&user)?)
                    .await?;
                self.refresh_group(GroupId(group)).await?;
                Ok(if removed {
                    format!("removed {user} from group {group}")
                } else {
                    format!("{user} is not in group {group}")
                })
            }
            AdminRequest::GroupList => {
                let mut out = String::new();
                for g in self.shared.store.groups().await? {
                    let members: Vec<&str> = g.members.iter().map(UserId::as_str).collect();
                    let _ = writeln!(out, "{}\t{}\t{}", g.id, g.name, members.join(","));
                }
                Ok(out)
            }
            AdminRequest::UserList => {
                let mut out = String::new();
                for u in self.shared.store.users().await? {
                    let key = u.key.map(|k| k.to_hex()).unwrap_or_else(|| "-".into());
                    let online = self.shared.sessions.of_user(&u.id).len();
                    let _ = writeln!(out, "{}\tkey={}\tonline={}", u.id, key, online);
                }
                Ok(out)
            }
            AdminRequest::UserResetKey { user, fingerprint } => {
                let id = user_id(&user)?;
                let key = fingerprint.as_deref().map(key_fingerprint).transpose()?;
                if !self.shared.store.reset_key(&id, key).await? {
                    return Err(AdminError::NotFound(format!("unknown user {user}")));
                }
                // Only once the new binding is stored: a login from now on is checked
                // against it, and every session (or login in flight) that proved the old
                // key is ended.
                let ended = self.shared.sessions.end_user(&id);
                tracing::info!(%user, sessions = ended, bound = key.is_some(), "key reset");
                let bound = match key {
                    Some(key) => format!("now bound to key {}: only it can log in", key.to_hex()),
                    None => "reset: its next login binds a new key".to_owned(),
                };
                Ok(format!(
                    "the key of {user} was {bound}; ended {ended} session(s)"
                ))
            }
            AdminRequest::Sessions => {
                let mut sessions = self.shared.sessions.all();
                sessions.sort_by(|a, b| (&a.user, a.device).cmp(&(&b.user, b.device)));
                let mut out = String::new();
                for s in sessions {
                    let _ = writeln!(
                        out,
                        "{}\tdevice={}\taddr={}\tsince={}",
                        s.user, s.device, s.addr, s.since
                    );
                }
                Ok(out)
            }
            AdminRequest::Stats => {
                let live = self.shared.stats.snapshot();
                let stored = self.shared.store.stats().await?;
                let mut out = String::new();
                let _ = writeln!(out, "online_sessions {}", self.shared.sessions.all().len());
                let _ = writeln!(out, "active_transfers {}", self.shared.transfers.len());
                for (k, v) in [
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
                ] {
                    let _ = writeln!(out, "{k} {v}");
                }
                Ok(out)
            }
            AdminRequest::Backup { path } => {
                let path = std::path::PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(AdminError::Invalid(format!(
                        "the backup path must be absolute: {}",
                        path.display()
                    )));
                }
                let report = self.shared.store.backup(path).await.map_err(|e| match e {
                    StoreError::Backup(why) => AdminError::Invalid(why),
                    other => AdminError::Store(other),
                })?;
                tracing::info!(path = %report.path.display(), bytes = report.bytes, "backup written");
                Ok(format!(
                    "backup written: {} ({} bytes, schema version {}, {} users)",
                    report.path.display(),
                    report.bytes,
                    report.schema_version,
                    report.users
                ))
            }
        }
    }

    /// Sends a broadcast to every online device; returns how many.
    pub fn broadcast(&self, text: &str) -> usize {
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
        output: format!("too many admin connections at once (at most {MAX_ADMIN_CONNECTIONS})"),
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
                output: format!("invalid request: {e}"),
                usage_error: true,
            },
            Ok(request) => {
                tracing::info!(command = request.name(), "admin command");
                match admin.execute(request).await {
                    Ok(output) => AdminResponse {
                        ok: true,
                        output,
                        usage_error: false,
                    },
                    Err(e) => AdminResponse {
                        ok: false,
                        usage_error: matches!(e, AdminError::Invalid(_)),
                        output: e.to_string(),
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
