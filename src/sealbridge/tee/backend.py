"""Enclave backends: the host-side interface and the ECALL wire format.

Theory of operation: the host (untrusted) holds an :class:`EnclaveHandle` and can only
call named ECALLs with canonical bytes, read the enclave's public :class:`NodeKeys` and
measurement, and ask for a quote binding those keys. A :class:`EnclaveBackend` launches a
program (``"package.module:ClassName"``) and returns a handle.

Between host and enclave process, every message is a *frame*: a 4-byte big-endian length
followed by that many bytes of canonical msgpack. The host sends :class:`EcallRequest`;
the enclave answers each with one :class:`EcallReply`, either ``ok`` with the result
bytes or an error carrying the exception's class name, ``code`` and message. The first
frame the enclave sends, before any request, is a reply whose payload is an
:class:`EnclaveHello` (or an error if the enclave failed to start).

Built-in ECALLs use the reserved ``sb.`` prefix: ``sb.get_quote`` returns a quote over
``compute_report_data(node_keys)`` (the host cannot choose report data);
``sb.stage_keys`` stages fresh node keys for a registration renewal and returns them
with a quote binding them (:class:`StagedKeys`); ``sb.switch_keys`` makes the staged keys
current once the renewal is on chain (see ``tee/enclave.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

from sealbridge.core.encoding import Message
from sealbridge.core.errors import EncodingError
from sealbridge.tee.enclave import NodeKeys

FRAME_HEADER = 4
MAX_FRAME = 64 * 1024 * 1024
ECALL_GET_QUOTE = "sb.get_quote"
ECALL_STAGE_KEYS = "sb.stage_keys"
ECALL_SWITCH_KEYS = "sb.switch_keys"


class StagedKeys(Message, frozen=True):
    """Fresh node keys staged for a renewal, and a quote binding them."""

    node_keys: NodeKeys
    quote: bytes


class EcallRequest(Message, frozen=True):
    name: str
    payload: bytes


class EcallReply(Message, frozen=True):
    ok: bool
    payload: bytes = b""
    error_kind: str = ""
    error_code: str = ""
    error_message: str = ""


class EnclaveHello(Message, frozen=True):
    """Sent once by a started enclave."""

    program: str
    measurement: bytes
    node_keys: NodeKeys
    ecalls: list[str]


def compute_frame(data: bytes) -> bytes:
    """Length-prefix ``data`` as one frame."""
    if len(data) > MAX_FRAME:
        raise EncodingError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    return len(data).to_bytes(FRAME_HEADER, "big") + data


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read exactly ``n`` bytes (fewer only at EOF), looping over short reads."""
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> bytes | None:
    """Read one frame from a blocking stream; ``None`` on clean EOF before a frame."""
    header = _read_exact(stream, FRAME_HEADER)
    if not header:
        return None
    if len(header) != FRAME_HEADER:
        raise EncodingError("truncated frame header")
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME:
        raise EncodingError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    body = _read_exact(stream, size)
    if len(body) != size:
        raise EncodingError("truncated frame body")
    return body


class EnclaveHandle(Protocol):
    """The host's view of a running enclave."""

    @property
    def node_keys(self) -> NodeKeys: ...

    @property
    def measurement(self) -> bytes: ...

    @property
    def program(self) -> str: ...

    def ecall(self, name: str, payload: bytes) -> bytes: ...

    def get_quote(self) -> bytes: ...

    def stage_fresh_keys(self) -> StagedKeys: ...

    def switch_keys(self, keys: NodeKeys) -> NodeKeys: ...

    def close(self) -> None: ...


class EnclaveBackend(Protocol):
    """Launches enclave programs."""

    def launch(
        self,
        program: str,
        *,
        platform_key_file: Path,
        sealed_identity_file: Path | None = None,
        simulate_compromise: bool = False,
    ) -> EnclaveHandle: ...
