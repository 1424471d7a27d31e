//! The vCom protocol as the workloads speak it, to `vcom-server` and to the relay alike:
//! the packets and codec of `vcom-protocol`, one client key per simulated user (the
//! SDK's [`Identity`]), the server pinned by its certificate's fingerprint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use vcom_client::Identity;
use vcom_protocol::{
    ClientPacket, ConnectionRequest, Decoded, DeviceId, GroupId, Limits, MessageKind, Ping,
    SendGroupMessage, SendUserMessage, ServerPacket, Timestamp, UserId,
};

use crate::wire::{Event, Protocol, Tls, Workload};

/// The user identifier of simulated user `index`.
pub fn user_name(index: usize) -> String {
    format!("u{index}")
}

fn user_id(index: usize) -> anyhow::Result<UserId> {
    Ok(UserId::new(user_name(index))?)
}

/// One key per simulated user, generated once per suite (key generation costs far more
/// than a login) and reused against every vCom target.
#[derive(Clone, Default)]
pub struct Identities {
    keys: Arc<Vec<Identity>>,
    names: Arc<Vec<UserId>>,
    configs: Arc<Vec<Arc<rustls::ClientConfig>>>,
    /// The fingerprint the current target's certificate must have.
    pin: Arc<RwLock<String>>,
}

impl Identities {
    /// Generates `count` identities (on every core) and their TLS configurations.
    pub async fn generate(count: usize) -> anyhow::Result<Identities> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per = count.div_ceil(threads).max(1);
        let mut tasks = Vec::new();
        for start in (0..count).step_by(per) {
            let end = (start + per).min(count);
            tasks.push(tokio::task::spawn_blocking(move || {
                (start..end)
                    .map(|i| Ok(Identity::generate(&user_id(i)?)?))
                    .collect::<anyhow::Result<Vec<_>>>()
            }));
        }
        let mut keys = Vec::with_capacity(count);
        for task in tasks {
            keys.extend(task.await.context("key generation task failed")??);
        }
        let pin = Arc::new(RwLock::new(String::new()));
        let configs = keys
            .iter()
            .map(|identity| client_config(identity, pin.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names = (0..count)
            .map(user_id)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Identities {
            keys: Arc::new(keys),
            names: Arc::new(names),
            configs: Arc::new(configs),
            pin,
        })
    }

    /// How many users have a key.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no user has a key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Pins the certificate fingerprint of the target about to be measured.
    fn pin(&self, fingerprint: &str) {
        if let Ok(mut pin) = self.pin.write() {
            *pin = fingerprint.to_ascii_lowercase();
        }
    }
}

fn client_config(
    identity: &Identity,
    pin: Arc<RwLock<String>>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(identity.to_pem().as_bytes())
        .context("the identity's PEM has no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::wire::ServerCheck::pinned(
            &provider, pin,
        )))
        .with_client_auth_cert(vec![identity.certificate().clone()], key)?;
    // Every login is a full handshake, as a new device's would be: no resumption
    // carried from one target or run to the next.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A vCom target: `vcom-server`, or the relay.
pub struct Vcom {
    name: String,
    addr: SocketAddr,
    identities: Identities,
    /// Each user's device identifier once issued (0: none yet, log in as a new device).
    devices: Vec<AtomicI32>,
    password: Bytes,
    limits: Limits,
    /// `vcom-server`'s admin socket, to create the group; `None` for the relay, whose
    /// every group holds every user.
    admin_socket: Option<PathBuf>,
    group: OnceLock<GroupId>,
    settings: String,
}

impl Vcom {
    /// A vCom target at `addr` whose certificate has `fingerprint`.
    pub fn new(
        name: &str,
        addr: SocketAddr,
        fingerprint: &str,
        identities: Identities,
        admin_socket: Option<PathBuf>,
        settings: String,
    ) -> Vcom {
        identities.pin(fingerprint);
        let devices = (0..identities.len()).map(|_| AtomicI32::new(0)).collect();
        Vcom {
            name: name.to_owned(),
            addr,
            identities,
            devices,
            password: Bytes::new(),
            limits: Limits::default(),
            admin_socket,
            group: OnceLock::new(),
            settings,
        }
    }

    /// Sets the server password sent at login.
    pub fn with_password(mut self, password: Option<String>) -> Vcom {
        self.password = password.map(Bytes::from).unwrap_or_default();
        self
    }

    /// The limits used to decode what the server sends.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

fn encode(packet: impl Into<ClientPacket>, out: &mut BytesMut) {
    packet.into().encode(out);
}

/// Reads from `stream` until `buf` holds a whole server packet, and takes it off.
pub async fn read_packet(
    stream: &mut Tls,
    buf: &mut BytesMut,
    limits: &Limits,
) -> anyhow::Result<ServerPacket> {
    loop {
        if let Decoded::Complete { packet, len } = ServerPacket::decode(buf, limits)? {
            buf.advance(len);
            return Ok(packet);
        }
        buf.reserve(16 * 1024);
        if stream.read_buf(buf).await? == 0 {
            bail!("the server closed the connection");
        }
    }
}

impl Protocol for Vcom {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn tls(&self, user: usize) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        self.identities
            .configs
            .get(user)
            .cloned()
            .with_context(|| format!("no key for user {user}: generate more identities"))
    }

    fn login<'a>(
        &'a self,
        user: usize,
        _persistent: bool,
        stream: &'a mut Tls,
        buf: &'a mut BytesMut,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let slot = self.devices.get(user).context("user out of range")?;
            let device = match slot.load(Ordering::Relaxed) {
                0 => DeviceId::NEW,
                id => DeviceId(id),
            };
            let mut out = BytesMut::new();
            encode(
                ConnectionRequest {
                    user: user_name(user),
                    device,
                    password: self.password.clone(),
                },
                &mut out,
            );
            stream.write_all(&out).await?;
            match read_packet(stream, buf, &self.limits).await? {
                ServerPacket::ConnectionAccepted(accepted) => {
                    slot.store(accepted.device.0, Ordering::Relaxed);
                    Ok(())
                }
                ServerPacket::ConnectionDenied(denied) => {
                    bail!("login of {} refused: {}", user_name(user), denied.code)
                }
                other => bail!("login answered with {} ({})", other.name(), other.id()),
            }
        })
    }

    fn direct(&self, _from: usize, to: usize, payload: &[u8], out: &mut BytesMut) {
        let Some(recipient) = self.identities.names.get(to) else {
            return; // the workloads only address users that have a key
        };
        encode(
            SendUserMessage {
                recipient: recipient.clone(),
                sent_at: Timestamp(1_700_000_000_000),
                kind: MessageKind::Text,
                data: Bytes::copy_from_slice(payload),
            },
            out,
        );
    }

    fn group(&self, _from: usize, payload: &[u8], out: &mut BytesMut) {
        encode(
            SendGroupMessage {
                group: self.group.get().copied().unwrap_or(GroupId(1)),
                sent_at: Timestamp(1_700_000_000_000),
                kind: MessageKind::Text,
                data: Bytes::copy_from_slice(payload),
            },
            out,
        );
    }

    fn barrier(&self, out: &mut BytesMut) {
        encode(Ping { nonce: 1 }, out);
    }

    fn decode(&self, buf: &mut BytesMut, _replies: &mut BytesMut) -> anyhow::Result<Option<Event>> {
        let (packet, len) = match ServerPacket::decode(buf, &self.limits)? {
            Decoded::Complete { packet, len } => (packet, len),
            Decoded::Incomplete { .. } => return Ok(None),
        };
        buf.advance(len);
        Ok(Some(match packet {
            ServerPacket::UserMessage(m) => Event::Message(m.data),
            ServerPacket::GroupMessage(m) => Event::Message(m.data),
            ServerPacket::Pong(_) => Event::Barrier,
            _ => Event::Other,
        }))
    }

    fn supports(&self, _workload: Workload) -> Result<(), String> {
        Ok(())
    }

    fn prepare_group<'a>(&'a self, members: &'a [usize]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(socket) = &self.admin_socket else {
                return Ok(());
            };
            let request = vcom_server::AdminRequest::Group {
                action: vcom_server::admin::GroupAction::Create {
                    name: "bench".to_owned(),
                    members: members.iter().map(|m| user_name(*m)).collect(),
                },
            };
            let answer = admin(socket, &request).await?;
            let id = match answer.reply {
                Some(vcom_server::admin::AdminReply::GroupCreated { id }) => id,
                _ => bail!(
                    "group create refused: {}",
                    answer
                        .error
                        .unwrap_or_else(|| "an unexpected answer".into())
                ),
            };
            self.group
                .set(GroupId(id))
                .map_err(|_| anyhow::anyhow!("the group was created twice"))
        })
    }

    fn settings(&self) -> String {
        self.settings.clone()
    }
}

/// Sends one request to a running `vcom-server`'s admin socket and returns its answer.
pub async fn admin(
    socket: &std::path::Path,
    request: &vcom_server::AdminRequest,
) -> anyhow::Result<vcom_server::AdminResponse> {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("cannot reach the admin socket {}", socket.display()))?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut answer = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut answer)
            .await?;
        let value: vcom_server::AdminResponse =
            serde_json::from_str(&answer).context("the admin socket answered garbage")?;
        anyhow::Ok(value)
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .context("the admin socket did not answer within 30 s")?
}
