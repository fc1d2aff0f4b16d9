//! fs-verity digests: the algorithm, the digest value, and the userspace computation.
//!
//! A composefs image is named by its fs-verity digest. The kernel measures it with
//! `FS_IOC_MEASURE_VERITY` when the file has fs-verity; when it has none (insecure mode,
//! or filesystems without verity) we compute the same value in userspace: a Merkle tree
//! over 4096-byte blocks, no salt, and the hash of the 256-byte `fsverity_descriptor`.

use std::fmt;

/// The fs-verity hash algorithm (block size is always 4096 bytes, "-12").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// fs-verity with SHA-256: 32-byte digests, 64 hex characters.
    Sha256,
    /// fs-verity with SHA-512: 64-byte digests, 128 hex characters.
    Sha512,
}

/// A parsed fs-verity digest of a known algorithm.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; 64],
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_hex())
    }
}
impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Algorithm {
    /// "sha256" or "sha512".
    pub fn name(self) -> &'static str {
        todo!()
    }
    /// Digest length in bytes (32 or 64).
    pub fn digest_len(self) -> usize {
        todo!()
    }
    /// The kernel's `FS_VERITY_HASH_ALG_*` number (1 = sha256, 2 = sha512).
    pub fn kernel_id(self) -> u16 {
        todo!()
    }
    /// From the kernel's number; `None` for unknown numbers.
    pub fn from_kernel_id(id: u16) -> Option<Self> {
        todo!()
    }
    /// From a hex length (64 -> sha256, 128 -> sha512).
    pub fn from_hex_len(len: usize) -> Option<Self> {
        todo!()
    }
    /// From "sha256" / "sha512".
    pub fn from_name(name: &str) -> Option<Self> {
        todo!()
    }
    /// From a repository `meta.json` algorithm string: "fsverity-sha256-12" / "fsverity-sha512-12".
    pub fn from_repository_name(name: &str) -> Option<Self> {
        todo!()
    }
}

/// Why a digest string was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Wrong number of hex characters for any (or the named) algorithm.
    #[error("{len} hex characters; a sha256 digest has 64, a sha512 digest 128")]
    BadLength {
        /// The length seen.
        len: usize,
    },
    /// Non-hex character.
    #[error("not hexadecimal: {0:?}")]
    NotHex(String),
}

impl Digest {
    /// Parse a hex digest whose algorithm follows from its length (64 / 128).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        todo!()
    }
    /// Parse a hex digest that must be of `algorithm`.
    pub fn from_hex_with(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        todo!()
    }
    /// From raw bytes; `None` if the length does not match the algorithm.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Option<Self> {
        todo!()
    }
    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// The digest bytes (32 or 64).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.digest_len()]
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Compute the fs-verity digest (4096-byte blocks, no salt) of everything `reader` yields.
/// Reads with large buffers; the hashing is the cost.
pub fn compute_fsverity_digest(
    algorithm: Algorithm,
    reader: &mut dyn std::io::Read,
) -> std::io::Result<Digest> {
    todo!()
}
