"""The EVM gateway committee's enclave core (interop/evm_gateway.py), against real anvil
blocks: setup checks, verified following of both chains, and what it refuses to sign.

The enclaves here are in-process :class:`EnclaveContext` objects with simulated quotes;
``tests/e2e/test_swap.py`` runs the same program in sim-TEE processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from sealbridge.chain.adapter import ChainAdapter
from sealbridge.chain.anvil import AnvilNode
from sealbridge.chain.escrow import GatewayEscrow, LockedTransfer, deploy_gateway_escrow
from sealbridge.chain.lightclient import BlockEvidence
from sealbridge.crypto import bls
from sealbridge.interop.evm_gateway import (
    CommitteeSetup,
    Configure,
    DealRequest,
    FollowBlock,
    GatewayCore,
    GatewayError,
    GatewayRefused,
    JoinRequest,
    SignKind,
    SignRequest,
    Watch,
    WatchedChain,
)
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform

MEASUREMENT = bytes(range(32))
PROGRAM = "sealbridge.interop.evm_gateway:GatewayProgram"
CHAIN_A, CHAIN_B = 41001, 41002


def make_core(platform_key: bytes, measurement: bytes = MEASUREMENT) -> GatewayCore:
    ctx = EnclaveContext(
        program=PROGRAM, measurement=measurement, platform_private_key=platform_key
    )
    return GatewayCore(ctx)


@dataclass
class World:
    nodes: dict[int, AnvilNode]
    escrows: dict[int, GatewayEscrow]
    cores: list[GatewayCore]
    setup: CommitteeSetup
    followed: dict[tuple[int, int], int]

    def follow(self, core_index: int | None = None) -> None:
        for chain_id, escrow in self.escrows.items():
            tip = escrow.adapter.get_block_number()
            for i, core in enumerate(self.cores):
                if core_index is not None and i != core_index:
                    continue
                first = self.followed[(i, chain_id)] + 1
                if first > tip:
                    continue
                for ev in escrow.adapter.get_block_evidence(list(range(first, tip + 1))):
                    self.followed[(i, chain_id)] = core.follow(
                        FollowBlock(chain_id=chain_id, evidence=ev)
                    )

    def lock(self, amount: int = 10**15, deadline_s: int = 3600) -> LockedTransfer:
        source, dest = self.escrows[CHAIN_A], self.escrows[CHAIN_B]
        key = source.adapter.get_dev_key(1)
        recipient = ChainAdapter.address_of(dest.adapter.get_dev_key(2))
        deadline = source.adapter.get_block("latest").timestamp + deadline_s
        transfer, _ = source.lock(
            os.urandom(32), CHAIN_B, dest.address, recipient, deadline, amount, key
        )
        return transfer


def _platform(tmp: Path) -> tuple[bytes, bytes]:
    path = tmp / "platform.key"
    public = create_sim_platform(path)
    secret = msgspec.msgpack.decode(path.read_bytes())
    return public, bytes(secret["private_key"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("gateways")
    platform_pub, platform_key = _platform(tmp)
    nodes = {cid: AnvilNode(chain_id=cid).start() for cid in (CHAIN_A, CHAIN_B)}
    try:
        cores = [make_core(platform_key) for _ in range(3)]
        policy = devnet_policy(platform_pub, [MEASUREMENT])
        for core in cores:
            core.configure(Configure(policy=policy, confirmations=2))
        cards = [core.get_card() for core in cores]
        setup = cores[0].deal(DealRequest(cards=cards, threshold=2))
        for core in cores[1:]:
            core.join(JoinRequest(setup=setup, dealer=cards[0]))
        escrows: dict[int, GatewayEscrow] = {}
        for cid, node in nodes.items():
            adapter = node.adapter()
            deployer = adapter.get_dev_key(0)
            address = deploy_gateway_escrow(adapter, deployer, setup.group_public_key, 10)
            escrows[cid] = GatewayEscrow(adapter, address)
            escrows[cid].provide_liquidity(10**18, deployer)
        chains = []
        for cid, escrow in escrows.items():
            anchor = escrow.adapter.get_block("latest")
            chains.append(
                WatchedChain(
                    chain_id=cid,
                    escrow=escrow.address,
                    anchor_number=anchor.number,
                    anchor_hash=anchor.hash,
                )
            )
        followed = {}
        for i, core in enumerate(cores):
            core.watch(Watch(chains=chains))
            for chain in chains:
                followed[(i, chain.chain_id)] = chain.anchor_number
        yield World(nodes, escrows, cores, setup, followed)
    finally:
        for node in nodes.values():
            node.stop()


def combine(world: World, kind: SignKind, transfer_id: bytes) -> tuple[bytes, bytes]:
    signed = [core.sign(SignRequest(kind=kind, transfer_id=transfer_id)) for core in world.cores]
    assert len({s.message for s in signed}) == 1
    signature = bls.combine([s.partial for s in signed[:2]], 2)
    assert bls.verify(world.setup.group_public_key, signed[0].message, signature)
    return signed[0].message, signature


# --- setup -------------------------------------------------------------------------------


def test_every_member_holds_a_share_of_one_key(world: World) -> None:
    statuses = [core.get_status() for core in world.cores]
    assert [s.index for s in statuses] == [1, 2, 3] and all(s.member for s in statuses)
    assert world.setup.threshold == 2 and len(world.setup.members) == 3
    assert world.setup.dealer == world.cores[0].ctx.identity.identity_key


def test_setup_refuses_bad_cards_dealers_and_shares(tmp_path: Path) -> None:
    platform_pub, platform_key = _platform(tmp_path)
    policy = devnet_policy(platform_pub, [MEASUREMENT])
    cores = [make_core(platform_key) for _ in range(3)]
    for core in cores:
        core.configure(Configure(policy=policy))
    cards = [core.get_card() for core in cores]
    # a card from another measurement (not the gateway program) does not attest
    stranger = make_core(platform_key, measurement=bytes(32))
    stranger.configure(Configure(policy=policy))
    with pytest.raises(GatewayRefused, match="does not attest"):
        cores[0].deal(DealRequest(cards=[*cards[:2], stranger.get_card()], threshold=2))
    with pytest.raises(GatewayRefused, match="threshold"):
        cores[0].deal(DealRequest(cards=cards, threshold=4))
    setup = cores[0].deal(DealRequest(cards=cards, threshold=2))
    # a forged signature, a card that is not the dealer's, a share swapped for another's
    forged = msgspec.structs.replace(setup, signature=bytes(64))
    with pytest.raises(GatewayRefused, match="not signed by its dealer"):
        cores[1].join(JoinRequest(setup=forged, dealer=cards[0]))
    with pytest.raises(GatewayRefused, match="another dealer"):
        cores[1].join(JoinRequest(setup=setup, dealer=cards[2]))
    swapped = msgspec.structs.replace(
        setup, shares=[setup.shares[0], setup.shares[2], setup.shares[1]]
    )
    resigned = msgspec.structs.replace(
        swapped, signature=cores[0].ctx.sign_identity(swapped.get_body())
    )
    with pytest.raises(GatewayRefused, match="does not decrypt"):
        cores[1].join(JoinRequest(setup=resigned, dealer=cards[0]))
    assert cores[1].get_status().member is False  # nothing taken from the refusals
    cores[1].join(JoinRequest(setup=setup, dealer=cards[0]))
    assert cores[1].get_status().member is True
    with pytest.raises(GatewayError, match="already"):
        cores[1].join(JoinRequest(setup=setup, dealer=cards[0]))


# --- following and signing ---------------------------------------------------------------


def test_a_forged_or_skipped_block_is_refused_and_changes_nothing(world: World) -> None:
    world.follow()
    source = world.escrows[CHAIN_A]
    transfer = world.lock()
    core = world.cores[2]
    number = world.followed[(2, CHAIN_A)] + 1
    (evidence,) = source.adapter.get_block_evidence([number])
    # drop the receipts (hides the lock): the receipts root no longer matches
    hidden = BlockEvidence(header=evidence.header, receipts=[])
    with pytest.raises(GatewayRefused, match="block refused"):
        core.follow(FollowBlock(chain_id=CHAIN_A, evidence=hidden))
    if source.adapter.get_block_number() > number:
        (later,) = source.adapter.get_block_evidence([number + 1])
        with pytest.raises(GatewayRefused, match="block refused"):
            core.follow(FollowBlock(chain_id=CHAIN_A, evidence=later))  # skips one
    with pytest.raises(GatewayRefused, match="not watched"):
        core.follow(FollowBlock(chain_id=999, evidence=evidence))
    assert core.get_status().heights[str(CHAIN_A)] == number - 1
    assert transfer.transfer_id not in core.locks
    world.follow()
    assert transfer.transfer_id in core.locks


def test_release_needs_confirmations_then_pays_once_and_commit_needs_the_release(
    world: World,
) -> None:
    transfer = world.lock()
    world.follow()
    with pytest.raises(GatewayRefused, match="confirmations"):
        world.cores[0].sign(SignRequest(kind=SignKind.RELEASE, transfer_id=transfer.transfer_id))
    with pytest.raises(GatewayRefused, match="no verified release"):
        world.cores[0].sign(SignRequest(kind=SignKind.COMMIT, transfer_id=transfer.transfer_id))
    with pytest.raises(GatewayRefused, match="no verified lock"):
        world.cores[0].sign(SignRequest(kind=SignKind.RELEASE, transfer_id=os.urandom(32)))
    world.escrows[CHAIN_A].adapter.mine(2)
    world.follow()
    message, signature = combine(world, SignKind.RELEASE, transfer.transfer_id)
    dest = world.escrows[CHAIN_B]
    assert message == dest.compute_release_message(transfer)
    relayer = dest.adapter.get_dev_key(3)
    before = dest.adapter.balance(transfer.recipient)
    dest.release(transfer, signature, relayer)
    assert dest.adapter.balance(transfer.recipient) - before == transfer.amount
    # an abort is refused now by every member that signed the release
    with pytest.raises(GatewayRefused, match="signed a release"):
        world.cores[0].sign(SignRequest(kind=SignKind.ABORT, transfer_id=transfer.transfer_id))
    world.follow()
    _, commit_sig = combine(world, SignKind.COMMIT, transfer.transfer_id)
    source = world.escrows[CHAIN_A]
    source.commit(transfer.transfer_id, commit_sig, relayer)
    lock = source.get_lock(transfer.transfer_id)
    assert lock is not None and lock.state.name == "COMMITTED"


def test_abort_only_after_the_destination_deadline_and_never_with_a_release(
    world: World,
) -> None:
    transfer = world.lock(deadline_s=15)
    world.escrows[CHAIN_A].adapter.mine(2)
    world.follow()
    with pytest.raises(GatewayRefused, match="deadline has not passed"):
        world.cores[1].sign(SignRequest(kind=SignKind.ABORT, transfer_id=transfer.transfer_id))
    dest = world.escrows[CHAIN_B]
    dest.adapter.web3.provider.make_request("evm_increaseTime", [30])  # type: ignore[arg-type]
    dest.adapter.mine(1)
    world.follow()
    signed = [
        core.sign(SignRequest(kind=SignKind.ABORT, transfer_id=transfer.transfer_id))
        for core in world.cores[:2]
    ]
    signature = bls.combine([s.partial for s in signed], 2)
    with pytest.raises(GatewayRefused, match="signed an abort"):
        world.cores[0].sign(SignRequest(kind=SignKind.RELEASE, transfer_id=transfer.transfer_id))
    source = world.escrows[CHAIN_A]
    sender_before = source.adapter.balance(transfer.sender)
    source.abort(transfer.transfer_id, signature, source.adapter.get_dev_key(3))
    assert source.adapter.balance(transfer.sender) - sender_before == transfer.amount
    assert not dest.is_released(transfer.transfer_id)
