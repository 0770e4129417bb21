"""Typed errors of the TEE layer.

Theory of operation: two families, following the h11 split of ``core.errors``.

* Attestation: a quote is evidence from outside, so every refusal is an
  :class:`AttestationError` (a :class:`RemoteProtocolError`) whose subclass says *why*:
  the bytes do not parse (:class:`QuoteFormatError`), a signature or certificate chain
  fails (:class:`QuoteSignatureError`), the collateral is expired, invalid or has no TCB
  level for the platform (:class:`CollateralError`), or the quote is genuine but the
  policy refuses it (:class:`TcbStatusRefused`, :class:`MeasurementRefused`,
  :class:`ReportDataMismatch`, :class:`StaleQuote`, :class:`SimulatedQuoteRefused`).
* Enclaves: an exception raised by trusted code inside an ECALL comes back to the host
  as :class:`EnclaveCallError` carrying the original class name (``kind``) and ``code``;
  a dead or unreachable enclave is :class:`EnclaveUnavailable`; a call to an ECALL the
  program does not export is :class:`UnknownEcall` (the caller's fault); a request or
  answer that is not of the type its ECALL declares (``tee/ecall.py``) is
  :class:`EcallTypeError`.
"""

from __future__ import annotations

from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError

# --- attestation ---------------------------------------------------------------------------


class AttestationError(RemoteProtocolError):
    """A quote was refused; the subclass says why."""

    code = "attestation"


class QuoteFormatError(AttestationError):
    """The quote bytes do not parse as a DCAP or simulated quote (or are not canonical)."""

    code = "quote_format"


class QuoteSignatureError(AttestationError):
    """A quote signature, QE report or certificate chain does not verify."""

    code = "quote_signature"


class CollateralError(AttestationError):
    """Collateral is missing, malformed, expired, not yet valid or has no matching TCB level."""

    code = "collateral"


class TcbStatusRefused(AttestationError):
    """The platform's TCB status (with its advisories) is not allowed by the policy."""

    code = "tcb_status_refused"


class MeasurementRefused(AttestationError):
    """The enclave measurement (MRENCLAVE / MRTD / sim measurement) is not allowed."""

    code = "measurement_refused"


class ReportDataMismatch(AttestationError):
    """The quote's 64-byte report data is not the expected binding."""

    code = "report_data_mismatch"


class StaleQuote(AttestationError):
    """A simulated quote is older than the policy's maximum age (or from the future)."""

    code = "stale_quote"


class SimulatedQuoteRefused(AttestationError):
    """A simulated quote was presented to a policy that does not accept simulation."""

    code = "simulated_quote_refused"


# --- enclaves ------------------------------------------------------------------------------


class EnclaveCallError(RemoteProtocolError):
    """Trusted code raised inside an ECALL; ``kind`` is the original exception class name."""

    code = "enclave_call"

    def __init__(self, message: str, *, kind: str, remote_code: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.remote_code = remote_code

    def __str__(self) -> str:
        return f"{self.kind} [{self.remote_code}]: {self.message}"


class EnclaveUnavailable(RemoteProtocolError):
    """The enclave process is dead, closed, or broke the frame protocol."""

    code = "enclave_unavailable"


class EnclaveLaunchError(EnclaveUnavailable):
    """The enclave process did not start (bad program, unreadable key, unsealable identity)."""

    code = "enclave_launch"


class UnknownEcall(LocalProtocolError):
    """The program exports no ECALL of that name."""

    code = "unknown_ecall"


class EcallTypeError(LocalProtocolError):
    """A request or answer is not of the type its ECALL declares (a bug of the caller or
    of the handler: nothing is encoded)."""

    code = "ecall_type"


class SealingError(RemoteProtocolError):
    """A sealed blob does not open under this enclave's sealing key and label."""

    code = "sealing"
