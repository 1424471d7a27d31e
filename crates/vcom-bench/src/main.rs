//! `vcom-bench`: the command line of the load generator (see the library's docs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use vcom_bench::results::{Outcome, Results, Row};
use vcom_bench::wire::{Protocol, Workload};
use vcom_bench::workloads::{Plan, Rate, ServerProcess};
use vcom_bench::{relay, report, soak, suite, vcom, workloads};

/// A load generator for vCom servers.
#[derive(Debug, Parser)]
#[command(name = "vcom-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one workload against a running vCom server and prints its figures.
    Run(RunArgs),
    /// Runs the no-store relay (the limit) until Ctrl-C or SIGTERM.
    Relay {
        /// Where to listen (port 0: a free one, printed on the ready line).
        #[arg(long, default_value = "127.0.0.1:7421")]
        listen: SocketAddr,
    },
    /// Runs every workload against vcom-server and the relay (and the peers),
    /// alternated, and writes the report.
    Suite {
        /// The vcom-server program to measure.
        #[arg(long)]
        server_bin: PathBuf,
        /// Also measure Mosquitto, InspIRCd and Prosody (installed with apt-get when
        /// missing).
        #[arg(long)]
        peers: bool,
        /// Every workload tiny, in seconds: proves the harness works; figures mean
        /// nothing.
        #[arg(long)]
        smoke: bool,
        /// Runs of each workload, case and target [default: 3, or 1 with --smoke].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
        runs: Option<u16>,
        /// Only these workloads (connections, direct, group, backlog, files).
        #[arg(long, value_delimiter = ',', value_parser = parse_workload)]
        only: Vec<Workload>,
        /// Where results.json, server logs and plots go.
        #[arg(long, default_value = "target/vcom-bench")]
        out: PathBuf,
        /// Replace the generated section of this document (and write its plots beside
        /// it, in `benchmarks/`).
        #[arg(long)]
        doc: Option<PathBuf>,
    },
    /// Runs vcom-server under a steady direct-message load with periodic reconnects
    /// for a long time; fails if a message is lost or its memory keeps growing.
    Soak(SoakArgs),
    /// Renders a results file as the terminal table (and into a document).
    Report {
        /// A results.json written by `suite`.
        #[arg(long)]
        results: PathBuf,
        /// Replace the generated section of this document and write its plots.
        #[arg(long)]
        doc: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// connections, direct, group, backlog or files.
    #[arg(value_parser = parse_workload)]
    workload: Workload,
    /// The server, HOST:PORT.
    #[arg(long)]
    server: String,
    /// SHA-256 of the server's certificate, as its ready line prints it.
    #[arg(long = "insecure-pin")]
    pin: String,
    /// The server password.
    #[arg(long, env = "VCOM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Online users (messages, group members).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Clients for the connections workload.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Messages a second in all, or "max".
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    rate: Rate,
    /// Seconds measured (after two of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages stored for the offline user.
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Senders storing the backlog at once.
    #[arg(long, default_value_t = workloads::BACKLOG_SENDERS)]
    senders: usize,
    /// MiB of each file.
    #[arg(long, default_value_t = 256)]
    file_mib: u64,
    /// Files sent at once.
    #[arg(long, default_value_t = 1)]
    transfers: usize,
    /// The server's admin socket (`DATA_DIR/admin.sock`), needed to create the group.
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// The server's process id, to report its memory and CPU (same machine only).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    /// The vcom-server program to run.
    #[arg(long)]
    server_bin: PathBuf,
    /// Minutes of load.
    #[arg(long, default_value_t = 30.0, value_parser = parse_minutes)]
    minutes: f64,
    /// Users sending direct messages to each other.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    users: u32,
    /// Messages a second, in all.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: u64,
    /// Seconds between reconnects of every user.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    reconnect_every: u64,
    /// Users that only log in and out, all the time.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    churn: u32,
    /// Seconds of warm-up before memory is judged [default: a fifth of the run, 1 to 5
    /// min].
    #[arg(long)]
    warm_up: Option<u64>,
    /// Memory growth allowed after the warm-up, in MiB (or a tenth of the level, if
    /// more).
    #[arg(long, default_value_t = 16.0)]
    max_growth_mib: f64,
    /// Where the server's log goes.
    #[arg(long, default_value = "target/vcom-soak")]
    out: PathBuf,
}

fn parse_minutes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m > 0.0 && m <= 10_000.0 => Ok(m),
        _ => Err(format!(
            "{text:?} is not a number of minutes (above 0, at most 10000)"
        )),
    }
}

fn parse_workload(text: &str) -> Result<Workload, String> {
    Workload::parse(text).ok_or_else(|| {
        format!("unknown workload {text:?}: connections, direct, group, backlog or files")
    })
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match text.parse::<u64>() {
        Ok(r) if (1..=100_000_000).contains(&r) => Ok(Rate::Steady(r)),
        _ => Err(format!(
            "{text:?} is not a rate: messages a second (1 to 100000000) or max"
        )),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vcom-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcom-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Relay { listen } => relay::run(listen).await,
        Command::Suite {
            server_bin,
            peers,
            smoke,
            runs,
            only,
            out,
            doc,
        } => {
            // `cargo xtask bench` names itself: that is the command to repeat.
            let command = std::env::var("VCOM_BENCH_COMMAND")
                .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
            let results = suite::run(suite::Options {
                server_bin,
                peers,
                smoke,
                runs: usize::from(runs.unwrap_or(if smoke { 1 } else { 3 })),
                only,
                out_dir: out,
                doc,
                command,
            })
            .await?;
            // vCom's own targets must work; a peer that fails a workload is a result
            // (its row says why), not a broken harness.
            let failed = |ours: bool| {
                results
                    .rows
                    .iter()
                    .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
                    .filter(|r| (r.target == "vcom" || r.target == "relay") == ours)
                    .count()
            };
            if failed(false) > 0 {
                eprintln!(
                    "vcom-bench: {} peer measurement(s) failed; their rows say why",
                    failed(false)
                );
            }
            anyhow::ensure!(
                failed(true) == 0,
                "{} measurement(s) of vcom or the relay failed (see above)",
                failed(true)
            );
            Ok(())
        }
        Command::Report { results, doc } => {
            let text = std::fs::read_to_string(&results)
                .with_context(|| format!("cannot read {}", results.display()))?;
            let results: Results = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a results file", results.display()))?;
            println!("{}", report::terminal(&results));
            if let Some(doc) = doc {
                let plot_dir = doc
                    .parent()
                    .map(|p| p.join("benchmarks"))
                    .unwrap_or_else(|| PathBuf::from("benchmarks"));
                let plots = report::write_plots(&results, &plot_dir)?;
                report::update_doc(&doc, &report::markdown(&results, "benchmarks/", &plots))?;
            }
            Ok(())
        }
        Command::Run(args) => run_one(args).await,
        Command::Soak(args) => {
            let report = soak::run(soak::Options {
                server_bin: args.server_bin,
                duration: Duration::from_secs_f64(args.minutes * 60.0),
                users: args.users as usize,
                rate: args.rate,
                reconnect_every: Duration::from_secs(args.reconnect_every),
                churn: args.churn as usize,
                warm_up: args.warm_up.map(Duration::from_secs),
                max_growth_mib: args.max_growth_mib,
                out_dir: args.out,
            })
            .await?;
            println!("{}", report.summary());
            let failures = report.failures();
            anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
            Ok(())
        }
    }
}

async fn run_one(args: RunArgs) -> anyhow::Result<()> {
    let addr = tokio::net::lookup_host(&args.server)
        .await
        .with_context(|| format!("cannot resolve {}", args.server))?
        .next()
        .with_context(|| format!("{} has no address", args.server))?;
    let users = match args.workload {
        Workload::Connections => args.connections,
        Workload::Files => 2 * args.transfers,
        Workload::Backlog => 5,
        _ => args.users,
    };
    let identities = vcom::Identities::generate(users.max(2)).await?;
    let vcom = Arc::new(
        vcom::Vcom::new(
            "server",
            addr,
            &args.pin,
            identities,
            args.admin_socket.clone(),
            String::new(),
        )
        .with_password(args.password.clone()),
    );
    if args.workload == Workload::Group && args.admin_socket.is_none() {
        anyhow::bail!("the group workload creates its group through --admin-socket");
    }
    let plan = Plan {
        users: args.users,
        warm_up: Duration::from_secs(2),
        window: Duration::from_secs(args.seconds.max(1)),
        backlog: args.backlog,
        file_size: args.file_mib.max(1) << 20,
        login_concurrency: 1000,
    };
    let process = ServerProcess(args.server_pid);
    let protocol: Arc<dyn Protocol> = vcom.clone();
    let figures = match args.workload {
        Workload::Connections => {
            workloads::connections(protocol, process, args.connections, plan.login_concurrency)
                .await?
        }
        Workload::Direct => workloads::direct(protocol, process, &plan, args.rate).await?,
        Workload::Group => workloads::group(protocol, process, &plan).await?,
        Workload::Backlog => workloads::backlog(protocol, process, &plan, args.senders).await?,
        Workload::Files => workloads::files(vcom, process, &plan, args.transfers).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures.metrics)?);
    } else {
        let row = Row {
            workload: args.workload.name().to_owned(),
            case: args.server.clone(),
            target: "server".to_owned(),
            run: 1,
            outcome: Outcome::Measured {
                metrics: figures.metrics,
                latency: figures.latency,
            },
        };
        let results = Results {
            machine: suite::machine(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started: String::new(),
            runs: 1,
            smoke: false,
            rows: vec![row],
            settings: Default::default(),
        };
        println!("{}", report::terminal(&results));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_max_or_a_bounded_positive_count() {
        assert!(matches!(parse_rate("max"), Ok(Rate::Max)));
        assert!(matches!(parse_rate("10000"), Ok(Rate::Steady(10_000))));
        for bad in ["0", "-5", "1000000000000", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
