"""The reference contracts (DEX, sealed-bid auction, K-Means) and user-written contracts on
the shared anvil devnet: real chain, real worker processes, encrypted commands.

Every contract here is deployed by one client to the same two workers, so they share a
domain and the DEX and the auction call their tokens synchronously. Deployments are
module-scoped; no test relies on what another did to them: a test that needs a fresh
contract deploys its own, and a contract's life that goes step by step (a pool filled
then traded, an auction bid on then closed) is one test that runs its steps in order.
The tests pass in any order (``--reverse-order``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from sealbridge.cli.main import app
from sealbridge.client.api import CallReceipt, Client, CommandFailed, Deployment
from sealbridge.contracts.catalog import get_source
from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import compute_code_hash
from sealbridge.contracts.gas import DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT
from sealbridge.core.ids import to_hex
from sealbridge.evm.follower import BlockFollower
from sealbridge.evm.scan import collect_chain_blobs, find_leaks
from sealbridge.net.http import NodeRefused

pytestmark = pytest.mark.e2e

# Amounts (none equals a value the leak scan searches for).
ALICE_FUNDS = 50_000
BOB_FUNDS_A = 5_000
LIQUIDITY_A = 20_000
LIQUIDITY_B = 40_000
SWAP_IN = 1_000
BIDDER_FUNDS = 2_000
RESERVE_PRICE = 100

JAR_SOURCE = '''"""A jar of counted things (a user-written contract)."""

from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, init, query, require


class Jar(Contract):
    label = Value(str, default="")
    count = Value(int, default=0)

    @init
    def setup(self, label: str, start: int = 0) -> None:
        require(isinstance(start, int) and start >= 0, "start must be >= 0", "bad_arguments")
        self.label = label
        self.count = start

    @command
    def add(self, amount: int) -> int:
        require(isinstance(amount, int) and amount > 0, "amount must be > 0", "bad_arguments")
        self.count = self.count + amount
        return self.count

    @query(readers=ANYONE)
    def get(self) -> dict:
        return {"label": self.label, "count": self.count}
'''

REJECTED_SOURCE = '''"""Reads the host's environment: refused at deploy."""

import os

from sealbridge.contracts.sdk import ANYONE, Contract, query


class Snoop(Contract):
    @query(readers=ANYONE)
    def home(self) -> str:
        return os.environ.get("HOME", "")
'''


# -- helpers --------------------------------------------------------------------------
def cid(deployment: Deployment) -> str:
    return to_hex(deployment.contract_id)


def ok(client: Client, contract: str, method: str, args: dict[str, Any], user: str) -> Any:
    """Run a command that must be accepted; its return value."""
    return client.call_and_wait(contract, method, args, as_user=user).value


def ok_all(client: Client, commands: list[tuple[str, str, dict[str, Any], str]]) -> list[Any]:
    """Submit several commands back to back (one block each), then check every outcome."""
    receipts: list[CallReceipt] = [
        client.call(contract, method, args, as_user=user)
        for contract, method, args, user in commands
    ]
    values = []
    for receipt, (_, method, _, user) in zip(receipts, commands, strict=True):
        result = client.wait_result(receipt, as_user=user)
        assert result.ok, f"{method} by {user}: {result.error}: {result.message}"
        values.append(result.value)
    return values


def refused(client: Client, contract: str, method: str, args: dict[str, Any], user: str) -> str:
    """Run a command that must be refused; the contract's error code."""
    with pytest.raises(CommandFailed) as failed:
        client.call_and_wait(contract, method, args, as_user=user)
    return failed.value.code


def read(client: Client, contract: str, name: str, args: dict[str, Any], user: str) -> Any:
    return client.query(contract, name, args, as_user=user).answer.result


def denied(client: Client, contract: str, name: str, args: dict[str, Any], user: str) -> str:
    """Run a query that must be refused; the worker's message."""
    with pytest.raises(NodeRefused) as refusal:
        client.query(contract, name, args, as_user=user)
    assert refusal.value.remote_code == "query_refused"
    return refusal.value.message


def balance(client: Client, token: Deployment, user: str) -> int:
    value = read(client, cid(token), "balance", {"owner": user}, user)
    assert isinstance(value, int)
    return value


def balances(client: Client, token: Deployment, users: list[str]) -> dict[str, int]:
    return {user: balance(client, token, user) for user in users}


def get_roots(client: Client, worker: int) -> dict[str, tuple[int, str]]:
    status = client.get_node(client.state.workers[worker].url).get_json("/v1/status")
    return {c["contract_id"]: (c["height"], c["state_root"]) for c in status["contracts"]}


def wait_same_roots(client: Client, deployments: list[Deployment]) -> list[str]:
    """Wait until both workers report the same height and state root for every contract;
    the roots."""
    wanted = [cid(d) for d in deployments]
    deadline = time.monotonic() + 30
    while True:
        views = [
            [get_roots(client, w).get(c) for c in wanted] for w in range(len(client.state.workers))
        ]
        first = views[0]
        if all(view == first for view in views):
            roots = [entry[1] for entry in first if entry is not None]
            if len(roots) == len(wanted):
                return roots
        assert time.monotonic() < deadline, f"workers disagree: {views}"
        time.sleep(0.05)


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealbridge.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dave(client: Client) -> str:
    """A fourth user, outside the devnet's default three, with a funded gas account."""
    if "dave" not in client.keystore.list_names():
        key = client.keystore.create(
            "dave", identity_seed=os.urandom(32), eth_private_key=os.urandom(32)
        )
        client.chain.fund(
            to_hex(key.eth_address),
            10**18,
            sender_key=client.get_user("alice").eth_private_key,
        )
    return "dave"


@pytest.fixture(scope="module")
def pool(client: Client) -> dict[str, Deployment]:
    """Two tokens (alice owns both; she holds ALICE_FUNDS of each, bob BOB_FUNDS_A of A)
    and a DEX trading them, set up with the tokens' ids as 0x-hex init arguments."""
    token_a = client.deploy("token", as_user="alice")
    token_b = client.deploy("token", as_user="alice")
    dex = client.deploy(
        "dex",
        as_user="alice",
        init_args={"token_a": cid(token_a), "token_b": cid(token_b)},
    )
    ok_all(
        client,
        [
            (cid(token_a), "mint", {"to": "alice", "amount": ALICE_FUNDS}, "alice"),
            (cid(token_b), "mint", {"to": "alice", "amount": ALICE_FUNDS}, "alice"),
            (cid(token_a), "mint", {"to": "bob", "amount": BOB_FUNDS_A}, "alice"),
        ],
    )
    return {"a": token_a, "b": token_b, "dex": dex}


@pytest.fixture(scope="module")
def pay_token(client: Client, dave: str) -> Deployment:
    """The auction's payment token: bob, carol and dave hold BIDDER_FUNDS each."""
    token = client.deploy("token", as_user="alice")
    ok_all(
        client,
        [
            (cid(token), "mint", {"to": user, "amount": BIDDER_FUNDS}, "alice")
            for user in ("bob", "carol", dave)
        ],
    )
    return token


@pytest.fixture(scope="module")
def jar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("contracts") / "jar.py"
    path.write_text(JAR_SOURCE)
    return path


# -- DEX ------------------------------------------------------------------------------
def test_dex_init_resolves_hex_ids(client: Client, pool: dict[str, Deployment]) -> None:
    # a DEX of its own over the pool's tokens: empty, whatever the other tests traded
    dex = client.deploy(
        "dex",
        as_user="alice",
        init_args={"token_a": cid(pool["a"]), "token_b": cid(pool["b"])},
    )
    reserves = read(client, cid(dex), "reserves", {}, "carol")
    assert reserves == {
        "token_a": pool["a"].contract_id,
        "token_b": pool["b"].contract_id,
        "reserve_a": 0,
        "reserve_b": 0,
        "fee_bps": 30,
    }


def test_dex_liquidity_swap_and_slippage(client: Client, pool: dict[str, Deployment]) -> None:
    """The pool's life in order: liquidity into the empty pool, a swap, then a swap
    refused for slippage and one refused inside the token call, which change nothing.
    (The only test that changes the pool.)"""
    a, b, dex = cid(pool["a"]), cid(pool["b"]), cid(pool["dex"])
    # 1. liquidity into the empty pool, and a swap
    *_, added = ok_all(
        client,
        [
            (a, "approve", {"spender": dex, "amount": LIQUIDITY_A}, "alice"),
            (b, "approve", {"spender": dex, "amount": LIQUIDITY_B}, "alice"),
            (a, "approve", {"spender": dex, "amount": 2 * SWAP_IN}, "bob"),
            (dex, "add_liquidity", {"amount_a": LIQUIDITY_A, "amount_b": LIQUIDITY_B}, "alice"),
        ],
    )
    assert added == {
        "shares": math.isqrt(LIQUIDITY_A * LIQUIDITY_B),
        "amount_a": LIQUIDITY_A,
        "amount_b": LIQUIDITY_B,
    }
    assert read(client, dex, "shares", {"owner": "alice"}, "alice") == added["shares"]
    assert balances(client, pool["a"], ["alice"]) == {"alice": ALICE_FUNDS - LIQUIDITY_A}
    assert balances(client, pool["b"], ["alice"]) == {"alice": ALICE_FUNDS - LIQUIDITY_B}

    in_after_fee = SWAP_IN * (10_000 - 30) // 10_000
    expected_out = LIQUIDITY_B * in_after_fee // (LIQUIDITY_A + in_after_fee)
    out = ok(client, dex, "swap", {"token_in": a, "amount_in": SWAP_IN, "min_out": 1}, "bob")
    assert out == expected_out
    assert balance(client, pool["a"], "bob") == BOB_FUNDS_A - SWAP_IN
    assert balance(client, pool["b"], "bob") == expected_out
    reserves = read(client, dex, "reserves", {}, "bob")
    assert (reserves["reserve_a"], reserves["reserve_b"]) == (
        LIQUIDITY_A + SWAP_IN,
        LIQUIDITY_B - expected_out,
    )

    # 2. a swap refused for slippage changes nothing
    reserves = read(client, dex, "reserves", {}, "bob")
    before = {
        "bob a": balance(client, pool["a"], "bob"),
        "bob b": balance(client, pool["b"], "bob"),
        "allowance": read(client, a, "allowance", {"owner": "bob", "spender": dex}, "bob"),
    }
    in_after_fee = SWAP_IN * (10_000 - 30) // 10_000
    would_pay = reserves["reserve_b"] * in_after_fee // (reserves["reserve_a"] + in_after_fee)
    args = {"token_in": a, "amount_in": SWAP_IN, "min_out": would_pay + 1}
    assert refused(client, dex, "swap", args, "bob") == "slippage"
    after = {
        "bob a": balance(client, pool["a"], "bob"),
        "bob b": balance(client, pool["b"], "bob"),
        "allowance": read(client, a, "allowance", {"owner": "bob", "spender": dex}, "bob"),
    }
    assert after == before
    assert read(client, dex, "reserves", {}, "carol") == reserves
    # a token transfer failing inside the DEX's call fails the whole swap the same way
    too_much = {"token_in": a, "amount_in": 50 * SWAP_IN, "min_out": 0}
    assert refused(client, dex, "swap", too_much, "bob") == "insufficient_allowance"
    assert read(client, dex, "reserves", {}, "carol") == reserves


def test_dex_workers_agree(client: Client, pool: dict[str, Deployment]) -> None:
    roots = wait_same_roots(client, [pool["a"], pool["b"], pool["dex"]])
    assert len(set(roots)) == 3


# -- sealed-bid auction ---------------------------------------------------------------
@pytest.fixture(scope="module")
def auction(client: Client, pay_token: Deployment) -> Deployment:
    """alice auctions an item for pay_token; bidding closes well after the bids below
    (every transaction mines a block, workers' output records included)."""
    return client.deploy(
        "auction",
        as_user="alice",
        init_args={
            "token": cid(pay_token),
            "item": "a first edition",
            "close_block": client.chain.get_block_number() + 100,
            "reserve_price": RESERVE_PRICE,
        },
    )


def test_auction_bids_are_sealed_and_the_close_pays_the_second_price(
    client: Client, pay_token: Deployment, auction: Deployment, dave: str
) -> None:
    """The auction's life in order: sealed bids while open, then the close. (The only test
    that uses the auction.)"""
    token, house = cid(pay_token), cid(auction)
    # 1. sealed bids while bidding is open
    status = read(client, house, "status", {}, "carol")
    assert status["state"] == "open" and status["bids"] == 0
    assert status["close_block"] > client.chain.get_block_number()
    ok_all(
        client,
        [(token, "approve", {"spender": house, "amount": 1_000}, u) for u in ("bob", "carol", dave)]
        + [
            (house, "bid", {"amount": 300}, "bob"),
            (house, "bid", {"amount": 800}, "carol"),
            (house, "bid", {"amount": 650}, dave),
            (house, "bid", {"amount": 700}, "bob"),  # a raise escrows only the difference
        ],
    )
    assert refused(client, house, "bid", {"amount": 690}, "bob") == "bid_too_low"
    assert refused(client, house, "bid", {"amount": 900}, "alice") == "not_authorized"
    assert refused(client, house, "close", {}, "bob") == "too_early"
    assert balances(client, pay_token, ["bob", "carol", dave]) == {
        "bob": BIDDER_FUNDS - 700,
        "carol": BIDDER_FUNDS - 800,
        dave: BIDDER_FUNDS - 650,
    }
    assert read(client, house, "my_bid", {"bidder": "bob"}, "bob") == 700
    message = denied(client, house, "my_bid", {"bidder": "carol"}, "bob")
    assert "only the account given as 'bidder' may ask" in message
    assert "not_closed" in denied(client, house, "outcome", {}, "carol")
    status = read(client, house, "status", {}, dave)
    assert status["state"] == "open" and status["bids"] == 3

    # 2. past the close block: no more bids; anyone closes; the second price is paid
    close_block = read(client, house, "status", {}, "carol")["close_block"]
    seller_before = balance(client, pay_token, "alice")
    # Move the chain past close_block (empty blocks: the workers follow them like any).
    client.chain.mine(close_block - client.chain.get_block_number())
    assert client.chain.get_block_number() >= close_block
    assert refused(client, house, "bid", {"amount": 900}, dave) == "bidding_closed"
    assert read(client, house, "status", {}, "carol")["state"] == "ended"
    assert "not_closed" in denied(client, house, "outcome", {}, "carol")

    closed = ok(client, house, "close", {}, "bob")  # anyone may close
    carol = client.get_user("carol").identity_key
    assert closed == {"winner": carol, "price": 700}
    assert read(client, house, "outcome", {}, dave) == {
        "item": "a first edition",
        "winner": carol,
        "price": 700,
    }
    # The seller got the second price; the winner paid it; everybody else got it all back.
    assert balances(client, pay_token, ["alice", "bob", "carol", dave]) == {
        "alice": seller_before + 700,
        "bob": BIDDER_FUNDS,
        "carol": BIDDER_FUNDS - 700,
        dave: BIDDER_FUNDS,
    }
    assert read(client, house, "my_bid", {"bidder": "carol"}, "carol") == 800
    assert read(client, house, "status", {}, "carol")["state"] == "closed"
    assert refused(client, house, "close", {}, "carol") == "already_closed"
    wait_same_roots(client, [pay_token, auction])


# -- K-Means --------------------------------------------------------------------------
KMEANS_PARTIES = ["alice", "bob", "carol"]
KMEANS_K = 8
KMEANS_ITERATIONS = 70
KMEANS_DIMS = 3
KMEANS_POINTS_EACH = 400  # sized so that compute needs more than the default gas


def deploy_kmeans(client: Client) -> Deployment:
    return client.deploy(
        "kmeans",
        as_user="alice",
        init_args={
            "parties": KMEANS_PARTIES,  # key names, resolved inside the list
            "k": KMEANS_K,
            "iterations": KMEANS_ITERATIONS,
            "dims": KMEANS_DIMS,
        },
    )


@pytest.fixture(scope="module")
def kmeans_shares() -> list[np.ndarray]:
    rng = np.random.default_rng(20240611)
    middles = rng.uniform(-50.0, 50.0, size=(KMEANS_K, KMEANS_DIMS))
    shares = []
    for _ in KMEANS_PARTIES:
        labels = rng.integers(0, KMEANS_K, size=KMEANS_POINTS_EACH)
        shares.append(middles[labels] + rng.normal(0.0, 3.0, size=(labels.size, KMEANS_DIMS)))
    return shares


def numpy_lloyd(
    data: np.ndarray, k: int, iterations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lloyd's algorithm as the contract defines it: start from the first k points, a fixed
    number of rounds, ties to the lowest index, an empty cluster keeps its centroid."""
    centroids = data[:k].copy()
    assignment = np.zeros(len(data), dtype=np.int64)
    for _ in range(iterations):
        distances = ((data[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        assignment = distances.argmin(axis=1)
        for j in range(k):
            members = assignment == j
            if members.any():
                centroids[j] = data[members].mean(axis=0)
    return centroids, np.bincount(assignment, minlength=k), assignment


@pytest.fixture(scope="module")
def kmeans(client: Client) -> Deployment:
    return deploy_kmeans(client)


def test_kmeans_parties_are_resolved_keys(client: Client) -> None:
    # one of its own: no points yet, whatever the other tests contributed to theirs
    config = read(client, cid(deploy_kmeans(client)), "config", {}, "carol")
    assert config["parties"] == [client.get_user(u).identity_key for u in KMEANS_PARTIES]
    assert (config["k"], config["iterations"], config["dims"], config["points"]) == (
        KMEANS_K,
        KMEANS_ITERATIONS,
        KMEANS_DIMS,
        0,
    )


def test_kmeans_private_clustering(
    client: Client, kmeans: Deployment, kmeans_shares: list[np.ndarray], dave: str
) -> None:
    contract = cid(kmeans)
    counts = ok_all(
        client,
        [
            (contract, "contribute", {"points": share.tolist()}, party)
            for party, share in zip(KMEANS_PARTIES, kmeans_shares, strict=True)
        ],
    )
    assert counts == [KMEANS_POINTS_EACH] * len(KMEANS_PARTIES)
    assert refused(client, contract, "contribute", {"points": [[0.0] * 3]}, dave) == (
        "not_authorized"
    )
    assert read(client, contract, "contributed", {"party": "bob"}, "bob") == KMEANS_POINTS_EACH
    assert "only the account given as 'party' may ask" in denied(
        client, contract, "contributed", {"party": "bob"}, "alice"
    )

    # Too little gas: refused, and nothing is stored.
    with pytest.raises(CommandFailed) as failed:
        client.call_and_wait(contract, "compute", {}, as_user="bob", gas_limit=100_000)
    assert failed.value.code == "out_of_gas"
    assert "not_computed" in denied(client, contract, "result", {}, "bob")
    # The problem needs more than the default limit (metering is deterministic, so the
    # default would have run out): raised, the compute succeeds.
    started = time.monotonic()
    limit = 2 * DEFAULT_GAS_LIMIT
    computed = client.call_and_wait(contract, "compute", {}, as_user="bob", gas_limit=limit)
    elapsed = time.monotonic() - started
    assert DEFAULT_GAS_LIMIT < computed.gas_used <= limit
    print(f"k-means compute: {computed.gas_used} gas, {elapsed:.1f}s")

    result = read(client, contract, "result", {}, "carol")
    assert result == computed.value
    assert read(client, contract, "result", {}, "alice") == result
    assert "not_a_reader" in denied(client, contract, "result", {}, dave)

    data = np.concatenate(kmeans_shares)  # canonical order: parties as at setup
    centroids, sizes, assignment = numpy_lloyd(data, KMEANS_K, KMEANS_ITERATIONS)
    assert result["points"] == len(data)
    assert result["sizes"] == sizes.tolist()
    np.testing.assert_allclose(np.array(result["centroids"]), centroids, rtol=1e-9, atol=1e-9)
    for index, party in enumerate(KMEANS_PARTIES):
        mine = read(client, contract, "my_assignments", {"party": party}, party)
        start = index * KMEANS_POINTS_EACH
        assert mine == assignment[start : start + KMEANS_POINTS_EACH].tolist()
    wait_same_roots(client, [kmeans])


# -- code: confidential, public, user-written, refused ------------------------------------
def test_confidential_code_is_shown_only_to_the_deployer(
    client: Client, jar_file: Path, pool: dict[str, Deployment]
) -> None:
    first = client.chain.get_block_number()
    secret = client.deploy(
        str(jar_file), as_user="alice", init_args={"label": "secret jar"}, confidential=True
    )
    source = JAR_SOURCE.encode()
    assert read(client, cid(secret), "code", {}, "alice") == source
    for other in ("bob", "carol"):
        assert "not disclosed" in denied(client, cid(secret), "code", {}, other)
    assert read(client, cid(secret), "get", {}, "bob") == {"label": "secret jar", "count": 0}
    # A contract deployed without --confidential shows its code to anyone.
    assert read(client, cid(pool["a"]), "code", {}, "carol") == get_source("token")
    # The chain knows the code only by its hash.
    record = client.get_contract(secret.contract_id)
    assert record.code_hash == secret.code_hash == compute_code_hash(source)
    blobs = collect_chain_blobs(client.chain, first, client.chain.get_block_number())
    needles = {
        "source": source,
        "class line": b"class Jar(Contract)",
        "docstring": b"A jar of counted things",
        "init label": b"secret jar",
    }
    assert find_leaks(blobs, needles) == []
    assert {h.needle for h in find_leaks(blobs, {"hash": secret.code_hash})} == {"hash"}


def test_user_contract_from_a_file_via_the_cli(
    devnet_home: Path, jar_file: Path, pool: dict[str, Deployment]
) -> None:
    # The installed command line, as a user runs it (separate processes) ...
    out = run_cli(
        "deploy", str(jar_file), "--init", '{"label": "honey", "start": 5}', "--as", "bob",
        "--json", home=devnet_home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    jar = json.loads(out.stdout)["contract_id"]
    out = run_cli(
        "call", jar, "add", "--args", '{"amount": 3}', "--gas", "200000", "--as", "carol",
        "--json", home=devnet_home,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    outcome = json.loads(out.stdout)["outcome"]
    assert outcome["ok"] is True and outcome["value"] == 8
    assert 0 < outcome["gas_used"] <= 200_000
    out = run_cli("query", jar, "get", "--as", "alice", "--json", home=devnet_home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"]["result"] == {"label": "honey", "count": 8}

    # ... and the same app in-process for the rest (no interpreter start-up per command).
    def cli(*args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--home", str(devnet_home)])

    # A gas limit below what the command needs: refused (exit 1), nothing changes.
    res = cli(
        "call", jar, "add", "--args", '{"amount": 1}', "--gas", "5", "--as", "carol", "--json"
    )
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["outcome"]["error"] == "out_of_gas"
    for bad in ("0", "-1", str(MAX_GAS_LIMIT + 1)):
        res = cli("call", jar, "add", "--gas", bad, "--as", "carol")
        assert res.exit_code == 2
        assert f"--gas must be from 1 to {MAX_GAS_LIMIT:_}" in res.stderr
    # Query results that are dicts and bytes, for people and as JSON.
    res = cli("query", jar, "get", "--as", "alice")
    assert res.exit_code == 0, res.output
    assert '{"count": 8, "label": "honey"}' in res.stdout
    res = cli("query", jar, "code", "--as", "carol", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["answer"]["result"] == "0x" + JAR_SOURCE.encode().hex()
    res = cli("query", cid(pool["dex"]), "reserves", "--as", "carol", "--json")
    assert res.exit_code == 0, res.output
    reserves = json.loads(res.stdout)["answer"]["result"]
    assert reserves["token_a"] == cid(pool["a"]) and reserves["token_b"] == cid(pool["b"])
    assert isinstance(reserves["reserve_a"], int) and reserves["fee_bps"] == 30


def test_forbidden_code_is_refused_at_deploy(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "snoop.py"
    path.write_text(REJECTED_SOURCE)
    first = client.chain.get_block_number()
    carol = "0x" + client.get_user("carol").eth_address.hex()
    sent_before = client.chain.get_nonce(carol)
    # by default the client checks the code first: nothing reaches the chain (carol's
    # account sends no transaction; the devnet's own nodes keep making blocks meanwhile)
    with pytest.raises(CodeRejected) as early:
        client.deploy(str(path), as_user="carol")
    assert early.value.problems[0][0] == 3 and "'os'" in early.value.message
    assert client.chain.get_nonce(carol) == sent_before
    # skipping the local check, the workers refuse it the same way
    with pytest.raises(CommandFailed) as failed:
        client.deploy(str(path), as_user="carol", precheck=False)
    assert failed.value.code == "code_rejected"
    assert "line 3" in failed.value.message and "'os'" in failed.value.message
    # The chain accepted the registration (it sees only the hash); the workers refused the
    # code, so the contract has none.
    (registered,) = [
        e
        for block in BlockFollower(
            client.chain, client.addresses, start_block=first
        ).poll_until_caught_up()
        for e in block.events
        if e.name == "ContractDeployed"
        and bytes(e.args["code_hash"]) == compute_code_hash(REJECTED_SOURCE.encode())
    ]
    contract = to_hex(bytes(registered.args["contract_id"]))
    assert "not deployed" in denied(client, contract, "code", {}, "carol")
    assert "not deployed" in denied(client, contract, "home", {}, "carol")
