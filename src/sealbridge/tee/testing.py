"""Tiny enclave programs for tests (measured like any trusted code; never for production).

Theory of operation: :class:`EchoProgram` exercises the ECALL boundary -- echo, a counter
kept inside the enclave, errors raised by trusted code, sealing and identity signatures --
so backend tests do not depend on the real runtime. :class:`OtherProgram` is a second
program with a different import path (hence a different measurement) for cross-program
sealing tests.
"""

from __future__ import annotations

from collections.abc import Mapping

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError
from sealbridge.tee.enclave import Ecall, EnclaveContext

ECHO_PROGRAM = "sealbridge.tee.testing:EchoProgram"
OTHER_PROGRAM = "sealbridge.tee.testing:OtherProgram"


class EchoProgram:
    """echo, a counter, sealing, signing and deliberate failures."""

    def __init__(self, ctx: EnclaveContext) -> None:
        self._ctx = ctx
        self._counter = 0

    def get_ecalls(self) -> Mapping[str, Ecall]:
        return {
            "echo": self.on_echo,
            "increment": self.on_increment,
            "fail": self.on_fail,
            "crash": self.on_crash,
            "seal": self.on_seal,
            "unseal": self.on_unseal,
            "sign": self.on_sign,
            "print": self.on_print,
        }

    def on_echo(self, payload: bytes) -> bytes:
        return payload

    def on_increment(self, payload: bytes) -> bytes:
        self._counter += decode(payload, int) if payload else 1
        return encode(self._counter)

    def on_fail(self, payload: bytes) -> bytes:
        raise ConfigError(f"refused: {payload.decode(errors='replace')}")

    def on_crash(self, payload: bytes) -> bytes:
        raise ZeroDivisionError("division by zero inside the enclave")

    def on_seal(self, payload: bytes) -> bytes:
        label, data = decode(payload, tuple[str, bytes])
        return self._ctx.seal(data, label)

    def on_unseal(self, payload: bytes) -> bytes:
        label, blob = decode(payload, tuple[str, bytes])
        return self._ctx.unseal(blob, label)

    def on_sign(self, payload: bytes) -> bytes:
        return self._ctx.sign_identity(payload)

    def on_print(self, payload: bytes) -> bytes:
        print("trusted code printing to stdout must not corrupt frames")
        return payload


class OtherProgram(EchoProgram):
    """Same ECALLs, different program path, so a different measurement."""
