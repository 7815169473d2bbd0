#!/usr/bin/env python3
"""Who splits the busy workload's huge mappings: the bench's busy round
(bench.py, one driver at a time) with kprobes on split_huge_pmd_locked()
and __split_huge_pmd() that record each hit's kernel stack, counted by
the stack's callers.

In the busy scenario reclaim split 14 to 59 PMD mappings a round (C 24
to 44, Rust 14 to 59) and none with the hot file locked in memory
(docs/benchmark.md, "the workload's hot file under TCG"). For a file
mapping a split clears the PMD with a flush of its 2 MiB
(pmdp_huge_clear_flush(), mm/huge_memory.c), more than x86 flushes page
by page, so the CPU's whole TLB goes; under TCG, QEMU's software TLB
with it.

The trace runs from before the bench's window to after it, so it also
holds what the bench runs in the guest afterwards (an exec's split in
docs/probe-pmd-split-output.txt's second pair).

Run through bench.sh: RB_BENCH_PY=probe_pmd_split.py RB_BENCH_OUT=DIR
scripts/bench.sh [--rounds N]
"""
import collections
import re
import sys
from pathlib import Path

import bench
from guest import pick_accel

TRACING = "/sys/kernel/tracing"
# Both ways into __split_huge_pmd_locked(), which counts thp_split_pmd:
# rmap's unmap and migration call split_huge_pmd_locked(), the rest
# __split_huge_pmd(), which calls split_huge_pmd_locked() too: such a
# split is counted once, by the callers (see `stacks`). A hit on
# split_huge_pmd_locked() of a PMD that is not huge splits nothing: the
# counts are compared with thp_split_pmd.
PROBES = [("split", "__split_huge_pmd"), ("split_locked", "split_huge_pmd_locked")]
original = {"start_busy": bench.start_busy, "busy_run": bench.busy_run}


def start_busy(g, lock_hot=False):
    """Arms the kprobes before the bench's window, as probe_busy_trace.py
    starts its trace: no guest command inside the window."""
    original["start_busy"](g, lock_hot)
    g.sh(f"set -e; mount -t tracefs nodev {TRACING} 2>/dev/null || true; "
         f"echo 0 > {TRACING}/tracing_on; "
         f"echo 8192 > {TRACING}/buffer_size_kb; "
         # A jump-optimised kprobe's stack ends at its trampoline.
         "echo 0 > /proc/sys/debug/kprobes-optimization; "
         + "".join(f"echo 'p:{name} {function}' >> {TRACING}/kprobe_events; "
                   f"echo stacktrace > {TRACING}/events/kprobes/{name}/trigger; "
                   f"echo 1 > {TRACING}/events/kprobes/{name}/enable; "
                   for name, function in PROBES)
         + f"echo 1 > {TRACING}/tracing_on")


def busy_run(g, mib, lock_hot=False):
    res = original["busy_run"](g, mib, lock_hot)
    g.sh(f"echo 0 > {TRACING}/tracing_on")
    res["trace"] = g.sh(f"cat {TRACING}/trace", timeout=300)
    return res


bench.start_busy = start_busy
bench.busy_run = busy_run


def stacks(trace):
    """Each hit's task and function, and its callers (the stack's lines
    after the hit, '=> function+offset/size'), the tracer's own left out."""
    hits, current = [], None
    for line in trace.splitlines():
        line = line.strip()
        if re.search(r" (split|split_locked): \(", line):
            task = line.split()[0].rsplit("-", 1)[0]
            current = [f"{task} {line.split(': (')[1].split('+')[0]}", []]
            hits.append(current)
        elif line.startswith("=>") and current:
            caller = line[3:].split("+")[0]
            if caller not in ("kprobe_trace_func", "kprobe_dispatcher", "kprobe_ftrace_handler",
                              "kprobe_int3_handler", "do_int3", "exc_int3", "asm_exc_int3",
                              "aggr_pre_handler", "split_huge_pmd_locked"):
                current[1].append(caller)
    # A split through __split_huge_pmd() hits both probes: keep its first.
    return [h for h in hits
            if not (h[0].endswith("split_huge_pmd_locked") and "__split_huge_pmd" in h[1])]


def main():
    kdir, initramfs, out = sys.argv[1:4]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 1
    kernel = f"{kdir}/arch/x86/boot/bzImage"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    accel = pick_accel(kernel, initramfs, f"{out}/probe")
    for r in range(rounds):
        for driver in ("rust", "c") if r % 2 == 0 else ("c", "rust"):
            res = bench.one_run(kernel, initramfs, str(out / f"{driver}{r}"), accel, driver,
                                bench.SCENARIOS["busy"])
            (out / f"{driver}{r}-trace.txt").write_text(res["trace"])
            hits = stacks(res["trace"])
            print(f"round {r + 1} {driver}: {res['thp_split']} PMD splits counted "
                  f"(thp_split_pmd), {len(hits)} traced; longest stall "
                  f"{res['longest_stall_ms']:.1f} ms, worst 100 ms "
                  f"{res['worst_sample_over_before']:.2f}")
            paths = collections.Counter((task, " < ".join(callers[:10]))
                                        for task, callers in hits)
            for (task, path), n in paths.most_common():
                print(f"  {n:3} {task}: {path}")


if __name__ == "__main__":
    main()
