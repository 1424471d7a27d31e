//! Direct and group messages, offline delivery across a restart, the block list,
//! group membership and broadcasts, over real TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use vcom_protocol::{GroupId, MessageKind, SendGroupMessage, SendUserMessage, Timestamp};
use vcom_server::AdminRequest;
use vcom_server::admin::GroupAction;
use vcom_tests::harness::{TestServer, login, login_as, start_with_users, text_to, uid};
use vcom_tests::recv_packet;

fn to_group(group: GroupId, text: &str) -> SendGroupMessage {
    SendGroupMessage {
        group,
        sent_at: Timestamp(42),
        kind: MessageKind::Text,
        data: Bytes::from(text.to_owned()),
    }
}

/// Creates the group "team" of `members` and returns its id.
async fn create_group(server: &TestServer, members: &[&str]) -> GroupId {
    let out = server
        .admin(AdminRequest::Group {
            action: GroupAction::Create {
                name: "team".into(),
                members: members.iter().map(|m| m.to_string()).collect(),
            },
        })
        .await;
    GroupId(out.trim().parse().unwrap())
}

#[tokio::test]
async fn a_direct_message_reaches_every_online_device_of_the_recipient() {
    let (_dir, server, [mut bob1]) = start_with_users(|_| {}, ["bob"]).await;
    let mut bob2 = bob1.second_device(&server, "bob").await;
    let mut alice = login(&server, "alice").await;
    let image = Bytes::from_static(&[0x89, b'P', b'N', b'G', 0, 255]);
    alice
        .client
        .send(text_to("bob", "hi bob", 1_700_000_000_000))
        .await;
    alice
        .client
        .send(SendUserMessage {
            recipient: uid("bob"),
            sent_at: Timestamp(7),
            kind: MessageKind::Image,
            data: image.clone(),
        })
        .await;
    for bob in [&mut bob1, &mut bob2] {
        let m = recv_packet!(bob.client, UserMessage);
        assert_eq!(m.sender, uid("alice"));
        assert!(!m.read);
        assert_eq!(
            m.sent_at,
            Timestamp(1_700_000_000_000),
            "the mailing date is the sender's timestamp"
        );
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(&m.data[..], b"hi bob");
        let m = recv_packet!(bob.client, UserMessage);
        assert_eq!(m.kind, MessageKind::Image);
        assert_eq!(m.data, image, "image bytes arrive byte-exact");
    }
    server.stop().await;
}

#[tokio::test]
async fn messages_for_an_offline_user_survive_a_restart_and_arrive_in_order() {
    let (dir, server, [bob]) = start_with_users(|_| {}, ["bob"]).await;
    let (bob_identity, bob_device) = (bob.identity.clone(), bob.device);
    drop(bob);
    let mut alice = login(&server, "alice").await;
    for i in 0..20 {
        alice
            .client
            .send(text_to("bob", &format!("message {i}"), i))
            .await;
    }
    alice.client.round_trip().await; // every message is stored before the Pong
    server.stop().await;

    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut bob = login_as(&server, "bob", &bob_identity, bob_device).await;
    for i in 0..20 {
        let (from, read, text) = bob.next_direct().await;
        assert_eq!(
            (from.as_str(), read, text),
            ("alice", false, format!("message {i}"))
        );
    }
    // The writer records the backlog as delivered before it writes anything queued
    // later, so once the Pong arrives the delivery is on disk.
    bob.client.round_trip().await;
    // Delivered once: a fresh login of the same device gets nothing more.
    drop(bob);
    let mut bob = login_as(&server, "bob", &bob_identity, bob_device).await;
    assert!(bob.client.round_trip().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_message_seen_on_one_device_arrives_read_on_another() {
    let (_dir, server, [mut bob1]) = start_with_users(|_| {}, ["bob"]).await;
    let bob2 = bob1.second_device(&server, "bob").await;
    let (id2, dev2) = (bob2.identity.clone(), bob2.device);
    drop(bob2);
    let mut alice = login(&server, "alice").await;
    alice
        .client
        .send(text_to("bob", "seen on device one", 1))
        .await;
    assert_eq!(
        bob1.next_direct().await,
        ("alice".into(), false, "seen on device one".into())
    );
    // The writer records a batch as delivered before it writes the next batch, so the
    // second Pong proves the first batch's delivery is on disk.
    bob1.client.round_trip().await;
    bob1.client.round_trip().await;

    let mut bob2 = login_as(&server, "bob", &id2, dev2).await;
    assert_eq!(
        bob2.next_direct().await,
        ("alice".into(), true, "seen on device one".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_message_from_a_blocked_sender_is_dropped_silently() {
    let (_dir, server, [mut bob]) = start_with_users(|_| {}, ["bob"]).await;
    bob.block(&["mallory"]).await;
    let mut mallory = login(&server, "mallory").await;
    let mut carol = login(&server, "carol").await;
    mallory.client.send(text_to("bob", "spam", 1)).await;
    assert!(
        mallory.client.round_trip().await.is_empty(),
        "the sender is not told"
    );
    carol.client.send(text_to("bob", "hello", 2)).await;
    assert_eq!(
        bob.next_direct().await,
        ("carol".into(), false, "hello".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_message_to_an_unknown_user_is_dropped_and_the_sender_carries_on() {
    let (_dir, server, [mut alice]) = start_with_users(|_| {}, ["alice"]).await;
    alice.client.send(text_to("nobody", "hello?", 1)).await;
    assert!(alice.client.round_trip().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn group_messages_reach_members_but_not_the_sending_device() {
    let (_dir, server, [mut alice1]) = start_with_users(|_| {}, ["alice"]).await;
    let mut alice2 = alice1.second_device(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    let mut carol = login(&server, "carol").await;
    let group = create_group(&server, &["alice", "bob"]).await;

    alice1.client.send(to_group(group, "hello team")).await;
    for member in [&mut alice2, &mut bob] {
        let m = recv_packet!(member.client, GroupMessage);
        assert_eq!(
            (m.sender.as_str(), m.group, m.read),
            ("alice", group, false)
        );
        assert_eq!(&m.data[..], b"hello team");
    }
    assert!(
        alice1.client.round_trip().await.is_empty(),
        "not echoed to the sending device"
    );

    // A non-member's message is dropped; after being added, carol can send.
    carol.client.send(to_group(group, "let me in")).await;
    assert!(carol.client.round_trip().await.is_empty());
    server
        .admin(AdminRequest::Group {
            action: GroupAction::Add {
                id: group.get(),
                user: "carol".into(),
            },
        })
        .await;
    carol.client.send(to_group(group, "thanks")).await;
    let m = recv_packet!(bob.client, GroupMessage);
    assert_eq!((&m.data[..], m.sender.as_str()), (&b"thanks"[..], "carol"));
    // A removed member no longer receives.
    server
        .admin(AdminRequest::Group {
            action: GroupAction::Remove {
                id: group.get(),
                user: "bob".into(),
            },
        })
        .await;
    alice1.client.send(to_group(group, "bye bob")).await;
    alice1.client.round_trip().await;
    carol.client.round_trip().await;
    alice1
        .client
        .send(text_to("bob", "direct still works", 1))
        .await;
    let m = recv_packet!(bob.client, UserMessage); // not a group message after leaving
    assert_eq!(&m.data[..], b"direct still works");
    server.stop().await;
}

#[tokio::test]
async fn a_group_message_for_an_offline_member_is_delivered_at_login() {
    let (_dir, server, [bob]) = start_with_users(|_| {}, ["bob"]).await;
    let (bob_id, bob_dev) = (bob.identity.clone(), bob.device);
    drop(bob);
    let mut alice = login(&server, "alice").await;
    let group = create_group(&server, &["alice", "bob"]).await;
    alice
        .client
        .send(to_group(group, "while you were out"))
        .await;
    alice.client.round_trip().await;
    let mut bob = login_as(&server, "bob", &bob_id, bob_dev).await;
    let m = recv_packet!(bob.client, GroupMessage);
    assert_eq!((&m.data[..], m.group), (&b"while you were out"[..], group));
    server.stop().await;
}

#[tokio::test]
async fn a_broadcast_reaches_every_online_device() {
    let (_dir, server, [alice, bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let extra = bob.second_device(&server, "bob").await;
    let mut sessions = [alice, bob, extra];
    let out = server
        .admin(AdminRequest::Broadcast {
            text: "maintenance at 5 ✓".into(),
        })
        .await;
    assert!(out.contains('3'), "{out}");
    for s in &mut sessions {
        assert_eq!(recv_packet!(s.client, Broadcast).text, "maintenance at 5 ✓");
    }
    server.stop().await;
}

#[tokio::test]
async fn two_sessions_of_one_device_both_stay_connected_and_both_receive() {
    let (_dir, server, [mut listener]) = start_with_users(|_| {}, ["bob"]).await;
    let mut one_shot = login_as(&server, "bob", &listener.identity, listener.device).await;
    assert_eq!(one_shot.device, listener.device);
    let mut alice = login(&server, "alice").await;
    alice.client.send(text_to("bob", "to both", 1)).await;
    assert_eq!(
        one_shot.next_direct().await,
        ("alice".into(), false, "to both".into())
    );
    assert_eq!(
        listener.next_direct().await,
        ("alice".into(), false, "to both".into())
    );
    drop(one_shot);
    alice
        .client
        .send(text_to("bob", "still listening", 2))
        .await;
    assert_eq!(
        listener.next_direct().await,
        ("alice".into(), false, "still listening".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_broadcast_longer_than_the_message_limit_is_refused_and_nobody_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |c| c.limits.max_message_len = 16).await;
    let mut alice = login(&server, "alice").await;
    let refused = server
        .admin
        .execute(AdminRequest::Broadcast {
            text: "x".repeat(17),
        })
        .await;
    assert!(
        matches!(refused, Err(vcom_server::AdminError::Invalid(_))),
        "{refused:?}"
    );
    server
        .admin(AdminRequest::Broadcast {
            text: "x".repeat(16),
        })
        .await;
    match alice.client.recv().await {
        vcom_protocol::ServerPacket::Broadcast(b) => assert_eq!(b.text.len(), 16),
        other => panic!("expected 263, got {other:?}"),
    }
    server.stop().await;
}

/// Waits until `user` has no session left on the server (it learns of a close on its
/// own time).
async fn wait_until_offline(server: &TestServer, user: &str) {
    let deadline = tokio::time::Instant::now() + vcom_tests::harness::TIMEOUT;
    loop {
        let sessions = server.admin(AdminRequest::Sessions).await;
        if !sessions
            .lines()
            .any(|l| l.split_whitespace().next() == Some(user))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} still has a session: {sessions}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn messages_written_back_to_back_keep_their_order_online_and_from_the_store() {
    let (_dir, server, [mut bob, carol, mut alice]) =
        start_with_users(|_| {}, ["bob", "carol", "alice"]).await;
    let (carol_key, carol_device) = (carol.identity.clone(), carol.device);
    drop(carol);
    wait_until_offline(&server, "carol").await;

    // Alice writes them all at once: the server has many on their way to the store.
    const EACH: usize = 300;
    let mut burst = bytes::BytesMut::new();
    for i in 0..EACH {
        for to in ["bob", "carol"] {
            vcom_protocol::ClientPacket::from(text_to(to, &format!("{i}"), 1)).encode(&mut burst);
        }
    }
    alice.client.send_raw(&burst).await;
    alice.client.round_trip().await;

    for i in 0..EACH {
        assert_eq!(
            bob.next_direct().await.2,
            format!("{i}"),
            "online, in order"
        );
    }
    let mut carol = vcom_tests::harness::login_as(&server, "carol", &carol_key, carol_device).await;
    for i in 0..EACH {
        assert_eq!(
            carol.next_direct().await.2,
            format!("{i}"),
            "stored, in order"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_full_inbox_refuses_new_messages_and_delivers_every_one_it_accepted() {
    let (_dir, server, [bob, mut alice]) =
        start_with_users(|c| c.retention.pending_per_user = 3, ["bob", "alice"]).await;
    let (bob_key, bob_device) = (bob.identity.clone(), bob.device);
    drop(bob);
    wait_until_offline(&server, "bob").await;
    for i in 0..5 {
        alice.client.send(text_to("bob", &format!("m{i}"), 1)).await;
    }
    alice.client.round_trip().await;
    let mut bob = vcom_tests::harness::login_as(&server, "bob", &bob_key, bob_device).await;
    for i in 0..3 {
        assert_eq!(
            bob.next_direct().await.2,
            format!("m{i}"),
            "the oldest are kept"
        );
    }
    assert!(
        bob.client.round_trip().await.is_empty(),
        "m3 and m4 were refused"
    );
    server.stop().await;
}

/// One sender past its share of an offline user's inbox (`pending_per_sender`) is
/// refused, while another sender's messages are still stored; the recipient gets every
/// accepted message, and none refused.
#[tokio::test]
async fn a_sender_past_its_share_of_an_inbox_is_refused_and_another_gets_through() {
    let (_dir, server, [bob, mut mallory, mut alice]) = start_with_users(
        |c| c.retention.pending_per_sender = 2,
        ["bob", "mallory", "alice"],
    )
    .await;
    let (bob_key, bob_device) = (bob.identity.clone(), bob.device);
    drop(bob);
    wait_until_offline(&server, "bob").await;
    for i in 0..4 {
        mallory
            .client
            .send(text_to("bob", &format!("flood {i}"), 1))
            .await;
    }
    mallory.client.round_trip().await;
    alice.client.send(text_to("bob", "hello", 2)).await;
    alice.client.round_trip().await;
    let mut bob = vcom_tests::harness::login_as(&server, "bob", &bob_key, bob_device).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let (from, _, text) = bob.next_direct().await;
        got.push(format!("{from}: {text}"));
    }
    assert_eq!(
        got,
        ["mallory: flood 0", "mallory: flood 1", "alice: hello"]
    );
    assert!(
        bob.client.round_trip().await.is_empty(),
        "flood 2 and flood 3 were refused"
    );
    server.stop().await;
}
