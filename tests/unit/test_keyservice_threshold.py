"""Threshold key release: gatekeepers release encrypted partials, the worker combines."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.dkg import DkgParticipant, KeyShareResult, ReshareParticipant
from sealbridge.crypto.shamir import Share, recover_secret, scalar_to_bytes
from sealbridge.crypto.threshold_prf import (
    BadPartial,
    compute_partial,
    compute_prf_message,
    derive_contract_key_from_signature,
)
from sealbridge.keyservice.threshold import (
    BadRelease,
    ShareErased,
    ShareHolder,
    combine_released_key,
    compute_partial_release_aad,
    open_partials,
)
from sealbridge.keyservice.threshold_messages import PartialKeyRelease

CID = bytes([0x11]) * 32
OTHER_CID = bytes([0x12]) * 32
WORKER = bytes([0x77]) * 32
OTHER_WORKER = bytes([0x78]) * 32
PARTICIPANTS = [1, 2, 3, 4, 5]
THRESHOLD = 3


def _counter_random(label: str) -> Callable[[int], bytes]:
    state = {"n": 0}

    def random_bytes(n: int) -> bytes:
        state["n"] += 1
        return hashlib.sha256(f"{label}/{state['n']}".encode()).digest()[:n]

    return random_bytes


@pytest.fixture(scope="module")
def results() -> dict[int, KeyShareResult]:
    nodes = {i: DkgParticipant(i, THRESHOLD, PARTICIPANTS) for i in PARTICIPANTS}
    dealt = {i: nodes[i].start(hashlib.sha256(b"ks%d" % i).digest()) for i in PARTICIPANTS}
    for dealer, (commitment, shares) in dealt.items():
        for j, share in shares.items():
            assert nodes[j].on_dealing(dealer, commitment, share) is None
    return {i: nodes[i].finish(set(PARTICIPANTS)) for i in PARTICIPANTS}


@pytest.fixture
def holders(results: dict[int, KeyShareResult]) -> dict[int, ShareHolder]:
    return {i: ShareHolder(r) for i, r in results.items()}


@pytest.fixture(scope="module")
def worker() -> ecies.Recipient:
    private, _ = ecies.x25519_keypair(hashlib.sha256(b"worker").digest())
    return ecies.Recipient(private)


def _reference(results: dict[int, KeyShareResult], cid: bytes = CID) -> bytes:
    shares = [Share(index=r.index, value=r.secret) for r in results.values()]
    secret = scalar_to_bytes(recover_secret(shares, THRESHOLD))
    return derive_contract_key_from_signature(cid, bls.sign(secret, compute_prf_message(cid)))


def _releases(
    holders: dict[int, ShareHolder], worker: ecies.Recipient, indices: list[int]
) -> list[PartialKeyRelease]:
    random_bytes = _counter_random("release")
    return [
        holders[i].release_partial(CID, WORKER, worker.public_key, random_bytes) for i in indices
    ]


def _combine(
    releases: list[PartialKeyRelease], worker: ecies.Recipient, holder: ShareHolder, **kw: bool
) -> bytes:
    return combine_released_key(
        releases, worker.decrypt, contract_id=CID, worker_id=WORKER, group=holder.public, **kw
    )


def test_release_and_combine(
    holders: dict[int, ShareHolder],
    worker: ecies.Recipient,
    results: dict[int, KeyShareResult],
) -> None:
    expected = _reference(results)
    for indices in ([1, 2, 3], [5, 3, 1], [2, 4, 5], [1, 2, 3, 4, 5]):
        releases = _releases(holders, worker, indices)
        assert _combine(releases, worker, holders[1]) == expected
        assert _combine(releases, worker, holders[1], optimistic=True) == expected
    release = _releases(holders, worker, [2])[0]
    assert release.index == 2 and release.contract_id == CID and release.worker_id == WORKER
    assert len(release.ciphertext) == ecies.OVERHEAD + bls.SIGNATURE_SIZE
    partial = holders[2].compute_partial(CID)
    assert partial.signature not in release.ciphertext
    assert decode(encode(release), PartialKeyRelease) == release
    # Randomness is an input: the same bytes give the same release.
    again = holders[2].release_partial(CID, WORKER, worker.public_key, _counter_random("release"))
    assert again == release


def test_release_opens_only_for_its_worker_contract_and_index(
    holders: dict[int, ShareHolder], worker: ecies.Recipient
) -> None:
    releases = _releases(holders, worker, [1, 2, 3])
    partials = open_partials(releases, worker.decrypt, contract_id=CID, worker_id=WORKER)
    assert [p.index for p in partials] == [1, 2, 3]
    assert partials[1] == holders[2].compute_partial(CID)
    with pytest.raises(BadRelease) as info:
        open_partials(releases, worker.decrypt, contract_id=OTHER_CID, worker_id=WORKER)
    assert info.value.index == 1 and "contract" in info.value.reason
    with pytest.raises(BadRelease, match="another worker"):
        open_partials(releases, worker.decrypt, contract_id=CID, worker_id=OTHER_WORKER)
    # Relabelled to another worker or index: the associated data no longer matches.
    forwarded = PartialKeyRelease(
        contract_id=CID, worker_id=OTHER_WORKER, index=2, ciphertext=releases[1].ciphertext
    )
    with pytest.raises(BadRelease) as info:
        open_partials([forwarded], worker.decrypt, contract_id=CID, worker_id=OTHER_WORKER)
    assert info.value.index == 2 and "decrypt" in info.value.reason
    relabelled = PartialKeyRelease(
        contract_id=CID, worker_id=WORKER, index=4, ciphertext=releases[1].ciphertext
    )
    with pytest.raises(BadRelease) as info:
        open_partials([relabelled], worker.decrypt, contract_id=CID, worker_id=WORKER)
    assert info.value.index == 4
    # Another enclave's key cannot open it.
    stranger = ecies.Recipient(ecies.x25519_keypair(b"\x05" * 32)[0])
    with pytest.raises(BadRelease):
        open_partials(releases, stranger.decrypt, contract_id=CID, worker_id=WORKER)
    assert compute_partial_release_aad(CID, WORKER, 1) != compute_partial_release_aad(
        CID, WORKER, 2
    )


def test_tampered_release_is_named_and_can_be_dropped(
    holders: dict[int, ShareHolder],
    worker: ecies.Recipient,
    results: dict[int, KeyShareResult],
) -> None:
    releases = _releases(holders, worker, [1, 2, 3, 4])
    blob = bytearray(releases[2].ciphertext)
    blob[-1] ^= 1
    tampered = PartialKeyRelease(contract_id=CID, worker_id=WORKER, index=3, ciphertext=bytes(blob))
    mixed = [releases[0], releases[1], tampered, releases[3]]
    with pytest.raises(BadRelease) as info:
        _combine(mixed, worker, holders[1])
    assert info.value.index == 3
    assert _combine(mixed, worker, holders[1], drop_bad=True) == _reference(results)


def test_malicious_holder_with_a_valid_encryption_is_caught(
    holders: dict[int, ShareHolder],
    worker: ecies.Recipient,
    results: dict[int, KeyShareResult],
) -> None:
    """Holder 2 properly encrypts a wrong partial (for another contract): BadPartial(2)."""
    wrong = compute_partial(results[2].key_share, OTHER_CID)
    ciphertext = ecies.encrypt_to(
        worker.public_key, wrong.signature, compute_partial_release_aad(CID, WORKER, 2)
    )
    bad = PartialKeyRelease(contract_id=CID, worker_id=WORKER, index=2, ciphertext=ciphertext)
    good = _releases(holders, worker, [1, 3, 4])
    for optimistic in (False, True):
        with pytest.raises(BadPartial) as info:
            _combine([good[0], bad, good[1]], worker, holders[1], optimistic=optimistic)
        assert info.value.index == 2
    assert _combine([bad, *good], worker, holders[1], drop_bad=True) == _reference(results)
    garbage = ecies.encrypt_to(
        worker.public_key, b"\x00" * 10, compute_partial_release_aad(CID, WORKER, 2)
    )
    short = PartialKeyRelease(contract_id=CID, worker_id=WORKER, index=2, ciphertext=garbage)
    with pytest.raises(BadRelease, match="96-byte"):
        _combine([good[0], short, good[1]], worker, holders[1])


def test_share_holder_checks_and_erasure(
    results: dict[int, KeyShareResult], worker: ecies.Recipient
) -> None:
    tampered = KeyShareResult(
        index=1,
        threshold=results[1].threshold,
        secret=results[2].secret,
        group_public_key=results[1].group_public_key,
        shares=results[1].shares,
    )
    with pytest.raises(ConfigError):
        ShareHolder(tampered)
    holder = ShareHolder(results[1])
    assert holder.threshold == THRESHOLD and not holder.is_erased
    assert holder.group_public_key == results[1].group_public_key
    with pytest.raises(ConfigError):
        holder.release_partial(CID, WORKER, worker.public_key, lambda n: b"\x01" * (n - 1))
    with pytest.raises(ConfigError):
        holder.release_partial(CID, b"", worker.public_key, _counter_random("x"))
    holder.erase()
    holder.erase()  # idempotent
    assert holder.is_erased
    with pytest.raises(ShareErased):
        holder.release_partial(CID, WORKER, worker.public_key, _counter_random("x"))
    with pytest.raises(ShareErased):
        holder.compute_partial(CID)
    with pytest.raises(ShareErased):
        holder.deal_reshare(2, [1, 2, 3], b"r" * 32)


def test_rotation_keeps_keys_and_refuses_stale_partials(
    holders: dict[int, ShareHolder],
    worker: ecies.Recipient,
    results: dict[int, KeyShareResult],
) -> None:
    stale = _releases(holders, worker, [1, 2])  # made before the rotation
    new_members = [1, 2, 3, 4]
    nodes = {j: ReshareParticipant(j, 2, new_members, holders[1].public) for j in new_members}
    for i in (2, 4, 5):
        commitment, shares = holders[i].deal_reshare(2, new_members, b"%d" % i * 32)
        for j in new_members:
            assert nodes[j].on_dealing(i, commitment, shares[j]) is None
    new_holders = {j: ShareHolder(nodes[j].finish({2, 4, 5})) for j in new_members}
    for holder in holders.values():
        holder.erase()
    fresh = [
        new_holders[j].release_partial(CID, WORKER, worker.public_key, _counter_random(f"n{j}"))
        for j in (3, 1)
    ]
    assert _combine(fresh, worker, new_holders[1]) == _reference(results)
    with pytest.raises(BadPartial) as info:  # old share 1's partial under new public share 1
        _combine([stale[0], fresh[0]], worker, new_holders[1])
    assert info.value.index == 1
