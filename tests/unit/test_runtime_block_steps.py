"""The one order of a worker block's steps across the host's cores."""

from __future__ import annotations

from sealbridge.runtime.block_steps import ObservedWorkerBlock, StepTarget, plan_block_steps
from sealbridge.runtime.catchup import BlockApplied, KeyEvent, KeysPublished, KeysRotated
from sealbridge.runtime.follow import ApplyBlock
from sealbridge.runtime.posting import InboxBlock

CID = b"\x01" * 32
PUBLISHED = KeyEvent(
    contract_id=CID, block_number=7, contract_public_key=b"\x02" * 32, message_key=b"\x03" * 32
)
ROTATED = KeyEvent(
    contract_id=CID,
    block_number=7,
    contract_public_key=b"\x04" * 32,
    message_key=b"\x05" * 32,
    rotated=True,
    version=1,
)


def kinds(block: ObservedWorkerBlock, delivered: int) -> list[tuple[StepTarget, type]]:
    return [(s.target, type(s.message)) for s in plan_block_steps(block, delivered)]


def test_a_fresh_block_stages_rotations_then_applies_then_posts_then_installs() -> None:
    block = ObservedWorkerBlock(
        number=7,
        block_hash=b"\x09" * 32,
        evidence=None,
        rotated=[ROTATED],
        published=[PUBLISHED],
        ciphertexts=[b"c"],
    )
    assert kinds(block, 6) == [
        (StepTarget.CATCHUP, KeysRotated),
        (StepTarget.FOLLOW, ApplyBlock),
        (StepTarget.CATCHUP, BlockApplied),
        (StepTarget.POSTING, InboxBlock),
        (StepTarget.CATCHUP, KeysPublished),
    ]
    steps = plan_block_steps(block, 6)
    apply = steps[1].message
    assert isinstance(apply, ApplyBlock)
    assert (apply.number, apply.applied, apply.directory) == (7, 6, [])
    inbox = steps[3].message
    assert isinstance(inbox, InboxBlock) and inbox.ciphertexts == [b"c"]


def test_a_block_without_key_events_has_no_key_steps() -> None:
    block = ObservedWorkerBlock(number=3, block_hash=b"\x09" * 32, evidence=None)
    assert kinds(block, 2) == [
        (StepTarget.FOLLOW, ApplyBlock),
        (StepTarget.CATCHUP, BlockApplied),
        (StepTarget.POSTING, InboxBlock),
    ]


def test_a_block_the_enclave_applied_already_runs_only_the_later_steps() -> None:
    """A retry after an install failed: the enclave never gets the block twice."""
    block = ObservedWorkerBlock(
        number=7, block_hash=b"\x09" * 32, evidence=None, rotated=[ROTATED], published=[PUBLISHED]
    )
    assert kinds(block, 7) == [
        (StepTarget.POSTING, InboxBlock),
        (StepTarget.CATCHUP, KeysPublished),
    ]
    assert kinds(block, 9) == kinds(block, 7)
