//! The test-only packet tap counts packets by identifier, direction and code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vcom_protocol::{DenyCode, DeviceId};
use vcom_server::tap::{Direction, TapRecord};
use vcom_tests::harness::{TestServer, attempt_login, login};

#[tokio::test]
async fn the_tap_counts_each_packet_by_direction_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let tap = dir.path().join("tap.jsonl");
    let file = tap.clone();
    let server = TestServer::start(dir.path(), move |c| c.packet_tap = Some(file)).await;
    let mut alice = login(&server, "alice").await;
    alice.client.round_trip().await;
    let (_, denied) = attempt_login(&server, None, "bob", DeviceId::NEW, b"").await;
    assert!(matches!(
        denied,
        vcom_tests::harness::LoginOutcome::Denied(DenyCode::KeyMismatch)
    ));
    server.stop().await;

    let records: Vec<TapRecord> = std::fs::read_to_string(&tap)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |id: i32, direction: Direction, code: Option<i32>| {
        records
            .iter()
            .find(|r| (r.id, r.direction, r.code) == (id, direction, code))
            .map_or(0, |r| r.count)
    };
    assert_eq!(count(256, Direction::ClientToServer, None), 2);
    assert_eq!(count(257, Direction::ServerToClient, None), 1);
    assert_eq!(count(258, Direction::ServerToClient, Some(4)), 1);
    assert_eq!(count(259, Direction::ServerToClient, None), 1);
    assert_eq!(count(260, Direction::ClientToServer, None), 1);
    assert_eq!(count(512, Direction::ClientToServer, None), 1);
    assert_eq!(count(513, Direction::ServerToClient, None), 1);
}
