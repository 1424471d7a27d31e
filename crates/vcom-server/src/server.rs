//! [`Server`]: binds the listener, runs the accept loop, and shuts down gracefully.
//!
//! Shutdown stops accepting, tells every connection to finish what it has queued and
//! close, waits for them (bounded), and then closes the store, so nothing accepted is
//! lost.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vcom_protocol::Limits;
use vcom_store::{PostgresStore, SqliteStore, Store, StoreConfig, StoreError};

use crate::admin::{AdminHandle, AdminSocket};
use crate::config::{ServerConfig, StoreBackend};
use crate::directory::Directory;
use crate::policy::PolicyCache;
use crate::session::Registry;
use crate::stats::Stats;
use crate::tap::Tap;
use crate::tls::{ServerTls, TlsError};
use crate::transfer::Transfers;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not be opened or failed. Its message is part of this one (and
    /// not a `source`, so a printed error chain says it once).
    #[error("store: {0}")]
    Store(StoreError),
    /// The listener or the admin socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address or socket path.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<StoreError> for ServerError {
    fn from(error: StoreError) -> Self {
        ServerError::Store(error)
    }
}

/// State shared by every task of one server.
pub(crate) struct Shared<S> {
    pub(crate) config: ServerConfig,
    pub(crate) limits: Limits,
    pub(crate) store: S,
    /// Users, block lists, groups and device counts, kept in memory for the message path.
    pub(crate) directory: Directory,
    pub(crate) sessions: Registry,
    pub(crate) policy: RwLock<PolicyCache>,
    /// Wrong server passwords per address.
    pub(crate) throttle: crate::throttle::Throttle,
    pub(crate) transfers: Transfers,
    pub(crate) stats: Stats,
    pub(crate) tap: Arc<Tap>,
    /// Permits for connections that have not logged in yet.
    pub(crate) pending_logins: Arc<tokio::sync::Semaphore>,
    /// The same, per address.
    pub(crate) pending_per_ip: Arc<crate::pending::PendingLogins>,
    /// Cancelled when the server shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Held by every group change, a client's or the administrator's (see `groups`).
    pub(crate) group_changes: crate::groups::ChangeLock,
    /// This node's part in a cluster (inert on a single node).
    pub(crate) cluster: crate::cluster::Cluster,
}

impl<S> Shared<S> {
    pub(crate) fn policy(&self) -> std::sync::RwLockReadGuard<'_, PolicyCache> {
        // The cache is replaced whole under the write lock; a poisoned lock still holds
        // a complete cache.
        self.policy.read().unwrap_or_else(|p| p.into_inner())
    }
}

type CloseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Stops a running [`Server`] from another task.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Begins a graceful shutdown; [`Server::run`] returns once it is complete.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// A bound vCom server, ready to [`run`](Server::run).
pub struct Server<S: Store = SqliteStore> {
    shared: Arc<Shared<S>>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    admin_socket: Option<AdminSocket>,
    /// The metrics endpoint's listener, when `metrics_listen` is set.
    metrics: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    local_addr: SocketAddr,
    cert_sha256: String,
    close_store: Option<Box<dyn FnOnce() -> CloseFuture + Send>>,
}

impl Server<SqliteStore> {
    /// Creates the data directory, opens (or creates) the SQLite store and the TLS
    /// certificate in it, binds the listener and the admin socket.
    ///
    /// Refuses a configuration with `[store] backend = "postgres"`: that one is bound
    /// by [`ConfiguredServer::bind`] (or [`Server::bind_postgres`]).
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
        if config.store.backend != StoreBackend::Sqlite {
            return Err(ServerError::Config(crate::ConfigError::Invalid {
                key: "store.backend",
                problem: "is not \"sqlite\": bind the server with ConfiguredServer::bind".into(),
            }));
        }
        if config.cluster.nats_url.is_some() {
            return Err(ServerError::Config(crate::ConfigError::Invalid {
                key: "cluster.nats_url",
                problem:
                    "a cluster shares one PostgreSQL database: set store.backend = \"postgres\""
                        .into(),
            }));
        }
        create_data_dir(&config)?;
        private_database(&config)?;
        let store_config = store_config(&config);
        let path = config.database_path();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, store_config))
            .await
            .map_err(|e| StoreError::Migration(format!("store open task failed: {e}")))??;
        let closer = store.clone();
        let mut server = Self::with_store(config, store).await?;
        server.close_store = Some(Box::new(move || {
            Box::pin(async move { closer.close().await })
        }));
        Ok(server)
    }
}

impl Server<PostgresStore> {
    /// Connects to the PostgreSQL database at `[store] postgres_url` (creating or
    /// migrating its schema), creates the data directory and the TLS certificate in
    /// it, binds the listener and the admin socket. Several nodes may share the
    /// database.
    pub async fn bind_postgres(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let Some(url) = config.store.postgres_url.clone() else {
            return Err(ServerError::Config(crate::ConfigError::Invalid {
                key: "store.postgres_url",
                problem: "must be set to bind a server on PostgreSQL".into(),
            }));
        };
        let store = PostgresStore::connect(&url, store_config(&config)).await?;
        let closer = store.clone();
        let mut server = Self::with_store(config, store).await?;
        server.close_store = Some(Box::new(move || {
            Box::pin(async move { closer.close().await })
        }));
        Ok(server)
    }
}

/// A server on the database its configuration names (`[store] backend`): what
/// `vcom-server serve` runs.
pub enum ConfiguredServer {
    /// On SQLite in the data directory.
    Sqlite(Server<SqliteStore>),
    /// On PostgreSQL, shared with other nodes.
    Postgres(Server<PostgresStore>),
}

impl ConfiguredServer {
    /// Binds the server on the configured backend (see [`Server::bind`] and
    /// [`Server::bind_postgres`]).
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        Ok(match config.store.backend {
            StoreBackend::Sqlite => ConfiguredServer::Sqlite(Server::bind(config).await?),
            StoreBackend::Postgres => {
                ConfiguredServer::Postgres(Server::bind_postgres(config).await?)
            }
        })
    }

    /// See [`Server::local_addr`].
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            ConfiguredServer::Sqlite(server) => server.local_addr(),
            ConfiguredServer::Postgres(server) => server.local_addr(),
        }
    }

    /// See [`Server::metrics_addr`].
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        match self {
            ConfiguredServer::Sqlite(server) => server.metrics_addr(),
            ConfiguredServer::Postgres(server) => server.metrics_addr(),
        }
    }

    /// See [`Server::cert_sha256`].
    pub fn cert_sha256(&self) -> &str {
        match self {
            ConfiguredServer::Sqlite(server) => server.cert_sha256(),
            ConfiguredServer::Postgres(server) => server.cert_sha256(),
        }
    }

    /// See [`Server::cluster_status`].
    pub fn cluster_status(&self) -> crate::ClusterStatus {
        match self {
            ConfiguredServer::Sqlite(server) => server.cluster_status(),
            ConfiguredServer::Postgres(server) => server.cluster_status(),
        }
    }

    /// See [`Server::shutdown_handle`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        match self {
            ConfiguredServer::Sqlite(server) => server.shutdown_handle(),
            ConfiguredServer::Postgres(server) => server.shutdown_handle(),
        }
    }

    /// See [`Server::run`].
    pub async fn run(self) -> Result<(), ServerError> {
        match self {
            ConfiguredServer::Sqlite(server) => server.run().await,
            ConfiguredServer::Postgres(server) => server.run().await,
        }
    }
}

/// The store settings that follow from the server's `[retention]` keys (0 = no limit).
fn store_config(config: &ServerConfig) -> StoreConfig {
    let r = &config.retention;
    StoreConfig {
        delivered_max_age: (r.delivered_max_age_days > 0)
            .then(|| Duration::from_secs(r.delivered_max_age_days.saturating_mul(24 * 3600))),
        delivered_max_count: (r.delivered_max_count > 0).then_some(r.delivered_max_count),
        pending_cap_per_user: (r.pending_per_user > 0).then_some(r.pending_per_user),
        pending_per_sender: (r.pending_per_sender > 0).then_some(r.pending_per_sender),
        transfer_log_max: (r.transfer_log_max > 0).then_some(r.transfer_log_max),
        devices_per_user: (r.devices_per_user > 0).then_some(r.devices_per_user),
        ..StoreConfig::default()
    }
}

/// Pending connections the kernel queues for `accept`: sized for login storms. With the
/// usual 128, a burst of a thousand logins overflowed the queue and each dropped SYN
/// cost its client a one-second retry. (Linux caps it at `net.core.somaxconn`.)
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's `TcpListener::bind` does: a restart may bind while old connections of
    // the previous process linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Creates the data directory readable by the server's user only (mode 0700).
fn create_data_dir(config: &ServerConfig) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })
}

/// Creates the database file readable by the server's user only (0600) before SQLite
/// opens it: SQLite gives its journal files the database's mode, so no message is ever
/// readable by another local user. An existing database that others could read is made
/// private, with a warning.
fn private_database(config: &ServerConfig) -> Result<(), ServerError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let db = config.database_path();
    let error = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| ServerError::DataDir { path, source }
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .map_err(error(&db))?;
    for file in [
        db.clone(),
        db.with_extension("sqlite3-wal"),
        db.with_extension("sqlite3-shm"),
    ] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %file.display(), "database file was readable by other users: made private (0600)");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(error(&file))?;
        }
    }
    Ok(())
}

impl<S: Store> Server<S> {
    /// Binds a server over an already opened store.
    pub async fn with_store(config: ServerConfig, store: S) -> Result<Self, ServerError> {
        config.validate()?;
        create_data_dir(&config)?;
        let tls = ServerTls::load_or_generate(&config)?;
        let policy = PolicyCache::new(&store.policy().await?);
        let first_transfer = store.max_transfer_id().await?;
        let directory = Directory::load(&store).await?;
        let listener = listen(config.listen).map_err(|source| ServerError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            limits: config.protocol_limits(),
            store,
            directory,
            sessions: Registry::default(),
            policy: RwLock::new(policy),
            throttle: crate::throttle::Throttle::new(config.throttle_rules()),
            transfers: Transfers::new(first_transfer),
            stats: Stats::default(),
            tap: Arc::new(Tap::new(config.packet_tap.clone())),
            pending_logins: Arc::new(tokio::sync::Semaphore::new(config.max_pending_logins)),
            pending_per_ip: crate::pending::PendingLogins::new(config.max_pending_logins_per_ip),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            group_changes: crate::groups::ChangeLock::default(),
            cluster: crate::cluster::Cluster::new(&config.cluster),
            config,
        });
        let admin_socket = Some(AdminSocket::bind(&shared.config.admin_socket_path())?);
        let metrics = match shared.config.metrics_listen {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ServerError::Bind {
                            addr: format!("{addr} (metrics_listen)"),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        shared.cluster.name_default(local_addr.port());
        Ok(Server {
            metrics,
            metrics_addr,
            acceptor: TlsAcceptor::from(tls.config.clone()),
            cert_sha256: tls.cert_sha256,
            shared,
            listener,
            admin_socket,
            local_addr,
            close_store: None,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics endpoint, when `metrics_listen` is set (with the real
    /// port when bound to port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// SHA-256 of the server's certificate, lower-case hex: what clients pin.
    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }

    /// Whether this node hears the other nodes of its cluster (`[cluster] nats_url`).
    pub fn cluster_status(&self) -> crate::ClusterStatus {
        self.shared.cluster.status()
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.shutdown.clone())
    }

    /// The administrator's commands, in process (what `admin.sock` calls).
    pub fn admin(&self) -> AdminHandle<S> {
        AdminHandle::new(self.shared.clone())
    }

    /// Serves until shut down, then finishes in-flight work and closes the store.
    pub async fn run(mut self) -> Result<(), ServerError> {
        let shared = self.shared.clone();
        if let Some(socket) = self.admin_socket.take() {
            let admin = AdminHandle::new(shared.clone());
            shared
                .tasks
                .spawn(socket.serve(admin, shared.shutdown.clone()));
        }
        if let Some(listener) = self.metrics.take() {
            tracing::info!(addr = ?self.metrics_addr, "metrics endpoint listening (GET /metrics)");
            shared
                .tasks
                .spawn(crate::metrics::serve(shared.clone(), listener));
        }
        shared.tasks.spawn(crate::transfer::sweep(shared.clone()));
        shared.tasks.spawn(retention(shared.clone()));
        if shared.cluster.enabled() {
            shared.tasks.spawn(crate::cluster::run(shared.clone()));
        }
        tracing::info!(addr = %self.local_addr, "vcom-server listening");
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        Stats::bump(&shared.stats.connections);
                        let acceptor = self.acceptor.clone();
                        shared.tasks.spawn(crate::connection::serve(shared.clone(), acceptor, tcp, addr));
                    }
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        tracing::info!("shutting down: closing sessions");
        drop(self.listener);
        shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(15), shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 15 s");
        }
        if let Some(close) = self.close_store.take() {
            close().await;
        }
        shared.tap.write();
        let _ = std::fs::remove_file(shared.config.admin_socket_path());
        tracing::info!("vcom-server stopped");
        Ok(())
    }
}

/// Applies the retention rules once an hour (and once at start).
async fn retention<S: Store>(shared: Arc<Shared<S>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tick.tick() => match shared.store.prune(crate::now()).await {
                Ok(report) if report.messages_deleted > 0 || report.transfers_deleted > 0 => {
                    tracing::info!(
                        messages = report.messages_deleted,
                        transfer_log_rows = report.transfers_deleted,
                        "retention removed delivered messages and old transfer-log rows"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention pass failed"),
            },
        }
    }
}
