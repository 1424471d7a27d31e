//! `groups list|members|create|add|remove|leave`: client-side groups (an extension: the
//! server must offer `vcom/1+ext`). A user creates a group and owns it; the owner adds
//! and removes members; any member leaves. The groups are kept in the profile.

use anyhow::anyhow;
use vcom_client::{Group, UserId};

use super::Global;
use super::GroupsAction;
use super::connect::{Connection, connect, finish, lost};

/// Runs a groups command.
pub(crate) async fn run(global: &Global, action: GroupsAction) -> anyhow::Result<()> {
    let connection = connect(global).await?;
    let client = &connection.client;
    match action {
        GroupsAction::List { json } => {
            let groups = current(&connection).await?;
            if json {
                let all: Vec<serde_json::Value> = groups.iter().map(group_json).collect();
                println!("{}", serde_json::Value::from(all));
            } else {
                for group in &groups {
                    println!("{}", line(group));
                }
                if groups.is_empty() {
                    eprintln!("you are in no group");
                }
            }
        }
        GroupsAction::Members { group, json } => {
            let groups = current(&connection).await?;
            let Some(found) = groups.iter().find(|g| g.id == group) else {
                return Err(anyhow!(
                    "you are not a member of group {group} (or there is no such group)"
                ));
            };
            if json {
                let names: Vec<&str> = found.members.iter().map(UserId::as_str).collect();
                println!("{}", serde_json::Value::from(names));
            } else {
                for member in &found.members {
                    if found.owner.as_ref() == Some(member) {
                        println!("{member}\t(owner)");
                    } else {
                        println!("{member}");
                    }
                }
            }
        }
        GroupsAction::Create { name, members } => {
            let group = client.create_group(&name, &members).await.map_err(lost)?;
            println!("{group}");
        }
        GroupsAction::Add { group, user } => {
            client.add_group_member(group, &user).await.map_err(lost)?;
            println!("{user} is a member of group {group}");
        }
        GroupsAction::Remove { group, user } => {
            client
                .remove_group_member(group, &user)
                .await
                .map_err(lost)?;
            println!("{user} is not a member of group {group}");
        }
        GroupsAction::Leave { group } => {
            client.leave_group(group).await.map_err(lost)?;
            println!("you left group {group}");
        }
    }
    finish(connection).await
}

/// The groups as the server announced them at this login: a Ping's answer follows
/// them.
async fn current(connection: &Connection) -> anyhow::Result<Vec<Group>> {
    connection.client.ping().await.map_err(lost)?;
    Ok(connection.client.groups())
}

/// `GID<TAB>NAME<TAB>OWNER<TAB>N members`; the owner is `-` for the administrator's.
fn line(group: &Group) -> String {
    let owner = group.owner.as_ref().map_or("-", UserId::as_str);
    let count = group.members.len();
    let members = if count == 1 { "member" } else { "members" };
    format!(
        "{}\t{}\t{owner}\t{count} {members}",
        group.id,
        one_line(&group.name)
    )
}

/// A name as one line of output (names never hold control characters, but a profile
/// could be edited by hand).
fn one_line(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn group_json(group: &Group) -> serde_json::Value {
    serde_json::json!({
        "id": group.id.get(),
        "name": group.name,
        "owner": group.owner.as_ref().map(UserId::as_str),
        "members": group.members.iter().map(UserId::as_str).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use vcom_client::GroupId;

    use super::*;

    fn uid(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    #[test]
    fn a_group_line_names_its_owner_or_a_dash_for_the_administrators() {
        let mut group = Group {
            id: GroupId(4),
            name: "Café\ncrew".into(),
            owner: Some(uid("alice")),
            members: vec![uid("alice"), uid("bob")],
        };
        assert_eq!(line(&group), "4\tCafé crew\talice\t2 members");
        group.owner = None;
        group.members.pop();
        assert_eq!(line(&group), "4\tCafé crew\t-\t1 member");
        assert_eq!(
            group_json(&group),
            serde_json::json!({"id": 4, "name": "Café\ncrew", "owner": null, "members": ["alice"]})
        );
    }
}
