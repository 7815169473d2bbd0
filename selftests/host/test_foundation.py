# SPDX-License-Identifier: GPL-2.0
"""Inflate and deflate against QEMU's virtio-balloon-pci, driven over QMP."""

import time

import ktap
from guest import MIB, PAGE

HALF = (512 * MIB) // PAGE  # pages: half of the 1 GiB guest


SELFTEST = "/selftests/rust_balloon/rust_balloon_test.sh /lib/modules"


def test_guest_selftests(boot):
    """The kselftest script: loads, binds (the C driver does not), features
    in sysfs, the debugfs view, sysfs unbind/bind and rmmod/insmod; every
    one of its 8 tests passes and none is skipped."""
    g = boot()
    status, out = g.run(SELFTEST, check=False)
    report = ktap.parse(out)
    assert not report.problems(), out
    assert report.plan == 8 and len(report.passed) == 8, out
    assert status == 0, out
    assert g.sh("grep -c '^rust_balloon ' /proc/modules || true").strip() == "0", \
        "the script left the module loaded: it was not before"


def test_guest_selftests_skip_without_a_device(boot):
    """No balloon device: the whole script skips (KSFT_SKIP, 4), it does
    not fail."""
    g = boot(balloon=None)
    status, out = g.run(SELFTEST, check=False)
    report = ktap.parse(out)
    assert report.skipped_all, out
    assert status == 4, out


def test_guest_selftests_put_the_c_driver_back(boot):
    """The device bound to the C driver: the script takes it over for its
    tests and hands it back to virtio_balloon at the end, unloading
    rust_balloon (which was not loaded before)."""
    g = boot()
    g.sh("insmod /lib/modules/virtio_balloon.ko")
    status, out = g.run(SELFTEST, check=False)
    assert not ktap.parse(out).problems(), out
    assert status == 0, out
    driver = g.sh("basename $(readlink /sys/bus/virtio/devices/$(grep -l 0x0005 "
                  "/sys/bus/virtio/devices/*/device | cut -d/ -f6)/driver)").strip()
    assert driver == "virtio_balloon", out
    assert g.sh("grep -c '^rust_balloon ' /proc/modules || true").strip() == "0", out


def test_inflate_half_then_deflate(guest):
    """Inflate to half the RAM after dirtying memory: actual reaches the
    target, MemTotal drops by exactly the balloon, the host gets the memory
    back; deflate restores all of it."""
    guest.dirty(700)
    total0 = guest.meminfo()["MemTotal"]
    rss0 = guest.host_rss()
    assert rss0 > 600 * MIB, f"dirtying did not reach the host: RSS {rss0 // MIB} MiB"

    guest.set_balloon_pages(HALF)
    guest.wait_balloon(HALF)
    total1 = guest.meminfo()["MemTotal"]
    rss1 = guest.host_rss()
    assert total0 - total1 == HALF * PAGE, (total0, total1)
    # Most of what the guest gave up had been dirtied, so the host must have
    # got most of it back (some balloon pages were never touched).
    assert rss0 - rss1 >= 0.6 * HALF * PAGE, (
        f"host RSS dropped only {(rss0 - rss1) // MIB} MiB for a 512 MiB balloon")

    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
    assert guest.meminfo()["MemTotal"] == total0
    vm = guest.vmstat()
    assert vm["balloon_inflate"] == vm["balloon_deflate"] == HALF


def test_steps_up_and_down_converge(guest):
    """Several targets in a row, up and down, without waiting in between:
    the balloon ends at the last one and MemTotal follows."""
    total0 = guest.meminfo()["MemTotal"]
    for pages in (10000, 60000, 30000, 90000, 5000):
        guest.set_balloon_pages(pages)
    guest.wait_balloon(5000)
    assert total0 - guest.meminfo()["MemTotal"] == 5000 * PAGE
    for pages in (40000, 20000):
        guest.set_balloon_pages(pages)
        guest.wait_balloon(pages)
        assert total0 - guest.meminfo()["MemTotal"] == pages * PAGE
    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
    assert guest.meminfo()["MemTotal"] == total0


def test_target_above_guest_ram(guest):
    """A target larger than the guest: the driver takes what it can, backs
    off, kills nothing, stays responsive, and gives it all back."""
    oom0 = guest.vmstat().get("oom_kill", 0)
    guest.qmp.cmd("balloon", value=1)  # everything but one byte
    # It grows until memory runs out, then stalls without an OOM kill.
    prev, stable = -1, 0
    for _ in range(600):
        now = guest.balloon_pages()
        stable = stable + 1 if now == prev else 0
        if stable >= 20:
            break
        prev = now
        guest.sh("true", timeout=60)  # the guest still answers
        time.sleep(0.1)
    assert prev > HALF, f"balloon only reached {prev} pages"
    assert guest.vmstat().get("oom_kill", 0) == oom0
    assert "out of puff" in guest.console(guest.mark)
    # A new target is honoured while the balloon is stalled.
    guest.set_balloon_pages(1000)
    guest.wait_balloon(1000)
    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
    assert guest.vmstat().get("oom_kill", 0) == oom0


def test_rmmod_while_inflated_returns_every_page(guest):
    guest.dirty(300)
    total0 = guest.meminfo()["MemTotal"]
    guest.set_balloon_pages(50000)
    guest.wait_balloon(50000)
    guest.sh("rmmod rust_balloon")
    assert guest.meminfo()["MemTotal"] == total0
    vm = guest.vmstat()
    assert vm["balloon_inflate"] == vm["balloon_deflate"] == 50000
    assert vm["nr_balloon_pages"] == 0
    assert guest.balloon_pages() == 0  # told the host, too
    assert "50000 pages returned" in guest.console(guest.mark)


def test_unbind_while_inflated_then_bind(guest):
    total0 = guest.meminfo()["MemTotal"]
    dev = guest.sh("basename $(readlink /sys/bus/virtio/drivers/rust_balloon/virtio*)").strip()
    guest.set_balloon_pages(20000)
    guest.wait_balloon(20000)
    guest.sh(f"echo {dev} > /sys/bus/virtio/drivers/rust_balloon/unbind")
    assert guest.meminfo()["MemTotal"] == total0
    guest.sh(f"echo {dev} > /sys/bus/virtio/drivers/rust_balloon/bind")
    # The target is still set on the host: rebinding inflates again.
    guest.wait_balloon(20000)
    assert total0 - guest.meminfo()["MemTotal"] == 20000 * PAGE
    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
