"""Management contracts, adapter and follower against a REAL anvil node (and a smoke
run of the same flows on the in-process py-evm backend).

Anvil is required: if the binary is missing, the module fixture raises AnvilNotFound and
every test here fails with that message (nothing is skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import msgspec
import pytest

from sealbridge.chain.abi import (
    Role,
    compute_address,
    compute_storage_node_id,
    recover_signer,
    sign_digest,
)
from sealbridge.chain.errors import ChainConfigError, ReorgDetected, TransactionReverted
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.follower import BlockFollower, ObservedBlock
from sealbridge.evm.management import (
    ManagementAddresses,
    ManagementContracts,
    OutputSubmission,
    deploy_management,
)

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
    from sealbridge.chain.errors import AnvilNotFound
    from sealbridge.evm.anvil import find_anvil

    monkeypatch.setenv("SEALBRIDGE_ANVIL", "/nonexistent/anvil")
    with pytest.raises(AnvilNotFound):
        find_anvil()
    with pytest.raises(AnvilNotFound):
        AnvilNode().start()


def test_anvil_env_var_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealbridge.evm.anvil import find_anvil

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


def _rotate(
    world: World,
    cid: bytes,
    version: int,
    pub: bytes,
    mkey: bytes,
    *,
    signer: Enclave | None = None,
    signed: tuple[bytes, int, bytes, bytes] | None = None,
) -> TxReceipt:
    """Publish key version ``version``, signed by the contract's gatekeeper enclave (or
    ``signer``) over the rotation digest of ``signed`` (by default what is sent)."""
    cr = world.m.contract_registry
    digest = cr.compute_key_rotation_digest(*(signed or (cid, version, pub, mkey)))
    sig = (signer or world.gatekeeper).sign(digest)
    return cr.rotate_contract_key(cid, version, pub, mkey, sig, world.host)


def _event(world: World, receipt: TxReceipt) -> tuple[str, dict[str, object]]:
    (log,) = receipt.logs
    event = world.m.contract_registry.codec.events[log.topics[0]]
    return event.name, event.decode(log.topics, log.data)


def test_key_rotation_request_rotate_and_rotate_again(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    cr = world.m.contract_registry
    published = cr.get_contract(cid)
    assert published is not None and published.key_published
    assert (published.key_version, published.rotated_at, published.rotation_pending) == (
        0,
        0,
        False,
    )
    # the deployer asks for version 1
    receipt = cr.request_key_rotation(cid, world.user)
    assert _event(world, receipt) == ("KeyRotationRequested", {"contract_id": cid, "version": 1})
    pending = cr.get_contract(cid)
    assert pending == msgspec.structs.replace(published, rotation_pending=True)
    # the gatekeeper's enclave publishes it
    pub1, mkey1 = b"\x71" * 32, b"\x72" * 32
    receipt = _rotate(world, cid, 1, pub1, mkey1)
    rotated = cr.get_contract(cid)
    assert rotated is not None
    assert rotated.rotated_at == receipt.block_number > 0
    assert rotated == msgspec.structs.replace(
        published,
        contract_public_key=pub1,
        message_key=mkey1,
        key_version=1,
        rotated_at=receipt.block_number,
        rotation_pending=False,
    )
    assert rotated.key_published and rotated.wrapped_key == published.wrapped_key
    assert _event(world, receipt) == (
        "ContractKeyRotated",
        {"contract_id": cid, "version": 1, "contract_public_key": pub1, "message_key": mkey1},
    )
    assert cr.is_key_published(cid)
    world.m.command_inbox.submit(cid, b"still open", world.user)  # commands keep flowing
    # and once more, to version 2
    receipt = cr.request_key_rotation(cid, world.user)
    assert _event(world, receipt) == ("KeyRotationRequested", {"contract_id": cid, "version": 2})
    pub2, mkey2 = b"\x73" * 32, b"\x74" * 32
    receipt = _rotate(world, cid, 2, pub2, mkey2)
    again = cr.get_contract(cid)
    assert again == msgspec.structs.replace(
        rotated,
        contract_public_key=pub2,
        message_key=mkey2,
        key_version=2,
        rotated_at=receipt.block_number,
    )
    assert again is not None and again.rotated_at > rotated.rotated_at
    assert _event(world, receipt) == (
        "ContractKeyRotated",
        {"contract_id": cid, "version": 2, "contract_public_key": pub2, "message_key": mkey2},
    )


def test_key_rotation_reverts_leave_the_record_unchanged(world: World) -> None:
    worker = world.register(Role.WORKER)
    other_gk = world.register(Role.GATEKEEPER)
    cr = world.m.contract_registry
    pub1, mkey1 = b"\x81" * 32, b"\x82" * 32

    def refused(expected: str, cid: bytes, action: Callable[[], object]) -> None:
        before = cr.get_contract(cid)
        assert before is not None
        with pytest.raises(TransactionReverted) as info:
            action()
        assert reason(info) == expected
        assert cr.get_contract(cid) == before

    # requests: only the deployer, only once the key is published, one at a time
    unpublished = world.deploy([worker], publish=False)
    refused(
        "key not published yet",
        unpublished,
        lambda: cr.request_key_rotation(unpublished, world.user),
    )
    cid = world.deploy([worker])
    for stranger in (world.host, world.admin):
        refused(
            "only the deployer may rotate the key",
            cid,
            partial(cr.request_key_rotation, cid, stranger),
        )
    unknown = os.urandom(32)
    with pytest.raises(TransactionReverted) as info:
        cr.request_key_rotation(unknown, world.user)
    assert reason(info) == "unknown contract"
    # rotations: only a pending one
    refused("no rotation pending", cid, lambda: _rotate(world, cid, 1, pub1, mkey1))
    refused(
        "no rotation pending",
        unpublished,
        lambda: _rotate(world, unpublished, 1, pub1, mkey1),
    )
    with pytest.raises(TransactionReverted) as info:
        _rotate(world, unknown, 1, pub1, mkey1)
    assert reason(info) == "unknown contract"
    cr.request_key_rotation(cid, world.user)
    refused("a rotation is already pending", cid, lambda: cr.request_key_rotation(cid, world.user))
    # the next version only
    for version in (0, 2, 7):
        refused(
            "not the next key version",
            cid,
            partial(_rotate, world, cid, version, pub1, mkey1),
        )
    # signed by the contract's gatekeeper enclave, over exactly what is sent
    for signer in (other_gk, Enclave(), worker):
        refused(
            "not signed by gatekeeper",
            cid,
            partial(_rotate, world, cid, 1, pub1, mkey1, signer=signer),
        )
    other_cid = world.deploy([worker])
    for signed in (
        (cid, 1, pub1, b"\x83" * 32),  # another message key
        (cid, 1, b"\x83" * 32, mkey1),  # another command key
        (cid, 2, pub1, mkey1),  # another version
        (other_cid, 1, pub1, mkey1),  # another contract
    ):
        refused(
            "not signed by gatekeeper",
            cid,
            partial(_rotate, world, cid, 1, pub1, mkey1, signed=signed),
        )
    # a publish signature is no rotation signature (the digests are domain-separated)
    publish_sig = world.gatekeeper.sign(cr.compute_contract_key_digest(cid, pub1, mkey1, b""))
    refused(
        "not signed by gatekeeper",
        cid,
        lambda: cr.rotate_contract_key(cid, 1, pub1, mkey1, publish_sig, world.host),
    )
    refused(
        "invalid signature",
        cid,
        lambda: cr.rotate_contract_key(cid, 1, pub1, mkey1, b"\x00" * 65, world.host),
    )
    # the key must change (world.publish published b"\x44" * 32)
    current = cr.get_contract(cid)
    assert current is not None and current.contract_public_key == b"\x44" * 32
    refused(
        "the key did not change",
        cid,
        lambda: _rotate(world, cid, 1, current.contract_public_key, mkey1),
    )
    # after all refusals the good one still goes in
    _rotate(world, cid, 1, pub1, mkey1)
    rec = cr.get_contract(cid)
    assert rec is not None and (rec.key_version, rec.contract_public_key) == (1, pub1)
    assert not rec.rotation_pending
    # nothing is pending again; and the next rotation too must change the (new) key
    refused("no rotation pending", cid, lambda: _rotate(world, cid, 2, b"\x85" * 32, mkey1))
    cr.request_key_rotation(cid, world.user)
    refused("the key did not change", cid, lambda: _rotate(world, cid, 2, pub1, b"\x84" * 32))
    # the contract's gatekeeper must still be active
    short_gk = world.register(Role.GATEKEEPER, expiry=world.expiry(30))
    lapsing = world.deploy([worker], gatekeeper=short_gk)
    cr.request_key_rotation(lapsing, world.user)
    world.adapter.increase_time(60)
    assert not world.m.node_registry.is_active(short_gk.node_id, Role.GATEKEEPER)
    refused(
        "gatekeeper is not active",
        lapsing,
        lambda: _rotate(world, lapsing, 1, pub1, mkey1, signer=short_gk),
    )


def test_key_version_at_a_height(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    cr = world.m.contract_registry
    never = cr.get_contract(cid)
    assert never is not None
    assert [never.get_version_at(h) for h in (0, 1, 10**9)] == [0, 0, 0]
    cr.request_key_rotation(cid, world.user)
    pending = cr.get_contract(cid)
    assert pending is not None and pending.get_version_at(10**9) == 0  # not rotated yet
    at = _rotate(world, cid, 1, b"\x91" * 32, b"\x92" * 32).block_number
    rec = cr.get_contract(cid)
    assert rec is not None and rec.rotated_at == at
    assert [rec.get_version_at(h) for h in (0, at - 1, at, at + 1, at + 1000)] == [0, 0, 1, 1, 1]
    cr.request_key_rotation(cid, world.user)
    world.adapter.mine(2)
    at2 = _rotate(world, cid, 2, b"\x93" * 32, b"\x94" * 32).block_number
    rec2 = cr.get_contract(cid)
    assert rec2 is not None and rec2.rotated_at == at2 > at + 2
    assert [rec2.get_version_at(h) for h in (at, at2 - 1, at2, at2 + 1)] == [1, 1, 2, 2]


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


# ----------------------------------------------------------------------------- ExecutionLedger


def _submission(
    world: World,
    worker: Enclave,
    cids: list[bytes],
    starts: list[int],
    end: int,
    *,
    signer: Enclave | None = None,
    end_hash: bytes | None = None,
    roots: list[bytes] | None = None,
    applied: list[int] | None = None,
    **checkpoint: object,
) -> OutputSubmission:
    draft = OutputSubmission(
        contract_ids=cids,
        starts=starts,
        end=end,
        end_hash=end_hash if end_hash is not None else world.adapter.get_block(end).hash,
        state_roots=roots if roots is not None else [keccak(b"root" + c) for c in cids],
        commands_applied=applied if applied is not None else [1] * len(cids),
        node_id=worker.node_id,
        **checkpoint,  # type: ignore[arg-type]
    )
    digest = world.m.execution_ledger.compute_execution_digest(draft)
    return msgspec.structs.replace(draft, signature=(signer or worker).sign(digest))


def _tip(world: World) -> int:
    world.adapter.mine(1)
    return world.adapter.get_block_number() - 1


def test_ledger_accepts_the_first_valid_output_and_refuses_the_rest(world: World) -> None:
    w1, w2 = world.register(Role.WORKER), world.register(Role.WORKER)
    outsider = world.register(Role.WORKER)
    cid, other = world.deploy([w1, w2]), world.deploy([w1, w2])
    ledger = world.m.execution_ledger
    assert ledger.get_output(cid) is None
    end = _tip(world)
    receipt = ledger.submit(_submission(world, w1, [cid, other], [0, 0], end), world.host)
    accepted = ledger.get_output(cid)
    assert accepted is not None
    assert (accepted.end, accepted.node_id, accepted.commands_applied) == (end, w1.node_id, 1)
    assert accepted.end_hash == world.adapter.get_block(end).hash
    assert accepted.accepted_at == receipt.block_number
    events = [ledger.codec.events[log.topics[0]] for log in receipt.logs]
    assert [e.name for e in events] == ["OutputAccepted", "OutputAccepted"]
    # a slower worker's output for the same range is refused, whole
    with pytest.raises(TransactionReverted) as info:
        ledger.submit(_submission(world, w2, [cid], [0], end), world.host)
    assert reason(info) == "range does not start at the last accepted end"
    # the next range is open to anyone assigned
    end2 = _tip(world)
    ledger.submit(_submission(world, w2, [cid], [end], end2, applied=[3]), world.host)
    after = ledger.get_output(cid)
    assert after is not None and (after.end, after.node_id) == (end2, w2.node_id)
    out = ledger.get_output(other)
    assert out is not None and out.end == end  # untouched by w2's submission

    end3 = _tip(world)
    wrong = keccak(b"forged block")
    cases = [
        (
            "end hash does not match the chain",
            _submission(world, w1, [cid], [end2], end3, end_hash=wrong),
        ),
        ("worker not assigned to contract", _submission(world, outsider, [cid], [end2], end3)),
        ("node is not an active worker", _submission(world, Enclave(), [cid], [end2], end3)),
        ("not signed by worker enclave", _submission(world, w2, [cid], [end2], end3, signer=w1)),
        ("command count went backwards", _submission(world, w1, [cid], [end2], end3, applied=[2])),
        (
            "range does not start at the last accepted end",
            _submission(world, w1, [cid], [end], end3, applied=[3]),
        ),
        ("empty range", _submission(world, w1, [cid], [end2], end2, applied=[3])),
        (
            "range does not start at the last accepted end",
            _submission(world, w1, [cid, cid], [end2, end2], end3, applied=[3, 3]),
        ),
    ]
    for expected, submission in cases:
        with pytest.raises(TransactionReverted) as info:
            ledger.submit(submission, world.host)
        assert reason(info) == expected, expected
    future = world.adapter.get_block_number() + 5
    with pytest.raises(TransactionReverted) as info:
        ledger.submit(
            msgspec.structs.replace(_submission(world, w1, [cid], [end2], end3), end=future),
            world.host,
        )
    assert reason(info) == "end block is not in the past"
    # a signature over one root does not carry another
    good = _submission(world, w1, [cid], [end2], end3, applied=[3])
    with pytest.raises(TransactionReverted) as info:
        ledger.submit(msgspec.structs.replace(good, state_roots=[keccak(b"x")]), world.host)
    assert reason(info) == "not signed by worker enclave"
    with pytest.raises(ChainConfigError):
        ledger.submit(msgspec.structs.replace(good, starts=[]), world.host)
    ledger.submit(good, world.host)  # after all refusals the honest one still goes in


def test_ledger_refuses_an_end_older_than_256_blocks(world: World) -> None:
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    old = _tip(world)
    submission = _submission(world, worker, [cid], [0], old)
    world.adapter.mine(260)
    with pytest.raises(TransactionReverted) as info:
        world.m.execution_ledger.submit(submission, world.host)
    assert reason(info) == "end block is older than 256 blocks"


def _storage_node(world: World) -> tuple[bytes, bytes]:
    key = os.urandom(32)
    node_id = world.m.node_registry.register_storage(
        key, world.expiry(), world.host, stake=MIN_STAKE
    )
    return key, node_id


def test_storage_registration_needs_stake_and_a_proof(world: World) -> None:
    key, node_id = _storage_node(world)
    assert node_id == compute_storage_node_id(compute_address(key))
    assert world.m.node_registry.is_active(node_id, Role.STORAGE)
    node = world.m.node_registry.get_node(node_id)
    assert node is not None and node.enclave_address == compute_address(key)
    registry = world.m.node_registry
    other = os.urandom(32)
    signer = compute_address(other)
    other_id = compute_storage_node_id(signer)
    expiry = world.expiry()
    owner = world.adapter.address_of(world.host)
    proof = sign_digest(
        registry.compute_storage_registration_digest(other_id, owner, expiry), other
    )
    stranger_proof = sign_digest(
        registry.compute_storage_registration_digest(other_id, owner, expiry), key
    )
    cases = [
        ("stake below minimum", [other_id, signer, expiry, proof], 0),
        ("node id does not match signer", [node_id, signer, expiry, proof], MIN_STAKE),
        (
            "proof not signed by the storage key",
            [other_id, signer, expiry, stranger_proof],
            MIN_STAKE,
        ),
        (
            "node already active",
            [
                node_id,
                compute_address(key),
                expiry,
                sign_digest(
                    registry.compute_storage_registration_digest(node_id, owner, expiry), key
                ),
            ],
            MIN_STAKE,
        ),
    ]
    for expected, args, stake in cases:
        data = registry.codec.function("register_storage").encode_call(args)
        with pytest.raises(TransactionReverted) as info:
            world.adapter.transact(world.host, to=registry.address, data=data, value=stake)
        assert reason(info) == expected, expected
    assert not registry.is_active(other_id, Role.STORAGE)


def test_checkpoints_need_k_storage_confirmations_or_go_inline(world: World) -> None:
    ledger = world.m.execution_ledger
    assert ledger.get_storage_threshold() == 2
    nodes = sorted((_storage_node(world) for _ in range(3)), key=lambda n: n[1])
    worker = world.register(Role.WORKER)
    cid = world.deploy([worker])
    blob = os.urandom(3000)
    blob_hash = keccak(blob)
    digest = ledger.compute_storage_digest(blob_hash, len(blob))
    sigs = {node_id: sign_digest(digest, key) for key, node_id in nodes}
    ids = [n[1] for n in nodes]

    def with_checkpoint(
        start: int, end: int, storage: list[bytes], size: int = len(blob)
    ) -> OutputSubmission:
        return _submission(
            world,
            worker,
            [cid],
            [start],
            end,
            checkpoint_hash=blob_hash,
            checkpoint_size=size,
            storage_ids=storage,
            storage_sigs=[sigs[i] for i in storage],
        )

    end = _tip(world)
    stranger = os.urandom(32)
    stranger_id = compute_storage_node_id(compute_address(stranger))
    refused = [
        ("too few storage confirmations", with_checkpoint(0, end, ids[:1])),
        ("storage ids must be strictly increasing", with_checkpoint(0, end, [ids[1], ids[0]])),
        ("storage ids must be strictly increasing", with_checkpoint(0, end, [ids[0], ids[0]])),
        ("too few storage confirmations", with_checkpoint(0, end, ids[:2], size=len(blob) + 1)),
    ]
    unregistered = _submission(
        world,
        worker,
        [cid],
        [0],
        end,
        checkpoint_hash=blob_hash,
        checkpoint_size=len(blob),
        storage_ids=sorted([ids[0], stranger_id]),
        storage_sigs=[
            sigs[ids[0]] if i == ids[0] else sign_digest(digest, stranger)
            for i in sorted([ids[0], stranger_id])
        ],
    )
    refused.append(("too few storage confirmations", unregistered))
    for expected, submission in refused:
        with pytest.raises(TransactionReverted) as info:
            ledger.submit(submission, world.host)
        assert reason(info) == expected, expected
    assert ledger.get_checkpoint(cid) is None
    receipt = ledger.submit(with_checkpoint(0, end, ids[:2]), world.host)
    record = ledger.get_checkpoint(cid)
    assert record is not None
    assert (record.height, record.blob_hash, record.size, record.inline) == (
        end,
        blob_hash,
        len(blob),
        False,
    )
    assert record.block_hash == world.adapter.get_block(end).hash
    assert record.recorded_at == receipt.block_number
    names = [ledger.codec.events[log.topics[0]].name for log in receipt.logs]
    assert names == ["OutputAccepted", "CheckpointRecorded"]
    # a small checkpoint may go on chain instead, with no storage confirmations
    small = b"small sealed state"
    end2 = _tip(world)
    mismatch = _submission(
        world,
        worker,
        [cid],
        [end],
        end2,
        checkpoint_hash=keccak(b"other"),
        checkpoint_size=len(small),
        inline_blob=small,
    )
    with pytest.raises(TransactionReverted) as info:
        ledger.submit(mismatch, world.host)
    assert reason(info) == "inline checkpoint hash mismatch"
    inline = _submission(
        world,
        worker,
        [cid],
        [end],
        end2,
        checkpoint_hash=keccak(small),
        checkpoint_size=len(small),
        inline_blob=small,
    )
    receipt = ledger.submit(inline, world.host)
    record = ledger.get_checkpoint(cid)
    assert record is not None and record.inline and record.height == end2
    event = ledger.codec.events[receipt.logs[-1].topics[0]]
    args = event.decode(receipt.logs[-1].topics, receipt.logs[-1].data)
    assert args["inline_blob"] == small and args["contract_ids"] == [cid]


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
    world.m.command_inbox.submit(cid, b"hello", world.user)
    end = _tip(world)
    world.m.execution_ledger.submit(_submission(world, worker, [cid], [0], end), world.host)
    rec = world.m.execution_ledger.get_output(cid)
    assert rec is not None and rec.end == end
    follower = BlockFollower(
        world.adapter, world.addresses, start_block=world.addresses.deployed_at_block
    )
    blocks = follower.poll_until_caught_up()
    names = _names(blocks)
    assert names.count("NodeRegistered") == 2
    assert names[-3:] == ["ContractKeyPublished", "Command", "OutputAccepted"]
    assert blocks[-1].number == world.adapter.get_block_number()


def test_in_process_time_and_mining(inproc: World) -> None:
    a = inproc.adapter
    node = inproc.register(Role.WORKER, expiry=inproc.expiry(30))
    before = a.get_block_number()
    a.increase_time(60)
    a.mine(2)
    assert a.get_block_number() >= before + 2
    assert not inproc.m.node_registry.is_active(node.node_id, Role.WORKER)


def test_the_gas_budget_covers_the_largest_submissions(world: World) -> None:
    """Submissions go with a fixed gas budget (an estimate at the newest block would call
    the end "not in the past"): the largest ones must fit in it."""
    ledger = world.m.execution_ledger
    worker = world.register(Role.WORKER)
    cids = [world.deploy([worker]) for _ in range(16)]
    nodes = sorted((_storage_node(world) for _ in range(16)), key=lambda n: n[1])
    blob = os.urandom(5000)
    digest = ledger.compute_storage_digest(keccak(blob), len(blob))
    end = _tip(world)
    stored = _submission(
        world,
        worker,
        cids,
        [0] * 16,
        end,
        checkpoint_hash=keccak(blob),
        checkpoint_size=len(blob),
        storage_ids=[n[1] for n in nodes],
        storage_sigs=[sign_digest(digest, n[0]) for n in nodes],
    )
    receipt = ledger.submit(stored, world.host)
    assert receipt.gas_used < ledger.get_gas_budget(stored)
    inline = os.urandom(8192)
    end2 = _tip(world)
    on_chain = _submission(
        world,
        worker,
        cids,
        [end] * 16,
        end2,
        checkpoint_hash=keccak(inline),
        checkpoint_size=len(inline),
        inline_blob=inline,
    )
    receipt = ledger.submit(on_chain, world.host)
    assert receipt.gas_used < ledger.get_gas_budget(on_chain)
    record = ledger.get_checkpoint(cids[-1])
    assert record is not None and record.inline and record.height == end2
