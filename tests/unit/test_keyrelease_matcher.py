"""The key-release matcher core: validation, risk limits, sampling, expiry, settlement
and double-spend claims, plus a stateful property test of its invariants."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sealbridge.core.encoding import encode
from sealbridge.keyrelease.errors import (
    InsufficientLiquidity,
    InvalidRequest,
    KeyReleaseError,
    ReportRejected,
)
from sealbridge.keyrelease.matcher import (
    ChainObservation,
    ChunkState,
    DoubleSpendReport,
    MatcherCore,
    MatcherPolicy,
    MatcherStatus,
    OfferState,
    WrongState,
    compute_claim_id,
)
from sealbridge.keyrelease.types import Chunk, ChunkRequest, Offer, compute_chunk_id

USD = 10**8
ETH = "ETH@31337"
BTC = "BTC@0"
CHUNK = 100 * USD  # ETH chunk size
BTC_CHUNK = 500 * USD
AMOUNT = 10**17
REQUESTER = "0x" + "ab" * 20
SWEEP = "0x" + "5e" * 20
OTHER = "0x" + "0d" * 20


def account(index: int) -> str:
    """An EIP-55-looking (mixed-case) account."""
    return f"0xAbCd{index + 1:036x}"


def vault_of(owner: str, index: int) -> str:
    return hashlib.sha256(f"vault/{owner}/{index}".encode()).hexdigest()


class Book:
    """Builds chunks with unique ids and deposit addresses."""

    def __init__(self) -> None:
        self.next_key: Counter[str] = Counter()
        self.next_address = 0

    def chunks(self, owner: str, vault: str, n: int, asset: str = ETH) -> list[Chunk]:
        out = []
        for _ in range(n):
            self.next_address += 1
            out.append(
                Chunk(
                    chunk_id=compute_chunk_id(vault, self.next_key[vault]),
                    owner=owner,
                    vault=vault,
                    asset=asset,
                    address=f"0x{0xDE << 152 | self.next_address:040x}",
                    amount=AMOUNT,
                    usd_e8=CHUNK if asset == ETH else BTC_CHUNK,
                )
            )
            self.next_key[vault] += 1
        return out


def make_policy(**overrides: Any) -> MatcherPolicy:
    fields: dict[str, Any] = {"chunk_usd_e8": {ETH: CHUNK, BTC: BTC_CHUNK}}
    fields.update(overrides)
    return MatcherPolicy(**fields)


def make_core(
    owners: int = 8,
    vaults: int = 2,
    per_vault: int = 5,
    bond: int = 10_000 * USD,
    **policy: Any,
) -> tuple[MatcherCore, Book]:
    core = MatcherCore(make_policy(**policy))
    book = Book()
    for o in range(owners):
        owner = account(o)
        core.register_owner(owner, bond)
        for v in range(vaults):
            core.add_chunks(book.chunks(owner, vault_of(owner, v), per_vault))
    return core, book


def request(request_id: str, chunks: int, requester: str = REQUESTER, asset: str = ETH) -> Any:
    size = CHUNK if asset == ETH else BTC_CHUNK
    return ChunkRequest(
        request_id=request_id,
        requester=requester,
        asset=asset,
        usd_e8=chunks * size,
        contract=f"swap:{request_id}",
    )


def allocate(core: MatcherCore, request_id: str, chunks: int, seed: bytes = b"s") -> Offer:
    core.match(request(request_id, chunks), seed=seed, now=0.0)
    return core.accept(request_id, 1.0)


def unchanged(core: MatcherCore, action: Callable[[], object], error: type[Exception]) -> None:
    before = core.get_status()
    with pytest.raises(error):
        action()
    assert core.get_status() == before


def shares(offer: Offer) -> tuple[Counter[str], Counter[str]]:
    return Counter(c.owner for c in offer.chunks), Counter(c.vault for c in offer.chunks)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides",
    [
        {"chunk_usd_e8": {}},
        {"chunk_usd_e8": {ETH: 0}},
        {"chunk_usd_e8": {"": CHUNK}},
        {"fee_bps": -1},
        {"fee_bps": 10_001},
        {"max_owner_share_bps": 0},
        {"max_vault_share_bps": 10_001},
        {"exposure_per_bond": 0},
        {"min_reputation": 0},
        {"initial_reputation": 5, "min_reputation": 10},
        {"max_reputation": 50},
        {"reputation_gain": -1},
        {"slash_multiple_bps": -1},
        {"min_bond_usd_e8": -1},
        {"offer_ttl_s": 0.0},
        {"offer_ttl_s": float("nan")},
        {"fee_bps": True},
        {"fee_bps": 1.5},
    ],
)
def test_policy_out_of_range_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        MatcherCore(make_policy(**overrides))


def test_owner_and_bond_validation_changes_nothing() -> None:
    core, _ = make_core(owners=2, min_bond_usd_e8=100 * USD)
    unchanged(core, lambda: core.register_owner(account(0), 500 * USD), InvalidRequest)
    # the same EIP-55 account in another case is the same owner
    unchanged(
        core,
        lambda: core.register_owner(account(0).lower(), 500 * USD),
        InvalidRequest,
    )
    unchanged(core, lambda: core.register_owner(account(5), 99 * USD), InvalidRequest)
    unchanged(core, lambda: core.register_owner("", 500 * USD), InvalidRequest)
    unchanged(core, lambda: core.add_bond(account(9), USD), InvalidRequest)
    unchanged(core, lambda: core.add_bond(account(0), 0), InvalidRequest)
    core.add_bond(account(0), USD)
    assert core.get_owner(account(0)).bond_usd_e8 == 10_001 * USD


def test_add_chunks_is_all_or_nothing() -> None:
    core, book = make_core(owners=2)
    owner = account(0)
    vault = vault_of(owner, 7)
    good = book.chunks(owner, vault, 3)
    existing = core.get_chunk(compute_chunk_id(vault_of(owner, 0), 0)).chunk
    bad_cases: list[tuple[Chunk, type[Exception]]] = [
        (
            msgspec.structs.replace(good[0], chunk_id=compute_chunk_id(vault, 99), owner=OTHER),
            InvalidRequest,
        ),
        (
            msgspec.structs.replace(good[0], chunk_id=compute_chunk_id(vault, 98), asset="DOGE@1"),
            InvalidRequest,
        ),
        (
            msgspec.structs.replace(
                good[0], chunk_id=compute_chunk_id(vault, 97), usd_e8=CHUNK + 1
            ),
            InvalidRequest,
        ),
        (
            msgspec.structs.replace(good[0], chunk_id=compute_chunk_id(vault, 96), amount=0),
            InvalidRequest,
        ),
        (msgspec.structs.replace(good[0], chunk_id="not-a-chunk-id"), InvalidRequest),
        (
            msgspec.structs.replace(good[0], chunk_id=compute_chunk_id(vault_of(owner, 8), 0)),
            InvalidRequest,
        ),
        (good[0], InvalidRequest),  # a duplicate within the batch
        (existing, InvalidRequest),  # a duplicate of a chunk already in the book
        # the same key with the vault hex in capitals
        (
            msgspec.structs.replace(
                existing, chunk_id=existing.chunk_id.upper(), vault=existing.vault.upper()
            ),
            InvalidRequest,
        ),
    ]
    for bad, error in bad_cases:
        unchanged(core, partial(core.add_chunks, [*good, bad]), error)
        for chunk in good:
            with pytest.raises(InvalidRequest):
                core.get_chunk(chunk.chunk_id)
    core.add_chunks(good)
    assert core.get_owner(owner).available_chunks == 13


def test_withdraw_only_own_available_chunks() -> None:
    core, _ = make_core(owners=6)
    chunk_id = compute_chunk_id(vault_of(account(0), 0), 0)
    unchanged(core, lambda: core.withdraw_chunk(chunk_id, account(1)), InvalidRequest)
    unchanged(core, lambda: core.withdraw_chunk("ff" * 32 + ":1", account(0)), InvalidRequest)
    core.withdraw_chunk(chunk_id, account(0))
    assert core.get_chunk(chunk_id).state == ChunkState.WITHDRAWN
    unchanged(core, lambda: core.withdraw_chunk(chunk_id, account(0)), WrongState)
    offer = core.match(request("r", 10), seed=b"x", now=0.0)
    reserved = offer.chunks[0]
    unchanged(core, lambda: core.withdraw_chunk(reserved.chunk_id, reserved.owner), WrongState)


def test_bad_requests_change_nothing() -> None:
    core, _ = make_core()
    core.match(request("used", 1), seed=b"a", now=0.0)
    bad: list[Callable[[], object]] = [
        lambda: core.match(request("used", 1), seed=b"a", now=0.0),
        lambda: core.match(
            msgspec.structs.replace(request("r", 1), usd_e8=CHUNK + 1), seed=b"a", now=0.0
        ),
        lambda: core.match(msgspec.structs.replace(request("r", 1), usd_e8=0), seed=b"a", now=0),
        lambda: core.match(
            msgspec.structs.replace(request("r", 1), usd_e8=-CHUNK), seed=b"", now=0
        ),
        lambda: core.match(msgspec.structs.replace(request("r", 1), asset="X@1"), seed=b"", now=0),
        lambda: core.match(msgspec.structs.replace(request("r", 1), contract=""), seed=b"", now=0),
        lambda: core.match(request("r", 1), seed="a", now=0.0),  # type: ignore[arg-type]
        lambda: core.match(request("r", 1), seed=b"a", now=float("nan")),
        lambda: core.accept("nope", 0.0),
        lambda: core.decline("nope"),
        lambda: core.settle("nope", REQUESTER),
        lambda: core.expire(float("inf")),
        lambda: core.get_offer("nope"),
    ]
    for action in bad:
        unchanged(core, action, InvalidRequest)


# --------------------------------------------------------------------------- risk limits


def test_per_request_caps_hold() -> None:
    core, _ = make_core(owners=12, vaults=3, per_vault=10)
    for i in range(30):
        offer = allocate(core, f"r{i}", 8, seed=i.to_bytes(2, "big"))
        by_owner, by_vault = shares(offer)
        assert len(offer.chunks) == 8
        assert max(by_owner.values()) <= 2  # 25% of 8
        assert max(by_vault.values()) <= 2
        assert len({c.chunk_id for c in offer.chunks}) == 8
        for chunk in offer.chunks:
            core.settle(chunk.chunk_id, REQUESTER)


def test_vault_cap_counts_owners_sharing_an_enclave() -> None:
    # five owners keep all their keys in one enclave: a request may take one chunk from it
    core = MatcherCore(make_policy(max_owner_share_bps=10_000, max_vault_share_bps=2500))
    book = Book()
    shared = vault_of("shared", 0)
    for o in range(5):
        core.register_owner(account(o), 10_000 * USD)
        core.add_chunks(book.chunks(account(o), shared, 3))
    core.register_owner(account(9), 10_000 * USD)
    core.add_chunks(book.chunks(account(9), vault_of(account(9), 0), 2))
    core.add_chunks(book.chunks(account(9), vault_of(account(9), 1), 2))
    # 19 chunks, but only three enclaves and at most one chunk from each
    unchanged(core, lambda: core.match(request("r", 4), seed=b"v", now=0.0), InsufficientLiquidity)
    offer = core.match(request("r", 3), seed=b"v", now=0.0)
    _, by_vault = shares(offer)
    assert by_vault[shared] == 1 and max(by_vault.values()) == 1


def test_at_least_one_chunk_per_owner_and_small_requests() -> None:
    core, _ = make_core(owners=1, vaults=1, per_vault=3)
    offer = core.match(request("one", 1), seed=b"", now=0.0)
    assert len(offer.chunks) == 1  # 25% of 1 rounds up to one chunk
    unchanged(core, lambda: core.match(request("two", 2), seed=b"", now=0.0), InsufficientLiquidity)


def test_insufficient_liquidity_is_all_or_nothing() -> None:
    core, _ = make_core(owners=4, vaults=2, per_vault=5)  # 4 owners x 2 chunks < 10
    unchanged(
        core, lambda: core.match(request("big", 10), seed=b"q", now=0.0), InsufficientLiquidity
    )
    unchanged(
        core,
        lambda: core.match(request("btc", 1, asset=BTC), seed=b"q", now=0.0),
        InsufficientLiquidity,
    )
    offer = core.match(request("fits", 8), seed=b"q", now=0.0)
    assert len(offer.chunks) == 8


def test_bond_limits_open_exposure() -> None:
    core = MatcherCore(make_policy(max_owner_share_bps=10_000, max_vault_share_bps=10_000))
    book = Book()
    small, rich = account(0), account(1)
    core.register_owner(small, 250 * USD)  # room for two open 100 USD chunks
    core.register_owner(rich, 100_000 * USD)
    core.add_chunks(book.chunks(small, vault_of(small, 0), 10))
    core.add_chunks(book.chunks(rich, vault_of(rich, 0), 10))
    unchanged(core, lambda: core.match(request("r", 13), seed=b"", now=0.0), InsufficientLiquidity)
    offer = allocate(core, "r", 12)
    assert shares(offer)[0][small] == 2
    assert core.get_owner(small).exposure_usd_e8 == 200 * USD
    unchanged(
        core,
        lambda: core.match(request("more", 1, requester=rich), seed=b"", now=0),
        InsufficientLiquidity,
    )
    mine = [c for c in offer.chunks if c.owner == small]
    core.settle(mine[0].chunk_id, REQUESTER)
    assert core.get_owner(small).exposure_usd_e8 == 100 * USD
    again = core.match(request("more", 1, requester=rich), seed=b"", now=0.0)
    assert [c.owner for c in again.chunks] == [small]
    core.decline("more")
    core.add_bond(small, 1_000 * USD)
    wide = core.match(request("wide", 8), seed=b"w", now=0.0)  # rich has nothing left
    assert shares(wide)[0] == {small: 8}
    assert core.get_owner(small).exposure_usd_e8 == 900 * USD


def test_never_the_requesters_own_chunks() -> None:
    core, _ = make_core(owners=5, vaults=1, per_vault=10)
    me = account(2)
    for i in range(30):
        offer = core.match(request(f"r{i}", 4, requester=me.lower()), seed=bytes([i]), now=0)
        assert me not in {c.owner for c in offer.chunks}
        core.decline(f"r{i}")


def test_reserved_chunk_is_in_one_offer_only() -> None:
    core, _ = make_core(owners=10, vaults=1, per_vault=2)
    first = core.match(request("a", 10), seed=b"1", now=0.0)
    second = core.match(request("b", 10), seed=b"1", now=0.0)
    assert not {c.chunk_id for c in first.chunks} & {c.chunk_id for c in second.chunks}
    unchanged(core, lambda: core.match(request("c", 1), seed=b"1", now=0.0), InsufficientLiquidity)
    for chunk in first.chunks:
        view = core.get_chunk(chunk.chunk_id)
        assert view.state == ChunkState.RESERVED and view.request_id == "a"


# --------------------------------------------------------------------------- sampling


def test_same_seed_same_offer_other_seed_other_offer() -> None:
    def offers(seed: bytes) -> list[list[str]]:
        core, _ = make_core(owners=30, vaults=3, per_vault=5)
        return [
            [c.chunk_id for c in allocate(core, f"r{i}", 10, seed=seed + bytes([i])).chunks]
            for i in range(5)
        ]

    assert offers(b"seed") == offers(b"seed")
    assert offers(b"seed") != offers(b"other")


def test_reputation_weights_the_draw() -> None:
    # one owner earns reputation 400 (4x the others) before nine newcomers join
    core = MatcherCore(make_policy(reputation_gain=100))
    book = Book()
    star = account(0)
    core.register_owner(star, 100_000 * USD)
    core.add_chunks(book.chunks(star, vault_of(star, 0), 40))
    for i in range(3):
        offer = allocate(core, f"warmup{i}", 1)
        core.settle(offer.chunks[0].chunk_id, REQUESTER)
    assert core.get_owner(star).reputation == 400
    for o in range(1, 10):
        core.register_owner(account(o), 100_000 * USD)
        core.add_chunks(book.chunks(account(o), vault_of(account(o), 0), 40))
    picks: Counter[str] = Counter()
    draws = 1500
    for i in range(draws):
        offer = core.match(request(f"r{i}", 1), seed=i.to_bytes(4, "big"), now=0.0)
        picks[offer.chunks[0].owner] += 1
        core.decline(f"r{i}")
    # expected 400 / 1300 = 0.31 for the star, 100 / 1300 = 0.077 for each newcomer
    assert 0.26 < picks[star] / draws < 0.36
    assert all(picks[account(o)] / draws < 0.12 for o in range(1, 10))


# --------------------------------------------------------------------------- lifecycle


def test_accept_credits_fee_and_allocates() -> None:
    core, _ = make_core(fee_bps=30)
    offer = core.match(request("r", 10), seed=b"", now=5.0)
    assert offer.fee_e8 == 10 * CHUNK * 30 // 10_000
    assert core.get_status().pool_usd_e8 == 0
    core.accept("r", 6.0)
    status = core.get_status()
    assert status.pool_usd_e8 == status.fees_usd_e8 == offer.fee_e8
    assert status.chunks[ChunkState.ALLOCATED] == 10
    for chunk in offer.chunks:
        view = core.get_chunk(chunk.chunk_id)
        assert (view.state, view.holder, view.contract) == ("allocated", REQUESTER, "swap:r")
    assert core.get_offer("r").state == OfferState.ACCEPTED
    unchanged(core, lambda: core.accept("r", 6.0), WrongState)
    unchanged(core, lambda: core.decline("r"), WrongState)


def test_decline_and_expiry_release_reservations() -> None:
    core, _ = make_core(offer_ttl_s=30.0)
    full = core.get_status()
    core.match(request("early", 5), seed=b"1", now=0.0)
    core.match(request("late", 5), seed=b"2", now=20.0)
    core.match(request("gone", 5), seed=b"3", now=1.0)
    core.decline("gone")
    assert core.expire(30.0) == []  # not older than the ttl yet
    unchanged(core, lambda: core.accept("early", 30.5), WrongState)
    assert core.expire(30.5) == ["early"]
    assert core.get_offer("early").state == OfferState.EXPIRED
    assert core.get_offer("late").state == OfferState.OPEN
    core.accept("late", 50.0)
    assert core.expire(1_000.0) == []
    status = core.get_status()
    assert status.chunks[ChunkState.ALLOCATED] == 5
    assert status.chunks[ChunkState.AVAILABLE] == full.chunks[ChunkState.AVAILABLE] - 5
    late = {c.chunk_id for c in core.get_offer("late").offer.chunks}
    assert sum(o.exposure_usd_e8 for o in status.owners.values()) == 5 * CHUNK
    assert all(core.get_chunk(c).state == ChunkState.ALLOCATED for c in late)


def test_the_preconditions_of_an_accept_are_checked_before_any_fee() -> None:
    """Issue 15, item 2: ``check_accept`` says whether ``accept`` would go through (open,
    made to this requester, still open after the fee's transaction) and changes nothing;
    ``accept`` refuses another requester too."""
    core, _ = make_core(offer_ttl_s=60.0)
    offer = core.match(request("r", 3), seed=b"", now=0.0)
    assert core.check_accept("r", 10.0, requester=REQUESTER, margin_s=15.0) == offer
    assert core.check_accept("r", 10.0, requester=REQUESTER.lower()) == offer
    other = account(99)
    unchanged(core, lambda: core.check_accept("r", 10.0, requester=other), InvalidRequest)
    unchanged(core, lambda: core.accept("r", 10.0, requester=other), InvalidRequest)
    unchanged(core, lambda: core.check_accept("r", 50.0, margin_s=15.0), WrongState)
    unchanged(core, lambda: core.check_accept("r", 61.0), WrongState)
    unchanged(core, lambda: core.check_accept("r", 1.0, margin_s=-1.0), InvalidRequest)
    unchanged(core, lambda: core.check_accept("nope", 1.0), InvalidRequest)
    with pytest.raises(WrongState, match="expires in less than 15s"):
        core.check_accept("r", 50.0, margin_s=15.0)
    core.accept("r", 50.0, requester=REQUESTER)  # accept itself takes no margin
    unchanged(core, lambda: core.check_accept("r", 50.0), WrongState)


def test_settle_earns_reputation_and_releases_exposure() -> None:
    core, _ = make_core(reputation_gain=3, max_reputation=104)
    offer = allocate(core, "r", 10)
    chunk = offer.chunks[0]
    unchanged(core, lambda: core.settle(chunk.chunk_id, OTHER), InvalidRequest)
    before = core.get_owner(chunk.owner)
    core.settle(chunk.chunk_id, REQUESTER)
    after = core.get_owner(chunk.owner)
    assert after.reputation == before.reputation + 3
    assert after.exposure_usd_e8 == before.exposure_usd_e8 - CHUNK
    assert after.settled_chunks == 1
    assert core.get_chunk(chunk.chunk_id).state == ChunkState.SPENT
    unchanged(core, lambda: core.settle(chunk.chunk_id, REQUESTER), WrongState)
    same_owner = [c for c in offer.chunks[1:] if c.owner == chunk.owner]
    for other in same_owner:
        core.settle(other.chunk_id, REQUESTER)
    assert core.get_owner(chunk.owner).reputation == min(104, 103 + 3 * len(same_owner))


def test_reclaim_puts_an_unreleased_allocated_chunk_back() -> None:
    core, _ = make_core()
    offer = allocate(core, "r", 10)
    chunk = offer.chunks[0]
    unchanged(core, lambda: core.reclaim(chunk.chunk_id, OTHER), InvalidRequest)
    before = core.get_owner(chunk.owner)
    core.reclaim(chunk.chunk_id, chunk.owner.lower())
    view = core.get_chunk(chunk.chunk_id)
    assert view.state == ChunkState.AVAILABLE and view.holder == "" and view.request_id == ""
    assert core.get_owner(chunk.owner).exposure_usd_e8 == before.exposure_usd_e8 - CHUNK
    unchanged(core, lambda: core.reclaim(chunk.chunk_id, chunk.owner), WrongState)
    # it can be matched again; a settled chunk cannot be reclaimed
    other = offer.chunks[1]
    core.settle(other.chunk_id, REQUESTER)
    unchanged(core, lambda: core.reclaim(other.chunk_id, other.owner), WrongState)


# --------------------------------------------------------------------------- double spends


def gone(balance: int = 0, to: str = OTHER) -> ChainObservation:
    return ChainObservation(balance=balance, outflow_to=to, outflow_tx="0x" + "77" * 32)


def test_proven_double_spend_slashes_bans_and_compensates() -> None:
    core, book = make_core(owners=4, bond=1_000 * USD, fee_bps=100, slash_multiple_bps=20_000)
    core.register_sweep_address(REQUESTER, SWEEP)
    offer = allocate(core, "r", 8)  # two chunks from each owner; fee 8 USD into the pool
    victim_chunk = offer.chunks[0]
    cheat = victim_chunk.owner
    pending = core.match(request("pending", 8), seed=b"p", now=2.0)
    assert cheat in {c.owner for c in pending.chunks}
    report = DoubleSpendReport(chunk_id=victim_chunk.chunk_id, victim=REQUESTER, sweep_tx="0x12")
    # judged first, changing nothing (found by attacking the enclave's report: a step
    # after the penalty that failed left it applied, unjournaled and unsigned)
    before = encode(core.export_snapshot())
    judged = core.judge_double_spend(report, gone(balance=AMOUNT - 1))
    assert encode(core.export_snapshot()) == before
    penalty = core.report_double_spend(report, gone(balance=AMOUNT - 1))
    assert penalty == judged
    # slash = min(bond 1000, 2 x 100) = 200; pool 8 + 200 = 208 -> pays the full 100
    assert penalty.owner == cheat
    assert penalty.slashed_usd_e8 == 200 * USD
    assert penalty.compensation_usd_e8 == CHUNK
    assert penalty.uncovered_usd_e8 == 0
    assert penalty.claim_id == compute_claim_id(victim_chunk.chunk_id)
    assert len(penalty.claim_id) == 32
    assert penalty.voided_offers == ["pending"]
    status = core.get_status()
    assert status.pool_usd_e8 == 8 * USD + 200 * USD - CHUNK
    assert status.compensation_paid == {REQUESTER: CHUNK}
    owner = status.owners[cheat]
    assert owner.banned and owner.reputation == 0 and owner.bond_usd_e8 == 800 * USD
    assert owner.available_chunks == 0 and owner.double_spends == 1
    assert core.get_chunk(victim_chunk.chunk_id).state == ChunkState.COMPENSATED
    assert core.get_offer("pending").state == OfferState.VOIDED
    for chunk in pending.chunks:
        expected = ChunkState.WITHDRAWN if chunk.owner == cheat else ChunkState.AVAILABLE
        assert core.get_chunk(chunk.chunk_id).state == expected
    # the chunk's claim is settled once
    unchanged(core, lambda: core.report_double_spend(report, gone()), ReportRejected)
    # the cheat is never allocated again and cannot add chunks or bond
    for i in range(40):
        again = core.match(request(f"again{i}", 3), seed=bytes([i]), now=3.0)
        assert cheat not in {c.owner for c in again.chunks}
        core.decline(f"again{i}")
    more = book.chunks(cheat, vault_of(cheat, 5), 1)
    unchanged(core, lambda: core.add_chunks(more), WrongState)
    unchanged(core, lambda: core.add_bond(cheat, 1_000 * USD), WrongState)
    # its other allocated chunks can still be settled, without reputation gain
    for chunk in offer.chunks[1:]:
        if chunk.owner == cheat:
            core.settle(chunk.chunk_id, REQUESTER)
            assert core.get_owner(cheat).reputation == 0


def test_double_spend_beyond_the_pool_is_uncovered() -> None:
    core, _ = make_core(
        owners=4, bond=30 * USD, exposure_per_bond=4, fee_bps=0, slash_multiple_bps=20_000
    )
    offer = allocate(core, "r", 4)  # the slash is capped at the 30 USD bond
    first, second = (
        offer.chunks[0],
        next(c for c in offer.chunks if c.owner != offer.chunks[0].owner),
    )
    penalty = core.report_double_spend(
        DoubleSpendReport(chunk_id=first.chunk_id, victim=REQUESTER), gone()
    )
    assert (penalty.slashed_usd_e8, penalty.compensation_usd_e8) == (30 * USD, 30 * USD)
    assert penalty.uncovered_usd_e8 == 70 * USD
    penalty = core.report_double_spend(
        DoubleSpendReport(chunk_id=second.chunk_id, victim=REQUESTER),
        ChainObservation(balance=0),
    )
    assert penalty.compensation_usd_e8 == 30 * USD
    status = core.get_status()
    assert status.pool_usd_e8 == 0
    assert status.uncovered_usd_e8 == 140 * USD
    assert status.compensated_usd_e8 == status.fees_usd_e8 + status.slashed_usd_e8


def test_reports_the_chain_does_not_bear_out_are_rejected() -> None:
    core, _ = make_core(owners=8)
    core.register_sweep_address(REQUESTER, SWEEP)
    offer = allocate(core, "r", 8)
    chunk = offer.chunks[0]
    settled = offer.chunks[1]
    core.settle(settled.chunk_id, REQUESTER)
    reserved = core.match(request("open", 1), seed=b"o", now=0.0).chunks[0]
    available = next(
        c.chunk
        for c in (core.get_chunk(compute_chunk_id(vault_of(account(o), 0), 0)) for o in range(8))
        if c.state == ChunkState.AVAILABLE
    )

    def report(chunk_id: str = chunk.chunk_id, victim: str = REQUESTER, sweep: str = "") -> Any:
        return DoubleSpendReport(chunk_id=chunk_id, victim=victim, sweep_tx=sweep)

    rejected = [
        (report(victim=OTHER), gone()),  # not allocated to this requester
        (report(), gone(balance=AMOUNT)),  # the funds are still there
        (report(), gone(balance=AMOUNT * 2)),
        (report(), gone(to=SWEEP)),  # swept to the victim's own address
        (report(), gone(to=SWEEP.upper().replace("0X", "0x"))),
        (report(sweep="0x" + "77" * 32), gone()),  # the outflow is the victim's sweep
        (report(), ChainObservation(balance=0, address=OTHER)),  # another address
        (report(settled.chunk_id), gone()),  # settled already
        (report(reserved.chunk_id), gone()),  # never allocated
        (report(available.chunk_id), gone()),
        (report("ff" * 32 + ":0"), gone()),  # unknown
    ]
    for bad_report, observation in rejected:
        unchanged(core, partial(core.report_double_spend, bad_report, observation), ReportRejected)
    unchanged(
        core,
        lambda: core.report_double_spend(report(), ChainObservation(balance=-1)),
        InvalidRequest,
    )
    # a true report for the same chunk still works afterwards (hex addresses in any case)
    observed = ChainObservation(
        balance=0, outflow_to=OTHER, address="0x" + chunk.address[2:].upper()
    )
    assert core.report_double_spend(report(), observed).chunk_id == chunk.chunk_id


def test_errors_are_typed_key_release_errors() -> None:
    for error in (InvalidRequest, InsufficientLiquidity, ReportRejected, WrongState):
        assert issubclass(error, KeyReleaseError)


# --------------------------------------------------------------------------- property test


def note_event(text: str) -> None:
    if currently_in_test_context():
        event(text)


class MatcherMachine(RuleBasedStateMachine):
    """Random schedules of every operation; after each step the invariants must hold."""

    def __init__(self) -> None:
        super().__init__()
        self.core = MatcherCore(
            make_policy(fee_bps=50, offer_ttl_s=10.0, slash_multiple_bps=15_000)
        )
        self.book = Book()
        self.owners: list[str] = []
        self.chunk_ids: list[str] = []
        self.request_ids: list[str] = []
        self.now = 0.0
        self.next_request = 0
        self.requesters = [REQUESTER, OTHER]
        self.core.register_sweep_address(REQUESTER, SWEEP)

    @initialize(
        bonds=st.lists(st.integers(1, 6), min_size=3, max_size=8),
        per_vault=st.integers(1, 4),
        btc=st.integers(0, 3),
    )
    def seed_book(self, bonds: list[int], per_vault: int, btc: int) -> None:
        for bond_chunks in bonds:
            self.register(bond_chunks)
            owner = self.owners[-1]
            for vault in range(2):
                chunks = self.book.chunks(owner, vault_of(owner, vault), per_vault)
                chunks += self.book.chunks(owner, vault_of(owner, vault), btc, asset=BTC)
                self.core.add_chunks(chunks)
                self.chunk_ids.extend(c.chunk_id for c in chunks)

    @rule(bond_chunks=st.integers(0, 6))
    def register(self, bond_chunks: int) -> None:
        owner = account(len(self.owners))
        self.core.register_owner(owner, bond_chunks * CHUNK + CHUNK // 2)
        self.owners.append(owner)
        if len(self.owners) == 3:
            self.requesters.append(owner)  # an owner that also asks for chunks

    @rule(pick=st.integers(0, 99), vault=st.integers(0, 3), n=st.integers(1, 6), btc=st.booleans())
    def add(self, pick: int, vault: int, n: int, btc: bool) -> None:
        owner = self.owners[pick % len(self.owners)]
        # vault 3 is one enclave shared by every owner
        vault_id = vault_of("shared", 0) if vault == 3 else vault_of(owner, vault)
        chunks = self.book.chunks(owner, vault_id, n, asset=BTC if btc else ETH)
        try:
            self.core.add_chunks(chunks)
        except WrongState:
            assert self.core.get_owner(owner).banned
            return
        self.chunk_ids.extend(c.chunk_id for c in chunks)

    @rule(pick=st.integers(0, 99), amount=st.integers(1, 3))
    def bond(self, pick: int, amount: int) -> None:
        owner = self.owners[pick % len(self.owners)]
        if self.core.get_owner(owner).banned:
            return
        self.core.add_bond(owner, amount * CHUNK)

    @rule(who=st.integers(0, 2), k=st.integers(1, 7), btc=st.booleans(), seed=st.binary(max_size=4))
    def match(self, who: int, k: int, btc: bool, seed: bytes) -> None:
        requester = self.requesters[who % len(self.requesters)]
        request_id = f"q{self.next_request}"
        self.next_request += 1
        asset = BTC if btc else ETH
        before = self.core.get_status()
        try:
            offer = self.core.match(
                request(request_id, k, requester, asset), seed=seed, now=self.now
            )
        except InsufficientLiquidity:
            assert self.core.get_status() == before
            note_event("match: insufficient liquidity")
            return
        note_event("match: filled")
        self.request_ids.append(request_id)
        cap = max(1, k * 2500 // 10_000)
        by_owner, by_vault = shares(offer)
        assert len(offer.chunks) == k
        assert max(by_owner.values()) <= cap and max(by_vault.values()) <= cap
        assert requester not in by_owner
        for owner in by_owner:
            status = self.core.get_owner(owner)
            assert not status.banned and status.reputation >= 10

    def open_offers(self) -> list[str]:
        return [r for r in self.request_ids if self.core.get_offer(r).state == OfferState.OPEN]

    def chunks_in(self, state: ChunkState) -> list[str]:
        return [c for c in self.chunk_ids if self.core.get_chunk(c).state == state]

    @rule(pick=st.integers(0, 99), accept=st.booleans())
    def answer(self, pick: int, accept: bool) -> None:
        offers = self.open_offers()
        if not offers:
            return
        request_id = offers[pick % len(offers)]
        if accept:
            self.core.accept(request_id, self.now)
        else:
            self.core.decline(request_id)

    @rule(step=st.sampled_from([1.0, 4.0, 11.0]))
    def tick(self, step: float) -> None:
        self.now += step
        expired = self.core.expire(self.now)
        for request_id in expired:
            view = self.core.get_offer(request_id)
            assert view.state == OfferState.EXPIRED and view.created_at + 10.0 < self.now

    @rule(pick=st.integers(0, 999))
    def settle(self, pick: int) -> None:
        allocated = self.chunks_in(ChunkState.ALLOCATED)
        if allocated:
            chunk_id = allocated[pick % len(allocated)]
            self.core.settle(chunk_id, self.core.get_chunk(chunk_id).holder)

    @rule(pick=st.integers(0, 999), kind=st.sampled_from(["true", "full", "own", "victim"]))
    def report(self, pick: int, kind: str) -> None:
        allocated = self.chunks_in(ChunkState.ALLOCATED)
        if not allocated:
            return
        view = self.core.get_chunk(allocated[pick % len(allocated)])
        victim = "0x" + "99" * 20 if kind == "victim" else view.holder
        report = DoubleSpendReport(chunk_id=view.chunk.chunk_id, victim=victim)
        observation = {
            "true": gone(),
            "full": gone(balance=view.chunk.amount),
            "own": gone(to=SWEEP),
            "victim": gone(),
        }[kind]
        holds = kind == "true" or (kind == "own" and view.holder != REQUESTER)
        if not holds:
            before = self.core.get_status()
            with pytest.raises(ReportRejected):
                self.core.report_double_spend(report, observation)
            assert self.core.get_status() == before
            note_event(f"report: rejected ({kind})")
            return
        note_event("report: proven")
        pool = self.core.get_status().pool_usd_e8
        penalty = self.core.report_double_spend(report, observation)
        assert penalty.compensation_usd_e8 == min(view.chunk.usd_e8, pool + penalty.slashed_usd_e8)
        assert self.core.get_owner(view.chunk.owner).banned

    @rule(pick=st.integers(0, 999))
    def withdraw(self, pick: int) -> None:
        available = self.chunks_in(ChunkState.AVAILABLE)
        if available:
            chunk_id = available[pick % len(available)]
            self.core.withdraw_chunk(chunk_id, self.core.get_chunk(chunk_id).chunk.owner)

    @invariant()
    def money_is_conserved(self) -> None:
        status: MatcherStatus = self.core.get_status()
        assert status.pool_usd_e8 >= 0
        assert status.compensated_usd_e8 <= status.fees_usd_e8 + status.slashed_usd_e8
        assert status.pool_usd_e8 == (
            status.fees_usd_e8 + status.slashed_usd_e8 - status.compensated_usd_e8
        )
        assert sum(status.compensation_paid.values()) == status.compensated_usd_e8

    @invariant()
    def books_agree(self) -> None:
        status = self.core.get_status()
        exposure: Counter[str] = Counter()
        states: Counter[str] = Counter()
        available: Counter[str] = Counter()
        for chunk_id in self.chunk_ids:
            view = self.core.get_chunk(chunk_id)
            states[view.state] += 1
            if view.state in (ChunkState.RESERVED, ChunkState.ALLOCATED):
                exposure[view.chunk.owner] += view.chunk.usd_e8
            if view.state in (ChunkState.AVAILABLE, ChunkState.RESERVED):
                assert not status.owners[view.chunk.owner].banned
            if view.state == ChunkState.AVAILABLE:
                available[view.chunk.owner] += 1
        assert {s: n for s, n in status.chunks.items() if n} == dict(+states)
        for owner, info in status.owners.items():
            assert info.exposure_usd_e8 == exposure[owner]
            assert info.available_chunks == available[owner]
            if not info.banned:
                assert info.exposure_usd_e8 <= info.exposure_limit_usd_e8
        in_offers: list[str] = []
        for request_id in self.open_offers():
            for chunk in self.core.get_offer(request_id).offer.chunks:
                in_offers.append(chunk.chunk_id)
                view = self.core.get_chunk(chunk.chunk_id)
                assert view.state == ChunkState.RESERVED and view.request_id == request_id
        assert len(in_offers) == len(set(in_offers)) == states[ChunkState.RESERVED]


TestMatcherMachine = MatcherMachine.TestCase
TestMatcherMachine.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("seed", range(4))
def test_random_schedules_keep_the_invariants(seed: int) -> None:
    """Long seeded schedules of the same operations (hypothesis keeps its runs short)."""
    rng = random.Random(seed)
    machine = MatcherMachine()
    machine.seed_book([rng.randint(1, 6) for _ in range(10)], rng.randint(2, 5), rng.randint(0, 3))
    steps: list[Callable[[], None]] = [
        lambda: machine.register(rng.randint(0, 6)),
        lambda: machine.add(
            rng.randrange(99), rng.randrange(4), rng.randint(1, 6), rng.random() < 0.3
        ),
        lambda: machine.bond(rng.randrange(99), rng.randint(1, 3)),
        lambda: machine.match(
            rng.randrange(3), rng.randint(1, 7), rng.random() < 0.3, rng.randbytes(4)
        ),
        lambda: machine.match(
            rng.randrange(3), rng.randint(1, 7), rng.random() < 0.3, rng.randbytes(4)
        ),
        lambda: machine.answer(rng.randrange(99), rng.random() < 0.7),
        lambda: machine.answer(rng.randrange(99), rng.random() < 0.7),
        lambda: machine.tick(rng.choice([1.0, 4.0, 11.0])),
        lambda: machine.settle(rng.randrange(999)),
        lambda: machine.settle(rng.randrange(999)),
        lambda: machine.report(rng.randrange(999), rng.choice(["true", "full", "own", "victim"])),
        lambda: machine.withdraw(rng.randrange(999)),
    ]
    for _ in range(400):
        rng.choice(steps)()
        machine.money_is_conserved()
        machine.books_agree()
    status = machine.core.get_status()
    assert status.offers[OfferState.ACCEPTED] > 10
    assert status.chunks[ChunkState.SPENT] > 10
    assert status.slashed_usd_e8 > 0 and status.compensated_usd_e8 > 0
