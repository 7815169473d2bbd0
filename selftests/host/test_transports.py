# SPDX-License-Identifier: GPL-2.0
"""The core of the driver over every transport a host offers: virtio-pci
modern-only, legacy virtio-pci (what a transitional device falls back to
with disable-modern=on), and virtio-mmio, legacy and modern, on QEMU's
microvm machine with virtio-balloon-device (Firecracker offers modern
virtio-mmio).

Per transport: bind, inflate (actual, MemTotal, host RSS), stats, deflate,
rmmod while inflated; and, on legacy virtio-pci and modern virtio-mmio,
deflate on OOM in a second guest (a device with deflate-on-oom does not
take the balloon out of MemTotal). The rest of the
suite runs over the default, transitional virtio-pci, on q35; legacy
virtio-pci runs on pc."""

import re

import pytest

from guest import MIB, PAGE, wait_until
from test_features import fill_balloon, hog_beyond_available, wait_log

HALF = 512 * MIB // PAGE  # half of the 1 GiB guest
VERSION_1 = 32  # feature bit: a modern (virtio 1.0) device

TRANSPORTS = {
    "pci-modern": dict(device="virtio-balloon-pci,disable-legacy=on", modern=True,
                       bound="Pci with 512 PFNs per buffer"),
    # On pc (i440FX), the machine the rest of the suite does not boot.
    "pci-legacy": dict(device="virtio-balloon-pci,disable-modern=on", modern=False,
                       machine="pc", bound="Pci with 512 PFNs per buffer"),
    # QEMU's virtio-mmio is legacy (version 1 registers, no VERSION_1)
    # unless told otherwise; Firecracker's is modern.
    "mmio-legacy": dict(device="virtio-balloon-device", machine="microvm", modern=False,
                        bound="Mmio with 256 PFNs per buffer"),
    # With the override a hugetlbfs-backed microvm guest would need.
    "mmio-modern": dict(device="virtio-balloon-device", machine="microvm", modern=True,
                        extra=["-global", "virtio-mmio.force-legacy=false"],
                        params="buffer_pfns=512", bound="Mmio with 512 PFNs per buffer"),
}


def boot_on(boot, name, options=""):
    """Boots a guest with the balloon on transport `name` and binds
    rust_balloon to it."""
    t = TRANSPORTS[name]
    g = boot(balloon=f"{t['device']},id=balloon0{options}", machine=t.get("machine"),
             extra=t.get("extra", ()))
    g.load(params=t.get("params", ""))
    bound = g.sh("dmesg | grep 'rust_balloon virtio[0-9]*: bound:'")
    assert t["bound"] in bound, bound
    drivers = g.sh("ls -1 /sys/bus/virtio/drivers/rust_balloon/")
    assert re.search(r"^virtio\d+$", drivers, re.M), drivers
    assert (VERSION_1 in g.features()) == t["modern"], g.features()
    return g


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_core_over_transport(boot, transport):
    g = boot_on(boot, transport)
    g.qom_balloon("guest-stats-polling-interval", 1)
    g.dirty(600)
    total0, rss0 = g.meminfo()["MemTotal"], g.host_rss()

    g.set_balloon_pages(HALF)
    g.wait_balloon(HALF)
    total1, rss1 = g.meminfo()["MemTotal"], g.host_rss()
    assert total0 - total1 == HALF * PAGE, (total0, total1)
    assert rss0 - rss1 >= 0.6 * HALF * PAGE, (
        f"host RSS dropped only {(rss0 - rss1) // MIB} MiB for a 512 MiB balloon")

    # The stats queue works: the host's figures follow the balloon.
    def stats_agree():
        s = g.qom_balloon("guest-stats")["stats"]
        return s.get("stat-total-memory") == total1 and s
    s = wait_until("stats with the ballooned MemTotal", stats_agree, 20, interval=0.5)
    assert s["stat-free-memory"] > 0 and s["stat-minor-faults"] > 0, s

    g.set_balloon_pages(0)
    g.wait_balloon(0)
    assert g.meminfo()["MemTotal"] == total0
    vm = g.vmstat()
    assert vm["balloon_inflate"] == vm["balloon_deflate"] == HALF

    # rmmod while inflated gives every page back and tells the host.
    g.set_balloon_pages(50000)
    g.wait_balloon(50000)
    g.unload_and_check()
    assert "50000 pages returned" in g.console(g.mark)


# One per transport family: the OOM path queues buffers as every deflate
# does, which test_core_over_transport runs on all four.
@pytest.mark.parametrize("transport", ["pci-legacy", "mmio-modern"])
def test_deflate_on_oom_over_transport(boot, transport):
    """A hog larger than what is free finishes, nothing is OOM-killed, and
    the balloon gives pages back."""
    g = boot_on(boot, transport, ",deflate-on-oom=on")
    reached = fill_balloon(g, 900)
    assert reached > 700 * MIB // PAGE, reached
    hog_beyond_available(g)
    wait_log(g, r"out of memory: released \d+ MiB", timeout=30)
    g.unload_and_check()
