//! `vss completions SHELL`: the shell completion script, generated from the clap definition
//! (clap_complete), on stdout. Install it where the shell looks, for example
//! `vss completions bash > /usr/share/bash-completion/completions/vss`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `vss completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Prints the script.
pub fn main(args: &CompletionsArgs) -> ExitCode {
    let mut cmd = crate::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "vss", &mut buf);
    // A closed stdout (`| head`) is not an error worth a message.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&buf).and_then(|()| out.flush());
    ExitCode::SUCCESS
}
