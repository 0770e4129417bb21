"""Benchmark 1: encrypted token transfers end to end on anvil, next to a plain Vyper token.

Both tokens run on the same anvil (automine: one block per transaction) in the same run,
with transactions sent through the same :class:`ChainAdapter` (EIP-1559, gas estimated).

* **Throughput** -- ``n`` transfers sent pipelined (``send_submit`` / ``send_transaction``,
  no waiting for receipts) from ``STREAMS`` funded accounts, one thread each. Sealbridge
  counts until *every* worker has applied all of them (its ``/v1/status`` shows
  ``commands_applied`` up by ``n``); the plain token until all are mined and a
  ``balanceOf`` eth_call shows the receiver's total.
* **Latency** -- sequential transfers, each from submission (sealing and signing included)
  until the receiver sees it: for sealbridge a signed query by the receiver (``client.query``
  to worker 0) shows the new balance; for the plain token a ``balanceOf`` eth_call does.
  Both poll back to back, so the resolution is one query (sealbridge) / one eth_call.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

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
    write_results,
)
from bench.plain_token import PlainToken
from sealbridge.client.api import Client
from sealbridge.core.ids import to_hex
from sealbridge.crypto.signing import ed25519_keypair, secp256k1_keypair
from sealbridge.devnet.launcher import start_devnet, stop_devnet
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.management import ManagementContracts
from sealbridge.runtime.envelope import seal_command

NAME = "e2e_transfers"
STREAMS = 4
MINT = 10**12
AMOUNT = 3
APPLY_TIMEOUT = 600.0


@dataclass
class Stream:
    """One sending account: a gas-paying eth key and a contract identity (Ed25519)."""

    eth_key: bytes
    identity_seed: bytes
    identity_key: bytes
    nonce: int = 0
    hashes: list[bytes] = field(default_factory=list)

    @property
    def eth_address(self) -> str:
        return ChainAdapter.address_of(self.eth_key)


def make_streams(count: int) -> list[Stream]:
    out = []
    for _ in range(count):
        eth_key, _pub = secp256k1_keypair()
        seed, identity = ed25519_keypair(os.urandom(32))
        out.append(Stream(eth_key=eth_key, identity_seed=seed, identity_key=identity))
    return out


class Sealbridge:
    """What the benchmark needs of the devnet: submit, watch status, query."""

    def __init__(self, client: Client, contract_id: bytes) -> None:
        self.client = client
        self.contract_id = contract_id
        self.cid_hex = to_hex(contract_id)
        self.public_key = client.get_contract(contract_id).contract_public_key
        self.http = httpx.Client(timeout=10.0)

    def seal_transfer(self, stream: Stream, to: bytes, amount: int) -> bytes:
        stream.nonce += 1
        return seal_command(
            contract_id=self.contract_id,
            contract_public_key=self.public_key,
            sender_private_key=stream.identity_seed,
            nonce=stream.nonce,
            method="transfer",
            args={"to": to, "amount": amount},
        )

    def commands_applied(self) -> list[int]:
        """``commands_applied`` of this contract on every worker (0 if not installed)."""
        out = []
        for worker in self.client.state.workers:
            status = self.http.get(worker.url + "/v1/status").json()
            counts = [
                int(c["commands_applied"])
                for c in status["contracts"]
                if c["contract_id"] == self.cid_hex
            ]
            out.append(counts[0] if counts else 0)
        return out

    def wait_commands_applied(self, target: int, timeout: float = APPLY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while min(self.commands_applied()) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not apply {target} commands in {timeout:.0f}s")
            time.sleep(0.01)

    def balance(self, user: str) -> int:
        answer = self.client.query(self.cid_hex, "balance", {"owner": user}, as_user=user)
        return int(answer.answer.result)


def _send_all(
    streams: list[Stream], per_stream: int, send: Any, rpc_url: str
) -> tuple[float, list[BaseException]]:
    """Run ``send(adapter, stream, i)`` ``per_stream`` times per stream, one thread each."""
    errors: list[BaseException] = []

    def worker(stream: Stream) -> None:
        adapter = ChainAdapter.rpc(rpc_url)
        try:
            for i in range(per_stream):
                stream.hashes.append(send(adapter, stream, i))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in streams]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, errors


def _wait_last_receipts(chain: ChainAdapter, streams: list[Stream]) -> int:
    """Wait for every stream's last tx (per-account nonces order the rest); max block."""
    return max(chain.wait_for_receipt(s.hashes[-1], timeout=120).block_number for s in streams)


def _check_all_receipts(chain: ChainAdapter, streams: list[Stream]) -> tuple[int, int]:
    blocks: set[int] = set()
    for stream in streams:
        for tx_hash in stream.hashes:
            blocks.add(chain.wait_for_receipt(tx_hash, timeout=60).block_number)
    return len(blocks), sum(len(s.hashes) for s in streams)


def run(quick: bool = False) -> dict[str, Any]:
    n_tput = 40 if quick else 200
    n_lat = 10 if quick else 30
    if is_smoke():
        n_tput, n_lat = 2 * STREAMS, 2
    per_stream = n_tput // STREAMS
    n_tput = per_stream * STREAMS
    console.rule(f"[bold]benchmark 1: encrypted transfers end to end ({n_tput} / {n_lat})")
    with temp_home("e2e") as home:
        start_devnet(
            home, **get_devnet_sizes(workers=2), progress=lambda m: console.print(f"[dim]  {m}[/]")
        )
        try:
            return _run(home, n_tput, per_stream, n_lat, quick)
        finally:
            stop_devnet(home)


def _run(home: Any, n_tput: int, per_stream: int, n_lat: int, quick: bool) -> dict[str, Any]:
    client = Client.from_home(home)
    chain = client.chain
    admin = chain.get_dev_key(0)
    rpc_url = client.state.rpc_url
    bob = client.get_user("bob")
    bob_eth = ChainAdapter.address_of(bob.eth_private_key)

    # -- setup (untimed): funded stream accounts, both tokens, balances ---------------
    streams = make_streams(STREAMS)
    for s in streams:
        chain.fund(s.eth_address, 100 * 10**18, sender_key=admin)
    deployment = client.deploy("token", as_user="alice")
    sb = Sealbridge(client, deployment.contract_id)
    last = None
    for s in streams:
        last = client.call(
            sb.cid_hex, "mint", {"to": to_hex(s.identity_key), "amount": MINT}, as_user="alice"
        )
    assert last is not None
    client.wait_applied(deployment.contract_id, last.block_number)
    plain = PlainToken.deploy(chain, admin)
    for s in streams:
        plain.mint(admin, s.eth_address, MINT)
    console.print("[dim]  setup done: 2 workers, sealbridge token and plain token minted[/]")

    # -- throughput: plain token ------------------------------------------------------
    plain_before = plain.balance_of(bob_eth)

    def send_plain(adapter: ChainAdapter, stream: Stream, _i: int) -> bytes:
        return PlainToken(adapter, plain.address).send_transfer(stream.eth_key, bob_eth, AMOUNT)

    t0 = time.perf_counter()
    plain_send_s, errors = _send_all(streams, per_stream, send_plain, rpc_url)
    if errors:
        raise errors[0]
    _wait_last_receipts(chain, streams)
    plain_mined_s = time.perf_counter() - t0
    while plain.balance_of(bob_eth) < plain_before + n_tput * AMOUNT:
        time.sleep(0.001)
    plain_total_s = time.perf_counter() - t0
    plain_blocks, _ = _check_all_receipts(chain, streams)
    for s in streams:
        s.hashes.clear()

    # -- throughput: sealbridge -------------------------------------------------------
    applied_before = min(sb.commands_applied())

    def send_sealed(adapter: ChainAdapter, stream: Stream, _i: int) -> bytes:
        mgmt = ManagementContracts(adapter, client.addresses)
        ciphertext = sb.seal_transfer(stream, bob.identity_key, AMOUNT)
        return mgmt.command_inbox.send_submit(sb.contract_id, ciphertext, stream.eth_key)

    bob_sb_before = sb.balance("bob")
    t0 = time.perf_counter()
    sb_send_s, errors = _send_all(streams, per_stream, send_sealed, rpc_url)
    if errors:
        raise errors[0]
    _wait_last_receipts(chain, streams)
    sb_mined_s = time.perf_counter() - t0
    sb.wait_commands_applied(applied_before + n_tput)
    sb_total_s = time.perf_counter() - t0
    sb_blocks, _ = _check_all_receipts(chain, streams)
    bob_sb_after = sb.balance("bob")
    if bob_sb_after != bob_sb_before + n_tput * AMOUNT:
        raise AssertionError(f"bob has {bob_sb_after}, expected {bob_sb_before + n_tput * AMOUNT}")

    # -- latency: plain token ---------------------------------------------------------
    sender = streams[0]
    plain_lat: list[float] = []
    expected = plain.balance_of(bob_eth)
    for _ in range(n_lat):
        expected += AMOUNT
        start = time.perf_counter()
        plain.send_transfer(sender.eth_key, bob_eth, AMOUNT)
        while plain.balance_of(bob_eth) < expected:
            pass
        plain_lat.append(time.perf_counter() - start)

    # -- latency: sealbridge ----------------------------------------------------------
    sb_lat: list[float] = []
    sb_submit: list[float] = []
    polls: list[int] = []
    expected = sb.balance("bob")
    for _ in range(n_lat):
        expected += AMOUNT
        start = time.perf_counter()
        ciphertext = sb.seal_transfer(sender, bob.identity_key, AMOUNT)
        client.mgmt.command_inbox.send_submit(sb.contract_id, ciphertext, sender.eth_key)
        sb_submit.append(time.perf_counter() - start)
        count = 0
        while True:
            count += 1
            if sb.balance("bob") >= expected:
                break
        sb_lat.append(time.perf_counter() - start)
        polls.append(count)

    # -- report -----------------------------------------------------------------------
    plain_tps = n_tput / plain_total_s
    sb_tps = n_tput / sb_total_s
    plain_sum = summarize(plain_lat)
    sb_sum = summarize(sb_lat)
    submit_sum = summarize(sb_submit)
    mode = f"pipelined: {STREAMS} funded accounts, one thread each, {per_stream} txs per account"
    print_table(
        f"throughput: {n_tput} transfers on one anvil (automine, one block per tx); {mode}",
        ["system", "all sent (s)", "all mined (s)", "visible (s)", "tx/s", "blocks", "vs plain"],
        [
            [
                "plain Vyper token (visible = balanceOf)",
                fmt(plain_send_s, 3),
                fmt(plain_mined_s, 3),
                fmt(plain_total_s, 3),
                fmt(plain_tps, 1),
                str(plain_blocks),
                fmt_ratio(1.0),
            ],
            [
                "sealbridge (visible = applied by both workers)",
                fmt(sb_send_s, 3),
                fmt(sb_mined_s, 3),
                fmt(sb_total_s, 3),
                fmt(sb_tps, 1),
                str(sb_blocks),
                fmt_ratio(ratio(sb_tps, plain_tps)),
            ],
        ],
    )
    print_table(
        f"latency: {n_lat} sequential transfers, submit until the receiver sees the new balance",
        ["system", "p50 (ms)", "p95 (ms)", "mean (ms)", "min (ms)", "max (ms)", "p50 vs plain"],
        [
            _lat_row("plain token (balanceOf eth_call)", plain_sum, plain_sum),
            _lat_row("sealbridge (signed query, worker 0)", sb_sum, plain_sum),
            _lat_row("  of which: seal + send_submit", submit_sum, plain_sum),
        ],
    )
    console.print(
        f"[dim]sealbridge latency polls: mean {sum(polls) / len(polls):.1f} queries per sample "
        "(back to back; resolution = one signed query)[/]"
    )
    payload: dict[str, Any] = {
        "quick": quick,
        "config": {
            "workers": 2,
            "throughput_transfers": n_tput,
            "latency_samples": n_lat,
            "streams": STREAMS,
            "submission": mode,
            "latency_submission": "sequential, one account; poll back to back",
            "chain": "anvil, automine (one block per transaction), prague",
            "gas": "estimated per transaction (eth_estimateGas) for both tokens",
        },
        "throughput": {
            "plain": {
                "send_s": plain_send_s,
                "mined_s": plain_mined_s,
                "visible_s": plain_total_s,
                "tx_per_s": plain_tps,
                "blocks": plain_blocks,
            },
            "sealbridge": {
                "send_s": sb_send_s,
                "mined_s": sb_mined_s,
                "applied_s": sb_total_s,
                "tx_per_s": sb_tps,
                "blocks": sb_blocks,
            },
            "ratio_sealbridge_over_plain": ratio(sb_tps, plain_tps),
        },
        "latency": {
            "plain": plain_sum,
            "sealbridge": sb_sum,
            "sealbridge_submit": submit_sum,
            "sealbridge_mean_polls": sum(polls) / len(polls),
            "ratio_p50_sealbridge_over_plain": ratio(sb_sum["p50_ms"], plain_sum["p50_ms"]),
            "ratio_p95_sealbridge_over_plain": ratio(sb_sum["p95_ms"], plain_sum["p95_ms"]),
            "samples_ms": {
                "plain": [x * 1000 for x in plain_lat],
                "sealbridge": [x * 1000 for x in sb_lat],
            },
        },
    }
    payload["results_file"] = str(write_results(NAME, payload))
    return payload


def _lat_row(label: str, stats: dict[str, float], base: dict[str, float]) -> list[str]:
    return [
        label,
        fmt(stats["p50_ms"]),
        fmt(stats["p95_ms"]),
        fmt(stats["mean_ms"]),
        fmt(stats["min_ms"]),
        fmt(stats["max_ms"]),
        fmt_ratio(ratio(stats["p50_ms"], base["p50_ms"])),
    ]


if __name__ == "__main__":
    run_cli(run, __doc__)
