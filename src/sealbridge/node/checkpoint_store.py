"""Client side of checkpoint storage: put a blob on storage nodes, get it back.

Theory of operation
-------------------
:func:`store_blob` sends the blob to every storage node at once, one thread per node,
and waits at most ``timeout`` seconds for the answers. It keeps a receipt only when:

* it decodes as a canonical :class:`StorageReceipt`;
* it names this blob's hash and size;
* :func:`~sealbridge.storage.node.is_valid_receipt` accepts it, i.e. it is signed for this
  ledger and chain by the key its node id is derived from;
* no receipt for the same node was kept already, and the optional ``accept`` predicate
  (for example "active in the NodeRegistry") passes.

The receipts come back sorted by node id, because the ExecutionLedger requires strictly
increasing ids. When fewer than ``threshold`` survive, the call raises
:class:`StorageUnavailable`, which says how many confirmed and how many were needed.
A node that is down, slow, refuses or answers garbage only costs its own confirmation.

:func:`fetch_blob` asks the nodes one after another and returns the first bytes that
hash to the blob hash. A node that serves other bytes is skipped with a warning:
storage nodes are trusted for availability only, so the hash check is what makes a
fetched checkpoint safe to hand to an enclave.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import httpx

from sealbridge.chain.abi import checksum
from sealbridge.core.encoding import decode_canonical
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.core.ids import HASH_SIZE, short, to_hex
from sealbridge.net.http import NodeClient
from sealbridge.storage.errors import BlobUnavailable, StorageUnavailable
from sealbridge.storage.messages import StorageReceipt
from sealbridge.storage.node import compute_blob_hash, is_intact, is_valid_receipt

log = logging.getLogger("sealbridge.checkpoint_store")
BLOBS_PATH = "/v1/blobs"

__all__ = ["BlobUnavailable", "StorageUnavailable", "fetch_blob", "store_blob"]


def _post_blob(url: str, blob: bytes, timeout: float) -> StorageReceipt:
    with NodeClient(url, timeout=timeout) as client:
        answer = client.post_raw(BLOBS_PATH, blob)
    return decode_canonical(answer, StorageReceipt)


def store_blob(
    urls: Sequence[str],
    blob: bytes,
    *,
    threshold: int,
    ledger_address: str,
    chain_id: int,
    timeout: float,
    accept: Callable[[bytes], bool] | None = None,
) -> list[StorageReceipt]:
    """Store ``blob`` on the storage nodes at ``urls``; return the verified receipts
    sorted by node id, or raise StorageUnavailable when fewer than ``threshold``.

    ``accept(node_id)``, when given, must also hold for a receipt to count (e.g. a
    NodeRegistry check that the node is an active storage node)."""
    if threshold < 1:
        raise ConfigError(f"threshold must be at least 1, not {threshold}")
    if timeout <= 0:
        raise ConfigError(f"timeout must be positive, not {timeout}")
    if not blob:
        raise ConfigError("an empty blob cannot be stored")
    ledger = checksum(ledger_address)
    blob = bytes(blob)
    blob_hash, size = compute_blob_hash(blob), len(blob)
    unique_urls = list(dict.fromkeys(urls))
    answers: dict[str, StorageReceipt] = {}
    problems: list[str] = []
    if unique_urls:
        pool = ThreadPoolExecutor(max_workers=len(unique_urls), thread_name_prefix="store-blob")
        try:
            futures: dict[Future[StorageReceipt], str] = {
                pool.submit(_post_blob, url, blob, timeout): url for url in unique_urls
            }
            done, _ = wait(futures, timeout=timeout)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for future, url in futures.items():
            if future not in done:
                problems.append(f"{url}: no answer within {timeout:g}s")
                continue
            try:
                answers[url] = future.result()
            except SealbridgeError as exc:
                problems.append(f"{url}: {exc.message}")
            except httpx.InvalidURL as exc:
                problems.append(f"{url}: invalid URL ({exc})")
    kept: dict[bytes, StorageReceipt] = {}
    for url, receipt in answers.items():
        if receipt.blob_hash != blob_hash or receipt.size != size:
            problems.append(f"{url}: receipt for another blob or size")
        elif not is_valid_receipt(receipt, ledger, chain_id):
            problems.append(f"{url}: receipt signature does not match its node id")
        elif receipt.node_id in kept:
            problems.append(f"{url}: second receipt of node {short(receipt.node_id)}")
        elif accept is not None and not accept(receipt.node_id):
            problems.append(f"{url}: node {short(receipt.node_id)} not accepted")
        else:
            kept[receipt.node_id] = receipt
    for problem in problems:
        log.warning("blob %s: %s", short(blob_hash), problem)
    if len(kept) < threshold:
        raise StorageUnavailable(
            f"{len(kept)} of {len(unique_urls)} storage nodes confirmed blob "
            f"{short(blob_hash)} ({size} bytes); {threshold} needed"
            + (f" ({'; '.join(problems)})" if problems else ""),
            confirmed=len(kept),
            needed=threshold,
        )
    return [kept[node_id] for node_id in sorted(kept)]


def fetch_blob(urls: Sequence[str], blob_hash: bytes, *, timeout: float) -> bytes:
    """The bytes of ``blob_hash`` from the first node that serves them intact; nodes
    that fail or serve other bytes are skipped. BlobUnavailable if none has them."""
    if not isinstance(blob_hash, bytes | bytearray) or len(blob_hash) != HASH_SIZE:
        raise ConfigError(f"a blob hash is {HASH_SIZE} bytes")
    if timeout <= 0:
        raise ConfigError(f"timeout must be positive, not {timeout}")
    blob_hash = bytes(blob_hash)
    problems: list[str] = []
    for url in urls:
        try:
            with NodeClient(url, timeout=timeout) as client:
                data = client.get_bytes(f"{BLOBS_PATH}/{blob_hash.hex()}")
        except SealbridgeError as exc:
            problems.append(f"{url}: {exc.message}")
            continue
        except httpx.InvalidURL as exc:
            problems.append(f"{url}: invalid URL ({exc})")
            continue
        if not is_intact(blob_hash, data):
            log.warning(
                "storage node %s served %d bytes that do not hash to %s: tampered, skipped",
                url,
                len(data),
                to_hex(blob_hash),
            )
            problems.append(f"{url}: tampered bytes")
            continue
        return data
    raise BlobUnavailable(
        f"no storage node served blob {to_hex(blob_hash)}"
        + (f" ({'; '.join(problems)})" if problems else " (no nodes given)")
    )
