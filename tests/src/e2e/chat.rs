//! Chat scenarios through the SDK: several devices of one user, offline delivery across
//! a server restart, friend and block list sync, blocking, groups and broadcast.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures::FutureExt;
use vcom_client::{Delivery, Event, GroupId, MessageKind, Profile, SendOutcome, TransferOutcome};

use super::sdk::{self, Device, expect_text, uid};
use super::{Ctx, Outcome};

/// Gives the profile `to` the identity (key) of the profile `from`: another device of
/// the same user, as `vcom identity export` / `import` do.
fn share_identity(ctx: &Ctx, from: &Path, to: &Path) -> anyhow::Result<()> {
    let pem = ctx.dir("identity")?.join("identity.pem");
    Profile::open(from)
        .context("cannot open the exporting profile")?
        .export_identity(&pem)
        .context("cannot export the identity")?;
    Profile::open(to)
        .context("cannot open the importing profile")?
        .import_identity(&pem)
        .context("cannot import the identity")?;
    Ok(())
}

/// A second device of `user`: a new profile holding the key of `first`'s profile.
fn second_profile(ctx: &Ctx, first: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let profile = ctx.dir(name)?;
    share_identity(ctx, first, &profile)?;
    Ok(profile)
}

/// The events already queued on a device (after [`Device::settle`], everything the
/// server sent before its Pong).
fn queued(device: &mut Device) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(event)) = device.events.next().now_or_never() {
        out.push(event);
    }
    out
}

/// Everything to a user reaches each of its online devices; a device that was offline
/// gets it at its next login, marked read because another device had it first.
pub async fn two_devices_one_user(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let p1 = ctx.dir("bea-laptop")?;
    let laptop = sdk::connect(&ctx.main, "bea", &p1).await?;
    laptop.close().await?;
    let p2 = second_profile(&ctx, &p1, "bea-phone")?;
    let mut laptop = sdk::connect(&ctx.main, "bea", &p1).await?;
    let mut phone = sdk::connect(&ctx.main, "bea", &p2).await?;
    ensure!(
        laptop.client.device_id() != phone.client.device_id(),
        "two devices got the same device id {}",
        phone.client.device_id()
    );
    let cal = sdk::connect(&ctx.main, "cal", &ctx.dir("cal")?).await?;

    let bea = uid("bea")?;
    cal.client.send_text(&bea, "hello, both of you").await?;
    for device in [&mut laptop, &mut phone] {
        let m = device.direct_message().await?;
        expect_text(&m, "cal", "hello, both of you")?;
    }

    phone.close().await?;
    let image = Bytes::from_static(b"\x89PNG\r\n\x1a\n e2e image");
    cal.client.send_image(&bea, image.clone()).await?;
    let m = laptop.direct_message().await?;
    ensure!(
        m.kind == MessageKind::Image && m.data == image,
        "the laptop got {m:?}"
    );
    laptop.settle().await?;

    let mut phone = sdk::connect(&ctx.main, "bea", &p2).await?;
    let m = phone.direct_message().await?;
    ensure!(
        m.kind == MessageKind::Image && m.data == image,
        "the phone's backlog held {m:?}"
    );
    ensure!(
        m.read,
        "a message another device already had must arrive with read = true"
    );

    for device in [laptop, phone, cal] {
        device.close().await?;
    }
    Ok(Outcome::Passed)
}

/// Messages to a user who is offline are stored, survive a stop (SIGTERM) and restart
/// of the server program on the same data directory, and arrive in order at login.
pub async fn offline_delivery_across_restart(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let server = ctx.servers.start("restart", None).await?;
    let hal_profile = ctx.dir("hal")?;
    let hal = sdk::connect(server.target(), "hal", &hal_profile).await?;
    hal.close().await?;

    let gil = sdk::connect(server.target(), "gil", &ctx.dir("gil")?).await?;
    let texts = ["first, while you were away", "second", "third and last"];
    for text in texts {
        gil.client.send_text(&uid("hal")?, text).await?;
    }
    // The Pong follows the three messages, each stored before it is relayed.
    gil.settle().await?;
    gil.close().await?;

    let data_dir = server.spec().data_dir.clone();
    let before = server.target().cert_sha256.clone();
    server.stop().await?;
    let server = ctx
        .servers
        .start_on("restart-again", &data_dir, None)
        .await?;
    ensure!(
        server.target().cert_sha256 == before,
        "the restarted server presents another certificate"
    );

    let mut hal = sdk::connect(server.target(), "hal", &hal_profile).await?;
    for text in texts {
        let m = hal.direct_message().await?;
        expect_text(&m, "gil", text)?;
    }
    hal.close().await?;
    server.stop().await?;
    Ok(Outcome::Passed)
}

/// A list changed on one device reaches the user's other devices (261 and 262 after a
/// fresh 259), in both directions, and a new device downloads both lists at login.
pub async fn list_sync_both_ways(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let p1 = ctx.dir("lia-desk")?;
    let desk = sdk::connect(&ctx.main, "lia", &p1).await?;
    desk.close().await?;
    let p2 = second_profile(&ctx, &p1, "lia-phone")?;
    let mut desk = sdk::connect(&ctx.main, "lia", &p1).await?;
    let mut phone = sdk::connect(&ctx.main, "lia", &p2).await?;
    let (max, ned, ona) = (uid("max")?, uid("ned")?, uid("ona")?);

    // Desk -> phone.
    desk.client.add_friend(&max).await?;
    desk.client.block(&ned).await?;
    phone
        .wait_for("the friend and block lists from the desk", |e| match e {
            Event::ListsChanged(l)
                if l.friends.entries == [max.clone()] && l.blocks.entries == [ned.clone()] =>
            {
                Some(())
            }
            _ => None,
        })
        .await?;

    // Phone -> desk.
    phone.client.remove_friend(&max).await?;
    phone.client.add_friend(&ona).await?;
    desk.wait_for("the friend list from the phone", |e| match e {
        Event::ListsChanged(l) if l.friends.entries == [ona.clone()] => Some(()),
        _ => None,
    })
    .await?;
    ensure!(
        desk.client.blocks() == [ned.clone()],
        "the desk lost its block list"
    );

    // A third device has no lists yet: it downloads both at login.
    let p3 = second_profile(&ctx, &p1, "lia-tablet")?;
    let mut tablet = sdk::connect(&ctx.main, "lia", &p3).await?;
    // (Not `settle`: the SDK may send its Ping before its answer to the login's 259.)
    tablet
        .wait_for("both lists at the new device's login", |e| match e {
            Event::ListsChanged(l)
                if l.friends.entries == [ona.clone()] && l.blocks.entries == [ned.clone()] =>
            {
                Some(())
            }
            _ => None,
        })
        .await?;
    for device in [desk, phone, tablet] {
        device.close().await?;
    }
    Ok(Outcome::Passed)
}

/// A blocked sender's messages are dropped (the sender is told "stored", as for any
/// message) and its file offers refused with reason 4, the same answer as for an unknown
/// user; the recipient sees neither. A message to an unknown user or group is refused
/// (517 outcomes 1 and 2).
pub async fn blocked_sender(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let mut pia = sdk::connect(&ctx.main, "pia", &ctx.dir("pia")?).await?;
    let quin = sdk::connect(&ctx.main, "quin", &ctx.dir("quin")?).await?;
    let rex = sdk::connect(&ctx.main, "rex", &ctx.dir("rex")?).await?;
    pia.client.block(&uid("quin")?).await?;
    pia.settle().await?;

    let blocked = quin
        .client
        .send_text(&uid("pia")?, "you blocked me?")
        .await?;
    ensure!(
        blocked == Delivery::Stored,
        "a blocked sender must hear what anyone hears (517 outcome 0), got {blocked:?}"
    );
    for (delivery, what) in [
        (
            quin.client.send_text(&uid("nobody-e2e")?, "hello?").await?,
            SendOutcome::UnknownRecipient,
        ),
        (
            quin.client
                .send_group_text(GroupId(424_242), "hello?")
                .await?,
            SendOutcome::NotAMember,
        ),
    ] {
        ensure!(
            delivery == Delivery::Refused(what),
            "expected {what}, got {delivery:?}"
        );
    }
    let file = ctx.dir("quin-files")?.join("note.txt");
    std::fs::write(&file, b"a note pia never sees").context("cannot write the test file")?;
    let refused = quin
        .client
        .send_file(&uid("pia")?, &file)
        .await?
        .finish()
        .await?;
    ensure!(
        refused == TransferOutcome::Aborted(vcom_client::AbortReason::NotAllowed),
        "a file to a user who blocked the sender ended {refused:?}"
    );
    let unknown = quin
        .client
        .send_file(&uid("nobody-e2e")?, &file)
        .await?
        .finish()
        .await?;
    ensure!(
        unknown == refused,
        "a file to an unknown user ended {unknown:?}, to a blocker {refused:?}: they must look alike"
    );
    quin.settle().await?;

    rex.client.send_text(&uid("pia")?, "not blocked").await?;
    let first = pia
        .wait_for("rex's message", |e| match e {
            Event::Message(m) => Some(Ok(m)),
            Event::FileOffer(o) => Some(Err(format!("a file offer from {}", o.sender()))),
            _ => None,
        })
        .await?;
    let first = first.map_err(|what| anyhow::anyhow!("pia got {what}"))?;
    expect_text(&first, "rex", "not blocked").context("a blocked message got through")?;
    for device in [pia, quin, rex] {
        device.close().await?;
    }
    Ok(Outcome::Passed)
}

/// A group made with `vcom-server admin group create` carries a member's message to
/// every other member (265) but not back to the sender; `group add` adds a reader.
pub async fn group_chat(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let out = ctx
        .admin(&[
            "group", "create", "e2e-team", "--member", "sam", "--member", "tia", "--member", "uma",
        ])
        .await?;
    let group = GroupId(
        out.trim()
            .parse()
            .with_context(|| format!("group create printed {out:?}, not an id"))?,
    );
    let mut sam = sdk::connect(&ctx.main, "sam", &ctx.dir("sam")?).await?;
    let mut tia = sdk::connect(&ctx.main, "tia", &ctx.dir("tia")?).await?;
    let mut uma = sdk::connect(&ctx.main, "uma", &ctx.dir("uma")?).await?;

    sam.client.send_group_text(group, "hello team").await?;
    for member in [&mut tia, &mut uma] {
        let m = member
            .wait_for("the group message (265)", |e| match e {
                Event::GroupMessage(m) => Some(m),
                _ => None,
            })
            .await?;
        ensure!(
            m.group == Some(group),
            "the message names group {:?}",
            m.group
        );
        expect_text(&m, "sam", "hello team")?;
    }
    sam.settle().await?;
    if let Some(echo) = queued(&mut sam)
        .into_iter()
        .find(|e| matches!(e, Event::GroupMessage(_)))
    {
        bail!("the sender got its own group message back: {echo:?}");
    }

    ctx.admin(&["group", "add", &group.to_string(), "vic"])
        .await?;
    let mut vic = sdk::connect(&ctx.main, "vic", &ctx.dir("vic")?).await?;
    uma.client.send_group_text(group, "welcome, vic").await?;
    let m = vic
        .wait_for("the group message for the new member", |e| match e {
            Event::GroupMessage(m) => Some(m),
            _ => None,
        })
        .await?;
    expect_text(&m, "uma", "welcome, vic")?;
    for device in [sam, tia, uma, vic] {
        device.close().await?;
    }
    Ok(Outcome::Passed)
}

/// `vcom-server admin broadcast` reaches every online device.
pub async fn broadcast(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let mut wes = sdk::connect(&ctx.main, "wes", &ctx.dir("wes")?).await?;
    let mut xia = sdk::connect(&ctx.main, "xia", &ctx.dir("xia")?).await?;
    let text = "e2e: maintenance at 18:00";
    ctx.admin(&["broadcast", text]).await?;
    for device in [&mut wes, &mut xia] {
        let got = device
            .wait_for("the broadcast (263)", |e| match e {
                Event::Broadcast { text } => Some(text),
                _ => None,
            })
            .await?;
        ensure!(got == text, "the broadcast said {got:?}");
    }
    wes.close().await?;
    xia.close().await?;
    Ok(Outcome::Passed)
}
