"""EVM adapter: one small, typed surface over web3.py for every chain backend.

Theory of operation
-------------------
A :class:`ChainAdapter` wraps a :class:`web3.Web3` and is built by one of two
constructors that behave identically from the outside:

* :meth:`ChainAdapter.rpc` -- any Ethereum JSON-RPC endpoint over HTTP (anvil for the
  devnet, any EVM node in production). Dev keys are anvil's default mnemonic accounts.
* :meth:`ChainAdapter.in_process` -- eth-tester on py-evm 0.12, whose default fork is
  Prague (``PragueVM``), so contracts are compiled for ``prague`` on both backends. Its
  genesis funds the same anvil mnemonic accounts, so dev keys agree across backends.
  py-evm is not thread-safe; every request to it is serialised by a lock.

Transactions are EIP-1559, signed locally with ``eth_account`` and sent raw; nothing
depends on node-side accounts. Nonces are kept per sender under a per-sender lock (the
first use reads the pending count; a failed send forgets the cached nonce). Gas is
estimated unless given; estimation replays the call, so a transaction that would revert
raises :class:`TransactionReverted` with the decoded reason before anything is sent. A
transaction that is mined with status 0 is replayed with ``eth_call`` to recover the
reason. Reads (:meth:`call`, logs, headers) never change state. Block headers for a
range are fetched in one JSON-RPC batch where the provider supports it.

:meth:`ChainAdapter.get_block_evidence` fetches what the enclave's light client checks
(:mod:`sealbridge.chain.lightclient`): every raw header field
(``eth_getBlockByNumber``) and all receipts (``eth_getBlockReceipts``) of each block, in
one JSON-RPC batch for the whole range, parsed from the raw hex without web3's
formatters. Nothing is verified here; the enclave does that.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Literal

from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from sealbridge.chain.abi import checksum, compute_address
from sealbridge.chain.errors import ChainConfigError, ChainError, RpcError, TransactionReverted
from sealbridge.chain.lightclient import BlockEvidence, EventLog, HeaderFields, ReceiptFields
from sealbridge.chain.proofs import AccountProof, SlotProof, slot_key
from sealbridge.core.encoding import Message
from sealbridge.evm.compiler import DEFAULT_EVM_VERSION

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_HD_PATH = "m/44'/60'/0'/0"
DEFAULT_PRIORITY_FEE = 1_000_000_000  # 1 gwei
_FEE_CACHE_SECONDS = 1.0
_GAS_MARGIN_NUM, _GAS_MARGIN_DEN = 5, 4  # estimate * 1.25

BackendKind = Literal["rpc", "in_process"]


@functools.cache
def get_anvil_dev_keys(count: int = 10) -> tuple[bytes, ...]:
    """Private keys of anvil's default accounts (its standard test mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        bytes(Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"{ANVIL_HD_PATH}/{i}").key)
        for i in range(count)
    )


class BlockHeader(Message, frozen=True):
    """The header fields sealbridge uses."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    receipts_root: bytes


class LogEntry(Message, frozen=True):
    """One raw log as returned by eth_getLogs / a receipt."""

    block_number: int
    block_hash: bytes
    tx_index: int
    log_index: int
    tx_hash: bytes
    address: str
    topics: list[bytes]
    data: bytes


class TxReceipt(Message, frozen=True):
    """A mined transaction's receipt."""

    tx_hash: bytes
    block_number: int
    block_hash: bytes
    tx_index: int
    status: int
    gas_used: int
    contract_address: str | None
    logs: list[LogEntry]


class ChainStep(Message, frozen=True):
    """One transaction of a multi-transaction run (a swap, a gateway transfer)."""

    name: str
    chain_id: int
    sender: str
    receipt: TxReceipt

    @property
    def gas_used(self) -> int:
        return self.receipt.gas_used


class StepsResult(Message, frozen=True):
    """Base of the results that list their transactions, in order."""

    steps: list[ChainStep]

    @property
    def total_gas(self) -> int:
        return sum(step.gas_used for step in self.steps)

    def get_gas_by_step(self) -> dict[str, int]:
        return {step.name: step.gas_used for step in self.steps}


def _reason_of(exc: Exception) -> str:
    message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else exc))
    for prefix in ("execution reverted: ", "execution reverted:", "execution reverted"):
        if message.startswith(prefix):
            return message[len(prefix) :].strip()
    return message


def _to_log(raw: Any) -> LogEntry:
    return LogEntry(
        block_number=int(raw["blockNumber"]),
        block_hash=bytes(raw["blockHash"]),
        tx_index=int(raw["transactionIndex"]),
        log_index=int(raw["logIndex"]),
        tx_hash=bytes(raw["transactionHash"]),
        address=checksum(raw["address"]),
        topics=[bytes(t) for t in raw["topics"]],
        data=bytes(raw["data"]),
    )


def _hex_text(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not raw.startswith(("0x", "0X")):
        raise ChainError(f"node returned a malformed {what}: expected 0x-hex, got {raw!r:.80}")
    return raw[2:]


def _hex_int(raw: Any, what: str) -> int:
    """A JSON-RPC quantity (``0x``-prefixed hex, ``0x0`` for zero)."""
    body = _hex_text(raw, what)
    try:
        return int(body, 16) if body else 0
    except ValueError:
        raise ChainError(f"node returned a malformed {what}: {raw!r:.80}") from None


def _hex_bytes(raw: Any, what: str) -> bytes:
    """JSON-RPC data (``0x``-prefixed hex of whole bytes; ``0x`` is empty)."""
    body = _hex_text(raw, what)
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise ChainError(f"node returned malformed {what}: {raw!r:.80}") from None


def _get(raw: dict[str, Any], key: str, what: str) -> Any:
    if key not in raw:
        raise ChainError(f"{what} lacks the field {key!r}")
    return raw[key]


_HEADER_BYTES = (
    ("parent_hash", "parentHash"),
    ("ommers_hash", "sha3Uncles"),
    ("coinbase", "miner"),
    ("state_root", "stateRoot"),
    ("transactions_root", "transactionsRoot"),
    ("receipts_root", "receiptsRoot"),
    ("logs_bloom", "logsBloom"),
    ("extra_data", "extraData"),
    ("mix_hash", "mixHash"),
    ("nonce", "nonce"),
)
_HEADER_INTS = (
    ("difficulty", "difficulty"),
    ("number", "number"),
    ("gas_limit", "gasLimit"),
    ("gas_used", "gasUsed"),
    ("timestamp", "timestamp"),
)
_HEADER_OPTIONAL = (
    ("base_fee_per_gas", "baseFeePerGas", True),
    ("withdrawals_root", "withdrawalsRoot", False),
    ("blob_gas_used", "blobGasUsed", True),
    ("excess_blob_gas", "excessBlobGas", True),
    ("parent_beacon_block_root", "parentBeaconBlockRoot", False),
    ("requests_hash", "requestsHash", False),
)


def _to_header_fields(raw: Any, number: int) -> HeaderFields:
    """Every header field of a raw ``eth_getBlockByNumber`` answer (unchecked)."""
    what = f"block {number}"
    if raw is None:
        raise ChainError(f"{what} not found")
    if not isinstance(raw, dict):
        raise ChainError(f"{what}: node returned {type(raw).__name__}, not a block object")
    fields: dict[str, Any] = {}
    for name, key in _HEADER_BYTES:
        fields[name] = _hex_bytes(_get(raw, key, what), f"{what} {key}")
    for name, key in _HEADER_INTS:
        fields[name] = _hex_int(_get(raw, key, what), f"{what} {key}")
    for name, key, is_int in _HEADER_OPTIONAL:
        value = raw.get(key)
        if value is not None:
            parse = _hex_int if is_int else _hex_bytes
            fields[name] = parse(value, f"{what} {key}")
    return HeaderFields(**fields)


def _to_event_log(raw: Any, what: str) -> EventLog:
    if not isinstance(raw, dict):
        raise ChainError(f"{what}: node returned {type(raw).__name__}, not a log object")
    topics = _get(raw, "topics", what)
    if not isinstance(topics, list):
        raise ChainError(f"{what}: topics is not a list")
    return EventLog(
        address=_hex_bytes(_get(raw, "address", what), f"{what} address"),
        topics=[_hex_bytes(t, f"{what} topic") for t in topics],
        data=_hex_bytes(_get(raw, "data", what), f"{what} data"),
    )


def _to_receipt_fields(raw: Any, what: str) -> ReceiptFields:
    """The consensus fields of a raw receipt; a legacy receipt may omit ``type``."""
    if not isinstance(raw, dict):
        raise ChainError(f"{what}: node returned {type(raw).__name__}, not a receipt object")
    if "status" not in raw and "root" in raw:
        raise ChainError(f"{what} is a pre-Byzantium receipt (state root, no status)")
    logs = _get(raw, "logs", what)
    if not isinstance(logs, list):
        raise ChainError(f"{what}: logs is not a list")
    tx_type = raw.get("type")
    return ReceiptFields(
        tx_type=0 if tx_type is None else _hex_int(tx_type, f"{what} type"),
        status=_hex_int(_get(raw, "status", what), f"{what} status"),
        cumulative_gas_used=_hex_int(
            _get(raw, "cumulativeGasUsed", what), f"{what} cumulativeGasUsed"
        ),
        logs_bloom=_hex_bytes(_get(raw, "logsBloom", what), f"{what} logsBloom"),
        logs=[_to_event_log(log, f"{what} log {i}") for i, log in enumerate(logs)],
    )


def _to_receipts(raw: Any, number: int) -> list[ReceiptFields]:
    if raw is None:
        raise ChainError(f"receipts of block {number} not found")
    if not isinstance(raw, list):
        raise ChainError(f"receipts of block {number}: node returned {type(raw).__name__}")
    return [_to_receipt_fields(r, f"block {number} receipt {i}") for i, r in enumerate(raw)]


def _to_header(raw: Any) -> BlockHeader:
    if raw is None:
        raise ChainError("block not found")
    return BlockHeader(
        number=int(raw["number"]),
        hash=bytes(raw["hash"]),
        parent_hash=bytes(raw["parentHash"]),
        timestamp=int(raw["timestamp"]),
        receipts_root=bytes(raw["receiptsRoot"]),
    )


class ChainAdapter:
    """Typed access to one EVM chain (see module docstring)."""

    def __init__(
        self,
        w3: Web3,
        *,
        kind: BackendKind,
        dev_keys: Sequence[bytes],
        evm_version: str = DEFAULT_EVM_VERSION,
        tester: Any = None,
        receipt_poll_interval: float = 0.02,
    ) -> None:
        self.web3 = w3
        self.kind: BackendKind = kind
        self.evm_version = evm_version
        self.dev_keys: tuple[bytes, ...] = tuple(dev_keys)
        self.receipt_poll_interval = receipt_poll_interval
        self._tester = tester
        self._io: AbstractContextManager[Any] = (
            threading.RLock() if kind == "in_process" else nullcontext()
        )
        self._nonce_guard = threading.Lock()
        self._sender_locks: dict[str, threading.Lock] = {}
        self._nonces: dict[str, int] = {}
        self._fee_lock = threading.Lock()
        self._fee_cache: tuple[float, int] | None = None
        with self._guard():
            self.chain_id = int(w3.eth.chain_id)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def rpc(cls, url: str, *, timeout: float = 30.0) -> ChainAdapter:
        """Adapter for a JSON-RPC endpoint (``http://...``)."""
        if not url.startswith(("http://", "https://")):
            raise ChainConfigError(f"only http(s) JSON-RPC endpoints are supported: {url!r}")
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))
        return cls(w3, kind="rpc", dev_keys=get_anvil_dev_keys())

    @classmethod
    def in_process(cls, *, accounts: int = 10) -> ChainAdapter:
        """Adapter for an in-process eth-tester/py-evm chain (Prague)."""
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider

        backend = PyEVMBackend.from_mnemonic(
            ANVIL_MNEMONIC, num_accounts=accounts, hd_path=ANVIL_HD_PATH
        )
        tester = EthereumTester(backend)
        w3 = Web3(EthereumTesterProvider(tester))
        keys = [bytes(k.to_bytes()) for k in backend.account_keys]
        return cls(w3, kind="in_process", dev_keys=keys, tester=tester)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise (in-process) and map web3/transport errors to typed ones."""
        with self._io:
            try:
                yield
            except (TimeExhausted, TransactionNotFound):
                raise
            except (ContractLogicError, ContractCustomError, ContractPanicError) as exc:
                raise TransactionReverted(_reason_of(exc)) from exc
            except Web3RPCError as exc:
                message = _reason_of(exc)
                if "revert" in str(exc).lower():
                    raise TransactionReverted(message) from exc
                raise RpcError(f"JSON-RPC error: {message}") from exc
            except Web3Exception as exc:
                raise ChainError(f"web3 error: {exc}") from exc
            except (OSError, ConnectionError) as exc:
                raise RpcError(f"cannot reach chain: {exc}") from exc
            except Exception as exc:
                if type(exc).__module__.startswith(("requests", "urllib3", "eth_tester")):
                    name = type(exc).__name__
                    if name == "TransactionFailed":
                        raise TransactionReverted(_reason_of(exc)) from exc
                    raise RpcError(f"chain request failed: {name}: {exc}") from exc
                raise

    def _sender_lock(self, sender: str) -> threading.Lock:
        with self._nonce_guard:
            lock = self._sender_locks.get(sender)
            if lock is None:
                lock = self._sender_locks[sender] = threading.Lock()
            return lock

    def _fees(self) -> tuple[int, int]:
        now = time.monotonic()
        with self._fee_lock:
            cached = self._fee_cache
            if cached is None or now - cached[0] > _FEE_CACHE_SECONDS:
                with self._guard():
                    block = self.web3.eth.get_block("latest")
                base = int(block.get("baseFeePerGas", 0) or 0)
                cached = self._fee_cache = (now, base)
        base_fee = cached[1]
        return 3 * base_fee + DEFAULT_PRIORITY_FEE, DEFAULT_PRIORITY_FEE

    def get_fees(self) -> tuple[int, int]:
        """(max fee per gas, priority fee) this adapter would pay now."""
        return self._fees()

    def send_raw_transaction(self, raw_tx: bytes) -> bytes:
        """Submit a transaction signed elsewhere (an enclave); return its hash."""
        with self._guard():
            return bytes(self.web3.eth.send_raw_transaction(bytes(raw_tx)))

    def find_outgoing_transaction(
        self, sender: str, from_block: int, to_block: int | None = None
    ) -> tuple[str, bytes] | None:
        """(recipient, tx hash) of the first transaction sent by ``sender`` in the block
        range, or None: what left a deposit address (a scan; fine for a devnet)."""
        found = self.find_outgoing_transactions(sender, from_block, to_block, first_only=True)
        return found[0] if found else None

    def find_outgoing_transactions(
        self, sender: str, from_block: int, to_block: int | None = None, *, first_only: bool = False
    ) -> list[tuple[str, bytes]]:
        """(recipient, tx hash) of every transaction sent by ``sender`` in the block range,
        in chain order (a contract creation has recipient ""; a scan; fine for a devnet)."""
        sender = to_checksum_address(sender)
        last = self.get_block_number() if to_block is None else to_block
        found: list[tuple[str, bytes]] = []
        for number in range(max(0, from_block), last + 1):
            with self._guard():
                block = self.web3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                if isinstance(tx, bytes | str):
                    continue
                if to_checksum_address(tx["from"]) == sender:
                    recipient = tx.get("to")
                    found.append(
                        (to_checksum_address(recipient) if recipient else "", bytes(tx["hash"]))
                    )
                    if first_only:
                        return found
        return found

    # ------------------------------------------------------------------ accounts

    @staticmethod
    def address_of(private_key: bytes) -> str:
        """Checksummed address of a private key."""
        return compute_address(private_key)

    def get_dev_key(self, index: int = 0) -> bytes:
        """A funded dev account's private key."""
        if not 0 <= index < len(self.dev_keys):
            raise ChainConfigError(f"no dev account {index} (have {len(self.dev_keys)})")
        return self.dev_keys[index]

    def balance(self, address: str) -> int:
        with self._guard():
            return int(self.web3.eth.get_balance(to_checksum_address(address)))

    def fund(self, to: str, amount: int, *, sender_key: bytes | None = None) -> TxReceipt:
        """Send ``amount`` wei to ``to`` from ``sender_key`` (default: dev account 0)."""
        key = sender_key if sender_key is not None else self.get_dev_key(0)
        return self.transact(key, to=to, data=b"", value=amount, gas=21_000)

    def get_nonce(self, address: str) -> int:
        with self._guard():
            return int(self.web3.eth.get_transaction_count(to_checksum_address(address), "pending"))

    # ------------------------------------------------------------------ transactions

    def estimate_gas(self, sender: str, *, to: str | None, data: bytes, value: int = 0) -> int:
        """Gas estimate; raises TransactionReverted if the call would revert."""
        tx: dict[str, Any] = {"from": checksum(sender), "data": data, "value": value}
        if to is not None:
            tx["to"] = checksum(to)
        with self._guard():
            return int(self.web3.eth.estimate_gas(tx))  # type: ignore[arg-type]

    def send_transaction(
        self,
        private_key: bytes,
        *,
        to: str | None,
        data: bytes,
        value: int = 0,
        gas: int | None = None,
    ) -> bytes:
        """Sign and send; return the transaction hash without waiting for it."""
        sender = compute_address(private_key)
        if gas is None:
            estimate = self.estimate_gas(sender, to=to, data=data, value=value)
            gas = estimate * _GAS_MARGIN_NUM // _GAS_MARGIN_DEN + 10_000
        max_fee, tip = self._fees()
        with self._sender_lock(sender):
            try:
                return self._send_locked(private_key, sender, to, data, value, gas, max_fee, tip)
            except RpcError as exc:
                # Another process sent from this account: our cached nonce is stale.
                if "nonce too low" not in exc.message:
                    raise
                return self._send_locked(private_key, sender, to, data, value, gas, max_fee, tip)

    def _send_locked(
        self,
        private_key: bytes,
        sender: str,
        to: str | None,
        data: bytes,
        value: int,
        gas: int,
        max_fee: int,
        tip: int,
    ) -> bytes:
        """Send with the cached nonce (the caller holds the sender's lock)."""
        nonce = self._nonces.get(sender)
        if nonce is None:
            nonce = self.get_nonce(sender)
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        if to is not None:
            tx["to"] = checksum(to)
        signed = Account.sign_transaction(tx, private_key)
        try:
            with self._guard():
                tx_hash = bytes(self.web3.eth.send_raw_transaction(signed.raw_transaction))
        except ChainError:
            self._nonces.pop(sender, None)
            raise
        self._nonces[sender] = nonce + 1
        return tx_hash

    def wait_for_receipt(
        self, tx_hash: bytes, *, timeout: float = 60.0, check: bool = True
    ) -> TxReceipt:
        """Wait until mined; raise TransactionReverted on status 0 when ``check``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._guard():
                    raw = self.web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                raw = None
            if raw is not None and raw.get("blockNumber") is not None:
                break
            if time.monotonic() > deadline:
                raise ChainError(f"transaction 0x{tx_hash.hex()} not mined within {timeout}s")
            time.sleep(self.receipt_poll_interval)
        contract = raw.get("contractAddress")
        receipt = TxReceipt(
            tx_hash=bytes(raw["transactionHash"]),
            block_number=int(raw["blockNumber"]),
            block_hash=bytes(raw["blockHash"]),
            tx_index=int(raw["transactionIndex"]),
            status=int(raw["status"]),
            gas_used=int(raw["gasUsed"]),
            contract_address=checksum(contract) if contract else None,
            logs=[_to_log(entry) for entry in raw["logs"]],
        )
        if check and receipt.status != 1:
            raise TransactionReverted(self._replay_reason(receipt), tx_hash=receipt.tx_hash)
        return receipt

    def _replay_reason(self, receipt: TxReceipt) -> str:
        with self._guard():
            tx = self.web3.eth.get_transaction(receipt.tx_hash)  # type: ignore[arg-type]
        call: dict[str, Any] = {
            "from": tx["from"],
            "data": bytes(tx["input"]),
            "value": tx["value"],
            "gas": tx["gas"],
        }
        if tx.get("to"):
            call["to"] = tx["to"]
        try:
            with self._guard():
                self.web3.eth.call(call, max(receipt.block_number - 1, 0))  # type: ignore[arg-type]
        except TransactionReverted as exc:
            return exc.reason
        except ChainError as exc:
            return exc.message
        return "reverted (reason not reproducible by replay; out of gas?)"

    def transact(
        self,
        private_key: bytes,
        *,
        to: str | None,
        data: bytes,
        value: int = 0,
        gas: int | None = None,
        timeout: float = 60.0,
    ) -> TxReceipt:
        """Send a transaction and wait for its receipt (status 1, or TransactionReverted)."""
        tx_hash = self.send_transaction(private_key, to=to, data=data, value=value, gas=gas)
        try:
            return self.wait_for_receipt(tx_hash, timeout=timeout)
        except TransactionReverted as exc:
            raise TransactionReverted(exc.reason, tx_hash=tx_hash) from exc

    def deploy(
        self, private_key: bytes, bytecode: bytes, constructor_args: bytes = b"", *, value: int = 0
    ) -> str:
        """Deploy ``bytecode + constructor_args``; return the new contract's address."""
        receipt = self.transact(private_key, to=None, data=bytecode + constructor_args, value=value)
        if receipt.contract_address is None:
            raise ChainError("deployment receipt carries no contract address")
        return receipt.contract_address

    def call(
        self, to: str, data: bytes, *, block: int | str = "latest", sender: str | None = None
    ) -> bytes:
        """eth_call; raises TransactionReverted if the call reverts."""
        tx: dict[str, Any] = {"to": checksum(to), "data": data}
        if sender is not None:
            tx["from"] = checksum(sender)
        with self._guard():
            return bytes(self.web3.eth.call(tx, block))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ blocks and logs

    def get_block_number(self) -> int:
        with self._guard():
            return int(self.web3.eth.block_number)

    def get_block(self, number: int | str = "latest") -> BlockHeader:
        with self._guard():
            return _to_header(self.web3.eth.get_block(number))  # type: ignore[arg-type]

    def get_blocks(self, numbers: Sequence[int]) -> list[BlockHeader]:
        """Headers of ``numbers`` (one JSON-RPC batch on HTTP backends)."""
        if not numbers:
            return []
        if self.kind != "rpc" or len(numbers) == 1:
            return [self.get_block(n) for n in numbers]
        with self._guard():
            with self.web3.batch_requests() as batch:
                for n in numbers:
                    batch.add(self.web3.eth.get_block(n))
                raw = batch.execute()
        return [_to_header(r) for r in raw]

    def get_block_evidence(self, numbers: Sequence[int]) -> list[BlockEvidence]:
        """Raw headers and all receipts of ``numbers`` for the enclave's light client.

        One JSON-RPC batch (``eth_getBlockByNumber`` and ``eth_getBlockReceipts`` per
        block). Nothing is verified here. Needs a JSON-RPC node: the in-process backend
        raises :class:`ChainError`.
        """
        if self.kind != "rpc":
            raise ChainError(
                "block evidence (raw header fields and eth_getBlockReceipts) needs a "
                "JSON-RPC node such as anvil; the in-process eth-tester backend cannot "
                "supply it"
            )
        if not numbers:
            return []
        for n in numbers:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ChainConfigError(f"invalid block number {n!r}")
        requests: list[tuple[str, list[Any]]] = []
        for n in numbers:
            requests.append(("eth_getBlockByNumber", [hex(n), False]))
            requests.append(("eth_getBlockReceipts", [hex(n)]))
        results = self._batch(requests)
        return [
            BlockEvidence(
                header=_to_header_fields(results[2 * i], n),
                receipts=_to_receipts(results[2 * i + 1], n),
            )
            for i, n in enumerate(numbers)
        ]

    def _batch(self, requests: list[tuple[str, list[Any]]]) -> list[Any]:
        """One JSON-RPC batch; the results in order (any error raises RpcError)."""
        with self._guard():
            answer = self.web3.provider.make_batch_request(requests)  # type: ignore[attr-defined]
        if not isinstance(answer, list):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise RpcError(f"JSON-RPC batch failed: {error!r:.200}")
        if len(answer) != len(requests):
            raise RpcError(f"JSON-RPC batch: {len(requests)} requests, {len(answer)} answers")
        results: list[Any] = []
        for (method, params), response in zip(requests, answer, strict=True):
            if not isinstance(response, dict):
                raise RpcError(f"{method}({params[0]}): malformed JSON-RPC response")
            if response.get("error") is not None:
                error = response["error"]
                message = error.get("message", error) if isinstance(error, dict) else error
                raise RpcError(f"{method}({params[0]}) failed: {message}")
            results.append(response.get("result"))
        return results

    def get_header_fields(self, numbers: Sequence[int]) -> list[HeaderFields]:
        """Every header field of ``numbers`` (unchecked; one JSON-RPC batch)."""
        if self.kind != "rpc":
            raise ChainError("raw header fields need a JSON-RPC node such as anvil")
        for n in numbers:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ChainConfigError(f"invalid block number {n!r}")
        if not numbers:
            return []
        results = self._batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return [_to_header_fields(r, n) for r, n in zip(results, numbers, strict=True)]

    def get_proof(self, address: str, slots: Sequence[int], number: int) -> AccountProof:
        """``eth_getProof`` of an account and its ``slots`` at block ``number`` (unchecked:
        :mod:`sealbridge.chain.proofs` verifies it against a header's state root)."""
        if self.kind != "rpc":
            raise ChainError("state proofs (eth_getProof) need a JSON-RPC node such as anvil")
        keys = ["0x" + s.to_bytes(32, "big").hex() for s in slots]
        (raw,) = self._batch([("eth_getProof", [address, keys, hex(number)])])
        what = f"proof of {address} at block {number}"
        if not isinstance(raw, dict):
            raise ChainError(f"{what}: node returned {type(raw).__name__}")
        storage = _get(raw, "storageProof", what)
        if not isinstance(storage, list) or len(storage) != len(slots):
            raise ChainError(f"{what}: storageProof does not answer every slot")
        return AccountProof(
            address=_hex_bytes(address, "address"),
            proof=[_hex_bytes(n, what) for n in _get(raw, "accountProof", what)],
            slots=[
                SlotProof(
                    key=slot_key(slot), proof=[_hex_bytes(n, what) for n in _get(p, "proof", what)]
                )
                for slot, p in zip(slots, storage, strict=True)
            ],
        )

    def get_transaction_input(self, tx_hash: bytes) -> bytes:
        """The calldata of a mined transaction."""
        with self._guard():
            tx = self.web3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        return bytes(tx["input"])

    def get_logs(
        self,
        from_block: int,
        to_block: int,
        addresses: Sequence[str],
        topics: Sequence[bytes | None] | None = None,
    ) -> list[LogEntry]:
        """Logs of ``addresses`` in the inclusive range, in chain order."""
        params: dict[str, Any] = {
            "fromBlock": from_block,
            "toBlock": to_block,
            "address": [checksum(a) for a in addresses],
        }
        if topics is not None:
            params["topics"] = [None if t is None else "0x" + t.hex() for t in topics]
        with self._guard():
            raw = self.web3.eth.get_logs(params)  # type: ignore[arg-type]
        logs = [_to_log(r) for r in raw]
        logs.sort(key=lambda e: (e.block_number, e.tx_index, e.log_index))
        return logs

    # ------------------------------------------------------------------ dev-chain control

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks (devnet / in-process only)."""
        if blocks < 0:
            raise ChainConfigError("cannot mine a negative number of blocks")
        if blocks == 0:
            return
        with self._guard():
            if self._tester is not None:
                self._tester.mine_blocks(blocks)
            else:
                self.web3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    def set_automine(self, enabled: bool) -> None:
        """Mine every transaction at once (default) or only on :meth:`mine`."""
        with self._guard():
            if self._tester is not None:
                if enabled:
                    self._tester.enable_auto_mine_transactions()
                else:
                    self._tester.disable_auto_mine_transactions()
            else:
                self.web3.provider.make_request("evm_setAutomine", [enabled])  # type: ignore[arg-type]

    def increase_time(self, seconds: int) -> None:
        """Move the dev chain's clock forward and mine one block at the new time."""
        if seconds < 0:
            raise ChainConfigError("cannot move time backwards")
        with self._guard():
            if self._tester is not None:
                latest = self.web3.eth.get_block("latest")
                self._tester.time_travel(int(latest["timestamp"]) + seconds)
            else:
                self.web3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
                self.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
