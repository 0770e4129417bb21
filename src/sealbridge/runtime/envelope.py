"""The user's side of the runtime protocol: sealing commands, signing queries, opening
answers. Pure functions (randomness and time are arguments), used by the client library,
the CLI, tests and benchmarks alike.
"""

from __future__ import annotations

from typing import Any

from sealbridge.core.encoding import decode, decode_canonical, encode
from sealbridge.core.errors import DecryptionError, EncodingError, InvalidSignature
from sealbridge.core.ids import hash_message
from sealbridge.crypto import ecies
from sealbridge.crypto.signing import ed25519_public, ed25519_sign, ed25519_verify
from sealbridge.runtime.errors import QueryRefused
from sealbridge.runtime.messages import (
    ANSWER_SIGN_TAG,
    COMMAND_SIGN_TAG,
    QUERY_SIGN_TAG,
    CommandBody,
    QueryAnswer,
    QueryBody,
    SignedAnswer,
    SignedCommand,
    SignedQuery,
    answer_aad,
    command_aad,
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
) -> bytes:
    """Sign a command with the sender's key and encrypt it to the contract's key."""
    body = CommandBody(
        contract_id=contract_id,
        sender=ed25519_public(sender_private_key),
        nonce=nonce,
        method=method,
        args=args,
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
        answer = decode(signed.answer, QueryAnswer)
        ed25519_verify(signed.worker_key, ANSWER_SIGN_TAG + signed.answer, signed.signature)
    except (DecryptionError, EncodingError, InvalidSignature) as exc:
        raise QueryRefused(f"answer does not open or verify: {exc.message}") from exc
    if answer.query_hash != query_hash:
        raise QueryRefused("answer is for another query")
    return answer, signed
