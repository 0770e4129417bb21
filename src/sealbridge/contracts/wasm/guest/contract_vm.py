"""The guest side of the contract VM: runs inside CPython compiled to WebAssembly.

Theory of operation
-------------------
This module is the entry point of the WebAssembly component that ``componentize-py``
builds (``contracts/wasm/build.py``); the interpreter is snapshotted with it imported, so
an instance starts ready. The host (``contracts/wasm/engine.py``) gives one instance to
one contract for at most one block and calls three exports:

* ``compile(source, filename)`` -- compile contract source (at deploy) and return the
  marshalled code object, or the line and message of a syntax error;
* ``load(code)`` -- run the module body once in fresh globals whose ``__import__`` admits
  only the SDK and a short list of deterministic standard modules; find the one
  ``Contract`` subclass and return its method table;
* ``invoke(request)`` -- run one method on a fresh contract object and return its result
  or its error (with the contract's line).

Storage, synchronous calls and messages are host functions (``host(op, payload)``): the
state lives outside this memory, the host validates and journals every write, charges
fuel for it, and ends the whole command (a trap) when a callee fails, so nothing here
can keep a failed call's writes. Everything in this module is untrusted by the host: a
contract that broke out of its module could call ``host`` with anything, and the host
checks every payload as hostile input.

Payloads from the host are marshal data; payloads to the host are msgpack built by the
small encoder below (deterministic, depth- and size-bounded).
"""

# modules preloaded into the snapshot so a contract's import costs nothing
import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import dataclasses  # noqa: F401
import decimal  # noqa: F401
import enum  # noqa: F401
import fractions  # noqa: F401
import functools  # noqa: F401
import gc
import heapq  # noqa: F401
import inspect
import itertools  # noqa: F401
import json  # noqa: F401
import marshal
import math  # noqa: F401
import operator  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401
import string  # noqa: F401
import sys
import typing  # noqa: F401

import wit_world
from wit_world import host as _host

import sealbridge.contracts.sdk as sdk

OP_GET_VALUE = 1
OP_GET_ITEM = 2
OP_HAS_ITEM = 3
OP_COUNT_ITEMS = 4
OP_LIST_KEYS = 5
OP_WRITE = 6
OP_CALL = 7
OP_SEND = 8
WRITE_VALUE = 0
WRITE_ITEM = 1
DELETE_ITEM = 2

ALLOWED_IMPORTS = frozenset(
    {
        "sealbridge.contracts.sdk", "bisect", "collections", "dataclasses", "decimal",
        "enum", "fractions", "functools", "heapq", "itertools", "json", "math", "operator",
        "re", "statistics", "string", "typing", "__future__",
    }
)  # fmt: skip
REMOVED_BUILTINS = (
    "open", "exec", "eval", "compile", "input", "breakpoint", "help", "exit", "quit",
    "print", "globals", "locals", "vars", "memoryview",
)  # fmt: skip
MAX_MESSAGE = 1000
MAX_VALUE_SIZE = 1 << 20  # as contracts/gas.py (the host enforces its own copy)
MAX_WRITE_BYTES = 4 << 20
_real_import = __import__


# -- encoding (guest -> host: marshal format 2, which the host decodes as hostile) ----------
class EncodeError(ValueError):
    pass


def pack_bytes(value):
    try:
        return _dumps(value, 2)
    except (ValueError, TypeError, RecursionError):
        raise EncodeError(f"{type(value).__name__} cannot be stored or passed") from None


def pack(value):
    return pack_bytes(value).decode("latin-1")


_dumps = marshal.dumps
_loads = marshal.loads
_make_env = tuple.__new__


def _ask(op, parts):
    try:
        payload = _dumps(parts, 2).decode("latin-1")
    except (ValueError, TypeError, RecursionError):
        raise sdk.StorageError("a value cannot be stored or passed") from None
    ok, value = _loads(_host(op, payload).encode("latin-1"))
    if not ok:
        raise sdk.StorageError(value)
    return value


def _copy(value):
    if type(value) is list or type(value) is dict:
        return marshal.loads(marshal.dumps(value))
    return value


_MISSING = object()  # not in the cache
_ABSENT = object()  # cached: the slot holds nothing


class GuestStorage:
    """``sdk.StorageAccess`` over the host functions, for one invocation.

    No other code can change this contract's storage while it runs (a call back into a
    running contract is refused), so reads are cached and writes are buffered here; the
    buffer reaches the host with the reply (or earlier, before a read that needs the
    host's whole view of a map). The host validates, charges and journals every write."""

    __slots__ = ("cache", "writes", "read_only", "written")

    def __init__(self, read_only):
        self.cache = {}
        self.writes = {}
        self.read_only = read_only
        self.written = 0

    def _write(self, slot, kind, name, key, value):
        if self.read_only:
            raise sdk.StorageError("storage is read-only in a query")
        try:
            data = pack_bytes(value)
        except EncodeError as exc:
            raise sdk.StorageError(f"{name} cannot hold this value: {exc}") from None
        if len(data) > MAX_VALUE_SIZE:
            raise sdk.ContractError(
                f"a stored value may be at most {MAX_VALUE_SIZE} bytes ({name})", "too_large"
            )
        self.written += len(data)
        if self.written > MAX_WRITE_BYTES:
            raise sdk.ContractError(
                f"a command may write at most {MAX_WRITE_BYTES} bytes", "too_large"
            )
        self.writes[slot] = [kind, name, key, data]
        self.cache[slot] = _ABSENT if kind == DELETE_ITEM else _copy(value)

    def flush(self):
        if self.writes:
            writes = list(self.writes.values())
            self.writes = {}
            _ask(OP_WRITE, [writes])

    def take_writes(self):
        writes = list(self.writes.values())
        self.writes = {}
        return writes

    def get_value(self, name, default):
        slot = (0, name)
        value = self.cache.get(slot, _MISSING)
        if value is _MISSING:
            found, value = _ask(OP_GET_VALUE, [name])
            if not found:
                value = _ABSENT
            self.cache[slot] = value
        return _copy(default) if value is _ABSENT else _copy(value)

    def set_value(self, name, value):
        self._write((0, name), WRITE_VALUE, name, None, value)

    def get_item(self, name, key, default):
        slot = (1, name, type(key), key)
        value = self.cache.get(slot, _MISSING)
        if value is _MISSING:
            found, value = _ask(OP_GET_ITEM, [name, key])
            if not found:
                value = _ABSENT
            self.cache[slot] = value
        return _copy(default) if value is _ABSENT else _copy(value)

    def set_item(self, name, key, value):
        self._write((1, name, type(key), key), WRITE_ITEM, name, key, value)

    def delete_item(self, name, key):
        self._write((1, name, type(key), key), DELETE_ITEM, name, key, None)

    def has_item(self, name, key):
        value = self.cache.get((1, name, type(key), key), _MISSING)
        if value is _MISSING:
            return _ask(OP_HAS_ITEM, [name, key])
        return value is not _ABSENT

    def count_items(self, name):
        self.flush()
        return _ask(OP_COUNT_ITEMS, [name])

    def list_keys(self, name):
        self.flush()
        return _ask(OP_LIST_KEYS, [name])


class GuestContext:
    """``sdk.Context`` over the host functions."""

    __slots__ = ("env", "storage")

    def __init__(self, env, storage):
        self.env = env
        self.storage = storage

    def call(self, contract_id, method, args):
        return _ask(OP_CALL, [contract_id, method, args])

    def send(self, contract_id, method, args):
        _ask(OP_SEND, [contract_id, method, args])


# -- contract loading ---------------------------------------------------------------------
def _contract_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level != 0 or name not in ALLOWED_IMPORTS:
        raise ImportError(f"contracts may not import {name!r}")
    return _real_import(name, globals, locals, fromlist, level)


def _make_builtins():
    import builtins

    table = dict(vars(builtins))
    for name in REMOVED_BUILTINS:
        table.pop(name, None)
    table["__import__"] = _contract_import
    return table


_state = {"cls": None, "filename": "<contract>"}


def _line_of(exc):
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _state["filename"]:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _text(value):
    try:
        text = value if type(value) is str else str(value)
    except Exception:  # noqa: BLE001 -- a contract's __str__ may fail
        text = "(unprintable)"
    return text[:MAX_MESSAGE]


def _method_table(cls):
    table = []
    for name, member in vars(cls).items():
        kind = getattr(member, sdk.KIND_ATTR, None)
        if kind is None or not callable(member):
            continue
        params = list(inspect.signature(member).parameters.values())[1:]
        bad = [p.name for p in params if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        kinds = {}
        for p in params:
            annotation = p.annotation
            if isinstance(annotation, str):
                kinds[p.name] = annotation
            elif isinstance(annotation, type):
                kinds[p.name] = annotation.__name__
        table.append(
            [
                name,
                str(kind),
                [p.name for p in params],
                [p.name for p in params if p.default is p.empty],
                kinds,
                bad,
            ]
        )
    return table


def _load(request):
    code, want_table = marshal.loads(request)
    module = marshal.loads(code)
    _state["filename"] = module.co_filename
    namespace = {"__builtins__": _make_builtins(), "__name__": "contract"}
    exec(module, namespace)  # noqa: S102 -- the contract's own module body, in this VM
    found = [
        value
        for value in namespace.values()
        if isinstance(value, type) and issubclass(value, sdk.Contract) and value is not sdk.Contract
    ]
    if len(found) != 1:
        raise sdk.ContractError(
            f"the module must define exactly one Contract subclass, found {len(found)}",
            "code_rejected",
        )
    _state["cls"] = found[0]
    return _method_table(found[0]) if want_table else []


def _invoke(kind, method, args, env):
    cls = _state["cls"]
    if cls is None:
        raise sdk.ContractError("no contract is loaded", "not_loaded")
    storage = GuestStorage(kind == "query")
    instance = cls(GuestContext(_make_env(sdk.Env, env), storage))
    function = getattr(cls, method)
    if kind == "query":
        why = sdk.is_reader(instance, function, args, env[1])
        if why:
            return ["denied", why]
    value = function(instance, **args)
    try:
        result = pack_bytes(value)
    except EncodeError as exc:
        return ["error", "bad_result", f"the result cannot be returned: {exc}", 0]
    return ["ok", result, list(storage.writes.values())]


def _failure(exc):
    if isinstance(exc, sdk.ContractError):
        code = exc.code if type(exc.code) is str else "contract_error"
        return ["error", code[:64], _text(getattr(exc, "message", "")), _line_of(exc)]
    if isinstance(exc, RecursionError):
        return ["error", "call_depth_exceeded", "recursion too deep", _line_of(exc)]
    if isinstance(exc, MemoryError):
        return ["error", "out_of_memory", "the contract ran out of memory", _line_of(exc)]
    return [
        "error",
        "contract_exception",
        _text(type(exc).__name__) + ": " + _text(exc),
        _line_of(exc),
    ]


def _reply(outcome):
    try:
        return pack(outcome)
    except EncodeError as exc:
        return pack(["error", "bad_result", f"the result cannot be returned: {exc}", 0])
    except RecursionError:
        return pack(["error", "bad_result", "the result is nested too deeply", 0])


class WitWorld(wit_world.WitWorld):
    def compile(self, source: str, filename: str) -> str:
        _state["filename"] = filename
        try:
            code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
        except SyntaxError as exc:
            return pack(["error", exc.lineno or 0, _text(exc.msg)])
        except (ValueError, RecursionError, MemoryError) as exc:
            return pack(["error", 0, _text(exc)])
        return pack(["ok", marshal.dumps(code)])

    def load(self, code: str) -> str:
        try:
            table = _load(code.encode("latin-1"))
            return _reply(["ok", table])
        except BaseException as exc:  # noqa: BLE001 -- any failure of the module body
            return _reply(_failure(exc))

    def invoke(self, request: str) -> str:
        try:
            kind, method, args, env = marshal.loads(request.encode("latin-1"))
            return _reply(_invoke(kind, method, args, env))
        except BaseException as exc:  # noqa: BLE001 -- any failure of the method
            return _reply(_failure(exc))


sys.setrecursionlimit(400)

# Everything above is in the snapshot: move it to the permanent generation so that the
# collector of a fresh instance never walks (and never faults in) the interpreter's heap.
gc.collect()
gc.freeze()
