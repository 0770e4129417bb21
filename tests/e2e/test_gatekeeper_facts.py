"""The gatekeeper enclave reads a key request's chain facts from state proofs (issue 14,
item 2), checked on the devnet's real chain: the facts read from ``eth_getProof`` at a
verified header equal what the management contracts' view functions say, for every
field and for entitled and unentitled requesters; tampered proofs, proofs for other
accounts or at headers the enclave never verified are refused."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sealbridge.chain.abi import Role, canonical_address
from sealbridge.chain.proofs import ProofInvalid
from sealbridge.client.api import Client
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.committee import GatekeeperCommittee
from sealbridge.keyservice.chainfacts import (
    FactsProof,
    HeadersRefused,
    HeaderTip,
    HeaderTrack,
    ManagementBinding,
    get_fact_slots,
    read_chain_facts,
)
from sealbridge.keyservice.messages import ChainFacts
from sealbridge.keyservice.threshold_messages import compute_install_binding
from sealbridge.tee.enclave import NodeKeys
from tests.unit.test_runtime_interop import PONGER

pytestmark = pytest.mark.e2e
replace = msgspec.structs.replace


def read_facts(*args: Any, keys: NodeKeys | None = None, **kw: Any) -> Any:
    """``read_chain_facts`` by the enclave clock of now (the devnet's blocks are recent),
    for a request whose quote binds ``keys`` (default: keys no registry names)."""
    if keys is None:
        keys = NodeKeys(identity_key=args[4], encryption_key=bytes(32), eth_address=bytes(20))
    return read_chain_facts(*args, requester_keys=keys, now=int(time.time()), **kw)


def registered_keys(client: Client, requester: bytes) -> NodeKeys:
    """The node keys the NodeRegistry names for ``requester`` (none: made-up ones)."""
    record = client.mgmt.node_registry.get_node(requester)
    if record is None:
        return NodeKeys(identity_key=requester, encryption_key=bytes(32), eth_address=bytes(20))
    return NodeKeys(
        identity_key=requester,
        encryption_key=record.encryption_key,
        eth_address=from_hex(record.enclave_address, size=20),
    )


@dataclass
class Reader:
    chain: ChainAdapter
    binding: ManagementBinding
    addresses: dict[str, str]
    committee: GatekeeperCommittee


def reader(client: Client) -> Reader:
    a = client.addresses
    committee_address = client.state.committee_address
    binding = ManagementBinding(
        node_registry=canonical_address(a.node_registry),
        contract_registry=canonical_address(a.contract_registry),
        execution_ledger=canonical_address(a.execution_ledger),
        committee=canonical_address(committee_address),
    )
    addresses = {
        "node_registry": a.node_registry,
        "contract_registry": a.contract_registry,
        "execution_ledger": a.execution_ledger,
        "committee": committee_address,
    }
    return Reader(
        client.chain, binding, addresses, GatekeeperCommittee(client.chain, committee_address)
    )


def proof_at(r: Reader, contract_id: bytes, requester: bytes, number: int) -> FactsProof:
    slots = get_fact_slots(contract_id, requester)
    return FactsProof(
        number=number,
        **{
            name: r.chain.get_proof(address, slots[name], number)
            for name, address in r.addresses.items()
        },
    )


def track_at(r: Reader, number: int) -> HeaderTrack:
    parent = r.chain.get_block(number - 1)
    track = HeaderTrack(HeaderTip(number=parent.number, block_hash=parent.hash))
    track.advance(r.chain.get_header_fields([number]))
    return track


def consistent_at(r: Reader, contract_id: bytes, requester: bytes) -> tuple[HeaderTrack, Any]:
    """A header and a proof of the newest block that verify together. While the chain
    moves, anvil now and then answers ``eth_getProof`` of a block with nodes of a later
    state; the gatekeeper's host then reads again (at most three times), and so does this
    baseline read of an honest proof."""
    for attempt in range(3):
        number = r.chain.get_block_number()
        track, proof = track_at(r, number), proof_at(r, contract_id, requester, number)
        try:
            read_facts(r.binding, track, proof, contract_id, requester)
        except ProofInvalid:
            if attempt == 2:
                raise
            continue
        return track, proof
    raise AssertionError("unreachable")


def view_facts(client: Client, contract_id: bytes, requester: bytes) -> ChainFacts:
    """The facts as the host used to read them (view functions at the latest block)."""
    mgmt = client.mgmt
    record = mgmt.contract_registry.get_contract(contract_id)
    registry = mgmt.node_registry
    previous_open = False
    if record is not None and record.key_version > 0:
        checkpoint = mgmt.execution_ledger.get_checkpoint(contract_id)
        previous_open = checkpoint is None or checkpoint.height < record.rotated_at
    return ChainFacts(
        worker_active=registry.is_active(requester, Role.WORKER),
        worker_assigned=mgmt.contract_registry.is_assigned(contract_id, requester),
        key_published=record is not None and record.key_published,
        requester_is_publisher=(
            record is not None
            and record.gatekeeper_id == requester
            and registry.is_active(requester, Role.GATEKEEPER)
        ),
        key_version=record.key_version if record is not None else 0,
        rotation_pending=record is not None and record.rotation_pending,
        requester_keys_retired=False,
        previous_version_open=previous_open,
        install_binding=(
            compute_install_binding(record.code_hash, record.deployer_commitment, record.workers)
            if record is not None
            else b""
        ),
    )


def test_facts_from_proofs_equal_the_view_functions(client: Client, tmp_path: Path) -> None:
    (tmp_path / "ponger.py").write_bytes(PONGER)
    deployment = client.deploy(str(tmp_path / "ponger.py"), as_user="alice")
    cid = deployment.contract_id
    client.rotate_key(to_hex(cid), as_user="alice")  # and a checkpoint under it
    client.chain.mine(1)
    r = reader(client)
    worker = from_hex(client.state.workers[0].node_id, size=32)
    gatekeeper = client.mgmt.contract_registry.get_contract(cid)
    assert gatekeeper is not None
    cases = [
        (cid, worker),  # an assigned, active worker
        (cid, gatekeeper.gatekeeper_id),  # the publishing gatekeeper
        (cid, os.urandom(32)),  # nobody
        (os.urandom(32), worker),  # no such contract
    ]
    number = client.chain.get_block_number()
    track = track_at(r, number)
    for contract_id, requester in cases:
        proof = proof_at(r, contract_id, requester, number)
        keys = registered_keys(client, requester)
        got = read_facts(r.binding, track, proof, contract_id, requester, keys=keys)
        assert got.facts == view_facts(client, contract_id, requester)
        assert got.committee_era == r.committee.get_current_era()
    proof = proof_at(r, cid, worker, number)
    keys = registered_keys(client, worker)
    facts = read_facts(r.binding, track, proof, cid, worker, keys=keys).facts
    assert facts.worker_active and facts.worker_assigned and facts.key_published
    assert facts.key_version >= 1  # the rotation happened
    assert not facts.requester_keys_retired
    # a request whose quote binds other keys of the same node (a renewal retired them,
    # and its host restored the old sealed identity): the proofs say so
    for retired in (
        replace(keys, encryption_key=os.urandom(32)),
        replace(keys, eth_address=os.urandom(20)),
    ):
        other = read_facts(r.binding, track, proof, cid, worker, keys=retired).facts
        assert other.requester_keys_retired
        assert other == replace(facts, requester_keys_retired=True)


def test_forged_or_misplaced_proofs_are_refused(client: Client) -> None:
    r = reader(client)
    worker = from_hex(client.state.workers[0].node_id, size=32)
    cid = os.urandom(32)
    track, good = consistent_at(r, cid, worker)  # an honest proof that verifies
    number = good.number
    # the proof of another account, for the node registry
    with pytest.raises(ProofInvalid, match="another address"):
        read_facts(
            r.binding, track, replace(good, node_registry=good.contract_registry), cid, worker
        )
    # a slot left out
    short = replace(good.contract_registry, slots=good.contract_registry.slots[:-1])
    with pytest.raises(ProofInvalid, match="leaves out"):
        read_facts(r.binding, track, replace(good, contract_registry=short), cid, worker)
    # a tampered node
    bad = replace(good.node_registry, proof=[good.node_registry.proof[0][:-1] + b"\x00"])
    with pytest.raises(ProofInvalid):
        read_facts(r.binding, track, replace(good, node_registry=bad), cid, worker)
    # the facts of another requester or contract than the proof's slots
    with pytest.raises(ProofInvalid, match="leaves out"):
        read_facts(r.binding, track, good, cid, os.urandom(32))
    # a header the enclave never verified
    with pytest.raises(ProofInvalid, match="not among"):
        read_facts(r.binding, track, replace(good, number=number - 1), cid, worker)
    # headers that do not link
    with pytest.raises(HeadersRefused):
        track.advance(r.chain.get_header_fields([number]))
    fork = replace(r.chain.get_header_fields([number - 5])[0], number=number + 1)
    with pytest.raises(HeadersRefused):
        track.advance([fork])
    assert track.tip.number == number
    # facts read at a header older than the enclave's bound are refused
    stamp = track.get(number).timestamp
    with pytest.raises(ProofInvalid, match="old by this enclave's clock"):
        read_chain_facts(
            r.binding,
            track,
            good,
            cid,
            worker,
            requester_keys=registered_keys(client, worker),
            now=stamp + 3601,
            max_age=3600,
        )
