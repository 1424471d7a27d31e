//! `cargo xtask`: project automation, in Rust rather than shell scripts.
//!
//! - `cargo xtask ci`: what CI runs: `cargo fmt --check`, `cargo clippy -D warnings`,
//!   `cargo test`, `cargo doc` of the libraries (warnings are errors), `bench --smoke`,
//!   `dist --check` (where it runs as root with dpkg), then `e2e`. Stops at the first
//!   failure.
//! - `cargo xtask e2e`: builds `vcom-server`, `vcom` and the runner `vcom-e2e` (debug
//!   profile, so the test build is reused), then runs the end-to-end scenarios against
//!   the real programs and checks packet coverage (see `vcom_tests::e2e`). Extra
//!   arguments go to the runner (`--only NAME`, `--keep`, `--list`).
//! - `cargo xtask bench [--peers] [--smoke] [--runs N] [--only W,...]`: builds
//!   `vcom-server` and `vcom-bench` (release; debug for `--smoke`) and runs
//!   `vcom-bench suite`: every workload against vcom-server and the no-store relay (and
//!   with `--peers` Mosquitto, InspIRCd and Prosody), then regenerates
//!   `docs/benchmarks.md` and its plots. `--smoke` runs every workload tiny, in seconds,
//!   and leaves the docs alone (CI runs it).
//! - `cargo xtask bench --criterion [ARGS]`: the micro-benchmarks, `cargo bench
//!   --workspace [ARGS]`.
//! - `cargo xtask soak [--minutes N] [ARGS]`: builds `vcom-server` and `vcom-bench`
//!   (release) and runs `vcom-bench soak`: vcom-server under a steady direct-message
//!   load with periodic reconnects for N minutes (default 30), then a summary (messages
//!   sent, received, lost; the server's memory at the start, after the warm-up and at
//!   the end, and its slope). Exits non-zero if a message was lost or memory kept
//!   growing. Other arguments go to `vcom-bench soak` (`--users`, `--rate`,
//!   `--reconnect-every`, `--churn`, `--warm-up`, `--max-growth-mib`).
//!
//! - `cargo xtask dist [--check] [--debug]`: the release tarball and Debian package in
//!   `target/dist/` (see `dist`); `--check` installs the package, starts the installed
//!   server, logs in with the installed client, and removes it again.
//!
//! Dependencies: anyhow and std only (this crate is built on every `cargo xtask`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

mod dist;

const USAGE: &str = "usage: cargo xtask <ci | e2e [RUNNER ARGS] | bench [--peers] [--smoke] [--runs N] [--only W,...] | bench --criterion [CARGO BENCH ARGS] | soak [--minutes N] [SOAK ARGS] | dist [--check] [--debug]>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci(),
        Some("e2e") => e2e(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("dist") => dist::dist(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(Status::Passed) => ExitCode::SUCCESS,
        Ok(Status::Failed(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// How a step ended, when it could run at all.
enum Status {
    Passed,
    /// It ran and failed; the process exits with this code.
    Failed(u8),
}

/// The workspace root: the parent of this crate's directory.
fn root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .context("xtask is not inside the workspace")
}

/// The cargo that runs us (`$CARGO`), or `cargo`, in the workspace root.
///
/// `cargo run` gives xtask the variables of a running package (`CARGO_PKG_NAME=xtask`,
/// `CARGO_MANIFEST_DIR`, ...). Passed on, they would differ from a plain `cargo build`'s
/// environment, and build scripts that watch them (ring's does) would rebuild on every
/// switch between `cargo test` and `cargo xtask`; so they are removed.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if let Ok(root) = root() {
        command.current_dir(root);
    }
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let package_var = key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if package_var {
            command.env_remove(key);
        }
    }
    command
}

/// Runs a command, echoing it; `Failed` with its exit code when it fails.
fn run(what: &str, command: &mut Command) -> anyhow::Result<Status> {
    eprintln!("xtask: {what}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if status.success() {
        return Ok(Status::Passed);
    }
    eprintln!("xtask: {what} failed ({status})");
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(1);
    Ok(Status::Failed(code))
}

fn ci() -> anyhow::Result<Status> {
    let steps: [(&str, &[&str]); 3] = [
        ("cargo fmt --all --check", &["fmt", "--all", "--check"]),
        (
            "cargo clippy --workspace --all-targets --locked -- -D warnings",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "cargo test --workspace --locked",
            &["test", "--workspace", "--locked"],
        ),
    ];
    for (what, args) in steps {
        if let Status::Failed(code) = run(what, cargo().args(args))? {
            return Ok(Status::Failed(code));
        }
    }
    let doc = [
        "doc",
        "--no-deps",
        "--locked",
        "-p",
        "vcom-protocol",
        "-p",
        "vcom-store",
        "-p",
        "vcom-server",
        "-p",
        "vcom-client",
    ];
    let documented = run(
        "cargo doc --no-deps (libraries, RUSTDOCFLAGS=-D warnings)",
        cargo().args(doc).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    if let Status::Failed(code) = documented {
        return Ok(Status::Failed(code));
    }
    if let Status::Failed(code) = bench(&["--smoke".to_owned()])? {
        return Ok(Status::Failed(code));
    }
    if dist::can_install()? {
        if let Status::Failed(code) = dist::dist(&["--check".to_owned(), "--debug".to_owned()])? {
            return Ok(Status::Failed(code));
        }
    } else {
        eprintln!("xtask: dist --check skipped: installing the package needs root and dpkg");
    }
    e2e(&[])
}

/// Where cargo puts the binaries of a profile: `$CARGO_TARGET_DIR/<profile>` or
/// `target/<profile>`.
fn profile_dir(profile: &str) -> anyhow::Result<PathBuf> {
    let root = root()?;
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    Ok(target.join(profile))
}

fn debug_dir() -> anyhow::Result<PathBuf> {
    profile_dir("debug")
}

fn e2e(runner_args: &[String]) -> anyhow::Result<Status> {
    if let Status::Failed(code) = build_debug_bins()? {
        return Ok(Status::Failed(code));
    }
    let bin = debug_dir()?;
    let runner = bin.join("vcom-e2e");
    let server = bin.join("vcom-server");
    let vcom = bin.join("vcom");
    for program in [&runner, &server] {
        if !program.is_file() {
            bail!("{} was not built", program.display());
        }
    }
    let mut command = Command::new(&runner);
    command.arg("--server-bin").arg(&server);
    if vcom.is_file() {
        command.arg("--vcom-bin").arg(&vcom);
    }
    command.args(runner_args);
    run("vcom-e2e", &mut command)
}

fn bench(args: &[String]) -> anyhow::Result<Status> {
    if args.first().map(String::as_str) == Some("--criterion") {
        return run(
            "cargo bench --workspace",
            cargo().args(["bench", "--workspace"]).args(&args[1..]),
        );
    }
    // The smoke run proves the harness in CI, where the debug build already exists; the
    // real run measures release binaries.
    let smoke = args.iter().any(|a| a == "--smoke");
    let (profile, build): (&str, &[&str]) = if smoke {
        ("debug", &[])
    } else {
        ("release", &["--release"])
    };
    if let Status::Failed(code) = build_server_and_bench(build)? {
        return Ok(Status::Failed(code));
    }
    let root = root()?;
    let bin = profile_dir(profile)?;
    let mut command = Command::new(bin.join("vcom-bench"));
    let typed = std::iter::once("cargo xtask bench".to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    command
        .current_dir(&root)
        .env("VCOM_BENCH_COMMAND", typed)
        .arg("suite")
        .arg("--server-bin")
        .arg(bin.join("vcom-server"));
    if smoke {
        command
            .arg("--out")
            .arg(root.join("target/vcom-bench-smoke"));
    } else {
        command
            .arg("--out")
            .arg(root.join("target/vcom-bench"))
            .arg("--doc")
            .arg(root.join("docs/benchmarks.md"));
    }
    command.args(args);
    run("vcom-bench suite", &mut command)
}

/// Every program of the workspace, debug profile: one build with one set of features
/// for `e2e` and `bench --smoke` alike (building a few packages alone resolves other
/// features and rebuilds most of the tree, once per command).
fn build_debug_bins() -> anyhow::Result<Status> {
    run(
        "cargo build --workspace --bins",
        cargo().args(["build", "--workspace", "--bins"]),
    )
}

/// Builds `vcom-server` and `vcom-bench` with the profile's flags (`--release` or none).
fn build_server_and_bench(profile_flags: &[&str]) -> anyhow::Result<Status> {
    if profile_flags.is_empty() {
        return build_debug_bins();
    }
    let programs = [
        "-p",
        "vcom-cli",
        "-p",
        "vcom-bench",
        "--bin",
        "vcom-server",
        "--bin",
        "vcom-bench",
    ];
    run(
        &format!(
            "cargo build {} {}",
            profile_flags.join(" "),
            programs.join(" ")
        ),
        cargo().arg("build").args(profile_flags).args(programs),
    )
}

/// `cargo xtask soak`: the release `vcom-server` under `vcom-bench soak`.
fn soak(args: &[String]) -> anyhow::Result<Status> {
    if let Status::Failed(code) = build_server_and_bench(&["--release"])? {
        return Ok(Status::Failed(code));
    }
    let root = root()?;
    let bin = profile_dir("release")?;
    let mut command = Command::new(bin.join("vcom-bench"));
    command
        .current_dir(&root)
        .arg("soak")
        .arg("--server-bin")
        .arg(bin.join("vcom-server"))
        .arg("--out")
        .arg(root.join("target/vcom-soak"))
        .args(args);
    run("vcom-bench soak", &mut command)
}
