"""Shamir secret sharing over the BLS12-381 scalar field, and Lagrange coefficients.

A secret ``s`` is the constant term of a random polynomial ``f`` of degree
``threshold - 1`` over ``GF(r)``, where ``r`` is the order of the BLS12-381 groups; share
``i`` (for ``i = 1..count``) is ``f(i)``. Any ``threshold`` shares determine ``f`` (and so
``s = f(0)``) by Lagrange interpolation; fewer reveal nothing about ``s``.

The same Lagrange coefficients interpolate "in the exponent", which is how threshold BLS
(:mod:`sealbridge.crypto.bls`) combines partial signatures.

Scalars travel as 32 bytes big-endian: msgpack cannot carry integers over 64 bits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.crypto.kdf import derive_key

BLS_SCALAR_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
SCALAR_SIZE = 32
# 48 bytes reduced mod r: the bias from the reduction is below 2**-128 (as in IETF KeyGen).
_WIDE_SIZE = 48
_SMALL_INDEX = 1 << 32  # below this, denominators are exact integer products


class ThresholdError(LocalProtocolError):
    """Too few (distinct) shares or partial signatures to reach the threshold."""

    code = "threshold"


def scalar_to_bytes(value: int) -> bytes:
    """A scalar in ``[0, r)`` as 32 bytes big-endian."""
    if not isinstance(value, int) or not 0 <= value < BLS_SCALAR_ORDER:
        raise ConfigError("scalar must be an int in [0, r)")
    return value.to_bytes(SCALAR_SIZE, "big")


def scalar_from_bytes(data: bytes) -> int:
    """Parse 32 bytes big-endian as a scalar in ``[0, r)``."""
    if not isinstance(data, bytes | bytearray) or len(data) != SCALAR_SIZE:
        raise ConfigError(f"scalar must be {SCALAR_SIZE} bytes big-endian")
    value = int.from_bytes(data, "big")
    if value >= BLS_SCALAR_ORDER:
        raise ConfigError("scalar is not reduced modulo r")
    return value


class Share(Message, frozen=True):
    """Share ``index`` (1..n) of a secret: the polynomial's value there, 32 bytes big-endian."""

    index: int
    value: bytes

    @property
    def int_value(self) -> int:
        return scalar_from_bytes(self.value)


def _coefficients(secret: int, threshold: int, count: int, randomness: bytes | None) -> list[int]:
    """``[secret, a_1, ..., a_{t-1}]``: random, or derived from ``randomness`` by HKDF."""
    coefficients = [secret]
    for j in range(1, threshold):
        if randomness is None:
            wide = os.urandom(_WIDE_SIZE)
        else:
            # Bind the secret and the parameters, so one seed reused for two secrets does
            # not give polynomials that differ only in their constant term.
            wide = derive_key(
                randomness,
                f"sealbridge/shamir/v1/coefficient/{threshold}/{count}/{j}",
                salt=scalar_to_bytes(secret),
                length=_WIDE_SIZE,
            )
        coefficients.append(int.from_bytes(wide, "big") % BLS_SCALAR_ORDER)
    return coefficients


def split_secret(
    secret: int, threshold: int, count: int, *, randomness: bytes | None = None
) -> list[Share]:
    """Split ``secret`` into ``count`` shares, any ``threshold`` of which recover it."""
    if not isinstance(secret, int) or not 0 <= secret < BLS_SCALAR_ORDER:
        raise ConfigError("secret must be an int in [0, r)")
    if not (
        isinstance(threshold, int)
        and isinstance(count, int)
        and 1 <= threshold <= count < BLS_SCALAR_ORDER
    ):
        raise ConfigError(f"need 1 <= threshold <= count < r, got {threshold} of {count}")
    if randomness is not None and not isinstance(randomness, bytes | bytearray):
        raise ConfigError("randomness must be bytes")
    coefficients = _coefficients(secret, threshold, count, randomness)
    shares = []
    for x in range(1, count + 1):
        y = 0
        for a in reversed(coefficients):  # Horner
            y = (y * x + a) % BLS_SCALAR_ORDER
        shares.append(Share(index=x, value=scalar_to_bytes(y)))
    return shares


def lagrange_coefficients(indices: Sequence[int], at: int = 0) -> list[int]:
    """Coefficients ``l_i`` with ``f(at) = sum(l_i * f(x_i))`` for ``x_i`` in ``indices``."""
    r = BLS_SCALAR_ORDER
    xs = list(indices)
    if not xs:
        raise ConfigError("need at least one index to interpolate")
    for x in xs:
        if not isinstance(x, int) or not 0 < x < r:
            raise ConfigError(f"share index must be an int in [1, r), got {x!r}")
    if len(set(xs)) != len(xs):
        raise ConfigError("share indices must be distinct")
    if not isinstance(at, int) or not 0 <= at < r:
        raise ConfigError("interpolation point must be an int in [0, r)")
    if at in xs:  # f(at) is the share at ``at`` itself
        return [1 if x == at else 0 for x in xs]
    # l_i = prod_{j != i} (at - x_j) / (x_i - x_j) = Q / ((at - x_i) * D_i), with
    # Q = prod_j (at - x_j) and D_i = prod_{j != i} (x_i - x_j). For the small indices of
    # a committee D_i is computed as an exact integer product (fast in C, one reduction),
    # and every inversion is batched into one (Montgomery's trick): O(t^2) small-integer
    # multiplications instead of O(t^2) modular ones, which matters at t in the hundreds.
    if max(abs(x) for x in xs) < _SMALL_INDEX:
        denominators = [math.prod([xi - xj for xj in xs if xj != xi]) % r for xi in xs]
    else:
        denominators = []
        for xi in xs:
            d = 1
            for xj in xs:
                if xj != xi:
                    d = d * (xi - xj) % r
            denominators.append(d)
    q = 1
    for x in xs:
        q = q * (at - x) % r
    inverses = _batch_inverse([(at - xi) * d % r for xi, d in zip(xs, denominators, strict=True)])
    return [q * inv % r for inv in inverses]


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """Inverses mod r of non-zero ``values`` with a single modular inversion."""
    r = BLS_SCALAR_ORDER
    prefix: list[int] = []
    acc = 1
    for value in values:
        prefix.append(acc)
        acc = acc * value % r
    inverse = pow(acc, -1, r)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = prefix[i] * inverse % r
        inverse = inverse * values[i] % r
    return out


def recover_secret(shares: Sequence[Share], threshold: int) -> int:
    """Interpolate the secret from the first ``threshold`` shares (indices must be distinct)."""
    if not isinstance(threshold, int) or threshold < 1:
        raise ConfigError(f"threshold must be a positive int, got {threshold!r}")
    indices = [share.index for share in shares]
    if len(set(indices)) != len(indices):
        raise ThresholdError("duplicate share indices")
    if len(shares) < threshold:
        raise ThresholdError(f"need {threshold} shares, got {len(shares)}")
    chosen = list(shares)[:threshold]
    coefficients = lagrange_coefficients([share.index for share in chosen])
    return (
        sum(c * share.int_value for c, share in zip(coefficients, chosen, strict=True))
        % BLS_SCALAR_ORDER
    )
