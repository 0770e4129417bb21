"""Pure facts about chains, which trusted code may import.

Nothing here performs I/O: it encodes and checks what a host hands an enclave.

* :mod:`sealbridge.chain.errors` -- typed errors (``ChainError``, ``TransactionReverted``…)
* :mod:`sealbridge.chain.abi` -- roles, signed-message digests, signing, ABI codec
* :mod:`sealbridge.chain.lightclient` -- header chains checked from an anchor
* :mod:`sealbridge.chain.proofs` -- ``eth_getProof`` account and storage proofs
* :mod:`sealbridge.chain.bls_onchain` -- BLS encodings the contracts verify
* :mod:`sealbridge.chain.anchor` -- the StateAnchor contract's digest and storage layout
* :mod:`sealbridge.chain.ledger` -- the ExecutionLedger's output submission, as a typed call

Talking to a node is :mod:`sealbridge.evm`. See ``docs/chain.md``.
"""
