"""The storage node's process wiring: disk, HTTP, chain (untrusted; no enclave).

Theory of operation
-------------------
Every decision of a storage node is in its host core
(:class:`~sealbridge.storage.host.StorageHostCore`: which blobs to write, when to
register, renew and heartbeat); this module gives it a disk, a chain and HTTP, through
the one network driver (:mod:`sealbridge.node.driver`).

At start the host loads its secp256k1 signing key from ``<home>/storage.key`` (32
random bytes, mode 0600), creating it on the first start. The key fixes the node id
(derived from the key's address), so a restarted node keeps its identity and its
registration. The HTTP API serves at once; the driver's loop then runs the core, whose
registration upkeep asks the NodeRegistry about the node and registers it
(``register_storage`` from the node's gas account, paying ``stake_wei``), renews it
(``renew_storage``) once less than a quarter of ``registration_ttl`` is left, and sends
one heartbeat per slot when ``heartbeats`` is on. Passing chain failures are retried by
the driver's policy; a registration the registry refuses (a stake below its minimum)
leaves the node ``failed`` with the reason. Blobs are accepted in every phase, but their
receipts count on chain only while the node is an active storage node.

``POST /v1/blobs`` (raw body = the blob): the core checks the blob and asks for a
durable write (``Persist``), which this module carries out -- a temp file in the same
directory, fsync, rename, directory fsync -- before the core's signed
:class:`StorageReceipt` is the answer (canonical msgpack). Storing a blob the node
already holds intact writes nothing and returns the same receipt (signatures are
deterministic). A file found damaged is rewritten.

``GET /v1/blobs/<hash hex>`` answers the stored bytes as they are on disk. The host
does not re-hash them on each read: clients check what they fetch against the hash
(:func:`~sealbridge.storage.node.is_intact`), because a storage node is not trusted
for integrity, only for availability.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import compute_address, sign_digest
from sealbridge.chain.errors import ChainConfigError
from sealbridge.chain.registration import Heartbeat, Register, RegistryQuery, RegistryView, Renew
from sealbridge.config.node import NodeConfig
from sealbridge.core.effects import Effect, Persist
from sealbridge.core.encoding import encode
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.management import ManagementAddresses, ManagementContracts, NodeRegistry
from sealbridge.node.driver import DriverStopped, Executors, NetworkDriver
from sealbridge.node.host import TICK_INTERVAL, read_registry_view
from sealbridge.storage.errors import BadBlobHash, BlobNotFound, BlobRefused
from sealbridge.storage.host import StorageHostCore, StoreRefused
from sealbridge.storage.messages import StorageReceipt
from sealbridge.storage.node import StorageNode, compute_blob_hash, parse_blob_hash

log = logging.getLogger("sealbridge.storage")
KEY_FILE = "storage.key"
BLOB_DIR = "blobs"
KEY_SIZE = 32
RETRY_DELAY = 1.0


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
    """A storage node's disk, chain and HTTP handlers around its host core."""

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
        self.host_core = StorageHostCore(
            self.core,
            ttl=config.registration_ttl,
            heartbeats=config.heartbeats,
            tick=TICK_INTERVAL,
            held=self._scan(),
            is_intact=self._holds_intact,
        )
        self._registry: NodeRegistry | None = None
        self.driver = NetworkDriver(
            self.host_core,
            Executors(
                submit_tx=self._submit,
                read_chain=self._read,
                persist=self._persist,
            ),
            name=f"storage {config.name}",
        )

    def _scan(self) -> dict[bytes, int]:
        """The blobs held and their sizes; delete temp files a crash left behind."""
        sizes: dict[bytes, int] = {}
        for entry in os.scandir(self.blob_dir):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)
            elif entry.is_file() and _is_blob_name(entry.name):
                sizes[bytes.fromhex(entry.name)] = entry.stat().st_size
        return sizes

    def run(self) -> None:
        """Run the host core until stopped (registration, renewal, heartbeats)."""
        self.driver.run()

    def stop(self) -> None:
        self.driver.stop()

    # -- executors (the driver calls these) --------------------------------------------
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

    def _read(self, query: object) -> RegistryView:
        if not isinstance(query, RegistryQuery):
            raise ConfigError(f"a storage node reads no {type(query).__name__}")
        return read_registry_view(self._get_registry(), query)

    def _submit(self, tx: object) -> int | None:
        registry = self._get_registry()
        if isinstance(tx, Register):
            registry.register_storage(
                self._signing_key, tx.expiry, self.eth_key, stake=self.config.stake_wei
            )
            log.info(
                "registered storage node %s (signer %s)",
                to_hex(self.node_id),
                self.core.signer_address,
            )
            return registry.adapter.get_block_number()
        if isinstance(tx, Renew):
            receipt = registry.renew_storage(self._signing_key, tx.expiry, self.eth_key)
            log.info("renewed the registration of storage node %s", to_hex(self.node_id))
            return receipt.block_number
        if isinstance(tx, Heartbeat):
            digest = registry.compute_heartbeat_digest(self.node_id, tx.era, tx.slot)
            signature = sign_digest(digest, self._signing_key)
            # relayed without waiting for its receipt (see NodeRegistry.send_heartbeat)
            registry.send_heartbeat(self.node_id, tx.era, tx.slot, signature, self.eth_key)
            return None
        raise ConfigError(f"a storage node sends no {type(tx).__name__}")

    def _persist(self, key: str, data: bytes) -> None:
        name = key.removeprefix("blob/")
        if name == key or not _is_blob_name(name):
            raise ConfigError(f"a storage node persists blobs only, not {key!r}")
        self._write(self.blob_dir / name, data)

    # -- HTTP handlers ---------------------------------------------------------------
    def on_store(self, blob: bytes) -> bytes:
        """POST /v1/blobs: store durably, then answer the signed receipt."""

        def store() -> tuple[list[Effect], StorageReceipt | StoreRefused]:
            effects, answer = self.host_core.on_store(blob)
            persist = self.driver.executors.persist or self._persist
            for effect in effects:  # the durable write, before the receipt goes out
                if isinstance(effect, Persist):
                    persist(effect.key, effect.data)
            if effects and isinstance(answer, StorageReceipt):
                self.host_core.on_persisted(answer.blob_hash, answer.size)
            return [e for e in effects if not isinstance(e, Persist)], answer

        answer = self.driver.call(store)
        if isinstance(answer, StoreRefused):
            raise BlobRefused(answer.message)
        return encode(answer)

    def _holds_intact(self, blob_hash: bytes, size: int) -> bool:
        path = self.blob_dir / blob_hash.hex()
        try:
            if path.stat().st_size != size:
                return False
            return compute_blob_hash(path.read_bytes()) == blob_hash
        except OSError:  # missing or unreadable: not held intact (written again)
            return False

    def _write(self, path: Path, blob: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:16]}-", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(blob)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise BlobWriteFailed(f"cannot store blob {path.name[:16]}…: {exc}") from exc
        log.info("stored blob %s (%d bytes)", path.name, len(blob))

    def on_fetch(self, blob_hash_text: str) -> bytes:
        """GET /v1/blobs/<hash hex>: the stored bytes."""
        blob_hash = parse_blob_hash(blob_hash_text)
        try:
            return (self.blob_dir / blob_hash.hex()).read_bytes()
        except OSError:  # missing, or not a readable file
            raise BlobNotFound(f"this node holds no blob {to_hex(blob_hash)}") from None

    def get_status(self) -> dict[str, Any]:
        try:
            core = self.driver.call(lambda: ([], self.host_core.get_status()))
        except DriverStopped:  # the loop is gone: nothing else touches the core now
            core = self.host_core.get_status()
        phase = core["phase"]
        if self.driver.status.phase == "failed":
            phase, core["error"] = "failed", self.driver.status.error
        return {
            "role": "storage",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "signer": self.core.signer_address,
            **core,
            "phase": phase,
        }
