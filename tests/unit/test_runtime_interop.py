"""Contracts calling each other inside the runtime: synchronous calls within a domain, and
asynchronous messages between workers (PODG's egress events)."""

from __future__ import annotations

from typing import Any

import pytest

from sealbridge.contracts.catalog import get_source
from sealbridge.contracts.executor import compute_code_hash
from sealbridge.core.encoding import encode
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import ContractKeys, compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair, ed25519_sign
from sealbridge.runtime import errors
from sealbridge.runtime.envelope import make_query, open_answer, open_result, seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    MESSAGE_SIGN_TAG,
    BlockInput,
    BlockOutput,
    CommandResult,
    DirectoryEntry,
    InboxCommand,
    InstallContract,
    MessageBody,
    SignedMessage,
    command_aad,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveContext

ALICE, ALICE_PUB = ed25519_keypair(b"a" * 32)
BOB, BOB_PUB = ed25519_keypair(b"b" * 32)

PINGER = b"""
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, init, query

class Pinger(Contract):
    target = Value(bytes, default=b"")
    sent = Value(int, default=0)

    @init
    def setup(self, target: bytes) -> None:
        self.target = target

    @command
    def ping(self, times: int) -> int:
        for i in range(times):
            self.send(self.target, "on_ping", n=self.sent + i + 1)
        self.sent = self.sent + times
        return self.sent

    @command
    def ping_then_fail(self) -> None:
        self.send(self.target, "on_ping", n=999)
        self.sent = self.sent + 1
        raise ValueError("changed my mind")

    @command
    def call_directly(self) -> int:
        return self.call(self.target, "on_ping", n=0)

    @query(readers=ANYONE)
    def count(self) -> int:
        return self.sent
"""

PONGER = b"""
from sealbridge.contracts.sdk import ANYONE, Contract, Map, Value, command, query, require

class Ponger(Contract):
    total = Value(int, default=0)
    seen = Value(list, default=[])
    senders = Map(bytes, int, default=0)

    @command
    def on_ping(self, n: int) -> int:
        require(self.env.caller_is_contract, "only contracts ping", "not_a_contract")
        require(n != 13, "unlucky", "unlucky")
        seen = self.seen
        seen.append(n)
        self.seen = seen
        self.total = self.total + n
        self.senders[self.env.caller] += 1
        return self.total

    @query(readers=ANYONE)
    def state(self) -> dict:
        return {"total": self.total, "seen": self.seen}
"""


class Deployed:
    def __init__(self, contract_id: bytes, keys: ContractKeys, code: bytes) -> None:
        self.contract_id = contract_id
        self.keys = keys
        self.code = code
        self.nonce = 0

    @property
    def entry(self) -> DirectoryEntry:
        return DirectoryEntry(
            contract_id=self.contract_id,
            command_key=self.keys.command_public_key,
            message_key=self.keys.message_public_key,
        )

    def command(self, method: str, args: dict[str, Any], sender: bytes = ALICE) -> bytes:
        self.nonce += 1
        return seal_command(
            contract_id=self.contract_id,
            contract_public_key=self.keys.command_public_key,
            sender_private_key=sender,
            nonce=self.nonce,
            method=method,
            args=args,
        )


def make_worker() -> WorkerRuntime:
    return WorkerRuntime(
        EnclaveContext(
            program="tests:Worker", measurement=bytes(32), platform_private_key=bytes([9]) * 32
        )
    )


def install(worker: WorkerRuntime, tag: int, code: bytes, workers: list[bytes]) -> Deployed:
    contract_id = bytes([tag]) * 32
    contract_key = bytes([tag + 100]) * 32
    keys = compute_contract_keys(contract_id, contract_key)
    identity = worker.enclave.identity
    worker.install_contract(
        InstallContract(
            contract_id=contract_id,
            code_hash=compute_code_hash(code),
            contract_public_key=keys.command_public_key,
            wrapped_key=ecies.encrypt_to(
                identity.encryption_key,
                contract_key,
                key_release_aad(contract_id, identity.identity_key),
            ),
            gatekeeper_key=b"\x00" * 32,
            deployer_commitment=compute_deployer_commitment(contract_id, ALICE_PUB),
            workers=workers,
        )
    )
    return Deployed(contract_id, keys, code)


class Chain:
    """Blocks in order, for several workers: each gets the commands of its contracts."""

    def __init__(self) -> None:
        self.number = 0
        self.seq = 0

    def block(
        self, items: list[tuple[bytes, bytes]], directory: list[DirectoryEntry] | None = None
    ) -> BlockInput:
        self.number += 1
        commands = []
        for index, (contract_id, ciphertext) in enumerate(items):
            self.seq += 1
            commands.append(
                InboxCommand(
                    contract_id=contract_id,
                    seq=self.seq,
                    tx_index=index,
                    log_index=0,
                    ciphertext=ciphertext,
                )
            )
        return BlockInput(
            number=self.number,
            block_hash=self.number.to_bytes(32, "big"),
            commands=commands,
            directory=directory or [],
        )


def result_of(out: BlockOutput, index: int, contract: Deployed, nonce: int) -> CommandResult:
    return open_result(
        sender_private_key=ALICE,
        contract_id=contract.contract_id,
        nonce=nonce,
        sealed_result=out.receipts[index].sealed_result,
    )


def ask(worker: WorkerRuntime, contract: Deployed, method: str) -> Any:
    query, reply = make_query(
        contract_id=contract.contract_id,
        caller_private_key=BOB,
        method=method,
        args={},
        issued_at=0,
    )
    return open_answer(query, reply, worker.answer_query(query, 0))[0].result


@pytest.fixture
def pair() -> tuple[WorkerRuntime, Deployed, WorkerRuntime, Deployed, Chain]:
    """Pinger on worker 1, Ponger on worker 2 (different domains), both deployed."""
    w1, w2 = make_worker(), make_worker()
    pinger = install(w1, 1, PINGER, [b"\x01" * 32])
    ponger = install(w2, 2, PONGER, [b"\x02" * 32])
    chain = Chain()
    deploy_ping = pinger.command(
        DEPLOY_METHOD, {"code": PINGER, "init": {"target": ponger.contract_id}}
    )
    out = w1.process_block(chain.block([(pinger.contract_id, deploy_ping)], [ponger.entry]))
    assert result_of(out, 0, pinger, 1).ok
    deploy_pong = ponger.command(DEPLOY_METHOD, {"code": PONGER, "init": {}})
    out = w2.process_block(chain.block([(ponger.contract_id, deploy_pong)], [pinger.entry]))
    assert result_of(out, 0, ponger, 1).ok
    return w1, pinger, w2, ponger, chain


def test_messages_are_delivered_once_in_order(pair: Any) -> None:
    w1, pinger, w2, ponger, chain = pair
    out = w1.process_block(
        chain.block([(pinger.contract_id, pinger.command("ping", {"times": 3}))])
    )
    assert result_of(out, 0, pinger, 2).value == 3
    assert [m.seq for m in out.messages] == [1, 2, 3]
    assert all(m.source == pinger.contract_id and m.ciphertext for m in out.messages)
    # the host posts them to the target's inbox; they arrive in a later block
    posted = [(ponger.contract_id, m.ciphertext) for m in out.messages]
    out2 = w2.process_block(chain.block(posted))
    assert [r.status for r in out2.receipts] == ["applied"] * 3
    assert ask(w2, ponger, "state") == {"total": 6, "seen": [1, 2, 3]}
    root = w2.get_contract(ponger.contract_id).state_root
    # a second delivery (e.g. a duplicate post) is refused and changes nothing
    out3 = w2.process_block(chain.block(posted[:1]))
    assert out3.receipts[0].status == "replayed_command"
    assert w2.get_contract(ponger.contract_id).state_root == root


def test_failed_command_sends_nothing(pair: Any) -> None:
    w1, pinger, _w2, _ponger, chain = pair
    out = w1.process_block(
        chain.block([(pinger.contract_id, pinger.command("ping_then_fail", {}))])
    )
    assert result_of(out, 0, pinger, 2).error == "contract_exception"
    assert out.messages == []
    assert ask(w1, pinger, "count") == 0


def test_a_message_the_target_refuses_still_consumes_its_number(pair: Any) -> None:
    w1, pinger, w2, ponger, chain = pair
    sent = w1.get_contract(pinger.contract_id)
    out = w1.process_block(
        chain.block([(pinger.contract_id, pinger.command("ping", {"times": 13}))])
    )
    unlucky = [(ponger.contract_id, m.ciphertext) for m in out.messages]
    out2 = w2.process_block(chain.block(unlucky))
    assert all(r.status == "applied" for r in out2.receipts)
    state = ask(w2, ponger, "state")
    assert 13 not in state["seen"] and len(state["seen"]) == 12
    assert sent.outbox_seqs[ponger.contract_id.hex()] == 13
    assert w2.get_contract(ponger.contract_id).inbox_seqs[pinger.contract_id.hex()] == 13


def test_synchronous_calls_across_domains_are_refused(pair: Any) -> None:
    w1, pinger, w2, ponger, chain = pair
    # Ponger is not on worker 1 at all ...
    out = w1.process_block(chain.block([(pinger.contract_id, pinger.command("call_directly", {}))]))
    assert result_of(out, 0, pinger, 2).error == "unknown_contract"
    # ... and when it is, but with another executor set, the call would diverge: refused.
    other = install(w1, 2, PONGER, [b"\x02" * 32])
    deploy = other.command(DEPLOY_METHOD, {"code": PONGER, "init": {}})
    w1.process_block(chain.block([(other.contract_id, deploy)]))
    out = w1.process_block(chain.block([(pinger.contract_id, pinger.command("call_directly", {}))]))
    assert result_of(out, 0, pinger, 3).error == "cross_domain_call"


def test_unknown_source_refuses_the_whole_block(pair: Any) -> None:
    w1, pinger, _w2, ponger, chain = pair
    w3 = make_worker()  # hosts Ponger too, but its host never supplied Pinger's keys
    lone = install(w3, 2, PONGER, [b"\x02" * 32])
    w3.process_block(
        chain.block([(lone.contract_id, lone.command(DEPLOY_METHOD, {"code": PONGER}))])
    )
    before = w3.get_contract(lone.contract_id).compute_state_root()
    out = w1.process_block(
        chain.block([(pinger.contract_id, pinger.command("ping", {"times": 1}))])
    )
    block = chain.block([(ponger.contract_id, out.messages[0].ciphertext)])
    with pytest.raises(errors.DirectoryIncomplete):
        w3.process_block(block)
    runtime = w3.get_contract(lone.contract_id)
    assert runtime.compute_state_root() == before and runtime.inbox_seqs == {}
    # once the host supplies the entry, the same block applies
    fixed = BlockInput(
        number=block.number,
        block_hash=block.block_hash,
        commands=block.commands,
        directory=[pinger.entry],
    )
    assert w3.process_block(fixed).receipts[0].status == "applied"


def test_forged_message_is_refused(pair: Any) -> None:
    _w1, pinger, w2, ponger, chain = pair
    body = encode(
        MessageBody(
            source=pinger.contract_id, target=ponger.contract_id, seq=1, method="on_ping", args={}
        )
    )
    forged_key, _ = ed25519_keypair(b"f" * 32)  # not the pinger's message key
    signed = SignedMessage(body=body, signature=ed25519_sign(forged_key, MESSAGE_SIGN_TAG + body))
    ciphertext = ecies.encrypt_to(
        ponger.keys.command_public_key, encode(signed), command_aad(ponger.contract_id)
    )
    out = w2.process_block(chain.block([(ponger.contract_id, ciphertext)]))
    assert out.receipts[0].status == "bad_command_signature"
    assert ask(w2, ponger, "state") == {"total": 0, "seen": []}


def test_dex_calls_tokens_synchronously_in_one_block() -> None:
    """Two tokens and a DEX on one worker (one domain): a swap's call tree spans three
    contracts, and a refused swap reverts all of them."""
    worker, chain = make_worker(), Chain()
    domain = [b"\x01" * 32]
    token_a = install(worker, 10, get_source("token"), domain)
    token_b = install(worker, 11, get_source("token"), domain)
    dex = install(worker, 12, get_source("dex"), domain)
    items = [
        (token_a.contract_id, token_a.command(DEPLOY_METHOD, {"code": token_a.code})),
        (token_b.contract_id, token_b.command(DEPLOY_METHOD, {"code": token_b.code})),
        (
            dex.contract_id,
            dex.command(
                DEPLOY_METHOD,
                {
                    "code": dex.code,
                    "init": {"token_a": token_a.contract_id, "token_b": token_b.contract_id},
                },
            ),
        ),
        (token_a.contract_id, token_a.command("mint", {"to": ALICE_PUB, "amount": 10_000})),
        (token_b.contract_id, token_b.command("mint", {"to": ALICE_PUB, "amount": 10_000})),
        (
            token_a.contract_id,
            token_a.command("approve", {"spender": dex.contract_id, "amount": 10_000}),
        ),
        (
            token_b.contract_id,
            token_b.command("approve", {"spender": dex.contract_id, "amount": 10_000}),
        ),
        (dex.contract_id, dex.command("add_liquidity", {"amount_a": 5_000, "amount_b": 5_000})),
    ]
    out = worker.process_block(chain.block(items))
    assert [r.status for r in out.receipts] == ["applied"] * len(items)
    assert {o.contract_id for o in out.contracts} == {
        token_a.contract_id,
        token_b.contract_id,
        dex.contract_id,
    }
    roots = {c: worker.get_contract(c).state_root for c in (token_a.contract_id, dex.contract_id)}
    swap = dex.command(
        "swap", {"token_in": token_a.contract_id, "amount_in": 100, "min_out": 10**6}
    )
    out = worker.process_block(chain.block([(dex.contract_id, swap)]))
    refused = result_of(out, 0, dex, dex.nonce)
    assert refused.error == "slippage"
    # the DEX's nonce moved (it is part of the root); token A's storage did not
    assert worker.get_contract(token_a.contract_id).state_root == roots[token_a.contract_id]
    swap = dex.command("swap", {"token_in": token_a.contract_id, "amount_in": 100, "min_out": 1})
    out = worker.process_block(chain.block([(dex.contract_id, swap)]))
    swapped = result_of(out, 0, dex, dex.nonce)
    assert swapped.ok and 0 < swapped.value < 100
    changed = {o.contract_id for o in out.contracts}
    assert changed == {token_a.contract_id, token_b.contract_id, dex.contract_id}


SPINNER = b"""
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, query

class Spinner(Contract):
    turns = Value(int, default=0)

    @command
    def spin(self) -> None:
        self.turns = 1
        while True:
            self.turns = self.turns + 1

    @command
    def hoard(self) -> None:
        pile = []
        while True:
            pile.append("x" * 100000)

    @query(readers=ANYONE)
    def count(self) -> int:
        return self.turns
"""


def test_a_hostile_contract_does_not_stall_its_neighbours() -> None:
    """An endless loop and an endless allocation on the same worker, in the same block as
    ordinary token transfers: they stop with typed errors, revert, and the transfers apply."""
    worker, chain = make_worker(), Chain()
    domain = [b"\x01" * 32]
    token = install(worker, 20, get_source("token"), domain)
    spinner = install(worker, 21, SPINNER, domain)
    worker.process_block(
        chain.block(
            [
                (token.contract_id, token.command(DEPLOY_METHOD, {"code": token.code})),
                (spinner.contract_id, spinner.command(DEPLOY_METHOD, {"code": SPINNER})),
                (token.contract_id, token.command("mint", {"to": ALICE_PUB, "amount": 100})),
            ]
        )
    )
    out = worker.process_block(
        chain.block(
            [
                (spinner.contract_id, spinner.command("spin", {})),
                (token.contract_id, token.command("transfer", {"to": BOB_PUB, "amount": 10})),
                (spinner.contract_id, spinner.command("hoard", {})),
                (token.contract_id, token.command("transfer", {"to": BOB_PUB, "amount": 5})),
            ]
        )
    )
    spun = result_of(out, 0, spinner, 2)
    hoarded = result_of(out, 2, spinner, 3)
    assert spun.error == "out_of_gas" and spun.gas_used >= 5_000_000
    assert hoarded.error in ("out_of_gas", "out_of_memory")
    assert result_of(out, 1, token, 3).value == 90
    assert result_of(out, 3, token, 4).value == 85
    assert ask(worker, spinner, "count") == 0  # both hostile commands reverted


SNEAKY = b"""
from sealbridge.contracts.sdk import ANYONE, Contract, command, query

class Sneaky(Contract):
    @query(readers=ANYONE)
    def steal(self, token: bytes, to: bytes) -> int:
        return self.call(token, "transfer", to=to, amount=1)

    @query(readers=ANYONE)
    def shout(self, token: bytes) -> None:
        self.send(token, "transfer", to=token, amount=1)
"""


def test_queries_cannot_call_or_send() -> None:
    worker, chain = make_worker(), Chain()
    domain = [b"\x01" * 32]
    token = install(worker, 30, get_source("token"), domain)
    sneaky = install(worker, 31, SNEAKY, domain)
    worker.process_block(
        chain.block(
            [
                (token.contract_id, token.command(DEPLOY_METHOD, {"code": token.code})),
                (sneaky.contract_id, sneaky.command(DEPLOY_METHOD, {"code": SNEAKY})),
                (
                    token.contract_id,
                    token.command("mint", {"to": sneaky.contract_id, "amount": 5}),
                ),
            ]
        )
    )
    root = worker.get_contract(token.contract_id).compute_state_root()
    for method, args in (
        ("steal", {"token": token.contract_id, "to": BOB_PUB}),
        ("shout", {"token": token.contract_id}),
    ):
        query, reply = make_query(
            contract_id=sneaky.contract_id,
            caller_private_key=BOB,
            method=method,
            args=args,
            issued_at=0,
        )
        with pytest.raises(errors.QueryRefused, match="read_only"):
            worker.answer_query(query, 0)
    assert worker.get_contract(token.contract_id).compute_state_root() == root


def test_a_block_that_fails_midway_is_undone_whole(pair: Any) -> None:
    """A deploy and a command applied before the block fails (an unknown message source)
    are undone with it: code, counts, nonces and storage as before the block."""
    w1, pinger, _w2, ponger, chain = pair
    w3 = make_worker()
    lone = install(w3, 2, PONGER, [b"\x02" * 32])
    before = w3.get_contract(lone.contract_id)
    root = before.compute_state_root()
    out = w1.process_block(
        chain.block([(pinger.contract_id, pinger.command("ping", {"times": 1}))])
    )
    block = chain.block(
        [
            (lone.contract_id, lone.command(DEPLOY_METHOD, {"code": PONGER})),
            (ponger.contract_id, out.messages[0].ciphertext),
        ]
    )
    with pytest.raises(errors.DirectoryIncomplete):
        w3.process_block(block)
    runtime = w3.get_contract(lone.contract_id)
    assert runtime.phase.value == "awaiting_code" and runtime.code == b""
    assert runtime.commands_applied == 0 and runtime.nonces == {}
    assert runtime.compute_state_root() == root
    assert lone.contract_id not in w3.executor.contracts


# -- messages out of order (issue 14): held until their turn, never skipped ---------------


def pings(w1: WorkerRuntime, pinger: Deployed, chain: Chain, times: int) -> list[bytes]:
    """Have the pinger send ``times`` messages (at most 16 per command); their ciphertexts."""
    sent: list[bytes] = []
    while len(sent) < times:
        batch = min(16, times - len(sent))
        out = w1.process_block(
            chain.block([(pinger.contract_id, pinger.command("ping", {"times": batch}))])
        )
        assert len(out.messages) == batch
        sent += [m.ciphertext for m in out.messages]
    return sent


def test_messages_posted_out_of_order_are_held_and_run_in_order(pair: Any) -> None:
    """A host that posts message 3 and 2 before 1: before the fix, 3 ran and 1 and 2 were
    "replays" forever. Now 3 and 2 are held, and 1 runs them all, in order."""
    w1, pinger, w2, ponger, chain = pair
    first, second, third = pings(w1, pinger, chain, 3)
    target = ponger.contract_id
    out = w2.process_block(chain.block([(target, third), (target, second)]))
    assert [r.status for r in out.receipts] == ["held", "held"]
    assert ask(w2, ponger, "state") == {"total": 0, "seen": []}
    runtime = w2.get_contract(target)
    assert sorted(runtime.held[pinger.contract_id.hex()]) == [2, 3]
    # a duplicate of a held message is a replay and changes nothing
    root = runtime.state_root
    out = w2.process_block(chain.block([(target, third)]))
    assert [r.status for r in out.receipts] == ["replayed_command"]
    assert runtime.state_root == root
    out = w2.process_block(chain.block([(target, first)]))
    assert [r.status for r in out.receipts] == ["applied"]
    assert ask(w2, ponger, "state") == {"total": 6, "seen": [1, 2, 3]}
    assert runtime.held == {} and runtime.inbox_seqs[pinger.contract_id.hex()] == 3
    assert runtime.commands_applied == 1 + 3  # the deploy, then the three messages


def test_a_message_too_far_ahead_is_refused_and_can_come_again(pair: Any) -> None:
    from sealbridge.runtime.worker import MAX_MESSAGE_GAP

    w1, pinger, w2, ponger, chain = pair
    sent = pings(w1, pinger, chain, MAX_MESSAGE_GAP + 1)
    target = ponger.contract_id
    out = w2.process_block(chain.block([(target, sent[-1])]))
    assert [r.status for r in out.receipts] == ["message_too_early"]
    assert w2.get_contract(target).held == {}
    out = w2.process_block(chain.block([(target, c) for c in sent[1:-1]]))
    assert {r.status for r in out.receipts} == {"held"}
    out = w2.process_block(chain.block([(target, sent[0]), (target, sent[-1])]))
    assert [r.status for r in out.receipts] == ["applied", "applied"]
    expected = [n for n in range(1, MAX_MESSAGE_GAP + 2) if n != 13]  # 13: the target refuses
    assert ask(w2, ponger, "state")["seen"] == expected


def test_held_messages_survive_a_restart_from_the_sealed_state(pair: Any) -> None:
    w1, pinger, w2, ponger, chain = pair
    first, second = pings(w1, pinger, chain, 2)
    target = ponger.contract_id
    out = w2.process_block(chain.block([(target, second)]))
    (sealed,) = [c.sealed_state for c in out.contracts]
    # a fresh enclave resumes the contract from the sealed state (same contract key)
    w3 = make_worker()
    identity = w3.enclave.identity
    w3.install_contract(
        InstallContract(
            contract_id=target,
            code_hash=compute_code_hash(PONGER),
            contract_public_key=ponger.keys.command_public_key,
            wrapped_key=ecies.encrypt_to(
                identity.encryption_key,
                bytes([2 + 100]) * 32,
                key_release_aad(target, identity.identity_key),
            ),
            gatekeeper_key=b"\x00" * 32,
            deployer_commitment=compute_deployer_commitment(target, ALICE_PUB),
            workers=[b"\x02" * 32],
            sealed_state=sealed,
        )
    )
    assert w3.get_contract(target).state_root == w2.get_contract(target).state_root
    block = chain.block([(target, first)], [pinger.entry])
    out2, out3 = w2.process_block(block), w3.process_block(block)
    assert [r.status for r in out3.receipts] == ["applied"]
    assert ask(w3, ponger, "state") == {"total": 3, "seen": [1, 2]}
    assert out2.contracts[0].state_root == out3.contracts[0].state_root


def test_held_messages_over_the_block_budget_run_first_in_the_next_block(
    pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealbridge.runtime import worker as worker_module

    w1, pinger, w2, ponger, chain = pair
    sent = pings(w1, pinger, chain, 4)
    target = ponger.contract_id
    w2.process_block(chain.block([(target, c) for c in sent[1:]]))  # 2, 3, 4 held
    monkeypatch.setattr(worker_module, "MAX_BLOCK_GAS", 1)  # room for nothing more
    out = w2.process_block(chain.block([(target, sent[0])]))
    assert [r.status for r in out.receipts] == ["block_full"]
    monkeypatch.setattr(worker_module, "MAX_BLOCK_GAS", 10**9)
    out = w2.process_block(chain.block([(target, sent[0])]))
    assert ask(w2, ponger, "state")["seen"] == [1, 2, 3, 4]
    # budget for the message that arrives and one held message: the third waits for the
    # next block, which runs it first even though it carries nothing for the contract
    sent = pings(w1, pinger, chain, 3)
    w2.process_block(chain.block([(target, c) for c in sent[1:]]))
    runtime = w2.get_contract(target)
    checks = {"left": 2}
    original = worker_module.WorkerRuntime._is_over_budget

    def budget(self: Any, *args: Any) -> bool:
        checks["left"] -= 1
        return checks["left"] < 0 or original(self, *args)

    monkeypatch.setattr(worker_module.WorkerRuntime, "_is_over_budget", budget)
    out = w2.process_block(chain.block([(target, sent[0])]))
    assert [r.status for r in out.receipts] == ["applied"]
    assert ask(w2, ponger, "state")["seen"] == [1, 2, 3, 4, 5, 6]
    assert sorted(runtime.held[pinger.contract_id.hex()]) == [7]
    checks["left"] = 10**6
    out = w2.process_block(chain.block([]))
    assert [c.contract_id for c in out.contracts] == [target]
    assert ask(w2, ponger, "state")["seen"] == [1, 2, 3, 4, 5, 6, 7]
    assert runtime.held == {}


def test_every_worker_of_a_source_makes_the_same_message_ciphertext(pair: Any) -> None:
    """So that any of their hosts can see on chain that a message was posted."""
    w1, pinger, _w2, ponger, chain = pair
    twin = make_worker()
    identity = twin.enclave.identity
    # the same contract (same key) on a second worker, fed the same blocks from the start
    w0 = make_worker()
    copies = []
    for worker in (w0, twin):
        ident = worker.enclave.identity
        worker.install_contract(
            InstallContract(
                contract_id=pinger.contract_id,
                code_hash=compute_code_hash(PINGER),
                contract_public_key=pinger.keys.command_public_key,
                wrapped_key=ecies.encrypt_to(
                    ident.encryption_key,
                    bytes([1 + 100]) * 32,
                    key_release_aad(pinger.contract_id, ident.identity_key),
                ),
                gatekeeper_key=b"\x00" * 32,
                deployer_commitment=compute_deployer_commitment(pinger.contract_id, ALICE_PUB),
                workers=[b"\x01" * 32],
            )
        )
    assert identity != w0.enclave.identity
    fresh = Deployed(pinger.contract_id, pinger.keys, PINGER)
    other = Chain()
    blocks = [
        other.block(
            [
                (
                    pinger.contract_id,
                    fresh.command(
                        DEPLOY_METHOD, {"code": PINGER, "init": {"target": ponger.contract_id}}
                    ),
                )
            ],
            [ponger.entry],
        ),
        other.block([(pinger.contract_id, fresh.command("ping", {"times": 2}))]),
    ]
    for worker in (w0, twin):
        outs = [worker.process_block(b) for b in blocks]
        copies.append([m.ciphertext for m in outs[-1].messages])
    assert copies[0] == copies[1] and len(copies[0]) == 2 and all(copies[0])
