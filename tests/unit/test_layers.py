"""Imports point only downwards (see DESIGN.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sealbridge.tee.boundary import ENCLAVE_PROGRAMS, HOST_PACKAGES, get_measured_modules

SRC = Path(__file__).resolve().parents[2] / "src" / "sealbridge"

# Each package may import only from the packages listed (and the standard library / deps).
TRUSTED_BELOW = {"core", "crypto", "tee", "chain", "contracts"}
CORES = TRUSTED_BELOW | {"runtime", "keyservice"}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "crypto": {"core", "crypto"},
    "tee": {"core", "crypto", "tee"},
    "chain": {"core", "crypto", "chain"},
    "contracts": {"core", "crypto", "contracts"},
    "runtime": CORES,  # the worker's ECALLs carry the key service's KeyRequest
    "keyservice": TRUSTED_BELOW | {"keyservice"},
    "storage": {"core", "crypto", "chain", "storage"},  # a core, but not trusted (no TEE)
    "consensus": {"core", "crypto", "consensus"},  # BFT replicas of an autonomous system
    # gateways; an EVM gateway committee runs the key service's DKG (keyservice.committee)
    "interop": {"core", "crypto", "tee", "chain", "consensus", "keyservice", "interop"},
    "sim": {"core", "crypto", "tee", "consensus", "interop", "sim"},  # a driver of cores
    # key-release contracts; a vault reads its freshness anchor with the key service's
    # header track and proofs (keyservice.chainfacts)
    "keyrelease": {"core", "crypto", "tee", "chain", "keyservice", "keyrelease"},
    "net": {"core", "net"},
    "node": CORES
    | {"keyrelease", "storage", "net", "node", "client", "consensus", "interop", "sim"},
    "client": CORES
    | {"keyrelease", "storage", "net", "node", "client", "consensus", "interop", "sim"},
    "cli": CORES
    | {"keyrelease", "storage", "net", "node", "client", "cli", "consensus", "interop", "sim"},
}
DRIVERS = {"net", "sim", "node", "cli"}


def get_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sealbridge" and len(parts) > 1:
                found.add(parts[1])
    return found


def get_files() -> list[tuple[str, Path]]:
    return [(p.relative_to(SRC).parts[0], p) for p in sorted(SRC.glob("*/**/*.py"))]


@pytest.mark.parametrize(("package", "path"), get_files(), ids=lambda v: str(v))
def test_imports_point_downwards(package: str, path: Path) -> None:
    assert package in ALLOWED, f"new package {package}: add it to the layer table"
    illegal = get_imports(path) - ALLOWED[package]
    assert not illegal, f"{path.relative_to(SRC)} imports {sorted(illegal)}"


def test_cores_never_import_drivers() -> None:
    cores = (
        "core",
        "crypto",
        "tee",
        "chain",
        "contracts",
        "runtime",
        "keyservice",
        "storage",
        "consensus",
        "interop",
    )
    for package in cores:
        assert not ALLOWED[package] & DRIVERS


# the packages enclave code comes from, as the one declaration of the boundary computes
ENCLAVE_PACKAGES = {
    module.split(".")[1]
    for program in ENCLAVE_PROGRAMS
    for module in get_measured_modules(program)
    if module.count(".") >= 1
}


def test_the_boundary_and_the_layers_agree() -> None:
    """No package that enclave code comes from may import a host-side package, and the
    drivers of this table are host-side in the boundary's declaration."""
    assert DRIVERS <= HOST_PACKAGES
    assert not ENCLAVE_PACKAGES & HOST_PACKAGES
    for package in ENCLAVE_PACKAGES:
        assert package in ALLOWED, f"enclave package {package}: add it to the layer table"
        assert not ALLOWED[package] & HOST_PACKAGES, f"{package} may import host code"


def test_the_checker_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from sealbridge.node.devnet import start_devnet\nimport sealbridge.cli.main\n")
    assert get_imports(bad) == {"node", "cli"}
