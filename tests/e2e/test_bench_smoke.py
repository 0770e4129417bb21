"""Every benchmark runs to the end in its smoke mode (``python -m bench.run_all --smoke``).

Benchmarks are not run by anything else in ``make test``, so a change in ``src/`` that
breaks one would go unnoticed until the next measurement. Here each one runs as a real
subprocess at its smallest sizes (devnets, anvil chains and enclave processes included)
and must exit 0 and write its JSON. Speed is never asserted in a test: the timings the
smoke run prints are thrown away with its temporary results folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_all import BENCHMARKS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600.0  # a smoke run takes well under a minute; this only catches a hang
TAIL = 4000  # characters of output shown when a benchmark fails


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_runs(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "SEALBRIDGE_BENCH_RESULTS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--smoke", "--only", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, (
        f"bench {name} exited {out.returncode}\n"
        f"--- stdout (tail)\n{out.stdout[-TAIL:]}\n--- stderr (tail)\n{out.stderr[-TAIL:]}"
    )
    # run_all.json is run_all's own summary: the benchmark must have written its JSON too
    written = sorted(p.name for p in tmp_path.glob("*.json") if p.name != "run_all.json")
    assert written, f"bench {name} wrote no JSON to {tmp_path}: {sorted(os.listdir(tmp_path))}"
