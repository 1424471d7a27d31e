//! A writer killed with SIGKILL loses nothing it had acknowledged.
//!
//! The parent test re-runs this test binary, filtered to [`crash_child_writer`], with
//! `VCOM_STORE_CRASH_DB` set: the child writes messages from several tasks and prints
//! `stored <id>` once each `store_message` has returned. The parent kills it after a
//! varying number of lines, reopens the file, and checks every reported id is there.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vcom_store::{MessageId, Store, StoreConfig};

use crate::support::{db_path, no_hook, open_at, text, ts, uid, user_with_device};

const CHILD_ENV: &str = "VCOM_STORE_CRASH_DB";

/// Not a test on its own: the body of the child process (does nothing without the env).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = open_at(path.as_ref(), StoreConfig::default());
    let alice = user_with_device(&store, "alice").await;
    store.register_user(&uid("bob"), None, ts(1)).await.unwrap();
    println!("ready");
    let writers: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                // Bounded, so an orphaned child stops on its own.
                for i in 0..20_000 {
                    let id = store
                        .store_message(
                            text("alice", alice, &["bob"], &format!("{task}/{i}")),
                            no_hook(),
                        )
                        .await
                        .unwrap()
                        .id
                        .expect("stored");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "stored {}", id.0).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_loses_no_acknowledged_message_and_leaves_a_sound_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(dir.path());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let kill_after = 20 + (nanos % 600) as usize;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("stored ")
                && lines_tx.send(id.trim().parse::<i64>().unwrap()).is_err()
            {
                break;
            }
        }
    });

    let mut reported = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while reported.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        let id = lines.recv_timeout(left).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "child reported {} writes, expected {kill_after}: {e}",
                reported.len()
            )
        });
        reported.insert(MessageId(id));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Lines that reached the pipe before the kill were acknowledged writes too.
    reported.extend(lines.try_iter().map(MessageId));

    let store = open_at(&path, StoreConfig::default());
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    let device = store.issue_device(&uid("bob"), ts(2)).await.unwrap();
    let present: HashSet<MessageId> = store
        .pending(&uid("bob"), device, None, usize::MAX, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    let missing: Vec<_> = reported.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    eprintln!(
        "killed after {} acknowledged writes; {} found after restart",
        reported.len(),
        present.len()
    );
    assert!(present.len() >= kill_after);
}
