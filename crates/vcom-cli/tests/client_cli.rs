//! The `vcom` program's contract (the README's contract) against a real `vcom-server`
//! child process: every command, the profile, trust, and the exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use assert_cmd::Command as AssertCommand;
use base64::Engine;
use predicates::prelude::*;
use serde_json::Value;
use support::{TIMEOUT, VCOM, World, stderr_of, stdout_of};

#[test]
fn a_sent_message_reaches_the_recipients_history_and_the_recipient_is_told_it_arrived() {
    let world = World::new();
    world.register("bob");

    world
        .send("alice", "bob", "hello bob")
        .stdout(predicate::str::contains(
            "sent to bob (stored by the server)",
        ));

    // Any command that connects receives the pending message and says so.
    world
        .succeeds("bob", &["friends", "list"])
        .stderr(predicate::str::contains(
            "1 new message arrived; see `vcom history`",
        ));
    let human = world.succeeds("bob", &["history", "--with", "alice"]);
    assert!(stdout_of(&human).contains("alice: hello bob"), "{human:?}");
    let lines = world.history_json("bob", &[]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "message");
    assert_eq!(lines[0]["direction"], "in");
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["text"], "hello bob");
    assert_eq!(lines[0]["group"], Value::Null);
    assert!(lines[0]["sent_at"].as_i64().unwrap() > 0);
}

#[test]
fn a_message_to_an_unknown_user_exits_1_and_is_in_the_history_as_refused_with_the_reason() {
    let world = World::new();
    world
        .fails("alice", &["send", "nobody", "hello?"])
        .stderr(predicate::str::contains(
            "the server did not store the message to nobody: no such user (outcome 1)",
        ));
    world
        .fails("alice", &["group-send", "4242", "hello?"])
        .stderr(predicate::str::contains("not a member"));
    let lines = world.history_json("alice", &[]);
    let states: Vec<(&Value, &Value, &Value)> = lines
        .iter()
        .map(|l| (&l["text"], &l["delivery"], &l["refusal"]))
        .collect();
    assert_eq!(
        states,
        [
            (
                &Value::from("hello?"),
                &Value::from("refused"),
                &Value::from("no such user (outcome 1)")
            ),
            (
                &Value::from("hello?"),
                &Value::from("refused"),
                &Value::from("no such group, or not a member of it (outcome 2)")
            ),
        ],
        "a refused message is recorded with the reason"
    );
    let human = stdout_of(&world.succeeds("alice", &["history", "--with", "nobody"]));
    assert!(
        human.contains("alice -> nobody: hello? [✗ refused: no such user"),
        "{human}"
    );
}

#[test]
fn a_backlog_longer_than_the_event_queue_reaches_a_one_shot_command_whole() {
    let world = World::new();
    world.register("bob");
    // 600 messages wait for bob: more than the SDK's event queue (256) holds.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = vcom_client::ClientConfig::new(
            world.server.addr.as_str(),
            vcom_client::UserId::new("alice").unwrap(),
            world.profile("alice"),
        );
        let (alice, _events) = vcom_client::Client::connect(config).await.unwrap();
        let bob = vcom_client::UserId::new("bob").unwrap();
        for i in 0..600 {
            alice.send_text(&bob, &format!("m{i}")).await.unwrap();
        }
        alice.close().await.unwrap();
    });
    world
        .succeeds("bob", &["friends", "list"])
        .stderr(predicate::str::contains("600 new messages arrived"));
    assert_eq!(world.history_json("bob", &[]).len(), 600);
}

#[test]
fn terminal_escapes_in_a_message_reach_history_escaped_and_json_unchanged() {
    let world = World::new();
    world.register("bob");
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2Jhi\n[2030-01-01 00:00:00 UTC] admin: fake";
    world.send("alice", "bob", hostile);
    world.succeeds("bob", &["friends", "list"]);
    let human = stdout_of(&world.succeeds("bob", &["history", "--with", "alice"]));
    assert!(
        !human.contains('\u{1b}') && !human.contains('\u{7}'),
        "no raw control character reaches the terminal: {human:?}"
    );
    assert_eq!(human.lines().count(), 1, "no fake line: {human:?}");
    assert!(human.contains("\\u{1b}]0;pwned"), "{human:?}");
    // JSON is for programs: the text there is exactly what was sent.
    assert_eq!(world.history_json("bob", &[])[0]["text"], hostile);
}

#[test]
fn the_senders_history_shows_its_sent_message_as_out_and_the_reply_as_in() {
    let world = World::new();
    world.register("bob");

    world.send("alice", "bob", "hello bob");
    let lines = world.history_json("alice", &["--with", "bob"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["direction"], "out");
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["peer"], "bob");
    assert_eq!(lines[0]["text"], "hello bob");

    // Bob's reply is the incoming side; a sent message is not announced as arrived.
    world
        .send("bob", "alice", "hi alice")
        .stderr(predicate::str::contains("1 new message arrived"));
    let directions: Vec<Value> = world
        .history_json("bob", &["--with", "alice"])
        .iter()
        .map(|l| l["direction"].clone())
        .collect();
    assert_eq!(directions, ["in", "out"]);
    world
        .succeeds("alice", &["friends", "list"])
        .stderr(predicate::str::contains("1 new message arrived"));
    let human = world.succeeds("alice", &["history", "--with", "bob"]);
    let text = stdout_of(&human);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("] alice -> bob: hello bob [✓ stored]"),
        "{text}"
    );
    assert!(lines[1].ends_with("] bob: hi alice"), "{text}");
}

#[test]
fn a_group_message_sent_is_out_in_the_senders_group_history() {
    let world = World::new();
    world.register("alice");
    world.register("bob");
    let group = world.server.create_group("team", &["alice", "bob"]);

    world.succeeds("alice", &["group-send", &group.to_string(), "hi team"]);
    let lines = world.history_json("alice", &["--group", &group.to_string()]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["direction"], "out");
    assert_eq!(lines[0]["type"], "group_message");
    assert_eq!(lines[0]["peer"], Value::Null);
    let human = world.succeeds("alice", &["history", "--group", &group.to_string()]);
    // The profile knows the group's name from the server (extended mode).
    assert!(stdout_of(&human).contains(&format!("alice -> team (group {group}): hi team")));
    assert_eq!(lines[0]["group_name"], "team");
}

#[test]
fn an_image_arrives_byte_exact_and_is_base64_in_json_history() {
    let world = World::new();
    world.register("bob");
    let image: Vec<u8> = (0..=255u8).chain([0, 159, 146, 150]).collect();
    let file = world.file("cat.png", &image);

    world.succeeds("alice", &["send-image", "bob", file.to_str().unwrap()]);
    world.register("bob");
    let lines = world.history_json("bob", &["--with", "alice"]);
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
        .succeeds("alice", &["group-send", &group.to_string(), "hi team"])
        .stdout(predicate::str::contains(format!("sent to group {group}")));
    world.register("bob");
    let lines = world.history_json("bob", &["--group", &group.to_string()]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "group_message");
    assert_eq!(lines[0]["group"], group);
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["text"], "hi team");
    let human = world.succeeds("bob", &["history", "--group", &group.to_string()]);
    assert!(stdout_of(&human).contains(&format!("alice in team (group {group}): hi team")));
    assert_eq!(lines[0]["group_name"], "team");
}

#[test]
fn listen_json_prints_one_object_per_message_as_it_arrives() {
    let world = World::new();
    let mut listener = world.json_listener("bob");

    world.send("alice", "bob", "are you there?");
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
    assert_eq!(world.history_json("bob", &[]).len(), 1);
}

#[test]
fn friends_and_blocks_changed_on_one_device_show_on_another_with_the_imported_identity() {
    let world = World::new();
    let exported = world.path("alice.pem");
    world
        .device_succeeds("alice", "laptop", &["friends", "add", "bob"])
        .stdout(predicate::str::contains("bob is now a friend"));
    let pem = exported.to_str().unwrap();
    world.device_succeeds("alice", "laptop", &["identity", "export", pem]);
    world.device_succeeds("alice", "phone", &["identity", "import", pem]);

    world
        .device_succeeds("alice", "phone", &["friends", "list"])
        .stdout("bob\n");
    world
        .device_succeeds("alice", "phone", &["friends", "remove", "bob"])
        .stdout(predicate::str::contains("bob is no longer a friend"));
    world
        .device_succeeds("alice", "phone", &["block", "add", "mallory"])
        .stdout(predicate::str::contains("mallory is now blocked"));

    world
        .device_succeeds("alice", "laptop", &["friends", "list", "--json"])
        .stdout("[]\n");
    world
        .device_succeeds("alice", "laptop", &["block", "list"])
        .stdout("mallory\n");
    world.device_succeeds("alice", "laptop", &["block", "remove", "mallory"]);
    world
        .device_succeeds("alice", "phone", &["block", "list", "--json"])
        .stdout("[]\n");
}

#[test]
fn a_blocked_users_messages_never_arrive() {
    let world = World::new();
    world.register("alice");
    world.succeeds("bob", &["block", "add", "alice"]);
    world.send("alice", "bob", "let me in");
    world
        .succeeds("bob", &["friends", "list"])
        .stderr(predicate::str::contains("new message").not());
}

#[test]
fn identity_export_never_overwrites_and_import_refuses_a_profile_that_has_a_key() {
    let world = World::new();
    world.register("alice");
    let exported = world.path("alice.pem");
    world.succeeds("alice", &["identity", "export", exported.to_str().unwrap()]);
    let pem = std::fs::read_to_string(&exported).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );

    world.fails("alice", &["identity", "export", exported.to_str().unwrap()]);
    let refused = world.fails("alice", &["identity", "import", exported.to_str().unwrap()]);
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
    let mut receiver = world.receiver("bob", &downloads, &["--accept-all", "--once"]);

    // Not a multiple of the 1024-byte chunk, and not all the same byte.
    let data: Vec<u8> = (0..300_007u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = world.file("report.bin", &data);
    world
        .succeeds("alice", &["send-file", "bob", file.to_str().unwrap()])
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
    let mut receiver = world.receiver("bob", &downloads, &["--once"]);
    let file = world.file("notes.txt", b"secret notes");

    let sent = world.fails("alice", &["send-file", "bob", file.to_str().unwrap()]);
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
    let file = world.file("a.txt", b"x");
    let sent = world.fails("alice", &["send-file", "bob", file.to_str().unwrap()]);
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
    let out = world.fails("alice", &["--insecure-pin", &wrong, "friends", "list"]);
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains(&wrong), "{stderr:?}");
    assert!(stderr.contains(&world.server.fingerprint), "{stderr:?}");

    // The right pin is accepted.
    world.succeeds(
        "alice",
        &[
            "--insecure-pin",
            &world.server.fingerprint,
            "friends",
            "list",
        ],
    );
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
    let out = world.fails("alice", &["--password", "guess", "friends", "list"]);
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
    let mut listener = world.json_listener("bob");

    // Bob sends from another terminal with the same profile (the same device).
    world.send("bob", "alice", "brb");
    world.send("alice", "bob", "ok");

    let message: Value = serde_json::from_str(&listener.next_stdout()).unwrap();
    assert_eq!(
        (message["sender"].as_str(), message["text"].as_str()),
        (Some("alice"), Some("ok"))
    );
}

/// The fingerprint `vcom identity fingerprint` prints, checked to be one line of 64
/// lower-case hex digits.
fn fingerprint_of(assert: &assert_cmd::assert::Assert) -> String {
    let out = stdout_of(assert);
    let fingerprint = out.strip_suffix('\n').unwrap_or(&out);
    assert!(
        fingerprint.len() == 64
            && fingerprint
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "not one line of 64 lower-case hex digits: {out:?}"
    );
    fingerprint.to_owned()
}

#[test]
fn identity_fingerprint_prints_the_key_the_server_bound_and_needs_no_server() {
    let world = World::new();
    world.register("alice");
    let fingerprint = fingerprint_of(&world.succeeds("alice", &["identity", "fingerprint"]));
    world
        .server
        .admin()
        .args(["user", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "alice\tkey={fingerprint}\t"
        )));

    let offline = AssertCommand::new(VCOM)
        .args(["--server", "127.0.0.1:1", "--user", "alice", "--profile"])
        .arg(world.profile("alice"))
        .args(["identity", "fingerprint"])
        .timeout(TIMEOUT)
        .assert()
        .success();
    assert_eq!(fingerprint_of(&offline), fingerprint);
}

#[test]
fn a_new_profile_logs_in_once_the_administrator_binds_its_fingerprint_and_the_old_key_is_shut_out()
{
    let world = World::new();
    world.register("alice");
    let mut old_listener = world.json_listener("alice");

    let new = world
        .vcom_device("alice", "new-laptop")
        .args(["identity", "fingerprint"])
        .assert()
        .success()
        .stderr(predicate::str::contains("generated a new key"));
    let fingerprint = fingerprint_of(&new);
    let again = world.device_succeeds("alice", "new-laptop", &["identity", "fingerprint"]);
    assert_eq!(fingerprint_of(&again), fingerprint, "the key is kept");
    let refused = world
        .vcom_device("alice", "new-laptop")
        .args(["friends", "list"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&refused).contains("vcom identity fingerprint"),
        "{refused:?}"
    );

    world
        .server
        .admin()
        .args(["user", "reset-key", "alice", "--fingerprint", &fingerprint])
        .assert()
        .success()
        .stdout(predicate::str::contains("ended 1 session"));
    assert_eq!(
        old_listener.wait_exit(),
        Some(1),
        "the old key's session ends"
    );
    assert!(
        old_listener
            .rest_of_stderr()
            .iter()
            .any(|l| l.contains("the server closed the connection")),
        "{:?}",
        old_listener.seen_stderr
    );
    // The old key tries first: the binding leaves it no window to take the identity.
    let shut_out = world.fails("alice", &["friends", "list"]);
    assert!(stderr_of(&shut_out).contains("code 4"), "{shut_out:?}");
    world.device_succeeds("alice", "new-laptop", &["friends", "list"]);
}
