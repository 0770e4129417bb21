"""Contract key rotation in the worker runtime, driven with a synthetic verified chain.

The contract keys come from a dealer-less sharing (a joint-Feldman DKG among three
gatekeepers, threshold two), as in production: version ``v`` of a contract's key is the
threshold PRF at ``compute_key_id(contract, v)``, released to a worker as partials that
the runtime combines. The tests compute the expected keys independently (the group
secret recovered from all shares signs the PRF message directly).

A ``ContractRegistry.ContractKeyRotated`` event in a verified block makes the runtime
switch an installed contract to the new version after that block, if the host staged
the version first; otherwise the block is refused with ``KeyRotationPending`` and nothing
changes.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest
from eth_abi.abi import encode as abi_encode

from sealbridge.chain.abi import AbiCodec
from sealbridge.chain.lightclient import EventLog
from sealbridge.contracts.executor import compute_code_hash
from sealbridge.core.encoding import decode
from sealbridge.core.errors import DecryptionError
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.dkg import DkgParticipant, GroupPublicKeys, KeyShareResult
from sealbridge.crypto.keyschedule import (
    ContractKeys,
    compute_contract_keys,
    compute_key_id,
    key_release_aad,
)
from sealbridge.crypto.shamir import Share, recover_secret, scalar_to_bytes
from sealbridge.crypto.threshold_prf import compute_prf_message, derive_contract_key_from_signature
from sealbridge.evm.compiler import compile_contract
from sealbridge.keyservice.threshold import ShareHolder
from sealbridge.keyservice.threshold_messages import PartialKeyRelease, compute_install_binding
from sealbridge.runtime import errors
from sealbridge.runtime.chainview import KEY_ROTATED_TOPIC
from sealbridge.runtime.messages import (
    BlockOutput,
    CheckpointBlob,
    DirectoryEntry,
    InstallContract,
    MakeCheckpoint,
    RestoreCheckpoint,
    StageContractKey,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import PersistedState, WorkerRuntime, unseal_state
from tests.unit.chain_builder import (
    ANCHOR_NUMBER,
    REGISTRY,
    STRANGER,
    ChainBuilder,
    as_input,
    command_log,
    key_published_log,
    output_accepted_log,
    registry_state,
)
from tests.unit.test_runtime_chainview import (
    ALICE,
    ALICE_PUB,
    BOB,
    BOB_PUB,
    EXECUTORS,
    TOKEN,
    Contract,
    ask,
    balances,
    feed,
    new_worker,
    pings,
    roots,
    snapshot,
)

replace = msgspec.structs.replace

PARTICIPANTS = [1, 2, 3]
THRESHOLD = 2


# ----------------------------------------------------------------------------- the sharing


def _counter_random(label: str) -> Callable[[int], bytes]:
    state = {"n": 0}

    def random_bytes(n: int) -> bytes:
        state["n"] += 1
        return hashlib.sha256(f"{label}/{state['n']}".encode()).digest()[:n]

    return random_bytes


class Sharing:
    """The gatekeepers' key shares (from a DKG) and, for the tests only, the group secret
    to compute the expected contract keys without the runtime's combination code."""

    def __init__(self, results: dict[int, KeyShareResult]) -> None:
        self.holders = {i: ShareHolder(r) for i, r in results.items()}
        self.group: GroupPublicKeys = self.holders[1].public
        shares = [Share(index=r.index, value=r.secret) for r in results.values()]
        self.secret = scalar_to_bytes(recover_secret(shares, THRESHOLD))
        assert bls.public_key(self.secret) == self.group.group_public_key

    def contract_key(self, contract_id: bytes, version: int) -> bytes:
        key_id = compute_key_id(contract_id, version)
        signature = bls.sign(self.secret, compute_prf_message(key_id))
        return derive_contract_key_from_signature(key_id, signature)

    def releases(
        self,
        worker: WorkerRuntime,
        contract_id: bytes,
        version: int,
        indices: Sequence[int] = (1, 2),
        *,
        key_id: bytes | None = None,
        binding: bytes = b"",
    ) -> list[PartialKeyRelease]:
        """The partials of ``indices`` for key version ``version``, released to ``worker``
        bound to the install facts ``binding`` (``key_id``: release another PRF input
        instead, as a confused gatekeeper would)."""
        random_bytes = _counter_random(f"release/{contract_id.hex()}/{version}")
        return [
            self.holders[i].release_partial(
                compute_key_id(contract_id, version) if key_id is None else key_id,
                worker.identity_key,
                worker.enclave.identity.encryption_key,
                random_bytes,
                binding,
            )
            for i in indices
        ]


@functools.cache
def sharing() -> Sharing:
    nodes = {i: DkgParticipant(i, THRESHOLD, PARTICIPANTS) for i in PARTICIPANTS}
    dealt = {i: nodes[i].start(hashlib.sha256(b"rotation-dkg/%d" % i).digest()) for i in nodes}
    for dealer, (commitment, shares) in dealt.items():
        for j, share in shares.items():
            assert nodes[j].on_dealing(dealer, commitment, share) is None
    return Sharing({i: nodes[i].finish(set(PARTICIPANTS)) for i in PARTICIPANTS})


class Rotating(Contract):
    """A contract whose key versions come from the committee's sharing."""

    def __init__(self, tag: int, code: bytes = TOKEN, workers: list[bytes] | None = None) -> None:
        super().__init__(tag, code, workers)
        self.contract_key = sharing().contract_key(self.contract_id, 0)
        self.keys = self.keys_at(0)

    def keys_at(self, version: int) -> ContractKeys:
        return compute_contract_keys(
            self.contract_id, sharing().contract_key(self.contract_id, version)
        )

    def install_request(
        self,
        worker: WorkerRuntime,
        version: int = 0,
        *,
        sealed_state: bytes = b"",
        resume_height: int = 0,
    ) -> InstallContract:
        """What the host builds: the committee's partials of key version ``version``."""
        return InstallContract(
            contract_id=self.contract_id,
            code_hash=compute_code_hash(self.code),
            contract_public_key=self.keys_at(version).command_public_key,
            wrapped_key=b"",
            gatekeeper_key=b"",
            deployer_commitment=compute_deployer_commitment(self.contract_id, ALICE_PUB),
            workers=self.workers,
            sealed_state=sealed_state,
            resume_height=resume_height,
            releases=sharing().releases(worker, self.contract_id, version, binding=self.binding),
            group=sharing().group,
            key_version=version,
        )

    @property
    def binding(self) -> bytes:
        """The install facts the gatekeepers bind this contract's worker releases to."""
        return compute_install_binding(
            compute_code_hash(self.code),
            compute_deployer_commitment(self.contract_id, ALICE_PUB),
            self.workers,
        )

    def wrapped_install(
        self, worker: WorkerRuntime, key_of: int, key_version: int, **fields: Any
    ) -> InstallContract:
        """An install with the whole key of version ``key_of`` wrapped to ``worker``, but
        naming version ``key_version`` (a host that asked for one version, says another)."""
        identity = worker.enclave.identity
        return InstallContract(
            contract_id=self.contract_id,
            code_hash=compute_code_hash(self.code),
            contract_public_key=self.keys_at(key_of).command_public_key,
            wrapped_key=ecies.encrypt_to(
                identity.encryption_key,
                sharing().contract_key(self.contract_id, key_of),
                key_release_aad(self.contract_id, identity.identity_key),
            ),
            gatekeeper_key=b"\x00" * 32,
            deployer_commitment=compute_deployer_commitment(self.contract_id, ALICE_PUB),
            workers=self.workers,
            key_version=key_version,
            **fields,
        )

    def stage(
        self, worker: WorkerRuntime, version: int, indices: Sequence[int] = (1, 2)
    ) -> StageContractKey:
        return StageContractKey(
            contract_id=self.contract_id,
            version=version,
            contract_public_key=self.keys_at(version).command_public_key,
            releases=sharing().releases(
                worker, self.contract_id, version, indices, binding=self.binding
            ),
            group=sharing().group,
        )

    def command(
        self,
        sender: bytes,
        method: str,
        args: dict[str, Any],
        nonce: int | None = None,
        *,
        version: int = 0,
    ) -> bytes:
        """A command encrypted to key version ``version`` (an explicit ``nonce`` does not
        move the sender's tracked nonce: use it for commands expected to be refused)."""
        current = self.keys
        self.keys = self.keys_at(version)
        try:
            return super().command(sender, method, args, nonce)
        finally:
            self.keys = current

    def published(self) -> EventLog:
        return key_published_log(
            self.contract_id, self.keys.command_public_key, self.keys.message_public_key
        )

    def rotated(self, version: int, *, keys: ContractKeys | None = None, **kw: Any) -> EventLog:
        keys = keys or self.keys_at(version)
        return rotated_log(
            self.contract_id, version, keys.command_public_key, keys.message_public_key, **kw
        )


def rotated_log(
    contract_id: bytes,
    version: int,
    command_key: bytes,
    message_key: bytes,
    *,
    address: bytes = REGISTRY,
) -> EventLog:
    """``ContractRegistry.ContractKeyRotated(contract_id indexed, version,
    contract_public_key, message_key)``."""
    return EventLog(
        address=address,
        topics=[KEY_ROTATED_TOPIC, contract_id],
        data=abi_encode(["uint256", "bytes32", "bytes32"], [version, command_key, message_key]),
    )


# ----------------------------------------------------------------------------- helpers


def full_snapshot(worker: WorkerRuntime) -> tuple[object, ...]:
    """Everything a refused block must leave as it was, key versions and staging too."""
    return (
        snapshot(worker),
        {cid: (c.key_version, c.keys) for cid, c in worker.contracts.items()},
        dict(worker.staged),
    )


def statuses(out: BlockOutput) -> list[str]:
    return [r.status for r in out.receipts]


def root_of(worker: WorkerRuntime, contract: Contract) -> bytes:
    return worker.get_contract(contract.contract_id).state_root


def rotation_world(count: int = 1) -> tuple[ChainBuilder, list[WorkerRuntime], Rotating]:
    """``count`` verified runtimes with a token (key version 0) whose key is published,
    deployed and minted 100 to Alice in block 101."""
    chain, token = ChainBuilder(), Rotating(1)
    workers = [new_worker(token, chain=chain) for _ in range(count)]
    block = chain.next(
        [token.published()],
        [chain.command(token.contract_id, token.deploy())],
        [
            chain.command(
                token.contract_id, token.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 100})
            )
        ],
    )
    for worker in workers:
        assert statuses(feed(worker, block)) == ["applied", "applied"]
        assert worker.get_contract(token.contract_id).key_version == 0
        assert worker.directory[token.contract_id] == token.entry
    return chain, workers, token


# ----------------------------------------------------------------------------- the event


def test_the_rotation_topic_is_the_compiled_registry_event() -> None:
    registry = AbiCodec(compile_contract("ContractRegistry").abi)
    assert registry.event_by_name("ContractKeyRotated").topic == KEY_ROTATED_TOPIC
    token = Rotating(1)
    log = token.rotated(3)
    decoded = registry.events[log.topics[0]].decode(log.topics, log.data)
    assert decoded["contract_id"] == token.contract_id
    assert decoded["version"] == 3
    assert decoded["contract_public_key"] == token.keys_at(3).command_public_key
    assert decoded["message_key"] == token.keys_at(3).message_public_key


def test_key_versions_come_from_the_sharing_and_differ() -> None:
    token = Rotating(1)
    assert compute_key_id(token.contract_id, 0) == token.contract_id
    ids = {compute_key_id(token.contract_id, v) for v in range(3)}
    assert len(ids) == 3
    keys = [token.keys_at(v) for v in range(3)]
    for field in ("command_public_key", "message_public_key", "state_key", "root_salt"):
        assert len({getattr(k, field) for k in keys}) == 3, field
    # a worker installed from the committee's partials holds exactly the expected key
    worker = new_worker(token)
    assert worker.get_contract(token.contract_id).keys == keys[0]


# ----------------------------------------------------------------------------- staging


def test_a_rotation_without_the_staged_key_is_pending_and_changes_nothing() -> None:
    chain, (worker,), token = rotation_world()
    cid = token.contract_id
    transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
    block = chain.next([token.rotated(1)], [chain.command(cid, transfer)])
    before = full_snapshot(worker)
    root = root_of(worker, token)
    with pytest.raises(errors.KeyRotationPending) as raised:
        feed(worker, block)
    assert (raised.value.contract_id, raised.value.version) == (cid, 1)
    assert raised.value.code == "key_rotation_pending"
    assert full_snapshot(worker) == before
    assert worker.view is not None and worker.view.number == ANCHOR_NUMBER + 1
    assert worker.latest_block == ANCHOR_NUMBER + 1
    assert worker.get_contract(cid).height == ANCHOR_NUMBER + 1
    assert root_of(worker, token) == root
    assert worker.get_contract(cid).key_version == 0
    assert balances(worker, token) == (100, 0)
    # and again: refusing is not a one-off
    with pytest.raises(errors.KeyRotationPending):
        feed(worker, block)
    assert full_snapshot(worker) == before

    worker.stage_contract_key(token.stage(worker, 1))
    version, staged = worker.staged[cid]
    assert version == 1 and staged == token.keys_at(1)
    assert root_of(worker, token) == root  # staging alone switches nothing
    assert worker.get_contract(cid).keys == token.keys_at(0)

    out = feed(worker, block)
    assert statuses(out) == ["applied"]
    assert worker.view is not None
    assert (worker.view.number, worker.view.hash) == (ANCHOR_NUMBER + 2, chain.head_hash)
    runtime = worker.get_contract(cid)
    assert runtime.key_version == 1 and runtime.keys == token.keys_at(1)
    assert runtime.get_status().key_version == 1
    assert cid not in worker.staged
    assert balances(worker, token) == (60, 40)


def test_commands_in_the_rotation_block_use_the_old_key_and_later_ones_the_new() -> None:
    chain, (worker,), token = rotation_world()
    cid = token.contract_id
    worker.stage_contract_key(token.stage(worker, 1))
    old_transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})  # nonce 3
    too_early = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 7}, 4, version=1)
    block = chain.next(
        [chain.command(cid, old_transfer)], [token.rotated(1)], [chain.command(cid, too_early)]
    )
    out = feed(worker, block)
    # the whole block runs under version 0: the new-key command in it does not open
    assert statuses(out) == ["applied", "wrong_key"]
    assert balances(worker, token) == (60, 40)
    runtime = worker.get_contract(cid)
    assert runtime.commands_applied == 3 and runtime.nonces[ALICE_PUB.hex()] == 3
    assert runtime.height == ANCHOR_NUMBER + 2 and runtime.key_version == 1
    (output,) = out.contracts
    assert output.contract_id == cid and output.command_count == 2
    assert output.state_root == runtime.state_root

    # the sealed state of the rotation block is under the new state key, and says so
    state = unseal_state(token.keys_at(1), output.sealed_state)
    assert isinstance(state, PersistedState)
    assert state.key_version == 1
    assert (state.height, state.commands_applied) == (ANCHOR_NUMBER + 2, 3)
    assert state.nonces == {ALICE_PUB.hex(): 3}
    with pytest.raises(DecryptionError):
        unseal_state(token.keys_at(0), output.sealed_state)
    with pytest.raises(DecryptionError):
        unseal_state(token.keys_at(2), output.sealed_state)

    # after it: the old key is refused, the new key applies (the refused nonce is unused)
    late_old = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 7}, 4, version=0)
    new = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 10}, version=1)  # nonce 4
    bob_new = token.command(BOB, "transfer", {"to": ALICE_PUB, "amount": 5}, version=1)
    out = feed(
        worker,
        chain.next(
            [chain.command(cid, late_old)],
            [chain.command(cid, new)],
            [chain.command(cid, bob_new)],
        ),
    )
    assert statuses(out) == ["wrong_key", "applied", "applied"]
    assert balances(worker, token) == (55, 45)
    assert runtime.commands_applied == 5
    assert ask(worker, token, "next_nonce", {}) == 5
    (output,) = out.contracts
    state = unseal_state(token.keys_at(1), output.sealed_state)
    assert state.key_version == 1 and state.commands_applied == 5
    with pytest.raises(DecryptionError):
        unseal_state(token.keys_at(0), output.sealed_state)


def test_the_root_changes_exactly_at_the_rotation_block_and_runtimes_agree() -> None:
    chain, (a, b), token = rotation_world(2)
    cid = token.contract_id
    for worker in (a, b):  # staged early; kept until the event
        worker.stage_contract_key(token.stage(worker, 1))
    seen: list[bytes] = [root_of(a, token)]
    outs: list[tuple[BlockOutput, BlockOutput]] = []
    blocks = [
        chain.next(),  # 102
        chain.next([token.rotated(1)]),  # 103: the rotation, no command for the token
        chain.next(),  # 104
        chain.next(
            [
                chain.command(
                    cid,
                    token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 30}, version=1),
                )
            ]
        ),  # 105
    ]
    for block in blocks:
        out_a, out_b = feed(a, block), feed(b, block)
        outs.append((out_a, out_b))
        assert root_of(a, token) == root_of(b, token)
        assert roots(a) == roots(b)
        seen.append(root_of(a, token))
    r101, r102, r103, r104, r105 = seen
    assert r102 == r101  # an empty block changes nothing
    assert r103 != r102  # the rotation changes the root (new salt), state unchanged
    assert r104 == r103
    assert r105 not in (r104, r101)
    assert [o.contracts for o, _ in outs[::2]] == [[], []]
    for out in outs[1][0], outs[1][1]:
        (output,) = out.contracts
        assert (output.contract_id, output.state_root, output.command_count) == (cid, r103, 0)
        state = unseal_state(token.keys_at(1), output.sealed_state)
        assert state.key_version == 1 and state.commands_applied == 2
        with pytest.raises(DecryptionError):
            unseal_state(token.keys_at(0), output.sealed_state)
    assert outs[3][0].contracts[0].state_root == outs[3][1].contracts[0].state_root == r105
    assert statuses(outs[3][0]) == statuses(outs[3][1]) == ["applied"]
    assert balances(a, token) == balances(b, token) == (70, 30)
    assert a.get_contract(cid).key_version == b.get_contract(cid).key_version == 1

    # the new root is the same state committed under the new salt: a runtime installed at
    # version 1 from the sealed state of block 103 computes it itself
    sealed = outs[1][0].contracts[0].sealed_state
    fresh = WorkerRuntime(EXECUTORS[3])
    status = fresh.install_contract(
        token.install_request(fresh, 1, sealed_state=sealed, resume_height=ANCHOR_NUMBER + 3)
    )
    assert (status.state_root, status.key_version, status.commands_applied) == (r103, 1, 2)
    assert balances(fresh, token) == (100, 0)


def test_a_sealed_state_installs_only_under_the_version_it_names() -> None:
    chain, (worker,), token = rotation_world()
    worker.stage_contract_key(token.stage(worker, 1))
    out = feed(worker, chain.next([token.rotated(1)]))
    sealed = out.contracts[0].sealed_state
    root = root_of(worker, token)

    fresh = WorkerRuntime(EXECUTORS[3])
    # the version before does not open it
    with pytest.raises(DecryptionError):
        fresh.install_contract(token.install_request(fresh, 0, sealed_state=sealed))
    # the right key, but the install names the version before: check_key_version refuses
    with pytest.raises(errors.KeyMismatch, match="key version 1"):
        fresh.install_contract(token.wrapped_install(fresh, 1, 0, sealed_state=sealed))
    # the install names version 1 but the releases are of version 0
    bad = replace(
        token.install_request(fresh, 1, sealed_state=sealed),
        releases=sharing().releases(fresh, token.contract_id, 0, binding=token.binding),
    )
    with pytest.raises(errors.WrongKeyError):
        fresh.install_contract(bad)
    assert fresh.contracts == {}
    status = fresh.install_contract(token.wrapped_install(fresh, 1, 1, sealed_state=sealed))
    assert (status.state_root, status.key_version) == (root, 1)

    # and a state sealed under version 0 is refused by an install naming version 1 with
    # the version-0 key (the state says which version sealed it)
    chain0, (worker0,), token0 = rotation_world()
    out0 = feed(
        worker0,
        chain0.next(
            [
                chain0.command(
                    token0.contract_id,
                    token0.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 1}),
                )
            ]
        ),
    )
    sealed0 = out0.contracts[0].sealed_state
    assert unseal_state(token0.keys_at(0), sealed0).key_version == 0
    other = WorkerRuntime(EXECUTORS[3])
    with pytest.raises(errors.KeyMismatch, match="key version 0"):
        other.install_contract(token0.wrapped_install(other, 0, 1, sealed_state=sealed0))
    assert other.contracts == {}


def test_staging_refuses_wrong_versions_keys_and_releases() -> None:
    chain, (worker,), token = rotation_world()
    cid = token.contract_id
    good = token.stage(worker, 1)
    with pytest.raises(errors.KeyMismatch, match="not the next"):
        worker.stage_contract_key(token.stage(worker, 0))
    with pytest.raises(errors.KeyMismatch, match="not the next"):
        worker.stage_contract_key(token.stage(worker, 2))
    # the key combines, but is not the public key the host names
    for public in (token.keys_at(0).command_public_key, token.keys_at(2).command_public_key):
        with pytest.raises(errors.KeyMismatch, match="public key"):
            worker.stage_contract_key(replace(good, contract_public_key=public))
    # partials of another key version, too few, for another worker, under another group
    other = WorkerRuntime(EXECUTORS[3])
    wrong_group = GroupPublicKeys.from_dict(
        THRESHOLD,
        sharing().group.group_public_key,
        {i: bls.public_key(bytes([i]) * 32) for i in PARTICIPANTS},
    )
    bound = token.binding
    bad_stages = [
        replace(good, releases=sharing().releases(worker, cid, 0, binding=bound)),
        replace(
            good,
            releases=sharing().releases(
                worker, cid, 1, key_id=compute_key_id(cid, 2), binding=bound
            ),
        ),
        replace(good, releases=good.releases[:1]),
        replace(good, releases=[good.releases[0], good.releases[0]]),
        replace(good, releases=sharing().releases(other, cid, 1, binding=bound)),
        replace(good, releases=sharing().releases(worker, cid, 1)),  # bound to no facts
        replace(good, releases=[]),
        replace(good, group=wrong_group),
    ]
    for bad in bad_stages:
        with pytest.raises(errors.WrongKeyError):
            worker.stage_contract_key(bad)
    # a tampered release among three is dropped; two good ones suffice
    three = sharing().releases(worker, cid, 1, (1, 2, 3), binding=bound)
    ciphertext = bytearray(three[1].ciphertext)
    ciphertext[-1] ^= 1
    three[1] = replace(three[1], ciphertext=bytes(ciphertext))
    with pytest.raises(errors.UnknownContract):
        worker.stage_contract_key(replace(good, contract_id=b"\x55" * 32))
    assert worker.staged == {}
    assert worker.get_contract(cid).key_version == 0

    worker.stage_contract_key(replace(good, releases=three))
    assert worker.staged[cid] == (1, token.keys_at(1))
    feed(worker, chain.next([token.rotated(1)]))
    assert worker.get_contract(cid).key_version == 1 and worker.staged == {}
    # now version 1 is installed: staging it again is refused, version 2 is next
    with pytest.raises(errors.KeyMismatch, match="not the next"):
        worker.stage_contract_key(token.stage(worker, 1))
    worker.stage_contract_key(token.stage(worker, 2, (3, 1)))
    assert worker.staged[cid] == (2, token.keys_at(2))
    out = feed(worker, chain.next([token.rotated(2)]))
    assert worker.get_contract(cid).key_version == 2
    assert unseal_state(token.keys_at(2), out.contracts[0].sealed_state).key_version == 2


def test_a_staged_key_the_event_does_not_name_leaves_the_block_pending() -> None:
    chain, (worker,), token = rotation_world()
    cid = token.contract_id
    worker.stage_contract_key(token.stage(worker, 1))
    transfer = chain.command(cid, token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40}))
    v1, v2 = token.keys_at(1), token.keys_at(2)
    before = full_snapshot(worker)

    # the event names version 2: the staged version 1 is kept for the right event
    skipping = chain.build([token.rotated(2)], [transfer])
    with pytest.raises(errors.KeyRotationPending) as raised:
        feed(worker, skipping)
    assert raised.value.version == 2
    assert full_snapshot(worker) == before

    # the event names other keys for version 1: the staged key is dropped, nothing else
    forged = [
        token.rotated(1, keys=v2),
        rotated_log(cid, 1, v1.command_public_key, v2.message_public_key),
        rotated_log(cid, 1, v2.command_public_key, v1.message_public_key),
    ]
    for event in forged:
        worker.stage_contract_key(token.stage(worker, 1))
        block = chain.build([event], [transfer])
        with pytest.raises(errors.KeyRotationPending, match="does not match") as raised:
            feed(worker, block)
        assert (raised.value.contract_id, raised.value.version) == (cid, 1)
        assert cid not in worker.staged
        assert full_snapshot(worker)[:2] == before[:2]
        assert worker.view is not None and worker.view.number == ANCHOR_NUMBER + 1

    honest = chain.build([token.rotated(1)], [transfer])
    with pytest.raises(errors.KeyRotationPending):  # the mismatch dropped the staged key
        feed(worker, honest)
    worker.stage_contract_key(token.stage(worker, 1))
    out = feed(worker, chain.append(honest))
    assert statuses(out) == ["applied"]
    assert worker.get_contract(cid).key_version == 1
    assert balances(worker, token) == (60, 40)


def test_rotations_of_other_contracts_or_from_other_addresses_need_no_stage() -> None:
    chain, (worker,), token = rotation_world()
    elsewhere = Rotating(7)  # not installed here; its key was published
    feed(worker, chain.next([elsewhere.published()]))
    assert worker.directory[elsewhere.contract_id] == elsewhere.entry
    before_root = root_of(worker, token)
    out = feed(
        worker,
        chain.next(
            [elsewhere.rotated(1)],
            [token.rotated(1, address=STRANGER)],  # a look-alike event: not the registry
        ),
    )
    assert out.contracts == [] and out.receipts == []
    assert worker.get_contract(token.contract_id).key_version == 0
    assert root_of(worker, token) == before_root
    assert worker.directory[token.contract_id] == token.entry
    new = elsewhere.keys_at(1)
    assert worker.directory[elsewhere.contract_id] == DirectoryEntry(
        contract_id=elsewhere.contract_id,
        command_key=new.command_public_key,
        message_key=new.message_public_key,
        previous_message_key=elsewhere.keys_at(0).message_public_key,
    )


def test_the_rotated_contracts_directory_entry_keeps_its_previous_message_key() -> None:
    chain, (worker,), token = rotation_world()
    worker.stage_contract_key(token.stage(worker, 1))
    feed(worker, chain.next([token.rotated(1)]))
    v0, v1 = token.keys_at(0), token.keys_at(1)
    assert worker.directory[token.contract_id] == DirectoryEntry(
        contract_id=token.contract_id,
        command_key=v1.command_public_key,
        message_key=v1.message_public_key,
        previous_message_key=v0.message_public_key,
    )


# ----------------------------------------------------------------------------- messages


def test_messages_signed_before_the_source_rotated_still_verify() -> None:
    pinger, ponger, messages = pings()  # signed by the pinger's version-0 message key
    chain = ChainBuilder()
    worker = new_worker(ponger, chain=chain)
    published = key_published_log(
        pinger.contract_id, pinger.keys.command_public_key, pinger.keys.message_public_key
    )
    feed(worker, chain.next([chain.command(ponger.contract_id, ponger.deploy())], [published]))
    v1 = compute_contract_keys(pinger.contract_id, b"\x31" * 32)
    v2 = compute_contract_keys(pinger.contract_id, b"\x32" * 32)
    feed(
        worker,
        chain.next(
            [rotated_log(pinger.contract_id, 1, v1.command_public_key, v1.message_public_key)]
        ),
    )
    entry = worker.directory[pinger.contract_id]
    assert (entry.message_key, entry.previous_message_key) == (
        v1.message_public_key,
        pinger.keys.message_public_key,
    )
    out = feed(worker, chain.next([command_log(ponger.contract_id, 50, messages[0])]))
    assert statuses(out) == ["applied"]
    assert ask(worker, ponger, "state", {}) == {"total": 1, "seen": [1]}

    # only the version just before is kept: after a second rotation the version-0
    # signature no longer verifies
    feed(
        worker,
        chain.next(
            [rotated_log(pinger.contract_id, 2, v2.command_public_key, v2.message_public_key)]
        ),
    )
    entry = worker.directory[pinger.contract_id]
    assert (entry.message_key, entry.previous_message_key) == (
        v2.message_public_key,
        v1.message_public_key,
    )
    out = feed(worker, chain.next([command_log(ponger.contract_id, 51, messages[1])]))
    assert statuses(out) == ["bad_command_signature"]
    assert ask(worker, ponger, "state", {}) == {"total": 1, "seen": [1]}


def test_a_rotation_block_refused_for_an_unknown_message_source_keeps_the_previous_key() -> None:
    pinger, ponger, messages = pings()
    chain = ChainBuilder()
    worker = new_worker(ponger, chain=chain)
    rotating = Rotating(9)  # not installed here; a contract the ponger knows
    feed(
        worker,
        chain.next([chain.command(ponger.contract_id, ponger.deploy())], [rotating.published()]),
    )
    root, prove = registry_state(
        {pinger.contract_id: (1, pinger.keys.command_public_key, pinger.keys.message_public_key)}
    )
    block = chain.next_with_state(
        root, [rotating.rotated(1)], [command_log(ponger.contract_id, 50, messages[0])]
    )
    with pytest.raises(errors.DirectoryIncomplete):  # the enclave does not know the pinger
        feed(worker, block)
    # the host proves the pinger's record at the block and offers the same block again
    out = worker.process_block(
        as_input(block, key_proof=prove([pinger.contract_id]), key_proof_ids=[pinger.contract_id])
    )
    assert statuses(out) == ["applied"]
    assert worker.directory[rotating.contract_id].previous_message_key == (
        rotating.keys_at(0).message_public_key
    )


# ----------------------------------------------------------------------------- outputs


def test_accepted_outputs_after_the_rotation_compare_with_the_new_root() -> None:
    chain, (honest, misled), token = rotation_world(2)
    cid = token.contract_id
    for worker in (honest, misled):
        worker.stage_contract_key(token.stage(worker, 1))
    old_root = root_of(honest, token)
    for block in (chain.next(), chain.next([token.rotated(1)])):  # 102, 103
        feed(honest, block)
        feed(misled, block)
    new_root = root_of(honest, token)
    assert new_root != old_root
    end = ANCHOR_NUMBER + 3

    def accepted(root: bytes) -> EventLog:
        return output_accepted_log(
            cid, start=0, end=end, end_hash=chain.hashes[end], state_root=root, commands_applied=2
        )

    # the ledger accepted an output ending at the rotation block: it carries the new root
    feed(honest, chain.build([accepted(new_root)]))
    assert honest.diverged == {}
    # one ending there with the version-0 root is a divergence
    feed(misled, chain.build([accepted(old_root)]))
    assert cid in misled.diverged


def test_an_output_accepted_before_the_rotation_is_not_a_divergence() -> None:
    chain, (worker,), token = rotation_world()
    cid = token.contract_id
    worker.stage_contract_key(token.stage(worker, 1))
    feed(worker, chain.next())  # 102: the token's root is still the version-0 root
    root_102 = root_of(worker, token)
    feed(worker, chain.next([token.rotated(1)]))  # 103
    assert root_of(worker, token) != root_102
    end = ANCHOR_NUMBER + 2
    # a peer's output for blocks up to 102, accepted (late) in block 104: it is right
    feed(
        worker,
        chain.next(
            [
                output_accepted_log(
                    cid,
                    start=0,
                    end=end,
                    end_hash=chain.hashes[end],
                    state_root=root_102,
                    commands_applied=2,
                )
            ]
        ),
    )
    assert worker.diverged == {}


# ----------------------------------------------------------------------------- checkpoints


def restore_with(
    worker: WorkerRuntime, chain: ChainBuilder, blob: bytes, install: InstallContract
) -> Any:
    return worker.restore_checkpoint(
        RestoreCheckpoint(blob=blob, installs=[install], chain=chain.config())
    )


def test_a_checkpoint_after_the_rotation_restores_only_with_the_new_version() -> None:
    chain, (a,), token = rotation_world()
    cid = token.contract_id
    a.stage_contract_key(token.stage(a, 1))
    transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
    feed(a, chain.next([chain.command(cid, transfer)], [token.rotated(1)]))  # 102
    feed(a, chain.next())  # 103
    blob = a.make_checkpoint(MakeCheckpoint(contract_ids=[cid]))
    parsed = decode(blob, CheckpointBlob)
    assert parsed.height == ANCHOR_NUMBER + 3
    state = unseal_state(token.keys_at(1), parsed.states[cid.hex()])
    assert state.key_version == 1 and state.height == ANCHOR_NUMBER + 3
    entry = {e.contract_id: e for e in state.directory}[cid]
    assert entry.previous_message_key == token.keys_at(0).message_public_key

    b = WorkerRuntime(EXECUTORS[3])
    fresh = full_snapshot(b)
    # the committee's version-0 key does not open it
    with pytest.raises(errors.CheckpointRefused, match="does not open"):
        restore_with(b, chain, blob, token.install_request(b, 0))
    assert full_snapshot(b) == fresh and b.view is None
    # the version-1 key under the name of version 0 is refused by the version check
    with pytest.raises(errors.KeyMismatch, match="key version 1"):
        restore_with(b, chain, blob, token.wrapped_install(b, 1, 0))
    assert full_snapshot(b) == fresh and b.view is None

    (status,) = restore_with(b, chain, blob, token.install_request(b, 1))
    assert status.key_version == 1
    assert status.state_root == root_of(a, token)
    assert roots(b) == roots(a)
    assert b.get_contract(cid).keys == token.keys_at(1)
    assert b.directory[cid] == a.directory[cid]
    assert balances(b, token) == balances(a, token) == (60, 40)

    # both go on under the new key alike
    new = token.command(BOB, "transfer", {"to": ALICE_PUB, "amount": 5}, version=1)
    old = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 1}, 4, version=0)
    block = chain.next([chain.command(cid, old)], [chain.command(cid, new)])
    out_a, out_b = feed(a, block), feed(b, block)
    assert statuses(out_a) == statuses(out_b) == ["wrong_key", "applied"]
    assert out_a.contracts[0].state_root == out_b.contracts[0].state_root
    assert roots(b) == roots(a)
    assert balances(b, token) == (65, 35)


def test_a_checkpoint_before_the_rotation_restores_with_the_old_version() -> None:
    chain, (a,), token = rotation_world()
    cid = token.contract_id
    blob = a.make_checkpoint(MakeCheckpoint(contract_ids=[cid]))
    assert (
        unseal_state(token.keys_at(0), decode(blob, CheckpointBlob).states[cid.hex()]).key_version
        == 0
    )
    b = WorkerRuntime(EXECUTORS[3])
    fresh = full_snapshot(b)
    with pytest.raises(errors.CheckpointRefused, match="does not open"):
        restore_with(b, chain, blob, token.install_request(b, 1))
    with pytest.raises(errors.KeyMismatch, match="key version 0"):
        restore_with(b, chain, blob, token.wrapped_install(b, 0, 1))
    assert full_snapshot(b) == fresh
    (status,) = restore_with(b, chain, blob, token.install_request(b, 0))
    assert status.key_version == 0 and roots(b) == roots(a)
    # the restored runtime then rotates like the original, once staged
    block = chain.next([token.rotated(1)])
    with pytest.raises(errors.KeyRotationPending):
        feed(b, block)
    for worker in (a, b):
        worker.stage_contract_key(token.stage(worker, 1))
        feed(worker, block)
    assert roots(b) == roots(a)
    assert b.get_contract(cid).key_version == a.get_contract(cid).key_version == 1
