"""The layers of sealbridge, declared once.

Theory of operation
-------------------
Every package under ``sealbridge`` sits in one tier of :data:`TIERS`, listed from the
bottom up. A module may import its own package and any package of a *lower* tier; an
import of a package in the same tier (sideways) or in a higher tier (upwards) is a
violation. There is no whitelist: where one package builds on another of the same kind
(the worker runtime asks the key service for contract keys; a gateway runs BFT
consensus), the declaration puts the user one tier above what it uses.

The tiers also say what kind of code a package is:

* :data:`CORE_PACKAGES` are sans-I/O: they take time, randomness and bytes as inputs and
  return effects. They may not import a clock, a random source or any I/O module
  (:data:`FORBIDDEN_IN_CORES`); an enclave program reads its clock and draws its
  randomness through the platform context that ``tee`` hands it.
* :data:`PLATFORM_PACKAGES` wrap what trusted code runs on: real cryptographic libraries
  (which draw key material from the OS), the enclave platform, the WebAssembly engine.
* :data:`HOST_PACKAGES` run only on untrusted hosts: I/O, drivers, orchestration, user
  tools. No enclave program may contain a module of theirs (``tee/boundary.py``).

``python -m sealbridge.tools.layers`` prints the package graph against this declaration
and fails on a violation; ``make test`` runs it.
"""

from __future__ import annotations

# bottom first; a package imports only from tiers below its own
TIERS: tuple[tuple[str, ...], ...] = (
    ("core",),  # canonical encoding, ids, typed errors, effects, this declaration
    ("crypto",),  # wrappers over real cryptographic libraries
    ("chain",),  # pure facts about chains: ABI, headers, proofs, on-chain BLS encodings
    ("tee",),  # enclave platform: backends, quotes, attestation policy, the boundary
    ("contracts",),  # SDK, WebAssembly engine (fuel = gas), executor, reference contracts
    ("keyservice", "consensus"),  # protocol cores
    ("runtime", "interop", "keyrelease"),  # cores built on the key service or consensus
    ("storage",),  # the storage node's cores (untrusted: no enclave, only ciphertext)
    ("evm", "net", "sim", "config"),  # EVM I/O, HTTP transport and waits, simulator, files
    ("node",),  # role processes: one host core per role, one network driver
    ("devnet", "client"),  # orchestration of local networks | the user's library
    ("cli",),  # user commands
    ("tools",),  # developer tools (this checker)
)

CORE_PACKAGES = frozenset(
    {"core", "chain", "keyservice", "storage", "consensus", "runtime", "interop", "keyrelease"}
)
PLATFORM_PACKAGES = frozenset({"crypto", "tee", "contracts"})
HOST_PACKAGES = frozenset(
    {"evm", "net", "sim", "config", "node", "devnet", "client", "cli", "tools", "storage"}
)

# standard-library modules a core may not import (clocks, randomness, processes, I/O)
FORBIDDEN_IN_CORES = frozenset(
    {
        "time",
        "datetime",
        "random",
        "secrets",
        "os",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "socket",
        "select",
        "selectors",
        "ssl",
        "signal",
        "subprocess",
        "multiprocessing",
        "threading",
        "concurrent",
        "asyncio",
        "urllib",
        "http",
        "sqlite3",
        "requests",
        "httpx",
        "web3",
        "wasmtime",
    }
)


def get_rank(package: str) -> int | None:
    """The tier ``package`` sits in (0 at the bottom), or None if it is undeclared."""
    for rank, tier in enumerate(TIERS):
        if package in tier:
            return rank
    return None


def is_allowed(importer: str, imported: str) -> bool:
    """May a module of package ``importer`` import package ``imported``?"""
    if importer == imported:
        return True
    low, high = get_rank(imported), get_rank(importer)
    return low is not None and high is not None and low < high
