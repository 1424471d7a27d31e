//! Direct (266 → 264) and group (267 → 265) messages: stored durably first, then pushed
//! to every online device of every recipient.
//!
//! Blocked senders and unknown recipients are dropped silently (logged), as
//! `DESIGN.md` section 3 says. Messages of one sender are handled one at a time, so they
//! reach each recipient in the order sent.

use vcom_protocol::{GroupMessage, SendGroupMessage, SendUserMessage, ServerPacket, UserMessage};
use vcom_store::{NewMessage, PendingMessage, Store};

use crate::connection::{Close, Conn};
use crate::session::Outbound;
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

pub(crate) async fn on_direct<S: Store>(conn: &Conn<S>, p: SendUserMessage) -> Result<(), Close> {
    let store = &conn.shared.store;
    let sender = conn.user().clone();
    // A recipient with a session online exists: a session is registered only after its
    // login was committed, and users are never deleted. That skips one store read (a
    // blocking-pool round trip) for most messages.
    let online = !conn.shared.sessions.of_user(&p.recipient).is_empty();
    if !online && store.user(&p.recipient).await?.is_none() {
        tracing::info!(from = %sender, to = %p.recipient, "message to an unknown user dropped");
        return Ok(());
    }
    if store.is_blocked(&p.recipient, &sender).await? {
        tracing::debug!(from = %sender, to = %p.recipient, "message from a blocked sender dropped");
        return Ok(());
    }
    let message = NewMessage {
        sender: sender.clone(),
        origin_device: conn.device(),
        group: None,
        recipients: vec![p.recipient.clone()],
        sent_at: p.sent_at,
        received_at: crate::now(),
        kind: p.kind,
        data: p.data,
    };
    relay(conn, message).await
}

pub(crate) async fn on_group<S: Store>(conn: &Conn<S>, p: SendGroupMessage) -> Result<(), Close> {
    let store = &conn.shared.store;
    let sender = conn.user().clone();
    let Some(group) = store.group(p.group).await? else {
        tracing::info!(from = %sender, group = %p.group, "message to an unknown group dropped");
        return Ok(());
    };
    if !group.members.contains(&sender) {
        tracing::info!(from = %sender, group = %p.group, "message from a non-member dropped");
        return Ok(());
    }
    let mut recipients = Vec::with_capacity(group.members.len());
    for member in group.members {
        let wanted = if member == sender {
            // The sender's other devices get it too; with no other device, nobody would
            // ever collect it and it would wait in the store forever.
            store
                .devices(&sender)
                .await?
                .iter()
                .any(|d| d.id != conn.device())
        } else {
            !store.is_blocked(&member, &sender).await?
        };
        if wanted {
            recipients.push(member);
        }
    }
    let message = NewMessage {
        sender,
        origin_device: conn.device(),
        group: Some(p.group),
        recipients,
        sent_at: p.sent_at,
        received_at: crate::now(),
        kind: p.kind,
        data: p.data,
    };
    relay(conn, message).await
}

/// Stores the message, then queues it for every online device of its recipients except
/// the device it came from.
async fn relay<S: Store>(conn: &Conn<S>, message: NewMessage) -> Result<(), Close> {
    let shared = &conn.shared;
    let recipients = message.recipients.clone();
    let pending = PendingMessage {
        id: vcom_store::MessageId(0),
        sender: message.sender.clone(),
        group: message.group,
        sent_at: message.sent_at,
        kind: message.kind,
        data: message.data.clone(),
        read: false,
    };
    let id = shared.store.store_message(message).await?;
    Stats::bump(&shared.stats.messages);
    let packet = packet_for(PendingMessage { id, ..pending });
    for user in &recipients {
        for session in shared.sessions.of_user(user) {
            if session.conn != conn.session.conn {
                session.push(Outbound::Message {
                    id,
                    packet: packet.clone(),
                });
            }
        }
    }
    Ok(())
}
