"""Node lifecycle on a REAL anvil node: renewal, heartbeats, activity reported by the
ExecutionLedger, era closing with PODG's responsiveness rule and slashing, unbonding.

Each test deploys its own management contracts (eras count from the NodeRegistry's
deploy block) on one anvil per module, with short eras (32 blocks, 4 per slot) so a
test moves through eras by mining. Refusals are checked with a gas estimate, which
reverts before anything is mined, so they do not move the chain to another slot.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from sealbridge.chain.abi import (
    HEARTBEAT_SLOTS,
    Role,
    checksum,
    compute_address,
    compute_heartbeat_digest,
    compute_storage_node_id,
    recover_signer,
    sign_digest,
)
from sealbridge.chain.errors import ChainConfigError, TransactionReverted
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.management import (
    NOT_LEFT,
    ManagementContracts,
    OutputSubmission,
    deploy_management,
)
from sealbridge.keyservice.ecalls import SignHeartbeat
from sealbridge.keyservice.enclave import GatekeeperProgram
from sealbridge.runtime.enclave import WorkerProgram
from sealbridge.tee.enclave import EnclaveContext
from tests.integration.test_chain_contracts import MEASUREMENT, MIN_STAKE, Enclave, World

ERA_LENGTH = 32
UNBONDING = 20
GRACE = 600
SLASH_BPS = 1000


class Life(World):
    """The contract tests' World, deployed with short eras; nodes are Enclaves (a storage
    node's Enclave holds its signing key as ``enclave_key``)."""

    def __init__(self, adapter: ChainAdapter, **params: Any) -> None:
        self.adapter = adapter
        self.admin = adapter.dev_keys[0]
        self.host = adapter.dev_keys[1]
        self.user = adapter.dev_keys[2]
        self.other = adapter.dev_keys[3]
        settings = {
            "era_length": ERA_LENGTH,
            "unbonding_blocks": UNBONDING,
            "renewal_grace": GRACE,
            "slash_bps": SLASH_BPS,
        }
        settings.update(params)
        self.addresses = deploy_management(adapter, self.admin, MIN_STAKE, **settings)
        self.m = ManagementContracts(adapter, self.addresses)
        self.reg = self.m.node_registry
        self.params = self.reg.get_era_params()
        self.gatekeeper = self.genesis_gatekeeper()

    def genesis_gatekeeper(self) -> Enclave:
        gk = Enclave()  # registered for long: the renewal tests move the clock by hours
        self.reg.register_genesis_gatekeeper(
            gk.node_id,
            gk.encryption_key,
            gk.address,
            MEASUREMENT,
            self.expiry(30 * 24 * 3600),
            gk.quote,
            self.admin,
        )
        return gk

    def storage(self) -> Enclave:
        key = os.urandom(32)
        node_id = self.reg.register_storage(key, self.expiry(), self.host, stake=MIN_STAKE)
        assert node_id == compute_storage_node_id(compute_address(key))
        return Enclave(node_id=node_id, enclave_key=key)

    def storage_batch(self, count: int) -> list[Enclave]:
        """``count`` storage nodes registered in a few blocks (50 transactions each)."""
        keys = [os.urandom(32) for _ in range(count)]
        owner = self.adapter.address_of(self.host)
        expiry = self.expiry()
        fn = self.reg.codec.function("register_storage")
        hashes = []
        self.adapter.set_automine(False)
        try:
            for i, key in enumerate(keys):
                signer = compute_address(key)
                node_id = compute_storage_node_id(signer)
                digest = self.reg.compute_storage_registration_digest(node_id, owner, expiry)
                data = fn.encode_call([node_id, signer, expiry, sign_digest(digest, key)])
                hashes.append(
                    self.adapter.send_transaction(
                        self.host, to=self.reg.address, data=data, value=MIN_STAKE, gas=400_000
                    )
                )
                if i % 50 == 49:
                    self.adapter.mine(1)
            self.adapter.mine(1)
        finally:
            self.adapter.set_automine(True)
        for tx_hash in hashes:
            self.adapter.wait_for_receipt(tx_hash)
        return [
            Enclave(node_id=compute_storage_node_id(compute_address(k)), enclave_key=k)
            for k in keys
        ]

    def tip(self) -> int:
        return self.adapter.get_block_number()

    def goto(self, era: int, slot: int = 0) -> None:
        """Mine until the next block is in ``slot`` of ``era``."""
        offset = -(-slot * self.params.era_length // HEARTBEAT_SLOTS)  # first block of the slot
        first = self.params.get_era_start(era) + offset
        tip = self.tip()
        if tip + 1 > first:
            assert (self.params.get_era(tip + 1), self.params.get_slot(tip + 1)) == (era, slot)
            return
        while first - 1 > tip:  # in chunks: anvil mines ~100 empty blocks a second
            step = min(first - 1 - tip, 200)
            self.adapter.mine(step)
            tip += step

    def signed(self, node: Enclave, era: int, slot: int) -> bytes:
        return node.sign(self.reg.compute_heartbeat_digest(node.node_id, era, slot))

    def beat(
        self, node: Enclave, era: int, slot: int, *, signer: Enclave | None = None
    ) -> TxReceipt:
        """One heartbeat, mined in the next block."""
        signature = (signer or node).sign(
            self.reg.compute_heartbeat_digest(node.node_id, era, slot)
        )
        return self.reg.heartbeat(node.node_id, era, slot, signature, self.host)

    def refused_beat(
        self,
        node: Enclave,
        era: int,
        slot: int,
        *,
        signer: Enclave | None = None,
        signature: bytes | None = None,
    ) -> None:
        """A heartbeat expected to be refused: sent with a gas estimate, so the refusal
        comes at the estimate and no block is mined (the slot does not move)."""
        if signature is None:
            digest = self.reg.compute_heartbeat_digest(node.node_id, era, slot)
            signature = (signer or node).sign(digest)
        data = self.reg.codec.function("heartbeat").encode_call(
            [node.node_id, era, slot, signature]
        )
        self.adapter.transact(self.host, to=self.reg.address, data=data)

    def beats(self, nodes: list[Enclave], era: int, slot: int) -> None:
        """Heartbeats of ``nodes`` for ``slot`` of ``era``, mined together in one block."""
        self.goto(era, slot)
        if not nodes:
            return
        self.adapter.set_automine(False)
        try:
            hashes = [
                self.reg.send_heartbeat(n.node_id, era, slot, self.signed(n, era, slot), self.host)
                for n in nodes
            ]
            self.adapter.mine(1)
        finally:
            self.adapter.set_automine(True)
        for tx_hash in hashes:
            self.adapter.wait_for_receipt(tx_hash)

    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        out = []
        for log in receipt.logs:
            event = self.reg.codec.events.get(log.topics[0])
            if log.address == self.reg.address and event is not None and event.name == name:
                out.append(event.decode(log.topics, log.data))
        return out


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode(chain_id=31337)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def life(anvil: AnvilNode) -> Life:
    return Life(anvil.adapter())


def reason(exc: pytest.ExceptionInfo[TransactionReverted]) -> str:
    return exc.value.reason


# ----------------------------------------------------------------------------- deployment


def test_deploy_parameters_and_reporter(life: Life) -> None:
    reg = life.reg
    assert life.params.era_length == ERA_LENGTH
    assert life.params.genesis_block == life.addresses.deployed_at_block
    assert reg.get_slash_bps() == SLASH_BPS
    assert reg.get_unbonding_blocks() == UNBONDING
    assert reg.get_renewal_grace() == GRACE
    assert reg.get_reporter() == life.addresses.execution_ledger
    assert reg.get_next_era() == 0 and reg.get_slashed_total() == 0
    assert reg.get_node_ids() == [life.gatekeeper.node_id]
    tenure = reg.get_tenure(life.gatekeeper.node_id)
    assert (tenure.joined_era, tenure.left_era, tenure.unbond_at, tenure.listed) == (
        0,
        NOT_LEFT,
        0,
        True,
    )
    assert not reg.get_tenure(os.urandom(32)).listed  # unknown: all zero
    assert reg.get_tenure(os.urandom(32)).unbond_at == 0
    tip = life.tip()
    assert reg.get_current_era() == life.params.get_era(tip)
    assert reg.get_current_slot() == life.params.get_slot(tip)
    for key, expected in [(life.admin, "reporter already set"), (life.host, "only admin")]:
        with pytest.raises(TransactionReverted) as info:
            reg.set_reporter(compute_address(os.urandom(32)), key)
        assert reason(info) == expected
    with pytest.raises(TransactionReverted) as info:
        life.adapter.transact(
            life.host,
            to=reg.address,
            data=reg.codec.function("record_activity").encode_call([life.gatekeeper.node_id]),
        )
    assert reason(info) == "only the reporter"
    for bad in [{"era_length": 7}, {"slash_bps": 10_001}, {"unbonding_blocks": -1}]:
        with pytest.raises(ChainConfigError):
            deploy_management(life.adapter, life.admin, MIN_STAKE, **bad)


# ----------------------------------------------------------------------------- heartbeats


def test_heartbeats_count_once_per_slot_in_the_current_era(life: Life) -> None:
    worker = life.register(Role.WORKER)
    fresh = life.register(Role.WORKER)
    expired = life.register(Role.WORKER, expiry=life.expiry(30))
    era = life.params.get_era(life.tip() + 1) + 1
    life.goto(era, 2)
    receipt = life.beat(worker, era, 2)
    assert life.events(receipt, "Heartbeat") == [{"node_id": worker.node_id, "era": era, "slot": 2}]
    life.beat(worker, era, 1)  # the slot before still counts (a heartbeat mined late)
    assert life.reg.get_activity(era, worker.node_id) == 2
    assert life.reg.get_heartbeat_slots(era, worker.node_id) == 0b110
    life.adapter.increase_time(60)  # mines a block
    assert life.params.get_slot(life.tip() + 1) == 2
    cases: list[tuple[str, Enclave, int, int, Enclave | None]] = [
        ("heartbeat already counted", worker, era, 2, None),  # replayed
        ("slot in the future", worker, era, 3, None),
        ("slot too old", worker, era, 0, None),
        ("not the current era", worker, era - 1, 7, None),
        ("not the current era", worker, era + 1, 0, None),
        ("not signed by the node", fresh, era, 2, life.gatekeeper),  # another key
        ("node is not active", Enclave(), era, 2, None),  # never registered
        ("node is not active", expired, era, 2, None),
    ]
    for expected, node, e, slot, signer in cases:
        with pytest.raises(TransactionReverted) as info:
            life.refused_beat(node, e, slot, signer=signer)
        assert reason(info) == expected, expected
    with pytest.raises(TransactionReverted) as info:
        life.refused_beat(worker, era, HEARTBEAT_SLOTS, signature=b"\x00" * 65)
    assert reason(info) == "no such slot"
    # Python refuses to even build the digest of a slot that does not exist
    with pytest.raises(ChainConfigError):
        life.reg.compute_heartbeat_digest(worker.node_id, era, HEARTBEAT_SLOTS)
    assert life.reg.get_activity(era, worker.node_id) == 2
    assert life.reg.get_activity(era, fresh.node_id) == 0


def test_a_storage_node_beats_with_its_signing_key(life: Life) -> None:
    node = life.storage()
    era = life.params.get_era(life.tip() + 1) + 1
    life.beats([node], era, 0)
    assert life.reg.get_activity(era, node.node_id) == 1


def test_the_enclaves_sign_heartbeats_the_registry_accepts(life: Life) -> None:
    """The worker enclave's sign_heartbeat ECALL: digest built inside, own node id."""
    ctx = EnclaveContext(
        program="tests:Worker", measurement=bytes(32), platform_private_key=bytes([9]) * 32
    )
    program = WorkerProgram(ctx)
    keys = ctx.identity
    node = Enclave(node_id=keys.identity_key, encryption_key=keys.encryption_key)
    expiry = life.expiry()
    digest = life.reg.compute_registration_digest(
        role=Role.WORKER,
        identity_key=node.node_id,
        encryption_key=node.encryption_key,
        enclave_address="0x" + keys.eth_address.hex(),
        quote_hash=keccak(node.quote),
        measurement=MEASUREMENT,
        expiry=expiry,
    )
    life.reg.register(
        Role.WORKER,
        node.node_id,
        node.encryption_key,
        "0x" + keys.eth_address.hex(),
        MEASUREMENT,
        expiry,
        life.gatekeeper.node_id,
        life.gatekeeper.sign(digest),
        node.quote,
        life.host,
        stake=MIN_STAKE,
    )
    era = life.params.get_era(life.tip() + 1) + 1
    life.goto(era, 0)
    request = SignHeartbeat(
        registry=life.reg.address, chain_id=life.adapter.chain_id, era=era, slot=0
    )
    signed = program.sign_heartbeat(request)
    assert signed.node_id == keys.identity_key and (signed.era, signed.slot) == (era, 0)
    life.reg.heartbeat(signed.node_id, era, 0, signed.signature, life.host)
    assert life.reg.get_activity(era, node.node_id) == 1
    for bad in [
        msgspec.structs.replace(request, slot=HEARTBEAT_SLOTS),
        msgspec.structs.replace(request, slot=-1),
        msgspec.structs.replace(request, era=-1),
        msgspec.structs.replace(request, chain_id=0),
        msgspec.structs.replace(request, registry="not an address"),
    ]:
        with pytest.raises(ChainConfigError):
            program.sign_heartbeat(bad)
    # the gatekeeper enclave has the same ECALL, over its own node id
    gk_ctx = EnclaveContext(
        program="tests:Gatekeeper", measurement=bytes(32), platform_private_key=bytes([9]) * 32
    )
    gk_signed = GatekeeperProgram(gk_ctx).sign_heartbeat(request)
    assert gk_signed.node_id == gk_ctx.identity.identity_key
    digest = compute_heartbeat_digest(
        registry=life.reg.address,
        chain_id=life.adapter.chain_id,
        node_id=gk_signed.node_id,
        era=era,
        slot=0,
    )
    assert recover_signer(digest, gk_signed.signature) == checksum(gk_ctx.identity.eth_address)


# ----------------------------------------------------------------------------- ledger activity


def _submission(
    life: Life, worker: Enclave, cid: bytes, start: int, **extra: Any
) -> OutputSubmission:
    life.adapter.mine(1)
    end = life.tip() - 1
    draft = OutputSubmission(
        contract_ids=[cid],
        starts=[start],
        end=end,
        end_hash=life.adapter.get_block(end).hash,
        state_roots=[keccak(b"root" + cid)],
        commands_applied=[1],
        node_id=worker.node_id,
        **extra,
    )
    digest = life.m.execution_ledger.compute_execution_digest(draft)
    return msgspec.structs.replace(draft, signature=worker.sign(digest))


def test_the_ledger_reports_accepted_outputs_and_storage_confirmations(life: Life) -> None:
    ledger = life.m.execution_ledger
    nodes = sorted((life.storage() for _ in range(3)), key=lambda n: n.node_id)
    worker = life.register(Role.WORKER)
    cid = life.deploy([worker])
    blob = os.urandom(100)
    digest = ledger.compute_storage_digest(keccak(blob), len(blob))
    confirming = nodes[:2]
    submission = _submission(
        life,
        worker,
        cid,
        0,
        checkpoint_hash=keccak(blob),
        checkpoint_size=len(blob),
        storage_ids=[n.node_id for n in confirming],
        storage_sigs=[n.sign(digest) for n in confirming],
    )
    receipt = ledger.submit(submission, life.host)
    era = life.params.get_era(receipt.block_number)
    assert life.reg.get_activity(era, worker.node_id) == 1
    assert [life.reg.get_activity(era, n.node_id) for n in nodes] == [1, 1, 0]
    assert life.reg.get_heartbeat_slots(era, worker.node_id) == 0  # not a heartbeat
    # a refused submission reports nothing
    with pytest.raises(TransactionReverted):
        ledger.submit(_submission(life, worker, cid, 0), life.host)
    assert life.reg.get_activity(era, worker.node_id) == 1


def test_activity_is_capped_at_four_times_the_slots(anvil: AnvilNode) -> None:
    """A node cannot pile up activity to push the others under a quarter of it."""
    life = Life(anvil.adapter(), era_length=256)
    worker = life.register(Role.WORKER)
    cid = life.deploy([worker])
    ledger = life.m.execution_ledger
    start = 0
    era = life.params.get_era(life.tip())
    for _ in range(34):
        submission = _submission(life, worker, cid, start)
        ledger.submit(submission, life.host)
        start = submission.end
    assert life.params.get_era(life.tip()) == era
    assert life.reg.get_activity(era, worker.node_id) == 4 * HEARTBEAT_SLOTS


# ----------------------------------------------------------------------------- closing eras


def test_close_era_slashes_the_unresponsive_of_each_role(life: Life) -> None:
    """Era 1: gatekeepers 8 / 6 (exactly 3/4: kept) / 5; workers 8 / 2 (exactly 1/4: kept)
    / 1; storage 4 / 1 (exactly 1/4) / 0. A worker joining in era 1 is not judged."""
    reg = life.reg
    gk8 = life.gatekeeper
    gk6 = life.register(Role.GATEKEEPER)
    gk5 = life.register(Role.GATEKEEPER)
    w8, w2, w1 = (life.register(Role.WORKER) for _ in range(3))
    s4, s1, s0 = (life.storage() for _ in range(3))
    assert life.params.get_era(life.tip()) == 0
    plan = [(gk8, 8), (gk6, 6), (gk5, 5), (w8, 8), (w2, 2), (w1, 1), (s4, 4), (s1, 1), (s0, 0)]
    life.goto(1, 0)
    late = life.register(Role.WORKER)  # joins during era 1: judged from era 2 on
    for slot in range(HEARTBEAT_SLOTS):
        life.beats([n for n, count in plan if count > slot], 1, slot)
    assert [reg.get_activity(1, n.node_id) for n, _ in plan] == [c for _, c in plan]
    count_before = reg.get_node_count()
    life.goto(2, 0)
    with pytest.raises(TransactionReverted) as info:
        reg.close_era(1, life.user)
    assert reason(info) == "eras close in order"
    receipt = reg.close_era(0, life.user)  # everyone joined in era 0: nobody judged
    (closed,) = life.events(receipt, "EraClosed")
    assert (closed["era"], closed["judged"], closed["slashed"]) == (0, 0, 0)
    stakes = {n.node_id: _stake(life, n) for n, _ in plan}
    receipt = reg.close_era(1, life.user)
    cut = MIN_STAKE * SLASH_BPS // 10_000
    (closed,) = life.events(receipt, "EraClosed")
    assert closed == {
        "era": 1,
        "judged": 9,
        "slashed": 3,
        "amount": 3 * cut,
        "max_gatekeeper": 8,
        "max_worker": 8,
        "max_storage": 4,
        "max_gateway": 0,
    }
    slashed = {e["node_id"]: e for e in life.events(receipt, "NodeSlashed")}
    assert set(slashed) == {gk5.node_id, w1.node_id, s0.node_id}
    assert [
        (e["era"], e["activity"], e["max_activity"], e["amount"]) for e in slashed.values()
    ] == [
        (1, 5, 8, cut),
        (1, 1, 8, cut),
        (1, 0, 4, cut),
    ]
    for node, _ in plan:
        record = reg.get_node(node.node_id)
        assert record is not None
        hit = node.node_id in slashed
        assert record.stake == stakes[node.node_id] - (cut if hit else 0)
        assert record.active is not hit
        assert reg.get_tenure(node.node_id).left_era == (2 if hit else NOT_LEFT)
    assert reg.get_slashed_total() == 3 * cut
    assert life.adapter.balance(reg.address) == sum(stakes.values()) + MIN_STAKE  # + late
    assert reg.get_node_count() == count_before - 3
    assert reg.get_next_era() == 2
    with pytest.raises(TransactionReverted) as info:
        reg.close_era(1, life.user)
    assert reason(info) == "eras close in order"
    with pytest.raises(TransactionReverted) as info:
        reg.close_era(2, life.user)
    assert reason(info) == "era is not over"
    # a slashed node is out: no heartbeat, not judged again, must register anew
    with pytest.raises(TransactionReverted) as info:
        life.refused_beat(w1, 2, 0)
    assert reason(info) == "node is not active"
    assert not reg.is_active(w1.node_id, Role.WORKER)
    # era 2: nobody beats, so no role has a maximum and nobody is judged unresponsive
    life.goto(3, 0)
    life.adapter.mine(1)  # the estimate runs at the newest block: it must be in era 3
    receipt = reg.close_era(2, life.user)
    (closed,) = life.events(receipt, "EraClosed")
    assert (closed["judged"], closed["slashed"]) == (7, 0)  # the 6 kept + the late worker
    assert reg.is_active(late.node_id, Role.WORKER)


def _stake(life: Life, node: Enclave) -> int:
    record = life.reg.get_node(node.node_id)
    assert record is not None
    return record.stake


def test_unregistering_does_not_dodge_the_judgment_of_earlier_eras(life: Life) -> None:
    reg = life.reg
    busy, idle = life.register(Role.WORKER), life.register(Role.WORKER)
    for slot in range(HEARTBEAT_SLOTS):
        life.beats([busy], 1, slot)
    life.goto(2, 0)
    with pytest.raises(TransactionReverted) as info:
        reg.unregister(idle.node_id, life.other)
    assert reason(info) == "only the owner"
    receipt = reg.unregister(idle.node_id, life.host)  # in era 2: era 1 is still judged
    unbond_at = life.params.get_era_start(3) + UNBONDING
    assert life.events(receipt, "NodeUnregistered") == [
        {"node_id": idle.node_id, "era": 2, "unbond_at": unbond_at}
    ]
    assert not reg.is_active(idle.node_id, Role.WORKER)
    with pytest.raises(TransactionReverted) as info:
        reg.unregister(idle.node_id, life.host)
    assert reason(info) == "node is not active"
    with pytest.raises(TransactionReverted) as info:
        life.register(Role.WORKER, node=idle)  # would restart its tenure before era 1 is judged
    assert reason(info) == "previous eras not closed yet"
    with pytest.raises(TransactionReverted) as info:
        reg.withdraw_stake(idle.node_id, life.host)
    assert reason(info) == "stake is unbonding"
    life.goto(3, 0)
    life.adapter.mine(UNBONDING + 1)
    with pytest.raises(TransactionReverted) as info:  # eras 0 and 1 are not closed yet
        reg.withdraw_stake(idle.node_id, life.host)
    assert reason(info) == "eras of the node not closed yet"
    reg.close_era(0, life.user)
    receipt = reg.close_era(1, life.user)
    (event,) = life.events(receipt, "NodeSlashed")
    assert event["node_id"] == idle.node_id and event["era"] == 1
    tenure = reg.get_tenure(idle.node_id)
    assert tenure.left_era == 2 and tenure.unbond_at == unbond_at  # left already
    with pytest.raises(TransactionReverted) as info:
        reg.withdraw_stake(idle.node_id, life.other)
    assert reason(info) == "only the owner"
    with pytest.raises(TransactionReverted) as info:
        reg.withdraw_stake(busy.node_id, life.host)
    assert reason(info) == "node is active"
    held = life.adapter.balance(reg.address)
    receipt = reg.withdraw_stake(idle.node_id, life.host)  # era 2 need not be closed
    left = MIN_STAKE - MIN_STAKE * SLASH_BPS // 10_000
    owner = life.adapter.address_of(life.host)
    assert life.events(receipt, "StakeWithdrawn") == [
        {"node_id": idle.node_id, "owner": owner, "amount": left}
    ]
    assert life.adapter.balance(reg.address) == held - left
    assert _stake(life, idle) == 0
    assert idle.node_id not in reg.get_node_ids() and not reg.get_tenure(idle.node_id).listed
    with pytest.raises(TransactionReverted) as info:
        reg.withdraw_stake(idle.node_id, life.host)
    assert reason(info) == "nothing to withdraw"
    life.register(Role.WORKER, node=idle)  # a fresh start is allowed now
    tenure = reg.get_tenure(idle.node_id)
    assert (tenure.joined_era, tenure.left_era, tenure.listed) == (3, NOT_LEFT, True)
    assert _stake(life, idle) == MIN_STAKE


def test_a_remaining_stake_stays_with_its_owner(life: Life) -> None:
    """Re-registering a node id does not hand the stake left in it to another account."""
    node = life.register(Role.WORKER)
    life.reg.unregister(node.node_id, life.host)
    expiry = life.expiry()
    approval = life.approval(life.gatekeeper, node, Role.WORKER, expiry)
    with pytest.raises(TransactionReverted) as info:
        life.reg.register(
            Role.WORKER,
            node.node_id,
            node.encryption_key,
            node.address,
            MEASUREMENT,
            expiry,
            life.gatekeeper.node_id,
            approval,
            node.quote,
            life.other,
            stake=MIN_STAKE,
        )
    assert reason(info) == "node owned by another account"
    life.register(Role.WORKER, node=node)  # its owner may (left in era 0: nothing to judge)
    assert _stake(life, node) == 2 * MIN_STAKE


def test_withdraw_slashed_is_for_the_admin(life: Life) -> None:
    reg = life.reg
    busy, idle = life.register(Role.WORKER), life.register(Role.WORKER)
    for slot in range(HEARTBEAT_SLOTS):
        life.beats([busy], 1, slot)
    life.goto(2, 0)
    reg.close_era(0, life.user)
    reg.close_era(1, life.user)
    pool = reg.get_slashed_total()
    assert pool == MIN_STAKE * SLASH_BPS // 10_000
    assert not reg.is_active(idle.node_id, Role.WORKER)
    to = compute_address(os.urandom(32))
    with pytest.raises(TransactionReverted) as info:
        reg.withdraw_slashed(to, life.host)
    assert reason(info) == "only admin"
    receipt = reg.withdraw_slashed(to, life.admin)
    assert life.events(receipt, "SlashedWithdrawn") == [{"to": to, "amount": pool}]
    assert life.adapter.balance(to) == pool and reg.get_slashed_total() == 0


# ----------------------------------------------------------------------------- renewal


def _renew(life: Life, node: Enclave, expiry: int, **kw: Any) -> TxReceipt:
    """Renew ``node`` over fresh keys (or the ``renewed`` stand-in given); on success,
    ``node`` takes the new keys (what the enclave's key switch does)."""
    attestor: Enclave = kw.pop("attestor", life.gatekeeper)
    sender: bytes = kw.pop("sender", life.host)
    quote = kw.pop("quote", b"quote:" + os.urandom(64))
    role = kw.pop("role", Role.WORKER)
    renewed: Enclave = kw.pop("renewed", None) or Enclave(node_id=node.node_id, quote=quote)
    approval = kw.pop("approval", None)
    if approval is None:
        approval = life.approval(attestor, renewed, role, expiry)
    receipt = life.reg.renew(
        node.node_id,
        renewed.encryption_key,
        renewed.address,
        expiry,
        MEASUREMENT,
        attestor.node_id,
        approval,
        renewed.quote,
        sender,
        **kw,
    )
    node.encryption_key, node.enclave_key, node.quote = (
        renewed.encryption_key,
        renewed.enclave_key,
        renewed.quote,
    )
    return receipt


def _same_keys(node: Enclave, *, encryption: bool = False, address: bool = False) -> Enclave:
    """A renewal stand-in that keeps the node's keys: both, or only the flagged one."""
    fresh = Enclave(node_id=node.node_id)
    return Enclave(
        node_id=node.node_id,
        encryption_key=fresh.encryption_key if address else node.encryption_key,
        enclave_key=fresh.enclave_key if encryption else node.enclave_key,
    )


def test_renewal_before_and_after_expiry(life: Life) -> None:
    reg = life.reg
    node = life.register(Role.WORKER, expiry=life.expiry(100))
    joined = reg.get_tenure(node.node_id).joined_era
    later = life.expiry(3600)
    quote = b"quote:" + os.urandom(64)
    retired = Enclave(
        node_id=node.node_id, encryption_key=node.encryption_key, enclave_key=node.enclave_key
    )
    receipt = _renew(life, node, later, quote=quote)
    (event,) = life.events(receipt, "NodeRenewed")
    assert event["expiry"] == later and event["quote"] == quote
    assert event["quote_hash"] == keccak(quote)
    assert event["encryption_key"] == node.encryption_key != retired.encryption_key
    assert event["enclave_address"] == node.address != retired.address
    record = reg.get_node(node.node_id)
    assert record is not None and record.expiry == later and record.quote_hash == keccak(quote)
    assert (record.encryption_key, record.enclave_address) == (node.encryption_key, node.address)
    assert reg.get_tenure(node.node_id).joined_era == joined
    # the retired keys count no more: the registry names the new enclave address, and
    # they can never come back, by renewal or by registration
    assert reg.get_enclave_address(node.node_id) == node.address
    assert reg.is_key_retired(node.node_id, retired.encryption_key)
    assert reg.is_key_retired(node.node_id, bytes.fromhex(retired.address[2:]))
    assert not reg.is_key_retired(node.node_id, node.encryption_key)
    current = Enclave(
        node_id=node.node_id, encryption_key=node.encryption_key, enclave_key=node.enclave_key
    )
    for back in (
        retired,
        Enclave(node_id=node.node_id, encryption_key=retired.encryption_key),
        Enclave(node_id=node.node_id, enclave_key=retired.enclave_key),
    ):
        with pytest.raises(TransactionReverted) as info:
            _renew(life, node, later + 5, renewed=back)
        assert reason(info) == "node keys were retired"
    assert reg.get_enclave_address(node.node_id) == current.address
    # refusals
    stranger = Enclave()
    cases: list[tuple[str, dict[str, Any]]] = [
        ("only the owner", {"sender": life.other}),
        ("expiry not later", {"expiry": later}),
        ("approval not signed by attestor", {"approval": stranger.sign(b"\x01" * 32)}),
        ("approval not signed by attestor", {"role": Role.GATEKEEPER}),  # other digest
        ("attestor is not an active gatekeeper", {"attestor": stranger}),
        ("invalid approval signature", {"approval": b"\x00" * 65}),
        ("quote hash mismatch", {"quote_hash": b"\x09" * 32}),
        # PODG's rule: a renewal names fresh keys, both of them
        ("renewal needs fresh node keys", {"renewed": _same_keys(node)}),
        ("renewal needs fresh node keys", {"renewed": _same_keys(node, encryption=True)}),
        ("renewal needs fresh node keys", {"renewed": _same_keys(node, address=True)}),
        (
            "empty encryption key",
            {"renewed": Enclave(node_id=node.node_id, encryption_key=bytes(32))},
        ),
    ]
    for expected, kw in cases:
        expiry = kw.pop("expiry", later + 10)
        before = reg.get_node(node.node_id)
        with pytest.raises(TransactionReverted) as info:
            _renew(life, node, expiry, **kw)
        assert reason(info) == expected, expected
        assert reg.get_node(node.node_id) == before
    # expired but within the grace period: renewal brings it back
    life.adapter.increase_time(3600 + 10)
    assert not reg.is_active(node.node_id, Role.WORKER)
    _renew(life, node, life.expiry(3600))
    assert reg.is_active(node.node_id, Role.WORKER)
    # past the grace period: registration lapsed, register again (tenure kept)
    life.adapter.increase_time(3600 + GRACE + 10)
    with pytest.raises(TransactionReverted) as info:
        _renew(life, node, life.expiry(3600))
    assert reason(info) == "registration lapsed"
    with pytest.raises(TransactionReverted) as info:  # not with keys a renewal retired
        life.register(Role.WORKER, node=retired)
    assert reason(info) == "node keys were retired"
    life.register(Role.WORKER, node=node)
    assert reg.is_active(node.node_id, Role.WORKER)
    assert reg.get_tenure(node.node_id).joined_era == joined
    # an unregistered node cannot renew
    reg.unregister(node.node_id, life.host)
    with pytest.raises(TransactionReverted) as info:
        _renew(life, node, life.expiry(7200))
    assert reason(info) == "node is not active"


def test_gatekeepers_and_storage_nodes_renew(life: Life) -> None:
    reg = life.reg
    gk = life.gatekeeper
    # the lone gatekeeper's enclave approves its own renewal; its owner is the admin
    later = life.expiry(60 * 24 * 3600)
    with pytest.raises(TransactionReverted) as info:
        _renew(life, gk, later, role=Role.GATEKEEPER)
    assert reason(info) == "only the owner"
    _renew(life, gk, later, role=Role.GATEKEEPER, sender=life.admin, attestor=gk)
    assert reg.get_node(gk.node_id).expiry == later  # type: ignore[union-attr]
    storage = life.storage()
    with pytest.raises(TransactionReverted) as info:
        _renew(life, storage, life.expiry(7200), role=Role.STORAGE)
    assert reason(info) == "storage nodes renew with renew_storage"
    later = life.expiry(7200)
    receipt = reg.renew_storage(storage.enclave_key, later, life.host)
    assert life.events(receipt, "NodeRenewed")[0]["expiry"] == later
    assert reg.get_node(storage.node_id).expiry == later  # type: ignore[union-attr]
    stranger = os.urandom(32)
    digest = reg.compute_storage_registration_digest(
        storage.node_id, life.adapter.address_of(life.host), later + 5
    )
    data = reg.codec.function("renew_storage").encode_call(
        [storage.node_id, later + 5, sign_digest(digest, stranger)]
    )
    with pytest.raises(TransactionReverted) as info:
        life.adapter.transact(life.host, to=reg.address, data=data)
    assert reason(info) == "proof not signed by the storage key"
    worker = life.register(Role.WORKER)
    data = reg.codec.function("renew_storage").encode_call(
        [worker.node_id, later, sign_digest(digest, stranger)]
    )
    with pytest.raises(TransactionReverted) as info:
        life.adapter.transact(life.host, to=reg.address, data=data)
    assert reason(info) == "not a storage node"
    with pytest.raises(TransactionReverted) as info:
        reg.renew_storage(storage.enclave_key, later + 5, life.other)
    assert reason(info) == "only the owner"


# ----------------------------------------------------------------------------- capacity and gas


def test_a_full_registry_still_closes_its_eras(anvil: AnvilNode) -> None:
    """256 listed nodes (the most): the 257th is refused, and closing an era that judges
    all of them, slashing all but one, fits in a block. Prints the gas figures."""
    life = Life(anvil.adapter(), era_length=64)
    reg = life.reg
    nodes = life.storage_batch(255)
    assert len(reg.get_node_ids()) == 256
    with pytest.raises(TransactionReverted) as info:
        life.storage()
    assert reason(info) == "registry full"
    assert life.params.get_era(life.tip()) == 0
    gas_first = gas_next = 0  # one node beats in every slot of era 1; the rest stay silent
    for slot in range(HEARTBEAT_SLOTS):
        life.goto(1, slot)
        receipt = life.beat(nodes[0], 1, slot)
        if slot == 0:
            gas_first = receipt.gas_used
        gas_next = receipt.gas_used
    life.goto(2, 0)
    quiet = reg.close_era(0, life.user)  # nobody judged: every node joined in era 0
    busy = reg.close_era(1, life.user)
    (closed,) = life.events(busy, "EraClosed")
    assert closed["judged"] == 256 and closed["slashed"] == 254  # all silent storage nodes
    print(
        f"\nheartbeat gas: first of the era {gas_first}, later {gas_next}; close_era with 256 "
        f"listed: none judged {quiet.gas_used}, 256 judged / 254 slashed {busy.gas_used}"
    )
    assert busy.gas_used < 15_000_000
    # a withdrawal frees a place in the list
    node = nodes[1]
    life.goto(3, 0)
    life.adapter.mine(UNBONDING + 1)
    assert not reg.get_node(node.node_id).active  # type: ignore[union-attr]
    reg.withdraw_stake(node.node_id, life.host)
    assert len(reg.get_node_ids()) == 255
    life.storage()
