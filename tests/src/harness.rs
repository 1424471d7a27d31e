//! A real server in process and raw TLS clients that speak packets, for integration tests.
//!
//! [`TestServer`] runs `vcom_server::Server` on 127.0.0.1 with a free port and its own
//! data directory. [`RawClient`] speaks the wire protocol directly, so tests can send
//! exactly the bytes they mean, including malformed ones. Every wait is bounded by
//! [`TIMEOUT`]; a test that would hang fails instead.
//!
//! This is test support: a failed expectation here is a failed test, so it panics with
//! a message rather than returning errors.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;
use vcom_protocol::{
    ClientPacket, ConnectionRequest, DenyCode, DeviceId, Limits, ListSync, MessageKind,
    SendUserMessage, ServerPacket, Timestamp, UserId, UserListsSync, VcomCodec,
};
use vcom_server::{AdminHandle, AdminRequest, Server, ServerConfig, ShutdownHandle};
use vcom_store::SqliteStore;

/// The bound on every wait in a test: generous, so a busy machine does not fail tests.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Receives the next packet on a [`RawClient`], which must be `ServerPacket::$variant`,
/// and returns its body. Waits as [`RawClient::recv`] does (at most [`TIMEOUT`]); any
/// other packet fails the test, naming what came instead.
///
/// ```ignore
/// let offer = recv_packet!(bob.client, FileTransferOffer);
/// ```
#[macro_export]
macro_rules! recv_packet {
    ($client:expr, $variant:ident) => {
        match $client.recv().await {
            ::vcom_protocol::ServerPacket::$variant(packet) => packet,
            other => panic!(
                concat!("expected ", stringify!($variant), ", got {:?}"),
                other
            ),
        }
    };
}

/// A user identifier the test knows to be valid.
pub fn uid(name: &str) -> UserId {
    UserId::new(name).expect("the test's user names are valid")
}

/// A direct text message (262) for `to`, mailed at `sent_at`.
pub fn text_to(to: &str, text: &str, sent_at: i64) -> SendUserMessage {
    SendUserMessage {
        recipient: uid(to),
        sent_at: Timestamp(sent_at),
        kind: MessageKind::Text,
        data: bytes::Bytes::from(text.to_owned()),
    }
}

/// A server running in this process.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate's SHA-256, hex.
    pub cert_sha256: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its administrator commands.
    pub admin: AdminHandle<SqliteStore>,
    /// Its metrics endpoint, when `metrics_listen` is set.
    pub metrics: Option<SocketAddr>,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<Result<(), vcom_server::ServerError>>,
}

impl TestServer {
    /// Starts a server on `data_dir` with the defaults changed by `configure`.
    pub async fn start(data_dir: &Path, configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig::new(data_dir);
        configure(&mut config);
        let server = Server::bind(config).await.expect("the test server starts");
        TestServer {
            addr: server.local_addr(),
            cert_sha256: server.cert_sha256().to_owned(),
            data_dir: data_dir.to_owned(),
            admin: server.admin(),
            metrics: server.metrics_addr(),
            shutdown: server.shutdown_handle(),
            task: tokio::spawn(server.run()),
        }
    }

    /// Starts a server in a fresh temporary data directory, with the defaults changed by
    /// `configure`. The directory is removed when the returned guard drops, so keep it
    /// for as long as the server (or a restart on the same directory) needs it.
    pub async fn start_temp(
        configure: impl FnOnce(&mut ServerConfig),
    ) -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = TestServer::start(dir.path(), configure).await;
        (dir, server)
    }

    /// Runs an admin command and returns its output, failing the test on error.
    pub async fn admin(&self, request: AdminRequest) -> String {
        self.admin
            .execute(request)
            .await
            .expect("the admin command succeeds")
            .to_string()
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(self) {
        self.shutdown.shutdown();
        let result = tokio::time::timeout(TIMEOUT, self.task).await;
        result
            .expect("the server stops in time")
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
    }
}

/// A client key and self-signed certificate, like the SDK generates.
#[derive(Clone)]
pub struct Identity {
    cert: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl Identity {
    /// A fresh key with a self-signed certificate naming `user`.
    pub fn generate(user: &str) -> Identity {
        let key = rcgen::KeyPair::generate().expect("key generation works");
        let params = rcgen::CertificateParams::new(vec![user.to_owned()])
            .expect("valid certificate parameters");
        let cert = params.self_signed(&key).expect("self-signing works");
        Identity {
            cert: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
        }
    }

    /// The fingerprint the server binds to a user who logs in with this key (lower-case
    /// hex SHA-256 of the certificate's SubjectPublicKeyInfo).
    pub fn key_sha256(&self) -> String {
        vcom_server::tls::key_fingerprint(&self.cert)
            .expect("a generated certificate parses")
            .to_hex()
    }
}

/// How a test client checks the server's certificate: exactly one, by SHA-256, like the
/// SDK's pin, or any (for tests where the server's identity is not the point). Either
/// way the TLS 1.3 signature is verified.
#[derive(Debug)]
pub struct ServerCheck {
    sha256: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCheck {
    /// Trusts only the certificate with this SHA-256 (hex).
    pub fn pinned(sha256: &str, provider: Arc<rustls::crypto::CryptoProvider>) -> Arc<Self> {
        Arc::new(ServerCheck {
            sha256: Some(sha256.to_owned()),
            provider,
        })
    }

    /// Trusts any certificate whose key signs the handshake.
    pub fn any(provider: Arc<rustls::crypto::CryptoProvider>) -> Arc<Self> {
        Arc::new(ServerCheck {
            sha256: None,
            provider,
        })
    }
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = vcom_server::tls::sha256_hex(end_entity.as_ref());
        if self.sha256.as_ref().is_none_or(|pin| *pin == found) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pin".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Transport = Framed<TlsStream<TcpStream>, VcomCodec<ServerPacket, ClientPacket>>;

/// A TLS connection that sends and receives raw packets.
pub struct RawClient {
    transport: Transport,
}

/// Where a server listens and the certificate it must present: enough to reach a
/// server started in process or as a separate `vcom-server` program.
#[derive(Debug, Clone)]
pub struct Target {
    /// The listening address.
    pub addr: SocketAddr,
    /// SHA-256 of the server certificate, lower-case hex.
    pub cert_sha256: String,
}

/// Anything clients can connect to: a [`TestServer`] or a [`Target`].
pub trait Endpoint {
    /// How clients reach it.
    fn target(&self) -> Target;
}

impl Endpoint for TestServer {
    fn target(&self) -> Target {
        Target {
            addr: self.addr,
            cert_sha256: self.cert_sha256.clone(),
        }
    }
}

impl Endpoint for Target {
    fn target(&self) -> Target {
        self.clone()
    }
}

/// Opens a TLS 1.3 connection to the server, presenting `identity` if given.
pub async fn tls_connect(
    server: &impl Endpoint,
    identity: Option<&Identity>,
) -> TlsStream<TcpStream> {
    tls_connect_to(&server.target(), identity).await
}

/// Opens a TLS 1.3 connection to a target, presenting `identity` if given.
pub async fn tls_connect_to(server: &Target, identity: Option<&Identity>) -> TlsStream<TcpStream> {
    tokio::time::timeout(TIMEOUT, try_tls_connect_to(server, identity))
        .await
        .expect("TLS connection in time")
        .expect("TLS connection succeeds")
}

/// Tries to open a TLS 1.3 connection; the error says why it failed.
pub async fn try_tls_connect_to(
    server: &Target,
    identity: Option<&Identity>,
) -> std::io::Result<TlsStream<TcpStream>> {
    try_tls_connect_offering(server, identity, &[]).await
}

/// Tries to open a TLS 1.3 connection offering these ALPN protocol names (none: no
/// ALPN extension at all).
pub async fn try_tls_connect_offering(
    server: &Target,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(ServerCheck::pinned(&server.cert_sha256, provider));
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![id.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_pkcs8.clone())),
            )
            .expect("the client certificate is usable"),
        None => builder.with_no_client_auth(),
    };
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(server.addr).await?;
    let name = ServerName::try_from("localhost").expect("a valid name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

impl RawClient {
    /// Connects with `identity` (or without a client certificate).
    pub async fn connect(server: &impl Endpoint, identity: Option<&Identity>) -> RawClient {
        Self::connect_to(&server.target(), identity).await
    }

    /// Connects to a target with `identity` (or without a client certificate).
    pub async fn connect_to(server: &Target, identity: Option<&Identity>) -> RawClient {
        let tls = tls_connect_to(server, identity).await;
        RawClient {
            transport: Framed::new(tls, VcomCodec::new(Limits::default())),
        }
    }

    /// Connects with `identity`, offering the extension set (`vcom/1+ext`).
    pub async fn connect_ext(server: &impl Endpoint, identity: &Identity) -> RawClient {
        let offer = [vcom_protocol::alpn::EXT];
        let tls = tokio::time::timeout(
            TIMEOUT,
            try_tls_connect_offering(&server.target(), Some(identity), &offer),
        )
        .await
        .expect("TLS connection in time")
        .expect("TLS connection succeeds");
        RawClient {
            transport: Framed::new(tls, VcomCodec::new(Limits::default())),
        }
    }

    /// The ALPN protocol the server chose, if any.
    pub fn negotiated(&self) -> Option<Vec<u8>> {
        self.transport
            .get_ref()
            .get_ref()
            .1
            .alpn_protocol()
            .map(<[u8]>::to_vec)
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: impl Into<ClientPacket>) {
        let packet: ClientPacket = packet.into();
        tokio::time::timeout(TIMEOUT, self.transport.send(packet))
            .await
            .expect("send in time")
            .expect("send succeeds");
    }

    /// Writes raw bytes, bypassing the encoder (for malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let io = self.transport.get_mut();
        tokio::time::timeout(TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .expect("write in time")
        .expect("write succeeds");
    }

    /// The next packet from the server; fails the test on timeout, error or close.
    pub async fn recv(&mut self) -> ServerPacket {
        match tokio::time::timeout(TIMEOUT, self.transport.next()).await {
            Err(_) => panic!("no packet from the server within {TIMEOUT:?}"),
            Ok(None) => panic!("the server closed the connection"),
            Ok(Some(Err(e))) => panic!("reading from the server failed: {e}"),
            Ok(Some(Ok(packet))) => packet,
        }
    }

    /// Reads until the server closes the connection; returns the packets seen before.
    pub async fn recv_until_closed(&mut self) -> Vec<ServerPacket> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(TIMEOUT, self.transport.next()).await {
                Err(_) => panic!("the server did not close the connection within {TIMEOUT:?}"),
                Ok(None) | Ok(Some(Err(_))) => return seen,
                Ok(Some(Ok(packet))) => seen.push(packet),
            }
        }
    }

    /// Sends a Ping and waits for its Pong, returning everything that arrived before it.
    ///
    /// The server handles a connection's packets in order, so once the Pong is back every
    /// packet sent earlier on this connection has been fully processed.
    pub async fn round_trip(&mut self) -> Vec<ServerPacket> {
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

    /// Sends a ConnectionRequest.
    pub async fn request_login(&mut self, user: &str, device: DeviceId, password: &[u8]) {
        self.send(ConnectionRequest {
            user: user.to_owned(),
            device,
            password: bytes::Bytes::copy_from_slice(password),
        })
        .await;
    }
}

/// The outcome of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// 257 with this device.
    Accepted(DeviceId),
    /// 258 with this code.
    Denied(DenyCode),
}

/// Connects and logs in; returns the client (positioned after 257) and the outcome.
///
/// After a 258 this also checks that the server closed the connection.
pub async fn attempt_login(
    server: &impl Endpoint,
    identity: Option<&Identity>,
    user: &str,
    device: DeviceId,
    password: &[u8],
) -> (RawClient, LoginOutcome) {
    let mut client = RawClient::connect(server, identity).await;
    client.request_login(user, device, password).await;
    let outcome = match client.recv().await {
        ServerPacket::ConnectionAccepted(a) => LoginOutcome::Accepted(a.device),
        ServerPacket::ConnectionDenied(d) => {
            let after = client.recv_until_closed().await;
            assert!(
                after.is_empty(),
                "nothing may follow ConnectionDenied, got {after:?}"
            );
            LoginOutcome::Denied(d.code)
        }
        other => panic!("expected 257 or 258, got {other:?}"),
    };
    (client, outcome)
}

/// Tries to log `user` in as a new device with a fresh key and no password, and returns
/// the outcome; the connection is dropped (see [`attempt_login`] for what it waits for).
pub async fn login_outcome(server: &impl Endpoint, user: &str) -> LoginOutcome {
    let identity = Identity::generate(user);
    attempt_login(server, Some(&identity), user, DeviceId::NEW, b"")
        .await
        .1
}

/// A logged-in raw client with its identity and device.
pub struct Session {
    /// The connection, positioned after 259 was answered with "in sync".
    pub client: RawClient,
    /// The device id the server issued or confirmed.
    pub device: DeviceId,
    /// The key it logged in with.
    pub identity: Identity,
}

/// Logs `user` in as a new device with a fresh key, reads 259 and answers "in sync".
pub async fn login(server: &impl Endpoint, user: &str) -> Session {
    login_as(server, user, &Identity::generate(user), DeviceId::NEW).await
}

/// Logs in with a given identity and device, reads 259 and answers "in sync".
pub async fn login_as(
    server: &impl Endpoint,
    user: &str,
    identity: &Identity,
    device: DeviceId,
) -> Session {
    let client = RawClient::connect(server, Some(identity)).await;
    login_on(client, user, identity, device).await
}

/// [`login_as`] on a connection that negotiated the extension set (`vcom/1+ext`).
pub async fn login_ext(
    server: &impl Endpoint,
    user: &str,
    identity: &Identity,
    device: DeviceId,
) -> Session {
    let client = RawClient::connect_ext(server, identity).await;
    assert_eq!(
        client.negotiated().as_deref(),
        Some(vcom_protocol::alpn::EXT)
    );
    login_on(client, user, identity, device).await
}

async fn login_on(
    mut client: RawClient,
    user: &str,
    identity: &Identity,
    device: DeviceId,
) -> Session {
    client.request_login(user, device, b"").await;
    let outcome = match client.recv().await {
        ServerPacket::ConnectionAccepted(a) => LoginOutcome::Accepted(a.device),
        ServerPacket::ConnectionDenied(d) => LoginOutcome::Denied(d.code),
        other => panic!("expected 257 or 258, got {other:?}"),
    };
    let LoginOutcome::Accepted(device) = outcome else {
        panic!("login of {user} refused: {outcome:?}")
    };
    match client.recv().await {
        ServerPacket::RequestUserListsSync(_) => {}
        other => panic!("expected 259 after 257, got {other:?}"),
    }
    // With the extension set, the user's groups come next: 524, then a 525 for each.
    if client.negotiated().as_deref() == Some(vcom_protocol::alpn::EXT) {
        let groups = match client.recv().await {
            ServerPacket::GroupList(list) => list.groups,
            other => panic!("expected 524 after 259 with the extension set, got {other:?}"),
        };
        for group in groups {
            match client.recv().await {
                ServerPacket::GroupInfo(info) if info.group == group => {}
                other => panic!("expected the 525 of group {group}, got {other:?}"),
            }
        }
    }
    client
        .send(UserListsSync {
            friends: vcom_protocol::ListSync::InSync,
            blocks: vcom_protocol::ListSync::InSync,
        })
        .await;
    Session {
        client,
        device,
        identity: identity.clone(),
    }
}

/// Starts a server in a fresh temporary directory (see [`TestServer::start_temp`]) and
/// logs `users` in, in order, each as a new device with a fresh key ([`login`]).
pub async fn start_with_users<const N: usize>(
    configure: impl FnOnce(&mut ServerConfig),
    users: [&str; N],
) -> (tempfile::TempDir, TestServer, [Session; N]) {
    let (dir, server) = TestServer::start_temp(configure).await;
    let mut sessions = Vec::with_capacity(N);
    for user in users {
        sessions.push(login(&server, user).await);
    }
    let Ok(sessions) = <[Session; N]>::try_from(sessions) else {
        unreachable!("one session per user")
    };
    (dir, server, sessions)
}

impl Session {
    /// Another device of the same user: logs in with this session's key as a new device.
    pub async fn second_device(&self, server: &impl Endpoint, user: &str) -> Session {
        login_as(server, user, &self.identity, DeviceId::NEW).await
    }

    /// Uploads a block list naming `users` (friends stay in sync) and waits for the
    /// server's 259, which it sends once the new list is stored.
    pub async fn block(&mut self, users: &[&str]) {
        self.client
            .send(UserListsSync {
                friends: ListSync::InSync,
                blocks: ListSync::Upload(users.iter().map(|u| uid(u)).collect()),
            })
            .await;
        recv_packet!(self.client, RequestUserListsSync);
    }

    /// Waits for the next packet, which must be a direct message (264), and returns
    /// (sender, read, text).
    pub async fn next_direct(&mut self) -> (String, bool, String) {
        let m = recv_packet!(self.client, UserMessage);
        let text = String::from_utf8(m.data.to_vec()).expect("the test sent UTF-8 text");
        (m.sender.to_string(), m.read, text)
    }
}
