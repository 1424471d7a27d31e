//! `listen [--json]`: print every message as it arrives until Ctrl-C or the server
//! ends the connection.
//!
//! Messages stored for this device while it was away arrive first. File offers are left
//! unanswered (another device may take them with `vcom receive`) and only noted.

use std::collections::HashMap;
use std::io::Write;

use anyhow::anyhow;
use serde_json::json;
use vcom_client::{DisconnectReason, Event, FileOffer, TransferId};

use super::Global;
use super::connect::{Connection, connect_live, lost};
use super::format::{Shown, message_json, message_line, size};

/// `vcom listen [--json]`.
pub(crate) async fn listen(global: &Global, json: bool) -> anyhow::Result<()> {
    let Connection { client, mut events } = connect_live(global).await?;
    eprintln!(
        "listening as {} on {} (Ctrl-C to stop)",
        global.user, global.server
    );
    // Unanswered offers are kept, not dropped: dropping one would decline it.
    let mut offers: HashMap<TransferId, FileOffer> = HashMap::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            _ = &mut interrupted => {
                client.close().await.map_err(lost)?;
                return Ok(());
            }
            event = events.next() => event,
        };
        let Some(event) = event else {
            return Err(anyhow!("the connection to the server ended"));
        };
        let line = match event {
            Event::Message(m) | Event::GroupMessage(m) => {
                let groups = client.groups();
                let m = Shown::from(&m).named(&groups);
                if json {
                    message_json(&m).to_string()
                } else {
                    message_line(&m)
                }
            }
            Event::Broadcast { text } => {
                if json {
                    json!({ "type": "broadcast", "text": text }).to_string()
                } else {
                    format!("[broadcast] {}", super::format::printable(&text))
                }
            }
            Event::FileOffer(offer) => {
                let line = if json {
                    json!({
                        "type": "file_offer",
                        "sender": offer.sender().as_str(),
                        "name": offer.offered_name(),
                        "size": offer.size(),
                        "transfer": offer.transfer().get(),
                    })
                    .to_string()
                } else {
                    format!(
                        "{} offers the file {:?} ({}); take it with `vcom receive`",
                        offer.sender(),
                        offer.offered_name(),
                        size(offer.size())
                    )
                };
                offers.insert(offer.transfer(), offer);
                line
            }
            Event::TransferFinished { transfer, .. } => {
                offers.remove(&transfer);
                continue;
            }
            Event::Disconnected { reason } => return disconnected(reason),
            _ => continue,
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (`vcom listen | head -1`) ends the program quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            client.close().await.map_err(lost)?;
            return Ok(());
        }
    }
}

/// The end of a long-running command's connection, as a result.
pub(crate) fn disconnected(reason: DisconnectReason) -> anyhow::Result<()> {
    match reason {
        DisconnectReason::Closed => Ok(()),
        DisconnectReason::ServerClosed => Err(anyhow!(
            "the server closed the connection (it stopped, another program logged in \
             with this profile, or the administrator reset this user's key)"
        )),
        DisconnectReason::Error(e) => Err(lost(e)),
        other => Err(anyhow!("disconnected: {other:?}")),
    }
}
