//! Server configuration: the `vcom.toml` keys, their defaults, and validation.
//!
//! Every key is optional; `docs/configuration.md` documents each one. Unknown keys are an
//! error, so a typo is reported instead of silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vcom_protocol::Limits;

pub mod keys;
pub use keys::{KEYS, Key};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// An environment variable (`VCOM_*`) names no key or holds no value for it.
    #[error("invalid environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config value `{key}`: {problem}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Whether user identifiers are bound to client keys (`docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The first login binds the identifier to the client certificate's key; later logins
    /// must present the same key (258 code 4 otherwise).
    #[default]
    Key,
    /// Identifiers are trusted as sent; client certificates are optional. For closed
    /// networks and old clients.
    Open,
}

/// Whether unknown user identifiers may log in and become known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Any valid identifier becomes a user on its first login.
    #[default]
    Open,
    /// Only identifiers the server already knows may log in (258 code 7 otherwise).
    Closed,
    /// A new identifier logs in only with a valid invitation token (`vcom-server admin
    /// invite create`), sent where the server password goes; known users log in as
    /// with `Open`.
    Token,
}

/// Where the TLS certificate and key come from.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`. Default: generated `DATA_DIR/tls/cert.pem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key; with `cert`. Default: generated `DATA_DIR/tls/key.pem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Extra DNS names or IP addresses for a generated certificate (besides `localhost`
    /// and `127.0.0.1`).
    pub names: Vec<String>,
}

/// Which database the store keeps everything in (`[store] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// SQLite, a file in the data directory: one node, nothing else to install.
    #[default]
    Sqlite,
    /// PostgreSQL at `postgres_url`: one database that several nodes may share.
    Postgres,
}

/// Where the store lives (`[store]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite` (default) or `postgres`.
    pub backend: StoreBackend,
    /// The PostgreSQL database (`postgres://user[:password]@host[:port]/db`); required
    /// with `backend = "postgres"`, unused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
}

/// Several nodes on one database (`[cluster]`): NATS tells them who is where and wakes
/// them. Absent `nats_url`: a single node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server (`nats://host:port`); `None`: this node is alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    /// This node's name, unique in the cluster; `None`: the host name and the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The first part of every NATS subject the cluster uses, so several clusters (or
    /// tests) can share one NATS server.
    pub subject_prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: None,
            node_name: None,
            subject_prefix: "vcom".to_owned(),
        }
    }
}

/// Message retention in the store.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delete messages delivered to every recipient after this many days (0 = keep).
    pub delivered_max_age_days: u64,
    /// Keep at most this many delivered messages (0 = no cap).
    pub delivered_max_count: u64,
    /// Keep at most this many undelivered messages per user; new ones beyond it are
    /// refused for that user, with a warning in the log; none accepted is dropped (0 =
    /// no cap).
    pub pending_per_user: u64,
    /// Of those, at most this many from one sender; more from that sender are refused
    /// for that user in the same way (0 = no quota).
    pub pending_per_sender: u64,
    /// Keep at most this many transfer-log rows, the newest (0 = keep all).
    pub transfer_log_max: u64,
    /// Keep at most this many devices per user: a login that issues one more retires
    /// the user's least recently seen devices, with a warning in the log (0 = no cap).
    pub devices_per_user: u64,
}

impl Default for RetentionConfig {
    /// The store's own defaults (`vcom_store::StoreConfig`): one default per setting.
    fn default() -> Self {
        let store = vcom_store::StoreConfig::default();
        let days = |age: Option<Duration>| age.map_or(0, |a| a.as_secs() / (24 * 3600));
        RetentionConfig {
            delivered_max_age_days: days(store.delivered_max_age),
            delivered_max_count: store.delivered_max_count.unwrap_or(0),
            pending_per_user: store.pending_cap_per_user.unwrap_or(0),
            pending_per_sender: store.pending_per_sender.unwrap_or(0),
            transfer_log_max: store.transfer_log_max.unwrap_or(0),
            devices_per_user: store.devices_per_user.unwrap_or(0),
        }
    }
}

/// The decoder limits, as configured (`[limits]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest user identifier in bytes.
    pub max_user_id_len: usize,
    /// Longest server password in bytes.
    pub max_password_len: usize,
    /// Longest message (text or image) in bytes.
    pub max_message_len: usize,
    /// Most entries in a friend or block list.
    pub max_list_len: usize,
    /// Longest file name in bytes.
    pub max_file_name_len: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_user_id_len: l.max_user_id_len,
            max_password_len: l.max_password_len,
            max_message_len: l.max_message_len,
            max_list_len: l.max_list_len,
            max_file_name_len: l.max_file_name_len,
        }
    }
}

impl LimitsConfig {
    /// The protocol-crate limits these values stand for.
    pub fn limits(&self) -> Limits {
        Limits {
            max_user_id_len: self.max_user_id_len,
            max_password_len: self.max_password_len,
            max_message_len: self.max_message_len,
            max_list_len: self.max_list_len,
            max_file_name_len: self.max_file_name_len,
        }
    }
}

/// The whole server configuration. Every key is in [`KEYS`], with its range and meaning.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the database, TLS files and admin socket live (not a file key: set by
    /// `--data-dir`).
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Test-only: count every packet by identifier, direction and code, and write the
    /// counts to this file (JSON lines) when the server stops. Not a file key: the
    /// `vcom-server` program sets it from the `VCOM_PACKET_TAP` environment variable.
    #[serde(skip)]
    pub packet_tap: Option<PathBuf>,
    /// Address to listen on (default `127.0.0.1:7420`; [`ServerConfig::new`] picks a
    /// free port on 127.0.0.1 instead, for tests and embedding).
    pub listen: SocketAddr,
    /// The server password; when set, logins must send it (258 code 3 otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `key` (default) or `open`.
    pub auth: AuthMode,
    /// `open` (default) or `closed`.
    pub registration: Registration,
    /// Wrong server passwords one address may give before its logins wait.
    pub password_free_attempts: u32,
    /// The longest an address that keeps guessing the server password waits, in
    /// seconds (the wait doubles from 1 s with each further wrong one); 0 turns the
    /// throttle off.
    pub password_max_wait_secs: u64,
    /// Seconds a new connection has to complete TLS and log in.
    pub login_timeout_secs: u64,
    /// Seconds a file transfer may sit idle before it is aborted (270 reason 6).
    pub transfer_idle_timeout_secs: u64,
    /// Seconds a write to a client may take before the client is dropped as stuck.
    pub write_timeout_secs: u64,
    /// Seconds a logged-in client has to complete a packet it has begun sending.
    pub packet_timeout_secs: u64,
    /// Largest file a transfer may announce, in bytes (270 reason 1 beyond it).
    pub max_file_size: u64,
    /// Most logged-in connections at once (258 code 6 beyond it).
    pub max_connections: usize,
    /// Most logged-in connections from one IP address (0 = no limit).
    pub max_connections_per_ip: usize,
    /// File transfers one user may have in progress at once (offered or streaming);
    /// more are refused with 270 reason 4.
    pub max_transfers_per_user: usize,
    /// Client-side groups one user may own at once (GroupCreate refused with 523
    /// outcome 7 beyond it; 0: users create none).
    pub max_groups_per_user: usize,
    /// Members a client-side group may have (523 outcome 8 beyond it); never more than
    /// `limits.max_list_len`, the longest member list a client decodes.
    pub max_group_members: usize,
    /// File offers (268) one user may make a minute, refused or not; more are refused
    /// with 270 reason 4 and a warning, and write nothing (0 = no limit).
    pub file_offers_per_minute: u32,
    /// Packets queued for one client before it counts as not reading and is dropped.
    pub outbound_queue: usize,
    /// Connections that may be in the TLS handshake or login at once; more are closed
    /// at once (they have not logged in, so there is no one to answer).
    pub max_pending_logins: usize,
    /// Of those, how many may come from one IP address (0 = no per-address cap).
    pub max_pending_logins_per_ip: usize,
    /// Seconds a new connection has to complete the TLS handshake (at most
    /// `login_timeout_secs`): a socket that says nothing gives its place back soon.
    pub handshake_timeout_secs: u64,
    /// What the log shows: a `tracing` filter (`info`, `warn`, `vcom_server=debug`).
    /// `RUST_LOG`, when set, wins.
    pub log: String,
    /// Where to serve the Prometheus metrics (`GET /metrics`, plain HTTP); off unless
    /// set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `metrics_listen` may be an address other machines can reach.
    pub metrics_allow_remote: bool,
    /// Decoder limits.
    pub limits: LimitsConfig,
    /// TLS certificate and key.
    pub tls: TlsConfig,
    /// Which database the store uses.
    pub store: DatabaseConfig,
    /// Other nodes on the same database, and the NATS server between them.
    pub cluster: ClusterConfig,
    /// Message retention.
    pub retention: RetentionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("vcom-data"),
            packet_tap: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            password: None,
            auth: AuthMode::Key,
            registration: Registration::Open,
            password_free_attempts: 5,
            password_max_wait_secs: 300,
            login_timeout_secs: 10,
            transfer_idle_timeout_secs: 60,
            write_timeout_secs: 30,
            packet_timeout_secs: 60,
            max_file_size: i32::MAX as u64,
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_transfers_per_user: 16,
            max_groups_per_user: 20,
            max_group_members: 500,
            file_offers_per_minute: 120,
            outbound_queue: 1024,
            max_pending_logins: 1024,
            max_pending_logins_per_ip: 32,
            handshake_timeout_secs: 5,
            log: "info".to_owned(),
            metrics_listen: None,
            metrics_allow_remote: false,
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            store: DatabaseConfig::default(),
            cluster: ClusterConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl ServerConfig {
    /// The defaults, with data in `data_dir` and a free port on 127.0.0.1.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerConfig::default()
        }
    }

    /// Parses TOML text (every key optional) and validates it.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        Self::layered(Some((text, origin)), std::iter::empty())
    }

    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::load(Some(path), std::iter::empty())
    }

    /// The configuration in layers, each over the one before: the defaults, the file
    /// (if any), then the environment's `VCOM_*` variables (`vars`, see
    /// [`Key::env_var`]). Flags go over the result (the caller's). Validated.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::layered(text.as_deref().zip(file), vars)
    }

    fn layered(
        file: Option<(&str, &Path)>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some((text, origin)) => {
                // The file alone first: its errors name the line.
                toml::from_str::<ServerConfig>(text).map_err(|e| parse_error(text, origin, &e))?;
                toml::from_str::<toml::Table>(text).map_err(|e| parse_error(text, origin, &e))?
            }
            None => toml::Table::new(),
        };
        keys::overlay_env(&mut table, vars)?;
        let config = ServerConfig::deserialize(table).map_err(|e| ConfigError::Env {
            name: "VCOM_*".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value's range ([`KEYS`]) and the rules between keys: a value the
    /// server could not run with, or that would only make sense by mistake, is an error
    /// naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        keys::check_ranges(self)?;
        if let Some(p) = &self.password
            && p.len() > self.limits.max_password_len
        {
            return Err(ConfigError::Invalid {
                key: "password",
                problem: "is longer than limits.max_password_len".into(),
            });
        }
        if let Some(addr) = self.metrics_listen
            && !addr.ip().is_loopback()
            && !self.metrics_allow_remote
        {
            return Err(ConfigError::Invalid {
                key: "metrics_listen",
                problem: format!(
                    "{addr} is reachable from other machines: metrics are plain HTTP with no \
                     login; use a loopback address, or set metrics_allow_remote = true"
                ),
            });
        }
        if self.store.backend == StoreBackend::Postgres && self.store.postgres_url.is_none() {
            return Err(ConfigError::Invalid {
                key: "store.postgres_url",
                problem: "must be set when store.backend = \"postgres\"".into(),
            });
        }
        let prefix = &self.cluster.subject_prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid {
                key: "cluster.subject_prefix",
                problem: "must be letters, digits, '-' or '_' (one NATS subject token)".into(),
            });
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls",
                problem: "set both `cert` and `key`, or neither".into(),
            });
        }
        Ok(())
    }

    /// The decoder limits.
    pub fn protocol_limits(&self) -> Limits {
        self.limits.limits()
    }

    /// How wrong server passwords are throttled.
    pub(crate) fn throttle_rules(&self) -> crate::throttle::ThrottleRules {
        crate::throttle::ThrottleRules {
            free_attempts: self.password_free_attempts,
            max_wait: Duration::from_secs(self.password_max_wait_secs),
        }
    }

    /// The TLS handshake timeout (never longer than the login timeout).
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs.min(self.login_timeout_secs))
    }

    /// The login timeout.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }

    /// The transfer idle timeout.
    pub fn transfer_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.transfer_idle_timeout_secs)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// How long a logged-in client may take to complete a packet it has begun.
    pub fn packet_timeout(&self) -> Duration {
        Duration::from_secs(self.packet_timeout_secs)
    }

    /// The SQLite database file (with `[store] backend = "sqlite"`).
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("vcom.sqlite3")
    }

    /// The admin socket.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }
}

/// A TOML error as one line naming the file, the line and the key at fault.
fn parse_error(text: &str, origin: &Path, e: &toml::de::Error) -> ConfigError {
    ConfigError::Parse {
        path: origin.to_owned(),
        message: match e.span() {
            Some(span) => {
                let start = span.start.min(text.len());
                let line_no = text.as_bytes()[..start]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                format!("line {line_no} (`{line}`): {}", e.message())
            }
            None => e.message().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = ServerConfig::from_toml("", Path::new("vcom.toml")).unwrap();
        assert_eq!(c, ServerConfig::default());
    }

    #[test]
    fn every_documented_key_parses() {
        let text = r#"
            listen = "0.0.0.0:7420"
            password = "hunter2"
            auth = "open"
            registration = "closed"
            login_timeout_secs = 5
            transfer_idle_timeout_secs = 30
            write_timeout_secs = 10
            max_file_size = 1048576
            max_connections = 10
            max_connections_per_ip = 2
            outbound_queue = 64
            max_pending_logins = 10
            [limits]
            max_user_id_len = 32
            max_password_len = 64
            max_message_len = 65536
            max_list_len = 100
            max_file_name_len = 100
            [tls]
            cert = "/etc/vcom/cert.pem"
            key = "/etc/vcom/key.pem"
            names = ["chat.example.org"]
            [store]
            backend = "postgres"
            postgres_url = "postgres://vcom@127.0.0.1:5432/vcom"
            [retention]
            delivered_max_age_days = 7
            delivered_max_count = 1000
            pending_per_user = 500
        "#;
        let c = ServerConfig::from_toml(text, Path::new("vcom.toml")).unwrap();
        assert_eq!(c.auth, AuthMode::Open);
        assert_eq!(c.registration, Registration::Closed);
        assert_eq!(c.limits.max_user_id_len, 32);
        assert_eq!(c.retention.pending_per_user, 500);
        assert_eq!(c.tls.names, vec!["chat.example.org".to_string()]);
        assert_eq!(c.store.backend, StoreBackend::Postgres);
    }

    #[test]
    fn the_postgres_backend_needs_its_url() {
        let err =
            ServerConfig::from_toml("[store]\nbackend = \"postgres\"", Path::new("vcom.toml"))
                .unwrap_err();
        assert!(err.to_string().contains("store.postgres_url"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let err = ServerConfig::from_toml("pasword = \"x\"", Path::new("vcom.toml")).unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
    }

    #[test]
    fn an_out_of_range_value_is_an_error_naming_the_key() {
        let err = ServerConfig::from_toml("max_file_size = 0", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("max_file_size"), "{err}");
        let err = ServerConfig::from_toml("[tls]\ncert = \"a\"", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("tls"), "{err}");
    }

    /// Every numeric key: (table, name).
    fn numeric_keys() -> Vec<(&'static str, &'static str)> {
        KEYS.iter()
            .filter(|k| k.range.is_some())
            .map(Key::split)
            .collect()
    }

    fn with_value(table: &str, key: &str, value: &str) -> String {
        if table.is_empty() {
            format!("{key} = {value}\n")
        } else {
            format!("[{table}]\n{key} = {value}\n")
        }
    }

    /// A huge value of any numeric key is refused with one line naming the key, never
    /// taken (a timeout of 2^63 seconds would overflow the clock, a queue that long
    /// would be no bound).
    #[test]
    fn a_huge_value_of_any_numeric_key_is_an_error_naming_it() {
        for (table, key) in numeric_keys() {
            for value in ["9223372036854775807", "4294967296000"] {
                let text = with_value(table, key, value);
                let err = ServerConfig::from_toml(&text, Path::new("c.toml"))
                    .expect_err(&format!("{key} = {value} was accepted"));
                let line = err.to_string();
                assert!(line.contains(key), "{key} = {value}: {line}");
                assert!(!line.contains('\n'), "one line: {line}");
            }
        }
    }

    /// Zero, one and a negative number: each is taken or refused naming the key.
    #[test]
    fn small_and_negative_values_are_taken_or_refused_naming_the_key() {
        for (table, key) in numeric_keys() {
            for value in ["-1", "0", "1"] {
                let text = with_value(table, key, value);
                match ServerConfig::from_toml(&text, Path::new("c.toml")) {
                    Ok(_) => assert_ne!(value, "-1", "{key} = -1 was accepted"),
                    Err(err) => {
                        let line = err.to_string();
                        assert!(line.contains(key), "{key} = {value}: {line}");
                    }
                }
            }
        }
    }

    /// Every leaf of the configuration (defaults, and the keys without one) has an
    /// entry in [`KEYS`], and every entry is a key: the table cannot drift from the
    /// struct.
    #[test]
    fn every_key_of_the_configuration_is_in_the_table_and_no_other() {
        let with_all = ServerConfig {
            password: Some("x".into()),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9420))),
            tls: TlsConfig {
                cert: Some("c".into()),
                key: Some("k".into()),
                names: Vec::new(),
            },
            store: DatabaseConfig {
                backend: StoreBackend::Sqlite,
                postgres_url: Some("u".into()),
            },
            cluster: ClusterConfig {
                nats_url: Some("n".into()),
                node_name: Some("a".into()),
                ..ClusterConfig::default()
            },
            ..ServerConfig::default()
        };
        let table = toml::Table::try_from(&with_all).unwrap();
        let mut leaves = Vec::new();
        for (name, value) in &table {
            match value.as_table() {
                Some(inner) => leaves.extend(inner.keys().map(|k| format!("{name}.{k}"))),
                None => leaves.push(name.clone()),
            }
        }
        leaves.sort();
        let mut listed: Vec<String> = KEYS.iter().map(|k| k.path.to_owned()).collect();
        listed.sort();
        assert_eq!(leaves, listed);
    }

    /// `vcom-server config example` with every line uncommented is a valid file that
    /// gives the defaults (and the examples for keys that have no default).
    #[test]
    fn the_generated_example_uncommented_gives_the_defaults() {
        let example = keys::example();
        let uncommented: String = example
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = ServerConfig::from_toml(&uncommented, Path::new("example")).unwrap();
        let expected = ServerConfig {
            password: Some("correct horse battery staple".into()),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9420))),
            tls: TlsConfig {
                cert: Some("/etc/vcom/cert.pem".into()),
                key: Some("/etc/vcom/key.pem".into()),
                names: Vec::new(),
            },
            store: DatabaseConfig {
                backend: StoreBackend::Sqlite,
                postgres_url: Some("postgres://vcom@127.0.0.1:5432/vcom".into()),
            },
            cluster: ClusterConfig {
                nats_url: Some("nats://127.0.0.1:4222".into()),
                node_name: Some("node-a".into()),
                ..ClusterConfig::default()
            },
            ..ServerConfig::default()
        };
        assert_eq!(parsed, expected);
        for key in KEYS {
            assert!(example.contains(&key.env_var()), "{}", key.path);
        }
    }

    /// The key tables of `docs/configuration.md` are [`keys::markdown`], between its
    /// markers. To regenerate them: `VCOM_UPDATE_DOCS=1 cargo test -p vcom-server
    /// config`.
    #[test]
    fn the_key_tables_in_the_docs_are_generated_from_the_table() {
        const BEGIN: &str = "<!-- keys: generated from crates/vcom-server/src/config/keys.rs -->\n";
        const END: &str = "<!-- keys: end -->";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (before, rest) = doc.split_once(BEGIN).expect("the begin marker");
        let (current, after) = rest.split_once(END).expect("the end marker");
        let generated = keys::markdown();
        if current != generated {
            if std::env::var_os("VCOM_UPDATE_DOCS").is_some() {
                std::fs::write(&path, format!("{before}{BEGIN}{generated}{END}{after}")).unwrap();
            } else {
                panic!(
                    "docs/configuration.md's key tables are out of date: run \
                     VCOM_UPDATE_DOCS=1 cargo test -p vcom-server config"
                );
            }
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Each layer goes over the one before: defaults, then the file, then the
    /// environment (numbers, strings, lists, keys in tables).
    #[test]
    fn the_environment_goes_over_the_file_and_the_file_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vcom.toml");
        std::fs::write(
            &file,
            "max_connections = 10\nwrite_timeout_secs = 5\n[limits]\nmax_message_len = 2048\n",
        )
        .unwrap();
        let c = ServerConfig::load(
            Some(&file),
            vars(&[
                ("VCOM_MAX_CONNECTIONS", "20"),
                ("VCOM_LIMITS__MAX_MESSAGE_LEN", "4096"),
                ("VCOM_PASSWORD", "from the environment"),
                ("VCOM_AUTH", "open"),
                ("VCOM_TLS__NAMES", "[\"chat.example.org\"]"),
                ("VCOM_PACKET_TAP", "/tmp/not-a-key"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.max_connections, 20, "environment over file");
        assert_eq!(c.write_timeout_secs, 5, "file over default");
        assert_eq!(c.login_timeout_secs, 10, "default");
        assert_eq!(c.limits.max_message_len, 4096);
        assert_eq!(c.password.as_deref(), Some("from the environment"));
        assert_eq!(c.auth, AuthMode::Open);
        assert_eq!(c.tls.names, vec!["chat.example.org".to_owned()]);
        let from_env_only =
            ServerConfig::load(None, vars(&[("VCOM_MAX_CONNECTIONS", "7")])).unwrap();
        assert_eq!(from_env_only.max_connections, 7);
    }

    /// A variable that holds no value for its key, or puts it out of range, is one line
    /// naming it. One that names no key is left alone, and listed for a warning.
    #[test]
    fn a_bad_environment_variable_is_an_error_naming_it() {
        let typo = vars(&[("VCOM_MAX_CONECTIONS", "5"), ("VCOM_LIMITS__NOPE", "1")]);
        assert_eq!(
            ServerConfig::load(None, typo.clone()).unwrap(),
            ServerConfig::default()
        );
        assert_eq!(
            keys::unknown_env_vars(typo),
            ["VCOM_MAX_CONECTIONS", "VCOM_LIMITS__NOPE"]
        );
        for (name, value, says) in [
            ("VCOM_MAX_CONNECTIONS", "many", "VCOM_MAX_CONNECTIONS"),
            ("VCOM_MAX_CONNECTIONS", "0", "max_connections"),
            ("VCOM_AUTH", "maybe", "VCOM_AUTH"),
        ] {
            let err = ServerConfig::load(None, vars(&[(name, value)])).unwrap_err();
            let line = err.to_string();
            assert!(line.contains(says), "{name}={value}: {line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn the_example_in_the_configuration_docs_is_valid() {
        let doc = include_str!("../../../../docs/configuration.md");
        let example = doc
            .split("```toml")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/configuration.md has a toml example");
        let c = ServerConfig::from_toml(example, Path::new("configuration.md")).unwrap();
        assert_eq!(c.max_file_size, 104_857_600);
        assert_eq!(c.tls.names, vec!["chat.example.org".to_string()]);
    }
}
