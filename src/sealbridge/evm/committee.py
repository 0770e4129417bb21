"""Typed wrapper of the GatekeeperCommittee contract and the digests it verifies.

Theory of operation: the gatekeeper committee holds the root key as Shamir shares, one
elected set of gatekeepers per era. The contract is the committee's broadcast channel
and referee (see ``contracts/GatekeeperCommittee.vy`` and docs/committee.md):

* ``elect`` (the admin, standing in for PODG's stake/governance election) opens an era in
  phase ELECTED with a deadline ``rotation_timeout`` blocks away. With no ACTIVE era it
  is the genesis key generation (dealers = members); otherwise a resharing from the
  ACTIVE era (dealers = its members, who must use at least its threshold of dealings).
  ``elect_fresh`` (gateway committees only, once an era is ACTIVE) opens a *fresh* era
  instead: a new key generation among the new members (dealers = members, as at
  genesis) whose group key must differ from the ACTIVE era's; its ``previous_era`` is
  the ACTIVE era, retired when the fresh one activates.
* each dealer posts one dealing (``DealingPosted``: commitments in clear, shares
  encrypted to each member, opaque to the chain), signed by its enclave;
* each member checks the dealings off chain and confirms the group public key and the
  qualified dealer set it used (``ReadyConfirmed``). All must agree; a resharing must
  keep the group key, a fresh era must change it. The last confirmation activates the
  era (``RotationReady``) and retires the previous one (``EraRetired``: its members
  erase their shares; after a fresh era, once they have signed the key's handover).
* after the deadline anyone may ``restart``: the era FAILS, the unresponsive are
  penalized (``GatekeeperPenalized``) and a retry era without the members that did not
  confirm is opened (``RotationRestarted``; ``new_era`` 0 when too few remain).

Digests (signed raw, as every chain message; see :mod:`sealbridge.chain.abi`)::

    dealing = keccak(abi(address, uint256, bytes32, uint256, bytes32, bytes32, bytes32)(
                committee, chain_id, DEALING_TAG, era, dealer_id,
                keccak(abi((bytes[]))(commitments)), keccak(abi((bytes[]))(shares))))
    ready   = keccak(abi(address, uint256, bytes32, uint256, bytes32, bytes32, bytes32[])(
                committee, chain_id, READY_TAG, era, member_id,
                keccak(group_public_key), qualified))

``abi((bytes[]))(x)`` is the ABI encoding of the one-element tuple holding the array,
which is what Vyper's ``abi_encode(x)`` produces. The digest functions and tags live in
:mod:`sealbridge.chain.abi` (the enclave side imports them from there) and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi.abi import encode as abi_encode

from sealbridge.chain.abi import (
    DEALING_TAG,
    READY_TAG,
    AbiCodec,
    Role,
    checksum,
    compute_dealing_digest,
    compute_ready_digest,
)
from sealbridge.chain.eras import CommitteePhase, EraRecord
from sealbridge.chain.errors import ChainConfigError
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

CONTRACT_NAME = "GatekeeperCommittee"
MAX_MEMBERS = 32
COMMITMENT_SIZE = 48  # a compressed BLS12-381 G1 point
GROUP_KEY_SIZE = 48
MAX_SHARE = 256  # one encrypted share
SIGNATURE_SIZE = 65
PENALTY_NO_DEALING = "no dealing"
PENALTY_NO_CONFIRMATION = "no confirmation"


def _b32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ChainConfigError(f"{what} must be 32 bytes")
    return bytes(value)


def _bytes_list(values: Sequence[bytes], limit: int, what: str) -> list[bytes]:
    if len(values) > MAX_MEMBERS:
        raise ChainConfigError(f"at most {MAX_MEMBERS} {what}s")
    out: list[bytes] = []
    for value in values:
        if not isinstance(value, bytes | bytearray):
            raise ChainConfigError(f"each {what} must be bytes")
        if len(value) > limit:
            raise ChainConfigError(f"a {what} is {len(value)} bytes; the contract accepts {limit}")
        out.append(bytes(value))
    return out


def _ids(values: Sequence[bytes], what: str) -> list[bytes]:
    if len(values) > MAX_MEMBERS:
        raise ChainConfigError(f"at most {MAX_MEMBERS} {what}")
    return [_b32(v, what) for v in values]


def compute_array_hash(items: Sequence[bytes]) -> bytes:
    """Keccak of the ABI encoding of ``(bytes[])``: Vyper's ``keccak256(abi_encode(a))``."""
    return keccak(abi_encode(["bytes[]"], [[bytes(i) for i in items]]))


class GatekeeperCommittee(BoundContract):
    """The GatekeeperCommittee contract bound to an adapter (methods as in
    :mod:`sealbridge.evm.management`: arguments first, the sender's key last)."""

    name = CONTRACT_NAME

    # ------------------------------------------------------------------ digests

    def compute_dealing_digest(
        self, era: int, dealer_id: bytes, commitments: Sequence[bytes], shares: Sequence[bytes]
    ) -> bytes:
        return compute_dealing_digest(
            committee=self.address,
            chain_id=self.adapter.chain_id,
            era=era,
            dealer_id=dealer_id,
            commitments=commitments,
            shares=shares,
        )

    def compute_ready_digest(
        self, era: int, member_id: bytes, group_public_key: bytes, qualified: Sequence[bytes]
    ) -> bytes:
        return compute_ready_digest(
            committee=self.address,
            chain_id=self.adapter.chain_id,
            era=era,
            member_id=member_id,
            group_public_key=group_public_key,
            qualified=qualified,
        )

    # ------------------------------------------------------------------ transactions

    def elect(self, members: Sequence[bytes], threshold: int, sender_key: bytes) -> TxReceipt:
        """Admin only: open the next era (genesis or resharing) with these members."""
        return self._transact("elect", [_ids(members, "members"), threshold], sender_key)

    def elect_fresh(self, members: Sequence[bytes], threshold: int, sender_key: bytes) -> TxReceipt:
        """Admin only, gateway committees only: open a fresh era (a new key generation
        among ``members``) that replaces the ACTIVE era's key."""
        return self._transact("elect_fresh", [_ids(members, "members"), threshold], sender_key)

    def post_dealing(
        self,
        era: int,
        dealer_id: bytes,
        commitments: Sequence[bytes],
        shares: Sequence[bytes],
        signature: bytes,
        sender_key: bytes,
    ) -> TxReceipt:
        """Broadcast a dealing signed by the dealer's enclave (any account may relay)."""
        args = [
            era,
            _b32(dealer_id, "dealer_id"),
            _bytes_list(commitments, COMMITMENT_SIZE, "commitment"),
            _bytes_list(shares, MAX_SHARE, "share"),
            _bytes_list([signature], SIGNATURE_SIZE, "signature")[0],
        ]
        return self._transact("post_dealing", args, sender_key)

    def confirm_ready(
        self,
        era: int,
        member_id: bytes,
        group_public_key: bytes,
        qualified: Sequence[bytes],
        signature: bytes,
        sender_key: bytes,
    ) -> TxReceipt:
        """A member's enclave-signed confirmation; the last one activates the era."""
        args = [
            era,
            _b32(member_id, "member_id"),
            _bytes_list([group_public_key], GROUP_KEY_SIZE, "group public key")[0],
            _ids(qualified, "qualified dealers"),
            _bytes_list([signature], SIGNATURE_SIZE, "signature")[0],
        ]
        # A fixed budget, not an estimate: which confirmation comes last (and activates the
        # era, the dearest case) is only known when it is mined.
        gas = 350_000 + 15_000 * MAX_MEMBERS
        return self._transact("confirm_ready", args, sender_key, gas=gas)

    def restart(self, era: int, sender_key: bytes) -> TxReceipt:
        """After the deadline of a pending era: fail it, penalize, open the retry era."""
        return self._transact("restart", [era], sender_key, gas=8_000_000)

    # ------------------------------------------------------------------ views

    def get_era(self, era: int) -> EraRecord | None:
        """The era's record, or None if there is no such era."""
        (raw,) = self._call("get_era", era)
        if int(raw[5]) == 0:
            return None
        return EraRecord(
            era=era,
            members=[bytes(m) for m in raw[0]],
            threshold=int(raw[1]),
            dealers=[bytes(d) for d in raw[2]],
            dealer_threshold=int(raw[3]),
            group_public_key=bytes(raw[4]),
            phase=CommitteePhase(int(raw[5])),
            elected_at=int(raw[6]),
            deadline=int(raw[7]),
            previous_era=int(raw[8]),
            dealing_count=int(raw[9]),
            confirmation_count=int(raw[10]),
            fresh=bool(raw[11]),
        )

    def get_members(self, era: int) -> list[bytes]:
        return [bytes(m) for m in self._call("get_members", era)[0]]

    def get_dealers(self, era: int) -> list[bytes]:
        return [bytes(d) for d in self._call("get_dealers", era)[0]]

    def get_member_index(self, era: int, node_id: bytes) -> int:
        """1-based share index of a member (0: not a member of the era)."""
        return int(self._call("get_member_index", era, node_id)[0])

    def get_dealer_index(self, era: int, node_id: bytes) -> int:
        return int(self._call("get_dealer_index", era, node_id)[0])

    def has_dealt(self, era: int, dealer_id: bytes) -> bool:
        return bool(self._call("has_dealt", era, dealer_id)[0])

    def get_dealing_hash(self, era: int, dealer_id: bytes) -> bytes:
        """The dealing digest the dealer signed (32 zero bytes: no dealing)."""
        return bytes(self._call("get_dealing_hash", era, dealer_id)[0])

    def has_confirmed(self, era: int, member_id: bytes) -> bool:
        return bool(self._call("has_confirmed", era, member_id)[0])

    def get_penalties(self, node_id: bytes) -> int:
        return int(self._call("get_penalties", node_id)[0])

    def get_current_era(self) -> int:
        """The ACTIVE era (0: none yet)."""
        return int(self._call("current_era")[0])

    def get_pending_era(self) -> int:
        """The era being keyed (0: none)."""
        return int(self._call("pending_era")[0])

    def get_era_count(self) -> int:
        return int(self._call("era_count")[0])

    def get_rotation_timeout(self) -> int:
        return int(self._call("rotation_timeout")[0])

    def get_node_registry(self) -> str:
        return checksum(self._call("node_registry")[0])

    def get_admin(self) -> str:
        return checksum(self._call("admin")[0])

    def get_member_role(self) -> int:
        return int(self._call("member_role")[0])


def deploy_committee(
    adapter: ChainAdapter,
    admin_key: bytes,
    node_registry_address: str,
    rotation_timeout: int,
    member_role: Role = Role.GATEKEEPER,
) -> str:
    """Compile and deploy a GatekeeperCommittee; ``admin_key`` pays and becomes admin.
    ``rotation_timeout``: blocks an era has, from its election, to become ready;
    ``member_role``: the NodeRegistry role its members hold (gatekeepers, or gateways
    for a gateway committee)."""
    if rotation_timeout < 1:
        raise ChainConfigError("rotation_timeout must be at least one block")
    if member_role not in (Role.GATEKEEPER, Role.GATEWAY):
        raise ChainConfigError("a committee's members are gatekeepers or gateways")
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    ctor = AbiCodec(compiled.abi).encode_constructor(
        [checksum(node_registry_address), rotation_timeout, int(member_role)]
    )
    return adapter.deploy(admin_key, compiled.bytecode, ctor)


__all__ = [
    "COMMITMENT_SIZE",
    "DEALING_TAG",
    "CommitteePhase",
    "EraRecord",
    "GROUP_KEY_SIZE",
    "GatekeeperCommittee",
    "MAX_MEMBERS",
    "MAX_SHARE",
    "PENALTY_NO_CONFIRMATION",
    "PENALTY_NO_DEALING",
    "READY_TAG",
    "compute_array_hash",
    "compute_dealing_digest",
    "compute_ready_digest",
    "deploy_committee",
]
