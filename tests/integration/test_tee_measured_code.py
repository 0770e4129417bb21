"""Every enclave program is measured over exactly what it runs (``tee/boundary.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sealbridge
from sealbridge.core.errors import ConfigError
from sealbridge.tee import boundary
from sealbridge.tee.boundary import ENCLAVE_PROGRAMS, HOST_PACKAGES, get_measured_files
from sealbridge.tee.measurement import compute_sim_measurement

BASE = Path(sealbridge.__file__).resolve().parent


def loaded_by(program: str) -> set[Path]:
    """The sealbridge files a fresh interpreter loads to run ``program`` in an enclave:
    the entry point, the program's module and class, and one instantiation's imports."""
    module, name = program.split(":")
    code = (
        f"import json, sys, sealbridge.tee.sim_enclave, {module}; "
        f"getattr({module}, {name!r}); "
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('sealbridge') and getattr(m, '__file__', None))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return {Path(f).resolve() for f in json.loads(out.stdout)}


@pytest.mark.parametrize("program", ENCLAVE_PROGRAMS)
def test_everything_a_program_loads_is_in_its_measurement(program: str) -> None:
    measured = {p.resolve() for p in get_measured_files(program)}
    missing = sorted(str(p.relative_to(BASE)) for p in loaded_by(program) - measured)
    assert not missing, f"loaded by {program} but not measured: {missing}"


@pytest.mark.parametrize("program", ENCLAVE_PROGRAMS)
def test_no_program_trusts_host_side_code(program: str) -> None:
    files = [p.relative_to(BASE).as_posix() for p in get_measured_files(program)]
    assert not [f for f in files if f.split("/")[0] in HOST_PACKAGES]
    assert "tee/sim_enclave.py" in files and "tee/boundary.py" in files


def test_each_program_is_measured_over_its_own_code() -> None:
    """The vault does not run the contract VM, so the VM's files are not in its
    measurement; the worker does."""
    vault = "sealbridge.keyrelease.vault:VaultProgram"
    worker = "sealbridge.runtime.enclave:WorkerProgram"
    guest = BASE / "contracts/wasm/guest/contract_vm.py"
    assert guest in get_measured_files(worker) and guest not in get_measured_files(vault)
    assert (BASE / "keyrelease/vault.py") in get_measured_files(vault)
    assert len({compute_sim_measurement(p) for p in ENCLAVE_PROGRAMS}) == len(ENCLAVE_PROGRAMS)


def test_a_program_that_imports_host_code_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        boundary,
        "DATA_FILES",
        {**boundary.DATA_FILES, "sealbridge.tee.testing": ("config/node.py",)},
    )
    boundary._closure.cache_clear()
    try:
        with pytest.raises(ConfigError, match="host-side"):
            get_measured_files("sealbridge.tee.testing:EchoProgram")
    finally:
        boundary._closure.cache_clear()


def test_an_unknown_program_module_is_refused() -> None:
    with pytest.raises(ConfigError):
        get_measured_files("sealbridge.no_such_module:Program")
    with pytest.raises(ConfigError):
        get_measured_files("no colon here")


def test_the_architecture_doc_names_every_program() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert [p for p in ENCLAVE_PROGRAMS if f"`{p}`" not in doc] == []
    # the doc's list of host packages is the declaration's
    listed = doc.split("* **Host** packages (", 1)[1].split(")", 1)[0]
    assert sorted(name.strip(" `\n") for name in listed.split(",")) == sorted(HOST_PACKAGES)
