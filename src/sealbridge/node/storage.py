"""The storage host: a storage node's whole process (untrusted; no enclave, no follower).

Theory of operation
-------------------
A storage node holds checkpoint blobs that are already encrypted, so it needs no TEE.
At start the host loads its secp256k1 signing key from ``<home>/storage.key`` (32
random bytes, mode 0600), creating it on the first start. The key fixes the node id
(derived from the key's address), so a restarted node keeps its identity and its
registration. The HTTP API serves at once. A background thread then makes sure the node
is registered: when the NodeRegistry does not list it as an active storage node, the
host calls ``register_storage`` from its own gas account, paying ``stake_wei``, with
expiry now + ``registration_ttl``. An unreachable chain is retried; a registration the
registry refuses (for example a stake below its minimum) leaves the node ``FAILED`` with
the reason. Blobs are accepted in every phase, but their receipts count on chain only
while the node is an active storage node.

Once registered, the same thread keeps the node alive on chain, checking every
``TICK_INTERVAL`` seconds: with ``heartbeats`` on, it sends one NodeRegistry heartbeat
per slot, signed with the node's signing key (the node's responsiveness is measured per
era, see docs/availability.md), and it renews the registration (``renew_storage``) once
less than a quarter of ``registration_ttl`` is left. A failure there is logged and tried
again later; it never stops the node.

``POST /v1/blobs`` (raw body = the blob): the core checks the blob
(:meth:`StorageNode.process_store`); the host writes ``<home>/blobs/<hash hex>`` through
a temp file in the same directory, fsync, rename and directory fsync; only then does
the core sign the :class:`StorageReceipt`, which is the answer (canonical msgpack).
Storing a blob the node already holds intact writes nothing and returns the same
receipt (signatures are deterministic). A file found damaged is rewritten.

``GET /v1/blobs/<hash hex>`` answers the stored bytes as they are on disk. The host
does not re-hash them on each read: clients check what they fetch against the hash
(:func:`~sealbridge.storage.node.is_intact`), because a storage node is not trusted
for integrity, only for availability.

Phases: ``STARTING`` -> ``REGISTERING`` -> ``READY``, or ``FAILED`` with a reason.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role, compute_address, sign_digest
from sealbridge.chain.errors import ChainConfigError, RpcError, TransactionReverted
from sealbridge.config.node import NodeConfig
from sealbridge.core.encoding import encode
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.management import ManagementAddresses, ManagementContracts, NodeRegistry
from sealbridge.node.host import (
    TICK_INTERVAL,
    UPKEEP_RETRY_DELAY,
    HeartbeatSchedule,
    process_heartbeat,
)
from sealbridge.storage.errors import BadBlobHash, BlobNotFound
from sealbridge.storage.node import StorageNode, compute_blob_hash, parse_blob_hash

log = logging.getLogger("sealbridge.storage")
KEY_FILE = "storage.key"
BLOB_DIR = "blobs"
KEY_SIZE = 32
RETRY_DELAY = 1.0


class StoragePhase(Enum):
    STARTING = "starting"
    REGISTERING = "registering"
    READY = "ready"
    FAILED = "failed"


class BlobWriteFailed(SealbridgeError):
    """The host could not write a blob durably (disk full, permissions): our fault."""

    code = "write_failed"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_signing_key(path: Path) -> bytes:
    """The node's secp256k1 signing key: read from ``path``, or drawn and written there
    (mode 0600, atomically) on the first start."""
    if path.exists():
        key = path.read_bytes()
        if len(key) != KEY_SIZE:
            raise ConfigError(f"{path} is {len(key)} bytes, not a {KEY_SIZE}-byte key")
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("%s is readable by other users; it should be mode 0600", path)
        compute_address(key)  # ChainConfigError (a ConfigError) if it is not a valid key
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        key = secrets.token_bytes(KEY_SIZE)
        try:
            compute_address(key)  # refuses the (negligibly rare) value outside the order
            break
        except ChainConfigError:
            continue
    fd, tmp = tempfile.mkstemp(prefix=".storage-key-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return key


def _is_blob_name(name: str) -> bool:
    try:
        return parse_blob_hash(name).hex() == name
    except BadBlobHash:
        return False


class StorageHost:
    """Blob files on disk, the HTTP handlers, and registration (see module docstring)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.home = Path(config.home)
        self.addresses = ManagementAddresses.load(config.addresses_file)
        self.eth_key = from_hex(config.eth_private_key, size=32, what="eth_private_key")
        self._signing_key = load_or_create_signing_key(self.home / KEY_FILE)
        self.core = StorageNode(
            self._signing_key,
            self.addresses.execution_ledger,
            self.addresses.chain_id,
            config.max_blob_size,
        )
        self.node_id = self.core.node_id
        self.blob_dir = self.home / BLOB_DIR
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.phase = StoragePhase.STARTING
        self.error = ""
        self.registered = False
        self.expiry = 0
        self.heartbeats = HeartbeatSchedule()
        self._registry: NodeRegistry | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sizes = self._scan()  # blob hash -> size, of the files held
        self.bytes_held = sum(self._sizes.values())
        self.stored = 0  # blobs written by this process (new or repaired)

    def _scan(self) -> dict[bytes, int]:
        """The blobs held and their sizes; delete temp files a crash left behind."""
        sizes: dict[bytes, int] = {}
        for entry in os.scandir(self.blob_dir):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)
            elif entry.is_file() and _is_blob_name(entry.name):
                sizes[bytes.fromhex(entry.name)] = entry.stat().st_size
        return sizes

    # -- registration and upkeep (background thread) ------------------------------------
    def run(self) -> None:
        """Register the node unless it is active already (retrying passing failures),
        then keep it alive on chain until stopped: heartbeats and renewal."""
        self.phase = StoragePhase.REGISTERING
        while not self._stop.is_set():
            try:
                self._ensure_registered()
            except RpcError as exc:
                # the chain is briefly unreachable: check again shortly
                self.error = f"retrying registration: {exc.message}"
                log.warning(self.error)
                self._stop.wait(RETRY_DELAY)
                continue
            except Exception as exc:  # keep serving blobs; report why in status
                self.phase = StoragePhase.FAILED
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("storage node %s could not register", self.config.name)
                return
            self.error = ""
            self.phase = StoragePhase.READY
            break
        next_renewal_check = 0.0
        while not self._stop.wait(TICK_INTERVAL):
            if time.monotonic() >= next_renewal_check:
                try:
                    self.maintain_registration()
                except SealbridgeError as exc:
                    next_renewal_check = time.monotonic() + UPKEEP_RETRY_DELAY
                    log.warning("registration upkeep failed (tried again later): %s", exc.message)
            if self.config.heartbeats:
                try:
                    self.send_heartbeat()
                except SealbridgeError as exc:
                    log.warning("heartbeat failed (tried again later): %s", exc.message)

    def _get_registry(self) -> NodeRegistry:
        if self._registry is None:
            chain = ChainAdapter.rpc(self.config.rpc_url)
            if chain.chain_id != self.addresses.chain_id:
                raise ConfigError(
                    f"{self.config.rpc_url} is chain {chain.chain_id}, "
                    f"the addresses file is for chain {self.addresses.chain_id}"
                )
            self._registry = ManagementContracts(chain, self.addresses).node_registry
        return self._registry

    def _ensure_registered(self) -> None:
        registry = self._get_registry()
        if registry.is_active(self.node_id, Role.STORAGE):
            record = registry.get_node(self.node_id)
            self.expiry = record.expiry if record is not None else 0
            log.info("storage node %s already registered", to_hex(self.node_id))
        else:
            expiry = int(time.time()) + self.config.registration_ttl
            try:
                registry.register_storage(
                    self._signing_key, expiry, self.eth_key, stake=self.config.stake_wei
                )
            except TransactionReverted:
                # a registration racing ours (same key, another process) is no failure
                if not registry.is_active(self.node_id, Role.STORAGE):
                    raise
            self.expiry = expiry
            log.info(
                "registered storage node %s (signer %s)",
                to_hex(self.node_id),
                self.core.signer_address,
            )
        self.registered = True

    def is_renewal_due(self, now: int) -> bool:
        """Renew once less than a quarter of ``registration_ttl`` is left."""
        left = self.expiry - now
        return self.expiry > 0 and left * 4 < self.config.registration_ttl

    def maintain_registration(self) -> None:
        """Renew before the registration expires; past the grace period, register again."""
        if not self.is_renewal_due(int(time.time())):
            return
        expiry = int(time.time()) + self.config.registration_ttl
        try:
            self._get_registry().renew_storage(self._signing_key, expiry, self.eth_key)
        except TransactionReverted as exc:
            if exc.reason != "registration lapsed":
                raise
            self._ensure_registered()
            return
        self.expiry = expiry
        log.info("renewed the registration of storage node %s", to_hex(self.node_id))

    def send_heartbeat(self) -> bool:
        """This node's heartbeat for the next block's slot, unless sent already."""
        registry = self._get_registry()

        def sign(era: int, slot: int) -> bytes:
            digest = registry.compute_heartbeat_digest(self.node_id, era, slot)
            return sign_digest(digest, self._signing_key)

        return process_heartbeat(
            registry, self.heartbeats, self.node_id, Role.STORAGE, sign, self.eth_key
        )

    def stop(self) -> None:
        self._stop.set()

    # -- HTTP handlers ---------------------------------------------------------------
    def on_store(self, blob: bytes) -> bytes:
        """POST /v1/blobs: store durably, then answer the signed receipt."""
        decision = self.core.process_store(blob)
        path = self.blob_dir / decision.blob_hash.hex()
        if not self._holds_intact(path, decision.blob_hash, decision.size):
            self._write(path, decision.blob_hash, blob, decision.size)
        return encode(self.core.sign_receipt(decision.blob_hash, decision.size))

    def _holds_intact(self, path: Path, blob_hash: bytes, size: int) -> bool:
        try:
            if path.stat().st_size != size:
                return False
            return compute_blob_hash(path.read_bytes()) == blob_hash
        except FileNotFoundError:
            return False

    def _write(self, path: Path, blob_hash: bytes, blob: bytes, size: int) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:16]}-", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(blob)
                    out.flush()
                    os.fsync(out.fileno())
                with self._lock:
                    os.replace(tmp, path)
                    self.bytes_held += size - self._sizes.get(blob_hash, 0)
                    self._sizes[blob_hash] = size
                    self.stored += 1
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise BlobWriteFailed(f"cannot store blob {path.name[:16]}…: {exc}") from exc
        log.info("stored blob %s (%d bytes)", path.name, size)

    def on_fetch(self, blob_hash_text: str) -> bytes:
        """GET /v1/blobs/<hash hex>: the stored bytes."""
        blob_hash = parse_blob_hash(blob_hash_text)
        try:
            return (self.blob_dir / blob_hash.hex()).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"this node holds no blob {to_hex(blob_hash)}") from None

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            blobs, held = len(self._sizes), self.bytes_held
        return {
            "role": "storage",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "signer": self.core.signer_address,
            "phase": self.phase.value,
            "error": self.error,
            "registered": self.registered,
            "expiry": self.expiry,
            "heartbeats_sent": self.heartbeats.sent,
            "blobs": blobs,
            "bytes": held,
            "blobs_stored": self.stored,
            "max_blob_size": self.core.max_blob_size,
        }
