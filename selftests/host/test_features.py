# SPDX-License-Identifier: GPL-2.0
"""The optional features of the virtio balloon, each against QEMU."""

import re
import time

import pytest

from bench import busy_disk
from guest import MIB, PAGE, wait_until


# Feature bits (include/uapi/linux/virtio_balloon.h) by the names tests use.
FEATURE_BITS = {"stats": 1, "oom": 2, "hint": 3, "poison": 4, "reporting": 5}


def negotiated(g):
    """The balloon's negotiated features, from sysfs, by name."""
    bits = g.features()
    return {name: bit in bits for name, bit in FEATURE_BITS.items()}


def test_stats_follow_the_guest(boot):
    """Every stat QEMU knows arrives, repeatedly, and agrees with the guest's
    own /proc/meminfo and /proc/vmstat."""
    g = boot()
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert negotiated(g)["stats"]
    g.qom_balloon("guest-stats-polling-interval", 1)
    time.sleep(3)
    first = g.qom_balloon("guest-stats")
    g.dirty(200)  # faults move the counters
    time.sleep(3)
    second = g.qom_balloon("guest-stats")
    mem, vm = g.meminfo(), g.vmstat()
    assert second["last-update"] > first["last-update"], (first, second)
    s = second["stats"]
    for name in ("stat-total-memory", "stat-free-memory", "stat-available-memory",
                 "stat-disk-caches", "stat-major-faults", "stat-minor-faults",
                 "stat-swap-in", "stat-swap-out", "stat-htlb-pgalloc", "stat-htlb-pgfail"):
        assert s.get(name, -1) >= 0, f"{name} missing: {s}"
    assert s["stat-total-memory"] == mem["MemTotal"]
    # Sampled a moment apart: allow for what an idle guest changes.
    assert abs(s["stat-free-memory"] - mem["MemFree"]) < 32 * MIB, (s, mem)
    assert abs(s["stat-available-memory"] - mem["MemAvailable"]) < 32 * MIB, (s, mem)
    assert s["stat-minor-faults"] > first["stats"]["stat-minor-faults"]
    assert s["stat-minor-faults"] <= vm["pgfault"]
    assert s["stat-major-faults"] <= vm["pgmajfault"]
    # The balloon shows in the stats: inflate and MemTotal follows.
    g.set_balloon_pages(25600)
    g.wait_balloon(25600)
    time.sleep(3)
    s = g.qom_balloon("guest-stats")["stats"]
    assert s["stat-total-memory"] == mem["MemTotal"] - 100 * MIB


def host_view(g):
    """What a host controller reads over QMP: `actual` (guest bytes outside
    the balloon) and the last stats the guest sent, with their time."""
    stats = g.qom_balloon("guest-stats")
    return g.qmp.cmd("query-balloon")["actual"], stats["last-update"], stats["stats"]


def test_the_host_tells_a_stalled_balloon_from_a_slow_one(boot):
    """The README's rule ("What the host sees"), from QMP alone: the guest
    cannot give more when `actual` stays above the requested size over three
    fresh stats updates while `stat-available-memory` is at the driver's
    floor (`min_available_mib`). While the balloon is on its way, the rule
    must not say so; once it stalls, it must, and the stats must say why.
    Fails if the driver stalls above its floor, sends stale stats while
    stalled, or lets the floor go (available memory under it, or an OOM
    kill)."""
    floor_mib = 128
    g = boot()
    g.load(params=f"min_available_mib={floor_mib}")
    g.qom_balloon("guest-stats-polling-interval", 1)
    time.sleep(2)
    # The driver stops with MemAvailable at the floor; the kernel moves it
    # by a few MiB either way meanwhile, and the stats are up to 1 s old.
    band = (floor_mib - 16) * MIB, (floor_mib + 24) * MIB

    def watch(requested, until, timeout=300):
        """Polls the host's view until `until(rounds)` holds; returns the
        rounds, one per fresh stats update: (actual, stats, cannot_give_more)."""
        rounds, seen, deadline = [], None, time.monotonic() + timeout
        while time.monotonic() < deadline:
            actual, update, stats = host_view(g)
            if update != seen:
                seen = update
                # The rule: the same `actual`, above what was asked, over
                # three updates, with available memory at the floor.
                last = [r[0] for r in rounds[-2:]] + [actual]
                stuck = len(last) == 3 and len(set(last)) == 1 and actual > requested
                rounds.append((actual, stats,
                               stuck and stats["stat-available-memory"] <= band[1]))
                if until(rounds):
                    return rounds
            time.sleep(0.25)
        raise AssertionError(f"host's view after {timeout}s: {rounds[-3:]}")

    # 1: a target the guest can meet, which leaves 64 MiB above the band:
    # never "cannot give more" on the way, and the balloon gets there (a
    # driver that stopped early, with its floor too high, would stall with
    # available memory near the band, and the watch would time out).
    spare = g.meminfo()["MemAvailable"] - band[1] - 64 * MIB
    size = g.qmp.cmd("query-balloon")["actual"] - spare // MIB * MIB
    g.qmp.cmd("balloon", value=size)
    rounds = watch(size, lambda rs: rs[-1][0] == size, timeout=120)
    assert not any(r[2] for r in rounds), [(r[0], r[1]["stat-available-memory"]) for r in rounds]

    # 2: more than the guest can give. The rule must say so, and hold.
    g.qmp.cmd("balloon", value=1)
    rounds = watch(1, lambda rs: sum(r[2] for r in rs) >= 4)
    actual, stats, _ = rounds[-1]
    mem = g.meminfo()
    assert band[0] <= stats["stat-available-memory"] <= band[1], (stats, mem)
    assert band[0] <= mem["MemAvailable"] <= band[1], mem
    stuck = actual
    # No OOM kill: from the stats where QEMU has the counter (QEMU 7.2,
    # Debian 12's, names only the first ten tags), else from the guest.
    assert stats.get("stat-oom-kills", 0) == 0 == g.vmstat().get("oom_kill", 0), stats
    assert actual < size, (actual, size)
    assert "out of puff" in g.console(g.mark)

    # 3: a target it can meet again: the balloon moves at once (within two
    # fresh updates: a driver that ignored a new target while stalled would
    # not), and reaches it.
    g.qmp.cmd("balloon", value=size)
    rounds = watch(size, lambda rs: len(rs) == 2)
    assert any(r[0] != stuck for r in rounds), (stuck, [r[0] for r in rounds])
    watch(size, lambda rs: rs[-1][0] == size, timeout=120)
    g.unload_and_check()


def hog(g, mib):
    """Allocates and touches `mib` MiB in one process (busybox dd's buffer).
    Overcommit is on, so the allocation itself cannot fail: without it the
    kernel refuses a buffer larger than the (ballooned) MemTotal up front."""
    g.sh("echo 1 > /proc/sys/vm/overcommit_memory")
    return g.run(f"dd if=/dev/zero of=/dev/null bs={mib}M count=1", timeout=600,
                 check=False)


def hog_beyond_available(g):
    """A hog 200 MiB larger than MemAvailable, with deflate-on-OOM: it must
    finish with no OOM kill because the balloon gave pages back. Returns
    vmstat afterwards."""
    oom0 = g.vmstat().get("oom_kill", 0)
    status, out = hog(g, (g.meminfo()["MemAvailable"] + 200 * MIB) // MIB)
    assert status == 0, out
    vm = g.vmstat()
    assert vm.get("oom_kill", 0) == oom0
    assert vm["balloon_deflate"] > 0
    return vm


def dirty_and_wait_for_the_host(g, mib=600, margin_mib=200, timeout=120):
    """Dirties `mib` MiB and frees it; waits until the host's RSS is back
    within `margin_mib` of where it was (free page reporting). Returns the
    RSS before and after."""
    base = g.host_rss()
    g.dirty(mib)  # the host backs `mib` MiB more, then the guest frees it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and g.host_rss() > base + margin_mib * MIB:
        time.sleep(1)
    after = g.host_rss()
    assert after < base + margin_mib * MIB, (
        f"RSS {base // MIB} MiB before dirtying {mib} MiB, {after // MIB} MiB after")
    return base, after


def fill_balloon(g, mib):
    """Inflates as far as `mib` MiB or the driver's floor allows; returns
    the pages reached."""
    g.set_balloon_pages(mib * MIB // PAGE)
    return g.wait_balloon_settled()


def test_deflate_on_oom(boot):
    """deflate-on-oom=on: a hog larger than what is free finishes, nothing
    is OOM-killed, the balloon gives pages back; MemTotal never moved."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=on")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert negotiated(g)["oom"]
    total = g.meminfo()["MemTotal"]
    reached = fill_balloon(g, 900)
    assert reached > 700 * MIB // PAGE
    assert g.meminfo()["MemTotal"] == total  # deflate-on-oom: not adjusted
    vm = hog_beyond_available(g)
    # Logged once the episode is over (5 s without a notification).
    wait_log(g, r"out of memory: released \d+ MiB", timeout=30)
    # Only the OOM notifier deflated: the view counts all of it as such.
    view = g.balloon_view()
    assert view["oom_released_pages"] == view["deflated_pages"] == vm["balloon_deflate"], view
    # The hog has gone, and the room with it: the balloon goes back
    # towards the host's target (as far as the floor allows), from the
    # lowest it went.
    low = reached - view["oom_released_pages"]
    wait_until("the balloon to go back towards its target",
               lambda: g.balloon_pages() > low + 64 * MIB // PAGE, 60)


def test_without_deflate_on_oom_the_hog_is_killed(boot):
    """The same with deflate-on-oom=off: the OOM killer takes the hog and the
    balloon keeps its pages. This is the difference the feature makes."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=off")
    g.expect_oom_kill = True
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert not negotiated(g)["oom"]
    reached = fill_balloon(g, 900)
    oom0 = g.vmstat().get("oom_kill", 0)
    free = g.meminfo()["MemAvailable"]
    status, _ = hog(g, (free + 200 * MIB) // MIB)
    assert status != 0
    vm = g.vmstat()
    assert vm["oom_kill"] > oom0
    assert vm.get("balloon_deflate", 0) == 0
    # The floor is MemAvailable, which the OOM kill raised (reclaimed caches,
    # the hog's own pages): the balloon may go on towards the target, but
    # it never gives a page back.
    assert g.balloon_pages() >= reached


def test_deflate_on_oom_releases_what_the_workload_needs(boot):
    """A workload that needs 300 MiB more than the guest has (a tmpfs
    file, which nothing can reclaim) gets it in a few trips through the OOM
    path, not one per MiB as with C; one log line per episode; and the
    balloon does not take the memory back while the file is there and the
    target is unchanged, only once the guest has room again. The floor is
    8 MiB, so that what the last release left over (up to 64 MiB) is more
    than the floor: without the hold the balloon would take it back."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=on")
    g.load(params="min_available_mib=8")
    fill_balloon(g, 900)
    need_mib = (g.meminfo()["MemAvailable"] + 300 * MIB) // MIB
    oom0 = g.vmstat().get("oom_kill", 0)
    g.sh(f"dd if=/dev/zero of=/mem/need bs=1M count={need_mib} 2>/dev/null", timeout=600)
    assert g.vmstat().get("oom_kill", 0) == oom0
    # Logged once the episode is over: 5 s after its last notification.
    pattern = (r"out of memory: released (\d+) MiB in (\d+) notifications over \d+ ms; "
               r"inflating again once (\d+) MiB are available")
    # Every episode logged (the last one 5 s after the write).
    wait_until("a log line for every episode",
               lambda: 0 < len(re.findall(pattern, g.console(g.mark)))
               == g.balloon_view()["oom_episodes"], 30)
    lines = re.findall(pattern, g.console(g.mark))
    assert len(re.findall("out of memory: released", g.console(g.mark))) == len(lines)
    released_mib = sum(int(n) for n, _, _ in lines)
    notifications = sum(int(n) for _, n, _ in lines)
    hold_mib = int(lines[-1][2])
    view = g.balloon_view()
    assert view["oom_episodes"] == len(lines) <= 2, (view, lines)
    assert released_mib >= 300, lines
    # Whole MiB per line: the view's total may be up to a MiB more per line.
    assert 0 <= view["oom_released_pages"] * PAGE // MIB - released_mib <= len(lines), view
    # Each episode doubles from 1 MiB to 64 MiB (1 + 2 + ... + 64 = 127 MiB
    # in 7), then 64 MiB each; C would take one per MiB.
    assert notifications == view["oom_notifications"], (view, lines)
    assert notifications <= 8 * len(lines) + released_mib // 64, lines
    # Held until the guest has the floor and half of what came back.
    assert view["oom_hold_pages"] * PAGE // MIB == hold_mib >= 8 + released_mib // 2, view
    held = g.balloon_pages()
    time.sleep(4)
    assert g.balloon_pages() == held, "the balloon took memory back into the pressure"
    g.sh("rm /mem/need")
    wait_until("the balloon to go back towards its target",
               lambda: g.balloon_pages() > held + 128 * MIB // PAGE, 60)
    assert g.balloon_view()["oom_hold_pages"] == 0


def assert_balloon_kept(g, vm0, reached):
    """Nothing left the balloon since `vm0`: no deflate of any kind, none
    by the OOM notifier, the host still sees at least `reached` pages."""
    vm = g.vmstat()
    assert vm.get("balloon_deflate", 0) == vm0.get("balloon_deflate", 0), vm
    assert g.balloon_view()["oom_released_pages"] == 0
    assert g.balloon_pages() >= reached
    return vm


def test_dropping_clean_page_cache_keeps_the_balloon(boot, tmp_path):
    """deflate-on-oom=on is for the guest running out of memory, not for
    reclaim: a guest that only drops clean page cache keeps its balloon.
    The C driver deflated from a shrinker for a while and went back to the
    OOM notifier in Linux 5.7 because the shrinker gave the balloon away on
    any reclaim; this fails on a driver that does the same. The guest reads
    a disk larger than what the balloon leaves it, twice, then drops its
    caches."""
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(768 * MIB)  # sparse: the guest reads zeros, and caches them
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=on",
             extra=["-drive", f"file={disk},format=raw,if=none,id=disk0",
                    "-device", "virtio-blk-pci,drive=disk0"])
    g.load()
    assert negotiated(g)["oom"]
    reached = fill_balloon(g, 600)
    assert reached > 500 * MIB // PAGE
    vm0 = g.vmstat()
    g.sh("for i in 1 2; do dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null || exit 1; done; "
         "echo 3 > /proc/sys/vm/drop_caches", timeout=600)
    vm = assert_balloon_kept(g, vm0, reached)
    # The control: the reads did push the guest into reclaim (kswapd or
    # direct), which is where a shrinker would have deflated.
    stolen = sum(vm.get(k, 0) - vm0.get(k, 0) for k in ("pgsteal_kswapd", "pgsteal_direct"))
    assert stolen * PAGE > 256 * MIB, (vm0, vm)


def on_each_vcpu(g, cmd, pidfile):
    """Starts `cmd` pinned to each vCPU (taskset), its PIDs in `pidfile`."""
    g.sh("for i in $(seq 0 $(($(nproc) - 1))); do "
         f"taskset -c $i {cmd} </dev/null >/dev/null 2>&1 & "
         f"echo $! >> {pidfile}; done")


def kill_and_wait(g, pidfile, what):
    """SIGKILL to every PID in `pidfile`, and wait until they are gone."""
    g.sh(f"kill -9 $(cat {pidfile})")
    wait_until(f"the {what} to end",
               lambda: g.sh(f"for p in $(cat {pidfile}); do [ -e /proc/$p ] && echo $p; done; true")
               .strip() == "", 10)


def test_inflation_is_paced_by_the_guests_pressure(boot, tmp_path):
    """Pacing (`pace_inflation=1`, the default), from the driver's debugfs
    and the guest's log. 1: from free memory inflation needs no reclaim
    and never rests (an idle guest inflates as fast as before), unless
    another task waits for the CPU (a hog on every vCPU). 2: a
    target that takes page cache makes reclaim run; with the CPUs idle
    (but for a task on each that wakes every millisecond for a moment)
    the work rests (`paced_ms`) for less than a tenth of its time (until
    2026-12-07 every step that needed reclaim rested half its time, a
    third of the time reclaim ran, CPU wanted or not; until 2026-12-08
    it rested for any task it found runnable for a moment), reaches the target
    and does not stop for pressure (a cache read once is no working set).
    3: with a workload
    keeping a mapped hot set and a target of all the guest has, the balloon
    stops short, says so once (not at every retry along its floor, as
    715d788 did) and the workload is not OOM-killed and keeps running."""
    # A file on ext4, as the bench's busy guest has (the guest caches a
    # file's pages; reading /dev/vda here left nothing in the cache).
    disk = busy_disk(tmp_path, 512)
    g = boot(extra=["-drive", f"file={disk},format=raw,if=none,id=disk0",
                    "-device", "virtio-blk-pci,drive=disk0"])
    g.expect_oom_kill = True  # measured below, not a splat
    g.load()

    # 1: 128 MiB of free memory.
    vm1 = g.vmstat()
    g.set_balloon_pages(128 * MIB // PAGE)
    g.wait_balloon(128 * MIB // PAGE)
    view = g.balloon_view()
    # Failed once in 33 runs (2026-12-07), its message lost. Traced
    # (probe_idle_pacing.py), the first step's start found the tasks the
    # host's request woke on the run queue in a fifth of fresh boots; a
    # step whose other end found one too would rest, the likely cause (no
    # trace caught a rest). Pacing::contended asks for the step before as
    # well since. If it fails again: what reclaim did meanwhile and the
    # load average after.
    why = {}
    if view["paced_ms"] != 0 or view["pressure_stops"] != 0:
        vm = g.vmstat()
        why = {k: vm[k] - vm1.get(k, 0) for k in vm
               if k.startswith(("pgscan", "pgsteal", "workingset_refault"))}
        why["loadavg"] = g.sh("cat /proc/loadavg").strip()
    assert view["paced_ms"] == 0 and view["pressure_stops"] == 0, (view, why)

    # 1b: another 128 MiB of free memory with a CPU hog on every vCPU:
    # the steps rest (CONTENDED_REST_PCT) although reclaim does nothing.
    # Each hog pinned to its vCPU. Unpinned, this part failed with
    # paced_ms 0 in 1 of 13 runs beside the bench's smoke test
    # (2026-12-07; another of them failed, its message lost). The likely
    # cause, not traced: new hogs can share one vCPU until the scheduler
    # balances them, while the work runs alone on the other, and
    # inflating 128 MiB of free memory is over sooner.
    on_each_vcpu(g, "sh -c 'while :; do :; done'", "/tmp/hogs")
    # Field 39 of /proc/PID/stat: the CPU each hog last ran on.
    wait_until("a hog on each vCPU", lambda: sorted(map(int, g.sh(
        "for p in $(cat /tmp/hogs); do cut -d' ' -f39 /proc/$p/stat; done").split()))
        == list(range(g.smp)), 10)
    vm0 = g.vmstat()
    g.set_balloon_pages(256 * MIB // PAGE)
    g.wait_balloon(256 * MIB // PAGE)
    # Part 2 asks for idle CPUs: no hog left.
    kill_and_wait(g, "/tmp/hogs", "hogs")
    vm = g.vmstat()
    view = g.balloon_view()
    print("part 1b:", view)
    assert view["paced_ms"] > 0 and view["pressure_stops"] == 0, view
    assert all(vm.get(k, 0) == vm0.get(k, 0) for k in ("pgscan_kswapd", "pgscan_direct")), (vm0, vm)
    paced_free = view["paced_ms"]

    # 2: into the page cache of the whole disk, 128 MiB past free memory,
    # with a task on each vCPU that wakes every millisecond for a moment
    # (rb-tick): the CPUs are idle for pacing's purposes. Without the
    # ticks this part failed in about 1 run of 8 beside the bench's smoke
    # test, and a probe (probe_idle_pacing.py, test_idle_reclaim_rests_little)
    # found rests of over a tenth in 4 of 12 inflations, for workqueue
    # workers the steps themselves woke; with the ticks, in 4 of 4 (12 to
    # 20%), until the driver gave the CPU away for a moment before
    # believing a run queue (cpu_wanted, 2026-12-08). The driver before
    # that failed this part in the one run made of it alone (575 of
    # 2769 ms).
    g.sh("mkdir -p /mnt && mount /dev/vda /mnt && cat /mnt/cache.bin > /dev/null", timeout=600)
    on_each_vcpu(g, "rb-tick 1000", "/tmp/ticks")
    info = g.meminfo()
    assert info["Cached"] > 400 * MIB, info
    pages = g.balloon_pages() + (info["MemFree"] + 128 * MIB) // PAGE
    mark = g.console_size()
    vm0 = g.vmstat()
    g.set_balloon_pages(pages)
    took_ms = g.wait_balloon(pages, timeout=300) * 1000
    view, vm = g.balloon_view(), g.vmstat()
    rested_ms = view["paced_ms"] - paced_free
    # (paced_ms counts pressed steps' 50 ms looks too: refaults say so.)
    # Whole in the captured output if it fails (pytest shortens a message).
    print("part 2:", rested_ms, took_ms, view, {
        k: vm[k] - vm0.get(k, 0) for k in vm
        if k.startswith(("workingset_refault", "pgscan", "pgsteal"))},
        g.sh("cat /proc/loadavg").strip())
    assert rested_ms < took_ms / 10, (rested_ms, took_ms)
    assert view["pressure_stops"] == 0, (view, g.console(mark))
    stolen = sum(vm[k] - vm0.get(k, 0) for k in ("pgsteal_kswapd", "pgsteal_direct"))
    assert stolen > 64 * MIB // PAGE, (stolen, rested_ms, took_ms)
    print(f"reclaim with the CPUs idle: {stolen * PAGE // MIB} MiB reclaimed, "
          f"rested {rested_ms} of {took_ms:.0f} ms")
    kill_and_wait(g, "/tmp/ticks", "ticks")

    # 3: a workload (32 MiB anonymous, 64 MiB of the disk mapped and read)
    # and a target of all but 1 MiB of the guest.
    g.sh("rb-busy 32 /mnt/cache.bin 64 600 /tmp/busy.log </dev/null >/dev/null 2>&1 &")
    wait_until("the workload to log", lambda: len(g.sh("cat /tmp/busy.log").split()) >= 9, 60)
    kills0 = g.vmstat().get("oom_kill", 0)
    mark = g.console_size()
    g.set_balloon_pages(g.mem_bytes // PAGE - 256)
    reached = g.wait_balloon_settled(stable_s=3)
    assert reached < g.mem_bytes // PAGE - 256
    rows = len(g.sh("cat /tmp/busy.log").splitlines())
    settled = g.console(mark)
    time.sleep(3)  # retries along the floor meanwhile: no more lines
    log = g.console(mark)
    lines = ("out of puff", "memory pressure:")
    assert [log.count(x) for x in lines] == [settled.count(x) for x in lines], log
    puffs, stops = log.count("out of puff"), log.count("memory pressure:")
    assert puffs <= 1 and puffs + stops >= 1, log
    # A stop logs once; the balloon may go on once the guest has more
    # room and stop again, but not log at every retry.
    assert stops <= 2, log
    assert g.vmstat().get("oom_kill", 0) == kills0, log
    assert g.sh("pidof rb-busy >/dev/null && echo yes || echo no").strip() == "yes"
    assert len(g.sh("cat /tmp/busy.log").splitlines()) > rows  # still running
    g.sh("killall rb-busy; true")


def test_a_cgroup_out_of_memory_keeps_the_balloon(boot):
    """A memory cgroup that hits its own memory.max OOM-kills inside the
    cgroup; the kernel calls the OOM notifiers only for the whole guest, so
    the balloon keeps every page although deflate-on-oom=on and there is
    room in the guest for what the cgroup wanted. A driver that deflates
    only from the OOM notifier cannot fail this: it holds the kernel to
    the behaviour the driver relies on (issue 19 asks for the proof)."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=on")
    g.expect_oom_kill = True
    g.load()
    reached = fill_balloon(g, 600)
    vm0 = g.vmstat()
    cg = "/sys/fs/cgroup/hog"
    g.sh("mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && "
         "echo +memory > /sys/fs/cgroup/cgroup.subtree_control && "
         f"mkdir {cg} && echo 64M > {cg}/memory.max && "
         "echo 1 > /proc/sys/vm/overcommit_memory")
    assert g.meminfo()["MemAvailable"] > 160 * MIB  # the hog fits the guest
    status, out = g.run(f"sh -c 'echo $$ > {cg}/cgroup.procs && "
                        "exec dd if=/dev/zero of=/dev/null bs=128M count=1'", check=False)
    assert status != 0, out
    assert g._kv(f"{cg}/memory.events")["oom_kill"] >= 1
    vm = assert_balloon_kept(g, vm0, reached)
    assert vm["oom_kill"] > vm0.get("oom_kill", 0)


def test_free_page_reporting_returns_memory_to_the_host(boot):
    """free-page-reporting=on: memory the guest frees goes back to the host
    without any balloon target."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,free-page-reporting=on")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert negotiated(g)["reporting"]
    base, after = dirty_and_wait_for_the_host(g)
    assert g.balloon_pages() == 0
    # What went back came in reported blocks of 2 or 4 MiB (a pageblock up
    # to the allocator's largest order).
    returned = base + 600 * MIB - after
    assert g.balloon_view()["reported_blocks"] * 4 * MIB >= returned


def test_reporting_without_the_feature_leaves_memory(boot):
    """The control: with reporting off, freed memory stays with the guest's
    process on the host."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,free-page-reporting=off")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert not negotiated(g)["reporting"]
    base = g.host_rss()
    g.dirty(600)
    time.sleep(10)
    # Some of the 600 MiB reuse memory the host backs already.
    assert g.host_rss() > base + 400 * MIB


def test_balloon_pages_migrate(guest):
    """Compaction migrates balloon pages (vmstat balloon_migrate), telling the
    host, and nothing is lost: deflating returns every page."""
    g = guest
    total = g.meminfo()["MemTotal"]
    g.dirty(600)
    # Where balloon pages land is up to the page allocator; compaction only
    # moves those below its free scanner. A few rounds of fragmenting
    # memory make it all but certain that some are.
    for _ in range(4):
        g.sh("dd if=/dev/zero of=/tmp/fill bs=1M count=150 2>/dev/null")
        g.set_balloon_pages(120000)
        g.wait_balloon(120000)
        g.sh("rm /tmp/fill")
        g.set_balloon_pages(40000)  # leaves holes all over memory
        g.wait_balloon(40000)
        g.sh("echo 1 > /proc/sys/vm/compact_memory")
        if g.vmstat().get("balloon_migrate", 0) > 0:
            break
    vm = g.vmstat()
    assert vm.get("balloon_migrate", 0) > 0, vm
    assert vm["nr_balloon_pages"] == 40000
    assert g.balloon_view()["migrated_pages"] == vm["balloon_migrate"]
    g.set_balloon_pages(0)
    g.wait_balloon(0)
    vm = g.vmstat()
    assert vm["nr_balloon_pages"] == 0
    assert g.meminfo()["MemTotal"] == total


# Every pair of the three features in each of its four states, in four
# guests instead of eight; and every layout of the optional queues, whose
# numbers are dense (hint only, reporting only, both, neither).
# DEFLATE_ON_OOM has no queue.
MATRIX = [
    dict(oom="off", reporting="off", hint="off"),
    dict(oom="off", reporting="on", hint="on"),
    dict(oom="on", reporting="off", hint="on"),
    dict(oom="on", reporting="on", hint="off"),
]


@pytest.mark.parametrize("features", MATRIX, ids=lambda f: "-".join(f"{k}_{v}" for k, v in f.items()))
def test_feature_matrix(boot, features):
    """Each combination QEMU offers binds, numbers its queues right, inflates
    and deflates."""
    dev = (f"virtio-balloon-pci,id=balloon0,deflate-on-oom={features['oom']}"
           f",free-page-reporting={features['reporting']}"
           f",free-page-hint={features['hint']}")
    extra = []
    if features["hint"] == "on":
        extra = ["-object", "iothread,id=io0"]
        dev += ",iothread=io0"
    g = boot(balloon=dev, extra=extra)
    g.sh("insmod /lib/modules/rust_balloon.ko")
    got = negotiated(g)
    assert got["oom"] == (features["oom"] == "on")
    assert got["hint"] == (features["hint"] == "on")
    assert got["reporting"] == (features["reporting"] == "on")
    g.dirty(300)
    g.set_balloon_pages(30000)
    g.wait_balloon(30000)
    g.set_balloon_pages(0)
    g.wait_balloon(0)
    if got["reporting"]:
        # The reporting queue is the right one: QEMU takes the memory back.
        base = g.host_rss()
        g.dirty(300)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and g.host_rss() > base + 150 * MIB:
            time.sleep(1)
        assert g.host_rss() < base + 150 * MIB


def test_page_poison_with_init_on_free(boot):
    """init_on_free=1: the driver negotiates PAGE_POISON (value 0) and can
    report free pages."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,free-page-reporting=on",
             cmdline="init_on_free=1")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    got = negotiated(g)
    assert got["poison"] and got["reporting"]
    g.set_balloon_pages(10000)
    g.wait_balloon(10000)
    g.set_balloon_pages(0)
    g.wait_balloon(0)


def test_suspend_and_resume(boot):
    """S3 suspend with the balloon inflated, woken over QMP: freeze gives
    every page back, restore finds the queues again and re-inflates to the
    host's target; stats still flow."""
    g = boot(s3=True)
    g.sh("insmod /lib/modules/rust_balloon.ko")
    total = g.meminfo()["MemTotal"]
    g.set_balloon_pages(20000)
    g.wait_balloon(20000)
    seq = g.send("echo deep > /sys/power/mem_sleep && echo mem > /sys/power/state")
    deadline = time.monotonic() + 60
    while g.qmp.cmd("query-status")["status"] != "suspended":
        assert time.monotonic() < deadline, "guest did not suspend"
        time.sleep(0.2)
    g.qmp.cmd("system_wakeup")
    status, out = g.wait(seq, timeout=120)
    assert status == 0, out
    log = g.console(g.mark)
    assert "suspend: 20000 pages returned" in log, log[-3000:]
    g.wait_balloon(20000)
    assert total - g.meminfo()["MemTotal"] == 20000 * PAGE
    vm = g.vmstat()
    assert vm["balloon_inflate"] == 40000 and vm["balloon_deflate"] == 20000
    g.qom_balloon("guest-stats-polling-interval", 1)
    time.sleep(3)
    assert g.qom_balloon("guest-stats")["stats"]["stat-total-memory"] == g.meminfo()["MemTotal"]
    g.set_balloon_pages(0)
    g.wait_balloon(0)


def test_wakeup_source_held_while_adjusting(guest):
    """As the C driver: the device is wakeup-capable and keeps the system
    awake (no autosleep) while the balloon moves, and lets go at the target."""
    g = guest
    power = g.sh("ls -d /sys/bus/virtio/drivers/rust_balloon/virtio*/power").strip()
    # Capable, and off by default; user space turns it on (as for C).
    assert g.sh(f"cat {power}/wakeup").strip() == "disabled"
    g.sh(f"echo enabled > {power}/wakeup")
    before = int(g.sh(f"cat {power}/wakeup_active_count"))
    g.set_balloon_pages(50000)
    g.wait_balloon(50000)
    time.sleep(0.5)
    assert int(g.sh(f"cat {power}/wakeup_active_count")) > before
    assert g.sh(f"cat {power}/wakeup_active").strip() == "0"
    g.set_balloon_pages(0)
    g.wait_balloon(0)


def wait_log(g, pattern, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, g.console(g.mark))
        if m:
            return m
        assert time.monotonic() < deadline, f"no {pattern!r} in the log"
        time.sleep(0.5)


def test_free_page_hinting_during_live_migration(boot, tmp_path):
    """free-page-hint=on: a real migration (to a file) asks for hints; the
    driver sends free blocks and stops, and when the host is done every
    block comes back to the guest, which carries on."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,free-page-hint=on,iothread=io0",
             extra=["-object", "iothread,id=io0"])
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert negotiated(g)["hint"]
    g.sh("dd if=/dev/urandom of=/tmp/r bs=1M count=200 2>/dev/null; rm /tmp/r", timeout=600)
    free0 = g.free_bytes()
    # Slow enough (32 MiB/s) that the guest hints before the RAM is sent.
    g.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 32 * MIB})
    g.qmp.cmd("migrate", uri=f"exec:cat > {tmp_path}/migration")
    deadline = time.monotonic() + 600
    while (status := g.qmp.cmd("query-migrate").get("status")) != "completed":
        assert status not in ("failed", "cancelled"), status
        assert time.monotonic() < deadline, "migration did not complete"
        time.sleep(0.5)
    ram = g.qmp.cmd("query-migrate")["ram"]
    # The 200 MiB of freed random data need not be sent: without hints this
    # migration transfers about 296 MB, with them about 135 MB.
    assert ram["transferred"] < 220 * MIB, ram
    m = wait_log(g, r"free page hint (0x[0-9a-f]+): (\d+) blocks sent")
    assert int(m.group(1), 16) >= 0x80000000  # the host's ids start there
    assert int(m.group(2)) > 0
    g.qmp.cmd("cont")  # the source guest runs on after the migration
    wait_log(g, r"free page hint done: \d+ blocks back")
    sent = sum(int(n) for n in re.findall(r"free page hint 0x[0-9a-f]+: (\d+) blocks sent",
                                          g.console(g.mark)))
    assert g.balloon_view()["hinted_blocks"] == sent
    assert g.sh("echo alive").strip() == "alive"
    assert abs(g.free_bytes() - free0) < 64 * MIB
