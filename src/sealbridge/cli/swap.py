"""``sealbridge swap``: one cross-chain transfer through the gateway committee, phase by
phase, on a fresh two-chain devnet (:mod:`sealbridge.node.swap`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sealbridge.cli.output import console, fail, friendly_errors
from sealbridge.core.encoding import to_builtins

ETHER = 10**18


def swap(
    amount: Annotated[
        float, typer.Option("--amount", help="Ether to move from chain A to chain B.")
    ] = 1.0,
    gateways: Annotated[int, typer.Option(help="Gateways in the committee (1-16).")] = 3,
    threshold: Annotated[int, typer.Option(help="Gateways that must sign (t of m).")] = 2,
    block_time: Annotated[
        float, typer.Option("--block-time", help="Seconds per block on both chains.")
    ] = 1.0,
    abort: Annotated[
        bool,
        typer.Option(
            help="Never release on chain B: the gateways abort after the deadline and the "
            "sender is refunded on chain A."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per phase, then the result.")
    ] = False,
) -> None:
    """Move ether between two anvil chains through a committee of TEE gateways: lock on
    A, threshold-signed release on B (checked on chain with EIP-2537), commit on A."""
    from sealbridge.node.swap import PhaseRecord, SwapDevnet

    if not 0 < amount <= 50:
        fail("--amount must be in (0, 50] ether")
    if not 1 <= threshold <= gateways <= 16:
        fail("need 1 <= --threshold <= --gateways <= 16")
    if not 0.2 <= block_time <= 10:
        fail("--block-time must be in [0.2, 10] seconds")

    def show(record: PhaseRecord) -> None:
        if as_json:
            print(json.dumps(to_builtins(record)), flush=True)
            return
        detail = record.detail
        line = f"[bold]{record.phase:8}[/] +{record.at:6.2f}s"
        if record.phase == "setup":
            line += (
                f"  {detail['members']} gateways attested each other; {detail['threshold']}-of-"
                f"{detail['members']} committee key {detail['group_public_key'][:20]}… dealt in "
                f"an enclave; escrows {', '.join(detail['escrows'].values())}"
            )
        elif "tx" in detail:
            line += f"  chain {detail['chain_id']} block {detail['block']} gas {detail['gas']:,}"
        for key in ("transfer_id", "recipient_received_wei", "sender_refunded_wei"):
            if key in detail:
                line += f"  {key}={detail[key]}"
        if "source_state" in detail:
            line += f"  source escrow: {detail['source_state']}"
        console.print(line)
        for sig in record.signatures:
            console.print(
                f"           {sig.kind} signature {sig.signature[:26]}… over "
                f"{(len(sig.message) - 2) // 2} bytes by gateways "
                f"{[p['index'] for p in sig.partials]} (checked under the group key)"
            )

    with friendly_errors():
        devnet = SwapDevnet(members=gateways, threshold=threshold, block_time=block_time)
        try:
            if not as_json:
                console.print("starting two anvil chains and the gateway enclaves…")
            show(devnet.start())
            result = devnet.run_transfer(amount=int(amount * ETHER), abort=abort, progress=show)
        finally:
            devnet.stop()
    if as_json:
        summary = to_builtins(result)
        summary.pop("phases", None)
        print(json.dumps({"phase": "result", **summary}), flush=True)
        return
    per_step = ", ".join(f"{name} {gas:,}" for name, gas in result.gas.items())
    console.print(
        f"[green]{result.outcome}[/] in {result.latency_s:.2f}s: {result.transactions} "
        f"transactions, {sum(result.gas.values()):,} gas ({per_step})"
    )
