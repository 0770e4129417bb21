"""Gas: the deterministic budget every command and query runs under.

Theory of operation
-------------------
Sandboxed code is instrumented (``sandbox.py``) to charge the current :class:`Meter` at
every function entry, every loop iteration (``for``, ``while`` and comprehensions), for
every element a built-in consumes, for the size of every sequence an operator builds
(``*``, ``+``, ``**``, ``<<``, ``%``), and for every storage write by size. Charges are a
pure function of the code and its inputs, so every executor stops a runaway command at
exactly the same point.

Running out raises :class:`OutOfGas`; growing the interpreter's memory by more than the
meter's memory limit raises :class:`OutOfMemory`; calling deeper than
:data:`MAX_CALL_DEPTH` raises :class:`CallDepthExceeded`. All three derive from
:class:`Abort`, a ``BaseException``, so contract code (which can only name ``Exception``
subclasses and may not write a bare ``except:``) cannot catch them; and once a meter is
exhausted the executor reverts the command even if the contract somehow carried on.

The memory limit is a safety net, sampled from the process's resident size every
:data:`MEMORY_SAMPLE_EVERY` charges, and sooner after large objects (every
:data:`MEMORY_SAMPLE_SIZE` elements or bytes built); allocation itself is bounded
deterministically by the size charges, by :data:`MAX_OBJECT_SIZE` and by
:data:`MAX_INT_BITS`. Integer arithmetic on large numbers is charged for its work
(products of 64-bit words), which grows faster than the numbers' size.
"""

from __future__ import annotations

import os
import resource

DEFAULT_GAS_LIMIT = 5_000_000
MAX_GAS_LIMIT = 50_000_000
QUERY_GAS_LIMIT = 5_000_000
MAX_CALL_DEPTH = 64
MAX_OBJECT_SIZE = 8 * 1024 * 1024  # elements or bytes in one sequence an operator builds
MEMORY_LIMIT = 512 * 1024 * 1024  # growth of resident memory during one command
MEMORY_SAMPLE_EVERY = 4096
MEMORY_SAMPLE_SIZE = 1 << 22  # elements or bytes built between two samples, at most
MAX_INT_BITS = 1 << 16  # the largest integer arithmetic may build
INT_FREE_WORK = 4096  # products of 64-bit words an integer operation may do for free
CALL_GAS = 5
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Abort(BaseException):
    """Execution must stop now; contract code cannot catch this."""

    code = "abort"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OutOfGas(Abort):
    code = "out_of_gas"


class OutOfMemory(Abort):
    code = "out_of_memory"


class CallDepthExceeded(Abort):
    code = "call_depth_exceeded"


class _Statm:
    """``/proc/self/statm`` kept open and re-read with ``pread`` (about 2 µs instead of 12
    for an open/read/close per command); reopened after a fork."""

    def __init__(self) -> None:
        self.pid = -1
        self.fd = -1

    def read_resident(self) -> int:
        if self.pid != os.getpid():
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = os.open("/proc/self/statm", os.O_RDONLY)
            self.pid = os.getpid()
        return int(os.pread(self.fd, 128, 0).split()[1]) * _PAGE


_STATM = _Statm()


def get_resident_bytes() -> int:
    """The process's current resident memory (Linux /proc), else its peak.

    The current size, not the peak: measured from the peak, every command could grow the
    process by another ``MEMORY_LIMIT`` above the highest point any earlier command
    reached, without bound across commands."""
    try:
        return _STATM.read_resident()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Meter:
    """Counts gas for one command (and the calls it makes)."""

    __slots__ = (
        "limit",
        "remaining",
        "depth",
        "countdown",
        "memory_base",
        "memory_limit",
        "exhausted",
    )

    def __init__(self, limit: int = DEFAULT_GAS_LIMIT, memory_limit: int = MEMORY_LIMIT) -> None:
        self.memory_limit = memory_limit
        self.limit = limit
        self.remaining = limit
        self.depth = 0
        self.countdown = MEMORY_SAMPLE_EVERY
        self.memory_base = 0
        self.exhausted: Abort | None = None

    def start(self, limit: int) -> None:
        """Begin a new command with a fresh budget."""
        self.limit = limit
        self.remaining = limit
        self.depth = 0
        self.countdown = MEMORY_SAMPLE_EVERY
        self.memory_base = get_resident_bytes()
        self.exhausted = None

    @property
    def used(self) -> int:
        return self.limit - self.remaining

    def charge(self, units: int) -> None:
        self.remaining -= units
        if self.remaining < 0:
            self.remaining = 0
            self._stop(OutOfGas(f"out of gas (limit {self.limit})"))
        self.countdown -= 1
        if self.countdown <= 0:
            self.countdown = MEMORY_SAMPLE_EVERY
            self.check_memory()

    def tick(self) -> None:
        """One loop iteration (``charge(1)``, inlined: it runs on every iteration)."""
        self.remaining -= 1
        if self.remaining < 0:
            self.remaining = 0
            self._stop(OutOfGas(f"out of gas (limit {self.limit})"))
        self.countdown -= 1
        if self.countdown <= 0:
            self.countdown = MEMORY_SAMPLE_EVERY
            self.check_memory()

    def enter(self) -> None:
        """A function call begins."""
        self.depth += 1
        if self.depth > MAX_CALL_DEPTH:
            self._stop(CallDepthExceeded(f"calls nested deeper than {MAX_CALL_DEPTH}"))
        self.charge(CALL_GAS)

    def leave(self) -> None:
        self.depth -= 1

    def check_memory(self) -> None:
        if self.memory_base and get_resident_bytes() - self.memory_base > self.memory_limit:
            self._stop(OutOfMemory(f"memory grew by more than {self.memory_limit >> 20} MiB"))

    def check_size(self, size: int) -> None:
        """Charge for building a sequence of ``size`` elements or bytes."""
        if size > MAX_OBJECT_SIZE:
            self._stop(OutOfMemory(f"a single object may hold at most {MAX_OBJECT_SIZE} items"))
        self.charge_size(size)

    def charge_size(self, size: int) -> None:
        """Charge for copying or scanning ``size`` elements or bytes (no cap)."""
        # large objects bring the next memory sample closer (a few of them can be huge)
        self.countdown -= size * MEMORY_SAMPLE_EVERY // MEMORY_SAMPLE_SIZE
        self.charge(1 + size // 64)

    def check_int(self, bits: int, work: int) -> None:
        """Charge for integer arithmetic that builds about ``bits`` bits and multiplies or
        divides ``work`` pairs of 64-bit words (schoolbook cost; Python's is lower)."""
        if bits > MAX_INT_BITS:
            self._stop(OutOfMemory(f"integers may have at most {MAX_INT_BITS} bits"))
        if work > INT_FREE_WORK:
            self.charge(work >> 4)

    def _stop(self, abort: Abort) -> None:
        if self.exhausted is None:
            # a copy without the traceback, which would keep the stopped command's frames
            # (and all they allocated) alive until the next command starts
            self.exhausted = type(abort)(abort.message)
        raise abort


class Unmetered(Meter):
    """The meter of plain (baseline) execution: counts nothing, never stops."""

    def charge(self, units: int) -> None:
        return None

    def tick(self) -> None:
        return None

    def enter(self) -> None:
        return None

    def leave(self) -> None:
        return None

    def start(self, limit: int) -> None:
        self.limit = limit
        self.remaining = limit
        self.exhausted = None
