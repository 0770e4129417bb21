"""Contract storage: typed values and maps, with an undo journal.

Theory of operation
-------------------
A contract's persistent state is one :class:`Storage`: named *values* (``Value``
declarations) and named *maps* (``Map`` declarations). Writes go straight into the live
dicts -- reads are plain dict lookups, which keeps execution fast -- but every write first
records the slot's previous content in the current :class:`Journal`. A command that fails
rolls the journal back (newest first) and leaves every storage it touched exactly as it
was, across all contracts of a synchronous call tree. A block keeps the journals of its
commands until it ends, so a whole block can be undone as one unit.

Everything stored has one canonical msgpack encoding: ints fit in 64 bits, dict keys are
strings, containers are copied on write and on read (a contract can never mutate stored
state without a journaled write). Map keys are ``int``, ``str`` or ``bytes``; maps are
persisted as sorted ``[key, value]`` pairs and iterate in sorted key order, so the order a
contract sees never depends on insertion history or on the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from sealbridge.contracts.sdk import MAX_INT, MIN_INT
from sealbridge.core.encoding import Message
from sealbridge.core.errors import RemoteProtocolError

SCALARS = (int, float, str, bytes, bool)
CONTAINERS = (list, dict)
MAX_NESTING = 64  # levels of lists and dicts in a stored value, argument or result
_MISSING = object()
_ENCODER = msgspec.msgpack.Encoder(order="sorted")


class StorageRefused(RemoteProtocolError):
    """A contract tried to store something storage cannot hold."""

    code = "storage_error"


class PersistedStorage(Message, frozen=True):
    """The canonical, encodable form of one contract's storage."""

    values: dict[str, Any] = {}
    maps: dict[str, list[tuple[Any, Any]]] = {}


def check_int(value: int, what: str) -> None:
    if not MIN_INT <= value <= MAX_INT:
        raise StorageRefused(f"{what} does not fit in 64 bits")


def check_nesting(value: Any, what: str, limit: int = MAX_NESTING) -> None:
    """Refuse containers nested deeper than ``limit`` (iteratively: no recursion to blow)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is list or kind is tuple:
            children: Any = item
        elif kind is dict:
            children = item.values()
        else:
            continue
        if depth >= limit:
            raise StorageRefused(f"{what} is nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


def canonical_copy(value: Any, what: str) -> tuple[Any, int]:
    """A deep, canonical copy of ``value`` and its encoded size; refuse what cannot be
    stored (sets, objects, out-of-range ints, non-string dict keys, nesting deeper than
    :data:`MAX_NESTING`)."""
    kind = type(value)
    if kind is int:
        check_int(value, what)
        return value, 8
    if kind is str or kind is bytes:
        return value, len(value)
    if value is None or kind is bool or kind is float:
        return value, 8
    check_nesting(value, what)
    try:
        data = _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise StorageRefused(f"{what} cannot be stored: {exc}") from exc
    return msgspec.msgpack.decode(data), len(data)


def _key_size(name: str, key: Any) -> int:
    return len(name) + (8 if type(key) is int else len(key))


def copy_out(value: Any) -> Any:
    """What a read returns: scalars as they are, containers as fresh copies."""
    if type(value) is list or type(value) is dict:
        return msgspec.msgpack.decode(_ENCODER.encode(value))
    return value


class Journal:
    """Undo records of one command (or one block): (slot dict, key, previous content)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[dict[Any, Any], Any, Any]] = []

    def record(self, slots: dict[Any, Any], key: Any) -> None:
        self.entries.append((slots, key, slots.get(key, _MISSING)))

    def roll_back(self) -> None:
        self.roll_back_to(0)

    def mark(self) -> int:
        """A point to roll back to (the records kept so far)."""
        return len(self.entries)

    def roll_back_to(self, mark: int) -> None:
        """Undo the records made after ``mark`` (newest first)."""
        for slots, key, previous in reversed(self.entries[mark:]):
            if previous is _MISSING:
                slots.pop(key, None)
            else:
                slots[key] = previous
        del self.entries[mark:]

    def absorb(self, other: Journal) -> None:
        """Keep another journal's records (a finished command's, inside a block)."""
        self.entries.extend(other.entries)
        other.entries.clear()


class Storage:
    """One contract's live storage."""

    def __init__(self, persisted: PersistedStorage | None = None) -> None:
        base = persisted or PersistedStorage()
        self.values: dict[str, Any] = dict(base.values)
        self.maps: dict[str, dict[Any, Any]] = {
            name: {k: v for k, v in pairs} for name, pairs in base.maps.items()
        }
        self.journal: Journal | None = None
        self.writable = True
        # encoded bytes per slot and in all (journaled like the slots themselves), so a
        # contract's state can be capped without encoding it
        self.sizes: dict[tuple[Any, ...], int] = {}
        for name, value in self.values.items():
            self.sizes[("v", name)] = len(name) + canonical_copy(value, name)[1]
        for name, slots in self.maps.items():
            for key, item in slots.items():
                self.sizes[("m", name, key)] = _key_size(name, key) + canonical_copy(item, name)[1]
        self.total = {"size": sum(self.sizes.values())}

    def get_size(self) -> int:
        """About how many bytes the persisted state takes (keys and values)."""
        return int(self.total["size"])

    def _resize(self, slot: tuple[Any, ...], size: int) -> None:
        if self.journal is not None:
            self.journal.record(self.sizes, slot)
            self.journal.record(self.total, "size")
        self.total["size"] += size - self.sizes.get(slot, 0)
        if size:
            self.sizes[slot] = size
        else:
            self.sizes.pop(slot, None)

    # -- values -----------------------------------------------------------------------
    def get_value(self, name: str, default: Any) -> Any:
        value = self.values.get(name, _MISSING)
        return copy_out(default if value is _MISSING else value)

    def set_value(self, name: str, value: Any) -> int:
        """Store ``value``; the size of its encoding."""
        stored, size = self._prepare(value, f"value {name!r}")
        self._record(self.values, name)
        self.values[name] = stored
        self._resize(("v", name), len(name) + size)
        return size

    # -- maps -------------------------------------------------------------------------
    def get_map(self, name: str) -> dict[Any, Any]:
        slots = self.maps.get(name)
        if slots is None:
            slots = self.maps[name] = {}
        return slots

    def get_item(self, name: str, key: Any, default: Any) -> Any:
        value = self.get_map(name).get(key, _MISSING)
        return copy_out(default if value is _MISSING else value)

    def set_item(self, name: str, key: Any, value: Any) -> int:
        """Store ``value`` under ``key``; the size of its encoding."""
        stored, size = self._prepare(value, f"{name}[{key!r}]")
        slots = self.get_map(name)
        self._record(slots, key)
        slots[key] = stored
        self._resize(("m", name, key), _key_size(name, key) + size)
        return size

    def delete_item(self, name: str, key: Any) -> None:
        slots = self.get_map(name)
        if key in slots:
            self._prepare(None, f"{name}[{key!r}]")
            self._record(slots, key)
            del slots[key]
            self._resize(("m", name, key), 0)

    def has_item(self, name: str, key: Any) -> bool:
        slots = self.maps.get(name)
        return slots is not None and key in slots

    def count_items(self, name: str) -> int:
        slots = self.maps.get(name)
        return 0 if slots is None else len(slots)

    def list_keys(self, name: str) -> list[Any]:
        """The map's keys in sorted order (of one kind: a map's keys share its key kind)."""
        slots = self.maps.get(name)
        return [] if slots is None else sorted(slots)

    def iter_keys(self, name: str) -> Iterator[Any]:
        return iter(self.list_keys(name))

    # -- internals ----------------------------------------------------------------------
    def _prepare(self, value: Any, what: str) -> tuple[Any, int]:
        if not self.writable:
            raise StorageRefused("storage is read-only in a query")
        return canonical_copy(value, what)

    def _record(self, slots: dict[Any, Any], key: Any) -> None:
        if self.journal is not None:
            self.journal.record(slots, key)

    def snapshot(self) -> PersistedStorage:
        return PersistedStorage(
            values=dict(self.values),
            maps={
                name: [(k, slots[k]) for k in sorted(slots)]
                for name, slots in sorted(self.maps.items())
                if slots
            },
        )
