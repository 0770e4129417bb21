"""The sandbox: deploy-time checks and gas instrumentation of contract source.

Theory of operation
-------------------
Contract source goes through four steps before it may run:

1. **Parse** -- a syntax error is refused with its line.
2. **Policy check** (ours) -- the module may contain only a docstring, imports from the
   SDK, immutable constants, helper functions and exactly one ``Contract`` subclass. It is
   refused, naming every offending line, for anything that is non-deterministic or unsafe:
   other imports (I/O, clocks, randomness), ``global``/``nonlocal``, sets (their iteration
   order depends on the process's hash seed), reflection names (``type``, ``getattr``,
   ``globals``, ``hash``, ``id``, ...), frame and generator internals, generators and
   ``async``, bare ``except`` or handlers for anything but ordinary value errors (so
   platform stops and ``RecursionError`` cannot be swallowed), ``return``/``break``
   inside ``finally``, mutable default arguments, f-string format specs, integer literals
   of more than ``MAX_INT_BITS`` bits.
3. **RestrictedPython** -- its transformer refuses names and attributes starting with
   ``_`` and routes attribute reads, item reads, writes, iteration and unpacking through
   guard functions we supply.
4. **Gas instrumentation** (ours) -- every function body charges on entry and tracks call
   depth (``enter``/``leave`` in a ``try/finally``), every ``while``/``for`` body charges
   one unit per iteration, comprehensions and ``*``-unpacking iterate through a metered
   iterator, and ``*``, ``+``, ``**``, ``<<``, ``%`` and ``//`` go through guards that
   charge for (and cap) the size of what they build, and for the work of big-integer
   arithmetic; ``x in seq`` charges for the length of ``seq``; an f-string charges for all
   that the values it renders hold.

The compiled module runs in fresh globals per executor (``make_class``): its body runs
under its own budget (:data:`MODULE_GAS_LIMIT`), then the guards are bound to that
executor's meter. Built-ins are a short allow-list; those that consume an iterable
(``sum``, ``sorted``, ``list``, ...) consume it through the metered iterator. Methods of
built-in values are charged for what they scan, copy or build; calling them through their
type (``str.join(s, parts)``) is refused, since it would skip those charges. Whatever C
code walks in full -- ``str``/``repr``/f-strings, storage writes and reads, a command's
result, ``call``/``send`` arguments -- is charged by :meth:`Guards.charge_deep`, which
counts a shared part as often as it occurs, so ``[[big] * 1000] * 1000`` cannot make a
cheap object expensive to render or encode. Text must be the same on every executor:
rendering an object whose default text holds its address (a function, the contract...)
is refused, object addresses are scrubbed from error messages, and ``dict.keys()`` /
``dict.items()`` are lists (views combine into sets, ordered by the process's hash seed).
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from types import CodeType, SimpleNamespace
from typing import Any

import msgspec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

from sealbridge.contracts import sdk
from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import ContractProgram, compute_code_hash
from sealbridge.contracts.gas import MAX_INT_BITS, MAX_OBJECT_SIZE, Abort, Meter
from sealbridge.core.errors import SealbridgeError

SDK_MODULE = "sealbridge.contracts.sdk"
MAX_SOURCE_SIZE = 30 * 1024  # the deploy command (code + envelope) must fit the inbox's 32 KiB
MODULE_GAS_LIMIT = 1_000_000  # for the module body (constants, declarations, decorators)
GAS = "_sb_gas_"
FORBIDDEN_NAMES = frozenset(
    {
        "open", "exec", "eval", "compile", "globals", "locals", "vars", "dir", "hash", "id",
        "set", "frozenset", "type", "object", "super", "print", "input", "breakpoint",
        "memoryview", "bytearray", "getattr", "setattr", "delattr", "hasattr", "help",
        "exit", "quit", "classmethod", "staticmethod", "property", "iter", "next",
        "Exception", "BaseException", "RuntimeError", "RecursionError", "MemoryError",
        "SystemExit", "KeyboardInterrupt", "GeneratorExit", "StopIteration",
    }
)  # fmt: skip
CATCHABLE = frozenset(
    {
        "ContractError", "ValueError", "KeyError", "IndexError", "LookupError",
        "ZeroDivisionError", "ArithmeticError", "TypeError", "OverflowError",
    }
)  # fmt: skip
FORBIDDEN_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | {"format", "format_map", "mro"}
STORAGE_DECLARATIONS = frozenset({"Value", "Map"})


# -- step 2: policy -------------------------------------------------------------------------
def _is_immutable_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Tuple):
        return all(_is_immutable_literal(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        return _is_immutable_literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_immutable_literal(node.left) and _is_immutable_literal(node.right)
    return False


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


class PolicyChecker(ast.NodeVisitor):
    """Collects every policy violation with its line."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []
        self.in_finally = 0

    def refuse(self, node: ast.AST, why: str) -> None:
        self.problems.append((getattr(node, "lineno", 0), why))

    # module and class shape
    def check_module(self, tree: ast.Module) -> None:
        classes = 0
        for stmt in tree.body:
            if _is_docstring(stmt) or isinstance(stmt, ast.FunctionDef):
                pass
            elif isinstance(stmt, ast.ImportFrom | ast.Import):
                self.check_import(stmt)
                continue
            elif isinstance(stmt, ast.Assign):
                if not (
                    all(isinstance(t, ast.Name) for t in stmt.targets)
                    and _is_immutable_literal(stmt.value)
                ):
                    self.refuse(stmt, "module-level names may only hold immutable constants")
            elif isinstance(stmt, ast.ClassDef):
                classes += 1
                self.check_class(stmt)
                continue
            else:
                self.refuse(stmt, f"{type(stmt).__name__} is not allowed at module level")
            self.visit(stmt)
        if classes != 1:
            self.refuse(
                tree, f"the source must define exactly one Contract class (found {classes})"
            )

    def check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if not (isinstance(node, ast.ImportFrom) and node.module == SDK_MODULE and not node.level):
            names = ", ".join(a.name for a in node.names)
            module = node.module if isinstance(node, ast.ImportFrom) else names
            self.refuse(
                node, f"import of {module!r}: only 'from {SDK_MODULE} import ...' is allowed"
            )
            return
        for alias in node.names:
            if alias.name not in sdk.PUBLIC_NAMES:
                self.refuse(node, f"{alias.name!r} is not part of the SDK")

    def check_class(self, node: ast.ClassDef) -> None:
        if (
            len(node.bases) != 1
            or not isinstance(node.bases[0], ast.Name)
            or node.bases[0].id != "Contract"
            or node.keywords
            or node.decorator_list
        ):
            self.refuse(node, f"class {node.name} must derive from Contract only (no decorators)")
        for stmt in node.body:
            if _is_docstring(stmt) or isinstance(stmt, ast.FunctionDef | ast.Pass):
                self.visit(stmt)
            elif isinstance(stmt, ast.Assign) and all(
                isinstance(t, ast.Name) for t in stmt.targets
            ):
                value = stmt.value
                is_declaration = (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id in STORAGE_DECLARATIONS
                )
                if not (is_declaration or _is_immutable_literal(value)):
                    self.refuse(stmt, "class attributes are storage (Value/Map) or constants")
                self.visit(stmt)
            else:
                self.refuse(stmt, f"{type(stmt).__name__} is not allowed in a contract class")

    # anywhere
    def visit_Import(self, node: ast.Import) -> None:
        self.check_import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.refuse(node, "imports belong at the top of the module")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.refuse(node, "classes may not be defined inside functions")

    def visit_Global(self, node: ast.Global) -> None:
        self.refuse(node, "'global' is not allowed (state lives in Value/Map storage)")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.refuse(node, "'nonlocal' is not allowed")

    def visit_Set(self, node: ast.Set) -> None:
        self.refuse(node, "sets are not allowed: their order depends on the process")

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self.visit_Set(node)  # type: ignore[arg-type]

    def visit_Yield(self, node: ast.Yield) -> None:
        self.refuse(node, "generators are not allowed")

    def visit_YieldFrom(self, node: ast.YieldFrom) -> None:
        self.refuse(node, "generators are not allowed")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.refuse(node, "async code is not allowed")

    def visit_Await(self, node: ast.Await) -> None:
        self.refuse(node, "async code is not allowed")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.refuse(node, f"{node.id!r} is not available to contracts")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FORBIDDEN_ATTRIBUTES:
            self.refuse(node, f"attribute {node.attr!r} is not available to contracts")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            if not _is_immutable_literal(default) and not (
                isinstance(default, ast.Name) and default.id in ("True", "False", "None")
            ):
                self.refuse(default, "default arguments must be immutable constants")
        saved = self.in_finally
        self.in_finally = 0
        self.generic_visit(node)
        self.in_finally = saved

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in node.args.defaults:
            if not _is_immutable_literal(default):
                self.refuse(default, "default arguments must be immutable constants")
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        for handler in node.handlers:
            self.check_handler(handler)
        for stmt in node.body + node.orelse:
            self.visit(stmt)
        for handler in node.handlers:
            for stmt in handler.body:
                self.visit(stmt)
        self.in_finally += 1
        for stmt in node.finalbody:
            self.visit(stmt)
        self.in_finally -= 1

    def check_handler(self, handler: ast.ExceptHandler) -> None:
        if handler.type is None:
            self.refuse(handler, "bare 'except:' is not allowed; name the errors to catch")
            return
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        for name in names:
            if not (isinstance(name, ast.Name) and name.id in CATCHABLE):
                shown = ast.unparse(name)
                self.refuse(
                    handler, f"cannot catch {shown}; catchable: {', '.join(sorted(CATCHABLE))}"
                )

    def visit_Return(self, node: ast.Return) -> None:
        if self.in_finally:
            self.refuse(node, "'return' inside 'finally' is not allowed")
        self.generic_visit(node)

    def visit_Break(self, node: ast.Break) -> None:
        if self.in_finally:
            self.refuse(node, "'break' inside 'finally' is not allowed")

    def visit_Continue(self, node: ast.Continue) -> None:
        if self.in_finally:
            self.refuse(node, "'continue' inside 'finally' is not allowed")

    def visit_Constant(self, node: ast.Constant) -> None:
        if type(node.value) is int and node.value.bit_length() > MAX_INT_BITS:
            self.refuse(node, f"integer literals may have at most {MAX_INT_BITS} bits")

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        if node.format_spec is not None:
            self.refuse(node, "f-string format specs are not allowed")
        self.generic_visit(node)


def _has_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call | ast.NamedExpr) for n in ast.walk(node))


class AugAssignRewriter(ast.NodeTransformer):
    """``a[k] += v`` becomes ``a[k] = a[k] + v`` (RestrictedPython refuses the former);
    targets containing calls are refused, since they would be evaluated twice."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if isinstance(node.target, ast.Name):
            return node
        if _has_call(node.target):
            self.problems.append(
                (node.lineno, "augmented assignment to a target containing a call")
            )
            return node
        load = _as_load(node.target)
        assign = ast.Assign(
            targets=[node.target], value=ast.BinOp(left=load, op=node.op, right=node.value)
        )
        return ast.copy_location(assign, node)


def _as_load(node: ast.expr) -> ast.expr:
    class ToLoad(ast.NodeTransformer):
        def generic_visit(self, n: ast.AST) -> ast.AST:
            super().generic_visit(n)
            if hasattr(n, "ctx"):
                n.ctx = ast.Load()
            return n

    copied: ast.expr = ToLoad().visit(ast.parse(ast.unparse(node), mode="eval").body)
    return copied


# -- step 4: gas instrumentation ----------------------------------------------------------
def _gas_call(method: str, node: ast.AST) -> ast.stmt:
    call = ast.Expr(
        ast.Call(
            func=ast.Attribute(ast.Name(GAS, ast.Load()), method, ast.Load()), args=[], keywords=[]
        )
    )
    return ast.copy_location(call, node)


OPERATOR_GUARDS = {
    ast.Add: "_sb_add_",
    ast.Mult: "_sb_mul_",
    ast.Pow: "_sb_pow_",
    ast.LShift: "_sb_lshift_",
    ast.Mod: "_sb_mod_",
    ast.FloorDiv: "_sb_floordiv_",
}


def _guard_call(guard: str, value: ast.expr) -> ast.expr:
    call = ast.Call(func=ast.Name(guard, ast.Load()), args=[value], keywords=[])
    return ast.copy_location(call, value)


class GasInstrumenter(ast.NodeTransformer):
    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        body = node.body
        docstring = [body[0]] if body and _is_docstring(body[0]) else []
        rest = body[len(docstring) :] or [ast.Pass()]
        guarded = ast.Try(body=rest, handlers=[], orelse=[], finalbody=[_gas_call("leave", node)])
        node.body = [*docstring, _gas_call("enter", node), ast.copy_location(guarded, node)]
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.generic_visit(node)
        tick = ast.Call(
            func=ast.Attribute(ast.Name(GAS, ast.Load()), "tick", ast.Load()),
            args=[],
            keywords=[],
        )
        # (tick(), body)[1]: charge one unit per call of the lambda
        node.body = ast.Subscript(
            value=ast.Tuple(elts=[tick, node.body], ctx=ast.Load()),
            slice=ast.Constant(1),
            ctx=ast.Load(),
        )
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, _gas_call("tick", node))
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, _gas_call("tick", node))
        return node

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = ast.Call(
                func=ast.Name("_getiter_", ast.Load()), args=[node.value], keywords=[]
            )
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        guard = OPERATOR_GUARDS.get(type(node.op))
        if guard is None:
            return node
        call = ast.Call(func=ast.Name(guard, ast.Load()), args=[node.left, node.right], keywords=[])
        return ast.copy_location(call, node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        # ``x in seq`` scans seq: charge for its length. ``a == b``, ``a < b`` ... walk
        # min(a, b) and ``k in d`` hashes k: charge the left operand of each pair for its
        # size (a constant bounds the work by its own size, so it needs no guard).
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        for index, op in enumerate(node.ops):
            left = operands[index]
            if not isinstance(op, ast.Is | ast.IsNot) and not isinstance(left, ast.Constant):
                operands[index] = _guard_call("_sb_cmp_", left)
            if isinstance(op, ast.In | ast.NotIn):
                operands[index + 1] = _guard_call("_sb_in_", operands[index + 1])
        node.left, node.comparators = operands[0], operands[1:]
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        # ``d[k] = v`` and ``del d[k]`` hash k (reads go through _getitem_, which charges)
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load) and not isinstance(node.slice, ast.Constant):
            node.slice = _guard_call("_sb_cmp_", node.slice)
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        # {**d} copies all of d
        self.generic_visit(node)
        node.values = [
            _guard_call("_sb_spread_", value) if key is None else value
            for key, value in zip(node.keys, node.values, strict=True)
        ]
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        # f(**d) copies all of d
        self.generic_visit(node)
        for keyword in node.keywords:
            if keyword.arg is None:
                keyword.value = _guard_call("_sb_spread_", keyword.value)
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        # f"{x}" renders all of x: the guard charges for it and renders it
        self.generic_visit(node)
        call = ast.Call(
            func=ast.Name("_sb_text_", ast.Load()),
            args=[node.value, ast.Constant(node.conversion)],
            keywords=[],
        )
        node.value = ast.copy_location(call, node.value)
        node.conversion = -1
        return node


def compile_contract(source: bytes, filename: str = "<contract>") -> CodeType:
    """Check and instrument contract source; raise CodeRejected naming every problem."""
    if len(source) > MAX_SOURCE_SIZE:
        raise CodeRejected([(0, f"source is larger than {MAX_SOURCE_SIZE} bytes")])
    try:
        text = source.decode("utf-8")
        tree = ast.parse(text, filename=filename)
    except UnicodeDecodeError as exc:
        raise CodeRejected([(0, f"source is not UTF-8: {exc.reason}")]) from exc
    except SyntaxError as exc:
        raise CodeRejected([(exc.lineno or 0, f"syntax error: {exc.msg}")]) from exc
    checker = PolicyChecker()
    checker.check_module(tree)
    problems = checker.problems
    tree = AugAssignRewriter(problems).visit(tree)
    errors: list[str] = []
    RestrictingNodeTransformer(errors, [], {}).visit(tree)
    for error in errors:
        line, _, why = error.partition(": ")
        number = line.removeprefix("Line ").strip()
        problems.append((int(number) if number.isdigit() else 0, why or error))
    if problems:
        raise CodeRejected(problems)
    tree = GasInstrumenter().visit(tree)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec")


# -- guards ---------------------------------------------------------------------------------
FLAT_KINDS = frozenset({int, float, bool, type(None)})
BUILTIN_TYPES = frozenset({str, bytes, int, float, bool, list, tuple, dict, range})
TYPE_METHODS = frozenset({"from_bytes", "fromhex", "fromkeys", "maketrans"})
MOVING_METHODS = frozenset({"copy", "insert", "reverse"})  # list methods moving every item
COMPARING_METHODS = frozenset({"count", "index", "remove"})  # comparing every item
PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
SPECIAL_METHODS = TYPE_METHODS | PADDING_METHODS | {
    "replace", "join", "expandtabs", "to_bytes", "extend", "update", "pop", "keys", "items",
    "translate",
}  # fmt: skip
SMALL_INT_BITS = 4096  # integer arithmetic below this size is not checked
HALF_SMALL = 1 << (SMALL_INT_BITS // 2)  # the product of two ints below this is small
WRAPPED_KINDS = frozenset({str, bytes, list, tuple, dict, int, bool, type})


ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # in the default repr of objects


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def scrub(text: str) -> str:
    """``text`` without object addresses (Python puts them in some error messages):
    what a contract reads must be the same on every executor."""
    return ADDRESS.sub("", text) if " at 0x" in text else text


def _words(bits: int) -> int:
    return (bits >> 6) + 1


class GuardedType:
    """A built-in type as contracts see it: calling it builds through a metered guard;
    ``isinstance``, ``|`` and storage declarations see the real type (``sb_type``)."""

    __slots__ = ("sb_type", "build")

    def __init__(self, kind: type[Any], build: Callable[..., Any]) -> None:
        self.sb_type = kind
        self.build = build

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.build(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self.sb_type)

    def __or__(self, other: Any) -> Any:
        return self.sb_type | sdk.get_real_kind(other)

    def __ror__(self, other: Any) -> Any:
        return sdk.get_real_kind(other) | self.sb_type

    def __repr__(self) -> str:
        return f"<type {self.sb_type.__name__}>"


class Writer:
    """What ``_write_`` gives contract code for storage (the contract, a map): it charges
    for what is written -- storage encodes all of a value, shared parts as often as they
    occur -- then writes."""

    __slots__ = ("sb_target", "sb_guards")
    sb_target: Any
    sb_guards: Guards

    def __init__(self, target: Any, guards: Guards) -> None:
        object.__setattr__(self, "sb_target", target)
        object.__setattr__(self, "sb_guards", guards)

    def __setattr__(self, name: str, value: Any) -> None:
        self.sb_guards.charge_deep(value)
        setattr(self.sb_target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.sb_target, name)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.sb_guards.charge_deep(value)
        self.sb_target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.sb_target[key]


class Guards:
    """The guard functions one executor's sandboxed code calls, bound to its meter."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.inplace_guards: dict[str, Callable[[Any, Any], Any]] = {
            "+=": self.add,
            "*=": self.mul,
            "**=": self.pow,
            "<<=": self.lshift,
            "%=": self.mod,
            "//=": self.floordiv,
            **INPLACE,
        }

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        charge = self.meter.charge
        for item in iterable:
            charge(1)
            yield item

    def getiter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        if type(iterable) is sdk.MapView:
            self.meter.charge_size(len(iterable))  # iterating a map sorts its keys
        return self.iterate(iterable)

    def charge_deep(self, value: Any, *, render: bool = False) -> None:
        """Charge for everything ``value`` holds, counting shared parts as often as C code
        that renders or encodes it visits them (``[[x] * 1000] * 1000`` holds a million
        ``x``): a unit per 16 elements and per 64 bytes; refuse more than
        ``MAX_OBJECT_SIZE`` elements and bytes in all. With ``render``, also refuse
        objects whose text is not the same on every executor (``<... at 0x7f...>``)."""
        if type(value) in FLAT_KINDS:
            return
        meter = self.meter
        total = 0
        pending = [value]
        while pending:
            item = pending.pop()
            kind = type(item)
            if kind is str or kind is bytes:
                total += len(item)
                continue
            if kind is dict:
                parts: tuple[Any, ...] = (item.keys(), item.values())
            elif kind is list or kind is tuple:
                parts = (item,)
            elif isinstance(item, BaseException):
                parts = (item.args,)
            else:
                if render and not (
                    kind is range or kind is GuardedType or isinstance(item, type | msgspec.Struct)
                ):
                    raise TypeError(
                        f"{kind.__name__} objects have no text that is the same on every executor"
                    )
                continue  # anything else renders small, or cannot be encoded at all
            for part in parts:
                size = len(part)
                total += 1 + size
                if total > MAX_OBJECT_SIZE:
                    meter.check_size(total)  # refuses
                meter.charge(1 + size // 16)
                if size and not FLAT_KINDS.issuperset(map(type, part)):
                    meter.charge(size // 4)
                    pending.extend(x for x in part if type(x) not in FLAT_KINDS)
        meter.charge_size(total)

    def getattr(self, obj: Any, name: str, *default: Any) -> Any:
        if not isinstance(name, str) or name.startswith("_") or name in FORBIDDEN_ATTRIBUTES:
            raise AttributeError(f"attribute {name!r} is not available to contracts")
        kind = type(obj)
        if kind is GuardedType:
            obj = obj.sb_type
            kind = type
        if kind is type and obj in BUILTIN_TYPES and name not in TYPE_METHODS:
            # str.ljust(s, n) would skip the guard that s.ljust(n) goes through
            raise AttributeError(f"call {name} on a value, not on {obj.__name__}")
        if kind is sdk.Value or kind is sdk.Map:
            # C.items.default is shared by every command: state outside storage
            raise AttributeError("storage declarations have no attributes for contracts")
        value = getattr(obj, name, *default)
        if kind in WRAPPED_KINDS:
            return self.wrap_method(obj, name, value) if callable(value) else value
        if kind is sdk.MapView:
            return self.wrap_map_method(obj, name, value) if callable(value) else value
        if isinstance(obj, sdk.Contract):
            if name == "call" or name == "send":
                return self.wrap_message(value)
            if type(value) is list or type(value) is dict:
                self.charge_deep(value)  # reading storage copied it
        elif name == "args" and isinstance(obj, BaseException):
            return tuple(scrub(a) if type(a) is str else a for a in value)
        return value

    def getitem(self, obj: Any, key: Any) -> Any:
        if type(key) is slice:
            if isinstance(obj, str | bytes | list | tuple):
                self.meter.charge_size(len(range(*key.indices(len(obj)))))  # slices copy
        elif type(key) is tuple:
            self.charge_deep(key)  # hashing a tuple walks all of it
        value = obj[key]
        if type(obj) is sdk.MapView and (type(value) is list or type(value) is dict):
            self.charge_deep(value)  # reading storage copied it
        return value

    def wrap_method(self, obj: Any, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        meter = self.meter
        kind = type(obj)
        if kind is dict and name in ("get", "setdefault", "pop"):

            def keyed(key: Any, *rest: Any) -> Any:
                return method(self.compared(key), *rest)  # hashing a tuple key walks it

            return keyed
        if name not in SPECIAL_METHODS:
            if kind is list or kind is tuple:
                size = len(obj)
                if name in COMPARING_METHODS:
                    meter.charge_size(4 * size)
                elif name == "sort":
                    meter.charge_size(4 * size * size.bit_length())
                    for item in obj:
                        self.compared(item)
                elif name in MOVING_METHODS:
                    meter.charge_size(size)
            elif kind is str or kind is bytes or (kind is dict and name == "copy"):
                meter.charge_size(len(obj))  # the method reads (and may copy) all of obj
            return method
        if name in TYPE_METHODS:
            return self.wrap_type_method(name, method)
        if kind is type:
            return method
        if name in PADDING_METHODS:

            def padded(width: int, *rest: Any) -> Any:
                meter.check_size(width)
                return method(width, *rest)

            return padded
        if name == "replace":

            def replace(old: Any, new: Any, *rest: Any) -> Any:
                growth = max(0, len(new) - len(old)) * obj.count(old)
                meter.check_size(len(obj) + growth)
                return method(old, new, *rest)

            return replace
        if name == "join":

            def join(items: Iterable[Any]) -> Any:
                parts = list(self.iterate(items))
                meter.check_size(sum(_sized(p) for p in parts))
                return method(parts)

            return join
        if name == "translate" and kind is str:

            def translate(table: Any) -> Any:
                # each character may become a whole string of the table
                values = table.values() if isinstance(table, dict) else table
                longest = max((len(v) for v in self.iterate(values) if type(v) is str), default=1)
                meter.check_size(len(obj) * max(1, longest))
                return method(table)

            return translate
        if name == "expandtabs":

            def expandtabs(tabsize: int = 8) -> Any:
                meter.check_size(len(obj) * max(1, tabsize))
                return method(tabsize)

            return expandtabs
        if name == "to_bytes":

            def to_bytes(length: int = 1, *rest: Any, **kw: Any) -> Any:
                meter.check_size(length)
                return method(length, *rest, **kw)

            return to_bytes
        if name in ("extend", "update"):

            def consume(items: Any, *rest: Any) -> Any:
                if isinstance(items, dict):
                    meter.check_size(len(items))
                    return method(items, *rest)
                return method(list(self.iterate(items)), *rest)

            return consume
        if name == "pop" and kind is list:

            def pop(*index: Any) -> Any:
                if index:
                    meter.charge_size(len(obj))  # moves the items after it
                return method(*index)

            return pop
        if (name == "keys" or name == "items") and kind is dict:
            # lists, not views: ``a.keys() | b.keys()`` would be a set, whose order
            # depends on the process's string hash seed

            def listed() -> list[Any]:
                meter.charge_size(len(obj))
                return list(method())

            return listed
        return method

    def wrap_type_method(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        """``int.from_bytes``, ``bytes.fromhex``, ``dict.fromkeys``, ``str.maketrans``."""
        meter = self.meter

        def on_type(data: Any, *rest: Any, **kw: Any) -> Any:
            if name == "fromkeys":
                data = list(self.iterate(data))
            elif name == "from_bytes":
                data = data if type(data) is bytes else self.make_bytes(data)
                meter.check_int(8 * len(data), 0)
            meter.charge_size(_sized(data))
            return method(data, *rest, **kw)

        return on_type

    def wrap_message(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """``self.call`` / ``self.send``: the arguments are encoded."""

        def message(*head: Any, **args: Any) -> Any:
            self.charge_deep(args)
            return method(*head, **args)

        return message

    def wrap_map_method(
        self, view: sdk.MapView[Any, Any], name: str, method: Callable[..., Any]
    ) -> Callable[..., Any]:
        if name in ("keys", "items", "values"):
            self.meter.charge_size(len(view))  # sorts the keys
        if name in ("get", "items", "values"):

            def read(*args: Any) -> Any:
                result = method(*args)
                self.charge_deep(result)  # reading storage copied it
                return result

            return read
        return method

    def wrap_entry(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """A command, query or init: the executor encodes its result."""

        @functools.wraps(method)
        def entry(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                # the message reaches the outcome: no object addresses in it
                text = str(exc)
                if " at 0x" not in text or isinstance(exc, SealbridgeError):
                    raise
                try:
                    clean = type(exc)(scrub(text))
                except Exception:  # noqa: BLE001 -- a type that takes other arguments
                    clean = ValueError(scrub(text))
                raise clean from None
            self.charge_deep(result)
            return result

        return entry

    def write(self, obj: Any) -> Any:
        if type(obj) is list or type(obj) is dict:
            return obj
        if isinstance(obj, sdk.Contract | sdk.MapView):
            return Writer(obj, self)
        raise TypeError(f"contracts may not modify {type(obj).__name__} objects")

    def compared(self, value: Any) -> Any:
        """An operand of a comparison or a hashed key: comparing walks it, hashing a tuple
        walks it; charge for its size (numbers pass for free)."""
        kind = type(value)
        if kind is int or kind is float or kind is bool or value is None:
            return value
        if kind is str or kind is bytes:
            if len(value) > 64:
                self.meter.charge_size(len(value))
        elif kind is list or kind is tuple or kind is dict:
            self.charge_deep(value)
        return value

    def iterate_compared(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """The items of an iterable a built-in will compare (sorted, min, max)."""
        charge, compared = self.meter.charge, self.compared
        for item in iterable:
            charge(1)
            yield compared(item)

    def contained(self, container: Any) -> Any:
        """The right side of ``in``: scanning a sequence costs its length."""
        kind = type(container)
        if kind is list or kind is tuple:
            if len(container) > 16:
                self.meter.charge_size(4 * len(container))  # compares every item
        elif (kind is str or kind is bytes) and len(container) > 64:
            self.meter.charge_size(len(container))
        return container

    def spread(self, mapping: Any) -> Any:
        """The operand of ``**``: it is copied."""
        if isinstance(mapping, dict | sdk.MapView):
            self.meter.charge_size(len(mapping))
        return mapping

    def round(self, number: Any, *ndigits: Any) -> Any:
        if ndigits and isinstance(number, int) and isinstance(ndigits[0], int):
            if ndigits[0] < -SMALL_INT_BITS // 4:
                bits = -ndigits[0] * 4  # rounding to 10**-ndigits builds that power
                self.meter.check_int(bits, _words(bits) * _words(bits))
        return round(number, *ndigits)

    def sum(self, iterable: Iterable[Any], start: Any = 0) -> Any:
        if not isinstance(start, int | float):
            # adding sequences one by one copies each partial result: quadratic
            raise TypeError("sum() adds numbers only; join or extend sequences instead")
        return sum(self.iterate(iterable), start)

    def text(self, value: Any, conversion: int = -1) -> str:
        """What an f-string shows for ``value`` (``conversion``: ``!r``, ``!a``...)."""
        if type(value) is str and conversion < 0:
            return value
        self.charge_deep(value, render=True)
        if conversion == ord("r"):
            return scrub(repr(value))
        if conversion == ord("a"):
            return scrub(ascii(value))
        return scrub(format(value, ""))

    def add(self, a: Any, b: Any) -> Any:
        kind = type(a)
        if kind is int or kind is float:
            return a + b
        if isinstance(a, str | bytes | list | tuple):
            self.meter.check_size(len(a) + _sized(b))
        return a + b

    def mul(self, a: Any, b: Any) -> Any:
        if type(a) is float or type(b) is float:
            return a * b  # a float result is 8 bytes; an int operand is at most 64 Kibit
        if type(a) is int and type(b) is int:
            if -HALF_SMALL < a < HALF_SMALL and -HALF_SMALL < b < HALF_SMALL:
                return a * b
            bits_a, bits_b = a.bit_length(), b.bit_length()
            if bits_a + bits_b > SMALL_INT_BITS:
                self.meter.check_int(bits_a + bits_b, _words(bits_a) * _words(bits_b))
            return a * b
        if isinstance(a, str | bytes | list | tuple) and isinstance(b, int):
            self.meter.check_size(len(a) * max(b, 0))
        elif isinstance(b, str | bytes | list | tuple) and isinstance(a, int):
            self.meter.check_size(len(b) * max(a, 0))
        return a * b

    def pow(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int) and b > 0 and a.bit_length() > 1:
            bits = a.bit_length() * b
            if bits > SMALL_INT_BITS:
                self.meter.check_int(bits, _words(bits) * _words(bits))
        return a**b

    def lshift(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int) and a and b > 0:
            bits = a.bit_length() + b
            if bits > SMALL_INT_BITS:
                self.meter.check_int(bits, 0)
                self.meter.charge_size(bits // 8)
        return a << b

    def check_division(self, a: Any, b: Any) -> None:
        if isinstance(a, int) and isinstance(b, int):
            bits_a = a.bit_length()
            if bits_a > SMALL_INT_BITS:
                self.meter.check_int(0, _words(bits_a) * _words(b.bit_length()))

    def floordiv(self, a: Any, b: Any) -> Any:
        if not (type(a) is int and -HALF_SMALL < a < HALF_SMALL):
            self.check_division(a, b)
        return a // b

    def mod(self, a: Any, b: Any) -> Any:
        if type(a) is int and -HALF_SMALL < a < HALF_SMALL:
            return a % b
        if isinstance(a, str | bytes):
            raise TypeError("'%' formatting is not available to contracts; use f-strings")
        self.check_division(a, b)
        return a % b

    def divmod(self, a: Any, b: Any) -> Any:
        self.check_division(a, b)
        return divmod(a, b)

    def inplace(self, op: str, a: Any, b: Any) -> Any:
        return self.inplace_guards[op](a, b)

    def consuming(
        self,
        function: Callable[..., Any],
        at: int = 0,
        *,
        sole: bool = False,
        compares: bool = False,
    ) -> Callable[..., Any]:
        """A built-in whose argument ``at`` is an iterable, fed through the meter (with
        ``sole``, only when it is the only one: ``max(a, b)`` compares a and b); with
        ``compares``, each item is also charged for its size (the built-in compares it)."""
        iterate = self.iterate_compared if compares else self.iterate

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if len(args) > at and not (sole and len(args) > 1):
                args = (*args[:at], iterate(args[at]), *args[at + 1 :])
            elif compares:
                args = tuple(self.compared(a) for a in args)
            return function(*args, **kwargs)

        guarded.__name__ = function.__name__
        return guarded

    def zip(self, *iterables: Any, strict: bool = False) -> Any:
        return zip(*(self.iterate(i) for i in iterables), strict=strict)

    def make_bytes(self, value: Any = b"", *rest: Any) -> bytes:
        if isinstance(value, int):
            self.meter.check_size(value)
            return bytes(value)
        if isinstance(value, str):
            self.meter.charge_size(len(value))
            return bytes(value, *rest)
        return bytes(self.iterate(value))

    def make_float(self, value: Any = 0.0) -> float:
        if isinstance(value, str | bytes):
            self.meter.charge_size(len(value))
        return float(value)

    def make_dict(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        if args:
            if type(args[0]) is dict:
                self.meter.charge_size(len(args[0]))  # a copy
            else:
                args = (self.iterate(args[0]), *args[1:])
        return dict(*args, **kwargs)

    def make_int(self, value: Any = 0, *rest: Any) -> int:
        if type(value) is float:
            return int(value)  # at most 1024 bits
        if isinstance(value, str | bytes):
            # a power-of-two base has no digit limit: bound the text, then the result
            self.meter.check_int(len(value), 0)
            self.meter.charge_size(len(value))
        result = int(value, *rest)
        if result.bit_length() > SMALL_INT_BITS:
            self.meter.check_int(result.bit_length(), 0)
        return result

    def make_str(self, *args: Any, **kwargs: Any) -> str:
        if not args or type(args[0]) in FLAT_KINDS:
            return str(*args, **kwargs)
        if len(args) == 1 and not kwargs:
            self.charge_deep(args[0], render=True)  # str() of a container renders it all
            return scrub(str(args[0]))
        self.meter.charge_size(_sized(args[0]))  # decoding bytes
        return str(*args, **kwargs)

    def repr(self, value: Any) -> str:
        self.charge_deep(value, render=True)
        return scrub(repr(value))

    def make_builtins(self) -> dict[str, Any]:
        plain = {
            name: getattr(builtins, name)
            for name in (
                "abs", "bool", "chr", "isinstance", "len", "ord", "range", "reversed",
                "callable", "True", "False", "None", "ValueError", "KeyError",
                "IndexError", "LookupError", "ZeroDivisionError", "ArithmeticError", "TypeError",
                "OverflowError", "__build_class__",
            )
        }  # fmt: skip
        consuming = {
            **{
                name: self.consuming(getattr(builtins, name))
                for name in ("all", "any", "enumerate")
            },
            "sorted": self.consuming(sorted, compares=True),
            "filter": self.consuming(filter, 1),
            "map": self.consuming(map, 1),
            "max": self.consuming(max, sole=True, compares=True),
            "min": self.consuming(min, sole=True, compares=True),
        }
        types = {
            "bytes": GuardedType(bytes, self.make_bytes),
            "int": GuardedType(int, self.make_int),
            "float": GuardedType(float, self.make_float),
            "str": GuardedType(str, self.make_str),
            "list": GuardedType(list, self.consuming(list)),
            "tuple": GuardedType(tuple, self.consuming(tuple)),
            "dict": GuardedType(dict, self.make_dict),
        }
        sdk_namespace = SimpleNamespace(**{n: getattr(sdk, n) for n in sdk.PUBLIC_NAMES})

        def import_sdk(name: str, *args: Any, **kwargs: Any) -> Any:
            if name != SDK_MODULE:
                raise ImportError(f"contracts may import only {SDK_MODULE}")
            return sdk_namespace

        return {
            **plain,
            **consuming,
            **types,
            "zip": self.zip,
            "pow": self.pow,
            "divmod": self.divmod,
            "repr": self.repr,
            "round": self.round,
            "sum": self.sum,
            "__import__": import_sdk,
        }

    def make_globals(self) -> dict[str, Any]:
        return {
            "__builtins__": self.make_builtins(),
            "__name__": "contract",
            "__metaclass__": type,
            GAS: self.meter,
            "_getattr_": self.getattr,
            "_getitem_": self.getitem,
            "_getiter_": self.getiter,
            "_write_": self.write,
            "_inplacevar_": self.inplace,
            "_apply_": lambda f, *a, **kw: f(*a, **kw),
            "_unpack_sequence_": guarded_unpack_sequence,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_sb_add_": self.add,
            "_sb_mul_": self.mul,
            "_sb_pow_": self.pow,
            "_sb_lshift_": self.lshift,
            "_sb_mod_": self.mod,
            "_sb_floordiv_": self.floordiv,
            "_sb_in_": self.contained,
            "_sb_cmp_": self.compared,
            "_sb_text_": self.text,
            "_sb_spread_": self.spread,
        }


INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "-=": lambda a, b: a - b,
    "/=": lambda a, b: a / b,
    ">>=": lambda a, b: a >> b,
    "&=": lambda a, b: a & b,
    "|=": lambda a, b: a | b,
    "^=": lambda a, b: a ^ b,
    "@=": lambda a, b: a @ b,
}


def load_source(source: bytes, filename: str = "<contract>") -> ContractProgram:
    """Check, instrument and load contract source as a sandboxed program. Whatever goes
    wrong -- including the compiler's own limits (``RecursionError`` on deeply nested
    expressions) and methods the executor cannot call -- is a CodeRejected."""
    try:
        return _load_source(source, filename)
    except CodeRejected:
        raise
    except (Exception, Abort) as exc:  # noqa: BLE001 -- any failure refuses the code
        why = scrub(f"{type(exc).__name__}: {exc}")
        raise CodeRejected([(0, f"cannot load the contract: {why}")]) from exc


def _load_source(source: bytes, filename: str) -> ContractProgram:
    code = compile_contract(source, filename)

    def make_class(meter: Meter) -> type[sdk.Contract]:
        # the module body runs under its own budget (it is code too: a declaration's
        # default or a decorator's argument may loop), then the guards serve ``meter``
        guards = Guards(Meter())
        guards.meter.start(MODULE_GAS_LIMIT)
        namespace = guards.make_globals()
        try:
            exec(code, namespace)  # noqa: S102 -- checked, instrumented, guarded code
        except (Exception, Abort) as exc:  # noqa: BLE001 -- module body failed
            why = scrub(f"module body failed: {type(exc).__name__}: {exc}")
            raise CodeRejected([(0, why)]) from exc
        guards.meter = meter
        namespace[GAS] = meter
        classes = [
            v
            for v in namespace.values()
            if isinstance(v, type) and issubclass(v, sdk.Contract) and v is not sdk.Contract
        ]
        if len(classes) != 1:
            raise CodeRejected([(0, "the source must define exactly one Contract class")])
        cls = classes[0]
        for name, member in list(vars(cls).items()):
            if callable(member) and getattr(member, sdk.KIND_ATTR, None) is not None:
                setattr(cls, name, guards.wrap_entry(member))
        return cls

    return ContractProgram(
        source=source, code_hash=compute_code_hash(source), make_class=make_class, sandboxed=True
    )
