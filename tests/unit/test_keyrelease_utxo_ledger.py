"""The local bitcoin UTXO ledger model (``devnet/utxo_ledger.py``): funding, honest
sweeps, and every refusal -- each a typed error from bitcoin.py's error tree that leaves
the ledger exactly as it was.

Transactions are built with ``build_sweep`` (BIP143, checked by the script interpreter)
or built and then edited with python-bitcointx, as an attacker would.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sealbridge.devnet.utxo_ledger import (
    DuplicateInput,
    FundingRefused,
    NonStandard,
    OutputSpent,
    UnknownOutput,
    UtxoLedger,
    ValueCreated,
)
from sealbridge.keyrelease import bitcoin
from sealbridge.keyrelease.bitcoin import (
    MAX_TX_BYTES,
    BitcoinChainAdapter,
    BitcoinError,
    InvalidAddress,
    InvalidUtxo,
    MalformedTransaction,
    SweepInvalid,
    UnsupportedNetwork,
    Utxo,
    build_funding_transaction,
    build_sweep,
    derive_p2wpkh,
    load_secp256k1,
)
from sealbridge.keyrelease.errors import KeyReleaseError

ALICE = (0xA11CE).to_bytes(32, "big")
BOB = (0xB0B).to_bytes(32, "big")
MALLORY = (0x3A11).to_bytes(32, "big")
FEE = 500


def address(secret: bytes, network: str = "regtest") -> str:
    return derive_p2wpkh(secret, network).address


@contextmanager
def _regtest() -> Iterator[None]:
    load_secp256k1()
    from bitcointx import ChainParams

    with ChainParams("bitcoin/regtest"):
        yield


def edit(raw: bytes, change: Callable[[Any], None]) -> bytes:
    """Decode ``raw``, let ``change`` mutate it, re-serialize (signatures untouched)."""
    with _regtest():
        from bitcointx.core import CMutableTransaction, CTransaction

        tx = CMutableTransaction.from_tx(CTransaction.deserialize(raw))
        change(tx)
        return bytes(tx.serialize())


def state(ledger: UtxoLedger) -> tuple[Any, ...]:
    return (
        tuple(ledger.get_unspent()),
        ledger.get_height(),
        ledger.get_supply(),
        tuple(ledger.get_balance(address(k)) for k in (ALICE, BOB, MALLORY)),
    )


@pytest.fixture()
def ledger() -> UtxoLedger:
    ledger = UtxoLedger("regtest")
    ledger.fund(address(ALICE), 100_000)
    ledger.fund(address(ALICE), 30_000)
    ledger.mine()
    return ledger


def refused(
    ledger: UtxoLedger, raw: bytes, error: type[BitcoinError], match: str | None = None
) -> BitcoinError:
    """``raw`` is refused with exactly ``error`` and the ledger did not change."""
    before = state(ledger)
    with pytest.raises(error, match=match) as info:
        ledger.broadcast(raw)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert isinstance(info.value, KeyReleaseError) and info.value.code.startswith(
        "keyrelease_bitcoin"
    )
    assert state(ledger) == before
    return info.value


# --- funding, honest spends, blocks ------------------------------------------------------------


def test_the_ledger_is_a_bitcoin_chain_adapter() -> None:
    adapter: BitcoinChainAdapter = UtxoLedger()
    assert adapter.get_utxos(address(ALICE)) == []
    assert adapter.get_confirmations("00" * 32) == 0
    with pytest.raises(UnsupportedNetwork):
        UtxoLedger("signet")


def test_funding_is_deterministic_and_confirmed_by_mining() -> None:
    one, two = UtxoLedger(), UtxoLedger()
    first = [one.fund(address(ALICE), 50_000), one.fund(address(ALICE), 50_000)]
    again = [two.fund(address(ALICE), 50_000), two.fund(address(ALICE), 50_000)]
    assert first == again and first[0].txid != first[1].txid  # same serial, same txid
    assert first[0].script_pubkey == derive_p2wpkh(ALICE).script_pubkey
    assert one.get_utxos(address(ALICE)) == first and one.get_balance(address(ALICE)) == 100_000
    # the funding transaction is a real, decodable, coinbase-shaped transaction
    raw = one.get_transaction(first[0].txid)
    assert raw == build_funding_transaction(first[0].script_pubkey, 50_000, 0)[0]
    decoded = bitcoin.decode_transaction(raw)
    assert decoded.is_coinbase and decoded.txid == first[0].txid
    assert one.get_confirmations(first[0].txid) == 0  # waiting for a block
    assert one.mine() == 1 and one.get_confirmations(first[0].txid) == 1
    assert one.mine(5) == 6 and one.get_confirmations(first[1].txid) == 6
    assert one.broadcast(raw) == first[0].txid  # held already: nothing changes
    assert one.get_supply() == 100_000


def test_funding_refusals_change_nothing(ledger: UtxoLedger) -> None:
    before = state(ledger)
    for target, amount in (
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 10_000),  # a mainnet address
        ("not an address", 10_000),
        ("x" * 10_000, 10_000),
        (address(BOB), 0),
        (address(BOB), 293),  # dust for P2WPKH
        (address(BOB), bitcoin.MAX_MONEY_SAT + 1),
        (address(BOB), True),
    ):
        with pytest.raises(FundingRefused):
            ledger.fund(target, amount)  # type: ignore[arg-type]
    with pytest.raises(FundingRefused, match="money supply"):
        ledger.fund(address(BOB), bitcoin.MAX_MONEY_SAT)
    assert state(ledger) == before
    with pytest.raises(InvalidAddress):
        ledger.get_utxos("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")
    with pytest.raises(InvalidUtxo):
        ledger.mine(0)


def test_a_sweep_spends_its_inputs_and_its_outputs_are_spendable(ledger: UtxoLedger) -> None:
    utxos = ledger.get_utxos(address(ALICE))
    sweep = build_sweep(utxos, ALICE, address(BOB), FEE)
    assert ledger.broadcast(sweep.raw_tx) == sweep.txid
    assert ledger.get_balance(address(ALICE)) == 0
    assert ledger.get_balance(address(BOB)) == 130_000 - FEE
    assert all(ledger.is_spent(u.txid, u.vout) for u in utxos)
    assert ledger.get_confirmations(sweep.txid) == 0
    # unconfirmed outputs can be spent at once (as in a node's mempool)
    onward = build_sweep(ledger.get_utxos(address(BOB)), BOB, address(MALLORY), FEE)
    ledger.broadcast(onward.raw_tx)
    assert ledger.get_balance(address(MALLORY)) == 130_000 - 2 * FEE
    ledger.mine()
    assert ledger.get_confirmations(sweep.txid) == ledger.get_confirmations(onward.txid) == 1
    assert ledger.get_supply() - sum(u.amount_sat for u in ledger.get_unspent()) == 2 * FEE


# --- refusals ------------------------------------------------------------------------------------


def test_a_double_spend_is_refused(ledger: UtxoLedger) -> None:
    utxos = ledger.get_utxos(address(ALICE))
    ledger.broadcast(build_sweep(utxos, ALICE, address(BOB), FEE).raw_tx)
    # the same outputs again, to another address, paying more: refused, even unconfirmed
    second = build_sweep(utxos, ALICE, address(MALLORY), 5 * FEE)
    refused(ledger, second.raw_tx, OutputSpent, "spent already")
    ledger.mine()
    refused(ledger, second.raw_tx, OutputSpent)
    # and one spent output among fresh ones
    fresh = ledger.fund(address(ALICE), 40_000)
    refused(
        ledger, build_sweep([fresh, utxos[1]], ALICE, address(MALLORY), FEE).raw_tx, OutputSpent
    )
    assert ledger.get_balance(address(MALLORY)) == 0


def test_a_signature_by_another_key_is_refused(ledger: UtxoLedger) -> None:
    (utxo, _) = ledger.get_utxos(address(ALICE))
    # mallory signs a spend of alice's output with her own key (her pubkey in the witness)
    forged = Utxo(
        txid=utxo.txid,
        vout=utxo.vout,
        amount_sat=utxo.amount_sat,
        script_pubkey=derive_p2wpkh(MALLORY).script_pubkey,
    )
    theft = build_sweep([forged], MALLORY, address(MALLORY), FEE)
    refused(ledger, theft.raw_tx, SweepInvalid, "script verification")
    # alice's public key in the witness, mallory's signature
    honest = build_sweep([utxo], ALICE, address(BOB), FEE)

    def mallory_signature(tx: Any) -> None:
        from bitcointx.core import CTxInWitness
        from bitcointx.core.script import CScriptWitness

        with _regtest():
            from bitcointx.core import CTransaction

            other = CTransaction.deserialize(theft.raw_tx).wit.vtxinwit[0].scriptWitness
        stack = [other.stack[0], tx.wit.vtxinwit[0].scriptWitness.stack[1]]
        tx.wit.vtxinwit[0] = CTxInWitness(CScriptWitness(stack))

    refused(ledger, edit(honest.raw_tx, mallory_signature), SweepInvalid, "script verification")
    # and no witness at all
    stripped = edit(honest.raw_tx, lambda tx: setattr(tx, "wit", type(tx.wit)()))
    refused(ledger, stripped, SweepInvalid, "script verification")
    ledger.broadcast(honest.raw_tx)  # the real one goes through


def test_a_signature_over_another_amount_is_refused(ledger: UtxoLedger) -> None:
    """BIP143 commits to the amount spent: a host that names a lower amount gets a
    signature the interpreter refuses against the real output (the outputs are within
    the real inputs, so only the interpreter can tell)."""
    (utxo, _) = ledger.get_utxos(address(ALICE))
    lower = Utxo(
        txid=utxo.txid,
        vout=utxo.vout,
        amount_sat=utxo.amount_sat - 10_000,
        script_pubkey=utxo.script_pubkey,
    )
    sweep = build_sweep([lower], ALICE, address(BOB), FEE)
    refused(ledger, sweep.raw_tx, SweepInvalid, "input 0 .* fails script verification")


def test_outputs_worth_more_than_the_inputs_are_refused(ledger: UtxoLedger) -> None:
    (utxo, _) = ledger.get_utxos(address(ALICE))
    inflated = Utxo(
        txid=utxo.txid,
        vout=utxo.vout,
        amount_sat=utxo.amount_sat + 50_000,
        script_pubkey=utxo.script_pubkey,
    )
    # validly signed for the inflated amount: the ledger knows the real one
    sweep = build_sweep([inflated], ALICE, address(BOB), FEE)
    refused(ledger, sweep.raw_tx, ValueCreated, "exceed the inputs")
    honest = build_sweep([utxo], ALICE, address(BOB), FEE)

    def extra_output(tx: Any) -> None:
        from bitcointx.core import CTxOut

        tx.vout.append(CTxOut(FEE + 1, tx.vout[0].scriptPubKey))

    refused(ledger, edit(honest.raw_tx, extra_output), ValueCreated)


def test_an_unknown_input_is_refused(ledger: UtxoLedger) -> None:
    made_up = Utxo(
        txid=hashlib.sha256(b"never funded").hexdigest(),
        vout=0,
        amount_sat=1_000_000,
        script_pubkey=derive_p2wpkh(ALICE).script_pubkey,
    )
    refused(ledger, build_sweep([made_up], ALICE, address(BOB), FEE).raw_tx, UnknownOutput)
    (utxo, _) = ledger.get_utxos(address(ALICE))
    other_vout = Utxo(txid=utxo.txid, vout=1, amount_sat=10_000, script_pubkey=utxo.script_pubkey)
    refused(ledger, build_sweep([other_vout], ALICE, address(BOB), FEE).raw_tx, UnknownOutput)


def test_a_duplicate_input_is_refused(ledger: UtxoLedger) -> None:
    (utxo, _) = ledger.get_utxos(address(ALICE))
    honest = build_sweep([utxo], ALICE, address(BOB), FEE)

    def twice(tx: Any) -> None:
        tx.vin.append(tx.vin[0])
        tx.wit.vtxinwit.append(tx.wit.vtxinwit[0])
        tx.vout[0].nValue = 2 * utxo.amount_sat - FEE  # what counting it twice would allow

    refused(ledger, edit(honest.raw_tx, twice), DuplicateInput)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 10,
        bytes(range(256)),
        b"\x02" + b"\x00" * (MAX_TX_BYTES + 1),
    ],
    ids=["empty", "zeros", "junk", "oversize"],
)
def test_malformed_bytes_are_refused(ledger: UtxoLedger, raw: bytes) -> None:
    refused(ledger, raw, MalformedTransaction)


def test_truncated_padded_and_coinbase_transactions_are_refused(ledger: UtxoLedger) -> None:
    (utxo, _) = ledger.get_utxos(address(ALICE))
    raw = build_sweep([utxo], ALICE, address(BOB), FEE).raw_tx
    for bad in (raw[:-1], raw + b"\x00", raw[:40]):
        refused(ledger, bad, MalformedTransaction)
    before = state(ledger)
    with pytest.raises(MalformedTransaction):
        ledger.broadcast("not bytes")  # type: ignore[arg-type]
    assert state(ledger) == before
    # anyone may build a coinbase-shaped transaction; only fund() creates money
    coinbase, _ = build_funding_transaction(derive_p2wpkh(MALLORY).script_pubkey, 10**8, 99)
    refused(ledger, coinbase, MalformedTransaction, "coinbase")


def test_non_standard_transactions_are_refused(ledger: UtxoLedger) -> None:
    (utxo, _) = ledger.get_utxos(address(ALICE))
    # a fee below 1 sat/vbyte
    refused(ledger, build_sweep([utxo], ALICE, address(BOB), 1).raw_tx, NonStandard, "relay")
    honest = build_sweep([utxo], ALICE, address(BOB), FEE)

    def dust(tx: Any) -> None:
        tx.vout[0].nValue = 100

    refused(ledger, edit(honest.raw_tx, dust), NonStandard, "dust")

    def locked(tx: Any) -> None:
        tx.nLockTime = ledger.get_height() + 10  # a block height still to come

    refused(ledger, edit(honest.raw_tx, locked), NonStandard, "not final")
    # an output this model does not spend (P2PKH)
    with _regtest():
        from bitcointx.wallet import P2PKHCoinAddress

        legacy = str(P2PKHCoinAddress.from_pubkey(derive_p2wpkh(BOB).public_key))
    held = ledger.fund(legacy, 20_000)
    as_p2wpkh = Utxo(
        txid=held.txid, vout=held.vout, amount_sat=held.amount_sat, script_pubkey=utxo.script_pubkey
    )
    refused(ledger, build_sweep([as_p2wpkh], ALICE, address(BOB), FEE).raw_tx, NonStandard)


def test_a_relative_lock_time_holds_until_enough_blocks(
    ledger: UtxoLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BIP68 by height: an input with nSequence 3 is final 3 blocks after its output's."""
    fresh = ledger.fund(address(ALICE), 50_000)
    ledger.mine()  # the output is in block 2; the next block is 3
    monkeypatch.setattr(bitcoin, "SWEEP_SEQUENCE", 3)
    sweep = build_sweep([fresh], ALICE, address(BOB), FEE)  # properly signed
    refused(ledger, sweep.raw_tx, NonStandard, "relative lock")
    ledger.mine()
    refused(ledger, sweep.raw_tx, NonStandard, "relative lock")
    ledger.mine()  # the next block is 5 = 2 + 3
    assert ledger.broadcast(sweep.raw_tx) == sweep.txid


def test_concurrent_double_spends_take_exactly_one(ledger: UtxoLedger) -> None:
    utxos = ledger.get_utxos(address(ALICE))
    spends = [
        build_sweep(utxos, ALICE, address(k), FEE + i).raw_tx
        for i, k in enumerate((BOB, MALLORY) * 4)
    ]
    accepted: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(spends))

    def send(raw: bytes) -> None:
        barrier.wait()
        try:
            accepted.append(ledger.broadcast(raw))
        except OutputSpent as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(raw,)) for raw in spends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 1 and len(errors) == len(spends) - 1
    held = ledger.get_balance(address(BOB)) + ledger.get_balance(address(MALLORY))
    assert held == 130_000 - FEE - spends.index(ledger.get_transaction(accepted[0]))


def test_a_version_read_as_negative_does_not_skip_relative_locks(
    ledger: UtxoLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by attacking the ledger: python-bitcointx reads nVersion 0xFFFFFFFF as -1, so
    a check of ``version < 2`` skipped BIP68, and an input locked for 100 blocks was
    spent at once. A node reads the version unsigned (it would apply BIP68, and it does
    not relay versions above 3): refused."""
    fresh = ledger.fund(address(ALICE), 50_000)
    ledger.mine()
    monkeypatch.setattr(bitcoin, "SWEEP_SEQUENCE", 100)
    honest = build_sweep([fresh], ALICE, address(BOB), FEE)
    refused(ledger, honest.raw_tx, NonStandard, "relative lock")

    def negative_version(tx: Any) -> None:
        from bitcointx.core import CTxInWitness, CTxWitness
        from bitcointx.core.key import CKey
        from bitcointx.core.script import CScriptWitness

        tx.nVersion = -1  # serialized as 0xFFFFFFFF
        key = CKey(ALICE, compressed=True)
        signature = key.sign(bitcoin._bip143_digest(tx, 0, key.pub, fresh.amount_sat))
        tx.wit = CTxWitness([CTxInWitness(CScriptWitness([signature + b"\x01", key.pub]))])

    refused(ledger, edit(honest.raw_tx, negative_version), NonStandard, "version")


def test_a_transaction_above_the_input_bound_is_refused_before_the_interpreter(
    ledger: UtxoLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by attacking the ledger: the interpreter re-hashes the transaction for every
    input (quadratic), under the ledger's lock, so one refused 1,600-input transaction
    stalled every caller for 20 s. Now inputs are bounded and the interpreter runs
    outside the lock."""
    from sealbridge.devnet import utxo_ledger

    calls: list[int] = []
    monkeypatch.setattr(utxo_ledger, "verify_sweep", lambda *a: calls.append(1))
    utxos = [ledger.fund(address(ALICE), 1_000) for _ in range(utxo_ledger.MAX_INPUTS + 1)]
    big = build_sweep(utxos, ALICE, address(BOB), 2 * FEE * len(utxos) // 10)
    refused(ledger, big.raw_tx, NonStandard, "at most")
    assert calls == []
