//! Logging: every line to the kernel log as `cfs-setup-root[pid]: ...` (kernlog on
//! /dev/kmsg), warnings and errors also to stderr so a unit's journal and a person at a
//! console see them. Without /dev/kmsg (or with `CFS_SETUP_ROOT_LOG=stderr`) everything
//! goes to stderr.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The name every log line carries.
pub const TAG: &str = "cfs-setup-root";

struct Logger {
    kmsg: Option<kernlog::KernelLog>,
}

impl Log for Logger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let to_stderr = match &self.kmsg {
            Some(kmsg) => {
                let tagged = Record::builder()
                    .args(*record.args())
                    .level(record.level())
                    .target(TAG)
                    .build();
                kmsg.log(&tagged);
                record.level() <= Level::Warn
            }
            None => true,
        };
        if to_stderr {
            eprintln!("{TAG}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. Call once, first thing.
pub fn init() {
    let stderr_only = std::env::var("CFS_SETUP_ROOT_LOG").is_ok_and(|v| v == "stderr");
    let kmsg = if stderr_only {
        None
    } else {
        kernlog::KernelLog::with_level(LevelFilter::Info).ok()
    };
    if log::set_boxed_logger(Box::new(Logger { kmsg })).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
