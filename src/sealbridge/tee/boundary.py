"""The trust boundary, declared once: which programs run in enclaves, and which files each
one trusts.

Theory of operation
-------------------
An enclave program is a class named by ``"module:Class"`` that the sim enclave process
(``sealbridge.tee.sim_enclave``) or a hardware enclave loads. Everything it runs is
trusted, so everything it runs must be measured: a change to any of it must change the
measurement that key-release policies allow. Rather than a hand-kept list of trusted
packages (which drifted from what the programs really import), the boundary is computed:

* :data:`ENCLAVE_PROGRAMS` names every program sealbridge ships;
* :func:`get_measured_files` follows a program's imports statically, from its module and
  the enclave entry point, through every ``sealbridge`` module they import (at module
  level or inside functions, absolute or relative, with each package's ``__init__``),
  plus the files those modules read or import dynamically (:data:`DATA_FILES`: the
  contract VM's guest sources, the reference contracts);
* nothing in the closure may belong to a host-side package (:data:`HOST_PACKAGES`):
  :func:`get_measured_files` refuses such a program with a ``ConfigError``.

The sim measurement (``tee/measurement.py``) hashes exactly these files; the layer test
and the measured-code test (``tests/unit/test_layers.py``,
``tests/integration/test_tee_measured_code.py``) check the declaration against the code (every
module a program loads in a fresh interpreter is in its closure); ``docs/architecture.md``
names the same programs (``tests/e2e/test_docs.py`` checks it). ``python -m
sealbridge.tee.boundary`` prints each program's measured files.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import sealbridge
from sealbridge.core.errors import ConfigError
from sealbridge.core.layers import HOST_PACKAGES
from sealbridge.tee.enclave import split_program_path

ENCLAVE_PROGRAMS = (
    "sealbridge.runtime.enclave:WorkerProgram",
    "sealbridge.runtime.enclave:UnverifiedWorkerProgram",  # replay benchmarks only
    "sealbridge.keyservice.enclave:GatekeeperProgram",
    "sealbridge.keyrelease.vault:VaultProgram",
    "sealbridge.keyrelease.matcher_program:MatcherProgram",
    "sealbridge.interop.evm_gateway:GatewayProgram",
)
ENTRY_MODULE = "sealbridge.tee.sim_enclave"  # what every sim enclave process runs first
# files a module reads or imports by name at run time (relative to the sealbridge package)
DATA_FILES: dict[str, tuple[str, ...]] = {
    "sealbridge.contracts.wasm.build": (
        "contracts/wasm/vm.wit",
        "contracts/wasm/guest/contract_vm.py",
    ),
    "sealbridge.contracts.catalog": (
        "contracts/reference/__init__.py",
        "contracts/reference/auction.py",
        "contracts/reference/dex.py",
        "contracts/reference/kmeans.py",
        "contracts/reference/token.py",
    ),
}
# whose machine code and embedded interpreter a contract VM runs on (versions measured)
VM_MODULE = "sealbridge.contracts.wasm.engine"
VM_PACKAGES = ("componentize-py", "wasmtime")


def get_base() -> Path:
    return Path(sealbridge.__file__).resolve().parent


def module_file(name: str, base: Path | None = None) -> Path | None:
    """The source file of sealbridge module ``name`` (None if it is not one)."""
    parts = name.split(".")
    if parts[0] != "sealbridge":
        return None
    root = get_base() if base is None else base
    folder = root.joinpath(*parts[1:])
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    file = folder.with_suffix(".py")
    return file if len(parts) > 1 and file.is_file() else None


def _imported(name: str, path: Path) -> set[str]:
    """The sealbridge modules (and candidate submodules) that module ``name`` imports."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in found if n == "sealbridge" or n.startswith("sealbridge.")}


@functools.lru_cache(maxsize=64)
def _closure(roots: tuple[str, ...], base: Path) -> tuple[frozenset[str], tuple[Path, ...]]:
    modules: set[str] = set()
    files: set[Path] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in modules:
            continue
        path = module_file(name, base)
        if path is None:
            continue  # a name imported from a module, not a module itself
        modules.add(name)
        files.add(path)
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)  # importing a.b.c runs a/__init__ and a/b/__init__
        todo.extend(_imported(name, path))
        for data in DATA_FILES.get(name, ()):
            files.add(base / data)
            if data.endswith(".py") and "/guest/" not in data:
                todo.append("sealbridge." + data[: -len(".py")].replace("/", "."))
    return frozenset(modules), tuple(sorted(files, key=lambda p: p.relative_to(base).as_posix()))


def get_measured_modules(program: str) -> frozenset[str]:
    """The sealbridge modules program ``program`` runs (its import closure)."""
    module, _ = split_program_path(program)
    modules, _files = _closure((module, ENTRY_MODULE), get_base())
    return modules


def get_measured_files(program: str) -> list[Path]:
    """Every file program ``program`` trusts, sorted by path; ConfigError if its closure
    reaches a host-side package (or the program's module does not exist)."""
    module, _ = split_program_path(program)
    base = get_base()
    if module_file(module, base) is None:
        raise ConfigError(f"cannot locate enclave program module {module!r}")
    modules, files = _closure((module, ENTRY_MODULE), base)
    hosts = sorted(m for m in modules if m.split(".")[1:2] and m.split(".")[1] in HOST_PACKAGES)
    if hosts:
        raise ConfigError(f"enclave program {program} imports host-side modules: {hosts}")
    return list(files)


def uses_vm(program: str) -> bool:
    """True when the program can run contracts (the VM's packages are then measured)."""
    return VM_MODULE in get_measured_modules(program)


def main() -> None:
    base = get_base()
    for program in ENCLAVE_PROGRAMS:
        files = get_measured_files(program)
        print(f"{program}: {len(files)} files" + (", contract VM" if uses_vm(program) else ""))
        for path in files:
            print(f"    {path.relative_to(base).as_posix()}")


if __name__ == "__main__":
    main()
