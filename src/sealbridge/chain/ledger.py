"""The ExecutionLedger's call for outputs, as a typed description (no I/O).

A worker's host decides what to submit in a sans-I/O core
(:mod:`sealbridge.runtime.submission`), which cannot reach the EVM wrappers; the EVM
adapter (:class:`sealbridge.evm.management.ExecutionLedger`) encodes the same
description into the contract call. Both import it from here.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message

__all__ = ["MAX_OUTPUT_BATCH", "OutputSubmission"]

MAX_OUTPUT_BATCH = 16  # ExecutionLedger.submit: contracts per submission


class OutputSubmission(Message, frozen=True):
    """One ExecutionLedger.submit call: outputs of a worker's contracts over (start, end],
    optionally with a checkpoint at ``end`` (zero hash: none)."""

    contract_ids: list[bytes]
    starts: list[int]
    end: int
    end_hash: bytes
    state_roots: list[bytes]
    commands_applied: list[int]
    node_id: bytes
    signature: bytes = b""
    checkpoint_hash: bytes = bytes(32)
    checkpoint_size: int = 0
    storage_ids: list[bytes] = []
    storage_sigs: list[bytes] = []
    inline_blob: bytes = b""
