"""Typed ECALLs (``tee/ecall.py``): one declaration read by the enclave's table and by the
host's call, with malformed payloads and mistyped answers refused by type."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import ConfigError, EncodingError
from sealbridge.tee.dispatch import EnclaveDispatcher
from sealbridge.tee.ecall import NOTHING, Ecall, Nothing, call, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, RawEcall
from sealbridge.tee.errors import EcallTypeError, EnclaveCallError
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend, InProcessEnclaveHandle
from sealbridge.tee.testing import ECHO, ECHO_PROGRAM, INCREMENT, SEAL, UNSEAL


class Deposit(Message, frozen=True):
    amount: int


class Balance(Message, frozen=True):
    total: int
    deposits: int


DEPOSIT = Ecall("deposit", Deposit, Balance)
BALANCE = Ecall("balance", Nothing, Balance)
RESET = Ecall("reset", Nothing, Nothing)
BROKEN = Ecall("broken", Nothing, Balance)  # its handler answers another type
SECRET = Ecall("secret", Nothing, bytes)  # an unencoded answer


class Account:
    """A tiny enclave program: a balance changed by typed ECALLs."""

    def __init__(self) -> None:
        self.total = 0
        self.deposits = 0

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        return get_ecall_table(self)

    def _balance(self) -> Balance:
        return Balance(total=self.total, deposits=self.deposits)

    @DEPOSIT.handler
    def deposit(self, request: Deposit) -> Balance:
        self.total += request.amount
        self.deposits += 1
        return self._balance()

    @BALANCE.handler
    def balance(self, _: Nothing) -> Balance:
        return self._balance()

    @RESET.handler
    def reset(self, _: Nothing) -> Nothing:
        self.total = self.deposits = 0
        return NOTHING

    @BROKEN.handler
    def broken(self, _: Nothing) -> Balance:
        self.deposits += 1000  # a bug: it changes state and answers the wrong message
        return Deposit(amount=1)  # type: ignore[return-value]

    @SECRET.handler
    def secret(self, _: Nothing) -> bytes:
        return b"\x00raw bytes, not msgpack"


def make_handle(program: object) -> InProcessEnclaveHandle:
    """The host's handle of ``program``, dispatched in process like any enclave."""
    ctx = EnclaveContext(program="tests:Account", measurement=bytes(32), platform_private_key=b"")
    table = get_ecall_table(program)
    return InProcessEnclaveHandle(EnclaveDispatcher(ctx, table))


def test_a_declared_ecall_decodes_and_encodes_through_the_table() -> None:
    program = Account()
    table = program.get_ecalls()
    assert set(table) == {"deposit", "balance", "reset", "broken", "secret"}
    answer = table["deposit"](encode(Deposit(amount=5)))
    assert answer == encode(Balance(total=5, deposits=1))  # canonical msgpack, as before
    assert table["balance"](b"") == encode(Balance(total=5, deposits=1))
    assert table["reset"](b"") == b""  # nothing: no bytes at all
    assert program.total == 0
    assert table["secret"](b"") == b"\x00raw bytes, not msgpack"  # bytes travel as they are


def test_the_wire_forms_of_a_declaration() -> None:
    assert DEPOSIT.encode_request(Deposit(amount=7)) == encode(Deposit(amount=7))
    assert DEPOSIT.decode_response(encode(Balance(total=1, deposits=1))) == Balance(
        total=1, deposits=1
    )
    assert BALANCE.encode_request(NOTHING) == b""
    # an empty message's encoding (what some programs answered before) is nothing too
    assert RESET.decode_response(b"\x80") is NOTHING
    assert RESET.decode_response(b"") is NOTHING
    with pytest.raises(EncodingError):
        RESET.decode_response(b"\x01")
    with pytest.raises(EcallTypeError):
        DEPOSIT.encode_request(Balance(total=1, deposits=1))  # type: ignore[arg-type]
    assert DEPOSIT.answering(Nothing) == Ecall("deposit", Deposit, Nothing)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("deposit", b""),  # no body where one is declared
        ("deposit", b"\xc1"),  # not msgpack
        ("deposit", encode(Balance(total=1, deposits=1))),  # another message
        ("deposit", encode({"amount": "five"})),  # a field of the wrong type
        ("balance", b"junk"),  # a body where none is declared
    ],
)
def test_a_malformed_payload_is_a_typed_refusal_that_changes_nothing(
    name: str, payload: bytes
) -> None:
    program = Account()
    table = program.get_ecalls()
    table["deposit"](encode(Deposit(amount=3)))
    with pytest.raises(EncodingError):
        table[name](payload)
    assert (program.total, program.deposits) == (3, 1)
    # across the boundary it is the same refusal, by class name and code
    handle = make_handle(program)
    with pytest.raises(EnclaveCallError) as refused:
        handle.ecall(name, payload)
    assert (refused.value.kind, refused.value.remote_code) == ("EncodingError", "encoding")
    assert call(handle, BALANCE, NOTHING) == Balance(total=3, deposits=1)


def test_a_handler_answering_another_type_is_refused() -> None:
    program = Account()
    with pytest.raises(EcallTypeError, match="declared Balance"):
        program.get_ecalls()["broken"](b"")
    with pytest.raises(EnclaveCallError) as refused:
        call(make_handle(program), BROKEN, NOTHING)
    assert (refused.value.kind, refused.value.remote_code) == ("EcallTypeError", "ecall_type")


def test_the_host_call_returns_the_typed_answer() -> None:
    handle = make_handle(Account())
    balance = call(handle, DEPOSIT, Deposit(amount=2))
    assert isinstance(balance, Balance) and balance == Balance(total=2, deposits=1)
    assert call(handle, DEPOSIT, Deposit(amount=3)).total == 5
    assert call(handle, RESET, NOTHING) is NOTHING
    assert call(handle, BALANCE, NOTHING) == Balance(total=0, deposits=0)
    assert call(handle, SECRET, NOTHING) == b"\x00raw bytes, not msgpack"


def test_two_handlers_of_one_ecall_are_refused() -> None:
    class Twice(Account):
        @DEPOSIT.handler
        def deposit_again(self, request: Deposit) -> Balance:
            return self._balance()

    with pytest.raises(ConfigError, match="two handlers"):
        get_ecall_table(Twice())
    with pytest.raises(ConfigError):
        Ecall("", Nothing, Nothing)


def test_a_round_trip_through_the_in_process_backend(tmp_path: Path) -> None:
    """The test program (``tee/testing.py``), launched as the backends launch programs:
    typed calls from the host, the built-in ECALLs beside them."""
    key = tmp_path / "platform.key"
    create_sim_platform(key)
    with InProcessBackend().launch(ECHO_PROGRAM, platform_key_file=key) as enclave:
        assert call(enclave, ECHO, b"hello") == b"hello"
        first = call(enclave, INCREMENT, 5)
        with pytest.raises(EnclaveCallError) as refused:
            enclave.ecall("increment", b"\xc1")  # malformed: refused, the counter unmoved
        assert refused.value.kind == "EncodingError"
        assert call(enclave, INCREMENT, 1) == first + 1
        blob = call(enclave, SEAL, ("label", b"secret"))
        assert call(enclave, UNSEAL, ("label", blob)) == b"secret"
        assert enclave.get_quote()  # sb.get_quote, declared in tee/ecall.py
        staged = enclave.stage_fresh_keys()
        assert enclave.switch_keys(staged.node_keys) == staged.node_keys
