"""Rollback protection for a vault's sealed state: every change is anchored on chain
before its effects leave the enclave.

Theory of operation
-------------------
A vault's host keeps the sealed state and could hand back an older copy, or run two
copies of it at once; either would let one deposit key be released (or swept, or
claimed) twice. :class:`FreshnessGuard` (sans-I/O, inside the vault) closes that:

* **Versions.** The state carries a version ``v`` and a hash chain
  ``h_v = sha256(tag || h_{v-1} || ECALL name || sha256(request) || sha256(output))``.
  Each change whose output is *irrevocable* (a key released, a signature, an offer: the
  program decides per ECALL and output) moves it to ``v + 1``; the output is held in an
  *outbox*, and the enclave answers with an :class:`AnchorRequest`: ``(v + 1,
  h_{v+1})`` signed by its enclave key for the StateAnchor contract
  (:mod:`sealbridge.chain.anchor`), which takes only the next version of each signer.
  A change with nothing irrevocable in its output (a key received and not yet passed
  on, a reservation dropped) is not anchored: losing it to a rollback loses nothing
  that left the enclave, and every later irrevocable output is anchored after it.
  Every ECALL answer of a guarded enclave is a :class:`Guarded`: the output, or the
  anchor to relay first.
* **Releasing the output.** The host seals the state (outbox included), relays the
  anchor transaction, and hands the vault the new headers and an ``eth_getProof`` of its
  anchor slots. The vault verifies the headers from the anchor block fixed at its
  configuration (:class:`~sealbridge.keyservice.chainfacts.HeaderTrack`) and the proof
  against one of them, and returns the outbox only if the chain holds exactly
  ``(v + 1, h_{v+1})``. A second copy of the same state that made another change got
  another hash; the chain refused its anchor (the version was taken), and its proof
  shows the other hash: that copy is *stale* and refuses everything from then on.
  While an outbox waits, the vault takes no other change.
* **Restore.** A restored state is *unverified* until the host proves the chain's anchor:
  equal to the state's ``(v, h_v)``, or one version behind with the outbox of ``v``
  waiting (its anchor was never mined: the host relays it again). An anchor ahead of the
  state means the blob is older than the newest: refused, and the vault stays unusable.

What this rests on: the headers are checked only for their hash links from the
configured anchor block (as every light client here on a devnet chain, which carries
no consensus proof); the host chooses that anchor block when the vault is configured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from sealbridge.chain.abi import checksum
from sealbridge.chain.anchor import compute_anchor_digest, get_anchor_slots
from sealbridge.chain.lightclient import HeaderFields
from sealbridge.chain.proofs import AccountProof
from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError
from sealbridge.keyrelease.errors import InvalidRequest
from sealbridge.keyservice.chainfacts import (
    HeaderTip,
    HeaderTrack,
    KnownHeader,
    read_proven_slots,
)
from sealbridge.tee.ecall import Ecall, Nothing

Req = TypeVar("Req")

CHAIN_TAG = b"sealbridge/vault-state-chain/v1"


class StaleState(RemoteProtocolError):
    """The vault's state is not the newest anchored one (an older blob, or a copy)."""

    code = "vault_state_stale"


class NotAnchored(LocalProtocolError):
    """The change's anchor is not on chain yet (relay it, then prove it)."""

    code = "vault_not_anchored"


class AnchorBinding(Message, frozen=True):
    """The StateAnchor contract and the header the vault's light client starts from."""

    chain_id: int
    contract: str
    start: HeaderTip


class AnchorRequest(Message, frozen=True):
    """What a change returns in place of its output: the anchor to relay."""

    contract: str
    chain_id: int
    version: int
    state_hash: bytes
    signature: bytes  # the vault enclave's secp256k1 signature (StateAnchor.advance)


class AnchorProof(Message, frozen=True):
    """The headers after the vault's newest and a proof of its anchor at one of them."""

    headers: list[HeaderFields]
    number: int
    proof: AccountProof


class GuardState(Message, frozen=True):
    binding: AnchorBinding
    tip: HeaderTip
    version: int
    state_hash: bytes
    previous_hash: bytes = bytes(32)  # of ``version - 1``
    tip_header: KnownHeader | None = None  # the tip's state root (proofs at the tip)
    outbox: bytes | None = None  # the output of ``version``, until its anchor is proven


class FreshnessGuard:
    def __init__(self, binding: AnchorBinding, signer: str) -> None:
        self.binding = binding
        self.signer = checksum(signer)
        self.headers = HeaderTrack(binding.start)
        self.version = 0
        self.state_hash = bytes(32)
        self.previous_hash = bytes(32)
        self.outbox: bytes | None = None
        self.verified = True  # False after a restore, until the anchor is proven
        self.stale = False

    # -- the state -----------------------------------------------------------------------
    def export(self) -> GuardState:
        return GuardState(
            binding=self.binding,
            tip=self.headers.tip,
            version=self.version,
            state_hash=self.state_hash,
            previous_hash=self.previous_hash,
            outbox=self.outbox,
            tip_header=self.headers.recent.get(self.headers.tip.number),
        )

    @classmethod
    def restore(cls, state: GuardState, signer: str) -> FreshnessGuard:
        guard = cls(state.binding, signer)
        guard.headers = HeaderTrack(state.tip)
        if state.tip_header is not None:
            guard.headers.recent[state.tip.number] = state.tip_header
        guard.version = state.version
        guard.state_hash = state.state_hash
        guard.previous_hash = state.previous_hash
        guard.outbox = state.outbox
        guard.verified = False
        return guard

    def check_usable(self) -> None:
        """Refuse a change (or a statement) unless the state is the newest anchored."""
        if self.stale:
            raise StaleState("this vault state is not the newest: it acts no more")
        if not self.verified:
            raise StaleState("a restored vault state acts only after its anchor is proven")
        if self.outbox is not None:
            raise NotAnchored(
                f"version {self.version} waits for its anchor: relay it and prove it first"
            )

    # -- a change ------------------------------------------------------------------------
    def process_change(
        self, name: str, request: bytes, output: bytes, sign: Callable[[bytes], bytes]
    ) -> AnchorRequest:
        """Move to the next version, hold ``output``; the anchor to relay."""
        self.previous_hash = self.state_hash
        self.state_hash = hashlib.sha256(
            CHAIN_TAG
            + self.state_hash
            + name.encode()
            + b"\0"
            + hashlib.sha256(request).digest()
            + hashlib.sha256(output).digest()
        ).digest()
        self.version += 1
        self.outbox = output
        return self.get_request(sign)

    def get_request(self, sign: Callable[[bytes], bytes]) -> AnchorRequest:
        digest = compute_anchor_digest(
            contract=self.binding.contract,
            chain_id=self.binding.chain_id,
            version=self.version,
            state_hash=self.state_hash,
        )
        return AnchorRequest(
            contract=self.binding.contract,
            chain_id=self.binding.chain_id,
            version=self.version,
            state_hash=self.state_hash,
            signature=sign(digest),
        )

    def read_anchor(self, proof: AnchorProof) -> tuple[int, bytes]:
        """Advance the headers and read this vault's anchor at ``proof.number``."""
        self.headers.advance(list(proof.headers))
        if proof.number != self.headers.tip.number:
            raise NotAnchored(
                f"the anchor must be proven at the newest header this enclave verified "
                f"({self.headers.tip.number}), not at {proof.number}"
            )
        known = self.headers.get(proof.number)
        version, state_hash = read_proven_slots(
            known.state_root,
            proof.proof,
            bytes.fromhex(checksum(self.binding.contract)[2:]),
            get_anchor_slots(self.signer),
            "StateAnchor",
        )
        return version, state_hash.to_bytes(32, "big")

    def take_output(self, proof: AnchorProof) -> bytes:
        """The held output, once the chain holds exactly this version and hash."""
        if self.stale:
            raise StaleState("this vault state is not the newest: it acts no more")
        if self.outbox is None:
            raise NotAnchored("no output waits for an anchor")
        version, state_hash = self.read_anchor(proof)
        if (version, state_hash) == (self.version, self.state_hash):
            output, self.outbox = self.outbox, None
            self.verified = True
            return output
        if version >= self.version:
            self.stale = True
            raise StaleState(
                f"another copy of this vault anchored version {version} first: this "
                "state is stale and its output is never released"
            )
        raise NotAnchored(f"the chain holds version {version}; {self.version} is not mined yet")

    def check_restored(self, proof: AnchorProof) -> None:
        """After a restore: accept the state only if the chain's anchor is its own (or one
        behind with the output still waiting)."""
        version, state_hash = self.read_anchor(proof)
        if (version, state_hash) == (self.version, self.state_hash):
            self.verified = True
            return
        behind = (self.version - 1, self.previous_hash)
        if self.outbox is not None and (version, state_hash) == behind:
            self.verified = True  # the anchor was never mined; relay it again
            return
        self.stale = True
        raise StaleState(
            f"the chain anchors version {version} of this vault; the sealed state is "
            f"version {self.version}: an older (or another) copy, refused"
        )


class Guarded(Message, frozen=True):
    """A guarded change's answer: its output now, or the anchor to relay first."""

    output: bytes = b""
    anchor: AnchorRequest | None = None


class AnchorStatus(Message, frozen=True):
    version: int  # -1: no StateAnchor configured
    tip: int  # the newest chain header verified
    waiting: bool  # a change's output waits for its anchor


# --- the anchor ECALLs (names and types, for both sides; served by GuardedEcalls) ---------

# the output of the last change, once its anchor is proven on chain (the output's own
# bytes: its type is the change's, ``spec.decode_response(output)``)
TAKE_OUTPUT = Ecall("take_output", AnchorProof, bytes)
# prove a restored state is the newest anchored one (else it never acts)
CHECK_RESTORED = Ecall("check_restored", AnchorProof, AnchorStatus)
# the anchor of the change waiting for it, again (its transaction was lost)
PENDING_ANCHOR = Ecall("pending_anchor", Nothing, AnchorRequest)
ANCHOR_STATUS = Ecall("anchor_status", Nothing, AnchorStatus)


def get_guarded(spec: Ecall[Req, Any]) -> Ecall[Req, Guarded]:
    """How a guarded enclave answers ``spec`` (an anchored change): a :class:`Guarded`."""
    return spec.answering(Guarded)


class GuardedEcalls:
    """The ECALL side of a :class:`FreshnessGuard`, shared by the vault and the matcher:
    ``wrap`` puts a change behind the guard; ``take_output``, ``check_restored``,
    ``pending_anchor`` and ``anchor_status`` are the ECALLs its host drives (a program
    serves them with ``get_ecall_table(program, program.anchor_calls)``). With no guard
    configured (``get_guard`` returns None) a wrapped change runs as it is."""

    def __init__(
        self,
        get_guard: Callable[[], FreshnessGuard | None],
        sign: Callable[[bytes], bytes],
    ) -> None:
        self.get_guard = get_guard
        self.sign = sign

    def wrap(
        self,
        name: str,
        handler: Callable[[bytes], bytes],
        is_irrevocable: Callable[[bytes], bool] = lambda _output: True,
    ) -> Callable[[bytes], bytes]:
        """``handler`` (a table entry) behind the guard: it runs only on the newest
        anchored state, and an output ``is_irrevocable`` says must be anchored waits for
        its anchor; a guarded answer is a :class:`Guarded` (:func:`get_guarded`)."""

        def run(payload: bytes) -> bytes:
            guard = self.get_guard()
            if guard is None:
                return handler(payload)
            guard.check_usable()
            output = handler(payload)
            if not is_irrevocable(output):
                return encode(Guarded(output=output))
            request = guard.process_change(name, payload, output, self.sign)
            return encode(Guarded(anchor=request))

        return run

    def _guard(self) -> FreshnessGuard:
        guard = self.get_guard()
        if guard is None:
            raise InvalidRequest("this enclave anchors nothing (no StateAnchor configured)")
        return guard

    @TAKE_OUTPUT.handler
    def take_output(self, proof: AnchorProof) -> bytes:
        """The output of the last change, once its anchor is proven on chain."""
        return self._guard().take_output(proof)

    @CHECK_RESTORED.handler
    def check_restored(self, proof: AnchorProof) -> AnchorStatus:
        """Prove a restored state is the newest anchored one (else it never acts)."""
        self._guard().check_restored(proof)
        return self.get_status()

    @PENDING_ANCHOR.handler
    def pending_anchor(self, _: Nothing) -> AnchorRequest:
        """The anchor of the change waiting for it, again (its transaction was lost)."""
        guard = self._guard()
        if guard.outbox is None:
            raise InvalidRequest("no change waits for an anchor")
        return guard.get_request(self.sign)

    def get_status(self) -> AnchorStatus:
        guard = self.get_guard()
        if guard is None:
            return AnchorStatus(version=-1, tip=0, waiting=False)
        return AnchorStatus(
            version=guard.version, tip=guard.headers.tip.number, waiting=guard.outbox is not None
        )

    @ANCHOR_STATUS.handler
    def anchor_status(self, _: Nothing) -> AnchorStatus:
        return self.get_status()
