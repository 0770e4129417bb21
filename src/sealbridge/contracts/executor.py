"""The deterministic executor: runs contract methods as pure state transitions.

Theory of operation
-------------------
An :class:`Executor` holds the contracts one worker executes (:class:`Deployed`: a loaded
:class:`ContractProgram`, its storage, its deployer and its *domain* -- the set of workers
assigned to it). :meth:`Executor.run_command` is ``s' = f(s, command, env)``:

1. the method must be a ``@command`` (or the ``@init`` at deploy) and the arguments must
   match its parameters (names, and simple annotated kinds) -- else a typed error and
   nothing ran;
2. the contract runs in its own WebAssembly instance (``contracts/wasm/``) on the
   command's fuel; storage, calls and messages are host functions answered here, so the
   storage and its undo :class:`~sealbridge.contracts.storage.Journal` live outside the
   guest, and every payload the guest sends is checked as hostile input (kinds, sizes,
   nesting, key kinds);
3. a synchronous ``self.call`` runs the callee in *its* instance on the caller's
   remaining fuel, with ``env.caller`` = the calling contract. Calls are refused (the whole
   command fails) when the callee is already on the call stack (**no re-entrancy**),
   belongs to another domain (use ``self.send``), or the stack is
   :data:`~sealbridge.contracts.gas.MAX_CALL_DEPTH` deep. **If a callee fails, the whole
   command fails**: the host ends the caller with a trap, so no ``try`` in the caller can
   keep going, and no write of the failed tree survives;
4. if anything failed -- the contract's error, an exception, a trap (out of gas, out of
   memory, stack overflow), an invalid result or write -- the journal is rolled back, the
   instances that ran are dropped, and the :class:`CallOutcome` carries the error code and the
   contract's line. Otherwise the outcome holds the canonical result and the messages the
   tree sent, and the journal's records pass to the block's journal so a whole block can
   still be undone.

**Instances and history.** An instance serves one contract for at most one block: the
executor drops every instance when a command of a new block arrives, and drops an
instance after any failure in it. Every executor runs a block's commands in the same
order, so each command meets an instance with the same history on every node, and its
gas and outcome are the same everywhere -- also on a worker restarted between blocks.
Queries run in instances of their own, never in the ones commands use.

Plain programs (:meth:`ContractProgram.from_class`, the benchmarks' baseline) run the same
class as ordinary Python with no fuel; they are not a containment mode.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from sealbridge.contracts import sdk
from sealbridge.contracts.errors import (
    Abort,
    BadArguments,
    BadResult,
    CallDepthExceeded,
    CallFailed,
    CodeRejected,
    ContractFailed,
    CrossDomainCall,
    ExecutionError,
    OutOfGas,
    QueryNotAllowed,
    ReentrantCall,
    TooLarge,
    TooManyMessages,
    UnknownMethod,
    UnknownTarget,
)
from sealbridge.contracts.gas import (
    CALL_GAS,
    DEFAULT_GAS_LIMIT,
    DEPLOY_COMPILE_GAS,
    FUEL_PER_GAS,
    MAX_CALL_DEPTH,
    MAX_MESSAGE_SIZE,
    MAX_MESSAGES_PER_COMMAND,
    MAX_RESULT_SIZE,
    MAX_STORAGE_BYTES,
    MAX_VALUE_SIZE,
    MAX_WRITE_BYTES,
    QUERY_GAS_LIMIT,
    compute_gas,
    compute_read_gas,
    compute_send_gas,
    compute_write_gas,
)
from sealbridge.contracts.policy import check_source
from sealbridge.contracts.storage import (
    Journal,
    Storage,
    StorageRefused,
    canonical_copy,
    check_int,
)
from sealbridge.contracts.wasm.engine import Vm, VmInstance, VmTrap, get_vm
from sealbridge.contracts.wasm.wire import WireError, decode_guest, to_guest
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
# host functions (the guest's ``OP_*``)
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
MAX_HOST_PAYLOAD = 2 * MAX_VALUE_SIZE  # one host call's payload from the guest
MAX_REPLY = MAX_WRITE_BYTES + MAX_RESULT_SIZE + 4096  # one guest reply
MAX_METHODS = 256
# failures whose cost the fuel count cannot see (page faults of fresh memory, a trap's
# unwinding) take the whole gas limit, as the EVM does for an invalid instruction
CONSUME_ALL_GAS = frozenset({"out_of_memory", "stack_overflow", "trap"})
MAX_NAME = 64


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


class CallOutcome(Message, frozen=True):
    ok: bool
    value: Any = None
    error: str = ""  # a short code when not ok
    message: str = ""
    gas_used: int = 0
    messages: list[OutMessage] = []


def check_arguments(spec: MethodSpec, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments named exactly as the method's parameters, of the annotated kinds."""
    unknown = sorted(str(k) for k in args if k not in spec.params)
    missing = [p for p in spec.required if p not in args]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unexpected {', '.join(unknown)[:200]}")
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
        except StorageRefused as exc:
            raise BadArguments(exc.message) from exc
    return out


def compute_code_hash(source: bytes) -> bytes:
    return tagged_hash("sealbridge/contract-code/v1", source)


def compute_domain(workers: list[bytes]) -> bytes:
    """The identity of an executor set: contracts in one domain may call each other."""
    return tagged_hash("sealbridge/domain/v1", b"".join(sorted(workers)))


# -- programs -------------------------------------------------------------------------------
class ContractProgram:
    """A loaded contract: its code (compiled for the guest) or plain class, and methods."""

    def __init__(
        self,
        *,
        source: bytes,
        methods: dict[str, MethodSpec],
        code: bytes = b"",
        plain_class: type[sdk.Contract] | None = None,
    ) -> None:
        self.source = source
        self.code_hash = compute_code_hash(source)
        self.methods = methods
        self.code = code  # the marshalled module the guest runs
        self.plain_class = plain_class

    @property
    def sandboxed(self) -> bool:
        """True when the program runs in the WebAssembly VM (always, but for baselines)."""
        return self.plain_class is None

    @classmethod
    def from_class(cls, contract: type[sdk.Contract]) -> ContractProgram:
        """Plain (unmetered, uncontained) execution of an imported class: the baseline."""
        source = inspect.getsource(inspect.getmodule(contract) or contract).encode()
        return cls(source=source, methods=inspect_class(contract), plain_class=contract)

    def get_init_name(self) -> str | None:
        """The name of the ``@init`` method, if the contract has one."""
        return next((n for n, s in self.methods.items() if s.kind == "init"), None)

    def get_method(self, name: str, kinds: tuple[str, ...]) -> MethodSpec:
        spec = self.methods.get(name) if type(name) is str else None
        if spec is None or spec.kind not in kinds:
            available = sorted(n for n, s in self.methods.items() if s.kind in kinds)
            what = " or ".join(kinds)
            shown = name[:MAX_NAME] if type(name) is str else "?"
            raise UnknownMethod(
                f"no {what} named {shown!r}; available: {', '.join(available) or 'none'}"
            )
        return spec


def inspect_class(cls: type[sdk.Contract]) -> dict[str, MethodSpec]:
    """The public methods of a plain contract class, by name."""
    specs: dict[str, MethodSpec] = {}
    for name, member in vars(cls).items():
        kind = getattr(member, sdk.KIND_ATTR, None)
        if kind is None or not callable(member):
            continue
        params = list(inspect.signature(member).parameters.values())[1:]
        kinds = {}
        for p in params:
            annotation = p.annotation
            shown = (
                annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
            )
            if shown in ARG_KINDS:
                kinds[p.name] = shown
        specs[name] = MethodSpec(
            name=name,
            kind=str(kind),
            params=[p.name for p in params],
            required=[p.name for p in params if p.default is p.empty],
            kinds=kinds,
        )
    return specs


def _decode_guest(text: str, limit: int) -> Any:
    """Decode a guest payload (a latin-1 string) as hostile input."""
    if len(text) > limit:
        raise TooLarge(f"the contract sent {len(text)} bytes; at most {limit}")
    try:
        return decode_guest(text.encode("latin-1"))
    except (UnicodeEncodeError, WireError) as exc:
        raise ContractFailed("bad_reply", f"the contract's VM sent malformed data: {exc}") from exc


def _decode_value(data: Any, error: type[StorageRefused] | type[BadResult], what: str) -> Any:
    """A value the guest encoded on its own (a write, a result)."""
    if type(data) is not bytes:
        raise ContractFailed("bad_reply", f"{what} is not encoded")
    try:
        return decode_guest(data)
    except WireError as exc:
        raise error(f"{what} cannot be stored or returned: {exc}") from exc


_to_guest = to_guest


def _parse_method_table(table: Any) -> dict[str, MethodSpec]:
    if type(table) is not list or len(table) > MAX_METHODS:
        raise CodeRejected([(0, "the contract's method table is malformed")])
    specs: dict[str, MethodSpec] = {}
    for row in table:
        try:
            name, kind, params, required, kinds, bad = row
            spec = msgspec.convert(
                {
                    "name": name,
                    "kind": kind,
                    "params": params,
                    "required": required,
                    "kinds": kinds,
                },
                MethodSpec,
            )
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            raise CodeRejected([(0, "the contract's method table is malformed")]) from exc
        if bad:
            raise CodeRejected([(0, f"method {name!r} may take only named parameters")])
        if spec.kind not in ("command", "query", "init"):
            raise CodeRejected([(0, f"method {name!r} has an unknown kind")])
        if len(spec.name) > MAX_NAME or not set(spec.required) <= set(spec.params):
            raise CodeRejected([(0, f"method {name!r} is malformed")])
        spec = MethodSpec(
            name=spec.name,
            kind=spec.kind,
            params=spec.params,
            required=spec.required,
            kinds={k: v for k, v in spec.kinds.items() if v in ARG_KINDS},
        )
        specs[spec.name] = spec
    if sum(1 for s in specs.values() if s.kind == "init") > 1:
        raise CodeRejected([(0, "a contract may have at most one @init")])
    return specs


def load_program(
    source: bytes, filename: str = "<contract>", *, vm: Vm | None = None
) -> ContractProgram:
    """Check contract source, compile it in the VM and run its module once (inside this
    error handling): a :class:`ContractProgram`, or CodeRejected naming the line."""
    check_source(source)
    vm = vm or get_vm()
    fuel = DEPLOY_COMPILE_GAS * FUEL_PER_GAS
    instance = vm.instantiate()
    refuse = _RefuseHostCalls()
    try:
        reply, _ = instance.call("compile", (source.decode("utf-8"), filename), fuel, refuse)
        compiled = _decode_guest(reply, MAX_REPLY)
        if type(compiled) is list and compiled[:1] == ["error"] and len(compiled) == 3:
            line = compiled[1] if type(compiled[1]) is int else 0
            raise CodeRejected([(line, f"syntax error: {compiled[2]}")])
        if not (type(compiled) is list and len(compiled) == 2 and type(compiled[1]) is bytes):
            raise CodeRejected([(0, "the source cannot be compiled")])
        code: bytes = compiled[1]
        instance = vm.instantiate()
        reply, _ = instance.call("load", (_to_guest((code, True)),), fuel, refuse)
        loaded = _decode_guest(reply, MAX_REPLY)
    except VmTrap as exc:
        raise CodeRejected([(0, f"the module cannot be loaded: {exc.message}")]) from exc
    except Abort as exc:
        raise CodeRejected([(0, f"the module cannot be loaded: {exc.message}")]) from exc
    if type(loaded) is list and loaded[:1] == ["error"] and len(loaded) == 4:
        line = loaded[3] if type(loaded[3]) is int else 0
        raise CodeRejected([(line, f"module body failed: {loaded[2]}")])
    if not (type(loaded) is list and len(loaded) == 2 and loaded[0] == "ok"):
        raise CodeRejected([(0, "the module cannot be loaded")])
    return ContractProgram(source=source, methods=_parse_method_table(loaded[1]), code=code)


class _RefuseHostCalls:
    """Host calls while compiling or loading a module: there is no storage yet."""

    def on_host_call(self, instance: VmInstance, op: int, payload: str) -> str:
        return _to_guest((False, "storage, calls and messages are not available here"))


# -- executor -------------------------------------------------------------------------------
class Deployed:
    """One contract as an executor holds it."""

    def __init__(
        self,
        contract_id: bytes,
        program: ContractProgram,
        storage: Storage,
        deployer: bytes,
        domain: bytes,
    ) -> None:
        self.contract_id = contract_id
        self.program = program
        self.storage = storage
        self.deployer = deployer
        self.domain = domain


class _Run:
    """Book-keeping of one command or query: fuel, stack, writes, messages."""

    __slots__ = ("limit", "used", "stack", "outbox", "write_bytes", "read_only", "block", "ran")

    def __init__(self, gas_limit: int, block: int, read_only: bool) -> None:
        self.limit = gas_limit * FUEL_PER_GAS
        self.used = 0
        self.stack: list[tuple[Deployed, sdk.Env]] = []
        self.ran: set[bytes] = set()
        self.outbox: list[OutMessage] = []
        self.write_bytes = 0
        self.read_only = read_only
        self.block = block

    @property
    def left(self) -> int:
        return self.limit - self.used

    def take(self, fuel: int) -> None:
        """Count fuel a stopped call used (without raising)."""
        self.used = min(self.limit, self.used + fuel)

    def charge(self, fuel: int) -> None:
        self.used += fuel
        if self.used > self.limit:
            self.used = self.limit
            raise OutOfGas(f"out of gas (limit {self.limit // FUEL_PER_GAS})")


class _PlainFrame:
    """``sdk.Context`` of a plain (baseline) run."""

    __slots__ = ("env", "storage", "executor", "deployed", "run")

    def __init__(self, env: sdk.Env, deployed: Deployed, executor: Executor, run: _Run) -> None:
        self.env = env
        self.storage = deployed.storage
        self.deployed = deployed
        self.executor = executor
        self.run = run

    def call(self, contract_id: bytes, method: str, args: dict[str, Any]) -> Any:
        return self.executor.call_nested(
            self.run, self.deployed, self.env, contract_id, method, args
        )

    def send(self, contract_id: bytes, method: str, args: dict[str, Any]) -> None:
        self.executor.queue_message(self.run, self.deployed, contract_id, method, args)


class Executor:
    def __init__(self, *, metered: bool = True, vm: Vm | None = None) -> None:
        self.metered = metered
        self._vm = vm
        self.contracts: dict[bytes, Deployed] = {}
        self.touched: set[bytes] = set()  # contracts whose code ran (for their new roots)
        self._journal = Journal()
        self._instances: dict[bytes, VmInstance] = {}
        self._query_instances: dict[bytes, VmInstance] = {}
        self._instances_block = -1
        self._query_block = -1
        self._run: _Run | None = None

    @property
    def vm(self) -> Vm:
        if self._vm is None:
            self._vm = get_vm()
        return self._vm

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
        deployed = Deployed(contract_id, program, storage or Storage(), deployer, domain)
        self.contracts[contract_id] = deployed
        self._instances.pop(contract_id, None)
        self._query_instances.pop(contract_id, None)
        return deployed

    def remove(self, contract_id: bytes) -> None:
        self.contracts.pop(contract_id, None)
        self._instances.pop(contract_id, None)
        self._query_instances.pop(contract_id, None)

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
    ) -> CallOutcome:
        """Run one command; on any failure nothing it did remains."""
        try:
            deployed, checked = self.resolve(
                contract_id, method, ("init",) if is_init else ("command",), args
            )
        except ExecutionError as exc:
            return CallOutcome(ok=False, error=exc.code, message=exc.message)
        if block_number != self._instances_block:
            self._instances.clear()  # instances live for one block at most
            self._instances_block = block_number
        env = sdk.Env(
            contract_id=contract_id,
            caller=caller,
            caller_is_contract=caller_is_contract,
            deployer=deployed.deployer,
            block_number=block_number,
            seed=seed,
        )
        run = _Run(gas_limit, block_number, read_only=False)
        self._run = run
        journal = self._journal
        try:
            value = self._invoke(
                run, deployed, "init" if is_init else "command", method, checked, env
            )
        except (Abort, ExecutionError, VmTrap) as exc:
            journal.roll_back()
            for ran in run.ran:
                self._instances.pop(ran, None)  # their history now holds a failed command
            if exc.code in CONSUME_ALL_GAS:
                run.used = run.limit
            message = f"out of gas (limit {gas_limit})" if exc.code == "out_of_gas" else exc.message
            return CallOutcome(
                ok=False, error=exc.code, message=message, gas_used=compute_gas(run.used)
            )
        finally:
            self._run = None
        if block_journal is not None:
            block_journal.absorb(journal)
        else:
            journal.entries.clear()
        return CallOutcome(
            ok=True, value=value, gas_used=compute_gas(run.used), messages=run.outbox
        )

    def _instance_for(self, run: _Run, deployed: Deployed) -> VmInstance:
        """The contract's instance for this block (loading its module, on this run's fuel)."""
        pool = self._query_instances if run.read_only else self._instances
        instance = pool.get(deployed.contract_id)
        if instance is not None and not instance.poisoned:
            return instance
        instance = self.vm.instantiate()
        request = _to_guest((deployed.program.code, False))
        try:
            reply, used = instance.call("load", (request,), run.left, self)
        except VmTrap as exc:
            run.take(exc.fuel_used)
            raise
        run.charge(used)
        loaded = _decode_guest(reply, MAX_REPLY)
        if not (type(loaded) is list and loaded[:1] == ["ok"]):
            message = loaded[2] if type(loaded) is list and len(loaded) > 2 else "?"
            raise ContractFailed("module_failed", f"the contract's module failed: {message}")
        pool[deployed.contract_id] = instance
        return instance

    def _invoke(
        self,
        run: _Run,
        deployed: Deployed,
        kind: str,
        method: str,
        args: dict[str, Any],
        env: sdk.Env,
    ) -> Any:
        self.touched.add(deployed.contract_id)
        run.ran.add(deployed.contract_id)
        run.stack.append((deployed, env))
        try:
            if deployed.program.plain_class is not None:
                return self._invoke_plain(run, deployed, kind, method, args, env)
            return self._invoke_wasm(run, deployed, kind, method, args, env)
        except (Abort, VmTrap, ExecutionError):
            pool = self._query_instances if run.read_only else self._instances
            pool.pop(deployed.contract_id, None)  # its history now differs: start afresh
            raise
        finally:
            run.stack.pop()

    def _invoke_wasm(
        self,
        run: _Run,
        deployed: Deployed,
        kind: str,
        method: str,
        args: dict[str, Any],
        env: sdk.Env,
    ) -> Any:
        instance = self._instance_for(run, deployed)
        request = _to_guest(
            (
                kind,
                method,
                args,
                (
                    env.contract_id,
                    env.caller,
                    env.caller_is_contract,
                    env.deployer,
                    env.block_number,
                    env.seed,
                ),
            )
        )
        try:
            reply, used = instance.call("invoke", (request,), run.left, self)
        except VmTrap as exc:
            run.take(exc.fuel_used)
            raise
        run.charge(used)
        answer = _decode_guest(reply, MAX_REPLY)
        if type(answer) is not list or not answer:
            raise ContractFailed("bad_reply", "the contract's VM sent a malformed reply")
        if answer[0] == "ok" and len(answer) == 3:
            try:
                self._apply_writes(run, deployed, answer[2])
            except StorageRefused as exc:
                raise ContractFailed(exc.code, exc.message) from exc
            result = _decode_value(answer[1], BadResult, f"the result of {method}")
            return self._check_result(result, method)
        if answer[0] == "denied" and len(answer) == 2:
            raise QueryNotAllowed(str(answer[1])[:200])
        if answer[0] == "error" and len(answer) == 4:
            code = answer[1] if type(answer[1]) is str and answer[1] else "contract_error"
            message = answer[2] if type(answer[2]) is str else ""
            line = answer[3] if type(answer[3]) is int else 0
            raise ContractFailed(code[:64], message[:1000], line)
        raise ContractFailed("bad_reply", "the contract's VM sent a malformed reply")

    def _invoke_plain(
        self,
        run: _Run,
        deployed: Deployed,
        kind: str,
        method: str,
        args: dict[str, Any],
        env: sdk.Env,
    ) -> Any:
        cls = deployed.program.plain_class
        if cls is None:
            raise ExecutionError("not a plain program")
        deployed.storage.journal = self._journal
        instance = cls(_PlainFrame(env, deployed, self, run))
        try:
            if kind == "query":
                why = sdk.is_reader(instance, getattr(cls, method), args, env.caller)
                if why:
                    raise QueryNotAllowed(why)
            value = getattr(instance, method)(**args)
        except (Abort, ExecutionError):
            raise
        except sdk.ContractError as exc:
            raise ContractFailed(exc.code, exc.message) from exc
        except SealbridgeError as exc:
            raise ContractFailed(exc.code, exc.message) from exc
        except Exception as exc:  # noqa: BLE001 -- the baseline reports contract exceptions
            raise ContractFailed("contract_exception", f"{type(exc).__name__}: {exc}") from exc
        return self._check_result(value, method)

    @staticmethod
    def _check_result(value: Any, method: str) -> Any:
        try:
            result, size = canonical_copy(value, f"result of {method}")
        except StorageRefused as exc:
            raise BadResult(exc.message) from exc
        if size > MAX_RESULT_SIZE:
            raise TooLarge(f"the result of {method} is {size} bytes; at most {MAX_RESULT_SIZE}")
        return result

    # -- host functions -----------------------------------------------------------------
    def on_host_call(self, instance: VmInstance, op: int, payload: str) -> str:
        """Answer one host call of the running guest (every payload is hostile input).
        A refusal the contract may see comes back as ``(False, why)``; anything that must
        end the command raises (the guest traps)."""
        run = self._run
        if run is None or not run.stack:
            raise Abort("host call outside a command")
        deployed, env = run.stack[-1]
        parts = _decode_guest(payload, MAX_HOST_PAYLOAD)
        if type(parts) is not list:
            raise ContractFailed("bad_reply", "a host call's arguments must be a list")
        try:
            if op == OP_CALL:
                value = self._host_call(instance, run, deployed, env, parts)
            elif op == OP_SEND:
                self._host_send(instance, run, deployed, parts)
                value = None
            elif op == OP_WRITE and len(parts) == 1:
                self._apply_writes(run, deployed, parts[0], instance)
                value = None
            else:
                value = self._host_read(instance, deployed.storage, op, parts)
        except StorageRefused as exc:
            return _to_guest((False, exc.message))
        except (Abort, VmTrap, ExecutionError) as exc:
            instance.abort = (exc.code, exc.message)
            raise
        return _to_guest((True, value))

    def _host_read(self, instance: VmInstance, storage: Storage, op: int, parts: list[Any]) -> Any:
        if op == OP_GET_VALUE and len(parts) == 1 and type(parts[0]) is str:
            found = parts[0] in storage.values
            value = storage.values.get(parts[0])
            instance.charge(compute_read_gas(_size_of(value)) * FUEL_PER_GAS)
            return (found, value)
        if op in (OP_GET_ITEM, OP_HAS_ITEM) and len(parts) == 2 and type(parts[0]) is str:
            key = _check_key(parts[1])
            slots = storage.maps.get(parts[0])
            found = slots is not None and key in slots
            if op == OP_HAS_ITEM:
                instance.charge(compute_read_gas(0) * FUEL_PER_GAS)
                return found
            value = slots.get(key) if slots is not None else None
            instance.charge(compute_read_gas(_size_of(value)) * FUEL_PER_GAS)
            return (found, value)
        if op == OP_COUNT_ITEMS and len(parts) == 1 and type(parts[0]) is str:
            instance.charge(compute_read_gas(0) * FUEL_PER_GAS)
            return storage.count_items(parts[0])
        if op == OP_LIST_KEYS and len(parts) == 1 and type(parts[0]) is str:
            count = storage.count_items(parts[0])
            instance.charge(compute_read_gas(8 * count) * FUEL_PER_GAS)
            return storage.list_keys(parts[0])
        raise ContractFailed("bad_host_call", f"unknown or malformed host call {op}")

    def _apply_writes(
        self, run: _Run, deployed: Deployed, writes: Any, instance: VmInstance | None = None
    ) -> None:
        """Validate, charge and journal a batch of writes from the guest."""
        if type(writes) is not list:
            raise ContractFailed("bad_reply", "writes must be a list")
        if writes and run.read_only:
            raise StorageRefused("storage is read-only in a query")
        storage = deployed.storage
        storage.journal = self._journal
        for write in writes:
            if type(write) is not list or len(write) != 4 or type(write[1]) is not str:
                raise ContractFailed("bad_reply", "a write is malformed")
            kind, name, key, encoded = write
            value = None if kind == DELETE_ITEM else _decode_value(encoded, StorageRefused, name)
            if kind == WRITE_VALUE:
                size = storage.set_value(name, value)
            elif kind == WRITE_ITEM:
                key = _check_key(key)
                _check_key_kind(storage, name, key)
                size = storage.set_item(name, key, value)
            elif kind == DELETE_ITEM:
                storage.delete_item(name, _check_key(key))
                size = 0
            else:
                raise ContractFailed("bad_reply", "a write is malformed")
            if size > MAX_VALUE_SIZE:
                raise TooLarge(f"a stored value may be at most {MAX_VALUE_SIZE} bytes ({name})")
            run.write_bytes += size
            if run.write_bytes > MAX_WRITE_BYTES:
                raise TooLarge(f"a command may write at most {MAX_WRITE_BYTES} bytes")
            fuel = compute_write_gas(size) * FUEL_PER_GAS
            if instance is not None:
                instance.charge(fuel)
            else:
                run.charge(fuel)
        if writes and storage.get_size() > MAX_STORAGE_BYTES:
            raise TooLarge(f"a contract's state may hold at most {MAX_STORAGE_BYTES} bytes")

    def _host_call(
        self, instance: VmInstance, run: _Run, caller: Deployed, env: sdk.Env, parts: list[Any]
    ) -> Any:
        if len(parts) != 3:
            raise ContractFailed("bad_host_call", "call takes a contract id, a method, arguments")
        contract_id, method, args = parts
        if type(contract_id) is not bytes or type(method) is not str or type(args) is not dict:
            raise CallFailed("call: the target must be a contract id and a name", "bad_arguments")
        # the callee runs on what the caller has left; its use is then taken from the caller
        before = instance.get_fuel()
        budget = _Run(0, run.block, run.read_only)
        budget.limit = max(before - CALL_GAS * FUEL_PER_GAS, 0)
        budget.stack = run.stack
        budget.outbox = run.outbox
        budget.ran = run.ran
        budget.write_bytes = run.write_bytes
        self._run = budget
        try:
            value = self.call_nested(budget, caller, env, contract_id, method, args)
        finally:
            self._run = run
            run.write_bytes = budget.write_bytes
        instance.charge(CALL_GAS * FUEL_PER_GAS + budget.used)
        return value

    def call_nested(
        self,
        run: _Run,
        caller: Deployed,
        caller_env: sdk.Env,
        contract_id: bytes,
        method: str,
        args: dict[str, Any],
    ) -> Any:
        """A synchronous call from the contract ``caller``; any failure is a CallFailed."""
        if run.read_only:
            raise CallFailed("a query cannot call other contracts", "read_only")
        if type(contract_id) is not bytes or type(method) is not str:
            raise CallFailed("call: the target must be a contract id and a name", "bad_arguments")
        target = self.contracts.get(contract_id)
        where = f"call to 0x{contract_id.hex()[:12]}….{method[:MAX_NAME]}"
        if target is None:
            raise CallFailed(f"{where}: no such contract on this executor", "unknown_contract")
        if any(d.contract_id == contract_id for d, _ in run.stack):
            raise ReentrantCall(f"{where}: re-entrant call (the contract is already running)")
        if len(run.stack) >= MAX_CALL_DEPTH:
            raise CallDepthExceeded(f"{where}: calls nested deeper than {MAX_CALL_DEPTH}")
        if target.domain != caller.domain:
            raise CrossDomainCall(
                f"{where}: other workers execute it; send it a message with self.send"
            )
        try:
            _, checked = self.resolve(contract_id, method, ("command",), args)
        except ExecutionError as exc:
            raise CallFailed(f"{where}: {exc.message}", exc.code) from exc
        seed = caller_env.seed
        env = sdk.Env(
            contract_id=contract_id,
            caller=caller.contract_id,
            caller_is_contract=True,
            deployer=target.deployer,
            block_number=run.block,
            seed=tagged_hash("sealbridge/call-seed/v1", seed + contract_id),
        )
        try:
            return self._invoke(run, target, "command", method, checked, env)
        except (ReentrantCall, CrossDomainCall, CallDepthExceeded, OutOfGas, CallFailed):
            raise
        except (Abort, VmTrap, ExecutionError) as exc:
            raise CallFailed(f"{where}: {exc.message}", exc.code) from exc

    def _host_send(
        self, instance: VmInstance, run: _Run, sender: Deployed, parts: list[Any]
    ) -> None:
        if len(parts) != 3:
            raise ContractFailed("bad_host_call", "send takes a contract id, a method, arguments")
        contract_id, method, args = parts
        instance.charge(self.queue_message(run, sender, contract_id, method, args))

    def queue_message(
        self, run: _Run, sender: Deployed, contract_id: Any, method: Any, args: Any
    ) -> int:
        """Queue an asynchronous message; the fuel it costs."""
        if run.read_only:
            raise CallFailed("a query cannot send messages", "read_only")
        if type(contract_id) is not bytes or len(contract_id) != 32:
            raise CallFailed("send: the target must be a 32-byte contract id", "bad_arguments")
        if type(method) is not str or not method or len(method) > MAX_NAME:
            raise CallFailed("send: the method must be a name", "bad_arguments")
        if type(args) is not dict:
            raise CallFailed("send: the arguments must be a dict", "bad_arguments")
        try:
            copied, size = canonical_copy(args, "message arguments")
        except StorageRefused as exc:
            raise CallFailed(f"send: {exc.message}", exc.code) from exc
        if size > MAX_MESSAGE_SIZE:
            raise TooLarge(f"a message's arguments may be at most {MAX_MESSAGE_SIZE} bytes")
        if len(run.outbox) >= MAX_MESSAGES_PER_COMMAND:
            raise TooManyMessages(f"a command may send at most {MAX_MESSAGES_PER_COMMAND} messages")
        run.outbox.append(
            OutMessage(source=sender.contract_id, target=contract_id, method=method, args=copied)
        )
        return compute_send_gas(size + len(method)) * FUEL_PER_GAS

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
    ) -> CallOutcome:
        """Answer a query on read-only storage, if the caller may read it."""
        try:
            deployed, checked = self.resolve(contract_id, method, ("query",), args)
        except ExecutionError as exc:
            return CallOutcome(ok=False, error=exc.code, message=exc.message)
        if block_number != self._query_block:
            self._query_instances.clear()
            self._query_block = block_number
        env = sdk.Env(
            contract_id=contract_id,
            caller=caller,
            caller_is_contract=False,
            deployer=deployed.deployer,
            block_number=block_number,
            seed=b"",
        )
        run = _Run(min(gas_limit, QUERY_GAS_LIMIT), block_number, read_only=True)
        saved = self._run
        self._run = run
        deployed.storage.writable = False
        try:
            value = self._invoke(run, deployed, "query", method, checked, env)
        except (Abort, ExecutionError, VmTrap) as exc:
            return CallOutcome(
                ok=False, error=exc.code, message=exc.message, gas_used=compute_gas(run.used)
            )
        finally:
            deployed.storage.writable = True
            self._run = saved
        return CallOutcome(ok=True, value=value, gas_used=compute_gas(run.used))


def _size_of(value: Any) -> int:
    if value is None or type(value) in (int, float, bool):
        return 8
    if type(value) in (str, bytes):
        return len(value)
    return canonical_copy(value, "value")[1]


def _check_key(key: Any) -> Any:
    if type(key) not in sdk.KEY_KINDS:
        raise StorageRefused(f"map keys are int, str or bytes, not {type(key).__name__}")
    if type(key) is int:
        check_int(key, "a map key")
    elif len(key) > MAX_NAME * 16:
        raise StorageRefused("a map key may be at most 1024 bytes")
    return key


def _check_key_kind(storage: Storage, name: str, key: Any) -> None:
    slots = storage.maps.get(name)
    if slots:
        first = next(iter(slots))
        if type(first) is not type(key):
            raise StorageRefused(f"map {name!r} has {type(first).__name__} keys")
