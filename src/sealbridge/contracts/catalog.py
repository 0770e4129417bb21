"""The contracts this build of the runtime can execute, named by code hash.

A contract is deployed by the hash of its source (``code_hash`` on chain); a worker runs
it only if that hash is in its catalog. Issue-level note: the general SDK that runs any
Python contract comes later; today the catalog holds the built-in token.
"""

from __future__ import annotations

from importlib import resources

from sealbridge.core.errors import LocalProtocolError
from sealbridge.core.ids import tagged_hash

BUILTIN = {"token": "token.py"}


class UnknownContractCode(LocalProtocolError):
    code = "unknown_contract_code"


def get_source(name: str) -> bytes:
    if name not in BUILTIN:
        raise UnknownContractCode(
            f"unknown contract {name!r}; available: {', '.join(sorted(BUILTIN))}"
        )
    return resources.files("sealbridge.contracts").joinpath(BUILTIN[name]).read_bytes()


def compute_code_hash(source: bytes) -> bytes:
    return tagged_hash("sealbridge/contract-code/v1", source)


def get_code_hash(name: str) -> bytes:
    return compute_code_hash(get_source(name))


def get_name_by_hash(code_hash: bytes) -> str:
    for name in BUILTIN:
        if get_code_hash(name) == code_hash:
            return name
    raise UnknownContractCode(f"no contract with code hash 0x{code_hash.hex()} in this build")
