"""Fresh effect tags that never repeat across a core's restarts, sans-I/O.

Theory of operation
-------------------
A host core names each effect it asks for with a tag and takes an answer only under the
tag it awaits (:mod:`sealbridge.core.effects`). A tag must therefore be fresh: no answer
to an *earlier* effect may carry it. A counter alone is fresh within one object, but a
restarted node is a new object whose counter starts again at 0, while the simulator
(:meth:`sealbridge.sim.engine.Simulator.restart`) still delivers what was in flight when
the node crashed. The old incarnation's ``...:1`` then answers the new one's ``...:1``:
an old logs read taken for another block range, an old receipt for a new transaction.

A :class:`TagSource` puts the *incarnation* between the prefix and the counter::

    feed:0.1@12.5:3     <prefix>:<wiring>.<generation>@<start time>:<n>

and :meth:`TagSource.start` (called from the core's ``on_start``) begins a new
incarnation. The incarnation is made of three inputs, none taken from the process:

* ``start`` -- the ``now`` given to ``on_start``. A node's clock only moves forward (the
  simulator's per-node clock carries on through a crash; the network driver passes
  ``time.time()``), and a restart comes after the crash, which comes after the previous
  start: a fresh object started later than its predecessor differs by this alone.
* ``generation`` -- how many times *this object* was started. A driver that restarts the
  same object (the simulator may) gets a new incarnation even at the same instant; 0
  means "never started" (a unit test calling ``on_message`` directly), so a started
  source never repeats a never-started one.
* ``wiring`` -- an integer the wiring passes at construction (``incarnation=`` on the
  cores; default 0): how many times it built this node. It separates the one case the
  other two cannot -- a *new object* started at exactly the instant its predecessor
  was (start, crash and restart at one virtual time), or a clock that restarts from
  zero. Wiring that can restart at the same instant should count here.

Two incarnations are equal only if all three are, so a tag of one incarnation never
equals a tag of another. Within an incarnation ``n`` counts every tag issued (never
reset), so tags are unique across kinds too. The parts are printed exactly (``repr`` of
the float) and contain neither ``:`` nor ``/``, the separators the cores use.

A source only issues tags; which tag a core awaits, and of what kind and sender, stays
the core's own bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealbridge.core.errors import ConfigError

__all__ = ["TagSource"]


@dataclass(init=False)
class TagSource:
    """Issues fresh tags ``<prefix><sep>[<kind><sep>]<incarnation><sep><n>``.

    ``incarnation`` is the wiring's count (see the module docstring); compared by value,
    so a core's state can be snapshotted and compared whole.
    """

    prefix: str
    sep: str
    wiring: int  # the wiring's count
    generation: int  # starts of this object (0: never started)
    start_time: float  # the ``now`` of the latest start
    issued: int  # tags issued, all incarnations

    def __init__(self, prefix: str = "", *, sep: str = ":", incarnation: int = 0) -> None:
        if sep not in (":", "/"):
            raise ConfigError(f"a tag separator is ':' or '/', not {sep!r}")
        if int(incarnation) < 0:
            raise ConfigError("a wiring incarnation is a count: >= 0")
        self.prefix = prefix
        self.sep = sep
        self.wiring = int(incarnation)
        self.generation = 0
        self.start_time = 0.0
        self.issued = 0

    @property
    def incarnation(self) -> str:
        """This incarnation's name, as it appears in its tags."""
        return f"{self.wiring}.{self.generation}@{self.start_time!r}"

    def start(self, now: float) -> None:
        """A new incarnation, started at ``now``: no later tag equals an earlier one."""
        self.generation += 1
        self.start_time = float(now)

    def issue(self, kind: str = "") -> str:
        """A fresh tag (``kind``, if given, follows the prefix: ``committee:logs:...``)."""
        self.issued += 1
        head = self.sep.join(part for part in (self.prefix, kind) if part)
        tail = f"{self.incarnation}{self.sep}{self.issued}"
        return f"{head}{self.sep}{tail}" if head else tail
