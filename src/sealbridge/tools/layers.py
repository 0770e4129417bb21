"""Print the package graph of sealbridge and fail on a layer violation.

``python -m sealbridge.tools.layers`` reads every module under ``src/sealbridge`` (no
imports are executed: it parses the source), groups the imports it finds by package, and
checks them against the declaration in :mod:`sealbridge.core.layers`:

* an import must point to the importer's own package or to a lower tier;
* a core package (sans-I/O) must not import a clock, a random source or an I/O module,
  nor call ``os.urandom``;
* every package must be declared, and every declared package must exist;
* no class name is defined at the top level of two modules (a reader meeting a name
  knows which thing it is);
* a function or method named ``verify_*`` returns the verified value (or None) or raises
  a typed error: it is never annotated ``-> bool`` (a predicate is ``is_valid_*``).

It prints one line per tier with each package's size and the packages it imports, then
every violation with the file and line; the exit status is 1 if there is any.
``--json`` prints the graph as JSON instead.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sealbridge
from sealbridge.core.layers import CORE_PACKAGES, FORBIDDEN_IN_CORES, TIERS, get_rank, is_allowed


@dataclass(frozen=True)
class ImportSite:
    path: Path
    line: int
    module: str  # the full dotted name imported


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    message: str


@dataclass
class PackageGraph:
    root: Path
    lines: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)


def get_source_root() -> Path:
    return Path(sealbridge.__file__).resolve().parent


def get_import_sites(path: Path, tree: ast.Module | None = None) -> list[ImportSite]:
    """Every absolute import in ``path`` (at any depth: inside functions too)."""
    if tree is None:
        tree = ast.parse(path.read_text(), filename=str(path))
    sites: list[ImportSite] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sites.extend(ImportSite(path, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            sites.append(ImportSite(path, node.lineno, node.module))
            if node.module == "os":
                sites.extend(
                    ImportSite(path, node.lineno, f"os.{alias.name}") for alias in node.names
                )
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in {"urandom", "getrandom"}
        ):
            sites.append(ImportSite(path, node.lineno, f"os.{node.attr}"))
    return sites


def get_top_level_classes(tree: ast.Module) -> list[ast.ClassDef]:
    return [node for node in tree.body if isinstance(node, ast.ClassDef)]


def get_bool_verifiers(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function or method named ``verify_*`` annotated to return ``bool``."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("verify_")
        and node.returns is not None
        and (
            (isinstance(node.returns, ast.Name) and node.returns.id == "bool")
            or (isinstance(node.returns, ast.Constant) and node.returns.value == "bool")
        )
    ]


def get_package(root: Path, path: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def build_graph(root: Path | None = None) -> PackageGraph:
    base = get_source_root() if root is None else root
    graph = PackageGraph(base)
    class_sites: dict[str, list[tuple[Path, int]]] = {}
    for path in sorted(base.rglob("*.py")):
        package = get_package(base, path)
        if package is None or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(base)
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
        graph.lines[package] = graph.lines.get(package, 0) + len(text.splitlines())
        graph.files[package] = graph.files.get(package, 0) + 1
        for cls in get_top_level_classes(tree):
            class_sites.setdefault(cls.name, []).append((rel, cls.lineno))
        graph.violations.extend(
            Violation(
                rel,
                func.lineno,
                f"{func.name} returns bool (a verify_* function returns the verified value "
                "or raises a typed error; name a predicate is_valid_*)",
            )
            for func in get_bool_verifiers(tree)
        )
        if get_rank(package) is None:
            graph.violations.append(Violation(rel, 1, f"package {package} is not declared"))
            continue
        edges = graph.edges.setdefault(package, {})
        for site in get_import_sites(path, tree):
            parts = site.module.split(".")
            if parts[0] == "sealbridge" and len(parts) > 1:
                target = parts[1]
                if target == package:
                    continue
                edges[target] = edges.get(target, 0) + 1
                if not is_allowed(package, target):
                    rank, other = get_rank(package), get_rank(target)
                    how = (
                        "an undeclared package"
                        if other is None
                        else "sideways"
                        if other == rank
                        else "upwards"
                    )
                    graph.violations.append(
                        Violation(rel, site.line, f"{package} imports {target} ({how})")
                    )
            elif package in CORE_PACKAGES and (
                parts[0] in FORBIDDEN_IN_CORES or site.module in {"os.urandom", "os.getrandom"}
            ):
                graph.violations.append(
                    Violation(
                        rel,
                        site.line,
                        f"core {package} imports {site.module} (time, randomness and I/O "
                        "are inputs to a core)",
                    )
                )
    for name, sites in sorted(class_sites.items()):
        if len(sites) > 1:
            where = " and ".join(str(path) for path, _ in sites)
            graph.violations.append(Violation(*sites[0], f"class {name} is defined in {where}"))
    for tier in TIERS:
        for package in tier:
            if not (base / package / "__init__.py").is_file():
                graph.violations.append(
                    Violation(Path(package), 0, f"declared package {package} does not exist")
                )
    return graph


def render(graph: PackageGraph) -> str:
    out: list[str] = []
    for rank in range(len(TIERS) - 1, -1, -1):
        for package in TIERS[rank]:
            uses = graph.edges.get(package, {})
            below = ", ".join(sorted(uses, key=lambda p: (-(get_rank(p) or 0), p))) or "-"
            kind = "core" if package in CORE_PACKAGES else ""
            out.append(
                f"{rank:>2}  {package:<11}{kind:<5}{graph.files.get(package, 0):>4} files "
                f"{graph.lines.get(package, 0):>6} lines   -> {below}"
            )
    total = sum(graph.lines.values())
    out.append(f"    {len(graph.lines)} packages, {sum(graph.files.values())} files, {total} lines")
    if graph.violations:
        out.append(f"{len(graph.violations)} violation(s):")
        out.extend(f"  {v.path}:{v.line}: {v.message}" for v in graph.violations)
    else:
        out.append(
            "no violations: every import points down, no core touches time, randomness or "
            "I/O, no class name is defined twice, no verify_* returns bool"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealbridge.tools.layers", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the graph as JSON")
    parser.add_argument("--root", type=Path, default=None, help="package folder to check")
    args = parser.parse_args(argv)
    graph = build_graph(args.root)
    if args.json:
        payload = {
            "tiers": [list(t) for t in TIERS],
            "lines": graph.lines,
            "edges": graph.edges,
            "violations": [
                {"path": str(v.path), "line": v.line, "message": v.message}
                for v in graph.violations
            ],
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        print(render(graph))
    return 1 if graph.violations else 0


if __name__ == "__main__":
    sys.exit(main())
