"""State proofs: read an account and its storage from a verified header's state root.

Theory of operation
-------------------
An enclave that must know a contract's storage (is this worker assigned? which key
version is current?) cannot take its host's word for it. ``eth_getProof`` answers with
Merkle-Patricia proofs instead: the account's path in the state trie (key
``keccak(address)``, value ``rlp([nonce, balance, storage_root, code_hash])``) and, for
each storage slot, its path in the account's storage trie (key ``keccak(slot)``, value
``rlp(value)`` with leading zero bytes stripped). :func:`verify_account` and
:func:`verify_slots` check these against a state root the caller has verified (the
``state_root`` field of a header whose hash its light client accepted) with the
``trie`` package's proof walker, and return the values -- a missing account or slot is
proven absent (zero), never assumed.

A proof is only as good as its root: on a chain without consensus proofs (anvil), a host
that fabricates headers can fabricate state. Which header a fact may be read from is the
caller's policy.

Vyper's storage layout (``slot_of``): a ``HashMap`` entry for key ``k`` of the map at
slot ``p`` lives at ``keccak256(p ++ k)`` (32-byte big-endian each), nested maps apply
this once per key, and a struct's members follow its first slot in declaration order,
each taking as many slots as its type (a ``DynArray[T, N]`` takes ``1 + N``: its length,
then its elements).

Errors: :class:`ProofInvalid` (remote: the proof does not verify, or is malformed).
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp
from trie.hexary import HexaryTrie

from sealbridge.core.encoding import Message
from sealbridge.core.errors import RemoteProtocolError
from sealbridge.core.ids import keccak

EMPTY_STORAGE_ROOT: bytes = bytes(HexaryTrie.BLANK_NODE_HASH)
EMPTY_CODE_HASH = keccak(b"")
MAX_PROOF_NODES = 64  # a path in a 32-byte-key trie is at most 65 nodes deep
MAX_NODE_SIZE = 1 << 12  # a branch node is 17 items of at most 33 bytes
MAX_SLOTS = 256  # slots one account proof may cover


class ProofInvalid(RemoteProtocolError):
    code = "proof_invalid"


class AccountState(Message, frozen=True):
    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes


class SlotProof(Message, frozen=True):
    key: bytes  # the slot number, 32 bytes big-endian (a 256-bit number)
    proof: list[bytes]  # rlp-encoded trie nodes, root first (eth_getProof's storageProof)

    @property
    def slot(self) -> int:
        return int.from_bytes(self.key, "big")


def slot_key(slot: int) -> bytes:
    """A slot number as :attr:`SlotProof.key`."""
    return slot.to_bytes(32, "big")


class AccountProof(Message, frozen=True):
    address: bytes  # 20 bytes
    proof: list[bytes]  # rlp-encoded trie nodes, root first (eth_getProof's accountProof)
    slots: list[SlotProof] = []


def _walk(root: bytes, key: bytes, proof: Sequence[bytes], what: str) -> bytes:
    if len(proof) > MAX_PROOF_NODES:
        raise ProofInvalid(f"{what} proof has {len(proof)} nodes (at most {MAX_PROOF_NODES})")
    nodes = []
    for raw in proof:
        if not isinstance(raw, bytes) or len(raw) > MAX_NODE_SIZE:
            raise ProofInvalid(f"{what} proof holds a malformed node")
        try:
            nodes.append(rlp.decode(raw))
        except RecursionError as exc:  # a node of deeply nested lists
            raise ProofInvalid(f"{what} proof holds a node nested too deeply") from exc
        except rlp.exceptions.RLPException as exc:
            raise ProofInvalid(f"{what} proof holds a node that is not RLP: {exc}") from exc
    try:
        value = HexaryTrie.get_from_proof(root, key, nodes)  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 -- the trie walker raises many kinds on junk
        raise ProofInvalid(f"{what} proof does not verify against the root: {exc}") from exc
    if not isinstance(value, bytes):
        raise ProofInvalid(f"{what} proof leads to a value that is not bytes")
    return value


def verify_account(state_root: bytes, proof: AccountProof) -> AccountState:
    """The account at ``proof.address`` under ``state_root`` (an absent account reads as
    empty); ProofInvalid if the proof does not verify."""
    if len(proof.address) != 20 or len(state_root) != 32:
        raise ProofInvalid("an account proof needs a 20-byte address and a 32-byte root")
    value = _walk(state_root, keccak(proof.address), proof.proof, "account")
    if not value:
        return AccountState(
            nonce=0, balance=0, storage_root=EMPTY_STORAGE_ROOT, code_hash=EMPTY_CODE_HASH
        )
    try:
        fields = rlp.decode(value)
    except rlp.exceptions.RLPException as exc:
        raise ProofInvalid(f"the account is not RLP: {exc}") from exc
    if (
        not isinstance(fields, list)
        or len(fields) != 4
        or not all(isinstance(f, bytes) for f in fields)
    ):
        raise ProofInvalid("the account is not [nonce, balance, storage_root, code_hash]")
    nonce, balance, storage_root, code_hash = (bytes(f) for f in fields)
    if len(storage_root) != 32 or len(code_hash) != 32:
        raise ProofInvalid("the account's storage root or code hash is not 32 bytes")
    return AccountState(
        nonce=int.from_bytes(nonce, "big"),
        balance=int.from_bytes(balance, "big"),
        storage_root=storage_root,
        code_hash=code_hash,
    )


def verify_slots(state_root: bytes, proof: AccountProof) -> dict[int, int]:
    """The values of the proven slots of the account (absent slots read as 0)."""
    account = verify_account(state_root, proof)
    if len(proof.slots) > MAX_SLOTS:
        raise ProofInvalid(f"a proof may cover at most {MAX_SLOTS} slots")
    values: dict[int, int] = {}
    for slot in proof.slots:
        if len(slot.key) != 32:
            raise ProofInvalid("a storage slot must be a 256-bit number (32 bytes)")
        key = keccak(slot.key)
        raw = _walk(account.storage_root, key, slot.proof, "storage")
        if not raw:
            values[slot.slot] = 0
            continue
        try:
            decoded = rlp.decode(raw)
        except rlp.exceptions.RLPException as exc:
            raise ProofInvalid(f"slot {slot.slot:#x} is not RLP: {exc}") from exc
        if not isinstance(decoded, bytes) or len(decoded) > 32 or decoded[:1] == b"\x00":
            raise ProofInvalid(f"slot {slot.slot:#x} is not a canonical 256-bit value")
        values[slot.slot] = int.from_bytes(decoded, "big")
    return values


def slot_of(base: int, *keys: bytes | int) -> int:
    """The slot of ``map[keys[0]][keys[1]]...`` for a Vyper HashMap at slot ``base``
    (keys as 32-byte values: bytes32 as is, integers and addresses left-padded)."""
    slot = base
    for key in keys:
        raw = key.to_bytes(32, "big") if isinstance(key, int) else bytes(key).rjust(32, b"\0")
        if len(raw) != 32:
            raise ValueError("a HashMap key is at most 32 bytes")
        slot = int.from_bytes(keccak(slot.to_bytes(32, "big") + raw), "big")
    return slot
