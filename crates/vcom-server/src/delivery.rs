//! Direct (266 → 264) and group (267 → 265) messages: stored durably first, then pushed
//! to every online device of every recipient.
//!
//! Blocked senders and unknown recipients are dropped silently (logged), as
//! `docs/protocol.md` says. The checks read the in-memory directory, never the store, so
//! a message goes straight to the store's writer; a connection keeps many on their way
//! there and relays them in the order they came, so they reach each recipient in the
//! order sent.

use std::future::Future;
use std::pin::Pin;

use vcom_protocol::{
    GroupMessage, SendGroupMessage, SendUserMessage, ServerPacket, UserId, UserMessage,
};
use vcom_store::{MessageId, NewMessage, PendingMessage, Store};

use crate::connection::{Close, Conn};
use crate::stats::Stats;

/// The packet that delivers a stored message to a device.
pub(crate) fn packet_for(m: PendingMessage) -> ServerPacket {
    match m.group {
        None => ServerPacket::from(UserMessage {
            sender: m.sender,
            read: m.read,
            sent_at: m.sent_at,
            kind: m.kind,
            data: m.data,
        }),
        Some(group) => ServerPacket::from(GroupMessage {
            sender: m.sender,
            group,
            read: m.read,
            sent_at: m.sent_at,
            kind: m.kind,
            data: m.data,
        }),
    }
}

/// A message that passed the checks, on its way to the store. It resolves, once the
/// message is durable, to what must be relayed (nothing when every recipient's inbox
/// was full); a connection keeps several in flight and
/// relays them in the order they came (see `connection::read_loop`).
pub(crate) type Storing = Pin<Box<dyn Future<Output = Result<Option<Relay>, Close>> + Send>>;

/// A stored message and who should have it.
pub(crate) struct Relay {
    id: MessageId,
    packet: ServerPacket,
    recipients: Vec<UserId>,
}

/// Checks a direct message against the in-memory directory and, unless it is dropped,
/// hands it to the store.
pub(crate) fn direct<S: Store>(conn: &Conn<S>, p: SendUserMessage) -> Option<Storing> {
    let directory = &conn.shared.directory;
    let sender = conn.user();
    if !directory.knows(&p.recipient) {
        tracing::info!(from = %sender, to = %p.recipient, "message to an unknown user dropped");
        return None;
    }
    if directory.blocks(&p.recipient, sender) {
        tracing::debug!(from = %sender, to = %p.recipient, "message from a blocked sender dropped");
        return None;
    }
    Some(store(
        conn,
        NewMessage {
            sender: sender.clone(),
            origin_device: conn.device(),
            group: None,
            recipients: vec![p.recipient],
            sent_at: p.sent_at,
            received_at: crate::now(),
            kind: p.kind,
            data: p.data,
        },
    ))
}

/// Checks a group message against the in-memory directory and, unless it is dropped,
/// hands it to the store.
pub(crate) fn group<S: Store>(conn: &Conn<S>, p: SendGroupMessage) -> Option<Storing> {
    let directory = &conn.shared.directory;
    let sender = conn.user();
    let Some(members) = directory.group(p.group) else {
        tracing::info!(from = %sender, group = %p.group, "message to an unknown group dropped");
        return None;
    };
    if !members.contains(sender) {
        tracing::info!(from = %sender, group = %p.group, "message from a non-member dropped");
        return None;
    }
    let recipients = members
        .iter()
        .filter(|member| {
            if *member == sender {
                // The sender's other devices get it too; with no other device, nobody
                // would ever collect it and it would wait in the store forever.
                directory.devices(sender) > 1
            } else {
                !directory.blocks(member, sender)
            }
        })
        .cloned()
        .collect();
    Some(store(
        conn,
        NewMessage {
            sender: sender.clone(),
            origin_device: conn.device(),
            group: Some(p.group),
            recipients,
            sent_at: p.sent_at,
            received_at: crate::now(),
            kind: p.kind,
            data: p.data,
        },
    ))
}

fn store<S: Store>(conn: &Conn<S>, message: NewMessage) -> Storing {
    let store = conn.shared.store.clone();
    let recipients = message.recipients.clone();
    let packet = packet_for(PendingMessage {
        id: MessageId(0),
        sender: message.sender.clone(),
        group: message.group,
        sent_at: message.sent_at,
        kind: message.kind,
        data: message.data.clone(),
        read: false,
    });
    Box::pin(async move {
        let stored = store.store_message(message).await?;
        // A recipient whose inbox is full did not get it stored (the store logged it):
        // it is not relayed to them either.
        let recipients = recipients
            .into_iter()
            .filter(|r| !stored.refused.contains(r))
            .collect();
        Ok(stored.id.map(|id| Relay {
            id,
            packet,
            recipients,
        }))
    })
}

/// Queues a stored message for every online device of its recipients except the
/// connection it came from.
pub(crate) fn relay<S>(conn: &Conn<S>, relay: Option<Relay>) {
    let Some(relay) = relay else {
        return;
    };
    let shared = &conn.shared;
    Stats::bump(&shared.stats.messages);
    shared.sessions.push_message(
        &relay.recipients,
        conn.session.conn,
        relay.id,
        &relay.packet,
    );
}
