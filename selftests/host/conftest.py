# SPDX-License-Identifier: GPL-2.0
"""pytest fixtures: the kernel, the module, the initramfs and guests.

`make check` sets RB_KDIR (the test kernel's build directory) and builds
rust_balloon.ko first; run pytest through it."""

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from guest import Guest, kernel_arch, kernel_image, pick_accel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kdir():
    path = os.environ.get("RB_KDIR")
    if not path:
        pytest.exit("RB_KDIR is not set: run the tests with `make check`", 2)
    return Path(path)


def make_initramfs(kdir, rust_ko, out):
    """An initramfs holding `rust_ko` and the kernel's C virtio_balloon.ko."""
    c_ko = kdir / "drivers/virtio/virtio_balloon.ko"
    for ko in (rust_ko, c_ko):
        if not ko.exists():
            pytest.exit(f"missing {ko}", 2)
    ksft = kdir / "source/tools/testing/selftests/kselftest"
    subprocess.run([str(ROOT / "selftests/guest/mkinitramfs.sh"), str(out),
                    str(rust_ko), str(c_ko), str(ksft)], check=True)
    return out


@pytest.fixture(scope="session")
def initramfs(kdir, tmp_path_factory):
    # RB_RUST_KO: another build of the module (an older commit's, say, to
    # show that a test fails without a fix).
    rust_ko = Path(os.environ.get("RB_RUST_KO", ROOT / "rust_balloon.ko"))
    return make_initramfs(kdir, rust_ko,
                          tmp_path_factory.mktemp("initramfs") / "initramfs.cpio.gz")


# Tests that build kernels or modules take both cores: `make check` runs
# them first, one at a time, before the guest tests run two at a time
# (scripts/check.sh). Tests that change host-wide state (huge pages, the
# libvirt daemons) are marked with one xdist group. The huge-page ones also
# take a host-wide lock (guest.host_huge_pages), for runs outside make
# check, and because the group did nothing under pytest 9 (see
# scripts/setup.sh, which now pins pytest 8).
SERIAL_FILES = {"test_build.py", "test_builtin.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: builds on both cores; run alone, before the guests")


@pytest.fixture(scope="session")
def accel(kdir, initramfs, tmp_path_factory):
    """The accelerator, probed once per run: `make check` names a run
    directory (RB_RUN_DIR) that the pytest runs and their xdist workers
    share, and the first to get there probes."""
    if kernel_arch(kdir) != "x86":
        return "tcg"  # an arm64 guest on this x86 host: TCG only
    run_dir = os.environ.get("RB_RUN_DIR")
    if not run_dir:
        chosen = pick_accel(kernel_image(kdir), initramfs, tmp_path_factory.mktemp("kvm-probe"))
    else:
        known = Path(run_dir) / "accel"
        with open(Path(run_dir) / "accel.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if known.exists():
                chosen = known.read_text().strip()
            else:
                chosen = pick_accel(kernel_image(kdir), initramfs,
                                    tmp_path_factory.mktemp("kvm-probe"))
                known.write_text(chosen)
    print(f"\naccelerator: {chosen}")
    return chosen


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test, for the `boot` fixture."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def boot(kdir, initramfs, accel, tmp_path, request):
    """Boots guests: boot(mem_mib=..., balloon=...), or boot(module=KO) with
    another build of rust_balloon.ko, or boot(kernel=IMAGE) with another
    kernel image built from the test kernel's tree. Each is stopped after the test, and
    any kernel splat it printed fails the test."""
    guests = []

    def start(module=None, kernel=None, **kwargs):
        image = initramfs
        if module:
            image = make_initramfs(kdir, Path(module),
                                   tmp_path / f"initramfs{len(guests)}.cpio.gz")
        g = Guest(kernel or kernel_image(kdir), image, tmp_path / f"guest{len(guests)}",
                  accel=accel, arch=kernel_arch(kdir), **kwargs)
        guests.append(g)
        return g.start()

    yield start
    problems = []
    call = getattr(request.node, "rep_call", None)
    for i, g in enumerate(guests):
        # A failed or timed-out test shows where each guest was.
        if call is not None and call.failed:
            print(f"\n--- guest {i} console tail ({g.console_path}) ---\n"
                  + g.console()[-4000:])
        problems += g.splats()
        g.stop()
    if problems:
        pytest.fail("kernel splat in the guest log:\n" + "\n----\n".join(problems),
                    pytrace=False)


@pytest.fixture
def guest(boot):
    """A 1 GiB guest with rust_balloon loaded and bound."""
    g = boot()
    g.sh("insmod /lib/modules/rust_balloon.ko")
    return g
