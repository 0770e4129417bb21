"""The StateAnchor contract's digest and storage layout: freshness anchors for sealed state.

Theory of operation: ``contracts/StateAnchor.vy`` keeps, per enclave signing key, the
newest ``(version, state_hash)`` of that enclave's state and accepts only the next
version, signed by the enclave over :func:`compute_anchor_digest`. The enclave reads its
own anchor back through ``eth_getProof`` of the slots :func:`get_anchor_slots` names
(checked against a header it verified), so neither its host nor a second copy of its
state can make it act on a state that is not the newest.
"""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode

from sealbridge.chain.abi import checksum
from sealbridge.chain.errors import ChainConfigError
from sealbridge.chain.proofs import slot_of
from sealbridge.core.ids import keccak

__all__ = [
    "ANCHOR_TAG",
    "ANCHORS_SLOT",
    "CONTRACT_NAME",
    "compute_anchor_digest",
    "get_anchor_slots",
]

CONTRACT_NAME = "StateAnchor"
ANCHOR_TAG = keccak(b"sealbridge/state-anchor/v1")
ANCHORS_SLOT = 0  # HashMap[address, Anchor]: version at +0, state_hash at +1


def compute_anchor_digest(
    *, contract: str, chain_id: int, version: int, state_hash: bytes
) -> bytes:
    """What the enclave signs to anchor ``version`` (the contract recomputes it)."""
    if len(state_hash) != 32 or version < 1:
        raise ChainConfigError("an anchor needs a 32-byte state hash and a version >= 1")
    return keccak(
        abi_encode(
            ["address", "uint256", "bytes32", "uint256", "bytes32"],
            [checksum(contract), chain_id, ANCHOR_TAG, version, state_hash],
        )
    )


def get_anchor_slots(signer: str) -> list[int]:
    """The storage slots of ``signer``'s anchor: its version, then its state hash."""
    base = slot_of(ANCHORS_SLOT, bytes.fromhex(checksum(signer)[2:]))
    return [base, base + 1]
