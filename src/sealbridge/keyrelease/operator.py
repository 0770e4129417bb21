"""The requester's and the matcher operator's host flows, sans-I/O.

Theory of operation
-------------------
Between a client and the matcher enclave sits an untrusted host. For a requester it
asks the matcher for chunks and checks the answer before anyone relies on it; it
accepts an offer and pays the matching fee; as the matcher's operator it files a
victim's double-spend report and submits the slash and the compensation the matcher
signed. Each of these is a *flow*: a short state machine that decides what to ask
next, what an answer means and when to refuse, and does nothing else. Its driver
(``KeyReleaseDevnet`` on a devnet, a hand-written host in ``tests/unit``) carries out
what the flow asks and hands back the answers. Time comes in as ``now`` (seconds of the
wall clock: quotes are checked against it); nothing here reads a clock or a chain.

:class:`MatcherOperator` keeps what outlives one flow (the contract names already
matched) and opens the flows.

Effects (each names a ``tag``; its answer carries the same tag):

* :class:`~sealbridge.core.effects.CallEnclave` -- call the *matcher* enclave. Answer:
  :class:`~sealbridge.core.effects.EnclaveAnswer`.
* :class:`~sealbridge.core.effects.ReadChain` -- a typed question about a chain
  (:class:`ChunkBalanceQuery`, :class:`PriceQuery`, :class:`FeesPaidQuery`,
  :class:`PoolBalanceQuery`). Answer: :class:`~sealbridge.core.effects.ChainRead`.
* :class:`~sealbridge.core.effects.SubmitTx` -- :class:`PayFee` from the requester's
  wallet. Answer: :class:`~sealbridge.core.effects.TxOutcome`.
* :class:`SyncFeeChain` -- feed the matcher the fee chain's blocks it has not verified
  (so it sees a fee paid). Answer: :class:`FeeChainSynced`.
* :class:`~sealbridge.core.effects.Report` -- an observation (the devnet's events
  ``expire``, ``match``, ``accept``).

Flows and their steps (each step waits on one answer; ``_MOVES`` lists the moves)::

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

What is trusted, and why. Nothing an answer says is taken on its word where it can be
checked here. A match answer must be for the request that was sent (request id,
requester, contract, asset), signed by the matcher whose attested card the requester
checked, and every chunk must sit at a key of a vault whose manifest quote verifies
(:func:`~sealbridge.keyrelease.matcher_program.verify_answer`). The balances are the
chain's (read by the driver): every offered chunk must hold its amount, or the offer is
refused. An accept goes ahead only after the matcher enclave's own ``CHECK_ACCEPT``
returned the very offer the requester holds (made to it, still open for the margin the
fee's transaction needs): a refused accept pays nothing. The fee is paid once: what the
pool's ``FeePaid`` events already credit the requester for this offer is not paid again.

Hostile input. Each of these raises a typed error and changes nothing (the flow still
waits for the same answer; a driver that gives up drops the flow):

* an answer whose tag was never asked, was answered already, or belongs to another
  flow; an answer of the wrong kind or shape (:class:`OperatorInputRefused`);
* an answer that carries a failure: the enclave's refusal, a failed read
  (:class:`OperatorInputRefused`), a fee transaction not mined (:class:`FeeNotPaid`);
* an offer for another request, another offer from ``CHECK_ACCEPT``, a chunk below its
  amount (:class:`OfferRefused`); a card or manifest that does not verify
  (:class:`~sealbridge.keyrelease.errors.AttestationRefused`).

A request the flow refuses before it starts (a reused contract name, an accept that
names another offer or is made by another requester) raises
:class:`~sealbridge.keyrelease.errors.InvalidRequest`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    ReadChain,
    Report,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message, decode_canonical
from sealbridge.core.errors import SealbridgeError
from sealbridge.keyrelease.auth import SignedRequest
from sealbridge.keyrelease.errors import (
    FeeNotPaid,
    InvalidRequest,
    OfferRefused,
    OperatorInputRefused,
)
from sealbridge.keyrelease.matcher_program import (
    MATCHER_ACCEPT,
    MATCHER_CHECK_ACCEPT,
    MATCHER_EXPIRE,
    MATCHER_MATCH,
    usd_to_wei,
    verify_answer,
)
from sealbridge.keyrelease.messages import (
    Accept,
    AcceptOrder,
    Expired,
    MatchAnswer,
    MatcherCard,
)
from sealbridge.keyrelease.types import USD_DECIMALS, Chunk, ChunkRequest, Offer
from sealbridge.tee.ecall import NOTHING
from sealbridge.tee.policy import AttestationPolicy

__all__ = [
    "ACCEPT_MARGIN_S",
    "FEE_ASSET",
    "AcceptFlow",
    "AcceptStep",
    "ChunkBalanceQuery",
    "FeeChainSynced",
    "FeesPaidQuery",
    "MatchFlow",
    "MatchStep",
    "MatcherOperator",
    "OperatorAnswer",
    "OperatorEffect",
    "PayFee",
    "PoolBalanceQuery",
    "PriceQuery",
    "SyncFeeChain",
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


OperatorEffect = CallEnclave | ReadChain | SubmitTx | SyncFeeChain | Report
OperatorAnswer = EnclaveAnswer | ChainRead | TxOutcome | FeeChainSynced
_ANSWER_OF: dict[type, type] = {
    CallEnclave: EnclaveAnswer,
    ReadChain: ChainRead,
    SubmitTx: TxOutcome,
    SyncFeeChain: FeeChainSynced,
}


def compute_fee_key(request_id: str) -> bytes:
    """The pool's 32-byte key of an offer's fee."""
    return hashlib.sha256(request_id.encode()).digest()


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
        return response


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
            pay = PayFee(
                payer=self._account, request_key=self._request_key, amount_wei=self.fee_wei
            )
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
            self._response(answer, Offer)
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

    def _next_id(self, kind: str) -> str:
        self._flows += 1
        return f"{kind}-{self._flows}"

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
        return MatchFlow(
            self,
            self._next_id("match"),
            signed=signed,
            request=request,
            label=label,
            card=card,
            vault_policy=vault_policy,
            names=names or {},
        )

    def open_accept(self, answer: MatchAnswer, signed: SignedRequest) -> AcceptFlow:
        """An accept of ``answer``'s offer with the client's ``signed`` Accept."""
        if not isinstance(answer, MatchAnswer):
            raise InvalidRequest("an accept needs the MatchAnswer it accepts")
        return AcceptFlow(self._next_id("accept"), answer=answer, signed=signed)
