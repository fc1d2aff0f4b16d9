//! The verification step: the image's size limit, then its digest, from the kernel's
//! fs-verity or computed in userspace as the plan says, judged against the command line's.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::digest::compute_fsverity_digest;
use crate::plan::{self, VerifyMode};
use crate::repo::ImageFile;
use crate::verdict::{Evidence, Verified, judge};
use crate::verity::{MeasureError, Measurement, measure};

/// Why the image was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The image's digest is not the one the command line names.
    #[error(
        "image {path} has digest {found}, but the command line asks for {expected}: the image is corrupt or was replaced; refusing to mount it"
    )]
    Mismatch {
        /// Image path.
        path: PathBuf,
        /// From the command line.
        expected: String,
        /// Measured or computed.
        found: String,
    },
    /// Secure mode and the image has no fs-verity.
    #[error(
        "image {path} has no fs-verity, and the composefs= argument is secure (no '?'): enable fs-verity on the repository (a filesystem with verity support, e.g. ext4 -O verity), or boot with composefs=?<digest> to accept an unverified image"
    )]
    NoVerity {
        /// Image path.
        path: PathBuf,
    },
    /// The image is larger than `[image] max-size`.
    #[error(
        "image {path} is {size} bytes, more than [image] max-size = {max}: a composefs image holds only metadata; refusing it (raise max-size in the config if this image is real)"
    )]
    TooLarge {
        /// Image path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Measuring failed.
    #[error("measuring {path}: {source}")]
    Measure {
        /// Image path.
        path: PathBuf,
        /// The cause.
        source: MeasureError,
    },
    /// Reading the image to compute its digest failed.
    #[error("reading {path} to compute its fs-verity digest: {source}")]
    Read {
        /// Image path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The image, its digest checked as the plan says.
pub struct VerifiedImage {
    pub(crate) file: ImageFile,
    pub(crate) verified: Verified,
}

/// Log a progress line every this many bytes of a digest computed in userspace.
const PROGRESS_STEP: u64 = 128 << 20;

/// Checks `file` as `how` says.
#[inline(always)]
pub fn verify(file: ImageFile, how: &plan::Verify) -> Result<VerifiedImage, VerifyError> {
    let (path, expected) = (&how.path, &how.expected);
    let size = file.size();
    if size > how.max_size {
        return Err(VerifyError::TooLarge {
            path: path.clone(),
            size,
            max: how.max_size,
        });
    }
    let measured = measure(file.as_fd()).map_err(|source| VerifyError::Measure {
        path: path.clone(),
        source,
    })?;
    let evidence = match (measured, how.mode) {
        (Measurement::Digest(d), _) => Evidence::Kernel(d),
        (Measurement::NoVerity, VerifyMode::KernelRequired) => {
            return Err(VerifyError::NoVerity { path: path.clone() });
        }
        (Measurement::NoVerity, VerifyMode::KernelIfPresent) => Evidence::Unchecked,
        (Measurement::NoVerity, VerifyMode::KernelOrComputed) => {
            let mut reader = ProgressReader {
                fd: file.as_fd(),
                offset: 0,
                size,
                next_report: PROGRESS_STEP,
                path,
            };
            let d =
                compute_fsverity_digest(expected.algorithm(), &mut reader).map_err(|source| {
                    VerifyError::Read {
                        path: path.clone(),
                        source,
                    }
                })?;
            Evidence::Computed(d)
        }
    };
    let verified = judge(expected, evidence).map_err(|m| VerifyError::Mismatch {
        path: path.clone(),
        expected: format!("{}:{expected}", expected.algorithm()),
        found: format!("{}:{}", m.found.algorithm(), m.found),
    })?;
    match verified {
        Verified::ByKernel | Verified::ByComputation => log::info!(
            "image digest {}:{expected} matches ({})",
            expected.algorithm(),
            if verified == Verified::ByKernel {
                "kernel fs-verity"
            } else {
                "computed"
            }
        ),
        Verified::NotChecked => log::warn!(
            "image {} has no fs-verity and check-digest = false: its content is not checked",
            path.display()
        ),
    }
    Ok(VerifiedImage { file, verified })
}

/// Reads a file with `pread` from offset 0, leaving the fd's position alone, and logs
/// progress every [`PROGRESS_STEP`] bytes: a large image takes seconds to hash.
struct ProgressReader<'a> {
    fd: BorrowedFd<'a>,
    offset: u64,
    size: u64,
    next_report: u64,
    path: &'a Path,
}

impl std::io::Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = rustix::io::pread(self.fd, buf, self.offset)?;
        self.offset += n as u64;
        if self.offset >= self.next_report && self.offset < self.size {
            log::info!(
                "computing the fs-verity digest of {}: {} of {} MiB",
                self.path.display(),
                self.offset >> 20,
                self.size >> 20
            );
            self.next_report = self.offset.saturating_add(PROGRESS_STEP);
        }
        Ok(n)
    }
}
