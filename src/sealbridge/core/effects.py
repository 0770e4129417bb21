"""Effects: what a sans-I/O protocol core asks its driver to do.

Theory of operation
-------------------
A protocol core (a BFT replica, a gateway, ...) never touches a socket, a clock or a
global random source. Its driver -- the deterministic simulator (:mod:`sealbridge.sim`)
or a network driver -- calls one of three handlers of a :class:`ProtocolNode` with the
current time, and carries out the effects the handler returns, in order:

* :class:`Send` -- deliver ``message`` to each node in ``to`` (node ids of the driver's
  address space). The driver decides how long it takes and whether it arrives at all
  (link delays, partitions, crashes); a core must tolerate loss and reordering.
* :class:`SetTimer` -- call ``on_timer(name)`` after ``delay`` seconds of the node's
  time; setting a timer again under the same name replaces it.
* :class:`CancelTimer` -- forget the timer of that name (nothing if there is none).
* :class:`Report` -- an observation for whoever watches the run (a committed block, a
  finished transfer); it changes nothing in the protocol, and the simulator records it
  in its trace.

Time is a float of seconds from the start of the run. Randomness is given to a core when
it is built (a ``random_bytes`` callable or a seeded generator), never taken from the
process. Messages are frozen msgspec Structs; a driver may pass them by reference (the
simulator) or encode them canonically (the network).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CancelTimer", "Effect", "ProtocolNode", "Report", "Send", "SetTimer"]


@dataclass(frozen=True, slots=True)
class Send:
    to: tuple[int, ...]
    message: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: str
    delay: float  # seconds from now


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Report:
    kind: str
    data: Any = None


Effect = Send | SetTimer | CancelTimer | Report


class ProtocolNode(Protocol):
    """What a driver needs of a sans-I/O core."""

    @property
    def node_id(self) -> int: ...

    def on_start(self, now: float) -> list[Effect]: ...

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]: ...

    def on_timer(self, name: str, now: float) -> list[Effect]: ...
