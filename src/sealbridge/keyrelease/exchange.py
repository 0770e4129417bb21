"""Contract Z: settling key-release contracts by handing over private keys, step by step.

Theory of operation
-------------------
A chunk's funds belong to whoever knows its private key. Both machines here run inside a
client's enclave; they never see a key of their own side (the vault holds those) and never
touch the network: the caller feeds them events with the current time and carries out the
effects they return, in order. A key that the caller passes in is the caller's to keep once
the handler returns without an error (it is needed to sweep the chunk).

:class:`TitForTatSwap` -- party A gives chunks ``a_1..a_k`` of one asset, party B gives
``b_1..b_k`` of another, of equal total USD value. A moves first::

    A: release a_1 -> B: on a valid a_1, release b_1 -> A: on a valid b_1, release a_2 -> ...

so an honest party never has more than one chunk given and not yet paid for (A holds the
"one chunk" of risk; B holds none). Each received key must be the next expected chunk of
the counterparty and must open that chunk's address (:func:`verify_chunk_key`: its EIP-55
address for ``native`` and ``erc20`` chunks, its P2WPKH address for ``btc`` chunks);
anything else is an :class:`ExchangeViolation` and changes nothing. States:

* ``WAITING``  -- built, ``start`` not yet called;
* ``ACTIVE``   -- exchanging keys;
* ``COMPLETED``-- gave all ``k`` and received all ``k`` (terminal);
* ``ABORTED``  -- the deadline passed first, or the caller aborted; never releases again
  (terminal). A key that arrives after the deadline but while still ACTIVE is still taken
  (it only lowers our exposure), but nothing is released for it.

:class:`TimeLockedEscrow` -- a depositor's chunks go to a beneficiary at ``unlock_at``
unless the depositor cancelled before then. States: ``LOCKED`` (until unlock / all keys
received), ``RELEASED`` (terminal; on the depositor's side the keys are released exactly
once), ``CANCELLED`` (terminal; only possible strictly before ``unlock_at``). The
beneficiary side checks each key and asks for a sweep.

Effects (frozen messages): :class:`ReleaseChunkKey` (send the key of one of my chunks to the
counterparty's enclave), :class:`Sweep` (move a received chunk's funds to a fresh address
now), :class:`SwapFinished` and :class:`EscrowFinished` (the outcome, for the caller's
records and reports).

Both machines serialize to a message (``to_state`` / ``from_state``) so that the enclave
can seal them; a restored machine re-checks every invariant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Literal

from sealbridge.core.encoding import Message
from sealbridge.crypto.signing import (
    ADDRESS_SIZE,
    SECP256K1_ORDER,
    SECP256K1_PRIVATE_KEY_SIZE,
    eth_address,
    secp256k1_public,
    to_checksum_address,
)
from sealbridge.keyrelease.bitcoin import BitcoinError, derive_p2wpkh, get_p2wpkh_network
from sealbridge.keyrelease.errors import AlreadyReleased, ExchangeViolation, InvalidRequest
from sealbridge.keyrelease.types import AssetKind, Chunk

__all__ = [
    "EscrowFinished",
    "EscrowRole",
    "EscrowState",
    "EscrowStatus",
    "ExchangeEffect",
    "ReleaseChunkKey",
    "SwapFinished",
    "SwapRole",
    "SwapState",
    "SwapStatus",
    "Sweep",
    "TimeLockedEscrow",
    "TitForTatSwap",
    "verify_chunk_key",
]

SwapRole = Literal["A", "B"]
EscrowRole = Literal["depositor", "beneficiary"]
_EVM_KINDS = frozenset({AssetKind.NATIVE.value, AssetKind.ERC20.value})
_KINDS = _EVM_KINDS | {AssetKind.BTC.value}


# --- effects ---------------------------------------------------------------------------------


class ReleaseChunkKey(Message, frozen=True):
    """Send the private key of my chunk ``chunk_id`` to the enclave of ``to_role``.

    ``swap_id`` is the contract's id (the escrow id for an escrow)."""

    swap_id: str
    chunk_id: str
    to_role: str


class Sweep(Message, frozen=True):
    """Move the funds of the received chunk ``chunk_id`` to a fresh address at once."""

    swap_id: str
    chunk_id: str


class SwapFinished(Message, frozen=True):
    """A swap reached a terminal state; ``given``/``received`` count chunks."""

    swap_id: str
    outcome: str  # "completed" | "aborted"
    given: int
    received: int
    reason: str = ""


class EscrowFinished(Message, frozen=True):
    """An escrow reached a terminal state; ``keys`` counts chunks released or received."""

    escrow_id: str
    outcome: str  # "released" | "cancelled"
    keys: int


ExchangeEffect = ReleaseChunkKey | Sweep | SwapFinished | EscrowFinished


# --- key check -------------------------------------------------------------------------------


def _parse_eip55(address: str) -> str:
    """``address`` itself if it is a well-formed EIP-55 address; InvalidRequest otherwise."""
    body = address[2:] if isinstance(address, str) and address.startswith("0x") else ""
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = b""
    if len(body) != 2 * ADDRESS_SIZE or len(raw) != ADDRESS_SIZE:
        raise InvalidRequest(f"not an Ethereum address: {address!r}")
    if to_checksum_address(raw) != address:
        raise InvalidRequest(f"address is not in EIP-55 checksum form: {address!r}")
    return address


def _parse_p2wpkh(address: str) -> str:
    """The network of a canonical P2WPKH address; InvalidRequest otherwise."""
    try:
        return get_p2wpkh_network(address)
    except BitcoinError as exc:
        raise InvalidRequest(f"not a P2WPKH address: {address!r}") from exc


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise InvalidRequest(f"unknown asset kind {kind!r}")


def _check_address(chunk: Chunk, kind: str) -> None:
    if kind == AssetKind.BTC.value:
        _parse_p2wpkh(chunk.address)
    else:
        _parse_eip55(chunk.address)


def verify_chunk_key(chunk: Chunk, secret: bytes, kind: str) -> None:
    """Check that ``secret`` is the private key of ``chunk``.

    The secret must be a valid 32-byte secp256k1 scalar. For EVM kinds ("native",
    "erc20") its Ethereum address, in EIP-55 form, must be ``chunk.address``; for "btc"
    its P2WPKH address (compressed key) on the network ``chunk.address`` names must be
    ``chunk.address``. Raises :class:`ExchangeViolation` when the secret does not open
    the chunk, and :class:`InvalidRequest` when the chunk or kind themselves are unusable.
    """
    _check_kind(kind)
    is_btc = kind == AssetKind.BTC.value
    expected = _parse_p2wpkh(chunk.address) if is_btc else _parse_eip55(chunk.address)
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECP256K1_PRIVATE_KEY_SIZE:
        raise ExchangeViolation(
            f"key for chunk {chunk.chunk_id} must be {SECP256K1_PRIVATE_KEY_SIZE} bytes"
        )
    if not 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER:
        raise ExchangeViolation(f"key for chunk {chunk.chunk_id} is not a secp256k1 key")
    if is_btc:
        derived = derive_p2wpkh(bytes(secret), expected).address
        if derived != chunk.address:
            raise ExchangeViolation(
                f"key for chunk {chunk.chunk_id} opens {derived}, not the chunk's {chunk.address}"
            )
        return
    public = secp256k1_public(bytes(secret), compressed=False)
    derived = to_checksum_address(eth_address(public))
    if derived != expected:
        raise ExchangeViolation(
            f"key for chunk {chunk.chunk_id} opens {derived}, not the chunk's {expected}"
        )


# --- shared validation -----------------------------------------------------------------------


def _check_time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string")
    return value


def _check_chunks(chunks: Iterable[Chunk], kinds: Mapping[str, str]) -> None:
    """Every chunk is well-formed, uniquely named, of an exchangeable kind."""
    seen: set[str] = set()
    for chunk in chunks:
        if not isinstance(chunk, Chunk):
            raise InvalidRequest(f"expected a Chunk, got {type(chunk).__name__}")
        if chunk.chunk_id in seen:
            raise InvalidRequest(f"chunk {chunk.chunk_id} appears twice")
        seen.add(chunk.chunk_id)
        if type(chunk.usd_e8) is not int or chunk.usd_e8 <= 0:
            raise InvalidRequest(f"chunk {chunk.chunk_id} has a non-positive usd_e8")
        kind = kinds.get(chunk.asset)
        if kind is None:
            raise InvalidRequest(f"no kind given for asset {chunk.asset!r}")
        _check_kind(kind)
        _check_address(chunk, kind)


# --- tit-for-tat swap ------------------------------------------------------------------------


class SwapStatus(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    ABORTED = "aborted"


class SwapState(Message, frozen=True):
    """A sealable snapshot of one side of a :class:`TitForTatSwap`."""

    swap_id: str
    role: str
    mine: list[Chunk]
    theirs: list[Chunk]
    kinds: dict[str, str]
    deadline: float
    status: str
    given: int
    received: int
    reason: str = ""


def _prefix_sums(chunks: Sequence[Chunk]) -> list[int]:
    sums = [0]
    for chunk in chunks:
        sums.append(sums[-1] + chunk.usd_e8)
    return sums


class TitForTatSwap:
    """One party's side of a tit-for-tat key swap (see the module docstring)."""

    def __init__(
        self,
        swap_id: str,
        role: SwapRole,
        mine: Sequence[Chunk],
        theirs: Sequence[Chunk],
        kinds: Mapping[str, str],
        deadline: float,
    ) -> None:
        self._swap_id = _check_id("swap_id", swap_id)
        if role not in ("A", "B"):
            raise InvalidRequest(f"role must be 'A' or 'B', got {role!r}")
        self._role: SwapRole = role
        self._mine = list(mine)
        self._theirs = list(theirs)
        self._kinds = {str(asset): str(kind) for asset, kind in dict(kinds).items()}
        self._deadline = _check_time("deadline", deadline)
        k = len(self._mine)
        if k < 1 or len(self._theirs) != k:
            raise InvalidRequest(
                f"both sides must give the same number k >= 1 of chunks, "
                f"got {k} and {len(self._theirs)}"
            )
        _check_chunks(self._mine + self._theirs, self._kinds)
        self._mine_sums = _prefix_sums(self._mine)
        self._theirs_sums = _prefix_sums(self._theirs)
        if self._mine_sums[-1] != self._theirs_sums[-1]:
            raise InvalidRequest(
                f"unequal values: {self._mine_sums[-1]} usd_e8 against {self._theirs_sums[-1]}"
            )
        self._bound = max(chunk.usd_e8 for chunk in self._mine)
        worst = max(self._mine_sums[self._allowance(i)] - self._theirs_sums[i] for i in range(k))
        if worst > self._bound:
            raise InvalidRequest(
                f"chunk sizes would expose {worst} usd_e8, more than one chunk ({self._bound})"
            )
        self._index = {chunk.chunk_id: i for i, chunk in enumerate(self._theirs)}
        self._status = SwapStatus.WAITING
        self._given = 0
        self._received = 0
        self._reason = ""

    # -- reads ----------------------------------------------------------------------------

    @property
    def swap_id(self) -> str:
        return self._swap_id

    @property
    def role(self) -> SwapRole:
        return self._role

    @property
    def k(self) -> int:
        return len(self._mine)

    @property
    def given(self) -> int:
        """How many of my chunks I have released."""
        return self._given

    @property
    def received(self) -> int:
        """How many of the counterparty's chunks I have received (valid keys)."""
        return self._received

    @property
    def exposure_usd_e8(self) -> int:
        """Value given minus value received; at most one chunk for an honest party."""
        return self._mine_sums[self._given] - self._theirs_sums[self._received]

    @property
    def exposure_bound_usd_e8(self) -> int:
        """One chunk's worth: the largest of my chunks."""
        return self._bound

    def status(self) -> SwapStatus:
        return self._status

    def get_expected_chunk(self) -> Chunk | None:
        """The counterparty chunk whose key comes next, or None when all are in."""
        if self._received >= self.k:
            return None
        return self._theirs[self._received]

    # -- events ---------------------------------------------------------------------------

    def start(self, now: float) -> list[ExchangeEffect]:
        """Begin the exchange: A releases ``a_1``, B waits for it."""
        now = _check_time("now", now)
        if self._status is not SwapStatus.WAITING:
            raise InvalidRequest(f"swap {self._swap_id} already started ({self._status})")
        self._status = SwapStatus.ACTIVE
        return self._advance(now)

    def on_key(self, chunk_id: str, secret: bytes, now: float) -> list[ExchangeEffect]:
        """A key from the counterparty; it must be the next expected chunk's."""
        now = _check_time("now", now)
        if self._status is SwapStatus.WAITING:
            raise InvalidRequest(f"swap {self._swap_id} has not started")
        if self._status is not SwapStatus.ACTIVE:
            raise ExchangeViolation(
                f"swap {self._swap_id} is {self._status}: key for {chunk_id!r} refused"
            )
        index = self._index.get(chunk_id)
        if index is None:
            raise ExchangeViolation(f"chunk {chunk_id!r} is not part of swap {self._swap_id}")
        if index < self._received:
            raise ExchangeViolation(f"key for chunk {chunk_id} was already received")
        if index > self._received:
            raise ExchangeViolation(
                f"chunk {chunk_id} is out of order: expected "
                f"{self._theirs[self._received].chunk_id} (#{self._received + 1}), got #{index + 1}"
            )
        chunk = self._theirs[index]
        verify_chunk_key(chunk, secret, self._kinds[chunk.asset])
        self._received += 1
        effects: list[ExchangeEffect] = [Sweep(swap_id=self._swap_id, chunk_id=chunk_id)]
        effects.extend(self._advance(now))
        return effects

    def on_tick(self, now: float) -> list[ExchangeEffect]:
        """The clock: past the deadline an unfinished swap aborts."""
        now = _check_time("now", now)
        if self._status in (SwapStatus.WAITING, SwapStatus.ACTIVE) and now >= self._deadline:
            return self._finish(SwapStatus.ABORTED, "deadline passed")
        return []

    def abort(self, reason: str) -> list[ExchangeEffect]:
        """Stop releasing for good; nothing if the swap is already over."""
        if self._status in (SwapStatus.COMPLETED, SwapStatus.ABORTED):
            return []
        return self._finish(SwapStatus.ABORTED, str(reason))

    # -- snapshots ------------------------------------------------------------------------

    def to_state(self) -> SwapState:
        return SwapState(
            swap_id=self._swap_id,
            role=self._role,
            mine=list(self._mine),
            theirs=list(self._theirs),
            kinds=dict(self._kinds),
            deadline=self._deadline,
            status=self._status.value,
            given=self._given,
            received=self._received,
            reason=self._reason,
        )

    @classmethod
    def from_state(cls, state: SwapState) -> TitForTatSwap:
        """Rebuild a machine from a sealed snapshot, re-checking its invariants."""
        if state.role not in ("A", "B"):
            raise InvalidRequest(f"role must be 'A' or 'B', got {state.role!r}")
        role: SwapRole = "A" if state.role == "A" else "B"
        swap = cls(state.swap_id, role, state.mine, state.theirs, state.kinds, state.deadline)
        try:
            status = SwapStatus(state.status)
        except ValueError as exc:
            raise InvalidRequest(f"unknown swap status {state.status!r}") from exc
        k, given, received = swap.k, state.given, state.received
        if not (0 <= given <= k and 0 <= received <= k):
            raise InvalidRequest(f"counts out of range: given {given}, received {received}")
        if given > swap._allowance(received):
            raise InvalidRequest(f"given {given} exceeds what {received} received allows")
        complete = given == k and received == k
        consistent = {
            SwapStatus.WAITING: given == 0 and received == 0,
            SwapStatus.ACTIVE: not complete and given == swap._allowance(received),
            SwapStatus.COMPLETED: complete,
            SwapStatus.ABORTED: True,
        }[status]
        if not consistent:
            raise InvalidRequest(f"status {status} with given {given}, received {received}")
        swap._status, swap._given, swap._received = status, given, received
        swap._reason = state.reason
        return swap

    # -- internals ------------------------------------------------------------------------

    def _allowance(self, received: int) -> int:
        """How many of my chunks I may have given after receiving ``received``."""
        return min(self.k, received + (1 if self._role == "A" else 0))

    def _advance(self, now: float) -> list[ExchangeEffect]:
        if self._given == self.k and self._received == self.k:
            return self._finish(SwapStatus.COMPLETED, "")
        if now >= self._deadline:
            return self._finish(SwapStatus.ABORTED, "deadline passed")
        effects: list[ExchangeEffect] = []
        other = "B" if self._role == "A" else "A"
        while self._given < self._allowance(self._received):
            chunk = self._mine[self._given]
            self._given += 1
            effects.append(
                ReleaseChunkKey(swap_id=self._swap_id, chunk_id=chunk.chunk_id, to_role=other)
            )
        if self._given == self.k and self._received == self.k:
            effects.extend(self._finish(SwapStatus.COMPLETED, ""))
        return effects

    def _finish(self, status: SwapStatus, reason: str) -> list[ExchangeEffect]:
        self._status = status
        self._reason = reason
        return [
            SwapFinished(
                swap_id=self._swap_id,
                outcome=status.value,
                given=self._given,
                received=self._received,
                reason=reason,
            )
        ]


# --- time-locked escrow ----------------------------------------------------------------------


class EscrowStatus(StrEnum):
    LOCKED = "locked"
    RELEASED = "released"
    CANCELLED = "cancelled"


class EscrowState(Message, frozen=True):
    """A sealable snapshot of one side of a :class:`TimeLockedEscrow`."""

    escrow_id: str
    role: str
    chunks: list[Chunk]
    kinds: dict[str, str]
    unlock_at: float
    status: str
    received: list[str]  # chunk ids whose keys the beneficiary holds, in arrival order


class TimeLockedEscrow:
    """One side of a time-locked escrow of ``chunks`` (see the module docstring).

    The depositor's side releases every key once, on the first tick at or after
    ``unlock_at``, unless ``cancel`` came strictly earlier. The beneficiary's side takes
    keys (any order, each once) and asks for sweeps; it is RELEASED when it holds them all.
    Both sides refuse a cancel at or after ``unlock_at``.
    """

    def __init__(
        self,
        escrow_id: str,
        role: EscrowRole,
        chunks: Sequence[Chunk],
        kinds: Mapping[str, str],
        unlock_at: float,
    ) -> None:
        self._escrow_id = _check_id("escrow_id", escrow_id)
        if role not in ("depositor", "beneficiary"):
            raise InvalidRequest(f"role must be 'depositor' or 'beneficiary', got {role!r}")
        self._role: EscrowRole = role
        self._chunks = list(chunks)
        if not self._chunks:
            raise InvalidRequest("an escrow holds at least one chunk")
        self._kinds = {str(asset): str(kind) for asset, kind in dict(kinds).items()}
        _check_chunks(self._chunks, self._kinds)
        self._unlock_at = _check_time("unlock_at", unlock_at)
        self._by_id = {chunk.chunk_id: chunk for chunk in self._chunks}
        self._status = EscrowStatus.LOCKED
        self._received: list[str] = []

    @property
    def escrow_id(self) -> str:
        return self._escrow_id

    @property
    def role(self) -> EscrowRole:
        return self._role

    @property
    def unlock_at(self) -> float:
        return self._unlock_at

    @property
    def received(self) -> int:
        """Keys the beneficiary holds (always 0 on the depositor's side)."""
        return len(self._received)

    def status(self) -> EscrowStatus:
        return self._status

    # -- events ---------------------------------------------------------------------------

    def on_tick(self, now: float) -> list[ExchangeEffect]:
        """Depositor: at ``unlock_at`` release every key, once. Beneficiary: nothing."""
        now = _check_time("now", now)
        if self._role != "depositor" or self._status is not EscrowStatus.LOCKED:
            return []
        if now < self._unlock_at:
            return []
        self._status = EscrowStatus.RELEASED
        effects: list[ExchangeEffect] = [
            ReleaseChunkKey(swap_id=self._escrow_id, chunk_id=chunk.chunk_id, to_role="beneficiary")
            for chunk in self._chunks
        ]
        effects.append(
            EscrowFinished(escrow_id=self._escrow_id, outcome="released", keys=len(self._chunks))
        )
        return effects

    def cancel(self, now: float) -> list[ExchangeEffect]:
        """The depositor takes the deposit back; only strictly before ``unlock_at``."""
        now = _check_time("now", now)
        if self._status is EscrowStatus.RELEASED:
            raise AlreadyReleased(f"escrow {self._escrow_id} is released; cancel refused")
        if self._status is EscrowStatus.CANCELLED:
            raise InvalidRequest(f"escrow {self._escrow_id} is already cancelled")
        if now >= self._unlock_at:
            raise InvalidRequest(
                f"escrow {self._escrow_id} unlocked at {self._unlock_at}; cancel at {now} refused"
            )
        if self._received:
            raise InvalidRequest(
                f"escrow {self._escrow_id}: {len(self._received)} keys already received"
            )
        self._status = EscrowStatus.CANCELLED
        return [EscrowFinished(escrow_id=self._escrow_id, outcome="cancelled", keys=0)]

    def on_key(self, chunk_id: str, secret: bytes, now: float) -> list[ExchangeEffect]:
        """Beneficiary: a released key. It must open one of the escrow's chunks, once."""
        _check_time("now", now)
        if self._role != "beneficiary":
            raise InvalidRequest("the depositor's side receives no keys")
        if self._status is not EscrowStatus.LOCKED:
            raise ExchangeViolation(
                f"escrow {self._escrow_id} is {self._status}: key for {chunk_id!r} refused"
            )
        chunk = self._by_id.get(chunk_id)
        if chunk is None:
            raise ExchangeViolation(f"chunk {chunk_id!r} is not part of escrow {self._escrow_id}")
        if chunk_id in self._received:
            raise ExchangeViolation(f"key for chunk {chunk_id} was already received")
        verify_chunk_key(chunk, secret, self._kinds[chunk.asset])
        self._received.append(chunk_id)
        effects: list[ExchangeEffect] = [Sweep(swap_id=self._escrow_id, chunk_id=chunk_id)]
        if len(self._received) == len(self._chunks):
            self._status = EscrowStatus.RELEASED
            effects.append(
                EscrowFinished(
                    escrow_id=self._escrow_id, outcome="released", keys=len(self._received)
                )
            )
        return effects

    # -- snapshots ------------------------------------------------------------------------

    def to_state(self) -> EscrowState:
        return EscrowState(
            escrow_id=self._escrow_id,
            role=self._role,
            chunks=list(self._chunks),
            kinds=dict(self._kinds),
            unlock_at=self._unlock_at,
            status=self._status.value,
            received=list(self._received),
        )

    @classmethod
    def from_state(cls, state: EscrowState) -> TimeLockedEscrow:
        """Rebuild a machine from a sealed snapshot, re-checking its invariants."""
        if state.role not in ("depositor", "beneficiary"):
            raise InvalidRequest(f"unknown escrow role {state.role!r}")
        role: EscrowRole = "depositor" if state.role == "depositor" else "beneficiary"
        escrow = cls(state.escrow_id, role, state.chunks, state.kinds, state.unlock_at)
        try:
            status = EscrowStatus(state.status)
        except ValueError as exc:
            raise InvalidRequest(f"unknown escrow status {state.status!r}") from exc
        received = list(state.received)
        if len(set(received)) != len(received) or not set(received) <= set(escrow._by_id):
            raise InvalidRequest("received keys must be distinct chunks of this escrow")
        if role == "depositor" and received:
            raise InvalidRequest("the depositor's side receives no keys")
        if role == "beneficiary":
            complete = len(received) == len(escrow._chunks)
            consistent = {
                EscrowStatus.LOCKED: not complete,
                EscrowStatus.RELEASED: complete,
                EscrowStatus.CANCELLED: not received,
            }[status]
            if not consistent:
                raise InvalidRequest(f"status {status} with {len(received)} keys received")
        escrow._status, escrow._received = status, received
        return escrow
