"""Configuration of one autonomous system's replica group.

An autonomous system (AS) is a permissioned chain of ``n`` replicas. Replica ``i``
(``0 <= i < n``) has node id ``replica_ids[i]`` in its driver's address space -- a space
shared with other ASes, gateways and clients, hence the explicit list -- and holds share
``i + 1`` of the group's threshold BLS key. The configuration carries only the public
side of that key (:class:`GroupKey`); each replica gets its own
:class:`~sealbridge.crypto.bls.KeyShare` separately.

Parameters and their defaults
  ``f``          faults tolerated; default ``(n - 3) // 3`` (SBFT's ``n = 3f + 2c + 1``
                 with ``c = 1``; at least 0). Any ``f`` with ``n >= 3f + 1`` is accepted;
                 ``(n - 1) // 3`` is the largest.
  threshold      shares per certificate, fixed by the dealt key (``GroupKey.threshold``).
                 The safe quorum is ``ceil((n + f + 1) / 2)``
                 (:func:`compute_safe_threshold`): two such quorums share at least
                 ``f + 1`` replicas, so one honest replica, who never signs two digests for
                 one (view, sequence). Anything from ``f + 1`` (InterTrust's setting) up to
                 ``n`` is accepted; **below the safe quorum, f Byzantine replicas can obtain
                 two certificates for different batches at one sequence**, and the view
                 change no longer preserves commits. Above ``n - f`` the group stalls when
                 ``f`` replicas are silent.
  view-change quorum  ``max(2f + 1, threshold)`` ViewChange messages make a NewView.
  ``gateway_keys`` the Ed25519 identity keys of this AS's own interop gateways
                 (:mod:`sealbridge.interop`): the ledger accepts cross-chain certificates
                 under keys they endorsed, and refusals they signed. Empty by default.
  ``single_phase`` one certificate round per batch (PrePrepare, COMMIT shares, Commit):
                 the round InterTrust's Figure 4 measures, three message delays instead
                 of five. A measurement mode: **not safe across view changes** -- a
                 Byzantine collector can keep the only commit certificate to itself while
                 no honest replica holds evidence for the view change (see
                 :mod:`sealbridge.consensus.replica`). Off by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sealbridge.consensus.errors import ConsensusConfigError
from sealbridge.consensus.ledger import validate_genesis
from sealbridge.core.encoding import Message
from sealbridge.crypto.bls import PUBLIC_KEY_SIZE, ThresholdKeySet

__all__ = [
    "ConsensusConfig",
    "GroupKey",
    "compute_default_f",
    "compute_max_f",
    "compute_safe_threshold",
]

_MAX_UINT = 2**63 - 1


class GroupKey(Message, frozen=True):
    """The public side of a dealt threshold key: ``public_shares[i]`` is replica ``i``'s."""

    threshold: int
    group_public_key: bytes
    public_shares: list[bytes]

    @classmethod
    def from_key_set(cls, key_set: ThresholdKeySet) -> GroupKey:
        return cls(
            threshold=key_set.threshold,
            group_public_key=key_set.group_public_key,
            public_shares=list(key_set.public_shares),
        )


def compute_default_f(n: int) -> int:
    """``(n - 3) // 3``, at least 0 (SBFT with one spare collector: ``n = 3f + 3``)."""
    return max(0, (n - 3) // 3)


def compute_max_f(n: int) -> int:
    """The most faults ``n`` replicas tolerate: ``(n - 1) // 3``."""
    return max(0, (n - 1) // 3)


def compute_safe_threshold(n: int, f: int) -> int:
    """``ceil((n + f + 1) / 2)``: any two such quorums share ``f + 1`` replicas."""
    return (n + f + 2) // 2


def _is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_UINT


@dataclass(frozen=True)
class ConsensusConfig:
    """Everything the replicas of one AS agree on before they start."""

    as_id: int
    replica_ids: tuple[int, ...]
    group_key: GroupKey
    f: int
    batch_size: int = 64
    batch_timeout: float = 0.005  # seconds a primary waits to fill a batch
    view_change_timeout: float = 1.0  # seconds before a replica suspects the primary
    fetch_timeout: float = 0.25  # seconds before a missing batch is asked of everyone
    window: int = 64  # sequences a replica accepts beyond its last executed one
    genesis: tuple[tuple[str, int], ...] = ()
    send_replies: bool = True  # False: no Reply messages (nobody listens; read the reports)
    single_phase: bool = False  # the paper's one-certificate round; unsafe across view changes
    # the collector forwards a combined certificate before verifying it (then checks it)
    speculative_certificates: bool = True
    gateway_keys: tuple[bytes, ...] = ()  # Ed25519 keys of this AS's interop gateways
    _index: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_uint(self.as_id):
            raise ConsensusConfigError(f"as_id must be an int in [0, 2**63), got {self.as_id!r}")
        ids = tuple(self.replica_ids)
        object.__setattr__(self, "replica_ids", ids)
        if not all(_is_uint(i) for i in ids):
            raise ConsensusConfigError("replica ids must be ints in [0, 2**63)")
        if len(set(ids)) != len(ids):
            raise ConsensusConfigError("replica ids must be distinct")
        n = len(ids)
        if type(self.f) is not int or self.f < 0:
            raise ConsensusConfigError(f"f must be an int >= 0, got {self.f!r}")
        if n < 3 * self.f + 1:
            raise ConsensusConfigError(f"n = {n} replicas cannot tolerate f = {self.f} (n < 3f+1)")
        key = self.group_key
        if not isinstance(key, GroupKey):
            raise ConsensusConfigError("group_key must be a GroupKey")
        if type(key.threshold) is not int or not self.f + 1 <= key.threshold <= n:
            raise ConsensusConfigError(
                f"certificate threshold must be in [f+1, n] = [{self.f + 1}, {n}], "
                f"got {key.threshold!r}"
            )
        if len(key.public_shares) != n:
            raise ConsensusConfigError(
                f"the group key has {len(key.public_shares)} public shares for {n} replicas"
            )
        for pk in [key.group_public_key, *key.public_shares]:
            if not isinstance(pk, bytes) or len(pk) != PUBLIC_KEY_SIZE:
                raise ConsensusConfigError(f"public keys are {PUBLIC_KEY_SIZE} bytes")
        if type(self.batch_size) is not int or not 1 <= self.batch_size <= 65536:
            raise ConsensusConfigError("batch_size must be an int in [1, 65536]")
        if type(self.window) is not int or not 1 <= self.window <= 65536:
            raise ConsensusConfigError("window must be an int in [1, 65536]")
        for name in ("batch_timeout", "view_change_timeout", "fetch_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ConsensusConfigError(f"{name} must be a finite number >= 0")
        if type(self.send_replies) is not bool:
            raise ConsensusConfigError("send_replies must be a bool")
        if type(self.single_phase) is not bool:
            raise ConsensusConfigError("single_phase must be a bool")
        if type(self.speculative_certificates) is not bool:
            raise ConsensusConfigError("speculative_certificates must be a bool")
        if self.view_change_timeout <= 0:
            raise ConsensusConfigError("view_change_timeout must be positive")
        gateway_keys = tuple(self.gateway_keys)
        if not all(isinstance(k, bytes) and len(k) == 32 for k in gateway_keys):
            raise ConsensusConfigError("gateway keys are 32-byte Ed25519 public keys")
        object.__setattr__(self, "gateway_keys", gateway_keys)
        object.__setattr__(self, "genesis", tuple(sorted(validate_genesis(self.genesis).items())))
        object.__setattr__(self, "_index", {node: i for i, node in enumerate(ids)})

    @classmethod
    def create(
        cls,
        as_id: int,
        replica_ids: Sequence[int],
        group_key: GroupKey | ThresholdKeySet,
        *,
        f: int | None = None,
        genesis: Mapping[str, int] | Iterable[tuple[str, int]] = (),
        batch_size: int = 64,
        batch_timeout: float = 0.005,
        view_change_timeout: float = 1.0,
        fetch_timeout: float | None = None,
        window: int = 64,
        send_replies: bool = True,
        single_phase: bool = False,
        speculative_certificates: bool = True,
        gateway_keys: Iterable[bytes] = (),
    ) -> ConsensusConfig:
        """Build a configuration; ``f`` defaults to :func:`compute_default_f`.

        A :class:`ThresholdKeySet` is reduced to its public side here.
        """
        if isinstance(group_key, ThresholdKeySet):
            group_key = GroupKey.from_key_set(group_key)
        pairs = genesis.items() if isinstance(genesis, Mapping) else genesis
        return cls(
            as_id=as_id,
            replica_ids=tuple(replica_ids),
            group_key=group_key,
            f=compute_default_f(len(replica_ids)) if f is None else f,
            batch_size=batch_size,
            batch_timeout=batch_timeout,
            view_change_timeout=view_change_timeout,
            fetch_timeout=view_change_timeout / 4 if fetch_timeout is None else fetch_timeout,
            window=window,
            genesis=tuple((str(k), v) for k, v in pairs),
            send_replies=send_replies,
            single_phase=single_phase,
            speculative_certificates=speculative_certificates,
            gateway_keys=tuple(gateway_keys),
        )

    # derived values

    @property
    def n(self) -> int:
        return len(self.replica_ids)

    @property
    def threshold(self) -> int:
        return self.group_key.threshold

    @property
    def view_change_quorum(self) -> int:
        return max(2 * self.f + 1, self.threshold)

    @property
    def is_safe_threshold(self) -> bool:
        return self.threshold >= compute_safe_threshold(self.n, self.f)

    def get_primary_index(self, view: int) -> int:
        """The primary (and collector) of ``view``: replica ``view mod n``."""
        return view % self.n

    def get_primary_id(self, view: int) -> int:
        return self.replica_ids[view % self.n]

    def get_index(self, node_id: int) -> int | None:
        """The replica index of ``node_id``, or None for a non-replica."""
        return self._index.get(node_id)

    def get_public_share(self, index: int) -> bytes:
        return self.group_key.public_shares[index]
