//! A fuzzing driver for stable Rust, for machines without a nightly toolchain: the targets of
//! `cfs_fuzz`, fed mutations of their seed corpus (byte flips, inserts, deletions, repeats,
//! splices, dictionary tokens) for a time budget. No coverage feedback, so it finds less than
//! libFuzzer per second; it runs the same checks.
//!
//! Usage: mutate TARGET CORPUS_DIR SECONDS ARTIFACT_DIR [DICT]
//! A failed check saves the input as ARTIFACT_DIR/crash-<hash> and exits 1. The random seed is
//! printed; `CFS_FUZZ_SEED` replays a run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, corpus, seconds, artifacts, rest @ ..] = args.as_slice() else {
        eprintln!("usage: mutate TARGET CORPUS_DIR SECONDS ARTIFACT_DIR [DICT]");
        std::process::exit(2);
    };
    let Some(&(_, run)) = cfs_fuzz::TARGETS.iter().find(|(n, _)| n == target) else {
        eprintln!("mutate: no target {target:?}");
        std::process::exit(2);
    };
    let budget = Duration::from_secs(seconds.parse().unwrap_or(30));
    let mut seeds = read_dir(Path::new(corpus));
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let tokens = rest
        .first()
        .map(|d| read_dict(Path::new(d)))
        .unwrap_or_default();
    let seed = std::env::var("CFS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!(
        "mutate {target}: {} seeds, {} tokens, {}s, CFS_FUZZ_SEED={seed}",
        seeds.len(),
        tokens.len(),
        budget.as_secs()
    );
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut runs: u64 = 0;
    // The seeds themselves first, then mutations until the budget is spent.
    let mut pending: Vec<Vec<u8>> = seeds.clone();
    while start.elapsed() < budget {
        for _ in 0..256 {
            let input = pending
                .pop()
                .unwrap_or_else(|| mutate(&mut rng, &seeds, &tokens));
            runs += 1;
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                let path = save(Path::new(artifacts), &input);
                println!(
                    "mutate {target}: a check failed after {runs} runs; input saved as {}",
                    path.display()
                );
                std::process::exit(1);
            }
        }
    }
    println!(
        "mutate {target}: {runs} runs in {:.0}s, no failure",
        start.elapsed().as_secs_f64()
    );
}

/// xorshift64*: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A seed with one to eight stacked mutations.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(8)).min(data.len());
                data.drain(start..end);
            }
            3 if !tokens.is_empty() => {
                let t = &tokens[rng.below(tokens.len())];
                data.splice(at..at, t.iter().copied());
            }
            4 if !data.is_empty() => {
                // Repeat a slice: deep nesting, long keys, many entries.
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(16)).min(data.len());
                let piece = data[start..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    data.splice(at..at, piece.iter().copied());
                }
            }
            5 => {
                // Splice in part of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let start = rng.below(other.len() + 1);
                let end = (start + rng.below(64)).min(other.len());
                data.splice(at..at, other[start..end].iter().copied());
            }
            6 if !data.is_empty() => {
                let i = rng.below(data.len());
                const BYTES: &[u8] = b"\"'[]{}=.,#\\\n\r\t :-_0zx";
                data[i] = BYTES[rng.below(BYTES.len())];
            }
            _ => data.truncate(at),
        }
    }
    data
}

fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// libFuzzer's dictionary format: one `"token"` per line (`name="token"` too), `\xHH`, `\\`
/// and `\"` escapes, `#` comments.
fn read_dict(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            continue;
        };
        if close <= open {
            continue;
        }
        let body = &line.as_bytes()[open + 1..close];
        let mut token = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match (body[i], body.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex =
                        std::str::from_utf8(body.get(i + 2..i + 4).unwrap_or(b"")).unwrap_or("");
                    token.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    token.push(c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    tokens
}

fn save(dir: &Path, input: &[u8]) -> PathBuf {
    // FNV-1a: a stable name for the same input.
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("crash-{hash:016x}"));
    let _ = std::fs::write(&path, input);
    path
}
