"""Cross-chain interoperability through TEE gateways.

* InterTrust between autonomous systems (BFT replica groups, :mod:`sealbridge.consensus`):
  :mod:`.gateway` (the gateway core), :mod:`.replica` (the replicas' interop side),
  :mod:`.setup` (gateway enclaves, attested cards, threshold keys dealt in the enclave),
  :mod:`.messages`, :mod:`.scenario` (building a two-AS deployment), :mod:`.errors`; the
  ledger operations are in :mod:`sealbridge.consensus.ledger` and the simulator runner in
  :mod:`sealbridge.sim.interop_run`. See ``docs/interop.md``.
* Gateway committees between EVM chains: :mod:`.evm_gateway` (``docs/evm-gateways.md``).

Nothing is imported here, so that loading one of these modules (in an enclave, say) does
not load the others.
"""
