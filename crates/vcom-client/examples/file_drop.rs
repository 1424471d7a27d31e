//! A file drop: accepts every file offered to its user into one directory, and reports
//! each one saved, one line each, on stdout.
//!
//! `cargo run -p vcom-client --example file_drop -- HOST:PORT USER PROFILE_DIR DIR [MAX_BYTES]`
//!
//! Offers larger than `MAX_BYTES` (default 100 MiB) are declined, and so are offers
//! whose name cannot be made safe. Saved files keep the sender's (sanitised) name; an
//! existing file is never overwritten (`name (1).ext` instead). `.part` files are the
//! transfers still under way. `crates/vcom-client/tests/examples.rs` runs it against a
//! real server.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use vcom_client::{Client, ClientConfig, Event, TransferOutcome, UserId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (server, user, profile, dir, max) = match args.as_slice() {
        [server, user, profile, dir] => (server, user, profile, dir, 100 << 20),
        [server, user, profile, dir, max] => {
            let max = max.parse().map_err(|_| "MAX_BYTES is a number of bytes")?;
            (server, user, profile, dir, max)
        }
        _ => return Err("usage: file_drop HOST:PORT USER PROFILE_DIR DIR [MAX_BYTES]".into()),
    };
    let config = ClientConfig::new(server, UserId::new(user.as_str())?, profile);
    run(config, PathBuf::from(dir), max, std::io::stdout().lock()).await?;
    Ok(())
}

/// Logs in with `config` and accepts offers of at most `max` bytes into `dir`, writing
/// `saved PATH (N bytes) from USER` or `declined NAME from USER: WHY` lines to `out`,
/// until the connection ends.
pub(crate) async fn run(
    config: ClientConfig,
    dir: PathBuf,
    max: u64,
    mut out: impl Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (_client, mut events) = Client::connect(config).await?;
    // Accepted transfers still under way: who sent each, and its size.
    let mut incoming = HashMap::new();
    while let Some(event) = events.next().await {
        match event {
            Event::FileOffer(offer) => {
                let sender = offer.sender().clone();
                let name = offer.offered_name().to_owned();
                let why = if offer.size() > max {
                    Some(format!("{} bytes is over the limit of {max}", offer.size()))
                } else {
                    offer.file_name().err().map(|e| e.to_string())
                };
                if let Some(why) = why {
                    offer.decline().await?;
                    writeln!(out, "declined {name:?} from {sender}: {why}")?;
                    out.flush()?;
                } else {
                    incoming.insert(offer.transfer(), (sender, offer.size()));
                    offer.accept(&dir).await?;
                }
            }
            Event::TransferFinished { transfer, outcome } => {
                let Some((sender, size)) = incoming.remove(&transfer) else {
                    continue;
                };
                match outcome {
                    TransferOutcome::Completed { path } => {
                        writeln!(out, "saved {} ({size} bytes) from {sender}", path.display())?;
                    }
                    other => writeln!(out, "lost a file from {sender}: {other:?}")?,
                }
                out.flush()?;
            }
            Event::Disconnected { reason } => eprintln!("disconnected: {reason:?}"),
            _ => {}
        }
    }
    Ok(())
}
