//! libFuzzer target: see `cfs_fuzz::config` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cfs_fuzz::config(data));
