"""A node's registration upkeep, sans-I/O: register, renew before expiry, heartbeat.

Theory of operation
-------------------
Every node -- worker, gatekeeper, gateway, storage node -- keeps its NodeRegistry entry
alive by the same rules. :class:`RegistrationCore` decides *when*; the node's driver
does the *how* of each transaction (an attested registration over a gatekeeper's
approval for a TEE role, a registration signed with the node's key for a storage node).

The core runs on one timer, ``upkeep``, every ``tick`` seconds. At each tick it asks for
the registry's view of the node (:class:`~sealbridge.core.effects.ReadChain` of a
:class:`RegistryQuery`); on the answer (a :class:`RegistryView`) it decides, with the
time it is given:

* **register** -- the node is not active and no registration is in flight:
  :class:`Register` with expiry ``now + ttl``;
* **renew** -- the node is active and less than a quarter of ``ttl`` is left (and the
  role allows a renewal now: a gatekeeper defers it while an era's key generation
  runs): :class:`Renew` with expiry ``max(now + ttl, expiry + 1)`` (the registry wants
  a later expiry than the current one);
* **heartbeat** -- heartbeats are on, the node is active and the slot of the *next*
  block (where the transaction lands) has not been handled: :class:`Heartbeat` for that
  ``(era, slot)``. An inactive node skips its slot.

At most one transaction of each kind is in flight, each under a tag of its own (an
outcome for an older transaction, or a replayed one, matches nothing; the tags come from
a :class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins anew, so neither
does one for a transaction of the node's previous incarnation). Views are taken
in order: one older than a view already taken, or than a block where one of our
transactions was mined, is stale and ignored, and so is a view that cannot be true
(negative numbers, an active node without an expiry, a slot out of range). Heartbeats
only move forward: never for a slot at or before the newest one handled. Outcomes come
back as :class:`~sealbridge.core.effects.TxOutcome`:

* a mined registration makes the node ``READY``; a reverted one that a view taken
  after it shows active was a race with another process of the same node (no
  failure); otherwise the node is ``FAILED`` with the chain's reason (a stake below
  the minimum is not a passing fault). A ``READY`` node that a view shows inactive
  (expired, removed) registers again;
* a renewal reverted with ``registration lapsed`` registers again at once; any other
  failed renewal is tried again after ``retry_delay`` seconds;
* a heartbeat that was sent (heartbeats are relayed without waiting for a receipt),
  mined or reverted closes its slot; one that was never sent (the chain unreachable) is
  tried again at the next tick, if its slot is still the next.

A failed read changes nothing: one that may pass (the chain unreachable) is retried at
the next tick; one that will not, before any view was taken (the node is configured for
another chain), leaves the node ``FAILED`` with the reason. Once the node has read the
registry, no single read can fail it.
Phases: ``STARTING`` -> ``REGISTERING`` -> ``READY``, or ``FAILED`` with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from sealbridge.chain.abi import HEARTBEAT_SLOTS
from sealbridge.core.effects import (
    ChainRead,
    Effect,
    ReadChain,
    Report,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError
from sealbridge.core.tags import TagSource

__all__ = [
    "EraParams",
    "Heartbeat",
    "Register",
    "RegistrationCore",
    "RegistrationNode",
    "RegistrationPhase",
    "RegistryQuery",
    "RegistryView",
    "Renew",
]

UPKEEP_TIMER = "upkeep"
LAPSED = "registration lapsed"  # the registry's revert reason past the grace period


class EraParams(Message, frozen=True):
    """How the NodeRegistry cuts blocks into eras and heartbeat slots (fixed at deploy)."""

    genesis_block: int
    era_length: int
    slots: int = HEARTBEAT_SLOTS

    def get_era(self, block_number: int) -> int:
        return (block_number - self.genesis_block) // self.era_length

    def get_slot(self, block_number: int) -> int:
        offset = (block_number - self.genesis_block) % self.era_length
        return offset * self.slots // self.era_length

    def get_era_start(self, era: int) -> int:
        """The first block of ``era``."""
        return self.genesis_block + era * self.era_length


class RegistryQuery(Message, frozen=True):
    """What the registry says about ``node_id`` in ``role``."""

    node_id: bytes
    role: int


class RegistryView(Message, frozen=True):
    """The registry's view of one node at the chain's tip."""

    tip: int  # the newest block
    active: bool  # registered in the role, not expired, not slashed
    expiry: int  # 0 when not registered
    next_era: int  # era and heartbeat slot of block ``tip + 1``
    next_slot: int


class Register(Message, frozen=True):
    role: int
    expiry: int


class Renew(Message, frozen=True):
    role: int
    expiry: int
    previous_expiry: int


class Heartbeat(Message, frozen=True):
    role: int
    era: int
    slot: int


class RegistrationPhase(Enum):
    STARTING = "starting"
    REGISTERING = "registering"
    READY = "ready"
    FAILED = "failed"


class RegistrationCore:
    """The upkeep state machine of one node (see the module docstring)."""

    def __init__(
        self,
        node_id: bytes,
        role: int,
        *,
        ttl: int,
        heartbeats: bool = True,
        tick: float = 1.0,
        retry_delay: float = 30.0,
        may_renew: Callable[[], bool] | None = None,
        incarnation: int = 0,
    ) -> None:
        if ttl <= 0 or tick <= 0 or retry_delay < 0:
            raise ConfigError("a registration needs ttl > 0, tick > 0 and retry_delay >= 0")
        self.node_id = bytes(node_id)
        self.role = int(role)
        self.ttl = int(ttl)
        self.heartbeats = heartbeats
        self.tick = float(tick)
        self.retry_delay = float(retry_delay)
        self.may_renew = may_renew if may_renew is not None else (lambda: True)
        self.phase = RegistrationPhase.STARTING
        self.error = ""
        self.expiry = 0
        self.view: RegistryView | None = None
        self.tip_seen = -1  # the newest tip of a view taken (older views are stale)
        self.in_flight: dict[str, tuple[str, Any]] = {}  # kind -> (tag, transaction)
        self.tags = TagSource(sep="/", incarnation=incarnation)  # "<kind>/<incarnation>/<n>"
        self.renew_after = 0.0  # no renewal before this time (after a failed one)
        self.slot_done: tuple[int, int] | None = None  # the newest heartbeat slot handled
        self.heartbeats_sent = 0
        self.renewals = 0
        self.mined_block = 0  # the newest block one of our transactions was mined in
        # a registration reverted at this tip: fail unless a later view shows us active
        self.revert: tuple[str, int] | None = None

    # -- handlers ----------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no outcome of an earlier incarnation's transaction is taken
        self.phase = RegistrationPhase.REGISTERING
        return [self._read(), SetTimer(UPKEEP_TIMER, self.tick)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name != UPKEEP_TIMER:
            return []
        return [self._read(), SetTimer(UPKEEP_TIMER, self.tick)]

    def on_message(self, message: Any, now: float) -> list[Effect]:
        """Handle an answer meant for this core; other messages are ignored (``[]``)."""
        if isinstance(message, ChainRead) and message.tag == "registry":
            return self.on_view(message, now)
        if isinstance(message, TxOutcome) and self._kind_of(message.tag) is not None:
            return self.on_outcome(message, now)
        return []

    def is_answer(self, message: Any) -> bool:
        """Whether ``message`` is an answer this core is waiting for."""
        return (isinstance(message, ChainRead) and message.tag == "registry") or (
            isinstance(message, TxOutcome) and self._kind_of(message.tag) is not None
        )

    def on_view(self, read: ChainRead, now: float) -> list[Effect]:
        view = read.value
        if read.error or not isinstance(view, RegistryView) or not _is_sound(view):
            self.error = f"cannot read the registry: {read.error or 'no sound answer'}"
            if not read.passing and self.view is None and self.phase != RegistrationPhase.FAILED:
                # a misconfiguration before anything worked (another chain): no retry helps
                self.phase = RegistrationPhase.FAILED
                return [Report("registration_failed", self.error)]
            return []
        if view.tip < max(self.tip_seen, self.mined_block):
            return []  # older than a view already taken, or than our own mined change
        self.tip_seen = view.tip
        self.view = view
        if self.phase == RegistrationPhase.FAILED:
            return []
        effects: list[Effect] = []
        if not view.active:
            if self.revert is not None and view.tip > self.revert[1]:
                self.phase = RegistrationPhase.FAILED
                return [Report("registration_failed", self.revert[0])]
            if self.revert is not None:
                return []  # the registration's revert is newer than this view: wait
            if self.phase == RegistrationPhase.READY:
                self.phase = RegistrationPhase.REGISTERING  # expired or removed meanwhile
            if "register" not in self.in_flight:
                effects.append(
                    self._submit("register", Register(role=self.role, expiry=int(now) + self.ttl))
                )
            return effects
        self.expiry = view.expiry
        self.revert = None
        if self.phase != RegistrationPhase.READY:
            self.phase = RegistrationPhase.READY
            self.error = ""
            effects.append(Report("registered", self.expiry))
        if self.is_renewal_due(now) and "renew" not in self.in_flight:
            if now >= self.renew_after and self.may_renew():
                expiry = max(int(now) + self.ttl, self.expiry + 1)
                renew = Renew(role=self.role, expiry=expiry, previous_expiry=self.expiry)
                effects.append(self._submit("renew", renew))
        due = (view.next_era, view.next_slot)
        later = self.slot_done is None or due > self.slot_done
        if self.heartbeats and later and "heartbeat" not in self.in_flight:
            beat = Heartbeat(role=self.role, era=due[0], slot=due[1])
            effects.append(self._submit("heartbeat", beat))
        return effects

    def on_outcome(self, outcome: TxOutcome, now: float) -> list[Effect]:
        kind = self._kind_of(outcome.tag)
        if kind is None:
            return []
        _, tx = self.in_flight.pop(kind)
        if outcome.is_mined:
            self.mined_block = max(self.mined_block, outcome.block_number)
        if kind == "register":
            if outcome.is_mined:
                self.phase = RegistrationPhase.READY
                self.expiry = tx.expiry
                self.revert = None
                self.error = ""
                return [Report("registered", tx.expiry)]
            if outcome.status == "reverted":
                # a race with another process of this node is no failure: a view taken
                # after the revert decides (active: registered; not: failed)
                self.revert = (outcome.reason or "reverted", max(self.tip_seen, 0))
                self.error = f"registration reverted: {self.revert[0]}"
                return []
            self.error = f"retrying registration: {outcome.reason}"
            return []
        if kind == "renew":
            if outcome.is_mined:
                self.expiry = max(self.expiry, tx.expiry)
                self.renewals += 1
                return [Report("renewed", tx.expiry)]
            if outcome.reason == LAPSED:
                self.phase = RegistrationPhase.REGISTERING
                if "register" in self.in_flight:
                    return []
                return [
                    self._submit("register", Register(role=self.role, expiry=int(now) + self.ttl))
                ]
            self.renew_after = now + self.retry_delay
            self.error = f"renewal failed (tried again later): {outcome.reason}"
            return []
        # a heartbeat
        if outcome.status != "failed":
            slot = (tx.era, tx.slot)
            if self.slot_done is None or slot > self.slot_done:
                self.slot_done = slot
            if outcome.status in ("mined", "sent"):
                self.heartbeats_sent += 1
        return []

    def _submit(self, kind: str, tx: Any) -> SubmitTx:
        tag = self.tags.issue(kind)
        self.in_flight[kind] = (tag, tx)
        return SubmitTx(tag, tx)

    def _kind_of(self, tag: str) -> str | None:
        """The kind of the transaction in flight under ``tag`` (None: not ours, or old)."""
        for kind, (sent_tag, _) in self.in_flight.items():
            if sent_tag == tag:
                return kind
        return None

    # -- reads -------------------------------------------------------------------------
    def is_renewal_due(self, now: float) -> bool:
        """Renew once less than a quarter of ``ttl`` is left."""
        return self.expiry > 0 and (self.expiry - now) * 4 < self.ttl

    def get_status(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "error": self.error,
            "registered": self.phase == RegistrationPhase.READY,
            "expiry": self.expiry,
            "heartbeats_sent": self.heartbeats_sent,
            "renewals": self.renewals,
        }

    def _read(self) -> ReadChain:
        return ReadChain("registry", RegistryQuery(node_id=self.node_id, role=self.role))


def _is_sound(view: RegistryView) -> bool:
    """A view that can be true: no negative numbers, an active node has an expiry, the
    slot exists."""
    return (
        view.tip >= 0
        and view.expiry >= 0
        and view.next_era >= 0
        and 0 <= view.next_slot < HEARTBEAT_SLOTS
        and (view.expiry > 0 or not view.active)
    )


class RegistrationNode:
    """A :class:`RegistrationCore` on its own, as a node a driver runs (the upkeep of a
    host whose other work is not a host core yet)."""

    def __init__(self, core: RegistrationCore, address: int = 0) -> None:
        self.core = core
        self.address = address

    @property
    def node_id(self) -> int:
        return self.address

    def on_start(self, now: float) -> list[Effect]:
        return self.core.on_start(now)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return self.core.on_timer(name, now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        return self.core.on_message(message, now)
