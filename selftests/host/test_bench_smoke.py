# SPDX-License-Identifier: GPL-2.0
"""Keeps `make bench` working: one small round of the harness, on the test
kernel, without the hugetlbfs and busy scenarios (see bench.SMOKE). It
measures nothing (timings are for `make bench`)."""

import json
import subprocess
import sys
from pathlib import Path


def test_bench_harness_smoke(kdir, initramfs, tmp_path):
    here = Path(__file__).parent
    run = subprocess.run([sys.executable, str(here / "bench.py"), str(kdir), str(initramfs),
                          str(tmp_path), "--smoke"], capture_output=True, text=True, errors="replace",
                         timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Rust/C" in run.stdout, run.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    summary = results["summary"]
    for scenario in ("1of2",):
        for metric in ("inflate_s", "deflate_s", "rss_reclaimed_mib_per_gib",
                       "host_freed_mib_per_gib", "guest_cpu_s"):
            row = summary[f"{scenario}.{metric}"]
            assert set(row) == {"c", "rust", "rust_over_c"}, row
        assert summary[f"{scenario}.inflate_s"]["rust"]["median"] > 0
    assert summary["report.report_s"]["rust"]["median"] > 0
    assert summary["report.report_s"]["c"]["median"] > 0
    assert summary["grow-1.inflate_s_per_gib"]["c"]["median"] > 0
    assert (tmp_path / "timeline.png").stat().st_size > 10000
    assert (tmp_path / "growth.png").stat().st_size > 10000
