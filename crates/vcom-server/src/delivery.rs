//! Direct (266 → 264) and group (267 → 265) messages: stored durably first, then pushed
//! to every online device of every recipient.
//!
//! Blocked senders and unknown recipients are dropped silently (logged), as
//! `docs/protocol.md` says; a sender that tagged the message (516) is told the outcome
//! (517), "stored" for a blocked one. The checks read the in-memory directory, never the
//! store, so a message goes straight to the store's writer; a connection keeps many on
//! their way there. The relay runs from the store's commit hook, in commit order: every
//! device receives its messages in sequence order, which is what lets a device's cursor
//! say "everything through N".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use vcom_protocol::{
    GroupMessage, SendAck, SendGroupMessage, SendOutcome, SendUserMessage, ServerPacket,
    UserMessage,
};
use vcom_store::{MessageId, NewMessage, OnCommit, PendingMessage, Store};

use crate::connection::{Close, Conn};
use crate::inbound::Message;
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

/// A message on its way to the store: resolves once its commit is known (the relay and
/// the send acknowledgement already happened, in commit order, from the store's commit
/// hook). A connection keeps several in flight (see `connection::read_loop`).
pub(crate) type Storing = Pin<Box<dyn Future<Output = Result<(), Close>> + Send>>;

/// What the reader does with a message (266 or 267).
pub(crate) enum Sent {
    /// On its way to the store.
    Storing(Storing),
    /// Not stored, with the outcome a tagged sender is told.
    Dropped(SendOutcome),
}

/// Checks a message against the in-memory directory and, unless it is dropped, hands
/// it to the store. `tag` is the client message id of a preceding 516.
pub(crate) fn message<S: Store>(conn: &Conn<S>, message: Message, tag: Option<i64>) -> Sent {
    match message {
        Message::Direct(p) => direct(conn, p, tag),
        Message::Group(p) => group(conn, p, tag),
    }
}

/// Checks a direct message against the in-memory directory and, unless it is dropped,
/// hands it to the store. `tag` is the client message id of a preceding 516.
fn direct<S: Store>(conn: &Conn<S>, p: SendUserMessage, tag: Option<i64>) -> Sent {
    let directory = &conn.shared.directory;
    let sender = conn.user();
    if !directory.knows(&p.recipient) {
        tracing::info!(from = %sender, to = %p.recipient, "message to an unknown user dropped");
        return Sent::Dropped(SendOutcome::UnknownRecipient);
    }
    let blocked = directory.blocks(&p.recipient, sender);
    if blocked {
        tracing::debug!(from = %sender, to = %p.recipient, "message from a blocked sender dropped");
        if tag.is_none() {
            return Sent::Dropped(SendOutcome::Stored);
        }
        // Blocking stays invisible: a tagged sender hears "stored", in the same order
        // and after the same commit as for any message, so neither the answer nor its
        // timing tells. The message is kept for nobody (retention removes it).
    }
    Sent::Storing(store(
        conn,
        NewMessage {
            sender: sender.clone(),
            origin_device: conn.device(),
            group: None,
            recipients: if blocked {
                Vec::new()
            } else {
                vec![p.recipient]
            },
            tag,
            sent_at: p.sent_at,
            received_at: crate::now(),
            kind: p.kind,
            data: p.data,
        },
    ))
}

/// Checks a group message against the in-memory directory and, unless it is dropped,
/// hands it to the store (once, whatever the number of members).
fn group<S: Store>(conn: &Conn<S>, p: SendGroupMessage, tag: Option<i64>) -> Sent {
    let directory = &conn.shared.directory;
    let sender = conn.user();
    let Some(members) = directory.group(p.group) else {
        tracing::info!(from = %sender, group = %p.group, "message to an unknown group dropped");
        return Sent::Dropped(SendOutcome::NotAMember);
    };
    if !members.contains(sender) {
        tracing::info!(from = %sender, group = %p.group, "message from a non-member dropped");
        return Sent::Dropped(SendOutcome::NotAMember);
    }
    // Who it is relayed to is decided when it commits (see `store`): members offline
    // read it from the store at login.
    Sent::Storing(store(
        conn,
        NewMessage {
            sender: sender.clone(),
            origin_device: conn.device(),
            group: Some(p.group),
            recipients: Vec::new(),
            tag,
            sent_at: p.sent_at,
            received_at: crate::now(),
            kind: p.kind,
            data: p.data,
        },
    ))
}

/// Hands a message to the store with a hook that, once it is durable, relays it to
/// every online device of its recipients (but the connection it came from) and answers
/// a tagged sender. The hook runs in commit order, so every device receives messages in
/// sequence order.
fn store<S: Store>(conn: &Conn<S>, message: NewMessage) -> Storing {
    let shared = Arc::clone(&conn.shared);
    let origin = conn.session.clone();
    let tag = message.tag;
    let mut recipients = message.recipients.clone();
    let group = message.group;
    // One packet for every session it goes to.
    let packet = Arc::new(packet_for(PendingMessage {
        id: MessageId(0),
        sender: message.sender.clone(),
        group: message.group,
        sent_at: message.sent_at,
        kind: message.kind,
        data: message.data.clone(),
        read: false,
    }));
    let handed = std::time::Instant::now();
    let bytes = message.data.len() as u64;
    let on_commit: OnCommit = Box::new(move |stored| {
        shared
            .stats
            .commit_seconds
            .observe(handed.elapsed().as_secs_f64());
        let Ok(stored) = stored else {
            return; // the reader closes the connection; the client sends it again
        };
        if let Some(client_id) = tag {
            let outcome = match stored.id {
                Some(_) => SendOutcome::Stored,
                None => SendOutcome::InboxFull,
            };
            origin.push(Outbound::packet(SendAck { client_id, outcome }));
        }
        let Some(id) = stored.id.filter(|_| !stored.duplicate) else {
            return;
        };
        match group {
            // A direct message goes to the inboxes it was stored in: a recipient whose
            // inbox is full did not get it (the store logged it), nor the relay.
            None => recipients.retain(|r| !stored.refused.contains(r)),
            // A group message goes to the members as of its commit, with the block
            // lists as of its commit: exactly those whose backlog would hold it, so a
            // member added (or a block lifted) while it was on its way gets it live,
            // and the cursor never passes a message the member should have had. The
            // sender's own other devices get it too.
            Some(group) => {
                let directory = &shared.directory;
                recipients = directory.group(group).map_or_else(Vec::new, |members| {
                    members
                        .iter()
                        .filter(|m| **m == origin.user || !directory.blocks(m, &origin.user))
                        .cloned()
                        .collect()
                });
            }
        }
        if recipients.is_empty() {
            return;
        }
        Stats::bump(&shared.stats.messages);
        shared
            .stats
            .message_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        if shared.cluster.enabled() {
            // On a cluster, another node may have committed a lower id that this node
            // has not yet heard of: pushed live, this one would carry a device's cursor
            // past it. The sessions read it from the store instead, in id order.
            crate::cluster::wake(&shared, &recipients, origin.conn);
        } else {
            shared
                .sessions
                .push_message(&recipients, origin.conn, id, &packet);
        }
    });
    // Called here, in the order the reader reads messages, not when the future is
    // first polled: the store commits messages in the order of its calls, and the
    // reader's set of futures in flight may first poll a newer one before an older one.
    let storing = conn.shared.store.store_message(message, on_commit);
    Box::pin(async move {
        storing.await?;
        Ok(())
    })
}
