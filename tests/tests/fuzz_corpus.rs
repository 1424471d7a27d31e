//! The fuzz target's committed seed corpus, replayed on every `cargo test`, so CI runs
//! the fuzzer's checks on them without a fuzzer.
//!
//! The seeds are made here from the golden vectors and a few hand-written edge cases.
//! To rewrite them after a deliberate change, run
//! `VCOM_WRITE_SEEDS=1 cargo test -p vcom-tests --test fuzz_corpus -- --test-threads=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use vcom_protocol::{ClientPacket, Limits, ServerPacket};
use vcom_tests::fuzz_check::{check_direction, decode_everywhere};
use vcom_tests::vectors;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/vcom-protocol/fuzz/corpus/decode")
}

fn be(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn text(s: &str) -> Vec<u8> {
    [be(s.len() as i32), s.as_bytes().to_vec()].concat()
}

fn vector(name: &str) -> Vec<u8> {
    vectors::all()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no golden vector {name}"))
        .packet
        .to_bytes()
        .to_vec()
}

/// Every seed file: its name (without `seed-` and `.bin`) and its bytes.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = [
        "256_connection_request_known_device_with_password_c2s",
        "260_user_lists_sync_friends_2_blocks_2_c2s",
        "261_friend_list_s2c",
        "263_broadcast_s2c",
        "264_user_message_text_s2c",
        "265_group_message_s2c",
        "266_send_user_message_c2s",
        "268_file_transfer_request_c2s",
        "270_file_transfer_abort_not_allowed_s2c",
        "271_file_transfer_offer_s2c",
        "273_file_chunk_c2s",
        "512_ping_c2s",
        "514_sequence_s2c",
        "515_receipt_c2s",
        "516_message_tag_c2s",
        "517_send_ack_inbox_full_s2c",
        "518_group_create_c2s",
        "524_group_list_s2c",
        "525_group_info_owned_s2c",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), vector(name)))
    .collect();
    let ts = 1_700_000_000_000i64.to_be_bytes().to_vec();
    seeds.extend([
        (
            "stream_login_sync_message".to_owned(),
            [
                vector("256_connection_request_new_device_c2s"),
                vector("260_user_lists_sync_friends_0_blocks_1_c2s"),
                vector("266_send_user_message_c2s"),
            ]
            .concat(),
        ),
        (
            "edge_266_recipient_length_i32_max".to_owned(),
            [be(266), be(i32::MAX)].concat(),
        ),
        (
            "edge_261_count_i32_max".to_owned(),
            [be(261), be(i32::MAX)].concat(),
        ),
        (
            "edge_264_data_length_minus_one".to_owned(),
            [be(264), text("alice"), vec![0], ts, vec![1], be(-1)].concat(),
        ),
        (
            "edge_273_chunk_length_1025".to_owned(),
            [be(273), be(17), be(1025)].concat(),
        ),
        ("edge_260_flag_3".to_owned(), [be(260), vec![3, 0]].concat()),
        (
            "edge_256_invalid_utf8_user".to_owned(),
            [be(256), be(2), vec![0xc3, 0x28], be(-1), be(0)].concat(),
        ),
        (
            "edge_268_file_size_zero".to_owned(),
            [be(268), text("bob"), be(0), text("a.txt")].concat(),
        ),
        (
            "edge_265_truncated".to_owned(),
            vector("265_group_message_s2c")[..30].to_vec(),
        ),
        ("edge_unknown_id_511".to_owned(), be(511)),
    ]);
    seeds
}

#[test]
fn the_committed_seed_corpus_is_exactly_what_this_file_makes() {
    let dir = corpus_dir();
    if std::env::var_os("VCOM_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(format!("seed-{name}.bin")), bytes).unwrap();
        }
    }
    for (name, bytes) in seeds() {
        let path = dir.join(format!("seed-{name}.bin"));
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with VCOM_WRITE_SEEDS=1)",
                path.display()
            )
        });
        assert_eq!(committed, bytes, "{} is stale", path.display());
    }
}

#[test]
fn every_committed_corpus_file_passes_the_fuzz_checks_at_every_split() {
    let mut replayed = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let is_seed = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"));
        if !is_seed {
            // Files the fuzzer added locally; only committed seeds are replayed.
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        decode_everywhere(&data);
        for cut in 0..=data.len() {
            check_direction::<ClientPacket>(&data, cut, &Limits::default());
            check_direction::<ServerPacket>(&data, cut, &Limits::default());
        }
        replayed += 1;
    }
    assert!(
        replayed >= seeds().len(),
        "only {replayed} seed files found"
    );
}
