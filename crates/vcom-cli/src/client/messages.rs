//! `send`, `send-image` and `group-send`: one message, then a clean logout.
//!
//! The command returns only after a Ping sent behind the message came back, so the
//! server has stored the message by the time the program exits 0.

use std::path::Path;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use vcom_client::{GroupId, UserId};

use super::Global;
use super::connect::{connect, finish, lost};

/// `vcom send USER TEXT`.
pub(crate) async fn send(global: &Global, to: &UserId, text: &str) -> anyhow::Result<()> {
    let connection = connect(global).await?;
    connection
        .client
        .send_text(to, text)
        .await
        .map_err(lost)
        .with_context(|| format!("cannot send the message to {to}"))?;
    finish(connection).await?;
    println!("sent to {to}");
    Ok(())
}

/// `vcom send-image USER FILE`.
pub(crate) async fn send_image(global: &Global, to: &UserId, file: &Path) -> anyhow::Result<()> {
    let data = tokio::fs::read(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let max = vcom_client::Limits::default().max_message_len;
    if data.len() > max {
        return Err(anyhow!(
            "{} has {} bytes; an image message may hold at most {max}",
            file.display(),
            data.len()
        ));
    }
    let connection = connect(global).await?;
    connection
        .client
        .send_image(to, Bytes::from(data))
        .await
        .map_err(lost)
        .with_context(|| format!("cannot send the image to {to}"))?;
    finish(connection).await?;
    println!("sent {} to {to}", file.display());
    Ok(())
}

/// `vcom group-send GID TEXT`.
pub(crate) async fn group_send(global: &Global, group: GroupId, text: &str) -> anyhow::Result<()> {
    let connection = connect(global).await?;
    connection
        .client
        .send_group_text(group, text)
        .await
        .map_err(lost)
        .with_context(|| format!("cannot send the message to group {group}"))?;
    finish(connection).await?;
    println!("sent to group {group}");
    Ok(())
}
