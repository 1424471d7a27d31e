//! File transfer scenarios (268-274): completed, declined and dropped through the SDK,
//! and every other FileTransferAbort (270) reason from raw clients, whose exact packets
//! matter there.

use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use vcom_client::{AbortReason, Event, TransferOutcome};
use vcom_protocol::{
    DeviceId, FileChunk, FileSize, FileTransferAbort, FileTransferAccept, FileTransferRequest,
    ServerPacket, TransferId, UserId,
};

use super::sdk::{self, Device, uid};
use super::{Ctx, Outcome};
use crate::harness::{Identity, Session, login, login_as};

/// Bytes that differ from position to position, so a lost or reordered chunk shows.
fn file_data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Waits for a file offer (271) on an SDK device.
async fn offer(device: &mut Device) -> anyhow::Result<vcom_client::FileOffer> {
    device
        .wait_for("a file offer (271)", |e| match e {
            Event::FileOffer(o) => Some(o),
            _ => None,
        })
        .await
}

/// Waits for the end of an incoming transfer on an SDK device.
async fn finished(device: &mut Device, transfer: TransferId) -> anyhow::Result<TransferOutcome> {
    device
        .wait_for("the end of the transfer", |e| match e {
            Event::TransferFinished {
                transfer: t,
                outcome,
            } if t == transfer => Some(outcome),
            _ => None,
        })
        .await
}

/// A file of several chunks goes through byte for byte and lands in the recipient's
/// directory under its name.
pub async fn completed(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let ada = sdk::connect(&ctx.main, "ada", &ctx.dir("ada")?).await?;
    let mut ben = sdk::connect(&ctx.main, "ben", &ctx.dir("ben")?).await?;
    let data = file_data(5000);
    let source = ctx.dir("ada-files")?.join("report.bin");
    std::fs::write(&source, &data).context("cannot write the file to send")?;

    let sending = ada.client.send_file(&uid("ben")?, &source).await?;
    let offered = offer(&mut ben).await?;
    ensure!(
        offered.sender().as_str() == "ada" && offered.size() == 5000,
        "the offer says {} bytes from {}",
        offered.size(),
        offered.sender()
    );
    let id = offered.transfer();
    let inbox = ctx.dir("ben-inbox")?;
    offered.accept(&inbox).await?;
    let sent = sending.finish().await?;
    ensure!(
        matches!(sent, TransferOutcome::Completed { .. }),
        "the sender's transfer ended {sent:?}"
    );
    let TransferOutcome::Completed { path } = finished(&mut ben, id).await? else {
        bail!("the recipient's transfer did not complete");
    };
    ensure!(
        path == inbox.join("report.bin"),
        "saved as {}",
        path.display()
    );
    let got = std::fs::read(&path).context("cannot read the received file")?;
    ensure!(
        got == data,
        "the received file differs ({} bytes)",
        got.len()
    );
    ada.close().await?;
    ben.close().await?;
    Ok(Outcome::Passed)
}

/// A declined offer ends the sender's transfer with reason 0.
pub async fn declined(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let cyd = sdk::connect(&ctx.main, "cyd", &ctx.dir("cyd")?).await?;
    let mut dov = sdk::connect(&ctx.main, "dov", &ctx.dir("dov")?).await?;
    let source = ctx.dir("cyd-files")?.join("unwanted.txt");
    std::fs::write(&source, b"you will not want this").context("cannot write the file")?;
    let sending = cyd.client.send_file(&uid("dov")?, &source).await?;
    offer(&mut dov).await?.decline().await?;
    let outcome = sending.finish().await?;
    ensure!(
        outcome == TransferOutcome::Aborted(AbortReason::Declined),
        "the sender's transfer ended {outcome:?}"
    );
    cyd.close().await?;
    dov.close().await?;
    Ok(Outcome::Passed)
}

/// A request from a raw client: returns the transfer id of its 269.
async fn request(
    sender: &mut Session,
    to: &str,
    size: u64,
    name: &str,
) -> anyhow::Result<TransferId> {
    sender
        .client
        .send(FileTransferRequest {
            recipient: UserId::new(to)?,
            size: FileSize::new(size).context("a file size of 1 to i32::MAX")?,
            name: name.to_owned(),
        })
        .await;
    match sender.client.recv().await {
        ServerPacket::FileTransferId(p) => Ok(p.transfer),
        other => bail!("expected 269, got {}", other.name()),
    }
}

/// Expects 270 for `id` with `reason` on a raw client.
async fn expect_abort(
    session: &mut Session,
    who: &str,
    id: TransferId,
    reason: AbortReason,
) -> anyhow::Result<()> {
    match session.client.recv().await {
        ServerPacket::FileTransferAbort(p) if p.transfer == id && p.reason == reason => Ok(()),
        other => bail!(
            "{who}: expected 270 reason {} for {id}, got {other:?}",
            reason.code()
        ),
    }
}

/// Expects the offer (271) of `id` on a raw client.
async fn expect_offer(session: &mut Session, who: &str, id: TransferId) -> anyhow::Result<()> {
    match session.client.recv().await {
        ServerPacket::FileTransferOffer(p) if p.transfer == id => Ok(()),
        other => bail!("{who}: expected 271 for {id}, got {other:?}"),
    }
}

/// Expects the go-ahead (272 S->C) of `id` on the sender.
async fn expect_accept(session: &mut Session, who: &str, id: TransferId) -> anyhow::Result<()> {
    match session.client.recv().await {
        ServerPacket::FileTransferAccept(p) if p.transfer == id => Ok(()),
        other => bail!("{who}: expected 272 for {id}, got {other:?}"),
    }
}

/// The sender's connection drops in the middle of the data: the recipient gets 270
/// reason 3 and keeps no partial file.
pub async fn dropped_connection(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let mut fay = sdk::connect(&ctx.main, "fay", &ctx.dir("fay")?).await?;
    let mut eli = login(&ctx.main, "eli").await;
    let id = request(&mut eli, "fay", 4096, "big.bin").await?;
    let offered = offer(&mut fay).await?;
    ensure!(
        offered.transfer() == id,
        "fay was offered {}",
        offered.transfer()
    );
    let inbox = ctx.dir("fay-inbox")?;
    offered.accept(&inbox).await?;
    expect_accept(&mut eli, "eli", id).await?;
    eli.client
        .send(FileChunk {
            transfer: id,
            data: Bytes::from(file_data(1024)),
        })
        .await;
    eli.client.round_trip().await;
    drop(eli);
    let outcome = finished(&mut fay, id).await?;
    ensure!(
        outcome == TransferOutcome::Aborted(AbortReason::ConnectionDropped),
        "the recipient's transfer ended {outcome:?}"
    );
    ensure!(
        !inbox.join("big.bin").exists(),
        "a partial file was left in the inbox"
    );
    fay.close().await?;
    Ok(Outcome::Passed)
}

/// Reasons 2 (recipient offline), 7 (accepted on another device), 5 (more data than
/// announced) and 8 (cancelled by the sender), from raw clients.
pub async fn refusals_and_races(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let mut gus = login(&ctx.main, "gus").await;

    // Reason 2: hana is known but offline.
    drop(login(&ctx.main, "hana").await);
    ctx.until_offline("hana").await?;
    let id = request(&mut gus, "hana", 10, "a.txt").await?;
    expect_abort(&mut gus, "gus", id, AbortReason::RecipientOffline).await?;

    // Reason 7: both of ivo's devices are offered the file; the first to accept wins.
    let key = Identity::generate("ivo");
    let mut ivo1 = login_as(&ctx.main, "ivo", &key, DeviceId::NEW).await;
    let mut ivo2 = login_as(&ctx.main, "ivo", &key, DeviceId::NEW).await;
    let id = request(&mut gus, "ivo", 10, "b.txt").await?;
    expect_offer(&mut ivo1, "ivo1", id).await?;
    expect_offer(&mut ivo2, "ivo2", id).await?;
    ivo1.client.send(FileTransferAccept { transfer: id }).await;
    expect_accept(&mut gus, "gus", id).await?;
    expect_abort(&mut ivo2, "ivo2", id, AbortReason::AcceptedElsewhere).await?;

    // Reason 5: 11 bytes for a file announced as 10.
    gus.client
        .send(FileChunk {
            transfer: id,
            data: Bytes::from_static(b"eleven byte"),
        })
        .await;
    expect_abort(&mut gus, "gus", id, AbortReason::ProtocolViolation).await?;
    expect_abort(&mut ivo1, "ivo1", id, AbortReason::ProtocolViolation).await?;

    // Reason 8: the sender cancels an offer; both devices hear of it.
    let id = request(&mut gus, "ivo", 10, "c.txt").await?;
    expect_offer(&mut ivo1, "ivo1", id).await?;
    expect_offer(&mut ivo2, "ivo2", id).await?;
    gus.client
        .send(FileTransferAbort {
            transfer: id,
            reason: AbortReason::Cancelled,
        })
        .await;
    expect_abort(&mut ivo1, "ivo1", id, AbortReason::Cancelled).await?;
    expect_abort(&mut ivo2, "ivo2", id, AbortReason::Cancelled).await?;
    gus.client.round_trip().await;
    Ok(Outcome::Passed)
}

/// Reasons 1 (larger than `max_file_size`) and 6 (idle too long), on a server
/// configured with small limits.
pub async fn limits(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let server = ctx
        .servers
        .start(
            "transfer-limits",
            Some("max_file_size = 1000\ntransfer_idle_timeout_secs = 1\n"),
        )
        .await?;
    let target = server.target().clone();
    let mut jo = login(&target, "jo").await;
    let mut kai = login(&target, "kai").await;

    let id = request(&mut jo, "kai", 2000, "huge.iso").await?;
    expect_abort(&mut jo, "jo", id, AbortReason::TooLarge).await?;

    let id = request(&mut jo, "kai", 100, "slow.txt").await?;
    expect_offer(&mut kai, "kai", id).await?;
    kai.client.send(FileTransferAccept { transfer: id }).await;
    expect_accept(&mut jo, "jo", id).await?;
    // Nobody sends anything: the sweeper aborts it after about a second.
    expect_abort(&mut jo, "jo", id, AbortReason::TimedOut).await?;
    expect_abort(&mut kai, "kai", id, AbortReason::TimedOut).await?;
    drop((jo, kai));
    server.stop().await?;
    Ok(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_data_is_not_constant() {
        let data = super::file_data(300);
        assert_ne!(data[0], data[1]);
        assert_ne!(data[..251], data[1..252]);
    }
}
