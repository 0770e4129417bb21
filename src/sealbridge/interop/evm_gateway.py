"""The gateway committee's enclave for cross-chain transfers between EVM chains.

Theory of operation
-------------------
A committee of ``m`` gateways (TEE nodes) jointly holds a ``t``-of-``m`` BLS key whose
group public key is installed in the GatewayEscrow contract of every chain
(:mod:`sealbridge.chain.escrow`). An escrow pays out only for a message the committee
signed, so the committee's enclaves decide what is true across chains. Each enclave:

* **Setup.** Every gateway publishes a :class:`GatewayCard` (its attested keys and a
  quote over them). One gateway, the dealer, checks every card's quote under its sealed
  attestation policy and generates the committee key *inside its enclave from enclave
  randomness*; it encrypts share ``i`` to member ``i``'s attested encryption key and signs
  the public side (:class:`CommitteeSetup`). InterTrust suggests seeding this with the
  public transaction hash; a public seed would let anyone recompute every share, and
  with them forge the committee's signature, so the seed never leaves the enclave. Each
  member checks the dealer's quote and signature, decrypts its share and checks it
  against its public share. (A dealer that is one enclave is InterTrust's setup; the
  key service's joint-Feldman DKG, :mod:`sealbridge.crypto.dkg`, removes that single
  point where more is at stake.)
* **Following the chains.** The host hands the enclave every block of every watched
  chain as evidence (header fields and all receipts). The enclave verifies the header
  chain from an anchor and the receipts root (:mod:`sealbridge.chain.lightclient`) and
  reads the escrows' ``Locked`` and ``Released`` events itself, so a host cannot invent,
  hide or alter a lock or a release.
* **Signing** (the phases of a transfer, each answered with a partial signature):
  ``release`` -- only for a ``Locked`` event verified at least ``confirmations`` blocks
  deep on its source chain, whose destination escrow is watched, and never after this
  enclave signed an ``abort`` for it; ``commit`` -- only once the destination escrow's
  ``Released`` event for that lock is verified; ``abort`` -- only if the lock's
  deadline has passed on the destination chain's verified clock with no release seen and
  no release signed here. A member never signs both a release and an abort of one
  transfer, so with an honest threshold a transfer is paid on the destination and
  committed on the source, or refunded, never both.

The core is sans-I/O: time comes from verified block timestamps, randomness from the
enclave. :class:`GatewayProgram` is its ECALL table (sim TEE backend: its own process).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from enum import StrEnum

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak as _keccak

from sealbridge.chain.bls_onchain import (
    compute_abort_message,
    compute_commit_message,
    compute_lock_ref,
    compute_release_message,
)
from sealbridge.chain.lightclient import BlockEvidence, HeaderChain, LightClientError
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import (
    DecryptionError,
    InvalidSignature,
    LocalProtocolError,
    RemoteProtocolError,
)
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.bls import KeyShare, PartialSignature
from sealbridge.crypto.signing import ed25519_verify
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.enclave import EnclaveContext, NodeKeys, compute_report_data
from sealbridge.tee.errors import AttestationError
from sealbridge.tee.policy import AttestationPolicy

SETUP_SIGN_TAG = b"sealbridge/gateway-committee-setup/v1"
SHARE_AAD_TAG = b"sealbridge/gateway-committee-share/v1"
LOCKED_TOPIC = bytes(
    _keccak(text="Locked(bytes32,address,uint256,uint256,address,address,uint256,bytes32)")
)
RELEASED_TOPIC = bytes(_keccak(text="Released(bytes32,address,uint256,uint256,bytes32)"))
MAX_MEMBERS = 64


class GatewayError(LocalProtocolError):
    code = "gateway_error"


class GatewayRefused(RemoteProtocolError):
    """A request the enclave will not serve (bad setup, unknown or unsafe transfer)."""

    code = "gateway_refused"


class SignKind(StrEnum):
    RELEASE = "release"
    COMMIT = "commit"
    ABORT = "abort"


# --- messages ------------------------------------------------------------------------------


class GatewayCard(Message, frozen=True):
    node: NodeKeys
    quote: bytes


class CommitteeSetup(Message, frozen=True):
    """The dealer's output: the committee's public side and each member's encrypted share."""

    threshold: int
    group_public_key: bytes
    public_shares: list[bytes]  # member i (0-based) holds share index i + 1
    members: list[bytes]  # identity keys, in share order
    shares: list[bytes]  # ECIES to each member's attested encryption key
    dealer: bytes  # the dealer's identity key
    signature: bytes = b""  # Ed25519 by the dealer over SETUP_SIGN_TAG + the body

    def get_body(self) -> bytes:
        unsigned = CommitteeSetup(
            threshold=self.threshold,
            group_public_key=self.group_public_key,
            public_shares=self.public_shares,
            members=self.members,
            shares=self.shares,
            dealer=self.dealer,
        )
        return SETUP_SIGN_TAG + encode(unsigned)


class WatchedChain(Message, frozen=True):
    chain_id: int
    escrow: str  # the GatewayEscrow address on that chain
    anchor_number: int
    anchor_hash: bytes


class Configure(Message, frozen=True):
    policy: AttestationPolicy
    confirmations: int = 1  # blocks on top of a lock before a release is signed


class Watch(Message, frozen=True):
    chains: list[WatchedChain]


class DealRequest(Message, frozen=True):
    cards: list[GatewayCard]
    threshold: int


class JoinRequest(Message, frozen=True):
    setup: CommitteeSetup
    dealer: GatewayCard


class FollowBlock(Message, frozen=True):
    chain_id: int
    evidence: BlockEvidence


class SignRequest(Message, frozen=True):
    kind: SignKind
    transfer_id: bytes


class SignedPartial(Message, frozen=True):
    kind: SignKind
    transfer_id: bytes
    message: bytes  # exactly what the escrow hashes to G2
    partial: PartialSignature
    chain_id: int  # the chain whose escrow takes the combined signature


class LockFact(Message, frozen=True):
    """A ``Locked`` event as this enclave verified it."""

    transfer_id: bytes
    source_chain_id: int
    source_escrow: str
    sender: str
    amount: int
    dest_chain_id: int
    dest_escrow: str
    recipient: str
    deadline: int
    lock_ref: bytes
    block_number: int


class GatewayStatus(Message, frozen=True):
    member: bool
    index: int
    heights: dict[str, int]  # chain id -> newest verified block
    locks: int
    released: int
    signed: dict[str, int]  # kind -> count


# --- the core ------------------------------------------------------------------------------


class GatewayCore:
    """One gateway's trusted state (see the module docstring)."""

    def __init__(self, ctx: EnclaveContext, *, now: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.now = now
        self.policy: AttestationPolicy | None = None
        self.confirmations = 1
        self.escrows: dict[int, str] = {}
        self.headers: dict[int, HeaderChain] = {}
        self.clock: dict[int, int] = {}  # chain id -> newest verified block timestamp
        self.locks: dict[bytes, LockFact] = {}
        self.released: dict[bytes, int] = {}  # transfer id -> block of its Released event
        self.setup: CommitteeSetup | None = None
        self._share: KeyShare | None = None
        self.signed: dict[bytes, set[SignKind]] = {}

    # -- configuration and setup -----------------------------------------------------------
    def configure(self, request: Configure) -> None:
        if self.policy is not None:
            raise GatewayError("the gateway is configured already")
        if not 1 <= request.confirmations <= 64:
            raise GatewayError("confirmations must be in [1, 64]")
        self.policy = request.policy
        self.confirmations = request.confirmations

    def watch(self, request: Watch) -> None:
        """Follow these chains' escrows from their anchors (each chain once)."""
        for chain in request.chains:
            if chain.chain_id in self.escrows:
                raise GatewayError(f"chain {chain.chain_id} is watched already")
        for chain in request.chains:
            self.escrows[chain.chain_id] = to_checksum_address(chain.escrow)
            self.headers[chain.chain_id] = HeaderChain(chain.anchor_number, chain.anchor_hash)
            self.clock[chain.chain_id] = 0

    def _policy(self) -> AttestationPolicy:
        if self.policy is None:
            raise GatewayError("the gateway is not configured")
        return self.policy

    def get_card(self) -> GatewayCard:
        return GatewayCard(node=self.ctx.identity, quote=self.ctx.get_identity_quote())

    def check_card(self, card: GatewayCard) -> None:
        try:
            verify_quote(
                card.quote,
                policy=self._policy(),
                now=int(self.now()),
                expected_report_data=compute_report_data(card.node),
            )
        except AttestationError as exc:
            raise GatewayRefused(f"gateway card does not attest: {exc.message}") from exc

    def deal(self, request: DealRequest) -> CommitteeSetup:
        """Generate the committee key in this enclave and encrypt each member's share."""
        cards = list(request.cards)
        if not 1 <= len(cards) <= MAX_MEMBERS:
            raise GatewayRefused(f"a committee has 1 to {MAX_MEMBERS} members")
        if not 1 <= request.threshold <= len(cards):
            raise GatewayRefused("threshold must be in [1, members]")
        members = [c.node.identity_key for c in cards]
        if len(set(members)) != len(members):
            raise GatewayRefused("a member is named twice")
        if self.ctx.identity.identity_key not in members:
            raise GatewayRefused("the dealer must be a member")
        for card in cards:
            self.check_card(card)
        key_set = bls.deal_threshold_key(
            request.threshold, len(cards), randomness=self.ctx.random_bytes(32)
        )
        shares = [
            ecies.encrypt_to(
                card.node.encryption_key,
                key_share.secret,
                SHARE_AAD_TAG + card.node.identity_key + key_set.group_public_key,
                ephemeral_seed=self.ctx.random_bytes(ecies.KEY_SIZE),
            )
            for card, key_share in zip(cards, key_set.shares, strict=True)
        ]
        setup = CommitteeSetup(
            threshold=key_set.threshold,
            group_public_key=key_set.group_public_key,
            public_shares=list(key_set.public_shares),
            members=members,
            shares=shares,
            dealer=self.ctx.identity.identity_key,
        )
        setup = CommitteeSetup(
            threshold=setup.threshold,
            group_public_key=setup.group_public_key,
            public_shares=setup.public_shares,
            members=setup.members,
            shares=setup.shares,
            dealer=setup.dealer,
            signature=self.ctx.sign_identity(setup.get_body()),
        )
        self._install(setup)
        return setup

    def join(self, request: JoinRequest) -> None:
        """Check the dealer and take this member's share."""
        setup, dealer = request.setup, request.dealer
        if dealer.node.identity_key != setup.dealer:
            raise GatewayRefused("the setup names another dealer than the card")
        self.check_card(dealer)
        try:
            ed25519_verify(setup.dealer, setup.get_body(), setup.signature)
        except InvalidSignature as exc:
            raise GatewayRefused("the committee setup is not signed by its dealer") from exc
        self._install(setup)

    def _install(self, setup: CommitteeSetup) -> None:
        if self.setup is not None:
            raise GatewayError("this gateway already belongs to a committee")
        me = self.ctx.identity.identity_key
        n = len(setup.members)
        if not (len(setup.shares) == len(setup.public_shares) == n) or me not in setup.members:
            raise GatewayRefused("the setup does not name this gateway consistently")
        index = setup.members.index(me)
        try:
            secret = self.ctx.decrypt_for_identity(
                setup.shares[index], SHARE_AAD_TAG + me + setup.group_public_key
            )
        except DecryptionError as exc:
            raise GatewayRefused("this gateway's share does not decrypt") from exc
        share = KeyShare(index=index + 1, secret=secret)
        if bls.public_key(secret) != setup.public_shares[index]:
            raise GatewayRefused("this gateway's share does not match its public share")
        self.setup, self._share = setup, share

    # -- following the chains --------------------------------------------------------------
    def follow(self, request: FollowBlock) -> int:
        """Verify the next block of a watched chain and read its escrow events."""
        headers = self.headers.get(request.chain_id)
        if headers is None:
            raise GatewayRefused(f"chain {request.chain_id} is not watched")
        try:
            block = headers.process(request.evidence)
        except LightClientError as exc:
            raise GatewayRefused(f"block refused: {exc.message}") from exc
        self.clock[request.chain_id] = block.timestamp
        escrow = bytes.fromhex(self.escrows[request.chain_id][2:])
        for log in block.logs:
            if log.address != escrow or not log.topics:
                continue
            if log.topics[0] == LOCKED_TOPIC:
                self._on_locked(request.chain_id, block.number, log.topics, log.data)
            elif log.topics[0] == RELEASED_TOPIC and len(log.topics) > 1:
                self.released.setdefault(log.topics[1], block.number)
        return block.number

    def _on_locked(self, chain_id: int, number: int, topics: list[bytes], data: bytes) -> None:
        if len(topics) < 3:
            return
        try:
            amount, dest_chain, dest_escrow, recipient, deadline, lock_ref = abi_decode(
                ["uint256", "uint256", "address", "address", "uint256", "bytes32"], data
            )
        except (DecodingError, ValueError, TypeError) as exc:
            raise GatewayRefused(f"a Locked event does not decode: {exc}") from exc
        fact = LockFact(
            transfer_id=topics[1],
            source_chain_id=chain_id,
            source_escrow=self.escrows[chain_id],
            sender=to_checksum_address(topics[2][-20:]),
            amount=int(amount),
            dest_chain_id=int(dest_chain),
            dest_escrow=to_checksum_address(dest_escrow),
            recipient=to_checksum_address(recipient),
            deadline=int(deadline),
            lock_ref=bytes(lock_ref),
            block_number=number,
        )
        self.locks.setdefault(fact.transfer_id, fact)

    # -- signing -----------------------------------------------------------------------------
    def sign(self, request: SignRequest) -> SignedPartial:
        if self._share is None:
            raise GatewayError("this gateway holds no committee share")
        fact = self.locks.get(request.transfer_id)
        if fact is None:
            raise GatewayRefused("no verified lock for this transfer")
        done = self.signed.setdefault(request.transfer_id, set())
        if request.kind is SignKind.RELEASE:
            message, chain_id = self._check_release(fact, done)
        elif request.kind is SignKind.COMMIT:
            if request.transfer_id not in self.released:
                raise GatewayRefused("no verified release of this transfer on its destination")
            chain_id = fact.source_chain_id
            message = compute_commit_message(
                escrow=fact.source_escrow,
                chain_id=chain_id,
                transfer_id=fact.transfer_id,
                lock_ref=fact.lock_ref,
            )
        else:
            message, chain_id = self._check_abort(fact, done)
        done.add(request.kind)
        return SignedPartial(
            kind=request.kind,
            transfer_id=request.transfer_id,
            message=message,
            partial=bls.partial_sign(self._share, message),
            chain_id=chain_id,
        )

    def _check_release(self, fact: LockFact, done: set[SignKind]) -> tuple[bytes, int]:
        if SignKind.ABORT in done:
            raise GatewayRefused("this gateway signed an abort of the transfer")
        dest_escrow = self.escrows.get(fact.dest_chain_id)
        if dest_escrow is None or dest_escrow != fact.dest_escrow:
            raise GatewayRefused("the lock names an escrow this committee does not serve")
        depth = self.headers[fact.source_chain_id].number - fact.block_number
        if depth < self.confirmations:
            raise GatewayRefused(
                f"the lock has {depth} confirmations, {self.confirmations} are required"
            )
        lock_ref = compute_lock_ref(
            source_chain_id=fact.source_chain_id,
            source_escrow=fact.source_escrow,
            transfer_id=fact.transfer_id,
            sender=fact.sender,
            amount=fact.amount,
            dest_chain_id=fact.dest_chain_id,
            dest_escrow=fact.dest_escrow,
            recipient=fact.recipient,
            deadline=fact.deadline,
        )
        if lock_ref != fact.lock_ref:
            raise GatewayRefused("the lock's reference does not match its fields")
        message = compute_release_message(
            escrow=fact.dest_escrow,
            chain_id=fact.dest_chain_id,
            transfer_id=fact.transfer_id,
            recipient=fact.recipient,
            amount=fact.amount,
            lock_ref=lock_ref,
        )
        return message, fact.dest_chain_id

    def _check_abort(self, fact: LockFact, done: set[SignKind]) -> tuple[bytes, int]:
        if SignKind.RELEASE in done:
            raise GatewayRefused("this gateway signed a release of the transfer")
        if fact.transfer_id in self.released:
            raise GatewayRefused("the transfer was released on its destination")
        if self.clock.get(fact.dest_chain_id, 0) <= fact.deadline:
            raise GatewayRefused("the deadline has not passed on the destination chain")
        message = compute_abort_message(
            escrow=fact.source_escrow,
            chain_id=fact.source_chain_id,
            transfer_id=fact.transfer_id,
            lock_ref=fact.lock_ref,
        )
        return message, fact.source_chain_id

    def get_status(self) -> GatewayStatus:
        signed: dict[str, int] = {}
        for kinds in self.signed.values():
            for kind in kinds:
                signed[kind.value] = signed.get(kind.value, 0) + 1
        return GatewayStatus(
            member=self._share is not None,
            index=self._share.index if self._share is not None else 0,
            heights={str(cid): h.number for cid, h in self.headers.items()},
            locks=len(self.locks),
            released=len(self.released),
            signed=signed,
        )


class Empty(Message, frozen=True):
    pass


class Height(Message, frozen=True):
    number: int


class GatewayProgram:
    """The ECALL table of a gateway enclave (``sealbridge.interop.evm_gateway:GatewayProgram``)."""

    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] = time.time) -> None:
        self.core = GatewayCore(ctx, now=clock)

    def get_ecalls(self) -> Mapping[str, Callable[[bytes], bytes]]:
        return {
            "configure": self.configure,
            "watch": self.watch,
            "card": self.card,
            "deal": self.deal,
            "join": self.join,
            "follow": self.follow,
            "sign": self.sign,
            "status": self.status,
        }

    def configure(self, payload: bytes) -> bytes:
        self.core.configure(decode(payload, Configure))
        return encode(Empty())

    def watch(self, payload: bytes) -> bytes:
        self.core.watch(decode(payload, Watch))
        return encode(Empty())

    def card(self, payload: bytes) -> bytes:
        return encode(self.core.get_card())

    def deal(self, payload: bytes) -> bytes:
        return encode(self.core.deal(decode(payload, DealRequest)))

    def join(self, payload: bytes) -> bytes:
        self.core.join(decode(payload, JoinRequest))
        return encode(Empty())

    def follow(self, payload: bytes) -> bytes:
        return encode(Height(number=self.core.follow(decode(payload, FollowBlock))))

    def sign(self, payload: bytes) -> bytes:
        return encode(self.core.sign(decode(payload, SignRequest)))

    def status(self, payload: bytes) -> bytes:
        return encode(self.core.get_status())
