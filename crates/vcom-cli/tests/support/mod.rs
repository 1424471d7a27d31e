//! Test support for the `vcom` program: a real `vcom-server` child process on a free
//! port with its own data directory, `vcom` commands bound to it, and long-running
//! `vcom` processes whose output is read line by line with a deadline.
//!
//! Every wait is bounded by [`TIMEOUT`] and waits for an event (a line, an exit), never
//! for a fixed time. A failed expectation here is a failed test, so it panics.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use assert_cmd::assert::Assert;
use serde_json::Value;

pub const VCOM: &str = env!("CARGO_BIN_EXE_vcom");
pub const SERVER: &str = env!("CARGO_BIN_EXE_vcom-server");
/// The bound on every wait: generous, so a busy 2-core machine does not fail tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// `vcom-server serve --listen 127.0.0.1:0 --data-dir DATA`, bounded by [`TIMEOUT`], for
/// runs that are expected to fail.
pub fn serve_command(data: &Path) -> AssertCommand {
    let mut cmd = AssertCommand::new(SERVER);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .timeout(TIMEOUT);
    cmd
}

/// `vcom-server admin --data-dir DATA ...`, bounded by [`TIMEOUT`].
pub fn admin(data: &Path) -> AssertCommand {
    let mut cmd = AssertCommand::new(SERVER);
    cmd.arg("admin")
        .arg("--data-dir")
        .arg(data)
        .timeout(TIMEOUT);
    cmd
}

/// `vcom-server admin --data-dir DATA ARGS`, which must succeed; chain further checks.
pub fn admin_succeeds(data: &Path, args: &[&str]) -> Assert {
    admin(data).args(args).assert().success()
}

/// Polls (every 20 ms) until `child` exits and returns how; fails with `what` after
/// [`TIMEOUT`].
fn wait_for_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `vcom-server serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    /// The ready line exactly as printed, newline included.
    pub ready: String,
    pub addr: String,
    pub fingerprint: String,
    pub data: PathBuf,
}

impl Server {
    /// Starts a server on 127.0.0.1:0 with `data` as its data directory and waits for its
    /// ready line; `config` is written to `data/vcom.toml` first when given (otherwise the
    /// server creates `data` itself).
    pub fn start(data: &Path, config: Option<&str>) -> Server {
        Self::start_logging_to(data, config, Stdio::null())
    }

    /// [`Server::start`] with the server's stderr (its log) going to `log`.
    pub fn start_logging_to(data: &Path, config: Option<&str>, log: Stdio) -> Server {
        Self::start_logging_at(data, config, log, &[], &[])
    }

    /// [`Server::start_logging_to`] with `env` added to the server's environment, and
    /// `extra` arguments after `serve`'s own.
    pub fn start_logging_at(
        data: &Path,
        config: Option<&str>,
        log: Stdio,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Server {
        if let Some(config) = config {
            std::fs::create_dir_all(data).unwrap();
            std::fs::write(data.join("vcom.toml"), config).unwrap();
        }
        let mut command = Command::new(SERVER);
        // The developer's own `vcom` password must not become the test server's.
        command
            .env_remove("VCOM_PASSWORD")
            .envs(env.iter().copied());
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("the server prints its ready line in time");
        let (addr, fingerprint) = parse_ready(&line);
        Server {
            child,
            ready: line,
            addr,
            fingerprint,
            data: data.to_owned(),
        }
    }

    /// `vcom-server admin --data-dir DATA ...`.
    pub fn admin(&self) -> AssertCommand {
        admin(&self.data)
    }

    /// Sends SIGTERM and waits (at most [`TIMEOUT`]) for the server to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_for_exit(&mut self.child, "the server did not exit after SIGTERM")
    }

    /// Kills the server with SIGKILL (no shutdown at all) and waits for it to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Creates a group with these members and returns its identifier.
    pub fn create_group(&self, name: &str, members: &[&str]) -> i32 {
        let mut cmd = self.admin();
        cmd.args(["group", "create", name]);
        for member in members {
            cmd.args(["--member", member]);
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        String::from_utf8(out)
            .unwrap()
            .trim()
            .parse()
            .expect("`group create` prints the group id")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vcom-server ready addr=IP:PORT cert-sha256=HEX` -> (address, fingerprint).
fn parse_ready(line: &str) -> (String, String) {
    let rest = line
        .trim_end()
        .strip_prefix("vcom-server ready addr=")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let (addr, fingerprint) = rest
        .split_once(" cert-sha256=")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    (addr.to_owned(), fingerprint.to_owned())
}

/// One test's world: a temporary directory holding the server's data and the users'
/// profiles, and the running server.
pub struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

impl World {
    pub fn new() -> World {
        Self::with_config(None)
    }

    pub fn with_config(config: Option<&str>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("server"), config);
        World { dir, server }
    }

    /// A world whose server logs to `log`.
    pub fn logging_to(log: Stdio) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_logging_to(&dir.path().join("server"), None, log);
        World { dir, server }
    }

    /// The profile directory named `name` (one per user, or per device).
    pub fn profile(&self, name: &str) -> PathBuf {
        self.dir.path().join("profiles").join(name)
    }

    /// A path in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `vcom --server ADDR --user USER --profile profiles/USER`.
    pub fn vcom(&self, user: &str) -> AssertCommand {
        self.vcom_device(user, user)
    }

    /// `vcom` for `user` with the profile named `profile` (a second device).
    pub fn vcom_device(&self, user: &str, profile: &str) -> AssertCommand {
        let mut cmd = AssertCommand::new(VCOM);
        cmd.args(self.args(user, profile))
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("VCOM_PASSWORD")
            .timeout(TIMEOUT);
        cmd
    }

    /// The connection arguments of `vcom` for `user` with profile `profile`.
    pub fn args(&self, user: &str, profile: &str) -> Vec<String> {
        vec![
            "--server".into(),
            self.server.addr.clone(),
            "--user".into(),
            user.into(),
            "--profile".into(),
            self.profile(profile).display().to_string(),
        ]
    }

    /// Runs `vcom ARGS` as `user` and asserts that it succeeds; chain further checks on
    /// the result.
    pub fn succeeds(&self, user: &str, args: &[&str]) -> Assert {
        self.vcom(user).args(args).assert().success()
    }

    /// Runs `vcom ARGS` as `user` and asserts that it exits 1 (a runtime failure).
    pub fn fails(&self, user: &str, args: &[&str]) -> Assert {
        self.vcom(user).args(args).assert().code(1)
    }

    /// Runs `vcom ARGS` as `user` from the profile `profile` (another device) and asserts
    /// that it succeeds.
    pub fn device_succeeds(&self, user: &str, profile: &str, args: &[&str]) -> Assert {
        self.vcom_device(user, profile)
            .args(args)
            .assert()
            .success()
    }

    /// `vcom send TO TEXT` as `from`, which must succeed.
    pub fn send(&self, from: &str, to: &str, text: &str) -> Assert {
        self.succeeds(from, &["send", to, text])
    }

    /// `vcom history FILTER... --json` as `user`: one JSON object per history entry.
    pub fn history_json(&self, user: &str, filter: &[&str]) -> Vec<Value> {
        let mut args = vec!["history"];
        args.extend_from_slice(filter);
        args.push("--json");
        json_lines(&stdout_of(&self.succeeds(user, &args)))
    }

    /// Writes `contents` to the file `name` in the test's directory and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Starts `vcom receive --dir DOWNLOADS EXTRA...` for `user` and waits until it says
    /// it is waiting for files.
    pub fn receiver(&self, user: &str, downloads: &Path, extra: &[&str]) -> Spawned {
        let mut args = vec!["receive", "--dir", downloads.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut receiver = self.spawn(user, &args);
        receiver.wait_stderr("waiting for files");
        receiver
    }

    /// Starts `vcom listen --json` for `user` and waits until it says it is listening.
    pub fn json_listener(&self, user: &str) -> Spawned {
        let mut listener = self.spawn(user, &["listen", "--json"]);
        listener.wait_stderr(&format!("listening as {user}"));
        listener
    }

    /// Logs `user` in once, so that the server knows the user (messages to unknown
    /// users are dropped).
    pub fn register(&self, user: &str) {
        self.vcom(user).args(["friends", "list"]).assert().success();
    }

    /// Starts a long-running `vcom` command (`listen`, `receive`) for `user`.
    pub fn spawn(&self, user: &str, args: &[&str]) -> Spawned {
        let mut cmd = Command::new(VCOM);
        cmd.args(self.args(user, user))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("VCOM_PASSWORD");
        Spawned::start(cmd)
    }
}

/// A running process whose stdout and stderr are read line by line by two threads.
pub struct Spawned {
    pub child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// stderr lines seen so far, for failure messages.
    pub seen_stderr: Vec<String>,
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Spawned {
    pub fn start(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Spawned {
            child,
            stdout,
            stderr,
            seen_stderr: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen_stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line containing {needle:?} in time; stderr so far: {:?}",
                    self.seen_stderr
                ),
            }
        }
    }

    /// Waits for the next stdout line.
    pub fn next_stdout(&mut self) -> String {
        match self.stdout.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                while let Ok(line) = self.stderr.try_recv() {
                    self.seen_stderr.push(line);
                }
                panic!("no stdout line in time; stderr: {:?}", self.seen_stderr)
            }
        }
    }

    /// Waits (at most [`TIMEOUT`]) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        wait_for_exit(&mut self.child, "the process did not exit in time").code()
    }

    /// Every stderr line, after the process has exited.
    pub fn rest_of_stderr(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.recv_timeout(TIMEOUT) {
            self.seen_stderr.push(line);
        }
        self.seen_stderr.clone()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stdout of a finished command as text.
pub fn stdout_of(assert: &Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// The stderr of a finished command as text.
pub fn stderr_of(assert: &Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// Parses one JSON value per line of `text` (the `--json` output of `vcom`).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}
