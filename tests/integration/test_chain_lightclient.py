"""The runtime's light client: header hashes and receipts roots, checked against a REAL
anvil node (prague), plus adversarial evidence and pure unit tests without a node.

Anvil is required for the tests that take the ``chain`` fixture: if the binary is
missing, the fixture raises AnvilNotFound and those tests fail with that message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import rlp
from eth_account import Account

from sealbridge.chain.abi import AbiCodec
from sealbridge.chain.errors import ChainConfigError, ChainError, ReorgDetected, RpcError
from sealbridge.chain.lightclient import (
    EMPTY_TRIE_ROOT,
    BlockEvidence,
    BrokenHeaderLink,
    EventLog,
    EvidenceMalformed,
    HeaderChain,
    HeaderFields,
    HeaderHashMismatch,
    LightClientError,
    ReceiptFields,
    ReceiptsRootMismatch,
    VerifiedBlock,
    compute_header_hash,
    compute_receipts_root,
    encode_header,
    encode_receipt,
    verify_block,
)
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError, RemoteProtocolError
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.compiler import compile_source
from sealbridge.evm.follower import BlockFollower
from sealbridge.evm.management import deploy_management

replace = msgspec.structs.replace

EMITTER_SOURCE = """\
# pragma version ~=0.4.3

event Ping:
    sender: indexed(address)
    n: indexed(uint256)
    payload: Bytes[128]


@external
def emit_logs(n: uint256, payload: Bytes[128]):
    for i: uint256 in range(n, bound=8):
        log Ping(sender=msg.sender, n=i, payload=payload)


@external
def emit_raw(payload: Bytes[128]):
    raw_log([], payload)
    raw_log([keccak256(payload), keccak256("a"), keccak256("b"), keccak256("c")], payload)


@external
def fail():
    log Ping(sender=msg.sender, n=7, payload=b"lost")
    raise "refused"
"""

GWEI = 10**9
FIXED_SIZES = {
    "parent_hash": 32,
    "ommers_hash": 32,
    "coinbase": 20,
    "state_root": 32,
    "transactions_root": 32,
    "receipts_root": 32,
    "logs_bloom": 256,
    "mix_hash": 32,
    "nonce": 8,
    "withdrawals_root": 32,
    "parent_beacon_block_root": 32,
    "requests_hash": 32,
}
OPTIONAL = (
    "base_fee_per_gas",
    "withdrawals_root",
    "blob_gas_used",
    "excess_blob_gas",
    "parent_beacon_block_root",
    "requests_hash",
)


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Chain:
    node: AnvilNode
    adapter: ChainAdapter
    emitter: str
    busy_block: int  # the block holding several transactions of every type
    tip: int
    evidence: list[BlockEvidence]  # of blocks 0..tip
    hashes: list[bytes]  # RPC block hashes of 0..tip


def _send_raw(adapter: ChainAdapter, key: bytes, tx: dict[str, Any]) -> bytes:
    signed = Account.sign_transaction(tx, key)
    return bytes(adapter.web3.eth.send_raw_transaction(signed.raw_transaction))


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    node = AnvilNode()
    node.start()  # AnvilNotFound here fails every anvil test with a clear message
    try:
        yield _build_chain(node)
    finally:
        node.stop()


def _build_chain(node: AnvilNode) -> Chain:
    a = node.adapter()
    codec = AbiCodec(compile_source("LightClientEmitter", EMITTER_SOURCE).abi)
    compiled = compile_source("LightClientEmitter", EMITTER_SOURCE)
    emitter = a.deploy(a.dev_keys[0], compiled.bytecode)
    a.transact(
        a.dev_keys[0],
        to=emitter,
        data=codec.function("emit_logs").encode_call([3, b"solo"]),
    )
    a.mine(2)  # empty blocks

    legacy_key, access_key, eip1559_key, failing_key = a.dev_keys[5:9]
    legacy_nonce = a.get_nonce(a.address_of(legacy_key))
    access_nonce = a.get_nonce(a.address_of(access_key))
    common = {"chainId": a.chain_id, "gasPrice": 5 * GWEI, "value": 0}
    access_list = [{"address": emitter, "storageKeys": ["0x" + "00" * 32]}]
    a.set_automine(False)
    try:
        hashes = [
            _send_raw(  # type 0 with logs
                a,
                legacy_key,
                {
                    **common,
                    "nonce": legacy_nonce,
                    "gas": 200_000,
                    "to": emitter,
                    "data": codec.function("emit_logs").encode_call([2, b"legacy"]),
                },
            ),
            _send_raw(  # type 1 with a LOG0 and a LOG4
                a,
                access_key,
                {
                    **common,
                    "type": 1,
                    "nonce": access_nonce,
                    "gas": 200_000,
                    "to": emitter,
                    "data": codec.function("emit_raw").encode_call([b"access-list"]),
                    "accessList": access_list,
                },
            ),
            a.send_transaction(  # type 2, plain transfer, no logs
                eip1559_key, to=a.address_of(a.dev_keys[9]), data=b"", value=1, gas=21_000
            ),
            _send_raw(  # type 0 transfer, no logs
                a,
                legacy_key,
                {
                    **common,
                    "nonce": legacy_nonce + 1,
                    "gas": 21_000,
                    "to": a.address_of(a.dev_keys[9]),
                    "value": 2,
                    "data": b"",
                },
            ),
            a.send_transaction(  # type 2 that reverts on chain: status 0, its log dropped
                failing_key, to=emitter, data=codec.function("fail").encode_call([]), gas=100_000
            ),
            a.send_transaction(  # type 2 with many logs
                eip1559_key,
                to=emitter,
                data=codec.function("emit_logs").encode_call([5, b"many" * 20]),
                gas=300_000,
            ),
            _send_raw(  # type 1, successful call without logs
                a,
                access_key,
                {
                    **common,
                    "type": 1,
                    "nonce": access_nonce + 1,
                    "gas": 100_000,
                    "to": emitter,
                    "data": codec.function("emit_logs").encode_call([0, b""]),
                    "accessList": [],
                },
            ),
        ]
        a.mine(1)
    finally:
        a.set_automine(True)
    receipts = [a.wait_for_receipt(h, check=False) for h in hashes]
    (busy,) = {r.block_number for r in receipts}
    assert [r.status for r in receipts] == [1, 1, 1, 1, 0, 1, 1]
    a.mine(1)
    tip = a.get_block_number()
    numbers = list(range(tip + 1))
    return Chain(
        node=node,
        adapter=a,
        emitter=emitter,
        busy_block=busy,
        tip=tip,
        evidence=a.get_block_evidence(numbers),
        hashes=[h.hash for h in a.get_blocks(numbers)],
    )


# ----------------------------------------------------------------------------- helpers


def synthetic_header(number: int = 1, parent: bytes = b"\x11" * 32, **changes: Any) -> HeaderFields:
    fields: dict[str, Any] = {
        "parent_hash": parent,
        "ommers_hash": keccak(b"\xc0"),
        "coinbase": b"\x22" * 20,
        "state_root": b"\x33" * 32,
        "transactions_root": EMPTY_TRIE_ROOT,
        "receipts_root": EMPTY_TRIE_ROOT,
        "logs_bloom": bytes(256),
        "difficulty": 0,
        "number": number,
        "gas_limit": 30_000_000,
        "gas_used": 0,
        "timestamp": 1_700_000_000 + number,
        "extra_data": b"sealbridge",
        "mix_hash": b"\x44" * 32,
        "nonce": bytes(8),
        "base_fee_per_gas": 7,
        "withdrawals_root": EMPTY_TRIE_ROOT,
        "blob_gas_used": 0,
        "excess_blob_gas": 0,
        "parent_beacon_block_root": b"\x55" * 32,
        "requests_hash": b"\x66" * 32,
    }
    fields.update(changes)
    return HeaderFields(**fields)


def receipt(tx_type: int = 2, status: int = 1, logs: int = 1, gas: int = 21_000) -> ReceiptFields:
    return ReceiptFields(
        tx_type=tx_type,
        status=status,
        cumulative_gas_used=gas,
        logs_bloom=bytes(256),
        logs=[
            EventLog(address=bytes([i]) * 20, topics=[bytes([i]) * 32], data=b"d" * i)
            for i in range(logs)
        ],
    )


def synthetic_chain(length: int) -> list[BlockEvidence]:
    """Blocks 1..length linked by computed hashes, each with one receipt."""
    out: list[BlockEvidence] = []
    parent = b"\x00" * 32
    for n in range(1, length + 1):
        receipts = [receipt(logs=n % 3, gas=21_000 * n)]
        header = synthetic_header(n, parent, receipts_root=compute_receipts_root(receipts))
        out.append(BlockEvidence(header=header, receipts=receipts))
        parent = compute_header_hash(header)
    return out


def flip(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 1])


def with_receipts(evidence: BlockEvidence, receipts: list[ReceiptFields]) -> BlockEvidence:
    return replace(evidence, receipts=receipts)


# ----------------------------------------------------------------------------- pure units


def test_header_hash_is_keccak_of_rlp_with_inferred_sedes() -> None:
    header = synthetic_header(number=300, difficulty=2**70, gas_used=0)
    items = [getattr(header, f) for f in HeaderFields.__struct_fields__]
    # rlp's own inferred serializer (big_endian_int for ints) must agree with ours
    assert encode_header(header) == rlp.encode(items)
    assert compute_header_hash(header) == keccak(rlp.encode(items))


@pytest.mark.parametrize("present", range(len(OPTIONAL) + 1))
def test_optional_fields_by_fork(present: int) -> None:
    absent: dict[str, Any] = {name: None for name in OPTIONAL[present:]}
    header = synthetic_header(**absent)
    decoded = rlp.decode(encode_header(header))
    assert len(decoded) == 15 + present


def test_non_contiguous_optional_fields_are_malformed() -> None:
    with pytest.raises(EvidenceMalformed, match="contiguous"):
        compute_header_hash(synthetic_header(base_fee_per_gas=None))
    with pytest.raises(EvidenceMalformed, match="blob_gas_used"):
        compute_header_hash(synthetic_header(blob_gas_used=None))
    with pytest.raises(EvidenceMalformed, match="requests_hash"):
        compute_header_hash(synthetic_header(parent_beacon_block_root=None))


@pytest.mark.parametrize("name", sorted(FIXED_SIZES))
def test_wrong_header_field_length_is_malformed(name: str) -> None:
    size = FIXED_SIZES[name]
    for bad in (b"\x01" * (size - 1), b"\x01" * (size + 1)):
        with pytest.raises(EvidenceMalformed, match=f"{name} must be {size} bytes"):
            compute_header_hash(synthetic_header(**dict[str, Any]({name: bad})))


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("number", -1),
        ("gas_limit", 2**256),
        ("timestamp", "1"),
        ("difficulty", True),
        ("base_fee_per_gas", 1.5),
        ("parent_hash", "00" * 32),
        ("extra_data", bytearray(b"x")),
    ],
)
def test_wrong_header_field_type_is_malformed(name: str, bad: Any) -> None:
    with pytest.raises(EvidenceMalformed, match=name):
        compute_header_hash(synthetic_header(**{name: bad}))


def test_extra_data_has_no_fixed_size() -> None:
    short = compute_header_hash(synthetic_header(extra_data=b""))
    long = compute_header_hash(synthetic_header(extra_data=b"x" * 97))
    assert short != long


def test_receipt_encoding_eip2718() -> None:
    legacy = receipt(tx_type=0, logs=2)
    body = encode_receipt(legacy)
    status, gas, bloom, logs = rlp.decode(body)
    assert (status, gas, bloom) == (b"\x01", (21_000).to_bytes(2, "big"), bytes(256))
    assert logs == [[log.address, log.topics, log.data] for log in legacy.logs]
    for tx_type in (1, 2, 3, 4, 0x7F):
        assert encode_receipt(replace(legacy, tx_type=tx_type)) == bytes([tx_type]) + body
    failed = rlp.decode(encode_receipt(replace(legacy, status=0)))
    assert failed[0] == b""


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"status": 2}, "status"),
        ({"tx_type": 0x80}, "type"),
        ({"tx_type": -1}, "type"),
        ({"cumulative_gas_used": -5}, "cumulative_gas_used"),
        ({"logs_bloom": bytes(255)}, "logs_bloom"),
        ({"logs": [EventLog(address=bytes(19), topics=[], data=b"")]}, "address"),
        ({"logs": [EventLog(address=bytes(20), topics=[bytes(31)], data=b"")]}, "topic 0"),
        ({"logs": [EventLog(address=bytes(20), topics=[bytes(32)] * 5, data=b"")]}, "topics"),
        ({"logs": [EventLog(address=bytes(20), topics=[], data="x")]}, "data"),  # type: ignore[arg-type]
    ],
)
def test_malformed_receipt(changes: dict[str, Any], match: str) -> None:
    bad = replace(receipt(), **changes)
    with pytest.raises(EvidenceMalformed, match=match):
        encode_receipt(bad)
    with pytest.raises(EvidenceMalformed, match="receipt 1"):
        compute_receipts_root([receipt(), bad])


def test_receipts_root_of_empty_and_single_receipt() -> None:
    assert compute_receipts_root([]) == EMPTY_TRIE_ROOT == keccak(rlp.encode(b""))
    one = receipt(logs=2)
    # one leaf: hex-prefix key of rlp(0) = 0x80 is 0x20 0x80 (even leaf), value the receipt
    assert compute_receipts_root([one]) == keccak(rlp.encode([b"\x20\x80", encode_receipt(one)]))


def test_receipts_root_commits_to_order_and_content() -> None:
    receipts = [receipt(tx_type=i % 3, logs=i % 4, gas=21_000 * (i + 1)) for i in range(130)]
    root = compute_receipts_root(receipts)
    swapped = [receipts[1], receipts[0], *receipts[2:]]
    assert compute_receipts_root(swapped) != root
    assert compute_receipts_root(receipts[:-1]) != root
    assert compute_receipts_root(tuple(receipts)) == root
    with pytest.raises(EvidenceMalformed):
        compute_receipts_root(b"not receipts")  # type: ignore[arg-type]


def test_verify_block_numbers_logs_across_the_block() -> None:
    receipts = [receipt(logs=2), receipt(logs=0), receipt(logs=3)]
    header = synthetic_header(receipts_root=compute_receipts_root(receipts))
    evidence = BlockEvidence(header=header, receipts=receipts)
    block = verify_block(evidence, expected_hash=compute_header_hash(header))
    assert block == VerifiedBlock(
        number=header.number,
        hash=compute_header_hash(header),
        parent_hash=header.parent_hash,
        timestamp=header.timestamp,
        logs=block.logs,
    )
    assert [(log.tx_index, log.log_index) for log in block.logs] == [
        (0, 0),
        (0, 1),
        (2, 2),
        (2, 3),
        (2, 4),
    ]
    assert [log.data for log in block.logs] == [b"", b"d", b"", b"d", b"dd"]


def test_errors_are_typed_remote_and_name_both_values() -> None:
    header = synthetic_header()
    evidence = BlockEvidence(header=header, receipts=[])
    wrong = b"\xab" * 32
    with pytest.raises(HeaderHashMismatch) as info:
        verify_block(evidence, expected_hash=wrong)
    assert isinstance(info.value, LightClientError)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.code == "header_hash_mismatch"
    assert "0x" + wrong.hex() in info.value.message
    assert "0x" + compute_header_hash(header).hex() in info.value.message
    with pytest.raises(BrokenHeaderLink) as link:
        verify_block(evidence, parent_hash=wrong)
    assert link.value.code == "broken_header_link"
    assert "0x" + wrong.hex() in link.value.message
    assert "0x" + header.parent_hash.hex() in link.value.message
    with pytest.raises(ReceiptsRootMismatch) as root:
        verify_block(with_receipts(evidence, [receipt()]))
    assert root.value.code == "receipts_root_mismatch"
    assert "0x" + EMPTY_TRIE_ROOT.hex() in root.value.message
    assert "0x" + compute_receipts_root([receipt()]).hex() in root.value.message
    assert EvidenceMalformed("x").code == "evidence_malformed"
    assert LightClientError("x").code == "light_client"


def test_header_chain_advances_and_refuses_without_change() -> None:
    blocks = synthetic_chain(6)
    chain = HeaderChain(0, blocks[0].header.parent_hash)
    for evidence in blocks[:3]:
        verified = chain.process(evidence)
        assert (chain.number, chain.hash) == (verified.number, verified.hash)
    state = (chain.number, chain.hash)
    bad = [
        (blocks[4], BrokenHeaderLink),  # skips a block
        (blocks[2], BrokenHeaderLink),  # replays the last one
        (replace(blocks[3], header=replace(blocks[3].header, parent_hash=b"\x01" * 32)),
         BrokenHeaderLink),
        (with_receipts(blocks[3], []), ReceiptsRootMismatch),
        (replace(blocks[3], header=replace(blocks[3].header, nonce=b"\x00")), EvidenceMalformed),
    ]  # fmt: skip
    for evidence, error in bad:
        with pytest.raises(error):
            chain.process(evidence)
        assert (chain.number, chain.hash) == state
    chain.process(blocks[3])
    assert chain.number == 4


def test_header_chain_anchor_is_validated() -> None:
    with pytest.raises(ConfigError):
        HeaderChain(-1, bytes(32))
    with pytest.raises(ConfigError):
        HeaderChain(0, bytes(31))


def test_forged_child_links_but_the_real_successor_then_breaks() -> None:
    """The limit of a hash chain: a forged child of the last verified block is accepted
    (no consensus proof is checked), and the real chain can never continue from it."""
    real = synthetic_chain(3)
    chain = HeaderChain(1, compute_header_hash(real[0].header))
    forged_receipts = [receipt(logs=4)]
    forged_header = replace(real[1].header, receipts_root=compute_receipts_root(forged_receipts))
    forged = chain.process(BlockEvidence(header=forged_header, receipts=forged_receipts))
    assert forged.hash != compute_header_hash(real[1].header)
    with pytest.raises(BrokenHeaderLink):
        chain.process(real[2])


def test_evidence_survives_canonical_encoding() -> None:
    (evidence,) = synthetic_chain(1)
    assert decode(encode(evidence), BlockEvidence) == evidence
    verify_block(decode(encode(evidence), BlockEvidence))


# ----------------------------------------------------------------------------- anvil


def test_every_block_hash_matches_the_node(chain: Chain) -> None:
    assert len(chain.evidence) == chain.tip + 1 >= 7
    for number, (evidence, rpc_hash) in enumerate(zip(chain.evidence, chain.hashes, strict=True)):
        assert evidence.header.number == number
        assert compute_header_hash(evidence.header) == rpc_hash, f"block {number}"
    genesis = chain.evidence[0].header
    assert genesis.requests_hash is not None  # prague: every optional field present
    assert chain.evidence[0].receipts == []


def test_every_receipts_root_matches_the_header(chain: Chain) -> None:
    for evidence in chain.evidence:
        assert compute_receipts_root(evidence.receipts) == evidence.header.receipts_root
    busy = chain.evidence[chain.busy_block].receipts
    # anvil orders a block by priority fee (then each sender's nonce), not by arrival
    assert sorted(r.tx_type for r in busy) == [0, 0, 1, 1, 2, 2, 2]
    assert sorted(r.status for r in busy) == [0, 1, 1, 1, 1, 1, 1]
    assert sorted(len(r.logs) for r in busy) == [0, 0, 0, 0, 2, 2, 5]
    gas = [r.cumulative_gas_used for r in busy]
    assert gas == sorted(gas)
    topic_counts = {len(log.topics) for r in busy for log in r.logs}
    assert {0, 3, 4} <= topic_counts


def test_verified_logs_equal_eth_getlogs(chain: Chain) -> None:
    raw = chain.adapter.web3.eth.get_logs({"fromBlock": 0, "toBlock": chain.tip})
    expected = [
        (
            int(log["blockNumber"]),
            int(log["transactionIndex"]),
            int(log["logIndex"]),
            bytes.fromhex(str(log["address"])[2:]),
            [bytes(t) for t in log["topics"]],
            bytes(log["data"]),
        )
        for log in raw
    ]
    got = []
    for evidence, rpc_hash in zip(chain.evidence, chain.hashes, strict=True):
        block = verify_block(evidence, expected_hash=rpc_hash)
        got += [
            (block.number, v.tx_index, v.log_index, v.address, v.topics, v.data) for v in block.logs
        ]
    assert len(expected) >= 12
    assert sorted(got, key=lambda x: x[:3]) == sorted(expected, key=lambda x: x[:3])
    assert len({entry[1] for entry in got if entry[0] == chain.busy_block}) == 3


def test_header_chain_follows_the_node_from_genesis(chain: Chain) -> None:
    headers = HeaderChain(0, chain.hashes[0])
    for evidence in chain.evidence[1:]:
        block = headers.process(evidence)
        assert block.hash == chain.hashes[block.number]
    assert (headers.number, headers.hash) == (chain.tip, chain.hashes[-1])


def _busy(chain: Chain) -> tuple[BlockEvidence, bytes]:
    return chain.evidence[chain.busy_block], chain.hashes[chain.busy_block]


def _index(evidence: BlockEvidence, *, logs: int = -1, status: int = -1) -> int:
    """Index of the first receipt with that many logs / that status."""
    for i, r in enumerate(evidence.receipts):
        if (logs < 0 or len(r.logs) == logs) and (status < 0 or r.status == status):
            return i
    raise LookupError("no such receipt")


def _with_log_change(evidence: BlockEvidence, index: int, logs: list[EventLog]) -> BlockEvidence:
    receipts = list(evidence.receipts)
    receipts[index] = replace(receipts[index], logs=logs)
    return with_receipts(evidence, receipts)


def test_tampered_receipts_are_refused(chain: Chain) -> None:
    evidence, block_hash = _busy(chain)
    receipts = evidence.receipts
    i_many, i_two = _index(evidence, logs=5), _index(evidence, logs=2)
    i_none, i_failed = _index(evidence, logs=0, status=1), _index(evidence, status=0)
    many, two = receipts[i_many].logs, receipts[i_two].logs
    gas = receipts[i_none].cumulative_gas_used
    forged_log = EventLog(address=bytes.fromhex(chain.emitter[2:]), topics=[], data=b"mint")

    def changed(changes: dict[int, dict[str, Any]]) -> BlockEvidence:
        out = [replace(r, **changes.get(i, {})) for i, r in enumerate(receipts)]
        return with_receipts(evidence, out)

    swapped = list(receipts)
    swapped[i_many], swapped[i_none] = swapped[i_none], swapped[i_many]
    tampered = {
        "drop a log": changed({i_many: {"logs": many[:2] + many[3:]}}),
        "inject a log": changed({i_none: {"logs": [forged_log]}}),
        "reorder two logs": changed({i_many: {"logs": [many[1], many[0], *many[2:]]}}),
        "alter log data": changed({i_two: {"logs": [replace(two[0], data=b"x"), two[1]]}}),
        "drop a topic": changed(
            {i_two: {"logs": [two[0], replace(two[1], topics=two[1].topics[1:])]}}
        ),
        "move a log to another receipt": changed(
            {i_many: {"logs": many[:-1]}, i_none: {"logs": [many[-1]]}}
        ),
        "reorder two receipts": with_receipts(evidence, swapped),
        "drop a receipt": with_receipts(evidence, receipts[:-1]),
        "duplicate a receipt": with_receipts(evidence, [*receipts, receipts[-1]]),
        "flip a status": changed({i_failed: {"status": 1}}),
        "change a type": changed({i_none: {"tx_type": 3}}),
        "change gas used": changed({i_none: {"cumulative_gas_used": gas + 1}}),
    }
    for what, bad in tampered.items():
        try:
            verify_block(bad, expected_hash=block_hash)
        except ReceiptsRootMismatch:
            continue
        pytest.fail(f"{what}: accepted")
    assert verify_block(evidence, expected_hash=block_hash).hash == block_hash


def _altered(value: Any) -> Any:
    if isinstance(value, bytes):
        return flip(value) if value else b"\x01"
    return value + 1


@pytest.mark.parametrize("name", HeaderFields.__struct_fields__)
def test_any_altered_header_field_changes_the_hash(chain: Chain, name: str) -> None:
    evidence, block_hash = _busy(chain)
    header = replace(evidence.header, **{name: _altered(getattr(evidence.header, name))})
    bad = replace(evidence, header=header)
    with pytest.raises(HeaderHashMismatch):
        verify_block(bad, expected_hash=block_hash)
    previous = HeaderChain(chain.busy_block - 1, chain.hashes[chain.busy_block - 1])
    if name in ("parent_hash", "number"):
        with pytest.raises(BrokenHeaderLink):
            previous.process(bad)
    elif name == "receipts_root":
        with pytest.raises(ReceiptsRootMismatch):
            previous.process(bad)
    else:  # a forged child links; its hash differs from the node's, caught downstream
        assert previous.process(bad).hash != block_hash


def test_wrong_parent_and_unchanged_chain_on_failure(chain: Chain) -> None:
    n = chain.busy_block
    evidence = chain.evidence[n]
    with pytest.raises(BrokenHeaderLink):
        verify_block(evidence, parent_hash=chain.hashes[n - 2])
    headers = HeaderChain(n - 2, chain.hashes[n - 2])
    for bad in (evidence, chain.evidence[n - 2]):
        with pytest.raises(BrokenHeaderLink):
            headers.process(bad)
        assert (headers.number, headers.hash) == (n - 2, chain.hashes[n - 2])
    wrong_anchor = HeaderChain(n - 1, chain.hashes[n - 2])
    with pytest.raises(BrokenHeaderLink):
        wrong_anchor.process(evidence)
    bad = _with_log_change(evidence, _index(evidence, logs=5), [])
    headers.process(chain.evidence[n - 1])
    with pytest.raises(ReceiptsRootMismatch):
        headers.process(bad)
    assert (headers.number, headers.hash) == (n - 1, chain.hashes[n - 1])
    assert headers.process(evidence).hash == chain.hashes[n]


def test_anvil_non_contiguous_and_wrong_lengths(chain: Chain) -> None:
    header = chain.evidence[chain.busy_block].header
    with pytest.raises(EvidenceMalformed):
        compute_header_hash(replace(header, withdrawals_root=None))
    with pytest.raises(EvidenceMalformed):
        compute_header_hash(replace(header, coinbase=header.coinbase + b"\x00"))
    with pytest.raises(EvidenceMalformed):
        compute_header_hash(replace(header, logs_bloom=header.logs_bloom[1:]))


# ----------------------------------------------------------------------------- adapter


def test_adapter_evidence_batches_and_parses(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    a = chain.adapter
    assert a.get_block_evidence([]) == []
    provider = a.web3.provider
    real = provider.make_batch_request  # type: ignore[attr-defined]
    calls: list[int] = []

    def legacy_without_type(requests: list[tuple[str, Any]]) -> Any:
        calls.append(len(requests))
        answers = real(requests)
        for answer in answers:
            result = answer.get("result")
            if isinstance(result, list):
                for raw in result:
                    if raw.get("type") == "0x0":
                        del raw["type"]  # older nodes omit a legacy receipt's type
        return answers

    monkeypatch.setattr(provider, "make_batch_request", legacy_without_type)
    numbers = [chain.busy_block, 0, chain.busy_block - 1]
    got = a.get_block_evidence(numbers)
    assert calls == [6]  # one round trip: header and receipts of each block
    assert got == [chain.evidence[n] for n in numbers]


def test_adapter_evidence_errors(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    a = chain.adapter
    with pytest.raises(ChainError, match="not found"):
        a.get_block_evidence([chain.tip + 100])
    with pytest.raises(ChainConfigError):
        a.get_block_evidence([-1])
    provider = a.web3.provider

    def failing(requests: list[tuple[str, Any]]) -> Any:
        return [{"jsonrpc": "2.0", "id": i, "error": {"code": -32000, "message": "boom"}}
                for i, _ in enumerate(requests)]  # fmt: skip

    monkeypatch.setattr(provider, "make_batch_request", failing)
    with pytest.raises(RpcError, match="boom"):
        a.get_block_evidence([1])
    monkeypatch.setattr(provider, "make_batch_request", lambda r: {"error": "no batches"})
    with pytest.raises(RpcError, match="no batches"):
        a.get_block_evidence([1])

    def bad_hex(requests: list[tuple[str, Any]]) -> Any:
        return [{"id": 0, "result": {"number": "12"}}, {"id": 1, "result": []}]

    monkeypatch.setattr(provider, "make_batch_request", bad_hex)
    with pytest.raises(ChainError):
        a.get_block_evidence([1])


def test_in_process_backend_cannot_supply_evidence() -> None:
    adapter = ChainAdapter.in_process(accounts=1)
    with pytest.raises(ChainError, match="JSON-RPC node"):
        adapter.get_block_evidence([0])


# ----------------------------------------------------------------------------- follower


def test_follower_with_evidence(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    a = chain.adapter
    addresses = deploy_management(a, a.dev_keys[0], 10**15)
    with pytest.raises(ChainConfigError):
        BlockFollower(a, addresses, with_evidence=True, skip_empty=True)
    start = chain.busy_block - 1
    plain = BlockFollower(a, addresses, start_block=start)
    assert all(b.evidence is None for b in plain.poll_until_caught_up())
    follower = BlockFollower(a, addresses, start_block=start, with_evidence=True)
    blocks = follower.poll_until_caught_up()
    assert [b.number for b in blocks] == list(range(start, a.get_block_number() + 1))
    headers = HeaderChain(start - 1, chain.hashes[start - 1])
    for block in blocks:
        assert block.evidence is not None
        verified = headers.process(block.evidence)
        assert verified.hash == block.hash
        assert [(e.tx_index, e.log_index) for e in block.events] == [
            (v.tx_index, v.log_index)
            for v in verified.logs
            if "0x" + v.address.hex() in {x.lower() for x in addresses.get_all()}
        ]

    a.mine(2)
    real = a.get_block_evidence
    monkeypatch.setattr(a, "get_block_evidence", lambda numbers: real([n - 1 for n in numbers]))
    before = follower.core.next_block
    with pytest.raises(ReorgDetected):
        follower.poll()
    assert follower.core.next_block == before
    monkeypatch.setattr(
        a,
        "get_block_evidence",
        lambda numbers: [
            replace(e, header=replace(e.header, extra_data=b"other")) for e in real(numbers)
        ],
    )
    with pytest.raises(ReorgDetected):
        follower.poll()
    monkeypatch.undo()
    assert [b.number for b in follower.poll()] == [before, before + 1]
