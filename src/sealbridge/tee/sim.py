"""The ``sim`` enclave backend: trusted code in its own OS process, reached by ECALLs.

Theory of operation: :meth:`SimBackend.launch` starts
``python -m sealbridge.tee.sim_enclave --program P --platform-key-file K
[--sealed-identity-file S]`` with pipes for stdin and stdout, and waits for the hello
frame (measurement, public node keys, ECALL names). The returned :class:`SimEnclaveHandle`
sends one request frame per :meth:`~SimEnclaveHandle.ecall` and reads one reply, under a
lock so that threads can share a handle. The enclave process holds the private keys and
the platform key; the host only ever sees bytes that trusted code chose to return.

Failures are typed: an exception inside an ECALL -> :class:`EnclaveCallError` (with the
original ``kind`` and ``remote_code``); an ECALL the program does not export ->
:class:`UnknownEcall`; a dead, closed or misbehaving process -> :class:`EnclaveUnavailable`
(:class:`EnclaveLaunchError` if it never started). ``close()`` closes stdin, which makes
the enclave exit, and reaps the process (killing it after a grace period).

:class:`InProcessBackend` runs the same program with the same context and dispatcher in
the *calling* process. It gives no isolation at all and exists only for unit tests and
benchmarks.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import msgspec

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import EncodingError
from sealbridge.tee.backend import (
    FRAME_HEADER,
    MAX_FRAME,
    EcallReply,
    EcallRequest,
    EnclaveHello,
    StagedKeys,
    compute_frame,
)
from sealbridge.tee.dispatch import EnclaveDispatcher, start_enclave
from sealbridge.tee.ecall import GET_QUOTE, NOTHING, STAGE_KEYS, SWITCH_KEYS, call
from sealbridge.tee.enclave import NodeKeys
from sealbridge.tee.errors import (
    EnclaveCallError,
    EnclaveLaunchError,
    EnclaveUnavailable,
    UnknownEcall,
)

DEFAULT_START_TIMEOUT = 60.0
DEFAULT_CLOSE_TIMEOUT = 5.0


def _raise_for_reply(reply: EcallReply, name: str) -> bytes:
    if reply.ok:
        return reply.payload
    if reply.error_kind == UnknownEcall.__name__:
        raise UnknownEcall(reply.error_message)
    raise EnclaveCallError(
        f"ECALL {name!r} failed: {reply.error_message}",
        kind=reply.error_kind,
        remote_code=reply.error_code,
    )


class _HandleBase:
    """What both handle kinds share: the enclave's hello, quotes, context management."""

    _hello: EnclaveHello

    @property
    def node_keys(self) -> NodeKeys:
        return self._hello.node_keys

    @property
    def measurement(self) -> bytes:
        return self._hello.measurement

    @property
    def program(self) -> str:
        return self._hello.program

    def ecall(self, name: str, payload: bytes) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def get_quote(self) -> bytes:
        """A quote over ``compute_report_data(node_keys)``."""
        return call(self, GET_QUOTE, NOTHING)

    def stage_fresh_keys(self) -> StagedKeys:
        """Fresh node keys for a renewal, staged in the enclave, with a quote over them."""
        return call(self, STAGE_KEYS, NOTHING)

    def switch_keys(self, keys: NodeKeys) -> NodeKeys:
        """Make the staged ``keys`` current (after the renewal naming them is on chain)."""
        current = call(self, SWITCH_KEYS, keys)
        self._hello = msgspec.structs.replace(self._hello, node_keys=current)
        return current

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SimEnclaveHandle(_HandleBase):
    """Host handle of a sim enclave child process (thread-safe)."""

    def __init__(
        self, process: subprocess.Popen[bytes], *, start_timeout: float, call_timeout: float | None
    ) -> None:
        self._process = process
        self._lock = threading.Lock()
        self._closed = False
        self._call_timeout = call_timeout
        if process.stdin is None or process.stdout is None:
            raise EnclaveLaunchError("enclave process has no pipes")
        self._stdin = process.stdin
        self._stdout_fd = process.stdout.fileno()
        try:
            first = self._read_reply(start_timeout)
        except EnclaveUnavailable as exc:
            self._kill()
            raise EnclaveLaunchError(f"enclave did not start: {exc}") from exc
        if not first.ok:
            self._reap(DEFAULT_CLOSE_TIMEOUT)
            raise EnclaveLaunchError(
                f"enclave did not start: {first.error_kind}: {first.error_message}"
            )
        try:
            self._hello = decode(first.payload, EnclaveHello)
        except (EncodingError, ValueError) as exc:  # msgspec: UnicodeDecodeError
            self._kill()
            raise EnclaveLaunchError(f"malformed hello frame: {exc}") from exc

    # --- reads -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._process.pid

    def get_ecall_names(self) -> list[str]:
        return list(self._hello.ecalls)

    def is_alive(self) -> bool:
        return self._process.poll() is None

    # --- calls -----------------------------------------------------------------------------

    def ecall(self, name: str, payload: bytes) -> bytes:
        """Call ECALL ``name`` with ``payload``; return its result bytes."""
        if name not in self._hello.ecalls:
            raise UnknownEcall(f"program {self._hello.program} exports no ECALL {name!r}")
        frame = compute_frame(encode(EcallRequest(name=name, payload=bytes(payload))))
        with self._lock:
            if self._closed:
                raise EnclaveUnavailable("enclave handle is closed")
            try:
                self._stdin.write(frame)
                self._stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise self._dead(f"cannot write to enclave: {exc}") from exc
            reply = self._read_reply(self._call_timeout)
        return _raise_for_reply(reply, name)

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Ask the enclave to exit (close its stdin) and reap it; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._stdin.close()
            except OSError:
                pass
            self._reap(DEFAULT_CLOSE_TIMEOUT)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._process.poll() is None:
            self._kill()

    # --- internals -------------------------------------------------------------------------

    def _reap(self, timeout: float) -> None:
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _kill(self) -> None:
        self._process.kill()
        self._process.wait()

    def _dead(self, why: str) -> EnclaveUnavailable:
        self._closed = True
        code = self._process.poll()
        if code is None:
            self._kill()
            code = self._process.returncode
        return EnclaveUnavailable(f"{why} (enclave process exit code {code})")

    def _read_exact(self, n: int, deadline: float | None) -> bytes:
        chunks: list[bytes] = []
        remaining = n
        while remaining:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([self._stdout_fd], [], [], wait)[0]:
                    raise self._dead("enclave did not answer in time")
            chunk = os.read(self._stdout_fd, remaining)
            if not chunk:
                raise self._dead("enclave closed its output")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_reply(self, timeout: float | None) -> EcallReply:
        deadline = None if timeout is None else time.monotonic() + timeout
        size = int.from_bytes(self._read_exact(FRAME_HEADER, deadline), "big")
        if size > MAX_FRAME:
            raise self._dead(f"enclave sent an oversized frame ({size} bytes)")
        body = self._read_exact(size, deadline)
        try:
            return decode(body, EcallReply)
        except (EncodingError, ValueError) as exc:  # msgspec: UnicodeDecodeError
            raise self._dead(f"enclave sent a malformed frame: {exc}") from exc


class SimBackend:
    """Launches sim enclaves as child processes."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        call_timeout: float | None = None,
    ) -> None:
        self._python = python
        self._start_timeout = start_timeout
        self._call_timeout = call_timeout

    def launch(
        self,
        program: str,
        *,
        platform_key_file: Path | None,
        sealed_identity_file: Path | None = None,
        simulate_compromise: bool = False,
        tee: str = "sim",
        tee_root: Path | None = None,
    ) -> SimEnclaveHandle:
        """Start ``program`` in a new enclave process and wait until it is ready.

        ``simulate_compromise``: the enclave runs with the same measurement but its
        platform is broken (see ``EnclaveContext.compromised``); for adversary tests.
        ``tee``: the platform the process attests with (``sim``, or ``tdx`` /
        ``gramine-sgx`` when the process runs inside that TEE; see ``tee/hardware.py``)."""
        argv = [self._python, "-m", "sealbridge.tee.sim_enclave", "--program", program]
        if platform_key_file is not None:
            argv += ["--platform-key-file", str(platform_key_file)]
        if tee != "sim":
            argv += ["--tee", tee]
        if tee_root is not None:
            argv += ["--tee-root", str(tee_root)]
        if sealed_identity_file is not None:
            argv += ["--sealed-identity-file", str(sealed_identity_file)]
        if simulate_compromise:
            argv.append("--simulate-compromise")
        try:
            process = subprocess.Popen(  # noqa: S603 -- fixed argv, no shell
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as exc:
            raise EnclaveLaunchError(f"cannot start enclave process: {exc}") from exc
        return SimEnclaveHandle(
            process, start_timeout=self._start_timeout, call_timeout=self._call_timeout
        )


class InProcessEnclaveHandle(_HandleBase):
    """The program runs in the calling process. FOR UNIT TESTS AND BENCHMARKS ONLY."""

    def __init__(self, dispatcher: EnclaveDispatcher) -> None:
        self._dispatcher = dispatcher
        self._hello = dispatcher.get_hello()
        self._lock = threading.Lock()
        self._closed = False

    def ecall(self, name: str, payload: bytes) -> bytes:
        with self._lock:
            if self._closed:
                raise EnclaveUnavailable("enclave handle is closed")
            reply = self._dispatcher.process_request(
                EcallRequest(name=name, payload=bytes(payload))
            )
        return _raise_for_reply(reply, name)

    def close(self) -> None:
        self._closed = True


class InProcessBackend:
    """Runs the program in this process: no isolation. FOR UNIT TESTS AND BENCHMARKS ONLY."""

    def launch(
        self,
        program: str,
        *,
        platform_key_file: Path,
        sealed_identity_file: Path | None = None,
        simulate_compromise: bool = False,
    ) -> InProcessEnclaveHandle:
        try:
            dispatcher = start_enclave(
                program,
                platform_key_file=platform_key_file,
                sealed_identity_file=sealed_identity_file,
                simulate_compromise=simulate_compromise,
            )
        except Exception as exc:
            raise EnclaveLaunchError(f"enclave did not start: {type(exc).__name__}: {exc}") from exc
        return InProcessEnclaveHandle(dispatcher)
