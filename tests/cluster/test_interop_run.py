"""The InterTrust scenario runner: reproducible runs, recorded signatures, key-mode costs."""

from __future__ import annotations

from py_ecc.bls.ciphersuites import G2ProofOfPossession as Reference

from sealbridge.interop.setup import KeyMode
from sealbridge.sim.delays import Uniform
from sealbridge.sim.interop_run import TransferPlan, compare_key_modes, run_interop
from sealbridge.sim.interop_scenario import AS_A, AS_B, InteropSpec

PLANS = [
    TransferPlan(src_as=AS_A, sender="alice", recipient="bob", amount=10, submit_at=0.2),
    TransferPlan(src_as=AS_B, sender="bob", recipient="carol", amount=3, submit_at=0.3),
]


def test_the_same_seed_gives_the_same_trace() -> None:
    spec = InteropSpec(seed=b"trace", mode=KeyMode.PER_TX, pairs=2)
    runs = [run_interop(spec, PLANS, delay=Uniform(0.002, 0.05)) for _ in range(2)]
    assert runs[0].simulator.trace_digest() == runs[1].simulator.trace_digest()
    assert [r.phases for r in runs[0].results] == [r.phases for r in runs[1].results]
    assert runs[0].signatures == runs[1].signatures
    other = run_interop(
        InteropSpec(seed=b"trace-2", mode=KeyMode.PER_TX, pairs=2),
        PLANS,
        delay=Uniform(0.002, 0.05),
    )
    assert other.simulator.trace_digest() != runs[0].simulator.trace_digest()


def test_phases_and_signatures_are_recorded_for_outside_verification() -> None:
    run = run_interop(InteropSpec(seed=b"record"), PLANS)
    assert run.violations == [] and run.committed == 2
    for result in run.results:
        phases = result.phases
        assert phases["accepted"] <= phases["setup"] <= phases["lock"]
        assert phases["lock"] <= phases["decide"] <= phases["attest"] <= phases["verify"]
        assert phases["verify"] <= phases["release"]
    claims = sorted((s["transfer"], s["claim"]) for s in run.signatures)
    expected = sorted((r.transfer_id, c) for r in run.results for c in ("locked", "paid"))
    assert claims == expected
    record = run.signatures[0]
    assert Reference.Verify(
        bytes.fromhex(record["group_public_key"]),
        bytes.fromhex(record["message"]),
        bytes.fromhex(record["signature"]),
    )  # py_ecc, the reference implementation, agrees


def test_per_transaction_keys_cost_more_than_epoch_keys() -> None:
    costs = compare_key_modes(n=4, transfers=4, seed=b"costs")
    per_tx, epoch = costs["per_tx"], costs["epoch"]
    assert per_tx.committed == epoch.committed == 4
    assert per_tx.keygens >= 2 * 4 and epoch.keygens <= 2  # one key per direction per epoch
    assert per_tx.encryptions > epoch.encryptions
    assert per_tx.key_messages > epoch.key_messages and per_tx.key_bytes > epoch.key_bytes
    assert per_tx.bytes > epoch.bytes and per_tx.messages > epoch.messages
    row = per_tx.as_row()
    assert row["mode"] == "per_tx" and row["keygens"] == per_tx.keygens
