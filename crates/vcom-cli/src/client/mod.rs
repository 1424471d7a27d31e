//! The `vcom` command line: argument parsing, dispatch to one module per command group,
//! and the exit codes of the README's contract (0 ok, 1 runtime failure, 2 bad usage).
//!
//! Errors reach [`main`] as `anyhow` chains and are printed as one line on stderr.
//! Nothing here panics on input: bad arguments are clap's (exit 2), everything else an
//! error (exit 1).

pub(crate) mod connect;
mod files;
pub(crate) mod format;
mod groups;
mod history;
mod identity;
pub(crate) mod listen;
mod lists;
mod messages;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vcom_client::{GroupId, UserId};

pub use connect::default_profile_dir;

const AFTER_HELP: &str = "\
Profile: the identity (key and certificate), the device id, the pinned server
certificate, the friend and block lists and the message history (received and sent)
live in one directory per user and server.
Default: $XDG_CONFIG_HOME/vcom/<ID>@<HOST>_<PORT>, or ~/.config/vcom/<ID>@<HOST>_<PORT>
when XDG_CONFIG_HOME is not set. Several programs may use one profile at once; each
receives what arrives while it is connected.

Server certificate: trusted on first use and pinned in the profile (a changed
certificate is refused, showing both fingerprints), unless --insecure-pin or --ca says
otherwise.

Exit codes: 0 ok, 1 runtime failure (server unreachable, login denied, certificate
mismatch, transfer aborted), 2 bad usage.";

/// The vCom client: chat in a terminal, send messages and files, manage your lists.
#[derive(Debug, Parser)]
#[command(name = "vcom", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where and as whom to connect.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command shares.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server, as HOST:PORT (e.g. 127.0.0.1:7420).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// Your user identifier.
    #[arg(long, value_name = "ID", value_parser = parse_user)]
    pub user: UserId,
    /// The profile directory (default: see below).
    #[arg(long, value_name = "DIR")]
    pub profile: Option<PathBuf>,
    /// The server password, if the server has one.
    #[arg(
        long,
        env = "VCOM_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
    /// Trust only the server certificate with this SHA-256 fingerprint (as in the
    /// server's ready line) and pin it in the profile.
    #[arg(long, value_name = "SHA256", conflicts_with = "ca")]
    pub insecure_pin: Option<String>,
    /// Verify the server's certificate against the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// A `vcom` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a text message to a user.
    Send {
        /// The recipient.
        #[arg(value_parser = parse_user)]
        user: UserId,
        /// The message.
        text: String,
    },
    /// Send an image file (at most 1 MiB) to a user.
    SendImage {
        /// The recipient.
        #[arg(value_parser = parse_user)]
        user: UserId,
        /// The image file.
        file: PathBuf,
    },
    /// Send a text message to a group you are a member of.
    GroupSend {
        /// The group identifier (`vcom groups list` shows yours).
        #[arg(value_name = "GID", value_parser = parse_group)]
        group: GroupId,
        /// The message.
        text: String,
    },
    /// Print messages as they arrive, until interrupted (Ctrl-C).
    Listen {
        /// One JSON object per line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show or change your friend list (kept on the server, synced to every device).
    Friends {
        /// What to do with the list.
        #[command(subcommand)]
        action: ListAction,
    },
    /// Show or change your block list (the server drops messages from blocked users).
    Block {
        /// What to do with the list.
        #[command(subcommand)]
        action: ListAction,
    },
    /// Send a file to a user who is online, showing progress.
    SendFile {
        /// The recipient.
        #[arg(value_parser = parse_user)]
        user: UserId,
        /// The file.
        path: PathBuf,
    },
    /// Wait for files offered to you and save them, until interrupted (Ctrl-C).
    Receive {
        /// Where to save files (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Accept every offer without asking (otherwise each offer is asked about on
        /// the terminal, and declined when stdin is not a terminal).
        #[arg(long)]
        accept_all: bool,
        /// Exit after the first offer has been answered and its transfer has ended.
        #[arg(long)]
        once: bool,
    },
    /// Export or import your identity (key and certificate), for another device, or
    /// print your key's fingerprint, for the administrator.
    Identity {
        /// Export, import or fingerprint.
        #[command(subcommand)]
        action: IdentityAction,
    },
    /// Client-side groups: see yours, create your own, change the ones you own, leave
    /// any (the server must offer the extension set).
    Groups {
        /// What to do.
        #[command(subcommand)]
        action: GroupsAction,
    },
    /// Show the messages kept in the profile, received and sent, oldest first.
    History {
        /// Only the direct conversation with this user (both directions).
        #[arg(long, value_name = "USER", value_parser = parse_user, conflicts_with = "group")]
        with: Option<UserId>,
        /// Only the messages of this group.
        #[arg(long, value_name = "GID", value_parser = parse_group)]
        group: Option<GroupId>,
        /// One JSON object per line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Chat in an interactive terminal UI.
    Chat {
        /// Where accepted files are saved (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// How a message in a conversation not on screen calls attention: `off` (the
        /// unread count only), `bell` (the terminal's), `desktop` (`notify-send`).
        #[arg(long, value_enum, value_name = "HOW", default_value = "off")]
        notify: crate::chat::Notify,
    },
}

/// A change to, or a look at, the friend or the block list.
#[derive(Debug, Subcommand)]
pub enum ListAction {
    /// Add a user to the list.
    Add {
        /// The user.
        #[arg(value_parser = parse_user)]
        user: UserId,
    },
    /// Remove a user from the list.
    Remove {
        /// The user.
        #[arg(value_parser = parse_user)]
        user: UserId,
    },
    /// Print the list, one user per line.
    List {
        /// A JSON array of user identifiers.
        #[arg(long)]
        json: bool,
    },
}

/// A look at, or a change to, the groups you are a member of.
#[derive(Debug, Subcommand)]
pub enum GroupsAction {
    /// Print your groups, one per line: id, name, owner (`-` for the administrator's)
    /// and the number of members.
    List {
        /// A JSON array of objects with id, name, owner (null for the administrator's)
        /// and members.
        #[arg(long)]
        json: bool,
    },
    /// Print the members of one of your groups, one per line (the owner marked).
    Members {
        /// The group.
        #[arg(value_name = "GID", value_parser = parse_group)]
        group: GroupId,
        /// A JSON array of user identifiers.
        #[arg(long)]
        json: bool,
    },
    /// Create a group that you own, with you and the given users as members; prints its
    /// id.
    Create {
        /// Its name (1 to 64 bytes, no control characters).
        name: String,
        /// A member to add (repeat for more); they must have logged in before.
        #[arg(long = "member", value_name = "USER", value_parser = parse_user)]
        members: Vec<UserId>,
    },
    /// Add a member to a group you own.
    Add {
        /// The group.
        #[arg(value_name = "GID", value_parser = parse_group)]
        group: GroupId,
        /// The user.
        #[arg(value_parser = parse_user)]
        user: UserId,
    },
    /// Remove a member from a group you own.
    Remove {
        /// The group.
        #[arg(value_name = "GID", value_parser = parse_group)]
        group: GroupId,
        /// The member.
        #[arg(value_parser = parse_user)]
        user: UserId,
    },
    /// Leave a group (the administrator's too).
    Leave {
        /// The group.
        #[arg(value_name = "GID", value_parser = parse_group)]
        group: GroupId,
    },
}

/// Moving the identity between devices of one user, or showing which key it holds.
#[derive(Debug, Subcommand)]
pub enum IdentityAction {
    /// Print the SHA-256 of your public key (64 hex digits), the value the server binds
    /// to your user identifier; give it to the administrator, who binds it with
    /// `vcom-server admin user reset-key USER --fingerprint SHA256`. Works offline;
    /// creates a key if the profile has none yet.
    Fingerprint,
    /// Write the identity (private key and certificate, PEM) to a new file, mode 0600.
    Export {
        /// The file to create; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Install an exported identity into this profile (before its first login).
    Import {
        /// The file written by `identity export`.
        file: PathBuf,
    },
}

fn parse_user(s: &str) -> Result<UserId, String> {
    UserId::new(s).map_err(|e| e.to_string())
}

fn parse_group(s: &str) -> Result<GroupId, String> {
    s.parse::<i32>()
        .map(GroupId)
        .map_err(|_| format!("a group identifier is a number, not {s:?}"))
}

/// Parses the command line, runs the command and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vcom: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcom: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Send { user, text } => messages::send(global, &user, &text).await,
        Command::SendImage { user, file } => messages::send_image(global, &user, &file).await,
        Command::GroupSend { group, text } => messages::group_send(global, group, &text).await,
        Command::Listen { json } => listen::listen(global, json).await,
        Command::Friends { action } => lists::run(global, lists::Which::Friends, action).await,
        Command::Block { action } => lists::run(global, lists::Which::Blocks, action).await,
        Command::SendFile { user, path } => files::send_file(global, &user, &path).await,
        Command::Receive {
            dir,
            accept_all,
            once,
        } => files::receive(global, &dir, accept_all, once).await,
        Command::Identity { action } => identity::run(global, action).await,
        Command::Groups { action } => groups::run(global, action).await,
        Command::History { with, group, json } => history::show(global, with, group, json).await,
        Command::Chat { dir, notify } => crate::chat::run(global, &dir, notify).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_group_identifier_must_be_a_number() {
        assert_eq!(parse_group("7"), Ok(GroupId(7)));
        assert!(parse_group("team").is_err());
    }
}
