"""Chain layer: management contracts (Vyper), EVM adapter (web3.py), block follower.

Modules (import them directly; this package imports nothing heavy on its own):

* :mod:`sealbridge.chain.errors` -- typed errors (``ChainError``, ``TransactionReverted``…)
* :mod:`sealbridge.chain.abi` -- roles, signed-message digests, signing, ABI codec
* :mod:`sealbridge.chain.compiler` -- run-time Vyper compilation with caching
* :mod:`sealbridge.chain.adapter` -- ``ChainAdapter`` (JSON-RPC or in-process py-evm)
* :mod:`sealbridge.chain.anvil` -- ``AnvilNode`` (a real anvil process)
* :mod:`sealbridge.chain.management` -- deployment and typed contract wrappers
* :mod:`sealbridge.chain.follower` -- ``FollowerCore`` (sans-I/O) and ``BlockFollower``

See ``docs/chain.md``.
"""
