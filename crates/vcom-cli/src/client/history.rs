//! `history [--with USER | --group GID] [--json]`: the messages kept in the profile,
//! received and sent, in the order this device saw them; sent ones read
//! `alice -> bob: ... [✓ stored]` with what became of them (`"direction": "out"` and
//! `"delivery"` in JSON). Works offline: it reads the profile's database and never
//! connects.

use std::io::Write;

use anyhow::Context;
use vcom_client::{GroupId, History, HistoryQuery, UserId};

use super::Global;
use super::connect::open_profile;
use super::format::{Shown, message_json, message_line};

/// `vcom history`.
pub(crate) async fn show(
    global: &Global,
    with: Option<UserId>,
    group: Option<GroupId>,
    json: bool,
) -> anyhow::Result<()> {
    let profile = open_profile(global, true).await?;
    let history = History::open(profile.history_path())
        .await
        .with_context(|| format!("cannot open {}", profile.history_path().display()))?;
    let query = match (with, group) {
        (Some(user), _) => HistoryQuery::With(user),
        (None, Some(group)) => HistoryQuery::Group(group),
        (None, None) => HistoryQuery::All,
    };
    let entries = history
        .query(query)
        .await
        .context("cannot read the history")?;
    let mut out = std::io::stdout().lock();
    let groups = &profile.state().groups;
    for entry in &entries {
        let m = Shown::from(entry).named(groups);
        let line = if json {
            message_json(&m).to_string()
        } else {
            message_line(&m)
        };
        if writeln!(out, "{line}").is_err() {
            // stdout closed (`| head`): nothing more to do.
            return Ok(());
        }
    }
    if entries.is_empty() && !json {
        eprintln!("no messages");
    }
    Ok(())
}
