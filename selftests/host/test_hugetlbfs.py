# SPDX-License-Identifier: GPL-2.0
"""Guests whose RAM is backed by the host's hugetlbfs: ballooning gives the
host's 2 MiB pages back (HugePages_Free on the host), and the guest's
memory stays intact across inflate/deflate cycles.

QEMU discards a 2 MiB host page only when all 512 of its 4 KiB frames
arrive in one buffer (hw/virtio/virtio-balloon.c, balloon_inflate_page:
the partially ballooned page bitmap lives for one element). The driver
sends one whole block per buffer on virtio-pci; buffer_pfns=256 (the C
driver's buffer, the shape it uses on virtio-mmio) gives nothing back."""

import os
from contextlib import contextmanager

import pytest

from guest import (HUGE_PAGE, MIB, PAGE, HugePagesUnavailable, host_huge_free,
                   host_huge_pages, hugetlb_backing)



@contextmanager
def hugetlb_guest(boot, mib):
    """A guest of `mib` MiB backed by host huge pages, all of them touched
    (the host backs every page), with no driver loaded yet."""
    try:
        pool = host_huge_pages(mib // 2 + 16)
        pool.__enter__()
    except HugePagesUnavailable as e:
        pytest.skip(str(e))
    try:
        g = boot(mem_mib=mib, extra=hugetlb_backing(mib))
        g.dirty_all()
        yield g
        # Stopped before the pool shrinks back (the boot fixture then
        # only checks its log).
        g.stop()
    finally:
        pool.__exit__(None, None, None)


# Cycles of the memory-intact test: the full 20 with RB_STRESS=1.
CYCLES = 20 if os.environ.get("RB_STRESS") == "1" else 4

# vm.nr_hugepages is the host's: one test at a time changes it.
pytestmark = pytest.mark.xdist_group("host")

def returned_mib(g, pages):
    """Inflates to `pages` and returns how many MiB of 2 MiB host pages
    came back to the host's pool meanwhile."""
    before = host_huge_free()
    g.set_balloon_pages(pages)
    g.wait_balloon(pages)
    return (host_huge_free() - before) * HUGE_PAGE // MIB


def test_hugetlbfs_pages_go_back_to_the_host(boot):
    """Inflating a 2 GiB guest by 1 GiB gives at least 90% of it back as
    host huge pages with the default buffers on virtio-pci (one block per
    buffer); with buffer_pfns=256 (two buffers per block) nothing comes
    back, which is why the driver does not send those on virtio-pci."""
    with hugetlb_guest(boot, 2048) as g:
        g.load(params="buffer_pfns=256")
        assert "Pci with 256 PFNs per buffer" in g.console(), "buffer_pfns=256 not honoured"
        half = 256 * MIB // PAGE
        got = returned_mib(g, half)
        assert got < 0.1 * 256, f"{got} MiB came back with buffers of half a huge page"
        g.set_balloon_pages(0)
        g.wait_balloon(0)
        g.sh("rmmod rust_balloon")

        g.load()
        assert "Pci with 512 PFNs per buffer" in g.console()
        ballooned = 1024
        got = returned_mib(g, ballooned * MIB // PAGE)
        print(f"\n1024 MiB ballooned, {got} MiB of host huge pages back")
        assert got >= 0.9 * ballooned, f"only {got} of {ballooned} MiB back in the host's pool"
        # Deflating lets the guest use the memory again (the host backs it on
        # the next touch).
        g.set_balloon_pages(0)
        g.wait_balloon(0)
        g.dirty(768)
        g.unload_and_check()


def test_hugetlbfs_guest_memory_intact_across_cycles(boot):
    """A 128 MiB file of known words in the RAM of a 1 GiB guest reads
    back unchanged after 20 cycles (4 in `make check`, 20 with RB_STRESS=1) of inflating by 512 MiB, which gives
    host huge pages back, and deflating: no page the guest still uses is
    ever discarded.

    Between cycles the guest writes 192 MiB, as a guest using the memory
    it got back; the next cycle balloons some of that again, and the host
    discards it again (120 to 190 MiB a cycle when measured)."""
    with hugetlb_guest(boot, 1024) as g:
        g.sh("rb-pattern write /mem/pattern 128 20261126", timeout=600)
        g.load()
        pages = 512 * MIB // PAGE
        back = []
        for _ in range(CYCLES):
            back.append(returned_mib(g, pages))
            g.set_balloon_pages(0)
            g.wait_balloon(0)
            g.dirty(192)
        print(f"\nMiB of host huge pages back per cycle: {back}")
        assert back[0] >= 0.9 * 512, back
        assert all(mib > 0 for mib in back[1:]), back
        print(g.sh("rb-pattern check /mem/pattern 128 20261126", timeout=600))
        g.unload_and_check()


def test_buffer_pfns_other_than_256_or_512_refused(boot):
    """A buffer shape the driver does not know fails the load, saying why,
    and leaves the device to a later load."""
    g = boot()
    status, out = g.run("insmod /lib/modules/rust_balloon.ko buffer_pfns=300", check=False)
    assert status != 0, out
    assert "buffer_pfns=300: must be 0 (by transport), 256 or 512" in g.console(g.mark)
    g.load(params="buffer_pfns=256")
    g.set_balloon_pages(1000)
    g.wait_balloon(1000)
    g.unload_and_check()
