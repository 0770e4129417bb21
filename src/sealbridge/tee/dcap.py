"""Intel DCAP (SGX and TDX) quotes: strict parsing and verification through ``dcap-qvl``.

Theory of operation: ``dcap_qvl.verify_with_root_ca(quote, collateral, root_der, now)``
checks the whole chain of evidence -- the PCK certificate chain up to Intel's SGX Root CA,
the CRLs, the QE report and its signature, the attestation key binding, the ISV/TD report
signature, and the TCB info and QE identity of the collateral at time ``now`` -- and
returns the platform's TCB status and advisories. We pin the trust anchor (the Intel SGX
Root CA below) explicitly instead of relying on the library's built-in default.

Some bytes of a DCAP quote are not covered by any signature: the root certificate the
quote embeds (verifiers use their own anchor), PEM line breaks, the outer certification
data type of v4/v5 quotes, length fields with slack, and trailing padding. A quote whose
hash is used as an id must not be malleable, so :func:`parse_dcap_quote` also insists on
canonical framing: known version and body size, exact certification-data types and sizes,
a canonical PEM chain (64-column lines, single trailing NUL allowed) whose last
certificate *is* the pinned root, and all-zero padding. After this, flipping any bit of a
sample quote makes verification fail.

``dcap-qvl`` reports every failure as ``ValueError`` with a message;
:func:`compute_dcap_error` maps those messages to the typed errors of ``tee.errors``
(format, signature/chain, collateral).
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sealbridge.tee.errors import (
    AttestationError,
    CollateralError,
    QuoteFormatError,
    QuoteSignatureError,
)

#: Intel SGX Root CA (also the root of TDX quotes). Public certificate, valid 2018-2049,
#: SHA-256 of the DER: 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3.
INTEL_SGX_ROOT_CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""
INTEL_SGX_ROOT_CA_DER = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM).public_bytes(
    Encoding.DER
)

HEADER_SIZE = 48
SGX_REPORT_SIZE = 384
TD10_REPORT_SIZE = 584
TD15_REPORT_SIZE = 648
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
ATTESTATION_KEY_ECDSA_P256 = 2
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
_V5_BODY_SIZES = {1: SGX_REPORT_SIZE, 2: TD10_REPORT_SIZE, 3: TD15_REPORT_SIZE}
_ECDSA_SIG_AND_KEY = 64 + 64
_QE_REPORT_AND_SIG = SGX_REPORT_SIZE + 64


@dataclass(frozen=True)
class DcapQuoteInfo:
    """What a DCAP quote claims, before any signature is checked."""

    kind: str  # "sgx" | "tdx"
    version: int
    measurement: bytes  # SGX: MRENCLAVE; TDX: MRTD
    report_data: bytes
    embedded_root_der: bytes
    rtmrs: bytes = b""  # TDX: RTMR0 || RTMR1 || RTMR2 || RTMR3 (192 bytes); SGX: empty


@dataclass(frozen=True)
class DcapResult:
    """What ``dcap-qvl`` established: the platform's TCB status and advisories."""

    status: str
    advisories: list[str]


def _u16(data: bytes, offset: int, what: str) -> int:
    if offset + 2 > len(data):
        raise QuoteFormatError(f"DCAP quote truncated at {what}")
    return int(struct.unpack_from("<H", data, offset)[0])


def _u32(data: bytes, offset: int, what: str) -> int:
    if offset + 4 > len(data):
        raise QuoteFormatError(f"DCAP quote truncated at {what}")
    return int(struct.unpack_from("<I", data, offset)[0])


def _check_pck_chain(cert_data: bytes) -> bytes:
    """The certification data must be a canonical PEM chain; return its last cert (DER)."""
    pem = cert_data[:-1] if cert_data.endswith(b"\x00") else cert_data
    try:
        with warnings.catch_warnings():
            # Intel's real PCK certificates trip cryptography's RFC 5280 serial-number lint.
            warnings.simplefilter("ignore")
            certs = x509.load_pem_x509_certificates(pem)
    except (ValueError, x509.InvalidVersion) as exc:
        raise QuoteFormatError(f"PCK certificate chain is not valid PEM: {exc}") from exc
    if len(certs) < 2:
        raise QuoteFormatError("PCK certificate chain has fewer than two certificates")
    if b"".join(c.public_bytes(Encoding.PEM) for c in certs) != pem:
        raise QuoteFormatError("PCK certificate chain is not canonically PEM-encoded")
    return certs[-1].public_bytes(Encoding.DER)


def _check_framing(quote: bytes) -> tuple[int, bytes]:
    """Check the canonical layout; return (version, DER of the chain's last certificate)."""
    if len(quote) < HEADER_SIZE:
        raise QuoteFormatError(f"DCAP quote too short ({len(quote)} bytes)")
    version = _u16(quote, 0, "version")
    key_type = _u16(quote, 2, "attestation key type")
    tee_type = _u32(quote, 4, "TEE type")
    if version not in (3, 4, 5):
        raise QuoteFormatError(f"unsupported DCAP quote version {version}")
    if key_type != ATTESTATION_KEY_ECDSA_P256:
        raise QuoteFormatError(f"unsupported attestation key type {key_type}")
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise QuoteFormatError(f"unknown TEE type {tee_type:#x}")
    if version == 5:
        body_type = _u16(quote, HEADER_SIZE, "v5 body type")
        body_size = _u32(quote, HEADER_SIZE + 2, "v5 body size")
        if _V5_BODY_SIZES.get(body_type) != body_size:
            raise QuoteFormatError(f"v5 body type {body_type} with size {body_size}")
        if (body_type == 1) != (tee_type == TEE_TYPE_SGX):
            raise QuoteFormatError("v5 body type does not match the TEE type")
        body_offset = HEADER_SIZE + 6
    else:
        if version == 3 and tee_type != TEE_TYPE_SGX:
            raise QuoteFormatError("version 3 quotes are SGX only")
        body_size = SGX_REPORT_SIZE if tee_type == TEE_TYPE_SGX else TD10_REPORT_SIZE
        body_offset = HEADER_SIZE
    sig_offset = body_offset + body_size
    sig_len = _u32(quote, sig_offset, "signature data length")
    end = sig_offset + 4 + sig_len
    if end > len(quote):
        raise QuoteFormatError("signature data runs past the end of the quote")
    if any(quote[end:]):
        raise QuoteFormatError("non-zero bytes after the signature data")
    sig = quote[sig_offset + 4 : end]
    pos = _ECDSA_SIG_AND_KEY
    if version >= 4:
        outer_type = _u16(sig, pos, "certification data type")
        outer_size = _u32(sig, pos + 2, "certification data size")
        if outer_type != CERT_TYPE_QE_REPORT:
            raise QuoteFormatError(f"certification data type {outer_type}, expected 6")
        pos += 6
        if pos + outer_size != len(sig):
            raise QuoteFormatError("certification data size does not match the signature data")
    pos += _QE_REPORT_AND_SIG
    auth_len = _u16(sig, pos, "QE authentication data length")
    pos += 2 + auth_len
    cert_type = _u16(sig, pos, "PCK certification data type")
    cert_size = _u32(sig, pos + 2, "PCK certification data size")
    if cert_type != CERT_TYPE_PCK_CHAIN:
        raise QuoteFormatError(f"PCK certification data type {cert_type}, expected 5")
    pos += 6
    if pos + cert_size != len(sig):
        raise QuoteFormatError("PCK certification data size does not match the signature data")
    return version, _check_pck_chain(sig[pos:])


def parse_dcap_quote(quote: bytes) -> DcapQuoteInfo:
    """Parse a DCAP quote strictly; QuoteFormatError (or QuoteSignatureError) if malformed."""
    quote = bytes(quote)
    version, root_der = _check_framing(quote)
    try:
        parsed = dcap_qvl.parse_quote(quote)
    except ValueError as exc:
        raise QuoteFormatError(f"DCAP quote does not parse: {_first_line(exc)}") from exc
    report = parsed.report
    if parsed.is_tdx():
        return DcapQuoteInfo(
            kind="tdx",
            version=version,
            measurement=bytes(report.mr_td),
            report_data=bytes(report.report_data),
            embedded_root_der=root_der,
            rtmrs=b"".join(
                bytes(r) for r in (report.rt_mr0, report.rt_mr1, report.rt_mr2, report.rt_mr3)
            ),
        )
    return DcapQuoteInfo(
        kind="sgx",
        version=version,
        measurement=bytes(report.mr_enclave),
        report_data=bytes(report.report_data),
        embedded_root_der=root_der,
    )


def load_collateral(collateral: bytes | str) -> Any:
    """Parse collateral JSON (dcap-qvl's QuoteCollateralV3 layout); CollateralError if bad."""
    try:
        text = collateral.decode() if isinstance(collateral, bytes | bytearray) else collateral
        json.loads(text)
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CollateralError(f"malformed collateral: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " / ".join(lines[:4]) if lines else type(exc).__name__


_FORMAT_MARKERS = (
    "failed to decode",
    "unsupported",
    "invalid tee type",
    "failed to extract",
    "failed to parse pck",
    "not enough data",
)
_TIME_MARKERS = ("expired", "in the future", "notvalidyet", "not valid yet", "not yet valid")
_COLLATERAL_MARKERS = ("tcb", "qe identity", "qeidentity", "crl", "fmspc", "collateral")


def compute_dcap_error(exc: BaseException, *, now: int) -> AttestationError:
    """Map a ``dcap-qvl`` failure message to the typed error that says why."""
    text = _first_line(exc)
    low = text.lower()
    if any(m in low for m in _FORMAT_MARKERS):
        return QuoteFormatError(f"DCAP quote is malformed: {text}")
    if any(m in low for m in _TIME_MARKERS):
        return CollateralError(f"collateral or certificate not valid at now={now}: {text}")
    if "no matching tcb level" in low:
        return CollateralError(
            f"no matching TCB level: the platform's TCB is below every level the collateral "
            f"lists (out of date): {text}"
        )
    if any(m in low for m in _COLLATERAL_MARKERS) and "signature" not in low:
        return CollateralError(f"collateral refused: {text}")
    return QuoteSignatureError(f"DCAP signature or certificate chain refused: {text}")


def verify_dcap(quote: bytes, collateral: bytes | str | None, *, now: int) -> DcapResult:
    """Verify a DCAP quote's signatures, chain and collateral at ``now``; typed errors."""
    info = parse_dcap_quote(quote)
    if info.embedded_root_der != INTEL_SGX_ROOT_CA_DER:
        raise QuoteSignatureError("PCK certificate chain does not end in the Intel SGX Root CA")
    if collateral is None:
        raise CollateralError("a DCAP quote needs collateral to verify")
    col = load_collateral(collateral)
    try:
        report = dcap_qvl.verify_with_root_ca(bytes(quote), col, INTEL_SGX_ROOT_CA_DER, int(now))
    except ValueError as exc:
        raise compute_dcap_error(exc, now=now) from exc
    return DcapResult(status=str(report.status), advisories=[str(a) for a in report.advisory_ids])
