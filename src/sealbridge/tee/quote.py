"""Simulated quotes and the simulated platform key.

Theory of operation: in ``sim`` mode there is no CPU to vouch for the enclave, so a
*simulated platform* stands in for one: an Ed25519 key kept in a file that only the
enclave process reads (standing in for a CPU's fused key). The devnet creates it once
with :func:`create_sim_platform` and hands its public key to verifiers.

A simulated quote is ``SIM_QUOTE_MAGIC || encode(SimQuote)``: the body names the
measurement, the 64-byte report data, a timestamp, the platform public key and the TCB
status ("UpToDate"); the platform signs ``SIM_QUOTE_MAGIC || encode(body)``. Decoding
insists on the canonical encoding, so every bit of the quote is covered by the signature
or by the canonical-form check. The magic makes a simulated quote impossible to mistake
for hardware evidence: verdicts call it ``"simulated"`` and the default policy refuses it.

What a sim quote proves: that the process holding the platform key computed this
measurement and bound this report data. It does not prove isolation from the host.
"""

from __future__ import annotations

import os
from pathlib import Path

from sealbridge.core.encoding import Message, decode_canonical, encode
from sealbridge.core.errors import ConfigError, EncodingError, InvalidSignature
from sealbridge.crypto.signing import ed25519_keypair, ed25519_public, ed25519_sign, ed25519_verify
from sealbridge.tee.errors import QuoteFormatError, QuoteSignatureError

SIM_QUOTE_MAGIC = b"SBSIMQ01"
SIM_QUOTE_VERSION = 1
SIM_PLATFORM_KIND = "sealbridge-sim-platform-v1"
MEASUREMENT_SIZE = 32
REPORT_DATA_SIZE = 64


class SimQuoteBody(Message, frozen=True):
    """What the simulated platform vouches for."""

    version: int
    measurement: bytes
    report_data: bytes
    timestamp: int
    platform_key: bytes
    tcb_status: str = "UpToDate"


class SimQuote(Message, frozen=True):
    """A body and the platform's Ed25519 signature over ``SIM_QUOTE_MAGIC || encode(body)``."""

    body: SimQuoteBody
    signature: bytes


class SimPlatformSecret(Message, frozen=True):
    """Contents of a simulated platform key file."""

    kind: str
    private_key: bytes


def is_sim_quote(quote: bytes) -> bool:
    """True when ``quote`` carries the simulated-quote magic."""
    return bytes(quote[: len(SIM_QUOTE_MAGIC)]) == SIM_QUOTE_MAGIC


def compute_sim_quote(
    platform_private_key: bytes, *, measurement: bytes, report_data: bytes, timestamp: int
) -> bytes:
    """Build and sign a simulated quote (runs inside the enclave process)."""
    if len(measurement) != MEASUREMENT_SIZE:
        raise ConfigError(f"measurement must be {MEASUREMENT_SIZE} bytes")
    if len(report_data) != REPORT_DATA_SIZE:
        raise ConfigError(f"report data must be {REPORT_DATA_SIZE} bytes")
    body = SimQuoteBody(
        version=SIM_QUOTE_VERSION,
        measurement=bytes(measurement),
        report_data=bytes(report_data),
        timestamp=int(timestamp),
        platform_key=ed25519_public(platform_private_key),
    )
    signature = ed25519_sign(platform_private_key, SIM_QUOTE_MAGIC + encode(body))
    return SIM_QUOTE_MAGIC + encode(SimQuote(body=body, signature=signature))


def parse_sim_quote(quote: bytes) -> SimQuote:
    """Decode a simulated quote (canonical form only); QuoteFormatError if malformed."""
    if not is_sim_quote(quote):
        raise QuoteFormatError("not a simulated quote (missing SBSIMQ01 magic)")
    try:
        parsed = decode_canonical(bytes(quote[len(SIM_QUOTE_MAGIC) :]), SimQuote)
    except (EncodingError, ValueError) as exc:  # msgspec: UnicodeDecodeError
        raise QuoteFormatError(f"malformed simulated quote: {exc}") from exc
    body = parsed.body
    if body.version != SIM_QUOTE_VERSION:
        raise QuoteFormatError(f"unsupported simulated quote version {body.version}")
    if len(body.measurement) != MEASUREMENT_SIZE or len(body.report_data) != REPORT_DATA_SIZE:
        raise QuoteFormatError("simulated quote has a bad measurement or report data size")
    if len(body.platform_key) != 32 or len(parsed.signature) != 64:
        raise QuoteFormatError("simulated quote has a bad platform key or signature size")
    return parsed


def verify_sim_quote_signature(quote: SimQuote) -> None:
    """Check the platform signature against the key the quote names; QuoteSignatureError."""
    try:
        ed25519_verify(
            quote.body.platform_key, SIM_QUOTE_MAGIC + encode(quote.body), quote.signature
        )
    except InvalidSignature as exc:
        raise QuoteSignatureError("simulated quote signature does not verify") from exc


def create_sim_platform(path: Path, *, seed: bytes | None = None) -> bytes:
    """Create a simulated platform key file (mode 0600); return its public key."""
    private, public = ed25519_keypair(seed)
    data = encode(SimPlatformSecret(kind=SIM_PLATFORM_KIND, private_key=private))
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return public


def load_sim_platform_key(path: Path) -> bytes:
    """Read the private platform key (only the enclave process should call this)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read sim platform key file {path}: {exc.strerror}") from exc
    try:
        secret = decode_canonical(data, SimPlatformSecret)
    except (EncodingError, ValueError) as exc:  # msgspec: UnicodeDecodeError
        raise ConfigError(f"{path} is not a sim platform key file: {exc}") from exc
    if secret.kind != SIM_PLATFORM_KIND or len(secret.private_key) != 32:
        raise ConfigError(f"{path} is not a sim platform key file")
    return secret.private_key


def get_sim_platform_public(path: Path) -> bytes:
    """The public key of a simulated platform key file (for devnet setup scripts)."""
    return ed25519_public(load_sim_platform_key(path))
