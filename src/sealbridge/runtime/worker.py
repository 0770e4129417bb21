"""The worker runtime: the trusted core that executes contracts inside the enclave.

Theory of operation
-------------------
The host (untrusted) follows the chain and hands the runtime, block by block, the
encrypted commands addressed to each installed contract (:class:`BlockInput`). For every
command the runtime

1. decrypts it with the contract's command key (user layer) -- else ``WrongKeyError``;
2. decodes the canonical :class:`SignedCommand` and checks the author's Ed25519 signature
   over the body -- else ``MalformedCommand`` / ``BadCommandSignature``;
3. checks the body names this contract and carries the next nonce of its sender -- else
   ``WrongContract`` / ``ReplayedCommand``;
4. consumes the nonce, executes the command as a pure transition of the contract state
   and applies the writes only when the contract accepted it.

A command refused in steps 1-3 changes nothing; one the contract refuses (step 4) changes
only its sender's nonce. Either way the block's receipts record it by error code.
After the block the runtime computes a state root -- a salted commitment to the whole
state (ledger, nonces, height) -- and seals the state under the contract's state key
(state layer). Two runtimes given the same blocks compute the same root.

Queries arrive signed by the caller; the answer commits to (block height, state root), is
signed by the worker's identity key and is encrypted to the caller's one-time reply key,
so the host relaying it learns nothing.

States of an installed contract: ``INSTALLED`` (key known, no block yet) -> ``RUNNING``.
Randomness (AEAD nonces) is an input: the runtime is given a ``random_bytes`` function.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from sealbridge.chain.abi import compute_output_digest
from sealbridge.contracts import token
from sealbridge.contracts.catalog import get_name_by_hash
from sealbridge.core.encoding import Message, decode, decode_canonical, encode
from sealbridge.core.errors import DecryptionError, EncodingError, InvalidSignature
from sealbridge.core.ids import hash_message, tagged_hash
from sealbridge.crypto import aead, ecies
from sealbridge.crypto.keyschedule import (
    ContractKeys,
    compute_contract_keys,
    key_release_aad,
)
from sealbridge.crypto.signing import ed25519_verify, to_checksum_address
from sealbridge.runtime.errors import (
    BadCommandSignature,
    KeyMismatch,
    MalformedCommand,
    QueryRefused,
    ReplayedCommand,
    RuntimeRefusal,
    StaleBlock,
    UnknownContract,
    UnsupportedCode,
    WrongContract,
    WrongKeyError,
)
from sealbridge.runtime.messages import (
    ANSWER_SIGN_TAG,
    COMMAND_SIGN_TAG,
    QUERY_SIGN_TAG,
    BlockInput,
    BlockOutput,
    CommandBody,
    ContractStatus,
    InboxCommand,
    InstallContract,
    QueryAnswer,
    QueryBody,
    Receipt,
    SignedAnswer,
    SignedCommand,
    SignedQuery,
    SignOutput,
    answer_aad,
    command_aad,
    state_aad,
)
from sealbridge.tee.enclave import EnclaveKeys

RandomBytes = Callable[[int], bytes]
RESULT_OK = "ok"
QUERY_MAX_AGE = 300  # seconds between a query's issued_at and the enclave clock


class ContractPhase(Enum):
    INSTALLED = "installed"
    RUNNING = "running"


class PersistedState(Message, frozen=True):
    """Everything that determines a contract's future: what is sealed at rest."""

    token: token.TokenState
    nonces: dict[str, int]
    height: int
    commands_applied: int


class StateCommitment(Message, frozen=True):
    """What a state root commits to."""

    token: token.TokenState
    nonces: dict[str, int]
    commands_applied: int


class ContractRuntime:
    """One installed contract: its keys and live state."""

    def __init__(self, keys: ContractKeys, code_hash: bytes, state: PersistedState) -> None:
        self.keys = keys
        self._recipient = ecies.Recipient(keys.command_private_key)
        self.code_hash = code_hash
        self.ledger = token.LiveToken(state.token)
        self.nonces = dict(state.nonces)
        self.height = state.height
        self.commands_applied = state.commands_applied
        self.phase = ContractPhase.RUNNING if state.height else ContractPhase.INSTALLED
        self.last_command_count = 0
        # sender hex -> (nonce, "ok" | error code) of the sender's latest authentic command;
        # not part of the state root or the sealed state (it is lost on restart).
        self.last_results: dict[str, tuple[int, str]] = {}
        self.state_root = self.compute_state_root()

    @property
    def contract_id(self) -> bytes:
        return self.keys.contract_id

    def snapshot(self) -> PersistedState:
        return PersistedState(
            token=self.ledger.snapshot(),
            nonces=dict(self.nonces),
            height=self.height,
            commands_applied=self.commands_applied,
        )

    def compute_state_root(self) -> bytes:
        """A salted commitment to the state; the block height is not part of it, so a block
        whose commands were all refused leaves the root unchanged."""
        committed = StateCommitment(
            token=self.ledger.snapshot(),
            nonces=dict(self.nonces),
            commands_applied=self.commands_applied,
        )
        return tagged_hash("sealbridge/state-root/v1", self.keys.root_salt + encode(committed))

    def open_command(self, ciphertext: bytes) -> CommandBody:
        """Decrypt and authenticate one command; raise a RuntimeRefusal if it is bad."""
        try:
            plaintext = self._recipient.decrypt(ciphertext, command_aad(self.contract_id))
        except DecryptionError as exc:
            raise WrongKeyError("command does not decrypt under this contract's key") from exc
        try:
            signed = decode_canonical(plaintext, SignedCommand)
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
        return body

    def apply_command(self, ciphertext: bytes, block_number: int) -> int | None:
        """Run one encrypted command.

        A command that fails to open (wrong key, malformed, bad signature, replayed nonce)
        raises and changes nothing. An authentic command consumes its sender's nonce even
        when the contract refuses it (as a reverted Ethereum transaction does), so senders
        never fall out of step with the runtime; the contract's own state is untouched.
        The outcome ("ok" or the contract's error code) is kept as the sender's latest
        result, which only the sender can query (``command_result``).
        """
        body = self.open_command(ciphertext)
        sender = body.sender.hex()
        self.nonces[sender] = body.nonce
        env = token.ExecEnv(block_number=block_number, caller=body.sender)
        try:
            outcome = token.execute(self.ledger, body.method, dict(body.args), env)
        except token.ContractError as exc:
            self.last_results[sender] = (body.nonce, exc.code)
            raise
        self.ledger.apply(outcome)
        self.commands_applied += 1
        self.last_results[sender] = (body.nonce, RESULT_OK)
        return outcome.result

    def process_command(self, command: InboxCommand, block_number: int) -> Receipt:
        try:
            self.apply_command(command.ciphertext, block_number)
        except (RuntimeRefusal, token.ContractError) as exc:
            return Receipt(seq=command.seq, ok=False, error=exc.code)
        return Receipt(seq=command.seq, ok=True)

    def get_command_result(self, sender: bytes, nonce: int) -> str:
        """The outcome of the sender's latest authentic command, if it had this nonce."""
        kept = self.last_results.get(sender.hex())
        if kept is None or kept[0] != nonce:
            latest = "none" if kept is None else str(kept[0])
            raise QueryRefused(
                f"no result kept for nonce {nonce} (only the latest command's result is kept; "
                f"latest: {latest})"
            )
        return kept[1]

    def process_block(self, block: BlockInput, random_bytes: RandomBytes) -> BlockOutput:
        if block.contract_id != self.contract_id:
            raise WrongContract("block input is for another contract")
        if block.number <= self.height:
            raise StaleBlock(f"block {block.number} is not above height {self.height}")
        order = [(c.tx_index, c.log_index) for c in block.commands]
        if order != sorted(order) or len(set(order)) != len(order):
            raise MalformedCommand("block commands are not in chain order")
        receipts = [self.process_command(c, block.number) for c in block.commands]
        self.height = block.number
        self.last_command_count = len(block.commands)
        self.phase = ContractPhase.RUNNING
        self.state_root = self.compute_state_root()
        return BlockOutput(
            contract_id=self.contract_id,
            number=block.number,
            state_root=self.state_root,
            command_count=len(block.commands),
            receipts=receipts,
            sealed_state=self.seal_state(random_bytes),
        )

    def seal_state(self, random_bytes: RandomBytes) -> bytes:
        return aead.seal(
            self.keys.state_key,
            encode(self.snapshot()),
            state_aad(self.contract_id),
            nonce=random_bytes(aead.NONCE_SIZE),
        )

    def get_status(self) -> ContractStatus:
        return ContractStatus(
            contract_id=self.contract_id,
            height=self.height,
            state_root=self.state_root,
            commands_applied=self.commands_applied,
        )


def unseal_state(keys: ContractKeys, sealed: bytes) -> PersistedState:
    """Open a sealed state blob; a wrong key or tampering gives DecryptionError."""
    plaintext = aead.open_sealed(keys.state_key, sealed, state_aad(keys.contract_id))
    return decode(plaintext, PersistedState)


def empty_state() -> PersistedState:
    return PersistedState(token=token.TokenState(), nonces={}, height=0, commands_applied=0)


class WorkerRuntime:
    """All contracts installed on one worker; the enclave program delegates to this."""

    def __init__(self, enclave: EnclaveKeys) -> None:
        self.enclave = enclave
        self.identity_key = enclave.identity.identity_key
        self.random_bytes: RandomBytes = enclave.random_bytes
        self.contracts: dict[bytes, ContractRuntime] = {}

    def install_contract(self, request: InstallContract) -> ContractStatus:
        """Accept a released contract key and (optionally) a sealed state to resume from."""
        try:
            get_name_by_hash(request.code_hash)
        except Exception as exc:
            raise UnsupportedCode(str(exc)) from exc
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
        runtime = ContractRuntime(keys, request.code_hash, state)
        self.contracts[request.contract_id] = runtime
        return runtime.get_status()

    def get_contract(self, contract_id: bytes) -> ContractRuntime:
        runtime = self.contracts.get(contract_id)
        if runtime is None:
            raise UnknownContract(f"contract 0x{contract_id.hex()} is not installed here")
        return runtime

    def process_block(self, block: BlockInput) -> BlockOutput:
        return self.get_contract(block.contract_id).process_block(block, self.random_bytes)

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
        if body.method == "next_nonce":
            # Runtime-level query: the caller's own next command nonce on this contract.
            if body.args:
                raise QueryRefused("next_nonce takes no arguments")
            result: int | str = runtime.nonces.get(body.caller.hex(), 0) + 1
        elif body.method == "command_result":
            # Runtime-level query: "ok" or the error code of the caller's latest command.
            nonce = body.args.get("nonce")
            if set(body.args) != {"nonce"} or not isinstance(nonce, int):
                raise QueryRefused("command_result takes {nonce: int}")
            result = runtime.get_command_result(body.caller, nonce)
        else:
            try:
                result = token.query(runtime.ledger, body.method, dict(body.args), body.caller)
            except token.ContractError as exc:
                raise QueryRefused(f"{exc.code}: {exc.message}") from exc
        query_hash = hash_message("sealbridge/query/v1", request)
        answer = QueryAnswer(
            contract_id=body.contract_id,
            method=body.method,
            args=dict(body.args),
            caller=body.caller,
            query_hash=query_hash,
            result=result,
            block_height=runtime.height,
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
