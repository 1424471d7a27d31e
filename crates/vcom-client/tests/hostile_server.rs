//! A server that breaks the protocol: the SDK never panics, and ends the connection with
//! an error that says what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vcom_client::{
    Client, ClientConfig, ClientError, DenyCode, DisconnectReason, Event, ProtocolError, Trust,
    UserId,
};
use vcom_protocol::{
    ConnectionAccepted, ConnectionDenied, DeviceId, RequestUserListsSync, ServerPacket, Timestamp,
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Accepts one TLS 1.3 connection, reads the client's first bytes (its login), then
/// writes `script` and keeps the connection open until the client goes away.
async fn hostile_server(script: Vec<u8>) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let fingerprint: String = ring::digest::digest(&ring::digest::SHA256, cert.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await
            .unwrap();
        let mut login = [0u8; 256];
        let _ = tls.read(&mut login).await;
        let _ = tls.write_all(&script).await;
        let _ = tls.flush().await;
        let mut sink = Vec::new();
        let _ = tls.read_to_end(&mut sink).await;
    });
    (addr, fingerprint)
}

/// Connects to a hostile server playing `script`, with a profile in `profile`.
async fn connect(
    profile: &tempfile::TempDir,
    script: Vec<u8>,
) -> Result<(Client, vcom_client::EventStream), ClientError> {
    let (addr, fingerprint) = hostile_server(script).await;
    let config = ClientConfig::new(addr, UserId::new("alice").unwrap(), profile.path())
        .with_trust(Trust::Fingerprint(fingerprint));
    tokio::time::timeout(TIMEOUT, Client::connect(config))
        .await
        .expect("connect ends in time")
}

/// The error of a login that must fail.
async fn login_error(profile: &tempfile::TempDir, script: Vec<u8>) -> ClientError {
    match connect(profile, script).await {
        Err(e) => e,
        Ok(_) => panic!("the login succeeded against a hostile server"),
    }
}

fn bytes(packets: &[ServerPacket]) -> Vec<u8> {
    packets.iter().flat_map(|p| p.to_bytes().to_vec()).collect()
}

fn accepted() -> Vec<u8> {
    bytes(&[
        ConnectionAccepted {
            device: DeviceId(3),
        }
        .into(),
        RequestUserListsSync {
            friends: Timestamp::NEVER,
            blocks: Timestamp::NEVER,
        }
        .into(),
    ])
}

/// The reason the connection ended, after whatever events came first.
async fn disconnect_reason(events: &mut vcom_client::EventStream) -> DisconnectReason {
    loop {
        match tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("the connection ends in time")
        {
            Some(Event::Disconnected { reason }) => return reason,
            Some(_) => continue,
            None => panic!("the event stream ended without Disconnected"),
        }
    }
}

#[tokio::test]
async fn garbage_instead_of_a_login_answer_is_a_decode_error() {
    let profile = tempfile::tempdir().unwrap();
    let err = login_error(&profile, 999i32.to_be_bytes().to_vec()).await;
    assert!(
        matches!(err, ClientError::Protocol(ProtocolError::Decode(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_denial_code_is_reported_as_such() {
    let profile = tempfile::tempdir().unwrap();
    let denied = bytes(&[ConnectionDenied {
        code: DenyCode::Other(99),
    }
    .into()]);
    let err = login_error(&profile, denied).await;
    assert!(
        matches!(err, ClientError::LoginDenied(DenyCode::Other(99))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_huge_length_after_login_ends_the_connection_with_a_decode_error() {
    let profile = tempfile::tempdir().unwrap();
    let mut script = accepted();
    // 263 Broadcast announcing 0x7fffffff bytes of text.
    script.extend_from_slice(&263i32.to_be_bytes());
    script.extend_from_slice(&i32::MAX.to_be_bytes());
    let (_client, mut events) = connect(&profile, script).await.expect("the login succeeds");
    match disconnect_reason(&mut events).await {
        DisconnectReason::Error(ClientError::Protocol(ProtocolError::Decode(e))) => {
            assert!(e.to_string().contains("Broadcast"), "{e}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_packet_sent_by_the_server_ends_the_connection() {
    let profile = tempfile::tempdir().unwrap();
    let mut script = accepted();
    // 266 travels client to server only.
    script.extend_from_slice(&266i32.to_be_bytes());
    script.extend_from_slice(&[0; 32]);
    let (_client, mut events) = connect(&profile, script).await.expect("the login succeeds");
    let reason = disconnect_reason(&mut events).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::Error(ClientError::Protocol(ProtocolError::Decode(_)))
        ),
        "{reason:?}"
    );
}

#[tokio::test]
async fn a_list_nobody_asked_for_ends_the_connection_as_unexpected() {
    let profile = tempfile::tempdir().unwrap();
    let mut script = accepted();
    script.extend(bytes(&[vcom_protocol::FriendList {
        entries: vec![UserId::new("bob").unwrap()],
    }
    .into()]));
    let (_client, mut events) = connect(&profile, script).await.expect("the login succeeds");
    let reason = disconnect_reason(&mut events).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::Error(ClientError::Protocol(ProtocolError::Unexpected { .. }))
        ),
        "{reason:?}"
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_pings_is_dropped_by_the_keepalive() {
    let profile = tempfile::tempdir().unwrap();
    let (addr, fingerprint) = hostile_server(accepted()).await;
    let config = ClientConfig::new(addr, UserId::new("alice").unwrap(), profile.path())
        .with_trust(Trust::Fingerprint(fingerprint))
        .with_keepalive(Duration::from_millis(200));
    let (_client, mut events) = tokio::time::timeout(TIMEOUT, Client::connect(config))
        .await
        .expect("connect ends in time")
        .expect("the login succeeds");
    let reason = disconnect_reason(&mut events).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::Error(ClientError::KeepaliveTimeout)
        ),
        "{reason:?}"
    );
}
