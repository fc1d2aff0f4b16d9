//! The composefs repository on the physical root (`<sysroot>/composefs`) and the
//! deployment state directories next to it (`<sysroot>/state/deploy/<hex>`).
//!
//! Everything inside the repository is opened with `openat2` beneath the repository
//! directory (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`): the relative
//! link `images/<hex> -> ../objects/XX/...` resolves, while an absolute link, a link out of
//! the repository or onto another filesystem is refused by the kernel itself. Files are
//! first opened `O_PATH` (which opens nothing: no device driver, FIFO or socket sees it),
//! their type is checked, and only a regular file is then opened for reading.
//!
//! State is resolved the same way beneath `<sysroot>/state`: `/etc` and `/var` must come
//! from the state directory (bootc's `var -> ../../os/default/var` stays inside it), never
//! from elsewhere on the physical root.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest};

/// The repository directory below the sysroot.
pub const REPOSITORY_DIR: &str = "composefs";
/// The state directory below the sysroot; `/etc` and `/var` come from beneath it.
pub const STATE_DIR: &str = "state";
/// The deployments' directory below the state directory.
pub const DEPLOY_DIR: &str = "deploy";

/// What went wrong with the repository or the state directory, always naming the path.
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
    /// An entry resolves outside the repository.
    #[error(
        "refusing {path}: it resolves outside the repository (absolute link, a link out of {repo}, or onto another filesystem): the disk may have been tampered with"
    )]
    Escapes {
        /// The entry's path.
        path: PathBuf,
        /// The repository path.
        repo: PathBuf,
    },
    /// A state entry resolves outside the state directory.
    #[error(
        "refusing {path}: it resolves outside {state} (absolute link, or a link out of it); /etc and /var must come from the deployment's state: fix or remove that link"
    )]
    StateEscapes {
        /// The entry's path.
        path: PathBuf,
        /// The state directory.
        state: PathBuf,
    },
    /// The image entry exists but its target does not.
    #[error("image {path} is a dangling link: the object it names is missing")]
    Dangling {
        /// The image path.
        path: PathBuf,
    },
    /// An entry is not a regular file.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular {
        /// The path.
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
    /// Creating a state directory failed.
    #[error("cannot create {path}: {}{}", std::io::Error::from(*errno), if *errno == Errno::ROFS { " (the physical root is read-only)" } else { "" })]
    Create {
        /// The path.
        path: PathBuf,
        /// The error number.
        errno: Errno,
    },
}

impl RepoError {
    /// An entry that leads outside where it must stay: a sign of tampering, never skipped.
    pub fn is_escape(&self) -> bool {
        matches!(
            self,
            RepoError::Escapes { .. } | RepoError::StateEscapes { .. }
        )
    }
}

/// What looking an image up found.
#[derive(Debug)]
pub enum ImageLookup {
    /// The image, opened for reading.
    Found(ImageFile),
    /// No `images/<hex>` entry.
    Absent,
    /// An entry that cannot be an image (dangling, a directory, a FIFO, unopenable): the
    /// next selector may be tried.
    Unusable(RepoError),
    /// An entry that leads out of the repository: the boot stops.
    Escapes(RepoError),
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

/// How opening a file beneath a directory went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenFailure {
    /// The kernel refused the walk (`EXDEV`: out of the directory or onto another mount).
    Escapes,
    /// Not a regular file.
    NotRegular(FileType),
    /// Any other error.
    Errno(Errno),
}

/// Opens `name` beneath `dir` for reading, only if it is a regular file: first `O_PATH`
/// (no open of a device, FIFO or socket), then the type check, then a read-only reopen of
/// that very inode through `/proc/self/fd`.
fn open_regular_beneath(
    dir: BorrowedFd<'_>,
    name: &str,
    resolve: ResolveFlags,
) -> Result<(OwnedFd, u64), OpenFailure> {
    let handle = openat2_beneath(
        dir,
        name,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .map_err(|errno| match errno {
        Errno::XDEV => OpenFailure::Escapes,
        errno => OpenFailure::Errno(errno),
    })?;
    let stat = rustix::fs::fstat(&handle).map_err(OpenFailure::Errno)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(OpenFailure::NotRegular(kind));
    }
    let fd = rustix::fs::open(
        crate::mount::proc_fd_path(handle.as_fd()).as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(OpenFailure::Errno)?;
    Ok((fd, u64::try_from(stat.st_size).unwrap_or(0)))
}

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
            Err(OpenFailure::Errno(Errno::NOENT)) => None,
            Err(OpenFailure::Escapes) => {
                return Err(RepoError::Escapes {
                    path: meta_path,
                    repo: path,
                });
            }
            Err(OpenFailure::NotRegular(kind)) => {
                return Err(RepoError::NotRegular {
                    path: meta_path,
                    kind: file_type_name(kind),
                });
            }
            Err(OpenFailure::Errno(errno)) => {
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

    /// Looks up `images/<hex>` and opens it when it is a regular file beneath the repository.
    pub fn open_image(&self, digest: &Digest) -> ImageLookup {
        let name = format!("images/{}", digest.to_hex());
        let path = self.image_path(digest);
        match open_regular_beneath(self.dir.as_fd(), &name, BENEATH) {
            Ok((fd, size)) => ImageLookup::Found(ImageFile { fd, path, size }),
            Err(OpenFailure::Errno(Errno::NOENT)) => {
                // Distinguish "no such image" from "a link to a missing object".
                match rustix::fs::statat(
                    &self.dir,
                    name.as_str(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(_) => ImageLookup::Unusable(RepoError::Dangling { path }),
                    Err(_) => ImageLookup::Absent,
                }
            }
            Err(OpenFailure::Escapes) => ImageLookup::Escapes(RepoError::Escapes {
                path,
                repo: self.path.clone(),
            }),
            Err(OpenFailure::NotRegular(kind)) => ImageLookup::Unusable(RepoError::NotRegular {
                path,
                kind: file_type_name(kind),
            }),
            Err(OpenFailure::Errno(errno)) => {
                ImageLookup::Unusable(RepoError::Open { path, errno })
            }
        }
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
            Errno::XDEV => RepoError::Escapes {
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

/// Reads a small regular file beneath `dir`, at most `limit` bytes.
fn read_beneath(dir: BorrowedFd<'_>, name: &str, limit: usize) -> Result<String, OpenFailure> {
    let (fd, _) = open_regular_beneath(dir, name, BENEATH)?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                if data.len() > limit {
                    return Err(OpenFailure::Errno(Errno::FBIG));
                }
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(OpenFailure::Errno(e)),
        }
    }
    String::from_utf8(data).map_err(|_| OpenFailure::Errno(Errno::ILSEQ))
}

/// The `meta.json` version this tool reads (composefs-rs: a tool must refuse a higher one).
const META_VERSION: u64 = 1;

/// Reads the algorithm from `meta.json`: `{"version":1,"algorithm":"fsverity-sha256-12",...}`,
/// and checks its feature flags as composefs-rs defines them: an `incompatible` feature means
/// "old tools must refuse the repository entirely", and this tool knows none, so any is
/// refused, by name; `read-only-compatible` ones (`v1_erofs`, cfsctl 0.9.4's default) allow
/// reading, which is all this tool does; `compatible` ones are ignored.
pub fn parse_meta(text: &str) -> Result<Algorithm, String> {
    let meta = crate::json::parse(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if meta.object().is_none() {
        return Err("not a JSON object".to_string());
    }
    let version = meta.get("version").and_then(crate::json::Value::u64);
    if version.is_some_and(|v| v > META_VERSION) {
        return Err(format!(
            "repository format version {} is newer than this tool reads ({META_VERSION}): \
             boot an entry whose initramfs has a newer cfs-setup-root",
            version.unwrap_or_default()
        ));
    }
    let incompatible: Vec<&str> = meta
        .get("features")
        .and_then(|f| f.get("incompatible"))
        .map(|list| {
            list.items()
                .iter()
                .map(|f| f.str().unwrap_or("?"))
                .collect()
        })
        .unwrap_or_default();
    if !incompatible.is_empty() {
        return Err(format!(
            "the repository requires features this tool does not know: {} \
             (features.incompatible; composefs-rs defines them as \"old tools must refuse the \
             repository\"): boot an entry whose initramfs has a newer cfs-setup-root",
            incompatible.join(", ")
        ));
    }
    let value = (meta.get("algorithm").and_then(crate::json::Value::str))
        .ok_or_else(|| "no \"algorithm\" key".to_string())?;
    Algorithm::from_repository_name(value).ok_or_else(|| {
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

/// Resolution for state paths: beneath the state directory, no magic links. Crossing mounts
/// is allowed (a separate partition for the state), unlike inside the repository.
const STATE_RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// A directory created by [`StateDir::create_dirs`] or [`StateDir::create`], held by its
/// parent so that an undo removes exactly it.
#[derive(Debug)]
pub struct CreatedDir {
    parent: OwnedFd,
    name: OsString,
    /// Its path, for messages.
    pub path: PathBuf,
}

impl CreatedDir {
    /// Removes the directory again. It must be empty, but for the empty `work` and `index`
    /// directories overlayfs makes inside a work directory (ours: we created it this run).
    pub fn remove(&self) -> Result<(), Errno> {
        let rmdir = |dir: BorrowedFd<'_>, name: &std::ffi::OsStr| {
            rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::REMOVEDIR)
        };
        match rmdir(self.parent.as_fd(), &self.name) {
            Err(Errno::NOTEMPTY) => {
                let me = rustix::fs::openat(
                    &self.parent,
                    self.name.as_os_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                for leftover in ["work", "index"] {
                    match rmdir(me.as_fd(), leftover.as_ref()) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(e),
                    }
                }
                rmdir(self.parent.as_fd(), &self.name)
            }
            other => other,
        }
    }
}

/// `<sysroot>/state`, opened: every `/etc` and `/var` source is resolved beneath it.
/// Paths given to it are relative to the state directory (`deploy/<hex>/etc`).
#[derive(Debug)]
pub struct StateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl StateDir {
    /// Opens `state` beneath `base` (the physical root, or a view of it); `None` when there
    /// is no state directory yet.
    pub fn open(base: BorrowedFd<'_>, sysroot: &Path) -> Result<Option<StateDir>, RepoError> {
        let path = sysroot.join(STATE_DIR);
        match openat2_beneath(
            base,
            STATE_DIR,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS),
        ) {
            Ok(fd) => Ok(Some(StateDir { fd, path })),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::XDEV) => Err(RepoError::StateEscapes {
                path: path.clone(),
                state: path,
            }),
            Err(errno) => Err(RepoError::Open { path, errno }),
        }
    }

    /// Opens `state` beneath `base`, creating it (0755) when missing; the directory created,
    /// if any, is returned for undo.
    pub fn create(
        base: BorrowedFd<'_>,
        sysroot: &Path,
    ) -> Result<(StateDir, Option<CreatedDir>), RepoError> {
        if let Some(dir) = Self::open(base, sysroot)? {
            return Ok((dir, None));
        }
        let path = sysroot.join(STATE_DIR);
        let parent = rustix::io::dup(base).map_err(|errno| RepoError::Open {
            path: sysroot.to_path_buf(),
            errno,
        })?;
        let created = make_dir(parent, STATE_DIR.into(), 0o755, &path)?;
        let dir = Self::open(base, sysroot)?.ok_or(RepoError::Open {
            path,
            errno: Errno::NOENT,
        })?;
        Ok((dir, created))
    }

    /// The state directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a directory beneath the state directory (`O_PATH`), following relative links
    /// that stay beneath it (bootc's `var -> ../../os/default/var`).
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd, RepoError> {
        openat2_beneath(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            STATE_RESOLVE,
        )
        .map_err(|errno| self.error(rel, errno))
    }

    fn error(&self, rel: &Path, errno: Errno) -> RepoError {
        let path = self.path.join(rel);
        match errno {
            Errno::XDEV => RepoError::StateEscapes {
                path,
                state: self.path.clone(),
            },
            errno => RepoError::Open { path, errno },
        }
    }

    /// Creates `rel` (and missing parents) beneath the state directory; the last component
    /// gets `mode`, parents 0755. Existing directories are left as they are. Returns what
    /// was created, parents first.
    pub fn create_dirs(&self, rel: &Path, mode: u32) -> Result<Vec<CreatedDir>, RepoError> {
        // Every boot after the first: it is there already.
        if self.open_dir(rel).is_ok() {
            return Ok(Vec::new());
        }
        let mut created = Vec::new();
        let mut sofar = PathBuf::new();
        let components: Vec<_> = rel.components().collect();
        for (i, component) in components.iter().enumerate() {
            let parent = if sofar.as_os_str().is_empty() {
                rustix::io::dup(&self.fd).map_err(|errno| self.error(&sofar, errno))?
            } else {
                self.open_dir(&sofar)?
            };
            sofar.push(component);
            let this_mode = if i + 1 == components.len() {
                mode
            } else {
                0o755
            };
            let name = sofar.file_name().unwrap_or_default().to_os_string();
            if let Some(dir) = make_dir(parent, name, this_mode, &self.path.join(&sofar))? {
                created.push(dir);
            }
        }
        // The result must itself resolve beneath the state directory (an existing link
        // among the components may point anywhere).
        self.open_dir(rel)?;
        Ok(created)
    }

    /// Looks at `<deploy>/etc` to tell which layout the deployment uses.
    pub fn etc_state(&self, deploy: &Path) -> EtcState {
        let etc = deploy.join("etc");
        let Ok(fd) = openat2_beneath(
            &self.fd,
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
}

/// `mkdirat(parent, name, mode)` with the mode set exactly (mkdir obeys the umask); `None`
/// when it exists already.
pub(crate) fn make_dir(
    parent: OwnedFd,
    name: OsString,
    mode: u32,
    path: &Path,
) -> Result<Option<CreatedDir>, RepoError> {
    match rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(mode)) {
        Ok(()) => {
            let _ = rustix::fs::chmodat(
                &parent,
                name.as_os_str(),
                Mode::from_raw_mode(mode),
                rustix::fs::AtFlags::empty(),
            );
            Ok(Some(CreatedDir {
                parent,
                name,
                path: path.to_path_buf(),
            }))
        }
        Err(Errno::EXIST) => Ok(None),
        Err(errno) => Err(RepoError::Create {
            path: path.to_path_buf(),
            errno,
        }),
    }
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

    /// composefs-rs's feature flags: an incompatible feature refuses the repository, naming
    /// it; read-only-compatible ones (cfsctl 0.9.4 writes `v1_erofs`) and compatible ones are
    /// read past.
    #[test]
    fn meta_features() {
        let meta = |features: &str| {
            parse_meta(&format!(
                r#"{{"version":1,"algorithm":"fsverity-sha256-12","features":{features}}}"#
            ))
        };
        // What cfsctl 0.9.4 `init` writes, whole (V1 images by default).
        let init = "{\n  \"version\": 1,\n  \"algorithm\": \"fsverity-sha512-12\",\n  \"features\": {\n    \
                    \"compatible\": [],\n    \"read-only-compatible\": [\n      \"v1_erofs\"\n    ],\n    \
                    \"incompatible\": []\n  },\n  \"erofs_formats\": {\n    \"default\": 1\n  }\n}\n";
        assert_eq!(parse_meta(init), Ok(Algorithm::Sha512));
        assert_eq!(
            meta(r#"{"compatible":[],"read-only-compatible":["v1_erofs"],"incompatible":[]}"#),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(
            meta(r#"{"compatible":["future_hint"],"read-only-compatible":["v9_thing"]}"#),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(meta("{}"), Ok(Algorithm::Sha256));
        let error = meta(r#"{"incompatible":["sealed_images","zstd"]}"#).unwrap_err();
        assert!(error.contains("sealed_images, zstd"), "{error}");
        assert!(error.contains("newer cfs-setup-root"), "{error}");
        // Even a feature we might know one day: this version knows none.
        assert!(meta(r#"{"incompatible":["v1_erofs"]}"#).is_err());
        // A newer repository format is refused too.
        let error = parse_meta(r#"{"version":2,"algorithm":"fsverity-sha256-12"}"#).unwrap_err();
        assert!(error.contains("version 2"), "{error}");
    }
}
