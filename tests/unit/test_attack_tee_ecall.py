"""Attacks on typed ECALLs (tee/ecall.py): hostile payloads (huge, deeply nested, of the
wrong type, with extra fields or trailing bytes, non-canonical where canonical is
declared), handlers that answer another type, colliding names, and ``Nothing``.

Driven through the table, through an in-process handle (tee/sim.py) and through the
in-process backend with the test program (tee/testing.py), as tests/unit/test_tee_ecall.py
does. Tests whose docstring starts with "Fixed --" demonstrated a weakness (they failed on
the code as first written; each one's fix is in the same change); the others are
regression tests of what holds."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
import web3  # noqa: F401 -- what every host process imports (see the nesting test)

from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import ConfigError, EncodingError, SealbridgeError
from sealbridge.tee.dispatch import EnclaveDispatcher
from sealbridge.tee.ecall import NOTHING, SWITCH_KEYS, Ecall, Nothing, call, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, NodeKeys, RawEcall, get_program_ecalls
from sealbridge.tee.errors import EcallTypeError, EnclaveCallError, UnknownEcall
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend, InProcessEnclaveHandle
from sealbridge.tee.testing import ECHO, ECHO_PROGRAM, INCREMENT, SEAL


class Deposit(Message, frozen=True):
    amount: int


class Tree(Message, frozen=True):
    """A request with free-form content (where a hostile depth could reach a decoder)."""

    data: Any


class Pair(Message, frozen=True):
    key: str
    value: bytes


DEPOSIT = Ecall("deposit", Deposit, int)
TREE = Ecall("tree", Tree, int)
ITEMS = Ecall("items", list[Pair], int)
COUNT = Ecall("count", Nothing, int)
STRICT_NOTHING = Ecall("strict_nothing", Nothing, int, canonical=True)
BOOL_AS_INT = Ecall("bool_as_int", Nothing, int)
BAD_TUPLE = Ecall("bad_tuple", Nothing, tuple[str, bytes])
BAD_ITEMS = Ecall("bad_items", Nothing, list[Pair])


class Program:
    """Counts the calls its handlers complete; a refused payload must not count."""

    def __init__(self) -> None:
        self.calls = 0

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        return get_ecall_table(self)

    @DEPOSIT.handler
    def deposit(self, request: Deposit) -> int:
        self.calls += 1
        return request.amount

    @TREE.handler
    def tree(self, request: Tree) -> int:
        self.calls += 1
        return 1

    @ITEMS.handler
    def items(self, request: list[Pair]) -> int:
        self.calls += 1
        return len(request)

    @COUNT.handler
    def count(self, _: Nothing) -> int:
        return self.calls

    @STRICT_NOTHING.handler
    def strict_nothing(self, _: Nothing) -> int:
        self.calls += 1
        return self.calls

    @BOOL_AS_INT.handler
    def bool_as_int(self, _: Nothing) -> int:
        return True  # a bug: a bool is an int to isinstance, not to the decoder

    @BAD_TUPLE.handler
    def bad_tuple(self, _: Nothing) -> tuple[str, bytes]:
        return ("label", 5)  # type: ignore[return-value]

    @BAD_ITEMS.handler
    def bad_items(self, _: Nothing) -> list[Pair]:
        return [Deposit(amount=1)]  # type: ignore[list-item]


def make_handle(program: object) -> InProcessEnclaveHandle:
    ctx = EnclaveContext(program="tests:Program", measurement=bytes(32), platform_private_key=b"")
    return InProcessEnclaveHandle(EnclaveDispatcher(ctx, get_ecall_table(program)))


HOSTILE: list[tuple[str, bytes]] = [
    ("deposit", encode(Deposit(amount=1)) + b"\x00"),  # trailing bytes
    ("deposit", encode({"amount": 1, "extra": 2})),  # an extra field
    ("deposit", encode({"amount": 1.5})),  # wrong type
    ("deposit", encode({"amount": True})),  # a bool for an int
    ("deposit", encode({"amount": 2**63})[:-1]),  # truncated
    ("deposit", encode({})),  # a missing field
    ("deposit", encode([1])),  # an array for a map
    ("deposit", b"\xdf\xff\xff\xff\xff"),  # a map of 2**32-1 entries, no data
    ("deposit", b"\x81\xa6amount\xd3" + b"\x7f" + b"\xff" * 7),  # i64 max: fine type...
    ("items", b"\xdd\xff\xff\xff\xff"),  # an array of 2**32-1 items, no data
    ("items", b"\x91\xc6\xff\xff\xff\xff"),  # bin32 of 4 GiB, no data
    ("items", b"\x91" + encode({"key": "k", "value": "not bytes"})),
    # (deep nesting into ``Any``: see test_nesting_depth_depends_on_the_process)
    ("tree", b"\x81\xa4data\xc7\x01\xff\x00"),  # an ext type
    ("count", b"\x00"),  # a body where none is declared
    ("count", b"\x90"),  # an empty array is not nothing
    ("count", b"\x80\x80"),
]


@pytest.mark.parametrize(("name", "payload"), HOSTILE)
def test_a_hostile_payload_is_a_typed_refusal_that_changes_nothing(
    name: str, payload: bytes
) -> None:
    program = Program()
    table = program.get_ecalls()
    table["deposit"](encode(Deposit(amount=3)))
    begun = time.monotonic()
    try:
        table[name](payload)
    except EncodingError:
        pass
    else:
        # only the i64-max case is well formed: it must then have counted exactly once
        assert payload.startswith(b"\x81\xa6amount\xd3"), f"{name} accepted {payload[:16]!r}"
        program.calls -= 1
    assert time.monotonic() - begun < 2.0
    assert program.calls == 1
    handle = make_handle(program)
    try:
        handle.ecall(name, payload)
    except EnclaveCallError as refused:
        assert refused.kind == "EncodingError"
    else:
        program.calls -= 1
    assert call(handle, COUNT, NOTHING) == 1


@pytest.mark.parametrize("depth", [2_000, 5_000])
def test_nesting_depth_depends_on_the_process(depth: int) -> None:
    """Fixed -- (crash) Ecall._decode -> core.encoding.decode -> msgspec, with no depth
    limit of its own: msgspec stops at the *interpreter's recursion limit*. py_ecc (pulled
    in by web3 / eth_account, so by every host process, the client library and the
    key-release matcher enclave) raises that limit to 100,000 at import. Then a payload
    nested ~30,000 deep (about 30 KB: ``b"\\x91" * 30_000``) into any ``Any`` /
    ``dict[str, Any]`` position overflows the C stack: SIGSEGV, the process dies (observed
    here, rc 139, in a separate interpreter; not reproduced in this test because it would
    kill the test run). The same decode is reached without authentication on the client:
    runtime/envelope.py open_answer decodes QueryAnswer (``result: Any``) *before*
    checking the worker's signature, and anyone holding the query's reply public key (the
    worker host sees it) can ECIES-encrypt a forged answer to it.

    Shown safely: a depth of 2,000-5,000 must be refused by a limit of the decoder's own
    (check_nesting, which exists and is iterative), not accepted because an import raised
    sys.getrecursionlimit()."""
    program = Program()
    payload = b"\x81\xa4data" + b"\x91" * depth + b"\x01"
    with pytest.raises(EncodingError):
        program.get_ecalls()["tree"](payload)
    assert program.calls == 0


def test_a_huge_well_formed_payload_is_handled_or_refused_quickly() -> None:
    program = Program()
    items = [Pair(key=str(i), value=b"v") for i in range(200_000)]
    begun = time.monotonic()
    assert program.get_ecalls()["items"](encode(items)) == encode(200_000)
    assert time.monotonic() - begun < 5.0


def test_canonical_requests_refuse_other_encodings() -> None:
    keys = NodeKeys(
        identity_key=b"\x01" * 32, encryption_key=b"\x02" * 32, eth_address=b"\x03" * 20
    )
    assert SWITCH_KEYS.decode_request(encode(keys)) == keys
    fields = {"identity_key": keys.identity_key, "encryption_key": keys.encryption_key}
    unsorted = msgspec.msgpack.encode(
        {**dict(reversed(fields.items())), "eth_address": b"\x03" * 20}
    )
    with pytest.raises(EncodingError, match="canonical"):
        SWITCH_KEYS.decode_request(unsorted)
    # bin8 written as bin16: the same bytes, another encoding
    wide = encode(keys).replace(b"\xc4\x20", b"\xc5\x00\x20", 1)
    with pytest.raises(EncodingError):
        SWITCH_KEYS.decode_request(wide)
    assert SWITCH_KEYS.decode_response(encode(keys)) == keys


def test_canonical_nothing_accepts_a_second_encoding() -> None:
    """Fixed -- ``canonical=True`` is ignored for a ``Nothing`` request: both ``b""`` and
    ``b"\\x80"`` are accepted, so one request has two wire forms where the declaration
    says the bytes are compared or hashed (a journal or a replay check keyed on the
    payload bytes sees two different requests)."""
    program = Program()
    table = program.get_ecalls()
    assert table["strict_nothing"](b"") == encode(1)
    with pytest.raises(EncodingError):
        table["strict_nothing"](b"\x80")
    assert program.calls == 1


@pytest.mark.parametrize("name", ["bool_as_int", "bad_tuple", "bad_items"])
def test_the_answer_check_is_shallow(name: str) -> None:
    """Fixed -- the enclave-side check of an answer (``_matches``) is isinstance on the
    outer type only: ``True`` passes as an ``int``, ``("label", 5)`` as ``tuple[str,
    bytes]``, ``[Deposit]`` as ``list[Pair]``. The answer is encoded and crosses the
    boundary as a success; the host then fails with EncodingError ("a malformed answer",
    the enclave blamed as remote) instead of the handler's bug being refused inside the
    enclave with EcallTypeError as the module promises."""
    program = Program()
    with pytest.raises(EcallTypeError):
        program.get_ecalls()[name](b"")


def test_an_answer_of_another_message_type_is_refused_in_the_enclave() -> None:
    class Wrong:
        def get_ecalls(self) -> Mapping[str, RawEcall]:
            return get_ecall_table(self)

        @DEPOSIT.handler
        def deposit(self, request: Deposit) -> int:
            return "five"  # type: ignore[return-value]

    with pytest.raises(EcallTypeError):
        Wrong().get_ecalls()["deposit"](encode(Deposit(amount=5)))
    with pytest.raises(EnclaveCallError) as refused:
        call(make_handle(Wrong()), DEPOSIT, Deposit(amount=5))
    assert refused.value.kind == "EcallTypeError"


def test_nothing_refuses_everything_but_no_bytes() -> None:
    for payload in (b"\x00", b"\x90", b"\xc0", b"\x81\xa1a\x01", b"\x80\x80", b" "):
        with pytest.raises(EncodingError):
            COUNT.decode_request(payload)
    with pytest.raises(EncodingError):
        COUNT.decode_request("")  # type: ignore[arg-type]
    with pytest.raises(EcallTypeError):
        COUNT.encode_request(None)  # type: ignore[arg-type]
    with pytest.raises(EcallTypeError):
        COUNT.encode_request(b"")  # type: ignore[arg-type]


def test_colliding_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="two handlers"):
        get_ecall_table(Program(), Program())

    class Impostor:
        def get_ecalls(self) -> Mapping[str, RawEcall]:
            return get_ecall_table(self)

        @Ecall("sb.get_quote", Nothing, bytes).handler
        def forged_quote(self, _: Nothing) -> bytes:
            return b"forged"

    with pytest.raises(ConfigError, match="reserved"):
        get_program_ecalls(Impostor())  # type: ignore[arg-type]


def test_the_in_process_backend_refuses_hostile_payloads(tmp_path: Path) -> None:
    key = tmp_path / "platform.key"
    create_sim_platform(key)
    with InProcessBackend().launch(ECHO_PROGRAM, platform_key_file=key) as enclave:
        base = call(enclave, INCREMENT, 1)
        for name, payload in (
            ("increment", b"\x01\x02"),  # trailing
            ("increment", b"\xc3"),  # a bool
            ("increment", b"\xcb" + b"\x00" * 8),  # a float
            ("increment", b"\xcf" + b"\x00" * 7 + b"\x01"),  # 1, not canonically: accepted
            ("increment", b"\x91" * 100_000 + b"\x01"),
            ("seal", b"\x92\xa1a" + b"\x91" * 100_000 + b"\xc4\x00"),
            ("seal", b"\x93\xa1a\xc4\x00\xc4\x00"),  # three items for a pair
            ("sb.switch_keys", b"\x80"),
            ("sb.get_quote", b"\x01"),
        ):
            try:
                enclave.ecall(name, payload)
            except EnclaveCallError as refused:
                assert refused.kind in ("EncodingError", "EcallTypeError"), refused.kind
        after = call(enclave, INCREMENT, 0)
        # the one well-formed (non-canonical, not declared canonical) payload added 1
        assert after == base + 1
        assert call(enclave, ECHO, b"x" * 1_000_000) == b"x" * 1_000_000
        with pytest.raises(UnknownEcall):
            enclave.ecall("no such ecall" * 1000, b"")
        blob = call(enclave, SEAL, ("label", b"secret"))
        with pytest.raises(EnclaveCallError):
            enclave.ecall("unseal", encode(["label", blob[:-1]]))


def test_a_forged_query_answer_is_decoded_before_its_signature_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fixed -- (the unauthenticated path to the crash above) open_answer decodes the
    QueryAnswer -- ``result: Any``, ``args: dict[str, Any]`` -- before it verifies the
    worker's signature. The answer is ECIES-encrypted to the query's one-time *public*
    key, which the worker host sees, so an untrusted host can hand the client any bytes
    to decode. The signature (over the canonical bytes) should be checked first."""
    import os

    from sealbridge.core.encoding import decode as real_decode
    from sealbridge.crypto import ecies
    from sealbridge.runtime import envelope
    from sealbridge.runtime.messages import QueryAnswer, QueryBody, SignedAnswer, answer_aad

    query, reply_private = envelope.make_query(
        contract_id=b"c" * 32,
        caller_private_key=os.urandom(32),
        method="m",
        args={},
        issued_at=1,
    )
    reply_public = real_decode(query.body, QueryBody).reply_key  # in the host's view
    forged = SignedAnswer(
        answer=b"\x81\xa6result" + b"\x91" * 50 + b"\x00",
        signature=b"\x00" * 64,
        worker_key=b"\x00" * 32,
    )
    query_hash = envelope.hash_message("sealbridge/query/v1", query)
    sealed = ecies.encrypt_to(reply_public, encode(forged), answer_aad(query_hash))
    decoded: list[Any] = []

    def spy(data: bytes, kind: Any) -> Any:
        decoded.append(kind)
        return real_decode(data, kind)

    monkeypatch.setattr(envelope, "decode", spy)
    with pytest.raises(SealbridgeError):
        envelope.open_answer(query, reply_private, sealed)
    assert QueryAnswer not in decoded, "an unsigned answer reached the decoder"
