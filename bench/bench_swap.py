"""HTLC swap vs. gateway swap on the same two anvil chains (issue 5).

``python -m bench.bench_swap [--quick]`` (or ``python -m bench.run_all --only swap``).

Both run on one :class:`~sealbridge.devnet.swap.SwapDevnet`: two anvil chains (prague) with
the same block time, and a 2-of-3 gateway committee of sim-TEE enclave processes.

* **HTLC swap** (the baseline everybody uses): alice locks on A under a hash, bob locks
  on B under the same hash, alice claims on B (revealing the preimage), bob claims on A --
  four transactions, each waiting for the previous one to be mined
  (:func:`sealbridge.evm.htlc.run_htlc_swap`).
* **Gateway swap**: the same exchange as two gateway transfers, A -> B then B -> A; each
  is lock (source), threshold-signed release (destination, BLS checked on chain with
  EIP-2537), commit (source) -- three transactions, the gateways verifying every block.
  The one-way transfer is reported too.

Reported per kind: end-to-end latency (median over the samples), on-chain transactions
and gas. The baseline is the HTLC swap of the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from bench.common import console, fmt, is_smoke, print_table, ratio, write_results
from sealbridge.devnet.swap import CHAIN_A, CHAIN_B, SwapDevnet
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.htlc import HTLC, deploy_htlc, run_htlc_swap

BLOCK_TIME = 1.0
AMOUNT = 10**17


def _htlc_swap(devnet: SwapDevnet, htlcs: dict[int, HTLC]) -> dict[str, Any]:
    a, b = htlcs[CHAIN_A], htlcs[CHAIN_B]
    alice_key = a.adapter.get_dev_key(1)
    bob_key = b.adapter.get_dev_key(2)
    started = time.monotonic()
    result = run_htlc_swap(
        a, b, alice_key=alice_key, bob_key=bob_key, amount_a=AMOUNT, amount_b=AMOUNT
    )
    return {
        "latency_s": time.monotonic() - started,
        "transactions": len(result.steps),
        "gas": result.total_gas,
        "gas_by_step": result.get_gas_by_step(),
    }


def _gateway_swap(devnet: SwapDevnet) -> tuple[dict[str, Any], dict[str, Any]]:
    started = time.monotonic()
    there = devnet.run_transfer(amount=AMOUNT)
    one_way = {
        "latency_s": time.monotonic() - started,
        "transactions": there.transactions,
        "gas": sum(there.gas.values()),
        "gas_by_step": there.gas,
    }
    back = devnet.run_transfer(amount=AMOUNT, reverse=True)
    if (there.outcome, back.outcome) != ("committed", "committed"):
        raise RuntimeError(f"gateway transfers ended {there.outcome} / {back.outcome}")
    swap = {
        "latency_s": time.monotonic() - started,
        "transactions": there.transactions + back.transactions,
        "gas": sum(there.gas.values()) + sum(back.gas.values()),
    }
    return one_way, swap


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(s[key] for s in samples))


def run(quick: bool = False) -> dict[str, Any]:
    reps = 1 if is_smoke() else 2 if quick else 5
    console.rule("[bold]HTLC swap vs. gateway swap (two anvil chains)")
    samples: dict[str, list[dict[str, Any]]] = {"htlc": [], "gateway_one_way": [], "gateway": []}
    with SwapDevnet(block_time=BLOCK_TIME) as devnet:
        htlcs: dict[int, HTLC] = {}
        for chain_id, escrow in devnet.escrows.items():
            adapter: ChainAdapter = escrow.adapter
            htlcs[chain_id] = HTLC(adapter, deploy_htlc(adapter, adapter.get_dev_key(0)))
        for i in range(reps):
            samples["htlc"].append(_htlc_swap(devnet, htlcs))
            one_way, swap = _gateway_swap(devnet)
            samples["gateway_one_way"].append(one_way)
            samples["gateway"].append(swap)
            console.print(
                f"  sample {i + 1}/{reps}: HTLC {samples['htlc'][-1]['latency_s']:.2f}s, "
                f"gateway one-way {one_way['latency_s']:.2f}s, swap {swap['latency_s']:.2f}s"
            )
    base = _median(samples["htlc"], "latency_s")
    rows = []
    summary: dict[str, Any] = {}
    labels = {
        "htlc": "HTLC swap (baseline)",
        "gateway": "gateway swap (A->B, B->A)",
        "gateway_one_way": "gateway transfer (one way)",
    }
    for kind in ("htlc", "gateway", "gateway_one_way"):
        latency = _median(samples[kind], "latency_s")
        gas = _median(samples[kind], "gas")
        txs = int(_median(samples[kind], "transactions"))
        summary[kind] = {"latency_s": latency, "transactions": txs, "gas": gas}
        rows.append(
            [
                labels[kind],
                fmt(latency),
                fmt(ratio(latency, base)) + "x",
                str(txs),
                f"{gas:,.0f}",
                fmt(ratio(gas, _median(samples["htlc"], "gas"))) + "x",
            ]
        )
    print_table(
        f"median of {reps}, {BLOCK_TIME:g} s blocks on both chains, 2-of-3 gateways",
        ["kind", "latency (s)", "vs HTLC", "transactions", "gas", "gas vs HTLC"],
        rows,
    )
    path = write_results(
        "swap",
        {
            "block_time_s": BLOCK_TIME,
            "amount_wei": AMOUNT,
            "reps": reps,
            "samples": samples,
            "summary": summary,
            "gas_by_step": {
                "htlc": samples["htlc"][-1]["gas_by_step"],
                "gateway_one_way": samples["gateway_one_way"][-1]["gas_by_step"],
            },
        },
    )
    return {"results_file": str(path), "summary": summary}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
    os._exit(0)
