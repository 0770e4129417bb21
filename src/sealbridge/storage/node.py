"""The storage node core (sans-I/O) and the receipt check any client can run.

Theory of operation
-------------------
A storage node keeps checkpoint blobs -- contract states the worker's enclave has
already encrypted -- and vouches only for their *availability*. It never sees plaintext,
so it is not a TEE node: it registers in the NodeRegistry with a stake and a secp256k1
signing key, and its node id is derived from that key's address
(:func:`~sealbridge.chain.abi.compute_storage_node_id`). A receipt therefore names its
own signer, and anyone can check it without reading the chain.

Storing a blob takes two steps, with the durable write in between done by the host:

1. :meth:`StorageNode.process_store` checks the offered blob (not empty, at most
   ``max_blob_size`` bytes) and returns a :class:`StoreDecision`: the blob's Keccak-256
   hash, under which it is stored, and its size. A refused blob raises
   :class:`BlobRefused` and nothing is stored.
2. Once the blob is on disk (temp file, fsync, rename), the host calls
   :meth:`StorageNode.sign_receipt`. The node signs the ExecutionLedger's storage digest
   (ledger address, chain id, tag, blob hash, size) and returns a
   :class:`StorageReceipt`.

A receipt is the node's promise that it can hand the blob back, and the ledger records a
checkpoint only on ``k`` such promises from distinct active storage nodes (``k`` = the
ledger's storage threshold). So the host must never ask for a receipt before the write
is durable. Signing is deterministic (RFC 6979): the same blob always gets the same
receipt, which makes storing twice idempotent.

:func:`is_valid_receipt` is pure: it recovers the signer from the storage digest and
checks that the receipt's node id is derived from that signer. It shows the receipt is
genuine for *some* key. Whether that key belongs to an active storage node is for the
ledger to decide (or for a caller that reads the NodeRegistry). Blobs are
content-addressed, so :func:`is_intact` detects a node that serves altered bytes.
"""

from __future__ import annotations

import string

from sealbridge.chain.abi import (
    SIGNATURE_SIZE,
    checksum,
    compute_address,
    compute_storage_digest,
    compute_storage_node_id,
    recover_signer,
    sign_digest,
)
from sealbridge.core.errors import ConfigError, InvalidSignature, LocalProtocolError
from sealbridge.core.ids import HASH_SIZE, keccak, short
from sealbridge.storage.errors import BadBlobHash, BlobRefused
from sealbridge.storage.messages import StorageReceipt, StoreDecision

DEFAULT_MAX_BLOB_SIZE = 16 * 1024 * 1024
MAX_UINT256 = 2**256 - 1
_HEX = frozenset(string.hexdigits)


def compute_blob_hash(blob: bytes) -> bytes:
    """A blob's name: the Keccak-256 of its bytes (what the ledger records)."""
    return keccak(bytes(blob))


def is_intact(blob_hash: bytes, data: bytes) -> bool:
    """True when ``data`` are the bytes named by ``blob_hash``."""
    return compute_blob_hash(data) == bytes(blob_hash)


def parse_blob_hash(text: str) -> bytes:
    """Parse a blob hash given as 64 hex digits (``0x`` optional); BadBlobHash if not."""
    body = text[2:] if text.startswith(("0x", "0X")) else text
    if len(body) != 2 * HASH_SIZE or not _HEX.issuperset(body):
        raise BadBlobHash(f"a blob hash is {2 * HASH_SIZE} hex digits, not {text[:80]!r}")
    return bytes.fromhex(body)


def _is_well_formed(receipt: StorageReceipt) -> bool:
    return (
        len(receipt.node_id) == HASH_SIZE
        and len(receipt.blob_hash) == HASH_SIZE
        and 0 < receipt.size <= MAX_UINT256
        and len(receipt.signature) == SIGNATURE_SIZE
    )


def is_valid_receipt(receipt: StorageReceipt, ledger_address: str, chain_id: int) -> bool:
    """True when ``receipt`` is signed, for this ledger and chain, by the key its node id
    is derived from. No chain read: whether the node is active is not checked here.

    A malformed ledger address or chain id is the caller's fault (ConfigError); anything
    wrong with the receipt itself gives False.
    """
    ledger = checksum(ledger_address)
    if chain_id <= 0:
        raise ConfigError(f"invalid chain id {chain_id}")
    if not _is_well_formed(receipt):
        return False
    digest = compute_storage_digest(
        ledger=ledger, chain_id=chain_id, blob_hash=receipt.blob_hash, size=receipt.size
    )
    try:
        signer = recover_signer(digest, receipt.signature)
    except InvalidSignature:
        return False
    return compute_storage_node_id(signer) == receipt.node_id


class StorageNode:
    """One storage node's decisions and signatures (the host does all I/O)."""

    def __init__(
        self,
        signer_key: bytes,
        ledger_address: str,
        chain_id: int,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    ) -> None:
        if not isinstance(signer_key, bytes | bytearray) or len(signer_key) != 32:
            raise ConfigError("a storage signing key is 32 bytes")
        if chain_id <= 0:
            raise ConfigError(f"invalid chain id {chain_id}")
        if not 0 < max_blob_size <= MAX_UINT256:
            raise ConfigError(f"max_blob_size must be positive, not {max_blob_size}")
        self.signer_address = compute_address(bytes(signer_key))  # refuses an invalid key
        self.node_id = compute_storage_node_id(self.signer_address)
        self.ledger_address = checksum(ledger_address)
        self.chain_id = chain_id
        self.max_blob_size = max_blob_size
        self._signer_key = bytes(signer_key)

    def process_store(self, blob: bytes) -> StoreDecision:
        """Decide on an offered blob: its hash and size, or BlobRefused."""
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise BlobRefused(f"a blob is bytes, not {type(blob).__name__}")
        size = len(blob)
        if size == 0:
            raise BlobRefused("an empty blob is not a checkpoint")
        if size > self.max_blob_size:
            raise BlobRefused(
                f"blob of {size} bytes is over this node's limit of {self.max_blob_size}"
            )
        return StoreDecision(blob_hash=compute_blob_hash(bytes(blob)), size=size)

    def compute_digest(self, blob_hash: bytes, size: int) -> bytes:
        """The ExecutionLedger's storage digest of (``blob_hash``, ``size``)."""
        return compute_storage_digest(
            ledger=self.ledger_address, chain_id=self.chain_id, blob_hash=blob_hash, size=size
        )

    def sign_receipt(self, blob_hash: bytes, size: int) -> StorageReceipt:
        """Confirm a blob the host has durably written. Call only after the write."""
        if not isinstance(blob_hash, bytes | bytearray) or len(blob_hash) != HASH_SIZE:
            raise LocalProtocolError(f"a blob hash is {HASH_SIZE} bytes")
        if not 0 < size <= self.max_blob_size:
            raise LocalProtocolError(
                f"cannot confirm a blob of {size} bytes ({short(bytes(blob_hash))}): "
                f"this node stores 1..{self.max_blob_size}"
            )
        signature = sign_digest(self.compute_digest(bytes(blob_hash), size), self._signer_key)
        return StorageReceipt(
            node_id=self.node_id, blob_hash=bytes(blob_hash), size=size, signature=signature
        )
