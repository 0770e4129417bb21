"""Honest users' losses never exceed the insured amount: the key-release contracts under
random schedules of releases, sweeps, double spends and stalls.

The model
---------
Each example draws a matcher policy, 3-6 owners (honest; *compromised*: its host sweeps
some of the keys it releases before the receiver can; or *stalling*: its host stops
delivering its releases after a random number of them), their bonds and chunk counts, and
2-3 requesters making 1-3 requests of 1-10 chunks each. A driver then interleaves, one
action at a time:

* a requester's next request: ``match`` and ``accept`` (now and then ``decline``), then one
  pairwise tit-for-tat swap per owner in the offer, the requester as A giving fresh chunks
  of another asset, the owner as B (as ``sealbridge.devnet.keyrelease`` wires them);
* delivering a pending key release to the other side's machine (a compromised owner may
  first send a key that opens nothing, which ``verify_chunk_key`` must refuse);
* a compromised owner racing to sweep a key it released, before its victim does;
* a pending sweep: a requester's sweep that works settles the chunk; one that finds the
  funds gone reports the double spend with the observation read off the ledger, and the
  requester aborts that pairwise swap;
* a requester's deadline tick: the clock jumps to its earliest open deadline and every
  machine is ticked;
* a *forged client request* for a requester (issue 15): a request naming it but signed by
  another key, a replay of its last request, one signed for another service or action,
  or its own signature over a body changed afterwards. Every requester's real ``match``
  and ``accept`` are signed with its wallet key and go through
  :func:`~sealbridge.keyrelease.auth.verify_client_request` (the matcher program's check:
  signature, service, action, a nonce above the last one taken, the signer being the
  requester); a forgery must be refused before the matcher sees it;
* a *crash* (issue 15): every process stops; the matcher's host hands back a sealed state
  it kept (a snapshot after every step, tagged with the anchored version: ``match``,
  ``accept`` and ``report`` move it) -- the newest, or one from before an anchored change,
  which is refused (the StateAnchor rule; on a real chain in ``test_vault_rollback.py``)
  -- and the matcher is rebuilt from the newest with ``MatcherCore.from_snapshot``, every
  pairwise swap's machines with ``TitForTatSwap.from_state``; the run goes on with them;
* a *claim* (issue 15): a requester's host asks to be paid twice -- it reports again, or
  settles as swept, a chunk it was compensated for (a claim followed by a sweep), or it
  reports a chunk it received whose funds are still at the address (a false claim); each
  must be refused and change nothing.

The hosts' side of every pairwise swap -- which release to deliver, when a stalling
host walks away (after ``stall_after`` of its keys over all its pairs), what a delivery's sweeps
ask for, abort or proceed, and the tallies -- is the devnet's own policy,
:class:`~sealbridge.keyrelease.swap_driver.SwapDriver`; this test carries out its
decisions against the machines and the ledger, holding its deliveries and sweeps for the
schedule to pick from (``KeyReleaseDevnet.run_swap`` runs them depth first). The machines
are driven directly, so a party releases its next key as soon as its machine allows,
before it swept what it received (``ProceedSide`` has nothing to do); the vault adds a
sweep-before-release rule on top (``VaultProgram.proceed``), which only removes schedules
from this set.

What runs for real: ``MatcherCore`` (offers, risk limits, settlement, reports, slashes,
bans, the pool), ``SwapDriver``, both ``TitForTatSwap`` machines of every pair, and
``verify_chunk_key`` on
real secp256k1 keys (``os.urandom``, addresses derived here with coincurve and keccak). The
one stand-in is :class:`Ledger`: the test's model of the two chains, *not* a mock of a
sealbridge component. It maps each chunk id to its deposit balance and to who holds its
funds, moves them only on a sweep signed by a key that opens the address, and is where
the matcher host's ``ChainObservation`` comes from.

Invariants (after every step, and at the end of each example):

1. Insurance: for every requester (they are all honest), its loss to double spends minus
   the compensation it received is at most the ``uncovered_usd_e8`` the matcher reported
   for it; with ``slash_multiple_bps >= 10000`` and every offender's bond >= its peak
   exposure, nothing is uncovered. At the end, a requester's net loss is at most that
   uncovered amount plus one chunk per pairwise swap that did not complete, and an honest
   owner loses nothing.
2. Tit-for-tat: for every honest party in every pairwise swap, value released minus value
   received (counted by the swap driver, and equal to the machine's own exposure) is at
   most one chunk, stalls included.
3. Conservation: the ledger's total of each asset never changes (funds move, never appear
   or vanish) and every deposit holds all or nothing; the pool equals fees + slashed -
   compensated and is never negative; bonds + pool + compensation only grow by fees.
4. A banned owner is never allocated again (and the matcher says it is banned).
5. No forged client request is ever taken, and the matcher's state is what it was.
6. No older sealed state is restored, a restored matcher equals the one that crashed,
   and no claim pays or settles a chunk twice (the matcher's state is what it was).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import coincurve
import msgspec
import pytest
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.effects import Report
from sealbridge.core.encoding import decode, encode
from sealbridge.keyrelease.auth import (
    ClientRefused,
    SignedRequest,
    sign_client_request,
    verify_client_request,
)
from sealbridge.keyrelease.errors import ExchangeViolation, InsufficientLiquidity, ReportRejected
from sealbridge.keyrelease.exchange import (
    ReleaseChunkKey,
    SwapFinished,
    SwapStatus,
    Sweep,
    TitForTatSwap,
)
from sealbridge.keyrelease.matcher import (
    BPS,
    ChainObservation,
    ChunkState,
    DoubleSpendReport,
    MatcherCore,
    MatcherPolicy,
    MatcherSnapshot,
    Penalty,
    WrongState,
)
from sealbridge.keyrelease.swap_driver import (
    AbortSide,
    DeliverKey,
    OpenSide,
    OutgoingKey,
    ProceedSide,
    SideOutput,
    SideRefused,
    SwapDriver,
    SwapEffect,
    SweepChunk,
    SweepResult,
)
from sealbridge.keyrelease.types import (
    Chunk,
    ChunkRequest,
    compute_chunk_amount,
    compute_chunk_id,
)

USD = 10**8
CHUNK = 100 * USD  # every chunk of either asset is worth this much
ETH = "ETH@31337"  # the owners' chunks: what requesters ask for
TKN = "TKN@31338"  # the requesters' chunks: what they give in return
KINDS = {ETH: "native", TKN: "erc20"}
BASE_UNITS = {
    ETH: compute_chunk_amount(CHUNK, 3_000 * USD, 18),
    TKN: compute_chunk_amount(CHUNK, 1 * USD, 6),
}
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_STEPS = 5_000
MAX_FORGERIES = 4  # per example
MAX_CRASHES = 3  # per example
MAX_CLAIMS = 4  # per example
MAX_SEALED = 64  # sealed states the host keeps

STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_loss_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how many schedules ran and what they held (visible even with -q)."""
    yield
    if not STATS["schedules"]:
        return
    line = (
        f"keyrelease losses: {STATS['schedules']} schedules, "
        f"{STATS['double_spends']} double spends, {STATS['stalls']} stalls, "
        f"{STATS['compensations']} compensations ({STATS['uncovered']} partly uncovered), "
        f"{STATS['completed']} pairwise swaps completed, {STATS['aborted']} aborted, "
        f"{STATS['forged']} forged keys refused, {STATS['forged_requests']} forged client "
        f"requests refused, {STATS['crashes']} crashes and restores "
        f"({STATS['older_restores_refused']} older sealed states refused), "
        f"{STATS['claims_then_sweeps_refused']} claims followed by sweeps or second claims "
        f"refused, {STATS['false_claims_refused']} false loss claims refused, "
        f"{STATS['violations']} violations"
    )
    plugins = request.config.pluginmanager
    reporter: Any = plugins.get_plugin("terminalreporter")
    capture: Any = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:  # pragma: no cover -- plugins disabled
        print(line)
        return
    with capture.global_and_fixture_disabled():  # past the output capture, even with -q
        reporter.write("\n")
        reporter.write_line(line)


# --- keys and the chain model ----------------------------------------------------------------


def address_of(secret: bytes) -> str:
    """The EIP-55 address a secp256k1 key opens (derived here, not by sealbridge)."""
    public = coincurve.PrivateKey(secret).public_key.format(compressed=False)
    return to_checksum_address(keccak(public[1:])[-20:])


def new_key() -> tuple[bytes, str]:
    while True:
        secret = os.urandom(32)
        if 0 < int.from_bytes(secret, "big") < SECP256K1_N:
            return secret, address_of(secret)


class ChainRefused(Exception):
    """The model chain refuses a transfer that the address's key did not sign."""


class Ledger:
    """The test's model of the two chains (not a mock of a sealbridge component).

    ``balance[chunk_id]`` is what the chunk's deposit address holds (base units) and
    ``holder[chunk_id]`` who controls those funds: ``""`` while they sit at the address,
    else the party whose sweep moved them to its ``wallets``. A sweep must be signed by a
    key that opens the address; the first one empties it, later ones find nothing."""

    def __init__(self) -> None:
        self.chunks: dict[str, Chunk] = {}
        self.balance: dict[str, int] = {}
        self.holder: dict[str, str] = {}
        self.wallets: Counter[tuple[str, str]] = Counter()  # (party, asset) -> base units
        self.minted: Counter[str] = Counter()  # asset -> base units ever deposited
        self.outflow: dict[str, tuple[str, str]] = {}  # chunk id -> (to address, tx hash)

    def fund(self, chunk: Chunk) -> None:
        self.chunks[chunk.chunk_id] = chunk
        self.balance[chunk.chunk_id] = chunk.amount
        self.holder[chunk.chunk_id] = ""
        self.minted[chunk.asset] += chunk.amount

    def sweep(self, chunk_id: str, secret: bytes, party: str, to_address: str) -> str | None:
        """Move the chunk's funds to ``party``; the tx hash, or None if it was empty."""
        chunk = self.chunks[chunk_id]
        if address_of(secret) != chunk.address:
            raise ChainRefused(f"that key does not sign for {chunk.address}")
        amount = self.balance[chunk_id]
        if amount == 0:
            return None
        tx = hashlib.sha256(f"{chunk_id}->{to_address}".encode()).hexdigest()
        self.balance[chunk_id] = 0
        self.holder[chunk_id] = party
        self.wallets[(party, chunk.asset)] += amount
        self.outflow[chunk_id] = (to_address, tx)
        return tx

    def observe(self, chunk_id: str) -> ChainObservation:
        """What the matcher's host reads on chain for the chunk's address."""
        to, tx = self.outflow.get(chunk_id, ("", ""))
        address = self.chunks[chunk_id].address
        return ChainObservation(
            balance=self.balance[chunk_id], outflow_to=to, outflow_tx=tx, address=address
        )

    def total(self, asset: str) -> int:
        at_rest = sum(b for c, b in self.balance.items() if self.chunks[c].asset == asset)
        return at_rest + sum(v for (_, a), v in self.wallets.items() if a == asset)

    def usd_held(self, party: str) -> int:
        return sum(v * CHUNK // BASE_UNITS[a] for (p, a), v in self.wallets.items() if p == party)


# --- scenarios -------------------------------------------------------------------------------


class Behaviour(StrEnum):
    HONEST = "honest"
    COMPROMISED = "compromised"  # its host sweeps some keys it released, first
    STALLS = "stalls"  # its host stops delivering its releases at some point


@dataclass(frozen=True)
class OwnerPlan:
    behaviour: Behaviour
    bond_usd_e8: int
    chunks: int
    stall_after: int = 0  # STALLS: releases delivered before its host walks away
    spend_bps: int = 0  # COMPROMISED: chance to double-spend each key it releases
    forge_bps: int = 0  # COMPROMISED: chance to send a key that opens nothing, first


@dataclass(frozen=True)
class RequestPlan:
    chunks: int
    window: int  # the pairwise swaps' deadline, in clock steps after the request
    decline: bool = False


@dataclass(frozen=True)
class Scenario:
    policy: MatcherPolicy
    owners: tuple[OwnerPlan, ...]
    requests: tuple[tuple[RequestPlan, ...], ...]  # per requester, in order


def make_policy(
    *,
    share_bps: int = 5000,
    fee_bps: int = 30,
    exposure_per_bond: int = 1,
    slash_multiple_bps: int = 20_000,
) -> MatcherPolicy:
    return MatcherPolicy(
        chunk_usd_e8={ETH: CHUNK, TKN: CHUNK},
        fee_bps=fee_bps,
        max_owner_share_bps=share_bps,
        max_vault_share_bps=share_bps,  # one vault per owner
        exposure_per_bond=exposure_per_bond,
        slash_multiple_bps=slash_multiple_bps,
        offer_ttl_s=10.0,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    policy = make_policy(
        share_bps=draw(st.sampled_from([2500, 3400, 5000, 10_000])),
        fee_bps=draw(st.sampled_from([0, 30, 500])),
        exposure_per_bond=draw(st.sampled_from([1, 1, 2])),
        slash_multiple_bps=draw(st.sampled_from([0, 5000, 10_000, 20_000])),
    )
    owners = []
    for _ in range(draw(st.integers(3, 6))):
        behaviour = draw(st.sampled_from(list(Behaviour)))
        compromised = behaviour is Behaviour.COMPROMISED
        owners.append(
            OwnerPlan(
                behaviour=behaviour,
                bond_usd_e8=draw(st.integers(0, 16)) * CHUNK + draw(st.sampled_from([0, 1])),
                chunks=draw(st.integers(1, 16)),
                stall_after=draw(st.integers(0, 8)) if behaviour is Behaviour.STALLS else 0,
                spend_bps=draw(st.sampled_from([3000, 7000, BPS])) if compromised else 0,
                forge_bps=draw(st.sampled_from([0, 2000])) if compromised else 0,
            )
        )
    requests = []
    for _ in range(draw(st.integers(2, 3))):
        plans = []
        for _ in range(draw(st.integers(1, 3))):
            plans.append(
                RequestPlan(
                    chunks=draw(st.integers(1, 10)),
                    window=draw(st.integers(10, 400)),
                    decline=draw(st.integers(0, 9)) == 0,
                )
            )
        requests.append(tuple(plans))
    return Scenario(policy=policy, owners=tuple(owners), requests=tuple(requests))


# --- the schedule driver ---------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    kind: str  # one of KINDS_ORDER
    index: int  # a requester, or a position in the pending list of that kind


KINDS_ORDER = ("deliver", "sweep", "race", "request", "tick", "forge", "crash", "claim")


class Driver(Protocol):
    def choose(self, actions: Sequence[Action]) -> Action: ...

    def coin(self, bps: int) -> bool: ...


class DrawnDriver:
    """Hypothesis picks each step: first a kind of action (weighted), then which one."""

    WEIGHTS = {
        "deliver": 24,
        "sweep": 16,
        "race": 8,
        "request": 4,
        "tick": 1,
        "forge": 2,
        "crash": 2,
        "claim": 2,
    }

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choose(self, actions: Sequence[Action]) -> Action:
        kinds = [k for k in KINDS_ORDER if any(a.kind == k for a in actions)]
        point = self.data.draw(st.integers(0, sum(self.WEIGHTS[k] for k in kinds) - 1))
        for kind in kinds:
            if point < self.WEIGHTS[kind]:
                break
            point -= self.WEIGHTS[kind]
        options = [a for a in actions if a.kind == kind]
        if len(options) == 1:
            return options[0]
        return options[self.data.draw(st.integers(0, len(options) - 1))]

    def coin(self, bps: int) -> bool:
        if bps <= 0 or bps >= BPS:
            return bps >= BPS
        return self.data.draw(st.integers(0, BPS - 1)) < bps


class PriorityDriver:
    """A fixed schedule: the first enabled action of the first kind in ``order``."""

    def __init__(self, order: Sequence[str], coin: bool = True) -> None:
        self.order = list(order)
        self.flip = coin

    def choose(self, actions: Sequence[Action]) -> Action:
        for kind in self.order:
            for action in actions:
                if action.kind == kind:
                    return action
        raise AssertionError(f"no action of the kinds {self.order} in {actions}")

    def coin(self, bps: int) -> bool:
        return self.flip and bps > 0


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Pair:
    """One pairwise swap: the requester is A, the owner is B (their tallies are the swap
    driver's)."""

    swap_id: str
    requester: str
    owner: str
    machines: dict[str, TitForTatSwap]  # party -> its side (built when the driver opens it)
    chunks: dict[str, Chunk]
    deadline: float
    finished: dict[str, SwapFinished] = field(default_factory=dict)

    def active(self) -> bool:
        return any(m.status() is SwapStatus.ACTIVE for m in self.machines.values())


class Run:
    """Everything one example did: the matcher, the pairs, the ledger and the tallies."""

    def __init__(self, scenario: Scenario, driver: Driver) -> None:
        self.scenario = scenario
        self.driver = driver
        self.policy = scenario.policy
        self.matcher = MatcherCore(scenario.policy)
        self.ledger = Ledger()
        self.now = 0.0
        self.keys: dict[str, dict[str, bytes]] = {}  # party -> chunk id -> key it knows
        self.account: dict[str, str] = {}  # party -> account (EIP-55)
        self.party_of: dict[str, str] = {}  # account -> party
        self.sweep_to: dict[str, str] = {}  # party -> the address its sweeps pay
        self.owner_plan: dict[str, OwnerPlan] = {}
        self.requesters: list[str] = []
        self.next_key: Counter[str] = Counter()
        self.funded: Counter[str] = Counter()  # party -> usd_e8 it deposited
        self.released: set[str] = set()  # chunk ids whose key its maker released
        self.pairs: dict[str, Pair] = {}
        # the hosts' decisions in every pairwise swap; a stalling owner's host walks away
        # after delivering ``stall_after`` of its keys, over all its pairs
        stalls = {
            f"o{i}": plan.stall_after
            for i, plan in enumerate(scenario.owners)
            if plan.behaviour is Behaviour.STALLS
        }
        self.swaps = SwapDriver(stall_after=stalls)
        self.releases: list[DeliverKey] = []  # deliveries the driver asked for, pending
        self.sweeps: list[SweepChunk] = []  # sweeps the driver asked for, pending
        self.races: list[tuple[str, str]] = []  # (compromised owner, chunk id)
        self.next_request: Counter[str] = Counter()
        self.offers: list[list[str]] = []  # parties in each accepted or declined offer
        self.penalties: list[Penalty] = []
        self.loss: Counter[str] = Counter()  # requester -> usd_e8 of chunks found gone
        self.paid: Counter[str] = Counter()  # requester -> compensation received
        self.uncovered: Counter[str] = Counter()  # requester -> uncovered, as reported
        self.exposure: Counter[str] = Counter()  # owner -> reserved + allocated usd_e8
        self.peak: Counter[str] = Counter()
        self.bond0: dict[str, int] = {}
        self.banned: set[str] = set()  # owner parties
        self.stalled: set[str] = set()
        self.unfilled = 0
        self.forged = 0
        self.wallet: dict[str, bytes] = {}  # party -> wallet key
        self.service = hashlib.sha256(b"matcher identity").digest()
        self.nonces: dict[str, int] = {}  # account (lowercase) -> last nonce taken
        self.last_signed: dict[str, SignedRequest] = {}  # requester -> its last request
        self.forgeries = 0
        # the matcher's sealed states as its host keeps them: (anchored version, blob); a
        # change with an irrevocable output (match, accept, report) moves the version
        self.anchored = 0
        self.sealed: list[tuple[int, bytes]] = []
        self.crashes = 0
        self.claims = 0
        self.compensated: list[tuple[str, str]] = []  # (requester, chunk id) paid once
        for i, plan in enumerate(scenario.owners):
            name = f"o{i}"
            self._add_party(name)
            self.owner_plan[name] = plan
            self.bond0[name] = plan.bond_usd_e8
            self.matcher.register_owner(self.account[name], plan.bond_usd_e8)
            self.matcher.add_chunks([self._fund(name, ETH) for _ in range(plan.chunks)])
        for j in range(len(scenario.requests)):
            name = f"r{j}"
            self._add_party(name)
            self.requesters.append(name)
            self.matcher.register_sweep_address(self.account[name], self.sweep_to[name])

    def _add_party(self, name: str) -> None:
        wallet, account = new_key()
        _, sweep_to = new_key()
        self.wallet[name] = wallet
        self.account[name] = account
        self.party_of[account] = name
        self.sweep_to[name] = sweep_to
        self.keys[name] = {}

    def _fund(self, party: str, asset: str) -> Chunk:
        """A fresh deposit key of ``party``'s vault holding one chunk of ``asset``."""
        secret, address = new_key()
        vault = hashlib.sha256(f"vault/{party}".encode()).hexdigest()
        chunk = Chunk(
            chunk_id=compute_chunk_id(vault, self.next_key[party]),
            owner=self.account[party],
            vault=vault,
            asset=asset,
            address=address,
            amount=BASE_UNITS[asset],
            usd_e8=CHUNK,
        )
        self.next_key[party] += 1
        self.ledger.fund(chunk)
        self.keys[party][chunk.chunk_id] = secret
        self.funded[party] += CHUNK
        return chunk

    def honest(self, party: str) -> bool:
        """Requesters and honest or stalling owners (a stall takes nothing)."""
        plan = self.owner_plan.get(party)
        return plan is None or plan.behaviour is not Behaviour.COMPROMISED

    # -- the schedule ---------------------------------------------------------------------

    def enabled(self) -> list[Action]:
        self.races = [(o, c) for o, c in self.races if self.ledger.balance[c] > 0]
        actions = [Action("deliver", i) for i in range(len(self.releases))]
        actions += [Action("sweep", i) for i in range(len(self.sweeps))]
        actions += [Action("race", i) for i in range(len(self.races))]
        for j, name in enumerate(self.requesters):
            if self.next_request[name] < len(self.scenario.requests[j]):
                actions.append(Action("request", j))
        waiting = {p.requester for p in self.pairs.values() if p.active()}
        actions += [Action("tick", j) for j, r in enumerate(self.requesters) if r in waiting]
        if actions and self.forgeries < MAX_FORGERIES:  # never what keeps a schedule going
            actions += [Action("forge", j) for j in range(len(self.requesters))]
        if actions and self.crashes < MAX_CRASHES:
            actions += [Action("crash", i) for i in range(len(self.restorable()))]
        if actions and self.claims < MAX_CLAIMS:
            actions += [Action("claim", i) for i in range(len(self.claimable()))]
        return actions

    def play(self) -> Run:
        self.check()
        self.seal()
        for _ in range(MAX_STEPS):
            actions = self.enabled()
            if not actions:
                break
            action = self.driver.choose(actions)
            self.now += 1.0
            getattr(self, f"do_{action.kind}")(action.index)
            self.check()
            self.seal()
        else:
            raise AssertionError(f"the schedule did not end in {MAX_STEPS} steps")
        self.check_end()
        return self

    def do_request(self, j: int) -> None:
        name = self.requesters[j]
        n = self.next_request[name]
        self.next_request[name] += 1
        plan = self.scenario.requests[j][n]
        request_id = f"{name}/{n}"
        request = ChunkRequest(
            request_id=request_id,
            requester=self.account[name],
            asset=ETH,
            usd_e8=plan.chunks * CHUNK,
            contract=f"swap:{request_id}",
        )
        self.take_signed(name, "match", encode(request), request.requester)
        try:
            offer = self.matcher.match(request, seed=request_id.encode(), now=self.now)
        except InsufficientLiquidity:
            self.unfilled += 1
            return
        self.anchored += 1
        owners = [self.party_of[c.owner] for c in offer.chunks]
        # invariant 4: a banned owner is never allocated again
        assert not self.banned & set(owners), f"banned {self.banned & set(owners)} allocated"
        assert len({c.chunk_id for c in offer.chunks}) == len(offer.chunks) == plan.chunks
        assert all(c.asset == ETH for c in offer.chunks)
        assert offer.fee_e8 == plan.chunks * CHUNK * self.policy.fee_bps // BPS
        self.offers.append(owners)
        for owner in owners:
            self.exposure[owner] += CHUNK
            self.peak[owner] = max(self.peak[owner], self.exposure[owner])
        if plan.decline:
            self.matcher.decline(request_id)
            for owner in owners:
                self.exposure[owner] -= CHUNK
            return
        self.take_signed(name, "accept", request_id.encode(), self.account[name])
        self.matcher.accept(request_id, self.now)
        self.anchored += 1
        by_owner: dict[str, list[Chunk]] = {}
        for chunk, owner in zip(offer.chunks, owners, strict=True):
            by_owner.setdefault(owner, []).append(chunk)
        for owner, theirs in by_owner.items():
            mine = [self._fund(name, TKN) for _ in theirs]
            swap_id = f"{offer.contract}/{owner}"
            deadline = self.now + plan.window
            chunks = {c.chunk_id: c for c in mine + theirs}
            self.pairs[swap_id] = Pair(swap_id, name, owner, {}, chunks, deadline)
            opened = self.swaps.open_pair(
                swap_id, requester=name, owner=owner, requester_chunks=mine, owner_chunks=theirs
            )
            self.carry_out(opened)

    # -- crashes, restores and claims ---------------------------------------------------------

    def seal(self) -> None:
        """What the matcher's host persists after every step: a sealed snapshot."""
        blob = encode(self.matcher.export_snapshot())
        if not self.sealed or self.sealed[-1][1] != blob:
            self.sealed.append((self.anchored, blob))
            del self.sealed[:-MAX_SEALED]

    def do_crash(self, i: int) -> None:
        """Every process crashes; the matcher's host offers the sealed state at ``i`` (the
        newest, or an older one). An older one is refused -- the StateAnchor holds a newer
        version (the rule this models is checked on a real chain by
        ``test_vault_rollback.py``) -- and the newest is restored. Every pairwise swap's
        machines are rebuilt from their snapshots. The run then goes on from the restored
        machines, so every invariant is checked on them."""
        self.crashes += 1
        version, blob = self.restorable()[i]
        if version < self.anchored:
            STATS["older_restores_refused"] += 1
            version, blob = self.sealed[-1]
        before = self.matcher.export_snapshot()
        restored = MatcherCore.from_snapshot(self.policy, decode(blob, MatcherSnapshot))
        assert restored.export_snapshot() == before
        self.matcher = restored
        STATS["crashes"] += 1
        for pair in self.pairs.values():
            for party, machine in list(pair.machines.items()):
                state = decode(encode(machine.to_state()), type(machine.to_state()))
                pair.machines[party] = TitForTatSwap.from_state(state)
                assert pair.machines[party].to_state() == machine.to_state()

    def restorable(self) -> list[tuple[int, bytes]]:
        """The sealed states a host may hand back: the newest, or one from before an
        anchored change. (One from after the newest anchored change but before later
        unanchored ones -- a decline, a settlement -- would be taken, and those changes
        lost: they only make the matcher more careful, which this model does not track.)"""
        return [s for s in self.sealed if s[0] < self.anchored] + self.sealed[-1:]

    def claimable(self) -> list[tuple[str, str, bool]]:
        """(requester, chunk id, paid already): chunks a hostile requester's host can try
        to be paid for twice -- a compensated one (settle it as swept, report it again) or
        one it received whose funds are still there (a false loss claim)."""
        paid = [(r, c, True) for r, c in self.compensated]
        waiting = [
            (p.party, p.chunk.chunk_id, False)
            for p in self.sweeps
            if p.party in self.requesters and self.ledger.balance[p.chunk.chunk_id] > 0
        ]
        return paid + waiting

    def do_claim(self, i: int) -> None:
        """A requester's host claims a loss it did not have, or sweeps after a claim."""
        self.claims += 1
        party, chunk_id, paid = self.claimable()[i]
        account = self.account[party]
        before = encode(self.matcher.export_snapshot())
        report = DoubleSpendReport(chunk_id=chunk_id, victim=account)
        attempts: list[Any] = [
            lambda: self.matcher.report_double_spend(report, self.ledger.observe(chunk_id))
        ]
        if paid:  # claimed and paid: it must not count as swept, nor be paid again
            attempts.append(lambda: self.matcher.settle(chunk_id, account))
        for attempt in attempts:
            try:
                attempt()
            except (ReportRejected, WrongState):
                STATS["claims_then_sweeps_refused" if paid else "false_claims_refused"] += 1
                continue
            raise AssertionError(f"{party} was paid or settled twice for {chunk_id}")
        assert encode(self.matcher.export_snapshot()) == before

    # -- client requests --------------------------------------------------------------------

    def verify(self, signed: SignedRequest, action: str, requester: str) -> str:
        """The matcher program's check of a client request (see MatcherProgram.match)."""
        account = verify_client_request(
            signed,
            service=self.service,
            action=action,
            last_nonce=lambda a: self.nonces.get(a.lower(), 0),
        )
        if account.lower() != requester.lower():
            raise ClientRefused("the request is signed by another account than its requester")
        return account

    def take_signed(self, name: str, action: str, body: bytes, requester: str) -> None:
        account = self.account[name]
        nonce = self.nonces.get(account.lower(), 0) + 1
        signed = sign_client_request(self.wallet[name], self.service, nonce, action, body)
        assert self.verify(signed, action, requester) == account
        self.nonces[account.lower()] = nonce
        self.last_signed[name] = signed

    def do_forge(self, j: int) -> None:
        """Someone acts for requester ``j``: each way must be refused before the matcher."""
        self.forgeries += 1
        victim = self.requesters[j]
        account = self.account[victim]
        body = encode(
            ChunkRequest(
                request_id=f"forged/{self.forgeries}",
                requester=account,
                asset=ETH,
                usd_e8=CHUNK,
                contract=f"swap:forged/{self.forgeries}",
            )
        )
        stranger, _ = new_key()
        nonce = self.nonces.get(account.lower(), 0) + 1
        own = sign_client_request(self.wallet[victim], self.service, nonce, "match", body)
        forged = [
            sign_client_request(stranger, self.service, nonce, "match", body),
            sign_client_request(self.wallet[victim], b"\x01" * 32, nonce, "match", body),
            sign_client_request(self.wallet[victim], self.service, nonce, "accept", body),
            SignedRequest(
                request=msgspec.structs.replace(own.request, body=body + b"\x00"),
                signature=own.signature,
            ),
        ]
        if victim in self.last_signed:
            forged.append(self.last_signed[victim])  # a replay
        before = encode(self.matcher.get_status())
        nonces = dict(self.nonces)
        for signed in forged:
            try:
                self.verify(signed, "match", account)
            except ClientRefused:
                STATS["forged_requests"] += 1
                continue
            raise AssertionError(f"a forged request for {victim} was taken: {signed}")
        # invariant 5: nothing moved
        assert self.nonces == nonces
        assert encode(self.matcher.get_status()) == before

    def carry_out(self, effects: Sequence[SwapEffect]) -> None:
        """Carry out the swap driver's decisions as the hosts would: deliveries and sweeps
        wait for the schedule; opening, proceeding and aborting a side happen at once."""
        stack = list(reversed(effects))
        while stack:
            effect = stack.pop()
            if isinstance(effect, Report):
                if effect.kind == "swap-stall":  # its host walks away: never delivered
                    self.stalled.add(effect.data.get("owner", effect.data.get("requester")))
                continue
            if isinstance(effect, DeliverKey):
                self.releases.append(effect)
                plan = self.owner_plan.get(effect.sender)
                if plan is not None and plan.behaviour is Behaviour.COMPROMISED:
                    if self.driver.coin(plan.spend_bps):
                        self.races.append((effect.sender, effect.chunk.chunk_id))
                continue
            if isinstance(effect, SweepChunk):
                self.sweeps.append(effect)
                continue
            pair = self.pairs[effect.swap_id]
            if isinstance(effect, OpenSide):
                role: Any = effect.role
                machine = TitForTatSwap(
                    effect.swap_id, role, effect.mine, effect.theirs, KINDS, pair.deadline
                )
                pair.machines[effect.party] = machine
                done = machine.start(self.now)
            elif isinstance(effect, AbortSide):
                # stop giving to a counterparty whose chunk was emptied, as the devnet does
                done = pair.machines[effect.party].abort("double spend")
            else:
                assert isinstance(effect, ProceedSide)
                done = []  # a bare machine released at once: nothing was held back
            output = self.side_output(pair, effect.party, effect.tag, done)
            stack.extend(reversed(self.swaps.process(output)))
            self.check_finished(pair, effect.party)

    def side_output(
        self, pair: Pair, party: str, tag: str, effects: Sequence[object]
    ) -> SideOutput:
        """What ``party``'s machine did, as its side reports it to the swap driver."""
        releases: list[OutgoingKey] = []
        sweeps: list[str] = []
        finished = ""
        for effect in effects:
            if isinstance(effect, ReleaseChunkKey):
                assert effect.to_role == ("B" if party == pair.requester else "A")
                self.released.add(effect.chunk_id)
                releases.append(OutgoingKey(effect.chunk_id))
            elif isinstance(effect, Sweep):
                sweeps.append(effect.chunk_id)
            elif isinstance(effect, SwapFinished):
                assert party not in pair.finished, f"{pair.swap_id} finished twice for {party}"
                pair.finished[party] = effect
                finished = effect.outcome
            else:
                raise AssertionError(f"unexpected effect {effect!r}")
        return SideOutput(tag, tuple(releases), tuple(sweeps), finished)

    def check_finished(self, pair: Pair, party: str) -> None:
        """A side that finished agrees with its machine and with the driver's tally."""
        effect = pair.finished.get(party)
        if effect is None:
            return
        machine = pair.machines[party]
        tally = self.swaps.get_tally(pair.swap_id, party)
        assert tally.finished == effect.outcome
        assert (effect.given, effect.received) == (machine.given, machine.received)
        assert (effect.given, effect.received) == (len(tally.given), len(tally.received))

    def do_deliver(self, i: int) -> None:
        release = self.releases.pop(i)
        pair = self.pairs[release.swap_id]
        receiver, chunk_id = release.receiver, release.chunk.chunk_id
        machine = pair.machines[receiver]
        plan = self.owner_plan.get(release.sender)
        if plan is not None and self.driver.coin(plan.forge_bps):
            forged, _ = new_key()  # a real key, of some other address
            before = machine.to_state()
            with pytest.raises(ExchangeViolation):
                machine.on_key(chunk_id, forged, self.now)
            assert machine.to_state() == before
            self.forged += 1
        secret = self.keys[release.sender][chunk_id]
        if machine.status() is not SwapStatus.ACTIVE:  # aborted: its vault refuses the key
            before = machine.to_state()
            with pytest.raises(ExchangeViolation):
                machine.on_key(chunk_id, secret, self.now)
            assert machine.to_state() == before
            self.carry_out(self.swaps.process(SideRefused(release.tag, "not active")))
            return
        effects = machine.on_key(chunk_id, secret, self.now)
        self.keys[receiver][chunk_id] = secret
        self.carry_out(self.swaps.process(self.side_output(pair, receiver, release.tag, effects)))
        self.check_finished(pair, receiver)

    def do_race(self, i: int) -> None:
        owner, chunk_id = self.races.pop(i)
        key = self.keys[owner][chunk_id]
        tx = self.ledger.sweep(chunk_id, key, owner, self.account[owner])
        assert tx is not None

    def do_sweep(self, i: int) -> None:
        pending = self.sweeps.pop(i)
        pair = self.pairs[pending.swap_id]
        party, chunk = pending.party, pending.chunk
        chunk_id = chunk.chunk_id
        tx = self.ledger.sweep(chunk_id, self.keys[party][chunk_id], party, self.sweep_to[party])
        if not pending.insured:  # the owner's side: the requester never double-spends
            assert party == pair.owner
            assert tx is not None, f"requester {pair.requester}'s chunk {chunk_id} was gone"
            self.carry_out(self.swaps.process(SweepResult(pending.tag, swept=True)))
            return
        assert party == pair.requester
        account = self.account[party]
        if tx is not None:
            self.matcher.settle(chunk_id, account)
            self.exposure[pair.owner] -= chunk.usd_e8
            self.carry_out(self.swaps.process(SweepResult(pending.tag, swept=True)))
            return
        self.loss[party] += chunk.usd_e8
        report = DoubleSpendReport(chunk_id=chunk_id, victim=account)
        penalty = self.matcher.report_double_spend(report, self.ledger.observe(chunk_id))
        assert (penalty.owner, penalty.chunk_id, penalty.victim) == (chunk.owner, chunk_id, account)
        assert penalty.compensation_usd_e8 + penalty.uncovered_usd_e8 == chunk.usd_e8
        assert 0 <= penalty.compensation_usd_e8 and 0 <= penalty.uncovered_usd_e8
        self.anchored += 1
        self.penalties.append(penalty)
        self.compensated.append((party, chunk_id))
        self.paid[party] += penalty.compensation_usd_e8
        self.uncovered[party] += penalty.uncovered_usd_e8
        self.exposure[pair.owner] -= chunk.usd_e8
        self.banned.add(pair.owner)
        # the driver aborts the requester's side of that pairwise swap
        paid = SweepResult(pending.tag, swept=False, compensated=penalty.compensation_usd_e8)
        self.carry_out(self.swaps.process(paid))

    def do_tick(self, j: int) -> None:
        name = self.requesters[j]
        self.now = max(
            self.now,
            min(p.deadline for p in self.pairs.values() if p.requester == name and p.active()),
        )
        for pair in self.pairs.values():
            for party, machine in pair.machines.items():
                effects = machine.on_tick(self.now)
                if effects:  # the side's output, unasked
                    output = self.side_output(pair, party, "", effects)
                    self.carry_out(self.swaps.on_side_output(pair.swap_id, party, output))
                    self.check_finished(pair, party)
        self.matcher.expire(self.now)

    # -- invariants -----------------------------------------------------------------------

    def check(self) -> None:
        try:
            self._check()
        except AssertionError:
            STATS["violations"] += 1
            raise

    def _check(self) -> None:
        status = self.matcher.get_status()
        # 1. insurance: what a victim lost and was not paid back, the matcher reported
        for name in self.requesters:
            account = self.account[name]
            assert self.loss[name] - self.paid[name] <= self.uncovered[name], name
            assert status.compensation_paid.get(account, 0) == self.paid[name]
        assert status.uncovered_usd_e8 == sum(self.uncovered.values())
        offenders = {self.party_of[p.owner] for p in self.penalties}
        if self.policy.slash_multiple_bps >= BPS and all(
            self.bond0[o] >= self.peak[o] for o in offenders
        ):
            assert all(p.uncovered_usd_e8 == 0 for p in self.penalties), self.penalties
        # 2. tit-for-tat: an honest party is never more than one chunk ahead in a pair
        for pair in self.pairs.values():
            for party, machine in pair.machines.items():
                exposure = self.swaps.get_tally(pair.swap_id, party).exposure_usd_e8
                assert exposure == machine.exposure_usd_e8, (pair.swap_id, party)
                if self.honest(party):
                    assert exposure <= CHUNK, (pair.swap_id, party, exposure)
                    assert exposure <= machine.exposure_bound_usd_e8
        # 3. conservation: on the chains, and in the matcher's books
        for asset in (ETH, TKN):
            assert self.ledger.total(asset) == self.ledger.minted[asset], asset
        for chunk_id, balance in self.ledger.balance.items():
            assert balance in (0, self.ledger.chunks[chunk_id].amount)
            assert (balance == 0) == (self.ledger.holder[chunk_id] != "")
        pool = status.pool_usd_e8
        assert pool == status.fees_usd_e8 + status.slashed_usd_e8 - status.compensated_usd_e8
        assert pool >= 0
        assert status.compensated_usd_e8 == sum(self.paid.values())
        bonds = sum(o.bond_usd_e8 for o in status.owners.values())
        assert bonds + pool + status.compensated_usd_e8 == (
            sum(self.bond0.values()) + status.fees_usd_e8
        )
        # 4. bans, and the matcher's view of every owner
        for name, plan in self.owner_plan.items():
            owner = status.owners[self.account[name]]
            assert owner.banned == (name in self.banned), name
            assert owner.exposure_usd_e8 == self.exposure[name], name
            if name in self.banned:
                assert owner.available_chunks == 0 and owner.reputation == 0
            else:
                assert owner.bond_usd_e8 == plan.bond_usd_e8, name

    def check_end(self) -> None:
        try:
            self._check_end()
        except AssertionError:
            STATS["violations"] += 1
            raise

    def _check_end(self) -> None:
        assert not self.releases and not self.sweeps and not self.swaps.get_pending()
        assert all(not pair.active() for pair in self.pairs.values())
        for pair in self.pairs.values():
            assert set(pair.finished) == {pair.requester, pair.owner}
        for name in self.requesters:
            unfinished = sum(
                1
                for p in self.pairs.values()
                if p.requester == name and p.machines[name].status() is not SwapStatus.COMPLETED
            )
            loss = self.funded[name] - self.value_of(name) - self.paid[name]
            assert loss <= self.uncovered[name] + unfinished * CHUNK, (name, loss, unfinished)
        for name in self.owner_plan:
            if self.honest(name):
                assert self.funded[name] - self.value_of(name) <= 0, name
        for pair in self.pairs.values():
            for chunk_id, chunk in pair.chunks.items():
                if chunk.asset != ETH:  # the owner's side of the pair
                    continue
                state = self.matcher.get_chunk(chunk_id).state
                swept = self.ledger.holder[chunk_id] == pair.requester
                gone = self.ledger.holder[chunk_id] == pair.owner
                received = self.keys[pair.requester].get(chunk_id) is not None
                if received and swept:
                    assert state == ChunkState.SPENT
                elif received and gone:
                    assert state == ChunkState.COMPENSATED
                else:
                    assert state == ChunkState.ALLOCATED

    def value_of(self, party: str) -> int:
        """usd_e8 ``party`` controls: what it swept, plus its deposits it never released."""
        kept = sum(
            CHUNK
            for chunk_id in self.keys[party]
            if self.ledger.chunks[chunk_id].owner == self.account[party]
            and chunk_id not in self.released
            and self.ledger.balance[chunk_id] > 0
        )
        return self.ledger.usd_held(party) + kept

    def tally(self) -> None:
        STATS["schedules"] += 1
        STATS["double_spends"] += len(self.penalties)
        STATS["stalls"] += len(self.stalled)
        STATS["compensations"] += sum(1 for p in self.penalties if p.compensation_usd_e8)
        STATS["uncovered"] += sum(1 for p in self.penalties if p.uncovered_usd_e8)
        STATS["forged"] += self.forged
        for pair in self.pairs.values():
            done = pair.machines[pair.requester].status() is SwapStatus.COMPLETED
            STATS["completed" if done else "aborted"] += 1


# --- the property ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, derandomize=True)
@given(scenario=scenarios(), data=st.data())
def test_honest_losses_never_exceed_the_insured_amount(
    scenario: Scenario, data: st.DataObject
) -> None:
    run = Run(scenario, DrawnDriver(data)).play()
    run.tally()


# --- one schedule each ---------------------------------------------------------------------


def test_a_double_spender_is_slashed_banned_and_its_victim_made_whole() -> None:
    """o0 double-spends every key it releases; the victim sweeps before it delivers more,
    loses the in-flight chunk only, is paid the emptied one, and o0 is never drawn again."""
    bond = 10 * CHUNK
    scenario = Scenario(
        policy=make_policy(share_bps=2500, slash_multiple_bps=20_000),
        owners=(
            OwnerPlan(Behaviour.COMPROMISED, bond, 4, spend_bps=BPS, forge_bps=BPS),
            *(OwnerPlan(Behaviour.HONEST, bond, 4) for _ in range(3)),
        ),
        requests=((RequestPlan(8, window=1000), RequestPlan(3, window=1000)),),
    )
    order = ("race", "sweep", "deliver", "request", "tick")
    run = Run(scenario, PriorityDriver(order)).play()
    run.tally()
    assert [sorted(owners) for owners in run.offers] == [
        ["o0", "o0", "o1", "o1", "o2", "o2", "o3", "o3"],
        ["o1", "o2", "o3"],
    ]
    assert len(run.penalties) == 1
    penalty = run.penalties[0]
    assert penalty.owner == run.account["o0"]
    assert (penalty.compensation_usd_e8, penalty.uncovered_usd_e8) == (CHUNK, 0)
    assert penalty.slashed_usd_e8 == 2 * CHUNK
    assert run.matcher.get_owner(run.account["o0"]).banned
    assert run.forged > 0
    for pair in run.pairs.values():
        side = pair.machines["r0"]
        if pair.owner == "o0":
            assert (side.status(), side.given, side.received) == (SwapStatus.ABORTED, 2, 1)
        else:
            assert side.status() is SwapStatus.COMPLETED
    assert run.loss["r0"] == CHUNK and run.paid["r0"] == CHUNK
    # gave a1 and a2, got b1 (emptied, paid back): the in-flight a2 is the whole loss
    assert run.funded["r0"] - run.value_of("r0") - run.paid["r0"] == CHUNK
    status = run.matcher.get_status()
    fees = 11 * CHUNK * 30 // BPS
    assert status.pool_usd_e8 == fees + 2 * CHUNK - CHUNK


def test_a_stalling_owner_costs_the_requester_one_chunk_at_most() -> None:
    """o0's host walks away after one release; the requester waits one chunk ahead until
    its deadline, aborts, and nobody is slashed."""
    bond = 10 * CHUNK
    scenario = Scenario(
        policy=make_policy(share_bps=3400),
        owners=(
            OwnerPlan(Behaviour.STALLS, bond, 4, stall_after=1),
            *(OwnerPlan(Behaviour.HONEST, bond, 4) for _ in range(2)),
        ),
        requests=((RequestPlan(6, window=50),),),
    )
    run = Run(scenario, PriorityDriver(("deliver", "sweep", "request", "tick"))).play()
    run.tally()
    assert sorted(run.offers[0]) == ["o0", "o0", "o1", "o1", "o2", "o2"]
    assert run.stalled == {"o0"} and not run.penalties
    for pair in run.pairs.values():
        side = pair.machines["r0"]
        if pair.owner == "o0":
            assert (side.status(), side.given, side.received) == (SwapStatus.ABORTED, 2, 1)
            assert side.exposure_usd_e8 == CHUNK
        else:
            assert side.status() is SwapStatus.COMPLETED
    assert run.funded["r0"] - run.value_of("r0") == CHUNK
    status = run.matcher.get_status()
    assert status.pool_usd_e8 == status.fees_usd_e8 == 6 * CHUNK * 30 // BPS
    assert not status.owners[run.account["o0"]].banned
