"""``sealbridge demo``: the confidential token, end to end, told as a short story.

A fresh devnet (anvil, one gatekeeper, two workers -- separate processes on loopback) is
started; the workers register by attestation; alice deploys a token, mints and pays bob;
bob pays carol; every owner reads their own balance as a signed answer; carol's attempt to
read alice's balance is refused; both workers' on-chain outputs agree; and a scan of
everything the chain stored finds none of the plaintext.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.panel import Panel
from rich.table import Table

from sealbridge.chain.abi import Role
from sealbridge.chain.follower import BlockFollower
from sealbridge.chain.scan import collect_chain_blobs, find_leaks
from sealbridge.cli.output import console
from sealbridge.client.api import Client
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.net.http import NodeRefused
from sealbridge.node.devnet import start_devnet, stop_devnet

AMOUNTS = {"mint": 1_000_000, "alice->bob": 250_000, "bob->carol": 40_000}


def short(value: bytes | str, n: int = 10) -> str:
    text = value if isinstance(value, str) else to_hex(value)
    return text[: 2 + n] + "…"


def run_demo(home: Path, *, keep: bool = False) -> None:
    if home.exists() and (home / "devnet" / "devnet.json").exists():
        try:
            stop_devnet(home)
        except Exception:  # a stale earlier demo; start clean
            shutil.rmtree(home / "devnet", ignore_errors=True)
    console.rule("[bold]sealbridge demo: a confidential token")
    with console.status("starting the devnet (anvil, gatekeeper, 2 workers)…") as status:

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
    for entry in [client.state.gatekeeper, *client.state.workers]:
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

    console.rule("6. both workers computed the same state")
    last_block = calls[-1].block_number
    deadline = time.monotonic() + 30
    roots: set[bytes] = set()
    for entry in client.state.workers:
        output = mgmt.output_records.get_output(deployment.contract_id, from_hex(entry.node_id))
        while (output is None or output.block_number < last_block) and time.monotonic() < deadline:
            time.sleep(0.1)
            output = mgmt.output_records.get_output(deployment.contract_id, from_hex(entry.node_id))
        if output is None:
            console.print(f"[bold red]{entry.name} recorded no output[/]")
            raise SystemExit(1)
        roots.add(output.state_root)
        console.print(
            f"{entry.name}: block {output.block_number}, state root {to_hex(output.state_root)} "
            "(signed by its enclave, checked by OutputRecords)"
        )
    if len(roots) != 1:
        console.print("[bold red]the workers disagree on the state root[/]")
        raise SystemExit(1)
    console.print("[green]✓[/] same state root, computed independently in two enclave processes")

    console.rule("7. nothing readable on chain")
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
