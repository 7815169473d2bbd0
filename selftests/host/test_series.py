# SPDX-License-Identifier: GPL-2.0
"""The kernels built from the full upstream series (issue 20): the tree of
`make patches` after its last patch, built by `make patches-check`
(scripts/patches-check.sh), which runs this file with RB_SERIES set to
what it built:

  RB_SERIES/module/   bzImage and rust_balloon.ko: the driver as a module
  RB_SERIES/builtin/  bzImage with the driver built in, and the kernel
                      crate's doctests (CONFIG_RUST_KERNEL_DOCTESTS)

Those kernels run the kselftest and the core tests of this suite, the
KUnit doctests of the abstractions and the driver's KUnit suite. Without
RB_SERIES (make check) the file is skipped: building the two kernels
takes longer than make check's budget."""

import os
from pathlib import Path

import pytest

import ktap
import test_builtin as builtin_tests
import test_features as features
import test_foundation as foundation

pytestmark = pytest.mark.timeout(1800)

# The files of the abstractions, as the doctests' names give them
# (rust_doctest_kernel_<path with _ for />_<line>); each has examples.
DOCTEST_FILES = ("virtio_config_rs", "virtio_driver_rs", "virtio_id_rs", "mm_balloon_rs",
                 "mm_balloon_pfn_rs", "mm_vmstat_rs", "workqueue_cancel_rs")


@pytest.fixture(scope="module")
def series():
    path = os.environ.get("RB_SERIES")
    if not path:
        pytest.skip("RB_SERIES unset: make patches-check builds the series' kernels")
    series = Path(path)
    for f in ("module/bzImage", "module/rust_balloon.ko", "builtin/bzImage"):
        assert (series / f).exists(), f"no {f} in {series}"
    return series


@pytest.fixture
def series_boot(boot, series):
    """boot(), on the kernel of the series with its rust_balloon.ko."""
    def start(**kwargs):
        kwargs.setdefault("kernel", series / "module/bzImage")
        kwargs.setdefault("module", series / "module/rust_balloon.ko")
        return boot(**kwargs)
    return start


@pytest.fixture
def series_guest(series_boot):
    g = series_boot()
    g.sh("insmod /lib/modules/rust_balloon.ko")
    return g


def test_series_kernel_is_the_patched_one(series_guest):
    """The guest runs the series' kernel: its kernel crate has the virtio
    abstraction (the driver, built against it, loaded and bound)."""
    bound = series_guest.sh("ls /sys/bus/virtio/drivers/rust_balloon/ | grep '^virtio' || true")
    assert len(bound.split()) == 1, bound


def test_series_guest_selftests(series_boot):
    foundation.test_guest_selftests(series_boot)


def test_series_inflate_half_then_deflate(series_guest):
    foundation.test_inflate_half_then_deflate(series_guest)


def test_series_rmmod_while_inflated_returns_every_page(series_guest):
    foundation.test_rmmod_while_inflated_returns_every_page(series_guest)


def test_series_stats_follow_the_guest(series_boot):
    features.test_stats_follow_the_guest(series_boot)


def test_series_deflate_on_oom(series_boot):
    features.test_deflate_on_oom(series_boot)


def test_series_builtin_driver_binds_at_boot_and_inflates(series, boot):
    builtin_tests.test_builtin_driver_binds_at_boot_and_inflates(series / "builtin", boot)


def run_kunit(g, suite):
    return g.sh(f"echo run > /sys/kernel/debug/kunit/{suite}/run; "
                f"cat /sys/kernel/debug/kunit/{suite}/results", timeout=600)


def test_series_doctests(series, boot):
    """The kernel crate's KUnit doctests, the abstractions' examples among
    them, pass in the kernel with the driver built in."""
    g = boot(kernel=series / "builtin/bzImage")
    out = run_kunit(g, "rust_doctests_kernel")
    suite = ktap.parse(out)
    assert not suite.problems(), out[-4000:]
    assert [r.name for r in suite.results] == ["rust_doctests_kernel"], out[-4000:]
    cases = ktap.parse(out, "    ")
    assert not cases.problems() and not cases.failed, [r.name for r in cases.failed]
    ours = [r.name for r in cases.passed if any(f in r.name for f in DOCTEST_FILES)]
    for f in DOCTEST_FILES:
        assert any(f in name for name in ours), (f, ours)
    assert len(ours) >= 10, ours
    # For make patches-check's output (docs/).
    (series / "doctests.txt").write_text(
        f"KUnit doctests: {len(cases.passed)} of {cases.plan} passed, "
        f"{len(cases.skipped)} skipped; the series' {len(ours)}: {' '.join(ours)}\n")


def test_series_driver_kunit_suite(series, boot):
    """The driver's own KUnit suite, built in."""
    g = boot(kernel=series / "builtin/bzImage")
    out = run_kunit(g, "rust_balloon")
    suite = ktap.parse(out)
    assert not suite.problems(), out
    cases = ktap.parse(out, "    ")
    assert not cases.problems(), out
    assert cases.plan == len(cases.passed) == ktap.DRIVER_KUNIT_CASES, out
    (series / "kunit.txt").write_text(
        f"the driver's KUnit suite (built in): {len(cases.passed)} of {cases.plan} passed\n")
