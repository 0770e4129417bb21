"""Orchestration of local networks: above the node processes, beside the client.

* :mod:`sealbridge.devnet.launcher` -- ``sealbridge devnet up``: anvil, management
  contracts, gatekeepers, workers, storage nodes as real processes
* :mod:`sealbridge.devnet.swap` -- two chains joined by a gateway committee
* :mod:`sealbridge.devnet.keyrelease` and :mod:`sealbridge.devnet.keyrelease_service` --
  the key-release deployment (vaults, matcher, oracle, insurance) and its HTTP service
* :mod:`sealbridge.devnet.utxo_ledger` -- a local model of a Bitcoin node's UTXO set
"""
