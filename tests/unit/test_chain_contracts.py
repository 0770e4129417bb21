"""Management contracts, adapter and follower against a REAL anvil node (and a smoke
run of the same flows on the in-process py-evm backend).

Anvil is required: if the binary is missing, the module fixture raises AnvilNotFound and
every test here fails with that message (nothing is skipped).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sealbridge.chain.abi import Role, compute_address, recover_signer, sign_digest
from sealbridge.chain.adapter import ChainAdapter
from sealbridge.chain.anvil import AnvilNode
from sealbridge.chain.errors import ChainConfigError, ReorgDetected, TransactionReverted
from sealbridge.chain.follower import BlockFollower, ObservedBlock
from sealbridge.chain.management import (
    ManagementAddresses,
    ManagementContracts,
    deploy_management,
)
from sealbridge.core.ids import keccak

MIN_STAKE = 10**15
MEASUREMENT = b"\x07" * 32


@dataclass
class Enclave:
    """A stand-in for a TEE node: identity, encryption key, enclave signing key."""

    node_id: bytes = field(default_factory=lambda: os.urandom(32))
    encryption_key: bytes = field(default_factory=lambda: os.urandom(32))
    enclave_key: bytes = field(default_factory=lambda: os.urandom(32))
    quote: bytes = field(default_factory=lambda: b"quote:" + os.urandom(64))

    @property
    def address(self) -> str:
        return compute_address(self.enclave_key)

    def sign(self, digest: bytes) -> bytes:
        return sign_digest(digest, self.enclave_key)


class World:
    def __init__(self, adapter: ChainAdapter) -> None:
        self.adapter = adapter
        self.admin = adapter.dev_keys[0]
        self.host = adapter.dev_keys[1]
        self.user = adapter.dev_keys[2]
        self.addresses = deploy_management(adapter, self.admin, MIN_STAKE)
        self.m = ManagementContracts(adapter, self.addresses)
        self.gatekeeper = self.genesis_gatekeeper()

    def expiry(self, delta: int = 3600) -> int:
        return self.adapter.get_block("latest").timestamp + delta

    def genesis_gatekeeper(self) -> Enclave:
        gk = Enclave()
        self.m.node_registry.register_genesis_gatekeeper(
            gk.node_id,
            gk.encryption_key,
            gk.address,
            MEASUREMENT,
            self.expiry(),
            gk.quote,
            self.admin,
        )
        return gk

    def approval(
        self,
        attestor: Enclave,
        node: Enclave,
        role: int,
        expiry: int,
        quote_hash: bytes | None = None,
    ) -> bytes:
        digest = self.m.node_registry.compute_registration_digest(
            role=role,
            identity_key=node.node_id,
            encryption_key=node.encryption_key,
            enclave_address=node.address,
            quote_hash=quote_hash if quote_hash is not None else keccak(node.quote),
            measurement=MEASUREMENT,
            expiry=expiry,
        )
        return attestor.sign(digest)

    def register(
        self,
        role: int,
        *,
        attestor: Enclave | None = None,
        node: Enclave | None = None,
        expiry: int | None = None,
        approval: bytes | None = None,
        stake: int = MIN_STAKE,
        quote_hash: bytes | None = None,
    ) -> Enclave:
        attestor = attestor or self.gatekeeper
        node = node or Enclave()
        expiry = expiry if expiry is not None else self.expiry()
        if approval is None:
            approval = self.approval(attestor, node, role, expiry, quote_hash)
        self.m.node_registry.register(
            role,
            node.node_id,
            node.encryption_key,
            node.address,
            MEASUREMENT,
            expiry,
            attestor.node_id,
            approval,
            node.quote,
            self.host,
            stake=stake,
            quote_hash=quote_hash,
        )
        return node

    def deploy(
        self, workers: list[Enclave], *, gatekeeper: Enclave | None = None, publish: bool = True
    ) -> bytes:
        gk = gatekeeper or self.gatekeeper
        cid = os.urandom(32)
        self.m.contract_registry.deploy(
            cid, keccak(b"code"), gk.node_id, [w.node_id for w in workers], b"\x11" * 32, self.user
        )
        if publish:
            self.publish(cid, gk)
        return cid

    def publish(self, cid: bytes, gk: Enclave, *, pub: bytes = b"\x44" * 32) -> None:
        wrapped = b"wrapped:" + cid
        mkey = b"\x45" * 32
        cr = self.m.contract_registry
        sig = gk.sign(cr.compute_contract_key_digest(cid, pub, mkey, wrapped))
        cr.publish_contract_key(cid, pub, mkey, wrapped, sig, self.host)

    def output_sig(self, worker: Enclave, cid: bytes, block: int, root: bytes, count: int) -> bytes:
        return worker.sign(self.m.output_records.compute_output_digest(cid, block, root, count))


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode(chain_id=31337)
    node.start()  # AnvilNotFound here fails every test with a clear message
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def world(anvil: AnvilNode) -> World:
    return World(anvil.adapter())


def reason(exc: pytest.ExceptionInfo[TransactionReverted]) -> str:
    return exc.value.reason


# ----------------------------------------------------------------------------- anvil node


def test_anvil_node_lifecycle_and_config() -> None:
    with AnvilNode(chain_id=4242, block_time=1) as node:
        assert node.is_running()
        adapter = node.adapter()
        assert adapter.chain_id == 4242
        assert adapter.kind == "rpc"
        pid = node.pid
        assert pid is not None
    assert not node.is_running()
    with pytest.raises(ChainConfigError):
        AnvilNode(port=-1)


def test_anvil_missing_binary_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealbridge.chain.anvil import find_anvil
    from sealbridge.chain.errors import AnvilNotFound

    monkeypatch.setenv("SEALBRIDGE_ANVIL", "/nonexistent/anvil")
    with pytest.raises(AnvilNotFound):
        find_anvil()
    with pytest.raises(AnvilNotFound):
        AnvilNode().start()


def test_anvil_env_var_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealbridge.chain.anvil import find_anvil

    real = find_anvil()
    monkeypatch.setenv("SEALBRIDGE_ANVIL", str(real))
    assert find_anvil() == real


# ----------------------------------------------------------------------------- adapter


def test_adapter_dev_accounts_funding_and_mining(world: World) -> None:
    a = world.adapter
    assert a.address_of(a.dev_keys[0]) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    fresh = compute_address(os.urandom(32))
    a.fund(fresh, 12345)
    assert a.balance(fresh) == 12345
    before = a.get_block_number()
    a.mine(3)
    assert a.get_block_number() == before + 3
    headers = a.get_blocks([before + 1, before + 2, before + 3])
    assert [h.number for h in headers] == [before + 1, before + 2, before + 3]
    assert headers[1].parent_hash == headers[0].hash
    assert a.get_block(before + 2) == headers[1]


def test_adapter_nonces_are_thread_safe(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    a = world.adapter
    key = a.dev_keys[5]
    sink = compute_address(os.urandom(32))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: a.fund(sink, 1, sender_key=key), range(40)))
    assert a.balance(sink) == 40


def test_adapter_revert_after_mining_reports_reason(world: World) -> None:
    """With an explicit gas limit the tx is mined with status 0; the reason is replayed."""
    a = world.adapter
    fn = world.m.command_inbox.codec.function("submit")
    data = fn.encode_call([os.urandom(32), b"x"])
    with pytest.raises(TransactionReverted) as info:
        a.transact(world.user, to=world.addresses.command_inbox, data=data, gas=200_000)
    assert reason(info) == "contract key not published"
    assert info.value.tx_hash is not None


def test_addresses_round_trip_json(world: World, tmp_path: Path) -> None:
    path = tmp_path / "addresses.json"
    world.addresses.save(path)
    assert ManagementAddresses.load(path) == world.addresses
    with pytest.raises(ChainConfigError):
        ManagementContracts(ChainAdapter.in_process(), world.addresses)  # wrong chain id


# ----------------------------------------------------------------------------- NodeRegistry


def test_genesis_gatekeeper_and_views(world: World) -> None:
    gk = world.gatekeeper
    rec = world.m.node_registry.get_node(gk.node_id)
    assert rec is not None
    assert rec.role == Role.GATEKEEPER
    assert rec.owner == world.adapter.address_of(world.admin)
    assert rec.enclave_address == gk.address
    assert rec.quote_hash == keccak(gk.quote)
    assert rec.active
    assert world.m.node_registry.is_active(gk.node_id, Role.GATEKEEPER)
    assert not world.m.node_registry.is_active(gk.node_id, Role.WORKER)
    assert world.m.node_registry.get_admin() == world.adapter.address_of(world.admin)
    assert world.m.node_registry.get_min_stake() == MIN_STAKE
    assert world.m.node_registry.get_node(os.urandom(32)) is None


def test_genesis_gatekeeper_admin_only(world: World) -> None:
    gk = Enclave()
    with pytest.raises(TransactionReverted) as info:
        world.m.node_registry.register_genesis_gatekeeper(
            gk.node_id,
            gk.encryption_key,
            gk.address,
            MEASUREMENT,
            world.expiry(),
            gk.quote,
            world.host,
        )
    assert reason(info) == "only admin"


def test_register_worker_and_event(world: World) -> None:
    node = Enclave()
    expiry = world.expiry()
    approval = world.approval(world.gatekeeper, node, Role.WORKER, expiry)
    receipt = world.m.node_registry.register(
        Role.WORKER,
        node.node_id,
        node.encryption_key,
        node.address,
        MEASUREMENT,
        expiry,
        world.gatekeeper.node_id,
        approval,
        node.quote,
        world.host,
        stake=MIN_STAKE * 2,
    )
    rec = world.m.node_registry.get_node(node.node_id)
    assert rec is not None and rec.stake == MIN_STAKE * 2 and rec.expiry == expiry
    assert rec.owner == world.adapter.address_of(world.host)
    assert world.m.node_registry.is_active(node.node_id, Role.WORKER)
    assert world.m.node_registry.get_enclave_address(node.node_id) == node.address
    (log,) = receipt.logs
    event = world.m.node_registry.codec.events[log.topics[0]]
    args = event.decode(log.topics, log.data)
    assert event.name == "NodeRegistered"
    assert args["node_id"] == node.node_id
    assert args["quote"] == node.quote
    assert args["enclave_address"] == node.address
    assert args["stake"] == MIN_STAKE * 2


def test_registration_digest_matches_contract(world: World) -> None:
    """The contract accepts exactly the Python digest; changing any field breaks it."""
    node = Enclave()
    expiry = world.expiry()
    good = world.approval(world.gatekeeper, node, Role.WORKER, expiry)
    digest = world.m.node_registry.compute_registration_digest(
        role=Role.WORKER,
        identity_key=node.node_id,
        encryption_key=node.encryption_key,
        enclave_address=node.address,
        quote_hash=keccak(node.quote),
        measurement=MEASUREMENT,
        expiry=expiry,
    )
    assert recover_signer(digest, good) == world.gatekeeper.address
    # signed for another role / chain: rejected
    wrong_role = world.approval(world.gatekeeper, node, Role.GATEKEEPER, expiry)
    with pytest.raises(TransactionReverted) as info:
        world.register(Role.WORKER, node=node, expiry=expiry, approval=wrong_role)
    assert reason(info) == "approval not signed by attestor"
    from sealbridge.chain.abi import compute_registration_digest

    other_chain = compute_registration_digest(
        registry=world.addresses.node_registry,
        chain_id=world.adapter.chain_id + 1,
        role=Role.WORKER,
        identity_key=node.node_id,
        encryption_key=node.encryption_key,
        enclave_address=node.address,
        quote_hash=keccak(node.quote),
        measurement=MEASUREMENT,
        expiry=expiry,
    )
    with pytest.raises(TransactionReverted):
        world.register(
            Role.WORKER, node=node, expiry=expiry, approval=world.gatekeeper.sign(other_chain)
        )
    world.register(Role.WORKER, node=node, expiry=expiry, approval=good)


def test_register_reverts(world: World) -> None:
    worker = world.register(Role.WORKER)
    cases: list[tuple[str, dict[str, object]]] = [
        ("stake below minimum", {"stake": MIN_STAKE - 1}),
        ("attestor is not an active gatekeeper", {"attestor": Enclave()}),  # unregistered
        ("attestor is not an active gatekeeper", {"attestor": worker}),  # wrong role
        ("approval not signed by attestor", {"approval": Enclave().sign(b"\x01" * 32)}),
        ("quote hash mismatch", {"quote_hash": b"\x09" * 32}),
        ("attestation expired", {"expiry": world.expiry(-10)}),
        ("invalid approval signature", {"approval": b"\x00" * 65}),
        ("unknown role", {"role": 9}),
    ]
    for expected, kwargs in cases:
        role = int(kwargs.pop("role", Role.WORKER))  # type: ignore[call-overload]
        with pytest.raises(TransactionReverted) as info:
            world.register(role, **kwargs)  # type: ignore[arg-type]
        assert reason(info) == expected, kwargs
    with pytest.raises(TransactionReverted) as info:
        world.register(Role.WORKER, node=worker)
    assert reason(info) == "node already active"


def test_expired_node_is_inactive_and_may_reregister(world: World) -> None:
    node = world.register(Role.WORKER, expiry=world.expiry(30))
    assert world.m.node_registry.is_active(node.node_id, Role.WORKER)
    world.adapter.increase_time(60)
    assert not world.m.node_registry.is_active(node.node_id, Role.WORKER)
    world.register(Role.WORKER, node=node)
    assert world.m.node_registry.is_active(node.node_id, Role.WORKER)
    rec = world.m.node_registry.get_node(node.node_id)
    assert rec is not None and rec.stake == 2 * MIN_STAKE


# ----------------------------------------------------------------------------- ContractRegistry


def test_deploy_publish_and_views(world: World) -> None:
    w1, w2 = world.register(Role.WORKER), world.register(Role.WORKER)
    cid = world.deploy([w1, w2], publish=False)
    rec = world.m.contract_registry.get_contract(cid)
    assert rec is not None
    assert rec.workers == [w1.node_id, w2.node_id]
    assert rec.deployer == world.adapter.address_of(world.user)
    assert rec.gatekeeper_id == world.gatekeeper.node_id
    assert not rec.key_published and rec.wrapped_key == b""
    assert world.m.contract_registry.is_assigned(cid, w1.node_id)
    assert not world.m.contract_registry.is_assigned(cid, world.gatekeeper.node_id)
    assert not world.m.contract_registry.is_key_published(cid)
    world.publish(cid, world.gatekeeper, pub=b"\x55" * 32)
    rec = world.m.contract_registry.get_contract(cid)
    assert rec is not None and rec.key_published
    assert rec.contract_public_key == b"\x55" * 32 and rec.wrapped_key == b"wrapped:" + cid
    assert world.m.contract_registry.get_contract(os.urandom(32)) is None


def test_deploy_reverts(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    cr = world.m.contract_registry
    gk = world.gatekeeper.node_id
    code = keccak(b"code")
    cases = [
        ("contract id already used", cid, gk, [worker.node_id]),
        ("gatekeeper is not active", os.urandom(32), os.urandom(32), [worker.node_id]),
        ("gatekeeper is not active", os.urandom(32), worker.node_id, [worker.node_id]),
        ("worker is not active", os.urandom(32), gk, [os.urandom(32)]),
        ("worker is not active", os.urandom(32), gk, [gk]),  # wrong role
        ("no workers", os.urandom(32), gk, []),
        ("duplicate worker", os.urandom(32), gk, [worker.node_id, worker.node_id]),
        ("empty contract id", b"\x00" * 32, gk, [worker.node_id]),
    ]
    for expected, contract_id, gatekeeper, workers in cases:
        with pytest.raises(TransactionReverted) as info:
            cr.deploy(contract_id, code, gatekeeper, workers, b"\x11" * 32, world.user)
        assert reason(info) == expected


def test_publish_key_reverts(world: World) -> None:
    worker = world.register(Role.WORKER)
    other_gk = world.register(Role.GATEKEEPER)
    cid = world.deploy([worker], publish=False)
    cr = world.m.contract_registry
    pub, mkey, wrapped = b"\x66" * 32, b"\x67" * 32, b"wrapped-key"
    digest = cr.compute_contract_key_digest(cid, pub, mkey, wrapped)
    gk_sig = world.gatekeeper.sign(digest)
    with pytest.raises(TransactionReverted) as info:  # signed by a gatekeeper not assigned
        cr.publish_contract_key(cid, pub, mkey, wrapped, other_gk.sign(digest), world.host)
    assert reason(info) == "not signed by gatekeeper"
    with pytest.raises(TransactionReverted) as info:  # signature over another wrapped key
        cr.publish_contract_key(cid, pub, mkey, b"other", gk_sig, world.host)
    assert reason(info) == "not signed by gatekeeper"
    with pytest.raises(TransactionReverted) as info:  # signature over another message key
        cr.publish_contract_key(cid, pub, b"\x68" * 32, wrapped, gk_sig, world.host)
    assert reason(info) == "not signed by gatekeeper"
    with pytest.raises(TransactionReverted) as info:
        cr.publish_contract_key(os.urandom(32), pub, mkey, wrapped, gk_sig, world.host)
    assert reason(info) == "unknown contract"
    cr.publish_contract_key(cid, pub, mkey, wrapped, gk_sig, world.host)
    assert cr.get_contract(cid).message_key == mkey  # type: ignore[union-attr]
    with pytest.raises(TransactionReverted) as info:
        cr.publish_contract_key(cid, pub, mkey, wrapped, gk_sig, world.host)
    assert reason(info) == "key already published"


# ----------------------------------------------------------------------------- CommandInbox


def test_submit_and_batch(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    inbox = world.m.command_inbox
    first = inbox.submit(cid, b"ciphertext-1", world.user)
    second = inbox.submit(cid, b"ciphertext-2", world.user)
    assert second.seq == first.seq + 1
    batch = inbox.submit_batch([(cid, b"a"), (cid, b"b"), (cid, b"c")], world.user)
    assert [c.seq for c in batch] == [second.seq + 1, second.seq + 2, second.seq + 3]
    assert len({c.tx_hash for c in batch}) == 1
    assert inbox.get_command_count() == batch[-1].seq + 1
    big = inbox.submit(cid, b"x" * 20_000, world.user)  # a deploy command carries code
    assert big.seq == batch[-1].seq + 1
    with pytest.raises(ChainConfigError):
        inbox.submit(cid, b"x" * 32769, world.user)
    with pytest.raises(ChainConfigError):
        inbox.submit_batch([(cid, b"x" * 4097)], world.user)
    with pytest.raises(ChainConfigError):
        inbox.submit_batch([], world.user)


def test_submit_reverts(world: World) -> None:
    worker = world.register(Role.WORKER)
    unpublished = world.deploy([worker], publish=False)
    inbox = world.m.command_inbox
    with pytest.raises(TransactionReverted) as info:
        inbox.submit(unpublished, b"c", world.user)
    assert reason(info) == "contract key not published"
    with pytest.raises(TransactionReverted) as info:
        inbox.submit(os.urandom(32), b"c", world.user)
    assert reason(info) == "contract key not published"
    published = world.deploy([worker])
    with pytest.raises(TransactionReverted) as info:  # one bad entry reverts the whole batch
        inbox.submit_batch([(published, b"ok"), (unpublished, b"no")], world.user)
    assert reason(info) == "contract key not published"
    data = inbox.codec.function("submit_batch").encode_call([[published], [b"a", b"b"]])
    with pytest.raises(TransactionReverted) as info:
        world.adapter.transact(world.user, to=inbox.address, data=data)
    assert reason(info) == "length mismatch"


# ----------------------------------------------------------------------------- OutputRecords


def test_record_output_and_reverts(world: World) -> None:
    w1, w2 = world.register(Role.WORKER), world.register(Role.WORKER)
    outsider = world.register(Role.WORKER)
    cid = world.deploy([w1, w2])
    out = world.m.output_records
    root = keccak(b"state")
    assert out.get_output(cid, w1.node_id) is None
    receipt = out.record(
        cid, 10, root, 4, w1.node_id, world.output_sig(w1, cid, 10, root, 4), world.host
    )
    rec = out.get_output(cid, w1.node_id)
    assert rec is not None
    assert (rec.block_number, rec.state_root, rec.command_count) == (10, root, 4)
    assert rec.recorded_at == receipt.block_number
    event = out.codec.events[receipt.logs[0].topics[0]]
    args = event.decode(receipt.logs[0].topics, receipt.logs[0].data)
    assert event.name == "OutputRecorded" and args["node_id"] == w1.node_id
    out.record(cid, 11, root, 5, w1.node_id, world.output_sig(w1, cid, 11, root, 5), world.host)
    rec = out.get_output(cid, w1.node_id)
    assert rec is not None and rec.block_number == 11

    cases = [
        ("worker not assigned to contract", outsider, outsider, 12),
        ("node is not an active worker", world.gatekeeper, world.gatekeeper, 12),
        ("node is not an active worker", Enclave(), Enclave(), 12),
        ("not signed by worker enclave", w2, w1, 12),  # w1's enclave signs for w2
        ("stale output", w1, w1, 11),
    ]
    for expected, node, signer, block in cases:
        sig = world.output_sig(signer, cid, block, root, 5)
        with pytest.raises(TransactionReverted) as info:
            out.record(cid, block, root, 5, node.node_id, sig, world.host)
        assert reason(info) == expected
    with pytest.raises(TransactionReverted) as info:  # signed a different state root
        sig = world.output_sig(w2, cid, 12, keccak(b"other"), 5)
        out.record(cid, 12, root, 5, w2.node_id, sig, world.host)
    assert reason(info) == "not signed by worker enclave"


# ----------------------------------------------------------------------------- follower


def _names(blocks: list[ObservedBlock]) -> list[str]:
    return [e.name for b in blocks for e in b.events]


def test_follower_delivers_in_order_with_confirmations(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    follower = BlockFollower(
        world.adapter,
        world.addresses,
        start_block=world.addresses.deployed_at_block,
        confirmations=2,
    )
    blocks = follower.poll_until_caught_up()
    tip = world.adapter.get_block_number()
    assert [b.number for b in blocks] == list(range(world.addresses.deployed_at_block, tip - 1))
    for prev, cur in zip(blocks, blocks[1:], strict=False):
        assert cur.parent_hash == prev.hash
    assert "NodeRegistered" in _names(blocks)

    cmd = world.m.command_inbox.submit(cid, b"follow-me", world.user)
    pending = follower.poll()
    assert all(b.number < cmd.block_number for b in pending)
    world.adapter.mine(1)
    assert all(b.number < cmd.block_number for b in follower.poll())
    world.adapter.mine(1)
    got = follower.poll()
    assert got[-1].number == cmd.block_number
    (event,) = got[-1].events
    assert event.name == "Command"
    assert event.args == {
        "contract_id": cid,
        "seq": cmd.seq,
        "sender": world.adapter.address_of(world.user),
        "ciphertext": b"follow-me",
    }
    assert event.tx_hash == cmd.tx_hash
    assert follower.poll() == []


def test_follower_orders_events_within_a_block(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    follower = BlockFollower(
        world.adapter, world.addresses, start_block=world.adapter.get_block_number() + 1
    )
    world.adapter.set_automine(False)
    try:
        hashes = [
            world.m.command_inbox.send_submit(
                cid, f"cmd-{i}".encode(), world.adapter.dev_keys[3 + i % 3]
            )
            for i in range(9)
        ]
        world.adapter.mine(1)
    finally:
        world.adapter.set_automine(True)
    receipts = [world.adapter.wait_for_receipt(h) for h in hashes]
    assert len({r.block_number for r in receipts}) == 1
    (block,) = follower.poll()
    keys = [(e.tx_index, e.log_index) for e in block.events]
    assert keys == sorted(keys) and len(keys) == 9
    seqs = [e.args["seq"] for e in block.events]
    assert seqs == sorted(seqs)


def test_follower_skip_empty_mode(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    start = world.adapter.get_block_number() + 1
    world.adapter.mine(20)
    cmd = world.m.command_inbox.submit(cid, b"x", world.user)
    world.adapter.mine(5)
    follower = BlockFollower(world.adapter, world.addresses, start_block=start, skip_empty=True)
    blocks = follower.poll_until_caught_up()
    assert [b.number for b in blocks] == [cmd.block_number]
    assert follower.core.next_block == world.adapter.get_block_number() + 1


def test_follower_detects_reorg(world: World) -> None:
    a = world.adapter
    provider = a.web3.provider
    follower = BlockFollower(a, world.addresses, start_block=a.get_block_number() + 1)
    snapshot = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    a.mine(3)
    assert len(follower.poll()) == 3
    provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    a.increase_time(7)  # a different block at the same height
    a.mine(3)
    with pytest.raises(ReorgDetected):
        follower.poll()


# ----------------------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def inproc() -> World:
    adapter = ChainAdapter.in_process()
    assert adapter.kind == "in_process" and adapter.evm_version == "prague"
    return World(adapter)


def test_in_process_smoke(inproc: World) -> None:
    world = inproc
    assert world.adapter.address_of(world.adapter.dev_keys[0]) == (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    )
    worker = world.register(Role.WORKER)
    assert world.m.node_registry.is_active(worker.node_id, Role.WORKER)
    with pytest.raises(TransactionReverted) as info:
        world.register(Role.WORKER, approval=Enclave().sign(b"\x01" * 32))
    assert reason(info) == "approval not signed by attestor"
    unpublished = world.deploy([worker], publish=False)
    with pytest.raises(TransactionReverted) as info:
        world.m.command_inbox.submit(unpublished, b"c", world.user)
    assert reason(info) == "contract key not published"
    cid = world.deploy([worker])
    cmd = world.m.command_inbox.submit(cid, b"hello", world.user)
    root = keccak(b"root")
    world.m.output_records.record(
        cid,
        cmd.block_number,
        root,
        1,
        worker.node_id,
        world.output_sig(worker, cid, cmd.block_number, root, 1),
        world.host,
    )
    rec = world.m.output_records.get_output(cid, worker.node_id)
    assert rec is not None and rec.state_root == root
    follower = BlockFollower(
        world.adapter, world.addresses, start_block=world.addresses.deployed_at_block
    )
    blocks = follower.poll_until_caught_up()
    names = _names(blocks)
    assert names.count("NodeRegistered") == 2
    assert names[-3:] == ["ContractKeyPublished", "Command", "OutputRecorded"]
    assert blocks[-1].number == world.adapter.get_block_number()


def test_in_process_time_and_mining(inproc: World) -> None:
    a = inproc.adapter
    node = inproc.register(Role.WORKER, expiry=inproc.expiry(30))
    before = a.get_block_number()
    a.increase_time(60)
    a.mine(2)
    assert a.get_block_number() >= before + 2
    assert not inproc.m.node_registry.is_active(node.node_id, Role.WORKER)
