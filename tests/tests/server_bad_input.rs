//! The bad-input table of `docs/reliability.md`, against a real server over real TLS:
//! packets cut at every byte, dribbled a byte at a time, every length field given
//! negative, huge and one-past-the-limit values, invalid UTF-8 in every string, packets in
//! the wrong direction and state, unknown identifiers, garbage instead of TLS and beneath
//! it, and a client certificate whose key the client does not hold.
//!
//! Each case ends (or leaves untouched) only the connection that sent it: the tests check
//! that nothing is answered, that the server closes it, and that other users carry on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;

use std::sync::Arc;

use futures::StreamExt;
use hostile::{Latencies, Raw, be, no_sessions_of, packet, pair_latency, stat, string};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vcom_protocol::{
    ClientPacket, DenyCode, DeviceId, FileChunk, FileSize, FileTransferAbort, FileTransferAccept,
    FileTransferComplete, FileTransferRequest, ListSync, SendOutcome, ServerPacket,
};
use vcom_tests::harness::{
    Identity, LoginOutcome, Session, TIMEOUT, TestServer, attempt_login, login, start_with_users,
    uid,
};
use vcom_tests::recv_packet;
use vcom_tests::vectors::{self, AnyPacket, CLIENT_ID};

/// Connections a test drives at once: enough to be quick, few enough for a busy machine.
const AT_ONCE: usize = 8;

/// One hostile input: a name for failure messages, whether it is sent before login,
/// and its bytes.
struct Case {
    what: String,
    before_login: bool,
    bytes: Vec<u8>,
}

/// Sends every case on its own connection (logged in as mallory, in extended mode, unless
/// the case is for before login), then half-closes it, and checks that the server answers
/// nothing and closes the connection. Afterwards no session of mallory is left, and alice
/// still reaches bob.
///
/// `violations`: whether each case is a protocol violation (the server counts it as one)
/// or, cut short, merely ends with the connection.
async fn each_closes_only_its_own_connection(
    server: &TestServer,
    alice: &mut Session,
    bob: &mut Session,
    cases: Vec<Case>,
    violations: bool,
) {
    let mallory = Identity::generate("mallory");
    let (first, device) = Raw::login(server, "mallory", &mallory, DeviceId::NEW, true).await;
    drop(first);
    let count = cases.len();
    let violations_before = stat(server, "violations").await;
    futures::stream::iter(cases)
        .map(|case| {
            let mallory = &mallory;
            async move {
                let mut raw = if case.before_login {
                    Raw::connect(server, Some(mallory), &[]).await
                } else {
                    Raw::login(server, "mallory", mallory, device, true).await.0
                };
                raw.send_raw(&case.bytes).await;
                raw.close_write().await;
                let after = raw.recv_until_closed().await;
                assert!(after.is_empty(), "{}: answered with {after:?}", case.what);
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    no_sessions_of(server, "mallory").await;
    message_arrives(alice, bob, "bob", &format!("after {count} cases")).await;
    let counted = stat(server, "violations").await - violations_before;
    let expected = if violations { count as u64 } else { 0 };
    assert_eq!(
        counted, expected,
        "protocol violations counted for {count} cases"
    );
}

async fn message_arrives(from: &mut Session, to: &mut Session, to_name: &str, text: &str) {
    from.client
        .send(vcom_tests::harness::text_to(to_name, text, 1))
        .await;
    match to.client.recv().await {
        ServerPacket::UserMessage(m) => assert_eq!(&m.data[..], text.as_bytes()),
        other => panic!("expected 264, got {other:?}"),
    }
}

fn client_vectors() -> Vec<(String, ClientPacket)> {
    vectors::all()
        .into_iter()
        .filter_map(|v| match v.packet {
            AnyPacket::Client(p) => Some((v.name, p)),
            AnyPacket::Server(_) => None,
        })
        .collect()
}

fn server_vectors() -> Vec<(String, ServerPacket)> {
    vectors::all()
        .into_iter()
        .filter_map(|v| match v.packet {
            AnyPacket::Server(p) => Some((v.name, p)),
            AnyPacket::Client(_) => None,
        })
        .collect()
}

// ---- truncation ---------------------------------------------------------------------

/// Every client packet (each golden vector: 256-274 and 512-516) cut after each of its
/// bytes, the rest never sent, and the connection half-closed: the server answers
/// nothing, closes that connection, and releases its session. The login (256) is cut
/// before login, every other packet on a logged-in connection.
#[tokio::test]
async fn every_client_packet_cut_at_every_byte_then_ended_closes_only_that_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut cases = Vec::new();
    for (name, p) in client_vectors() {
        let bytes = p.to_bytes();
        for cut in 1..bytes.len() {
            cases.push(Case {
                what: format!("{name} cut after {cut} of {} bytes", bytes.len()),
                before_login: p.id() == 256,
                bytes: bytes[..cut].to_vec(),
            });
        }
    }
    assert!(cases.len() > 400, "{} cuts", cases.len());
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, false).await;
    server.stop().await;
}

/// What the server answers (before the Pong of a round trip) to a client packet vector
/// sent whole on a logged-in connection in extended mode, as packet identifiers.
fn expected_answer(p: &ClientPacket) -> Vec<i32> {
    match p {
        ClientPacket::UserListsSync(s) => {
            let mut ids = Vec::new();
            let flag = |l: &ListSync| match l {
                ListSync::InSync => 0,
                ListSync::SendServerList => 1,
                ListSync::Upload(_) => 2,
            };
            let (f, b) = (flag(&s.friends), flag(&s.blocks));
            if f == 1 {
                ids.push(261);
            }
            if b == 1 {
                ids.push(262);
            }
            if f == 2 || b == 2 {
                ids.push(259);
            }
            ids
        }
        ClientPacket::FileTransferRequest(_) => vec![269],
        ClientPacket::Ping(_) => vec![513],
        ClientPacket::MessageTag(_) => vec![517],
        // The group vectors name group 42 (which does not exist) or, for 518, an unknown
        // user: each is refused with a 523 alone.
        ClientPacket::GroupCreate(_)
        | ClientPacket::GroupRename(_)
        | ClientPacket::GroupAddMember(_)
        | ClientPacket::GroupRemoveMember(_)
        | ClientPacket::GroupLeave(_) => vec![523],
        // 266 and 267 answer nothing untagged; 270-274 name transfer 17, which does not
        // exist, and are ignored; 513 and 515 change nothing visible.
        _ => Vec::new(),
    }
}

/// Every client packet sent one byte per TLS record, with a message between two other
/// users after each byte: at every cut the server waits (it neither answers nor closes),
/// serves everyone else meanwhile, and handles the packet once it is whole. The login is
/// dribbled too. The 516 is dribbled together with the 266 it tags.
#[tokio::test]
async fn every_client_packet_dribbled_a_byte_at_a_time_waits_and_is_handled_once_whole() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut latency = Latencies::default();

    // The login, a byte at a time.
    let mallory = Identity::generate("mallory");
    let mut raw = Raw::connect(&server, Some(&mallory), &[vcom_protocol::alpn::EXT]).await;
    let login = ClientPacket::from(vcom_protocol::ConnectionRequest {
        user: "mallory".into(),
        device: DeviceId::NEW,
        password: bytes::Bytes::new(),
    })
    .to_bytes();
    for byte in login.iter() {
        latency.add(pair_latency(&mut alice, &mut bob, "bob").await);
        raw.send_raw(&[*byte]).await;
    }
    assert!(matches!(
        raw.recv().await,
        ServerPacket::ConnectionAccepted(_)
    ));
    assert!(matches!(
        raw.recv().await,
        ServerPacket::RequestUserListsSync(_)
    ));
    assert!(
        matches!(raw.recv().await, ServerPacket::GroupList(l) if l.groups.is_empty()),
        "a new user is in no group"
    );

    let vectors = client_vectors();
    let tagged = vectors
        .iter()
        .find(|(_, p)| p.id() == 266)
        .map(|(_, p)| p.to_bytes())
        .unwrap();
    let mut dribbled = 0;
    for (name, p) in vectors {
        if p.id() == 256 {
            continue; // a second login is a violation; the first was dribbled above
        }
        let mut bytes = p.to_bytes().to_vec();
        if p.id() == 516 {
            bytes.extend_from_slice(&tagged);
        }
        for byte in &bytes {
            latency.add(pair_latency(&mut alice, &mut bob, "bob").await);
            raw.send_raw(&[*byte]).await;
        }
        dribbled += bytes.len();
        let answer = raw.round_trip().await;
        let ids: Vec<i32> = answer.iter().map(|p| p.id()).collect();
        assert_eq!(ids, expected_answer(&p), "{name}: {answer:?}");
        // What reached bob: the message (266, or 516 + 266), the offer (268).
        match p.id() {
            266 | 516 => {
                let m = recv_packet!(bob.client, UserMessage);
                assert_eq!(m.sender, uid("mallory"), "{name}");
            }
            268 => {
                recv_packet!(bob.client, FileTransferOffer);
            }
            _ => {}
        }
        if let Some(ServerPacket::SendAck(ack)) = answer.first() {
            assert_eq!(
                (ack.client_id, ack.outcome),
                (CLIENT_ID, SendOutcome::Stored)
            );
        }
    }
    assert!(
        bob.client.round_trip().await.is_empty(),
        "nothing else for bob"
    );
    latency.report(&format!("mallory dribbled {dribbled} bytes"));
    server.stop().await;
}

// ---- lengths, UTF-8, identifiers -------------------------------------------------------

/// A length or count field a client sends: the bytes before it and its allowed range.
struct LengthField {
    what: &'static str,
    before_login: bool,
    header: Vec<u8>,
    min: i32,
    max: i32,
}

fn length_fields() -> Vec<LengthField> {
    let ts = 1_700_000_000_000i64.to_be_bytes().to_vec();
    let field = |what, before_login, header: Vec<u8>, min, max| LengthField {
        what,
        before_login,
        header,
        min,
        max,
    };
    vec![
        field("256 user", true, be(256), 0, 4096),
        field(
            "256 password",
            true,
            [be(256), string(b"mallory"), be(-1)].concat(),
            0,
            256,
        ),
        field("266 recipient", false, be(266), 1, 64),
        field("268 recipient", false, be(268), 1, 64),
        field(
            "260 friends entry",
            false,
            [be(260), vec![2], be(1)].concat(),
            1,
            64,
        ),
        field(
            "260 blocks entry",
            false,
            [be(260), vec![0, 2], be(1)].concat(),
            1,
            64,
        ),
        field(
            "260 friends count",
            false,
            [be(260), vec![2]].concat(),
            0,
            10_000,
        ),
        field(
            "260 blocks count",
            false,
            [be(260), vec![1, 2]].concat(),
            0,
            10_000,
        ),
        field(
            "266 data",
            false,
            [be(266), string(b"bob"), ts.clone(), vec![1]].concat(),
            0,
            1_048_576,
        ),
        field(
            "267 data",
            false,
            [be(267), be(42), ts, vec![0]].concat(),
            0,
            1_048_576,
        ),
        field(
            "268 name",
            false,
            [be(268), string(b"bob"), be(10)].concat(),
            1,
            255,
        ),
        field(
            "268 size",
            false,
            [be(268), string(b"bob")].concat(),
            1,
            i32::MAX,
        ),
        field("273 data", false, [be(273), be(17)].concat(), 1, 1024),
    ]
}

/// Every length and count field of every client packet, given -1, `i32::MIN`, `i32::MAX`,
/// one past its limit and one below its minimum, with nothing after it: the connection is
/// closed without an answer (the decoder refuses the field from its four bytes, see
/// `tests/tests/limits.rs`), and nobody else notices.
#[tokio::test]
async fn every_length_field_negative_huge_or_past_its_limit_closes_the_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut cases = Vec::new();
    for f in length_fields() {
        let mut values = vec![-1, i32::MIN];
        if f.max < i32::MAX {
            values.extend([i32::MAX, f.max + 1]);
        }
        if f.min > 0 {
            values.push(f.min - 1);
        }
        for v in values {
            cases.push(Case {
                what: format!("{} = {v}", f.what),
                before_login: f.before_login,
                bytes: [f.header.clone(), be(v)].concat(),
            });
        }
    }
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

/// Byte strings that are not UTF-8: a stray byte, an overlong `/`, a surrogate, a lone
/// continuation byte, a code point past U+10FFFF.
const NOT_UTF8: [&[u8]; 5] = [
    &[0xff],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[b'a', 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
];

/// Invalid UTF-8 in every text field a client sends (the login's user, a recipient, a
/// file name, a list entry): the connection is closed without an answer.
#[tokio::test]
async fn invalid_utf8_in_every_text_field_closes_the_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let ts = 1_700_000_000_000i64.to_be_bytes().to_vec();
    let mut cases = Vec::new();
    for bad in NOT_UTF8 {
        let s = string(bad);
        for (what, before_login, bytes) in [
            (
                "256 user",
                true,
                [be(256), s.clone(), be(-1), string(b"")].concat(),
            ),
            (
                "266 recipient",
                false,
                [be(266), s.clone(), ts.clone(), vec![1], string(b"x")].concat(),
            ),
            (
                "268 recipient",
                false,
                [be(268), s.clone(), be(5), string(b"f.txt")].concat(),
            ),
            (
                "268 name",
                false,
                [be(268), string(b"bob"), be(5), s.clone()].concat(),
            ),
            (
                "260 friends entry",
                false,
                [be(260), vec![2], be(1), s.clone(), vec![0]].concat(),
            ),
            (
                "260 blocks entry",
                false,
                [be(260), vec![0, 2], be(1), s.clone()].concat(),
            ),
        ] {
            cases.push(Case {
                what: format!("{what} = {bad:02x?}"),
                before_login,
                bytes,
            });
        }
    }
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

/// The login's user identifier is judged by the server up to 4096 bytes (258 code 7 for
/// one over `max_user_id_len`), and one byte over that hard cap is a violation: closed
/// without an answer.
#[tokio::test]
async fn a_login_identifier_of_4096_bytes_is_code_7_and_of_4097_is_closed_unanswered() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let id = Identity::generate("long");
    let (_, outcome) =
        attempt_login(&server, Some(&id), &"x".repeat(4096), DeviceId::NEW, b"").await;
    assert_eq!(outcome, LoginOutcome::Denied(DenyCode::InvalidUser));
    let cases = vec![Case {
        what: "a 4097-byte login identifier".into(),
        before_login: true,
        bytes: [be(256), string(&[b'x'; 4097]), be(-1), string(b"")].concat(),
    }];
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

// ---- direction, state, identifiers -----------------------------------------------------

/// Identifiers only a server sends.
const SERVER_ONLY: [i32; 12] = [257, 258, 259, 261, 262, 263, 264, 265, 269, 271, 514, 517];

/// Every packet only a server sends (its golden vector, whole), sent by a client before
/// and after login: closed without an answer.
#[tokio::test]
async fn every_server_to_client_packet_sent_by_a_client_closes_its_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut cases = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, p) in server_vectors() {
        if !SERVER_ONLY.contains(&p.id()) {
            continue;
        }
        seen.insert(p.id());
        for before_login in [true, false] {
            cases.push(Case {
                what: format!("{name} (before login: {before_login})"),
                before_login,
                bytes: p.to_bytes().to_vec(),
            });
        }
    }
    assert_eq!(seen.len(), SERVER_ONLY.len(), "a vector for each: {seen:?}");
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

/// Every client packet but the login (its golden vector, whole) sent as the first packet,
/// before login: closed without an answer.
#[tokio::test]
async fn every_client_packet_but_the_login_sent_before_login_closes_the_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let cases = client_vectors()
        .into_iter()
        .filter(|(_, p)| p.id() != 256)
        .map(|(name, p)| Case {
            what: name,
            before_login: true,
            bytes: p.to_bytes().to_vec(),
        })
        .collect();
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

/// Every reserved identifier (275-511), the first unassigned extension (518) and
/// identifiers far outside the protocol, each followed by eight bytes, before and after
/// login: closed without an answer.
#[tokio::test]
async fn every_unknown_packet_identifier_closes_the_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut ids: Vec<i32> = (275..=511).collect();
    ids.extend([
        i32::MIN,
        -256,
        -1,
        0,
        1,
        255,
        527,
        600,
        1000,
        65_536,
        i32::MAX,
    ]);
    let mut cases = Vec::new();
    for id in ids {
        for before_login in [true, false] {
            cases.push(Case {
                what: format!("identifier {id} (before login: {before_login})"),
                before_login,
                bytes: packet(id, &[0; 8]),
            });
        }
    }
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

/// 270, 272, 273 and 274 naming a transfer that does not exist are ignored (the server
/// cannot tell them from packets that crossed the transfer's end); naming another user's
/// transfer is a violation that closes the meddler's connection, and the transfer goes on.
#[tokio::test]
async fn file_packets_for_no_transfer_are_ignored_and_for_someone_elses_close_the_connection() {
    let (_dir, server, [mut alice, mut bob, mut mallory]) =
        start_with_users(|_| {}, ["alice", "bob", "mallory"]).await;
    let nowhere = vcom_protocol::TransferId(987_654);
    mallory
        .client
        .send(FileTransferAbort {
            transfer: nowhere,
            reason: vcom_protocol::AbortReason::Declined,
        })
        .await;
    mallory
        .client
        .send(FileTransferAccept { transfer: nowhere })
        .await;
    mallory
        .client
        .send(FileChunk {
            transfer: nowhere,
            data: bytes::Bytes::from_static(b"data"),
        })
        .await;
    mallory
        .client
        .send(FileTransferComplete { transfer: nowhere })
        .await;
    assert!(mallory.client.round_trip().await.is_empty());

    alice
        .client
        .send(FileTransferRequest {
            recipient: uid("bob"),
            size: FileSize::new(4).unwrap(),
            name: "f.txt".into(),
        })
        .await;
    let id = recv_packet!(alice.client, FileTransferId).transfer;
    assert_eq!(recv_packet!(bob.client, FileTransferOffer).transfer, id);
    let meddling: [ClientPacket; 4] = [
        FileTransferAccept { transfer: id }.into(),
        FileTransferAbort {
            transfer: id,
            reason: vcom_protocol::AbortReason::Declined,
        }
        .into(),
        FileChunk {
            transfer: id,
            data: bytes::Bytes::from_static(b"evil"),
        }
        .into(),
        FileTransferComplete { transfer: id }.into(),
    ];
    for p in meddling {
        let what = p.name();
        let mut m = mallory.second_device(&server, "mallory").await;
        m.client.send(p).await;
        let after = m.client.recv_until_closed().await;
        assert!(after.is_empty(), "{what}: answered {after:?}");
    }
    drop(mallory);
    // The transfer was not touched: bob accepts, alice sends, bob gets the bytes.
    bob.client.send(FileTransferAccept { transfer: id }).await;
    assert_eq!(recv_packet!(alice.client, FileTransferAccept).transfer, id);
    alice
        .client
        .send(FileChunk {
            transfer: id,
            data: bytes::Bytes::from_static(b"good"),
        })
        .await;
    alice
        .client
        .send(FileTransferComplete { transfer: id })
        .await;
    assert_eq!(&recv_packet!(bob.client, FileChunk).data[..], b"good");
    assert_eq!(recv_packet!(bob.client, FileTransferComplete).transfer, id);
    server.stop().await;
}

// ---- garbage and TLS ------------------------------------------------------------------

/// Everything the server sends until it closes the connection (bounded by [`TIMEOUT`]).
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection in time")
        .ok();
    answer
}

/// A deterministic stream of pseudo-random bytes (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Garbage on the TLS port instead of a ClientHello (noise, an HTTP request, zeros, a TLS
/// record header announcing more than TLS allows, a single byte): at most a TLS alert comes
/// back, the connection is closed, and logins still work.
#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_refused_and_the_server_serves_on() {
    let (_dir, server) = TestServer::start_temp(|_| {}).await;
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("noise", noise(4096, 0x9e37_79b9_7f4a_7c15)),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("64 KiB of zeros", vec![0; 64 * 1024]),
        (
            "a handshake record of 65535 bytes",
            vec![0x16, 0x03, 0x01, 0xff, 0xff],
        ),
        ("one byte", vec![0x16]),
    ];
    for (what, bytes) in inputs {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        // The server may close before it has read everything: a failed write is fine.
        let _ = tcp.write_all(&bytes).await;
        let _ = tcp.shutdown().await;
        let answer = read_to_close(&mut tcp).await;
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{what}: expected nothing or an alert, got {:02x?}",
            &answer[..answer.len().min(32)]
        );
    }
    let _alice = login(&server, "alice").await;
    assert_eq!(stat(&server, "logins").await, 1);
    server.stop().await;
}

/// Bytes that are not TLS records, written straight to the socket under an established
/// TLS session (before login and after): the server's TLS layer refuses them and closes
/// that connection; others carry on.
#[tokio::test]
async fn bytes_that_are_not_tls_records_after_the_handshake_close_the_connection() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mallory = Identity::generate("mallory");
    // An application-data record of 32 bytes that no key encrypted, a record of an
    // unknown type, and text.
    let forged = [&[0x17, 0x03, 0x03, 0x00, 0x20][..], &[0xde; 32]].concat();
    let garbage: [&[u8]; 3] = [&forged, &[0; 64], b"GET / HTTP/1.1\r\n\r\n"];
    for (i, bytes) in garbage.iter().enumerate() {
        let mut before = Raw::connect(&server, Some(&mallory), &[]).await;
        before.send_beneath_tls(bytes).await;
        assert!(before.recv_until_closed().await.is_empty(), "case {i}");

        let (mut after, _) = Raw::login(
            &server,
            &format!("mallory{i}"),
            &mallory,
            DeviceId::NEW,
            false,
        )
        .await;
        after.send_beneath_tls(bytes).await;
        assert!(after.recv_until_closed().await.is_empty(), "case {i}");
        message_arrives(&mut alice, &mut bob, "bob", "still here").await;
    }
    server.stop().await;
}

/// Garbage inside TLS (valid records carrying bytes that are no packet): closed without
/// an answer, before login and after.
#[tokio::test]
async fn garbage_inside_tls_closes_the_connection_before_and_after_login() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let mut cases = Vec::new();
    for (i, seed) in [1u64, 2, 3, 0xdead_beef].into_iter().enumerate() {
        for before_login in [true, false] {
            cases.push(Case {
                what: format!("noise {i} (before login: {before_login})"),
                before_login,
                bytes: noise(1024, seed),
            });
        }
    }
    cases.push(Case {
        what: "an HTTP request after login".into(),
        before_login: false,
        bytes: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
    });
    each_closes_only_its_own_connection(&server, &mut alice, &mut bob, cases, true).await;
    server.stop().await;
}

/// Presents a certificate for one key and signs the handshake with another.
#[derive(Debug)]
struct WrongKey(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for WrongKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client certificate whose key the client does not hold (the handshake is signed with
/// another key): the handshake fails, the login is never read, and the server serves on.
/// (A certificate that is well formed but not the one bound to the user is 258 code 4:
/// `server_login.rs`.)
#[tokio::test]
async fn a_client_certificate_signed_for_with_another_key_fails_the_handshake() {
    let (_dir, server, [mut alice, mut bob]) = start_with_users(|_| {}, ["alice", "bob"]).await;
    let shown = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mallory".to_owned()])
        .unwrap()
        .self_signed(&shown)
        .unwrap();
    let held = rcgen::KeyPair::generate().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            held.serialize_der().into(),
        ))
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer);
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(vcom_tests::harness::ServerCheck::any(provider))
        .with_client_cert_resolver(Arc::new(WrongKey(Arc::new(certified))));
    let logins = stat(&server, "logins").await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    // In TLS 1.3 the client may count the handshake done before the server has checked
    // its signature: then the login goes out and the server's alert comes back.
    let connected = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the handshake ends in time");
    if let Ok(tls) = connected {
        let mut raw = Raw {
            io: tokio_util::codec::Framed::new(
                tls,
                vcom_protocol::VcomCodec::new(vcom_protocol::Limits::default()),
            ),
        };
        let request = ClientPacket::from(vcom_protocol::ConnectionRequest {
            user: "mallory".into(),
            device: DeviceId::NEW,
            password: bytes::Bytes::new(),
        });
        // The server may already have closed: then the write fails, which is the point.
        let _ = futures::SinkExt::send(&mut raw.io, request).await;
        let after = raw.recv_until_closed().await;
        assert!(after.is_empty(), "answered {after:?}");
    }
    assert_eq!(stat(&server, "logins").await, logins, "nobody logged in");
    message_arrives(&mut alice, &mut bob, "bob", "still here").await;
    server.stop().await;
}
