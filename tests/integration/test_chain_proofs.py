"""State proofs (``chain/proofs.py``) checked against a real anvil node's eth_getProof.

A small Vyper contract keeps a value, a map and a map of maps; the proofs anvil gives for
its slots verify against the state root of the block's header (whose hash is the RPC's
block hash), Vyper's map slots are where ``slot_of`` says, absent slots are proven zero,
and a tampered proof, a proof against another root or for another address is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from sealbridge.chain.abi import AbiCodec
from sealbridge.chain.lightclient import compute_header_hash
from sealbridge.chain.proofs import (
    EMPTY_STORAGE_ROOT,
    AccountProof,
    ProofInvalid,
    SlotProof,
    slot_key,
    slot_of,
    verify_account,
    verify_slots,
)
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.compiler import compile_source

replace = msgspec.structs.replace

SOURCE = """
# pragma version ~=0.4.0
value: public(uint256)
flags: public(HashMap[bytes32, bool])
nested: public(HashMap[bytes32, HashMap[bytes32, uint256]])

@external
def set(a: bytes32, b: bytes32, n: uint256):
    self.value = n
    self.flags[a] = True
    self.nested[a][b] = n
"""
A, B = b"\xaa" * 32, b"\xbb" * 32


@dataclass
class World:
    adapter: ChainAdapter
    address: str
    block: int
    state_root: bytes


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    node = AnvilNode()
    node.start()
    try:
        a = node.adapter()
        compiled = compile_source("ProofSubject", SOURCE)
        codec = AbiCodec(compiled.abi)
        address = a.deploy(a.dev_keys[0], compiled.bytecode)
        receipt = a.transact(
            a.dev_keys[0], to=address, data=codec.function("set").encode_call([A, B, 12345])
        )
        evidence = a.get_block_evidence([receipt.block_number])[0]
        header = evidence.header
        assert compute_header_hash(header) == a.get_block(receipt.block_number).hash
        yield World(a, address, receipt.block_number, header.state_root)
    finally:
        node.stop()


def get_proof(world: World, slots: list[int], address: str | None = None) -> AccountProof:
    keys = ["0x" + s.to_bytes(32, "big").hex() for s in slots]
    raw: Any = world.adapter.web3.eth.get_proof(address or world.address, keys, world.block)
    return AccountProof(
        address=bytes.fromhex((address or world.address)[2:]),
        proof=[bytes(n) for n in raw["accountProof"]],
        slots=[
            SlotProof(key=slot_key(slot), proof=[bytes(n) for n in p["proof"]])
            for slot, p in zip(slots, raw["storageProof"], strict=True)
        ],
    )


def test_slots_and_vyper_map_positions_verify(world: World) -> None:
    slots = [0, slot_of(1, A), slot_of(2, A, B), slot_of(1, B), 7]
    values = verify_slots(world.state_root, get_proof(world, slots))
    assert values == {0: 12345, slot_of(1, A): 1, slot_of(2, A, B): 12345, slot_of(1, B): 0, 7: 0}
    account = verify_account(world.state_root, get_proof(world, []))
    assert account.storage_root != EMPTY_STORAGE_ROOT and account.nonce == 1


def test_an_absent_account_is_proven_empty(world: World) -> None:
    nobody = "0x" + "12" * 20
    account = verify_account(world.state_root, get_proof(world, [], address=nobody))
    assert account.storage_root == EMPTY_STORAGE_ROOT and account.balance == 0


def test_forged_proofs_are_refused(world: World) -> None:
    good = get_proof(world, [0])
    verify_slots(world.state_root, good)
    with pytest.raises(ProofInvalid):  # another root
        verify_slots(bytes(32), good)
    with pytest.raises(ProofInvalid):  # the proof of another address
        verify_slots(world.state_root, replace(good, address=b"\x12" * 20))
    node = bytearray(good.proof[-1])
    node[-1] ^= 1
    with pytest.raises(ProofInvalid):  # a tampered account node
        verify_slots(world.state_root, replace(good, proof=[*good.proof[:-1], bytes(node)]))
    slot = good.slots[0]
    leaf = bytearray(slot.proof[-1])
    leaf[-1] ^= 1
    with pytest.raises(ProofInvalid):  # a tampered storage leaf (another value)
        verify_slots(
            world.state_root,
            replace(good, slots=[replace(slot, proof=[*slot.proof[:-1], bytes(leaf)])]),
        )
    with pytest.raises(ProofInvalid):  # a slot claimed absent by dropping its proof
        verify_slots(world.state_root, replace(good, slots=[replace(slot, proof=[])]))
    with pytest.raises(ProofInvalid):  # garbage
        verify_slots(world.state_root, replace(good, proof=[b"\xff" * 5000]))
    with pytest.raises(ProofInvalid):  # a slot key that is not 32 bytes
        verify_slots(world.state_root, replace(good, slots=[replace(slot, key=slot.key[1:])]))


def test_the_adapter_fetches_the_same_proofs(world: World) -> None:
    slots = [0, slot_of(1, A)]
    fetched = world.adapter.get_proof(world.address, slots, world.block)
    assert verify_slots(world.state_root, fetched) == verify_slots(
        world.state_root, get_proof(world, slots)
    )


def test_junk_proofs_are_refused_with_a_typed_error(world: World) -> None:
    """Found by attacking the proofs: malformed trie nodes made the trie walker raise its
    own errors, which escaped the ECALLs untyped."""
    import random

    import rlp

    good = get_proof(world, [0])
    rng = random.Random(7)
    junk_nodes = [
        rlp.encode([]),
        rlp.encode([b""] * 3),
        rlp.encode([[b"\x01"], b"\x02"]),
        rlp.encode([b"\x20" + b"\x00" * 31, [b"\x01", b"\x02"]]),
        *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(200)),
    ]
    for node in junk_nodes:
        for proof in ([node], [*good.proof[:-1], node]):
            with pytest.raises(ProofInvalid):
                verify_slots(world.state_root, replace(good, proof=proof))
        # an extra node the path does not reach is refused or changes nothing
        try:
            extra = verify_slots(world.state_root, replace(good, proof=[node, *good.proof]))
        except ProofInvalid:
            continue
        assert extra == verify_slots(world.state_root, good)
