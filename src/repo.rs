//! The composefs repository on the physical root (`<sysroot>/composefs`) and the
//! deployment state directories next to it (`<sysroot>/state/deploy/<hex>`).
//!
//! Everything inside the repository is opened with `openat2` beneath the repository
//! directory (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`): the relative
//! link `images/<hex> -> ../objects/XX/...` resolves, while an absolute link, a link out of
//! the repository or onto another filesystem is refused by the kernel itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest};

/// The repository directory below the sysroot.
pub const REPOSITORY_DIR: &str = "composefs";
/// The deployments' state directory below the sysroot.
pub const STATE_DEPLOY_DIR: &str = "state/deploy";

/// What went wrong with the repository, always naming the path.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository directory cannot be opened.
    #[error("cannot open the composefs repository {path}: {} (is the physical root mounted there?)", std::io::Error::from(*errno))]
    OpenRepository {
        /// The repository path.
        path: PathBuf,
        /// The error number.
        errno: Errno,
    },
    /// `meta.json` exists but cannot be read.
    #[error("cannot read {path}: {}", std::io::Error::from(*errno))]
    ReadMeta {
        /// Its path.
        path: PathBuf,
        /// The error number.
        errno: Errno,
    },
    /// `meta.json` does not say which algorithm the repository uses.
    #[error("{path}: {reason}")]
    BadMeta {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The image entry resolves outside the repository or through a magic link.
    #[error(
        "refusing image {path}: it resolves outside the repository (absolute link, a link out of {repo}, or onto another filesystem)"
    )]
    Escapes {
        /// The image path.
        path: PathBuf,
        /// The repository path.
        repo: PathBuf,
    },
    /// The image entry exists but its target does not.
    #[error("image {path} is a dangling link: the object it names is missing")]
    Dangling {
        /// The image path.
        path: PathBuf,
    },
    /// The image is not a regular file.
    #[error("refusing image {path}: it is a {kind}, not a regular file")]
    NotRegular {
        /// The image path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Any other failure to open something beneath the repository or state directory.
    #[error("cannot open {path}: {}", std::io::Error::from(*errno))]
    Open {
        /// The path.
        path: PathBuf,
        /// The error number.
        errno: Errno,
    },
}

/// An opened composefs repository.
#[derive(Debug)]
pub struct Repository {
    dir: OwnedFd,
    path: PathBuf,
    algorithm: Option<Algorithm>,
}

/// An opened image file (a regular file beneath the repository).
#[derive(Debug)]
pub struct ImageFile {
    fd: OwnedFd,
    path: PathBuf,
    size: u64,
}

impl ImageFile {
    /// The open image.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    /// The image's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

impl Repository {
    /// Opens `<sysroot>/composefs` and reads `meta.json` when it exists (cfsctl writes it;
    /// C mkcomposefs' objects layout has none: then the algorithm follows the argument).
    pub fn open(sysroot: &Path) -> Result<Repository, RepoError> {
        let path = sysroot.join(REPOSITORY_DIR);
        let dir = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| RepoError::OpenRepository {
            path: path.clone(),
            errno,
        })?;
        let meta_path = path.join("meta.json");
        let algorithm = match read_beneath(dir.as_fd(), "meta.json", 64 * 1024) {
            Ok(text) => Some(parse_meta(&text).map_err(|reason| RepoError::BadMeta {
                path: meta_path,
                reason,
            })?),
            Err(Errno::NOENT) => None,
            Err(errno) => {
                return Err(RepoError::ReadMeta {
                    path: meta_path,
                    errno,
                });
            }
        };
        Ok(Repository {
            dir,
            path,
            algorithm,
        })
    }

    /// The repository's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The algorithm `meta.json` declares, if there is one.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
    }

    /// The path of `images/<hex>`, for messages.
    pub fn image_path(&self, digest: &Digest) -> PathBuf {
        self.path.join("images").join(digest.to_hex())
    }

    /// Opens `images/<hex>`; `Ok(None)` when there is no such entry.
    pub fn open_image(&self, digest: &Digest) -> Result<Option<ImageFile>, RepoError> {
        let name = format!("images/{}", digest.to_hex());
        let path = self.image_path(digest);
        // O_NONBLOCK: a FIFO planted in the repository must not hang the boot; it is refused
        // below as not a regular file.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let fd = match openat2_beneath(&self.dir, name.as_str(), flags, Mode::empty(), BENEATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // Distinguish "no such image" from "a link to a missing object".
                return match rustix::fs::statat(
                    &self.dir,
                    name.as_str(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(_) => Err(RepoError::Dangling { path }),
                    Err(_) => Ok(None),
                };
            }
            Err(Errno::XDEV | Errno::LOOP) => {
                return Err(RepoError::Escapes {
                    path,
                    repo: self.path.clone(),
                });
            }
            Err(errno) => return Err(RepoError::Open { path, errno }),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|errno| RepoError::Open {
            path: path.clone(),
            errno,
        })?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Err(RepoError::NotRegular {
                path,
                kind: file_type_name(kind),
            });
        }
        Ok(Some(ImageFile {
            fd,
            path,
            size: u64::try_from(stat.st_size).unwrap_or(0),
        }))
    }

    /// Opens `objects/` (an `O_PATH` directory fd) for the overlay's data-only layer.
    pub fn open_objects(&self) -> Result<OwnedFd, RepoError> {
        let path = self.path.join("objects");
        openat2_beneath(
            &self.dir,
            "objects",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )
        .map_err(|errno| match errno {
            Errno::XDEV | Errno::LOOP => RepoError::Escapes {
                path,
                repo: self.path.clone(),
            },
            errno => RepoError::Open { path, errno },
        })
    }
}

/// `openat2`, retried while the kernel answers EAGAIN. With `RESOLVE_BENEATH` the kernel
/// refuses a `..` walk (our image links hold one) when a rename or a mount happened anywhere
/// meanwhile, and asks the caller to retry; in an initrd systemd mounts things in parallel.
fn openat2_beneath<P: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    path: P,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir.as_fd(), path, flags, mode, resolve) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

fn file_type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// Reads a small file beneath `dir`, at most `limit` bytes.
fn read_beneath(dir: BorrowedFd<'_>, name: &str, limit: usize) -> Result<String, Errno> {
    let fd = openat2_beneath(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        BENEATH,
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                if data.len() > limit {
                    return Err(Errno::FBIG);
                }
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(data).map_err(|_| Errno::ILSEQ)
}

/// Reads the algorithm from `meta.json`: `{"version":1,"algorithm":"fsverity-sha256-12",...}`.
pub fn parse_meta(text: &str) -> Result<Algorithm, String> {
    let value = crate::json::top_level_string(text, "algorithm")
        .map_err(|e| format!("not valid JSON: {e}"))?
        .ok_or_else(|| "no \"algorithm\" key".to_string())?;
    Algorithm::from_repository_name(&value).ok_or_else(|| {
        format!("unknown algorithm {value:?} (expected fsverity-sha256-12 or fsverity-sha512-12)")
    })
}

/// How the deployment keeps its /etc (`state/deploy/<hex>/etc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcState {
    /// No `etc` directory yet.
    Missing,
    /// `etc` exists and is empty.
    Empty,
    /// `etc/upper` exists (with `etc/work`, or not yet): composefs-rs's overlay layout.
    OverlayDirs,
    /// `etc` holds a full copy of /etc: bootc's layout.
    Populated,
}

/// Opens `<sysroot>` as a directory fd, for paths beneath it.
pub fn open_sysroot(sysroot: &Path) -> Result<OwnedFd, RepoError> {
    rustix::fs::open(
        sysroot,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| RepoError::Open {
        path: sysroot.to_path_buf(),
        errno,
    })
}

/// Resolution for state paths: beneath the physical root, no magic links. Crossing mounts
/// is allowed (a separate /var partition), unlike inside the repository.
const STATE_RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Opens a directory beneath the physical root (`O_PATH`), following relative links that
/// stay beneath it (bootc's `var -> ../../os/default/var`).
pub fn open_state_dir(
    sysroot_fd: BorrowedFd<'_>,
    rel: &Path,
    sysroot: &Path,
) -> Result<OwnedFd, RepoError> {
    openat2_beneath(
        sysroot_fd,
        rel,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        STATE_RESOLVE,
    )
    .map_err(|errno| RepoError::Open {
        path: sysroot.join(rel),
        errno,
    })
}

/// Looks at `state/deploy/<hex>/etc` to tell which layout the deployment uses.
pub fn etc_state(sysroot_fd: BorrowedFd<'_>, deploy: &Path) -> EtcState {
    let etc = deploy.join("etc");
    let Ok(fd) = openat2_beneath(
        sysroot_fd,
        &etc,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        STATE_RESOLVE,
    ) else {
        return EtcState::Missing;
    };
    let is_dir = |name: &str| {
        rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            .unwrap_or(false)
    };
    // `upper` alone counts too: a first boot that stopped between creating the two.
    if is_dir("upper") {
        return EtcState::OverlayDirs;
    }
    let Ok(mut entries) = rustix::fs::Dir::read_from(&fd) else {
        return EtcState::Missing;
    };
    let populated = entries.any(|e| {
        e.map(|e| {
            let name = e.file_name().to_bytes();
            name != b"." && name != b".."
        })
        .unwrap_or(false)
    });
    if populated {
        EtcState::Populated
    } else {
        EtcState::Empty
    }
}

/// Creates `rel` (and missing parents) beneath the physical root; the last component
/// gets `mode`, parents 0755. Existing directories are left as they are.
pub fn create_state_dir(
    sysroot_fd: BorrowedFd<'_>,
    rel: &Path,
    mode: u32,
    sysroot: &Path,
) -> Result<(), RepoError> {
    // Every boot after the first: it is there already.
    if open_state_dir(sysroot_fd, rel, sysroot).is_ok() {
        return Ok(());
    }
    let mut sofar = PathBuf::new();
    let components: Vec<_> = rel.components().collect();
    for (i, component) in components.iter().enumerate() {
        sofar.push(component);
        let this_mode = if i + 1 == components.len() {
            mode
        } else {
            0o755
        };
        let parent = match sofar.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = sofar.file_name().unwrap_or_default();
        let dir = open_state_dir(sysroot_fd, parent, sysroot)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(this_mode)) {
            Ok(()) => {
                // mkdir obeys the umask; set the mode we mean.
                let _ = rustix::fs::chmodat(
                    &dir,
                    name,
                    Mode::from_raw_mode(this_mode),
                    rustix::fs::AtFlags::empty(),
                );
            }
            Err(Errno::EXIST) => {}
            Err(errno) => {
                return Err(RepoError::Open {
                    path: sysroot.join(&sofar),
                    errno,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_algorithm() {
        let text = r#"{"version":1,"algorithm":"fsverity-sha512-12","features":{"x":[1,2]}}"#;
        assert_eq!(parse_meta(text), Ok(Algorithm::Sha512));
        assert_eq!(
            parse_meta(r#"{ "algorithm" : "fsverity-sha256-12" }"#),
            Ok(Algorithm::Sha256)
        );
        assert!(
            parse_meta(r#"{"version":1}"#)
                .unwrap_err()
                .contains("no \"algorithm\"")
        );
        assert!(
            parse_meta(r#"{"algorithm":"sha1"}"#)
                .unwrap_err()
                .contains("unknown algorithm")
        );
        assert!(
            parse_meta("not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
