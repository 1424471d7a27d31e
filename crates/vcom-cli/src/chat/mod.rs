//! `vcom chat`: the interactive terminal UI.
//!
//! - `app`: the UI state and its transitions (no IO, no clock): unit-tested.
//! - `ui`: drawing the state with ratatui (no IO): tested on a `TestBackend`.
//! - `terminal`: raw mode and the alternate screen, restored on any exit.
//! - this module: the IO loop joining key presses, server events and the SDK.
//!
//! The connection is made before the terminal is taken over, so a refused login is
//! printed as a normal one-line error.

pub mod app;
mod terminal;
pub mod ui;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use crossterm::event::{Event as TermEvent, EventStream as KeyStream, KeyEventKind};
use futures::StreamExt;
use vcom_client::{Client, Event, FileOffer, HistoryQuery, Timestamp, TransferId, UserId};

use crate::client::Global;
use crate::client::connect::{Connection, connect, lost};
use crate::client::format::body;
use app::{Action, App, OfferPrompt, Target};
use terminal::TerminalGuard;

/// Runs the chat UI until the user quits; files accepted are saved in `dir`.
pub async fn run(global: &Global, dir: &Path) -> anyhow::Result<()> {
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
    let loaded_up_to = load(&client, &mut app).await?;

    let mut guard = TerminalGuard::enter()?;
    let mut chat = Chat {
        client: client.clone(),
        events,
        offers: HashMap::new(),
        dir: dir.to_owned(),
        loaded_up_to,
    };
    let result = chat.run(&mut guard, &mut app).await;
    drop(guard);
    let _ = client.close().await;
    result
}

/// Fills the UI with the friends and the stored history, both directions, so the lines
/// this user wrote before a restart are there; what arrived during this login counts as
/// unread. Returns the highest history row shown.
async fn load(client: &Client, app: &mut App) -> anyhow::Result<i64> {
    app.on_friends(&client.friends());
    let entries = client.history(HistoryQuery::All).await.map_err(lost)?;
    let loaded_up_to = app.load_history(&entries, client.received_count());
    // Start on the first friend or group rather than the broadcasts, if there is one.
    if app.conversations().len() > 1 {
        app.select(1);
    }
    Ok(loaded_up_to)
}

/// The IO side of the chat: the SDK handles and the offers waiting for an answer.
struct Chat {
    client: Client,
    events: crate::client::connect::Events,
    /// Unanswered offers; dropping one would decline it.
    offers: HashMap<TransferId, FileOffer>,
    dir: PathBuf,
    /// The highest history row loaded at start. A message that arrived between the
    /// login and reading the history is both in the history and still queued as an
    /// event; its event is skipped so it shows once.
    loaded_up_to: i64,
}

impl Chat {
    async fn run(&mut self, guard: &mut TerminalGuard, app: &mut App) -> anyhow::Result<()> {
        let mut keys = KeyStream::new();
        loop {
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
            }
        }
    }

    fn on_event(&mut self, event: Event, app: &mut App) -> anyhow::Result<()> {
        match event {
            Event::Message(m) | Event::GroupMessage(m) if m.history_id > self.loaded_up_to => {
                app.on_message(&m.sender, m.group, m.sent_at, body(m.kind, &m.data), true);
            }
            Event::Broadcast { text } => app.on_broadcast(text, now()),
            Event::ListsChanged(lists) => app.on_friends(&lists.friends.entries),
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

    async fn perform(&mut self, action: Action, app: &mut App) -> anyhow::Result<()> {
        let result = match action {
            Action::Send { to, text } => {
                let sent = match &to {
                    Target::User(user) => self.client.send_text(user, &text).await,
                    Target::Group(group) => self.client.send_group_text(*group, &text).await,
                };
                // Shown only now, as the SDK recorded it: the session and a restart
                // show the same lines, each once. A refused message is not recorded.
                match sent {
                    Ok(vcom_client::Delivery::Refused(outcome)) => {
                        app.set_status(format!("not sent: {outcome}"));
                        Ok(())
                    }
                    Ok(_) => {
                        app.on_sent(&to, now(), text);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
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
            Err(vcom_client::ClientError::Closed) => Err(lost(vcom_client::ClientError::Closed)),
            Err(e) => {
                app.set_status(e.to_string());
                Ok(())
            }
        }
    }

    async fn add_friend(
        &self,
        user: &UserId,
        app: &mut App,
    ) -> Result<(), vcom_client::ClientError> {
        let added = self.client.add_friend(user).await?;
        app.set_status(if added {
            format!("{user} is now a friend")
        } else {
            format!("{user} is already a friend")
        });
        Ok(())
    }
}

/// The current time as a protocol timestamp.
fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(millis)
}
