//! TPM 2.0: extends PCR 15 with the booted image's identity and records the event where
//! systemd's tools read it.
//!
//! PCR 15 is "system identity" in the UAPI TPM PCR registry. The measured string is
//! `composefs:<hex>` (UTF-8, no NUL); every bank in which the PCR is allocated gets
//! `new = H(old || H(string))`, exactly what `systemd-pcrextend --pcr=15 composefs:<hex>`
//! would do. systemd 257's tool skips the measurement unless systemd-stub measured a UKI or
//! `SYSTEMD_FORCE_MEASURE=1` is set in its environment (systemd's own tests run
//! `SYSTEMD_FORCE_MEASURE=1 systemd-pcrextend`); rather than depend on that tool and its TPM
//! libraries being in every initramfs, and on that variable on BLS boots, we talk to
//! `/dev/tpmrm0` ourselves.
//!
//! Two commands, marshalled here (TPM 2.0 Library spec, Part 3), no TSS library:
//! - `TPM2_GetCapability(TPM_CAP_PCRS)`: which banks have the PCR allocated;
//! - `TPM2_PCR_Event` with a password session (`TPM_RS_PW`, empty auth): the TPM hashes the
//!   string in every bank and extends each, and returns the digests it extended with. This
//!   covers a SHA-1 bank (common on firmware that enables both) without a SHA-1 crate in the
//!   initramfs: the SHA-256/384/512 digests the TPM returns are checked against our own;
//!
//! The kernel's `/dev/tpmrm0` takes one whole command per `write` and returns one whole
//! response per `read`, and its resource manager keeps our use apart from everyone else's.
//!
//! The event record goes to `/run/log/systemd/tpm2-measure.log` the way systemd writes it
//! (RFC 7464 JSON text sequence, the file locked with `flock(LOCK_EX)` from before the
//! extend until the record is written, the sticky bit set while appending), so
//! `systemd-pcrlock log` lists it and checks it against the PCR.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

mod event_log;
pub use event_log::{EventLog, LogError, event_log_path, event_record};
use event_log::{boot_id, boottime_usec};

/// The TPM device, through the kernel's resource manager.
pub const DEVICE: &str = "/dev/tpmrm0";
/// The PCR the image is measured into ("system identity").
pub const IMAGE_PCR: u32 = 15;
/// systemd's userspace measurement log.
pub const EVENT_LOG: &str = "/run/log/systemd/tpm2-measure.log";

const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
const CC_PCR_EVENT: u32 = 0x0000_013C;
const CC_GET_CAPABILITY: u32 = 0x0000_017A;
const CAP_PCRS: u32 = 0x0000_0005;
/// The password authorization session handle.
const RS_PW: u32 = 0x4000_0009;
/// The kernel's TPM buffer size: no command or response is larger.
const MAX_RESPONSE: usize = 4096;
/// `TPM2B_EVENT` holds at most 1024 bytes.
const MAX_EVENT: usize = 1024;
/// How often a command answered with a "try again" warning is resent.
const RETRIES: u32 = 5;

/// A TPM hash algorithm (`TPM_ALG_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashAlg(pub u16);

impl HashAlg {
    /// SHA-1.
    pub const SHA1: HashAlg = HashAlg(0x0004);
    /// SHA-256.
    pub const SHA256: HashAlg = HashAlg(0x000B);
    /// SHA-384.
    pub const SHA384: HashAlg = HashAlg(0x000C);
    /// SHA-512.
    pub const SHA512: HashAlg = HashAlg(0x000D);
    /// SM3-256.
    pub const SM3_256: HashAlg = HashAlg(0x0012);
    /// SHA3-256.
    pub const SHA3_256: HashAlg = HashAlg(0x0027);
    /// SHA3-384.
    pub const SHA3_384: HashAlg = HashAlg(0x0028);
    /// SHA3-512.
    pub const SHA3_512: HashAlg = HashAlg(0x0029);

    /// The name systemd uses in its event log (`sha256`), when the algorithm has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            HashAlg::SHA1 => "sha1",
            HashAlg::SHA256 => "sha256",
            HashAlg::SHA384 => "sha384",
            HashAlg::SHA512 => "sha512",
            HashAlg::SM3_256 => "sm3_256",
            HashAlg::SHA3_256 => "sha3_256",
            HashAlg::SHA3_384 => "sha3_384",
            HashAlg::SHA3_512 => "sha3_512",
            _ => return None,
        })
    }

    /// The digest size in bytes, for the algorithms a PCR bank can use.
    pub fn digest_size(self) -> Option<usize> {
        Some(match self {
            HashAlg::SHA1 => 20,
            HashAlg::SHA256 | HashAlg::SM3_256 | HashAlg::SHA3_256 => 32,
            HashAlg::SHA384 | HashAlg::SHA3_384 => 48,
            HashAlg::SHA512 | HashAlg::SHA3_512 => 64,
            _ => return None,
        })
    }

    /// `H(data)` computed here, for the algorithms `sha2` implements.
    pub fn hash(self, data: &[u8]) -> Option<Vec<u8>> {
        Some(match self {
            HashAlg::SHA256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::SHA384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::SHA512 => sha2::Sha512::digest(data).to_vec(),
            _ => return None,
        })
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "alg-0x{:04x}", self.0),
        }
    }
}

/// The PCR value after extending `old` with `event`: `H(old || H(event))`, for the
/// algorithms `sha2` implements.
pub fn extended(alg: HashAlg, old: &[u8], event: &[u8]) -> Option<Vec<u8>> {
    let mut data = old.to_vec();
    data.extend(alg.hash(event)?);
    alg.hash(&data)
}

/// One PCR bank: its algorithm and which PCRs are allocated in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBank {
    /// The bank's hash algorithm.
    pub alg: HashAlg,
    /// `pcrSelect`: bit `n % 8` of byte `n / 8` is PCR `n`.
    pub select: Vec<u8>,
}

impl PcrBank {
    /// Whether PCR `pcr` is allocated in this bank.
    pub fn has(&self, pcr: u32) -> bool {
        let byte = usize::try_from(pcr / 8).unwrap_or(usize::MAX);
        self.select
            .get(byte)
            .is_some_and(|b| b & (1 << (pcr % 8)) != 0)
    }
}

/// A digest the TPM extended a bank with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankDigest {
    /// The bank.
    pub alg: HashAlg,
    /// `H(event)` in that bank.
    pub digest: Vec<u8>,
}

/// What was measured, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The PCR.
    pub pcr: u32,
    /// The measured string.
    pub event: String,
    /// One digest per bank the PCR is allocated in, in the TPM's order.
    pub digests: Vec<BankDigest>,
    /// Whether the event is in the event log (a log failure is only a warning, as in
    /// systemd).
    pub logged: bool,
}

/// A TPM response code (`TPM_RC`), with its name and what it means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

impl ResponseCode {
    /// The code without the handle/parameter/session number of format-one codes.
    fn base(self) -> u32 {
        let rc = self.0;
        if rc & 0xFFFF_F000 != 0 {
            // A layer above the TPM (resource manager, TSS): no TPM meaning.
            rc
        } else if rc & 0x080 != 0 {
            0x080 | (rc & 0x03F)
        } else {
            rc & 0xFFF
        }
    }

    /// Warnings that mean "not now, send it again".
    pub fn is_retry(self) -> bool {
        matches!(self.base(), 0x908 | 0x90A | 0x922)
    }

    /// The spec's name (`TPM_RC_LOCALITY`) and what an administrator can do about it, for
    /// the codes one can act on; the others are printed as their number (see [`advice`]).
    ///
    /// [`advice`]: ResponseCode::advice
    fn known(self) -> Option<(&'static str, &'static str)> {
        const AUTH: &str = "PCR 15 has an authorization value or policy set; cfs-setup-root extends with an empty password";
        const BUSY: &str = "the TPM stayed busy after retries: try again";
        const MEMORY: &str = "the TPM is out of memory: too many sessions or objects are loaded";
        const UPGRADE: &str =
            "the TPM is in a firmware upgrade: finish it, or power the machine off and on";
        Some(match self.base() {
            0x100 => (
                "TPM_RC_INITIALIZE",
                "the TPM was not started (TPM2_Startup): a firmware or kernel problem; check the firmware's TPM settings",
            ),
            0x101 => (
                "TPM_RC_FAILURE",
                "the TPM is in failure mode: power the machine off and on; if it persists, clear or update the TPM in the firmware setup",
            ),
            0x120 => (
                "TPM_RC_DISABLED",
                "the TPM is disabled: enable it in the firmware setup",
            ),
            0x12D => ("TPM_RC_UPGRADE", UPGRADE),
            0x130 => ("TPM_RC_REBOOT", UPGRADE),
            0x143 => (
                "TPM_RC_COMMAND_CODE",
                "the TPM does not implement this command: not a TPM 2.0 we can use",
            ),
            0x907 => (
                "TPM_RC_LOCALITY",
                "the TPM refuses to extend PCR 15 from this locality: the platform restricts the PCR",
            ),
            0x0A2 => ("TPM_RC_BAD_AUTH", AUTH),
            0x08E => ("TPM_RC_AUTH_FAIL", AUTH),
            0x124 => ("TPM_RC_AUTH_TYPE", AUTH),
            0x125 => ("TPM_RC_AUTH_MISSING", AUTH),
            0x08B => ("TPM_RC_HANDLE", "the TPM has no PCR 15 to extend"),
            0x127 => ("TPM_RC_PCR", "the TPM has no PCR 15 to extend"),
            0x084 => (
                "TPM_RC_VALUE",
                "the TPM refuses a value (in handle 1: it has no such PCR)",
            ),
            0x921 => (
                "TPM_RC_LOCKOUT",
                "the TPM is in dictionary-attack lockout: wait, or reset the lockout",
            ),
            0x908 => ("TPM_RC_YIELDED", BUSY),
            0x90A => ("TPM_RC_TESTING", BUSY),
            0x922 => ("TPM_RC_RETRY", BUSY),
            0x902 => ("TPM_RC_OBJECT_MEMORY", MEMORY),
            0x903 => ("TPM_RC_SESSION_MEMORY", MEMORY),
            0x904 => ("TPM_RC_MEMORY", MEMORY),
            _ => return None,
        })
    }

    /// What an administrator can do about it; for other codes, where to look the number up.
    pub fn advice(self) -> &'static str {
        match self.known() {
            Some((_, advice)) => advice,
            None if self.0 & 0xFFFF_F000 != 0 => {
                "an error from a software layer in front of the TPM"
            }
            None => {
                "look the number up in the TPM 2.0 Library specification, Part 2: Structures, \"Response Codes\" (TPM_RC)"
            }
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some((name, _)) => write!(f, "{name} (0x{:03x})", self.0)?,
            None => write!(f, "TPM response code 0x{:x}", self.0)?,
        }
        // Format-one codes say which handle, parameter or session they concern.
        if self.0 & 0xFFFF_F000 == 0 && self.0 & 0x080 != 0 {
            let n = (self.0 >> 8) & 0xF;
            if self.0 & 0x040 != 0 {
                write!(f, " in parameter {n}")?;
            } else if n & 0x8 != 0 {
                write!(f, " in session {}", n & 0x7)?;
            } else if n != 0 {
                write!(f, " in handle {n}")?;
            }
        }
        Ok(())
    }
}

/// Why the measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// There is no TPM device.
    #[error(
        "no TPM: {path} does not exist (no TPM 2.0, a TPM disabled in the firmware, or its driver (tpm_tis, tpm_crb) is not in the initramfs)"
    )]
    NoDevice {
        /// The device path.
        path: PathBuf,
    },
    /// The device exists but cannot be opened.
    #[error("cannot open the TPM {path}: {source}")]
    Open {
        /// The device path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Sending a command or reading its response failed.
    #[error("{command} through {path}: {source}")]
    Io {
        /// The command.
        command: &'static str,
        /// The device path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The TPM answered with an error.
    #[error("{command} failed: {code}: {}", code.advice())]
    Response {
        /// The command.
        command: &'static str,
        /// The response code.
        code: ResponseCode,
    },
    /// The response does not parse.
    #[error("{command}: malformed response from the TPM: {why}")]
    Malformed {
        /// The command.
        command: &'static str,
        /// What is wrong.
        why: String,
    },
    /// No bank has the PCR allocated.
    #[error(
        "the TPM has no PCR bank with PCR {pcr} allocated: allocate one (e.g. sha256) in the firmware setup or with tpm2_pcrallocate"
    )]
    NoBank {
        /// The PCR.
        pcr: u32,
    },
    /// The TPM extended a bank with a digest other than the string's.
    #[error(
        "the TPM extended the {alg} bank with {tpm}, but the {alg} digest of {event:?} is {ours}: the TPM is not trustworthy"
    )]
    DigestMismatch {
        /// The bank.
        alg: HashAlg,
        /// The measured string.
        event: String,
        /// What the TPM returned.
        tpm: String,
        /// What we computed.
        ours: String,
    },
    /// The event is longer than a `TPM2B_EVENT` holds.
    #[error("the event is {0} bytes; a TPM event holds at most 1024")]
    EventTooLong(usize),
}

/// Sends one command and returns the whole response.
pub trait Transport {
    /// Sends `command`, returns the response (header included).
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>>;
    /// The device's name, for messages.
    fn path(&self) -> &Path;
}

/// A TPM character device (`/dev/tpmrm0`).
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    /// Opens the device; a missing one is [`TpmError::NoDevice`].
    pub fn open(path: &Path) -> Result<Device, TpmError> {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
        {
            Ok(file) => Ok(Device {
                file,
                path: path.to_path_buf(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TpmError::NoDevice {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(TpmError::Open {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        // The driver takes the command in one write and answers in one read.
        let written = retry_eintr(|| self.file.write(command))?;
        if written != command.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("the driver took {written} of {} bytes", command.len()),
            ));
        }
        let mut buf = vec![0; MAX_RESPONSE];
        let n = retry_eintr(|| self.file.read(&mut buf))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A command being marshalled (big-endian, as every TPM 2.0 structure).
struct Command(Vec<u8>);

impl Command {
    fn new(tag: u16, code: u32) -> Command {
        let mut c = Command(Vec::with_capacity(64));
        c.u16(tag).u32(0).u32(code);
        c
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    /// A `TPM2B`: a 16-bit size, then the bytes (callers bound the size).
    fn sized(&mut self, bytes: &[u8]) -> &mut Self {
        self.u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
        self.0.extend_from_slice(bytes);
        self
    }
    /// The authorization area of one password session with an empty password.
    fn password_session(&mut self) -> &mut Self {
        // authorizationSize, sessionHandle, nonce (empty), sessionAttributes, hmac (empty).
        self.u32(4 + 2 + 1 + 2)
            .u32(RS_PW)
            .sized(&[])
            .u8(0)
            .sized(&[])
    }
    fn finish(mut self) -> Vec<u8> {
        let size = u32::try_from(self.0.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes();
        self.0[2..6].copy_from_slice(&size);
        self.0
    }
}

/// `TPM2_GetCapability(TPM_CAP_PCRS)`.
fn get_capability_pcrs() -> Vec<u8> {
    let mut c = Command::new(ST_NO_SESSIONS, CC_GET_CAPABILITY);
    c.u32(CAP_PCRS).u32(0).u32(1);
    c.finish()
}

/// `TPM2_PCR_Event(pcr, event)` with an empty password.
fn pcr_event_command(pcr: u32, event: &[u8]) -> Vec<u8> {
    let mut c = Command::new(ST_SESSIONS, CC_PCR_EVENT);
    c.u32(pcr).password_session().sized(event);
    c.finish()
}

/// Reads a response (big-endian).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    command: &'static str,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.malformed(format!(
                "{} bytes end after {n} more bytes were wanted at byte {}",
                self.buf.len(),
                self.pos
            )));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TpmError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, TpmError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn malformed(&self, why: String) -> TpmError {
        TpmError::Malformed {
            command: self.command,
            why,
        }
    }
    /// A count of elements, bounded by what the rest of the buffer could hold.
    fn count(&mut self, min_size: usize) -> Result<usize, TpmError> {
        let n = self.u32()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n.saturating_mul(min_size) > self.buf.len() - self.pos {
            return Err(self.malformed(format!("a count of {n} does not fit the response")));
        }
        Ok(n)
    }
    /// `TPML_PCR_SELECTION`.
    fn pcr_selections(&mut self) -> Result<Vec<PcrBank>, TpmError> {
        let n = self.count(3)?;
        let mut banks = Vec::with_capacity(n);
        for _ in 0..n {
            let alg = HashAlg(self.u16()?);
            let size = usize::from(self.u8()?);
            banks.push(PcrBank {
                alg,
                select: self.bytes(size)?.to_vec(),
            });
        }
        Ok(banks)
    }
    /// `TPML_DIGEST_VALUES` (`TPMT_HA` entries: sizes come from the algorithm).
    fn digest_values(&mut self) -> Result<Vec<BankDigest>, TpmError> {
        let n = self.count(2)?;
        let mut digests = Vec::with_capacity(n);
        for _ in 0..n {
            let alg = HashAlg(self.u16()?);
            let size = alg
                .digest_size()
                .ok_or_else(|| self.malformed(format!("unknown hash algorithm {alg}")))?;
            digests.push(BankDigest {
                alg,
                digest: self.bytes(size)?.to_vec(),
            });
        }
        Ok(digests)
    }
    fn end(&self) -> Result<(), TpmError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.malformed(format!("{} bytes left over", self.buf.len() - self.pos)))
        }
    }
}

/// Checks a response's header; returns a reader positioned after it.
fn response<'a>(
    buf: &'a [u8],
    command: &'static str,
    sessions: bool,
) -> Result<Reader<'a>, TpmError> {
    let mut r = Reader {
        buf,
        pos: 0,
        command,
    };
    let tag = r.u16()?;
    let size = r.u32()?;
    let rc = r.u32()?;
    if usize::try_from(size).ok() != Some(buf.len()) {
        return Err(r.malformed(format!(
            "the header says {size} bytes, {} arrived",
            buf.len()
        )));
    }
    if rc != 0 {
        return Err(TpmError::Response {
            command,
            code: ResponseCode(rc),
        });
    }
    let want = if sessions {
        ST_SESSIONS
    } else {
        ST_NO_SESSIONS
    };
    if tag != want {
        return Err(r.malformed(format!("tag 0x{tag:04x}, expected 0x{want:04x}")));
    }
    Ok(r)
}

/// Sends a command, resending it while the TPM answers "retry" (not executed).
fn transact(
    tpm: &mut dyn Transport,
    command: &'static str,
    bytes: &[u8],
) -> Result<Vec<u8>, TpmError> {
    let mut attempt = 0;
    loop {
        let resp = tpm.transact(bytes).map_err(|source| TpmError::Io {
            command,
            path: tpm.path().to_path_buf(),
            source,
        })?;
        let rc = resp
            .get(6..10)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match rc {
            Some(rc) if ResponseCode(rc).is_retry() && attempt < RETRIES => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
            }
            _ => return Ok(resp),
        }
    }
}

/// The TPM's PCR banks and which PCRs each has allocated.
pub fn pcr_banks(tpm: &mut dyn Transport) -> Result<Vec<PcrBank>, TpmError> {
    const CMD: &str = "TPM2_GetCapability(TPM_CAP_PCRS)";
    let resp = transact(tpm, CMD, &get_capability_pcrs())?;
    parse_pcr_banks(&resp)
}

fn parse_pcr_banks(resp: &[u8]) -> Result<Vec<PcrBank>, TpmError> {
    const CMD: &str = "TPM2_GetCapability(TPM_CAP_PCRS)";
    let mut r = response(resp, CMD, false)?;
    let _more_data = r.u8()?;
    let cap = r.u32()?;
    if cap != CAP_PCRS {
        return Err(r.malformed(format!("capability {cap}, expected {CAP_PCRS}")));
    }
    let banks = r.pcr_selections()?;
    r.end()?;
    Ok(banks)
}

/// Extends `pcr` in every bank with the hash of `event`; returns the TPM's digests.
pub fn pcr_event(
    tpm: &mut dyn Transport,
    pcr: u32,
    event: &[u8],
) -> Result<Vec<BankDigest>, TpmError> {
    if event.len() > MAX_EVENT {
        return Err(TpmError::EventTooLong(event.len()));
    }
    let resp = transact(tpm, "TPM2_PCR_Event", &pcr_event_command(pcr, event))?;
    parse_pcr_event(&resp)
}

fn parse_pcr_event(resp: &[u8]) -> Result<Vec<BankDigest>, TpmError> {
    let mut r = response(resp, "TPM2_PCR_Event", true)?;
    let param_size = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    let start = r.pos;
    let digests = r.digest_values()?;
    if r.pos - start != param_size {
        return Err(r.malformed(format!(
            "parameterSize {param_size}, the digests take {}",
            r.pos - start
        )));
    }
    // The password session's acknowledgement: empty nonce, attributes, empty hmac.
    let nonce = usize::from(r.u16()?);
    r.bytes(nonce)?;
    r.u8()?;
    let hmac = usize::from(r.u16()?);
    r.bytes(hmac)?;
    r.end()?;
    Ok(digests)
}

/// Extends `pcr` with `event` in every bank the PCR is allocated in, and checks the
/// digests the TPM used against ours where `sha2` can compute them.
pub fn measure(tpm: &mut dyn Transport, pcr: u32, event: &str) -> Result<Measurement, TpmError> {
    let banks: Vec<HashAlg> = pcr_banks(tpm)?
        .into_iter()
        .filter(|b| b.has(pcr))
        .map(|b| b.alg)
        .collect();
    if banks.is_empty() {
        return Err(TpmError::NoBank { pcr });
    }
    let returned = pcr_event(tpm, pcr, event.as_bytes())?;
    let mut digests = Vec::with_capacity(banks.len());
    for alg in banks {
        let Some(d) = returned.iter().find(|d| d.alg == alg) else {
            return Err(TpmError::Malformed {
                command: "TPM2_PCR_Event",
                why: format!("no digest for the {alg} bank, where PCR {pcr} is allocated"),
            });
        };
        // (No let-chain: rust-version 1.85.)
        let ours = alg.hash(event.as_bytes());
        if let Some(ours) = ours.filter(|ours| *ours != d.digest) {
            return Err(TpmError::DigestMismatch {
                alg,
                event: event.to_string(),
                tpm: hex::encode(&d.digest),
                ours: hex::encode(ours),
            });
        }
        digests.push(d.clone());
    }
    Ok(Measurement {
        pcr,
        event: event.to_string(),
        digests,
        logged: false,
    })
}

/// How long to wait for the TPM device when the firmware announces a TPM 2.0 but its
/// driver has not registered yet (a module udev is still loading).
pub const DEVICE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the firmware announces a TPM 2.0 (ACPI `TPM2` table) or the kernel already has
/// one (`/sys/class/tpm/tpm0`).
pub fn announced() -> bool {
    Path::new("/sys/firmware/acpi/tables/TPM2").exists()
        || Path::new("/sys/class/tpm/tpm0").exists()
}

/// Waits up to [`DEVICE_WAIT`] for the kernel's `device` (under `/dev`) when a TPM is
/// announced but the device is not there yet; returns whether it exists.
pub fn wait_for_device(device: &Path) -> bool {
    if device.exists() {
        return true;
    }
    if !device.starts_with("/dev") || !announced() {
        return false;
    }
    ::log::info!(
        "the firmware announces a TPM 2.0 but {} is missing: waiting up to {} s for its driver",
        device.display(),
        DEVICE_WAIT.as_secs()
    );
    let deadline = std::time::Instant::now() + DEVICE_WAIT;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if device.exists() {
            return true;
        }
    }
    false
}

/// Opens `device`, locks the event log at `log`, measures, and appends the record. A log
/// that cannot be written is a warning (as in systemd), not an error.
pub fn measure_and_log(
    device: &Path,
    log: &Path,
    pcr: u32,
    event: &str,
) -> Result<Measurement, TpmError> {
    let mut tpm = Device::open(device)?;
    measure_and_log_with(&mut tpm, log, pcr, event)
}

/// [`measure_and_log`] through an open transport.
pub fn measure_and_log_with(
    tpm: &mut dyn Transport,
    log: &Path,
    pcr: u32,
    event: &str,
) -> Result<Measurement, TpmError> {
    // Locked before the extend, so nobody comes between our extend and our record.
    let locked = match EventLog::open(log) {
        Ok(l) => Some(l),
        Err(e) => {
            ::log::warn!("{e}; the measurement goes on without a log record");
            None
        }
    };
    let mut m = measure(tpm, pcr, event)?;
    if let Some(l) = locked {
        let record = event_record(&m, &boot_id(), boottime_usec());
        match l.append(&record) {
            Ok(()) => m.logged = true,
            Err(e) => ::log::warn!("{e}"),
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_capability_bytes() {
        assert_eq!(
            get_capability_pcrs(),
            [
                0x80, 0x01, // TPM_ST_NO_SESSIONS
                0, 0, 0, 22, // commandSize
                0, 0, 0x01, 0x7A, // TPM_CC_GetCapability
                0, 0, 0, 5, // TPM_CAP_PCRS
                0, 0, 0, 0, // property
                0, 0, 0, 1, // propertyCount
            ]
        );
    }

    #[test]
    fn pcr_event_bytes() {
        let cmd = pcr_event_command(15, b"ab");
        assert_eq!(
            cmd,
            [
                0x80, 0x02, // TPM_ST_SESSIONS
                0, 0, 0, 31, // commandSize: 10 + 4 + 4 + 9 + 2 + 2
                0, 0, 0x01, 0x3C, // TPM_CC_PCR_Event
                0, 0, 0, 15, // pcrHandle
                0, 0, 0, 9, // authorizationSize
                0x40, 0, 0, 9, // TPM_RS_PW
                0, 0, // nonce
                0, // sessionAttributes
                0, 0, // hmac (empty password)
                0, 2, b'a', b'b', // eventData
            ]
        );
    }

    fn header(tag: u16, body: &[u8]) -> Vec<u8> {
        let mut v = tag.to_be_bytes().to_vec();
        v.extend(u32::try_from(10 + body.len()).unwrap().to_be_bytes());
        v.extend([0, 0, 0, 0]);
        v.extend(body);
        v
    }

    #[test]
    fn parses_pcr_banks() {
        let body = [
            0, // moreData
            0, 0, 0, 5, // TPM_CAP_PCRS
            0, 0, 0, 2, // two banks
            0, 4, 3, 0xFF, 0xFF, 0xFF, // sha1: all 24
            0, 0x0B, 3, 0xFF, 0x7F, 0xFF, // sha256: PCR 15 not allocated
        ];
        let banks = parse_pcr_banks(&header(0x8001, &body)).unwrap();
        assert_eq!(banks.len(), 2);
        assert_eq!(banks[0].alg, HashAlg::SHA1);
        assert!(banks[0].has(15) && banks[0].has(23) && !banks[0].has(24));
        assert!(!banks[1].has(15) && banks[1].has(14) && banks[1].has(16));
    }

    #[test]
    fn parses_pcr_event_response() {
        let d = [0xAB; 32];
        let mut body = vec![0, 0, 0, 4 + 2 + 32];
        body.extend([0, 0, 0, 1, 0, 0x0B]);
        body.extend(d);
        body.extend([0, 0, 1, 0, 0]); // nonce, continueSession, hmac
        let got = parse_pcr_event(&header(0x8002, &body)).unwrap();
        assert_eq!(
            got,
            [BankDigest {
                alg: HashAlg::SHA256,
                digest: d.to_vec()
            }]
        );
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let ok = {
            let mut body = vec![0, 0, 0, 38, 0, 0, 0, 1, 0, 0x0B];
            body.extend([0; 32]);
            body.extend([0, 0, 1, 0, 0]);
            header(0x8002, &body)
        };
        // Every truncation, and every single-byte corruption of the size fields.
        for n in 0..ok.len() {
            assert!(parse_pcr_event(&ok[..n]).is_err(), "truncated to {n}");
        }
        let mut huge = ok.clone();
        huge[13] = 0xFF; // digest count
        assert!(parse_pcr_event(&huge).is_err());
        let mut alg = ok.clone();
        alg[19] = 0x99; // unknown algorithm
        assert!(parse_pcr_event(&alg).is_err());
        let mut extra = ok.clone();
        extra.push(0);
        extra[5] += 1;
        assert!(parse_pcr_event(&extra).is_err());
        assert!(parse_pcr_banks(&[]).is_err());
    }

    #[test]
    fn response_codes() {
        let err = |rc: u32| {
            let mut v = header(0x8001, &[]);
            v[6..10].copy_from_slice(&rc.to_be_bytes());
            parse_pcr_banks(&v).unwrap_err().to_string()
        };
        assert_eq!(
            err(0x907),
            "TPM2_GetCapability(TPM_CAP_PCRS) failed: TPM_RC_LOCALITY (0x907): the TPM refuses to extend PCR 15 from this locality: the platform restricts the PCR"
        );
        assert!(err(0x120).contains(
            "TPM_RC_DISABLED (0x120): the TPM is disabled: enable it in the firmware setup"
        ));
        // Format one: TPM_RC_BAD_AUTH in session 1 (0x9A2 = 0x0A2 | session bit | 1 << 8).
        let bad_auth = err(0x9A2);
        assert!(
            bad_auth.contains("TPM_RC_BAD_AUTH (0x9a2) in session 1"),
            "{bad_auth}"
        );
        assert!(bad_auth.contains("authorization value"));
        // TPM_RC_VALUE in parameter 1.
        assert!(err(0x1C4).contains("TPM_RC_VALUE (0x1c4) in parameter 1"));
        // TPM_RC_HANDLE in handle 1.
        assert!(err(0x18B).contains("TPM_RC_HANDLE (0x18b) in handle 1"));
        assert!(err(0x0B_0143).contains("0xb0143"));
        // A code no administrator can act on: its number and where the spec lists it.
        let other = err(0x097);
        assert!(other.contains("TPM response code 0x97: "), "{other}");
        assert!(
            other.contains("Part 2: Structures, \"Response Codes\""),
            "{other}"
        );
        assert!(ResponseCode(0x922).is_retry() && !ResponseCode(0x101).is_retry());
    }

    /// A TPM in memory: sha256 and sha1 banks (the sha1 bank is extended with a made-up
    /// digest: enough to check we log what the TPM returns), PCR 15 in both.
    struct FakeTpm {
        pcr15: Vec<(HashAlg, Vec<u8>)>,
        answer: Option<u32>,
        busy: u32,
        sent: Vec<Vec<u8>>,
        path: PathBuf,
    }

    impl FakeTpm {
        fn new() -> FakeTpm {
            FakeTpm {
                pcr15: vec![(HashAlg::SHA1, vec![0; 20]), (HashAlg::SHA256, vec![0; 32])],
                answer: None,
                busy: 0,
                sent: Vec::new(),
                path: PathBuf::from("fake"),
            }
        }
    }

    impl Transport for FakeTpm {
        fn path(&self) -> &Path {
            &self.path
        }
        fn transact(&mut self, cmd: &[u8]) -> io::Result<Vec<u8>> {
            self.sent.push(cmd.to_vec());
            let rc_only = |rc: u32| {
                let mut v = vec![0x80, 0x01, 0, 0, 0, 10];
                v.extend(rc.to_be_bytes());
                v
            };
            if self.busy > 0 {
                self.busy -= 1;
                return Ok(rc_only(0x922));
            }
            if let Some(rc) = self.answer {
                return Ok(rc_only(rc));
            }
            let code = u32::from_be_bytes(cmd[6..10].try_into().unwrap());
            Ok(match code {
                CC_GET_CAPABILITY => header(
                    0x8001,
                    &[
                        0, 0, 0, 0, 5, 0, 0, 0, 3, //
                        0, 4, 3, 0xFF, 0xFF, 0xFF, // sha1
                        0, 0x0B, 3, 0xFF, 0xFF, 0xFF, // sha256
                        0, 0x0C, 3, 0, 0, 0, // sha384, nothing allocated
                    ],
                ),
                CC_PCR_EVENT => {
                    let len = usize::from(u16::from_be_bytes([cmd[27], cmd[28]]));
                    let data = &cmd[29..29 + len];
                    let sha1 = vec![0x5A; 20];
                    let sha256 = HashAlg::SHA256.hash(data).unwrap();
                    let sha384 = HashAlg::SHA384.hash(data).unwrap();
                    for (alg, v) in &mut self.pcr15 {
                        if *alg == HashAlg::SHA256 {
                            *v = extended(*alg, v, data).unwrap();
                        }
                    }
                    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 3];
                    for (alg, d) in [(4u16, &sha1), (0x0B, &sha256), (0x0C, &sha384)] {
                        body.extend(alg.to_be_bytes());
                        body.extend(d);
                    }
                    let size = u32::try_from(body.len() - 4).unwrap();
                    body[..4].copy_from_slice(&size.to_be_bytes());
                    body.extend([0, 0, 1, 0, 0]);
                    header(0x8002, &body)
                }
                _ => rc_only(0x143),
            })
        }
    }

    const HEX: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

    #[test]
    fn measures_every_allocated_bank() {
        let mut tpm = FakeTpm::new();
        tpm.busy = 2; // two "retry" answers first
        let event = format!("composefs:{HEX}");
        let m = measure(&mut tpm, 15, &event).unwrap();
        let algs: Vec<_> = m.digests.iter().map(|d| d.alg).collect();
        assert_eq!(algs, [HashAlg::SHA1, HashAlg::SHA256]);
        assert_eq!(m.digests[0].digest, vec![0x5A; 20]);
        assert_eq!(
            hex::encode(&m.digests[1].digest),
            hex::encode(sha2::Sha256::digest(event.as_bytes()))
        );
        // The extend reached the TPM once, after the retries.
        let events = tpm
            .sent
            .iter()
            .filter(|c| c[6..10] == CC_PCR_EVENT.to_be_bytes())
            .count();
        assert_eq!(events, 1);
        assert_eq!(tpm.sent.len(), 4);
    }

    #[test]
    fn expected_pcr_value() {
        // H(0^32 || H("composefs:<hex>")), computed step by step.
        let event = format!("composefs:{HEX}");
        let inner = sha2::Sha256::digest(event.as_bytes());
        let mut buf = [0u8; 64];
        buf[32..].copy_from_slice(&inner);
        let want = sha2::Sha256::digest(buf).to_vec();
        assert_eq!(
            extended(HashAlg::SHA256, &[0; 32], event.as_bytes()),
            Some(want)
        );
        // Known answer: sha256("abc") = ba7816bf...; extend of zeros with "abc".
        assert_eq!(
            hex::encode(HashAlg::SHA256.hash(b"abc").unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(extended(HashAlg::SHA1, &[0; 20], b"abc"), None);
        let mut tpm = FakeTpm::new();
        measure(&mut tpm, 15, &event).unwrap();
        assert_eq!(
            Some(tpm.pcr15[1].1.clone()),
            extended(HashAlg::SHA256, &[0; 32], event.as_bytes())
        );
    }

    #[test]
    fn tpm_errors_reach_the_caller() {
        let mut tpm = FakeTpm::new();
        tpm.answer = Some(0x101);
        let e = measure(&mut tpm, 15, "x").unwrap_err();
        assert!(matches!(
            e,
            TpmError::Response {
                code: ResponseCode(0x101),
                ..
            }
        ));
        assert!(e.to_string().contains("failure mode"));
        // PCR 16 is allocated nowhere in a TPM whose banks stop at 15.
        let mut tpm = FakeTpm::new();
        let e = measure(&mut tpm, 24, "x").unwrap_err();
        assert!(matches!(e, TpmError::NoBank { pcr: 24 }), "{e}");
        let mut tpm = FakeTpm::new();
        tpm.busy = RETRIES + 1;
        let e = measure(&mut tpm, 15, "x").unwrap_err();
        assert!(e.to_string().contains("TPM_RC_RETRY"), "{e}");
        assert!(matches!(
            pcr_event(&mut FakeTpm::new(), 15, &[0; 1025]),
            Err(TpmError::EventTooLong(1025))
        ));
    }

    #[test]
    fn missing_device() {
        let e = Device::open(Path::new("/nonexistent/tpmrm0")).unwrap_err();
        assert!(matches!(e, TpmError::NoDevice { .. }));
        assert!(e.to_string().contains("tpm_tis"));
    }
}
