//! `vss-freeze-test-owner`: a minimal owner for the crate's tests. It exists because the tests
//! must kill the *freezing process* with SIGKILL and watch the guard thaw, and a test cannot
//! SIGKILL itself (nor safely fork a multi-threaded test process).
//!
//! `vss-freeze-test-owner --guard PATH --journal DIR --window-ms N MOUNTPOINT...` freezes
//! through [`vss_freeze::FreezeSet`], prints `frozen <guard-pid> <journal-file>`, then waits for
//! a line on stdin: `thaw` thaws and prints `thawed <guard_thawed>`; end of file drops the set
//! (which thaws too). A failure prints `error <message>` and exits 1.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use vss_freeze::{FreezeConfig, FreezeSet};

fn main() {
    let mut guard = None;
    let mut journal = None;
    let mut window = Duration::from_secs(10);
    let mut mounts = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--guard") => guard = args.next().map(PathBuf::from),
            Some("--journal") => journal = args.next().map(PathBuf::from),
            Some("--window-ms") => {
                let ms = args.next().and_then(|v| v.to_str()?.parse().ok());
                window = Duration::from_millis(ms.expect("--window-ms N"));
            }
            _ => mounts.push(PathBuf::from(arg)),
        }
    }
    let config = FreezeConfig {
        guard_binary: guard.unwrap_or_else(vss_freeze::default_guard_binary),
        journal_dir: journal.expect("--journal DIR is required"),
        window,
    };
    let set = match FreezeSet::freeze(&config, uuid::Uuid::new_v4(), &mounts) {
        Ok(s) => s,
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    };
    let journal_file = set.journal_file().map(|p| p.display().to_string());
    println!(
        "frozen {} {}",
        set.guard_pid().unwrap_or(0),
        journal_file.unwrap_or_default()
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
        if line.trim() == "thaw" {
            match set.thaw() {
                Ok(r) => println!("thawed {}", r.guard_thawed),
                Err(e) => {
                    println!("error {e}");
                    std::process::exit(1);
                }
            }
            return;
        }
        line.clear();
    }
}
