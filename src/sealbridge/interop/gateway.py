"""An InterTrust gateway: a TEE node that represents one autonomous system to another.

Theory of operation
-------------------
Two autonomous systems ``A`` and ``B`` (BFT replica groups with ledgers,
:mod:`sealbridge.consensus`) are joined by gateways, each a TEE node of one AS. A transfer
``T = (src_as, dst_as, sender, recipient, amount, salt, deadline)`` with
``id = compute_transfer_id(T)`` moves value from ``sender`` on the source chain to
``recipient`` on the destination chain: the source escrows it and finally pays it into its
bridge reserve ``@bridge``; the destination pays the recipient out of its own reserve.

Setup.
    On start a gateway sends every gateway of the other AS a ``Hello`` with its attested
    card (:mod:`sealbridge.interop.setup`) and answers theirs; nothing from a peer is used
    before its quote verified under the policy (``NotAttested``). A gateway that needs
    its own replicas to sign asks a verified peer for a key (``KeyAsk``): the *peer*
    deals an ``(f + 1)``-of-``n`` BLS key for this AS's replicas in its enclave from
    enclave randomness, encrypts share ``i`` to replica ``i`` and returns a ``KeyGrant``;
    this gateway hands each replica its ciphertext (``ShareDelivery``). With
    ``KeyMode.PER_TX`` (the paper) the key is scoped to one transfer and made for every
    transfer; with ``KeyMode.EPOCH`` one key per generating gateway and epoch (its
    lifetime) serves every transfer. Either way the verifier's side made the key, so a
    threshold signature under it convinces the verifier: ``f + 1`` shares include one
    honest replica, which signs only what its committed ledger holds.

Source side (this AS is ``T.src_as``); states :class:`SourceState`::

    TransferRequest ─▶ LOCKING      submit CrossLock(T); ask replicas to attest LOCKED
    LOCKING   ── f+1 valid shares ─▶ sigma_A ─▶ FORWARDED   Forward(T, sigma_A) to a peer
    LOCKING   ── deadline passed, or the lock refused ─▶ ABORTING   AbortAsk(T) to a peer
    FORWARDED / ABORTING ── Settled(T, sigma_B) ─▶ SETTLING  submit CrossRelease (PAID)
                                                            or CrossUnlock (REFUSED)
    any       ── f+1 replicas report RELEASED / UNLOCKED / ABORTED ─▶ DONE

Destination side (this AS is ``T.dst_as``); states :class:`DestState`::

    Forward(T, sigma_A) ─▶ DECIDING   sigma_A checked; CrossPay(T, sigma_A) if before the
                                      deadline (else CrossRefuse(T)); a refused pay (empty
                                      reserve) is followed by CrossRefuse
    AbortAsk(T)        ─▶ DECIDING   CrossRefuse(T) unless this gateway already submitted
                                      a pay
    DECIDING ── f+1 valid shares of PAID or REFUSED ─▶ sigma_B ─▶ SETTLED
                                      Settled(T, sigma_B) to every gateway that asked

Why it is atomic. The destination chain decides once: the first of CrossPay/CrossRefuse
in its consensus order wins, the other is refused (ledger rule). The source settles only
with a certificate of that decision: CrossRelease needs sigma_B(PAID), CrossUnlock needs
sigma_B(REFUSED), and the ledgers check it deterministically at every replica. A
certificate needs ``f + 1`` shares, so at least one honest replica, which signs only its
committed state; honest replicas of one AS never commit different decisions. Hence the
source releases only if the destination paid, and unlocks only if it refused -- never
both, whatever the timing. The destination pays only with sigma_A(LOCKED), so it never
pays for value not escrowed. Timing matters only for liveness: the deadline is when the
source asks for an abort.

Liveness and recovery. Every step is idempotent and retried on the gateway's tick:
consensus requests are re-sent until ``f + 1`` matching replies, attestation requests
until a certificate, Forward/AbortAsk until Settled (moving to another peer after
``rotate_after`` tries). A crashed gateway loses its state; a restarted one (same
sealed identity, a new incarnation, so fresh request ids) and every other gateway
periodically scan their replicas (``ScanRequest``): a transfer that ``f + 1`` replicas
report LOCKED is adopted -- at once after a restart, after ``adopt_after`` seconds by
others -- and driven again from LOCKING. Duplicates are filtered by transfer id
everywhere: a gateway drops a repeated TransferRequest, the ledgers refuse a second
CrossLock/CrossPay, replicas keep one share per key.

Reports (``data`` is a dict; ``transfer`` is the id in hex)
    ``interop/setup``     a peer's card verified: ``peer``, ``as_id``
    ``interop/key``       this gateway dealt a key: ``signer_as``, ``scope``, ``n``,
                          ``seconds`` (CPU, when a ``cpu_clock`` is given), ``bytes``
    ``interop/phase``     ``transfer``, ``role``, ``phase`` -- source: ``accepted``,
                          ``setup`` (key ready), ``lock`` (sigma_A), ``abort``, ``verify``
                          (sigma_B received), ``release`` / ``unlock`` (final);
                          destination: ``decide`` (pay or refuse submitted), ``attest``
                          (sigma_B); ``adopted`` when recovered from a scan, ``duplicate``
                          for a repeated TransferRequest
    ``interop/signature`` every threshold signature combined: ``transfer``, ``claim``,
                          ``signer_as``, ``key_id``, ``message``, ``signature``,
                          ``group_public_key`` (hex; standard BLS, checkable anywhere)
    ``interop/done``      ``transfer``, ``outcome`` (``released``/``unlocked``/``aborted``)
    ``interop/bad_share`` ``transfer``, ``signer`` (replica index)

Bad input from peers raises an :class:`~sealbridge.interop.errors.InteropRemoteError`
before any state changes; it is counted in ``stats.rejected[code]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sealbridge.consensus.ledger import (
    CrossCertificate,
    CrossLock,
    CrossPay,
    CrossRefuse,
    CrossRelease,
    CrossState,
    CrossTransfer,
    CrossUnlock,
    Operation,
    OutcomeCode,
    check_cross_certificate,
    check_cross_transfer,
    compute_attestation_message,
    compute_refusal_message,
    compute_transfer_id,
)
from sealbridge.consensus.messages import Reply, Request
from sealbridge.core.effects import Effect, Report, Send, SetTimer
from sealbridge.core.encoding import encode
from sealbridge.core.errors import EncodingError, InvalidSignature, RemoteProtocolError
from sealbridge.crypto import bls
from sealbridge.crypto.bls import PartialSignature, ThresholdError
from sealbridge.crypto.signing import is_valid_ed25519
from sealbridge.interop.errors import (
    BadAttestation,
    BadCrossCertificate,
    InteropConfigError,
    MalformedInterop,
    NotAttested,
    UnknownSender,
    WrongTransfer,
)
from sealbridge.interop.messages import (
    AbortAsk,
    AsProfile,
    AttestReply,
    AttestRequest,
    Forward,
    GatewayCard,
    Hello,
    KeyAsk,
    KeyGrant,
    ScanReply,
    ScanRequest,
    Settled,
    ShareDelivery,
    TransferRequest,
    compute_reply_message,
)
from sealbridge.interop.setup import (
    KeyMode,
    SimGatewayTee,
    check_key_grant,
    generate_key_grant,
    make_card,
    verify_gateway_card,
)
from sealbridge.tee.policy import AttestationPolicy

__all__ = [
    "TIMER_TICK",
    "DestState",
    "Gateway",
    "GatewayConfig",
    "GatewayStats",
    "GatewayTiming",
    "SourceState",
]

TIMER_TICK = "interop/tick"
_FINAL_SOURCE = frozenset({CrossState.RELEASED, CrossState.UNLOCKED, CrossState.ABORTED})
_SEQ_BITS = 32


class SourceState(StrEnum):
    LOCKING = "locking"
    FORWARDED = "forwarded"
    ABORTING = "aborting"
    SETTLING = "settling"
    DONE = "done"


class DestState(StrEnum):
    DECIDING = "deciding"
    SETTLED = "settled"


class _Purpose(StrEnum):
    LOCK = "lock"
    PAY = "pay"
    REFUSE = "refuse"
    RELEASE = "release"
    UNLOCK = "unlock"


@dataclass(frozen=True)
class GatewayTiming:
    """Seconds of the gateway's clock (all retries are driven by one tick timer)."""

    tick: float = 0.1
    resend: float = 0.5  # re-send a step that has not been answered
    scan_interval: float = 1.0  # ask the replicas for LOCKED transfers
    adopt_after: float = 5.0  # adopt a LOCKED transfer seen this long (not after a restart)
    rotate_after: int = 3  # tries with one peer before trying another


@dataclass(frozen=True)
class GatewayConfig:
    """What a gateway knows before it starts (its AS, its peers, its policy)."""

    node_id: int
    profile: AsProfile  # this gateway's own AS
    peer_as: int
    peer_gateways: tuple[int, ...]
    partner: int  # the preferred peer (its pair)
    policy: AttestationPolicy
    mode: KeyMode = KeyMode.EPOCH
    timing: GatewayTiming = GatewayTiming()

    def __post_init__(self) -> None:
        if self.node_id not in self.profile.gateway_ids:
            raise InteropConfigError("the gateway is not one of its AS's gateways")
        if self.partner not in self.peer_gateways:
            raise InteropConfigError("the partner must be one of the peer gateways")
        if self.peer_as == self.profile.as_id:
            raise InteropConfigError("a gateway joins two different ASes")


@dataclass
class GatewayStats:
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0  # repeated TransferRequests dropped
    keygens: int = 0  # threshold keys dealt by this gateway
    keygen_seconds: float = 0.0  # their CPU time (with a cpu_clock)
    encryptions: int = 0  # shares encrypted
    grant_bytes: int = 0
    shares_delivered: int = 0
    bad_shares: int = 0
    certificates: int = 0
    adopted: int = 0
    requests: int = 0  # consensus requests submitted (not counting re-sends)


@dataclass
class _Peer:
    card: GatewayCard

    @property
    def identity_key(self) -> bytes:
        return self.card.node.identity_key


@dataclass
class _OwnKey:
    """A key for this AS's replicas, granted by a peer."""

    grant: KeyGrant
    provider: int

    @property
    def key_id(self) -> bytes:
        return self.grant.endorsement.key_id


@dataclass
class _Attest:
    """Attestations of one transfer collected from this AS's replicas."""

    states: dict[int, CrossState | None] = field(default_factory=dict)
    executed: set[int] = field(default_factory=set)  # replicas that replied to our operation
    pools: dict[tuple[bytes, CrossState], dict[int, PartialSignature]] = field(default_factory=dict)


@dataclass
class _Source:
    transfer: CrossTransfer
    tid: bytes
    state: SourceState
    target: int
    started: float
    attest: _Attest = field(default_factory=_Attest)
    cert_a: CrossCertificate | None = None
    cert_b: CrossCertificate | None = None
    last_sent: float = -1.0
    tries: int = 0
    setup_reported: bool = False


@dataclass
class _Dest:
    transfer: CrossTransfer
    tid: bytes
    state: DestState
    provider: int  # the peer asked for this AS's key
    askers: list[int] = field(default_factory=list)
    decision: _Purpose | None = None
    attest: _Attest = field(default_factory=_Attest)
    cert_b: CrossCertificate | None = None
    last_sent: float = -1.0
    tries: int = 0


@dataclass
class _OpenRequest:
    request: Request
    tid: bytes
    purpose: _Purpose
    last_sent: float
    outcomes: dict[int, OutcomeCode] = field(default_factory=dict)


class Gateway:
    """One gateway core: call :meth:`on_start`, then feed it messages and timers."""

    def __init__(
        self,
        config: GatewayConfig,
        tee: SimGatewayTee,
        *,
        incarnation: int = 0,
        cpu_clock: Callable[[], float] | None = None,
        verify: Callable[[bytes, bytes, bytes], bool] | None = None,
    ) -> None:
        if (
            tee.identity_key
            != config.profile.gateway_keys[config.profile.gateway_ids.index(config.node_id)]
        ):
            raise InteropConfigError("the enclave's identity is not the profile's gateway key")
        if type(incarnation) is not int or not 0 <= incarnation < 2**30:
            raise InteropConfigError("incarnation must be an int in [0, 2**30)")
        self.config = config
        self.profile = config.profile
        self.tee = tee
        self.incarnation = incarnation
        self._cpu_clock = cpu_clock
        self._verify = bls.verify if verify is None else verify
        self._replicas = tuple(self.profile.replica_ids)
        self._own_gateway_keys = frozenset(self.profile.gateway_keys)
        self.stats = GatewayStats()
        self._peers: dict[int, _Peer] = {}
        self._hello_sent: dict[int, float] = {}
        # keys this gateway dealt for the peer AS's replicas, by scope (b"": epoch key)
        self._dealt: dict[bytes, KeyGrant] = {}
        # keys for this AS's replicas, dealt by peers
        self._own_keys: dict[bytes, _OwnKey] = {}
        self._epoch_keys: dict[int, bytes] = {}  # provider -> key id
        self._tx_keys: dict[bytes, bytes] = {}  # transfer id -> key id
        self._asked: dict[bytes, tuple[int, float]] = {}  # scope -> (asks, last asked)
        self._redelivered: dict[tuple[bytes, int], float] = {}
        self._liars: set[int] = set()  # replica indices caught with invalid shares
        self._source: dict[bytes, _Source] = {}
        self._dest: dict[bytes, _Dest] = {}
        self._requests: dict[int, _OpenRequest] = {}
        self._next_seq = 1
        self._scan_nonce = 0
        self._scan_sent = -1.0
        self._scan_hits: dict[bytes, set[int]] = {}
        self._scan_transfers: dict[bytes, CrossTransfer] = {}
        self._first_seen: dict[bytes, float] = {}
        self._recovering = True  # the first scan after a start adopts at once
        self._handlers: dict[type, Callable[[int, Any, float], list[Effect]]] = {
            Hello: self._on_hello,
            TransferRequest: self._on_transfer_request,
            KeyAsk: self._on_key_ask,
            KeyGrant: self._on_key_grant,
            AttestReply: self._on_attest_reply,
            ScanReply: self._on_scan_reply,
            Forward: self._on_forward,
            AbortAsk: self._on_abort_ask,
            Settled: self._on_settled,
            Reply: self._on_reply,
        }

    # --- reads -------------------------------------------------------------------------------

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def as_id(self) -> int:
        return self.profile.as_id

    def is_attested(self, peer: int) -> bool:
        return peer in self._peers

    def get_source_state(self, transfer_id: bytes) -> SourceState | None:
        xfer = self._source.get(transfer_id)
        return None if xfer is None else xfer.state

    def get_dest_state(self, transfer_id: bytes) -> DestState | None:
        xfer = self._dest.get(transfer_id)
        return None if xfer is None else xfer.state

    def get_own_grants(self) -> list[KeyGrant]:
        """The keys this AS's replicas hold shares of, as granted by peers (oldest first)."""
        return [own.grant for own in self._own_keys.values()]

    @property
    def is_idle(self) -> bool:
        """No transfer in flight here and no consensus request unanswered."""
        return (
            not self._requests
            and all(x.state is SourceState.DONE for x in self._source.values())
            and all(x.state is DestState.SETTLED for x in self._dest.values())
        )

    # --- driver interface --------------------------------------------------------------------

    def on_start(self, now: float) -> list[Effect]:
        effects: list[Effect] = [SetTimer(TIMER_TICK, self.config.timing.tick)]
        for peer in self.config.peer_gateways:
            effects += self._send_hello(peer, answer=True, now=now)
        return effects

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name != TIMER_TICK:
            return []
        return self._on_tick(now) + [SetTimer(TIMER_TICK, self.config.timing.tick)]

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        handler = self._handlers.get(type(message))
        try:
            if handler is None:
                raise MalformedInterop(f"a gateway takes no {type(message).__name__}")
            return handler(sender, message, now)
        except RemoteProtocolError as exc:
            self.stats.rejected[exc.code] += 1
            return []

    # --- setup -------------------------------------------------------------------------------

    def _send_hello(self, peer: int, *, answer: bool, now: float) -> list[Effect]:
        self._hello_sent[peer] = now
        card = make_card(
            self.tee,
            node_id=self.node_id,
            incarnation=self.incarnation,
            profile=self.profile,
            now=now,
        )
        return [Send((peer,), Hello(card=card, answer=answer))]

    def _on_hello(self, sender: int, msg: Hello, now: float) -> list[Effect]:
        if sender not in self.config.peer_gateways:
            raise UnknownSender(f"node {sender} is not a gateway of AS {self.config.peer_as}")
        card = verify_gateway_card(
            msg.card,
            sender=sender,
            policy=self.config.policy,
            now=now,
            expected_as=self.config.peer_as,
        )
        known = self._peers.get(sender)
        effects: list[Effect] = []
        if known is None or card.incarnation > known.card.incarnation:  # older: a replay
            self._peers[sender] = _Peer(card=card)
            effects.append(Report("interop/setup", {"peer": sender, "as_id": card.profile.as_id}))
        if msg.answer:
            effects += self._send_hello(sender, answer=False, now=now)
        return effects

    def _require_peer(self, sender: int) -> _Peer:
        peer = self._peers.get(sender)
        if peer is None:
            raise NotAttested(f"node {sender} has not shown a verified quote")
        return peer

    def _get_verified_peers(self) -> list[int]:
        return sorted(self._peers)

    # --- keys --------------------------------------------------------------------------------

    def _on_key_ask(self, sender: int, msg: KeyAsk, now: float) -> list[Effect]:
        peer = self._require_peer(sender)
        if msg.signer_as != peer.card.profile.as_id:
            raise MalformedInterop("a key may be asked only for the asker's own AS")
        if type(msg.scope) is not bytes or len(msg.scope) not in (0, 32):
            raise MalformedInterop("a key scope is empty or a 32-byte transfer id")
        effects: list[Effect] = []
        grant = self._dealt.get(msg.scope)
        if grant is None:
            grant, effects = self._deal(peer.card.profile, msg.scope)
        return effects + [Send((sender,), grant)]

    def _deal(self, profile: AsProfile, scope: bytes) -> tuple[KeyGrant, list[Effect]]:
        begun = self._cpu_clock() if self._cpu_clock is not None else 0.0
        grant = generate_key_grant(profile, scope, self.tee)
        seconds = self._cpu_clock() - begun if self._cpu_clock is not None else 0.0
        self._dealt[scope] = grant
        size = len(encode(grant))
        self.stats.keygens += 1
        self.stats.keygen_seconds += seconds
        self.stats.encryptions += len(grant.shares)
        self.stats.grant_bytes += size
        data = {
            "signer_as": profile.as_id,
            "scope": scope.hex(),
            "n": profile.n,
            "seconds": seconds,
            "bytes": size,
        }
        return grant, [Report("interop/key", data)]

    def _on_key_grant(self, sender: int, msg: KeyGrant, now: float) -> list[Effect]:
        peer = self._require_peer(sender)
        grant = check_key_grant(msg, profile=self.profile, generator=peer.identity_key)
        key = grant.endorsement
        if key.key_id in self._own_keys:
            return []
        self._own_keys[key.key_id] = _OwnKey(grant=grant, provider=sender)
        if key.scope:
            self._tx_keys.setdefault(key.scope, key.key_id)
        else:
            self._epoch_keys[sender] = key.key_id
        effects: list[Effect] = []
        for i, node in enumerate(self._replicas):
            effects.append(Send((node,), self._make_delivery(grant, i)))
        self.stats.shares_delivered += len(self._replicas)
        # transfers that waited for this key: ask the replicas that executed their operation
        for xfer in self._source.values():
            if xfer.state is SourceState.LOCKING and self._get_key(xfer.tid, xfer.target) == (
                key.key_id
            ):
                effects += self._report_setup(xfer)
                effects += self._ask_executed(xfer.transfer, xfer.attest, xfer.tid)
        for dest in self._dest.values():
            if dest.state is DestState.DECIDING and self._get_key(dest.tid, dest.provider) == (
                key.key_id
            ):
                effects += self._ask_executed(dest.transfer, dest.attest, dest.tid)
        return effects

    def _ask_executed(self, transfer: CrossTransfer, attest: _Attest, tid: bytes) -> list[Effect]:
        targets = tuple(self._replicas[i] for i in sorted(attest.executed))
        return self._ask_attestations(transfer, attest, tid, targets) if targets else []

    @staticmethod
    def _make_delivery(grant: KeyGrant, index: int) -> ShareDelivery:
        return ShareDelivery(
            endorsement=grant.endorsement,
            index=index + 1,
            public_share=grant.public_shares[index],
            ciphertext=grant.shares[index],
        )

    def _get_key(self, tid: bytes, provider: int) -> bytes | None:
        """The key this AS's replicas should sign ``tid``'s attestations with, if held."""
        if self.config.mode is KeyMode.PER_TX:
            return self._tx_keys.get(tid)
        key_id = self._epoch_keys.get(provider)
        if key_id is None and self._epoch_keys:
            key_id = self._epoch_keys[min(self._epoch_keys)]
        return key_id

    def _ensure_key(self, tid: bytes, provider: int, now: float) -> list[Effect]:
        """Ask ``provider`` for a key if none is held; after ``rotate_after`` unanswered
        asks, ask the other verified peers in turn."""
        if self._get_key(tid, provider) is not None:
            return []
        peers = self._get_verified_peers()
        if not peers:
            return []
        scope = tid if self.config.mode is KeyMode.PER_TX else b""
        count, last = self._asked.get(scope, (0, -1e9))
        if now - last < self.config.timing.resend:
            return []
        if provider not in self._peers or count >= self.config.timing.rotate_after:
            provider = peers[count % len(peers)]
        self._asked[scope] = (count + 1, now)
        return [Send((provider,), KeyAsk(signer_as=self.as_id, scope=scope))]

    # --- consensus requests --------------------------------------------------------------------

    def _submit(self, op: Operation, tid: bytes, purpose: _Purpose, now: float) -> list[Effect]:
        seq = (self.incarnation << _SEQ_BITS) + self._next_seq
        self._next_seq += 1
        request = Request(as_id=self.as_id, client=self.node_id, client_seq=seq, operation=op)
        self._requests[seq] = _OpenRequest(request=request, tid=tid, purpose=purpose, last_sent=now)
        self.stats.requests += 1
        return [Send(self._replicas, request)]

    def _on_reply(self, sender: int, msg: Reply, now: float) -> list[Effect]:
        index = self.profile.get_index(sender)
        if index is None or msg.as_id != self.as_id:
            raise UnknownSender(f"node {sender} is not a replica of AS {self.as_id}")
        if msg.client != self.node_id:
            raise MalformedInterop("a reply for another client")
        pending = self._requests.get(msg.client_seq)
        if pending is None:
            return []
        pending.outcomes[index] = msg.outcome.code
        effects = self._on_replica_executed(pending, index, msg.outcome.code, now)
        votes = Counter(pending.outcomes.values())
        code, count = votes.most_common(1)[0]
        if count >= self.profile.f + 1:
            del self._requests[msg.client_seq]
            effects += self._on_decided(pending, code, now)
        return effects

    def _on_replica_executed(
        self, pending: _OpenRequest, index: int, code: OutcomeCode, now: float
    ) -> list[Effect]:
        """Replica ``index`` executed our operation: ask it at once for its attestation."""
        node = self._replicas[index]
        if pending.purpose is _Purpose.LOCK:
            xfer = self._source.get(pending.tid)
            if xfer is not None and xfer.state is SourceState.LOCKING:
                xfer.attest.executed.add(index)
                return self._ask_attestations(xfer.transfer, xfer.attest, xfer.tid, (node,))
        elif pending.purpose in (_Purpose.PAY, _Purpose.REFUSE):
            dest = self._dest.get(pending.tid)
            if dest is not None and dest.state is DestState.DECIDING:
                dest.attest.executed.add(index)
                return self._ask_attestations(dest.transfer, dest.attest, dest.tid, (node,))
        else:
            xfer = self._source.get(pending.tid)
            if xfer is not None and xfer.state is SourceState.SETTLING:
                request = AttestRequest(transfer=xfer.transfer, key_id=b"")
                return [Send((node,), request)]
        return []

    def _on_decided(self, pending: _OpenRequest, code: OutcomeCode, now: float) -> list[Effect]:
        """``f + 1`` replicas agree on the outcome of one of our operations."""
        refused = code in (OutcomeCode.INSUFFICIENT_BALANCE, OutcomeCode.INVALID)
        if pending.purpose is _Purpose.LOCK and refused:
            xfer = self._source.get(pending.tid)
            if xfer is not None and xfer.state is SourceState.LOCKING:
                return self._start_abort(xfer, now)
        if pending.purpose is _Purpose.PAY and refused:
            dest = self._dest.get(pending.tid)
            if dest is not None and dest.state is DestState.DECIDING:
                return self._decide(dest, _Purpose.REFUSE, now)
        return []

    def _resend_requests(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for pending in self._requests.values():
            if now - pending.last_sent >= self.config.timing.resend:
                pending.last_sent = now
                effects.append(Send(self._replicas, pending.request))
        return effects

    # --- attestations --------------------------------------------------------------------------

    def _ask_attestations(
        self,
        transfer: CrossTransfer,
        attest: _Attest,
        tid: bytes,
        targets: tuple[int, ...] | None,
    ) -> list[Effect]:
        """Ask replicas (default: those without a share in yet) to attest ``transfer``."""
        provider = self._get_provider(tid)
        key_id = self._get_key(tid, provider)
        if key_id is None:
            return []
        if targets is None:
            have: set[int] = set()
            for (pool_key, _), pool in attest.pools.items():
                if pool_key == key_id:
                    have.update(pool)
            targets = tuple(n for i, n in enumerate(self._replicas) if i not in have)
        if not targets:
            return []
        return [Send(targets, AttestRequest(transfer=transfer, key_id=key_id))]

    def _get_provider(self, tid: bytes) -> int:
        xfer = self._source.get(tid)
        if xfer is not None:
            return xfer.target
        dest = self._dest.get(tid)
        if dest is not None:
            return dest.provider
        return self.config.partner

    def _on_attest_reply(self, sender: int, msg: AttestReply, now: float) -> list[Effect]:
        index = self.profile.get_index(sender)
        if index is None:
            raise UnknownSender(f"node {sender} is not a replica of AS {self.as_id}")
        if msg.as_id != self.as_id or type(msg.transfer_id) is not bytes:
            raise MalformedInterop("attestation of another AS")
        try:
            signed = compute_reply_message(msg)
        except EncodingError as exc:
            raise MalformedInterop("attestation reply does not encode") from exc
        if not is_valid_ed25519(self.profile.replica_identity_keys[index], signed, msg.signature):
            raise BadAttestation(f"reply of replica {index} is not signed by it")
        tid = msg.transfer_id
        source = self._source.get(tid)
        dest = self._dest.get(tid)
        if source is not None:
            attest, transfer = source.attest, source.transfer
        elif dest is not None:
            attest, transfer = dest.attest, dest.transfer
        else:
            return []
        effects: list[Effect] = []
        if msg.missing_key:
            effects += self._redeliver(msg.key_id, index, transfer, now)
        if msg.share is not None:
            certificate = self._add_share(transfer, tid, attest, index, msg, effects)
            if certificate is not None:
                if source is not None:
                    effects += self._on_source_certificate(source, certificate, now)
                elif dest is not None:
                    effects += self._on_dest_certificate(dest, certificate, now)
        attest.states[index] = msg.state
        if source is not None:
            effects += self._check_source_final(source, now)
        return effects

    def _redeliver(
        self, key_id: bytes, index: int, transfer: CrossTransfer, now: float
    ) -> list[Effect]:
        own = self._own_keys.get(key_id)
        if own is None:
            return []
        last = self._redelivered.get((key_id, index))
        if last is not None and now - last < self.config.timing.resend:
            return []
        self._redelivered[(key_id, index)] = now
        node = self._replicas[index]
        self.stats.shares_delivered += 1
        return [
            Send((node,), self._make_delivery(own.grant, index)),
            Send((node,), AttestRequest(transfer=transfer, key_id=key_id)),
        ]

    def _is_claim_for_role(self, transfer: CrossTransfer, claim: CrossState) -> bool:
        if transfer.src_as == self.as_id:
            return claim is CrossState.LOCKED
        return claim in (CrossState.PAID, CrossState.REFUSED)

    def _add_share(
        self,
        transfer: CrossTransfer,
        tid: bytes,
        attest: _Attest,
        index: int,
        msg: AttestReply,
        effects: list[Effect],
    ) -> CrossCertificate | None:
        share = msg.share
        own = self._own_keys.get(msg.key_id)
        claim = msg.state
        if (
            not isinstance(share, PartialSignature)
            or share.index != index + 1
            or own is None
            or claim is None
            or not self._is_claim_for_role(transfer, claim)
        ):
            raise BadAttestation(f"replica {index} sent a share that cannot count")
        key = own.grant.endorsement
        if key.scope not in (b"", tid):
            raise BadAttestation("a share under a key scoped to another transfer")
        message = compute_attestation_message(key.key_id, self.as_id, tid, claim)
        if index in self._liars and not bls.is_valid_partial(
            own.grant.public_shares[index], message, share
        ):
            self.stats.bad_shares += 1
            raise BadAttestation(f"replica {index} (known liar) sent an invalid share")
        pool = attest.pools.setdefault((key.key_id, claim), {})
        if index in pool:
            return None
        pool[index] = share
        if len(pool) < key.threshold:
            return None
        signature = self._combine(pool, own, message, tid, effects)
        if signature is None:
            return None
        certificate = CrossCertificate(claim=claim, key=key, signature=signature)
        self.stats.certificates += 1
        effects.append(
            Report(
                "interop/signature",
                {
                    "transfer": tid.hex(),
                    "claim": claim.value,
                    "signer_as": self.as_id,
                    "key_id": key.key_id.hex(),
                    "scope": key.scope.hex(),
                    "message": message.hex(),
                    "signature": signature.hex(),
                    "group_public_key": key.group_public_key.hex(),
                },
            )
        )
        return certificate

    def _combine(
        self,
        pool: dict[int, PartialSignature],
        own: _OwnKey,
        message: bytes,
        tid: bytes,
        effects: list[Effect],
    ) -> bytes | None:
        """Optimistic combine, verified once; on failure drop the invalid shares."""
        key = own.grant.endorsement
        try:
            signature = bls.combine(list(pool.values()), key.threshold)
            if bls.verify(key.group_public_key, message, signature):
                return signature
        except (InvalidSignature, ThresholdError):
            pass
        for index, share in list(pool.items()):
            if not bls.is_valid_partial(own.grant.public_shares[index], message, share):
                del pool[index]
                self._liars.add(index)
                self.stats.bad_shares += 1
                effects.append(
                    Report("interop/bad_share", {"transfer": tid.hex(), "signer": index})
                )
        if len(pool) >= key.threshold:
            signature = bls.combine(list(pool.values()), key.threshold)
            if bls.verify(key.group_public_key, message, signature):
                return signature
        return None

    # --- source side ---------------------------------------------------------------------------

    def _phase(self, tid: bytes, role: str, phase: str, **extra: Any) -> Report:
        return Report(
            "interop/phase", {"transfer": tid.hex(), "role": role, "phase": phase, **extra}
        )

    def _check_transfer(self, transfer: object, *, source: bool) -> CrossTransfer:
        problem = check_cross_transfer(transfer)
        if problem is not None or not isinstance(transfer, CrossTransfer):
            raise WrongTransfer(problem or "not a transfer")
        own, other = (
            (transfer.src_as, transfer.dst_as) if source else (transfer.dst_as, transfer.src_as)
        )
        if own != self.as_id or other != self.config.peer_as:
            raise WrongTransfer("the transfer is not between this gateway's ASes this way")
        return transfer

    def _on_transfer_request(self, sender: int, msg: TransferRequest, now: float) -> list[Effect]:
        transfer = self._check_transfer(msg.transfer, source=True)
        tid = compute_transfer_id(transfer)
        if tid in self._source:
            self.stats.duplicates += 1
            return [self._phase(tid, "source", "duplicate")]
        if now >= transfer.deadline:
            raise WrongTransfer("the transfer's deadline has passed")
        xfer = _Source(
            transfer=transfer,
            tid=tid,
            state=SourceState.LOCKING,
            target=self._pick_peer(self.config.partner),
            started=now,
            last_sent=now,
        )
        self._source[tid] = xfer
        effects: list[Effect] = [self._phase(tid, "source", "accepted", pair=xfer.target)]
        effects += self._submit(CrossLock(transfer=transfer), tid, _Purpose.LOCK, now)
        effects += self._ensure_key(tid, xfer.target, now)
        if self._get_key(tid, xfer.target) is not None:
            effects += self._report_setup(xfer)
        return effects

    def _report_setup(self, xfer: _Source) -> list[Effect]:
        if xfer.setup_reported:
            return []
        xfer.setup_reported = True
        return [self._phase(xfer.tid, "source", "setup", mode=self.config.mode.value)]

    def _pick_peer(self, preferred: int) -> int:
        if preferred in self._peers or not self._peers:
            return preferred
        return self._get_verified_peers()[0]

    def _rotate(self, current: int, tries: int) -> int:
        peers = self._get_verified_peers()
        if tries < self.config.timing.rotate_after or len(peers) < 2:
            return current if current in self._peers or not peers else peers[0]
        position = peers.index(current) if current in peers else -1
        return peers[(position + 1) % len(peers)]

    def _on_source_certificate(
        self, xfer: _Source, certificate: CrossCertificate, now: float
    ) -> list[Effect]:
        if xfer.state is not SourceState.LOCKING or certificate.claim is not CrossState.LOCKED:
            return []
        xfer.cert_a = certificate
        xfer.state = SourceState.FORWARDED
        xfer.tries = 0
        return [self._phase(xfer.tid, "source", "lock")] + self._send_forward(xfer, now)

    def _send_forward(self, xfer: _Source, now: float) -> list[Effect]:
        if xfer.cert_a is None:
            return []
        xfer.target = self._rotate(xfer.target, xfer.tries)
        if xfer.target not in self._peers:
            return []
        if xfer.tries >= self.config.timing.rotate_after:
            xfer.tries = 0
        xfer.tries += 1
        xfer.last_sent = now
        return [Send((xfer.target,), Forward(transfer=xfer.transfer, certificate=xfer.cert_a))]

    def _start_abort(self, xfer: _Source, now: float) -> list[Effect]:
        xfer.state = SourceState.ABORTING
        xfer.tries = 0
        return [self._phase(xfer.tid, "source", "abort")] + self._send_abort(xfer, now)

    def _send_abort(self, xfer: _Source, now: float) -> list[Effect]:
        xfer.target = self._rotate(xfer.target, xfer.tries)
        if xfer.target not in self._peers:
            return []
        if xfer.tries >= self.config.timing.rotate_after:
            xfer.tries = 0
        xfer.tries += 1
        xfer.last_sent = now
        return [Send((xfer.target,), AbortAsk(transfer=xfer.transfer))]

    def _on_settled(self, sender: int, msg: Settled, now: float) -> list[Effect]:
        self._require_peer(sender)
        transfer = self._check_transfer(msg.transfer, source=True)
        tid = compute_transfer_id(transfer)
        certificate = msg.certificate
        if not isinstance(certificate, CrossCertificate) or certificate.claim not in (
            CrossState.PAID,
            CrossState.REFUSED,
        ):
            raise BadCrossCertificate("a settlement certifies PAID or REFUSED")
        claim = certificate.claim
        problem = check_cross_certificate(
            certificate,
            claim=claim,
            signer_as=transfer.dst_as,
            transfer_id=tid,
            trusted_gateways=self._own_gateway_keys,
            verify=self._verify,
        )
        if problem is not None:
            raise BadCrossCertificate(problem)
        xfer = self._source.get(tid)
        effects: list[Effect] = []
        if xfer is None:
            xfer = self._adopt(transfer, tid, now, effects)
        if xfer.state in (SourceState.SETTLING, SourceState.DONE):
            return effects
        xfer.cert_b = msg.certificate
        xfer.state = SourceState.SETTLING
        xfer.last_sent = now
        effects.append(self._phase(tid, "source", "verify", claim=claim.value))
        if claim is CrossState.PAID:
            op: Operation = CrossRelease(transfer=transfer, certificate=msg.certificate)
            purpose = _Purpose.RELEASE
        else:
            op = CrossUnlock(transfer=transfer, certificate=msg.certificate)
            purpose = _Purpose.UNLOCK
        return effects + self._submit(op, tid, purpose, now)

    def _check_source_final(self, xfer: _Source, now: float) -> list[Effect]:
        if xfer.state is SourceState.DONE:
            return []
        votes = Counter(s for s in xfer.attest.states.values() if s in _FINAL_SOURCE)
        if not votes:
            return []
        state, count = votes.most_common(1)[0]
        if count < self.profile.f + 1 or state is None:
            return []
        xfer.state = SourceState.DONE
        phase = "release" if state is CrossState.RELEASED else "unlock"
        return [
            self._phase(xfer.tid, "source", phase, state=state.value),
            Report("interop/done", {"transfer": xfer.tid.hex(), "outcome": state.value}),
        ]

    def _adopt(
        self, transfer: CrossTransfer, tid: bytes, now: float, effects: list[Effect]
    ) -> _Source:
        xfer = _Source(
            transfer=transfer,
            tid=tid,
            state=SourceState.LOCKING,
            target=self._pick_peer(self.config.partner),
            started=now,
        )
        self._source[tid] = xfer
        self.stats.adopted += 1
        effects.append(self._phase(tid, "source", "adopted"))
        return xfer

    # --- destination side ------------------------------------------------------------------------

    def _on_forward(self, sender: int, msg: Forward, now: float) -> list[Effect]:
        self._require_peer(sender)
        transfer = self._check_transfer(msg.transfer, source=False)
        tid = compute_transfer_id(transfer)
        problem = check_cross_certificate(
            msg.certificate,
            claim=CrossState.LOCKED,
            signer_as=transfer.src_as,
            transfer_id=tid,
            trusted_gateways=self._own_gateway_keys,
            verify=self._verify,
        )
        if problem is not None:
            raise BadCrossCertificate(problem)
        dest, effects = self._get_dest(transfer, tid, sender, now)
        if dest.state is DestState.SETTLED:
            return effects + self._send_settled(dest, (sender,))
        if dest.decision is None:
            purpose = _Purpose.PAY if now < transfer.deadline else _Purpose.REFUSE
            effects += self._decide(dest, purpose, now, certificate=msg.certificate)
        return effects

    def _on_abort_ask(self, sender: int, msg: AbortAsk, now: float) -> list[Effect]:
        self._require_peer(sender)
        transfer = self._check_transfer(msg.transfer, source=False)
        tid = compute_transfer_id(transfer)
        dest, effects = self._get_dest(transfer, tid, sender, now)
        if dest.state is DestState.SETTLED:
            return effects + self._send_settled(dest, (sender,))
        if dest.decision is None:
            effects += self._decide(dest, _Purpose.REFUSE, now)
        return effects

    def _get_dest(
        self, transfer: CrossTransfer, tid: bytes, sender: int, now: float
    ) -> tuple[_Dest, list[Effect]]:
        dest = self._dest.get(tid)
        if dest is None:
            dest = _Dest(transfer=transfer, tid=tid, state=DestState.DECIDING, provider=sender)
            self._dest[tid] = dest
        if sender not in dest.askers:
            dest.askers.append(sender)
        return dest, []

    def _decide(
        self,
        dest: _Dest,
        purpose: _Purpose,
        now: float,
        *,
        certificate: CrossCertificate | None = None,
    ) -> list[Effect]:
        dest.decision = purpose
        dest.last_sent = now
        transfer = dest.transfer
        if purpose is _Purpose.PAY and certificate is not None:
            op: Operation = CrossPay(transfer=transfer, certificate=certificate)
        else:
            purpose = _Purpose.REFUSE
            dest.decision = purpose
            message = compute_refusal_message(dest.tid, transfer.dst_as)
            op = CrossRefuse(
                transfer=transfer,
                gateway=self.tee.identity_key,
                signature=self.tee.sign_identity(message),
            )
        effects: list[Effect] = [self._phase(dest.tid, "destination", "decide", op=purpose.value)]
        effects += self._submit(op, dest.tid, purpose, now)
        effects += self._ensure_key(dest.tid, dest.provider, now)
        return effects

    def _on_dest_certificate(
        self, dest: _Dest, certificate: CrossCertificate, now: float
    ) -> list[Effect]:
        if dest.state is DestState.SETTLED:
            return []
        dest.cert_b = certificate
        dest.state = DestState.SETTLED
        effects: list[Effect] = [
            self._phase(dest.tid, "destination", "attest", claim=certificate.claim.value)
        ]
        return effects + self._send_settled(dest, tuple(dest.askers))

    def _send_settled(self, dest: _Dest, to: tuple[int, ...]) -> list[Effect]:
        if dest.cert_b is None or not to:
            return []
        return [Send(to, Settled(transfer=dest.transfer, certificate=dest.cert_b))]

    # --- recovery ------------------------------------------------------------------------------

    def _on_scan_reply(self, sender: int, msg: ScanReply, now: float) -> list[Effect]:
        index = self.profile.get_index(sender)
        if index is None or msg.as_id != self.as_id:
            raise UnknownSender(f"node {sender} is not a replica of AS {self.as_id}")
        if msg.nonce != self._scan_nonce or type(msg.transfers) is not list:
            return []
        effects: list[Effect] = []
        for transfer in msg.transfers:
            if check_cross_transfer(transfer) is not None or transfer.src_as != self.as_id:
                continue
            if transfer.dst_as != self.config.peer_as:
                continue
            tid = compute_transfer_id(transfer)
            hits = self._scan_hits.setdefault(tid, set())
            hits.add(index)
            self._scan_transfers.setdefault(tid, transfer)
            if len(hits) == self.profile.f + 1:
                effects += self._consider_adoption(tid, now)
        return effects

    def _consider_adoption(self, tid: bytes, now: float) -> list[Effect]:
        first = self._first_seen.setdefault(tid, now)
        current = self._source.get(tid)
        if current is not None:
            return []
        if not self._recovering and now - first < self.config.timing.adopt_after:
            return []
        effects: list[Effect] = []
        xfer = self._adopt(self._scan_transfers[tid], tid, now, effects)
        effects += self._ensure_key(tid, xfer.target, now)
        if self._get_key(tid, xfer.target) is not None:
            effects += self._report_setup(xfer)
        effects += self._ask_attestations(xfer.transfer, xfer.attest, tid, None)
        xfer.last_sent = now
        return effects

    def _start_scan(self, now: float) -> list[Effect]:
        if self._scan_nonce > 0:
            self._recovering = False  # a full scan has been answered since the start
        self._scan_nonce += 1
        self._scan_sent = now
        self._scan_hits = {}
        self._scan_transfers = {}
        return [Send(self._replicas, ScanRequest(as_id=self.as_id, nonce=self._scan_nonce))]

    # --- the tick ------------------------------------------------------------------------------

    def _on_tick(self, now: float) -> list[Effect]:
        timing = self.config.timing
        effects: list[Effect] = []
        for peer in self.config.peer_gateways:
            if peer not in self._peers and now - self._hello_sent.get(peer, -1e9) >= timing.resend:
                effects += self._send_hello(peer, answer=True, now=now)
        effects += self._resend_requests(now)
        for xfer in list(self._source.values()):
            effects += self._tick_source(xfer, now)
        for dest in list(self._dest.values()):
            effects += self._tick_dest(dest, now)
        if self._peers and now - self._scan_sent >= timing.scan_interval:
            effects += self._start_scan(now)
        return effects

    def _tick_source(self, xfer: _Source, now: float) -> list[Effect]:
        state = xfer.state
        if state is SourceState.DONE:
            return []
        if state is SourceState.LOCKING and now >= xfer.transfer.deadline:
            return self._start_abort(xfer, now)
        if now - xfer.last_sent < self.config.timing.resend:
            return []
        xfer.last_sent = now
        if state is SourceState.LOCKING:
            effects = self._ensure_key(xfer.tid, xfer.target, now)
            if self._get_key(xfer.tid, xfer.target) is not None:
                effects += self._report_setup(xfer)
            return effects + self._ask_attestations(xfer.transfer, xfer.attest, xfer.tid, None)
        if state is SourceState.FORWARDED:
            return self._send_forward(xfer, now)
        if state is SourceState.ABORTING:
            return self._send_abort(xfer, now)
        # SETTLING: learn the final state
        pending = tuple(
            node
            for i, node in enumerate(self._replicas)
            if xfer.attest.states.get(i) not in _FINAL_SOURCE
        )
        return [Send(pending, AttestRequest(transfer=xfer.transfer, key_id=b""))] if pending else []

    def _tick_dest(self, dest: _Dest, now: float) -> list[Effect]:
        if dest.state is DestState.SETTLED or dest.decision is None:
            return []
        if now - dest.last_sent < self.config.timing.resend:
            return []
        dest.last_sent = now
        effects = self._ensure_key(dest.tid, dest.provider, now)
        return effects + self._ask_attestations(dest.transfer, dest.attest, dest.tid, None)
