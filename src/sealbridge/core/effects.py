"""Effects returned by sans-I/O protocol cores.

A core never performs I/O; it returns a list of these and the driver (network node or
simulator) carries them out.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message


class Send(Message, frozen=True):
    """Deliver ``payload`` (canonical bytes) to the peer ``to``."""

    to: str
    payload: bytes


class SetTimer(Message, frozen=True):
    """Call the core's timer handler with ``name`` at virtual/real time ``at``."""

    name: str
    at: float


class SubmitTx(Message, frozen=True):
    """Send a transaction calling ``method`` on the management contract ``contract``."""

    contract: str
    method: str
    args: list[object]
    value: int = 0


Effect = Send | SetTimer | SubmitTx
