"""What the GatekeeperCommittee contract says of an era, as plain data.

The contract's wrapper (:mod:`sealbridge.evm.committee`) reads these records; the
committee host core (:mod:`sealbridge.keyservice.committee_host`) decides on them.
Both sides import them from here, below any chain I/O.
"""

from __future__ import annotations

from enum import IntEnum

from sealbridge.chain.errors import ChainConfigError
from sealbridge.core.encoding import Message

__all__ = ["CommitteePhase", "EraRecord"]


class CommitteePhase(IntEnum):
    """Phase of an era on chain (0 means: no such era)."""

    ELECTED = 1
    ACTIVE = 2
    FAILED = 3
    RETIRED = 4


class EraRecord(Message, frozen=True):
    """GatekeeperCommittee.get_era.

    ``dealer_threshold`` is 0 for a genesis era (then ``threshold`` dealings are needed)
    and the previous era's threshold for a resharing. ``group_public_key`` is empty until
    the era is ACTIVE. ``previous_era`` is the era it follows (0: genesis): for a
    resharing the era whose members deal, for a ``fresh`` era (a new key generation by
    its members, ``elect_fresh``) the era whose key it replaces."""

    era: int
    members: list[bytes]
    threshold: int
    dealers: list[bytes]
    dealer_threshold: int
    group_public_key: bytes
    phase: CommitteePhase
    elected_at: int
    deadline: int
    previous_era: int
    dealing_count: int
    confirmation_count: int
    fresh: bool = False

    @property
    def is_genesis(self) -> bool:
        return self.previous_era == 0

    @property
    def is_resharing(self) -> bool:
        return self.previous_era != 0 and not self.fresh

    @property
    def required_dealings(self) -> int:
        """How many dealings a confirmation's qualified set must name at least."""
        return self.dealer_threshold or self.threshold

    def get_member_index(self, node_id: bytes) -> int:
        """1-based share index of ``node_id`` in this era (ChainConfigError if absent)."""
        try:
            return self.members.index(node_id) + 1
        except ValueError:
            raise ChainConfigError("node is not a member of the era") from None

    def get_dealer_index(self, node_id: bytes) -> int:
        """1-based index of ``node_id`` among the dealers (its old share index)."""
        try:
            return self.dealers.index(node_id) + 1
        except ValueError:
            raise ChainConfigError("node is not a dealer of the era") from None
