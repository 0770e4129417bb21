"""Registration under the gatekeeper's policy (issue 14, item 5): real DCAP quotes are
evaluated in the registration path, and the lifetime of an approval is capped."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.keyservice.gatekeeper import Gatekeeper, KeyRequestRefused
from sealbridge.keyservice.messages import RegistrationRequest
from sealbridge.tee import errors as tee_errors
from sealbridge.tee.dcap import parse_dcap_quote
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import AttestationPolicy, devnet_policy
from tests.unit.test_tee_dcap import SGX_ADVISORIES, SGX_STATUS

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "attestation"
IN_WINDOW = 1750377600  # inside the sample quotes' collateral windows (see test_tee_dcap)
PLATFORM, PLATFORM_PUB = ed25519_keypair(b"p" * 32)
MEASUREMENT = bytes([1]) * 32
replace = msgspec.structs.replace


def context(now: int) -> EnclaveContext:
    return EnclaveContext(
        program="tests:Node",
        measurement=MEASUREMENT,
        platform_private_key=PLATFORM,
        clock=lambda: float(now),
    )


def gatekeeper(policy: AttestationPolicy, now: int) -> Gatekeeper:
    return Gatekeeper(enclave=context(now), policy=policy, measurement=MEASUREMENT)


def request(
    node: EnclaveContext, quote: bytes, collateral: bytes, expiry: int
) -> RegistrationRequest:
    return RegistrationRequest(
        role=2,
        node=node.identity,
        quote=quote,
        expiry=expiry,
        chain_id=31337,
        registry_address="0x" + "11" * 20,
        collateral=collateral,
    )


def hardware_policy(quote: bytes, **fields: object) -> AttestationPolicy:
    info = parse_dcap_quote(quote)
    return AttestationPolicy(
        allowed_measurements=[info.measurement],
        allowed_statuses=["UpToDate", SGX_STATUS],
        allowed_advisories=SGX_ADVISORIES,
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", ["tdx_quote", "sgx_quote"])
def test_a_real_dcap_quote_is_evaluated_and_refused_for_its_report_data(name: str) -> None:
    """Before, the registration path never passed collateral, so a hardware quote could
    not be verified there at all. Now its verdict is evaluated: the samples verify, and
    are refused for the precise reason -- their report data does not bind this node's
    keys -- not for being hardware quotes."""
    quote = (SAMPLES / name).read_bytes()
    collateral = (SAMPLES / f"{name}_collateral.json").read_bytes()
    node = context(IN_WINDOW)
    keeper = gatekeeper(hardware_policy(quote), IN_WINDOW)
    with pytest.raises(tee_errors.ReportDataMismatch):
        keeper.approve_registration(request(node, quote, collateral, IN_WINDOW + 3600), IN_WINDOW)
    with pytest.raises(tee_errors.CollateralError):  # no collateral: says so
        keeper.approve_registration(request(node, quote, b"", IN_WINDOW + 3600), IN_WINDOW)


def test_tdx_rtmrs_can_be_pinned() -> None:
    quote = (SAMPLES / "tdx_quote").read_bytes()
    collateral = (SAMPLES / "tdx_quote_collateral.json").read_bytes()
    rtmrs = parse_dcap_quote(quote).rtmrs
    assert len(rtmrs) == 192
    node = context(IN_WINDOW)
    wrong = gatekeeper(hardware_policy(quote, allowed_tdx_rtmrs=[bytes(192)]), IN_WINDOW)
    with pytest.raises(tee_errors.MeasurementRefused, match="RTMRs"):
        wrong.approve_registration(request(node, quote, collateral, IN_WINDOW + 60), IN_WINDOW)
    right = gatekeeper(hardware_policy(quote, allowed_tdx_rtmrs=[rtmrs]), IN_WINDOW)
    with pytest.raises(tee_errors.ReportDataMismatch):  # past the RTMR check
        right.approve_registration(request(node, quote, collateral, IN_WINDOW + 60), IN_WINDOW)


def test_the_registration_lifetime_is_capped_by_the_gatekeeper_s_policy() -> None:
    """Before, the host picked the expiry and nothing capped it."""
    now = 1_800_000_000
    policy = replace(devnet_policy(PLATFORM_PUB, [MEASUREMENT]), max_registration_seconds=86_400)
    keeper = gatekeeper(policy, now)
    node = context(now)
    quote = node.get_identity_quote()
    with pytest.raises(KeyRequestRefused, match="at most 86400s"):
        keeper.approve_registration(request(node, quote, b"", now + 10 * 365 * 86_400), now)
    approval = keeper.approve_registration(request(node, quote, b"", now + 86_400), now)
    assert approval.expiry == now + 86_400
    with pytest.raises(KeyRequestRefused, match="past"):
        keeper.approve_registration(request(node, quote, b"", now), now)
