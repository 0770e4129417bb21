"""DCAP quote verification on real Intel samples, under explicit policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealbridge.tee.attestation import inspect_quote, verify_quote
from sealbridge.tee.dcap import INTEL_SGX_ROOT_CA_DER, parse_dcap_quote
from sealbridge.tee.errors import (
    AttestationError,
    CollateralError,
    MeasurementRefused,
    QuoteFormatError,
    QuoteSignatureError,
    ReportDataMismatch,
    SimulatedQuoteRefused,
    TcbStatusRefused,
)
from sealbridge.tee.policy import AttestationPolicy, default_policy

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "attestation"
IN_WINDOW = 1750377600  # 2025-06-20, inside the sgx_quote / tdx_quote collateral windows
OUTDATED_AT = 1771459200  # 2026-02-19, inside the tdx_quote_outdated collateral window
TDX_WINDOW = (1750329147, 1752919234)  # first and last second tdx_quote verifies (measured)
SGX_ADVISORIES = ["INTEL-SA-00289", "INTEL-SA-00615"]
SGX_STATUS = "ConfigurationAndSWHardeningNeeded"


def sample(name: str) -> tuple[bytes, bytes]:
    quote = (SAMPLES / name).read_bytes()
    collateral = (SAMPLES / f"{name}_collateral.json").read_bytes()
    return quote, collateral


@pytest.fixture(scope="module")
def tdx() -> tuple[bytes, bytes]:
    return sample("tdx_quote")


@pytest.fixture(scope="module")
def sgx() -> tuple[bytes, bytes]:
    return sample("sgx_quote")


def sgx_policy(measurement: bytes, advisories: list[str]) -> AttestationPolicy:
    return AttestationPolicy(
        allowed_measurements=[measurement],
        allowed_statuses=["UpToDate", SGX_STATUS],
        allowed_advisories=advisories,
    )


def test_samples_parse_to_their_claims(tdx: tuple[bytes, bytes], sgx: tuple[bytes, bytes]) -> None:
    t = parse_dcap_quote(tdx[0])
    s = parse_dcap_quote(sgx[0])
    assert (t.kind, len(t.measurement), len(t.report_data)) == ("tdx", 48, 64)
    assert (s.kind, len(s.measurement), len(s.report_data)) == ("sgx", 32, 64)
    assert s.report_data.startswith(b"Hello, world!")
    assert t.embedded_root_der == s.embedded_root_der == INTEL_SGX_ROOT_CA_DER


def test_tdx_sample_accepted_by_default_policy(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    mrtd = parse_dcap_quote(quote).measurement
    verdict = verify_quote(
        quote, policy=default_policy([mrtd]), now=IN_WINDOW, collateral=collateral
    )
    assert verdict.accepted
    assert (verdict.kind, verdict.status, verdict.advisories) == ("tdx", "UpToDate", [])
    assert verdict.measurement == mrtd


def test_tdx_sample_binds_report_data(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    info = parse_dcap_quote(quote)
    policy = default_policy([info.measurement])
    verdict = verify_quote(
        quote,
        policy=policy,
        now=IN_WINDOW,
        collateral=collateral,
        expected_report_data=info.report_data,
    )
    assert verdict.accepted and verdict.report_data == info.report_data
    with pytest.raises(ReportDataMismatch):
        verify_quote(
            quote,
            policy=policy,
            now=IN_WINDOW,
            collateral=collateral,
            expected_report_data=bytes(64),
        )


def test_sgx_sample_refused_by_default_policy(sgx: tuple[bytes, bytes]) -> None:
    quote, collateral = sgx
    mrenclave = parse_dcap_quote(quote).measurement
    with pytest.raises(TcbStatusRefused) as info:
        verify_quote(
            quote, policy=default_policy([mrenclave]), now=IN_WINDOW, collateral=collateral
        )
    message = str(info.value)
    assert SGX_STATUS in message
    assert all(a in message for a in SGX_ADVISORIES)


def test_sgx_sample_accepted_when_status_and_both_advisories_allowed(
    sgx: tuple[bytes, bytes],
) -> None:
    quote, collateral = sgx
    mrenclave = parse_dcap_quote(quote).measurement
    verdict = verify_quote(
        quote, policy=sgx_policy(mrenclave, SGX_ADVISORIES), now=IN_WINDOW, collateral=collateral
    )
    assert verdict.accepted
    assert (verdict.kind, verdict.status) == ("sgx", SGX_STATUS)
    assert sorted(verdict.advisories) == SGX_ADVISORIES


@pytest.mark.parametrize("allowed", [["INTEL-SA-00289"], ["INTEL-SA-00615"], []])
def test_sgx_sample_refused_when_an_advisory_is_not_allowed(
    sgx: tuple[bytes, bytes], allowed: list[str]
) -> None:
    quote, collateral = sgx
    mrenclave = parse_dcap_quote(quote).measurement
    with pytest.raises(TcbStatusRefused) as info:
        verify_quote(
            quote, policy=sgx_policy(mrenclave, allowed), now=IN_WINDOW, collateral=collateral
        )
    missing = [a for a in SGX_ADVISORIES if a not in allowed]
    assert all(a in str(info.value) for a in missing)


def test_sgx_sample_advisories_alone_do_not_allow_the_status(sgx: tuple[bytes, bytes]) -> None:
    quote, collateral = sgx
    policy = AttestationPolicy(
        allowed_measurements=[parse_dcap_quote(quote).measurement],
        allowed_advisories=SGX_ADVISORIES,
    )
    with pytest.raises(TcbStatusRefused, match="allowed_statuses"):
        verify_quote(quote, policy=policy, now=IN_WINDOW, collateral=collateral)


def test_outdated_tdx_sample_refused_with_reason() -> None:
    quote, collateral = sample("tdx_quote_outdated")
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    with pytest.raises(CollateralError, match="[Nn]o matching TCB level"):
        verify_quote(quote, policy=policy, now=OUTDATED_AT, collateral=collateral)


def test_wrong_measurement_refused(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    with pytest.raises(MeasurementRefused):
        verify_quote(
            quote, policy=default_policy([bytes(48)]), now=IN_WINDOW, collateral=collateral
        )


def test_empty_measurement_list_allows_nothing(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    with pytest.raises(MeasurementRefused, match="nothing is allowed"):
        verify_quote(quote, policy=default_policy(), now=IN_WINDOW, collateral=collateral)
    verdict = verify_quote(
        quote,
        policy=AttestationPolicy(allowed_measurements=[], any_measurement=True),
        now=IN_WINDOW,
        collateral=collateral,
    )
    assert verdict.accepted and "NOT checked" in verdict.reason


@pytest.mark.parametrize("now", [TDX_WINDOW[0] - 1, TDX_WINDOW[1] + 1, 0, 4102444800])
def test_outside_collateral_window_refused(tdx: tuple[bytes, bytes], now: int) -> None:
    quote, collateral = tdx
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    with pytest.raises(CollateralError, match=f"now={now}"):
        verify_quote(quote, policy=policy, now=now, collateral=collateral)


def test_collateral_window_edges_accept(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    for now in TDX_WINDOW:
        assert verify_quote(quote, policy=policy, now=now, collateral=collateral).accepted


def test_collateral_of_another_quote_refused(
    tdx: tuple[bytes, bytes], sgx: tuple[bytes, bytes]
) -> None:
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    with pytest.raises(AttestationError):
        verify_quote(tdx[0], policy=policy, now=IN_WINDOW, collateral=sgx[1])


def test_missing_or_malformed_collateral(tdx: tuple[bytes, bytes]) -> None:
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    for bad in (None, b"", b"{}", b"not json", b"\xff\xfe"):
        with pytest.raises(CollateralError):
            verify_quote(tdx[0], policy=policy, now=IN_WINDOW, collateral=bad)
    doc = json.loads(tdx[1])
    doc["tcb_info_signature"] = "00" * 64
    with pytest.raises(AttestationError):
        verify_quote(tdx[0], policy=policy, now=IN_WINDOW, collateral=json.dumps(doc).encode())


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"hello world" * 10, bytes(5000)])
def test_garbage_is_a_format_error(garbage: bytes, tdx: tuple[bytes, bytes]) -> None:
    with pytest.raises(QuoteFormatError):
        verify_quote(garbage, policy=default_policy(), now=IN_WINDOW, collateral=tdx[1])


def test_truncated_and_extended_quotes_refused(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    for bad in (quote[:-80], quote[:1000], quote + b"\x01", quote[:4936] + b"x"):
        with pytest.raises(AttestationError):
            verify_quote(bad, policy=policy, now=IN_WINDOW, collateral=collateral)


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# Offsets in the SGX v3 sample: header 0..48, report body 48..432 (MRENCLAVE at 112,
# report data at 368), signature data from 436 (ISV signature, attestation key, QE report
# and its signature, then the PCK chain as PEM from 1052, root CA from 3651).
# fmt: off
SGX_POSITIONS = [0, 2, 4, 8, 12, 30, 60, 112, 200, 368, 400, 431, 436, 470, 540, 700, 950,
                 1048, 1049, 1079, 1100, 1500, 2500, 3651, 3700, 4000, 4598, 4599]
# TDX v4 sample: header 0..48, TD report 48..632 (MRTD at 184, report data at 568), sig
# length at 632, signatures from 636, outer cert type at 764, PEM chain from 1258, zero
# padding after 4936.
TDX_POSITIONS = [0, 4, 20, 48, 184, 230, 568, 600, 632, 636, 700, 764, 765, 800, 1254, 1255,
                 1285, 2000, 3004, 3987, 4500, 4935, 4936, 5005]
# fmt: on


@pytest.mark.parametrize("index", SGX_POSITIONS)
@pytest.mark.parametrize("bit", [0, 5])
def test_sgx_flipped_bit_refused(sgx: tuple[bytes, bytes], index: int, bit: int) -> None:
    quote, collateral = sgx
    policy = sgx_policy(parse_dcap_quote(quote).measurement, SGX_ADVISORIES)
    assert verify_quote(quote, policy=policy, now=IN_WINDOW, collateral=collateral).accepted
    with pytest.raises(AttestationError):
        verify_quote(flip(quote, index, bit), policy=policy, now=IN_WINDOW, collateral=collateral)


@pytest.mark.parametrize("index", TDX_POSITIONS)
@pytest.mark.parametrize("bit", [0, 6])
def test_tdx_flipped_bit_refused(tdx: tuple[bytes, bytes], index: int, bit: int) -> None:
    quote, collateral = tdx
    policy = default_policy([parse_dcap_quote(quote).measurement])
    with pytest.raises(AttestationError):
        verify_quote(flip(quote, index, bit), policy=policy, now=IN_WINDOW, collateral=collateral)


def test_flipped_report_data_and_signature_are_signature_errors(
    tdx: tuple[bytes, bytes],
) -> None:
    quote, collateral = tdx
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True)
    for index in (568, 184, 640):  # report data, MRTD, quote signature
        with pytest.raises(QuoteSignatureError):
            verify_quote(flip(quote, index), policy=policy, now=IN_WINDOW, collateral=collateral)


def test_every_byte_of_the_sgx_sample_is_covered(sgx: tuple[bytes, bytes]) -> None:
    """One flipped bit per byte position (rotating bit), whole quote: all refused, typed."""
    quote, collateral = sgx
    policy = AttestationPolicy(
        allowed_measurements=[],
        any_measurement=True,
        allowed_statuses=["UpToDate", SGX_STATUS],
        allowed_advisories=SGX_ADVISORIES,
    )
    accepted = []
    for index in range(len(quote)):
        try:
            verify_quote(
                flip(quote, index, index % 8), policy=policy, now=IN_WINDOW, collateral=collateral
            )
        except AttestationError:
            continue
        accepted.append(index)
    assert accepted == []


def test_dcap_quote_under_sim_only_policy_still_needs_hardware_rules(
    tdx: tuple[bytes, bytes],
) -> None:
    quote, collateral = tdx
    policy = AttestationPolicy(allowed_measurements=[], any_measurement=True, accept_simulated=True)
    assert verify_quote(quote, policy=policy, now=IN_WINDOW, collateral=collateral).kind == "tdx"


def test_inspect_returns_refusals_as_verdicts(sgx: tuple[bytes, bytes]) -> None:
    quote, collateral = sgx
    verdict = inspect_quote(quote, policy=default_policy(), now=IN_WINDOW, collateral=collateral)
    assert not verdict.accepted
    assert verdict.reason.startswith("TcbStatusRefused")
    assert verdict.status == SGX_STATUS and sorted(verdict.advisories) == SGX_ADVISORIES
    tampered = inspect_quote(
        flip(quote, 400), policy=default_policy(), now=IN_WINDOW, collateral=collateral
    )
    assert not tampered.accepted and tampered.status == "Unverified"
    assert tampered.reason.startswith("QuoteSignatureError")
    with pytest.raises(QuoteFormatError):
        inspect_quote(b"garbage", policy=default_policy(), now=IN_WINDOW, collateral=collateral)


def test_simulated_refused_error_is_not_raised_for_dcap(tdx: tuple[bytes, bytes]) -> None:
    quote, collateral = tdx
    try:
        verify_quote(quote, policy=default_policy(), now=IN_WINDOW, collateral=collateral)
    except SimulatedQuoteRefused:  # pragma: no cover - would be a kind confusion
        pytest.fail("a DCAP quote was treated as simulated")
    except MeasurementRefused:
        pass
