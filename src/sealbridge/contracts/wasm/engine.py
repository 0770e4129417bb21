"""The host side of the contract VM: wasmtime running the CPython guest.

Theory of operation
-------------------
One process holds one :class:`Vm`: a wasmtime ``Engine`` configured for deterministic
execution (fuel metering, NaN canonicalization, a fixed maximum wasm stack), the guest
component compiled once and cached on disk (``build.py``), and a component ``Linker``
whose single import, ``host(op, payload)``, forwards to whoever is running the current
call (:class:`HostHandler`, the executor).

A :class:`VmInstance` is one instantiation in its own ``Store`` with a linear-memory limit:
nothing is shared between two instances but the read-only machine code, so a contract
never sees another contract's memory, the enclave's keys or the host's objects.
:meth:`VmInstance.call` runs one export under a fuel budget and returns the reply and the
fuel it used; a trap (fuel exhausted, memory limit, stack overflow, an ``unreachable`` in
the interpreter, or a host function that ended the call) becomes a :class:`VmTrap` naming
its cause, after which the instance is *poisoned* and must be dropped.

Fuel is deterministic: the same export called with the same payloads on instances with
the same history uses the same fuel in every process (tests check this across processes
and hash seeds). Host functions may charge extra fuel for work done outside the guest
(storage bytes, messages) with :meth:`VmInstance.charge`.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import resource
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc
from wasmtime.component._enter import catch_exceptions, enter_wasm

from sealbridge.contracts.wasm.build import (
    compute_guest_key,
    get_cache_dir,
    get_guest_wasm,
    locked,
)
from sealbridge.core.errors import RemoteProtocolError

MAX_WASM_STACK = 1 << 20  # bytes of native stack one guest call may use
DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024  # linear memory of one instance
MEMORY_GUARD = 64 * 1024
UNCAPPED_AS = 1 << 40  # an address-space cap at least this large leaves room for guards
INSTANTIATE_FUEL = 10**9  # instantiation runs no contract code; this is a safety net
ENGINE_SETTINGS = f"fuel,nan-canon,stack={MAX_WASM_STACK}"
LARGE_RESERVATION = 4 << 30
LARGE_GUARD = 2 << 30


def get_memory_layout() -> tuple[int, int]:
    """(reservation, guard) of each linear memory for this process's address space."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft >= UNCAPPED_AS:
        return LARGE_RESERVATION, LARGE_GUARD
    return DEFAULT_MEMORY_LIMIT, MEMORY_GUARD


class HostAbort(Exception):  # noqa: N818 -- raised through wasmtime, which wants Exception
    """Raised by a host function to end the running call (it becomes a trap)."""


class VmTrap(RemoteProtocolError):
    """A guest call stopped abnormally; ``code`` says why (``out_of_gas``,
    ``out_of_memory``, ``stack_overflow``, ``trap``, or the host's reason)."""

    code = "trap"

    def __init__(self, code: str, message: str, fuel_used: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.fuel_used = fuel_used


class HostHandler(Protocol):
    """Whoever answers the guest's host calls during one guest call."""

    def on_host_call(self, instance: VmInstance, op: int, payload: str) -> str: ...


class Vm:
    """The engine, the compiled guest and the linker (one per process)."""

    def __init__(self, layout: tuple[int, int] | None = None) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.cranelift_nan_canonicalization = True
        config.max_wasm_stack = MAX_WASM_STACK
        config.wasm_relaxed_simd_deterministic = True
        # Where the address space is capped (the sim enclave's RLIMIT_AS; an SGX enclave's
        # size), a memory reserves only its limit and bounds are checked explicitly;
        # elsewhere it reserves 4 GiB plus a 2 GiB guard and the checks vanish (about 20 %
        # faster). Only the machine code differs: fuel counts WebAssembly instructions,
        # so gas and outcomes are the same either way.
        self.reservation, self.guard = layout or get_memory_layout()
        config.memory_reservation = self.reservation
        config.memory_guard_size = self.guard
        config.memory_reservation_for_growth = MEMORY_GUARD
        self.engine = wasmtime.Engine(config)
        self.compiled_path = self._compiled_path()
        self.component = self._load_component()
        self.linker = wc.Linker(self.engine)
        _add_host_function(self.linker, self._host)
        self._running: list[tuple[VmInstance, HostHandler]] = []
        # one guest call at a time per process (a host function's nested call into another
        # instance runs on the same thread, hence re-entrant): the stack above names the
        # handler of the innermost call, which threads must not interleave
        self.lock = threading.RLock()

    def _compiled_path(self) -> Path:
        version = importlib.metadata.version("wasmtime")
        settings = f"{ENGINE_SETTINGS},reserve={self.reservation},guard={self.guard}"
        settings = settings.replace(",", "-").replace("=", "")
        return get_cache_dir() / f"guest-{compute_guest_key()}-wasmtime{version}-{settings}.cwasm"

    def _load_component(self) -> wc.Component:
        path = self.compiled_path
        loaded = self._deserialize(path)
        if loaded is not None:
            return loaded
        wasm = get_guest_wasm()
        with locked(get_cache_dir()):  # one process compiles; the others then load it
            loaded = self._deserialize(path)
            if loaded is not None:
                return loaded
            component = wc.Component.from_file(self.engine, str(wasm))
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(bytes(component.serialize()))
            tmp.replace(path)
        return component

    def _deserialize(self, path: Path) -> wc.Component | None:
        if not path.exists():
            return None
        try:
            return wc.Component.deserialize_file(self.engine, str(path))
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)  # from another wasmtime or machine: compile again
            return None

    def instantiate(self, *, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> VmInstance:
        return VmInstance(self, memory_limit)

    def _host(self, _store: Any, op: int, payload: str) -> str:
        if not self._running:
            raise HostAbort("host call outside a guest call")
        instance, handler = self._running[-1]
        try:
            return handler.on_host_call(instance, op, payload)
        except HostAbort:
            raise
        except Exception as exc:  # noqa: BLE001 -- every failure must end the call, not leak
            if instance.abort is None:
                instance.abort = ("host_error", f"{type(exc).__name__}: {exc}")
            raise HostAbort(str(exc)) from exc


class VmInstance:
    """One guest instance in its own store."""

    def __init__(self, vm: Vm, memory_limit: int) -> None:
        self.vm = vm
        self.store = wasmtime.Store(vm.engine)
        self.store.set_limits(memory_size=memory_limit, instances=64, tables=64, memories=16)
        self.store.set_fuel(INSTANTIATE_FUEL)
        self.instance = vm.linker.instantiate(self.store, vm.component)
        self.exports: dict[str, wc.Func] = {}
        for name in ("compile", "load", "invoke"):
            func = self.instance.get_func(self.store, name)
            if func is None:
                raise VmTrap("trap", f"the guest does not export {name!r}")
            self.exports[name] = func
        self.poisoned = False
        self.busy = False
        self.abort: tuple[str, str] | None = None  # set by a host function that ends a call

    def get_fuel(self) -> int:
        return self.store.get_fuel()

    def charge(self, fuel: int) -> None:
        """Take ``fuel`` for work the host did for the running call; end it if short."""
        left = self.store.get_fuel()
        if fuel > left:
            self.store.set_fuel(0)
            self.abort = ("out_of_gas", "out of gas")
            raise HostAbort("out of gas")
        self.store.set_fuel(left - fuel)

    def call(
        self, name: str, args: tuple[str, ...], fuel: int, handler: HostHandler
    ) -> tuple[str, int]:
        """Run export ``name`` with at most ``fuel``; the reply and the fuel used."""
        if self.poisoned:
            raise VmTrap("trap", "this instance stopped abnormally before")
        if self.busy:
            raise VmTrap("reentrant_call", "the instance is already running")
        func = self.exports[name]
        with self.vm.lock:
            self.store.set_fuel(fuel)
            self.abort = None
            self.busy = True
            self.vm._running.append((self, handler))
            try:
                reply = _call_string_export(func, self.store, args)
            except (wasmtime.WasmtimeError, wasmtime.Trap, HostAbort) as exc:
                self.poisoned = True
                trap = self._describe(exc)
                trap.fuel_used = fuel - self._fuel_left()
                raise trap from None
            finally:
                self.vm._running.pop()
                self.busy = False
            return reply, fuel - self.store.get_fuel()

    def _fuel_left(self) -> int:
        try:
            return self.store.get_fuel()
        except wasmtime.WasmtimeError:
            return 0

    def _describe(self, exc: BaseException) -> VmTrap:
        if self.abort is not None:
            return VmTrap(*self.abort)
        text = str(exc)
        if "all fuel consumed" in text or self._fuel_left() == 0:
            return VmTrap("out_of_gas", "out of gas")
        if "stack overflow" in text or "call stack exhausted" in text:
            return VmTrap("stack_overflow", "the contract used too much stack (recursion)")
        if "memory" in text and ("grow" in text or "limit" in text or "out of bounds" in text):
            return VmTrap("out_of_memory", "the contract ran out of memory")
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return VmTrap("trap", f"the contract's VM stopped: {first[:200]}")


# -- fast paths over wasmtime-py's C API ------------------------------------------------------
# The generic ``Func.__call__`` and linker callbacks look up the function's type through the
# C API on every call (about 30 µs of the 50 a small call costs). Our functions have fixed
# types (strings in, a string out; a u32 and a string in, a string out), so the values are
# converted directly. Pinned to the wasmtime version in pyproject.toml.
_HostFunction = Callable[[Any, int, str], str]
_HOST_FUNCTIONS: list[_HostFunction] = []


def _call_string_export(func: wc.Func, store: wasmtime.Store, args: tuple[str, ...]) -> str:
    count = len(args)
    params = (ffi.wasmtime_component_val_t * count)()
    for index, arg in enumerate(args):
        params[index].kind = ffi.WASMTIME_COMPONENT_STRING
        params[index].of.string = ffi.str_to_capi(arg)
    result = ffi.wasmtime_component_val_t()
    try:

        def run() -> Any:
            return ffi.wasmtime_component_func_call(
                ctypes.byref(func._func),
                store._context(),
                params,
                count,
                ctypes.byref(result),
                1,
            )

        enter_wasm(run)
        if result.kind != ffi.WASMTIME_COMPONENT_STRING.value:
            raise VmTrap("trap", "the guest returned no text")
        text = ffi.to_str(result.of.string)
        ffi.wasm_byte_vec_delete(ctypes.byref(result.of.string))
    finally:
        for index in range(count):
            ffi.wasmtime_component_val_delete(ctypes.byref(params[index]))
    func.post_return(store)
    return text


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _host_callback(
    index: Any, context: Any, _ty: Any, args: Any, nargs: int, results: Any, nresults: int
) -> Any:
    def run(store: Any) -> None:
        if nargs != 2 or nresults != 1:
            raise HostAbort("the host function takes (u32, string) and returns a string")
        op_value, payload_value = args[0], args[1]
        if (
            op_value.kind != ffi.WASMTIME_COMPONENT_U32.value
            or payload_value.kind != ffi.WASMTIME_COMPONENT_STRING.value
        ):
            raise HostAbort("the host function takes (u32, string)")
        payload = ffi.to_str(payload_value.of.string)
        ffi.wasm_byte_vec_delete(ctypes.byref(payload_value.of.string))
        reply = _HOST_FUNCTIONS[index or 0](store, int(op_value.of.u32), payload)
        results[0].kind = ffi.WASMTIME_COMPONENT_STRING
        results[0].of.string = ffi.str_to_capi(reply)

    return catch_exceptions(context, run)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _keep_host_function(_index: Any) -> None:
    return None  # host functions live as long as the process


def _add_host_function(linker: wc.Linker, function: _HostFunction) -> None:
    _HOST_FUNCTIONS.append(function)
    index = len(_HOST_FUNCTIONS) - 1
    name = b"host"
    root = linker.root()
    error = ffi.wasmtime_component_linker_instance_add_func(
        root.ptr(),
        ctypes.create_string_buffer(name),
        len(name),
        _host_callback,
        index,
        _keep_host_function,
    )
    del root
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


_VM: Vm | None = None


def get_vm() -> Vm:
    """This process's VM (built and compiled on first use)."""
    global _VM
    if _VM is None:
        _VM = Vm()
    return _VM


Charge = Callable[[int], None]
