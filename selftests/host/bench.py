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
host); 1 of 2 GiB with all guest RAM on the host's hugetlbfs (how much of
the balloon comes back to the host's HugePages_Free); reporting 1 GiB in a
2 GiB guest; a busy guest (below); and three quarters of 1, 4, 8 and 16 GiB
guests, per GiB, for how the cost grows (plotted in growth.png).

The busy guest (2 GiB) runs rb-busy: it writes a 256 MiB anonymous working
set and reads the first 128 MiB of a 1 GiB file on an ext4 virtio disk
through a mapping, one MiB of each per round, and logs its rounds, its
longest gap between two rounds and the CPU time it ran every 100 ms. The
whole file is in the page cache first. The balloon then takes 1 GiB: all free memory and some of the
cache (busy-ws: 1.75 GiB, into the workload's own working set). Measured
over the same 12 s from the target change for both drivers: the work lost
(issue 19: the sum over the workload's samples of (1 - rate / rate
before) x the sample's time, which does not favour the slower driver as a
rate while inflating does; a sample faster than before counts 0, time no
sample covers counts whole), split into while inflating and after; the
worst 100 ms and the longest stall; the CPU the workload lost (the same
sum over its share of the CPU, over its share before) and its least share
in 100 ms: the rounds a CPU-second buys vary too (under TCG, where reclaim
begins and where the host does not run the vCPU: docs/benchmark.md, "the
CPU the workload had"), and the share says what the balloon and the work
it makes the guest do (reclaim, kswapd) left the workload, counting its
own faults as its CPU and its waits for I/O as lost; the guest's major
faults, its kernel CPU and QEMU's. Besides: the time to the target (or to
where the driver stops) and OOM kills. The rate before is taken once the workload has been
through its working set twice. busy-alone: the busy guest with its
workload stopped (SIGSTOP) once it has been through its working set
twice, the same target: the time the one vCPU is not idle while the
balloon inflates, a floor under the busy scenario's work lost.
busy-locked, run only when named (--only): the busy scenario with the
workload's hot file locked in memory, a diagnostic of what it loses
apart from that file's pages (see rb-busy.c).

The rescue (deflate on OOM, as a workload sees it): a guest with
deflate-on-oom writes a file into a tmpfs, then the balloon takes most of
its memory and it writes the same file again, which it can do only with
memory the balloon gives back. Measured: the second write's time over the
first's, the longest the guest's shell took to answer while writing
(asked every 0.2 s over the command channel), OOM kills, and how much the
balloon released. 200 MiB left of a 1 GiB guest and 500 MiB written; 3.5
of 4 GiB ballooned and 2 GiB written.

Prints a table of medians (min-max) with the ratio Rust/C, writes
results.json and timeline.png (balloon size and host RSS over time, first
round of each driver in the first scenario)."""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guest import (HUGE_PAGE, MIB, PAGE, Guest, host_huge_free, host_huge_pages,
                   hugetlb_backing, pick_accel)

GIB = 1 << 30
DRIVERS = {"c": "virtio_balloon", "rust": "rust_balloon"}



def scenario(kind, mem_mib, mib, thp=True, holes_mib=0, hugetlb=False, smp=2, cycles=3,
             write_mib=0, settled_s=8, lock_hot=False):
    """kind, guest MiB, MiB to balloon (or free, for report), host THP,
    MiB of the guest's free memory in 1 MiB holes, RAM on host hugetlbfs,
    guest CPUs, reporting cycles in a run and how long the host's RSS must
    stay put to end one, MiB the rescue's workload writes, whether the busy
    workload locks its hot file in memory."""
    return dict(kind=kind, mem_mib=mem_mib, mib=mib, thp=thp, holes_mib=holes_mib,
                hugetlb=hugetlb, smp=smp, cycles=cycles, write_mib=write_mib,
                settled_s=settled_s, lock_hot=lock_hot)


SCENARIOS = {
    "1of2": scenario("balloon", 2048, 1024),
    "1of2-nothp": scenario("balloon", 2048, 1024, thp=False),
    "half-of-2-holes": scenario("balloon", 2048, 512, holes_mib=384),
    "1of2-hugetlbfs": scenario("hugetlbfs", 2048, 1024, hugetlb=True),
    "report": scenario("report", 2048, 1024),
    # One vCPU: under TCG two vCPUs share one host thread, and QEMU lets a
    # vCPU that does not halt keep it for up to 100 ms (TCG_KICK_PERIOD):
    # with two, the workload's stalls measure that, not the guest.
    "busy": scenario("busy", 2048, 1024, smp=1),
    # The same guest, with a target that reaches into the workload's own
    # working set (its 256 MiB of anonymous memory and the hot 128 MiB of
    # its file): what is free and the cold cache come to about 1.6 GiB.
    # A balloon that protects its guest stops short instead of making the
    # workload thrash; "out of puff" lines count how often it says so.
    "busy-ws": scenario("busy", 2048, 1792, smp=1),
    # The busy scenario with its workload stopped: what the inflation
    # itself costs the one vCPU (issue 19's floor under the work lost).
    "busy-alone": scenario("busy-alone", 2048, 1024, smp=1),
    # Deflate on OOM as a workload sees it (issue 19): a target of 200 MiB
    # in a 1 GiB guest, then a 500 MiB write into a tmpfs; and 3.5 of
    # 4 GiB ballooned, then 2 GiB written.
    "rescue-1": scenario("rescue", 1024, 824, write_mib=500),
    "rescue-4": scenario("rescue", 4096, 3584, write_mib=2048),
    # How the cost grows: three quarters of 1, 4, 8 and 16 GiB.
    "grow-1": scenario("grow", 1024, 768),
    "grow-4": scenario("grow", 4096, 3072),
    "grow-8": scenario("grow", 8192, 6144),
    "grow-16": scenario("grow", 16384, 12288),
}
# Diagnostics, run only when named (--only): not in `make bench`.
DIAGNOSTICS = {
    # The busy scenario with the workload's hot file locked in memory
    # (rb-busy's "lock"): reclaim takes only the cold cache, and neither
    # evicts nor unmaps that file (there is no swap for the anonymous
    # part). What the busy scenario loses apart from reclaim of the hot
    # file: in busy, reclaim split its huge mappings, which with the file
    # locked it did not (docs/benchmark.md, "the workload's hot file under
    # TCG").
    "busy-locked": scenario("busy", 2048, 1024, smp=1, lock_hot=True),
}
# Small scenarios that check the harness and measure nothing, for `make
# check` (test_bench_smoke.py), where guests run two at a time. Not the
# hugetlbfs one (vm.nr_hugepages is the host's, and the hugetlbfs tests
# change it) nor busy (its workload's rate is what it measures, and a
# neighbour guest on the other core skews it until its sanity check fails):
# `make bench` runs those.
SMOKE = {
    # Two reporting rounds (2 s apart) settle it: it measures nothing.
    "report": scenario("report", 512, 128, cycles=1, settled_s=4),
    "grow-1": scenario("grow", 512, 256),
    "rescue-1": scenario("rescue", 512, 400, write_mib=128),
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
    "hugetlbfs": [
        ("huge_returned_mib_per_gib", "host huge pages back (MiB/GiB)", "higher"),
        ("inflate_s", "inflate time (s)", "lower"),
        ("deflate_s", "deflate time (s)", "lower"),
    ],
    "busy": [
        ("work_lost_s", "work lost in the 12 s from the target change (s)", "lower"),
        ("work_lost_inflating_s", "  of which while inflating (s)", "lower"),
        ("work_lost_after_s", "  of which after (s)", "lower"),
        ("inflate_s", "time to the target, or to where it stops (s)", "lower"),
        ("worst_sample_over_before", "workload's worst 100 ms in the 12 s / before", "higher"),
        ("longest_stall_ms", "workload's longest stall in the 12 s (ms)", "lower"),
        ("worst_sample_at_ms", "  the worst 100 ms ended at (ms from the change)", "info"),
        ("worst_sample_cpu_over_before", "  the workload's CPU share in it / before", "info"),
        ("longest_stall_at_ms", "  the longest stall's sample ended at (ms)", "info"),
        ("cpu_lost_s", "CPU the workload lost in the 12 s (s)", "lower"),
        ("cpu_lost_inflating_s", "  of which while inflating (s)", "lower"),
        ("worst_cpu_over_before", "workload's least CPU share in a 100 ms / before", "higher"),
        ("major_faults", "guest major faults in the 12 s", "lower"),
        ("stolen_direct_mib", "page cache reclaimed by allocating tasks (MiB)", "info"),
        ("stolen_kswapd_mib", "page cache reclaimed by kswapd (MiB)", "info"),
        ("thp_split", "guest huge pages split in the 12 s", "info"),
        ("pages_migrated", "guest pages migrated in the 12 s", "info"),
        ("guest_sys_s", "guest kernel CPU in the 12 s (s)", "info"),
        ("host_sys_s", "QEMU host kernel CPU in the 12 s (s)", "info"),
        ("host_sys_vcpu_s", "  of which in the vCPU's thread (s)", "info"),
        ("host_others_s", "host CPU not QEMU's, incl. steal, in the 12 s (s)", "info"),
        ("oom_kills", "OOM kills", "lower"),
        ("workload_killed", "workload OOM-killed (1 = yes)", "lower"),
        ("reached_mib", "balloon reached (MiB)", "info"),
        ("cache_dropped_mib", "page cache dropped in the 12 s (MiB)", "info"),
        ("floor_lines", "\"out of puff\" lines", "info"),
        ("pressure_lines", "\"memory pressure\" lines (stops for pressure)", "info"),
    ],
    "busy-alone": [
        ("inflate_s", "time to the target, workload stopped (s)", "lower"),
        ("busy_s", "vCPU not idle meanwhile (s): the least work lost", "lower"),
        ("guest_sys_s", "guest kernel CPU meanwhile (s)", "info"),
        ("host_sys_s", "QEMU host kernel CPU meanwhile (s)", "info"),
        ("host_sys_vcpu_s", "  of which in the vCPU's thread (s)", "info"),
        ("reached_mib", "balloon reached (MiB)", "info"),
        ("cache_dropped_mib", "page cache dropped (MiB)", "info"),
    ],
    "rescue": [
        ("write_over_unballooned", "write time / the same with no balloon", "lower"),
        ("write_s", "write time with the balloon (s)", "lower"),
        ("unballooned_write_s", "write time before inflating (s)", "info"),
        ("shell_max_ms", "longest shell answer while writing (ms)", "lower"),
        ("oom_kills", "OOM kills while writing", "lower"),
        ("released_mib", "balloon released while writing (MiB)", "info"),
        ("ballooned_mib", "balloon before the write (MiB)", "info"),
    ],
    "grow": [
        ("inflate_s_per_gib", "inflate time per GiB (s)", "lower"),
        ("deflate_s_per_gib", "deflate time per GiB (s)", "lower"),
        ("rss_reclaimed_mib_per_gib", "QEMU RSS reclaimed (MiB/GiB)", "higher"),
    ],
}


def guest_ticks(g, columns):
    """The sum of the given columns of /proc/stat's "cpu" line (all guest
    CPUs), in ticks."""
    fields = g.sh("head -n1 /proc/stat").split()
    return sum(int(fields[i]) for i in columns)


def guest_cpu_ticks(g):
    """System, irq and softirq ticks of all guest CPUs (/proc/stat)."""
    return guest_ticks(g, (3, 6, 7))


def host_free():
    """The host's MemFree, in bytes."""
    for row in Path("/proc/meminfo").read_text().splitlines():
        if row.startswith("MemFree:"):
            return int(row.split()[1]) * 1024
    raise RuntimeError("no MemFree in /proc/meminfo")


def host_cpu_s():
    """The host's busy CPU time so far, all CPUs (/proc/stat: user, nice,
    system, irq, softirq and steal, the time a hypervisor beneath this
    machine ran something else)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8)) / 100


def qemu_times_s(g):
    """User and kernel CPU time of the QEMU process so far (/proc/PID/stat
    utime and stime, fields 14 and 15, in USER_HZ)."""
    fields = Path(f"/proc/{g.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / 100, int(fields[12]) / 100


def qemu_cpu_s(g):
    """User and kernel CPU time of the QEMU process so far."""
    return sum(qemu_times_s(g))


def qemu_sys_s(g):
    """Host kernel CPU time of the QEMU process so far: mostly its
    madvise() calls for the balloon's pages."""
    return qemu_times_s(g)[1]


def vcpu_threads(g):
    """/proc entries of QEMU's vCPU threads ("CPU 0/TCG", or "ALL CPUs/TCG"
    where one thread runs them all, as QEMU 7.2's TCG does here; named with
    -name debug-threads=on)."""
    for task in Path(f"/proc/{g.proc.pid}/task").iterdir():
        try:
            if "CPU" in (task / "comm").read_text():
                yield task
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue


def qemu_vcpu_sys_s(g):
    """Host kernel CPU time so far of QEMU's vCPU threads (vcpu_threads):
    time no guest code ran on those vCPUs. QEMU 7.2's virtio-balloon-pci
    has no ioeventfd, so the device handles a kick in the kicking vCPU's
    thread, madvise() of each frame included."""
    total = 0.0
    for task in vcpu_threads(g):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        total += int(fields[12]) / 100
    return total


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
    # RB_BENCH_RUST_PARAMS: module parameters for this driver (e.g.
    # pace_inflation=0, to measure what pacing does).
    params = os.environ.get("RB_BENCH_RUST_PARAMS", "") if driver == "rust" else ""
    g.sh(f"insmod /lib/modules/{DRIVERS[driver]}.ko {params}")
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
    time.sleep(settled_s / 2)
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


def grow_run(g, balloon_mib):
    """balloon_run, per GiB ballooned."""
    res = balloon_run(g, balloon_mib, 0)
    gib = balloon_mib / 1024
    res["inflate_s_per_gib"] = res["inflate_s"] / gib
    res["deflate_s_per_gib"] = res["deflate_s"] / gib
    return res


def hugetlbfs_run(g, balloon_mib):
    """With all guest RAM on the host's hugetlbfs, written once: how much
    of the balloon comes back to the host's pool of huge pages."""
    g.dirty_all()
    time.sleep(1)
    pages = balloon_mib * MIB // PAGE
    timeline, t0 = [], time.monotonic()
    free0 = host_huge_free()
    inflate = move(g, pages, timeline, t0)
    back = (host_huge_free() - free0) * HUGE_PAGE / MIB
    deflate = move(g, 0, timeline, t0)
    return {"huge_returned_mib_per_gib": back / (balloon_mib / 1024),
            "inflate_s": inflate, "deflate_s": deflate}


# The busy guest: an anonymous working set and a hot part of a file that
# its workload keeps touching, beside a page cache of the whole file
# (cold), on an ext4 virtio disk.
#
# The workload reads every cache line of each page it touches. Until
# 2026-12-06 it touched one byte per page, and under TCG its rate then
# depended on the emulator more than on the guest: with nothing else
# happening, the rate before the target change was 18,000 to 47,000 rounds
# a second from one boot to the next, and about 185,000 in every round once
# the balloon had stopped (four rounds, C and Rust; `rate before` in the
# bench's stderr). A rate after 4 to 10 times the rate before hid any loss,
# and one that fell the other way (one C round of three) counted 4.4 s lost
# after the balloon had stopped. Consistent with QEMU's softmmu TLB
# (accel/tcg/cputlb.c), which is resized only when it is flushed: one
# access per page is a TLB lookup per access. With 64 accesses per page the
# spread is narrower, not gone: 1,311 to 5,427 rounds a second before the
# change over 46 rounds (28 between 1,860 and 2,100; docs/benchmark.md,
# "Issue 19: pacing by CPU contention"), a residue the medians carry.
BUSY_ANON_MIB = 256
BUSY_HOT_MIB = 128


def busy_disk(workdir, file_mib):
    """An ext4 image holding cache.bin, a file of `file_mib` MiB (sparse on
    the host: the guest caches it all the same)."""
    src = Path(workdir) / "disk-src"
    src.mkdir(parents=True, exist_ok=True)
    with open(src / "cache.bin", "wb") as f:
        f.truncate(file_mib * MIB)
    img = Path(workdir) / "disk.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(img),
                    f"{file_mib + 128}M"], check=True)
    return img


def guest_uptime_ms(g):
    return int(float(g.sh("cat /proc/uptime").split()[0]) * 1000)


# The window the work lost is summed over, from the target change: long
# enough for the slower driver to reach the target in the busy scenarios
# (C took 2.1 to 3.1 s in 1ff1b1e's rounds), so that both are measured
# over the same time whatever their speed.
BUSY_WINDOW_MS = 12000


def move_or_stop(g, pages, stable_s=2.0, timeout=600):
    """Sets the target and samples until the balloon reaches it or has not
    moved for `stable_s` s (a driver that stops short); returns the
    seconds to its last move and the pages it reached."""
    start = time.monotonic()
    g.set_balloon_pages(pages)
    prev, moved = g.balloon_pages(), time.monotonic()
    while prev != pages and time.monotonic() - moved < stable_s:
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"balloon still moving ({prev} pages) after {timeout}s")
        time.sleep(0.05)
        now = g.balloon_pages()
        if now != prev:
            prev, moved = now, time.monotonic()
    return moved - start, prev


def start_busy(g, lock_hot=False):
    """Caches the disk's file and starts rb-busy (with its hot file locked
    in memory if `lock_hot`); returns once it has touched all its working
    set twice: the first pass faults it in, and is slower (a rate before
    taken then made the work lost negative: the rate after was higher)."""
    g.sh("mkdir -p /mnt && mount /dev/vda /mnt && cat /mnt/cache.bin > /dev/null", timeout=600)
    lock = " lock" if lock_hot else ""
    g.sh(f"rb-busy {BUSY_ANON_MIB} /mnt/cache.bin {BUSY_HOT_MIB} 600 /tmp/busy.log{lock} "
         "</dev/null >/dev/null 2>/tmp/busy.err &")
    deadline = time.monotonic() + 120
    while int(g.sh("cat /tmp/busy.log 2>/dev/null | awk '{n += $2} END {print n + 0}'")) < 2 * BUSY_ANON_MIB:
        if time.monotonic() > deadline:
            raise RuntimeError("rb-busy did not go through its working set twice in 120 s: "
                               + g.sh("cat /tmp/busy.err").strip())
        time.sleep(0.5)


def guest_clock_offset_ms(g, tries=5):
    """The guest's uptime (ms) minus the host's monotonic clock, from the
    quickest of `tries` round trips (/proc/uptime has 10 ms steps; the
    guest reads it at some point of the round trip)."""
    best = None
    for _ in range(tries):
        h0 = time.monotonic()
        uptime = guest_uptime_ms(g)
        h1 = time.monotonic()
        if best is None or h1 - h0 < best[0]:
            best = (h1 - h0, uptime - (h0 + h1) / 2 * 1000)
    return best[1]


def guest_idle_ticks(g):
    """Idle and iowait ticks of all guest CPUs (/proc/stat)."""
    return guest_ticks(g, (4, 5))


def busy_alone_run(g, balloon_mib):
    """The busy scenario's inflation with its workload stopped (SIGSTOP
    once it has been through its working set twice: the same memory and
    page cache, nothing else wanting the CPU): the time to the target and
    the guest's kernel CPU meanwhile. With one vCPU, the CPU a driver takes
    for this is CPU a running workload cannot have: about the least work
    it loses in the busy scenario. Not quite the same path: with nothing
    else runnable there are no contended rests, and nothing refaults.
    The CPU is the time to the target less the guest's idle time
    meanwhile: under TCG QEMU's madvise() of each frame runs on the vCPU's
    thread, time the guest is neither idle nor sure to account as system
    time (a tick is accounted once however late it comes)."""
    start_busy(g)
    g.sh("kill -STOP $(pidof rb-busy)")
    time.sleep(2)
    cached0 = g.meminfo()["Cached"]
    cpu0, sys0, idle0 = guest_cpu_ticks(g), qemu_sys_s(g), guest_idle_ticks(g)
    vcpu0 = qemu_vcpu_sys_s(g)
    start = time.monotonic()
    inflate, reached = move_or_stop(g, balloon_mib * MIB // PAGE)
    idle1 = guest_idle_ticks(g)
    # From the first probe's end to the last one's start, or so.
    elapsed = time.monotonic() - start
    cpu1, sys1, vcpu1 = guest_cpu_ticks(g), qemu_sys_s(g), qemu_vcpu_sys_s(g)
    cached1 = g.meminfo()["Cached"]
    g.sh("kill -CONT $(pidof rb-busy); killall rb-busy; true")
    return {
        "inflate_s": inflate,
        "busy_s": elapsed - (idle1 - idle0) / 100,
        "guest_sys_s": (cpu1 - cpu0) / 100,
        "host_sys_s": sys1 - sys0,
        "host_sys_vcpu_s": vcpu1 - vcpu0,
        "reached_mib": reached * PAGE / MIB,
        "cache_dropped_mib": (cached0 - cached1) / MIB,
    }


def busy_run(g, balloon_mib, lock_hot=False):
    """Inflates while the workload (rb-busy) runs, with a target that
    takes all free memory and then page cache (busy-ws: some of the
    workload's own working set). Over the same fixed window from the target
    change for both drivers (BUSY_WINDOW_MS): the work lost (the sum over
    the workload's samples of (1 - rate / rate before) x the sample's time
    in the window; a sample faster than before counts 0, time with no
    sample at all (a stall at the window's end, a workload the OOM killer
    took) counts whole), split into while inflating and after; the worst
    sample and the longest stall; the same for the workload's share of the
    CPU (rb-busy's fourth column); the guest's major faults, its kernel CPU
    and QEMU's host kernel CPU. Besides: the time to the target (or to
    where the driver stops) and the page cache dropped meanwhile.
    `lock_hot`: see DIAGNOSTICS."""
    start_busy(g, lock_hot)
    # The guest's clock against the host's (under TCG it follows the
    # host's), so that the window's start and end are taken without running
    # anything in the guest.
    guest_minus_host_ms = guest_clock_offset_ms(g)
    time.sleep(4)
    # The rate before is taken before the probes below: each is a process
    # in the guest, on the workload's CPU.
    t_before = int(time.monotonic() * 1000 + guest_minus_host_ms)
    vm0, cached0 = g.vmstat(), g.meminfo()["Cached"]
    mark = g.console_size()
    pages = balloon_mib * MIB // PAGE
    cpu0, sys0, vcpu0 = guest_cpu_ticks(g), qemu_sys_s(g), qemu_vcpu_sys_s(g)
    others0 = host_cpu_s() - qemu_cpu_s(g)
    # And the workload's 100 ms sample that holds them ends before the
    # change: until 2026-12-06 it was the window's first, and the workload
    # ran at 0.24 to 0.48 of its rate in it with either driver.
    time.sleep(0.3)
    t0 = int(time.monotonic() * 1000 + guest_minus_host_ms)
    # A driver that pauses for 2 s counts as stopped there (none did in
    # 715d788's runs); one that creeps on afterwards is in the window.
    inflate, reached = move_or_stop(g, pages)
    t1 = t0 + int(inflate * 1000)
    # The rest of the window, then the guest's figures and the workload's
    # log (a probe in the window would count as work lost).
    rest = (t0 + BUSY_WINDOW_MS + 300 - (time.monotonic() * 1000 + guest_minus_host_ms)) / 1000
    if rest > 0:
        time.sleep(rest)
    cpu2, sys2, vm2 = guest_cpu_ticks(g), qemu_sys_s(g), g.vmstat()
    vcpu2 = qemu_vcpu_sys_s(g)
    cached1 = g.meminfo()["Cached"]
    # What else ran on the host meanwhile (this runner, a helper, the
    # hypervisor under this machine): it takes CPU from the vCPUs under
    # TCG, and the workload's rate with it. Compare rounds only: /proc/stat
    # is sampled at ticks and QEMU's own times are not, which made every
    # round of 382f53b's run read about -0.35 s.
    others2 = host_cpu_s() - qemu_cpu_s(g)
    killed = vm2.get("oom_kill", 0) - vm0.get("oom_kill", 0)
    console = g.console(mark)
    workload_killed = bool(re.search(r"Killed process \d+ \(rb-busy\)", console))
    for line in console.splitlines():
        if "memory pressure:" in line or "out of puff" in line:
            print("   ", line.strip(), file=sys.stderr)
    alive = g.sh("pidof rb-busy >/dev/null && echo yes || echo no").strip() == "yes"
    g.sh("killall rb-busy; sleep 0.2; true")
    # A last row cut short of its four columns (the workload killed while
    # writing it) is left out.
    rows = [tuple(int(x) for x in row.split())
            for row in g.sh("cat /tmp/busy.log").splitlines() if len(row.split()) == 4]
    # Each row covers the time since the row before it (100 ms, or more
    # when a round stalled), so rates are rounds over that time.
    # (start ms, end ms, rounds, longest gap us, CPU us it ran)
    spans = [(prev[0], row[0], row[1], row[2], row[3]) for prev, row in zip(rows, rows[1:])]
    # (Less a sample: the clocks agree to about 10 ms, /proc/uptime's step.)
    before = [r for r in spans if t_before - 3100 < r[1] <= t_before - 100]
    if len(before) < 10:
        raise RuntimeError(f"rb-busy wrote too little before the target change: "
                           f"{len(before)} rows (of {len(rows)}); is it running?")
    end = t0 + BUSY_WINDOW_MS
    # A workload that ended otherwise is a broken run; a live one whose
    # log stops short is stalled, and that time counts as lost.
    if not alive and not workload_killed:
        raise RuntimeError("rb-busy ended before the window did, and not by the OOM killer")

    def rate(r):
        return r[2] / (r[1] - r[0])
    base = sum(r[2] for r in before) / sum(r[1] - r[0] for r in before)

    def cpu(r):
        """The share of the sample's time the guest's scheduler ran the
        workload."""
        return r[4] / 1000 / (r[1] - r[0])
    cpu_base = sum(r[4] for r in before) / 1000 / sum(r[1] - r[0] for r in before)

    def lost_s(lo, hi, of=rate, of_before=base):
        """Work lost between guest times lo and hi (ms): each sample's share
        of (lo, hi] pro rata, and time no sample covers counted whole. With
        `of=cpu`, the CPU the workload lost instead of its rounds."""
        lost, covered = 0.0, 0
        for r in spans:
            part = min(r[1], hi) - max(r[0], lo)
            if part > 0:
                covered += part
                lost += max(0.0, 1 - of(r) / of_before) * part
        return (lost + max(hi - lo - covered, 0)) / 1000
    window = [r for r in spans if r[1] > t0 and r[0] < end]
    # The workload's rate each second of the window, for reading a round.
    per_s = [1 - lost_s(t0 + i * 1000, t0 + (i + 1) * 1000) for i in range(BUSY_WINDOW_MS // 1000)]
    print(f"    rate before {base * 1000:.0f} rounds/s; rate/before each s:",
          " ".join(f"{x:.2f}" for x in per_s), file=sys.stderr)
    # Where in the window the worst sample and the longest stall fall
    # (their ends, ms from the change), and the rate each 100 ms until a
    # second after the target: whether they come from taking free memory,
    # from reclaim, or after the balloon stopped.
    worst = min(window, key=rate) if window else None
    stalled = max(window, key=lambda r: r[3]) if window else None
    first = [r for r in window if r[0] < t1 + 1000]
    print("    rate/before each 100 ms to 1 s after the target:",
          " ".join(f"{rate(r) / base:.2f}" for r in first), file=sys.stderr)
    print("    CPU share/before, the same samples:            ",
          " ".join(f"{cpu(r) / cpu_base:.2f}" for r in first), file=sys.stderr)
    inflating = min(t1, end)
    return {
        "work_lost_s": lost_s(t0, end),
        "work_lost_inflating_s": lost_s(t0, inflating),
        "work_lost_after_s": lost_s(inflating, end),
        "inflate_s": inflate,
        "worst_sample_over_before": (rate(worst) / base
                                     if worst and not workload_killed else 0.0),
        "longest_stall_ms": max([r[3] / 1000 for r in window]
                                + [BUSY_WINDOW_MS if workload_killed else 0]),
        "worst_sample_at_ms": worst[1] - t0 if worst else 0,
        # The CPU the workload lost, and had in its worst 100 ms: what the
        # balloon and what it makes the guest do take from it, apart from
        # how many rounds each CPU-second buys it (see rb-busy.c).
        "cpu_lost_s": lost_s(t0, end, cpu, cpu_base),
        "cpu_lost_inflating_s": lost_s(t0, inflating, cpu, cpu_base),
        "worst_cpu_over_before": (min(cpu(r) for r in window) / cpu_base
                                  if window and not workload_killed else 0.0),
        "worst_sample_cpu_over_before": (cpu(worst) / cpu_base
                                         if worst and not workload_killed else 0.0),
        "longest_stall_at_ms": stalled[1] - t0 if stalled else 0,
        # Each sample's end (s from the change) and rate over the rate
        # before, for the plot (busy.png); not in results.json.
        "timeline": [((r[1] - t0) / 1000, rate(r) / base) for r in window],
        "major_faults": vm2["pgmajfault"] - vm0["pgmajfault"],
        # Who reclaimed: the allocating tasks (the driver's work among them)
        # or kswapd, a thread beside them.
        "stolen_direct_mib": (vm2.get("pgsteal_direct", 0) - vm0.get("pgsteal_direct", 0))
        * PAGE / MIB,
        "stolen_kswapd_mib": (vm2.get("pgsteal_kswapd", 0) - vm0.get("pgsteal_kswapd", 0))
        * PAGE / MIB,
        # How the workload's memory changed under it: suspects, not causes,
        # for a round whose workload runs slowly after the balloon stops.
        "thp_split": vm2.get("thp_split_pmd", 0) - vm0.get("thp_split_pmd", 0),
        "pages_migrated": vm2.get("pgmigrate_success", 0) - vm0.get("pgmigrate_success", 0),
        # Where the lost work went: the guest's kernel time (the driver,
        # reclaim, kswapd and the workload's own faults) and QEMU's host
        # kernel time (its madvise() of each frame, which under TCG runs on
        # the vCPU's thread: no ioeventfd), over the window.
        "guest_sys_s": (cpu2 - cpu0) / 100,
        "host_sys_s": sys2 - sys0,
        "host_sys_vcpu_s": vcpu2 - vcpu0,
        "host_others_s": others2 - others0,
        "oom_kills": killed,
        "workload_killed": int(workload_killed),
        "reached_mib": reached * PAGE / MIB,
        "cache_dropped_mib": (cached0 - cached1) / MIB,
        "floor_lines": g.console(mark).count("out of puff"),
        "pressure_lines": g.console(mark).count("memory pressure:"),
    }


def timed_write(g, mib, probe_s=0.2, timeout=900):
    """Writes `mib` MiB into a tmpfs in the background, asking the guest's
    shell for a file every `probe_s` s meanwhile. Returns the write's
    seconds (by the guest's clock) and the longest the shell took to
    answer, in ms (by the host's)."""
    g.sh("rm -f /tmp/write.done; (s=$(cut -d' ' -f1 /proc/uptime); "
         f"dd if=/dev/zero of=/mem/write bs=1M count={mib} 2>/dev/null; r=$?; "
         "echo $r $s $(cut -d' ' -f1 /proc/uptime) > /tmp/write.tmp && "
         "mv /tmp/write.tmp /tmp/write.done) </dev/null >/dev/null 2>&1 &")
    longest, deadline = 0.0, time.monotonic() + timeout
    while True:
        asked = time.monotonic()
        done = g.sh("cat /tmp/write.done 2>/dev/null; true").split()
        longest = max(longest, time.monotonic() - asked)
        if done:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"a {mib} MiB write took over {timeout}s")
        time.sleep(probe_s)
    status, start, end = done
    if status != "0":
        raise RuntimeError(f"the {mib} MiB write failed ({status}): OOM-killed?")
    return float(end) - float(start), longest * 1000


def rescue_run(g, balloon_mib, write_mib):
    """The write with no balloon, then with `balloon_mib` MiB ballooned (as
    far as the driver goes) and deflate-on-oom: how much longer it takes,
    how long the shell took to answer meanwhile, OOM kills, and how much
    the balloon gave back."""
    plain_s, _ = timed_write(g, write_mib)
    g.sh("rm /mem/write")
    g.set_balloon_pages(balloon_mib * MIB // PAGE)
    ballooned = g.wait_balloon_settled()
    vm0 = g.vmstat()
    write_s, shell_ms = timed_write(g, write_mib)
    vm1 = g.vmstat()
    return {
        "write_over_unballooned": write_s / plain_s,
        "write_s": write_s,
        "unballooned_write_s": plain_s,
        "shell_max_ms": shell_ms,
        "oom_kills": vm1.get("oom_kill", 0) - vm0.get("oom_kill", 0),
        "released_mib": (vm1.get("balloon_deflate", 0) - vm0.get("balloon_deflate", 0))
        * PAGE / MIB,
        "ballooned_mib": ballooned * PAGE / MIB,
    }


def one_run(kernel, initramfs, workdir, accel, driver, sc):
    device = "virtio-balloon-pci,id=balloon0"
    kind, mib = sc["kind"], sc["mib"]
    if kind == "report":
        device += ",free-page-reporting=on"
    if kind == "rescue":
        device += ",deflate-on-oom=on"
    extra = []
    if sc["hugetlb"]:
        extra += hugetlb_backing(sc["mem_mib"])
    if kind in ("busy", "busy-alone"):
        img = busy_disk(workdir, sc["mem_mib"] // 2)
        extra += ["-drive", f"file={img},format=raw,if=none,id=disk0",
                  "-device", "virtio-blk-pci,drive=disk0"]
    with contextlib.ExitStack() as stack:
        if sc["hugetlb"]:
            stack.enter_context(host_huge_pages(sc["mem_mib"] // 2 + 16))
        g = Guest(kernel, initramfs, workdir, mem_mib=sc["mem_mib"], accel=accel,
                  thp=sc["thp"], balloon=device, extra=extra, smp=sc["smp"])
        # The busy workload may be OOM-killed by a driver that inflates into
        # its working set: measured (oom_kills), not a splat.
        g.expect_oom_kill = kind == "busy"
        g.start()
        try:
            load(g, driver)
            res = {
                "balloon": lambda: balloon_run(g, mib, sc["holes_mib"]),
                "report": lambda: report_run(g, mib, cycles=sc["cycles"],
                                             settled_s=sc["settled_s"]),
                "hugetlbfs": lambda: hugetlbfs_run(g, mib),
                "busy": lambda: busy_run(g, mib, sc["lock_hot"]),
                "busy-alone": lambda: busy_alone_run(g, mib),
                "grow": lambda: grow_run(g, mib),
                "rescue": lambda: rescue_run(g, mib, sc["write_mib"]),
            }[kind]()
            splats = g.splats()
            if splats:
                raise RuntimeError(f"{driver}: kernel splat:\n" + "\n".join(splats))
            return res
        finally:
            g.stop()


def summarize(results, scenarios):
    summary = {}
    for name, sc in scenarios.items():
        for key, _, _ in METRICS[sc["kind"]]:
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
    for name, sc in scenarios.items():
        kind, mem_mib, mib = sc["kind"], sc["mem_mib"], sc["mib"]
        what = (f"{mib} MiB freed in {mem_mib} MiB" if kind == "report"
                else f"{mib} of {mem_mib} MiB")
        if sc["holes_mib"]:
            what += f", {sc['holes_mib']} MiB of it free in 1 MiB holes"
        if kind in ("busy", "busy-alone"):
            what += (f", workload: {BUSY_ANON_MIB} MiB anonymous + {BUSY_HOT_MIB} MiB of a"
                     f" {mem_mib // 2} MiB cached file")
        if kind == "busy-alone":
            what += ", stopped"
        if sc["lock_hot"]:
            what += ", its hot file locked in memory"
        backing = ("host hugetlbfs" if sc["hugetlb"]
                   else f"host THP {'on' if sc['thp'] else 'off'}")
        print(f"{name} ({what}, {backing})")
        for key, label, better in METRICS[kind]:
            row = summary[f"{name}.{key}"]
            cells = [f"{row[d]['median']:.2f} ({row[d]['min']:.2f}-{row[d]['max']:.2f})"
                     for d in DRIVERS]
            ratio = row["rust_over_c"]
            print(f"  {label:48} {cells[0]:>22} {cells[1]:>22} "
                  f"{(f'{ratio:.2f}' if ratio else '-'):>7}  "
                  + ("(for reading the others)" if better == "info"
                     else f"({better} is better)"))


def plot(results, path, scenario):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mem_mib, balloon_mib = scenario["mem_mib"], scenario["mib"]
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


def plot_busy(results, path, scenario):
    """The workload's rate (over its rate before) in each 100 ms sample of
    the first 3 s from the target change, in each driver's median round by
    work lost, with the time that round took to the target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    for driver, colour in (("c", "tab:blue"), ("rust", "tab:orange")):
        runs = sorted(results[driver], key=lambda r: r["work_lost_s"])
        run = runs[len(runs) // 2]
        t, rate = zip(*[(x, y) for x, y in run["timeline"] if x <= 3])
        # Each point is a sample's end: it holds for the time before it.
        ax.step(t, rate, where="pre", color=colour,
                label=f"{driver} driver (work lost {run['work_lost_s']:.2f} s)")
        ax.axvline(run["inflate_s"], color=colour, linestyle=":")
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_ylim(0, 1.5)
    ax.set_xlabel("seconds from the target change (dotted: at the target)")
    ax.set_ylabel("workload rate / rate before")
    ax.set_title(f"{scenario['mib']} MiB taken from a busy {scenario['mem_mib']} MiB guest, "
                 "one vCPU (median round by work lost)"
                 + (", hot file locked" if scenario["lock_hot"] else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_growth(summary, scenarios, path):
    """Inflate and deflate time per GiB against the guest's size: medians,
    with bars from the fastest to the slowest round."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = [s["mem_mib"] / 1024 for s in scenarios.values()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in ((axes[0], "inflate_s_per_gib", "inflate"),
                           (axes[1], "deflate_s_per_gib", "deflate")):
        for driver, colour in (("c", "tab:blue"), ("rust", "tab:orange")):
            rows = [summary[f"{name}.{key}"][driver] for name in scenarios]
            med = [r["median"] for r in rows]
            err = [[m - r["min"] for m, r in zip(med, rows)],
                   [r["max"] - m for m, r in zip(med, rows)]]
            ax.errorbar(sizes, med, yerr=err, marker="o", capsize=3, color=colour,
                        label=f"{driver} driver")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        ax.set_xlabel("guest RAM (GiB), three quarters ballooned")
        ax.set_title(f"{title} time per GiB ballooned")
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("seconds per GiB")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kdir")
    ap.add_argument("initramfs")
    ap.add_argument("outdir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true",
                    help="one small round: checks the harness, measures nothing")
    ap.add_argument("--only", help="comma-separated scenarios to run")
    args = ap.parse_args()
    kernel = f"{args.kdir}/arch/x86/boot/bzImage"
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    scenarios, rounds = (SMOKE, 1) if args.smoke else (SCENARIOS, args.rounds)
    if args.only:
        named = args.only.split(",")
        known = scenarios if args.smoke else {**scenarios, **DIAGNOSTICS}
        unknown = set(named) - set(known)
        if unknown:
            ap.error(f"no such scenario{' in --smoke' if args.smoke else ''}: "
                     f"{', '.join(sorted(unknown))}")
        scenarios = {k: v for k, v in known.items() if k in named}
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
        "scenarios": scenarios,
        "summary": summary,
        "runs": {name: {d: [{k: v for k, v in r.items() if k != "timeline"}
                            for r in results[name][d]] for d in DRIVERS}
                 for name in scenarios},
    }, indent=2))
    wrote = [out / "results.json"]
    first = next((n for n, s in scenarios.items() if s["kind"] in ("balloon", "grow")), None)
    if first:
        plot(results[first], out / "timeline.png", scenarios[first])
        wrote.append(out / "timeline.png")
    for name in ("busy", "busy-locked"):
        if name in scenarios:
            plot_busy(results[name], out / f"{name}.png", scenarios[name])
            wrote.append(out / f"{name}.png")
    grow = {n: s for n, s in scenarios.items() if s["kind"] == "grow"}
    if grow:
        plot_growth(summary, grow, out / "growth.png")
        wrote.append(out / "growth.png")
    print("wrote " + ", ".join(str(p) for p in wrote))


if __name__ == "__main__":
    sys.exit(main())
