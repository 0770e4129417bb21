"""Storage nodes as real processes against a real anvil chain (no full devnet).

Three ``python -m sealbridge.node storage-i.json`` processes register themselves with a
stake; a client stores a blob on them and gets receipts the ledger would count; a dead
node costs only its own confirmation; a node that serves tampered bytes is skipped; bad
HTTP input gets typed refusals and changes nothing; a restarted node keeps its key, its
node id and its registration.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sealbridge.chain.abi import Role, compute_storage_node_id, recover_signer
from sealbridge.config.node import STORAGE, NodeConfig, save_json
from sealbridge.core.ids import from_hex, keccak
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode, get_free_port
from sealbridge.evm.management import ManagementContracts, deploy_management
from sealbridge.net.http import NodeClient, NodeRefused
from sealbridge.node.checkpoint_store import fetch_blob, store_blob
from sealbridge.storage import BlobUnavailable, StorageReceipt, StorageUnavailable

pytestmark = pytest.mark.e2e

MIN_STAKE = 10**18
THRESHOLD = 2
MAX_BLOB = 64 * 1024
TIMEOUT = 10.0


@dataclass
class StorageProcess:
    config: NodeConfig
    config_file: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def blob_dir(self) -> Path:
        return Path(self.config.home) / "blobs"

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv
                [sys.executable, "-m", "sealbridge.node", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/v1/status", timeout=2.0).json())

    def wait_registered(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                pytest.fail(f"{self.config.name} exited:\n{self.log_file.read_text()[-2000:]}")
            try:
                status = self.status()
            except httpx.HTTPError:
                status = {}
            if status.get("registered"):
                return status
            if status.get("phase") == "failed":
                pytest.fail(f"{self.config.name} failed: {status['error']}")
            time.sleep(0.1)
        pytest.fail(f"{self.config.name} did not register:\n{self.log_file.read_text()[-2000:]}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=10)


@dataclass
class World:
    chain: ChainAdapter
    mgmt: ManagementContracts
    nodes: list[StorageProcess]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def ledger(self) -> str:
        return self.mgmt.execution_ledger.address

    def store(self, blob: bytes, threshold: int = THRESHOLD) -> list[StorageReceipt]:
        return store_blob(
            self.urls,
            blob,
            threshold=threshold,
            ledger_address=self.ledger,
            chain_id=self.chain.chain_id,
            timeout=TIMEOUT,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("storage")
    anvil = AnvilNode().start()
    nodes: list[StorageProcess] = []
    try:
        chain = anvil.adapter()
        admin = chain.get_dev_key(0)
        addresses = deploy_management(chain, admin, MIN_STAKE, storage_threshold=THRESHOLD)
        addresses_file = root / "addresses.json"
        addresses.save(addresses_file)
        for i in range(3):
            name = f"storage-{i + 1}"
            config = NodeConfig(
                role=STORAGE,
                name=name,
                home=str(root / name),
                rpc_url=anvil.url,
                addresses_file=str(addresses_file),
                eth_private_key=chain.get_dev_key(1 + i).hex(),
                port=get_free_port(),
                stake_wei=MIN_STAKE,
                max_blob_size=MAX_BLOB,
                poll_interval=0.05,
                # no heartbeats: a restarted node must send no transaction at all (a
                # heartbeat goes out as soon as the node finds itself registered)
                heartbeats=False,
            )
            config_file = root / f"{name}.json"
            save_json(config_file, config)
            node = StorageProcess(config, config_file, root / f"{name}.log")
            node.start()
            nodes.append(node)
        for node in nodes:
            node.wait_registered()
        yield World(chain, ManagementContracts(chain, addresses), nodes)
    finally:
        for node in nodes:
            node.kill(signal.SIGTERM)
        anvil.stop()


def test_storage_nodes_register_with_a_stake(world: World) -> None:
    registry = world.mgmt.node_registry
    assert world.mgmt.execution_ledger.get_storage_threshold() == THRESHOLD
    for node in world.nodes:
        status = node.status()
        assert status["role"] == "storage"
        assert status["phase"] == "ready"
        node_id = from_hex(status["node_id"], size=32)
        assert node_id == compute_storage_node_id(status["signer"])
        assert registry.is_active(node_id, Role.STORAGE)
        assert not registry.is_active(node_id, Role.WORKER)
        record = registry.get_node(node_id)
        assert record is not None
        assert record.enclave_address == status["signer"]
        assert record.stake == MIN_STAKE
        assert record.owner == ChainAdapter.address_of(bytes.fromhex(node.config.eth_private_key))


def test_receipts_verify_against_the_chain_and_the_blob_comes_back(world: World) -> None:
    blob = os.urandom(5000)
    blob_hash = keccak(blob)
    receipts = world.store(blob)
    assert len(receipts) == 3
    ids = [r.node_id for r in receipts]
    assert ids == sorted(ids) and len(set(ids)) == 3  # strictly increasing, as the ledger wants
    registry, ledger = world.mgmt.node_registry, world.mgmt.execution_ledger
    for receipt in receipts:
        assert (receipt.blob_hash, receipt.size) == (blob_hash, len(blob))
        assert registry.is_active(receipt.node_id, Role.STORAGE)
        signer = recover_signer(
            ledger.compute_storage_digest(blob_hash, len(blob)), receipt.signature
        )
        record = registry.get_node(receipt.node_id)
        assert record is not None and signer == record.enclave_address
    assert fetch_blob(world.urls, blob_hash, timeout=TIMEOUT) == blob
    for node in world.nodes:
        assert (node.blob_dir / blob_hash.hex()).read_bytes() == blob

    # storing the same blob again is idempotent: same receipts, nothing new held
    before = [n.status()["blobs"] for n in world.nodes]
    assert world.store(blob) == receipts
    assert [n.status()["blobs"] for n in world.nodes] == before


def test_bad_http_input_is_refused_with_typed_errors_and_changes_nothing(world: World) -> None:
    node = world.nodes[0]
    before_status = node.status()
    before_files = sorted(p.name for p in node.blob_dir.iterdir())
    with NodeClient(node.url) as client:
        with pytest.raises(NodeRefused) as refused:
            client.get_bytes("/v1/blobs/" + keccak(b"never stored").hex())
        assert (refused.value.status, refused.value.remote_code) == (404, "not_found")
        for malformed in ("xyz", "0x1234", "zz" * 32, keccak(b"x").hex() + "00"):
            with pytest.raises(NodeRefused) as refused:
                client.get_bytes("/v1/blobs/" + malformed)
            assert (refused.value.status, refused.value.remote_code) == (400, "bad_blob_hash")
        with pytest.raises(NodeRefused) as refused:
            client.post_raw("/v1/blobs", b"")
        assert (refused.value.status, refused.value.kind) == (400, "BlobRefused")
        with pytest.raises(NodeRefused) as refused:
            client.post_raw("/v1/blobs", b"x" * (MAX_BLOB + 1))
        assert (refused.value.status, refused.value.remote_code) == (400, "too_large")
    after_status = node.status()
    assert (after_status["blobs"], after_status["bytes"]) == (
        before_status["blobs"],
        before_status["bytes"],
    )
    assert sorted(p.name for p in node.blob_dir.iterdir()) == before_files


def test_a_node_serving_tampered_bytes_is_skipped(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    blob = os.urandom(2000)
    blob_hash = keccak(blob)
    world.store(blob)
    first = world.nodes[0]
    path = first.blob_dir / blob_hash.hex()
    path.write_bytes(bytes([blob[0] ^ 0xFF]) + blob[1:])  # same size, one byte changed
    with caplog.at_level(logging.WARNING, logger="sealbridge.checkpoint_store"):
        assert fetch_blob(world.urls, blob_hash, timeout=TIMEOUT) == blob
    assert any("tampered" in r.getMessage() and first.url in r.getMessage() for r in caplog.records)
    with pytest.raises(BlobUnavailable):
        fetch_blob([first.url], blob_hash, timeout=TIMEOUT)


def test_a_dead_node_costs_one_confirmation_and_a_restart_keeps_the_registration(
    world: World,
) -> None:
    blob = os.urandom(3000)
    world.store(blob)
    victim = world.nodes[2]
    node_id = from_hex(victim.status()["node_id"], size=32)
    record_before = world.mgmt.node_registry.get_node(node_id)
    owner = ChainAdapter.address_of(bytes.fromhex(victim.config.eth_private_key))
    nonce_before = world.chain.get_nonce(owner)
    victim.kill(signal.SIGKILL)

    other = os.urandom(4000)
    receipts = world.store(other, threshold=2)
    assert len(receipts) == 2 and node_id not in {r.node_id for r in receipts}
    with pytest.raises(StorageUnavailable) as refused:
        world.store(other, threshold=3)
    assert (refused.value.confirmed, refused.value.needed) == (2, 3)
    assert "2 of 3" in refused.value.message

    victim.start()
    status = victim.wait_registered()
    assert from_hex(status["node_id"], size=32) == node_id
    assert world.mgmt.node_registry.get_node(node_id) == record_before  # not re-registered
    assert world.chain.get_nonce(owner) == nonce_before  # it sent no transaction
    assert fetch_blob([victim.url], keccak(blob), timeout=TIMEOUT) == blob  # still held
    assert len(world.store(other, threshold=3)) == 3
