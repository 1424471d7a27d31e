//! The golden vectors: one representative value of every packet, in every direction it
//! travels, with realistic fields. `tests/golden.rs` snapshots their bytes and the fuzz
//! seed corpus is made from them.

use bytes::Bytes;
use vcom_protocol::*;

/// The timestamp the vectors use: 2023-11-14T22:13:20Z.
pub const T: Timestamp = Timestamp(1_700_000_000_000);

/// Which way a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::ClientToServer => "C->S",
            Direction::ServerToClient => "S->C",
        })
    }
}

/// A packet of either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPacket {
    /// Sent by a client.
    Client(ClientPacket),
    /// Sent by a server.
    Server(ServerPacket),
}

impl AnyPacket {
    /// The packet's identifier.
    pub fn id(&self) -> i32 {
        match self {
            AnyPacket::Client(p) => p.id(),
            AnyPacket::Server(p) => p.id(),
        }
    }

    /// The packet's name.
    pub fn name(&self) -> &'static str {
        match self {
            AnyPacket::Client(p) => p.name(),
            AnyPacket::Server(p) => p.name(),
        }
    }

    /// Which way it travels.
    pub fn direction(&self) -> Direction {
        match self {
            AnyPacket::Client(_) => Direction::ClientToServer,
            AnyPacket::Server(_) => Direction::ServerToClient,
        }
    }

    /// Its encoding.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            AnyPacket::Client(p) => p.to_bytes(),
            AnyPacket::Server(p) => p.to_bytes(),
        }
    }

    /// Decodes `bytes` with the receiving side's decoder and default limits.
    pub fn decode_like(&self, bytes: &[u8]) -> Result<Decoded<AnyPacket>, DecodeError> {
        let limits = Limits::default();
        Ok(match self {
            AnyPacket::Client(_) => match ClientPacket::decode(bytes, &limits)? {
                Decoded::Complete { packet, len } => Decoded::Complete {
                    packet: AnyPacket::Client(packet),
                    len,
                },
                Decoded::Incomplete { needed } => Decoded::Incomplete { needed },
            },
            AnyPacket::Server(_) => match ServerPacket::decode(bytes, &limits)? {
                Decoded::Complete { packet, len } => Decoded::Complete {
                    packet: AnyPacket::Server(packet),
                    len,
                },
                Decoded::Incomplete { needed } => Decoded::Incomplete { needed },
            },
        })
    }
}

/// One golden vector: a snapshot name and the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    /// The snapshot's name: `<id>_<what>_<direction>`.
    pub name: String,
    /// The packet.
    pub packet: AnyPacket,
}

fn user(name: &str) -> UserId {
    match UserId::new(name) {
        Ok(user) => user,
        Err(e) => panic!("golden vector user {name:?} is invalid: {e}"),
    }
}

fn size(bytes: u64) -> FileSize {
    match FileSize::new(bytes) {
        Some(size) => size,
        None => panic!("golden vector file size {bytes} is invalid"),
    }
}

fn c(name: &str, packet: impl Into<ClientPacket>) -> Vector {
    Vector {
        name: format!("{name}_c2s"),
        packet: AnyPacket::Client(packet.into()),
    }
}

fn s(name: &str, packet: impl Into<ServerPacket>) -> Vector {
    Vector {
        name: format!("{name}_s2c"),
        packet: AnyPacket::Server(packet.into()),
    }
}

/// The start of a PNG file: image data that is not UTF-8.
pub const PNG_HEAD: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// A UserListsSync (260) block for a flag: 0 and 1 carry nothing, 2 carries `upload`.
fn block(flag: i8, upload: &[&str]) -> ListSync {
    match flag {
        0 => ListSync::InSync,
        1 => ListSync::SendServerList,
        _ => ListSync::Upload(upload.iter().map(|u| user(u)).collect()),
    }
}

/// The client message id the MessageTag (516) and SendAck (517) vectors carry.
pub const CLIENT_ID: i64 = 0x0123_4567_89ab_cdef;

/// Every golden vector: each packet 256-274 and 512-526 in each direction it travels,
/// 258 with a wiki code and an extension code, 260 with all nine flag combinations, and
/// 517 with each of its four outcomes.
pub fn all() -> Vec<Vector> {
    let mut v = vec![
        c(
            "256_connection_request_new_device",
            ConnectionRequest {
                user: "alice".into(),
                device: DeviceId::NEW,
                password: Bytes::new(),
            },
        ),
        c(
            "256_connection_request_known_device_with_password",
            ConnectionRequest {
                user: "alice".into(),
                device: DeviceId(7),
                password: Bytes::from_static(b"s3cret"),
            },
        ),
        c(
            "256_connection_request_non_ascii_user",
            ConnectionRequest {
                user: "zoë".into(),
                device: DeviceId(7),
                password: Bytes::new(),
            },
        ),
        s(
            "257_connection_accepted",
            ConnectionAccepted {
                device: DeviceId(7),
            },
        ),
        s(
            "258_connection_denied_user_blacklisted",
            ConnectionDenied {
                code: DenyCode::UserBlacklisted,
            },
        ),
        s(
            "258_connection_denied_invalid_user",
            ConnectionDenied {
                code: DenyCode::InvalidUser,
            },
        ),
        s(
            "259_request_user_lists_sync",
            RequestUserListsSync {
                friends: T,
                blocks: Timestamp::NEVER,
            },
        ),
    ];
    for friends in 0..=2 {
        for blocks in 0..=2 {
            v.push(c(
                &format!("260_user_lists_sync_friends_{friends}_blocks_{blocks}"),
                UserListsSync {
                    friends: block(friends, &["bob", "zoë"]),
                    blocks: block(blocks, &["mallory"]),
                },
            ));
        }
    }
    v.extend([
        c(
            "260_user_lists_sync_empty_uploads",
            UserListsSync {
                friends: ListSync::Upload(Vec::new()),
                blocks: ListSync::Upload(Vec::new()),
            },
        ),
        s(
            "261_friend_list",
            FriendList {
                entries: vec![user("bob"), user("carol"), user("zoë")],
            },
        ),
        s(
            "261_friend_list_empty",
            FriendList {
                entries: Vec::new(),
            },
        ),
        s(
            "262_block_list",
            BlockList {
                entries: vec![user("mallory")],
            },
        ),
        s(
            "263_broadcast",
            Broadcast {
                text: "Wartung um 22:00 – bitte speichern".into(),
            },
        ),
        s(
            "264_user_message_text",
            UserMessage {
                sender: user("alice"),
                read: false,
                sent_at: T,
                kind: MessageKind::Text,
                data: Bytes::from_static(b"hello, bob"),
            },
        ),
        s(
            "264_user_message_image_already_read",
            UserMessage {
                sender: user("alice"),
                read: true,
                sent_at: T,
                kind: MessageKind::Image,
                data: Bytes::from_static(PNG_HEAD),
            },
        ),
        s(
            "265_group_message",
            GroupMessage {
                sender: user("alice"),
                group: GroupId(42),
                read: false,
                sent_at: T,
                kind: MessageKind::Text,
                data: Bytes::from("Grüße an alle 👋"),
            },
        ),
        c(
            "266_send_user_message",
            SendUserMessage {
                recipient: user("bob"),
                sent_at: T,
                kind: MessageKind::Text,
                data: Bytes::from("こんにちは"),
            },
        ),
        c(
            "267_send_group_message_image",
            SendGroupMessage {
                group: GroupId(42),
                sent_at: T,
                kind: MessageKind::Image,
                data: Bytes::from_static(PNG_HEAD),
            },
        ),
        c(
            "268_file_transfer_request",
            FileTransferRequest {
                recipient: user("bob"),
                size: size(2048),
                name: "résumé.pdf".into(),
            },
        ),
        s(
            "269_file_transfer_id",
            FileTransferId {
                transfer: TransferId(17),
            },
        ),
        s(
            "270_file_transfer_abort_not_allowed",
            FileTransferAbort {
                transfer: TransferId(17),
                reason: AbortReason::NotAllowed,
            },
        ),
        c(
            "270_file_transfer_abort_declined",
            FileTransferAbort {
                transfer: TransferId(17),
                reason: AbortReason::Declined,
            },
        ),
        s(
            "271_file_transfer_offer",
            FileTransferOffer {
                sender: user("alice"),
                size: size(2048),
                name: "résumé.pdf".into(),
                transfer: TransferId(17),
            },
        ),
        c(
            "272_file_transfer_accept",
            FileTransferAccept {
                transfer: TransferId(17),
            },
        ),
        s(
            "272_file_transfer_accept",
            FileTransferAccept {
                transfer: TransferId(17),
            },
        ),
        c(
            "273_file_chunk",
            FileChunk {
                transfer: TransferId(17),
                data: Bytes::from_static(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
            },
        ),
        s(
            "273_file_chunk",
            FileChunk {
                transfer: TransferId(17),
                data: Bytes::from_static(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
            },
        ),
        c(
            "274_file_transfer_complete",
            FileTransferComplete {
                transfer: TransferId(17),
            },
        ),
        s(
            "274_file_transfer_complete",
            FileTransferComplete {
                transfer: TransferId(17),
            },
        ),
        c("512_ping", Ping { nonce: 1 }),
        s("512_ping", Ping { nonce: T.0 }),
        c("513_pong", Pong { nonce: T.0 }),
        s("513_pong", Pong { nonce: 1 }),
        s("514_sequence", Sequence { seq: 1234 }),
        c("515_receipt", Receipt { through: 1234 }),
        c(
            "516_message_tag",
            MessageTag {
                client_id: CLIENT_ID,
            },
        ),
    ]);
    v.extend([
        c(
            "518_group_create",
            GroupCreate {
                request: 1,
                name: "Café crew".into(),
                members: vec![user("bob"), user("zoë")],
            },
        ),
        c(
            "519_group_rename",
            GroupRename {
                request: 2,
                group: GroupId(42),
                name: "ops".into(),
            },
        ),
        c(
            "520_group_add_member",
            GroupAddMember {
                request: 3,
                group: GroupId(42),
                user: user("carol"),
            },
        ),
        c(
            "521_group_remove_member",
            GroupRemoveMember {
                request: 4,
                group: GroupId(42),
                user: user("bob"),
            },
        ),
        c(
            "522_group_leave",
            GroupLeave {
                request: 5,
                group: GroupId(42),
            },
        ),
        s(
            "523_group_result_done",
            GroupResult {
                request: 1,
                outcome: GroupOutcome::Done,
                group: GroupId(42),
            },
        ),
        s(
            "523_group_result_not_owner",
            GroupResult {
                request: 3,
                outcome: GroupOutcome::NotOwner,
                group: GroupId(42),
            },
        ),
        s(
            "524_group_list",
            GroupList {
                groups: vec![GroupId(7), GroupId(42)],
            },
        ),
        s(
            "525_group_info_owned",
            GroupInfo {
                group: GroupId(42),
                name: "Café crew".into(),
                owner: Some(user("alice")),
                members: vec![user("alice"), user("bob")],
            },
        ),
        s(
            "525_group_info_admin_group",
            GroupInfo {
                group: GroupId(7),
                name: "staff".into(),
                owner: None,
                members: vec![user("alice")],
            },
        ),
        s(
            "526_group_removed",
            GroupRemoved {
                group: GroupId(42),
                reason: GroupExit::Removed,
            },
        ),
    ]);
    for (what, outcome) in [
        ("stored", SendOutcome::Stored),
        ("unknown_recipient", SendOutcome::UnknownRecipient),
        ("not_a_member", SendOutcome::NotAMember),
        ("inbox_full", SendOutcome::InboxFull),
    ] {
        v.push(s(
            &format!("517_send_ack_{what}"),
            SendAck {
                client_id: CLIENT_ID,
                outcome,
            },
        ));
    }
    v
}
