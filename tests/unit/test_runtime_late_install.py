"""Installs that would skip blocks, and restarts across a rotation (issue 14; found by
attacking the witness rule's sealed-state claims): a contract is installed only where
no block of its commands lies between its state and the enclave's view."""

from __future__ import annotations

import msgspec
import pytest

from sealbridge.runtime import errors
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder
from tests.unit.test_runtime_chainview import ALICE, BOB_PUB, EXECUTORS, Contract, feed
from tests.unit.test_runtime_install_facts import deployed_log, published_log
from tests.unit.test_runtime_rotation import rotation_world

replace = msgspec.structs.replace


def test_a_state_sealed_below_the_view_is_refused() -> None:
    """The host installs a state sealed at block 102 into an enclave already at 104:
    the mint at 103 would never reach it, and it would sign outputs over that root."""
    solo = [EXECUTORS[0].identity.identity_key]
    chain, token = ChainBuilder(), Contract(1, workers=solo)
    honest, victim = (WorkerRuntime(EXECUTORS[0]) for _ in range(2))
    for worker in (honest, victim):
        worker.configure_chain(chain.config())
    first = chain.next([deployed_log(token)], [published_log(token)])
    for worker in (honest, victim):
        feed(worker, first)
    honest.install_contract(token.install_request(honest))
    deployed = chain.next([chain.command(token.contract_id, token.deploy())])
    sealed = feed(honest, deployed).contracts[0].sealed_state
    feed(victim, deployed)
    mint = token.command(ALICE, "mint", {"to": BOB_PUB, "amount": 777})
    for block in (chain.next([chain.command(token.contract_id, mint)]), chain.next()):
        feed(honest, block)
        feed(victim, block)
    with pytest.raises(errors.InstallFactsUnverified, match="would be\\s+skipped"):
        victim.install_contract(replace(token.install_request(victim), sealed_state=sealed))
    # and a fresh install long after the block that published the key
    with pytest.raises(errors.InstallFactsMismatch, match="starts empty only right after"):
        victim.install_contract(token.install_request(victim))
    assert victim.contracts == {}


def test_a_contract_resumed_past_a_rotation_block_does_not_stall_the_worker() -> None:
    """A state sealed under key version 1 at the rotation block, installed into an
    enclave anchored before it: the rotation event comes, but the contract is past it."""
    chain, (worker,), token = rotation_world()
    worker.stage_contract_key(token.stage(worker, 1))
    sealed = feed(worker, chain.next([token.rotated(1)])).contracts[0].sealed_state
    restarted = WorkerRuntime(EXECUTORS[3])
    restarted.configure_chain(chain.config())
    restarted.install_contract(token.install_request(restarted, 1, sealed_state=sealed))
    assert token.contract_id in restarted.claims
    for number in range(chain.anchor_number + 1, chain.number + 1):
        feed(restarted, chain.blocks[number])
    assert restarted.claims == {} and restarted.diverged == {}
    assert restarted.get_contract(token.contract_id).key_version == 1
    assert restarted.get_contract(token.contract_id).state_root == (
        worker.get_contract(token.contract_id).state_root
    )
