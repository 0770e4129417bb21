"""Every sealbridge module the enclave programs load is covered by the sim measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sealbridge
from sealbridge.tee.measurement import get_trusted_files

PROGRAMS = ["sealbridge.runtime.enclave", "sealbridge.keyservice.enclave"]


@pytest.mark.parametrize("module", PROGRAMS)
def test_loaded_modules_are_measured(module: str) -> None:
    # A fresh interpreter: import the program's module (and the enclave entry point) and
    # list every sealbridge module it pulled in.
    code = (
        f"import json, sys, {module}, sealbridge.tee.sim_enclave; "
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('sealbridge') and getattr(m, '__file__', None))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = {Path(f).resolve() for f in json.loads(out.stdout)}
    measured = {p.resolve() for p in get_trusted_files()}
    base = Path(sealbridge.__file__).resolve().parent
    missing = sorted(str(p.relative_to(base)) for p in loaded - measured)
    assert not missing, f"loaded by {module} but not measured: {missing}"
