"""Typed wrapper of the StateAnchor contract (see :mod:`sealbridge.chain.anchor` for the
digest an enclave signs and the slots it proves)."""

from __future__ import annotations

from sealbridge.chain.abi import checksum
from sealbridge.chain.anchor import CONTRACT_NAME
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

__all__ = ["StateAnchor", "deploy_state_anchor"]


class StateAnchor(BoundContract):
    name = CONTRACT_NAME

    def advance(
        self, version: int, state_hash: bytes, signature: bytes, sender_key: bytes
    ) -> TxReceipt:
        """Relay the enclave's signed anchor of ``version`` (anyone may pay for it)."""
        return self._transact("advance", [version, state_hash, signature], sender_key)

    def get_anchor(self, signer: str) -> tuple[int, bytes]:
        """``(version, state_hash)`` anchored for ``signer``; ``(0, zeros)`` if none."""
        version, state_hash = self._call("anchors", checksum(signer))[0]
        return int(version), bytes(state_hash)


def deploy_state_anchor(adapter: ChainAdapter, deployer_key: bytes) -> str:
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    return adapter.deploy(deployer_key, compiled.bytecode, b"")
