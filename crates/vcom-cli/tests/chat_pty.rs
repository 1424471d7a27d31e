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
use support::{TIMEOUT, VCOM, World, stdout_of};

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
    chat_with(world, user, &[])
}

/// `vcom chat` with more options.
fn chat_with(world: &World, user: &str, options: &[&str]) -> Terminal {
    let mut cmd = CommandBuilder::new(VCOM);
    cmd.args(world.args(user, user));
    cmd.arg("chat");
    cmd.args(options);
    cmd.arg("--dir");
    cmd.arg(world.path("downloads"));
    cmd.cwd(world.dir.path());
    cmd.env("HOME", world.dir.path());
    cmd.env("TERM", "xterm-256color");
    cmd.env("TZ", "UTC");
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

/// Keys as the terminal sends them.
const PAGE_UP: &str = "\x1b[5~";
const HOME: &str = "\x1b[H";
const END: &str = "\x1b[F";
const ESC: &str = "\x1b";
const CTRL_P: &str = "\x10";

/// Writes `n` messages from bob, `message 1` to `message n`, into `user`'s history, as
/// if received earlier.
fn fill_history(world: &World, user: &str, n: usize) {
    let path = world.profile(user).join("history.sqlite3");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let history = vcom_client::History::open(path).await.unwrap();
        for i in 1..=n {
            history
                .record(vcom_client::NewEntry {
                    sender: vcom_client::UserId::new("bob").unwrap(),
                    group: None,
                    sent_at: vcom_client::Timestamp(1_714_564_800_000 + i as i64 * 1000),
                    kind: vcom_client::MessageKind::Text,
                    data: format!("message {i}").into_bytes().into(),
                    read: true,
                })
                .await
                .unwrap();
        }
    });
}

#[test]
fn chat_marks_each_sent_line_stored_or_refused_and_keeps_the_marks_after_a_restart() {
    let world = World::new();
    world.register("bob");
    world.succeeds("alice", &["friends", "add", "bob"]);

    let mut alice = chat(&world, "alice");
    alice.wait_for("> bob");
    alice.type_text("hello bob\r");
    alice.wait_for("alice: hello bob  ✓ stored");
    alice.type_text("/group 4242\r");
    alice.wait_for("to group 4242");
    alice.type_text("anyone?\r");
    alice.wait_for("alice: anyone?  ✗ refused: no such group");
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
    drop(alice);

    // The marks come from the history after a restart, and `vcom history` shows them.
    let mut again = chat(&world, "alice");
    again.wait_for("alice: hello bob  ✓ stored");
    again.type_text("/quit\r");
    assert_eq!(again.wait_exit(), 0);
    let history = stdout_of(&world.succeeds("alice", &["history"]));
    assert!(
        history.contains("alice -> bob: hello bob [✓ stored]"),
        "{history}"
    );
    assert!(
        history.contains("alice -> group 4242: anyone? [✗ refused: no such group"),
        "{history}"
    );
}

#[test]
fn chat_scrolls_back_through_the_whole_history_and_finds_text_in_it() {
    let world = World::new();
    world.register("alice");
    // More than one page (200) of the history.
    fill_history(&world, "alice", 300);

    let mut alice = chat(&world, "alice");
    alice.wait_for("bob: message 300");
    alice.type_text(PAGE_UP);
    let screen = alice.wait_for("newer: End");
    assert!(!screen.contains("message 300"), "{screen}");
    assert!(screen.contains("message 280"), "{screen}");

    // Home reads back to the first message, past the first page.
    alice.type_text(HOME);
    let screen = alice.wait_for("bob: message 1 ");
    assert!(screen.contains("Wed 2024-05-01"), "the date row:\n{screen}");
    alice.type_text(END);
    let screen = alice.wait_for("bob: message 300");
    assert!(!screen.contains("newer: End"), "{screen}");

    // Two matches: the newest is shown first, Ctrl-P goes to the older one, which is
    // not in the page read at start.
    alice.type_text("/find MESSAGE 29\r");
    alice.wait_for("match 11 of 11");
    alice.type_text(CTRL_P);
    alice.wait_for("match 10 of 11");
    for _ in 0..9 {
        alice.type_text(CTRL_P);
    }
    let screen = alice.wait_for("match 1 of 11");
    assert!(screen.contains("bob: message 29 "), "{screen}");
    // Esc ends the search; a second Esc quits.
    alice.type_text(ESC);
    alice.wait_for("Tab: switch");
    alice.type_text(ESC);
    assert_eq!(alice.wait_exit(), 0);
}

#[test]
fn chat_keeps_unread_counts_across_restarts_until_the_conversation_is_shown() {
    let world = World::new();
    world.register("carol");
    world.succeeds("alice", &["friends", "add", "bob"]);
    world.send("carol", "alice", "psst");

    let mut alice = chat(&world, "alice");
    alice.wait_for("carol (1)");
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
    drop(alice);

    let mut alice = chat(&world, "alice");
    alice.wait_for("carol (1)");
    alice.type_text("\t");
    alice.wait_for("carol: psst");
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
    drop(alice);

    let mut alice = chat(&world, "alice");
    let screen = alice.wait_for("> bob");
    assert!(screen.contains("carol"), "{screen}");
    assert!(
        !screen.contains("carol (1)"),
        "read before the restart:\n{screen}"
    );
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
}

#[test]
fn chat_sends_a_file_with_send_and_says_when_it_is_sent() {
    let world = World::new();
    world.register("bob");
    world.succeeds("alice", &["friends", "add", "bob"]);
    let downloads = world.path("bob-downloads");
    let mut receiver = world.receiver("bob", &downloads, &["--accept-all", "--once"]);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = world.file("notes.bin", &data);

    let mut alice = chat(&world, "alice");
    alice.wait_for("> bob");
    alice.type_text(&format!("/send {}\r", file.display()));
    alice.wait_for("sent notes.bin to bob");
    let saved = receiver.next_stdout();
    assert!(saved.starts_with("saved "), "{saved:?}");
    assert_eq!(std::fs::read(downloads.join("notes.bin")).unwrap(), data);
    alice.type_text("/help\r");
    alice.wait_for("/send PATH");
    alice.type_text("x");
    let screen = alice.wait_for("No messages yet");
    assert!(
        !screen.contains("/send PATH"),
        "the help is closed:\n{screen}"
    );
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
}

#[test]
fn with_notify_bell_a_message_in_a_conversation_not_on_screen_rings_the_bell() {
    let world = World::new();
    world.register("carol");
    world.succeeds("alice", &["friends", "add", "bob"]);

    let mut alice = chat_with(&world, "alice", &["--notify", "bell"]);
    alice.wait_for("> bob");
    assert!(
        !alice.raw.lock().unwrap().contains(&0x07),
        "no bell before a message"
    );
    world.send("carol", "alice", "psst");
    alice.wait_for("carol (1)");
    alice.wait_raw(b"\x07");
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
}

#[test]
fn chat_lists_a_group_by_its_name() {
    let world = World::new();
    world.register("bob");
    let created = stdout_of(&world.succeeds(
        "alice",
        &["groups", "create", "Café crew", "--member", "bob"],
    ));
    let gid = created.trim().to_owned();

    let mut bob = chat(&world, "bob");
    bob.wait_for("Café crew");
    world.succeeds("alice", &["group-send", &gid, "hi crew"]);
    // The group is the only conversation, so it is shown: its name is the view's title.
    let screen = bob.wait_for("alice: hi crew");
    assert!(screen.contains("┌ Café crew ─"), "{screen}");
    assert!(!screen.contains(&format!("group {gid}")), "{screen}");
    bob.type_text("/quit\r");
    assert_eq!(bob.wait_exit(), 0);
}

#[test]
fn a_message_left_pending_by_an_earlier_session_is_sent_again_and_settled() {
    let world = World::new();
    world.register("bob");
    world.succeeds("alice", &["friends", "add", "bob"]);
    // As an earlier `vcom` left it: recorded, sent perhaps, never answered.
    let path = world.profile("alice").join("history.sqlite3");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let history = vcom_client::History::open(path).await.unwrap();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let entry = vcom_client::SentEntry {
            sender: vcom_client::UserId::new("alice").unwrap(),
            to: vcom_client::Recipient::User(vcom_client::UserId::new("bob").unwrap()),
            sent_at: vcom_client::Timestamp(i64::try_from(at).unwrap()),
            kind: vcom_client::MessageKind::Text,
            data: "left behind".as_bytes().into(),
        };
        history.record_pending(entry, 4242).await.unwrap();
    });
    let pending = stdout_of(&world.succeeds("alice", &["history"]));
    assert!(pending.contains("left behind [pending …]"), "{pending}");

    let mut alice = chat(&world, "alice");
    alice.wait_for("alice: left behind  ✓ stored");
    alice.type_text("/quit\r");
    assert_eq!(alice.wait_exit(), 0);
    // Bob gets it once at his next login (any command).
    world.succeeds("bob", &["friends", "list"]);
    let theirs = world.history_json("bob", &[]);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["text"], "left behind");
    let mine = stdout_of(&world.succeeds("alice", &["history"]));
    assert!(mine.contains("left behind [✓ stored]"), "{mine}");
}

#[test]
fn chat_refuses_to_start_without_a_terminal() {
    let world = World::new();
    let out = world.vcom("alice").arg("chat").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}
