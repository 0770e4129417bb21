"""Benchmark: amplification -- wall time per million gas, hostile code vs a token transfer.

Gas is WebAssembly fuel (``contracts/gas.py``); what matters to an operator is that no
program buys more of its machine per unit of gas than honest work does. Every program of
the hostile catalog (``bench/hostile_catalog.py``) runs as one command with a fixed gas
limit on a fresh executor (each stops with a typed error), and its wall time is divided
by the gas it was charged. The baseline, measured in the same run on the same executor
kind, is a block of token transfers (the host's work for storage included). The table
lists every program with its ratio to the baseline and names the worst offender; the goal
is a worst case within 10x of the token transfer.

Writes ``bench/results/amplification.json`` and ``amplification.png``.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import console, fmt, fmt_ratio, is_smoke, print_table, ratio, write_results
from bench.hostile_catalog import get_catalog, hostile_source
from sealbridge.contracts.catalog import load_builtin
from sealbridge.contracts.executor import Executor, load_program

NAME = "amplification"
GOAL = 10.0
OWNER = b"\x01" * 32
TOKEN = b"\x02" * 32
HOSTILE = b"\x03" * 32


def measure_token(transfers: int, blocks: int) -> dict[str, float]:
    """Token transfers through the executor: µs per transfer and ms per million gas."""
    program = load_builtin("token")
    best: dict[str, float] = {}
    for _ in range(blocks):
        executor = Executor()
        executor.add(TOKEN, program, deployer=OWNER)
        executor.run_command(
            TOKEN, "setup", {}, caller=OWNER, block_number=1, seed=b"s", is_init=True
        )
        executor.run_command(
            TOKEN, "mint", {"to": OWNER, "amount": 10**15}, caller=OWNER, block_number=1, seed=b"s"
        )
        gas = 0
        start = time.perf_counter()
        for i in range(transfers):
            outcome = executor.run_command(
                TOKEN,
                "transfer",
                {"to": bytes([i % 251]) * 32, "amount": 1},
                caller=OWNER,
                block_number=2,
                seed=b"s",
            )
            if not outcome.ok:
                raise AssertionError(f"transfer failed: {outcome.error}")
            gas += outcome.gas_used
        elapsed = time.perf_counter() - start
        ms_per_mgas = elapsed * 1e3 / (gas / 1e6)
        if not best or ms_per_mgas < best["ms_per_mgas"]:
            best = {
                "us_per_transfer": elapsed * 1e6 / transfers,
                "gas_per_transfer": gas / transfers,
                "ms_per_mgas": ms_per_mgas,
            }
    return best


def measure_program(name: str, body: str, gas_limit: int) -> dict[str, Any]:
    executor = Executor()
    executor.add(HOSTILE, load_program(hostile_source(body).encode()), deployer=OWNER)
    start = time.perf_counter()
    outcome = executor.run_command(
        HOSTILE, "go", {}, caller=OWNER, block_number=1, seed=b"s", gas_limit=gas_limit
    )
    elapsed = time.perf_counter() - start
    gas = max(outcome.gas_used, 1)
    return {
        "program": name,
        "ok": outcome.ok,
        "error": outcome.error,
        "gas": outcome.gas_used,
        "wall_ms": elapsed * 1e3,
        "ms_per_mgas": elapsed * 1e3 / (gas / 1e6),
    }


def plot(rows: list[dict[str, Any]], baseline: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.common import RESULTS_DIR

    ordered = sorted(rows, key=lambda r: r["ms_per_mgas"])
    fig, axis = plt.subplots(figsize=(8, 0.28 * len(ordered) + 1.5))
    axis.barh([r["program"] for r in ordered], [r["ms_per_mgas"] for r in ordered])
    axis.axvline(baseline, color="green", linestyle="--", label="token transfer")
    axis.axvline(baseline * GOAL, color="red", linestyle=":", label=f"goal ({GOAL:.0f}x)")
    axis.set_xlabel("wall time per million gas (ms)")
    axis.set_title("amplification of the hostile catalog")
    axis.legend(loc="lower right")
    fig.tight_layout()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)  # the figure is written before the JSON
    path = RESULTS_DIR / f"{NAME}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def run(quick: bool = False) -> dict[str, Any]:
    console.rule("[bold]amplification: wall time per million gas")
    gas_limit = 300_000 if quick else 5_000_000
    transfers = 20 if is_smoke() else 200 if quick else 2000
    token = measure_token(transfers=transfers, blocks=1 if quick else 3)
    rows = [measure_program(name, body, gas_limit) for name, body in get_catalog().items()]
    for row in rows:
        row["vs_token"] = ratio(row["ms_per_mgas"], token["ms_per_mgas"])
    worst = max(rows, key=lambda r: r["ms_per_mgas"])
    print_table(
        f"hostile programs, {gas_limit:,} gas each (token transfer: "
        f"{fmt(token['ms_per_mgas'])} ms per million gas, {fmt(token['us_per_transfer'])} µs "
        f"and {fmt(token['gas_per_transfer'], 0)} gas per transfer)",
        ["program", "stopped by", "gas", "wall (ms)", "ms / Mgas", "÷ token"],
        [
            [
                r["program"],
                r["error"] or "(finished)",
                f"{r['gas']:,}",
                fmt(r["wall_ms"]),
                fmt(r["ms_per_mgas"]),
                fmt_ratio(r["vs_token"]),
            ]
            for r in sorted(rows, key=lambda r: -r["ms_per_mgas"])
        ],
    )
    verdict = "meets" if worst["vs_token"] <= GOAL else "misses"
    console.print(
        f"worst offender: [bold]{worst['program']}[/] at {fmt_ratio(worst['vs_token'])} "
        f"the token transfer's time per gas ({verdict} the {GOAL:.0f}x goal)"
    )
    payload: dict[str, Any] = {
        "quick": quick,
        "gas_limit": gas_limit,
        "token": token,
        "programs": rows,
        "worst": {"program": worst["program"], "vs_token": worst["vs_token"]},
        "goal_vs_token": GOAL,
        "meets_goal": worst["vs_token"] <= GOAL,
    }
    payload["figure"] = plot(rows, token["ms_per_mgas"])
    path = write_results(NAME, payload)
    payload["results_file"] = str(path)
    return payload


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv)
