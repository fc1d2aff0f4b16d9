//! Logging: every line to the kernel log as `cfs-setup-root[pid]: ...` (kernlog on
//! /dev/kmsg), warnings and errors also to stderr so a unit's journal and a person at a
//! console see them. Without /dev/kmsg (or with `CFS_SETUP_ROOT_LOG=stderr`) everything
//! goes to stderr.
//!
//! The kernel rate-limits what userspace writes to /dev/kmsg (unless booted with
//! `printk.devkmsg=on`): 10 lines per 5 s for each open file, the rest silently dropped. A
//! successful boot logs about 15 lines, so the file is opened afresh every 10 lines.
//!
//! The kernel also refuses (EINVAL) a record longer than about 1 KiB, and kernlog ignores the
//! error: a long line (a sha512 mismatch names two 128-digit digests and a path) is split
//! into pieces of at most [`KMSG_PIECE`] bytes, each after the first marked `(continued)`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The name every log line carries.
pub const TAG: &str = "cfs-setup-root";

/// Lines one open of /dev/kmsg may write before the kernel starts dropping them
/// (`DEFAULT_RATELIMIT_BURST`).
const KMSG_BURST: u32 = 10;

/// The longest message written as one kernel-log record, in bytes (the kernel takes 976 or
/// more with our `<N>cfs-setup-root[pid]: ` prefix; this leaves room).
pub const KMSG_PIECE: usize = 800;

/// Splits `text` into pieces of at most `max` bytes, at character boundaries (a piece of one
/// wide character may exceed a tiny `max`); the pieces joined give `text` back.
pub fn split_for_kmsg(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // One character longer than `max`: take it whole.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// An open /dev/kmsg and how many lines went through it.
struct Kmsg {
    log: kernlog::KernelLog,
    lines: u32,
}

impl Kmsg {
    fn open() -> Option<Kmsg> {
        kernlog::KernelLog::with_level(LevelFilter::Info)
            .ok()
            .map(|log| Kmsg { log, lines: 0 })
    }
}

struct Logger {
    kmsg: Option<Mutex<Kmsg>>,
}

/// Set by [`kernel_log_off`]: everything goes to stderr.
static KERNEL_LOG_OFF: AtomicBool = AtomicBool::new(false);

/// From now on, nothing is written to the kernel log, every line to stderr (`--dry-run`,
/// which must leave the system as it was, the kernel log included).
pub fn kernel_log_off() {
    KERNEL_LOG_OFF.store(true, Ordering::Relaxed);
}

impl Logger {
    /// Writes to the kernel log; false when there is none.
    fn to_kmsg(&self, record: &Record<'_>) -> bool {
        let Some(kmsg) = &self.kmsg else {
            return false;
        };
        if KERNEL_LOG_OFF.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(mut kmsg) = kmsg.lock() else {
            return false;
        };
        let text = record.args().to_string();
        for (i, piece) in split_for_kmsg(&text, KMSG_PIECE).into_iter().enumerate() {
            if kmsg.lines >= KMSG_BURST {
                // A fresh open has a fresh rate-limit budget. Should the open fail, keep going
                // on the old file: a dropped line beats none.
                if let Some(fresh) = Kmsg::open() {
                    *kmsg = fresh;
                }
            }
            let continued = if i == 0 { "" } else { "(continued) " };
            kmsg.log.log(
                &Record::builder()
                    .args(format_args!("{continued}{piece}"))
                    .level(record.level())
                    .target(TAG)
                    .build(),
            );
            kmsg.lines = kmsg.lines.saturating_add(1);
        }
        true
    }
}

impl Log for Logger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        if !self.to_kmsg(record) || record.level() <= Level::Warn {
            eprintln!("{TAG}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. Call once, first thing.
pub fn init() {
    let stderr_only = std::env::var("CFS_SETUP_ROOT_LOG").is_ok_and(|v| v == "stderr");
    let kmsg = if stderr_only { None } else { Kmsg::open() };
    let logger = Logger {
        kmsg: kmsg.map(Mutex::new),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_split_losslessly_at_char_boundaries() {
        // The 'é' straddles byte 800: the first piece must stop before it.
        let line = format!("error: {}é{}", "a".repeat(792), "b".repeat(1500));
        let pieces = split_for_kmsg(&line, KMSG_PIECE);
        assert_eq!(pieces.concat(), line);
        assert!(pieces.iter().all(|p| p.len() <= KMSG_PIECE), "{pieces:?}");
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].len(), 799);
        assert!(pieces[1].starts_with('é'));
        assert!(pieces[0].starts_with("error: "));
        assert_eq!(split_for_kmsg("short", KMSG_PIECE), ["short"]);
        assert_eq!(split_for_kmsg("", KMSG_PIECE), [""]);
        // A character wider than the limit is still taken whole, never cut.
        assert_eq!(split_for_kmsg("ééé", 1), ["é", "é", "é"]);
    }
}
