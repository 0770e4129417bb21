"""Messages of the worker runtime: commands, blocks, outputs and queries.

A user's command travels as ``encrypt_to(contract_public_key, SignedCommand, aad)`` in
one ``CommandInbox.Command`` event. Inside the enclave it decrypts to a
:class:`SignedCommand` whose ``body`` is the canonical encoding of a :class:`CommandBody`
signed by the sender's Ed25519 key. The first command of a contract is its deploy
command (method :data:`DEPLOY_METHOD`, arguments :class:`DeployArgs`): it carries the
code, encrypted like any command, so only executors ever see it.

The outcome of every authentic command is a :class:`CommandResult` sealed under the
``result_key`` the sender put inside its (encrypted) command: the host relays the
:class:`Receipt` but cannot read whether the command succeeded or what it returned.
Contracts send each other asynchronous messages the same way: a :class:`SignedMessage`
(a :class:`MessageBody` signed by the source contract's message key) encrypted to the
target contract's command key and posted to the inbox by a worker of the source.
Queries go over HTTP as a :class:`SignedQuery`; the answer is a :class:`SignedAnswer`
encrypted to the query's one-time reply key.
"""

from __future__ import annotations

from typing import Any

from sealbridge.chain.lightclient import BlockEvidence
from sealbridge.chain.proofs import AccountProof
from sealbridge.core.encoding import Message
from sealbridge.core.ids import tagged_hash
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.keyservice.threshold_messages import PartialKeyRelease

COMMAND_AAD_TAG = b"sealbridge/command/v1"
ANSWER_AAD_TAG = b"sealbridge/answer/v1"
STATE_AAD_TAG = b"sealbridge/state/v1"
RESULT_AAD_TAG = b"sealbridge/result/v1"
DEPLOY_METHOD = "sealbridge.deploy"


def command_aad(contract_id: bytes) -> bytes:
    """Associated data binding a command ciphertext to its contract."""
    return COMMAND_AAD_TAG + contract_id


def answer_aad(query_hash: bytes) -> bytes:
    return ANSWER_AAD_TAG + query_hash


def state_aad(contract_id: bytes) -> bytes:
    return STATE_AAD_TAG + contract_id


def compute_deployer_commitment(
    contract_id: bytes, deployer_key: bytes, salt: bytes = b""
) -> bytes:
    """What the chain records of the deployer: a commitment to its identity key. With a
    random ``salt`` (the client uses 16 bytes, revealed only inside the encrypted deploy
    command) it hides the key even from someone testing candidate keys."""
    return tagged_hash("sealbridge/deployer/v1", contract_id + deployer_key + salt)


def result_aad(contract_id: bytes, sender: bytes, nonce: int) -> bytes:
    """Binds a sealed result to its command (contract, sender, nonce)."""
    return RESULT_AAD_TAG + contract_id + sender + nonce.to_bytes(8, "big")


class CommandBody(Message, frozen=True):
    contract_id: bytes
    sender: bytes  # Ed25519 public key of the author
    nonce: int  # strictly increasing per (contract, sender), starting at 1
    method: str
    args: dict[str, Any] = {}
    gas_limit: int = 0  # 0: the platform default
    result_key: bytes = b""  # AES-256-GCM key the outcome is sealed under (empty: no result)


class DeployArgs(Message, frozen=True):
    """Arguments of the deploy command."""

    code: bytes  # contract source; its hash must equal the code hash on chain
    init: dict[str, Any] = {}  # arguments of the contract's @init method
    confidential: bool = False  # refuse the ``code`` query to everyone but the deployer
    salt: bytes = b""  # the deployer commitment's salt


class CommandResult(Message, frozen=True):
    """What the sender learns about its command (sealed under its result key)."""

    contract_id: bytes
    nonce: int
    ok: bool
    value: Any = None
    error: str = ""
    message: str = ""
    gas_used: int = 0


class SignedCommand(Message, frozen=True, tag="command"):
    body: bytes  # canonical CommandBody
    signature: bytes


class MessageBody(Message, frozen=True):
    """An asynchronous message from one contract to another."""

    source: bytes  # the sending contract
    target: bytes
    seq: int  # strictly increasing per (source, target), from 1
    method: str
    args: dict[str, Any] = {}


class SignedMessage(Message, frozen=True, tag="message"):
    body: bytes  # canonical MessageBody
    signature: bytes  # Ed25519 by the source contract's message key


class DirectoryEntry(Message, frozen=True):
    """A contract's published keys, as the host read them from ContractKeyPublished."""

    contract_id: bytes
    command_key: bytes  # X25519: messages to it are encrypted to this
    message_key: bytes  # Ed25519: its messages are signed by this
    # after a key rotation: the message key of the version before, which still verifies
    # the messages the contract sent before its rotation (delivered after it)
    previous_message_key: bytes = b""


class OutgoingMessage(Message, frozen=True):
    """A message a block produced, for the host to post to the target's inbox."""

    source: bytes
    target: bytes
    seq: int
    ciphertext: bytes  # empty when the target's key is not known yet (not deliverable)


class InboxCommand(Message, frozen=True):
    """One Command event as the host saw it on chain."""

    contract_id: bytes
    seq: int
    tx_index: int
    log_index: int
    ciphertext: bytes


class BlockInput(Message, frozen=True):
    """One block for the runtime.

    With a verified chain view (the normal case) the host sends ``evidence`` -- the full
    header and every receipt -- and the runtime reads the commands and keys out of it
    itself; ``commands`` must then be empty. Without one (tests and tools that drive the
    runtime directly) ``commands`` are taken as given, in chain order.
    ``directory``: published keys of other contracts, taken only without a view (with
    one, keys come from verified ContractKeyPublished events, sealed states, and state
    proofs of the ContractRegistry: ``key_proof`` for ``key_proof_ids``, which the host
    adds when the runtime refused the block with ``DirectoryIncomplete``)."""

    number: int
    block_hash: bytes
    commands: list[InboxCommand] = []
    directory: list[DirectoryEntry] = []
    evidence: BlockEvidence | None = None
    # with evidence: ContractRegistry records of message sources the runtime asked for
    # (DirectoryIncomplete), proven at this block's state root
    key_proof: AccountProof | None = None
    key_proof_ids: list[bytes] = []


class Receipt(Message, frozen=True):
    """What the host learns of one command. ``status`` is ``"applied"`` for an authentic
    command (its outcome is in ``sealed_result``, readable only by the sender), or the
    code of the runtime's refusal (wrong key, bad signature, replay ...)."""

    contract_id: bytes
    seq: int
    status: str
    sealed_result: bytes = b""


class ContractOutput(Message, frozen=True):
    """One contract's state after a block that changed it."""

    contract_id: bytes
    state_root: bytes
    command_count: int
    sealed_state: bytes  # state encrypted under the contract's state key


class BlockOutput(Message, frozen=True):
    """What a block gave: the changed contracts' sealed states, and the receipts and
    messages released now (with a verified view the witness rule may hold them back:
    ``held`` counts the items still waiting, released later by ``release_outputs``)."""

    number: int
    contracts: list[ContractOutput]
    receipts: list[Receipt]
    messages: list[OutgoingMessage] = []
    held: int = 0


class InstallContract(Message, frozen=True):
    """Install a contract. Its key comes as ``releases``: partial signatures from ``t``
    gatekeepers of the committee, each encrypted to this worker, which the runtime checks
    against ``group`` and combines (or, for tools and tests that hold a contract key, as
    ``wrapped_key``: the whole key ECIES-encrypted to this worker)."""

    contract_id: bytes
    code_hash: bytes
    contract_public_key: bytes
    wrapped_key: bytes  # the whole contract key, ECIES-encrypted to this worker (tools/tests)
    gatekeeper_key: bytes  # Ed25519 identity of the gatekeeper that released it (or b"")
    deployer_commitment: bytes  # commitment to the key whose deploy command installs the code
    workers: list[bytes]  # the executor set (contracts with the same set may call each other)
    sealed_state: bytes = b""  # resume from this sealed state when given
    resume_height: int = 0  # the host's saved height (at least the sealed state's)
    releases: list[PartialKeyRelease] = []  # the committee's partials (instead of wrapped_key)
    group: GroupPublicKeys | None = None  # the committee's public keys, to check them
    key_version: int = 0  # the version of the contract key released (and of sealed_state)


class StageContractKey(Message, frozen=True):
    """The next version of an installed contract's key, released by the committee after a
    ContractKeyRotated event; the runtime keeps it until it reads that event in a
    verified block and switches to it after that block."""

    contract_id: bytes
    version: int
    contract_public_key: bytes  # as the host read it (checked again against the event)
    releases: list[PartialKeyRelease]
    group: GroupPublicKeys


class ContractStatus(Message, frozen=True):
    contract_id: bytes
    height: int
    state_root: bytes
    commands_applied: int
    phase: str = "running"
    key_version: int = 0


class QueryBody(Message, frozen=True):
    contract_id: bytes
    method: str
    caller: bytes  # Ed25519 public key
    reply_key: bytes  # one-time X25519 public key the answer is encrypted to
    issued_at: int  # unix seconds, chosen by the caller
    args: dict[str, Any] = {}


class SignedQuery(Message, frozen=True):
    body: bytes  # canonical QueryBody
    signature: bytes


class QueryAnswer(Message, frozen=True):
    contract_id: bytes
    method: str
    args: dict[str, Any]
    caller: bytes
    query_hash: bytes
    result: Any
    block_height: int
    state_root: bytes


class SignedAnswer(Message, frozen=True):
    answer: bytes  # canonical QueryAnswer
    signature: bytes  # Ed25519 over ANSWER_SIGN_TAG + answer
    worker_key: bytes  # the worker's Ed25519 identity key


class ChainConfig(Message, frozen=True):
    """Which chain and which management contracts the runtime follows, and the trusted
    block its header chain starts from."""

    chain_id: int
    command_inbox: bytes  # 20-byte addresses
    contract_registry: bytes
    execution_ledger: bytes
    anchor_number: int
    anchor_hash: bytes


class SignOutputs(Message, frozen=True):
    """Ask the enclave to sign ExecutionLedger outputs for these contracts, ending at the
    newest verified block (it signs only roots it computed). With ``only_changed`` it
    leaves out contracts whose root and count equal their last accepted output. With
    ``with_checkpoint`` it also seals their states at that same block into a checkpoint
    blob, whose hash and size the signature covers (one ECALL, so the two cannot drift
    apart while the host follows the chain)."""

    contract_ids: list[bytes]
    only_changed: bool = False
    with_checkpoint: bool = False  # seal the contracts' states at ``end`` into a checkpoint


class SignedOutputs(Message, frozen=True):
    """Signed ExecutionLedger.submit arguments (``contract_ids`` empty: nothing to sign)."""

    contract_ids: list[bytes]
    starts: list[int]
    end: int
    end_hash: bytes
    state_roots: list[bytes]
    commands_applied: list[int]
    checkpoint_hash: bytes
    checkpoint_size: int
    signature: bytes
    checkpoint: bytes = b""  # the CheckpointBlob the hash commits to (with_checkpoint)


class CheckpointBlob(Message, frozen=True):
    """A checkpoint: the sealed states of a domain's contracts, all valid at ``height``
    (whose block hash is ``block_hash``). Its keccak is what the ledger records."""

    height: int
    block_hash: bytes
    states: dict[str, bytes]  # contract id hex -> state sealed under its state key


class MakeCheckpoint(Message, frozen=True):
    contract_ids: list[bytes]


class RestoreCheckpoint(Message, frozen=True):
    """Resume a fresh runtime from a checkpoint: the blob, one key release per contract
    in it (``sealed_state`` empty; the blob supplies it) and the chain to follow (its
    anchor fields are ignored: the checkpoint is the anchor)."""

    blob: bytes
    installs: list[InstallContract]
    chain: ChainConfig  # anchor fields ignored: the checkpoint is the anchor


class WitnessBody(Message, frozen=True):
    """What a worker enclave vouches for: on the chain it verified (``chain_id``, with
    ``command_inbox`` naming the deployment), block ``height`` has hash ``block_hash``."""

    chain_id: int
    command_inbox: bytes
    height: int
    block_hash: bytes


class BlockWitness(Message, frozen=True):
    """A :class:`WitnessBody` signed by a worker enclave's identity key (``worker``)."""

    worker: bytes
    body: bytes  # canonical WitnessBody
    signature: bytes  # Ed25519 over WITNESS_SIGN_TAG + body


class WitnessRequest(Message, frozen=True):
    """Ask an enclave to witness block ``height`` (or its newest verified block, if it has
    not reached ``height`` yet)."""

    height: int


class Witnesses(Message, frozen=True):
    """Peers' witnesses the host hands to its enclave (see :mod:`runtime.witness`)."""

    witnesses: list[BlockWitness] = []


class WitnessedQuery(Message, frozen=True):
    """A caller's signed query (canonical :class:`SignedQuery` bytes, passed through as the
    caller sent them) with the witnesses the host collected for it."""

    query: bytes
    witnesses: list[BlockWitness] = []


class HeldOutputs(Message, frozen=True):
    """What a block gave that waits for witnesses: its command receipts (sealed results)
    and the messages its contracts sent, released once a majority of the contract's
    executors vouched for the block."""

    number: int
    receipts: list[Receipt] = []
    messages: list[OutgoingMessage] = []


class ReleasedOutputs(Message, frozen=True):
    """Receipts and messages released by the witness rule, oldest block first; ``held``
    counts the items still waiting and ``witnessed`` is the newest height the witnesses
    cover for every installed contract."""

    blocks: list[HeldOutputs] = []
    held: int = 0
    witnessed: int = 0


MESSAGE_SIGN_TAG = b"sealbridge/message-sig/v1"
WITNESS_SIGN_TAG = b"sealbridge/block-witness/v1"
ANSWER_SIGN_TAG = b"sealbridge/query-answer/v1"
COMMAND_SIGN_TAG = b"sealbridge/command-sig/v1"
QUERY_SIGN_TAG = b"sealbridge/query-sig/v1"
