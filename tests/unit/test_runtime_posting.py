"""The worker host's message posting core (runtime/posting.py), alone: who posts a
released message, when a missing one is posted again, what a seen one changes, and
answers that are not its own."""

from __future__ import annotations

import pytest

from sealbridge.core.effects import Report, SubmitTx, TxOutcome
from sealbridge.core.errors import ConfigError
from sealbridge.runtime.messages import OutgoingMessage
from sealbridge.runtime.posting import (
    BadPostingInput,
    InboxBlock,
    MessagePostingCore,
    MessagesOut,
    PostMessage,
)

ME, PEER = b"\x01" * 32, b"\x02" * 32
SOURCE, TARGET = b"\xaa" * 32, b"\xbb" * 32
NOW = 0.0


def message(seq: int, ciphertext: bytes = b"") -> OutgoingMessage:
    return OutgoingMessage(
        source=SOURCE, target=TARGET, seq=seq, ciphertext=ciphertext or bytes([seq]) * 40
    )


def released(number: int, *messages: OutgoingMessage, leader: bytes = ME) -> MessagesOut:
    return MessagesOut(
        number=number,
        messages=list(messages),
        executors=[[leader, PEER if leader == ME else ME] for _ in messages],
    )


def posts(effects: list[object]) -> list[PostMessage]:
    return [e.tx for e in effects if isinstance(e, SubmitTx)]


def answer(core: MessagePostingCore, effects: list[object], status: str = "sent") -> None:
    for effect in effects:
        if isinstance(effect, SubmitTx):
            core.on_message(0, TxOutcome(effect.tag, status), NOW)


def test_the_first_worker_posts_at_once_and_the_others_remember() -> None:
    leader = MessagePostingCore(ME, repost_blocks=10)
    effects = leader.on_message(0, released(5, message(1)), NOW)
    assert posts(effects) == [PostMessage(target=TARGET, ciphertext=message(1).ciphertext)]
    answer(leader, effects)
    assert leader.posted == 1 and len(leader.pending) == 1
    other = MessagePostingCore(PEER, repost_blocks=10)
    assert other.on_message(0, released(5, message(1)), NOW) == []
    assert len(other.pending) == 1 and other.posted == 0


def test_a_message_seen_on_chain_is_forgotten() -> None:
    core = MessagePostingCore(PEER, repost_blocks=3)
    core.on_message(0, released(5, message(1), message(2)), NOW)
    core.on_message(0, InboxBlock(number=6, ciphertexts=[message(1).ciphertext]), NOW)
    assert list(core.pending.values())[0][1] == message(2).ciphertext
    assert len(core.pending) == 1


def test_a_missing_message_is_posted_again_by_whoever_notices() -> None:
    core = MessagePostingCore(PEER, repost_blocks=3)
    core.on_message(0, released(5, message(1)), NOW)
    assert core.on_message(0, InboxBlock(number=7, ciphertexts=[]), NOW) == []  # not due
    effects = core.on_message(0, InboxBlock(number=8, ciphertexts=[]), NOW)
    assert posts(effects) == [PostMessage(target=TARGET, ciphertext=message(1).ciphertext)]
    answer(core, effects)
    assert core.reposted == 1 and core.posted == 0
    # due again three blocks later, not before
    assert core.on_message(0, InboxBlock(number=10, ciphertexts=[]), NOW) == []
    assert posts(core.on_message(0, InboxBlock(number=11, ciphertexts=[]), NOW))


def test_with_posting_off_nothing_is_sent() -> None:
    core = MessagePostingCore(ME, repost_blocks=1, post=False)
    assert core.on_message(0, released(5, message(1)), NOW) == []
    assert core.on_message(0, InboxBlock(number=50, ciphertexts=[]), NOW) == []
    assert len(core.pending) == 1


def test_messages_of_other_contracts_and_undeliverable_ones() -> None:
    core = MessagePostingCore(ME, repost_blocks=10)
    foreign = MessagesOut(number=5, messages=[message(1)], executors=[[]])
    assert core.on_message(0, foreign, NOW) == [] and not core.pending
    undeliverable = OutgoingMessage(source=SOURCE, target=TARGET, seq=3, ciphertext=b"")
    effects = core.on_message(0, released(5, undeliverable), NOW)
    assert [e.kind for e in effects if isinstance(e, Report)] == ["message_undeliverable"]
    assert not posts(effects) and not core.pending
    assert core.on_message(0, released(5, undeliverable, leader=PEER), NOW) == []


def test_a_failed_post_stays_due_and_the_oldest_are_dropped_past_the_limit() -> None:
    core = MessagePostingCore(ME, repost_blocks=2, max_pending=2)
    effects = core.on_message(0, released(5, message(1)), NOW)
    answer(core, effects, status="failed")
    assert core.failed == 1 and core.posted == 0 and len(core.pending) == 1
    assert posts(core.on_message(0, InboxBlock(number=7, ciphertexts=[]), NOW))
    core.on_message(0, released(8, message(2), message(3)), NOW)
    assert len(core.pending) == 2
    kept = [ciphertext for _, ciphertext, _ in core.pending.values()]
    assert kept == [message(2).ciphertext, message(3).ciphertext]


def test_answers_and_inputs_that_are_not_its_own_change_nothing() -> None:
    core = MessagePostingCore(ME, repost_blocks=10, host=1, chain=2)
    assert core.on_message(0, released(5, message(1)), NOW) == []  # not from the host
    effects = core.on_message(1, released(5, message(1)), NOW)
    (post,) = [e for e in effects if isinstance(e, SubmitTx)]
    for forged in (
        (1, TxOutcome(post.tag, "sent")),  # the host does not answer for the chain
        (2, TxOutcome("message/999", "sent")),  # an unknown tag
        (2, "garbage"),
    ):
        assert core.on_message(*forged, NOW) == []
    assert core.posted == 0 and post.tag in core.in_flight
    core.on_message(2, TxOutcome(post.tag, "sent"), NOW)
    core.on_message(2, TxOutcome(post.tag, "sent"), NOW)  # a replayed answer counts once
    assert core.posted == 1
    with pytest.raises(BadPostingInput):
        core.on_message(1, MessagesOut(number=5, messages=[message(2)], executors=[]), NOW)
    with pytest.raises(BadPostingInput):
        core.on_message(1, InboxBlock(number=-1, ciphertexts=[]), NOW)
    assert len(core.pending) == 1
    with pytest.raises(ConfigError):
        MessagePostingCore(ME, repost_blocks=1, max_pending=0)


def test_outcomes_that_never_come_do_not_grow_the_table_of_posts_in_flight() -> None:
    """A chain link that drops the outcomes (the simulator's partitions, a lost
    receipt) must not make every repost a table entry kept forever."""
    core = MessagePostingCore(ME, repost_blocks=1, max_pending=2, host=1)
    core.on_message(1, released(1, message(1), message(2)), NOW)
    for number in range(2, 2_000):
        assert len(posts(core.on_message(1, InboxBlock(number=number, ciphertexts=[]), NOW))) == 2
    assert len(core.in_flight) <= 4 * core.max_pending
    # the newest posts still count when their outcomes come
    newest = core.on_message(1, InboxBlock(number=5_000, ciphertexts=[]), NOW)
    answer(core, newest)
    assert core.reposted == 2
