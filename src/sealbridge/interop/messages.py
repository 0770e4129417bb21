"""Messages of the InterTrust cross-chain protocol (see :mod:`sealbridge.interop.gateway`).

All are frozen msgspec Structs; the ones that travel carry a ``type`` tag so that
:data:`InteropMessage` decodes from canonical bytes. Node ids are the driver's (channel
authenticated); what must survive a hop is signed.

Setup (gateway <-> gateway of the other AS)
  :class:`Hello`          a :class:`GatewayCard`: the AS configuration (:class:`AsProfile`),
                          the gateway's enclave keys, a quote binding them, signed with the
                          identity key; ``answer`` asks the peer for its own card back
  :class:`KeyAsk`         "generate (or give me) a threshold key for my AS's replicas";
                          ``scope`` empty: the epoch key, else the transfer id (per-tx)
  :class:`KeyGrant`       the endorsed public key, public shares and every share ECIES-
                          encrypted to its replica's X25519 key

Gateway -> own replicas
  :class:`ShareDelivery`  one encrypted share to the replica that can open it
  :class:`AttestRequest`  "attest the state of T on your committed ledger" (``key_id``
                          empty: report the state only)
  :class:`ScanRequest`    "which transfers are LOCKED on your ledger?" (recovery)
  consensus ``Request``   the cross-chain ledger operations (CrossLock, CrossPay, ...)

Replica -> its gateway
  :class:`AttestReply`    the state, a share of the threshold signature (when the state
                          is attestable and the key known), signed with the replica's own
                          Ed25519 key; ``missing_key`` asks for the share delivery again
  :class:`ScanReply`      the LOCKED transfers
  consensus ``Reply``     the outcome of each operation

Transfer (source gateway <-> destination gateway)
  :class:`TransferRequest`  user -> source gateway
  :class:`Forward`          T with sigma_A(LOCKED)
  :class:`AbortAsk`         T: "the deadline passed (or the lock failed): refuse it if you can"
  :class:`Settled`          T with sigma_B(PAID) or sigma_B(REFUSED)
"""

from __future__ import annotations

import msgspec

from sealbridge.consensus.ledger import CrossCertificate, CrossState, CrossTransfer, KeyEndorsement
from sealbridge.core.encoding import Message
from sealbridge.core.ids import hash_message
from sealbridge.crypto.bls import PartialSignature
from sealbridge.tee.card import AttestedCard

__all__ = [
    "AbortAsk",
    "AsProfile",
    "AttestReply",
    "AttestRequest",
    "Forward",
    "GatewayCard",
    "Hello",
    "InteropMessage",
    "KeyAsk",
    "KeyGrant",
    "ScanReply",
    "ScanRequest",
    "Settled",
    "ShareDelivery",
    "TransferRequest",
    "compute_card_message",
    "compute_reply_message",
    "compute_share_aad",
]

CARD_TAG = "sealbridge/interop/gateway-card/v1"
REPLY_TAG = "sealbridge/interop/attest-reply/v1"
SHARE_AAD_TAG = b"sealbridge/interop/share/v1"


class AsProfile(Message, frozen=True):
    """The configuration of one autonomous system that its gateways hand to the other AS.

    Replica ``i`` has node id ``replica_ids[i]``, holds interop share ``i + 1``, signs
    attestations with ``replica_identity_keys[i]`` (Ed25519) and receives its shares
    encrypted to ``replica_encryption_keys[i]`` (X25519). ``gateway_keys`` are the identity
    keys of the AS's own gateways (the ones its ledger trusts).
    """

    as_id: int
    f: int
    replica_ids: list[int]
    replica_identity_keys: list[bytes]
    replica_encryption_keys: list[bytes]
    gateway_ids: list[int]
    gateway_keys: list[bytes]

    @property
    def n(self) -> int:
        return len(self.replica_ids)

    @property
    def threshold(self) -> int:
        """Shares an interop signature needs: ``f + 1``, so at least one honest replica."""
        return self.f + 1

    def get_index(self, node_id: int) -> int | None:
        try:
            return self.replica_ids.index(node_id)
        except ValueError:
            return None


class GatewayCard(AttestedCard, frozen=True):
    """A gateway introduces itself: ``quote`` binds ``node`` (report data), the
    identity key signs the rest (:func:`compute_card_message`)."""

    node_id: int
    incarnation: int
    profile: AsProfile
    signature: bytes = b""


class Hello(Message, frozen=True, tag="interop.hello"):
    card: GatewayCard
    answer: bool


class TransferRequest(Message, frozen=True, tag="interop.transfer_request"):
    transfer: CrossTransfer


class KeyAsk(Message, frozen=True, tag="interop.key_ask"):
    signer_as: int
    scope: bytes


class KeyGrant(Message, frozen=True, tag="interop.key_grant"):
    """``shares[i]`` is share ``i + 1`` encrypted to replica ``i`` of ``endorsement.signer_as``."""

    endorsement: KeyEndorsement
    public_shares: list[bytes]
    shares: list[bytes]


class ShareDelivery(Message, frozen=True, tag="interop.share_delivery"):
    endorsement: KeyEndorsement
    index: int  # share index, 1-based (replica index + 1)
    public_share: bytes
    ciphertext: bytes


class AttestRequest(Message, frozen=True, tag="interop.attest_request"):
    transfer: CrossTransfer
    key_id: bytes


class AttestReply(Message, frozen=True, tag="interop.attest_reply"):
    as_id: int
    transfer_id: bytes
    key_id: bytes
    state: CrossState | None
    share: PartialSignature | None
    missing_key: bool
    signature: bytes = b""  # the replica's Ed25519 signature (compute_reply_message)


class ScanRequest(Message, frozen=True, tag="interop.scan_request"):
    as_id: int
    nonce: int


class ScanReply(Message, frozen=True, tag="interop.scan_reply"):
    as_id: int
    nonce: int
    transfers: list[CrossTransfer]


class Forward(Message, frozen=True, tag="interop.forward"):
    transfer: CrossTransfer
    certificate: CrossCertificate


class AbortAsk(Message, frozen=True, tag="interop.abort_ask"):
    transfer: CrossTransfer


class Settled(Message, frozen=True, tag="interop.settled"):
    transfer: CrossTransfer
    certificate: CrossCertificate


InteropMessage = (
    Hello
    | TransferRequest
    | KeyAsk
    | KeyGrant
    | ShareDelivery
    | AttestRequest
    | AttestReply
    | ScanRequest
    | ScanReply
    | Forward
    | AbortAsk
    | Settled
)


def compute_card_message(card: GatewayCard) -> bytes:
    """What a gateway's identity key signs in its card (everything but the signature)."""
    return hash_message(CARD_TAG, msgspec.structs.replace(card, signature=b""))


def compute_reply_message(reply: AttestReply) -> bytes:
    """What a replica's own key signs in an attestation reply."""
    return hash_message(REPLY_TAG, msgspec.structs.replace(reply, signature=b""))


def compute_share_aad(key_id: bytes, index: int) -> bytes:
    """Associated data of an encrypted share: it opens only as share ``index`` of that key."""
    return SHARE_AAD_TAG + bytes(key_id) + int(index).to_bytes(4, "big")
