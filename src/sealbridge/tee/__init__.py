"""TEE layer: enclave backends, quotes and attestation policy.

Modules: ``errors`` (typed refusals), ``policy`` (AttestationPolicy, Verdict), ``dcap``
(SGX/TDX quotes via dcap-qvl), ``quote`` (simulated quotes and platform key),
``attestation`` (verify_quote / inspect_quote), ``enclave`` (EnclaveContext, NodeKeys,
EnclaveProgram), ``measurement`` (sim measurement), ``backend`` (EnclaveHandle, wire
frames), ``ecall`` (typed ECALL declarations: Ecall, get_ecall_table, call), ``dispatch``
(trusted-side ECALL dispatch), ``sim`` (SimBackend, InProcessBackend), ``sim_enclave``
(the enclave process), ``testing`` (test programs).
"""
