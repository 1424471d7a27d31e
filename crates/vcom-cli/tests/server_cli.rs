//! The `vcom-server` program's contract (`DESIGN.md` section 7): the ready line, exit
//! codes, configuration errors, admin commands, and a graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_vcom-server");
const TIMEOUT: Duration = Duration::from_secs(30);

/// A `vcom-server serve` child process, killed if a test fails before stopping it.
struct Running {
    child: Child,
    ready: String,
}

impl Running {
    fn start(data_dir: &Path, extra: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(TIMEOUT)
            .expect("the ready line within the timeout");
        Running { child, ready }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin(data_dir: &Path) -> AssertCommand {
    let mut cmd = AssertCommand::new(BIN);
    cmd.arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .timeout(TIMEOUT);
    cmd
}

#[test]
fn serve_prints_one_ready_line_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Running::start(&data, &[]);
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
    let mode = std::fs::metadata(data.join("admin.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "admin.sock is private"
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
    let first = Running::start(dir.path(), &[]);
    let fp = |line: &str| line.split("cert-sha256=").nth(1).unwrap().trim().to_owned();
    let a = fp(&first.ready);
    assert_eq!(first.terminate().code(), Some(0));
    let second = Running::start(dir.path(), &[]);
    assert_eq!(fp(&second.ready), a);
    assert_eq!(second.terminate().code(), Some(0));
}

#[test]
fn a_bad_config_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "max_file_size = -5\n").unwrap();
    AssertCommand::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .timeout(TIMEOUT)
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            predicate::str::contains("bad.toml").and(predicate::str::contains("max_file_size")),
        );

    std::fs::write(dir.path().join("vcom.toml"), "no_such_key = 1\n").unwrap();
    AssertCommand::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .timeout(TIMEOUT)
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
    let server = Running::start(dir.path(), &[]);
    admin(dir.path())
        .args([
            "group", "create", "team", "--member", "alice", "--member", "bob",
        ])
        .assert()
        .success()
        .stdout("1\n");
    admin(dir.path())
        .args(["group", "add", "1", "carol"])
        .assert()
        .success();
    admin(dir.path())
        .args(["group", "remove", "1", "bob"])
        .assert()
        .success();
    admin(dir.path())
        .args(["blacklist", "add", "ip", "10.0.0.0/8"])
        .assert()
        .success();
    admin(dir.path())
        .args(["blacklist", "add", "user", "mallory"])
        .assert()
        .success();
    admin(dir.path())
        .args(["whitelist", "add", "user", "alice"])
        .assert()
        .success();
    admin(dir.path())
        .args(["whitelist", "remove", "user", "alice"])
        .assert()
        .success();
    admin(dir.path())
        .args(["blacklist", "add", "ip", "not-an-ip"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not-an-ip"));
    admin(dir.path())
        .args(["broadcast", "hello everyone"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 device"));
    admin(dir.path()).args(["user", "list"]).assert().success();
    admin(dir.path())
        .args(["user", "reset-key", "ghost"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown user"));
    admin(dir.path())
        .arg("sessions")
        .assert()
        .success()
        .stdout("");
    admin(dir.path())
        .arg("stats")
        .assert()
        .success()
        .stdout(predicate::str::contains("online_sessions 0"));
    assert_eq!(server.terminate().code(), Some(0));

    let server = Running::start(dir.path(), &[]);
    admin(dir.path())
        .args(["group", "list"])
        .assert()
        .success()
        .stdout("1\tteam\talice,carol\n");
    admin(dir.path())
        .args(["blacklist", "list"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("ip 10.0.0.0/8").and(predicate::str::contains("user mallory")),
        );
    admin(dir.path())
        .args(["whitelist", "list"])
        .assert()
        .success()
        .stdout("");
    admin(dir.path())
        .args(["--json", "stats"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("{\"ok\":true"));
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Running::start(dir.path(), &[]);
    AssertCommand::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .timeout(TIMEOUT)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("another vcom-server"));
    assert_eq!(first.terminate().code(), Some(0));
}
