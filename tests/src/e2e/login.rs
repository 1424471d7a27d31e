//! Login scenarios: a device's first login and re-login with its issued identifier
//! (SDK), and every ConnectionDenied (258) code from raw clients, with policy changed
//! through `vcom-server admin` and a restart into closed registration.

use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use vcom_protocol::{DenyCode, DeviceId, ListSync, ServerPacket, UserListsSync};

use super::{Ctx, Outcome, sdk};
use crate::harness::{Identity, LoginOutcome, RawClient, Target, attempt_login};

/// A new profile gets a device identifier at its first login and logs in with the same
/// identifier next time; the server knows the user afterwards.
pub async fn first_login_and_relogin(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let profile = ctx.dir("amy")?;
    let first = sdk::connect(&ctx.main, "amy", &profile).await?;
    let device = first.client.device_id();
    ensure!(
        device.get() > 0,
        "the issued device id {device} is not positive"
    );
    first.settle().await?;
    first.close().await?;

    let again = sdk::connect(&ctx.main, "amy", &profile).await?;
    ensure!(
        again.client.device_id() == device,
        "re-login got device {} instead of the issued {device}",
        again.client.device_id()
    );
    again.settle().await?;
    again.close().await?;

    let users = ctx.admin(&["user", "list"]).await?;
    ensure!(
        users
            .lines()
            .any(|l| l.split_whitespace().next() == Some("amy")),
        "`vcom-server admin user list` does not show amy: {users:?}"
    );
    Ok(Outcome::Passed)
}

const PASSWORD: &str = "e2e-secret";

/// Logs in with a raw client and expects ConnectionDenied with `code` (the harness also
/// checks that the server closes the connection right after it).
async fn expect_denied(
    target: &Target,
    identity: &Identity,
    user: &str,
    device: DeviceId,
    password: &str,
    code: DenyCode,
) -> anyhow::Result<()> {
    let (_client, outcome) =
        attempt_login(target, Some(identity), user, device, password.as_bytes()).await;
    ensure!(
        outcome == LoginOutcome::Denied(code),
        "{user} (device {device}, password {password:?}): expected 258 code {}, got {outcome:?}",
        code.code()
    );
    Ok(())
}

/// Logs in with a raw client and the server password, answers 259 "in sync", and
/// returns the connection and its device.
async fn login_with_password(
    target: &Target,
    identity: &Identity,
    user: &str,
    device: DeviceId,
) -> anyhow::Result<(RawClient, DeviceId)> {
    let (mut client, outcome) =
        attempt_login(target, Some(identity), user, device, PASSWORD.as_bytes()).await;
    let LoginOutcome::Accepted(device) = outcome else {
        bail!("{user}: expected 257, got {outcome:?}");
    };
    match client.recv().await {
        ServerPacket::RequestUserListsSync(_) => {}
        other => bail!("{user}: expected 259 after 257, got {}", other.name()),
    }
    client
        .send(UserListsSync {
            friends: ListSync::InSync,
            blocks: ListSync::InSync,
        })
        .await;
    client.round_trip().await;
    Ok((client, device))
}

/// Every 258 code, each for the reason `docs/protocol.md` gives, on a server with a password
/// and one connection per address; then a restart with registration closed.
pub async fn login_refusals(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let config = format!("password = \"{PASSWORD}\"\nmax_connections_per_ip = 1\n");
    let server = ctx.servers.start("refusals", Some(&config)).await?;
    let target = server.target().clone();
    let ivy = Identity::generate("ivy");

    // ivy holds the address's only connection slot.
    let (holder, device) = login_with_password(&target, &ivy, "ivy", DeviceId::NEW).await?;
    let jack = Identity::generate("jack");
    expect_denied(
        &target,
        &jack,
        "jack",
        DeviceId::NEW,
        PASSWORD,
        DenyCode::ServerFull,
    )
    .await?;
    // Checks before capacity decide while the slot is taken.
    let stranger = Identity::generate("ivy");
    expect_denied(
        &target,
        &stranger,
        "ivy",
        device,
        PASSWORD,
        DenyCode::KeyMismatch,
    )
    .await?;
    let unknown_device = DeviceId(device.get().wrapping_add(1000));
    expect_denied(
        &target,
        &ivy,
        "ivy",
        unknown_device,
        PASSWORD,
        DenyCode::UnknownDevice,
    )
    .await?;
    expect_denied(
        &target,
        &ivy,
        "ivy",
        device,
        "wrong",
        DenyCode::WrongPassword,
    )
    .await?;
    expect_denied(
        &target,
        &ivy,
        "",
        DeviceId::NEW,
        PASSWORD,
        DenyCode::InvalidUser,
    )
    .await?;
    drop(holder);
    server.until_offline("ivy").await?;

    // Policy through `vcom-server admin`, each undone after its check.
    let mallory = Identity::generate("mallory");
    let policies = [
        (
            "blacklist",
            "user",
            "mallory",
            &mallory,
            "mallory",
            DeviceId::NEW,
            DenyCode::UserBlacklisted,
        ),
        (
            "blacklist",
            "ip",
            "127.0.0.1",
            &ivy,
            "ivy",
            device,
            DenyCode::IpBlacklisted,
        ),
        (
            "whitelist",
            "user",
            "zed",
            &ivy,
            "ivy",
            device,
            DenyCode::NotWhitelisted,
        ),
    ];
    for (list, kind, value, identity, user, user_device, code) in policies {
        server.admin(&[list, "add", kind, value]).await?;
        expect_denied(&target, identity, user, user_device, PASSWORD, code).await?;
        server.admin(&[list, "remove", kind, value]).await?;
    }
    let (back, _) = login_with_password(&target, &ivy, "ivy", device).await?;
    drop(back);

    // The same data directory with registration closed: only known users get in.
    let data_dir = server.spec().data_dir.clone();
    server.stop().await?;
    let closed = ctx.servers.config_file(
        "refusals-closed",
        &format!("password = \"{PASSWORD}\"\nregistration = \"closed\"\n"),
    )?;
    let server = ctx
        .servers
        .start_on("refusals-closed", &data_dir, Some(closed))
        .await?;
    let target = server.target().clone();
    let kate = Identity::generate("kate");
    expect_denied(
        &target,
        &kate,
        "kate",
        DeviceId::NEW,
        PASSWORD,
        DenyCode::InvalidUser,
    )
    .await?;
    let (known, again) = login_with_password(&target, &ivy, "ivy", device)
        .await
        .context("a known user logs in while registration is closed")?;
    ensure!(again == device, "ivy got device {again}, expected {device}");
    drop(known);
    server.stop().await?;
    Ok(Outcome::Passed)
}
