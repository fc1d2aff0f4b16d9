//! Benchmark helper: what the pieces of one setup cost, timed in-process, many times.
//!
//! ```text
//! probe [--repeat N] IMAGE
//! ```
//!
//! Times, each N times: the kernel feature probe as `cfs-setup-root` runs it
//! (`features::probe`), one erofs superblock made from IMAGE and dropped (what the erofs
//! step costs, and what the start-up probe used to add before it), opening
//! `/dev/kmsg` for writing (the logger's first step), and reading IMAGE whole (what the
//! userspace digest check reads). Nothing is attached; every mount made is detached and
//! dropped at once. Needs root. One `key=value` line per piece on stdout.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::process::exit;
use std::time::{Duration, Instant};

use cfs_setup_root::features;
use cfs_setup_root::mount::{FsContext, proc_fd_path};
use rustix::mount::MountAttrFlags;

fn time(name: &str, repeat: usize, mut f: impl FnMut()) {
    let mut v: Vec<Duration> = (0..repeat)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    println!(
        "piece={name} runs={repeat} min_us={:.1} median_us={:.1} max_us={:.1}",
        v[0].as_secs_f64() * 1e6,
        v[v.len() / 2].as_secs_f64() * 1e6,
        v[v.len() - 1].as_secs_f64() * 1e6
    );
}

fn main() {
    let mut repeat = 200usize;
    let mut image = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(200)
                    .max(1)
            }
            "--bench" => {}
            _ => image = Some(a),
        }
    }
    let Some(image) = image else {
        eprintln!("usage: probe [--repeat N] IMAGE");
        exit(2)
    };
    let img = File::open(&image).unwrap_or_else(|e| {
        eprintln!("probe: {image}: {e}");
        exit(1)
    });

    time("probe-overlay-and-detached-trees", repeat, || {
        features::probe().expect("probe (needs root)");
    });
    // What the erofs step's superblock costs (the former start-up probe made one more).
    time("probe-file-backed-erofs", repeat, || {
        let ctx = FsContext::new("erofs").expect("fsopen erofs");
        ctx.set_string("source", &proc_fd_path(img.as_fd()))
            .expect("source");
        drop(
            ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY)
                .expect("erofs mount"),
        );
    });
    time("open-dev-kmsg", repeat, || {
        drop(std::fs::OpenOptions::new().write(true).open("/dev/kmsg"));
    });
    let mut buf = Vec::new();
    time("read-image-whole", repeat, || {
        buf.clear();
        File::open(&image)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .expect("read image");
    });
}
