# SPDX-License-Identifier: GPL-2.0
"""The driver built into the kernel (VIRTIO_BALLOON_RUST=y), in tree: the
test kernel's image built again with it, in its tree overlaid (about
50 s: only what the option changes is rebuilt)."""

import subprocess

import pytest

from conftest import ROOT
from guest import MIB, PAGE

BALLOON_PAGES = 64 * MIB // PAGE


@pytest.fixture(scope="module")
def builtin(kdir, tmp_path_factory):
    """scripts/in-tree.sh --builtin in the test kernel's tree, overlaid: the
    kernel image with the driver built in, and its modules.builtin."""
    out = tmp_path_factory.mktemp("builtin") / "in-tree"
    run = subprocess.run([str(ROOT / "scripts/in-tree.sh"), "--builtin", str(kdir), str(out)],
                         capture_output=True, text=True, errors="replace", timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CONFIG_VIRTIO_BALLOON_RUST=y" in (out / ".config").read_text().splitlines()
    return out


# Kernel builds: longer than the suite's default limit.
pytestmark = pytest.mark.timeout(1800)

def test_modules_builtin_names_the_driver(builtin):
    """modules.builtin (from the `file=` modinfo the module! macro writes
    for a built-in driver) lists rust_balloon under its own name, so that
    `modprobe rust_balloon` knows it is built in. With a plain Kbuild rule
    for the crate it said rust_balloon_crate.ko."""
    entries = (builtin / "modules.builtin").read_text().split()
    assert "kernel/drivers/virtio/rust_balloon/rust_balloon.ko" in entries, [
        e for e in entries if "balloon" in e]


def test_builtin_driver_binds_at_boot_and_inflates(builtin, boot):
    """The built-in driver binds to the balloon at boot, without insmod,
    takes its parameters from the kernel command line under the module's
    name (`rust_balloon.buffer_pfns=256`, where virtio-pci's default is 512;
    Rust module parameters have no sysfs files), and inflates and deflates
    to targets the host sets, with MemTotal following."""
    g = boot(kernel=builtin / "bzImage", cmdline="rust_balloon.buffer_pfns=256")
    bound = g.sh("ls /sys/bus/virtio/drivers/rust_balloon/ | grep '^virtio' || true").split()
    assert len(bound) == 1, bound
    assert "rust_balloon" not in g.sh("cat /proc/modules")
    assert g.balloon_view()["buffer_pfns"] == 256
    total0 = g.meminfo()["MemTotal"]
    for pages in (BALLOON_PAGES, 0):
        g.set_balloon_pages(pages)
        g.wait_balloon(pages)
        assert total0 - g.meminfo()["MemTotal"] == pages * PAGE
