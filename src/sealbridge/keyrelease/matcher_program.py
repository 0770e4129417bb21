"""The matcher as its own TEE node: :class:`MatcherCore` behind an attested ECALL table.

Theory of operation
-------------------
Why its own enclave and not a sealbridge confidential contract: matching must answer in
milliseconds over a book of 100k chunks and needs fresh enclave randomness per request;
as a confidential contract every request would wait for block-atomic ordering (seconds)
and the book would be re-executed by every worker. The matcher's state is a sans-I/O core
(:mod:`sealbridge.keyrelease.matcher`), so hosting it as a contract later changes only
this wrapper.

* **Identity.** At ``configure`` the enclave draws a secp256k1 *operator key*; the
  InsurancePool names its address as operator. :class:`MatcherCard` carries a quote whose
  report data is ``sha256(tag || node keys) || sha256(tag || operator address)``, so a
  client that checked the card knows which enclave answers and which key slashes.
* **Owners and chunks.** An owner registers with its vault's manifest and the vault's
  signed :class:`OwnerBinding` for the owner's account; the enclave checks the manifest's
  quote under its vault policy and the binding against the manifest's identity key. A
  chunk is accepted only if its address is the manifest's key at that index and its owner
  is the vault's bound owner -- so every chunk the matcher offers sits at a key an
  attested vault generated, under the account that vault vouches for.
* **Clients.** ``match`` and ``accept`` take a requester's :class:`SignedRequest`
  (``keyrelease/auth.py``): signed by the requester account's key, for this enclave's
  identity, with a nonce above the last one taken from that account (nonces are part of
  the journal).
* **Matching.** ``match`` seeds the core's weighted sampling with enclave randomness and
  returns the offer with the manifests of every vault in it, signed by the enclave's
  identity key, so the client can check each chunk's attestation itself.
* **The fee chain.** Configured with a :class:`FeeChain`, the enclave follows that chain
  from an anchor block its host names (``observe_blocks``: parent links and receipts
  roots, all or none) and keeps the pool's ``FeePaid`` logs, each owner's bond
  (``BondPosted``, ``Slashed``, ``BondWithdrawn``) and the oracle's price of the fee
  asset. ``accept`` goes through only once the offer's fee was paid there at that
  price; ``register_owner`` and ``add_bond`` book no more bond than it saw posted.
* **Persistence.** Every state change is journaled with its time and randomness;
  ``seal`` seals a snapshot of the whole state (a :class:`MatcherBase`: the core's
  :class:`~sealbridge.keyrelease.matcher.MatcherSnapshot` and everything this wrapper
  keeps, at a journal length and hash), ``seal_tail`` only the entries since (a segment
  chained to the journal by entry index and hash); ``restore`` loads a base into a fresh
  matcher of the same identity and replays the segments after it. A base costs the
  state's size, a segment the change's: the host compacts by sealing a new base.
* **Double spends.** ``report`` needs the victim vault's signed :class:`LossClaim` (it
  received the key, never signed a sweep of it, and names the chunk's sweep address;
  the requester registered that vault's attested card) and runs the core's check. With
  chunk sources configured (:mod:`sealbridge.keyrelease.balances`) the balance is read
  from an ``eth_getProof`` at the newest header the matcher verified on the chunk's
  chain, later than the block ``add_chunks`` proved the chunk funded at (the host's
  reading is not used); ``advance_headers`` follows the chains other than the fee chain.
  The outflows stay the host's reading, a second line: a report whose funds went to the
  claim's sweep address is refused. On a
  proven double spend the enclave signs, with the operator key, the InsurancePool
  transactions that slash the offender's bond and compensate the victim (amounts in wei
  at the oracle price the host read); the host only submits them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TypeVar

import coincurve
import msgspec
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak

from sealbridge.chain.abi import compute_address
from sealbridge.chain.lightclient import (
    HeaderChain,
    LightClientError,
)
from sealbridge.core.encoding import Message, decode, decode_canonical, encode
from sealbridge.core.errors import SealbridgeError
from sealbridge.crypto.signing import is_valid_ed25519, to_checksum_address
from sealbridge.keyrelease.auth import ClientRefused, SignedRequest, verify_client_request
from sealbridge.keyrelease.balances import (
    BalancesState,
    ChunkBalances,
    FollowedChain,
)
from sealbridge.keyrelease.errors import AttestationRefused, InvalidRequest, ReportRejected
from sealbridge.keyrelease.freshness import (
    FreshnessGuard,
    GuardedEcalls,
    GuardState,
)
from sealbridge.keyrelease.matcher import (
    DoubleSpendReport,
    MatcherCore,
    MatcherSnapshot,
    MatcherStatus,
    WrongState,
)
from sealbridge.keyrelease.messages import (
    ANSWER_TAG,
    Accept,
    AcceptOrder,
    AddBond,
    AddChunks,
    AdvanceChainHeaders,
    ChainTipQuery,
    Expired,
    FeeChain,
    FeeTip,
    LossReport,
    MatchAnswer,
    MatcherCard,
    MatcherConfig,
    ObserveBlocks,
    OperatorTx,
    PenaltyOutcome,
    Reclaim,
    RegisterOwner,
    RegisterRequester,
    Settle,
    SweepAddress,
)
from sealbridge.keyrelease.types import (
    Chunk,
    ChunkRequest,
    Offer,
    compute_chunk_amount,
    is_account,
    parse_chunk_id,
)
from sealbridge.keyrelease.vault import (
    LossClaim,
    VaultManifest,
    verify_manifest,
    verify_vault_card,
    verify_vault_statement,
)
from sealbridge.keyservice.chainfacts import HeaderTip
from sealbridge.tee.card import verify_attested_card
from sealbridge.tee.ecall import NOTHING, Ecall, Nothing, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, NodeKeys, RawEcall
from sealbridge.tee.errors import AttestationError
from sealbridge.tee.policy import AttestationPolicy

__all__ = [
    "ANSWER_TAG",
    "MATCHER_PROGRAM",
    "Accept",
    "AcceptOrder",
    "AddBond",
    "AddChunks",
    "AdvanceChainHeaders",
    "ChainTipQuery",
    "compute_config_hash",
    "compute_matcher_report_data",
    "Expired",
    "FeeChain",
    "FeeTip",
    "LossReport",
    "MatchAnswer",
    "MatcherCard",
    "MatcherConfig",
    "MatcherProgram",
    "ObserveBlocks",
    "OperatorTx",
    "PenaltyOutcome",
    "Reclaim",
    "RegisterOwner",
    "RegisterRequester",
    "Settle",
    "SweepAddress",
    "usd_to_wei",
    "verify_answer",
    "verify_matcher_card",
]

MATCHER_PROGRAM = "sealbridge.keyrelease.matcher_program:MatcherProgram"
CARD_TAG = b"sealbridge/keyrelease/matcher-card/v1"
OPERATOR_GAS = 200_000


BASE_LABEL = "sealbridge/keyrelease/matcher-base/v2"
SEGMENT_LABEL = "sealbridge/keyrelease/matcher-journal-segment/v1"
_CHAIN_TAG = b"sealbridge/keyrelease/journal-chain/v1"
FEE_PAID_TOPIC = keccak(b"FeePaid(address,bytes32,uint256)")
PRICE_SET_TOPIC = keccak(b"PriceSet(bytes32,uint256,uint256)")
BOND_POSTED_TOPIC = keccak(b"BondPosted(address,uint256,uint256)")
SLASHED_TOPIC = keccak(b"Slashed(address,uint256,bytes32)")
BOND_WITHDRAWN_TOPIC = keccak(b"BondWithdrawn(address,uint256,uint256)")
MAX_OBSERVED_BLOCKS = 256
BPS = 10_000
AMOUNT_TOLERANCE_BPS = 200  # a chunk may be worth 2 % less than its USD value when booked
# the ECALLs that change the matcher's state: each one that succeeds is journaled with the
# time and randomness it used, so a restarted matcher replays its way to the same state
T = TypeVar("T")

JOURNALED_ECALLS = (
    "configure",
    "observe_blocks",
    "advance_headers",
    "register_owner",
    "add_chunks",
    "register_sweep_address",
    "register_requester",
    "match",
    "accept",
    "decline",
    "expire",
    "reclaim",
    "withdraw",
    "add_bond",
    "settle",
    "report",
)
# the changes whose outputs wait for their anchor: what commits the matcher to someone
# (an offer, its acceptance, a penalty's signed transactions, a chunk taken off the book).
# The others only add facts, or make it more careful when lost to a rollback (a bond or
# a settlement not counted, a reservation kept): they are journaled, not anchored.
MATCHER_ANCHORED_ECALLS = ("match", "accept", "report", "reclaim", "withdraw")


class JournalEntry(Message, frozen=True):
    name: str
    payload: bytes
    now: float
    seed: bytes = b""


class ProgramState(Message, frozen=True):
    """A configured matcher's whole state: its configuration, its core's snapshot and
    what the enclave wrapper keeps beside it (a base's body)."""

    config: MatcherConfig
    core: MatcherSnapshot
    manifests: list[VaultManifest]  # in registration order
    owners: list[tuple[str, str]]  # vault hex -> owner account (lowercase)
    requesters: list[tuple[str, bytes]]  # account (lowercase) -> vault identity key
    nonces: list[tuple[str, int]]  # account (lowercase) -> last client nonce taken
    fee_number: int  # the fee chain's newest verified block (0 and b"": no fee chain)
    fee_hash: bytes
    # chain amounts, 32-byte big-endian (they come from logs: any uint256)
    fees_paid: list[tuple[str, bytes, bytes]]  # (payer, request key, wei)
    prices_e8: list[tuple[bytes, bytes]]  # oracle asset key -> price
    bonds_wei: list[tuple[str, bytes]]
    balances: BalancesState | None = None


class MatcherBase(Message, frozen=True):
    """What ``seal`` seals: the state after the first ``length`` journal entries (their
    hash chain ends at ``digest``), the identity and the operator key. Restoring one
    costs the size of the state, not of the history."""

    identity: bytes
    operator_secret: bytes
    length: int
    digest: bytes
    state: ProgramState
    guard: GuardState | None = None  # the anchor record when sealed


class SealedJournal(Message, frozen=True):
    blob: bytes  # a sealed MatcherBase: the base
    # sealed JournalSegments after the base, in order (``seal_tail``; restore only)
    segments: list[bytes] = []


class JournalSegment(Message, frozen=True):
    """The journal entries sealed since the last seal: they continue the journal at
    ``first`` (its length then) and its hash chain at ``prev_digest``, so a host can
    drop only a tail of them, never one in the middle, and cannot reorder them."""

    identity: bytes
    first: int
    prev_digest: bytes
    entries: list[JournalEntry]
    guard: GuardState | None = None  # the anchor record when sealed


# --- the ECALLs (names and types, for both sides) -----------------------------------------
# The changes among them (MATCHER_ANCHORED_ECALLS) answer a ``Guarded`` instead when the
# matcher anchors its state (``keyrelease.freshness.get_guarded``); the matcher also serves
# the anchor ECALLs (``keyrelease.freshness``: take_output, check_restored, ...).

MATCHER_CONFIGURE = Ecall("configure", MatcherConfig, Nothing)
MATCHER_CARD = Ecall("card", Nothing, MatcherCard)
MATCHER_REGISTER_OWNER = Ecall("register_owner", RegisterOwner, Nothing)
MATCHER_ADD_CHUNKS = Ecall("add_chunks", AddChunks, Nothing)
MATCHER_REGISTER_SWEEP_ADDRESS = Ecall("register_sweep_address", SweepAddress, Nothing)
MATCHER_REGISTER_REQUESTER = Ecall("register_requester", RegisterRequester, Nothing)
MATCHER_MATCH = Ecall("match", SignedRequest, MatchAnswer)  # a signed ChunkRequest
MATCHER_ACCEPT = Ecall("accept", AcceptOrder, Offer)
MATCHER_CHECK_ACCEPT = Ecall("check_accept", Accept, Offer)
MATCHER_OBSERVE_BLOCKS = Ecall("observe_blocks", ObserveBlocks, FeeTip)
MATCHER_FEE_TIP = Ecall("fee_tip", Nothing, FeeTip)
MATCHER_ADVANCE_HEADERS = Ecall("advance_headers", AdvanceChainHeaders, HeaderTip)
MATCHER_CHAIN_TIP = Ecall("chain_tip", ChainTipQuery, HeaderTip)
MATCHER_DECLINE = Ecall("decline", Accept, Nothing)
MATCHER_EXPIRE = Ecall("expire", Nothing, Expired)
MATCHER_RECLAIM = Ecall("reclaim", Reclaim, Nothing)
MATCHER_WITHDRAW = Ecall("withdraw", Reclaim, Nothing)
MATCHER_ADD_BOND = Ecall("add_bond", AddBond, Nothing)
MATCHER_SETTLE = Ecall("settle", Settle, Nothing)
MATCHER_REPORT = Ecall("report", LossReport, PenaltyOutcome)
MATCHER_STATUS = Ecall("status", Nothing, MatcherStatus)
MATCHER_SEAL = Ecall("seal", Nothing, SealedJournal)  # a base
MATCHER_SEAL_TAIL = Ecall("seal_tail", Nothing, SealedJournal)  # a segment
MATCHER_RESTORE = Ecall("restore", SealedJournal, Nothing)


def compute_config_hash(config: MatcherConfig) -> bytes:
    """What a card binds of the matcher's configuration: SHA-256 of its encoding."""
    return hashlib.sha256(CARD_TAG + encode(config)).digest()


def compute_matcher_report_data(node: NodeKeys, operator: str, config_hash: bytes = b"") -> bytes:
    return (
        hashlib.sha256(CARD_TAG + encode(node)).digest()
        + hashlib.sha256(CARD_TAG + operator.encode() + config_hash).digest()
    )


def verify_matcher_card(
    card: MatcherCard, policy: AttestationPolicy, now: float, config: MatcherConfig | None = None
) -> None:
    """A client's check of the matcher before it sends a request; with ``config``, also
    that the enclave was configured exactly so (the chains it follows, the pool, the
    oracle, the chunk sources, the anchor: what it reads its facts from)."""
    try:
        verify_attested_card(
            card,
            policy=policy,
            now=now,
            report_data=compute_matcher_report_data(card.node, card.operator, card.config_hash),
        )
    except AttestationError as exc:
        raise AttestationRefused(f"matcher card does not attest: {exc.message}") from exc
    if config is not None and card.config_hash != compute_config_hash(config):
        raise AttestationRefused(
            "the matcher is not configured as expected (its card binds another configuration)"
            if card.config_hash
            else "the matcher is not configured yet"
        )


def verify_answer(
    answer: MatchAnswer, card: MatcherCard, vault_policy: AttestationPolicy, now: float
) -> None:
    """A client's check of an offer: signed by the attested matcher, and every chunk at a
    key of an attested vault (the balances are checked on chain by the caller)."""
    if not is_valid_ed25519(card.node.identity_key, answer.get_body(), answer.signature):
        raise AttestationRefused("the offer is not signed by the matcher")
    manifests = {m.vault: m for m in answer.manifests}
    for manifest in answer.manifests:
        verify_manifest(manifest, vault_policy, now)
    for chunk in answer.offer.chunks:
        vault, index = parse_chunk_id(chunk.chunk_id)
        found = manifests.get(vault)
        if found is None or index >= len(found.keys):
            raise AttestationRefused(f"chunk {chunk.chunk_id}: no attested manifest holds it")
        if found.keys[index].eth_address != chunk.address or chunk.vault != vault:
            raise AttestationRefused(f"chunk {chunk.chunk_id}: address is not the vault's key")


def usd_to_wei(usd_e8: int, price_e8: int) -> int:
    if type(price_e8) is not int or price_e8 <= 0:
        raise InvalidRequest("price_e8 must be a positive int")
    wei: int = usd_e8 * 10**18 // price_e8
    return wei


def _track_bond(bonds: dict[str, int], topics: list[bytes], data: bytes) -> None:
    """Follow an owner's bond in the pool through its verified logs."""
    owner = "0x" + topics[1][12:].hex()
    if topics[0] == BOND_POSTED_TOPIC and len(data) == 64:
        bonds[owner] = int.from_bytes(data[32:64], "big")  # the new total
    elif topics[0] == BOND_WITHDRAWN_TOPIC and len(data) == 64:
        bonds[owner] = int.from_bytes(data[32:64], "big")  # what remains
    elif topics[0] == SLASHED_TOPIC and len(data) == 64:
        bonds[owner] = max(0, bonds.get(owner, 0) - int.from_bytes(data[:32], "big"))


def compute_oracle_key(asset: str) -> bytes:
    """The PriceOracle's key of an asset id (``chain.oracle.compute_asset_key``)."""
    return bytes(keccak(asset.encode("utf-8")))


def _u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _uint(raw: bytes) -> int:
    if type(raw) is not bytes or len(raw) != 32:
        raise InvalidRequest("a sealed chain amount is not 32 bytes")
    return int.from_bytes(raw, "big")


def _selector(signature: str) -> bytes:
    return bytes(keccak(text=signature))[:4]


class MatcherProgram:
    """ECALL table of the matcher enclave."""

    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] | None = None) -> None:
        clock = ctx.now if clock is None else clock
        self.ctx = ctx
        self.clock = clock
        self.core: MatcherCore | None = None
        self.vault_policy: AttestationPolicy | None = None
        self.manifests: dict[str, VaultManifest] = {}
        self.requesters: dict[str, bytes] = {}  # account (lowercase) -> vault identity key
        self.nonces: dict[str, int] = {}  # account (lowercase) -> last client nonce taken
        self.fee_pool = b""
        self.fee_chain: HeaderChain | None = None
        self.fees_paid: dict[tuple[str, bytes], int] = {}  # (payer, request key) -> wei
        self.fee_oracle = b""
        self.fee_asset_key = b""
        self.fee_price_e8 = 0  # the fee asset's last price the oracle set on the fee chain
        # every asset's last price the oracle set there (oracle key -> USD x 1e8)
        self.prices_e8: dict[bytes, int] = {}
        self.bonds_wei: dict[str, int] = {}  # owner (lowercase) -> its bond in the pool
        self.owners: dict[str, str] = {}  # vault hex -> owner account (lowercase)
        self.balances: ChunkBalances | None = None  # with chunk sources: proven balances
        self._operator_secret = coincurve.PrivateKey(ctx.random_bytes(32)).secret
        self.config: MatcherConfig | None = None
        # the journal entries not sealed yet (``seal`` / ``seal_tail`` hand them over)
        self.journal: list[JournalEntry] = []
        # the hash chain over every entry so far, how many there are, and how far the
        # host has them sealed
        self._chain = bytes(32)
        self._length = 0
        self._sealed_upto = 0
        self._sealed_chain = bytes(32)
        self._replaying: JournalEntry | None = None
        self._used_now: float | None = None
        self._used_seed: bytes = b""
        self.guard: FreshnessGuard | None = None
        self.anchor_calls = GuardedEcalls(lambda: self.guard, ctx.sign_eth_digest)

    @property
    def operator(self) -> str:
        """EIP-55 address of the operator key (the InsurancePool's operator)."""
        return compute_address(self._operator_secret)

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        table = get_ecall_table(self, self.anchor_calls)
        for name in JOURNALED_ECALLS:
            table[name] = self._journaled(name, table[name])
        for name in MATCHER_ANCHORED_ECALLS:
            table[name] = self.anchor_calls.wrap(name, table[name])
        return table

    # -- the journal: time and randomness are recorded inputs ------------------------------
    def _now(self) -> float:
        if self._replaying is not None:
            return self._replaying.now
        if self._used_now is None:
            self._used_now = self.clock()
        return self._used_now

    def _seed(self) -> bytes:
        if self._replaying is not None:
            return self._replaying.seed
        if not self._used_seed:
            self._used_seed = self.ctx.random_bytes(32)
        return self._used_seed

    def _journaled(self, name: str, handler: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        def run(payload: bytes) -> bytes:
            self._used_now, self._used_seed = None, b""
            answer = handler(payload)  # a refusal changes nothing and is not journaled
            now = self._used_now if self._used_now is not None else 0.0
            self._append(
                JournalEntry(name=name, payload=bytes(payload), now=now, seed=self._used_seed)
            )
            return answer

        return run

    def _append(self, entry: JournalEntry) -> None:
        self.journal.append(entry)
        self._length += 1
        self._chain = hashlib.sha256(_CHAIN_TAG + self._chain + encode(entry)).digest()

    def _mark_sealed(self) -> None:
        self.journal = []  # the host holds them now
        self._sealed_upto, self._sealed_chain = self._length, self._chain

    def _export_state(self) -> ProgramState:
        core = self._core()
        if self.config is None:
            raise InvalidRequest("matcher is not configured")
        return ProgramState(
            config=self.config,
            core=core.export_snapshot(),
            manifests=list(self.manifests.values()),
            owners=list(self.owners.items()),
            requesters=list(self.requesters.items()),
            nonces=list(self.nonces.items()),
            fee_number=self.fee_chain.number if self.fee_chain is not None else 0,
            fee_hash=self.fee_chain.hash if self.fee_chain is not None else b"",
            fees_paid=[(payer, key, _u256(wei)) for (payer, key), wei in self.fees_paid.items()],
            prices_e8=[(key, _u256(price)) for key, price in self.prices_e8.items()],
            bonds_wei=[(owner, _u256(wei)) for owner, wei in self.bonds_wei.items()],
            balances=self.balances.export_state() if self.balances is not None else None,
        )

    def _load_state(self, state: ProgramState) -> None:
        """Take a base's state (a fresh matcher; on error the caller clears it)."""
        config = state.config
        self.core = MatcherCore.from_snapshot(config.policy, state.core)
        self.config, self.vault_policy = config, config.vault_policy
        self.manifests = {manifest.vault: manifest for manifest in state.manifests}
        self.owners = dict(state.owners)
        self.requesters = dict(state.requesters)
        self.nonces = dict(state.nonces)
        fee = config.fee_chain
        if fee is not None:
            self.fee_pool, self.fee_oracle = fee.pool, fee.oracle
            self.fee_asset_key = fee.fee_asset_key
            try:
                self.fee_chain = HeaderChain(state.fee_number, state.fee_hash)
            except SealbridgeError as exc:
                raise InvalidRequest(f"the base's fee chain tip is malformed: {exc}") from exc
        self.fees_paid = {(payer, key): _uint(wei) for payer, key, wei in state.fees_paid}
        self.prices_e8 = {key: _uint(price) for key, price in state.prices_e8}
        self.fee_price_e8 = self.prices_e8.get(self.fee_asset_key, 0)
        self.bonds_wei = {owner: _uint(wei) for owner, wei in state.bonds_wei}
        if (state.balances is None) != (config.chunk_sources is None):
            raise InvalidRequest("the base's chunk balances do not match its configuration")
        if state.balances is not None:
            self.balances = ChunkBalances.from_state(state.balances)
        if config.anchor is not None:  # replaced by the sealed record below
            signer = to_checksum_address(self.ctx.identity.eth_address)
            self.guard = FreshnessGuard(config.anchor, signer)

    def _clear(self) -> None:
        """Back to a fresh, unconfigured matcher (a restore that failed)."""
        secret, anchor_calls = self._operator_secret, self.anchor_calls
        self.__init__(self.ctx, self.clock)  # type: ignore[misc]
        self._operator_secret, self.anchor_calls = secret, anchor_calls

    @MATCHER_SEAL.handler
    def seal(self, _: Nothing) -> SealedJournal:
        """A snapshot of the whole state, sealed: a base for ``restore``, which then
        replays only the segments sealed after it. Its cost is the state's size, not the
        history's: the host compacts with it (``seal_tail`` costs only what changed)."""
        state = self._export_state()  # nothing to seal before configure
        base = MatcherBase(
            identity=self.ctx.identity.identity_key,
            operator_secret=self._operator_secret,
            length=self._length,
            digest=self._chain,
            state=state,
            guard=self.guard.export() if self.guard is not None else None,
        )
        blob = self.ctx.seal(encode(base), BASE_LABEL)
        self._mark_sealed()
        return SealedJournal(blob=blob)

    @MATCHER_SEAL_TAIL.handler
    def seal_tail(self, _: Nothing) -> SealedJournal:
        """The entries since the last ``seal`` or ``seal_tail``, sealed as one segment that
        the host appends after its base (the cost of persisting stays flat as the journal
        grows)."""
        self._core()
        segment = JournalSegment(
            identity=self.ctx.identity.identity_key,
            first=self._sealed_upto,
            prev_digest=self._sealed_chain,
            entries=list(self.journal),
            guard=self.guard.export() if self.guard is not None else None,
        )
        blob = self.ctx.seal(encode(segment), SEGMENT_LABEL)
        self._mark_sealed()
        return SealedJournal(blob=blob)

    @MATCHER_RESTORE.handler
    def restore(self, sealed: SealedJournal) -> Nothing:
        """Load a sealed base into a fresh matcher of the same identity and replay the
        segments after it: the same book, owners, offers, pool and operator key."""
        if self.core is not None or self._length:
            raise InvalidRequest("restore needs a fresh matcher")
        try:
            base = decode(self.ctx.unseal(sealed.blob, BASE_LABEL), MatcherBase)
        except SealbridgeError as exc:
            raise InvalidRequest(f"the sealed base does not open here: {exc}") from exc
        if base.identity != self.ctx.identity.identity_key:
            raise InvalidRequest("the sealed base belongs to another matcher identity")
        segments: list[JournalSegment] = []
        for blob in sealed.segments:
            try:
                segment = decode(self.ctx.unseal(blob, SEGMENT_LABEL), JournalSegment)
            except SealbridgeError as exc:
                raise InvalidRequest(f"a journal segment does not open here: {exc}") from exc
            if segment.identity != self.ctx.identity.identity_key:
                raise InvalidRequest("a journal segment belongs to another matcher identity")
            segments.append(segment)
        handlers = {
            name: handler
            for name, handler in get_ecall_table(self).items()
            if name in JOURNALED_ECALLS
        }
        latest = base.guard
        try:
            self._load_state(base.state)
            self._operator_secret = base.operator_secret
            self._length, self._chain = base.length, base.digest
            for part in segments:
                if part.first + len(part.entries) <= self._length:
                    continue  # already in the base (the host compacted after sealing it)
                if part.first != self._length or part.prev_digest != self._chain:
                    raise InvalidRequest(
                        f"a journal segment does not continue the journal at entry "
                        f"{self._length} (it starts at {part.first})"
                    )
                for entry in part.entries:
                    self._replaying = entry
                    handlers[entry.name](entry.payload)
                    self._append(entry)
                latest = part.guard
        except Exception as exc:  # noqa: BLE001 -- any failure leaves a fresh matcher
            self._clear()
            raise InvalidRequest(f"the journal does not replay: {exc}") from exc
        finally:
            self._replaying = None
        self._mark_sealed()
        if latest is None and self.guard is not None:
            # the matcher is configured with an anchor, but the seal carries no record
            self._clear()
            raise InvalidRequest("the sealed journal of an anchored matcher lacks its anchor")
        if latest is not None:
            # unusable until check_restored proves it is the newest anchored state
            signer = to_checksum_address(self.ctx.identity.eth_address)
            self.guard = FreshnessGuard.restore(latest, signer)
        return NOTHING

    def _core(self) -> MatcherCore:
        if self.core is None:
            raise InvalidRequest("matcher is not configured")
        return self.core

    @MATCHER_CONFIGURE.handler
    def configure(self, config: MatcherConfig) -> Nothing:
        if self.core is not None:
            raise InvalidRequest("matcher is configured already")
        fee = config.fee_chain
        chain = None
        if fee is not None:
            if any(type(a) is not bytes or len(a) != 20 for a in (fee.pool, fee.oracle)):
                raise InvalidRequest("fee_chain.pool and .oracle must be 20-byte addresses")
            if type(fee.fee_asset_key) is not bytes or len(fee.fee_asset_key) != 32:
                raise InvalidRequest("fee_chain.fee_asset_key must be 32 bytes")
            try:
                chain = HeaderChain(fee.anchor_number, fee.anchor_hash)
            except SealbridgeError as exc:
                raise InvalidRequest(f"bad fee chain anchor: {exc}") from exc
        balances = None
        if config.chunk_sources is not None and fee is None:
            raise InvalidRequest("proven chunk balances need a fee chain (for the prices)")
        if config.chunk_sources is not None:
            fee_anchor = None
            if fee is not None:
                fee_anchor = FollowedChain(
                    chain_id=fee.chain_id,
                    tip=HeaderTip(number=fee.anchor_number, block_hash=fee.anchor_hash),
                )
            balances = ChunkBalances(config.chunk_sources, fee_anchor)
        self.core = MatcherCore(config.policy)
        self.config = config
        self.balances = balances
        self.vault_policy = config.vault_policy
        if config.anchor is not None:
            signer = to_checksum_address(self.ctx.identity.eth_address)
            self.guard = FreshnessGuard(config.anchor, signer)
        if fee is not None and chain is not None:
            self.fee_pool, self.fee_chain = fee.pool, chain
            self.fee_oracle, self.fee_asset_key = fee.oracle, fee.fee_asset_key
        return NOTHING

    @MATCHER_OBSERVE_BLOCKS.handler
    def observe_blocks(self, request: ObserveBlocks) -> FeeTip:
        """Follow the fee chain: verify the next blocks (all or none) and count their
        ``FeePaid`` logs of the pool."""
        if self.fee_chain is None:
            raise InvalidRequest("this matcher follows no fee chain")
        if len(request.blocks) > MAX_OBSERVED_BLOCKS:
            raise InvalidRequest(f"at most {MAX_OBSERVED_BLOCKS} blocks per call")
        scratch = HeaderChain(self.fee_chain.number, self.fee_chain.hash)
        paid: list[tuple[tuple[str, bytes], int]] = []
        prices = dict(self.prices_e8)
        bonds = dict(self.bonds_wei)
        try:
            for evidence in request.blocks:
                block = scratch.process(evidence)
                for log in block.logs:
                    if (
                        log.address == self.fee_oracle
                        and len(log.topics) == 2
                        and log.topics[0] == PRICE_SET_TOPIC
                        and len(log.data) == 64
                    ):
                        prices[log.topics[1]] = int.from_bytes(log.data[:32], "big")
                    if log.address == self.fee_pool and len(log.topics) == 2:
                        _track_bond(bonds, log.topics, log.data)
                    if (
                        log.address == self.fee_pool
                        and len(log.topics) == 2
                        and log.topics[0] == FEE_PAID_TOPIC
                        and len(log.data) == 64
                    ):
                        payer = "0x" + log.topics[1][12:].hex()
                        paid.append(((payer, log.data[:32]), int.from_bytes(log.data[32:], "big")))
        except LightClientError as exc:
            raise InvalidRequest(f"fee chain block refused: {exc.message}") from exc
        if self.balances is not None and self.balances.fee_chain_id:
            # the same headers, whose hashes and links were just checked, give the state
            # roots chunk balances on the fee chain are proven against
            self.balances.advance(
                self.balances.fee_chain_id, [evidence.header for evidence in request.blocks]
            )
        self.fee_chain, self.prices_e8, self.bonds_wei = scratch, prices, bonds
        self.fee_price_e8 = prices.get(self.fee_asset_key, 0)
        for key, amount in paid:
            self.fees_paid[key] = self.fees_paid.get(key, 0) + amount
        return FeeTip(number=scratch.number)

    @MATCHER_FEE_TIP.handler
    def fee_tip(self, _: Nothing) -> FeeTip:
        return FeeTip(number=0 if self.fee_chain is None else self.fee_chain.number)

    def _balances(self) -> ChunkBalances:
        self._core()
        if self.balances is None:
            raise InvalidRequest("this matcher proves no chunk balances (no chunk sources)")
        return self.balances

    @MATCHER_ADVANCE_HEADERS.handler
    def advance_headers(self, request: AdvanceChainHeaders) -> HeaderTip:
        """Follow a chain chunks live on by its headers (the fee chain's come with
        ``observe_blocks``)."""
        balances = self._balances()
        if request.chain_id == balances.fee_chain_id:
            raise InvalidRequest("the fee chain is followed by observe_blocks")
        return balances.advance(request.chain_id, list(request.headers))

    @MATCHER_CHAIN_TIP.handler
    def chain_tip(self, request: ChainTipQuery) -> HeaderTip:
        """The newest header verified on a chain chunks live on."""
        return self._balances().get_tip(request.chain_id)

    @MATCHER_CARD.handler
    def card(self, _: Nothing) -> MatcherCard:
        node = self.ctx.identity
        config_hash = compute_config_hash(self.config) if self.config is not None else b""
        quote = self.ctx.get_quote(compute_matcher_report_data(node, self.operator, config_hash))
        return MatcherCard(node=node, operator=self.operator, quote=quote, config_hash=config_hash)

    @MATCHER_REGISTER_OWNER.handler
    def register_owner(self, request: RegisterOwner) -> Nothing:
        core = self._core()
        if self.vault_policy is None:
            raise InvalidRequest("matcher is not configured")
        verify_manifest(request.manifest, self.vault_policy, self._now())
        verify_vault_statement(request.binding, request.manifest.node.identity_key)
        if request.binding.account.lower() != request.owner.lower():
            raise AttestationRefused("the vault vouches for another owner")
        known = self.owners.get(request.manifest.vault)
        if known is not None and known != request.owner.lower():
            raise InvalidRequest("this vault is registered to another owner")
        self._check_bond(request.owner, request.bond_usd_e8)
        core.register_owner(request.owner, request.bond_usd_e8)
        self.manifests[request.manifest.vault] = request.manifest
        self.owners[request.manifest.vault] = request.owner.lower()
        return NOTHING

    @MATCHER_ADD_CHUNKS.handler
    def add_chunks(self, request: AddChunks) -> Nothing:
        chunks = request.chunks
        for chunk in chunks:
            vault, index = parse_chunk_id(chunk.chunk_id)
            manifest = self.manifests.get(vault)
            if manifest is None or index >= len(manifest.keys):
                raise InvalidRequest(f"chunk {chunk.chunk_id}: its vault is not registered")
            if manifest.keys[index].eth_address != chunk.address:
                raise InvalidRequest(f"chunk {chunk.chunk_id}: not the vault's key address")
            if self.owners.get(vault) != chunk.owner.lower():
                raise InvalidRequest(f"chunk {chunk.chunk_id}: its vault is not its owner's")
        funded: list[tuple[str, int]] = []
        if self.balances is not None:
            proofs = {proof.chunk_id: proof for proof in request.proofs}
            if len(proofs) != len(request.proofs):
                raise InvalidRequest("two balance proofs for one chunk")
            for chunk in chunks:
                if not self.balances.is_proven(chunk):
                    # the book holds only chunks whose funds the matcher saw (a btc
                    # chunk, or an EVM key labelled as one, would be the host's word)
                    raise InvalidRequest(
                        f"chunk {chunk.chunk_id}: this matcher books only chunks whose "
                        f"funding it can prove ({chunk.asset} has no light client here)"
                    )
                self._check_amount(chunk)
                proof = proofs.pop(chunk.chunk_id, None)
                if proof is None:
                    raise InvalidRequest(f"chunk {chunk.chunk_id}: no proof that it is funded")
                funded.append((chunk.chunk_id, self.balances.check_funded(chunk, proof)))
            if proofs:
                raise InvalidRequest("balance proofs for chunks not being added")
        self._core().add_chunks(chunks)
        if self.balances is not None:
            for chunk_id, number in funded:
                self.balances.note_funded(chunk_id, number)
        return NOTHING

    def _check_amount(self, chunk: Chunk) -> None:
        """A chunk's amount is worth its USD value at the asset's price the oracle last
        set on the fee chain (within ``AMOUNT_TOLERANCE_BPS``, for moves since it was
        funded): the host names the amount, and the funding proof only shows that much."""
        if self.balances is None:
            return
        source = self.balances.sources[chunk.asset]
        price = self.prices_e8.get(compute_oracle_key(chunk.asset), 0)
        if price <= 0:
            raise InvalidRequest(f"no price of {chunk.asset} seen on the fee chain yet")
        least = compute_chunk_amount(chunk.usd_e8, price, source.decimals)
        if chunk.amount * BPS < least * (BPS - AMOUNT_TOLERANCE_BPS):
            raise InvalidRequest(
                f"chunk {chunk.chunk_id}: {chunk.amount} base units are not worth "
                f"{chunk.usd_e8 / 10**8:.2f} USD at the price seen on chain ({least} are)"
            )

    @MATCHER_REGISTER_REQUESTER.handler
    def register_requester(self, request: RegisterRequester) -> Nothing:
        if self.vault_policy is None:
            raise InvalidRequest("matcher is not configured")
        verify_vault_card(request.card, self.vault_policy, self._now())
        account = request.account.lower()
        known = self.requesters.get(account)
        if known is not None and known != request.card.node.identity_key:
            raise InvalidRequest(f"{request.account} registered another vault already")
        self.requesters[account] = request.card.node.identity_key
        return NOTHING

    def _check_claim(self, report: DoubleSpendReport, claim: LossClaim) -> None:
        """The victim's attested vault must say it received the key and never swept it."""
        vault = self.requesters.get(report.victim.lower())
        if vault is None:
            raise ReportRejected(f"{report.victim} has no registered vault to vouch for it")
        if claim.vault != vault or claim.chunk_id != report.chunk_id:
            raise ReportRejected("the loss claim is not the victim's vault's, for this chunk")
        if not is_valid_ed25519(vault, claim.get_body(), claim.signature):
            raise ReportRejected("the loss claim's signature does not verify")
        if not is_account(claim.sweep_address):
            raise ReportRejected("the loss claim names no sweep address for the chunk")

    @MATCHER_REGISTER_SWEEP_ADDRESS.handler
    def register_sweep_address(self, request: SweepAddress) -> Nothing:
        self._core().register_sweep_address(request.requester, request.address)
        return NOTHING

    def _client_request(self, signed: SignedRequest, action: str, kind: type[T]) -> tuple[str, T]:
        """The body of a signed client request, and the account that signed it (its nonce
        is recorded by :meth:`_took`, once the request went through)."""
        account = verify_client_request(
            signed,
            service=self.ctx.identity.identity_key,
            action=action,
            last_nonce=lambda account: self.nonces.get(account.lower(), 0),
        )
        try:
            body = decode_canonical(signed.request.body, kind)
        except SealbridgeError as exc:
            raise InvalidRequest(f"the {action} request is malformed: {exc}") from exc
        return account, body

    def _took(self, account: str, signed: SignedRequest) -> None:
        self.nonces[account.lower()] = signed.request.nonce

    @MATCHER_MATCH.handler
    def match(self, signed: SignedRequest) -> MatchAnswer:
        """A requester's signed ``ChunkRequest`` (it must name the signing account)."""
        account, request = self._client_request(signed, "match", ChunkRequest)
        if request.requester.lower() != account.lower():
            raise ClientRefused("the request is signed by another account than its requester")
        offer = self._core().match(request, seed=self._seed(), now=self._now())
        self._took(account, signed)
        vaults = sorted({chunk.vault for chunk in offer.chunks})
        answer = MatchAnswer(offer=offer, manifests=[self.manifests[v] for v in vaults])
        signature = self.ctx.sign_identity(answer.get_body())
        return MatchAnswer(offer=offer, manifests=answer.manifests, signature=signature)

    @MATCHER_ACCEPT.handler
    def accept(self, order: AcceptOrder) -> Offer:
        """A requester's signed ``Accept``: only the account the offer was made to, and
        (with a fee chain) only once the matcher has seen the fee paid there."""
        signed = order.signed
        account, request = self._client_request(signed, "accept", Accept)
        core = self._core()
        offer = core.check_accept(request.request_id, self._now(), requester=account)
        if self.fee_chain is not None and offer.fee_e8 > 0:
            if self.fee_price_e8 <= 0:
                raise InvalidRequest("no price of the fee asset seen on the fee chain yet")
            due = usd_to_wei(offer.fee_e8, self.fee_price_e8)
            key = (account.lower(), hashlib.sha256(request.request_id.encode()).digest())
            paid = self.fees_paid.get(key, 0)
            if paid < due:
                raise InvalidRequest(
                    f"the fee of offer {request.request_id} is not paid on the fee chain "
                    f"(seen up to block {self.fee_chain.number}: {paid} of {due} wei)"
                )
        offer = core.accept(request.request_id, self._now(), requester=account)
        self._took(account, signed)
        return offer

    @MATCHER_CHECK_ACCEPT.handler
    def check_accept(self, request: Accept) -> Offer:
        """The preconditions of ``accept`` (not journaled: it changes nothing)."""
        offer = self._core().check_accept(
            # the clock now (``_now`` is the time of the last journaled call)
            request.request_id,
            self.clock(),
            requester=request.requester,
            margin_s=request.margin_s,
        )
        return offer

    @MATCHER_DECLINE.handler
    def decline(self, request: Accept) -> Nothing:
        self._core().decline(request.request_id)
        return NOTHING

    @MATCHER_EXPIRE.handler
    def expire(self, _: Nothing) -> Expired:
        """Release the reservations of offers past their TTL (on the enclave's clock)."""
        return Expired(request_ids=self._core().expire(self._now()))

    def _unreleased(self, request: Reclaim) -> tuple[str, str]:
        """(chunk id, owner) of a vault-signed Unreleased statement, checked."""
        statement = request.statement
        vault, _ = parse_chunk_id(statement.chunk_id)
        manifest = self.manifests.get(vault)
        owner = self.owners.get(vault)
        if manifest is None or owner is None:
            raise InvalidRequest(f"chunk {statement.chunk_id}: its vault is not registered")
        verify_vault_statement(statement, manifest.node.identity_key)
        return statement.chunk_id, owner

    @MATCHER_RECLAIM.handler
    def reclaim(self, request: Reclaim) -> Nothing:
        """An allocated chunk whose key its vault never released goes back to the book."""
        chunk_id, owner = self._unreleased(request)
        self._core().reclaim(chunk_id, owner)
        return NOTHING

    @MATCHER_WITHDRAW.handler
    def withdraw(self, request: Reclaim) -> Nothing:
        """An available chunk leaves the book (its owner may then sweep it)."""
        chunk_id, owner = self._unreleased(request)
        core = self._core()
        exact = core.get_chunk(chunk_id).chunk.owner
        if exact.lower() != owner:
            raise InvalidRequest(f"chunk {chunk_id} is not its vault owner's")
        core.withdraw_chunk(chunk_id, exact)
        return NOTHING

    @MATCHER_ADD_BOND.handler
    def add_bond(self, request: AddBond) -> Nothing:
        core = self._core()
        status = core.get_status().owners.get(request.owner)
        held = status.bond_usd_e8 if status is not None else 0
        if type(request.usd_e8) is int:
            self._check_bond(request.owner, held + request.usd_e8)
        core.add_bond(request.owner, request.usd_e8)
        return NOTHING

    def _check_bond(self, owner: str, usd_e8: object) -> None:
        """With a fee chain, a bond is booked only as far as the matcher saw it posted to
        the pool there (at the last price it saw), never on its host's word."""
        if self.fee_chain is None or type(usd_e8) is not int:
            return
        seen_wei = self.bonds_wei.get(owner.lower(), 0)
        seen_usd = seen_wei * self.fee_price_e8 // 10**18
        if usd_e8 > seen_usd:
            raise InvalidRequest(
                f"{owner}'s bond of {usd_e8 / 10**8:.2f} USD is more than the matcher saw "
                f"posted on the fee chain ({seen_wei} wei = {seen_usd / 10**8:.2f} USD, "
                f"up to block {self.fee_chain.number})"
            )

    @MATCHER_SETTLE.handler
    def settle(self, request: Settle) -> Nothing:
        self._core().settle(request.chunk_id, request.requester)
        return NOTHING

    def _penalty_price(self, host_price_e8: int) -> int:
        """The ETH price a penalty's wei amounts use: with a fee chain, the price the
        oracle last set there, read from blocks the matcher verified (the host's figure
        is not used); without one (unit tests, the simulator), the host's."""
        if self.fee_chain is None:
            usd_to_wei(1, host_price_e8)  # validates it
            return host_price_e8
        if self.fee_price_e8 <= 0:
            raise InvalidRequest("no ETH price seen on the fee chain yet: follow it first")
        return self.fee_price_e8

    @MATCHER_REPORT.handler
    def report(self, request: LossReport) -> PenaltyOutcome:
        core = self._core()
        owner = core.get_chunk(request.report.chunk_id).chunk.owner
        if owner.lower() != request.owner_account.lower():
            raise InvalidRequest("owner_account is not the chunk's owner")
        if type(request.tx.nonce) is not int or request.tx.nonce < 0:
            raise InvalidRequest("nonce must be an int >= 0")
        price_e8 = self._penalty_price(request.price_e8)  # checked before anything changes
        self._check_claim(request.report, request.claim)
        observation = request.observation
        chunk = core.get_chunk(request.report.chunk_id).chunk
        if self.balances is not None and self.balances.is_proven(chunk):
            # the balance is read from a proof at a verified header, after the funding
            if request.balance is None:
                raise InvalidRequest(f"chunk {chunk.chunk_id}: no proof of its balance")
            balance = self.balances.read_after_funding(chunk, request.balance)
            observation = msgspec.structs.replace(observation, balance=balance)
        if not isinstance(observation.outflows_to, list) or len(observation.outflows_to) > 256:
            raise InvalidRequest("observation.outflows_to must be a list of at most 256")
        recipients = {
            a.lower()
            for a in [observation.outflow_to, *observation.outflows_to]
            if isinstance(a, str)
        }
        if request.claim.sweep_address.lower() in recipients:
            raise ReportRejected(
                "the funds went to the victim vault's own sweep key for this chunk "
                "(the requester swept it itself)"
            )
        for address in (request.tx.pool, request.report.victim, request.owner_account):
            if not is_account(address):
                raise InvalidRequest(f"not an address: {address!r}")
        pool = to_checksum_address(bytes.fromhex(request.tx.pool[2:]))
        fee = self.config.fee_chain if self.config is not None else None
        if fee is not None and (
            pool.lower() != "0x" + fee.pool.hex() or request.tx.chain_id != fee.chain_id
        ):
            raise InvalidRequest("the operator's transactions go to the pool on the fee chain")
        for name in ("chain_id", "max_fee_per_gas", "max_priority_fee_per_gas"):
            value = getattr(request.tx, name)
            if type(value) is not int or value < 0 or (name == "chain_id" and value == 0):
                raise InvalidRequest(f"operator transaction: bad {name} {value!r}")
        # judged first, applied last: whatever can still fail (signing, encoding) fails
        # before the matcher changes (a half-applied penalty would be lost to the journal)
        penalty = core.judge_double_spend(request.report, observation)
        slash_wei = usd_to_wei(penalty.slashed_usd_e8, price_e8)
        compensation_wei = usd_to_wei(penalty.compensation_usd_e8, price_e8)
        calls: list[bytes] = []
        if slash_wei > 0:
            calls.append(
                _selector("slash(address,uint256,bytes32)")
                + abi_encode(
                    ["address", "uint256", "bytes32"],
                    [request.owner_account, slash_wei, penalty.claim_id],
                )
            )
        if compensation_wei > 0:
            calls.append(
                _selector("compensate(address,uint256,bytes32)")
                + abi_encode(
                    ["address", "uint256", "bytes32"],
                    [penalty.victim, compensation_wei, penalty.claim_id],
                )
            )
        transactions = []
        for offset, data in enumerate(calls):
            tx = {
                "type": 2,
                "chainId": request.tx.chain_id,
                "nonce": request.tx.nonce + offset,
                "to": pool,
                "value": 0,
                "data": data,
                "gas": OPERATOR_GAS,
                "maxFeePerGas": request.tx.max_fee_per_gas,
                "maxPriorityFeePerGas": request.tx.max_priority_fee_per_gas,
            }
            try:
                signed = Account.sign_transaction(tx, self._operator_secret)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"operator transaction: {exc}") from exc
            transactions.append(bytes(signed.raw_transaction))
        answer = PenaltyOutcome(
            penalty=penalty,
            slash_wei=slash_wei.to_bytes(32, "big"),
            compensation_wei=compensation_wei.to_bytes(32, "big"),
            transactions=transactions,
        )
        encode(answer)  # whatever can fail, before the matcher changes (see above)
        if core.report_double_spend(request.report, observation) != penalty:
            raise WrongState("the penalty changed while it was applied")  # (cannot happen)
        return answer

    @MATCHER_STATUS.handler
    def status(self, _: Nothing) -> MatcherStatus:
        status: MatcherStatus = self._core().get_status()
        return status
