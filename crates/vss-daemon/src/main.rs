//! `vssd`: the VSS coordinator daemon. See `vssd --help`, docs/vssd.md and docs/protocol.md.

use std::path::PathBuf;

use clap::Parser;
use vss_daemon::Config;
use vss_daemon::cli::Args;
use vss_daemon::config_file::{DEFAULT_PATH, FileConfig, GroupSpec, resolve_group};

fn main() {
    if let Err(e) = real_main() {
        eprintln!("vssd: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSSD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(vss_daemon::logbuf::HeldStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = effective_config(args.clone())?;
    if args.print_config {
        println!("{config:#?}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Register the handlers before anything else: a SIGTERM that arrives right after
        // READY=1 must end the sessions, not kill vssd with the default action.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        vss_daemon::run(config, shutdown).await
    })
}

/// Defaults, then the file, then environment and command line (clap merged those two).
fn effective_config(args: Args) -> anyhow::Result<Config> {
    let mut config = Config::system_default();
    let (path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    FileConfig::load(&path, explicit)
        .and_then(|f| f.apply(&mut config))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let set = |dst: &mut PathBuf, v: Option<PathBuf>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut config.socket, args.socket);
    set(&mut config.writers_dir, args.writers_dir);
    set(&mut config.state_dir, args.state_dir);
    set(&mut config.run_dir, args.run_dir);
    set(&mut config.lock_file, args.lock_file);
    for t in &args.timeouts {
        config
            .deadlines
            .set_from_spec(t)
            .map_err(|e| anyhow::anyhow!("--timeout {t}: {e}"))?;
    }
    if let Some(g) = args.socket_group {
        let spec = g.parse().map(GroupSpec::Id).unwrap_or(GroupSpec::Name(g));
        config.socket_group =
            Some(resolve_group(&spec).map_err(|e| anyhow::anyhow!("--socket-group: {e}"))?);
    }
    if !args.writer_uids.is_empty() {
        config.writer_uids = args.writer_uids;
    }
    if let Some(ms) = args.commit_window_ms {
        config.commit_window = std::time::Duration::from_millis(ms);
    }
    if args.freeze_guard.is_some() {
        config.guard_binary = args.freeze_guard;
    }
    if args.exec_command.is_some() {
        config.exec_command = args.exec_command;
    }
    if let Some(ms) = args.exec_timeout_ms {
        config.exec_timeout = std::time::Duration::from_millis(ms);
    }
    if config.commit_window.is_zero() {
        anyhow::bail!("the commit window must be longer than 0 ms");
    }
    Ok(config)
}
