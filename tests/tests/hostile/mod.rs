//! Support shared by the hostile-input, slow-peer and flood tests (`server_bad_input.rs`,
//! `server_slow_peers.rs`, `server_floods.rs`): a raw client that can cut, dribble and
//! half-close, latency and resource probes, and the bytes of malformed packets.
//!
//! Every wait is bounded by [`TIMEOUT`]; nothing here sleeps to wait for an event.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;
use vcom_protocol::{
    ClientPacket, ConnectionRequest, DeviceId, Limits, ListSync, ServerPacket, UserListsSync,
    VcomCodec,
};
use vcom_server::AdminRequest;
use vcom_tests::harness::{
    Endpoint, Identity, ServerCheck, Session, TIMEOUT, Target, TestServer, text_to,
    try_tls_connect_offering,
};

pub(crate) type Transport = Framed<TlsStream<TcpStream>, VcomCodec<ServerPacket, ClientPacket>>;

/// A TLS client that sends exact bytes, can half-close, and reads until the server closes.
pub(crate) struct Raw {
    pub(crate) io: Transport,
}

impl Raw {
    /// Connects (TLS 1.3, pinned to the server's certificate) offering `alpn`.
    pub(crate) async fn connect(
        server: &TestServer,
        identity: Option<&Identity>,
        alpn: &[&[u8]],
    ) -> Raw {
        let tls = tokio::time::timeout(
            TIMEOUT,
            try_tls_connect_offering(&server.target(), identity, alpn),
        )
        .await
        .expect("TLS connection in time")
        .expect("TLS connection succeeds");
        Raw {
            io: Framed::new(tls, VcomCodec::new(Limits::default())),
        }
    }

    /// Tries to connect (TLS 1.3, no ALPN) to a target; the error says why it failed.
    pub(crate) async fn try_connect_to(
        target: &Target,
        identity: Option<&Identity>,
    ) -> std::io::Result<Raw> {
        let tls = tokio::time::timeout(TIMEOUT, try_tls_connect_offering(target, identity, &[]))
            .await
            .expect("the handshake ends in time")?;
        Ok(Raw {
            io: Framed::new(tls, VcomCodec::new(Limits::default())),
        })
    }

    /// Connects and logs in as `user` on `device` with `identity`, reads 257 and 259
    /// (and with the extension set the groups, 524 and 525) and answers "in sync".
    /// `ext`: negotiate the extension set.
    pub(crate) async fn login(
        server: &TestServer,
        user: &str,
        identity: &Identity,
        device: DeviceId,
        ext: bool,
    ) -> (Raw, DeviceId) {
        let alpn: &[&[u8]] = if ext {
            &[vcom_protocol::alpn::EXT]
        } else {
            &[]
        };
        let mut raw = Raw::connect(server, Some(identity), alpn).await;
        raw.send(ConnectionRequest {
            user: user.to_owned(),
            device,
            password: bytes::Bytes::new(),
        })
        .await;
        let device = match raw.recv().await {
            ServerPacket::ConnectionAccepted(a) => a.device,
            other => panic!("login of {user}: expected 257, got {other:?}"),
        };
        match raw.recv().await {
            ServerPacket::RequestUserListsSync(_) => {}
            other => panic!("expected 259, got {other:?}"),
        }
        if ext {
            // The user's groups: 524, then a 525 for each.
            let groups = match raw.recv().await {
                ServerPacket::GroupList(list) => list.groups.len(),
                other => panic!("expected 524 after 259 with the extension set, got {other:?}"),
            };
            for _ in 0..groups {
                match raw.recv().await {
                    ServerPacket::GroupInfo(_) => {}
                    other => panic!("expected 525, got {other:?}"),
                }
            }
        }
        raw.send(UserListsSync {
            friends: ListSync::InSync,
            blocks: ListSync::InSync,
        })
        .await;
        (raw, device)
    }

    pub(crate) async fn send(&mut self, packet: impl Into<ClientPacket>) {
        tokio::time::timeout(TIMEOUT, self.io.send(packet.into()))
            .await
            .expect("send in time")
            .expect("send succeeds");
    }

    /// Writes `bytes` as they are, in one TLS record (or as few as fit).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        let io = self.io.get_mut();
        tokio::time::timeout(TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .expect("write in time")
        .expect("write succeeds");
    }

    /// Sends close_notify and shuts the TCP write side: "I will send nothing more".
    pub(crate) async fn close_write(&mut self) {
        let io = self.io.get_mut();
        // The server may have closed first (a violation in the bytes before): ignore.
        let _ = tokio::time::timeout(TIMEOUT, io.shutdown()).await;
    }

    /// Writes bytes straight to the TCP socket under the TLS session (not a TLS record).
    pub(crate) async fn send_beneath_tls(&mut self, bytes: &[u8]) {
        let tcp = self.io.get_mut().get_mut().0;
        let _ = tokio::time::timeout(TIMEOUT, tcp.write_all(bytes)).await;
    }

    pub(crate) async fn recv(&mut self) -> ServerPacket {
        match tokio::time::timeout(TIMEOUT, self.io.next()).await {
            Err(_) => panic!("no packet from the server within {TIMEOUT:?}"),
            Ok(None) => panic!("the server closed the connection"),
            Ok(Some(Err(e))) => panic!("reading from the server failed: {e}"),
            Ok(Some(Ok(packet))) => packet,
        }
    }

    /// Reads until the server closes the connection (end of stream, a TLS alert or a
    /// reset); returns the packets seen before. Fails if it stays open for [`TIMEOUT`].
    pub(crate) async fn recv_until_closed(&mut self) -> Vec<ServerPacket> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(TIMEOUT, self.io.next()).await {
                Err(_) => panic!("the server did not close the connection within {TIMEOUT:?}"),
                Ok(None) | Ok(Some(Err(_))) => return seen,
                Ok(Some(Ok(packet))) => seen.push(packet),
            }
        }
    }

    /// Sends a Ping and returns everything that arrived before its Pong: once it is back,
    /// every packet sent before it on this connection was handled.
    pub(crate) async fn round_trip(&mut self) -> Vec<ServerPacket> {
        let nonce = 0x5eed;
        self.send(vcom_protocol::Ping { nonce }).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                ServerPacket::Pong(p) if p.nonce == nonce => return before,
                other => before.push(other),
            }
        }
    }
}

/// The bytes of a packet: its identifier, then `body`.
pub(crate) fn packet(id: i32, body: &[u8]) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// A string or byte array field: `i32` length, then the bytes.
pub(crate) fn string(s: &[u8]) -> Vec<u8> {
    let mut bytes = (s.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(s);
    bytes
}

pub(crate) fn be(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// How long a direct message from `from` takes to reach `to` (who must have nothing
/// else queued): the latency a user who has nothing to do with the trouble sees.
pub(crate) async fn pair_latency(from: &mut Session, to: &mut Session, to_name: &str) -> Duration {
    let text = "are you there?";
    let start = Instant::now();
    from.client.send(text_to(to_name, text, 1)).await;
    match to.client.recv().await {
        ServerPacket::UserMessage(m) => assert_eq!(&m.data[..], text.as_bytes()),
        other => panic!("expected 264, got {other:?}"),
    }
    start.elapsed()
}

/// The bound on an unaffected user's latency that every slow-peer and flood test asserts
/// (`docs/reliability.md`): generous, a sanity bound and not a benchmark.
pub(crate) const LATENCY_BOUND: Duration = Duration::from_secs(5);

/// Latency samples: the worst and the median.
#[derive(Debug, Default)]
pub(crate) struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub(crate) fn add(&mut self, d: Duration) {
        assert!(
            d < LATENCY_BOUND,
            "an unaffected user waited {d:?} for a message (bound {LATENCY_BOUND:?})"
        );
        self.0.push(d);
    }

    pub(crate) fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }

    pub(crate) fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    pub(crate) fn report(&self, what: &str) {
        eprintln!(
            "latency while {what}: {} samples, median {:?}, max {:?}",
            self.0.len(),
            self.median(),
            self.max()
        );
    }
}

/// The process's resident memory in bytes (server and clients share the process).
pub(crate) fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Open sockets of this process (client and server ends, listeners included).
pub(crate) fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// The value of one line of `admin stats`.
pub(crate) async fn stat(server: &TestServer, key: &str) -> u64 {
    let out = server.admin(AdminRequest::Stats).await;
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the stats: {out}"))
}

/// Waits (at most [`TIMEOUT`]) until `check` holds, polling; fails naming `what`.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < TIMEOUT, "{what}: not within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server lists no session of `user`.
pub(crate) async fn no_sessions_of(server: &TestServer, user: &str) {
    let prefix = format!("{user}\t");
    eventually(&format!("every session of {user} released"), || async {
        !server
            .admin(AdminRequest::Sessions)
            .await
            .lines()
            .any(|l| l.starts_with(&prefix))
    })
    .await;
}

/// A TLS 1.3 client configuration without a client certificate that trusts any server.
pub(crate) fn any_server_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(ServerCheck::any(provider))
        .with_no_client_auth()
}

/// The first flight of a real TLS 1.3 client (its ClientHello record), made in memory.
pub(crate) fn client_hello() -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(any_server_config()), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Measures an unaffected pair's latency ([`pair_latency`]) again and again in its own
/// task until told to stop, checking every sample against [`LATENCY_BOUND`].
pub(crate) struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(Session, Session, Latencies)>,
}

impl Sampler {
    /// Starts sampling messages from `from` to `to` (whose user is `to_name`).
    pub(crate) fn start(mut from: Session, mut to: Session, to_name: &'static str) -> Sampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut latencies = Latencies::default();
            loop {
                latencies.add(pair_latency(&mut from, &mut to, to_name).await);
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                // A pace, not a wait for an event: a sample every 50 ms or so.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (from, to, latencies)
        });
        Sampler { stop, task }
    }

    /// Stops sampling (after one more sample) and returns the pair and the samples.
    pub(crate) async fn finish(self) -> (Session, Session, Latencies) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (from, to, latencies) = tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the sampler stops in time")
            .expect("every sample was within the bound");
        (from, to, latencies)
    }
}

/// Tests that measure the whole process (resident memory, open files) run one at a time
/// within their test binary: hold this while measuring.
pub(crate) static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
