//! Device identifiers.

use std::collections::HashSet;

use vcom_protocol::DeviceId;
use vcom_store::{Store, StoreError};

use crate::support::{store, ts, uid};

#[tokio::test]
async fn issued_device_ids_are_positive_unique_and_owned_by_their_user() {
    let t = store();
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

#[tokio::test]
async fn issuing_a_device_to_an_unknown_user_is_not_found() {
    let t = store();
    let err = t
        .store
        .issue_device(&uid("nobody"), ts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn an_unknown_device_has_no_owner() {
    let t = store();
    assert_eq!(t.store.device_owner(DeviceId(12345)).await.unwrap(), None);
}

#[tokio::test]
async fn touching_a_device_records_its_last_login() {
    let t = store();
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

#[tokio::test]
async fn touching_an_unknown_device_is_not_found() {
    let t = store();
    let err = t.store.touch_device(DeviceId(7), ts(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn devices_of_a_user_are_listed_by_identifier() {
    let t = store();
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
