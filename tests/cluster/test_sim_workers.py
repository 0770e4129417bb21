"""Workers in the simulator: the output-submission host core -- the code the worker
processes run on the network -- racing on the chain model's ExecutionLedger rules, with
checkpoints confirmed by the simulated storage nodes' signed receipts, from a seed.

The worker enclave is modelled (``sim.worker.OutputsModel``), not run; see that module.
"""

from __future__ import annotations

from sealbridge.sim.devnet import SimDevnet, SimDevnetSpec

SPEC = SimDevnetSpec(
    storage_nodes=3, workers=3, contracts=2, storage_threshold=2, checkpoint_interval=10
)


def run_with_commands(devnet: SimDevnet, until: float, every: float = 3.0) -> None:
    t = devnet.sim.now
    while t < until:
        t += every
        devnet.send_command(int(t) % len(devnet.contract_ids))
        devnet.run(until=t)


def test_workers_race_and_the_ledger_keeps_one_output_per_range() -> None:
    devnet = SimDevnet(seed=21, spec=SPEC)
    run_with_commands(devnet, 120.0)
    ledger = devnet.ledger
    tip = devnet.chain.number
    for cid in devnet.contract_ids:
        accepted = ledger.get_accepted(cid)
        assert tip - accepted.end <= 5  # the outputs keep up with the chain
        assert accepted.commands_applied == ledger.count_commands(cid, accepted.end)
    stats = [w.core.stats for w in devnet.workers.values()]
    assert sum(s.accepted for s in stats) == ledger.accepts  # every accept is one of ours
    assert sum(ledger.accepted_by.values()) == ledger.accepts
    # the race has losers: they saw the range taken (skip) or were refused by the ledger
    assert sum(s.skipped + s.refused for s in stats) > 0
    assert all(reason == "" for _, reason in devnet.chain.admin_outcomes)


def test_checkpoints_are_confirmed_by_the_storage_nodes_receipts() -> None:
    devnet = SimDevnet(seed=22, spec=SPEC)
    run_with_commands(devnet, 90.0)
    ledger = devnet.ledger
    assert all(ledger.checkpoints.get(cid, 0) > 0 for cid in devnet.contract_ids)
    stored = sum(w.core.stats.checkpoints_stored for w in devnet.workers.values())
    assert stored >= 2
    held = [
        key
        for address in devnet.storage
        for key in devnet.sim.get_disk(address)
        if key.startswith("blob/")
    ]
    assert held  # the blobs are on the storage nodes' disks, receipts on the ledger


def test_with_the_storage_nodes_down_outputs_go_on_without_checkpoints() -> None:
    devnet = SimDevnet(seed=23, spec=SPEC)
    run_with_commands(devnet, 20.0)  # storage nodes registered, first outputs in
    for address in devnet.storage:
        devnet.sim.crash(address, at=21.0)
    run_with_commands(devnet, 80.0)
    ledger = devnet.ledger
    before = dict(ledger.checkpoints)
    for cid in devnet.contract_ids:
        assert devnet.chain.number - ledger.get_accepted(cid).end <= 5  # outputs went on
    assert sum(w.stores_failed for w in devnet.workers.values()) > 0
    for address in devnet.storage:
        devnet.restart_storage(address, at=81.0)
    run_with_commands(devnet, 140.0)
    assert any(ledger.checkpoints.get(c, 0) > before.get(c, 0) for c in devnet.contract_ids)


def test_the_same_seed_gives_the_same_trace() -> None:
    digests = set()
    for _ in range(2):
        devnet = SimDevnet(seed=24, spec=SPEC)
        run_with_commands(devnet, 60.0)
        digests.add(devnet.sim.trace_digest())
    assert len(digests) == 1
