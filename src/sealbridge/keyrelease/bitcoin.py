"""Bitcoin for the key-release contracts: P2WPKH deposit keys and signed sweeps.

Theory of operation
-------------------
A bitcoin chunk is a P2WPKH output locked to a key that was generated inside an enclave.
Releasing the chunk means handing its 32-byte secret to the buyer, who then *sweeps* it:
one transaction spends every output of that key to one address of the buyer's.

* :func:`derive_p2wpkh` turns a secret into its compressed public key, HASH160, bech32
  address and ``scriptPubKey`` (``OP_0 <20-byte hash>``).
* :func:`build_sweep` spends a list of :class:`Utxo` of that key to a ``destination``,
  paying ``fee_sat``. Each input is signed with a BIP143 (segwit v0) signature over
  ``SIGHASH_ALL``, which commits to every input's amount and to the outputs, and carries
  the witness ``[signature, public key]``. The result is checked by :func:`verify_sweep`
  before it is returned.
* :func:`verify_sweep` decodes a raw transaction, checks that it spends exactly the given
  outputs in order, and runs python-bitcointx's script interpreter on every input against
  the funding output's script and amount.

python-bitcointx loads libsecp256k1 with ctypes. There is no system copy here, so the
one bundled in coincurve's wheel is used; it is located and loaded once, lazily, behind a
lock (:mod:`sealbridge.crypto.secp256k1_lib`). Every call selects its network (``"mainnet"``,
``"testnet"`` or ``"regtest"``) with bitcointx's ``ChainParams`` context manager, which is
thread-local and restored on exit.

No bitcoind can be installed on this machine, so nothing here talks to a node.
:class:`BitcoinChainAdapter` is the interface a node adapter would implement. Sweeps are
verified with the script interpreter against the funding outputs, which is the consensus
check a node would apply to each input (it does not see the UTXO set, so it cannot tell
whether an output is still unspent). :mod:`sealbridge.devnet.utxo_ledger` is a local
*model* of a node's UTXO set behind that interface (not a node); it uses
:func:`decode_transaction`, :func:`build_funding_transaction` and :func:`verify_sweep`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from sealbridge.core.encoding import Message
from sealbridge.crypto.secp256k1_lib import Secp256k1Unavailable
from sealbridge.crypto.secp256k1_lib import load_secp256k1 as load_library
from sealbridge.keyrelease.errors import KeyReleaseError

if TYPE_CHECKING:
    from bitcointx.core import CTransaction
    from bitcointx.core.scripteval import ScriptVerifyFlag_Type

__all__ = [
    "MAX_MONEY_SAT",
    "NETWORKS",
    "P2WPKH_DUST_SAT",
    "SECP256K1_ORDER",
    "BitcoinChainAdapter",
    "BitcoinError",
    "BitcoinKeyInfo",
    "BitcoinUnavailable",
    "DecodedTransaction",
    "InvalidAddress",
    "InvalidKey",
    "InvalidUtxo",
    "MalformedTransaction",
    "SweepInvalid",
    "SweepRefused",
    "SweepTransaction",
    "TxInput",
    "TxOutput",
    "UnsupportedNetwork",
    "Utxo",
    "build_funding_transaction",
    "build_sweep",
    "decode_transaction",
    "derive_p2wpkh",
    "dust_threshold_sat",
    "get_address_script",
    "get_p2wpkh_network",
    "is_p2wpkh_script",
    "load_secp256k1",
    "p2wpkh_address",
    "verify_sweep",
]

# Our network names -> python-bitcointx chain parameter names.
NETWORKS: dict[str, str] = {
    "mainnet": "bitcoin",
    "testnet": "bitcoin/testnet",
    "regtest": "bitcoin/regtest",
}
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_MONEY_SAT = 21_000_000 * 100_000_000
P2WPKH_DUST_SAT = 294  # dust_threshold_sat(<P2WPKH script>)
DUST_RELAY_SAT_PER_VBYTE = 3  # Bitcoin Core's default -dustrelayfee (3000 sat/kvB)
SWEEP_SEQUENCE = 0xFFFFFFFD  # BIP125: a stuck sweep can be replaced with a higher fee
_SIGHASH_ALL = 0x01
_MAX_VOUT = 0xFFFFFFFF
_MAX_BITCOINTX_LOCKTIME = 0x7FFFFFFF
MAX_TX_BYTES = 400_000  # Bitcoin Core's standard limit is 400,000 weight units
MAX_ADDRESS_CHARS = 90  # BIP173: a bech32 string is at most 90 characters


class BitcoinError(KeyReleaseError):
    """Base of the Bitcoin refusals."""

    code = "keyrelease_bitcoin"


class BitcoinUnavailable(BitcoinError):
    """libsecp256k1 could not be found or loaded for python-bitcointx."""

    code = "keyrelease_bitcoin_unavailable"


class UnsupportedNetwork(BitcoinError):
    """A network name other than mainnet, testnet or regtest."""

    code = "keyrelease_bitcoin_network"


class InvalidKey(BitcoinError):
    """A secret outside 0 < k < n, or a public key that is not a compressed curve point."""

    code = "keyrelease_bitcoin_key"


class InvalidAddress(BitcoinError):
    """An address that does not parse, or belongs to another network."""

    code = "keyrelease_bitcoin_address"


class InvalidUtxo(BitcoinError):
    """A malformed, duplicated or foreign funding output (or none at all)."""

    code = "keyrelease_bitcoin_utxo"


class SweepRefused(BitcoinError):
    """A sweep that would pay a non-positive fee, create dust or exceed the money supply."""

    code = "keyrelease_bitcoin_sweep_refused"


class SweepInvalid(BitcoinError):
    """A sweep transaction that does not validly spend the given outputs."""

    code = "keyrelease_bitcoin_sweep_invalid"


class MalformedTransaction(SweepInvalid):
    """Raw bytes that do not decode to exactly one transaction."""

    code = "keyrelease_bitcoin_malformed_tx"


class BitcoinKeyInfo(Message, frozen=True):
    """What a secret controls on one network."""

    public_key: bytes  # 33-byte compressed SEC1 point
    pubkey_hash: bytes  # HASH160(public_key), 20 bytes
    address: str  # bech32 segwit v0 address
    script_pubkey: bytes  # OP_0 <pubkey_hash>


class Utxo(Message, frozen=True):
    """An unspent output, as a node or block explorer reports it."""

    txid: str  # 64 hex digits, in the byte order explorers display
    vout: int
    amount_sat: int
    script_pubkey: bytes


class SweepTransaction(Message, frozen=True):
    """A fully signed sweep transaction, ready to broadcast."""

    raw_tx: bytes  # segwit serialization
    txid: str  # display byte order
    vsize: int
    fee_sat: int
    amount_sat: int  # paid to the destination


class TxInput(Message, frozen=True):
    """One input of a decoded transaction: the outpoint it spends."""

    txid: str  # display byte order
    vout: int
    sequence: int


class TxOutput(Message, frozen=True):
    amount_sat: int
    script_pubkey: bytes


class DecodedTransaction(Message, frozen=True):
    """What a node reads off a raw transaction before it looks at the UTXO set."""

    txid: str  # display byte order
    version: int
    lock_time: int
    inputs: list[TxInput]
    outputs: list[TxOutput]
    vsize: int
    is_coinbase: bool


class BitcoinChainAdapter(Protocol):
    """The interface a bitcoind (or Electrum server) adapter would implement.

    No node adapter is implemented: no bitcoind can be installed on this machine. Sweeps
    are verified with python-bitcointx's script interpreter against the funding outputs
    (:func:`verify_sweep`). An adapter supplies what the interpreter cannot know: which
    outputs exist and are unspent, propagation, and confirmation depth.
    :class:`sealbridge.devnet.utxo_ledger.UtxoLedger` implements it as a local model
    of a node's UTXO set (no network, no proof of work, no reorganisations).
    """

    def get_utxos(self, address: str) -> list[Utxo]:
        """The unspent outputs paying ``address``."""
        ...

    def broadcast(self, raw_tx: bytes) -> str:
        """Submit a raw transaction; return its txid (display byte order)."""
        ...

    def get_confirmations(self, txid: str) -> int:
        """Blocks confirming ``txid``: 0 when only in the mempool or unknown."""
        ...


# --- libsecp256k1 and chain parameters ---------------------------------------------


def load_secp256k1() -> None:
    """Load libsecp256k1 for python-bitcointx (once); raises BitcoinUnavailable on failure."""
    try:
        load_library()
    except Secp256k1Unavailable as exc:
        raise BitcoinUnavailable(str(exc)) from exc


@contextmanager
def _network(network: str) -> Iterator[None]:
    """Load the library and select ``network``'s chain parameters for the block."""
    chain = NETWORKS.get(network) if isinstance(network, str) else None
    if chain is None:
        raise UnsupportedNetwork(f"unknown network {network!r}; expected one of {list(NETWORKS)}")
    load_secp256k1()
    from bitcointx import ChainParams

    with ChainParams(chain):
        yield


# --- keys and addresses ------------------------------------------------------------------


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) != 32:
        raise InvalidKey("a secret must be 32 bytes")
    if not 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER:
        raise InvalidKey("a secret must be an integer k with 0 < k < n")


def _check_compressed_pubkey(public_key: bytes) -> None:
    if not isinstance(public_key, bytes):
        raise InvalidKey("a public key must be bytes")
    if len(public_key) == 65 and public_key[0] == 0x04:
        raise InvalidKey("segwit v0 requires a compressed (33-byte) public key")
    if len(public_key) != 33 or public_key[0] not in (0x02, 0x03):
        raise InvalidKey("a public key must be 33 bytes starting with 02 or 03")
    from bitcointx.core.key import CPubKey

    if not CPubKey(public_key).is_fullyvalid():
        raise InvalidKey("the public key is not a point on secp256k1")


def _p2wpkh_script(pubkey_hash: bytes) -> bytes:
    return bytes([0x00, 0x14]) + pubkey_hash


def _is_p2wpkh_script(script: bytes) -> bool:
    return len(script) == 22 and script[:2] == b"\x00\x14"


def is_p2wpkh_script(script: bytes) -> bool:
    """Whether ``script`` is a P2WPKH ``scriptPubKey`` (``OP_0 <20 bytes>``)."""
    return isinstance(script, bytes) and _is_p2wpkh_script(script)


def p2wpkh_address(public_key: bytes, network: str = "regtest") -> str:
    """The bech32 P2WPKH address of a compressed public key on ``network``."""
    with _network(network):
        _check_compressed_pubkey(public_key)
        from bitcointx.wallet import P2WPKHCoinAddress

        return str(P2WPKHCoinAddress.from_pubkey(public_key))


def derive_p2wpkh(secret: bytes, network: str = "regtest") -> BitcoinKeyInfo:
    """Public key, HASH160, address and scriptPubKey controlled by ``secret``."""
    _check_secret(secret)
    with _network(network):
        from bitcointx.core import Hash160
        from bitcointx.core.key import CKey

        public_key = bytes(CKey(secret, compressed=True).pub)
        pubkey_hash = Hash160(public_key)
        return BitcoinKeyInfo(
            public_key=public_key,
            pubkey_hash=pubkey_hash,
            address=p2wpkh_address(public_key, network),
            script_pubkey=_p2wpkh_script(pubkey_hash),
        )


def _destination_script(destination: str, network: str) -> bytes:
    """The scriptPubKey of ``destination``; call inside ``_network(network)``."""
    from bitcointx.wallet import CCoinAddress, CCoinAddressError

    if not isinstance(destination, str):
        raise InvalidAddress("a destination must be an address string")
    try:
        return bytes(CCoinAddress(destination).to_scriptPubKey())
    except (CCoinAddressError, ValueError) as exc:
        raise InvalidAddress(f"{destination!r} is not a valid {network} address: {exc}") from exc


def get_address_script(address: str, network: str = "regtest") -> bytes:
    """The ``scriptPubKey`` an address of ``network`` stands for; InvalidAddress if none."""
    if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_CHARS:
        raise InvalidAddress(f"an address is 1 to {MAX_ADDRESS_CHARS} characters")
    with _network(network):
        return _destination_script(address, network)


def get_p2wpkh_network(address: str) -> str:
    """The network (``NETWORKS`` key) of a P2WPKH address in canonical (lowercase)
    bech32 form; InvalidAddress for anything else."""
    if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_CHARS:
        raise InvalidAddress(f"an address is 1 to {MAX_ADDRESS_CHARS} characters")
    for network in NETWORKS:
        with _network(network):
            from bitcointx.core import AddressDataEncodingError
            from bitcointx.wallet import CCoinAddress, CCoinAddressError, P2WPKHCoinAddress

            try:
                parsed = CCoinAddress(address)
            except (CCoinAddressError, AddressDataEncodingError, ValueError):
                continue
            if isinstance(parsed, P2WPKHCoinAddress) and str(parsed) == address:
                return network
    raise InvalidAddress(f"{address!r} is not a canonical P2WPKH address of a known network")


# --- outputs and amounts -----------------------------------------------------------------


def _compact_size_len(n: int) -> int:
    return 1 if n < 0xFD else 3 if n <= 0xFFFF else 5 if n <= 0xFFFFFFFF else 9


def _is_witness_program(script: bytes) -> bool:
    if not 4 <= len(script) <= 42:
        return False
    version_ok = script[0] == 0x00 or 0x51 <= script[0] <= 0x60
    return version_ok and script[1] == len(script) - 2


def dust_threshold_sat(script_pubkey: bytes) -> int:
    """Smallest output value Bitcoin Core relays by default for ``script_pubkey``.

    An output is dust when spending it would cost more than it is worth at the dust relay
    fee: its own serialized size plus the size of a typical input that spends it (67 vbytes
    for witness programs, 148 bytes otherwise), at 3 sat/vbyte. P2WPKH: 294 sat.
    """
    output_size = 8 + _compact_size_len(len(script_pubkey)) + len(script_pubkey)
    spend_size = 67 if _is_witness_program(script_pubkey) else 148
    return DUST_RELAY_SAT_PER_VBYTE * (output_size + spend_size)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _outpoint(utxo: Utxo, index: int) -> tuple[bytes, int]:
    """Validate ``utxo`` and return its outpoint (txid in display order, vout)."""
    if not isinstance(utxo, Utxo):
        raise InvalidUtxo(f"utxo {index} is not a Utxo")
    txid = utxo.txid
    if not isinstance(txid, str) or len(txid) != 64:
        raise InvalidUtxo(f"utxo {index}: txid must be 64 hex digits")
    try:
        txid_bytes = bytes.fromhex(txid)
    except ValueError as exc:
        raise InvalidUtxo(f"utxo {index}: txid is not hex") from exc
    if not _is_int(utxo.vout) or not 0 <= utxo.vout <= _MAX_VOUT:
        raise InvalidUtxo(f"utxo {index}: vout must be in 0..2**32-1")
    if not _is_int(utxo.amount_sat) or not 0 < utxo.amount_sat <= MAX_MONEY_SAT:
        raise InvalidUtxo(f"utxo {index}: amount must be in 1..{MAX_MONEY_SAT} sat")
    if not isinstance(utxo.script_pubkey, bytes) or not _is_p2wpkh_script(utxo.script_pubkey):
        raise InvalidUtxo(f"utxo {index}: scriptPubKey is not P2WPKH")
    return txid_bytes, utxo.vout


def _outpoints(utxos: Sequence[Utxo]) -> list[tuple[bytes, int]]:
    """Validate a non-empty list of distinct outputs; return their outpoints in order."""
    if not utxos:
        raise InvalidUtxo("a sweep needs at least one utxo")
    points = [_outpoint(utxo, i) for i, utxo in enumerate(utxos)]
    if len(set(points)) != len(points):
        raise InvalidUtxo("the same outpoint is listed twice")
    return points


def _sweep_amount(utxos: Sequence[Utxo], fee_sat: int, destination_script: bytes) -> int:
    if not _is_int(fee_sat) or fee_sat <= 0:
        raise SweepRefused("the fee must be a positive integer (sat)")
    total = sum(utxo.amount_sat for utxo in utxos)
    if total > MAX_MONEY_SAT:
        raise SweepRefused("the inputs exceed the money supply")
    amount = total - fee_sat
    dust = dust_threshold_sat(destination_script)
    if amount < dust:
        raise SweepRefused(f"{total} - {fee_sat} sat leaves {amount} sat, below dust ({dust})")
    return amount


# --- building and verifying sweeps -------------------------------------------------------


def build_sweep(
    utxos: Sequence[Utxo],
    secret: bytes,
    destination: str,
    fee_sat: int,
    network: str = "regtest",
) -> SweepTransaction:
    """Spend every one of ``utxos`` (all P2WPKH outputs of ``secret``) to ``destination``."""
    key_info = derive_p2wpkh(secret, network)  # checks the secret and the network
    points = _outpoints(utxos)
    for i, utxo in enumerate(utxos):
        if utxo.script_pubkey != key_info.script_pubkey:
            raise InvalidUtxo(f"utxo {i} ({utxo.txid}:{utxo.vout}) is not paid to this key")
    with _network(network):
        destination_script = _destination_script(destination, network)
        amount = _sweep_amount(utxos, fee_sat, destination_script)
        tx = _signed_transaction(utxos, points, secret, destination_script, amount)
        sweep = SweepTransaction(
            raw_tx=tx.serialize(),
            txid=_display_hex(tx.GetTxid()),
            vsize=tx.get_virtual_size(),
            fee_sat=fee_sat,
            amount_sat=amount,
        )
    verify_sweep(sweep.raw_tx, utxos, network)
    return sweep


def _display_hex(hash_bytes: bytes) -> str:
    return hash_bytes[::-1].hex()


def _signed_transaction(
    utxos: Sequence[Utxo],
    points: list[tuple[bytes, int]],
    secret: bytes,
    destination_script: bytes,
    amount: int,
) -> CTransaction:
    """Build and sign the sweep; call inside ``_network``."""
    from bitcointx.core import (
        CMutableTransaction,
        COutPoint,
        CTxIn,
        CTxInWitness,
        CTxOut,
        CTxWitness,
    )
    from bitcointx.core.key import CKey
    from bitcointx.core.script import CScript, CScriptWitness

    key = CKey(secret, compressed=True)
    tx = CMutableTransaction(
        vin=[CTxIn(COutPoint(txid[::-1], vout), nSequence=SWEEP_SEQUENCE) for txid, vout in points],
        vout=[CTxOut(amount, CScript(destination_script))],
        nLockTime=0,
        nVersion=2,
    )
    stacks = []
    for i, utxo in enumerate(utxos):
        signature = key.sign(_bip143_digest(tx, i, key.pub, utxo.amount_sat))
        stacks.append(CTxInWitness(CScriptWitness([signature + bytes([_SIGHASH_ALL]), key.pub])))
    tx.wit = CTxWitness(stacks)
    return tx


def _bip143_digest(tx: CTransaction, index: int, public_key: bytes, amount_sat: int) -> bytes:
    """The segwit v0 SIGHASH_ALL digest of input ``index``, spending ``amount_sat``."""
    from bitcointx.core import Hash160
    from bitcointx.core.script import (
        OP_CHECKSIG,
        OP_DUP,
        OP_EQUALVERIFY,
        OP_HASH160,
        SIGHASH_ALL,
        SIGVERSION_WITNESS_V0,
        CScript,
    )

    # BIP143: the scriptCode of a P2WPKH input is the P2PKH script of the same hash.
    script_code = CScript([OP_DUP, OP_HASH160, Hash160(public_key), OP_EQUALVERIFY, OP_CHECKSIG])
    digest: bytes = script_code.sighash(
        tx, index, SIGHASH_ALL, amount=amount_sat, sigversion=SIGVERSION_WITNESS_V0
    )
    return digest


def _decode_transaction(raw_tx: bytes) -> CTransaction:
    """Decode exactly one transaction; call inside ``_network``."""
    from bitcointx.core import CTransaction
    from bitcointx.core.serialize import SerializationError

    if not isinstance(raw_tx, bytes | bytearray):
        raise MalformedTransaction("a raw transaction must be bytes")
    try:
        return CTransaction.deserialize(bytes(raw_tx))
    except (SerializationError, ValueError, struct.error) as exc:
        raise MalformedTransaction(f"raw transaction does not decode: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 -- the decoder's own bugs on junk (e.g.
        # UnboundLocalError on some malformed inputs) must not escape untyped
        raise MalformedTransaction(f"raw transaction does not decode: {exc!r}") from exc


def _check_shape(tx: CTransaction, points: list[tuple[bytes, int]], utxos: Sequence[Utxo]) -> None:
    """Inputs are exactly ``points`` in order; outputs are sane and within the inputs."""
    if len(tx.vin) != len(points):
        raise SweepInvalid(f"the transaction has {len(tx.vin)} inputs, expected {len(points)}")
    for i, (txin, (txid, vout)) in enumerate(zip(tx.vin, points, strict=True)):
        spent = (bytes(txin.prevout.hash)[::-1], txin.prevout.n)
        if spent != (txid, vout):
            raise SweepInvalid(
                f"input {i} spends {spent[0].hex()}:{spent[1]}, expected {txid.hex()}:{vout}"
            )
    if tx.nLockTime > _MAX_BITCOINTX_LOCKTIME:
        # Valid on chain, but bitcointx packs nLockTime as int32 in the BIP143 digest and
        # cannot check it. Our sweeps use nLockTime 0.
        raise SweepInvalid(f"nLockTime {tx.nLockTime} is beyond what can be verified here")
    if not tx.vout:
        raise SweepInvalid("the transaction has no outputs")
    values = [txout.nValue for txout in tx.vout]
    if any(not 0 <= value <= MAX_MONEY_SAT for value in values):
        raise SweepInvalid("an output value is out of range")
    if sum(values) > sum(utxo.amount_sat for utxo in utxos):
        raise SweepInvalid("the outputs exceed the inputs")


def _verify_flags() -> set[ScriptVerifyFlag_Type]:
    """Consensus (P2SH, WITNESS) plus the standardness rules relevant to P2WPKH spends."""
    from bitcointx.core import scripteval as se

    return {
        se.SCRIPT_VERIFY_P2SH,
        se.SCRIPT_VERIFY_WITNESS,
        se.SCRIPT_VERIFY_STRICTENC,
        se.SCRIPT_VERIFY_DERSIG,
        se.SCRIPT_VERIFY_LOW_S,
        se.SCRIPT_VERIFY_NULLDUMMY,
        se.SCRIPT_VERIFY_CLEANSTACK,
        se.SCRIPT_VERIFY_NULLFAIL,
        se.SCRIPT_VERIFY_WITNESS_PUBKEYTYPE,
        se.SCRIPT_VERIFY_DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM,
    }


def _verify_input(tx: CTransaction, index: int, utxo: Utxo) -> None:
    from bitcointx.core import ValidationError
    from bitcointx.core.script import CScript, CScriptWitness
    from bitcointx.core.scripteval import VerifyScript

    witness = tx.wit.vtxinwit[index].scriptWitness if tx.has_witness() else CScriptWitness([])
    try:
        VerifyScript(
            tx.vin[index].scriptSig,
            CScript(utxo.script_pubkey),
            tx,
            index,
            flags=_verify_flags(),
            amount=utxo.amount_sat,
            witness=witness,
        )
    except (ValidationError, ValueError) as exc:
        raise SweepInvalid(
            f"input {index} ({utxo.txid}:{utxo.vout}) fails script verification: {exc}"
        ) from exc


def decode_transaction(raw_tx: bytes, network: str = "regtest") -> DecodedTransaction:
    """Decode one canonically serialized transaction of at most ``MAX_TX_BYTES``; else
    MalformedTransaction. Nothing is verified here but the encoding."""
    if not isinstance(raw_tx, bytes) or not 0 < len(raw_tx) <= MAX_TX_BYTES:
        raise MalformedTransaction(f"a raw transaction is 1 to {MAX_TX_BYTES} bytes")
    with _network(network):
        tx = _decode_transaction(raw_tx)
        if bytes(tx.serialize()) != raw_tx:
            raise MalformedTransaction("the transaction is not canonically serialized")
        return DecodedTransaction(
            txid=_display_hex(tx.GetTxid()),
            version=tx.nVersion,
            lock_time=tx.nLockTime,
            inputs=[
                TxInput(
                    txid=_display_hex(bytes(txin.prevout.hash)),
                    vout=txin.prevout.n,
                    sequence=txin.nSequence,
                )
                for txin in tx.vin
            ],
            outputs=[
                TxOutput(amount_sat=txout.nValue, script_pubkey=bytes(txout.scriptPubKey))
                for txout in tx.vout
            ],
            vsize=tx.get_virtual_size(),
            is_coinbase=tx.is_coinbase(),
        )


def build_funding_transaction(
    script_pubkey: bytes, amount_sat: int, serial: int, network: str = "regtest"
) -> tuple[bytes, str]:
    """A coinbase-shaped transaction paying ``amount_sat`` to ``script_pubkey``: one input
    with the null outpoint whose scriptSig carries a tag and ``serial`` (so the txid is
    deterministic and distinct per serial), one output. Returns (raw tx, txid). Used by the
    local ledger model to create funds; it proves nothing about any real chain."""
    if not isinstance(script_pubkey, bytes) or not 0 < len(script_pubkey) <= 10_000:
        raise InvalidUtxo("a funding script must be 1 to 10,000 bytes")
    if not _is_int(amount_sat) or not 0 < amount_sat <= MAX_MONEY_SAT:
        raise InvalidUtxo(f"a funding amount must be in 1..{MAX_MONEY_SAT} sat")
    if not _is_int(serial) or not 0 <= serial < 2**64:
        raise InvalidUtxo("a funding serial must be in 0..2**64-1")
    with _network(network):
        from bitcointx.core import CMutableTransaction, COutPoint, CTxIn, CTxOut
        from bitcointx.core.script import CScript

        script_sig = CScript([b"sealbridge/utxo-ledger/funding", serial.to_bytes(8, "big")])
        tx = CMutableTransaction(
            vin=[CTxIn(COutPoint(), script_sig, nSequence=0xFFFFFFFF)],
            vout=[CTxOut(amount_sat, CScript(script_pubkey))],
            nVersion=2,
            nLockTime=0,
        )
        return bytes(tx.serialize()), _display_hex(tx.GetTxid())


def verify_sweep(raw_tx: bytes, utxos: Sequence[Utxo], network: str = "regtest") -> None:
    """Check that ``raw_tx`` validly spends exactly ``utxos``, in order; else SweepInvalid."""
    points = _outpoints(utxos)
    with _network(network):
        tx = _decode_transaction(raw_tx)
        _check_shape(tx, points, utxos)
        for index, utxo in enumerate(utxos):
            _verify_input(tx, index, utxo)
