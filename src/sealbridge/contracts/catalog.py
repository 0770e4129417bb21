"""The reference contracts shipped with sealbridge, by name.

Any Python contract can be deployed from its source; these four come with the package
(``sealbridge deploy token`` works without a file). Each is an ordinary module under
``sealbridge/contracts/reference/``: the VM loads its source text, and the baseline
benchmarks import the same class to run it plainly.
"""

from __future__ import annotations

import importlib
from importlib import resources

from sealbridge.contracts import sdk
from sealbridge.contracts.executor import ContractProgram, compute_code_hash, load_program
from sealbridge.core.errors import LocalProtocolError

BUILTIN = {"token": "token", "dex": "dex", "auction": "auction", "kmeans": "kmeans"}


class UnknownContractCode(LocalProtocolError):
    code = "unknown_contract_code"


def get_source(name: str) -> bytes:
    if name not in BUILTIN:
        raise UnknownContractCode(
            f"unknown contract {name!r}; built in: {', '.join(sorted(BUILTIN))} "
            "(or give the path of a .py file)"
        )
    reference = resources.files("sealbridge.contracts").joinpath("reference")
    return reference.joinpath(f"{BUILTIN[name]}.py").read_bytes()


def get_code_hash(name: str) -> bytes:
    return compute_code_hash(get_source(name))


def load_builtin(name: str, *, sandboxed: bool = True) -> ContractProgram:
    """A reference contract, in the WebAssembly VM (as workers run it) or plain (the
    baseline)."""
    source = get_source(name)
    if sandboxed:
        return load_program(source)
    module = importlib.import_module(f"sealbridge.contracts.reference.{BUILTIN[name]}")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, sdk.Contract) and value is not sdk.Contract
    ]
    return ContractProgram.from_class(classes[0])
