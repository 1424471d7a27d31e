//! Establishing a session: profile and identity, TCP, TLS 1.3 with the chosen trust,
//! certificate pinning, and the ConnectionRequest (256) / ConnectionAccepted (257)
//! exchange. Nothing is read from the server before the TLS handshake has verified it.

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info};
use vcom_protocol::{ClientPacket, ConnectionRequest, DenyCode, DeviceId, ServerPacket};

use crate::client::Client;
use crate::config::ClientConfig;
use crate::event::EventStream;
use crate::history::History;
use crate::identity::Identity;
use crate::profile::{Profile, ProfileError};
use crate::session::{Codec, Parts, Session, Transport};
use crate::tls::{self, TlsSetup, Trust, sha256_hex};
use crate::{ClientError, ProtocolError};

/// Connects, logs in and starts the session; bounded by the configured timeout.
///
/// A device identifier the server refuses with code 5 (it retired the device, or never
/// issued it) is forgotten, and the login is tried once more as a new device: the
/// profile's history and identity stay, the server issues another identifier.
pub(crate) async fn connect(config: ClientConfig) -> Result<(Client, EventStream), ClientError> {
    tokio::time::timeout(config.connect_timeout, async {
        match establish(config.clone()).await {
            Err(ClientError::LoginDenied(DenyCode::UnknownDevice)) => {
                let (mut profile, _) = open_profile(&config).await?;
                let Some(old) = profile.state_mut().device_id.take() else {
                    return Err(ClientError::LoginDenied(DenyCode::UnknownDevice));
                };
                info!(device = %old, "the server no longer knows this device: logging in as a new one");
                save(&profile).await?;
                establish(config).await
            }
            other => other,
        }
    })
    .await
    .map_err(|_| ClientError::Timeout("connecting and logging in"))?
}

async fn establish(config: ClientConfig) -> Result<(Client, EventStream), ClientError> {
    let (mut profile, identity) = open_profile(&config).await?;
    let history = History::open(profile.history_path()).await?;

    let pinned = profile.state().server_fingerprint.clone();
    let setup = tls::client_config(
        &config.trust,
        pinned.as_deref(),
        &identity,
        config.extensions,
    )?;
    let name = tls::server_name(config.server_name.as_deref().unwrap_or(config.host()))?;
    let tcp = TcpStream::connect(&config.server).await?;
    tcp.set_nodelay(true)?;
    let stream = TlsConnector::from(setup.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_error(e, &setup))?;

    if !matches!(config.trust, Trust::CaFile(_)) {
        let found = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| sha256_hex(cert.as_ref()))
            .ok_or(ClientError::Tls(rustls::Error::NoCertificatesPresented))?;
        if profile.state().server_fingerprint.as_deref() != Some(found.as_str()) {
            info!(fingerprint = %found, "pinning the server's certificate");
            profile.state_mut().server_fingerprint = Some(found);
            save(&profile).await?;
        }
    }

    let ext = stream.get_ref().1.alpn_protocol() == Some(vcom_protocol::alpn::EXT);
    log_in(Box::new(stream), config, profile, history, ext).await
}

/// The ConnectionRequest (256) and its answer over a connection already verified, then
/// the session: everything [`establish`] does once TLS is up. `ext`: whether the
/// extension set (`vcom/1+ext`) was negotiated.
pub(crate) async fn log_in(
    stream: Transport,
    config: ClientConfig,
    mut profile: Profile,
    history: History,
    ext: bool,
) -> Result<(Client, EventStream), ClientError> {
    let (read, write) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read, Codec::new(config.limits));
    let mut writer = FramedWrite::new(write, Codec::new(config.limits));
    let requested = profile.state().device_id.unwrap_or(DeviceId::NEW);
    let login = ClientPacket::from(ConnectionRequest {
        user: config.user.to_string(),
        device: requested,
        password: config.password.clone(),
    });
    writer.send(login).await.map_err(codec_error)?;
    let device = match reader.next().await {
        Some(Ok(ServerPacket::ConnectionAccepted(accepted))) => accepted.device,
        Some(Ok(ServerPacket::ConnectionDenied(denied))) => {
            return Err(ClientError::LoginDenied(denied.code));
        }
        Some(Ok(other)) => {
            return Err(ClientError::Protocol(ProtocolError::Unexpected {
                expected: "ConnectionAccepted or ConnectionDenied",
                got: other.name(),
            }));
        }
        Some(Err(e)) => return Err(codec_error(e)),
        None => {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the login",
            )));
        }
    };
    if device.get() < 1 {
        return Err(ClientError::Protocol(ProtocolError::Unexpected {
            expected: "a positive device identifier",
            got: "ConnectionAccepted",
        }));
    }
    if profile.state().device_id != Some(device) {
        debug!(%device, "storing the device identifier");
        profile.state_mut().device_id = Some(device);
        save(&profile).await?;
    }

    let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
    let parts = Parts {
        reader,
        writer,
        profile,
        history: history.clone(),
        keepalive: config.keepalive,
        ext,
    };
    let (session, handles) = Session::start(parts, events_tx);
    tokio::spawn(session.run());
    let client = Client::new(config.user, device, config.limits, history, handles);
    Ok((client, EventStream { rx: events_rx }))
}

/// Opens the profile on a blocking thread, claims it for the user and makes sure it has
/// an identity (generated on first use).
pub(crate) async fn open_profile(
    config: &ClientConfig,
) -> Result<(Profile, Identity), ClientError> {
    let dir = config.profile_dir.clone();
    let user = config.user.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, ProfileError> {
        let mut profile = Profile::open(dir)?;
        let before = profile.state().clone();
        profile.claim(&user)?;
        let identity = profile.identity_or_generate(&user)?;
        if *profile.state() != before {
            profile.save()?;
        }
        Ok((profile, identity))
    })
    .await
    .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
    Ok(opened?)
}

async fn save(profile: &Profile) -> Result<(), ClientError> {
    let profile = profile.clone();
    tokio::task::spawn_blocking(move || profile.save())
        .await
        .map_err(|e| ClientError::Io(std::io::Error::other(e)))??;
    Ok(())
}

/// Explains a failed handshake: a pin mismatch as such, a TLS error as such.
fn handshake_error(e: std::io::Error, setup: &TlsSetup) -> ClientError {
    let found = setup
        .report
        .mismatch
        .lock()
        .ok()
        .and_then(|mut slot| slot.take());
    if let (Some(found), Some(expected)) = (found, setup.expected.clone()) {
        return ClientError::FingerprintMismatch { expected, found };
    }
    io_error(e)
}

/// An IO error that carries a TLS error (an alert from the server, a bad certificate)
/// becomes [`ClientError::Tls`].
pub(crate) fn io_error(e: std::io::Error) -> ClientError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => ClientError::Tls(tls.clone()),
        None => ClientError::Io(e),
    }
}

fn codec_error(e: vcom_protocol::codec::CodecError) -> ClientError {
    match e {
        vcom_protocol::codec::CodecError::Io(e) => io_error(e),
        other => other.into(),
    }
}
