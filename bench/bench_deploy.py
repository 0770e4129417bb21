"""Benchmark: how long a worker takes to accept a reference contract's code.

A deploy runs the deploy-time checks, compiles the source inside the VM and runs its
module once, in the VM, on fuel (``executor.load_program``). Two cases per reference
contract:

* **cold** -- a fresh process: importing sealbridge, loading the compiled guest from the
  cache (``build.py``; compiling it is a one-time cost per machine, paid at ``make setup``)
  and the first instance, then ``load_program``. Measured in a child process, as a worker
  that just started would pay it;
* **warm** -- ``load_program`` in a process whose VM is up (best of several).

The baseline, in the same run, is importing the same contract as plain Python
(``importlib`` of its module, no checks, no VM). The goal of issue 13 is a deploy of at
most 2 s.

Writes ``bench/results/deploy.json``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import console, fmt, fmt_ratio, is_smoke, print_table, ratio, write_results
from sealbridge.contracts.catalog import BUILTIN, get_source
from sealbridge.contracts.executor import load_program

NAME = "deploy"
GOAL_S = 2.0
ROOT = Path(__file__).resolve().parents[1]
COLD = """
import sys, time
start = time.perf_counter()
from sealbridge.contracts.catalog import get_source
from sealbridge.contracts.executor import load_program
load_program(get_source(sys.argv[1]))
print(time.perf_counter() - start)
"""
PLAIN = """
import importlib, sys, time
start = time.perf_counter()
importlib.import_module("sealbridge.contracts.reference." + sys.argv[1])
print(time.perf_counter() - start)
"""


def run_child(script: str, name: str) -> float:
    done = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", script, name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip().splitlines()[-1:]}")
    return float(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    console.rule("[bold]deploy: checks, compile and module body in the VM")
    repeats = 1 if is_smoke() else 3 if quick else 5
    load_program(get_source("token"))  # the VM is up before the warm figures
    rows: list[dict[str, Any]] = []
    for name in sorted(BUILTIN):
        source = get_source(name)
        warm = []
        for _ in range(repeats):
            start = time.perf_counter()
            load_program(source)
            warm.append(time.perf_counter() - start)
        cold = min(run_child(COLD, name) for _ in range(1 if is_smoke() else 2))
        plain = min(run_child(PLAIN, name) for _ in range(1 if is_smoke() else 2))
        rows.append(
            {
                "contract": name,
                "source_bytes": len(source),
                "cold_s": cold,
                "warm_s": min(warm),
                "plain_import_s": plain,
                "cold_over_plain": ratio(cold, plain),
                "meets_goal": cold <= GOAL_S,
            }
        )
    print_table(
        f"deploying a reference contract (goal: at most {GOAL_S:.0f} s)",
        [
            "contract",
            "source",
            "cold process (s)",
            "warm VM (ms)",
            "plain import (s)",
            "cold ÷ plain",
        ],
        [
            [
                r["contract"],
                f"{r['source_bytes']:,} B",
                fmt(r["cold_s"], 3),
                fmt(r["warm_s"] * 1e3),
                fmt(r["plain_import_s"], 3),
                fmt_ratio(r["cold_over_plain"]),
            ]
            for r in rows
        ],
    )
    payload: dict[str, Any] = {"quick": quick, "goal_s": GOAL_S, "contracts": rows}
    payload["meets_goal"] = all(r["meets_goal"] for r in rows)
    path = write_results(NAME, payload)
    payload["results_file"] = str(path)
    return payload


if __name__ == "__main__":
    run("--quick" in sys.argv)
