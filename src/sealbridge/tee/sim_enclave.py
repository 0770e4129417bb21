"""Entry point of a sim enclave process: ``python -m sealbridge.tee.sim_enclave``.

Theory of operation: the host starts this module as a child process with the program's
import path, the platform key file and optionally a sealed-identity file. The process
first moves its real stdout aside (so a stray ``print`` in trusted code goes to stderr
and cannot corrupt the frame stream), starts the enclave, sends the hello frame, then
serves one reply per request frame read from stdin until stdin closes, and exits 0.
If the enclave cannot start it sends an error frame and exits 3.

Like a hardware enclave, whose heap is fixed when it is built (Gramine's
``sgx.enclave_size``), the process caps its own address space (``RLIMIT_AS``,
``--memory-limit-mib``, default 4096): an allocation beyond it fails with MemoryError inside
the enclave -- a contract's command then fails with ``out_of_memory`` -- instead of
exhausting the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path
from typing import BinaryIO

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import EncodingError
from sealbridge.tee.backend import EcallReply, EcallRequest, compute_frame, read_frame
from sealbridge.tee.dispatch import compute_error_reply, start_enclave
from sealbridge.tee.hardware import TEE_BACKENDS

EXIT_LAUNCH_FAILED = 3
EXIT_PROTOCOL_ERROR = 4
DEFAULT_MEMORY_LIMIT_MIB = 4096


def limit_memory(mib: int) -> None:
    """Cap the process's address space (never above an existing hard limit)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mib * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _send(out: BinaryIO, reply: EcallReply) -> None:
    out.write(compute_frame(encode(reply)))
    out.flush()


def _take_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Private binary streams for the frames; fd 1 becomes a copy of stderr."""
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(0, "rb", buffering=0), os.fdopen(out_fd, "wb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sealbridge.tee.sim_enclave")
    parser.add_argument("--program", required=True)
    parser.add_argument("--platform-key-file", type=Path, default=None)  # the sim backend's
    parser.add_argument("--tee", choices=TEE_BACKENDS, default="sim")
    parser.add_argument("--tee-root", type=Path, default=None)  # the hardware interface dir
    parser.add_argument("--sealed-identity-file", type=Path, default=None)
    parser.add_argument("--memory-limit-mib", type=int, default=DEFAULT_MEMORY_LIMIT_MIB)
    parser.add_argument("--simulate-compromise", action="store_true")
    args = parser.parse_args(argv)
    inp, out = _take_stdio()
    if args.memory_limit_mib > 0:
        limit_memory(args.memory_limit_mib)
    try:
        dispatcher = start_enclave(
            args.program,
            platform_key_file=args.platform_key_file,
            sealed_identity_file=args.sealed_identity_file,
            simulate_compromise=args.simulate_compromise,
            tee=args.tee,
            tee_root=args.tee_root,
        )
    except Exception as exc:  # report why the enclave did not start, then exit
        _send(out, compute_error_reply(exc))
        return EXIT_LAUNCH_FAILED
    _send(out, EcallReply(ok=True, payload=encode(dispatcher.get_hello())))
    while True:
        try:
            frame = read_frame(inp)
            if frame is None:
                return 0
            request = decode(frame, EcallRequest)
        except (EncodingError, ValueError) as exc:  # msgspec: UnicodeDecodeError
            _send(out, compute_error_reply(exc))
            return EXIT_PROTOCOL_ERROR
        _send(out, dispatcher.process_request(request))


if __name__ == "__main__":
    sys.exit(main())
