//! Every configuration key in one table: its place in the file, its range and what it
//! means. The range checks, the environment layer, `vcom-server config example` and the
//! key tables of `docs/configuration.md` all come from [`KEYS`]; the defaults come from
//! [`ServerConfig::default`], serialized. A test fails when a field of the
//! configuration has no entry here, so neither can drift from the other.

use std::fmt::Write as _;

use serde::Deserialize as _;

use super::{ConfigError, ServerConfig};

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Its place in the file: `name`, or `table.name`.
    pub path: &'static str,
    /// For a number, the inclusive range it must lie in.
    pub range: Option<(u64, u64)>,
    /// For a key with no default value, what a value looks like (for the example).
    pub example: Option<&'static str>,
    /// What it means (Markdown: one paragraph).
    pub doc: &'static str,
}

impl Key {
    /// The environment variable that sets it: `VCOM_` and the path in capitals, `__`
    /// between a table and its key (`VCOM_LIMITS__MAX_MESSAGE_LEN`).
    pub fn env_var(&self) -> String {
        format!("VCOM_{}", self.path.replace('.', "__").to_uppercase())
    }

    /// The table it is in (`""` for the top level) and its name there.
    pub fn split(&self) -> (&'static str, &'static str) {
        self.path.rsplit_once('.').unwrap_or(("", self.path))
    }
}

const fn key(path: &'static str, range: Option<(u64, u64)>, doc: &'static str) -> Key {
    Key {
        path,
        range,
        example: None,
        doc,
    }
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const MILLION: u64 = 1_000_000;
const TERA: u64 = 1_000_000_000_000;

/// Every key, in the order of the example and the docs.
pub const KEYS: &[Key] = &[
    key(
        "listen",
        None,
        "Address and port to listen on. Port 0 picks a free port; the ready line says which. Use `\"0.0.0.0:7420\"` to accept connections from other machines. `--listen` overrides it.",
    ),
    Key {
        path: "password",
        range: None,
        example: Some("\"correct horse battery staple\""),
        doc: "Server password (none by default). When set, a login whose password differs is refused with 258 code 3. At most `limits.max_password_len` bytes.",
    },
    key(
        "password_free_attempts",
        Some((0, MILLION)),
        "Wrong server passwords one address (an IPv6 address: its /64) may give before its logins wait.",
    ),
    key(
        "password_max_wait_secs",
        Some((0, DAY)),
        "After the free attempts, each wrong password makes that address wait 1, 2, 4, ... seconds, up to this, before its next password is even checked (refused with 258 code 3 meanwhile, logged as a warning); a right password starts its count again. 0 turns the throttle off.",
    ),
    key(
        "auth",
        None,
        "`\"key\"`: the first login of a user identifier binds it to the SHA-256 of the client certificate's public key; later logins must present the same key (258 code 4). `vcom-server admin user reset-key USER [--fingerprint SHA256]` replaces the binding (with the given key, or none, so the next login binds its own) and ends USER's online sessions. `\"open\"`: identifiers are trusted as sent and client certificates are optional (closed networks, old clients).",
    ),
    key(
        "registration",
        None,
        "`\"open\"`: any valid identifier becomes a user on its first login. `\"closed\"`: only users the server already knows may log in (258 code 7); `vcom-server admin user add` adds them. `\"token\"`: a new identifier logs in only with a valid invitation token (`vcom-server admin invite create [--uses N] [--expires DURATION]`) sent in the login's password field instead of the server password; each such login spends one use; a missing, unknown, used-up or expired token is refused with 258 code 7, and wrong tokens are throttled per address like wrong passwords. Known users log in as always.",
    ),
    key(
        "login_timeout_secs",
        Some((1, HOUR)),
        "Seconds a new connection has to finish TLS and send its ConnectionRequest. A connection to the admin socket has as long to send each command and take each answer (at most 16 admin connections at once; more are told so and closed).",
    ),
    key(
        "transfer_idle_timeout_secs",
        Some((1, DAY)),
        "Seconds a file transfer may see no progress before it is aborted with 270 reason 6.",
    ),
    key(
        "write_timeout_secs",
        Some((1, HOUR)),
        "Seconds one write to a client may take; a client that stops reading for longer is disconnected (its messages stay stored).",
    ),
    key(
        "packet_timeout_secs",
        Some((1, HOUR)),
        "Seconds a logged-in client has to complete a packet it has begun sending (counted from the end of the previous packet, while the server is free to read): a client that starts a packet and dribbles the rest, or stops, is disconnected with a warning, so no connection holds a partial packet and its buffer for ever.",
    ),
    key(
        "max_file_size",
        Some((1, i32::MAX as u64)),
        "Largest file size a transfer may announce, in bytes; larger ones are aborted with 270 reason 1.",
    ),
    key(
        "max_connections",
        Some((1, MILLION)),
        "Most logged-in connections at once; beyond it, logins get 258 code 6.",
    ),
    key(
        "max_connections_per_ip",
        Some((0, MILLION)),
        "Most logged-in connections from one IP address (0 = no limit); beyond it, 258 code 6.",
    ),
    key(
        "max_transfers_per_user",
        Some((1, 10_000)),
        "File transfers one user may have in progress at once (offered or streaming); a further 268 is answered with 270 reason 4 and a warning in the log.",
    ),
    key(
        "max_groups_per_user",
        Some((0, 10_000)),
        "Client-side groups (extended mode, GroupCreate 518) one user may own at once; a further GroupCreate is answered 523 outcome 7 (0 = users create no groups; the administrator's groups are not counted).",
    ),
    key(
        "max_group_members",
        Some((1, MILLION)),
        "Members a client-side group may have: a GroupCreate or GroupAddMember (518, 520) past it is answered 523 outcome 8. Never more than `limits.max_list_len`, the longest member list a client accepts in a GroupInfo (525). The administrator's groups are not bounded by it.",
    ),
    key(
        "file_offers_per_minute",
        Some((0, MILLION)),
        "File offers (268) one user may make a minute, refused or not, in a burst or spread out (the budget refills evenly). Beyond it an offer is answered 270 reason 4 with a warning in the log, and writes nothing: no transfer-log row (0 = no limit).",
    ),
    key(
        "outbound_queue",
        Some((16, MILLION)),
        "Packets queued for one client. A stored message that finds the queue full is read from the store instead once the client has caught up with its queue (the client stays connected); any other packet that finds it full means the client is not reading, and it is disconnected. What was stored for a disconnected client is delivered at its next login.",
    ),
    key(
        "max_pending_logins",
        Some((1, MILLION)),
        "Connections that may be in the TLS handshake or login at the same time; more are closed at once. Bounds what clients that never log in can hold (0 would refuse every login).",
    ),
    key(
        "max_pending_logins_per_ip",
        Some((0, MILLION)),
        "Of those, how many may come from one IP address, so that one address's silent sockets cannot lock everyone else out (0 = no per-address cap).",
    ),
    key(
        "handshake_timeout_secs",
        Some((1, HOUR)),
        "Seconds a new connection has to complete the TLS handshake (at most `login_timeout_secs`): a socket that never starts TLS gives its place back early.",
    ),
    key(
        "log",
        None,
        "What the log on stderr shows: a filter such as `\"info\"`, `\"warn\"` or `\"info,vcom_server=debug\"` (levels error, warn, info, debug, trace, for everything or per module). `RUST_LOG`, when set, wins. Whatever the level, no message body, password, token or key is ever logged.",
    ),
    Key {
        path: "metrics_listen",
        range: None,
        example: Some("\"127.0.0.1:9420\""),
        doc: "Where to serve Prometheus metrics (off by default): `GET /metrics` over plain HTTP answers the OpenMetrics text format (connections, logins, refusals by code, messages and bytes relayed, messages waiting, transfers by outcome, the store's commit latency, queued packets). There is no login on it: an address other machines can reach is refused unless `metrics_allow_remote = true`.",
    },
    key(
        "metrics_allow_remote",
        None,
        "Allow `metrics_listen` on an address other machines can reach (put a firewall or a proxy with authentication in front of it).",
    ),
    key(
        "limits.max_user_id_len",
        Some((1, 1024)),
        "Longest user identifier in bytes.",
    ),
    key(
        "limits.max_password_len",
        Some((0, 65_536)),
        "Longest server password in a login, in bytes.",
    ),
    key(
        "limits.max_message_len",
        Some((1, 64 * 1024 * 1024)),
        "Longest message body (text or image) or broadcast, in bytes.",
    ),
    key(
        "limits.max_list_len",
        Some((0, MILLION)),
        "Most entries in a friend or block list.",
    ),
    key(
        "limits.max_file_name_len",
        Some((1, 4096)),
        "Longest file name in a transfer, in bytes.",
    ),
    Key {
        path: "tls.cert",
        range: None,
        example: Some("\"/etc/vcom/cert.pem\""),
        doc: "PEM certificate chain (leaf first). Set together with `key`. Without both, a self-signed certificate is generated at the first start (`DATA_DIR/tls/`) and kept.",
    },
    Key {
        path: "tls.key",
        range: None,
        example: Some("\"/etc/vcom/key.pem\""),
        doc: "PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.",
    },
    key(
        "tls.names",
        None,
        "Extra DNS names or IP addresses for the generated certificate, besides `localhost`, `127.0.0.1` and `::1`. Only used when the certificate is generated (first start).",
    ),
    key(
        "store.backend",
        None,
        "Where the store keeps users, lists, groups, messages and delivery state: `\"sqlite\"`, a file in the data directory (one node, nothing else to install), or `\"postgres\"`, the PostgreSQL database at `postgres_url`, which several nodes may share. The schema is created and migrated at start either way. `vcom-server admin backup` and `restore` work on SQLite only: back a PostgreSQL database up with its own tools (pg_dump).",
    ),
    Key {
        path: "store.postgres_url",
        range: None,
        example: Some("\"postgres://vcom@127.0.0.1:5432/vcom\""),
        doc: "The PostgreSQL database, as `postgres://user[:password]@host[:port]/database` (required with `backend = \"postgres\"`). Its user needs the right to create tables in it at the first start. The connection is not encrypted: keep the database on the same host or a private network. A password here is readable by whoever reads this file (or the environment of `VCOM_STORE__POSTGRES_URL`).",
    },
    Key {
        path: "cluster.nats_url",
        range: None,
        example: Some("\"nats://127.0.0.1:4222\""),
        doc: "The NATS server of a cluster: several nodes on one PostgreSQL database (`store.backend = \"postgres\"`), which NATS tells of each other's messages, list and group changes, broadcasts and administrator changes (`docs/cluster.md`). Unset: a single node. NATS never holds the only copy of anything: a node that cannot reach it logs a warning, keeps serving, retries, and still delivers what other nodes stored (at most a couple of seconds late).",
    },
    Key {
        path: "cluster.node_name",
        range: None,
        example: Some("\"node-a\""),
        doc: "This node's name in the cluster, in its logs and notices; unique per node. Unset: the host name and the listening port (`host:7420`).",
    },
    key(
        "cluster.subject_prefix",
        None,
        "The first part of every NATS subject the cluster uses (`PREFIX.cluster`): nodes with the same prefix on one NATS server form one cluster, so several clusters can share a NATS server. Letters, digits, `-` and `_`.",
    ),
    key(
        "retention.delivered_max_age_days",
        Some((0, 36_500)),
        "Messages delivered to every recipient are deleted this many days after the server received them (0 = no age limit). Whatever this says, a message that every device of every recipient already holds is deleted at the next retention pass: it will never be sent again.",
    ),
    key(
        "retention.delivered_max_count",
        Some((0, TERA)),
        "Keep at most this many messages delivered to every recipient, oldest deleted first (0 = no cap). Messages every device of every recipient holds are not kept at all (see above).",
    ),
    key(
        "retention.pending_per_user",
        Some((0, TERA)),
        "Most undelivered direct messages kept for one user. Beyond it new direct messages to that user are refused: not stored, not relayed, a warning in the log naming sender and recipient, and a sender that tagged the message (516, extended mode) is answered 517 with outcome 3 (inbox full); none already accepted is dropped. Group messages are not counted and never refused: a group message is stored once for the whole group and every member reads it (0 = no cap).",
    ),
    key(
        "retention.pending_per_sender",
        Some((0, TERA)),
        "Of the undelivered direct messages kept for one user, the most from one sender: past it that sender's messages to that user are refused in the same way (a warning in the log naming both, 517 outcome 3 for a tagged message), while other senders still get through, so one sender cannot fill another's inbox alone. The share frees as the user receives what waits (0 = no quota).",
    ),
    key(
        "retention.transfer_log_max",
        Some((0, TERA)),
        "Keep at most this many rows of the file-transfer log (every offer within `file_offers_per_minute` writes one, refused or not), the oldest deleted first (0 = keep all).",
    ),
    key(
        "retention.devices_per_user",
        Some((0, MILLION)),
        "Most devices one user keeps. A login that asks for a new device (device -1) beyond it retires the user's least recently seen other devices, with a warning in the log naming them; a retired device's session ends, and its identifier is refused from then on (258 code 5). Nothing waiting for the user is lost: the new device starts where the user's most advanced device was. The SDK answers code 5 by forgetting the identifier and logging in once more as a new device (0 = no cap).",
    ),
];

/// What each table is for, in the example and the docs.
pub const TABLES: &[(&str, &str)] = &[
    ("", "Top-level keys."),
    (
        "limits",
        "Checked by the decoder before anything is allocated (see `docs/protocol.md`).",
    ),
    (
        "tls",
        "Only TLS 1.3 is offered; the ready line prints the certificate's SHA-256 (`cert-sha256=`), which clients pin on first use.",
    ),
    (
        "store",
        "Which database the store uses (see `docs/architecture.md`).",
    ),
    (
        "cluster",
        "Several nodes on one PostgreSQL database, with NATS between them (see `docs/cluster.md`).",
    ),
    (
        "retention",
        "What the store keeps, and for how long. Retention runs at start and then hourly.",
    ),
];

/// The key at `path`, if there is one.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The defaults as a TOML table (every key that has a default).
fn defaults() -> toml::Table {
    toml::Table::try_from(ServerConfig::default()).unwrap_or_default()
}

/// The value at `path` of a table, if any.
pub(crate) fn lookup<'t>(table: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    let (section, name) = path.rsplit_once('.').unwrap_or(("", path));
    let section = if section.is_empty() {
        table
    } else {
        table.get(section)?.as_table()?
    };
    section.get(name)
}

/// Every key's range, checked against `config`: the first value out of range is an
/// error naming the key.
pub(crate) fn check_ranges(config: &ServerConfig) -> Result<(), ConfigError> {
    let table = toml::Table::try_from(config).map_err(|e| ConfigError::Invalid {
        key: "configuration",
        problem: e.to_string(),
    })?;
    for key in KEYS {
        let (Some((min, max)), Some(value)) = (key.range, lookup(&table, key.path)) else {
            continue;
        };
        let ok = value
            .as_integer()
            .and_then(|v| u64::try_from(v).ok())
            .is_some_and(|v| (min..=max).contains(&v));
        if !ok {
            return Err(ConfigError::Invalid {
                key: key.path,
                problem: format!("must be {min} to {max}"),
            });
        }
    }
    Ok(())
}

/// The `VCOM_*` variables among `vars` that name no key (other programs and tests use
/// the prefix too): `overlay_env` leaves them alone, and `vcom-server` warns of each.
pub fn unknown_env_vars(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    vars.into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.strip_prefix("VCOM_").is_some_and(|rest| {
                name != "VCOM_PACKET_TAP" && find(&rest.to_lowercase().replace("__", ".")).is_none()
            })
        })
        .collect()
}

/// Lays the environment's `VCOM_*` variables over a parsed file: each that names a key
/// (see [`Key::env_var`]) sets it; a number, a boolean or a list is written as in TOML,
/// a string as it is. Others are left alone (see [`unknown_env_vars`]).
pub(crate) fn overlay_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let defaults = defaults();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("VCOM_") else {
            continue;
        };
        let path = rest.to_lowercase().replace("__", ".");
        let Some(key) = find(&path) else {
            continue;
        };
        let is_string = match lookup(&defaults, key.path) {
            Some(default) => default.is_str(),
            None => key.example.is_some_and(|e| e.starts_with('"')),
        };
        let parsed = if is_string {
            toml::Value::String(value)
        } else {
            let doc: toml::Table =
                toml::from_str(&format!("v = {value}")).map_err(|_| ConfigError::Env {
                    name: name.clone(),
                    message: format!("{value:?} is not a value for {}", key.path),
                })?;
            doc.get("v").cloned().ok_or_else(|| ConfigError::Env {
                name: name.clone(),
                message: format!("{value:?} is not a value for {}", key.path),
            })?
        };
        let (section, field) = key.split();
        let target = if section.is_empty() {
            &mut *table
        } else {
            table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| ConfigError::Env {
                    name: name.clone(),
                    message: format!("`{section}` in the file is not a table"),
                })?
        };
        target.insert(field.to_owned(), parsed);
        // Each variable is tried as it is laid on, so a value of the wrong kind is
        // reported with the variable's name.
        if let Err(e) = ServerConfig::deserialize(table.clone()) {
            let message = e.to_string();
            return Err(ConfigError::Env {
                name,
                message: format!(
                    "{} (for {})",
                    message.lines().next().unwrap_or("not a value for its key"),
                    key.path
                ),
            });
        }
    }
    Ok(())
}

/// A value as the example and the docs show it.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The complete commented configuration `vcom-server config example` prints: every key
/// with what it means, its range, its environment variable and its default.
pub fn example() -> String {
    let defaults = defaults();
    let mut out = String::from(
        "# vcom.toml: every key of vcom-server, each set to its default and commented out.\n\
         # Uncomment and change what you need; put the file in the data directory or pass\n\
         # --config FILE. Layers, each over the one before: these defaults, the file, the\n\
         # environment (VCOM_KEY, or VCOM_TABLE__KEY for a key in a table), the flags.\n\
         # Check a configuration with `vcom-server check`.\n",
    );
    for (table, about) in TABLES {
        out.push('\n');
        if !table.is_empty() {
            let _ = writeln!(out, "[{table}]");
        }
        for line in wrap(about, 86) {
            let _ = writeln!(out, "# {line}");
        }
        for key in KEYS.iter().filter(|k| k.split().0 == *table) {
            out.push('\n');
            for line in wrap(key.doc, 86) {
                let _ = writeln!(out, "# {line}");
            }
            let mut facts = Vec::new();
            if let Some((min, max)) = key.range {
                facts.push(format!("Range: {min} to {max}."));
            }
            facts.push(format!("Environment: {}.", key.env_var()));
            let _ = writeln!(out, "# {}", facts.join(" "));
            let value = lookup(&defaults, key.path)
                .map(shown)
                .or_else(|| key.example.map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "#{} = {value}", key.split().1);
        }
    }
    out
}

/// The key tables of `docs/configuration.md`.
pub fn markdown() -> String {
    let defaults = defaults();
    let mut out = String::new();
    for (table, about) in TABLES {
        if table.is_empty() {
            out.push_str("### Top-level keys\n\n");
        } else {
            let _ = writeln!(out, "### `[{table}]`\n");
            let _ = writeln!(out, "{about}\n");
        }
        out.push_str("| key | default | range | environment | meaning |\n|---|---|---|---|---|\n");
        for key in KEYS.iter().filter(|k| k.split().0 == *table) {
            let default = lookup(&defaults, key.path)
                .map(|v| format!("`{}`", shown(v)))
                .unwrap_or_else(|| "none".to_owned());
            let range = key
                .range
                .map(|(min, max)| format!("{min}-{max}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {default} | {range} | `{}` | {} |",
                key.split().1,
                key.env_var(),
                key.doc
            );
        }
        out.push('\n');
    }
    out
}

/// Breaks `text` into lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
