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

import msgspec
import pytest

from sealbridge.contracts.catalog import get_source
from sealbridge.core.encoding import encode
from sealbridge.crypto import ecies
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime import errors
from sealbridge.runtime.envelope import make_query, open_answer
from sealbridge.runtime.messages import (
    BlockWitness,
    MessageBody,
    SignedMessage,
    Witnesses,
    WitnessRequest,
    command_aad,
)
from sealbridge.runtime.witness import WITNESS_WINDOW, required_witnesses
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder, as_input, registry_state
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


MALLORY, MALLORY_PUB = ed25519_keypair(b"m" * 32)


def poison_for(contract: Contract) -> bytes:
    """A ciphertext anyone can make (the command key is public): a message from a source
    no directory knows, which refuses (rolls back) the whole block."""
    body = encode(
        MessageBody(source=b"\xee" * 32, target=contract.contract_id, seq=1, method="x", args={})
    )
    signed = SignedMessage(body=body, signature=b"\x00" * 64)
    return ecies.encrypt_to(
        contract.keys.command_public_key,
        encode(signed),
        command_aad(contract.contract_id),
        ephemeral_seed=b"\x01" * 32,
    )


def ask_as(
    worker: WorkerRuntime,
    contract: Contract,
    method: str,
    args: dict[str, Any],
    caller: bytes,
    witnesses: list[BlockWitness],
) -> Any:
    signed, reply = make_query(
        contract_id=contract.contract_id,
        caller_private_key=caller,
        method=method,
        args=args,
        issued_at=0,
    )
    return open_answer(signed, reply, worker.answer_query(signed, 0, witnesses))[0]


def test_a_rolled_back_fork_block_leaves_no_command_result() -> None:
    """Found by attacking the rule: the fork's close() ran, then a poison message rolled
    the whole block back -- but the close's result stayed kept for ``command_result``,
    which the real chain's witnesses then covered (the contract's height had not moved)."""
    chain, workers, _token, auction = auction_world()
    victim, honest = workers[0], workers[1:]
    fork = chain.fork(chain.number, salt=b"host-made")
    for _ in range(chain.number + 1, CLOSE_BLOCK):
        victim.process_block(as_input(fork.next()))
    close = fork.build(
        [fork.command(auction.contract_id, auction.command(MALLORY, "close", {}))],
        [fork.command(auction.contract_id, poison_for(auction))],
    )
    with pytest.raises(errors.DirectoryIncomplete):
        victim.process_block(as_input(close))
    real = witnesses_of(honest, chain.number)
    with pytest.raises(errors.QueryRefused, match="no result kept"):
        ask_as(victim, auction, "command_result", {"nonce": 1}, MALLORY, real)
    assert ask_as(victim, auction, "next_nonce", {}, MALLORY, real).result == 1


def test_a_fork_state_cannot_be_moved_onto_the_real_chain() -> None:
    """Found by attacking the rule: the fork-fed enclave's sealed states come out at once;
    the host installed them into an enclave that follows the real chain, whose peers'
    witnesses cover the height. Now a sealed state names its block (height and hash)
    and installs only where that block is on the enclave's verified chain."""
    chain, workers, token, auction = auction_world()
    victim, honest = workers[0], workers[1:]
    fork = chain.fork(chain.number, salt=b"host-made")
    for _ in range(chain.number + 1, CLOSE_BLOCK):
        victim.process_block(as_input(fork.next()))
    close = fork.next([fork.command(auction.contract_id, auction.command(MALLORY, "close", {}))])
    sealed = {
        c.contract_id: c.sealed_state for c in victim.process_block(as_input(close)).contracts
    }
    for _ in range(chain.number + 1, CLOSE_BLOCK + 1):  # the real chain reaches block 400
        block = chain.next()
        for worker in honest:
            worker.process_block(as_input(block))
    # restarted at the real block 400: the state names fork block 400
    at_head = WorkerRuntime(EXECUTORS[0])
    at_head.configure_chain(
        msgspec.structs.replace(
            chain.config(), anchor_number=chain.number, anchor_hash=chain.head_hash
        )
    )
    request = msgspec.structs.replace(
        auction.install_request(at_head), sealed_state=sealed[auction.contract_id]
    )
    with pytest.raises(errors.InstallFactsMismatch, match="another chain"):
        at_head.install_contract(request)
    # anchored below it: the claim is checked when the real block 400 comes -- cut off
    below = executor(0, token, chain=chain)  # follows the real chain from the anchor
    request = msgspec.structs.replace(
        auction.install_request(below), sealed_state=sealed[auction.contract_id]
    )
    below.install_contract(request)
    with pytest.raises(errors.InstallFactsMismatch, match="installed already"):
        below.install_contract(request)
    for number in range(chain.anchor_number + 1, chain.number + 1):
        below.process_block(as_input(chain.blocks[number]))
    assert "another chain" in below.diverged[auction.contract_id]
    with pytest.raises(errors.QueryRefused, match="diverged"):
        query(below, auction, "outcome", witnesses_of(honest, chain.number))
    # a state sealed before the anchor (blocks in between never seen) is refused too
    late = WorkerRuntime(EXECUTORS[1])
    late.configure_chain(
        msgspec.structs.replace(
            chain.config(), anchor_number=chain.number, anchor_hash=chain.head_hash
        )
    )
    old = (
        honest[0]
        .get_contract(token.contract_id)
        .seal_state(
            honest[0].random_bytes,
            height=chain.anchor_number + 1,
            block_hash=chain.hashes[chain.anchor_number + 1],
        )
    )
    with pytest.raises(errors.InstallFactsUnverified, match="anchor at or below"):
        late.install_contract(
            msgspec.structs.replace(token.install_request(late), sealed_state=old)
        )


def test_junk_is_not_held_and_held_receipts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking the rule: 65,536 junk ciphertexts to a contract whose peers do not
    vouch filled the backlog and stopped the worker for every contract. Refusals are not
    held (they say no more than the ciphertext), and past the bound the oldest held
    receipts are dropped rather than blocks refused."""
    from sealbridge.runtime import witness

    chain, workers, token, _auction = auction_world()
    monkeypatch.setattr(witness, "MAX_HELD_RECEIPTS", 3)
    me = workers[0]
    junk = [[chain.command(token.contract_id, bytes([i]) * 200)] for i in range(20)]
    out = me.process_block(as_input(chain.next(*junk)))
    assert {r.status for r in out.receipts} == {"wrong_key"} and out.held == 0
    for amount in range(1, 6):  # five applied transfers, none vouched for
        transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": amount})
        out = me.process_block(as_input(chain.next([chain.command(token.contract_id, transfer)])))
    assert out.held == 3 and me.gate.dropped_receipts == 2
    released = me.release_outputs(Witnesses(witnesses=peer_witnesses(me)))
    assert [b.number for b in released.blocks] == [chain.number - 2, chain.number - 1, chain.number]


def test_too_many_held_messages_refuse_the_block_and_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sealbridge.runtime import witness

    chain, workers, token, _auction = auction_world()
    me = workers[0]
    monkeypatch.setattr(witness, "MAX_HELD_ITEMS", 0)
    before = me.view.number if me.view else 0
    with pytest.raises(errors.ReleaseBacklogFull):
        me.process_block(as_input(chain.next()))
    assert me.view is not None and me.view.number == before


def test_a_message_from_a_source_proven_keyless_is_refused_alone() -> None:
    """Found by attacking the rule: anyone can post a 'message' from a source no directory
    knows; the block was refused whole, on every worker, again and again (all contracts
    stalled). Now the host proves the source's ContractRegistry record at the block: no
    key published, so the message alone is refused."""
    chain, workers, token, auction = auction_world()
    me = workers[0]
    root, prove = registry_state({})
    transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 5})
    block = chain.next_with_state(
        root,
        [chain.command(auction.contract_id, poison_for(auction))],
        [chain.command(token.contract_id, transfer)],
    )
    with pytest.raises(errors.DirectoryIncomplete):
        me.process_block(as_input(block))
    source = b"\xee" * 32
    from sealbridge.chain.proofs import ProofInvalid
    from tests.unit.chain_builder import STRANGER

    for bad in (prove([source], address=STRANGER), prove([])):
        with pytest.raises((ProofInvalid, errors.DirectoryIncomplete)):
            me.process_block(as_input(block, key_proof=bad, key_proof_ids=[source]))
    out = me.process_block(as_input(block, key_proof=prove([source]), key_proof_ids=[source]))
    assert [r.status for r in out.receipts] == ["unknown_source"]  # the transfer is held
    assert out.held == 1 and me.view is not None and me.view.number == chain.number


def test_a_message_naming_a_malformed_source_is_refused_alone() -> None:
    """Found by attacking the key proofs: a message from a 33-byte 'source' refused the
    block, and no proof could ever answer for such an id: every contract stopped."""
    chain, workers, token, auction = auction_world()
    me = workers[0]
    body = encode(
        MessageBody(source=b"\xee" * 33, target=auction.contract_id, seq=1, method="x", args={})
    )
    poison = ecies.encrypt_to(
        auction.keys.command_public_key,
        encode(SignedMessage(body=body, signature=b"\x00" * 64)),
        command_aad(auction.contract_id),
        ephemeral_seed=b"\x02" * 32,
    )
    out = me.process_block(as_input(chain.next([chain.command(auction.contract_id, poison)])))
    assert [r.status for r in out.receipts] == ["malformed_command"]
