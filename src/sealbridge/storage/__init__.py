"""Threshold-confirmed checkpoint storage (RaceTEE): storage nodes hold encrypted
checkpoint blobs and sign confirmations the ExecutionLedger counts (k of n).

``messages`` holds the wire messages, ``node`` the sans-I/O storage-node core and the
pure receipt check any client can run, ``errors`` the typed refusals.
"""

from sealbridge.storage.errors import (
    BadBlobHash,
    BlobNotFound,
    BlobRefused,
    BlobUnavailable,
    StorageUnavailable,
)
from sealbridge.storage.messages import StorageReceipt, StoreDecision
from sealbridge.storage.node import (
    StorageNode,
    compute_blob_hash,
    is_intact,
    is_valid_receipt,
    parse_blob_hash,
)

__all__ = [
    "BadBlobHash",
    "BlobNotFound",
    "BlobRefused",
    "BlobUnavailable",
    "StorageNode",
    "StorageReceipt",
    "StorageUnavailable",
    "StoreDecision",
    "compute_blob_hash",
    "is_intact",
    "is_valid_receipt",
    "parse_blob_hash",
]
