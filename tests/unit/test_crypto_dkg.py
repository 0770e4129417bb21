"""Distributed key generation and resharing: agreement, equivalence, complaints, rotation."""

from __future__ import annotations

import hashlib
import itertools

import blspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError, EncodingError
from sealbridge.crypto import bls
from sealbridge.crypto.bls import KeyShare
from sealbridge.crypto.dkg import (
    Complaint,
    DealingCommitment,
    DkgParticipant,
    DkgState,
    DkgStateError,
    GroupPublicKeys,
    KeyShareResult,
    ReshareParticipant,
    compute_dealing,
    compute_group_commitments,
    compute_public_share,
    compute_qualified_set,
    compute_reshare_dealing,
    is_complaint_upheld,
    is_valid_share,
)
from sealbridge.crypto.shamir import (
    BLS_SCALAR_ORDER,
    Share,
    ThresholdError,
    recover_secret,
    scalar_from_bytes,
    scalar_to_bytes,
)
from sealbridge.crypto.threshold_prf import (
    combine_contract_key,
    combine_contract_signature,
    compute_partial,
    compute_prf_message,
    derive_contract_key_from_signature,
)
from sealbridge.keyservice.threshold import ShareErased, ShareHolder

CONTRACTS = [bytes([0xC0 + k]) * 32 for k in range(2)]


def _seed(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def run_dkg(participants: list[int], threshold: int, seed: object = 0) -> dict[int, KeyShareResult]:
    """An honest run: everyone deals to everyone, every dealer qualifies."""
    nodes = {i: DkgParticipant(i, threshold, participants) for i in participants}
    dealings = {i: nodes[i].start(_seed("dkg", seed, i)) for i in participants}
    for dealer, (commitment, shares) in dealings.items():
        for j, share in shares.items():
            assert nodes[j].on_dealing(dealer, commitment, share) is None
    return {i: nodes[i].finish(set(participants)) for i in participants}


def run_reshare(
    old: dict[int, KeyShareResult],
    qualified: list[int],
    new_participants: list[int],
    new_threshold: int,
    seed: object = 0,
) -> dict[int, KeyShareResult]:
    public = next(iter(old.values())).public
    nodes = {
        j: ReshareParticipant(j, new_threshold, new_participants, public) for j in new_participants
    }
    for i in qualified:
        commitment, shares = compute_reshare_dealing(
            old[i].key_share, new_threshold, new_participants, _seed("reshare", seed, i)
        )
        for j, share in shares.items():
            assert nodes[j].on_dealing(i, commitment, share) is None
    return {j: nodes[j].finish(set(qualified)) for j in new_participants}


def reference_key(results: dict[int, KeyShareResult], contract_id: bytes) -> bytes:
    """The key from the group secret -- reconstructed here, in the test, and nowhere else."""
    threshold = next(iter(results.values())).threshold
    shares = [Share(index=r.index, value=r.secret) for r in results.values()]
    secret = scalar_to_bytes(recover_secret(shares, threshold))
    assert bls.public_key(secret) == next(iter(results.values())).group_public_key
    signature = bls.sign(secret, compute_prf_message(contract_id))
    return derive_contract_key_from_signature(contract_id, signature)


def key_from(results: dict[int, KeyShareResult], holders: tuple[int, ...], cid: bytes) -> bytes:
    public = results[holders[0]].public
    partials = [compute_partial(results[i].key_share, cid) for i in holders]
    return combine_contract_key(
        cid,
        partials,
        threshold=public.threshold,
        group_public_key=public.group_public_key,
        public_shares=public.public_shares,
    )


def _cases() -> list[tuple[int, int]]:
    return [(n, t) for n in (4, 7) for t in sorted({1, n // 2 + 1, n})]


@pytest.fixture(scope="module")
def dkg_4_of_7() -> dict[int, KeyShareResult]:
    return run_dkg(list(range(1, 8)), 4, seed="fixture")


# --- key generation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "t"), _cases())
def test_every_t_subset_gives_the_same_verified_key(n: int, t: int) -> None:
    participants = list(range(1, n + 1))
    results = run_dkg(participants, t, seed=(n, t))
    first = results[1]
    assert all(r.group_public_key == first.group_public_key for r in results.values())
    assert all(r.public_shares == first.public_shares for r in results.values())
    for r in results.values():
        assert bls.public_key(r.secret) == first.public_shares[r.index]
    group_pk = blspy.G1Element.from_bytes(first.group_public_key)
    for cid in CONTRACTS:
        message = compute_prf_message(cid)
        partials = {i: compute_partial(results[i].key_share, cid) for i in participants}
        expected = reference_key(results, cid)
        signatures = set()
        for subset in itertools.combinations(participants, t):
            signature = combine_contract_signature(
                cid,
                [partials[i] for i in subset],
                threshold=t,
                group_public_key=first.group_public_key,
                public_shares=first.public_shares,
            )
            signatures.add(signature)
            assert derive_contract_key_from_signature(cid, signature) == expected
        assert len(signatures) == 1  # unique signature
        (signature,) = signatures
        assert blspy.PopSchemeMPL.verify(group_pk, message, blspy.G2Element.from_bytes(signature))
    assert key_from(results, tuple(participants[:t]), CONTRACTS[0]) != key_from(
        results, tuple(participants[:t]), CONTRACTS[1]
    )


@pytest.mark.parametrize(("n", "t"), [(4, 3), (7, 4), (7, 7)])
def test_t_minus_one_partials_do_not_suffice(n: int, t: int) -> None:
    results = run_dkg(list(range(1, n + 1)), t, seed=("short", n))
    public = results[1].public
    cid = CONTRACTS[0]
    partials = [compute_partial(results[i].key_share, cid) for i in range(1, t)]
    with pytest.raises(ThresholdError):
        combine_contract_key(
            cid,
            partials,
            threshold=t,
            group_public_key=public.group_public_key,
            public_shares=public.public_shares,
        )
    # Interpolating t-1 partials as though the threshold were t-1 gives a wrong signature.
    forged = bls.combine(partials, t - 1)
    assert not bls.verify(public.group_public_key, compute_prf_message(cid), forged)
    with pytest.raises(ThresholdError):
        recover_secret([Share(index=r.index, value=r.secret) for r in results.values()][: t - 1], t)


def test_non_contiguous_indices() -> None:
    participants = [3, 10, 11, 42, 1000]
    results = run_dkg(participants, 3, seed="sparse")
    assert set(results[3].public_shares) == set(participants)
    for subset in itertools.combinations(participants, 3):
        assert key_from(results, subset, CONTRACTS[0]) == reference_key(results, CONTRACTS[0])


def test_results_round_trip_canonically(dkg_4_of_7: dict[int, KeyShareResult]) -> None:
    result = dkg_4_of_7[2]
    assert decode(encode(result), KeyShareResult) == result
    assert decode(encode(result.public), GroupPublicKeys) == result.public
    assert GroupPublicKeys.from_dict(4, result.group_public_key, result.public_shares) == (
        result.public
    )
    # One canonical form: shares sorted by index; anything else does not decode.
    reordered = {
        "threshold": 4,
        "group_public_key": result.group_public_key,
        "shares": [{"index": s.index, "public_key": s.public_key} for s in result.shares[::-1]],
    }
    with pytest.raises(EncodingError):
        decode(encode(reordered), GroupPublicKeys)


# --- dealings ----------------------------------------------------------------------------------


def test_dealing_is_deterministic_and_verifiable() -> None:
    recipients = [1, 2, 3, 4, 5]
    commitment, shares = compute_dealing(2, 3, recipients, b"r" * 32)
    assert compute_dealing(2, 3, recipients, b"r" * 32) == (commitment, shares)
    assert compute_dealing(2, 3, recipients, b"s" * 32) != (commitment, shares)
    assert len(commitment.commitments) == 3
    assert all(len(c) == 48 for c in commitment.commitments)
    for j, share in shares.items():
        assert len(share) == 32
        assert is_valid_share(commitment, j, share)
        assert not is_valid_share(commitment, j % 5 + 1, share)
    bumped = scalar_to_bytes((scalar_from_bytes(shares[1]) + 1) % BLS_SCALAR_ORDER)
    assert not is_valid_share(commitment, 1, bumped)
    assert not is_valid_share(commitment, 1, b"\xff" * 32)  # not reduced
    assert not is_valid_share(commitment, 1, b"short")
    broken = DealingCommitment(dealer=2, threshold=3, commitments=[b"\x00" * 48] * 3)
    assert not is_valid_share(broken, 1, shares[1])
    # With a secret, the constant term commits to it.
    commitment, shares = compute_dealing(1, 2, [1, 2, 3], b"r" * 32, secret=12345)
    assert commitment.commitments[0] == bls.public_key(scalar_to_bytes(12345))
    assert recover_secret([Share(index=j, value=v) for j, v in shares.items()], 2) == 12345


def test_dealing_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        compute_dealing(1, 4, [1, 2, 3], b"r" * 32)  # threshold above the recipients
    with pytest.raises(ConfigError):
        compute_dealing(1, 2, [1, 1, 2], b"r" * 32)  # duplicate recipient
    with pytest.raises(ConfigError):
        compute_dealing(0, 2, [1, 2], b"r" * 32)
    with pytest.raises(ConfigError):
        compute_dealing(1, 2, [1, 2], b"short")
    with pytest.raises(ConfigError):
        compute_dealing(1, 2, [1, 2], b"r" * 32, secret=BLS_SCALAR_ORDER)


def test_public_share_from_commitments_alone() -> None:
    dealings = [compute_dealing(i, 2, [1, 2, 3], _seed("pub", i)) for i in (1, 2, 3)]
    commitments = [c for c, _ in dealings]
    group = compute_group_commitments(commitments)
    assert len(group) == 2
    for j in (1, 2, 3):
        share = sum(scalar_from_bytes(s[j]) for _, s in dealings) % BLS_SCALAR_ORDER
        assert compute_public_share(commitments, j) == bls.public_key(scalar_to_bytes(share))


# --- complaints --------------------------------------------------------------------------------


def _start_all(
    participants: list[int], threshold: int, seed: object
) -> tuple[dict[int, DkgParticipant], dict[int, tuple[DealingCommitment, dict[int, bytes]]]]:
    nodes = {i: DkgParticipant(i, threshold, participants) for i in participants}
    return nodes, {i: nodes[i].start(_seed(seed, i)) for i in participants}


def test_bad_share_gives_a_complaint_and_the_rest_agree() -> None:
    participants = [1, 2, 3, 4, 5]
    nodes, dealings = _start_all(participants, 3, "cheat")
    cheater, victim = 4, 2
    complaints: list[Complaint] = []
    for dealer, (commitment, shares) in dealings.items():
        for j, share in shares.items():
            if (dealer, j) == (cheater, victim):
                share = scalar_to_bytes((scalar_from_bytes(share) + 7) % BLS_SCALAR_ORDER)
            complaint = nodes[j].on_dealing(dealer, commitment, share)
            if complaint is not None:
                complaints.append(complaint)
    assert [(c.complainer, c.dealer) for c in complaints] == [(victim, cheater)]
    assert "does not match" in complaints[0].reason
    assert nodes[victim].complaints == {cheater: complaints[0]}
    assert cheater not in nodes[victim].accepted_dealers
    # The cheater does not reveal a valid share: the complaint stands.
    assert is_complaint_upheld(complaints[0], dealings[cheater][0], None)
    qualified = compute_qualified_set(participants, complaints, 3)
    assert qualified == {1, 2, 3, 5}
    # A participant cannot finish with a dealer it has no valid share from; state unchanged.
    with pytest.raises(DkgStateError):
        nodes[victim].finish(set(participants))
    assert nodes[victim].state is DkgState.DEALT
    results = {i: nodes[i].finish(qualified) for i in participants}
    assert len({r.group_public_key for r in results.values()}) == 1
    expected = reference_key(results, CONTRACTS[0])
    for subset in itertools.combinations(participants, 3):
        assert key_from(results, subset, CONTRACTS[0]) == expected


def test_complaint_resolved_by_revealing_the_share() -> None:
    participants = [1, 2, 3]
    nodes, dealings = _start_all(participants, 2, "reveal")
    commitment, shares = dealings[1]
    complaint = nodes[2].on_dealing(1, commitment, b"\x00" * 31)
    assert complaint is not None and "32-byte" in complaint.reason
    assert not is_complaint_upheld(complaint, commitment, shares[2])
    assert is_complaint_upheld(complaint, commitment, shares[3])  # not the disputed share
    with pytest.raises(ConfigError):
        is_complaint_upheld(complaint, dealings[2][0], shares[2])
    assert nodes[2].on_dealing(1, commitment, shares[2]) is None  # delivered again
    assert nodes[2].complaints == {}
    assert 1 in nodes[2].accepted_dealers


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: DealingCommitment(dealer=3, threshold=2, commitments=c.commitments), "names"),
        (lambda c: DealingCommitment(dealer=1, threshold=1, commitments=c.commitments[:1]), "mal"),
        (lambda c: DealingCommitment(dealer=1, threshold=2, commitments=[b"\x01" * 48] * 2), "mal"),
        (
            lambda c: DealingCommitment(
                dealer=1,
                threshold=2,
                commitments=[c.commitments[0], bls.public_key(b"\x00" * 31 + b"\x05")],
            ),
            "does not match",
        ),
    ],
)
def test_bad_commitments_give_complaints(mutate: object, reason: str) -> None:
    participants = [1, 2, 3]
    nodes, dealings = _start_all(participants, 2, "commit")
    commitment, shares = dealings[1]
    assert callable(mutate)
    complaint = nodes[2].on_dealing(1, mutate(commitment), shares[2])
    assert complaint is not None and complaint.dealer == 1 and reason in complaint.reason


def test_equivocation_is_sticky() -> None:
    participants = [1, 2, 3]
    nodes, dealings = _start_all(participants, 2, "equivocate")
    commitment, shares = dealings[1]
    other, other_shares = compute_dealing(1, 2, participants, _seed("other"))
    assert nodes[2].on_dealing(1, commitment, shares[2]) is None
    complaint = nodes[2].on_dealing(1, other, other_shares[2])
    assert complaint is not None and "equivocation" in complaint.reason
    assert nodes[2].on_dealing(1, commitment, shares[2]) == complaint
    assert 1 not in nodes[2].accepted_dealers


def test_state_machine_refuses_wrong_calls() -> None:
    participants = [1, 2, 3]
    nodes, dealings = _start_all(participants, 2, "states")
    node = nodes[1]
    with pytest.raises(DkgStateError):
        node.start(b"r" * 32)  # twice
    with pytest.raises(DkgStateError):
        node.on_dealing(1, *dealings[1][:1], b"\x00" * 32)  # own dealing
    with pytest.raises(DkgStateError):
        node.on_dealing(9, dealings[2][0], dealings[2][1][1])  # not a participant
    with pytest.raises(DkgStateError):
        node.finish({1, 2, 9})
    with pytest.raises(ThresholdError):
        node.finish({1})
    for dealer in (2, 3):
        assert node.on_dealing(dealer, dealings[dealer][0], dealings[dealer][1][1]) is None
    result = node.finish({1, 2, 3})
    assert node.state is DkgState.FINISHED
    assert result.index == 1
    with pytest.raises(DkgStateError):
        node.finish({1, 2, 3})
    with pytest.raises(DkgStateError):
        node.on_dealing(2, dealings[2][0], dealings[2][1][1])
    with pytest.raises(ConfigError):
        DkgParticipant(4, 2, participants)  # not among the participants
    with pytest.raises(ConfigError):
        DkgParticipant(1, 4, participants)


# --- resharing ---------------------------------------------------------------------------------


def test_reshare_4_of_7_to_3_of_4_keeps_every_contract_key(
    dkg_4_of_7: dict[int, KeyShareResult],
) -> None:
    before = {cid: reference_key(dkg_4_of_7, cid) for cid in CONTRACTS}
    new = run_reshare(dkg_4_of_7, [2, 3, 5, 7], [1, 2, 3, 4], 3, seed="to-4")
    public = new[1].public
    assert public.threshold == 3
    assert public.group_public_key == dkg_4_of_7[1].group_public_key
    assert set(public.public_shares) == {1, 2, 3, 4}
    assert public.public_shares[1] != dkg_4_of_7[1].public_shares[1]
    for cid in CONTRACTS:
        for subset in itertools.combinations([1, 2, 3, 4], 3):
            assert key_from(new, subset, cid) == before[cid]


def test_reshare_to_an_overlapping_set_with_more_than_t_dealers(
    dkg_4_of_7: dict[int, KeyShareResult],
) -> None:
    before = reference_key(dkg_4_of_7, CONTRACTS[0])
    new_members = [3, 4, 5, 8, 9]
    new = run_reshare(dkg_4_of_7, [1, 2, 4, 6, 7], new_members, 3, seed="overlap")
    assert new[3].group_public_key == dkg_4_of_7[3].group_public_key
    assert new[3].secret != dkg_4_of_7[3].secret
    for subset in itertools.combinations(new_members, 3):
        assert key_from(new, subset, CONTRACTS[0]) == before
    # ... and again, back to 4-of-7: still the same key.
    again = run_reshare(new, [4, 8, 9], list(range(1, 8)), 4, seed="back")
    assert key_from(again, (1, 3, 5, 7), CONTRACTS[0]) == before


def test_resharing_dealer_cannot_change_its_constant_term(
    dkg_4_of_7: dict[int, KeyShareResult],
) -> None:
    public = dkg_4_of_7[1].public
    new_members = [1, 2, 3]
    node = ReshareParticipant(1, 2, new_members, public)
    honest = dkg_4_of_7[2].key_share
    shifted = KeyShare(
        index=2,
        secret=scalar_to_bytes((scalar_from_bytes(honest.secret) + 1) % BLS_SCALAR_ORDER),
    )
    commitment, shares = compute_reshare_dealing(shifted, 2, new_members, b"x" * 32)
    assert is_valid_share(commitment, 1, shares[1])  # internally consistent ...
    complaint = node.on_dealing(2, commitment, shares[1])  # ... but not its old share
    assert complaint is not None and "constant term" in complaint.reason
    # Dealing someone else's share under its own index is caught the same way.
    stolen = KeyShare(index=2, secret=dkg_4_of_7[5].secret)
    commitment, shares = compute_reshare_dealing(stolen, 2, new_members, b"y" * 32)
    assert node.on_dealing(2, commitment, shares[1]) is not None
    # A fresh random constant term too.
    commitment, shares = compute_dealing(2, 2, new_members, b"z" * 32)
    assert node.on_dealing(2, commitment, shares[1]) is not None
    with pytest.raises(DkgStateError):
        node.on_dealing(8, commitment, shares[1])  # not an old member
    assert node.accepted_dealers == frozenset()


def test_reshare_needs_old_threshold_dealers(dkg_4_of_7: dict[int, KeyShareResult]) -> None:
    with pytest.raises(ThresholdError):
        run_reshare(dkg_4_of_7, [1, 2, 3], [1, 2, 3], 2, seed="few")


def test_reshare_with_a_wrong_old_key_set_is_refused(
    dkg_4_of_7: dict[int, KeyShareResult],
) -> None:
    public = dkg_4_of_7[1].public
    wrong = GroupPublicKeys(
        threshold=public.threshold,
        group_public_key=bls.keygen(b"\x07" * 32)[1],
        shares=public.shares,
    )
    nodes = {j: ReshareParticipant(j, 2, [1, 2], wrong) for j in (1, 2)}
    for i in (1, 2, 3, 4):
        commitment, shares = compute_reshare_dealing(
            dkg_4_of_7[i].key_share, 2, [1, 2], _seed("wrong", i)
        )
        assert nodes[1].on_dealing(i, commitment, shares[1]) is None
    with pytest.raises(ThresholdError):
        nodes[1].finish({1, 2, 3, 4})
    assert nodes[1].state is DkgState.OPEN


def test_old_shares_are_erased_after_rotation(dkg_4_of_7: dict[int, KeyShareResult]) -> None:
    holders = {i: ShareHolder(r) for i, r in dkg_4_of_7.items()}
    public = holders[1].public
    new_members = [1, 2, 3]
    nodes = {j: ReshareParticipant(j, 2, new_members, public) for j in new_members}
    for i in (1, 3, 5, 6):
        commitment, shares = holders[i].deal_reshare(2, new_members, _seed("rotate", i))
        for j in new_members:
            assert nodes[j].on_dealing(i, commitment, shares[j]) is None
    new = {j: nodes[j].finish({1, 3, 5, 6}) for j in new_members}
    for holder in holders.values():
        holder.erase()
        assert holder.is_erased
        with pytest.raises(ShareErased):
            holder.compute_partial(CONTRACTS[0])
        with pytest.raises(ShareErased):
            holder.deal_reshare(2, new_members, b"r" * 32)
    assert key_from(new, (1, 3), CONTRACTS[0]) == reference_key(dkg_4_of_7, CONTRACTS[0])


# --- property ----------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_any_t_subset_gives_the_same_key(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=6), label="n")
    t = data.draw(st.integers(min_value=1, max_value=n), label="t")
    participants = sorted(
        data.draw(
            st.sets(st.integers(min_value=1, max_value=50), min_size=n, max_size=n),
            label="indices",
        )
    )
    seed = data.draw(st.binary(min_size=4, max_size=4), label="seed")
    results = run_dkg(participants, t, seed=seed)
    subset_a = data.draw(st.permutations(participants), label="a")[:t]
    subset_b = data.draw(st.permutations(participants), label="b")[:t]
    cid = data.draw(st.binary(min_size=1, max_size=40), label="contract id")
    key = key_from(results, tuple(subset_a), cid)
    assert key == key_from(results, tuple(subset_b), cid)
    assert key == reference_key(results, cid)
