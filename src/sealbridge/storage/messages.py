"""Messages of the checkpoint storage protocol.

* A worker host (or anyone) sends a blob -- raw ciphertext bytes, not a message -- to a
  storage node; the node answers a :class:`StorageReceipt` once the blob is durably
  written.
* ``StorageReceipt.signature`` is the node's secp256k1 signature (65 bytes, ``r||s||v``)
  over the ExecutionLedger's storage digest of (``blob_hash``, ``size``); the ledger
  checks it against the address the NodeRegistry holds for ``node_id``.
* :class:`StoreDecision` is what the core decides about an offered blob before the host
  writes it.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message


class StoreDecision(Message, frozen=True):
    """An offered blob is acceptable: store it under ``blob_hash``."""

    blob_hash: bytes  # keccak-256 of the blob
    size: int


class StorageReceipt(Message, frozen=True):
    """A storage node's signed confirmation that it durably holds a blob."""

    node_id: bytes  # compute_storage_node_id(signer address)
    blob_hash: bytes  # keccak-256 of the blob
    size: int
    signature: bytes  # over compute_storage_digest(ledger, chain id, blob_hash, size)
