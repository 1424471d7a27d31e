//! Friend and block list sync (259-262) across several devices of one user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vcom_protocol::{DeviceId, ListSync, ServerPacket, Timestamp, UserId, UserListsSync};
use vcom_tests::harness::{TestServer, attempt_login, login, login_as};

fn ids(names: &[&str]) -> Vec<UserId> {
    names.iter().map(|n| UserId::new(*n).unwrap()).collect()
}

fn timestamps(p: ServerPacket) -> (Timestamp, Timestamp) {
    match p {
        ServerPacket::RequestUserListsSync(r) => (r.friends, r.blocks),
        other => panic!("expected 259, got {other:?}"),
    }
}

#[tokio::test]
async fn an_upload_is_stored_and_every_device_is_asked_to_sync_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut phone = login(&server, "alice").await;
    let mut laptop = login_as(&server, "alice", &phone.identity, DeviceId::NEW).await;

    phone
        .client
        .send(UserListsSync {
            friends: ListSync::Upload(ids(&["bob", "carol", "bob"])),
            blocks: ListSync::InSync,
        })
        .await;
    let (friends_ts, blocks_ts) = timestamps(phone.client.recv().await);
    assert!(friends_ts > Timestamp::NEVER);
    assert_eq!(blocks_ts, Timestamp::NEVER);
    assert_eq!(
        timestamps(laptop.client.recv().await),
        (friends_ts, blocks_ts),
        "the other device is told too"
    );

    // The laptop's list is older: it asks for the server's and gets 261 only.
    laptop
        .client
        .send(UserListsSync {
            friends: ListSync::SendServerList,
            blocks: ListSync::InSync,
        })
        .await;
    match laptop.client.recv().await {
        ServerPacket::FriendList(f) => assert_eq!(
            f.entries,
            ids(&["bob", "carol"]),
            "duplicates dropped, order kept"
        ),
        other => panic!("expected 261, got {other:?}"),
    }
    assert!(
        laptop.client.round_trip().await.is_empty(),
        "no 262 was asked for"
    );

    // A second upload always gets a later timestamp, even within the same millisecond.
    phone
        .client
        .send(UserListsSync {
            friends: ListSync::Upload(ids(&["dave"])),
            blocks: ListSync::Upload(ids(&["eve"])),
        })
        .await;
    let (f2, b2) = timestamps(phone.client.recv().await);
    assert!(f2 > friends_ts && b2 > Timestamp::NEVER);
    assert_eq!(timestamps(laptop.client.recv().await), (f2, b2));
    server.stop().await;
}

#[tokio::test]
async fn the_login_259_carries_the_stored_timestamps_and_both_lists_can_be_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let mut phone = login(&server, "alice").await;
    phone
        .client
        .send(UserListsSync {
            friends: ListSync::Upload(ids(&["bob"])),
            blocks: ListSync::Upload(ids(&["mallory"])),
        })
        .await;
    let stored = timestamps(phone.client.recv().await);
    server.stop().await;

    let server = TestServer::start(dir.path(), |_| {}).await;
    let (mut tablet, _) =
        attempt_login(&server, Some(&phone.identity), "alice", DeviceId::NEW, b"").await;
    assert_eq!(
        timestamps(tablet.recv().await),
        stored,
        "lists survive a restart"
    );
    tablet
        .send(UserListsSync {
            friends: ListSync::SendServerList,
            blocks: ListSync::SendServerList,
        })
        .await;
    match (tablet.recv().await, tablet.recv().await) {
        (ServerPacket::FriendList(f), ServerPacket::BlockList(b)) => {
            assert_eq!(f.entries, ids(&["bob"]));
            assert_eq!(b.entries, ids(&["mallory"]));
        }
        other => panic!("expected 261 then 262, got {other:?}"),
    }
    server.stop().await;
}
