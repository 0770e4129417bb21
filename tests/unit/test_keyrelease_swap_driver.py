"""The swap driver alone: the hosts' policy for pairwise tit-for-tat swaps, no processes.

Two kinds of sides answer the driver here: real ``TitForTatSwap`` machines behind the
devnet vault's hold rule (a release made with a sweep waits for ``proceed``), on real
secp256k1 keys; and hand-written outputs, to pin each rule and to attack the driver
with answers it did not ask for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import coincurve
import pytest
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.effects import Report
from sealbridge.keyrelease.errors import InvalidRequest, SwapInputRefused
from sealbridge.keyrelease.exchange import (
    ExchangeEffect,
    ReleaseChunkKey,
    SwapFinished,
    SwapStatus,
    Sweep,
    TitForTatSwap,
)
from sealbridge.keyrelease.swap_driver import (
    AbortSide,
    DeliverKey,
    OpenSide,
    OutgoingKey,
    PairPhase,
    ProceedSide,
    SideOutput,
    SidePhase,
    SideRefused,
    SwapAnswer,
    SwapDriver,
    SwapEffect,
    SweepChunk,
    SweepResult,
)
from sealbridge.keyrelease.types import Chunk

USD = 10**8
CHUNK = 100 * USD
KINDS = {"ETH@31337": "native", "TKN@31338": "erc20"}
SWAP = "swap:1/bob"


def new_key() -> tuple[bytes, str]:
    key = coincurve.PrivateKey(os.urandom(32))
    address = to_checksum_address(keccak(key.public_key.format(compressed=False)[1:])[-20:])
    return key.secret, address


SECRETS: dict[str, bytes] = {}


def make_chunks(party: str, asset: str, k: int, first: int = 0) -> list[Chunk]:
    chunks = []
    for i in range(first, first + k):
        secret, address = new_key()
        chunk = Chunk(
            chunk_id=f"{party}:{asset}:{i}",
            owner=to_checksum_address(keccak(party.encode())[-20:]),
            vault=party,
            asset=asset,
            address=address,
            amount=10**18,
            usd_e8=CHUNK,
        )
        SECRETS[chunk.chunk_id] = secret
        chunks.append(chunk)
    return chunks


# --- a host over vault-like sides ------------------------------------------------------------


class VaultLikeSide:
    """A side as the devnet's vault runs it: the machine, with the releases of an ECALL
    that also asked for a sweep held back until ``proceed``."""

    def __init__(self, machine: TitForTatSwap) -> None:
        self.machine = machine
        self.held: list[str] = []

    def output(self, tag: str, effects: Sequence[ExchangeEffect]) -> SideOutput:
        hold = any(isinstance(e, Sweep) for e in effects)
        releases: list[OutgoingKey] = []
        sweeps: list[str] = []
        finished = ""
        for effect in effects:
            if isinstance(effect, ReleaseChunkKey):
                if hold:
                    self.held.append(effect.chunk_id)
                else:
                    releases.append(OutgoingKey(effect.chunk_id, SECRETS[effect.chunk_id]))
            elif isinstance(effect, Sweep):
                sweeps.append(effect.chunk_id)
            elif isinstance(effect, SwapFinished):
                finished = effect.outcome
                if effect.outcome == "aborted":
                    self.held.clear()
        return SideOutput(tag, tuple(releases), tuple(sweeps), finished)

    def proceed(self, tag: str) -> SideOutput:
        releases = tuple(OutgoingKey(c, SECRETS[c]) for c in self.held)
        self.held.clear()
        return SideOutput(tag, releases)


class Host:
    """Carries out the driver's decisions depth first, as ``KeyReleaseDevnet.run_swap``
    does; ``emptied`` chunks are found empty when swept."""

    def __init__(self, driver: SwapDriver, emptied: Sequence[str] = ()) -> None:
        self.driver = driver
        self.sides: dict[tuple[str, str], VaultLikeSide] = {}
        self.emptied = set(emptied)
        self.log: list[SwapEffect] = []
        self.now = 0.0

    def run(self, effects: Sequence[SwapEffect]) -> None:
        stack = list(reversed(effects))
        while stack:
            effect = stack.pop()
            self.log.append(effect)
            answer = self.carry_out(effect)
            if answer is not None:
                stack.extend(reversed(self.driver.process(answer)))

    def carry_out(self, effect: SwapEffect) -> SwapAnswer | None:
        if isinstance(effect, Report):
            return None
        if isinstance(effect, OpenSide):
            role: Any = effect.role
            machine = TitForTatSwap(effect.swap_id, role, effect.mine, effect.theirs, KINDS, 1e9)
            side = self.sides[(effect.swap_id, effect.party)] = VaultLikeSide(machine)
            return side.output(effect.tag, machine.start(self.now))
        if isinstance(effect, DeliverKey):
            side = self.sides[(effect.swap_id, effect.receiver)]
            if side.machine.status() is not SwapStatus.ACTIVE:
                return SideRefused(effect.tag, "not active")
            effects = side.machine.on_key(effect.chunk.chunk_id, effect.envelope, self.now)
            return side.output(effect.tag, effects)
        if isinstance(effect, SweepChunk):
            if effect.chunk.chunk_id in self.emptied:
                return SweepResult(effect.tag, False, CHUNK if effect.insured else 0)
            return SweepResult(effect.tag, True)
        side = self.sides[(effect.swap_id, effect.party)]
        if isinstance(effect, ProceedSide):
            return side.proceed(effect.tag)
        return side.output(effect.tag, side.machine.abort("aborted by the host"))

    def kinds(self) -> list[str]:
        out = []
        for effect in self.log:
            out.append(effect.kind if isinstance(effect, Report) else type(effect).__name__)
        return out

    def reports(self, kind: str) -> list[Any]:
        return [e.data for e in self.log if isinstance(e, Report) and e.kind == kind]


def open_pair(
    driver: SwapDriver, k: int = 3, swap_id: str = SWAP, owner: str = "bob", **kw: Any
) -> tuple[list[Chunk], list[Chunk], list[SwapEffect]]:
    mine = make_chunks("alice", "TKN@31338", k, first=len(driver.get_swap_ids()) * 100)
    theirs = make_chunks(owner, "ETH@31337", k)
    effects = driver.open_pair(
        swap_id, requester="alice", owner=owner, requester_chunks=mine, owner_chunks=theirs, **kw
    )
    return mine, theirs, effects


def snapshot(driver: SwapDriver) -> Any:
    """Everything a refused input must leave as it was."""
    tallies = [
        (s, p, driver.get_tally(s, p))
        for s in driver.get_swap_ids()
        for p in ("alice", "bob", "carol")
        if _has(driver, s, p)
    ]
    phases = [driver.get_pair_phase(s) for s in driver.get_swap_ids()]
    return driver.get_pending(), tallies, phases


def _has(driver: SwapDriver, swap_id: str, party: str) -> bool:
    try:
        driver.get_tally(swap_id, party)
    except InvalidRequest:
        return False
    return True


# --- the normal exchange ---------------------------------------------------------------------


def test_a_full_exchange_delivers_sweeps_and_proceeds_one_key_at_a_time() -> None:
    driver = SwapDriver()
    host = Host(driver)
    mine, theirs, effects = open_pair(driver, k=3)
    assert [type(e) for e in effects] == [OpenSide, OpenSide]
    b, a = effects
    assert isinstance(a, OpenSide) and isinstance(b, OpenSide)
    assert (b.party, b.role, b.mine, b.theirs) == ("bob", "B", tuple(theirs), tuple(mine))
    assert (a.party, a.role, a.counterparty) == ("alice", "A", "bob")
    host.run(effects)
    one_round = ["DeliverKey", "SweepChunk", "ProceedSide"]
    assert host.kinds() == ["OpenSide", "OpenSide", "swap-open", *one_round * 6]
    assert host.reports("swap-open") == [
        {"contract": SWAP, "requester": "alice", "owner": "bob", "chunks_each": 3}
    ]
    alice, bob = driver.get_tally(SWAP, "alice"), driver.get_tally(SWAP, "bob")
    assert alice.given == tuple(c.chunk_id for c in mine) == bob.received
    assert bob.given == tuple(c.chunk_id for c in theirs) == alice.received == alice.swept
    assert alice.finished == bob.finished == "completed"
    assert alice.exposure_usd_e8 == bob.exposure_usd_e8 == 0
    assert alice.double_spent == () and alice.compensated == 0
    assert alice.phase is bob.phase is SidePhase.EXCHANGING
    # every requester sweep is insured (the matcher booked the owner's chunks); not the owner's
    sweeps = [e for e in host.log if isinstance(e, SweepChunk)]
    assert {e.insured for e in sweeps if e.party == "alice"} == {True}
    assert {e.insured for e in sweeps if e.party == "bob"} == {False}
    assert driver.is_quiet(SWAP)
    assert driver.close_pair(SWAP) == [
        Report("swap-pair", {"contract": SWAP, "owner": "bob", "exposure_usd": 0.0})
    ]
    assert driver.get_pair_phase(SWAP) is PairPhase.CLOSED


def test_the_requester_is_never_more_than_one_chunk_ahead_along_the_way() -> None:
    driver = SwapDriver()
    host = Host(driver)
    _, _, effects = open_pair(driver, k=4)
    stack = list(reversed(effects))
    while stack:
        answer = host.carry_out(stack.pop())
        if answer is not None:
            stack.extend(reversed(driver.process(answer)))
        assert 0 <= driver.get_tally(SWAP, "alice").exposure_usd_e8 <= CHUNK
        assert driver.get_tally(SWAP, "bob").exposure_usd_e8 <= 0


# --- stalls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 1, 2])
def test_an_owner_that_stalls_leaves_the_requester_one_chunk_out(after: int) -> None:
    driver = SwapDriver()
    host = Host(driver)
    _, _, effects = open_pair(driver, k=3, stall_after={"bob": after})
    host.run(effects)
    assert host.reports("swap-stall") == [{"contract": SWAP, "owner": "bob", "after": after}]
    alice, bob = driver.get_tally(SWAP, "alice"), driver.get_tally(SWAP, "bob")
    assert (len(alice.given), len(alice.received)) == (after + 1, after)
    assert len(bob.given) == after + 1  # made the key it then kept to itself
    assert alice.exposure_usd_e8 == CHUNK
    assert bob.phase is SidePhase.STALLED and alice.phase is SidePhase.EXCHANGING
    assert driver.is_quiet(SWAP)
    assert driver.close_pair(SWAP)[0].data["exposure_usd"] == CHUNK / USD


def test_a_requester_that_stalls_at_once_gives_nothing_away() -> None:
    driver = SwapDriver()
    host = Host(driver)
    _, _, effects = open_pair(driver, k=2, stall_after={"alice": 0})
    host.run(effects)
    assert host.reports("swap-stall") == [{"contract": SWAP, "requester": "alice", "after": 0}]
    assert not any(isinstance(e, DeliverKey) for e in host.log)
    alice, bob = driver.get_tally(SWAP, "alice"), driver.get_tally(SWAP, "bob")
    assert len(alice.given) == 1 and bob.received == ()
    assert alice.exposure_usd_e8 == CHUNK  # its vault made the key; its host kept it
    assert alice.phase is SidePhase.STALLED


def test_a_driver_wide_stall_counts_over_every_pair_of_the_party() -> None:
    driver = SwapDriver(stall_after={"bob": 1})
    host = Host(driver)
    host.run(open_pair(driver, k=1, swap_id="s/1")[2])
    host.run(open_pair(driver, k=1, swap_id="s/2")[2])
    assert driver.get_tally("s/1", "bob").finished == "completed"
    assert driver.get_tally("s/2", "bob").phase is SidePhase.STALLED
    assert host.reports("swap-stall") == [{"contract": "s/2", "owner": "bob", "after": 1}]


# --- double spends ---------------------------------------------------------------------------


def test_an_emptied_chunk_is_reported_and_the_requester_aborts_that_pair() -> None:
    driver = SwapDriver()
    mine, theirs, effects = open_pair(driver, k=3)
    host = Host(driver, emptied=[theirs[1].chunk_id])  # b_2 was swept by bob first
    host.run(effects)
    assert host.reports("swap-abort") == [{"contract": SWAP, "by": "alice"}]
    kinds = host.kinds()
    at = kinds.index("AbortSide")
    assert kinds[at - 1 : at + 2] == ["SweepChunk", "AbortSide", "swap-abort"]
    assert "ProceedSide" not in kinds[at:]
    alice = driver.get_tally(SWAP, "alice")
    assert alice.double_spent == (theirs[1].chunk_id,) and alice.compensated == CHUNK
    assert alice.swept == (theirs[0].chunk_id,)
    assert (len(alice.given), len(alice.received)) == (2, 2)  # a_3 held back, never made
    assert alice.phase is SidePhase.ABORTED and alice.finished == "aborted"
    assert host.sides[(SWAP, "alice")].machine.status() is SwapStatus.ABORTED
    assert driver.is_quiet(SWAP)


def test_an_owner_that_finds_its_chunk_empty_aborts_without_compensation() -> None:
    driver = SwapDriver()
    mine, _, effects = open_pair(driver, k=2)
    host = Host(driver, emptied=[mine[0].chunk_id])
    host.run(effects)
    assert host.reports("swap-abort") == [{"contract": SWAP, "by": "bob"}]
    bob = driver.get_tally(SWAP, "bob")
    assert bob.double_spent == (mine[0].chunk_id,) and bob.compensated == 0
    assert bob.given == () and driver.get_tally(SWAP, "alice").exposure_usd_e8 == CHUNK


def test_a_side_is_aborted_once_even_if_more_sweeps_fail() -> None:
    """Sweeps held for the schedule (the property test's way, with bare machines that
    release at once): after the requester's side was aborted, a later failed sweep of it
    asks for no second abort (its compensation still counts)."""
    driver = SwapDriver()
    _, theirs, effects = open_pair(driver, k=2)
    open_b, open_a = effects
    assert isinstance(open_a, OpenSide) and isinstance(open_b, OpenSide)
    driver.process(SideOutput(open_b.tag))
    (_, deliver_a1) = driver.process(SideOutput(open_a.tag, (OutgoingKey("alice:TKN@31338:0"),)))
    assert isinstance(deliver_a1, DeliverKey)
    b1, b2 = (c.chunk_id for c in theirs)
    (_, deliver_b1) = driver.process(
        SideOutput(deliver_a1.tag, (OutgoingKey(b1),), (deliver_a1.chunk.chunk_id,))
    )
    assert isinstance(deliver_b1, DeliverKey)
    sweep_b1, deliver_a2 = driver.process(
        SideOutput(deliver_b1.tag, (OutgoingKey("alice:TKN@31338:1"),), (b1,))
    )
    assert isinstance(sweep_b1, SweepChunk) and isinstance(deliver_a2, DeliverKey)
    abort, report = driver.process(SweepResult(sweep_b1.tag, False, 7))
    assert isinstance(abort, AbortSide) and report == Report(
        "swap-abort", {"contract": SWAP, "by": "alice"}
    )
    assert driver.process(SideOutput(abort.tag, finished="aborted")) == []
    sweep_a2, deliver_b2 = driver.process(
        SideOutput(deliver_a2.tag, (OutgoingKey(b2),), (deliver_a2.chunk.chunk_id,))
    )
    assert isinstance(sweep_a2, SweepChunk) and isinstance(deliver_b2, DeliverKey)
    (sweep_b2,) = driver.process(SideOutput(deliver_b2.tag, (), (b2,)))
    assert isinstance(sweep_b2, SweepChunk)
    assert driver.process(SweepResult(sweep_b2.tag, False, 3)) == []
    alice = driver.get_tally(SWAP, "alice")
    assert alice.compensated == 10 and alice.double_spent == (b1, b2)
    assert alice.phase is SidePhase.ABORTED


# --- refused deliveries ----------------------------------------------------------------------


def test_a_refused_delivery_changes_no_tally() -> None:
    driver = SwapDriver()
    _, _, (open_b, open_a) = open_pair(driver, k=1)
    assert isinstance(open_a, OpenSide) and isinstance(open_b, OpenSide)
    driver.process(SideOutput(open_b.tag))
    _, deliver = driver.process(SideOutput(open_a.tag, (OutgoingKey("alice:TKN@31338:0"),)))
    assert isinstance(deliver, DeliverKey)
    assert driver.process(SideRefused(deliver.tag, "aborted")) == []
    assert driver.get_tally(SWAP, "bob").received == ()
    assert driver.get_tally(SWAP, "alice").exposure_usd_e8 == CHUNK
    assert driver.is_quiet(SWAP)


# --- hostile inputs --------------------------------------------------------------------------


def opened_driver() -> tuple[SwapDriver, DeliverKey, list[Chunk], list[Chunk]]:
    """A pair with a_1 on its way to bob."""
    driver = SwapDriver()
    mine, theirs, (open_b, open_a) = open_pair(driver, k=2)
    assert isinstance(open_a, OpenSide) and isinstance(open_b, OpenSide)
    driver.process(SideOutput(open_b.tag))
    _, deliver = driver.process(SideOutput(open_a.tag, (OutgoingKey(mine[0].chunk_id),)))
    assert isinstance(deliver, DeliverKey)
    return driver, deliver, mine, theirs


def hostile_inputs(
    deliver: DeliverKey, mine: list[Chunk], theirs: list[Chunk]
) -> list[tuple[str, Any]]:
    a1, a2 = (c.chunk_id for c in mine)
    b1, b2 = (c.chunk_id for c in theirs)
    tag = deliver.tag
    return [
        ("unknown tag", SideOutput("deliver/999")),
        ("a tag of another kind", SweepResult("open/1", True)),
        ("a sweep result for a delivery", SweepResult(tag, True)),
        ("not an answer", "hello"),
        ("a release of the counterparty's chunk", SideOutput(tag, (OutgoingKey(a2),), (a1,))),
        ("a release of an unknown chunk", SideOutput(tag, (OutgoingKey("x:9"),), (a1,))),
        ("the same key twice", SideOutput(tag, (OutgoingKey(b1), OutgoingKey(b1)), (a1,))),
        ("a sweep of a chunk not received", SideOutput(tag, (), (a2,))),
        ("a sweep of the side's own chunk", SideOutput(tag, (), (b2,))),
        ("a sweep asked twice", SideOutput(tag, (), (a1, a1))),
        ("an unknown outcome", SideOutput(tag, finished="won")),
        ("a release that is no key", SideOutput(tag, ("b1",), (a1,))),  # type: ignore[arg-type]
        ("releases that are no sequence", SideOutput(tag, None, (a1,))),  # type: ignore[arg-type]
    ]


def test_hostile_answers_are_refused_and_change_nothing() -> None:
    driver, deliver, mine, theirs = opened_driver()
    for what, answer in hostile_inputs(deliver, mine, theirs):
        before = snapshot(driver)
        with pytest.raises(SwapInputRefused):
            driver.process(answer)
        assert snapshot(driver) == before, what
    # the genuine answer is still taken afterwards, once
    a1, b1 = mine[0].chunk_id, theirs[0].chunk_id
    effects = driver.process(SideOutput(deliver.tag, (), (a1,)))
    assert [type(e) for e in effects] == [SweepChunk]
    before = snapshot(driver)
    with pytest.raises(SwapInputRefused):  # a duplicate outcome
        driver.process(SideOutput(deliver.tag, (), (a1,)))
    assert snapshot(driver) == before
    (sweep,) = effects
    assert isinstance(sweep, SweepChunk)
    for bad in (
        SweepResult(sweep.tag, True, 5),  # paid for a sweep that worked
        SweepResult(sweep.tag, False, 5),  # paid to the owner's side, which is not insured
        SweepResult(sweep.tag, False, -1),
        SweepResult(sweep.tag, "yes"),  # type: ignore[arg-type]
        SideRefused(sweep.tag),  # only a delivery may be refused
    ):
        with pytest.raises(SwapInputRefused):
            driver.process(bad)
        assert snapshot(driver) == before, bad
    (proceed,) = driver.process(SweepResult(sweep.tag, True))
    assert isinstance(proceed, ProceedSide)
    assert len(driver.process(SideOutput(proceed.tag, (OutgoingKey(b1),)))) == 1


def test_unasked_outputs_for_unknown_swaps_or_parties_are_refused() -> None:
    driver, deliver, mine, _ = opened_driver()
    before = snapshot(driver)
    for swap_id, party, output in [
        ("swap:nope/bob", "bob", SideOutput("")),
        (SWAP, "mallory", SideOutput("", (OutgoingKey(mine[1].chunk_id),))),
        (SWAP, "alice", SideOutput(deliver.tag)),  # an answer passed off as unasked
        (SWAP, "alice", SideOutput("", (OutgoingKey(mine[0].chunk_id),))),  # released twice
        (SWAP, "alice", SideOutput("", (), (mine[1].chunk_id,))),
    ]:
        with pytest.raises(SwapInputRefused):
            driver.on_side_output(swap_id, party, output)
        assert snapshot(driver) == before, (swap_id, party, output)
    # a genuine tick: the requester's side aborted at its deadline
    assert driver.on_side_output(SWAP, "alice", SideOutput("", finished="aborted")) == []
    assert driver.get_tally(SWAP, "alice").finished == "aborted"
    with pytest.raises(SwapInputRefused):  # it cannot end twice
        driver.on_side_output(SWAP, "alice", SideOutput("", finished="completed"))


def test_bad_calls_from_the_driver_s_own_host_are_invalid_requests() -> None:
    driver, _, mine, theirs = opened_driver()
    with pytest.raises(InvalidRequest):
        driver.close_pair(SWAP)  # a delivery is in flight
    with pytest.raises(InvalidRequest):
        driver.open_pair(
            SWAP, requester="alice", owner="bob", requester_chunks=mine, owner_chunks=theirs
        )
    for kwargs in (
        {"requester": "bob", "owner": "bob"},
        {"requester_chunks": []},
        {"owner_chunks": mine},  # a chunk on both sides
        {"stall_after": {"carol": 1}},
        {"stall_after": {"bob": -1}},
        {"stall_after": {"bob": True}},
    ):
        args: dict[str, Any] = {
            "requester": "alice",
            "owner": "bob",
            "requester_chunks": mine,
            "owner_chunks": theirs,
        }
        args.update(kwargs)
        with pytest.raises(InvalidRequest):
            driver.open_pair("swap:2/bob", **args)
    assert driver.get_swap_ids() == [SWAP]
    with pytest.raises(InvalidRequest):
        driver.get_tally("swap:none", "alice")
    with pytest.raises(InvalidRequest):
        SwapDriver(stall_after={"bob": -2})


# --- whatever comes in, a typed refusal or a step, never a crash ------------------------------


answers = st.one_of(
    st.builds(
        SideOutput,
        tag=st.sampled_from(["open/1", "open/2", "deliver/3", "sweep/4", "x", ""]),
        releases=st.lists(
            st.builds(OutgoingKey, st.sampled_from(["alice:TKN@31338:0", "bob:ETH@31337:0", "?"]))
        ).map(tuple),
        sweeps=st.lists(st.sampled_from(["alice:TKN@31338:0", "bob:ETH@31337:0", "?"])).map(tuple),
        finished=st.sampled_from(["", "completed", "aborted", "??"]),
    ),
    st.builds(SideRefused, tag=st.sampled_from(["open/1", "deliver/3", "sweep/4"])),
    st.builds(
        SweepResult,
        tag=st.sampled_from(["sweep/4", "sweep/5", "deliver/3"]),
        swept=st.booleans(),
        compensated=st.integers(-2, 2),
    ),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(inputs=st.lists(answers, max_size=12))
def test_any_answer_is_a_step_or_a_typed_refusal(inputs: list[SwapAnswer]) -> None:
    driver = SwapDriver()
    open_pair(driver, k=1)
    for answer in inputs:
        before = snapshot(driver)
        try:
            effects = driver.process(answer)
        except SwapInputRefused:
            assert snapshot(driver) == before
            continue
        kinds = (Report, OpenSide, DeliverKey, SweepChunk, ProceedSide, AbortSide)
        assert all(isinstance(effect, kinds) for effect in effects)
        for party in ("alice", "bob"):
            assert driver.get_tally(SWAP, party).exposure_usd_e8 <= CHUNK
