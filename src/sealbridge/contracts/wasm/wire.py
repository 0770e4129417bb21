"""What crosses the guest boundary, and a decoder for what comes back.

Host to guest, payloads are Python ``marshal`` data (the guest's ``marshal.loads`` is C,
so reading them costs the contract little fuel). Guest to host, payloads are ``marshal``
data of format version 2 too (``marshal.dumps`` is C in the guest, where a Python
encoder would cost tens of thousands of fuel per call), but the host never hands guest
bytes to ``marshal.loads``, which is not meant for hostile input. :func:`decode_guest`
reads only the plain kinds -- ``None``, booleans, ints of at most 64 bits, floats,
strings (valid UTF-8), bytes, lists, tuples (as lists) and dicts with string keys --
iteratively (no recursion to exhaust), with a cap on nesting and on size, and refuses
anything else with :class:`WireError`.

Both directions travel as WIT ``string`` values holding one character per byte
(latin-1), which wasmtime passes as UTF-8.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any

MAX_NESTING = 64
MAX_ITEMS = 1 << 20  # elements of one list or dict
_INT32 = struct.Struct("<i")
_DOUBLE = struct.Struct("<d")


class WireError(ValueError):
    """Guest bytes that are not plain, bounded data."""


def to_guest(value: Any) -> str:
    """``value`` (plain data the host trusts) as a payload for the guest."""
    return marshal.dumps(value, 4).decode("latin-1")


def decode_guest(data: bytes, max_nesting: int = MAX_NESTING) -> Any:
    """The plain value marshalled (format 2) in ``data``; WireError if it is anything else."""
    size = len(data)
    if size:  # the common scalars, without the general loop
        code = data[0]
        if code == 0x69 and size == 5:
            return _INT32.unpack_from(data, 1)[0]
        if code == 0x73 and size >= 5 and size == 5 + _INT32.unpack_from(data, 1)[0]:
            return data[5:]
        if code == 0x4E and size == 1:
            return None
    return _decode_general(data, max_nesting)


def _decode_general(data: bytes, max_nesting: int) -> Any:
    view = memoryview(data)
    end = len(view)
    pos = 0
    # open containers: [container, items left, pending dict key or _NO_KEY, is_dict]
    stack: list[list[Any]] = []
    result: Any = _NOTHING
    while True:
        if pos >= end:
            raise WireError("the data ends early")
        code = view[pos]
        pos += 1
        value: Any
        container: list[Any] | dict[str, Any] | None = None
        count = 0
        if code == 0x4E:  # N
            value = None
        elif code == 0x54:  # T
            value = True
        elif code == 0x46:  # F
            value = False
        elif code == 0x69:  # i: int32
            value, pos = _read_int32(view, pos, end), pos + 4
        elif code == 0x6C:  # l: long, 15-bit digits
            value, pos = _read_long(view, pos, end)
        elif code == 0x67:  # g: binary float
            if pos + 8 > end:
                raise WireError("the data ends early")
            value = _DOUBLE.unpack_from(view, pos)[0]
            pos += 8
        elif code in (0x75, 0x73):  # u: text, s: bytes
            size = _read_int32(view, pos, end)
            pos += 4
            if size < 0 or pos + size > end:
                raise WireError("a string runs past the data")
            raw = bytes(view[pos : pos + size])
            pos += size
            if code == 0x73:
                value = raw
            else:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WireError("text is not valid UTF-8") from exc
        elif code in (0x5B, 0x28):  # [ list, ( tuple
            count = _read_int32(view, pos, end)
            pos += 4
            if not 0 <= count <= MAX_ITEMS or count > end - pos:
                raise WireError("a list's length is out of bounds")
            container = value = []
        elif code == 0x7B:  # { dict, closed by 0
            count = -1
            container = value = {}
        elif code == 0x30 and stack and stack[-1][3] and stack[-1][2] is _NO_KEY:
            stack.pop()  # a dict ends
            value = _CLOSED
        else:
            raise WireError(f"kind {chr(code)!r} may not cross the boundary")
        if container is not None:
            if len(stack) >= max_nesting:
                raise WireError(f"data nests deeper than {max_nesting} levels")
        if value is not _CLOSED:
            if not stack:
                result = value
            else:
                top = stack[-1]
                if top[3]:  # a dict: a key, then its value
                    if top[2] is _NO_KEY:
                        if type(value) is not str:
                            raise WireError("dict keys must be strings")
                        top[2] = value
                    else:
                        top[0][top[2]] = value
                        top[2] = _NO_KEY
                        if len(top[0]) > MAX_ITEMS:
                            raise WireError("a dict is too large")
                else:
                    top[0].append(value)
                    top[1] -= 1
            if container is not None and count != 0:
                stack.append([container, count, _NO_KEY, count < 0])
        while stack and not stack[-1][3] and stack[-1][1] == 0:
            stack.pop()
        if not stack:
            if pos != end:
                raise WireError("extra bytes after the data")
            return result


def _read_int32(view: memoryview, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise WireError("the data ends early")
    return int(_INT32.unpack_from(view, pos)[0])


def _read_long(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    count = _read_int32(view, pos, end)
    pos += 4
    size = abs(count)
    if size > 5:  # 75 bits: more than any 64-bit int needs
        raise WireError("an int does not fit in 64 bits")
    if pos + 2 * size > end:
        raise WireError("the data ends early")
    value = 0
    for index in range(size):
        digit = view[pos + 2 * index] | (view[pos + 2 * index + 1] << 8)
        if digit >= 1 << 15:
            raise WireError("a malformed int")
        value |= digit << (15 * index)
    return (-value if count < 0 else value), pos + 2 * size


class _Marker:
    __slots__ = ()


_NOTHING = _Marker()
_CLOSED = _Marker()
_NO_KEY = _Marker()
