# SPDX-License-Identifier: GPL-2.0
"""C virtio_balloon against rust_balloon, side by side, in the same guest.

    bench.py KDIR INITRAMFS OUTDIR [--rounds N] [--smoke]

Each round boots the same guest twice, once per driver (C first, then Rust,
alternating), dirties its memory so the host has backed it, and measures
from the host over QMP:

- inflate: seconds for `query-balloon` to reach a balloon of 1 GiB (of 2 GiB);
- deflate: seconds back to an empty balloon;
- reclaim: how much the QEMU process's RSS drops, per GiB ballooned;
- guest CPU: system + irq + softirq time the guest spent while inflating.

Prints a table of medians (min-max) with the ratio Rust/C, writes
results.json and timeline.png (balloon size and host RSS over time, one
round of each driver)."""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from guest import MIB, PAGE, Guest, pick_accel

GIB = 1 << 30
DRIVERS = {"c": "virtio_balloon", "rust": "rust_balloon"}


def guest_cpu_ticks(g):
    """System, irq and softirq ticks of all guest CPUs (/proc/stat)."""
    fields = g.sh("head -n1 /proc/stat").split()
    return sum(int(fields[i]) for i in (3, 6, 7))


def move(g, pages, timeline, t0, timeout=600):
    """Sets the target and samples until reached; returns seconds taken."""
    start = time.monotonic()
    g.set_balloon_pages(pages)
    while True:
        now = g.balloon_pages()
        timeline.append((time.monotonic() - t0, now * PAGE / MIB, g.host_rss() / MIB))
        if now == pages:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"balloon stuck at {now} of {pages} pages")
        time.sleep(0.02)


def one_run(kernel, initramfs, workdir, accel, driver, mem_mib, balloon_mib):
    g = Guest(kernel, initramfs, workdir, mem_mib=mem_mib, accel=accel)
    g.start()
    try:
        g.sh(f"insmod /lib/modules/{DRIVERS[driver]}.ko")
        bound = g.sh("ls /sys/bus/virtio/drivers/" + DRIVERS[driver]).split()
        assert any(b.startswith("virtio") for b in bound), f"{driver} did not bind"
        g.dirty(mem_mib - 256)
        time.sleep(1)
        pages = balloon_mib * MIB // PAGE
        timeline = []
        t0 = time.monotonic()
        rss0 = g.host_rss()
        cpu0 = guest_cpu_ticks(g)
        inflate = move(g, pages, timeline, t0)
        cpu = (guest_cpu_ticks(g) - cpu0) / 100  # USER_HZ
        time.sleep(0.5)
        rss1 = g.host_rss()
        deflate = move(g, 0, timeline, t0)
        splats = g.splats()
        if splats:
            raise RuntimeError(f"{driver}: kernel splat:\n" + "\n".join(splats))
        return {
            "inflate_s": inflate,
            "deflate_s": deflate,
            "reclaimed_mib_per_gib": (rss0 - rss1) / MIB / (balloon_mib / 1024),
            "guest_cpu_s": cpu,
            "timeline": timeline,
        }
    finally:
        g.stop()


METRICS = [
    ("inflate_s", "inflate time (s)", "lower"),
    ("deflate_s", "deflate time (s)", "lower"),
    ("reclaimed_mib_per_gib", "host RSS reclaimed (MiB per GiB)", "higher"),
    ("guest_cpu_s", "guest CPU while inflating (s)", "lower"),
]


def summarize(results):
    summary = {}
    for key, _, _ in METRICS:
        row = {}
        for driver in DRIVERS:
            values = [r[key] for r in results[driver]]
            row[driver] = {"median": statistics.median(values),
                           "min": min(values), "max": max(values)}
        c, rust = row["c"]["median"], row["rust"]["median"]
        row["rust_over_c"] = rust / c if c else None
        summary[key] = row
    return summary


def print_table(summary, rounds, accel, mem_mib, balloon_mib):
    print(f"\n{rounds} rounds, {balloon_mib} MiB balloon in a {mem_mib} MiB guest, "
          f"QEMU {accel}; medians (min-max)")
    print(f"{'metric':36} {'C':>22} {'Rust':>22} {'Rust/C':>8}")
    for key, label, better in METRICS:
        row = summary[key]
        cells = [f"{row[d]['median']:.2f} ({row[d]['min']:.2f}-{row[d]['max']:.2f})"
                 for d in DRIVERS]
        ratio = row["rust_over_c"]
        print(f"{label:36} {cells[0]:>22} {cells[1]:>22} "
              f"{(f'{ratio:.2f}' if ratio else '-'):>8}  ({better} is better)")


def plot(results, path, balloon_mib, mem_mib):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (size, rss) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    for driver, style in (("c", "tab:blue"), ("rust", "tab:orange")):
        t, balloon, host = zip(*results[driver][0]["timeline"])
        size.plot(t, balloon, color=style, label=f"{driver} driver")
        rss.plot(t, host, color=style, label=f"{driver} driver")
    size.set_ylabel("balloon (MiB)")
    rss.set_ylabel("QEMU RSS (MiB)")
    rss.set_xlabel("seconds since the first target")
    size.legend()
    size.set_title(f"inflate to {balloon_mib} MiB in a {mem_mib} MiB guest, then deflate"
                   " (first round of each)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kdir")
    ap.add_argument("initramfs")
    ap.add_argument("outdir")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true",
                    help="one small round: checks the harness, measures nothing")
    args = ap.parse_args()
    kernel = f"{args.kdir}/arch/x86/boot/bzImage"
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    mem_mib, balloon_mib, rounds = (2048, 1024, args.rounds)
    if args.smoke:
        mem_mib, balloon_mib, rounds = (512, 128, 1)
    with tempfile.TemporaryDirectory() as tmp:
        accel = pick_accel(kernel, args.initramfs, f"{tmp}/probe")
        results = {d: [] for d in DRIVERS}
        for r in range(rounds):
            # Interleaved, alternating who goes first, so drift hits both.
            order = list(DRIVERS) if r % 2 == 0 else list(reversed(DRIVERS))
            for driver in order:
                res = one_run(kernel, args.initramfs, f"{tmp}/{driver}{r}", accel,
                              driver, mem_mib, balloon_mib)
                results[driver].append(res)
                print(f"round {r + 1}/{rounds} {driver:4}: inflate {res['inflate_s']:.2f} s, "
                      f"deflate {res['deflate_s']:.2f} s, "
                      f"reclaimed {res['reclaimed_mib_per_gib']:.0f} MiB/GiB, "
                      f"guest CPU {res['guest_cpu_s']:.2f} s", flush=True)
    summary = summarize(results)
    print_table(summary, rounds, accel, mem_mib, balloon_mib)
    (out / "results.json").write_text(json.dumps({
        "accel": accel, "rounds": rounds, "guest_mib": mem_mib,
        "balloon_mib": balloon_mib, "summary": summary,
        "runs": {d: [{k: v for k, v in r.items() if k != "timeline"} for r in results[d]]
                 for d in DRIVERS},
    }, indent=2))
    plot(results, out / "timeline.png", balloon_mib, mem_mib)
    print(f"wrote {out}/results.json and {out}/timeline.png")


if __name__ == "__main__":
    sys.exit(main())
