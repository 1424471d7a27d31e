//! One type per packet, and the two direction enums that encode and decode them.
//!
//! [`ClientPacket`] holds what a client may send, [`ServerPacket`] what a server may
//! send; FileTransferAbort (270), FileTransferAccept (272), FileChunk (273),
//! FileTransferComplete (274) and the Ping/Pong extensions are in both. Decoding a packet
//! that exists but travels the other way is [`DecodeError::WrongDirection`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{self, ReadError, ReadResult, Reader};
use crate::{
    AbortReason, DecodeError, Decoded, DenyCode, DeviceId, FileSize, GroupExit, GroupId,
    GroupOutcome, Limits, MessageKind, SendOutcome, Timestamp, TransferId, UserId, id,
};

/// One packet body: its identifier, name and field layout.
trait Body: Sized {
    const ID: i32;
    const NAME: &'static str;
    fn encode_body(&self, dst: &mut BytesMut);
    fn decode_body(r: &mut Reader<'_>, limits: &Limits) -> ReadResult<Self>;
}

/// Whether the list in a [`UserListsSync`] block is in sync, wanted, or uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSync {
    /// Flag 0: the client's timestamp equals the server's; nothing follows.
    InSync,
    /// Flag 1: the server's list is newer and the client wants it (answered by 261/262).
    SendServerList,
    /// Flag 2: the client's list is newer; its entries follow.
    Upload(Vec<UserId>),
}

impl ListSync {
    /// The flag byte on the wire.
    pub fn flag(&self) -> i8 {
        match self {
            ListSync::InSync => 0,
            ListSync::SendServerList => 1,
            ListSync::Upload(_) => 2,
        }
    }

    fn encode(&self, dst: &mut BytesMut) {
        dst.put_i8(self.flag());
        if let ListSync::Upload(entries) = self {
            wire::put_user_list(dst, entries);
        }
    }

    fn decode(r: &mut Reader<'_>, limits: &Limits, field: &'static str) -> ReadResult<Self> {
        match r.i8()? {
            0 => Ok(ListSync::InSync),
            1 => Ok(ListSync::SendServerList),
            2 => Ok(ListSync::Upload(read_user_list(r, limits, field)?)),
            other => Err(r.invalid(field, format!("sync flag {other} is not 0, 1 or 2"))),
        }
    }

    /// Walks the block as [`ListSync::decode`] reads it, allocating nothing.
    fn skip(r: &mut Reader<'_>, limits: &Limits, field: &'static str) -> ReadResult<()> {
        match r.i8()? {
            0 | 1 => Ok(()),
            2 => skip_user_list(r, limits, field),
            _ => Err(r.invalid(field, "unknown sync flag")),
        }
    }
}

fn read_user_list(
    r: &mut Reader<'_>,
    limits: &Limits,
    field: &'static str,
) -> ReadResult<Vec<UserId>> {
    r.list(field, limits.max_list_len, |r| {
        r.user_id(field, limits.max_user_id_len)
    })
}

/// Walks a user list as [`read_user_list`] reads it, checking the same lengths but
/// allocating nothing (see [`Reader::wait_for`]).
///
/// When the list is not all here, the bytes it still needs are at least five per entry
/// to come (a length and one byte): that floor is what it reports as needed, so a list
/// arriving an entry at a time is walked a few times rather than once per entry (which
/// was quadratic in the list's length).
fn skip_user_list(r: &mut Reader<'_>, limits: &Limits, field: &'static str) -> ReadResult<()> {
    const SMALLEST_ENTRY: usize = 4 + 1;
    let count = r.len(field, 0, limits.max_list_len)?;
    for done in 0..count {
        let start = r.position();
        match r.bytes(field, 1, limits.max_user_id_len) {
            Ok(_) => {}
            Err(ReadError::Incomplete { needed }) => {
                let floor = start.saturating_add((count - done).saturating_mul(SMALLEST_ENTRY));
                return Err(ReadError::Incomplete {
                    needed: needed.max(floor),
                });
            }
            Err(invalid) => return Err(invalid),
        }
    }
    Ok(())
}

fn read_group_name(r: &mut Reader<'_>) -> ReadResult<String> {
    r.string("name", 0, Limits::GROUP_NAME_CAP)
}

/// A group's member list, walked whole before it is parsed (see [`skip_user_list`]).
fn read_members(r: &mut Reader<'_>, limits: &Limits) -> ReadResult<Vec<UserId>> {
    r.wait_for(|r| skip_user_list(r, limits, "members"))?;
    read_user_list(r, limits, "members")
}

fn read_kind(r: &mut Reader<'_>) -> ReadResult<MessageKind> {
    Ok(MessageKind::from_is_text(r.bool()?))
}

fn read_size(r: &mut Reader<'_>) -> ReadResult<FileSize> {
    let raw = r.i32()?;
    u64::try_from(raw)
        .ok()
        .and_then(FileSize::new)
        .ok_or_else(|| r.invalid("size", format!("file size {raw} is below 1")))
}

fn read_file_name(r: &mut Reader<'_>, limits: &Limits) -> ReadResult<String> {
    r.string("name", 1, limits.max_file_name_len)
}

fn read_data(r: &mut Reader<'_>, limits: &Limits) -> ReadResult<Bytes> {
    r.owned_bytes("data", 0, limits.max_message_len)
}

macro_rules! packet {
    (
        $(#[$doc:meta])* $name:ident = $id:path, $wire_name:literal {
            $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)?
        }
        encode($self_:ident, $dst:ident) $encode:block
        decode($r:ident, $limits:ident) $decode:block
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl Body for $name {
            const ID: i32 = $id;
            const NAME: &'static str = $wire_name;
            #[allow(unused_variables)]
            fn encode_body(&$self_, $dst: &mut BytesMut) $encode
            #[allow(unused_variables)]
            fn decode_body($r: &mut Reader<'_>, $limits: &Limits) -> ReadResult<Self> $decode
        }
    };
}

packet! {
    /// 256, C→S: the login, sent first on a fresh TLS connection.
    ConnectionRequest = id::CONNECTION_REQUEST, "ConnectionRequest" {
        /// The user identifier as sent; the server validates it (invalid: code 7).
        user: String,
        /// The device identifier issued earlier, or [`DeviceId::NEW`].
        device: DeviceId,
        /// The server password (empty when none).
        password: Bytes,
    }
    encode(self, dst) {
        wire::put_str(dst, &self.user);
        dst.put_i32(self.device.0);
        wire::put_bytes(dst, &self.password);
    }
    decode(r, limits) {
        Ok(ConnectionRequest {
            user: r.string("user", 0, Limits::LOGIN_USER_ID_CAP)?,
            device: DeviceId(r.i32()?),
            password: r.owned_bytes("password", 0, limits.max_password_len)?,
        })
    }
}

packet! {
    /// 257, S→C: the login was accepted.
    ConnectionAccepted = id::CONNECTION_ACCEPTED, "ConnectionAccepted" {
        /// The device identifier to use from now on (newly issued, or the one sent).
        device: DeviceId,
    }
    encode(self, dst) { dst.put_i32(self.device.0); }
    decode(r, limits) { Ok(ConnectionAccepted { device: DeviceId(r.i32()?) }) }
}

packet! {
    /// 258, S→C: the login was refused; the server closes the connection after this.
    ConnectionDenied = id::CONNECTION_DENIED, "ConnectionDenied" {
        /// Why.
        code: DenyCode,
    }
    encode(self, dst) { dst.put_i8(self.code.code()); }
    decode(r, limits) { Ok(ConnectionDenied { code: DenyCode::from_code(r.i8()?) }) }
}

packet! {
    /// 259, S→C: the timestamps of the server's lists; the client answers with 260.
    RequestUserListsSync = id::REQUEST_USER_LISTS_SYNC, "RequestUserListsSync" {
        /// When the friend list last changed ([`Timestamp::NEVER`] if never set).
        friends: Timestamp,
        /// When the block list last changed ([`Timestamp::NEVER`] if never set).
        blocks: Timestamp,
    }
    encode(self, dst) {
        dst.put_i64(self.friends.0);
        dst.put_i64(self.blocks.0);
    }
    decode(r, limits) {
        Ok(RequestUserListsSync { friends: Timestamp(r.i64()?), blocks: Timestamp(r.i64()?) })
    }
}

packet! {
    /// 260, C→S: per list, in sync, "send me yours", or an upload of the client's list.
    UserListsSync = id::USER_LISTS_SYNC, "UserListsSync" {
        /// The friend list block.
        friends: ListSync,
        /// The block list block.
        blocks: ListSync,
    }
    encode(self, dst) {
        self.friends.encode(dst);
        self.blocks.encode(dst);
    }
    decode(r, limits) {
        // Both blocks are here before either is parsed: see `Reader::wait_for`.
        r.wait_for(|r| {
            ListSync::skip(r, limits, "friends")?;
            ListSync::skip(r, limits, "blocks")
        })?;
        Ok(UserListsSync {
            friends: ListSync::decode(r, limits, "friends")?,
            blocks: ListSync::decode(r, limits, "blocks")?,
        })
    }
}

packet! {
    /// 261, S→C: the server's friend list.
    FriendList = id::FRIEND_LIST, "FriendList" {
        /// The friends' user identifiers, in order.
        entries: Vec<UserId>,
    }
    encode(self, dst) { wire::put_user_list(dst, &self.entries); }
    decode(r, limits) {
        r.wait_for(|r| skip_user_list(r, limits, "entries"))?;
        Ok(FriendList { entries: read_user_list(r, limits, "entries")? })
    }
}

packet! {
    /// 262, S→C: the server's block list.
    BlockList = id::BLOCK_LIST, "BlockList" {
        /// The blocked users' identifiers, in order.
        entries: Vec<UserId>,
    }
    encode(self, dst) { wire::put_user_list(dst, &self.entries); }
    decode(r, limits) {
        r.wait_for(|r| skip_user_list(r, limits, "entries"))?;
        Ok(BlockList { entries: read_user_list(r, limits, "entries")? })
    }
}

packet! {
    /// 263, S→C: an unencrypted message from the server to every online client.
    Broadcast = id::BROADCAST, "Broadcast" {
        /// The message text.
        text: String,
    }
    encode(self, dst) { wire::put_str(dst, &self.text); }
    decode(r, limits) { Ok(Broadcast { text: r.string("text", 0, limits.max_message_len)? }) }
}

packet! {
    /// 264, S→C: a direct message delivered to one of the recipient's devices.
    UserMessage = id::USER_MESSAGE, "UserMessage" {
        /// Who sent it.
        sender: UserId,
        /// True when another device of the recipient already received it.
        read: bool,
        /// The timestamp the sender gave.
        sent_at: Timestamp,
        /// Text or image.
        kind: MessageKind,
        /// The message body, byte-exact.
        data: Bytes,
    }
    encode(self, dst) {
        wire::put_str(dst, self.sender.as_str());
        wire::put_bool(dst, self.read);
        dst.put_i64(self.sent_at.0);
        wire::put_bool(dst, self.kind.is_text());
        wire::put_bytes(dst, &self.data);
    }
    decode(r, limits) {
        Ok(UserMessage {
            sender: r.user_id("sender", limits.max_user_id_len)?,
            read: r.bool()?,
            sent_at: Timestamp(r.i64()?),
            kind: read_kind(r)?,
            data: read_data(r, limits)?,
        })
    }
}

packet! {
    /// 265, S→C: a group message delivered to one member's device.
    ///
    /// The wiki lists the sender twice; it is sent once, before the group identifier.
    GroupMessage = id::GROUP_MESSAGE, "GroupMessage" {
        /// Who sent it.
        sender: UserId,
        /// The group it was sent to.
        group: GroupId,
        /// True when another device of the recipient already received it.
        read: bool,
        /// The timestamp the sender gave.
        sent_at: Timestamp,
        /// Text or image.
        kind: MessageKind,
        /// The message body, byte-exact.
        data: Bytes,
    }
    encode(self, dst) {
        wire::put_str(dst, self.sender.as_str());
        dst.put_i32(self.group.0);
        wire::put_bool(dst, self.read);
        dst.put_i64(self.sent_at.0);
        wire::put_bool(dst, self.kind.is_text());
        wire::put_bytes(dst, &self.data);
    }
    decode(r, limits) {
        Ok(GroupMessage {
            sender: r.user_id("sender", limits.max_user_id_len)?,
            group: GroupId(r.i32()?),
            read: r.bool()?,
            sent_at: Timestamp(r.i64()?),
            kind: read_kind(r)?,
            data: read_data(r, limits)?,
        })
    }
}

packet! {
    /// 266, C→S: a direct message for the server to store and deliver.
    SendUserMessage = id::SEND_USER_MESSAGE, "SendUserMessage" {
        /// Who it is for.
        recipient: UserId,
        /// The sender's timestamp.
        sent_at: Timestamp,
        /// Text or image.
        kind: MessageKind,
        /// The message body.
        data: Bytes,
    }
    encode(self, dst) {
        wire::put_str(dst, self.recipient.as_str());
        dst.put_i64(self.sent_at.0);
        wire::put_bool(dst, self.kind.is_text());
        wire::put_bytes(dst, &self.data);
    }
    decode(r, limits) {
        Ok(SendUserMessage {
            recipient: r.user_id("recipient", limits.max_user_id_len)?,
            sent_at: Timestamp(r.i64()?),
            kind: read_kind(r)?,
            data: read_data(r, limits)?,
        })
    }
}

packet! {
    /// 267, C→S: a group message for the server to redistribute to the members.
    SendGroupMessage = id::SEND_GROUP_MESSAGE, "SendGroupMessage" {
        /// The group it is for.
        group: GroupId,
        /// The sender's timestamp.
        sent_at: Timestamp,
        /// Text or image.
        kind: MessageKind,
        /// The message body.
        data: Bytes,
    }
    encode(self, dst) {
        dst.put_i32(self.group.0);
        dst.put_i64(self.sent_at.0);
        wire::put_bool(dst, self.kind.is_text());
        wire::put_bytes(dst, &self.data);
    }
    decode(r, limits) {
        Ok(SendGroupMessage {
            group: GroupId(r.i32()?),
            sent_at: Timestamp(r.i64()?),
            kind: read_kind(r)?,
            data: read_data(r, limits)?,
        })
    }
}

packet! {
    /// 268, C→S: asks to send a file to a user; answered by 269.
    FileTransferRequest = id::FILE_TRANSFER_REQUEST, "FileTransferRequest" {
        /// Who the file is for.
        recipient: UserId,
        /// Its size in bytes.
        size: FileSize,
        /// Its name, as the sender calls it (never trusted by the recipient).
        name: String,
    }
    encode(self, dst) {
        wire::put_str(dst, self.recipient.as_str());
        dst.put_i32(self.size.get());
        wire::put_str(dst, &self.name);
    }
    decode(r, limits) {
        Ok(FileTransferRequest {
            recipient: r.user_id("recipient", limits.max_user_id_len)?,
            size: read_size(r)?,
            name: read_file_name(r, limits)?,
        })
    }
}

packet! {
    /// 269, S→C: the identifier of the transfer the client just requested.
    FileTransferId = id::FILE_TRANSFER_ID, "FileTransferId" {
        /// The new transfer's identifier.
        transfer: TransferId,
    }
    encode(self, dst) { dst.put_i32(self.transfer.0); }
    decode(r, limits) { Ok(FileTransferId { transfer: TransferId(r.i32()?) }) }
}

packet! {
    /// 270, both ways: S→C aborts a transfer; C→S declines an offer or cancels a sending.
    FileTransferAbort = id::FILE_TRANSFER_ABORT, "FileTransferAbort" {
        /// The transfer.
        transfer: TransferId,
        /// Why.
        reason: AbortReason,
    }
    encode(self, dst) {
        dst.put_i32(self.transfer.0);
        dst.put_i32(self.reason.code());
    }
    decode(r, limits) {
        Ok(FileTransferAbort {
            transfer: TransferId(r.i32()?),
            reason: AbortReason::from_code(r.i32()?),
        })
    }
}

packet! {
    /// 271, S→C: offers a file to one of the recipient's devices.
    FileTransferOffer = id::FILE_TRANSFER_OFFER, "FileTransferOffer" {
        /// Who wants to send it.
        sender: UserId,
        /// Its size in bytes.
        size: FileSize,
        /// Its name as the sender gave it: sanitise before use.
        name: String,
        /// The transfer's identifier.
        transfer: TransferId,
    }
    encode(self, dst) {
        wire::put_str(dst, self.sender.as_str());
        dst.put_i32(self.size.get());
        wire::put_str(dst, &self.name);
        dst.put_i32(self.transfer.0);
    }
    decode(r, limits) {
        Ok(FileTransferOffer {
            sender: r.user_id("sender", limits.max_user_id_len)?,
            size: read_size(r)?,
            name: read_file_name(r, limits)?,
            transfer: TransferId(r.i32()?),
        })
    }
}

packet! {
    /// 272, both ways: C→S the recipient accepts; S→C the sender may start sending.
    FileTransferAccept = id::FILE_TRANSFER_ACCEPT, "FileTransferAccept" {
        /// The transfer.
        transfer: TransferId,
    }
    encode(self, dst) { dst.put_i32(self.transfer.0); }
    decode(r, limits) { Ok(FileTransferAccept { transfer: TransferId(r.i32()?) }) }
}

packet! {
    /// 273, both ways: 1 to 1024 bytes of a file, relayed unchanged by the server.
    FileChunk = id::FILE_CHUNK, "FileChunk" {
        /// The transfer.
        transfer: TransferId,
        /// The bytes: 1 to [`Limits::MAX_CHUNK_LEN`].
        data: Bytes,
    }
    encode(self, dst) {
        dst.put_i32(self.transfer.0);
        wire::put_bytes(dst, &self.data);
    }
    decode(r, limits) {
        Ok(FileChunk {
            transfer: TransferId(r.i32()?),
            data: r.owned_bytes("data", 1, Limits::MAX_CHUNK_LEN)?,
        })
    }
}

packet! {
    /// 274, both ways: the sender has sent every byte of the file.
    FileTransferComplete = id::FILE_TRANSFER_COMPLETE, "FileTransferComplete" {
        /// The transfer.
        transfer: TransferId,
    }
    encode(self, dst) { dst.put_i32(self.transfer.0); }
    decode(r, limits) { Ok(FileTransferComplete { transfer: TransferId(r.i32()?) }) }
}

packet! {
    /// 512, both ways (extension): asks the peer to answer with a [`Pong`] carrying the
    /// same nonce; used as an application-level keep-alive.
    Ping = id::PING, "Ping" {
        /// Any value; echoed in the Pong.
        nonce: i64,
    }
    encode(self, dst) { dst.put_i64(self.nonce); }
    decode(r, limits) { Ok(Ping { nonce: r.i64()? }) }
}

packet! {
    /// 513, both ways (extension): the answer to a [`Ping`].
    Pong = id::PONG, "Pong" {
        /// The nonce of the Ping it answers.
        nonce: i64,
    }
    encode(self, dst) { dst.put_i64(self.nonce); }
    decode(r, limits) { Ok(Pong { nonce: r.i64()? }) }
}

packet! {
    /// 514, S→C (extension, `vcom/1+ext` only): the stored message (264 or 265) that
    /// follows directly is number `seq` of this device's delivery sequence. Numbers only
    /// grow; the device confirms them with [`Receipt`].
    Sequence = id::SEQUENCE, "Sequence" {
        /// The message's sequence number (positive).
        seq: i64,
    }
    encode(self, dst) { dst.put_i64(self.seq); }
    decode(r, limits) { Ok(Sequence { seq: r.i64()? }) }
}

packet! {
    /// 515, C→S (extension, `vcom/1+ext` only): the device has stored every message
    /// through sequence number `through`; the server sends none of them again.
    Receipt = id::RECEIPT, "Receipt" {
        /// The highest sequence number the device has stored, with every one before it.
        through: i64,
    }
    encode(self, dst) { dst.put_i64(self.through); }
    decode(r, limits) { Ok(Receipt { through: r.i64()? }) }
}

packet! {
    /// 516, C→S (extension, `vcom/1+ext` only): names the 266 or 267 that follows
    /// directly; the server answers it with a [`SendAck`], and stores a resend with the
    /// same id (after a reconnect) only once.
    MessageTag = id::MESSAGE_TAG, "MessageTag" {
        /// Chosen by the client, unique per device.
        client_id: i64,
    }
    encode(self, dst) { dst.put_i64(self.client_id); }
    decode(r, limits) { Ok(MessageTag { client_id: r.i64()? }) }
}

packet! {
    /// 517, S→C (extension, `vcom/1+ext` only): what became of a tagged message, sent
    /// once it is durable (or refused).
    SendAck = id::SEND_ACK, "SendAck" {
        /// The id of the [`MessageTag`] it answers.
        client_id: i64,
        /// Stored, or why not.
        outcome: SendOutcome,
    }
    encode(self, dst) {
        dst.put_i64(self.client_id);
        dst.put_i8(self.outcome.code());
    }
    decode(r, limits) {
        Ok(SendAck { client_id: r.i64()?, outcome: SendOutcome::from_code(r.i8()?) })
    }
}

packet! {
    /// 518, C→S (extension, `vcom/1+ext` only): creates a group owned by the sender, who
    /// is its first member; answered by [`GroupResult`] with the new group's identifier.
    GroupCreate = id::GROUP_CREATE, "GroupCreate" {
        /// Chosen by the client; the [`GroupResult`] that answers carries it back.
        request: i64,
        /// The group's name (the server checks it: see [`crate::GroupName`]).
        name: String,
        /// The other members, each a known user (the sender is added in any case).
        members: Vec<UserId>,
    }
    encode(self, dst) {
        dst.put_i64(self.request);
        wire::put_str(dst, &self.name);
        wire::put_user_list(dst, &self.members);
    }
    decode(r, limits) {
        Ok(GroupCreate {
            request: r.i64()?,
            name: read_group_name(r)?,
            members: read_members(r, limits)?,
        })
    }
}

packet! {
    /// 519, C→S (extension, `vcom/1+ext` only): the owner renames a group.
    GroupRename = id::GROUP_RENAME, "GroupRename" {
        /// Chosen by the client, carried back by the [`GroupResult`].
        request: i64,
        /// The group.
        group: GroupId,
        /// Its new name.
        name: String,
    }
    encode(self, dst) {
        dst.put_i64(self.request);
        dst.put_i32(self.group.0);
        wire::put_str(dst, &self.name);
    }
    decode(r, limits) {
        Ok(GroupRename {
            request: r.i64()?,
            group: GroupId(r.i32()?),
            name: read_group_name(r)?,
        })
    }
}

packet! {
    /// 520, C→S (extension, `vcom/1+ext` only): the owner adds a member to a group.
    GroupAddMember = id::GROUP_ADD_MEMBER, "GroupAddMember" {
        /// Chosen by the client, carried back by the [`GroupResult`].
        request: i64,
        /// The group.
        group: GroupId,
        /// The user to add.
        user: UserId,
    }
    encode(self, dst) {
        dst.put_i64(self.request);
        dst.put_i32(self.group.0);
        wire::put_str(dst, self.user.as_str());
    }
    decode(r, limits) {
        Ok(GroupAddMember {
            request: r.i64()?,
            group: GroupId(r.i32()?),
            user: r.user_id("user", limits.max_user_id_len)?,
        })
    }
}

packet! {
    /// 521, C→S (extension, `vcom/1+ext` only): the owner removes a member from a group.
    GroupRemoveMember = id::GROUP_REMOVE_MEMBER, "GroupRemoveMember" {
        /// Chosen by the client, carried back by the [`GroupResult`].
        request: i64,
        /// The group.
        group: GroupId,
        /// The member to remove.
        user: UserId,
    }
    encode(self, dst) {
        dst.put_i64(self.request);
        dst.put_i32(self.group.0);
        wire::put_str(dst, self.user.as_str());
    }
    decode(r, limits) {
        Ok(GroupRemoveMember {
            request: r.i64()?,
            group: GroupId(r.i32()?),
            user: r.user_id("user", limits.max_user_id_len)?,
        })
    }
}

packet! {
    /// 522, C→S (extension, `vcom/1+ext` only): the sender leaves a group.
    GroupLeave = id::GROUP_LEAVE, "GroupLeave" {
        /// Chosen by the client, carried back by the [`GroupResult`].
        request: i64,
        /// The group.
        group: GroupId,
    }
    encode(self, dst) {
        dst.put_i64(self.request);
        dst.put_i32(self.group.0);
    }
    decode(r, limits) {
        Ok(GroupLeave { request: r.i64()?, group: GroupId(r.i32()?) })
    }
}

packet! {
    /// 523, S→C (extension, `vcom/1+ext` only): the answer to a group request (518-522).
    GroupResult = id::GROUP_RESULT, "GroupResult" {
        /// The `request` of the packet it answers.
        request: i64,
        /// Done, or why not.
        outcome: GroupOutcome,
        /// The group (for a GroupCreate that was done, the new one); 0 when none.
        group: GroupId,
    }
    encode(self, dst) {
        dst.put_i64(self.request);
        dst.put_i8(self.outcome.code());
        dst.put_i32(self.group.0);
    }
    decode(r, limits) {
        Ok(GroupResult {
            request: r.i64()?,
            outcome: GroupOutcome::from_code(r.i8()?),
            group: GroupId(r.i32()?),
        })
    }
}

packet! {
    /// 524, S→C (extension, `vcom/1+ext` only): sent once after login, the identifiers of
    /// every group the user is a member of; a [`GroupInfo`] for each follows. A group a
    /// client knew that is not listed is one the user no longer belongs to.
    GroupList = id::GROUP_LIST, "GroupList" {
        /// The groups, ordered by identifier.
        groups: Vec<GroupId>,
    }
    encode(self, dst) {
        wire::put_len(dst, self.groups.len());
        for group in &self.groups {
            dst.put_i32(group.0);
        }
    }
    decode(r, limits) {
        // The whole list is here before it is parsed: see `skip_user_list`.
        r.wait_for(|r| {
            let count = r.len("groups", 0, limits.max_list_len)?;
            let start = r.position();
            for _ in 0..count {
                if let Err(ReadError::Incomplete { .. }) = r.i32() {
                    return Err(ReadError::Incomplete {
                        needed: start.saturating_add(count.saturating_mul(4)),
                    });
                }
            }
            Ok(())
        })?;
        Ok(GroupList { groups: r.list("groups", limits.max_list_len, |r| Ok(GroupId(r.i32()?)))? })
    }
}

packet! {
    /// 525, S→C (extension, `vcom/1+ext` only): a group as it is now, sent to each of its
    /// members' devices after login and whenever it changes.
    GroupInfo = id::GROUP_INFO, "GroupInfo" {
        /// The group.
        group: GroupId,
        /// Its name.
        name: String,
        /// Its owner; `None` (an empty string on the wire) for a group the server's
        /// administrator made.
        owner: Option<UserId>,
        /// Its members, ordered by identifier.
        members: Vec<UserId>,
    }
    encode(self, dst) {
        dst.put_i32(self.group.0);
        wire::put_str(dst, &self.name);
        wire::put_str(dst, self.owner.as_ref().map_or("", UserId::as_str));
        wire::put_user_list(dst, &self.members);
    }
    decode(r, limits) {
        let group = GroupId(r.i32()?);
        let name = read_group_name(r)?;
        let owner = r.string("owner", 0, limits.max_user_id_len)?;
        let owner = if owner.is_empty() {
            None
        } else {
            Some(UserId::with_max_len(owner, limits.max_user_id_len)
                .map_err(|e| r.invalid("owner", e.to_string()))?)
        };
        Ok(GroupInfo { group, name, owner, members: read_members(r, limits)? })
    }
}

packet! {
    /// 526, S→C (extension, `vcom/1+ext` only): the user is no longer a member of a
    /// group; sent to each of the user's devices online at the time.
    GroupRemoved = id::GROUP_REMOVED, "GroupRemoved" {
        /// The group.
        group: GroupId,
        /// Left, or removed by the owner or the administrator.
        reason: GroupExit,
    }
    encode(self, dst) {
        dst.put_i32(self.group.0);
        dst.put_i8(self.reason.code());
    }
    decode(r, limits) {
        Ok(GroupRemoved { group: GroupId(r.i32()?), reason: GroupExit::from_code(r.i8()?) })
    }
}

/// Decodes one packet of the given body type after its identifier has been read.
fn body<B: Body>(r: &mut Reader<'_>, limits: &Limits) -> ReadResult<B> {
    r.set_packet(B::NAME);
    B::decode_body(r, limits)
}

/// Runs `parse` over `src` and turns the reader's outcome into a [`Decoded`].
fn decode_with<P>(
    src: &[u8],
    parse: impl FnOnce(&mut Reader<'_>) -> ReadResult<P>,
) -> Result<Decoded<P>, DecodeError> {
    let mut r = Reader::new(src);
    match parse(&mut r) {
        Ok(packet) => Ok(Decoded::Complete {
            packet,
            len: r.position(),
        }),
        Err(ReadError::Incomplete { needed }) => Ok(Decoded::Incomplete { needed }),
        Err(ReadError::Invalid(e)) => Err(e),
    }
}

fn wrong_direction(id: i32) -> DecodeError {
    match id::name(id) {
        Some(name) => DecodeError::WrongDirection { id, name },
        None => DecodeError::UnknownId { id },
    }
}

macro_rules! direction {
    ($(#[$doc:meta])* $enum:ident { $($variant:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum {
            $(
                #[doc = concat!("See [`", stringify!($variant), "`].")]
                $variant($variant),
            )*
        }

        impl $enum {
            /// The packet's identifier on the wire.
            pub fn id(&self) -> i32 {
                match self {
                    $($enum::$variant(_) => <$variant as Body>::ID,)*
                }
            }

            /// Whether only a connection that negotiated the extension set
            /// (`vcom/1+ext`) may carry it: every extension packet but Ping and Pong
            /// (512, 513), which the wiki mode has too.
            pub fn needs_extension_set(&self) -> bool {
                self.id() > crate::id::PONG
            }

            /// The packet's name as `docs/protocol.md` uses it.
            pub fn name(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => <$variant as Body>::NAME,)*
                }
            }

            /// Appends the packet (identifier and fields) to `dst`.
            pub fn encode(&self, dst: &mut BytesMut) {
                dst.put_i32(self.id());
                match self {
                    $($enum::$variant(p) => p.encode_body(dst),)*
                }
            }

            /// The packet's bytes, for tests and one-off writes.
            pub fn to_bytes(&self) -> Bytes {
                let mut dst = BytesMut::new();
                self.encode(&mut dst);
                dst.freeze()
            }

            /// Decodes the packet at the front of `src`, which holds the bytes received
            /// so far: a whole packet and its length, or how many bytes are needed.
            ///
            /// Never allocates for a field before its length has been checked against
            /// `limits`; never panics, whatever the bytes.
            pub fn decode(src: &[u8], limits: &Limits) -> Result<Decoded<Self>, DecodeError> {
                decode_with(src, |r| {
                    let id = r.i32()?;
                    match id {
                        $(<$variant as Body>::ID => Ok($enum::$variant(body(r, limits)?)),)*
                        other => Err(ReadError::Invalid(wrong_direction(other))),
                    }
                })
            }
        }

        $(
            impl From<$variant> for $enum {
                fn from(p: $variant) -> Self {
                    $enum::$variant(p)
                }
            }
        )*
    };
}

direction! {
    /// Every packet a client sends to a server.
    ClientPacket {
        ConnectionRequest,
        UserListsSync,
        SendUserMessage,
        SendGroupMessage,
        FileTransferRequest,
        FileTransferAbort,
        FileTransferAccept,
        FileChunk,
        FileTransferComplete,
        Ping,
        Pong,
        Receipt,
        MessageTag,
        GroupCreate,
        GroupRename,
        GroupAddMember,
        GroupRemoveMember,
        GroupLeave,
    }
}

direction! {
    /// Every packet a server sends to a client.
    ServerPacket {
        ConnectionAccepted,
        ConnectionDenied,
        RequestUserListsSync,
        FriendList,
        BlockList,
        Broadcast,
        UserMessage,
        GroupMessage,
        FileTransferId,
        FileTransferAbort,
        FileTransferOffer,
        FileTransferAccept,
        FileChunk,
        FileTransferComplete,
        Ping,
        Pong,
        Sequence,
        SendAck,
        GroupResult,
        GroupList,
        GroupInfo,
        GroupRemoved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_arriving_an_entry_at_a_time_is_walked_a_few_times_not_once_per_entry() {
        let entries: Vec<UserId> = (0..10_000)
            .map(|i| UserId::new(format!("user{i:05}")).unwrap())
            .collect();
        let bytes = ClientPacket::from(UserListsSync {
            friends: ListSync::Upload(entries.clone()),
            blocks: ListSync::InSync,
        })
        .to_bytes();
        let limits = Limits::default();
        // Bytes arrive one entry (4 + 9) at a time; the decoder runs only once the
        // buffer holds what it last said it needs, as the codec does.
        let (mut have, mut needed, mut walks) = (0usize, 0usize, 0);
        loop {
            have = (have + 13).min(bytes.len());
            if have < needed {
                continue;
            }
            walks += 1;
            match ClientPacket::decode(&bytes[..have], &limits).unwrap() {
                Decoded::Complete { packet, len } => {
                    assert_eq!(len, bytes.len());
                    let ClientPacket::UserListsSync(sync) = packet else {
                        panic!("not a 260")
                    };
                    assert_eq!(sync.friends, ListSync::Upload(entries));
                    break;
                }
                Decoded::Incomplete { needed: n } => {
                    assert!(n <= bytes.len(), "never asks for more than the packet");
                    needed = n;
                }
            }
        }
        assert!(walks < 100, "walked {walks} times for 10 000 entries");
    }

    fn decode_client(bytes: &[u8]) -> Result<Decoded<ClientPacket>, DecodeError> {
        ClientPacket::decode(bytes, &Limits::default())
    }

    #[test]
    fn an_empty_buffer_needs_the_identifier() {
        assert_eq!(decode_client(&[]), Ok(Decoded::Incomplete { needed: 4 }));
    }

    #[test]
    fn a_server_packet_sent_by_a_client_is_the_wrong_direction() {
        let bytes = ServerPacket::from(ConnectionAccepted {
            device: DeviceId(7),
        })
        .to_bytes();
        assert_eq!(
            decode_client(&bytes),
            Err(DecodeError::WrongDirection {
                id: 257,
                name: "ConnectionAccepted"
            })
        );
    }

    #[test]
    fn an_unknown_identifier_is_rejected() {
        assert_eq!(
            decode_client(&[0, 0, 0, 1]),
            Err(DecodeError::UnknownId { id: 1 })
        );
    }

    #[test]
    fn a_negative_length_is_rejected_before_its_bytes_arrive() {
        // 266 with a recipient length of -1.
        let bytes = [0, 0, 1, 10, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_client(&bytes),
            Err(DecodeError::NegativeLength {
                packet: "SendUserMessage",
                field: "recipient",
                len: -1
            })
        );
    }

    #[test]
    fn the_needed_length_jumps_to_the_end_of_a_data_field() {
        let packet = ClientPacket::from(SendGroupMessage {
            group: GroupId(3),
            sent_at: Timestamp(1),
            kind: MessageKind::Image,
            data: Bytes::from(vec![7u8; 1000]),
        });
        let bytes = packet.to_bytes();
        // id 4 + group 4 + timestamp 8 + flag 1 + length 4, then 1000 bytes of data.
        assert_eq!(
            decode_client(&bytes[..30]),
            Ok(Decoded::Incomplete { needed: 1021 })
        );
        assert_eq!(bytes.len(), 1021);
    }

    #[test]
    fn an_unknown_sync_flag_is_rejected() {
        let bytes = [0, 0, 1, 4, 3];
        assert!(matches!(
            decode_client(&bytes),
            Err(DecodeError::InvalidValue {
                packet: "UserListsSync",
                field: "friends",
                ..
            })
        ));
    }

    #[test]
    fn a_list_is_parsed_only_once_it_is_whole_and_then_reports_its_first_bad_entry() {
        // 260: friends uploaded, two entries, the first of them not UTF-8.
        let mut bytes = vec![0, 0, 1, 4, 2, 0, 0, 0, 2];
        bytes.extend_from_slice(&[0, 0, 0, 1, 0xff]);
        bytes.extend_from_slice(&[0, 0, 0, 3]);
        bytes.extend_from_slice(b"bob");
        bytes.push(0); // blocks: in sync
        let whole = bytes.len();
        assert_eq!(
            decode_client(&bytes[..whole - 2]),
            Ok(Decoded::Incomplete { needed: whole - 1 })
        );
        assert_eq!(
            decode_client(&bytes[..whole - 1]),
            Ok(Decoded::Incomplete { needed: whole })
        );
        assert_eq!(
            decode_client(&bytes),
            Err(DecodeError::InvalidUtf8 {
                packet: "UserListsSync",
                field: "friends"
            })
        );
    }

    #[test]
    fn a_chunk_must_hold_one_to_1024_bytes() {
        let mut bytes = vec![0, 0, 1, 17, 0, 0, 0, 9];
        bytes.extend_from_slice(&1025i32.to_be_bytes());
        assert!(matches!(
            decode_client(&bytes),
            Err(DecodeError::LengthOutOfRange {
                packet: "FileChunk",
                len: 1025,
                ..
            })
        ));
        let mut empty = vec![0, 0, 1, 17, 0, 0, 0, 9];
        empty.extend_from_slice(&0i32.to_be_bytes());
        assert!(matches!(
            decode_client(&empty),
            Err(DecodeError::LengthOutOfRange {
                packet: "FileChunk",
                len: 0,
                ..
            })
        ));
    }
}
