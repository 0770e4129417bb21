"""Same blocks, same roots: hypothesis-generated command sequences over the token, DEX and
auction are replayed by two worker runtimes in separate processes (with different hash
seeds, so any dependence on set or dict-hash order would show) and by this process; every
state root after every block must agree, and so must every receipt."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbridge.contracts.catalog import get_source
from sealbridge.contracts.executor import compute_code_hash
from sealbridge.core.encoding import decode, encode
from sealbridge.crypto.keyschedule import compute_contract_keys
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime.envelope import seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    InboxCommand,
    compute_deployer_commitment,
)
from tests.integration.replay_worker import (
    ContractSpec,
    ReplayJob,
    ReplayResult,
    read_frame,
    replay,
    write_frame,
)

ROOT = Path(__file__).resolve().parents[2]
USERS = {name: ed25519_keypair(name.encode() * 32) for name in ("a", "b", "c")}
ALICE, ALICE_PUB = USERS["a"]
WORKERS = [b"\x01" * 32]
IDS = {name: bytes([i + 1]) * 32 for i, name in enumerate(("tok_a", "tok_b", "dex", "auction"))}
CODE = {"tok_a": "token", "tok_b": "token", "dex": "dex", "auction": "auction"}
KEYS = {name: compute_contract_keys(cid, bytes([0x40 + cid[0]]) * 32) for name, cid in IDS.items()}
CLOSE_BLOCK = 6


class Script:
    """Builds encrypted commands with the right nonces."""

    def __init__(self) -> None:
        self.nonces: dict[tuple[str, str], int] = {}
        self.sent: list[tuple[str, bytes]] = []

    def command(self, contract: str, user: str, method: str, args: dict[str, Any]) -> None:
        nonce = self.nonces.get((contract, user), 0) + 1
        self.nonces[(contract, user)] = nonce
        ciphertext = seal_command(
            contract_id=IDS[contract],
            contract_public_key=KEYS[contract].command_public_key,
            sender_private_key=USERS[user][0],
            nonce=nonce,
            method=method,
            args=args,
        )
        self.sent.append((contract, ciphertext))

    def raw(self, contract: str, ciphertext: bytes) -> None:
        self.sent.append((contract, ciphertext))


def setup_commands(script: Script) -> None:
    for name in IDS:
        init: dict[str, Any] = {}
        if name == "dex":
            init = {"token_a": IDS["tok_a"], "token_b": IDS["tok_b"]}
        elif name == "auction":
            init = {"token": IDS["tok_a"], "item": "lamp", "close_block": CLOSE_BLOCK}
        script.command(name, "a", DEPLOY_METHOD, {"code": get_source(CODE[name]), "init": init})
    for token in ("tok_a", "tok_b"):
        for user in USERS:
            script.command(token, "a", "mint", {"to": USERS[user][1], "amount": 5_000})
            for spender in ("dex", "auction"):
                script.command(token, user, "approve", {"spender": IDS[spender], "amount": 10**6})
    script.command("dex", "a", "add_liquidity", {"amount_a": 2_000, "amount_b": 3_000})


users = st.sampled_from(sorted(USERS))
tokens = st.sampled_from(["tok_a", "tok_b"])


def nested_value(depth: int) -> Any:
    """``depth`` nested one-element arrays, as raw msgpack (deeper than encoders recurse)."""
    return msgspec.Raw(b"\x91" * depth + b"\x01")


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
hostile_args = st.one_of(
    st.integers(1, 5_000).map(lambda depth: {"to": nested_value(depth), "amount": 1}),
    st.integers(1, 5_000).map(lambda depth: {"amount": 1, "junk": nested_value(depth)}),
    st.binary(max_size=20_000).map(lambda data: {"to": data, "amount": 1}),
    st.text(max_size=5_000).map(lambda text: {"to": text, "amount": text}),
    st.dictionaries(
        st.text(max_size=6),
        st.recursive(
            scalars,
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=20,
        ),
        max_size=4,
    ),
)
operations = st.one_of(
    st.tuples(st.just("transfer"), tokens, users, users, st.integers(0, 6_000)),
    st.tuples(st.just("swap"), users, tokens, st.integers(0, 800), st.integers(0, 60)),
    st.tuples(st.just("add"), users, st.integers(0, 900), st.integers(0, 900)),
    st.tuples(st.just("remove"), users, st.integers(1, 500)),
    st.tuples(st.just("bid"), users, st.integers(0, 700)),
    st.tuples(st.just("close"), users),
    st.tuples(st.just("mint"), tokens, users, st.integers(1, 100)),
    st.tuples(st.just("garbage"), tokens, st.binary(min_size=0, max_size=80)),
    st.tuples(st.just("replay"), st.integers(0, 10_000)),
    st.tuples(
        st.just("hostile"),
        st.sampled_from(sorted(IDS)),
        users,
        st.sampled_from(["transfer", "swap", "bid", "mint", "setup", "close", "nope", "_ctx"]),
        hostile_args,
    ),
)


def apply_operation(script: Script, op: tuple[Any, ...]) -> None:
    if op[0] == "hostile":
        _, contract, sender, method, args = op
        script.command(contract, sender, method, args)
        return
    kind = op[0]
    if kind == "transfer":
        _, token, sender, to, amount = op
        script.command(token, sender, "transfer", {"to": USERS[to][1], "amount": amount})
    elif kind == "swap":
        _, sender, token, amount, min_out = op
        script.command(
            "dex", sender, "swap", {"token_in": IDS[token], "amount_in": amount, "min_out": min_out}
        )
    elif kind == "add":
        _, sender, a, b = op
        script.command("dex", sender, "add_liquidity", {"amount_a": a, "amount_b": b})
    elif kind == "remove":
        _, sender, shares = op
        script.command("dex", sender, "remove_liquidity", {"shares": shares})
    elif kind == "bid":
        _, sender, amount = op
        script.command("auction", sender, "bid", {"amount": amount})
    elif kind == "close":
        script.command("auction", op[1], "close", {})
    elif kind == "mint":
        _, token, sender, amount = op
        script.command(token, sender, "mint", {"to": USERS[sender][1], "amount": amount})
    elif kind == "garbage":
        script.raw(op[1], op[2])
    else:  # replay an earlier ciphertext verbatim
        contract, ciphertext = script.sent[op[1] % len(script.sent)]
        script.raw(contract, ciphertext)


def make_job(ops: list[tuple[Any, ...]], cuts: list[int]) -> ReplayJob:
    script = Script()
    setup_commands(script)
    first = len(script.sent)
    for op in ops:
        apply_operation(script, op)
    groups = [script.sent[:first]]
    rest = script.sent[first:]
    for cut in cuts:
        if not rest:
            break
        groups.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        groups.append(rest)
    blocks = []
    seq = 0
    for number, group in enumerate(groups, start=1):
        commands = []
        for index, (contract, ciphertext) in enumerate(group):
            commands.append(
                InboxCommand(
                    contract_id=IDS[contract],
                    seq=seq,
                    tx_index=index,
                    log_index=0,
                    ciphertext=ciphertext,
                )
            )
            seq += 1
        block = BlockInput(number=number, block_hash=number.to_bytes(32, "big"), commands=commands)
        blocks.append(encode(block))
    specs = [
        ContractSpec(
            contract_id=cid,
            contract_key=bytes([0x40 + cid[0]]) * 32,
            code_hash=compute_code_hash(get_source(CODE[name])),
            deployer_commitment=compute_deployer_commitment(cid, ALICE_PUB),
            workers=WORKERS,
        )
        for name, cid in IDS.items()
    ]
    return ReplayJob(contracts=specs, blocks=blocks)


class ReplayProcess:
    def __init__(self, hash_seed: str) -> None:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.replay_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def replay(self, job: ReplayJob) -> ReplayResult:
        assert self.process.stdin is not None and self.process.stdout is not None
        write_frame(self.process.stdin, encode(job))
        frame = read_frame(self.process.stdout)
        assert frame is not None, "replay worker died"
        return decode(frame, ReplayResult)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def workers() -> Iterator[list[ReplayProcess]]:
    pair = [ReplayProcess("1"), ReplayProcess("2")]
    try:
        yield pair
    finally:
        for worker in pair:
            worker.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(operations, min_size=1, max_size=40),
    cuts=st.lists(st.integers(1, 8), max_size=10),
)
def test_two_worker_processes_compute_the_same_roots(
    workers: list[ReplayProcess], ops: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    job = make_job(ops, cuts)
    here = replay(job)
    first, second = (worker.replay(job) for worker in workers)
    assert first == second == here
    # the setup block applied cleanly, so the sequences exercise real state
    assert set(here.statuses[0]) == {"applied"}


def test_roots_move_and_the_replay_can_fail() -> None:
    """Control: the comparison is sensitive -- one changed amount changes the roots."""
    ops: list[tuple[Any, ...]] = [("transfer", "tok_a", "a", "b", 10)]
    changed: list[tuple[Any, ...]] = [("transfer", "tok_a", "a", "b", 11)]
    assert replay(make_job(ops, [])).roots != replay(make_job(changed, [])).roots
