"""Benchmark: what the untrusted-host checks cost a worker per block (issue 14).

One worker runtime in this process, one token contract with four executors, blocks of
``per_block`` token transfers (each from its own sender). Three paths, taking turns
block by block in the same run (a drift of the machine's speed hits all of them alike):

* ``unverified`` -- the baseline: the host's list of commands taken as given (no chain
  view; the mode tests and replay benchmarks use);
* ``verified`` -- the enclave's path: the block comes as evidence (full header and every
  receipt), the runtime recomputes the header hash and the receipts root, checks the
  link, reads the commands and management events out of the receipts, applies them,
  and holds the receipts for the witness rule;
* ``verified + witnesses`` -- the same, then the two peers' witnesses of the block
  checked (Ed25519) and the held receipts released, as the host does once caught up.

Also the witness operations alone: signing one, checking two and releasing. The blocks
are synthetic but in the real formats (``tests/unit/chain_builder.py``: Prague headers,
typed receipts, the management contracts' log encodings).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.common import console, fmt, is_smoke, print_table, ratio, run_cli, write_results
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime.messages import BlockInput, Witnesses, WitnessRequest
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder, as_input, commands_in
from tests.unit.test_runtime_chainview import ALICE, BOB_PUB, EXECUTORS, Contract
from tests.unit.witnesses import peer_witnesses

NAME = "verify_cost"


def _world(per_block: int, blocks: int) -> tuple[ChainBuilder, Contract, list[Any]]:
    """A chain: the deploy and mints, then ``blocks`` blocks of ``per_block`` transfers."""
    chain, token = ChainBuilder(), Contract(1)
    senders = [ed25519_keypair(bytes([i + 1]) * 32) for i in range(per_block)]
    setup = [[chain.command(token.contract_id, token.deploy())]] + [
        [
            chain.command(
                token.contract_id, token.command(ALICE, "mint", {"to": pub, "amount": 10**6})
            )
        ]
        for _, pub in senders
    ]
    chain.next(*setup)
    for _ in range(blocks):
        chain.next(
            *[
                [
                    chain.command(
                        token.contract_id,
                        token.command(seed, "transfer", {"to": BOB_PUB, "amount": 1}),
                    )
                ]
                for seed, _ in senders
            ]
        )
    return chain, token, [chain.blocks[n] for n in range(chain.anchor_number + 1, chain.number + 1)]


def _worker(token: Contract, chain: ChainBuilder | None) -> WorkerRuntime:
    worker = WorkerRuntime(EXECUTORS[0])
    worker.install_contract(token.install_request(worker))
    if chain is not None:
        worker.configure_chain(chain.config())
    return worker


def _plain(evidence: Any) -> BlockInput:
    """The same block as the host's list of commands (the unverified mode)."""
    return BlockInput(
        number=evidence.header.number, block_hash=b"\x00" * 32, commands=commands_in(evidence)
    )


def _interleaved(
    chain: ChainBuilder, token: Contract, blocks: list[Any]
) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds per block of each path, the paths taking turns block by block (so that a
    drift of the machine's speed hits all of them alike), and per witness release."""
    modes = ("unverified", "verified", "witnesses")
    workers = {m: _worker(token, None if m == "unverified" else chain) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    releases: list[float] = []
    for i, evidence in enumerate(blocks):
        for mode in modes[i % 3 :] + modes[: i % 3]:
            worker = workers[mode]
            block = _plain(evidence) if mode == "unverified" else as_input(evidence)
            started = time.perf_counter()
            out = worker.process_block(block)
            statuses = [r.status for r in out.receipts]
            if mode == "witnesses":
                applied = time.perf_counter()
                released = worker.release_outputs(Witnesses(witnesses=peer_witnesses(worker)))
                releases.append(time.perf_counter() - applied)
                statuses += [r.status for b in released.blocks for r in b.receipts]
                assert released.held == 0
            if i > 0:  # the first block compiles and deploys
                times[mode].append(time.perf_counter() - started)
                assert mode == "verified" or set(statuses) == {"applied"}, statuses
    return times, releases


def run(quick: bool = False) -> dict[str, Any]:
    per_block, blocks = (50, 12) if quick else (50, 30)
    if is_smoke():
        per_block, blocks = 3, 3
    console.rule(
        f"[bold]benchmark: per-block cost of the untrusted-host checks ({per_block} transfers)"
    )
    chain, token, evidence = _world(per_block, blocks)
    results: dict[str, Any] = {"per_block": per_block, "blocks": blocks - 1}
    medians: dict[str, float] = {}
    times, releases = _interleaved(chain, token, evidence)
    for mode, samples in times.items():
        medians[mode] = statistics.median(samples) * 1e3
        results[mode] = {
            "median_ms": medians[mode],
            "best_ms": min(samples) * 1e3,
            "release_median_ms": (
                statistics.median(releases) * 1e3 if mode == "witnesses" else 0.0
            ),
        }
    worker = _worker(token, chain)
    for e in evidence[:2]:
        worker.process_block(as_input(e))
    samples = []
    for _ in range(20 if not is_smoke() else 2):
        started = time.perf_counter()
        worker.witness_block(WitnessRequest(height=worker.gate.tip))
        samples.append(time.perf_counter() - started)
    results["sign_witness_us"] = statistics.median(samples) * 1e6
    rows = [
        [
            mode,
            fmt(medians[mode], 2),
            fmt(results[mode]["best_ms"], 2),
            fmt(ratio(medians[mode], medians["unverified"]), 2) + "x",
        ]
        for mode in ("unverified", "verified", "witnesses")
    ]
    print_table(
        f"per block of {per_block} transfers (median of {blocks - 1} blocks)",
        ["path", "median ms", "best ms", "÷ unverified"],
        rows,
    )
    console.print(
        f"verification (header, receipts root, events): "
        f"{fmt(medians['verified'] - medians['unverified'], 2)} ms per block; witness "
        f"release (two peers' witnesses checked, receipts out): "
        f"{fmt(results['witnesses']['release_median_ms'], 2)} ms; signing one witness: "
        f"{fmt(results['sign_witness_us'], 1)} us"
    )
    write_results(NAME, results)
    return results


if __name__ == "__main__":
    run_cli(run, __doc__)
