//! `vcom chat` driven through a real pseudo-terminal (80x24): keys go in, the output is
//! parsed by a terminal emulator (vt100) into a screen that the test reads.
//!
//! Uses a Rust pty crate rather than tmux or python, so it runs wherever the tests
//! build. Every wait is for text to appear on the screen, bounded by a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::Value;
use support::{TIMEOUT, VCOM, World};

/// A program running in a pseudo-terminal, its output parsed into a screen.
struct Terminal {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    updates: mpsc::Receiver<()>,
    // Dropping the master closes the terminal.
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Terminal {
    fn spawn(cmd: CommandBuilder) -> Terminal {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (tx, updates) = mpsc::channel();
        let (parser, log) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        parser.lock().unwrap().process(&buf[..n]);
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if tx.send(()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Terminal {
            child,
            writer,
            screen,
            raw,
            updates,
            _master: pair.master,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until `needle` is on the screen; returns the screen.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.contents();
            if screen.contains(needle) {
                return screen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} did not appear on the screen in time; the screen:\n{screen}"
            );
            self.pause(left);
        }
    }

    /// Waits for new output, at most `left`; once the output has ended, only briefly.
    fn pause(&self, left: Duration) {
        if let Err(mpsc::RecvTimeoutError::Disconnected) =
            self.updates.recv_timeout(left.min(Duration::from_secs(1)))
        {
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    /// Waits until the raw output contains `needle`.
    fn wait_raw(&self, needle: &[u8]) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self
                .raw
                .lock()
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{needle:?} never appeared in the output");
            self.pause(left);
        }
    }

    fn type_text(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the program to exit; returns its exit code.
    fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.exit_code();
            }
            assert!(
                Instant::now() < deadline,
                "the program did not exit in time; the screen:\n{}",
                self.contents()
            );
            self.pause(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chat(world: &World, user: &str) -> Terminal {
    let mut cmd = CommandBuilder::new(VCOM);
    cmd.args(world.args(user, user));
    cmd.arg("chat");
    cmd.arg("--dir");
    cmd.arg(world.path("downloads"));
    cmd.cwd(world.dir.path());
    cmd.env("HOME", world.dir.path());
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("XDG_CONFIG_HOME");
    cmd.env_remove("VCOM_PASSWORD");
    Terminal::spawn(cmd)
}

#[test]
fn chat_logs_in_sends_a_message_shows_the_reply_restores_the_terminal_and_shows_both_after_a_restart()
 {
    let world = World::new();
    world.register("bob");
    let mut bob = world.spawn("bob", &["listen", "--json"]);
    bob.wait_stderr("listening as bob");

    let mut alice = chat(&world, "alice");
    let screen = alice.wait_for("broadcasts");
    assert!(screen.contains("alice@127.0.0.1"), "{screen}");

    alice.type_text("/add bob\r");
    alice.wait_for("bob is now a friend");
    alice.type_text("hello bob\r");
    alice.wait_for("alice: hello bob");

    // Bob's listener got it through the server.
    let line: Value = serde_json::from_str(&bob.next_stdout()).unwrap();
    assert_eq!(line["sender"], "alice");
    assert_eq!(line["text"], "hello bob");
    drop(bob);

    // The reply, sent by another process, appears on alice's screen.
    world
        .vcom("bob")
        .args(["send", "alice", "hi alice"])
        .assert()
        .success();
    let screen = alice.wait_for("bob: hi alice");
    assert!(
        screen.contains("> bob"),
        "bob's conversation is shown:\n{screen}"
    );

    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
    // The terminal is restored: the alternate screen is left (the output may still be
    // on its way when the process has exited).
    alice.wait_raw(b"\x1b[?1049l");
    assert!(!alice.screen.lock().unwrap().screen().alternate_screen());
    drop(alice);

    // After a restart both sides come back from the history, alice's line once.
    let mut again = chat(&world, "alice");
    let screen = again.wait_for("bob: hi alice");
    assert_eq!(
        screen.matches("alice: hello bob").count(),
        1,
        "alice's own line is shown once:\n{screen}"
    );
    assert!(
        screen.find("alice: hello bob") < screen.find("bob: hi alice"),
        "{screen}"
    );
    again.type_text("/quit\r");
    assert_eq!(again.wait_exit(), 0);
}

#[test]
fn chat_shows_unread_counts_for_messages_in_other_conversations() {
    let world = World::new();
    world.register("bob");
    world.register("carol");
    world
        .vcom("alice")
        .args(["friends", "add", "bob"])
        .assert()
        .success();

    let mut alice = chat(&world, "alice");
    alice.wait_for("> bob");
    world
        .vcom("carol")
        .args(["send", "alice", "psst"])
        .assert()
        .success();
    alice.wait_for("carol (1)");
    // Tab to carol's conversation: the count goes, the message shows.
    alice.type_text("\t");
    let screen = alice.wait_for("carol: psst");
    assert!(!screen.contains("carol (1)"), "{screen}");

    // Ctrl-C quits cleanly too.
    alice.type_text("\x03");
    assert_eq!(alice.wait_exit(), 0);
}

#[test]
fn chat_refuses_to_start_without_a_terminal() {
    let world = World::new();
    let out = world.vcom("alice").arg("chat").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}
