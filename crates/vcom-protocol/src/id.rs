//! Packet identifiers: the `i32` that starts every packet on the wire.
//!
//! 256-274 are the packets of the published vCom protocol; they never change shape.
//! Identifiers from [`EXTENSION_START`] up are reserved for this project's extensions.

/// 256, C→S: ConnectionRequest, the login.
pub const CONNECTION_REQUEST: i32 = 256;
/// 257, S→C: ConnectionAccepted, with the device identifier.
pub const CONNECTION_ACCEPTED: i32 = 257;
/// 258, S→C: ConnectionDenied, with an error code; the server closes the socket after it.
pub const CONNECTION_DENIED: i32 = 258;
/// 259, S→C: RequestUserListsSync, the server's friend and block list timestamps.
pub const REQUEST_USER_LISTS_SYNC: i32 = 259;
/// 260, C→S: UserListsSync, the client's answer to 259 (or an unasked list upload).
pub const USER_LISTS_SYNC: i32 = 260;
/// 261, S→C: FriendList, the server's friend list.
pub const FRIEND_LIST: i32 = 261;
/// 262, S→C: BlockList, the server's block list.
pub const BLOCK_LIST: i32 = 262;
/// 263, S→C: Broadcast, a message from the server to every online client.
pub const BROADCAST: i32 = 263;
/// 264, S→C: UserMessage, a direct message delivered to a recipient.
pub const USER_MESSAGE: i32 = 264;
/// 265, S→C: GroupMessage, a group message delivered to a member.
pub const GROUP_MESSAGE: i32 = 265;
/// 266, C→S: SendUserMessage, a direct message for the server to deliver.
pub const SEND_USER_MESSAGE: i32 = 266;
/// 267, C→S: SendGroupMessage, a group message for the server to redistribute.
pub const SEND_GROUP_MESSAGE: i32 = 267;
/// 268, C→S: FileTransferRequest, an offer to send a file to a user.
pub const FILE_TRANSFER_REQUEST: i32 = 268;
/// 269, S→C: FileTransferId, the identifier the server gave a requested transfer.
pub const FILE_TRANSFER_ID: i32 = 269;
/// 270, both ways: FileTransferAbort, ends a transfer with a reason.
pub const FILE_TRANSFER_ABORT: i32 = 270;
/// 271, S→C: FileTransferOffer, asks a recipient whether to accept a file.
pub const FILE_TRANSFER_OFFER: i32 = 271;
/// 272, both ways: FileTransferAccept (C→S: the recipient accepts; S→C: the sender may start).
pub const FILE_TRANSFER_ACCEPT: i32 = 272;
/// 273, both ways: FileChunk, 1 to 1024 bytes of file data.
pub const FILE_CHUNK: i32 = 273;
/// 274, both ways: FileTransferComplete, the sender has sent every byte.
pub const FILE_TRANSFER_COMPLETE: i32 = 274;

/// The first identifier available to extensions; 256-511 belong to the seed protocol.
pub const EXTENSION_START: i32 = 512;

/// Every seed packet identifier, in order.
pub const ALL: [i32; 19] = [
    CONNECTION_REQUEST,
    CONNECTION_ACCEPTED,
    CONNECTION_DENIED,
    REQUEST_USER_LISTS_SYNC,
    USER_LISTS_SYNC,
    FRIEND_LIST,
    BLOCK_LIST,
    BROADCAST,
    USER_MESSAGE,
    GROUP_MESSAGE,
    SEND_USER_MESSAGE,
    SEND_GROUP_MESSAGE,
    FILE_TRANSFER_REQUEST,
    FILE_TRANSFER_ID,
    FILE_TRANSFER_ABORT,
    FILE_TRANSFER_OFFER,
    FILE_TRANSFER_ACCEPT,
    FILE_CHUNK,
    FILE_TRANSFER_COMPLETE,
];

/// The packet's name as `docs/protocol.md` uses it, or `None` for an unknown identifier.
pub fn name(id: i32) -> Option<&'static str> {
    Some(match id {
        CONNECTION_REQUEST => "ConnectionRequest",
        CONNECTION_ACCEPTED => "ConnectionAccepted",
        CONNECTION_DENIED => "ConnectionDenied",
        REQUEST_USER_LISTS_SYNC => "RequestUserListsSync",
        USER_LISTS_SYNC => "UserListsSync",
        FRIEND_LIST => "FriendList",
        BLOCK_LIST => "BlockList",
        BROADCAST => "Broadcast",
        USER_MESSAGE => "UserMessage",
        GROUP_MESSAGE => "GroupMessage",
        SEND_USER_MESSAGE => "SendUserMessage",
        SEND_GROUP_MESSAGE => "SendGroupMessage",
        FILE_TRANSFER_REQUEST => "FileTransferRequest",
        FILE_TRANSFER_ID => "FileTransferId",
        FILE_TRANSFER_ABORT => "FileTransferAbort",
        FILE_TRANSFER_OFFER => "FileTransferOffer",
        FILE_TRANSFER_ACCEPT => "FileTransferAccept",
        FILE_CHUNK => "FileChunk",
        FILE_TRANSFER_COMPLETE => "FileTransferComplete",
        PING => "Ping",
        PONG => "Pong",
        SEQUENCE => "Sequence",
        RECEIPT => "Receipt",
        MESSAGE_TAG => "MessageTag",
        SEND_ACK => "SendAck",
        GROUP_CREATE => "GroupCreate",
        GROUP_RENAME => "GroupRename",
        GROUP_ADD_MEMBER => "GroupAddMember",
        GROUP_REMOVE_MEMBER => "GroupRemoveMember",
        GROUP_LEAVE => "GroupLeave",
        GROUP_RESULT => "GroupResult",
        GROUP_LIST => "GroupList",
        GROUP_INFO => "GroupInfo",
        GROUP_REMOVED => "GroupRemoved",
        _ => return None,
    })
}

/// 512, both ways (extension): Ping, asks the peer for a Pong with the same nonce.
pub const PING: i32 = 512;
/// 513, both ways (extension): Pong, the answer to a Ping.
pub const PONG: i32 = 513;
/// 514, S→C (extension, `vcom/1+ext` only): the sequence number of the stored message
/// (264 or 265) that follows it directly.
pub const SEQUENCE: i32 = 514;
/// 515, C→S (extension, `vcom/1+ext` only): the device has stored every message through a
/// sequence number.
pub const RECEIPT: i32 = 515;
/// 516, C→S (extension, `vcom/1+ext` only): names the 266 or 267 that follows it directly
/// with a client message id, asking for a [`SEND_ACK`].
pub const MESSAGE_TAG: i32 = 516;
/// 517, S→C (extension, `vcom/1+ext` only): a tagged message is durable, or why it is not
/// stored.
pub const SEND_ACK: i32 = 517;

/// 518, C→S (extension, `vcom/1+ext` only): creates a group owned by the sender.
pub const GROUP_CREATE: i32 = 518;
/// 519, C→S (extension, `vcom/1+ext` only): the owner renames a group.
pub const GROUP_RENAME: i32 = 519;
/// 520, C→S (extension, `vcom/1+ext` only): the owner adds a member.
pub const GROUP_ADD_MEMBER: i32 = 520;
/// 521, C→S (extension, `vcom/1+ext` only): the owner removes a member.
pub const GROUP_REMOVE_MEMBER: i32 = 521;
/// 522, C→S (extension, `vcom/1+ext` only): a member leaves a group.
pub const GROUP_LEAVE: i32 = 522;
/// 523, S→C (extension, `vcom/1+ext` only): the answer to a group request (518-522).
pub const GROUP_RESULT: i32 = 523;
/// 524, S→C (extension, `vcom/1+ext` only): at login, every group the user is a member
/// of; a [`GROUP_INFO`] for each follows.
pub const GROUP_LIST: i32 = 524;
/// 525, S→C (extension, `vcom/1+ext` only): a group's name, owner and members.
pub const GROUP_INFO: i32 = 525;
/// 526, S→C (extension, `vcom/1+ext` only): the user is no longer a member of a group.
pub const GROUP_REMOVED: i32 = 526;

/// Every extension identifier this version implements, in order.
pub const EXTENSIONS: [i32; 15] = [
    PING,
    PONG,
    SEQUENCE,
    RECEIPT,
    MESSAGE_TAG,
    SEND_ACK,
    GROUP_CREATE,
    GROUP_RENAME,
    GROUP_ADD_MEMBER,
    GROUP_REMOVE_MEMBER,
    GROUP_LEAVE,
    GROUP_RESULT,
    GROUP_LIST,
    GROUP_INFO,
    GROUP_REMOVED,
];
