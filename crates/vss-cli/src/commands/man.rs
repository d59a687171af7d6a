//! `vss man [--dir DIR]`: the roff man pages, generated from the clap definition (clap_mangen).
//!
//! Without `--dir`, the page of `vss` itself (section 1) goes to stdout: `vss man | man -l -`.
//! With `--dir`, `vss.1` and one page per subcommand are written into DIR, named as git names
//! its pages: `vss-list.1`, `vss-list-writers.1`, `vss-backup.1`, ... Hidden subcommands and
//! `help` have no page. vssd's page (`vssd.8`, from the same definition vssd parses) is written
//! too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory};

use crate::output;

/// `vss man [--dir DIR]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write vss.1 and one page per subcommand (vss-list.1, vss-backup.1, ...) into DIR
    /// (created if missing) instead of printing vss.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints or writes the pages.
pub fn main(args: &ManArgs) -> ExitCode {
    let mut cmd = crate::Cli::command();
    cmd.build();
    let result = match &args.dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf).map(|()| {
                // A closed stdout (`| head`) is not an error worth a message.
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf).and_then(|()| out.flush());
            })
        }
        Some(dir) => write_pages(&cmd, dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(format!("error: cannot write the man pages: {e}"));
            ExitCode::from(crate::exit::OTHER)
        }
    }
}

/// Writes the page of `cmd` (named `vss`) and of every visible subcommand, recursively.
fn write_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_page(cmd.clone(), "vss", dir)?;
    // vssd is a system daemon: section 8.
    let mut vssd = vss_daemon::cli::Args::command()
        .name("vssd")
        .version(env!("CARGO_PKG_VERSION"));
    vssd.build();
    let mut buf = Vec::new();
    clap_mangen::Man::new(vssd).section("8").render(&mut buf)?;
    std::fs::write(dir.join("vssd.8"), buf)
}

fn write_page(cmd: clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        // The page's NAME and SYNOPSIS read `vss-list`, like git's pages.
        let page = sub
            .clone()
            .name(sub_name.clone())
            .bin_name(sub_name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        write_page(page, &sub_name, dir)?;
    }
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.name(name.to_owned()))
        .section("1")
        .render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)
}
