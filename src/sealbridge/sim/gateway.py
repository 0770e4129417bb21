"""Gateways in the simulator: simulated gateway hosts and the relayer of a transfer.

Theory of operation
-------------------
A gateway's host runs two host cores -- the committee's
(:class:`~sealbridge.keyservice.committee_host.CommitteeHostCore`, as a gatekeeper's) and
the chain feed (:class:`~sealbridge.interop.chain_feed.ChainFeedCore`) -- in front of its
enclave, and answers sign requests with the enclave's partial signatures. This module
runs both cores, unchanged, in the deterministic simulator:

* :class:`SimGateway` -- one gateway host as a simulator node. Its enclave is the real
  :class:`~sealbridge.interop.evm_gateway.GatewayProgram` in process, called through its
  encoded ECALL boundary with the simulator's clock; it is set up at build time with an
  anchor at each bridged chain's genesis (as the network host sets it up when it first
  starts). The committee core takes part in the gateway committee's eras on the chain
  model; a follower asks the chain's height every ``poll`` seconds and hands it to the
  committee core, and starts a feed round each time (the network host's idle loop).
  :class:`NameEscrows` (the operator's escrow list) is handed to the enclave
  (``GATEWAY_WATCH``) and then opens the feed. A :class:`SignAsk` waits for the feed
  round it starts, so the enclave signs about the chains as they are now, and is
  answered with a :class:`SignAnswer` -- the enclave's partial, or its refusal; the
  signing record the enclave seals is persisted before the answer leaves.
* :class:`TransferRelayer` -- the untrusted relayer of one transfer, as a simulator
  node: it locks on the source escrow, asks every gateway for the release's partial
  signatures, combines ``threshold`` of them into the committee's signature (it tries
  other subsets when one combination does not verify under the escrow's key: a partial
  is a gateway's word, nothing more), releases on the destination, then asks for the
  commit and commits on the source. If the release cannot be had before the lock's
  deadline, it asks for the abort instead (the enclaves sign it only once the deadline
  has passed on the destination's verified clock) and refunds the sender. Refusals and
  short answers are retried every ``retry`` seconds. Phases are reported
  (``transfer/<phase>``).

Everything a gateway signs is decided inside the enclave from blocks it verified; the
simulator only chooses who is up, what is delayed and what reaches whom.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from sealbridge.chain.bls_onchain import compute_transfer_id
from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    Persist,
    ReadChain,
    Report,
    Send,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.crypto import bls
from sealbridge.interop.chain_feed import ChainFeedCore, EscrowsNamed, SyncChains
from sealbridge.interop.evm_gateway import (
    GATEWAY_SETUP,
    GATEWAY_SIGN,
    GATEWAY_WATCH,
    EscrowRef,
    GatewayProgram,
    GatewaySetup,
    SignedPartial,
    SignKind,
    SignRequest,
    Watch,
)
from sealbridge.keyservice.committee_host import CommitteeHostCore, Followed
from sealbridge.sim.bridged import EscrowKeyQuery, LockFunds, ReleaseFunds, SettleLock
from sealbridge.sim.committee import TipPoller
from sealbridge.sim.local_enclave import LocalEnclave
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.enclave import EnclaveContext

__all__ = ["NameEscrows", "SignAnswer", "SignAsk", "SimGateway", "TransferRelayer"]

MAX_WAITING_ASKS = 64  # sign requests a gateway holds while its feed catches up


class NameEscrows(Message, frozen=True):
    """The operator names the escrows the gateway serves (once)."""

    escrows: list[EscrowRef]


class SignAsk(Message, frozen=True):
    tag: str
    request: SignRequest


class SignAnswer(Message, frozen=True):
    tag: str
    signed: SignedPartial | None = None
    error: str = ""


class SimGateway:
    """One gateway host in the simulator (see the module docstring)."""

    def __init__(
        self,
        address: int,
        *,
        chain: int,
        enclave: EnclaveContext,
        setup: GatewaySetup,
        clock: Callable[[], float],
        poll: float = 1.0,
    ) -> None:
        self.address = address
        self.chain = chain
        self.program = GatewayProgram(enclave, clock)
        self.local = LocalEnclave(self.program.get_ecalls(), "gateway")
        self.sealed_setup = self.local.call(GATEWAY_SETUP, setup).sealed
        self.card = AttestedCard(node=enclave.identity, quote=enclave.get_identity_quote())
        self.committee_id = enclave.identity.identity_key
        self.committee = CommitteeHostCore(
            self.committee_id, scanned=0, address=address, chain=chain
        )
        self.feed = ChainFeedCore(
            {a.chain_id: a.number for a in setup.anchors},
            confirmations=0,
            address=address,
            chain=chain,
        )
        self.follower = TipPoller(chain, poll)
        self.asks: list[tuple[int, SignAsk]] = []
        self.signed = 0
        self.refused = 0

    @property
    def node_id(self) -> int:
        return self.address

    # -- ProtocolNode ----------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        effects = [*self.committee.on_start(now), *self.feed.on_start(now)]
        return self._run(effects, now) + [self.follower.start()]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == TipPoller.TIMER:
            return self.follower.ask() + self._feed(SyncChains(), now)
        return self._run(self.committee.on_timer(name, now), now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, SignAsk):
            return self._on_ask(sender, message, now)
        if isinstance(message, NameEscrows):
            return self._name_escrows(message, now)
        if sender != self.chain:
            return []
        if self.feed.tag and getattr(message, "tag", None) == self.feed.tag:
            return self._run(self.feed.on_message(sender, message, now), now)
        if self.follower.claims(message):
            height = self.follower.take(sender, message)
            if height is None:
                return []
            message = Followed(height=height)
        return self._run(self.committee.on_message(sender, message, now), now)

    # -- the escrows and the feed ------------------------------------------------------------
    def _name_escrows(self, message: NameEscrows, now: float) -> list[Effect]:
        answer = self._ecall(CallEnclave("watch", GATEWAY_WATCH, Watch(escrows=message.escrows)))
        if answer.error:
            return [Report("escrows_refused", answer.error)]
        effects: list[Effect] = [Persist("gateway-state", answer.response.sealed)]
        return effects + self._feed(EscrowsNamed(), now)

    def _feed(self, message: Any, now: float) -> list[Effect]:
        return self._run(self.feed.on_message(self.chain, message, now), now)

    def _on_ask(self, sender: int, ask: SignAsk, now: float) -> list[Effect]:
        if not isinstance(ask.request, SignRequest) or not isinstance(ask.tag, str):
            return []
        if not self.feed.active:
            return [Send((sender,), SignAnswer(ask.tag, error="the escrows are not named yet"))]
        if len(self.asks) >= MAX_WAITING_ASKS:
            return [Send((sender,), SignAnswer(ask.tag, error="busy: too many sign requests"))]
        self.asks.append((sender, ask))
        return self._feed(SyncChains(), now)

    def _serve_asks(self) -> list[Effect]:
        """Once the feed is idle: each waiting sign request, answered by the enclave."""
        out: list[Effect] = []
        asks, self.asks = self.asks, []
        for sender, ask in asks:
            answer = self._ecall(CallEnclave(ask.tag, GATEWAY_SIGN, ask.request))
            if answer.error:
                self.refused += 1
                out.append(Send((sender,), SignAnswer(ask.tag, error=answer.error)))
                continue
            self.signed += 1
            out.append(Persist("gateway-state", answer.response.sealed))  # before the answer
            out.append(Send((sender,), SignAnswer(ask.tag, signed=answer.response.signed)))
        return out

    # -- the enclave -------------------------------------------------------------------------
    def _run(self, effects: list[Effect], now: float) -> list[Effect]:
        """Carry out the enclave calls at once (the enclave is local) and hand each answer
        to the core that asked; pass on the rest. Sign requests are served once the feed
        is idle."""
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if not isinstance(effect, CallEnclave):
                out.append(effect)
                continue
            answer = self._ecall(effect)
            core = self.feed if effect.tag == self.feed.tag else self.committee
            queue += core.on_message(self.chain, answer, now)
        if self.asks and self.feed.round is None:
            out += self._serve_asks()
        return out

    def _ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        return self.local.answer(effect)


class TransferPhase(StrEnum):
    START = "start"
    LOCKING = "locking"
    RELEASING = "releasing"  # asking for the release's partials
    RELEASE_SENT = "release-sent"
    COMMITTING = "committing"
    COMMIT_SENT = "commit-sent"
    ABORTING = "aborting"
    ABORT_SENT = "abort-sent"
    COMMITTED = "committed"
    REFUNDED = "refunded"
    FAILED = "failed"


SETTLED = (TransferPhase.COMMITTED, TransferPhase.REFUNDED, TransferPhase.FAILED)


class StartTransfer(Message, frozen=True):
    """Tell the relayer to go (injected by the scenario)."""


class TransferRelayer:
    """The relayer of one transfer (see the module docstring)."""

    RETRY_TIMER = "retry"

    def __init__(
        self,
        address: int,
        *,
        chain: int,
        gateways: list[int],
        threshold: int,
        lock: LockFunds,
        source_escrow: str,
        retry: float = 2.0,
    ) -> None:
        if not 1 <= threshold <= len(gateways):
            raise ConfigError("a relayer needs 1 <= threshold <= gateways")
        self.address = address
        self.chain = chain
        self.gateways = sorted(gateways)
        self.threshold = threshold
        self.lock = lock
        self.transfer_id = compute_transfer_id(
            chain_id=lock.chain_id, escrow=source_escrow, sender=lock.sender, salt=lock.salt
        )
        self.source_escrow = source_escrow
        self.retry = retry
        self.phase = TransferPhase.START
        self.tag = ""
        self._seq = 0
        self.partials: dict[int, SignedPartial] = {}  # gateway -> its partial, this phase
        self.answered: set[int] = set()
        self.refusals: list[str] = []
        self.keys: dict[int, bytes] = {}  # chain id -> the escrow's group key
        self.key_chain = 0  # the chain whose escrow key is being read

    @property
    def node_id(self) -> int:
        return self.address

    def _next_tag(self) -> str:
        self._seq += 1
        self.tag = f"relay:{self._seq}"
        return self.tag

    def _report(self, phase: TransferPhase, detail: str = "") -> Report:
        self.phase = phase
        return Report(f"transfer/{phase.value}", detail or self.transfer_id.hex()[:16])

    # -- ProtocolNode ----------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name != self.RETRY_TIMER or self.phase in SETTLED:
            return []
        if self.phase in (TransferPhase.RELEASING, TransferPhase.COMMITTING):
            return self._ask(now)
        if self.phase is TransferPhase.ABORTING:
            return self._ask(now)
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, StartTransfer) and self.phase is TransferPhase.START:
            self.phase = TransferPhase.LOCKING
            return [SubmitTx(self._next_tag(), self.lock)]
        if isinstance(message, SignAnswer):
            return self._on_answer(sender, message, now)
        if sender != self.chain or getattr(message, "tag", None) != self.tag or not self.tag:
            return []
        if isinstance(message, ChainRead):
            return self._on_key(message, now)
        if isinstance(message, TxOutcome):
            return self._on_outcome(message, now)
        return []

    # -- the phases --------------------------------------------------------------------------
    def _kind(self) -> SignKind:
        if self.phase is TransferPhase.RELEASING:
            return SignKind.RELEASE
        if self.phase is TransferPhase.COMMITTING:
            return SignKind.COMMIT
        return SignKind.ABORT

    def _ask(self, now: float) -> list[Effect]:
        """Ask every gateway for this phase's partial (a fresh tag: older answers are
        dropped), after switching to the abort once the release's window has closed."""
        if self.phase is TransferPhase.RELEASING and now >= self.lock.deadline:
            self.phase = TransferPhase.ABORTING
        self.partials = {}
        self.answered = set()
        tag = self._next_tag()
        request = SignRequest(kind=self._kind(), transfer_id=self.transfer_id)
        asks: list[Effect] = [Send((g,), SignAsk(tag, request)) for g in self.gateways]
        return [*asks, SetTimer(self.RETRY_TIMER, self.retry)]

    def _on_outcome(self, outcome: TxOutcome, now: float) -> list[Effect]:
        self.tag = ""
        if outcome.status != "mined":
            if self.phase is TransferPhase.LOCKING:
                return [self._report(TransferPhase.FAILED, f"lock reverted: {outcome.reason}")]
            # a release that reverted (its window closed, say): ask again, maybe to abort
            self.refusals.append(outcome.reason)
            back = {
                TransferPhase.RELEASE_SENT: TransferPhase.RELEASING,
                TransferPhase.COMMIT_SENT: TransferPhase.COMMITTING,
                TransferPhase.ABORT_SENT: TransferPhase.ABORTING,
            }
            self.phase = back.get(self.phase, self.phase)
            return [SetTimer(self.RETRY_TIMER, self.retry)]
        if self.phase is TransferPhase.LOCKING:
            self.phase = TransferPhase.RELEASING
            return [self._report(TransferPhase.RELEASING, "locked"), *self._ask(now)]
        if self.phase is TransferPhase.RELEASE_SENT:
            self.phase = TransferPhase.COMMITTING
            return [self._report(TransferPhase.COMMITTING, "released"), *self._ask(now)]
        if self.phase is TransferPhase.COMMIT_SENT:
            return [self._report(TransferPhase.COMMITTED)]
        if self.phase is TransferPhase.ABORT_SENT:
            return [self._report(TransferPhase.REFUNDED)]
        return []

    def _on_answer(self, sender: int, answer: SignAnswer, now: float) -> list[Effect]:
        if (
            sender not in self.gateways
            or answer.tag != self.tag
            or sender in self.answered
            or self.phase
            not in (
                TransferPhase.RELEASING,
                TransferPhase.COMMITTING,
                TransferPhase.ABORTING,
            )
        ):
            return []
        self.answered.add(sender)
        signed = answer.signed
        if (
            signed is None
            or signed.kind is not self._kind()
            or signed.transfer_id != self.transfer_id
        ):
            self.refusals.append(answer.error or "an answer about something else")
            return []
        self.partials[sender] = signed
        if len(self.partials) < self.threshold:
            return []
        chain_id = signed.chain_id
        if chain_id not in self.keys:
            self.key_chain = chain_id
            return [ReadChain(self._next_tag(), EscrowKeyQuery(chain_id))]
        return self._combine(chain_id)

    def _on_key(self, read: ChainRead, now: float) -> list[Effect]:
        self.tag = ""
        if read.error or not isinstance(read.value, bytes) or not read.value:
            return [SetTimer(self.RETRY_TIMER, self.retry)]
        self.keys[self.key_chain] = read.value
        return self._combine(self.key_chain)

    def _combine(self, chain_id: int) -> list[Effect]:
        """``threshold`` partials of one message that combine into a signature valid
        under the escrow's key; then the transaction that uses it."""
        key = self.keys[chain_id]
        candidates = [p for p in self.partials.values() if p.chain_id == chain_id]
        for subset in itertools.combinations(candidates, self.threshold):
            if len({p.message for p in subset}) != 1:
                continue
            try:
                signature = bls.combine([p.partial for p in subset], self.threshold)
            except SealbridgeError:
                continue
            if bls.verify(key, subset[0].message, signature):
                return [self._submit(signature)]
        self.refusals.append("no threshold of partials combines into a valid signature")
        return [SetTimer(self.RETRY_TIMER, self.retry)]

    def _submit(self, signature: bytes) -> SubmitTx:
        lock = self.lock
        tx: Message
        if self.phase is TransferPhase.RELEASING:
            self.phase = TransferPhase.RELEASE_SENT
            tx = ReleaseFunds(
                chain_id=lock.dest_chain_id,
                transfer_id=self.transfer_id,
                recipient=lock.recipient,
                amount=lock.amount,
                source_chain_id=lock.chain_id,
                source_escrow=self.source_escrow,
                sender=lock.sender,
                deadline=lock.deadline,
                signature=signature,
            )
        else:
            abort = self.phase is TransferPhase.ABORTING
            self.phase = TransferPhase.ABORT_SENT if abort else TransferPhase.COMMIT_SENT
            tx = SettleLock(
                chain_id=lock.chain_id,
                transfer_id=self.transfer_id,
                signature=signature,
                abort=abort,
            )
        return SubmitTx(self._next_tag(), tx)
