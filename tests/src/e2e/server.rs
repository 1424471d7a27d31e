//! The real `vcom-server` program as a child process: start it, read its ready line, run
//! `vcom-server admin` against it, and stop it with SIGTERM.
//!
//! A [`ServerProcess`] is always stopped: [`ServerProcess::stop`] on the normal path, and
//! its `Drop` (SIGTERM, a short wait, then SIGKILL) when a scenario fails, panics or
//! times out. Nothing here waits without a bound.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::harness::Target;

/// The longest a server may take to print its ready line, or to exit after SIGTERM.
pub const SERVER_WAIT: Duration = Duration::from_secs(20);

/// How long `Drop` waits for a graceful exit before it kills the server.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// Everything needed to start one server process.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `vcom-server` program.
    pub bin: PathBuf,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// A configuration file (`--config`), if any.
    pub config: Option<PathBuf>,
    /// Where its packet tap writes its counts when it stops.
    pub tap: PathBuf,
    /// Where its stderr (the logs) goes.
    pub log: PathBuf,
}

/// A running `vcom-server serve`, stopped when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    label: String,
    spec: ServerSpec,
    target: Target,
    child: Child,
    /// Kept open so the server's stdout stays valid for its whole life.
    _stdout: BufReader<ChildStdout>,
    stopped: bool,
}

impl ServerProcess {
    /// Starts the server on 127.0.0.1 with a free port and waits for its ready line.
    pub async fn start(label: &str, spec: ServerSpec) -> anyhow::Result<ServerProcess> {
        let log = std::fs::File::create(&spec.log)
            .with_context(|| format!("cannot create the log file {}", spec.log.display()))?;
        let mut command = Command::new(&spec.bin);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(config) = &spec.config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("VCOM_PACKET_TAP", &spec.tap)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the server's stdout is not piped")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(SERVER_WAIT, stdout.read_line(&mut line)).await;
        let target = match read {
            Ok(Ok(n)) if n > 0 => parse_ready_line(&line),
            Ok(Ok(_)) => Err(anyhow::anyhow!(
                "the server exited before it was ready; its log ends: {}",
                log_tail(&spec.log)
            )),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("cannot read the ready line")),
            Err(_) => Err(anyhow::anyhow!(
                "no ready line within {SERVER_WAIT:?}; the log ends: {}",
                log_tail(&spec.log)
            )),
        };
        let mut server = ServerProcess {
            label: label.to_owned(),
            spec,
            target: Target {
                addr: ([127, 0, 0, 1], 0).into(),
                cert_sha256: String::new(),
            },
            child,
            _stdout: stdout,
            stopped: false,
        };
        // On error the server is dropped here, which stops it.
        server.target = target.with_context(|| format!("server {label}"))?;
        Ok(server)
    }

    /// Where clients reach it.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The name it was started under (for messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What it was started with (to restart it on the same data directory).
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `vcom-server admin --data-dir DIR ARGS...` and returns its stdout.
    pub async fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        admin(&self.spec.bin, &self.spec.data_dir, args).await
    }

    /// Waits (bounded) until `user` has no session on this server.
    pub async fn until_offline(&self, user: &str) -> anyhow::Result<()> {
        until_offline(&self.spec.bin, &self.spec.data_dir, user).await
    }

    /// Stops it gracefully (SIGTERM) and checks it exits 0 in time; kills it otherwise.
    /// The packet tap is written during the graceful stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stopped = true;
        terminate(&self.child)?;
        match tokio::time::timeout(SERVER_WAIT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!(
                "server {} exited with {status} after SIGTERM; its log ends: {}",
                self.label,
                log_tail(&self.spec.log)
            ),
            Ok(Err(e)) => Err(e).context("cannot wait for the server"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(SERVER_WAIT, self.child.wait()).await;
                bail!(
                    "server {} did not exit within {SERVER_WAIT:?} of SIGTERM and was killed",
                    self.label
                )
            }
        }
    }
}

impl Drop for ServerProcess {
    /// The guard: a server left running by a failed scenario gets SIGTERM (so it still
    /// writes its tap), a few seconds, then SIGKILL.
    fn drop(&mut self) {
        if self.stopped || !self.is_running() {
            return;
        }
        if terminate(&self.child).is_ok() {
            let deadline = Instant::now() + DROP_GRACE;
            while Instant::now() < deadline {
                if !self.is_running() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

/// Sends SIGTERM through `kill(1)`: std has no signal API and this crate forbids
/// `unsafe`, so no libc call.
fn terminate(child: &Child) -> anyhow::Result<()> {
    let pid = child.id().context("the server has already exited")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill -TERM")?;
    if !status.success() {
        bail!("kill -TERM {pid} failed: {status}");
    }
    Ok(())
}

/// Parses `vcom-server ready addr=<ip:port> cert-sha256=<64 hex>`.
pub fn parse_ready_line(line: &str) -> anyhow::Result<Target> {
    let line = line.trim_end();
    let rest = line
        .strip_prefix("vcom-server ready ")
        .with_context(|| format!("not a ready line: {line:?}"))?;
    let mut addr = None;
    let mut cert = None;
    for field in rest.split_whitespace() {
        if let Some(v) = field.strip_prefix("addr=") {
            addr = Some(
                v.parse()
                    .with_context(|| format!("bad address in {line:?}"))?,
            );
        } else if let Some(v) = field.strip_prefix("cert-sha256=") {
            cert = Some(v.to_owned());
        }
    }
    let cert_sha256 = cert.with_context(|| format!("no cert-sha256 in {line:?}"))?;
    if cert_sha256.len() != 64 || !cert_sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("the fingerprint in {line:?} is not 64 hex digits");
    }
    Ok(Target {
        addr: addr.with_context(|| format!("no addr in {line:?}"))?,
        cert_sha256,
    })
}

/// Runs `vcom-server admin --data-dir DIR ARGS...`; its stdout, or an error with its
/// stderr when it fails.
pub async fn admin(bin: &Path, data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SERVER_WAIT, output)
        .await
        .with_context(|| format!("vcom-server admin {} did not finish", args.join(" ")))?
        .context("cannot run vcom-server admin")?;
    if !output.status.success() {
        bail!(
            "vcom-server admin {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("vcom-server admin printed invalid UTF-8")
}

/// Waits (bounded, 10 s) until `vcom-server admin sessions` lists no session of `user`:
/// a client's disconnect reaches the server asynchronously.
pub async fn until_offline(bin: &Path, data_dir: &Path, user: &str) -> anyhow::Result<()> {
    let prefix = format!("{user}\t");
    for _ in 0..200 {
        let sessions = admin(bin, data_dir, &["sessions"]).await?;
        if !sessions.lines().any(|l| l.starts_with(&prefix)) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{user} still has a session 10 s after disconnecting")
}

/// The last lines of a log file, on one line, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        format!("(empty: {})", path.display())
    } else {
        format!("{} (full log: {})", tail.join(" | "), path.display())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_ready_line_gives_address_and_fingerprint() {
        let hex = "ab".repeat(32);
        let target = parse_ready_line(&format!(
            "vcom-server ready addr=127.0.0.1:4242 cert-sha256={hex}\n"
        ))
        .unwrap();
        assert_eq!(target.addr.to_string(), "127.0.0.1:4242");
        assert_eq!(target.cert_sha256, hex);
        assert!(parse_ready_line("vcom-server starting").is_err());
        assert!(parse_ready_line("vcom-server ready addr=127.0.0.1:1 cert-sha256=xyz").is_err());
    }
}
