"""Run every sealbridge benchmark: ``python -m bench.run_all [--quick] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from bench import (
    bench_availability,
    bench_consensus,
    bench_contracts,
    bench_e2e,
    bench_interop,
    bench_keyrelease,
    bench_keys,
    bench_query,
    bench_runtime,
    bench_swap,
    plots,
)
from bench.common import console, get_machine_info, print_table, write_results

BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "runtime": bench_runtime.run,
    "query": bench_query.run,
    "e2e": bench_e2e.run,
    "contracts": bench_contracts.run,
    "keys": bench_keys.run,
    "availability": bench_availability.run,
    "swap": bench_swap.run,
    "interop": bench_interop.run,
    "consensus": bench_consensus.run,
    "keyrelease": lambda quick: bench_keyrelease.run(quick, ("matching", "swap")),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the sealbridge benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    args = parser.parse_args(argv)
    machine = get_machine_info()
    console.print(
        f"[bold]sealbridge benchmarks[/] ({'quick' if args.quick else 'full'}) on "
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, {machine['date']}"
    )
    files: dict[str, str] = {}
    durations: dict[str, float] = {}
    for name in args.only or list(BENCHMARKS):
        start = time.perf_counter()
        result = BENCHMARKS[name](args.quick)
        durations[name] = time.perf_counter() - start
        files[name] = str(result.get("results_file", ""))
    print_table(
        "benchmark results",
        ["benchmark", "wall time (s)", "JSON"],
        [[n, f"{durations[n]:.1f}", files[n]] for n in files],
    )
    write_results("run_all", {"quick": args.quick, "wall_time_s": durations, "files": files})
    for path in plots.main():
        console.print(f"figure written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
