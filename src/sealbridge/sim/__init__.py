"""Deterministic discrete-event simulator: sans-I/O cores in virtual time.

See :mod:`sealbridge.sim.engine` for the theory of operation and docs/simulator.md.
"""

from __future__ import annotations

from sealbridge.sim.delays import DelayModel, Fixed, Jitter, Uniform
from sealbridge.sim.engine import (
    EXTERNAL,
    CpuModel,
    DuplicateNodeError,
    FixedCpu,
    MeasuredCpu,
    MessageFilter,
    ReportRecord,
    RunStats,
    SimulationError,
    Simulator,
    TraceRecord,
    UnknownNodeError,
    ZeroCpu,
)

__all__ = [
    "EXTERNAL",
    "CpuModel",
    "DelayModel",
    "DuplicateNodeError",
    "Fixed",
    "FixedCpu",
    "Jitter",
    "MeasuredCpu",
    "MessageFilter",
    "ReportRecord",
    "RunStats",
    "SimulationError",
    "Simulator",
    "TraceRecord",
    "Uniform",
    "UnknownNodeError",
    "ZeroCpu",
]
