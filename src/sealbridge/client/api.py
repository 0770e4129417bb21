"""The Python client: deploy contracts, send encrypted commands, make signed queries.

The client talks to the chain (to deploy and to submit commands), and to workers over
HTTP (to query). It never trusts a worker's answer blindly: the answer must decrypt with
the query's one-time key, carry a valid Ed25519 signature, answer exactly this query, and
come from a worker that is active in the on-chain NodeRegistry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.config.keystore import Keystore, UserKey
from sealbridge.config.network import load_running
from sealbridge.config.node import DevnetState, NodeEntry
from sealbridge.contracts.catalog import BUILTIN, get_source
from sealbridge.contracts.executor import compute_code_hash, load_program
from sealbridge.contracts.gas import DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError
from sealbridge.core.ids import from_hex, tagged_hash, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.committee import GatekeeperCommittee
from sealbridge.evm.management import (
    AcceptedOutput,
    ContractRecord,
    ManagementAddresses,
    ManagementContracts,
)
from sealbridge.net.http import NodeClient, NodeRefused
from sealbridge.net.waiting import WaitTimeout, wait_until
from sealbridge.runtime.envelope import make_query, open_answer, open_result, seal_command
from sealbridge.runtime.messages import (
    ANSWER_SIGN_TAG,
    DEPLOY_METHOD,
    CommandResult,
    QueryAnswer,
    Receipt,
    SignedAnswer,
    compute_deployer_commitment,
)

Progress = Callable[[str], None]


class ClientError(LocalProtocolError):
    code = "client"


class UnknownContractId(ClientError):
    code = "unknown_contract"


class UntrustedWorker(RemoteProtocolError):
    code = "untrusted_worker"


class AnswerNotAccepted(RemoteProtocolError):
    """The answer's state is not the one the ExecutionLedger last accepted for the
    contract: the worker is behind or ahead of the accepted outputs (wait and ask again),
    rolled back, or on a fork of its host's making."""

    code = "answer_not_accepted"


class StaleAnswer(RemoteProtocolError):
    """The answering worker's newest block is further behind the chain tip than allowed."""

    code = "stale_answer"


DEFAULT_MAX_ANSWER_LAG = 64  # blocks an answer's newest block may trail the tip


def check_answer_accepted(
    answer: QueryAnswer, accepted: AcceptedOutput | None, tip: int, max_lag: int
) -> None:
    """Trust an answer only about state the chain accepted: its state root must be the
    root of the contract's last accepted output (roots never repeat: the command count
    is part of them, so an older or forked state has another root), and the worker's
    newest block at most ``max_lag`` blocks behind ``tip``."""
    if accepted is None:
        raise AnswerNotAccepted(
            f"no output of contract {to_hex(answer.contract_id)} is accepted on chain yet"
        )
    if answer.state_root != accepted.state_root:
        raise AnswerNotAccepted(
            f"the answer's state root {to_hex(answer.state_root)[:18]}… is not the root the "
            f"ExecutionLedger accepted up to block {accepted.end} "
            f"({to_hex(accepted.state_root)[:18]}…)"
        )
    if answer.block_height > tip:
        raise StaleAnswer(
            f"the worker answered as of block {answer.block_height}, ahead of the chain tip "
            f"({tip}): its view of time is not the chain's"
        )
    if answer.block_height < accepted.end:
        raise AnswerNotAccepted(
            f"the worker answered as of block {answer.block_height}, before the accepted "
            f"output's end (block {accepted.end})"
        )
    if tip - answer.block_height > max_lag:
        raise StaleAnswer(
            f"the worker answered as of block {answer.block_height}, {tip - answer.block_height} "
            f"blocks behind the tip (at most {max_lag} allowed)"
        )


def _is_answer_not_yet(exc: BaseException) -> bool:
    """Should :meth:`Client.query` ask again after ``exc``? A worker whose peers have not
    vouched for the block its state is at yet (the enclave's witness rule: they are a
    little behind) refuses with ``not_witnessed``; an answer about state the ledger has
    not accepted yet, or about an old one, is refused by the client itself."""
    if isinstance(exc, NodeRefused):
        return exc.remote_code == "not_witnessed"
    return isinstance(exc, AnswerNotAccepted | StaleAnswer)


class CommandFailed(RemoteProtocolError):
    """The contract (or the runtime) refused a command; ``code`` says why."""

    code = "command_failed"

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def check_gas_limit(gas_limit: int) -> None:
    """A command's gas limit: 0 (the platform default) or 1 to ``MAX_GAS_LIMIT``."""
    if (
        not isinstance(gas_limit, int)
        or isinstance(gas_limit, bool)
        or not 0 <= gas_limit <= MAX_GAS_LIMIT
    ):
        raise ClientError(
            f"gas limit must be an int from 1 to {MAX_GAS_LIMIT:_} (0: the default "
            f"{DEFAULT_GAS_LIMIT:_}), not {gas_limit!r}"
        )


class Deployment(Message, frozen=True):
    contract_id: bytes
    contract: str
    code_hash: bytes
    confidential: bool
    deployer: str
    gatekeeper_id: bytes
    workers: list[bytes]
    contract_public_key: bytes
    deploy_block: int
    deploy_tx: bytes


class KeyRotation(Message, frozen=True):
    """A finished contract key rotation."""

    contract_id: bytes
    version: int
    rotated_at: int  # the block of ContractKeyRotated: workers switched after it
    contract_public_key: bytes
    # the first checkpoint sealed under the new version (0: not waited for); from then
    # on the gatekeepers refuse the old version
    checkpoint_height: int = 0


class CallReceipt(Message, frozen=True):
    contract_id: bytes
    method: str
    sender: str
    nonce: int
    seq: int
    tx_hash: bytes
    block_number: int
    ciphertext_size: int


class VerifiedAnswer(Message, frozen=True):
    """An answer whose signature, binding and worker registration were all checked."""

    answer: QueryAnswer
    signed_payload: bytes  # canonical QueryAnswer bytes, as signed
    signature: bytes  # Ed25519 over ANSWER_SIGN_TAG + signed_payload
    signed_message_prefix: bytes
    worker_key: bytes
    worker_url: str


class Client:
    def __init__(self, state: DevnetState, *, keystore_home: Path | None = None) -> None:
        self.state = state
        self.chain = ChainAdapter.rpc(state.rpc_url)
        self.addresses = ManagementAddresses.load(state.addresses_file)
        self.mgmt = ManagementContracts(self.chain, self.addresses)
        self.keystore = Keystore(keystore_home or Path(state.home) / "devnet")
        self.nonce_dir = Path(state.home) / "devnet" / "nonces"
        self._nodes: dict[str, NodeClient] = {}

    def get_node(self, url: str) -> NodeClient:
        """A kept-alive HTTP client per node (building one costs far more than a request)."""
        node = self._nodes.get(url)
        if node is None:
            node = self._nodes[url] = NodeClient(url)
        return node

    def close(self) -> None:
        for node in self._nodes.values():
            node.close()
        self._nodes.clear()

    @classmethod
    def from_home(cls, home: Path) -> Client:
        return cls(load_running(home))

    @property
    def state_home(self) -> Path:
        return Path(self.state.home)

    def refresh_state(self) -> None:
        """Re-read the devnet state (after a node was restarted)."""
        self.state = load_running(self.state_home)
        self.close()

    # -- helpers -------------------------------------------------------------------
    def get_user(self, name: str) -> UserKey:
        return self.keystore.get(name)

    def resolve_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Key names (``"bob"``) and 0x-hex 32-byte ids (account keys, contract ids) become
        32-byte bytes, at any depth inside lists and dicts (dict keys stay as they are)."""
        names = frozenset(self.keystore.list_names())
        return {key: self._resolve_value(value, names, key) for key, value in args.items()}

    def _resolve_value(self, value: Any, names: frozenset[str], where: str) -> Any:
        if isinstance(value, str):
            if value in names:
                return self.keystore.get(value).identity_key
            if value.startswith("0x") and len(value) == 66:
                return from_hex(value, size=32, what=where)
            return value
        if isinstance(value, dict):
            return {k: self._resolve_value(v, names, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._resolve_value(v, names, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def get_contract(self, contract_id: bytes) -> ContractRecord:
        record = self.mgmt.contract_registry.get_contract(contract_id)
        if record is None:
            raise UnknownContractId(
                f"no contract {to_hex(contract_id)} on chain {self.chain.chain_id}"
            )
        return record

    # -- deploy ----------------------------------------------------------------------
    @staticmethod
    def read_source(contract: str) -> bytes:
        """A built-in contract's source by name, or a contract source file's bytes."""
        if contract in BUILTIN:
            return get_source(contract)
        path = Path(contract)
        if path.suffix == ".py" and path.is_file():
            return path.read_bytes()
        raise ClientError(
            f"{contract!r} is neither a built-in contract ({', '.join(sorted(BUILTIN))}) "
            "nor a .py file"
        )

    def deploy(
        self,
        contract: str,
        *,
        as_user: str,
        init_args: dict[str, Any] | None = None,
        confidential: bool = False,
        timeout: float = 60.0,
        progress: Progress | None = None,
        precheck: bool = True,
        gas_limit: int = 0,
    ) -> Deployment:
        """Register the contract on chain (code hash only), wait for its key, then send
        the code and init arguments as the encrypted deploy command."""
        say = progress or (lambda _m: None)
        user = self.get_user(as_user)
        source = self.read_source(contract)
        if precheck:  # the workers run the same checks; failing here costs no transaction
            load_program(source, filename=contract)
        salt = os.urandom(16)
        code_hash = compute_code_hash(source)
        contract_id = tagged_hash(
            "sealbridge/contract-id/v1", user.identity_key + code_hash + os.urandom(16)
        )
        workers = [from_hex(w.node_id, size=32) for w in self.state.workers]
        gatekeeper = self.choose_gatekeeper()
        receipt = self.mgmt.contract_registry.deploy(
            contract_id,
            code_hash,
            gatekeeper,
            workers,
            compute_deployer_commitment(contract_id, user.identity_key, salt),
            user.eth_private_key,
        )
        say(f"registered {contract} as {to_hex(contract_id)} in block {receipt.block_number}")
        record = self._wait(
            lambda: self._published(contract_id), timeout, "the gatekeeper to publish the key"
        )
        say(f"gatekeeper published the contract key ({to_hex(record.contract_public_key)[:18]}…)")
        deploy = self.call(
            to_hex(contract_id),
            DEPLOY_METHOD,
            {
                "code": source,
                "init": init_args or {},
                "confidential": confidential,
                "salt": salt,
            },
            as_user=as_user,
            gas_limit=gas_limit,  # for the contract's @init
        )
        result = self.wait_result(deploy, as_user=as_user, timeout=timeout)
        if not result.ok:
            raise CommandFailed(f"deploy refused: {result.error}: {result.message}", result.error)
        kind = "confidential code" if confidential else "code"
        say(f"{as_user} deployed the {kind} ({len(source)} bytes) in block {deploy.block_number}")
        return Deployment(
            contract_id=contract_id,
            contract=contract,
            code_hash=code_hash,
            confidential=confidential,
            deployer=as_user,
            gatekeeper_id=gatekeeper,
            workers=workers,
            contract_public_key=record.contract_public_key,
            deploy_block=receipt.block_number,
            deploy_tx=receipt.tx_hash,
        )

    def rotate_key(
        self,
        contract_id: str | bytes,
        *,
        as_user: str,
        timeout: float = 60.0,
        wait_checkpoint: bool = True,
        progress: Progress | None = None,
    ) -> KeyRotation:
        """Rotate a contract's key (its deployer only): ask the registry for the next key
        version, wait until the contract's gatekeeper published it and every worker
        switched to it, and (``wait_checkpoint``) until a checkpoint sealed under it is
        recorded, after which the old version is refused to everyone."""
        say = progress or (lambda _m: None)
        cid = (
            from_hex(contract_id, size=32, what="contract id")
            if isinstance(contract_id, str)
            else contract_id
        )
        user = self.get_user(as_user)
        record = self.get_contract(cid)
        if from_hex(record.deployer, size=20) != user.eth_address:
            raise ClientError(
                f"{as_user} did not deploy contract {to_hex(cid)}: only its deployer's "
                f"account ({record.deployer}) may rotate its key"
            )
        if not record.key_published:
            raise ClientError(f"the key of contract {to_hex(cid)} is not published yet")
        if record.rotation_pending:
            raise ClientError(f"a key rotation of contract {to_hex(cid)} is already pending")
        version = record.key_version + 1
        receipt = self.mgmt.contract_registry.request_key_rotation(cid, user.eth_private_key)
        say(f"asked for key version {version} in block {receipt.block_number}")

        def rotated() -> ContractRecord | None:
            current = self.get_contract(cid)
            return current if current.key_version >= version else None

        done: ContractRecord = self._wait(rotated, timeout, "the gatekeeper to publish the key")
        say(
            f"gatekeeper published key version {version} in block {done.rotated_at} "
            f"({to_hex(done.contract_public_key)[:18]}…)"
        )

        def switched() -> bool:
            entries = self.get_worker_entries(cid)
            return all(e is not None and e.get("key_version", 0) >= version for e in entries)

        self._wait(switched, timeout, f"workers to switch to key version {version}")
        say(f"all {len(self.state.workers)} workers switched to key version {version}")
        checkpoint_height = 0
        if wait_checkpoint:

            def checkpointed() -> int:
                record = self.mgmt.execution_ledger.get_checkpoint(cid)
                ok = record is not None and record.height >= done.rotated_at
                return record.height if ok and record is not None else 0

            checkpoint_height = self._wait(
                checkpointed, timeout, "a checkpoint under the new key version"
            )
            say(
                f"checkpoint at block {checkpoint_height} sealed under version {version}: "
                f"version {version - 1} is retired"
            )
        return KeyRotation(
            contract_id=cid,
            version=version,
            rotated_at=done.rotated_at,
            contract_public_key=done.contract_public_key,
            checkpoint_height=checkpoint_height,
        )

    def choose_gatekeeper(self) -> bytes:
        """A member of the committee's active era (it publishes the contract's key)."""
        if self.state.committee_address:
            committee = GatekeeperCommittee(self.chain, self.state.committee_address)
            era = committee.get_current_era()
            if era:
                members = committee.get_members(era)
                if members:
                    return members[int.from_bytes(os.urandom(2), "big") % len(members)]
        return from_hex(self.state.gatekeeper.node_id, size=32)

    def _published(self, contract_id: bytes) -> ContractRecord | None:
        record = self.mgmt.contract_registry.get_contract(contract_id)
        return record if record is not None and record.key_published else None

    @staticmethod
    def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Call ``check`` until it returns a truthy value; ClientError after ``timeout``."""
        try:
            return wait_until(check, timeout=timeout, what=what, interval=0.02)
        except WaitTimeout as exc:
            raise ClientError(f"timed out after {timeout:.0f}s waiting for {what}") from exc

    # -- commands --------------------------------------------------------------------
    def _nonce_file(self, user: UserKey, contract_id: bytes) -> Path:
        return self.nonce_dir / f"{user.name}-{contract_id.hex()}"

    def next_nonce(self, user: UserKey, contract_id: bytes) -> int:
        path = self._nonce_file(user, contract_id)
        if path.exists():
            return int(path.read_text()) + 1
        return 1

    def call(
        self,
        contract_id_hex: str,
        method: str,
        args: dict[str, Any],
        *,
        as_user: str,
        gas_limit: int = 0,
    ) -> CallReceipt:
        """Sign, encrypt and submit a command. ``gas_limit`` 0 means the platform default
        (:data:`~sealbridge.contracts.gas.DEFAULT_GAS_LIMIT`); at most
        :data:`~sealbridge.contracts.gas.MAX_GAS_LIMIT`."""
        check_gas_limit(gas_limit)
        contract_id = from_hex(contract_id_hex, size=32, what="contract id")
        user = self.get_user(as_user)
        record = self.get_contract(contract_id)
        if not record.key_published:
            raise ClientError("the contract's key is not published yet; wait for the gatekeeper")
        nonce = self.next_nonce(user, contract_id)
        ciphertext = seal_command(
            contract_id=contract_id,
            contract_public_key=record.contract_public_key,
            sender_private_key=user.identity_private_key,
            nonce=nonce,
            method=method,
            args=self.resolve_args(args),
            gas_limit=gas_limit,
        )
        submitted = self.mgmt.command_inbox.submit(contract_id, ciphertext, user.eth_private_key)
        path = self._nonce_file(user, contract_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(nonce))
        return CallReceipt(
            contract_id=contract_id,
            method=method,
            sender=user.name,
            nonce=nonce,
            seq=submitted.seq,
            tx_hash=submitted.tx_hash,
            block_number=submitted.block_number,
            ciphertext_size=len(ciphertext),
        )

    def get_worker_entries(self, contract_id: bytes) -> list[dict[str, Any] | None]:
        """Each worker's status entry for the contract (None where it has none)."""
        out: list[dict[str, Any] | None] = []
        for worker in self.state.workers:
            status = self.get_node(worker.url).get_json("/v1/status")
            entries = [c for c in status["contracts"] if c["contract_id"] == to_hex(contract_id)]
            out.append(dict(entries[0]) if entries else None)
        return out

    def wait_applied(self, contract_id: bytes, block_number: int, *, timeout: float = 60.0) -> None:
        """Wait until every assigned worker has applied ``block_number`` of this contract."""

        def applied() -> bool:
            entries = self.get_worker_entries(contract_id)
            return all(e is not None and e["height"] >= block_number for e in entries)

        self._wait(applied, timeout, f"workers to apply block {block_number}")

    def get_result(self, receipt: CallReceipt, *, as_user: str, worker: int = 0) -> CommandResult:
        """The outcome of an applied command, opened with the sender's key (the worker
        relays it sealed; it cannot read it)."""
        entry = self.state.workers[worker]
        request = {"contract_id": receipt.contract_id, "seq": receipt.seq}
        held = decode(self.get_node(entry.url).post("/v1/result", encode(request)), Receipt)
        if held.status != "applied":
            raise CommandFailed(f"the runtime refused the command: {held.status}", held.status)
        return open_result(
            sender_private_key=self.get_user(as_user).identity_private_key,
            contract_id=receipt.contract_id,
            nonce=receipt.nonce,
            sealed_result=held.sealed_result,
        )

    def wait_result(
        self, receipt: CallReceipt, *, as_user: str, timeout: float = 60.0
    ) -> CommandResult:
        """Wait until every worker applied the command's block, then open its outcome."""
        self.wait_applied(receipt.contract_id, receipt.block_number, timeout=timeout)

        def fetch() -> CommandResult | None:
            try:
                return self.get_result(receipt, as_user=as_user)
            except NodeRefused as exc:
                if exc.remote_code == "result_not_found":
                    return None
                raise

        result: CommandResult = self._wait(fetch, timeout, "the command's result")
        return result

    def call_and_wait(
        self,
        contract_id_hex: str,
        method: str,
        args: dict[str, Any],
        *,
        as_user: str,
        gas_limit: int = 0,
        timeout: float = 60.0,
    ) -> CommandResult:
        """:meth:`call`, then :meth:`wait_result`; raise :class:`CommandFailed` (with the
        contract's error code) unless the command was accepted."""
        receipt = self.call(contract_id_hex, method, args, as_user=as_user, gas_limit=gas_limit)
        result = self.wait_result(receipt, as_user=as_user, timeout=timeout)
        if not result.ok:
            raise CommandFailed(f"{method} refused: {result.error}: {result.message}", result.error)
        return result

    # -- queries ---------------------------------------------------------------------
    def query(
        self,
        contract_id_hex: str,
        method: str,
        args: dict[str, Any],
        *,
        as_user: str,
        worker: int = 0,
        accepted_only: bool = True,
        max_lag: int = DEFAULT_MAX_ANSWER_LAG,
        timeout: float = 30.0,
    ) -> VerifiedAnswer:
        """Ask a worker and check its signed answer. With ``accepted_only`` (the default)
        the answer must be about the state the ExecutionLedger last accepted for the
        contract (see :func:`check_answer_accepted`); until the worker's state and the
        accepted outputs agree (a command applied but not yet covered by an output), it
        asks again, for up to ``timeout`` seconds, then raises AnswerNotAccepted. A worker
        whose peers have not vouched for its newest blocks yet refuses with
        ``not_witnessed``; that too is asked again until ``timeout``. After ``timeout``
        the last of these refusals is raised."""

        def ask() -> VerifiedAnswer:
            verified = self.query_once(
                contract_id_hex, method, args, as_user=as_user, worker=worker
            )
            if accepted_only:
                accepted = self.mgmt.execution_ledger.get_output(verified.answer.contract_id)
                tip = self.chain.get_block_number()
                check_answer_accepted(verified.answer, accepted, tip, max_lag)
            return verified

        return wait_until(
            ask,
            timeout=timeout,
            what=f"an accepted answer to {method}",
            interval=0.2,
            passing=_is_answer_not_yet,
            reraise=True,
        )

    def query_once(
        self,
        contract_id_hex: str,
        method: str,
        args: dict[str, Any],
        *,
        as_user: str,
        worker: int = 0,
    ) -> VerifiedAnswer:
        """Ask a worker once; check the answer's signature, binding and signer only."""
        contract_id = from_hex(contract_id_hex, size=32, what="contract id")
        self.get_contract(contract_id)
        if not 0 <= worker < len(self.state.workers):
            raise ClientError(f"worker index must be in 0..{len(self.state.workers) - 1}")
        user = self.get_user(as_user)
        query, reply_key = make_query(
            contract_id=contract_id,
            caller_private_key=user.identity_private_key,
            method=method,
            args=self.resolve_args(args),
            issued_at=int(time.time()),
        )
        entry: NodeEntry = self.state.workers[worker]
        sealed = self.get_node(entry.url).post("/v1/query", encode(query))
        answer, signed = open_answer(query, reply_key, sealed)
        self.check_worker(signed)
        return VerifiedAnswer(
            answer=answer,
            signed_payload=signed.answer,
            signature=signed.signature,
            signed_message_prefix=ANSWER_SIGN_TAG,
            worker_key=signed.worker_key,
            worker_url=entry.url,
        )

    def check_worker(self, signed: SignedAnswer) -> None:
        if not self.mgmt.node_registry.is_active(signed.worker_key, Role.WORKER):
            raise UntrustedWorker(
                f"answer signed by {to_hex(signed.worker_key)}, which is not an active worker"
            )
