//! The kernel command line: split it as the kernel does and find the composefs selectors.
//!
//! Accepted forms (a `?` right after `=` means insecure):
//! `composefs=<hex>` (64 hex = sha256, 128 = sha512), `composefs=sha256:<hex>`,
//! `composefs=sha512:<hex>`, `composefs.digest=<v1|v2>-<sha256|sha512>-12:<hex>`.

use crate::digest::{Digest, DigestError};

/// One image the command line asks for, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSelector {
    /// The image's fs-verity digest.
    pub digest: Digest,
    /// `?` after `=`: the image need not carry kernel fs-verity.
    pub insecure: bool,
    /// The argument as written, for log lines.
    pub arg: String,
}

/// A composefs argument that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedArg {
    /// The argument as written.
    pub arg: String,
    /// Why it was rejected.
    pub reason: KargError,
}

/// Why a composefs argument is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KargError {
    /// `composefs=` with nothing after it.
    #[error("empty value")]
    Empty,
    /// The digest part is not a valid digest.
    #[error("bad digest: {0}")]
    Digest(#[from] DigestError),
    /// A prefix such as `md5:` or a version other than v1/v2, or a block size other than 12.
    #[error("unsupported form {0:?}: expected composefs=<hex>, composefs=sha256:<hex>, or composefs.digest=v1-sha256-12:<hex>")]
    Form(String),
}

/// What the command line says that concerns us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kargs {
    /// Usable selectors, in command-line order.
    pub selectors: Vec<ImageSelector>,
    /// Composefs arguments that were malformed, in command-line order.
    pub rejected: Vec<RejectedArg>,
    /// `systemd.volatile=state`: leave /var unmounted.
    pub volatile_state: bool,
}

/// Split a command line as the kernel does: whitespace separates, double quotes group
/// (no escapes; the quotes are removed), a lone `--` ends the arguments meant for the kernel.
pub fn split(cmdline: &str) -> Vec<String> {
    todo!()
}

/// Parse the command line into selectors.
pub fn parse(cmdline: &str) -> Kargs {
    todo!()
}
