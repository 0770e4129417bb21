"""The gatekeeper committee core: genesis key generation, rotation by resharing, erasure.

Several gatekeeper enclaves (in process) run the protocol through a little stand-in for
the chain's broadcast (the dealings and confirmations are passed around as the host would
relay them from GatekeeperCommittee events).
"""

from __future__ import annotations

from itertools import combinations

import msgspec
import pytest

from sealbridge.core.encoding import decode, encode
from sealbridge.crypto import bls
from sealbridge.crypto.shamir import Share, recover_secret, scalar_to_bytes
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.crypto.threshold_prf import (
    compute_prf_message,
    derive_contract_key_from_signature,
)
from sealbridge.keyservice.committee import (
    CommitteeError,
    CommitteeMember,
    CommitteeState,
    CommitteeStateError,
    Dealing,
    EraInfo,
    EraPhase,
    ReadyConfirmation,
)
from sealbridge.keyservice.threshold import ShareErased, combine_released_key
from sealbridge.tee import errors as tee_errors
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import devnet_policy

PLATFORM, PLATFORM_PUB = ed25519_keypair(b"q" * 32)
GATEKEEPER = bytes([1]) * 32
WORKER = bytes([2]) * 32
NOW = 1_800_000_000
POLICY = devnet_policy(PLATFORM_PUB, [GATEKEEPER, WORKER])
CID = bytes([9]) * 32


def enclave(measurement: bytes = GATEKEEPER) -> EnclaveContext:
    return EnclaveContext(
        program="tests:Gatekeeper",
        measurement=measurement,
        platform_private_key=PLATFORM,
        clock=lambda: float(NOW),
    )


class Committee:
    """n gatekeeper enclaves and what the chain would broadcast between them."""

    def __init__(self, count: int) -> None:
        self.enclaves = [enclave() for _ in range(count)]
        self.members = [
            CommitteeMember(enclave=e, policy=POLICY, measurement=GATEKEEPER) for e in self.enclaves
        ]
        self.cards = {
            e.identity.identity_key: AttestedCard(node=e.identity, quote=e.get_identity_quote())
            for e in self.enclaves
        }
        self.by_id = {m.node_id: m for m in self.members}

    def ids(self, *positions: int) -> list[bytes]:
        return [self.members[p].node_id for p in positions]

    def run_era(self, info: EraInfo) -> dict[bytes, ReadyConfirmation]:
        """Elect, deal, collect, finish with the dealers everyone accepted, activate."""
        cards = [self.cards[m] for m in dict.fromkeys([*info.members, *info.dealers])]
        dealings: list[Dealing] = []
        involved = {*info.members, *info.dealers}
        for node_id in involved:
            dealing = self.by_id[node_id].process_era_elected(info, cards, NOW)
            if dealing is not None:
                dealings.append(dealing)
        for dealing in dealings:
            for member_id in info.members:
                if member_id == dealing.dealer:
                    continue
                self.by_id[member_id].process_dealing(dealing)
        # the chain's agreement: the dealers every member accepted
        accepted = [set(self.by_id[m].get_acceptable_dealers(info.era)) for m in info.members]
        qualified = [d for d in info.dealers if all(d in a for a in accepted)]
        confirmations = {m: self.by_id[m].finish(info.era, qualified) for m in info.members}
        (group_key,) = {c.group_public_key for c in confirmations.values()}
        for node_id in {*info.members, *info.dealers}:
            self.by_id[node_id].process_rotation_ready(info, group_key)
        return confirmations

    def contract_key(self, holders: list[bytes], worker: EnclaveContext) -> bytes:
        releases = [
            self.by_id[h].release_partial(CID, worker.identity, worker.random_bytes)
            for h in holders
        ]
        public = self.by_id[holders[0]].get_active().public
        return combine_released_key(
            releases,
            worker.decrypt_for_identity,
            contract_id=CID,
            worker_id=worker.identity.identity_key,
            group=public,
        )


def genesis(committee: Committee, threshold: int) -> EraInfo:
    ids = [m.node_id for m in committee.members]
    return EraInfo(era=1, members=ids, threshold=threshold, dealers=ids, previous_era=0)


def test_genesis_gives_every_t_subset_the_same_contract_key() -> None:
    committee = Committee(4)
    confirmations = committee.run_era(genesis(committee, 3))
    keys = {c.group_public_key for c in confirmations.values()}
    assert len(keys) == 1
    worker = enclave(WORKER)
    derived = {
        committee.contract_key(list(subset), worker)
        for subset in combinations(committee.ids(0, 1, 2, 3), 3)
    }
    assert len(derived) == 1
    # it is the PRF of the group secret -- reconstructed here only, to show equivalence
    shares = [
        Share(index=h.index, value=bytes(h._secret or b""))  # noqa: SLF001 -- test only
        for h in (m.get_active() for m in committee.members[:3])
    ]
    secret = scalar_to_bytes(recover_secret(shares, 3))
    signature = bls.sign(secret, compute_prf_message(CID))
    assert derived == {derive_contract_key_from_signature(CID, signature)}
    assert all(m.phases[1] is EraPhase.ACTIVE for m in committee.members)


def test_fewer_than_t_partials_give_no_key() -> None:
    committee = Committee(4)
    committee.run_era(genesis(committee, 3))
    with pytest.raises(Exception) as info:  # ThresholdError: not enough partials
        committee.contract_key(committee.ids(0, 1), enclave(WORKER))
    assert "3" in str(info.value)


def test_rotation_to_an_overlapping_set_keeps_every_contract_key_and_erases_old_shares() -> None:
    committee = Committee(6)
    first = EraInfo(
        era=1, members=committee.ids(0, 1, 2, 3), threshold=3, dealers=committee.ids(0, 1, 2, 3)
    )
    committee.run_era(first)
    worker = enclave(WORKER)
    before = committee.contract_key(committee.ids(0, 1, 2), worker)
    old_holders = {m: committee.by_id[m].get_active() for m in committee.ids(0, 1, 2, 3)}
    # members 4 and 5 must learn era 1's public side to follow the rotation
    for newcomer in committee.ids(4, 5):
        committee.by_id[newcomer].learn_public(
            1, first.members, committee.members[0].get_active().public
        )
    second = EraInfo(
        era=2, members=committee.ids(2, 3, 4, 5), threshold=2, dealers=first.members, previous_era=1
    )
    confirmations = committee.run_era(second)
    assert {c.group_public_key for c in confirmations.values()} == {
        old_holders[committee.members[0].node_id].group_public_key
    }
    for subset in combinations(committee.ids(2, 3, 4, 5), 2):
        assert committee.contract_key(list(subset), worker) == before
    # every era-1 share is gone, including those of members who stayed
    for holder in old_holders.values():
        assert holder.is_erased
        with pytest.raises(ShareErased):
            holder.compute_partial(CID)
    for retired in committee.ids(0, 1):
        member = committee.by_id[retired]
        assert member.phases[1] is EraPhase.RETIRED
        with pytest.raises(CommitteeStateError):
            member.get_active()


def test_a_dealer_that_deals_a_bad_share_is_left_out_and_the_rest_agree() -> None:
    committee = Committee(4)
    info = genesis(committee, 3)
    cards = [committee.cards[m] for m in info.members]
    dealings = {m.node_id: m.process_era_elected(info, cards, NOW) for m in committee.members}
    cheat = committee.members[3]
    # the cheat signs a dealing whose share for member 0 is garbage
    honest = dealings[cheat.node_id]
    assert honest is not None
    shares = list(honest.shares)
    shares[0] = b"\x00" * len(shares[0])
    digest = cheat.compute_dealing_digest(1, cheat.node_id, honest.commitments, shares)
    dealings[cheat.node_id] = msgspec.structs.replace(
        honest, shares=shares, signature=committee.enclaves[3].sign_eth_digest(digest)
    )
    complaints = []
    for dealer, dealing in dealings.items():
        assert dealing is not None
        for member in committee.members:
            if member.node_id != dealer:
                complaint = member.process_dealing(dealing)
                if complaint is not None:
                    complaints.append((member.node_id, dealer))
    assert complaints == [(committee.members[0].node_id, cheat.node_id)]
    qualified = committee.ids(0, 1, 2)
    confirmations = [m.finish(1, qualified) for m in committee.members]
    assert len({c.group_public_key for c in confirmations}) == 1
    for member in committee.members:
        member.process_rotation_ready(info, confirmations[0].group_public_key)
    worker = enclave(WORKER)
    assert committee.contract_key(committee.ids(0, 1, 2), worker) == committee.contract_key(
        committee.ids(1, 2, 3), worker
    )


def test_forged_dealings_and_unattested_members_are_refused() -> None:
    committee = Committee(3)
    info = genesis(committee, 2)
    cards = [committee.cards[m] for m in info.members]
    # a card from an enclave with another measurement (a worker) is not a gatekeeper
    impostor = enclave(WORKER)
    bad_cards = cards[:2] + [
        AttestedCard(node=impostor.identity, quote=impostor.get_identity_quote())
    ]
    bad_info = EraInfo(
        era=1,
        members=[*info.members[:2], impostor.identity.identity_key],
        threshold=2,
        dealers=[*info.members[:2], impostor.identity.identity_key],
    )
    with pytest.raises(CommitteeError, match="another measurement"):
        committee.members[0].process_era_elected(bad_info, bad_cards, NOW)
    # a card whose keys the quote does not bind
    swapped = AttestedCard(
        node=committee.enclaves[1].identity, quote=committee.enclaves[2].get_identity_quote()
    )

    with pytest.raises(tee_errors.AttestationError):
        committee.members[0].process_era_elected(info, [cards[0], swapped, cards[2]], NOW)
    assert 1 not in committee.members[0].phases  # nothing was joined
    dealings = [m.process_era_elected(info, cards, NOW) for m in committee.members]
    first = dealings[1]
    assert first is not None
    forged = msgspec.structs.replace(first, signature=b"\x00" * 65)
    with pytest.raises(CommitteeError, match="signature"):
        committee.members[0].process_dealing(forged)
    # signed by another enclave than the dealer's card attests
    other = committee.enclaves[2].sign_eth_digest(
        committee.members[1].compute_dealing_digest(
            1, first.dealer, first.commitments, first.shares
        )
    )
    with pytest.raises(CommitteeError, match="not signed by the dealer"):
        committee.members[0].process_dealing(msgspec.structs.replace(first, signature=other))
    # altered shares no longer match the signature
    altered = msgspec.structs.replace(first, shares=list(reversed(first.shares)))
    with pytest.raises(CommitteeError, match="not signed by the dealer"):
        committee.members[0].process_dealing(altered)
    with pytest.raises(CommitteeStateError):
        committee.members[0].process_era_elected(info, cards, NOW)  # twice


def test_a_rotation_that_would_change_the_key_is_refused() -> None:
    committee = Committee(3)
    first = genesis(committee, 2)
    committee.run_era(first)
    # a "rotation" whose dealers are not the previous members
    wrong = EraInfo(
        era=2, members=first.members, threshold=2, dealers=first.members[:2], previous_era=1
    )
    cards = [committee.cards[m] for m in first.members]
    with pytest.raises(CommitteeError, match="previous era's members"):
        committee.members[0].process_era_elected(wrong, cards, NOW)


def test_a_failed_rotation_leaves_the_active_era_serving() -> None:
    committee = Committee(3)
    first = genesis(committee, 2)
    committee.run_era(first)
    worker = enclave(WORKER)
    key = committee.contract_key(committee.ids(0, 1), worker)
    second = EraInfo(
        era=2, members=first.members, threshold=2, dealers=first.members, previous_era=1
    )
    cards = [committee.cards[m] for m in first.members]
    for member in committee.members:
        member.process_era_elected(second, cards, NOW)
        member.process_era_failed(2)  # the rotation timed out before anyone finished
        assert member.phases[2] is EraPhase.RETIRED
    assert committee.contract_key(committee.ids(1, 2), worker) == key


# --- fresh eras: a new key, and the old share kept for its handover --------------------------


def fresh_rotation(committee: Committee) -> tuple[EraInfo, EraInfo, bytes]:
    """Era 1 among members 0..3 (t = 3), then a fresh era 2 among 2, 3, 4 (t = 2): 0 and 1
    leave, 4 joins. Every era-1 member is told of era 2's RotationReady, as its host is
    (the leavers by the driver's follow-only track). Returns both eras and the old key."""
    first = EraInfo(
        era=1, members=committee.ids(0, 1, 2, 3), threshold=3, dealers=committee.ids(0, 1, 2, 3)
    )
    committee.run_era(first)
    old_key = committee.members[0].get_active().group_public_key
    members = committee.ids(2, 3, 4)
    second = EraInfo(
        era=2, members=members, threshold=2, dealers=members, previous_era=1, fresh=True
    )
    confirmations = committee.run_era(second)
    (new_key,) = {c.group_public_key for c in confirmations.values()}
    for leaver in committee.ids(0, 1):
        committee.by_id[leaver].process_rotation_ready(second, new_key)
    return first, second, old_key


def test_a_fresh_era_generates_a_new_key_and_keeps_the_old_shares_for_the_handover() -> None:
    committee = Committee(5)
    _, second, old_key = fresh_rotation(committee)
    new_key = committee.members[4].get_active().group_public_key
    assert new_key != old_key  # a new secret, not a reshare
    assert all(committee.members[p].get_active().group_public_key == new_key for p in (2, 3))
    # a t-subset of the new era signs under the new key only
    message = b"sealbridge/test/after the fresh era"
    partials = [committee.members[p].get_active().sign_message(message) for p in (2, 4)]
    assert bls.verify(new_key, message, bls.combine(partials, 2))
    assert not bls.verify(old_key, message, bls.combine(partials, 2))
    # every era-1 share survives the activation, in HANDOVER, for the new key only
    for position in (0, 1, 2, 3):
        member = committee.members[position]
        assert member.phases[1] is EraPhase.HANDOVER and member.current_era == 2
        kept = member.get_handover(new_key)
        assert kept.era == 1 and kept.next_era == 2 and not kept.holder.is_erased
        assert kept.holder.group_public_key == old_key
    for leaver in (0, 1):
        with pytest.raises(CommitteeStateError):
            committee.members[leaver].get_active()  # it serves nothing else
    assert committee.members[4].handover == {}  # the newcomer had no era-1 share
    # three old shares (era 1's threshold) sign the handover under the old key
    handover = b"sealbridge/test/rotate the escrow to the new key"
    old_partials = [
        committee.members[p].get_handover(new_key).holder.sign_message(handover) for p in (0, 1, 3)
    ]
    assert bls.verify(old_key, handover, bls.combine(old_partials, 3))
    # the kept share survives sealing
    restored = CommitteeMember(enclave=committee.enclaves[0], policy=POLICY, measurement=GATEKEEPER)
    restored.restore_state(decode(encode(committee.members[0].export_state()), CommitteeState))
    assert restored.phases[1] is EraPhase.HANDOVER
    assert restored.get_handover(new_key).holder.sign_message(handover) == old_partials[0]
    assert second.is_key_generation


def test_a_handover_to_any_other_key_is_refused_and_the_share_is_erased_after_it() -> None:
    committee = Committee(5)
    _, _, old_key = fresh_rotation(committee)
    new_key = committee.members[2].get_active().group_public_key
    member = committee.members[0]
    for other in (old_key, bls.public_key(bls.keygen()[0]), b""):
        with pytest.raises(CommitteeError, match="not the group key of a fresh era"):
            member.get_handover(other)
    kept = member.get_handover(new_key).holder
    # the new key is installed wherever the old one was trusted: the share goes
    assert member.erase_handover(2) is False  # no era-2 share is kept for a handover
    assert not kept.is_erased
    assert member.erase_handover(1) is True
    assert kept.is_erased and member.phases[1] is EraPhase.RETIRED
    with pytest.raises(ShareErased):
        kept.sign_message(b"anything")
    with pytest.raises(CommitteeError, match="not the group key of a fresh era"):
        member.get_handover(new_key)
    assert member.export_state().handover == []


def test_a_reshare_still_erases_and_a_fresh_era_must_change_the_key() -> None:
    committee = Committee(3)
    first = genesis(committee, 2)
    committee.run_era(first)
    old_key = committee.members[0].get_active().group_public_key
    old_holders = [m.get_active() for m in committee.members]
    # a fresh era announced (by a lying host) with the old key: refused, nothing changes
    fake = EraInfo(
        era=2, members=first.members, threshold=2, dealers=first.members, previous_era=1, fresh=True
    )
    for member in committee.members:
        with pytest.raises(CommitteeError, match="new group key"):
            member.process_rotation_ready(fake, old_key)
        assert member.current_era == 1 and member.handover == {}
    assert not any(h.is_erased for h in old_holders)
    # a fresh era's dealers are its members
    wrong = msgspec.structs.replace(fake, dealers=first.members[:2])
    cards = [committee.cards[m] for m in first.members]
    with pytest.raises(CommitteeError, match="dealers are the members"):
        committee.members[0].process_era_elected(wrong, cards, NOW)
    # a reshare still erases every old share, those of the members who stay included
    reshare = msgspec.structs.replace(fake, fresh=False)
    committee.run_era(reshare)
    assert all(h.is_erased for h in old_holders)
    assert all(m.handover == {} and m.phases[1] is EraPhase.RETIRED for m in committee.members)
    assert committee.members[0].get_active().group_public_key == old_key
    # elected as a reshare, announced as fresh (to keep the era-2 share alive): refused
    third = EraInfo(
        era=3, members=first.members, threshold=2, dealers=first.members, previous_era=2
    )
    dealings = [m.process_era_elected(third, cards, NOW) for m in committee.members]
    for dealing in dealings:
        assert dealing is not None
        for member in committee.members:
            if member.node_id != dealing.dealer:
                assert member.process_dealing(dealing) is None
    member = committee.members[0]
    confirmation = member.finish(3, first.members)
    assert confirmation.group_public_key == old_key
    with pytest.raises(CommitteeError, match="not elected as the kind"):
        member.process_rotation_ready(msgspec.structs.replace(third, fresh=True), old_key)
    assert member.current_era == 2 and member.phases[3] is EraPhase.READY
    member.process_rotation_ready(third, old_key)
    assert member.current_era == 3 and member.handover == {}
