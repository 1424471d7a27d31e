//! Only TLS 1.3 is spoken: a TLS 1.2-only client and a plain-TCP client are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vcom_protocol::{ClientPacket, ConnectionRequest, DeviceId};
use vcom_tests::harness::{TIMEOUT, TestServer};

/// A TLS 1.2 ClientHello: no `supported_versions` extension, one TLS 1.2 cipher suite.
fn tls12_client_hello() -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1
    extensions.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);

    let mut body = vec![0x03, 0x03]; // client_version TLS 1.2
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-ECDSA/RSA-AES128-GCM
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![0x01]; // ClientHello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, 0x01]; // handshake record
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection in time")
        .ok();
    answer
}

#[tokio::test]
async fn a_tls_1_2_client_is_refused_with_a_protocol_version_alert() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&tls12_client_hello()).await.unwrap();
    let answer = read_to_close(&mut tcp).await;
    // An alert record (type 21) whose description is protocol_version (70), no ServerHello.
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "expected an alert record, got {answer:02x?}"
    );
    assert_eq!(
        answer.get(6),
        Some(&70),
        "expected protocol_version, got {answer:02x?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_plain_tcp_login_gets_no_answer_but_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let login = ClientPacket::from(ConnectionRequest {
        user: "alice".into(),
        device: DeviceId::NEW,
        password: Default::default(),
    });
    tcp.write_all(&login.to_bytes()).await.unwrap();
    let answer = read_to_close(&mut tcp).await;
    // At most a TLS alert about the garbage, never a vCom packet (257 or 258).
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "expected nothing or an alert, got {answer:02x?}"
    );
    server.stop().await;
}
