# SPDX-License-Identifier: GPL-2.0
"""Not part of make check or make bench: the bench's busy scenario (bench.py,
busy_run) with the guest's scheduler and reclaim traced, to see who had
the one vCPU in each of the workload's 100 ms samples. Runs through
bench.sh, which builds the module and the initramfs for the bench kernel:

    RB_BENCH_PY=probe_busy_trace.py RB_BENCH_OUT=/tmp/trace scripts/bench.sh --rounds 2

For each round (C and Rust in turn) it keeps the guest's trace (trace.txt),
the round's figures (res.json) and the host's view of QEMU's vCPU thread
(host.json: its run and run-queue wait time from schedstat, every 10 ms),
and prints, for each sample until 0.3 s after the target, the workload's
rate over its rate before and the milliseconds each of rb-busy, the
kworkers (the balloon's work among them), kswapd, kcompactd and the rest
ran, from sched_switch; with -v (below), the sample's other events (reclaim,
kswapd wakeups, work items, the driver's rests: msleep by kprobe).

What it showed on 2026-12-07 (the driver of 8e0c8f4, bench kernel, QEMU
7.2 TCG, 2 rounds each: docs/probe-busy-trace-output.txt, and
docs/benchmark.md, "the CPU the workload had"): rb-busy had mostly 60 to
70 ms of each 100 ms sample while Rust's balloon inflated, about 50 with
C's. The worst samples' rates fell much further than the workload's CPU:
Rust's worst (0.19 of the rate before) had 0.59 of the CPU, with
kswapd's first wakeups, 14 TLB flushes and one direct reclaim by the
workload in it; four of the five lowest rates per CPU, in a C round, had
QEMU's vCPU thread on the host for only 40 to 75 ms of samples of 104 to
132 ms. In
that round C's work held the CPU for 545 of 602 ms and 610 of 636 ms of
two samples.

A round read again, with its events:

    probe_busy_trace.py --report /tmp/trace/rust0 -v"""
import collections
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import bench
from guest import pick_accel

TRACING = "/sys/kernel/tracing"
EVENTS = ["sched/sched_switch", "sched/sched_wakeup", "vmscan/mm_vmscan_kswapd_wake",
          "vmscan/mm_vmscan_kswapd_sleep", "vmscan/mm_vmscan_wakeup_kswapd",
          "vmscan/mm_vmscan_direct_reclaim_begin", "vmscan/mm_vmscan_direct_reclaim_end",
          "workqueue/workqueue_execute_start", "workqueue/workqueue_execute_end",
          "compaction/mm_compaction_kcompactd_wake", "tlb/tlb_flush"]
KPROBES = ["p:rest msleep ms=%di:u32"]

# The host's samples of the vCPU thread: (host monotonic s, run ns, wait ns),
# and the guest's clock minus the host's (ms), for the current round.
HOST = {"samples": [], "guest_minus_host_ms": 0}
original = {"move_or_stop": bench.move_or_stop, "start_busy": bench.start_busy,
            "busy_run": bench.busy_run}


def start_busy(g, lock_hot=False):
    """Starts the workload as the bench does, then tracing, and takes the
    clocks' offset: all before the bench's own probes and its rate before,
    so that the window has no more processes in the guest than the bench's
    (a first version probed in the window, and the workload had 0.41 to
    0.46 of the CPU for half a second for it)."""
    g.sh(f"mount -t tracefs nodev {TRACING} 2>/dev/null; echo 0 > {TRACING}/tracing_on; "
         f"echo boot > {TRACING}/trace_clock; echo 16384 > {TRACING}/buffer_size_kb; "
         + "".join(f"echo '{k}' >> {TRACING}/kprobe_events; " for k in KPROBES)
         + f"echo 1 > {TRACING}/events/kprobes/enable; "
         + "; ".join(f"echo 1 > {TRACING}/events/{e}/enable 2>/dev/null" for e in EVENTS)
         + "; true")
    original["start_busy"](g, lock_hot)
    HOST["guest_minus_host_ms"] = bench.guest_clock_offset_ms(g)
    g.sh(f"echo 1 > {TRACING}/tracing_on")


def vcpu_thread(g):
    """The one vCPU thread of the busy guest (one vCPU)."""
    for task in bench.vcpu_threads(g):
        return task
    raise RuntimeError("no vCPU thread (QEMU without -name debug-threads=on?)")


def sample_host(task, done):
    while not done.is_set():
        run, wait, _ = (int(x) for x in (task / "schedstat").read_text().split())
        HOST["samples"].append((time.monotonic(), run, wait))
        time.sleep(0.01)


def move_or_stop(g, pages, **kw):
    """Samples the vCPU thread on the host from the target change to 1 s
    after the balloon stops."""
    HOST["samples"] = []
    done = threading.Event()
    sampler = threading.Thread(target=sample_host, args=(vcpu_thread(g), done))
    sampler.start()
    try:
        result = original["move_or_stop"](g, pages, **kw)
        time.sleep(1.0)
    finally:
        done.set()
        sampler.join()
    return result


def busy_run(g, mib, lock_hot=False):
    """The bench's round, then the trace onto the guest's disk (read from
    its image on the host: the console is slow for a few MB), and the
    target change's time by the guest's clock (CLOCK_BOOTTIME, the trace's
    `boot` clock): the one that puts the round's samples (their ends, from
    the change) on the ends of rb-busy's rows."""
    res = original["busy_run"](g, mib, lock_hot)
    g.sh(f"echo 0 > {TRACING}/tracing_on; cat {TRACING}/trace > /mnt/trace.txt; sync",
         timeout=300)
    # A ring buffer that wrapped lost the window's first events.
    res["trace_overrun"] = int(g.sh(f"sed -n 's/^overrun: //p' {TRACING}/per_cpu/cpu0/stats"))
    ends = [int(row.split()[0]) for row in g.sh("cat /tmp/busy.log").splitlines() if row.strip()]
    samples = [round(end * 1000) for end, _ in res["timeline"]]
    known = set(ends)
    changes = [e - samples[0] for e in ends if all(e - samples[0] + s in known for s in samples)]
    if len(changes) != 1:
        raise RuntimeError(f"the change's time is not known: {changes}")
    res["change_ms"] = changes[0]
    return res


bench.move_or_stop, bench.start_busy, bench.busy_run = move_or_stop, start_busy, busy_run

LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+): (.*)$")
GROUPS = ("rb-busy", "kworker", "kswapd0", "kcompactd0", "other", "idle")


def group(comm):
    if comm.startswith("kworker"):
        return "kworker"
    if comm.startswith("swapper"):
        return "idle"
    return comm if comm in GROUPS else "other"


def report(workdir, verbose=False):
    """Prints who ran in each of the workload's samples (see the module's
    docstring)."""
    res = json.loads((workdir / "res.json").read_text())
    host = json.loads((workdir / "host.json").read_text())
    events, runs, since = [], [], None
    change = res["change_ms"] / 1000
    for line in (workdir / "trace.txt").read_text().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, ts, name, rest = m.group(1), float(m.group(3)), m.group(4), m.group(5)
        if name == "sched_switch":
            prev = re.search(r"prev_comm=(.*?) prev_pid", rest).group(1)
            if since is not None:
                runs.append((since, ts, group(prev)))
            since = ts
        elif name != "sched_wakeup":
            key = name
            if name.startswith("workqueue_execute"):
                key += ":" + rest.split("function ")[-1].split()[0][:24]
            elif name == "mm_vmscan_direct_reclaim_begin":
                key += ":" + comm
            events.append((ts, key))
    offset = host["guest_minus_host_ms"]
    samples = [((t * 1000 + offset) / 1000 - change, run, wait) for t, run, wait in host["samples"]]

    def on_host(lo, hi):
        """The vCPU thread's run and wait ms between lo and hi (s from the
        change), from the nearest samples; None where the host's samples
        (from the change on) do not cover the window."""
        if not samples or lo < samples[0][0] - 0.01 or hi > samples[-1][0] + 0.01:
            return None
        a = min(samples, key=lambda s: abs(s[0] - lo))
        b = min(samples, key=lambda s: abs(s[0] - hi))
        return (b[1] - a[1]) / 1e6, (b[2] - a[2]) / 1e6

    print(f"{workdir.name}: {res['inflate_s']:.2f} s to the target, worst sample "
          f"{res['worst_sample_over_before']:.2f} at {res['worst_sample_at_ms']} ms; "
          f"trace overruns: {res.get('trace_overrun', '?')}")
    # Each sample covers the time since the one before (100 ms or more);
    # the first one's start is not in the timeline: 100 ms.
    prev = None
    for end, rate in res["timeline"]:
        start = end - 0.1 if prev is None else prev
        prev = end
        if end > res["inflate_s"] + 0.3:
            break
        lo, hi = change + start, change + end
        ran = collections.Counter()
        for s, e, who in runs:
            part = min(e, hi) - max(s, lo)
            if part > 0:
                ran[who] += part * 1000
        host = on_host(start, end)
        print(f"  {end:5.2f} s ({(end - start) * 1000:3.0f} ms) rate {rate:4.2f} | "
              + " ".join(f"{who} {ran[who]:5.1f}" for who in GROUPS)
              + (f" | vCPU thread ran {host[0]:3.0f} waited {host[1]:3.0f} ms" if host
                 else " | vCPU thread: not sampled"))
        if verbose:
            seen = collections.Counter(k for t, k in events if lo <= t < hi)
            if seen:
                print("          ", dict(seen))


def main():
    args = sys.argv[1:]
    if args and args[0] == "--report":
        for workdir in args[1:]:
            if workdir != "-v":
                report(Path(workdir), "-v" in args)
        return
    kdir, initramfs, out = args[:3]
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 1
    kernel = f"{kdir}/arch/x86/boot/bzImage"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    accel = pick_accel(kernel, initramfs, f"{out}/probe")
    for r in range(rounds):
        for driver in ("c", "rust") if r % 2 else ("rust", "c"):
            workdir = out / f"{driver}{r}"
            res = bench.one_run(kernel, initramfs, str(workdir), accel, driver,
                                bench.SCENARIOS["busy"])
            subprocess.run(["debugfs", "-R", f"dump /trace.txt {workdir}/trace.txt",
                            f"{workdir}/disk.img"], check=True, capture_output=True)
            (workdir / "disk.img").unlink()
            (workdir / "res.json").write_text(json.dumps(res))
            (workdir / "host.json").write_text(json.dumps(HOST))
            report(workdir)


if __name__ == "__main__":
    main()
