"""InterTrust setup: gateway enclaves, attested cards, and threshold keys made in the enclave.

Theory of operation
-------------------
**Gateway enclaves.** A gateway is trusted code: :class:`SimGatewayTee` is what the sim TEE
backend gives an enclave (:class:`~sealbridge.tee.enclave.EnclaveContext`), built in
process so that a simulation is reproducible: an identity -- Ed25519 identity key, X25519
encryption key, secp256k1 key -- derived from a *sealed identity seed* (a restarted
gateway unseals the same identity, as ``EnclaveContext`` does from its sealed-identity
file), enclave randomness from an injected ``random_bytes``, and simulated quotes signed
by the simulated platform key over :func:`~sealbridge.tee.enclave.compute_report_data` of
the identity (:func:`~sealbridge.tee.quote.compute_sim_quote`). The measurement is
:func:`~sealbridge.tee.measurement.compute_sim_measurement` of
:data:`GATEWAY_PROGRAM`: any change to the gateway's code changes it.

**Cards.** A gateway introduces itself with a :class:`~.messages.GatewayCard`: its AS's
configuration (:class:`~.messages.AsProfile`: replica ids, their attestation and
encryption keys, ``f``, the AS's gateways), its node keys, a fresh quote, all signed with
its identity key. :func:`verify_gateway_card` is what the peer does before it trusts anything
from that gateway: the quote verifies under the (devnet) policy at ``now`` -- platform
key, measurement, freshness -- and binds exactly these node keys; the identity key signed
the card; the card describes the AS expected.

**Threshold keys** (:func:`generate_key_grant`). Gateway ``G_B`` makes the key with which
the replicas of the *other* AS ``A`` will sign attestations that ``G_B`` and ``B``'s chain
check. Inside the enclave and from enclave randomness it deals an
``(f_A + 1)``-of-``n_A`` BLS key (Shamir over the scalar field), encrypts share ``i`` to
replica ``i``'s X25519 key (ECIES, with the key id and index as associated data), signs a
:class:`~sealbridge.consensus.ledger.KeyEndorsement` of the group public key, and forgets
the group secret: only public parts and ciphertexts leave.

Why not the public transaction hash as the seed (as InterTrust suggests for
per-transaction keys)? The dealing is a deterministic function of its seed. Anyone who
knows the transaction -- every replica, the user, any observer of the chain -- could run
the same dealing, obtain every share and the group secret, and sign "LOCKED" or "PAID"
for that very transaction without any replica: the threshold would protect nothing.
The seed must be secret and unpredictable, so it comes from the enclave's random source
and never leaves the enclave.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum

from sealbridge.consensus.ledger import (
    KeyEndorsement,
    compute_endorsement_message,
    compute_key_id,
)
from sealbridge.core.errors import (
    ConfigError,
    DecryptionError,
    EncodingError,
    InvalidSignature,
)
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.bls import KeyShare
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.signing import (
    ed25519_public,
    ed25519_sign,
    ed25519_verify,
    eth_address,
    secp256k1_public,
)
from sealbridge.interop.errors import BadKey, BadQuote, InteropConfigError, MalformedInterop
from sealbridge.interop.messages import (
    AsProfile,
    GatewayCard,
    KeyGrant,
    ShareDelivery,
    compute_card_message,
    compute_share_aad,
)
from sealbridge.tee.card import verify_attested_card
from sealbridge.tee.enclave import NodeKeys, compute_report_data
from sealbridge.tee.errors import AttestationError
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import AttestationPolicy
from sealbridge.tee.quote import compute_sim_quote

__all__ = [
    "GATEWAY_PROGRAM",
    "KeyMode",
    "SimGatewayTee",
    "check_key_grant",
    "derive_seed",
    "generate_key_grant",
    "get_gateway_measurement",
    "make_card",
    "open_share",
    "verify_gateway_card",
]

GATEWAY_PROGRAM = "sealbridge.interop.gateway:Gateway"
RandomBytes = Callable[[int], bytes]


class KeyMode(StrEnum):
    """How interop threshold keys are made."""

    PER_TX = "per_tx"  # InterTrust: fresh shares generated and distributed for every transfer
    EPOCH = "epoch"  # one key per (generating gateway, epoch), reused across transfers


def derive_seed(seed: bytes, label: str, length: int = 32) -> bytes:
    """A sub-seed for ``label`` (HKDF-SHA256): independent keys from one scenario seed."""
    return derive_key(bytes(seed), f"sealbridge/interop/seed/{label}", length=length)


@functools.cache
def get_gateway_measurement() -> bytes:
    """The sim measurement of the gateway program (computed once per process)."""
    return compute_sim_measurement(GATEWAY_PROGRAM)


class SimGatewayTee:
    """The enclave services of one gateway, in process (see the module docstring).

    ``identity_seed`` stands for the sealed identity: the same seed, the same keys.
    """

    def __init__(
        self,
        *,
        identity_seed: bytes,
        platform_private_key: bytes,
        measurement: bytes,
        random_bytes: RandomBytes,
    ) -> None:
        if not isinstance(identity_seed, bytes) or len(identity_seed) < 32:
            raise InteropConfigError("identity seed must be at least 32 bytes")
        self._identity_seed = derive_seed(identity_seed, "identity/ed25519")
        self._encryption_seed = derive_seed(identity_seed, "identity/x25519")
        eth_private = derive_seed(identity_seed, "identity/secp256k1")
        self._platform_private_key = bytes(platform_private_key)
        self.measurement = bytes(measurement)
        self._random_bytes = random_bytes
        self.node_keys = NodeKeys(
            identity_key=ed25519_public(self._identity_seed),
            encryption_key=ecies.x25519_public(self._encryption_seed),
            eth_address=eth_address(secp256k1_public(eth_private)),
        )

    @property
    def identity_key(self) -> bytes:
        return self.node_keys.identity_key

    def random_bytes(self, n: int) -> bytes:
        """Enclave randomness (injected: the simulation's seeded source)."""
        if n < 0:
            raise ConfigError("random_bytes needs n >= 0")
        data = self._random_bytes(n)
        if not isinstance(data, bytes) or len(data) != n:
            raise InteropConfigError("random_bytes returned the wrong number of bytes")
        return data

    def get_quote(self, now: float) -> bytes:
        """A simulated quote binding this enclave's node keys, dated ``now``."""
        return compute_sim_quote(
            self._platform_private_key,
            measurement=self.measurement,
            report_data=compute_report_data(self.node_keys),
            timestamp=int(now),
        )

    def sign_identity(self, message: bytes) -> bytes:
        return ed25519_sign(self._identity_seed, bytes(message))


# --- cards -------------------------------------------------------------------------------------


def make_card(
    tee: SimGatewayTee, *, node_id: int, incarnation: int, profile: AsProfile, now: float
) -> GatewayCard:
    """This gateway's signed, attested card."""
    card = GatewayCard(
        node_id=node_id,
        incarnation=incarnation,
        profile=profile,
        node=tee.node_keys,
        quote=tee.get_quote(now),
    )
    return GatewayCard(
        node_id=card.node_id,
        incarnation=card.incarnation,
        profile=card.profile,
        node=card.node,
        quote=card.quote,
        signature=tee.sign_identity(compute_card_message(card)),
    )


def _check_profile(profile: object) -> AsProfile:
    if not isinstance(profile, AsProfile):
        raise MalformedInterop("a card carries an AsProfile")
    n = len(profile.replica_ids)
    if (
        n < 1
        or type(profile.f) is not int
        or not 0 <= profile.f
        or n < 3 * profile.f + 1
        or len(profile.replica_identity_keys) != n
        or len(profile.replica_encryption_keys) != n
        or len(profile.gateway_ids) != len(profile.gateway_keys)
        or not all(isinstance(k, bytes) and len(k) == 32 for k in profile.replica_encryption_keys)
    ):
        raise MalformedInterop("inconsistent AS profile")
    return profile


def verify_gateway_card(
    card: object,
    *,
    sender: int,
    policy: AttestationPolicy,
    now: float,
    expected_as: int,
) -> GatewayCard:
    """Return the card if a gateway of ``expected_as`` may be trusted by it; raise
    :class:`BadQuote` / :class:`MalformedInterop` otherwise (see the module docstring)."""
    if not isinstance(card, GatewayCard) or not isinstance(card.node, NodeKeys):
        raise MalformedInterop("not a gateway card")
    if card.node_id != sender:
        raise MalformedInterop(f"card of node {card.node_id!r} sent by node {sender}")
    profile = _check_profile(card.profile)
    if profile.as_id != expected_as:
        raise MalformedInterop(f"card of AS {profile.as_id!r}, expected AS {expected_as}")
    if card.node.identity_key not in profile.gateway_keys:
        raise MalformedInterop("the gateway is not one of its AS's gateways")
    try:
        verify_attested_card(card, policy=policy, now=now)
    except AttestationError as exc:
        raise BadQuote(f"quote refused: {exc.message}") from exc
    try:
        ed25519_verify(card.node.identity_key, compute_card_message(card), card.signature)
    except (InvalidSignature, EncodingError) as exc:
        raise BadQuote("card signature does not verify") from exc
    return card


# --- threshold keys ----------------------------------------------------------------------------


def generate_key_grant(profile: AsProfile, scope: bytes, tee: SimGatewayTee) -> KeyGrant:
    """Deal an ``(f + 1)``-of-``n`` key for ``profile``'s replicas inside the enclave, from
    enclave randomness; encrypt each share to its replica; endorse the public key."""
    profile = _check_profile(profile)
    key_set = bls.deal_threshold_key(profile.threshold, profile.n, randomness=tee.random_bytes(64))
    key_id = compute_key_id(profile.as_id, key_set.group_public_key, scope)
    shares = [
        ecies.encrypt_to(
            profile.replica_encryption_keys[i],
            share.secret,
            compute_share_aad(key_id, share.index),
            ephemeral_seed=tee.random_bytes(32),
        )
        for i, share in enumerate(key_set.shares)
    ]
    endorsement = KeyEndorsement(
        key_id=key_id,
        signer_as=profile.as_id,
        threshold=profile.threshold,
        group_public_key=key_set.group_public_key,
        scope=bytes(scope),
        gateway=tee.identity_key,
    )
    signed = KeyEndorsement(
        key_id=endorsement.key_id,
        signer_as=endorsement.signer_as,
        threshold=endorsement.threshold,
        group_public_key=endorsement.group_public_key,
        scope=endorsement.scope,
        gateway=endorsement.gateway,
        signature=tee.sign_identity(compute_endorsement_message(endorsement)),
    )
    public_shares = list(key_set.public_shares)
    del key_set  # the group secret and the plaintext shares stay here (in the enclave)
    return KeyGrant(endorsement=signed, public_shares=public_shares, shares=shares)


def check_key_grant(grant: object, *, profile: AsProfile, generator: bytes) -> KeyGrant:
    """Return ``grant`` if it is a well-formed key for ``profile``'s replicas, endorsed by
    the gateway whose identity key is ``generator``; raise :class:`BadKey` otherwise."""
    if not isinstance(grant, KeyGrant) or not isinstance(grant.endorsement, KeyEndorsement):
        raise MalformedInterop("not a key grant")
    key = grant.endorsement
    if key.signer_as != profile.as_id or key.threshold != profile.threshold:
        raise BadKey("key grant for another AS or threshold")
    if len(grant.public_shares) != profile.n or len(grant.shares) != profile.n:
        raise BadKey(f"key grant must have {profile.n} shares")
    if key.gateway != generator:
        raise BadKey("key grant endorsed by a gateway other than its sender")
    try:
        if key.key_id != compute_key_id(key.signer_as, key.group_public_key, key.scope):
            raise BadKey("key id does not match the key")
        ed25519_verify(key.gateway, compute_endorsement_message(key), key.signature)
    except (InvalidSignature, EncodingError) as exc:
        raise BadKey("key endorsement does not verify") from exc
    return grant


def open_share(delivery: ShareDelivery, recipient: ecies.Recipient, index: int) -> KeyShare:
    """Decrypt this replica's share and check it against its public share; :class:`BadKey`
    if it does not open or does not match."""
    if delivery.index != index:
        raise BadKey(f"share {delivery.index!r} delivered to the holder of share {index}")
    aad = compute_share_aad(delivery.endorsement.key_id, index)
    try:
        secret = recipient.decrypt(delivery.ciphertext, aad)
        public = bls.public_key(secret)
    except (DecryptionError, ConfigError) as exc:
        raise BadKey(f"share does not open: {exc.message}") from exc
    if public != delivery.public_share:
        raise BadKey("share does not match its public share")
    return KeyShare(index=index, secret=secret)
