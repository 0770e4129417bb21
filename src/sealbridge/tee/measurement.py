"""Measurement of a simulated enclave.

Theory of operation: a hardware enclave's measurement (MRENCLAVE, MRTD) is a hash of the
code loaded into it. The sim backend's equivalent is SHA-256 over a domain tag, the
program's import path, and every ``.py`` and ``.wit`` file of the trusted sealbridge
packages (:data:`TRUSTED_PACKAGES`, plus the single modules in :data:`TRUSTED_MODULES`) in
sorted path order, each as length-prefixed (relative path, source bytes), then the
versions of the packages that make the contract VM (:data:`VM_PACKAGES`: the CPython the
guest embeds comes with componentize-py, the machine code with wasmtime; the guest's own
sources are among the trusted files). When the program's module lives outside those
packages its own source file is included too. Any change to trusted code changes the
measurement, and a verifier computes the expected value with
:func:`compute_sim_measurement` from the same source tree.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

import sealbridge
from sealbridge.core.errors import ConfigError
from sealbridge.tee.enclave import split_program_path

TRUSTED_PACKAGES = ("core", "crypto", "tee", "contracts", "runtime", "keyservice")
# Single modules outside those packages that trusted code imports (digests it signs).
TRUSTED_MODULES = (
    "__init__.py",
    "chain/__init__.py",
    "chain/abi.py",
    "chain/bls_onchain.py",
    "chain/errors.py",
    "chain/lightclient.py",
)
VM_PACKAGES = ("componentize-py", "wasmtime")
_TAG = b"sealbridge/tee/sim-measurement/v2"


def _update(h: hashlib._Hash, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def get_trusted_files(root: Path | None = None) -> list[Path]:
    """Every ``.py`` and ``.wit`` file of the trusted packages, sorted by path relative to
    ``root``."""
    base = Path(sealbridge.__file__).resolve().parent if root is None else root
    files: list[Path] = []
    for package in TRUSTED_PACKAGES:
        folder = base / package
        if folder.is_dir():
            for pattern in ("*.py", "*.wit"):
                files.extend(p for p in folder.rglob(pattern) if "__pycache__" not in p.parts)
    files.extend(base / m for m in TRUSTED_MODULES if (base / m).is_file())
    return sorted(files, key=lambda p: p.relative_to(base).as_posix())


def _get_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _get_program_file(module_name: str, base: Path) -> Path | None:
    """The program module's source file when it lies outside the trusted packages."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot locate enclave program module {module_name!r}") from exc
    if spec is None or spec.origin is None:
        raise ConfigError(f"cannot locate enclave program module {module_name!r}")
    path = Path(spec.origin).resolve()
    for package in TRUSTED_PACKAGES:
        if path.is_relative_to(base / package):
            return None
    return path


def compute_sim_measurement(program: str) -> bytes:
    """The 32-byte measurement of the sim enclave running ``program``."""
    module_name, _ = split_program_path(program)
    base = Path(sealbridge.__file__).resolve().parent
    h = hashlib.sha256()
    _update(h, _TAG)
    _update(h, program.encode())
    for path in get_trusted_files(base):
        _update(h, path.relative_to(base).as_posix().encode())
        _update(h, path.read_bytes())
    for package in VM_PACKAGES:
        _update(h, f"{package} {_get_version(package)}".encode())
    extra = _get_program_file(module_name, base)
    if extra is not None:
        _update(h, b"program-module:" + module_name.encode())
        _update(h, extra.read_bytes())
    return h.digest()
