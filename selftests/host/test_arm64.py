# SPDX-License-Identifier: GPL-2.0
"""The core tests on arm64 with 64 KiB pages (`make check-arm64`): QEMU's
virt machine with -cpu max under TCG, virtio-balloon-pci.

A 64 KiB guest page is 16 of the protocol's 4 KiB frames, so a target is
reached only to a whole guest page: the driver rounds it up, as the C
driver does since its fix for endless inflate/deflate on arm64 (2023). The
figures below are in frames (QMP, as everywhere else) and in guest pages
(vmstat) side by side.

Collected only with an arm64 kernel (RB_KDIR); `make check` skips them."""

import os
import time
from pathlib import Path

import pytest

import ktap
from guest import MIB, PAGE, kernel_arch
from test_features import dirty_and_wait_for_the_host, hog_beyond_available

pytestmark = pytest.mark.skipif(
    not os.environ.get("RB_KDIR") or kernel_arch(os.environ["RB_KDIR"]) != "arm64",
    reason="needs an arm64 kernel (make check-arm64)")

GUEST_PAGE = 64 * 1024
FRAMES = GUEST_PAGE // PAGE  # 16 protocol frames per guest page


@pytest.fixture(scope="module", autouse=True)
def sixty_four_k_pages():
    config = (Path(os.environ["RB_KDIR"]) / ".config").read_text()
    assert "\nCONFIG_ARM64_64K_PAGES=y\n" in config, "make check-arm64 boots 64 KiB pages"


def rounded(frames):
    """`frames` rounded up to whole 64 KiB guest pages."""
    return -(-frames // FRAMES) * FRAMES


def balloon_changes(g, seconds):
    """The BALLOON_CHANGE events QEMU sends within `seconds`. The monitor
    client reads events only while it talks to QEMU, so ask every 0.5 s."""
    events = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        g.qmp.cmd("query-status")
        events += g.qmp.get_events(wait=False)
        g.qmp.clear_events()
        time.sleep(0.5)
    return [ev for ev in events if ev["event"] == "BALLOON_CHANGE"]


def test_page_size_and_features(guest):
    """The guest runs 64 KiB pages, and rust_balloon (not the C driver) is
    bound with the features QEMU offers by default (sysfs)."""
    assert guest.sh("grep -m1 KernelPageSize /proc/self/smaps").split()[1:] == ["64", "kB"]
    assert guest.sh("ls -d /sys/bus/virtio/drivers/rust_balloon/virtio* | wc -l").strip() == "1"
    assert guest.sh("ls -d /sys/bus/virtio/drivers/virtio_balloon 2>/dev/null || true") == ""
    features = guest.features()
    assert 1 in features and 2 not in features  # F_STATS_VQ; F_DEFLATE_ON_OOM off
    view = guest.balloon_view()
    # One buffer per 2 MiB block, as on x86: 512 frames, not one 512 MiB PMD.
    assert view["buffer_pfns"] == 512, view


def test_inflate_half_then_deflate(guest):
    """Inflate to half the RAM after dirtying memory: actual equals the
    target, MemTotal and vmstat follow in 64 KiB pages, the host gets the
    memory back; deflate restores all of it."""
    half = 512 * MIB // PAGE
    guest.dirty(600)
    total0 = guest.meminfo()["MemTotal"]
    rss0 = guest.host_rss()
    guest.set_balloon_pages(half)
    guest.wait_balloon(half)
    assert total0 - guest.meminfo()["MemTotal"] == half * PAGE
    vm = guest.vmstat()
    assert vm["nr_balloon_pages"] == vm["balloon_inflate"] == half // FRAMES, vm
    rss1 = guest.host_rss()
    assert rss0 - rss1 >= 0.5 * half * PAGE, (
        f"host RSS dropped only {(rss0 - rss1) // MIB} MiB for a 512 MiB balloon")
    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
    assert guest.meminfo()["MemTotal"] == total0
    vm = guest.vmstat()
    assert vm["balloon_deflate"] == half // FRAMES and vm["nr_balloon_pages"] == 0, vm


@pytest.mark.parametrize("frames", [10001, 4099, 17])
def test_unaligned_target_converges(guest, frames):
    """A target that is no whole number of 64 KiB pages (an odd number of
    frames): the balloon settles on the next whole page and stays there, with
    no BALLOON_CHANGE event after it settled (the endless inflate/deflate the
    C driver had on arm64 changed `actual` for ever)."""
    total0 = guest.meminfo()["MemTotal"]
    guest.set_balloon_pages(frames)
    guest.wait_balloon(rounded(frames))
    balloon_changes(guest, 2)  # the events of the way there
    vm0 = guest.vmstat()
    changes = balloon_changes(guest, 10)
    assert not changes, changes
    vm1 = guest.vmstat()
    assert (vm1["balloon_inflate"], vm1["balloon_deflate"]) == \
        (vm0["balloon_inflate"], vm0["balloon_deflate"])
    assert guest.balloon_pages() == rounded(frames)
    assert total0 - guest.meminfo()["MemTotal"] == rounded(frames) * PAGE
    # Down to another unaligned target, then to zero.
    guest.set_balloon_pages(frames // 2)
    guest.wait_balloon(rounded(frames // 2))
    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
    assert guest.meminfo()["MemTotal"] == total0


def test_deflate_on_oom(boot):
    """deflate-on-oom=on: a hog larger than what is free finishes, nothing
    is OOM-killed, the balloon gives pages back."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,deflate-on-oom=on")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert 2 in g.features()  # VIRTIO_BALLOON_F_DEFLATE_ON_OOM
    total = g.meminfo()["MemTotal"]
    g.set_balloon_pages(900 * MIB // PAGE)
    reached = g.wait_balloon_settled()
    assert reached > 600 * MIB // PAGE, reached
    assert g.meminfo()["MemTotal"] == total  # deflate-on-oom: not adjusted
    vm = hog_beyond_available(g)
    view = g.balloon_view()
    # The view counts 4 KiB frames, vmstat guest pages.
    assert view["oom_released_pages"] == view["deflated_pages"] == \
        vm["balloon_deflate"] * FRAMES, view


def test_free_page_reporting_returns_memory_to_the_host(boot):
    """free-page-reporting=on: memory the guest frees goes back to the host.
    With 64 KiB pages a pageblock is 512 MiB; reporting 2 MiB blocks (order
    5, as the C driver picks there) is what lets it start at all."""
    g = boot(balloon="virtio-balloon-pci,id=balloon0,free-page-reporting=on")
    g.sh("insmod /lib/modules/rust_balloon.ko")
    assert 5 in g.features()  # VIRTIO_BALLOON_F_REPORTING
    dirty_and_wait_for_the_host(g)
    assert g.balloon_view()["reported_blocks"] > 0
    assert g.balloon_pages() == 0


def test_rmmod_while_inflated_returns_every_page(guest):
    total0 = guest.meminfo()["MemTotal"]
    guest.set_balloon_pages(50000)
    guest.wait_balloon(rounded(50000))
    guest.sh("rmmod rust_balloon")
    assert guest.meminfo()["MemTotal"] == total0
    vm = guest.vmstat()
    pages = rounded(50000) // FRAMES
    assert vm["balloon_inflate"] == vm["balloon_deflate"] == pages, vm
    assert vm["nr_balloon_pages"] == 0
    assert guest.balloon_pages() == 0


def test_kunit_suite(guest):
    """The driver's KUnit suite, on 64 KiB pages."""
    out = guest.sh("echo run > /sys/kernel/debug/kunit/rust_balloon/run; "
                   "cat /sys/kernel/debug/kunit/rust_balloon/results")
    assert not ktap.parse(out).problems(), out
    cases = ktap.parse(out, "    ")
    assert not cases.problems(), out
    assert cases.plan == len(cases.passed) == ktap.DRIVER_KUNIT_CASES, out
