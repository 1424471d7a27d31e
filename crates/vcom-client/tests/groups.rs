//! Client-side groups (518-526) through the real server and the SDK over TLS: who may
//! do what (the owner, a member, a non-member, the administrator's groups), what every
//! member's devices are told, and what a device that was away learns at its next login.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::{TestServer, next_group_message, uid, wait_for, wait_until};
use vcom_client::{
    Client, ClientError, Event, EventStream, Group, GroupExit, GroupId, GroupOutcome, Profile,
    SendOutcome,
};
use vcom_server::AdminRequest;
use vcom_server::admin::{GroupAction, UserAction};

/// Connects each user once, so the server knows them, and keeps the connections.
async fn users(server: &TestServer, root: &Path, names: &[&str]) -> Vec<(Client, EventStream)> {
    let mut out = Vec::new();
    for name in names {
        out.push(server.connect_in(root, name).await);
    }
    out
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>) -> GroupOutcome {
    match result {
        Err(ClientError::GroupRefused(outcome)) => outcome,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Waits for the GroupChanged event of `group`.
async fn changed(events: &mut EventStream, group: GroupId) -> Group {
    wait_for(events, "the group's GroupInfo", |e| match e {
        Event::GroupChanged(g) if g.id == group => Some(g),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_user_creates_a_group_owns_it_and_every_member_learns_its_name_and_members() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (bob, mut bob_events) = all.remove(1);
    let (alice, mut alice_events) = all.remove(0);

    let group = alice
        .create_group("Café crew", &[uid("bob")])
        .await
        .unwrap();
    let expected = Group {
        id: group,
        name: "Café crew".into(),
        owner: Some(uid("alice")),
        members: vec![uid("alice"), uid("bob")],
    };
    assert_eq!(
        alice.group(group),
        Some(expected.clone()),
        "known when create returns"
    );
    assert_eq!(changed(&mut bob_events, group).await, expected);
    assert_eq!(bob.groups(), vec![expected]);

    bob.send_group_text(group, "hi crew").await.unwrap();
    let message = next_group_message(&mut alice_events, "bob's message").await;
    assert_eq!(message.group, Some(group));

    alice.rename_group(group, "ops").await.unwrap();
    assert_eq!(changed(&mut bob_events, group).await.name, "ops");
    server.stop().await;
}

#[tokio::test]
async fn only_the_owner_changes_a_group_and_a_non_member_may_do_nothing() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (carol, _carol_events) = all.remove(2);
    let (bob, _bob_events) = all.remove(1);
    let (alice, _alice_events) = all.remove(0);
    let group = alice.create_group("team", &[uid("bob")]).await.unwrap();

    // A member who is not the owner.
    assert_eq!(
        refused(bob.add_group_member(group, &uid("carol")).await),
        GroupOutcome::NotOwner
    );
    assert_eq!(
        refused(bob.remove_group_member(group, &uid("alice")).await),
        GroupOutcome::NotOwner
    );
    assert_eq!(
        refused(bob.rename_group(group, "mine").await),
        GroupOutcome::NotOwner
    );
    // A non-member.
    assert_eq!(
        refused(carol.add_group_member(group, &uid("carol")).await),
        GroupOutcome::NotAMember
    );
    assert_eq!(
        refused(carol.leave_group(group).await),
        GroupOutcome::NotAMember
    );
    // No such group, no such user.
    assert_eq!(
        refused(alice.leave_group(GroupId(9999)).await),
        GroupOutcome::UnknownGroup
    );
    assert_eq!(
        refused(alice.add_group_member(group, &uid("nobody")).await),
        GroupOutcome::UnknownUser
    );
    assert_eq!(
        refused(alice.create_group("x", &[uid("nobody")]).await),
        GroupOutcome::UnknownUser
    );
    assert!(
        matches!(
            alice.create_group(" ", &[]).await,
            Err(ClientError::InvalidInput(_))
        ),
        "the SDK checks the name before sending it"
    );
    assert_eq!(
        alice.group(group).unwrap().members,
        [uid("alice"), uid("bob")],
        "nothing changed"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_owner_adds_and_removes_members_and_the_removed_one_is_told_and_silenced() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (carol, mut carol_events) = all.remove(2);
    let (bob, mut bob_events) = all.remove(1);
    let (alice, _alice_events) = all.remove(0);
    let group = alice.create_group("team", &[uid("bob")]).await.unwrap();

    alice.add_group_member(group, &uid("carol")).await.unwrap();
    let seen = changed(&mut carol_events, group).await;
    assert_eq!(seen.members, [uid("alice"), uid("bob"), uid("carol")]);
    assert_eq!(carol.group(group), Some(seen));

    alice.remove_group_member(group, &uid("bob")).await.unwrap();
    let reason = wait_for(&mut bob_events, "bob's GroupRemoved", |e| match e {
        Event::GroupRemoved { group: g, reason } if g == group => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, GroupExit::Removed);
    assert_eq!(bob.group(group), None);
    assert_eq!(
        changed(&mut carol_events, group).await.members,
        [uid("alice"), uid("carol")]
    );
    let delivery = bob.send_group_text(group, "still here?").await.unwrap();
    assert_eq!(
        delivery,
        vcom_client::Delivery::Refused(SendOutcome::NotAMember)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_owner_who_leaves_hands_the_group_on_and_the_last_member_out_ends_it() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob"]).await;
    let (bob, mut bob_events) = all.remove(1);
    let (alice, _alice_events) = all.remove(0);
    let group = alice.create_group("team", &[uid("bob")]).await.unwrap();
    changed(&mut bob_events, group).await; // its creation

    alice.leave_group(group).await.unwrap();
    assert_eq!(alice.group(group), None);
    let now = changed(&mut bob_events, group).await;
    assert_eq!(now.owner, Some(uid("bob")));
    assert_eq!(now.members, [uid("bob")]);

    bob.leave_group(group).await.unwrap();
    assert_eq!(bob.group(group), None);
    assert_eq!(
        refused(bob.leave_group(group).await),
        GroupOutcome::UnknownGroup,
        "the empty group is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_administrators_groups_stay_the_administrators_but_members_may_leave_them() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (carol, mut carol_events) = all.remove(2);
    let (bob, _bob_events) = all.remove(1);
    let (alice, mut alice_events) = all.remove(0);

    let group = server.create_group(&["alice", "bob"]).await;
    let seen = changed(&mut alice_events, group).await;
    assert_eq!(seen.owner, None, "no owner: the administrator's");
    assert_eq!(seen.name, "team");

    assert_eq!(
        refused(alice.add_group_member(group, &uid("carol")).await),
        GroupOutcome::AdminGroup
    );
    assert_eq!(
        refused(alice.rename_group(group, "ours").await),
        GroupOutcome::AdminGroup
    );
    bob.leave_group(group).await.unwrap();
    assert_eq!(
        changed(&mut alice_events, group).await.members,
        [uid("alice")]
    );

    // The administrator's own changes reach the members online.
    server
        .admin
        .execute(AdminRequest::Group {
            action: GroupAction::Add {
                id: group.get(),
                user: "carol".into(),
            },
        })
        .await
        .unwrap();
    assert_eq!(
        changed(&mut carol_events, group).await.members,
        [uid("alice"), uid("carol")]
    );
    server
        .admin
        .execute(AdminRequest::Group {
            action: GroupAction::Remove {
                id: group.get(),
                user: "carol".into(),
            },
        })
        .await
        .unwrap();
    wait_until(&carol, &mut carol_events, "carol removed", |c| {
        c.group(group).is_none()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_user_the_administrator_removes_leaves_every_group_and_the_members_are_told() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (_bob, _bob_events) = all.remove(1);
    let (alice, mut alice_events) = all.remove(0);
    let group = alice
        .create_group("team", &[uid("bob"), uid("carol")])
        .await
        .unwrap();
    server
        .admin
        .execute(AdminRequest::User {
            action: UserAction::Remove {
                user: "carol".into(),
            },
        })
        .await
        .unwrap();
    wait_until(
        &alice,
        &mut alice_events,
        "carol gone from the group",
        |c| c.group(group).unwrap().members == [uid("alice"), uid("bob")],
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_device_that_was_away_learns_the_changes_at_its_next_login_and_keeps_its_groups() {
    let (dir, server) = TestServer::start_temp().await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (bob, _bob_events) = all.remove(1);
    let (alice, _alice_events) = all.remove(0);
    let kept = alice.create_group("kept", &[uid("bob")]).await.unwrap();
    let lost = alice.create_group("lost", &[uid("bob")]).await.unwrap();
    bob.ping().await.unwrap();
    assert_eq!(bob.groups().len(), 2);
    bob.close().await.unwrap();
    let saved = Profile::open(dir.path().join("bob")).unwrap();
    assert_eq!(saved.state().groups.len(), 2, "kept in the profile");

    alice.rename_group(kept, "renamed").await.unwrap();
    alice.remove_group_member(lost, &uid("bob")).await.unwrap();

    let (bob, _bob_events) = server.connect_in(dir.path(), "bob").await;
    bob.ping().await.unwrap();
    let groups = bob.groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].id, kept);
    assert_eq!(groups[0].name, "renamed");
    server.stop().await;
}

#[tokio::test]
async fn groups_owned_and_members_are_bounded_by_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir.path().join("server"), |c| {
        c.max_groups_per_user = 1;
        c.max_group_members = 2;
    })
    .await;
    let mut all = users(&server, dir.path(), &["alice", "bob", "carol"]).await;
    let (alice, _alice_events) = all.remove(0);
    assert_eq!(
        refused(alice.create_group("big", &[uid("bob"), uid("carol")]).await),
        GroupOutcome::TooManyMembers
    );
    let group = alice.create_group("one", &[uid("bob")]).await.unwrap();
    assert_eq!(
        refused(alice.create_group("two", &[]).await),
        GroupOutcome::TooManyGroups
    );
    assert_eq!(
        refused(alice.add_group_member(group, &uid("carol")).await),
        GroupOutcome::TooManyMembers
    );
    server.stop().await;
}

#[tokio::test]
async fn without_the_extension_set_group_requests_fail_and_no_group_packet_arrives() {
    let (dir, server) = TestServer::start_temp().await;
    let mut config = server.config("alice", &dir.path().join("alice"));
    config.extensions = false;
    let (alice, mut alice_events) = server.try_connect(config).await.unwrap();
    assert!(matches!(
        alice.create_group("team", &[]).await,
        Err(ClientError::ExtensionRequired(_))
    ));
    // The administrator's change is not announced to a wiki-mode client (it would be a
    // protocol violation for it): it stays connected and keeps receiving.
    let group = server.create_group(&["alice", "bob"]).await;
    let (bob, _bob_events) = server.connect_in(dir.path(), "bob").await;
    bob.send_group_text(group, "hello").await.unwrap();
    let message = next_group_message(&mut alice_events, "bob's message").await;
    assert_eq!(message.group, Some(group));
    assert!(alice.groups().is_empty());
    server.stop().await;
}
