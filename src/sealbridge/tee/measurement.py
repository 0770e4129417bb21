"""Measurement of a simulated enclave.

Theory of operation: a hardware enclave's measurement (MRENCLAVE, MRTD) is a hash of the
code loaded into it. The sim backend's equivalent is SHA-256 over a domain tag, the
program's import path, and every file the program trusts -- its import closure as
declared and computed by :mod:`sealbridge.tee.boundary` (the program's module, the
enclave entry point, every sealbridge module they import, and the files those read) --
in sorted path order, each as length-prefixed (relative path, bytes); then, for a program
that runs contracts, the versions of the packages that make the contract VM
(:data:`~sealbridge.tee.boundary.VM_PACKAGES`: the CPython the guest embeds comes with
componentize-py, the machine code with wasmtime; the guest's own sources are among the
files). Any change to code a program runs changes its measurement, and a verifier
computes the expected value with :func:`compute_sim_measurement` from the same source
tree.
"""

from __future__ import annotations

import hashlib
import importlib.metadata

from sealbridge.tee.boundary import VM_PACKAGES, get_base, get_measured_files, uses_vm

_TAG = b"sealbridge/tee/sim-measurement/v3"


def _update(h: hashlib._Hash, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def _get_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def compute_sim_measurement(program: str) -> bytes:
    """The 32-byte measurement of the sim enclave running ``program``."""
    base = get_base()
    h = hashlib.sha256()
    _update(h, _TAG)
    _update(h, program.encode())
    for path in get_measured_files(program):
        _update(h, path.relative_to(base).as_posix().encode())
        _update(h, path.read_bytes())
    if uses_vm(program):
        for package in VM_PACKAGES:
            _update(h, f"{package} {_get_version(package)}".encode())
    return h.digest()
