"""The EVM gateway committee's enclave core (interop/evm_gateway.py), against real anvil
blocks: setup and watch checks, the committee key from the gateways' own key generation,
verified following of both chains, what it refuses to sign, and what survives a restart.

The enclaves here are in-process :class:`EnclaveContext` objects with simulated quotes.
The test plays the chain's part in the key generation (it elects the era, relays every
dealing to every member, agrees on the qualified dealers and announces RotationReady);
``tests/e2e/test_swap.py`` runs the same program in sim-TEE processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address

from sealbridge.chain.abi import AbiCodec
from sealbridge.chain.bls_onchain import compute_lock_ref
from sealbridge.chain.errors import TransactionReverted
from sealbridge.chain.lightclient import (
    BlockEvidence,
    EventLog,
    ReceiptFields,
    compute_header_hash,
    compute_receipts_root,
)
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.crypto import bls
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.compiler import compile_source
from sealbridge.evm.escrow import GatewayEscrow, LockedTransfer, deploy_gateway_escrow
from sealbridge.interop.evm_gateway import (
    COMMITTEE_SEAL_LABEL,
    LOCKED_TOPIC,
    ChainAnchor,
    EscrowRef,
    FollowBlock,
    GatewayCore,
    GatewayError,
    GatewayNotReady,
    GatewayProgram,
    GatewayRefused,
    GatewayRestore,
    GatewaySetup,
    GatewayState,
    GatewayStatus,
    HandoverPartial,
    HandoverRequest,
    Height,
    SignKind,
    SignRequest,
    Watch,
)
from sealbridge.keyservice.committee import (
    ChainBinding,
    CommitteeError,
    CommitteeState,
    CommitteeStateError,
    EraInfo,
    EraPhase,
)
from sealbridge.keyservice.ecalls import (
    Activate,
    Elected,
    ElectedOut,
    Finish,
    FinishOut,
    SealedBlob,
)
from sealbridge.tee import errors as tee_errors
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import devnet_policy

PLATFORM, PLATFORM_PUB = ed25519_keypair(b"g" * 32)
OTHER_PLATFORM, _ = ed25519_keypair(b"h" * 32)  # a platform the policy does not trust
GATEWAY = bytes(range(32))
WORKER = bytes([2]) * 32  # attests under the policy, but is not the gateway program
NOW = 1_800_000_000
POLICY = devnet_policy(PLATFORM_PUB, [GATEWAY, WORKER])
PROGRAM = "sealbridge.interop.evm_gateway:GatewayProgram"
CHAIN_A, CHAIN_B = 41001, 41002
COMMITTEE = ChainBinding(chain_id=CHAIN_A, committee_address="0x" + "c0" * 20)
# anchors of chains that are never followed (setup, watch and key-generation checks)
PAPER_ANCHORS = [
    ChainAnchor(chain_id=CHAIN_A, number=5, block_hash=b"\xaa" * 32),
    ChainAnchor(chain_id=CHAIN_B, number=7, block_hash=b"\xbb" * 32),
]
M = TypeVar("M", bound=Message)


def make_ctx(
    identity_file: Path | None = None,
    *,
    measurement: bytes = GATEWAY,
    platform: bytes = PLATFORM,
) -> EnclaveContext:
    return EnclaveContext(
        program=PROGRAM,
        measurement=measurement,
        platform_private_key=platform,
        sealed_identity_file=identity_file,
        clock=lambda: float(NOW),
    )


def make_card(ctx: EnclaveContext) -> AttestedCard:
    return AttestedCard(node=ctx.identity, quote=ctx.get_identity_quote())


def make_setup(anchors: list[ChainAnchor], confirmations: int = 2) -> GatewaySetup:
    return GatewaySetup(
        policy=POLICY, committee=COMMITTEE, anchors=anchors, confirmations=confirmations
    )


def set_up_core(setup: GatewaySetup, identity_file: Path | None = None) -> GatewayCore:
    core = GatewayCore(make_ctx(identity_file))
    core.process_setup(setup)
    return core


def roundtrip(message: M) -> M:
    """What the enclave seals comes back decoded from bytes."""
    return decode(encode(message), type(message))


def run_genesis(cores: list[GatewayCore], threshold: int) -> bytes:
    """Era 1 among ``cores`` as the chain runs it; returns the group public key."""
    ids = [core.ctx.identity.identity_key for core in cores]
    info = EraInfo(era=1, members=ids, threshold=threshold, dealers=ids)
    cards = [make_card(core.ctx) for core in cores]
    dealings = [core.get_committee().process_era_elected(info, cards, NOW) for core in cores]
    for dealing in dealings:
        assert dealing is not None  # at genesis every member deals
        for core in cores:  # the chain broadcasts each dealing to everyone
            assert core.get_committee().process_dealing(dealing) is None
    accepted = [set(core.get_committee().get_acceptable_dealers(1)) for core in cores]
    qualified = [d for d in ids if all(d in a for a in accepted)]
    assert qualified == ids  # every member's contribution is in the key
    confirmations = [core.get_committee().finish(1, qualified) for core in cores]
    (group_key,) = {c.group_public_key for c in confirmations}
    for core in cores:
        core.get_committee().process_rotation_ready(info, group_key)
    return group_key


def catch_up(core: GatewayCore, escrows: dict[int, GatewayEscrow]) -> None:
    """Hand ``core`` every block it has not verified yet, as its host does."""
    for chain_id, escrow in escrows.items():
        first = core.headers[chain_id].number + 1
        tip = escrow.adapter.get_block_number()
        if first > tip:
            continue
        for evidence in escrow.adapter.get_block_evidence(list(range(first, tip + 1))):
            number = core.follow(FollowBlock(chain_id=chain_id, evidence=evidence))
            assert number == evidence.header.number


def sign(core: GatewayCore, kind: SignKind, transfer: LockedTransfer) -> bls.PartialSignature:
    return core.sign(SignRequest(kind=kind, transfer_id=transfer.transfer_id)).partial


@dataclass
class World:
    nodes: dict[int, AnvilNode]
    escrows: dict[int, GatewayEscrow]
    cores: list[GatewayCore]
    identities: list[Path]  # each core's sealed identity (a restart reopens it)
    setup: GatewaySetup
    group_key: bytes

    def follow(self) -> None:
        for core in self.cores:
            catch_up(core, self.escrows)

    def lock(
        self,
        amount: int = 10**15,
        deadline_s: int = 3600,
        source: GatewayEscrow | None = None,
    ) -> LockedTransfer:
        source = source or self.escrows[CHAIN_A]
        dest = self.escrows[CHAIN_B]
        key = source.adapter.get_dev_key(1)
        recipient = ChainAdapter.address_of(dest.adapter.get_dev_key(2))
        deadline = source.adapter.get_block("latest").timestamp + deadline_s
        transfer, _ = source.lock(
            os.urandom(32), CHAIN_B, dest.address, recipient, deadline, amount, key
        )
        return transfer

    def combine(self, kind: SignKind, transfer: LockedTransfer, signers: list[int]) -> bytes:
        signed = [
            self.cores[i].sign(SignRequest(kind=kind, transfer_id=transfer.transfer_id))
            for i in signers
        ]
        (message,) = {s.message for s in signed}
        signature = bls.combine([s.partial for s in signed], 2)
        assert bls.verify(self.group_key, message, signature)
        return signature


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("gateways")
    nodes: dict[int, AnvilNode] = {}
    try:
        for cid in (CHAIN_A, CHAIN_B):
            nodes[cid] = AnvilNode(chain_id=cid).start()
        adapters = {cid: node.adapter() for cid, node in nodes.items()}
        anchors = []
        for cid, adapter in adapters.items():
            block = adapter.get_block("latest")
            anchors.append(ChainAnchor(chain_id=cid, number=block.number, block_hash=block.hash))
        setup = make_setup(anchors, confirmations=2)
        identities = [tmp / f"gateway{i}.identity" for i in range(3)]
        cores = [set_up_core(setup, path) for path in identities]
        group_key = run_genesis(cores, threshold=2)
        # the escrows trust the key the gateways generated (deployed after the anchors:
        # the gateways verify their deployment blocks like any other)
        escrows: dict[int, GatewayEscrow] = {}
        for cid, adapter in adapters.items():
            deployer = adapter.get_dev_key(0)
            address = deploy_gateway_escrow(adapter, deployer, group_key, 10)
            escrows[cid] = GatewayEscrow(adapter, address)
            escrows[cid].provide_liquidity(10**18, deployer)
        watch = Watch(
            escrows=[EscrowRef(chain_id=cid, escrow=e.address) for cid, e in escrows.items()]
        )
        for core in cores:
            core.watch(watch)
        yield World(nodes, escrows, cores, identities, setup, group_key)
    finally:
        for node in nodes.values():
            node.stop()


# --- the committee key ---------------------------------------------------------------------


def test_every_member_holds_a_share_of_one_key_from_their_dkg(world: World) -> None:
    statuses = [core.get_status() for core in world.cores]
    assert [s.index for s in statuses] == [1, 2, 3]
    assert all(s.member and s.era == 1 for s in statuses)
    assert {s.group_public_key for s in statuses} == {world.group_key}
    holders = [core.get_committee().get_active() for core in world.cores]
    assert all(h.public == holders[0].public and h.threshold == 2 for h in holders)
    message = b"sealbridge/test/one committee key"
    partials = [h.sign_message(message) for h in holders]
    for holder, partial in zip(holders, partials, strict=True):
        assert bls.is_valid_partial(holder.public.public_shares[partial.index], message, partial)
        assert not bls.verify(world.group_key, message, partial.signature)
    for pair in combinations(partials, 2):
        signature = bls.combine(list(pair), 2)
        assert bls.verify(world.group_key, message, signature)
    # it is the key the escrows check, on chain
    escrow = world.escrows[CHAIN_A]
    assert escrow.get_group_public_key() == world.group_key
    assert escrow.is_valid_signature(message, bls.combine(partials[1:], 2))
    assert not escrow.is_valid_signature(message, partials[0].signature)


def test_a_card_that_does_not_attest_is_refused_and_changes_nothing() -> None:
    cores = [set_up_core(make_setup(PAPER_ANCHORS)) for _ in range(3)]
    cards = [make_card(core.ctx) for core in cores]
    ids = [core.ctx.identity.identity_key for core in cores]
    member = cores[0].get_committee()
    worker = make_ctx(measurement=WORKER)  # attests, but runs other code
    foreign = make_ctx(platform=OTHER_PLATFORM)  # the gateway's code, on an untrusted platform
    for stranger, error, match in (
        (worker, CommitteeError, "another measurement"),
        (foreign, tee_errors.QuoteSignatureError, None),
    ):
        node = stranger.identity.identity_key
        info = EraInfo(era=1, members=[*ids[:2], node], threshold=2, dealers=[*ids[:2], node])
        with pytest.raises(error, match=match):
            member.process_era_elected(info, [*cards[:2], make_card(stranger)], NOW)
    # a card whose keys its quote does not bind (another gateway's quote)
    genuine = EraInfo(era=1, members=ids, threshold=2, dealers=ids)
    swapped = AttestedCard(node=cores[2].ctx.identity, quote=cores[1].ctx.get_identity_quote())
    with pytest.raises(tee_errors.ReportDataMismatch):
        member.process_era_elected(genuine, [cards[0], cards[1], swapped], NOW)
    assert member.phases == {} and member.pending == {} and member.current_era == 0
    assert cores[0].get_status().member is False
    # era 1 is still open to the genuine members
    group_key = run_genesis(cores, threshold=2)
    assert cores[0].get_status().group_public_key == group_key


# --- setup and watch ------------------------------------------------------------------------


def test_setup_is_checked_and_happens_once() -> None:
    core = GatewayCore(make_ctx())
    with pytest.raises(GatewayError, match="not set up"):
        core.get_committee()
    again_a = ChainAnchor(chain_id=CHAIN_A, number=6, block_hash=b"\xcc" * 32)
    short_hash = ChainAnchor(chain_id=CHAIN_A, number=5, block_hash=b"\xaa" * 31)
    refused = [
        (make_setup(PAPER_ANCHORS, confirmations=0), "confirmations"),
        (make_setup(PAPER_ANCHORS, confirmations=65), "confirmations"),
        (make_setup([*PAPER_ANCHORS, again_a]), "distinct chains"),
        (make_setup([]), "distinct chains"),
        (make_setup([short_hash]), "malformed"),
        (
            msgspec.structs.replace(
                make_setup(PAPER_ANCHORS),
                committee=ChainBinding(chain_id=CHAIN_A, committee_address="0xnot-an-address"),
            ),
            "not an address",
        ),
        (
            msgspec.structs.replace(
                make_setup(PAPER_ANCHORS),
                policy=msgspec.structs.replace(POLICY, allowed_measurements=[bytes(32)]),
            ),
            "own measurement",
        ),
    ]
    for setup, match in refused:
        with pytest.raises(GatewayError, match=match):
            core.process_setup(setup)
        assert core.setup is None and core.committee is None and core.headers == {}
    core.process_setup(make_setup(PAPER_ANCHORS, confirmations=64))
    with pytest.raises(GatewayError, match="set up already"):
        core.process_setup(make_setup([again_a], confirmations=1))
    assert core.get_status().heights == {str(CHAIN_A): 5, str(CHAIN_B): 7}
    assert core.headers[CHAIN_A].hash == b"\xaa" * 32 and core.confirmations == 64


def test_watch_names_each_anchored_chain_once() -> None:
    core = set_up_core(make_setup(PAPER_ANCHORS))
    first, second = "0x" + "0a" * 20, "0x" + "0b" * 20
    a_first = EscrowRef(chain_id=CHAIN_A, escrow=first)
    refused = [
        ([a_first, EscrowRef(chain_id=999, escrow=second)], "not anchored"),
        ([a_first, EscrowRef(chain_id=CHAIN_A, escrow=second)], "named already"),
        ([EscrowRef(chain_id=CHAIN_B, escrow="0xnot-an-address")], "not an address"),
    ]
    for escrows, match in refused:
        with pytest.raises(GatewayError, match=match):
            core.watch(Watch(escrows=escrows))
        assert core.escrows == {}  # all or nothing
    core.watch(Watch(escrows=[a_first]))
    for escrows in (
        [EscrowRef(chain_id=CHAIN_A, escrow=second)],
        [EscrowRef(chain_id=CHAIN_B, escrow=second), a_first],
    ):
        with pytest.raises(GatewayError, match="named already"):
            core.watch(Watch(escrows=escrows))
    assert core.get_status().escrows == {str(CHAIN_A): to_checksum_address(first)}
    # another anchored chain may be named later, once
    core.watch(Watch(escrows=[EscrowRef(chain_id=CHAIN_B, escrow=second)]))
    assert set(core.get_status().escrows) == {str(CHAIN_A), str(CHAIN_B)}


def test_follow_before_the_escrow_is_named_is_refused_and_changes_nothing(
    world: World,
) -> None:
    adapter = world.escrows[CHAIN_A].adapter
    adapter.mine(1)
    tip = adapter.get_block_number()
    anchor = adapter.get_block(tip - 1)
    core = set_up_core(
        make_setup([ChainAnchor(chain_id=CHAIN_A, number=anchor.number, block_hash=anchor.hash)])
    )
    (evidence,) = adapter.get_block_evidence([tip])
    request = FollowBlock(chain_id=CHAIN_A, evidence=evidence)
    with pytest.raises(GatewayRefused, match="not named yet"):
        core.follow(request)
    assert core.headers[CHAIN_A].number == anchor.number and core.clock[CHAIN_A] == 0
    core.watch(Watch(escrows=[EscrowRef(chain_id=CHAIN_A, escrow=world.escrows[CHAIN_A].address)]))
    assert core.follow(request) == tip  # the same block, once the escrow is named
    assert core.clock[CHAIN_A] == evidence.header.timestamp


# --- following and signing -----------------------------------------------------------------


def test_a_forged_or_skipped_block_is_refused_and_changes_nothing(world: World) -> None:
    world.follow()
    source = world.escrows[CHAIN_A]
    transfer = world.lock()
    source.adapter.mine(1)
    core = world.cores[2]
    number = core.headers[CHAIN_A].number + 1
    evidence, later = source.adapter.get_block_evidence([number, number + 1])
    # drop the receipts (hides the lock): the receipts root no longer matches
    hidden = BlockEvidence(header=evidence.header, receipts=[])
    with pytest.raises(GatewayRefused, match="block refused"):
        core.follow(FollowBlock(chain_id=CHAIN_A, evidence=hidden))
    with pytest.raises(GatewayRefused, match="block refused"):
        core.follow(FollowBlock(chain_id=CHAIN_A, evidence=later))  # skips one
    with pytest.raises(GatewayRefused, match="not anchored"):
        core.follow(FollowBlock(chain_id=999, evidence=evidence))
    assert core.get_status().heights[str(CHAIN_A)] == number - 1
    assert transfer.transfer_id not in core.locks
    world.follow()
    assert transfer.transfer_id in core.locks
    # a lock in an escrow this committee does not serve is not read as one
    deployer = source.adapter.get_dev_key(0)
    rogue = GatewayEscrow(
        source.adapter, deploy_gateway_escrow(source.adapter, deployer, world.group_key, 10)
    )
    rogue_transfer = world.lock(source=rogue)
    source.adapter.mine(2)
    world.follow()
    assert all(rogue_transfer.transfer_id not in c.locks for c in world.cores)
    with pytest.raises(GatewayRefused, match="no verified lock"):
        sign(core, SignKind.RELEASE, rogue_transfer)


def test_release_needs_confirmations_then_pays_once_and_commit_needs_the_release(
    world: World,
) -> None:
    transfer = world.lock()
    world.follow()
    source, dest = world.escrows[CHAIN_A], world.escrows[CHAIN_B]
    with pytest.raises(GatewayRefused, match="0 confirmations, 2 are required"):
        sign(world.cores[0], SignKind.RELEASE, transfer)
    with pytest.raises(GatewayRefused, match="no verified release"):
        sign(world.cores[0], SignKind.COMMIT, transfer)
    with pytest.raises(GatewayRefused, match="no verified lock"):
        world.cores[0].sign(SignRequest(kind=SignKind.RELEASE, transfer_id=os.urandom(32)))
    source.adapter.mine(1)
    world.follow()
    with pytest.raises(GatewayRefused, match="1 confirmations, 2 are required"):
        sign(world.cores[0], SignKind.RELEASE, transfer)
    source.adapter.mine(1)
    world.follow()
    signed = [
        core.sign(SignRequest(kind=SignKind.RELEASE, transfer_id=transfer.transfer_id))
        for core in world.cores[:2]
    ]
    assert {s.chain_id for s in signed} == {CHAIN_B}
    assert {s.message for s in signed} == {dest.compute_release_message(transfer)}
    signature = bls.combine([s.partial for s in signed], 2)
    relayer = dest.adapter.get_dev_key(3)
    before = dest.adapter.balance(transfer.recipient)
    dest.release(transfer, signature, relayer)
    assert dest.adapter.balance(transfer.recipient) - before == transfer.amount
    world.follow()
    # no abort now: not from a member that signed the release, nor from the one that did
    # not (it saw the release on the destination)
    with pytest.raises(GatewayRefused, match="signed a release"):
        sign(world.cores[0], SignKind.ABORT, transfer)
    with pytest.raises(GatewayRefused, match="released on its destination"):
        sign(world.cores[2], SignKind.ABORT, transfer)
    # the commit waits for the release to be as deep as a lock must be
    with pytest.raises(GatewayRefused, match="the release has 0 confirmations, 2 are required"):
        sign(world.cores[0], SignKind.COMMIT, transfer)
    dest.adapter.mine(2)
    world.follow()
    commit = world.combine(SignKind.COMMIT, transfer, [0, 2])
    source.commit(transfer.transfer_id, commit, relayer)
    lock = source.get_lock(transfer.transfer_id)
    assert lock is not None and lock.state.name == "COMMITTED"


def test_abort_only_after_the_destination_deadline_and_never_with_a_release(
    world: World,
) -> None:
    transfer = world.lock(deadline_s=15)
    world.escrows[CHAIN_A].adapter.mine(2)
    world.follow()
    with pytest.raises(GatewayRefused, match="deadline has not passed"):
        sign(world.cores[1], SignKind.ABORT, transfer)
    dest = world.escrows[CHAIN_B]
    dest.adapter.increase_time(30)
    world.follow()
    signature = world.combine(SignKind.ABORT, transfer, [0, 1])
    with pytest.raises(GatewayRefused, match="signed an abort"):
        sign(world.cores[0], SignKind.RELEASE, transfer)
    source = world.escrows[CHAIN_A]
    sender_before = source.adapter.balance(transfer.sender)
    source.abort(transfer.transfer_id, signature, source.adapter.get_dev_key(3))
    assert source.adapter.balance(transfer.sender) - sender_before == transfer.amount
    assert not dest.is_released(transfer.transfer_id)


# --- restarts --------------------------------------------------------------------------------


def test_a_signed_release_survives_a_restart(world: World) -> None:
    transfer = world.lock(deadline_s=15)
    world.escrows[CHAIN_A].adapter.mine(2)
    world.follow()
    signer = world.cores[0]
    released = signer.sign(SignRequest(kind=SignKind.RELEASE, transfer_id=transfer.transfer_id))
    committee = roundtrip(signer.get_committee().export_state())
    state = roundtrip(signer.export_state())
    assert state.signed["0x" + transfer.transfer_id.hex()] == ["release"]
    # the release is never relayed; the destination passes the deadline
    world.escrows[CHAIN_B].adapter.increase_time(30)
    world.follow()

    def restart(state: GatewayState) -> GatewayCore:
        core = set_up_core(world.setup, world.identities[0])
        core.get_committee().restore_state(committee)
        core.restore_state(state)
        catch_up(core, world.escrows)  # its host re-follows from the sealed anchors
        return core

    restarted = restart(state)
    assert restarted.ctx.identity == signer.ctx.identity
    assert restarted.get_status() == signer.get_status()
    with pytest.raises(GatewayRefused, match="signed a release"):
        sign(restarted, SignKind.ABORT, transfer)
    # it still signs the release it signed before, with the same share
    again = sign(restarted, SignKind.RELEASE, transfer)
    assert again == released.partial
    # without the record, the same share would sign the abort: the record refuses it
    forgetful = restart(GatewayState(escrows=state.escrows, signed={}))
    abort = forgetful.sign(SignRequest(kind=SignKind.ABORT, transfer_id=transfer.transfer_id))
    public_share = signer.get_committee().get_active().public.public_shares[1]
    assert bls.is_valid_partial(public_share, abort.message, abort.partial)


def test_the_program_seals_its_setup_and_restores_it_once(world: World, tmp_path: Path) -> None:
    identity = tmp_path / "gateway.identity"
    anchors = []
    for cid, escrow in sorted(world.escrows.items()):
        block = escrow.adapter.get_block("latest")
        anchors.append(ChainAnchor(chain_id=cid, number=block.number, block_hash=block.hash))
    setup = make_setup(anchors)
    program = GatewayProgram(make_ctx(identity), clock=lambda: float(NOW))
    calls = program.get_ecalls()
    assert {"setup", "restore", "watch", "follow", "sign", "status", "sign_heartbeat"} <= set(calls)
    assert {"committee_elected", "committee_dealing", "committee_finish"} <= set(calls)
    sealed_setup = decode(calls["setup"](encode(setup)), SealedBlob).sealed
    # a committee of one, through the committee ECALLs
    node = program.ctx.identity.identity_key
    info = EraInfo(era=1, members=[node], threshold=1, dealers=[node])
    elected = decode(
        calls["committee_elected"](encode(Elected(info=info, cards=[make_card(program.ctx)]))),
        ElectedOut,
    )
    assert elected.dealing is not None
    finished = decode(calls["committee_finish"](encode(Finish(era=1, qualified=[node]))), FinishOut)
    group_key = finished.confirmation.group_public_key
    activate = Activate(info=info, group_public_key=group_key)
    sealed_committee = decode(calls["committee_ready"](encode(activate)), SealedBlob).sealed
    watch = Watch(
        escrows=[EscrowRef(chain_id=cid, escrow=e.address) for cid, e in world.escrows.items()]
    )
    sealed_state = decode(calls["watch"](encode(watch)), SealedBlob).sealed
    before = decode(calls["status"](b""), GatewayStatus)

    restarted = GatewayProgram(make_ctx(identity), clock=lambda: float(NOW))
    table = restarted.get_ecalls()
    restore = encode(
        GatewayRestore(setup=sealed_setup, committee=sealed_committee, state=sealed_state)
    )
    table["restore"](restore)
    after = decode(table["status"](b""), GatewayStatus)
    assert after == before
    assert after.heights == {str(a.chain_id): a.number for a in anchors}
    assert after.member and after.group_public_key == group_key
    # the restored anchors verify the chains' next blocks
    for anchor in anchors:
        adapter = world.escrows[anchor.chain_id].adapter
        adapter.mine(1)
        (evidence,) = adapter.get_block_evidence([anchor.number + 1])
        out = table["follow"](encode(FollowBlock(chain_id=anchor.chain_id, evidence=evidence)))
        assert decode(out, Height).number == anchor.number + 1
    # restored once, at start; never set up again, its escrows never renamed
    with pytest.raises(GatewayNotReady):
        table["restore"](restore)
    with pytest.raises(GatewayError, match="set up already"):
        table["setup"](encode(setup))
    with pytest.raises(GatewayError, match="named already"):
        table["watch"](encode(watch))
    # another program on the same platform cannot open the sealed setup
    other = GatewayProgram(make_ctx(measurement=WORKER), clock=lambda: float(NOW))
    with pytest.raises(tee_errors.SealingError):
        other.get_ecalls()["restore"](restore)
    assert other.core.setup is None
    # the host sets the same enclave up again on anchors of its choice and tries to keep
    # the committee share and signing record: they open only beside their own setup
    moved = msgspec.structs.replace(
        setup, anchors=[ChainAnchor(chain_id=CHAIN_A, number=1, block_hash=b"\x11" * 32)]
    )
    scratch = GatewayProgram(make_ctx(identity), clock=lambda: float(NOW))
    moved_setup = decode(scratch.get_ecalls()["setup"](encode(moved)), SealedBlob).sealed
    for kept in (
        GatewayRestore(setup=moved_setup, committee=sealed_committee),
        GatewayRestore(setup=moved_setup, state=sealed_state),
    ):
        fresh = GatewayProgram(make_ctx(identity), clock=lambda: float(NOW))
        with pytest.raises(tee_errors.SealingError):
            fresh.get_ecalls()["restore"](encode(kept))
        assert fresh.core.setup is None


# --- a lying host (last: it leaves core 2 on a fabricated branch) --------------------------


def test_a_fabricated_branch_fools_only_its_own_gateway(world: World) -> None:
    """Anvil blocks carry no consensus proof, so the host of gateway 2 can fabricate a
    branch from its enclave's tip: a block with a ``Locked`` event of the real escrow
    that never happened, hash-linked and with a matching receipts root, then blocks on
    top of it. Its own enclave signs a release for that lock; the other gateways, fed
    the real chain by their own hosts, refuse, and one partial is not a signature the
    destination escrow accepts (the issue 15 attack: with one host feeding every enclave,
    the whole committee signed)."""
    world.follow()
    source, dest = world.escrows[CHAIN_A], world.escrows[CHAIN_B]
    liar = world.cores[2]
    start, start_hash = liar.headers[CHAIN_A].number, liar.headers[CHAIN_A].hash
    transfer_id = os.urandom(32)
    sender = ChainAdapter.address_of(source.adapter.get_dev_key(1))
    recipient = ChainAdapter.address_of(dest.adapter.get_dev_key(2))
    amount, deadline = 5 * 10**17, 2**40
    lock_ref = compute_lock_ref(
        source_chain_id=CHAIN_A,
        source_escrow=source.address,
        transfer_id=transfer_id,
        sender=sender,
        amount=amount,
        dest_chain_id=CHAIN_B,
        dest_escrow=dest.address,
        recipient=recipient,
        deadline=deadline,
    )
    log = EventLog(
        address=bytes.fromhex(source.address[2:]),
        topics=[LOCKED_TOPIC, transfer_id, bytes(12) + bytes.fromhex(sender[2:])],
        data=abi_encode(
            ["uint256", "uint256", "address", "address", "uint256", "bytes32"],
            [amount, CHAIN_B, dest.address, recipient, deadline, lock_ref],
        ),
    )
    receipt = ReceiptFields(
        tx_type=2, status=1, cumulative_gas_used=50_000, logs_bloom=bytes(256), logs=[log]
    )
    source.adapter.mine(3)
    real = source.adapter.get_block_evidence(list(range(start + 1, start + 4)))
    parent = start_hash
    for i, evidence in enumerate(real):
        receipts = [receipt] if i == 0 else evidence.receipts
        header = msgspec.structs.replace(
            evidence.header,
            parent_hash=parent,
            receipts_root=compute_receipts_root(receipts),
        )
        liar.follow(FollowBlock(chain_id=CHAIN_A, evidence=BlockEvidence(header, receipts)))
        parent = compute_header_hash(header)
    assert parent != source.adapter.get_block(start + 3).hash  # not the real chain
    lying = liar.sign(SignRequest(kind=SignKind.RELEASE, transfer_id=transfer_id))
    for honest in world.cores[:2]:
        catch_up(honest, world.escrows)
        with pytest.raises(GatewayRefused, match="no verified lock"):
            honest.sign(SignRequest(kind=SignKind.RELEASE, transfer_id=transfer_id))
    assert not bls.verify(world.group_key, lying.message, lying.partial.signature)
    fake = LockedTransfer(
        transfer_id=transfer_id,
        source_chain_id=CHAIN_A,
        source_escrow=source.address,
        sender=sender,
        amount=amount,
        dest_chain_id=CHAIN_B,
        dest_escrow=dest.address,
        recipient=recipient,
        deadline=deadline,
        lock_ref=lock_ref,
    )
    with pytest.raises(TransactionReverted):
        dest.release(fake, lying.partial.signature, dest.adapter.get_dev_key(3))


# --- a fresh committee key, handed over to the escrows --------------------------------------

# Stands in for the gateway committee contract: it logs GatekeeperCommittee's RotationReady
# (same signature), which the enclaves read from their verified chain A.
ANNOUNCER = """# pragma version ~=0.4.3
event RotationReady:
    era: indexed(uint256)
    group_public_key: Bytes[48]
    members: DynArray[bytes32, 32]
    threshold: uint256

@external
def announce(era: uint256, key: Bytes[48], members: DynArray[bytes32, 32], threshold: uint256):
    log RotationReady(era=era, group_public_key=key, members=members, threshold=threshold)
"""


@dataclass
class HandoverWorld:
    world: World
    announcer: str  # the committee contract of the gateways' setup

    def announce(self, info: EraInfo, key: bytes) -> None:
        adapter = self.world.escrows[CHAIN_A].adapter
        compiled = compile_source("Announcer", ANNOUNCER, evm_version=adapter.evm_version)
        data = (
            AbiCodec(compiled.abi)
            .function("announce")
            .encode_call([info.era, key, info.members, info.threshold])
        )
        adapter.transact(adapter.get_dev_key(4), to=self.announcer, data=data)


@pytest.fixture(scope="module")
def handover_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HandoverWorld]:
    """Four gateways: 0, 1 and 2 hold era 1's key (t = 2), 3 is set up and serves the same
    escrows but holds no share yet (a newcomer)."""
    tmp = tmp_path_factory.mktemp("handover")
    nodes: dict[int, AnvilNode] = {}
    try:
        for cid in (CHAIN_A, CHAIN_B):
            nodes[cid] = AnvilNode(chain_id=cid).start()
        adapters = {cid: node.adapter() for cid, node in nodes.items()}
        compiled = compile_source("Announcer", ANNOUNCER, evm_version=adapters[CHAIN_A].evm_version)
        announcer = adapters[CHAIN_A].deploy(adapters[CHAIN_A].get_dev_key(4), compiled.bytecode)
        anchors = []
        for cid, adapter in adapters.items():
            block = adapter.get_block("latest")
            anchors.append(ChainAnchor(chain_id=cid, number=block.number, block_hash=block.hash))
        setup = GatewaySetup(
            policy=POLICY,
            committee=ChainBinding(chain_id=CHAIN_A, committee_address=announcer),
            anchors=anchors,
            confirmations=1,
        )
        identities = [tmp / f"gateway{i}.identity" for i in range(4)]
        cores = [set_up_core(setup, path) for path in identities]
        group_key = run_genesis(cores[:3], threshold=2)
        escrows: dict[int, GatewayEscrow] = {}
        for cid, adapter in adapters.items():
            deployer = adapter.get_dev_key(0)
            escrows[cid] = GatewayEscrow(
                adapter, deploy_gateway_escrow(adapter, deployer, group_key, 10)
            )
            escrows[cid].provide_liquidity(10**18, deployer)
        watch = Watch(
            escrows=[EscrowRef(chain_id=cid, escrow=e.address) for cid, e in escrows.items()]
        )
        for core in cores:
            core.watch(watch)
        world = World(nodes, escrows, cores, identities, setup, group_key)
        yield HandoverWorld(world, announcer)
    finally:
        for node in nodes.values():
            node.stop()


def run_fresh_era(cores: list[GatewayCore], members: list[int], threshold: int) -> EraInfo:
    """Fresh era 2 among ``cores[i] for i in members``, up to their confirmations."""
    ids = [cores[i].ctx.identity.identity_key for i in members]
    info = EraInfo(era=2, members=ids, threshold=threshold, dealers=ids, previous_era=1, fresh=True)
    cards = [make_card(cores[i].ctx) for i in members]
    dealings = [cores[i].get_committee().process_era_elected(info, cards, NOW) for i in members]
    for dealing in dealings:
        assert dealing is not None  # a key generation: every member deals
        for i in members:
            assert cores[i].get_committee().process_dealing(dealing) is None
    return info


def follow_through_program(core: GatewayCore, escrows: dict[int, GatewayEscrow]) -> CommitteeState:
    """Catch ``core`` up through its program's ``follow`` ECALL: exactly one block (the
    one that makes the old key untrusted everywhere) returns the committee state sealed
    again, without the erased share; that state is returned."""
    program = GatewayProgram(core.ctx, clock=lambda: float(NOW))
    program.core = core
    follow = program.get_ecalls()["follow"]
    sealed: list[bytes] = []
    for chain_id, escrow in escrows.items():
        tip = escrow.adapter.get_block_number()
        numbers = list(range(core.headers[chain_id].number + 1, tip + 1))
        for evidence in escrow.adapter.get_block_evidence(numbers):
            out = decode(follow(encode(FollowBlock(chain_id=chain_id, evidence=evidence))), Height)
            if out.committee:
                sealed.append(out.committee)
    assert len(sealed) == 1
    label = program._label(COMMITTEE_SEAL_LABEL)  # noqa: SLF001 -- the seal label of its setup
    return decode(core.ctx.unseal(sealed[0], label), CommitteeState)


def test_a_fresh_key_is_handed_over_by_the_old_shares_which_are_then_erased(
    handover_world: HandoverWorld,
) -> None:
    """Era 1 (gateways 0, 1, 2) is replaced by a fresh era 2 (1, 2, 3): the old shares
    sign each escrow's ``rotate_key`` to the new key, only for that key and only for the
    escrows they serve, and are erased once the gateways have verified both
    ``KeyRotated`` events. After it, the old key's signatures fail on chain and the new
    era's verify."""
    world = handover_world.world
    cores = world.cores
    source, dest = world.escrows[CHAIN_A], world.escrows[CHAIN_B]
    relayer = dest.adapter.get_dev_key(3)
    # a release the old era signs before the rotation (0 and 1: 0 is leaving)
    transfer = world.lock()
    source.adapter.mine(2)
    world.follow()
    stale = world.combine(SignKind.RELEASE, transfer, [0, 1])
    release_message = dest.compute_release_message(transfer)
    assert dest.is_valid_signature(release_message, stale)

    info = run_fresh_era(cores, [1, 2, 3], threshold=2)
    confirmations = [cores[i].get_committee().finish(2, info.dealers) for i in (1, 2, 3)]
    (new_key,) = {c.group_public_key for c in confirmations}
    assert new_key != world.group_key
    # every host relays the era's RotationReady, but the host of gateway 0 (leaving)
    # lies to its enclave about the new key: one it made up, with its own secret
    made_up_secret, _ = bls.keygen()
    made_up = bls.public_key(made_up_secret)
    cores[0].get_committee().process_rotation_ready(info, made_up)
    for core in cores[1:]:
        core.get_committee().process_rotation_ready(info, new_key)
    statuses = [core.get_status() for core in cores]
    assert [(s.member, s.era, s.handover) for s in statuses] == [
        (False, 2, [1]),
        (True, 2, [1]),
        (True, 2, [1]),
        (True, 2, []),
    ]
    assert {s.group_public_key for s in statuses[1:]} == {new_key}

    def ask(core: GatewayCore, escrow: GatewayEscrow, key: bytes) -> HandoverPartial:
        request = HandoverRequest(
            chain_id=escrow.chain_id, escrow=escrow.address, new_group_key=key
        )
        return core.sign_handover(request)

    # nothing before the enclave has read the era's RotationReady in a verified block
    with pytest.raises(GatewayRefused, match="no verified RotationReady of era 2"):
        ask(cores[1], source, new_key)
    handover_world.announce(info, new_key)
    world.follow()
    # the made-up key: the enclave of 0 keeps its share for it, but the chain's era 2
    # has another key; the others never saw it ready
    with pytest.raises(GatewayRefused, match="no verified RotationReady of era 2"):
        ask(cores[0], source, made_up)
    for core in cores[1:3]:
        with pytest.raises(GatewayRefused, match="not the group key of a fresh era"):
            ask(core, source, made_up)
    with pytest.raises(GatewayRefused, match="not the group key of a fresh era"):
        ask(cores[0], source, new_key)
    with pytest.raises(GatewayRefused, match="not the group key of a fresh era"):
        ask(cores[3], source, new_key)  # no era-1 share: nothing to hand over with
    # an escrow it does not serve (another escrow on a served chain, an unnamed chain)
    deployer = source.adapter.get_dev_key(0)
    rogue = GatewayEscrow(
        source.adapter, deploy_gateway_escrow(source.adapter, deployer, world.group_key, 10)
    )
    with pytest.raises(GatewayRefused, match="not one this gateway serves"):
        ask(cores[1], rogue, new_key)
    with pytest.raises(GatewayRefused, match="not one this gateway serves"):
        cores[1].sign_handover(
            HandoverRequest(chain_id=999, escrow=source.address, new_group_key=new_key)
        )

    for position, escrow in enumerate((source, dest)):
        signed = [ask(cores[i], escrow, new_key) for i in (1, 2)]
        for partial in signed:
            assert (partial.era, partial.epoch, partial.new_group_key) == (1, 2, new_key)
            assert partial.message == escrow.compute_key_rotation_message(new_key)
            assert partial.group.group_public_key == world.group_key  # the old era's
            share = partial.group.public_shares[partial.partial.index]
            assert bls.is_valid_partial(share, partial.message, partial.partial)
        signature = bls.combine([s.partial for s in signed], 2)
        # the new era cannot sign it (the escrow checks the current, old key)
        with pytest.raises(TransactionReverted, match="invalid committee signature"):
            escrow.rotate_key(new_key, bls.sign(made_up_secret, signed[0].message), relayer)
        escrow.rotate_key(new_key, signature, relayer)
        assert escrow.get_key_epoch() == 2 and escrow.get_group_public_key() == new_key
        if position == 1:
            assert follow_through_program(cores[2], world.escrows).handover == []
        world.follow()
        if position == 0:  # one escrow rotated: the other still trusts the old key
            assert cores[1].get_status().handover == [1]
            assert cores[1].get_status().key_epochs == {str(CHAIN_A): 2, str(CHAIN_B): 1}
            with pytest.raises(GatewayRefused, match="installed this key already"):
                ask(cores[1], source, new_key)
    # both escrows rotated, as every gateway verified: the old shares are gone
    for core in cores:
        status = core.get_status()
        assert status.handover == [] and status.key_epochs == {str(CHAIN_A): 2, str(CHAIN_B): 2}
        assert core.get_committee().phases.get(1) in (EraPhase.RETIRED, None)
        assert core.get_committee().export_state().handover == []
    with pytest.raises(GatewayRefused, match="not the group key of a fresh era"):
        ask(cores[1], dest, new_key)
    # the old era's signature no longer pays; the leaver signs nothing at all
    assert not dest.is_valid_signature(release_message, stale)
    with pytest.raises(TransactionReverted, match="invalid committee signature"):
        dest.release(transfer, stale, relayer)
    with pytest.raises(CommitteeStateError):
        sign(cores[0], SignKind.RELEASE, transfer)
    # the new era (the newcomer among them) signs the same release under the new key
    world.group_key = new_key
    fresh_signature = world.combine(SignKind.RELEASE, transfer, [2, 3])
    before = dest.adapter.balance(transfer.recipient)
    dest.release(transfer, fresh_signature, relayer)
    assert dest.adapter.balance(transfer.recipient) - before == transfer.amount


def test_a_handover_never_points_back_to_an_older_era() -> None:
    """Found by attacking the handover: after an honest K1 -> K2 handover, a host replays
    era 1's RotationReady as a "fresh era 1 replacing era 2"; its enclave kept its era-2
    share for a handover bound to the retired K1 and signed rotate_key(epoch 3, K1). Now
    an era never replaces a later one, and a handover needs a later era."""
    chain_a = PAPER_ANCHORS[0].chain_id
    escrow_a, escrow_b = "0x" + "ea" * 20, "0x" + "eb" * 20
    cores = []
    for _ in range(3):
        core = GatewayCore(make_ctx())
        core.process_setup(make_setup(PAPER_ANCHORS))
        core.watch(
            Watch(
                escrows=[
                    EscrowRef(chain_id=chain_a, escrow=escrow_a),
                    EscrowRef(chain_id=PAPER_ANCHORS[1].chain_id, escrow=escrow_b),
                ]
            )
        )
        cores.append(core)
    k1 = run_genesis(cores, threshold=2)
    ids = [c.ctx.identity.identity_key for c in cores]
    info2 = EraInfo(era=2, members=ids, threshold=2, dealers=ids, previous_era=1, fresh=True)
    cards = [make_card(c.ctx) for c in cores]
    deals = [c.get_committee().process_era_elected(info2, cards, NOW) for c in cores]
    for deal in deals:
        for core in cores:
            core.get_committee().process_dealing(deal)
    (k2,) = {core.get_committee().finish(2, sorted(ids)).group_public_key for core in cores}
    for core in cores:
        core.get_committee().process_rotation_ready(info2, k2)
        core.ready_keys = {1: k1, 2: k2}  # what the light clients verified
        core.key_rotations = {chain_id: [(2, k2)] for chain_id in core.escrows}
        core.settle_handovers()
    liar = cores[0]
    back = EraInfo(era=1, members=ids, threshold=2, dealers=ids, previous_era=2, fresh=True)
    with pytest.raises(CommitteeError, match="cannot replace the later era"):
        liar.get_committee().process_rotation_ready(back, k1)
    assert liar.get_committee().current_era == 2
    with pytest.raises(GatewayRefused):
        liar.sign_handover(HandoverRequest(chain_id=chain_a, escrow=escrow_a, new_group_key=k1))
