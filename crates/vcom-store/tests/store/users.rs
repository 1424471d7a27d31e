//! Users and key binding.

use vcom_protocol::DeviceId;
use vcom_store::{KeyFingerprint, LoginRecord, StoreError};

use crate::support::{Backend, store, ts, uid};

const KEY_A: KeyFingerprint = KeyFingerprint([0xaa; 32]);
const KEY_B: KeyFingerprint = KeyFingerprint([0xbb; 32]);

async fn registering_a_new_user_creates_it_with_its_key<S: Backend>() {
    let t = store::<S>().await;
    let record = t
        .store
        .register_user(&uid("alice"), Some(KEY_A), ts(10))
        .await
        .unwrap();
    assert_eq!(record.id, uid("alice"));
    assert_eq!(record.key, Some(KEY_A));
    assert_eq!(record.created_at, ts(10));
    assert_eq!(t.store.user(&uid("alice")).await.unwrap(), Some(record));
}

async fn registering_a_known_user_returns_it_unchanged<S: Backend>() {
    let t = store::<S>().await;
    let first = t
        .store
        .register_user(&uid("alice"), Some(KEY_A), ts(10))
        .await
        .unwrap();
    let again = t
        .store
        .register_user(&uid("alice"), Some(KEY_B), ts(20))
        .await
        .unwrap();
    assert_eq!(again, first);
}

async fn an_unknown_user_is_none<S: Backend>() {
    let t = store::<S>().await;
    assert_eq!(t.store.user(&uid("nobody")).await.unwrap(), None);
}

async fn binding_a_key_to_an_unbound_user_sets_it<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), None, ts(1))
        .await
        .unwrap();
    t.store.bind_key(&uid("alice"), KEY_A).await.unwrap();
    let record = t.store.user(&uid("alice")).await.unwrap().unwrap();
    assert_eq!(record.key, Some(KEY_A));
    // Binding the same key again is harmless (a retried login).
    t.store.bind_key(&uid("alice"), KEY_A).await.unwrap();
}

async fn binding_a_key_to_an_unknown_user_is_not_found<S: Backend>() {
    let t = store::<S>().await;
    let err = t.store.bind_key(&uid("nobody"), KEY_A).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn binding_a_different_key_to_a_bound_user_is_a_conflict<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), Some(KEY_A), ts(1))
        .await
        .unwrap();
    let err = t.store.bind_key(&uid("alice"), KEY_B).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        t.store.user(&uid("alice")).await.unwrap().unwrap().key,
        Some(KEY_A)
    );
}

async fn resetting_a_key_unbinds_it_so_a_new_key_can_bind<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), Some(KEY_A), ts(1))
        .await
        .unwrap();
    assert!(t.store.reset_key(&uid("alice"), None).await.unwrap());
    assert_eq!(
        t.store.user(&uid("alice")).await.unwrap().unwrap().key,
        None
    );
    t.store.bind_key(&uid("alice"), KEY_B).await.unwrap();
    assert_eq!(
        t.store.user(&uid("alice")).await.unwrap().unwrap().key,
        Some(KEY_B)
    );
}

async fn resetting_a_key_to_a_given_key_binds_that_key_so_only_it_logs_in<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .register_user(&uid("alice"), Some(KEY_A), ts(1))
        .await
        .unwrap();
    assert!(t.store.reset_key(&uid("alice"), Some(KEY_B)).await.unwrap());
    assert_eq!(
        t.store.user(&uid("alice")).await.unwrap().unwrap().key,
        Some(KEY_B)
    );
    let old = t
        .store
        .record_login(&uid("alice"), Some(KEY_A), DeviceId::NEW, ts(2), None)
        .await
        .unwrap();
    assert_eq!(
        old,
        LoginRecord::KeyConflict,
        "the old key no longer logs in"
    );
    let new = t
        .store
        .record_login(&uid("alice"), Some(KEY_B), DeviceId::NEW, ts(3), None)
        .await
        .unwrap();
    assert!(matches!(new, LoginRecord::Recorded { .. }), "{new:?}");
}

async fn resetting_the_key_of_an_unknown_user_is_false_and_registers_nobody<S: Backend>() {
    let t = store::<S>().await;
    assert!(!t.store.reset_key(&uid("nobody"), None).await.unwrap());
    assert!(
        !t.store
            .reset_key(&uid("nobody"), Some(KEY_B))
            .await
            .unwrap()
    );
    assert_eq!(t.store.user(&uid("nobody")).await.unwrap(), None);
}

async fn users_are_listed_by_identifier<S: Backend>() {
    let t = store::<S>().await;
    for name in ["carol", "alice", "bob"] {
        t.store
            .register_user(&uid(name), None, ts(1))
            .await
            .unwrap();
    }
    let names: Vec<String> = t
        .store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
}

#[test]
fn key_fingerprint_hex_is_64_lower_case_characters() {
    assert_eq!(KEY_A.to_hex(), "aa".repeat(32));
}

async fn a_first_login_registers_binds_and_issues_a_device_in_one_call<S: Backend>() {
    let t = store::<S>().await;
    let LoginRecord::Recorded {
        device,
        new_device,
        retired,
    } = t
        .store
        .record_login(&uid("alice"), Some(KEY_A), DeviceId::NEW, ts(10), None)
        .await
        .unwrap()
    else {
        panic!("the first login is recorded");
    };
    assert!(new_device && device.0 > 0 && retired.is_empty());
    let user = t.store.user(&uid("alice")).await.unwrap().unwrap();
    assert_eq!((user.key, user.created_at), (Some(KEY_A), ts(10)));
    let devices = t.store.devices(&uid("alice")).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!((devices[0].id, devices[0].last_seen), (device, ts(10)));

    // A later login of the same device only marks it as seen.
    let again = t
        .store
        .record_login(&uid("alice"), Some(KEY_A), device, ts(20), None)
        .await
        .unwrap();
    assert_eq!(
        again,
        LoginRecord::Recorded {
            device,
            new_device: false,
            retired: Vec::new(),
        }
    );
    assert_eq!(
        t.store.devices(&uid("alice")).await.unwrap()[0].last_seen,
        ts(20)
    );
}

async fn a_login_with_another_key_is_a_conflict_and_changes_nothing<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .record_login(&uid("alice"), Some(KEY_A), DeviceId::NEW, ts(10), None)
        .await
        .unwrap();
    let conflict = t
        .store
        .record_login(&uid("alice"), Some(KEY_B), DeviceId::NEW, ts(20), None)
        .await
        .unwrap();
    assert_eq!(conflict, LoginRecord::KeyConflict);
    assert_eq!(t.store.devices(&uid("alice")).await.unwrap().len(), 1);
    assert_eq!(
        t.store.user(&uid("alice")).await.unwrap().unwrap().key,
        Some(KEY_A)
    );
}

/// Removing a user deletes everything of theirs and nothing of anyone else's: their
/// devices, lists, memberships and waiting messages go; a message they sent still waits
/// for its recipient; the identifier can register again, as new.
async fn removing_a_user_deletes_everything_of_theirs_and_nothing_else<S: Backend>() {
    use crate::support::{no_hook, pending_bodies, text, user_with_device};
    use vcom_store::ListKind;

    let t = crate::support::store::<S>().await;
    let alice = user_with_device(&t.store, "alice").await;
    let bob = user_with_device(&t.store, "bob").await;
    t.store
        .replace_list(&uid("alice"), ListKind::Friends, vec![uid("bob")], ts(2))
        .await
        .unwrap();
    let group = t
        .store
        .create_group("pair", &[uid("alice"), uid("bob")], ts(3))
        .await
        .unwrap();
    for (from, device, to, body) in [
        ("alice", alice, "bob", "to bob"),
        ("bob", bob, "alice", "to alice"),
    ] {
        t.store
            .store_message(text(from, device, &[to], body), no_hook())
            .await
            .unwrap();
    }

    assert!(t.store.remove_user(&uid("alice")).await.unwrap());
    assert!(
        !t.store.remove_user(&uid("alice")).await.unwrap(),
        "gone already"
    );
    assert!(t.store.user(&uid("alice")).await.unwrap().is_none());
    assert!(t.store.devices(&uid("alice")).await.unwrap().is_empty());
    assert_eq!(t.store.device_owner(alice).await.unwrap(), None);
    assert!(
        t.store
            .lists(&uid("alice"))
            .await
            .unwrap()
            .friends
            .entries
            .is_empty()
    );
    assert_eq!(
        t.store.group(group).await.unwrap().unwrap().members,
        vec![uid("bob")]
    );
    assert_eq!(pending_bodies(&t.store, "bob", bob).await, ["to bob"]);
    assert_eq!(t.store.stats().await.unwrap().pending_deliveries, 1);
    let again = t
        .store
        .record_login(&uid("alice"), Some(KEY_B), DeviceId::NEW, ts(9), None)
        .await
        .unwrap();
    let LoginRecord::Recorded { device, .. } = again else {
        panic!("alice registers again, with any key")
    };
    assert!(pending_bodies(&t.store, "alice", device).await.is_empty());
}

/// An invitation admits as many new users as it has uses, until it expires, each use
/// spent in the login's own transaction; a refused one writes nothing, and an
/// invitation never admits a user that exists already.
async fn an_invitation_admits_new_users_while_it_has_uses_and_time<S: Backend>() {
    use vcom_store::InviteHash;
    let t = crate::support::store::<S>().await;
    let two_uses = InviteHash([7; 32]);
    let expired = InviteHash([8; 32]);
    t.store
        .create_invite(two_uses, 2, Some(ts(1_000)), ts(1))
        .await
        .unwrap();
    t.store
        .create_invite(expired, 5, Some(ts(50)), ts(1))
        .await
        .unwrap();
    let login = |user: &'static str, invite: InviteHash, at: i64| {
        let store = t.store.clone();
        async move {
            store
                .record_login(&uid(user), None, DeviceId::NEW, ts(at), Some(invite))
                .await
                .unwrap()
        }
    };
    assert!(matches!(
        login("ann", two_uses, 10).await,
        LoginRecord::Recorded { .. }
    ));
    assert_eq!(
        login("ann", two_uses, 11).await,
        LoginRecord::InviteRefused,
        "not new"
    );
    assert!(matches!(
        login("ben", two_uses, 12).await,
        LoginRecord::Recorded { .. }
    ));
    assert_eq!(
        login("cat", two_uses, 13).await,
        LoginRecord::InviteRefused,
        "used up"
    );
    assert_eq!(
        login("dan", expired, 60).await,
        LoginRecord::InviteRefused,
        "expired"
    );
    assert_eq!(
        login("eve", InviteHash([9; 32]), 14).await,
        LoginRecord::InviteRefused,
        "unknown"
    );
    for refused in ["cat", "dan", "eve"] {
        assert!(t.store.user(&uid(refused)).await.unwrap().is_none());
    }
    assert_eq!(
        t.store.invites(ts(20)).await.unwrap().len(),
        1,
        "the expired one"
    );
    assert!(t.store.invites(ts(60)).await.unwrap().is_empty());
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        registering_a_new_user_creates_it_with_its_key,
        registering_a_known_user_returns_it_unchanged,
        an_unknown_user_is_none,
        binding_a_key_to_an_unbound_user_sets_it,
        binding_a_key_to_an_unknown_user_is_not_found,
        binding_a_different_key_to_a_bound_user_is_a_conflict,
        resetting_a_key_unbinds_it_so_a_new_key_can_bind,
        resetting_a_key_to_a_given_key_binds_that_key_so_only_it_logs_in,
        resetting_the_key_of_an_unknown_user_is_false_and_registers_nobody,
        users_are_listed_by_identifier,
        a_first_login_registers_binds_and_issues_a_device_in_one_call,
        a_login_with_another_key_is_a_conflict_and_changes_nothing,
        removing_a_user_deletes_everything_of_theirs_and_nothing_else,
        an_invitation_admits_new_users_while_it_has_uses_and_time,
    ],
);
