//! The handles steps hand each other, and the check that a plan's order gives every step
//! what it needs.
//!
//! A step that makes a mount leaves it for the steps after it: `VerifyImage` leaves the
//! verdict, `MountErofs` the erofs superblock, which `MountComposefs` uses up to make the
//! image tree and the root, and so on. Each [`Step`] declares what it uses, what it uses up
//! and what it makes ([`Step::flow`]); [`check`] walks a plan with those declarations before
//! anything runs, so a plan in the wrong order is refused whole, with nothing mounted,
//! instead of failing halfway through a boot on an empty slot. `execute` holds one slot per
//! handle and checks after every step that the slots filled are exactly the ones [`check`]
//! predicted ([`Handles`]), so the declarations cannot drift from what the steps do.

use std::fmt;

use crate::plan::{StateMount, Step};

/// Something one step makes and later steps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    /// The image's verdict: how its digest was checked.
    Verdict,
    /// The detached erofs superblock over the image.
    Erofs,
    /// The image's own tree (the composefs overlay, or the `--root-fs` clone), below any
    /// transient root: the lower layer of `/etc` and `/var` overlays.
    ImageTree,
    /// The mount that becomes `/` (the image tree, or a transient overlay over it).
    Root,
    /// The physical root's clone, for `<root>/sysroot`.
    PhysicalClone,
    /// The writable view of the physical root that the state directories are reached by.
    StateView,
}

impl Handle {
    const ALL: [Handle; 6] = [
        Handle::Verdict,
        Handle::Erofs,
        Handle::ImageTree,
        Handle::Root,
        Handle::PhysicalClone,
        Handle::StateView,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Handle::Verdict => "the image's verdict",
            Handle::Erofs => "the erofs mount",
            Handle::ImageTree => "the image tree",
            Handle::Root => "the root mount",
            Handle::PhysicalClone => "the physical root's clone",
            Handle::StateView => "the state view",
        })
    }
}

/// A set of handles: those available between two steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handles(u8);

impl Handles {
    /// The set of `handles`.
    pub fn of(handles: &[Handle]) -> Self {
        Handles(handles.iter().fold(0, |bits, h| bits | h.bit()))
    }

    /// Whether `h` is in the set.
    pub fn contains(self, h: Handle) -> bool {
        self.0 & h.bit() != 0
    }

    fn insert(&mut self, h: Handle) {
        self.0 |= h.bit();
    }

    fn remove(&mut self, h: Handle) {
        self.0 &= !h.bit();
    }
}

impl fmt::Display for Handles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = Handle::ALL
            .iter()
            .filter(|h| self.contains(**h))
            .map(Handle::to_string)
            .collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// What one step does with handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Handles it reads, which stay for later steps.
    pub uses: &'static [Handle],
    /// Handles it uses up: gone after it.
    pub takes: &'static [Handle],
    /// Handles it leaves for later steps.
    pub makes: &'static [Handle],
}

const fn flow(uses: &'static [Handle], takes: &'static [Handle], makes: &'static [Handle]) -> Flow {
    Flow { uses, takes, makes }
}

impl Step {
    /// What this step needs from earlier steps and leaves for later ones.
    pub fn flow(&self) -> Flow {
        use Handle::*;
        match self {
            Step::VerifyImage { .. } => flow(&[], &[], &[Verdict]),
            Step::MountErofs { .. } => flow(&[], &[], &[Erofs]),
            Step::MountComposefs { .. } => flow(&[Verdict], &[Erofs], &[ImageTree, Root]),
            Step::CloneRootTree { .. } => flow(&[], &[], &[ImageTree, Root]),
            Step::ClonePhysicalRoot { .. } => flow(&[], &[], &[PhysicalClone]),
            Step::RemountPhysicalRootWritable { .. } => flow(&[], &[], &[]),
            Step::OpenStateView { .. } => flow(&[], &[], &[StateView]),
            Step::AttachRoot { .. } => flow(&[Root], &[], &[]),
            Step::TransientRoot { .. } => flow(&[], &[Root], &[Root]),
            Step::MountPhysicalRoot { .. } => flow(&[Root], &[PhysicalClone], &[]),
            Step::CreateStateDir { .. } => flow(&[StateView], &[], &[]),
            Step::MountState { how, .. } => match how {
                StateMount::Bind { .. } => flow(&[Root, StateView], &[], &[]),
                StateMount::Overlay { .. } => flow(&[Root, StateView, ImageTree], &[], &[]),
                StateMount::Transient => flow(&[Root, ImageTree], &[], &[]),
            },
            // What it measures depends on whether the image tree got `verity=require`.
            Step::MeasureImage { .. } => flow(&[ImageTree], &[], &[]),
            Step::VolatileRootLink { .. } => flow(&[], &[], &[]),
        }
    }
}

/// A plan whose order leaves a step without what it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "internal error, the plan is in the wrong order: step {number} ({step}) needs {handle}, {why}; nothing was mounted (please report this with the output of --dry-run)"
)]
pub struct OrderError {
    /// 1-based step number.
    pub number: usize,
    /// The step's line.
    pub step: String,
    /// What it lacks.
    pub handle: Handle,
    /// Why it is not there.
    pub why: &'static str,
}

/// The handles available after each step of `steps` (one entry per step), or the first
/// step that lacks one.
pub fn check(steps: &[Step]) -> Result<Vec<Handles>, OrderError> {
    let mut have = Handles::default();
    let mut made_once = Handles::default();
    let mut after = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let f = step.flow();
        let lacking = |handle: Handle, why: &'static str| OrderError {
            number: i + 1,
            step: step.to_string(),
            handle,
            why,
        };
        for &h in f.uses.iter().chain(f.takes) {
            if !have.contains(h) {
                return Err(lacking(
                    h,
                    if made_once.contains(h) {
                        "which an earlier step used up"
                    } else {
                        "which no earlier step makes"
                    },
                ));
            }
        }
        for &h in f.takes {
            have.remove(h);
        }
        for &h in f.makes {
            if have.contains(h) {
                // A second one would replace the first, still held: one of them is lost.
                return Err(lacking(h, "and an earlier step's is still unused"));
            }
            have.insert(h);
            made_once.insert(h);
        }
        after.push(have);
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::features::ErofsBacking;
    use crate::plan::OverlayVerity;

    fn erofs() -> Step {
        Step::MountErofs {
            backing: ErofsBacking::File,
            staging: None,
        }
    }

    fn composefs() -> Step {
        Step::MountComposefs {
            source: "composefs:00".into(),
            verity: OverlayVerity::Require,
            objects: PathBuf::from("/sysroot/composefs/objects"),
        }
    }

    fn verify() -> Step {
        Step::VerifyImage {
            path: PathBuf::from("/i"),
            expected: crate::digest::Digest::from_hex(&"00".repeat(32)).expect("a digest"),
            mode: crate::plan::VerifyMode::KernelRequired,
            max_size: 1,
        }
    }

    fn attach() -> Step {
        Step::AttachRoot {
            target: PathBuf::from("/sysroot"),
        }
    }

    #[test]
    fn a_step_before_what_it_needs_is_refused_naming_both() {
        let e = check(&[erofs(), composefs(), verify()]).expect_err("verify comes too late");
        assert_eq!((e.number, e.handle), (2, Handle::Verdict));
        assert_eq!(e.why, "which no earlier step makes");
        assert!(
            e.to_string().contains("step 2 (mount overlay composefs:00"),
            "{e}"
        );
    }

    #[test]
    fn a_handle_used_up_cannot_be_used_again() {
        let e = check(&[verify(), erofs(), composefs(), composefs()]).expect_err("erofs twice");
        assert_eq!((e.number, e.handle), (4, Handle::Erofs));
        assert_eq!(e.why, "which an earlier step used up");
    }

    #[test]
    fn a_handle_made_twice_is_refused() {
        let e = check(&[erofs(), erofs()]).expect_err("two erofs mounts");
        assert_eq!((e.number, e.handle), (2, Handle::Erofs));
    }

    #[test]
    fn the_handles_after_each_step_are_reported() {
        let after = check(&[verify(), erofs(), composefs(), attach()]).expect("in order");
        assert_eq!(
            after,
            vec![
                Handles::of(&[Handle::Verdict]),
                Handles::of(&[Handle::Verdict, Handle::Erofs]),
                Handles::of(&[Handle::Verdict, Handle::ImageTree, Handle::Root]),
                Handles::of(&[Handle::Verdict, Handle::ImageTree, Handle::Root]),
            ]
        );
        assert_eq!(
            after[2].to_string(),
            "the image's verdict, the image tree, the root mount"
        );
    }
}
