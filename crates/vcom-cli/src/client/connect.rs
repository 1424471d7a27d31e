//! Connecting with the shared options: the profile directory, the password, the trust
//! mode; turning SDK errors into one line a user can act on; and the end of a one-shot
//! command, which reports the messages that arrived meanwhile.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use std::collections::VecDeque;

use vcom_client::{Client, ClientConfig, ClientError, DenyCode, Event, EventStream, Trust, UserId};

use super::Global;

/// A logged-in client and its events.
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) events: Events,
}

/// Most events other than messages kept while a login settles (list changes, offers,
/// broadcasts: a handful in practice).
const EARLY_EVENTS: usize = 1024;

/// The events of a connection: those kept while the login settled, then the live ones.
pub(crate) struct Events {
    early: VecDeque<Event>,
    stream: EventStream,
}

impl Events {
    /// The next event, or `None` once the connection has ended.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        match self.early.pop_front() {
            Some(event) => Some(event),
            None => self.stream.next().await,
        }
    }
}

/// The default profile directory for `user` on `server`:
/// `$XDG_CONFIG_HOME/vcom/<user>@<server>`, else `~/.config/vcom/<user>@<server>`, with
/// every character other than letters, digits, `.`, `-` and `_` in either part
/// replaced by `_` (so `alice` on `127.0.0.1:7420` is `alice@127.0.0.1_7420`).
pub fn default_profile_dir(user: &UserId, server: &str) -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".config"))
            .ok_or_else(|| {
                anyhow!("neither XDG_CONFIG_HOME nor HOME is set: give the profile with --profile")
            })?,
    };
    let name = format!("{}@{}", safe_part(user.as_str()), safe_part(server));
    Ok(base.join("vcom").join(name))
}

/// Keeps a path component harmless: no separators, no `..`, no hidden file.
fn safe_part(text: &str) -> String {
    let mut part: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if part.starts_with('.') {
        part.replace_range(0..1, "_");
    }
    part
}

/// The profile directory these options name.
pub(crate) fn profile_dir(global: &Global) -> anyhow::Result<PathBuf> {
    match &global.profile {
        Some(dir) => Ok(dir.clone()),
        None => default_profile_dir(&global.user, &global.server),
    }
}

fn trust(global: &Global) -> Trust {
    match (&global.insecure_pin, &global.ca) {
        (Some(pin), _) => Trust::Fingerprint(pin.clone()),
        (None, Some(ca)) => Trust::CaFile(ca.clone()),
        (None, None) => Trust::TrustOnFirstUse,
    }
}

/// Connects and logs in, then waits until the login's list sync and the delivery of
/// stored messages are done, so the caller sees the server's lists and every pending
/// message is in the history. The stored messages are not among the events (they are
/// in the history); other events of that time are.
pub(crate) async fn connect(global: &Global) -> anyhow::Result<Connection> {
    let (client, mut stream) = login(global).await?;
    let early = settle(&client, &mut stream).await?;
    Ok(Connection {
        client,
        events: Events { early, stream },
    })
}

/// Connects and logs in, and hands every event over as it comes, the stored messages
/// first: for commands that show messages as they arrive.
pub(crate) async fn connect_live(global: &Global) -> anyhow::Result<Connection> {
    let (client, stream) = login(global).await?;
    Ok(Connection {
        client,
        events: Events {
            early: VecDeque::new(),
            stream,
        },
    })
}

async fn login(global: &Global) -> anyhow::Result<(Client, EventStream)> {
    let profile = profile_dir(global)?;
    let mut config = ClientConfig::new(global.server.clone(), global.user.clone(), &profile)
        .with_trust(trust(global));
    if let Some(password) = &global.password {
        config = config.with_password(password.clone().into_bytes());
    }
    Client::connect(config)
        .await
        .map_err(|e| explain(e, global, &profile))
}

/// Waits until the server has answered everything the login started.
///
/// The server sends its list sync request (259) and the stored messages right after
/// accepting the login. The first Pong therefore comes after them, and after the SDK
/// queued its sync answer (260); the second Pong comes after the server's answer to
/// that (261/262). Changing a list before this could overwrite a newer server list.
///
/// The events are read meanwhile: the client stops reading from the server while its
/// event queue is full, so a backlog longer than the queue would otherwise hold the
/// Pongs back for ever. Stored messages are dropped from the events (they are in the
/// history); the rest are returned, to be handed out first.
async fn settle(client: &Client, events: &mut EventStream) -> anyhow::Result<VecDeque<Event>> {
    let pings = async {
        for _ in 0..2 {
            client.ping().await.map_err(lost)?;
        }
        anyhow::Ok(())
    };
    tokio::pin!(pings);
    let mut early = VecDeque::new();
    let mut open = true;
    loop {
        tokio::select! {
            done = &mut pings => {
                done?;
                return Ok(early);
            }
            event = events.next(), if open => match event {
                Some(Event::Message(_) | Event::GroupMessage(_)) => {}
                Some(other) if early.len() < EARLY_EVENTS => early.push_back(other),
                Some(_) => {}
                None => open = false,
            },
        }
    }
}

/// Ends a one-shot command: waits until the server has handled what was sent, reports
/// the messages that arrived meanwhile (already in the history), and logs out.
pub(crate) async fn finish(connection: Connection) -> anyhow::Result<()> {
    let Connection { client, events } = connection;
    // No events wanted any more; messages still go to the history.
    drop(events);
    client.ping().await.map_err(lost)?;
    report_arrivals(client.received_count());
    client.close().await.map_err(lost)?;
    Ok(())
}

/// Tells the user, on stderr, how many messages arrived during a command.
pub(crate) fn report_arrivals(count: u64) {
    match count {
        0 => {}
        1 => eprintln!("1 new message arrived; see `vcom history`"),
        n => eprintln!("{n} new messages arrived; see `vcom history`"),
    }
}

/// An error from a connection that was up: say that it was lost, and why.
pub(crate) fn lost(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Closed => anyhow!("the connection to the server was closed"),
        e @ (ClientError::InvalidInput(_)
        | ClientError::NoSuchTransfer(_)
        | ClientError::GroupRefused(_)
        | ClientError::ExtensionRequired(_)) => anyhow!(e),
        other => anyhow!(other).context("the connection to the server failed"),
    }
}

/// Explains a failed connect in one line, with what to do about it.
fn explain(e: ClientError, global: &Global, profile: &Path) -> anyhow::Error {
    let server = &global.server;
    match e {
        ClientError::LoginDenied(code) => {
            let hint = match code {
                DenyCode::WrongPassword => "; give the right one with --password or VCOM_PASSWORD",
                DenyCode::KeyMismatch => {
                    "; this profile holds another key: use the profile that logged in \
                     first, move its identity here with `vcom identity export` and \
                     `vcom identity import` (into a new profile), or ask the administrator \
                     to bind this profile's key, which `vcom identity fingerprint` prints"
                }
                DenyCode::UnknownDevice => {
                    "; the profile's device id was not issued by this server: use one \
                     profile per server"
                }
                _ => "",
            };
            anyhow!(
                "the server at {server} refused the login of {}: {code}{hint}",
                global.user
            )
        }
        ClientError::FingerprintMismatch { expected, found } => {
            let source = match &global.insecure_pin {
                Some(_) => "given with --insecure-pin".to_owned(),
                None => format!("pinned in {}", profile.display()),
            };
            anyhow!(
                "refusing the server at {server}: its certificate has sha256 {found}, but \
                 sha256 {expected} is {source}; if the server's certificate was replaced \
                 on purpose, run again with --insecure-pin {found}"
            )
        }
        ClientError::Io(io) => {
            anyhow!(io).context(format!("cannot connect to the server at {server}"))
        }
        ClientError::Timeout(what) => {
            anyhow!("cannot connect to the server at {server}: timed out while {what}")
        }
        ClientError::Tls(tls) => {
            anyhow!(tls).context(format!("the TLS handshake with {server} failed"))
        }
        ClientError::Profile(profile_error) => {
            anyhow!(profile_error).context(format!("profile {}", profile.display()))
        }
        other => anyhow!(other).context(format!("cannot log in to {server}")),
    }
}

/// Opens the profile directory of a local-only command (history, identity) on a
/// blocking thread, checking that it belongs to the user.
pub(crate) async fn open_profile(
    global: &Global,
    must_exist: bool,
) -> anyhow::Result<vcom_client::Profile> {
    let dir = profile_dir(global)?;
    if must_exist && !dir.exists() {
        return Err(anyhow!(
            "there is no profile at {} yet: connect once (e.g. `vcom ... friends list`) first",
            dir.display()
        ));
    }
    let user = global.user.clone();
    let shown = dir.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<vcom_client::Profile> {
        let mut profile = vcom_client::Profile::open(&dir)?;
        let before = profile.state().clone();
        profile.claim(&user)?;
        if *profile.state() != before {
            profile.save()?;
        }
        Ok(profile)
    })
    .await
    .context("the profile task failed")?
    .with_context(|| format!("profile {}", shown.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_directory_names_cannot_escape_the_config_directory() {
        assert_eq!(safe_part("127.0.0.1:7420"), "127.0.0.1_7420");
        assert_eq!(safe_part("../../etc"), "_._.._etc");
        assert_eq!(safe_part(".hidden"), "_hidden");
        assert_eq!(safe_part("bob"), "bob");
    }
}
