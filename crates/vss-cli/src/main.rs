//! `vss`: the command line of vss for Linux, vssadmin and vshadow in one tool.
//!
//! ```text
//! vss list writers|providers|shadows [--set ID] [--volume V]
//! vss create [--persistent] [--no-writers] [--provider NAME] [--type T] VOLUME... [-- COMMAND...]
//! vss delete --shadow ID | --set ID | --volume V (--oldest | --all)
//! vss expose ID PATH
//! vss unexpose ID|PATH
//! vss backup [--type T] [--component WRITER:PATH]... [--save-bcd FILE] [--save-dir DIR]
//!            VOLUME... -- COMMAND [ARG...]
//! vss restore --bcd FILE [--component WRITER:PATH]... [--mapping FROM=TO]... -- COMMAND [ARG...]
//! vss watch [--count N]
//! vss completions bash|zsh|fish|elvish|powershell
//! vss man [--dir DIR]
//! ```
//!
//! Every command prints human text, or with `--json` one JSON document on stdout (with an
//! `exitCode` member, and an `error` member when it failed). Exit codes: [`exit`].
//!
//! `vss` talks to vssd on `--socket`; when nothing answers there it runs the same engine in this
//! process (embedded mode, [`connection`]), so one command works on a machine where nothing is
//! running yet. docs/cli.md is the user's documentation.
//!
//! # Layout
//!
//! - `commands/`: one module per subcommand.
//! - [`sequence`]: the requester sequence `create` and `backup` share; [`select`]: which
//!   components they include; [`child`]: running the backup (and restore) program;
//!   [`saved`]: the documents a backup keeps for `restore`.
//! - [`connection`]: vssd or the embedded engine; [`raw`]: calls the requester library does not
//!   offer yet (vss.Admin, expose, delete by volume).
//! - [`output`]: human and JSON output; [`progress`]: the spinner; [`signals`]: SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

mod child;
mod commands;
mod connection;
mod exit;
mod inplace;
mod output;
mod progress;
mod raw;
mod saved;
mod select;
mod sequence;
mod signals;

use exit::CliError;
use output::Out;

/// Snapshots of live Linux systems, consistent with their applications: the Volume Shadow Copy
/// Service model (writers, providers, snapshot sets) for Linux.
#[derive(Debug, Parser)]
#[command(name = "vss", version, after_help = exit::HELP)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: TopCommand,
}

/// The subcommands: those of [`commands::Command`], which run through [`run`], plus `watch`
/// (its own loop, exit 0 on SIGINT/SIGTERM, JSON Lines) and the generators, which need no engine.
#[derive(Debug, Subcommand)]
enum TopCommand {
    #[command(flatten)]
    Engine(commands::Command),
    /// Live view of writers and snapshots: polls vssd every 500 ms and prints each change.
    Watch(commands::watch::WatchArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page of vss (roff) on stdout, or write every page into a directory.
    Man(commands::man::ManArgs),
}

impl TopCommand {
    /// See [`commands::Command::check`].
    fn check(&self) -> Result<(), CliError> {
        match self {
            TopCommand::Engine(c) => c.check(),
            _ => Ok(()),
        }
    }

    /// See [`commands::Command::run`]; the others were run by `main` already.
    async fn run(
        &self,
        engine: &connection::Engine,
        out: &mut Out,
        signals: &signals::Signals,
    ) -> Result<u8, CliError> {
        match self {
            TopCommand::Engine(c) => c.run(engine, out, signals).await,
            _ => Err(CliError::other("not a command of the engine")),
        }
    }
}

/// Options of every command. The directories and the lock file are those of the engine `vss`
/// runs in-process when vssd is not running; with vssd, vssd's own settings apply.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// vssd's requester socket.
    #[arg(
        long,
        global = true,
        env = "VSS_SOCKET",
        default_value = "/run/vss/vssd.sock",
        value_name = "PATH"
    )]
    pub socket: PathBuf,
    /// Where writers put their sockets (embedded mode).
    #[arg(
        long,
        global = true,
        env = "VSS_WRITERS_DIR",
        default_value = "/run/vss/writers",
        value_name = "DIR"
    )]
    pub writers_dir: PathBuf,
    /// The snapshot catalog's directory (embedded mode).
    #[arg(
        long,
        global = true,
        env = "VSS_STATE_DIR",
        default_value = "/var/lib/vss",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// Runtime directory: private mounts, the freeze journal (embedded mode).
    #[arg(
        long,
        global = true,
        env = "VSS_RUN_DIR",
        default_value = "/run/vss",
        value_name = "DIR"
    )]
    pub run_dir: PathBuf,
    /// The host-wide snapshot-set lock, shared with vssd (embedded mode).
    #[arg(
        long,
        global = true,
        env = "VSS_LOCK_FILE",
        default_value = "/run/vss/snapshot-set.lock",
        value_name = "FILE"
    )]
    pub lock_file: PathBuf,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSS_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        // The in-process engine holds log lines in memory while filesystems are frozen.
        .with_writer(vss_daemon::logbuf::HeldStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match &cli.command {
        TopCommand::Engine(_) => {}
        TopCommand::Watch(a) => return commands::watch::main(&cli.global, a),
        TopCommand::Completions(a) => return commands::completions::main(a),
        TopCommand::Man(a) => return commands::man::main(a),
    }
    let mut out = Out::new(cli.global.json);
    let result = match cli.command.check() {
        Err(e) => Err(e),
        Ok(()) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(&cli, &mut out)),
            Err(e) => Err(CliError::other(format!("cannot start the runtime: {e}"))),
        },
    };
    let code = match &result {
        Ok(code) => *code,
        Err(e) => e.exit,
    };
    let json = out.is_json();
    let mut doc = out.into_doc();
    if let Err(e) = &result {
        output::note(format!("error: {e}"));
        doc.insert("error".into(), e.to_json());
    }
    if json {
        doc.insert("exitCode".into(), json!(code));
        output::print_json(&doc);
    }
    ExitCode::from(code)
}

/// Reaches the engine, runs the command (interrupted by a signal), and stops the embedded
/// engine if one was started.
async fn run(cli: &Cli, out: &mut Out) -> Result<u8, CliError> {
    let signals = signals::Signals::install()
        .map_err(|e| CliError::other(format!("cannot handle signals: {e}")))?;
    let engine = tokio::select! {
        e = connection::Engine::open(&cli.global) => e?,
        sig = signals.interrupted() => return Err(interrupted(sig)),
    };
    out.set("embedded", json!(engine.is_embedded()));
    let result = tokio::select! {
        r = cli.command.run(&engine, out, &signals) => r,
        sig = signals.interrupted() => Err(interrupted(sig)),
    };
    engine.close().await;
    result
}

/// A command line clap refused (or `--help`, `--version`): clap's output and exit code, plus the
/// JSON document on stdout when `--json` was among the arguments.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let json = std::env::args_os()
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if informational || !json {
        e.exit();
    }
    let _ = e.print();
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let err = CliError::usage(first.trim_start_matches("error: ").trim_end_matches(':'));
    let mut doc = serde_json::Map::new();
    doc.insert("error".into(), err.to_json());
    doc.insert("exitCode".into(), json!(exit::USAGE));
    output::print_json(&doc);
    ExitCode::from(exit::USAGE)
}

fn interrupted(sig: i32) -> CliError {
    CliError::new(
        u8::try_from(128 + sig).unwrap_or(u8::MAX),
        format!("interrupted by signal {sig}; the session was released"),
    )
}
