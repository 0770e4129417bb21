"""Dealer-free distributed key generation (joint Feldman) and resharing of BLS key shares.

Theory of operation
-------------------
**Key generation.** Each of ``n`` participants (indices ``1..n``) is a dealer: it draws a
random polynomial ``f_i`` of degree ``t - 1`` over the BLS12-381 scalar field, broadcasts
the Feldman commitments ``C_ik = a_ik·G1`` to its coefficients (:class:`DealingCommitment`)
and sends participant ``j`` the share ``f_i(j)`` privately (:func:`compute_dealing`).
Participant ``j`` checks each share against the commitments,
``f_i(j)·G1 == Σ_k C_ik·j^k`` (:func:`is_valid_share`), and answers a bad or missing one
with a :class:`Complaint`. The participants then agree (outside this module: on chain) on
a qualified set ``Q`` of dealers without upheld complaints; participant ``j``'s key share
is ``s_j = Σ_{i∈Q} f_i(j)``, the group secret is ``s = Σ_{i∈Q} f_i(0)`` and the group
public key ``Σ_{i∈Q} C_i0``. Public shares ``s_j·G1`` follow from the commitments alone
(:func:`compute_public_share`). Nobody ever computes ``s``.

**Resharing.** To hand the same secret to a new committee (``n'`` members, threshold
``t'``), each old member ``i`` in a set ``Q`` of at least ``t`` old members deals its own
share ``s_i`` as the constant term of a fresh polynomial ``g_i`` of degree ``t' - 1``
(:func:`compute_reshare_dealing`). New member ``j`` checks each dealing as above *and*
that its constant-term commitment is the old public share (``C_i0 == s_i·G1``), so an old
member cannot smuggle in another secret. Then ``s'_j = Σ_{i∈Q} λ_i·g_i(j)`` with the
Lagrange coefficients ``λ_i`` of ``Q`` at 0: a degree ``t' - 1`` sharing of
``Σ λ_i s_i = s``. The group public key, and with it every contract key, is unchanged;
old shares are then erased.

:class:`DkgParticipant` and :class:`ReshareParticipant` are sans-I/O state machines:
randomness comes in as bytes, dealings and complaints go out as return values. Bad input
from a dealer becomes a complaint, never an exception; calling them in the wrong state,
or with arguments that make no sense, raises :class:`DkgStateError` or ``ConfigError``.

Simplification: complaint resolution is left to the caller. The standard answer -- the
accused dealer publishes the disputed share and everyone checks it with
:func:`is_valid_share` (:func:`is_complaint_upheld`) -- is supported: a complained-about
dealer may deliver again, and a valid share clears the complaint. Choosing ``Q`` (e.g.
:func:`compute_qualified_set`, "every dealer without an upheld complaint") needs agreement
among the participants, which the chain provides.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence

from py_arkworks_bls12381 import G1Point, Scalar

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.crypto import bls
from sealbridge.crypto.bls import KeyShare
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.shamir import (
    BLS_SCALAR_ORDER,
    ThresholdError,
    lagrange_coefficients,
    scalar_from_bytes,
    scalar_to_bytes,
)

__all__ = [
    "Complaint",
    "DealingCommitment",
    "DkgParticipant",
    "DkgState",
    "DkgStateError",
    "GroupPublicKeys",
    "KeyShareResult",
    "PublicShare",
    "ReshareParticipant",
    "compute_dealing",
    "compute_group_commitments",
    "compute_public_share",
    "compute_qualified_set",
    "compute_reshare_dealing",
    "is_complaint_upheld",
    "is_valid_share",
]

MIN_RANDOMNESS = 32
_WIDE_SIZE = 48  # bytes reduced mod r: bias below 2**-128
_R = BLS_SCALAR_ORDER
_POINT_ERRORS = (ValueError, TypeError, RuntimeError, OverflowError)


class DkgStateError(LocalProtocolError):
    """A DKG or resharing step was called in the wrong state or with invalid arguments."""

    code = "dkg_state"


# --- messages --------------------------------------------------------------------------------


class DealingCommitment(Message, frozen=True):
    """Dealer ``dealer``'s Feldman commitments ``a_k·G1`` (48 B compressed), ``k = 0..t-1``."""

    dealer: int
    threshold: int
    commitments: list[bytes]


class Complaint(Message, frozen=True):
    """Participant ``complainer`` found dealer ``dealer``'s share or commitment bad."""

    complainer: int
    dealer: int
    reason: str


class PublicShare(Message, frozen=True):
    """The public key ``s_index·G1`` (48 bytes) of key share ``index``."""

    index: int
    public_key: bytes


def _check_public_share_list(shares: list[PublicShare]) -> None:
    """One canonical form: indices strictly increasing (raised in ``__post_init__``, so a
    decode of anything else fails validation)."""
    indices = [share.index for share in shares]
    if any(a >= b for a, b in itertools.pairwise(indices)):
        raise ValueError("public shares must be sorted by strictly increasing index")


def _to_list(public_shares: Mapping[int, bytes]) -> list[PublicShare]:
    return [PublicShare(index=i, public_key=public_shares[i]) for i in sorted(public_shares)]


class GroupPublicKeys(Message, frozen=True):
    """The public side of a sharing: what a requester needs to check and combine partials.

    ``shares`` is sorted by index; :attr:`public_shares` is the same as a dict.
    """

    threshold: int
    group_public_key: bytes
    shares: list[PublicShare]

    def __post_init__(self) -> None:
        _check_public_share_list(self.shares)

    @classmethod
    def from_dict(
        cls, threshold: int, group_public_key: bytes, public_shares: Mapping[int, bytes]
    ) -> GroupPublicKeys:
        return cls(
            threshold=threshold,
            group_public_key=group_public_key,
            shares=_to_list(public_shares),
        )

    @property
    def public_shares(self) -> dict[int, bytes]:
        return {share.index: share.public_key for share in self.shares}


class KeyShareResult(Message, frozen=True):
    """Participant ``index``'s key share (32-byte scalar) and the sharing's public keys."""

    index: int
    threshold: int
    secret: bytes
    group_public_key: bytes
    shares: list[PublicShare]

    def __post_init__(self) -> None:
        _check_public_share_list(self.shares)

    @property
    def public_shares(self) -> dict[int, bytes]:
        return {share.index: share.public_key for share in self.shares}

    @property
    def key_share(self) -> KeyShare:
        return KeyShare(index=self.index, secret=self.secret)

    @property
    def public(self) -> GroupPublicKeys:
        return GroupPublicKeys(
            threshold=self.threshold,
            group_public_key=self.group_public_key,
            shares=list(self.shares),
        )


# --- pure functions --------------------------------------------------------------------------


def _check_index(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < _R:
        raise ConfigError(f"{what} must be an int in [1, r), got {value!r}")
    return value


def _check_indices(values: Iterable[int], what: str) -> list[int]:
    out = [_check_index(v, what) for v in values]
    if len(set(out)) != len(out):
        raise ConfigError(f"{what}s must be distinct")
    return out


def _check_threshold(threshold: object, count: int) -> int:
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= count:
        raise ConfigError(f"need 1 <= threshold <= {count}, got {threshold!r}")
    return threshold


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    y = 0
    for a in reversed(coefficients):  # Horner
        y = (y * x + a) % _R
    return y


def _commit(value: int) -> G1Point:
    return G1Point() * Scalar(value)


def _decode_point(data: object) -> G1Point | None:
    """A canonical compressed G1 point in the prime-order subgroup, or None."""
    if not isinstance(data, bytes | bytearray) or len(data) != bls.PUBLIC_KEY_SIZE:
        return None
    try:
        point = G1Point.from_compressed_bytes(bytes(data))  # checks the subgroup
    except _POINT_ERRORS:
        return None
    if point.to_compressed_bytes() != bytes(data):
        return None
    return point


def _decode_commitment(commitment: object, threshold: int | None = None) -> list[G1Point] | None:
    if not isinstance(commitment, DealingCommitment):
        return None
    count = len(commitment.commitments)
    if count < 1 or (threshold is not None and count != threshold):
        return None
    if commitment.threshold != count:
        return None
    points = []
    for data in commitment.commitments:
        point = _decode_point(data)
        if point is None:
            return None
        points.append(point)
    return points


def _evaluate_in_exponent(points: Sequence[G1Point], x: int) -> G1Point:
    """``Σ_k points[k]·x^k``: the committed polynomial evaluated at ``x``, in G1."""
    powers, power = [], 1
    for _ in points:
        powers.append(Scalar(power))
        power = power * x % _R
    return G1Point.multiexp_unchecked(list(points), powers)


def _share_value(share: object) -> int | None:
    if not isinstance(share, bytes | bytearray):
        return None
    try:
        return scalar_from_bytes(bytes(share))
    except ConfigError:
        return None


def _is_share_consistent(points: Sequence[G1Point], index: int, value: int) -> bool:
    return bool(_commit(value) == _evaluate_in_exponent(points, index))


def compute_dealing(
    dealer_index: int,
    threshold: int,
    recipients: Sequence[int],
    randomness: bytes,
    secret: int | None = None,
) -> tuple[DealingCommitment, dict[int, bytes]]:
    """A dealing: commitments to a random degree ``threshold - 1`` polynomial, and its
    value at each recipient's index (32-byte scalars). The constant term is ``secret``
    when given (resharing), else random. Deterministic in its arguments."""
    dealer = _check_index(dealer_index, "dealer index")
    indices = _check_indices(recipients, "recipient index")
    t = _check_threshold(threshold, len(indices))
    if not isinstance(randomness, bytes | bytearray) or len(randomness) < MIN_RANDOMNESS:
        raise ConfigError(f"dealing randomness must be at least {MIN_RANDOMNESS} bytes")
    if secret is not None and (
        not isinstance(secret, int) or isinstance(secret, bool) or not 0 <= secret < _R
    ):
        raise ConfigError("secret must be an int in [0, r)")
    salt = b"" if secret is None else scalar_to_bytes(secret)
    start = 0 if secret is None else 1

    def coefficient(k: int) -> int:
        # Bound to dealer, degree and (for resharing) the secret: one seed reused for two
        # secrets still gives unrelated polynomials.
        wide = derive_key(
            bytes(randomness),
            f"sealbridge/dkg/v1/coefficient/{dealer}/{t}/{k}",
            salt=salt,
            length=_WIDE_SIZE,
        )
        return int.from_bytes(wide, "big") % _R

    coefficients = [] if secret is None else [secret]
    coefficients += [coefficient(k) for k in range(start, t)]
    commitment = DealingCommitment(
        dealer=dealer,
        threshold=t,
        commitments=[_commit(a).to_compressed_bytes() for a in coefficients],
    )
    shares = {j: scalar_to_bytes(_evaluate(coefficients, j)) for j in indices}
    return commitment, shares


def compute_reshare_dealing(
    old_share: KeyShare,
    new_threshold: int,
    new_recipients: Sequence[int],
    randomness: bytes,
) -> tuple[DealingCommitment, dict[int, bytes]]:
    """Old member ``old_share.index``'s resharing dealing: its share as the constant term."""
    if not isinstance(old_share, KeyShare):
        raise ConfigError(f"expected a KeyShare, got {type(old_share).__name__}")
    return compute_dealing(
        old_share.index,
        new_threshold,
        new_recipients,
        randomness,
        secret=scalar_from_bytes(old_share.secret),
    )


def is_valid_share(commitment: DealingCommitment, recipient_index: int, share: bytes) -> bool:
    """True when ``share`` is the committed polynomial's value at ``recipient_index``.

    Checks ``share·G1 == Σ_k C_k·j^k``; malformed commitments or shares give False.
    """
    points = _decode_commitment(commitment)
    value = _share_value(share)
    if points is None or value is None:
        return False
    if not isinstance(recipient_index, int) or not 0 < recipient_index < _R:
        return False
    return _is_share_consistent(points, recipient_index, value)


def is_complaint_upheld(
    complaint: Complaint, commitment: DealingCommitment, revealed_share: bytes | None
) -> bool:
    """Resolve a complaint: the accused dealer publishes the disputed share; the complaint
    stands unless that share verifies against the dealer's commitment."""
    if commitment.dealer != complaint.dealer:
        raise ConfigError(
            f"complaint is about dealer {complaint.dealer}, commitment is {commitment.dealer}'s"
        )
    if revealed_share is None:
        return True
    return not is_valid_share(commitment, complaint.complainer, revealed_share)


def compute_qualified_set(
    dealers: Iterable[int], upheld_complaints: Iterable[Complaint], threshold: int
) -> set[int]:
    """Every dealer with no upheld complaint; ThresholdError if fewer than ``threshold``."""
    accused = {complaint.dealer for complaint in upheld_complaints}
    qualified = set(dealers) - accused
    if len(qualified) < threshold:
        raise ThresholdError(
            f"only {len(qualified)} dealers qualify, need {threshold} (accused: {sorted(accused)})"
        )
    return qualified


def _sum_points(points: Sequence[G1Point], weights: Sequence[int] | None = None) -> G1Point:
    if weights is None:
        total = G1Point.identity()
        for point in points:
            total = total + point
        return total
    return G1Point.multiexp_unchecked(list(points), [Scalar(w) for w in weights])


def _group_commitments(
    decoded: Sequence[Sequence[G1Point]], weights: Sequence[int] | None
) -> list[G1Point]:
    degree = len(decoded[0])
    return [_sum_points([points[k] for points in decoded], weights) for k in range(degree)]


def compute_group_commitments(
    commitments: Sequence[DealingCommitment], weights: Sequence[int] | None = None
) -> list[bytes]:
    """Commitments to ``Σ_i w_i f_i`` (weights 1 by default, as in key generation)."""
    decoded = _decode_all(commitments)
    if weights is not None and len(weights) != len(decoded):
        raise ConfigError("need one weight per dealing")
    return [p.to_compressed_bytes() for p in _group_commitments(decoded, weights)]


def _decode_all(commitments: Sequence[DealingCommitment]) -> list[list[G1Point]]:
    if not commitments:
        raise ConfigError("need at least one dealing")
    decoded = []
    for commitment in commitments:
        points = _decode_commitment(commitment, len(commitments[0].commitments))
        if points is None:
            raise ConfigError(f"dealing commitment of dealer {commitment.dealer!r} is malformed")
        decoded.append(points)
    return decoded


def compute_public_share(
    commitments: Sequence[DealingCommitment],
    index: int,
    weights: Sequence[int] | None = None,
) -> bytes:
    """The public key ``s_index·G1`` of share ``index`` of ``Σ_i w_i f_i``."""
    group = [
        G1Point.from_compressed_bytes(c) for c in compute_group_commitments(commitments, weights)
    ]
    return _evaluate_in_exponent(group, _check_index(index, "share index")).to_compressed_bytes()


# --- state machines --------------------------------------------------------------------------


class DkgState(enum.Enum):
    OPEN = "open"  # collecting dealings; this participant has not dealt
    DEALT = "dealt"  # collecting dealings; this participant's own dealing is out
    FINISHED = "finished"  # key share computed; the received shares are forgotten


_TRANSITIONS: dict[tuple[DkgState, str], DkgState] = {
    (DkgState.OPEN, "start"): DkgState.DEALT,
    (DkgState.OPEN, "dealing"): DkgState.OPEN,
    (DkgState.DEALT, "dealing"): DkgState.DEALT,
    (DkgState.OPEN, "finish"): DkgState.FINISHED,
    (DkgState.DEALT, "finish"): DkgState.FINISHED,
}


class _ShareCollector:
    """What key generation and resharing share: collect, check and sum dealings."""

    def __init__(self, index: int, threshold: int, participants: Sequence[int]) -> None:
        self.index = _check_index(index, "participant index")
        self.participants = tuple(_check_indices(participants, "participant index"))
        if self.index not in self.participants:
            raise ConfigError(f"participant {self.index} is not among {list(self.participants)}")
        self.threshold = _check_threshold(threshold, len(self.participants))
        self.state = DkgState.OPEN
        self._commitments: dict[int, DealingCommitment] = {}
        self._points: dict[int, list[G1Point]] = {}
        self._shares: dict[int, int] = {}
        self._complaints: dict[int, Complaint] = {}
        self._equivocators: set[int] = set()

    # -- reads

    @property
    def accepted_dealers(self) -> frozenset[int]:
        return frozenset(self._shares)

    @property
    def complaints(self) -> dict[int, Complaint]:
        return dict(self._complaints)

    def get_commitment(self, dealer: int) -> DealingCommitment | None:
        return self._commitments.get(dealer)

    # -- transitions

    def _advance(self, event: str) -> DkgState:
        target = _TRANSITIONS.get((self.state, event))
        if target is None:
            raise DkgStateError(f"cannot {event} in state {self.state.value}")
        return target

    def _is_known_dealer(self, dealer: int) -> bool:
        raise NotImplementedError

    def _expected_constant(self, dealer: int) -> bytes | None:
        return None

    def _complain(self, dealer: int, reason: str) -> Complaint:
        complaint = Complaint(complainer=self.index, dealer=dealer, reason=reason)
        self._complaints[dealer] = complaint
        self._shares.pop(dealer, None)
        return complaint

    def on_dealing(
        self, dealer: int, commitment: DealingCommitment, my_share: bytes
    ) -> Complaint | None:
        """Check dealer ``dealer``'s dealing; record it (None) or return a complaint."""
        target = self._advance("dealing")
        if (
            not isinstance(dealer, int)
            or isinstance(dealer, bool)
            or not self._is_known_dealer(dealer)
        ):
            raise DkgStateError(f"{dealer!r} is not a dealer of this round")
        if not isinstance(commitment, DealingCommitment):
            raise ConfigError(f"expected a DealingCommitment, got {type(commitment).__name__}")
        self.state = target
        if dealer in self._equivocators:
            return self._complaints[dealer]
        previous = self._commitments.get(dealer)
        if previous is not None and previous != commitment:
            self._equivocators.add(dealer)
            return self._complain(dealer, "equivocation: two different commitments")
        if commitment.dealer != dealer:
            return self._complain(dealer, f"commitment names dealer {commitment.dealer}")
        points = self._points.get(dealer) or _decode_commitment(commitment, self.threshold)
        if points is None:
            return self._complain(
                dealer, f"commitment is malformed (need {self.threshold} canonical G1 points)"
            )
        expected = self._expected_constant(dealer)
        if expected is not None and commitment.commitments[0] != expected:
            return self._complain(dealer, "constant term is not the dealer's old public share")
        self._commitments[dealer] = commitment
        self._points[dealer] = points
        value = _share_value(my_share)
        if value is None:
            return self._complain(dealer, "share is not a 32-byte reduced scalar")
        if not _is_share_consistent(points, self.index, value):
            return self._complain(dealer, "share does not match the commitment")
        self._shares[dealer] = value
        self._complaints.pop(dealer, None)
        return None

    def _finish(
        self,
        qualified: set[int],
        weights: dict[int, int],
        expected_group_key: bytes | None = None,
    ) -> KeyShareResult:
        target = self._advance("finish")
        dealers = sorted(qualified)
        missing = [d for d in dealers if d not in self._shares]
        if missing:
            raise DkgStateError(f"no valid dealing from qualified dealers {missing}")
        secret = sum(weights[d] * self._shares[d] for d in dealers) % _R
        group = _group_commitments(
            [self._points[d] for d in dealers], [weights[d] for d in dealers]
        )
        group_public_key = group[0].to_compressed_bytes()
        if group[0] == G1Point.identity():
            raise ThresholdError("the group public key is the identity; run again")
        if expected_group_key is not None and group_public_key != expected_group_key:
            # The constant terms are the old public shares; this fails only when those are
            # not shares of the old group key (a wrong ``old``).
            raise ThresholdError("resharing would change the group public key: wrong old keys")
        public_shares = {
            j: _evaluate_in_exponent(group, j).to_compressed_bytes() for j in self.participants
        }
        if _commit(secret).to_compressed_bytes() != public_shares[self.index]:
            raise DkgStateError("own key share does not match the public share")  # unreachable
        self.state = target
        self._shares.clear()
        return KeyShareResult(
            index=self.index,
            threshold=self.threshold,
            secret=scalar_to_bytes(secret),
            group_public_key=group_public_key,
            shares=_to_list(public_shares),
        )


class DkgParticipant(_ShareCollector):
    """One participant of a joint-Feldman key generation among ``participants``."""

    def __init__(self, index: int, threshold: int, participants: Sequence[int]) -> None:
        super().__init__(index, threshold, participants)
        self._own_shares: dict[int, bytes] = {}

    def _is_known_dealer(self, dealer: int) -> bool:
        if dealer == self.index:
            raise DkgStateError("a participant's own dealing is recorded by start()")
        return dealer in self.participants

    def start(self, randomness: bytes) -> tuple[DealingCommitment, dict[int, bytes]]:
        """Deal: return the commitment (broadcast) and the shares to send to the others."""
        target = self._advance("start")
        commitment, shares = compute_dealing(
            self.index, self.threshold, self.participants, randomness
        )
        points = _decode_commitment(commitment, self.threshold)
        if points is None:  # unreachable: we just made it
            raise DkgStateError("own dealing does not decode")
        self.state = target
        self._commitments[self.index] = commitment
        self._points[self.index] = points
        self._shares[self.index] = scalar_from_bytes(shares.pop(self.index))
        return commitment, shares

    def finish(self, qualified: set[int]) -> KeyShareResult:
        """Sum the shares of the qualified dealers into this participant's key share."""
        dealers = set(qualified)
        _check_indices(dealers, "qualified dealer")
        if not dealers <= set(self.participants):
            raise DkgStateError(f"qualified dealers {sorted(dealers)} are not all participants")
        if len(dealers) < self.threshold:
            raise ThresholdError(f"need at least {self.threshold} qualified dealers")
        return self._finish(dealers, dict.fromkeys(dealers, 1))


class ReshareParticipant(_ShareCollector):
    """A member of the new committee receiving a resharing of an existing secret.

    ``old`` is the old sharing's public side (threshold, group key, public shares);
    ``index``, ``threshold`` and ``participants`` describe the new committee.
    """

    def __init__(
        self,
        index: int,
        threshold: int,
        participants: Sequence[int],
        old: GroupPublicKeys,
    ) -> None:
        super().__init__(index, threshold, participants)
        if not isinstance(old, GroupPublicKeys):
            raise ConfigError(f"expected GroupPublicKeys, got {type(old).__name__}")
        self._old_shares = old.public_shares
        _check_indices(self._old_shares, "old share index")
        _check_threshold(old.threshold, len(self._old_shares))
        self.old = old

    def _is_known_dealer(self, dealer: int) -> bool:
        return dealer in self._old_shares

    def _expected_constant(self, dealer: int) -> bytes | None:
        return self._old_shares[dealer]

    def finish(self, qualified: set[int]) -> KeyShareResult:
        """Interpolate the qualified old members' dealings into this member's new share."""
        dealers = sorted(set(qualified))
        _check_indices(dealers, "qualified dealer")
        unknown = [d for d in dealers if d not in self._old_shares]
        if unknown:
            raise DkgStateError(f"qualified dealers {unknown} are not old members")
        if len(dealers) < self.old.threshold:
            raise ThresholdError(f"need at least {self.old.threshold} qualified old members")
        weights = dict(zip(dealers, lagrange_coefficients(dealers), strict=True))
        return self._finish(set(dealers), weights, self.old.group_public_key)
