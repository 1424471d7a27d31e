//! `vcom-server`: runs a vCom server (`serve`) and administers a running one (`admin`).
//!
//! The command line is a fixed contract (the README's contract): scripts outside this
//! project depend on the names, the ready line and the exit codes (0 ok, 1 runtime
//! failure, 2 bad usage or configuration).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use vcom_server::{AdminRequest, AdminResponse, ConfiguredServer, ServerConfig};

/// Run or administer a vCom chat server.
#[derive(Debug, Parser)]
#[command(
    name = "vcom-server",
    version,
    about = "The vCom chat server: serve, check a configuration, administer, back up and restore"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check a configuration, its TLS files, the data directory and the database, as
    /// `serve` would load them, and say exactly what is wrong, changing nothing. Exits 0
    /// when the server can start, 1 when something would stop it, 2 for an invalid
    /// configuration.
    Check(ServeArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Replace the database of a stopped server with a backup (`admin backup`). The
    /// backup is checked first; the database it replaces is kept beside it, renamed.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The stopped server's data directory.
        #[arg(long, default_value = "vcom-data")]
        data_dir: PathBuf,
    },
    /// Write shell completions (bash, zsh, fish) and man pages for vcom-server and vcom
    /// into DIR (`cargo xtask dist` packages them).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them (completions/ and man/ are made inside).
        dir: PathBuf,
    },
    /// Send a command to the server running on a data directory.
    Admin {
        /// The running server's data directory (holds admin.sock).
        #[arg(long, default_value = "vcom-data")]
        data_dir: PathBuf,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: AdminRequest,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print a complete vcom.toml: every key commented out at its default, with what it
    /// means, its range and its environment variable.
    Example,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file (default: DATA_DIR/vcom.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory: database, TLS certificate, admin socket (created if missing).
    #[arg(long, default_value = "vcom-data")]
    data_dir: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:7420 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// How log lines on stderr look: `text` for people, `json` (one object a line) for a
    /// log collector. The level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Readable lines (coloured on a terminal).
    Text,
    /// JSON lines: timestamp, level, target, message and fields.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vcom-server: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Check(args) => check(&args),
        Command::Config {
            action: ConfigAction::Example,
        } => {
            print!("{}", vcom_server::config::keys::example());
            Ok(())
        }
        Command::Restore { file, data_dir } => restore(&file, &data_dir),
        Command::GenerateAssets { dir } => generate_assets(&dir).map_err(Failure::Runtime),
        Command::Admin {
            data_dir,
            json,
            command,
        } => runtime.block_on(admin(&data_dir, json, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("vcom-server: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("vcom-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A failure and the exit code it deserves.
enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(anyhow::Error),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// The environment's variables that are valid UTF-8 (a `VCOM_` one that is not could not
/// hold a value anyway).
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The configuration in its layers: defaults, the file (`--config`, or
/// `DATA_DIR/vcom.toml` when it exists), the `VCOM_*` environment, the flags.
fn load_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let default_path = args.data_dir.join("vcom.toml");
    let path = match &args.config {
        Some(path) => Some(path.clone()),
        None => default_path.exists().then_some(default_path),
    };
    let vars = environment();
    for name in vcom_server::config::keys::unknown_env_vars(vars.clone()) {
        eprintln!("vcom-server: warning: {name} names no configuration key; ignored");
    }
    let mut config = ServerConfig::load(path.as_deref(), vars)?;
    config.data_dir = args.data_dir.clone();
    // Test-only: `cargo xtask e2e` counts packets through this switch.
    config.packet_tap = std::env::var_os("VCOM_PACKET_TAP").map(PathBuf::from);
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.validate()?;
    Ok(config)
}

/// The log filter: `RUST_LOG` when set, else the configuration's `log`.
fn log_filter(config: &ServerConfig) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&directives)
                .with_context(|| format!("invalid RUST_LOG {directives:?}"))
        }
        _ => tracing_subscriber::EnvFilter::try_new(&config.log)
            .with_context(|| format!("invalid config value `log`: {:?}", config.log)),
    }
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let config = load_config(&args).map_err(Failure::Usage)?;
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr closed: the log collector died, or
        // the output went to `head`) is dropped. Reporting that failure would print to
        // the same broken stderr, which panics, and take logins and SIGTERM with it.
        .log_internal_errors(false)
        .with_env_filter(log_filter(&config).map_err(Failure::Usage)?);
    match args.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    let server = ConfiguredServer::bind(config)
        .await
        .context("cannot start the server")?;
    let shutdown = server.shutdown_handle();
    // Signal handlers go in before the ready line: a supervisor may stop the server as
    // soon as it has read that line, and must get a graceful shutdown.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        shutdown.shutdown();
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "vcom-server ready addr={} cert-sha256={}",
        server.local_addr(),
        server.cert_sha256()
    )
    .and_then(|()| stdout.flush())
    .context("cannot write the ready line")?;
    drop(stdout);
    // Under systemd (Type=notify) the unit is started once this is said; elsewhere
    // (no NOTIFY_SOCKET) it does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let result = server.run().await.context("server failed");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    result?;
    Ok(())
}

/// `vcom-server generate-assets DIR`: completions and man pages from the clap
/// definitions of both programs, so they never drift from the real options.
fn generate_assets(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let completions = dir.join("completions");
    let man = dir.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    let programs = [
        ("vcom-server", Cli::command()),
        ("vcom", vcom_cli::client::Cli::command()),
    ];
    for (name, command) in programs {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut command = command.clone();
            clap_complete::generate_to(shell, &mut command, name, &completions)
                .with_context(|| format!("cannot write the {shell} completion of {name}"))?;
        }
        clap_mangen::generate_to(command.name(name), &man)
            .with_context(|| format!("cannot write the man pages of {name}"))?;
    }
    println!("wrote {} and {}", completions.display(), man.display());
    Ok(())
}

/// The request as sent: a backup's path made absolute from here (the server resolves
/// nothing against its own working directory).
fn request_for(command: AdminRequest) -> AdminRequest {
    match command {
        AdminRequest::Backup { file } => AdminRequest::Backup {
            file: std::path::absolute(&file).unwrap_or(file),
        },
        other => other,
    }
}

/// `vcom-server check`: the configuration as `serve` would load it, then what it points
/// at; one line per finding.
fn check(args: &ServeArgs) -> Result<(), Failure> {
    let config = load_config(args).map_err(Failure::Usage)?;
    log_filter(&config).map_err(Failure::Usage)?;
    println!("ok      configuration: valid");
    let findings = vcom_server::check::check(&config);
    for f in &findings {
        let verdict = if f.ok { "ok" } else { "error" };
        println!("{verdict:<7} {}: {}", f.subject, f.detail);
    }
    match findings.iter().filter(|f| !f.ok).count() {
        0 => Ok(()),
        n => Err(Failure::Runtime(anyhow::anyhow!(
            "{n} problem(s) would stop the server"
        ))),
    }
}

/// `vcom-server restore FILE --data-dir DIR`: only while no server runs on DIR.
fn restore(file: &Path, data_dir: &Path) -> Result<(), Failure> {
    let config = ServerConfig::new(data_dir);
    if std::os::unix::net::UnixStream::connect(config.admin_socket_path()).is_ok() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "a vcom-server is running with data directory {}: stop it before restoring",
            data_dir.display()
        )));
    }
    if !data_dir.is_dir() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no data directory {}",
            data_dir.display()
        )));
    }
    let report = vcom_server::admin::restore(file, data_dir)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot restore {}: {e}", file.display())))?;
    println!(
        "restored {} into {} (schema version {}, {} users)",
        file.display(),
        report.path.display(),
        report.schema_version,
        report.users
    );
    if let Some(previous) = report.previous {
        println!("the database it replaced is kept as {}", previous.display());
    }
    Ok(())
}

async fn admin(data_dir: &Path, json: bool, command: AdminRequest) -> Result<(), Failure> {
    let socket = data_dir.join("admin.sock");
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "no vcom-server is running with data directory {} (cannot connect to {}: {e})",
                data_dir.display(),
                socket.display()
            )
        })?;
    let (read, mut write) = stream.into_split();
    let mut line =
        serde_json::to_string(&request_for(command)).context("cannot encode the request")?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .context("cannot send the command")?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .context("cannot read the answer")?;
    let response: AdminResponse = serde_json::from_str(&answer)
        .with_context(|| format!("the server sent an unreadable answer: {answer:?}"))?;
    if json {
        // The typed answer: `{"ok":true,"reply":{"reply":"users","users":[...]}}`.
        println!("{}", answer.trim_end());
    } else if let Some(reply) = &response.reply {
        print!("{reply}");
    }
    if response.ok {
        Ok(())
    } else {
        let error = anyhow::anyhow!(
            "{}",
            response
                .error
                .as_deref()
                .unwrap_or("the server refused the command")
        );
        // A malformed argument (say a bad IP address) is bad usage: exit 2.
        Err(if response.usage_error {
            Failure::Usage(error)
        } else {
            Failure::Runtime(error)
        })
    }
}
