//! Golden wire vectors: the exact bytes of every packet, annotated field by field.
//!
//! Each snapshot in `snapshots/` was reviewed by eye against the wiki and `docs/protocol.md`.
//! A changed snapshot means the wire format changed: that is never a routine update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use vcom_protocol::{Decoded, ListSync, id};
use vcom_tests::hexdump::annotate;
use vcom_tests::vectors::{self, AnyPacket, Direction};

#[test]
fn every_golden_vector_has_its_snapshotted_bytes_and_decodes_back_whole() {
    for vector in vectors::all() {
        let bytes = vector.packet.to_bytes();
        let dump = annotate(&bytes).unwrap_or_else(|e| panic!("{}: {e}", vector.name));
        let snapshot = format!(
            "{} {} {}, {} bytes\n{dump}",
            vector.packet.id(),
            vector.packet.name(),
            vector.packet.direction(),
            bytes.len()
        );
        insta::assert_snapshot!(vector.name.as_str(), snapshot);

        let decoded = vector.packet.decode_like(&bytes).unwrap();
        assert_eq!(
            decoded,
            Decoded::Complete {
                packet: vector.packet.clone(),
                len: bytes.len()
            },
            "{}",
            vector.name
        );
    }
}

#[test]
fn golden_vectors_cover_every_packet_in_every_direction_it_travels() {
    let both_ways = [
        id::FILE_TRANSFER_ABORT,
        id::FILE_TRANSFER_ACCEPT,
        id::FILE_CHUNK,
        id::FILE_TRANSFER_COMPLETE,
        id::PING,
        id::PONG,
    ];
    let client = [
        id::CONNECTION_REQUEST,
        id::USER_LISTS_SYNC,
        id::SEND_USER_MESSAGE,
        id::SEND_GROUP_MESSAGE,
        id::FILE_TRANSFER_REQUEST,
        id::RECEIPT,
        id::MESSAGE_TAG,
        id::GROUP_CREATE,
        id::GROUP_RENAME,
        id::GROUP_ADD_MEMBER,
        id::GROUP_REMOVE_MEMBER,
        id::GROUP_LEAVE,
    ];
    let mut expected = BTreeSet::new();
    for packet in id::ALL.into_iter().chain(id::EXTENSIONS) {
        if both_ways.contains(&packet) || client.contains(&packet) {
            expected.insert((packet, "C->S".to_owned()));
        }
        if both_ways.contains(&packet) || !client.contains(&packet) {
            expected.insert((packet, "S->C".to_owned()));
        }
    }
    let covered: BTreeSet<_> = vectors::all()
        .iter()
        .map(|v| (v.packet.id(), v.packet.direction().to_string()))
        .collect();
    assert_eq!(covered, expected);
}

#[test]
fn golden_vectors_hold_every_combination_of_the_two_list_sync_flags() {
    let combinations: BTreeSet<(i8, i8)> = vectors::all()
        .iter()
        .filter_map(|v| match &v.packet {
            AnyPacket::Client(vcom_protocol::ClientPacket::UserListsSync(sync)) => {
                Some((sync.friends.flag(), sync.blocks.flag()))
            }
            _ => None,
        })
        .collect();
    let all: BTreeSet<(i8, i8)> = (0..=2).flat_map(|f| (0..=2).map(move |b| (f, b))).collect();
    assert_eq!(combinations, all);
    assert!(matches!(ListSync::InSync.flag(), 0));
}

#[test]
fn golden_vector_names_are_unique_and_say_their_direction() {
    let all = vectors::all();
    let names: BTreeSet<_> = all.iter().map(|v| v.name.clone()).collect();
    assert_eq!(names.len(), all.len());
    for v in &all {
        let suffix = match v.packet.direction() {
            Direction::ClientToServer => "_c2s",
            Direction::ServerToClient => "_s2c",
        };
        assert!(v.name.starts_with(&v.packet.id().to_string()), "{}", v.name);
        assert!(v.name.ends_with(suffix), "{}", v.name);
    }
}
