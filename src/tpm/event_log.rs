//! The userspace TPM event log: one record per measurement, written the way systemd writes
//! `/run/log/systemd/tpm2-measure.log` (RFC 7464 JSON text sequence, the file locked with
//! `flock(LOCK_EX)` from before the extend until the record is written, the sticky bit set
//! while appending), so `systemd-pcrlock log` lists our event and checks it against the PCR.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{EVENT_LOG, Measurement};

/// The event log's path: `$SYSTEMD_MEASURE_LOG_USERSPACE` if set (systemd's override, for
/// tests), else [`EVENT_LOG`].
pub fn event_log_path() -> PathBuf {
    std::env::var_os("SYSTEMD_MEASURE_LOG_USERSPACE")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(EVENT_LOG), PathBuf::from)
}

/// Why the event log could not be written.
#[derive(Debug, thiserror::Error)]
#[error("TPM event log {path}: cannot {what}: {source}")]
pub struct LogError {
    path: PathBuf,
    what: &'static str,
    source: io::Error,
}

/// The userspace event log, open and locked (`flock(LOCK_EX)`, released on drop).
#[derive(Debug)]
pub struct EventLog {
    file: File,
    path: PathBuf,
}

impl EventLog {
    /// Opens (creating, mode 0600) and locks the log; refuses one a writer left
    /// half-written (the sticky bit still set), as systemd does.
    pub fn open(path: &Path) -> Result<EventLog, LogError> {
        let err = |what, source| LogError {
            path: path.to_path_buf(),
            what,
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err("create its directory", e))?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| err("open", e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| err("lock", e.into()))?;
        let meta = file.metadata().map_err(|e| err("stat", e))?;
        if !meta.file_type().is_file() {
            return Err(err(
                "use it",
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        if meta.permissions().mode() & 0o1000 != 0 {
            return Err(err(
                "append",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a writer left it half-written (sticky bit set)",
                ),
            ));
        }
        Ok(EventLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one record, with the sticky bit set while it is being written.
    pub fn append(mut self, record: &str) -> Result<(), LogError> {
        let path = self.path.clone();
        let err = |what, source| LogError {
            path: path.clone(),
            what,
            source,
        };
        let perms = |mode| std::fs::Permissions::from_mode(mode);
        self.file
            .set_permissions(perms(0o1600))
            .map_err(|e| err("mark it", e))?;
        use std::io::Seek;
        self.file
            .seek(io::SeekFrom::End(0))
            .map_err(|e| err("seek in", e))?;
        self.file
            .write_all(record.as_bytes())
            .map_err(|e| err("write", e))?;
        self.file.sync_data().map_err(|e| err("sync", e))?;
        self.file
            .set_permissions(perms(0o600))
            .map_err(|e| err("unmark it", e))?;
        Ok(())
    }
}

/// One record as systemd writes it: RS, one line of JSON, LF.
///
/// `{"pcr":15,"digests":[{"hashAlg":"sha256","digest":"<hex>"}],"content_type":"systemd",
/// "content":{"string":"composefs:<hex>","bootId":"<32 hex>","timestamp":<CLOCK_BOOTTIME µs>,
/// "eventType":"phase"}}` — `phase` is what `systemd-pcrextend` writes for a string, and
/// what makes `systemd-pcrlock` check the string against the digests.
pub fn event_record(m: &Measurement, boot_id: &str, timestamp_usec: u64) -> String {
    let digests: Vec<String> = m
        .digests
        .iter()
        .map(|d| {
            format!(
                "{{\"hashAlg\":{},\"digest\":\"{}\"}}",
                crate::json::string(&d.alg.to_string()),
                hex::encode(&d.digest)
            )
        })
        .collect();
    format!(
        "\x1e{{\"pcr\":{},\"digests\":[{}],\"content_type\":\"systemd\",\"content\":{{\"string\":{},\"bootId\":{},\"timestamp\":{},\"eventType\":\"phase\"}}}}\n",
        m.pcr,
        digests.join(","),
        crate::json::string(&m.event),
        crate::json::string(boot_id),
        timestamp_usec
    )
}

/// The boot ID as systemd prints an ID128: 32 lowercase hex digits, no dashes.
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_default()
}

/// `CLOCK_BOOTTIME` in microseconds.
pub(super) fn boottime_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{BankDigest, HashAlg};

    const HEX: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

    #[test]
    fn record_format() {
        let m = Measurement {
            pcr: 15,
            event: format!("composefs:{HEX}"),
            digests: vec![
                BankDigest {
                    alg: HashAlg::SHA1,
                    digest: vec![0x01; 20],
                },
                BankDigest {
                    alg: HashAlg::SHA256,
                    digest: vec![0xAB; 32],
                },
            ],
            logged: false,
        };
        let r = event_record(&m, "0123456789abcdef0123456789abcdef", 1234567);
        let want = format!(
            "\x1e{{\"pcr\":15,\"digests\":[{{\"hashAlg\":\"sha1\",\"digest\":\"{}\"}},{{\"hashAlg\":\"sha256\",\"digest\":\"{}\"}}],\"content_type\":\"systemd\",\"content\":{{\"string\":\"composefs:{HEX}\",\"bootId\":\"0123456789abcdef0123456789abcdef\",\"timestamp\":1234567,\"eventType\":\"phase\"}}}}\n",
            "01".repeat(20),
            "ab".repeat(32)
        );
        assert_eq!(r, want);
        let v: serde_json::Value = serde_json::from_str(&r[1..]).unwrap();
        assert_eq!(v["content"]["string"], format!("composefs:{HEX}"));
        assert_eq!(v["digests"][1]["hashAlg"], "sha256");
        assert_eq!(
            crate::json::string("a\"b\\c\n\u{1}"),
            r#""a\"b\\c\n\u0001""#
        );
    }

    #[test]
    fn event_log_file() {
        let dir = std::env::temp_dir().join(format!("cfs-tpm-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/tpm2-measure.log");
        EventLog::open(&path).unwrap().append("\x1e{}\n").unwrap();
        EventLog::open(&path)
            .unwrap()
            .append("\x1e{\"a\":1}\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "\x1e{}\n\x1e{\"a\":1}\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        // A log left with the sticky bit (a writer died mid-record) is not appended to.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1600)).unwrap();
        assert!(
            EventLog::open(&path)
                .unwrap_err()
                .to_string()
                .contains("half-written")
        );
        // The lock is exclusive: a second open waits. Check with a non-blocking try.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let held = EventLog::open(&path).unwrap();
        let other = File::open(&path).unwrap();
        assert!(
            rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        );
        drop(held);
        assert!(
            rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
