//! The Prometheus metrics endpoint (`metrics_listen`): scraped over HTTP and parsed as
//! the exposition format; its counters follow what the server did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vcom_tests::harness::{TIMEOUT, TestServer, login, login_outcome, text_to};

/// One HTTP GET; the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("answered");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The samples of an exposition: `name{labels}` to value. Every line that is not a
/// comment must be a sample, and the text must end with `# EOF`.
fn parse(body: &str) -> HashMap<String, f64> {
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("a sample: name value");
            (name.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

#[tokio::test]
async fn the_metrics_endpoint_counts_logins_refusals_messages_and_commits() {
    let (_dir, server) = TestServer::start_temp(|c| {
        c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let metrics = server.metrics.expect("a metrics address");
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    let _ = login_outcome(&server, "").await; // an empty identifier: code 7
    alice.client.send(text_to("bob", "hello", 1)).await;
    bob.next_direct().await;

    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let samples = parse(&body);
    let value = |name: &str| {
        *samples
            .get(name)
            .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
    };
    assert_eq!(value("vcom_logins_total"), 2.0);
    assert_eq!(value("vcom_login_refusals_total{code=\"7\"}"), 1.0);
    assert_eq!(value("vcom_login_refusals_total{code=\"3\"}"), 0.0);
    assert_eq!(value("vcom_messages_relayed_total"), 1.0);
    assert_eq!(value("vcom_message_bytes_relayed_total"), 5.0);
    assert_eq!(value("vcom_online_sessions"), 2.0);
    assert_eq!(value("vcom_stored_users"), 2.0);
    assert!(value("vcom_commit_seconds_count") >= 1.0);
    assert!(value("vcom_commit_seconds_sum") > 0.0);
    assert_eq!(value("vcom_transfers_total{outcome=\"completed\"}"), 0.0);

    let (status, _) = get(metrics, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    server.stop().await;
}

#[tokio::test]
async fn a_metrics_address_other_machines_can_reach_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vcom_server::ServerConfig::new(dir.path());
    config.metrics_listen = Some(SocketAddr::from(([0, 0, 0, 0], 9420)));
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("metrics_listen"), "{err}");
    config.metrics_allow_remote = true;
    config.validate().unwrap();
}
