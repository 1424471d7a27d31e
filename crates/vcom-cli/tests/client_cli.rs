//! The `vcom` program's contract (`DESIGN.md` section 7) against a real `vcom-server`
//! child process: every command, the profile, trust, and the exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use assert_cmd::Command as AssertCommand;
use base64::Engine;
use predicates::prelude::*;
use serde_json::Value;
use support::{TIMEOUT, VCOM, World, stderr_of, stdout_of};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn a_sent_message_reaches_the_recipients_history_and_the_recipient_is_told_it_arrived() {
    let world = World::new();
    world.register("bob");

    world
        .vcom("alice")
        .args(["send", "bob", "hello bob"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sent to bob"));

    // Any command that connects receives the pending message and says so.
    world
        .vcom("bob")
        .args(["friends", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "1 new message arrived; see `vcom history`",
        ));
    let human = world
        .vcom("bob")
        .args(["history", "--with", "alice"])
        .assert()
        .success();
    assert!(stdout_of(&human).contains("alice: hello bob"), "{human:?}");
    let json = world
        .vcom("bob")
        .args(["history", "--json"])
        .assert()
        .success();
    let lines = json_lines(&stdout_of(&json));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "message");
    assert_eq!(lines[0]["direction"], "in");
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["text"], "hello bob");
    assert_eq!(lines[0]["group"], Value::Null);
    assert!(lines[0]["sent_at"].as_i64().unwrap() > 0);
}

#[test]
fn the_senders_history_shows_its_sent_message_as_out_and_the_reply_as_in() {
    let world = World::new();
    world.register("bob");

    world
        .vcom("alice")
        .args(["send", "bob", "hello bob"])
        .assert()
        .success();
    let json = world
        .vcom("alice")
        .args(["history", "--with", "bob", "--json"])
        .assert()
        .success();
    let lines = json_lines(&stdout_of(&json));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["direction"], "out");
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["peer"], "bob");
    assert_eq!(lines[0]["text"], "hello bob");

    // Bob's reply is the incoming side; a sent message is not announced as arrived.
    world
        .vcom("bob")
        .args(["send", "alice", "hi alice"])
        .assert()
        .success()
        .stderr(predicate::str::contains("1 new message arrived"));
    let bob_json = world
        .vcom("bob")
        .args(["history", "--with", "alice", "--json"])
        .assert()
        .success();
    let directions: Vec<Value> = json_lines(&stdout_of(&bob_json))
        .iter()
        .map(|l| l["direction"].clone())
        .collect();
    assert_eq!(directions, ["in", "out"]);
    world
        .vcom("alice")
        .args(["friends", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains("1 new message arrived"));
    let human = world
        .vcom("alice")
        .args(["history", "--with", "bob"])
        .assert()
        .success();
    let text = stdout_of(&human);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("] alice -> bob: hello bob"), "{text}");
    assert!(lines[1].ends_with("] bob: hi alice"), "{text}");
}

#[test]
fn a_group_message_sent_is_out_in_the_senders_group_history() {
    let world = World::new();
    world.register("alice");
    world.register("bob");
    let group = world.server.create_group("team", &["alice", "bob"]);

    world
        .vcom("alice")
        .args(["group-send", &group.to_string(), "hi team"])
        .assert()
        .success();
    let json = world
        .vcom("alice")
        .args(["history", "--group", &group.to_string(), "--json"])
        .assert()
        .success();
    let lines = json_lines(&stdout_of(&json));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["direction"], "out");
    assert_eq!(lines[0]["type"], "group_message");
    assert_eq!(lines[0]["peer"], Value::Null);
    let human = world
        .vcom("alice")
        .args(["history", "--group", &group.to_string()])
        .assert()
        .success();
    assert!(stdout_of(&human).contains(&format!("alice -> group {group}: hi team")));
}

#[test]
fn an_image_arrives_byte_exact_and_is_base64_in_json_history() {
    let world = World::new();
    world.register("bob");
    let image: Vec<u8> = (0..=255u8).chain([0, 159, 146, 150]).collect();
    let file = world.path("cat.png");
    std::fs::write(&file, &image).unwrap();

    world
        .vcom("alice")
        .args(["send-image", "bob"])
        .arg(&file)
        .assert()
        .success();
    world.register("bob");
    let json = world
        .vcom("bob")
        .args(["history", "--with", "alice", "--json"])
        .assert()
        .success();
    let lines = json_lines(&stdout_of(&json));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "image");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(lines[0]["image_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, image);
}

#[test]
fn a_group_message_reaches_the_other_members_history_of_that_group() {
    let world = World::new();
    world.register("alice");
    world.register("bob");
    let group = world.server.create_group("team", &["alice", "bob"]);

    world
        .vcom("alice")
        .args(["group-send", &group.to_string(), "hi team"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("sent to group {group}")));
    world.register("bob");
    let json = world
        .vcom("bob")
        .args(["history", "--group", &group.to_string(), "--json"])
        .assert()
        .success();
    let lines = json_lines(&stdout_of(&json));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "group_message");
    assert_eq!(lines[0]["group"], group);
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["text"], "hi team");
    let human = world
        .vcom("bob")
        .args(["history", "--group", &group.to_string()])
        .assert()
        .success();
    assert!(stdout_of(&human).contains(&format!("alice in group {group}: hi team")));
}

#[test]
fn listen_json_prints_one_object_per_message_as_it_arrives() {
    let world = World::new();
    let mut listener = world.spawn("bob", &["listen", "--json"]);
    listener.wait_stderr("listening as bob");

    world
        .vcom("alice")
        .args(["send", "bob", "are you there?"])
        .assert()
        .success();
    let line = listener.next_stdout();
    let message: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["sender"], "alice");
    assert_eq!(message["text"], "are you there?");
    assert_eq!(message["kind"], "text");
    assert_eq!(message["read"], false);
    assert_eq!(message["group"], Value::Null);
    assert!(message["sent_at"].as_i64().unwrap() > 0);
    // It was stored before it was printed.
    drop(listener);
    let history = world
        .vcom("bob")
        .args(["history", "--json"])
        .assert()
        .success();
    assert_eq!(json_lines(&stdout_of(&history)).len(), 1);
}

#[test]
fn friends_and_blocks_changed_on_one_device_show_on_another_with_the_imported_identity() {
    let world = World::new();
    let exported = world.path("alice.pem");
    world
        .vcom_device("alice", "laptop")
        .args(["friends", "add", "bob"])
        .assert()
        .success()
        .stdout(predicate::str::contains("bob is now a friend"));
    world
        .vcom_device("alice", "laptop")
        .args(["identity", "export"])
        .arg(&exported)
        .assert()
        .success();
    world
        .vcom_device("alice", "phone")
        .args(["identity", "import"])
        .arg(&exported)
        .assert()
        .success();

    world
        .vcom_device("alice", "phone")
        .args(["friends", "list"])
        .assert()
        .success()
        .stdout("bob\n");
    world
        .vcom_device("alice", "phone")
        .args(["friends", "remove", "bob"])
        .assert()
        .success()
        .stdout(predicate::str::contains("bob is no longer a friend"));
    world
        .vcom_device("alice", "phone")
        .args(["block", "add", "mallory"])
        .assert()
        .success()
        .stdout(predicate::str::contains("mallory is now blocked"));

    world
        .vcom_device("alice", "laptop")
        .args(["friends", "list", "--json"])
        .assert()
        .success()
        .stdout("[]\n");
    world
        .vcom_device("alice", "laptop")
        .args(["block", "list"])
        .assert()
        .success()
        .stdout("mallory\n");
    world
        .vcom_device("alice", "laptop")
        .args(["block", "remove", "mallory"])
        .assert()
        .success();
    world
        .vcom_device("alice", "phone")
        .args(["block", "list", "--json"])
        .assert()
        .success()
        .stdout("[]\n");
}

#[test]
fn a_blocked_users_messages_never_arrive() {
    let world = World::new();
    world.register("alice");
    world
        .vcom("bob")
        .args(["block", "add", "alice"])
        .assert()
        .success();
    world
        .vcom("alice")
        .args(["send", "bob", "let me in"])
        .assert()
        .success();
    world
        .vcom("bob")
        .args(["friends", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains("new message").not());
}

#[test]
fn identity_export_never_overwrites_and_import_refuses_a_profile_that_has_a_key() {
    let world = World::new();
    world.register("alice");
    let exported = world.path("alice.pem");
    world
        .vcom("alice")
        .args(["identity", "export"])
        .arg(&exported)
        .assert()
        .success();
    let pem = std::fs::read_to_string(&exported).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );

    world
        .vcom("alice")
        .args(["identity", "export"])
        .arg(&exported)
        .assert()
        .code(1);
    let refused = world
        .vcom("alice")
        .args(["identity", "import"])
        .arg(&exported)
        .assert()
        .code(1);
    assert!(stderr_of(&refused).contains("already holds an identity"));
    // A foreign key cannot log in as alice; the error names code 4.
    let intruder = world
        .vcom_device("alice", "intruder")
        .args(["friends", "list"])
        .assert()
        .code(1);
    assert!(stderr_of(&intruder).contains("code 4"), "{intruder:?}");
}

#[test]
fn send_file_and_receive_accept_all_move_a_file_byte_exact() {
    let world = World::new();
    let downloads = world.path("downloads");
    let mut receiver = world.spawn(
        "bob",
        &[
            "receive",
            "--dir",
            downloads.to_str().unwrap(),
            "--accept-all",
            "--once",
        ],
    );
    receiver.wait_stderr("waiting for files");

    // Not a multiple of the 1024-byte chunk, and not all the same byte.
    let data: Vec<u8> = (0..300_007u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = world.path("report.bin");
    std::fs::write(&file, &data).unwrap();
    world
        .vcom("alice")
        .args(["send-file", "bob"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("sent report.bin"));

    let saved = receiver.next_stdout();
    assert!(saved.starts_with("saved "), "{saved:?}");
    assert_eq!(receiver.wait_exit(), Some(0));
    assert_eq!(std::fs::read(downloads.join("report.bin")).unwrap(), data);
}

#[test]
fn receive_without_a_terminal_or_accept_all_declines_and_says_why() {
    let world = World::new();
    let downloads = world.path("downloads");
    let mut receiver = world.spawn(
        "bob",
        &["receive", "--dir", downloads.to_str().unwrap(), "--once"],
    );
    receiver.wait_stderr("waiting for files");
    let file = world.path("notes.txt");
    std::fs::write(&file, b"secret notes").unwrap();

    let sent = world
        .vcom("alice")
        .args(["send-file", "bob"])
        .arg(&file)
        .assert()
        .code(1);
    assert!(
        stderr_of(&sent).contains("declined by the recipient (reason 0)"),
        "{sent:?}"
    );
    receiver.wait_stderr("stdin is not a terminal");
    assert_eq!(receiver.wait_exit(), Some(0));
    assert!(!downloads.join("notes.txt").exists());
}

#[test]
fn sending_a_file_to_a_user_who_is_offline_fails_with_reason_2() {
    let world = World::new();
    world.register("bob");
    let file = world.path("a.txt");
    std::fs::write(&file, b"x").unwrap();
    let sent = world
        .vcom("alice")
        .args(["send-file", "bob"])
        .arg(&file)
        .assert()
        .code(1);
    assert!(stderr_of(&sent).contains("reason 2"), "{sent:?}");
}

#[test]
fn bad_usage_exits_2() {
    AssertCommand::new(VCOM)
        .args(["--server", "127.0.0.1:1", "--user", "a", "frobnicate"])
        .assert()
        .code(2);
    AssertCommand::new(VCOM)
        .args(["--server", "127.0.0.1:1", "send", "bob", "hi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--user"));
    AssertCommand::new(VCOM)
        .args([
            "--server",
            "127.0.0.1:1",
            "--user",
            "a",
            "group-send",
            "team",
            "hi",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("group identifier is a number"));
    AssertCommand::new(VCOM)
        .args([
            "--server",
            "x:1",
            "--user",
            "a",
            "--ca",
            "ca.pem",
            "--insecure-pin",
            "00",
            "listen",
        ])
        .assert()
        .code(2);
}

#[test]
fn help_names_every_command_and_the_profile_location() {
    let help = AssertCommand::new(VCOM).arg("--help").assert().success();
    let text = stdout_of(&help);
    for command in [
        "send",
        "send-image",
        "group-send",
        "listen",
        "friends",
        "block",
        "send-file",
        "receive",
        "identity",
        "history",
        "chat",
    ] {
        assert!(text.contains(command), "--help lacks {command}");
    }
    assert!(text.contains("$XDG_CONFIG_HOME/vcom/<ID>@<HOST>_<PORT>"));
    assert!(text.contains("Exit codes"));
}

#[test]
fn an_unreachable_server_exits_1_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let out = AssertCommand::new(VCOM)
        .args(["--server", "127.0.0.1:1", "--user", "alice", "--profile"])
        .arg(dir.path().join("p"))
        .args(["send", "bob", "hi"])
        .timeout(TIMEOUT)
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("cannot connect to the server at 127.0.0.1:1"),
        "{stderr:?}"
    );
}

#[test]
fn a_wrong_pin_is_refused_showing_both_fingerprints() {
    let world = World::new();
    let wrong = "ab".repeat(32);
    let out = world
        .vcom("alice")
        .args(["--insecure-pin", &wrong, "friends", "list"])
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains(&wrong), "{stderr:?}");
    assert!(stderr.contains(&world.server.fingerprint), "{stderr:?}");

    // The right pin is accepted.
    world
        .vcom("alice")
        .args([
            "--insecure-pin",
            &world.server.fingerprint,
            "friends",
            "list",
        ])
        .assert()
        .success();
}

#[test]
fn a_server_whose_certificate_changed_is_refused_after_trust_on_first_use() {
    let world = World::new();
    world.register("alice");
    // Another server, another generated certificate, same profile.
    let other = support::Server::start(&world.path("other-server"), None);
    let out = AssertCommand::new(VCOM)
        .args(["--server", &other.addr, "--user", "alice", "--profile"])
        .arg(world.profile("alice"))
        .args(["friends", "list"])
        .timeout(TIMEOUT)
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert!(stderr.contains(&world.server.fingerprint), "{stderr:?}");
    assert!(stderr.contains(&other.fingerprint), "{stderr:?}");
    assert!(stderr.contains("--insecure-pin"), "{stderr:?}");
}

#[test]
fn a_wrong_password_exits_1_naming_code_3_and_the_right_one_logs_in() {
    let world = World::with_config(Some("password = \"sesame\"\n"));
    let out = world
        .vcom("alice")
        .args(["--password", "guess", "friends", "list"])
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("code 3"), "{stderr:?}");
    assert!(
        stderr.contains("wrong or missing server password"),
        "{stderr:?}"
    );

    world
        .vcom("alice")
        .env("VCOM_PASSWORD", "sesame")
        .args(["friends", "list"])
        .assert()
        .success();
}

#[test]
fn the_default_profile_lives_under_the_config_directory_per_user_and_server() {
    let world = World::new();
    let home = world.path("home");
    let port = world.server.addr.rsplit_once(':').unwrap().1;
    AssertCommand::new(VCOM)
        .args(["--server", &world.server.addr, "--user", "alice"])
        .args(["friends", "list"])
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .timeout(TIMEOUT)
        .assert()
        .success();
    let profile = home
        .join(".config/vcom")
        .join(format!("alice@127.0.0.1_{port}"));
    assert!(profile.join("identity.pem").exists(), "{profile:?}");

    let xdg = world.path("xdg");
    AssertCommand::new(VCOM)
        .args(["--server", &world.server.addr, "--user", "bob"])
        .args(["friends", "list"])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &xdg)
        .timeout(TIMEOUT)
        .assert()
        .success();
    assert!(
        xdg.join("vcom")
            .join(format!("bob@127.0.0.1_{port}"))
            .join("identity.pem")
            .exists()
    );
}

#[test]
fn history_without_a_profile_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    AssertCommand::new(VCOM)
        .args(["--server", "127.0.0.1:1", "--user", "alice", "--profile"])
        .arg(dir.path().join("none"))
        .arg("history")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("there is no profile at"));
}

#[test]
fn a_listener_keeps_listening_while_the_same_profile_sends() {
    let world = World::new();
    world.register("alice");
    let mut listener = world.spawn("bob", &["listen", "--json"]);
    listener.wait_stderr("listening as bob");

    // Bob sends from another terminal with the same profile (the same device).
    world
        .vcom("bob")
        .args(["send", "alice", "brb"])
        .assert()
        .success();
    world
        .vcom("alice")
        .args(["send", "bob", "ok"])
        .assert()
        .success();

    let message: Value = serde_json::from_str(&listener.next_stdout()).unwrap();
    assert_eq!(
        (message["sender"].as_str(), message["text"].as_str()),
        (Some("alice"), Some("ok"))
    );
}
