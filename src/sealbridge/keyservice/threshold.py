"""Threshold key release: gatekeepers hold key shares, workers combine contract keys.

Theory of operation
-------------------
After key generation (:mod:`sealbridge.crypto.dkg`) each gatekeeper enclave keeps its
:class:`~sealbridge.crypto.dkg.KeyShareResult` in a :class:`ShareHolder`. No gatekeeper
holds the root secret, and none can derive a contract key alone.

* **Release** (gatekeeper side). Once the attested request checks pass (the caller's
  job, as for single-gatekeeper release), :meth:`ShareHolder.release_partial` signs the
  contract's PRF message with the share and ECIES-encrypts the 96-byte partial to the
  worker's attested X25519 key; the associated data binds contract, worker and share
  index, so a partial cannot be replayed to another worker or passed off as another
  holder's. The ephemeral ECIES key comes from the caller's randomness.
* **Combination** (worker side, in the enclave). :func:`open_partials` decrypts the
  releases and checks what they claim to be; :func:`combine_released_key` verifies each
  partial against its public share, combines ``t`` of them and checks the result against
  the group public key before deriving the key
  (:func:`sealbridge.crypto.threshold_prf.combine_contract_key`). A key that fails that
  check is never returned; a bad release is named by its index.
* **Rotation**. :meth:`ShareHolder.deal_reshare` deals this holder's share to a new
  committee (same secret, new shares); :meth:`ShareHolder.erase` then forgets the old
  share, after which every secret-using call raises :class:`ShareErased`.

The core is sans-I/O and pure: randomness is an input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sealbridge.core.encoding import encode
from sealbridge.core.errors import (
    ConfigError,
    DecryptionError,
    LocalProtocolError,
    RemoteProtocolError,
)
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.bls import KeyShare, PartialSignature
from sealbridge.crypto.dkg import (
    DealingCommitment,
    GroupPublicKeys,
    KeyShareResult,
    compute_reshare_dealing,
)
from sealbridge.crypto.threshold_prf import combine_contract_key, compute_partial
from sealbridge.keyservice.threshold_messages import PARTIAL_RELEASE_AAD_TAG, PartialKeyRelease

__all__ = [
    "BadRelease",
    "ShareErased",
    "ShareHolder",
    "combine_released_key",
    "compute_partial_release_aad",
    "open_partials",
]

RandomBytes = Callable[[int], bytes]
Decrypt = Callable[[bytes, bytes], bytes]  # (ciphertext, aad) -> plaintext


class ShareErased(LocalProtocolError):
    """The key share was erased (rotated out); it can no longer sign or deal."""

    code = "share_erased"


class BadRelease(RemoteProtocolError):
    """A partial key release that is not for us, does not decrypt, or is malformed."""

    code = "bad_release"

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"partial key release from holder {index!r} is bad: {reason}")
        self.index = index
        self.reason = reason


def compute_partial_release_aad(
    contract_id: bytes, worker_id: bytes, index: int, binding: bytes = b""
) -> bytes:
    """Associated data binding a released partial to contract, worker, share index and
    (for a worker) the contract's install facts (``binding``)."""
    fields: list[bytes | int] = [bytes(contract_id), bytes(worker_id), index]
    if binding:
        fields.append(bytes(binding))
    return PARTIAL_RELEASE_AAD_TAG + encode(fields)


class ShareHolder:
    """A gatekeeper's key share, erasable; signs partials and deals reshares."""

    def __init__(self, result: KeyShareResult) -> None:
        if not isinstance(result, KeyShareResult):
            raise ConfigError(f"expected a KeyShareResult, got {type(result).__name__}")
        public_share = result.public_shares.get(result.index)
        if public_share is None or bls.public_key(result.secret) != public_share:
            raise ConfigError("key share does not match its public share")
        self.index = result.index
        self.public: GroupPublicKeys = result.public
        self._secret: bytearray | None = bytearray(result.secret)

    @property
    def threshold(self) -> int:
        return self.public.threshold

    @property
    def group_public_key(self) -> bytes:
        return self.public.group_public_key

    @property
    def is_erased(self) -> bool:
        return self._secret is None

    def _key_share(self) -> KeyShare:
        if self._secret is None:
            raise ShareErased(f"key share {self.index} has been erased")
        return KeyShare(index=self.index, secret=bytes(self._secret))

    def compute_partial(self, contract_id: bytes) -> PartialSignature:
        """This holder's partial signature of ``contract_id``'s PRF message."""
        return compute_partial(self._key_share(), contract_id)

    def sign_message(self, message: bytes) -> PartialSignature:
        """This holder's partial BLS signature of ``message`` (the gateway committee's
        cross-chain messages; the IETF POP ciphersuite, like :func:`bls.partial_sign`)."""
        return bls.partial_sign(self._key_share(), message)

    def release_partial(
        self,
        contract_id: bytes,
        worker_id: bytes,
        worker_encryption_key: bytes,
        random_bytes: RandomBytes,
        binding: bytes = b"",
    ) -> PartialKeyRelease:
        """The partial for ``contract_id``, encrypted to the worker's attested X25519 key
        (bound to ``binding``: the install facts, for a worker)."""
        if not isinstance(worker_id, bytes | bytearray) or not worker_id:
            raise ConfigError("worker id must be non-empty bytes")
        partial = self.compute_partial(contract_id)
        seed = random_bytes(ecies.KEY_SIZE)
        if not isinstance(seed, bytes) or len(seed) != ecies.KEY_SIZE:
            raise ConfigError(f"random_bytes({ecies.KEY_SIZE}) returned the wrong length")
        ciphertext = ecies.encrypt_to(
            worker_encryption_key,
            partial.signature,
            compute_partial_release_aad(contract_id, worker_id, self.index, binding),
            ephemeral_seed=seed,
        )
        return PartialKeyRelease(
            contract_id=bytes(contract_id),
            worker_id=bytes(worker_id),
            index=self.index,
            ciphertext=ciphertext,
        )

    def deal_reshare(
        self, new_threshold: int, new_recipients: Sequence[int], randomness: bytes
    ) -> tuple[DealingCommitment, dict[int, bytes]]:
        """Deal this share (as the constant term) to a new committee."""
        return compute_reshare_dealing(self._key_share(), new_threshold, new_recipients, randomness)

    def export_result(self) -> KeyShareResult:
        """The share and its public side, for sealing to the enclave's measurement."""
        share = self._key_share()
        return KeyShareResult(
            index=share.index,
            threshold=self.public.threshold,
            secret=share.secret,
            group_public_key=self.public.group_public_key,
            shares=list(self.public.shares),
        )

    def erase(self) -> None:
        """Forget the key share (best effort: the buffer is zeroed, then dropped)."""
        if self._secret is not None:
            self._secret[:] = bytes(len(self._secret))
            self._secret = None


# --- worker side -------------------------------------------------------------------------------


def open_partials(
    releases: Sequence[PartialKeyRelease],
    decrypt: Decrypt,
    *,
    contract_id: bytes,
    worker_id: bytes,
    drop_bad: bool = False,
    binding: bytes = b"",
) -> list[PartialSignature]:
    """Decrypt partial releases addressed to ``worker_id`` for ``contract_id``.

    ``decrypt(ciphertext, aad)`` is the worker enclave's ECIES decryption (e.g.
    :meth:`sealbridge.crypto.ecies.Recipient.decrypt`). A release for another contract or
    worker, one that does not decrypt, or one whose plaintext is not a 96-byte signature
    raises :class:`BadRelease` naming its index (or is skipped with ``drop_bad``).
    """
    partials: list[PartialSignature] = []
    for release in releases:
        if not isinstance(release, PartialKeyRelease):
            raise ConfigError(f"expected PartialKeyRelease, got {type(release).__name__}")
        try:
            partials.append(_open(release, decrypt, contract_id, worker_id, binding))
        except BadRelease:
            if not drop_bad:
                raise
    return partials


def _open(
    release: PartialKeyRelease,
    decrypt: Decrypt,
    contract_id: bytes,
    worker_id: bytes,
    binding: bytes = b"",
) -> PartialSignature:
    if release.contract_id != contract_id:
        raise BadRelease(release.index, "released for another contract")
    if release.worker_id != worker_id:
        raise BadRelease(release.index, "released to another worker")
    aad = compute_partial_release_aad(contract_id, worker_id, release.index, binding)
    try:
        signature = decrypt(release.ciphertext, aad)
    except DecryptionError as exc:
        raise BadRelease(release.index, f"does not decrypt: {exc.message}") from exc
    if not isinstance(signature, bytes) or len(signature) != bls.SIGNATURE_SIZE:
        raise BadRelease(release.index, f"plaintext is not a {bls.SIGNATURE_SIZE}-byte signature")
    return PartialSignature(index=release.index, signature=signature)


def combine_released_key(
    releases: Sequence[PartialKeyRelease],
    decrypt: Decrypt,
    *,
    contract_id: bytes,
    worker_id: bytes,
    group: GroupPublicKeys,
    drop_bad: bool = False,
    optimistic: bool = False,
    binding: bytes = b"",
) -> bytes:
    """The contract key from ``group.threshold`` good releases (verified; see module doc)."""
    partials = open_partials(
        releases,
        decrypt,
        contract_id=contract_id,
        worker_id=worker_id,
        drop_bad=drop_bad,
        binding=binding,
    )
    return combine_contract_key(
        contract_id,
        partials,
        threshold=group.threshold,
        group_public_key=group.group_public_key,
        public_shares=group.public_shares,
        drop_bad=drop_bad,
        optimistic=optimistic,
    )
