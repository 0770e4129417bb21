"""Building a replica group: the trusted key dealing and the replicas.

Theory of operation
-------------------
Certificates are threshold-BLS signatures, so the replicas of an AS need shares of one
group key. Here a *trusted dealer* makes them (:func:`deal_group_key`, Shamir sharing by
:func:`sealbridge.crypto.bls.deal_threshold_key`): whoever runs the dealer learns the group
secret and could forge certificates. That is acceptable for the simulator and for tests,
which play every role anyway, and it is what InterTrust assumes of an AS's setup. A
production AS would run a distributed key generation instead (the key service's
:mod:`sealbridge.crypto.dkg` does that for the gatekeepers); the replicas only need a
:class:`~sealbridge.crypto.bls.KeyShare` and the :class:`~sealbridge.consensus.config.GroupKey`,
whatever produced them.

With a ``seed`` the dealing is deterministic, so a ``(seed, scenario)`` pair fixes the
keys of a simulation as well as everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from sealbridge.consensus.certs import VerifyCache
from sealbridge.consensus.config import (
    ConsensusConfig,
    compute_default_f,
    compute_safe_threshold,
)
from sealbridge.consensus.errors import ConsensusConfigError
from sealbridge.consensus.replica import Replica
from sealbridge.crypto import bls
from sealbridge.crypto.bls import ThresholdKeySet

__all__ = ["build_cluster", "deal_group_key"]


def deal_group_key(
    n: int, *, f: int | None = None, threshold: int | None = None, seed: bytes | None = None
) -> ThresholdKeySet:
    """Deal a ``threshold``-of-``n`` key (default: the safe quorum for ``f``).

    ``f`` defaults to :func:`compute_default_f`. Without a seed the group secret comes
    from the operating system's random source.
    """
    if type(n) is not int or n < 1:
        raise ConsensusConfigError(f"n must be a positive int, got {n!r}")
    f = compute_default_f(n) if f is None else f
    if type(f) is not int or f < 0 or n < 3 * f + 1:
        raise ConsensusConfigError(f"n = {n} replicas cannot tolerate f = {f!r}")
    threshold = compute_safe_threshold(n, f) if threshold is None else threshold
    if type(threshold) is not int or not f + 1 <= threshold <= n:
        raise ConsensusConfigError(f"threshold must be in [f+1, n] = [{f + 1}, {n}]")
    randomness = None
    if seed is not None:
        randomness = hashlib.sha256(b"sealbridge/consensus/dealer/v1" + bytes(seed)).digest()
    return bls.deal_threshold_key(threshold, n, randomness=randomness)


def build_cluster(
    as_id: int,
    replica_ids: Sequence[int],
    *,
    f: int | None = None,
    threshold: int | None = None,
    seed: bytes | None = None,
    genesis: Mapping[str, int] | Iterable[tuple[str, int]] = (),
    verifier: VerifyCache | None = None,
    batch_size: int = 64,
    batch_timeout: float = 0.005,
    view_change_timeout: float = 1.0,
    fetch_timeout: float | None = None,
    window: int = 64,
    send_replies: bool = True,
    single_phase: bool = False,
) -> tuple[ConsensusConfig, list[Replica]]:
    """Deal a key and build one replica per id (replica ``i`` is ``replica_ids[i]``).

    ``verifier`` is shared by all replicas when given (sound: it memoizes a pure
    function); otherwise each replica has its own. Share one only when CPU time is not
    measured (the simulator's ``FixedCpu``/``ZeroCpu``): under ``MeasuredCpu`` the first
    replica to check a certificate would pay for all of them.
    """
    n = len(replica_ids)
    f = compute_default_f(n) if f is None else f
    key_set = deal_group_key(n, f=f, threshold=threshold, seed=seed)
    config = ConsensusConfig.create(
        as_id,
        replica_ids,
        key_set,
        f=f,
        genesis=genesis,
        batch_size=batch_size,
        batch_timeout=batch_timeout,
        view_change_timeout=view_change_timeout,
        fetch_timeout=fetch_timeout,
        window=window,
        send_replies=send_replies,
        single_phase=single_phase,
    )
    replicas = [Replica(config, i, key_set.shares[i], verifier=verifier) for i in range(n)]
    return config, replicas
