"""A devnet in the simulator: the storage nodes' host cores -- the same code the storage
processes run under the network driver -- against the chain model, from a seed."""

from __future__ import annotations

from sealbridge.chain.registration import RegistrationPhase
from sealbridge.core.ids import keccak
from sealbridge.sim.devnet import CHAIN, LEDGER, SimDevnet, SimDevnetSpec
from sealbridge.storage.host import StoreBlob, StoreRefused
from sealbridge.storage.messages import StorageReceipt
from sealbridge.storage.node import is_valid_receipt

CHAIN_ID = 31337


def test_storage_nodes_register_and_heartbeat_every_slot() -> None:
    devnet = SimDevnet(seed=7, spec=SimDevnetSpec(storage_nodes=4, era_length=32))
    devnet.run(until=200.0)
    chain = devnet.chain
    assert chain.number >= 195
    for core in devnet.storage.values():
        assert core.registration.phase == RegistrationPhase.READY
        entry = chain.registry[core.node.node_id]
        # one heartbeat per slot from the first slot after registration on: at most the
        # slot in progress when it registered is missed
        eras = chain.params.get_era(chain.number)
        slots = {
            (e, s)
            for e in range(eras + 1)
            for s in range(8)
            if chain.params.get_era_start(e) + s * 32 // 8 < chain.number
        }
        missed = slots - entry.heartbeats
        assert len(missed) <= 2, sorted(missed)
    assert chain.txs_reverted == 0


def test_registrations_are_renewed_before_they_expire() -> None:
    spec = SimDevnetSpec(storage_nodes=2, registration_ttl=40, heartbeats=False)
    devnet = SimDevnet(seed="renew", spec=spec)
    devnet.run(until=300.0)
    for core in devnet.storage.values():
        entry = devnet.chain.registry[core.node.node_id]
        assert entry.renewals >= 5
        assert entry.expiry > devnet.chain.timestamp  # never lapsed
        assert devnet.chain.is_active(core.node.node_id, entry.role)
    reports = [r.kind for r in devnet.sim.reports]
    assert reports.count("registered") == 2
    assert reports.count("renewed") >= 10


def test_a_crashed_node_misses_its_slots_and_resumes_after_restart() -> None:
    devnet = SimDevnet(seed=11, spec=SimDevnetSpec(storage_nodes=3, era_length=16))
    devnet.sim.crash(2, at=50.0)
    devnet.restart_storage(2, at=120.0)
    devnet.run(until=200.0)
    down = devnet.chain.registry[devnet.storage[2].node.node_id].heartbeats
    up = devnet.chain.registry[devnet.storage[1].node.node_id].heartbeats
    params = devnet.chain.params
    crashed = {(params.get_era(b), params.get_slot(b)) for b in range(55, 115)}
    assert not down & crashed  # nothing while it was down
    assert up & crashed  # the others carried on
    assert {(params.get_era(b), params.get_slot(b)) for b in range(130, 190)} <= down
    # the restarted node kept its registration (it found itself active: no second one)
    assert devnet.chain.registry[devnet.storage[2].node.node_id].registered_at < 50
    assert devnet.storage[2].registration.phase == RegistrationPhase.READY


def test_a_stored_blob_is_persisted_before_its_receipt() -> None:
    devnet = SimDevnet(seed=3, spec=SimDevnetSpec(storage_nodes=2))
    blob = b"sealed checkpoint " * 20
    answers: list[object] = []

    class Offer:
        node_id = 99

        def on_start(self, now: float) -> list[object]:
            from sealbridge.core.effects import Send

            return [Send((1,), StoreBlob(blob)), Send((1,), StoreBlob(b""))]

        def on_message(self, sender: int, message: object, now: float) -> list[object]:
            answers.append(message)
            return []

        def on_timer(self, name: str, now: float) -> list[object]:
            return []

    devnet.sim.add_node(Offer())  # type: ignore[arg-type]
    devnet.run(until=5.0)
    receipt, refused = answers
    assert isinstance(receipt, StorageReceipt) and isinstance(refused, StoreRefused)
    assert is_valid_receipt(receipt, LEDGER, CHAIN_ID)
    assert devnet.sim.get_disk(1)[f"blob/{keccak(blob).hex()}"] == blob
    assert refused.code == "blob_refused"
    assert CHAIN not in devnet.storage


def test_the_same_seed_gives_the_same_trace() -> None:
    digests = set()
    for _ in range(2):
        devnet = SimDevnet(seed=5, spec=SimDevnetSpec(storage_nodes=3))
        devnet.sim.crash(3, at=20.0)
        devnet.run(until=60.0)
        digests.add(devnet.sim.trace_digest())
    other = SimDevnet(seed=6, spec=SimDevnetSpec(storage_nodes=3))
    other.sim.crash(3, at=20.0)
    other.run(until=60.0)
    assert len(digests) == 1
    assert other.sim.trace_digest() not in digests
