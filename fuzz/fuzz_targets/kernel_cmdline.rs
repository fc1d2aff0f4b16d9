//! libFuzzer target: see `cfs_fuzz::kernel_cmdline` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cfs_fuzz::kernel_cmdline(data));
