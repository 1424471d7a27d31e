//! Device identifiers.

use std::collections::HashSet;

use vcom_protocol::DeviceId;
use vcom_store::{LoginRecord, Store, StoreConfig, StoreError};

use crate::support::{Backend, pending_bodies, store, store_with, text, ts, uid, user_with_device};

async fn issued_device_ids_are_positive_unique_and_owned_by_their_user<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    t.store
        .register_user(&uid("bob"), None, ts(1))
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for i in 0..10 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let device = t.store.issue_device(&uid(user), ts(5)).await.unwrap();
        assert!(device.0 > 0);
        assert!(seen.insert(device), "{device} issued twice");
        assert_eq!(t.store.device_owner(device).await.unwrap(), Some(uid(user)));
    }
}

async fn issuing_a_device_to_an_unknown_user_is_not_found<S: Backend>() {
    let t = store::<S>().await;
    let err = t
        .store
        .issue_device(&uid("nobody"), ts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn an_unknown_device_has_no_owner<S: Backend>() {
    let t = store::<S>().await;
    assert_eq!(t.store.device_owner(DeviceId(12345)).await.unwrap(), None);
}

async fn touching_a_device_records_its_last_login<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    let device = t.store.issue_device(&uid("alice"), ts(5)).await.unwrap();
    t.store.touch_device(device, ts(99)).await.unwrap();
    let devices = t.store.devices(&uid("alice")).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].created_at, ts(5));
    assert_eq!(devices[0].last_seen, ts(99));
}

async fn touching_an_unknown_device_is_not_found<S: Backend>() {
    let t = store::<S>().await;
    let err = t.store.touch_device(DeviceId(7), ts(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn devices_of_a_user_are_listed_by_identifier<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    t.store
        .register_user(&uid("bob"), None, ts(1))
        .await
        .unwrap();
    let a1 = t.store.issue_device(&uid("alice"), ts(1)).await.unwrap();
    let _b1 = t.store.issue_device(&uid("bob"), ts(1)).await.unwrap();
    let a2 = t.store.issue_device(&uid("alice"), ts(1)).await.unwrap();
    let ids: Vec<DeviceId> = t
        .store
        .devices(&uid("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, [a1, a2]);
    assert!(t.store.devices(&uid("nobody")).await.unwrap().is_empty());
}

#[allow(clippy::unwrap_used)]
async fn new_device(store: &impl Store, user: &str, at: i64) -> (DeviceId, Vec<DeviceId>) {
    match store
        .record_login(&uid(user), None, DeviceId::NEW, ts(at), None)
        .await
        .unwrap()
    {
        LoginRecord::Recorded {
            device, retired, ..
        } => (device, retired),
        other => panic!("a new device is recorded: {other:?}"),
    }
}

/// Logins that each ask for a new device (a client that forgets its identifier) keep
/// at most `devices_per_user` rows: each one past it retires the least recently seen
/// device, never another user's.
async fn new_devices_past_the_cap_retire_the_least_recently_seen_ones<S: Backend>() {
    let t = store_with::<S>(StoreConfig {
        devices_per_user: Some(3),
        ..StoreConfig::default()
    })
    .await;
    let (bob, _) = new_device(&t.store, "bob", 1).await;
    let (first, _) = new_device(&t.store, "alice", 1).await;
    let (second, _) = new_device(&t.store, "alice", 2).await;
    let (third, none) = new_device(&t.store, "alice", 3).await;
    assert!(none.is_empty());
    // The first device logs in again: the second is now the least recently seen.
    t.store
        .record_login(&uid("alice"), None, first, ts(4), None)
        .await
        .unwrap();
    let (fourth, retired) = new_device(&t.store, "alice", 5).await;
    assert_eq!(retired, vec![second]);
    let ids: Vec<DeviceId> = t
        .store
        .devices(&uid("alice"))
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, vec![first, third, fourth]);
    assert_eq!(t.store.device_owner(second).await.unwrap(), None);
    assert_eq!(t.store.device_owner(bob).await.unwrap(), Some(uid("bob")));
    for at in 6..50 {
        new_device(&t.store, "alice", at).await;
    }
    assert_eq!(t.store.devices(&uid("alice")).await.unwrap().len(), 3);
}

/// Retiring a device loses the user nothing: a message no device has received yet
/// still waits for the new device and the ones that remain.
async fn a_retired_device_takes_no_waiting_message_with_it<S: Backend>() {
    let t = store_with::<S>(StoreConfig {
        devices_per_user: Some(1),
        ..StoreConfig::default()
    })
    .await;
    let bob = user_with_device(&t.store, "bob").await;
    new_device(&t.store, "alice", 1).await;
    t.store
        .store_message(
            text("bob", bob, &["alice"], "hello"),
            crate::support::no_hook(),
        )
        .await
        .unwrap();
    let (device, retired) = new_device(&t.store, "alice", 2).await;
    assert_eq!(retired.len(), 1);
    assert_eq!(
        pending_bodies(&t.store, "alice", device).await,
        vec!["hello".to_string()]
    );
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        issued_device_ids_are_positive_unique_and_owned_by_their_user,
        issuing_a_device_to_an_unknown_user_is_not_found,
        an_unknown_device_has_no_owner,
        touching_a_device_records_its_last_login,
        touching_an_unknown_device_is_not_found,
        devices_of_a_user_are_listed_by_identifier,
        new_devices_past_the_cap_retire_the_least_recently_seen_ones,
        a_retired_device_takes_no_waiting_message_with_it,
    ],
);
