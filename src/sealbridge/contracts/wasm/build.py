"""Building the contract VM: the guest component and its compiled form, cached on disk.

The guest is CPython for WASI with ``guest/contract_vm.py`` and the SDK
(``contracts/sdk.py``) snapshotted in, built by ``componentize-py`` with every WASI import
stubbed out (no files, clock, entropy or network exist inside it). Building takes a few
seconds and compiling the component with wasmtime a few more, so both results are kept
under the cache directory (``$SEALBRIDGE_CACHE``, else ``~/.cache/sealbridge``):

* ``guest-<inputs>.wasm``, keyed by a hash of everything that goes into it (the WIT, the
  guest and SDK sources, the componentize-py version);
* ``guest-<inputs>-<engine>.cwasm``, the serialized machine code, keyed also by the
  wasmtime version and the engine settings that change code generation.

Concurrent processes build once: the build runs under an exclusive file lock, and files
appear by atomic rename. ``python -m sealbridge.contracts.wasm.build`` builds ahead of
time, and compiles for both memory layouts (``make setup`` does).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata, resources
from pathlib import Path

from sealbridge.core.errors import LocalProtocolError

WORLD = "contract-vm"
GUEST_MODULE = "contract_vm"


class VmBuildError(LocalProtocolError):
    """The guest component could not be built."""

    code = "vm_build_failed"


def get_cache_dir() -> Path:
    configured = os.environ.get("SEALBRIDGE_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "sealbridge"
    path = base / "wasm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_guest_inputs() -> dict[str, bytes]:
    """Every file that goes into the guest, by its path inside the build folder."""
    package = resources.files("sealbridge.contracts")
    wasm = package.joinpath("wasm")
    return {
        "vm.wit": wasm.joinpath("vm.wit").read_bytes(),
        f"{GUEST_MODULE}.py": wasm.joinpath("guest", f"{GUEST_MODULE}.py").read_bytes(),
        "sealbridge/__init__.py": b"",
        "sealbridge/contracts/__init__.py": b"",
        "sealbridge/contracts/sdk.py": package.joinpath("sdk.py").read_bytes(),
    }


def compute_guest_key() -> str:
    """The hash naming a guest build: its inputs and the builder's version."""
    digest = hashlib.sha256(f"componentize-py {_version('componentize-py')}\n".encode())
    for path, data in sorted(get_guest_inputs().items()):
        digest.update(f"{path} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:24]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError as exc:
        raise VmBuildError(f"{package} is not installed (run `make setup`)") from exc


@contextmanager
def locked(cache: Path) -> Iterator[None]:
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _find_componentize() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        raise VmBuildError("componentize-py is not installed (run `make setup`)")
    return found


def build_guest(out: Path) -> None:
    """Run componentize-py on the guest sources; write the component to ``out``."""
    with tempfile.TemporaryDirectory(prefix="sealbridge-guest-") as folder:
        root = Path(folder)
        for path, data in get_guest_inputs().items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        partial = root / "guest.wasm"
        command = [
            _find_componentize(),
            "-d", str(root / "vm.wit"),
            "-w", WORLD,
            "componentize",
            "--stub-wasi",
            "-p", str(root),
            GUEST_MODULE,
            "-o", str(partial),
        ]  # fmt: skip
        done = subprocess.run(  # noqa: S603 -- fixed arguments, our own tool
            command, cwd=root, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0 or not partial.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
            raise VmBuildError("componentize-py failed:\n" + "\n".join(tail))
        tmp = out.with_suffix(".tmp")
        shutil.copyfile(partial, tmp)
        os.replace(tmp, out)


def get_guest_wasm() -> Path:
    """The guest component, built now if this cache does not have it yet."""
    cache = get_cache_dir()
    out = cache / f"guest-{compute_guest_key()}.wasm"
    if out.exists():
        return out
    with locked(cache):
        if not out.exists():
            build_guest(out)
    return out


def main() -> None:
    path = get_guest_wasm()
    print(f"contract VM guest: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    from sealbridge.contracts.wasm.engine import (
        DEFAULT_MEMORY_LIMIT,
        LARGE_GUARD,
        LARGE_RESERVATION,
        MEMORY_GUARD,
        Vm,
    )

    # both memory layouts: this process's, and the one of a capped address space (the sim
    # enclave's), so that no enclave compiles the guest when it starts
    for layout in ((LARGE_RESERVATION, LARGE_GUARD), (DEFAULT_MEMORY_LIMIT, MEMORY_GUARD)):
        print(f"compiled: {Vm(layout).compiled_path}")


if __name__ == "__main__":
    main()
