//! The `vcom-server` program's contract (the README's contract): the ready line, exit
//! codes, configuration errors, admin commands, and a graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use assert_cmd::Command as AssertCommand;
use predicates::prelude::*;
use support::{SERVER as BIN, Server, TIMEOUT, World, admin, admin_succeeds, serve_command};

#[test]
fn serve_prints_one_ready_line_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, None);
    let re = regex_lite(&server.ready);
    assert!(re, "unexpected ready line {:?}", server.ready);
    assert!(
        data.join("vcom.sqlite3").exists(),
        "the database is in the data directory"
    );
    assert!(
        data.join("tls/cert.pem").exists(),
        "the generated certificate is in the data directory"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&data.join("admin.sock")),
        0o600,
        "admin.sock is private"
    );
    assert_eq!(mode(&data), 0o700, "the data directory is private");
    assert_eq!(
        mode(&data.join("vcom.sqlite3")),
        0o600,
        "the database (messages) is private"
    );
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
}

/// `vcom-server ready addr=127.0.0.1:PORT cert-sha256=<64 hex>` and a newline.
fn regex_lite(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("vcom-server ready addr=127.0.0.1:") else {
        return false;
    };
    let Some((port, rest)) = rest.split_once(" cert-sha256=") else {
        return false;
    };
    let hex = rest.trim_end_matches('\n');
    port.parse::<u16>().is_ok_and(|p| p > 0)
        && hex.len() == 64
        && hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && rest.ends_with('\n')
}

#[test]
fn the_certificate_fingerprint_is_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), None);
    let fp = |line: &str| line.split("cert-sha256=").nth(1).unwrap().trim().to_owned();
    let a = fp(&first.ready);
    assert_eq!(first.terminate().code(), Some(0));
    let second = Server::start(dir.path(), None);
    assert_eq!(fp(&second.ready), a);
    assert_eq!(second.terminate().code(), Some(0));
}

#[test]
fn a_bad_config_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "max_file_size = -5\n").unwrap();
    serve_command(dir.path())
        .arg("--config")
        .arg(&config)
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            predicate::str::contains("bad.toml").and(predicate::str::contains("max_file_size")),
        );

    std::fs::write(dir.path().join("vcom.toml"), "no_such_key = 1\n").unwrap();
    serve_command(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no_such_key"));
}

#[test]
fn bad_usage_exits_2() {
    AssertCommand::new(BIN)
        .arg("frobnicate")
        .timeout(TIMEOUT)
        .assert()
        .code(2);
    AssertCommand::new(BIN)
        .args(["serve", "--listen", "not-an-address"])
        .timeout(TIMEOUT)
        .assert()
        .code(2);
}

#[test]
fn admin_without_a_running_server_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    admin(dir.path())
        .arg("stats")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no vcom-server is running"));
}

#[test]
fn admin_commands_work_against_a_running_server_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    admin_succeeds(
        dir.path(),
        &[
            "group", "create", "team", "--member", "alice", "--member", "bob",
        ],
    )
    .stdout("1\n");
    admin_succeeds(dir.path(), &["group", "add", "1", "carol"]);
    admin_succeeds(dir.path(), &["group", "remove", "1", "bob"]);
    admin_succeeds(dir.path(), &["blacklist", "add", "ip", "10.0.0.0/8"]);
    admin_succeeds(dir.path(), &["blacklist", "add", "user", "mallory"]);
    admin_succeeds(dir.path(), &["whitelist", "add", "user", "alice"]);
    admin_succeeds(dir.path(), &["whitelist", "remove", "user", "alice"]);
    // A malformed argument is bad usage (2); naming something unknown is a failure (1).
    admin(dir.path())
        .args(["blacklist", "add", "ip", "not-an-ip"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not-an-ip"));
    admin(dir.path())
        .args(["group", "add", "999", "alice"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("999").and(predicate::str::contains("not found")));
    admin_succeeds(dir.path(), &["broadcast", "hello everyone"])
        .stdout(predicate::str::contains("0 device"));
    admin_succeeds(dir.path(), &["user", "list"]);
    admin(dir.path())
        .args(["user", "reset-key", "ghost"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown user"));
    admin_succeeds(dir.path(), &["sessions"]).stdout("");
    admin_succeeds(dir.path(), &["stats"]).stdout(predicate::str::contains("online_sessions 0"));
    assert_eq!(server.terminate().code(), Some(0));

    let server = Server::start(dir.path(), None);
    admin_succeeds(dir.path(), &["group", "list"]).stdout("1\tteam\talice,carol\n");
    admin_succeeds(dir.path(), &["blacklist", "list"]).stdout(
        predicate::str::contains("ip 10.0.0.0/8").and(predicate::str::contains("user mallory")),
    );
    admin_succeeds(dir.path(), &["whitelist", "list"]).stdout("");
    admin_succeeds(dir.path(), &["--json", "stats"])
        .stdout(predicate::str::starts_with("{\"ok\":true"));
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn reset_key_with_a_malformed_fingerprint_is_bad_usage_and_changes_nothing() {
    let world = World::new();
    world.register("alice");
    for bad in ["abc", &"g".repeat(64), &"ab".repeat(33)] {
        world
            .server
            .admin()
            .args(["user", "reset-key", "alice", "--fingerprint", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("not a key fingerprint"));
    }
    world.succeeds("alice", &["friends", "list"]);
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), None);
    serve_command(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("another vcom-server"));
    assert_eq!(first.terminate().code(), Some(0));
}

#[test]
fn a_broken_stderr_neither_stops_logins_nor_sigterm() {
    // The log goes to a pipe whose reading end is already closed: every log line fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let world = support::World::logging_to(writer.into());
    world.succeeds("alice", &["friends", "list"]);
    world.succeeds("bob", &["friends", "list"]);
    let status = world.server.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM still stops the server cleanly"
    );
}

#[test]
fn max_pending_logins_of_zero_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for value in ["0", "9223372036854775807"] {
        std::fs::write(
            data.join("vcom.toml"),
            format!("max_pending_logins = {value}\n"),
        )
        .unwrap();
        serve_command(&data)
            .timeout(TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("max_pending_logins"));
    }
}

/// The log, at its most detailed, names users and what happened but never a message's
/// text or the server password (`docs/security.md`: the operator's log is not a copy of
/// the conversations).
#[test]
fn the_log_at_trace_level_holds_no_message_text_and_no_password() {
    const PASSWORD: &str = "pw-SECRET-7731";
    const TEXT: &str = "body-SECRET-4410";
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = support::Server::start_logging_at(
        &dir.path().join("server"),
        Some(&format!("password = \"{PASSWORD}\"\n")),
        log.into(),
        &[("RUST_LOG", "trace")],
        &[],
    );
    let world = support::World { dir, server };
    for user in ["alice", "bob"] {
        world
            .vcom(user)
            .args(["--password", PASSWORD, "friends", "list"])
            .assert()
            .success();
    }
    world
        .vcom("alice")
        .args(["--password", PASSWORD, "send", "bob", TEXT])
        .assert()
        .success();
    // A one-shot command logs bob in: what waits for him lands in his history.
    world
        .vcom("bob")
        .args(["--password", PASSWORD, "friends", "list"])
        .assert()
        .success();
    let received = world
        .vcom("bob")
        .args(["--password", PASSWORD, "history", "--json"])
        .assert()
        .success();
    assert!(support::stdout_of(&received).contains(TEXT), "bob got it");
    let status = world.server.terminate();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("alice") && log.contains("bob"),
        "the log is written: {log}"
    );
    assert!(!log.contains(TEXT), "a message's text is in the log");
    assert!(!log.contains(PASSWORD), "the password is in the log");
}

/// `admin backup FILE` copies a running server's data; `restore FILE` puts it back into
/// the stopped server's data directory (refused while one runs), and the server started
/// on it has exactly what the backup had: the users, and the message still waiting.
#[test]
fn a_backup_of_a_running_server_restores_into_its_data_directory() {
    let world = support::World::new();
    let data = world.server.data.clone();
    world.register("alice");
    world.register("bob");
    world.send("alice", "bob", "kept in the backup");
    let backup = world.path("vcom-backup.sqlite3");
    admin_succeeds(&data, &["backup", backup.to_str().unwrap()]).stdout(
        predicate::str::contains("backup written").and(predicate::str::contains("2 users")),
    );
    admin(&data)
        .args(["backup", backup.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("never overwrites"));
    world.register("carol");
    AssertCommand::new(BIN)
        .args(["restore", backup.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("stop it before restoring"));

    let support::World { dir, server } = world;
    assert_eq!(server.terminate().code(), Some(0));
    AssertCommand::new(BIN)
        .args(["restore", backup.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .assert()
        .success()
        .stdout(predicate::str::contains("2 users").and(predicate::str::contains("kept as")));
    let world = support::World {
        dir,
        server: Server::start(&data, None),
    };
    admin_succeeds(&data, &["user", "list"])
        .stdout(predicate::str::contains("alice").and(predicate::str::contains("carol").not()));
    world.succeeds("bob", &["friends", "list"]);
    let history = world.history_json("bob", &[]);
    assert!(
        history
            .iter()
            .any(|m| m["text"].as_str() == Some("kept in the backup")),
        "{history:?}"
    );
    assert_eq!(world.server.terminate().code(), Some(0));
}

/// Admin connections are bounded like any other: at most 16 at once (the next is told
/// why and closed), and one that sends nothing is closed after `login_timeout_secs`;
/// then commands work again.
#[test]
fn admin_connections_are_bounded_in_number_and_time() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some("login_timeout_secs = 3\n"));
    let socket = dir.path().join("admin.sock");
    let idle: Vec<std::os::unix::net::UnixStream> = (0..16)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    let extra = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    extra.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(extra).read_line(&mut line).unwrap();
    assert!(line.contains("too many admin connections"), "{line}");
    for mut stream in idle {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut rest = Vec::new();
        // The server closes it (end of stream), well before the read timeout.
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    }
    admin_succeeds(dir.path(), &["stats"]).stdout(predicate::str::contains("online_sessions 0"));
    assert_eq!(server.terminate().code(), Some(0));
}

/// `--log-format json`: every line on stderr is one JSON object with the time, the
/// level and the fields, for a log collector.
#[test]
fn the_json_log_format_writes_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = support::Server::start_logging_at(
        &dir.path().join("server"),
        None,
        log.into(),
        &[],
        &["--log-format", "json"],
    );
    let world = support::World { dir, server };
    world.register("alice");
    assert_eq!(world.server.terminate().code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["user"].as_str() == Some("alice")),
        "a login names its user: {log}"
    );
}

/// The layers through the program: the environment goes over the file (a file whose
/// `max_connections = 0` would stop the server starts with `VCOM_MAX_CONNECTIONS=10`),
/// and the flags over the environment (`--listen` wins over a `VCOM_LISTEN` the machine
/// cannot bind). An unknown `VCOM_` variable is a warning, not an error.
#[test]
fn the_environment_goes_over_the_file_and_the_flags_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("vcom.toml"), "max_connections = 0\n").unwrap();
    serve_command(&data)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("max_connections"));
    let log_path = dir.path().join("server.log");
    let server = Server::start_logging_at(
        &data,
        None,
        std::fs::File::create(&log_path).unwrap().into(),
        &[
            ("VCOM_MAX_CONNECTIONS", "10"),
            ("VCOM_LISTEN", "203.0.113.1:7420"),
            ("VCOM_NOT_A_KEY", "1"),
        ],
        &[],
    );
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    assert_eq!(server.terminate().code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("VCOM_NOT_A_KEY names no configuration key"),
        "{log}"
    );
    serve_command(&data)
        .env("VCOM_MAX_CONNECTIONS", "many")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("VCOM_MAX_CONNECTIONS"));
}

/// `config example` prints a file every key of which is documented with its variable;
/// `check` says what it found, line by line: 0 when the server can start, 2 for an
/// invalid configuration, 1 for a certificate that is not there.
#[test]
fn config_example_and_check() {
    let example = AssertCommand::new(BIN)
        .args(["config", "example"])
        .assert()
        .success();
    let text = support::stdout_of(&example);
    assert!(text.contains("#max_message_len = 1048576"), "{text}");
    assert!(text.contains("VCOM_LIMITS__MAX_MESSAGE_LEN"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let check = |config: Option<&str>| {
        if let Some(config) = config {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("vcom.toml"), config).unwrap();
        }
        let mut cmd = AssertCommand::new(BIN);
        cmd.args(["check", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .timeout(TIMEOUT);
        cmd.assert()
    };
    check(None)
        .success()
        .stdout(predicate::str::contains("ok      configuration: valid"))
        .stdout(predicate::str::contains("will be generated"));
    check(Some("write_timeout_secs = 0\n"))
        .code(2)
        .stderr(predicate::str::contains("write_timeout_secs"));
    check(Some(
        "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
    ))
    .code(1)
    .stdout(
        predicate::str::contains("error   tls")
            .and(predicate::str::contains("/nonexistent/cert.pem")),
    );
    assert!(!data.join("vcom.sqlite3").exists(), "check creates nothing");
}

/// Every admin command, as text and as JSON (`--json`: the typed reply, one object a
/// line), including the user and group commands: `user add` ahead of a first login with
/// `registration = "closed"`, `user show`, `group show`, and `user remove`, which
/// deletes the user and everything of theirs and ends their sessions.
#[test]
fn every_admin_command_answers_as_text_and_as_json() {
    let world = World::with_config(Some("registration = \"closed\"\n"));
    let data = world.server.data.clone();
    let text = |args: &[&str]| support::stdout_of(&admin_succeeds(&data, args));
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = support::stdout_of(&admin_succeeds(&data, &all));
        let value: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(value["ok"], true, "{out}");
        value["reply"].clone()
    };

    // Closed registration: only users the administrator added may log in.
    world.fails("alice", &["friends", "list"]);
    assert!(text(&["user", "add", "alice"]).contains("added alice"));
    assert_eq!(json(&["user", "add", "bob"])["reply"], "user-added");
    admin(&data)
        .args(["user", "add", "bob"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    world.succeeds("alice", &["friends", "list"]);
    world.succeeds("bob", &["friends", "list"]);

    let users = json(&["user", "list"]);
    assert_eq!(users["reply"], "users");
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    assert!(text(&["user", "list"]).starts_with("alice\tkey="));
    let alice = json(&["user", "show", "alice"]);
    assert_eq!(alice["reply"], "user");
    assert_eq!(alice["devices"].as_array().unwrap().len(), 1);
    assert!(
        alice["key"].is_string(),
        "the first login bound a key: {alice}"
    );
    assert!(text(&["user", "show", "alice"]).contains("device "));

    assert_eq!(
        text(&[
            "group", "create", "team", "--member", "alice", "--member", "bob"
        ]),
        "1\n"
    );
    assert_eq!(json(&["group", "create", "other"])["id"], 2);
    let team = json(&["group", "show", "1"]);
    assert_eq!(team["reply"], "group");
    assert_eq!(team["members"], serde_json::json!(["alice", "bob"]));
    assert!(text(&["group", "show", "1"]).contains("members\talice,bob"));
    assert_eq!(json(&["group", "add", "2", "alice"])["changed"], true);
    assert_eq!(json(&["group", "remove", "2", "alice"])["changed"], true);
    assert_eq!(
        json(&["group", "list"])["groups"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        json(&["blacklist", "add", "ip", "203.0.113.0/24"])["changed"],
        true
    );
    assert_eq!(
        json(&["blacklist", "list"])["entries"],
        serde_json::json!(["ip 203.0.113.0/24"])
    );
    assert_eq!(
        json(&["blacklist", "remove", "ip", "203.0.113.0/24"])["changed"],
        true
    );
    assert_eq!(
        json(&["whitelist", "list"])["entries"],
        serde_json::json!([])
    );
    assert_eq!(json(&["broadcast", "hello"])["devices"], 0);
    assert_eq!(json(&["sessions"])["sessions"], serde_json::json!([]));
    let stats = json(&["stats"]);
    assert!(
        stats["counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c[0] == "stored_users" && c[1] == 2),
        "{stats}"
    );
    assert_eq!(json(&["user", "reset-key", "bob"])["reply"], "key-reset");
    let backup = world.path("backup.sqlite3");
    assert_eq!(json(&["backup", backup.to_str().unwrap()])["users"], 2);

    // Removing alice: gone from the users and the group, and she can no longer log in.
    let removed = json(&["user", "remove", "alice"]);
    assert_eq!(removed["reply"], "user-removed");
    assert_eq!(
        json(&["group", "show", "1"])["members"],
        serde_json::json!(["bob"])
    );
    admin(&data)
        .args(["user", "show", "alice"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown user alice"));
    world.fails("alice", &["friends", "list"]);
    assert_eq!(world.server.terminate().code(), Some(0));
}

/// `registration = "token"`: a new user logs in only with an invitation from `admin
/// invite create`, sent where the server password goes, while known users log in with
/// the password as ever; an invitation admits as many new users as its uses.
#[test]
fn with_token_registration_new_users_need_an_invitation() {
    let world = World::with_config(Some("registration = \"token\"\npassword = \"pw\"\n"));
    let data = world.server.data.clone();
    let created = admin_succeeds(
        &data,
        &[
            "--json",
            "invite",
            "create",
            "--uses",
            "2",
            "--expires",
            "1h",
        ],
    );
    let reply: serde_json::Value =
        serde_json::from_str(support::stdout_of(&created).trim()).unwrap();
    let token = reply["reply"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32);
    assert_eq!(reply["reply"]["uses"], 2);
    let invites = support::stdout_of(&admin_succeeds(&data, &["invite", "list"]));
    assert!(invites.contains("uses_left=2"), "{invites}");
    assert!(
        !invites.contains(&token),
        "a token is never listed: {invites}"
    );

    let login = |user: &str, password: &str| {
        world
            .vcom(user)
            .args(["--password", password, "friends", "list"])
            .assert()
    };
    login("carol", "")
        .code(1)
        .stderr(predicate::str::contains("7"));
    login("alice", &token).success();
    login("alice", "pw").success();
    login("bob", &token).success();
    login("carol", &token)
        .code(1)
        .stderr(predicate::str::contains("7"));
    login("carol", "pw")
        .code(1)
        .stderr(predicate::str::contains("7"));
    assert_eq!(
        support::stdout_of(&admin_succeeds(&data, &["invite", "list"])),
        "",
        "used up"
    );
    admin(&data)
        .args(["invite", "create", "--expires", "soon"])
        .assert()
        .code(2);
    assert_eq!(world.server.terminate().code(), Some(0));
}

/// The log's level comes from the configuration's `log` (RUST_LOG, when set, wins); a
/// filter that does not parse stops the server like any bad value.
#[test]
fn the_log_level_comes_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let log_path = dir.path().join("server.log");
    let server = Server::start_logging_at(
        &data,
        Some("log = \"warn\"\n"),
        std::fs::File::create(&log_path).unwrap().into(),
        &[("RUST_LOG", "")],
        &[],
    );
    let world = World { dir, server };
    world.register("alice");
    assert_eq!(world.server.terminate().code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("login accepted"), "info lines at warn: {log}");
    std::fs::write(data.join("vcom.toml"), "log = \"info,[\"\n").unwrap();
    serve_command(&data)
        .env("RUST_LOG", "")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`log`"));
}
