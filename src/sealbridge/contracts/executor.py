"""The deterministic executor: runs contract methods as pure state transitions.

Theory of operation
-------------------
An :class:`Executor` holds the contracts one worker executes (:class:`Deployed`: a loaded
program, its storage, its deployer and its *domain* -- the set of workers assigned to it)
and one gas :class:`~sealbridge.contracts.gas.Meter`. :meth:`Executor.run_command` is
``s' = f(s, command, env)``:

1. the method must be a ``@command`` (or the ``@init`` at deploy) and the arguments must
   match its parameters (names, and simple annotated kinds) -- else a typed error and
   nothing ran;
2. the meter starts with the command's gas limit; every storage write of the call tree is
   recorded in one :class:`~sealbridge.contracts.storage.Journal`;
3. the method runs. A synchronous ``self.call`` runs the callee in the same journal and
   meter with ``env.caller`` = the calling contract. Calls are refused (the whole command
   fails) when the callee is already on the call stack (**no re-entrancy**: A -> B -> A is
   an error, so a contract never observes its own state half-way through a command) or
   belongs to another domain (its executors would not see this call; use ``self.send``);
   any failure inside a callee fails the whole tree (a contract cannot catch it);
4. if anything failed -- the contract's own error, a Python exception, running out of
   gas or memory, an invalid result -- the journal is rolled back, so the state is exactly
   as before, and the :class:`Outcome` carries the error code. Otherwise the outcome holds
   the (canonical) result and the asynchronous messages the tree sent, and the journal's
   records pass to the caller's block journal so a whole block can still be undone.

Queries run the same way on read-only storage, after the query's ``readers`` rule
admitted the caller. Nothing here reads a clock, randomness or I/O.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sealbridge.contracts import sdk
from sealbridge.contracts.errors import (
    BadArguments,
    BadResult,
    CallFailed,
    CrossDomainCall,
    ExecutionError,
    QueryNotAllowed,
    ReentrantCall,
    UnknownMethod,
    UnknownTarget,
)
from sealbridge.contracts.gas import (
    DEFAULT_GAS_LIMIT,
    QUERY_GAS_LIMIT,
    Abort,
    Meter,
    Unmetered,
)
from sealbridge.contracts.storage import Journal, Storage, StorageError, canonical_copy
from sealbridge.core.encoding import Message
from sealbridge.core.errors import SealbridgeError
from sealbridge.core.ids import tagged_hash

ARG_KINDS: dict[str, type[Any]] = {
    "int": int,
    "str": str,
    "bytes": bytes,
    "bool": bool,
    "float": float,
    "list": list,
    "dict": dict,
}


class MethodSpec(Message, frozen=True):
    name: str
    kind: str  # "command" | "query" | "init"
    params: list[str]
    required: list[str]
    kinds: dict[str, str] = {}  # parameter -> simple kind name, when annotated


class OutMessage(Message, frozen=True):
    """An asynchronous message a command sent (delivered in a later block)."""

    source: bytes
    target: bytes
    method: str
    args: dict[str, Any]


class Outcome(Message, frozen=True):
    ok: bool
    value: Any = None
    error: str = ""  # a short code when not ok
    message: str = ""
    gas_used: int = 0
    messages: list[OutMessage] = []


def _kind_name(annotation: Any) -> str | None:
    annotation = sdk.get_real_kind(annotation)
    if isinstance(annotation, str):
        return annotation if annotation in ARG_KINDS else None
    for name, kind in ARG_KINDS.items():
        if annotation is kind:
            return name
    return None


def inspect_contract(cls: type[sdk.Contract]) -> dict[str, MethodSpec]:
    """The public methods of a contract class, by name."""
    specs: dict[str, MethodSpec] = {}
    for name, member in vars(cls).items():
        kind = getattr(member, sdk.KIND_ATTR, None)
        if kind is None or not callable(member):
            continue
        signature = inspect.signature(member)
        params = list(signature.parameters.values())[1:]  # drop self
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) for p in params):
            raise ExecutionError(f"method {name!r} may take only named parameters")
        kinds = {
            p.name: k
            for p in params
            if (k := _kind_name(p.annotation)) is not None and p.annotation is not p.empty
        }
        specs[name] = MethodSpec(
            name=name,
            kind=str(kind),
            params=[p.name for p in params],
            required=[p.name for p in params if p.default is p.empty],
            kinds=kinds,
        )
    return specs


def check_arguments(spec: MethodSpec, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments named exactly as the method's parameters, of the annotated kinds."""
    unknown = sorted(str(k) for k in args if k not in spec.params)
    missing = [p for p in spec.required if p not in args]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unexpected {', '.join(unknown)}")
        raise BadArguments(f"{spec.name}({', '.join(spec.params)}): {'; '.join(parts)}")
    out: dict[str, Any] = {}
    for name, value in args.items():
        kind_name = spec.kinds.get(name)
        if kind_name is not None:
            kind = ARG_KINDS[kind_name]
            if kind is float and type(value) is int:
                value = float(value)
            elif type(value) is not kind:
                raise BadArguments(
                    f"{spec.name}: {name} must be {kind_name}, got {type(value).__name__}"
                )
        try:
            out[name] = canonical_copy(value, f"argument {name}")[0]
        except StorageError as exc:
            raise BadArguments(exc.message) from exc
    return out


class ContractProgram:
    """A loaded contract: its class factory, code hash and method table."""

    def __init__(
        self,
        *,
        source: bytes,
        code_hash: bytes,
        make_class: Callable[[Meter], type[sdk.Contract]],
        sandboxed: bool,
    ) -> None:
        self.source = source
        self.code_hash = code_hash
        self.make_class = make_class
        self.sandboxed = sandboxed
        self.methods = inspect_contract(make_class(Unmetered()))

    @classmethod
    def from_class(cls, contract: type[sdk.Contract]) -> ContractProgram:
        """Plain (unsandboxed, unmetered) execution of an imported class: the baseline."""
        source = inspect.getsource(inspect.getmodule(contract) or contract).encode()
        return cls(
            source=source,
            code_hash=compute_code_hash(source),
            make_class=lambda _meter: contract,
            sandboxed=False,
        )

    def get_init_name(self) -> str | None:
        """The name of the ``@init`` method, if the contract has one."""
        return next((n for n, s in self.methods.items() if s.kind == "init"), None)

    def get_method(self, name: str, kinds: tuple[str, ...]) -> MethodSpec:
        spec = self.methods.get(name)
        if spec is None or spec.kind not in kinds:
            available = sorted(n for n, s in self.methods.items() if s.kind in kinds)
            what = " or ".join(kinds)
            raise UnknownMethod(
                f"no {what} named {name!r}; available: {', '.join(available) or 'none'}"
            )
        return spec


def compute_code_hash(source: bytes) -> bytes:
    return tagged_hash("sealbridge/contract-code/v1", source)


class Deployed:
    """One contract as an executor holds it."""

    def __init__(
        self,
        contract_id: bytes,
        program: ContractProgram,
        cls: type[sdk.Contract],
        storage: Storage,
        deployer: bytes,
        domain: bytes,
    ) -> None:
        self.contract_id = contract_id
        self.program = program
        self.cls = cls
        self.storage = storage
        self.deployer = deployer
        self.domain = domain


class Frame:
    """The context one running method sees (``sdk.Context``)."""

    __slots__ = ("env", "storage", "executor", "deployed")

    def __init__(self, env: sdk.Env, deployed: Deployed, executor: Executor) -> None:
        self.env = env
        self.storage = deployed.storage
        self.deployed = deployed
        self.executor = executor

    def call(self, contract_id: bytes, method: str, args: dict[str, Any]) -> Any:
        return self.executor.call_nested(self, contract_id, method, args)

    def send(self, contract_id: bytes, method: str, args: dict[str, Any]) -> None:
        self.executor.queue_message(self, contract_id, method, args)


def compute_domain(workers: list[bytes]) -> bytes:
    """The identity of an executor set: contracts in one domain may call each other."""
    return tagged_hash("sealbridge/domain/v1", b"".join(sorted(workers)))


class Executor:
    def __init__(self, *, metered: bool = True) -> None:
        self.meter: Meter = Meter() if metered else Unmetered()
        self.contracts: dict[bytes, Deployed] = {}
        self._stack: list[bytes] = []
        self._outbox: list[OutMessage] = []
        self._journal = Journal()
        self.touched: set[bytes] = set()  # contracts whose code ran (for their new roots)
        self._read_only = False  # a query is running: no calls, no messages

    # -- contracts ----------------------------------------------------------------------
    def add(
        self,
        contract_id: bytes,
        program: ContractProgram,
        *,
        deployer: bytes,
        domain: bytes = b"",
        storage: Storage | None = None,
    ) -> Deployed:
        deployed = Deployed(
            contract_id,
            program,
            program.make_class(self.meter),
            storage or Storage(),
            deployer,
            domain,
        )
        self.contracts[contract_id] = deployed
        return deployed

    def get(self, contract_id: bytes) -> Deployed:
        deployed = self.contracts.get(contract_id)
        if deployed is None:
            raise UnknownTarget(f"contract 0x{contract_id.hex()} is not on this executor")
        return deployed

    def resolve(
        self, contract_id: bytes, method: str, kinds: tuple[str, ...], args: dict[str, Any]
    ) -> tuple[Deployed, dict[str, Any]]:
        """The contract and the checked arguments of a call; ExecutionError if it cannot run."""
        deployed = self.get(contract_id)
        spec = deployed.program.get_method(method, kinds)
        return deployed, check_arguments(spec, args)

    # -- commands -----------------------------------------------------------------------
    def run_command(
        self,
        contract_id: bytes,
        method: str,
        args: dict[str, Any],
        *,
        caller: bytes,
        block_number: int,
        seed: bytes,
        caller_is_contract: bool = False,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        is_init: bool = False,
        block_journal: Journal | None = None,
    ) -> Outcome:
        """Run one command; on any failure nothing it did remains."""
        try:
            deployed, checked = self.resolve(
                contract_id, method, ("init",) if is_init else ("command",), args
            )
        except ExecutionError as exc:
            return Outcome(ok=False, error=exc.code, message=exc.message)
        env = sdk.Env(
            contract_id=contract_id,
            caller=caller,
            caller_is_contract=caller_is_contract,
            deployer=deployed.deployer,
            block_number=block_number,
            seed=seed,
        )
        journal = self._journal
        self._outbox = []
        self._stack = [contract_id]
        self.meter.start(gas_limit)
        try:
            value = self._invoke(env, deployed, method, checked)
            if self.meter.exhausted is not None:
                raise self.meter.exhausted
        except BaseException as exc:  # noqa: BLE001 -- every failure reverts the command
            journal.roll_back()
            self._outbox = []
            code, message = describe_failure(exc)
            return Outcome(ok=False, error=code, message=message, gas_used=self.meter.used)
        finally:
            self._stack = []
        messages = self._outbox
        self._outbox = []
        if block_journal is not None:
            block_journal.absorb(journal)
        else:
            journal.entries.clear()
        return Outcome(ok=True, value=value, gas_used=self.meter.used, messages=messages)

    def _invoke(self, env: sdk.Env, deployed: Deployed, method: str, args: dict[str, Any]) -> Any:
        storage = deployed.storage
        storage.journal = self._journal
        storage.charge = self.meter.charge
        self.touched.add(deployed.contract_id)
        instance = deployed.cls(Frame(env, deployed, self))
        value = getattr(instance, method)(**args)
        try:
            return canonical_copy(value, f"result of {method}")[0]
        except StorageError as exc:
            raise BadResult(exc.message) from exc

    def call_nested(
        self, frame: Frame, contract_id: bytes, method: str, args: dict[str, Any]
    ) -> Any:
        """A synchronous call from the contract running in ``frame``."""
        if self._read_only:
            raise CallFailed("a query cannot call other contracts", "read_only")
        if type(contract_id) is not bytes or type(method) is not str:
            raise CallFailed("call: the target must be a contract id and a name", "bad_arguments")
        target = self.contracts.get(contract_id)
        where = f"call to 0x{contract_id.hex()[:12]}….{method}"
        if target is None:
            raise CallFailed(f"{where}: no such contract on this executor", "unknown_contract")
        if contract_id in self._stack:
            raise ReentrantCall(f"{where}: re-entrant call (the contract is already running)")
        if target.domain != frame.deployed.domain:
            raise CrossDomainCall(
                f"{where}: other workers execute it; send it a message with self.send"
            )
        try:
            _, checked = self.resolve(contract_id, method, ("command",), args)
        except ExecutionError as exc:
            raise CallFailed(f"{where}: {exc.message}", exc.code) from exc
        env = sdk.Env(
            contract_id=contract_id,
            caller=frame.env.contract_id,
            caller_is_contract=True,
            deployer=target.deployer,
            block_number=frame.env.block_number,
            seed=tagged_hash("sealbridge/call-seed/v1", frame.env.seed + contract_id),
        )
        self._stack.append(contract_id)
        try:
            return self._invoke(env, target, method, checked)
        except Abort:
            raise
        except Exception as exc:  # noqa: BLE001 -- the callee's failure fails the tree
            code, message = describe_failure(exc)
            raise CallFailed(f"{where}: {message}", code) from exc
        finally:
            self._stack.pop()
            frame.storage.journal = self._journal

    def queue_message(
        self, frame: Frame, contract_id: bytes, method: str, args: dict[str, Any]
    ) -> None:
        if self._read_only:
            raise CallFailed("a query cannot send messages", "read_only")
        if type(contract_id) is not bytes or len(contract_id) != 32:
            raise CallFailed("send: the target must be a 32-byte contract id", "bad_arguments")
        if type(method) is not str or not method:
            raise CallFailed("send: the method must be a name", "bad_arguments")
        try:
            copied = canonical_copy(args, "message arguments")[0]
        except StorageError as exc:
            raise CallFailed(f"send: {exc.message}", exc.code) from exc
        self.meter.charge(100)
        self._outbox.append(
            OutMessage(source=frame.env.contract_id, target=contract_id, method=method, args=copied)
        )

    # -- queries ------------------------------------------------------------------------
    def run_query(
        self,
        contract_id: bytes,
        method: str,
        args: dict[str, Any],
        *,
        caller: bytes,
        block_number: int,
        gas_limit: int = QUERY_GAS_LIMIT,
    ) -> Outcome:
        """Answer a query on read-only storage, if the caller may read it."""
        try:
            deployed, checked = self.resolve(contract_id, method, ("query",), args)
        except ExecutionError as exc:
            return Outcome(ok=False, error=exc.code, message=exc.message)
        env = sdk.Env(
            contract_id=contract_id,
            caller=caller,
            caller_is_contract=False,
            deployer=deployed.deployer,
            block_number=block_number,
            seed=b"",
        )
        storage = deployed.storage
        storage.writable = False
        storage.journal = None
        self._read_only = True
        self.meter.start(gas_limit)
        self._stack = [contract_id]
        try:
            instance = deployed.cls(Frame(env, deployed, self))
            function = getattr(type(instance), method)
            self._check_reader(instance, function, checked, caller)
            value = canonical_copy(getattr(instance, method)(**checked), "query result")[0]
            if self.meter.exhausted is not None:
                raise self.meter.exhausted
        except BaseException as exc:  # noqa: BLE001 -- a failed query changes nothing
            code, message = describe_failure(exc)
            return Outcome(ok=False, error=code, message=message, gas_used=self.meter.used)
        finally:
            storage.writable = True
            self._read_only = False
            self._stack = []
        return Outcome(ok=True, value=value, gas_used=self.meter.used)

    @staticmethod
    def _check_reader(
        instance: sdk.Contract, function: Any, args: dict[str, Any], caller: bytes
    ) -> None:
        readers = getattr(function, sdk.READERS_ATTR, None)
        if readers == sdk.ANYONE:
            return
        if readers == sdk.DEPLOYER:
            if caller == instance.env.deployer:
                return
            raise QueryNotAllowed("only the contract's deployer may ask this")
        if isinstance(readers, sdk.ArgReader):
            if args.get(readers.name) == caller:
                return
            raise QueryNotAllowed(f"only the account given as {readers.name!r} may ask this")
        if callable(readers) and readers(instance, caller) is True:
            return
        raise QueryNotAllowed("the contract does not let this caller ask this")


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """The (code, message) an outcome reports for a failure."""
    if isinstance(exc, CallFailed):
        return exc.inner_code, exc.message
    if isinstance(exc, Abort):
        return exc.code, exc.message
    if isinstance(exc, SealbridgeError):
        return exc.code, exc.message
    if isinstance(exc, MemoryError):
        return "out_of_memory", "the contract ran out of memory"
    if isinstance(exc, RecursionError):
        return "call_depth_exceeded", "recursion too deep"
    if isinstance(exc, Exception):
        return "contract_exception", f"{type(exc).__name__}: {exc}"
    raise exc  # KeyboardInterrupt, SystemExit: not the contract's doing
