//! Host tests: images written by the C `mkcomposefs` (composefs 1.0.8, built by
//! `tests/tools/build-mkcomposefs`) boot like cfsctl's, from the layout the C tools write
//! (`objects/XX/<rest>`, `images/<hex>`, no `meta.json`).
//!
//! What differs from cfsctl (0.9.4), as these tests pin down:
//! * reading a directory, mkcomposefs does not keep hard links: each name becomes an inode
//!   of its own (nlink 1) redirected to the same object. From a dump file (`--from-file`)
//!   it keeps them, and then writes cfsctl's V1 image byte for byte;
//! * by default it writes composefs_version 0 (1 only when a whiteout needs it): that is
//!   cfsctl's `--erofs-version 0`; `--min-version=1` gives cfsctl's V1;
//! * it has sha256 only;
//! * it keeps the tree's root metadata and every xattr, where `cfsctl create-image` copies
//!   `/usr`'s metadata to `/` and keeps allowlisted xattrs (`--no-propagate-usr-to-root`
//!   turns both off).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use cfs_setup_root::digest::{Algorithm, compute_fsverity_digest};
use common::*;

/// The mount paths each C image is booted on.
const PATHS: &[(&str, &[&str])] = &[
    ("detached", &["--force-overlay", "detached"]),
    ("attach-first", &["--force-overlay", "attach-first"]),
    ("loop", &["--force-erofs", "loop"]),
];

/// The fs-verity sha256 digest of a file, hex.
fn fsverity_sha256(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    compute_fsverity_digest(Algorithm::Sha256, &mut f)
        .unwrap()
        .to_hex()
}

/// Runs `mkcomposefs --print-digest ARGS... SOURCE <dir>.cfs` and stores the image in the
/// repository `dir`: as an object under its own fs-verity digest, linked as `images/<hex>`,
/// the layout the C tools and cfsctl share. No `meta.json` (the C tools write none).
fn mkcomposefs_image(dir: &Path, args: &[&str], source: &Path) -> Repo {
    let objects = dir.join("objects");
    fs::create_dir_all(&objects).unwrap();
    fs::create_dir_all(dir.join("images")).unwrap();
    let image = dir.with_extension("cfs");
    let out = sh(Command::new(mkcomposefs())
        .arg("--print-digest")
        .args(args)
        .arg(source)
        .arg(&image));
    let hex = fsverity_sha256(&image);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        hex,
        "mkcomposefs --print-digest and our userspace fs-verity digest disagree"
    );
    let (head, rest) = hex.split_at(2);
    fs::create_dir_all(objects.join(head)).unwrap();
    fs::rename(&image, objects.join(head).join(rest)).unwrap();
    symlink(
        format!("../objects/{head}/{rest}"),
        dir.join("images").join(&hex),
    )
    .unwrap();
    Repo {
        dir: dir.to_path_buf(),
        algorithm: "sha256",
        hex,
    }
}

/// A C-layout repository at `dir` holding an image of `tree`, its files stored by
/// `mkcomposefs --digest-store=<dir>/objects FLAGS TREE`.
fn mkcomposefs_repo(tree: &Path, dir: &Path, flags: &[&str]) -> Repo {
    let store = format!("--digest-store={}", dir.join("objects").display());
    let mut args = vec![store.as_str()];
    args.extend_from_slice(flags);
    mkcomposefs_image(dir, &args, tree)
}

/// A fresh source tree and the base directory it lives in.
fn fresh_tree(name: &str) -> (PathBuf, PathBuf) {
    let base = scratch(name);
    let tree = base.join("tree");
    build_tree(&tree);
    (base, tree)
}

/// The composefs header at the start of the image (little-endian u32s: magic, header
/// version, flags, composefs_version); returns composefs_version.
fn composefs_version(repo: &Repo) -> u32 {
    let image = fs::read(repo.dir.join("images").join(&repo.hex)).unwrap();
    let word = |i: usize| u32::from_le_bytes(image[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(word(0), 0xd078_629a, "composefs header magic");
    assert_eq!(word(1), 1, "composefs header version");
    word(3)
}

/// The tree's files of more than 64 bytes are objects under their own fs-verity digest;
/// inline ones are not.
fn check_objects(repo: &Repo, tree: &Path) {
    let object = |file: &str| {
        let hex = fsverity_sha256(&tree.join(file));
        repo.dir.join("objects").join(&hex[..2]).join(&hex[2..])
    };
    for file in [
        "usr/lib/big.bin",
        "usr/bin/setuid",
        "usr/lib/owned",
        "usr/bin/hard1",
        "usr/bin/capable",
    ] {
        let path = object(file);
        assert_eq!(
            fs::read(&path).unwrap_or_else(|e| panic!("{file}: {}: {e}", path.display())),
            fs::read(tree.join(file)).unwrap(),
            "{file}"
        );
    }
    assert!(!object("usr/share/doc/small").exists());
    assert!(!object("usr/bin/hello").exists());
}

/// The files under `dir/objects`, relative to `dir`.
fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in fs::read_dir(dir.join("objects")).unwrap() {
        for obj in fs::read_dir(sub.unwrap().path()).unwrap() {
            found.push(obj.unwrap().path().strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    found.sort();
    found
}

#[test]
fn c_images_boot_on_several_mount_paths() {
    if !root_or_skip("c_images_boot_on_several_mount_paths") {
        return;
    }
    // mkcomposefs' defaults (mtimes kept, composefs_version 0) and --use-epoch (mtimes 0).
    for (variant, flags) in [("default", &[][..]), ("use-epoch", &["--use-epoch"][..])] {
        let (base, tree) = fresh_tree(&format!("mkcfs-{variant}"));
        let repo = mkcomposefs_repo(&tree, &base.join("repo"), flags);
        assert!(!repo.dir.join("meta.json").exists());
        assert_eq!(composefs_version(&repo), 0, "[{variant}] composefs_version");
        check_objects(&repo, &tree);
        let tree_mtime = fs::metadata(tree.join("usr/lib/big.bin")).unwrap().mtime();
        let want_mtime = if flags.is_empty() { tree_mtime } else { 0 };
        for (name, path_flags) in PATHS {
            let ctx = format!("{variant}/{name}");
            let (sysroot, ns, run) =
                boot(&repo, &format!("composefs=?{}", repo.hex), path_flags, None);
            run.ok();
            check_root_with(&repo, &sysroot, &ns, &ctx, HardLinks::Split);
            let root = ns.path(&sysroot.path);
            assert_eq!(
                fs::metadata(root.join("usr/lib/big.bin")).unwrap().mtime(),
                want_mtime,
                "[{ctx}] mtime"
            );
            // /etc: the default overlay over the image's, writes going to the state dir.
            assert_eq!(
                fs::read_to_string(root.join("etc/hostname")).unwrap(),
                "composefs-test\n",
                "[{ctx}] /etc"
            );
            fs::write(root.join("etc/written"), b"w").unwrap();
            assert!(
                sysroot.deploy(&repo.hex).join("etc/upper/written").exists(),
                "[{ctx}] /etc upper"
            );
        }
    }
}

#[test]
fn c_images_are_cfsctls_byte_for_byte() {
    if !root_or_skip("c_images_are_cfsctls_byte_for_byte") {
        return;
    }
    // The same tree through both tools, cfsctl told to take it as it is (no /usr metadata
    // copied to /), as mkcomposefs does.
    let (base, tree) = fresh_tree("mkcfs-bytes");
    let as_is = ["--no-propagate-usr-to-root"];
    let c = mkcomposefs_repo(&tree, &base.join("c-repo"), &["--min-version=1"]);
    let rs = cfsctl_repo(&tree, &base.join("rs-v1"), "sha256", "1", &as_is);
    assert_eq!(composefs_version(&c), 1);
    // Read from the directory, the hard links are split: not cfsctl's image.
    assert_ne!(
        c.hex, rs.hex,
        "hard links split, yet the same image as cfsctl's"
    );
    // The objects are the same files under the same names.
    let (c_objects, rs_objects) = (objects(&c.dir), objects(&rs.dir));
    assert_eq!(c_objects.len(), 6, "five external files and the image");
    for rel in c_objects.iter().filter(|p| !p.ends_with(&c.hex[2..])) {
        assert!(
            rs_objects.contains(rel),
            "{} not in cfsctl's",
            rel.display()
        );
        assert!(fs::read(c.dir.join(rel)).unwrap() == fs::read(rs.dir.join(rel)).unwrap());
    }

    // From cfsctl's dump of the tree, which names the hard links, mkcomposefs writes
    // cfsctl's V1 image, byte for byte; it boots with its links kept, over the objects the
    // directory run stored.
    let dump = sh(Command::new(cfsctl())
        .args(["--hash", "sha256", "--no-repo", "create-dumpfile"])
        .args(as_is)
        .arg(&tree));
    let dump_file = base.join("tree.dump");
    fs::write(&dump_file, &dump.stdout).unwrap();
    let from_dump = mkcomposefs_image(&c.dir, &["--from-file", "--min-version=1"], &dump_file);
    assert_eq!(
        from_dump.hex, rs.hex,
        "mkcomposefs --from-file vs cfsctl V1"
    );
    let image = |r: &Repo| fs::read(r.dir.join("images").join(&r.hex)).unwrap();
    assert!(image(&from_dump) == image(&rs));
    for (name, flags) in [PATHS[0], PATHS[2]] {
        // The karg form `cfsctl compute-karg` prints for V1 images.
        let karg = format!("composefs.digest=?v1-sha256-12:{}", from_dump.hex);
        let (sysroot, ns, run) = boot(&from_dump, &karg, flags, None);
        run.ok();
        check_root(&from_dump, &sysroot, &ns, &format!("from-dump/{name}"));
    }

    // Without hard links in the tree, the directory run gives cfsctl's images too:
    // --min-version=1 its V1, the default its V0.
    fs::remove_file(tree.join("usr/bin/hard2")).unwrap();
    let rs1 = cfsctl_repo(&tree, &base.join("rs-v1-nolink"), "sha256", "1", &as_is);
    let rs0 = cfsctl_repo(&tree, &base.join("rs-v0-nolink"), "sha256", "0", &as_is);
    let c1 = mkcomposefs_repo(&tree, &base.join("c-v1-nolink"), &["--min-version=1"]);
    let c0 = mkcomposefs_repo(&tree, &base.join("c-v0-nolink"), &[]);
    assert_eq!(
        c1.hex, rs1.hex,
        "no hard links: mkcomposefs --min-version=1 vs V1"
    );
    assert_eq!(c0.hex, rs0.hex, "no hard links: mkcomposefs default vs V0");
}

#[test]
fn c_repository_takes_the_algorithm_from_the_argument() {
    if !root_or_skip("c_repository_takes_the_algorithm_from_the_argument") {
        return;
    }
    // mkcomposefs 1.0.8 has sha256 only (32-byte digests throughout libcomposefs, no
    // option for another hash), so there is no sha512 C image to boot. Without meta.json
    // the algorithm follows each argument: a sha512 one finds no image, the next is tried.
    let (base, tree) = fresh_tree("mkcfs-karg");
    let repo = mkcomposefs_repo(&tree, &base.join("repo"), &[]);
    let sha512 = "ab".repeat(64);
    for karg in [
        format!("composefs=?sha256:{}", repo.hex),
        format!("composefs=?{sha512} composefs=?{}", repo.hex),
        format!(
            "composefs.digest=?v1-sha512-12:{sha512} composefs=?{}",
            repo.hex
        ),
    ] {
        let (sysroot, ns, run) = boot(&repo, &karg, &[], None);
        run.ok();
        check_root_with(&repo, &sysroot, &ns, &karg, HardLinks::Split);
        assert!(
            run.stderr
                .contains("no meta.json: taking the algorithm from the argument"),
            "{}",
            run.stderr
        );
        if karg.contains(&sha512) {
            assert!(
                run.stderr.contains("no such image in the repository"),
                "{}",
                run.stderr
            );
        }
    }
    let (_sysroot, _ns, run) = boot(&repo, &format!("composefs=?{sha512}"), &[], None);
    run.fails(3, &["no usable composefs image", "no such image"]);
}
