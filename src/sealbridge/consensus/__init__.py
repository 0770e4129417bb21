"""BFT consensus of an autonomous system: a linear, collector-based protocol (SBFT style).

``n`` replicas, up to ``f`` of them Byzantine, order client requests into batches and
apply them to a replicated :class:`Ledger`; every decision carries a threshold-BLS
certificate of the group key that anyone can check. The replica is a sans-I/O core
(:class:`~sealbridge.core.effects.ProtocolNode`); the simulator and the network driver
run it. See ``docs/consensus.md``.

Modules: :mod:`.replica` (the protocol), :mod:`.viewchange` (view-change evidence and
re-proposals), :mod:`.certs` (what is signed; share pools), :mod:`.messages`,
:mod:`.ledger` (the state machine), :mod:`.config`, :mod:`.cluster` (trusted dealing),
:mod:`.errors`.
"""

from __future__ import annotations

from sealbridge.consensus.certs import VerifyCache, is_valid_commit_certificate
from sealbridge.consensus.cluster import build_cluster, deal_group_key
from sealbridge.consensus.config import (
    ConsensusConfig,
    GroupKey,
    compute_default_f,
    compute_max_f,
    compute_safe_threshold,
)
from sealbridge.consensus.ledger import (
    Ledger,
    Lock,
    Operation,
    Outcome,
    OutcomeCode,
    Pay,
    Release,
    Transfer,
    Unlock,
)
from sealbridge.consensus.messages import ConsensusMessage, Reply, Request, decode_message
from sealbridge.consensus.replica import Replica, ReplicaStats, Status

__all__ = [
    "ConsensusConfig",
    "ConsensusMessage",
    "GroupKey",
    "Ledger",
    "Lock",
    "Operation",
    "Outcome",
    "OutcomeCode",
    "Pay",
    "Release",
    "Replica",
    "ReplicaStats",
    "Reply",
    "Request",
    "Status",
    "Transfer",
    "Unlock",
    "VerifyCache",
    "build_cluster",
    "compute_default_f",
    "compute_max_f",
    "compute_safe_threshold",
    "deal_group_key",
    "decode_message",
    "is_valid_commit_certificate",
]
