"""Waiting until a condition holds: the one poll loop of the host side.

Theory of operation
-------------------
Hosts, the devnet launcher, the client and the CLI often wait for something outside the
process: a node to answer ``/v1/status``, a registration to land on chain, a committee era
to become active, a process to exit. Each of these is :func:`wait_until`: call ``check``
again and again until it returns a truthy value, and return that value.

* **Not yet.** ``check`` returning a falsy value (``None``, ``False``, ``0``, empty) means
  "not yet"; so does raising one of the ``passing`` exceptions (a tuple of types, or a
  predicate on the exception) -- a node not listening yet, the chain's RPC not up yet.
  Any other exception is raised at once: a process that exited, a phase that failed.
* **Rounds.** Between two calls it sleeps ``interval`` seconds (never less: no busy
  spinning), but never past the deadline: the last round runs at the deadline itself.
  So the whole wait lasts at most ``timeout`` plus the time of one call of ``check``.
* **Timeout.** When ``timeout`` seconds have passed without a truthy value it raises
  :class:`WaitTimeout` (a :class:`~sealbridge.core.errors.LocalProtocolError`), whose
  message names what was awaited and the timeout, chained to the last passing exception
  if the last round raised one. A caller with an error of its own (``DevnetError``,
  ``ClientError``) catches :class:`WaitTimeout` and raises its own ``from`` it; a caller
  whose callers expect the underlying failure passes ``reraise=True`` to get the last
  passing exception itself back, as tenacity's ``reraise`` does.

The rounds are tenacity's (``Retrying`` with ``retry_if_result`` /
``retry_if_exception``, ``stop_after_delay`` and a fixed wait cut at the deadline): the
network driver's retry policy (``node/driver.py``) uses the same library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
)

from sealbridge.core.errors import ConfigError, LocalProtocolError

T = TypeVar("T")

# what counts as "not yet" when check raises: exception types, or a predicate
Passing = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


class WaitTimeout(LocalProtocolError):
    """A condition did not hold within its timeout."""

    code = "wait_timeout"

    def __init__(self, what: str, timeout: float, last: BaseException | None = None) -> None:
        message = f"timed out after {timeout:g}s waiting for {what}"
        if last is not None:
            message += f" (last: {type(last).__name__}: {last})"
        super().__init__(message)
        self.what = what
        self.timeout = timeout
        self.last = last


def _is_not_yet(value: object) -> bool:
    return not value


def _sleep_until_next_round(interval: float, timeout: float) -> Callable[[RetryCallState], float]:
    """A fixed ``interval`` between rounds, cut so that no sleep passes the deadline."""

    def sleep(state: RetryCallState) -> float:
        elapsed = state.seconds_since_start or 0.0
        return max(0.0, min(interval, timeout - elapsed))

    return sleep


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    passing: Passing = (),
    reraise: bool = False,
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns a truthy value; return it.

    Exceptions that ``passing`` matches count as "not yet"; any other is raised at once.
    After ``timeout`` seconds raise :class:`WaitTimeout` naming ``what`` (chained to the
    last passing exception), or with ``reraise`` that last passing exception itself.
    """
    if not interval > 0:
        raise ConfigError(f"wait interval must be positive, not {interval!r}")
    on_exception = (
        retry_if_exception_type(passing)
        if isinstance(passing, tuple)
        else retry_if_exception(passing)
    )
    retrying = Retrying(
        retry=retry_if_result(_is_not_yet) | on_exception,
        wait=_sleep_until_next_round(interval, timeout),
        stop=stop_after_delay(max(timeout, 0.0)),
        reraise=reraise,
    )
    try:
        return cast(T, retrying(check))
    except RetryError as exc:  # with reraise, only when the last round returned "not yet"
        outcome = exc.last_attempt
        last = outcome.exception() if outcome.failed else None
        raise WaitTimeout(what, timeout, last) from last
