"""Link delay models of the simulator.

A delay model answers one question: how many seconds does a message from ``sender`` take
to reach ``receiver``? The simulator asks once per recipient of every ``Send`` and passes
its own seeded :class:`random.Random`, so a model never touches the process-wide random
source and a ``(seed, scenario)`` pair fixes every draw.

* :class:`Fixed` -- always ``delay``; draws nothing from the generator.
* :class:`Uniform` -- uniform in ``[low, high]``.
* :class:`Jitter` -- ``base`` plus an exponentially distributed extra with mean
  ``spread`` (a long tail: most messages arrive close to ``base``, a few much later).

Per-link models are set on the simulator (``links=`` / ``set_link_delay``) or by
overriding its ``delay_for(sender, receiver)`` hook; any object with a ``sample`` method
of the right shape is a model. A model must return a finite delay ``>= 0``.

Bad parameters raise :class:`~sealbridge.core.errors.ConfigError`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from sealbridge.core.errors import ConfigError

__all__ = ["DelayModel", "Fixed", "Jitter", "Uniform", "check_seconds"]


class DelayModel(Protocol):
    """How long a message takes on the link ``sender -> receiver``."""

    def sample(self, rng: random.Random, sender: int, receiver: int) -> float: ...


def check_seconds(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0.0:
        raise ConfigError(f"{name} must be finite and >= 0, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Fixed:
    """Every message takes exactly ``delay`` seconds."""

    delay: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", check_seconds("delay", self.delay))

    def sample(self, rng: random.Random, sender: int, receiver: int) -> float:
        return self.delay


@dataclass(frozen=True, slots=True)
class Uniform:
    """Each message takes a delay drawn uniformly from ``[low, high]``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        low = check_seconds("low", self.low)
        high = check_seconds("high", self.high)
        if high < low:
            raise ConfigError(f"Uniform needs low <= high, got [{low}, {high}]")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def sample(self, rng: random.Random, sender: int, receiver: int) -> float:
        return self.low + (self.high - self.low) * rng.random()


@dataclass(frozen=True, slots=True)
class Jitter:
    """``base`` plus an exponential extra of mean ``spread`` (``spread == 0``: just ``base``).

    The mean delay is ``base + spread``; the extra is unbounded, which models the long
    tail of real networks (queueing, retransmission) better than a uniform window.
    """

    base: float
    spread: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", check_seconds("base", self.base))
        object.__setattr__(self, "spread", check_seconds("spread", self.spread))

    def sample(self, rng: random.Random, sender: int, receiver: int) -> float:
        if self.spread == 0.0:
            return self.base
        return self.base + rng.expovariate(1.0 / self.spread)
