//! proptest strategies for every packet, each value within [`Limits::default`].
//!
//! [`Limits::default`]: vcom_protocol::Limits

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use vcom_protocol::*;

/// A valid user identifier of 1 to 16 printable characters (at most 64 bytes).
pub fn user_id() -> impl Strategy<Value = UserId> {
    "\\PC{1,16}".prop_filter_map("a valid user identifier", |s| UserId::new(s).ok())
}

/// Any text of up to 64 characters, control characters and newlines included.
pub fn text() -> impl Strategy<Value = String> {
    "(?s).{0,64}"
}

/// A file name of 1 to 60 printable characters (at most 240 bytes).
pub fn file_name() -> impl Strategy<Value = String> {
    "\\PC{1,60}"
}

/// Up to `max` arbitrary bytes.
pub fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// A message body: up to 512 arbitrary bytes (text or image data alike).
pub fn message_data() -> impl Strategy<Value = Bytes> {
    bytes(512)
}

/// Any file size the wire can carry: 1 to `i32::MAX`.
pub fn file_size() -> impl Strategy<Value = FileSize> {
    (1..=i32::MAX).prop_filter_map("a positive size", |n| {
        u64::try_from(n).ok().and_then(FileSize::new)
    })
}

/// Text or image.
pub fn message_kind() -> impl Strategy<Value = MessageKind> {
    any::<bool>().prop_map(MessageKind::from_is_text)
}

/// Any timestamp.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

/// Any transfer identifier.
pub fn transfer() -> impl Strategy<Value = TransferId> {
    any::<i32>().prop_map(TransferId)
}

/// A list of up to 8 user identifiers.
pub fn user_list() -> impl Strategy<Value = Vec<UserId>> {
    vec(user_id(), 0..=8)
}

/// One block of a UserListsSync (260): in sync, "send me yours", or an upload.
pub fn list_sync() -> impl Strategy<Value = ListSync> {
    prop_oneof![
        Just(ListSync::InSync),
        Just(ListSync::SendServerList),
        user_list().prop_map(ListSync::Upload),
    ]
}

/// 256: any text up to 64 characters as the user (the server judges it), any device,
/// a password of up to 256 bytes.
pub fn connection_request() -> impl Strategy<Value = ConnectionRequest> {
    (text(), any::<i32>(), bytes(256)).prop_map(|(user, device, password)| ConnectionRequest {
        user,
        device: DeviceId(device),
        password,
    })
}

/// 258 with any code, the unknown ones included.
pub fn connection_denied() -> impl Strategy<Value = ConnectionDenied> {
    any::<i8>().prop_map(|c| ConnectionDenied {
        code: DenyCode::from_code(c),
    })
}

/// 264.
pub fn user_message() -> impl Strategy<Value = UserMessage> {
    (
        user_id(),
        any::<bool>(),
        timestamp(),
        message_kind(),
        message_data(),
    )
        .prop_map(|(sender, read, sent_at, kind, data)| UserMessage {
            sender,
            read,
            sent_at,
            kind,
            data,
        })
}

/// 265.
pub fn group_message() -> impl Strategy<Value = GroupMessage> {
    (
        user_id(),
        any::<i32>(),
        any::<bool>(),
        timestamp(),
        message_kind(),
        message_data(),
    )
        .prop_map(|(sender, group, read, sent_at, kind, data)| GroupMessage {
            sender,
            group: GroupId(group),
            read,
            sent_at,
            kind,
            data,
        })
}

/// 266.
pub fn send_user_message() -> impl Strategy<Value = SendUserMessage> {
    (user_id(), timestamp(), message_kind(), message_data()).prop_map(
        |(recipient, sent_at, kind, data)| SendUserMessage {
            recipient,
            sent_at,
            kind,
            data,
        },
    )
}

/// 267.
pub fn send_group_message() -> impl Strategy<Value = SendGroupMessage> {
    (any::<i32>(), timestamp(), message_kind(), message_data()).prop_map(
        |(group, sent_at, kind, data)| SendGroupMessage {
            group: GroupId(group),
            sent_at,
            kind,
            data,
        },
    )
}

/// 268.
pub fn file_transfer_request() -> impl Strategy<Value = FileTransferRequest> {
    (user_id(), file_size(), file_name()).prop_map(|(recipient, size, name)| FileTransferRequest {
        recipient,
        size,
        name,
    })
}

/// 270 with any reason, the unknown ones included.
pub fn file_transfer_abort() -> impl Strategy<Value = FileTransferAbort> {
    (transfer(), any::<i32>()).prop_map(|(transfer, reason)| FileTransferAbort {
        transfer,
        reason: AbortReason::from_code(reason),
    })
}

/// 271.
pub fn file_transfer_offer() -> impl Strategy<Value = FileTransferOffer> {
    (user_id(), file_size(), file_name(), transfer()).prop_map(|(sender, size, name, transfer)| {
        FileTransferOffer {
            sender,
            size,
            name,
            transfer,
        }
    })
}

/// 273 with 1 to 1024 bytes.
pub fn file_chunk() -> impl Strategy<Value = FileChunk> {
    (transfer(), vec(any::<u8>(), 1..=Limits::MAX_CHUNK_LEN)).prop_map(|(transfer, data)| {
        FileChunk {
            transfer,
            data: Bytes::from(data),
        }
    })
}

/// 517 with any outcome, the unknown ones included.
pub fn send_ack() -> impl Strategy<Value = SendAck> {
    (any::<i64>(), any::<i8>()).prop_map(|(client_id, outcome)| SendAck {
        client_id,
        outcome: SendOutcome::from_code(outcome),
    })
}

/// A group name as a packet carries it: any text up to the decoder's cap, valid or not
/// as a [`GroupName`].
pub fn group_name() -> impl Strategy<Value = String> {
    "\\PC{0,20}".prop_filter("within the cap", |s| s.len() <= Limits::GROUP_NAME_CAP)
}

/// 525 with or without an owner.
pub fn group_info() -> impl Strategy<Value = GroupInfo> {
    (
        any::<i32>(),
        group_name(),
        proptest::option::of(user_id()),
        user_list(),
    )
        .prop_map(|(group, name, owner, members)| GroupInfo {
            group: GroupId(group),
            name,
            owner,
            members,
        })
}

/// Any packet a client may send.
pub fn client_packet() -> impl Strategy<Value = ClientPacket> {
    prop_oneof![
        connection_request().prop_map(ClientPacket::from),
        (list_sync(), list_sync())
            .prop_map(|(friends, blocks)| UserListsSync { friends, blocks }.into()),
        send_user_message().prop_map(ClientPacket::from),
        send_group_message().prop_map(ClientPacket::from),
        file_transfer_request().prop_map(ClientPacket::from),
        file_transfer_abort().prop_map(ClientPacket::from),
        transfer().prop_map(|transfer| FileTransferAccept { transfer }.into()),
        file_chunk().prop_map(ClientPacket::from),
        transfer().prop_map(|transfer| FileTransferComplete { transfer }.into()),
        any::<i64>().prop_map(|nonce| Ping { nonce }.into()),
        any::<i64>().prop_map(|nonce| Pong { nonce }.into()),
        any::<i64>().prop_map(|through| Receipt { through }.into()),
        any::<i64>().prop_map(|client_id| MessageTag { client_id }.into()),
        (any::<i64>(), group_name(), user_list()).prop_map(|(request, name, members)| {
            GroupCreate {
                request,
                name,
                members,
            }
            .into()
        }),
        (any::<i64>(), any::<i32>(), group_name()).prop_map(|(request, group, name)| {
            GroupRename {
                request,
                group: GroupId(group),
                name,
            }
            .into()
        }),
        (any::<i64>(), any::<i32>(), user_id()).prop_map(|(request, group, user)| {
            GroupAddMember {
                request,
                group: GroupId(group),
                user,
            }
            .into()
        }),
        (any::<i64>(), any::<i32>(), user_id()).prop_map(|(request, group, user)| {
            GroupRemoveMember {
                request,
                group: GroupId(group),
                user,
            }
            .into()
        }),
        (any::<i64>(), any::<i32>()).prop_map(|(request, group)| GroupLeave {
            request,
            group: GroupId(group)
        }
        .into()),
    ]
}

/// Any packet a server may send.
pub fn server_packet() -> impl Strategy<Value = ServerPacket> {
    prop_oneof![
        any::<i32>().prop_map(|d| ConnectionAccepted {
            device: DeviceId(d)
        }
        .into()),
        connection_denied().prop_map(ServerPacket::from),
        (timestamp(), timestamp()).prop_map(|(friends, blocks)| RequestUserListsSync {
            friends,
            blocks
        }
        .into()),
        user_list().prop_map(|entries| FriendList { entries }.into()),
        user_list().prop_map(|entries| BlockList { entries }.into()),
        text().prop_map(|text| Broadcast { text }.into()),
        user_message().prop_map(ServerPacket::from),
        group_message().prop_map(ServerPacket::from),
        transfer().prop_map(|transfer| FileTransferId { transfer }.into()),
        file_transfer_abort().prop_map(ServerPacket::from),
        file_transfer_offer().prop_map(ServerPacket::from),
        transfer().prop_map(|transfer| FileTransferAccept { transfer }.into()),
        file_chunk().prop_map(ServerPacket::from),
        transfer().prop_map(|transfer| FileTransferComplete { transfer }.into()),
        any::<i64>().prop_map(|nonce| Ping { nonce }.into()),
        any::<i64>().prop_map(|nonce| Pong { nonce }.into()),
        any::<i64>().prop_map(|seq| Sequence { seq }.into()),
        send_ack().prop_map(ServerPacket::from),
        (any::<i64>(), any::<i8>(), any::<i32>()).prop_map(|(request, outcome, group)| {
            GroupResult {
                request,
                outcome: GroupOutcome::from_code(outcome),
                group: GroupId(group),
            }
            .into()
        }),
        vec(any::<i32>(), 0..=8).prop_map(|groups| GroupList {
            groups: groups.into_iter().map(GroupId).collect()
        }
        .into()),
        group_info().prop_map(ServerPacket::from),
        (any::<i32>(), any::<i8>()).prop_map(|(group, reason)| GroupRemoved {
            group: GroupId(group),
            reason: GroupExit::from_code(reason),
        }
        .into()),
    ]
}
