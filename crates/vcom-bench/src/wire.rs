//! What a protocol under test gives the workloads: login, encode a message, decode what
//! arrives. vCom (the real server and the relay) and each peer (MQTT, IRC, XMPP)
//! implement [`Protocol`]; the workloads own the sockets and the clocks, so every
//! protocol is driven by the same loops and costs the load generator about the same per
//! message.
//!
//! Every message carries the same 100-byte ASCII [`payload`]: the sender's send time,
//! so the receiver measures latency from the sender's write to its own read without a
//! clock shared with the server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};

/// A client's TLS connection.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// What a client reads off its connection, as far as the workloads care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat message (direct or group) and its body, which a workload sent as a
    /// [`payload`].
    Message(Bytes),
    /// The answer to a [`Protocol::barrier`]: the server has handled everything this
    /// client sent before it.
    Barrier,
    /// Anything else (list sync requests, acknowledgements): read and ignored.
    Other,
}

/// The workloads of the suite; a protocol says which it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Clients log in and stay idle.
    Connections,
    /// Users send to random online users.
    Direct,
    /// One sender, a group of every user.
    Group,
    /// Messages stored for an offline user, delivered when it logs in.
    Backlog,
    /// Files relayed in 1024-byte chunks.
    Files,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 5] = [
        Workload::Connections,
        Workload::Direct,
        Workload::Group,
        Workload::Backlog,
        Workload::Files,
    ];

    /// The name used on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Connections => "connections",
            Workload::Direct => "direct",
            Workload::Group => "group",
            Workload::Backlog => "backlog",
            Workload::Files => "files",
        }
    }

    /// The workload with this [`name`](Workload::name).
    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// One protocol spoken by one server under test.
///
/// Users are numbered `0..n`; a protocol names them as it likes (`u17`). Encoding and
/// decoding are sans-IO: the workloads hold the buffers and do every read and write.
pub trait Protocol: Send + Sync + 'static {
    /// What the report calls this target (`vcom`, `relay`, `mosquitto-qos1`, ...).
    fn name(&self) -> String;

    /// Where the server listens.
    fn addr(&self) -> SocketAddr;

    /// The TLS configuration for `user`'s connection (vCom: the user's own client key).
    fn tls(&self, user: usize) -> anyhow::Result<Arc<rustls::ClientConfig>>;

    /// The name the TLS handshake asks for.
    fn server_name(&self) -> ServerName<'static> {
        ServerName::IpAddress(self.addr().ip().into())
    }

    /// Logs `user` in over a fresh TLS connection and subscribes it to what it should
    /// receive (its own messages, and the group's). Bytes read past the login stay in
    /// `buf` for [`decode`](Protocol::decode).
    ///
    /// `persistent`: what is sent to this user while it is offline must reach it at its
    /// next login with `persistent` (the backlog workload); vCom always does this.
    fn login<'a>(
        &'a self,
        user: usize,
        persistent: bool,
        stream: &'a mut Tls,
        buf: &'a mut BytesMut,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Appends a direct message from `from` to `to` carrying `payload`.
    fn direct(&self, from: usize, to: usize, payload: &[u8], out: &mut BytesMut);

    /// Appends a message from `from` to the group of every user, carrying `payload`.
    fn group(&self, from: usize, payload: &[u8], out: &mut BytesMut);

    /// Appends a request that the server answers with an [`Event::Barrier`] once it has
    /// handled everything sent before it (a ping).
    fn barrier(&self, out: &mut BytesMut);

    /// Takes the first whole packet off `buf`, if there is one. Whatever the protocol
    /// must answer (an MQTT PUBACK, an IRC PONG) is appended to `replies`, which the
    /// workload writes back on the same connection.
    fn decode(&self, buf: &mut BytesMut, replies: &mut BytesMut) -> anyhow::Result<Option<Event>>;

    /// Whether this target can run `workload`; the reason when it cannot.
    fn supports(&self, workload: Workload) -> Result<(), String>;

    /// Makes `members` one group before the group workload sends to it (the vCom
    /// server's administrator creates it; others need nothing, or join at login).
    fn prepare_group<'a>(&'a self, members: &'a [usize]) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = members;
        Box::pin(async { Ok(()) })
    }

    /// Settings that bear on fairness (persistence, fsync, QoS, rate limits), for the
    /// report.
    fn settings(&self) -> String;
}

/// The bench's own clock: nanoseconds since the first call. Senders and receivers are
/// in the same process, so a payload's send time is comparable with the receive time.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Bytes of every chat message the workloads send: a short chat line.
pub const PAYLOAD_LEN: usize = 100;

/// A message body: 16 hex digits of the send time ([`now_ns`]), 8 of the sender, 16 of a
/// sequence number, then dots up to [`PAYLOAD_LEN`]. Plain ASCII, so IRC and XMPP carry
/// it unchanged.
pub fn payload(sent_ns: u64, sender: usize, seq: u64) -> [u8; PAYLOAD_LEN] {
    let mut out = [b'.'; PAYLOAD_LEN];
    let head = format!("{sent_ns:016x}{:08x}{seq:016x}", sender & 0xffff_ffff);
    out[..head.len()].copy_from_slice(head.as_bytes());
    out
}

/// The send time in a [`payload`], if the body is one.
pub fn sent_ns(body: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(body.get(..16)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// The sender number in a [`payload`], if the body is one.
pub fn sender_of(body: &[u8]) -> Option<usize> {
    let digits = std::str::from_utf8(body.get(16..24)?).ok()?;
    usize::from_str_radix(digits, 16).ok()
}

/// The sequence number in a [`payload`], if the body is one.
pub fn seq_of(body: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(body.get(24..40)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// The local address client `index` connects from when the target is on loopback:
/// spread over 127.2.0.0/16 so a server's per-address limit (vcom-server: 1 000) and the
/// ephemeral ports of one address never bound a run. `None` for other targets (the
/// system picks).
pub fn source_addr(target: IpAddr, index: usize) -> Option<IpAddr> {
    match target {
        IpAddr::V4(v4) if v4.is_loopback() => {
            let spread = index % 62_500;
            let third = u8::try_from(spread / 250).unwrap_or(0);
            let fourth = u8::try_from(spread % 250 + 1).unwrap_or(1);
            Some(IpAddr::V4(Ipv4Addr::new(127, 2, third, fourth)))
        }
        _ => None,
    }
}

/// How long a TCP connect plus TLS handshake may take before the client gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens user `index`'s TLS connection to the target (not logged in yet).
pub async fn connect(protocol: &dyn Protocol, index: usize) -> anyhow::Result<Tls> {
    let addr = protocol.addr();
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("cannot create a socket")?;
    if let Some(ip) = source_addr(addr.ip(), index) {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind to {ip}"))?;
    }
    let config = protocol.tls(index)?;
    let name = protocol.server_name();
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async move {
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    })
    .await
    .with_context(|| format!("connecting to {addr} took over {CONNECT_TIMEOUT:?}"))?;
    connected.with_context(|| format!("cannot connect to {addr}"))
}

/// A TLS 1.3 client configuration that trusts any server certificate: the bench's own
/// peers generate theirs per run, and the bench measures, it does not authenticate.
/// (vCom targets pin the server's fingerprint instead: [`ServerCheck::pinned`].)
pub fn trust_any_tls() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerCheck::any(&provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How the bench checks a server's certificate: any whose key signs the TLS 1.3
/// handshake, or only the one whose SHA-256 is the current pin.
#[derive(Debug)]
pub struct ServerCheck {
    pin: Option<Arc<std::sync::RwLock<String>>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCheck {
    /// Accepts any certificate whose key signs the handshake.
    pub fn any(provider: &rustls::crypto::CryptoProvider) -> ServerCheck {
        ServerCheck {
            pin: None,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Accepts only the certificate whose lower-case hex SHA-256 `pin` holds when the
    /// handshake runs (the pin moves from one target to the next).
    pub fn pinned(
        provider: &rustls::crypto::CryptoProvider,
        pin: Arc<std::sync::RwLock<String>>,
    ) -> ServerCheck {
        ServerCheck {
            pin: Some(pin),
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.pin else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        let found = vcom_server::tls::sha256_hex(end_entity.as_ref());
        let expected = pin.read().map(|p| p.clone()).unwrap_or_default();
        if found == expected {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate {found} is not the pinned {expected}"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // Every configuration here offers TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_its_send_time_sender_and_sequence() {
        let body = payload(0x1234_5678_9abc, 42, 7);
        assert_eq!(body.len(), PAYLOAD_LEN);
        assert!(body.is_ascii());
        assert_eq!(sent_ns(&body), Some(0x1234_5678_9abc));
        assert_eq!(sender_of(&body), Some(42));
        assert_eq!(seq_of(&body), Some(7));
        assert_eq!(sent_ns(b"hello"), None);
    }

    #[test]
    fn loopback_clients_spread_over_many_source_addresses() {
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let a = source_addr(lo, 0);
        let b = source_addr(lo, 1);
        assert_ne!(a, b);
        assert_eq!(a, Some("127.2.0.1".parse().unwrap_or(lo)));
        assert_eq!(source_addr("192.0.2.1".parse().unwrap_or(lo), 0), None);
    }
}
