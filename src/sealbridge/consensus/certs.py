"""What consensus signs, and how shares become certificates.

Theory of operation
-------------------
Every replica holds a share of the AS's threshold BLS key
(:mod:`sealbridge.crypto.bls`). It signs four kinds of message, each a 32-byte
domain-tagged SHA-256 of canonical bytes, so that no signature made for one purpose
verifies for another:

=================  ===================================  ==================================
tag                hashed value                         signed by / combined into
=================  ===================================  ==================================
``.../prepare``    ``Statement(as_id, view, seq, d)``   shares -> prepare certificate
``.../commit``     ``Statement(as_id, view, seq, d)``   shares -> commit certificate
``.../view-change``  the ViewChange, empty signature    the sending replica's share
``.../new-view``   view, VC signatures, proposals       the new primary's share
=================  ===================================  ==================================

(tags are ``sealbridge/consensus/v1/<name>``; ``d`` is the batch digest.) A certificate
is an ordinary BLS signature of the group key: anyone holding ``group_public_key`` --
a gateway of another chain, a light client -- checks that (as_id, view, seq, digest) was
prepared or committed with :func:`is_valid_commit_certificate`, without knowing the
replicas. View-change and new-view signatures are single partial signatures, checked
against the signer's public share; each replica signs different bytes there, so they
never combine into a group signature.

A :class:`SharePool` is the collector's side (SBFT's optimistic combine): once it holds
``threshold`` shares for one statement it combines them *without* checking them one by
one and verifies the result once. Only if that fails does it verify each share, drop the
invalid ones, report their signers, and wait for more. A collector may also forward the
combination *before* verifying it (:meth:`SharePool.combine_unverified`), taking the
pairing off the round's critical path: every receiver verifies a certificate anyway, and
should the combination be bad the collector's check, right after, falls back as above
and forwards the good certificate once it has one.

:class:`VerifyCache` memoizes ``verify(public_key, message, signature)`` -- a pure
function, so sharing one cache among the replicas of a simulation (which pass the same
certificate to every replica) is sound and saves most pairings. Share it only where CPU
time is not what is measured: under the simulator's ``MeasuredCpu`` a shared cache makes
the first replica pay for every other replica's checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealbridge.consensus.messages import Phase, Request, ViewChange
from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import EncodingError, InvalidSignature
from sealbridge.core.ids import tagged_hash
from sealbridge.crypto import bls
from sealbridge.crypto.bls import KeyShare, PartialSignature
from sealbridge.crypto.shamir import ThresholdError

__all__ = [
    "BATCH_TAG",
    "COMMIT_TAG",
    "NEW_VIEW_TAG",
    "PREPARE_TAG",
    "VIEW_CHANGE_TAG",
    "SharePool",
    "Statement",
    "VerifyCache",
    "compute_batch_digest",
    "compute_new_view_digest",
    "compute_statement",
    "compute_view_change_digest",
    "is_valid_commit_certificate",
    "sign_statement",
]

BATCH_TAG = "sealbridge/consensus/v1/batch"
PREPARE_TAG = "sealbridge/consensus/v1/prepare"
COMMIT_TAG = "sealbridge/consensus/v1/commit"
VIEW_CHANGE_TAG = "sealbridge/consensus/v1/view-change"
NEW_VIEW_TAG = "sealbridge/consensus/v1/new-view"
_PHASE_TAGS = {Phase.PREPARE: PREPARE_TAG, Phase.COMMIT: COMMIT_TAG}


class Statement(Message, frozen=True):
    """What a prepare or commit certificate binds (under the phase's domain tag)."""

    as_id: int
    view: int
    seq: int
    digest: bytes


class _NewViewBody(Message, frozen=True):
    as_id: int
    view: int
    view_change_signatures: list[bytes]
    proposals: list[tuple[int, bytes]]


def compute_batch_digest(batch: Sequence[Request]) -> bytes:
    """The digest a PrePrepare names its batch by (EncodingError on non-encodable data)."""
    return tagged_hash(BATCH_TAG, encode(list(batch)))


def compute_statement(phase: Phase, as_id: int, view: int, seq: int, digest: bytes) -> bytes:
    """The 32 bytes a share or certificate of ``phase`` signs."""
    body = encode(Statement(as_id=as_id, view=view, seq=seq, digest=digest))
    return tagged_hash(_PHASE_TAGS[phase], body)


def compute_view_change_digest(view_change: ViewChange) -> bytes:
    """What a ViewChange's signature signs: the message with an empty signature."""
    unsigned = ViewChange(
        as_id=view_change.as_id,
        new_view=view_change.new_view,
        replica=view_change.replica,
        last_commit=view_change.last_commit,
        entries=view_change.entries,
    )
    return tagged_hash(VIEW_CHANGE_TAG, encode(unsigned))


def compute_new_view_digest(
    as_id: int,
    view: int,
    view_change_signatures: Sequence[bytes],
    proposals: Sequence[tuple[int, bytes]],
) -> bytes:
    """What a NewView's signature signs: the view, the set of ViewChange signatures
    (each binds its whole ViewChange) and the re-proposed (seq, digest) pairs."""
    body = _NewViewBody(
        as_id=as_id,
        view=view,
        view_change_signatures=list(view_change_signatures),
        proposals=list(proposals),
    )
    return tagged_hash(NEW_VIEW_TAG, encode(body))


def sign_statement(share: KeyShare, message: bytes) -> PartialSignature:
    return bls.partial_sign(share, message)


def is_valid_commit_certificate(
    group_public_key: bytes, as_id: int, view: int, seq: int, digest: bytes, certificate: bytes
) -> bool:
    """True when ``certificate`` shows the AS committed batch ``digest`` at ``seq``."""
    try:
        message = compute_statement(Phase.COMMIT, as_id, view, seq, digest)
    except EncodingError:
        return False
    return bls.verify(group_public_key, message, certificate)


class VerifyCache:
    """Memoized BLS verification (bounded; oldest entries are forgotten first)."""

    def __init__(self, max_entries: int = 1 << 16) -> None:
        self.max_entries = max_entries
        self._results: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.misses = 0

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if not isinstance(signature, bytes) or not isinstance(public_key, bytes):
            return False
        key = (public_key, message, signature)
        cached = self._results.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        result = bls.verify(public_key, message, signature)
        if len(self._results) >= self.max_entries:
            del self._results[next(iter(self._results))]
        self._results[key] = result
        return result


class SharePool:
    """The shares a collector holds for one statement, and the certificate once made."""

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.shares: dict[int, PartialSignature] = {}  # share index -> share
        self.verified: set[int] = set()
        self.certificate: bytes | None = None
        self.speculative: bytes | None = None  # combined, not yet verified
        self.forwarded: bytes | None = None  # the combination sent out unverified, if any

    def add(self, share: PartialSignature, *, verified: bool = False) -> bool:
        """Keep a share (False if that index already gave one)."""
        if share.index in self.shares:
            return False
        self.shares[share.index] = share
        if verified:
            self.verified.add(share.index)
        return True

    def combine_unverified(self, threshold: int) -> bytes | None:
        """The combination of ``threshold`` shares, not verified (None below the
        threshold, or if a share does not even decode): what a collector may forward
        speculatively, checking it afterwards with :meth:`try_certify`."""
        if self.certificate is not None:
            return self.certificate
        if len(self.shares) < threshold:
            return None
        self.speculative = self._combine(self._ordered()[:threshold], threshold)
        return self.speculative

    def _ordered(self) -> list[PartialSignature]:
        # Verified shares first, so a known-good set is tried before unknown ones.
        return sorted(self.shares.values(), key=lambda s: (s.index not in self.verified,))

    def try_certify(
        self,
        threshold: int,
        group_public_key: bytes,
        public_shares: Sequence[bytes],
        verifier: VerifyCache,
    ) -> tuple[bytes | None, list[int]]:
        """Return (certificate or None, share indices found invalid just now). A
        speculative combination made before is verified instead of combining anew."""
        if self.certificate is not None or len(self.shares) < threshold:
            return self.certificate, []
        candidate, self.speculative = self.speculative, None
        if candidate is None:
            candidate = self._combine(self._ordered()[:threshold], threshold)
        if candidate is not None and verifier.verify(group_public_key, self.message, candidate):
            self.certificate = candidate
            return candidate, []
        bad: list[int] = []
        for index, share in list(self.shares.items()):
            if index in self.verified:
                continue
            if verifier.verify(public_shares[index - 1], self.message, share.signature):
                self.verified.add(index)
            else:
                bad.append(index)
                del self.shares[index]
        if len(self.verified) >= threshold:
            good = [self.shares[i] for i in sorted(self.verified)[:threshold]]
            candidate = self._combine(good, threshold)
            if candidate is not None and verifier.verify(group_public_key, self.message, candidate):
                self.certificate = candidate
        return self.certificate, bad

    @staticmethod
    def _combine(shares: Sequence[PartialSignature], threshold: int) -> bytes | None:
        try:
            # the result is verified before use: skip the per-share subgroup checks
            return bls.combine(shares, threshold, check_subgroup=False)
        except (InvalidSignature, ThresholdError):
            return None
