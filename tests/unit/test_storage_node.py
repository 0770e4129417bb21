"""The storage node core and its host's disk handling, without a chain.

Receipts verify with no chain read; a receipt with any field changed does not; empty and
oversize blobs are refused and change nothing; the host writes blobs durably and
idempotently, keeps its key across restarts, and refuses bad hashes with typed errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.chain.abi import (
    compute_address,
    compute_storage_digest,
    compute_storage_node_id,
    recover_signer,
)
from sealbridge.config.node import STORAGE, NodeConfig
from sealbridge.core.encoding import decode, decode_canonical, encode
from sealbridge.core.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sealbridge.core.ids import keccak
from sealbridge.evm.management import ManagementAddresses
from sealbridge.node.checkpoint_store import fetch_blob, store_blob
from sealbridge.node.storage import KEY_FILE, StorageHost
from sealbridge.storage import (
    BadBlobHash,
    BlobNotFound,
    BlobRefused,
    BlobUnavailable,
    StorageNode,
    StorageReceipt,
    StorageUnavailable,
    is_intact,
    is_valid_receipt,
    parse_blob_hash,
)

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_LEDGER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
CHAIN_ID = 31337


def node(max_blob_size: int = 1024) -> StorageNode:
    return StorageNode(KEY, LEDGER, CHAIN_ID, max_blob_size)


def receipt_for(blob: bytes, core: StorageNode | None = None) -> StorageReceipt:
    core = core or node()
    decision = core.process_store(blob)
    return core.sign_receipt(decision.blob_hash, decision.size)


# -- the core -----------------------------------------------------------------------------


def test_a_receipt_verifies_without_a_chain() -> None:
    core = node()
    receipt = receipt_for(b"ciphertext", core)
    assert receipt.blob_hash == keccak(b"ciphertext")
    assert receipt.size == len(b"ciphertext")
    assert receipt.node_id == compute_storage_node_id(compute_address(KEY)) == core.node_id
    assert is_valid_receipt(receipt, LEDGER, CHAIN_ID)
    digest = compute_storage_digest(
        ledger=LEDGER, chain_id=CHAIN_ID, blob_hash=receipt.blob_hash, size=receipt.size
    )
    assert recover_signer(digest, receipt.signature) == core.signer_address


def test_receipts_are_deterministic_and_canonical() -> None:
    first, second = receipt_for(b"blob"), receipt_for(b"blob")
    assert first == second
    wire = encode(first)
    assert decode_canonical(wire, StorageReceipt) == first


def change(receipt: StorageReceipt, **fields: object) -> StorageReceipt:
    return msgspec.structs.replace(receipt, **fields)


def test_a_receipt_with_any_field_changed_fails() -> None:
    receipt = receipt_for(b"ciphertext")
    other_id = compute_storage_node_id("0x" + "11" * 20)
    flipped = bytes([receipt.signature[0] ^ 1]) + receipt.signature[1:]
    for bad in (
        change(receipt, size=receipt.size + 1),
        change(receipt, blob_hash=keccak(b"other")),
        change(receipt, node_id=other_id),
        change(receipt, signature=flipped),
        change(receipt, signature=receipt.signature[:64]),
        change(receipt, signature=b"\x00" * 65),
        change(receipt, size=0),
        change(receipt, node_id=receipt.node_id[:31]),
    ):
        assert not is_valid_receipt(bad, LEDGER, CHAIN_ID)
    # the same receipt, claimed for another ledger or chain
    assert not is_valid_receipt(receipt, OTHER_LEDGER, CHAIN_ID)
    assert not is_valid_receipt(receipt, LEDGER, CHAIN_ID + 1)


def test_a_receipt_signed_by_another_key_under_this_node_id_fails() -> None:
    honest = receipt_for(b"ciphertext")
    forger = StorageNode(bytes(31) + b"\x07", LEDGER, CHAIN_ID)
    forged = receipt_for(b"ciphertext", forger)
    assert is_valid_receipt(forged, LEDGER, CHAIN_ID)  # genuine for the forger's own id
    assert not is_valid_receipt(change(forged, node_id=honest.node_id), LEDGER, CHAIN_ID)


@settings(max_examples=40, deadline=None)
@given(
    blob=st.binary(min_size=1, max_size=64),
    position=st.integers(min_value=0, max_value=64),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_bit_flip_in_the_signature_fails(blob: bytes, position: int, bit: int) -> None:
    receipt = receipt_for(blob)
    signature = bytearray(receipt.signature)
    signature[position] ^= 1 << bit
    assert not is_valid_receipt(change(receipt, signature=bytes(signature)), LEDGER, CHAIN_ID)


def test_empty_and_oversize_blobs_are_refused() -> None:
    core = node(max_blob_size=16)
    assert core.process_store(b"x" * 16).size == 16
    for blob in (b"", b"x" * 17):
        with pytest.raises(BlobRefused) as refused:
            core.process_store(blob)
        assert isinstance(refused.value, RemoteProtocolError)


def test_the_host_must_not_ask_for_an_impossible_receipt() -> None:
    core = node(max_blob_size=16)
    for blob_hash, size in ((keccak(b"x"), 0), (keccak(b"x"), 17), (b"\x01" * 31, 1)):
        with pytest.raises(LocalProtocolError):
            core.sign_receipt(blob_hash, size)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        StorageNode(b"\x01" * 31, LEDGER, CHAIN_ID)
    with pytest.raises(ConfigError):
        StorageNode(b"\x00" * 32, LEDGER, CHAIN_ID)  # zero is not a secp256k1 key
    with pytest.raises(ConfigError):
        StorageNode(KEY, "not-an-address", CHAIN_ID)
    with pytest.raises(ConfigError):
        StorageNode(KEY, LEDGER, 0)
    with pytest.raises(ConfigError):
        StorageNode(KEY, LEDGER, CHAIN_ID, max_blob_size=0)
    with pytest.raises(ConfigError):
        is_valid_receipt(receipt_for(b"x"), "0x1234", CHAIN_ID)


def test_blob_hashes_parse_strictly() -> None:
    digest = keccak(b"blob")
    assert parse_blob_hash(digest.hex()) == digest
    assert parse_blob_hash("0x" + digest.hex().upper()) == digest
    for text in ("", "0x", digest.hex()[:-1], digest.hex() + "00", "zz" * 32, " " + digest.hex()):
        with pytest.raises(BadBlobHash):
            parse_blob_hash(text)
    assert is_intact(digest, b"blob")
    assert not is_intact(digest, b"blob!")


# -- the host's disk handling (no chain: registration runs only in StorageHost.run) ------


def host_config(tmp_path: Path, max_blob_size: int = 1024) -> NodeConfig:
    addresses = ManagementAddresses(
        chain_id=CHAIN_ID,
        node_registry="0x" + "01" * 20,
        contract_registry="0x" + "02" * 20,
        command_inbox="0x" + "03" * 20,
        execution_ledger=LEDGER,
        deployed_at_block=1,
        evm_version="prague",
    )
    addresses.save(tmp_path / "addresses.json")
    return NodeConfig(
        role=STORAGE,
        name="storage-t",
        home=str(tmp_path / "home"),
        rpc_url="http://127.0.0.1:1",
        addresses_file=str(tmp_path / "addresses.json"),
        eth_private_key="11" * 32,
        port=1,
        max_blob_size=max_blob_size,
    )


def test_the_host_stores_durably_and_idempotently(tmp_path: Path) -> None:
    host = StorageHost(host_config(tmp_path))
    blob = os.urandom(300)
    receipt = decode(host.on_store(blob), StorageReceipt)
    assert is_valid_receipt(receipt, LEDGER, CHAIN_ID)
    assert receipt.node_id == host.node_id
    path = Path(host.config.home) / "blobs" / keccak(blob).hex()
    assert path.read_bytes() == blob
    assert decode(host.on_store(blob), StorageReceipt) == receipt  # stored twice: same
    assert host.get_status()["blobs"] == 1
    assert host.get_status()["bytes"] == 300
    assert host.on_fetch(keccak(blob).hex()) == blob
    assert host.on_fetch("0x" + keccak(blob).hex()) == blob
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_host_repairs_a_damaged_file_when_the_blob_comes_again(tmp_path: Path) -> None:
    host = StorageHost(host_config(tmp_path))
    blob = b"checkpoint" * 10
    host.on_store(blob)
    path = Path(host.config.home) / "blobs" / keccak(blob).hex()
    path.write_bytes(b"rotten")
    host.on_store(blob)
    assert path.read_bytes() == blob
    assert host.get_status()["blobs"] == 1
    assert host.get_status()["bytes"] == len(blob)


def test_the_host_refuses_bad_input_and_changes_nothing(tmp_path: Path) -> None:
    host = StorageHost(host_config(tmp_path, max_blob_size=64))
    for blob in (b"", b"x" * 65):
        with pytest.raises(BlobRefused):
            host.on_store(blob)
    with pytest.raises(BlobNotFound):
        host.on_fetch(keccak(b"never stored").hex())
    with pytest.raises(BadBlobHash):
        host.on_fetch("../../storage.key")
    assert list((Path(host.config.home) / "blobs").iterdir()) == []
    assert host.get_status()["blobs"] == 0


def test_the_host_keeps_its_key_across_restarts(tmp_path: Path) -> None:
    config = host_config(tmp_path)
    first = StorageHost(config)
    key_file = Path(config.home) / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    first.on_store(b"kept")
    second = StorageHost(config)
    assert second.node_id == first.node_id
    assert second.core.signer_address == first.core.signer_address
    assert second.get_status()["blobs"] == 1
    status = second.get_status()
    assert status["role"] == "storage"
    assert status["registered"] is False  # registration happens in run(), against a chain


def test_a_truncated_key_file_is_a_config_error(tmp_path: Path) -> None:
    config = host_config(tmp_path)
    home = Path(config.home)
    home.mkdir(parents=True)
    (home / KEY_FILE).write_bytes(b"short")
    with pytest.raises(ConfigError, match="storage.key"):
        StorageHost(config)


# -- the client with nothing to talk to ----------------------------------------------------


def test_the_client_reports_unavailable_storage() -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(StorageUnavailable) as refused:
        store_blob(
            [dead], b"blob", threshold=1, ledger_address=LEDGER, chain_id=CHAIN_ID, timeout=2.0
        )
    assert (refused.value.confirmed, refused.value.needed) == (0, 1)
    assert "0 of 1" in refused.value.message
    with pytest.raises(BlobUnavailable):
        fetch_blob([dead], keccak(b"blob"), timeout=2.0)
    with pytest.raises(BlobUnavailable):
        fetch_blob([], keccak(b"blob"), timeout=2.0)
    with pytest.raises(ConfigError):
        store_blob([], b"", threshold=1, ledger_address=LEDGER, chain_id=CHAIN_ID, timeout=1.0)
    with pytest.raises(ConfigError):
        store_blob([], b"x", threshold=0, ledger_address=LEDGER, chain_id=CHAIN_ID, timeout=1.0)
