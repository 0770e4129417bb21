"""The per-contract key schedule.

The gatekeeper committee derives one 32-byte contract key per contract (a threshold PRF of
the root secret, see :mod:`sealbridge.crypto.threshold_prf`). Every other
key of the contract comes from that contract key, so any executor holding it derives the
same set (RaceTEE's dual-layer encryption):

* the user layer: an X25519 key pair; users encrypt commands to its public key;
* the state layer: an AES-256-GCM key sealing state at rest and checkpoints;
* an Ed25519 key pair signing the contract's asynchronous messages to other contracts
  (its public half is published on chain with the command key);
* a salt that makes state roots commitments rather than plain hashes, so that a short
  state (a few balances) cannot be guessed from its root.

A contract key has versions (key rotation). Version ``v`` is the PRF of
:func:`compute_key_id` ``(contract_id, v)``: the contract id itself for version 0, a
tagged hash of the id and the version after that. Every key above is derived from the
version's key, so a rotation changes all of them (and with the salt, the state root of an
unchanged state).
"""

from __future__ import annotations

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError
from sealbridge.core.ids import tagged_hash
from sealbridge.crypto.ecies import x25519_keypair
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.signing import ed25519_keypair

KEY_RELEASE_AAD_TAG = b"sealbridge/key-release/v1"
KEY_VERSION_TAG = "sealbridge/contract-key-version/v1"
MAX_KEY_VERSION = 2**63 - 1


class ContractKeys(Message, frozen=True):
    contract_id: bytes
    command_private_key: bytes  # X25519, user layer
    command_public_key: bytes
    state_key: bytes  # AES-256-GCM, state layer
    root_salt: bytes
    message_private_key: bytes  # Ed25519 seed, signs outgoing messages
    message_public_key: bytes


def compute_contract_keys(contract_id: bytes, contract_key: bytes) -> ContractKeys:
    seed = derive_key(contract_key, "sealbridge/command-x25519/v1", salt=contract_id)
    private, public = x25519_keypair(seed)
    message_private, message_public = ed25519_keypair(
        derive_key(contract_key, "sealbridge/message-ed25519/v1", salt=contract_id)
    )
    return ContractKeys(
        contract_id=contract_id,
        command_private_key=private,
        command_public_key=public,
        state_key=derive_key(contract_key, "sealbridge/state-key/v1", salt=contract_id),
        root_salt=derive_key(contract_key, "sealbridge/state-root-salt/v1", salt=contract_id),
        message_private_key=message_private,
        message_public_key=message_public,
    )


def key_release_aad(contract_id: bytes, worker_id: bytes) -> bytes:
    """Binds a released contract key to the contract and the attested worker."""
    return KEY_RELEASE_AAD_TAG + contract_id + worker_id


def compute_key_id(contract_id: bytes, version: int) -> bytes:
    """The PRF input of version ``version`` of a contract's key (the id itself for 0)."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"key version must be an int, got {type(version).__name__}")
    if not 0 <= version <= MAX_KEY_VERSION:
        raise ConfigError(f"key version {version} is out of range")
    if version == 0:
        return bytes(contract_id)
    return tagged_hash(KEY_VERSION_TAG, bytes(contract_id) + version.to_bytes(8, "big"))
