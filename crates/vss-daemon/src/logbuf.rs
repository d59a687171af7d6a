//! Logging that never writes while vssd may have a filesystem frozen.
//!
//! vssd logs to stderr, which may be a file on any filesystem, including one in the snapshot
//! set. A write to a frozen filesystem sleeps uninterruptibly until the thaw, so the thread doing
//! FIFREEZE … FITHAW (and every other thread meanwhile) must not write logs then. While a
//! [`hold`] guard lives, log lines go to a bounded in-memory buffer; the guard's drop writes them
//! out after the thaw.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many holds are active (freezes may overlap across sessions only in principle: the host
/// lock allows one set at a time).
static HOLDS: AtomicUsize = AtomicUsize::new(0);
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// The most held log bytes; beyond it lines are dropped and counted.
const MAX_HELD: usize = 1 << 20;
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Holds log output in memory until dropped.
#[derive(Debug)]
pub struct Hold(());

/// Starts holding log output.
pub fn hold() -> Hold {
    HOLDS.fetch_add(1, Ordering::SeqCst);
    Hold(())
}

impl Drop for Hold {
    fn drop(&mut self) {
        if HOLDS.fetch_sub(1, Ordering::SeqCst) == 1 {
            flush();
        }
    }
}

fn flush() {
    let held = std::mem::take(&mut *BUFFER.lock().unwrap_or_else(|e| e.into_inner()));
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&held);
    let dropped = DROPPED.swap(0, Ordering::SeqCst);
    if dropped > 0 {
        let _ = writeln!(
            err,
            "vssd: {dropped} log bytes were dropped while filesystems were frozen"
        );
    }
}

/// The writer tracing uses: stderr, or the buffer while a hold is active.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeldStderr;

impl Write for HeldStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if HOLDS.load(Ordering::SeqCst) > 0 {
            let mut b = BUFFER.lock().unwrap_or_else(|e| e.into_inner());
            if b.len() + buf.len() <= MAX_HELD {
                b.extend_from_slice(buf);
            } else {
                DROPPED.fetch_add(buf.len(), Ordering::SeqCst);
            }
            Ok(buf.len())
        } else {
            std::io::stderr().write(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if HOLDS.load(Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            std::io::stderr().flush()
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for HeldStderr {
    type Writer = HeldStderr;
    fn make_writer(&'a self) -> Self::Writer {
        HeldStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_wait_for_the_release() {
        let h = hold();
        let mut w = HeldStderr;
        w.write_all(b"held line\n").unwrap();
        assert!(BUFFER.lock().unwrap().ends_with(b"held line\n"));
        drop(h);
        assert!(BUFFER.lock().unwrap().is_empty(), "written out at release");
    }
}
