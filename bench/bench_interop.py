"""InterTrust key modes: per-transaction shares (the paper) vs. epoch keys (issue 5).

``python -m bench.bench_interop [--quick]`` (or ``python -m bench.run_all --only interop``).

The same cross-chain transfers (half A -> B, half B -> A) run twice in the simulator
(:func:`sealbridge.sim.interop_run.compare_key_modes`): once with a fresh threshold key
dealt by the destination's gateway for every transfer (InterTrust's per-transaction share
generation) and once with one key per epoch reused for every transfer. Network time is
virtual (ZeroCpu, 10 ms links); the key dealing and share encryption CPU is measured in the
gateways with the thread clock. The baseline is the epoch mode of the same run.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench.common import console, fmt, is_smoke, print_table, ratio, write_results
from sealbridge.sim.interop_run import compare_key_modes


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [(4, 8), (16, 8)] if quick else [(4, 20), (16, 20), (31, 10)]
    if is_smoke():  # one transfer each way
        sizes = [(4, 2)]
    console.rule("[bold]InterTrust: per-transaction keys vs. epoch keys")
    rows: list[list[str]] = []
    results: list[dict[str, Any]] = []
    for n, transfers in sizes:
        costs = compare_key_modes(n=n, transfers=transfers)
        per_tx, epoch = costs["per_tx"].as_row(), costs["epoch"].as_row()
        for row in (per_tx, epoch):
            if row["committed"] != transfers:
                raise RuntimeError(
                    f"n={n} {row['mode']}: {row['committed']} of {transfers} committed"
                )
        results.append({"n": n, "transfers": transfers, "per_tx": per_tx, "epoch": epoch})
        for row in (per_tx, epoch):
            base = epoch
            rows.append(
                [
                    str(n),
                    str(row["mode"]),
                    str(row["keygens"]),
                    fmt(float(row["keygen_ms_per_transfer"])),
                    fmt(
                        ratio(
                            float(row["keygen_ms_per_transfer"]),
                            float(base["keygen_ms_per_transfer"]),
                        )
                    )
                    + "x",
                    fmt(float(row["key_messages_per_transfer"]), 1),
                    f"{float(row['key_bytes_per_transfer']):,.0f}",
                    fmt(float(row["messages_per_transfer"]), 1),
                    f"{float(row['bytes_per_transfer']):,.0f}",
                    fmt(float(row["mean_latency_s"]), 3),
                ]
            )
    print_table(
        "per transfer; keygen = dealing + encrypting shares (gateway CPU); latency = accepted -> "
        "release (virtual s, 10 ms links)",
        [
            "n",
            "mode",
            "key deals",
            "keygen ms",
            "vs epoch",
            "key msgs",
            "key bytes",
            "all msgs",
            "all bytes",
            "latency s",
        ],
        rows,
    )
    path = write_results("interop", {"quick": quick, "results": results})
    return {"results_file": str(path), "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
    os._exit(0)
