"""Not part of `make check` (pytest collects only test_*.py): does a live
migration with free page hinting leave the guest intact, with either
driver? Run on the debug kernel, where `test_hinting_with_a_real_migration`
fails in some runs (docs/reliability.md):

    RB_MACHINE=q35 RB_KDIR=$(scripts/kernel.sh debug --print) \\
    RB_RUST_KO=<module built for it> pytest -n 2 probe_hint_migration.py

Each case dirties the guest's memory, migrates it to a second QEMU at
16 MiB/s and then needs a command answered and no splat on the
destination (the fixture's teardown check).

The 1048568 KiB cases give the guest 8 KiB less than 1 GiB (as
TCG_MIGRATION_KIB in test_reliability.py; at 70167db this was an
environment variable, RB_QEMU_MEM): QEMU's
dirty-bitmap sync then takes its page-by-page path, which resets TCG's
TLB dirty tracking, instead of the word-at-a-time path that (before
QEMU 9.0, commit 03bfc2188f "physmem: Fix migration dirty bitmap
coherency with TCG memory access") does not, and loses guest writes."""
import time

import pytest

from guest import MIB
from test_reliability import HINT, TCG_MIGRATION_KIB


@pytest.mark.parametrize("mem_kib", [1024 * 1024, TCG_MIGRATION_KIB])
@pytest.mark.parametrize("hint", ["on", "off"])
@pytest.mark.parametrize("driver", ["rust", "c"])
@pytest.mark.parametrize("round", [1, 2])
def test_migration_leaves_the_guest_intact(boot, driver, hint, round, mem_kib):
    g = boot(balloon=f"virtio-balloon-pci,id=balloon0,free-page-hint={hint}"
             + (",iothread=io0" if hint == "on" else ""), extra=HINT, mem_kib=mem_kib)
    if driver == "c":
        g.sh("insmod /lib/modules/virtio_balloon.ko")
    else:
        g.load()
    g.dirty_all()
    g.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 16 * MIB})
    start = time.monotonic()
    info = g.migrate_to_new_qemu()
    print(driver, hint, info["status"], f"{time.monotonic() - start:.0f} s")
    assert "MemTotal" in g.sh("cat /proc/meminfo", timeout=120)
