"""The worker host's follow core (runtime/follow.py), alone: a block applied and its
state bundle persisted, directory proofs for unknown message sources (and where they
stop), a full release backlog, witnesses collected and released, peers that rest, and
hostile or stale answers. No processes, no chain: a small model of the enclave, the
chain and the peer workers answers the effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sealbridge.chain.lightclient import BlockEvidence
from sealbridge.chain.proofs import AccountProof
from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    Persist,
    ReadChain,
    Report,
    Send,
)
from sealbridge.core.encoding import decode
from sealbridge.node.driver import Executors, NetworkDriver
from sealbridge.runtime import follow as follow_module
from sealbridge.runtime.catchup import StateBundle
from sealbridge.runtime.ecalls import WORKER_PROCESS_BLOCK, WORKER_RELEASE_OUTPUTS
from sealbridge.runtime.follow import (
    BUNDLE_KEY,
    MAX_PROVEN_SOURCES,
    PEER_BACKOFF,
    ApplyBlock,
    CollectWitnesses,
    FollowCaughtUp,
    FollowRefused,
    FollowStep,
    KeyProofQuery,
    MessagesReleased,
    PeerWitness,
    WitnessAsk,
    WorkerFollowCore,
    get_named_source,
)
from sealbridge.runtime.messages import (
    BlockInput,
    BlockOutput,
    BlockWitness,
    ContractOutput,
    DirectoryEntry,
    HeldOutputs,
    OutgoingMessage,
    Receipt,
    ReleasedOutputs,
    Witnesses,
)
from sealbridge.runtime.submission import CaughtUp
from tests.unit.chain_builder import make_header

HOST, CHAIN, ENCLAVE, PEERS, POSTING, SUBMISSION = 1, 2, 3, 4, 5, 6
ME, OTHER = b"\x01" * 32, b"\x02" * 32
A, B = b"\xaa" * 32, b"\xbb" * 32
PEER_1, PEER_2 = "http://peer-1", "http://peer-2"
DIRECTORY = [DirectoryEntry(contract_id=B, command_key=b"c" * 32, message_key=b"m" * 32)]


def evidence(number: int) -> BlockEvidence:
    return BlockEvidence(
        header=make_header(parent_hash=bytes(32), number=number, receipts=[]), receipts=[]
    )


def block(number: int, *, applied: int | None = None, with_evidence: bool = True) -> ApplyBlock:
    return ApplyBlock(
        number=number,
        block_hash=bytes([number]) * 32,
        evidence=evidence(number) if with_evidence else None,
        directory=DIRECTORY,
        applied=number - 1 if applied is None else applied,
    )


def receipt(seq: int, status: str = "applied") -> Receipt:
    return Receipt(contract_id=A, seq=seq, status=status, sealed_result=b"sealed-%d" % seq)


def message(seq: int) -> OutgoingMessage:
    return OutgoingMessage(source=A, target=B, seq=seq, ciphertext=b"ct-%d" % seq)


def witness(peer: str) -> BlockWitness:
    return BlockWitness(worker=peer.encode(), body=b"body", signature=b"sig")


def source_refusal(cid: bytes) -> str:
    return f"directory_incomplete: a message from 0x{cid.hex()} whose keys are unknown"


@dataclass
class World:
    """The enclave, the chain and the peer workers, as the core sees them."""

    # the enclave's answers to process_block, in turn (an str is a refusal); then `output`
    refusals: list[str] = field(default_factory=list)
    output: BlockOutput | None = None
    release: ReleasedOutputs | str = field(default_factory=ReleasedOutputs)
    proof_error: str = ""
    proof_passing: bool = True
    peers_down: set[str] = field(default_factory=set)
    calls: list[CallEnclave] = field(default_factory=list)
    reads: list[Any] = field(default_factory=list)
    asks: list[WitnessAsk] = field(default_factory=list)
    persisted: list[Persist] = field(default_factory=list)
    sent: list[Send] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)

    def answer(self, effect: Effect) -> tuple[int, Any]:
        if isinstance(effect, ReadChain):
            self.reads.append(effect.query)
            if self.proof_error:
                return CHAIN, ChainRead(
                    effect.tag, error=self.proof_error, passing=self.proof_passing
                )
            return CHAIN, ChainRead(effect.tag, proof_of(effect.query))
        if isinstance(effect, AskPeers):
            ask = effect.request
            self.asks.append(ask)
            assert effect.needed == len(ask.peers)
            answers = tuple(
                PeerWitness(peer=p, witness=witness(p))
                for p in ask.peers
                if p not in self.peers_down
            )
            errors = tuple(f"{p}: down" for p in ask.peers if p in self.peers_down)
            return PEERS, PeerAnswers(effect.tag, answers, errors)
        assert isinstance(effect, CallEnclave)
        self.calls.append(effect)
        if effect.ecall is WORKER_RELEASE_OUTPUTS:
            if isinstance(self.release, str):
                return ENCLAVE, EnclaveAnswer(effect.tag, error=self.release)
            return ENCLAVE, EnclaveAnswer(effect.tag, self.release)
        assert effect.ecall is WORKER_PROCESS_BLOCK
        if self.refusals:
            return ENCLAVE, EnclaveAnswer(effect.tag, error=self.refusals.pop(0))
        number = effect.request.number
        output = self.output or BlockOutput(number=number, contracts=[], receipts=[])
        return ENCLAVE, EnclaveAnswer(effect.tag, output)

    def blocks_offered(self) -> list[BlockInput]:
        return [c.request for c in self.calls if c.ecall is WORKER_PROCESS_BLOCK]

    def released_with(self) -> list[Witnesses]:
        return [c.request for c in self.calls if c.ecall is WORKER_RELEASE_OUTPUTS]


def proof_of(query: KeyProofQuery) -> AccountProof:
    return AccountProof(address=b"\x22" * 20, proof=[b"".join(query.contract_ids)])


def new_core(**kwargs: Any) -> WorkerFollowCore:
    options: dict[str, Any] = {"peers": [PEER_1, PEER_2], **kwargs}
    return WorkerFollowCore(
        host=HOST,
        chain=CHAIN,
        enclave=ENCLAVE,
        peer_workers=PEERS,
        posting=POSTING,
        submission=SUBMISSION,
        **options,
    )


def run(core: WorkerFollowCore, world: World, message: Any, now: float = 0.0) -> None:
    """Hand the core a host input, then answer its effects until it asks for none."""
    effects = core.on_message(HOST, message, now)
    while True:
        world.persisted += [e for e in effects if isinstance(e, Persist)]
        world.sent += [e for e in effects if isinstance(e, Send)]
        world.reports += [e for e in effects if isinstance(e, Report)]
        pending = [e for e in effects if isinstance(e, ReadChain | CallEnclave | AskPeers)]
        if not pending:
            return
        (effect,) = pending  # one effect at a time
        sender, answer = world.answer(effect)
        effects = core.on_message(sender, answer, now)


def posted(world: World) -> list[MessagesReleased]:
    return [s.message for s in world.sent if isinstance(s.message, MessagesReleased)]


def told(world: World) -> list[CaughtUp]:
    return [s.message for s in world.sent if isinstance(s.message, CaughtUp)]


# -- a block -------------------------------------------------------------------------------


def test_an_applied_block_is_persisted_kept_and_its_messages_handed_on() -> None:
    bundle = StateBundle(
        height=4, block_hash=b"\x04" * 32, states={B.hex(): b"b"}, heights={B.hex(): 4}
    )
    output = BlockOutput(
        number=7,
        contracts=[
            ContractOutput(contract_id=A, state_root=b"r" * 32, command_count=2, sealed_state=b"a7")
        ],
        receipts=[receipt(1), receipt(2, "bad_signature")],
        messages=[message(1)],
        held=3,
    )
    world = World(output=output)
    core = new_core(bundle=bundle)
    run(core, world, block(7))
    (offered,) = world.blocks_offered()
    assert offered.number == 7 and offered.directory == DIRECTORY and offered.evidence is not None
    assert offered.key_proof is None and offered.key_proof_ids == []
    assert core.failure is None and core.step == FollowStep.IDLE and core.held == 3
    # the bundle: the changed contract's state replaces its entry, the others stay
    (persist,) = world.persisted
    assert persist.key == BUNDLE_KEY
    stored = decode(persist.data, StateBundle)
    assert stored == core.bundle
    assert stored.height == 7 and stored.block_hash == b"\x07" * 32
    assert stored.states == {B.hex(): b"b", A.hex(): b"a7"}
    assert stored.heights == {B.hex(): 4, A.hex(): 7}
    # receipts kept for /v1/result, messages handed to the posting core at this block
    assert core.get_receipt(A, 1) == receipt(1) and core.get_receipt(A, 2) is not None
    assert core.get_receipt(A, 3) is None
    assert posted(world) == [MessagesReleased(number=7, messages=[message(1)])]
    assert all(s.to == (POSTING,) for s in world.sent)
    assert [r.kind for r in world.reports] == ["block_applied"]
    assert world.reports[0].data["refused"] == 1


def test_a_block_that_changed_nothing_writes_nothing() -> None:
    world = World(output=BlockOutput(number=8, contracts=[], receipts=[], held=2))
    core = new_core()
    run(core, world, block(8))
    assert core.failure is None and core.held == 2
    assert world.persisted == [] and world.sent == [] and core.bundle == StateBundle()


def test_receipts_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow_module, "RECEIPTS_KEPT", 3)
    output = BlockOutput(number=9, contracts=[], receipts=[receipt(s) for s in range(1, 6)])
    core = new_core()
    run(core, World(output=output), block(9))
    assert [seq for _, seq in core.receipts] == [3, 4, 5]


def test_a_block_without_evidence_is_refused() -> None:
    world = World()
    core = new_core()
    run(core, world, block(5, with_evidence=False))
    assert world.calls == [] and core.failure is not None
    assert core.failure.code == "no_evidence" and not core.failure.passing
    assert isinstance(core.get_error(), FollowRefused)


# -- directory proofs ------------------------------------------------------------------------


def test_an_unknown_source_is_proven_at_the_block_and_the_block_offered_again() -> None:
    world = World(refusals=[source_refusal(A), source_refusal(B)])
    core = new_core()
    run(core, world, block(12))
    assert core.failure is None and core.proofs == 2
    assert world.reads == [
        KeyProofQuery(contract_ids=[A], number=12),
        KeyProofQuery(contract_ids=[A, B], number=12),
    ]
    first, second, third = world.blocks_offered()
    assert first.key_proof is None and first.key_proof_ids == []
    assert second.key_proof_ids == [A] and second.key_proof == proof_of(world.reads[0])
    assert third.key_proof_ids == [A, B] and third.key_proof == proof_of(world.reads[1])
    assert third.directory == DIRECTORY and third.number == 12


def test_a_source_named_again_leaves_the_refusal_standing() -> None:
    world = World(refusals=[source_refusal(A), source_refusal(A)])
    core = new_core()
    run(core, world, block(12))
    assert len(world.blocks_offered()) == 2 and len(world.reads) == 1
    assert core.failure is not None and core.failure.code == "enclave_refused"
    assert not core.failure.passing and "directory_incomplete" in core.failure.message
    assert world.persisted == [] and core.held == 0


def test_a_refusal_naming_no_source_stands() -> None:
    world = World(refusals=["directory_incomplete: something is missing"])
    core = new_core()
    run(core, world, block(12))
    assert world.reads == [] and core.failure is not None and not core.failure.passing


def test_at_most_64_sources_are_proven_for_a_block() -> None:
    sources = [i.to_bytes(32, "big") for i in range(1, MAX_PROVEN_SOURCES + 2)]
    world = World(refusals=[source_refusal(s) for s in sources])
    core = new_core()
    run(core, world, block(20))
    assert core.proofs == MAX_PROVEN_SOURCES == len(world.reads)
    assert world.reads[-1] == KeyProofQuery(contract_ids=sources[:64], number=20)
    assert len(world.blocks_offered()) == MAX_PROVEN_SOURCES + 1
    assert core.failure is not None and core.failure.code == "enclave_refused"
    assert sources[64].hex() in core.failure.message


def test_a_proof_the_chain_cannot_give_now_is_retried_and_one_it_refuses_stops() -> None:
    world = World(refusals=[source_refusal(A)], proof_error="chain unreachable")
    core = new_core()
    run(core, world, block(12))
    assert core.failure is not None and core.failure.code == "chain_unavailable"
    assert core.failure.passing and core.get_error() is None
    world = World(refusals=[source_refusal(A)], proof_error="no eth_getProof", proof_passing=False)
    core = new_core()
    run(core, world, block(12))
    assert core.failure is not None and core.failure.code == "read_refused"
    assert not core.failure.passing


def test_the_named_source_is_read_from_the_refusal() -> None:
    assert get_named_source(source_refusal(A)) == A
    assert get_named_source("directory_incomplete: 0x1234") is None


def test_any_other_refusal_stops_following() -> None:
    world = World(refusals=["key_rotation_pending: stage version 2 first"])
    core = new_core()
    run(core, world, block(12))
    assert core.failure is not None and not core.failure.passing
    assert "key_rotation_pending" in core.failure.message and world.persisted == []


# -- the release backlog and witnesses -------------------------------------------------------


def test_a_full_backlog_releases_what_the_witnesses_cover_then_the_block_is_retried() -> None:
    release = ReleasedOutputs(
        blocks=[HeldOutputs(number=10, receipts=[receipt(4)], messages=[message(4)])],
        held=1,
        witnessed=10,
    )
    world = World(refusals=["release_backlog_full: 4096 items wait"], release=release)
    core = new_core()
    run(core, world, block(11, applied=10))
    assert world.asks == [WitnessAsk(height=10, peers=[PEER_1, PEER_2])]
    (witnesses,) = world.released_with()
    assert witnesses.witnesses == [witness(PEER_1), witness(PEER_2)]
    assert core.held == 1 and core.witnessed == 10 and core.get_receipt(A, 4) == receipt(4)
    assert posted(world) == [MessagesReleased(number=10, messages=[message(4)])]
    # the block was not applied: nothing persisted, and the host offers it again
    assert world.persisted == [] and core.applied == 0
    assert core.failure is not None and core.failure.code == "release_backlog_full"
    assert core.failure.passing and "4096 items wait" in core.failure.message
    run(core, world, block(11, applied=10))
    assert core.failure is None and core.applied == 1


def test_a_full_backlog_whose_release_is_refused_stops_following() -> None:
    world = World(refusals=["release_backlog_full: full"], release="enclave_unavailable: gone")
    core = new_core()
    run(core, world, block(11))
    assert core.failure is not None and core.failure.code == "enclave_refused"
    assert not core.failure.passing


def test_caught_up_with_held_outputs_releases_them_then_tells_the_submission_core() -> None:
    release = ReleasedOutputs(
        blocks=[HeldOutputs(number=14, receipts=[receipt(7)], messages=[message(7)])],
        held=0,
        witnessed=15,
    )
    world = World(output=BlockOutput(number=15, contracts=[], receipts=[], held=1), release=release)
    core = new_core()
    run(core, world, block(15))
    caught_up = FollowCaughtUp(height=15, contract_ids=[A], executors=[[ME, OTHER]])
    run(core, world, caught_up)
    assert world.asks == [WitnessAsk(height=15, peers=[PEER_1, PEER_2])]
    assert core.held == 0 and core.witnessed == 15 and core.get_receipt(A, 7) == receipt(7)
    assert posted(world) == [MessagesReleased(number=15, messages=[message(7)])]
    assert told(world) == [CaughtUp(height=15, contract_ids=[A], executors=[[ME, OTHER]])]
    assert world.sent[-1].to == (SUBMISSION,)
    # nothing held: no witnesses asked, the submission core told again
    run(core, world, caught_up)
    assert len(world.asks) == 1 and len(told(world)) == 2


def test_caught_up_tells_the_submission_core_only_with_contracts_and_submissions() -> None:
    world = World()
    run(new_core(), world, FollowCaughtUp(height=3))
    run(
        new_core(submit_outputs=False),
        world,
        FollowCaughtUp(height=3, contract_ids=[A], executors=[[ME]]),
    )
    assert world.sent == [] and world.calls == [] and world.asks == []


def test_a_refused_release_when_caught_up_is_logged_and_the_submission_core_still_told() -> None:
    world = World(
        output=BlockOutput(number=5, contracts=[], receipts=[], held=2), release="not_witnessed: x"
    )
    core = new_core()
    run(core, world, block(5))
    run(core, world, FollowCaughtUp(height=5, contract_ids=[A], executors=[[ME]]))
    assert core.failure is not None and "not_witnessed" in core.failure.message
    assert core.held == 2 and len(told(world)) == 1
    # the next input clears it
    world.release = ReleasedOutputs(held=0, witnessed=5)
    run(core, world, FollowCaughtUp(height=5, contract_ids=[A], executors=[[ME]]))
    assert core.failure is None and core.held == 0


def test_a_peer_that_gave_no_witness_rests_for_a_while() -> None:
    world = World(peers_down={PEER_2})
    core = new_core()
    run(core, world, CollectWitnesses(height=30), now=100.0)
    assert core.collected == [witness(PEER_1)]
    run(core, world, CollectWitnesses(height=31), now=101.0)
    assert world.asks[-1] == WitnessAsk(height=31, peers=[PEER_1])
    world.peers_down = set()
    run(core, world, CollectWitnesses(height=32), now=100.0 + PEER_BACKOFF + 0.1)
    assert world.asks[-1].peers == [PEER_1, PEER_2] and len(core.collected) == 2
    # a query only collects: nothing is released
    assert world.released_with() == []


def test_with_no_peer_to_ask_the_release_goes_ahead_without_witnesses() -> None:
    world = World(output=BlockOutput(number=5, contracts=[], receipts=[], held=1))
    core = new_core(peers=[])
    run(core, world, block(5))
    run(core, world, FollowCaughtUp(height=5))
    assert world.asks == [] and world.released_with() == [Witnesses(witnesses=[])]
    run(core, world, CollectWitnesses(height=5))
    assert core.collected == [] and world.asks == []


# -- hostile and stale answers ---------------------------------------------------------------


def waiting(core: WorkerFollowCore, message: Any) -> tuple[str, list[Effect]]:
    """Hand the core ``message`` as the host and return the tag and effects it asks."""
    effects = core.on_message(HOST, message, 0.0)
    (effect,) = effects
    assert isinstance(effect, CallEnclave | ReadChain | AskPeers)
    return effect.tag, effects


def test_answers_with_the_wrong_tag_sender_or_kind_change_nothing() -> None:
    core = new_core()
    tag, _ = waiting(core, block(6))
    good = BlockOutput(
        number=6,
        contracts=[
            ContractOutput(contract_id=A, state_root=b"r" * 32, command_count=1, sealed_state=b"x")
        ],
        receipts=[receipt(1)],
    )
    for sender, answer in [
        (ENCLAVE, EnclaveAnswer("follow/999", good)),  # stale or unknown tag
        (CHAIN, EnclaveAnswer(tag, good)),  # forged sender
        (PEERS, EnclaveAnswer(tag, good)),
        (ENCLAVE, ChainRead(tag, good)),  # not the kind awaited
        (ENCLAVE, PeerAnswers(tag, (good,))),
        (ENCLAVE, "not an answer"),
    ]:
        assert core.on_message(sender, answer, 0.0) == []
        assert core.step == FollowStep.APPLYING and core.tag == tag
    assert core.bundle == StateBundle() and core.receipts == {} and core.failure is None
    # a host input from anyone but the host is ignored too
    assert core.on_message(ENCLAVE, block(7), 0.0) == [] and len(core.backlog) == 0
    effects = core.on_message(ENCLAVE, EnclaveAnswer(tag, good), 0.0)
    assert any(isinstance(e, Persist) for e in effects) and core.get_receipt(A, 1) is not None
    # the same answer again is stale now
    assert core.on_message(ENCLAVE, EnclaveAnswer(tag, good), 0.0) == []


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"bytes",
        BlockOutput(number=99, contracts=[], receipts=[receipt(1)]),  # another block's
        ReleasedOutputs(),
    ],
)
def test_a_malformed_block_output_fails_the_block_as_passing_and_keeps_nothing(value: Any) -> None:
    core = new_core()
    tag, _ = waiting(core, block(6))
    effects = core.on_message(ENCLAVE, EnclaveAnswer(tag, value), 0.0)
    assert not any(isinstance(e, Persist | Send) for e in effects)
    assert core.failure is not None and core.failure.code == "unsound_answer"
    assert core.failure.passing and core.receipts == {} and core.bundle == StateBundle()
    assert core.step == FollowStep.IDLE and core.applied == 0


def test_a_malformed_proof_fails_the_block_as_passing() -> None:
    core = new_core()
    tag, _ = waiting(core, block(6))
    (read,) = core.on_message(ENCLAVE, EnclaveAnswer(tag, error=source_refusal(A)), 0.0)
    assert isinstance(read, ReadChain) and read.query == KeyProofQuery(contract_ids=[A], number=6)
    assert core.on_message(CHAIN, ChainRead(read.tag, b"not a proof"), 0.0)[0] == Report(
        "follow_delayed", "proving: not a state proof"
    )
    assert core.failure is not None and core.failure.code == "unsound_answer"
    assert core.proofs == 0


def test_forged_or_malformed_witnesses_are_dropped_and_their_peers_rest() -> None:
    core = new_core(peers=[PEER_1, PEER_2])
    (ask,) = core.on_message(HOST, CollectWitnesses(height=9), 50.0)
    assert isinstance(ask, AskPeers)
    forged = PeerAnswers(
        ask.tag,
        (
            PeerWitness(peer="http://stranger", witness=witness("http://stranger")),  # not asked
            PeerWitness(peer=PEER_1, witness=witness(PEER_1)),
            PeerWitness(peer=PEER_1, witness=witness("again")),  # a second answer of one peer
            witness(PEER_2),  # not under a peer's name
            "garbage",
        ),
    )
    assert core.on_message(CHAIN, forged, 50.0) == []  # forged sender: ignored
    assert core.step == FollowStep.COLLECTING
    assert core.on_message(PEERS, forged, 50.0) == []
    assert core.collected == [witness(PEER_1)] and core.step == FollowStep.IDLE
    assert core.resting == {PEER_2: 50.0 + PEER_BACKOFF}


def test_a_malformed_release_fails_the_retry_as_passing() -> None:
    world = World(refusals=["release_backlog_full: full"])
    world.release = ReleasedOutputs(held=-1)
    core = new_core(peers=[])
    run(core, world, block(11))
    assert core.failure is not None and core.failure.code == "unsound_answer"
    assert core.failure.passing and core.held == 0


# -- through the inline driver, as the worker host runs it ----------------------------------


def test_the_inline_driver_carries_out_the_effects_in_order() -> None:
    done: list[str] = []
    output = BlockOutput(
        number=3,
        contracts=[
            ContractOutput(contract_id=A, state_root=b"r" * 32, command_count=1, sealed_state=b"s")
        ],
        receipts=[receipt(1)],
        messages=[message(1)],
    )

    def call_enclave(ecall: Any, request: Any) -> Any:
        done.append(ecall.name)
        return output

    core = WorkerFollowCore(peers=[])
    driver = NetworkDriver(
        core,
        Executors(
            call_enclave=call_enclave,
            persist=lambda key, data: done.append(f"persist {key}"),
            send=lambda to, message: done.append(type(message).__name__),
            retry_seconds=0.0,
        ),
        name="follow test",
        inline=True,
    )
    driver.deliver(0, block(3))
    driver.step()
    assert done == ["process_block", f"persist {BUNDLE_KEY}", "MessagesReleased"]
    assert core.failure is None and core.bundle.height == 3


def test_a_restarted_core_does_not_take_an_answer_to_the_previous_incarnation() -> None:
    old = new_core()
    old.on_start(0.0)
    stale_tag, _ = waiting(old, block(6))  # in flight when the worker crashed
    fresh = new_core()  # the restarted process
    fresh.on_start(5.0)
    tag, _ = waiting(fresh, block(6))
    good = BlockOutput(number=6, contracts=[], receipts=[receipt(1)])
    assert fresh.on_message(ENCLAVE, EnclaveAnswer(stale_tag, good), 5.0) == []
    assert fresh.step == FollowStep.APPLYING and fresh.tag == tag and fresh.receipts == {}
