//! The extension set (`vcom/1+ext`) over real TLS: negotiation by ALPN, sequence numbers
//! with delivery receipts, send acknowledgements; and a client that negotiates nothing
//! sees none of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use vcom_protocol::{
    ClientPacket, DeviceId, GroupId, MessageKind, MessageTag, Receipt, SendGroupMessage,
    SendOutcome, ServerPacket, Timestamp, alpn,
};
use vcom_tests::harness::{
    Endpoint, Identity, RawClient, Session, TestServer, login, login_ext, text_to,
    try_tls_connect_offering,
};

/// Logs `user` in with a fresh key on a new device, with the extension set.
async fn login_new_ext(server: &TestServer, user: &str) -> Session {
    login_ext(server, user, &Identity::generate(user), DeviceId::NEW).await
}

/// Drops the connection of `session` and logs its device in again, with the extension
/// set.
async fn again_ext(server: &TestServer, user: &str, session: Session) -> Session {
    let Session {
        client,
        device,
        identity,
    } = session;
    drop(client);
    login_ext(server, user, &identity, device).await
}

/// Reads one numbered message: (sequence number, text).
async fn next_numbered(session: &mut Session) -> (i64, String) {
    let seq = match session.client.recv().await {
        ServerPacket::Sequence(s) => s.seq,
        other => panic!("expected 514 before a stored message, got {other:?}"),
    };
    match session.client.recv().await {
        ServerPacket::UserMessage(m) => (seq, String::from_utf8(m.data.to_vec()).unwrap()),
        ServerPacket::GroupMessage(m) => (seq, String::from_utf8(m.data.to_vec()).unwrap()),
        other => panic!("expected a stored message after 514, got {other:?}"),
    }
}

/// Sends a tagged direct message and returns the server's answer.
async fn tagged(session: &mut Session, client_id: i64, to: &str, text: &str) -> SendOutcome {
    session.client.send(MessageTag { client_id }).await;
    session.client.send(text_to(to, text, 1)).await;
    ack(session, client_id).await
}

async fn ack(session: &mut Session, client_id: i64) -> SendOutcome {
    match session.client.recv().await {
        ServerPacket::SendAck(a) if a.client_id == client_id => a.outcome,
        other => panic!("expected 517 for {client_id}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_server_prefers_the_extension_set_and_serves_the_wiki_alone_to_who_asks() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let target = server.target();
    let id = Identity::generate("alice");
    for (offer, chosen) in [
        (vec![alpn::EXT, alpn::WIKI], Some(alpn::EXT)),
        (vec![alpn::WIKI, alpn::EXT], Some(alpn::EXT)),
        (vec![alpn::WIKI], Some(alpn::WIKI)),
        (vec![], None),
    ] {
        let tls = try_tls_connect_offering(&target, Some(&id), &offer)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), chosen, "{offer:?}");
    }
    assert!(
        try_tls_connect_offering(&target, Some(&id), &[b"h2"])
            .await
            .is_err(),
        "a client that offers only protocols the server does not speak is refused"
    );
}

#[tokio::test]
async fn a_client_that_negotiates_nothing_gets_the_wikis_packets_and_may_not_send_receipts() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut bob = login(&server, "bob").await;
    assert_eq!(bob.client.negotiated(), None);
    let mut alice = login(&server, "alice").await;
    alice.client.send(text_to("bob", "plain", 1)).await;
    assert!(
        matches!(bob.client.recv().await, ServerPacket::UserMessage(_)),
        "no 514 before it"
    );
    bob.client.send(Receipt { through: 1 }).await;
    assert!(bob.client.recv_until_closed().await.is_empty());

    alice.client.send(MessageTag { client_id: 1 }).await;
    assert!(alice.client.recv_until_closed().await.is_empty());
}

#[tokio::test]
async fn only_a_receipt_moves_the_cursor_and_what_is_unconfirmed_comes_again() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut bob = login_new_ext(&server, "bob").await;
    let mut alice = login(&server, "alice").await;
    for text in ["one", "two", "three"] {
        alice.client.send(text_to("bob", text, 1)).await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_numbered(&mut bob).await);
    }
    let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "numbers grow: {got:?}"
    );

    // Only "one" is confirmed; the Pong says the receipt is durable.
    bob.client.send(Receipt { through: got[0].0 }).await;
    bob.client.round_trip().await;
    let mut bob = again_ext(&server, "bob", bob).await;
    assert_eq!(next_numbered(&mut bob).await, got[1].clone());
    assert_eq!(next_numbered(&mut bob).await, got[2].clone());
    bob.client.send(Receipt { through: got[2].0 }).await;
    assert!(
        bob.client.round_trip().await.is_empty(),
        "nothing else waits"
    );
    let mut bob = again_ext(&server, "bob", bob).await;
    assert!(bob.client.round_trip().await.is_empty(), "all confirmed");
}

#[tokio::test]
async fn a_receipt_never_confirms_more_than_was_sent() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut bob = login_new_ext(&server, "bob").await;
    let mut alice = login(&server, "alice").await;
    alice.client.send(text_to("bob", "seen", 1)).await;
    next_numbered(&mut bob).await;
    bob.client.send(Receipt { through: i64::MAX }).await;
    bob.client.round_trip().await;
    let Session {
        client,
        device,
        identity,
    } = bob;
    drop(client);
    alice.client.send(text_to("bob", "while away", 2)).await;
    alice.client.round_trip().await;
    let mut bob = login_ext(&server, "bob", &identity, device).await;
    assert_eq!(next_numbered(&mut bob).await.1, "while away");
}

#[tokio::test]
async fn a_tagged_message_is_answered_with_its_outcome_and_a_resend_is_stored_once() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut bob = login(&server, "bob").await;
    let mut alice = login_new_ext(&server, "alice").await;

    assert_eq!(
        tagged(&mut alice, 1, "bob", "hello").await,
        SendOutcome::Stored
    );
    assert!(matches!(
        bob.client.recv().await,
        ServerPacket::UserMessage(_)
    ));
    assert_eq!(
        tagged(&mut alice, 2, "nobody", "hello?").await,
        SendOutcome::UnknownRecipient
    );
    alice.client.send(MessageTag { client_id: 3 }).await;
    alice
        .client
        .send(SendGroupMessage {
            group: GroupId(4242),
            sent_at: Timestamp(1),
            kind: MessageKind::Text,
            data: Bytes::from_static(b"hello group?"),
        })
        .await;
    assert_eq!(ack(&mut alice, 3).await, SendOutcome::NotAMember);

    // The answer to 1 was lost (say); the same message comes again after a reconnect.
    let mut alice = again_ext(&server, "alice", alice).await;
    assert_eq!(
        tagged(&mut alice, 1, "bob", "hello").await,
        SendOutcome::Stored
    );
    assert!(
        bob.client.round_trip().await.is_empty(),
        "stored and relayed once"
    );

    // A blocked sender hears what anyone hears; the message goes nowhere.
    bob.block(&["alice"]).await;
    assert_eq!(
        tagged(&mut alice, 5, "bob", "blocked").await,
        SendOutcome::Stored
    );
    assert!(bob.client.round_trip().await.is_empty());
}

#[tokio::test]
async fn a_tag_not_followed_by_a_message_ends_the_connection() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut alice = login_new_ext(&server, "alice").await;
    alice.client.send(MessageTag { client_id: 1 }).await;
    alice
        .client
        .send(ClientPacket::from(vcom_protocol::Ping { nonce: 1 }))
        .await;
    assert!(alice.client.recv_until_closed().await.is_empty());
    // The server goes on serving everyone else.
    let _other: RawClient = login(&server, "carol").await.client;
}

/// Eight senders pipeline fifty messages each at once: their commits land in batches
/// that interleave the senders, yet bob's device receives every message once, in
/// strictly increasing sequence numbers, each sender's in the order sent.
#[tokio::test]
async fn a_device_receives_many_senders_messages_in_sequence_order() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut bob = login_new_ext(&server, "bob").await;
    let mut senders = Vec::new();
    for n in 0..8 {
        senders.push(login(&server, &format!("s{n}")).await);
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, mut sender)| {
            tokio::spawn(async move {
                for i in 0..50 {
                    sender
                        .client
                        .send(text_to("bob", &format!("s{n} {i:02}"), 1))
                        .await;
                }
                sender.client.round_trip().await;
                sender
            })
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..400 {
        got.push(next_numbered(&mut bob).await);
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence numbers only grow"
    );
    for n in 0..8 {
        let prefix = format!("s{n} ");
        let mine: Vec<&str> = got
            .iter()
            .filter_map(|(_, text)| text.strip_prefix(&prefix))
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("{i:02}")).collect();
        assert_eq!(mine, expected, "sender {n}");
    }
}
