//! What each packet of a logged-in connection asks of the server, in the order they
//! come: the reader's rules as a state machine, with no socket, store or clock inside.
//!
//! The reader (`connection::read_loop`) decodes a packet, asks [`Inbound::on`] what it
//! means, and carries the [`Step`] out: a message is checked and handed to the store at
//! once (many may be on their way), a receipt moves the device's cursor, and any other
//! packet waits until everything before it is done. The rules of the extension set
//! (`docs/protocol.md`, "Negotiation"): 515, 516 and the group requests 518-522 only on
//! a `vcom/1+ext` connection;
//! a 516 names the very next packet, which must be a 266 or 267; a receipt never
//! confirms more than was written to this connection.

use vcom_protocol::{ClientPacket, SendGroupMessage, SendUserMessage};
use vcom_store::MessageId;

/// Why a connection in wiki mode is closed for an extension packet (515, 516, 518-522).
pub(crate) fn without_extension_set(packet: &ClientPacket) -> String {
    format!(
        "{} ({}), an extension packet, without negotiating vcom/1+ext",
        packet.name(),
        packet.id()
    )
}

/// A message the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// 266.
    Direct(SendUserMessage),
    /// 267.
    Group(SendGroupMessage),
}

/// What the reader does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Check the message against the directory and hand it to the store now, named by
    /// the client's message id when a 516 came just before it.
    Store(Message, Option<i64>),
    /// Move the device's cursor up to this sequence number (a receipt).
    Confirm(MessageId),
    /// Nothing to do (a 516 remembered for the next packet, a receipt confirming
    /// nothing).
    Nothing,
    /// Handle the packet once every message before it is stored and relayed and every
    /// receipt before it recorded, so that its answer (a Pong above all) follows them.
    InOrder(ClientPacket),
    /// The packet breaks a rule: close the connection, for this reason.
    Close(String),
}

/// The reader's state: the extension set negotiated, and a 516 waiting for its message.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    ext: bool,
    tag: Option<i64>,
}

impl Inbound {
    /// A connection that negotiated the extension set (`vcom/1+ext`) or not.
    pub(crate) fn new(ext: bool) -> Inbound {
        Inbound { ext, tag: None }
    }

    /// The next packet; `sent` is the highest sequence number written to this
    /// connection so far.
    pub(crate) fn on(&mut self, packet: ClientPacket, sent: i64) -> Step {
        let tag = self.tag.take();
        match packet {
            ClientPacket::SendUserMessage(p) => Step::Store(Message::Direct(p), tag),
            ClientPacket::SendGroupMessage(p) => Step::Store(Message::Group(p), tag),
            other if tag.is_some() => Step::Close(format!(
                "MessageTag (516) followed by {} ({}), not by 266 or 267",
                other.name(),
                other.id()
            )),
            other if !self.ext && other.needs_extension_set() => {
                Step::Close(without_extension_set(&other))
            }
            ClientPacket::MessageTag(p) => {
                self.tag = Some(p.client_id);
                Step::Nothing
            }
            ClientPacket::Receipt(p) => match p.through.min(sent) {
                through if through > 0 => Step::Confirm(MessageId(through)),
                _ => Step::Nothing,
            },
            ClientPacket::ConnectionRequest(_) => {
                Step::Close("ConnectionRequest (256) after login".into())
            }
            other => Step::InOrder(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use vcom_protocol::{
        AbortReason, ConnectionRequest, DeviceId, FileChunk, FileSize, FileTransferAbort,
        FileTransferAccept, FileTransferComplete, FileTransferRequest, GroupAddMember, GroupCreate,
        GroupId, GroupLeave, GroupRemoveMember, GroupRename, ListSync, MessageKind, MessageTag,
        Ping, Receipt, Timestamp, TransferId, UserId, UserListsSync,
    };

    use super::*;

    fn direct() -> SendUserMessage {
        SendUserMessage {
            recipient: UserId::new("bob").unwrap(),
            sent_at: Timestamp(1),
            kind: MessageKind::Text,
            data: Bytes::from_static(b"hi"),
        }
    }

    fn group() -> SendGroupMessage {
        SendGroupMessage {
            group: GroupId(3),
            sent_at: Timestamp(1),
            kind: MessageKind::Text,
            data: Bytes::from_static(b"hi"),
        }
    }

    /// One packet of every kind a client may send after login, but 266, 267, 515 and 516
    /// (whose rules have tests of their own).
    fn others() -> Vec<ClientPacket> {
        let transfer = TransferId(5);
        vec![
            ConnectionRequest {
                user: "alice".into(),
                device: DeviceId(1),
                password: Bytes::new(),
            }
            .into(),
            UserListsSync {
                friends: ListSync::InSync,
                blocks: ListSync::SendServerList,
            }
            .into(),
            FileTransferRequest {
                recipient: UserId::new("bob").unwrap(),
                size: FileSize::new(10).unwrap(),
                name: "f".into(),
            }
            .into(),
            FileTransferAbort {
                transfer,
                reason: AbortReason::Cancelled,
            }
            .into(),
            FileTransferAccept { transfer }.into(),
            FileChunk {
                transfer,
                data: Bytes::from_static(b"x"),
            }
            .into(),
            FileTransferComplete { transfer }.into(),
            Ping { nonce: 9 }.into(),
        ]
    }

    #[test]
    fn messages_go_to_the_store_at_once_named_by_the_516_just_before_them() {
        for ext in [false, true] {
            let mut inbound = Inbound::new(ext);
            assert_eq!(
                inbound.on(direct().into(), 0),
                Step::Store(Message::Direct(direct()), None)
            );
            assert_eq!(
                inbound.on(group().into(), 0),
                Step::Store(Message::Group(group()), None)
            );
        }
        let mut inbound = Inbound::new(true);
        assert_eq!(
            inbound.on(MessageTag { client_id: 7 }.into(), 0),
            Step::Nothing
        );
        assert_eq!(
            inbound.on(direct().into(), 0),
            Step::Store(Message::Direct(direct()), Some(7))
        );
        assert_eq!(
            inbound.on(direct().into(), 0),
            Step::Store(Message::Direct(direct()), None),
            "a tag names one message only"
        );
        assert_eq!(
            inbound.on(MessageTag { client_id: 8 }.into(), 0),
            Step::Nothing
        );
        assert_eq!(
            inbound.on(group().into(), 0),
            Step::Store(Message::Group(group()), Some(8))
        );
    }

    #[test]
    fn any_other_packet_waits_for_everything_before_it_but_a_second_login() {
        for ext in [false, true] {
            for packet in others() {
                let step = Inbound::new(ext).on(packet.clone(), 0);
                match packet {
                    ClientPacket::ConnectionRequest(_) => assert_eq!(
                        step,
                        Step::Close("ConnectionRequest (256) after login".into())
                    ),
                    _ => assert_eq!(step, Step::InOrder(packet)),
                }
            }
        }
    }

    #[test]
    fn a_516_followed_by_anything_but_a_message_closes_the_connection() {
        let receipt = ClientPacket::from(Receipt { through: 1 });
        let tag = ClientPacket::from(MessageTag { client_id: 2 });
        for packet in others().into_iter().chain([receipt, tag]) {
            let mut inbound = Inbound::new(true);
            assert_eq!(
                inbound.on(MessageTag { client_id: 1 }.into(), 5),
                Step::Nothing
            );
            let expected = format!(
                "MessageTag (516) followed by {} ({}), not by 266 or 267",
                packet.name(),
                packet.id()
            );
            assert_eq!(inbound.on(packet, 5), Step::Close(expected));
        }
    }

    #[test]
    fn extension_packets_without_the_extension_set_close_the_connection() {
        let why = "MessageTag (516), an extension packet, without negotiating vcom/1+ext";
        assert_eq!(
            Inbound::new(false).on(ClientPacket::from(MessageTag { client_id: 1 }), 10),
            Step::Close(why.into())
        );
        let packet = ClientPacket::from(Receipt { through: 1 });
        assert_eq!(
            Inbound::new(false).on(packet.clone(), 10),
            Step::Close(without_extension_set(&packet))
        );
    }

    /// One group request (518-522) of each kind.
    fn group_requests() -> Vec<ClientPacket> {
        let (g, bob) = (GroupId(3), UserId::new("bob").unwrap());
        vec![
            GroupCreate {
                request: 1,
                name: "team".into(),
                members: vec![bob.clone()],
            }
            .into(),
            GroupRename {
                request: 2,
                group: g,
                name: "ops".into(),
            }
            .into(),
            GroupAddMember {
                request: 3,
                group: g,
                user: bob.clone(),
            }
            .into(),
            GroupRemoveMember {
                request: 4,
                group: g,
                user: bob,
            }
            .into(),
            GroupLeave {
                request: 5,
                group: g,
            }
            .into(),
        ]
    }

    #[test]
    fn group_requests_wait_their_turn_with_the_extension_set_and_close_without_it() {
        for packet in group_requests() {
            assert_eq!(
                Inbound::new(true).on(packet.clone(), 0),
                Step::InOrder(packet.clone())
            );
            assert_eq!(
                Inbound::new(false).on(packet.clone(), 0),
                Step::Close(without_extension_set(&packet))
            );
        }
    }

    /// Every packet kind, the messages and the extension packets included.
    fn every_kind() -> Vec<ClientPacket> {
        let mut all = others();
        all.extend([
            direct().into(),
            group().into(),
            Receipt { through: 3 }.into(),
            MessageTag { client_id: 4 }.into(),
        ]);
        all.extend(group_requests());
        all
    }

    /// Every pair of packets, with and without the extension set: a message is tagged
    /// exactly when a 516 came just before it, a tag outlives nothing else, and a
    /// connection closed by the first packet is the only way the second is not seen.
    #[test]
    fn every_pair_of_packets_follows_the_tag_rule() {
        for ext in [false, true] {
            for first in every_kind() {
                for second in every_kind() {
                    let mut inbound = Inbound::new(ext);
                    let before = inbound.on(first.clone(), 10);
                    if matches!(before, Step::Close(_)) {
                        continue;
                    }
                    let tagged_by_first = matches!(first, ClientPacket::MessageTag(_));
                    let after = inbound.on(second.clone(), 10);
                    let case = format!("ext {ext}: {} then {}", first.name(), second.name());
                    match (&second, &after) {
                        (
                            ClientPacket::SendUserMessage(_) | ClientPacket::SendGroupMessage(_),
                            Step::Store(_, tag),
                        ) => {
                            assert_eq!(tag.is_some(), tagged_by_first, "{case}");
                        }
                        (_, Step::Close(_)) => assert!(
                            tagged_by_first
                                || matches!(second, ClientPacket::ConnectionRequest(_))
                                || (!ext
                                    && matches!(
                                        second,
                                        ClientPacket::Receipt(_)
                                            | ClientPacket::MessageTag(_)
                                            | ClientPacket::GroupCreate(_)
                                            | ClientPacket::GroupRename(_)
                                            | ClientPacket::GroupAddMember(_)
                                            | ClientPacket::GroupRemoveMember(_)
                                            | ClientPacket::GroupLeave(_)
                                    )),
                            "{case}: closed"
                        ),
                        (_, step) => assert!(
                            !tagged_by_first && !matches!(step, Step::Store(..)),
                            "{case}: {step:?}"
                        ),
                    }
                }
            }
        }
    }

    /// (receipt's `through`, highest sequence number written, what it confirms).
    #[test]
    fn a_receipt_confirms_no_more_than_was_written_to_the_connection() {
        let cases = [
            (5, 10, Some(5)),
            (10, 10, Some(10)),
            (11, 10, Some(10)),
            (i64::MAX, 10, Some(10)),
            (3, 0, None),
            (0, 10, None),
            (-4, 10, None),
            (i64::MIN, 10, None),
        ];
        for (through, sent, confirms) in cases {
            let step = Inbound::new(true).on(Receipt { through }.into(), sent);
            let expected = confirms.map_or(Step::Nothing, |c| Step::Confirm(MessageId(c)));
            assert_eq!(step, expected, "through {through}, sent {sent}");
        }
    }
}
