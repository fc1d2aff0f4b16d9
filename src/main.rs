//! `cfs-setup-root`: exit codes and the trailing command; `cli` parses the arguments, the
//! library does the work.
//!
//! `#![no_main]`: the C `main` below replaces std's runtime start-up, which only adds a
//! main-thread stack-guard probe (glibc's `pthread_getattr_np`, which drags `sscanf`, `strtod`
//! and their locale code into a static binary: about 80 KiB we do not need). Arguments still
//! come from `std::env::args` (glibc hands them to std through `.init_array`).

#![cfg_attr(not(test), no_main)]

use cfs_setup_root::cli::{self, Parsed, USAGE};
use cfs_setup_root::{Outcome, exit, run};

/// The process entry point, called by the C library's start-up code.
// SAFETY: `main` is the symbol `__libc_start_main` calls; nothing else in the program defines
// it (std's own `main` is not generated under `#![no_main]`), and the signature is the C one.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // SAFETY: the C runtime passes `argc` pointers to NUL-terminated strings in `argv`, valid
    // for the whole run. (Read here, not through std::env::args: that relies on glibc handing
    // them to std from `.init_array`, which other C libraries do not do.)
    let args = unsafe { c_args(argc, argv) };
    let code = real_main(args);
    // std's runtime would flush stdout at exit; without it, flush here.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(i32::from(code))
}

/// The arguments after the program name, as strings (invalid UTF-8 is replaced; the
/// paths given here are plain ASCII in every initramfs we know).
///
/// # Safety
/// `argv` must hold `argc` valid pointers to NUL-terminated strings.
#[cfg(not(test))]
unsafe fn c_args(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    (1..count)
        .filter_map(|i| {
            // SAFETY: i < argc, so `argv.add(i)` is inside the array and points to a valid C
            // string (the caller's contract); null entries are skipped.
            let ptr = unsafe { *argv.add(i) };
            (!ptr.is_null()).then(|| {
                unsafe { std::ffi::CStr::from_ptr(ptr) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

#[cfg_attr(test, allow(dead_code))]
fn real_main(args: Vec<String>) -> u8 {
    cfs_setup_root::log::init();
    let (opts, command) = match cli::parse(args) {
        Ok(Parsed::Run { options, command }) => (options, command),
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return exit::OK;
        }
        Ok(Parsed::Version) => {
            println!("cfs-setup-root {}", env!("CARGO_PKG_VERSION"));
            return exit::OK;
        }
        Ok(Parsed::Status { json, path }) => return show_status(&path, json),
        Err(e) => {
            eprint!("{}", cli::usage_error(&e));
            return exit::USAGE;
        }
    };
    match run(&opts) {
        Ok(Outcome::DryRun(plan)) => {
            print!("{plan}");
            exit::OK
        }
        Ok(Outcome::Done(_) | Outcome::NothingToDo) => exec(&command),
        Err(e) => {
            log::error!("error: {e}");
            e.exit_code()
        }
    }
}

/// Runs the trailing command in place of this process (composefs-setup-root's "execute this
/// command"); returns only when there is none (0) or it cannot be run (2).
///
/// `execvp` directly rather than `std::process::Command`, whose spawning machinery would add
/// about 25 KiB to the static binary for this one call.
#[cfg_attr(test, allow(dead_code))]
fn exec(command: &[String]) -> u8 {
    let Some(program) = command.first() else {
        return exit::OK;
    };
    let args: Result<Vec<std::ffi::CString>, _> = command
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect();
    let Ok(args) = args else {
        log::error!("error: cannot run {program}: an argument contains a NUL byte");
        return exit::USAGE;
    };
    let mut argv: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: `argv` is a null-terminated array of pointers to NUL-terminated strings owned by
    // `args`, which outlives the call; execvp only reads them, and returns only on failure.
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    let error = std::io::Error::last_os_error();
    log::error!("error: cannot run {program}: {error}");
    exit::USAGE
}

/// `--status`: the record for a person, or as it is.
#[cfg_attr(test, allow(dead_code))]
fn show_status(path: &std::path::Path, json: bool) -> u8 {
    use cfs_setup_root::status;
    match status::read(path) {
        Ok((text, _)) if json => {
            print!("{text}");
            exit::OK
        }
        Ok((_, value)) => {
            print!(
                "{}",
                status::human(&value, status::running_root_source().as_deref())
            );
            exit::OK
        }
        Err(e @ status::StatusError::Missing { .. }) => {
            eprintln!("cfs-setup-root: {e}");
            exit::NO_STATUS
        }
        Err(e) => {
            eprintln!("cfs-setup-root: {e}");
            exit::USAGE
        }
    }
}
