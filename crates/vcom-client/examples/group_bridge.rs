//! A bridge that mirrors one group to stdout as JSON lines, one line per message:
//! `{"group":1,"sender":"bob","sent_at":1764460800000,"kind":"text","text":"hi"}`
//! (an image carries `"bytes":N` instead of `"text"`), for a log shipper or another chat
//! system to read.
//!
//! `cargo run -p vcom-client --example group_bridge -- HOST:PORT USER PROFILE_DIR GROUP_ID`
//!
//! The bridge's user must be a member of the group. Messages that arrived while the
//! bridge was away come first (the server keeps them), so nothing is skipped across
//! restarts. `crates/vcom-client/tests/examples.rs` runs it against a real server.

use std::io::Write;

use vcom_client::{Client, ClientConfig, Event, GroupId, Message, MessageKind, UserId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, user, profile, group] = args.as_slice() else {
        return Err("usage: group_bridge HOST:PORT USER PROFILE_DIR GROUP_ID".into());
    };
    let group = GroupId(group.parse().map_err(|_| "GROUP_ID is a number")?);
    let config = ClientConfig::new(server, UserId::new(user.as_str())?, profile);
    run(config, group, std::io::stdout().lock()).await?;
    Ok(())
}

/// Logs in with `config` and writes each message of `group` to `out` as one JSON line,
/// flushed at once, until the connection ends.
pub(crate) async fn run(
    config: ClientConfig,
    group: GroupId,
    mut out: impl Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (_client, mut events) = Client::connect(config).await?;
    while let Some(event) = events.next().await {
        match event {
            Event::GroupMessage(m) if m.group == Some(group) => {
                writeln!(out, "{}", json_line(&m))?;
                out.flush()?;
            }
            Event::Disconnected { reason } => {
                eprintln!("disconnected: {reason:?}");
            }
            _ => {}
        }
    }
    Ok(())
}

/// The JSON line for one group message.
pub(crate) fn json_line(m: &Message) -> serde_json::Value {
    let mut line = serde_json::json!({
        "group": m.group.map(|g| g.0),
        "sender": m.sender.as_str(),
        "sent_at": m.sent_at.0,
    });
    match (m.kind, m.text()) {
        (MessageKind::Text, Some(text)) => {
            line["kind"] = "text".into();
            line["text"] = text.into();
        }
        _ => {
            line["kind"] = if m.kind == MessageKind::Text {
                "text"
            } else {
                "image"
            }
            .into();
            line["bytes"] = m.data.len().into();
        }
    }
    line
}
