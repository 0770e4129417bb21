"""Shamir secret sharing over the BLS12-381 scalar field."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.crypto.shamir import (
    BLS_SCALAR_ORDER,
    Share,
    ThresholdError,
    lagrange_coefficients,
    recover_secret,
    split_secret,
)

R = BLS_SCALAR_ORDER
secrets = st.integers(min_value=0, max_value=R - 1)


@st.composite
def sharings(draw: st.DrawFn) -> tuple[int, int, list[Share], list[int]]:
    count = draw(st.integers(1, 9))
    threshold = draw(st.integers(1, count))
    secret = draw(secrets)
    shares = split_secret(secret, threshold, count)
    order = draw(st.permutations(range(count)))
    return secret, threshold, shares, list(order)


def test_order_is_bls12_381_r() -> None:
    assert R == 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


@settings(max_examples=60)
@given(sharings())
def test_any_threshold_subset_recovers(case: tuple[int, int, list[Share], list[int]]) -> None:
    secret, threshold, shares, order = case
    assert [share.index for share in shares] == list(range(1, len(shares) + 1))
    assert all(len(share.value) == 32 for share in shares)
    subset = [shares[i] for i in order[:threshold]]
    assert recover_secret(subset, threshold) == secret
    # Extra shares beyond the threshold do not change the answer.
    assert recover_secret([shares[i] for i in order], threshold) == secret


@settings(max_examples=60)
@given(sharings(), st.integers(1, R - 1))
def test_fewer_than_threshold_do_not_determine_secret(
    case: tuple[int, int, list[Share], list[int]], delta: int
) -> None:
    secret, threshold, shares, order = case
    if threshold < 2:
        return
    subset = [shares[i] for i in order[: threshold - 1]]
    with pytest.raises(ThresholdError):
        recover_secret(subset, threshold)
    # t - 1 true shares plus one wrong share interpolate to a different value: the t - 1 shares
    # are consistent with every secret.
    last = shares[order[threshold - 1]]
    wrong = Share(index=last.index, value=((last.int_value + delta) % R).to_bytes(32, "big"))
    assert recover_secret([*subset, wrong], threshold) != secret


@settings(max_examples=30)
@given(secrets, secrets)
def test_t_minus_one_shares_are_consistent_with_any_secret(secret: int, other: int) -> None:
    # For t = 3: two shares of `secret` lie on some degree-2 polynomial through (0, other).
    shares = split_secret(secret, 3, 5)
    a, b = shares[0], shares[1]
    third_x = 3
    points = [(0, other), (a.index, a.int_value), (b.index, b.int_value)]
    y = 0  # textbook Lagrange through the three points, evaluated at third_x
    for xi, yi in points:
        term = yi
        for xj, _ in points:
            if xj != xi:
                term = term * (third_x - xj) * pow(xi - xj, -1, R) % R
        y = (y + term) % R
    forged = Share(index=third_x, value=y.to_bytes(32, "big"))
    assert recover_secret([a, b, forged], 3) == other


def test_deterministic_randomness() -> None:
    one = split_secret(42, 3, 5, randomness=b"seed")
    assert one == split_secret(42, 3, 5, randomness=b"seed")
    assert one != split_secret(42, 3, 5, randomness=b"other seed")
    assert one != split_secret(42, 3, 5)
    # The same seed for another secret does not give the same polynomial shifted.
    two = split_secret(43, 3, 5, randomness=b"seed")
    diffs = {(b.int_value - a.int_value) % R for a, b in zip(one, two, strict=True)}
    assert diffs != {1}


def test_threshold_one_shares_are_the_secret() -> None:
    shares = split_secret(7, 1, 3)
    assert all(share.int_value == 7 for share in shares)


def test_lagrange_coefficients() -> None:
    assert lagrange_coefficients([1]) == [1]
    # For x = 1, 2: f(0) = 2 f(1) - f(2).
    assert lagrange_coefficients([1, 2]) == [2, R - 1]
    for subset in itertools.combinations(range(1, 7), 3):
        assert sum(lagrange_coefficients(subset)) % R == 1
    assert lagrange_coefficients([1, 2, 3], at=2) == [0, 1, 0]
    for bad in ([], [1, 1], [0, 1], [R], [-1, 2]):
        with pytest.raises(ConfigError):
            lagrange_coefficients(bad)


def test_validation() -> None:
    for secret, threshold, count in ((R, 1, 1), (-1, 1, 1), (1, 0, 3), (1, 4, 3), (1, 1, R)):
        with pytest.raises(ConfigError):
            split_secret(secret, threshold, count)
    shares = split_secret(5, 2, 3)
    with pytest.raises(ThresholdError):
        recover_secret([shares[0], shares[0]], 2)
    with pytest.raises(ThresholdError):
        recover_secret([shares[0], shares[1], shares[1]], 2)
    with pytest.raises(ThresholdError):
        recover_secret([], 1)
    with pytest.raises(ConfigError):
        recover_secret(shares, 0)
    assert issubclass(ThresholdError, LocalProtocolError)


def test_share_encodes_canonically() -> None:
    share = split_secret(2**200, 2, 3)[1]
    assert decode(encode(share), Share) == share
    with pytest.raises(ConfigError):
        _ = Share(index=1, value=b"\xff" * 32).int_value


def _naive_lagrange(xs: list[int], at: int) -> list[int]:
    out = []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                numerator = numerator * (at - xj) % R
                denominator = denominator * (xi - xj) % R
        out.append(numerator * pow(denominator, -1, R) % R)
    return out


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(st.integers(1, 2_000), min_size=1, max_size=40, unique=True),
    at=st.integers(0, 5_000),
    large=st.booleans(),
)
def test_lagrange_coefficients_equal_the_textbook_formula(
    xs: list[int], at: int, large: bool
) -> None:
    """The fast path (exact small-integer products, one batched inversion) and the modular
    path for large indices both give the textbook coefficients; they interpolate."""
    if large:  # indices above 2**32 take the modular path
        xs = [R - x for x in xs]
    expected = [1 if x == at else 0 for x in xs] if at in xs else _naive_lagrange(xs, at)
    assert lagrange_coefficients(xs, at=at) == expected
    # f(x) = 3 + 5x + ... of degree len(xs) - 1 is recovered at ``at``
    coefficients = [3, 5, 7, 11, 13][: len(xs)] + [1] * max(0, len(xs) - 5)

    def f(x: int) -> int:
        return sum(c * pow(x, k, R) for k, c in enumerate(coefficients)) % R

    weights = lagrange_coefficients(xs, at=at)
    assert sum(w * f(x) for w, x in zip(weights, xs, strict=True)) % R == f(at)
