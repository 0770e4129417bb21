"""Typed ECALLs: each ECALL declared once, and read by both the enclave and its host.

Theory of operation
-------------------
An ECALL crosses the trust boundary as a name and bytes (``tee/backend.py``). An
:class:`Ecall` declares what those bytes carry, once for both sides:
``Ecall("process_block", BlockInput, BlockOutput)`` is a frozen value, defined beside the
program's messages (in a package the enclave may import) and imported by the program and
by every host that calls it. Nothing else about an ECALL is written twice.

Wire forms. A declared request or response type travels as

* its canonical msgpack encoding (``core.encoding``): a message, or plain data such as
  ``int`` or ``tuple[str, bytes]``;
* ``bytes``: the bytes themselves, unencoded (a quote, a secret, an output held back by
  an anchor and handed over as it was made);
* :class:`Nothing`: no bytes at all (``b""``): the request of an ECALL that takes no
  body, the answer of one that returns no content. Decoding also accepts the encoding of
  an empty message (``b"\\x80"``), which some programs used to answer instead.

Enclave side. A program method that takes the decoded request and returns the response
object is marked ``@SPEC.handler``; :func:`get_ecall_table` builds the ``name -> bytes ->
bytes`` table the dispatcher serves (``tee/dispatch.py``) from the program and the helper
objects it delegates to (a table shared by several programs, such as the committee's).
Each entry decodes the payload with the declared request type -- a malformed payload is
refused with a typed :class:`~sealbridge.core.errors.EncodingError` before the handler
runs, so it changes nothing --, calls the handler, checks that the answer is of the
declared response type (:class:`~sealbridge.tee.errors.EcallTypeError` otherwise: a
program bug must not reach the host as some other message) and encodes it. A program may
wrap entries of the table by name afterwards (the key-release programs journal and anchor
their changes at the byte level). Whatever trusted code raises crosses the boundary as
before: the dispatcher turns it into an error reply, and the host raises
:class:`~sealbridge.tee.errors.EnclaveCallError` with the original class name and code.

Host side. :func:`call` encodes the request, calls the ECALL by name on an enclave handle
and decodes the answer as the declared response type: the one place where host code turns
typed messages into an ECALL's bytes. The backend's built-in ECALLs (``sb.*``) are
declared here too (:data:`GET_QUOTE`, :data:`STAGE_KEYS`, :data:`SWITCH_KEYS`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sealbridge.core.encoding import Message, decode, decode_canonical, encode
from sealbridge.core.errors import ConfigError, EncodingError
from sealbridge.tee.backend import (
    ECALL_GET_QUOTE,
    ECALL_STAGE_KEYS,
    ECALL_SWITCH_KEYS,
    EnclaveHandle,
    StagedKeys,
)
from sealbridge.tee.enclave import NodeKeys, RawEcall
from sealbridge.tee.errors import EcallTypeError

__all__ = [
    "GET_QUOTE",
    "NOTHING",
    "STAGE_KEYS",
    "SWITCH_KEYS",
    "Ecall",
    "Nothing",
    "call",
    "get_ecall_table",
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Other = TypeVar("Other")
Value = TypeVar("Value")
Holder = TypeVar("Holder")

_HANDLER_ATTRIBUTE = "__sealbridge_ecall__"
_EMPTY_MESSAGE = b"\x80"  # msgpack: a map of no entries (a message without fields)


class Nothing(Message, frozen=True):
    """No body: the request of an ECALL that takes none, the answer of one that returns
    no content. On the wire it is no bytes at all."""


NOTHING = Nothing()


def _matches(value: object, kind: Any) -> bool:
    """True when ``value`` is of the declared type ``kind`` (for a generic alias such as
    ``list[X]``, of its container type; for a union, of one of its members)."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in typing.get_args(kind))
    if kind is None or kind is type(None):
        return value is None
    target = kind if origin is None else origin
    return isinstance(target, type) and isinstance(value, target)


def _type_name(kind: Any) -> str:
    return str(getattr(kind, "__name__", kind))


@dataclass(frozen=True)
class Ecall(Generic[Req, Resp]):
    """One ECALL: its name, the type of its request and the type of its answer.

    ``canonical``: refuse a request that is not canonically encoded (for requests whose
    bytes are compared or hashed)."""

    name: str
    request: type[Req]
    response: type[Resp]
    canonical: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"an ECALL needs a name, got {self.name!r}")

    # --- wire forms ------------------------------------------------------------------------

    def encode_request(self, request: Req) -> bytes:
        """The payload bytes of ``request``."""
        return self._encode(request, self.request, "request")

    def decode_request(self, payload: bytes) -> Req:
        """The request carried by ``payload``; EncodingError if it is malformed."""
        return self._decode(payload, self.request, canonical=self.canonical)

    def encode_response(self, response: Resp) -> bytes:
        """The answer bytes of ``response``; EcallTypeError if it is of another type."""
        return self._encode(response, self.response, "response")

    def decode_response(self, payload: bytes) -> Resp:
        """The answer carried by ``payload``; EncodingError if it is malformed."""
        return self._decode(payload, self.response, canonical=False)

    def _encode(self, value: Any, kind: Any, what: str) -> bytes:
        if not _matches(value, kind):
            raise EcallTypeError(
                f"ECALL {self.name!r}: the {what} is a {type(value).__name__}, "
                f"declared {_type_name(kind)}"
            )
        if kind is Nothing:
            return b""
        if kind is bytes:
            return bytes(value)
        data = encode(value)
        if not (isinstance(kind, type) and issubclass(kind, Message)):
            # plain data and generic aliases: the outer type matched; the items must too
            # (``True`` is no ``int`` on the wire, a list of other messages no ``list[X]``)
            try:
                decode(data, kind)
            except EncodingError as exc:
                raise EcallTypeError(
                    f"ECALL {self.name!r}: the {what} does not match {_type_name(kind)}: "
                    f"{exc.message}"
                ) from exc
        return data

    def _decode(self, payload: bytes, kind: type[Value], *, canonical: bool) -> Value:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise EncodingError(
                f"ECALL {self.name!r}: expected bytes, got {type(payload).__name__}"
            )
        if kind is Nothing:
            allowed = (b"",) if canonical else (b"", _EMPTY_MESSAGE)
            if bytes(payload) not in allowed:
                raise EncodingError(f"ECALL {self.name!r} takes no body ({len(payload)} bytes)")
            return typing.cast(Value, NOTHING)
        if kind is bytes:
            return typing.cast(Value, bytes(payload))
        return decode_canonical(payload, kind) if canonical else decode(payload, kind)

    # --- the enclave side ------------------------------------------------------------------

    def handler(self, fn: Callable[[Holder, Req], Resp]) -> Callable[[Holder, Req], Resp]:
        """Mark a method as this ECALL's handler (see :func:`get_ecall_table`)."""
        setattr(fn, _HANDLER_ATTRIBUTE, self)
        return fn

    def bind(self, fn: Callable[[Req], Resp]) -> RawEcall:
        """The table entry of this ECALL served by ``fn``: decode, call, check, encode."""

        def run(payload: bytes) -> bytes:
            return self.encode_response(fn(self.decode_request(payload)))

        run.__name__ = f"ecall_{self.name}"
        return run

    def answering(self, response: type[Other]) -> Ecall[Req, Other]:
        """The same ECALL read with another answer type (a wrapper, such as an anchoring
        guard, answers in its own message)."""
        return Ecall(self.name, self.request, response, self.canonical)


def get_ecall_table(*holders: object) -> dict[str, RawEcall]:
    """The ``name -> bytes -> bytes`` table of every ``@Ecall.handler`` method of
    ``holders`` (a program and the helper objects it delegates to); ConfigError if two
    handlers declare the same ECALL."""
    table: dict[str, RawEcall] = {}
    for holder in holders:
        cls = type(holder)
        for attribute in dir(cls):
            spec = getattr(getattr(cls, attribute, None), _HANDLER_ATTRIBUTE, None)
            if not isinstance(spec, Ecall):
                continue
            if spec.name in table:
                raise ConfigError(f"two handlers of ECALL {spec.name!r}")
            table[spec.name] = spec.bind(getattr(holder, attribute))
    return table


# --- the host side ---------------------------------------------------------------------------


def call(enclave: EnclaveHandle, spec: Ecall[Req, Resp], request: Req) -> Resp:
    """Call ECALL ``spec`` on ``enclave`` with ``request``; its typed answer. An error
    inside the enclave raises EnclaveCallError (UnknownEcall, EnclaveUnavailable: see the
    backend); a malformed answer raises EncodingError."""
    return spec.decode_response(enclave.ecall(spec.name, spec.encode_request(request)))


# --- the backend's built-in ECALLs (served by tee/dispatch.py) -------------------------------

GET_QUOTE = Ecall(ECALL_GET_QUOTE, Nothing, bytes)  # a quote over the node's own keys
STAGE_KEYS = Ecall(ECALL_STAGE_KEYS, Nothing, StagedKeys)
SWITCH_KEYS = Ecall(ECALL_SWITCH_KEYS, NodeKeys, NodeKeys, canonical=True)
