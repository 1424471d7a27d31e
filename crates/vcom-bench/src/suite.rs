//! The suite behind `cargo xtask bench`: every workload and case, each run against
//! vcom-server, then the relay, then each peer (alternated, so drift on a shared machine
//! shows in every target alike), at least three times; a fresh server process for
//! every measurement.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::peers::{self, PeerKind};
use crate::report;
use crate::results::{Machine, Outcome, Results, Row};
use crate::target::{Running, TargetKind};
use crate::vcom::Identities;
use crate::wire::Workload;
use crate::workloads::{self, Figures, Plan, Rate};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `vcom-server` binary.
    pub server_bin: PathBuf,
    /// Also run the peers.
    pub peers: bool,
    /// Every workload tiny: proves the harness works, in seconds.
    pub smoke: bool,
    /// Runs of each (workload, case, target).
    pub runs: usize,
    /// Workloads to run (all when empty).
    pub only: Vec<Workload>,
    /// Where results, logs and plots go.
    pub out_dir: PathBuf,
    /// The document whose generated section is replaced (`docs/benchmarks.md`).
    pub doc: Option<PathBuf>,
    /// The command as the user typed it, for the report.
    pub command: String,
}

/// One case of a workload.
#[derive(Debug, Clone, Copy)]
enum Case {
    Connections(usize),
    Direct(Rate),
    Group,
    /// The offline backlog, stored by this many senders at once.
    Backlog(usize),
    Files(usize),
}

impl Case {
    fn workload(self) -> Workload {
        match self {
            Case::Connections(_) => Workload::Connections,
            Case::Direct(_) => Workload::Direct,
            Case::Group => Workload::Group,
            Case::Backlog(_) => Workload::Backlog,
            Case::Files(_) => Workload::Files,
        }
    }

    fn label(self, plan: &Plan) -> String {
        match self {
            Case::Connections(n) => format!("N={n}"),
            Case::Direct(Rate::Max) => "max".to_owned(),
            Case::Direct(Rate::Steady(r)) => format!("{r}/s"),
            Case::Group => format!("{} members", plan.users),
            Case::Backlog(1) => format!("{} msgs, 1 sender", plan.backlog),
            Case::Backlog(_) => format!("{} msgs", plan.backlog),
            Case::Files(n) => format!("{n}x{}MiB", plan.file_size >> 20),
        }
    }

    /// Users the target must be ready for.
    fn users(self, plan: &Plan) -> usize {
        match self {
            Case::Connections(n) => n,
            Case::Files(n) => 2 * n,
            Case::Backlog(senders) => senders + 1,
            _ => plan.users,
        }
    }
}

/// The sizes of a full run, or of `--smoke`.
pub fn plan(smoke: bool) -> Plan {
    if smoke {
        Plan {
            users: 20,
            warm_up: Duration::from_millis(200),
            window: Duration::from_millis(500),
            backlog: 1_000,
            file_size: 1 << 20,
            login_concurrency: 1_000,
        }
    } else {
        Plan {
            users: 1_000,
            warm_up: Duration::from_secs(2),
            window: Duration::from_secs(10),
            backlog: 1_000_000,
            file_size: 256 << 20,
            login_concurrency: 1_000,
        }
    }
}

/// The largest connection case: under the 20 000 open files a process may hold here,
/// with room for the server's own files.
pub const MOST_CONNECTIONS: usize = 19_000;

fn cases(smoke: bool) -> Vec<Case> {
    if smoke {
        vec![
            Case::Connections(20),
            Case::Connections(50),
            Case::Direct(Rate::Max),
            Case::Direct(Rate::Steady(500)),
            Case::Group,
            Case::Backlog(workloads::BACKLOG_SENDERS),
            Case::Backlog(1),
            Case::Files(1),
            Case::Files(2),
        ]
    } else {
        vec![
            Case::Connections(1_000),
            Case::Connections(10_000),
            Case::Connections(MOST_CONNECTIONS),
            Case::Direct(Rate::Max),
            Case::Direct(Rate::Steady(5_000)),
            Case::Direct(Rate::Steady(10_000)),
            Case::Direct(Rate::Steady(25_000)),
            Case::Group,
            Case::Backlog(workloads::BACKLOG_SENDERS),
            Case::Backlog(1),
            Case::Files(1),
            Case::Files(10),
        ]
    }
}

/// Runs the suite, writes `results.json`, the plots and the report; returns the results.
pub async fn run(options: Options) -> anyhow::Result<Results> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;
    let plan = plan(options.smoke);
    let cases: Vec<Case> = cases(options.smoke)
        .into_iter()
        .filter(|c| options.only.is_empty() || options.only.contains(&c.workload()))
        .collect();
    let mut targets = vec![
        TargetKind::Vcom(options.server_bin.clone()),
        TargetKind::Relay,
    ];
    if options.peers {
        peers::ensure_installed(&PeerKind::ALL)?;
        targets.extend(PeerKind::ALL.into_iter().map(TargetKind::Peer));
    }
    let most_users = cases.iter().map(|c| c.users(&plan)).max().unwrap_or(1);
    eprintln!("vcom-bench: generating {most_users} client keys");
    let identities = Identities::generate(most_users).await?;
    let mut results = Results {
        machine: machine(),
        command: options.command.clone(),
        started: vcom_protocol::Timestamp(now_ms()).utc().to_string(),
        runs: options.runs,
        smoke: options.smoke,
        rows: Vec::new(),
        settings: Default::default(),
    };
    for case in cases {
        let label = case.label(&plan);
        for run in 1..=options.runs {
            for target in &targets {
                let name = target.name();
                eprintln!(
                    "vcom-bench: {} {label} on {name}, run {run}/{}",
                    case.workload().name(),
                    options.runs
                );
                let outcome = measure(target, case, &plan, &identities, &options, &mut results)
                    .await
                    .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
                if let Outcome::Failed(why) = &outcome {
                    eprintln!("vcom-bench:   failed: {why}");
                }
                results.rows.push(Row {
                    workload: case.workload().name().to_owned(),
                    case: label.clone(),
                    target: name,
                    run,
                    outcome,
                });
            }
        }
        // Each case's figures are on disk as soon as it ends.
        write_results(&options, &results)?;
    }
    write_results(&options, &results)?;
    println!("{}", report::terminal(&results));
    if let Some(doc) = &options.doc {
        let plot_dir = doc
            .parent()
            .map(|p| p.join("benchmarks"))
            .unwrap_or_else(|| PathBuf::from("benchmarks"));
        let plots = report::write_plots(&results, &plot_dir)?;
        report::update_doc(doc, &report::markdown(&results, "benchmarks/", &plots))?;
        eprintln!(
            "vcom-bench: wrote {} and {}",
            doc.display(),
            plot_dir.display()
        );
    }
    Ok(results)
}

fn write_results(options: &Options, results: &Results) -> anyhow::Result<()> {
    let path = options.out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(results)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn measure(
    target: &TargetKind,
    case: Case,
    plan: &Plan,
    identities: &Identities,
    options: &Options,
    results: &mut Results,
) -> anyhow::Result<Outcome> {
    let running = Running::start(
        target,
        identities,
        case.users(plan),
        case.workload(),
        &options.out_dir,
    )
    .await?;
    let mut settings = running.protocol.settings();
    let backlog = backlog_for(target, plan);
    if backlog != plan.backlog {
        settings.push_str(&format!(
            "; backlog workload with {backlog} messages instead of {}: storing one costs it \
             about 0.6 ms, so the full size would take most of an hour per run",
            plan.backlog
        ));
    }
    results.settings.insert(target.name(), settings);
    if let Err(why) = running.protocol.supports(case.workload()) {
        running.stop().await?;
        return Ok(Outcome::Unsupported(why));
    }
    let plan = Plan {
        backlog: backlog_for(target, plan),
        ..plan.clone()
    };
    let figures = run_case(&running, case, &plan).await;
    running.stop().await?;
    let Figures { metrics, latency } = figures?;
    Ok(Outcome::Measured { metrics, latency })
}

async fn run_case(running: &Running, case: Case, plan: &Plan) -> anyhow::Result<Figures> {
    let protocol = running.protocol.clone();
    let process = running.process;
    match case {
        Case::Connections(n) => {
            workloads::connections(protocol, process, n, plan.login_concurrency).await
        }
        Case::Direct(rate) => workloads::direct(protocol, process, plan, rate).await,
        Case::Group => workloads::group(protocol, process, plan).await,
        Case::Backlog(senders) => workloads::backlog(protocol, process, plan, senders).await,
        Case::Files(pairs) => {
            let vcom = running
                .vcom
                .clone()
                .context("the file workload speaks vCom only")?;
            workloads::files(Arc::clone(&vcom), process, plan, pairs).await
        }
    }
}

/// The backlog size for `target`: Prosody stores an offline message in about 0.6 ms
/// (files, no fsync), so it runs a tenth of the full size; its rate is what compares.
fn backlog_for(target: &TargetKind, plan: &Plan) -> usize {
    match target {
        TargetKind::Peer(PeerKind::Prosody) => plan.backlog.min(100_000),
        _ => plan.backlog,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What this machine is, from /proc.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("Linux {}", r.trim()))
        .unwrap_or_else(|_| "unknown".to_owned());
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel,
        open_files,
    }
}
