//! Undo: a stack of guards, each owning what it undoes (the mount it attached, the
//! directory it created, the link it made, the superblock it made writable); run newest
//! first when a run fails, disarmed when it succeeds. Nothing is found again by path.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;

use crate::execute::ExecError;
use crate::mount::{Mount, reconfigure_superblock};
use crate::repo::{self, CreatedDir};

/// Something done to the visible tree or the disk, holding what it takes to take it back.
#[derive(Debug)]
pub(crate) enum Guard {
    /// A mount we attached at `at`: unmounted through its own fd. `staged`: a staging mount,
    /// released at the end of a successful run too.
    Unmount {
        mount: Mount,
        at: PathBuf,
        staged: bool,
    },
    /// A directory we created (a state directory, or a staging one when `staged`).
    RemoveDir { dir: CreatedDir, staged: bool },
    /// The `/run/systemd/volatile-root` link, held by its directory.
    RemoveLink { dir: OwnedFd, path: PathBuf },
    /// The physical root's superblock, which we made writable.
    RestoreReadOnly { root: OwnedFd, path: PathBuf },
}

impl Guard {
    fn staged(&self) -> bool {
        matches!(
            self,
            Guard::Unmount { staged: true, .. } | Guard::RemoveDir { staged: true, .. }
        )
    }

    fn run(&self) -> Result<(), String> {
        let text = |e: Errno| std::io::Error::from(e).to_string();
        match self {
            Guard::Unmount { mount, at, .. } => mount.unmount(at).map_err(|e| e.to_string()),
            Guard::RemoveDir { dir, .. } => dir.remove().map_err(text),
            Guard::RemoveLink { dir, path } => {
                let name = path.file_name().unwrap_or_default();
                rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()).map_err(text)
            }
            Guard::RestoreReadOnly { root, path } => {
                reconfigure_superblock(root.as_fd(), true, &path.display().to_string())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Guard::Unmount { at, .. } => write!(f, "unmount {}", at.display()),
            Guard::RemoveDir { dir, .. } => write!(f, "remove {}", dir.path.display()),
            Guard::RemoveLink { path, .. } => write!(f, "remove {}", path.display()),
            Guard::RestoreReadOnly { .. } => f.write_str("remount the physical root read-only"),
        }
    }
}

/// The undo stack, and the private staging directory of attach-first paths (created on
/// first use, with a guard like any other directory).
pub(crate) struct Undo {
    pub(crate) guards: Vec<Guard>,
    staging: Option<PathBuf>,
}

impl Undo {
    pub(crate) fn new(staging: Option<PathBuf>) -> Undo {
        Undo {
            guards: Vec::new(),
            staging,
        }
    }

    pub(crate) fn push(&mut self, guard: Guard) {
        self.guards.push(guard);
    }

    /// Attach-first paths: attaches `mount` at `<staging>/<name>` so that it can serve as an
    /// overlay layer on kernels that refuse detached layers; released at the end.
    pub(crate) fn stage(&mut self, mount: &Mount, name: &str, what: &str) -> Result<(), ExecError> {
        let Some(staging) = self.staging.clone() else {
            return Ok(());
        };
        // The private directory first (the first time: then it exists), then the mount point.
        let (parent, base) = split(&staging);
        let at = staging.join(name);
        for (parent, name, path) in [(parent, base, &staging), (&staging, name, &at)] {
            if let Some(dir) = make_dir(open_dir(parent)?, name, 0o700, path)? {
                self.push(Guard::RemoveDir { dir, staged: true });
            }
        }
        mount.attach(CWD, path_str(&at)?, &at.display().to_string())?;
        let mount = clone_handle(mount, what)?;
        self.push(Guard::Unmount {
            mount,
            at,
            staged: true,
        });
        Ok(())
    }

    /// A successful run: staging mounts and directories are released, newest first (a
    /// leftover costs a directory in /run, not the boot); every other guard is dropped.
    pub(crate) fn disarm(mut self) {
        while let Some(guard) = self.guards.pop() {
            if guard.staged() {
                if let Err(e) = guard.run() {
                    log::warn!("could not {guard}: {e}");
                }
            }
        }
    }

    /// A failed run: every guard runs, newest first, and is dropped (with the fds it holds)
    /// before the next; returns the undo actions that failed.
    pub(crate) fn unwind(mut self) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fail = undo_injected();
        while let Some(guard) = self.guards.pop() {
            let result = if std::mem::take(&mut fail) {
                Err("injected undo failure (CFS_SETUP_ROOT_FAIL_UNDO)".to_string())
            } else {
                guard.run()
            };
            match result {
                Ok(()) => log::info!("undone: {guard}"),
                Err(e) => {
                    log::error!("could not undo ({guard}): {e}");
                    failures.push(format!("{guard}: {e}"));
                }
            }
        }
        failures
    }
}

/// Test-only: make the first undo action fail, to see it reported (`CFS_SETUP_ROOT_FAIL_UNDO`).
#[cfg(feature = "fault-injection")]
fn undo_injected() -> bool {
    std::env::var_os("CFS_SETUP_ROOT_FAIL_UNDO").is_some()
}

#[cfg(not(feature = "fault-injection"))]
fn undo_injected() -> bool {
    false
}

/// A second fd naming the same mount, `what` (for messages).
pub(crate) fn clone_handle(m: &Mount, what: &str) -> Result<Mount, ExecError> {
    m.try_clone().map_err(|e| clone_error(what, &e))
}

pub(crate) fn clone_error(what: &str, e: &std::io::Error) -> ExecError {
    ExecError::Io {
        what: "dup the mount fd of",
        path: PathBuf::from(what),
        errno: Errno::from_io_error(e).unwrap_or(Errno::MFILE),
    }
}

pub(crate) fn dup(fd: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, ExecError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|errno| ExecError::Io {
        what: "dup the fd of",
        path: path.to_path_buf(),
        errno,
    })
}

pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd, ExecError> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| ExecError::Io {
        what: "open",
        path: path.to_path_buf(),
        errno,
    })
}

pub(crate) fn make_dir(
    parent: OwnedFd,
    name: &str,
    mode: u32,
    path: &Path,
) -> Result<Option<CreatedDir>, ExecError> {
    Ok(repo::make_dir(parent, name.into(), mode, path)?)
}

/// A path's directory and last component (`/` and `""` for the root).
pub(crate) fn split(path: &Path) -> (&Path, &str) {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (parent, name)
}

pub(crate) fn path_str(p: &Path) -> Result<&str, ExecError> {
    p.to_str().ok_or(ExecError::Io {
        what: "non-UTF-8 path",
        path: p.to_path_buf(),
        errno: Errno::INVAL,
    })
}
