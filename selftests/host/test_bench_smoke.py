# SPDX-License-Identifier: GPL-2.0
"""Keeps `make bench` working: one small round of the harness, on the test
kernel: a small reporting run, a small grow run (the balloon run's
code; its timeline is plotted) and a small rescue run (a write that needs
ballooned memory, with deflate-on-oom), each with both drivers (see
bench.SMOKE).
It measures nothing (timings are for `make bench`)."""

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_harness_smoke(kdir, initramfs, accel, tmp_path):
    here = Path(__file__).parent
    # The accelerator the suite found: bench.py would probe again (8 s
    # where /dev/kvm opens but guests hang).
    env = dict(os.environ, RB_ACCEL=accel)
    run = subprocess.run([sys.executable, str(here / "bench.py"), str(kdir), str(initramfs),
                          str(tmp_path), "--smoke"], capture_output=True, text=True, errors="replace",
                         timeout=900, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Rust/C" in run.stdout, run.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    summary = results["summary"]
    for metric in ("inflate_s_per_gib", "deflate_s_per_gib", "rss_reclaimed_mib_per_gib",
                   "report_s", "report_returned_mib_per_gib"):
        scenario = "report" if metric.startswith("report") else "grow-1"
        row = summary[f"{scenario}.{metric}"]
        assert set(row) == {"c", "rust", "rust_over_c"}, row
        assert row["c"]["median"] > 0 and row["rust"]["median"] > 0, (metric, row)
    # The rescue run drove the balloon: it held memory, and the write took
    # some of it back through the OOM path, with either driver.
    for metric in ("ballooned_mib", "released_mib", "write_s", "unballooned_write_s"):
        row = summary[f"rescue-1.{metric}"]
        assert row["c"]["median"] > 0 and row["rust"]["median"] > 0, (metric, row)
    assert (tmp_path / "timeline.png").stat().st_size > 10000
    assert (tmp_path / "growth.png").stat().st_size > 10000
