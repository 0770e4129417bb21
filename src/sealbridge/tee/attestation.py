"""Quote verification under an explicit policy.

Theory of operation: :func:`verify_quote` takes the quote bytes, the policy, the time
``now`` (always an input; verification never reads a clock), optional DCAP collateral and
the report data the verifier expects (e.g. ``compute_report_data(node_keys)``), and either
returns an accepted :class:`Verdict` or raises the :class:`AttestationError` subclass that
says why not. The checks, in order (see ``tee.policy`` for the rules):

* DCAP (SGX/TDX): strict parse -> ``dcap-qvl`` signatures, chain and collateral at ``now``
  -> TCB status and advisories -> measurement (MRENCLAVE / MRTD) -> report data;
* simulated: parse -> platform signature -> the policy accepts simulation at all -> the
  platform key is trusted -> freshness of the timestamp -> TCB status -> measurement ->
  report data.

:func:`inspect_quote` runs the same checks but turns every refusal *after parsing* into a
``Verdict(accepted=False, reason=...)`` for tools such as ``sealbridge attest verify``; it
still raises :class:`QuoteFormatError` (nothing to report) and :class:`CollateralError`
for collateral that is missing or does not parse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sealbridge.tee.dcap import load_collateral, parse_dcap_quote, verify_dcap
from sealbridge.tee.errors import (
    AttestationError,
    CollateralError,
    MeasurementRefused,
    QuoteFormatError,
    QuoteSignatureError,
    ReportDataMismatch,
    SimulatedQuoteRefused,
    StaleQuote,
    TcbStatusRefused,
)
from sealbridge.tee.policy import (
    AttestationPolicy,
    Verdict,
    compute_tcb_refusal,
    is_measurement_allowed,
)
from sealbridge.tee.quote import is_sim_quote, parse_sim_quote, verify_sim_quote_signature

UNVERIFIED = "Unverified"


@dataclass
class _Facts:
    """What is known about a quote so far (filled in as checks pass)."""

    kind: str = ""
    status: str = UNVERIFIED
    advisories: list[str] = field(default_factory=list)
    measurement: bytes = b""
    report_data: bytes = b""
    notes: list[str] = field(default_factory=list)

    def get_verdict(self, *, accepted: bool, reason: str) -> Verdict:
        return Verdict(
            kind=self.kind,
            status=self.status,
            advisories=list(self.advisories),
            measurement=self.measurement,
            report_data=self.report_data,
            accepted=accepted,
            reason=reason,
        )


def _check_common(
    facts: _Facts, policy: AttestationPolicy, expected_report_data: bytes | None
) -> None:
    refusal = compute_tcb_refusal(policy, facts.status, facts.advisories)
    if refusal is not None:
        raise TcbStatusRefused(refusal)
    if not is_measurement_allowed(policy, facts.measurement):
        raise MeasurementRefused(
            f"{facts.kind} measurement 0x{facts.measurement.hex()} is not in allowed_measurements"
            + (
                " (the list is empty: nothing is allowed)"
                if not policy.allowed_measurements
                else ""
            )
        )
    if policy.any_measurement:
        facts.notes.append("measurement NOT checked (any_measurement)")
    if expected_report_data is not None:
        if bytes(expected_report_data) != facts.report_data:
            raise ReportDataMismatch(
                f"report data 0x{facts.report_data.hex()[:32]}… is not the expected "
                f"0x{bytes(expected_report_data).hex()[:32]}…"
            )
    else:
        facts.notes.append("report data not checked (none expected)")


def _check_dcap(
    quote: bytes,
    facts: _Facts,
    policy: AttestationPolicy,
    now: int,
    collateral: bytes | None,
    expected_report_data: bytes | None,
) -> None:
    info = parse_dcap_quote(quote)
    facts.kind = info.kind
    facts.measurement = info.measurement
    facts.report_data = info.report_data
    result = verify_dcap(quote, collateral, now=now)
    facts.status = result.status
    facts.advisories = result.advisories
    if (
        info.kind == "tdx"
        and policy.allowed_tdx_rtmrs
        and info.rtmrs not in policy.allowed_tdx_rtmrs
    ):
        raise MeasurementRefused(
            f"tdx RTMRs 0x{info.rtmrs.hex()[:32]}… are not in allowed_tdx_rtmrs"
        )
    _check_common(facts, policy, expected_report_data)


def _check_sim(
    quote: bytes,
    facts: _Facts,
    policy: AttestationPolicy,
    now: int,
    expected_report_data: bytes | None,
) -> None:
    parsed = parse_sim_quote(quote)
    body = parsed.body
    facts.kind = "simulated"
    facts.measurement = body.measurement
    facts.report_data = body.report_data
    verify_sim_quote_signature(parsed)
    if not policy.accept_simulated:
        raise SimulatedQuoteRefused(
            "simulated quote refused: this policy accepts hardware (DCAP) quotes only"
        )
    if body.platform_key not in policy.trusted_sim_platform_keys:
        raise QuoteSignatureError(
            f"simulated quote signed by untrusted platform key 0x{body.platform_key.hex()}"
        )
    age = int(now) - body.timestamp
    if age > policy.max_quote_age_seconds:
        raise StaleQuote(
            f"simulated quote is {age}s old (max_quote_age_seconds={policy.max_quote_age_seconds})"
        )
    if -age > policy.max_clock_skew_seconds:
        raise StaleQuote(f"simulated quote is dated {-age}s in the future")
    facts.status = body.tcb_status
    _check_common(facts, policy, expected_report_data)


def _run(
    quote: bytes,
    facts: _Facts,
    policy: AttestationPolicy,
    now: int,
    collateral: bytes | None,
    expected_report_data: bytes | None,
) -> Verdict:
    if not isinstance(quote, bytes | bytearray) or not quote:
        raise QuoteFormatError("quote must be non-empty bytes")
    quote = bytes(quote)
    if is_sim_quote(quote):
        _check_sim(quote, facts, policy, now, expected_report_data)
    else:
        _check_dcap(quote, facts, policy, now, collateral, expected_report_data)
    reason = "accepted"
    if facts.notes:
        reason += "; " + "; ".join(facts.notes)
    return facts.get_verdict(accepted=True, reason=reason)


def verify_quote(
    quote: bytes,
    *,
    policy: AttestationPolicy,
    now: int,
    collateral: bytes | None = None,
    expected_report_data: bytes | None = None,
) -> Verdict:
    """Return an accepted Verdict or raise the AttestationError subclass that says why not."""
    return _run(quote, _Facts(), policy, now, collateral, expected_report_data)


def inspect_quote(
    quote: bytes,
    *,
    policy: AttestationPolicy,
    now: int,
    collateral: bytes | None = None,
    expected_report_data: bytes | None = None,
) -> Verdict:
    """Like :func:`verify_quote`, but a refusal becomes ``Verdict(accepted=False, reason)``.

    Still raises QuoteFormatError (the quote does not parse) and CollateralError when the
    collateral of a DCAP quote is missing or malformed (nothing meaningful to report).
    """
    if collateral is not None and not is_sim_quote(bytes(quote[:8])):
        load_collateral(collateral)
    elif collateral is None and quote and not is_sim_quote(bytes(quote[:8])):
        parse_dcap_quote(bytes(quote))
        raise CollateralError("a DCAP quote needs collateral to verify")
    facts = _Facts()
    try:
        return _run(quote, facts, policy, now, collateral, expected_report_data)
    except AttestationError as exc:
        if not facts.kind:
            raise
        return facts.get_verdict(accepted=False, reason=f"{type(exc).__name__}: {exc.message}")
