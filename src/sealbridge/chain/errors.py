"""Typed errors of the chain layer.

Whose fault, in the sense of :mod:`sealbridge.core.errors`:

* :class:`ChainError` (remote) -- the chain or the node answered something we refuse:
  a reverted transaction, an unreachable or misbehaving RPC endpoint, a reorganisation
  below the confirmation depth.
* :class:`ChainConfigError` (local) -- our configuration is wrong: no anvil binary,
  a contract that does not compile, an unknown dev account.
"""

from __future__ import annotations

from sealbridge.core.errors import ConfigError, RemoteProtocolError


class ChainError(RemoteProtocolError):
    """The chain, or the node serving it, failed or refused a request."""

    code = "chain"


class RpcError(ChainError):
    """The JSON-RPC endpoint could not be reached or returned an error."""

    code = "chain_rpc"


class TransactionReverted(ChainError):
    """A transaction (or a call) reverted; ``reason`` is the decoded revert string."""

    code = "chain_reverted"

    def __init__(self, reason: str, *, tx_hash: bytes | None = None) -> None:
        where = f" (tx 0x{tx_hash.hex()})" if tx_hash is not None else ""
        super().__init__(f"transaction reverted: {reason or '<no reason>'}{where}")
        self.reason = reason
        self.tx_hash = tx_hash


class ReorgDetected(ChainError):
    """A block already delivered was contradicted by the chain (its hash changed)."""

    code = "chain_reorg"

    def __init__(self, message: str, *, block_number: int) -> None:
        super().__init__(message)
        self.block_number = block_number


class AnvilError(ChainError):
    """The anvil process failed to start or to answer."""

    code = "chain_anvil"


class ChainConfigError(ConfigError):
    """Chain-layer configuration is invalid."""

    code = "chain_config"


class AnvilNotFound(ChainConfigError):
    """No anvil binary was found (env ``SEALBRIDGE_ANVIL``, node_modules, PATH)."""

    code = "chain_anvil_not_found"


class ContractCompileError(ChainConfigError):
    """A management contract's Vyper source failed to compile."""

    code = "chain_compile"
