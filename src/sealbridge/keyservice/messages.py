"""Messages of the key service (gatekeeper role).

* ``RegistrationRequest`` -> ``RegistrationApproval``: a node asks an attested gatekeeper
  to vouch for its quote; the approval is a secp256k1 signature the NodeRegistry checks.
* ``PublishKeyRequest`` (+ peers' partials) -> ``PublishedContractKey``: on a deployment
  the contract's gatekeeper combines the contract key from ``t`` partials and returns what
  goes on chain (public keys and a signature; ``wrapped_key`` is empty -- there is no root
  key to wrap it under).
* ``KeyRequest`` + ``ChainFacts`` -> ``PartialKeyRelease``: a worker (or the publishing
  gatekeeper) asks for a version of a contract key; each gatekeeper re-verifies the
  requester's quote and releases its partial signature encrypted to the requester's
  attested key. Versions: the current one; the one before it only while no checkpoint
  sealed under the current one is recorded (a lagging worker still has to replay up to
  the rotation); the next one only to the contract's gatekeeper while a rotation is
  pending (it publishes it). Any older version is refused: it is gone.
"""

from __future__ import annotations

from sealbridge.core.encoding import Message, encode
from sealbridge.tee.enclave import EnclaveContext, NodeKeys

KEY_REQUEST_SIGN_TAG = b"sealbridge/key-request/v1"


class RegistrationRequest(Message, frozen=True):
    role: int
    node: NodeKeys
    quote: bytes
    expiry: int
    chain_id: int
    registry_address: str
    collateral: bytes = b""  # a DCAP quote's collateral (Intel PCS/PCCS JSON); sim: empty


class RegistrationApproval(Message, frozen=True):
    attestor_id: bytes
    measurement: bytes
    quote_hash: bytes
    expiry: int
    signature: bytes  # 65 bytes, r||s||v, over the NodeRegistry digest


class PublishKeyRequest(Message, frozen=True):
    contract_id: bytes
    chain_id: int
    contract_registry_address: str
    version: int = 0  # above 0: a rotation (signed for ContractRegistry.rotate_contract_key)


class PublishedContractKey(Message, frozen=True):
    contract_id: bytes
    contract_public_key: bytes
    message_key: bytes  # Ed25519 key that verifies the contract's outgoing messages
    wrapped_key: bytes
    signature: bytes
    version: int = 0


class KeyRequestBody(Message, frozen=True):
    contract_id: bytes
    worker_id: bytes
    issued_at: int
    version: int = 0  # the version of the contract key asked for


class KeyRequest(Message, frozen=True):
    body: bytes  # canonical KeyRequestBody
    signature: bytes  # by the worker's enclave identity key
    node: NodeKeys
    quote: bytes


class ChainFacts(Message, frozen=True):
    """What the gatekeeper's host read from the chain about a key request."""

    worker_active: bool
    worker_assigned: bool
    key_published: bool
    # the requester is an active gatekeeper, the one the contract names (it needs the key
    # to publish the contract's public keys)
    requester_is_publisher: bool = False
    key_version: int = 0  # the contract's current key version
    rotation_pending: bool = False  # the deployer asked for version key_version + 1
    # no checkpoint sealed under the current version is recorded yet, so the previous
    # version is still released (workers behind the rotation need it to replay up to it)
    previous_version_open: bool = False
    # the contract's install facts as the chain records them (compute_install_binding):
    # a worker's release is bound to them (empty: the contract is not registered)
    install_binding: bytes = b""
    # the registry names other node keys for the requester than its request's quote binds
    # (keys retired by a renewal over fresh keys, restored from an old sealed identity)
    requester_keys_retired: bool = False


def make_key_request(
    ctx: EnclaveContext, contract_id: bytes, issued_at: int, version: int = 0
) -> KeyRequest:
    """A key request of the enclave ``ctx`` (a worker, or a gatekeeper that publishes):
    signed with its identity key, with a fresh quote binding its keys."""
    body = encode(
        KeyRequestBody(
            contract_id=contract_id,
            worker_id=ctx.identity.identity_key,
            issued_at=issued_at,
            version=version,
        )
    )
    return KeyRequest(
        body=body,
        signature=ctx.sign_identity(KEY_REQUEST_SIGN_TAG + body),
        node=ctx.identity,
        quote=ctx.get_identity_quote(),
    )
