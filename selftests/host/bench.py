# SPDX-License-Identifier: GPL-2.0
"""C virtio_balloon against rust_balloon, side by side, in the same guest.

    bench.py KDIR INITRAMFS OUTDIR [--rounds N] [--smoke]

Each round boots the same guest once per driver and scenario (C first, then
Rust, alternating each round). Before ballooning, the guest writes all its
free memory once and frees it again, as a guest that has run for a while:
the host backs all of it and has something to give back. Measured from the
host, over QMP and /proc:

- inflate: seconds for `query-balloon` to reach the balloon size;
- deflate: seconds back to an empty balloon;
- RSS reclaimed: how much the QEMU process's RSS drops, per GiB ballooned;
- host memory freed: how much the host's MemFree grows, per GiB ballooned.
  RSS undercounts nothing but overcounts: a transparent huge page the guest
  gave back only in part leaves the RSS but stays allocated on the host;
- guest CPU: system + irq + softirq time of the guest while inflating;
- QEMU host kernel CPU: system time of the QEMU process while inflating and
  deflating, mostly the madvise() QEMU makes for each 4 KiB frame: the
  floor under both drivers' times;
- reporting: with free page reporting, after the guest frees a buffer (a
  file in a tmpfs), how much the QEMU RSS drops per GiB freed, and seconds
  until it has dropped by 90% of that; the median of 3 such cycles per boot.

Scenarios: 1 of 2 GiB with the host's transparent huge pages (QEMU asks for
them with MADV_HUGEPAGE) and without them (PR_SET_THP_DISABLE); 512 MiB of
2 GiB when 384 MiB of the guest's free memory is in 1 MiB holes (a guest
that has run a while: the allocator hands out small holes first, and a
balloon page in a host huge page leaves the rest of it allocated on the
host); 6 of 8 GiB; and reporting 1 GiB in a 2 GiB guest.

Prints a table of medians (min-max) with the ratio Rust/C, writes
results.json and timeline.png (balloon size and host RSS over time, first
round of each driver in the first scenario)."""

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

# name: (kind, guest MiB, MiB to balloon or free, host THP, MiB of holes)
SCENARIOS = {
    "1of2": ("balloon", 2048, 1024, True, 0),
    "1of2-nothp": ("balloon", 2048, 1024, False, 0),
    "half-of-2-holes": ("balloon", 2048, 512, True, 384),
    "6of8": ("balloon", 8192, 6144, True, 0),
    "report": ("report", 2048, 1024, True, 0),
}
# The same shapes, small: checks the harness, measures nothing.
SMOKE = {
    "1of2": ("balloon", 512, 128, True, 0),
    "1of2-nothp": ("balloon", 512, 128, False, 0),
    "half-of-2-holes": ("balloon", 512, 64, True, 32),
    "6of8": ("balloon", 768, 384, True, 0),
    "report": ("report", 512, 128, True, 0),
}

METRICS = {
    "balloon": [
        ("inflate_s", "inflate time (s)", "lower"),
        ("deflate_s", "deflate time (s)", "lower"),
        ("rss_reclaimed_mib_per_gib", "QEMU RSS reclaimed (MiB/GiB)", "higher"),
        ("host_freed_mib_per_gib", "host MemFree gained (MiB/GiB)", "higher"),
        ("guest_cpu_s", "guest CPU while inflating (s)", "lower"),
        # The part of the time neither driver can save: QEMU's madvise() of
        # every 4 KiB frame (MADV_DONTNEED in, MADV_WILLNEED out).
        ("host_sys_inflate_s", "QEMU host kernel CPU, inflate (s)", "info"),
        ("host_sys_deflate_s", "QEMU host kernel CPU, deflate (s)", "info"),
    ],
    "report": [
        ("report_s", "90% of it back on the host (s)", "lower"),
        ("report_returned_mib_per_gib", "QEMU RSS returned (MiB/GiB freed)", "higher"),
    ],
}


def guest_cpu_ticks(g):
    """System, irq and softirq ticks of all guest CPUs (/proc/stat)."""
    fields = g.sh("head -n1 /proc/stat").split()
    return sum(int(fields[i]) for i in (3, 6, 7))


def host_free():
    """The host's MemFree, in bytes."""
    for row in Path("/proc/meminfo").read_text().splitlines():
        if row.startswith("MemFree:"):
            return int(row.split()[1]) * 1024
    raise RuntimeError("no MemFree in /proc/meminfo")


def qemu_sys_s(g):
    """Host kernel CPU time of the QEMU process so far (/proc/PID/stat
    stime): mostly its madvise() calls for the balloon's pages."""
    fields = Path(f"/proc/{g.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / 100  # stime, field 15, in USER_HZ


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


def load(g, driver):
    g.sh(f"insmod /lib/modules/{DRIVERS[driver]}.ko")
    bound = g.sh("ls /sys/bus/virtio/drivers/" + DRIVERS[driver]).split()
    assert any(b.startswith("virtio") for b in bound), f"{driver} did not bind"


def make_holes(g, mib):
    """Fills 2 * `mib` MiB with 1 MiB files and deletes every other one: the
    guest then has `mib` MiB free in holes smaller than a huge page, beside
    its large free blocks, as a guest that has run a while does. The page
    allocator hands out the small holes first."""
    g.sh(f"mkdir /mem/h; i=0; while [ $i -lt {2 * mib} ]; do "
         "dd if=/dev/zero of=/mem/h/$i bs=1M count=1 2>/dev/null || exit 1; "
         "i=$((i + 1)); done; rm /mem/h/*[02468]", timeout=900)


def balloon_run(g, balloon_mib, holes_mib):
    g.dirty_all()
    if holes_mib:
        make_holes(g, holes_mib)
    time.sleep(1)
    pages = balloon_mib * MIB // PAGE
    timeline = []
    t0 = time.monotonic()
    thp0 = g.host_anon_huge()
    rss0, free0 = g.host_rss(), host_free()
    cpu0, sys0 = guest_cpu_ticks(g), qemu_sys_s(g)
    inflate = move(g, pages, timeline, t0)
    cpu = (guest_cpu_ticks(g) - cpu0) / 100  # USER_HZ
    sys1 = qemu_sys_s(g)
    time.sleep(0.5)
    rss1, free1 = g.host_rss(), host_free()
    sys2 = qemu_sys_s(g)
    deflate = move(g, 0, timeline, t0)
    sys3 = qemu_sys_s(g)
    gib = balloon_mib / 1024
    return {
        "inflate_s": inflate,
        "deflate_s": deflate,
        "rss_reclaimed_mib_per_gib": (rss0 - rss1) / MIB / gib,
        "host_freed_mib_per_gib": (free1 - free0) / MIB / gib,
        "guest_cpu_s": cpu,
        "host_sys_inflate_s": sys1 - sys0,
        "host_sys_deflate_s": sys3 - sys2,
        "host_thp_mib_before": thp0 / MIB,
        "timeline": timeline,
    }


def report_run(g, buffer_mib, cycles=3, timeout=120, settled_s=8):
    """Median over `cycles` of: fill a buffer, free it, and follow the host
    RSS until it has not dropped for `settled_s` (four of the kernel's
    reporting rounds, 2 s apart). Reported: how much came back per GiB
    freed, and the time until 90% of that had come back.

    Not all of a freed buffer comes back: reporting takes only free 2 MiB
    blocks, and a block keeps one of its pages a while if the kernel put
    something else there (tmpfs's own slab, a per-CPU free list). In a small
    guest that is 5 to 25% of 128 MiB, for either driver and by chance, so
    a fixed share of the buffer would time out now and then."""
    # Let the reports of boot-time free memory settle first.
    time.sleep(4)
    times, returned = [], []
    for _ in range(cycles):
        g.sh(f"dd if=/dev/zero of=/mem/buffer bs=1M count={buffer_mib} 2>/dev/null")
        time.sleep(1)
        rss0 = g.host_rss()
        start = time.monotonic()
        g.sh("rm /mem/buffer")
        samples, low, low_at = [], rss0, start
        while True:
            now, rss = time.monotonic(), g.host_rss()
            samples.append((now - start, rss0 - rss))
            if rss < low - MIB:
                low, low_at = rss, now
            if now - low_at > settled_s:
                break
            if now - start > timeout:
                raise RuntimeError(f"host RSS still falling after {timeout}s")
            time.sleep(0.05)
        drop = max(d for _, d in samples)
        if drop < buffer_mib * MIB / 2:
            raise RuntimeError(f"host RSS dropped by {drop / MIB:.0f} MiB of the "
                               f"{buffer_mib} MiB freed (from {rss0 / MIB:.0f} MiB)")
        times.append(next(t for t, d in samples if d >= 0.9 * drop))
        returned.append(drop / MIB / (buffer_mib / 1024))
    return {"report_s": statistics.median(times),
            "report_returned_mib_per_gib": statistics.median(returned)}


def one_run(kernel, initramfs, workdir, accel, driver, scenario):
    kind, mem_mib, mib, thp, holes_mib = scenario
    device = "virtio-balloon-pci,id=balloon0"
    if kind == "report":
        device += ",free-page-reporting=on"
    g = Guest(kernel, initramfs, workdir, mem_mib=mem_mib, accel=accel, thp=thp,
              balloon=device)
    g.start()
    try:
        load(g, driver)
        res = balloon_run(g, mib, holes_mib) if kind == "balloon" else report_run(g, mib)
        splats = g.splats()
        if splats:
            raise RuntimeError(f"{driver}: kernel splat:\n" + "\n".join(splats))
        return res
    finally:
        g.stop()


def summarize(results, scenarios):
    summary = {}
    for name, scenario in scenarios.items():
        for key, _, _ in METRICS[scenario[0]]:
            row = {}
            for driver in DRIVERS:
                values = [r[key] for r in results[name][driver]]
                row[driver] = {"median": statistics.median(values),
                               "min": min(values), "max": max(values)}
            c, rust = row["c"]["median"], row["rust"]["median"]
            row["rust_over_c"] = rust / c if c else None
            summary[f"{name}.{key}"] = row
    return summary


def print_table(summary, scenarios, rounds, accel):
    print(f"\n{rounds} rounds, QEMU {accel}; medians (min-max)")
    print(f"{'scenario: metric':50} {'C':>22} {'Rust':>22} {'Rust/C':>7}")
    for name, (kind, mem_mib, mib, thp, holes_mib) in scenarios.items():
        what = (f"{mib} of {mem_mib} MiB" if kind == "balloon"
                else f"{mib} MiB freed in {mem_mib} MiB")
        if holes_mib:
            what += f", {holes_mib} MiB of it free in 1 MiB holes"
        print(f"{name} ({what}, host THP {'on' if thp else 'off'})")
        for key, label, better in METRICS[kind]:
            row = summary[f"{name}.{key}"]
            cells = [f"{row[d]['median']:.2f} ({row[d]['min']:.2f}-{row[d]['max']:.2f})"
                     for d in DRIVERS]
            ratio = row["rust_over_c"]
            print(f"  {label:48} {cells[0]:>22} {cells[1]:>22} "
                  f"{(f'{ratio:.2f}' if ratio else '-'):>7}  "
                  + ("(floor of both)" if better == "info" else f"({better} is better)"))


def plot(results, path, scenario):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _, mem_mib, balloon_mib, _, _ = scenario
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
    ap.add_argument("--only", help="comma-separated scenarios to run")
    args = ap.parse_args()
    kernel = f"{args.kdir}/arch/x86/boot/bzImage"
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    scenarios, rounds = (SMOKE, 1) if args.smoke else (SCENARIOS, args.rounds)
    if args.only:
        scenarios = {k: v for k, v in scenarios.items() if k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        accel = pick_accel(kernel, args.initramfs, f"{tmp}/probe")
        results = {name: {d: [] for d in DRIVERS} for name in scenarios}
        for r in range(rounds):
            # Interleaved, alternating who goes first, so drift hits both.
            order = list(DRIVERS) if r % 2 == 0 else list(reversed(DRIVERS))
            for name, scenario in scenarios.items():
                for driver in order:
                    res = one_run(kernel, args.initramfs, f"{tmp}/{name}-{driver}{r}",
                                  accel, driver, scenario)
                    results[name][driver].append(res)
                    figures = ", ".join(f"{k} {v:.2f}" for k, v in res.items()
                                        if k != "timeline")
                    print(f"round {r + 1}/{rounds} {name} {driver:4}: {figures}", flush=True)
    summary = summarize(results, scenarios)
    print_table(summary, scenarios, rounds, accel)
    (out / "results.json").write_text(json.dumps({
        "accel": accel, "rounds": rounds,
        "scenarios": {k: dict(zip(("kind", "guest_mib", "mib", "host_thp", "holes_mib"), v))
                      for k, v in scenarios.items()},
        "summary": summary,
        "runs": {name: {d: [{k: v for k, v in r.items() if k != "timeline"}
                            for r in results[name][d]] for d in DRIVERS}
                 for name in scenarios},
    }, indent=2))
    first = next((n for n, s in scenarios.items() if s[0] == "balloon"), None)
    if first is None:
        print(f"wrote {out}/results.json (no balloon scenario, no plot)")
        return
    plot(results[first], out / "timeline.png", scenarios[first])
    print(f"wrote {out}/results.json and {out}/timeline.png")


if __name__ == "__main__":
    sys.exit(main())
