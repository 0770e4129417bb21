"""``check_nesting``: the msgpack depth scan every enclave runs before decoding a body."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.encoding import check_nesting
from sealbridge.core.errors import EncodingError


def depth_of(value: Any) -> int:
    """Levels of non-empty containers (an empty one holds nothing to recurse into)."""
    if not value and isinstance(value, list | dict):
        return 0
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((max(depth_of(k), depth_of(v)) for k, v in value.items()), default=0)
    return 0


def nested(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for index in range(depth):
        value = [value] if index % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [0, 1, 5, 71, 72])
def test_data_within_the_limit_passes(depth: int) -> None:
    check_nesting(msgspec.msgpack.encode(nested(depth)), 72)


@pytest.mark.parametrize("depth", [73, 100])
def test_data_deeper_than_the_limit_is_refused(depth: int) -> None:
    with pytest.raises(EncodingError, match="nests deeper than 72"):
        check_nesting(msgspec.msgpack.encode(nested(depth)), 72)


def test_a_hostile_depth_costs_a_loop_not_the_stack() -> None:
    with pytest.raises(EncodingError, match="nests deeper than 72"):
        check_nesting(b"\x91" * 1_000_000 + b"\x00", 72)  # [[[...0...]]]


def test_look_alike_bytes_do_not_hide_a_deep_nest() -> None:
    """Strings full of bytes that look like container markers push the data past the
    quick count, so the real scan runs; it still sees the true depth either way."""
    look_alikes = bytes(range(0x80, 0xA0)) * 20
    check_nesting(msgspec.msgpack.encode(nested(3, look_alikes)), 4)
    with pytest.raises(EncodingError):
        check_nesting(msgspec.msgpack.encode(nested(5, look_alikes)), 4)


json_like = st.recursive(
    st.none() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(json_like, st.integers(min_value=0, max_value=12))
def test_refuses_exactly_what_is_deeper_than_the_limit(value: Any, limit: int) -> None:
    data = msgspec.msgpack.encode(value)
    if depth_of(value) > limit:
        with pytest.raises(EncodingError):
            check_nesting(data, limit)
    else:
        check_nesting(data, limit)
