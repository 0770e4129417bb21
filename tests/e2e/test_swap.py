"""``sealbridge swap``: two anvil chains, three gateway enclaves (sim TEE processes),
one transfer committed and one aborted; every threshold signature in the JSON output is
checked with py_ecc, a BLS implementation the gateways do not use."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from py_ecc.bls import G2ProofOfPossession

pytestmark = pytest.mark.e2e


def run_swap(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "sealbridge.cli", "swap", "--json", "--block-time", "0.5", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def check_signatures(records: list[dict[str, Any]], group_key: str) -> int:
    checked = 0
    for record in records:
        for sig in record.get("signatures", []):
            assert sig["group_public_key"] == group_key
            assert sig["ciphersuite"] == "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
            public = bytes.fromhex(group_key[2:])
            message = bytes.fromhex(sig["message"][2:])
            signature = bytes.fromhex(sig["signature"][2:])
            assert G2ProofOfPossession.Verify(public, message, signature)
            assert not G2ProofOfPossession.Verify(public, message + b"x", signature)
            checked += 1
    return checked


def test_a_transfer_commits_on_both_chains() -> None:
    records = run_swap("--amount", "0.5")
    phases = [r["phase"] for r in records]
    assert phases == ["setup", "lock", "verify", "release", "commit", "result"]
    by_phase = {r["phase"]: r for r in records}
    group_key = by_phase["setup"]["detail"]["group_public_key"]
    assert by_phase["setup"]["detail"]["threshold"] == 2
    assert by_phase["release"]["detail"]["recipient_received_wei"] == 5 * 10**17
    assert by_phase["commit"]["detail"]["source_state"] == "COMMITTED"
    assert check_signatures(records, group_key) == 2  # release and commit
    result = by_phase["result"]
    assert result["outcome"] == "committed" and result["transactions"] == 3
    assert set(result["gas"]) == {"lock", "release", "commit"}


def test_without_a_release_the_gateways_abort_and_the_sender_is_refunded() -> None:
    records = run_swap("--amount", "0.25", "--abort")
    assert [r["phase"] for r in records] == ["setup", "lock", "abort", "result"]
    abort = records[2]["detail"]
    assert abort["source_state"] == "REFUNDED"
    assert abort["sender_refunded_wei"] == 25 * 10**16
    assert abort["released_on_destination"] is False
    assert check_signatures(records, records[0]["detail"]["group_public_key"]) == 1
    assert records[-1]["outcome"] == "aborted"


def test_bad_options_get_one_line_and_no_chain_starts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sealbridge.cli", "swap", "--threshold", "5", "--gateways", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0 and "threshold" in out.stderr
    assert "Traceback" not in out.stderr
