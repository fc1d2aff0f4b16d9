//! `FS_IOC_MEASURE_VERITY`: ask the kernel for a file's fs-verity digest.
//!
//! The kernel fills `struct fsverity_digest { __u16 digest_algorithm; __u16 digest_size;
//! __u8 digest[]; }`; we pass a header followed by room for the largest digest (SHA-512).

use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, opcode};

use crate::digest::{Algorithm, Digest};

/// `struct fsverity_digest` header as the kernel declares it (the size in the opcode).
#[repr(C)]
struct FsverityDigestHeader {
    digest_algorithm: u16,
    digest_size: u16,
}
static_assertions::assert_eq_size!(FsverityDigestHeader, [u8; 4]);

/// The header plus room for a SHA-512 digest.
#[repr(C)]
struct FsverityDigestBuffer {
    header: FsverityDigestHeader,
    digest: [u8; 64],
}
static_assertions::assert_eq_size!(FsverityDigestBuffer, [u8; 68]);
static_assertions::const_assert_eq!(std::mem::offset_of!(FsverityDigestBuffer, digest), 4);

/// `FS_IOC_MEASURE_VERITY = _IOWR('f', 134, struct fsverity_digest)`.
const FS_IOC_MEASURE_VERITY: Opcode = opcode::read_write::<FsverityDigestHeader>(b'f', 134);
static_assertions::const_assert_eq!(FS_IOC_MEASURE_VERITY, 0xc004_6686);

/// What the kernel says about a file's fs-verity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measurement {
    /// The file has fs-verity with this digest.
    Digest(Digest),
    /// The file has no fs-verity (ENODATA), or its filesystem does not support it
    /// (ENOTTY / EOPNOTSUPP).
    NoVerity,
}

/// Why measuring failed in a way that is not simply "no verity".
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The ioctl failed with an unexpected error.
    #[error("FS_IOC_MEASURE_VERITY: {}", std::io::Error::from(*.0))]
    Ioctl(Errno),
    /// The kernel reported an algorithm we do not know.
    #[error("FS_IOC_MEASURE_VERITY reported unknown hash algorithm {0}")]
    UnknownAlgorithm(u16),
    /// The kernel reported a digest size that does not fit its algorithm.
    #[error("FS_IOC_MEASURE_VERITY reported a {size}-byte digest for {algorithm}")]
    BadSize {
        /// The algorithm reported.
        algorithm: Algorithm,
        /// The size reported.
        size: u16,
    },
}

struct MeasureVerity<'a> {
    buffer: &'a mut FsverityDigestBuffer,
}

// SAFETY: the opcode is `FS_IOC_MEASURE_VERITY`, whose argument is a pointer to a
// `struct fsverity_digest` whose `digest_size` says how many digest bytes follow; the
// buffer behind `as_ptr` holds the header and 64 bytes, and `digest_size` is set to 64
// before the call (see `measure`), so the kernel never writes past it.
unsafe impl Ioctl for MeasureVerity<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        FS_IOC_MEASURE_VERITY
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (self.buffer as *mut FsverityDigestBuffer).cast()
    }

    unsafe fn output_from_ptr(
        _out: IoctlOutput,
        _ptr: *mut std::ffi::c_void,
    ) -> rustix::io::Result<()> {
        Ok(())
    }
}

/// Measures the fs-verity digest of an open file.
pub fn measure(fd: BorrowedFd<'_>) -> Result<Measurement, MeasureError> {
    let mut buffer = FsverityDigestBuffer {
        header: FsverityDigestHeader {
            digest_algorithm: 0,
            digest_size: 64,
        },
        digest: [0; 64],
    };
    // SAFETY: see the `Ioctl` impl: the buffer is valid for the kernel's writes.
    let result = unsafe {
        rustix::ioctl::ioctl(
            fd,
            MeasureVerity {
                buffer: &mut buffer,
            },
        )
    };
    match result {
        Ok(()) => {}
        Err(Errno::NODATA | Errno::NOTTY | Errno::OPNOTSUPP) => return Ok(Measurement::NoVerity),
        Err(e) => return Err(MeasureError::Ioctl(e)),
    }
    let id = buffer.header.digest_algorithm;
    let algorithm = Algorithm::from_kernel_id(id).ok_or(MeasureError::UnknownAlgorithm(id))?;
    let size = buffer.header.digest_size;
    let bytes = buffer
        .digest
        .get(..usize::from(size))
        .ok_or(MeasureError::BadSize { algorithm, size })?;
    let digest =
        Digest::from_bytes(algorithm, bytes).ok_or(MeasureError::BadSize { algorithm, size })?;
    Ok(Measurement::Digest(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_without_verity_measures_as_none() {
        // This host's filesystems (and tmpfs) have no fs-verity on ordinary files.
        let file = std::fs::File::open("Cargo.toml").expect("open Cargo.toml");
        let m = measure(std::os::fd::AsFd::as_fd(&file)).expect("measure");
        assert_eq!(m, Measurement::NoVerity);
    }
}
