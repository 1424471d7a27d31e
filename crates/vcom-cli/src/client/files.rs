//! `send-file USER PATH` (with a progress bar) and `receive [--dir DIR] [--accept-all]`.
//!
//! Files stream through the SDK and are never held in memory whole. A received file is
//! written under a sanitised name into the chosen directory, never over an existing
//! file. Without `--accept-all`, `receive` asks on the terminal, and declines (saying
//! so) when there is no terminal to ask: it must never hang a script.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vcom_client::{Client, Event, FileOffer, TransferId, TransferOutcome, UserId};

use super::Global;
use super::connect::{Connection, connect, finish, lost, report_arrivals};
use super::format::size;
use super::listen::disconnected;

const BAR_TEMPLATE: &str =
    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} left";

fn progress_bar(total: u64, message: String) -> ProgressBar {
    let style = ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(total)
        .with_style(style)
        .with_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `vcom send-file USER PATH`.
pub(crate) async fn send_file(global: &Global, to: &UserId, path: &Path) -> anyhow::Result<()> {
    let metadata = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !metadata.is_file() {
        return Err(anyhow!("{} is not a file", path.display()));
    }
    let connection = connect(global).await?;
    let mut handle = connection
        .client
        .send_file(to, path)
        .await
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("cannot send {} to {to}", path.display()))?;
    let total = handle.progress().total;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    eprintln!(
        "offering {name} ({}) to {to}; waiting for an answer",
        size(total)
    );
    let bar = progress_bar(total, name.clone());
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut cancelled = false;
    let mut started = false;
    loop {
        tokio::select! {
            _ = &mut interrupted, if !cancelled => {
                cancelled = true;
                handle.cancel();
            }
            progress = handle.progress_changed() => match progress {
                Some(progress) => {
                    if !started && progress.done > 0 {
                        // Measure the rate from the acceptance, not from the offer.
                        started = true;
                        bar.reset();
                    }
                    bar.set_position(progress.done);
                }
                None => break,
            },
        }
    }
    let outcome = handle.finish().await.map_err(lost)?;
    match outcome {
        TransferOutcome::Completed { .. } => {
            bar.finish_and_clear();
            finish(connection).await?;
            println!("sent {name} ({}) to {to}", size(total));
            Ok(())
        }
        TransferOutcome::Aborted(reason) => {
            bar.abandon();
            finish(connection).await?;
            Err(anyhow!(
                "the transfer of {name} to {to} was aborted: {reason}"
            ))
        }
        TransferOutcome::Failed(why) => {
            bar.abandon();
            finish(connection).await?;
            Err(anyhow!("the transfer of {name} to {to} failed: {why}"))
        }
    }
}

/// What to do with an offer.
enum Answer {
    Accept,
    Decline,
    /// No terminal to ask and no `--accept-all`.
    DeclineUnasked,
}

/// A file being received.
struct Receiving {
    bar: ProgressBar,
    name: String,
    sender: UserId,
    size: u64,
}

/// `vcom receive [--dir DIR] [--accept-all] [--once]`.
pub(crate) async fn receive(
    global: &Global,
    dir: &Path,
    accept_all: bool,
    once: bool,
) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let Connection { client, mut events } = connect(global).await?;
    let interactive = std::io::stdin().is_terminal();
    eprintln!(
        "waiting for files to {} on {}, saving them in {} (Ctrl-C to stop)",
        global.user,
        global.server,
        dir.display()
    );
    let bars = MultiProgress::new();
    let mut receiving: HashMap<TransferId, Receiving> = HashMap::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            _ = &mut interrupted => return end(&client, Ok(())).await,
            event = events.next() => event,
        };
        let Some(event) = event else {
            return Err(anyhow!("the connection to the server ended"));
        };
        match event {
            Event::FileOffer(offer) => {
                let answer = if accept_all {
                    Answer::Accept
                } else if interactive {
                    ask(&bars, &offer).await?
                } else {
                    Answer::DeclineUnasked
                };
                let (transfer, sender, name, total) = (
                    offer.transfer(),
                    offer.sender().clone(),
                    offer.offered_name().to_owned(),
                    offer.size(),
                );
                match answer {
                    Answer::Accept => match offer.accept(dir).await {
                        Ok(()) => {
                            let bar = bars.add(progress_bar(total, name.clone()));
                            let entry = Receiving {
                                bar,
                                name,
                                sender,
                                size: total,
                            };
                            receiving.insert(transfer, entry);
                        }
                        Err(e) => {
                            let failed = anyhow!(e).context(format!(
                                "cannot accept {name:?} from {sender}; declined it"
                            ));
                            if once {
                                return end(&client, Err(failed)).await;
                            }
                            eprintln!("vcom: {failed:#}");
                        }
                    },
                    Answer::Decline | Answer::DeclineUnasked => {
                        let unasked = matches!(answer, Answer::DeclineUnasked);
                        offer.decline().await.map_err(lost)?;
                        if unasked {
                            eprintln!(
                                "declined {name:?} ({}) from {sender}: stdin is not a terminal, \
                                 so nobody can be asked; use --accept-all to accept files \
                                 without asking",
                                size(total)
                            );
                        } else {
                            eprintln!("declined {name:?} from {sender}");
                        }
                        if once {
                            return end(&client, Ok(())).await;
                        }
                    }
                }
            }
            Event::TransferProgress { transfer, done, .. } => {
                if let Some(r) = receiving.get(&transfer) {
                    r.bar.set_position(done);
                }
            }
            Event::TransferFinished { transfer, outcome } => {
                let Some(r) = receiving.remove(&transfer) else {
                    continue;
                };
                let result = match outcome {
                    TransferOutcome::Completed { path } => {
                        r.bar.finish_and_clear();
                        bars.suspend(|| {
                            println!(
                                "saved {} ({}) from {}",
                                path.display(),
                                size(r.size),
                                r.sender
                            );
                        });
                        Ok(())
                    }
                    TransferOutcome::Aborted(reason) => {
                        r.bar.abandon();
                        Err(anyhow!(
                            "the transfer of {:?} from {} was aborted: {reason}",
                            r.name,
                            r.sender
                        ))
                    }
                    TransferOutcome::Failed(why) => {
                        r.bar.abandon();
                        Err(anyhow!(
                            "could not save {:?} from {}: {why}",
                            r.name,
                            r.sender
                        ))
                    }
                };
                if once {
                    return end(&client, result).await;
                }
                if let Err(e) = result {
                    eprintln!("vcom: {e:#}");
                }
            }
            Event::Message(m) | Event::GroupMessage(m) => bars.suspend(|| {
                eprintln!(
                    "a new message from {} arrived; see `vcom history`",
                    m.sender
                );
            }),
            Event::Disconnected { reason } => return disconnected(reason),
            _ => {}
        }
    }
}

/// Asks on the terminal whether to accept an offer.
async fn ask(bars: &MultiProgress, offer: &FileOffer) -> anyhow::Result<Answer> {
    let question = format!(
        "{} offers {:?} ({}). Accept? [y/N] ",
        offer.sender(),
        offer.offered_name(),
        size(offer.size())
    );
    let bars = bars.clone();
    let line = tokio::task::spawn_blocking(move || {
        bars.suspend(|| {
            eprint!("{question}");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
    })
    .await
    .context("the prompt task failed")?
    .context("cannot read the answer from stdin")?;
    Ok(match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Answer::Accept,
        _ => Answer::Decline,
    })
}

/// Ends a long-running command: reports arrivals, logs out, and returns `result`.
async fn end(client: &Client, result: anyhow::Result<()>) -> anyhow::Result<()> {
    report_arrivals(client.received_count());
    client.close().await.map_err(lost)?;
    result
}
