//! The two decisions verification rests on, as pure functions: does what was measured
//! prove the image the command line names, and must the composefs overlay then demand
//! fs-verity of every object (`verity=require`).
//!
//! Kept apart from the code that measures and mounts so that each can be tested on its own:
//! a mistake here would boot a wrong image or let an object without fs-verity through,
//! which no host test can see (this host has no fs-verity).

use crate::digest::Digest;
use crate::plan::OverlayVerity;

/// What verification measured of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The kernel's fs-verity digest of the image (`FS_IOC_MEASURE_VERITY`).
    Kernel(Digest),
    /// The fs-verity digest computed in userspace from the image's bytes.
    Computed(Digest),
    /// Nothing: insecure mode with `check-digest = false` and an image without fs-verity.
    Unchecked,
}

/// The image is what the command line names, and how we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// By the kernel's fs-verity digest: the image is protected by fs-verity from here on.
    ByKernel,
    /// By a digest computed in userspace (the image has no fs-verity).
    ByComputation,
    /// Not checked (insecure, `check-digest = false`).
    NotChecked,
}

/// The digest found differs from the one the command line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The digest found.
    pub found: Digest,
}

/// Judges the evidence against the digest on the command line. Any digest found must equal
/// it exactly (algorithm and bytes).
pub fn judge(expected: &Digest, evidence: Evidence) -> Result<Verified, Mismatch> {
    let (found, verified) = match evidence {
        Evidence::Kernel(found) => (found, Verified::ByKernel),
        Evidence::Computed(found) => (found, Verified::ByComputation),
        Evidence::Unchecked => return Ok(Verified::NotChecked),
    };
    if found.algorithm() == expected.algorithm() && found.as_bytes() == expected.as_bytes() {
        Ok(verified)
    } else {
        Err(Mismatch { found })
    }
}

/// Whether the composefs overlay gets `verity=require`: always in secure mode; in insecure
/// mode when the image itself turned out to have fs-verity (then its objects are expected to
/// have it too, and the kernel checks each against the digest the image records).
pub fn overlay_requires_verity(policy: OverlayVerity, verified: Verified) -> bool {
    match policy {
        OverlayVerity::Require => true,
        OverlayVerity::IfImageHasVerity => verified == Verified::ByKernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn d(hex_byte: &str, len: usize) -> Digest {
        Digest::from_hex(&hex_byte.repeat(len)).unwrap()
    }

    #[test]
    fn equal_digests_pass_with_their_source() {
        let a = d("ab", 32);
        assert_eq!(judge(&a, Evidence::Kernel(a)), Ok(Verified::ByKernel));
        assert_eq!(
            judge(&a, Evidence::Computed(a)),
            Ok(Verified::ByComputation)
        );
        assert_eq!(judge(&a, Evidence::Unchecked), Ok(Verified::NotChecked));
    }

    #[test]
    fn any_difference_is_a_mismatch() {
        let a = d("ab", 32);
        let mut bytes = a.as_bytes().to_vec();
        for i in [0, 15, 31] {
            bytes[i] ^= 1;
            let b = Digest::from_bytes(Algorithm::Sha256, &bytes).unwrap();
            bytes[i] ^= 1;
            assert_eq!(judge(&a, Evidence::Kernel(b)), Err(Mismatch { found: b }));
            assert_eq!(judge(&a, Evidence::Computed(b)), Err(Mismatch { found: b }));
        }
        // Same leading bytes, other algorithm: still a mismatch.
        let long = d("ab", 64);
        assert!(judge(&a, Evidence::Kernel(long)).is_err());
        assert!(judge(&long, Evidence::Kernel(a)).is_err());
    }

    #[test]
    fn verity_require_policy() {
        use OverlayVerity::*;
        for v in [
            Verified::ByKernel,
            Verified::ByComputation,
            Verified::NotChecked,
        ] {
            assert!(overlay_requires_verity(Require, v), "secure mode, {v:?}");
        }
        assert!(overlay_requires_verity(
            IfImageHasVerity,
            Verified::ByKernel
        ));
        assert!(!overlay_requires_verity(
            IfImageHasVerity,
            Verified::ByComputation
        ));
        assert!(!overlay_requires_verity(
            IfImageHasVerity,
            Verified::NotChecked
        ));
    }
}
