"""Matcher snapshots: a core restored from its snapshot behaves exactly like the original
for every later operation, exports stay canonical, and a malformed snapshot is refused."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from sealbridge.core.encoding import decode, encode
from sealbridge.keyrelease.errors import InvalidRequest, KeyReleaseError
from sealbridge.keyrelease.matcher import (
    SNAPSHOT_VERSION,
    ChunkSnapshot,
    ChunkState,
    DoubleSpendReport,
    MatcherCore,
    MatcherPolicy,
    MatcherSnapshot,
    OfferSnapshot,
    OfferState,
)
from tests.unit.test_keyrelease_matcher import (
    BTC,
    BTC_CHUNK,
    CHUNK,
    ETH,
    OTHER,
    REQUESTER,
    SWEEP,
    USD,
    Book,
    account,
    allocate,
    gone,
    make_core,
    make_policy,
    request,
    vault_of,
)

VICTIM = "0x" + "99" * 20
SWEEP_2 = "0x" + "5f" * 20


def restore(core: MatcherCore) -> MatcherCore:
    """Export, encode, decode and restore, checking the export is canonical."""
    blob = encode(core.export_snapshot())
    assert encode(core.export_snapshot()) == blob  # exporting twice: the same bytes
    restored = MatcherCore.from_snapshot(core.policy, decode(blob, MatcherSnapshot))
    assert encode(restored.export_snapshot()) == blob  # export -> import -> export
    assert restored.get_status() == core.get_status()
    assert get_indexes(restored) == get_indexes(core)
    return restored


def get_indexes(core: MatcherCore) -> list[Any]:
    """The derived indexes a draw reads (white box): book layout, counts, owner weights
    (trailing zero weights do not change a draw), open offers in order, next expiries."""
    books = []
    for asset, book in core._books.items():
        weights = list(book.tree.weights)
        while weights and weights[-1] == 0:
            weights.pop()
        layout = [
            (owner, vault, list(ids.items))
            for owner, vaults in book.by_owner.items()
            for vault, ids in vaults.items()
        ]
        books.append((asset, layout, sorted(book.counts.items()), weights, book.tree.total))
    live = sorted(entry for entry in core._expiry if entry[2] in core._open)
    return [books, list(core._open), live, sorted(core._owner_by_account)]


# --------------------------------------------------------------------------- lockstep


def outcome(call: Callable[[], object]) -> tuple[object, ...]:
    """What an operation did: its encoded result, or its typed refusal."""
    try:
        result = call()
    except KeyReleaseError as exc:
        return ("refused", type(exc).__name__, str(exc))
    if isinstance(result, msgspec.Struct):
        return ("ok", encode(result))
    return ("ok", result)


Op = tuple[Any, ...]

OPS: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 6), st.booleans()),
    st.tuples(
        st.just("add"),
        st.integers(0, 99),
        st.integers(0, 3),
        st.integers(1, 5),
        st.booleans(),
        st.integers(0, 9),
    ),
    st.tuples(st.just("bond"), st.integers(0, 99), st.integers(0, 3)),
    st.tuples(st.just("sweep"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(
        st.just("match"),
        st.integers(0, 3),
        st.integers(1, 7),
        st.booleans(),
        st.binary(max_size=3),
        st.integers(0, 9),
    ),
    st.tuples(
        st.just("check"), st.integers(0, 99), st.sampled_from([0.0, 3.0, 20.0]), st.booleans()
    ),
    st.tuples(st.just("accept"), st.integers(0, 99), st.booleans(), st.booleans()),
    st.tuples(st.just("decline"), st.integers(0, 99), st.booleans()),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 1.0, 4.0, 11.0])),
    st.tuples(st.just("settle"), st.integers(0, 999), st.booleans(), st.booleans()),
    st.tuples(st.just("reclaim"), st.integers(0, 999), st.booleans(), st.booleans()),
    st.tuples(
        st.just("report"),
        st.integers(0, 999),
        st.booleans(),
        st.sampled_from(["true", "full", "own", "victim", "sweep_tx"]),
    ),
    st.tuples(st.just("withdraw"), st.integers(0, 999), st.booleans()),
    st.tuples(st.just("query"), st.integers(0, 999)),
)


class Lockstep:
    """Applies each operation to every core, with its targets chosen on the first one
    (the original), and checks that every core answered alike."""

    def __init__(self, core: MatcherCore) -> None:
        self.cores = [core]
        self.book = Book()
        self.owners: list[str] = []
        self.chunk_ids: list[str] = []
        self.request_ids: list[str] = []
        self.now = 0.0
        self.next_request = 0

    @property
    def ref(self) -> MatcherCore:
        return self.cores[0]

    def fork(self) -> None:
        """Add a core restored from the last core's snapshot (a restore of a restore)."""
        self.cores = [self.ref, restore(self.cores[-1])]

    def seed(self, bonds: list[int], per_vault: int, btc: int) -> None:
        for bond in bonds:
            self.apply(("register", bond, False))
            owner = self.owners[-1]
            for vault in range(2):
                chunks = self.book.chunks(owner, vault_of(owner, vault), per_vault)
                chunks += self.book.chunks(owner, vault_of(owner, vault), btc, asset=BTC)
                self.run(partial(MatcherCore.add_chunks, chunks=chunks))
                self.chunk_ids.extend(c.chunk_id for c in chunks)

    def run(self, action: Callable[[MatcherCore], object]) -> tuple[object, ...]:
        results = [outcome(partial(action, core)) for core in self.cores]
        assert all(result == results[0] for result in results), results
        statuses = [encode(core.get_status()) for core in self.cores]
        assert all(status == statuses[0] for status in statuses)
        indexes = [get_indexes(core) for core in self.cores[1:]]
        assert all(index == get_indexes(self.ref) for index in indexes)
        return results[0]

    def pick_chunk(self, pick: int, aim: bool, state: ChunkState) -> str:
        chunks = self.chunk_ids
        if aim:
            chunks = [c for c in chunks if self.ref.get_chunk(c).state == state] or chunks
        return chunks[pick % len(chunks)] if chunks else "ff" * 32 + ":0"

    def pick_request(self, pick: int, aim: bool) -> str:
        requests = self.request_ids
        if aim:
            open_ = [r for r in requests if self.ref.get_offer(r).state == OfferState.OPEN]
            requests = open_ or requests
        return requests[pick % len(requests)] if requests else "nope"

    def requester(self, who: int) -> str:
        choices = [REQUESTER, OTHER, VICTIM] + self.owners[:1]  # an owner may ask too
        return choices[who % len(choices)]

    def apply(self, op: Op) -> None:  # noqa: C901 - one branch per operation
        kind = op[0]
        if kind == "register":
            _, bond_chunks, again = op
            if again and self.owners:  # the same account in another case is refused
                self.run(lambda core: core.register_owner(self.owners[0].lower(), CHUNK))
                return
            owner = account(len(self.owners))
            bond = bond_chunks * CHUNK + CHUNK // 2
            if self.run(lambda core: core.register_owner(owner, bond))[0] == "ok":
                self.owners.append(owner)
        elif kind == "add":
            _, pick, vault, n, btc, dup = op
            if not self.owners:
                return
            owner = self.owners[pick % len(self.owners)]
            # vault 3 is one enclave shared by every owner
            vault_id = vault_of("shared", 0) if vault == 3 else vault_of(owner, vault)
            chunks = self.book.chunks(owner, vault_id, n, asset=BTC if btc else ETH)
            if dup == 0 and self.chunk_ids:  # a duplicate makes the whole batch fail
                chunks.append(self.ref.get_chunk(self.chunk_ids[pick % len(self.chunk_ids)]).chunk)
            if self.run(lambda core: core.add_chunks(chunks))[0] == "ok":
                self.chunk_ids.extend(c.chunk_id for c in chunks)
        elif kind == "bond":
            _, pick, amount = op
            owner = self.owners[pick % len(self.owners)] if self.owners else "nobody"
            self.run(lambda core: core.add_bond(owner, amount * CHUNK))
        elif kind == "sweep":
            _, who, which = op
            address = [SWEEP, SWEEP_2, SWEEP.upper().replace("0X", "0x")][which]
            self.run(lambda core: core.register_sweep_address(self.requester(who), address))
        elif kind == "match":
            _, who, k, btc, seed, reuse = op
            n = self.next_request
            request_id = f"q{n * 7 % 10}-{n}"  # ids do not sort in the order they are made
            self.next_request += 1
            if reuse == 0 and self.request_ids:
                request_id = self.request_ids[-1]  # a used id is refused
            asked = request(request_id, k, self.requester(who), BTC if btc else ETH)
            now = self.now
            if self.run(lambda core: core.match(asked, seed=seed, now=now))[0] == "ok":
                self.request_ids.append(request_id)
        elif kind == "check":
            _, pick, margin, right = op
            request_id = self.pick_request(pick, True)
            who = REQUESTER if right else OTHER
            now = self.now
            self.run(
                lambda core: core.check_accept(request_id, now, requester=who, margin_s=margin)
            )
        elif kind == "accept":
            _, pick, aim, named = op
            request_id = self.pick_request(pick, aim)
            now = self.now
            if named and request_id in self.request_ids:
                who = self.ref.get_offer(request_id).offer.requester.upper().replace("0X", "0x")
                self.run(lambda core: core.accept(request_id, now, requester=who))
            else:
                self.run(lambda core: core.accept(request_id, now))
        elif kind == "decline":
            _, pick, aim = op
            request_id = self.pick_request(pick, aim)
            self.run(lambda core: core.decline(request_id))
        elif kind == "tick":
            self.now += op[1]
            now = self.now
            self.run(lambda core: core.expire(now))
        elif kind == "settle":
            _, pick, aim, right = op
            chunk_id = self.pick_chunk(pick, aim, ChunkState.ALLOCATED)
            holder = self.ref.get_chunk(chunk_id).holder if chunk_id in self.chunk_ids else ""
            who = holder if right else OTHER
            self.run(lambda core: core.settle(chunk_id, who))
        elif kind == "reclaim":
            _, pick, aim, right = op
            chunk_id = self.pick_chunk(pick, aim, ChunkState.ALLOCATED)
            owner = self.ref.get_chunk(chunk_id).chunk.owner if chunk_id in self.chunk_ids else ""
            who = owner.lower() if right else OTHER
            self.run(lambda core: core.reclaim(chunk_id, who))
        elif kind == "report":
            _, pick, aim, how = op
            chunk_id = self.pick_chunk(pick, aim, ChunkState.ALLOCATED)
            holder = self.ref.get_chunk(chunk_id).holder if chunk_id in self.chunk_ids else ""
            report = DoubleSpendReport(
                chunk_id=chunk_id,
                victim=OTHER if how == "victim" else holder,
                sweep_tx="0x" + "77" * 32 if how == "sweep_tx" else "",
            )
            observation = (
                gone(balance=10**17) if how == "full" else gone(to=SWEEP if how == "own" else OTHER)
            )
            self.run(lambda core: core.report_double_spend(report, observation))
        elif kind == "withdraw":
            _, pick, aim = op
            chunk_id = self.pick_chunk(pick, aim, ChunkState.AVAILABLE)
            owner = self.ref.get_chunk(chunk_id).chunk.owner if chunk_id in self.chunk_ids else ""
            self.run(lambda core: core.withdraw_chunk(chunk_id, owner))
        elif kind == "query":
            pick = op[1]
            chunk_id = self.pick_chunk(pick, False, ChunkState.AVAILABLE)
            request_id = self.pick_request(pick, False)
            owner = self.owners[pick % len(self.owners)] if self.owners else "nobody"
            self.run(lambda core: core.get_chunk(chunk_id))
            self.run(lambda core: core.get_offer(request_id))
            self.run(lambda core: core.get_owner(owner))
        else:  # pragma: no cover
            raise AssertionError(kind)

    def check_same(self) -> None:
        exports = [encode(core.export_snapshot()) for core in self.cores]
        assert all(export == exports[0] for export in exports)
        for chunk_id in self.chunk_ids:
            views = [core.get_chunk(chunk_id) for core in self.cores]
            assert all(view == views[0] for view in views)
        indexes = [get_indexes(core) for core in self.cores]
        assert all(index == indexes[0] for index in indexes)


def lockstep_policy(exposure_per_bond: int) -> MatcherPolicy:
    return make_policy(
        fee_bps=50,
        offer_ttl_s=10.0,
        slash_multiple_bps=15_000,
        max_reputation=102,
        exposure_per_bond=exposure_per_bond,
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bonds=st.lists(st.integers(1, 6), min_size=2, max_size=6),
    per_vault=st.integers(1, 4),
    btc=st.integers(0, 2),
    exposure_per_bond=st.integers(1, 2),
    ops=st.lists(OPS, min_size=5, max_size=80),
    cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_a_restored_core_behaves_exactly_like_the_original(
    bonds: list[int],
    per_vault: int,
    btc: int,
    exposure_per_bond: int,
    ops: list[Op],
    cuts: tuple[float, float],
) -> None:
    """Snapshot at a random point (and again, from the restored core, at a second one);
    then every remaining operation gives the same answer, error and status on all."""
    run = Lockstep(MatcherCore(lockstep_policy(exposure_per_bond)))
    run.seed(bonds, per_vault, btc)
    first, second = sorted(int(cut * len(ops)) for cut in cuts)
    for index, op in enumerate(ops):
        if index == first:
            run.fork()
        if index == second and index != first:
            run.fork()
        run.apply(op)
    if len(run.cores) == 1:
        run.fork()
    # a few draws on the final state: the same offers for the same seeds
    for i in range(3):
        run.apply(("match", i, 3, False, bytes([i]), 1))
    run.check_same()


@pytest.mark.parametrize("seed", range(3))
def test_long_schedules_restored_again_and_again(seed: int) -> None:
    """Long seeded schedules (hypothesis keeps its runs short): restore every so often,
    each time from the last restored core, and stay in lockstep with the original."""
    rng = random.Random(seed)
    run = Lockstep(MatcherCore(lockstep_policy(1 + seed % 2)))
    run.seed([rng.randint(1, 6) for _ in range(10)], rng.randint(2, 5), rng.randint(0, 3))
    makers: dict[Callable[[], Op], int] = {
        lambda: ("register", rng.randint(0, 6), rng.random() < 0.1): 1,
        lambda: ("add", rng.randrange(99), rng.randrange(4), rng.randint(1, 5),
                 rng.random() < 0.3, rng.randrange(10)): 2,
        lambda: ("bond", rng.randrange(99), rng.randint(0, 3)): 1,
        lambda: ("sweep", rng.randrange(4), rng.randrange(3)): 1,
        lambda: ("match", rng.randrange(4), rng.randint(1, 7), rng.random() < 0.3,
                 rng.randbytes(3), rng.randrange(10)): 5,
        lambda: ("check", rng.randrange(99), rng.choice([0.0, 3.0, 20.0]),
                 rng.random() < 0.8): 1,
        lambda: ("accept", rng.randrange(99), rng.random() < 0.9, rng.random() < 0.5): 2,
        lambda: ("decline", rng.randrange(99), rng.random() < 0.9): 1,
        lambda: ("tick", rng.choice([0.0, 0.0, 1.0, 3.0, 11.0])): 1,
        lambda: ("settle", rng.randrange(999), rng.random() < 0.9, rng.random() < 0.9): 2,
        lambda: ("reclaim", rng.randrange(999), rng.random() < 0.9, rng.random() < 0.9): 1,
        lambda: ("report", rng.randrange(999), rng.random() < 0.9,
                 rng.choice(["true", "true", "full", "own", "victim", "sweep_tx"])): 2,
        lambda: ("withdraw", rng.randrange(999), rng.random() < 0.9): 1,
        lambda: ("query", rng.randrange(999)): 1,
    }  # fmt: skip
    for step in range(800):
        if step % 40 == 20:
            run.fork()
        run.apply(rng.choices(list(makers), weights=list(makers.values()))[0]())
    run.check_same()
    status = run.ref.get_status()
    assert status.offers[OfferState.ACCEPTED] > 10 and status.offers[OfferState.EXPIRED] > 0
    assert status.chunks[ChunkState.SPENT] > 10 and status.compensated_usd_e8 > 0
    assert sum(status.chunks.values()) == len(run.chunk_ids)


# --------------------------------------------------------------------------- canonical form


def test_export_is_canonical_and_a_value() -> None:
    core, _ = make_core(owners=5)
    core.register_sweep_address(REQUESTER, SWEEP)
    allocate(core, "r", 4)
    snapshot = core.export_snapshot()
    blob = encode(snapshot)
    assert encode(core.export_snapshot()) == blob
    assert snapshot.version == SNAPSHOT_VERSION and snapshot.policy == core.policy
    core.match(request("later", 3), seed=b"l", now=1.0)  # the core moves on ...
    assert encode(snapshot) == blob  # ... its snapshot does not
    old = MatcherCore.from_snapshot(core.policy, snapshot)
    assert encode(old.export_snapshot()) == blob != encode(core.export_snapshot())


def test_an_empty_core_round_trips() -> None:
    core = MatcherCore(make_policy())
    restored = restore(core)
    assert restored.export_snapshot().chunks == [] and restored.get_status().owners == {}
    restored.register_owner(account(0), CHUNK)
    assert restored.get_owner(account(0)).reputation == 100


def test_the_book_order_is_kept() -> None:
    """Declines and reclaims move chunks to new slots; the draws depend on them, and the
    snapshot keeps them (a core rebuilt in the order chunks were added would differ)."""
    core, _ = make_core(owners=6, vaults=2, per_vault=6)
    for i in range(12):
        offer = core.match(request(f"d{i}", 5), seed=bytes([i]), now=0.0)
        if i % 3:
            core.decline(f"d{i}")
        else:
            core.accept(f"d{i}", 0.0)
            for chunk in offer.chunks[:2]:
                core.reclaim(chunk.chunk_id, chunk.owner)
    snapshot = core.export_snapshot()
    added = [entry.chunk.chunk_id for entry in snapshot.chunks]
    rank = {chunk_id: i for i, chunk_id in enumerate(added)}
    assert snapshot.available[ETH] != sorted(snapshot.available[ETH], key=rank.__getitem__)
    restored = restore(core)
    for i in range(30):
        asked = request(f"x{i}", 4)
        mine = core.match(asked, seed=bytes([i]), now=1.0)
        assert restored.match(asked, seed=bytes([i]), now=1.0) == mine
        core.decline(f"x{i}")
        restored.decline(f"x{i}")


def test_expiry_and_voiding_order_survive_a_restore() -> None:
    """Offers made at the same time expire in the order they were made, and a ban voids
    open offers in that order too (not in the order of their ids)."""
    core, _ = make_core(owners=8, vaults=2, per_vault=6)
    ids = ["m", "c", "x", "a", "k"]
    for request_id in ids:
        core.match(request(request_id, 4), seed=request_id.encode(), now=5.0)
    victim = allocate(core, "victim", 4).chunks[0]
    restored = restore(core)
    for twin in (core, restored):
        holding = [
            r for r in ids if victim.owner in {c.owner for c in twin.get_offer(r).offer.chunks}
        ]
        report = DoubleSpendReport(chunk_id=victim.chunk_id, victim=REQUESTER)
        assert twin.report_double_spend(report, gone()).voided_offers == holding
    assert encode(restored.export_snapshot()) == encode(core.export_snapshot())
    again = restore(core)
    left = [r for r in ids if core.get_offer(r).state == OfferState.OPEN]
    assert len(left) >= 2
    for twin in (core, again):
        assert twin.expire(66.0) == left


# --------------------------------------------------------------------------- hostile snapshots


def rich_core() -> tuple[MatcherCore, dict[str, Any]]:
    """A core with chunks in every state, a banned owner, open and closed offers of every
    kind, sweep addresses and a payout."""
    core, book = make_core(owners=6, vaults=2, per_vault=4, bond=1_000 * USD, fee_bps=100)
    core.register_sweep_address(REQUESTER, SWEEP)
    core.register_sweep_address(REQUESTER, SWEEP_2)
    core.add_chunks(book.chunks(account(0), vault_of(account(0), 7), 2, asset=BTC))
    core.add_chunks(book.chunks(account(1), vault_of(account(1), 7), 2, asset=BTC))
    accepted = allocate(core, "accepted", 8)
    spent, reclaimed, cheated = (c.chunk_id for c in accepted.chunks[:3])
    core.settle(spent, REQUESTER)
    core.reclaim(reclaimed, core.get_chunk(reclaimed).chunk.owner)
    cheat = core.get_chunk(cheated).chunk.owner
    core.report_double_spend(DoubleSpendReport(chunk_id=cheated, victim=REQUESTER), gone())
    allocated = next(
        c.chunk_id
        for c in accepted.chunks
        if c.owner != cheat and core.get_chunk(c.chunk_id).state == ChunkState.ALLOCATED
    )
    core.match(request("declined", 2), seed=b"d", now=1.0)
    core.decline("declined")
    core.match(request("expired", 2), seed=b"e", now=1.0)
    core.expire(100.0)
    open_offer = core.match(request("open", 4), seed=b"o", now=90.0)
    available = [c for c in core.export_snapshot().chunks if c.state == ChunkState.AVAILABLE.value]
    withdrawn = available[0].chunk
    core.withdraw_chunk(withdrawn.chunk_id, withdrawn.owner)
    status = core.get_status()
    assert all(status.chunks[state] > 0 for state in ChunkState)
    assert all(status.offers[state] > 0 for state in OfferState if state != OfferState.VOIDED)
    assert status.compensation_paid == {REQUESTER: CHUNK}
    assert core.get_chunk(allocated).state == ChunkState.ALLOCATED
    names = {
        "spent": spent,
        "allocated": allocated,
        "cheated": cheated,
        "cheat": cheat,
        "reserved": open_offer.chunks[0].chunk_id,
        "reserved_2": open_offer.chunks[1].chunk_id,
        "available": available[1].chunk.chunk_id,
        "withdrawn": withdrawn.chunk_id,
    }
    return core, names


Tamper = Callable[[MatcherSnapshot, dict[str, Any]], MatcherSnapshot]


def owner_index(snapshot: MatcherSnapshot, name: str) -> int:
    return next(i for i, o in enumerate(snapshot.owners) if o.owner == name)


def chunk_index(snapshot: MatcherSnapshot, chunk_id: str) -> int:
    return next(i for i, c in enumerate(snapshot.chunks) if c.chunk.chunk_id == chunk_id)


def offer_index(snapshot: MatcherSnapshot, request_id: str) -> int:
    return next(i for i, o in enumerate(snapshot.offers) if o.request_id == request_id)


def set_owner(name: str, **changes: Any) -> Tamper:
    def tamper(snapshot: MatcherSnapshot, names: dict[str, Any]) -> MatcherSnapshot:
        owners = list(snapshot.owners)
        i = owner_index(snapshot, names.get(name, name))
        owners[i] = replace(owners[i], **changes)
        return replace(snapshot, owners=owners)

    return tamper


def set_chunk(name: str, **changes: Any) -> Tamper:
    def tamper(snapshot: MatcherSnapshot, names: dict[str, Any]) -> MatcherSnapshot:
        chunks = list(snapshot.chunks)
        i = chunk_index(snapshot, names[name])
        entry = chunks[i]
        fields = {k: v for k, v in changes.items() if k in ChunkSnapshot.__struct_fields__}
        body = {k: v for k, v in changes.items() if k not in fields}
        chunks[i] = replace(entry, chunk=replace(entry.chunk, **body), **fields)
        return replace(snapshot, chunks=chunks)

    return tamper


def set_offer(request_id: str, **changes: Any) -> Tamper:
    def tamper(snapshot: MatcherSnapshot, names: dict[str, Any]) -> MatcherSnapshot:
        offers = list(snapshot.offers)
        i = offer_index(snapshot, request_id)
        offers[i] = replace(offers[i], **changes)
        return replace(snapshot, offers=offers)

    return tamper


def fee(chunks: int, size: int = CHUNK) -> int:
    """The fee of an offer of the rich core (fee_bps 100)."""
    return chunks * size * 100 // 10_000


def set_top(**changes: Any) -> Tamper:
    return lambda snapshot, names: replace(snapshot, **changes)


def edit(action: Callable[[MatcherSnapshot, dict[str, Any]], dict[str, Any]]) -> Tamper:
    return lambda snapshot, names: replace(snapshot, **action(snapshot, names))


def money(**deltas: int) -> Tamper:
    def tamper(snapshot: MatcherSnapshot, names: dict[str, Any]) -> MatcherSnapshot:
        return replace(snapshot, **{k: getattr(snapshot, k) + v for k, v in deltas.items()})

    return tamper


def duplicate_owner(snapshot: MatcherSnapshot, names: dict[str, Any]) -> dict[str, Any]:
    owner = snapshot.owners[-1]
    return {"owners": [*snapshot.owners, replace(owner, owner=owner.owner.lower())]}


def duplicate_chunk(snapshot: MatcherSnapshot, names: dict[str, Any]) -> dict[str, Any]:
    return {"chunks": [*snapshot.chunks, snapshot.chunks[0]]}


def same_key_other_case(snapshot: MatcherSnapshot, names: dict[str, Any]) -> dict[str, Any]:
    entry = snapshot.chunks[0]
    vault = entry.chunk.vault.upper()
    chunk_id = f"{vault}:{entry.chunk.chunk_id.partition(':')[2]}"
    copy = replace(entry, chunk=replace(entry.chunk, vault=vault, chunk_id=chunk_id))
    return {"chunks": [*snapshot.chunks, replace(copy, state="withdrawn", request_id="")]}


def duplicate_offer(snapshot: MatcherSnapshot, names: dict[str, Any]) -> dict[str, Any]:
    return {"offers": [*snapshot.offers, snapshot.offers[offer_index(snapshot, "declined")]]}


def open_offer_chunks(change: Callable[[list[str], dict[str, Any]], list[str]]) -> Tamper:
    def tamper(snapshot: MatcherSnapshot, names: dict[str, Any]) -> MatcherSnapshot:
        offers = list(snapshot.offers)
        i = offer_index(snapshot, "open")
        ids = change(offers[i].chunk_ids, names)
        offers[i] = replace(offers[i], chunk_ids=ids, fee_e8=fee(len(ids)))
        return replace(snapshot, offers=offers)

    return tamper


def book(change: Callable[[list[str], dict[str, Any]], list[str]], asset: str = ETH) -> Tamper:
    def tamper(snapshot: MatcherSnapshot, names: dict[str, Any]) -> MatcherSnapshot:
        available = dict(snapshot.available)
        available[asset] = change(list(available[asset]), names)
        return replace(snapshot, available=available)

    return tamper


def banned_owner_offers_again(snapshot: MatcherSnapshot, names: dict[str, Any]) -> dict[str, Any]:
    """One of the banned owner's withdrawn chunks is back in the book."""
    chunks = list(snapshot.chunks)
    i = next(
        i
        for i, c in enumerate(chunks)
        if c.chunk.owner == names["cheat"] and c.state == "withdrawn" and c.chunk.asset == ETH
    )
    chunks[i] = replace(chunks[i], state="available")
    available = dict(snapshot.available)
    available[ETH] = [*available[ETH], chunks[i].chunk.chunk_id]
    return {"chunks": chunks, "available": available}


def move_first_to_end(ids: list[str], names: dict[str, Any]) -> list[str]:
    return ids[1:] + ids[:1]


HOSTILE: dict[str, tuple[Tamper, str]] = {
    # the envelope
    "another version": (set_top(version=2), "version"),
    "another policy": (set_top(policy=make_policy(fee_bps=99)), "another policy"),
    "owners not a list": (set_top(owners={}), "owners must be a list"),
    # owners
    "negative bond": (set_owner("cheat", bond_usd_e8=-1), "bond"),
    "bond not an int": (set_owner("cheat", bond_usd_e8="1"), "bond"),
    "owner listed twice": (edit(duplicate_owner), "listed twice"),
    "empty owner name": (set_owner("cheat", owner=""), "owner"),
    "reputation above the maximum": (set_owner("allocated_owner", reputation=10**6), "reputation"),
    "reputation below the minimum": (set_owner("allocated_owner", reputation=1), "reputation"),
    "banned owner with reputation": (set_owner("cheat", reputation=50), "reputation"),
    "banned without a double spend": (
        set_owner("allocated_owner", banned=True, reputation=0),
        "banned if and only if",
    ),
    "double spend without a ban": (set_owner("cheat", banned=False, reputation=50), "banned if"),
    "exposure beyond the bond": (
        set_owner("allocated_owner", bond_usd_e8=CHUNK // 2),
        "beyond its bond",
    ),
    "exposure not its chunks'": (
        set_owner("allocated_owner", exposure_usd_e8=0),
        "exposure 0 is not",
    ),
    "settled count not its chunks'": (set_owner("spent_owner", settled_chunks=0), "counters"),
    # chunks
    "chunk listed twice": (edit(duplicate_chunk), "listed twice"),
    "chunk key listed twice": (edit(same_key_other_case), "listed twice|not a chunk id"),
    "chunk of an unknown owner": (set_chunk("available", owner=OTHER), "unknown owner"),
    "chunk of an unknown asset": (set_chunk("available", asset="DOGE@1"), "unknown asset"),
    "chunk of another size": (set_chunk("available", usd_e8=CHUNK + 1), "usd_e8"),
    "chunk without funds": (set_chunk("available", amount=0), "amount"),
    "chunk without an address": (set_chunk("available", address=""), "address"),
    "not a chunk id": (set_chunk("withdrawn", chunk_id="nope"), "not a chunk id"),
    "chunk naming another vault": (set_chunk("withdrawn", vault="ab" * 32), "does not name"),
    "unknown chunk state": (set_chunk("available", state="lost"), "unknown ChunkState"),
    "available chunk naming an offer": (
        set_chunk("withdrawn", request_id="accepted"),
        "names an offer",
    ),
    "allocated chunk naming no offer": (set_chunk("allocated", request_id=""), "names no offer"),
    "allocated chunk naming an unknown offer": (
        set_chunk("allocated", request_id="ghost"),
        "does not hold it",
    ),
    "allocated chunk naming an offer without it": (
        set_chunk("allocated", request_id="declined"),
        "does not hold it",
    ),
    "chunk reserved by an accepted offer": (
        set_chunk("allocated", state="reserved"),
        "offer accepted is accepted",
    ),
    "chunk allocated by an open offer": (
        set_chunk("reserved", state="allocated"),
        "offer open is open",
    ),
    "chunk of an open offer is available": (
        set_chunk("reserved", state="available", request_id=""),
        "not reserved for it",
    ),
    "reserved chunk in no open offer": (
        open_offer_chunks(lambda ids, names: [c for c in ids if c != names["reserved"]]),
        "does not hold it",
    ),
    "spent chunk counted for nobody": (
        set_chunk("spent", state="withdrawn", request_id=""),
        "counters",
    ),
    "banned owner offers a chunk": (edit(banned_owner_offers_again), "its owner is banned"),
    # offers
    "offer listed twice": (edit(duplicate_offer), "listed twice"),
    "offer of an unknown chunk": (
        set_offer("declined", chunk_ids=["ff" * 32 + ":9"], fee_e8=fee(1)),
        "unknown chunk",
    ),
    "offer with a chunk of another asset": (
        set_offer("declined", asset=BTC, fee_e8=fee(2, BTC_CHUNK)),
        "another asset",
    ),
    "offer holding a chunk twice": (
        open_offer_chunks(lambda ids, names: [*ids, ids[0]]),
        "twice",
    ),
    "offer without chunks": (set_offer("declined", chunk_ids=[], fee_e8=0), "no chunks"),
    "offer with another fee": (set_offer("declined", fee_e8=1), "fee_e8"),
    "offer of an unknown asset": (set_offer("declined", asset="DOGE@1"), "unknown asset"),
    "offer in an unknown state": (set_offer("declined", state="pending"), "unknown OfferState"),
    "offer made at no time": (set_offer("open", created_at=float("nan")), "created_at"),
    "offer made at infinity": (set_offer("open", created_at=float("inf")), "created_at"),
    "offer without a requester": (set_offer("declined", requester=""), "requester"),
    "open offer becomes declined": (set_offer("open", state="declined"), "offer open is declined"),
    # the book
    "book without an asset": (
        edit(lambda s, n: {"available": {ETH: s.available[ETH]}}),
        "every asset",
    ),
    "book listing a reserved chunk": (
        book(lambda ids, names: [*ids, names["reserved"]]),
        "not available",
    ),
    "book listing a chunk twice": (book(lambda ids, names: [*ids, ids[-1]]), "twice"),
    "book missing a chunk": (book(lambda ids, names: ids[:-1]), "missing from the book"),
    "book out of order": (book(move_first_to_end), "not in book order"),
    "book listing a chunk under another asset": (
        edit(lambda s, n: {"available": {ETH: s.available[ETH][1:], BTC: [s.available[ETH][0]]}}),
        "of another",
    ),
    # money
    "pool not what came in": (money(pool_usd_e8=1), "pool"),
    "fees not the accepted offers'": (money(fees_usd_e8=1, pool_usd_e8=1), "fees"),
    "negative slash": (money(slashed_usd_e8=-(10**20)), "slashed"),
    "uncovered not the losses'": (money(uncovered_usd_e8=1), r"compensated \+ uncovered"),
    "payout to a stranger": (
        edit(lambda s, n: {"compensation_paid": {**s.compensation_paid, OTHER: 0}}),
        "compensated victims",
    ),
    "payout beyond the loss": (
        edit(lambda s, n: {"compensation_paid": {REQUESTER: CHUNK + 1}}),
        "compensation_paid",
    ),
    "payouts not the compensation": (
        edit(lambda s, n: {"compensation_paid": {REQUESTER: CHUNK - 1}}),
        "add up",
    ),
    # sweep addresses
    "sweep address not normalized": (
        edit(lambda s, n: {"sweep_addresses": {REQUESTER: [SWEEP.upper().replace("0X", "0x")]}}),
        "normalized",
    ),
    "sweep addresses unsorted": (
        edit(lambda s, n: {"sweep_addresses": {REQUESTER: [SWEEP_2, SWEEP]}}),
        "not sorted",
    ),
    "sweep addresses repeated": (
        edit(lambda s, n: {"sweep_addresses": {REQUESTER: [SWEEP, SWEEP]}}),
        "not sorted",
    ),
    "requester without sweep addresses": (
        edit(lambda s, n: {"sweep_addresses": {REQUESTER: []}}),
        "no sweep address",
    ),
}


@pytest.fixture(scope="module")
def rich() -> tuple[MatcherCore, dict[str, Any]]:
    core, names = rich_core()
    names["allocated_owner"] = core.get_chunk(names["allocated"]).chunk.owner
    names["spent_owner"] = core.get_chunk(names["spent"]).chunk.owner
    assert names["allocated_owner"] != names["cheat"] != names["spent_owner"]
    return core, names


def test_the_rich_core_restores(rich: tuple[MatcherCore, dict[str, Any]]) -> None:
    core, _ = rich
    restored = restore(core)
    assert restored.get_owner(rich[1]["cheat"]).banned
    assert restored.get_chunk(rich[1]["allocated"]) == core.get_chunk(rich[1]["allocated"])


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_malformed_snapshot_is_refused(
    rich: tuple[MatcherCore, dict[str, Any]], name: str
) -> None:
    core, names = rich
    tamper, reason = HOSTILE[name]
    snapshot = tamper(core.export_snapshot(), names)
    with pytest.raises(InvalidRequest, match=reason):
        MatcherCore.from_snapshot(core.policy, snapshot)


def test_not_a_snapshot_or_policy_is_refused(rich: tuple[MatcherCore, dict[str, Any]]) -> None:
    core, _ = rich
    snapshot = core.export_snapshot()
    not_a_snapshot: Any = msgspec.structs.asdict(snapshot)
    not_a_policy: Any = core.policy.chunk_usd_e8
    with pytest.raises(InvalidRequest, match="expected a MatcherSnapshot"):
        MatcherCore.from_snapshot(core.policy, not_a_snapshot)
    with pytest.raises(InvalidRequest, match="fee_bps"):
        MatcherCore.from_snapshot(make_policy(fee_bps=-1), snapshot)
    with pytest.raises(InvalidRequest, match="expected a MatcherPolicy"):
        MatcherCore.from_snapshot(not_a_policy, snapshot)


def test_an_offer_snapshot_can_name_chunks_now_elsewhere() -> None:
    """A closed offer keeps its chunks even after they moved on (reclaimed and offered
    again, or withdrawn): the snapshot accepts that, and it is what a run produces."""
    core, _ = make_core(owners=4, per_vault=2)
    offer = allocate(core, "first", 4)
    for chunk in offer.chunks:
        core.reclaim(chunk.chunk_id, chunk.owner)
    core.match(request("second", 16), seed=b"2", now=2.0)
    restored = restore(core)
    snapshot = restored.export_snapshot()
    again = {c for o in snapshot.offers for c in o.chunk_ids if o.request_id == "second"}
    assert {c.chunk_id for c in offer.chunks} <= again
    assert isinstance(snapshot.offers[0], OfferSnapshot)
