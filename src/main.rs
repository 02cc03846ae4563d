//! The `mxguard` command line: parses arguments, loads the configuration,
//! and calls into the library. Exit codes follow sysexits where one fits.

use clap::{Parser, Subcommand};
use mxguard::config::Config;
use mxguard::spool::Spool;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// sysexits.h
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "mxguard",
    version,
    about = "SMTP gateway that refuses spam, forged senders and bots at SMTP time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (without --config: the embedded default, 127.0.0.1:2525)
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run every check as for a real session and print each result and the
    /// verdict (exit 0 accept, 1 reject, 75 tempfail)
    Check {
        #[arg(long)]
        client: std::net::IpAddr,
        #[arg(long)]
        helo: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        rcpt: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Test each configured DNSBL with its RFC 5782 test points
    DnsblHealth {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate configuration files
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect and manage the spool
    Queue {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Summary of the decisions in mxguard logs (plain or gzip; none:
    /// standard input)
    Report {
        logs: Vec<PathBuf>,
        /// Only from this time on (e.g. 2026-11-29 or 2026-11-29T06:00:00Z)
        #[arg(long)]
        since: Option<String>,
        /// Only before this time
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: mxguard::report::Format,
        /// Write the report to this file
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Translate a Postfix, sendmail or qmail configuration into mxguard TOML
    Import {
        #[arg(value_enum)]
        source: mxguard::import::Source,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run only the Postfix policy delegation server of [policy_server]
    PolicyServer {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make the running server read its configuration again (as SIGHUP)
    /// and print the outcome (exit 1 when the file is refused)
    Reload {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List, add and remove client bans
    Ban {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: BanCommand,
    },
    /// See the triplets greylisting holds back, let a sender through now
    Greylist {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: GreylistCommand,
    },
}

#[derive(Subcommand)]
enum GreylistCommand {
    /// Triplets waiting for their retry, longest waiting first
    List,
    /// Let a client's network through from now on (for greylist.allow_for)
    Pass {
        /// An address or a network, e.g. 192.0.2.10 or 192.0.2.0/24
        client: String,
    },
}

#[derive(Subcommand)]
enum BanCommand {
    /// Bans in force, soonest to end first
    List,
    /// Ban a client address (for `ban.ban_time` unless --for says)
    Add {
        ip: std::net::IpAddr,
        /// How long, e.g. "2h" or "3d"
        #[arg(long = "for")]
        length: Option<String>,
    },
    /// Lift a ban and forget the client's offences
    Remove { ip: std::net::IpAddr },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file; errors name file, line and key
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued messages
    List,
    /// Print one message with its envelope and delivery state
    Show { id: String },
    /// Attempt delivery of every queued message now
    Flush,
    /// Remove a message from the queue
    Delete { id: String },
}

fn load(config: Option<&Path>) -> Result<Config, ExitCode> {
    let loaded = match config {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    };
    loaded.map_err(|e| {
        eprintln!("mxguard: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Queue { config, command } => queue(config.as_deref(), command),
        Command::Ban { config, command } => ban(config.as_deref(), command),
        Command::Greylist { config, command } => greylist(config.as_deref(), command),
        Command::Reload { config } => reload(config.as_deref()),
        Command::Report {
            logs,
            since,
            until,
            format,
            output,
        } => report(mxguard::report::Options {
            logs,
            since,
            until,
            format,
            output,
        }),
        Command::Import { source, files } => import(source, &files),
        Command::PolicyServer { config } => policy_server(config.as_deref()),
        Command::Check {
            client,
            helo,
            from,
            rcpt,
            config,
        } => check(
            config.as_deref(),
            mxguard::dry_run::Trial {
                client,
                helo,
                from,
                rcpt,
            },
        ),
        Command::DnsblHealth { config } => dnsbl_health(config.as_deref()),
    };
    result.unwrap_or_else(|code| code)
}

fn report(options: mxguard::report::Options) -> Result<ExitCode, ExitCode> {
    mxguard::report::run(&options).map_err(|e| {
        eprintln!("mxguard: report: {e}");
        ExitCode::from(EX_NOINPUT)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn import(source: mxguard::import::Source, files: &[PathBuf]) -> Result<ExitCode, ExitCode> {
    let toml = mxguard::import::translate(source, files).map_err(|e| {
        eprintln!("mxguard: import: {e}");
        ExitCode::from(EX_DATAERR)
    })?;
    print!("{toml}");
    Ok(ExitCode::SUCCESS)
}

fn policy_server(config: Option<&Path>) -> Result<ExitCode, ExitCode> {
    run_server(config, mxguard::server::Mode::PolicyOnly)
}

fn serve(config: Option<&Path>) -> Result<ExitCode, ExitCode> {
    run_server(config, mxguard::server::Mode::Gateway)
}

fn run_server(path: Option<&Path>, mode: mxguard::server::Mode) -> Result<ExitCode, ExitCode> {
    let config = load(path)?;
    if mode == mxguard::server::Mode::PolicyOnly && config.policy_server.listen.is_none() {
        eprintln!("mxguard: policy_server.listen: needed by `mxguard policy-server`");
        return Err(ExitCode::from(EX_CONFIG));
    }
    // The blocking pool runs the spool's writes and fsyncs: 64 at a time
    // is more than a disk serves in parallel, and bounds the threads (and
    // their stacks and allocator arenas) a burst of clients leaves behind.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .map_err(|e| {
            eprintln!("mxguard: cannot start the runtime: {e}");
            ExitCode::from(EX_SOFTWARE)
        })?;
    runtime
        .block_on(mxguard::server::serve(
            config,
            mode,
            path.map(Path::to_path_buf),
        ))
        .map_err(|e| {
            eprintln!("mxguard: {e}");
            ExitCode::from(EX_UNAVAILABLE)
        })?;
    Ok(ExitCode::SUCCESS)
}

fn reload(config: Option<&Path>) -> Result<ExitCode, ExitCode> {
    let config = load(config)?;
    let socket = Spool::control_socket_in(&config.spool.dir);
    match mxguard::control::request(&socket, "reload") {
        Ok(Some(answer)) => {
            println!("{answer}");
            Ok(if answer.starts_with("ok") {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Ok(None) => {
            eprintln!("mxguard: no server is running on {}", socket.display());
            Err(ExitCode::from(EX_UNAVAILABLE))
        }
        Err(e) => {
            eprintln!("mxguard: {}: {e}", socket.display());
            Err(ExitCode::from(EX_UNAVAILABLE))
        }
    }
}

fn greylist(config: Option<&Path>, command: GreylistCommand) -> Result<ExitCode, ExitCode> {
    use mxguard::greylist_admin::Request;
    let config = std::sync::Arc::new(load(config)?);
    let request = match command {
        GreylistCommand::List => Request::List,
        GreylistCommand::Pass { client } => match mxguard::abuse::greylist::client_of(&client) {
            Some(ip) => Request::Pass {
                client: mxguard::net::canonical_ip(ip),
            },
            None => {
                eprintln!("mxguard: `{client}` is not an address or a network");
                return Err(ExitCode::from(2));
            }
        },
    };
    administer(mxguard::greylist_admin::run(config, request))
}

fn ban(config: Option<&Path>, command: BanCommand) -> Result<ExitCode, ExitCode> {
    use mxguard::ban_admin::Request;
    let config = std::sync::Arc::new(load(config)?);
    let request = match command {
        BanCommand::List => Request::List,
        BanCommand::Add { ip, length } => {
            let length = match length {
                Some(text) => mxguard::config::duration::parse(&text).map_err(|e| {
                    eprintln!("mxguard: --for: {e}");
                    ExitCode::from(2)
                })?,
                None => config.ban.ban_time.0,
            };
            if length.is_zero() || length > mxguard::abuse::bans::LONGEST_BAN {
                eprintln!("mxguard: --for: a ban lasts from 1s to 3650d");
                return Err(ExitCode::from(2));
            }
            Request::Add {
                client: mxguard::net::canonical_ip(ip),
                length,
            }
        }
        BanCommand::Remove { ip } => Request::Remove {
            client: mxguard::net::canonical_ip(ip),
        },
    };
    administer(mxguard::ban_admin::run(config, request))
}

/// Runs an administrator's request (ban, greylist) and prints its text;
/// its error exits with EX_TEMPFAIL.
fn administer<E: std::fmt::Display>(
    request: impl std::future::Future<Output = Result<String, E>>,
) -> Result<ExitCode, ExitCode> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("mxguard: cannot start the runtime: {e}");
        ExitCode::from(EX_SOFTWARE)
    })?;
    match runtime.block_on(request) {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("mxguard: {e}");
            Err(ExitCode::from(EX_TEMPFAIL))
        }
    }
}

/// The configuration, its policy and a runtime to run checks with.
fn policy_runtime(
    config: Option<&Path>,
) -> Result<
    (
        std::sync::Arc<Config>,
        mxguard::policy::Policy,
        tokio::runtime::Runtime,
    ),
    ExitCode,
> {
    let config = std::sync::Arc::new(load(config)?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("mxguard: cannot start the runtime: {e}");
        ExitCode::from(EX_SOFTWARE)
    })?;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("mxguard: {e}");
        ExitCode::from(EX_CONFIG)
    };
    let dns = mxguard::dns::Dns::new(&config.dns).map_err(|e| fail(&e))?;
    let log = std::sync::Arc::new(mxguard::log::Logger::discard());
    let state = std::sync::Arc::new(mxguard::state::State::scratch(&config, log.clone()));
    let health = std::sync::Arc::default();
    let policy =
        mxguard::policy::Policy::new(config.clone(), std::sync::Arc::new(dns), state, log, health)
            .map_err(|e| fail(&e))?;
    Ok((config, policy, runtime))
}

fn check(config: Option<&Path>, trial: mxguard::dry_run::Trial) -> Result<ExitCode, ExitCode> {
    use mxguard::dry_run::{CheckError, Verdict};
    let config = std::sync::Arc::new(load(config)?);
    // A running server judges with the state it holds now.
    let socket = Spool::control_socket_in(&config.spool.dir);
    let asked = mxguard::control::request(&socket, &trial.to_command());
    let (report, verdict) = match asked {
        Ok(Some(answer)) if answer.starts_with("ok\n") => {
            let report = format!("{}\n", &answer[3..]);
            let verdict = Verdict::of_report(&report).unwrap_or(Verdict::Tempfail);
            (report, verdict)
        }
        Ok(Some(answer)) if answer.starts_with("error ") => {
            eprintln!("mxguard: {}", &answer[6..]);
            return Err(ExitCode::from(2));
        }
        _ => {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| {
                eprintln!("mxguard: cannot start the runtime: {e}");
                ExitCode::from(EX_SOFTWARE)
            })?;
            runtime
                .block_on(mxguard::dry_run::run_here(config, &trial))
                .map_err(|e| {
                    eprintln!("mxguard: {e}");
                    ExitCode::from(match e {
                        CheckError::Trial(_) => 2,
                        CheckError::Setup(_) => EX_CONFIG,
                    })
                })?
        }
    };
    print!("{report}");
    Ok(ExitCode::from(match verdict {
        Verdict::Accept => 0,
        Verdict::Reject => 1,
        Verdict::Tempfail => EX_TEMPFAIL,
    }))
}

fn dnsbl_health(config: Option<&Path>) -> Result<ExitCode, ExitCode> {
    let (config, policy, runtime) = policy_runtime(config)?;
    let checks = policy.checks.clone();
    runtime.block_on(mxguard::dns::dnsbl::test_all(
        &checks.dns,
        &config,
        &checks.health,
        &checks.log,
    ));
    println!("{:<32} {:<9} reason", "zone", "health");
    let mut unusable = false;
    for zone in config.dnsbl.iter().chain(&config.rhsbl) {
        let health = checks.health.get(&zone.zone);
        unusable |= !health.usable();
        if let mxguard::dns::dnsbl::Health::Refused(refusal) = &health {
            eprintln!(
                "mxguard: {}: refused ({}): {}",
                zone.zone,
                refusal.name(),
                refusal.explanation()
            );
        }
        println!(
            "{:<32} {:<9} {}",
            zone.zone,
            health.label(),
            health.reason()
        );
    }
    Ok(if unusable {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn config_check(file: &Path) -> Result<ExitCode, ExitCode> {
    let config = std::sync::Arc::new(load(Some(file))?);
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("mxguard: {}: {e}", file.display());
        ExitCode::from(EX_CONFIG)
    };
    // Open everything the configuration names: list files, TLS, DNS.
    let dns = mxguard::dns::Dns::new(&config.dns).map_err(|e| fail(&e))?;
    let log = std::sync::Arc::new(mxguard::log::Logger::discard());
    let state = std::sync::Arc::new(mxguard::state::State::scratch(&config, log.clone()));
    let health = std::sync::Arc::default();
    mxguard::policy::Policy::new(config.clone(), std::sync::Arc::new(dns), state, log, health)
        .map_err(|e| fail(&e))?;
    if let Some(tls) = &config.tls {
        let tls = mxguard::tls::server::ServerTls::load(tls).map_err(|e| fail(&e))?;
        for warning in tls.warnings() {
            eprintln!("mxguard: {}: warning: {warning}", file.display());
        }
    }
    mxguard::tls::client::DownstreamTls::load(&config.downstream).map_err(|e| fail(&e))?;
    let warnings = [
        config.policy_server.warning(),
        config.metrics.warning(),
        config.public_resolver_warning(),
    ];
    for warning in warnings.into_iter().flatten() {
        eprintln!("mxguard: {}: warning: {warning}", file.display());
    }
    println!("{}: ok", file.display());
    Ok(ExitCode::SUCCESS)
}

fn queue(config: Option<&Path>, command: QueueCommand) -> Result<ExitCode, ExitCode> {
    use mxguard::queue_admin::{self, QueueError};
    let config = load(config)?;
    let spool = Spool::open(&config.spool.dir).map_err(|e| {
        eprintln!("mxguard: spool.dir: {e}");
        ExitCode::from(EX_NOINPUT)
    })?;
    let output = match command {
        QueueCommand::List => queue_admin::list(&spool).map(String::into_bytes),
        QueueCommand::Show { id } => queue_admin::show(&spool, &id),
        QueueCommand::Flush => queue_admin::flush(&spool).map(|s| format!("{s}\n").into_bytes()),
        QueueCommand::Delete { id } => {
            queue_admin::delete(&spool, &id).map(|s| format!("{s}\n").into_bytes())
        }
    };
    match output {
        Ok(bytes) => {
            let _ = std::io::stdout().write_all(&bytes);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("mxguard: {e}");
            let code = match e {
                QueueError::BadId(_) => EX_DATAERR,
                QueueError::Spool(mxguard::spool::SpoolError::NotFound(_)) => 1,
                _ => EX_UNAVAILABLE,
            };
            Err(ExitCode::from(code))
        }
    }
}
