"""Key-release contracts: contracts over any ECDSA-keyed asset, settled by handing over
private keys that were generated inside TEEs (see ``docs/keyrelease.md``).

Modules: ``errors`` (typed refusals), ``types`` (assets, chunks, requests, offers),
``bitcoin`` (P2WPKH derivation and sweeps), ``utxo_ledger`` (a local model of a
bitcoin node's UTXO set, not a node), ``matcher`` (the risk-managing matcher's
sans-I/O core), ``exchange`` (contract Z: the tit-for-tat swap and the time-locked
escrow, sans-I/O), ``swap_driver`` (the hosts' steps of the pairwise swaps, sans-I/O),
``vault`` (the client enclave's key vault), ``messages`` (the vault's and the
matcher's ECALL messages).
"""
