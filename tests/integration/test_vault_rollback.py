"""A vault never acts twice on one state, whatever its host does with the sealed blobs
(issue 15, item 5): a property test over random schedules of changes, crashes, restores
from older blobs, twin processes, and anchors relayed late or never.

The model
---------
One vault identity on a real anvil chain with the StateAnchor contract. Each example
draws a schedule; the host (this test, playing a hostile one) keeps every sealed blob
the vault ever gave it and, step by step:

* asks a running copy for a *change* (a sweep signature of one of its own chunks, a
  stand-in for any release: the vault treats every change alike), then relays its anchor
  and proves it, or leaves it pending;
* relays a pending change's anchor later;
* *crashes* a copy and restores a new process from any kept blob (the newest or an
  older one);
* starts a *twin* from any kept blob next to the running copies.

Invariants: an output leaves the enclave only for an anchored ``(version, hash)``, and
never two different outputs for one version (a restored copy may hand out the output
of the anchored change again: the same change, which the host may have lost in a
crash), so one key is never released, swept or claimed twice, whichever copy asked;
no chunk's sweep leaves under two versions; a restore from a blob older than the chain's anchor is
refused; the chain's version only grows by one per output released.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbridge.chain.errors import TransactionReverted
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import SealbridgeError
from sealbridge.devnet.keyrelease import _Vault
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.state_anchor import StateAnchor, deploy_state_anchor
from sealbridge.keyrelease.freshness import AnchorBinding, AnchorRequest, Guarded
from sealbridge.keyrelease.types import compute_chunk_id
from sealbridge.keyrelease.vault import (
    VAULT_BIND_OWNER,
    VAULT_CARD,
    VAULT_CONFIGURE,
    VAULT_CREATE_KEYS,
    VAULT_PROGRAM,
    CreateKeys,
    OwnerRef,
    SealedState,
    SignedSweep,
    SweepRequest,
    VaultConfig,
)
from sealbridge.keyservice.chainfacts import HeaderTip
from sealbridge.tee.ecall import NOTHING
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend

COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    print(
        f"\nvault rollback: {COUNTS['examples']} schedules, {COUNTS['changes']} changes "
        f"released, {COUNTS['reemitted']} re-emitted after a crash, "
        f"{COUNTS['left_pending']} left pending, {COUNTS['crashes']} crashes, "
        f"{COUNTS['older_refused']} restores from older blobs refused, {COUNTS['twins']} "
        f"twins, {COUNTS['twin_refused']} twin changes refused, {COUNTS['violations']} "
        "violations"
    )


@dataclass
class World:
    adapter: ChainAdapter
    anchor: StateAnchor
    platform: Path
    config: VaultConfig
    backend: InProcessBackend
    tmp: Path
    serial: int = 0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("vault-rollback")
    node = AnvilNode(chain_id=31337).start()
    try:
        adapter = node.adapter()
        anchor = StateAnchor(adapter, deploy_state_anchor(adapter, adapter.get_dev_key(0)))
        platform = tmp / "platform.key"
        policy = devnet_policy(
            create_sim_platform(platform), [compute_sim_measurement(VAULT_PROGRAM)]
        )
        yield World(adapter, anchor, platform, VaultConfig(policy=policy), InProcessBackend(), tmp)
    finally:
        node.stop()


@dataclass
class Copy:
    host: _Vault
    pending: AnchorRequest | None = None
    dead: bool = False  # refused as stale: the host gave up on it


@dataclass
class Run:
    world: World
    name: str
    blobs: list[bytes] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    # version -> (state hash, chunk) of the output that left for it
    released: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    chunks: list[str] = field(default_factory=list)
    base: int = 0  # the version after set-up (owner binding, key creation)
    swept: set[str] = field(default_factory=set)  # chunks whose sweep left the enclave

    def launch(self) -> _Vault:
        w = self.world
        handle = w.backend.launch(
            VAULT_PROGRAM,
            platform_key_file=w.platform,
            sealed_identity_file=w.tmp / f"{self.name}.identity",
        )
        return _Vault(handle, w.tmp / f"{self.name}.sealed", w.anchor, w.adapter.get_dev_key(1))

    def keep(self, copy: Copy) -> None:
        self.blobs.append(copy.host.state_file.read_bytes())

    def signer(self) -> str:
        return "0x" + self.copies[0].host.get_signer().hex()

    def record(self, pending: AnchorRequest, output: bytes) -> None:
        """An output left the enclave: it must be for the chain's anchor, once."""
        version, state_hash = self.world.anchor.get_anchor(self.signer())
        signed = decode(output, SignedSweep)
        assert (version, state_hash) == (pending.version, pending.state_hash)
        if version in self.released:
            # a restored copy hands out the output of the anchored change again (the host
            # lost it in a crash): the very same change, never another one
            assert self.released[version] == (state_hash, signed.chunk_id), version
            COUNTS["reemitted"] += 1
            return
        assert signed.chunk_id not in self.swept, f"chunk {signed.chunk_id} swept twice"
        self.swept.add(signed.chunk_id)
        self.released[version] = (state_hash, signed.chunk_id)
        COUNTS["changes"] += 1


def sweep(chunk_id: str) -> bytes:
    return encode(
        SweepRequest(
            chunk_id=chunk_id,
            chain_id=31337,
            kind="native",
            nonce=0,
            balance=10**16,
            max_fee_per_gas=10**9,
            max_priority_fee_per_gas=10**9,
        )
    )


def start(run: Run) -> None:
    w = run.world
    host = run.launch()
    block = w.adapter.get_block("latest")
    host.header_tip = block.number
    binding = AnchorBinding(
        chain_id=w.adapter.chain_id,
        contract=w.anchor.address,
        start=HeaderTip(number=block.number, block_hash=block.hash),
    )
    host.call(VAULT_CONFIGURE, VaultConfig(policy=w.config.policy, anchor=binding))
    host.call(VAULT_BIND_OWNER, OwnerRef(account=ChainAdapter.address_of(w.adapter.get_dev_key(2))))
    host.call(VAULT_CREATE_KEYS, CreateKeys(count=4))
    card = host.call(VAULT_CARD, NOTHING)
    run.chunks = [compute_chunk_id(card.identity_hex, i) for i in range(4)]
    run.base = host.get_anchor_status().version
    run.copies.append(Copy(host))
    run.keep(run.copies[0])


def live(run: Run) -> list[Copy]:
    return [c for c in run.copies if not c.dead]


def step_change(run: Run, which: int, chunk: int, relay: bool) -> None:
    copies = live(run)
    if not copies:
        return
    copy = copies[which % len(copies)]
    try:
        answer = copy.host.handle.ecall("sign_sweep", sweep(run.chunks[chunk % 4]))
    except SealbridgeError as exc:
        # a copy waiting for its anchor takes no other change; a stale one takes none;
        # a chunk is swept once
        refusals = ("waits for its anchor", "not the newest", "swept already")
        assert any(r in exc.message for r in refusals), exc.message
        copy.dead = "not the newest" in exc.message
        return
    anchor = decode(answer, Guarded).anchor
    assert anchor is not None  # a sweep signature is always anchored
    copy.pending = anchor
    copy.host.persist()
    run.keep(copy)
    if relay:
        step_relay(run, copy)
    else:
        COUNTS["left_pending"] += 1


def step_relay(run: Run, copy: Copy) -> None:
    pending = copy.pending
    if pending is None or copy.dead:
        return
    try:
        run.world.anchor.advance(
            pending.version, pending.state_hash, pending.signature, copy.host.sender_key
        )
    except TransactionReverted:
        pass  # another copy took this version: the proof below says so
    try:
        output = copy.host.handle.ecall("take_output", encode(copy.host.get_anchor_proof()))
    except SealbridgeError as exc:
        assert "first" in exc.message or "not mined" in exc.message, exc.message
        if "first" in exc.message:
            COUNTS["twin_refused"] += 1
            copy.dead = True
        return
    copy.pending = None
    copy.host.persist()
    run.keep(copy)
    run.record(pending, output)


def step_restore(run: Run, blob_index: int, twin: bool) -> None:
    blob = run.blobs[blob_index % len(run.blobs)]
    if not twin:
        for copy in live(run):
            copy.host.handle.close()
            copy.dead = True
        COUNTS["crashes"] += 1
    else:
        COUNTS["twins"] += 1
    host = run.launch()
    copy = Copy(host)
    run.copies.append(copy)
    anchored, _ = run.world.anchor.get_anchor(run.signer())
    try:
        host.handle.ecall("restore", encode_sealed(blob))
        host.header_tip = host.get_anchor_status().tip
        host.handle.ecall("check_restored", encode(host.get_anchor_proof()))
    except SealbridgeError as exc:
        copy.dead = True
        assert "older" in exc.message or "another" in exc.message, exc.message
        COUNTS["older_refused"] += 1
        return
    # a restore is accepted only for the chain's newest state (or one change ahead of it)
    assert host.get_anchor_status().version in (anchored, anchored + 1)
    try:
        copy.pending = decode(host.handle.ecall("pending_anchor", b""), AnchorRequest)
    except SealbridgeError:
        copy.pending = None


def encode_sealed(blob: bytes) -> bytes:
    return encode(SealedState(blob=blob))


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("change"), st.integers(0, 3), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("relay"), st.integers(0, 3)),
        st.tuples(st.just("restore"), st.integers(0, 30), st.booleans()),
    ),
    min_size=3,
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_a_vault_never_acts_twice_on_one_state(world: World, steps: list[tuple[Any, ...]]) -> None:
    world.serial += 1
    run = Run(world, f"v{world.serial}")
    start(run)
    COUNTS["examples"] += 1
    try:
        for kind, *args in steps:
            if kind == "change":
                step_change(run, args[0], args[1], bool(args[2]))
            elif kind == "relay":
                copies = live(run)
                if copies:
                    step_relay(run, copies[args[0] % len(copies)])
            else:
                step_restore(run, args[0], bool(args[1]))
        version, _ = world.anchor.get_anchor(run.signer())
        # every anchored version after the three set-up changes released exactly one output
        # or is the one change a copy still holds
        outputs = set(run.released)
        pending = {c.pending.version for c in live(run) if c.pending is not None}
        after_setup = set(range(run.base + 1, version + 1))
        assert outputs <= after_setup
        assert after_setup - outputs <= pending
    except AssertionError:
        COUNTS["violations"] += 1
        raise
    finally:
        for copy in run.copies:
            copy.host.handle.close()
