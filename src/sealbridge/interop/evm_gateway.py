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
from sealbridge.core.errors import EncodingError, LocalProtocolError, RemoteProtocolError
from sealbridge.crypto.bls import PartialSignature
from sealbridge.keyservice.committee import ChainBinding, CommitteeMember, CommitteeState
from sealbridge.keyservice.ecalls import CommitteeEcalls, SealedBlob, sign_heartbeat
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import AttestationPolicy

SETUP_SEAL_LABEL = "sealbridge/gateway-setup/v1"
COMMITTEE_SEAL_LABEL = "sealbridge/gateway-committee/v1"
STATE_SEAL_LABEL = "sealbridge/gateway-state/v1"
LOCKED_TOPIC = bytes(
    _keccak(text="Locked(bytes32,address,uint256,uint256,address,address,uint256,bytes32)")
)
RELEASED_TOPIC = bytes(_keccak(text="Released(bytes32,address,uint256,uint256,bytes32)"))
MAX_CHAINS = 16


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


class ChainAnchor(Message, frozen=True):
    """The block a chain's light client starts from (fixed at setup)."""

    chain_id: int
    number: int
    block_hash: bytes


class GatewaySetup(Message, frozen=True):
    """What the enclave fixes for good at setup (sealed to its measurement)."""

    policy: AttestationPolicy
    committee: ChainBinding  # the gateway committee contract it signs DKG messages for
    anchors: list[ChainAnchor]
    confirmations: int = 1  # blocks on top of a lock before a release is signed


class EscrowRef(Message, frozen=True):
    chain_id: int
    escrow: str  # the GatewayEscrow address on that chain


class Watch(Message, frozen=True):
    escrows: list[EscrowRef]


class GatewayState(Message, frozen=True):
    """What the enclave seals after each change besides its committee share."""

    escrows: list[EscrowRef]
    signed: dict[str, list[str]]  # transfer id (hex) -> kinds signed


class GatewayRestore(Message, frozen=True):
    setup: bytes  # sealed GatewaySetup
    committee: bytes = b""  # sealed CommitteeState, if any
    state: bytes = b""  # sealed GatewayState, if any


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


class SignOut(Message, frozen=True):
    signed: SignedPartial
    sealed: bytes  # the sealed GatewayState, with this signature recorded


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
    era: int
    group_public_key: bytes
    heights: dict[str, int]  # chain id -> newest verified block
    escrows: dict[str, str]  # chain id -> escrow
    locks: int
    released: int
    signed: dict[str, int]  # kind -> count


# --- the core ------------------------------------------------------------------------------


class GatewayCore:
    """One gateway's trusted state (see the module docstring)."""

    def __init__(self, ctx: EnclaveContext) -> None:
        self.ctx = ctx
        self.setup: GatewaySetup | None = None
        self.committee: CommitteeMember | None = None
        self.confirmations = 1
        self.escrows: dict[int, str] = {}
        self.headers: dict[int, HeaderChain] = {}
        self.clock: dict[int, int] = {}  # chain id -> newest verified block timestamp
        self.locks: dict[bytes, LockFact] = {}
        # transfer id -> (chain id, block) of its Released event
        self.released: dict[bytes, tuple[int, int]] = {}
        self.signed: dict[bytes, set[SignKind]] = {}

    # -- setup and sealing -----------------------------------------------------------------
    def process_setup(self, setup: GatewaySetup) -> None:
        """Fix the policy, committee contract and anchors (once)."""
        if self.setup is not None:
            raise GatewayError("the gateway is set up already")
        if not 1 <= setup.confirmations <= 64:
            raise GatewayError("confirmations must be in [1, 64]")
        chain_ids = [a.chain_id for a in setup.anchors]
        if not 1 <= len(chain_ids) <= MAX_CHAINS or len(set(chain_ids)) != len(chain_ids):
            raise GatewayError(f"name 1 to {MAX_CHAINS} distinct chains to anchor")
        for anchor in setup.anchors:
            if anchor.number < 0 or len(anchor.block_hash) != 32:
                raise GatewayError(f"the anchor of chain {anchor.chain_id} is malformed")
        try:
            to_checksum_address(setup.committee.committee_address)
        except (ValueError, TypeError) as exc:
            raise GatewayError("the committee contract is not an address") from exc
        policy = setup.policy
        if not policy.any_measurement and self.ctx.measurement not in policy.allowed_measurements:
            raise GatewayError(
                "the policy does not admit this gateway's own measurement: no committee "
                "of gateways could form under it"
            )
        self.setup = setup
        self.confirmations = setup.confirmations
        self.committee = CommitteeMember(
            enclave=self.ctx,
            policy=setup.policy,
            measurement=self.ctx.measurement,
            chain=setup.committee,
        )
        for anchor in setup.anchors:
            self.headers[anchor.chain_id] = HeaderChain(anchor.number, anchor.block_hash)
            self.clock[anchor.chain_id] = 0

    def get_committee(self) -> CommitteeMember:
        if self.committee is None:
            raise GatewayError("the gateway is not set up (setup or restore)")
        return self.committee

    def watch(self, request: Watch) -> None:
        """Serve these escrows (each anchored chain once, for good)."""
        seen: set[int] = set()
        for ref in request.escrows:
            if ref.chain_id not in self.headers:
                raise GatewayError(f"chain {ref.chain_id} is not anchored in this gateway")
            if ref.chain_id in self.escrows or ref.chain_id in seen:
                raise GatewayError(f"the escrow of chain {ref.chain_id} is named already")
            try:
                to_checksum_address(ref.escrow)
            except (ValueError, TypeError) as exc:
                raise GatewayError(f"escrow {ref.escrow!r} is not an address") from exc
            seen.add(ref.chain_id)
        for ref in request.escrows:
            self.escrows[ref.chain_id] = to_checksum_address(ref.escrow)

    def export_state(self) -> GatewayState:
        return GatewayState(
            escrows=[EscrowRef(chain_id=c, escrow=e) for c, e in sorted(self.escrows.items())],
            signed={
                "0x" + tid.hex(): sorted(k.value for k in kinds)
                for tid, kinds in sorted(self.signed.items())
            },
        )

    def restore_state(self, state: GatewayState) -> None:
        self.watch(Watch(escrows=state.escrows))
        for tid, kinds in state.signed.items():
            try:
                key = bytes.fromhex(tid.removeprefix("0x"))
                self.signed[key] = {SignKind(k) for k in kinds}
            except ValueError as exc:
                raise GatewayError("the sealed state names a malformed signature") from exc

    # -- following the chains --------------------------------------------------------------
    def follow(self, request: FollowBlock) -> int:
        """Verify the next block of a watched chain and read its escrow events. A chain
        is followed only once its escrow is named (no lock can be missed before)."""
        headers = self.headers.get(request.chain_id)
        if headers is None:
            raise GatewayRefused(f"chain {request.chain_id} is not anchored in this gateway")
        named = self.escrows.get(request.chain_id)
        if named is None:
            raise GatewayRefused(f"the escrow of chain {request.chain_id} is not named yet")
        try:
            block = headers.process(request.evidence)
        except LightClientError as exc:
            raise GatewayRefused(f"block refused: {exc.message}") from exc
        self.clock[request.chain_id] = block.timestamp
        escrow = bytes.fromhex(named[2:])
        for log in block.logs:
            if log.address != escrow or not log.topics:
                continue
            if log.topics[0] == LOCKED_TOPIC:
                self._on_locked(request.chain_id, block.number, log.topics, log.data)
            elif log.topics[0] == RELEASED_TOPIC and len(log.topics) > 1:
                self.released.setdefault(log.topics[1], (request.chain_id, block.number))
        return block.number

    def _on_locked(self, chain_id: int, number: int, topics: list[bytes], data: bytes) -> None:
        if len(topics) < 3:
            return
        try:
            amount, dest_chain, dest_escrow, recipient, deadline, lock_ref = abi_decode(
                ["uint256", "uint256", "address", "address", "uint256", "bytes32"], data
            )
        except (DecodingError, ValueError, TypeError):
            return  # not a lock this escrow could have emitted; the block stays verified
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
        holder = self.get_committee().get_active()
        fact = self.locks.get(request.transfer_id)
        if fact is None:
            raise GatewayRefused("no verified lock for this transfer")
        done = self.signed.get(request.transfer_id, set())
        if request.kind is SignKind.RELEASE:
            message, chain_id = self._check_release(fact, done)
        elif request.kind is SignKind.COMMIT:
            self._check_commit(fact)
            chain_id = fact.source_chain_id
            message = compute_commit_message(
                escrow=fact.source_escrow,
                chain_id=chain_id,
                transfer_id=fact.transfer_id,
                lock_ref=fact.lock_ref,
            )
        else:
            message, chain_id = self._check_abort(fact, done)
        partial = holder.sign_message(message)
        self.signed[request.transfer_id] = done | {request.kind}
        return SignedPartial(
            kind=request.kind,
            transfer_id=request.transfer_id,
            message=message,
            partial=partial,
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

    def _check_commit(self, fact: LockFact) -> None:
        released = self.released.get(fact.transfer_id)
        if released is None or released[0] != fact.dest_chain_id:
            raise GatewayRefused("no verified release of this transfer on its destination")
        depth = self.headers[fact.dest_chain_id].number - released[1]
        if depth < self.confirmations:
            raise GatewayRefused(
                f"the release has {depth} confirmations, {self.confirmations} are required"
            )

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
        committee = self.committee
        holder = None
        if committee is not None:
            candidate = committee.active.get(committee.current_era)
            holder = candidate if candidate is not None and not candidate.is_erased else None
        return GatewayStatus(
            member=holder is not None,
            index=holder.index if holder is not None else 0,
            era=committee.current_era if committee is not None else 0,
            group_public_key=holder.group_public_key if holder is not None else b"",
            heights={str(cid): h.number for cid, h in self.headers.items()},
            escrows={str(cid): e for cid, e in self.escrows.items()},
            locks=len(self.locks),
            released=len(self.released),
            signed=signed,
        )


class Empty(Message, frozen=True):
    pass


class Height(Message, frozen=True):
    number: int


class GatewayNotReady(LocalProtocolError):
    code = "gateway_not_ready"


class GatewayProgram:
    """The ECALL table of a gateway enclave (``sealbridge.interop.evm_gateway:GatewayProgram``).

    The committee ECALLs have the gatekeeper's names and message types
    (:mod:`sealbridge.keyservice.ecalls`), so one host-side driver serves both."""

    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.core = GatewayCore(ctx)
        self.committee_calls = CommitteeEcalls(
            lambda: self.core.get_committee(), self._seal_committee, clock
        )

    def get_ecalls(self) -> Mapping[str, Callable[[bytes], bytes]]:
        return {
            "setup": self.setup,
            "restore": self.restore,
            "watch": self.watch,
            "follow": self.follow,
            "sign": self.sign,
            "status": self.status,
            **self.committee_calls.get_table(),
            "sign_heartbeat": self.sign_heartbeat,
        }

    def _seal_committee(self, state: CommitteeState) -> bytes:
        return self.ctx.seal(encode(state), COMMITTEE_SEAL_LABEL)

    def _seal_state(self) -> bytes:
        return self.ctx.seal(encode(self.core.export_state()), STATE_SEAL_LABEL)

    def setup(self, payload: bytes) -> bytes:
        setup = decode(payload, GatewaySetup)
        self.core.process_setup(setup)
        return encode(SealedBlob(sealed=self.ctx.seal(encode(setup), SETUP_SEAL_LABEL)))

    def restore(self, payload: bytes) -> bytes:
        if self.core.setup is not None:
            raise GatewayNotReady("this enclave is set up already (restore once, at start)")
        request = decode(payload, GatewayRestore)
        try:
            setup = decode(self.ctx.unseal(request.setup, SETUP_SEAL_LABEL), GatewaySetup)
            committee = (
                decode(self.ctx.unseal(request.committee, COMMITTEE_SEAL_LABEL), CommitteeState)
                if request.committee
                else None
            )
            state = (
                decode(self.ctx.unseal(request.state, STATE_SEAL_LABEL), GatewayState)
                if request.state
                else None
            )
        except EncodingError as exc:
            raise GatewayError(f"a sealed blob does not decode: {exc.message}") from exc
        core = GatewayCore(self.ctx)  # all or nothing: a failed restore may be tried again
        core.process_setup(setup)
        if committee is not None:
            core.get_committee().restore_state(committee)
        if state is not None:
            core.restore_state(state)
        self.core = core
        return encode(Empty())

    def watch(self, payload: bytes) -> bytes:
        self.core.watch(decode(payload, Watch))
        return encode(SealedBlob(sealed=self._seal_state()))

    def follow(self, payload: bytes) -> bytes:
        return encode(Height(number=self.core.follow(decode(payload, FollowBlock))))

    def sign(self, payload: bytes) -> bytes:
        signed = self.core.sign(decode(payload, SignRequest))
        return encode(SignOut(signed=signed, sealed=self._seal_state()))

    def status(self, payload: bytes) -> bytes:
        return encode(self.core.get_status())

    def sign_heartbeat(self, payload: bytes) -> bytes:
        return sign_heartbeat(self.ctx, payload)
