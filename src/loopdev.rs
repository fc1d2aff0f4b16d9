//! Loop-device fallback for kernels whose erofs cannot mount a regular file (before 6.12).
//!
//! A free device is taken from `/dev/loop-control` and bound to the image fd with one
//! `LOOP_CONFIGURE` (read-only, autoclear). With autoclear the kernel releases the device
//! when its last user goes: the erofs superblock, or our fd if the mount never happened.
//! So dropping a `LoopDevice` whose mount failed leaves no device behind.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

const LOOP_CTL_GET_FREE: Opcode = 0x4C82;
const LOOP_CONFIGURE: Opcode = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}
static_assertions::assert_eq_size!(LoopInfo64, [u8; 232]);

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}
static_assertions::assert_eq_size!(LoopConfig, [u8; 304]);

/// Why no loop device could be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// `/dev/loop-control` or `/dev/loopN` could not be opened.
    #[error("cannot open {path}: {} (is the loop module loaded and /dev populated?)", std::io::Error::from(*errno))]
    Open {
        /// The device path.
        path: String,
        /// The error number.
        errno: Errno,
    },
    /// An ioctl failed.
    #[error("{what} on {path}: {}", std::io::Error::from(*errno))]
    Ioctl {
        /// Which ioctl.
        what: &'static str,
        /// The device path.
        path: String,
        /// The error number.
        errno: Errno,
    },
}

/// A loop device bound read-only to a file, with autoclear set.
#[derive(Debug)]
pub struct LoopDevice {
    /// Held open: with autoclear, the device is released when its last opener is gone.
    _fd: OwnedFd,
    path: String,
}

impl LoopDevice {
    /// Binds a free loop device to `backing` (read-only, autoclear). Retries when another
    /// process takes the same free device first.
    pub fn attach(backing: BorrowedFd<'_>) -> Result<LoopDevice, LoopError> {
        let control_path = "/dev/loop-control";
        let control = rustix::fs::open(control_path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| LoopError::Open {
                path: control_path.into(),
                errno,
            })?;
        let mut last = Errno::BUSY;
        for _ in 0..16 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns the device number.
            let number = unsafe { rustix::ioctl::ioctl(&control, GetFree) }.map_err(|errno| {
                LoopError::Ioctl {
                    what: "LOOP_CTL_GET_FREE",
                    path: control_path.into(),
                    errno,
                }
            })?;
            let path = format!("/dev/loop{number}");
            let fd = match rustix::fs::open(
                path.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(errno) => return Err(LoopError::Open { path, errno }),
            };
            let mut config = loop_config(backing);
            // SAFETY: see the `Ioctl` impl of `Configure`.
            match unsafe { rustix::ioctl::ioctl(&fd, Configure(&mut config)) } {
                Ok(()) => return Ok(LoopDevice { _fd: fd, path }),
                // Someone bound it between GET_FREE and CONFIGURE: take another.
                Err(Errno::BUSY) => last = Errno::BUSY,
                Err(errno) => {
                    return Err(LoopError::Ioctl {
                        what: "LOOP_CONFIGURE",
                        path,
                        errno,
                    });
                }
            }
        }
        Err(LoopError::Ioctl {
            what: "LOOP_CONFIGURE",
            path: "/dev/loop*".into(),
            errno: last,
        })
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

fn loop_config(backing: BorrowedFd<'_>) -> LoopConfig {
    LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    }
}

struct GetFree;

// SAFETY: LOOP_CTL_GET_FREE ignores its argument and returns a device number (>= 0).
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _ptr: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| Errno::INVAL)
    }
}

struct Configure<'a>(&'a mut LoopConfig);

// SAFETY: LOOP_CONFIGURE reads one `struct loop_config` (304 bytes, layout asserted above)
// from the pointer and writes nothing back.
unsafe impl Ioctl for Configure<'_> {
    type Output = ();
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CONFIGURE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (self.0 as *mut LoopConfig).cast()
    }

    unsafe fn output_from_ptr(
        _out: IoctlOutput,
        _ptr: *mut std::ffi::c_void,
    ) -> rustix::io::Result<()> {
        Ok(())
    }
}
