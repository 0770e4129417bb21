"""Messages of threshold key release (gatekeepers holding shares of the PRF key).

* ``PartialKeyRelease``: gatekeeper ``index``'s partial signature of a contract's PRF
  message, ECIES-encrypted to the requesting worker's attested X25519 key, with associated
  data binding contract, worker and share index (:data:`PARTIAL_RELEASE_AAD_TAG`). The
  worker combines ``t`` of them into the contract key.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message

PARTIAL_RELEASE_AAD_TAG = b"sealbridge/partial-key-release/v1"


class PartialKeyRelease(Message, frozen=True):
    contract_id: bytes
    worker_id: bytes
    index: int  # the gatekeeper's share index
    ciphertext: bytes  # ECIES of the 96-byte partial signature
