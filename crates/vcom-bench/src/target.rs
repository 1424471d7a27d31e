//! The servers under test as processes: `vcom-server` on a fresh data directory, the
//! relay (this program, `vcom-bench relay`), or a peer. Each is started on a free port
//! of 127.0.0.1 for one measurement and stopped by its process id afterwards.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::peers::{PeerKind, PeerServer};
use crate::vcom::{Identities, Vcom};
use crate::wire::{Protocol, Workload};
use crate::workloads::ServerProcess;

/// How long a server may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// The real server: this `vcom-server` binary.
    Vcom(PathBuf),
    /// The no-store relay.
    Relay,
    /// A peer.
    Peer(PeerKind),
}

impl TargetKind {
    /// The name rows carry.
    pub fn name(&self) -> String {
        match self {
            TargetKind::Vcom(_) => "vcom".to_owned(),
            TargetKind::Relay => "relay".to_owned(),
            TargetKind::Peer(kind) => kind.name().to_owned(),
        }
    }
}

/// The settings of vcom-server that bear on fairness.
pub const VCOM_SETTINGS: &str = "SQLite in WAL mode with synchronous=FULL: every message is \
    committed (fsync) before it is relayed; defaults of vcom.toml except no cap on a user's \
    undelivered messages, in all or from one sender (retention.pending_per_user = 0, \
    pending_per_sender = 0, for the backlog); logs at warn";
/// The relay's.
pub const RELAY_SETTINGS: &str = "nothing stored or checked; messages for offline users kept \
    in memory; the same TLS 1.3 handshake with client certificates as vcom-server";

/// A running target.
pub struct Running {
    /// How the workloads speak to it.
    pub protocol: Arc<dyn Protocol>,
    /// The vCom view of it (vcom-server and relay), for the file workload.
    pub vcom: Option<Arc<Vcom>>,
    /// Its process, for memory and CPU.
    pub process: ServerProcess,
    handle: Handle,
}

enum Handle {
    Child(Child, Option<tempfile::TempDir>),
    Peer(PeerServer),
}

impl Running {
    /// Starts `kind` for `users` users of `workload`; its log goes to `log_dir`.
    pub async fn start(
        kind: &TargetKind,
        identities: &Identities,
        users: usize,
        workload: Workload,
        log_dir: &Path,
    ) -> anyhow::Result<Running> {
        match kind {
            TargetKind::Vcom(bin) => {
                let dir = tempfile::Builder::new()
                    .prefix("vcom-bench-server-")
                    .tempdir()?;
                // The backlog workload stores a million messages for one user: more than
                // the default inbox cap (100 000) and sender's share (10 000), which
                // would refuse the rest.
                std::fs::write(
                    dir.path().join("vcom.toml"),
                    "[retention]\npending_per_user = 0\npending_per_sender = 0\n",
                )?;
                let mut command = Command::new(bin);
                command
                    .arg("serve")
                    .arg("--data-dir")
                    .arg(dir.path())
                    .arg("--listen")
                    .arg("127.0.0.1:0")
                    .env("RUST_LOG", "warn");
                let admin = dir.path().join("admin.sock");
                let (child, addr, fp) = spawn_ready(
                    command,
                    "vcom-server ready",
                    &log_dir.join("vcom-server.log"),
                )
                .await?;
                let vcom = Arc::new(Vcom::new(
                    "vcom",
                    addr,
                    &fp,
                    identities.clone(),
                    Some(admin),
                    VCOM_SETTINGS.to_owned(),
                ));
                Ok(Running::child(vcom, child, Some(dir)))
            }
            TargetKind::Relay => {
                let exe = std::env::current_exe().context("cannot find this program")?;
                let mut command = Command::new(exe);
                command.args(["relay", "--listen", "127.0.0.1:0"]);
                let (child, addr, fp) = spawn_ready(
                    command,
                    "vcom-bench relay ready",
                    &log_dir.join("relay.log"),
                )
                .await?;
                let vcom = Arc::new(Vcom::new(
                    "relay",
                    addr,
                    &fp,
                    identities.clone(),
                    None,
                    RELAY_SETTINGS.to_owned(),
                ));
                Ok(Running::child(vcom, child, None))
            }
            TargetKind::Peer(kind) => {
                let peer = PeerServer::start_for(*kind, users, workload).await?;
                Ok(Running {
                    protocol: peer.protocol(),
                    vcom: None,
                    process: ServerProcess(Some(peer.pid())),
                    handle: Handle::Peer(peer),
                })
            }
        }
    }

    fn child(vcom: Arc<Vcom>, child: Child, dir: Option<tempfile::TempDir>) -> Running {
        Running {
            protocol: vcom.clone(),
            process: ServerProcess(child.id()),
            vcom: Some(vcom),
            handle: Handle::Child(child, dir),
        }
    }

    /// Stops the target (SIGTERM, then SIGKILL) and removes its files.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.handle {
            Handle::Peer(peer) => peer.stop().await,
            Handle::Child(mut child, dir) => {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
                if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!("server did not stop within {STOP_TIMEOUT:?}: killed");
                    child.kill().await?;
                }
                drop(dir);
                Ok(())
            }
        }
    }
}

/// Spawns a server that prints `<prefix> addr=<ip:port> cert-sha256=<hex>` when ready;
/// its stderr is appended to `log`.
async fn spawn_ready(
    mut command: Command,
    prefix: &str,
    log: &Path,
) -> anyhow::Result<(Child, std::net::SocketAddr, String)> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {prefix:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .with_context(|| {
            format!(
                "no ready line within {START_TIMEOUT:?} (see {})",
                log.display()
            )
        })??
        .with_context(|| format!("exited before it was ready (see {})", log.display()))?;
    let Some(rest) = line.strip_prefix(prefix) else {
        bail!("unexpected first line {line:?}");
    };
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .with_context(|| format!("no {name} in {line:?}"))
    };
    let addr = field("addr=")?.parse()?;
    let fp = field("cert-sha256=")?;
    // Keep reading stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr, fp))
}
