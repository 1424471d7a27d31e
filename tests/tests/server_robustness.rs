//! Bad input and bad clients: each malformed packet closes only its own connection, a
//! client that stops reading is disconnected without losing its messages, and everyone
//! else carries on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use bytes::Bytes;
use vcom_protocol::{
    ConnectionRequest, DeviceId, MessageKind, SendUserMessage, ServerPacket, Timestamp, UserId,
};
use vcom_tests::harness::{Session, TestServer, login, login_as};

fn direct(to: &str, data: Bytes) -> SendUserMessage {
    SendUserMessage {
        recipient: UserId::new(to).unwrap(),
        sent_at: Timestamp(1),
        kind: MessageKind::Text,
        data,
    }
}

/// Alice can still reach bob: the server is serving everyone else.
async fn others_carry_on(alice: &mut Session, bob: &mut Session, text: &'static str) {
    message_arrives(alice, bob, "bob", text).await;
}

async fn message_arrives(from: &mut Session, to: &mut Session, to_name: &str, text: &'static str) {
    from.client
        .send(direct(to_name, Bytes::from_static(text.as_bytes())))
        .await;
    match to.client.recv().await {
        ServerPacket::UserMessage(m) => assert_eq!(&m.data[..], text.as_bytes()),
        other => panic!("expected 264, got {other:?}"),
    }
}

fn packet(id: i32, body: &[u8]) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut bytes = (s.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(s);
    bytes
}

/// One malformed packet for each kind of decode error, and a packet in the wrong state.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let message_tail = [&1i64.to_be_bytes()[..], &[1], &string(b"x")].concat();
    vec![
        ("an unknown identifier", packet(999, &[])),
        (
            "an extension identifier nobody defined",
            packet(600, &[0; 8]),
        ),
        (
            "a server-to-client packet",
            packet(257, &7i32.to_be_bytes()),
        ),
        ("a negative length", packet(266, &(-1i32).to_be_bytes())),
        (
            "a length of 0x7fffffff",
            packet(266, &i32::MAX.to_be_bytes()),
        ),
        (
            "a user identifier over the limit",
            packet(266, &[&string(&[b'a'; 65])[..], &message_tail].concat()),
        ),
        (
            "an empty user identifier",
            packet(266, &[&string(b"")[..], &message_tail].concat()),
        ),
        (
            "invalid UTF-8",
            packet(266, &[&string(&[0xff, 0xfe])[..], &message_tail].concat()),
        ),
        (
            "a control character in a user identifier",
            packet(266, &[&string(b"a\x07b")[..], &message_tail].concat()),
        ),
        (
            "message data over the limit",
            packet(
                266,
                &[
                    &string(b"bob")[..],
                    &1i64.to_be_bytes(),
                    &[1],
                    &(1_048_577i32).to_be_bytes(),
                ]
                .concat(),
            ),
        ),
        (
            "a list count over the limit",
            packet(260, &[&[2u8][..], &10_001i32.to_be_bytes()].concat()),
        ),
        ("an unknown sync flag", packet(260, &[3, 0])),
        (
            "a file size of zero",
            packet(
                268,
                &[&string(b"bob")[..], &0i32.to_be_bytes(), &string(b"f.txt")].concat(),
            ),
        ),
        (
            "an empty file name",
            packet(
                268,
                &[&string(b"bob")[..], &5i32.to_be_bytes(), &string(b"")].concat(),
            ),
        ),
        (
            "a chunk over 1024 bytes",
            packet(
                273,
                &[&1i32.to_be_bytes()[..], &string(&[0; 1025])].concat(),
            ),
        ),
        (
            "an empty chunk",
            packet(273, &[&1i32.to_be_bytes()[..], &string(&[])].concat()),
        ),
    ]
}

#[tokio::test]
async fn each_malformed_packet_closes_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    for (i, (what, bytes)) in malformed().into_iter().enumerate() {
        let mut mallory = login(&server, &format!("mallory{i}")).await;
        mallory.client.send_raw(&bytes).await;
        let after = mallory.client.recv_until_closed().await;
        assert!(
            after.is_empty(),
            "{what}: nothing is answered, got {after:?}"
        );
        others_carry_on(&mut alice, &mut bob, what).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_second_login_on_a_logged_in_connection_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    let mut mallory = login(&server, "mallory").await;
    mallory
        .client
        .send(ConnectionRequest {
            user: "alice".into(),
            device: DeviceId::NEW,
            password: Bytes::new(),
        })
        .await;
    assert!(mallory.client.recv_until_closed().await.is_empty());
    others_carry_on(&mut alice, &mut bob, "still here").await;
    server.stop().await;
}

#[tokio::test]
async fn a_packet_cut_off_by_a_disconnect_harms_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    let mut mallory = login(&server, "mallory").await;
    let whole = packet(
        266,
        &[
            &string(b"bob")[..],
            &1i64.to_be_bytes(),
            &[1],
            &string(b"never finished"),
        ]
        .concat(),
    );
    mallory.client.send_raw(&whole[..whole.len() - 3]).await;
    drop(mallory);
    others_carry_on(&mut alice, &mut bob, "after the cut").await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |c| {
        c.outbound_queue = 16;
        c.write_timeout_secs = 1;
    })
    .await;
    let mut alice = login(&server, "alice").await;
    let mut carol = login(&server, "carol").await;
    let mut bob = login(&server, "bob").await;
    let bob_identity = bob.identity.clone();

    // Far more than the queue and both sockets' buffers can hold while bob reads nothing.
    const COUNT: usize = 120;
    let body = vec![b'.'; 256 * 1024];
    for i in 0..COUNT {
        let mut data = format!("{i:04}").into_bytes();
        data.extend_from_slice(&body);
        alice.client.send(direct("bob", Bytes::from(data))).await;
    }
    alice.client.round_trip().await; // every message was stored and relayed (or queued)
    message_arrives(&mut alice, &mut carol, "carol", "while bob is stuck").await;

    // Bob reads nothing: the write timeout cuts him off. His session is gone with its
    // queue, its writer and its socket: the registry (what `admin sessions` lists) no
    // longer holds it, and nothing queued for it stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server
        .admin(vcom_server::AdminRequest::Sessions)
        .await
        .lines()
        .any(|line| line.starts_with("bob\t"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck session was never released"
        );
        tokio::task::yield_now().await;
    }
    // What the server had written before is still in the sockets' buffers.
    let mut seen = BTreeSet::new();
    let early = bob.client.recv_until_closed().await;
    assert!(
        early.len() < COUNT,
        "bob was disconnected before everything was written"
    );
    collect(&mut seen, early);

    // Nothing was lost: a new login delivers the rest.
    let mut again = login_as(&server, "bob", &bob_identity, bob.device).await;
    while seen.len() < COUNT {
        collect(&mut seen, vec![again.client.recv().await]);
    }
    assert_eq!(seen, (0..COUNT).collect::<BTreeSet<_>>());
    server.stop().await;
}

fn collect(seen: &mut BTreeSet<usize>, packets: Vec<ServerPacket>) {
    for p in packets {
        if let ServerPacket::UserMessage(m) = p {
            let n: usize = std::str::from_utf8(&m.data[..4]).unwrap().parse().unwrap();
            seen.insert(n);
        }
    }
}

/// A sender that outruns its recipient's reading cannot knock the recipient offline: the
/// recipient's queue (16 here) fills, the session falls behind and reads the rest from
/// the store, and the recipient, still connected, gets every message once, in order.
#[tokio::test]
async fn a_flood_that_fills_a_slow_readers_queue_leaves_it_connected_with_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |c| {
        c.outbound_queue = 16;
        c.retention.pending_per_sender = 0;
    })
    .await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;

    // More than the queue and both sockets' buffers hold while bob reads nothing.
    const COUNT: usize = 100;
    let body = vec![b'.'; 256 * 1024];
    for i in 0..COUNT {
        let mut data = format!("{i:04}").into_bytes();
        data.extend_from_slice(&body);
        alice.client.send(direct("bob", Bytes::from(data))).await;
    }
    alice.client.round_trip().await;

    let mut order = Vec::new();
    while order.len() < COUNT {
        if let ServerPacket::UserMessage(m) = bob.client.recv().await {
            order.push(
                std::str::from_utf8(&m.data[..4])
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(order, (0..COUNT).collect::<Vec<_>>(), "each once, in order");
    message_arrives(&mut alice, &mut bob, "bob", "still here").await;
    server.stop().await;
}

/// A logged-in client that begins a packet and never finishes it (here half of a 1 MiB
/// message, then silence) is cut off after `packet_timeout_secs`: no connection holds a
/// partial packet and its buffer for ever. Everyone else carries on.
#[tokio::test]
async fn a_packet_begun_and_never_finished_is_cut_off_after_the_packet_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |c| c.packet_timeout_secs = 1).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    let mut mallory = login(&server, "mallory").await;
    let header = [
        &packet(266, &string(b"bob"))[..],
        &1i64.to_be_bytes(),
        &[1],
        &(1_048_576i32).to_be_bytes(),
    ]
    .concat();
    mallory.client.send_raw(&header).await;
    mallory.client.send_raw(&[b'.'; 512 * 1024]).await;
    let seen = mallory.client.recv_until_closed().await;
    assert!(
        seen.is_empty(),
        "nothing answers a partial packet: {seen:?}"
    );
    others_carry_on(&mut alice, &mut bob, "still serving").await;
    server.stop().await;
}

/// The packet timeout counts from the end of the previous packet, and only while part of
/// one waits: a client whose complete packets come further apart than it stays
/// connected.
#[tokio::test]
async fn complete_packets_further_apart_than_the_packet_timeout_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |c| c.packet_timeout_secs = 1).await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    for text in ["one", "two"] {
        // The pause is the scenario (idle between packets), not a wait for an event.
        tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
        message_arrives(&mut alice, &mut bob, "bob", text).await;
    }
    server.stop().await;
}
