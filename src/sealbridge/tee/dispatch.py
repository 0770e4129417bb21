"""The trusted side of the ECALL boundary: start a program and dispatch calls to it.

Theory of operation: :func:`start_enclave` does what the platform does when an enclave is
created -- compute the measurement, load the (simulated) platform key, build the
:class:`EnclaveContext` (which generates or unseals the identity), construct the program
and read its ECALL table, beside the built-in ``sb.*`` ECALLs (declared, like the
programs' own, in ``tee/ecall.py``). :meth:`EnclaveDispatcher.process_request` turns one
:class:`EcallRequest` into one :class:`EcallReply`; any exception raised by trusted code
becomes an error reply (class name, ``code``, message -- never a traceback, which could
carry secrets). The same dispatcher serves the child process (``tee.sim_enclave``) and the
in-process backend, so both behave identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.tee.backend import EcallReply, EcallRequest, EnclaveHello, StagedKeys
from sealbridge.tee.dcap import parse_dcap_quote
from sealbridge.tee.ecall import (
    GET_QUOTE,
    STAGE_KEYS,
    SWITCH_KEYS,
    Nothing,
    get_ecall_table,
)
from sealbridge.tee.enclave import (
    EnclaveContext,
    NodeKeys,
    RawEcall,
    get_program_ecalls,
    load_program_class,
)
from sealbridge.tee.errors import UnknownEcall
from sealbridge.tee.hardware import make_quoter
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.quote import REPORT_DATA_SIZE, load_sim_platform_key


def compute_error_reply(exc: BaseException) -> EcallReply:
    """The error frame for an exception raised inside the enclave."""
    code = exc.code if isinstance(exc, SealbridgeError) else "exception"
    message = exc.message if isinstance(exc, SealbridgeError) else str(exc)
    return EcallReply(
        ok=False, error_kind=type(exc).__name__, error_code=code, error_message=message
    )


class EnclaveDispatcher:
    """A started program and its ECALL table."""

    def __init__(self, ctx: EnclaveContext, ecalls: dict[str, RawEcall]) -> None:
        self.ctx = ctx
        self._ecalls: dict[str, RawEcall] = {**get_ecall_table(self), **ecalls}

    @GET_QUOTE.handler
    def on_get_quote(self, _: Nothing) -> bytes:
        return self.ctx.get_identity_quote()

    @STAGE_KEYS.handler
    def on_stage_keys(self, _: Nothing) -> StagedKeys:
        keys = self.ctx.stage_fresh_keys()
        return StagedKeys(node_keys=keys, quote=self.ctx.get_staged_quote())

    @SWITCH_KEYS.handler
    def on_switch_keys(self, keys: NodeKeys) -> NodeKeys:
        return self.ctx.switch_to_staged_keys(keys)

    def get_hello(self) -> EnclaveHello:
        return EnclaveHello(
            program=self.ctx.program,
            measurement=self.ctx.measurement,
            node_keys=self.ctx.identity,
            ecalls=sorted(self._ecalls),
        )

    def process_request(self, request: EcallRequest) -> EcallReply:
        fn = self._ecalls.get(request.name)
        if fn is None:
            return compute_error_reply(UnknownEcall(f"no ECALL named {request.name!r}"))
        try:
            result = fn(bytes(request.payload))
            if not isinstance(result, bytes | bytearray):
                raise TypeError(f"ECALL {request.name!r} returned {type(result).__name__}")
        except Exception as exc:  # trusted code's failure becomes an error frame
            return compute_error_reply(exc)
        return EcallReply(ok=True, payload=bytes(result))


def start_enclave(
    program: str,
    *,
    platform_key_file: Path | None,
    sealed_identity_file: Path | None = None,
    clock: Callable[[], float] = time.time,
    simulate_compromise: bool = False,
    tee: str = "sim",
    tee_root: Path | None = None,
) -> EnclaveDispatcher:
    """Create the enclave: measure, load the platform key, build context and program.

    ``tee`` chooses the platform: ``sim`` (the simulated platform key in
    ``platform_key_file``), or a hardware backend (``tdx``, ``gramine-sgx``; see
    ``tee/hardware.py``), whose measurement is the one its own first quote reports and
    whose quotes and sealing key come from the platform's interface (``tee_root``: where
    that interface is, for tests)."""
    cls = load_program_class(program)
    quoter = None
    if tee == "sim":
        if platform_key_file is None:
            raise ConfigError("the sim backend needs the platform key file")
        measurement = compute_sim_measurement(program)
        platform_key = load_sim_platform_key(platform_key_file)
    else:
        if simulate_compromise:
            raise ConfigError("a compromise is simulated on the sim backend only")
        quoter = make_quoter(tee, tee_root)
        measurement = parse_dcap_quote(quoter.get_quote(bytes(REPORT_DATA_SIZE))).measurement
        platform_key = b""
    ctx = EnclaveContext(
        program=program,
        measurement=measurement,
        platform_private_key=platform_key,
        sealed_identity_file=sealed_identity_file,
        clock=clock,
        compromised=simulate_compromise,
        quoter=quoter,
    )
    instance = cls(ctx)
    return EnclaveDispatcher(ctx, get_program_ecalls(instance))
