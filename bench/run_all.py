"""Run every sealbridge benchmark: ``python -m bench.run_all [--quick | --smoke] [--only NAME]``.

``--smoke`` is what ``make test`` runs (``tests/e2e/test_bench_smoke.py``): every benchmark
at its smallest sizes, results written to ``$SEALBRIDGE_BENCH_RESULTS`` (a temporary
folder there), nothing asserted about speed -- only that each one still runs to the end
and writes its JSON, so that no benchmark can rot unnoticed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from bench import (
    bench_amplification,
    bench_availability,
    bench_consensus,
    bench_contracts,
    bench_deploy,
    bench_e2e,
    bench_interop,
    bench_keyrelease,
    bench_keys,
    bench_query,
    bench_runtime,
    bench_swap,
    bench_verify,
    plots,
)
from bench.common import console, get_machine_info, print_table, write_results

BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "runtime": bench_runtime.run,
    "verify": bench_verify.run,
    "query": bench_query.run,
    "e2e": bench_e2e.run,
    "contracts": bench_contracts.run,
    "amplification": bench_amplification.run,
    "deploy": bench_deploy.run,
    "keys": bench_keys.run,
    "availability": bench_availability.run,
    "swap": bench_swap.run,
    "interop": bench_interop.run,
    "consensus": bench_consensus.run,
    "keyrelease": lambda quick: bench_keyrelease.run(quick, ("matching", "swap", "persist")),
}


def mode_name(args: argparse.Namespace) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the sealbridge benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller sizes")
    parser.add_argument(
        "--smoke", action="store_true", help="the smallest sizes (make test runs this)"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["SEALBRIDGE_BENCH_SMOKE"] = "1"
        args.quick = True
    machine = get_machine_info()
    console.print(
        f"[bold]sealbridge benchmarks[/] ({mode_name(args)}) on "
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
