#!/usr/bin/env python3
"""Photo pipeline benchmark: Curbside against vipsthumbnail (libvips) and ImageMagick, same run,
same inputs, each producing a JPEG with the long edge <= 1,600 px, stripped, quality ~80.

    python3 scripts/bench-photo.py [--runs N]

Inputs: the phone photos in ../shared/data/photos/mobile/ plus a generated 12 MP (4032x3024)
and 48 MP (8064x6048) JPEG made from a real photo (upscaled, with sensor-like noise, q92).
Each tool runs as a whole process, as an app or server would run it; the figure is the median
wall time of N runs after one warm-up, and the peak RSS is the largest seen (from wait4).

Targets (issue #3): Curbside <= 1.0x vipsthumbnail's time and <= 0.3x ImageMagick's; peak RSS
<= 64 MB for 12 MP. Needs: apt-get install libvips-tools imagemagick.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "photos"
WORK = ROOT / "target" / "bench-photo"


def run(cmd):
    """Wall time (s) and peak RSS (KB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    return elapsed, usage.ru_maxrss


def measure(cmd, out, runs):
    run(cmd)  # warm-up: page cache, dynamic loader
    times, rss = [], 0
    for _ in range(runs):
        t, r = run(cmd)
        times.append(t)
        rss = max(rss, r)
    return statistics.median(times), rss, out.stat().st_size


def generate(src, width, height, dest):
    if not dest.exists():
        subprocess.run(
            ["convert", str(src), "-resize", f"{width}x{height}!", "-attenuate", "0.4",
             "+noise", "Gaussian", "-quality", "92", str(dest)],
            check=True,
        )
    return dest


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for tool in ("vipsthumbnail", "convert"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install libvips-tools imagemagick")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "curbside"], cwd=ROOT, check=True)
    curbside = ROOT / "target" / "release" / "curbside"
    WORK.mkdir(parents=True, exist_ok=True)

    inputs = sorted((DATA / "mobile").glob("*.jpg"))
    inputs.append(generate(DATA / "mobile" / "jolla.jpg", 4032, 3024, WORK / "generated-12mp.jpg"))
    inputs.append(generate(DATA / "mobile" / "jolla.jpg", 8064, 6048, WORK / "generated-48mp.jpg"))

    vips_version = subprocess.run(["vipsthumbnail", "--vips-version"], capture_output=True, text=True).stdout.strip()
    im_version = subprocess.run(["convert", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"peers: {vips_version}; {im_version.replace('Version: ', '')}")
    print(f"median of {args.runs} runs after a warm-up; RSS is the peak over all runs\n")
    header = (f"| photo | MP | tool | time ms | bytes | peak RSS MB | time vs vips | time vs IM |")
    print(header)
    print("|---|---|---|---|---|---|---|---|")

    ok = True
    for src in inputs:
        identify = subprocess.run(["identify", "-format", "%w %h", str(src)], capture_output=True, text=True).stdout
        w, h = map(int, identify.split()[:2])
        mp = w * h / 1e6
        outs = {name: WORK / f"{src.stem}.{name}.jpg" for name in ("curbside", "vips", "magick")}
        results = {
            "curbside": measure([curbside, "photo", src, "--out", outs["curbside"]], outs["curbside"], args.runs),
            "vips": measure(["vipsthumbnail", src, "--size", "1600x1600", "-o", f"{outs['vips']}[Q=80,strip]"],
                            outs["vips"], args.runs),
            "magick": measure(["convert", src, "-auto-orient", "-resize", "1600x1600", "-strip", "-quality", "80",
                               outs["magick"]], outs["magick"], args.runs),
        }
        ct = results["curbside"][0]
        for name, (t, rss, size) in results.items():
            vs_vips = f"{ct / results['vips'][0]:.2f}×" if name == "curbside" else ""
            vs_im = f"{ct / results['magick'][0]:.2f}×" if name == "curbside" else ""
            print(f"| {src.name} | {mp:.1f} | {name} | {t * 1000:.0f} | {size:,} | {rss / 1024:.1f} | {vs_vips} | {vs_im} |")
        vips_ratio = ct / results["vips"][0]
        im_ratio = ct / results["magick"][0]
        rss_mb = results["curbside"][1] / 1024
        if vips_ratio > 1.0 or im_ratio > 0.3:
            ok = False
        if 11 <= mp <= 13 and rss_mb > 64:
            ok = False

    print(f"\ntargets (≤ 1.0× vipsthumbnail, ≤ 0.3× ImageMagick, ≤ 64 MB at 12 MP): {'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
