//! Sends one text message and exits, reporting how many messages arrived meanwhile
//! (they are kept in the profile's history).
//!
//! `cargo run -p vcom-client --example send_once -- HOST:PORT USER PROFILE_DIR TO TEXT`

use vcom_client::{Client, ClientConfig, UserId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, user, profile, to, text] = args.as_slice() else {
        return Err("usage: send_once HOST:PORT USER PROFILE_DIR TO TEXT".into());
    };
    let config = ClientConfig::new(server, UserId::new(user.as_str())?, profile);
    let (client, events) = Client::connect(config).await?;
    // No events wanted: received messages still go to the history.
    drop(events);
    client.send_text(&UserId::new(to.as_str())?, text).await?;
    // The Pong comes after everything the server sent before it, so every pending
    // message has been stored once this returns.
    client.ping().await?;
    println!("sent; {} message(s) received", client.received_count());
    client.close().await?;
    Ok(())
}
