//! Blacklist and whitelist.

use vcom_store::{Policy, PolicyEntry, PolicyList};

use crate::support::{Backend, store};

async fn policy_entries_are_added_once_and_removed_once<S: Backend>() {
    let t = store::<S>().await;
    let user = PolicyEntry::User("mallory".into());
    assert!(
        t.store
            .add_policy(PolicyList::Blacklist, user.clone())
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .add_policy(PolicyList::Blacklist, user.clone())
            .await
            .unwrap()
    );
    assert!(
        t.store
            .remove_policy(PolicyList::Blacklist, user.clone())
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .remove_policy(PolicyList::Blacklist, user)
            .await
            .unwrap()
    );
    assert_eq!(t.store.policy().await.unwrap(), Policy::default());
}

async fn policy_lists_keep_users_and_addresses_apart<S: Backend>() {
    let t = store::<S>().await;
    t.store
        .add_policy(PolicyList::Whitelist, PolicyEntry::Ip("10.0.0.0/8".into()))
        .await
        .unwrap();
    t.store
        .add_policy(PolicyList::Whitelist, PolicyEntry::User("bob".into()))
        .await
        .unwrap();
    t.store
        .add_policy(PolicyList::Blacklist, PolicyEntry::Ip("192.0.2.1".into()))
        .await
        .unwrap();
    // The same text as a user and as an address are two entries.
    t.store
        .add_policy(PolicyList::Blacklist, PolicyEntry::User("192.0.2.1".into()))
        .await
        .unwrap();
    let policy = t.store.policy().await.unwrap();
    assert_eq!(
        policy.whitelist,
        [
            PolicyEntry::User("bob".into()),
            PolicyEntry::Ip("10.0.0.0/8".into())
        ]
    );
    assert_eq!(
        policy.blacklist,
        [
            PolicyEntry::User("192.0.2.1".into()),
            PolicyEntry::Ip("192.0.2.1".into())
        ]
    );
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        policy_entries_are_added_once_and_removed_once,
        policy_lists_keep_users_and_addresses_apart,
    ],
);
