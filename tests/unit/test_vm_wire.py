"""The host's decoder of guest bytes: plain data round-trips, anything else is refused."""

from __future__ import annotations

import marshal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.contracts.wasm.wire import MAX_NESTING, WireError, decode_guest

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


@settings(max_examples=500)
@given(values)
def test_plain_values_round_trip(value: Any) -> None:
    assert decode_guest(marshal.dumps(value, 2)) == value


@settings(max_examples=2000)
@given(st.binary(max_size=64))
def test_random_bytes_are_data_or_a_wire_error(data: bytes) -> None:
    try:
        decode_guest(data)
    except WireError:
        pass


@pytest.mark.parametrize(
    "value", [{1, 2}, frozenset({1}), 1j, 2**80, -(2**80), {1: 2}, ..., StopIteration]
)
def test_other_kinds_are_refused(value: Any) -> None:
    with pytest.raises(WireError):
        decode_guest(marshal.dumps(value, 2))


def test_code_objects_are_refused() -> None:
    with pytest.raises(WireError):
        decode_guest(marshal.dumps(compile("1", "x", "eval"), 2))


def test_nesting_is_capped_without_recursion() -> None:
    ok = eval("[" * MAX_NESTING + "]" * MAX_NESTING)
    assert decode_guest(marshal.dumps(ok, 2)) == ok
    deep = b"[\x01\x00\x00\x00" * 100_000 + b"N"  # far deeper than marshal itself allows
    with pytest.raises(WireError, match="nests deeper"):
        decode_guest(deep)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[\xff\xff\xff\x7f",  # a length far past the data
        b"s\x05\x00\x00\x00ab",  # bytes cut short
        b"u\x02\x00\x00\x00\xff\xfe",  # text that is not UTF-8
        b"NN",  # extra bytes
        b"{u\x01\x00\x00\x00a",  # a dict that never ends
    ],
)
def test_malformed_data_is_refused(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_guest(data)


def test_the_guest_and_the_host_agree_on_the_protocol_constants() -> None:
    """The guest (built into the WebAssembly component, so it cannot import the host's
    modules) keeps its own copies of the host-call numbers, write kinds and size caps;
    read them from its source and compare with the host's."""
    import ast
    from pathlib import Path

    from sealbridge.contracts import executor, gas

    source = (Path(executor.__file__).parent / "wasm/guest/contract_vm.py").read_text()
    constants: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                expression = compile(ast.Expression(node.value), "contract_vm.py", "eval")
                try:  # the guest's own constant expressions, such as 1 << 20
                    constants[target.id] = eval(expression, {"__builtins__": {}})  # noqa: S307
                except NameError:
                    continue  # refers to something else: not a plain constant
    names = [n for n in vars(executor) if n.startswith("OP_")]
    names += ["WRITE_VALUE", "WRITE_ITEM", "DELETE_ITEM"]
    assert len(names) == 11
    for name in names:
        assert constants[name] == getattr(executor, name), name
    assert constants["MAX_VALUE_SIZE"] == gas.MAX_VALUE_SIZE
    assert constants["MAX_WRITE_BYTES"] == gas.MAX_WRITE_BYTES
