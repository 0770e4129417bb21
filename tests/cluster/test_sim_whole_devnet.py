"""A whole devnet in the simulator from one seed: storage nodes, gatekeepers, workers with
their enclaves and gateways, each role's host cores as the node processes run them."""

from __future__ import annotations

from sealbridge.sim.bridged import LockStatus
from sealbridge.sim.devnet import SimDevnet, SimDevnetSpec
from sealbridge.sim.gateway import TransferPhase

SPEC = SimDevnetSpec(
    storage_nodes=3,
    gatekeepers=3,
    workers=2,
    contracts=1,
    worker_enclaves=True,
    gateways=3,
    checkpoint_interval=10,
)
ETH = 10**18


def run_whole_devnet(seed: object) -> SimDevnet:
    devnet = SimDevnet(seed=seed, spec=SPEC)
    devnet.elect(sorted(devnet.gatekeepers), 2)
    devnet.elect_gateways(sorted(devnet.gateways), 2)
    devnet.run(until=40.0)
    devnet.deploy_contracts()
    devnet.deploy_escrows()
    for i in range(4):
        devnet.sim.call_at(48.0 + 3 * i, lambda: devnet.send_command(0))
    devnet.transfer(ETH, deadline=200, at=50.0)
    devnet.run(until=120.0)
    return devnet


def test_every_role_runs_together_from_one_seed() -> None:
    devnet = run_whole_devnet("whole")
    # storage nodes registered and keep confirming checkpoints
    assert len(devnet.sim.get_reports("registered")) >= 3
    assert devnet.ledger.checkpoints  # confirmed by the storage nodes' receipts
    # two committees, each with its own key
    assert devnet.committee.active == 1 and devnet.gateway_committee.active == 1
    # the gatekeepers published the contract's key; the workers installed it from their
    # partial releases and ran every command in their enclaves, agreeing on the state
    assert len(devnet.sim.get_reports("key_published")) == 1
    states = {
        tuple((s.state_root, s.commands_applied) for s in w.get_status())
        for w in devnet.workers.values()
    }
    ((cid_state,),) = states
    assert cid_state[1] == 5  # the deploy and four mints
    assert devnet.ledger.get_accepted(devnet.contract_ids[0]).state_root == cid_state[0]
    # the gateways carried a transfer between the bridged chains
    (relayer,) = devnet.relayers.values()
    assert relayer.phase is TransferPhase.COMMITTED
    source, dest = devnet.bridged
    assert source.escrow.locks[relayer.transfer_id].state is LockStatus.COMMITTED
    assert dest.escrow.paid == {relayer.lock.recipient: ETH}
    assert devnet.chain.txs_mined > 0


def test_the_whole_devnet_replays_its_seed_exactly() -> None:
    assert run_whole_devnet(5).sim.trace_digest() == run_whole_devnet(5).sim.trace_digest()
