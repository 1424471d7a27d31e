//! `cargo xtask dist [--check] [--debug]`: the release artefacts in `target/dist/`.
//!
//! - a tarball `vcom-VERSION-ARCH-linux.tar.gz`: both programs, their man pages and
//!   shell completions (generated from the clap definitions by `vcom-server
//!   generate-assets`), the systemd unit, a starting `vcom.toml`, the README and docs;
//! - a Debian package `vcom_VERSION_ARCH.deb` (cargo-deb, installed with `cargo install`
//!   when missing) with the same files in their Debian places and the unit enabled.
//!
//! With `--check` the package is then installed with `dpkg -i`, the installed
//! `/usr/bin/vcom-server` is started on a temporary data directory and answers a login
//! from the installed `/usr/bin/vcom`, and the package is removed again. It needs root
//! (dpkg) and changes the machine while it runs; it refuses where `vcom` is already
//! installed, so it never replaces an operator's package. CI runs it where it runs as
//! root with dpkg (this machine kind) and says plainly when it cannot, with `--debug`:
//! the package made from the debug build it already has (stripped), which proves the
//! package's shape without a release build.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::{Status, cargo, profile_dir, root, run};

/// Builds the tarball and the package; with `--check`, installs and tries the package.
pub(crate) fn dist(args: &[String]) -> anyhow::Result<Status> {
    const USAGE: &str = "usage: cargo xtask dist [--check] [--debug]";
    let mut check = false;
    let mut debug = false;
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            "--debug" => debug = true,
            _ => bail!(USAGE),
        }
    }
    // `--debug` packages the debug build (CI has it already; the package's shape is what
    // it proves, in seconds instead of a release build's minutes). Releases are built
    // without it.
    let (profile, profile_dir_name, build_flags): (&str, &str, &[&str]) = if debug {
        ("dev", "debug", &[])
    } else {
        ("release", "release", &["--release"])
    };
    // The debug build is the workspace's, with the features `cargo xtask e2e` and the
    // tests use, so CI builds nothing again here.
    let packages: &[&str] = if debug {
        &["--workspace"]
    } else {
        &["-p", "vcom-cli"]
    };
    let mut build_args = vec!["build"];
    build_args.extend(build_flags);
    build_args.push("--locked");
    build_args.extend(packages);
    build_args.push("--bins");
    let build = run(
        &format!("cargo {}", build_args.join(" ")),
        cargo().args(&build_args),
    )?;
    if let Status::Failed(code) = build {
        return Ok(Status::Failed(code));
    }
    let root = root()?;
    let release = profile_dir(profile_dir_name)?;
    let dist = root.join("target").join("dist");
    // Beside the binaries, where cargo-deb looks for built files (`target/release/` in
    // the package's asset list means the real target directory, wherever it is).
    let assets = release.join("vcom-assets");
    let _ = std::fs::remove_dir_all(&assets);
    let generated = run(
        "vcom-server generate-assets",
        Command::new(release.join("vcom-server"))
            .arg("generate-assets")
            .arg(&assets),
    )?;
    if let Status::Failed(code) = generated {
        return Ok(Status::Failed(code));
    }
    // Man pages ship compressed (Debian policy; man reads them either way).
    let mut pages: Vec<PathBuf> = std::fs::read_dir(assets.join("man"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    let zipped = run(
        "gzip -9n the man pages",
        Command::new("gzip").arg("-9nf").args(&pages),
    )?;
    if let Status::Failed(code) = zipped {
        return Ok(Status::Failed(code));
    }

    let version = workspace_version(&root)?;
    let arch = std::env::consts::ARCH;
    let name = format!("vcom-{version}-{arch}-linux");
    let staging = dist.join(&name);
    let _ = std::fs::remove_dir_all(&staging);
    for (from, to) in [
        (release.join("vcom-server"), "bin/vcom-server"),
        (release.join("vcom"), "bin/vcom"),
        (
            root.join("packaging/vcom-server.service"),
            "systemd/vcom-server.service",
        ),
        (root.join("packaging/vcom.toml"), "etc/vcom.toml"),
        (root.join("README.md"), "README.md"),
    ] {
        copy(&from, &staging.join(to))?;
    }
    copy_dir(&assets.join("man"), &staging.join("share/man/man1"))?;
    copy_dir(
        &assets.join("completions"),
        &staging.join("share/completions"),
    )?;
    copy_dir(&root.join("docs"), &staging.join("docs"))?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    let packed = run(
        &format!("tar czf {}", tarball.display()),
        Command::new("tar")
            .arg("czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dist)
            .arg(&name),
    )?;
    if let Status::Failed(code) = packed {
        return Ok(Status::Failed(code));
    }

    if !cargo()
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        let installed = run(
            "cargo install cargo-deb --locked",
            cargo().args(["install", "cargo-deb", "--locked"]),
        )?;
        if let Status::Failed(code) = installed {
            return Ok(Status::Failed(code));
        }
    }
    let deb = dist.join(format!("vcom_{version}_{}.deb", debian_arch(arch)));
    let mut deb_args = vec!["deb", "-p", "vcom-cli", "--no-build", "--profile", profile];
    if debug {
        // Debug binaries are large: strip them and compress fast.
        deb_args.extend(["--strip", "--fast"]);
    }
    let packaged = run(
        &format!("cargo {}", deb_args.join(" ")),
        cargo().args(&deb_args).arg("--output").arg(&deb),
    )?;
    if let Status::Failed(code) = packaged {
        return Ok(Status::Failed(code));
    }
    eprintln!("xtask: wrote {} and {}", tarball.display(), deb.display());
    if check {
        install_and_try(&deb)?;
    }
    Ok(Status::Passed)
}

/// The workspace's version (`[workspace.package] version`).
fn workspace_version(root: &Path) -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let section = manifest
        .split("[workspace.package]")
        .nth(1)
        .context("no [workspace.package] in Cargo.toml")?;
    section
        .lines()
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("version")?
                .trim()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .context("no version in [workspace.package]")
}

/// Debian's name for an architecture.
fn debian_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// `dpkg -i`, then the installed server started and answering a login from the
/// installed client, then `dpkg --purge`.
fn install_and_try(deb: &Path) -> anyhow::Result<()> {
    if !can_install()? {
        bail!("dist --check installs a package: it needs root and dpkg");
    }
    let present = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "vcom"])
        .output()?;
    if present.status.success() && String::from_utf8_lossy(&present.stdout).contains("installed") {
        bail!(
            "a vcom package is already installed here; dist --check leaves it alone (remove it first)"
        );
    }
    let status = Command::new("dpkg").arg("-i").arg(deb).status()?;
    if !status.success() {
        bail!("dpkg -i {} failed ({status})", deb.display());
    }
    let tried = try_installed();
    let removed = Command::new("dpkg").args(["--purge", "vcom"]).status();
    tried?;
    if !removed.is_ok_and(|s| s.success()) {
        bail!("dpkg -r vcom failed");
    }
    eprintln!("xtask: the package installed, answered a login, and was removed");
    Ok(())
}

/// Whether this process may install a package: root, with dpkg on the path.
pub(crate) fn can_install() -> anyhow::Result<bool> {
    let uid = Command::new("id").arg("-u").output()?;
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let dpkg = Command::new("dpkg")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Ok(root && dpkg)
}

fn try_installed() -> anyhow::Result<()> {
    for file in [
        "/usr/bin/vcom-server",
        "/usr/bin/vcom",
        "/etc/vcom/vcom.toml",
        "/usr/share/man/man1/vcom-server.1.gz",
    ] {
        if !Path::new(file).exists() {
            bail!("the package did not install {file}");
        }
    }
    // cargo-deb puts the unit under /usr/lib (3.x) or /lib (older releases).
    if !["/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .any(|dir| Path::new(dir).join("vcom-server.service").exists())
    {
        bail!("the package did not install the vcom-server.service unit");
    }
    let scratch = std::env::temp_dir().join(format!("vcom-dist-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let mut server = Command::new("/usr/bin/vcom-server")
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(scratch.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the installed vcom-server")?;
    let result = (|| {
        let stdout = server.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .with_context(|| format!("no ready line from the installed server: {line:?}"))?
            .to_owned();
        let login = Command::new("/usr/bin/vcom")
            .args(["--server", &addr, "--user", "alice", "--profile"])
            .arg(scratch.join("profile"))
            .args(["friends", "list"])
            .env("HOME", &scratch)
            .status()?;
        if !login.success() {
            bail!("the installed vcom could not log in to the installed server ({login})");
        }
        anyhow::Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(PathBuf::from(&scratch));
    result
}
