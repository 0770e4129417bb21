"""Typed Python wrappers of the four management contracts.

Theory of operation: :func:`deploy_management` compiles and deploys NodeRegistry,
ContractRegistry, CommandInbox and ExecutionLedger in dependency order and returns their
:class:`ManagementAddresses` (JSON-saveable). :class:`ManagementContracts` binds those
addresses to a :class:`~sealbridge.evm.adapter.ChainAdapter` and exposes one method
per contract function, so other layers never touch an ABI. Transacting methods take the
contract's arguments first and the sender's private key last, wait for the receipt and
raise :class:`~sealbridge.chain.errors.TransactionReverted` (with the contract's revert
string) when the contract refuses. Views return frozen Structs, or ``None`` for an
unknown id. Each wrapper also computes the digest its contract verifies, bound to its
own address and the chain id (see :mod:`sealbridge.chain.abi`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from sealbridge.chain.abi import (
    HEARTBEAT_SLOTS,
    AbiCodec,
    Role,
    checksum,
    compute_contract_key_digest,
    compute_execution_digest,
    compute_heartbeat_digest,
    compute_key_rotation_digest,
    compute_registration_digest,
    compute_storage_digest,
    compute_storage_node_id,
    compute_storage_registration_digest,
    sign_digest,
)
from sealbridge.chain.errors import ChainConfigError, ChainError
from sealbridge.chain.ledger import MAX_OUTPUT_BATCH, OutputSubmission
from sealbridge.chain.registration import EraParams
from sealbridge.core.encoding import Message, to_json
from sealbridge.core.errors import EncodingError
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import CompiledContract, compile_contract

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MAX_WORKERS = 16
MAX_BATCH = 64
MAX_CIPHERTEXT = 32768  # CommandInbox.submit (a deploy command carries code)
MAX_BATCH_CIPHERTEXT = 4096  # each command of CommandInbox.submit_batch
MAX_QUOTE = 8192
MAX_WRAPPED_KEY = 256
MAX_STORAGE_SIGS = 16
MAX_INLINE_CHECKPOINT = 8192
ZERO_HASH = bytes(32)
MAX_NODES = 256  # NodeRegistry: nodes listed (judged when eras close)
NOT_LEFT = 2**256 - 1  # Tenure.left_era of a node that has not left
HEARTBEAT_GAS = 100_000  # a heartbeat's gas limit (fixed: see NodeRegistry.send_heartbeat)
# deploy_management defaults (the devnet's)
DEFAULT_ERA_LENGTH = 100  # blocks
DEFAULT_SLASH_BPS = 1000  # 10 % of the stake
DEFAULT_UNBONDING_BLOCKS = 200
DEFAULT_RENEWAL_GRACE = 24 * 3600  # seconds after expiry a registration may still be renewed


class ManagementAddresses(Message, frozen=True):
    """Where the management contracts live on one chain."""

    chain_id: int
    node_registry: str
    contract_registry: str
    command_inbox: str
    execution_ledger: str
    deployed_at_block: int
    evm_version: str

    def get_all(self) -> list[str]:
        return [
            self.node_registry,
            self.contract_registry,
            self.command_inbox,
            self.execution_ledger,
        ]

    def to_json(self) -> str:
        return to_json(self, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> ManagementAddresses:
        try:
            return msgspec.json.decode(text, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EncodingError(f"malformed ManagementAddresses JSON: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ManagementAddresses:
        return cls.from_json(Path(path).read_bytes())


class NodeRecord(Message, frozen=True):
    """NodeRegistry.get_node."""

    owner: str
    role: int
    identity_key: bytes
    encryption_key: bytes
    enclave_address: str
    quote_hash: bytes
    measurement: bytes
    stake: int
    expiry: int
    active: bool


class TenureRecord(Message, frozen=True):
    """NodeRegistry.get_tenure: a node's lifecycle (eras, unbonding)."""

    joined_era: int  # the era it (re-)registered in; judged from the next era on
    left_era: int  # the era it left or was slashed out in (NOT_LEFT while registered)
    unbond_at: int  # block from which the owner may withdraw the stake (once inactive)
    listed: bool  # judged when eras close; false once the stake is withdrawn


class ContractRecord(Message, frozen=True):
    """ContractRegistry.get_contract."""

    contract_id: bytes
    code_hash: bytes
    deployer: str
    gatekeeper_id: bytes
    workers: list[bytes]
    deployer_commitment: bytes
    contract_public_key: bytes
    message_key: bytes
    wrapped_key: bytes
    key_published: bool
    key_version: int = 0  # the contract key's version (0 until the first rotation)
    rotated_at: int = 0  # the block of the latest rotation (0: never rotated)
    rotation_pending: bool = False  # the deployer asked for a new version, not yet published

    def get_version_at(self, height: int) -> int:
        """The key version that seals the contract's state after block ``height`` (the
        switch happens after the rotation's block). The registry keeps only the latest
        rotation, so any height before it gives the version just before it (older
        versions are never released anyway)."""
        if self.key_version > 0 and height < self.rotated_at:
            return self.key_version - 1
        return self.key_version


class AcceptedOutput(Message, frozen=True):
    """ExecutionLedger.get_output: a contract's last accepted output."""

    contract_id: bytes
    end: int
    end_hash: bytes
    state_root: bytes
    commands_applied: int
    node_id: bytes
    accepted_at: int


class CheckpointRecord(Message, frozen=True):
    """ExecutionLedger.get_checkpoint: a contract's latest recorded checkpoint."""

    contract_id: bytes
    height: int
    block_hash: bytes
    blob_hash: bytes
    size: int
    state_root: bytes
    inline: bool
    recorded_at: int


class SubmittedCommand(Message, frozen=True):
    """Where a command landed in the inbox."""

    contract_id: bytes
    seq: int
    tx_hash: bytes
    block_number: int
    tx_index: int
    log_index: int


def _check_len(value: bytes, limit: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise ChainConfigError(f"{what} must be bytes")
    if len(value) > limit:
        raise ChainConfigError(f"{what} is {len(value)} bytes; the contract accepts {limit}")
    return bytes(value)


class _BoundContract(BoundContract):
    """A management contract; ``_send`` submits without waiting for the receipt."""

    def _send(self, fn: str, args: Sequence[Any], sender_key: bytes, value: int = 0) -> bytes:
        data = self.codec.function(fn).encode_call(args)
        return self.adapter.send_transaction(sender_key, to=self.address, data=data, value=value)


class NodeRegistry(_BoundContract):
    name = "NodeRegistry"

    def __init__(self, adapter: ChainAdapter, address: str, compiled: CompiledContract) -> None:
        super().__init__(adapter, address, compiled)
        self._era_params: EraParams | None = None

    def compute_registration_digest(
        self,
        *,
        role: int,
        identity_key: bytes,
        encryption_key: bytes,
        enclave_address: str,
        quote_hash: bytes,
        measurement: bytes,
        expiry: int,
    ) -> bytes:
        """The digest an attestor's enclave signs to approve this registration."""
        return compute_registration_digest(
            registry=self.address,
            chain_id=self.adapter.chain_id,
            role=role,
            identity_key=identity_key,
            encryption_key=encryption_key,
            enclave_address=enclave_address,
            quote_hash=quote_hash,
            measurement=measurement,
            expiry=expiry,
        )

    def register_genesis_gatekeeper(
        self,
        identity_key: bytes,
        encryption_key: bytes,
        enclave_address: str,
        measurement: bytes,
        expiry: int,
        quote: bytes,
        sender_key: bytes,
        *,
        stake: int = 0,
        quote_hash: bytes | None = None,
    ) -> TxReceipt:
        """Admin only: register the first gatekeeper (no attestor exists yet)."""
        quote = _check_len(quote, MAX_QUOTE, "quote")
        args = [
            identity_key,
            encryption_key,
            checksum(enclave_address),
            quote_hash if quote_hash is not None else keccak(quote),
            measurement,
            expiry,
            quote,
        ]
        return self._transact("register_genesis_gatekeeper", args, sender_key, stake)

    def register(
        self,
        role: int,
        identity_key: bytes,
        encryption_key: bytes,
        enclave_address: str,
        measurement: bytes,
        expiry: int,
        attestor_id: bytes,
        approval: bytes,
        quote: bytes,
        sender_key: bytes,
        *,
        stake: int,
        quote_hash: bytes | None = None,
    ) -> TxReceipt:
        """Register a node approved by an active gatekeeper's enclave signature."""
        quote = _check_len(quote, MAX_QUOTE, "quote")
        args = [
            int(role),
            identity_key,
            encryption_key,
            checksum(enclave_address),
            quote_hash if quote_hash is not None else keccak(quote),
            measurement,
            expiry,
            attestor_id,
            _check_len(approval, 65, "approval"),
            quote,
        ]
        return self._transact("register", args, sender_key, stake)

    def compute_storage_registration_digest(self, node_id: bytes, owner: str, expiry: int) -> bytes:
        return compute_storage_registration_digest(
            registry=self.address,
            chain_id=self.adapter.chain_id,
            node_id=node_id,
            owner=owner,
            expiry=expiry,
        )

    def register_storage(
        self, signer_key: bytes, expiry: int, sender_key: bytes, *, stake: int
    ) -> bytes:
        """Register a storage node (no attestation: it holds only ciphertext). The node's
        signing key proves possession; ``sender_key`` pays the stake and owns the entry.
        Returns the node id."""
        signer = ChainAdapter.address_of(signer_key)
        node_id = compute_storage_node_id(signer)
        owner = ChainAdapter.address_of(sender_key)
        proof = sign_digest(
            self.compute_storage_registration_digest(node_id, owner, expiry), signer_key
        )
        self._transact("register_storage", [node_id, signer, expiry, proof], sender_key, stake)
        return node_id

    def get_node(self, node_id: bytes) -> NodeRecord | None:
        (raw,) = self._call("get_node", node_id)
        if raw[0] == ZERO_ADDRESS:
            return None
        return NodeRecord(
            owner=checksum(raw[0]),
            role=int(raw[1]),
            identity_key=bytes(raw[2]),
            encryption_key=bytes(raw[3]),
            enclave_address=checksum(raw[4]),
            quote_hash=bytes(raw[5]),
            measurement=bytes(raw[6]),
            stake=int(raw[7]),
            expiry=int(raw[8]),
            active=bool(raw[9]),
        )

    def is_active(self, node_id: bytes, role: int) -> bool:
        return bool(self._call("is_active", node_id, int(role))[0])

    def is_key_retired(self, node_id: bytes, key: bytes) -> bool:
        """Whether a renewal retired ``key`` (a 32-byte encryption key or a 20-byte enclave
        address) for the node: it is never accepted for it again."""
        if len(key) not in (20, 32):
            raise ChainConfigError("a node key is a 32-byte encryption key or a 20-byte address")
        return bool(self._call("retired_keys", node_id, key.rjust(32, b"\x00"))[0])

    def get_enclave_address(self, node_id: bytes) -> str:
        return checksum(self._call("get_enclave_address", node_id)[0])

    def get_admin(self) -> str:
        return checksum(self._call("admin")[0])

    def get_min_stake(self) -> int:
        return int(self._call("min_stake")[0])

    def get_node_count(self) -> int:
        return int(self._call("node_count")[0])

    # -- lifecycle: renewal, heartbeats, eras, leaving -----------------------------------
    def renew(
        self,
        node_id: bytes,
        encryption_key: bytes,
        enclave_address: str,
        expiry: int,
        measurement: bytes,
        attestor_id: bytes,
        approval: bytes,
        quote: bytes,
        sender_key: bytes,
        *,
        quote_hash: bytes | None = None,
    ) -> TxReceipt:
        """Extend a TEE node's registration (owner only) over fresh node keys: the new
        encryption key and enclave address, a fresh quote binding them and a later
        expiry, with an active gatekeeper's approval over their registration digest."""
        quote = _check_len(quote, MAX_QUOTE, "quote")
        args = [
            node_id,
            encryption_key,
            checksum(enclave_address),
            expiry,
            quote_hash if quote_hash is not None else keccak(quote),
            measurement,
            attestor_id,
            _check_len(approval, 65, "approval"),
            quote,
        ]
        return self._transact("renew", args, sender_key)

    def renew_storage(self, signer_key: bytes, expiry: int, sender_key: bytes) -> TxReceipt:
        """Extend a storage node's registration: its signing key signs the later expiry."""
        node_id = compute_storage_node_id(ChainAdapter.address_of(signer_key))
        owner = ChainAdapter.address_of(sender_key)
        proof = sign_digest(
            self.compute_storage_registration_digest(node_id, owner, expiry), signer_key
        )
        return self._transact("renew_storage", [node_id, expiry, proof], sender_key)

    def get_era_params(self) -> EraParams:
        """Genesis block and era length (immutable; read once, then cached)."""
        if self._era_params is None:
            self._era_params = EraParams(
                genesis_block=int(self._call("genesis_block")[0]),
                era_length=int(self._call("era_length")[0]),
            )
        return self._era_params

    def compute_heartbeat_digest(self, node_id: bytes, era: int, slot: int) -> bytes:
        """The digest a node's enclave (or storage key) signs for one heartbeat."""
        return compute_heartbeat_digest(
            registry=self.address,
            chain_id=self.adapter.chain_id,
            node_id=node_id,
            era=era,
            slot=slot,
        )

    def _heartbeat_call(self, node_id: bytes, era: int, slot: int, signature: bytes) -> bytes:
        args = [node_id, era, slot, _check_len(signature, 65, "signature")]
        return self.codec.function("heartbeat").encode_call(args)

    def heartbeat(
        self, node_id: bytes, era: int, slot: int, signature: bytes, sender_key: bytes
    ) -> TxReceipt:
        """Relay a signed heartbeat and wait (TransactionReverted if refused). Sent with a
        fixed gas limit, like :meth:`send_heartbeat`."""
        data = self._heartbeat_call(node_id, era, slot, signature)
        return self.adapter.transact(sender_key, to=self.address, data=data, gas=HEARTBEAT_GAS)

    def send_heartbeat(
        self, node_id: bytes, era: int, slot: int, signature: bytes, sender_key: bytes
    ) -> bytes:
        """Relay a signed heartbeat without waiting; return the tx hash. The gas limit is
        fixed rather than estimated: an estimate runs at the newest block, whose slot may
        differ from the next block's, where the heartbeat lands."""
        data = self._heartbeat_call(node_id, era, slot, signature)
        return self.adapter.send_transaction(
            sender_key, to=self.address, data=data, gas=HEARTBEAT_GAS
        )

    def set_reporter(self, reporter: str, sender_key: bytes) -> TxReceipt:
        """Admin, once: the ExecutionLedger that reports activity."""
        return self._transact("set_reporter", [checksum(reporter)], sender_key)

    def close_era(self, era: int, sender_key: bytes) -> TxReceipt:
        """Judge a finished era (anyone; in order, once each)."""
        return self._transact("close_era", [era], sender_key)

    def unregister(self, node_id: bytes, sender_key: bytes) -> TxReceipt:
        """Owner: leave; the stake unbonds."""
        return self._transact("unregister", [node_id], sender_key)

    def withdraw_stake(self, node_id: bytes, sender_key: bytes) -> TxReceipt:
        """Owner: take back the remaining stake of an unbonded, fully judged node."""
        return self._transact("withdraw_stake", [node_id], sender_key)

    def withdraw_slashed(self, to: str, sender_key: bytes) -> TxReceipt:
        """Admin: pay out the slashed pool."""
        return self._transact("withdraw_slashed", [checksum(to)], sender_key)

    def get_tenure(self, node_id: bytes) -> TenureRecord:
        (raw,) = self._call("get_tenure", node_id)
        return TenureRecord(
            joined_era=int(raw[0]), left_era=int(raw[1]), unbond_at=int(raw[2]), listed=bool(raw[3])
        )

    def get_current_era(self) -> int:
        """The era of the newest block."""
        return int(self._call("current_era")[0])

    def get_current_slot(self) -> int:
        return int(self._call("current_slot")[0])

    def get_activity(self, era: int, node_id: bytes) -> int:
        return int(self._call("get_activity", era, node_id)[0])

    def get_heartbeat_slots(self, era: int, node_id: bytes) -> int:
        """Bitmap of the slots of ``era`` the node sent a heartbeat for."""
        return int(self._call("get_heartbeat_slots", era, node_id)[0])

    def get_node_ids(self) -> list[bytes]:
        return [bytes(n) for n in self._call("get_node_ids")[0]]

    def get_next_era(self) -> int:
        """The next era to close."""
        return int(self._call("next_era")[0])

    def get_slashed_total(self) -> int:
        return int(self._call("slashed_total")[0])

    def get_reporter(self) -> str:
        return checksum(self._call("reporter")[0])

    def get_slash_bps(self) -> int:
        return int(self._call("slash_bps")[0])

    def get_unbonding_blocks(self) -> int:
        return int(self._call("unbonding_blocks")[0])

    def get_renewal_grace(self) -> int:
        return int(self._call("renewal_grace")[0])


class ContractRegistry(_BoundContract):
    name = "ContractRegistry"

    def compute_contract_key_digest(
        self,
        contract_id: bytes,
        contract_public_key: bytes,
        message_key: bytes,
        wrapped_key: bytes,
    ) -> bytes:
        """The digest the assigned gatekeeper's enclave signs to publish a key."""
        return compute_contract_key_digest(
            contract_registry=self.address,
            chain_id=self.adapter.chain_id,
            contract_id=contract_id,
            contract_public_key=contract_public_key,
            message_key=message_key,
            wrapped_key=wrapped_key,
        )

    def deploy(
        self,
        contract_id: bytes,
        code_hash: bytes,
        gatekeeper_id: bytes,
        workers: Sequence[bytes],
        deployer_commitment: bytes,
        sender_key: bytes,
    ) -> TxReceipt:
        """Deploy a confidential contract: the sender's account pays; only the identity key
        behind ``deployer_commitment`` (see ``compute_deployer_commitment``) may install
        its code."""
        if len(workers) > MAX_WORKERS:
            raise ChainConfigError(f"at most {MAX_WORKERS} workers per contract")
        args = [contract_id, code_hash, gatekeeper_id, list(workers), deployer_commitment]
        return self._transact("deploy", args, sender_key)

    def publish_contract_key(
        self,
        contract_id: bytes,
        contract_public_key: bytes,
        message_key: bytes,
        wrapped_key: bytes,
        signature: bytes,
        sender_key: bytes,
    ) -> TxReceipt:
        """Publish the contract key, signed by the assigned gatekeeper's enclave."""
        args = [
            contract_id,
            contract_public_key,
            message_key,
            _check_len(wrapped_key, MAX_WRAPPED_KEY, "wrapped_key"),
            _check_len(signature, 65, "signature"),
        ]
        return self._transact("publish_contract_key", args, sender_key)

    def compute_key_rotation_digest(
        self, contract_id: bytes, version: int, contract_public_key: bytes, message_key: bytes
    ) -> bytes:
        """The digest the contract's gatekeeper enclave signs to publish a new key version."""
        return compute_key_rotation_digest(
            contract_registry=self.address,
            chain_id=self.adapter.chain_id,
            contract_id=contract_id,
            version=version,
            contract_public_key=contract_public_key,
            message_key=message_key,
        )

    def request_key_rotation(self, contract_id: bytes, sender_key: bytes) -> TxReceipt:
        """Ask for a new version of the contract's key (the deployer's account only)."""
        return self._transact("request_key_rotation", [contract_id], sender_key)

    def rotate_contract_key(
        self,
        contract_id: bytes,
        version: int,
        contract_public_key: bytes,
        message_key: bytes,
        signature: bytes,
        sender_key: bytes,
    ) -> TxReceipt:
        """Publish key version ``version``, signed by the contract's gatekeeper enclave."""
        args = [
            contract_id,
            version,
            contract_public_key,
            message_key,
            _check_len(signature, 65, "signature"),
        ]
        return self._transact("rotate_contract_key", args, sender_key)

    def get_contract(self, contract_id: bytes) -> ContractRecord | None:
        (raw,) = self._call("get_contract", contract_id)
        if raw[1] == ZERO_ADDRESS:
            return None
        return ContractRecord(
            contract_id=bytes(contract_id),
            code_hash=bytes(raw[0]),
            deployer=checksum(raw[1]),
            gatekeeper_id=bytes(raw[2]),
            workers=[bytes(w) for w in raw[3]],
            deployer_commitment=bytes(raw[4]),
            contract_public_key=bytes(raw[5]),
            message_key=bytes(raw[6]),
            wrapped_key=bytes(raw[7]),
            key_published=bool(raw[8]),
            key_version=int(raw[9]),
            rotated_at=int(raw[10]),
            rotation_pending=bool(raw[11]),
        )

    def is_assigned(self, contract_id: bytes, worker_id: bytes) -> bool:
        return bool(self._call("is_assigned", contract_id, worker_id)[0])

    def is_key_published(self, contract_id: bytes) -> bool:
        return bool(self._call("is_key_published", contract_id)[0])

    def get_contract_count(self) -> int:
        return int(self._call("contract_count")[0])


class CommandInbox(_BoundContract):
    name = "CommandInbox"

    def _commands(self, receipt: TxReceipt) -> list[SubmittedCommand]:
        event = self.codec.event_by_name("Command")
        out: list[SubmittedCommand] = []
        for log in receipt.logs:
            if log.address == self.address and log.topics and log.topics[0] == event.topic:
                args = event.decode(log.topics, log.data)
                out.append(
                    SubmittedCommand(
                        contract_id=args["contract_id"],
                        seq=args["seq"],
                        tx_hash=receipt.tx_hash,
                        block_number=receipt.block_number,
                        tx_index=receipt.tx_index,
                        log_index=log.log_index,
                    )
                )
        return out

    def submit(self, contract_id: bytes, ciphertext: bytes, sender_key: bytes) -> SubmittedCommand:
        """Append one encrypted command; wait and return where it landed."""
        ciphertext = _check_len(ciphertext, MAX_CIPHERTEXT, "ciphertext")
        receipt = self._transact("submit", [contract_id, ciphertext], sender_key)
        commands = self._commands(receipt)
        if len(commands) != 1:
            raise ChainError(f"expected one Command event, got {len(commands)}")
        return commands[0]

    def send_submit(self, contract_id: bytes, ciphertext: bytes, sender_key: bytes) -> bytes:
        """Like :meth:`submit` but return the tx hash at once (pipelined sending)."""
        ciphertext = _check_len(ciphertext, MAX_CIPHERTEXT, "ciphertext")
        return self._send("submit", [contract_id, ciphertext], sender_key)

    def submit_batch(
        self, commands: Sequence[tuple[bytes, bytes]], sender_key: bytes
    ) -> list[SubmittedCommand]:
        """Append up to 64 ``(contract_id, ciphertext)`` commands in one transaction."""
        if not 1 <= len(commands) <= MAX_BATCH:
            raise ChainConfigError(f"a batch holds 1..{MAX_BATCH} commands")
        ids = [cid for cid, _ in commands]
        texts = [_check_len(ct, MAX_BATCH_CIPHERTEXT, "ciphertext") for _, ct in commands]
        return self._commands(self._transact("submit_batch", [ids, texts], sender_key))

    def get_command_count(self) -> int:
        return int(self._call("command_count")[0])


class ExecutionLedger(_BoundContract):
    """Competitive execution: first valid output per range wins; checkpoint records."""

    name = "ExecutionLedger"

    def compute_execution_digest(self, submission: OutputSubmission) -> bytes:
        """The digest a worker's enclave signs for ``submission`` (its signature ignored)."""
        return compute_execution_digest(
            ledger=self.address,
            chain_id=self.adapter.chain_id,
            contract_ids=submission.contract_ids,
            starts=submission.starts,
            end=submission.end,
            end_hash=submission.end_hash,
            state_roots=submission.state_roots,
            commands_applied=submission.commands_applied,
            checkpoint_hash=submission.checkpoint_hash,
            checkpoint_size=submission.checkpoint_size,
        )

    def compute_storage_digest(self, blob_hash: bytes, size: int) -> bytes:
        """The digest a storage node signs to confirm it holds a blob."""
        return compute_storage_digest(
            ledger=self.address, chain_id=self.adapter.chain_id, blob_hash=blob_hash, size=size
        )

    @staticmethod
    def _args(s: OutputSubmission) -> list[Any]:
        count = len(s.contract_ids)
        if not 0 < count <= MAX_OUTPUT_BATCH:
            raise ChainConfigError(f"a submission covers 1..{MAX_OUTPUT_BATCH} contracts")
        if not len(s.starts) == len(s.state_roots) == len(s.commands_applied) == count:
            raise ChainConfigError("submission arrays differ in length")
        if len(s.storage_ids) != len(s.storage_sigs) or len(s.storage_ids) > MAX_STORAGE_SIGS:
            raise ChainConfigError(f"1..{MAX_STORAGE_SIGS} storage confirmations, one id each")
        return [
            list(s.contract_ids),
            list(s.starts),
            s.end,
            s.end_hash,
            list(s.state_roots),
            list(s.commands_applied),
            s.checkpoint_hash,
            s.checkpoint_size,
            s.node_id,
            _check_len(s.signature, 65, "signature"),
            list(s.storage_ids),
            [_check_len(sig, 65, "storage signature") for sig in s.storage_sigs],
            _check_len(s.inline_blob, MAX_INLINE_CHECKPOINT, "inline checkpoint"),
        ]

    @staticmethod
    def get_gas_budget(submission: OutputSubmission) -> int:
        """A gas limit that covers ``submission`` (unused gas is not paid). A fixed budget
        rather than an estimate: an output usually ends at the newest block, which an
        estimate run against that block would call "not in the past"."""
        count = len(submission.contract_ids)
        with_checkpoint = submission.checkpoint_hash != ZERO_HASH
        return (
            190_000  # the worker's activity reported to the NodeRegistry included
            + 160_000 * count  # an output: six fresh storage slots, a registry call, an event
            + (170_000 * count if with_checkpoint else 0)  # a checkpoint: seven more slots
            + 50_000 * len(submission.storage_sigs)  # check + the node's activity reported
            + 48 * len(submission.inline_blob)
        )

    def submit(self, submission: OutputSubmission, sender_key: bytes) -> TxReceipt:
        """Submit signed outputs; TransactionReverted if the ledger refuses them."""
        data = self.codec.function("submit").encode_call(self._args(submission))
        return self.adapter.transact(
            sender_key, to=self.address, data=data, gas=self.get_gas_budget(submission)
        )

    def send_submit(self, submission: OutputSubmission, sender_key: bytes) -> bytes:
        """Like :meth:`submit` but return the tx hash at once (no wait for the receipt)."""
        data = self.codec.function("submit").encode_call(self._args(submission))
        return self.adapter.send_transaction(
            sender_key, to=self.address, data=data, gas=self.get_gas_budget(submission)
        )

    def get_output(self, contract_id: bytes) -> AcceptedOutput | None:
        """The contract's last accepted output (None before the first)."""
        (raw,) = self._call("get_output", contract_id)
        if int(raw[0]) == 0:
            return None
        return AcceptedOutput(
            contract_id=bytes(contract_id),
            end=int(raw[0]),
            end_hash=bytes(raw[1]),
            state_root=bytes(raw[2]),
            commands_applied=int(raw[3]),
            node_id=bytes(raw[4]),
            accepted_at=int(raw[5]),
        )

    def get_checkpoint(self, contract_id: bytes) -> CheckpointRecord | None:
        """The contract's latest recorded checkpoint (None if none)."""
        (raw,) = self._call("get_checkpoint", contract_id)
        if int(raw[0]) == 0:
            return None
        return CheckpointRecord(
            contract_id=bytes(contract_id),
            height=int(raw[0]),
            block_hash=bytes(raw[1]),
            blob_hash=bytes(raw[2]),
            size=int(raw[3]),
            state_root=bytes(raw[4]),
            inline=bool(raw[5]),
            recorded_at=int(raw[6]),
        )

    def get_storage_threshold(self) -> int:
        return int(self._call("storage_threshold")[0])

    def get_accepted_count(self) -> int:
        return int(self._call("accepted_count")[0])


class ManagementContracts:
    """The four management contracts bound to one adapter."""

    def __init__(self, adapter: ChainAdapter, addresses: ManagementAddresses) -> None:
        if addresses.chain_id != adapter.chain_id:
            raise ChainConfigError(
                f"addresses are for chain {addresses.chain_id}, adapter is on {adapter.chain_id}"
            )
        ev = addresses.evm_version
        self.adapter = adapter
        self.addresses = addresses
        self.node_registry = NodeRegistry(
            adapter, addresses.node_registry, compile_contract("NodeRegistry", evm_version=ev)
        )
        self.contract_registry = ContractRegistry(
            adapter,
            addresses.contract_registry,
            compile_contract("ContractRegistry", evm_version=ev),
        )
        self.command_inbox = CommandInbox(
            adapter, addresses.command_inbox, compile_contract("CommandInbox", evm_version=ev)
        )
        self.execution_ledger = ExecutionLedger(
            adapter,
            addresses.execution_ledger,
            compile_contract("ExecutionLedger", evm_version=ev),
        )

    def get_codecs(self) -> dict[str, AbiCodec]:
        """ABI codec per (checksummed) contract address, for decoding logs."""
        return {
            c.address: c.codec
            for c in (
                self.node_registry,
                self.contract_registry,
                self.command_inbox,
                self.execution_ledger,
            )
        }


def deploy_management(
    adapter: ChainAdapter,
    admin_key: bytes,
    min_stake: int,
    *,
    storage_threshold: int = 2,
    era_length: int = DEFAULT_ERA_LENGTH,
    slash_bps: int = DEFAULT_SLASH_BPS,
    unbonding_blocks: int = DEFAULT_UNBONDING_BLOCKS,
    renewal_grace: int = DEFAULT_RENEWAL_GRACE,
) -> ManagementAddresses:
    """Compile and deploy the four management contracts; the admin key pays and owns, and
    makes the ExecutionLedger the NodeRegistry's activity reporter.
    ``storage_threshold``: storage confirmations a checkpoint needs (k of n);
    ``era_length``: blocks per era (at least 8, one per heartbeat slot); ``slash_bps``:
    share of the stake an unresponsive node loses, in basis points; ``unbonding_blocks``:
    blocks a leaving node's stake stays locked; ``renewal_grace``: seconds after expiry a
    registration may still be renewed."""
    if min_stake < 0:
        raise ChainConfigError("min_stake must be non-negative")
    if storage_threshold < 1:
        raise ChainConfigError("storage_threshold must be at least 1")
    if era_length < HEARTBEAT_SLOTS:
        raise ChainConfigError(f"era_length must be at least {HEARTBEAT_SLOTS} blocks")
    if not 0 <= slash_bps <= 10_000:
        raise ChainConfigError("slash_bps must be in 0..10000")
    if unbonding_blocks < 0 or renewal_grace < 0:
        raise ChainConfigError("unbonding_blocks and renewal_grace must be non-negative")
    ev = adapter.evm_version
    compiled = {
        name: compile_contract(name, evm_version=ev)
        for name in ("NodeRegistry", "ContractRegistry", "CommandInbox", "ExecutionLedger")
    }

    def deploy(name: str, args: list[Any]) -> str:
        c = compiled[name]
        return adapter.deploy(admin_key, c.bytecode, AbiCodec(c.abi).encode_constructor(args))

    node_registry = deploy(
        "NodeRegistry", [min_stake, era_length, slash_bps, unbonding_blocks, renewal_grace]
    )
    first_block = adapter.get_block_number()
    contract_registry = deploy("ContractRegistry", [node_registry])
    command_inbox = deploy("CommandInbox", [contract_registry])
    execution_ledger = deploy(
        "ExecutionLedger", [node_registry, contract_registry, storage_threshold]
    )
    registry_codec = AbiCodec(compiled["NodeRegistry"].abi)
    adapter.transact(
        admin_key,
        to=node_registry,
        data=registry_codec.function("set_reporter").encode_call([execution_ledger]),
    )
    return ManagementAddresses(
        chain_id=adapter.chain_id,
        node_registry=node_registry,
        contract_registry=contract_registry,
        command_inbox=command_inbox,
        execution_ledger=execution_ledger,
        deployed_at_block=first_block,
        evm_version=ev,
    )


__all__ = [
    "CommandInbox",
    "ContractRecord",
    "ContractRegistry",
    "EraParams",
    "ManagementAddresses",
    "ManagementContracts",
    "NodeRecord",
    "NodeRegistry",
    "AcceptedOutput",
    "CheckpointRecord",
    "ExecutionLedger",
    "OutputSubmission",
    "Role",
    "SubmittedCommand",
    "TenureRecord",
    "deploy_management",
]
