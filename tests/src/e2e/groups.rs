//! Client-side groups (518-526) through the SDK: a user creates a group, renames it,
//! adds and removes members; a member leaves; every member's devices hear of each
//! change, and the one removed is told so.

use std::sync::Arc;

use anyhow::{bail, ensure};
use vcom_client::{ClientError, Event, Group, GroupExit, GroupId, GroupOutcome};

use super::sdk::{self, Device, uid};
use super::{Ctx, Outcome};

/// Waits for the GroupInfo (525) of `group` that `holds` accepts.
async fn info(
    device: &mut Device,
    group: GroupId,
    what: &str,
    holds: impl Fn(&Group) -> bool,
) -> anyhow::Result<Group> {
    device
        .wait_for(what, |e| match e {
            Event::GroupChanged(g) if g.id == group && holds(&g) => Some(g),
            _ => None,
        })
        .await
}

/// Waits for the GroupRemoved (526) of `group` and returns its reason.
async fn removed(device: &mut Device, group: GroupId) -> anyhow::Result<GroupExit> {
    device
        .wait_for("GroupRemoved (526)", |e| match e {
            Event::GroupRemoved { group: g, reason } if g == group => Some(reason),
            _ => None,
        })
        .await
}

/// One owner, two members and the whole life of a group: every group packet in the
/// direction it travels.
pub async fn client_groups(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let mut owen = sdk::connect(&ctx.main, "owen", &ctx.dir("owen")?).await?;
    let pax_dir = ctx.dir("pax")?;
    let mut pax = sdk::connect(&ctx.main, "pax", &pax_dir).await?;
    let mut rue = sdk::connect(&ctx.main, "rue", &ctx.dir("rue")?).await?;

    // 518 -> 525 to every member, then 523.
    let group = owen.client.create_group("e2e crew", &[uid("pax")?]).await?;
    info(&mut pax, group, "the new group (525)", |g| {
        g.owner.as_ref().map(|o| o.as_str()) == Some("owen")
    })
    .await?;
    // 519.
    owen.client.rename_group(group, "e2e crew 2").await?;
    info(&mut pax, group, "the new name", |g| g.name == "e2e crew 2").await?;
    // 520, and a refusal: only the owner adds.
    match pax.client.add_group_member(group, &uid("rue")?).await {
        Err(ClientError::GroupRefused(GroupOutcome::NotOwner)) => {}
        other => bail!("a member adding someone got {other:?}, not outcome 1"),
    }
    owen.client.add_group_member(group, &uid("rue")?).await?;
    info(&mut rue, group, "rue's GroupInfo", |g| g.members.len() == 3).await?;
    // 521 -> 526 to the one removed.
    owen.client.remove_group_member(group, &uid("pax")?).await?;
    let reason = removed(&mut pax, group).await?;
    ensure!(reason == GroupExit::Removed, "pax was told {reason}");
    // 522 -> 526 (left) to the one who left, 525 to the rest.
    rue.client.leave_group(group).await?;
    let reason = removed(&mut rue, group).await?;
    ensure!(reason == GroupExit::Left, "rue was told {reason}");
    info(&mut owen, group, "the group without rue", |g| {
        g.members.len() == 1
    })
    .await?;

    // 524 at the next login: a device away when it was removed forgets the group.
    owen.client.add_group_member(group, &uid("pax")?).await?;
    info(&mut pax, group, "pax back in the group", |g| {
        g.members.iter().any(|m| m.as_str() == "pax")
    })
    .await?;
    pax.close().await?;
    owen.client.remove_group_member(group, &uid("pax")?).await?;
    let pax = sdk::connect(&ctx.main, "pax", &pax_dir).await?;
    pax.settle().await?;
    ensure!(
        pax.client.group(group).is_none(),
        "pax still lists the group after logging in again"
    );
    for device in [owen, pax, rue] {
        device.close().await?;
    }
    Ok(Outcome::Passed)
}
