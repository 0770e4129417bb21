"""The worker host: the untrusted half of a worker node.

Theory of operation
-------------------
The host only moves bytes between the chain, the network and its enclave:

1. **Registration.** It asks its enclave for a quote over the enclave's keys, sends the
   quote to the gatekeeper (``POST /v1/attest``) for an approval signature, and registers
   on the NodeRegistry with that approval and its stake.
2. **Following.** A :class:`BlockFollower` delivers final blocks in order. For every
   ``ContractKeyPublished`` of a contract the worker is assigned to, the host has the
   enclave sign a key request, fetches the key release from the gatekeeper and installs
   it in the enclave. For every block, the ``Command`` events of all installed contracts
   go to the enclave as one :class:`BlockInput` (block-atomic order: transaction index,
   log index), which the enclave applies as one unit.
3. **Outputs.** After a block with commands the host stores the sealed states the enclave
   returned in one state bundle file, replaced atomically (state at rest is always
   encrypted, and all contracts resume from the same height), keeps the receipts (each
   command's outcome sealed for its sender) for ``POST /v1/result``, and records the
   enclave-signed (block, state root, command count) on the OutputRecords contract.
   Messages the block's contracts sent to other contracts are posted to the target's
   inbox by the first worker assigned to the sending contract (the others only log them).
   The host also hands the enclave the published keys of every contract it saw
   (``BlockInput.directory``), which the runtime needs to address and authenticate them.
4. **Queries.** ``POST /v1/query`` passes the caller's signed query to the enclave and
   returns the enclave's answer, which is encrypted to the caller: the host sees neither.

States: ``STARTING`` -> ``REGISTERING`` -> ``FOLLOWING`` (or ``FAILED`` with a reason).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.chain.adapter import ChainAdapter
from sealbridge.chain.follower import ChainEvent, ObservedBlock
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import to_hex
from sealbridge.keyservice.messages import KeyRelease, RegistrationApproval, RegistrationRequest
from sealbridge.net.http import NodeClient
from sealbridge.node.config import NodeConfig
from sealbridge.node.host import HostPhase, NodeHost
from sealbridge.runtime.ecalls import WorkerEnclaveClient
from sealbridge.runtime.messages import (
    BlockInput,
    BlockOutput,
    DirectoryEntry,
    InboxCommand,
    InstallContract,
    Receipt,
    SignOutput,
)
from sealbridge.tee.backend import EnclaveHandle

log = logging.getLogger("sealbridge.worker")
RECEIPTS_KEPT = 20_000


class StateBundle(Message, frozen=True):
    """The host's file of sealed contract states, all valid at ``height``."""

    height: int = 0
    states: dict[str, bytes] = {}  # contract id hex -> state sealed under its state key


class ResultRequest(Message, frozen=True):
    contract_id: bytes
    seq: int


class ResultNotFound(LocalProtocolError):
    code = "result_not_found"


class WorkerHost(NodeHost):
    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        self.calls = WorkerEnclaveClient(enclave)
        self.state_dir = Path(config.home) / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.installed: dict[bytes, int] = {}  # contract id -> height applied in the enclave
        self.bundle_file = self.state_dir / "bundle.sealed"
        self.bundle = (
            decode(self.bundle_file.read_bytes(), StateBundle)
            if self.bundle_file.exists()
            else StateBundle()
        )
        self.receipts: OrderedDict[tuple[bytes, int], Receipt] = OrderedDict()
        self.directory: list[DirectoryEntry] = []  # entries not yet given to the enclave
        self.workers_of: dict[bytes, list[bytes]] = {}  # installed contract -> its workers
        self.messages_posted = 0
        self.last_seen: ObservedBlock | None = None  # the newest block followed
        self.last_delivered = 0  # the newest block handed to the enclave
        self.outputs_recorded = 0
        self.unrecorded: dict[bytes, int] = {}  # contract id -> commands in its last block
        self._lock = threading.Lock()

    # -- registration ---------------------------------------------------------------
    def before_following(self) -> None:
        self.phase = HostPhase.REGISTERING
        if self.mgmt.node_registry.is_active(self.node_id, Role.WORKER):
            log.info("already registered as %s", to_hex(self.node_id))
            return
        quote = self.enclave.get_quote()
        now = int(time.time())
        request = RegistrationRequest(
            role=int(Role.WORKER),
            node=self.enclave.node_keys,
            quote=quote,
            expiry=now + self.config.registration_ttl,
            chain_id=self.chain.chain_id,
            registry_address=self.addresses.node_registry,
        )
        with NodeClient(self.config.gatekeeper_url) as gk:
            approval = decode(gk.post("/v1/attest", encode(request)), RegistrationApproval)
        keys = self.enclave.node_keys
        self.mgmt.node_registry.register(
            int(Role.WORKER),
            keys.identity_key,
            keys.encryption_key,
            to_hex(keys.eth_address),
            approval.measurement,
            approval.expiry,
            approval.attestor_id,
            approval.signature,
            quote,
            self.eth_key,
            stake=self.config.stake_wei,
        )
        log.info("registered worker %s", to_hex(self.node_id))

    # -- following ------------------------------------------------------------------
    def on_block(self, block: ObservedBlock) -> None:
        self.last_seen = block
        commands: list[InboxCommand] = []
        for event in block.events:
            if event.name == "ContractKeyPublished":
                self.on_key_published(event)
            elif event.name == "Command":
                contract_id = bytes(event.args["contract_id"])
                # a resumed contract's sealed state already holds blocks up to its height
                if block.number > self.installed.get(contract_id, block.number):
                    commands.append(
                        InboxCommand(
                            contract_id=contract_id,
                            seq=int(event.args["seq"]),
                            tx_index=event.tx_index,
                            log_index=event.log_index,
                            ciphertext=bytes(event.args["ciphertext"]),
                        )
                    )
        if commands:
            self.process_commands(block, commands)

    def on_caught_up(self) -> None:
        last = self.last_seen
        if last is not None and last.number > self.last_delivered and self.installed:
            # an empty block: the enclave learns the time (queries evaluate at it) and the
            # directory entries seen since
            self.process_commands(last, [])
        if self.unrecorded:
            self.flush_outputs()

    def on_key_published(self, event: ChainEvent) -> None:
        contract_id = bytes(event.args["contract_id"])
        self.directory.append(
            DirectoryEntry(
                contract_id=contract_id,
                command_key=bytes(event.args["contract_public_key"]),
                message_key=bytes(event.args["message_key"]),
            )
        )
        if contract_id in self.installed:
            return
        if not self.mgmt.contract_registry.is_assigned(contract_id, self.node_id):
            return
        record = self.mgmt.contract_registry.get_contract(contract_id)
        if record is None:
            return
        request = self.calls.make_key_request(contract_id)
        with NodeClient(self.config.gatekeeper_url) as gk:
            release = decode(gk.post("/v1/keys", encode(request)), KeyRelease)
        sealed = self.bundle.states.get(contract_id.hex(), b"")
        with self._lock:
            status = self.calls.install_contract(
                InstallContract(
                    contract_id=contract_id,
                    code_hash=record.code_hash,
                    contract_public_key=record.contract_public_key,
                    wrapped_key=release.wrapped_key,
                    gatekeeper_key=release.gatekeeper_key,
                    deployer_commitment=record.deployer_commitment,
                    workers=record.workers,
                    sealed_state=sealed,
                    resume_height=self.bundle.height if sealed else 0,
                )
            )
        self.installed[contract_id] = status.height
        self.workers_of[contract_id] = record.workers
        log.info("installed contract %s", to_hex(contract_id))

    def process_commands(self, block: ObservedBlock, commands: list[InboxCommand]) -> None:
        with self._lock:
            output = self.calls.process_block(
                BlockInput(
                    number=block.number,
                    block_hash=block.hash,
                    commands=commands,
                    directory=self.directory,
                )
            )
        self.directory = []
        self.last_delivered = block.number
        if not output.contracts and not output.receipts:
            return
        states = dict(self.bundle.states)
        for contract in output.contracts:
            states[contract.contract_id.hex()] = contract.sealed_state
            self.installed[contract.contract_id] = block.number
            self.unrecorded[contract.contract_id] = contract.command_count
        self.bundle = StateBundle(height=block.number, states=states)
        tmp = self.bundle_file.with_suffix(".tmp")
        tmp.write_bytes(encode(self.bundle))
        tmp.replace(self.bundle_file)
        for receipt in output.receipts:
            self.receipts[(receipt.contract_id, receipt.seq)] = receipt
        while len(self.receipts) > RECEIPTS_KEPT:
            self.receipts.popitem(last=False)
        self.post_messages(output)
        refused = sum(1 for r in output.receipts if r.status != "applied")
        log.info(
            "block %d: %d commands (%d refused before execution), %d contracts changed",
            block.number,
            len(commands),
            refused,
            len(output.contracts),
        )

    def post_messages(self, output: BlockOutput) -> None:
        """Post the block's outgoing messages whose source this worker leads."""
        for message in output.messages:
            workers = self.workers_of.get(message.source, [])
            if not workers or workers[0] != self.node_id:
                continue
            if not message.ciphertext:
                log.warning(
                    "message %d from %s to %s not deliverable: target key unknown",
                    message.seq,
                    to_hex(message.source)[:14],
                    to_hex(message.target)[:14],
                )
                continue
            try:
                self.mgmt.command_inbox.send_submit(
                    message.target, message.ciphertext, self.eth_key
                )
                self.messages_posted += 1
            except SealbridgeError as exc:
                log.warning("could not post message %d: %s", message.seq, exc.message)

    def flush_outputs(self) -> None:
        """Record the latest enclave-signed state root of each contract that changed.

        Called when the host has caught up with the chain, so a backlog of blocks costs one
        output transaction per contract, not one per block. The transaction is sent
        without waiting for its receipt (a send that would revert is logged)."""
        for contract_id in list(self.unrecorded):
            number = self.installed[contract_id]
            with self._lock:
                signature = self.calls.sign_output(
                    SignOutput(
                        contract_id=contract_id,
                        number=number,
                        chain_id=self.chain.chain_id,
                        outputs_address=bytes.fromhex(self.addresses.output_records[2:]),
                    )
                )
                status = {c.contract_id: c for c in self.calls.get_status()}[contract_id]
            try:
                self.mgmt.output_records.send_record(
                    contract_id,
                    number,
                    status.state_root,
                    self.unrecorded.pop(contract_id),
                    self.node_id,
                    signature,
                    self.eth_key,
                )
                self.outputs_recorded += 1
            except SealbridgeError as exc:  # the output is advisory; execution goes on
                log.warning("could not record output of block %d: %s", number, exc.message)

    # -- queries and status -------------------------------------------------------------
    def on_query(self, payload: bytes) -> bytes:
        with self._lock:
            return self.calls.answer_query(payload)

    def on_result(self, payload: bytes) -> bytes:
        """The receipt of one command: its outcome sealed for the sender (opaque here)."""
        request = decode(payload, ResultRequest)
        receipt = self.receipts.get((request.contract_id, request.seq))
        if receipt is None:
            raise ResultNotFound(
                f"no receipt for inbox seq {request.seq} (not applied yet, or too old)"
            )
        return encode(receipt)

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            contracts = self.calls.get_status() if self.installed else []
        return {
            "role": "worker",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "phase": self.phase.value,
            "error": self.error,
            "height": self.height,
            "measurement": to_hex(self.enclave.measurement),
            "outputs_recorded": self.outputs_recorded,
            "messages_posted": self.messages_posted,
            "contracts": [
                {
                    "contract_id": to_hex(c.contract_id),
                    "height": c.height,
                    "state_root": to_hex(c.state_root),
                    "commands_applied": c.commands_applied,
                    "phase": c.phase,
                }
                for c in contracts
            ],
        }
