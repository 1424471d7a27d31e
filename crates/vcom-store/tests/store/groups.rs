//! Groups and members.

use vcom_protocol::GroupId;
use vcom_store::StoreError;

use crate::support::{Backend, store, ts, uid};

async fn created_groups_get_positive_unique_ids_and_members_ordered_by_identifier<S: Backend>() {
    let t = store::<S>().await;
    let g1 = t
        .store
        .create_group("ops", &[uid("carol"), uid("alice"), uid("alice")], ts(1))
        .await
        .unwrap();
    let g2 = t.store.create_group("empty", &[], ts(1)).await.unwrap();
    assert!(g1.0 > 0 && g2.0 > 0 && g1 != g2);
    let group = t.store.group(g1).await.unwrap().unwrap();
    assert_eq!(group.name, "ops");
    assert_eq!(group.members, [uid("alice"), uid("carol")]);
    assert!(t.store.group(g2).await.unwrap().unwrap().members.is_empty());
}

async fn adding_and_removing_members_report_whether_anything_changed<S: Backend>() {
    let t = store::<S>().await;
    let g = t
        .store
        .create_group("g", &[uid("alice")], ts(1))
        .await
        .unwrap();
    assert!(t.store.add_group_member(g, &uid("bob")).await.unwrap());
    assert!(!t.store.add_group_member(g, &uid("bob")).await.unwrap());
    assert!(t.store.remove_group_member(g, &uid("alice")).await.unwrap());
    assert!(!t.store.remove_group_member(g, &uid("alice")).await.unwrap());
    assert_eq!(
        t.store.group(g).await.unwrap().unwrap().members,
        [uid("bob")]
    );
}

async fn member_changes_on_an_unknown_group_are_not_found<S: Backend>() {
    let t = store::<S>().await;
    let err = t
        .store
        .add_group_member(GroupId(42), &uid("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = t
        .store
        .remove_group_member(GroupId(42), &uid("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn an_unknown_group_is_none_and_groups_are_listed_by_identifier<S: Backend>() {
    let t = store::<S>().await;
    assert_eq!(t.store.group(GroupId(1)).await.unwrap(), None);
    let a = t
        .store
        .create_group("a", &[uid("x"), uid("w")], ts(1))
        .await
        .unwrap();
    let b = t.store.create_group("b", &[], ts(1)).await.unwrap();
    let groups = t.store.groups().await.unwrap();
    assert_eq!(groups.iter().map(|g| g.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(groups[0].members, [uid("w"), uid("x")]);
}

async fn a_users_group_keeps_its_owner_and_is_renamed_handed_on_and_deleted<S: Backend>() {
    let t = store::<S>().await;
    let admins = t
        .store
        .create_group("staff", &[uid("bob")], ts(1))
        .await
        .unwrap();
    let g = t
        .store
        .create_owned_group(&uid("alice"), "team", &[uid("bob"), uid("alice")], ts(1))
        .await
        .unwrap();
    assert_eq!(t.store.group(admins).await.unwrap().unwrap().owner, None);
    let group = t.store.group(g).await.unwrap().unwrap();
    assert_eq!(group.owner, Some(uid("alice")));
    assert_eq!(group.members, [uid("alice"), uid("bob")]);

    t.store.rename_group(g, "ops").await.unwrap();
    t.store.set_group_owner(g, &uid("bob")).await.unwrap();
    let group = t.store.group(g).await.unwrap().unwrap();
    assert_eq!(
        (group.name.as_str(), group.owner),
        ("ops", Some(uid("bob")))
    );
    assert_eq!(
        t.store.groups().await.unwrap()[1].owner,
        Some(uid("bob")),
        "listed with its owner"
    );

    assert!(t.store.delete_group(g).await.unwrap());
    assert!(!t.store.delete_group(g).await.unwrap());
    assert_eq!(t.store.group(g).await.unwrap(), None);
    for err in [
        t.store.rename_group(g, "x").await.unwrap_err(),
        t.store.set_group_owner(g, &uid("bob")).await.unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
}

// Each test above, once per backend.
crate::on_both_backends!(
    tests: [
        created_groups_get_positive_unique_ids_and_members_ordered_by_identifier,
        adding_and_removing_members_report_whether_anything_changed,
        member_changes_on_an_unknown_group_are_not_found,
        an_unknown_group_is_none_and_groups_are_listed_by_identifier,
        a_users_group_keeps_its_owner_and_is_renamed_handed_on_and_deleted,
    ],
);
