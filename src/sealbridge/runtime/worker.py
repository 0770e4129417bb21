"""The worker runtime: the trusted core that executes contracts inside the enclave.

Theory of operation
-------------------
The host (untrusted) follows the chain and hands the runtime, block by block, every
encrypted command addressed to the contracts this worker runs (:class:`BlockInput`). The
block is one atomic unit (RaceTEE's global order): its commands are applied in chain
order -- (transaction index, log index) -- across all contracts, and if the block cannot
be applied as a whole the runtime undoes all of it. For every command the runtime

1. decrypts it with the contract's command key (user layer) -- else ``WrongKeyError``;
2. decodes the canonical :class:`SignedCommand` and checks the author's Ed25519 signature
   over the body -- else ``MalformedCommand`` / ``BadCommandSignature``;
3. checks the body names this contract and carries the next nonce of its sender -- else
   ``WrongContract`` / ``ReplayedCommand``;
4. consumes the nonce and runs the command in the contract executor (WebAssembly VM, fuel-metered;
   a synchronous call tree spans the contracts of one domain). A failed command reverts
   itself only.

The first command a contract accepts is its deploy command, from the deployer key the
chain recorded, carrying code whose hash matches the chain's code hash: the runtime
compiles it (deploy-time checks), runs its ``@init`` and from then on the contract is
``RUNNING``. Before that it is ``AWAITING_CODE`` and refuses everything else.

Contracts also receive asynchronous messages (PODG's egress events): a contract that
calls ``self.send`` in a successful command produces a :class:`SignedMessage` -- numbered
per (source, target), signed with the source's message key, encrypted to the target's
command key -- which the host posts to the inbox; it is delivered in a later block, in
chain order, and accepted once (its number must exceed the last one accepted from that
source). The keys of other contracts come from the host (``BlockInput.directory``, read
from ContractKeyPublished events); a message from a source the directory lacks refuses
the whole block rather than the message, so withholding a directory entry cannot make one
worker drop a message the others accept. With a verified chain view
(:mod:`sealbridge.runtime.chainview`) the runtime reads commands, messages and keys out of
the block's receipts itself, so a host can no longer leave events out either.

Refusals in steps 1-3 change nothing and the receipt names them. The outcome of an
authentic command -- ok or the contract's error, its result, gas used -- is sealed under
the result key inside the command, so only its sender can read it. After the block every
contract whose state changed gets a new state root -- a salted commitment to its storage,
nonces and code hash -- and its state is sealed under its state key (state layer).
Two runtimes given the same blocks compute the same roots.

Contract key rotation: a verified block with ``ContractKeyRotated(contract, v)`` makes
the contract's executors switch to key version ``v`` after that block. The host stages
the new version first (:meth:`WorkerRuntime.stage_contract_key`: the committee's partials
for ``compute_key_id(contract, v)``, combined and checked like an install); without it
the block is refused with ``KeyRotationPending`` and nothing changes. After the block the
runtime drops the old keys, recomputes the root under the new salt and seals the state
under the new state key. Commands and messages encrypted to the old key that land after
the rotation block are refused (``wrong_key``); messages the contract signed before its
rotation still verify under the previous message key kept in the directory.

Queries arrive signed by the caller; the answer commits to (block height, state root), is
signed by the worker's identity key and is encrypted to the caller's one-time reply key,
so the host relaying it learns nothing. Randomness (AEAD nonces) is an input.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, cast

from sealbridge.chain.abi import compute_execution_digest
from sealbridge.chain.proofs import ProofInvalid, verify_slots
from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import (
    CallOutcome,
    ContractProgram,
    Deployed,
    Executor,
    compute_code_hash,
    compute_domain,
    load_program,
)
from sealbridge.contracts.gas import DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT
from sealbridge.contracts.storage import Journal, PersistedStorage, Storage
from sealbridge.core.encoding import Message, check_nesting, decode, decode_canonical, encode
from sealbridge.core.errors import DecryptionError, EncodingError, InvalidSignature
from sealbridge.core.ids import hash_message, keccak, tagged_hash
from sealbridge.crypto import aead, ecies
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.keyschedule import (
    ContractKeys,
    compute_contract_keys,
    compute_key_id,
    key_release_aad,
)
from sealbridge.crypto.shamir import ThresholdError
from sealbridge.crypto.signing import ed25519_sign, ed25519_verify, to_checksum_address
from sealbridge.keyservice.chainfacts import get_key_slots
from sealbridge.keyservice.threshold import combine_released_key
from sealbridge.keyservice.threshold_messages import PartialKeyRelease, compute_install_binding
from sealbridge.runtime.chainview import (
    AcceptedOutputEvent,
    BlockFacts,
    ChainView,
    CheckpointEvent,
    DeploymentEvent,
    KeyRotationEvent,
    require_view,
)
from sealbridge.runtime.errors import (
    BadCommandSignature,
    BlockFull,
    ChainAlreadyConfigured,
    CheckpointRefused,
    CheckpointUnconfirmed,
    DirectoryIncomplete,
    EvidenceRequired,
    InstallFactsMismatch,
    InstallFactsUnverified,
    KeyMismatch,
    KeyRotationPending,
    MalformedCommand,
    MessageTooEarly,
    NotWitnessed,
    OutputsRefused,
    QueryRefused,
    ReplayedCommand,
    RuntimeRefusal,
    StaleBlock,
    StaleCheckpoint,
    UnknownContract,
    UnknownSource,
    WitnessUnavailable,
    WrongContract,
    WrongKeyError,
)
from sealbridge.runtime.messages import (
    ANSWER_SIGN_TAG,
    COMMAND_SIGN_TAG,
    DEPLOY_METHOD,
    MESSAGE_SIGN_TAG,
    QUERY_SIGN_TAG,
    BlockInput,
    BlockOutput,
    BlockWitness,
    ChainConfig,
    CheckpointBlob,
    CommandBody,
    CommandResult,
    ContractOutput,
    ContractStatus,
    DeployArgs,
    DirectoryEntry,
    HeldOutputs,
    InboxCommand,
    InstallContract,
    MakeCheckpoint,
    MessageBody,
    OutgoingMessage,
    QueryAnswer,
    QueryBody,
    Receipt,
    ReleasedOutputs,
    RestoreCheckpoint,
    SignedAnswer,
    SignedCommand,
    SignedMessage,
    SignedOutputs,
    SignedQuery,
    SignOutputs,
    StageContractKey,
    Witnesses,
    WitnessRequest,
    answer_aad,
    command_aad,
    compute_deployer_commitment,
    result_aad,
    state_aad,
)
from sealbridge.runtime.witness import WitnessGate, required_witnesses
from sealbridge.tee.enclave import EnclaveKeys

RandomBytes = Callable[[int], bytes]
ENVELOPE: Any = SignedCommand | SignedMessage
QUERY_MAX_AGE = 300  # seconds between a query's issued_at and the enclave clock
MAX_BODY_NESTING = 72  # levels of a command, message or query body (arguments: 64)
MAX_BLOCK_MESSAGES = 256  # messages all commands of one block may send
MAX_BLOCK_OUTPUT = 24 * 1024 * 1024  # bytes of results, messages and touched state per block
MAX_BLOCK_GAS = 100_000_000  # gas all commands of one block may use (bounds one ECALL)
STATUS_APPLIED = "applied"
STATUS_HELD = "held"  # a message ahead of its source's next number, kept until its turn
MAX_MESSAGE_GAP = 32  # how far ahead of the next number a message is held (per source)
MAX_HELD_MESSAGES = 256  # messages one contract holds at most, all sources together
HISTORY_KEPT = 512  # roots remembered per contract, to compare with accepted outputs
MAX_KEY_PROOF_IDS = 64  # message sources one block's key proof may cover
CHECKPOINT_CONFIRM_WINDOW = 256  # the ledger checks blockhash(end): 256 blocks at most


class ContractPhase(Enum):
    AWAITING_CODE = "awaiting_code"
    RUNNING = "running"


class PersistedState(Message, frozen=True):
    """Everything that determines a contract's future: what is sealed at rest."""

    storage: PersistedStorage
    nonces: dict[str, int]
    height: int
    commands_applied: int
    code: bytes = b""  # empty until the deploy command installed it
    deployer: bytes = b""  # the deployer's identity key, learned from the deploy command
    confidential: bool = False
    inbox_seqs: dict[str, int] = {}  # source contract hex -> last message number accepted
    outbox_seqs: dict[str, int] = {}  # target contract hex -> last message number sent
    # messages that arrived ahead of their turn: source hex -> number (decimal) -> body
    held: dict[str, dict[str, bytes]] = {}
    block_hash: bytes = b""  # hash of block ``height`` when the runtime verified it
    directory: list[DirectoryEntry] = []  # in checkpoints: the contract keys known then
    # the last output the ExecutionLedger accepted for this contract, as the runtime read
    # it: where its next output starts (after a restart the event may lie before the anchor)
    accepted_end: int = 0
    accepted_root: bytes = b""
    accepted_applied: int = 0
    key_version: int = 0  # the version of the contract key this state is sealed under
    # the contract's install facts as the runtime verified them (ContractDeployed), so that
    # a restart from this state cannot be installed with other ones
    code_hash: bytes = b""
    deployer_commitment: bytes = b""
    workers: list[bytes] = []


class StateCommitment(Message, frozen=True):
    """What a state root commits to."""

    storage: PersistedStorage
    nonces: dict[str, int]
    commands_applied: int
    code_hash: bytes
    inbox_seqs: dict[str, int]
    outbox_seqs: dict[str, int]
    held: dict[str, dict[str, bytes]]


class ContractRuntime:
    """One installed contract: its keys, nonces, code and (through the executor) storage."""

    def __init__(
        self,
        keys: ContractKeys,
        request: InstallContract,
        state: PersistedState,
        executor: Executor,
    ) -> None:
        self.keys = keys
        self.key_version = request.key_version
        self._recipient = ecies.Recipient(keys.command_private_key)
        self.code_hash = request.code_hash
        self.deployer_commitment = request.deployer_commitment
        self.workers = list(request.workers)
        self.deployer = state.deployer
        self.domain = compute_domain(request.workers)
        self.executor = executor
        self.storage = Storage(state.storage)
        self.nonces = dict(state.nonces)
        self.height = max(state.height, request.resume_height)
        self.commands_applied = state.commands_applied
        self.code = state.code
        self.confidential = state.confidential
        self.inbox_seqs = dict(state.inbox_seqs)
        self.outbox_seqs = dict(state.outbox_seqs)
        self.held: dict[str, dict[int, bytes]] = {
            source: {int(seq): body for seq, body in bodies.items()}
            for source, bodies in state.held.items()
        }
        self.deployed: Deployed | None = None
        if state.code:
            self.deployed = executor.add(
                self.contract_id,
                load_program(state.code),
                deployer=self.deployer,
                domain=self.domain,
                storage=self.storage,
            )
        self.last_command_count = 0
        self.accepted: AcceptedOutputEvent | None = None
        if state.accepted_end:
            self.accepted = AcceptedOutputEvent(
                contract_id=self.contract_id,
                node_id=b"",
                start=0,
                end=state.accepted_end,
                end_hash=b"",
                state_root=state.accepted_root,
                commands_applied=state.accepted_applied,
            )
        # sender hex -> (nonce, result) of the sender's latest authentic command; not part
        # of the state root or the sealed state (it is lost on restart).
        self.last_results: dict[str, tuple[int, CommandResult]] = {}
        self.state_root = self.compute_state_root()

    @property
    def contract_id(self) -> bytes:
        return self.keys.contract_id

    @property
    def phase(self) -> ContractPhase:
        return ContractPhase.RUNNING if self.deployed else ContractPhase.AWAITING_CODE

    def snapshot(
        self,
        storage: PersistedStorage | None = None,
        *,
        height: int | None = None,
        block_hash: bytes = b"",
        directory: list[DirectoryEntry] | None = None,
    ) -> PersistedState:
        return PersistedState(
            storage=storage if storage is not None else self.storage.snapshot(),
            nonces=dict(self.nonces),
            height=self.height if height is None else height,
            block_hash=block_hash,
            directory=directory or [],
            accepted_end=self.accepted.end if self.accepted else 0,
            accepted_root=self.accepted.state_root if self.accepted else b"",
            accepted_applied=self.accepted.commands_applied if self.accepted else 0,
            key_version=self.key_version,
            commands_applied=self.commands_applied,
            code=self.code,
            deployer=self.deployer,
            confidential=self.confidential,
            inbox_seqs=dict(self.inbox_seqs),
            outbox_seqs=dict(self.outbox_seqs),
            held=self.copy_held(),
            code_hash=self.code_hash,
            deployer_commitment=self.deployer_commitment,
            workers=list(self.workers),
        )

    def compute_state_root(self, storage: PersistedStorage | None = None) -> bytes:
        """A salted commitment to the state; the block height is not part of it, so a block
        whose commands were all refused leaves the root unchanged. (``storage``: a snapshot
        already taken, to take it once per block.)"""
        committed = StateCommitment(
            storage=storage if storage is not None else self.storage.snapshot(),
            nonces=dict(self.nonces),
            commands_applied=self.commands_applied,
            code_hash=compute_code_hash(self.code) if self.code else b"",
            inbox_seqs=dict(self.inbox_seqs),
            outbox_seqs=dict(self.outbox_seqs),
            held=self.copy_held(),
        )
        return tagged_hash("sealbridge/state-root/v1", self.keys.root_salt + encode(committed))

    def open_command(
        self,
        ciphertext: bytes,
        directory: dict[bytes, DirectoryEntry] | None = None,
        absent: frozenset[bytes] = frozenset(),
    ) -> CommandBody | MessageBody:
        """Decrypt and authenticate one command or message; raise a RuntimeRefusal if it
        is bad (DirectoryIncomplete if a message's source keys are unknown)."""
        try:
            plaintext = self._recipient.decrypt(ciphertext, command_aad(self.contract_id))
        except DecryptionError as exc:
            raise WrongKeyError("command does not decrypt under this contract's key") from exc
        try:
            envelope = cast(SignedCommand | SignedMessage, decode_canonical(plaintext, ENVELOPE))
            if isinstance(envelope, SignedMessage):
                return self.open_message(envelope, directory or {}, absent)
            signed = envelope
            check_nesting(signed.body, MAX_BODY_NESTING)
            body = decode_canonical(signed.body, CommandBody)
        except EncodingError as exc:
            raise MalformedCommand(f"command is malformed: {exc.message}") from exc
        try:
            ed25519_verify(body.sender, COMMAND_SIGN_TAG + signed.body, signed.signature)
        except InvalidSignature as exc:
            raise BadCommandSignature("command signature does not verify") from exc
        if body.contract_id != self.contract_id:
            raise WrongContract("command names another contract")
        last = self.nonces.get(body.sender.hex(), 0)
        if body.nonce != last + 1:
            raise ReplayedCommand(
                f"nonce {body.nonce} is not the sender's next nonce ({last + 1})"
                if body.nonce > last
                else f"nonce {body.nonce} was already used"
            )
        if body.result_key and len(body.result_key) != aead.KEY_SIZE:
            raise MalformedCommand(f"result key must be {aead.KEY_SIZE} bytes")
        return body

    def rotate_key(self, keys: ContractKeys, version: int) -> None:
        """Switch to key version ``version`` (the old keys are dropped) and recompute the
        root under the new salt."""
        self.keys = keys
        self.key_version = version
        self._recipient = ecies.Recipient(keys.command_private_key)
        self.state_root = self.compute_state_root()

    def open_message(
        self,
        signed: SignedMessage,
        directory: dict[bytes, DirectoryEntry],
        absent: frozenset[bytes] = frozenset(),
    ) -> MessageBody:
        check_nesting(signed.body, MAX_BODY_NESTING)
        body = decode_canonical(signed.body, MessageBody)
        if len(body.source) != 32 or len(body.target) != 32:
            raise MalformedCommand("a message's source and target are 32-byte contract ids")
        source = directory.get(body.source)
        if source is None:
            if body.source in absent:
                raise UnknownSource(f"message from 0x{body.source.hex()}, which has no key")
            raise DirectoryIncomplete(
                f"message from 0x{body.source.hex()}, whose keys the runtime does not know",
                body.source,
            )
        signed_by = [source.message_key]
        if source.previous_message_key:  # sent before the source's key rotation
            signed_by.append(source.previous_message_key)
        for key in signed_by:
            try:
                ed25519_verify(key, MESSAGE_SIGN_TAG + signed.body, signed.signature)
                break
            except InvalidSignature:
                continue
        else:
            raise BadCommandSignature("message signature does not verify")
        if body.target != self.contract_id:
            raise WrongContract("message names another contract")
        last = self.inbox_seqs.get(body.source.hex(), 0)
        if body.seq <= last:
            raise ReplayedCommand(f"message {body.seq} from this source was already delivered")
        if body.seq in self.held.get(body.source.hex(), {}):
            raise ReplayedCommand(f"message {body.seq} from this source is already held")
        if body.seq > last + MAX_MESSAGE_GAP:
            raise MessageTooEarly(
                f"message {body.seq} is more than {MAX_MESSAGE_GAP} ahead of this source's "
                f"next number ({last + 1}); post the earlier ones first"
            )
        held = sum(len(bodies) for bodies in self.held.values())
        if body.seq > last + 1 and held >= MAX_HELD_MESSAGES:
            raise MessageTooEarly(
                f"the contract already holds {held} messages ahead of their turn; post the "
                "earlier ones first"
            )
        return body

    def copy_held(self) -> dict[str, dict[str, bytes]]:
        """The held messages in their canonical form (string keys)."""
        return {
            source: {str(seq): body for seq, body in bodies.items()}
            for source, bodies in self.held.items()
            if bodies
        }

    def hold_message(self, body: MessageBody, journal: Journal) -> None:
        """Keep a message that arrived ahead of its turn (copy-on-write, journaled)."""
        source = body.source.hex()
        journal.record(self.held, source)
        self.held[source] = {**self.held.get(source, {}), body.seq: encode(body)}

    def take_ready_message(self, journal: Journal) -> MessageBody | None:
        """The held message whose turn has come (lowest source first), taken out of the
        held set; None if there is none."""
        for source in sorted(self.held):
            bodies = self.held[source]
            seq = self.inbox_seqs.get(source, 0) + 1
            if seq in bodies:
                journal.record(self.held, source)
                rest = {n: b for n, b in bodies.items() if n != seq}
                if rest:
                    self.held[source] = rest
                else:
                    del self.held[source]
                return decode(bodies[seq], MessageBody)
        return None

    def has_ready_message(self) -> bool:
        return any(
            self.inbox_seqs.get(source, 0) + 1 in bodies for source, bodies in self.held.items()
        )

    def seed_for(self, command: InboxCommand, block: BlockInput) -> bytes:
        return tagged_hash(
            "sealbridge/command-seed/v1",
            block.block_hash
            + self.contract_id
            + command.tx_index.to_bytes(8, "big")
            + command.log_index.to_bytes(8, "big"),
        )

    def execute(
        self, body: CommandBody, command: InboxCommand, block: BlockInput, journal: Journal
    ) -> CallOutcome:
        """Run an authenticated command (its nonce is already consumed)."""
        seed = self.seed_for(command, block)
        gas_limit = min(body.gas_limit or DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT)
        if body.method == DEPLOY_METHOD:
            return self.deploy(body, block.number, seed, gas_limit, journal)
        return self.run(
            body.method, dict(body.args), body.sender, False, block, seed, journal, gas_limit
        )

    def execute_message(
        self, body: MessageBody, seed: bytes, block: BlockInput, journal: Journal
    ) -> CallOutcome:
        """Run a message from another contract (its number is consumed either way)."""
        self.consume_message_number(body, journal)
        return self.run(body.method, dict(body.args), body.source, True, block, seed, journal)

    def consume_message_number(self, body: MessageBody, journal: Journal) -> None:
        journal.record(self.inbox_seqs, body.source.hex())
        self.inbox_seqs[body.source.hex()] = body.seq

    def held_seed(self, body: MessageBody, block: BlockInput) -> bytes:
        """The seed of a held message run when its turn came (no inbox position of its
        own in this block)."""
        return tagged_hash(
            "sealbridge/held-message-seed/v1",
            block.block_hash + self.contract_id + body.source + body.seq.to_bytes(8, "big"),
        )

    def run(
        self,
        method: str,
        args: dict[str, Any],
        caller: bytes,
        caller_is_contract: bool,
        block: BlockInput,
        seed: bytes,
        journal: Journal,
        gas_limit: int = DEFAULT_GAS_LIMIT,
    ) -> CallOutcome:
        if self.deployed is None:
            return CallOutcome(
                ok=False, error="not_deployed", message="the code is not deployed yet"
            )
        return self.executor.run_command(
            self.contract_id,
            method,
            args,
            caller=caller,
            caller_is_contract=caller_is_contract,
            block_number=block.number,
            seed=seed,
            gas_limit=gas_limit,
            block_journal=journal,
        )

    def deploy(
        self, body: CommandBody, number: int, seed: bytes, gas_limit: int, journal: Journal
    ) -> CallOutcome:
        """Install the contract's code and run its @init (all or nothing)."""
        if self.deployed is not None:
            return CallOutcome(ok=False, error="already_deployed", message="code is already set")
        try:
            args = decode(encode(dict(body.args)), DeployArgs)
        except EncodingError as exc:
            return CallOutcome(ok=False, error="bad_arguments", message=exc.message)
        commitment = compute_deployer_commitment(self.contract_id, body.sender, args.salt)
        if commitment != self.deployer_commitment:
            return CallOutcome(
                ok=False, error="not_deployer", message="only the deployer may deploy the code"
            )
        if compute_code_hash(args.code) != self.code_hash:
            return CallOutcome(
                ok=False, error="code_hash_mismatch", message="code does not match the chain"
            )
        try:
            program: ContractProgram = load_program(args.code)
        except CodeRejected as exc:
            return CallOutcome(ok=False, error=exc.code, message=exc.message)
        except Exception as exc:  # noqa: BLE001 -- never let code stop the worker
            return CallOutcome(ok=False, error="code_rejected", message=type(exc).__name__)
        deployed = self.executor.add(
            self.contract_id,
            program,
            deployer=body.sender,
            domain=self.domain,
            storage=self.storage,
        )
        gas_used = 0
        init_name = program.get_init_name()
        if init_name is not None:
            outcome = self.executor.run_command(
                self.contract_id,
                init_name,
                dict(args.init),
                caller=body.sender,
                block_number=number,
                seed=seed,
                gas_limit=gas_limit,
                is_init=True,
                block_journal=journal,
            )
            if not outcome.ok:
                self.executor.remove(self.contract_id)
                return outcome
            gas_used = outcome.gas_used
        elif args.init:
            self.executor.remove(self.contract_id)
            return CallOutcome(ok=False, error="bad_arguments", message="the contract has no @init")
        self.deployed = deployed
        self.deployer = body.sender
        self.code = args.code
        self.confidential = args.confidential
        return CallOutcome(ok=True, gas_used=gas_used)

    def undeploy(self) -> None:
        """Forget code installed in a block that is being undone."""
        self.deployed = None
        self.deployer = b""
        self.code = b""
        self.confidential = False
        self.executor.remove(self.contract_id)

    def seal_result(
        self, body: CommandBody, result: CommandResult, random_bytes: RandomBytes
    ) -> bytes:
        if not body.result_key:
            return b""
        return aead.seal(
            body.result_key,
            encode(result),
            result_aad(self.contract_id, body.sender, body.nonce),
            nonce=random_bytes(aead.NONCE_SIZE),
        )

    def get_command_result(self, sender: bytes, nonce: int) -> CommandResult:
        """The outcome of the sender's latest authentic command, if it had this nonce."""
        kept = self.last_results.get(sender.hex())
        if kept is None or kept[0] != nonce:
            latest = "none" if kept is None else str(kept[0])
            raise QueryRefused(
                f"no result kept for nonce {nonce} (only the latest command's result is kept; "
                f"latest: {latest})"
            )
        return kept[1]

    def seal_state(
        self,
        random_bytes: RandomBytes,
        storage: PersistedStorage | None = None,
        *,
        height: int | None = None,
        block_hash: bytes = b"",
        directory: list[DirectoryEntry] | None = None,
    ) -> bytes:
        snapshot = self.snapshot(storage, height=height, block_hash=block_hash, directory=directory)
        return aead.seal(
            self.keys.state_key,
            encode(snapshot),
            state_aad(self.contract_id),
            nonce=random_bytes(aead.NONCE_SIZE),
        )

    def get_status(self) -> ContractStatus:
        return ContractStatus(
            contract_id=self.contract_id,
            height=self.height,
            state_root=self.state_root,
            commands_applied=self.commands_applied,
            phase=self.phase.value,
            key_version=self.key_version,
        )


def unseal_state(keys: ContractKeys, sealed: bytes) -> PersistedState:
    """Open a sealed state blob; a wrong key or tampering gives DecryptionError."""
    plaintext = aead.open_sealed(keys.state_key, sealed, state_aad(keys.contract_id))
    return decode(plaintext, PersistedState)


def check_key_version(state: PersistedState, request: InstallContract) -> None:
    """A sealed state names the key version it was sealed under; the install must agree
    (the host names the version it asked the committee for)."""
    if state.key_version != request.key_version:
        raise KeyMismatch(
            f"state is sealed under key version {state.key_version}, the install names "
            f"version {request.key_version}"
        )


def empty_state() -> PersistedState:
    return PersistedState(storage=PersistedStorage(), nonces={}, height=0, commands_applied=0)


class UnitMark:
    """Where one unit of a block (a command, or a held message run in its turn) began:
    :meth:`undo` takes the block's journal, outgoing messages, the contract's command
    count and the touched contracts back there."""

    def __init__(
        self,
        runtime: ContractRuntime,
        journal: Journal,
        touched: dict[bytes, int],
        outgoing: list[OutgoingMessage],
    ) -> None:
        self.runtime, self.journal, self.touched, self.outgoing = (
            runtime,
            journal,
            touched,
            outgoing,
        )
        self.mark, self.sent = journal.mark(), len(outgoing)
        self.applied, self.seen = runtime.commands_applied, dict(touched)

    def undo(self) -> None:
        self.journal.roll_back_to(self.mark)
        del self.outgoing[self.sent :]
        self.runtime.commands_applied = self.applied
        self.touched.clear()
        self.touched.update(self.seen)


class WorkerRuntime:
    """All contracts installed on one worker; the enclave program delegates to this."""

    def __init__(self, enclave: EnclaveKeys) -> None:
        self.enclave = enclave
        self.identity_key = enclave.identity.identity_key
        self.random_bytes: RandomBytes = enclave.random_bytes
        self.contracts: dict[bytes, ContractRuntime] = {}
        self.executor = Executor()
        self._block_results = 0  # bytes of sealed results in the block being applied
        self._block_gas = 0  # gas its commands used
        self._last_gas = 0  # gas of the command just run
        self._absent: frozenset[bytes] = frozenset()  # sources proven to have no key
        # results of the block's commands, kept for command_result once the block stands
        self._staged_result: tuple[ContractRuntime, str, tuple[int, CommandResult]] | None = None
        self._block_kept: list[tuple[ContractRuntime, str, tuple[int, CommandResult]]] = []
        self.directory: dict[bytes, DirectoryEntry] = {}
        self.verified_keys: set[bytes] = set()  # directory entries read from the chain
        self.latest_block = 0  # the newest block the host delivered (queries see this time)
        self.view: ChainView | None = None  # verified chain (None: commands taken as given)
        # competitive execution: what the ledger accepted, and our roots to compare
        self.accepted: dict[bytes, AcceptedOutputEvent] = {}
        self.history: dict[bytes, list[tuple[int, bytes, int]]] = {}  # (height, root, applied)
        self.diverged: dict[bytes, str] = {}  # contract -> why its outputs are withheld
        self.checkpoint_heights: dict[bytes, int] = {}  # newest recorded checkpoint seen
        self.pending_checkpoint: CheckpointEvent | None = None  # resumed from, unconfirmed
        self.outputs_signed = 0
        self.staged: dict[bytes, tuple[int, ContractKeys]] = {}  # next key versions
        # install facts read from verified blocks: the deployments naming this worker, and
        # the key version in force for each contract whose key was published or rotated
        self.deployments: dict[bytes, DeploymentEvent] = {}
        self.key_versions: dict[bytes, int] = {}
        self.published_at: dict[bytes, int] = {}  # the verified block of a key publication
        # the witness rule (verified view only): what waits for peers to vouch for blocks
        self.gate = WitnessGate(self.identity_key)
        # contracts resumed from a state sealed at a block beyond the view: (height, hash)
        self.claims: dict[bytes, tuple[int, bytes]] = {}

    def combine_key(
        self,
        contract_id: bytes,
        version: int,
        releases: list[PartialKeyRelease],
        group: GroupPublicKeys | None,
        binding: bytes = b"",
    ) -> ContractKeys:
        """Combine the committee's partial releases of key version ``version``, bound to
        the contract's install facts (``binding``: they open only if the gatekeepers read
        the same facts from the chain)."""
        if group is None:
            raise KeyMismatch("partial releases need the committee's public keys")
        try:
            contract_key = combine_released_key(
                releases,
                self.enclave.decrypt_for_identity,
                contract_id=compute_key_id(contract_id, version),
                worker_id=self.identity_key,
                group=group,
                drop_bad=True,
                binding=binding,
            )
        except (ThresholdError, InvalidSignature) as exc:
            raise WrongKeyError(
                f"the released partials give no contract key (or were released for other "
                f"install facts than this install names): {exc}"
            ) from exc
        return compute_contract_keys(contract_id, contract_key)

    def open_contract_key(self, request: InstallContract) -> ContractKeys:
        """Combine the committee's partial releases (or open a whole released key) and
        check the result against the chain's public key."""
        if request.releases:
            binding = compute_install_binding(
                request.code_hash, request.deployer_commitment, list(request.workers)
            )
            keys = self.combine_key(
                request.contract_id, request.key_version, request.releases, request.group, binding
            )
        else:
            try:
                contract_key = self.enclave.decrypt_for_identity(
                    request.wrapped_key, key_release_aad(request.contract_id, self.identity_key)
                )
            except DecryptionError as exc:
                raise WrongKeyError("released contract key is not for this worker") from exc
            keys = compute_contract_keys(request.contract_id, contract_key)
        if keys.command_public_key != request.contract_public_key:
            raise KeyMismatch("released key does not match the contract's public key on chain")
        return keys

    def install_contract(self, request: InstallContract) -> ContractStatus:
        """Accept a released contract key and (optionally) a sealed state to resume from.

        With a verified chain view, the install's facts (code hash, deployer commitment,
        executor set, key and key version) must be the ones the runtime read from the
        chain itself, or, resuming from a sealed state, the ones sealed with it; the host's
        word counts only in the unverified mode of tests and tools (no view)."""
        keys = self.open_contract_key(request)
        state = unseal_state(keys, request.sealed_state) if request.sealed_state else empty_state()
        if state.code and compute_code_hash(state.code) != request.code_hash:
            raise KeyMismatch("sealed state holds code other than the chain's code hash")
        if request.sealed_state:
            check_key_version(state, request)
        if self.view is not None:
            if request.contract_id in self.contracts:
                raise InstallFactsMismatch(
                    f"contract 0x{request.contract_id.hex()[:12]}… is installed already"
                )
            self.check_install_facts(request, keys, state if request.sealed_state else None)
            if request.sealed_state:
                self.check_sealed_block(request, state)
            else:
                self.check_fresh_install(request)
        runtime = ContractRuntime(keys, request, state, self.executor)
        self.contracts[request.contract_id] = runtime
        self.remember_root(runtime)
        if runtime.accepted is not None:
            self.accepted.setdefault(request.contract_id, runtime.accepted)
        return runtime.get_status()

    def check_sealed_block(self, request: InstallContract, state: PersistedState) -> None:
        """A sealed state names the block it was sealed at (height and hash): that block
        must be on this enclave's verified chain -- known now, or checked when the chain
        gets there (a *claim*; until then nothing of the contract is released). A state
        sealed on another chain (a fork its host fed another enclave) or before this
        enclave's anchor (whose blocks in between it would never see) is refused."""
        view = require_view(self.view)
        cid = request.contract_id
        named = f"contract 0x{cid.hex()[:12]}…"
        if request.resume_height > state.height:
            raise InstallFactsMismatch(
                f"the install resumes {named} at block {request.resume_height}, after the "
                f"block its state was sealed at ({state.height})"
            )
        if state.height < view.number:
            raise InstallFactsUnverified(
                f"the state of {named} was sealed at block {state.height}; this enclave "
                f"is at block {view.number} already, so the blocks in between would be "
                "skipped: anchor at or below it"
            )
        if not state.block_hash:
            raise InstallFactsUnverified(f"the sealed state of {named} names no block")
        if state.height > view.number:
            self.claims[cid] = (state.height, state.block_hash)
            return
        known = self.gate.hashes.get(state.height)
        if known is None:
            raise InstallFactsUnverified(
                f"the state of {named} was sealed at block {state.height}, which this "
                f"enclave has not verified (its chain starts at block "
                f"{min(self.gate.hashes, default=view.number)}): anchor at or below it"
            )
        if known != state.block_hash:
            raise InstallFactsMismatch(
                f"the state of {named} was sealed at block {state.height} of another chain"
            )

    def check_fresh_install(self, request: InstallContract) -> None:
        """A contract without a sealed state starts empty: only right after the verified
        block that published its key (no command can reach it before), never later, when
        commands in between would be skipped."""
        view = require_view(self.view)
        cid = request.contract_id
        published = self.published_at.get(cid)
        if request.resume_height > view.number:
            raise InstallFactsMismatch(
                f"the install resumes at block {request.resume_height}, beyond the "
                f"verified chain (block {view.number})"
            )
        if published is not None and view.number != published:
            raise InstallFactsMismatch(
                f"contract 0x{cid.hex()[:12]}… starts empty only right after block "
                f"{published}, which published its key (this enclave is at block "
                f"{view.number}; resume it from a sealed state or a checkpoint)"
            )

    def check_claims(self, number: int, block_hash: bytes) -> None:
        """Settle the sealed-state claims of block ``number``: a contract whose state was
        sealed at another block of that height is cut off (it diverged)."""
        for cid, (height, claimed) in list(self.claims.items()):
            if height != number:
                continue
            del self.claims[cid]
            if claimed != block_hash:
                self.diverged[cid] = f"its sealed state names block {number} of another chain"

    def check_install_facts(
        self, request: InstallContract, keys: ContractKeys, state: PersistedState | None
    ) -> None:
        """Refuse an install whose facts differ from the verified ones (see
        :meth:`install_contract`); ``state`` is the sealed state it resumes from, if any."""
        cid = request.contract_id
        named = f"contract 0x{cid.hex()[:12]}…"
        if state is not None and state.deployer_commitment:
            facts = (state.code_hash, state.deployer_commitment, list(state.workers))
            source = "its sealed state"
        else:
            deployment = self.deployments.get(cid)
            if deployment is None:
                raise InstallFactsUnverified(
                    f"no verified ContractDeployed event names this worker for {named}: "
                    "deliver the block that deployed it before installing it"
                )
            facts = (deployment.code_hash, deployment.deployer_commitment, deployment.workers)
            source = "the chain"
        given = (request.code_hash, request.deployer_commitment, list(request.workers))
        for name, want, got in zip(
            ("code hash", "deployer commitment", "executor set"), facts, given, strict=True
        ):
            if want != got:
                raise InstallFactsMismatch(f"the install names another {name} than {source}")
        if self.identity_key not in request.workers:
            raise InstallFactsMismatch(f"this worker is not an executor of {named}")
        known = self.key_versions.get(cid)
        if known is not None and request.key_version != known:
            raise InstallFactsMismatch(
                f"the install names key version {request.key_version}, the chain "
                f"{known} for {named}"
            )
        if state is not None:
            return  # the key opened the contract's sealed state: it is the contract's key
        entry = self.directory.get(cid)
        if entry is None or cid not in self.verified_keys or cid not in self.key_versions:
            raise InstallFactsUnverified(
                f"the key of {named} was not read from a verified block: deliver the block "
                "that published it before installing it"
            )
        if keys.command_public_key != entry.command_key:
            raise InstallFactsMismatch(
                f"the released key is not the key the chain names for {named}"
            )

    def note_deployments(self, facts: BlockFacts) -> None:
        """Keep the install facts of a verified block (deployments naming this worker,
        key versions of every published or rotated key)."""
        for deployment in facts.deployments:
            if self.identity_key in deployment.workers:
                self.deployments[deployment.contract_id] = deployment
        for entry in facts.directory:
            self.key_versions.setdefault(entry.contract_id, 0)
            self.published_at.setdefault(entry.contract_id, facts.block.number)
        for rotation in facts.rotations:
            self.key_versions[rotation.contract_id] = rotation.version

    def stage_contract_key(self, request: StageContractKey) -> None:
        """Keep the next version of an installed contract's key until the verified block
        that rotates to it (see :meth:`process_block`)."""
        runtime = self.get_contract(request.contract_id)
        if request.version != runtime.key_version + 1:
            raise KeyMismatch(
                f"key version {request.version} is not the next one after "
                f"{runtime.key_version} for contract 0x{request.contract_id.hex()[:12]}…"
            )
        binding = compute_install_binding(
            runtime.code_hash, runtime.deployer_commitment, runtime.workers
        )
        keys = self.combine_key(
            request.contract_id, request.version, request.releases, request.group, binding
        )
        if keys.command_public_key != request.contract_public_key:
            raise KeyMismatch("staged key does not match the public key the host names")
        self.staged[request.contract_id] = (request.version, keys)

    def take_rotations(
        self, rotations: list[KeyRotationEvent], number: int
    ) -> list[tuple[bytes, int, ContractKeys]]:
        """The staged keys of this block's rotations of installed contracts; refuse the
        block (nothing changed yet) if one is missing or does not match the event. A
        contract whose state is already past this block (resumed from a later sealed
        state) or at that version already has nothing to switch."""
        out: list[tuple[bytes, int, ContractKeys]] = []
        for event in rotations:
            cid = event.contract_id
            runtime = self.contracts.get(cid)
            if runtime is None or number <= runtime.height or event.version <= runtime.key_version:
                continue
            staged = self.staged.get(cid)
            if staged is None or staged[0] != event.version:
                raise KeyRotationPending(
                    f"contract 0x{cid.hex()[:12]}… rotates to key version {event.version} in "
                    "this block; stage that key first",
                    cid,
                    event.version,
                )
            if staged[1].command_public_key != event.command_key or (
                staged[1].message_public_key != event.message_key
            ):
                del self.staged[cid]
                raise KeyRotationPending(
                    f"the staged key version {event.version} of contract 0x{cid.hex()[:12]}… "
                    "does not match the rotation event; stage it again",
                    cid,
                    event.version,
                )
            out.append((cid, event.version, staged[1]))
        return out

    def get_contract(self, contract_id: bytes) -> ContractRuntime:
        runtime = self.contracts.get(contract_id)
        if runtime is None:
            raise UnknownContract(f"contract 0x{contract_id.hex()} is not installed here")
        return runtime

    def check_block(self, block: BlockInput) -> None:
        """Refuse a block the host assembled wrongly, before anything runs."""
        order = [(c.tx_index, c.log_index) for c in block.commands]
        if order != sorted(order) or len(set(order)) != len(order):
            raise MalformedCommand("block commands are not in chain order")
        for command in block.commands:
            runtime = self.get_contract(command.contract_id)
            if block.number <= runtime.height:
                raise StaleBlock(
                    f"block {block.number} is not above height {runtime.height} of "
                    f"contract 0x{command.contract_id.hex()[:12]}…"
                )

    def configure_chain(self, config: ChainConfig) -> None:
        """Start the verified chain view at ``config``'s anchor (once)."""
        if self.view is not None:
            if self.view.config == config:
                return
            raise ChainAlreadyConfigured("the runtime already follows a verified chain")
        self.view = ChainView(config)
        self.latest_block = max(self.latest_block, config.anchor_number)
        self.gate.note_block(config.anchor_number, config.anchor_hash)

    def process_block(self, block: BlockInput) -> BlockOutput:
        """Apply one block as one atomic unit. With a verified view the block must come
        as evidence: it is verified, its events read, its commands applied, and only
        then does the view move to it."""
        if self.view is None:
            return self.apply_block(block)
        if block.evidence is None or block.commands:
            raise EvidenceRequired("blocks must come as evidence (header and all receipts)")
        self.gate.check_room()
        facts = self.view.verify(block.evidence)
        number = facts.block.number
        self.check_pending_checkpoint(number)
        rotations = self.take_rotations(facts.rotations, number)
        commands = [
            c
            for c in facts.commands
            if c.contract_id in self.contracts and number > self.contracts[c.contract_id].height
        ]
        # a refused block must leave the directory as it was (it is offered again)
        saved_directory, saved_verified = dict(self.directory), set(self.verified_keys)
        saved_facts = dict(self.deployments), dict(self.key_versions), dict(self.published_at)
        self.update_directory(facts.directory, {e.contract_id for e in facts.rotations})
        self.note_deployments(facts)
        try:
            self._absent = self.read_key_proof(block, block.evidence.header.state_root)
            # the host's directory entries are not taken: keys come from verified events,
            # sealed states and state proofs (key_proof) only
            output = self.apply_block(
                BlockInput(number=number, block_hash=facts.block.hash, commands=commands)
            )
        except BaseException:
            self.directory, self.verified_keys = saved_directory, saved_verified
            self.deployments, self.key_versions, self.published_at = saved_facts
            raise
        finally:
            self._absent = frozenset()
        self.view.advance(block.evidence)
        self.gate.note_block(number, facts.block.hash)
        self.on_accepted_outputs(facts.outputs)
        self.on_checkpoints(facts.checkpoints)
        if rotations:
            output = self.apply_rotations(output, rotations, facts.block.hash)
        self.check_claims(number, facts.block.hash)
        # a contract whose accepted output moved is sealed again, so that the state at rest
        # knows where its next output starts even if the event lies before a later anchor
        changed = {c.contract_id for c in output.contracts}
        resealed = [
            ContractOutput(
                contract_id=cid,
                state_root=self.contracts[cid].state_root,
                command_count=0,
                sealed_state=self.contracts[cid].seal_state(
                    self.random_bytes, height=number, block_hash=facts.block.hash
                ),
            )
            for cid in sorted({e.contract_id for e in facts.outputs})
            if cid in self.contracts and cid not in changed
        ]
        # receipts and messages wait for the witness rule; those of contracts that need
        # no witness (one executor) come out at once
        at_once = self.gate.hold(
            HeldOutputs(number=number, receipts=output.receipts, messages=output.messages)
        )
        released = self.gate.release(self.get_covered)
        # older blocks' receipts first, then this block's in chain order
        out_now = {(r.contract_id, r.seq) for r in at_once.receipts} | {
            (r.contract_id, r.seq) for b in released if b.number == number for r in b.receipts
        }
        return BlockOutput(
            number=output.number,
            contracts=[*output.contracts, *resealed],
            receipts=[
                *(r for b in released if b.number != number for r in b.receipts),
                *(r for r in output.receipts if (r.contract_id, r.seq) in out_now),
            ],
            messages=[m for b in released for m in b.messages],
            held=self.gate.held_items,
        )

    # -- the witness rule (see runtime.witness) -----------------------------------------
    def get_covered(self, contract_id: bytes) -> int:
        """The height up to which a majority of the contract's executors vouched for our
        chain (0 for a contract not installed here)."""
        runtime = self.contracts.get(contract_id)
        if runtime is None or contract_id in self.claims or contract_id in self.diverged:
            return 0
        return self.gate.covered(runtime.workers)

    def get_executors(self) -> set[bytes]:
        return {w for runtime in self.contracts.values() for w in runtime.workers}

    def witness_block(self, request: WitnessRequest) -> BlockWitness:
        """This enclave's signed word that block ``request.height`` is on its chain."""
        if self.view is None:
            raise WitnessUnavailable("the runtime follows no verified chain")
        return self.gate.sign(self.view.config, request.height, self.enclave.sign_identity)

    def release_outputs(self, request: Witnesses) -> ReleasedOutputs:
        """Take peers' witnesses; release the held receipts and messages now covered."""
        view = require_view(self.view)
        self.gate.accept(view.config, request.witnesses, self.get_executors())
        released = self.gate.release(self.get_covered)
        covered = [self.get_covered(cid) for cid in self.contracts]
        return ReleasedOutputs(
            blocks=released,
            held=self.gate.held_items,
            witnessed=min(covered) if covered else self.gate.tip,
        )

    def check_witnessed(self, runtime: ContractRuntime, witnesses: list[BlockWitness]) -> int:
        """The height a query may be answered at: the contract must be covered up to the
        block its state last changed at (else ``NotWitnessed``) and must not have diverged
        from what the ledger accepted."""
        view = require_view(self.view)
        cid = runtime.contract_id
        if cid in self.diverged:
            raise QueryRefused(f"contract 0x{cid.hex()[:12]}… diverged: {self.diverged[cid]}")
        if cid in self.claims:
            raise NotWitnessed(
                f"contract 0x{cid.hex()[:12]}… resumed from a state sealed at block "
                f"{self.claims[cid][0]}, which this enclave has not reached yet"
            )
        self.gate.accept(view.config, witnesses, self.get_executors())
        covered = self.gate.covered(runtime.workers)
        if covered < runtime.height:
            raise NotWitnessed(
                f"the state of contract 0x{cid.hex()[:12]}… is at block {runtime.height}; "
                f"its executors vouched for blocks up to {covered} only (need "
                f"{required_witnesses(runtime.workers)} of the other executors)"
            )
        return covered

    def read_key_proof(self, block: BlockInput, state_root: bytes) -> frozenset[bytes]:
        """Read the ContractRegistry records the host proved at this block (for message
        sources the runtime did not know): a published key becomes a verified directory
        entry, an unpublished one a source whose messages are refused one by one."""
        if block.key_proof is None:
            return frozenset()
        view = require_view(self.view)
        if block.key_proof.address != view.config.contract_registry:
            raise ProofInvalid("the key proof is not of the ContractRegistry")
        if len(block.key_proof_ids) > MAX_KEY_PROOF_IDS:
            raise ProofInvalid(f"at most {MAX_KEY_PROOF_IDS} contracts per key proof")
        if any(len(cid) != 32 for cid in block.key_proof_ids):
            raise ProofInvalid("a key proof names contracts by their 32-byte ids")
        values = verify_slots(state_root, block.key_proof)
        absent: set[bytes] = set()
        for cid in block.key_proof_ids:
            slots = get_key_slots(cid)
            if any(s not in values for s in slots):
                raise ProofInvalid(f"the key proof leaves out contract 0x{cid.hex()[:12]}…")
            published, command_key, message_key = (values[s] for s in slots)
            if not published:
                absent.add(cid)
            elif cid not in self.verified_keys:
                self.directory[cid] = DirectoryEntry(
                    contract_id=cid,
                    command_key=command_key.to_bytes(32, "big"),
                    message_key=message_key.to_bytes(32, "big"),
                )
                self.verified_keys.add(cid)
        return frozenset(absent)

    def update_directory(self, entries: list[DirectoryEntry], rotated: set[bytes]) -> None:
        """Verified keys replace any host-supplied entry. A rotated contract's entry keeps
        its previous message key -- only if that key was verified too (read from the chain
        or a checkpoint), never one its host supplied."""
        for entry in entries:
            old = self.directory.get(entry.contract_id)
            if (
                entry.contract_id in rotated
                and old is not None
                and entry.contract_id in self.verified_keys
                and old.message_key != entry.message_key
            ):
                entry = DirectoryEntry(
                    contract_id=entry.contract_id,
                    command_key=entry.command_key,
                    message_key=entry.message_key,
                    previous_message_key=old.message_key,
                )
            self.directory[entry.contract_id] = entry
            self.verified_keys.add(entry.contract_id)

    def apply_rotations(
        self,
        output: BlockOutput,
        rotations: list[tuple[bytes, int, ContractKeys]],
        block_hash: bytes,
    ) -> BlockOutput:
        """Switch the rotated contracts to their new keys after the block: new root (new
        salt), state sealed under the new state key, old keys dropped."""
        rotated = {cid for cid, _, _ in rotations}
        counts = {c.contract_id: c.command_count for c in output.contracts}
        for cid, version, keys in rotations:
            runtime = self.contracts[cid]
            runtime.rotate_key(keys, version)
            # the root changed at this block (even with no command): remember it here, not
            # at an older height, or an accepted output before it would look diverged
            runtime.height = max(runtime.height, output.number)
            del self.staged[cid]
            self.remember_root(runtime)
        contracts = [c for c in output.contracts if c.contract_id not in rotated]
        for cid in sorted(rotated):
            runtime = self.contracts[cid]
            contracts.append(
                ContractOutput(
                    contract_id=cid,
                    state_root=runtime.state_root,
                    command_count=counts.get(cid, 0),
                    sealed_state=runtime.seal_state(
                        self.random_bytes, height=output.number, block_hash=block_hash
                    ),
                )
            )
        return BlockOutput(
            number=output.number,
            contracts=contracts,
            receipts=output.receipts,
            messages=output.messages,
        )

    def apply_block(self, block: BlockInput) -> BlockOutput:
        """Apply one block's commands (already in chain order) as one atomic unit."""
        self.check_block(block)
        for entry in block.directory:
            self.directory.setdefault(entry.contract_id, entry)
        journal = Journal()
        # held messages whose turn came in an earlier block that ran out of budget (only in
        # a block after the contract's height: never at a block number a host chose below)
        ready = sorted(
            cid
            for cid, c in self.contracts.items()
            if block.number > c.height and c.has_ready_message()
        )
        # only these and the contracts named by a command can change their count or code
        before = {
            cid: (self.contracts[cid].commands_applied, self.contracts[cid].deployed is not None)
            for cid in {c.contract_id for c in block.commands} | set(ready)
        }
        touched: dict[bytes, int] = {}
        receipts: list[Receipt] = []
        outgoing: list[OutgoingMessage] = []
        self._block_results = self._block_gas = 0
        self._block_kept = []
        try:
            for cid in ready:
                self.drain_messages(self.contracts[cid], block, journal, touched, outgoing)
            for command in block.commands:
                receipts.append(self.process_command(command, block, journal, touched, outgoing))
        except BaseException:
            journal.roll_back()
            for cid, (applied, had_code) in before.items():
                runtime = self.contracts[cid]
                runtime.commands_applied = applied
                if not had_code and runtime.deployed is not None:
                    runtime.undeploy()
            raise
        self.latest_block = max(self.latest_block, block.number)
        for runtime, sender, kept in self._block_kept:  # the block stands: keep its results
            runtime.last_results[sender] = kept
        self._block_kept = []
        outputs: list[ContractOutput] = []
        for cid in sorted(touched):
            runtime = self.contracts[cid]
            runtime.height = max(runtime.height, block.number)  # heights never go back
            runtime.last_command_count = touched[cid]
            storage = runtime.storage.snapshot()  # once, for the root and the sealed state
            runtime.state_root = runtime.compute_state_root(storage)
            self.remember_root(runtime)
            outputs.append(
                ContractOutput(
                    contract_id=cid,
                    state_root=runtime.state_root,
                    command_count=touched[cid],
                    sealed_state=runtime.seal_state(
                        self.random_bytes, storage, height=block.number, block_hash=block.block_hash
                    ),
                )
            )
        return BlockOutput(
            number=block.number, contracts=outputs, receipts=receipts, messages=outgoing
        )

    def process_command(
        self,
        command: InboxCommand,
        block: BlockInput,
        journal: Journal,
        touched: dict[bytes, int],
        outgoing: list[OutgoingMessage],
    ) -> Receipt:
        """Apply one command of a block. Whatever goes wrong with this one command -- a
        refusal, an unforeseen error while decoding or running it, or a result that would
        overflow the block's budget -- refuses it alone: its changes are undone and its
        receipt says why; the block and the process go on."""
        runtime = self.contracts[command.contract_id]
        start = UnitMark(runtime, journal, touched, outgoing)
        self._staged_result = None
        try:
            receipt = self._process_command(command, block, journal, touched, outgoing)
            results = self._block_results + len(receipt.sealed_result)
            gas = self._block_gas + self._last_gas
            if gas > MAX_BLOCK_GAS or self._is_over_budget(touched, outgoing, results):
                raise BlockFull("the block's budget is used up; send the command again later")
        except (MemoryError, DirectoryIncomplete):
            raise  # the block is retried: this process's trouble, or the host owes keys
        except Exception as exc:  # noqa: BLE001 -- one command never stops the block
            start.undo()  # as before the command, which then counts once, refused
            touched[command.contract_id] = touched.get(command.contract_id, 0) + 1
            code = exc.code if isinstance(exc, BlockFull) else "internal_error"
            return Receipt(contract_id=command.contract_id, seq=command.seq, status=code)
        self._block_results, self._block_gas = results, gas
        if self._staged_result is not None:
            self._block_kept.append(self._staged_result)
        if runtime.held:
            self.drain_messages(runtime, block, journal, touched, outgoing)
        return receipt

    def drain_messages(
        self,
        runtime: ContractRuntime,
        block: BlockInput,
        journal: Journal,
        touched: dict[bytes, int],
        outgoing: list[OutgoingMessage],
    ) -> None:
        """Run the held messages whose turn has come, each as a unit of its own. One that
        does not fit the block's budget stays held (the next block runs it first); one
        that fails unforeseen is rolled back and its number consumed, so that it cannot
        hold up its source's later messages."""
        cid = runtime.contract_id
        while True:
            start = UnitMark(runtime, journal, touched, outgoing)
            body = runtime.take_ready_message(journal)
            if body is None:
                return
            try:
                touched[cid] = touched.get(cid, 0) + 1
                self.executor.touched.clear()
                outcome = runtime.execute_message(
                    body, runtime.held_seed(body, block), block, journal
                )
                self.account(runtime, outcome, journal, touched, outgoing)
                gas = self._block_gas + outcome.gas_used
                if gas > MAX_BLOCK_GAS or self._is_over_budget(
                    touched, outgoing, self._block_results
                ):
                    raise BlockFull("the block's budget is used up")
            except (MemoryError, DirectoryIncomplete):
                raise
            except Exception as exc:  # noqa: BLE001 -- one message never stops the block
                start.undo()
                if isinstance(exc, BlockFull):
                    return  # still held, and first in line at the next block
                runtime.take_ready_message(journal)
                runtime.consume_message_number(body, journal)
                touched[cid] = touched.get(cid, 0) + 1
                continue
            self._block_gas = gas

    def account(
        self,
        runtime: ContractRuntime,
        outcome: CallOutcome,
        journal: Journal,
        touched: dict[bytes, int],
        outgoing: list[OutgoingMessage],
    ) -> None:
        """After a command or message ran: the contracts its calls touched count as
        touched; a success counts as applied and its messages go out."""
        for cid in self.executor.touched:
            touched.setdefault(cid, 0)
        if outcome.ok:
            runtime.commands_applied += 1
            outgoing.extend(self.send_messages(outcome, journal))

    def _is_over_budget(
        self, touched: dict[bytes, int], outgoing: list[OutgoingMessage], results: int
    ) -> bool:
        if len(outgoing) > MAX_BLOCK_MESSAGES:
            return True
        size = results + sum(len(m.ciphertext) for m in outgoing)
        size += sum(self.contracts[cid].storage.get_size() for cid in touched)
        return size > MAX_BLOCK_OUTPUT

    def _process_command(
        self,
        command: InboxCommand,
        block: BlockInput,
        journal: Journal,
        touched: dict[bytes, int],
        outgoing: list[OutgoingMessage],
    ) -> Receipt:
        runtime = self.contracts[command.contract_id]
        touched[command.contract_id] = touched.get(command.contract_id, 0) + 1
        try:
            body = runtime.open_command(command.ciphertext, self.directory, self._absent)
        except RuntimeRefusal as exc:
            return Receipt(contract_id=command.contract_id, seq=command.seq, status=exc.code)
        self.executor.touched.clear()
        self._last_gas = 0
        if isinstance(body, MessageBody):
            if body.seq > runtime.inbox_seqs.get(body.source.hex(), 0) + 1:
                runtime.hold_message(body, journal)  # runs when the earlier ones arrived
                return Receipt(contract_id=command.contract_id, seq=command.seq, status=STATUS_HELD)
            outcome = runtime.execute_message(
                body, runtime.seed_for(command, block), block, journal
            )
        else:
            journal.record(runtime.nonces, body.sender.hex())
            runtime.nonces[body.sender.hex()] = body.nonce
            outcome = runtime.execute(body, command, block, journal)
        self._last_gas = outcome.gas_used
        self.account(runtime, outcome, journal, touched, outgoing)
        if isinstance(body, MessageBody):
            return Receipt(contract_id=command.contract_id, seq=command.seq, status=STATUS_APPLIED)
        result = CommandResult(
            contract_id=command.contract_id,
            nonce=body.nonce,
            ok=outcome.ok,
            value=outcome.value,
            error=outcome.error,
            message=outcome.message,
            gas_used=outcome.gas_used,
        )
        # kept for the command_result query only once the command and its block stand
        self._staged_result = (runtime, body.sender.hex(), (body.nonce, result))
        return Receipt(
            contract_id=command.contract_id,
            seq=command.seq,
            status=STATUS_APPLIED,
            sealed_result=runtime.seal_result(body, result, self.random_bytes),
        )

    def send_messages(self, outcome: CallOutcome, journal: Journal) -> list[OutgoingMessage]:
        """Number, sign and encrypt the messages a successful command sent."""
        out: list[OutgoingMessage] = []
        for message in outcome.messages:
            source = self.contracts[message.source]
            key = message.target.hex()
            journal.record(source.outbox_seqs, key)
            seq = source.outbox_seqs.get(key, 0) + 1
            source.outbox_seqs[key] = seq
            body = encode(
                MessageBody(
                    source=message.source,
                    target=message.target,
                    seq=seq,
                    method=message.method,
                    args=message.args,
                )
            )
            signed = SignedMessage(
                body=body,
                signature=ed25519_sign(source.keys.message_private_key, MESSAGE_SIGN_TAG + body),
            )
            target = self.directory.get(message.target)
            if target is None and self.view is not None and message.target not in self._absent:
                # the host proves the target's record (its key, or that it has none)
                raise DirectoryIncomplete(
                    f"message to 0x{message.target.hex()}, whose keys the runtime does not know",
                    message.target,
                )
            # every worker of the source encrypts message n to a target with the same
            # ephemeral key (secret, used for this one message only), so the ciphertexts
            # are equal and any of their hosts can tell that a message was posted
            ephemeral = derive_key(
                source.keys.message_private_key,
                f"sealbridge/message-ephemeral/v1/{message.target.hex()}/{seq}",
                salt=target.command_key if target is not None else b"",
            )
            ciphertext = (
                b""
                if target is None
                else ecies.encrypt_to(
                    target.command_key,
                    encode(signed),
                    command_aad(message.target),
                    ephemeral_seed=ephemeral,
                )
            )
            out.append(
                OutgoingMessage(
                    source=message.source, target=message.target, seq=seq, ciphertext=ciphertext
                )
            )
        return out

    def answer_query(
        self, request: SignedQuery, now: int, witnesses: list[BlockWitness] | None = None
    ) -> bytes:
        """Return the signed answer encrypted to the caller's reply key.

        ``now`` is the enclave's clock; a query issued more than QUERY_MAX_AGE seconds away
        from it is refused, so a relayed old query cannot be answered again much later.
        With a verified view the witness rule applies: ``witnesses`` (peers' words for our
        blocks) must cover the contract's state, and the answer is stated at the covered
        height."""
        try:
            check_nesting(request.body, MAX_BODY_NESTING)
            body = decode_canonical(request.body, QueryBody)
        except EncodingError as exc:
            raise QueryRefused(f"query is malformed: {exc.message}") from exc
        try:
            ed25519_verify(body.caller, QUERY_SIGN_TAG + request.body, request.signature)
        except InvalidSignature as exc:
            raise QueryRefused("query signature does not verify") from exc
        if abs(now - body.issued_at) > QUERY_MAX_AGE:
            raise QueryRefused(f"query issued at {body.issued_at} is stale or from the future")
        runtime = self.get_contract(body.contract_id)
        as_of = max(runtime.height, self.latest_block)
        if self.view is not None:
            as_of = min(as_of, self.check_witnessed(runtime, witnesses or []))
        result = self.run_query(runtime, body, as_of)
        query_hash = hash_message("sealbridge/query/v1", request)
        answer = QueryAnswer(
            contract_id=body.contract_id,
            method=body.method,
            args=dict(body.args),
            caller=body.caller,
            query_hash=query_hash,
            result=result,
            block_height=as_of,
            state_root=runtime.state_root,
        )
        answer_bytes = encode(answer)
        signed = SignedAnswer(
            answer=answer_bytes,
            signature=self.enclave.sign_identity(ANSWER_SIGN_TAG + answer_bytes),
            worker_key=self.identity_key,
        )
        return ecies.encrypt_to(
            body.reply_key,
            encode(signed),
            answer_aad(query_hash),
            ephemeral_seed=self.random_bytes(32),
        )

    def run_query(self, runtime: ContractRuntime, body: QueryBody, as_of: int) -> Any:
        """Runtime-level queries (``next_nonce``, ``command_result``, ``code``), else the
        contract's own ``@query`` methods under their readers rule, with
        ``env.block_number`` = ``as_of`` (the newest block delivered: the contract's state
        is the same there as at its own height, but time has moved on)."""
        args = dict(body.args)
        if body.method == "next_nonce":
            if args:
                raise QueryRefused("next_nonce takes no arguments")
            return runtime.nonces.get(body.caller.hex(), 0) + 1
        if body.method == "command_result":
            nonce = args.get("nonce")
            if set(args) != {"nonce"} or not isinstance(nonce, int):
                raise QueryRefused("command_result takes {nonce: int}")
            return encode(runtime.get_command_result(body.caller, nonce))
        if body.method == "code":
            if args:
                raise QueryRefused("code takes no arguments")
            if not runtime.code:
                raise QueryRefused("the contract's code is not deployed yet")
            if runtime.confidential and body.caller != runtime.deployer:
                raise QueryRefused("the code of a confidential contract is not disclosed")
            return runtime.code
        if runtime.deployed is None:
            raise QueryRefused("the contract's code is not deployed yet")
        outcome = self.executor.run_query(
            runtime.contract_id, body.method, args, caller=body.caller, block_number=as_of
        )
        if not outcome.ok:
            raise QueryRefused(f"{outcome.error}: {outcome.message}")
        return outcome.value

    # -- competitive execution and checkpoints ----------------------------------------------
    def remember_root(self, runtime: ContractRuntime) -> None:
        history = self.history.setdefault(runtime.contract_id, [])
        history.append((runtime.height, runtime.state_root, runtime.commands_applied))
        del history[:-HISTORY_KEPT]

    def get_root_at(self, contract_id: bytes, height: int) -> tuple[bytes, int] | None:
        """Our (root, commands applied) after block ``height``, if still remembered."""
        for at, root, applied in reversed(self.history.get(contract_id, [])):
            if at <= height:
                return root, applied
        return None

    def on_accepted_outputs(self, outputs: list[AcceptedOutputEvent]) -> None:
        """The ledger accepted outputs (maybe another worker's): compare with our roots.

        A mismatch means two enclaves disagree on a deterministic computation -- a broken
        enclave or forged input somewhere. We withhold our outputs for that contract and
        report it rather than stop (a faulty peer must not halt an honest worker)."""
        for event in outputs:
            if event.contract_id not in self.contracts:
                continue
            self.accepted[event.contract_id] = event
            self.contracts[event.contract_id].accepted = event
            ours = self.get_root_at(event.contract_id, event.end)
            if ours is not None and ours != (event.state_root, event.commands_applied):
                self.diverged[event.contract_id] = (
                    f"ledger accepted root 0x{event.state_root.hex()[:16]}… "
                    f"({event.commands_applied} commands) at block {event.end}; ours is "
                    f"0x{ours[0].hex()[:16]}… ({ours[1]} commands)"
                )

    def on_checkpoints(self, checkpoints: list[CheckpointEvent]) -> None:
        for event in checkpoints:
            pending = self.pending_checkpoint
            # only the record at the checkpoint's own block confirms it (the ledger does not
            # tie a blob hash to a height, so a faulty peer could record it elsewhere)
            if pending is not None and (event.blob_hash, event.height, event.block_hash) == (
                pending.blob_hash,
                pending.height,
                pending.block_hash,
            ):
                self.pending_checkpoint = None
            for cid in event.contract_ids:
                if cid in self.contracts:
                    previous = self.checkpoint_heights.get(cid, 0)
                    self.checkpoint_heights[cid] = max(previous, event.height)

    def check_pending_checkpoint(self, number: int) -> None:
        """The ledger records a checkpoint within 256 blocks of its height or never: a
        runtime resumed from one that is still unrecorded after that refuses to go on."""
        pending = self.pending_checkpoint
        if pending is not None and number > pending.height + CHECKPOINT_CONFIRM_WINDOW:
            raise CheckpointUnconfirmed(
                f"checkpoint 0x{pending.blob_hash.hex()[:16]}… at block {pending.height} was "
                f"not recorded by the ledger within {CHECKPOINT_CONFIRM_WINDOW} blocks"
            )

    def sign_outputs(self, request: SignOutputs) -> SignedOutputs:
        """Sign ExecutionLedger outputs ending at the newest verified block."""
        view = require_view(self.view)
        if self.pending_checkpoint is not None:
            raise OutputsRefused("the checkpoint this runtime resumed from is not confirmed yet")
        end, end_hash = view.number, view.hash
        chosen: list[ContractRuntime] = []
        starts: list[int] = []
        for cid in request.contract_ids:
            runtime = self.get_contract(cid)
            if cid in self.diverged:
                raise OutputsRefused(f"contract 0x{cid.hex()[:12]}… diverged: {self.diverged[cid]}")
            if cid in self.claims:
                if request.only_changed:
                    continue
                raise OutputsRefused(
                    f"contract 0x{cid.hex()[:12]}… is sealed at block {self.claims[cid][0]}, "
                    "beyond the verified chain"
                )
            accepted = self.accepted.get(cid)
            start = accepted.end if accepted is not None else 0
            if end <= start:
                if request.only_changed:
                    continue
                raise OutputsRefused(f"nothing after the accepted end {start} to sign")
            if (
                request.only_changed
                and accepted is not None
                and (accepted.state_root, accepted.commands_applied)
                == (runtime.state_root, runtime.commands_applied)
            ):
                continue
            chosen.append(runtime)
            starts.append(start)
        roots = [r.state_root for r in chosen]
        applied = [r.commands_applied for r in chosen]
        ids = [r.contract_id for r in chosen]
        signature = b""
        blob = b""
        checkpoint_hash = bytes(32)
        if chosen and request.with_checkpoint:
            blob = self.make_checkpoint(MakeCheckpoint(contract_ids=ids))
            checkpoint_hash = keccak(blob)
        if chosen:
            digest = compute_execution_digest(
                ledger=to_checksum_address(view.config.execution_ledger),
                chain_id=view.config.chain_id,
                contract_ids=ids,
                starts=starts,
                end=end,
                end_hash=end_hash,
                state_roots=roots,
                commands_applied=applied,
                checkpoint_hash=checkpoint_hash,
                checkpoint_size=len(blob),
            )
            signature = self.enclave.sign_eth_digest(digest)
            self.outputs_signed += 1
        return SignedOutputs(
            contract_ids=ids,
            starts=starts,
            end=end,
            end_hash=end_hash,
            state_roots=roots,
            commands_applied=applied,
            checkpoint_hash=checkpoint_hash,
            checkpoint_size=len(blob),
            signature=signature,
            checkpoint=blob,
        )

    def make_checkpoint(self, request: MakeCheckpoint) -> bytes:
        """Seal the named contracts' states, all at the newest verified block, with the
        contract keys known now, into one checkpoint blob."""
        view = require_view(self.view)
        directory = sorted(self.directory.values(), key=lambda e: e.contract_id)
        states: dict[str, bytes] = {}
        for cid in request.contract_ids:
            runtime = self.get_contract(cid)
            states[cid.hex()] = runtime.seal_state(
                self.random_bytes, height=view.number, block_hash=view.hash, directory=directory
            )
        return encode(CheckpointBlob(height=view.number, block_hash=view.hash, states=states))

    def restore_checkpoint(self, request: RestoreCheckpoint) -> list[ContractStatus]:
        """Resume from a checkpoint: every state in the blob must open under its contract
        key and be sealed at the blob's height and block hash; the blob becomes the anchor
        of the verified chain, and outputs wait until the ledger's record of it is seen."""
        blob_hash = keccak(request.blob)
        try:
            blob = decode(request.blob, CheckpointBlob)
        except EncodingError as exc:
            raise CheckpointRefused(f"checkpoint blob is malformed: {exc.message}") from exc
        installs = {i.contract_id.hex(): i for i in request.installs}
        if set(installs) != set(blob.states):
            raise CheckpointRefused("the key releases do not match the checkpoint's contracts")
        for cid_hex in blob.states:
            cid = bytes.fromhex(cid_hex)
            known = max(
                self.checkpoint_heights.get(cid, 0),
                self.contracts[cid].height if cid in self.contracts else 0,
            )
            if blob.height < known:
                raise StaleCheckpoint(
                    f"checkpoint at block {blob.height} is older than block {known}, which "
                    f"this runtime already holds for contract 0x{cid_hex[:12]}…"
                )
        if self.view is not None and self.view.number != blob.height:
            raise CheckpointRefused("the runtime already follows the chain from another block")
        restored: dict[bytes, tuple[ContractKeys, InstallContract, PersistedState]] = {}
        directory: dict[bytes, DirectoryEntry] = {}
        for cid_hex, sealed in blob.states.items():
            install = installs[cid_hex]
            keys = self.open_contract_key(install)
            try:
                state = unseal_state(keys, sealed)
            except (DecryptionError, EncodingError) as exc:
                raise CheckpointRefused(
                    f"state of contract 0x{cid_hex[:12]}… does not open under its key"
                ) from exc
            if state.height != blob.height or state.block_hash != blob.block_hash:
                raise CheckpointRefused(
                    f"state of contract 0x{cid_hex[:12]}… is not sealed at the checkpoint block"
                )
            if state.code and compute_code_hash(state.code) != install.code_hash:
                raise KeyMismatch("checkpoint holds code other than the chain's code hash")
            check_key_version(state, install)
            self.check_install_facts(install, keys, state)
            restored[install.contract_id] = (keys, install, state)
            for entry in state.directory:
                directory[entry.contract_id] = entry
        config = request.chain
        self.configure_chain(
            ChainConfig(
                chain_id=config.chain_id,
                command_inbox=config.command_inbox,
                contract_registry=config.contract_registry,
                execution_ledger=config.execution_ledger,
                anchor_number=blob.height,
                anchor_hash=blob.block_hash,
            )
        )
        for entry in directory.values():  # sealed with the states: as good as verified
            self.directory.setdefault(entry.contract_id, entry)
            self.verified_keys.add(entry.contract_id)
        statuses: list[ContractStatus] = []
        for cid, (keys, install, state) in restored.items():
            runtime = ContractRuntime(keys, install, state, self.executor)
            self.contracts[cid] = runtime
            self.remember_root(runtime)
            if runtime.accepted is not None:
                self.accepted.setdefault(cid, runtime.accepted)
            self.checkpoint_heights[cid] = blob.height
            statuses.append(runtime.get_status())
        self.pending_checkpoint = CheckpointEvent(
            blob_hash=blob_hash,
            node_id=b"",
            height=blob.height,
            block_hash=blob.block_hash,
            size=len(request.blob),
            contract_ids=list(restored),
        )
        return statuses

    def get_status(self) -> list[ContractStatus]:
        return [c.get_status() for c in self.contracts.values()]
