"""Messages of the worker runtime: commands, blocks, outputs and queries.

A user's command travels as ``encrypt_to(contract_public_key, SignedCommand, aad)`` in
one ``CommandInbox.Command`` event. Inside the enclave it decrypts to a
:class:`SignedCommand` whose ``body`` is the canonical encoding of a :class:`CommandBody`
signed by the sender's Ed25519 key. Queries go over HTTP as a :class:`SignedQuery`; the
answer is a :class:`SignedAnswer` encrypted to the query's one-time reply key.
"""

from __future__ import annotations

from typing import Any

from sealbridge.core.encoding import Message

COMMAND_AAD_TAG = b"sealbridge/command/v1"
ANSWER_AAD_TAG = b"sealbridge/answer/v1"
STATE_AAD_TAG = b"sealbridge/state/v1"


def command_aad(contract_id: bytes) -> bytes:
    """Associated data binding a command ciphertext to its contract."""
    return COMMAND_AAD_TAG + contract_id


def answer_aad(query_hash: bytes) -> bytes:
    return ANSWER_AAD_TAG + query_hash


def state_aad(contract_id: bytes) -> bytes:
    return STATE_AAD_TAG + contract_id


class CommandBody(Message, frozen=True):
    contract_id: bytes
    sender: bytes  # Ed25519 public key of the author
    nonce: int  # strictly increasing per (contract, sender), starting at 1
    method: str
    args: dict[str, Any] = {}


class SignedCommand(Message, frozen=True):
    body: bytes  # canonical CommandBody
    signature: bytes


class InboxCommand(Message, frozen=True):
    """One Command event as the host saw it on chain."""

    seq: int
    tx_index: int
    log_index: int
    ciphertext: bytes


class BlockInput(Message, frozen=True):
    """The commands of one contract in one block, in chain order."""

    contract_id: bytes
    number: int
    block_hash: bytes
    commands: list[InboxCommand] = []


class Receipt(Message, frozen=True):
    seq: int
    ok: bool
    error: str = ""  # a typed error code, never plaintext arguments


class BlockOutput(Message, frozen=True):
    contract_id: bytes
    number: int
    state_root: bytes
    command_count: int
    receipts: list[Receipt]
    sealed_state: bytes  # state encrypted under the contract's state key


class InstallContract(Message, frozen=True):
    contract_id: bytes
    code_hash: bytes
    contract_public_key: bytes
    wrapped_key: bytes  # the contract key, ECIES-encrypted to this worker's encryption key
    gatekeeper_key: bytes  # Ed25519 identity of the gatekeeper that released it
    sealed_state: bytes = b""  # resume from this sealed state when given


class ContractStatus(Message, frozen=True):
    contract_id: bytes
    height: int
    state_root: bytes
    commands_applied: int


class QueryBody(Message, frozen=True):
    contract_id: bytes
    method: str
    caller: bytes  # Ed25519 public key
    reply_key: bytes  # one-time X25519 public key the answer is encrypted to
    issued_at: int  # unix seconds, chosen by the caller
    args: dict[str, Any] = {}


class SignedQuery(Message, frozen=True):
    body: bytes  # canonical QueryBody
    signature: bytes


class QueryAnswer(Message, frozen=True):
    contract_id: bytes
    method: str
    args: dict[str, Any]
    caller: bytes
    query_hash: bytes
    result: int | str  # a number, or for command_result "ok" / an error code
    block_height: int
    state_root: bytes


class SignedAnswer(Message, frozen=True):
    answer: bytes  # canonical QueryAnswer
    signature: bytes  # Ed25519 over ANSWER_SIGN_TAG + answer
    worker_key: bytes  # the worker's Ed25519 identity key


class SignOutput(Message, frozen=True):
    """Ask the enclave to sign an OutputRecords entry (it signs only roots it computed)."""

    contract_id: bytes
    number: int
    chain_id: int
    outputs_address: bytes


ANSWER_SIGN_TAG = b"sealbridge/query-answer/v1"
COMMAND_SIGN_TAG = b"sealbridge/command-sig/v1"
QUERY_SIGN_TAG = b"sealbridge/query-sig/v1"
