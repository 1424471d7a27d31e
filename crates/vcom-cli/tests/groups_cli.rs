//! `vcom groups list|members|create|add|remove|leave` against a real `vcom-server` child
//! process: what each prints, `--json`, and a refusal as one line with exit code 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use predicates::prelude::*;
use serde_json::Value;
use support::{World, stdout_of};

fn json(world: &World, user: &str, args: &[&str]) -> Value {
    serde_json::from_str(&stdout_of(&world.succeeds(user, args))).unwrap()
}

#[test]
fn a_user_creates_a_group_and_its_members_list_it_with_its_name_and_members() {
    let world = World::new();
    world.register("bob");
    world.register("carol");
    let created = stdout_of(&world.succeeds(
        "alice",
        &["groups", "create", "Café crew", "--member", "bob"],
    ));
    let gid: i32 = created.trim().parse().expect("create prints the group id");

    world
        .succeeds("bob", &["groups", "list"])
        .stdout(format!("{gid}\tCafé crew\talice\t2 members\n"));
    assert_eq!(
        json(&world, "bob", &["groups", "list", "--json"]),
        serde_json::json!([
            {"id": gid, "name": "Café crew", "owner": "alice", "members": ["alice", "bob"]}
        ])
    );
    let g = gid.to_string();
    world
        .succeeds("alice", &["groups", "members", &g])
        .stdout("alice\t(owner)\nbob\n");

    world
        .succeeds("alice", &["groups", "add", &g, "carol"])
        .stdout(format!("carol is a member of group {gid}\n"));
    assert_eq!(
        json(&world, "carol", &["groups", "members", &g, "--json"]),
        serde_json::json!(["alice", "bob", "carol"])
    );
    world
        .succeeds("alice", &["groups", "remove", &g, "bob"])
        .stdout(format!("bob is not a member of group {gid}\n"));
    world
        .succeeds("bob", &["groups", "list"])
        .stdout("")
        .stderr(predicate::str::contains("you are in no group"));
    world
        .succeeds("carol", &["groups", "leave", &g])
        .stdout(format!("you left group {gid}\n"));
    world
        .succeeds("alice", &["groups", "members", &g])
        .stdout("alice\t(owner)\n");
}

#[test]
fn a_refused_group_request_is_one_line_with_the_servers_reason_and_exit_1() {
    let world = World::new();
    world.register("bob");
    let gid = world
        .server
        .create_group("staff", &["alice", "bob"])
        .to_string();
    world
        .fails("alice", &["groups", "add", &gid, "bob"])
        .stderr(predicate::str::contains(
            "the server refused: the administrator's group: only the administrator changes it (outcome 5)",
        ));
    world
        .fails("alice", &["groups", "add", "4242", "bob"])
        .stderr(predicate::str::contains("no such group (outcome 3)"));
    world
        .fails("alice", &["groups", "members", "4242"])
        .stderr(predicate::str::contains("not a member of group 4242"));
    world
        .fails("alice", &["groups", "create", "team", "--member", "nobody"])
        .stderr(predicate::str::contains("no such user (outcome 4)"));
    // The administrator's group is listed with `-` for its owner, and may be left.
    world
        .succeeds("bob", &["groups", "list"])
        .stdout(format!("{gid}\tstaff\t-\t2 members\n"));
    world.succeeds("bob", &["groups", "leave", &gid]);
    world
        .succeeds("alice", &["groups", "members", &gid, "--json"])
        .stdout("[\"alice\"]\n");
}

#[test]
fn group_commands_need_a_group_number() {
    let world = World::new();
    world
        .vcom("alice")
        .args(["groups", "leave", "team"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a group identifier is a number"));
}
