"""Tiny enclave programs for tests (measured like any trusted code; never for production).

Theory of operation: :class:`EchoProgram` exercises the ECALL boundary -- echo, a counter
kept inside the enclave, errors raised by trusted code, sealing and identity signatures --
so backend tests do not depend on the real runtime. :class:`OtherProgram` is a second
program with a different import path (hence a different measurement) for cross-program
sealing tests.
"""

from __future__ import annotations

from collections.abc import Mapping

from sealbridge.core.errors import ConfigError
from sealbridge.tee.ecall import Ecall, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, RawEcall

ECHO_PROGRAM = "sealbridge.tee.testing:EchoProgram"
OTHER_PROGRAM = "sealbridge.tee.testing:OtherProgram"

ECHO = Ecall("echo", bytes, bytes)
INCREMENT = Ecall("increment", int, int)  # add to the counter; the new value
FAIL = Ecall("fail", bytes, bytes)
CRASH = Ecall("crash", bytes, bytes)
SEAL = Ecall("seal", tuple[str, bytes], bytes)  # (label, data) -> sealed blob
UNSEAL = Ecall("unseal", tuple[str, bytes], bytes)  # (label, blob) -> data
SIGN = Ecall("sign", bytes, bytes)
PRINT = Ecall("print", bytes, bytes)


class EchoProgram:
    """echo, a counter, sealing, signing and deliberate failures."""

    def __init__(self, ctx: EnclaveContext) -> None:
        self._ctx = ctx
        self._counter = 0

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        return get_ecall_table(self)

    @ECHO.handler
    def on_echo(self, payload: bytes) -> bytes:
        return payload

    @INCREMENT.handler
    def on_increment(self, amount: int) -> int:
        self._counter += amount
        return self._counter

    @FAIL.handler
    def on_fail(self, payload: bytes) -> bytes:
        raise ConfigError(f"refused: {payload.decode(errors='replace')}")

    @CRASH.handler
    def on_crash(self, payload: bytes) -> bytes:
        raise ZeroDivisionError("division by zero inside the enclave")

    @SEAL.handler
    def on_seal(self, request: tuple[str, bytes]) -> bytes:
        label, data = request
        return self._ctx.seal(data, label)

    @UNSEAL.handler
    def on_unseal(self, request: tuple[str, bytes]) -> bytes:
        label, blob = request
        return self._ctx.unseal(blob, label)

    @SIGN.handler
    def on_sign(self, payload: bytes) -> bytes:
        return self._ctx.sign_identity(payload)

    @PRINT.handler
    def on_print(self, payload: bytes) -> bytes:
        print("trusted code printing to stdout must not corrupt frames")
        return payload


class OtherProgram(EchoProgram):
    """Same ECALLs, different program path, so a different measurement."""
