//! A spinner for steps that can take long (DoSnapshotSet: flushing dirty data before a commit
//! can take seconds), shown only when both standard output and standard error are terminals and
//! `--json` was not given. It draws on standard error, which is then a terminal, never a file
//! on a filesystem that may be frozen meanwhile.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A running spinner; dropping it clears it.
#[derive(Debug)]
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts a spinner with `message`, or nothing when output is not for a person.
    pub fn start(json: bool, message: &str) -> Spinner {
        if json || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let pb = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            pb.set_style(style);
        }
        pb.set_message(message.to_owned());
        pb.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(pb))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(pb) = self.0.take() {
            pb.finish_and_clear();
        }
    }
}
