"""Contract Z: tit-for-tat key swaps and time-locked escrows, driven directly.

Keys are real secp256k1 keys (coincurve, os.urandom) and chunk addresses are derived with
eth_utils, independently of the code under test; bitcoin P2WPKH addresses with
``derive_p2wpkh`` (checked against the BIP-173 vectors in test_keyrelease_bitcoin.py).
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import coincurve
import msgspec
import pytest
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.encoding import decode, encode
from sealbridge.crypto.signing import SECP256K1_ORDER
from sealbridge.keyrelease.bitcoin import derive_p2wpkh
from sealbridge.keyrelease.errors import AlreadyReleased, ExchangeViolation, InvalidRequest
from sealbridge.keyrelease.exchange import (
    EscrowFinished,
    EscrowState,
    EscrowStatus,
    ReleaseChunkKey,
    SwapFinished,
    SwapState,
    SwapStatus,
    Sweep,
    TimeLockedEscrow,
    TitForTatSwap,
    verify_chunk_key,
)
from sealbridge.keyrelease.types import Chunk

USD = 100_000_000  # 1 USD in usd_e8
SIZE = 500 * USD  # the standard chunk size used here
KINDS = {"ETH@31337": "native", "USDC@31338": "erc20"}
VAULT_A = os.urandom(32).hex()
VAULT_B = os.urandom(32).hex()
OWNER_A = to_checksum_address(os.urandom(20))
OWNER_B = to_checksum_address(os.urandom(20))


def new_key() -> tuple[bytes, str]:
    """A fresh private key and its EIP-55 address (derived with eth_utils)."""
    key = coincurve.PrivateKey(os.urandom(32))
    address = to_checksum_address(keccak(key.public_key.format(compressed=False)[1:])[-20:])
    return key.secret, address


POOL = [new_key() for _ in range(24)]  # reused by property tests (keys don't steer logic)


def make_chunk(
    vault: str, index: int, asset: str, usd_e8: int = SIZE, key: tuple[bytes, str] | None = None
) -> tuple[Chunk, bytes]:
    secret, address = key if key is not None else new_key()
    owner = OWNER_A if vault == VAULT_A else OWNER_B
    chunk = Chunk(
        chunk_id=f"{vault}:{index}",
        owner=owner,
        vault=vault,
        asset=asset,
        address=address,
        amount=10**18,
        usd_e8=usd_e8,
    )
    return chunk, secret


@dataclass
class Setup:
    a_chunks: list[Chunk]
    b_chunks: list[Chunk]
    secrets: dict[str, bytes]

    def machines(self, deadline: float = 100.0) -> tuple[TitForTatSwap, TitForTatSwap]:
        a = TitForTatSwap("swap-1", "A", self.a_chunks, self.b_chunks, KINDS, deadline)
        b = TitForTatSwap("swap-1", "B", self.b_chunks, self.a_chunks, KINDS, deadline)
        return a, b


def make_setup(k: int, *, pooled: bool = False, size: int = SIZE) -> Setup:
    secrets: dict[str, bytes] = {}
    a_chunks, b_chunks = [], []
    for i in range(k):
        ka = POOL[2 * i] if pooled else None
        kb = POOL[2 * i + 1] if pooled else None
        ca, sa = make_chunk(VAULT_A, i, "ETH@31337", size, ka)
        cb, sb = make_chunk(VAULT_B, i, "USDC@31338", size, kb)
        a_chunks.append(ca)
        b_chunks.append(cb)
        secrets[ca.chunk_id] = sa
        secrets[cb.chunk_id] = sb
    return Setup(a_chunks, b_chunks, secrets)


def snapshot(machine: TitForTatSwap | TimeLockedEscrow) -> bytes:
    return encode(machine.to_state())


def releases(effects: list[Any]) -> list[str]:
    return [e.chunk_id for e in effects if isinstance(e, ReleaseChunkKey)]


def sweeps(effects: list[Any]) -> list[str]:
    return [e.chunk_id for e in effects if isinstance(e, Sweep)]


def finished(effects: list[Any]) -> list[SwapFinished]:
    return [e for e in effects if isinstance(e, SwapFinished)]


def run_honest(
    a: TitForTatSwap, b: TitForTatSwap, secrets: dict[str, bytes]
) -> dict[str, list[Any]]:
    """Wire two machines together; deliver every released key in order."""
    log: dict[str, list[Any]] = {"A": [], "B": []}
    queue: deque[ReleaseChunkKey] = deque()
    machines = {"A": a, "B": b}
    for role in ("A", "B"):
        effects = machines[role].start(0.0)
        log[role].extend(effects)
        queue.extend(e for e in effects if isinstance(e, ReleaseChunkKey))
    now = 0.0
    while queue:
        release = queue.popleft()
        now += 1.0
        effects = machines[release.to_role].on_key(release.chunk_id, secrets[release.chunk_id], now)
        log[release.to_role].extend(effects)
        queue.extend(e for e in effects if isinstance(e, ReleaseChunkKey))
    return log


# --- verify_chunk_key ------------------------------------------------------------------------


def test_verify_chunk_key_accepts_the_right_key_for_evm_kinds() -> None:
    chunk, secret = make_chunk(VAULT_A, 0, "ETH@31337")
    verify_chunk_key(chunk, secret, "native")
    verify_chunk_key(chunk, secret, "erc20")


@pytest.mark.parametrize(
    "secret",
    [
        os.urandom(32),  # another valid key
        b"\x00" * 32,  # zero scalar
        SECP256K1_ORDER.to_bytes(32, "big"),  # out of range
        os.urandom(31),
        os.urandom(33),
    ],
    ids=["other-key", "zero", "order", "short", "long"],
)
def test_verify_chunk_key_rejects_wrong_keys(secret: bytes) -> None:
    chunk, _ = make_chunk(VAULT_A, 0, "ETH@31337")
    with pytest.raises(ExchangeViolation):
        verify_chunk_key(chunk, secret, "native")


def test_verify_chunk_key_refuses_unknown_kinds_and_addresses_of_another_kind() -> None:
    chunk, secret = make_chunk(VAULT_A, 0, "ETH@31337")
    with pytest.raises(InvalidRequest, match="P2WPKH"):  # a btc chunk at an EVM address
        verify_chunk_key(chunk, secret, "btc")
    btc = msgspec.structs.replace(chunk, address=derive_p2wpkh(secret).address)
    with pytest.raises(InvalidRequest, match="Ethereum"):  # an EVM chunk at a btc address
        verify_chunk_key(btc, secret, "native")
    with pytest.raises(InvalidRequest, match="kind"):
        verify_chunk_key(chunk, secret, "solana")
    lower = msgspec.structs.replace(chunk, address=chunk.address.lower())
    if lower.address != chunk.address:  # (an all-digit address has no checksum letters)
        with pytest.raises(InvalidRequest, match="EIP-55"):
            verify_chunk_key(lower, secret, "native")


def btc_chunk(vault: str, index: int, network: str = "regtest") -> tuple[Chunk, bytes]:
    """A chunk of P2WPKH outputs: its address is the key's bech32 address on ``network``."""
    secret = coincurve.PrivateKey(os.urandom(32)).secret
    chunk, _ = make_chunk(vault, index, f"BTC@{network}")
    return msgspec.structs.replace(chunk, address=derive_p2wpkh(secret, network).address), secret


def test_verify_chunk_key_opens_p2wpkh_chunks() -> None:
    """Issue 15, item 6: btc chunks are exchanged too (before: refused with "btc chunks
    are not exchanged here"). The key must open the chunk's P2WPKH address."""
    for network in ("regtest", "testnet", "mainnet"):
        chunk, secret = btc_chunk(VAULT_A, 0, network)
        verify_chunk_key(chunk, secret, "btc")
        with pytest.raises(ExchangeViolation, match="opens"):
            verify_chunk_key(chunk, btc_chunk(VAULT_A, 1, network)[1], "btc")
        for bad in (b"\x00" * 32, SECP256K1_ORDER.to_bytes(32, "big"), os.urandom(31)):
            with pytest.raises(ExchangeViolation):
                verify_chunk_key(chunk, bad, "btc")
    # the address names its network: the same key's regtest address is not its mainnet one
    chunk, secret = btc_chunk(VAULT_A, 0, "regtest")
    mainnet = msgspec.structs.replace(chunk, address=derive_p2wpkh(secret, "mainnet").address)
    verify_chunk_key(mainnet, secret, "btc")
    assert mainnet.address != chunk.address
    typo = chunk.address[:-1] + ("q" if chunk.address[-1] != "q" else "p")  # checksum breaks
    for address in (chunk.address.upper(), typo, "bcrt1q", ""):
        with pytest.raises(InvalidRequest, match="P2WPKH"):
            verify_chunk_key(msgspec.structs.replace(chunk, address=address), secret, "btc")


def test_an_escrow_and_a_swap_exchange_btc_chunks() -> None:
    kinds = {**KINDS, "BTC@regtest": "btc"}
    pairs = [btc_chunk(VAULT_A, i) for i in range(2)]
    chunks = [chunk for chunk, _ in pairs]
    dep = TimeLockedEscrow("e", "depositor", chunks, kinds, 10.0)
    ben = TimeLockedEscrow("e", "beneficiary", chunks, kinds, 10.0)
    effects = dep.on_tick(10.0)
    assert releases(effects) == [c.chunk_id for c in chunks]
    before = snapshot(ben)
    with pytest.raises(ExchangeViolation):  # chunk 0's key for chunk 1
        ben.on_key(chunks[1].chunk_id, pairs[0][1], 11.0)
    assert snapshot(ben) == before
    for chunk, secret in pairs:
        assert sweeps(ben.on_key(chunk.chunk_id, secret, 11.0)) == [chunk.chunk_id]
    assert ben.status() is EscrowStatus.RELEASED
    # BTC against ETH, tit for tat
    setup = make_setup(2)
    btc = [btc_chunk(VAULT_B, i) for i in range(2)]
    b_chunks = [chunk for chunk, _ in btc]
    secrets = {**setup.secrets, **{chunk.chunk_id: secret for chunk, secret in btc}}
    a = TitForTatSwap("swap-1", "A", setup.a_chunks, b_chunks, kinds, 100.0)
    b = TitForTatSwap("swap-1", "B", b_chunks, setup.a_chunks, kinds, 100.0)
    log = run_honest(a, b, secrets)
    assert a.status() is b.status() is SwapStatus.COMPLETED
    assert sweeps(log["A"]) == [c.chunk_id for c in b_chunks]


# --- honest swaps ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 10])
def test_honest_swap_completes_on_both_sides(k: int) -> None:
    setup = make_setup(k)
    a, b = setup.machines()
    log = run_honest(a, b, setup.secrets)
    a_ids = [c.chunk_id for c in setup.a_chunks]
    b_ids = [c.chunk_id for c in setup.b_chunks]
    assert a.status() is SwapStatus.COMPLETED and b.status() is SwapStatus.COMPLETED
    assert (a.given, a.received, b.given, b.received) == (k, k, k, k)
    assert a.exposure_usd_e8 == 0 and b.exposure_usd_e8 == 0
    assert releases(log["A"]) == a_ids and releases(log["B"]) == b_ids
    assert sweeps(log["A"]) == b_ids and sweeps(log["B"]) == a_ids
    assert all(e.to_role == "B" for e in log["A"] if isinstance(e, ReleaseChunkKey))
    assert all(e.to_role == "A" for e in log["B"] if isinstance(e, ReleaseChunkKey))
    for role in ("A", "B"):
        assert finished(log[role]) == [
            SwapFinished(swap_id="swap-1", outcome="completed", given=k, received=k)
        ]
        assert isinstance(log[role][-1], SwapFinished)
    # a finished swap takes no more ticks or aborts
    assert a.on_tick(1e9) == [] and a.abort("late") == []
    assert a.status() is SwapStatus.COMPLETED


def test_start_releases_first_chunk_only_for_a() -> None:
    setup = make_setup(2)
    a, b = setup.machines()
    assert a.status() is SwapStatus.WAITING
    assert a.start(0.0) == [
        ReleaseChunkKey(swap_id="swap-1", chunk_id=setup.a_chunks[0].chunk_id, to_role="B")
    ]
    assert b.start(0.0) == []
    assert a.status() is SwapStatus.ACTIVE and b.status() is SwapStatus.ACTIVE
    assert a.exposure_usd_e8 == SIZE == a.exposure_bound_usd_e8
    assert b.exposure_usd_e8 == 0
    with pytest.raises(InvalidRequest):
        a.start(1.0)


def test_key_before_start_is_refused() -> None:
    setup = make_setup(1)
    _, b = setup.machines()
    first = setup.a_chunks[0].chunk_id
    with pytest.raises(InvalidRequest):
        b.on_key(first, setup.secrets[first], 0.0)
    assert b.status() is SwapStatus.WAITING and b.received == 0


# --- bad inputs change nothing ---------------------------------------------------------------


def mid_swap(k: int = 3) -> tuple[Setup, TitForTatSwap, TitForTatSwap]:
    """A released a_1, B answered b_1, A released a_2: B now expects a_2."""
    setup = make_setup(k)
    a, b = setup.machines()
    a.start(0.0)
    b.start(0.0)
    a1, b1 = setup.a_chunks[0].chunk_id, setup.b_chunks[0].chunk_id
    assert releases(b.on_key(a1, setup.secrets[a1], 1.0)) == [b1]
    assert releases(a.on_key(b1, setup.secrets[b1], 2.0)) == [setup.a_chunks[1].chunk_id]
    return setup, a, b


BAD_INPUTS: dict[str, Callable[[Setup], tuple[str, bytes]]] = {
    "wrong-key": lambda s: (s.a_chunks[1].chunk_id, os.urandom(32)),
    "next-chunks-key": lambda s: (s.a_chunks[1].chunk_id, s.secrets[s.a_chunks[2].chunk_id]),
    "zero-key": lambda s: (s.a_chunks[1].chunk_id, b"\x00" * 32),
    "short-key": lambda s: (s.a_chunks[1].chunk_id, s.secrets[s.a_chunks[1].chunk_id][:31]),
    "out-of-order": lambda s: (s.a_chunks[2].chunk_id, s.secrets[s.a_chunks[2].chunk_id]),
    "repeat": lambda s: (s.a_chunks[0].chunk_id, s.secrets[s.a_chunks[0].chunk_id]),
    "unknown": lambda s: (f"{VAULT_A}:99", os.urandom(32)),
    "my-own-chunk": lambda s: (s.b_chunks[1].chunk_id, s.secrets[s.b_chunks[1].chunk_id]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_keys_raise_and_change_nothing(case: str) -> None:
    setup, _, b = mid_swap()
    chunk_id, secret = BAD_INPUTS[case](setup)
    before = snapshot(b)
    with pytest.raises(ExchangeViolation):
        b.on_key(chunk_id, secret, 3.0)
    assert snapshot(b) == before
    # the honest next key still works afterwards
    a2 = setup.a_chunks[1].chunk_id
    effects = b.on_key(a2, setup.secrets[a2], 4.0)
    assert sweeps(effects) == [a2] and releases(effects) == [setup.b_chunks[1].chunk_id]


def test_keys_after_abort_or_completion_raise_and_change_nothing() -> None:
    setup, _, b = mid_swap()
    assert finished(b.abort("operator")) == [
        SwapFinished(swap_id="swap-1", outcome="aborted", given=1, received=1, reason="operator")
    ]
    a2 = setup.a_chunks[1].chunk_id
    before = snapshot(b)
    with pytest.raises(ExchangeViolation):
        b.on_key(a2, setup.secrets[a2], 3.0)
    assert snapshot(b) == before and b.status() is SwapStatus.ABORTED
    assert b.abort("again") == [] and b.on_tick(1e9) == []

    setup = make_setup(2)
    a, b = setup.machines()
    run_honest(a, b, setup.secrets)
    last = setup.b_chunks[-1].chunk_id
    before = snapshot(a)
    with pytest.raises(ExchangeViolation):
        a.on_key(last, setup.secrets[last], 50.0)
    assert snapshot(a) == before


# --- deadlines -------------------------------------------------------------------------------


def test_deadline_aborts_and_never_releases_again() -> None:
    setup = make_setup(3)
    a, _ = setup.machines(deadline=10.0)
    assert len(releases(a.start(0.0))) == 1
    assert a.on_tick(9.99) == []
    assert a.on_tick(10.0) == [
        SwapFinished(
            swap_id="swap-1", outcome="aborted", given=1, received=0, reason="deadline passed"
        )
    ]
    assert a.status() is SwapStatus.ABORTED
    assert a.exposure_usd_e8 == SIZE  # exactly one chunk at risk, no more
    b1 = setup.b_chunks[0].chunk_id
    before = snapshot(a)
    with pytest.raises(ExchangeViolation):
        a.on_key(b1, setup.secrets[b1], 11.0)
    assert snapshot(a) == before
    assert a.on_tick(20.0) == []


def test_late_key_is_taken_but_answered_with_nothing() -> None:
    setup = make_setup(3)
    a, _ = setup.machines(deadline=10.0)
    a.start(0.0)
    b1 = setup.b_chunks[0].chunk_id
    effects = a.on_key(b1, setup.secrets[b1], 10.5)  # no tick came in between
    assert sweeps(effects) == [b1] and releases(effects) == []
    assert a.status() is SwapStatus.ABORTED and (a.given, a.received) == (1, 1)
    assert a.exposure_usd_e8 == 0


def test_last_key_after_deadline_still_completes_when_nothing_is_owed() -> None:
    setup = make_setup(1)
    a, b = setup.machines(deadline=10.0)
    a.start(0.0)
    b.start(0.0)
    a1, b1 = setup.a_chunks[0].chunk_id, setup.b_chunks[0].chunk_id
    b.on_key(a1, setup.secrets[a1], 5.0)
    effects = a.on_key(b1, setup.secrets[b1], 15.0)
    assert sweeps(effects) == [b1] and a.status() is SwapStatus.COMPLETED


def test_start_after_deadline_aborts_without_releasing() -> None:
    setup = make_setup(2)
    a, _ = setup.machines(deadline=10.0)
    effects = a.start(10.0)
    assert releases(effects) == [] and a.status() is SwapStatus.ABORTED and a.given == 0


# --- construction ----------------------------------------------------------------------------


def test_construction_refuses_bad_swaps() -> None:
    s3, s2 = make_setup(3), make_setup(2)
    cases: list[tuple[Any, ...]] = [
        ("A", s3.a_chunks, s2.b_chunks, KINDS, 10.0),  # unequal counts
        ("A", [], [], KINDS, 10.0),  # k = 0
        ("C", s3.a_chunks, s3.b_chunks, KINDS, 10.0),  # bad role
        ("A", s3.a_chunks, s3.b_chunks, {"ETH@31337": "native"}, 10.0),  # missing kind
        ("A", s3.a_chunks, s3.b_chunks, {**KINDS, "USDC@31338": "btc"}, 10.0),  # btc at 0x…
        ("A", s3.a_chunks, s3.b_chunks, KINDS, float("nan")),  # bad deadline
        ("A", s3.a_chunks, s3.a_chunks, KINDS, 10.0),  # duplicate chunk ids
    ]
    cheap = msgspec.structs.replace(s3.b_chunks[0], usd_e8=SIZE - 1)
    cases.append(("A", s3.a_chunks, [cheap, *s3.b_chunks[1:]], KINDS, 10.0))  # unequal value
    # equal totals, but A would have 2 chunks out against 1 tiny chunk in
    lop = [
        msgspec.structs.replace(s2.b_chunks[0], usd_e8=1),
        msgspec.structs.replace(s2.b_chunks[1], usd_e8=2 * SIZE - 1),
    ]
    cases.append(("A", s2.a_chunks, lop, KINDS, 10.0))
    bad_address = msgspec.structs.replace(s3.b_chunks[0], address="0x1234")
    cases.append(("A", s3.a_chunks, [bad_address, *s3.b_chunks[1:]], KINDS, 10.0))
    for role, mine, theirs, kinds, deadline in cases:
        with pytest.raises(InvalidRequest):
            TitForTatSwap("swap-1", role, mine, theirs, kinds, deadline)
    # the lopsided schedule is fine for B, who never has anything out
    TitForTatSwap("swap-1", "B", lop, s2.a_chunks, KINDS, 10.0)


# --- snapshots -------------------------------------------------------------------------------


def test_swap_snapshot_round_trips_and_resumes() -> None:
    setup, a, b = mid_swap(3)
    a2 = decode(encode(a.to_state()), SwapState)
    b2 = decode(encode(b.to_state()), SwapState)
    ra, rb = TitForTatSwap.from_state(a2), TitForTatSwap.from_state(b2)
    assert snapshot(ra) == snapshot(a) and snapshot(rb) == snapshot(b)
    # resume: A's a_2 is in flight towards B
    queue = deque([(setup.a_chunks[1].chunk_id, "B")])
    now = 10.0
    machines = {"A": ra, "B": rb}
    while queue:
        chunk_id, to = queue.popleft()
        now += 1
        for e in machines[to].on_key(chunk_id, setup.secrets[chunk_id], now):
            if isinstance(e, ReleaseChunkKey):
                queue.append((e.chunk_id, e.to_role))
    assert ra.status() is SwapStatus.COMPLETED and rb.status() is SwapStatus.COMPLETED


@pytest.mark.parametrize(
    "changes",
    [
        {"given": 3, "received": 1},  # more given than the rule allows
        {"status": "completed"},
        {"status": "waiting"},
        {"status": "exploded"},
        {"received": 7},
        {"role": "Z"},
    ],
)
def test_inconsistent_swap_snapshots_are_refused(changes: dict[str, Any]) -> None:
    _, a, _ = mid_swap(3)
    state = msgspec.structs.replace(a.to_state(), **changes)
    with pytest.raises(InvalidRequest):
        TitForTatSwap.from_state(state)


# --- the tit-for-tat bound -------------------------------------------------------------------


@dataclass
class InFlight:
    to: str
    chunk_id: str
    secret: bytes
    junk: bool  # built to be refused


@settings(max_examples=120, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=8),
    stopper=st.sampled_from(["A", "B"]),
    size=st.integers(min_value=1, max_value=10**12),
    data=st.data(),
)
def test_honest_exposure_never_exceeds_one_chunk(
    k: int, stopper: str, size: int, data: st.DataObject
) -> None:
    stop = data.draw(st.integers(min_value=0, max_value=k), label="stop after")
    honest_role = "B" if stopper == "A" else "A"
    setup = make_setup(k, pooled=True, size=size)
    deadline = 20.0
    a, b = setup.machines(deadline)
    machines = {"A": a, "B": b}
    honest = machines[honest_role]
    cheater_chunks = setup.a_chunks if stopper == "A" else setup.b_chunks
    value = {c.chunk_id: c.usd_e8 for c in setup.a_chunks + setup.b_chunks}
    bound = honest.exposure_bound_usd_e8
    assert bound == size

    in_flight: list[InFlight] = []
    delivered: set[str] = set()
    truth = {"given": 0, "received": 0}  # value, as the driver sees it
    cheater_released = 0

    def dispatch(role: str, effects: list[Any], now: float) -> None:
        nonlocal cheater_released
        for e in effects:
            if not isinstance(e, ReleaseChunkKey):
                continue
            if role == stopper:
                if cheater_released >= stop:
                    continue  # the cheater withholds from here on
                cheater_released += 1
            else:
                assert now < deadline  # an honest party never releases after the deadline
                truth["given"] += value[e.chunk_id]
            in_flight.append(InFlight(e.to_role, e.chunk_id, setup.secrets[e.chunk_id], False))

    def check() -> None:
        assert honest.exposure_usd_e8 <= bound
        assert truth["given"] - truth["received"] <= bound
        assert honest.exposure_usd_e8 == truth["given"] - truth["received"]

    def deliver(item: InFlight, now: float) -> None:
        machine = machines[item.to]
        before = snapshot(machine)
        was_active = machine.status() is SwapStatus.ACTIVE
        try:
            effects = machine.on_key(item.chunk_id, item.secret, now)
        except ExchangeViolation:
            assert snapshot(machine) == before
            # an honest party refuses only junk, duplicates, or anything once it is over
            if item.to == honest_role:
                assert item.junk or item.chunk_id in delivered or not was_active
            return
        assert not item.junk
        if item.to == honest_role:
            assert item.chunk_id not in delivered
            truth["received"] += value[item.chunk_id]
            assert sweeps(effects) == [item.chunk_id]
        delivered.add(item.chunk_id)
        dispatch(item.to, effects, now)

    now = 0.0
    for role in data.draw(st.permutations(["A", "B"]), label="start order"):
        dispatch(role, machines[role].start(now), now)
    check()
    for _ in range(6 * k + 6):
        action = data.draw(st.sampled_from(["deliver", "deliver", "tick", "junk", "dup"]))
        if action == "deliver" and in_flight:
            index = data.draw(st.integers(min_value=0, max_value=len(in_flight) - 1))
            deliver(in_flight.pop(index), now)
        elif action == "tick":  # time passes; a machine's timer may fire late or not at all
            now += data.draw(st.sampled_from([0.0, 0.5, 2.0, 5.0, 15.0]))
            for role in ("A", "B"):
                if data.draw(st.booleans()):
                    machines[role].on_tick(now)
        elif action == "dup" and in_flight:
            in_flight.append(in_flight[data.draw(st.integers(0, len(in_flight) - 1))])
        elif action == "junk":
            # the cheater's enclave sends, right now, something that must be refused
            expected = honest.get_expected_chunk()
            pick = data.draw(st.integers(min_value=0, max_value=k - 1))
            target = cheater_chunks[pick]
            if expected is not None and target.chunk_id == expected.chunk_id:
                junk = InFlight(honest_role, target.chunk_id, os.urandom(32), True)  # wrong key
            else:  # a repeat or a skip ahead, with the right key
                junk = InFlight(honest_role, target.chunk_id, setup.secrets[target.chunk_id], True)
            deliver(junk, now)
        check()

    # let the clock run out and everything in flight land
    now = deadline + 1.0
    while in_flight:
        deliver(in_flight.pop(0), now)
        check()
    for machine in machines.values():
        machine.on_tick(now)
    check()
    assert honest.status() in (SwapStatus.COMPLETED, SwapStatus.ABORTED)
    if honest.status() is SwapStatus.COMPLETED:
        assert honest.given == honest.received == k
    if stop < k:
        assert honest.status() is SwapStatus.ABORTED
        assert honest.received <= stop


@pytest.mark.parametrize("stopper", ["A", "B"])
@pytest.mark.parametrize("stop", [0, 1, 2, 3])
def test_stopping_counterparty_leaves_exact_counts(stopper: str, stop: int) -> None:
    """No clock trouble: the honest side ends with exactly the rule's counts."""
    k = 4
    setup = make_setup(k, pooled=True)
    a, b = setup.machines(deadline=50.0)
    machines = {"A": a, "B": b}
    honest_role = "B" if stopper == "A" else "A"
    queue: deque[ReleaseChunkKey] = deque()
    released = {"A": 0, "B": 0}

    def dispatch(role: str, effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, ReleaseChunkKey) and (role != stopper or released[role] < stop):
                released[role] += 1
                queue.append(e)

    for role in ("A", "B"):
        dispatch(role, machines[role].start(0.0))
    while queue:
        e = queue.popleft()
        dispatch(e.to_role, machines[e.to_role].on_key(e.chunk_id, setup.secrets[e.chunk_id], 1.0))
    honest = machines[honest_role]
    assert honest.received == stop
    assert honest.given == (stop + 1 if honest_role == "A" else stop)
    assert honest.exposure_usd_e8 == (SIZE if honest_role == "A" else 0)
    assert finished(honest.on_tick(50.0))[0].outcome == "aborted"


# --- time-locked escrow ----------------------------------------------------------------------


def make_escrow(n: int = 3, unlock_at: float = 100.0) -> tuple[Any, ...]:
    pairs = [make_chunk(VAULT_A, i, "ETH@31337") for i in range(n)]
    chunks = [c for c, _ in pairs]
    secrets = {c.chunk_id: s for c, s in pairs}
    dep = TimeLockedEscrow("escrow-1", "depositor", chunks, KINDS, unlock_at)
    ben = TimeLockedEscrow("escrow-1", "beneficiary", chunks, KINDS, unlock_at)
    return chunks, secrets, dep, ben


def test_escrow_releases_once_at_unlock_and_beneficiary_sweeps() -> None:
    chunks, secrets, dep, ben = make_escrow(3)
    assert dep.on_tick(99.9) == [] and dep.status() is EscrowStatus.LOCKED
    effects = dep.on_tick(100.0)
    ids = [c.chunk_id for c in chunks]
    assert releases(effects) == ids
    assert all(isinstance(e, ReleaseChunkKey) and e.to_role == "beneficiary" for e in effects[:-1])
    assert effects[-1] == EscrowFinished(escrow_id="escrow-1", outcome="released", keys=3)
    assert dep.status() is EscrowStatus.RELEASED
    assert dep.on_tick(101.0) == []  # once
    with pytest.raises(AlreadyReleased):
        dep.cancel(101.0)

    order = list(ids)
    random.Random(7).shuffle(order)
    got: list[Any] = []
    for chunk_id in order:
        assert ben.status() is EscrowStatus.LOCKED
        got.extend(ben.on_key(chunk_id, secrets[chunk_id], 100.5))
    assert sweeps(got) == order
    assert got[-1] == EscrowFinished(escrow_id="escrow-1", outcome="released", keys=3)
    assert ben.status() is EscrowStatus.RELEASED and ben.received == 3


def test_escrow_cancel_before_unlock_stops_release() -> None:
    chunks, secrets, dep, ben = make_escrow(2)
    assert dep.cancel(50.0) == [EscrowFinished(escrow_id="escrow-1", outcome="cancelled", keys=0)]
    assert dep.status() is EscrowStatus.CANCELLED
    assert dep.on_tick(100.0) == [] and dep.on_tick(1e6) == []
    with pytest.raises(InvalidRequest):
        dep.cancel(60.0)
    ben.cancel(50.0)
    first = chunks[0].chunk_id
    before = snapshot(ben)
    with pytest.raises(ExchangeViolation):
        ben.on_key(first, secrets[first], 100.0)
    assert snapshot(ben) == before


def test_escrow_late_cancel_is_refused_and_changes_nothing() -> None:
    chunks, _, dep, ben = make_escrow(2)
    for machine in (dep, ben):
        before = snapshot(machine)
        with pytest.raises(InvalidRequest):
            machine.cancel(100.0)  # at unlock_at, even before any tick
        assert snapshot(machine) == before
    assert releases(dep.on_tick(100.0)) == [c.chunk_id for c in chunks]


def test_escrow_beneficiary_bad_keys_change_nothing() -> None:
    chunks, secrets, dep, ben = make_escrow(2)
    c0, c1 = chunks[0].chunk_id, chunks[1].chunk_id
    ben.on_key(c0, secrets[c0], 100.0)
    for chunk_id, secret in [
        (c1, os.urandom(32)),
        (c1, secrets[c0]),
        (c0, secrets[c0]),  # repeat
        (f"{VAULT_A}:77", os.urandom(32)),
    ]:
        before = snapshot(ben)
        with pytest.raises(ExchangeViolation):
            ben.on_key(chunk_id, secret, 100.0)
        assert snapshot(ben) == before
    with pytest.raises(InvalidRequest):  # keys arrived: no cancel any more
        ben.cancel(10.0)
    with pytest.raises(InvalidRequest):
        dep.on_key(c0, secrets[c0], 100.0)
    ben.on_key(c1, secrets[c1], 100.0)
    with pytest.raises(ExchangeViolation):
        ben.on_key(c1, secrets[c1], 100.0)


def test_escrow_snapshot_round_trips() -> None:
    chunks, secrets, dep, ben = make_escrow(3)
    c0 = chunks[0].chunk_id
    ben.on_key(c0, secrets[c0], 1.0)
    for machine in (dep, ben):
        state = decode(encode(machine.to_state()), EscrowState)
        restored = TimeLockedEscrow.from_state(state)
        assert snapshot(restored) == snapshot(machine)
    restored_ben = TimeLockedEscrow.from_state(ben.to_state())
    before = snapshot(restored_ben)
    with pytest.raises(ExchangeViolation):
        restored_ben.on_key(c0, secrets[c0], 2.0)  # it remembers c0
    assert snapshot(restored_ben) == before
    bad = msgspec.structs.replace(ben.to_state(), status="released")
    with pytest.raises(InvalidRequest):
        TimeLockedEscrow.from_state(bad)
    bad = msgspec.structs.replace(dep.to_state(), received=[c0])
    with pytest.raises(InvalidRequest):
        TimeLockedEscrow.from_state(bad)


def test_escrow_refuses_btc_at_an_ethereum_address_and_empty() -> None:
    chunk, _ = make_chunk(VAULT_A, 0, "BTC@regtest")
    with pytest.raises(InvalidRequest, match="P2WPKH"):
        TimeLockedEscrow("e", "depositor", [chunk], {"BTC@regtest": "btc"}, 1.0)
    with pytest.raises(InvalidRequest):
        TimeLockedEscrow("e", "depositor", [], KINDS, 1.0)
