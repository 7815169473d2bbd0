# SPDX-License-Identifier: GPL-2.0
"""The kernel's own tools around the driver: the kselftest under the
kernel's runner in a virtme-ng guest, and the KUnit suite."""

import os
import re
import subprocess
from pathlib import Path

import pytest

import ktap
from guest import SPLAT

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("RB_VENV", Path.home() / ".cache/rust-balloon/venv")) / "bin"


def vng_command(kdir, accel, run, rwdir=None):
    """docs/tools.md's virtme-ng one-liner: the test kernel, a balloon device,
    `run` in the guest (which shares the host's file system), and `rwdir` a
    directory the guest may write."""
    return ["vng", *(["--disable-kvm"] if accel == "tcg" else []), "-r", str(kdir),
            *([f"--rwdir={rwdir}"] if rwdir else []),
            "--qemu-opts=-device virtio-balloon-pci", "--", run]


def test_vng_runs_the_kselftest_with_the_kernels_runner(kdir, accel, tmp_path):
    """`make kselftest-install`, then run_kselftest.sh in a vng guest: the
    kernel's runner reports the test passed, and the test's own KTAP (which
    the runner prints behind "# ") has all 8 results ok. udev in the vng
    guest binds the C virtio_balloon first: the test takes the device over
    and hands it back."""
    subprocess.run(["make", "-s", "-C", str(ROOT), f"KDIR={kdir}", "kselftest-install"],
                   check=True, timeout=600)
    # The runner's output and then the kernel log (a splat fails the test)
    # go to files in a directory the guest may write, not through vng's
    # standard output. vng links the guest's /dev/stdout to a virtio-serial
    # port of its own (virtme.dev_stdout), not to the command's standard
    # output (virtme.stdout), and the runner writes the test's KTAP by
    # appending to /dev/stdout: the two streams travel apart and vng's
    # merge of them lost or garbled lines (a clean-clone `make check` got
    # no inner KTAP: "no plan (1..N)"; by hand, "# ook 1 selftests: ...").
    # So /dev/stdout is pointed back at the command's own.
    script = ("ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr; "
              f"{{ build/kselftest/run_kselftest.sh; echo $? > {tmp_path}/rc; }} 2>&1 "
              f"| cat > {tmp_path}/out; dmesg > {tmp_path}/dmesg; "
              f"rc=$(cat {tmp_path}/rc); exit ${{rc:-125}}")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    run = subprocess.run(vng_command(kdir, accel, script, rwdir=tmp_path), cwd=ROOT, env=env,
                         capture_output=True, text=True, errors="replace", timeout=600)
    read = lambda name: ((tmp_path / name).read_text(errors="replace")
                         if (tmp_path / name).exists() else "")
    out, dmesg = read("out"), read("dmesg")
    runner = ktap.parse(out)
    assert not runner.problems(), out + run.stdout + run.stderr
    assert [r.name for r in runner.results] == ["selftests: rust_balloon: rust_balloon_test.sh"], out
    test = ktap.parse(ktap.inner(out))
    assert not test.problems(), out
    assert test.plan == 8 and len(test.passed) == 8, out
    assert run.returncode == 0, out + run.stderr
    assert "rust_balloon" in dmesg, dmesg
    splats = [row for row in dmesg.splitlines() if SPLAT.search(row)]
    assert not splats, dmesg


def test_kunit_suite(guest):
    """The driver's KUnit suite (#[kunit_tests], run through debugfs in the
    KUnit-enabled test kernel): the suite and each of its cases pass."""
    if guest.sh("[ -d /sys/kernel/debug/kunit ] && echo yes || true").strip() != "yes":
        pytest.skip("kernel without CONFIG_KUNIT")
    out = guest.sh("echo run > /sys/kernel/debug/kunit/rust_balloon/run; "
                   "cat /sys/kernel/debug/kunit/rust_balloon/results")
    suite = ktap.parse(out)
    assert not suite.problems(), out
    assert [r.name for r in suite.results] == ["rust_balloon"], out
    cases = ktap.parse(out, "    ")
    assert not cases.problems(), out
    assert cases.plan == len(cases.passed) == ktap.DRIVER_KUNIT_CASES, out


@pytest.mark.xdist_group("host")
def test_libvirt_setmem_and_dommemstat(kdir, tmp_path):
    """scripts/libvirt-demo.sh: libvirt boots the test kernel with the
    module loaded and a stats period of 1 s; `virsh setmem --live` to
    512 MiB and back is reached (`actual`), and the guest's figures in
    `dommemstat` (which only the driver's stats queue delivers) follow."""
    console = tmp_path / "console.log"
    run = subprocess.run([str(ROOT / "scripts/libvirt-demo.sh"), str(kdir)],
                         env=dict(os.environ, RB_CONSOLE_COPY=str(console)),
                         capture_output=True, text=True, errors="replace", timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    stats = []
    for block in run.stdout.split("$ virsh dommemstat")[1:]:
        rows = dict(row.split() for row in block.splitlines()[1:] if len(row.split()) == 2)
        stats.append({k: int(v) for k, v in rows.items() if v.isdigit()})
    before, small, after = stats
    assert (before["actual"], small["actual"], after["actual"]) == (1048576, 524288, 1048576)
    # The guest's own view, from the stats queue: 512 MiB less available,
    # then all of it back (KiB; a few MiB of slack for the guest's own use).
    assert 500 * 1024 <= before["available"] - small["available"] <= 530 * 1024, stats
    assert abs(after["available"] - before["available"]) < 16 * 1024, stats
    assert re.search(r"rust_balloon virtio\d+: bound:", run.stdout), run.stdout
    splats = [row for row in console.read_text(errors="replace").splitlines() if SPLAT.search(row)]
    assert not splats, splats
