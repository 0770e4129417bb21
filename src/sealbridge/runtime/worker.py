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
4. consumes the nonce and runs the command in the contract executor (sandboxed, metered;
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
worker drop a message the others accept. (A host that leaves events out of the blocks it
delivers can still do that, for messages as for commands; the light-client checks of
block contents are not built yet.)

Refusals in steps 1-3 change nothing and the receipt names them. The outcome of an
authentic command -- ok or the contract's error, its result, gas used -- is sealed under
the result key inside the command, so only its sender can read it. After the block every
contract whose state changed gets a new state root -- a salted commitment to its storage,
nonces and code hash -- and its state is sealed under its state key (state layer).
Two runtimes given the same blocks compute the same roots.

Queries arrive signed by the caller; the answer commits to (block height, state root), is
signed by the worker's identity key and is encrypted to the caller's one-time reply key,
so the host relaying it learns nothing. Randomness (AEAD nonces) is an input.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, cast

from sealbridge.chain.abi import compute_output_digest
from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import (
    ContractProgram,
    Deployed,
    Executor,
    Outcome,
    compute_code_hash,
    compute_domain,
)
from sealbridge.contracts.gas import DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT, Abort
from sealbridge.contracts.sandbox import load_source
from sealbridge.contracts.storage import Journal, PersistedStorage, Storage
from sealbridge.core.encoding import Message, decode, decode_canonical, encode
from sealbridge.core.errors import DecryptionError, EncodingError, InvalidSignature
from sealbridge.core.ids import hash_message, tagged_hash
from sealbridge.crypto import aead, ecies
from sealbridge.crypto.keyschedule import ContractKeys, compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_sign, ed25519_verify, to_checksum_address
from sealbridge.runtime.errors import (
    BadCommandSignature,
    DirectoryIncomplete,
    KeyMismatch,
    MalformedCommand,
    QueryRefused,
    ReplayedCommand,
    RuntimeRefusal,
    StaleBlock,
    UnknownContract,
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
    CommandBody,
    CommandResult,
    ContractOutput,
    ContractStatus,
    DeployArgs,
    DirectoryEntry,
    InboxCommand,
    InstallContract,
    MessageBody,
    OutgoingMessage,
    QueryAnswer,
    QueryBody,
    Receipt,
    SignedAnswer,
    SignedCommand,
    SignedMessage,
    SignedQuery,
    SignOutput,
    answer_aad,
    command_aad,
    compute_deployer_commitment,
    result_aad,
    state_aad,
)
from sealbridge.tee.enclave import EnclaveKeys

RandomBytes = Callable[[int], bytes]
ENVELOPE: Any = SignedCommand | SignedMessage
QUERY_MAX_AGE = 300  # seconds between a query's issued_at and the enclave clock
STATUS_APPLIED = "applied"


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


class StateCommitment(Message, frozen=True):
    """What a state root commits to."""

    storage: PersistedStorage
    nonces: dict[str, int]
    commands_applied: int
    code_hash: bytes
    inbox_seqs: dict[str, int]
    outbox_seqs: dict[str, int]


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
        self._recipient = ecies.Recipient(keys.command_private_key)
        self.code_hash = request.code_hash
        self.deployer_commitment = request.deployer_commitment
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
        self.deployed: Deployed | None = None
        if state.code:
            self.deployed = executor.add(
                self.contract_id,
                load_source(state.code, filename="<contract>"),
                deployer=self.deployer,
                domain=self.domain,
                storage=self.storage,
            )
        self.last_command_count = 0
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

    def snapshot(self, storage: PersistedStorage | None = None) -> PersistedState:
        return PersistedState(
            storage=storage if storage is not None else self.storage.snapshot(),
            nonces=dict(self.nonces),
            height=self.height,
            commands_applied=self.commands_applied,
            code=self.code,
            deployer=self.deployer,
            confidential=self.confidential,
            inbox_seqs=dict(self.inbox_seqs),
            outbox_seqs=dict(self.outbox_seqs),
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
        )
        return tagged_hash("sealbridge/state-root/v1", self.keys.root_salt + encode(committed))

    def open_command(
        self, ciphertext: bytes, directory: dict[bytes, DirectoryEntry] | None = None
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
                return self.open_message(envelope, directory or {})
            signed = envelope
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

    def open_message(
        self, signed: SignedMessage, directory: dict[bytes, DirectoryEntry]
    ) -> MessageBody:
        body = decode_canonical(signed.body, MessageBody)
        source = directory.get(body.source)
        if source is None:
            raise DirectoryIncomplete(
                f"message from 0x{body.source.hex()}, whose keys the host has not supplied"
            )
        try:
            ed25519_verify(source.message_key, MESSAGE_SIGN_TAG + signed.body, signed.signature)
        except InvalidSignature as exc:
            raise BadCommandSignature("message signature does not verify") from exc
        if body.target != self.contract_id:
            raise WrongContract("message names another contract")
        last = self.inbox_seqs.get(body.source.hex(), 0)
        if body.seq <= last:
            raise ReplayedCommand(f"message {body.seq} from this source was already delivered")
        return body

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
    ) -> Outcome:
        """Run an authenticated command (its nonce is already consumed)."""
        seed = self.seed_for(command, block)
        gas_limit = min(body.gas_limit or DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT)
        if body.method == DEPLOY_METHOD:
            return self.deploy(body, block.number, seed, gas_limit, journal)
        return self.run(
            body.method, dict(body.args), body.sender, False, block, seed, journal, gas_limit
        )

    def execute_message(
        self, body: MessageBody, command: InboxCommand, block: BlockInput, journal: Journal
    ) -> Outcome:
        """Run a message from another contract (its number is consumed either way)."""
        journal.record(self.inbox_seqs, body.source.hex())
        self.inbox_seqs[body.source.hex()] = body.seq
        seed = self.seed_for(command, block)
        return self.run(body.method, dict(body.args), body.source, True, block, seed, journal)

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
    ) -> Outcome:
        if self.deployed is None:
            return Outcome(ok=False, error="not_deployed", message="the code is not deployed yet")
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
    ) -> Outcome:
        """Install the contract's code and run its @init (all or nothing)."""
        if self.deployed is not None:
            return Outcome(ok=False, error="already_deployed", message="code is already set")
        try:
            args = decode(encode(dict(body.args)), DeployArgs)
        except EncodingError as exc:
            return Outcome(ok=False, error="bad_arguments", message=exc.message)
        commitment = compute_deployer_commitment(self.contract_id, body.sender, args.salt)
        if commitment != self.deployer_commitment:
            return Outcome(
                ok=False, error="not_deployer", message="only the deployer may deploy the code"
            )
        if compute_code_hash(args.code) != self.code_hash:
            return Outcome(
                ok=False, error="code_hash_mismatch", message="code does not match the chain"
            )
        try:
            program: ContractProgram = load_source(args.code, filename="<contract>")
        except CodeRejected as exc:
            return Outcome(ok=False, error=exc.code, message=exc.message)
        except (Exception, Abort) as exc:  # noqa: BLE001 -- never let code stop the worker
            return Outcome(ok=False, error="code_rejected", message=type(exc).__name__)
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
                del self.executor.contracts[self.contract_id]
                return outcome
            gas_used = outcome.gas_used
        elif args.init:
            del self.executor.contracts[self.contract_id]
            return Outcome(ok=False, error="bad_arguments", message="the contract has no @init")
        self.deployed = deployed
        self.deployer = body.sender
        self.code = args.code
        self.confidential = args.confidential
        return Outcome(ok=True, gas_used=gas_used)

    def undeploy(self) -> None:
        """Forget code installed in a block that is being undone."""
        self.deployed = None
        self.deployer = b""
        self.code = b""
        self.confidential = False
        self.executor.contracts.pop(self.contract_id, None)

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
        self, random_bytes: RandomBytes, storage: PersistedStorage | None = None
    ) -> bytes:
        return aead.seal(
            self.keys.state_key,
            encode(self.snapshot(storage)),
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
        )


def unseal_state(keys: ContractKeys, sealed: bytes) -> PersistedState:
    """Open a sealed state blob; a wrong key or tampering gives DecryptionError."""
    plaintext = aead.open_sealed(keys.state_key, sealed, state_aad(keys.contract_id))
    return decode(plaintext, PersistedState)


def empty_state() -> PersistedState:
    return PersistedState(storage=PersistedStorage(), nonces={}, height=0, commands_applied=0)


class WorkerRuntime:
    """All contracts installed on one worker; the enclave program delegates to this."""

    def __init__(self, enclave: EnclaveKeys) -> None:
        self.enclave = enclave
        self.identity_key = enclave.identity.identity_key
        self.random_bytes: RandomBytes = enclave.random_bytes
        self.contracts: dict[bytes, ContractRuntime] = {}
        self.executor = Executor()
        self.directory: dict[bytes, DirectoryEntry] = {}
        self.latest_block = 0  # the newest block the host delivered (queries see this time)

    def install_contract(self, request: InstallContract) -> ContractStatus:
        """Accept a released contract key and (optionally) a sealed state to resume from."""
        try:
            contract_key = self.enclave.decrypt_for_identity(
                request.wrapped_key, key_release_aad(request.contract_id, self.identity_key)
            )
        except DecryptionError as exc:
            raise WrongKeyError("released contract key is not for this worker") from exc
        keys = compute_contract_keys(request.contract_id, contract_key)
        if keys.command_public_key != request.contract_public_key:
            raise KeyMismatch("released key does not match the contract's public key on chain")
        state = unseal_state(keys, request.sealed_state) if request.sealed_state else empty_state()
        if state.code and compute_code_hash(state.code) != request.code_hash:
            raise KeyMismatch("sealed state holds code other than the chain's code hash")
        runtime = ContractRuntime(keys, request, state, self.executor)
        self.contracts[request.contract_id] = runtime
        return runtime.get_status()

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

    def process_block(self, block: BlockInput) -> BlockOutput:
        """Apply one block's commands as one atomic unit."""
        self.check_block(block)
        self.latest_block = max(self.latest_block, block.number)
        for entry in block.directory:
            self.directory.setdefault(entry.contract_id, entry)
        journal = Journal()
        # only the contracts named by a command can change their count or get code
        before = {
            cid: (self.contracts[cid].commands_applied, self.contracts[cid].deployed is not None)
            for cid in {c.contract_id for c in block.commands}
        }
        touched: dict[bytes, int] = {}
        receipts: list[Receipt] = []
        outgoing: list[OutgoingMessage] = []
        try:
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
        outputs: list[ContractOutput] = []
        for cid in sorted(touched):
            runtime = self.contracts[cid]
            runtime.height = block.number
            runtime.last_command_count = touched[cid]
            storage = runtime.storage.snapshot()  # once, for the root and the sealed state
            runtime.state_root = runtime.compute_state_root(storage)
            outputs.append(
                ContractOutput(
                    contract_id=cid,
                    state_root=runtime.state_root,
                    command_count=touched[cid],
                    sealed_state=runtime.seal_state(self.random_bytes, storage),
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
        runtime = self.contracts[command.contract_id]
        touched[command.contract_id] = touched.get(command.contract_id, 0) + 1
        try:
            body = runtime.open_command(command.ciphertext, self.directory)
        except RuntimeRefusal as exc:
            return Receipt(contract_id=command.contract_id, seq=command.seq, status=exc.code)
        self.executor.touched.clear()
        if isinstance(body, MessageBody):
            outcome = runtime.execute_message(body, command, block, journal)
        else:
            journal.record(runtime.nonces, body.sender.hex())
            runtime.nonces[body.sender.hex()] = body.nonce
            outcome = runtime.execute(body, command, block, journal)
        for cid in self.executor.touched:
            touched.setdefault(cid, 0)
        if outcome.ok:
            runtime.commands_applied += 1
            outgoing.extend(self.send_messages(outcome, journal))
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
        runtime.last_results[body.sender.hex()] = (body.nonce, result)
        return Receipt(
            contract_id=command.contract_id,
            seq=command.seq,
            status=STATUS_APPLIED,
            sealed_result=runtime.seal_result(body, result, self.random_bytes),
        )

    def send_messages(self, outcome: Outcome, journal: Journal) -> list[OutgoingMessage]:
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
            ciphertext = (
                b""
                if target is None
                else ecies.encrypt_to(
                    target.command_key,
                    encode(signed),
                    command_aad(message.target),
                    ephemeral_seed=self.random_bytes(32),
                )
            )
            out.append(
                OutgoingMessage(
                    source=message.source, target=message.target, seq=seq, ciphertext=ciphertext
                )
            )
        return out

    def answer_query(self, request: SignedQuery, now: int) -> bytes:
        """Return the signed answer encrypted to the caller's reply key.

        ``now`` is the enclave's clock; a query issued more than QUERY_MAX_AGE seconds away
        from it is refused, so a relayed old query cannot be answered again much later."""
        try:
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

    def sign_output(self, request: SignOutput) -> bytes:
        """Sign the OutputRecords digest of the root this runtime computed at that block."""
        runtime = self.get_contract(request.contract_id)
        if request.number != runtime.height:
            raise StaleBlock(f"block {request.number} is not the applied height {runtime.height}")
        digest = compute_output_digest(
            output_records=to_checksum_address(request.outputs_address),
            chain_id=request.chain_id,
            contract_id=request.contract_id,
            block_number=request.number,
            state_root=runtime.state_root,
            command_count=runtime.last_command_count,
        )
        return self.enclave.sign_eth_digest(digest)

    def get_status(self) -> list[ContractStatus]:
        return [c.get_status() for c in self.contracts.values()]
