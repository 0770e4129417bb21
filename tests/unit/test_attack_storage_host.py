"""Attacks on the storage node's host core (storage/host.py) and process wiring
(node/storage.py): hostile hashes, blobs at and over the limit, damaged files, a failed
write, a stopped or failed driver, keys that are not blobs, and concurrent stores.

No chain: the driver's chain executors are replaced by stubs where the loop runs.
Tests whose docstring starts with "Fixed --" demonstrated a weakness (they failed on
the code as first written; each one's fix is in the same change); the others
are regression tests of what holds."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sealbridge.chain.errors import TransactionReverted
from sealbridge.chain.registration import RegistryView
from sealbridge.core.encoding import decode
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.core.ids import keccak
from sealbridge.node.driver import DriverStopped
from sealbridge.node.storage import BlobWriteFailed, StorageHost
from sealbridge.storage import BadBlobHash, BlobRefused, StorageReceipt
from sealbridge.storage.host import StorageHostCore, StoreBlob, StoreRefused, get_blob_key
from sealbridge.storage.node import StorageNode, is_valid_receipt
from tests.unit.test_storage_node import host_config

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337


def blob_dir(host: StorageHost) -> Path:
    return Path(host.config.home) / "blobs"


def offline_chain(host: StorageHost) -> None:
    """Stub the chain executors: the registry shows the node inactive; a registration
    reverts (so the loop runs without any network)."""

    tips = iter(range(1, 1_000_000))  # the chain moves on: a block per read

    def read(query: Any) -> RegistryView:
        return RegistryView(tip=next(tips), active=False, expiry=0, next_era=0, next_slot=0)

    def submit(tx: Any) -> int:
        raise TransactionReverted("stake below minimum")

    host.driver.executors.read_chain = read
    host.driver.executors.submit_tx = submit


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


# -- hostile hashes and blobs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "../storage.key",
        "../" * 20 + "etc/passwd",
        "/etc/passwd",
        "..%2f" * 10,
        "0x" + "../" * 21 + "a",
        "a" * 63 + "/",
        "a" * 64 + "\n",
        "a" * 64 + "\x00",
        "\u0661" * 64,  # Arabic-Indic digit one: str.isdigit, not hex
        "\uff41" * 64,  # fullwidth a
        "0x" + "a" * 62,
        "a" * 10_000_000,
        "",
    ],
)
def test_fetch_refuses_every_non_hash_with_a_typed_error(tmp_path: Path, text: str) -> None:
    host = StorageHost(host_config(tmp_path))
    (Path(host.config.home) / "secret").write_bytes(b"not a blob")
    with pytest.raises(BadBlobHash):
        host.on_fetch(text)


def test_blobs_at_and_over_the_limit(tmp_path: Path) -> None:
    host = StorageHost(host_config(tmp_path, max_blob_size=64))
    receipt = decode(host.on_store(b"x" * 64), StorageReceipt)
    assert receipt.size == 64 and is_valid_receipt(receipt, LEDGER, CHAIN_ID)
    for blob in (b"x" * 65, b"y" * 4096, b""):
        with pytest.raises(BlobRefused):
            host.on_store(blob)
    assert [p.name for p in blob_dir(host).iterdir()] == [keccak(b"x" * 64).hex()]
    status = host.get_status()
    assert (status["blobs"], status["bytes"], status["blobs_stored"]) == (1, 64, 1)


def test_the_core_refuses_what_is_not_a_blob_and_changes_nothing() -> None:
    core = StorageHostCore(StorageNode(KEY, LEDGER, CHAIN_ID, 64), ttl=100)
    for thing in (None, "text", 5, ["a"], {"b": 1}, b"", b"z" * 65):
        effects, answer = core.on_store(thing)  # type: ignore[arg-type]
        assert effects == [] and isinstance(answer, StoreRefused)
    assert core.get_status()["blobs"] == 0 and core.stored == 0
    # a StoreBlob message with a hostile field is refused the same way (a Send, no Persist)
    effects = core.on_message(5, StoreBlob(blob=b""), 0.0)
    assert len(effects) == 1 and isinstance(effects[0].message, StoreRefused)


def test_the_host_persists_blobs_only(tmp_path: Path) -> None:
    host = StorageHost(host_config(tmp_path))
    digest = keccak(b"x").hex()
    for key in (
        "storage.key",
        "blob/../storage.key",
        "blob/../../x",
        "blob/" + digest.upper(),
        "blob/0x" + digest,
        "blob/" + digest + "/x",
        "blob/",
        "blobs/" + digest,
        "",
    ):
        with pytest.raises(ConfigError):
            host._persist(key, b"x")
    assert list(blob_dir(host).iterdir()) == []
    assert len((Path(host.config.home) / "storage.key").read_bytes()) == 32


def test_a_damaged_or_truncated_file_is_rewritten_on_the_next_store(tmp_path: Path) -> None:
    host = StorageHost(host_config(tmp_path))
    blob = os.urandom(500)
    first = host.on_store(blob)
    path = blob_dir(host) / keccak(blob).hex()
    for damage in (blob[:-1], blob[:-1] + bytes([blob[-1] ^ 1]), b""):
        path.write_bytes(damage)
        assert host.on_store(blob) == first
        assert path.read_bytes() == blob
    # a restarted host counts the damaged copy by its size, and repairs it when offered
    path.write_bytes(blob[:100])
    again = StorageHost(host.config)
    assert again.get_status()["bytes"] == 100
    assert again.on_store(blob) == first
    assert path.read_bytes() == blob and again.get_status()["bytes"] == 500


def test_a_damaged_blob_path_leaks_an_untyped_os_error(tmp_path: Path) -> None:
    """Fixed -- on_fetch catches only FileNotFoundError and _holds_intact the same: a blob
    path that cannot be read (here a directory in its place; on a real disk an EIO from a
    bad sector) raises a bare OSError out of the HTTP handler (a 500 with no typed body),
    and out of on_store through the driver."""
    host = StorageHost(host_config(tmp_path))
    digest = keccak(b"blob").hex()
    (blob_dir(host) / digest).mkdir()
    with pytest.raises(SealbridgeError):
        host.on_fetch(digest)


# -- a failed write ------------------------------------------------------------------------


def test_a_failed_write_still_counts_the_blob_as_held(tmp_path: Path) -> None:
    """Fixed -- StorageHostCore.on_store records the blob (``sizes``, ``stored``) before
    the driver has carried out its Persist. When the write fails (disk full), the caller
    gets BlobWriteFailed -- but the core now counts a blob that is not on disk:
    get_status reports it in ``blobs``/``bytes``/``blobs_stored``. A refused store must
    change nothing."""
    host = StorageHost(host_config(tmp_path))

    def disk_full(key: str, data: bytes) -> None:
        raise BlobWriteFailed("cannot store blob: [Errno 28] No space left on device")

    real = host.driver.executors.persist
    host.driver.executors.persist = disk_full
    with pytest.raises(BlobWriteFailed):
        host.on_store(b"lost")
    assert list(blob_dir(host).iterdir()) == []
    status = host.get_status()
    host.driver.executors.persist = real
    assert (status["blobs"], status["bytes"], status["blobs_stored"]) == (0, 0, 0), status


def test_a_store_after_a_failed_write_writes_the_blob(tmp_path: Path) -> None:
    """Regression: the next offer of the blob finds no intact copy and writes it."""
    host = StorageHost(host_config(tmp_path))
    real = host.driver.executors.persist

    def disk_full(key: str, data: bytes) -> None:
        raise BlobWriteFailed("disk full")

    host.driver.executors.persist = disk_full
    with pytest.raises(BlobWriteFailed):
        host.on_store(b"retry me")
    host.driver.executors.persist = real
    host.on_store(b"retry me")
    assert (blob_dir(host) / keccak(b"retry me").hex()).read_bytes() == b"retry me"


# -- a stopped or failed driver ---------------------------------------------------------------


def test_a_blob_offered_to_a_stopped_host_is_refused(tmp_path: Path) -> None:
    """Regression: once the loop ran and stopped, stores are refused with DriverStopped."""
    host = StorageHost(host_config(tmp_path))
    offline_chain(host)
    host.driver.start()
    wait_for(lambda: host.driver.is_running)
    host.stop()
    with pytest.raises(DriverStopped):
        host.on_store(b"too late")
    assert list(blob_dir(host).iterdir()) == []


def test_a_host_stopped_before_its_loop_ran_still_stores(tmp_path: Path) -> None:
    """Fixed -- StorageHost.stop() before run() (a process shutting down before its driver
    thread got going) leaves call() in its before-start branch: blobs are still written
    and receipts signed after stop."""
    host = StorageHost(host_config(tmp_path))
    host.stop()
    with pytest.raises(DriverStopped):
        host.on_store(b"after stop")
    assert list(blob_dir(host).iterdir()) == []


def test_get_status_fails_exactly_when_the_driver_has_failed(tmp_path: Path) -> None:
    """Fixed -- get_status asks the core through driver.call(), which raises DriverStopped
    once the loop is not running, so the branch that reports ``phase: failed`` with the
    driver's error is dead code: the status endpoint answers 500 ``node_stopped`` at the
    moment an operator needs the reason (the driver's docstring: "the process keeps
    serving its status"). Here the loop fails on a write error while handling a blob
    delivered as a message (the simulator's path)."""
    host = StorageHost(host_config(tmp_path))
    offline_chain(host)

    def broken_disk(key: str, data: bytes) -> None:
        raise OSError("I/O error")

    host.driver.executors.persist = broken_disk
    host.driver.start()
    wait_for(lambda: host.driver.is_running)
    host.driver.deliver(7, StoreBlob(blob=b"kills the loop"))
    wait_for(lambda: host.driver.status.phase == "failed")
    try:
        status = host.get_status()
    finally:
        host.stop()
    assert status["phase"] == "failed" and "I/O error" in status["error"]


def test_a_refused_registration_shows_in_the_status(tmp_path: Path) -> None:
    """Regression: a registration the registry refuses leaves the node ``failed`` with
    the reason in get_status, and blobs are still accepted (the docstring's promise)."""
    host = StorageHost(host_config(tmp_path))
    offline_chain(host)
    host.driver.start()
    try:
        wait_for(lambda: host.get_status()["phase"] == "failed")
        status = host.get_status()
        assert "stake below minimum" in status["error"]
        decode(host.on_store(b"still accepted"), StorageReceipt)
    finally:
        host.stop()


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("started", [False, True])
def test_concurrent_stores_of_one_blob_give_one_receipt_and_one_file(
    tmp_path: Path, started: bool
) -> None:
    """Regression: 32 threads offer the same blob (and 8 others offer distinct ones) at
    once, through the loop or before it started: identical receipts, intact files, exact
    counts, no temp files left."""
    host = StorageHost(host_config(tmp_path, max_blob_size=1 << 16))
    if started:
        offline_chain(host)
        host.driver.start()
        wait_for(lambda: host.driver.is_running)
    blob = os.urandom(40_000)
    others = [os.urandom(1000 + i) for i in range(8)]
    barrier = threading.Barrier(40)
    receipts: list[bytes] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def offer(data: bytes) -> None:
        try:
            barrier.wait(10)
            answer = host.on_store(data)
            with lock:
                receipts.append(answer) if data is blob else None
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=offer, args=(blob,)) for _ in range(32)]
    threads += [threading.Thread(target=offer, args=(o,)) for o in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        assert len(receipts) == 32 and len(set(receipts)) == 1
        assert is_valid_receipt(decode(receipts[0], StorageReceipt), LEDGER, CHAIN_ID)
        assert (blob_dir(host) / keccak(blob).hex()).read_bytes() == blob
        for o in others:
            assert (blob_dir(host) / keccak(o).hex()).read_bytes() == o
        status = host.get_status()
        assert status["blobs"] == 9 and status["blobs_stored"] == 9
        assert status["bytes"] == len(blob) + sum(map(len, others))
        assert not [p for p in blob_dir(host).iterdir() if p.name.endswith(".tmp")]
    finally:
        host.stop()


def test_the_blob_key_names_only_hashes() -> None:
    assert get_blob_key(b"\x01" * 32) == "blob/" + "01" * 32
