"""Shared helpers: timing statistics, rich tables, machine info and JSON results."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict, Unpack

from rich.console import Console
from rich.table import Table

# where JSON and figures go: bench/results, or $SEALBRIDGE_BENCH_RESULTS (the smoke run)
RESULTS_DIR = Path(
    os.environ.get("SEALBRIDGE_BENCH_RESULTS") or Path(__file__).resolve().parent / "results"
)


def is_smoke() -> bool:
    """True in ``run_all --smoke``: the smallest sizes that still exercise every path."""
    return os.environ.get("SEALBRIDGE_BENCH_SMOKE") == "1"


class DevnetSizes(TypedDict, total=False):
    """Keyword arguments of ``start_devnet`` that size a devnet."""

    workers: int
    gatekeepers: int
    committee_threshold: int
    storage_nodes: int
    storage_threshold: int


# the smoke run's devnets: one gatekeeper (a 1-of-1 committee) and one storage node
SMOKE_DEVNET = DevnetSizes(
    gatekeepers=1, committee_threshold=1, storage_nodes=1, storage_threshold=1
)


def get_devnet_sizes(**sizes: Unpack[DevnetSizes]) -> DevnetSizes:
    """``start_devnet`` keyword arguments: ``sizes``; in the smoke run, whatever they leave
    out is the smallest (:data:`SMOKE_DEVNET`: one gatekeeper, one storage node), so that
    the devnet starts in seconds."""
    if not is_smoke():
        return sizes
    out = SMOKE_DEVNET.copy()
    out.update(sizes)
    return out


console = Console(width=None if sys.stdout.isatty() else 160)


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Latency summary in milliseconds of samples given in seconds."""
    ms = [s * 1000.0 for s in samples_s]
    return {
        "n": float(len(ms)),
        "mean_ms": statistics.fmean(ms) if ms else math.nan,
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms) if ms else math.nan,
        "max_ms": max(ms) if ms else math.nan,
        "stdev_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
    }


def time_samples(fn: Callable[[], object], n: int, *, warmup: int = 5) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``n`` times; return each duration (s)."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else math.nan


def fmt(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}×"


# --------------------------------------------------------------------------- output


def get_machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with machine info; return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {"benchmark": name, "machine": get_machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    console.print(f"[dim]results written to {path}[/]")
    return path


@contextmanager
def temp_home(prefix: str) -> Iterator[Path]:
    """A temporary sealbridge home (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix=f"sealbridge-bench-{prefix}-") as directory:
        yield Path(directory)


def run_cli(run: Callable[[bool], object], doc: str | None) -> None:
    """Command line of one benchmark module: ``python -m bench.<name> [--quick]``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    run(parser.parse_args().quick)
