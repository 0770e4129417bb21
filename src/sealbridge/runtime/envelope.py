"""The user's side of the runtime protocol: sealing commands, signing queries, opening
answers. Pure functions (randomness and time are arguments), used by the client library,
the CLI, tests and benchmarks alike.
"""

from __future__ import annotations

from typing import Any

from sealbridge.core.encoding import decode, decode_canonical, encode
from sealbridge.core.errors import DecryptionError, EncodingError, InvalidSignature
from sealbridge.core.ids import hash_message
from sealbridge.crypto import aead, ecies
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.signing import ed25519_public, ed25519_sign, ed25519_verify
from sealbridge.runtime.errors import QueryRefused
from sealbridge.runtime.messages import (
    ANSWER_SIGN_TAG,
    COMMAND_SIGN_TAG,
    QUERY_SIGN_TAG,
    CommandBody,
    CommandResult,
    QueryAnswer,
    QueryBody,
    SignedAnswer,
    SignedCommand,
    SignedQuery,
    answer_aad,
    command_aad,
    result_aad,
)


def compute_result_key(sender_private_key: bytes, contract_id: bytes, nonce: int) -> bytes:
    """The key a command's outcome is sealed under; the sender can always re-derive it."""
    return derive_key(
        sender_private_key, "sealbridge/result-key/v1", salt=contract_id + nonce.to_bytes(8, "big")
    )


def seal_command(
    *,
    contract_id: bytes,
    contract_public_key: bytes,
    sender_private_key: bytes,
    nonce: int,
    method: str,
    args: dict[str, Any],
    ephemeral_seed: bytes | None = None,
    gas_limit: int = 0,
    with_result: bool = True,
) -> bytes:
    """Sign a command with the sender's key and encrypt it to the contract's key. With
    ``with_result`` the runtime seals the outcome for the sender (see :func:`open_result`)."""
    body = CommandBody(
        contract_id=contract_id,
        sender=ed25519_public(sender_private_key),
        nonce=nonce,
        method=method,
        args=args,
        gas_limit=gas_limit,
        result_key=compute_result_key(sender_private_key, contract_id, nonce)
        if with_result
        else b"",
    )
    body_bytes = encode(body)
    signed = SignedCommand(
        body=body_bytes, signature=ed25519_sign(sender_private_key, COMMAND_SIGN_TAG + body_bytes)
    )
    return ecies.encrypt_to(
        contract_public_key,
        encode(signed),
        command_aad(contract_id),
        ephemeral_seed=ephemeral_seed,
    )


def make_query(
    *,
    contract_id: bytes,
    caller_private_key: bytes,
    method: str,
    args: dict[str, Any],
    issued_at: int,
    reply_seed: bytes | None = None,
) -> tuple[SignedQuery, bytes]:
    """A signed query and the one-time private key that opens its answer."""
    reply_private, reply_public = ecies.x25519_keypair(reply_seed)
    body = QueryBody(
        contract_id=contract_id,
        method=method,
        args=args,
        caller=ed25519_public(caller_private_key),
        reply_key=reply_public,
        issued_at=issued_at,
    )
    body_bytes = encode(body)
    query = SignedQuery(
        body=body_bytes, signature=ed25519_sign(caller_private_key, QUERY_SIGN_TAG + body_bytes)
    )
    return query, reply_private


def open_answer(
    query: SignedQuery, reply_private_key: bytes, sealed_answer: bytes
) -> tuple[QueryAnswer, SignedAnswer]:
    """Decrypt an answer, check the worker's signature and that it answers this query."""
    query_hash = hash_message("sealbridge/query/v1", query)
    try:
        plaintext = ecies.decrypt_with(reply_private_key, sealed_answer, answer_aad(query_hash))
        signed = decode_canonical(plaintext, SignedAnswer)
        # the signature first: an unsigned answer's body is never decoded
        ed25519_verify(signed.worker_key, ANSWER_SIGN_TAG + signed.answer, signed.signature)
        answer = decode(signed.answer, QueryAnswer)
    except (DecryptionError, EncodingError, InvalidSignature) as exc:
        raise QueryRefused(f"answer does not open or verify: {exc.message}") from exc
    if answer.query_hash != query_hash:
        raise QueryRefused("answer is for another query")
    return answer, signed


def open_result(
    *, sender_private_key: bytes, contract_id: bytes, nonce: int, sealed_result: bytes
) -> CommandResult:
    """Open the sealed outcome of one of the sender's own commands."""
    key = compute_result_key(sender_private_key, contract_id, nonce)
    aad = result_aad(contract_id, ed25519_public(sender_private_key), nonce)
    try:
        return decode(aead.open_sealed(key, sealed_result, aad), CommandResult)
    except (DecryptionError, EncodingError) as exc:
        raise QueryRefused(f"result does not open: {exc.message}") from exc
