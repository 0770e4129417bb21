"""A local bitcoin UTXO ledger: a *model* of what a node does with our transactions.

Theory of operation
-------------------
This is not a bitcoin node and talks to none: no bitcoind can be installed on this
machine. :class:`UtxoLedger` is an in-memory model of one network's UTXO set, mempool and
block count, behind the :class:`~sealbridge.keyrelease.bitcoin.BitcoinChainAdapter`
protocol, so that the key-release devnet can fund bitcoin chunks, sweep them and withdraw
them, and so that a sweep is checked against the outputs that really exist.

* **Funding.** :meth:`UtxoLedger.fund` creates money: a coinbase-shaped transaction
  (null outpoint, a tag and a serial number in its scriptSig; see
  :func:`~sealbridge.keyrelease.bitcoin.build_funding_transaction`) paying ``amount_sat``
  to an address. Its txid is deterministic (the n-th funding of a ledger always has the
  same txid for the same output). There is no block reward, no coinbase maturity and no
  supply schedule: the total funded only has to stay within 21M BTC.
* **Broadcast.** :meth:`UtxoLedger.broadcast` decodes a raw transaction (at most
  ``MAX_TX_BYTES``, canonically serialized, not a coinbase, at most
  ``MAX_STANDARD_VSIZE`` vbytes and -- this model's own bound -- ``MAX_INPUTS`` inputs)
  and accepts it only if

  - every input spends an output the ledger holds and nobody spent (``UnknownOutput``,
    ``OutputSpent``), no outpoint twice (``DuplicateInput``);
  - every spent output is P2WPKH: the only kind this model spends (``NonStandard``);
  - its version is standard (1 to 3, read unsigned as a node does) and it is final at
    the next block (absolute lock time by height, BIP68 relative lock times by height;
    time-based locks are not modelled and refused);
  - the outputs are worth at most the inputs (``ValueCreated``), none is below Bitcoin
    Core's dust threshold (OP_RETURN outputs aside), and the fee is at least
    ``MIN_RELAY_FEE_SAT_PER_VBYTE`` x vsize (``NonStandard``);
  - python-bitcointx's script interpreter accepts every input against the spent output's
    script *and amount* (:func:`~sealbridge.keyrelease.bitcoin.verify_sweep`; BIP143
    signatures commit to the amount, so a signature made for another amount fails).

  A refusal raises one of these typed errors (all in ``bitcoin.py``'s error tree, all
  :class:`~sealbridge.keyrelease.errors.KeyReleaseError`) and changes nothing. Accepted,
  the transaction's inputs are spent and its outputs (OP_RETURN ones aside) can be spent
  by later transactions at once, confirmed or not, as in a node's mempool. Broadcasting
  a transaction the ledger holds already returns its txid and changes nothing.
* **Blocks.** :meth:`UtxoLedger.mine` puts every waiting transaction in the next block
  and moves the tip. ``get_confirmations`` is ``tip - height + 1`` for a mined
  transaction, 0 for one still waiting or unknown.

What the model does not do: proof of work, competing blocks or reorganisations, fee
markets (replacement included: a conflicting transaction is refused even if it pays
more), signature operation limits, and spending anything but P2WPKH. One lock guards the
whole state, so every public method is atomic and the ledger can be shared by threads;
``broadcast`` runs the script interpreter outside it and checks the spent outputs again
under it before applying, so a slow (or refused) transaction never stalls the others.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sealbridge.keyrelease.bitcoin import (
    MAX_MONEY_SAT,
    NETWORKS,
    BitcoinError,
    DecodedTransaction,
    InvalidUtxo,
    MalformedTransaction,
    SweepInvalid,
    UnsupportedNetwork,
    Utxo,
    build_funding_transaction,
    decode_transaction,
    dust_threshold_sat,
    get_address_script,
    is_p2wpkh_script,
    verify_sweep,
)

__all__ = [
    "MAX_INPUTS",
    "MAX_LISTED_UTXOS",
    "MAX_MINED_BLOCKS",
    "MIN_RELAY_FEE_SAT_PER_VBYTE",
    "DuplicateInput",
    "FundingRefused",
    "NonStandard",
    "OutputSpent",
    "UnknownOutput",
    "UtxoLedger",
    "ValueCreated",
]

MIN_RELAY_FEE_SAT_PER_VBYTE = 1  # Bitcoin Core's default -minrelaytxfee (1000 sat/kvB)
MAX_STANDARD_VSIZE = 100_000  # Bitcoin Core's standard weight limit, 400,000 WU
# this model's own bound on inputs per transaction: python-bitcointx re-hashes the whole
# transaction for every input (quadratic), so a large refused transaction would cost
# seconds each time; a vault sweep spends at most 256
MAX_INPUTS = 300
MAX_LISTED_UTXOS = 1_000  # get_utxos answers at most this many outputs of one address
MAX_MINED_BLOCKS = 1_000  # mine() moves the tip by at most this many blocks at a time
_LOCKTIME_THRESHOLD = 500_000_000  # below: a block height; at or above: a time
_SEQUENCE_FINAL = 0xFFFFFFFF
_SEQUENCE_DISABLE = 1 << 31  # BIP68: no relative lock
_SEQUENCE_TYPE_TIME = 1 << 22  # BIP68: a time-based relative lock
_SEQUENCE_MASK = 0xFFFF
_OP_RETURN = 0x6A


class FundingRefused(BitcoinError):
    """``fund`` with a bad address or amount, or beyond the money supply."""

    code = "keyrelease_bitcoin_funding"


class UnknownOutput(InvalidUtxo):
    """An input spends an output the ledger never held."""

    code = "keyrelease_bitcoin_unknown_output"


class OutputSpent(InvalidUtxo):
    """An input spends an output that is spent already (a double spend)."""

    code = "keyrelease_bitcoin_output_spent"


class DuplicateInput(InvalidUtxo):
    """One transaction spends the same outpoint twice."""

    code = "keyrelease_bitcoin_duplicate_input"


class ValueCreated(SweepInvalid):
    """The outputs are worth more than the inputs."""

    code = "keyrelease_bitcoin_value_created"


class NonStandard(SweepInvalid):
    """Valid under the interpreter but not relayed by a node (dust, fee below the relay
    minimum, not final yet), or outside what this model checks (non-P2WPKH inputs, time
    locks)."""

    code = "keyrelease_bitcoin_nonstandard"


@dataclass
class _Transaction:
    raw: bytes
    height: int | None  # the block it is in; None while it waits for one


class UtxoLedger:
    """One network's UTXO set, mempool and block count (see the module docstring)."""

    def __init__(self, network: str = "regtest") -> None:
        if not isinstance(network, str) or network not in NETWORKS:
            raise UnsupportedNetwork(
                f"unknown network {network!r}; expected one of {list(NETWORKS)}"
            )
        self.network = network
        self._lock = threading.Lock()
        self._height = 0  # the tip; the next block is _height + 1
        self._fundings = 0
        self._supply = 0  # sat funded so far
        self._transactions: dict[str, _Transaction] = {}
        self._unspent: dict[tuple[str, int], Utxo] = {}  # insertion order = creation order
        self._by_script: dict[bytes, dict[tuple[str, int], None]] = {}
        self._spent_by: dict[tuple[str, int], str] = {}  # outpoint -> spending txid
        self._mempool: list[str] = []

    # -- reads ----------------------------------------------------------------------------
    def get_utxos(self, address: str) -> list[Utxo]:
        """The unspent outputs paying ``address`` (confirmed or not), oldest first, at
        most ``MAX_LISTED_UTXOS``."""
        script = get_address_script(address, self.network)
        with self._lock:
            points = list(self._by_script.get(script, {}))[:MAX_LISTED_UTXOS]
            return [self._unspent[point] for point in points]

    def get_balance(self, address: str) -> int:
        """Sat held by ``address``'s unspent outputs (all of them, not only the listed)."""
        script = get_address_script(address, self.network)
        with self._lock:
            return sum(self._unspent[p].amount_sat for p in self._by_script.get(script, {}))

    def get_confirmations(self, txid: str) -> int:
        with self._lock:
            found = self._transactions.get(txid) if isinstance(txid, str) else None
            if found is None or found.height is None:
                return 0
            return self._height - found.height + 1

    def get_transaction(self, txid: str) -> bytes:
        """The raw bytes of a transaction the ledger holds; UnknownOutput otherwise."""
        with self._lock:
            found = self._transactions.get(txid) if isinstance(txid, str) else None
            if found is None:
                raise UnknownOutput(f"no transaction {txid!r} in the ledger")
            return found.raw

    def is_spent(self, txid: str, vout: int) -> bool:
        with self._lock:
            return (txid, vout) in self._spent_by

    def get_height(self) -> int:
        with self._lock:
            return self._height

    def get_unspent(self) -> list[Utxo]:
        """Every unspent output, oldest first (for checks and tests)."""
        with self._lock:
            return list(self._unspent.values())

    def get_supply(self) -> int:
        """Sat created by ``fund`` so far (fees paid leave the UTXO set; nothing else)."""
        with self._lock:
            return self._supply

    # -- changes --------------------------------------------------------------------------
    def fund(self, address: str, amount_sat: int) -> Utxo:
        """Create ``amount_sat`` at ``address`` with a coinbase-shaped funding transaction
        (waiting for the next block, spendable at once). Returns the new output."""
        try:
            script = get_address_script(address, self.network)
        except BitcoinError as exc:
            raise FundingRefused(f"cannot fund {address!r}: {exc.message}") from exc
        if type(amount_sat) is not int or not 0 < amount_sat <= MAX_MONEY_SAT:
            raise FundingRefused(f"a funding amount must be in 1..{MAX_MONEY_SAT} sat")
        if amount_sat < dust_threshold_sat(script):
            raise FundingRefused(f"{amount_sat} sat is below dust for {address}")
        with self._lock:
            if self._supply + amount_sat > MAX_MONEY_SAT:
                raise FundingRefused("the ledger would hold more than the money supply")
            raw, txid = build_funding_transaction(script, amount_sat, self._fundings, self.network)
            if txid in self._transactions:  # cannot happen: the serial is in the scriptSig
                raise FundingRefused(f"funding txid {txid} exists already")
            self._fundings += 1
            self._supply += amount_sat
            self._transactions[txid] = _Transaction(raw=raw, height=None)
            self._mempool.append(txid)
            utxo = Utxo(txid=txid, vout=0, amount_sat=amount_sat, script_pubkey=script)
            self._add_output(utxo)
            return utxo

    def broadcast(self, raw_tx: bytes) -> str:
        """Check ``raw_tx`` as a node would (see the module docstring) and apply it:
        its inputs are spent, its outputs added. Returns its txid (display order)."""
        tx = decode_transaction(raw_tx, self.network)  # MalformedTransaction
        if len(tx.inputs) > MAX_INPUTS:
            raise NonStandard(f"this model takes at most {MAX_INPUTS} inputs per transaction")
        if tx.vsize > MAX_STANDARD_VSIZE:
            raise NonStandard(f"{tx.vsize} vbytes is above the standard {MAX_STANDARD_VSIZE}")
        with self._lock:
            if tx.txid in self._transactions:
                return tx.txid  # held already (a retry): nothing changes
            spent = self._check(tx)
        # the interpreter last, without the lock (it is the slow part): every input against
        # its output's script and amount; then the outputs are checked again under the lock
        # (another transaction may have spent one meanwhile)
        verify_sweep(raw_tx, spent, self.network)
        with self._lock:
            if tx.txid in self._transactions:
                return tx.txid
            if self._check(tx) != spent:  # (defensive: an output never changes in place)
                raise OutputSpent("the spent outputs changed while the transaction was checked")
            self._apply(tx, raw_tx)
            return tx.txid

    def mine(self, blocks: int = 1) -> int:
        """Put the waiting transactions in the next block and move the tip by ``blocks``.
        Returns the new tip height."""
        if type(blocks) is not int or not 1 <= blocks <= MAX_MINED_BLOCKS:
            raise InvalidUtxo(f"mine 1 to {MAX_MINED_BLOCKS} blocks at a time")
        with self._lock:
            block = self._height + 1
            for txid in self._mempool:
                self._transactions[txid].height = block
            self._mempool.clear()
            self._height += blocks
            return self._height

    # -- internals (called with the lock held) --------------------------------------------
    def _check(self, tx: DecodedTransaction) -> list[Utxo]:
        """Every rule but the interpreter's; the spent outputs, in input order."""
        if tx.is_coinbase:
            raise MalformedTransaction("a coinbase transaction cannot be broadcast")
        if not tx.inputs or not tx.outputs:
            raise MalformedTransaction("a transaction needs inputs and outputs")
        points = [(txin.txid, txin.vout) for txin in tx.inputs]
        if len(set(points)) != len(points):
            raise DuplicateInput("the transaction spends one outpoint twice")
        spent: list[Utxo] = []
        for i, point in enumerate(points):
            utxo = self._unspent.get(point)
            if utxo is None:
                if point in self._spent_by:
                    raise OutputSpent(
                        f"input {i} spends {point[0]}:{point[1]}, spent already by "
                        f"{self._spent_by[point]}"
                    )
                raise UnknownOutput(f"input {i} spends {point[0]}:{point[1]}, which never existed")
            if not is_p2wpkh_script(utxo.script_pubkey):
                raise NonStandard(f"input {i}: this model spends P2WPKH outputs only")
            spent.append(utxo)
        self._check_final(tx)
        for i, txout in enumerate(tx.outputs):
            if not 0 <= txout.amount_sat <= MAX_MONEY_SAT:
                raise SweepInvalid(f"output {i}: value out of range")
        value_in = sum(utxo.amount_sat for utxo in spent)
        value_out = sum(txout.amount_sat for txout in tx.outputs)
        if value_out > value_in:
            raise ValueCreated(f"the outputs ({value_out} sat) exceed the inputs ({value_in})")
        for i, txout in enumerate(tx.outputs):
            if _is_op_return(txout.script_pubkey):
                continue
            dust = dust_threshold_sat(txout.script_pubkey)
            if txout.amount_sat < dust:
                raise NonStandard(f"output {i}: {txout.amount_sat} sat is dust (< {dust})")
        fee, least = value_in - value_out, MIN_RELAY_FEE_SAT_PER_VBYTE * tx.vsize
        if fee < least:
            raise NonStandard(f"the fee ({fee} sat) is below the relay minimum ({least} sat)")
        return spent

    def _check_final(self, tx: DecodedTransaction) -> None:
        """Absolute (nLockTime) and BIP68 relative lock times, against the next block."""
        next_block = self._height + 1
        if tx.lock_time != 0 and any(t.sequence != _SEQUENCE_FINAL for t in tx.inputs):
            if tx.lock_time >= _LOCKTIME_THRESHOLD:
                raise NonStandard("time-based lock times are not modelled (no block times)")
            if tx.lock_time >= next_block:
                raise NonStandard(f"not final: nLockTime {tx.lock_time} >= block {next_block}")
        version = tx.version & 0xFFFFFFFF  # a node reads it unsigned (BIP68: version >= 2)
        if not 1 <= version <= 3:
            raise NonStandard(f"transaction version {version} is not standard (1 to 3)")
        if version < 2:
            return
        for i, txin in enumerate(tx.inputs):
            if txin.sequence & _SEQUENCE_DISABLE:
                continue
            if txin.sequence & _SEQUENCE_TYPE_TIME:
                raise NonStandard(f"input {i}: time-based relative locks are not modelled")
            created = self._transactions[txin.txid].height
            coin_height = next_block if created is None else created
            if next_block - coin_height < txin.sequence & _SEQUENCE_MASK:
                raise NonStandard(f"input {i}: its relative lock time has not passed")

    def _apply(self, tx: DecodedTransaction, raw: bytes) -> None:
        for txin in tx.inputs:
            point = (txin.txid, txin.vout)
            utxo = self._unspent.pop(point)
            holders = self._by_script[utxo.script_pubkey]
            del holders[point]
            if not holders:
                del self._by_script[utxo.script_pubkey]
            self._spent_by[point] = tx.txid
        for vout, txout in enumerate(tx.outputs):
            if _is_op_return(txout.script_pubkey):
                continue  # provably unspendable: never in the UTXO set
            self._add_output(
                Utxo(
                    txid=tx.txid,
                    vout=vout,
                    amount_sat=txout.amount_sat,
                    script_pubkey=txout.script_pubkey,
                )
            )
        self._transactions[tx.txid] = _Transaction(raw=raw, height=None)
        self._mempool.append(tx.txid)

    def _add_output(self, utxo: Utxo) -> None:
        point = (utxo.txid, utxo.vout)
        self._unspent[point] = utxo
        self._by_script.setdefault(utxo.script_pubkey, {})[point] = None


def _is_op_return(script: bytes) -> bool:
    return bool(script) and script[0] == _OP_RETURN
