"""The runtime's verified chain view, driven with a synthetic chain in the real formats.

The blocks come from :mod:`tests.unit.chain_builder`: hash-linked Prague headers whose
receipts root commits to receipts holding ABI-encoded management events. The runtime
reads its commands, directory keys, accepted outputs and checkpoint records out of them
itself; a host that tampers with a block gets a typed error and the runtime does not
move. Outputs are signed for the ExecutionLedger; checkpoints are made, restored on a
fresh enclave and confirmed by the ledger's record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from sealbridge.chain.abi import AbiCodec, compute_execution_digest, recover_signer
from sealbridge.chain.lightclient import (
    BlockEvidence,
    BrokenHeaderLink,
    EventLog,
    EvidenceMalformed,
    LightClientError,
    ReceiptsRootMismatch,
)
from sealbridge.contracts.catalog import get_source
from sealbridge.contracts.executor import compute_code_hash
from sealbridge.core.encoding import decode, encode
from sealbridge.core.ids import keccak
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair, to_checksum_address
from sealbridge.evm.compiler import compile_contract
from sealbridge.runtime import errors
from sealbridge.runtime.chainview import (
    CHECKPOINT_RECORDED_TOPIC,
    COMMAND_TOPIC,
    KEY_PUBLISHED_TOPIC,
    OUTPUT_ACCEPTED_TOPIC,
)
from sealbridge.runtime.envelope import make_query, open_answer, seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    BlockOutput,
    CheckpointBlob,
    DirectoryEntry,
    InboxCommand,
    InstallContract,
    MakeCheckpoint,
    RestoreCheckpoint,
    SignedOutputs,
    SignOutputs,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import CHECKPOINT_CONFIRM_WINDOW, WorkerRuntime
from tests.unit.chain_builder import (
    ANCHOR_NUMBER,
    CHAIN_ID,
    INBOX,
    LEDGER,
    NODE_ID,
    STRANGER,
    ChainBuilder,
    as_input,
    block_hash_of,
    checkpoint_recorded_log,
    command_log,
    commands_in,
    key_published_log,
    output_accepted_log,
)
from tests.unit.test_runtime_interop import PINGER, PONGER
from tests.unit.test_runtime_worker import make_enclave
from tests.unit.witnesses import peer_witnesses, with_released

replace = msgspec.structs.replace

ALICE, ALICE_PUB = ed25519_keypair(b"a" * 32)
BOB, BOB_PUB = ed25519_keypair(b"b" * 32)
TOKEN = get_source("token")
# enclaves every test contract names as executors (a worker resuming from a checkpoint
# must be one: the runtime checks the sealed executor set); other workers install in the
# unverified mode (before a chain view), where the host's word is taken
EXECUTORS = [make_enclave() for _ in range(4)]
DOMAIN = [enclave.identity.identity_key for enclave in EXECUTORS]
Roots = dict[bytes, tuple[bytes, int, dict[str, int]]]  # contract -> (root, count, nonces)


# ----------------------------------------------------------------------------- helpers


class Contract:
    """One contract on the test chain: its id, released key and the commands users sign
    for it (nonces are tracked per sender, so one ciphertext can go to many workers)."""

    def __init__(self, tag: int, code: bytes = TOKEN, workers: list[bytes] | None = None) -> None:
        self.contract_id = bytes([tag]) * 32
        self.contract_key = bytes([tag + 100]) * 32
        self.keys = compute_contract_keys(self.contract_id, self.contract_key)
        self.code = code
        self.workers = workers or DOMAIN
        self.nonces: dict[bytes, int] = {}

    def install_request(self, worker: WorkerRuntime) -> InstallContract:
        """The gatekeeper's key release to ``worker``'s enclave identity."""
        identity = worker.enclave.identity
        return InstallContract(
            contract_id=self.contract_id,
            code_hash=compute_code_hash(self.code),
            contract_public_key=self.keys.command_public_key,
            wrapped_key=ecies.encrypt_to(
                identity.encryption_key,
                self.contract_key,
                key_release_aad(self.contract_id, identity.identity_key),
            ),
            gatekeeper_key=b"\x00" * 32,
            deployer_commitment=compute_deployer_commitment(self.contract_id, ALICE_PUB),
            workers=self.workers,
        )

    def command(
        self, sender: bytes, method: str, args: dict[str, Any], nonce: int | None = None
    ) -> bytes:
        if nonce is None:
            nonce = self.nonces.get(sender, 0) + 1
            self.nonces[sender] = nonce
        return seal_command(
            contract_id=self.contract_id,
            contract_public_key=self.keys.command_public_key,
            sender_private_key=sender,
            nonce=nonce,
            method=method,
            args=args,
        )

    def deploy(self, init: dict[str, Any] | None = None) -> bytes:
        return self.command(ALICE, DEPLOY_METHOD, {"code": self.code, "init": init or {}})

    @property
    def entry(self) -> DirectoryEntry:
        return DirectoryEntry(
            contract_id=self.contract_id,
            command_key=self.keys.command_public_key,
            message_key=self.keys.message_public_key,
        )


def plain_block(
    number: int, *items: tuple[Contract, bytes], directory: list[DirectoryEntry] | None = None
) -> BlockInput:
    """A block for a runtime without a view (the host's list of commands is taken as is)."""
    return BlockInput(
        number=number,
        block_hash=keccak(number.to_bytes(8, "big")),
        commands=[
            InboxCommand(
                contract_id=c.contract_id, seq=i, tx_index=i, log_index=0, ciphertext=ciphertext
            )
            for i, (c, ciphertext) in enumerate(items)
        ],
        directory=directory or [],
    )


def new_worker(*contracts: Contract, chain: ChainBuilder | None = None) -> WorkerRuntime:
    """A runtime with a fresh enclave identity, the contracts installed and (given a
    chain) its verified view anchored at the chain's anchor."""
    worker = WorkerRuntime(make_enclave())
    for contract in contracts:
        worker.install_contract(contract.install_request(worker))
    if chain is not None:
        worker.configure_chain(chain.config())
    return worker


def feed(worker: WorkerRuntime, evidence: BlockEvidence) -> BlockOutput:
    """Deliver one block and release what honest peers' witnesses release."""
    return with_released(worker, worker.process_block(as_input(evidence)))


def ask(
    worker: WorkerRuntime,
    contract: Contract,
    method: str,
    args: dict[str, Any],
    caller: bytes = ALICE,
) -> Any:
    query, reply = make_query(
        contract_id=contract.contract_id,
        caller_private_key=caller,
        method=method,
        args=args,
        issued_at=0,
    )
    sealed = worker.answer_query(query, 0, peer_witnesses(worker))
    answer, signed = open_answer(query, reply, sealed)
    assert signed.worker_key == worker.identity_key
    return answer.result


def balances(worker: WorkerRuntime, token: Contract) -> tuple[int, int]:
    return (
        ask(worker, token, "balance", {"owner": ALICE_PUB}),
        ask(worker, token, "balance", {"owner": BOB_PUB}, caller=BOB),
    )


def snapshot(worker: WorkerRuntime, *, with_clock: bool = True) -> tuple[object, ...]:
    """Everything a refused input must leave as it was (``with_clock``: and the newest
    block queries are answered at)."""
    view = worker.view
    contracts = {
        cid: (
            c.height,
            c.state_root,
            c.commands_applied,
            dict(c.nonces),
            c.storage.snapshot(),
            dict(c.inbox_seqs),
            c.code,
        )
        for cid, c in worker.contracts.items()
    }
    return (
        None if view is None else (view.number, view.hash, view.config),
        worker.latest_block if with_clock else None,
        contracts,
        dict(worker.directory),
        dict(worker.accepted),
        dict(worker.diverged),
        dict(worker.checkpoint_heights),
        worker.pending_checkpoint,
        {cid: list(h) for cid, h in worker.history.items()},
    )


def roots(worker: WorkerRuntime) -> Roots:
    return {
        cid: (c.state_root, c.commands_applied, dict(c.nonces))
        for cid, c in worker.contracts.items()
    }


def deployed_world() -> tuple[ChainBuilder, WorkerRuntime, Contract]:
    """A verified runtime with a token deployed and 100 minted to Alice in block 101."""
    chain, token = ChainBuilder(), Contract(1)
    worker = new_worker(token, chain=chain)
    block = chain.next(
        [chain.command(token.contract_id, token.deploy())],
        [
            chain.command(
                token.contract_id, token.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 100})
            )
        ],
    )
    out = feed(worker, block)
    assert [r.status for r in out.receipts] == ["applied", "applied"]
    return chain, worker, token


def outputs_digest(signed: SignedOutputs, *, chain_id: int = CHAIN_ID) -> bytes:
    return compute_execution_digest(
        ledger=to_checksum_address(LEDGER),
        chain_id=chain_id,
        contract_ids=signed.contract_ids,
        starts=signed.starts,
        end=signed.end,
        end_hash=signed.end_hash,
        state_roots=signed.state_roots,
        commands_applied=signed.commands_applied,
        checkpoint_hash=signed.checkpoint_hash,
        checkpoint_size=signed.checkpoint_size,
    )


def signer_of(signed: SignedOutputs) -> str:
    return recover_signer(outputs_digest(signed), signed.signature)


def eth_address(worker: WorkerRuntime) -> str:
    return to_checksum_address(worker.enclave.identity.eth_address)


def accepted_logs(
    worker: WorkerRuntime, contracts: list[Contract], start: int, end: int, end_hash: bytes
) -> list[EventLog]:
    """The OutputAccepted events of a submit of ``worker``'s own roots."""
    return [
        output_accepted_log(
            c.contract_id,
            start=start,
            end=end,
            end_hash=end_hash,
            state_root=worker.get_contract(c.contract_id).state_root,
            commands_applied=worker.get_contract(c.contract_id).commands_applied,
        )
        for c in contracts
    ]


# ----------------------------------------------------------------------------- events


def test_event_topics_are_the_compiled_contracts_topics() -> None:
    expected = {
        ("CommandInbox", "Command"): COMMAND_TOPIC,
        ("ContractRegistry", "ContractKeyPublished"): KEY_PUBLISHED_TOPIC,
        ("ExecutionLedger", "OutputAccepted"): OUTPUT_ACCEPTED_TOPIC,
        ("ExecutionLedger", "CheckpointRecorded"): CHECKPOINT_RECORDED_TOPIC,
    }
    for (name, event), topic in expected.items():
        codec = AbiCodec(compile_contract(name).abi)
        assert codec.event_by_name(event).topic == topic, (name, event)
    # and the builder's logs decode with the compiled ABIs as the real contracts' would
    ledger = AbiCodec(compile_contract("ExecutionLedger").abi)
    log = checkpoint_recorded_log(
        b"\x11" * 32, height=7, block_hash=b"\x22" * 32, size=9, contract_ids=[b"\x33" * 32]
    )
    decoded = ledger.events[log.topics[0]].decode(log.topics, log.data)
    assert decoded["height"] == 7 and decoded["contract_ids"] == [b"\x33" * 32]
    assert decoded["blob_hash"] == b"\x11" * 32 and decoded["node_id"] == NODE_ID
    inbox = AbiCodec(compile_contract("CommandInbox").abi)
    log = command_log(b"\x44" * 32, 5, b"ciphertext")
    decoded = inbox.events[COMMAND_TOPIC].decode(log.topics, log.data)
    assert decoded["seq"] == 5 and decoded["ciphertext"] == b"ciphertext"


# ----------------------------------------------------------------------------- applying


def test_verified_blocks_apply_the_commands_in_evidence_like_the_unverified_path() -> None:
    chain, token = ChainBuilder(), Contract(1)
    verified = new_worker(token, chain=chain)
    plain = new_worker(token)
    blocks = [
        chain.next(
            [chain.command(token.contract_id, token.deploy())],
            [
                chain.command(
                    token.contract_id,
                    token.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 100}),
                )
            ],
        ),
        chain.next(),
        chain.next(
            [
                EventLog(address=STRANGER, topics=[keccak(b"Noise()")], data=b""),
                chain.command(
                    token.contract_id,
                    token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40}),
                ),
            ]
        ),
    ]
    seen_roots = []
    for evidence in blocks:
        out_v = feed(verified, evidence)
        commands = commands_in(evidence)
        out_p = plain.process_block(
            BlockInput(
                number=evidence.header.number,
                block_hash=block_hash_of(evidence),
                commands=commands,
            )
        )
        assert [(r.seq, r.status) for r in out_v.receipts] == [(c.seq, "applied") for c in commands]
        assert [(r.seq, r.status) for r in out_p.receipts] == [
            (r.seq, r.status) for r in out_v.receipts
        ]
        assert [(c.contract_id, c.state_root, c.command_count) for c in out_v.contracts] == [
            (c.contract_id, c.state_root, c.command_count) for c in out_p.contracts
        ]
        seen_roots.append(verified.get_contract(token.contract_id).state_root)
    assert [c.log_index for c in commands_in(blocks[2])] == [1]  # block-wide log index
    assert len(set(seen_roots)) == 2  # the empty block changed nothing
    assert roots(verified) == roots(plain)
    assert balances(verified, token) == balances(plain, token) == (60, 40)
    assert verified.view is not None
    assert (verified.view.number, verified.view.hash) == (ANCHOR_NUMBER + 3, chain.head_hash)
    assert verified.latest_block == ANCHOR_NUMBER + 3


# ----------------------------------------------------------------------------- a lying host

Tamper = Callable[[ChainBuilder, BlockEvidence, Contract], BlockEvidence]


def _with_receipt(evidence: BlockEvidence, index: int, **fields: Any) -> BlockEvidence:
    receipts = list(evidence.receipts)
    receipts[index] = replace(receipts[index], **fields)
    return replace(evidence, receipts=receipts)


def _drop_log(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return _with_receipt(honest, 1, logs=honest.receipts[1].logs[:-1])


def _inject_command(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    extra = token.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 1000}, nonce=4)
    logs = [*honest.receipts[0].logs, command_log(token.contract_id, 77, extra)]
    return _with_receipt(honest, 0, logs=logs)


def _reorder_receipts(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return replace(honest, receipts=honest.receipts[::-1])


def _alter_ciphertext(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    log = honest.receipts[0].logs[0]
    data = bytearray(log.data)
    data[4 * 32 + 5] ^= 1  # after seq, sender, offset and length: the ciphertext itself
    return _with_receipt(honest, 0, logs=[replace(log, data=bytes(data))])


def _mark_failed(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return _with_receipt(honest, 1, status=0)  # "that transaction reverted"


def _alter_receipts_root(
    chain: ChainBuilder, honest: BlockEvidence, token: Contract
) -> BlockEvidence:
    return replace(honest, header=replace(honest.header, receipts_root=keccak(b"other")))


def _alter_number(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return replace(honest, header=replace(honest.header, number=honest.header.number + 1))


def _alter_parent(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return replace(honest, header=replace(honest.header, parent_hash=keccak(b"elsewhere")))


def _short_bloom(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return replace(honest, header=replace(honest.header, logs_bloom=bytes(255)))


def _gap_in_optional_fields(
    chain: ChainBuilder, honest: BlockEvidence, token: Contract
) -> BlockEvidence:
    return replace(honest, header=replace(honest.header, blob_gas_used=None))


def _skip_block(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    chain.append(honest)
    return chain.build()  # the block after the honest one


def _repeat_block(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    return chain.blocks[chain.number]  # the block the runtime already applied


def _fork_block(chain: ChainBuilder, honest: BlockEvidence, token: Contract) -> BlockEvidence:
    fork = chain.fork(ANCHOR_NUMBER, salt=b"fork")
    fork.next(*[r.logs for r in chain.blocks[chain.number].receipts])
    return fork.build(*[r.logs for r in honest.receipts])  # same contents, other parent


TAMPERING: list[tuple[str, Tamper, type[LightClientError]]] = [
    ("dropped log", _drop_log, ReceiptsRootMismatch),
    ("injected command log", _inject_command, ReceiptsRootMismatch),
    ("reordered receipts", _reorder_receipts, ReceiptsRootMismatch),
    ("altered ciphertext", _alter_ciphertext, ReceiptsRootMismatch),
    ("receipt marked failed", _mark_failed, ReceiptsRootMismatch),
    ("altered receipts root", _alter_receipts_root, ReceiptsRootMismatch),
    ("altered number", _alter_number, BrokenHeaderLink),
    ("altered parent hash", _alter_parent, BrokenHeaderLink),
    ("wrong-size header field", _short_bloom, EvidenceMalformed),
    ("gap in the optional fields", _gap_in_optional_fields, EvidenceMalformed),
    ("skipped block", _skip_block, BrokenHeaderLink),
    ("repeated block", _repeat_block, BrokenHeaderLink),
    ("block of another fork", _fork_block, BrokenHeaderLink),
]


@pytest.mark.parametrize(
    ("tamper", "expected"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_tampered_evidence_is_refused_and_changes_nothing(
    tamper: Tamper, expected: type[LightClientError]
) -> None:
    chain, worker, token = deployed_world()
    honest = chain.build(
        [
            chain.command(
                token.contract_id, token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
            )
        ],
        [
            EventLog(address=STRANGER, topics=[], data=b"anonymous"),
            chain.command(
                token.contract_id, token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 5})
            ),
        ],
    )
    tampered = tamper(chain, honest, token)
    assert tampered != honest
    before = snapshot(worker)
    with pytest.raises(expected):
        feed(worker, tampered)
    assert snapshot(worker) == before
    out = feed(worker, honest)
    assert [r.status for r in out.receipts] == ["applied", "applied"]
    assert balances(worker, token) == (55, 45)
    assert worker.view is not None and worker.view.hash == block_hash_of(honest)


def test_host_assembled_commands_are_refused() -> None:
    chain, worker, token = deployed_world()
    honest = chain.build(
        [
            chain.command(
                token.contract_id, token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
            )
        ]
    )
    commands = commands_in(honest)
    before = snapshot(worker)
    number, block_hash = honest.header.number, block_hash_of(honest)
    for block in (
        as_input(honest, commands=commands),  # evidence plus the host's own list
        BlockInput(number=number, block_hash=block_hash, commands=commands),
        BlockInput(number=number, block_hash=block_hash),
    ):
        with pytest.raises(errors.EvidenceRequired):
            worker.process_block(block)
        assert snapshot(worker) == before
    assert feed(worker, honest).receipts[0].status == "applied"


def test_look_alike_events_from_other_addresses_are_ignored() -> None:
    chain, worker, token = deployed_world()
    transfer = token.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
    hash_before = chain.head_hash
    wrong_root = keccak(b"not our root")
    block = chain.next(
        [command_log(token.contract_id, 50, transfer, address=STRANGER)],
        [
            output_accepted_log(
                token.contract_id,
                start=0,
                end=ANCHOR_NUMBER + 1,
                end_hash=hash_before,
                state_root=wrong_root,
                commands_applied=9,
                address=STRANGER,
            ),
            key_published_log(b"\x66" * 32, b"\x01" * 32, b"\x02" * 32, address=STRANGER),
            checkpoint_recorded_log(
                keccak(b"blob"),
                height=ANCHOR_NUMBER + 1,
                block_hash=hash_before,
                size=10,
                contract_ids=[token.contract_id],
                address=STRANGER,
            ),
        ],
        # the right address with another event's topic is no command either
        [EventLog(address=INBOX, topics=[keccak(b"Other(bytes32)"), token.contract_id], data=b"")],
    )
    before = roots(worker)
    out = feed(worker, block)
    assert out.receipts == [] and out.contracts == []
    assert roots(worker) == before
    assert worker.accepted == {} and worker.diverged == {} and worker.directory == {}
    assert worker.checkpoint_heights == {}
    # the same ciphertext through the real inbox is a valid command
    out = feed(worker, chain.next([chain.command(token.contract_id, transfer)]))
    assert [r.status for r in out.receipts] == ["applied"]
    assert balances(worker, token) == (60, 40)


@pytest.mark.parametrize("fault", ["undecodable data", "missing indexed topic"])
def test_a_malformed_management_event_refuses_the_block(fault: str) -> None:
    chain, worker, token = deployed_world()
    good = chain.command(token.contract_id, token.command(ALICE, "mint", {"to": BOB_PUB}))
    if fault == "undecodable data":
        bad = replace(good, data=good.data[:40])
    else:
        bad = replace(good, topics=good.topics[:1])
    block = chain.build([good], [bad])
    before = snapshot(worker)
    with pytest.raises(errors.MalformedEvent):
        feed(worker, block)
    assert snapshot(worker) == before


def test_a_fabricated_header_is_exposed_by_the_next_real_block() -> None:
    """The documented bound of the light client: a well-formed child of the last verified
    block with an altered header field (here its timestamp and state root) hashes
    differently but links to the chain, so nothing can refute it yet; the real next
    block cannot link to it, and outputs signed on it name a hash the ledger's
    ``blockhash(end)`` check refuses."""
    chain, worker, token = deployed_world()
    honest = chain.next()
    following = chain.next()
    header = replace(
        honest.header, timestamp=honest.header.timestamp + 1, state_root=keccak(b"forged")
    )
    forged = replace(honest, header=header)
    feed(worker, forged)
    assert worker.view is not None and worker.view.hash != chain.hashes[honest.header.number]
    before = snapshot(worker)
    with pytest.raises(BrokenHeaderLink):
        feed(worker, following)
    assert snapshot(worker) == before
    signed = worker.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))
    assert signed.end == honest.header.number
    assert signed.end_hash != chain.hashes[honest.header.number]


# ----------------------------------------------------------------------------- configuration


def test_configure_chain_once() -> None:
    chain, token = ChainBuilder(), Contract(1)
    worker = new_worker(token)
    with pytest.raises(errors.ChainNotConfigured):
        worker.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))
    with pytest.raises(errors.ChainNotConfigured):
        worker.make_checkpoint(MakeCheckpoint(contract_ids=[token.contract_id]))
    config = chain.config()
    worker.configure_chain(config)
    view = worker.view
    assert view is not None and worker.latest_block == ANCHOR_NUMBER
    feed(worker, chain.next())
    worker.configure_chain(config)  # the same config again: nothing happens
    assert worker.view is view and view.number == ANCHOR_NUMBER + 1
    for other in (
        replace(config, anchor_number=ANCHOR_NUMBER + 1, anchor_hash=chain.head_hash),
        replace(config, anchor_hash=keccak(b"other anchor")),
        replace(config, execution_ledger=STRANGER),
        replace(config, chain_id=1),
    ):
        with pytest.raises(errors.ChainAlreadyConfigured):
            worker.configure_chain(other)
        assert worker.view is view and view.config == config
        assert view.number == ANCHOR_NUMBER + 1 and view.hash == chain.head_hash


# ----------------------------------------------------------------------------- outputs


def test_outputs_follow_the_accepted_ranges() -> None:
    chain, a, b = ChainBuilder(), Contract(1), Contract(2)
    worker = new_worker(a, b, chain=chain)
    feed(
        worker,
        chain.next(
            [chain.command(a.contract_id, a.deploy())],
            [chain.command(b.contract_id, b.deploy())],
            [
                chain.command(
                    a.contract_id, a.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 100})
                ),
                chain.command(
                    b.contract_id, b.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 7})
                ),
            ],
        ),
    )
    feed(worker, chain.next())
    ids = [a.contract_id, b.contract_id]
    first = worker.sign_outputs(SignOutputs(contract_ids=ids, with_checkpoint=True))
    end = ANCHOR_NUMBER + 2
    assert first.contract_ids == ids and first.starts == [0, 0]
    assert (first.end, first.end_hash) == (end, chain.hashes[end])
    assert first.state_roots == [worker.get_contract(c).state_root for c in ids]
    assert first.commands_applied == [2, 2]
    # the checkpoint is sealed at exactly the signed end, and the signature covers it
    blob = decode(first.checkpoint, CheckpointBlob)
    assert (blob.height, blob.block_hash) == (first.end, first.end_hash)
    assert sorted(blob.states) == sorted(c.hex() for c in ids)
    assert first.checkpoint_hash == keccak(first.checkpoint)
    assert first.checkpoint_size == len(first.checkpoint)
    assert signer_of(first) == eth_address(worker)
    assert recover_signer(outputs_digest(first, chain_id=1), first.signature) != eth_address(worker)

    # the ledger accepts (0, end] for both; the next outputs start there
    feed(worker, chain.next(accepted_logs(worker, [a, b], 0, end, chain.hashes[end])))
    assert worker.diverged == {} and set(worker.accepted) == set(ids)
    second = worker.sign_outputs(SignOutputs(contract_ids=ids))
    assert second.starts == [end, end] and second.end == end + 1
    assert signer_of(second) == eth_address(worker)
    nothing = worker.sign_outputs(SignOutputs(contract_ids=ids, only_changed=True))
    assert nothing.contract_ids == [] and nothing.starts == [] and nothing.state_roots == []
    assert nothing.signature == b""

    # only A changes: only A is signed, from the accepted end
    out = feed(
        worker,
        chain.next(
            [
                chain.command(
                    a.contract_id, a.command(ALICE, "transfer", {"to": BOB_PUB, "amount": 1})
                )
            ]
        ),
    )
    assert [r.status for r in out.receipts] == ["applied"]
    changed = worker.sign_outputs(SignOutputs(contract_ids=ids, only_changed=True))
    assert changed.contract_ids == [a.contract_id] and changed.starts == [end]
    assert changed.end == end + 2 and changed.end_hash == chain.head_hash
    assert changed.state_roots == [worker.get_contract(a.contract_id).state_root]
    assert signer_of(changed) == eth_address(worker)


@pytest.mark.parametrize("what", ["state root", "command count"])
def test_an_accepted_output_we_disagree_with_withholds_that_contract(what: str) -> None:
    chain, a, b = ChainBuilder(), Contract(1), Contract(2)
    worker = new_worker(a, b, chain=chain)
    feed(
        worker,
        chain.next(
            [chain.command(a.contract_id, a.deploy())],
            [chain.command(b.contract_id, b.deploy())],
        ),
    )
    feed(worker, chain.next())
    end = ANCHOR_NUMBER + 2
    ours = worker.get_contract(b.contract_id)
    theirs = output_accepted_log(
        b.contract_id,
        start=0,
        end=end,
        end_hash=chain.hashes[end],
        state_root=keccak(b"another root") if what == "state root" else ours.state_root,
        commands_applied=ours.commands_applied + (what == "command count"),
        node_id=keccak(b"another worker"),
    )
    unknown = output_accepted_log(
        b"\x77" * 32,
        start=0,
        end=end,
        end_hash=chain.hashes[end],
        state_root=b"\x01" * 32,
        commands_applied=1,
    )
    feed(
        worker,
        chain.next([*accepted_logs(worker, [a], 0, end, chain.hashes[end]), theirs, unknown]),
    )
    assert set(worker.diverged) == {b.contract_id}
    with pytest.raises(errors.OutputsRefused):
        worker.sign_outputs(SignOutputs(contract_ids=[b.contract_id]))
    with pytest.raises(errors.OutputsRefused):
        worker.sign_outputs(SignOutputs(contract_ids=[a.contract_id, b.contract_id]))
    signed = worker.sign_outputs(SignOutputs(contract_ids=[a.contract_id]))
    assert signed.contract_ids == [a.contract_id] and signed.starts == [end]
    assert signer_of(signed) == eth_address(worker)


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_world(
    *contracts: Contract,
) -> tuple[ChainBuilder, WorkerRuntime, list[Contract]]:
    """Runtime A: tokens deployed and minted in block 101, a transfer in 102, then an
    empty block 103 (so the contracts' own height, 102, is below the view's)."""
    chain = ChainBuilder()
    tokens = list(contracts) or [Contract(1)]
    worker = new_worker(*tokens, chain=chain)
    txs: list[list[EventLog]] = []
    for token in tokens:
        txs.append([chain.command(token.contract_id, token.deploy())])
        mint = token.command(ALICE, "mint", {"to": ALICE_PUB, "amount": 100})
        txs.append([chain.command(token.contract_id, mint)])
    feed(worker, chain.next(*txs))
    transfer = tokens[0].command(ALICE, "transfer", {"to": BOB_PUB, "amount": 40})
    feed(worker, chain.next([chain.command(tokens[0].contract_id, transfer)]))
    feed(worker, chain.next())
    return chain, worker, tokens


def restore(worker: WorkerRuntime, chain: ChainBuilder, blob: bytes, *contracts: Contract) -> Any:
    return worker.restore_checkpoint(
        RestoreCheckpoint(
            blob=blob, installs=[c.install_request(worker) for c in contracts], chain=chain.config()
        )
    )


def record_logs(at: Roots, chain: ChainBuilder, blob: bytes, height: int) -> list[EventLog]:
    """What ExecutionLedger.submit logs when it records ``blob`` with outputs ending at
    ``height``: OutputAccepted per contract (``at``: the roots there, as the checkpoint's
    maker signed them), then CheckpointRecorded."""
    return [
        *(
            output_accepted_log(
                cid,
                start=0,
                end=height,
                end_hash=chain.hashes[height],
                state_root=root,
                commands_applied=applied,
            )
            for cid, (root, applied, _) in at.items()
        ),
        checkpoint_recorded_log(
            keccak(blob),
            height=height,
            block_hash=chain.hashes[height],
            size=len(blob),
            contract_ids=list(at),
        ),
    ]


def test_a_restored_checkpoint_resumes_and_signs_once_recorded() -> None:
    chain, a, (token,) = checkpoint_world()
    height = ANCHOR_NUMBER + 3
    blob = a.make_checkpoint(MakeCheckpoint(contract_ids=[token.contract_id]))
    at = roots(a)
    parsed = decode(blob, CheckpointBlob)
    assert (parsed.height, parsed.block_hash) == (height, chain.hashes[height])

    b = WorkerRuntime(EXECUTORS[0])
    assert b.identity_key != a.identity_key
    (status,) = restore(b, chain, blob, token)
    assert status.state_root == a.get_contract(token.contract_id).state_root
    assert roots(b) == roots(a)
    assert b.view is not None and (b.view.number, b.view.hash) == (height, chain.hashes[height])
    assert balances(b, token) == balances(a, token) == (60, 40)
    with pytest.raises(errors.OutputsRefused):
        b.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))

    later = token.command(BOB, "transfer", {"to": ALICE_PUB, "amount": 5})
    block = chain.next([chain.command(token.contract_id, later)])
    out_a = feed(a, block)
    out_b = feed(b, block)
    assert [r.status for r in out_b.receipts] == ["applied"]
    assert out_a.contracts[0].state_root == out_b.contracts[0].state_root
    assert roots(b) == roots(a)
    with pytest.raises(errors.OutputsRefused):
        b.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))

    block = chain.next(record_logs(at, chain, blob, height))
    feed(a, block)
    feed(b, block)
    assert roots(b) == roots(a) and b.pending_checkpoint is None
    assert b.checkpoint_heights[token.contract_id] == height
    signed_b = b.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))
    signed_a = a.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))
    assert signed_b.starts == [height] and signed_b.end == height + 2
    assert signer_of(signed_b) == eth_address(b)
    assert replace(signed_b, signature=b"") == replace(signed_a, signature=b"")


def _flip(data: bytes, index: int) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= 1
    return bytes(flipped)


def test_tampered_checkpoints_are_refused_and_change_nothing() -> None:
    chain, a, (token, other) = checkpoint_world(Contract(1), Contract(2))
    blob = a.make_checkpoint(MakeCheckpoint(contract_ids=[token.contract_id]))
    parsed = decode(blob, CheckpointBlob)
    (sealed,) = parsed.states.values()
    bad_blobs = [
        encode(replace(parsed, states={token.contract_id.hex(): _flip(sealed, len(sealed) // 2)})),
        encode(replace(parsed, states={token.contract_id.hex(): _flip(sealed, 0)})),
        blob[:-1],
        b"",
        b"\xc1" + blob[1:],
    ]
    stride = max(1, len(blob) // 150)
    bad_blobs += [_flip(blob, i) for i in range(0, len(blob), stride)] + [
        _flip(blob, len(blob) - 1)
    ]
    b = WorkerRuntime(EXECUTORS[1])
    fresh = snapshot(b)
    for bad in bad_blobs:
        with pytest.raises(errors.CheckpointRefused):
            restore(b, chain, bad, token)
        assert snapshot(b) == fresh
    for installs in ([], [other], [token, other]):
        with pytest.raises(errors.CheckpointRefused, match="key releases"):
            restore(b, chain, blob, *installs)
        assert snapshot(b) == fresh
    restore(b, chain, blob, token)
    assert roots(b) == {token.contract_id: roots(a)[token.contract_id]}


def test_a_spliced_checkpoint_is_refused() -> None:
    chain, a, (one, two) = checkpoint_world(Contract(1), Contract(2))
    ids = [one.contract_id, two.contract_id]
    early = decode(a.make_checkpoint(MakeCheckpoint(contract_ids=ids)), CheckpointBlob)
    feed(a, chain.next())
    late = decode(a.make_checkpoint(MakeCheckpoint(contract_ids=ids)), CheckpointBlob)
    assert late.height == early.height + 1
    one_hex, two_hex = one.contract_id.hex(), two.contract_id.hex()
    spliced = [
        replace(early, states={one_hex: early.states[one_hex], two_hex: late.states[two_hex]}),
        replace(late, states={one_hex: early.states[one_hex], two_hex: late.states[two_hex]}),
        replace(early, states=late.states),
        replace(late, states=early.states),
        replace(late, height=early.height),  # late states and hash, early height
        replace(late, block_hash=early.block_hash),
    ]
    b = WorkerRuntime(EXECUTORS[2])
    fresh = snapshot(b)
    for blob in spliced:
        with pytest.raises(errors.CheckpointRefused, match="not sealed at the checkpoint"):
            restore(b, chain, encode(blob), one, two)
        assert snapshot(b) == fresh
    restore(b, chain, encode(late), one, two)
    assert roots(b) == roots(a)


def test_an_older_checkpoint_is_stale() -> None:
    chain, a, (token,) = checkpoint_world()
    ids = [token.contract_id]
    early = a.make_checkpoint(MakeCheckpoint(contract_ids=ids))
    feed(a, chain.next())
    late_height = ANCHOR_NUMBER + 4
    late = a.make_checkpoint(MakeCheckpoint(contract_ids=ids))
    at = roots(a)

    # a runtime that already holds the newer state
    b = WorkerRuntime(EXECUTORS[3])
    restore(b, chain, late, token)
    before = snapshot(b)
    with pytest.raises(errors.StaleCheckpoint):
        restore(b, chain, early, token)
    assert snapshot(b) == before

    # a runtime whose own state is older, but which saw the newer checkpoint recorded
    feed(a, chain.next(record_logs(at, chain, late, late_height)))
    assert a.get_contract(token.contract_id).height < decode(early, CheckpointBlob).height
    assert a.checkpoint_heights[token.contract_id] == late_height
    before = snapshot(a)
    with pytest.raises(errors.StaleCheckpoint):
        restore(a, chain, early, token)
    assert snapshot(a) == before

    # the older checkpoint itself is sound: a fresh runtime takes it
    restore(WorkerRuntime(EXECUTORS[0]), chain, early, token)


def test_an_unrecorded_checkpoint_stops_the_runtime_after_the_window() -> None:
    chain, a, (token,) = checkpoint_world()
    height = ANCHOR_NUMBER + 3
    blob = a.make_checkpoint(MakeCheckpoint(contract_ids=[token.contract_id]))
    at = roots(a)
    late, just_in_time = WorkerRuntime(EXECUTORS[1]), WorkerRuntime(EXECUTORS[2])
    restore(late, chain, blob, token)
    restore(just_in_time, chain, blob, token)
    for _ in range(CHECKPOINT_CONFIRM_WINDOW - 1):
        block = chain.next()
        feed(late, block)
        feed(just_in_time, block)
    # block h+256 is the last that may hold the record (the ledger checks blockhash(end))
    recorded = chain.build(record_logs(at, chain, blob, height))
    assert recorded.header.number == height + CHECKPOINT_CONFIRM_WINDOW
    feed(just_in_time, recorded)
    assert just_in_time.pending_checkpoint is None
    assert just_in_time.sign_outputs(SignOutputs(contract_ids=[token.contract_id])).signature

    feed(late, chain.next())  # h+256 without the record
    with pytest.raises(errors.OutputsRefused):
        late.sign_outputs(SignOutputs(contract_ids=[token.contract_id]))
    before = snapshot(late)
    final = chain.next()
    assert final.header.number == height + CHECKPOINT_CONFIRM_WINDOW + 1
    with pytest.raises(errors.CheckpointUnconfirmed):
        feed(late, final)
    assert snapshot(late) == before


def test_a_record_of_our_blob_at_another_height_does_not_half_apply_a_block() -> None:
    """The ledger checks a checkpoint's hash, not its height: another (faulty) worker can
    record our blob's hash with outputs ending elsewhere. The runtime must not confirm
    its resume on that record, and if it refuses the block it must refuse it whole."""
    chain, a, (token,) = checkpoint_world()
    height = ANCHOR_NUMBER + 3
    blob = a.make_checkpoint(MakeCheckpoint(contract_ids=[token.contract_id]))
    b = WorkerRuntime(EXECUTORS[3])
    restore(b, chain, blob, token)
    transfer = token.command(BOB, "transfer", {"to": ALICE_PUB, "amount": 5})
    misplaced = checkpoint_recorded_log(
        keccak(blob),
        height=height - 1,
        block_hash=chain.hashes[height - 1],
        size=len(blob),
        contract_ids=[token.contract_id],
        node_id=keccak(b"a faulty worker"),
    )
    block = chain.next([chain.command(token.contract_id, transfer)], [misplaced])
    before = snapshot(b)
    try:
        out = feed(b, block)
    except errors.CheckpointRefused:
        assert snapshot(b) == before, "the block was applied, then refused"
    else:
        assert [r.status for r in out.receipts] == ["applied"]
        assert b.pending_checkpoint is not None  # not confirmed by a record elsewhere


# ----------------------------------------------------------------------------- directory


def pings() -> tuple[Contract, Contract, list[bytes]]:
    """A Pinger (on a worker driven without a view, which only produces the messages)
    sends two messages to a Ponger of another domain; the messages' ciphertexts."""
    pinger = Contract(1, PINGER, workers=[b"\x01" * 32])
    ponger = Contract(2, PONGER, workers=[b"\x02" * 32])
    sender = new_worker(pinger)
    deploy = pinger.deploy({"target": ponger.contract_id})
    sender.process_block(plain_block(1, (pinger, deploy), directory=[ponger.entry]))
    ping = pinger.command(ALICE, "ping", {"times": 2})
    out = sender.process_block(plain_block(2, (pinger, ping)))
    messages = [m.ciphertext for m in out.messages]
    assert len(messages) == 2 and all(messages)
    return pinger, ponger, messages


def test_a_published_key_in_evidence_lets_messages_from_that_contract_in() -> None:
    pinger, ponger, messages = pings()
    chain = ChainBuilder()
    listening = new_worker(ponger, chain=chain)
    deaf = new_worker(ponger, chain=chain)  # its chain says nothing of the pinger's key
    forged_entry = DirectoryEntry(
        contract_id=pinger.contract_id,
        command_key=pinger.keys.command_public_key,
        message_key=ed25519_keypair(b"f" * 32)[1],
    )
    published = key_published_log(
        pinger.contract_id, pinger.keys.command_public_key, pinger.keys.message_public_key
    )
    deploy_pong = [chain.command(ponger.contract_id, ponger.deploy())]
    fork = chain.fork(ANCHOR_NUMBER, salt=b"deaf")
    # the host slips in a wrong entry: a runtime with a view does not take it
    listening.process_block(as_input(chain.next(deploy_pong), directory=[forged_entry]))
    assert pinger.contract_id not in listening.directory
    feed(listening, chain.next([published]))
    assert listening.directory[pinger.contract_id] == pinger.entry
    feed(deaf, fork.next(deploy_pong, [replace(published, address=STRANGER)]))
    assert pinger.contract_id not in deaf.directory

    posts = [[command_log(ponger.contract_id, 10 + i, m)] for i, m in enumerate(messages)]
    # and a host-supplied entry cannot replace the verified one
    out = listening.process_block(as_input(chain.next(*posts), directory=[forged_entry]))
    assert [r.status for r in out.receipts] == ["applied", "applied"]
    assert listening.directory[pinger.contract_id] == pinger.entry
    assert ask(listening, ponger, "state", {}) == {"total": 3, "seen": [1, 2]}

    before = snapshot(deaf, with_clock=False)
    with pytest.raises(errors.DirectoryIncomplete):
        feed(deaf, fork.next(*posts))
    assert snapshot(deaf, with_clock=False) == before


def test_a_block_refused_whole_does_not_move_the_query_clock() -> None:
    """Signed query answers commit to (block height, state root): after a block refused
    whole, an answer must not claim the old root at the refused block's height."""
    _pinger, ponger, messages = pings()
    chain = ChainBuilder()
    worker = new_worker(ponger, chain=chain)
    feed(worker, chain.next([chain.command(ponger.contract_id, ponger.deploy())]))
    before = snapshot(worker)
    with pytest.raises(errors.DirectoryIncomplete):
        feed(worker, chain.next([command_log(ponger.contract_id, 9, messages[0])]))
    assert snapshot(worker) == before
    query, reply = make_query(
        contract_id=ponger.contract_id,
        caller_private_key=ALICE,
        method="state",
        args={},
        issued_at=0,
    )
    answer, _ = open_answer(query, reply, worker.answer_query(query, 0))
    assert answer.block_height == ANCHOR_NUMBER + 1
