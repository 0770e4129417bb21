"""Typed errors for every layer.

Every failure sealbridge reports is a :class:`SealbridgeError`. Two branches say whose
fault it is, in the sense of h11:

* :class:`LocalProtocolError` -- we were asked to do something invalid (bad arguments,
  wrong configuration, an operation in the wrong state). Fix the caller.
* :class:`RemoteProtocolError` -- something that came from outside (a peer, the chain,
  a file, a user's transaction) is malformed, forged or stale. Refuse it and go on.

Layers subclass these; code catches the narrowest class it can handle. Validation never
uses ``assert``.
"""

from __future__ import annotations


class SealbridgeError(Exception):
    """Base class of every error sealbridge raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LocalProtocolError(SealbridgeError):
    """Our side is at fault: invalid arguments, configuration or call order."""

    code = "local"


class RemoteProtocolError(SealbridgeError):
    """Input from outside is malformed, forged, stale or otherwise unacceptable."""

    code = "remote"


class EncodingError(RemoteProtocolError):
    """Bytes do not decode to the expected canonical message."""

    code = "encoding"


class CryptoError(RemoteProtocolError):
    """A signature, MAC, ciphertext or key failed a cryptographic check."""

    code = "crypto"


class InvalidSignature(CryptoError):
    """A signature does not verify under the claimed key."""

    code = "invalid_signature"


class DecryptionError(CryptoError):
    """A ciphertext could not be authenticated and decrypted with the given key."""

    code = "decryption"


class ConfigError(LocalProtocolError):
    """A configuration value or parameter is invalid."""

    code = "config"
