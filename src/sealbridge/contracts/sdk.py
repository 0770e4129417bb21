"""The contract SDK: everything a confidential contract's author imports.

A contract is one Python class deriving from :class:`Contract`::

    from sealbridge.contracts.sdk import ANYONE, Contract, Map, Value, command, init, query

    class Counter(Contract):
        count = Value(int, default=0)
        by_caller = Map(bytes, int, default=0)

        @init
        def setup(self, start: int) -> None:
            self.count = start

        @command
        def bump(self) -> int:
            self.count = self.count + 1
            self.by_caller[self.env.caller] = self.by_caller[self.env.caller] + 1
            return self.count

        @query(readers=ANYONE)
        def current(self) -> int:
            return self.count

* **Storage** is declared on the class: ``Value(kind, default)`` for one value,
  ``Map(key_kind, value_kind, default)`` for a map. Nothing else on ``self`` persists, and
  assigning an undeclared attribute is an error.
* **Commands** (``@command``) change state; they arrive as encrypted, signed transactions
  and run once per executor, in chain order. ``@init`` runs once, at deploy, as the
  deployer. A command that raises (``require``, :class:`ContractError`, running out of
  gas...) changes nothing.
* **Queries** (``@query(readers=...)``) read state and must say who may call them:
  :data:`ANYONE`, :data:`DEPLOYER`, ``arg("owner")`` (the caller must be that argument),
  or a function ``(self, caller) -> bool`` defined in the class.
* ``self.env`` tells a method who calls it, in which block, and gives a deterministic seed;
  ``self.call(contract_id, method, **args)`` calls another contract synchronously (if the
  callee fails, the whole command fails: a caller cannot catch it);
  ``self.send(contract_id, method, **args)`` sends it an asynchronous message.

This module uses only the standard library: the very same file is built into the
WebAssembly guest that runs contracts (``contracts/wasm/``), and imported plainly by the
benchmarks' baseline, where the executor hands it a host-side storage. Whatever a method
reaches through ``self`` goes through the running :class:`Context`; in the guest, that is
a thin client of the host functions, so storage, calls and messages live outside the
contract's memory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar, overload

T = TypeVar("T")
K = TypeVar("K")
F = TypeVar("F", bound=Callable[..., Any])

ANYONE = "anyone"
DEPLOYER = "deployer"
KIND_ATTR = "sealbridge_kind"
READERS_ATTR = "sealbridge_readers"
VALUE_KINDS: tuple[type[Any], ...] = (int, float, str, bytes, bool, list, dict)
KEY_KINDS: tuple[type[Any], ...] = (int, str, bytes)
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1


class ContractError(Exception):
    """Raised by a contract to refuse a command or query. ``code`` is a short
    snake_case word the caller sees; ``message`` explains it."""

    code = "contract_error"

    def __init__(self, message: str, code: str = "contract_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class StorageError(ContractError):
    """A contract tried to store something storage cannot hold."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "storage_error")


def require(condition: object, message: str, code: str = "requirement_failed") -> None:
    """Refuse the command unless ``condition`` holds."""
    if not condition:
        raise ContractError(message, code)


class Env(tuple[Any, ...]):
    """What a method may learn from outside its storage (read-only)."""

    __slots__ = ()

    def __new__(
        cls,
        contract_id: bytes,
        caller: bytes,
        caller_is_contract: bool,
        deployer: bytes,
        block_number: int,
        seed: bytes,
    ) -> Env:
        return tuple.__new__(
            cls, (contract_id, caller, caller_is_contract, deployer, block_number, seed)
        )

    @property
    def contract_id(self) -> bytes:
        """This contract's id."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def caller(self) -> bytes:
        """A user's Ed25519 key, or the calling contract's id."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def caller_is_contract(self) -> bool:
        return self[2]  # type: ignore[no-any-return]

    @property
    def deployer(self) -> bytes:
        return self[3]  # type: ignore[no-any-return]

    @property
    def block_number(self) -> int:
        return self[4]  # type: ignore[no-any-return]

    @property
    def seed(self) -> bytes:
        """Deterministic per (block, contract, command); the same on every executor."""
        return self[5]  # type: ignore[no-any-return]


class StorageAccess(Protocol):
    """The storage operations a running contract may use."""

    def get_value(self, name: str, default: Any) -> Any: ...

    def set_value(self, name: str, value: Any) -> object: ...

    def get_item(self, name: str, key: Any, default: Any) -> Any: ...

    def set_item(self, name: str, key: Any, value: Any) -> object: ...

    def delete_item(self, name: str, key: Any) -> None: ...

    def has_item(self, name: str, key: Any) -> bool: ...

    def count_items(self, name: str) -> int: ...

    def list_keys(self, name: str) -> list[Any]: ...


class Context(Protocol):
    """What the executor gives a running contract (hidden from contract code)."""

    @property
    def env(self) -> Env: ...

    @property
    def storage(self) -> StorageAccess: ...

    def call(self, contract_id: bytes, method: str, args: dict[str, Any]) -> Any: ...

    def send(self, contract_id: bytes, method: str, args: dict[str, Any]) -> None: ...


_IMMUTABLE: tuple[type[Any], ...] = (int, float, str, bytes, bool, type(None))


def _own_copy(value: Any) -> Any:
    """A copy of ``value`` nobody else holds (immutable values are their own copy)."""
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


def check_int(value: int, what: str) -> None:
    if not MIN_INT <= value <= MAX_INT:
        raise StorageError(f"{what} does not fit in 64 bits")


def _check_kind(value: Any, kind: type[Any], what: str) -> Any:
    if kind is float and type(value) is int:
        check_int(value, what)
        return float(value)
    if type(value) is not kind and value is not None:
        raise StorageError(f"{what} must be {kind.__name__}, got {type(value).__name__}")
    return value


class Value(Generic[T]):
    """One persistent value of a declared kind."""

    def __init__(self, kind: type[T], default: T) -> None:
        if kind not in VALUE_KINDS:
            raise TypeError(f"Value kind must be one of {[k.__name__ for k in VALUE_KINDS]}")
        self.kind = kind
        self._default = _own_copy(default)
        self.name = ""

    @property
    def default(self) -> T:
        """A copy of the declared default (the declaration itself holds no state)."""
        return _own_copy(self._default)  # type: ignore[no-any-return]

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Value[T]: ...

    @overload
    def __get__(self, instance: Contract, owner: type[Any]) -> T: ...

    def __get__(self, instance: Contract | None, owner: type[Any]) -> Value[T] | T:
        if instance is None:
            return self
        return instance._ctx.storage.get_value(self.name, self._default)  # type: ignore[no-any-return]

    def __set__(self, instance: Contract, value: T) -> None:
        value = _check_kind(value, self.kind, f"value {self.name!r}")
        instance._ctx.storage.set_value(self.name, value)


class MapView(Generic[K, T]):
    """A declared map, as a method sees it: ``m[key]``, ``m[key] = v``, ``del m[key]``,
    ``key in m``, ``m.get(key)``, and sorted ``keys()`` / ``items()``."""

    __slots__ = ("_storage", "_name", "_key_kind", "_value_kind", "_default")

    def __init__(
        self,
        storage: StorageAccess,
        name: str,
        key_kind: type[K],
        value_kind: type[T],
        default: T,
    ) -> None:
        self._storage = storage
        self._name = name
        self._key_kind = key_kind
        self._value_kind = value_kind
        self._default = default

    def _key(self, key: Any) -> Any:
        kind = type(key)
        if kind is not self._key_kind:
            raise StorageError(
                f"{self._name} keys are {self._key_kind.__name__}, got {kind.__name__}"
            )
        if kind is int:
            check_int(key, f"{self._name} key")
        return key

    def __getitem__(self, key: K) -> T:
        return self._storage.get_item(self._name, self._key(key), self._default)  # type: ignore[no-any-return]

    def get(self, key: K, default: T | None = None) -> T | None:
        k = self._key(key)
        if not self._storage.has_item(self._name, k):
            return default
        return self._storage.get_item(self._name, k, default)  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: T) -> None:
        value = _check_kind(value, self._value_kind, f"{self._name}[...]")
        self._storage.set_item(self._name, self._key(key), value)

    def __delitem__(self, key: K) -> None:
        self._storage.delete_item(self._name, self._key(key))

    def __contains__(self, key: object) -> bool:
        if type(key) is not self._key_kind:
            return False
        return self._storage.has_item(self._name, key)

    def __len__(self) -> int:
        return self._storage.count_items(self._name)

    def keys(self) -> list[K]:
        return self._storage.list_keys(self._name)

    def items(self) -> list[tuple[K, T]]:
        return [(k, self[k]) for k in self._storage.list_keys(self._name)]

    def values(self) -> list[T]:
        return [self[k] for k in self._storage.list_keys(self._name)]

    def __iter__(self) -> Iterator[K]:
        return iter(self._storage.list_keys(self._name))


class Map(Generic[K, T]):
    """A persistent map from ``key_kind`` (int, str or bytes) to ``value_kind``; missing
    keys read as ``default``."""

    def __init__(self, key_kind: type[K], value_kind: type[T], default: T) -> None:
        if key_kind not in KEY_KINDS:
            raise TypeError("Map keys must be int, str or bytes")
        if value_kind not in VALUE_KINDS:
            raise TypeError(f"Map values must be one of {[k.__name__ for k in VALUE_KINDS]}")
        self.key_kind = key_kind
        self.value_kind = value_kind
        self._default = _own_copy(default)
        self.name = ""

    @property
    def default(self) -> T:
        """A copy of the declared default (the declaration itself holds no state)."""
        return _own_copy(self._default)  # type: ignore[no-any-return]

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Map[K, T]: ...

    @overload
    def __get__(self, instance: Contract, owner: type[Any]) -> MapView[K, T]: ...

    def __get__(self, instance: Contract | None, owner: type[Any]) -> Map[K, T] | MapView[K, T]:
        if instance is None:
            return self
        views = instance._views
        view = views.get(self.name)
        if view is None:
            view = views[self.name] = MapView(
                instance._ctx.storage, self.name, self.key_kind, self.value_kind, self._default
            )
        return view

    def __set__(self, instance: Contract, value: Any) -> None:
        raise StorageError(f"assign to items of map {self.name!r}, not to the map itself")


class Contract:
    """Base class of every contract. Subclasses declare storage and methods only."""

    _ctx: Context  # set by the executor; contract code cannot reach it by name
    _views: dict[str, MapView[Any, Any]]  # the maps' views, made once per invocation

    def __init__(self, context: Context) -> None:
        object.__setattr__(self, "_ctx", context)
        object.__setattr__(self, "_views", {})

    def __setattr__(self, name: str, value: Any) -> None:
        declared = getattr(type(self), name, None)
        if not isinstance(declared, Value | Map):
            raise StorageError(f"{name!r} is not declared storage (declare it with Value or Map)")
        declared.__set__(self, value)

    @property
    def env(self) -> Env:
        return self._ctx.env

    def call(self, contract_id: bytes, method: str, **args: Any) -> Any:
        """Run ``method`` of another contract now; if it fails, this whole command fails."""
        return self._ctx.call(contract_id, method, args)

    def send(self, contract_id: bytes, method: str, **args: Any) -> None:
        """Send ``method`` to another contract as a message delivered in a later block."""
        self._ctx.send(contract_id, method, args)


# -- decorators ----------------------------------------------------------------------------
def command(fn: F) -> F:
    """Mark a method as a command (a state-changing transaction)."""
    setattr(fn, KIND_ATTR, "command")
    return fn


def init(fn: F) -> F:
    """Mark the method that runs once at deploy, called by the deployer."""
    setattr(fn, KIND_ATTR, "init")
    return fn


class ArgReader:
    """Readers rule: the caller must equal the named argument."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def arg(name: str) -> ArgReader:
    """``readers=arg("owner")``: only the caller named by argument ``owner`` may query."""
    return ArgReader(name)


Readers = str | ArgReader | Callable[[Any, bytes], bool]


def query(*, readers: Readers) -> Callable[[F], F]:
    """Mark a method as a query (read-only) and declare who may call it."""
    if not (readers in (ANYONE, DEPLOYER) or isinstance(readers, ArgReader) or callable(readers)):
        raise TypeError('readers must be ANYONE, DEPLOYER, arg("name") or a function')

    def mark(fn: F) -> F:
        setattr(fn, KIND_ATTR, "query")
        setattr(fn, READERS_ATTR, readers)
        return fn

    return mark


def is_reader(instance: Contract, function: Any, args: dict[str, Any], caller: bytes) -> str:
    """Why ``caller`` may not run query ``function`` with ``args`` ("" when it may)."""
    readers = getattr(function, READERS_ATTR, None)
    if readers == ANYONE:
        return ""
    if readers == DEPLOYER:
        return (
            "" if caller == instance.env.deployer else "only the contract's deployer may ask this"
        )
    if isinstance(readers, ArgReader):
        if args.get(readers.name) == caller:
            return ""
        return f"only the account given as {readers.name!r} may ask this"
    if callable(readers) and readers(instance, caller) is True:
        return ""
    return "the contract does not let this caller ask this"


PUBLIC_NAMES = (
    "ANYONE",
    "DEPLOYER",
    "Contract",
    "ContractError",
    "Map",
    "Value",
    "arg",
    "command",
    "init",
    "query",
    "require",
)
