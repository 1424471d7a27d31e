//! Every length and count field against -1, `i32::MAX`, one past its limit and its
//! minimum, from a buffer that ends right after the length: the decoder must answer from
//! the header alone, without waiting for (or allocating) the announced bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use vcom_protocol::codec::CodecError;
use vcom_protocol::{ClientPacket, DecodeError, Decoded, Limits, ServerPacket, VcomCodec};

const MIB: usize = 1024 * 1024;

/// Which decoder reads the case.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// A server reading [`ClientPacket`]s.
    Server,
    /// A client reading [`ServerPacket`]s.
    Client,
}

/// One length or count field: the bytes before it, and what the decoder must allow.
struct Case {
    side: Side,
    header: Vec<u8>,
    packet: &'static str,
    field: &'static str,
    min: usize,
    max: usize,
    /// A list count: at its limit, the decoder waits for the least its entries can
    /// take, this many bytes each (0: not a count).
    smallest_entry: usize,
}

fn i32be(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn text(s: &str) -> Vec<u8> {
    let mut out = i32be(s.len() as i32);
    out.extend_from_slice(s.as_bytes());
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

const TS: i64 = 1_700_000_000_000;

fn case(
    side: Side,
    header: Vec<u8>,
    packet: &'static str,
    field: &'static str,
    min: usize,
    max: usize,
) -> Case {
    Case {
        side,
        header,
        packet,
        field,
        min,
        max,
        smallest_entry: 0,
    }
}

/// A list of user identifiers (a length and one byte each, at least).
fn count(side: Side, header: Vec<u8>, packet: &'static str, field: &'static str) -> Case {
    Case {
        smallest_entry: 5,
        ..case(side, header, packet, field, 0, 10_000)
    }
}

/// Every kind of length field, in every packet that has one.
fn cases() -> Vec<Case> {
    use Side::*;
    let ts = TS.to_be_bytes().to_vec();
    let req = 7i64.to_be_bytes().to_vec();
    vec![
        // The login's user identifier: the server judges it, only the hard cap is a violation.
        case(
            Server,
            i32be(256),
            "ConnectionRequest",
            "user",
            0,
            Limits::LOGIN_USER_ID_CAP,
        ),
        case(
            Server,
            cat(&[i32be(256), text("alice"), i32be(7)]),
            "ConnectionRequest",
            "password",
            0,
            256,
        ),
        case(Server, i32be(266), "SendUserMessage", "recipient", 1, 64),
        case(
            Server,
            i32be(268),
            "FileTransferRequest",
            "recipient",
            1,
            64,
        ),
        case(Client, i32be(264), "UserMessage", "sender", 1, 64),
        case(Client, i32be(265), "GroupMessage", "sender", 1, 64),
        case(Client, i32be(271), "FileTransferOffer", "sender", 1, 64),
        case(
            Client,
            cat(&[i32be(261), i32be(1)]),
            "FriendList",
            "entries",
            1,
            64,
        ),
        case(
            Client,
            cat(&[i32be(262), i32be(1)]),
            "BlockList",
            "entries",
            1,
            64,
        ),
        case(
            Server,
            cat(&[i32be(260), vec![2], i32be(1)]),
            "UserListsSync",
            "friends",
            1,
            64,
        ),
        case(
            Server,
            cat(&[i32be(266), text("bob"), ts.clone(), vec![1]]),
            "SendUserMessage",
            "data",
            0,
            MIB,
        ),
        case(
            Server,
            cat(&[i32be(267), i32be(42), ts.clone(), vec![0]]),
            "SendGroupMessage",
            "data",
            0,
            MIB,
        ),
        case(
            Client,
            cat(&[i32be(264), text("alice"), vec![0], ts.clone(), vec![1]]),
            "UserMessage",
            "data",
            0,
            MIB,
        ),
        case(
            Client,
            cat(&[i32be(265), text("alice"), i32be(42), vec![0], ts, vec![1]]),
            "GroupMessage",
            "data",
            0,
            MIB,
        ),
        case(Client, i32be(263), "Broadcast", "text", 0, MIB),
        count(Client, i32be(261), "FriendList", "entries"),
        count(Client, i32be(262), "BlockList", "entries"),
        count(
            Server,
            cat(&[i32be(260), vec![2]]),
            "UserListsSync",
            "friends",
        ),
        count(
            Server,
            cat(&[i32be(260), vec![1, 2]]),
            "UserListsSync",
            "blocks",
        ),
        case(
            Server,
            cat(&[i32be(268), text("bob"), i32be(10)]),
            "FileTransferRequest",
            "name",
            1,
            255,
        ),
        case(
            Client,
            cat(&[i32be(271), text("alice"), i32be(10)]),
            "FileTransferOffer",
            "name",
            1,
            255,
        ),
        case(
            Server,
            cat(&[i32be(518), req.clone()]),
            "GroupCreate",
            "name",
            0,
            Limits::GROUP_NAME_CAP,
        ),
        count(
            Server,
            cat(&[i32be(518), req.clone(), text("team")]),
            "GroupCreate",
            "members",
        ),
        case(
            Server,
            cat(&[i32be(518), req.clone(), text("team"), i32be(1)]),
            "GroupCreate",
            "members",
            1,
            64,
        ),
        case(
            Server,
            cat(&[i32be(519), req.clone(), i32be(42)]),
            "GroupRename",
            "name",
            0,
            Limits::GROUP_NAME_CAP,
        ),
        case(
            Server,
            cat(&[i32be(520), req.clone(), i32be(42)]),
            "GroupAddMember",
            "user",
            1,
            64,
        ),
        case(
            Server,
            cat(&[i32be(521), req.clone(), i32be(42)]),
            "GroupRemoveMember",
            "user",
            1,
            64,
        ),
        Case {
            smallest_entry: 4,
            ..case(Client, i32be(524), "GroupList", "groups", 0, 10_000)
        },
        case(
            Client,
            cat(&[i32be(525), i32be(42)]),
            "GroupInfo",
            "name",
            0,
            Limits::GROUP_NAME_CAP,
        ),
        case(
            Client,
            cat(&[i32be(525), i32be(42), text("team")]),
            "GroupInfo",
            "owner",
            0,
            64,
        ),
        count(
            Client,
            cat(&[i32be(525), i32be(42), text("team"), text("alice")]),
            "GroupInfo",
            "members",
        ),
        case(
            Server,
            cat(&[i32be(273), i32be(17)]),
            "FileChunk",
            "data",
            1,
            1024,
        ),
        case(
            Client,
            cat(&[i32be(273), i32be(17)]),
            "FileChunk",
            "data",
            1,
            1024,
        ),
    ]
}

impl Case {
    fn bytes_with(&self, len: i32) -> Vec<u8> {
        cat(&[self.header.clone(), i32be(len)])
    }

    /// Decodes the header followed by `len` with the default limits.
    fn decode(&self, len: i32) -> Result<Decoded<()>, DecodeError> {
        let bytes = self.bytes_with(len);
        let limits = Limits::default();
        match self.side {
            Side::Server => ClientPacket::decode(&bytes, &limits).map(MapPacket::map_packet),
            Side::Client => ServerPacket::decode(&bytes, &limits).map(MapPacket::map_packet),
        }
    }

    fn out_of_range(&self, len: i32) -> DecodeError {
        DecodeError::LengthOutOfRange {
            packet: self.packet,
            field: self.field,
            len,
            min: self.min,
            max: self.max,
        }
    }

    fn what(&self) -> String {
        format!("{}.{}", self.packet, self.field)
    }
}

/// Drops the packet, keeping only whether it was complete and its size.
trait MapPacket {
    fn map_packet(self) -> Decoded<()>;
}

impl<P> MapPacket for Decoded<P> {
    fn map_packet(self) -> Decoded<()> {
        match self {
            Decoded::Complete { len, .. } => Decoded::Complete { packet: (), len },
            Decoded::Incomplete { needed } => Decoded::Incomplete { needed },
        }
    }
}

fn as_len(n: usize) -> i32 {
    i32::try_from(n).unwrap()
}

#[test]
fn a_length_of_minus_one_is_rejected_from_the_header_alone() {
    for case in cases() {
        assert_eq!(
            case.decode(-1),
            Err(DecodeError::NegativeLength {
                packet: case.packet,
                field: case.field,
                len: -1
            }),
            "{}",
            case.what()
        );
    }
}

#[test]
fn a_length_of_i32_max_is_rejected_from_the_header_alone() {
    for case in cases() {
        assert_eq!(
            case.decode(i32::MAX),
            Err(case.out_of_range(i32::MAX)),
            "{}",
            case.what()
        );
    }
}

#[test]
fn a_length_one_past_its_limit_is_rejected_from_the_header_alone() {
    for case in cases() {
        let len = as_len(case.max + 1);
        assert_eq!(
            case.decode(len),
            Err(case.out_of_range(len)),
            "{}",
            case.what()
        );
    }
}

#[test]
fn a_length_below_its_minimum_is_rejected_from_the_header_alone() {
    for case in cases().into_iter().filter(|c| c.min > 0) {
        let len = as_len(case.min - 1);
        assert_eq!(
            case.decode(len),
            Err(case.out_of_range(len)),
            "{}",
            case.what()
        );
    }
}

#[test]
fn a_length_at_its_limit_waits_for_the_announced_bytes() {
    for case in cases() {
        let header_and_len = case.header.len() + 4;
        // A list waits for the least its entries can take (a length and one byte each,
        // or four bytes for a list of group identifiers), so it is not walked again for
        // every entry; any other field for all its bytes.
        let needed = if case.smallest_entry > 0 {
            header_and_len + case.smallest_entry * case.max
        } else {
            header_and_len + case.max
        };
        assert_eq!(
            case.decode(as_len(case.max)),
            Ok(Decoded::Incomplete { needed }),
            "{}",
            case.what()
        );
    }
}

#[test]
fn the_codec_rejects_an_i32_max_length_at_once_without_reserving_its_size() {
    for case in cases() {
        let mut buf = BytesMut::from(&case.bytes_with(i32::MAX)[..]);
        let error = match case.side {
            Side::Server => VcomCodec::<ClientPacket, ServerPacket>::new(Limits::default())
                .decode(&mut buf)
                .map(|_| ()),
            Side::Client => VcomCodec::<ServerPacket, ClientPacket>::new(Limits::default())
                .decode(&mut buf)
                .map(|_| ()),
        };
        match error {
            Err(CodecError::Protocol(e)) => assert_eq!(e, case.out_of_range(i32::MAX)),
            other => panic!("{}: {other:?}", case.what()),
        }
        assert!(buf.capacity() < 1024 * 1024, "{}", case.what());
    }
}

#[test]
fn configured_limits_replace_the_defaults() {
    let limits = Limits {
        max_user_id_len: 8,
        max_password_len: 4,
        max_message_len: 16,
        max_list_len: 2,
        max_file_name_len: 10,
    };
    let recipient = cat(&[i32be(266), text("abcdefghi")]);
    assert!(matches!(
        ClientPacket::decode(&recipient, &limits),
        Err(DecodeError::LengthOutOfRange { len: 9, max: 8, .. })
    ));
    let password = cat(&[i32be(256), text("alice"), i32be(7), text("12345")]);
    assert!(matches!(
        ClientPacket::decode(&password, &limits),
        Err(DecodeError::LengthOutOfRange { len: 5, max: 4, .. })
    ));
    let list = cat(&[i32be(261), i32be(3)]);
    assert!(matches!(
        ServerPacket::decode(&list, &limits),
        Err(DecodeError::LengthOutOfRange { len: 3, max: 2, .. })
    ));
    let broadcast = cat(&[i32be(263), i32be(17)]);
    assert!(matches!(
        ServerPacket::decode(&broadcast, &limits),
        Err(DecodeError::LengthOutOfRange {
            len: 17,
            max: 16,
            ..
        })
    ));
    let name = cat(&[i32be(268), text("bob"), i32be(1), i32be(11)]);
    assert!(matches!(
        ClientPacket::decode(&name, &limits),
        Err(DecodeError::LengthOutOfRange {
            len: 11,
            max: 10,
            ..
        })
    ));
}

#[test]
fn invalid_utf8_in_a_text_field_is_an_error() {
    let login = cat(&[i32be(256), i32be(2), vec![0xc3, 0x28], i32be(-1), i32be(0)]);
    assert_eq!(
        ClientPacket::decode(&login, &Limits::default()),
        Err(DecodeError::InvalidUtf8 {
            packet: "ConnectionRequest",
            field: "user"
        })
    );
    let name = cat(&[i32be(268), text("bob"), i32be(1), i32be(1), vec![0xff]]);
    assert_eq!(
        ClientPacket::decode(&name, &Limits::default()),
        Err(DecodeError::InvalidUtf8 {
            packet: "FileTransferRequest",
            field: "name"
        })
    );
}

#[test]
fn a_login_may_name_an_identifier_the_server_must_judge_itself() {
    // Empty, too long for the default limit, or with a control character: all decode,
    // so the server can answer ConnectionDenied code 7 instead of dropping the line.
    for user in ["", &"x".repeat(65), "a\nb"] {
        let login = cat(&[i32be(256), text(user), i32be(-1), i32be(0)]);
        assert!(
            matches!(
                ClientPacket::decode(&login, &Limits::default()),
                Ok(Decoded::Complete { .. })
            ),
            "{user:?}"
        );
    }
}

#[test]
fn a_user_identifier_with_a_control_character_is_an_invalid_value() {
    let bytes = cat(&[i32be(266), text("a\u{7}b")]);
    assert!(matches!(
        ClientPacket::decode(&bytes, &Limits::default()),
        Err(DecodeError::InvalidValue {
            packet: "SendUserMessage",
            field: "recipient",
            ..
        })
    ));
}

#[test]
fn a_file_size_below_one_is_an_invalid_value() {
    for size in [0, -1, i32::MIN] {
        let bytes = cat(&[i32be(268), text("bob"), i32be(size)]);
        assert!(
            matches!(
                ClientPacket::decode(&bytes, &Limits::default()),
                Err(DecodeError::InvalidValue {
                    packet: "FileTransferRequest",
                    field: "size",
                    ..
                })
            ),
            "{size}"
        );
    }
}

#[test]
fn a_packet_of_the_other_direction_or_an_unknown_id_is_refused() {
    let limits = Limits::default();
    for id in [
        257, 258, 259, 261, 262, 263, 264, 265, 269, 271, 514, 517, 523, 524, 525, 526,
    ] {
        assert!(
            matches!(
                ClientPacket::decode(&i32be(id), &limits),
                Err(DecodeError::WrongDirection { id: got, .. }) if got == id
            ),
            "{id}"
        );
    }
    for id in [256, 260, 266, 267, 268, 515, 516, 518, 519, 520, 521, 522] {
        assert!(
            matches!(
                ServerPacket::decode(&i32be(id), &limits),
                Err(DecodeError::WrongDirection { id: got, .. }) if got == id
            ),
            "{id}"
        );
    }
    for id in [0, -1, 255, 275, 511, 527, i32::MAX] {
        assert_eq!(
            ClientPacket::decode(&i32be(id), &limits),
            Err(DecodeError::UnknownId { id })
        );
        assert_eq!(
            ServerPacket::decode(&i32be(id), &limits),
            Err(DecodeError::UnknownId { id })
        );
    }
}
