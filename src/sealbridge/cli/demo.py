"""``sealbridge demo``: confidential contracts, end to end, told as a short story.

A fresh devnet (anvil, a committee of three gatekeepers holding the root key as shares,
two workers, three storage nodes -- separate processes on loopback) is started; the
workers register by attestation; alice deploys a token (its code travels
encrypted), mints and pays bob; bob pays carol; every owner reads their own balance as a
signed answer; carol's attempt to read alice's balance is refused; alice opens a DEX
between two tokens and bob swaps through it (one command, a call tree across three
contracts); the ledger accepts one worker's output and both workers' roots agree; and a
scan of everything the chain stored finds none of the plaintext.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.table import Table

from sealbridge.chain.abi import Role
from sealbridge.cli.output import console
from sealbridge.client.api import Client
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.devnet.launcher import start_devnet, stop_devnet
from sealbridge.evm.follower import BlockFollower
from sealbridge.evm.management import AcceptedOutput
from sealbridge.evm.scan import collect_chain_blobs, find_leaks
from sealbridge.net.http import NodeClient, NodeRefused
from sealbridge.net.waiting import WaitTimeout, wait_until

AMOUNTS = {"mint": 1_000_000, "alice->bob": 250_000, "bob->carol": 40_000}
DEX = {"liquidity_a": 300_000, "liquidity_b": 600_000, "swap": 7_000}


def short(value: bytes | str, n: int = 10) -> str:
    text = value if isinstance(value, str) else to_hex(value)
    return text[: 2 + n] + "…"


def _get_status_past(node: NodeClient, height: int) -> dict[str, Any] | None:
    """The node's status once it has verified the chain past ``height``; else None."""
    status: dict[str, Any] = node.get_json("/v1/status")
    return status if status["verified_height"] > height else None


def _dex_chapter(client: Client, token_a: str) -> None:
    """Alice lists token A against a second token on a constant-product DEX; bob swaps."""
    say = console.print
    token_b = to_hex(client.deploy("token", as_user="alice").contract_id)
    dex = client.deploy(
        "dex", as_user="alice", init_args={"token_a": token_a, "token_b": token_b}
    ).contract_id
    say(f"  alice deployed token B {short(token_b)} and a DEX {short(dex)} over A and B")
    steps: list[tuple[str, str, dict[str, Any], str]] = [
        (token_b, "mint", {"to": "alice", "amount": DEX["liquidity_b"]}, "alice"),
        (token_a, "approve", {"spender": to_hex(dex), "amount": DEX["liquidity_a"]}, "alice"),
        (token_b, "approve", {"spender": to_hex(dex), "amount": DEX["liquidity_b"]}, "alice"),
        (
            to_hex(dex),
            "add_liquidity",
            {"amount_a": DEX["liquidity_a"], "amount_b": DEX["liquidity_b"]},
            "alice",
        ),
        (token_a, "approve", {"spender": to_hex(dex), "amount": DEX["swap"]}, "bob"),
        (
            to_hex(dex),
            "swap",
            {"token_in": token_a, "amount_in": DEX["swap"], "min_out": 1},
            "bob",
        ),
    ]
    for contract, method, args, user in steps:
        result = client.wait_result(client.call(contract, method, args, as_user=user), as_user=user)
        if not result.ok:
            say(f"[bold red]{user}: {method} refused: {result.error}: {result.message}[/]")
            raise SystemExit(1)
    say(
        f"  alice added liquidity; bob swapped {DEX['swap']} A for {result.value} B in one "
        "command: DEX -> token A (transfer_from) and DEX -> token B (transfer), all or nothing"
    )
    bob_b = client.query(token_b, "balance", {"owner": "bob"}, as_user="bob").answer.result
    reserves = client.query(to_hex(dex), "reserves", {}, as_user="carol").answer.result
    say(f"  bob's token B balance (only bob may read it): {bob_b}")
    say(
        f"  the DEX's reserves (public by its own rule): {reserves['reserve_a']} A / "
        f"{reserves['reserve_b']} B"
    )
    refused = client.wait_result(
        client.call(
            to_hex(dex),
            "swap",
            {"token_in": token_a, "amount_in": 1_000, "min_out": 10**9},
            as_user="bob",
        ),
        as_user="bob",
    )
    say(
        f"  a swap asking for too much is refused ([green]{refused.error}[/]); "
        "no token moved in any of the three contracts"
    )


def run_demo(home: Path, *, keep: bool = False) -> None:
    if home.exists() and (home / "devnet" / "devnet.json").exists():
        try:
            stop_devnet(home)
        except Exception:  # a stale earlier demo; start clean
            shutil.rmtree(home / "devnet", ignore_errors=True)
    console.rule("[bold]sealbridge demo: confidential contracts")
    with console.status(
        "starting the devnet (anvil, 3 gatekeepers, 2 workers, 3 storage nodes)…"
    ) as status:

        def show(message: str) -> None:
            console.print(f"[green]✓[/] {message}")
            status.update(message)

        state = start_devnet(home, workers=2, progress=show)
    try:
        _story(home)
    finally:
        if keep:
            console.print(
                f"devnet left running under {home} (`sealbridge devnet down --home {home}`)"
            )
        else:
            stop_devnet(home)
            console.print("[dim]devnet stopped[/]")
    del state


def _story(home: Path) -> None:
    client = Client.from_home(home)
    chain, mgmt = client.chain, client.mgmt

    console.rule("1. who registered, and with which measurement")
    table = Table("node", "role", "node id", "measurement", "quote hash", "stake (ETH)")
    for entry in [*(client.state.gatekeepers or [client.state.gatekeeper]), *client.state.workers]:
        record = mgmt.node_registry.get_node(from_hex(entry.node_id, size=32))
        if record is None:
            continue
        table.add_row(
            entry.name,
            Role(record.role).name.lower(),
            short(record.identity_key),
            short(record.measurement),
            short(record.quote_hash),
            str(record.stake / 10**18),
        )
    console.print(table)
    console.print(
        "[dim]the gatekeeper verified each worker's (simulated) quote inside its enclave and "
        "signed the approval the NodeRegistry checked on chain[/]"
    )

    console.rule("2. alice deploys the token")
    deployment = client.deploy("token", as_user="alice", progress=lambda m: console.print("  " + m))
    cid = to_hex(deployment.contract_id)
    start_block = deployment.deploy_block

    console.rule("3. encrypted commands go through the chain")
    calls = [
        client.call(cid, "mint", {"to": "alice", "amount": AMOUNTS["mint"]}, as_user="alice"),
        client.call(
            cid, "transfer", {"to": "bob", "amount": AMOUNTS["alice->bob"]}, as_user="alice"
        ),
    ]
    client.wait_applied(deployment.contract_id, calls[-1].block_number)
    calls.append(
        client.call(
            cid, "transfer", {"to": "carol", "amount": AMOUNTS["bob->carol"]}, as_user="bob"
        )
    )
    client.wait_applied(deployment.contract_id, calls[-1].block_number)
    follower = BlockFollower(chain, client.addresses, start_block=start_block)
    table = Table("block", "inbox seq", "what the chain sees (ciphertext)", "size", "what it was")
    said = {c.seq: f"{c.sender}: {c.method}" for c in calls}
    for block in follower.poll_until_caught_up():
        for event in block.events:
            if event.name == "Command":
                ciphertext = bytes(event.args["ciphertext"])
                table.add_row(
                    str(block.number),
                    str(event.args["seq"]),
                    ciphertext[:20].hex() + "…",
                    str(len(ciphertext)),
                    said.get(int(event.args["seq"]), "alice: deploy (code + init)"),
                )
    console.print(table)

    console.rule("4. each owner reads their own balance (signed answers)")
    table = Table("owner", "balance", "block", "state root", "worker", "signature")
    for user in ("alice", "bob", "carol"):
        for index in range(len(client.state.workers)):
            answer = client.query(cid, "balance", {"owner": user}, as_user=user, worker=index)
            table.add_row(
                user,
                str(answer.answer.result),
                str(answer.answer.block_height),
                short(answer.answer.state_root),
                short(answer.worker_key),
                "ed25519 ✓ " + short(answer.signature, 8),
            )
    console.print(table)

    console.rule("5. carol asks for alice's balance")
    try:
        client.query(cid, "balance", {"owner": "alice"}, as_user="carol")
        console.print("[bold red]carol read alice's balance: this must never happen[/]")
        raise SystemExit(1)
    except NodeRefused as exc:
        console.print(f"[green]refused[/] by the worker's enclave: {exc.message}")

    console.rule("6. a DEX trades two confidential tokens (cross-contract calls)")
    _dex_chapter(client, cid)

    console.rule("7. the ledger accepted one output; both workers computed the same state")
    last_block = calls[-1].block_number
    ledger = mgmt.execution_ledger
    deadline = time.monotonic() + 30  # for the output and both workers' confirmations

    def covering() -> AcceptedOutput | None:
        output = ledger.get_output(deployment.contract_id)
        return output if output is not None and output.end >= last_block else None

    try:
        output = wait_until(covering, timeout=30, what="an output covering the transfers")
    except WaitTimeout:
        console.print("[bold red]the ledger accepted no output covering the transfers[/]")
        raise SystemExit(1) from None
    names = {from_hex(w.node_id): w.name for w in client.state.workers}
    console.print(
        f"ExecutionLedger accepted {names.get(output.node_id, 'a worker')}'s output for blocks "
        f"up to {output.end}: state root {to_hex(output.state_root)}, "
        f"{output.commands_applied} commands (the first valid output wins; its end hash is "
        "the chain's own block hash)"
    )
    for entry in client.state.workers:
        try:
            status = wait_until(
                functools.partial(_get_status_past, client.get_node(entry.url), output.accepted_at),
                timeout=max(0.0, deadline - time.monotonic()),
                what=f"{entry.name} to verify past block {output.accepted_at}",
            )
        except WaitTimeout:
            status = None
        if status is None or status["diverged"]:
            console.print(f"[bold red]{entry.name} does not confirm the accepted output[/]")
            raise SystemExit(1)
        console.print(
            f"{entry.name}: verified the chain to block {status['verified_height']}; its own "
            "root at that range end equals the accepted one "
            f"(outputs accepted {status['outputs_accepted']}, refused as late "
            f"{status['outputs_refused']}, not sent as already covered "
            f"{status['outputs_skipped']})"
        )
    console.print("[green]✓[/] same state root, computed independently in two enclave processes")

    console.rule("8. alice rotates the token's key; the state carries over")
    before = client.query(cid, "balance", {"owner": "bob"}, as_user="bob").answer
    rotation = client.rotate_key(cid, as_user="alice", progress=lambda m: console.print(f"  {m}"))
    after = client.query(cid, "balance", {"owner": "bob"}, as_user="bob").answer
    if after.result != before.result:
        console.print("[bold red]bob's balance changed across the key rotation[/]")
        raise SystemExit(1)
    console.print(
        f"key version {rotation.version}: bob's balance is still {after.result}; the state "
        f"root moved from {short(before.state_root)} to {short(after.state_root)} "
        "(same state, new key and salt); the old key version is refused from now on"
    )

    console.rule("9. nothing readable on chain")
    blobs = collect_chain_blobs(chain, start_block, chain.get_block_number())
    needles: dict[str, bytes] = {}
    for user in ("alice", "bob", "carol"):
        key = client.get_user(user)
        needles[f"{user}'s account key"] = key.identity_key
        needles[f"{user}'s private key"] = key.identity_private_key
    balances = {
        "alice": AMOUNTS["mint"] - AMOUNTS["alice->bob"],
        "bob": AMOUNTS["alice->bob"] - AMOUNTS["bob->carol"],
    }
    for name, value in {**AMOUNTS, **{f"{k}'s balance": v for k, v in balances.items()}}.items():
        needles[f"{name} ({value})"] = value.to_bytes(4, "big")
    hits = find_leaks(blobs, needles)
    total = sum(len(b.data) for b in blobs)
    kinds = ", ".join(
        f"{sum(1 for b in blobs if b.kind == k)} {k}" for k in ("calldata", "log", "storage")
    )
    if hits:
        for hit in hits:
            console.print(
                f"[bold red]LEAK[/] {hit.needle} in {hit.kind} at block {hit.block_number}"
            )
        raise SystemExit(1)
    console.print(
        Panel(
            f"scanned {total} bytes ({kinds}) for {len(needles)} plaintext values "
            "(account keys, private keys, amounts, balances): [bold green]0 found[/]",
            title="leak scan",
        )
    )
