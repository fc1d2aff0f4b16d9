//! Logging: every line to the kernel log as `cfs-setup-root[pid]: ...` (kernlog on
//! /dev/kmsg), warnings and errors also to stderr so a unit's journal and a person at a
//! console see them. Without /dev/kmsg (or with `CFS_SETUP_ROOT_LOG=stderr`) everything
//! goes to stderr.
//!
//! The kernel rate-limits what userspace writes to /dev/kmsg (unless booted with
//! `printk.devkmsg=on`): 10 lines per 5 s for each open file, the rest silently dropped. A
//! successful boot logs about 15 lines, so the file is opened afresh every 10 lines.

use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The name every log line carries.
pub const TAG: &str = "cfs-setup-root";

/// Lines one open of /dev/kmsg may write before the kernel starts dropping them
/// (`DEFAULT_RATELIMIT_BURST`).
const KMSG_BURST: u32 = 10;

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

impl Logger {
    /// Writes to the kernel log; false when there is none.
    fn to_kmsg(&self, record: &Record<'_>) -> bool {
        let Some(kmsg) = &self.kmsg else {
            return false;
        };
        let Ok(mut kmsg) = kmsg.lock() else {
            return false;
        };
        if kmsg.lines >= KMSG_BURST {
            // A fresh open has a fresh rate-limit budget. Should the open fail, keep going on
            // the old file: a dropped line beats none.
            if let Some(fresh) = Kmsg::open() {
                *kmsg = fresh;
            }
        }
        let tagged = Record::builder()
            .args(*record.args())
            .level(record.level())
            .target(TAG)
            .build();
        kmsg.log.log(&tagged);
        kmsg.lines = kmsg.lines.saturating_add(1);
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
