//! Bad input from raw sockets: malformed packets, a packet before login, a packet in the
//! wrong direction and plain-text junk each close only their own connection, while SDK
//! clients on the same server carry on.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vcom_protocol::{DeviceId, MessageKind, SendUserMessage, Timestamp, UserId};

use super::sdk::{self, expect_text, uid};
use super::{Ctx, Outcome};
use crate::harness::{Identity, RawClient, login_as};

/// Bytes of a packet with identifier `id` and `body`.
fn packet(id: i32, body: &[u8]) -> Vec<u8> {
    [&id.to_be_bytes()[..], body].concat()
}

/// The server closes a raw connection without a word after `bytes` (nothing but, at
/// most, what it had queued before).
async fn closes_after(client: &mut RawClient, bytes: &[u8]) {
    client.send_raw(bytes).await;
    client.recv_until_closed().await;
}

/// A plain TCP connection that writes junk instead of a TLS handshake is closed.
async fn plain_tcp_junk_is_closed(ctx: &Ctx) -> anyhow::Result<()> {
    let mut tcp = tokio::net::TcpStream::connect(ctx.main.addr)
        .await
        .context("cannot open a TCP connection")?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: vcom\r\n\r\n")
        .await
        .context("cannot write to the server")?;
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    ensure!(
        closed.is_ok(),
        "the server kept a plain-text connection open for 20 s"
    );
    Ok(())
}

/// Each kind of bad input closes its own connection; everyone else is still served.
pub async fn bad_input(ctx: Arc<Ctx>) -> anyhow::Result<Outcome> {
    let lou = sdk::connect(&ctx.main, "lou", &ctx.dir("lou")?).await?;
    let mut mo = sdk::connect(&ctx.main, "mo", &ctx.dir("mo")?).await?;

    // Logged in, then: an unknown identifier; a packet only servers send (264); a
    // string with a negative length; a second login.
    let user_message = packet(264, &[]);
    let negative_length = packet(266, &(-1i32).to_be_bytes());
    let relogin = packet(
        256,
        &[0, 0, 0, 3, b'n', b'a', b't', 255, 255, 255, 255, 0, 0, 0, 0],
    );
    let key = Identity::generate("nat");
    for bad in [packet(999, &[0; 8]), user_message, negative_length, relogin] {
        let mut nat = login_as(&ctx.main, "nat", &key, DeviceId::NEW).await;
        closes_after(&mut nat.client, &bad).await;
    }

    // Before login, anything but 256 is refused.
    let mut early = RawClient::connect_to(&ctx.main, Some(&Identity::generate("ola"))).await;
    early
        .send(SendUserMessage {
            recipient: UserId::new("mo")?,
            sent_at: Timestamp(1),
            kind: MessageKind::Text,
            data: Bytes::from_static(b"before login"),
        })
        .await;
    let answered = early.recv_until_closed().await;
    ensure!(
        answered.is_empty(),
        "a packet before login was answered: {answered:?}"
    );
    plain_tcp_junk_is_closed(&ctx).await?;

    // Everyone else carries on, and new logins work.
    lou.client.send_text(&uid("mo")?, "still here?").await?;
    let m = mo.direct_message().await?;
    expect_text(&m, "lou", "still here?").context("a message after the bad input")?;
    let fresh = sdk::connect(&ctx.main, "pat", &ctx.dir("pat")?).await?;
    fresh.settle().await?;
    for device in [lou, mo, fresh] {
        device.close().await?;
    }
    Ok(Outcome::Passed)
}
