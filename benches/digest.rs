//! Benchmark helper: throughput of our userspace fs-verity digest, timed in-process.
//!
//! ```text
//! digest [--alg sha256|sha512] [--repeat N] FILE...
//! ```
//!
//! For each file, N times: open it, `compute_fsverity_digest(alg, &mut file)` (the file itself
//! is the reader: buffering is the digest code's job), and time it. Also times plain `sha2`
//! over the same bytes already in memory, fed 8 KiB at a time (what `openssl speed -bytes 8192`
//! measures): that is the ceiling the Merkle tree can approach from this crate.
//! Prints one `key=value` line per file. `benches/run` checks `digest=` against `fsverity digest`.

use std::fs::File;
use std::io::Read;
use std::process::exit;
use std::time::{Duration, Instant};

use cfs_setup_root::digest::{Algorithm, compute_fsverity_digest};
use sha2::Digest as _;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn raw_sha2(alg: Algorithm, data: &[u8]) -> Duration {
    let start = Instant::now();
    match alg {
        Algorithm::Sha256 => {
            let mut h = sha2::Sha256::new();
            for c in data.chunks(8192) {
                h.update(c);
            }
            std::hint::black_box(h.finalize());
        }
        Algorithm::Sha512 => {
            let mut h = sha2::Sha512::new();
            for c in data.chunks(8192) {
                h.update(c);
            }
            std::hint::black_box(h.finalize());
        }
    }
    start.elapsed()
}

fn main() {
    let mut alg = Algorithm::Sha256;
    let mut repeat = 5usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--alg" => {
                alg = match args.next().as_deref() {
                    Some("sha256") => Algorithm::Sha256,
                    Some("sha512") => Algorithm::Sha512,
                    other => {
                        eprintln!("digest: unknown algorithm {other:?}");
                        exit(2)
                    }
                }
            }
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(5).max(1),
            // `cargo bench` appends `--bench`.
            "--bench" => {}
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        eprintln!("usage: digest [--alg sha256|sha512] [--repeat N] FILE...");
        exit(2)
    }
    let alg_name = match alg {
        Algorithm::Sha256 => "sha256",
        Algorithm::Sha512 => "sha512",
    };
    for path in &files {
        let mut times = Vec::with_capacity(repeat);
        let mut hex = String::new();
        let mut size = 0u64;
        for _ in 0..repeat {
            let start = Instant::now();
            let mut f = File::open(path).unwrap_or_else(|e| {
                eprintln!("digest: {path}: {e}");
                exit(1)
            });
            let d = compute_fsverity_digest(alg, &mut f).unwrap_or_else(|e| {
                eprintln!("digest: {path}: {e}");
                exit(1)
            });
            times.push(start.elapsed());
            hex = d.to_hex();
            size = f.metadata().map(|m| m.len()).unwrap_or(0);
        }
        let mut data = Vec::with_capacity(size as usize);
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .ok();
        let raw: Vec<Duration> = (0..repeat).map(|_| raw_sha2(alg, &data)).collect();
        let (min, med, max) = stats(times);
        let (rmin, rmed, _) = stats(raw);
        println!(
            "file={path} alg={alg_name} bytes={size} digest={hex} min_ns={} median_ns={} max_ns={} \
             best_mbps={:.0} median_mbps={:.0} sha2_raw_best_mbps={:.0} sha2_raw_median_mbps={:.0}",
            min.as_nanos(),
            med.as_nanos(),
            max.as_nanos(),
            mbps(size, min),
            mbps(size, med),
            mbps(size, rmin),
            mbps(size, rmed),
        );
    }
}
