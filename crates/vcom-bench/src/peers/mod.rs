//! The servers people pick instead of vCom ("peers"), run side by side with it
//! (`--peers`): Mosquitto (MQTT, at QoS 0 and at QoS 1), InspIRCd (IRC) and Prosody
//! (XMPP), each with a minimal hand-written client for the workloads (submodules `mqtt`,
//! `irc`, `xmpp`).
//!
//! [`ensure_installed`] installs their Debian packages when missing. [`PeerServer::start`]
//! runs one as a child process on a free port of 127.0.0.1, from its own temporary
//! directory holding its whole configuration and a fresh self-signed certificate, with
//! flood and rate limits off; [`PeerServer::stop`] ends it by PID and removes the
//! directory, and dropping a [`PeerServer`] kills the process, so no peer outlives the
//! bench.
//!
//! This module never reads or changes the system's own configuration or services of
//! these packages (a system Mosquitto may be listening on 1883: the peers have their own
//! ports and configuration files), and never measures anything itself.

mod irc;
mod mqtt;
mod xmpp;

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::BytesMut;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::wire::{Protocol, Tls, Workload};

/// How long a peer may take from its start to accepting TLS connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a peer may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a login waits for each answer of the server.
const LOGIN_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the peer through `sh` to set two process limits first, then `exec`s it (so the
/// child's PID is the peer's): core dumps off (InspIRCd 3.15 may crash while exiting on
/// SIGTERM, which would leave a core file), and open files raised to the hard limit
/// (one descriptor per client).
const WRAPPER: &str = r#"ulimit -c 0; ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#;

/// A server compared with vCom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKind {
    /// Mosquitto, MQTT 3.1.1 at QoS 0 (at most once).
    MosquittoQos0,
    /// Mosquitto, MQTT 3.1.1 at QoS 1 (at least once, acknowledged, queued offline).
    MosquittoQos1,
    /// InspIRCd, IRC.
    Inspircd,
    /// Prosody, XMPP.
    Prosody,
}

impl PeerKind {
    /// Every peer, in report order.
    pub const ALL: [PeerKind; 4] = [
        PeerKind::MosquittoQos0,
        PeerKind::MosquittoQos1,
        PeerKind::Inspircd,
        PeerKind::Prosody,
    ];

    /// The name used on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::MosquittoQos0 => "mosquitto-qos0",
            PeerKind::MosquittoQos1 => "mosquitto-qos1",
            PeerKind::Inspircd => "inspircd",
            PeerKind::Prosody => "prosody",
        }
    }

    /// The peer with this [`name`](PeerKind::name).
    pub fn parse(name: &str) -> Option<PeerKind> {
        PeerKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The Debian package that ships it.
    fn package(self) -> &'static str {
        match self {
            PeerKind::MosquittoQos0 | PeerKind::MosquittoQos1 => "mosquitto",
            PeerKind::Inspircd => "inspircd",
            PeerKind::Prosody => "prosody",
        }
    }

    /// The program the package installs and the bench runs.
    fn program(self) -> &'static str {
        match self {
            PeerKind::MosquittoQos0 | PeerKind::MosquittoQos1 => "/usr/sbin/mosquitto",
            PeerKind::Inspircd => "/usr/sbin/inspircd",
            PeerKind::Prosody => "/usr/bin/prosody",
        }
    }
}

/// Installs the Debian packages of `kinds` that are missing: `apt-get update` once,
/// then `apt-get install -y --no-install-recommends` of them all. Needs root and
/// apt-get; says what to run otherwise. (On a host with systemd, Debian also starts
/// the packages' own services on their standard ports; the peers do not use them.)
pub fn ensure_installed(kinds: &[PeerKind]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = kinds
        .iter()
        .filter(|kind| !Path::new(kind.program()).exists())
        .map(|kind| kind.package())
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    let by_hand = format!("apt-get install -y --no-install-recommends {list}");
    ensure!(
        Path::new("/usr/bin/apt-get").exists(),
        "the peers need the Debian packages {list}, and this system has no apt-get: \
         install them by other means, or leave the peers out"
    );
    ensure!(
        is_root(),
        "the peers need the Debian packages {list}: run `{by_hand}` as root, or run the \
         bench as root"
    );
    tracing::info!("installing the peers' packages: {list}");
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-q", "-y", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    for kind in kinds {
        ensure!(
            Path::new(kind.program()).exists(),
            "{} is still missing after installing {}",
            kind.program(),
            kind.package()
        );
    }
    Ok(())
}

/// Runs apt-get with `args`, without questions; its output is shown only if it fails.
fn apt(args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .context("cannot run apt-get")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        bail!(
            "`apt-get {}` failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            tail(&stdout, 10),
            tail(&stderr, 10)
        );
    }
    Ok(())
}

/// Whether this process runs as root (effective user id 0), from `/proc`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Whether users join the group (MQTT topic `g`, IRC channel `#g`, XMPP room
/// `g@muc.localhost`) when they log in.
///
/// The peers have no administrator to form a group (vCom's `prepare_group`), so its
/// members join at login. That costs the connections and direct workloads what they
/// do not measure: a subscription, a channel join, and, in Prosody, a room join whose
/// cost grows with the occupants (Prosody builds each occupant's presence for every
/// newcomer even when it does not send it), so that a thousand logins take a minute
/// and ten thousand would take hours. A run started with [`PeerServer::start_for`] a
/// workload other than the group's joins nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joins {
    /// Every user joins the group at login: the group workload can run.
    Group,
    /// Logins join nothing: the group workload cannot run.
    Nothing,
}

impl Joins {
    /// What [`Protocol::supports`] says about the group workload.
    fn group_ready(self) -> Result<(), String> {
        match self {
            Joins::Group => Ok(()),
            Joins::Nothing => Err("this run of the peer was started for another workload: \
                its users do not join the group at login"
                .into()),
        }
    }
}

/// How to run a configured peer.
struct Launch {
    /// The program (an absolute path).
    program: &'static str,
    /// Its arguments (its configuration file, stay in the foreground).
    args: Vec<OsString>,
}

/// A free port of 127.0.0.1: the system picks one for a listener, which is closed so
/// the peer can bind it.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener
        .local_addr()
        .context("cannot find a free port")?
        .port())
}

/// Writes a fresh self-signed certificate and its key into `dir`, then `kind`'s
/// configuration; returns how to run it.
fn setup(kind: PeerKind, dir: &Path, addr: SocketAddr, users: usize) -> anyhow::Result<Launch> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), addr.ip().to_string()])
            .context("cannot generate a certificate")?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    std::fs::write(&key, certified.signing_key.serialize_pem())
        .with_context(|| format!("cannot write {}", key.display()))?;
    match kind {
        PeerKind::MosquittoQos0 | PeerKind::MosquittoQos1 => mqtt::setup(dir, addr, &cert, &key),
        PeerKind::Inspircd => irc::setup(dir, addr, &cert, &key),
        PeerKind::Prosody => xmpp::setup(dir, addr, &cert, &key, users),
    }
}

/// A running peer: its process, its temporary directory and a client of its protocol.
pub struct PeerServer {
    /// Which peer.
    kind: PeerKind,
    /// The peer's process (killed if this is dropped without [`stop`](Self::stop)).
    child: tokio::process::Child,
    /// The process id, read once at spawn.
    pid: u32,
    /// Configuration, certificate, data and logs; removed with the server.
    dir: tempfile::TempDir,
    /// The client the workloads drive.
    protocol: Arc<dyn Protocol>,
}

impl PeerServer {
    /// Starts `kind` on a free port of 127.0.0.1 with its own temporary configuration
    /// and a fresh self-signed certificate, flood and rate limits off, and waits (at
    /// most 30 s) until it accepts TLS connections. `users`: how many users the
    /// workloads may log in (Prosody gets that many accounts; the others need none).
    ///
    /// Users join the group at login, so any workload can run;
    /// [`start_for`](Self::start_for) one workload spares the others that cost.
    pub async fn start(kind: PeerKind, users: usize) -> anyhow::Result<PeerServer> {
        PeerServer::launch(kind, users, Joins::Group).await
    }

    /// [`start`](Self::start) for one `workload`: users join the group at login only
    /// for the group workload (see [`Joins`]), so that the others measure logins and
    /// messages alone.
    pub async fn start_for(
        kind: PeerKind,
        users: usize,
        workload: Workload,
    ) -> anyhow::Result<PeerServer> {
        let joins = match workload {
            Workload::Group => Joins::Group,
            _ => Joins::Nothing,
        };
        PeerServer::launch(kind, users, joins).await
    }

    /// Starts `kind` for `users` users who join the group at login or not.
    async fn launch(kind: PeerKind, users: usize, joins: Joins) -> anyhow::Result<PeerServer> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vcom-bench-{}-", kind.name()))
            .tempdir()
            .context("cannot create a temporary directory")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let path = dir.path().to_owned();
        // Blocking file writes (Prosody's accounts: one file per user).
        let launch = tokio::task::spawn_blocking(move || setup(kind, &path, addr, users))
            .await
            .context("the peer's set-up panicked")??;
        let protocol: Arc<dyn Protocol> = match kind {
            PeerKind::MosquittoQos0 => {
                Arc::new(mqtt::Mqtt::new(addr, mqtt::Qos::AtMostOnce, joins)?)
            }
            PeerKind::MosquittoQos1 => {
                Arc::new(mqtt::Mqtt::new(addr, mqtt::Qos::AtLeastOnce, joins)?)
            }
            PeerKind::Inspircd => Arc::new(irc::Irc::new(addr, joins)?),
            PeerKind::Prosody => Arc::new(xmpp::Xmpp::new(addr, joins)?),
        };

        let log_path = dir.path().join("stdout.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log2 = log.try_clone().context("cannot share the log file")?;
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(launch.program)
            .args(&launch.args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", launch.program))?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited at once", launch.program))?;
        let mut server = PeerServer {
            kind,
            child,
            pid,
            dir,
            protocol,
        };
        if let Err(err) = server.wait_ready(addr).await {
            let logs = server.logs();
            if let Err(stop) = server.stop().await {
                tracing::warn!("cannot stop {}: {stop:#}", kind.name());
            }
            return Err(err.context(format!("{} did not start; its logs:\n{logs}", kind.name())));
        }
        tracing::debug!("{} ready on {addr}, pid {pid}", kind.name());
        Ok(server)
    }

    /// Waits until the peer completes a TLS handshake on `addr`, or fails if it exits
    /// or takes longer than [`START_TIMEOUT`].
    async fn wait_ready(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let connector = tokio_rustls::TlsConnector::from(crate::wire::trust_any_tls()?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot wait for the peer")? {
                bail!("{} exited during start-up ({status})", self.kind.name());
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                connector
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                    .await
            })
            .await;
            let last = match attempt {
                Ok(Ok(mut tls)) => {
                    // A polite close; the peer may log an aborted client otherwise.
                    let _ = tls.shutdown().await;
                    return Ok(());
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => "no TLS handshake within 2 s".to_owned(),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} accepted no TLS connection on {addr} within {START_TIMEOUT:?} \
                     (last: {last})",
                    self.kind.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tail of the peer's output and log, for errors.
    fn logs(&self) -> String {
        ["stdout.log", "server.log"]
            .iter()
            .filter_map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).ok()?;
                Some(format!("--- {name}\n{}", tail(&text, 20)))
            })
            .collect()
    }

    /// The peer's process id, for its memory and CPU time in `/proc`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The client of this peer's protocol, for the workloads.
    pub fn protocol(&self) -> Arc<dyn Protocol> {
        self.protocol.clone()
    }

    /// Stops the peer by PID (SIGTERM, then SIGKILL after 10 s) and removes its
    /// temporary directory.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let name = self.kind.name();
        if self
            .child
            .try_wait()
            .context("cannot wait for the peer")?
            .is_none()
        {
            // tokio only sends SIGKILL; without `unsafe` (forbidden here) nor a signal
            // crate, `kill(1)` asks for a clean exit.
            let asked = tokio::process::Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|status| status.success());
            let exited = asked
                && tokio::time::timeout(STOP_GRACE, self.child.wait())
                    .await
                    .is_ok();
            if !exited {
                tracing::warn!("{name} (pid {}) did not exit on SIGTERM: killed", self.pid);
                self.child
                    .kill()
                    .await
                    .with_context(|| format!("cannot kill {name}"))?;
            }
        }
        let path = self.dir.path().display().to_string();
        self.dir
            .close()
            .with_context(|| format!("cannot remove {path}"))
    }
}

/// Reads what the server sends next during a login into `buf`; an error if the server
/// closes the connection or says nothing for 30 s.
async fn read_more(stream: &mut Tls, buf: &mut BytesMut) -> anyhow::Result<()> {
    let read = tokio::time::timeout(LOGIN_READ_TIMEOUT, stream.read_buf(buf))
        .await
        .with_context(|| format!("no answer from the server within {LOGIN_READ_TIMEOUT:?}"))?
        .context("cannot read from the server")?;
    ensure!(read > 0, "the server closed the connection during login");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use bytes::Bytes;

    use super::*;
    use crate::wire::{Event, Workload, connect, now_ns, payload, sender_of};

    #[test]
    fn names_round_trip() {
        for kind in PeerKind::ALL {
            assert_eq!(PeerKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(PeerKind::parse("ejabberd"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a", 5), "a\n");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn free_ports_are_free() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    /// One logged-in client of the live check.
    struct Client {
        /// The peer's protocol.
        protocol: Arc<dyn Protocol>,
        /// The connection.
        stream: Tls,
        /// Read and not decoded yet.
        buf: BytesMut,
    }

    impl Client {
        /// Connects and logs `user` in.
        async fn login(protocol: &Arc<dyn Protocol>, user: usize, persistent: bool) -> Client {
            let mut stream = connect(protocol.as_ref(), user).await.unwrap();
            let mut buf = BytesMut::new();
            protocol
                .login(user, persistent, &mut stream, &mut buf)
                .await
                .unwrap();
            Client {
                protocol: protocol.clone(),
                stream,
                buf,
            }
        }

        /// Writes what `write` encodes.
        async fn send(&mut self, write: impl FnOnce(&dyn Protocol, &mut BytesMut)) {
            let mut out = BytesMut::new();
            write(self.protocol.as_ref(), &mut out);
            self.stream.write_all(&out).await.unwrap();
            self.stream.flush().await.unwrap();
        }

        /// Sends a barrier and returns the messages received before its answer.
        async fn until_barrier(&mut self) -> Vec<Bytes> {
            self.send(|p, out| p.barrier(out)).await;
            let mut messages = Vec::new();
            loop {
                let mut replies = BytesMut::new();
                let event = self.protocol.decode(&mut self.buf, &mut replies).unwrap();
                if !replies.is_empty() {
                    self.stream.write_all(&replies).await.unwrap();
                }
                match event {
                    Some(Event::Message(body)) => messages.push(body),
                    Some(Event::Barrier) => return messages,
                    Some(Event::Other) => {}
                    None => {
                        let read = tokio::time::timeout(
                            Duration::from_secs(10),
                            self.stream.read_buf(&mut self.buf),
                        )
                        .await
                        .expect("no barrier answer within 10 s")
                        .unwrap();
                        assert!(read > 0, "the server closed the connection");
                    }
                }
            }
        }
    }

    /// Starts `kind`, logs in two users, sends a direct message, a group message and
    /// barriers and sees them arrive; then the backlog if supported; stops it.
    async fn check(kind: PeerKind) {
        let server = PeerServer::start(kind, 3).await.unwrap();
        let protocol = server.protocol();
        assert_eq!(protocol.name(), kind.name());
        println!("{}: {}", kind.name(), protocol.settings());
        assert!(std::path::Path::new(&format!("/proc/{}", server.pid())).exists());

        let mut a = Client::login(&protocol, 0, false).await;
        let mut b = Client::login(&protocol, 1, false).await;
        protocol.prepare_group(&[0, 1]).await.unwrap();

        let direct = payload(now_ns(), 0, 1);
        a.send(|p, out| p.direct(0, 1, &direct, out)).await;
        assert_eq!(a.until_barrier().await, Vec::<Bytes>::new());
        assert_eq!(b.until_barrier().await, [Bytes::copy_from_slice(&direct)]);

        let group = payload(now_ns(), 0, 2);
        a.send(|p, out| p.group(0, &group, out)).await;
        // MQTT and MUC echo a group message to its sender; IRC does not.
        let own: Vec<Bytes> = a.until_barrier().await;
        assert!(own.iter().all(|m| sender_of(m) == Some(0)), "{own:?}");
        assert_eq!(b.until_barrier().await, [Bytes::copy_from_slice(&group)]);

        if protocol.supports(Workload::Backlog).is_ok() {
            let mut c = Client::login(&protocol, 2, true).await;
            c.stream.shutdown().await.unwrap();
            drop(c);
            // The server notices the closed connection before the message is sent.
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Enough that the backlog outlasts a login's first read.
            let stored: Vec<Bytes> = (0..BACKLOG)
                .map(|seq| Bytes::copy_from_slice(&payload(now_ns(), 0, seq)))
                .collect();
            a.send(|p, out| {
                for body in &stored {
                    p.direct(0, 2, body, out);
                }
            })
            .await;
            a.until_barrier().await;
            let mut c = Client::login(&protocol, 2, true).await;
            assert_eq!(c.until_barrier().await, stored);
            // Delivered once: the next login has nothing waiting.
            c.stream.shutdown().await.unwrap();
            drop(c);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut c = Client::login(&protocol, 2, true).await;
            assert_eq!(c.until_barrier().await, Vec::<Bytes>::new());
        }
        let pid = server.pid();
        server.stop().await.unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    /// Messages of the live check's backlog.
    const BACKLOG: u64 = 2_000;

    /// A run for one workload other than the group's: logins join nothing, and the
    /// group workload is refused.
    async fn check_without_group(kind: PeerKind) {
        let server = PeerServer::start_for(kind, 2, Workload::Direct)
            .await
            .unwrap();
        let protocol = server.protocol();
        assert!(protocol.supports(Workload::Group).is_err());
        let mut a = Client::login(&protocol, 0, false).await;
        let mut b = Client::login(&protocol, 1, false).await;
        let direct = payload(now_ns(), 1, 1);
        b.send(|p, out| p.direct(1, 0, &direct, out)).await;
        b.until_barrier().await;
        assert_eq!(a.until_barrier().await, [Bytes::copy_from_slice(&direct)]);
        server.stop().await.unwrap();
    }

    /// The live check of every peer: `cargo test -p vcom-bench -- --ignored peers`
    /// (installs the packages when missing, so it needs root and apt-get).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs Mosquitto, InspIRCd and Prosody: needs their Debian packages or root"]
    async fn peers_log_in_and_deliver_live() {
        ensure_installed(&PeerKind::ALL).unwrap();
        for kind in PeerKind::ALL {
            check(kind).await;
            check_without_group(kind).await;
        }
    }
}
