"""EVM I/O: talking to EVM nodes, deploying and calling the management contracts.

Untrusted host-side code. Trusted code reads chains only through the pure checks in
``sealbridge.chain`` (ABI, headers, proofs); this package is how hosts reach a node.

Modules (import them directly; this package imports nothing heavy on its own):

* :mod:`sealbridge.evm.compiler` -- run-time Vyper compilation with caching
* :mod:`sealbridge.evm.adapter` -- ``ChainAdapter`` (JSON-RPC or in-process py-evm)
* :mod:`sealbridge.evm.anvil` -- ``AnvilNode`` (a real anvil process)
* :mod:`sealbridge.evm.management` -- deployment and typed contract wrappers
* :mod:`sealbridge.evm.follower` -- ``FollowerCore`` (sans-I/O) and ``BlockFollower``
* :mod:`sealbridge.evm.state_anchor`, ``committee``, ``escrow``, ``htlc``, ``insurance``,
  ``oracle``, ``token`` -- typed wrappers of the other contracts

See ``docs/chain.md``.
"""
