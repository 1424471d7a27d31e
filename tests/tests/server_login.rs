//! Login over real TLS: 257 with device ids, and every ConnectionDenied (258) code in
//! the order `docs/protocol.md` fixes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vcom_protocol::{DenyCode, DeviceId, ServerPacket, Timestamp};
use vcom_server::admin::{AdminError, EntryKind, ListName, PolicyAction, UserAction};
use vcom_server::{AdminRequest, AuthMode, Registration, ServerConfig};
use vcom_tests::harness::{
    Identity, LoginOutcome, RawClient, TestServer, attempt_login, login, login_as, login_outcome,
    start_with_users,
};

fn denied(code: DenyCode) -> LoginOutcome {
    LoginOutcome::Denied(code)
}

async fn policy_add(server: &TestServer, list: ListName, kind: EntryKind, value: &str) {
    server
        .admin(match list {
            ListName::Blacklist => AdminRequest::Blacklist {
                action: PolicyAction::Add {
                    kind,
                    value: value.into(),
                },
            },
            ListName::Whitelist => AdminRequest::Whitelist {
                action: PolicyAction::Add {
                    kind,
                    value: value.into(),
                },
            },
        })
        .await;
}

#[tokio::test]
async fn a_new_device_gets_an_id_then_259_and_keeps_the_id_on_relogin() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let alice = Identity::generate("alice");
    let (mut client, outcome) =
        attempt_login(&server, Some(&alice), "alice", DeviceId::NEW, b"").await;
    let LoginOutcome::Accepted(device) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(device.get() > 0, "issued device ids are positive");
    match client.recv().await {
        ServerPacket::RequestUserListsSync(r) => {
            assert_eq!((r.friends, r.blocks), (Timestamp::NEVER, Timestamp::NEVER));
        }
        other => panic!("expected 259, got {other:?}"),
    }
    drop(client);
    let again = login_as(&server, "alice", &alice, device).await;
    assert_eq!(again.device, device);
    let second = login_as(&server, "alice", &alice, DeviceId::NEW).await;
    assert_ne!(second.device, device, "a second device gets its own id");
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_user_identifier_is_code_7() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let id = Identity::generate("x");
    for bad in ["", "a\nb", &"x".repeat(65)] {
        let (_, outcome) = attempt_login(&server, Some(&id), bad, DeviceId::NEW, b"").await;
        assert_eq!(outcome, denied(DenyCode::InvalidUser), "for {bad:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn blacklists_whitelist_and_password_are_codes_0_to_3_in_that_order() {
    let (_dir, server) = TestServer::start_temp(|c| c.password = Some("s3cret".into())).await;
    let id = Identity::generate("u");
    let try_login = |user: &'static str, password: &'static [u8]| {
        let (server, id) = (&server, &id);
        async move {
            attempt_login(server, Some(id), user, DeviceId::NEW, password)
                .await
                .1
        }
    };

    assert_eq!(
        try_login("carol", b"wrong").await,
        denied(DenyCode::WrongPassword)
    );
    assert_eq!(
        try_login("carol", b"").await,
        denied(DenyCode::WrongPassword)
    );

    // A whitelist naming someone else refuses carol before her password is looked at.
    policy_add(&server, ListName::Whitelist, EntryKind::User, "dave").await;
    assert_eq!(
        try_login("carol", b"wrong").await,
        denied(DenyCode::NotWhitelisted)
    );

    // The IP blacklist comes before the whitelist.
    policy_add(&server, ListName::Blacklist, EntryKind::Ip, "127.0.0.0/8").await;
    assert_eq!(
        try_login("carol", b"wrong").await,
        denied(DenyCode::IpBlacklisted)
    );

    // The user blacklist comes before the IP blacklist.
    policy_add(&server, ListName::Blacklist, EntryKind::User, "carol").await;
    assert_eq!(
        try_login("carol", b"wrong").await,
        denied(DenyCode::UserBlacklisted)
    );

    // Removing the entries lets a whitelisted user with the password in.
    server
        .admin(AdminRequest::Blacklist {
            action: PolicyAction::Remove {
                kind: EntryKind::Ip,
                value: "127.0.0.0/8".into(),
            },
        })
        .await;
    assert_eq!(
        try_login("carol", b"s3cret").await,
        denied(DenyCode::UserBlacklisted)
    );
    assert_eq!(
        try_login("erin", b"s3cret").await,
        denied(DenyCode::NotWhitelisted)
    );
    assert!(matches!(
        try_login("dave", b"s3cret").await,
        LoginOutcome::Accepted(_)
    ));
    server.stop().await;
}

#[tokio::test]
async fn an_ip_whitelist_entry_admits_everyone_from_that_address() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    policy_add(&server, ListName::Whitelist, EntryKind::Ip, "127.0.0.1").await;
    let outcome = login_outcome(&server, "frank").await;
    assert!(matches!(outcome, LoginOutcome::Accepted(_)));
    server.stop().await;
}

#[tokio::test]
async fn closed_registration_refuses_unknown_users_with_code_7() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Identity::generate("alice");
    let server = TestServer::start(dir.path(), |_| {}).await;
    login_as(&server, "alice", &alice, DeviceId::NEW).await;
    server.stop().await;

    let server = TestServer::start(dir.path(), |c| c.registration = Registration::Closed).await;
    let outcome = login_outcome(&server, "bob").await;
    assert_eq!(outcome, denied(DenyCode::InvalidUser));
    let (_, outcome) = attempt_login(&server, Some(&alice), "alice", DeviceId::NEW, b"").await;
    assert!(
        matches!(outcome, LoginOutcome::Accepted(_)),
        "known users still log in"
    );
    server.stop().await;
}

#[tokio::test]
async fn another_key_or_no_certificate_is_code_4_until_the_key_is_reset() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let first = login(&server, "alice").await;
    let thief = Identity::generate("alice");
    let (_, outcome) = attempt_login(&server, Some(&thief), "alice", DeviceId::NEW, b"").await;
    assert_eq!(outcome, denied(DenyCode::KeyMismatch));
    let (_, outcome) = attempt_login(&server, None, "alice", DeviceId::NEW, b"").await;
    assert_eq!(outcome, denied(DenyCode::KeyMismatch));
    let (_, outcome) = attempt_login(&server, None, "newcomer", DeviceId::NEW, b"").await;
    assert_eq!(
        outcome,
        denied(DenyCode::KeyMismatch),
        "key auth needs a certificate"
    );

    let out = server
        .admin(AdminRequest::User {
            action: UserAction::ResetKey {
                user: "alice".into(),
                fingerprint: None,
            },
        })
        .await;
    assert!(out.contains("reset"), "{out}");
    let (_, outcome) = attempt_login(&server, Some(&thief), "alice", DeviceId::NEW, b"").await;
    assert!(
        matches!(outcome, LoginOutcome::Accepted(_)),
        "the next login binds the new key"
    );
    let (_, outcome) =
        attempt_login(&server, Some(&first.identity), "alice", first.device, b"").await;
    assert_eq!(
        outcome,
        denied(DenyCode::KeyMismatch),
        "the old key is no longer bound"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_reset_closes_the_users_sessions_and_the_next_login_binds_a_new_key() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let out = server
        .admin(AdminRequest::User {
            action: UserAction::ResetKey {
                user: "alice".into(),
                fingerprint: None,
            },
        })
        .await;
    assert!(out.contains("ended 1 session"), "{out}");
    alice.client.recv_until_closed().await;
    bob.client.round_trip().await;

    let new_key = Identity::generate("alice");
    let (_, outcome) = attempt_login(&server, Some(&new_key), "alice", DeviceId::NEW, b"").await;
    assert!(
        matches!(outcome, LoginOutcome::Accepted(_)),
        "the next login binds its key: {outcome:?}"
    );
    let (_, outcome) =
        attempt_login(&server, Some(&alice.identity), "alice", alice.device, b"").await;
    assert_eq!(
        outcome,
        denied(DenyCode::KeyMismatch),
        "the old key is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_reset_with_a_fingerprint_admits_only_that_key_and_closes_the_old_sessions() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut phone = login(&server, "alice").await;
    let mut laptop = login_as(&server, "alice", &phone.identity, DeviceId::NEW).await;
    let handed_over = Identity::generate("alice");
    let fingerprint = handed_over.key_sha256();
    let out = server
        .admin(AdminRequest::User {
            action: UserAction::ResetKey {
                user: "alice".into(),
                fingerprint: Some(fingerprint.to_uppercase()),
            },
        })
        .await;
    assert!(out.contains(&fingerprint), "{out}");
    assert!(out.contains("ended 2 session"), "{out}");
    phone.client.recv_until_closed().await;
    laptop.client.recv_until_closed().await;

    for (key, what) in [
        (&Identity::generate("alice"), "a key nobody handed over"),
        (&phone.identity, "the old key"),
    ] {
        let (_, outcome) = attempt_login(&server, Some(key), "alice", DeviceId::NEW, b"").await;
        assert_eq!(outcome, denied(DenyCode::KeyMismatch), "{what}");
    }
    let (_, outcome) = attempt_login(&server, Some(&handed_over), "alice", phone.device, b"").await;
    assert!(
        matches!(outcome, LoginOutcome::Accepted(_)),
        "the bound key logs in, on the user's old devices too: {outcome:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_reset_with_a_malformed_fingerprint_is_refused_and_changes_nothing() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut alice = login(&server, "alice").await;
    let refused = server
        .admin
        .execute(AdminRequest::User {
            action: UserAction::ResetKey {
                user: "alice".into(),
                fingerprint: Some("ab".repeat(31)),
            },
        })
        .await;
    assert!(
        matches!(refused, Err(AdminError::Invalid(_))),
        "{refused:?}"
    );
    alice.client.round_trip().await;
    let again = login_as(&server, "alice", &alice.identity, alice.device).await;
    assert_eq!(again.device, alice.device);
    server.stop().await;
}

#[tokio::test]
async fn open_auth_needs_no_certificate() {
    let (_dir, server) = TestServer::start_temp(|c| c.auth = AuthMode::Open).await;
    let (_, outcome) = attempt_login(&server, None, "oldclient", DeviceId::NEW, b"").await;
    assert!(matches!(outcome, LoginOutcome::Accepted(_)));
    server.stop().await;
}

#[tokio::test]
async fn a_device_id_not_issued_to_the_user_is_code_5() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let alice = login(&server, "alice").await;
    let bob = Identity::generate("bob");
    let (_, outcome) = attempt_login(&server, Some(&bob), "bob", alice.device, b"").await;
    assert_eq!(
        outcome,
        denied(DenyCode::UnknownDevice),
        "another user's device"
    );
    let (_, outcome) = attempt_login(&server, Some(&bob), "bob", DeviceId(987_654), b"").await;
    assert_eq!(
        outcome,
        denied(DenyCode::UnknownDevice),
        "a device never issued"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_or_address_is_code_6() {
    let limits: [fn(&mut ServerConfig); 2] =
        [|c| c.max_connections = 1, |c| c.max_connections_per_ip = 1];
    for limit in limits {
        let (_dir, server, [_first]) = start_with_users(limit, ["alice"]).await;
        let outcome = login_outcome(&server, "bob").await;
        assert_eq!(outcome, denied(DenyCode::ServerFull));
        server.stop().await;
    }
}

#[tokio::test]
async fn a_client_that_does_not_log_in_in_time_is_dropped() {
    let (_dir, server) = TestServer::start_temp(|c| c.login_timeout_secs = 1).await;
    let mut idle = RawClient::connect(&server, Some(&Identity::generate("idle"))).await;
    assert!(idle.recv_until_closed().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_packet_other_than_256_before_login_closes_the_connection() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let mut early = RawClient::connect(&server, Some(&Identity::generate("e"))).await;
    early.send(vcom_protocol::Ping { nonce: 1 }).await;
    assert!(early.recv_until_closed().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn before_login_a_large_packet_is_refused_at_its_header_not_buffered() {
    // A long login timeout: only the decoder's limit can end this connection soon.
    let (_dir, server) = TestServer::start_temp(|c| c.login_timeout_secs = 600).await;
    let mut early = RawClient::connect(&server, Some(&Identity::generate("e"))).await;
    // A 266 announcing a 1 000 000-byte body, of which only the header is sent.
    let mut header = Vec::new();
    header.extend_from_slice(&266i32.to_be_bytes());
    header.extend_from_slice(&3i32.to_be_bytes());
    header.extend_from_slice(b"bob");
    header.extend_from_slice(&7i64.to_be_bytes());
    header.push(1);
    header.extend_from_slice(&1_000_000i32.to_be_bytes());
    early.send_raw(&header).await;
    assert!(early.recv_until_closed().await.is_empty());
    // Logging in still works, and after it the full limits apply.
    let mut alice = login(&server, "alice").await;
    alice
        .client
        .send(vcom_tests::harness::text_to(
            "alice",
            &"x".repeat(100_000),
            1,
        ))
        .await;
    assert!(alice.client.round_trip().await.is_empty());
    server.stop().await;
}

/// A TCP connection from `source` that sends nothing.
async fn silent_from(source: &str, server: &TestServer) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server.addr).await.unwrap()
}

/// Whether the server closes `tcp` (EOF or reset) within `within`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn silent_sockets_from_one_address_cannot_lock_out_another() {
    let (_dir, server) = TestServer::start_temp(|c| {
        c.max_pending_logins = 8;
        c.max_pending_logins_per_ip = 4;
        c.login_timeout_secs = 600;
        c.handshake_timeout_secs = 600;
    })
    .await;
    let mut squatters = Vec::new();
    // Until 127.0.0.2 is refused at once: then it holds every place it may hold.
    let saturated = async {
        loop {
            let mut probe = silent_from("127.0.0.2", &server).await;
            if closed_within(&mut probe, std::time::Duration::from_millis(200)).await {
                return;
            }
            squatters.push(probe);
        }
    };
    tokio::time::timeout(vcom_tests::harness::TIMEOUT, saturated)
        .await
        .expect("127.0.0.2 reaches its cap");
    // A probe the busy server refused late may sit among them: count those it holds.
    let mut held = 0;
    for squatter in &mut squatters {
        if !closed_within(squatter, std::time::Duration::from_millis(50)).await {
            held += 1;
        }
    }
    assert!(
        held <= 4,
        "at most 4 places held by 127.0.0.2, found {held}"
    );
    // 127.0.0.1 still logs in.
    let _alice = login(&server, "alice").await;
    server.stop().await;
}

#[tokio::test]
async fn a_socket_that_never_starts_tls_gives_its_place_back_after_the_handshake_timeout() {
    let (_dir, server) = TestServer::start_temp(|c| {
        c.login_timeout_secs = 600;
        c.handshake_timeout_secs = 1;
    })
    .await;
    let mut silent = silent_from("127.0.0.1", &server).await;
    assert!(
        closed_within(&mut silent, vcom_tests::harness::TIMEOUT).await,
        "dropped after the handshake timeout, long before the login timeout"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_that_never_log_in_are_bounded() {
    let (_dir, server) = TestServer::start_temp(|c| c.max_pending_logins = 1).await;
    let target = vcom_tests::harness::Endpoint::target(&server);
    let squatter = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The server may take the squatter's permit only once it accepts it; a refused
    // handshake proves the bound held, so retry until one is refused.
    let refused = async {
        loop {
            if vcom_tests::harness::try_tls_connect_to(&target, None)
                .await
                .is_err()
            {
                return;
            }
            // Not yet: give the server a moment to accept the squatter.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(vcom_tests::harness::TIMEOUT, refused)
        .await
        .expect("a second handshake is refused");
    drop(squatter);
    // Once the squatter is gone, logins work again.
    let login_again = async {
        loop {
            if let Ok(tls) = vcom_tests::harness::try_tls_connect_to(&target, None).await {
                drop(tls);
                break;
            }
            // Not yet: the server has not seen the squatter leave.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(vcom_tests::harness::TIMEOUT, login_again)
        .await
        .expect("handshakes work again");
    let _alice = login(&server, "alice").await;
    server.stop().await;
}

#[tokio::test]
async fn an_address_guessing_the_server_password_is_refused_even_with_the_right_one() {
    let (_dir, server) = TestServer::start_temp(|c| c.password = Some("s3cret".into())).await;
    let id = Identity::generate("mallory");
    for guess in 0..30 {
        let password = format!("guess-{guess}");
        let (_, outcome) = attempt_login(
            &server,
            Some(&id),
            "mallory",
            DeviceId::NEW,
            password.as_bytes(),
        )
        .await;
        assert_eq!(outcome, denied(DenyCode::WrongPassword));
    }
    // The right password now waits: it is not even checked.
    let (_, outcome) = attempt_login(&server, Some(&id), "mallory", DeviceId::NEW, b"s3cret").await;
    assert_eq!(outcome, denied(DenyCode::WrongPassword));
    server.stop().await;
}

#[tokio::test]
async fn a_few_wrong_passwords_do_not_lock_out_the_right_one() {
    let (_dir, server) = TestServer::start_temp(|c| c.password = Some("s3cret".into())).await;
    let id = Identity::generate("alice");
    for _ in 0..3 {
        let (_, outcome) = attempt_login(&server, Some(&id), "alice", DeviceId::NEW, b"typo").await;
        assert_eq!(outcome, denied(DenyCode::WrongPassword));
    }
    let (_, outcome) = attempt_login(&server, Some(&id), "alice", DeviceId::NEW, b"s3cret").await;
    assert!(matches!(outcome, LoginOutcome::Accepted(_)), "{outcome:?}");
    server.stop().await;
}

#[tokio::test]
async fn logins_running_at_once_cannot_pass_the_connection_limit_together() {
    let (_dir, server) = TestServer::start_temp(|c| c.max_connections = 5).await;
    let server = std::sync::Arc::new(server);
    let mut attempts = Vec::new();
    for i in 0..30 {
        let server = server.clone();
        attempts.push(tokio::spawn(async move {
            let user = format!("user{i}");
            let id = Identity::generate(&user);
            // The client is returned so that accepted sessions stay open.
            attempt_login(&*server, Some(&id), &user, DeviceId::NEW, b"").await
        }));
    }
    let mut held = Vec::new();
    let mut accepted = 0;
    for attempt in attempts {
        let (client, outcome) = attempt.await.unwrap();
        match outcome {
            LoginOutcome::Accepted(_) => accepted += 1,
            LoginOutcome::Denied(code) => assert_eq!(code, DenyCode::ServerFull),
        }
        held.push(client);
    }
    assert_eq!(accepted, 5, "exactly the limit is let in");
    drop(held);
}
