"""ABI helpers and the digests the management contracts verify.

Theory of operation: every message a TEE signs for the chain is the Keccak-256 of the
Solidity ABI encoding (``abi_encode`` in Vyper, ``eth_abi.encode`` here) of a tuple that
starts with the verifying contract's address and the chain id, so a signature is bound
to one deployment on one chain and cannot be replayed elsewhere. The digest is signed
raw (no EIP-191 prefix) with the enclave's secp256k1 key as ``r || s || v`` (65 bytes,
``v`` in {27, 28}; 0/1 are accepted too), and the contract checks
``ecrecover(digest, v, r, s)`` against the enclave address stored in the NodeRegistry.

:class:`AbiCodec` turns one contract's JSON ABI into encoders/decoders for calls and
events without going through web3's ``Contract`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_keys import datatypes as keys
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak as _keccak
from eth_utils.exceptions import ValidationError

from sealbridge.chain.errors import ChainConfigError, ChainError
from sealbridge.core.errors import InvalidSignature

SIGNATURE_SIZE = 65
KEY_ROTATION_TAG = bytes(_keccak(b"sealbridge/contract-key-rotation/v1"))


class Role(IntEnum):
    """Node roles in the NodeRegistry."""

    GATEKEEPER = 1
    WORKER = 2
    STORAGE = 3
    GATEWAY = 4


def _b32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ChainConfigError(f"{what} must be 32 bytes")
    return bytes(value)


def compute_registration_digest(
    *,
    registry: str,
    chain_id: int,
    role: int,
    identity_key: bytes,
    encryption_key: bytes,
    enclave_address: str,
    quote_hash: bytes,
    measurement: bytes,
    expiry: int,
) -> bytes:
    """Digest an attestor's enclave signs to approve a node (NodeRegistry.register)."""
    return bytes(
        _keccak(
            abi_encode(
                [
                    "address",
                    "uint256",
                    "uint8",
                    "bytes32",
                    "bytes32",
                    "address",
                    "bytes32",
                    "bytes32",
                    "uint256",
                ],
                [
                    to_checksum_address(registry),
                    chain_id,
                    int(role),
                    _b32(identity_key, "identity_key"),
                    _b32(encryption_key, "encryption_key"),
                    to_checksum_address(enclave_address),
                    _b32(quote_hash, "quote_hash"),
                    _b32(measurement, "measurement"),
                    expiry,
                ],
            )
        )
    )


def compute_key_rotation_digest(
    *,
    contract_registry: str,
    chain_id: int,
    contract_id: bytes,
    version: int,
    contract_public_key: bytes,
    message_key: bytes,
) -> bytes:
    """Digest a gatekeeper's enclave signs to publish version ``version`` of a contract's
    key (ContractRegistry.rotate_contract_key)."""
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "bytes32", "uint256", "bytes32", "bytes32"],
                [
                    to_checksum_address(contract_registry),
                    chain_id,
                    KEY_ROTATION_TAG,
                    _b32(contract_id, "contract_id"),
                    version,
                    _b32(contract_public_key, "contract_public_key"),
                    _b32(message_key, "message_key"),
                ],
            )
        )
    )


def compute_contract_key_digest(
    *,
    contract_registry: str,
    chain_id: int,
    contract_id: bytes,
    contract_public_key: bytes,
    message_key: bytes,
    wrapped_key: bytes,
) -> bytes:
    """Digest a gatekeeper's enclave signs to publish a contract key."""
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "bytes32", "bytes32", "bytes32"],
                [
                    to_checksum_address(contract_registry),
                    chain_id,
                    _b32(contract_id, "contract_id"),
                    _b32(contract_public_key, "contract_public_key"),
                    _b32(message_key, "message_key"),
                    bytes(_keccak(bytes(wrapped_key))),
                ],
            )
        )
    )


OUTPUT_TAG = bytes(_keccak(b"sealbridge/execution-output/v1"))
STORAGE_TAG = bytes(_keccak(b"sealbridge/checkpoint-stored/v1"))
STORAGE_ID_TAG = b"sealbridge/storage-node/v1"
STORAGE_REGISTRATION_TAG = bytes(_keccak(b"sealbridge/storage-registration/v1"))


def compute_execution_digest(
    *,
    ledger: str,
    chain_id: int,
    contract_ids: Sequence[bytes],
    starts: Sequence[int],
    end: int,
    end_hash: bytes,
    state_roots: Sequence[bytes],
    commands_applied: Sequence[int],
    checkpoint_hash: bytes,
    checkpoint_size: int,
) -> bytes:
    """Digest a worker's enclave signs to submit outputs (ExecutionLedger.submit): the
    range (start, end] of each contract, the end block's hash, each contract's state root
    and total command count at ``end``, and the checkpoint taken there (zero hash: none)."""
    return bytes(
        _keccak(
            abi_encode(
                [
                    "address",
                    "uint256",
                    "bytes32",
                    "bytes32[]",
                    "uint256[]",
                    "uint256",
                    "bytes32",
                    "bytes32[]",
                    "uint256[]",
                    "bytes32",
                    "uint256",
                ],
                [
                    to_checksum_address(ledger),
                    chain_id,
                    OUTPUT_TAG,
                    [_b32(c, "contract_id") for c in contract_ids],
                    list(starts),
                    end,
                    _b32(end_hash, "end_hash"),
                    [_b32(r, "state_root") for r in state_roots],
                    list(commands_applied),
                    _b32(checkpoint_hash, "checkpoint_hash"),
                    checkpoint_size,
                ],
            )
        )
    )


def compute_storage_digest(*, ledger: str, chain_id: int, blob_hash: bytes, size: int) -> bytes:
    """Digest a storage node signs to confirm it durably holds a checkpoint blob."""
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "bytes32", "uint256"],
                [
                    to_checksum_address(ledger),
                    chain_id,
                    STORAGE_TAG,
                    _b32(blob_hash, "blob_hash"),
                    size,
                ],
            )
        )
    )


def compute_storage_node_id(signer: str) -> bytes:
    """A storage node's id: derived from its signing address (NodeRegistry checks it)."""
    return bytes(_keccak(STORAGE_ID_TAG + to_canonical_address(signer)))


def compute_storage_registration_digest(
    *, registry: str, chain_id: int, node_id: bytes, owner: str, expiry: int
) -> bytes:
    """Digest a storage node's key signs to prove possession (register_storage)."""
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "bytes32", "address", "uint256"],
                [
                    to_checksum_address(registry),
                    chain_id,
                    STORAGE_REGISTRATION_TAG,
                    _b32(node_id, "node_id"),
                    to_checksum_address(owner),
                    expiry,
                ],
            )
        )
    )


DEALING_TAG = bytes(_keccak(b"sealbridge/committee-dealing/v1"))
READY_TAG = bytes(_keccak(b"sealbridge/committee-ready/v1"))


def compute_dealing_digest(
    *,
    committee: str,
    chain_id: int,
    era: int,
    dealer_id: bytes,
    commitments: Sequence[bytes],
    shares: Sequence[bytes],
) -> bytes:
    """Digest a dealer's enclave signs for GatekeeperCommittee.post_dealing."""
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "uint256", "bytes32", "bytes32", "bytes32"],
                [
                    to_checksum_address(committee),
                    chain_id,
                    DEALING_TAG,
                    era,
                    _b32(dealer_id, "dealer_id"),
                    bytes(_keccak(abi_encode(["bytes[]"], [list(commitments)]))),
                    bytes(_keccak(abi_encode(["bytes[]"], [list(shares)]))),
                ],
            )
        )
    )


def compute_ready_digest(
    *,
    committee: str,
    chain_id: int,
    era: int,
    member_id: bytes,
    group_public_key: bytes,
    qualified: Sequence[bytes],
) -> bytes:
    """Digest a member's enclave signs for GatekeeperCommittee.confirm_ready."""
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "uint256", "bytes32", "bytes32", "bytes32[]"],
                [
                    to_checksum_address(committee),
                    chain_id,
                    READY_TAG,
                    era,
                    _b32(member_id, "member_id"),
                    bytes(_keccak(group_public_key)),
                    [_b32(q, "qualified") for q in qualified],
                ],
            )
        )
    )


HEARTBEAT_TAG = bytes(_keccak(b"sealbridge/heartbeat/v1"))
HEARTBEAT_SLOTS = 8  # NodeRegistry: heartbeat slots per era
MAX_ERA = 2**64 - 1


def compute_heartbeat_digest(
    *, registry: str, chain_id: int, node_id: bytes, era: int, slot: int
) -> bytes:
    """Digest a node's enclave (a storage node's signing key) signs for one heartbeat
    (NodeRegistry.heartbeat). Refuses a slot outside 0..7 and an era or chain id outside
    64 bits: with every field this small, the encoding cannot double as another digest
    the same key signs (for example the contract-key digest, whose last word is a hash),
    so a host cannot turn a heartbeat request into a signature of anything else."""
    if not 0 <= slot < HEARTBEAT_SLOTS:
        raise ChainConfigError(f"heartbeat slot must be in 0..{HEARTBEAT_SLOTS - 1}, not {slot}")
    if not 0 <= era <= MAX_ERA:
        raise ChainConfigError(f"heartbeat era out of range: {era}")
    if not 0 < chain_id <= MAX_ERA:
        raise ChainConfigError(f"chain id out of range: {chain_id}")
    return bytes(
        _keccak(
            abi_encode(
                ["address", "uint256", "bytes32", "bytes32", "uint256", "uint256"],
                [
                    checksum(registry),
                    chain_id,
                    HEARTBEAT_TAG,
                    _b32(node_id, "node_id"),
                    era,
                    slot,
                ],
            )
        )
    )


def compute_address(private_key: bytes) -> str:
    """Checksummed Ethereum address of a secp256k1 private key."""
    try:
        return str(keys.PrivateKey(bytes(private_key)).public_key.to_checksum_address())
    except ValidationError as exc:
        raise ChainConfigError(f"invalid secp256k1 private key: {exc}") from exc


def sign_digest(digest: bytes, private_key: bytes) -> bytes:
    """Sign a 32-byte digest raw; return ``r || s || v`` with ``v`` in {27, 28}."""
    _b32(digest, "digest")
    try:
        sig = keys.PrivateKey(bytes(private_key)).sign_msg_hash(digest)
    except ValidationError as exc:
        raise ChainConfigError(f"invalid secp256k1 private key: {exc}") from exc
    r, s, v = int(sig.r), int(sig.s), int(sig.v)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v + 27])


def recover_signer(digest: bytes, signature: bytes) -> str:
    """Checksummed address that produced ``signature`` over ``digest``."""
    _b32(digest, "digest")
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature(f"signature must be {SIGNATURE_SIZE} bytes")
    v = signature[64]
    v = v - 27 if v >= 27 else v
    try:
        sig = keys.Signature(
            vrs=(v, int.from_bytes(signature[:32]), int.from_bytes(signature[32:64]))
        )
        return str(sig.recover_public_key_from_msg_hash(digest).to_checksum_address())
    except (BadSignature, ValidationError) as exc:
        raise InvalidSignature(f"cannot recover signer: {exc}") from exc


# --------------------------------------------------------------------------- codec


def abi_type(param: dict[str, Any]) -> str:
    """Canonical type string of an ABI parameter (tuples expanded)."""
    typ = str(param["type"])
    if typ.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){typ[len('tuple') :]}"
    return typ


class AbiFunction:
    """Encoder/decoder of one function."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.name = str(entry["name"])
        self.input_types = [abi_type(p) for p in entry.get("inputs", [])]
        self.output_types = [abi_type(p) for p in entry.get("outputs", [])]
        self.output_names = [str(p.get("name", "")) for p in entry.get("outputs", [])]
        self.payable = entry.get("stateMutability") == "payable"
        signature = f"{self.name}({','.join(self.input_types)})"
        self.selector = bytes(_keccak(text=signature))[:4]

    def encode_call(self, args: Sequence[Any]) -> bytes:
        if len(args) != len(self.input_types):
            raise ChainConfigError(
                f"{self.name} takes {len(self.input_types)} arguments, got {len(args)}"
            )
        try:
            return self.selector + abi_encode(self.input_types, list(args))
        except Exception as exc:  # eth_abi raises several encoding error types
            raise ChainConfigError(f"cannot encode arguments of {self.name}: {exc}") from exc

    def decode_result(self, data: bytes) -> tuple[Any, ...]:
        try:
            return tuple(abi_decode(self.output_types, data))
        except DecodingError as exc:
            raise ChainError(f"cannot decode result of {self.name}: {exc}") from exc

    def decode_call(self, data: bytes) -> tuple[Any, ...]:
        """The arguments of a call to this function (its calldata, selector included)."""
        if data[:4] != self.selector:
            raise ChainError(f"calldata is not a call of {self.name}")
        try:
            return tuple(abi_decode(self.input_types, data[4:]))
        except DecodingError as exc:
            raise ChainError(f"cannot decode a call of {self.name}: {exc}") from exc


class AbiEvent:
    """Decoder of one event's logs."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.name = str(entry["name"])
        self.inputs = list(entry.get("inputs", []))
        types = ",".join(abi_type(p) for p in self.inputs)
        self.topic = bytes(_keccak(text=f"{self.name}({types})"))
        self.indexed = [(str(p["name"]), abi_type(p)) for p in self.inputs if p.get("indexed")]
        self.data = [(str(p["name"]), abi_type(p)) for p in self.inputs if not p.get("indexed")]

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        """Arguments by name; bytes stay bytes, addresses are checksummed strings."""
        if len(topics) != 1 + len(self.indexed):
            raise ChainError(f"{self.name}: expected {1 + len(self.indexed)} topics")
        values: dict[str, Any] = {}
        try:
            for (name, typ), topic in zip(self.indexed, topics[1:], strict=True):
                values[name] = abi_decode([typ], bytes(topic))[0]
            decoded = abi_decode([t for _, t in self.data], bytes(data))
        except DecodingError as exc:
            raise ChainError(f"cannot decode {self.name} log: {exc}") from exc
        for (name, _), value in zip(self.data, decoded, strict=True):
            values[name] = value
        return {
            str(p["name"]): _normalise(values[str(p["name"])], abi_type(p)) for p in self.inputs
        }


def _normalise(value: Any, typ: str) -> Any:
    if isinstance(value, tuple | list):
        inner = typ[: typ.rindex("[")] if typ.endswith("]") else typ
        return [_normalise(v, inner) for v in value]
    if typ == "address":
        return str(to_checksum_address(value))
    if isinstance(value, bytearray):
        return bytes(value)
    return value


class AbiCodec:
    """All functions, events and the constructor of one contract ABI."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self.functions: dict[str, AbiFunction] = {}
        self.events: dict[bytes, AbiEvent] = {}
        self.constructor_types: list[str] = []
        for entry in abi:
            kind = entry.get("type")
            if kind == "function":
                fn = AbiFunction(entry)
                self.functions[fn.name] = fn
            elif kind == "event":
                ev = AbiEvent(entry)
                self.events[ev.topic] = ev
            elif kind == "constructor":
                self.constructor_types = [abi_type(p) for p in entry.get("inputs", [])]

    def function(self, name: str) -> AbiFunction:
        try:
            return self.functions[name]
        except KeyError:
            raise ChainConfigError(f"no function {name!r} in ABI") from None

    def encode_constructor(self, args: Sequence[Any]) -> bytes:
        if len(args) != len(self.constructor_types):
            raise ChainConfigError("wrong number of constructor arguments")
        return abi_encode(self.constructor_types, list(args))

    def event_by_name(self, name: str) -> AbiEvent:
        for ev in self.events.values():
            if ev.name == name:
                return ev
        raise ChainConfigError(f"no event {name!r} in ABI")


def checksum(address: str | bytes) -> str:
    """Checksummed form of an address given as hex or 20 raw bytes."""
    try:
        return str(to_checksum_address(address))
    except ValueError as exc:
        raise ChainConfigError(f"invalid address {address!r}") from exc


def canonical_address(address: str) -> bytes:
    return bytes(to_canonical_address(address))
