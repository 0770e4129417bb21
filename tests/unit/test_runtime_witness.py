"""The witness rule (issue 14, item 4): an enclave fed a fork releases nothing from it.

The attack, as reproduced against the old code: bob bids 537 in a sealed-bid auction;
worker-1's host restarts its enclave from the sealed states of that moment and feeds it
blocks of its own hanging off the real chain -- empty blocks up to the closing block,
then an early ``close()`` -- and asks for ``outcome``. The enclave answered with bob's
price. Now nothing comes out: the close's receipt stays held, and the query is refused,
even with the honest peers' witnesses of the real chain (their hashes are not the
fork's). The same blocks on the real chain, vouched for by a majority of the executors,
release everything.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealbridge.contracts.catalog import get_source
from sealbridge.core.encoding import encode
from sealbridge.runtime import errors
from sealbridge.runtime.envelope import make_query, open_answer
from sealbridge.runtime.messages import BlockWitness, Witnesses, WitnessRequest
from sealbridge.runtime.witness import WITNESS_WINDOW, required_witnesses
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder, as_input
from tests.unit.test_runtime_chainview import (
    ALICE,
    ALICE_PUB,
    BOB,
    BOB_PUB,
    EXECUTORS,
    Contract,
)
from tests.unit.witnesses import peer_witnesses, sign_witness

AUCTION = get_source("auction")
CLOSE_BLOCK = 400


def executor(index: int, *contracts: Contract, chain: ChainBuilder) -> WorkerRuntime:
    worker = WorkerRuntime(EXECUTORS[index])
    for contract in contracts:
        worker.install_contract(contract.install_request(worker))
    worker.configure_chain(chain.config())
    return worker


def auction_world(
    *, vouch: bool = True
) -> tuple[ChainBuilder, list[WorkerRuntime], Contract, Contract]:
    """Four executors; a token and alice's sealed-bid auction, where bob bid 537 (and,
    with ``vouch``, every executor has its peers' witnesses of these blocks)."""
    chain, token, auction = ChainBuilder(), Contract(1), Contract(2, code=AUCTION)
    workers = [executor(i, token, auction, chain=chain) for i in range(4)]

    def tx(contract: Contract, sender: bytes, method: str, **args: Any) -> Any:
        return [chain.command(contract.contract_id, contract.command(sender, method, args))]

    blocks = [
        chain.next(
            [chain.command(token.contract_id, token.deploy())],
            tx(token, ALICE, "mint", to=ALICE_PUB, amount=1_000),
            tx(token, ALICE, "mint", to=BOB_PUB, amount=1_000),
        ),
        chain.next(
            [
                chain.command(
                    auction.contract_id,
                    auction.deploy(
                        {"token": token.contract_id, "item": "a vase", "close_block": CLOSE_BLOCK}
                    ),
                )
            ],
            tx(token, BOB, "approve", spender=auction.contract_id, amount=1_000),
        ),
        chain.next(tx(auction, BOB, "bid", amount=537)),
    ]
    for block in blocks:
        for worker in workers:
            worker.process_block(as_input(block))
    for worker in workers if vouch else []:  # honest peers vouch for the real chain
        assert worker.release_outputs(Witnesses(witnesses=peer_witnesses(worker))).held == 0
    return chain, workers, token, auction


def query(
    worker: WorkerRuntime, contract: Contract, method: str, witnesses: list[BlockWitness]
) -> Any:
    signed, reply = make_query(
        contract_id=contract.contract_id,
        caller_private_key=ALICE,
        method=method,
        args={},
        issued_at=0,
    )
    answer, _ = open_answer(signed, reply, worker.answer_query(signed, 0, witnesses))
    return answer


def witnesses_of(workers: list[WorkerRuntime], height: int) -> list[BlockWitness]:
    return [w.witness_block(WitnessRequest(height=height)) for w in workers]


def test_a_fork_fed_enclave_releases_nothing_of_the_fork() -> None:
    chain, workers, _token, auction = auction_world()
    victim, honest = workers[0], workers[1:]
    fork = chain.fork(chain.number, salt=b"host-made")
    for _ in range(chain.number + 1, CLOSE_BLOCK):
        victim.process_block(as_input(fork.next()))
    close = fork.next([chain.command(auction.contract_id, auction.command(ALICE, "close", {}))])
    out = victim.process_block(as_input(close))
    assert out.receipts == [] and out.held == 1  # the close ran, its result is held
    assert victim.get_contract(auction.contract_id).height == close.header.number
    real = witnesses_of(honest, chain.number)
    with pytest.raises(errors.NotWitnessed):
        query(victim, auction, "outcome", real)
    released = victim.release_outputs(Witnesses(witnesses=real))
    assert released.blocks == [] and released.held == 1
    # a peer's witness of the real chain's block at the fork's heights is no help either
    for worker in honest:
        assert victim.gate.vouched.get(worker.identity_key, 0) <= chain.number


def test_the_real_chain_vouched_by_a_majority_releases_results_and_answers() -> None:
    chain, workers, _token, auction = auction_world()
    for _ in range(chain.number + 1, CLOSE_BLOCK):
        block = chain.next()
        for worker in workers:
            worker.process_block(as_input(block))
    close = chain.next([chain.command(auction.contract_id, auction.command(ALICE, "close", {}))])
    outs = [w.process_block(as_input(close)) for w in workers]
    assert all(o.receipts == [] and o.held == 1 for o in outs)
    me, others = workers[0], workers[1:]
    need = required_witnesses([w.identity_key for w in workers])
    assert need == 2
    # one peer is not a majority of four
    one = witnesses_of(others[:1], close_number := chain.number)
    assert me.release_outputs(Witnesses(witnesses=one)).blocks == []
    with pytest.raises(errors.NotWitnessed):
        query(me, auction, "outcome", one)
    two = witnesses_of(others[:2], close_number)
    released = me.release_outputs(Witnesses(witnesses=two))
    assert [r.status for b in released.blocks for r in b.receipts] == ["applied"]
    answer = query(me, auction, "outcome", [])
    assert answer.result["winner"] == BOB_PUB and answer.block_height == close_number


def test_forged_witnesses_are_ignored() -> None:
    chain, workers, _token, auction = auction_world(vouch=False)
    me = workers[0]
    height = chain.number
    block_hash = chain.head_hash
    config = chain.config()
    stranger = WorkerRuntime(EXECUTORS[0]).enclave  # same identity as `me`: its own word
    good = sign_witness(EXECUTORS[1], config, height, block_hash)
    forged = [
        # own witness does not count
        sign_witness(stranger, config, height, block_hash),
        # signed by another key than the one it names
        BlockWitness(
            worker=EXECUTORS[2].identity.identity_key, body=good.body, signature=good.signature
        ),
        # another chain id and another inbox
        sign_witness(
            EXECUTORS[2],
            chain.config().__class__(**{**_fields(config), "chain_id": 1}),
            height,
            block_hash,
        ),
        sign_witness(
            EXECUTORS[3],
            chain.config().__class__(**{**_fields(config), "command_inbox": b"\x01" * 20}),
            height,
            block_hash,
        ),
        # a hash this enclave never verified, and a height it never saw
        sign_witness(EXECUTORS[2], config, height, b"\x07" * 32),
        sign_witness(EXECUTORS[3], config, height + 5, block_hash),
        # not a witness body at all
        BlockWitness(
            worker=EXECUTORS[3].identity.identity_key, body=b"\xc1", signature=b"\x00" * 64
        ),
    ]
    assert me.release_outputs(Witnesses(witnesses=[good, *forged])).witnessed == 0
    assert set(me.gate.vouched) == {EXECUTORS[1].identity.identity_key}
    with pytest.raises(errors.NotWitnessed):
        query(me, auction, "status", [])
    # honest peers' witnesses (the real chain) then release
    assert me.release_outputs(Witnesses(witnesses=peer_witnesses(me))).witnessed == height


def _fields(config: Any) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__struct_fields__}


def test_witnessing_needs_a_verified_recent_block() -> None:
    chain, workers, _token, _auction = auction_world()
    me = workers[0]
    ahead = me.witness_block(WitnessRequest(height=chain.number + 50))
    assert ahead.worker == me.identity_key  # its newest block instead
    with pytest.raises(errors.WitnessUnavailable):
        me.witness_block(WitnessRequest(height=-1))
    for _ in range(WITNESS_WINDOW + 1):
        block = chain.next()
        me.process_block(as_input(block))
    with pytest.raises(errors.WitnessUnavailable):
        me.witness_block(WitnessRequest(height=chain.number - WITNESS_WINDOW - 1))
    with pytest.raises(errors.WitnessUnavailable):
        WorkerRuntime(EXECUTORS[1]).witness_block(WitnessRequest(height=1))
    assert encode(me.witness_block(WitnessRequest(height=chain.number)))


def test_a_single_executor_contract_needs_no_witness() -> None:
    chain = ChainBuilder()
    token = Contract(1, workers=[EXECUTORS[0].identity.identity_key])
    me = executor(0, token, chain=chain)
    out = me.process_block(as_input(chain.next([chain.command(token.contract_id, token.deploy())])))
    assert [r.status for r in out.receipts] == ["applied"] and out.held == 0
