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

At most one transaction of each kind is in flight. Outcomes come back as
:class:`~sealbridge.core.effects.TxOutcome`:

* a mined registration makes the node ``READY``; a reverted one that the next view
  shows active was a race with another process of the same node (no failure);
  otherwise the node is ``FAILED`` with the chain's reason (a stake below the minimum
  is not a passing fault);
* a renewal reverted with ``registration lapsed`` registers again at once; any other
  failed renewal is tried again after ``retry_delay`` seconds;
* a heartbeat that was sent (heartbeats are relayed without waiting for a receipt),
  mined or reverted closes its slot; one that was never sent (the chain unreachable) is
  tried again at the next tick, if its slot is still the next.

A failed read changes nothing: one that may pass (the chain unreachable) is retried at
the next tick; one that will not (the node is configured for another chain) leaves the
node ``FAILED`` with the reason.
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

__all__ = [
    "EraParams",
    "Heartbeat",
    "Register",
    "RegistrationCore",
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
        self.in_flight: dict[str, Any] = {}  # kind -> the transaction sent
        self.renew_after = 0.0  # no renewal before this time (after a failed one)
        self.slot_done: tuple[int, int] | None = None  # the last heartbeat slot handled
        self.heartbeats_sent = 0
        self.renewals = 0
        self.registered_block = 0  # where our registration was mined
        self.revert_reason: str | None = None  # a registration reverted: fail unless active

    # -- handlers ----------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
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
        if isinstance(message, TxOutcome) and message.tag in self.in_flight:
            return self.on_outcome(message, now)
        return []

    def is_answer(self, message: Any) -> bool:
        """Whether ``message`` is an answer this core is waiting for."""
        return (isinstance(message, ChainRead) and message.tag == "registry") or (
            isinstance(message, TxOutcome) and message.tag in self.in_flight
        )

    def on_view(self, read: ChainRead, now: float) -> list[Effect]:
        if read.error or not isinstance(read.value, RegistryView):
            self.error = f"cannot read the registry: {read.error or 'no answer'}"
            if not read.passing and self.phase != RegistrationPhase.FAILED:
                self.phase = RegistrationPhase.FAILED  # a misconfiguration: no retry helps
                return [Report("registration_failed", self.error)]
            return []
        view = self.view = read.value
        if self.phase == RegistrationPhase.FAILED:
            return []
        effects: list[Effect] = []
        if not view.active:
            if view.tip < self.registered_block:
                return []  # a view older than our mined registration
            if self.revert_reason is not None:
                self.phase = RegistrationPhase.FAILED
                return [Report("registration_failed", self.revert_reason)]
            if "register" not in self.in_flight:
                tx = Register(role=self.role, expiry=int(now) + self.ttl)
                self.in_flight["register"] = tx
                effects.append(SubmitTx("register", tx))
            return effects
        self.expiry = view.expiry
        self.revert_reason = None
        if self.phase != RegistrationPhase.READY:
            self.phase = RegistrationPhase.READY
            self.error = ""
            effects.append(Report("registered", self.expiry))
        if self.is_renewal_due(now) and "renew" not in self.in_flight:
            if now >= self.renew_after and self.may_renew():
                expiry = max(int(now) + self.ttl, self.expiry + 1)
                renew = Renew(role=self.role, expiry=expiry, previous_expiry=self.expiry)
                self.in_flight["renew"] = renew
                effects.append(SubmitTx("renew", renew))
        due = (view.next_era, view.next_slot)
        if self.heartbeats and due != self.slot_done and "heartbeat" not in self.in_flight:
            tx_hb = Heartbeat(role=self.role, era=due[0], slot=due[1])
            self.in_flight["heartbeat"] = tx_hb
            effects.append(SubmitTx("heartbeat", tx_hb))
        return effects

    def on_outcome(self, outcome: TxOutcome, now: float) -> list[Effect]:
        tx = self.in_flight.pop(outcome.tag)
        if outcome.tag == "register":
            if outcome.is_mined:
                self.phase = RegistrationPhase.READY
                self.registered_block = outcome.block_number
                self.expiry = tx.expiry
                self.error = ""
                return [Report("registered", tx.expiry)]
            if outcome.status == "reverted":
                # a race with another process of this node is no failure: the next view
                # decides (active: registered; not: failed with this reason)
                self.revert_reason = outcome.reason or "reverted"
                self.error = f"registration reverted: {self.revert_reason}"
                return []
            self.error = f"retrying registration: {outcome.reason}"
            return []
        if outcome.tag == "renew":
            if outcome.is_mined:
                self.expiry = tx.expiry
                self.renewals += 1
                return [Report("renewed", tx.expiry)]
            if outcome.reason == LAPSED:
                reg = Register(role=self.role, expiry=int(now) + self.ttl)
                self.in_flight["register"] = reg
                self.phase = RegistrationPhase.REGISTERING
                return [SubmitTx("register", reg)]
            self.renew_after = now + self.retry_delay
            self.error = f"renewal failed (tried again later): {outcome.reason}"
            return []
        # a heartbeat
        if outcome.status != "failed":
            self.slot_done = (tx.era, tx.slot)
            if outcome.status in ("mined", "sent"):
                self.heartbeats_sent += 1
        return []

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
