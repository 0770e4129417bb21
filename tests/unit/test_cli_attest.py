"""``sealbridge attest verify`` on the real DCAP samples and on simulated quotes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sealbridge.cli.attest import app
from sealbridge.tee.dcap import parse_dcap_quote
from sealbridge.tee.quote import compute_sim_quote, create_sim_platform, load_sim_platform_key

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "attestation"
AT = "1750377600"
runner = CliRunner()


def q(name: str) -> str:
    return str(SAMPLES / name)


def c(name: str) -> str:
    return str(SAMPLES / f"{name}_collateral.json")


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["verify", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_tdx_sample_accepted() -> None:
    code, verdict = run_json(q("tdx_quote"), "--collateral", c("tdx_quote"), "--at", AT)
    assert code == 0
    assert verdict["accepted"] is True
    assert (verdict["kind"], verdict["status"], verdict["advisories"]) == ("tdx", "UpToDate", [])
    assert set(verdict) == {
        "kind",
        "status",
        "advisories",
        "measurement",
        "report_data",
        "accepted",
        "reason",
    }
    assert "any_measurement" in str(verdict["reason"])


def test_tdx_sample_with_its_measurement() -> None:
    mrtd = parse_dcap_quote((SAMPLES / "tdx_quote").read_bytes()).measurement
    code, verdict = run_json(
        q("tdx_quote"), "--collateral", c("tdx_quote"), "--at", AT, "--measurement", mrtd.hex()
    )
    assert code == 0 and verdict["measurement"] == "0x" + mrtd.hex()
    code, verdict = run_json(
        q("tdx_quote"), "--collateral", c("tdx_quote"), "--at", AT, "--measurement", "00" * 48
    )
    assert code == 1 and str(verdict["reason"]).startswith("MeasurementRefused")


def test_sgx_sample_refused_by_default() -> None:
    code, verdict = run_json(q("sgx_quote"), "--collateral", c("sgx_quote"), "--at", AT)
    assert code == 1
    assert verdict["accepted"] is False
    assert verdict["status"] == "ConfigurationAndSWHardeningNeeded"
    assert str(verdict["reason"]).startswith("TcbStatusRefused")


def test_sgx_sample_accepted_with_both_advisories() -> None:
    code, verdict = run_json(
        q("sgx_quote"),
        "--collateral",
        c("sgx_quote"),
        "--at",
        AT,
        "--allow-advisory",
        "INTEL-SA-00289",
        "--allow-advisory",
        "INTEL-SA-00615",
    )
    assert code == 0 and verdict["accepted"] is True
    assert sorted(verdict["advisories"]) == ["INTEL-SA-00289", "INTEL-SA-00615"]


def test_sgx_sample_refused_with_one_advisory() -> None:
    code, verdict = run_json(
        q("sgx_quote"),
        "--collateral",
        c("sgx_quote"),
        "--at",
        AT,
        "--allow-advisory",
        "INTEL-SA-00289",
    )
    assert code == 1 and "INTEL-SA-00615" in str(verdict["reason"])


def test_outdated_tdx_sample_refused() -> None:
    code, verdict = run_json(
        q("tdx_quote_outdated"), "--collateral", c("tdx_quote_outdated"), "--at", "1771459200"
    )
    assert code == 1 and "TCB level" in str(verdict["reason"])


def test_rich_summary() -> None:
    result = runner.invoke(
        app, ["verify", q("sgx_quote"), "--collateral", c("sgx_quote"), "--at", AT]
    )
    assert result.exit_code == 1
    assert "REFUSED" in result.stdout and "INTEL-SA-00289" in result.stdout
    assert "measurement not checked" in result.stdout
    ok = runner.invoke(app, ["verify", q("tdx_quote"), "--collateral", c("tdx_quote"), "--at", AT])
    assert ok.exit_code == 0 and "ACCEPTED" in ok.stdout


def test_outside_window_refused() -> None:
    code, verdict = run_json(q("tdx_quote"), "--collateral", c("tdx_quote"), "--at", "1900000000")
    assert code == 1 and str(verdict["reason"]).startswith("CollateralError")


def one_line_error(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and stderr.count("\n") == 1
    assert "Traceback" not in stderr
    return stderr


def test_garbage_quote_exits_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not a quote" * 10)
    result = runner.invoke(app, ["verify", str(garbage), "--collateral", c("tdx_quote")])
    assert result.exit_code == 2
    assert "QuoteFormatError" in one_line_error(result)


@pytest.mark.parametrize("content", [b"{not json", b"{}", b"[1, 2]", b"\xff\xfe"])
def test_malformed_collateral_exits_2(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "collateral.json"
    bad.write_bytes(content)
    result = runner.invoke(app, ["verify", q("tdx_quote"), "--collateral", str(bad), "--at", AT])
    assert result.exit_code == 2
    assert "CollateralError" in one_line_error(result)


def test_unreadable_files_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["verify", str(tmp_path / "absent"), "--collateral", c("tdx_quote")]
    )
    assert result.exit_code == 2 and "cannot read quote file" in one_line_error(result)
    result = runner.invoke(app, ["verify", q("tdx_quote"), "--collateral", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read collateral file" in one_line_error(result)


def test_dcap_without_collateral_and_bad_hex_exit_2() -> None:
    result = runner.invoke(app, ["verify", q("tdx_quote")])
    assert result.exit_code == 2 and "--collateral" in one_line_error(result)
    result = runner.invoke(
        app, ["verify", q("tdx_quote"), "--collateral", c("tdx_quote"), "--measurement", "zz"]
    )
    assert result.exit_code == 2 and "hex" in one_line_error(result)


def test_simulated_quote(tmp_path: Path) -> None:
    pub = create_sim_platform(tmp_path / "platform.key")
    now = int(time.time())
    quote = compute_sim_quote(
        load_sim_platform_key(tmp_path / "platform.key"),
        measurement=bytes(32),
        report_data=bytes(64),
        timestamp=now,
    )
    path = tmp_path / "sim.quote"
    path.write_bytes(quote)
    code, verdict = run_json(str(path), "--at", str(now))
    assert code == 1 and str(verdict["reason"]).startswith("SimulatedQuoteRefused")
    code, verdict = run_json(str(path), "--at", str(now), "--trust-sim-platform", pub.hex())
    assert code == 0 and verdict["kind"] == "simulated"
