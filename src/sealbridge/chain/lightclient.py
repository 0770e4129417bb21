"""Light client of the worker runtime: check a block's header hash and receipts root.

Theory of operation
-------------------
The enclave does not trust its host for chain contents. For every block the host hands
over :class:`BlockEvidence`: all execution-layer header fields and all the block's
receipts. From these the runtime recomputes, without any I/O:

* the block hash, ``keccak256(rlp(header))``. The header list is the fifteen
  pre-London fields followed by the fork-specific optional ones (London's base fee,
  Shanghai's withdrawals root, Cancun's blob gas fields and parent beacon root,
  Prague's requests hash). The optional fields present must be a contiguous prefix of
  that list, as in every real header; fixed-size fields must have their exact length.
* the receipts root: the root of Ethereum's receipts trie (a ``HexaryTrie``), whose
  key is ``rlp(index)`` and whose value is the EIP-2718 receipt encoding
  (``rlp([status, cumulative_gas, bloom, logs])``, prefixed by the type byte for typed
  transactions). The root commits to every receipt, its order and every log in it.

:func:`verify_block` checks the hash against ``expected_hash`` (when the caller knows
it), the header's parent link (when given) and the receipts root; only then does it
return a :class:`VerifiedBlock` whose logs carry ``(tx_index, log_index)`` with the
log index counted across the whole block, as ``eth_getLogs`` reports it. A host that
drops, injects, reorders or alters a log or a receipt changes the receipts root; one
that alters any header field changes the hash, which no longer links to the chain.

:class:`HeaderChain` is the sans-I/O tracker built on this: from a trusted anchor
``(number, hash)`` it accepts exactly the next block whose parent hash is the last
verified hash, and advances only when every check passed (a failure changes nothing).
What this proves is bounded: the hash links prove that every accepted block descends
from the anchor, not that the chain's consensus produced it (no proof of stake or work
is checked here). A host can fabricate a well-formed child of the last verified block;
it is exposed as soon as a hash known from elsewhere (a later trusted checkpoint, an
attested tip) is compared with the chain, because a fabricated block's descendants
can never link to the real chain. Trusting the anchor and that later comparison is the
caller's concern.

Errors are :class:`LightClientError` subclasses (remote: the evidence is at fault) and
say what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp
from trie.hexary import HexaryTrie

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, RemoteProtocolError
from sealbridge.core.ids import keccak

HASH_SIZE = 32
ADDRESS_SIZE = 20
BLOOM_SIZE = 256
NONCE_SIZE = 8
MAX_TOPICS = 4
MAX_TX_TYPE = 0x7F  # EIP-2718: a typed envelope's first byte is below 0x80
_UINT256_LIMIT = 1 << 256

EMPTY_TRIE_ROOT: bytes = bytes(HexaryTrie.BLANK_NODE_HASH)
"""Root of an empty trie (``keccak256(rlp(b""))``): the receipts root of a block
without transactions."""


# ----------------------------------------------------------------------------- errors


class LightClientError(RemoteProtocolError):
    """Block evidence failed a light-client check."""

    code = "light_client"


class EvidenceMalformed(LightClientError):
    """Evidence has a field of the wrong type, size or range, or an invalid field set."""

    code = "evidence_malformed"


class HeaderHashMismatch(LightClientError):
    """The header does not hash to the expected block hash."""

    code = "header_hash_mismatch"


class ReceiptsRootMismatch(LightClientError):
    """The receipts do not produce the header's receipts root."""

    code = "receipts_root_mismatch"


class BrokenHeaderLink(LightClientError):
    """The header is not the child of the block it must follow."""

    code = "broken_header_link"


# ----------------------------------------------------------------------------- messages


class HeaderFields(Message, frozen=True):
    """Every execution-layer header field, in RLP order (optional ones by fork)."""

    parent_hash: bytes
    ommers_hash: bytes
    coinbase: bytes
    state_root: bytes
    transactions_root: bytes
    receipts_root: bytes
    logs_bloom: bytes
    difficulty: int
    number: int
    gas_limit: int
    gas_used: int
    timestamp: int
    extra_data: bytes
    mix_hash: bytes
    nonce: bytes
    base_fee_per_gas: int | None = None  # London
    withdrawals_root: bytes | None = None  # Shanghai
    blob_gas_used: int | None = None  # Cancun
    excess_blob_gas: int | None = None
    parent_beacon_block_root: bytes | None = None
    requests_hash: bytes | None = None  # Prague


class EventLog(Message, frozen=True):
    """One log as a receipt holds it."""

    address: bytes
    topics: list[bytes]
    data: bytes


class ReceiptFields(Message, frozen=True):
    """The consensus fields of one transaction receipt (post-Byzantium: a status)."""

    tx_type: int
    status: int
    cumulative_gas_used: int
    logs_bloom: bytes
    logs: list[EventLog]


class BlockEvidence(Message, frozen=True):
    """What the host hands the enclave for one block."""

    header: HeaderFields
    receipts: list[ReceiptFields]


class VerifiedLog(Message, frozen=True):
    """A log whose inclusion in the block was checked; ``log_index`` is block-wide."""

    tx_index: int
    log_index: int
    address: bytes
    topics: list[bytes]
    data: bytes


class VerifiedBlock(Message, frozen=True):
    """A block whose hash (and parent link, when asked) and receipts were checked."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    logs: list[VerifiedLog]


# ----------------------------------------------------------------------------- encoding

# (name, fixed size or None for a free-length byte string, or -1 for an integer)
_INT = -1
_FREE = 0
_REQUIRED: tuple[tuple[str, int], ...] = (
    ("parent_hash", HASH_SIZE),
    ("ommers_hash", HASH_SIZE),
    ("coinbase", ADDRESS_SIZE),
    ("state_root", HASH_SIZE),
    ("transactions_root", HASH_SIZE),
    ("receipts_root", HASH_SIZE),
    ("logs_bloom", BLOOM_SIZE),
    ("difficulty", _INT),
    ("number", _INT),
    ("gas_limit", _INT),
    ("gas_used", _INT),
    ("timestamp", _INT),
    ("extra_data", _FREE),
    ("mix_hash", HASH_SIZE),
    ("nonce", NONCE_SIZE),
)
_OPTIONAL: tuple[tuple[str, int], ...] = (
    ("base_fee_per_gas", _INT),
    ("withdrawals_root", HASH_SIZE),
    ("blob_gas_used", _INT),
    ("excess_blob_gas", _INT),
    ("parent_beacon_block_root", HASH_SIZE),
    ("requests_hash", HASH_SIZE),
)


def _hex(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else repr(value)


def _uint(value: object, what: str) -> bytes:
    """Minimal big-endian bytes of a non-negative integer below 2**256 (RLP scalar)."""
    if type(value) is not int or not 0 <= value < _UINT256_LIMIT:
        raise EvidenceMalformed(f"{what} must be an integer in [0, 2**256), found {value!r}")
    return value.to_bytes((value.bit_length() + 7) >> 3, "big")


def _bytes(value: object, size: int, what: str) -> bytes:
    if type(value) is not bytes:
        raise EvidenceMalformed(f"{what} must be bytes, found {type(value).__name__}")
    if size and len(value) != size:
        raise EvidenceMalformed(
            f"{what} must be {size} bytes, found {len(value)} bytes ({_hex(value)})"
        )
    return value


def _field(header: HeaderFields, name: str, kind: int) -> bytes:
    value = getattr(header, name)
    if kind == _INT:
        return _uint(value, f"header {name}")
    return _bytes(value, kind, f"header {name}")


def encode_header(header: HeaderFields) -> bytes:
    """The header's RLP encoding (checks field types, sizes and the optional prefix)."""
    if not isinstance(header, HeaderFields):
        raise EvidenceMalformed(f"expected HeaderFields, found {type(header).__name__}")
    items = [_field(header, name, kind) for name, kind in _REQUIRED]
    absent: str | None = None
    for name, kind in _OPTIONAL:
        if getattr(header, name) is None:
            absent = absent or name
        elif absent is not None:
            raise EvidenceMalformed(
                f"header {name} is present but the earlier optional field {absent} is "
                "absent: optional fields must be a contiguous prefix "
                f"({', '.join(n for n, _ in _OPTIONAL)})"
            )
        else:
            items.append(_field(header, name, kind))
    encoded: bytes = rlp.encode(items, infer_serializer=False)
    return encoded


def compute_header_hash(header: HeaderFields) -> bytes:
    """The block hash: ``keccak256(rlp(header))``."""
    return keccak(encode_header(header))


def _encode_log(log: EventLog, where: str) -> list[object]:
    if not isinstance(log, EventLog):
        raise EvidenceMalformed(f"{where} must be an EventLog, found {type(log).__name__}")
    topics = log.topics
    if type(topics) is not list or len(topics) > MAX_TOPICS:
        raise EvidenceMalformed(f"{where} must have a list of at most {MAX_TOPICS} topics")
    for i, topic in enumerate(topics):
        _bytes(topic, HASH_SIZE, f"{where} topic {i}")
    return [
        _bytes(log.address, ADDRESS_SIZE, f"{where} address"),
        topics,
        _bytes(log.data, _FREE, f"{where} data"),
    ]


def _encode_receipt(receipt: ReceiptFields, where: str) -> bytes:
    if not isinstance(receipt, ReceiptFields):
        raise EvidenceMalformed(f"{where} must be ReceiptFields, found {type(receipt).__name__}")
    tx_type = receipt.tx_type
    if type(tx_type) is not int or not 0 <= tx_type <= MAX_TX_TYPE:
        raise EvidenceMalformed(f"{where} type must be in [0, 0x7f], found {tx_type!r}")
    status = receipt.status
    if type(status) is not int or status not in (0, 1):
        raise EvidenceMalformed(f"{where} status must be 0 or 1, found {status!r}")
    logs = receipt.logs
    if type(logs) is not list:
        raise EvidenceMalformed(f"{where} logs must be a list, found {type(logs).__name__}")
    body: bytes = rlp.encode(
        [
            b"\x01" if status else b"",
            _uint(receipt.cumulative_gas_used, f"{where} cumulative_gas_used"),
            _bytes(receipt.logs_bloom, BLOOM_SIZE, f"{where} logs_bloom"),
            [_encode_log(log, f"{where} log {j}") for j, log in enumerate(logs)],
        ],
        infer_serializer=False,
    )
    return body if tx_type == 0 else bytes((tx_type,)) + body


def encode_receipt(receipt: ReceiptFields) -> bytes:
    """EIP-2718 receipt encoding: legacy ``rlp(fields)``, typed ``type || rlp(fields)``."""
    return _encode_receipt(receipt, "receipt")


# rlp(i) for the first indices: 0x80, 0x01 .. 0x7f, then 0x81 0x80 .. (computed once)
_INDEX_KEYS: list[bytes] = [rlp.encode(i) for i in range(1024)]


def _index_key(index: int) -> bytes:
    return _INDEX_KEYS[index] if index < len(_INDEX_KEYS) else rlp.encode(index)


def compute_receipts_root(receipts: Sequence[ReceiptFields]) -> bytes:
    """Root of the receipts trie (``rlp(index) -> encoded receipt``)."""
    if isinstance(receipts, str | bytes) or not isinstance(receipts, Sequence):
        raise EvidenceMalformed(f"receipts must be a sequence, found {type(receipts).__name__}")
    if not receipts:
        return EMPTY_TRIE_ROOT
    db: dict[bytes, bytes] = {}
    trie = HexaryTrie(db)
    for index, receipt in enumerate(receipts):
        value = _encode_receipt(receipt, f"receipt {index}")
        trie.set(_index_key(index), value)  # type: ignore[no-untyped-call]
    return bytes(trie.root_hash)


# ----------------------------------------------------------------------------- checks


def verify_block(
    evidence: BlockEvidence,
    *,
    expected_hash: bytes | None = None,
    parent_hash: bytes | None = None,
) -> VerifiedBlock:
    """Check ``evidence`` and return the block with its logs (see module docstring).

    Raises :class:`EvidenceMalformed`, :class:`HeaderHashMismatch` (``expected_hash``
    given and different), :class:`BrokenHeaderLink` (``parent_hash`` given and not the
    header's parent) or :class:`ReceiptsRootMismatch`.
    """
    if not isinstance(evidence, BlockEvidence):
        raise EvidenceMalformed(f"expected BlockEvidence, found {type(evidence).__name__}")
    header = evidence.header
    block_hash = compute_header_hash(header)
    number = header.number
    if expected_hash is not None and block_hash != expected_hash:
        raise HeaderHashMismatch(
            f"block {number}: expected hash {_hex(expected_hash)}, "
            f"found header hashing to {_hex(block_hash)}"
        )
    if parent_hash is not None and header.parent_hash != parent_hash:
        raise BrokenHeaderLink(
            f"block {number}: expected parent hash {_hex(parent_hash)}, "
            f"found {_hex(header.parent_hash)}"
        )
    receipts = evidence.receipts
    root = compute_receipts_root(receipts)
    if root != header.receipts_root:
        raise ReceiptsRootMismatch(
            f"block {number}: expected receipts root {_hex(header.receipts_root)} "
            f"(header), found {_hex(root)} from {len(receipts)} receipts"
        )
    logs: list[VerifiedLog] = []
    log_index = 0
    for tx_index, receipt in enumerate(receipts):
        for log in receipt.logs:
            logs.append(
                VerifiedLog(
                    tx_index=tx_index,
                    log_index=log_index,
                    address=log.address,
                    topics=list(log.topics),
                    data=log.data,
                )
            )
            log_index += 1
    return VerifiedBlock(
        number=number,
        hash=block_hash,
        parent_hash=header.parent_hash,
        timestamp=header.timestamp,
        logs=logs,
    )


class HeaderChain:
    """Sans-I/O tracker of a verified header chain from a trusted anchor."""

    def __init__(self, anchor_number: int, anchor_hash: bytes) -> None:
        if type(anchor_number) is not int or anchor_number < 0:
            raise ConfigError(f"anchor number must be an integer >= 0, got {anchor_number!r}")
        if type(anchor_hash) is not bytes or len(anchor_hash) != HASH_SIZE:
            raise ConfigError(f"anchor hash must be {HASH_SIZE} bytes, got {anchor_hash!r}")
        self._number = anchor_number
        self._hash = anchor_hash

    @property
    def number(self) -> int:
        """Number of the last verified block (the anchor before the first)."""
        return self._number

    @property
    def hash(self) -> bytes:
        """Hash of the last verified block (the anchor before the first)."""
        return self._hash

    def process(self, evidence: BlockEvidence) -> VerifiedBlock:
        """Verify the next block and advance to it; on any error nothing changes."""
        if not isinstance(evidence, BlockEvidence) or not isinstance(evidence.header, HeaderFields):
            raise EvidenceMalformed(f"expected BlockEvidence, found {type(evidence).__name__}")
        expected = self._number + 1
        if evidence.header.number != expected:
            raise BrokenHeaderLink(
                f"expected block {expected}, found block {evidence.header.number!r}"
            )
        block = verify_block(evidence, parent_hash=self._hash)
        self._number, self._hash = block.number, block.hash
        return block
