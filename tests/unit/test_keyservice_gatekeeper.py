"""The gatekeeper core: registration approvals, contract keys and key release."""

from __future__ import annotations

import pytest

from sealbridge.chain.abi import compute_registration_digest, recover_signer
from sealbridge.contracts.catalog import get_code_hash
from sealbridge.core.encoding import encode
from sealbridge.crypto.keyschedule import compute_contract_keys
from sealbridge.crypto.signing import ed25519_keypair, to_checksum_address
from sealbridge.keyservice.gatekeeper import Gatekeeper, KeyRequestRefused
from sealbridge.keyservice.messages import (
    KEY_REQUEST_SIGN_TAG,
    ChainFacts,
    KeyRequest,
    KeyRequestBody,
    PublishKeyRequest,
    RegistrationRequest,
)
from sealbridge.runtime.messages import InstallContract
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee import errors as tee_errors
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import devnet_policy

PLATFORM, PLATFORM_PUB = ed25519_keypair(b"p" * 32)
GOOD = bytes([1]) * 32
BAD = bytes([2]) * 32
NOW = 1_800_000_000
REGISTRY = "0x" + "11" * 20
CONTRACTS = "0x" + "22" * 20
CONTRACT_ID = bytes([5]) * 32
FACTS = ChainFacts(worker_active=True, worker_assigned=True, key_published=True)


def enclave(measurement: bytes, platform: bytes = PLATFORM) -> EnclaveContext:
    return EnclaveContext(
        program="tests:Node",
        measurement=measurement,
        platform_private_key=platform,
        clock=lambda: float(NOW),
    )


@pytest.fixture
def gatekeeper() -> Gatekeeper:
    return Gatekeeper(
        root_key=bytes([3]) * 32,
        enclave=enclave(GOOD),
        policy=devnet_policy(PLATFORM_PUB, [GOOD]),
    )


def registration(node: EnclaveContext, quote: bytes | None = None) -> RegistrationRequest:
    return RegistrationRequest(
        role=2,
        node=node.identity,
        quote=quote or node.get_identity_quote(),
        expiry=NOW + 3600,
        chain_id=31337,
        registry_address=REGISTRY,
    )


def key_request(node: EnclaveContext, issued_at: int = NOW) -> KeyRequest:
    body = encode(
        KeyRequestBody(
            contract_id=CONTRACT_ID, worker_id=node.identity.identity_key, issued_at=issued_at
        )
    )
    return KeyRequest(
        body=body,
        signature=node.sign_identity(KEY_REQUEST_SIGN_TAG + body),
        node=node.identity,
        quote=node.get_identity_quote(),
    )


def test_approval_recovers_to_the_gatekeeper_enclave(gatekeeper: Gatekeeper) -> None:
    worker = enclave(GOOD)
    approval = gatekeeper.approve_registration(registration(worker), NOW)
    digest = compute_registration_digest(
        registry=REGISTRY,
        chain_id=31337,
        role=2,
        identity_key=worker.identity.identity_key,
        encryption_key=worker.identity.encryption_key,
        enclave_address=to_checksum_address(worker.identity.eth_address),
        quote_hash=approval.quote_hash,
        measurement=GOOD,
        expiry=NOW + 3600,
    )
    signer = recover_signer(digest, approval.signature)
    assert signer.lower() == "0x" + gatekeeper.enclave.identity.eth_address.hex()


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wrong_measurement", tee_errors.MeasurementRefused),
        ("forged_platform", tee_errors.QuoteSignatureError),
        ("tampered", tee_errors.AttestationError),
        ("keys_not_bound", tee_errors.ReportDataMismatch),
        ("stale", tee_errors.StaleQuote),
    ],
)
def test_bad_quotes_are_refused(gatekeeper: Gatekeeper, case: str, error: type[Exception]) -> None:
    worker = enclave(GOOD)
    if case == "wrong_measurement":
        request = registration(enclave(BAD))
    elif case == "forged_platform":
        request = registration(enclave(GOOD, platform=b"f" * 32))
    elif case == "tampered":
        quote = bytearray(worker.get_identity_quote())
        quote[len(quote) // 2] ^= 0x01
        request = registration(worker, bytes(quote))
    elif case == "keys_not_bound":
        request = registration(worker, enclave(GOOD).get_identity_quote())
    else:
        request = registration(worker)
        with pytest.raises(error):
            gatekeeper.approve_registration(request, NOW + 10_000)
        return
    with pytest.raises(error):
        gatekeeper.approve_registration(request, NOW)


def test_key_release_reaches_only_the_attested_worker(gatekeeper: Gatekeeper) -> None:
    published = gatekeeper.publish_contract_key(
        PublishKeyRequest(
            contract_id=CONTRACT_ID, chain_id=31337, contract_registry_address=CONTRACTS
        )
    )
    node = enclave(GOOD)
    release = gatekeeper.release_contract_key(key_request(node), FACTS, NOW)
    worker = WorkerRuntime(node)
    status = worker.install_contract(
        InstallContract(
            contract_id=CONTRACT_ID,
            code_hash=get_code_hash("token"),
            contract_public_key=published.contract_public_key,
            wrapped_key=release.wrapped_key,
            gatekeeper_key=release.gatekeeper_key,
            deployer_commitment=b"\x05" * 32,
            workers=[node.identity.identity_key],
        )
    )
    assert status.height == 0 and status.phase == "awaiting_code"
    # Every call derives the same contract key from the root.
    again = gatekeeper.publish_contract_key(
        PublishKeyRequest(
            contract_id=CONTRACT_ID, chain_id=31337, contract_registry_address=CONTRACTS
        )
    )
    assert again.contract_public_key == published.contract_public_key
    assert (
        compute_contract_keys(CONTRACT_ID, bytes(32)).command_public_key
        != published.contract_public_key
    )


@pytest.mark.parametrize(
    "case",
    [
        "not_assigned",
        "inactive",
        "unpublished",
        "stale",
        "bad_sig",
        "other_worker",
        "bad_measurement",
    ],
)
def test_key_requests_are_refused(gatekeeper: Gatekeeper, case: str) -> None:
    node = enclave(GOOD)
    request = key_request(node)
    facts = FACTS
    expected: type[Exception] = KeyRequestRefused
    if case == "not_assigned":
        facts = ChainFacts(worker_active=True, worker_assigned=False, key_published=True)
    elif case == "inactive":
        facts = ChainFacts(worker_active=False, worker_assigned=True, key_published=True)
    elif case == "unpublished":
        facts = ChainFacts(worker_active=True, worker_assigned=True, key_published=False)
    elif case == "stale":
        request = key_request(node, issued_at=NOW - 3600)
    elif case == "bad_sig":
        request = KeyRequest(
            body=request.body, signature=bytes(64), node=request.node, quote=request.quote
        )
    elif case == "other_worker":
        other = enclave(GOOD)
        request = KeyRequest(
            body=request.body,
            signature=request.signature,
            node=other.identity,
            quote=other.get_identity_quote(),
        )
    else:
        request = key_request(enclave(BAD))
        expected = tee_errors.MeasurementRefused
    with pytest.raises(expected):
        gatekeeper.release_contract_key(request, facts, NOW)
