"""The client enclave's key vault: deposit keys made inside the TEE, released only by
the contract they are bound to.

Theory of operation
-------------------
A vault is an enclave program (:class:`VaultProgram`, sim TEE backend: its own process).

* **Deposit keys.** ``create_keys`` draws ``count`` secp256k1 keys from enclave
  randomness. Only public parts leave: per key its index, compressed public key, EIP-55
  Ethereum address and P2WPKH address. The :class:`VaultManifest` carries a quote whose
  report data is ``sha256(tag || node keys) || sha256(tag || key list)``, so it binds the
  enclave's identity *and* a hash of every public key. A wallet funds an address only
  after :func:`verify_manifest` accepted that quote under its attestation policy.
* **Contracts.** A key moves only through a contract opened in the vault
  (:mod:`sealbridge.keyrelease.exchange`: the tit-for-tat swap and the time-locked
  escrow, run here). Opening a contract checks the counterparty's :class:`AttestedCard`
  (quote over its node keys) and binds the vault's keys to it; a bound key cannot be
  bound again or swept by its owner. The machine's releases become
  :class:`ReleasedKey` envelopes: the secret ECIES-encrypted to the counterparty's
  attested encryption key (the contract and chunk id as associated data), signed with
  this vault's identity key.
* **Receiving.** ``deliver`` checks an envelope's signature against the counterparty
  the contract names, decrypts it and hands the key to the machine, which checks that it
  opens the promised chunk's address; a bad envelope changes nothing.
* **Owner.** ``bind_owner`` binds the vault to one wallet account, once (the devnet does
  it at creation). Before that the vault accepts no key and signs no sweep.
* **Sweeps.** For every key received (and for the owner's own unbound keys), the vault
  signs a transaction that moves the funds to the chunk's *sweep key*: a key derived
  from a seed the sealed identity yields and the chunk id, the same in every process
  and state of the vault -- native coin: the balance less the gas; ERC-20: a
  ``transfer`` of the token balance, gas paid from the chunk's native stipend. The host
  supplies nonce, balances and fees and submits. ``withdraw`` moves what a sweep key
  holds to an address the owner names, in an order signed by the owner's wallet key.
* **Bitcoin sweeps.** A ``btc`` chunk (a P2WPKH output of the key) is swept by
  ``sign_btc_sweep`` to the P2WPKH address of the same sweep key, with
  :func:`~sealbridge.keyrelease.bitcoin.build_sweep` (BIP143 signatures, checked by the
  script interpreter with ``verify_sweep`` before the transaction leaves), under the
  same key states as an EVM sweep; ``withdraw_btc`` spends the sweep key's outputs to an
  address the owner names, in an order signed by the owner's wallet key. The host names
  the outputs: the vault checks that each pays the key's own P2WPKH script and signs for
  exactly their amounts, but it cannot know that they exist and are unspent -- the
  network (here the UTXO ledger model, :mod:`sealbridge.devnet.utxo_ledger`) refuses
  a transaction spending anything else. A received key remembers its chunk's kind, so a
  btc key is never swept as an EVM one, nor the other way round.
* **Loss claims.** ``claim_loss`` signs that the vault received a chunk's key, never
  swept it and never will (the key becomes ``CLAIMED``), naming the chunk's sweep
  address; the matcher refuses a report whose funds went there.

States of a deposit key: ``FREE`` -> ``BOUND`` (to one contract) -> ``RELEASED`` (sent to
its counterparty) or back to ``FREE`` (the contract aborted before releasing it);
``FREE`` -> ``SWEPT`` when the owner swept its own unbound key. Received keys are
``RECEIVED`` -> ``SWEPT`` or ``RECEIVED`` -> ``CLAIMED``; a chunk is received once.

Compromise (declared adversary simulation only): when the platform is marked compromised
(``EnclaveContext.compromised``, ``--simulate-compromise``), ``leak`` hands a key's
secret to the host, as key extraction from a broken TEE would. Honest vaults refuse it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import coincurve
import msgspec
from eth_account import Account
from eth_utils.crypto import keccak

from sealbridge.chain.abi import compute_address
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import DecryptionError, SealbridgeError
from sealbridge.crypto.ecies import encrypt_to
from sealbridge.crypto.signing import (
    eth_address,
    is_valid_ed25519,
    secp256k1_public,
    secp256k1_recover_address,
    to_checksum_address,
)
from sealbridge.keyrelease import bitcoin
from sealbridge.keyrelease.errors import (
    AlreadyReleased,
    AttestationRefused,
    ExchangeViolation,
    InvalidRequest,
    KeyReleaseError,
    LossClaimed,
)
from sealbridge.keyrelease.exchange import (
    EscrowState,
    ExchangeEffect,
    ReleaseChunkKey,
    SwapFinished,
    SwapState,
    Sweep,
    TimeLockedEscrow,
    TitForTatSwap,
)
from sealbridge.keyrelease.freshness import (
    AnchorBinding,
    FreshnessGuard,
    GuardedEcalls,
    GuardState,
)
from sealbridge.keyrelease.messages import (
    LOSS_TAG,
    OWNER_TAG,
    RELEASE_TAG,
    UNRELEASED_TAG,
    BtcSweepRequest,
    BtcWithdrawalRequest,
    ChunkRef,
    ContractRef,
    CreateKeys,
    Deliver,
    DepositKey,
    Finished,
    LossClaim,
    OpenEscrow,
    OpenSwap,
    OwnerBinding,
    OwnerRef,
    ReleasedKey,
    SealedState,
    SignedBtcSweep,
    SignedBtcWithdrawal,
    SignedSweep,
    SignedWithdrawal,
    SweepRequest,
    Unreleased,
    VaultConfig,
    VaultContractStatus,
    VaultManifest,
    VaultOutput,
    VaultStatus,
    WithdrawalRequest,
)
from sealbridge.keyrelease.types import (
    AssetKind,
    Chunk,
    compute_chunk_id,
    is_account,
    parse_chunk_id,
)
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.card import AttestedCard, verify_attested_card
from sealbridge.tee.ecall import Ecall, Nothing, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, NodeKeys, RawEcall
from sealbridge.tee.errors import AttestationError
from sealbridge.tee.policy import AttestationPolicy

__all__ = [
    "LOSS_TAG",
    "MAX_KEYS",
    "OWNER_TAG",
    "RELEASE_TAG",
    "UNRELEASED_TAG",
    "VAULT_PROGRAM",
    "BtcSweepRequest",
    "BtcWithdrawalRequest",
    "ChunkRef",
    "compute_btc_withdrawal_digest",
    "compute_manifest_report_data",
    "compute_withdrawal_digest",
    "ContractRef",
    "CreateKeys",
    "Deliver",
    "DepositKey",
    "Finished",
    "KeyState",
    "LossClaim",
    "OpenEscrow",
    "OpenSwap",
    "OwnerBinding",
    "OwnerRef",
    "ReleasedKey",
    "SealedState",
    "SignedBtcSweep",
    "SignedBtcWithdrawal",
    "SignedSweep",
    "SignedWithdrawal",
    "SweepRequest",
    "Unreleased",
    "VaultConfig",
    "VaultContractStatus",
    "VaultCore",
    "VaultManifest",
    "VaultOutput",
    "VaultProgram",
    "VaultSnapshot",
    "VaultStatus",
    "verify_manifest",
    "verify_vault_card",
    "verify_vault_statement",
    "WithdrawalRequest",
]

VAULT_PROGRAM = "sealbridge.keyrelease.vault:VaultProgram"
MAX_KEYS = 4096
MANIFEST_TAG = b"sealbridge/keyrelease/manifest/v1"
SWEEP_KEY_TAG = b"sealbridge/keyrelease/sweep-key/v1"
SWEEP_SEED_LABEL = "keyrelease/sweep-seed/v1"
WITHDRAWAL_TAG = b"sealbridge/keyrelease/withdrawal/v1"
BTC_WITHDRAWAL_TAG = b"sealbridge/keyrelease/btc-withdrawal/v1"
MAX_BTC_SWEEP_UTXOS = 256  # outputs one bitcoin sweep or withdrawal may spend
# the fee a bitcoin sweep or withdrawal may pay, which its host names: at least the relay
# minimum, at most this rate and this share of what it spends (a host could otherwise pay
# nearly the whole chunk to a miner it works with)
BTC_MIN_FEE_SAT_PER_VB = 1
# a native EVM sweep's gas cost (max fee x gas, which its host names) may take at most
# this share of what it moves: the priority fee goes to the block's builder
MAX_NATIVE_FEE_BPS = 500
BTC_MAX_FEE_SAT_PER_VB = 200
BTC_MAX_FEE_BPS = 500  # 5 % of the inputs
ERC20_TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")
NATIVE_SWEEP_GAS = 21_000
TOKEN_SWEEP_GAS = 80_000


class KeyState(StrEnum):
    FREE = "free"
    BOUND = "bound"
    RELEASED = "released"
    RECEIVED = "received"
    SWEPT = "swept"
    CLAIMED = "claimed"  # a loss was claimed for it: the vault never sweeps it


def compute_withdrawal_digest(request: WithdrawalRequest) -> bytes:
    return keccak(WITHDRAWAL_TAG + encode(request))


def compute_btc_withdrawal_digest(request: BtcWithdrawalRequest) -> bytes:
    return keccak(BTC_WITHDRAWAL_TAG + encode(request))


def _check_btc_request(request: BtcSweepRequest) -> None:
    """The shape of a bitcoin sweep request (the amounts are checked by build_sweep)."""
    if not isinstance(request, BtcSweepRequest) or not isinstance(request.chunk_id, str):
        raise InvalidRequest("not a bitcoin sweep request")
    if request.network not in bitcoin.NETWORKS:
        raise InvalidRequest(f"unknown bitcoin network {request.network!r}")
    if not 1 <= len(request.utxos) <= MAX_BTC_SWEEP_UTXOS:
        raise InvalidRequest(f"a bitcoin sweep spends 1 to {MAX_BTC_SWEEP_UTXOS} outputs")
    if type(request.fee_sat) is not int or request.fee_sat <= 0:
        raise InvalidRequest("fee_sat must be a positive int")


def _build_btc_sweep(secret: bytes, request: BtcSweepRequest, destination: str) -> SignedBtcSweep:
    """Spend ``request.utxos`` (which must pay ``secret``'s P2WPKH script) to
    ``destination``. ``build_sweep`` checks the result with the script interpreter
    (``verify_sweep``) before it returns; any refusal is a typed BitcoinError."""
    sweep = bitcoin.build_sweep(
        request.utxos, secret, destination, request.fee_sat, request.network
    )
    # the transaction's size does not depend on the fee (one output of fixed width)
    spent = sum(utxo.amount_sat for utxo in request.utxos)
    low, high = BTC_MIN_FEE_SAT_PER_VB * sweep.vsize, BTC_MAX_FEE_SAT_PER_VB * sweep.vsize
    if not low <= request.fee_sat <= min(high, spent * BTC_MAX_FEE_BPS // 10_000):
        raise bitcoin.SweepRefused(
            f"a fee of {request.fee_sat} sat for {sweep.vsize} vbytes spending {spent} sat: "
            f"it must be {BTC_MIN_FEE_SAT_PER_VB} to {BTC_MAX_FEE_SAT_PER_VB} sat/vB and at "
            f"most {BTC_MAX_FEE_BPS / 100:g} % of the inputs"
        )
    return SignedBtcSweep(
        chunk_id=request.chunk_id,
        raw_tx=sweep.raw_tx,
        txid=sweep.txid,
        destination=destination,
        amount_sat=sweep.amount_sat,
        fee_sat=sweep.fee_sat,
    )


def compute_manifest_report_data(node: NodeKeys, keys: list[DepositKey]) -> bytes:
    """64 bytes: the identity half and the key-list half a manifest's quote binds."""
    return (
        hashlib.sha256(MANIFEST_TAG + encode(node)).digest()
        + hashlib.sha256(MANIFEST_TAG + encode(keys)).digest()
    )


def verify_vault_card(card: AttestedCard, policy: AttestationPolicy, now: float) -> None:
    """A counterparty's card: its quote must attest its node keys under ``policy``."""
    try:
        verify_attested_card(card, policy=policy, now=now)
    except AttestationError as exc:
        raise AttestationRefused(f"vault card does not attest: {exc.message}") from exc


def verify_manifest(manifest: VaultManifest, policy: AttestationPolicy, now: float) -> None:
    """What a wallet checks before funding a deposit key: the quote binds this enclave's
    keys and exactly these public keys, and every address derives from its key."""
    for key in manifest.keys:
        _check_deposit_key(key)
    try:
        verify_quote(
            manifest.quote,
            policy=policy,
            now=int(now),
            expected_report_data=compute_manifest_report_data(manifest.node, manifest.keys),
        )
    except AttestationError as exc:
        raise AttestationRefused(f"vault manifest does not attest: {exc.message}") from exc


def _check_deposit_key(key: DepositKey) -> None:
    try:
        address = to_checksum_address(eth_address(key.public_key))
    except Exception as exc:  # a malformed key: coincurve / length errors
        raise AttestationRefused(f"deposit key {key.index} is not a secp256k1 key") from exc
    if address != key.eth_address:
        raise AttestationRefused(f"deposit key {key.index}: address does not match its key")


def _sign_transfer(
    secret: bytes, request: SweepRequest, destination: str, what: str
) -> tuple[bytes, bytes, int]:
    """Sign with ``secret`` a type-2 transaction moving everything the host says the
    address holds to ``destination`` (native: the balance less the gas; ERC-20: the token
    balance, gas from the native stipend). Returns (raw tx, hash, amount moved)."""
    for name in ("nonce", "balance", "max_fee_per_gas", "max_priority_fee_per_gas"):
        value = getattr(request, name)
        if type(value) is not int or value < 0:
            raise InvalidRequest(f"{name} must be an int >= 0")
    if request.max_priority_fee_per_gas > request.max_fee_per_gas:
        raise InvalidRequest("priority fee above the max fee")
    tx: dict[str, object] = {
        "type": 2,
        "chainId": request.chain_id,
        "nonce": request.nonce,
        "maxFeePerGas": request.max_fee_per_gas,
        "maxPriorityFeePerGas": request.max_priority_fee_per_gas,
    }
    if request.kind == "native":
        cost = NATIVE_SWEEP_GAS * request.max_fee_per_gas
        if request.balance <= cost:
            raise InvalidRequest(
                f"chunk {request.chunk_id}: balance {request.balance} does not cover "
                f"the {what}'s gas ({cost} wei)"
            )
        if cost * 10_000 > request.balance * MAX_NATIVE_FEE_BPS:
            raise InvalidRequest(
                f"chunk {request.chunk_id}: a {what} gas cost of {cost} wei is more than "
                f"{MAX_NATIVE_FEE_BPS / 100:g} % of the {request.balance} wei it moves"
            )
        amount = request.balance - cost
        tx.update(to=destination, value=amount, gas=NATIVE_SWEEP_GAS, data=b"")
    elif request.kind == "erc20":
        if type(request.token_balance) is not int or request.token_balance <= 0:
            raise InvalidRequest(f"chunk {request.chunk_id}: no token balance to move")
        if request.balance < TOKEN_SWEEP_GAS * request.max_fee_per_gas:
            raise InvalidRequest(f"chunk {request.chunk_id}: no native gas stipend left")
        amount = request.token_balance
        data = (
            ERC20_TRANSFER_SELECTOR
            + bytes(12)
            + bytes.fromhex(destination[2:])
            + amount.to_bytes(32, "big")
        )
        tx.update(to=request.token, value=0, gas=TOKEN_SWEEP_GAS, data=data)
    else:
        raise InvalidRequest(f"cannot move a {request.kind!r} chunk on an EVM chain")
    try:
        signed = Account.sign_transaction(tx, secret)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{what} transaction is malformed: {exc}") from exc
    return bytes(signed.raw_transaction), bytes(signed.hash), amount


@dataclass
class _Key:
    """A secret the vault holds (its own deposit key, a received one or a fresh one)."""

    secret: bytes
    state: str
    contract: str = ""
    chunk_id: str = ""
    kind: str = ""  # a received chunk's AssetKind value; "" for own and fresh keys


class VaultCore:
    """Keys, contracts and sweeps of one vault (the enclave side)."""

    def __init__(
        self,
        ctx: EnclaveContext,
        *,
        now: Callable[[], float],
        btc_address: Callable[[bytes], str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.now = now
        self.policy: AttestationPolicy | None = None
        self._btc_address = btc_address
        self.own: list[_Key] = []  # deposit keys, by index
        self.public: list[DepositKey] = []
        self.received: dict[str, _Key] = {}  # chunk id -> key
        self.fresh: list[_Key] = []  # sweep destinations
        self.swept: set[str] = set()  # chunk ids swept
        self.owner = ""  # the wallet account this vault vouches for (bind_owner, once)
        # the seed of the sweep keys, derived from the sealed identity: the same in every
        # process of this vault and in every state it is restored to, so a received chunk
        # is swept only ever to the key derived from it and the chunk id, and a loss
        # claim can name that key (a sweep made before a rollback, or by a second
        # process of the same identity, still went there)
        self.sweep_seed = ctx.derive_secret(SWEEP_SEED_LABEL)

    # -- setup ------------------------------------------------------------------------------
    def configure(self, policy: AttestationPolicy) -> None:
        if not isinstance(policy, AttestationPolicy):
            raise InvalidRequest("configure needs an attestation policy")
        self.policy = policy

    def _policy(self) -> AttestationPolicy:
        if self.policy is None:
            raise InvalidRequest("vault is not configured (no attestation policy)")
        return self.policy

    def get_card(self) -> AttestedCard:
        return AttestedCard(node=self.ctx.identity, quote=self.ctx.get_identity_quote())

    @property
    def vault(self) -> str:
        return self.ctx.identity.identity_key.hex()

    def create_keys(self, count: int) -> VaultManifest:
        if type(count) is not int or not 1 <= count <= MAX_KEYS - len(self.own):
            raise InvalidRequest(
                f"count must be an int in [1, {MAX_KEYS - len(self.own)}], got {count!r}"
            )
        for _ in range(count):
            secret = coincurve.PrivateKey(self.ctx.random_bytes(32)).secret
            public = secp256k1_public(secret)
            index = len(self.own)
            self.own.append(_Key(secret=secret, state=KeyState.FREE))
            btc = self._btc_address(public) if self._btc_address is not None else ""
            self.public.append(
                DepositKey(
                    index=index,
                    public_key=public,
                    eth_address=to_checksum_address(eth_address(public)),
                    btc_address=btc,
                )
            )
        return self.get_manifest()

    def get_manifest(self) -> VaultManifest:
        keys = list(self.public)
        quote = self.ctx.get_quote(compute_manifest_report_data(self.ctx.identity, keys))
        return VaultManifest(node=self.ctx.identity, keys=keys, quote=quote)

    # -- own keys ---------------------------------------------------------------------------
    def own_key(self, chunk_id: str) -> tuple[int, _Key]:
        vault, index = parse_chunk_id(chunk_id)
        if vault != self.vault or index >= len(self.own):
            raise InvalidRequest(f"chunk {chunk_id} is not a key of this vault")
        return index, self.own[index]

    def check_own_chunk(self, chunk: Chunk, kind: str = "") -> None:
        """``chunk`` is at one of this vault's keys: its EIP-55 address, or for a btc
        chunk its P2WPKH address."""
        index, _ = self.own_key(chunk.chunk_id)
        public = self.public[index]
        address = public.btc_address if kind == AssetKind.BTC.value else public.eth_address
        if not address or address != chunk.address:
            raise InvalidRequest(f"chunk {chunk.chunk_id}: address is not this vault's key")

    def bind(self, chunk_ids: list[str], contract: str) -> None:
        """Bind free own keys to a contract (all or nothing)."""
        keys = [self.own_key(c)[1] for c in chunk_ids]
        for chunk_id, key in zip(chunk_ids, keys, strict=True):
            if key.state != KeyState.FREE:
                raise AlreadyReleased(f"chunk {chunk_id} is {key.state}, not free")
        if len(set(chunk_ids)) != len(chunk_ids):
            raise InvalidRequest("a chunk is listed twice")
        for chunk_id, key in zip(chunk_ids, keys, strict=True):
            key.state = KeyState.BOUND
            key.contract = contract
            key.chunk_id = chunk_id

    def unbind(self, contract: str) -> None:
        for key in self.own:
            if key.state == KeyState.BOUND and key.contract == contract:
                key.state = KeyState.FREE
                key.contract = ""

    def release(self, chunk_id: str, contract: str, recipient: NodeKeys) -> ReleasedKey:
        """Encrypt a bound key to the counterparty and mark it released (once)."""
        _, key = self.own_key(chunk_id)
        if key.state == KeyState.RELEASED and not self.ctx.compromised:
            raise AlreadyReleased(f"chunk {chunk_id} was released already")
        if key.state not in (KeyState.BOUND, KeyState.RELEASED) or key.contract != contract:
            raise InvalidRequest(f"chunk {chunk_id} is not bound to {contract}")
        aad = RELEASE_TAG + contract.encode() + b"\x00" + chunk_id.encode()
        envelope = ReleasedKey(
            contract=contract,
            chunk_id=chunk_id,
            sender=self.ctx.identity.identity_key,
            recipient=recipient.identity_key,
            ciphertext=encrypt_to(recipient.encryption_key, key.secret, aad),
        )
        key.state = KeyState.RELEASED
        return msgspec.structs.replace(
            envelope, signature=self.ctx.sign_identity(envelope.get_body())
        )

    def open_envelope(self, envelope: ReleasedKey, sender: NodeKeys) -> bytes:
        """The secret in an envelope from ``sender`` to this vault; ExchangeViolation if
        it is not one (nothing changes)."""
        if envelope.recipient != self.ctx.identity.identity_key:
            raise ExchangeViolation("the released key is addressed to another vault")
        if envelope.sender != sender.identity_key:
            raise ExchangeViolation("the released key comes from another vault")
        if not is_valid_ed25519(sender.identity_key, envelope.get_body(), envelope.signature):
            raise ExchangeViolation("the released key's signature does not verify")
        aad = RELEASE_TAG + envelope.contract.encode() + b"\x00" + envelope.chunk_id.encode()
        try:
            secret = self.ctx.decrypt_for_identity(envelope.ciphertext, aad)
        except DecryptionError as exc:
            raise ExchangeViolation("the released key does not decrypt") from exc
        if len(secret) != 32:
            raise ExchangeViolation("the released key is not 32 bytes")
        return secret

    def check_not_received(self, chunk_id: str) -> None:
        """A chunk is received once: a second envelope for it (a rolled-back or broken
        owner releasing twice) must not turn a claimed or swept key back into one the
        vault would sweep."""
        if chunk_id in self.received:
            raise ExchangeViolation(f"chunk {chunk_id} was received already")

    def store_received(self, chunk_id: str, secret: bytes, contract: str, kind: str = "") -> None:
        self.received[chunk_id] = _Key(
            secret=secret, state=KeyState.RECEIVED, contract=contract, chunk_id=chunk_id, kind=kind
        )

    # -- sweeps -----------------------------------------------------------------------------
    def get_sweep_secret(self, chunk_id: str) -> bytes:
        """The one key a chunk is ever swept to (derived from the sealed sweep seed)."""
        counter = 0
        while True:
            digest = hashlib.sha256(
                SWEEP_KEY_TAG + self.sweep_seed + chunk_id.encode() + counter.to_bytes(4, "big")
            ).digest()
            try:
                return bytes(coincurve.PrivateKey(digest).secret)
            except ValueError:  # not a valid scalar (probability ~2^-128)
                counter += 1

    def get_sweep_address(self, chunk_id: str) -> str:
        return compute_address(self.get_sweep_secret(chunk_id))

    def require_owner(self) -> None:
        """Keys move only in a vault bound to its owner (``bind_owner``): its sweep keys
        are the owner's to withdraw from, and nobody may bind them later."""
        if not self.owner:
            raise InvalidRequest("this vault is not bound to its owner yet (bind_owner)")

    def get_sweepable_key(self, chunk_id: str) -> _Key:
        """The key of a received (or own, free) chunk that may be swept now: never a
        swept one (AlreadyReleased), a claimed one (LossClaimed), or a bound or released
        own one. Changes nothing."""
        self.require_owner()
        key = self.received.get(chunk_id)
        if key is None:
            _, key = self.own_key(chunk_id)
        if key.state == KeyState.SWEPT:
            raise AlreadyReleased(f"chunk {chunk_id} was swept already")
        if key.state == KeyState.CLAIMED:
            raise LossClaimed(
                f"a loss was claimed for chunk {chunk_id}: this vault never sweeps it"
            )
        if key.state not in (KeyState.FREE, KeyState.RECEIVED):
            raise InvalidRequest(f"own chunk {chunk_id} is {key.state}")
        return key

    def sign_sweep(self, request: SweepRequest) -> SignedSweep:
        """Sign a transaction moving a received (or own, free) chunk to its sweep key."""
        key = self.get_sweepable_key(request.chunk_id)
        if key.kind == AssetKind.BTC.value:
            raise InvalidRequest(f"chunk {request.chunk_id} is a btc chunk: sign_btc_sweep")
        fresh_secret = self.get_sweep_secret(request.chunk_id)
        destination = compute_address(fresh_secret)
        raw_tx, tx_hash, amount = _sign_transfer(key.secret, request, destination, "sweep")
        key.state = KeyState.SWEPT
        self.swept.add(request.chunk_id)
        self.fresh.append(_Key(secret=fresh_secret, state=KeyState.FREE))
        return SignedSweep(
            chunk_id=request.chunk_id,
            raw_tx=raw_tx,
            tx_hash=tx_hash,
            destination=destination,
            amount=amount,
        )

    def sign_btc_sweep(self, request: BtcSweepRequest) -> SignedBtcSweep:
        """Sign a bitcoin transaction spending the named outputs of a received (or own,
        free) btc key to the P2WPKH address of the chunk's sweep key. The same key states
        as ``sign_sweep``; the outputs must pay the key's own script (the network decides
        whether they are unspent). A refusal changes nothing."""
        _check_btc_request(request)
        key = self._btc_resweepable(request.chunk_id)
        again = key is not None
        if key is None:
            key = self.get_sweepable_key(request.chunk_id)
        if key.kind not in ("", AssetKind.BTC.value):
            raise InvalidRequest(f"chunk {request.chunk_id} is a {key.kind} chunk: sign_sweep")
        fresh_secret = self.get_sweep_secret(request.chunk_id)
        destination = bitcoin.derive_p2wpkh(fresh_secret, request.network).address
        signed = _build_btc_sweep(key.secret, request, destination)
        if not again:
            key.state = KeyState.SWEPT
            self.swept.add(request.chunk_id)
            self.fresh.append(_Key(secret=fresh_secret, state=KeyState.FREE))
        return signed

    def _btc_resweepable(self, chunk_id: str) -> _Key | None:
        """A received btc key this vault swept already may be swept again: other outputs,
        another fee (a sweep the network refused, or outputs that arrived later). Every
        version pays the chunk's own sweep key, so none can send its value elsewhere; a
        swept key stays unclaimable. (Own keys carry no kind: one swept stays swept.)"""
        key = self.received.get(chunk_id)
        if key is None or chunk_id not in self.swept:
            return None
        if key.state != KeyState.SWEPT or key.kind != AssetKind.BTC.value:
            return None
        return key

    def _check_owner_order(self, vault: str, digest: bytes, signature: bytes) -> None:
        """A withdrawal order for this vault, signed by its bound owner's wallet key."""
        if not self.owner:
            raise InvalidRequest("this vault has no owner yet (bind_owner): nobody may withdraw")
        if vault != self.vault:
            raise InvalidRequest("the withdrawal is for another vault")
        try:
            signer = secp256k1_recover_address(digest, signature)
        except SealbridgeError as exc:
            raise InvalidRequest(f"the withdrawal's signature does not verify: {exc}") from exc
        if to_checksum_address(signer).lower() != self.owner.lower():
            raise InvalidRequest("the withdrawal is not signed by this vault's owner")

    def sign_btc_withdrawal(self, signed: SignedBtcWithdrawal) -> SignedBtcSweep:
        """Spend the outputs of a swept chunk's sweep key to an address the owner names,
        in an order signed with the owner's wallet key (as ``sign_withdrawal``)."""
        request = signed.request
        if not isinstance(request, BtcWithdrawalRequest):
            raise InvalidRequest("not a bitcoin withdrawal")
        self._check_owner_order(
            request.vault, compute_btc_withdrawal_digest(request), signed.signature
        )
        _check_btc_request(request.sweep)
        chunk_id = request.sweep.chunk_id
        if chunk_id not in self.swept:
            raise InvalidRequest(f"chunk {chunk_id} was not swept by this vault")
        bitcoin.get_address_script(request.destination, request.sweep.network)  # InvalidAddress
        return _build_btc_sweep(self.get_sweep_secret(chunk_id), request.sweep, request.destination)

    def sign_withdrawal(self, signed: SignedWithdrawal) -> SignedSweep:
        """Move what a sweep brought to the chunk's sweep key to an address the vault's
        owner names, signed with the owner's wallet key (``bind_owner``'s account)."""
        request = signed.request
        if not isinstance(request, WithdrawalRequest):
            raise InvalidRequest("the withdrawal is for another vault")
        self._check_owner_order(request.vault, compute_withdrawal_digest(request), signed.signature)
        chunk_id = request.sweep.chunk_id
        if chunk_id not in self.swept:
            raise InvalidRequest(f"chunk {chunk_id} was not swept by this vault")
        if not is_account(request.destination) or int(request.destination, 16) == 0:
            raise InvalidRequest(f"not an address: {request.destination!r}")
        raw_tx, tx_hash, amount = _sign_transfer(
            self.get_sweep_secret(chunk_id), request.sweep, request.destination, "withdrawal"
        )
        return SignedSweep(
            chunk_id=chunk_id,
            raw_tx=raw_tx,
            tx_hash=tx_hash,
            destination=request.destination,
            amount=amount,
        )

    # -- adversary simulation ---------------------------------------------------------------
    def leak(self, chunk_id: str) -> bytes:
        if not self.ctx.compromised:
            raise KeyReleaseError("this vault's platform is not compromised: no key leaves")
        _, key = self.own_key(chunk_id)
        return key.secret

    def get_chunk_id(self, index: int) -> str:
        return compute_chunk_id(self.vault, index)


# --- contracts (contract Z runs here) ---------------------------------------------------------


# the ECALLs that change the vault or sign something: anchored before their output leaves
ANCHORED_ECALLS = (
    "create_keys",
    "attest_unreleased",
    "bind_owner",
    "open_swap",
    "open_escrow",
    "deliver",
    "tick",
    "cancel_escrow",
    "abort",
    "proceed",
    "claim_loss",
    "sign_sweep",
    "withdraw",
    "sign_btc_sweep",
    "withdraw_btc",
)


# of those, the ones that answer a VaultOutput: anchored only when it releases a key
RELEASING_ECALLS = frozenset(
    {"open_swap", "open_escrow", "deliver", "tick", "cancel_escrow", "abort", "proceed"}
)


def _has_releases(output: bytes) -> bool:
    return bool(decode(output, VaultOutput).releases)


SNAPSHOT_LABEL = "sealbridge/keyrelease/vault-state/v1"


def verify_vault_statement(statement: OwnerBinding | Unreleased, vault: bytes) -> None:
    """A vault's signed statement (owner binding, unreleased key) must be signed by the
    identity key ``vault`` and name it."""
    what = type(statement).__name__
    if statement.vault != vault:
        raise AttestationRefused(f"the {what} statement is another vault's")
    if not is_valid_ed25519(vault, statement.get_body(), statement.signature):
        raise AttestationRefused(f"the {what} statement's signature does not verify")


class KeySnapshot(Message, frozen=True):
    secret: bytes
    state: str
    contract: str = ""
    chunk_id: str = ""
    kind: str = ""


class ContractSnapshot(Message, frozen=True):
    counterparty: NodeKeys
    usd: dict[str, int]
    pending: list[str]
    released: list[str]
    received: list[str]
    swap: SwapState | None = None
    escrow: EscrowState | None = None


class VaultSnapshot(Message, frozen=True):
    """Everything a vault holds, sealed to this program on this platform (``seal``)."""

    identity: bytes  # a blob restores only into the vault with this identity
    policy: AttestationPolicy | None
    owner: str
    own: list[KeySnapshot]
    public: list[DepositKey]
    received: dict[str, KeySnapshot]
    fresh: list[KeySnapshot]
    swept: list[str]
    contracts: dict[str, ContractSnapshot]
    guard: GuardState | None = None  # the anchored version, when configured with one


# --- the ECALLs (names and types, for both sides) -----------------------------------------
# The changes among them (ANCHORED_ECALLS) answer a ``Guarded`` instead when the vault
# anchors its state (``keyrelease.freshness.get_guarded``); the vault also serves the
# anchor ECALLs (``keyrelease.freshness``: take_output, check_restored, ...).

VAULT_CONFIGURE = Ecall("configure", VaultConfig, VaultOutput)
VAULT_CARD = Ecall("card", Nothing, AttestedCard)
VAULT_CREATE_KEYS = Ecall("create_keys", CreateKeys, VaultManifest)
VAULT_MANIFEST = Ecall("manifest", Nothing, VaultManifest)
VAULT_OPEN_SWAP = Ecall("open_swap", OpenSwap, VaultOutput)
VAULT_OPEN_ESCROW = Ecall("open_escrow", OpenEscrow, VaultOutput)
VAULT_DELIVER = Ecall("deliver", Deliver, VaultOutput)
VAULT_TICK = Ecall("tick", ContractRef, VaultOutput)
VAULT_CANCEL_ESCROW = Ecall("cancel_escrow", ContractRef, VaultOutput)
VAULT_ABORT = Ecall("abort", ContractRef, VaultOutput)
VAULT_PROCEED = Ecall("proceed", ContractRef, VaultOutput)
VAULT_CLAIM_LOSS = Ecall("claim_loss", ChunkRef, LossClaim)
VAULT_SIGN_SWEEP = Ecall("sign_sweep", SweepRequest, SignedSweep)
VAULT_WITHDRAW = Ecall("withdraw", SignedWithdrawal, SignedSweep)
VAULT_SIGN_BTC_SWEEP = Ecall("sign_btc_sweep", BtcSweepRequest, SignedBtcSweep)
VAULT_WITHDRAW_BTC = Ecall("withdraw_btc", SignedBtcWithdrawal, SignedBtcSweep)
VAULT_STATUS = Ecall("status", Nothing, VaultStatus)
VAULT_LEAK = Ecall("leak", ChunkRef, bytes)  # a key's secret (a compromised platform only)
VAULT_BIND_OWNER = Ecall("bind_owner", OwnerRef, OwnerBinding)
VAULT_ATTEST_UNRELEASED = Ecall("attest_unreleased", ChunkRef, Unreleased)
VAULT_SEAL = Ecall("seal", Nothing, SealedState)
VAULT_RESTORE = Ecall("restore", SealedState, VaultOutput)


class _Contract:
    def __init__(
        self,
        machine: TitForTatSwap | TimeLockedEscrow,
        counterparty: NodeKeys,
        chunks: list[Chunk],
    ) -> None:
        self.machine = machine
        self.counterparty = counterparty
        self.usd = {chunk.chunk_id: chunk.usd_e8 for chunk in chunks}
        self.pending: list[str] = []  # releases held until the received chunk is swept
        self.released: list[str] = []  # own chunks actually released (envelopes made)
        self.received: list[str] = []  # counterparty chunks received (keys checked)

    def exposure_usd_e8(self) -> int:
        given = sum(self.usd[c] for c in self.released)
        return given - sum(self.usd[c] for c in self.received)


class VaultProgram:
    """The ECALL table of a vault enclave (``sealbridge.keyrelease.vault:VaultProgram``)."""

    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] | None = None) -> None:
        clock = ctx.now if clock is None else clock
        self.core = VaultCore(ctx, now=clock, btc_address=_btc_address_or_empty)
        self.clock = clock
        self.contracts: dict[str, _Contract] = {}
        self.guard: FreshnessGuard | None = None
        self.anchor_calls = GuardedEcalls(lambda: self.guard, self.core.ctx.sign_eth_digest)

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        table = get_ecall_table(self, self.anchor_calls)
        for name in ANCHORED_ECALLS:
            releasing = name in RELEASING_ECALLS
            table[name] = self.anchor_calls.wrap(
                name, table[name], _has_releases if releasing else (lambda _output: True)
            )
        return table

    # -- setup ------------------------------------------------------------------------------
    @VAULT_CONFIGURE.handler
    def configure(self, config: VaultConfig) -> VaultOutput:
        if self.core.policy is not None:
            raise InvalidRequest("the vault is configured already (configure happens once)")
        self.core.configure(config.policy)
        if config.anchor is not None:
            self.guard = FreshnessGuard(config.anchor, self._signer())
            self._bind_sweep_seed(config.anchor)
        return VaultOutput()

    # -- rollback protection (see keyrelease/freshness.py) ----------------------------------
    def _signer(self) -> str:
        return to_checksum_address(self.core.ctx.identity.eth_address)

    def _bind_sweep_seed(self, binding: AnchorBinding) -> None:
        """An anchored vault's sweep keys depend on its anchor binding and signing key:
        another process of the same identity configured with another anchor (or none),
        or after a key switch (a fresh version space), derives other sweep keys, so it
        can never sign for what this vault swept."""
        label = f"{SWEEP_SEED_LABEL}/{binding.chain_id}/{binding.contract.lower()}"
        self.core.sweep_seed = self.core.ctx.derive_secret(f"{label}/{self._signer().lower()}")

    @VAULT_CARD.handler
    def card(self, _: Nothing) -> AttestedCard:
        return self.core.get_card()

    @VAULT_CREATE_KEYS.handler
    def create_keys(self, request: CreateKeys) -> VaultManifest:
        return self.core.create_keys(request.count)

    @VAULT_MANIFEST.handler
    def manifest(self, _: Nothing) -> VaultManifest:
        return self.core.get_manifest()

    # -- contracts --------------------------------------------------------------------------
    def _check_new(self, contract: str, counterparty: AttestedCard) -> None:
        if contract in self.contracts:
            raise InvalidRequest(f"contract {contract} is open already")
        verify_vault_card(counterparty, self.core._policy(), self.clock())
        if counterparty.node.identity_key == self.core.ctx.identity.identity_key:
            raise InvalidRequest("a vault does not contract with itself")

    @VAULT_OPEN_SWAP.handler
    def open_swap(self, request: OpenSwap) -> VaultOutput:
        self._check_new(request.swap_id, request.counterparty)
        for chunk in request.mine:
            self.core.check_own_chunk(chunk, request.kinds.get(chunk.asset, ""))
        for chunk in request.theirs:
            if chunk.vault != request.counterparty.identity_hex:
                raise InvalidRequest(f"chunk {chunk.chunk_id} is not the counterparty's")
        role: Any = request.role
        machine = TitForTatSwap(
            request.swap_id, role, request.mine, request.theirs, request.kinds, request.deadline
        )
        self.core.bind([c.chunk_id for c in request.mine], request.swap_id)
        self.contracts[request.swap_id] = _Contract(
            machine, request.counterparty.node, request.mine + request.theirs
        )
        return self._apply(request.swap_id, machine.start(self.clock()))

    @VAULT_OPEN_ESCROW.handler
    def open_escrow(self, request: OpenEscrow) -> VaultOutput:
        self._check_new(request.escrow_id, request.counterparty)
        if request.role == "depositor":
            for chunk in request.chunks:
                self.core.check_own_chunk(chunk, request.kinds.get(chunk.asset, ""))
        else:
            for chunk in request.chunks:
                if chunk.vault != request.counterparty.identity_hex:
                    raise InvalidRequest(f"chunk {chunk.chunk_id} is not the depositor's")
        role: Any = request.role
        machine = TimeLockedEscrow(
            request.escrow_id, role, request.chunks, request.kinds, request.unlock_at
        )
        if request.role == "depositor":
            self.core.bind([c.chunk_id for c in request.chunks], request.escrow_id)
        self.contracts[request.escrow_id] = _Contract(
            machine, request.counterparty.node, request.chunks
        )
        return VaultOutput()

    def _contract(self, contract: str) -> _Contract:
        found = self.contracts.get(contract)
        if found is None:
            raise InvalidRequest(f"no contract {contract!r} in this vault")
        return found

    @VAULT_DELIVER.handler
    def deliver(self, request: Deliver) -> VaultOutput:
        envelope = request.envelope
        self.core.require_owner()
        entry = self._contract(envelope.contract)
        secret = self.core.open_envelope(envelope, entry.counterparty)
        self.core.check_not_received(envelope.chunk_id)
        effects = entry.machine.on_key(envelope.chunk_id, secret, self.clock())
        kind = _get_chunk_kind(entry.machine, envelope.chunk_id)
        self.core.store_received(envelope.chunk_id, secret, envelope.contract, kind)
        entry.received.append(envelope.chunk_id)
        return self._apply(envelope.contract, effects)

    @VAULT_PROCEED.handler
    def proceed(self, request: ContractRef) -> VaultOutput:
        """The host swept what this contract received: make the releases held back."""
        contract = request.contract
        entry = self._contract(contract)
        if not entry.pending:
            return VaultOutput()  # nothing held back (or dropped by an abort)
        for chunk_id in entry.received:
            key = self.core.received[chunk_id]
            if key.state != KeyState.SWEPT:
                raise InvalidRequest(f"chunk {chunk_id} is not swept yet: no release before")
        releases = [self._release(contract, entry, c) for c in entry.pending]
        entry.pending.clear()
        return VaultOutput(releases=releases)

    def _release(self, contract: str, entry: _Contract, chunk_id: str) -> ReleasedKey:
        envelope = self.core.release(chunk_id, contract, entry.counterparty)
        entry.released.append(chunk_id)
        return envelope

    @VAULT_CLAIM_LOSS.handler
    def claim_loss(self, request: ChunkRef) -> LossClaim:
        """A signed statement that this vault received ``chunk_id``'s key and never signed
        a sweep of it: with the chain showing the funds gone, the owner's side moved them
        (an honest vault's host never holds a key). The matcher checks the signature
        against this vault's attested identity."""
        chunk_id = request.chunk_id
        key = self.core.received.get(chunk_id)
        if key is None:
            raise InvalidRequest(f"chunk {chunk_id} was not received by this vault")
        if key.state not in (KeyState.RECEIVED, KeyState.CLAIMED):
            raise InvalidRequest(f"chunk {chunk_id} was swept by this vault: no loss to claim")
        key.state = KeyState.CLAIMED  # from now on no sweep of it is ever signed
        claim = LossClaim(
            chunk_id=chunk_id,
            contract=key.contract,
            vault=self.core.ctx.identity.identity_key,
            sweep_address=self.core.get_sweep_address(chunk_id),
        )
        signature = self.core.ctx.sign_identity(claim.get_body())
        return msgspec.structs.replace(claim, signature=signature)

    @VAULT_TICK.handler
    def tick(self, request: ContractRef) -> VaultOutput:
        contract = request.contract
        entry = self._contract(contract)
        return self._apply(contract, entry.machine.on_tick(self.clock()))

    @VAULT_CANCEL_ESCROW.handler
    def cancel_escrow(self, request: ContractRef) -> VaultOutput:
        contract = request.contract
        entry = self._contract(contract)
        if not isinstance(entry.machine, TimeLockedEscrow):
            raise InvalidRequest(f"{contract} is not an escrow")
        return self._apply(contract, entry.machine.cancel(self.clock()))

    @VAULT_ABORT.handler
    def abort(self, request: ContractRef) -> VaultOutput:
        """Stop a swap now (e.g. its host saw a received chunk already emptied): it never
        releases again; own keys not yet released go back to the owner."""
        contract = request.contract
        entry = self._contract(contract)
        if not isinstance(entry.machine, TitForTatSwap):
            raise InvalidRequest(f"{contract} is not a swap")
        return self._apply(contract, entry.machine.abort("aborted by the host"))

    def _apply(self, contract: str, effects: list[ExchangeEffect]) -> VaultOutput:
        entry = self.contracts[contract]
        releases: list[ReleasedKey] = []
        sweeps: list[str] = []
        finished: list[Finished] = []
        hold = any(isinstance(effect, Sweep) for effect in effects)
        for effect in effects:
            if isinstance(effect, ReleaseChunkKey):
                if hold:  # sweep what we received first; the host then calls 'proceed'
                    entry.pending.append(effect.chunk_id)
                else:
                    releases.append(self._release(contract, entry, effect.chunk_id))
            elif isinstance(effect, Sweep):
                sweeps.append(effect.chunk_id)
            else:
                if isinstance(effect, SwapFinished):
                    done = Finished(
                        contract=contract,
                        outcome=effect.outcome,
                        given=effect.given,
                        received=effect.received,
                        reason=effect.reason,
                    )
                else:
                    mine = entry.machine.role == "depositor"
                    done = Finished(
                        contract=contract,
                        outcome=effect.outcome,
                        given=effect.keys if mine else 0,
                        received=0 if mine else effect.keys,
                    )
                finished.append(done)
                if effect.outcome in ("aborted", "cancelled"):
                    entry.pending.clear()
                    self.core.unbind(contract)  # keys never released go back to the owner
        return VaultOutput(releases=releases, sweeps=sweeps, finished=finished)

    # -- sweeps and status ------------------------------------------------------------------
    @VAULT_WITHDRAW.handler
    def withdraw(self, request: SignedWithdrawal) -> SignedSweep:
        return self.core.sign_withdrawal(request)

    @VAULT_SIGN_SWEEP.handler
    def sign_sweep(self, request: SweepRequest) -> SignedSweep:
        return self.core.sign_sweep(request)

    @VAULT_WITHDRAW_BTC.handler
    def withdraw_btc(self, request: SignedBtcWithdrawal) -> SignedBtcSweep:
        return self.core.sign_btc_withdrawal(request)

    @VAULT_SIGN_BTC_SWEEP.handler
    def sign_btc_sweep(self, request: BtcSweepRequest) -> SignedBtcSweep:
        return self.core.sign_btc_sweep(request)

    @VAULT_STATUS.handler
    def status(self, _: Nothing) -> VaultStatus:
        counts: dict[str, int] = {}
        for key in self.core.own:
            counts[key.state] = counts.get(key.state, 0) + 1
        contracts = []
        for name, entry in sorted(self.contracts.items()):
            machine = entry.machine
            if isinstance(machine, TitForTatSwap):
                contracts.append(
                    VaultContractStatus(
                        contract=name,
                        kind="swap",
                        role=machine.role,
                        status=str(machine.status()),
                        given=len(entry.released),
                        received=len(entry.received),
                        exposure_usd_e8=entry.exposure_usd_e8(),
                    )
                )
            else:
                contracts.append(
                    VaultContractStatus(
                        contract=name,
                        kind="escrow",
                        role=machine.role,
                        status=str(machine.status()),
                        given=len(entry.released),
                        received=len(entry.received),
                        exposure_usd_e8=entry.exposure_usd_e8(),
                    )
                )
        return VaultStatus(
            vault=self.core.vault,
            keys=counts,
            received=sorted(self.core.received),
            swept=sorted(self.core.swept),
            contracts=contracts,
            compromised=self.core.ctx.compromised,
        )

    @VAULT_LEAK.handler
    def leak(self, request: ChunkRef) -> bytes:
        return self.core.leak(request.chunk_id)

    @VAULT_BIND_OWNER.handler
    def bind_owner(self, request: OwnerRef) -> OwnerBinding:
        """Vouch for the wallet account that owns this vault (once; the same account may
        ask again)."""
        account = request.account
        if not isinstance(account, str) or len(account) != 42 or not account.startswith("0x"):
            raise InvalidRequest(f"not an account: {account!r}")
        if self.core.owner and self.core.owner.lower() != account.lower():
            raise AlreadyReleased(f"this vault is bound to {self.core.owner} already")
        self.core.owner = account
        binding = OwnerBinding(account=account, vault=self.core.ctx.identity.identity_key)
        signature = self.core.ctx.sign_identity(binding.get_body())
        return msgspec.structs.replace(binding, signature=signature)

    @VAULT_ATTEST_UNRELEASED.handler
    def attest_unreleased(self, request: ChunkRef) -> Unreleased:
        # anchored (ANCHORED_ECALLS): a statement about the newest state only, ordered by
        # the chain among the vault's releases
        chunk_id = request.chunk_id
        _, key = self.core.own_key(chunk_id)
        if key.state != KeyState.FREE:
            raise InvalidRequest(f"chunk {chunk_id} is {key.state}, not free")
        statement = Unreleased(chunk_id=chunk_id, vault=self.core.ctx.identity.identity_key)
        signature = self.core.ctx.sign_identity(statement.get_body())
        return msgspec.structs.replace(statement, signature=signature)

    # -- sealing: a restarted vault keeps its keys and contracts ---------------------------
    @VAULT_SEAL.handler
    def seal(self, _: Nothing) -> SealedState:
        core = self.core

        def snap(key: _Key) -> KeySnapshot:
            return KeySnapshot(
                secret=key.secret,
                state=key.state,
                contract=key.contract,
                chunk_id=key.chunk_id,
                kind=key.kind,
            )

        contracts = {}
        for name, entry in self.contracts.items():
            machine = entry.machine
            contracts[name] = ContractSnapshot(
                swap=machine.to_state() if isinstance(machine, TitForTatSwap) else None,
                escrow=machine.to_state() if isinstance(machine, TimeLockedEscrow) else None,
                counterparty=entry.counterparty,
                usd=dict(entry.usd),
                pending=list(entry.pending),
                released=list(entry.released),
                received=list(entry.received),
            )
        snapshot = VaultSnapshot(
            identity=core.ctx.identity.identity_key,
            policy=core.policy,
            owner=core.owner,
            own=[snap(k) for k in core.own],
            public=list(core.public),
            received={c: snap(k) for c, k in core.received.items()},
            fresh=[snap(k) for k in core.fresh],
            swept=sorted(core.swept),
            contracts=contracts,
            guard=self.guard.export() if self.guard is not None else None,
        )
        return SealedState(blob=core.ctx.seal(encode(snapshot), SNAPSHOT_LABEL))

    @VAULT_RESTORE.handler
    def restore(self, request: SealedState) -> VaultOutput:
        """Load a sealed snapshot into a fresh vault of the same identity."""
        core = self.core
        if core.own or self.contracts or core.received:
            raise InvalidRequest("restore needs a fresh vault (this one holds keys already)")
        blob = request.blob
        try:
            snapshot = decode(core.ctx.unseal(blob, SNAPSHOT_LABEL), VaultSnapshot)
        except SealbridgeError as exc:  # SealingError, or a malformed body
            raise InvalidRequest(f"the sealed vault state does not open here: {exc}") from exc
        if snapshot.identity != core.ctx.identity.identity_key:
            raise InvalidRequest("the sealed vault state belongs to another vault identity")

        def load(key: KeySnapshot) -> _Key:
            return _Key(
                secret=key.secret,
                state=key.state,
                contract=key.contract,
                chunk_id=key.chunk_id,
                kind=key.kind,
            )

        contracts: dict[str, _Contract] = {}
        for name, entry in snapshot.contracts.items():
            machine: TitForTatSwap | TimeLockedEscrow
            if entry.swap is not None:
                machine = TitForTatSwap.from_state(entry.swap)
            elif entry.escrow is not None:
                machine = TimeLockedEscrow.from_state(entry.escrow)
            else:
                raise InvalidRequest(f"sealed contract {name} has no machine state")
            record = _Contract(machine, entry.counterparty, [])
            record.usd = dict(entry.usd)
            record.pending = list(entry.pending)
            record.released = list(entry.released)
            record.received = list(entry.received)
            contracts[name] = record
        core.policy = snapshot.policy
        core.owner = snapshot.owner
        core.own = [load(k) for k in snapshot.own]
        core.public = list(snapshot.public)
        core.received = {c: load(k) for c, k in snapshot.received.items()}
        core.fresh = [load(k) for k in snapshot.fresh]
        core.swept = set(snapshot.swept)
        self.contracts = contracts
        if snapshot.guard is not None:
            # unusable until check_restored proves it is the newest anchored state
            self.guard = FreshnessGuard.restore(snapshot.guard, self._signer())
            self._bind_sweep_seed(snapshot.guard.binding)
        return VaultOutput()


def _get_chunk_kind(machine: TitForTatSwap | TimeLockedEscrow, chunk_id: str) -> str:
    """The AssetKind value of one of a contract's chunks ("" if it has none such)."""
    state = machine.to_state()
    chunks = state.mine + state.theirs if isinstance(state, SwapState) else state.chunks
    for chunk in chunks:
        if chunk.chunk_id == chunk_id:
            return state.kinds.get(chunk.asset, "")
    return ""


def _btc_address_or_empty(public_key: bytes) -> str:
    """The regtest P2WPKH address of a deposit key (bitcoin has no node here)."""
    from sealbridge.keyrelease.bitcoin import p2wpkh_address

    return p2wpkh_address(public_key, "regtest")
