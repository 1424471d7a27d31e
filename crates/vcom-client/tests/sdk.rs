//! The SDK against a real server over TLS: login, pinning, identities, list sync,
//! messages, history and file transfers.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::{
    TIMEOUT, TestServer, copy_identity, finished, next_group_message, next_message, next_offer,
    next_transfer_end, uid, wait_for_disconnect, wait_until,
};
use vcom_client::{
    AbortReason, Client, ClientError, DeliveryState, DenyCode, Direction, DisconnectReason,
    HistoryQuery, MessageKind, Profile, TransferOutcome, Trust,
};

#[tokio::test]
async fn a_new_device_gets_an_id_that_the_next_login_reuses() {
    let (dir, server) = TestServer::start_temp().await;
    let profile = dir.path().join("alice");

    let (client, _events) = server.connect("alice", &profile).await;
    let device = client.device_id();
    assert!(device.get() > 0);
    client.close().await.unwrap();

    let stored = Profile::open(&profile).unwrap();
    assert_eq!(stored.state().device_id, Some(device));
    assert_eq!(
        stored.state().server_fingerprint.as_deref(),
        Some(server.cert_sha256.as_str())
    );

    let (again, _events) = server.connect("alice", &profile).await;
    assert_eq!(again.device_id(), device);
    again.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_pinned_fingerprint_refuses_a_server_with_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start(&dir.path().join("first")).await;
    let profile = dir.path().join("alice");
    let (client, _events) = first.connect("alice", &profile).await;
    client.close().await.unwrap();

    // Another server (another data directory) has another generated certificate.
    let second = TestServer::start(&dir.path().join("second")).await;
    assert_ne!(first.cert_sha256, second.cert_sha256);
    match second.try_connect(second.config("alice", &profile)).await {
        Err(ClientError::FingerprintMismatch { expected, found }) => {
            assert_eq!(expected, first.cert_sha256);
            assert_eq!(found, second.cert_sha256);
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }

    // An explicit pin is checked the same way, and a right one is accepted.
    let fresh = dir.path().join("bob");
    let wrong = second
        .config("bob", &fresh)
        .with_trust(Trust::Fingerprint(first.cert_sha256.clone()));
    assert!(matches!(
        second.try_connect(wrong).await,
        Err(ClientError::FingerprintMismatch { .. })
    ));
    let right = second
        .config("bob", &fresh)
        .with_trust(Trust::Fingerprint(second.cert_sha256.to_uppercase()));
    let (bob, _events) = second.try_connect(right).await.unwrap();
    bob.close().await.unwrap();

    // Without a pin and without trust on first use, nothing is trusted.
    let strict = second
        .config("carol", &dir.path().join("carol"))
        .with_trust(Trust::PinnedOnly);
    assert!(matches!(
        second.try_connect(strict).await,
        Err(ClientError::NoPinnedFingerprint)
    ));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_second_device_with_the_imported_identity_logs_in_and_a_foreign_key_is_refused() {
    let (dir, server) = TestServer::start_temp().await;
    let laptop = dir.path().join("laptop");
    let (first, _events) = server.connect("alice", &laptop).await;

    let phone = dir.path().join("phone");
    copy_identity(&laptop, &phone, &dir.path().join("alice.pem"));
    let (second, _events) = server.connect("alice", &phone).await;
    assert_ne!(second.device_id(), first.device_id());

    // A profile with its own, new key cannot log in as alice.
    let intruder = server
        .try_connect(server.config("alice", &dir.path().join("intruder")))
        .await;
    assert!(matches!(
        intruder,
        Err(ClientError::LoginDenied(DenyCode::KeyMismatch))
    ));
    first.close().await.unwrap();
    second.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn friend_and_block_lists_sync_both_ways_between_two_devices() {
    let (dir, server) = TestServer::start_temp().await;
    let laptop = dir.path().join("laptop");
    let (one, mut one_events) = server.connect("alice", &laptop).await;
    assert!(one.add_friend(&uid("bob")).await.unwrap());
    assert!(!one.add_friend(&uid("bob")).await.unwrap());
    assert!(one.block(&uid("spammer")).await.unwrap());
    assert_eq!(one.friends(), vec![uid("bob")]);
    // The server answers each upload with a fresh 259, whose timestamps are adopted.
    one.ping().await.unwrap();

    let phone = dir.path().join("phone");
    copy_identity(&laptop, &phone, &dir.path().join("alice.pem"));

    // Device two starts empty and downloads both lists at login.
    let (two, mut two_events) = server.connect("alice", &phone).await;
    wait_until(&two, &mut two_events, "both lists on device two", |c| {
        c.friends() == vec![uid("bob")] && c.blocks() == vec![uid("spammer")]
    })
    .await;

    // A change on device two reaches device one while both are online.
    assert!(two.add_friend(&uid("carol")).await.unwrap());
    assert!(two.unblock(&uid("spammer")).await.unwrap());
    wait_until(
        &one,
        &mut one_events,
        "device two's changes on device one",
        |c| c.friends() == vec![uid("bob"), uid("carol")] && c.blocks().is_empty(),
    )
    .await;
    two.ping().await.unwrap();
    one.ping().await.unwrap();
    // Device two adopts the server's timestamps from the fresh 259 its own upload
    // brought; that may take one more exchange after the Pong, so wait for it.
    wait_until(
        &two,
        &mut two_events,
        "both devices on the same lists",
        |c| c.lists() == one.lists(),
    )
    .await;

    // The lists are kept in the profile for the next run.
    one.close().await.unwrap();
    let stored = Profile::open(&laptop).unwrap();
    assert_eq!(
        stored.state().lists.friends.entries,
        vec![uid("bob"), uid("carol")]
    );
    two.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn direct_messages_reach_an_online_recipient_and_are_written_to_the_history() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let (bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;

    alice.send_text(&uid("bob"), "hello bob").await.unwrap();
    let image = Bytes::from_static(&[0x89, b'P', b'N', b'G', 0, 255]);
    alice.send_image(&uid("bob"), image.clone()).await.unwrap();

    let text = next_message(&mut bob_events, "the text").await;
    assert_eq!(text.sender, uid("alice"));
    assert_eq!(text.text(), Some("hello bob"));
    assert!(!text.read);
    let picture = next_message(&mut bob_events, "the image").await;
    assert_eq!(picture.kind, MessageKind::Image);
    assert_eq!(picture.data, image);

    let history = bob.history(HistoryQuery::With(uid("alice"))).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].data, Bytes::from_static(b"hello bob"));
    assert_eq!(history[0].id, text.history_id);
    assert_eq!(bob.received_count(), 2);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_sent_message_is_outgoing_in_the_senders_history_and_incoming_in_the_recipients() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, mut alice_events) = server.connect_in(dir.path(), "alice").await;
    let (bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;

    alice.send_text(&uid("bob"), "hello bob").await.unwrap();
    next_message(&mut bob_events, "alice's message").await;
    bob.send_text(&uid("alice"), "hello alice").await.unwrap();
    next_message(&mut alice_events, "bob's reply").await;
    let image = Bytes::from_static(&[0, 255, 1]);
    alice.send_image(&uid("bob"), image.clone()).await.unwrap();

    let mine = alice.history(HistoryQuery::With(uid("bob"))).await.unwrap();
    let summary: Vec<_> = mine
        .iter()
        .map(|e| (e.direction, e.sender.to_string(), e.data.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Direction::Outgoing,
                "alice".to_owned(),
                Bytes::from_static(b"hello bob")
            ),
            (
                Direction::Incoming,
                "bob".to_owned(),
                Bytes::from_static(b"hello alice")
            ),
            (Direction::Outgoing, "alice".to_owned(), image.clone()),
        ]
    );
    assert!(mine.iter().all(|e| e.peer == Some(uid("bob"))));
    assert_eq!(mine[2].kind, MessageKind::Image);
    // Only what arrived counts as received.
    assert_eq!(alice.received_count(), 1);

    let theirs = bob.history(HistoryQuery::With(uid("alice"))).await.unwrap();
    assert_eq!(theirs[0].direction, Direction::Incoming);
    assert_eq!(theirs[0].sender, uid("alice"));
    assert_eq!(theirs[0].data, Bytes::from_static(b"hello bob"));
    assert_eq!(theirs[1].direction, Direction::Outgoing);
    assert_eq!(theirs[1].data, Bytes::from_static(b"hello alice"));
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_group_message_sent_is_outgoing_in_the_senders_group_history() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, mut alice_events) = server.connect_in(dir.path(), "alice").await;
    let (bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;
    let group = server.create_group(&["alice", "bob"]).await;

    alice.send_group_text(group, "hello team").await.unwrap();
    next_group_message(&mut bob_events, "the group message").await;
    bob.send_group_image(group, Bytes::from_static(b"img"))
        .await
        .unwrap();
    next_group_message(&mut alice_events, "bob's group image").await;

    let mine = alice.history(HistoryQuery::Group(group)).await.unwrap();
    let summary: Vec<_> = mine
        .iter()
        .map(|e| (e.direction, e.sender.to_string(), e.group))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Direction::Outgoing, "alice".to_owned(), Some(group)),
            (Direction::Incoming, "bob".to_owned(), Some(group)),
        ]
    );
    assert_eq!(mine[0].peer, None);
    assert_eq!(alice.received_count(), 1);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn each_sent_message_is_recorded_with_what_the_server_said_of_it() {
    let (dir, server) = TestServer::start_temp().await;
    let (_bob, _bob_events) = server.connect_in(dir.path(), "bob").await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;

    let stored = alice.send_text(&uid("bob"), "hi bob").await.unwrap();
    let refused = alice.send_text(&uid("nobody"), "hello?").await.unwrap();
    assert_eq!(stored, vcom_client::Delivery::Stored);
    let unknown = vcom_client::SendOutcome::UnknownRecipient;
    assert_eq!(refused, vcom_client::Delivery::Refused(unknown));

    let states: Vec<_> = alice
        .history(HistoryQuery::All)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.peer.map(|p| p.to_string()), e.delivery))
        .collect();
    assert_eq!(
        states,
        [
            (Some("bob".into()), Some(DeliveryState::Stored)),
            (Some("nobody".into()), Some(DeliveryState::Refused(unknown))),
        ]
    );
    alice.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_message_that_could_not_be_sent_is_not_recorded() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    alice.close().await.unwrap();

    let result = alice.send_text(&uid("bob"), "too late").await;
    assert!(matches!(result, Err(ClientError::Closed)), "{result:?}");
    let too_long = vec![b'x'; vcom_client::Limits::default().max_message_len + 1];
    let (carol, _events) = server.connect_in(dir.path(), "carol").await;
    assert!(matches!(
        carol.send_image(&uid("bob"), Bytes::from(too_long)).await,
        Err(ClientError::InvalidInput(_))
    ));
    assert!(alice.history(HistoryQuery::All).await.unwrap().is_empty());
    assert!(carol.history(HistoryQuery::All).await.unwrap().is_empty());
    carol.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn messages_for_an_offline_user_arrive_at_the_next_login_in_order() {
    let (dir, server) = TestServer::start_temp().await;
    let bob_profile = dir.path().join("bob");
    // Bob must exist (and own his key) before others write to him.
    let (bob, _events) = server.connect("bob", &bob_profile).await;
    bob.close().await.unwrap();

    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    for n in 0..3 {
        alice
            .send_text(&uid("bob"), &format!("note {n}"))
            .await
            .unwrap();
    }
    alice.ping().await.unwrap();

    // A one-shot client that wants no events still gets everything into the history.
    let (bob, events) = server.connect("bob", &bob_profile).await;
    drop(events);
    bob.ping().await.unwrap();
    let history = bob.history(HistoryQuery::All).await.unwrap();
    let bodies: Vec<_> = history.iter().map(|e| e.data.clone()).collect();
    assert_eq!(
        bodies,
        vec![
            Bytes::from_static(b"note 0"),
            Bytes::from_static(b"note 1"),
            Bytes::from_static(b"note 2"),
        ]
    );
    assert_eq!(bob.received_count(), 3);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn group_messages_reach_the_other_members_and_the_group_history() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let (bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;
    let group = server.create_group(&["alice", "bob"]).await;

    alice.send_group_text(group, "hello team").await.unwrap();
    let message = next_group_message(&mut bob_events, "the group message").await;
    assert_eq!(message.group, Some(group));
    assert_eq!(message.sender, uid("alice"));
    assert_eq!(message.text(), Some("hello team"));
    let history = bob.history(HistoryQuery::Group(group)).await.unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        bob.history(HistoryQuery::With(uid("alice")))
            .await
            .unwrap()
            .is_empty()
    );
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_file_is_streamed_to_the_accepting_recipient_without_overwriting() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let (_bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;

    // 5000 bytes: four full chunks and a short one.
    let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let source = dir.path().join("report.bin");
    std::fs::write(&source, &content).unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::write(downloads.join("report.bin"), b"older file").unwrap();

    let handle = alice.send_file(&uid("bob"), &source).await.unwrap();
    let offer = next_offer(&mut bob_events).await;
    assert_eq!(offer.sender(), &uid("alice"));
    assert_eq!(offer.size(), 5000);
    assert_eq!(offer.offered_name(), "report.bin");
    offer.accept(&downloads).await.unwrap();

    let (transfer, outcome) = next_transfer_end(&mut bob_events).await;
    let sent = finished(handle).await;
    assert_eq!(
        sent,
        TransferOutcome::Completed {
            path: source.clone()
        }
    );
    let saved = downloads.join("report (1).bin");
    assert_eq!(
        outcome,
        TransferOutcome::Completed {
            path: saved.clone()
        }
    );
    assert_eq!(std::fs::read(&saved).unwrap(), content);
    assert_eq!(
        std::fs::read(downloads.join("report.bin")).unwrap(),
        b"older file"
    );
    assert!(transfer.get() > 0);
    // No temporary file is left behind.
    let mut names: Vec<_> = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["report (1).bin", "report.bin"]);
    alice.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_declined_file_ends_the_senders_transfer_with_the_reason() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let (_bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;
    let source = dir.path().join("x.txt");
    std::fs::write(&source, b"not wanted").unwrap();

    let handle = alice.send_file(&uid("bob"), &source).await.unwrap();
    let offer = next_offer(&mut bob_events).await;
    offer.decline().await.unwrap();
    let outcome = finished(handle).await;
    assert_eq!(outcome, TransferOutcome::Aborted(AbortReason::Declined));

    // A file for an offline user is refused at once.
    let (carol, _events) = server.connect_in(dir.path(), "carol").await;
    carol.close().await.unwrap();
    let handle = alice.send_file(&uid("carol"), &source).await.unwrap();
    let outcome = finished(handle).await;
    assert_eq!(
        outcome,
        TransferOutcome::Aborted(AbortReason::RecipientOffline)
    );
    alice.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn closing_ends_the_event_stream_and_later_calls_fail() {
    let (dir, server) = TestServer::start_temp().await;
    let config = server
        .config("alice", &dir.path().join("alice"))
        .with_keepalive(Duration::from_millis(200));
    let (alice, mut events) = server.try_connect(config).await.unwrap();
    assert!(alice.ping().await.unwrap() < TIMEOUT);
    alice.close().await.unwrap();
    let reason = wait_for_disconnect(&mut events).await;
    assert!(matches!(reason, DisconnectReason::Closed), "{reason:?}");
    assert!(matches!(
        alice.send_text(&uid("bob"), "late").await,
        Err(ClientError::Closed)
    ));
    alice.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_server_shutdown_is_reported_as_a_disconnect() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, mut events): (Client, _) = server.connect_in(dir.path(), "alice").await;
    server.stop().await;
    let reason = wait_for_disconnect(&mut events).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::ServerClosed | DisconnectReason::Error(_)
        ),
        "{reason:?}"
    );
    assert!(alice.ping().await.is_err());
}

/// A CA and a server certificate for "localhost" that it signed, as PEM files in `dir`:
/// returns (CA file, server certificate file, server key file).
fn issue_server_certificate(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vCom test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server_cert.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn a_ca_file_verifies_the_server_certificate_and_its_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issue_server_certificate(dir.path());
    let server = TestServer::start_with(&dir.path().join("server"), |config| {
        config.tls.cert = Some(cert);
        config.tls.key = Some(key);
    })
    .await;

    let mut good = server
        .config("alice", &dir.path().join("alice"))
        .with_trust(Trust::CaFile(ca.clone()));
    good.server_name = Some("localhost".into());
    let (alice, _events) = server.try_connect(good).await.unwrap();
    alice.close().await.unwrap();
    // CA trust pins nothing.
    let stored = Profile::open(dir.path().join("alice")).unwrap();
    assert_eq!(stored.state().server_fingerprint, None);

    let mut wrong_name = server
        .config("alice", &dir.path().join("alice"))
        .with_trust(Trust::CaFile(ca));
    wrong_name.server_name = Some("chat.example.org".into());
    assert!(matches!(
        server.try_connect(wrong_name).await,
        Err(ClientError::Tls(_))
    ));

    // Another CA does not vouch for this server.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = issue_server_certificate(other.path());
    let mut untrusted = server
        .config("bob", &dir.path().join("bob"))
        .with_trust(Trust::CaFile(other_ca));
    untrusted.server_name = Some("localhost".into());
    assert!(matches!(
        server.try_connect(untrusted).await,
        Err(ClientError::Tls(_))
    ));
    server.stop().await;
}

#[tokio::test]
async fn commands_are_served_while_unread_events_hold_back_the_connection() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let mut config = server.config("bob", &dir.path().join("bob"));
    config.event_capacity = 1;
    let (bob, mut bob_events) = server.try_connect(config).await.unwrap();

    for n in 0..5 {
        alice
            .send_text(&uid("bob"), &format!("m{n}"))
            .await
            .unwrap();
    }
    alice.ping().await.unwrap();
    // Bob reads no events, yet his handle still gets answers.
    tokio::time::timeout(TIMEOUT, bob.add_friend(&uid("alice")))
        .await
        .expect("a command is answered while events wait")
        .unwrap();

    let mut texts = Vec::new();
    while texts.len() < 5 {
        let m = next_message(&mut bob_events, "a message").await;
        texts.push(m.text().unwrap().to_owned());
    }
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn an_offer_with_a_reserved_name_must_be_renamed_to_be_accepted() {
    let (dir, server) = TestServer::start_temp().await;
    let (alice, _alice_events) = server.connect_in(dir.path(), "alice").await;
    let (_bob, mut bob_events) = server.connect_in(dir.path(), "bob").await;
    let source = dir.path().join("con.txt");
    std::fs::write(&source, b"device name").unwrap();
    let downloads = dir.path().join("downloads");

    let handle = alice.send_file(&uid("bob"), &source).await.unwrap();
    let offer = next_offer(&mut bob_events).await;
    assert!(offer.file_name().is_err());
    offer
        .accept_as(&downloads, "renamed.txt", false)
        .await
        .unwrap();
    let (_, outcome) = next_transfer_end(&mut bob_events).await;
    let saved = downloads.join("renamed.txt");
    assert_eq!(
        outcome,
        TransferOutcome::Completed {
            path: saved.clone()
        }
    );
    assert_eq!(std::fs::read(saved).unwrap(), b"device name");
    assert!(matches!(
        finished(handle).await,
        TransferOutcome::Completed { .. }
    ));
    alice.close().await.unwrap();
    server.stop().await;
}

/// A server keeps at most `retention.devices_per_user` devices per user. The device past
/// it retires the least recently seen one, whose session ends; that device's next
/// connect forgets the refused identifier, logs in as a new device, and gets what waits.
#[tokio::test]
async fn a_retired_device_reconnects_as_a_new_one_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir.path().join("server"), |c| {
        c.retention.devices_per_user = 1;
    })
    .await;
    let laptop = dir.path().join("laptop");
    let phone = dir.path().join("phone");
    let (one, mut one_events) = server.connect("alice", &laptop).await;
    let retired = one.device_id();
    copy_identity(&laptop, &phone, &dir.path().join("alice.pem"));

    let (two, _two_events) = server.connect("alice", &phone).await;
    assert_ne!(two.device_id(), retired);
    wait_for_disconnect(&mut one_events).await;
    two.close().await.unwrap();

    let (bob, _bob_events) = server.connect("bob", &dir.path().join("bob")).await;
    bob.send_text(&uid("alice"), "while you were away")
        .await
        .unwrap();
    let (again, mut again_events) = server.connect("alice", &laptop).await;
    assert_ne!(again.device_id(), retired);
    assert_ne!(again.device_id(), two.device_id());
    let message = next_message(&mut again_events, "the waiting message").await;
    assert_eq!(message.data, Bytes::from_static(b"while you were away"));
    server.stop().await;
}
