# SPDX-License-Identifier: GPL-2.0
"""Huge-block inflation: the balloon takes free 2 MiB blocks first, so the
host gets whole huge pages back, and falls back to single pages."""

import time

from guest import MIB, PAGE

BLOCK = 512  # 4 KiB pages in a 2 MiB block

# (balloon pages, of them in wholly ballooned aligned 2 MiB blocks), from
# /proc/kpageflags (rb-offline.c; with od and awk over the file this test
# took 82 s, with the helper 35 s).
COUNT_BLOCKS = f"rb-offline {BLOCK}"


def offline_pages(g, tries=6):
    """(balloon pages, of them in whole 2 MiB blocks), read while compaction
    is not migrating balloon pages: a page being migrated is offline twice
    (old and new) for a moment, and in a fragmented guest compaction
    migrates thousands of them. Two equal reads with no migration in
    between count."""
    last = None
    for _ in range(tries):
        before = g.vmstat().get("balloon_migrate", 0)
        total, whole = (int(v) for v in g.sh(COUNT_BLOCKS, timeout=300).split())
        if g.vmstat().get("balloon_migrate", 0) == before and (total, whole) == last:
            break
        last = (total, whole)
        time.sleep(1)
    return total, whole


def test_inflate_takes_whole_huge_blocks(guest):
    """After the guest has written and freed most of its memory, free 2 MiB
    blocks abound: nearly every ballooned page must lie in a wholly
    ballooned, aligned 2 MiB block (the host frees whole huge pages)."""
    guest.dirty_all()
    pages = 256 * MIB // PAGE
    guest.set_balloon_pages(pages)
    guest.wait_balloon(pages)
    total, whole = offline_pages(guest)
    assert total == pages, (total, pages)
    assert whole >= 0.9 * pages, f"only {whole} of {pages} pages in whole 2 MiB blocks"
    # Partial deflate splits nothing that matters: single pages go back.
    guest.set_balloon_pages(pages - 300)
    guest.wait_balloon(pages - 300)
    assert offline_pages(guest)[0] == pages - 300
    guest.set_balloon_pages(0)
    guest.wait_balloon(0)
    assert offline_pages(guest)[0] == 0


def free_huge_pages(g):
    """4 KiB pages free in blocks of 2 MiB or more (/proc/buddyinfo)."""
    pages = 0
    for row in g.sh("cat /proc/buddyinfo").splitlines():
        counts = [int(c) for c in row.split()[4:]]
        pages += sum(n << order for order, n in enumerate(counts) if order >= 9)
    return pages


def test_falls_back_to_single_pages(boot):
    """With free memory fragmented into holes smaller than 2 MiB, the
    balloon still reaches its target, from single pages."""
    g = boot(mem_mib=512)
    g.sh("insmod /lib/modules/rust_balloon.ko")
    # No proactive compaction: kcompactd would otherwise rebuild free 2 MiB
    # blocks in the background (a clean-clone run found 34 wholly ballooned
    # blocks here), which inflation then rightly takes first.
    g.sh("echo 0 > /proc/sys/vm/compaction_proactiveness")
    # Fill the guest with 1 MiB files, then free every other one: most
    # free memory is then in holes too small for a 2 MiB block.
    g.sh("mkdir /mem/f; n=$(awk '/MemFree/ {print int($2 / 1024) - 24}' /proc/meminfo); "
         "i=0; while [ $i -lt $n ]; do "
         "dd if=/dev/zero of=/mem/f/$i bs=1M count=1 2>/dev/null; i=$((i + 1)); done; "
         "rm -f /mem/f/*[02468]", timeout=600)
    pages = 128 * MIB // PAGE
    free_huge = free_huge_pages(g)
    assert free_huge < pages // 4, f"setup left {free_huge} pages in free 2 MiB blocks"
    g.set_balloon_pages(pages)
    g.wait_balloon(pages)
    total, whole = offline_pages(g)
    assert total == pages, (total, pages)
    assert whole < pages // 2, (f"{whole} of {pages} pages in whole 2 MiB blocks "
                                f"({free_huge} free in such blocks before)")
    g.set_balloon_pages(0)
    g.wait_balloon(0)
