//! Benchmark helper: time one run of a command, optionally inside a fresh private mount namespace
//! with a fake sysroot, and report what it cost and what it left mounted.
//!
//! `benches/run` calls this once per measured run, so every run gets its own namespace and the
//! namespace (with every mount the tool made) dies with this process: nothing stays mounted.
//!
//! ```text
//! timer [--sysroot DIR [--no-kmsg]] [--evict FILE] [--resident FILE] [--read REL]... -- PROGRAM ARGS...
//! ```
//!
//! * `--sysroot DIR`: `unshare(CLONE_NEWNS)`, make every mount private, bind-mount DIR on itself
//!   (as `sysroot.mount` does in an initramfs); after the run, print the visible mount at each
//!   mount point under DIR (`shape=`), and read the `--read` files through the new root.
//! * `--no-kmsg` (with `--sysroot`): bind `/dev/null` over `/dev/kmsg` in the namespace, to see
//!   what logging to the kernel log costs.
//! * `--noop`: exit at once (measured as a tool, it is the floor: exec + Rust runtime + exit).
//! * `--evict FILE`: drop FILE's pages from the page cache before the run (`POSIX_FADV_DONTNEED`);
//!   `--resident FILE`: count FILE's pages in the page cache after the run (`mincore`).
//!   Together: how much of the image the run read.
//!
//! The clock runs from just before the spawn to the return of `wait4`, so it includes `execve`
//! and, for a dynamic binary, the dynamic loader: that is part of the cost at boot. Output is one
//! line of `key=value` pairs on stdout; the child's own output goes to stderr.
//!
//! No dependencies: the few libc calls are declared here (glibc provides them; std links it).

use std::ffi::{CString, c_char, c_int, c_long, c_ulong, c_void};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio, exit};
use std::time::Instant;

#[repr(C)]
#[derive(Default)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

/// `struct rusage` (x86_64 glibc layout: two timevals, then fourteen longs).
#[repr(C)]
#[derive(Default)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    ru_maxrss: c_long,
    ru_ixrss: c_long,
    ru_idrss: c_long,
    ru_isrss: c_long,
    ru_minflt: c_long,
    ru_majflt: c_long,
    ru_nswap: c_long,
    ru_inblock: c_long,
    ru_oublock: c_long,
    ru_msgsnd: c_long,
    ru_msgrcv: c_long,
    ru_nsignals: c_long,
    ru_nvcsw: c_long,
    ru_nivcsw: c_long,
}

unsafe extern "C" {
    fn unshare(flags: c_int) -> c_int;
    fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
    fn posix_fadvise(fd: c_int, offset: i64, len: i64, advice: c_int) -> c_int;
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: i64,
    ) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn mincore(addr: *mut c_void, len: usize, vec: *mut u8) -> c_int;
}

const CLONE_NEWNS: c_int = 0x0002_0000;
const MS_BIND: c_ulong = 4096;
const MS_REC: c_ulong = 16384;
const MS_PRIVATE: c_ulong = 1 << 18;
const POSIX_FADV_DONTNEED: c_int = 4;
const PROT_READ: c_int = 1;
const MAP_SHARED: c_int = 1;
const MAP_FAILED: *mut c_void = !0usize as *mut c_void;
const PAGE: usize = 4096;

fn die(what: &str) -> ! {
    eprintln!("timer: {what}: {}", std::io::Error::last_os_error());
    exit(125)
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// A private mount namespace with `sysroot` bind-mounted on itself.
fn enter_namespace(sysroot: &Path) {
    let root = c"/";
    let dir = cstr(sysroot);
    // SAFETY: plain syscalls on NUL-terminated strings that outlive the calls.
    unsafe {
        if unshare(CLONE_NEWNS) != 0 {
            die("unshare(CLONE_NEWNS)");
        }
        if mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            MS_REC | MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            die("make / rprivate");
        }
        if mount(
            dir.as_ptr(),
            dir.as_ptr(),
            std::ptr::null(),
            MS_BIND | MS_REC,
            std::ptr::null(),
        ) != 0
        {
            die("bind-mount the sysroot on itself");
        }
    }
}

fn evict(file: &Path) {
    let f = open(file);
    // SAFETY: valid fd for the duration of the call.
    if unsafe { posix_fadvise(f.as_raw_fd(), 0, 0, POSIX_FADV_DONTNEED) } != 0 {
        die("posix_fadvise(DONTNEED)");
    }
}

fn open(file: &Path) -> std::fs::File {
    std::fs::File::open(file).unwrap_or_else(|e| {
        eprintln!("timer: open {}: {e}", file.display());
        exit(125)
    })
}

/// Pages of `f` in the page cache, and the file's size in pages. The file is opened before the
/// run: afterwards its path may lie under the new root mounted over the sysroot.
fn resident(f: &std::fs::File) -> (usize, usize) {
    let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
    if len == 0 {
        return (0, 0);
    }
    let pages = len.div_ceil(PAGE);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of an open file, only passed to mincore and unmapped here;
    // `vec` has one byte per page of the mapping.
    unsafe {
        let p = mmap(
            std::ptr::null_mut(),
            len,
            PROT_READ,
            MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == MAP_FAILED {
            die("mmap");
        }
        if mincore(p, len, vec.as_mut_ptr()) != 0 {
            die("mincore");
        }
        munmap(p, len);
    }
    (vec.iter().filter(|b| **b & 1 != 0).count(), pages)
}

/// Decode mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct MountEntry {
    id: u64,
    parent: u64,
    point: String,
    opts: String,
    fstype: String,
    source: String,
}

/// The visible mount at every mount point at or below `sysroot`, as
/// `rel:fstype:source:ro|rw`, sorted by path, joined with `,`; and the number of mounts there.
fn shape(sysroot: &Path) -> (String, usize) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let base = sysroot.to_string_lossy().trim_end_matches('/').to_string();
    let mut mounts = Vec::new();
    for line in text.lines() {
        let (left, right) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 2 {
            continue;
        }
        let point = unescape(l[4]);
        let rel = if point == base {
            "/".to_string()
        } else if let Some(rest) = point.strip_prefix(&format!("{base}/")) {
            format!("/{rest}")
        } else {
            continue;
        };
        mounts.push(MountEntry {
            id: l[0].parse().unwrap_or(0),
            parent: l[1].parse().unwrap_or(0),
            point: rel,
            opts: l[5].split(',').next().unwrap_or("").to_string(),
            fstype: r[0].to_string(),
            source: unescape(r[1]),
        });
    }
    let count = mounts.len();
    // A mount is hidden when another mount at the same point sits on it.
    let mut visible: Vec<&MountEntry> = mounts
        .iter()
        .filter(|m| {
            !mounts
                .iter()
                .any(|o| o.parent == m.id && o.point == m.point)
        })
        .collect();
    visible.sort_by(|a, b| a.point.cmp(&b.point));
    let parts: Vec<String> = visible
        .iter()
        .map(|m| {
            // The overlay's source names the image (`composefs:<hex>`): keep only its kind.
            let source = m.source.split(':').next().unwrap_or("");
            format!("{}:{}:{}:{}", m.point, m.fstype, source, m.opts)
        })
        .collect();
    (parts.join(","), count)
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let mut sysroot: Option<PathBuf> = None;
    let mut evict_files = Vec::new();
    let mut resident_files = Vec::new();
    let mut reads = Vec::new();
    let mut no_kmsg = false;
    let mut command = Vec::new();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--sysroot") => sysroot = args.next().map(PathBuf::from),
            Some("--evict") => evict_files.extend(args.next().map(PathBuf::from)),
            Some("--resident") => resident_files.extend(args.next().map(PathBuf::from)),
            Some("--read") => reads.extend(args.next().map(PathBuf::from)),
            Some("--no-kmsg") => no_kmsg = true,
            // Exit at once: the cost of starting a static Rust program, the floor for any tool.
            Some("--noop") => exit(0),
            // `cargo bench` appends `--bench`; accept and ignore it.
            Some("--bench") => {}
            Some("--") => {
                command.extend(args.by_ref());
                break;
            }
            _ => {
                eprintln!("timer: unexpected argument {a:?}");
                exit(125)
            }
        }
    }
    if command.is_empty() {
        eprintln!(
            "usage: timer [--sysroot DIR [--no-kmsg]] [--evict FILE] [--resident FILE] [--read REL]... -- PROGRAM ARGS..."
        );
        exit(125)
    }
    if let Some(dir) = &sysroot {
        enter_namespace(dir);
        if no_kmsg {
            // SAFETY: as in enter_namespace; the mount is private to this namespace.
            let r = unsafe {
                mount(
                    c"/dev/null".as_ptr(),
                    c"/dev/kmsg".as_ptr(),
                    std::ptr::null(),
                    MS_BIND,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                die("bind /dev/null over /dev/kmsg");
            }
        }
    }
    for f in &evict_files {
        evict(f);
    }
    let resident_files: Vec<std::fs::File> = resident_files.iter().map(|f| open(f)).collect();

    let mut cmd = Command::new(&command[0]);
    // The child's stdout goes to our stderr: our stdout carries only the result line.
    let to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .unwrap_or_else(|e| {
            eprintln!("timer: dup stderr: {e}");
            exit(125)
        });
    cmd.args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::from(to_stderr));
    let start = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| {
        eprintln!("timer: spawn {:?}: {e}", command[0]);
        exit(125)
    });
    let mut status: c_int = 0;
    let mut ru = Rusage::default();
    // SAFETY: waits for our own child; `status` and `ru` are valid for writes.
    let r = unsafe { wait4(child.id() as c_int, &mut status, 0, &mut ru) };
    let elapsed = start.elapsed();
    if r < 0 {
        die("wait4");
    }
    // The child is reaped; std's handle must not wait again.
    std::mem::forget(child);

    let rc = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    };
    let us = |t: &Timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    let mut line = format!(
        "rc={rc} wall_ns={} utime_us={} stime_us={} maxrss_kb={} minflt={} majflt={} inblock={}",
        elapsed.as_nanos(),
        us(&ru.ru_utime),
        us(&ru.ru_stime),
        ru.ru_maxrss,
        ru.ru_minflt,
        ru.ru_majflt,
        ru.ru_inblock
    );
    for f in &resident_files {
        let (r, total) = resident(f);
        line.push_str(&format!(" resident_pages={r} file_pages={total}"));
    }
    if let Some(dir) = &sysroot {
        let (s, n) = shape(dir);
        line.push_str(&format!(" mounts={n} shape={s}"));
        for rel in &reads {
            let p = dir.join(rel.strip_prefix("/").unwrap_or(rel));
            match std::fs::read(&p) {
                Ok(b) => line.push_str(&format!(" read={}:{}", rel.display(), b.len())),
                Err(e) => {
                    let e = e.to_string().replace(' ', "_");
                    line.push_str(&format!(" read={}:ERR:{e}", rel.display()))
                }
            }
        }
    }
    println!("{line}");
}
