"""Attacks on the simulator's chain model (sim/chain_model.py) and the storage devnet
(sim/devnet.py): floods, transactions and reads from unknown senders, reads of other
kinds, wrong roles, forged chain answers from a peer, and reordered answers.

In-process and deterministic (no processes). Tests whose docstring starts with
"Fixed --" demonstrated a weakness (they failed on the code as first written; each
one's fix is in the same change); the others are regression tests of what holds."""

from __future__ import annotations

from typing import Any

from sealbridge.chain.registration import (
    Heartbeat,
    Register,
    RegistrationPhase,
    RegistryQuery,
    RegistryView,
    Renew,
)
from sealbridge.core.effects import (
    ChainRead,
    Effect,
    ReadChain,
    Send,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.sim.chain_model import ChainModel
from sealbridge.sim.devnet import CHAIN, SimDevnet, SimDevnetSpec
from sealbridge.sim.engine import EXTERNAL
from sealbridge.storage.host import StoreBlob

A, B = b"\x0a" * 32, b"\x0b" * 32
ROLE = 3


def outcomes(effects: list[Effect]) -> dict[tuple[int, str], TxOutcome]:
    found = {}
    for effect in effects:
        if isinstance(effect, Send) and isinstance(effect.message, TxOutcome):
            (to,) = effect.to
            found[(to, effect.message.tag)] = effect.message
    return found


def model() -> ChainModel:
    chain = ChainModel(0, {1: A, 2: B}, block_time=1.0, era_length=8, grace=10)
    chain.on_start(0.0)
    return chain


# -- the chain model, driven by hand --------------------------------------------------------


def test_a_flood_from_one_node_does_not_crowd_out_another() -> None:
    """Regression: 20,000 transactions from node 1 in one block; node 2's registration is
    mined in the same block, and the flood registers node 1 once."""
    chain = model()
    for i in range(20_000):
        chain.on_message(1, SubmitTx(f"f{i}", Register(role=ROLE, expiry=100 + i)), 0.5)
    chain.on_message(2, SubmitTx("mine", Register(role=ROLE, expiry=100)), 0.6)
    effects = chain.on_timer("block", 1.0)
    result = outcomes(effects)
    assert result[(2, "mine")].status == "mined"
    assert result[(1, "f0")].status == "mined"
    assert sum(o.status == "mined" for (to, _), o in result.items() if to == 1) == 1
    assert chain.registry[A].expiry == 100
    assert chain.pending == []


def test_a_tx_from_a_node_without_identity_reverts() -> None:
    chain = model()
    chain.on_message(9, SubmitTx("x", Register(role=ROLE, expiry=100)), 0.5)
    assert outcomes(chain.on_timer("block", 1.0))[(9, "x")].reason == "unknown sender"
    assert chain.registry == {}


def test_heartbeats_count_once_per_slot_and_only_in_their_slot() -> None:
    chain = model()
    chain.on_message(1, SubmitTx("r", Register(role=ROLE, expiry=100)), 0.5)
    chain.on_timer("block", 1.0)  # block 1
    slot = (chain.params.get_era(2), chain.params.get_slot(2))
    for tag in ("h1", "h2"):
        chain.on_message(1, SubmitTx(tag, Heartbeat(role=ROLE, era=slot[0], slot=slot[1])), 1.5)
    chain.on_message(1, SubmitTx("h3", Heartbeat(role=ROLE, era=0, slot=7)), 1.6)
    result = outcomes(chain.on_timer("block", 2.0))
    assert result[(1, "h1")].status == "mined"
    assert result[(1, "h2")].reason == "heartbeat already counted"
    assert result[(1, "h3")].reason == "wrong slot"


def test_a_read_of_another_kind_is_answered_as_a_passing_failure() -> None:
    """Fixed -- the model answers a query it does not know with ``ChainRead(error=...)``
    and the default ``passing=True`` ("the chain may come back"), so a core retries it
    forever. The network host answers the same query with a ConfigError, which the
    driver reports as *not* passing: the simulator and the network disagree on the
    same input, and the simulator hides a misconfiguration the network would surface."""
    chain = model()
    for query in (
        "height",
        5,
        None,
        {"node_id": A},
        RegistryView(tip=1, active=True, expiry=1, next_era=0, next_slot=0),
    ):
        (effect,) = chain.on_message(1, ReadChain("q", query), 0.5)
        answer = effect.message
        assert answer.error and answer.value is None
        assert answer.passing is False, f"{query!r} answered as a passing failure"


def test_a_renewal_or_heartbeat_for_another_role_is_accepted() -> None:
    """Fixed -- Renew and Heartbeat never compare ``tx.role`` with the registered role:
    a storage node's ``Renew(role=WORKER)`` renews its storage entry and a heartbeat
    for another role counts. The contract's calls are per role (renew_storage, ...), so
    a core that sends the wrong role passes in the simulator and fails on chain."""
    chain = model()
    chain.on_message(1, SubmitTx("r", Register(role=ROLE, expiry=100)), 0.5)
    chain.on_timer("block", 1.0)
    chain.on_message(
        1, SubmitTx("renew", Renew(role=ROLE + 1, expiry=200, previous_expiry=100)), 1.5
    )
    result = outcomes(chain.on_timer("block", 2.0))
    assert result[(1, "renew")].status == "reverted", "a renewal for another role was mined"
    assert chain.registry[A].expiry == 100


def test_answers_to_an_external_sender_crash_the_simulator() -> None:
    """Fixed -- a transaction or read injected from outside the simulation (``inject``'s
    default sender, EXTERNAL) is answered with a Send to EXTERNAL, which the engine
    refuses with UnknownNodeError -- raised out of Simulator.run. For a transaction the
    crash happens when the next block is made, so every other outcome of that block is
    lost too. The chain model (and the storage core, answering a StoreBlob) must drop an
    answer to a sender that cannot receive one, or the engine must swallow it."""
    failures = []
    for target, message in (
        (CHAIN, SubmitTx("x", Register(role=ROLE, expiry=10**6))),
        (CHAIN, ReadChain("r", RegistryQuery(node_id=A, role=ROLE))),
        (1, StoreBlob(blob=b"offered from outside")),
    ):
        devnet = SimDevnet(seed=1, spec=SimDevnetSpec(storage_nodes=2))
        devnet.sim.inject(target, message, at=5.0, sender=EXTERNAL)
        try:
            devnet.run(until=20.0)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{type(message).__name__}: {type(exc).__name__}: {exc}")
    assert failures == []


# -- the devnet ------------------------------------------------------------------------------


def test_a_peer_can_forge_the_chain_s_answers() -> None:
    """Fixed -- StorageHostCore.on_message hands every ChainRead/TxOutcome to the
    registration core whatever its sender; the core cannot tell the chain's answer from
    a peer's. One forged ``ChainRead(error=..., passing=False)`` from node 2 turns node 1
    FAILED for good: it never heartbeats again. (On the network the driver answers with
    sender 0; a core should accept answers only from the chain's address.)"""
    devnet = SimDevnet(seed=1, spec=SimDevnetSpec(storage_nodes=2, era_length=16))
    devnet.sim.inject(1, ChainRead("registry", error="forged", passing=False), at=5.0, sender=2)
    devnet.sim.inject(1, TxOutcome("heartbeat", "sent"), at=6.0, sender=2)
    devnet.run(until=100.0)
    victim, other = devnet.storage[1], devnet.storage[2]
    assert victim.registration.phase == RegistrationPhase.READY
    beats = {
        a: len(devnet.chain.registry[c.node.node_id].heartbeats) for a, c in devnet.storage.items()
    }
    assert beats[1] >= beats[2] - 2, beats
    assert other.registration.phase == RegistrationPhase.READY


def test_reordered_reads_renew_from_a_stale_expiry() -> None:
    """Fixed -- with link delays below a block time (0.01-0.9 s, tick and block 1 s), a
    registry view read before a renewal was mined arrives after its outcome; the core
    takes the old expiry back and renews again at once (see
    test_attack_registration.py). Counted here on the chain: renewals whose
    ``previous_expiry`` is older than the expiry the chain already holds."""
    spec = SimDevnetSpec(
        storage_nodes=3, era_length=32, registration_ttl=60, delay_low=0.01, delay_high=0.9
    )
    devnet = SimDevnet(seed=1, spec=spec)
    stale: list[tuple[int, int, int]] = []
    apply = devnet.chain.apply

    def watch(sender: int, tx: Any) -> str:
        entry = devnet.chain.registry.get(devnet.chain.identities.get(sender, b""))
        if isinstance(tx, Renew) and entry is not None and tx.previous_expiry < entry.expiry:
            stale.append((sender, tx.previous_expiry, entry.expiry))
        return apply(sender, tx)

    devnet.chain.apply = watch  # type: ignore[method-assign]
    devnet.run(until=400.0)
    for core in devnet.storage.values():
        assert core.registration.phase == RegistrationPhase.READY
    assert stale == [], f"{len(stale)} renewals from a stale expiry: {stale}"


def test_a_flooding_peer_does_not_stop_the_devnet() -> None:
    """Regression: a node outside the identities floods the chain with transactions and
    reads from t=0; the storage nodes still register and heartbeat, the flood reverts."""

    class Flooder:
        node_id = 50

        def on_start(self, now: float) -> list[Effect]:
            return [SetTimer("flood", 0.1)]

        def on_timer(self, name: str, now: float) -> list[Effect]:
            burst: list[Effect] = [
                SubmitTx(f"t{i}", Register(role=ROLE, expiry=10**9)) for i in range(200)
            ]
            burst += [ReadChain(f"r{i}", RegistryQuery(node_id=A, role=ROLE)) for i in range(50)]
            return [*burst, SetTimer("flood", 0.5)]

        def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
            return []

    devnet = SimDevnet(seed=4, spec=SimDevnetSpec(storage_nodes=2, era_length=16))
    devnet.sim.add_node(Flooder())
    devnet.run(until=80.0)
    for core in devnet.storage.values():
        assert core.registration.phase == RegistrationPhase.READY
        assert len(devnet.chain.registry[core.node.node_id].heartbeats) >= 12
    assert devnet.chain.txs_reverted >= 200 * 100
    assert devnet.chain.pending == [] or len(devnet.chain.pending) <= 400
