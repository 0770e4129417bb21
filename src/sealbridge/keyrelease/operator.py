"""The requester's and the matcher operator's host flows, sans-I/O.

Theory of operation
-------------------
Between a client and the matcher enclave sits an untrusted host. For a requester it
asks the matcher for chunks and checks the answer before anyone relies on it; it
accepts an offer and pays the matching fee; as the matcher's operator it files a
victim's double-spend report and submits the slash and the compensation the matcher
signed; for an owner it offers funded chunks and reclaims chunks whose keys stayed free
(:class:`MatchFlow`, :class:`AcceptFlow`, :class:`ReportFlow`, :class:`OfferFlow`,
:class:`ReclaimFlow`). Each of these
is a *flow*: a short state machine that decides what to ask next, what an answer means
and when to refuse, and does nothing else. Its driver (``KeyReleaseDevnet`` on a
devnet, a hand-written host in ``tests/unit``) carries out what the flow asks and hands
back the answers. Time comes in as ``now`` (seconds of the
wall clock: quotes are checked against it); nothing here reads a clock or a chain.

:class:`MatcherOperator` keeps what outlives one flow (the contract names already
matched) and opens the flows.

Effects (each names a ``tag``; its answer carries the same tag):

* :class:`~sealbridge.core.effects.CallEnclave` -- call the *matcher* enclave. Answer:
  :class:`~sealbridge.core.effects.EnclaveAnswer`.
* :class:`CallVault` -- call a client's vault enclave (the victim's loss claim, the
  owner's word that a key is free). Answer: :class:`~sealbridge.core.effects.EnclaveAnswer`.
* :class:`~sealbridge.core.effects.ReadChain` -- a typed question about a chain
  (:class:`ChunkBalanceQuery`, :class:`PriceQuery`, :class:`FeesPaidQuery`,
  :class:`PoolBalanceQuery`, :class:`OutflowsQuery`, :class:`TxInputQuery`,
  :class:`TokenRecipientsQuery`, :class:`BalanceProofQuery`,
  :class:`BalanceProofsQuery`, :class:`GasFeesQuery`, :class:`NonceQuery`). Answer:
  :class:`~sealbridge.core.effects.ChainRead`.
* :class:`~sealbridge.core.effects.SubmitTx` -- :class:`PayFee` from the requester's
  wallet, or :class:`RawTx` (a transaction the matcher signed). Answer:
  :class:`~sealbridge.core.effects.TxOutcome` (a driver answers once it is mined).
* :class:`SyncFeeChain` -- feed the matcher the fee chain's blocks it has not verified
  (so it sees a fee paid). Answer: :class:`FeeChainSynced`.
* :class:`~sealbridge.core.effects.Report` -- an observation (the devnet's events
  ``expire``, ``match``, ``accept``, ``penalty``, ``offer``, ``reclaim``).

Flows and their steps (each step waits on one answer; a flow's ``_moves`` lists them)::

    match:   EXPIRING --Expired (report "expire" if any)--> MATCHING
             MATCHING --MatchAnswer for this request, signed by the matcher's card,
                        every chunk in an attested manifest--> BALANCES
             BALANCES --each chunk holds its amount, in order--> DONE (report "match")
    accept:  CHECKING --the matcher's CHECK_ACCEPT returns this very offer--> PRICING
             PRICING --fee in wei at the oracle's ETH price--> FEES_PAID (fee > 0)
                                                             | SYNCING   (no fee)
             FEES_PAID --paid already--> SYNCING | --not yet--> PAYING
             PAYING --the fee's transaction mined--> SYNCING
             SYNCING --the matcher followed the fee chain--> ACCEPTING
             ACCEPTING --MATCHER_ACCEPT--> POOL --pool balance--> DONE (report "accept")
    report:  OUTFLOWS --the chunk address's transactions--> INPUTS (token chunk) | PROOF
             INPUTS --the calldata of each call to the token--> TRANSFERS
             TRANSFERS --the token's Transfer recipients--> PROOF
             PROOF --a balance proof for the matcher (none for btc)--> BALANCE
             BALANCE --> GAS --> CLAIM (the victim's vault signs) --> PRICING --> NONCE
             NONCE --> JUDGING (MATCHER_REPORT: the matcher judges and signs)
             JUDGING --> SUBMITTING (each signed transaction mined, in order)
             SUBMITTING --> POOL --pool balance--> DONE (report "penalty")
    offer:   PROVING --a proof of each chunk's balance--> ADDING
             ADDING --MATCHER_ADD_CHUNKS--> DONE (report "offer")
    reclaim: per chunk, in order: ATTESTING --the owner's vault: the key is free-->
             RECLAIMING --MATCHER_RECLAIM--> next chunk, or DONE (report "reclaim")

What is trusted, and why. Nothing an answer says is taken on its word where it can be
checked here. A match answer must be for the request that was sent (request id,
requester, contract, asset), signed by the matcher whose attested card the requester
checked, and every chunk must sit at a key of a vault whose manifest quote verifies
(:func:`~sealbridge.keyrelease.matcher_program.verify_answer`). The balances are the
chain's (read by the driver): every offered chunk must hold its amount, or the offer is
refused. An accept goes ahead only after the matcher enclave's own ``CHECK_ACCEPT``
returned the very offer the requester holds (made to it, still open for the margin the
fee's transaction needs): a refused accept pays nothing. The fee is paid once: what the
pool's ``FeePaid`` events already credit the requester for this offer is not paid again
(only what is missing is paid; a price that makes a due fee 0 wei is refused).
A double-spend report is judged by the matcher enclave, not here: the flow gathers what
it needs (where the chunk's value went -- the first recipient, the first transaction
and at most :data:`MAX_OUTFLOWS` recipients, reading a token ``transfer``'s recipient
from its calldata -- a balance proof, the victim vault's signed claim, the price and
the operator's nonce), and submits the transactions the matcher signed, in order. It
refuses a claim, a proof or a penalty that names another chunk, and a transaction that
is not signed by the operator key for the pool on the fee chain at the nonce the matcher
was given (or the next), or a third one. An offer of bitcoin chunks is refused (nothing proves their
balance to the matcher); proofs of chunks not offered, or twice, are refused; so is a
vault's statement that another key is free.

Hostile input. Each of these raises a typed error and changes nothing (the flow still
waits for the same answer; a driver that gives up drops the flow):

* an answer whose tag was never asked, was answered already, or belongs to another
  flow; an answer of the wrong kind or shape (a struct is re-validated as decoding its
  bytes would); a ``now`` that is no finite number (:class:`OperatorInputRefused`);
* an answer that carries a failure: the enclave's refusal, a failed read, a matcher's
  transaction not mined (:class:`OperatorInputRefused`), a fee transaction not mined
  (:class:`FeeNotPaid`);
* an offer for another request, another offer from ``CHECK_ACCEPT``, a chunk below its
  amount (:class:`OfferRefused`); a card or manifest that does not verify
  (:class:`~sealbridge.keyrelease.errors.AttestationRefused`).

A request the flow refuses before it starts (a reused contract name, an accept that
names another offer or is made by another requester) raises
:class:`~sealbridge.keyrelease.errors.InvalidRequest`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_keys.exceptions import BadSignature
from eth_utils.exceptions import ValidationError
from hexbytes import HexBytes
from rlp.exceptions import RLPException

from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    ReadChain,
    Report,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message, decode, decode_canonical, encode
from sealbridge.core.errors import EncodingError, SealbridgeError
from sealbridge.crypto.signing import to_checksum_address
from sealbridge.keyrelease.auth import SignedRequest
from sealbridge.keyrelease.balances import BalanceProof
from sealbridge.keyrelease.errors import (
    FeeNotPaid,
    InvalidRequest,
    OfferRefused,
    OperatorInputRefused,
)
from sealbridge.keyrelease.matcher import ChainObservation, DoubleSpendReport
from sealbridge.keyrelease.matcher_program import (
    MATCHER_ACCEPT,
    MATCHER_ADD_CHUNKS,
    MATCHER_CHECK_ACCEPT,
    MATCHER_EXPIRE,
    MATCHER_MATCH,
    MATCHER_RECLAIM,
    MATCHER_REPORT,
    usd_to_wei,
    verify_answer,
)
from sealbridge.keyrelease.messages import (
    Accept,
    AcceptOrder,
    AddChunks,
    Expired,
    LossClaim,
    LossReport,
    MatchAnswer,
    MatcherCard,
    OperatorTx,
    PenaltyOutcome,
    Reclaim,
    Unreleased,
)
from sealbridge.keyrelease.types import USD_DECIMALS, Chunk, ChunkRequest, Offer
from sealbridge.keyrelease.vault import (
    ERC20_TRANSFER_SELECTOR,
    VAULT_ATTEST_UNRELEASED,
    VAULT_CLAIM_LOSS,
    ChunkRef,
)
from sealbridge.tee.ecall import NOTHING
from sealbridge.tee.policy import AttestationPolicy

__all__ = [
    "ACCEPT_MARGIN_S",
    "FEE_ASSET",
    "MAX_OUTFLOWS",
    "AcceptFlow",
    "AcceptStep",
    "BalanceProofQuery",
    "BalanceProofsQuery",
    "CallVault",
    "ChunkBalanceQuery",
    "FeeChainSynced",
    "FeesPaidQuery",
    "GasFeesQuery",
    "MatchFlow",
    "MatchStep",
    "MatcherOperator",
    "NonceQuery",
    "OfferFlow",
    "OfferStep",
    "OperatorAnswer",
    "OperatorEffect",
    "PayFee",
    "PoolBalanceQuery",
    "PriceQuery",
    "RawTx",
    "ReclaimFlow",
    "ReclaimStep",
    "ReportFlow",
    "ReportStep",
    "SyncFeeChain",
    "TokenRecipientsQuery",
    "TxInputQuery",
    "OutflowsQuery",
    "compute_fee_key",
]

# a requester accepts only an offer that stays open this much longer (at most a quarter
# of its time to live): the fee's transaction must be mined before the matcher confirms
# (a refused accept pays nothing)
ACCEPT_MARGIN_S = 15.0
FEE_ASSET = "ETH@31337"  # the fee chain's native asset: fees are paid in it
_USD = 10**USD_DECIMALS


# --- questions and decisions ------------------------------------------------------------------


class ChunkBalanceQuery(Message, frozen=True):
    """What ``chunk``'s address holds now, in the chunk's base units -> int."""

    chunk: Chunk


class PriceQuery(Message, frozen=True):
    """The oracle's price of ``asset`` (USD x 1e8; a stale one is the driver's error)
    -> int."""

    asset: str


class FeesPaidQuery(Message, frozen=True):
    """What ``payer`` paid into the pool as fees of ``request_key`` -> int (wei)."""

    payer: str
    request_key: bytes


class PoolBalanceQuery(Message, frozen=True):
    """The insurance pool's balance -> int (wei)."""


class PayFee(Message, frozen=True):
    """Pay ``amount_wei`` into the pool from ``payer``'s wallet as the fee of
    ``request_key`` (a :class:`~sealbridge.core.effects.SubmitTx`)."""

    payer: str
    request_key: bytes
    amount_wei: int


@dataclass(frozen=True, slots=True)
class SyncFeeChain:
    """Hand the matcher every fee-chain block it has not verified yet."""

    tag: str


@dataclass(frozen=True, slots=True)
class FeeChainSynced:
    """The answer to :class:`SyncFeeChain`: the newest block the matcher verified."""

    tag: str
    tip: int


@dataclass(frozen=True, slots=True)
class CallVault:
    """Call the vault enclave of the client ``party``. Answer:
    :class:`~sealbridge.core.effects.EnclaveAnswer`."""

    tag: str
    party: str
    ecall: Any
    request: Any


OperatorEffect = CallEnclave | CallVault | ReadChain | SubmitTx | SyncFeeChain | Report
OperatorAnswer = EnclaveAnswer | ChainRead | TxOutcome | FeeChainSynced
_ANSWER_OF: dict[type, type] = {
    CallEnclave: EnclaveAnswer,
    ReadChain: ChainRead,
    SubmitTx: TxOutcome,
    SyncFeeChain: FeeChainSynced,
    CallVault: EnclaveAnswer,
}


def compute_fee_key(request_id: str) -> bytes:
    """The pool's 32-byte key of an offer's fee."""
    return hashlib.sha256(request_id.encode()).digest()


_T = TypeVar("_T")
_F = TypeVar("_F", bound="_Flow")


def _get_valid(
    tag: str,
    value: Any,
    kind: type[_T],
    error: type[SealbridgeError] = OperatorInputRefused,
) -> _T:
    """``value`` as decoding its bytes would give it: a struct a host built by hand, with
    fields of any type (or nested too deeply), is refused before anything reads it."""
    try:
        return decode(encode(value), kind)
    except (EncodingError, RecursionError) as exc:
        raise error(f"{tag}: a malformed {kind.__name__}: {exc}") from exc


def _check_time(now: object) -> None:
    """``now`` is what quotes and offers are checked against: a finite number."""
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise OperatorInputRefused(f"the time must be a finite number, got {now!r}")


def _get_count(answer: ChainRead, what: str) -> int:
    value = answer.value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OperatorInputRefused(f"{answer.tag}: {what} must be an int >= 0, got {value!r}")
    return value


# --- flows -------------------------------------------------------------------------------------


class _Flow:
    """Tags, the answers awaited, and the checks every answer goes through."""

    _moves: dict[str, frozenset[str]] = {}

    def __init__(self, flow_id: str, first: str) -> None:
        self.flow_id = flow_id
        self.step = first
        self._awaiting: dict[str, OperatorEffect] = {}
        self._issued = 0

    def get_awaiting(self) -> list[OperatorEffect]:
        """The questions asked and not answered yet."""
        return list(self._awaiting.values())

    def process(self, answer: OperatorAnswer, now: float) -> list[OperatorEffect]:
        """The answer to a question asked earlier; returns what to do next. A refused
        answer raises and changes nothing."""
        if not isinstance(answer, EnclaveAnswer | ChainRead | TxOutcome | FeeChainSynced):
            raise OperatorInputRefused(f"not an answer to a flow: {type(answer).__name__}")
        _check_time(now)
        asked = self._awaiting.get(answer.tag) if isinstance(answer.tag, str) else None
        if asked is None or isinstance(asked, Report):
            raise OperatorInputRefused(f"{self.flow_id}: no question {answer.tag!r} awaits")
        if not isinstance(answer, _ANSWER_OF[type(asked)]):
            raise OperatorInputRefused(
                f"{answer.tag}: a {type(asked).__name__} is not answered by a "
                f"{type(answer).__name__}"
            )
        if isinstance(answer, EnclaveAnswer) and answer.error:
            raise OperatorInputRefused(f"{answer.tag}: the enclave refused: {answer.error}")
        if isinstance(answer, ChainRead) and answer.error:
            raise OperatorInputRefused(f"{answer.tag}: the read failed: {answer.error}")
        effects = self._on_answer(asked, answer, now)  # raises before it changes anything
        del self._awaiting[answer.tag]
        return effects

    def _on_answer(
        self, asked: OperatorEffect, answer: OperatorAnswer, now: float
    ) -> list[OperatorEffect]:
        raise NotImplementedError

    def _move(self, step: str) -> None:
        if step not in self._moves.get(self.step, frozenset()):  # pragma: no cover
            raise OperatorInputRefused(f"{self.flow_id}: no move from {self.step} to {step}")
        self.step = step

    def _next_tag(self, kind: str) -> str:
        self._issued += 1
        return f"{self.flow_id}/{kind}/{self._issued}"

    def _call(self, kind: str, ecall: Any, request: Any) -> CallEnclave:
        effect = CallEnclave(self._next_tag(kind), ecall, request)
        self._awaiting[effect.tag] = effect
        return effect

    def _read(self, kind: str, query: Any) -> ReadChain:
        effect = ReadChain(self._next_tag(kind), query)
        self._awaiting[effect.tag] = effect
        return effect

    def _response(self, answer: OperatorAnswer, kind: type) -> Any:
        response = answer.response if isinstance(answer, EnclaveAnswer) else None
        if not isinstance(response, kind):
            raise OperatorInputRefused(f"{answer.tag}: expected a {kind.__name__}")
        return _get_valid(answer.tag, response, kind)


class MatchStep(StrEnum):
    NEW = "new"
    EXPIRING = "expiring"  # MATCHER_EXPIRE: offers past their time to live are released
    MATCHING = "matching"  # MATCHER_MATCH with the client's signed request
    BALANCES = "balances"  # one ChunkBalanceQuery per offered chunk, in order
    DONE = "done"


class MatchFlow(_Flow):
    """A requester's match: expire stale offers, ask the matcher, check its answer (see
    the module docstring). ``result`` is the checked answer once ``step`` is DONE."""

    _moves = {
        MatchStep.NEW: frozenset({MatchStep.EXPIRING}),
        MatchStep.EXPIRING: frozenset({MatchStep.MATCHING}),
        MatchStep.MATCHING: frozenset({MatchStep.BALANCES}),
        MatchStep.BALANCES: frozenset({MatchStep.DONE}),
    }

    def __init__(
        self,
        operator: MatcherOperator,
        flow_id: str,
        *,
        signed: SignedRequest,
        request: ChunkRequest,
        label: str,
        card: MatcherCard,
        vault_policy: AttestationPolicy,
        names: dict[str, str],
    ) -> None:
        super().__init__(flow_id, MatchStep.NEW)
        self._operator = operator
        self.signed = signed
        self.request = request
        self.label = label
        self._card = card
        self._vault_policy = vault_policy
        self._names = dict(names)  # account -> label, for the report
        self._started = 0.0
        self._checked = 0  # chunks whose balance checked out
        self.result: MatchAnswer | None = None

    def start(self, now: float) -> list[OperatorEffect]:
        if self.step is not MatchStep.NEW:
            raise InvalidRequest(f"{self.flow_id} started already")
        _check_time(now)
        self._started = now
        self._move(MatchStep.EXPIRING)
        return [self._call("expire", MATCHER_EXPIRE, NOTHING)]

    def _on_answer(
        self, asked: OperatorEffect, answer: OperatorAnswer, now: float
    ) -> list[OperatorEffect]:
        if self.step is MatchStep.EXPIRING:
            expired = self._response(answer, Expired)
            effects: list[OperatorEffect] = []
            if expired.request_ids:
                effects.append(Report("expire", {"offers": len(expired.request_ids)}))
            self._move(MatchStep.MATCHING)
            effects.append(self._call("match", MATCHER_MATCH, self.signed))
            return effects
        if self.step is MatchStep.MATCHING:
            return self._on_match(self._response(answer, MatchAnswer), now)
        if not isinstance(answer, ChainRead):  # pragma: no cover -- the kind was checked
            raise OperatorInputRefused(f"{answer.tag}: expected a balance")
        return self._on_balance(answer, now)

    def _on_match(self, answer: MatchAnswer, now: float) -> list[OperatorEffect]:
        offer, request = answer.offer, self.request
        if (
            offer.request_id != request.request_id
            or not isinstance(offer.requester, str)
            or offer.requester.lower() != request.requester.lower()
            or offer.contract != request.contract
            or offer.asset != request.asset
        ):
            raise OfferRefused(
                f"the offer answers another request (id {offer.request_id!r}, requester "
                f"{offer.requester!r}, contract {offer.contract!r}), not "
                f"{request.request_id!r} of {self.label}"
            )
        if not offer.chunks:
            raise OfferRefused(f"offer {offer.request_id} holds no chunk")
        if request.contract in self._operator.contracts:  # by a flow opened alongside
            raise InvalidRequest(f"contract {request.contract} was used before")
        verify_answer(answer, self._card, self._vault_policy, now)
        # checked: the contract's name is taken, whatever the chain says next
        self._operator.contracts.add(request.contract)
        self.result = answer
        self._move(MatchStep.BALANCES)
        return [self._read("balance", ChunkBalanceQuery(chunk=offer.chunks[0]))]

    def _on_balance(self, answer: ChainRead, now: float) -> list[OperatorEffect]:
        if self.result is None:  # pragma: no cover -- set before the first read
            raise OperatorInputRefused(f"{answer.tag}: no offer to check")
        chunks = self.result.offer.chunks
        chunk = chunks[self._checked]
        held = _get_count(answer, f"the balance of {chunk.chunk_id}")
        if held < chunk.amount:
            raise OfferRefused(f"offered chunk {chunk.chunk_id} holds {held}, not {chunk.amount}")
        self._checked += 1
        if self._checked < len(chunks):
            return [self._read("balance", ChunkBalanceQuery(chunk=chunks[self._checked]))]
        self._move(MatchStep.DONE)
        return [self._report(now)]

    def _report(self, now: float) -> Report:
        offer = self.result.offer if self.result is not None else None
        if offer is None:  # pragma: no cover
            raise OperatorInputRefused("no offer to report")
        owners: dict[str, int] = {}
        for chunk in offer.chunks:
            name = self._names.get(chunk.owner, chunk.owner)
            owners[name] = owners.get(name, 0) + 1
        return Report(
            "match",
            {
                "client": self.label,
                "asset": self.request.asset,
                "usd": self.request.usd_e8 / _USD,
                "chunks": len(offer.chunks),
                "owners": owners,
                "fee_usd": offer.fee_e8 / _USD,
                "checked": "matcher quote + signature, vault manifests, balances on chain",
                "ms": round((now - self._started) * 1e3, 1),
            },
        )


class AcceptStep(StrEnum):
    NEW = "new"
    CHECKING = "checking"  # MATCHER_CHECK_ACCEPT: the matcher's own word on the offer
    PRICING = "pricing"  # the fee asset's oracle price
    FEES_PAID = "fees_paid"  # what the pool already credits for this offer
    PAYING = "paying"  # the fee's transaction
    SYNCING = "syncing"  # the matcher follows the fee chain to the payment
    ACCEPTING = "accepting"  # MATCHER_ACCEPT with the client's signed Accept
    POOL = "pool"  # the pool's balance, for the report
    DONE = "done"


class AcceptFlow(_Flow):
    """A requester's accept of an offer it holds: the matcher's preconditions first, the
    fee once, then the signed accept (see the module docstring)."""

    _moves = {
        AcceptStep.NEW: frozenset({AcceptStep.CHECKING}),
        AcceptStep.CHECKING: frozenset({AcceptStep.PRICING}),
        AcceptStep.PRICING: frozenset({AcceptStep.FEES_PAID, AcceptStep.SYNCING}),
        AcceptStep.FEES_PAID: frozenset({AcceptStep.PAYING, AcceptStep.SYNCING}),
        AcceptStep.PAYING: frozenset({AcceptStep.SYNCING}),
        AcceptStep.SYNCING: frozenset({AcceptStep.ACCEPTING}),
        AcceptStep.ACCEPTING: frozenset({AcceptStep.POOL}),
        AcceptStep.POOL: frozenset({AcceptStep.DONE}),
    }

    def __init__(self, flow_id: str, *, answer: MatchAnswer, signed: SignedRequest) -> None:
        """Refuse a signed accept that is malformed or names another offer than
        ``answer``'s (InvalidRequest)."""
        try:
            body = decode_canonical(signed.request.body, Accept)
        except SealbridgeError as exc:
            raise InvalidRequest(f"the accept request is malformed: {exc}") from exc
        if body.request_id != answer.offer.request_id:
            raise InvalidRequest("the signed accept names another offer")
        super().__init__(flow_id, AcceptStep.NEW)
        self.offer = answer.offer
        self.signed = signed
        self.requester = body.requester  # the account the accept says it is from
        self.label = ""
        self._account = ""
        self.fee_wei = 0
        self._request_key = compute_fee_key(self.offer.request_id)

    def start(self, *, label: str, account: str, offer_ttl_s: float) -> list[OperatorEffect]:
        """``account``: the client that signed the accept (checked by the driver);
        ``offer_ttl_s``: the matcher's offer time to live."""
        if self.step is not AcceptStep.NEW:
            raise InvalidRequest(f"{self.flow_id} started already")
        offer = self.offer
        if not isinstance(account, str) or offer.requester.lower() != account.lower():
            raise InvalidRequest(
                f"offer {offer.request_id} was made to another requester, not {label}"
            )
        self.label, self._account = label, account
        self._move(AcceptStep.CHECKING)
        # open, made to this account, and still open after the fee's transaction
        margin = min(ACCEPT_MARGIN_S, offer_ttl_s / 4)
        check = Accept(request_id=offer.request_id, requester=account, margin_s=margin)
        return [self._call("check-accept", MATCHER_CHECK_ACCEPT, check)]

    def _on_answer(
        self, asked: OperatorEffect, answer: OperatorAnswer, now: float
    ) -> list[OperatorEffect]:
        step = self.step
        if step is AcceptStep.CHECKING:
            if self._response(answer, Offer) != self.offer:
                raise OfferRefused(f"offer {self.offer.request_id} is not the one the matcher made")
            self._move(AcceptStep.PRICING)
            return [self._read("price", PriceQuery(asset=FEE_ASSET))]
        if step is AcceptStep.PRICING and isinstance(answer, ChainRead):
            price = _get_count(answer, "the fee asset's price")
            if price == 0:
                raise OperatorInputRefused(f"{answer.tag}: a price of 0")
            fee_wei = usd_to_wei(self.offer.fee_e8, price)
            if self.offer.fee_e8 > 0 and fee_wei <= 0:  # the node's price is absurd
                raise OperatorInputRefused(
                    f"{answer.tag}: at a price of {price} the fee of offer "
                    f"{self.offer.request_id} would be 0 wei"
                )
            self.fee_wei = fee_wei
            if fee_wei <= 0:
                return self._sync()
            self._move(AcceptStep.FEES_PAID)
            query = FeesPaidQuery(payer=self._account, request_key=self._request_key)
            return [self._read("fees-paid", query)]
        if step is AcceptStep.FEES_PAID and isinstance(answer, ChainRead):
            paid = _get_count(answer, "the fees paid")
            if paid >= self.fee_wei:  # paid once: a retry does not pay again
                return self._sync()
            self._move(AcceptStep.PAYING)
            # the matcher adds up the offer's FeePaid events: only what is missing is paid
            due = self.fee_wei - paid
            pay = PayFee(payer=self._account, request_key=self._request_key, amount_wei=due)
            effect = SubmitTx(self._next_tag("pay-fee"), pay)
            self._awaiting[effect.tag] = effect
            return [effect]
        if step is AcceptStep.PAYING and isinstance(answer, TxOutcome):
            if not answer.is_mined:
                raise FeeNotPaid(
                    f"the fee of offer {self.offer.request_id} was not paid "
                    f"({answer.status}{': ' + answer.reason if answer.reason else ''})"
                )
            return self._sync()
        if step is AcceptStep.SYNCING and isinstance(answer, FeeChainSynced):
            if isinstance(answer.tip, bool) or not isinstance(answer.tip, int) or answer.tip < 0:
                raise OperatorInputRefused(f"{answer.tag}: the tip must be an int >= 0")
            self._move(AcceptStep.ACCEPTING)
            return [self._call("accept", MATCHER_ACCEPT, AcceptOrder(signed=self.signed))]
        if step is AcceptStep.ACCEPTING:
            if self._response(answer, Offer) != self.offer:
                raise OfferRefused(f"offer {self.offer.request_id} is not the one the matcher made")
            self._move(AcceptStep.POOL)
            return [self._read("pool", PoolBalanceQuery())]
        if step is AcceptStep.POOL and isinstance(answer, ChainRead):
            pool = _get_count(answer, "the pool's balance")
            self._move(AcceptStep.DONE)
            data = {"client": self.label, "fee_wei": self.fee_wei, "pool_wei": pool}
            return [Report("accept", data)]
        raise OperatorInputRefused(
            f"{answer.tag}: not an answer for step {step}"
        )  # pragma: no cover

    def _sync(self) -> list[OperatorEffect]:
        self._move(AcceptStep.SYNCING)
        effect = SyncFeeChain(self._next_tag("sync"))
        self._awaiting[effect.tag] = effect
        return [effect]


# --- the operator ------------------------------------------------------------------------------


class MatcherOperator:
    """What outlives one flow: the contract names matched (a name is used once), and the
    numbering of flows (so an answer for one flow is never taken by another)."""

    def __init__(self) -> None:
        self.contracts: set[str] = set()
        self._flows = 0

    def _open(self, kind: str, make: Callable[[str], _F]) -> _F:
        """A flow numbered next; a flow refused as it opens takes no number."""
        flow = make(f"{kind}-{self._flows + 1}")
        self._flows += 1
        return flow

    def open_match(
        self,
        signed: SignedRequest,
        request: ChunkRequest,
        *,
        label: str,
        card: MatcherCard,
        vault_policy: AttestationPolicy,
        names: dict[str, str] | None = None,
    ) -> MatchFlow:
        """A match for the client ``label`` whose signed ``request`` the driver checked
        (signature, nonce, account). ``names``: account -> label, for the report."""
        if not isinstance(request, ChunkRequest):
            raise InvalidRequest("a match needs a ChunkRequest")
        if request.contract in self.contracts:
            raise InvalidRequest(
                f"contract {request.contract} was used before: name another one (or none, "
                "for a fresh one)"
            )
        return self._open(
            "match",
            lambda flow_id: MatchFlow(
                self,
                flow_id,
                signed=signed,
                request=request,
                label=label,
                card=card,
                vault_policy=vault_policy,
                names=names or {},
            ),
        )

    def open_accept(self, answer: MatchAnswer, signed: SignedRequest) -> AcceptFlow:
        """An accept of ``answer``'s offer with the client's ``signed`` Accept."""
        if not isinstance(answer, MatchAnswer):
            raise InvalidRequest("an accept needs the MatchAnswer it accepts")
        if not isinstance(signed, SignedRequest):
            raise InvalidRequest("an accept needs the client's SignedRequest")
        answer = _get_valid("accept", answer, MatchAnswer, InvalidRequest)
        signed = _get_valid("accept", signed, SignedRequest, InvalidRequest)
        return self._open(
            "accept", lambda flow_id: AcceptFlow(flow_id, answer=answer, signed=signed)
        )

    def open_report(
        self,
        *,
        victim: str,
        victim_account: str,
        chunk: Chunk,
        chain_id: int,
        token: str,
        since: int,
        fee_chain_id: int,
        pool: str,
        operator: str,
        names: dict[str, str] | None = None,
    ) -> ReportFlow:
        """The double-spend report of ``victim`` (its vault's client label) for ``chunk``,
        on chain ``chain_id`` (``token``: the chunk's token contract, "" for a native
        chunk), funded in block ``since``; the operator ``operator`` pays gas on the fee
        chain, where the pool ``pool`` is. ``names``: account -> label, for the report."""
        if not isinstance(chunk, Chunk):
            raise InvalidRequest("a report needs the chunk it is about")
        return self._open(
            "report",
            lambda flow_id: ReportFlow(
                flow_id,
                victim=victim,
                victim_account=victim_account,
                chunk=chunk,
                chain_id=chain_id,
                token=token,
                since=since,
                fee_chain_id=fee_chain_id,
                pool=pool,
                operator=operator,
                names=names or {},
            ),
        )

    def open_offer(self, owner: str, chunks: list[Chunk], *, unproven: set[str]) -> OfferFlow:
        """``owner`` offers funded ``chunks``; ``unproven``: the assets whose balance
        nothing proves to the matcher (bitcoin), which it does not book."""
        if not isinstance(chunks, list) or not all(isinstance(c, Chunk) for c in chunks):
            raise InvalidRequest("an offer is a list of chunks")
        if any(c.asset in unproven for c in chunks):
            raise InvalidRequest(
                "the matcher does not book btc chunks (it cannot prove a bitcoin balance)"
            )
        return self._open(
            "offer", lambda flow_id: OfferFlow(flow_id, owner=owner, chunks=list(chunks))
        )

    def open_reclaim(self, owner: str, chunk_ids: list[str]) -> ReclaimFlow:
        """``owner``'s vault vouches, chunk by chunk, that these keys are free."""
        if not isinstance(chunk_ids, list) or not all(isinstance(c, str) for c in chunk_ids):
            raise InvalidRequest("a reclaim names its chunks by id")
        if len(set(chunk_ids)) != len(chunk_ids):
            raise InvalidRequest("a reclaim names a chunk twice")
        return self._open(
            "reclaim",
            lambda flow_id: ReclaimFlow(flow_id, owner=owner, chunk_ids=list(chunk_ids)),
        )


# --- the double-spend report -------------------------------------------------------------------


class OutflowsQuery(Message, frozen=True):
    """Every transaction ``address`` sent on chain ``chain_id`` since block ``since``, in
    chain order -> list of ``[recipient, tx hash]``."""

    chain_id: int
    address: str
    since: int


class TxInputQuery(Message, frozen=True):
    """The calldata of a mined transaction -> bytes."""

    chain_id: int
    tx_hash: bytes


class TokenRecipientsQuery(Message, frozen=True):
    """The recipients of every token ``Transfer`` out of ``address`` since ``since`` (by
    ``transfer`` and ``transferFrom`` alike), in chain order -> list[str]."""

    address: str
    since: int


class BalanceProofQuery(Message, frozen=True):
    """A proof of ``chunk``'s balance at the matcher's newest verified block of its chain
    (after bringing the matcher to the head) -> BalanceProof, or None for a chunk whose
    balance nothing proves (bitcoin)."""

    chunk: Chunk


class GasFeesQuery(Message, frozen=True):
    """(max fee per gas, priority fee) to pay on chain ``chain_id`` now -> [int, int]."""

    chain_id: int


class NonceQuery(Message, frozen=True):
    """The next nonce of ``account`` on chain ``chain_id`` -> int."""

    chain_id: int
    account: str


class RawTx(Message, frozen=True):
    """Send a transaction signed elsewhere (by the matcher enclave) on ``chain_id``, and
    wait for it to be mined (a :class:`~sealbridge.core.effects.SubmitTx`)."""

    chain_id: int
    raw: bytes


class ReportStep(StrEnum):
    NEW = "new"
    OUTFLOWS = "outflows"  # the chunk address's outgoing transactions
    INPUTS = "inputs"  # token chunks: the calldata of each call to the token
    TRANSFERS = "transfers"  # token chunks: the token's Transfer events out of the address
    PROOF = "proof"  # a proof of the chunk's balance for the matcher
    BALANCE = "balance"  # the host's reading of the balance
    GAS = "gas"  # the fee chain's gas prices, for the operator's transactions
    CLAIM = "claim"  # the victim's vault signs its loss claim
    PRICING = "pricing"  # the fee asset's price
    NONCE = "nonce"  # the operator's next nonce
    JUDGING = "judging"  # MATCHER_REPORT: the matcher judges and signs
    SUBMITTING = "submitting"  # the slash and the compensation, one after the other
    POOL = "pool"  # the pool's balance, for the report
    DONE = "done"


_REPORT_ORDER = list(ReportStep)
MAX_OUTFLOWS = 256  # recipients the observation carries
MAX_PENALTY_TXS = 2  # what the matcher signs for a penalty: the slash, the compensation


class ReportFlow(_Flow):
    """A victim's double-spend report, filed by the matcher's operator: read where the
    chunk's value went, have the victim's vault sign its claim, let the matcher judge,
    and submit the transactions it signed (see :class:`MatcherOperator.open_report`).
    ``result`` is the compensation in wei once ``step`` is DONE."""

    _moves = {step: frozenset(_REPORT_ORDER[i + 1 :]) for i, step in enumerate(_REPORT_ORDER[:-1])}

    def __init__(
        self,
        flow_id: str,
        *,
        victim: str,
        victim_account: str,
        chunk: Chunk,
        chain_id: int,
        token: str,
        since: int,
        fee_chain_id: int,
        pool: str,
        operator: str,
        names: dict[str, str],
    ) -> None:
        super().__init__(flow_id, ReportStep.NEW)
        self.victim = victim
        self.victim_account = victim_account
        self.chunk = chunk
        self._chain_id = chain_id
        self._token = token  # the chunk's token contract ("" for a native chunk)
        self._since = since
        self._fee_chain_id = fee_chain_id
        self._pool = pool
        self._operator_account = operator
        self._names = dict(names)
        self._outflows: list[tuple[str, bytes]] = []
        self._recipients: list[str] = []
        self._inputs_read = 0
        self._proof: BalanceProof | None = None
        self._balance = 0
        self._gas: tuple[int, int] = (0, 0)
        self._claim: LossClaim | None = None
        self._price = 0
        self._nonce = 0
        self._outcome: PenaltyOutcome | None = None
        self._submitted = 0
        self.result: int | None = None

    def start(self) -> list[OperatorEffect]:
        if self.step is not ReportStep.NEW:
            raise InvalidRequest(f"{self.flow_id} started already")
        self._move(ReportStep.OUTFLOWS)
        query = OutflowsQuery(
            chain_id=self._chain_id, address=self.chunk.address, since=self._since
        )
        return [self._read("outflows", query)]

    def _on_answer(
        self, asked: OperatorEffect, answer: OperatorAnswer, now: float
    ) -> list[OperatorEffect]:
        step = self.step
        if isinstance(answer, ChainRead):
            return self._on_read(step, answer)
        if step is ReportStep.CLAIM:
            claim = self._response(answer, LossClaim)
            if claim.chunk_id != self.chunk.chunk_id:
                raise OperatorInputRefused(f"{answer.tag}: a claim of another chunk")
            self._claim = claim
            self._move(ReportStep.PRICING)
            return [self._read("price", PriceQuery(asset=FEE_ASSET))]
        if step is ReportStep.JUDGING:
            outcome = self._response(answer, PenaltyOutcome)
            if outcome.penalty.chunk_id != self.chunk.chunk_id:
                raise OperatorInputRefused(f"{answer.tag}: a penalty for another chunk")
            self._check_transactions(answer.tag, outcome.transactions)
            self._outcome = outcome
            self._move(ReportStep.SUBMITTING)
            return self._submit_next()
        if step is ReportStep.SUBMITTING and isinstance(answer, TxOutcome):
            if not answer.is_mined:
                raise OperatorInputRefused(
                    f"{answer.tag}: the matcher's transaction was not mined ({answer.status})"
                )
            self._submitted += 1
            return self._submit_next()
        raise OperatorInputRefused(
            f"{answer.tag}: not an answer for step {step}"
        )  # pragma: no cover

    def _on_read(self, step: str, answer: ChainRead) -> list[OperatorEffect]:
        value = answer.value
        if step is ReportStep.OUTFLOWS:
            outflows = _get_outflows(answer)
            self._outflows = outflows
            self._recipients = [to for to, _ in outflows]
            if not self._token:
                return self._prove()
            self._move(ReportStep.INPUTS)
            return self._read_next_input()
        if step is ReportStep.INPUTS:
            if not isinstance(value, bytes):
                raise OperatorInputRefused(f"{answer.tag}: calldata is bytes")
            # a token chunk leaves by transfer(to, amount): the recipient is in the call
            if len(value) >= 36 and value[:4] == ERC20_TRANSFER_SELECTOR:
                self._recipients[self._get_input_index()] = to_checksum_address(value[16:36])
            self._inputs_read += 1
            return self._read_next_input()
        if step is ReportStep.TRANSFERS:
            if not isinstance(value, list):
                raise OperatorInputRefused(f"{answer.tag}: recipients are a list of str")
            kept = value[: max(0, MAX_OUTFLOWS - len(self._recipients))]  # no more are carried
            if not all(isinstance(to, str) for to in kept):
                raise OperatorInputRefused(f"{answer.tag}: recipients are a list of str")
            self._recipients += kept  # and by transferFrom, whoever sent it
            return self._prove()
        if step is ReportStep.PROOF:
            if value is not None and not (
                isinstance(value, BalanceProof) and value.chunk_id == self.chunk.chunk_id
            ):
                raise OperatorInputRefused(f"{answer.tag}: not a proof of {self.chunk.chunk_id}")
            if value is not None:
                value = _get_valid(answer.tag, value, BalanceProof)
            self._proof = value
            self._move(ReportStep.BALANCE)
            return [self._read("balance", ChunkBalanceQuery(chunk=self.chunk))]
        if step is ReportStep.BALANCE:
            self._balance = _get_count(answer, "the chunk's balance")
            self._move(ReportStep.GAS)
            return [self._read("gas", GasFeesQuery(chain_id=self._fee_chain_id))]
        if step is ReportStep.GAS:
            if (
                not isinstance(value, tuple | list)
                or len(value) != 2
                or not all(type(v) is int and v >= 0 for v in value)
            ):
                raise OperatorInputRefused(f"{answer.tag}: gas fees are two ints >= 0")
            self._gas = (value[0], value[1])
            self._move(ReportStep.CLAIM)
            effect = CallVault(
                self._next_tag("claim"),
                self.victim,
                VAULT_CLAIM_LOSS,
                ChunkRef(chunk_id=self.chunk.chunk_id),
            )
            self._awaiting[effect.tag] = effect
            return [effect]
        if step is ReportStep.PRICING:
            price = _get_count(answer, "the fee asset's price")
            if price == 0:
                raise OperatorInputRefused(f"{answer.tag}: a price of 0")
            self._price = price
            self._move(ReportStep.NONCE)
            query = NonceQuery(chain_id=self._fee_chain_id, account=self._operator_account)
            return [self._read("nonce", query)]
        if step is ReportStep.NONCE:
            return self._judge(_get_count(answer, "the operator's nonce"))
        if step is ReportStep.POOL:
            pool = _get_count(answer, "the pool's balance")
            return self._finish(pool)
        raise OperatorInputRefused(f"{answer.tag}: not a read for step {step}")  # pragma: no cover

    def _get_token_calls(self) -> list[int]:
        """Indexes of the outflows that called the token contract."""
        token = self._token.lower()
        return [i for i, (to, _) in enumerate(self._outflows) if to.lower() == token]

    def _get_input_index(self) -> int:
        return self._get_token_calls()[self._inputs_read]

    def _read_next_input(self) -> list[OperatorEffect]:
        calls = self._get_token_calls()
        if self._inputs_read < len(calls):
            _, tx_hash = self._outflows[calls[self._inputs_read]]
            return [self._read("input", TxInputQuery(chain_id=self._chain_id, tx_hash=tx_hash))]
        self._move(ReportStep.TRANSFERS)
        query = TokenRecipientsQuery(address=self.chunk.address, since=self._since)
        return [self._read("transfers", query)]

    def _prove(self) -> list[OperatorEffect]:
        self._move(ReportStep.PROOF)
        return [self._read("proof", BalanceProofQuery(chunk=self.chunk))]

    def _judge(self, nonce: int) -> list[OperatorEffect]:
        if self._claim is None:  # pragma: no cover -- set at CLAIM
            raise OperatorInputRefused("no claim to report")
        recipients = self._recipients
        observation = ChainObservation(
            balance=self._balance,
            outflow_to=recipients[0] if recipients else "",
            outflow_tx=self._outflows[0][1].hex() if self._outflows else "",
            address=self.chunk.address,
            outflows_to=recipients[:MAX_OUTFLOWS],
        )
        max_fee, tip = self._gas
        self._nonce = nonce
        report = LossReport(
            report=DoubleSpendReport(chunk_id=self.chunk.chunk_id, victim=self.victim_account),
            claim=self._claim,
            observation=observation,
            price_e8=self._price,
            tx=OperatorTx(
                chain_id=self._fee_chain_id,
                pool=self._pool,
                nonce=nonce,
                max_fee_per_gas=max_fee,
                max_priority_fee_per_gas=tip,
            ),
            owner_account=self.chunk.owner,
            balance=self._proof,
        )
        self._move(ReportStep.JUDGING)
        return [self._call("report", MATCHER_REPORT, report)]

    def _check_transactions(self, tag: str, transactions: list[bytes]) -> None:
        """The slash and the compensation, each as the matcher signs it: by the operator
        key, for the pool on the fee chain, carrying no value, at the nonce the matcher
        was given and the next (so in order, and none twice)."""
        if len(transactions) > MAX_PENALTY_TXS:
            raise OperatorInputRefused(
                f"{tag}: at most {MAX_PENALTY_TXS} transactions (the slash, the compensation)"
            )
        for offset, raw in enumerate(transactions):
            try:
                fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
                sender = Account.recover_transaction(raw)
            except (RLPException, ValueError, TypeError, BadSignature, ValidationError) as exc:
                raise OperatorInputRefused(
                    f"{tag}: a transaction is not signed bytes ({exc})"
                ) from exc
            if sender.lower() != self._operator_account.lower():
                raise OperatorInputRefused(f"{tag}: a transaction not signed by the operator")
            if fields.get("chainId") != self._fee_chain_id:
                raise OperatorInputRefused(f"{tag}: a transaction not for the fee chain")
            if "0x" + bytes(fields.get("to") or b"").hex() != self._pool.lower():
                raise OperatorInputRefused(f"{tag}: a transaction not to the pool")
            if fields.get("nonce") != self._nonce + offset:
                raise OperatorInputRefused(f"{tag}: a transaction at the wrong nonce")
            if fields.get("value") != 0:
                raise OperatorInputRefused(f"{tag}: a transaction that carries value")

    def _submit_next(self) -> list[OperatorEffect]:
        outcome = self._outcome
        if outcome is None:  # pragma: no cover -- set at JUDGING
            raise OperatorInputRefused("no outcome to submit")
        if self._submitted < len(outcome.transactions):
            raw = RawTx(chain_id=self._fee_chain_id, raw=outcome.transactions[self._submitted])
            effect = SubmitTx(self._next_tag("submit"), raw)
            self._awaiting[effect.tag] = effect
            return [effect]
        self._move(ReportStep.POOL)
        return [self._read("pool", PoolBalanceQuery())]

    def _finish(self, pool: int) -> list[OperatorEffect]:
        outcome = self._outcome
        if outcome is None:  # pragma: no cover
            raise OperatorInputRefused("no outcome to report")
        penalty = outcome.penalty
        self.result = outcome.get_compensation_wei()
        self._move(ReportStep.DONE)
        data = {
            "victim": self.victim,
            "offender": self._names.get(penalty.owner, penalty.owner),
            "chunk": self.chunk.chunk_id[-6:],
            "slashed_wei": outcome.get_slash_wei(),
            "compensation_wei": self.result,
            "uncovered_usd": penalty.uncovered_usd_e8 / _USD,
            "pool_wei": pool,
        }
        return [Report("penalty", data)]


def _get_outflows(answer: ChainRead) -> list[tuple[str, bytes]]:
    value = answer.value
    if not isinstance(value, list | tuple):
        raise OperatorInputRefused(f"{answer.tag}: outflows are a list")
    outflows: list[tuple[str, bytes]] = []
    # the observation carries the first MAX_OUTFLOWS recipients: later transactions are
    # neither kept nor read (a node listing a million costs nothing more)
    for item in value[:MAX_OUTFLOWS]:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], bytes)
        ):
            raise OperatorInputRefused(f"{answer.tag}: an outflow is [recipient, tx hash]")
        outflows.append((item[0], item[1]))
    return outflows


# --- owners: offering chunks, reclaiming them --------------------------------------------------


class BalanceProofsQuery(Message, frozen=True):
    """Proofs of ``chunks``' balances at the matcher's newest verified blocks (after
    bringing it to the heads) -> list[BalanceProof] (none for a chunk nothing proves)."""

    chunks: list[Chunk]


class OfferStep(StrEnum):
    NEW = "new"
    PROVING = "proving"  # a proof of every chunk's balance
    ADDING = "adding"  # MATCHER_ADD_CHUNKS: the matcher checks the proofs and books them
    DONE = "done"


class OfferFlow(_Flow):
    """An owner puts funded chunks in the matcher's book, each with a proof of its funds
    (bitcoin chunks are refused when the flow opens: nothing proves their balance)."""

    _moves = {
        OfferStep.NEW: frozenset({OfferStep.PROVING}),
        OfferStep.PROVING: frozenset({OfferStep.ADDING}),
        OfferStep.ADDING: frozenset({OfferStep.DONE}),
    }

    def __init__(self, flow_id: str, *, owner: str, chunks: list[Chunk]) -> None:
        super().__init__(flow_id, OfferStep.NEW)
        self.owner = owner
        self.chunks = chunks

    def start(self) -> list[OperatorEffect]:
        if self.step is not OfferStep.NEW:
            raise InvalidRequest(f"{self.flow_id} started already")
        self._move(OfferStep.PROVING)
        return [self._read("proofs", BalanceProofsQuery(chunks=list(self.chunks)))]

    def _on_answer(
        self, asked: OperatorEffect, answer: OperatorAnswer, now: float
    ) -> list[OperatorEffect]:
        if self.step is OfferStep.PROVING and isinstance(answer, ChainRead):
            proofs = answer.value
            ids = [c.chunk_id for c in self.chunks]
            if not isinstance(proofs, list) or not all(isinstance(p, BalanceProof) for p in proofs):
                raise OperatorInputRefused(f"{answer.tag}: proofs are a list of BalanceProof")
            proofs = [_get_valid(answer.tag, p, BalanceProof) for p in proofs]
            proven = [p.chunk_id for p in proofs]
            if len(set(proven)) != len(proven) or not set(proven) <= set(ids):
                raise OperatorInputRefused(f"{answer.tag}: a proof of another or the same chunk")
            self._move(OfferStep.ADDING)
            add = AddChunks(chunks=list(self.chunks), proofs=proofs)
            return [self._call("add", MATCHER_ADD_CHUNKS, add)]
        if self.step is OfferStep.ADDING:
            self._move(OfferStep.DONE)
            return [Report("offer", {"client": self.owner, "chunks": len(self.chunks)})]
        raise OperatorInputRefused(f"{answer.tag}: not an answer for step {self.step}")


class ReclaimStep(StrEnum):
    NEW = "new"
    ATTESTING = "attesting"  # the owner's vault signs that the chunk's key is free
    RECLAIMING = "reclaiming"  # MATCHER_RECLAIM with that statement
    DONE = "done"


class ReclaimFlow(_Flow):
    """An owner gives allocated chunks whose keys were never released back to the book:
    for each, in order, its vault signs that the key is free and the matcher takes it."""

    _moves = {
        ReclaimStep.NEW: frozenset({ReclaimStep.ATTESTING, ReclaimStep.DONE}),
        ReclaimStep.ATTESTING: frozenset({ReclaimStep.RECLAIMING}),
        ReclaimStep.RECLAIMING: frozenset({ReclaimStep.ATTESTING, ReclaimStep.DONE}),
    }

    def __init__(self, flow_id: str, *, owner: str, chunk_ids: list[str]) -> None:
        super().__init__(flow_id, ReclaimStep.NEW)
        self.owner = owner
        self.chunk_ids = chunk_ids
        self.reclaimed = 0

    def start(self) -> list[OperatorEffect]:
        if self.step is not ReclaimStep.NEW:
            raise InvalidRequest(f"{self.flow_id} started already")
        return self._next()

    def _next(self) -> list[OperatorEffect]:
        if self.reclaimed == len(self.chunk_ids):
            self._move(ReclaimStep.DONE)
            return [Report("reclaim", {"owner": self.owner, "chunks": self.reclaimed})]
        self._move(ReclaimStep.ATTESTING)
        chunk_id = self.chunk_ids[self.reclaimed]
        ref = ChunkRef(chunk_id=chunk_id)
        effect = CallVault(self._next_tag("attest"), self.owner, VAULT_ATTEST_UNRELEASED, ref)
        self._awaiting[effect.tag] = effect
        return [effect]

    def _on_answer(
        self, asked: OperatorEffect, answer: OperatorAnswer, now: float
    ) -> list[OperatorEffect]:
        if self.step is ReclaimStep.ATTESTING:
            statement = self._response(answer, Unreleased)
            if statement.chunk_id != self.chunk_ids[self.reclaimed]:
                raise OperatorInputRefused(f"{answer.tag}: a statement of another chunk")
            self._move(ReclaimStep.RECLAIMING)
            return [self._call("reclaim", MATCHER_RECLAIM, Reclaim(statement=statement))]
        if self.step is ReclaimStep.RECLAIMING:
            self.reclaimed += 1
            return self._next()
        raise OperatorInputRefused(f"{answer.tag}: not an answer for step {self.step}")
