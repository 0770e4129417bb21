"""The key-release matcher: a book of chunks, risk-limited offers and an insurance pool.

Theory of operation
-------------------
Owners register with a sybil bond (USD x 1e8) and deposit *chunks*: deposit keys generated
inside an enclave (a *vault*), each holding the standard USD size of its asset. A
requester asks for "X worth of asset Y, bound by contract Z"; the matcher answers with an
:class:`~sealbridge.keyrelease.types.Offer` of ``k = X / chunk size`` chunks drawn from
many owners, so that no single owner or enclave can hurt the requester much by releasing
a key twice.

Chunk states (the moves are listed in ``_CHUNK_MOVES``)::

    AVAILABLE --match--> RESERVED --accept--> ALLOCATED --settle--> SPENT
    RESERVED --decline | expire | offer voided--> AVAILABLE
    ALLOCATED --proven double spend--> COMPENSATED
    ALLOCATED --reclaim (key never released)--> AVAILABLE (WITHDRAWN if the owner is banned)
    AVAILABLE --withdraw | owner banned--> WITHDRAWN
    RESERVED --owner banned--> WITHDRAWN

Drawing an offer.
    Available chunks are indexed per asset, per owner, per vault. Each asset keeps a
    Fenwick tree of owner weights: an owner's weight is its reputation when it is
    eligible (not banned, reputation >= ``min_reputation``, at least one available chunk
    of the asset, and bond headroom for one more chunk: open exposure + chunk <=
    ``bond * exposure_per_bond``), else 0. A draw picks an owner with probability
    proportional to its weight in O(log owners), then one of its eligible vaults weighted
    by the chunks left there, then a chunk of that vault. While an offer is being drawn,
    owners that hit a limit for this request (``max_owner_share_bps`` of the k chunks,
    bond headroom, no vault under ``max_vault_share_bps`` left, or being the requester)
    get weight 0; the saved weights are put back afterwards, so a failed match changes
    nothing. Each draw either takes a chunk or silences an owner, so a match costs
    O((k + silenced owners) log owners) and never looks at all chunks.

Randomness.
    The matcher has none of its own: draw ``i`` of a request is
    ``SHA-256(tag, seed, request id, i)`` reduced modulo the bound, with the seed given to
    :meth:`MatcherCore.match`. The same state, request and seed give the same offer.

Risk and money.
    A chunk counts towards its owner's *exposure* from the moment it is reserved until it
    is settled, released or compensated. Accepting an offer credits its fee
    (``value * fee_bps / 10000``) to the insurance pool. A settled chunk earns its owner
    ``reputation_gain``. A double-spend report is checked against what the host observed
    on chain for the chunk's address; when it holds, the owner's reputation drops to 0 and
    it is banned (its available chunks leave the book, open offers holding its chunks are
    voided), ``min(bond, value * slash_multiple_bps / 10000)`` moves from its bond to the
    pool, and the victim is paid ``min(value, pool)`` from the pool. The pool is only
    ever fed by fees and slashes, so it never goes negative and total compensation never
    exceeds fees plus slashes. Every refusal raises a typed error and changes nothing.

    A report is only as good as the host's observation and the victim's sweep addresses
    (:meth:`MatcherCore.register_sweep_address`): an outflow to one of them, or the
    victim's own sweep transaction, is the victim's doing and the report is rejected.

Snapshots.
    :meth:`MatcherCore.export_snapshot` gives the whole logical state as one canonical
    :class:`MatcherSnapshot` (so a host can seal it instead of replaying a journal from
    the start), and :meth:`MatcherCore.from_snapshot` rebuilds a core from it that
    answers every later operation exactly as the original: the same offers for the same
    request and seed, the same errors, the same status. It keeps what the past decided
    and cannot be recomputed: owners in registration order (an owner's index in the
    weight trees), chunks with their state and the offer that took them last, offers in
    the order they were made (expiry breaks ties by it; the open ones are the expiry
    queue), each asset's available chunks in book order (a draw picks by position, and
    declines, expiries and reclaims shuffle positions), sweep addresses, payouts and the
    pool's totals. The indexes are rebuilt: books, weight trees (from the owners),
    holders and contracts (from the offers), state counts. A restore re-checks every
    invariant that relates these (one state per chunk; a chunk named by an offer is held
    by it, reserved for an open offer or allocated by an accepted one; exposures and
    counters match the chunks; a banned owner offers nothing; fees, slashes, the pool and
    payouts add up) and refuses a snapshot taken under another policy, so a hostile or
    damaged snapshot raises ``InvalidRequest`` instead of becoming a matcher. Exporting
    the restored core gives the same bytes again.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

from sealbridge.core.encoding import Message
from sealbridge.keyrelease.errors import (
    InsufficientLiquidity,
    InvalidRequest,
    KeyReleaseError,
    ReportRejected,
)
from sealbridge.keyrelease.types import Chunk, ChunkRequest, Offer, parse_chunk_id

__all__ = [
    "SNAPSHOT_VERSION",
    "ChainObservation",
    "ChunkSnapshot",
    "ChunkState",
    "ChunkView",
    "DoubleSpendReport",
    "MatcherCore",
    "MatcherPolicy",
    "MatcherSnapshot",
    "MatcherStatus",
    "OfferSnapshot",
    "OfferState",
    "OfferView",
    "OwnerSnapshot",
    "OwnerStatus",
    "Penalty",
    "WrongState",
    "compute_claim_id",
]

BPS = 10_000
SNAPSHOT_VERSION = 1
_DRAW_TAG = b"sealbridge/keyrelease/matcher/draw/v1"
_CLAIM_TAG = b"sealbridge/keyrelease/matcher/claim/v1"

_S = TypeVar("_S", bound=StrEnum)


class WrongState(KeyReleaseError):
    """The chunk, offer or owner is not in a state that allows the operation."""

    code = "keyrelease_wrong_state"


class ChunkState(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    ALLOCATED = "allocated"
    SPENT = "spent"
    COMPENSATED = "compensated"
    WITHDRAWN = "withdrawn"


class OfferState(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    VOIDED = "voided"  # an owner in it was banned before it was accepted


_CHUNK_STATES = {state.value: state for state in ChunkState}
_OFFER_STATES = {state.value: state for state in OfferState}

_CHUNK_MOVES: dict[ChunkState, frozenset[ChunkState]] = {
    ChunkState.AVAILABLE: frozenset({ChunkState.RESERVED, ChunkState.WITHDRAWN}),
    ChunkState.RESERVED: frozenset(
        {ChunkState.AVAILABLE, ChunkState.ALLOCATED, ChunkState.WITHDRAWN}
    ),
    ChunkState.ALLOCATED: frozenset(
        {ChunkState.SPENT, ChunkState.COMPENSATED, ChunkState.AVAILABLE, ChunkState.WITHDRAWN}
    ),
    ChunkState.SPENT: frozenset(),
    ChunkState.COMPENSATED: frozenset(),
    ChunkState.WITHDRAWN: frozenset(),
}


# --------------------------------------------------------------------------- messages


class MatcherPolicy(Message, frozen=True):
    """Risk parameters of one matcher. Amounts are USD x 1e8."""

    chunk_usd_e8: dict[str, int]  # asset id -> the standard chunk size of that asset
    fee_bps: int = 30
    max_owner_share_bps: int = 2500  # of one request's chunks, at least 1 chunk
    max_vault_share_bps: int = 2500
    exposure_per_bond: int = 1  # open chunks of an owner <= this x its bond
    initial_reputation: int = 100
    min_reputation: int = 10  # below it, an owner is not allocated
    max_reputation: int = 1000
    reputation_gain: int = 1  # per settled chunk
    min_bond_usd_e8: int = 0
    slash_multiple_bps: int = 20_000  # of the chunk value, capped at the bond
    offer_ttl_s: float = 60.0

    def validate(self) -> None:
        """Raise ``InvalidRequest`` unless every parameter is in range."""
        if not isinstance(self.chunk_usd_e8, dict) or not self.chunk_usd_e8:
            raise InvalidRequest("chunk_usd_e8 must list every asset's chunk size")
        for asset, size in self.chunk_usd_e8.items():
            if not isinstance(asset, str) or not asset:
                raise InvalidRequest(f"bad asset id {asset!r}")
            _require_int(f"chunk_usd_e8[{asset}]", size, low=1)
        _require_int("fee_bps", self.fee_bps, low=0, high=BPS)
        _require_int("max_owner_share_bps", self.max_owner_share_bps, low=1, high=BPS)
        _require_int("max_vault_share_bps", self.max_vault_share_bps, low=1, high=BPS)
        _require_int("exposure_per_bond", self.exposure_per_bond, low=1)
        _require_int("min_reputation", self.min_reputation, low=1)
        _require_int("max_reputation", self.max_reputation, low=self.min_reputation)
        _require_int(
            "initial_reputation",
            self.initial_reputation,
            low=self.min_reputation,
            high=self.max_reputation,
        )
        _require_int("reputation_gain", self.reputation_gain, low=0)
        _require_int("min_bond_usd_e8", self.min_bond_usd_e8, low=0)
        _require_int("slash_multiple_bps", self.slash_multiple_bps, low=0)
        ttl = self.offer_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
            raise InvalidRequest(f"offer_ttl_s must be a finite number, got {ttl!r}")
        if ttl <= 0:
            raise InvalidRequest(f"offer_ttl_s must be positive, got {ttl!r}")


class DoubleSpendReport(Message, frozen=True):
    """A requester's claim that the funds of a chunk allocated to it were gone."""

    chunk_id: str
    victim: str  # the requester the chunk was allocated to
    sweep_tx: str = ""  # the victim's own (failed or empty) sweep, hex or ""


class ChainObservation(Message, frozen=True):
    """What the matcher's host read on chain for a chunk's deposit address."""

    balance: int  # base units at the address now
    outflow_to: str = ""  # where the funds went, "" if unknown or none
    outflow_tx: str = ""
    address: str = ""  # the address observed; if given it must be the chunk's
    # every address value went to from the chunk's address: transaction recipients and,
    # for a token chunk, the recipients of its Transfer events from that address
    outflows_to: list[str] = []


class Penalty(Message, frozen=True):
    """The outcome of a proven double spend."""

    owner: str
    chunk_id: str
    victim: str
    slashed_usd_e8: int  # moved from the owner's bond to the pool
    compensation_usd_e8: int  # paid from the pool to the victim
    uncovered_usd_e8: int  # the part of the loss the pool could not cover
    claim_id: bytes  # 32 bytes, see compute_claim_id
    voided_offers: list[str] = []  # open offers that held the banned owner's chunks


class OwnerStatus(Message, frozen=True):
    owner: str
    bond_usd_e8: int
    reputation: int
    exposure_usd_e8: int  # reserved + allocated, not yet settled
    exposure_limit_usd_e8: int  # bond x exposure_per_bond
    banned: bool
    available_chunks: int
    settled_chunks: int
    double_spends: int


class ChunkView(Message, frozen=True):
    chunk: Chunk
    state: str  # a ChunkState value
    request_id: str  # the offer that reserved or allocated it, "" otherwise
    holder: str  # the requester it is allocated to, "" otherwise
    contract: str


class OfferView(Message, frozen=True):
    offer: Offer
    state: str  # an OfferState value
    created_at: float


class MatcherStatus(Message, frozen=True):
    chunks: dict[str, int]  # ChunkState value -> count
    available_by_asset: dict[str, int]
    offers: dict[str, int]  # OfferState value -> count
    pool_usd_e8: int
    fees_usd_e8: int
    slashed_usd_e8: int
    compensated_usd_e8: int
    uncovered_usd_e8: int
    owners: dict[str, OwnerStatus]
    compensation_paid: dict[str, int]  # victim -> total paid
    sweep_addresses: dict[str, list[str]]  # requester -> registered (normalized) addresses


class OwnerSnapshot(Message, frozen=True):
    """One owner of a :class:`MatcherSnapshot`."""

    owner: str
    bond_usd_e8: int
    reputation: int
    exposure_usd_e8: int  # reserved + allocated: checked against the chunks on restore
    banned: bool
    settled_chunks: int  # its SPENT chunks
    double_spends: int  # its COMPENSATED chunks


class ChunkSnapshot(Message, frozen=True):
    """One chunk of a :class:`MatcherSnapshot`. A reserved, allocated, spent or
    compensated chunk names the offer that took it last; its holder and contract are
    that offer's."""

    chunk: Chunk
    state: str  # a ChunkState value
    request_id: str = ""


class OfferSnapshot(Message, frozen=True):
    """One offer of a :class:`MatcherSnapshot`; its chunks are named by id."""

    request_id: str
    requester: str
    contract: str
    asset: str
    chunk_ids: list[str]
    fee_e8: int
    state: str  # an OfferState value
    created_at: float


class MatcherSnapshot(Message, frozen=True):
    """The complete logical state of a :class:`MatcherCore` (see "Snapshots")."""

    version: int  # SNAPSHOT_VERSION
    policy: MatcherPolicy  # the policy it was taken under: it restores only under it
    owners: list[OwnerSnapshot]  # in registration order (an owner's draw index)
    chunks: list[ChunkSnapshot]  # in the order they were added
    offers: list[OfferSnapshot]  # in the order they were made (expiry breaks ties by it)
    # asset -> its available chunk ids in book order: by owner, then vault, then slot
    available: dict[str, list[str]]
    sweep_addresses: dict[str, list[str]]  # requester -> sorted normalized addresses
    compensation_paid: dict[str, int]  # victim -> total paid
    pool_usd_e8: int
    fees_usd_e8: int
    slashed_usd_e8: int
    compensated_usd_e8: int
    uncovered_usd_e8: int


def compute_claim_id(chunk_id: str) -> bytes:
    """The 32-byte id of the insurance claim for a chunk (one claim per chunk)."""
    return hashlib.sha256(_CLAIM_TAG + b"\x00" + chunk_id.encode()).digest()


# --------------------------------------------------------------------------- helpers


def _require_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    if type(value) is not int:
        raise InvalidRequest(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidRequest(f"{name} must be {bound}, got {value}")
    return value


def _require_str(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty str, got {value!r}")
    return value


def _require_time(now: object, name: str = "now") -> float:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise InvalidRequest(f"{name} must be a finite number, got {now!r}")
    return float(now)


def _require_list(name: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be a list, got {type(value).__name__}")
    return value


def _parse_state(states: dict[str, _S], what: str, name: str, value: object) -> _S:
    """The member of ``states`` (value -> member) that ``value`` names, for ``what name``."""
    state = states.get(value) if isinstance(value, str) else None
    if state is None:
        kind = type(next(iter(states.values()))).__name__
        raise InvalidRequest(f"{what} {name}: unknown {kind} {value!r}")
    return state


def _normalize_account(account: str) -> str:
    """Hex accounts compare case-insensitively (EIP-55); anything else as written."""
    return account.lower() if account[:2] in ("0x", "0X") else account


class _IndexedSet:
    """Insertion-ordered ids with O(1) add, remove (swap with last) and indexing."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, item: str) -> None:
        self.pos[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: str) -> None:
        index = self.pos.pop(item)
        last = self.items.pop()
        if index < len(self.items):
            self.items[index] = last
            self.pos[last] = index


class _WeightTree:
    """Fenwick tree of non-negative integer weights: O(log n) update and weighted pick."""

    __slots__ = ("weights", "tree", "total")

    def __init__(self) -> None:
        self.weights: list[int] = []
        self.tree: list[int] = [0]  # 1-based
        self.total = 0

    def _prefix(self, i: int) -> int:
        total = 0
        while i > 0:
            total += self.tree[i]
            i -= i & -i
        return total

    def _grow(self, size: int) -> None:
        while len(self.weights) < size:
            self.weights.append(0)
            i = len(self.weights)
            self.tree.append(self._prefix(i - 1) - self._prefix(i - (i & -i)))

    def get(self, index: int) -> int:
        return self.weights[index] if index < len(self.weights) else 0

    def set(self, index: int, weight: int) -> None:
        if index >= len(self.weights):
            if weight == 0:
                return
            self._grow(index + 1)
        delta = weight - self.weights[index]
        if delta == 0:
            return
        self.weights[index] = weight
        self.total += delta
        i, n = index + 1, len(self.weights)
        while i <= n:
            self.tree[i] += delta
            i += i & -i

    def find(self, point: int) -> int:
        """The index whose cumulative range holds ``point`` (0 <= point < total)."""
        n = len(self.weights)
        pos = 0
        step = 1 << (n.bit_length() - 1) if n else 0
        while step:
            nxt = pos + step
            if nxt <= n and self.tree[nxt] <= point:
                pos = nxt
                point -= self.tree[nxt]
            step >>= 1
        return pos


class _AssetBook:
    """Available chunks of one asset: owner -> vault -> chunk ids, and owner weights."""

    __slots__ = ("chunk_usd", "by_owner", "counts", "tree", "available")

    def __init__(self, chunk_usd: int) -> None:
        self.chunk_usd = chunk_usd
        self.by_owner: dict[str, dict[str, _IndexedSet]] = {}
        self.counts: dict[str, int] = {}
        self.tree = _WeightTree()
        self.available = 0

    def add(self, chunk: Chunk) -> None:
        vaults = self.by_owner.setdefault(chunk.owner, {})
        ids = vaults.get(chunk.vault)
        if ids is None:
            ids = vaults[chunk.vault] = _IndexedSet()
        ids.add(chunk.chunk_id)
        self.counts[chunk.owner] = self.counts.get(chunk.owner, 0) + 1
        self.available += 1

    def remove(self, chunk: Chunk) -> None:
        vaults = self.by_owner[chunk.owner]
        ids = vaults[chunk.vault]
        ids.remove(chunk.chunk_id)
        if not ids.items:
            del vaults[chunk.vault]
            if not vaults:
                del self.by_owner[chunk.owner]
        left = self.counts[chunk.owner] - 1
        if left:
            self.counts[chunk.owner] = left
        else:
            del self.counts[chunk.owner]
        self.available -= 1


def _get_book_order(book: _AssetBook) -> list[str]:
    """The available chunk ids of a book in the order that rebuilds it: adding them one
    by one to an empty book gives the same owners, vaults and slots."""
    return [
        chunk_id
        for vaults in book.by_owner.values()
        for ids in vaults.values()
        for chunk_id in ids.items
    ]


class _Owner:
    __slots__ = (
        "name",
        "index",
        "bond",
        "reputation",
        "exposure",
        "banned",
        "settled",
        "double_spends",
    )

    def __init__(self, name: str, index: int, bond: int, reputation: int) -> None:
        self.name = name
        self.index = index
        self.bond = bond
        self.reputation = reputation
        self.exposure = 0
        self.banned = False
        self.settled = 0
        self.double_spends = 0


class _ChunkRecord:
    __slots__ = ("chunk", "state", "request_id", "holder", "contract")

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.state = ChunkState.AVAILABLE
        self.request_id = ""
        self.holder = ""
        self.contract = ""


class _OfferRecord:
    __slots__ = ("offer", "state", "created_at")

    def __init__(self, offer: Offer, created_at: float) -> None:
        self.offer = offer
        self.state = OfferState.OPEN
        self.created_at = created_at


# --------------------------------------------------------------------------- the core


class MatcherCore:
    """Deterministic sans-I/O matcher. Time (``now``) and randomness (``seed``) are inputs."""

    def __init__(self, policy: MatcherPolicy) -> None:
        if not isinstance(policy, MatcherPolicy):
            raise InvalidRequest(f"expected a MatcherPolicy, got {type(policy).__name__}")
        policy.validate()
        self.policy = policy
        self._chunk_usd = dict(policy.chunk_usd_e8)
        self._books = {asset: _AssetBook(usd) for asset, usd in sorted(self._chunk_usd.items())}
        self._owners: dict[str, _Owner] = {}
        self._owner_list: list[_Owner] = []
        self._owner_by_account: dict[str, _Owner] = {}  # normalized account -> owner
        self._chunks: dict[str, _ChunkRecord] = {}
        self._chunk_keys: set[tuple[str, int]] = set()  # (vault lowercase, key index)
        self._state_counts = {state: 0 for state in ChunkState}
        self._offers: dict[str, _OfferRecord] = {}
        self._open: dict[str, _OfferRecord] = {}
        self._expiry: list[tuple[float, int, str]] = []  # (created_at, seq, request_id)
        self._seq = 0
        self._sweep: dict[str, set[str]] = {}  # requester -> normalized addresses
        self._paid: dict[str, int] = {}
        self._pool = 0
        self._fees = 0
        self._slashed = 0
        self._compensated = 0
        self._uncovered = 0

    # ------------------------------------------------------------------ owners

    def register_owner(self, owner: str, bond_usd_e8: int) -> None:
        _require_str("owner", owner)
        _require_int("bond_usd_e8", bond_usd_e8, low=self.policy.min_bond_usd_e8)
        if _normalize_account(owner) in self._owner_by_account:
            raise InvalidRequest(f"owner {owner} is already registered")
        record = _Owner(owner, len(self._owner_list), bond_usd_e8, self.policy.initial_reputation)
        self._owners[owner] = record
        self._owner_list.append(record)
        self._owner_by_account[_normalize_account(owner)] = record

    def add_bond(self, owner: str, usd_e8: int) -> None:
        record = self._get_owner(owner)
        _require_int("usd_e8", usd_e8, low=1)
        if record.banned:
            raise WrongState(f"owner {owner} is banned")
        record.bond += usd_e8
        self._refresh(record)

    def register_sweep_address(self, requester: str, address: str) -> None:
        """An address the requester sweeps released keys to: outflows there are its own."""
        _require_str("requester", requester)
        _require_str("address", address)
        self._sweep.setdefault(requester, set()).add(_normalize_account(address))

    # ------------------------------------------------------------------ chunks

    def add_chunks(self, chunks: Sequence[Chunk]) -> None:
        """Add funded chunks to the book; all of them or (on any error) none."""
        seen: set[tuple[str, int]] = set()
        for chunk in chunks:
            if not isinstance(chunk, Chunk):
                raise InvalidRequest(f"expected a Chunk, got {type(chunk).__name__}")
            vault, index = parse_chunk_id(chunk.chunk_id)
            if vault != chunk.vault:
                raise InvalidRequest(f"chunk {chunk.chunk_id} does not name vault {chunk.vault}")
            key = (vault.lower(), index)
            if chunk.chunk_id in self._chunks or key in self._chunk_keys or key in seen:
                raise InvalidRequest(f"duplicate chunk {chunk.chunk_id}")
            seen.add(key)
            owner = self._owners.get(chunk.owner) if isinstance(chunk.owner, str) else None
            if owner is None:
                raise InvalidRequest(f"chunk {chunk.chunk_id}: unknown owner {chunk.owner!r}")
            if owner.banned:
                raise WrongState(f"chunk {chunk.chunk_id}: owner {chunk.owner} is banned")
            size = self._chunk_usd.get(chunk.asset) if isinstance(chunk.asset, str) else None
            if size is None:
                raise InvalidRequest(f"chunk {chunk.chunk_id}: unknown asset {chunk.asset!r}")
            if type(chunk.usd_e8) is not int or chunk.usd_e8 != size:
                raise InvalidRequest(
                    f"chunk {chunk.chunk_id}: usd_e8 {chunk.usd_e8!r} is not the standard "
                    f"{size} of {chunk.asset}"
                )
            _require_int(f"chunk {chunk.chunk_id} amount", chunk.amount, low=1)
            _require_str(f"chunk {chunk.chunk_id} address", chunk.address)
        touched: dict[str, _Owner] = {}
        for chunk in chunks:
            vault, index = parse_chunk_id(chunk.chunk_id)
            self._chunk_keys.add((vault.lower(), index))
            self._chunks[chunk.chunk_id] = _ChunkRecord(chunk)
            self._state_counts[ChunkState.AVAILABLE] += 1
            self._books[chunk.asset].add(chunk)
            touched[chunk.owner] = self._owners[chunk.owner]
        for owner in touched.values():
            self._refresh(owner)

    def withdraw_chunk(self, chunk_id: str, owner: str) -> None:
        record = self._get_chunk(chunk_id)
        if record.chunk.owner != owner:
            raise InvalidRequest(f"chunk {chunk_id} is not owned by {owner!r}")
        if record.state is not ChunkState.AVAILABLE:
            raise WrongState(f"chunk {chunk_id} is {record.state.value}, not available")
        self._books[record.chunk.asset].remove(record.chunk)
        self._move(record, ChunkState.WITHDRAWN)
        self._refresh(self._owners[owner])

    # ------------------------------------------------------------------ matching

    def match(self, request: ChunkRequest, *, seed: bytes, now: float) -> Offer:
        """Reserve chunks for ``request``: all of them, or ``InsufficientLiquidity``."""
        if not isinstance(request, ChunkRequest):
            raise InvalidRequest(f"expected a ChunkRequest, got {type(request).__name__}")
        if not isinstance(seed, bytes):
            raise InvalidRequest(f"seed must be bytes, got {type(seed).__name__}")
        created_at = _require_time(now)
        _require_str("request_id", request.request_id)
        _require_str("requester", request.requester)
        _require_str("contract", request.contract)
        if request.request_id in self._offers:
            raise InvalidRequest(f"request id {request.request_id} was used before")
        size = self._chunk_usd.get(request.asset) if isinstance(request.asset, str) else None
        if size is None:
            raise InvalidRequest(f"unknown asset {request.asset!r}")
        value = request.usd_e8
        if type(value) is not int or value <= 0 or value % size:
            raise InvalidRequest(
                f"usd_e8 {value!r} is not a positive multiple of the {request.asset} chunk {size}"
            )
        picked = self._draw_chunks(request, value // size, seed)
        chunks: list[Chunk] = []
        touched: dict[str, _Owner] = {}
        book = self._books[request.asset]
        for chunk_id in picked:
            record = self._chunks[chunk_id]
            book.remove(record.chunk)
            self._move(record, ChunkState.RESERVED)
            record.request_id = request.request_id
            owner = self._owners[record.chunk.owner]
            owner.exposure += record.chunk.usd_e8
            touched[owner.name] = owner
            chunks.append(record.chunk)
        for owner in touched.values():
            self._refresh(owner)
        offer = Offer(
            request_id=request.request_id,
            requester=request.requester,
            contract=request.contract,
            asset=request.asset,
            chunks=chunks,
            fee_e8=value * self.policy.fee_bps // BPS,
        )
        offer_record = _OfferRecord(offer, created_at)
        self._offers[request.request_id] = offer_record
        self._open[request.request_id] = offer_record
        heapq.heappush(self._expiry, (created_at, self._seq, request.request_id))
        self._seq += 1
        return offer

    def _draw_chunks(self, request: ChunkRequest, k: int, seed: bytes) -> list[str]:
        book = self._books[request.asset]
        tree = book.tree
        chunk_usd = book.chunk_usd
        owner_cap = max(1, k * self.policy.max_owner_share_bps // BPS)
        vault_cap = max(1, k * self.policy.max_vault_share_bps // BPS)
        base = hashlib.sha256(_DRAW_TAG)
        base.update(len(seed).to_bytes(4, "big") + seed)
        base.update(request.request_id.encode())
        counter = 0

        def draw(bound: int) -> int:
            nonlocal counter
            h = base.copy()
            h.update(counter.to_bytes(8, "big"))
            counter += 1
            return int.from_bytes(h.digest(), "big") % bound

        saved: dict[int, int] = {}

        def silence(index: int) -> None:
            if index not in saved:
                saved[index] = tree.get(index)
            tree.set(index, 0)

        picked: list[str] = []
        taken: set[str] = set()
        by_owner: dict[str, int] = {}
        by_vault: dict[str, int] = {}
        by_slot: dict[tuple[str, str], int] = {}
        requester = self._owner_by_account.get(_normalize_account(request.requester))
        try:
            if requester is not None:
                silence(requester.index)
            while len(picked) < k:
                if tree.total <= 0:
                    raise InsufficientLiquidity(
                        f"cannot fill {k} chunks of {request.asset} within the risk limits "
                        f"({len(picked)} found)"
                    )
                owner = self._owner_list[tree.find(draw(tree.total))]
                choices: list[tuple[str, _IndexedSet, int]] = []
                room = 0
                for vault, ids in book.by_owner[owner.name].items():
                    if by_vault.get(vault, 0) >= vault_cap:
                        continue
                    left = len(ids.items) - by_slot.get((owner.name, vault), 0)
                    if left > 0:
                        choices.append((vault, ids, left))
                        room += left
                if not choices:
                    silence(owner.index)
                    continue
                point = draw(room)
                choice = 0
                while point >= choices[choice][2]:
                    point -= choices[choice][2]
                    choice += 1
                vault, ids, _ = choices[choice]
                items = ids.items
                j = draw(len(items))
                while items[j] in taken:
                    j = (j + 1) % len(items)
                chunk_id = items[j]
                picked.append(chunk_id)
                taken.add(chunk_id)
                by_vault[vault] = by_vault.get(vault, 0) + 1
                by_slot[(owner.name, vault)] = by_slot.get((owner.name, vault), 0) + 1
                count = by_owner[owner.name] = by_owner.get(owner.name, 0) + 1
                limit = owner.bond * self.policy.exposure_per_bond
                if (
                    count >= owner_cap
                    or count >= book.counts[owner.name]
                    or owner.exposure + (count + 1) * chunk_usd > limit
                ):
                    silence(owner.index)
        finally:
            for index, weight in saved.items():
                tree.set(index, weight)
        return picked

    def check_accept(
        self, request_id: str, now: float, *, requester: str = "", margin_s: float = 0.0
    ) -> Offer:
        """Every precondition of :meth:`accept`, changing nothing: the offer is open, made
        to ``requester`` (if given), and still open ``margin_s`` seconds from ``now``
        (the time its fee payment takes). A requester's host checks this before it pays."""
        record = self._get_open_offer(request_id)
        if requester and _normalize_account(requester) != (
            _normalize_account(record.offer.requester)
        ):
            raise InvalidRequest(f"offer {request_id} was made to another requester")
        if (
            isinstance(margin_s, bool)
            or not isinstance(margin_s, int | float)
            or not math.isfinite(margin_s)
            or margin_s < 0
        ):
            raise InvalidRequest("margin_s must be a finite number >= 0")
        if _require_time(now) + margin_s > record.created_at + self.policy.offer_ttl_s:
            raise WrongState(
                f"offer {request_id} has expired"
                if margin_s == 0 or now > record.created_at + self.policy.offer_ttl_s
                else f"offer {request_id} expires in less than {margin_s:g}s: request again"
            )
        return record.offer

    def accept(self, request_id: str, now: float, *, requester: str = "") -> Offer:
        """The requester takes the offer: its chunks are allocated, the fee goes to the pool."""
        self.check_accept(request_id, now, requester=requester)
        record = self._get_open_offer(request_id)
        offer = record.offer
        for chunk in offer.chunks:
            chunk_record = self._chunks[chunk.chunk_id]
            self._move(chunk_record, ChunkState.ALLOCATED)
            chunk_record.holder = offer.requester
            chunk_record.contract = offer.contract
        self._pool += offer.fee_e8
        self._fees += offer.fee_e8
        self._close(record, OfferState.ACCEPTED)
        return offer

    def decline(self, request_id: str) -> None:
        record = self._get_open_offer(request_id)
        self._release(record, OfferState.DECLINED)

    def expire(self, now: float) -> list[str]:
        """Release every open offer older than ``offer_ttl_s``; return their request ids."""
        current = _require_time(now)
        expired: list[str] = []
        ttl = self.policy.offer_ttl_s
        while self._expiry and current > self._expiry[0][0] + ttl:
            _, _, request_id = heapq.heappop(self._expiry)
            record = self._open.get(request_id)
            if record is not None:
                self._release(record, OfferState.EXPIRED)
                expired.append(request_id)
        return expired

    # ------------------------------------------------------------------ outcomes

    def settle(self, chunk_id: str, requester: str) -> None:
        """The requester swept the chunk: it is spent, its owner earns reputation."""
        record = self._get_chunk(chunk_id)
        if record.state is not ChunkState.ALLOCATED:
            raise WrongState(f"chunk {chunk_id} is {record.state.value}, not allocated")
        if record.holder != requester:
            raise InvalidRequest(f"chunk {chunk_id} is not allocated to {requester!r}")
        self._move(record, ChunkState.SPENT)
        owner = self._owners[record.chunk.owner]
        owner.exposure -= record.chunk.usd_e8
        owner.settled += 1
        if not owner.banned:
            owner.reputation = min(
                self.policy.max_reputation, owner.reputation + self.policy.reputation_gain
            )
        self._refresh(owner)

    def reclaim(self, chunk_id: str, owner: str) -> None:
        """An allocated chunk whose key was never released (its contract ended without
        it: the requester vanished) goes back to the book and frees its owner's
        exposure. The caller has checked the owner's vault says so (``Unreleased``)."""
        record = self._get_chunk(chunk_id)
        if record.chunk.owner.lower() != owner.lower():
            raise InvalidRequest(f"chunk {chunk_id} is not owned by {owner!r}")
        if record.state is not ChunkState.ALLOCATED:
            raise WrongState(f"chunk {chunk_id} is {record.state.value}, not allocated")
        holder = self._owners[record.chunk.owner]
        if holder.banned:
            self._move(record, ChunkState.WITHDRAWN)
        else:
            self._move(record, ChunkState.AVAILABLE)
            self._books[record.chunk.asset].add(record.chunk)
        holder.exposure -= record.chunk.usd_e8
        record.request_id = ""
        record.holder = ""
        record.contract = ""
        self._refresh(holder)

    def judge_double_spend(
        self, report: DoubleSpendReport, observation: ChainObservation
    ) -> Penalty:
        """The penalty a double-spend report would bring, changing nothing: its caller can
        finish everything that may still fail (signing the pool's transactions) before
        :meth:`report_double_spend` applies it."""
        if not isinstance(report, DoubleSpendReport):
            raise InvalidRequest(f"expected a DoubleSpendReport, got {type(report).__name__}")
        if not isinstance(observation, ChainObservation):
            raise InvalidRequest(f"expected a ChainObservation, got {type(observation).__name__}")
        if type(observation.balance) is not int or observation.balance < 0:
            raise InvalidRequest(f"balance must be an int >= 0, got {observation.balance!r}")
        for name in ("outflow_to", "outflow_tx", "address"):
            if not isinstance(getattr(observation, name), str):
                raise InvalidRequest(f"observation.{name} must be a str")
        if not isinstance(report.sweep_tx, str) or not isinstance(report.victim, str):
            raise InvalidRequest("report.victim and report.sweep_tx must be str")
        record = self._chunks.get(report.chunk_id) if isinstance(report.chunk_id, str) else None
        if record is None:
            raise ReportRejected(f"unknown chunk {report.chunk_id!r}")
        chunk = record.chunk
        if record.state is not ChunkState.ALLOCATED:
            raise ReportRejected(f"chunk {chunk.chunk_id} is {record.state.value}, not allocated")
        if record.holder != report.victim:
            raise ReportRejected(f"chunk {chunk.chunk_id} is not allocated to {report.victim!r}")
        if observation.address and _normalize_account(observation.address) != (
            _normalize_account(chunk.address)
        ):
            raise ReportRejected(f"the observation is not of {chunk.address}")
        if observation.balance >= chunk.amount:
            raise ReportRejected(f"the funds of {chunk.chunk_id} are still there")
        own = self._sweep.get(report.victim, set())
        if observation.outflow_to and _normalize_account(observation.outflow_to) in own:
            raise ReportRejected(f"the funds of {chunk.chunk_id} went to the victim's address")
        if report.sweep_tx and observation.outflow_tx.lower() == report.sweep_tx.lower():
            raise ReportRejected(f"the outflow of {chunk.chunk_id} is the victim's own sweep")
        owner = self._owners[chunk.owner]
        value = chunk.usd_e8
        slashed = min(owner.bond, value * self.policy.slash_multiple_bps // BPS)
        compensation = min(value, self._pool + slashed)
        return Penalty(
            owner=owner.name,
            chunk_id=chunk.chunk_id,
            victim=report.victim,
            slashed_usd_e8=slashed,
            compensation_usd_e8=compensation,
            uncovered_usd_e8=value - compensation,
            claim_id=compute_claim_id(chunk.chunk_id),
            voided_offers=self._voided_by(owner),
        )

    def report_double_spend(
        self, report: DoubleSpendReport, observation: ChainObservation
    ) -> Penalty:
        """Check a double-spend report against the chain; when it holds, penalize and pay
        (:meth:`judge_double_spend`, then apply it)."""
        penalty = self.judge_double_spend(report, observation)
        record = self._chunks[penalty.chunk_id]
        owner = self._owners[penalty.owner]
        value, slashed, compensation = (
            record.chunk.usd_e8,
            penalty.slashed_usd_e8,
            penalty.compensation_usd_e8,
        )
        owner.bond -= slashed
        self._pool += slashed
        self._slashed += slashed
        self._pool -= compensation
        self._compensated += compensation
        self._uncovered += value - compensation
        self._paid[report.victim] = self._paid.get(report.victim, 0) + compensation
        self._move(record, ChunkState.COMPENSATED)
        owner.exposure -= value
        owner.double_spends += 1
        voided = self._ban(owner)
        if voided != penalty.voided_offers:  # pragma: no cover - the same expression
            raise WrongState("the voided offers changed while the penalty was applied")
        return penalty

    def _voided_by(self, owner: _Owner) -> list[str]:
        """The open offers a ban of ``owner`` voids: those holding one of its chunks."""
        return [
            request_id
            for request_id, record in self._open.items()
            if any(chunk.owner == owner.name for chunk in record.offer.chunks)
        ]

    def _ban(self, owner: _Owner) -> list[str]:
        owner.reputation = 0
        owner.banned = True
        for book in self._books.values():
            vaults = book.by_owner.get(owner.name)
            if vaults is None:
                continue
            for ids in list(vaults.values()):
                for chunk_id in list(ids.items):
                    record = self._chunks[chunk_id]
                    book.remove(record.chunk)
                    self._move(record, ChunkState.WITHDRAWN)
        voided = self._voided_by(owner)
        for request_id in voided:
            self._release(self._open[request_id], OfferState.VOIDED)
        self._refresh(owner)
        return voided

    # ------------------------------------------------------------------ queries

    def get_chunk(self, chunk_id: str) -> ChunkView:
        record = self._get_chunk(chunk_id)
        return ChunkView(
            chunk=record.chunk,
            state=record.state.value,
            request_id=record.request_id,
            holder=record.holder,
            contract=record.contract,
        )

    def get_offer(self, request_id: str) -> OfferView:
        record = self._offers.get(request_id)
        if record is None:
            raise InvalidRequest(f"unknown request {request_id!r}")
        return OfferView(offer=record.offer, state=record.state.value, created_at=record.created_at)

    def get_owner(self, owner: str) -> OwnerStatus:
        record = self._get_owner(owner)
        return OwnerStatus(
            owner=record.name,
            bond_usd_e8=record.bond,
            reputation=record.reputation,
            exposure_usd_e8=record.exposure,
            exposure_limit_usd_e8=record.bond * self.policy.exposure_per_bond,
            banned=record.banned,
            available_chunks=sum(book.counts.get(record.name, 0) for book in self._books.values()),
            settled_chunks=record.settled,
            double_spends=record.double_spends,
        )

    def get_status(self) -> MatcherStatus:
        offers = {state.value: 0 for state in OfferState}
        for record in self._offers.values():
            offers[record.state.value] += 1
        return MatcherStatus(
            chunks={state.value: count for state, count in self._state_counts.items()},
            available_by_asset={asset: book.available for asset, book in self._books.items()},
            offers=offers,
            pool_usd_e8=self._pool,
            fees_usd_e8=self._fees,
            slashed_usd_e8=self._slashed,
            compensated_usd_e8=self._compensated,
            uncovered_usd_e8=self._uncovered,
            owners={name: self.get_owner(name) for name in self._owners},
            compensation_paid=dict(self._paid),
            sweep_addresses={r: sorted(a) for r, a in sorted(self._sweep.items())},
        )

    # ------------------------------------------------------------------ snapshots

    def export_snapshot(self) -> MatcherSnapshot:
        """The complete logical state, canonical: the same state gives the same bytes."""
        return MatcherSnapshot(
            version=SNAPSHOT_VERSION,
            policy=self.policy,
            owners=[
                OwnerSnapshot(
                    owner=owner.name,
                    bond_usd_e8=owner.bond,
                    reputation=owner.reputation,
                    exposure_usd_e8=owner.exposure,
                    banned=owner.banned,
                    settled_chunks=owner.settled,
                    double_spends=owner.double_spends,
                )
                for owner in self._owner_list
            ],
            chunks=[
                ChunkSnapshot(
                    chunk=record.chunk, state=record.state.value, request_id=record.request_id
                )
                for record in self._chunks.values()
            ],
            offers=[
                OfferSnapshot(
                    request_id=record.offer.request_id,
                    requester=record.offer.requester,
                    contract=record.offer.contract,
                    asset=record.offer.asset,
                    chunk_ids=[chunk.chunk_id for chunk in record.offer.chunks],
                    fee_e8=record.offer.fee_e8,
                    state=record.state.value,
                    created_at=record.created_at,
                )
                for record in self._offers.values()
            ],
            available={asset: _get_book_order(book) for asset, book in self._books.items()},
            sweep_addresses={r: sorted(a) for r, a in sorted(self._sweep.items())},
            compensation_paid=dict(sorted(self._paid.items())),
            pool_usd_e8=self._pool,
            fees_usd_e8=self._fees,
            slashed_usd_e8=self._slashed,
            compensated_usd_e8=self._compensated,
            uncovered_usd_e8=self._uncovered,
        )

    @classmethod
    def from_snapshot(cls, policy: MatcherPolicy, snapshot: MatcherSnapshot) -> MatcherCore:
        """A core in the state ``snapshot`` describes, with its indexes rebuilt: it answers
        every later operation exactly as the core the snapshot was taken from. A snapshot
        taken under another policy, or that breaks an invariant of the state (see
        "Snapshots" in the module docstring), raises ``InvalidRequest``."""
        core = cls(policy)
        if not isinstance(snapshot, MatcherSnapshot):
            raise InvalidRequest(f"expected a MatcherSnapshot, got {type(snapshot).__name__}")
        if type(snapshot.version) is not int or snapshot.version != SNAPSHOT_VERSION:
            raise InvalidRequest(f"unknown snapshot version {snapshot.version!r}")
        if snapshot.policy != policy:
            raise InvalidRequest("the snapshot was taken under another policy")
        core._load_owners(snapshot.owners)
        core._load_chunks(snapshot.chunks)
        core._load_offers(snapshot.offers)
        core._check_chunk_owners()
        core._load_books(snapshot.available)
        core._load_money(snapshot)
        core._load_sweep(snapshot.sweep_addresses)
        for owner in core._owner_list:
            core._refresh(owner)
        return core

    def _load_owners(self, owners: object) -> None:
        policy = self.policy
        for index, entry in enumerate(_require_list("owners", owners)):
            if not isinstance(entry, OwnerSnapshot):
                raise InvalidRequest(f"expected an OwnerSnapshot, got {type(entry).__name__}")
            name = _require_str("owner", entry.owner)
            if _normalize_account(name) in self._owner_by_account:
                raise InvalidRequest(f"owner {name} is listed twice")
            _require_int(f"owner {name} bond", entry.bond_usd_e8, low=0)
            _require_int(f"owner {name} exposure", entry.exposure_usd_e8, low=0)
            _require_int(f"owner {name} settled chunks", entry.settled_chunks, low=0)
            _require_int(f"owner {name} double spends", entry.double_spends, low=0)
            if type(entry.banned) is not bool:
                raise InvalidRequest(f"owner {name}: banned must be a bool")
            if entry.banned != (entry.double_spends > 0):
                raise InvalidRequest(f"owner {name} is banned if and only if it double spent")
            if entry.banned:
                _require_int(f"banned owner {name} reputation", entry.reputation, low=0, high=0)
            else:
                _require_int(
                    f"owner {name} reputation",
                    entry.reputation,
                    low=policy.min_reputation,
                    high=policy.max_reputation,
                )
                _require_int(f"owner {name} bond", entry.bond_usd_e8, low=policy.min_bond_usd_e8)
                if entry.exposure_usd_e8 > entry.bond_usd_e8 * policy.exposure_per_bond:
                    raise InvalidRequest(f"owner {name} is exposed beyond its bond")
            record = _Owner(name, index, entry.bond_usd_e8, entry.reputation)
            record.exposure = entry.exposure_usd_e8
            record.banned = entry.banned
            record.settled = entry.settled_chunks
            record.double_spends = entry.double_spends
            self._owners[name] = record
            self._owner_list.append(record)
            self._owner_by_account[_normalize_account(name)] = record

    def _load_chunks(self, chunks: object) -> None:
        for entry in _require_list("chunks", chunks):
            if not isinstance(entry, ChunkSnapshot):
                raise InvalidRequest(f"expected a ChunkSnapshot, got {type(entry).__name__}")
            chunk = entry.chunk
            if not isinstance(chunk, Chunk):
                raise InvalidRequest(f"expected a Chunk, got {type(chunk).__name__}")
            chunk_id = _require_str("chunk id", chunk.chunk_id)
            vault, index = parse_chunk_id(chunk_id)
            if vault != chunk.vault:
                raise InvalidRequest(f"chunk {chunk_id} does not name vault {chunk.vault}")
            key = (vault.lower(), index)
            if chunk_id in self._chunks or key in self._chunk_keys:
                raise InvalidRequest(f"chunk {chunk_id} is listed twice")
            if not isinstance(chunk.owner, str) or chunk.owner not in self._owners:
                raise InvalidRequest(f"chunk {chunk_id}: unknown owner {chunk.owner!r}")
            size = self._chunk_usd.get(chunk.asset) if isinstance(chunk.asset, str) else None
            if size is None:
                raise InvalidRequest(f"chunk {chunk_id}: unknown asset {chunk.asset!r}")
            usd, amount, address = chunk.usd_e8, chunk.amount, chunk.address
            if not (
                type(usd) is int
                and usd == size
                and type(amount) is int
                and amount >= 1
                and isinstance(address, str)
                and address
            ):  # the fast path above builds no message; this one says what is wrong
                _require_int(f"chunk {chunk_id} usd_e8", usd, low=size, high=size)
                _require_int(f"chunk {chunk_id} amount", amount, low=1)
                _require_str(f"chunk {chunk_id} address", address)
            state = _parse_state(_CHUNK_STATES, "chunk", chunk_id, entry.state)
            request_id = entry.request_id
            if not isinstance(request_id, str):
                raise InvalidRequest(f"chunk {chunk_id}: request_id must be a str")
            if (request_id == "") != (state in (ChunkState.AVAILABLE, ChunkState.WITHDRAWN)):
                raise InvalidRequest(
                    f"chunk {chunk_id} is {state.value}: "
                    + ("it names no offer" if not request_id else "it names an offer")
                )
            record = _ChunkRecord(chunk)
            record.state = state
            record.request_id = request_id
            self._chunks[chunk_id] = record
            self._chunk_keys.add(key)
            self._state_counts[state] += 1

    def _load_offers(self, offers: object) -> None:
        fee_bps = self.policy.fee_bps
        holds: set[tuple[str, str]] = set()  # (request id, chunk id) of every offer's chunks
        for seq, entry in enumerate(_require_list("offers", offers)):
            if not isinstance(entry, OfferSnapshot):
                raise InvalidRequest(f"expected an OfferSnapshot, got {type(entry).__name__}")
            request_id = _require_str("request_id", entry.request_id)
            if request_id in self._offers:
                raise InvalidRequest(f"offer {request_id} is listed twice")
            _require_str(f"offer {request_id} requester", entry.requester)
            _require_str(f"offer {request_id} contract", entry.contract)
            size = self._chunk_usd.get(entry.asset) if isinstance(entry.asset, str) else None
            if size is None:
                raise InvalidRequest(f"offer {request_id}: unknown asset {entry.asset!r}")
            offer_state = _parse_state(_OFFER_STATES, "offer", request_id, entry.state)
            created_at = _require_time(entry.created_at, f"offer {request_id} created_at")
            chunk_ids = _require_list(f"offer {request_id} chunk_ids", entry.chunk_ids)
            if not chunk_ids:
                raise InvalidRequest(f"offer {request_id} has no chunks")
            fee = len(chunk_ids) * size * fee_bps // BPS
            _require_int(f"offer {request_id} fee_e8", entry.fee_e8, low=fee, high=fee)
            chunks: list[Chunk] = []
            for chunk_id in chunk_ids:
                record = self._chunks.get(chunk_id) if isinstance(chunk_id, str) else None
                if record is None:
                    raise InvalidRequest(f"offer {request_id}: unknown chunk {chunk_id!r}")
                chunk = record.chunk
                if chunk.asset != entry.asset:
                    raise InvalidRequest(f"offer {request_id}: chunk {chunk_id} is another asset")
                if (request_id, chunk.chunk_id) in holds:
                    raise InvalidRequest(f"offer {request_id} holds chunk {chunk_id} twice")
                if offer_state is OfferState.OPEN and record.request_id != request_id:
                    raise InvalidRequest(
                        f"open offer {request_id} holds chunk {chunk_id}, not reserved for it"
                    )
                holds.add((request_id, chunk.chunk_id))
                chunks.append(chunk)
            offer = Offer(
                request_id=request_id,
                requester=entry.requester,
                contract=entry.contract,
                asset=entry.asset,
                chunks=chunks,
                fee_e8=entry.fee_e8,
            )
            offer_record = _OfferRecord(offer, created_at)
            offer_record.state = offer_state
            self._offers[request_id] = offer_record
            if offer_state is OfferState.OPEN:
                self._open[request_id] = offer_record
                self._expiry.append((created_at, seq, request_id))
        self._seq = len(self._offers)
        heapq.heapify(self._expiry)
        # a chunk that names an offer is held by it, and in the state that offer's gives it
        for chunk_id, record in self._chunks.items():
            state = record.state
            if state in (ChunkState.AVAILABLE, ChunkState.WITHDRAWN):
                continue
            named = self._offers.get(record.request_id)
            if named is None or (record.request_id, chunk_id) not in holds:
                raise InvalidRequest(
                    f"chunk {chunk_id} is {state.value} by an offer that does not hold it"
                )
            wanted = OfferState.OPEN if state is ChunkState.RESERVED else OfferState.ACCEPTED
            if named.state is not wanted:
                raise InvalidRequest(
                    f"chunk {chunk_id} is {state.value} but offer {record.request_id} "
                    f"is {named.state.value}"
                )
            if state is not ChunkState.RESERVED:
                record.holder = named.offer.requester
                record.contract = named.offer.contract

    def _check_chunk_owners(self) -> None:
        """Each owner's exposure and counters are what its chunks say."""
        exposure = dict.fromkeys(self._owners, 0)
        settled = dict.fromkeys(self._owners, 0)
        double_spends = dict.fromkeys(self._owners, 0)
        open_states = (ChunkState.RESERVED, ChunkState.ALLOCATED)
        for chunk_id, record in self._chunks.items():
            name = record.chunk.owner
            state = record.state
            if state in open_states:
                exposure[name] += record.chunk.usd_e8
            elif state is ChunkState.SPENT:
                settled[name] += 1
            elif state is ChunkState.COMPENSATED:
                double_spends[name] += 1
            if self._owners[name].banned and state in (ChunkState.AVAILABLE, ChunkState.RESERVED):
                raise InvalidRequest(f"chunk {chunk_id} is {state.value}: its owner is banned")
        for name, owner in self._owners.items():
            if owner.exposure != exposure[name]:
                raise InvalidRequest(
                    f"owner {name} exposure {owner.exposure} is not its reserved and "
                    f"allocated chunks' {exposure[name]}"
                )
            if owner.settled != settled[name] or owner.double_spends != double_spends[name]:
                raise InvalidRequest(f"owner {name}'s counters do not match its chunks")

    def _load_books(self, available: object) -> None:
        if not isinstance(available, dict) or set(available) != set(self._books):
            raise InvalidRequest("available must list every asset of the policy")
        listed = 0
        for asset, book in self._books.items():
            chunk_ids = _require_list(f"available[{asset}]", available[asset])
            for chunk_id in chunk_ids:
                record = self._chunks.get(chunk_id) if isinstance(chunk_id, str) else None
                if record is None or record.state is not ChunkState.AVAILABLE:
                    raise InvalidRequest(f"the book of {asset} lists {chunk_id!r}: not available")
                chunk = record.chunk
                if chunk.asset != asset:
                    raise InvalidRequest(f"the book of {asset} lists chunk {chunk_id} of another")
                ids = book.by_owner.get(chunk.owner, {}).get(chunk.vault)
                if ids is not None and chunk_id in ids.pos:
                    raise InvalidRequest(f"the book of {asset} lists chunk {chunk_id} twice")
                book.add(chunk)
            if _get_book_order(book) != chunk_ids:
                raise InvalidRequest(f"the book of {asset} is not in book order")
            listed += len(chunk_ids)
        if listed != self._state_counts[ChunkState.AVAILABLE]:
            raise InvalidRequest("an available chunk is missing from the book")

    def _load_money(self, snapshot: MatcherSnapshot) -> None:
        pool = _require_int("pool_usd_e8", snapshot.pool_usd_e8, low=0)
        fees = _require_int("fees_usd_e8", snapshot.fees_usd_e8, low=0)
        slashed = _require_int("slashed_usd_e8", snapshot.slashed_usd_e8, low=0)
        compensated = _require_int("compensated_usd_e8", snapshot.compensated_usd_e8, low=0)
        uncovered = _require_int("uncovered_usd_e8", snapshot.uncovered_usd_e8, low=0)
        if pool != fees + slashed - compensated:
            raise InvalidRequest("the pool is not fees + slashes - compensation")
        accepted = sum(
            record.offer.fee_e8
            for record in self._offers.values()
            if record.state is OfferState.ACCEPTED
        )
        if fees != accepted:
            raise InvalidRequest(f"fees {fees} are not the accepted offers' {accepted}")
        losses: dict[str, int] = {}  # victim -> value of its compensated chunks
        for record in self._chunks.values():
            if record.state is ChunkState.COMPENSATED:
                losses[record.holder] = losses.get(record.holder, 0) + record.chunk.usd_e8
        if compensated + uncovered != sum(losses.values()):
            raise InvalidRequest("compensated + uncovered is not the compensated chunks' value")
        paid = snapshot.compensation_paid
        if not isinstance(paid, dict) or set(paid) != set(losses):
            raise InvalidRequest("compensation_paid must list exactly the compensated victims")
        for victim, amount in paid.items():
            _require_int(f"compensation_paid[{victim}]", amount, low=0, high=losses[victim])
        if sum(paid.values()) != compensated:
            raise InvalidRequest("compensation_paid does not add up to the compensation")
        self._paid = dict(paid)
        self._pool, self._fees, self._slashed = pool, fees, slashed
        self._compensated, self._uncovered = compensated, uncovered

    def _load_sweep(self, sweep: object) -> None:
        if not isinstance(sweep, dict):
            raise InvalidRequest("sweep_addresses must be a dict")
        for requester, entry in sweep.items():
            _require_str("sweep requester", requester)
            addresses: list[str] = []
            for item in _require_list(f"sweep_addresses[{requester}]", entry):
                address = _require_str("sweep address", item)
                if _normalize_account(address) != address:
                    raise InvalidRequest(f"sweep address {address} is not normalized")
                if addresses and address <= addresses[-1]:
                    raise InvalidRequest(f"the sweep addresses of {requester} are not sorted")
                addresses.append(address)
            if not addresses:
                raise InvalidRequest(f"requester {requester} has no sweep address")
            self._sweep[requester] = set(addresses)

    # ------------------------------------------------------------------ internals

    def _get_owner(self, owner: str) -> _Owner:
        record = self._owners.get(owner) if isinstance(owner, str) else None
        if record is None:
            raise InvalidRequest(f"unknown owner {owner!r}")
        return record

    def _get_chunk(self, chunk_id: str) -> _ChunkRecord:
        record = self._chunks.get(chunk_id) if isinstance(chunk_id, str) else None
        if record is None:
            raise InvalidRequest(f"unknown chunk {chunk_id!r}")
        return record

    def _get_open_offer(self, request_id: str) -> _OfferRecord:
        record = self._offers.get(request_id) if isinstance(request_id, str) else None
        if record is None:
            raise InvalidRequest(f"unknown request {request_id!r}")
        if record.state is not OfferState.OPEN:
            raise WrongState(f"offer {request_id} is {record.state.value}")
        return record

    def _move(self, record: _ChunkRecord, state: ChunkState) -> None:
        if state not in _CHUNK_MOVES[record.state]:
            raise WrongState(
                f"chunk {record.chunk.chunk_id}: no move {record.state.value} -> {state.value}"
            )
        self._state_counts[record.state] -= 1
        self._state_counts[state] += 1
        record.state = state

    def _close(self, record: _OfferRecord, state: OfferState) -> None:
        record.state = state
        del self._open[record.offer.request_id]

    def _release(self, record: _OfferRecord, state: OfferState) -> None:
        """Give an open offer's reserved chunks back (withdrawn if their owner is banned)."""
        touched: dict[str, _Owner] = {}
        for chunk in record.offer.chunks:
            chunk_record = self._chunks[chunk.chunk_id]
            owner = self._owners[chunk.owner]
            owner.exposure -= chunk.usd_e8
            chunk_record.request_id = ""
            if owner.banned:
                self._move(chunk_record, ChunkState.WITHDRAWN)
            else:
                self._move(chunk_record, ChunkState.AVAILABLE)
                self._books[chunk.asset].add(chunk)
            touched[owner.name] = owner
        self._close(record, state)
        for owner in touched.values():
            self._refresh(owner)

    def _refresh(self, owner: _Owner) -> None:
        """Recompute the owner's sampling weight in every asset book."""
        eligible = not owner.banned and owner.reputation >= self.policy.min_reputation
        headroom = owner.bond * self.policy.exposure_per_bond - owner.exposure
        for book in self._books.values():
            ok = eligible and book.counts.get(owner.name, 0) > 0 and headroom >= book.chunk_usd
            book.tree.set(owner.index, owner.reputation if ok else 0)
