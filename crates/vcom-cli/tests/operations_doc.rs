//! `docs/operations.md` works as written: every command of its `sh` examples that
//! concerns a running server is run, in order, against a real `vcom-server`.
//!
//! The page's paths are pointed at this test's own (`vcom-data` and `/var/lib/vcom` at
//! its data directory, `/var/backups` at a scratch directory), `sudo` is dropped,
//! `systemctl stop|start vcom-server` stop and start the test's server, and the lines
//! that build or install the package (`cargo xtask dist`, `dpkg`) are left to
//! `cargo xtask dist --check`. Every other line must exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{SERVER, Server};

/// The lines of the page's `sh` code blocks, in order, without comments-only lines.
fn example_lines(page: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in page.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        let line = line.trim();
        if in_sh && !line.is_empty() && !line.starts_with('#') {
            lines.push(line.to_owned());
        }
    }
    lines
}

#[test]
fn every_server_example_of_the_operations_page_works_as_written() {
    let page = include_str!("../../../docs/operations.md");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let programs = Path::new(SERVER).parent().unwrap();
    let path = format!(
        "{}:{}",
        programs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut server = Some(Server::start(&data, None));
    let mut ran = 0;
    for line in example_lines(page) {
        let line = line.strip_prefix("sudo ").unwrap_or(&line).to_owned();
        if line.starts_with("cargo xtask dist") || line.starts_with("dpkg") {
            continue;
        }
        if line.starts_with("systemctl stop vcom-server") {
            if let Some(running) = server.take() {
                assert_eq!(running.terminate().code(), Some(0));
            }
            continue;
        }
        if line.starts_with("systemctl start vcom-server") {
            if server.is_none() {
                server = Some(Server::start(&data, None));
            }
            continue;
        }
        let command = line
            .replace("/var/lib/vcom", &data.display().to_string())
            .replace("vcom-data", &data.display().to_string())
            .replace("/var/backups", &backups.display().to_string());
        let output = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("PATH", &path)
            .env_remove("VCOM_PASSWORD")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`{line}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} examples ran: the page changed shape?");
    if let Some(running) = server {
        assert_eq!(running.terminate().code(), Some(0));
    }
}
