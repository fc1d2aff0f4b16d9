#!/usr/bin/env python3
"""benches/report.py RAW: turn benches/run's raw key=value lines into markdown tables.

Every figure is given as min / median / max over its runs; ratios compare medians.
"""
import statistics
import sys
from collections import defaultdict

TOOLS = ["ours", "ours-peerjob", "peer", "peer-static"]
LABEL = {
    "ours": "cfs-setup-root (default: checks the image digest)",
    "ours-peerjob": "cfs-setup-root, peer's job (`check-digest = false`)",
    "peer": "composefs-setup-root 0.9.4 (dynamic)",
    "peer-static": "composefs-setup-root 0.9.4 (+crt-static)",
}
OURS = ["ours", "ours-peerjob"]
ABLATION = {
    "floor": "floor: a static glibc Rust program that only exits (exec, libc start-up, exit)",
    "dry-run": "`--dry-run`: command line, config, repository, image, kernel probe, plan; no mounts",
    "no-kmsg": "`/dev/kmsg` bound to `/dev/null` (what logging to the kernel log costs)",
    "no-erofs-probe": "`--force-erofs file` (erofs from the file, no loop fallback to decide)",
    "musl": "the same source linked against musl instead of glibc",
    "full": "full run (`check-digest = false`, as in the tables above)",
}
PIECES = {
    "probe-overlay-and-detached-trees": "kernel probe without erofs (overlay keys, two tmpfs mounts)",
    "probe-file-backed-erofs": "one erofs superblock from the image, dropped (what the erofs step costs)",
    "open-dev-kmsg": "open `/dev/kmsg` for writing",
    "read-image-whole": "read the whole image (page cache), as the digest check does",
}


def parse(path):
    rows = []
    for line in open(path):
        d = {}
        for part in line.split():
            if "=" in part:
                k, v = part.split("=", 1)
                d[k] = v
        if d:
            rows.append(d)
    return rows


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def spread(vals, scale=1.0, fmt="{:.2f}"):
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "n/a", None
    med = statistics.median(vals)
    return f"{fmt.format(min(vals))} / **{fmt.format(med)}** / {fmt.format(max(vals))}", med


def ratio(a, b):
    if a is None or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def main():
    rows = parse(sys.argv[1])
    by = defaultdict(list)
    for r in rows:
        by[r.get("section")].append(r)
    meta = {}
    for s in ("meta", "meta-trees", "meta-versions"):
        for r in by[s]:
            meta.update(r)
    load = {r["when"]: r["loadavg"] for r in by["load"]}
    out = []
    p = out.append

    p(f"Measured {meta.get('stamp', '?')} on Linux {meta.get('kernel', '?')}, "
      f"{meta.get('ncpu', '?')} x {meta.get('cpu', '?').replace('_', ' ')}; "
      f"ours `{meta.get('ours', '?')}`, peer {meta.get('peer', '?')}, "
      f"{meta.get('cfsctl', '?').replace('_', ' ')}, fsverity {meta.get('fsverity', '?')}, "
      f"OpenSSL {meta.get('openssl', '?')}. Load average at start / end of the setup runs: "
      f"{load.get('start', '?')} / {load.get('end', '?')}.")
    p("")
    images = ", ".join(f"{k[len('image_'):]} {int(v) // 1024} KiB" for k, v in meta.items()
                       if k.startswith("image_"))
    p(f"Trees: **trixie** = Debian trixie minbase (mmdebstrap), {meta.get('trixie_entries', '?')} "
      f"entries ({meta.get('trixie_files', '?')} regular files); **small** = "
      f"{meta.get('small_entries', '?')} entries ({meta.get('small_files', '?')} files) cut from it. "
      f"A case is tree-algorithm; image sizes: {images}. Insecure repositories made by cfsctl "
      f"(`composefs=?<hex>`: this kernel has no fs-verity); /etc overlay, /var bind for every tool.")
    p("")

    setup = [r for r in by["setup"] if r.get("rc") == "0"]
    failed = [r for r in by["setup"] if r.get("rc") != "0"]
    trees = list(dict.fromkeys(r["tree"] for r in setup))
    if trees:
        p("### Time to root (warm page cache, private mount namespace per run)")
        p("")
        p("min / **median** / max in ms over interleaved runs; ratios = ours / the peer's, on "
          "medians and (in brackets) on minimums, which background load on a shared host disturbs "
          "least.")
        p("")
        p("| case | tool | runs | wall ms | CPU ms (user+sys) | vs peer | vs peer static |")
        p("|---|---|---|---|---|---|---|")
        for tree in trees:
            meds = {}
            mins = {}
            for tool in TOOLS:
                rs = [r for r in setup if r["tree"] == tree and r["tool"] == tool and r["mode"] == "warm"]
                if not rs:
                    continue
                w, meds[tool] = spread([num(r["wall_ns"]) for r in rs], 1e-6, "{:.2f}")
                mins[tool] = min(num(r["wall_ns"]) for r in rs)
                c, _ = spread([(num(r["utime_us"]) or 0) + (num(r["stime_us"]) or 0) for r in rs],
                              1e-3, "{:.2f}")
                meds.setdefault(tool + ":rows", (len(rs), w, c))
            for tool in TOOLS:
                if tool not in meds:
                    continue
                n, w, c = meds[tool + ":rows"]
                vp = (f"{ratio(meds[tool], meds.get('peer'))} ({ratio(mins[tool], mins.get('peer'))})"
                      if tool in OURS else "")
                vs = (f"{ratio(meds[tool], meds.get('peer-static'))} "
                      f"({ratio(mins[tool], mins.get('peer-static'))})" if tool in OURS else "")
                p(f"| {tree} | {LABEL[tool]} | {n} | {w} | {c} | {vp} | {vs} |")
        p("")

        p("### Cold image: evicted from the page cache before each run")
        p("")
        p("| case | tool | runs | wall ms | image pages read / image pages | vs peer |")
        p("|---|---|---|---|---|---|")
        for tree in trees:
            meds = {}
            lines = []
            for tool in TOOLS:
                rs = [r for r in setup if r["tree"] == tree and r["tool"] == tool and r["mode"] == "cold"]
                if not rs:
                    continue
                w, meds[tool] = spread([num(r["wall_ns"]) for r in rs], 1e-6)
                pages = statistics.median([num(r.get("resident_pages")) or 0 for r in rs])
                total = rs[0].get("file_pages", "?")
                lines.append((tool, len(rs), w, f"{pages:.0f} / {total}"))
            for tool, n, w, pg in lines:
                vp = ratio(meds[tool], meds.get("peer")) if tool in OURS else ""
                p(f"| {tree} | {LABEL[tool]} | {n} | {w} | {pg} | {vp} |")
        p("")

        p("### Cost per setup")
        p("")
        p("Syscalls: `strace -f -c` total (median of 3). Peak RSS: `ru_maxrss` from `wait4` over the "
          "warm runs.")
        p("")
        p("| case | tool | syscalls | vs peer | peak RSS KiB | vs peer | page faults (minor) |")
        p("|---|---|---|---|---|---|---|")
        for tree in trees:
            sc, rss, flt = {}, {}, {}
            for tool in TOOLS:
                calls = [num(r["calls"]) for r in by["strace"] if r["tree"] == tree and r["tool"] == tool]
                calls = [c for c in calls if c is not None]
                sc[tool] = statistics.median(calls) if calls else None
                rs = [r for r in setup if r["tree"] == tree and r["tool"] == tool and r["mode"] == "warm"]
                rss[tool] = statistics.median([num(r["maxrss_kb"]) for r in rs]) if rs else None
                flt[tool] = statistics.median([num(r["minflt"]) for r in rs]) if rs else None
            for tool in TOOLS:
                if rss[tool] is None:
                    continue
                s = f"{sc[tool]:.0f}" if sc[tool] is not None else "n/a"
                p(f"| {tree} | {LABEL[tool]} | {s} | "
                  f"{ratio(sc[tool], sc['peer']) if tool in OURS else ''} | {rss[tool]:.0f} | "
                  f"{ratio(rss[tool], rss['peer']) if tool in OURS else ''} | {flt[tool]:.0f} |")
        p("")
    abl = [r for r in by["ablation"] if r.get("rc") == "0"]
    if abl:
        case = abl[0]["case"]
        p(f"### Where ours spends it ({case}, ours doing the peer's job, interleaved)")
        p("")
        p("Each variant leaves one thing out; the last column is what that thing costs "
          "(median of the full run minus the variant's median).")
        p("")
        p("| variant | wall ms | full minus this |")
        p("|---|---|---|")
        meds = {}
        lines = []
        for v in ABLATION:
            rs = [r for r in abl if r["variant"] == v]
            if rs:
                w, meds[v] = spread([num(r["wall_ns"]) for r in rs], 1e-6)
                lines.append((v, w))
        for v, w in lines:
            d = "" if v == "full" or "full" not in meds else f"{meds['full'] - meds[v]:+.2f} ms"
            p(f"| {ABLATION[v]} | {w} | {d} |")
        p("")
        if any(r.get("what") == "musl-build-ignores-its-arguments" for r in by["note"]):
            p("The musl build was left out: it ignores its arguments (`#![no_main]` reads them "
              "with `std::env::args`, which is empty on musl).")
            p("")
        pieces = by["piece"]
        if pieces:
            p("In-process, 200 times each (`benches/probe.rs`), min / **median** / max in µs:")
            p("")
            p("| piece | µs |")
            p("|---|---|")
            for r in pieces:
                p(f"| {PIECES.get(r['piece'], r['piece'])} | {num(r['min_us']):.0f} / "
                  f"**{num(r['median_us']):.0f}** / {num(r['max_us']):.0f} |")
            p("")
    if failed:
        p(f"**{len(failed)} setup runs failed** (rc != 0): "
          + ", ".join(sorted({f"{r['tool']}/{r['tree']}/rc={r['rc']}" for r in failed})))
        p("")

    if by["size"]:
        p("### Binary size")
        p("")
        p("| binary | as built | stripped | needs in the initramfs besides itself |")
        p("|---|---|---|---|")
        for r in by["size"]:
            libs = r["libs"].replace("+", ", ") if r["libs"] != "none" else "nothing (static)"
            name = {"ours": "cfs-setup-root (static glibc)", "peer": LABEL["peer"],
                    "peer-static": LABEL["peer-static"],
                    "ours-musl": "cfs-setup-root built for x86_64-unknown-linux-musl"}[r["tool"]]
            p(f"| {name} | {int(r['bytes']) / 1048576:.2f} MiB | {int(r['stripped']) / 1048576:.2f} MiB "
              f"| {libs} |")
        p("")

    if by["digest"]:
        p("### Userspace fs-verity digest throughput (one CPU)")
        p("")
        p("MB/s (10^6 bytes/s), min / **median** / max. Ours: `compute_fsverity_digest` in-process "
          "(open + read + hash). `fsverity digest`, `openssl dgst`: the whole process, so on the small "
          "image start-up dominates. Limit: `openssl speed -evp ALG -bytes 8192` (an 8 KiB buffer "
          "hashed over and over, always in cache).")
        p("")
        p("| alg | data | ours | `fsverity digest` | `openssl dgst` (flat hash, whole process) | limit (`openssl speed`) | ours / limit | sha2 crate, flat, in memory | same digest |")
        p("|---|---|---|---|---|---|---|---|---|")
        for alg in ("sha256", "sha512"):
            lim = [num(r["kbps"]) * 1000 / 1e6 for r in by["digest"]
                   if r.get("tool") == "openssl" and r.get("alg") == alg and num(r.get("kbps"))]
            ls, lmed = spread(lim, 1, "{:.0f}")
            for data in ("random-256MiB", "trixie-image"):
                o = [r for r in by["digest"] if r.get("tool") == "ours" and r.get("alg") == alg
                     and r.get("data") == data]
                f = [r for r in by["digest"] if r.get("tool") == "fsverity" and r.get("alg") == alg
                     and r.get("data") == data and r.get("rc") == "0"]
                if not o and not f:
                    continue
                if o:
                    b = num(o[0]["bytes"])
                    os_, omed = spread([b / num(o[0][k]) * 1e3 for k in ("max_ns", "median_ns", "min_ns")],
                                       1, "{:.0f}")
                    raw = f"{num(o[0]['sha2_raw_median_mbps']):.0f}"
                else:
                    os_, omed, raw = "n/a", None, "n/a"
                fs, _ = spread([num(r["bytes"]) / num(r["wall_ns"]) * 1e3 for r in f], 1, "{:.0f}")
                od = [r for r in by["digest"] if r.get("tool") == "openssl-dgst" and r.get("alg") == alg
                      and r.get("data") == data and r.get("rc") == "0"]
                ods, _ = spread([num(r["bytes"]) / num(r["wall_ns"]) * 1e3 for r in od], 1, "{:.0f}")
                chk = [r for r in by["digest-check"] if r["alg"] == alg and r["data"] == data]
                same = "n/a"
                if o and chk:
                    same = "yes" if o[0]["digest"] == chk[0]["fsverity"] else "**NO**"
                p(f"| {alg} | {data} | {os_} | {fs} | {ods} | {ls} | {ratio(omed, lmed)} | {raw} | {same} |")
        p("")
    vm = by["vmboot"]
    if vm:
        p("### In a VM boot (QEMU TCG, Debian trixie, dracut + systemd, fs-verity on)")
        p("")
        p("From the journal of each boot: the unit's time from `Starting` to `Finished`, and its share "
          "of the time from kernel start to `initrd-root-fs.target`. min / **median** / max.")
        p("")
        p("| tool | boots | unit ms | boot to initrd-root-fs.target, s | share | vs peer |")
        p("|---|---|---|---|---|---|")
        meds = {}
        rows_ = []
        names = {"ours": "cfs-setup-root", "peer": "composefs-setup-root 0.9.4"}
        kinds = list(dict.fromkeys((r["tool"], r.get("extra", "")) for r in vm))
        kinds.sort(key=lambda k: (k[1] != "", k[0] != "ours"))
        for tool, extra in kinds:
            label = names.get(tool, tool) + (f", with `{extra.replace(';', ' ')}`" if extra else "")
            mine = [r for r in vm if r["tool"] == tool and r.get("extra", "") == extra]
            rs = [r for r in mine if r.get("ok") == "1"]
            bad = len(mine) - len(rs)
            key = tool if not extra else f"{tool}+{extra}"
            if not rs:
                rows_.append((key, f"| {label} | 0 ({bad} failed) | n/a | n/a | n/a | |"))
                continue
            u, meds[key] = spread([num(r["unit_us"]) for r in rs], 1e-3, "{:.0f}")
            t, _ = spread([num(r["target_us"]) for r in rs], 1e-6, "{:.1f}")
            sh, _ = spread([num(r["share_pct"]) for r in rs], 1, "{:.2f}%")
            n = f"{len(rs)}" + (f" ({bad} failed)" if bad else "")
            rows_.append((key, f"| {label} | {n} | {u} | {t} | {sh} | "))
        for key, line in rows_:
            p(line + (ratio(meds.get(key), meds.get("peer")) + " |" if key.startswith("ours") else " |"))
        p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
