//! `friends add|remove|list` and `block add|remove|list`. The lists live on the server
//! and are synced to every device of the user; a change is uploaded at once.

use vcom_client::UserId;

use super::connect::{connect, finish, lost};
use super::{Global, ListAction};

/// Which list a command works on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Friends,
    Blocks,
}

/// Runs a list command.
pub(crate) async fn run(global: &Global, which: Which, action: ListAction) -> anyhow::Result<()> {
    let connection = connect(global).await?;
    let client = &connection.client;
    match action {
        ListAction::Add { user } => {
            let changed = match which {
                Which::Friends => client.add_friend(&user).await,
                Which::Blocks => client.block(&user).await,
            }
            .map_err(lost)?;
            println!("{}", added(which, &user, changed));
        }
        ListAction::Remove { user } => {
            let changed = match which {
                Which::Friends => client.remove_friend(&user).await,
                Which::Blocks => client.unblock(&user).await,
            }
            .map_err(lost)?;
            println!("{}", removed(which, &user, changed));
        }
        ListAction::List { json } => {
            let users = match which {
                Which::Friends => client.friends(),
                Which::Blocks => client.blocks(),
            };
            if json {
                let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                println!("{}", serde_json::Value::from(names));
            } else {
                for user in &users {
                    println!("{user}");
                }
                if users.is_empty() {
                    eprintln!(
                        "{}",
                        match which {
                            Which::Friends => "no friends yet",
                            Which::Blocks => "nobody is blocked",
                        }
                    );
                }
            }
        }
    }
    finish(connection).await
}

fn added(which: Which, user: &UserId, changed: bool) -> String {
    match (which, changed) {
        (Which::Friends, true) => format!("{user} is now a friend"),
        (Which::Friends, false) => format!("{user} was already a friend"),
        (Which::Blocks, true) => format!("{user} is now blocked"),
        (Which::Blocks, false) => format!("{user} was already blocked"),
    }
}

fn removed(which: Which, user: &UserId, changed: bool) -> String {
    match (which, changed) {
        (Which::Friends, true) => format!("{user} is no longer a friend"),
        (Which::Friends, false) => format!("{user} was not a friend"),
        (Which::Blocks, true) => format!("{user} is no longer blocked"),
        (Which::Blocks, false) => format!("{user} was not blocked"),
    }
}
