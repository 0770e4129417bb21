"""Attested cards: one type for how an enclave introduces itself, and one verifier.

Theory of operation
-------------------
Every enclave that others must trust before they talk to it -- a gatekeeper or gateway
in its committee, a key-release vault, the matcher, a simulated interop gateway --
introduces itself the same way: an :class:`AttestedCard` carries its public node keys
and a quote whose report data binds them. A program that says more about itself in its
quote (the matcher binds its operator and its configuration) extends the card with
those fields and passes the report data they make to the verifier; a card that also
carries a signed introduction (an interop gateway's profile) adds its fields and checks
its signature after the quote.

:func:`verify_attested_card` is the one check: the quote is valid under the verifier's
policy at ``now`` (signature chain, TCB, measurement allowed), its report data is the
expected one (by default :func:`~sealbridge.tee.enclave.compute_report_data` of the
card's keys), and -- when the verifier knows which program it expects -- the measurement
is that program's. It returns the quote's verdict or raises a typed
:class:`~sealbridge.tee.errors.AttestationError`; each role turns that into its own
refusal.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.enclave import NodeKeys, compute_report_data
from sealbridge.tee.errors import AttestationError
from sealbridge.tee.policy import AttestationPolicy, Verdict

__all__ = ["AttestedCard", "WrongProgram", "verify_attested_card"]


class AttestedCard(Message, frozen=True):
    """An enclave's attested public identity: its node keys and a quote binding them."""

    node: NodeKeys
    quote: bytes

    @property
    def identity_hex(self) -> str:
        """The enclave's identity key in hex (how key-release names a vault)."""
        return self.node.identity_key.hex()


class WrongProgram(AttestationError):
    """The quote is valid but its measurement is not the program the verifier expects."""

    code = "attestation_wrong_program"


def verify_attested_card(
    card: AttestedCard,
    *,
    policy: AttestationPolicy,
    now: float,
    report_data: bytes | None = None,
    measurement: bytes | None = None,
) -> Verdict:
    """Check ``card`` (see the module docstring): the quote's verdict, or an
    AttestationError. ``report_data`` defaults to the report data of the card's keys."""
    expected = compute_report_data(card.node) if report_data is None else report_data
    verdict = verify_quote(card.quote, policy=policy, now=int(now), expected_report_data=expected)
    if measurement is not None and verdict.measurement != measurement:
        raise WrongProgram(
            f"enclave 0x{card.node.identity_key.hex()[:12]}… runs another program "
            "(another measurement)"
        )
    return verdict
