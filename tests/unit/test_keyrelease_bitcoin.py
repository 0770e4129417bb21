"""Bitcoin P2WPKH keys and sweeps: BIP-173/BIP-143 vectors, script-interpreter checks of
signed sweeps, tampering, and every refusal."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import coincurve
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbridge.keyrelease import bitcoin
from sealbridge.keyrelease.bitcoin import (
    P2WPKH_DUST_SAT,
    SECP256K1_ORDER,
    BitcoinError,
    InvalidAddress,
    InvalidKey,
    InvalidUtxo,
    MalformedTransaction,
    SweepInvalid,
    SweepRefused,
    SweepTransaction,
    UnsupportedNetwork,
    Utxo,
    build_sweep,
    derive_p2wpkh,
    dust_threshold_sat,
    load_secp256k1,
    p2wpkh_address,
    verify_sweep,
)
from sealbridge.keyrelease.errors import KeyReleaseError

# BIP-173: the P2WPKH of the generator point G (the public key of secret 1).
G_PUB = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
G_MAINNET = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
G_TESTNET = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
SECRET = (0x1F2E3D4C5B6A79880123456789ABCDEF).to_bytes(32, "big")
OTHER_SECRET = (0xC0FFEE).to_bytes(32, "big")
DEST_SECRET = (0xBEEF).to_bytes(32, "big")


def _secret(k: int) -> bytes:
    return k.to_bytes(32, "big")


def _utxos(secret: bytes, amounts: list[int], salt: int = 0) -> list[Utxo]:
    script = derive_p2wpkh(secret).script_pubkey
    return [
        Utxo(
            txid=hashlib.sha256(f"{salt}:{i}".encode()).hexdigest(),
            vout=i % 3,
            amount_sat=amount,
            script_pubkey=script,
        )
        for i, amount in enumerate(amounts)
    ]


def _dest(network: str = "regtest") -> str:
    return derive_p2wpkh(DEST_SECRET, network).address


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _legacy_serialization(raw: bytes, n_inputs: int) -> bytes:
    """Strip marker, flag and witness from a sweep with one P2WPKH output (< 253 inputs)."""
    assert raw[4:6] == b"\x00\x01"  # segwit marker and flag
    body_len = 1 + 41 * n_inputs + 1 + 31  # empty scriptSigs; 8 + 1 + 22 byte output
    return raw[:4] + raw[6 : 6 + body_len] + raw[-4:]


@contextmanager
def _regtest() -> Iterator[None]:
    load_secp256k1()
    from bitcointx import ChainParams

    with ChainParams("bitcoin/regtest"):
        yield


def _edit(raw: bytes, change: Callable[[Any], None]) -> bytes:
    """Decode ``raw`` with bitcointx, let ``change`` mutate it, and re-serialize."""
    with _regtest():
        from bitcointx.core import CMutableTransaction, CTransaction

        tx = CMutableTransaction.from_tx(CTransaction.deserialize(raw))
        change(tx)
        return bytes(tx.serialize())


# --- keys and addresses ------------------------------------------------------------------


def test_bip173_vectors() -> None:
    assert p2wpkh_address(G_PUB, "mainnet") == G_MAINNET
    assert p2wpkh_address(G_PUB, "testnet") == G_TESTNET
    regtest = p2wpkh_address(G_PUB, "regtest")
    assert regtest.startswith("bcrt1q") and regtest != G_MAINNET
    assert p2wpkh_address(G_PUB) == regtest  # regtest is the default


def test_derive_matches_generator_and_coincurve() -> None:
    info = derive_p2wpkh(_secret(1), "mainnet")
    assert info.public_key == G_PUB
    assert info.address == G_MAINNET
    assert info.pubkey_hash == bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert info.script_pubkey == b"\x00\x14" + info.pubkey_hash

    info = derive_p2wpkh(SECRET)
    assert info.public_key == coincurve.PrivateKey(SECRET).public_key.format(compressed=True)
    assert info.address.startswith("bcrt1q")
    assert derive_p2wpkh(SECRET, "testnet").address.startswith("tb1q")
    assert derive_p2wpkh(SECRET, "testnet").script_pubkey == info.script_pubkey


@pytest.mark.parametrize(
    "secret",
    [
        _secret(0),
        _secret(SECP256K1_ORDER),
        _secret(SECP256K1_ORDER + 1),
        b"\x01" * 31,
        b"\x01" * 33,
    ],
    ids=["zero", "n", "n+1", "short", "long"],
)
def test_bad_secret_is_refused(secret: bytes) -> None:
    with pytest.raises(InvalidKey):
        derive_p2wpkh(secret)
    with pytest.raises(InvalidKey):
        build_sweep(_utxos(SECRET, [10_000]), secret, _dest(), 500)


def test_largest_secret_is_accepted() -> None:
    info = derive_p2wpkh(_secret(SECP256K1_ORDER - 1))
    assert info.public_key == bytes.fromhex("03" + G_PUB[1:].hex())  # -G: same x, odd y


def test_public_key_must_be_compressed_and_on_the_curve() -> None:
    uncompressed = coincurve.PrivateKey(SECRET).public_key.format(compressed=False)
    with pytest.raises(InvalidKey, match="compressed"):
        p2wpkh_address(uncompressed)
    not_on_curve = b"\x02" + (5).to_bytes(32, "big")  # x = 5: x^3 + 7 is not a square
    with pytest.raises(InvalidKey):
        p2wpkh_address(not_on_curve)
    with pytest.raises(InvalidKey):
        p2wpkh_address(b"\x05" + G_PUB[1:])
    with pytest.raises(InvalidKey):
        p2wpkh_address(G_PUB[:-1])


def test_unknown_network_is_refused() -> None:
    with pytest.raises(UnsupportedNetwork):
        derive_p2wpkh(SECRET, "bitcoin")
    with pytest.raises(UnsupportedNetwork):
        p2wpkh_address(G_PUB, "signet")


def test_errors_are_key_release_errors() -> None:
    for cls in (InvalidKey, InvalidAddress, InvalidUtxo, SweepRefused, SweepInvalid):
        assert issubclass(cls, BitcoinError) and issubclass(cls, KeyReleaseError)
    assert issubclass(MalformedTransaction, SweepInvalid)
    assert len({cls.code for cls in (BitcoinError, InvalidKey, SweepInvalid)}) == 3


def test_network_selection_is_thread_local_and_restored() -> None:
    from bitcointx import get_current_chain_params

    before = get_current_chain_params().NAME
    seen: dict[str, set[str]] = {}
    lock = threading.Lock()

    def work(network: str) -> None:
        for _ in range(20):
            address = derive_p2wpkh(SECRET, network).address
            with lock:
                seen.setdefault(network, set()).add(address)

    threads = [threading.Thread(target=work, args=(n,)) for n in bitcoin.NETWORKS for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    prefixes = {"mainnet": "bc1q", "testnet": "tb1q", "regtest": "bcrt1q"}
    for network, addresses in seen.items():
        (address,) = addresses
        assert address.startswith(prefixes[network])
    assert get_current_chain_params().NAME == before


# --- BIP143 digest -----------------------------------------------------------------------


def test_bip143_native_p2wpkh_vector() -> None:
    # BIP143 "Native P2WPKH" example: the digest of input 1 (6 BTC, SIGHASH_ALL).
    unsigned = bytes.fromhex(
        "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f000000"
        "0000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100"
        "000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d59"
        "88ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000"
    )
    pubkey = bytes.fromhex("025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357")
    with _regtest():
        from bitcointx.core import CTransaction

        tx = CTransaction.deserialize(unsigned)
        digest = bitcoin._bip143_digest(tx, 1, pubkey, 600_000_000)
    assert digest.hex() == "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"


# --- sweeps ------------------------------------------------------------------------------


def _check_sweep(sweep: SweepTransaction, utxos: list[Utxo], destination: str) -> None:
    total = sum(u.amount_sat for u in utxos)
    assert sweep.amount_sat + sweep.fee_sat == total
    legacy = _legacy_serialization(sweep.raw_tx, len(utxos))
    assert sweep.txid == _sha256d(legacy)[::-1].hex()
    weight = 3 * len(legacy) + len(sweep.raw_tx)
    assert sweep.vsize == (weight + 3) // 4
    output_at = 1 + 41 * len(utxos) + 1
    output = legacy[4 + output_at : 4 + output_at + 31]
    assert int.from_bytes(output[:8], "little") == sweep.amount_sat
    assert output[8] == 22 and output[9:] == derive_p2wpkh(DEST_SECRET).script_pubkey
    assert derive_p2wpkh(DEST_SECRET).address == destination
    verify_sweep(sweep.raw_tx, utxos)


def test_sweep_of_one_utxo_verifies() -> None:
    utxos = _utxos(SECRET, [100_000])
    sweep = build_sweep(utxos, SECRET, _dest(), 1_000)
    assert sweep.fee_sat == 1_000 and sweep.amount_sat == 99_000
    assert 105 <= sweep.vsize <= 115  # 1-in 1-out P2WPKH is about 110 vbytes
    _check_sweep(sweep, utxos, _dest())


def test_sweep_of_several_utxos_verifies() -> None:
    utxos = _utxos(SECRET, [10_000, 25_000, 700, 1_234_567])
    sweep = build_sweep(utxos, SECRET, _dest(), 2_500)
    assert sweep.amount_sat == 10_000 + 25_000 + 700 + 1_234_567 - 2_500
    _check_sweep(sweep, utxos, _dest())


def test_sweep_on_mainnet_and_testnet() -> None:
    for network in ("mainnet", "testnet"):
        script = derive_p2wpkh(SECRET, network).script_pubkey
        utxos = [Utxo(txid="ab" * 32, vout=1, amount_sat=50_000, script_pubkey=script)]
        sweep = build_sweep(utxos, SECRET, _dest(network), 300, network)
        verify_sweep(sweep.raw_tx, utxos, network)


def test_sweep_to_other_address_types() -> None:
    with _regtest():
        from bitcointx.core.key import CPubKey
        from bitcointx.wallet import P2PKHCoinAddress

        p2pkh = str(P2PKHCoinAddress.from_pubkey(CPubKey(G_PUB)))
    utxos = _utxos(SECRET, [10_000])
    sweep = build_sweep(utxos, SECRET, p2pkh, 10_000 - 546)
    verify_sweep(sweep.raw_tx, utxos)
    with pytest.raises(SweepRefused, match="dust"):
        build_sweep(utxos, SECRET, p2pkh, 10_000 - 545)


def test_dust_thresholds() -> None:
    assert dust_threshold_sat(b"\x00\x14" + bytes(20)) == P2WPKH_DUST_SAT == 294
    assert dust_threshold_sat(bytes.fromhex("76a914") + bytes(20) + bytes.fromhex("88ac")) == 546
    assert dust_threshold_sat(b"\x51\x20" + bytes(32)) == 330  # P2TR
    assert dust_threshold_sat(b"\x00\x20" + bytes(32)) == 330  # P2WSH
    assert dust_threshold_sat(b"\xa9\x14" + bytes(20) + b"\x87") == 540  # P2SH


def test_sweep_is_deterministic() -> None:
    utxos = _utxos(SECRET, [40_000, 2_000])
    assert build_sweep(utxos, SECRET, _dest(), 900) == build_sweep(utxos, SECRET, _dest(), 900)


# --- tampering ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed() -> tuple[SweepTransaction, list[Utxo]]:
    utxos = _utxos(SECRET, [30_000, 45_000, 5_000])
    return build_sweep(utxos, SECRET, _dest(), 1_500), utxos


def test_changed_output_amount_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed

    def lower(tx: Any) -> None:
        tx.vout[0].nValue -= 1  # the fee goes up by one sat, but the signatures break

    with pytest.raises(SweepInvalid, match="input 0"):
        verify_sweep(_edit(sweep.raw_tx, lower), utxos)


def test_changed_destination_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed

    def redirect(tx: Any) -> None:
        from bitcointx.core.script import CScript

        tx.vout[0].scriptPubKey = CScript(derive_p2wpkh(OTHER_SECRET).script_pubkey)

    with pytest.raises(SweepInvalid):
        verify_sweep(_edit(sweep.raw_tx, redirect), utxos)


def test_utxo_amount_other_than_signed_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed
    for i in range(len(utxos)):
        wrong = list(utxos)
        wrong[i] = Utxo(
            txid=utxos[i].txid,
            vout=utxos[i].vout,
            amount_sat=utxos[i].amount_sat + 1,
            script_pubkey=utxos[i].script_pubkey,
        )
        with pytest.raises(SweepInvalid, match=f"input {i} "):
            verify_sweep(sweep.raw_tx, wrong)


def test_signature_by_another_key_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed
    forged = _utxos(OTHER_SECRET, [u.amount_sat for u in utxos])
    forged = [
        Utxo(txid=u.txid, vout=u.vout, amount_sat=u.amount_sat, script_pubkey=f.script_pubkey)
        for u, f in zip(utxos, forged, strict=True)
    ]
    other = build_sweep(forged, OTHER_SECRET, _dest(), 1_500)
    with pytest.raises(SweepInvalid):  # another key's witness: its pubkey hash is wrong
        verify_sweep(other.raw_tx, utxos)

    def other_signature(tx: Any) -> None:
        with _regtest():
            from bitcointx.core import CTransaction

            other_wit = CTransaction.deserialize(other.raw_tx).wit.vtxinwit[1]
        from bitcointx.core import CTxInWitness
        from bitcointx.core.script import CScriptWitness

        pubkey = tx.wit.vtxinwit[1].scriptWitness.stack[1]
        stack = [other_wit.scriptWitness.stack[0], pubkey]
        tx.wit.vtxinwit[1] = CTxInWitness(CScriptWitness(stack))

    with pytest.raises(SweepInvalid, match="input 1"):  # right pubkey, wrong key's signature
        verify_sweep(_edit(sweep.raw_tx, other_signature), utxos)


def test_swapped_input_order_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed
    swapped = [utxos[1], utxos[0], utxos[2]]
    with pytest.raises(SweepInvalid, match="input 0 spends"):
        verify_sweep(sweep.raw_tx, swapped)

    def swap(tx: Any) -> None:
        tx.vin[0], tx.vin[1] = tx.vin[1], tx.vin[0]
        wit = tx.wit.vtxinwit
        wit[0], wit[1] = wit[1], wit[0]

    with pytest.raises(SweepInvalid, match="fails script verification"):
        verify_sweep(_edit(sweep.raw_tx, swap), swapped)  # inputs match, signatures do not


def test_missing_or_extra_input_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed
    with pytest.raises(SweepInvalid, match="3 inputs"):
        verify_sweep(sweep.raw_tx, utxos[:2])
    with pytest.raises(SweepInvalid, match="3 inputs"):
        verify_sweep(sweep.raw_tx, utxos + _utxos(SECRET, [1_000], salt=9))


def test_stripped_witness_fails(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed

    def strip(tx: Any) -> None:
        from bitcointx.core import CTxWitness

        tx.wit = CTxWitness()

    stripped = _edit(sweep.raw_tx, strip)
    assert stripped[4:6] != b"\x00\x01"
    with pytest.raises(SweepInvalid, match="input 0"):
        verify_sweep(stripped, utxos)


def test_truncated_or_padded_bytes_fail(signed: tuple[SweepTransaction, list[Utxo]]) -> None:
    sweep, utxos = signed
    for cut in (0, 1, 5, len(sweep.raw_tx) // 2, len(sweep.raw_tx) - 1):
        with pytest.raises(MalformedTransaction):
            verify_sweep(sweep.raw_tx[:cut], utxos)
    with pytest.raises(MalformedTransaction):
        verify_sweep(sweep.raw_tx + b"\x00", utxos)
    with pytest.raises(MalformedTransaction):
        verify_sweep("00" * 10, utxos)  # type: ignore[arg-type]


def test_a_cleared_segwit_flag_is_a_typed_refusal(
    signed: tuple[SweepTransaction, list[Utxo]],
) -> None:
    """Found by the property test below: with the segwit flag byte cleared, the decoder
    raised its own UnboundLocalError, which escaped untyped."""
    sweep, utxos = signed
    raw = bytearray(sweep.raw_tx)
    raw[5] ^= 1
    with pytest.raises(SweepInvalid):
        verify_sweep(bytes(raw), utxos)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_byte_change_fails(
    signed: tuple[SweepTransaction, list[Utxo]], data: st.DataObject
) -> None:
    sweep, utxos = signed
    raw = bytearray(sweep.raw_tx)
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SweepInvalid):
        verify_sweep(bytes(raw), utxos)


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_give_typed_errors(raw: bytes) -> None:
    utxos = _utxos(SECRET, [10_000])
    with pytest.raises(SweepInvalid):
        verify_sweep(raw, utxos)


# --- refusals ----------------------------------------------------------------------------


def test_foreign_network_destination_is_refused() -> None:
    utxos = _utxos(SECRET, [10_000])
    for foreign in (G_MAINNET, G_TESTNET, "not an address", ""):
        with pytest.raises(InvalidAddress):
            build_sweep(utxos, SECRET, foreign, 500)
    script = derive_p2wpkh(SECRET, "testnet").script_pubkey
    testnet_utxos = [Utxo(txid="cd" * 32, vout=0, amount_sat=10_000, script_pubkey=script)]
    with pytest.raises(InvalidAddress):
        build_sweep(testnet_utxos, SECRET, _dest("regtest"), 500, "testnet")
    with pytest.raises(InvalidAddress):
        build_sweep(testnet_utxos, SECRET, _dest("mainnet"), 500, "testnet")


def test_dust_and_bad_fees_are_refused() -> None:
    utxos = _utxos(SECRET, [10_000])
    build_sweep(utxos, SECRET, _dest(), 10_000 - P2WPKH_DUST_SAT)  # exactly at the limit
    for fee in (10_000 - P2WPKH_DUST_SAT + 1, 10_000, 20_000, 0, -5):
        with pytest.raises(SweepRefused):
            build_sweep(utxos, SECRET, _dest(), fee)
    with pytest.raises(SweepRefused):
        build_sweep(utxos, SECRET, _dest(), True)


def test_bad_utxo_lists_are_refused() -> None:
    utxos = _utxos(SECRET, [10_000, 20_000])
    with pytest.raises(InvalidUtxo, match="at least one"):
        build_sweep([], SECRET, _dest(), 500)
    with pytest.raises(InvalidUtxo, match="twice"):
        build_sweep([utxos[0], utxos[1], utxos[0]], SECRET, _dest(), 500)
    upper = Utxo(
        txid=utxos[0].txid.upper(),
        vout=utxos[0].vout,
        amount_sat=1,
        script_pubkey=utxos[0].script_pubkey,
    )
    with pytest.raises(InvalidUtxo, match="twice"):  # the same outpoint, spelled differently
        build_sweep([utxos[0], upper], SECRET, _dest(), 500)
    foreign = _utxos(OTHER_SECRET, [10_000], salt=5)
    with pytest.raises(InvalidUtxo, match="utxo 1 .* not paid to this key"):
        build_sweep([utxos[0], foreign[0]], SECRET, _dest(), 500)
    with pytest.raises(InvalidUtxo):
        verify_sweep(b"", [])


@pytest.mark.parametrize(
    "field",
    [
        {"txid": "ab" * 31},
        {"txid": "zz" * 32},
        {"vout": -1},
        {"vout": 2**32},
        {"amount_sat": 0},
        {"amount_sat": 21_000_000 * 10**8 + 1},
        {"script_pubkey": b"\x00\x20" + bytes(32)},
        {"script_pubkey": b"\x76\xa9\x14" + bytes(20) + b"\x88\xac"},
    ],
    ids=lambda f: next(iter(f)),
)
def test_malformed_utxo_is_refused(field: dict[str, Any]) -> None:
    good = _utxos(SECRET, [10_000])[0]
    values: dict[str, Any] = {
        "txid": good.txid,
        "vout": good.vout,
        "amount_sat": good.amount_sat,
        "script_pubkey": good.script_pubkey,
    }
    bad = Utxo(**(values | field))
    with pytest.raises(InvalidUtxo):
        build_sweep([bad], SECRET, _dest(), 500)
    with pytest.raises(InvalidUtxo):
        verify_sweep(b"\x00", [bad])


def test_inputs_beyond_money_supply_are_refused() -> None:
    utxos = _utxos(SECRET, [21_000_000 * 10**8, 1])
    with pytest.raises(SweepRefused, match="money supply"):
        build_sweep(utxos, SECRET, _dest(), 500)


# --- property ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, SECP256K1_ORDER - 1),
    amounts=st.lists(st.integers(1, 10**10), min_size=1, max_size=4),
    data=st.data(),
)
def test_build_then_verify_always_passes(k: int, amounts: list[int], data: st.DataObject) -> None:
    total = sum(amounts)
    if total <= P2WPKH_DUST_SAT:
        amounts = [*amounts, P2WPKH_DUST_SAT]
        total += P2WPKH_DUST_SAT
    fee = data.draw(st.integers(1, total - P2WPKH_DUST_SAT), label="fee")
    secret = _secret(k)
    utxos = _utxos(secret, amounts, salt=k)
    sweep = build_sweep(utxos, secret, _dest(), fee)
    assert sweep.amount_sat == total - fee >= P2WPKH_DUST_SAT
    _check_sweep(sweep, utxos, _dest())
