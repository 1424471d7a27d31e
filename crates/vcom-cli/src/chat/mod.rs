//! `vcom chat`: the interactive terminal UI.
//!
//! - `app`: the UI state and its transitions (no IO, no clock): unit-tested.
//! - `ui`: drawing the state with ratatui (no IO): tested on a `TestBackend`.
//! - `terminal`: raw mode and the alternate screen, restored on any exit.
//! - this module: the IO loop joining key presses, server events, the history and the
//!   SDK; sends and file transfers run in their own tasks and report back here.
//!
//! The connection is made before the terminal is taken over, so a refused login is
//! printed as a normal one-line error. The history is read a page at a time, when the
//! app asks for it, so the first screen comes as fast with 100 000 messages as with ten.

pub mod app;
mod terminal;
pub mod ui;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use crossterm::event::{Event as TermEvent, EventStream as KeyStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use vcom_client::{
    Client, ClientError, Delivery, Event, FileOffer, History, MessageKind, Outgoing, Recipient,
    Timestamp, TransferHandle, TransferId, TransferOutcome, UserId,
};

use crate::client::Global;
use crate::client::connect::{Connection, connect, lost};
use crate::client::format::body;
use app::{Action, Alert, App, Load, OfferPrompt, Target};
use terminal::TerminalGuard;

/// How `vcom chat` calls attention to a message in a conversation not on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Notify {
    /// Nothing but the unread count.
    #[default]
    Off,
    /// The terminal's bell.
    Bell,
    /// A desktop notification through `notify-send` (the bell if it is missing).
    Desktop,
}

/// What the tasks started by the chat report.
enum Update {
    /// The server's answer for a message, or why none came.
    Delivery {
        client_id: i64,
        result: Result<Delivery, ClientError>,
    },
    /// Bytes of a file being sent were handed to the server.
    FileProgress { id: u64, done: u64, total: u64 },
    /// A file being sent is done.
    FileDone { id: u64, result: Result<(), String> },
}

/// How many reports of the tasks may wait for the loop.
const UPDATES: usize = 64;

/// Messages still pending from an earlier session are sent again if they are at most
/// this old: well inside the 30 days a server remembers a client message id for, so a
/// message it had stored after all is stored once.
const RESEND_WITHIN: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Runs the chat UI until the user quits; files accepted are saved in `dir`.
pub async fn run(global: &Global, dir: &Path, notify: Notify) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(anyhow!(
            "`vcom chat` needs a terminal; in scripts use `vcom send` and `vcom listen`"
        ));
    }
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let Connection { client, events } = connect(global).await?;
    let mut app = App::new(global.user.clone(), global.server.clone());
    app.set_time_zone(jiff::tz::TimeZone::system());
    let groups = group_names(&client.groups());
    let loaded_up_to =
        first_screen(client.history_store(), &client.friends(), &groups, &mut app).await?;

    let mut guard = TerminalGuard::enter()?;
    let (updates_tx, updates) = mpsc::channel(UPDATES);
    let mut chat = Chat {
        client: client.clone(),
        events,
        offers: HashMap::new(),
        dir: dir.to_owned(),
        loaded_up_to,
        notify,
        updates_tx,
        updates,
        next_file: 0,
    };
    chat.send_unanswered(&mut app).await;
    let result = chat.run(&mut guard, &mut app).await;
    drop(guard);
    let _ = client.close().await;
    result
}

/// Fills the UI for its first screen: the friends, the conversations of the history with
/// their unread counts (newest first), the groups with their names, and the newest page
/// of the conversation shown first. Returns the highest history row at start: newer ones
/// arrive as events.
pub async fn first_screen(
    history: &History,
    friends: &[UserId],
    groups: &[(vcom_client::GroupId, String)],
    app: &mut App,
) -> anyhow::Result<i64> {
    app.on_friends(friends);
    let summaries = history.conversations().await.map_err(lost)?;
    let start_row = summaries.iter().map(|s| s.last_id).max().unwrap_or(0);
    app.on_conversations(&summaries, start_row);
    app.on_groups(groups);
    // Start on the first friend or group rather than the broadcasts, if there is one.
    if app.conversations().len() > 1 {
        app.select(1);
    }
    load_wanted(history, app).await;
    Ok(start_row)
}

/// The groups' identifiers and names, for the app.
fn group_names(groups: &[vcom_client::Group]) -> Vec<(vcom_client::GroupId, String)> {
    groups.iter().map(|g| (g.id, g.name.clone())).collect()
}

/// Reads what the app asks for from the history.
async fn load_wanted(history: &History, app: &mut App) {
    while let Some(load) = app.next_load() {
        match read(history, &load).await {
            Ok(entries) => app.on_loaded(&load, &entries),
            Err(e) => app.on_load_failed(&load, &e.to_string()),
        }
    }
}

async fn read(
    history: &History,
    load: &Load,
) -> Result<Vec<vcom_client::HistoryEntry>, ClientError> {
    let Some(query) = load.conversation.query() else {
        return Ok(Vec::new());
    };
    match load.from {
        Some(from) => history.range(query, from, load.before).await,
        None => history.page(query, Some(load.before), load.limit).await,
    }
}

/// The IO side of the chat: the SDK handles and the offers waiting for an answer.
struct Chat {
    client: Client,
    events: crate::client::connect::Events,
    /// Unanswered offers; dropping one would decline it.
    offers: HashMap<TransferId, FileOffer>,
    dir: PathBuf,
    /// The highest history row at start. A message that arrived between the login and
    /// reading the history is both in the history and still queued as an event; its
    /// event is skipped so it shows once.
    loaded_up_to: i64,
    notify: Notify,
    updates_tx: mpsc::Sender<Update>,
    updates: mpsc::Receiver<Update>,
    next_file: u64,
}

impl Chat {
    async fn run(&mut self, guard: &mut TerminalGuard, app: &mut App) -> anyhow::Result<()> {
        let mut keys = KeyStream::new();
        loop {
            if let Ok(size) = guard.terminal.size() {
                // The status line, the input box and the view's borders.
                app.set_view_rows(usize::from(size.height.saturating_sub(6)));
            }
            load_wanted(self.client.history_store(), app).await;
            self.save_read_marks(app).await;
            self.alert(app.take_alerts());
            guard
                .terminal
                .draw(|frame| ui::draw(frame, app))
                .context("cannot draw on the terminal")?;
            if app.should_quit() {
                return Ok(());
            }
            tokio::select! {
                key = keys.next() => match key {
                    Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                        if let Some(action) = app.on_key(key) {
                            self.perform(action, app).await?;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                    None => return Ok(()),
                },
                event = self.events.next() => match event {
                    Some(event) => self.on_event(event, app)?,
                    None => return Err(anyhow!("the connection to the server ended")),
                },
                Some(update) = self.updates.recv() => self.on_update(update, app)?,
            }
        }
    }

    fn on_event(&mut self, event: Event, app: &mut App) -> anyhow::Result<()> {
        match event {
            Event::Message(m) | Event::GroupMessage(m) if m.history_id > self.loaded_up_to => {
                app.on_message(
                    &m.sender,
                    m.group,
                    m.sent_at,
                    body(m.kind, &m.data),
                    m.history_id,
                );
            }
            Event::Broadcast { text } => app.on_broadcast(text, now()),
            Event::ListsChanged(lists) => app.on_friends(&lists.friends.entries),
            Event::GroupChanged(group) => app.on_groups(&group_names(&[group])),
            Event::GroupRemoved { group, reason } => {
                let title = app.title(&app::ConversationId::Group(group));
                app.set_status(format!("no longer a member of {title}: {reason}"));
            }
            Event::FileOffer(offer) => {
                app.on_offer(OfferPrompt {
                    transfer: offer.transfer(),
                    sender: offer.sender().clone(),
                    name: offer.offered_name().to_owned(),
                    size: offer.size(),
                });
                self.offers.insert(offer.transfer(), offer);
            }
            Event::TransferProgress {
                transfer,
                done,
                total,
            } => app.on_progress(transfer, done, total),
            Event::TransferFinished { transfer, outcome } => {
                self.offers.remove(&transfer);
                app.on_transfer_finished(transfer, &outcome);
            }
            Event::Disconnected { reason } => {
                return crate::client::listen::disconnected(reason);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_update(&mut self, update: Update, app: &mut App) -> anyhow::Result<()> {
        match update {
            Update::Delivery { client_id, result } => match result {
                Ok(delivery) => app.on_delivery(client_id, delivery),
                Err(ClientError::Closed) => return Err(lost(ClientError::Closed)),
                // Only a lost connection leaves the message's fate unknown (it stays
                // pending); any other error means it never left.
                Err(e) => app.on_send_failed(client_id, &e.to_string()),
            },
            Update::FileProgress { id, done, total } => app.on_send_progress(id, done, total),
            Update::FileDone { id, result } => app.on_send_finished(id, result),
        }
        Ok(())
    }

    async fn perform(&mut self, action: Action, app: &mut App) -> anyhow::Result<()> {
        let result = match action {
            Action::Send { to, text } => {
                let recipient = match &to {
                    Target::User(user) => Recipient::User(user.clone()),
                    Target::Group(group) => Recipient::Group(*group),
                };
                let message = Outgoing::new(
                    recipient,
                    MessageKind::Text,
                    bytes::Bytes::copy_from_slice(text.as_bytes()),
                );
                // Shown at once, pending; the SDK records it the same way in the history,
                // so the session and a restart show the same line with the same mark.
                app.on_sending(&to, now(), text, message.client_id);
                self.spawn_send(message);
                Ok(())
            }
            Action::SendFile { to, path } => self.send_file(to, &path, app).await,
            Action::Find { conversation, text } => match conversation.query() {
                Some(query) => {
                    let rows = self.client.history_store().find(query, &text).await;
                    rows.map(|rows| app.on_found(conversation, text, &rows))
                }
                None => Ok(()),
            },
            Action::AddFriend(user) => self.add_friend(&user, app).await,
            Action::Accept(transfer) => match self.offers.remove(&transfer) {
                Some(offer) => offer.accept(&self.dir).await,
                None => {
                    app.set_status("that offer has ended");
                    Ok(())
                }
            },
            Action::Decline(transfer) => match self.offers.remove(&transfer) {
                Some(offer) => offer.decline().await,
                None => Ok(()),
            },
        };
        match result {
            Ok(()) => Ok(()),
            Err(ClientError::Closed) => Err(lost(ClientError::Closed)),
            Err(e) => {
                app.set_status(e.to_string());
                Ok(())
            }
        }
    }

    /// Sends again, under their client message ids, the messages still pending from an
    /// earlier session (the program stopped before the server answered): the server
    /// stores each once, and the answer settles its line and its history row.
    async fn send_unanswered(&mut self, app: &mut App) {
        let window = i64::try_from(RESEND_WITHIN.as_millis()).unwrap_or(i64::MAX);
        let since = Timestamp(now().0.saturating_sub(window));
        let unanswered = match self.client.history_store().unanswered(since).await {
            Ok(unanswered) => unanswered,
            Err(e) => {
                app.set_status(format!("cannot read the pending messages: {e}"));
                return;
            }
        };
        for (row, message) in unanswered {
            app.on_resending(row, message.client_id);
            self.spawn_send(message);
        }
    }

    /// Sends a message in its own task; the answer comes back as an [`Update`].
    fn spawn_send(&self, message: Outgoing) {
        let client = self.client.clone();
        let updates = self.updates_tx.clone();
        tokio::spawn(async move {
            let client_id = message.client_id;
            let result = client.send_message(message).await;
            let _ = updates.send(Update::Delivery { client_id, result }).await;
        });
    }

    /// Starts sending a file; its progress and end come back as [`Update`]s.
    async fn send_file(
        &mut self,
        to: UserId,
        path: &str,
        app: &mut App,
    ) -> Result<(), ClientError> {
        let path = PathBuf::from(path);
        let handle = self.client.send_file(&to, &path).await?;
        self.next_file += 1;
        let id = self.next_file;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        app.on_send_started(id, to, name, handle.progress().total);
        let updates = self.updates_tx.clone();
        tokio::spawn(follow(id, handle, updates));
        Ok(())
    }

    async fn add_friend(&self, user: &UserId, app: &mut App) -> Result<(), ClientError> {
        let added = self.client.add_friend(user).await?;
        app.set_status(if added {
            format!("{user} is now a friend")
        } else {
            format!("{user} is already a friend")
        });
        Ok(())
    }

    /// Saves how far the conversations have been read, so unread counts survive a
    /// restart. A failure costs only a count, so it is shown, not fatal.
    async fn save_read_marks(&self, app: &mut App) {
        for (query, through) in app.take_read_marks() {
            if let Err(e) = self.client.history_store().mark_read(query, through).await {
                app.set_status(format!("cannot save the read mark: {e}"));
            }
        }
    }

    /// Rings or notifies for messages in conversations not on screen, as asked.
    fn alert(&self, alerts: Vec<Alert>) {
        let Some(last) = alerts.last() else {
            return;
        };
        match self.notify {
            Notify::Off => {}
            Notify::Bell => bell(),
            Notify::Desktop => {
                let summary = format!("vcom: {}", last.conversation);
                let text = format!("new message from {}", last.sender);
                // notify-send returns at once; waiting for it on a blocking thread reaps
                // it. Without it, the bell.
                tokio::task::spawn_blocking(move || {
                    let shown = std::process::Command::new("notify-send")
                        .args(["--app-name=vcom", &summary, &text])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                    if !shown.is_ok_and(|s| s.success()) {
                        bell();
                    }
                });
            }
        }
    }
}

/// Reports a file's progress and end to the loop.
async fn follow(id: u64, mut handle: TransferHandle, updates: mpsc::Sender<Update>) {
    while let Some(progress) = handle.progress_changed().await {
        let update = Update::FileProgress {
            id,
            done: progress.done,
            total: progress.total,
        };
        if updates.send(update).await.is_err() {
            handle.cancel();
            return;
        }
    }
    let result = match handle.finish().await {
        Ok(TransferOutcome::Completed { .. }) => Ok(()),
        Ok(TransferOutcome::Aborted(reason)) => Err(reason.to_string()),
        Ok(TransferOutcome::Failed(why)) => Err(why),
        Err(e) => Err(e.to_string()),
    };
    let _ = updates.send(Update::FileDone { id, result }).await;
}

/// The terminal's bell: a BEL between two frames moves nothing on screen.
fn bell() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x07").and_then(|()| out.flush());
}

/// The current time as a protocol timestamp.
fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(millis)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A history of `n` messages over 50 users and 5 groups, a third of them sent (and
    /// stored), written in one transaction; every conversation read through `read`
    /// messages from its end when `marks` is set.
    async fn filled(path: &Path, n: usize, marks: bool) -> anyhow::Result<()> {
        drop(History::open(path).await?);
        let mut conn = rusqlite::Connection::open(path)?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO messages (outgoing, sender, peer, group_id, sent_at, received_at,
                     is_text, data, read, delivery)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6, 1, ?7)",
            )?;
            for i in 0..n {
                let outgoing = i % 3 == 0;
                let peer = format!("user{}", i % 50);
                let group = (i % 11 == 0).then_some(i32::try_from(i % 5).unwrap_or(0));
                let sender = if outgoing { "alice" } else { peer.as_str() };
                let peer = group.is_none().then_some(peer.as_str());
                let at = 1_714_564_800_000 + i64::try_from(i).unwrap_or(0) * 60_000;
                let body = format!("message {i} with some text to make it a realistic length");
                insert.execute(rusqlite::params![
                    outgoing,
                    sender,
                    peer,
                    group,
                    at,
                    body.as_bytes(),
                    outgoing.then_some(1)
                ])?;
            }
        }
        if marks {
            tx.execute_batch(
                "INSERT OR REPLACE INTO read_marks (conversation, through)
                     SELECT 'u:' || peer, MAX(id) FROM messages WHERE peer IS NOT NULL
                     GROUP BY peer;
                 INSERT OR REPLACE INTO read_marks (conversation, through)
                     SELECT 'g:' || group_id, MAX(id) FROM messages
                     WHERE group_id IS NOT NULL GROUP BY group_id;",
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// What `vcom chat` does between the login and its first frame, on an 80x24
    /// terminal: open the history, list the conversations, read the shown page, look
    /// for messages to send again, draw.
    async fn open_first_screen(path: &Path) -> anyhow::Result<Vec<String>> {
        let history = History::open(path).await?;
        let alice = UserId::new("alice")?;
        let mut app = App::new(alice, "127.0.0.1:7420");
        app.set_view_rows(18);
        first_screen(&history, &[], &[], &mut app).await?;
        // The messages to send again, looked for before the first frame too.
        history.unanswered(Timestamp(0)).await?;
        let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
        terminal.draw(|frame| ui::draw(frame, &app))?;
        let buffer = terminal.backend().buffer();
        Ok((0..24)
            .map(|y| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>())
            .collect())
    }

    #[tokio::test]
    async fn the_first_screen_shows_the_newest_conversation_at_its_newest_message() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("history.sqlite3");
        filled(&path, 1000, false).await?;
        let screen = open_first_screen(&path).await?.join("\n");
        // Row 1000 (message 999) went to user49; with no read marks, all is unread.
        assert!(screen.contains("> user49"), "{screen}");
        assert!(screen.contains("message 999 with"), "{screen}");
        assert!(screen.contains("user48 (12)"), "{screen}");
        Ok(())
    }

    /// The start-up figure of docs/benchmarks.md: `cargo test -p vcom-cli --release --lib
    /// chat::tests::startup -- --ignored --nocapture`. Prints; asserts no time.
    #[tokio::test]
    #[ignore = "a measurement: run it by name"]
    async fn startup_with_a_history_of_100_000_messages() -> TestResult {
        for marks in [true, false] {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("history.sqlite3");
            filled(&path, 100_000, marks).await?;
            let mut times = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                let screen = open_first_screen(&path).await?;
                times.push(start.elapsed());
                assert!(screen.join("\n").contains("message 99999 with"));
            }
            times.sort();
            let unread = if marks { "all read" } else { "all unread" };
            println!(
                "100 000 messages, {unread}: first screen in {:?} (median of 5; fastest {:?}, slowest {:?})",
                times[2], times[0], times[4]
            );
        }
        Ok(())
    }
}
