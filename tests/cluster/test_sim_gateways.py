"""Gateways in the simulated devnet: the committee host core and the chain feed, run
unchanged in front of real gateway enclaves, bridging two chains whose blocks are in the
real formats; transfers relayed end to end, with faults and a lying RPC node."""

from __future__ import annotations

import msgspec
from eth_abi.abi import encode as abi_encode

from sealbridge.chain.lightclient import EventLog
from sealbridge.core.effects import ChainRead
from sealbridge.interop.evm_gateway import LOCKED_TOPIC
from sealbridge.sim.bridged import LockStatus
from sealbridge.sim.devnet import SimDevnet, SimDevnetSpec
from sealbridge.sim.gateway import TransferPhase

ETH = 10**18


def _devnet(seed: object, gateways: int = 4, threshold: int = 3, **spec: object) -> SimDevnet:
    """A devnet whose gateway committee is active and whose escrows are deployed."""
    devnet = SimDevnet(seed=seed, spec=SimDevnetSpec(storage_nodes=1, gateways=gateways, **spec))  # type: ignore[arg-type]
    devnet.elect_gateways(sorted(devnet.gateways), threshold)
    devnet.run(until=40.0)
    assert devnet.gateway_committee.active == 1
    devnet.deploy_escrows()
    devnet.run(until=45.0)
    return devnet


def _supply(devnet: SimDevnet) -> int:
    """What the escrows hold or paid out: pools, locks, payouts and refunds."""
    total = 0
    for chain in devnet.bridged:
        escrow = chain.escrow
        total += escrow.pool + escrow.locked_total
        total += sum(escrow.paid.values()) + sum(escrow.refunded.values())
    return total


def test_a_transfer_is_locked_released_and_committed_by_the_gateway_committee() -> None:
    devnet = _devnet(seed=5)
    before = _supply(devnet)
    relayer = devnet.transfer(ETH, deadline=int(devnet.sim.now) + 120)
    devnet.run(until=110.0)
    assert relayer.phase is TransferPhase.COMMITTED
    source, dest = devnet.bridged
    assert source.escrow.locks[relayer.transfer_id].state is LockStatus.COMMITTED
    assert dest.escrow.paid == {relayer.lock.recipient: ETH}
    assert relayer.transfer_id in dest.escrow.released
    assert _supply(devnet) == before + ETH  # the sender's ETH, now in the source pool
    # every gateway verified both chains (from genesis, in the real formats) and signed
    for gateway in devnet.gateways.values():
        assert min(gateway.feed.heights.values()) >= source.number - 2
        assert gateway.feed.last_error == ""
        assert gateway.signed >= 1
    # the gateway committee is a committee of its own: the gatekeepers' has no era
    assert devnet.committee.active == 0


def test_with_one_gateway_down_the_others_carry_the_transfer() -> None:
    devnet = _devnet(seed="down")
    down = max(devnet.gateways)
    devnet.sim.crash(down)
    relayer = devnet.transfer(2 * ETH, deadline=int(devnet.sim.now) + 120)
    devnet.run(until=120.0)
    assert relayer.phase is TransferPhase.COMMITTED
    assert devnet.gateways[down].signed == 0
    assert devnet.bridged[1].escrow.paid == {relayer.lock.recipient: 2 * ETH}


def test_a_transfer_that_cannot_be_released_before_its_deadline_is_refunded() -> None:
    devnet = _devnet(seed="abort")
    before = _supply(devnet)
    relayer = devnet.transfer(ETH, deadline=int(devnet.sim.now) + 30)
    devnet.run(until=devnet.sim.now + 3.0)  # the lock is mined
    assert relayer.phase is TransferPhase.RELEASING
    # the relayer loses every gateway until the deadline has passed
    devnet.sim.partition([[relayer.address]])
    devnet.sim.heal(at=devnet.sim.now + 40.0)
    devnet.run(until=devnet.sim.now + 80.0)
    assert relayer.phase is TransferPhase.REFUNDED
    source, dest = devnet.bridged
    assert source.escrow.locks[relayer.transfer_id].state is LockStatus.REFUNDED
    assert source.escrow.refunded == {relayer.lock.sender: ETH}
    assert dest.escrow.paid == {}  # never both
    assert _supply(devnet) == before + ETH
    for gateway in devnet.gateways.values():
        assert gateway.program.core.signed.get(relayer.transfer_id, set()) <= {"abort"}


def test_a_lying_rpc_node_convinces_no_enclave_and_the_honest_threshold_signs() -> None:
    devnet = _devnet(seed="liar")
    liar = min(devnet.gateways)
    source, dest = devnet.bridged
    # a lock of 500 ETH to the liar's friend, exactly as the escrow would log it
    forged = EventLog(
        address=bytes.fromhex(source.escrow.address[2:]),
        topics=[LOCKED_TOPIC, b"\x66" * 32, bytes(12) + b"\x77" * 20],
        data=abi_encode(
            ["uint256", "uint256", "address", "address", "uint256", "bytes32"],
            [500 * ETH, dest.chain_id, dest.escrow.address, "0x" + "88" * 20, 10**9, bytes(32)],
        ),
    )

    def lie(_time: float, sender: int, receiver: int, message: object) -> object:
        """The liar's RPC node slips a made-up lock into every block it hands over."""
        if receiver != liar or not isinstance(message, ChainRead):
            return message
        if not isinstance(message.value, list) or not message.value:
            return message
        blocks = []
        for block in message.value:
            receipts = [*block.receipts]
            if receipts:
                receipts[0] = msgspec.structs.replace(receipts[0], logs=[*receipts[0].logs, forged])
            blocks.append(msgspec.structs.replace(block, receipts=receipts))
        return ChainRead(message.tag, blocks)

    heights = dict(devnet.gateways[liar].feed.heights)
    devnet.sim.add_filter(lie)
    relayer = devnet.transfer(ETH, deadline=int(devnet.sim.now) + 120)
    devnet.run(until=110.0)
    assert relayer.phase is TransferPhase.COMMITTED
    liar_gateway = devnet.gateways[liar]
    assert liar_gateway.signed == 0  # its enclave refused the forged blocks: no lock seen
    assert "refused" in liar_gateway.feed.last_error
    # the liar's enclave took the empty blocks (nothing to forge in them) and stopped
    # below the first one that carries a transaction: the lock
    lock_block = min(
        n
        for n, block in enumerate(source.chain.blocks)
        if any(log.topics[:1] == [LOCKED_TOPIC] for r in block.receipts for log in r.logs)
    )
    status = liar_gateway.program.core.get_status()
    assert heights[source.chain_id] < lock_block
    assert status.heights[str(source.chain_id)] == lock_block - 1
    assert status.locks == 0


def test_gatekeepers_and_gateways_keep_two_committees_on_one_chain() -> None:
    devnet = SimDevnet(seed="both", spec=SimDevnetSpec(storage_nodes=1, gatekeepers=3, gateways=3))
    devnet.elect(sorted(devnet.gatekeepers), 2)
    devnet.elect_gateways(sorted(devnet.gateways), 2)
    devnet.run(until=40.0)
    gatekeepers, gateways = devnet.committee, devnet.gateway_committee
    assert gatekeepers.active == 1 and gateways.active == 1
    keys = {
        gatekeepers.eras[1].record.group_public_key,
        gateways.eras[1].record.group_public_key,
    }
    assert len(keys) == 2 and b"" not in keys
    assert set(gatekeepers.eras[1].record.members) == {
        g.committee_id for g in devnet.gatekeepers.values()
    }
    assert set(gateways.eras[1].record.members) == {
        g.committee_id for g in devnet.gateways.values()
    }


def test_the_same_seed_gives_the_same_trace_with_gateways() -> None:
    def run() -> str:
        devnet = _devnet(seed=77, gateways=3, threshold=2)
        devnet.transfer(ETH, deadline=int(devnet.sim.now) + 120)
        devnet.run(until=90.0)
        return devnet.sim.trace_digest()

    assert run() == run()
