"""Attestation policy and verdicts.

Theory of operation: a quote that verifies cryptographically is still only *evidence*;
whether we trust the node behind it is a decision written down in an
:class:`AttestationPolicy`, a canonical message so that every node can log, hash and
compare the exact policy it applied. Verification (``tee.attestation``) checks, in order:

1. the quote parses (and, for DCAP, is canonically framed);
2. signatures and certificate chains verify (DCAP: against Intel's root and the given
   collateral at ``now``; sim: a trusted simulated platform key);
3. *TCB status and advisories* (:func:`compute_tcb_refusal`): the reported status must be
   listed in ``allowed_statuses`` **and** every advisory reported must be listed in
   ``allowed_advisories``. This rule is applied whatever the status, so an "UpToDate"
   platform that still reports an advisory needs that advisory allowed too. ``Revoked`` is
   never acceptable. Allowing a status never implies allowing its advisories and allowing
   advisories never implies allowing a status: the default policy (only UpToDate, no
   advisories) refuses the SGX sample (ConfigurationAndSWHardeningNeeded with
   INTEL-SA-00289 and INTEL-SA-00615); adding that status and *both* advisories accepts it;
   allowing only one of the two advisories refuses it again;
4. freshness: DCAP quotes carry no time, so freshness is the collateral's validity at
   ``now``; simulated quotes carry a timestamp that must be within
   ``max_quote_age_seconds`` before ``now`` (and at most ``max_clock_skew_seconds`` after);
5. the measurement is in ``allowed_measurements`` -- an empty list allows **nothing**;
   inspection tools that want to see any measurement set ``any_measurement=True``;
6. the report data equals the expected binding when one is given.

The outcome is a :class:`Verdict`, which is what gets logged and printed.
"""

from __future__ import annotations

import msgspec

from sealbridge.core.encoding import Message

UP_TO_DATE = "UpToDate"
NEVER_ACCEPTABLE_STATUSES = frozenset({"Revoked"})
#: Statuses that say "patched, but residual risk is described by advisories" (as opposed to
#: OutOfDate*, which means missing microcode or firmware updates).
ADVISORY_ONLY_STATUSES = (
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
)


class AttestationPolicy(Message, frozen=True):
    """What a verifier accepts. See the module docstring for the exact rules."""

    allowed_measurements: list[bytes]
    any_measurement: bool = False
    allowed_statuses: list[str] = msgspec.field(default_factory=lambda: [UP_TO_DATE])
    allowed_advisories: list[str] = []
    accept_simulated: bool = False
    trusted_sim_platform_keys: list[bytes] = []
    max_quote_age_seconds: int = 600
    max_clock_skew_seconds: int = 60
    # TDX: MRTD covers only the TD's firmware image; the kernel and the application are
    # measured into RTMR0..3. Each entry is RTMR0 || RTMR1 || RTMR2 || RTMR3 (192 bytes);
    # non-empty: a TDX quote's RTMRs must equal one of them (empty: not pinned).
    allowed_tdx_rtmrs: list[bytes] = []
    # registration: the longest lifetime a gatekeeper approves (renewal needs a new quote)
    max_registration_seconds: int = 31 * 24 * 3600


class Verdict(Message, frozen=True):
    """The result of checking one quote under one policy."""

    kind: str  # "sgx" | "tdx" | "simulated"
    status: str
    advisories: list[str]
    measurement: bytes  # SGX: MRENCLAVE (32), TDX: MRTD (48), sim: 32
    report_data: bytes  # 64
    accepted: bool
    reason: str


def default_policy(allowed_measurements: list[bytes] | None = None) -> AttestationPolicy:
    """Production policy: hardware quotes only, UpToDate only, no advisories."""
    return AttestationPolicy(allowed_measurements=list(allowed_measurements or []))


def devnet_policy(
    platform_pub: bytes, measurements: list[bytes], *, max_quote_age_seconds: int = 600
) -> AttestationPolicy:
    """Devnet policy: simulated quotes signed by ``platform_pub`` with these measurements."""
    return AttestationPolicy(
        allowed_measurements=list(measurements),
        accept_simulated=True,
        trusted_sim_platform_keys=[bytes(platform_pub)],
        max_quote_age_seconds=max_quote_age_seconds,
    )


def compute_tcb_refusal(
    policy: AttestationPolicy, status: str, advisories: list[str]
) -> str | None:
    """Why ``status`` with ``advisories`` is refused by ``policy``; ``None`` if acceptable."""
    shown = ", ".join(advisories) if advisories else "none"
    if status in NEVER_ACCEPTABLE_STATUSES:
        return f"TCB status {status} (advisories: {shown}) is never acceptable"
    if status not in policy.allowed_statuses:
        return (
            f"TCB status {status} (advisories: {shown}) is not in allowed_statuses "
            f"{policy.allowed_statuses}"
        )
    missing = [a for a in advisories if a not in policy.allowed_advisories]
    if missing:
        return (
            f"TCB status {status} reports advisories {', '.join(missing)} that are not in "
            f"allowed_advisories {policy.allowed_advisories} (advisories: {shown})"
        )
    return None


def is_tcb_acceptable(policy: AttestationPolicy, status: str, advisories: list[str]) -> bool:
    """True when the policy accepts this TCB status with these advisories."""
    return compute_tcb_refusal(policy, status, advisories) is None


def is_measurement_allowed(policy: AttestationPolicy, measurement: bytes) -> bool:
    """True when ``measurement`` is allowed (an empty allow-list allows nothing)."""
    return policy.any_measurement or bytes(measurement) in policy.allowed_measurements
