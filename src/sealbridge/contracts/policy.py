"""Deploy-time checks of contract source (ours, on the host, before any of it runs).

Theory of operation
-------------------
Containment does not depend on this module: contract code runs in its own WebAssembly
instance under fuel (``contracts/wasm/``), and the host checks everything the guest hands
it. These checks give authors an early, line-precise refusal for code that could only
misbehave or diverge, and keep contracts within the documented language:

* the module holds a docstring, imports, immutable constants, helper functions, helper
  classes and exactly one ``Contract`` subclass;
* imports name the SDK or a module of :data:`ALLOWED_MODULES` (deterministic standard
  library; the guest enforces the same list at run time);
* no ``global``/``nonlocal``, sets (their order follows the hash seed), generators or
  ``async``, reflection names (``type``, ``getattr``, ``globals``, ``id``, ``hash``...),
  names or attributes starting with ``_`` (interpreter internals), bare ``except`` or
  handlers for anything but ordinary value errors, ``return``/``break`` in ``finally``,
  mutable default arguments, f-string format specs, integer literals over
  :data:`MAX_INT_BITS` bits.

Source is also capped in size (:data:`MAX_SOURCE_SIZE`) and in nesting (the parser's
recursion is bounded before it runs).
"""

from __future__ import annotations

import ast
import threading

from sealbridge.contracts import sdk
from sealbridge.contracts.errors import CodeRejected

SDK_MODULE = "sealbridge.contracts.sdk"
MAX_SOURCE_SIZE = 30 * 1024  # the deploy command (code + envelope) must fit the inbox's 32 KiB
MAX_INT_BITS = 1 << 16
MAX_NESTING = 100  # brackets and indentation levels, counted before parsing
ALLOWED_MODULES = frozenset(
    {
        "bisect", "collections", "dataclasses", "decimal", "enum", "fractions", "functools",
        "heapq", "itertools", "json", "math", "operator", "re", "statistics", "string",
        "typing", "__future__",
    }
)  # fmt: skip
FORBIDDEN_NAMES = frozenset(
    {
        "open", "exec", "eval", "compile", "globals", "locals", "vars", "dir", "hash", "id",
        "set", "frozenset", "type", "object", "super", "print", "input", "breakpoint",
        "memoryview", "bytearray", "getattr", "setattr", "delattr", "hasattr", "help",
        "exit", "quit", "iter", "next", "__import__",
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
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "format", "format_map", "mro", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame",
        "cr_code", "ag_frame", "ag_code", "f_back", "f_globals", "f_locals", "f_builtins",
        "f_code", "co_code", "tb_frame", "tb_next",
    }
)  # fmt: skip
STORAGE_DECLARATIONS = frozenset({"Value", "Map"})


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
        contracts = 0
        for stmt in tree.body:
            if _is_docstring(stmt) or isinstance(stmt, ast.FunctionDef):
                pass
            elif isinstance(stmt, ast.ImportFrom | ast.Import):
                self.check_import(stmt)
                continue
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if not (
                    all(isinstance(t, ast.Name) for t in targets)
                    and stmt.value is not None
                    and _is_immutable_literal(stmt.value)
                ):
                    self.refuse(stmt, "module-level names may only hold immutable constants")
            elif isinstance(stmt, ast.ClassDef):
                if _is_contract_class(stmt):
                    contracts += 1
                    self.check_class(stmt)
                else:
                    self.check_helper_class(stmt)
                continue
            else:
                self.refuse(stmt, f"{type(stmt).__name__} is not allowed at module level")
            self.visit(stmt)
        if contracts != 1:
            self.refuse(
                tree, f"the source must define exactly one Contract class (found {contracts})"
            )

    def check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                self.refuse(node, "relative imports are not allowed")
            elif node.module == SDK_MODULE:
                for alias in node.names:
                    if alias.name not in sdk.PUBLIC_NAMES:
                        self.refuse(node, f"{alias.name!r} is not part of the SDK")
            elif node.module not in ALLOWED_MODULES:
                self.refuse(node, f"import of {node.module!r} is not allowed{_ALLOWED_TEXT}")
            else:
                for alias in node.names:
                    if alias.name.startswith("_") or alias.name == "*":
                        self.refuse(node, f"cannot import {alias.name!r}")
            return
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self.refuse(node, f"import of {alias.name!r} is not allowed{_ALLOWED_TEXT}")

    def check_helper_class(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            if not isinstance(base, ast.Name | ast.Attribute):
                self.refuse(node, f"class {node.name}: bases must be plain names")
            elif isinstance(base, ast.Name) and base.id in STORAGE_DECLARATIONS:
                self.refuse(
                    node,
                    f"class {node.name} may not derive from {base.id} "
                    "(declare storage in a class that must derive from Contract)",
                )
        if node.keywords:
            self.refuse(node, f"class {node.name}: metaclasses and class keywords are not allowed")
        for stmt in node.body:
            self.visit(stmt)

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
        self.refuse(node, "classes belong at the top of the module")

    def visit_Global(self, node: ast.Global) -> None:
        self.refuse(node, "'global' is not allowed (state lives in Value/Map storage)")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.refuse(node, "'nonlocal' is not allowed")

    def visit_Set(self, node: ast.Set) -> None:
        self.refuse(node, "sets are not allowed: their order depends on the process")

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self.visit_Set(node)  # type: ignore[arg-type]

    def visit_TryStar(self, node: ast.TryStar) -> None:
        self.refuse(node, "'except*' (TryStar) is not allowed")

    def visit_Match(self, node: ast.Match) -> None:
        self.refuse(node, "'match' is not allowed")

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
        elif not node.id.isascii():
            self.refuse(node, f"identifiers must be ASCII (no confusables): {node.id!r}")
        elif node.id.startswith("_"):
            self.refuse(node, f"names starting with '_' are not available ({node.id!r})")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not node.attr.isascii():
            self.refuse(node, f"identifiers must be ASCII (no confusables): {node.attr!r}")
        elif node.attr.startswith("_"):
            self.refuse(node, f"attributes starting with '_' are not available ({node.attr!r})")
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self.refuse(node, f"attribute {node.attr!r} is not available to contracts")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            if not _is_immutable_literal(default) and not (
                isinstance(default, ast.Name) and default.id in ("True", "False", "None")
            ):
                self.refuse(default, "default arguments must be immutable constants")
        if not node.name.isascii() or node.name.startswith("_"):
            self.refuse(node, f"function name {node.name!r} is not allowed")
        saved = self.in_finally
        self.in_finally = 0
        self.generic_visit(node)
        self.in_finally = saved

    def visit_arg(self, node: ast.arg) -> None:
        if not node.arg.isascii() or node.arg.startswith("__"):
            self.refuse(node, f"parameter name {node.arg!r} is not allowed")
        self.generic_visit(node)

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


_PARSE_LOCK = threading.Lock()
_ALLOWED_TEXT = f" (allowed: the SDK, {', '.join(sorted(ALLOWED_MODULES - {'__future__'}))})"


def _is_contract_class(node: ast.ClassDef) -> bool:
    return any(isinstance(b, ast.Name) and b.id == "Contract" for b in node.bases)


def _max_nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


def check_source(source: bytes) -> str:
    """The source as text if it passes every deploy-time check; else CodeRejected."""
    if len(source) > MAX_SOURCE_SIZE:
        raise CodeRejected([(0, f"the source is {len(source)} bytes; at most {MAX_SOURCE_SIZE}")])
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodeRejected([(0, f"the source is not UTF-8: {exc.reason}")]) from exc
    if _max_nesting(text) > MAX_NESTING:
        raise CodeRejected([(0, f"brackets nest deeper than {MAX_NESTING}")])
    try:
        with _PARSE_LOCK:  # CPython 3.11's parser is not safe to run on two threads at once
            tree = ast.parse(text, "<contract>")
    except SyntaxError as exc:
        raise CodeRejected([(exc.lineno or 0, f"syntax error: {exc.msg}")]) from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise CodeRejected([(0, f"the source cannot be parsed: {type(exc).__name__}")]) from exc
    checker = PolicyChecker()
    try:
        with _PARSE_LOCK:
            checker.check_module(tree)
    except RecursionError as exc:
        raise CodeRejected([(0, "the source nests too deeply")]) from exc
    if checker.problems:
        raise CodeRejected(checker.problems)
    return text
