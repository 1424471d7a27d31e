//! `send`, `send-image` and `group-send`: one message, then a clean logout.
//!
//! The command exits 0 only once the server has stored the message: with a server that
//! confirms messages (`vcom/1+ext`), on its answer; with one that does not, after a Ping
//! sent behind the message came back. A message the server refuses (an unknown user, a
//! group this user is not in, a full inbox) exits 1 with the reason.

use std::path::Path;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use vcom_client::{Delivery, GroupId, UserId};

use super::Global;
use super::connect::{connect, finish, lost};

/// `vcom send USER TEXT`.
pub(crate) async fn send(global: &Global, to: &UserId, text: &str) -> anyhow::Result<()> {
    let connection = connect(global).await?;
    let delivery = connection
        .client
        .send_text(to, text)
        .await
        .map_err(lost)
        .with_context(|| format!("cannot send the message to {to}"))?;
    finish(connection).await?;
    let state = delivered(delivery, &format!("the message to {to}"))?;
    println!("sent to {to} ({state})");
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
    let delivery = connection
        .client
        .send_image(to, Bytes::from(data))
        .await
        .map_err(lost)
        .with_context(|| format!("cannot send the image to {to}"))?;
    finish(connection).await?;
    let state = delivered(delivery, &format!("the image to {to}"))?;
    println!("sent {} to {to} ({state})", file.display());
    Ok(())
}

/// `vcom group-send GID TEXT`.
pub(crate) async fn group_send(global: &Global, group: GroupId, text: &str) -> anyhow::Result<()> {
    let connection = connect(global).await?;
    let delivery = connection
        .client
        .send_group_text(group, text)
        .await
        .map_err(lost)
        .with_context(|| format!("cannot send the message to group {group}"))?;
    finish(connection).await?;
    let state = delivered(delivery, &format!("the message to group {group}"))?;
    println!("sent to group {group} ({state})");
    Ok(())
}

/// What became of a message, as `vcom` says it; an error for one the server refused.
fn delivered(delivery: Delivery, what: &str) -> anyhow::Result<&'static str> {
    match delivery {
        Delivery::Stored => Ok("stored by the server"),
        Delivery::Unconfirmed => Ok("handed to the server, which does not confirm"),
        Delivery::Refused(outcome) => Err(anyhow!("the server did not store {what}: {outcome}")),
    }
}
