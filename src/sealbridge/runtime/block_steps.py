"""A worker block's steps across the host's cores, in their one order, sans-I/O.

Theory of operation
-------------------
A worker's host runs four cores (:mod:`sealbridge.runtime.catchup`,
:mod:`~sealbridge.runtime.follow`, :mod:`~sealbridge.runtime.posting`,
:mod:`~sealbridge.runtime.submission`); each fresh block touches the first three, and
the order matters. :func:`plan_block_steps` is that order, declared once, for every
driver that runs a worker (the network host, :meth:`sealbridge.node.worker.WorkerHost.on_block`,
and the simulator, :mod:`sealbridge.sim.enclave_worker`):

1. ``KeysRotated`` to the catch-up core, when the block rotates contract keys: the new
   versions are staged in the enclave *before* it gets the block (it switches after
   that block, so the next block's commands open under the new key);
2. ``ApplyBlock`` to the follow core: the block, with its evidence, to the enclave. Its
   ``directory`` is the catch-up core's when the step runs (the keys published up to
   the anchor, which the enclave takes with its first block);
3. ``BlockApplied`` to the catch-up core: the enclave took the directory;
4. ``InboxBlock`` to the posting core: the messages seen in the block's inbox are
   forgotten, overdue ones are posted again;
5. ``KeysPublished`` to the catch-up core, when the block publishes keys: installs come
   *after* the enclave verified the block that published them (it installs only with
   facts it read itself).

A step runs once the one before it is done. When a step fails for a reason that may
pass (a key not yet released, a full release backlog), the driver offers the block
again later; steps 1 to 3 are then left out for a block the enclave applied already
(``delivered``: the newest block it applied), so it never gets a block twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sealbridge.chain.lightclient import BlockEvidence
from sealbridge.core.encoding import Message
from sealbridge.runtime.catchup import BlockApplied, KeyEvent, KeysPublished, KeysRotated
from sealbridge.runtime.follow import ApplyBlock
from sealbridge.runtime.posting import InboxBlock

__all__ = ["BlockStep", "ObservedWorkerBlock", "StepTarget", "plan_block_steps"]


class StepTarget(StrEnum):
    CATCHUP = "catchup"
    FOLLOW = "follow"
    POSTING = "posting"


@dataclass(frozen=True)
class BlockStep:
    target: StepTarget
    message: KeysRotated | ApplyBlock | BlockApplied | InboxBlock | KeysPublished


class ObservedWorkerBlock(Message, frozen=True):
    """What the host read of a fresh block (unverified: the enclave checks the block)."""

    number: int
    block_hash: bytes
    evidence: BlockEvidence | None
    rotated: list[KeyEvent] = []  # ContractKeyRotated events
    published: list[KeyEvent] = []  # ContractKeyPublished events
    ciphertexts: list[bytes] = []  # the inbox's Command events' ciphertexts


def plan_block_steps(block: ObservedWorkerBlock, delivered: int) -> list[BlockStep]:
    """The block's steps, in order (see the module docstring)."""
    steps: list[BlockStep] = []
    if block.number > delivered:
        if block.rotated:
            steps.append(BlockStep(StepTarget.CATCHUP, KeysRotated(events=list(block.rotated))))
        apply = ApplyBlock(
            number=block.number,
            block_hash=block.block_hash,
            evidence=block.evidence,
            applied=delivered,
        )
        steps.append(BlockStep(StepTarget.FOLLOW, apply))
        steps.append(BlockStep(StepTarget.CATCHUP, BlockApplied(number=block.number)))
    inbox = InboxBlock(number=block.number, ciphertexts=list(block.ciphertexts))
    steps.append(BlockStep(StepTarget.POSTING, inbox))
    if block.published:
        published = KeysPublished(events=list(block.published))
        steps.append(BlockStep(StepTarget.CATCHUP, published))
    return steps
