//! The configuration file (`/usr/lib/composefs/setup-root-conf.toml`): keys, defaults, aliases.
//!
//! A hand-written parser for the TOML subset the keys need: `[section]` headers, dotted keys
//! (`etc.mount = "bind"`), basic and literal strings, booleans, `#` comments.

use std::path::Path;

/// How /etc or /var is provided in the new root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Leave the image's directory as it is (alias `root`).
    None,
    /// Bind-mount the deployment's directory.
    Bind,
    /// Overlay: image's directory below, the deployment's `upper`/`work` above.
    Overlay,
    /// Overlay with a tmpfs upper: changes vanish at reboot (alias `volatile`).
    Transient,
}

/// The /etc mode: a fixed mode, or chosen from the deployment's state layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcMode {
    /// `etc/upper` + `etc/work` -> overlay; a populated `etc` -> bind; missing or empty -> overlay.
    Auto,
    /// A fixed mode.
    Fixed(MountMode),
}

/// The whole configuration, with defaults for every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[root] transient` (false): a tmpfs-upper overlay over the composefs root.
    pub root_transient: bool,
    /// `[etc] mount` / `[etc] transient` (auto).
    pub etc: EtcMode,
    /// `[var] mount` / `[var] transient` (bind).
    pub var: MountMode,
    /// `[sysroot] readonly` (true): the physical root at `<new root>/sysroot` is read-only.
    pub sysroot_readonly: bool,
    /// `[image] check-digest` (true): in insecure mode, an image without kernel fs-verity has its
    /// digest computed in userspace and a mismatch is refused. Secure mode always checks.
    pub check_digest: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root_transient: false,
            etc: EtcMode::Auto,
            var: MountMode::Bind,
            sysroot_readonly: true,
            check_digest: true,
        }
    }
}

/// A non-fatal remark about the file (unknown key), with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A config file error; every variant names the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Syntax error.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Known key, unknown value.
    #[error("line {line}: {key} = {value}: {expected}")]
    Value {
        /// 1-based line number.
        line: usize,
        /// The full dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// What would be accepted.
        expected: String,
    },
}

/// Parse config text. Unknown keys become warnings; unknown values are errors.
pub fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    todo!()
}

/// Read and parse `path`; a missing file means defaults.
pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    todo!()
}
