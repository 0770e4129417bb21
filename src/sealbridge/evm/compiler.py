"""Compile the management contracts (Vyper 0.4) at run time.

Theory of operation: the ``.vy`` sources ship as package data under
``sealbridge/evm/contracts``. :func:`compile_contract` compiles one with the vyper
Python API and an explicit ``evm_version`` (``prague`` by default; both anvil and py-evm
0.12 implement Prague). Results are cached twice, both keyed by the SHA-256 of
(source, vyper version, evm version): in-process in a dict, and on disk as JSON under
``$SEALBRIDGE_CACHE_DIR/vyper`` (default ``~/.cache/sealbridge/vyper``). A corrupt or
unreadable disk entry is ignored and rewritten; the disk cache is only an accelerator.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from sealbridge.chain.errors import ContractCompileError
from sealbridge.core.encoding import Message

DEFAULT_EVM_VERSION = "prague"

CONTRACT_NAMES: tuple[str, ...] = (
    "NodeRegistry",
    "ContractRegistry",
    "CommandInbox",
    "ExecutionLedger",
    "GatekeeperCommittee",
    "HTLC",
    "GatewayEscrow",
    "PriceOracle",
    "DepositToken",
    "InsurancePool",
    "StateAnchor",
)


class CompiledContract(Message, frozen=True):
    """ABI (JSON text) and deployment bytecode of one compiled contract."""

    name: str
    abi_json: str
    bytecode: bytes
    source_hash: str
    evm_version: str

    @property
    def abi(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self.abi_json)
        return result


_MEMORY: dict[str, CompiledContract] = {}
_LOCK = threading.Lock()


def get_cache_dir() -> Path:
    """Directory of the on-disk compile cache."""
    root = os.environ.get("SEALBRIDGE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "sealbridge"
    return base / "vyper"


def get_contract_source(name: str) -> str:
    """The Vyper source of a management contract shipped with the package."""
    if name not in CONTRACT_NAMES:
        raise ContractCompileError(f"unknown management contract {name!r}")
    ref = resources.files("sealbridge.evm").joinpath("contracts", f"{name}.vy")
    return ref.read_text(encoding="utf-8")


def compute_source_hash(source: str, evm_version: str) -> str:
    import vyper

    h = hashlib.sha256()
    for part in (source, str(vyper.__version__), evm_version):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def compile_source(
    name: str, source: str, *, evm_version: str = DEFAULT_EVM_VERSION
) -> CompiledContract:
    """Compile ``source`` (cached in memory and on disk by source hash)."""
    key = compute_source_hash(source, evm_version)
    with _LOCK:
        hit = _MEMORY.get(key)
        if hit is not None:
            return hit
        compiled = _load_from_disk(key)
        if compiled is None:
            compiled = _compile(name, source, key, evm_version)
            _store_on_disk(compiled)
        _MEMORY[key] = compiled
        return compiled


def compile_contract(name: str, *, evm_version: str = DEFAULT_EVM_VERSION) -> CompiledContract:
    """Compile the packaged management contract ``name``."""
    return compile_source(name, get_contract_source(name), evm_version=evm_version)


def _compile(name: str, source: str, key: str, evm_version: str) -> CompiledContract:
    from vyper.compiler import compile_code
    from vyper.compiler.settings import Settings

    try:
        out = compile_code(
            source,
            contract_path=f"{name}.vy",
            output_formats=["abi", "bytecode"],
            settings=Settings(evm_version=evm_version),
        )
    except Exception as exc:  # vyper raises many exception types; report them uniformly
        raise ContractCompileError(f"cannot compile {name}: {exc}") from exc
    bytecode_hex = str(out["bytecode"])
    return CompiledContract(
        name=name,
        abi_json=json.dumps(out["abi"], sort_keys=True),
        bytecode=bytes.fromhex(bytecode_hex.removeprefix("0x")),
        source_hash=key,
        evm_version=evm_version,
    )


def _load_from_disk(key: str) -> CompiledContract | None:
    path = get_cache_dir() / f"{key}.json"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        compiled = msgspec.json.decode(data, type=CompiledContract)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return compiled if compiled.source_hash == key else None


def _store_on_disk(compiled: CompiledContract) -> None:
    directory = get_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{compiled.source_hash}.{os.getpid()}.tmp"
        tmp.write_bytes(msgspec.json.encode(compiled))
        tmp.replace(directory / f"{compiled.source_hash}.json")
    except OSError:
        pass  # the disk cache is optional
