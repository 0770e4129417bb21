"""Gas: the deterministic budget every command and query runs under.

Theory of operation
-------------------
Contracts run in CPython compiled to WebAssembly (``contracts/wasm/``), and wasmtime
counts *fuel*: one unit per WebAssembly instruction the interpreter executes. Gas is fuel
divided by :data:`FUEL_PER_GAS`, so every instruction is paid for -- the bytecode loop and
also everything implemented in C (``in`` on a range, sorting, big-integer arithmetic,
regular expressions, dict probing...), which Python-level metering could not see.

The host adds the work it does for the contract outside the guest:

* a storage read: :data:`READ_GAS` + one unit per :data:`BYTES_PER_GAS` bytes returned;
* a storage write: :data:`WRITE_GAS` + one unit per :data:`BYTES_PER_GAS` bytes stored;
* a synchronous call: :data:`CALL_GAS`, plus all the callee uses (it runs on the caller's
  budget);
* a message: :data:`SEND_GAS` + :data:`SEND_BYTE_GAS` per byte of its encoding, about what
  the worker's host pays to post it on chain (the chain charges 16 gas per calldata byte;
  the inbox event and storage are covered by the base);
* loading the contract's module into the block's instance (the first command of a
  contract in a block pays for it; every node sees the same order, so the same command
  pays everywhere).

Out of gas is a trap inside the guest: the command stops where it is, whatever the
contract's ``try`` blocks say, and nothing it did remains.
"""

from __future__ import annotations

FUEL_PER_GAS = 1000
DEFAULT_GAS_LIMIT = 5_000_000
MAX_GAS_LIMIT = 50_000_000
QUERY_GAS_LIMIT = 1_000_000  # queries cost their askers nothing: a small budget
DEPLOY_COMPILE_GAS = 200_000  # compiling the source at deploy (on top of the command's)
READ_GAS = 5
WRITE_GAS = 20
BYTES_PER_GAS = 32
CALL_GAS = 50
SEND_GAS = 25_000
SEND_BYTE_GAS = 16
MAX_CALL_DEPTH = 8  # contracts on one synchronous call stack
MAX_MESSAGES_PER_COMMAND = 16
MAX_VALUE_SIZE = 1 << 20  # bytes of one stored value's encoding
MAX_WRITE_BYTES = 4 << 20  # bytes one command may write in all
MAX_RESULT_SIZE = 1 << 20  # bytes of a command's or query's result
MAX_MESSAGE_SIZE = 16 * 1024  # bytes of one message's arguments
MAX_STORAGE_BYTES = 8 << 20  # bytes of one contract's whole state (keys and values)


def compute_gas(fuel: int) -> int:
    """Gas for ``fuel`` units of WebAssembly work, rounded up."""
    return -(-fuel // FUEL_PER_GAS)


def compute_write_gas(size: int) -> int:
    return WRITE_GAS + size // BYTES_PER_GAS


def compute_read_gas(size: int) -> int:
    return READ_GAS + size // BYTES_PER_GAS


def compute_send_gas(size: int) -> int:
    return SEND_GAS + SEND_BYTE_GAS * size
