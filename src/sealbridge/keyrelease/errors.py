"""Typed errors of the key-release contracts. Each refusal changes nothing."""

from __future__ import annotations

from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError


class KeyReleaseError(LocalProtocolError):
    """Base of the key-release refusals."""

    code = "keyrelease"


class InvalidRequest(KeyReleaseError):
    """A request, chunk or report that is malformed or names something unknown."""

    code = "keyrelease_invalid"


class InsufficientLiquidity(KeyReleaseError):
    """The matcher cannot fill a request within its risk limits."""

    code = "keyrelease_liquidity"


class AlreadyReleased(KeyReleaseError):
    """An honest vault releases each deposit key once."""

    code = "keyrelease_already_released"


class LossClaimed(KeyReleaseError):
    """A vault that signed a loss claim for a chunk never sweeps it."""

    code = "keyrelease_loss_claimed"


class AttestationRefused(RemoteProtocolError):
    """A peer enclave's quote, or what it binds, does not check out."""

    code = "keyrelease_attestation"


class ExchangeViolation(RemoteProtocolError):
    """A counterparty's message breaks the exchange's rules (wrong key, wrong order)."""

    code = "keyrelease_exchange"


class ReportRejected(KeyReleaseError):
    """A double-spend report that the chain does not bear out."""

    code = "keyrelease_report_rejected"


class OperatorInputRefused(RemoteProtocolError):
    """An answer a matcher-operator flow did not ask for, or of the wrong kind or shape
    (see :mod:`sealbridge.keyrelease.operator`)."""

    code = "keyrelease_operator_input"


class OfferRefused(RemoteProtocolError):
    """An offer that does not check out for its requester: made for another request, not
    the one the matcher holds, or a chunk that does not hold its amount on chain."""

    code = "keyrelease_offer_refused"


class FeeNotPaid(KeyReleaseError):
    """The matching fee's transaction was not mined: nothing is accepted."""

    code = "keyrelease_fee_not_paid"


class SwapInputRefused(RemoteProtocolError):
    """An answer or output the swap driver did not ask for, or one that names what is not
    the side's to release or sweep (see :mod:`sealbridge.keyrelease.swap_driver`)."""

    code = "keyrelease_swap_input"
