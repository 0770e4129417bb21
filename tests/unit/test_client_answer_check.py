"""A client trusts an answer only about state the chain accepted (issue 14, item 8).

The attacks: a worker's host restarts its enclave from an older sealed state and feeds it
nothing new (it answers stale balances), or feeds it a fork of its own making (it answers
about a state no honest worker has). Both answers are correctly signed by a registered
worker. ``check_answer_accepted`` refuses them: their state root is not the root of the
contract's last output the ExecutionLedger accepted (whose end hash is the real chain's),
and roots never repeat (the command count is part of them).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sealbridge.client.api import (
    AnswerNotAccepted,
    StaleAnswer,
    check_answer_accepted,
)
from sealbridge.evm.management import AcceptedOutput
from sealbridge.runtime.envelope import make_query, open_answer
from sealbridge.runtime.messages import QueryAnswer
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder
from tests.unit.test_runtime_chainview import (
    ALICE,
    ALICE_PUB,
    BOB,
    BOB_PUB,
    EXECUTORS,
    Contract,
    deployed_world,
    feed,
)
from tests.unit.witnesses import peer_witnesses

replace = msgspec.structs.replace


def answer_of(worker: WorkerRuntime, token: Contract, owner: bytes, caller: bytes) -> QueryAnswer:
    query, reply = make_query(
        contract_id=token.contract_id,
        caller_private_key=caller,
        method="balance",
        args={"owner": owner},
        issued_at=0,
    )
    # honest peers vouch for its blocks (they are the real chain's): what the client's
    # check is for is the state these blocks left behind
    sealed = worker.answer_query(query, 0, peer_witnesses(worker))
    answer, _signed = open_answer(query, reply, sealed)
    return answer


def accepted_of(worker: WorkerRuntime, token: Contract, chain: ChainBuilder) -> AcceptedOutput:
    """What the ledger holds after an honest worker's output up to the chain's head."""
    runtime = worker.get_contract(token.contract_id)
    return AcceptedOutput(
        contract_id=token.contract_id,
        end=chain.number,
        end_hash=chain.head_hash,
        state_root=runtime.state_root,
        commands_applied=runtime.commands_applied,
        node_id=b"\x01" * 32,
        accepted_at=chain.number + 1,
    )


def resumed(sealed: bytes, token: Contract, chain: ChainBuilder, at: int, index: int) -> Any:
    """A worker enclave restarted from ``sealed`` (the state at block ``at``)."""
    worker = WorkerRuntime(EXECUTORS[index])
    view = ChainBuilder(anchor_number=at).config()
    worker.configure_chain(replace(view, anchor_hash=chain.hashes[at]))
    worker.install_contract(
        replace(token.install_request(worker), sealed_state=sealed, resume_height=at)
    )
    return worker


def world() -> tuple[ChainBuilder, WorkerRuntime, Contract, bytes, int]:
    """Alice has 100 at block 101 (the state sealed then is kept), then sends bob 40."""
    chain, honest, token = deployed_world()
    old_height = chain.number
    sealed = honest.get_contract(token.contract_id).seal_state(
        honest.random_bytes, height=chain.number, block_hash=chain.head_hash
    )
    transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
    out = feed(honest, chain.next([chain.command(token.contract_id, transfer)]))
    assert [r.status for r in out.receipts] == ["applied"]
    return chain, honest, token, sealed, old_height


def test_the_honest_answer_about_the_accepted_state_passes() -> None:
    chain, honest, token, _sealed, _old = world()
    answer = answer_of(honest, token, ALICE_PUB, ALICE)
    assert answer.result == 60
    check_answer_accepted(answer, accepted_of(honest, token, chain), chain.number, 64)


def test_a_rolled_back_worker_s_stale_answer_is_refused() -> None:
    chain, honest, token, sealed, old = world()
    stale = resumed(sealed, token, chain, old, index=1)
    answer = answer_of(stale, token, ALICE_PUB, ALICE)
    assert answer.result == 100  # the balance before the transfer, correctly signed
    with pytest.raises(AnswerNotAccepted, match="not the root"):
        check_answer_accepted(answer, accepted_of(honest, token, chain), chain.number, 64)


def test_an_answer_from_a_fork_of_the_host_s_making_is_refused() -> None:
    """The host restarts its enclave from the older state and feeds it a fork where the
    transfer never happened and bob sends nothing: it answers bob's balance as 0 and
    alice's as 100, about blocks the real chain never had."""
    chain, honest, token, sealed, old = world()
    forked = resumed(sealed, token, chain, old, index=2)
    fake = chain.fork(old, salt=b"made up by the host")
    mint = token.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 1})
    feed(forked, fake.next([fake.command(token.contract_id, mint)]))
    feed(forked, fake.next())
    feed(forked, fake.next())
    answer = answer_of(forked, token, BOB_PUB, BOB)
    assert answer.result == 0 and answer.block_height >= chain.number
    with pytest.raises(AnswerNotAccepted):
        check_answer_accepted(answer, accepted_of(honest, token, chain), fake.number, 64)


def test_nothing_accepted_yet_and_a_lagging_worker_are_refused() -> None:
    chain, honest, token, _sealed, _old = world()
    answer = answer_of(honest, token, ALICE_PUB, ALICE)
    with pytest.raises(AnswerNotAccepted, match="no output"):
        check_answer_accepted(answer, None, chain.number, 64)
    accepted = accepted_of(honest, token, chain)
    with pytest.raises(StaleAnswer, match="behind the tip"):
        check_answer_accepted(answer, accepted, chain.number + 65, 64)
    check_answer_accepted(answer, accepted, chain.number + 64, 64)


def test_an_answer_from_the_future_or_from_before_the_accepted_output_is_refused() -> None:
    """A host that inflates its enclave's idea of the newest block (an anchor or resume
    height far ahead) gets answers about deadlines that have not passed; the root alone
    does not show it (the state did not change), the height does."""
    chain, honest, token, _sealed, _old = world()
    answer = answer_of(honest, token, ALICE_PUB, ALICE)
    accepted = accepted_of(honest, token, chain)
    with pytest.raises(StaleAnswer, match="ahead of the chain tip"):
        check_answer_accepted(replace(answer, block_height=10**9), accepted, chain.number, 64)
    with pytest.raises(AnswerNotAccepted, match="before the accepted output"):
        check_answer_accepted(
            replace(answer, block_height=accepted.end - 1), accepted, chain.number, 64
        )
