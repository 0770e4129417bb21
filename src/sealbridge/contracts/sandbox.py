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
   inside ``finally``, mutable default arguments, f-string format specs.
3. **RestrictedPython** -- its transformer refuses names and attributes starting with
   ``_`` and routes attribute reads, item reads, writes, iteration and unpacking through
   guard functions we supply.
4. **Gas instrumentation** (ours) -- every function body charges on entry and tracks call
   depth (``enter``/``leave`` in a ``try/finally``), every ``while``/``for`` body charges
   one unit per iteration, comprehensions and ``*``-unpacking iterate through a metered
   iterator, and ``*``, ``+``, ``**``, ``<<`` and ``%`` go through guards that charge for
   (and cap) the size of what they build.

The compiled module runs in fresh globals per executor (``make_class``), whose guards are
bound to that executor's meter. Built-ins are a short allow-list; those that consume an
iterable (``sum``, ``sorted``, ``list``, ...) consume it through the metered iterator.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable, Iterable, Iterator
from types import CodeType, SimpleNamespace
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

from sealbridge.contracts import sdk
from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import ContractProgram, compute_code_hash
from sealbridge.contracts.gas import Meter, OutOfMemory

SDK_MODULE = "sealbridge.contracts.sdk"
MAX_SOURCE_SIZE = 64 * 1024
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
}


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
def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


class GuardedType:
    """A built-in type as contracts see it: calling it builds through a metered guard;
    ``isinstance`` and storage declarations see the real type (``sb_type``)."""

    __slots__ = ("sb_type", "build")

    def __init__(self, kind: type[Any], build: Callable[..., Any]) -> None:
        self.sb_type = kind
        self.build = build

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.build(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self.sb_type)

    def __repr__(self) -> str:
        return f"<type {self.sb_type.__name__}>"


class Guards:
    """The guard functions one executor's sandboxed code calls, bound to its meter."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        charge = self.meter.charge
        for item in iterable:
            charge(1)
            yield item

    def getiter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        return self.iterate(iterable)

    def getattr(self, obj: Any, name: str, *default: Any) -> Any:
        if not isinstance(name, str) or name.startswith("_") or name in FORBIDDEN_ATTRIBUTES:
            raise AttributeError(f"attribute {name!r} is not available to contracts")
        value = getattr(obj, name, *default)
        if isinstance(obj, str | bytes | list | dict | int) and callable(value):
            return self.wrap_method(obj, name, value)
        return value

    def wrap_method(self, obj: Any, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        meter = self.meter
        if name in ("ljust", "rjust", "center", "zfill"):

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
        if name in ("extend", "update", "fromkeys"):

            def consume(items: Any, *rest: Any) -> Any:
                if isinstance(items, dict):
                    meter.check_size(len(items))
                    return method(items, *rest)
                return method(list(self.iterate(items)), *rest)

            return consume
        if name in ("count", "index", "find", "rfind", "split", "copy", "sort"):
            meter.charge(1 + _sized(obj) // 64)
        return method

    def write(self, obj: Any) -> Any:
        if type(obj) in (list, dict) or isinstance(obj, sdk.Contract | sdk.MapView):
            return obj
        raise TypeError(f"contracts may not modify {type(obj).__name__} objects")

    def add(self, a: Any, b: Any) -> Any:
        if type(a) is int:
            return a + b
        if isinstance(a, str | bytes | list | tuple):
            self.meter.check_size(len(a) + _sized(b))
        return a + b

    def mul(self, a: Any, b: Any) -> Any:
        if type(a) is int and type(b) is int:
            if a.bit_length() + b.bit_length() > 4096:
                self.meter.check_size((a.bit_length() + b.bit_length()) // 8)
            return a * b
        if isinstance(a, str | bytes | list | tuple) and isinstance(b, int):
            self.meter.check_size(len(a) * max(b, 0))
        elif isinstance(b, str | bytes | list | tuple) and isinstance(a, int):
            self.meter.check_size(len(b) * max(a, 0))
        return a * b

    def pow(self, a: Any, b: Any) -> Any:
        if type(a) is int and type(b) is int and b > 0:
            bits = max(a.bit_length(), 1) * b
            if bits > 4096:
                self.meter.check_size(bits // 8)
        return a**b

    def lshift(self, a: Any, b: Any) -> Any:
        if type(b) is int and b > 4096:
            self.meter.check_size(b // 8)
        return a << b

    def mod(self, a: Any, b: Any) -> Any:
        if isinstance(a, str | bytes):
            raise TypeError("'%' formatting is not available to contracts; use f-strings")
        return a % b

    def inplace(self, op: str, a: Any, b: Any) -> Any:
        binary = {
            "+=": self.add,
            "*=": self.mul,
            "**=": self.pow,
            "<<=": self.lshift,
            "%=": self.mod,
        }.get(op)
        if binary is not None:
            return binary(a, b)
        return INPLACE[op](a, b)

    def consuming(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """A built-in whose first argument is an iterable, fed through the meter."""

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if args and not isinstance(args[0], int | float):
                args = (self.iterate(args[0]), *args[1:])
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
            return bytes(value, *rest)
        return bytes(self.iterate(value))

    def make_builtins(self) -> dict[str, Any]:
        plain = {
            name: getattr(builtins, name)
            for name in (
                "abs", "bool", "chr", "divmod", "float", "int", "isinstance", "len", "ord",
                "range", "repr", "round", "str", "callable", "True", "False", "None",
                "ValueError", "KeyError", "IndexError", "LookupError", "ZeroDivisionError",
                "ArithmeticError", "TypeError", "OverflowError", "__build_class__",
            )
        }  # fmt: skip
        consuming = {
            name: self.consuming(getattr(builtins, name))
            for name in (
                "all", "any", "enumerate", "filter", "map", "max", "min", "reversed", "sorted",
                "sum",
            )
        }  # fmt: skip
        types = {
            "bytes": GuardedType(bytes, self.make_bytes),
            "list": GuardedType(list, self.consuming(list)),
            "tuple": GuardedType(tuple, self.consuming(tuple)),
            "dict": GuardedType(dict, self.consuming(dict)),
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
            "__import__": import_sdk,
        }

    def make_globals(self) -> dict[str, Any]:
        return {
            "__builtins__": self.make_builtins(),
            "__name__": "contract",
            "__metaclass__": type,
            GAS: self.meter,
            "_getattr_": self.getattr,
            "_getitem_": lambda obj, key: obj[key],
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
        }


INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "-=": lambda a, b: a - b,
    "/=": lambda a, b: a / b,
    "//=": lambda a, b: a // b,
    ">>=": lambda a, b: a >> b,
    "&=": lambda a, b: a & b,
    "|=": lambda a, b: a | b,
    "^=": lambda a, b: a ^ b,
    "@=": lambda a, b: a @ b,
}


def load_source(source: bytes, filename: str = "<contract>") -> ContractProgram:
    """Check, instrument and load contract source as a sandboxed program."""
    code = compile_contract(source, filename)

    def make_class(meter: Meter) -> type[sdk.Contract]:
        namespace = Guards(meter).make_globals()
        try:
            exec(code, namespace)  # noqa: S102 -- checked, instrumented, guarded code
        except (Exception, OutOfMemory) as exc:  # noqa: BLE001 -- module body failed
            raise CodeRejected([(0, f"module body failed: {type(exc).__name__}: {exc}")]) from exc
        classes = [
            v
            for v in namespace.values()
            if isinstance(v, type) and issubclass(v, sdk.Contract) and v is not sdk.Contract
        ]
        if len(classes) != 1:
            raise CodeRejected([(0, "the source must define exactly one Contract class")])
        return classes[0]

    return ContractProgram(
        source=source, code_hash=compute_code_hash(source), make_class=make_class, sandboxed=True
    )
