"""Authenticated key-release clients: every request a client makes is signed by its key.

Theory of operation
-------------------
A key-release client is its *account*: the address of its wallet key, the one its vault's
``OwnerBinding`` names and the one the matcher books requests, fees, settlements and
compensation under. A client that asks the service (or the matcher) for anything signs a
:class:`ClientRequest` with that key:

* ``service``: the identity key of the matcher enclave the request is for, so a request
  made to one service cannot be replayed at another;
* ``nonce``: strictly larger than the last nonce the verifier accepted from the account
  (clients use the time in microseconds), so a request cannot be replayed to the same
  service either;
* ``action`` and ``body``: what is asked (``"deposit"``, ``"match"``, ``"accept"``) and the
  canonical bytes of the request itself.

The signature is secp256k1 over ``keccak256(tag || canonical encoding)`` without the
signature; :func:`verify_client_request` recovers the signer, and the verifier compares it
with the account the request acts for. A refused request changes nothing (the verifier
records the nonce only once everything else has been checked).

Client names are display labels: :func:`normalize_client_name` folds them with NFKC and
case-folds them, so a full-width ``ａｌｉｃｅ`` or ``Alice`` is ``alice`` and cannot be
registered beside it (nor share its files on a case-insensitive file system).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from eth_utils.crypto import keccak

from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import InvalidSignature
from sealbridge.crypto.signing import (
    secp256k1_recover_address,
    secp256k1_sign_hash,
    to_checksum_address,
)
from sealbridge.keyrelease.errors import KeyReleaseError

CLIENT_REQUEST_TAG = b"sealbridge/keyrelease/client-request/v1"
MAX_NAME = 32
MAX_NONCE = 2**63 - 1


class ClientRefused(KeyReleaseError):
    """A client request that is not signed by the account it acts for, is for another
    service, or replays an earlier one."""

    code = "keyrelease_client_refused"


class ClientRequest(Message, frozen=True):
    service: bytes  # the matcher enclave's identity key (32 bytes)
    nonce: int
    action: str
    body: bytes  # the canonical encoding of the request


class SignedRequest(Message, frozen=True):
    request: ClientRequest
    signature: bytes  # 65 bytes r || s || v over compute_request_digest(request)


def compute_request_digest(request: ClientRequest) -> bytes:
    return keccak(CLIENT_REQUEST_TAG + encode(request))


def sign_client_request(
    wallet_key: bytes, service: bytes, nonce: int, action: str, body: bytes
) -> SignedRequest:
    request = ClientRequest(service=service, nonce=nonce, action=action, body=body)
    return SignedRequest(
        request=request, signature=secp256k1_sign_hash(wallet_key, compute_request_digest(request))
    )


def verify_client_request(
    signed: SignedRequest, *, service: bytes, action: str, last_nonce: Callable[[str], int]
) -> str:
    """The (EIP-55) account that signed ``signed``, if it is a request for ``service``
    and ``action`` with a nonce above ``last_nonce(account)``; ClientRefused otherwise."""
    if not isinstance(signed, SignedRequest) or not isinstance(signed.request, ClientRequest):
        raise ClientRefused("not a signed client request")
    request = signed.request
    if request.service != service:
        raise ClientRefused("the request is signed for another service")
    if request.action != action:
        raise ClientRefused(f"the request is signed for {request.action!r}, not {action!r}")
    if type(request.nonce) is not int or not 0 < request.nonce <= MAX_NONCE:
        raise ClientRefused("the request's nonce must be an int in [1, 2^63)")
    try:
        signer = secp256k1_recover_address(compute_request_digest(request), signed.signature)
    except InvalidSignature as exc:
        raise ClientRefused(f"the request's signature does not verify: {exc.message}") from exc
    account = to_checksum_address(signer)
    last = last_nonce(account)
    if request.nonce <= last:
        raise ClientRefused(
            f"nonce {request.nonce} is not above the last one accepted ({last}): "
            "a replayed or reordered request"
        )
    return account


def normalize_client_name(name: str) -> str:
    """A client's display label, NFKC- and case-folded: a short ASCII identifier."""
    if not isinstance(name, str):
        raise ClientRefused("a client name is a string")
    folded = unicodedata.normalize("NFKC", name).casefold()
    if not folded.isascii() or not folded.isidentifier() or not 0 < len(folded) <= MAX_NAME:
        raise ClientRefused(f"client names are short ASCII identifiers, not {name!r}")
    return folded
