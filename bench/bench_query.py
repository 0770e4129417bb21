"""Benchmark 3: signed query latency over HTTP, next to an anvil eth_call of a plain token.

On one devnet (anvil, gatekeeper, two workers), bob reads his own balance ``samples``
times per variant, back to back:

* ``client.query`` -- the full client path: an eth_call for the contract record, signing
  and encryption of the query, the client's kept-alive HTTP connection to worker 0, the
  worker host, the sim enclave (ECALL), decryption and Ed25519 verification of the answer,
  and an on-chain ``is_active`` eth_call for the worker that signed it;
* the same without the chain reads: ``make_query`` + ``NodeClient.post`` + ``open_answer``,
  once with a kept-alive connection and once with a new connection per query;
* the runtime alone in this process (``answer_query`` + ``open_answer``): the crypto cost;
* baseline: ``balanceOf`` of the plain Vyper token by eth_call on the same anvil.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    console,
    fmt,
    fmt_ratio,
    get_devnet_sizes,
    is_smoke,
    print_table,
    ratio,
    run_cli,
    summarize,
    temp_home,
    time_samples,
    write_results,
)
from bench.plain_token import PlainToken
from sealbridge.client.api import Client
from sealbridge.contracts.catalog import get_code_hash, get_source
from sealbridge.core.encoding import encode
from sealbridge.core.ids import to_hex
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.devnet.launcher import start_devnet, stop_devnet
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.net.http import NodeClient
from sealbridge.runtime.envelope import make_query, open_answer, seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    InboxCommand,
    InstallContract,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveContext

NAME = "query_latency"
BALANCE = 123_456


def _in_process_query(bob_seed: bytes, bob_key: bytes) -> Callable[[], int]:
    """A WorkerRuntime in this process holding bob's balance; returns one query."""
    contract_id, contract_key = bytes([0x71]) * 32, bytes([0x72]) * 32
    keys = compute_contract_keys(contract_id, contract_key)
    runtime = WorkerRuntime(
        EnclaveContext(
            program="bench:Worker", measurement=bytes(32), platform_private_key=bytes(32)
        )
    )
    identity = runtime.enclave.identity
    runtime.install_contract(
        InstallContract(
            contract_id=contract_id,
            code_hash=get_code_hash("token"),
            contract_public_key=keys.command_public_key,
            wrapped_key=ecies.encrypt_to(
                identity.encryption_key,
                contract_key,
                key_release_aad(contract_id, identity.identity_key),
            ),
            gatekeeper_key=bytes(32),
            deployer_commitment=compute_deployer_commitment(contract_id, bob_key),
            workers=[bytes(32)],
        )
    )
    steps: list[tuple[int, str, dict[str, Any]]] = [
        (1, DEPLOY_METHOD, {"code": get_source("token"), "init": {}}),
        (2, "mint", {"to": bob_key, "amount": BALANCE}),
    ]
    commands = [
        seal_command(
            contract_id=contract_id,
            contract_public_key=keys.command_public_key,
            sender_private_key=bob_seed,
            nonce=n,
            method=m,
            args=a,
        )
        for n, m, a in steps
    ]
    out = runtime.process_block(
        BlockInput(
            number=1,
            block_hash=bytes(32),
            commands=[
                InboxCommand(contract_id=contract_id, seq=i, tx_index=i, log_index=0, ciphertext=c)
                for i, c in enumerate(commands)
            ],
        )
    )
    if any(r.status != "applied" for r in out.receipts):
        raise AssertionError(f"setup refused: {[r.status for r in out.receipts]}")

    def once() -> int:
        query, reply = make_query(
            contract_id=contract_id,
            caller_private_key=bob_seed,
            method="balance",
            args={"owner": bob_key},
            issued_at=int(time.time()),
        )
        answer, _signed = open_answer(query, reply, runtime.answer_query(query, int(time.time())))
        return int(answer.result)

    return once


def run(quick: bool = False) -> dict[str, Any]:
    samples = 50 if quick else 200
    warmup = 5
    workers = 2
    if is_smoke():  # only worker 0 is queried
        samples, warmup, workers = 3, 1, 1
    console.rule(f"[bold]benchmark 3: signed query latency ({samples} samples per variant)")
    with temp_home("query") as home:
        start_devnet(
            home,
            **get_devnet_sizes(workers=workers),
            progress=lambda m: console.print(f"[dim]  {m}[/]"),
        )
        try:
            return _run(home, samples, warmup, quick)
        finally:
            stop_devnet(home)


def _run(home: Any, samples: int, warmup: int, quick: bool) -> dict[str, Any]:
    client = Client.from_home(home)
    chain = client.chain
    admin = chain.get_dev_key(0)
    bob = client.get_user("bob")
    bob_eth = ChainAdapter.address_of(bob.eth_private_key)
    deployment = client.deploy("token", as_user="alice")
    cid = to_hex(deployment.contract_id)
    minted = client.call(cid, "mint", {"to": "bob", "amount": BALANCE}, as_user="alice")
    client.wait_applied(deployment.contract_id, minted.block_number)
    plain = PlainToken.deploy(chain, admin)
    plain.mint(admin, bob_eth, BALANCE)
    worker_url = client.state.workers[0].url

    def full() -> int:
        return int(client.query(cid, "balance", {"owner": "bob"}, as_user="bob").answer.result)

    def direct_with(node: NodeClient) -> int:
        query, reply = make_query(
            contract_id=deployment.contract_id,
            caller_private_key=bob.identity_private_key,
            method="balance",
            args={"owner": bob.identity_key},
            issued_at=int(time.time()),
        )
        answer, _signed = open_answer(query, reply, node.post("/v1/query", encode(query)))
        return int(answer.result)

    kept = NodeClient(worker_url)

    def direct_kept() -> int:
        return direct_with(kept)

    def direct_new() -> int:
        with NodeClient(worker_url) as node:
            return direct_with(node)

    def eth_call() -> int:
        return plain.balance_of(bob_eth)

    variants: list[tuple[str, str, Callable[[], int]]] = [
        ("eth_call", "anvil eth_call balanceOf, plain token (baseline)", eth_call),
        ("client_query", "client.query (full: + 2 eth_calls, kept-alive connection)", full),
        ("direct_new_conn", "worker direct, new connection, no chain checks", direct_new),
        ("direct_keepalive", "worker direct, kept-alive connection, no chain checks", direct_kept),
        ("in_process", "runtime answer_query + open_answer in process (crypto only)",
         _in_process_query(bob.identity_private_key, bob.identity_key)),
    ]  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for key, label, fn in variants:
            if fn() != BALANCE:
                raise AssertionError(f"{key} read a wrong balance")
            stats = summarize(time_samples(fn, samples, warmup=warmup))
            results[key] = {"label": label, **stats}
    finally:
        kept.close()
    base = results["eth_call"]
    rows = []
    for key, _label, _fn in variants:
        r = results[key]
        r["ratio_p50_vs_eth_call"] = ratio(r["p50_ms"], base["p50_ms"])
        r["ratio_mean_vs_eth_call"] = ratio(r["mean_ms"], base["mean_ms"])
        rows.append(
            [
                r["label"],
                fmt(r["p50_ms"], 3),
                fmt(r["p95_ms"], 3),
                fmt(r["mean_ms"], 3),
                fmt_ratio(r["ratio_p50_vs_eth_call"]),
                fmt_ratio(r["ratio_mean_vs_eth_call"]),
            ]
        )
    print_table(
        f"query latency: bob reads his balance, {samples} sequential samples per variant",
        ["variant", "p50 (ms)", "p95 (ms)", "mean (ms)", "p50 vs eth_call", "mean vs eth_call"],
        rows,
    )
    payload: dict[str, Any] = {
        "quick": quick,
        "config": {
            "samples": samples,
            "warmup": warmup,
            "workers": len(client.state.workers),
            "worker_queried": 0,
        },
        "variants": results,
    }
    payload["results_file"] = str(write_results(NAME, payload))
    return payload


if __name__ == "__main__":
    run_cli(run, __doc__)
