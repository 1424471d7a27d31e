//! What a client needs to know to connect: server, user, profile, password, trust.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use vcom_protocol::{Limits, UserId};

use crate::tls::Trust;

/// Settings for [`crate::Client::connect`]. Start from [`ClientConfig::new`] and change
/// what differs from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server address as `host:port` (`[v6]:port` for IPv6 literals).
    pub server: String,
    /// The name used for SNI and CA verification; default: the host part of `server`.
    pub server_name: Option<String>,
    /// The user to log in as.
    pub user: UserId,
    /// The profile directory (identity, device id, pin, lists, history).
    pub profile_dir: PathBuf,
    /// The server password; empty when the server has none.
    pub password: Bytes,
    /// How the server's certificate is trusted.
    pub trust: Trust,
    /// The bounds enforced on what the server sends (and on what the client sends).
    pub limits: Limits,
    /// The longest the TCP connect, the TLS handshake and the login may take together.
    pub connect_timeout: Duration,
    /// When set, a Ping (512) is sent at this interval and a Ping left unanswered until
    /// the next one ends the connection. Off by default.
    pub keepalive: Option<Duration>,
    /// How many events may wait for the application before the client stops reading
    /// from the server (backpressure).
    pub event_capacity: usize,
    /// Offer the extension set (`vcom/1+ext`: sequence numbers, delivery receipts, send
    /// acknowledgements) when connecting. On by default; a server without it is still
    /// served with the wiki's packets alone.
    pub extensions: bool,
}

impl ClientConfig {
    /// A configuration with defaults: no password, trust on first use, default limits,
    /// 10 s connect timeout, no keep-alive, 256 queued events, extensions offered.
    pub fn new(server: impl Into<String>, user: UserId, profile_dir: impl Into<PathBuf>) -> Self {
        ClientConfig {
            server: server.into(),
            server_name: None,
            user,
            profile_dir: profile_dir.into(),
            password: Bytes::new(),
            trust: Trust::TrustOnFirstUse,
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(10),
            keepalive: None,
            event_capacity: 256,
            extensions: true,
        }
    }

    /// Sets the server password.
    pub fn with_password(mut self, password: impl Into<Bytes>) -> Self {
        self.password = password.into();
        self
    }

    /// Sets how the server's certificate is trusted.
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// Turns on the keep-alive Ping at `interval`.
    pub fn with_keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = Some(interval);
        self
    }

    /// The host part of [`ClientConfig::server`].
    pub(crate) fn host(&self) -> &str {
        let server = self.server.as_str();
        if let Some(rest) = server.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        server.rsplit_once(':').map_or(server, |(host, _)| host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(server: &str) -> ClientConfig {
        let user = UserId::new("alice").unwrap_or_else(|e| panic!("{e}"));
        ClientConfig::new(server, user, "/tmp/unused")
    }

    #[test]
    fn the_host_is_the_address_without_its_port() {
        assert_eq!(config("127.0.0.1:7420").host(), "127.0.0.1");
        assert_eq!(config("chat.example.org:1").host(), "chat.example.org");
        assert_eq!(config("[::1]:7420").host(), "::1");
        assert_eq!(config("bare").host(), "bare");
    }
}
