//! Realistic clients for the scenarios: `vcom-client` SDK connections with their own
//! profile directories, and bounded waits for their events that fail with a sentence
//! instead of hanging.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use vcom_client::{Client, ClientConfig, Event, EventStream, Message, Trust, UserId};

use crate::harness::Target;

/// The longest one wait for an event may take.
pub const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A user identifier, or an error naming it.
pub fn uid(name: &str) -> anyhow::Result<UserId> {
    UserId::new(name).with_context(|| format!("{name:?} is not a valid user identifier"))
}

/// One logged-in SDK client (one device of one user) and its events.
#[derive(Debug)]
pub struct Device {
    /// The connection.
    pub client: Client,
    /// Everything the server sent it, in order.
    pub events: EventStream,
    label: String,
}

/// Connects `user` with the profile in `profile` (created on first use), pinning the
/// target's certificate fingerprint.
pub async fn connect(target: &Target, user: &str, profile: &Path) -> anyhow::Result<Device> {
    let config = ClientConfig::new(target.addr.to_string(), uid(user)?, profile)
        .with_trust(Trust::Fingerprint(target.cert_sha256.clone()));
    let label = format!("{user} ({})", profile.display());
    let (client, events) = tokio::time::timeout(EVENT_WAIT, Client::connect(config))
        .await
        .with_context(|| format!("{label}: connecting took longer than {EVENT_WAIT:?}"))?
        .with_context(|| format!("{label}: cannot connect"))?;
    Ok(Device {
        client,
        events,
        label,
    })
}

impl Device {
    /// Waits for the first event `pick` accepts, skipping others; fails on timeout or if
    /// the connection ends first.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> anyhow::Result<T> {
        let found = tokio::time::timeout(EVENT_WAIT, async {
            while let Some(event) = self.events.next().await {
                if let Event::Disconnected { reason } = &event {
                    bail!("disconnected while waiting for {what}: {reason:?}");
                }
                if let Some(found) = pick(event) {
                    return Ok(found);
                }
            }
            bail!("the event stream ended while waiting for {what}")
        })
        .await;
        match found {
            Ok(result) => result.with_context(|| self.label.clone()),
            Err(_) => bail!("{}: no {what} within {EVENT_WAIT:?}", self.label),
        }
    }

    /// The next direct message (264).
    pub async fn direct_message(&mut self) -> anyhow::Result<Message> {
        self.wait_for("a direct message (264)", |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await
    }

    /// A Ping round trip: once it returns, everything the server sent before its Pong
    /// has been handled (and its events queued).
    pub async fn settle(&self) -> anyhow::Result<()> {
        tokio::time::timeout(EVENT_WAIT, self.client.ping())
            .await
            .with_context(|| format!("{}: no Pong within {EVENT_WAIT:?}", self.label))?
            .with_context(|| format!("{}: ping failed", self.label))?;
        Ok(())
    }

    /// Closes the connection cleanly.
    pub async fn close(self) -> anyhow::Result<()> {
        tokio::time::timeout(EVENT_WAIT, self.client.close())
            .await
            .with_context(|| format!("{}: closing took too long", self.label))?
            .with_context(|| format!("{}: close failed", self.label))
    }
}

/// Checks that a received text message says `text` and comes from `sender`.
pub fn expect_text(message: &Message, sender: &str, text: &str) -> anyhow::Result<()> {
    if message.sender.as_str() != sender || message.text() != Some(text) {
        bail!(
            "expected {text:?} from {sender}, got {:?} from {}",
            message.text(),
            message.sender
        );
    }
    Ok(())
}
