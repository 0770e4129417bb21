"""Imports point only downwards, and cores stay sans-I/O (``core/layers.py``).

The checker is ``sealbridge.tools.layers``; these tests run it on the tree, check that
the trust boundary agrees with the layer declaration, and show that the checker fails on
each kind of violation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.core.layers import (
    CORE_PACKAGES,
    HOST_PACKAGES,
    PLATFORM_PACKAGES,
    TIERS,
    get_rank,
    is_allowed,
)
from sealbridge.tee.boundary import ENCLAVE_PROGRAMS, get_measured_modules
from sealbridge.tools.layers import build_graph, main, render

DECLARED = {package for tier in TIERS for package in tier}


def test_the_tree_has_no_violation() -> None:
    graph = build_graph()
    assert not graph.violations, render(graph)
    assert set(graph.lines) == DECLARED


def test_every_package_is_declared_once_and_classified() -> None:
    names = [package for tier in TIERS for package in tier]
    assert len(names) == len(set(names))
    assert CORE_PACKAGES | PLATFORM_PACKAGES <= DECLARED
    assert HOST_PACKAGES <= DECLARED
    assert not (CORE_PACKAGES - {"storage"}) & HOST_PACKAGES
    assert not PLATFORM_PACKAGES & HOST_PACKAGES


def test_cores_sit_below_every_driver() -> None:
    drivers = {"evm", "net", "sim", "config", "node", "devnet", "client", "cli"}
    for core in CORE_PACKAGES - {"storage"}:  # the storage node's core is host-side
        for driver in drivers:
            assert is_allowed(driver, core)
            assert not is_allowed(core, driver)


def test_sideways_and_upward_imports_are_refused() -> None:
    assert get_rank("interop") == get_rank("runtime")
    assert not is_allowed("runtime", "interop")
    assert not is_allowed("interop", "runtime")
    assert is_allowed("interop", "consensus")  # declared: a gateway runs consensus
    assert not is_allowed("consensus", "interop")
    assert not is_allowed("client", "devnet") and not is_allowed("devnet", "client")
    assert not is_allowed("core", "nonexistent") and not is_allowed("nonexistent", "core")


# the packages enclave code comes from, as the one declaration of the boundary computes
ENCLAVE_PACKAGES = {
    module.split(".")[1]
    for program in ENCLAVE_PROGRAMS
    for module in get_measured_modules(program)
    if module.count(".") >= 1
}


def test_the_boundary_and_the_layers_agree() -> None:
    """No package that enclave code comes from is host-side or may import host code."""
    assert not ENCLAVE_PACKAGES & HOST_PACKAGES
    for package in ENCLAVE_PACKAGES:
        assert package in DECLARED, f"enclave package {package}: declare it"
        rank = get_rank(package)
        assert rank is not None
        for host in HOST_PACKAGES:
            assert not is_allowed(package, host), f"{package} may import {host}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sealbridge"
    for tier in TIERS:
        for package in tier:
            (root / package).mkdir(parents=True, exist_ok=True)
            (root / package / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "consensus/bad.py",
            "from sealbridge.node.host import X\n",
            "consensus imports node (upwards)",
        ),
        (
            "runtime/bad.py",
            "import sealbridge.interop.gateway\n",
            "runtime imports interop (sideways)",
        ),
        (
            "client/bad.py",
            "from sealbridge.devnet import launcher\n",
            "client imports devnet (sideways)",
        ),
        ("keyrelease/bad.py", "import time\n", "core keyrelease imports time"),
        ("runtime/bad.py", "def f():\n    import random\n", "core runtime imports random"),
        ("chain/bad.py", "from os import urandom\n", "core chain imports os"),
        (
            "interop/bad.py",
            "import hashlib\nx = os.urandom(3)\n",
            "core interop imports os.urandom",
        ),
        ("storage/bad.py", "import socket\n", "core storage imports socket"),
        ("newpkg/bad.py", "x = 1\n", "package newpkg is not declared"),
    ],
)
def test_the_checker_finds_each_kind_of_violation(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    if name.startswith("newpkg/"):
        (tmp_path / "sealbridge" / "newpkg").mkdir(parents=True)
    root = _tree(tmp_path, {name: text})
    graph = build_graph(root)
    assert any(message in v.message for v in graph.violations), render(graph)
    assert main(["--root", str(root)]) == 1


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"crypto/a.py": "class Report:\n    pass\n", "keyrelease/b.py": "class Report: ...\n"},
            "class Report is defined in crypto/a.py and keyrelease/b.py",
        ),
        (
            {
                "evm/a.py": "from x import Y\nclass State(Y): ...\n",
                "sim/b.py": "class State: ...\n",
            },
            "class State is defined in evm/a.py and sim/b.py",
        ),
        (
            {"crypto/a.py": "def verify_share(share: bytes) -> bool:\n    return True\n"},
            "verify_share returns bool",
        ),
        (
            {"storage/a.py": "class Node:\n    async def verify_receipt(self) -> 'bool': ...\n"},
            "verify_receipt returns bool",
        ),
    ],
)
def test_the_checker_finds_each_naming_violation(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    root = _tree(tmp_path, files)
    graph = build_graph(root)
    assert any(message in v.message for v in graph.violations), render(graph)
    assert main(["--root", str(root)]) == 1


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"node/ok.py": "import time\nfrom sealbridge.runtime import x\n"})
    assert not build_graph(root).violations
    assert main(["--root", str(root), "--json"]) == 0


def test_the_naming_checks_pass_distinct_names(tmp_path: Path) -> None:
    files = {
        "crypto/a.py": (
            "class ShareReport: ...\n"
            "def verify_share(share: bytes) -> bytes:\n    return share\n"
            "def is_valid_share(share: bytes) -> bool:\n    return True\n"
            "def f() -> None:\n    class Local: ...\n"
        ),
        "keyrelease/b.py": (
            "class LossReport:\n"
            "    def verify_claim(self) -> None: ...\n"
            "def f() -> None:\n    class Local: ...\n"
        ),
    }
    root = _tree(tmp_path, files)
    graph = build_graph(root)
    assert not graph.violations, render(graph)
