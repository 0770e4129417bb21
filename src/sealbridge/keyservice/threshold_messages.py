"""Messages of threshold key release (gatekeepers holding shares of the PRF key).

* ``PartialKeyRelease``: gatekeeper ``index``'s partial signature of a contract's PRF
  message, ECIES-encrypted to the requesting worker's attested X25519 key, with associated
  data binding contract, worker and share index (:data:`PARTIAL_RELEASE_AAD_TAG`) and,
  for a worker, the contract's install facts (:func:`compute_install_binding`). The
  worker combines ``t`` of them into the contract key.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message, encode
from sealbridge.core.ids import tagged_hash

PARTIAL_RELEASE_AAD_TAG = b"sealbridge/partial-key-release/v1"
INSTALL_BINDING_TAG = "sealbridge/install-binding/v1"


def compute_install_binding(
    code_hash: bytes, deployer_commitment: bytes, workers: list[bytes]
) -> bytes:
    """What a worker's partial releases are bound to (in their associated data): the
    contract's install facts as the chain records them. The gatekeeper reads them from
    state proofs, the worker's enclave from its own verified blocks; a release opens
    only if both agree, so a worker fed a chain with other facts gets no key."""
    return tagged_hash(
        INSTALL_BINDING_TAG, encode([bytes(code_hash), bytes(deployer_commitment), workers])
    )


class PartialKeyRelease(Message, frozen=True):
    contract_id: bytes
    worker_id: bytes
    index: int  # the gatekeeper's share index
    ciphertext: bytes  # ECIES of the 96-byte partial signature
