"""The gatekeeper core: registration approvals, contract keys and key release."""

from __future__ import annotations

import pytest

from sealbridge.chain.abi import compute_registration_digest, recover_signer
from sealbridge.contracts.catalog import get_code_hash
from sealbridge.core.encoding import encode
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.crypto.keyschedule import compute_contract_keys
from sealbridge.crypto.signing import ed25519_keypair, to_checksum_address
from sealbridge.keyservice.committee import EraInfo, MemberCard
from sealbridge.keyservice.gatekeeper import Gatekeeper, KeyRequestRefused
from sealbridge.keyservice.messages import (
    KEY_REQUEST_SIGN_TAG,
    ChainFacts,
    KeyRequest,
    KeyRequestBody,
    PublishedContractKey,
    PublishKeyRequest,
    RegistrationRequest,
)
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.runtime import errors as runtime_errors
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
PUBLISHER_FACTS = ChainFacts(
    worker_active=False, worker_assigned=False, key_published=False, requester_is_publisher=True
)


def enclave(measurement: bytes, platform: bytes = PLATFORM) -> EnclaveContext:
    return EnclaveContext(
        program="tests:Node",
        measurement=measurement,
        platform_private_key=platform,
        clock=lambda: float(NOW),
    )


def committee(count: int = 3, threshold: int = 2) -> list[Gatekeeper]:
    """Gatekeepers whose committee ran its genesis era (key generation) in process."""
    gatekeepers = [
        Gatekeeper(
            enclave=enclave(GOOD), policy=devnet_policy(PLATFORM_PUB, [GOOD]), measurement=GOOD
        )
        for _ in range(count)
    ]
    ids = [g.identity_key for g in gatekeepers]
    info = EraInfo(era=1, members=ids, threshold=threshold, dealers=ids)
    cards = [
        MemberCard(node=g.enclave.identity, quote=g.enclave.get_identity_quote())  # type: ignore[attr-defined]
        for g in gatekeepers
    ]
    dealings = [g.committee.process_era_elected(info, cards, NOW) for g in gatekeepers]
    for dealing in dealings:
        assert dealing is not None
        for g in gatekeepers:
            if g.identity_key != dealing.dealer:
                assert g.committee.process_dealing(dealing) is None
    confirmations = [g.committee.finish(1, ids) for g in gatekeepers]
    for g in gatekeepers:
        g.committee.process_rotation_ready(info, confirmations[0].group_public_key)
    return gatekeepers


@pytest.fixture(scope="module")
def gatekeepers() -> list[Gatekeeper]:
    return committee()


@pytest.fixture
def gatekeeper(gatekeepers: list[Gatekeeper]) -> Gatekeeper:
    return gatekeepers[0]


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


def publish(gatekeepers: list[Gatekeeper]) -> PublishedContractKey:
    """Gatekeeper 0 publishes: it collects gatekeeper 1's partial, as its host does."""
    publisher = gatekeepers[0]
    request = key_request(publisher.enclave)  # type: ignore[arg-type]
    peer = gatekeepers[1].release_partial(request, PUBLISHER_FACTS, NOW)
    return publisher.publish_contract_key(
        PublishKeyRequest(
            contract_id=CONTRACT_ID, chain_id=31337, contract_registry_address=CONTRACTS
        ),
        [peer],
    )


def test_no_single_gatekeeper_can_make_the_key_and_t_of_them_can(
    gatekeepers: list[Gatekeeper],
) -> None:
    published = publish(gatekeepers)
    assert published.wrapped_key == b""  # nothing of the key goes on chain
    # the publisher alone cannot: it needs a peer's partial
    with pytest.raises(KeyRequestRefused, match="combine"):
        gatekeepers[0].publish_contract_key(
            PublishKeyRequest(
                contract_id=CONTRACT_ID, chain_id=31337, contract_registry_address=CONTRACTS
            ),
            [],
        )
    node = enclave(GOOD)
    group = gatekeepers[0].committee.get_active().public
    releases = [g.release_partial(key_request(node), FACTS, NOW) for g in gatekeepers]
    # any two of the three give the contract key whose public half was published
    for pair in ([0, 1], [1, 2], [0, 2]):
        worker = WorkerRuntime(node)
        status = worker.install_contract(
            install_request(node, published, [releases[i] for i in pair], group)
        )
        assert status.height == 0 and status.phase == "awaiting_code"
    # one partial is not enough; a partial released to another worker is useless here
    with pytest.raises(runtime_errors.WrongKeyError):
        WorkerRuntime(node).install_contract(install_request(node, published, releases[:1], group))
    other = enclave(GOOD)
    foreign = [g.release_partial(key_request(other), FACTS, NOW) for g in gatekeepers[:2]]
    with pytest.raises(runtime_errors.WrongKeyError):
        WorkerRuntime(node).install_contract(install_request(node, published, foreign, group))
    # the same key every time; not some fixed key
    assert publish(gatekeepers).contract_public_key == published.contract_public_key
    assert (
        compute_contract_keys(CONTRACT_ID, bytes(32)).command_public_key
        != published.contract_public_key
    )


def install_request(
    node: EnclaveContext,
    published: PublishedContractKey,
    releases: list[PartialKeyRelease],
    group: GroupPublicKeys,
) -> InstallContract:
    return InstallContract(
        contract_id=CONTRACT_ID,
        code_hash=get_code_hash("token"),
        contract_public_key=published.contract_public_key,
        wrapped_key=b"",
        gatekeeper_key=b"",
        deployer_commitment=b"\x05" * 32,
        workers=[node.identity.identity_key],
        releases=releases,
        group=group,
    )


def test_a_publisher_gets_partials_only_before_the_key_is_published(
    gatekeepers: list[Gatekeeper],
) -> None:
    request = key_request(gatekeepers[0].enclave)  # type: ignore[arg-type]
    done = ChainFacts(
        worker_active=False, worker_assigned=False, key_published=True, requester_is_publisher=True
    )
    with pytest.raises(KeyRequestRefused, match="already published"):
        gatekeepers[1].release_partial(request, done, NOW)
    # without the publisher fact, a gatekeeper is no worker
    nobody = ChainFacts(worker_active=False, worker_assigned=False, key_published=False)
    with pytest.raises(KeyRequestRefused, match="not an active registered worker"):
        gatekeepers[1].release_partial(request, nobody, NOW)


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
        gatekeeper.release_partial(request, facts, NOW)
