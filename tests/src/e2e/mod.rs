//! The end-to-end runner behind `cargo xtask e2e`: plays named scenarios against the
//! real `vcom-server` program (and the `vcom` program when it is usable), then proves
//! from the server's packet tap that every part of the protocol crossed the wire.
//!
//! # Layout
//! - this module: the options, the scenario list, running each scenario under its own
//!   time bound, and the report (`ok`/`FAIL` lines, table, `N passed, M failed`).
//! - [`server`]: `vcom-server serve` as a child process, always stopped; `admin`.
//! - [`coverage`]: tap files summed, the coverage table, what is missing.
//! - [`sdk`]: SDK clients with bounded event waits, for the ordinary flows.
//! - [`login`], [`chat`], [`groups`], [`transfers`], [`robustness`], [`cli`]: the scenarios, by
//!   domain. Where exact packets matter they use the raw clients of [`crate::harness`],
//!   the one place raw-client code lives.
//!
//! Scenarios are independent: each makes its own users, and one that needs another
//! configuration, a restart, or server-wide policy starts its own server (with its own
//! tap file). They share one "main" server otherwise, which also shows that bad input
//! from one client leaves the others served.

pub mod chat;
pub mod cli;
pub mod coverage;
pub mod groups;
pub mod login;
pub mod robustness;
pub mod sdk;
pub mod server;
pub mod transfers;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::harness::Target;
use server::{ServerProcess, ServerSpec};

/// The bound on one scenario, servers and clients included.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// What the runner was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `vcom-server` program.
    pub server_bin: PathBuf,
    /// The `vcom` program, if given; scenarios using it are skipped when it is not
    /// usable.
    pub vcom_bin: Option<PathBuf>,
    /// Run only the scenarios with these names (coverage is then not checked).
    pub only: Vec<String>,
    /// Keep the work directory (data, logs, profiles, tap files) even on success.
    pub keep: bool,
}

/// The usage line of `vcom-e2e`.
pub const USAGE: &str =
    "usage: vcom-e2e --server-bin PATH [--vcom-bin PATH] [--only NAME]... [--keep] [--list]";

/// What the command line asked for.
#[derive(Debug, Clone)]
pub enum Request {
    /// Run the scenarios.
    Run(Options),
    /// Print the scenario names.
    List,
}

impl Request {
    /// Parses the arguments after the program name. Without `--server-bin`, the
    /// `vcom-server` next to the running program is used (both are in `target/debug`).
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Request> {
        let mut server_bin = None;
        let mut vcom_bin = None;
        let mut only = Vec::new();
        let mut keep = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| {
                args.next()
                    .with_context(|| format!("{flag} needs a value; {USAGE}"))
            };
            match arg.as_str() {
                "--server-bin" => server_bin = Some(PathBuf::from(value("--server-bin")?)),
                "--vcom-bin" => vcom_bin = Some(PathBuf::from(value("--vcom-bin")?)),
                "--only" => only.push(value("--only")?),
                "--keep" => keep = true,
                "--list" => return Ok(Request::List),
                other => bail!("unknown argument {other:?}; {USAGE}"),
            }
        }
        let sibling = |name: &str| -> anyhow::Result<PathBuf> {
            let exe = std::env::current_exe().context("cannot locate the running program")?;
            Ok(exe.with_file_name(name))
        };
        let server_bin = match server_bin {
            Some(path) => path,
            None => sibling("vcom-server")?,
        };
        if !server_bin.is_file() {
            bail!(
                "{} does not exist: build it (cargo build -p vcom-cli --bins) or pass --server-bin",
                server_bin.display()
            );
        }
        for name in &only {
            if !SCENARIOS.iter().any(|s| s.name == name) {
                bail!("no scenario is called {name:?} (see --list)");
            }
        }
        Ok(Request::Run(Options {
            server_bin,
            vcom_bin,
            only,
            keep,
        }))
    }
}

/// Starts servers for the run: numbered data directories, logs and tap files.
#[derive(Debug)]
pub struct Servers {
    bin: PathBuf,
    work: PathBuf,
    next: AtomicUsize,
    /// Every server started: its label and tap file, to check all were written.
    started: Mutex<Vec<(String, PathBuf)>>,
}

impl Servers {
    fn new(bin: PathBuf, work: PathBuf) -> Servers {
        Servers {
            bin,
            work,
            next: AtomicUsize::new(1),
            started: Mutex::new(Vec::new()),
        }
    }

    /// Starts a server on a new data directory, with `config` (TOML) if given.
    pub async fn start(&self, label: &str, config: Option<&str>) -> anyhow::Result<ServerProcess> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let data_dir = self.work.join("servers").join(format!("{n:02}-{label}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let config = match config {
            Some(text) => Some(self.config_file(label, text)?),
            None => None,
        };
        self.start_on(label, &data_dir, config).await
    }

    /// Starts a server on an existing data directory (a restart), with the
    /// configuration file `config` if given.
    pub async fn start_on(
        &self,
        label: &str,
        data_dir: &Path,
        config: Option<PathBuf>,
    ) -> anyhow::Result<ServerProcess> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let spec = ServerSpec {
            bin: self.bin.clone(),
            data_dir: data_dir.to_owned(),
            config,
            tap: self.work.join("taps").join(format!("{n:02}-{label}.jsonl")),
            log: self.work.join("logs").join(format!("{n:02}-{label}.log")),
        };
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((label.to_owned(), spec.tap.clone()));
        ServerProcess::start(label, spec).await
    }

    /// Writes `text` as a configuration file for `label` and returns its path.
    pub fn config_file(&self, label: &str, text: &str) -> anyhow::Result<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self
            .work
            .join("servers")
            .join(format!("{n:02}-{label}.toml"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// What a scenario gets: the main server, a way to start its own, and directories.
#[derive(Debug)]
pub struct Ctx {
    /// Starts servers of the run.
    pub servers: Servers,
    /// The shared main server.
    pub main: Target,
    main_data: PathBuf,
    vcom_bin: Option<PathBuf>,
    work: PathBuf,
    next_dir: AtomicUsize,
}

impl Ctx {
    /// Runs `vcom-server admin` against the main server.
    pub async fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        server::admin(&self.servers.bin, &self.main_data, args).await
    }

    /// Waits (bounded) until `user` has no session on the main server.
    pub async fn until_offline(&self, user: &str) -> anyhow::Result<()> {
        server::until_offline(&self.servers.bin, &self.main_data, user).await
    }

    /// A new empty directory under the run's work directory (profiles, files).
    pub fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let n = self.next_dir.fetch_add(1, Ordering::Relaxed);
        let path = self.work.join("clients").join(format!("{n:03}-{name}"));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(path)
    }

    /// The `vcom` program, if one was given.
    pub fn vcom_bin(&self) -> Option<&Path> {
        self.vcom_bin.as_deref()
    }
}

/// The future a scenario runs as.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + Send>>;

/// How a scenario that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and every check held.
    Passed,
    /// It could not run here, for the reason given (counts as neither).
    Skipped(String),
}

/// One named scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name in the report.
    pub name: &'static str,
    /// What it does.
    pub run: fn(Arc<Ctx>) -> ScenarioFuture,
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "first-login-and-relogin",
        run: |c| Box::pin(login::first_login_and_relogin(c)),
    },
    Scenario {
        name: "login-refusals",
        run: |c| Box::pin(login::login_refusals(c)),
    },
    Scenario {
        name: "two-devices-one-user",
        run: |c| Box::pin(chat::two_devices_one_user(c)),
    },
    Scenario {
        name: "offline-delivery-across-restart",
        run: |c| Box::pin(chat::offline_delivery_across_restart(c)),
    },
    Scenario {
        name: "list-sync-both-ways",
        run: |c| Box::pin(chat::list_sync_both_ways(c)),
    },
    Scenario {
        name: "blocked-sender",
        run: |c| Box::pin(chat::blocked_sender(c)),
    },
    Scenario {
        name: "group-chat",
        run: |c| Box::pin(chat::group_chat(c)),
    },
    Scenario {
        name: "client-side-groups",
        run: |c| Box::pin(groups::client_groups(c)),
    },
    Scenario {
        name: "broadcast",
        run: |c| Box::pin(chat::broadcast(c)),
    },
    Scenario {
        name: "file-transfer-completed",
        run: |c| Box::pin(transfers::completed(c)),
    },
    Scenario {
        name: "file-transfer-declined",
        run: |c| Box::pin(transfers::declined(c)),
    },
    Scenario {
        name: "file-transfer-dropped-connection",
        run: |c| Box::pin(transfers::dropped_connection(c)),
    },
    Scenario {
        name: "file-transfer-refusals-and-races",
        run: |c| Box::pin(transfers::refusals_and_races(c)),
    },
    Scenario {
        name: "file-transfer-limits",
        run: |c| Box::pin(transfers::limits(c)),
    },
    Scenario {
        name: "bad-input-from-raw-socket",
        run: |c| Box::pin(robustness::bad_input(c)),
    },
    Scenario {
        name: "vcom-cli-send-and-receive",
        run: |c| Box::pin(cli::send_and_receive(c)),
    },
    Scenario {
        name: "vcom-cli-friends-sync-with-sdk",
        run: |c| Box::pin(cli::friends_sync_with_sdk(c)),
    },
];

/// The last panic's message, so a scenario that panics (the raw harness fails by
/// panicking) is reported with the reason rather than a bare "panicked".
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The result of one check in the report.
struct Check {
    passed: bool,
}

fn report(name: &str, started: Instant, result: &Result<Outcome, String>) -> Check {
    let ms = started.elapsed().as_millis();
    match result {
        Ok(Outcome::Passed) => println!("ok   {name} ({ms} ms)"),
        Ok(Outcome::Skipped(why)) => println!("skip {name} ({ms} ms): {}", one_line(why)),
        Err(why) => println!("FAIL {name} ({ms} ms): {}", one_line(why)),
    }
    Check {
        passed: result.is_ok(),
    }
}

/// Runs one scenario in its own task under [`SCENARIO_TIMEOUT`]; a panic or a timeout
/// is a failure, and the task (with every server and client it owns) is dropped.
async fn play(scenario: &Scenario, ctx: Arc<Ctx>) -> Result<Outcome, String> {
    let mut task = tokio::spawn((scenario.run)(ctx));
    match tokio::time::timeout(SCENARIO_TIMEOUT, &mut task).await {
        Ok(Ok(Ok(outcome))) => Ok(outcome),
        Ok(Ok(Err(e))) => Err(format!("{e:#}")),
        Ok(Err(join)) if join.is_panic() => {
            let message = LAST_PANIC
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| "panicked".to_owned());
            Err(message)
        }
        Ok(Err(join)) => Err(format!("the scenario task failed: {join}")),
        Err(_) => {
            task.abort();
            let _ = task.await;
            Err(format!("did not finish within {SCENARIO_TIMEOUT:?}"))
        }
    }
}

/// Whether a server completes a TLS handshake within 5 s.
async fn answers(target: &Target) -> bool {
    let handshake = crate::harness::try_tls_connect_to(target, None);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), handshake).await,
        Ok(Ok(_))
    )
}

/// Runs the scenarios and prints the report; `Ok(true)` when every check passed.
pub async fn run(options: Options) -> anyhow::Result<bool> {
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(info.to_string());
    }));
    let work = tempfile::Builder::new()
        .prefix("vcom-e2e-")
        .tempdir()
        .context("cannot create the work directory")?;
    for sub in ["servers", "taps", "logs", "clients"] {
        std::fs::create_dir_all(work.path().join(sub))
            .with_context(|| format!("cannot create {sub} in the work directory"))?;
    }
    let servers = Servers::new(options.server_bin.clone(), work.path().to_owned());

    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut count = |check: Check| {
        if check.passed {
            passed += 1;
        } else {
            failed += 1;
        }
    };

    let started = Instant::now();
    let main = match servers.start("main", None).await {
        Ok(main) => main,
        Err(e) => {
            count(report("start-main-server", started, &Err(format!("{e:#}"))));
            println!("{passed} passed, {failed} failed");
            println!("work directory kept: {}", work.keep().display());
            return Ok(false);
        }
    };
    let mut main = main;
    let ctx = Arc::new(Ctx {
        main: main.target().clone(),
        main_data: main.spec().data_dir.clone(),
        servers,
        vcom_bin: options.vcom_bin.clone(),
        work: work.path().to_owned(),
        next_dir: AtomicUsize::new(1),
    });

    let mut healthy = true;
    for scenario in SCENARIOS {
        if !options.only.is_empty() && !options.only.iter().any(|n| n == scenario.name) {
            continue;
        }
        let started = Instant::now();
        let result = if !main.is_running() {
            Err("the main server is not running any more".to_owned())
        } else if !healthy {
            Err("the main server stopped answering (see the failure above)".to_owned())
        } else {
            play(scenario, ctx.clone()).await
        };
        // After a failure, make sure the main server still answers, so a hung server
        // costs one scenario's time bound rather than one per scenario.
        if result.is_err() && healthy {
            healthy = answers(&ctx.main).await;
        }
        if !matches!(result, Ok(Outcome::Skipped(_))) {
            count(report(scenario.name, started, &result));
        } else {
            report(scenario.name, started, &result);
        }
    }

    let started = Instant::now();
    let stopped = main.stop().await.map(|()| Outcome::Passed);
    count(report(
        "main-server-stops-on-sigterm",
        started,
        &stopped.map_err(|e| format!("{e:#}")),
    ));

    // Coverage: every server's tap, summed.
    let mut counts = coverage::Counts::default();
    let mut missing = Vec::new();
    let started_servers = ctx
        .servers
        .started
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (label, tap) in &started_servers {
        if tap.exists() {
            counts.add_file(tap)?;
        } else {
            missing.push(format!(
                "missing: the tap file of server {label} ({}): it did not stop gracefully",
                tap.display()
            ));
        }
    }
    println!();
    print!("{}", coverage::table(&counts));
    println!();
    if options.only.is_empty() {
        missing.extend(coverage::missing(&counts));
        for line in &missing {
            println!("{line}");
        }
        if missing.is_empty() {
            println!(
                "coverage: every legal packet direction, 258 code, 270 reason and 517 outcome seen"
            );
        }
        count(Check {
            passed: missing.is_empty(),
        });
    } else {
        println!("coverage: not checked (--only runs a subset)");
    }

    println!("{passed} passed, {failed} failed");
    if failed > 0 || options.keep {
        println!("work directory kept: {}", work.keep().display());
    }
    Ok(failed == 0)
}
