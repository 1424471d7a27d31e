//! Scenarios through the `vcom` program itself, next to SDK clients: what a user types.
//! Skipped (not failed) when no `vcom` program was given or `vcom --help` does not run.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::process::Command;
use vcom_client::{Event, Profile};

use super::sdk::{self, expect_text, uid};
use super::{Ctx, Outcome};

/// The bound on one `vcom` command.
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// The `vcom` program, or why scenarios using it cannot run.
async fn usable_vcom(ctx: &Ctx) -> Result<&Path, String> {
    let bin = ctx.vcom_bin().ok_or("no vcom program given (--vcom-bin)")?;
    let help = Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_WAIT, help).await {
        Ok(Ok(out)) if out.status.success() => Ok(bin),
        Ok(Ok(out)) => Err(format!("`vcom --help` exited with {}", out.status)),
        Ok(Err(e)) => Err(format!("cannot run {}: {e}", bin.display())),
        Err(_) => Err("`vcom --help` did not finish".to_owned()),
    }
}

/// Output of one `vcom` command.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs `vcom --server ADDR --user USER --profile DIR --insecure-pin SHA ARGS...` and
/// fails unless it exits 0.
async fn vcom(
    bin: &Path,
    ctx: &Ctx,
    user: &str,
    profile: &Path,
    args: &[&str],
) -> anyhow::Result<Run> {
    let output = Command::new(bin)
        .arg("--server")
        .arg(ctx.main.addr.to_string())
        .args(["--user", user, "--profile"])
        .arg(profile)
        .args(["--insecure-pin", &ctx.main.cert_sha256])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let what = format!("vcom --user {user} {}", args.join(" "));
    let output = tokio::time::timeout(COMMAND_WAIT, output)
        .await
        .with_context(|| format!("`{what}` did not finish within {COMMAND_WAIT:?}"))?
        .with_context(|| format!("cannot run `{what}`"))?;
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if !output.status.success() {
        bail!(
            "`{what}` exited with {}: {}",
            output.status,
            run.stderr.trim()
        );
    }
    Ok(run)
}

/// `vcom send` reaches an SDK client; a message waiting for the `vcom` user arrives
/// with its next one-shot command and is shown by `vcom history`.
pub async fn send_and_receive(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let bin = match usable_vcom(&ctx).await {
        Ok(bin) => bin.to_owned(),
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let zoe = ctx.dir("zoe-cli")?;
    let mut yan = sdk::connect(&ctx.main, "yan", &ctx.dir("yan")?).await?;

    let sent = vcom(&bin, &ctx, "zoe", &zoe, &["send", "yan", "hello from vcom"]).await?;
    ensure!(
        sent.stdout.contains("sent"),
        "vcom send printed {:?}",
        sent.stdout
    );
    let m = yan.direct_message().await?;
    expect_text(&m, "zoe", "hello from vcom")?;

    // zoe is offline now: the reply waits on the server for zoe's next command.
    yan.client
        .send_text(&uid("zoe")?, "hello, vcom user")
        .await?;
    yan.settle().await?;
    let again = vcom(&bin, &ctx, "zoe", &zoe, &["send", "yan", "got it?"]).await?;
    ensure!(
        again.stderr.contains("1 new message"),
        "the second vcom send did not report the waiting message: {:?}",
        again.stderr
    );
    let history = vcom(&bin, &ctx, "zoe", &zoe, &["history", "--with", "yan"]).await?;
    ensure!(
        history.stdout.contains("hello, vcom user"),
        "vcom history does not show the reply: {:?}",
        history.stdout
    );
    let m = yan.direct_message().await?;
    expect_text(&m, "zoe", "got it?")?;
    yan.close().await?;
    Ok(Outcome::Passed)
}

/// A friend added with `vcom friends add` reaches the same user's SDK device, which
/// holds the key exported from the `vcom` profile.
pub async fn friends_sync_with_sdk(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let bin = match usable_vcom(&ctx).await {
        Ok(bin) => bin.to_owned(),
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let cli_profile = ctx.dir("abe-cli")?;
    vcom(&bin, &ctx, "abe", &cli_profile, &["friends", "list"]).await?;
    let pem = ctx.dir("abe-key")?.join("abe.pem");
    Profile::open(&cli_profile)
        .context("cannot open the vcom profile")?
        .export_identity(&pem)
        .context("cannot export abe's identity from the vcom profile")?;
    let sdk_profile = ctx.dir("abe-sdk")?;
    Profile::open(&sdk_profile)
        .context("cannot open the SDK profile")?
        .import_identity(&pem)
        .context("cannot import abe's identity")?;
    let mut device = sdk::connect(&ctx.main, "abe", &sdk_profile).await?;

    vcom(&bin, &ctx, "abe", &cli_profile, &["friends", "add", "yan"]).await?;
    let yan = uid("yan")?;
    device
        .wait_for("the friend list changed by vcom", |e| match e {
            Event::ListsChanged(l) if l.friends.entries == [yan.clone()] => Some(()),
            _ => None,
        })
        .await?;
    let listed = vcom(&bin, &ctx, "abe", &cli_profile, &["friends", "list"]).await?;
    ensure!(
        listed.stdout.lines().any(|l| l.trim() == "yan"),
        "vcom friends list printed {:?}",
        listed.stdout
    );
    device.close().await?;
    Ok(Outcome::Passed)
}
