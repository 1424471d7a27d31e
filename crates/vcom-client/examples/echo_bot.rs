//! A bot that echoes every direct message back to its sender.
//!
//! `cargo run -p vcom-client --example echo_bot -- HOST:PORT USER PROFILE_DIR`
//! (the server's certificate is pinned on first use). It runs until the connection
//! ends; `crates/vcom-client/tests/examples.rs` runs it against a real server.

use vcom_client::{Client, ClientConfig, ClientError, Event, UserId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, user, profile] = args.as_slice() else {
        return Err("usage: echo_bot HOST:PORT USER PROFILE_DIR".into());
    };
    let config = ClientConfig::new(server, UserId::new(user.as_str())?, profile);
    run(config).await?;
    Ok(())
}

/// Logs in with `config` and answers each direct message with the same text or image,
/// until the connection ends.
pub(crate) async fn run(config: ClientConfig) -> Result<(), ClientError> {
    let (client, mut events) = Client::connect(config).await?;
    while let Some(event) = events.next().await {
        match event {
            Event::Message(m) => {
                let delivery = match m.text() {
                    Some(text) => client.send_text(&m.sender, text).await?,
                    None => client.send_image(&m.sender, m.data).await?,
                };
                eprintln!("echoed to {}: {delivery:?}", m.sender);
            }
            Event::Disconnected { reason } => eprintln!("disconnected: {reason:?}"),
            _ => {}
        }
    }
    Ok(())
}
