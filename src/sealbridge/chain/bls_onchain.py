"""BLS signatures checked on an EVM chain: EIP-2537 encodings and the signed messages.

Theory of operation
-------------------
The gateway committee signs with the IETF POP ciphersuite
``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`` (:mod:`sealbridge.crypto.bls`): public
keys in G1 (48 bytes compressed), signatures in G2 (96 bytes compressed), messages
hashed to G2 with RFC 9380 ``hash_to_curve`` and the ciphersuite as DST. The EVM's
BLS12-381 precompiles (EIP-2537, Prague) take *uncompressed, padded* points instead:

* an Fp element is 64 bytes big-endian: 16 zero bytes, then the 48-byte value (< p);
* a G1 point is ``x || y`` (128 bytes), a G2 point ``x.c0 || x.c1 || y.c0 || y.c1``
  (256 bytes; an Fp2 element ``c0 + c1 * u`` is ``c0`` first); the point at infinity is
  all zero bytes.

This module converts between the two (:func:`encode_g1`, :func:`encode_g2`,
:func:`decode_g1`, :func:`decode_g2`) and builds the exact bytes the GatewayEscrow
contract hashes to the curve for each message (:func:`compute_release_message` etc.).
A message is the Solidity ABI encoding of static words; the contract hashes it **as is**
with its on-chain ``hash_to_G2`` (expand_message_xmd with SHA-256 and the ciphersuite DST,
hash_to_field by MODEXP, MAP_FP2_TO_G2 twice, G2ADD), so what is signed is exactly what is
released for, with no intermediate digest. :func:`compute_hash_to_g2` is the same hash
done off chain by arkworks, for comparison.

Every message starts with its domain tag, the chain id and the verifying contract's
address, so a signature is valid for one message kind on one deployment on one chain.
"""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from py_arkworks_bls12381 import G1Point, G2Point

from sealbridge.chain.errors import ChainConfigError
from sealbridge.core.ids import keccak
from sealbridge.crypto.bls import CIPHERSUITE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE

__all__ = [
    "ABORT_TAG",
    "BLS_DST",
    "COMMIT_TAG",
    "FP_MODULUS",
    "FP_SIZE",
    "G1_GENERATOR",
    "G1_SIZE",
    "G2_SIZE",
    "KEY_ROTATION_TAG",
    "LOCK_TAG",
    "NEG_G1_GENERATOR",
    "RELEASE_TAG",
    "TRANSFER_TAG",
    "compute_abort_message",
    "compute_commit_message",
    "compute_hash_to_g2",
    "compute_key_rotation_message",
    "compute_lock_ref",
    "compute_release_message",
    "compute_transfer_id",
    "decode_fp",
    "decode_g1",
    "decode_g2",
    "encode_fp",
    "encode_g1",
    "encode_g2",
]

FP_MODULUS = int(
    "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f624"
    "1eabfffeb153ffffb9feffffffffaaab",
    16,
)
FP_SIZE = 64  # an EIP-2537 field element: 16 zero bytes + 48 bytes big-endian
G1_SIZE = 2 * FP_SIZE
G2_SIZE = 4 * FP_SIZE
_RAW_FP = 48
_PAD = bytes(FP_SIZE - _RAW_FP)
BLS_DST = CIPHERSUITE

RELEASE_TAG = keccak(b"sealbridge/gateway-escrow/release/v1")
COMMIT_TAG = keccak(b"sealbridge/gateway-escrow/commit/v1")
ABORT_TAG = keccak(b"sealbridge/gateway-escrow/abort/v1")
KEY_ROTATION_TAG = keccak(b"sealbridge/gateway-escrow/key-rotation/v1")
LOCK_TAG = keccak(b"sealbridge/gateway-escrow/lock/v1")
TRANSFER_TAG = keccak(b"sealbridge/gateway-escrow/transfer/v1")


# --------------------------------------------------------------------------- field / points


def encode_fp(value: int) -> bytes:
    """An Fp element as EIP-2537's 64-byte padded big-endian word."""
    if not isinstance(value, int) or not 0 <= value < FP_MODULUS:
        raise ChainConfigError("field element out of range [0, p)")
    return value.to_bytes(FP_SIZE, "big")


def decode_fp(data: bytes) -> int:
    """The value of a 64-byte padded field element (ChainConfigError if malformed)."""
    if not isinstance(data, bytes | bytearray) or len(data) != FP_SIZE:
        raise ChainConfigError(f"an EIP-2537 field element is {FP_SIZE} bytes")
    if bytes(data[: FP_SIZE - _RAW_FP]) != _PAD:
        raise ChainConfigError("EIP-2537 field element: the top 16 bytes must be zero")
    value = int.from_bytes(data, "big")
    if value >= FP_MODULUS:
        raise ChainConfigError("EIP-2537 field element is not reduced mod p")
    return value


def _pad(raw: bytes) -> bytes:
    """Pad each 48-byte coordinate of ``raw`` to 64 bytes."""
    return b"".join(_PAD + raw[i : i + _RAW_FP] for i in range(0, len(raw), _RAW_FP))


def _unpad(data: bytes, words: int, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray) or len(data) != words * FP_SIZE:
        raise ChainConfigError(f"an EIP-2537 {what} point is {words * FP_SIZE} bytes")
    out = b""
    for i in range(words):
        word = bytes(data[i * FP_SIZE : (i + 1) * FP_SIZE])
        decode_fp(word)
        out += word[FP_SIZE - _RAW_FP :]
    return out


def encode_g1(compressed: bytes) -> bytes:
    """A 48-byte compressed G1 point (a public key) as EIP-2537's 128 bytes.

    The point is decoded with its subgroup check; bad bytes raise ChainConfigError."""
    if not isinstance(compressed, bytes | bytearray) or len(compressed) != PUBLIC_KEY_SIZE:
        raise ChainConfigError(f"a compressed G1 point is {PUBLIC_KEY_SIZE} bytes")
    try:
        point = G1Point.from_compressed_bytes(bytes(compressed))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ChainConfigError(f"not a G1 point: {exc}") from exc
    return _pad(bytes(point.to_xy_bytes_be()))


def encode_g2(compressed: bytes) -> bytes:
    """A 96-byte compressed G2 point (a signature) as EIP-2537's 256 bytes."""
    if not isinstance(compressed, bytes | bytearray) or len(compressed) != SIGNATURE_SIZE:
        raise ChainConfigError(f"a compressed G2 point is {SIGNATURE_SIZE} bytes")
    try:
        point = G2Point.from_compressed_bytes(bytes(compressed))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ChainConfigError(f"not a G2 point: {exc}") from exc
    return _pad(bytes(point.to_xy_bytes_be()))


def decode_g1(data: bytes) -> bytes:
    """EIP-2537's 128-byte G1 encoding back to 48 compressed bytes (checked)."""
    raw = _unpad(data, 2, "G1")
    try:
        point = G1Point.from_xy_bytes_be(raw)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ChainConfigError(f"not a G1 point: {exc}") from exc
    return bytes(point.to_compressed_bytes())


def decode_g2(data: bytes) -> bytes:
    """EIP-2537's 256-byte G2 encoding back to 96 compressed bytes (checked)."""
    raw = _unpad(data, 4, "G2")
    try:
        point = G2Point.from_xy_bytes_be(raw)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ChainConfigError(f"not a G2 point: {exc}") from exc
    return bytes(point.to_compressed_bytes())


G1_GENERATOR = _pad(bytes(G1Point().to_xy_bytes_be()))
NEG_G1_GENERATOR = G1_GENERATOR[:FP_SIZE] + encode_fp(
    FP_MODULUS - decode_fp(G1_GENERATOR[FP_SIZE:])
)


def compute_hash_to_g2(message: bytes, dst: bytes = BLS_DST) -> bytes:
    """RFC 9380 hash_to_G2 of ``message`` (arkworks), EIP-2537-encoded (256 bytes)."""
    point = G2Point.hash_to_curve(bytes(message), bytes(dst))
    return _pad(bytes(point.to_xy_bytes_be()))


# --------------------------------------------------------------------------- messages


def _b32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ChainConfigError(f"{what} must be 32 bytes")
    return bytes(value)


def _uint(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise ChainConfigError(f"{what} must be a uint256")
    return value


def _address(value: str) -> str:
    try:
        return str(to_checksum_address(value))
    except ValueError as exc:
        raise ChainConfigError(f"invalid address {value!r}") from exc


def compute_transfer_id(*, chain_id: int, escrow: str, sender: str, salt: bytes) -> bytes:
    """The id a source escrow gives a lock: keccak(abi(TRANSFER_TAG, chain, escrow,
    sender, salt)). Binding the sender means nobody can take another user's id."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "address", "address", "bytes32"],
            [
                TRANSFER_TAG,
                _uint(chain_id, "chain_id"),
                _address(escrow),
                _address(sender),
                _b32(salt, "salt"),
            ],
        )
    )


def compute_lock_ref(
    *,
    source_chain_id: int,
    source_escrow: str,
    transfer_id: bytes,
    sender: str,
    amount: int,
    dest_chain_id: int,
    dest_escrow: str,
    recipient: str,
    deadline: int,
) -> bytes:
    """The source lock's reference: the hash of everything the lock says. The
    destination escrow recomputes it from the release's arguments."""
    return keccak(
        abi_encode(
            [
                "bytes32",
                "uint256",
                "address",
                "bytes32",
                "address",
                "uint256",
                "uint256",
                "address",
                "address",
                "uint256",
            ],
            [
                LOCK_TAG,
                _uint(source_chain_id, "source_chain_id"),
                _address(source_escrow),
                _b32(transfer_id, "transfer_id"),
                _address(sender),
                _uint(amount, "amount"),
                _uint(dest_chain_id, "dest_chain_id"),
                _address(dest_escrow),
                _address(recipient),
                _uint(deadline, "deadline"),
            ],
        )
    )


def compute_release_message(
    *,
    escrow: str,
    chain_id: int,
    transfer_id: bytes,
    recipient: str,
    amount: int,
    lock_ref: bytes,
) -> bytes:
    """The 224 bytes the destination escrow hashes to G2 before paying ``recipient``."""
    return abi_encode(
        ["bytes32", "uint256", "address", "bytes32", "address", "uint256", "bytes32"],
        [
            RELEASE_TAG,
            _uint(chain_id, "chain_id"),
            _address(escrow),
            _b32(transfer_id, "transfer_id"),
            _address(recipient),
            _uint(amount, "amount"),
            _b32(lock_ref, "lock_ref"),
        ],
    )


def _decision_message(
    tag: bytes, escrow: str, chain_id: int, transfer_id: bytes, ref: bytes
) -> bytes:
    return abi_encode(
        ["bytes32", "uint256", "address", "bytes32", "bytes32"],
        [
            tag,
            _uint(chain_id, "chain_id"),
            _address(escrow),
            _b32(transfer_id, "transfer_id"),
            _b32(ref, "lock_ref"),
        ],
    )


def compute_commit_message(
    *, escrow: str, chain_id: int, transfer_id: bytes, lock_ref: bytes
) -> bytes:
    """The source escrow's commit: the release happened; the lock joins the pool."""
    return _decision_message(COMMIT_TAG, escrow, chain_id, transfer_id, lock_ref)


def compute_abort_message(
    *, escrow: str, chain_id: int, transfer_id: bytes, lock_ref: bytes
) -> bytes:
    """The source escrow's committee abort: refund the lock now."""
    return _decision_message(ABORT_TAG, escrow, chain_id, transfer_id, lock_ref)


def compute_key_rotation_message(
    *, escrow: str, chain_id: int, epoch: int, new_key: bytes
) -> bytes:
    """Signed by the current key to install ``new_key`` (EIP-2537 G1, 128 bytes) as
    key ``epoch`` (the current epoch + 1)."""
    if not isinstance(new_key, bytes | bytearray) or len(new_key) != G1_SIZE:
        raise ChainConfigError(f"the new key must be an EIP-2537 G1 point ({G1_SIZE} bytes)")
    return abi_encode(
        ["bytes32", "uint256", "address", "uint256", "bytes32"],
        [
            KEY_ROTATION_TAG,
            _uint(chain_id, "chain_id"),
            _address(escrow),
            _uint(epoch, "epoch"),
            keccak(bytes(new_key)),
        ],
    )
