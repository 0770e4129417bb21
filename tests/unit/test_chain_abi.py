"""Digests, signing, ABI codec, compile cache and address files (no chain needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_account import Account

from sealbridge.chain.abi import (
    AbiCodec,
    Role,
    compute_address,
    compute_contract_key_digest,
    compute_execution_digest,
    compute_registration_digest,
    recover_signer,
    sign_digest,
)
from sealbridge.chain.errors import ChainConfigError, ContractCompileError
from sealbridge.core.errors import EncodingError, InvalidSignature
from sealbridge.core.ids import keccak
from sealbridge.evm import compiler
from sealbridge.evm.management import ManagementAddresses

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_registration_digest_layout() -> None:
    ik, ek, qh, ms = (bytes([i]) * 32 for i in range(1, 5))
    enclave = compute_address(b"\x05" * 32)
    expected = keccak(
        encode(
            [
                "address",
                "uint256",
                "uint8",
                "bytes32",
                "bytes32",
                "address",
                "bytes32",
                "bytes32",
                "uint256",
            ],
            [REGISTRY, 31337, 2, ik, ek, enclave, qh, ms, 99],
        )
    )
    got = compute_registration_digest(
        registry=REGISTRY,
        chain_id=31337,
        role=Role.WORKER,
        identity_key=ik,
        encryption_key=ek,
        enclave_address=enclave,
        quote_hash=qh,
        measurement=ms,
        expiry=99,
    )
    assert got == expected
    other = compute_registration_digest(
        registry=REGISTRY,
        chain_id=1,
        role=Role.WORKER,
        identity_key=ik,
        encryption_key=ek,
        enclave_address=enclave,
        quote_hash=qh,
        measurement=ms,
        expiry=99,
    )
    assert other != got


def test_contract_key_and_output_digest_layout() -> None:
    cid, pub = b"\x01" * 32, b"\x02" * 32
    assert compute_contract_key_digest(
        contract_registry=REGISTRY,
        chain_id=7,
        contract_id=cid,
        contract_public_key=pub,
        message_key=b"\x04" * 32,
        wrapped_key=b"wk",
    ) == keccak(
        encode(
            ["address", "uint256", "bytes32", "bytes32", "bytes32", "bytes32"],
            [REGISTRY, 7, cid, pub, b"\x04" * 32, keccak(b"wk")],
        )
    )
    root = b"\x03" * 32
    tag = keccak(b"sealbridge/execution-output/v1")
    args = {
        "ledger": REGISTRY,
        "chain_id": 7,
        "contract_ids": [cid],
        "starts": [4],
        "end": 5,
        "end_hash": b"\x05" * 32,
        "state_roots": [root],
        "commands_applied": [9],
        "checkpoint_hash": bytes(32),
        "checkpoint_size": 0,
    }
    assert compute_execution_digest(**args) == keccak(  # type: ignore[arg-type]
        encode(
            [
                "address",
                "uint256",
                "bytes32",
                "bytes32[]",
                "uint256[]",
                "uint256",
                "bytes32",
                "bytes32[]",
                "uint256[]",
                "bytes32",
                "uint256",
            ],
            [REGISTRY, 7, tag, [cid], [4], 5, b"\x05" * 32, [root], [9], bytes(32), 0],
        )
    )
    with pytest.raises(ChainConfigError):
        compute_execution_digest(**{**args, "contract_ids": [b"short"]})  # type: ignore[arg-type]


def test_sign_and_recover_match_eth_account() -> None:
    key = os.urandom(32)
    digest = keccak(b"message")
    sig = sign_digest(digest, key)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert sig == bytes(Account.unsafe_sign_hash(digest, key).signature)
    assert recover_signer(digest, sig) == compute_address(key) == Account.from_key(key).address
    low_v = sig[:64] + bytes([sig[64] - 27])
    assert recover_signer(digest, low_v) == compute_address(key)
    with pytest.raises(InvalidSignature):
        recover_signer(digest, sig[:64])
    with pytest.raises(ChainConfigError):
        sign_digest(b"short", key)
    with pytest.raises(ChainConfigError):
        sign_digest(digest, b"\x00" * 32)


def test_abi_codec_round_trip() -> None:
    compiled = compiler.compile_contract("CommandInbox")
    codec = AbiCodec(compiled.abi)
    fn = codec.function("submit")
    assert fn.encode_call([b"\x01" * 32, b"ct"])[:4] == fn.selector
    with pytest.raises(ChainConfigError):
        fn.encode_call([b"\x01" * 32])
    with pytest.raises(ChainConfigError):
        fn.encode_call([b"\x01" * 32, "not bytes"])
    with pytest.raises(ChainConfigError):
        codec.function("nope")
    event = codec.event_by_name("Command")
    topics = [event.topic, b"\x07" * 32]
    data = encode(["uint256", "address", "bytes"], [3, REGISTRY, b"ct"])
    assert event.decode(topics, data) == {
        "contract_id": b"\x07" * 32,
        "seq": 3,
        "sender": REGISTRY,
        "ciphertext": b"ct",
    }


def test_compile_cache_memory_and_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALBRIDGE_CACHE_DIR", str(tmp_path))
    source = compiler.get_contract_source("CommandInbox") + "\n# cache test " + os.urandom(4).hex()
    first = compiler.compile_source("CommandInbox", source)
    assert first.evm_version == "prague"
    files = list((tmp_path / "vyper").glob("*.json"))
    assert [f.stem for f in files] == [first.source_hash]
    assert compiler.compile_source("CommandInbox", source) is first  # memory hit
    compiler._MEMORY.clear()
    assert compiler.compile_source("CommandInbox", source) == first  # disk hit
    compiler._MEMORY.clear()
    files[0].write_text("garbage")
    assert compiler.compile_source("CommandInbox", source) == first  # rebuilt
    json.loads(files[0].read_text())


def test_compile_errors_are_typed() -> None:
    with pytest.raises(ContractCompileError):
        compiler.compile_source("Broken", "this is not vyper")
    with pytest.raises(ContractCompileError):
        compiler.get_contract_source("Missing")


def test_all_contracts_compile_for_prague() -> None:
    for name in compiler.CONTRACT_NAMES:
        c = compiler.compile_contract(name)
        assert c.bytecode and c.abi and c.evm_version == "prague"


def test_management_addresses_json(tmp_path: Path) -> None:
    addrs = ManagementAddresses(
        chain_id=31337,
        node_registry=REGISTRY,
        contract_registry=REGISTRY,
        command_inbox=REGISTRY,
        execution_ledger=REGISTRY,
        deployed_at_block=1,
        evm_version="prague",
    )
    assert ManagementAddresses.from_json(addrs.to_json()) == addrs
    addrs.save(tmp_path / "a.json")
    assert ManagementAddresses.load(tmp_path / "a.json") == addrs
    with pytest.raises(EncodingError):
        ManagementAddresses.from_json('{"chain_id": "x"}')
