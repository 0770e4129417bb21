"""The gatekeeper core: registration approvals, contract keys and key release."""

from __future__ import annotations

import msgspec
import pytest

from sealbridge.chain.abi import (
    compute_contract_key_digest,
    compute_key_rotation_digest,
    compute_registration_digest,
    recover_signer,
)
from sealbridge.contracts.catalog import get_code_hash
from sealbridge.core.encoding import encode
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.crypto.keyschedule import compute_contract_keys, compute_key_id
from sealbridge.crypto.shamir import ThresholdError
from sealbridge.crypto.signing import ed25519_keypair, to_checksum_address
from sealbridge.crypto.threshold_prf import BadPartial, combine_contract_key
from sealbridge.keyservice.committee import EraInfo
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
from sealbridge.keyservice.threshold import BadRelease, combine_released_key, open_partials
from sealbridge.keyservice.threshold_messages import PartialKeyRelease, compute_install_binding
from sealbridge.runtime import errors as runtime_errors
from sealbridge.runtime.messages import InstallContract
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee import errors as tee_errors
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import devnet_policy

PLATFORM, PLATFORM_PUB = ed25519_keypair(b"p" * 32)
GOOD = bytes([1]) * 32
BAD = bytes([2]) * 32
NOW = 1_800_000_000
REGISTRY = "0x" + "11" * 20
CONTRACTS = "0x" + "22" * 20
CONTRACT_ID = bytes([5]) * 32
INSTALL_WORKERS = [b"\x07" * 32]  # the executor set the tests' installs name
BINDING = compute_install_binding(get_code_hash("token"), b"\x05" * 32, INSTALL_WORKERS)
FACTS = ChainFacts(
    install_binding=BINDING, worker_active=True, worker_assigned=True, key_published=True
)
PUBLISHER_FACTS = ChainFacts(
    install_binding=BINDING,
    worker_active=False,
    worker_assigned=False,
    key_published=False,
    requester_is_publisher=True,
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
        AttestedCard(node=g.enclave.identity, quote=g.enclave.get_identity_quote())  # type: ignore[attr-defined]
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


def key_request(node: EnclaveContext, issued_at: int = NOW, *, version: int = 0) -> KeyRequest:
    body = encode(
        KeyRequestBody(
            contract_id=CONTRACT_ID,
            worker_id=node.identity.identity_key,
            issued_at=issued_at,
            version=version,
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
        workers=INSTALL_WORKERS,
        releases=releases,
        group=group,
    )


def test_a_publisher_gets_partials_only_before_the_key_is_published(
    gatekeepers: list[Gatekeeper],
) -> None:
    request = key_request(gatekeepers[0].enclave)  # type: ignore[arg-type]
    done = ChainFacts(
        install_binding=BINDING,
        worker_active=False,
        worker_assigned=False,
        key_published=True,
        requester_is_publisher=True,
    )
    with pytest.raises(KeyRequestRefused, match="already published"):
        gatekeepers[1].release_partial(request, done, NOW)
    # without the publisher fact, a gatekeeper is no worker
    nobody = ChainFacts(
        install_binding=BINDING, worker_active=False, worker_assigned=False, key_published=False
    )
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
        "retired_keys",
        "retired_keys_of_the_publisher",
    ],
)
def test_key_requests_are_refused(gatekeeper: Gatekeeper, case: str) -> None:
    node = enclave(GOOD)
    request = key_request(node)
    facts = FACTS
    expected: type[Exception] = KeyRequestRefused
    if case == "not_assigned":
        facts = ChainFacts(
            install_binding=BINDING, worker_active=True, worker_assigned=False, key_published=True
        )
    elif case == "inactive":
        facts = ChainFacts(
            install_binding=BINDING, worker_active=False, worker_assigned=True, key_published=True
        )
    elif case == "unpublished":
        facts = ChainFacts(
            install_binding=BINDING, worker_active=True, worker_assigned=True, key_published=False
        )
    elif case == "retired_keys":
        facts = msgspec.structs.replace(FACTS, requester_keys_retired=True)
    elif case == "retired_keys_of_the_publisher":
        facts = msgspec.structs.replace(PUBLISHER_FACTS, requester_keys_retired=True)
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


# ----------------------------------------------------------------------------- key versions


def own_enclave(gatekeeper: Gatekeeper) -> EnclaveContext:
    """The gatekeeper's enclave (an in-process EnclaveContext here), to sign its requests."""
    assert isinstance(gatekeeper.enclave, EnclaveContext)
    return gatekeeper.enclave


def versioned_facts(current: int, *, previous_open: bool = False) -> ChainFacts:
    """A published contract at key version ``current``, for an active assigned worker."""
    return ChainFacts(
        install_binding=BINDING,
        worker_active=True,
        worker_assigned=True,
        key_published=True,
        key_version=current,
        previous_version_open=previous_open,
    )


def combine_for(
    node: EnclaveContext, releases: list[PartialKeyRelease], key_id: bytes, group: GroupPublicKeys
) -> bytes:
    return combine_released_key(
        releases,
        node.decrypt_for_identity,
        contract_id=key_id,
        worker_id=node.identity.identity_key,
        group=group,
        binding=BINDING,
    )


PAIRS = ([0, 1], [1, 2], [0, 2])


def worker_key(gatekeepers: list[Gatekeeper], version: int, facts: ChainFacts) -> bytes:
    """Version ``version`` of the contract key, as a worker combines it from two partials
    (and the same from every pair of the three gatekeepers)."""
    node = enclave(GOOD)
    group = gatekeepers[0].committee.get_active().public
    releases = [
        g.release_partial(key_request(node, version=version), facts, NOW) for g in gatekeepers
    ]
    key_id = compute_key_id(CONTRACT_ID, version)
    assert all(r.contract_id == key_id for r in releases)
    keys = {combine_for(node, [releases[i] for i in pair], key_id, group) for pair in PAIRS}
    assert len(keys) == 1
    return keys.pop()


def rotation_facts(current: int, *, pending: bool = True) -> ChainFacts:
    """The publisher's facts while the deployer asked for version ``current + 1``."""
    return ChainFacts(
        install_binding=BINDING,
        worker_active=False,
        worker_assigned=False,
        key_published=True,
        requester_is_publisher=True,
        key_version=current,
        rotation_pending=pending,
    )


def publish_version(gatekeepers: list[Gatekeeper], version: int) -> PublishedContractKey:
    """Gatekeeper 0 publishes version ``version`` with gatekeeper 1's partial."""
    publisher = gatekeepers[0]
    request = key_request(own_enclave(publisher), version=version)
    peer = gatekeepers[1].release_partial(request, rotation_facts(version - 1), NOW)
    return publisher.publish_contract_key(
        PublishKeyRequest(
            contract_id=CONTRACT_ID,
            chain_id=31337,
            contract_registry_address=CONTRACTS,
            version=version,
        ),
        [peer],
    )


def test_each_key_version_is_another_key(gatekeepers: list[Gatekeeper]) -> None:
    key0 = worker_key(gatekeepers, 0, versioned_facts(0))
    key1 = worker_key(gatekeepers, 1, versioned_facts(1))
    key2 = worker_key(gatekeepers, 2, versioned_facts(2))
    assert len({key0, key1, key2}) == 3
    assert compute_key_id(CONTRACT_ID, 0) == CONTRACT_ID
    assert compute_key_id(CONTRACT_ID, 1) != CONTRACT_ID
    # the key does not depend on who asks: a second worker gets the same version 1
    assert worker_key(gatekeepers, 1, versioned_facts(1)) == key1
    keys0, keys1 = (
        compute_contract_keys(CONTRACT_ID, key0),
        compute_contract_keys(CONTRACT_ID, key1),
    )
    assert keys0.command_public_key != keys1.command_public_key
    assert keys0.message_public_key != keys1.message_public_key
    assert keys0.state_key != keys1.state_key and keys0.root_salt != keys1.root_salt


def test_a_rotation_is_published_with_the_new_version_keys_and_signed_for_rotate(
    gatekeepers: list[Gatekeeper],
) -> None:
    key0 = worker_key(gatekeepers, 0, versioned_facts(0))
    key1 = worker_key(gatekeepers, 1, versioned_facts(1))
    first = publish(gatekeepers)
    assert first.version == 0
    assert first.contract_public_key == compute_contract_keys(CONTRACT_ID, key0).command_public_key
    rotated = publish_version(gatekeepers, 1)
    expected = compute_contract_keys(CONTRACT_ID, key1)
    assert rotated.version == 1 and rotated.contract_id == CONTRACT_ID
    assert rotated.contract_public_key == expected.command_public_key
    assert rotated.message_key == expected.message_public_key
    assert rotated.contract_public_key != first.contract_public_key
    assert rotated.wrapped_key == b""
    publisher = to_checksum_address(gatekeepers[0].enclave.identity.eth_address)
    digest = compute_key_rotation_digest(
        contract_registry=CONTRACTS,
        chain_id=31337,
        contract_id=CONTRACT_ID,
        version=1,
        contract_public_key=expected.command_public_key,
        message_key=expected.message_public_key,
    )
    assert recover_signer(digest, rotated.signature) == publisher
    # the signature is for version 1's rotation only: not for a first publication of the
    # same keys, nor for another version
    as_publish = compute_contract_key_digest(
        contract_registry=CONTRACTS,
        chain_id=31337,
        contract_id=CONTRACT_ID,
        contract_public_key=expected.command_public_key,
        message_key=expected.message_public_key,
        wrapped_key=b"",
    )
    assert recover_signer(as_publish, rotated.signature) != publisher
    as_v2 = compute_key_rotation_digest(
        contract_registry=CONTRACTS,
        chain_id=31337,
        contract_id=CONTRACT_ID,
        version=2,
        contract_public_key=expected.command_public_key,
        message_key=expected.message_public_key,
    )
    assert recover_signer(as_v2, rotated.signature) != publisher
    # the first publication is signed with the publish digest, as before
    assert (
        recover_signer(
            compute_contract_key_digest(
                contract_registry=CONTRACTS,
                chain_id=31337,
                contract_id=CONTRACT_ID,
                contract_public_key=first.contract_public_key,
                message_key=first.message_key,
                wrapped_key=b"",
            ),
            first.signature,
        )
        == publisher
    )
    # version 2 is another key again
    assert publish_version(gatekeepers, 2).contract_public_key not in (
        first.contract_public_key,
        rotated.contract_public_key,
    )


def test_a_rotation_cannot_be_published_from_partials_of_another_version(
    gatekeepers: list[Gatekeeper],
) -> None:
    """The publisher's own partial is for the version's key id: a peer's partial of
    version 0 (released before the first publication) does not make up version 1."""
    publisher = gatekeepers[0]
    v0 = gatekeepers[1].release_partial(
        key_request(own_enclave(publisher)),
        PUBLISHER_FACTS,
        NOW,
    )
    with pytest.raises(KeyRequestRefused, match="combine"):
        publisher.publish_contract_key(
            PublishKeyRequest(
                contract_id=CONTRACT_ID,
                chain_id=31337,
                contract_registry_address=CONTRACTS,
                version=1,
            ),
            [v0],
        )


@pytest.mark.parametrize(
    ("current", "asked", "previous_open", "refusal"),
    [
        (1, 0, True, None),  # the previous version while no checkpoint under v1 is recorded
        (1, 0, False, "retired"),
        (2, 1, True, None),
        (2, 1, False, "retired"),
        (2, 0, True, "retired"),  # never two back
        (2, 0, False, "retired"),
        (5, 3, True, "retired"),
        (0, 1, False, "not published"),  # newer than the current version
        (0, 1, True, "not published"),
        (1, 2, True, "not published"),
        (1, 5, False, "not published"),
        (1, 1, False, None),  # the current version, always
        (1, 1, True, None),
        (0, 0, False, None),
    ],
)
def test_worker_version_rules(
    gatekeepers: list[Gatekeeper],
    current: int,
    asked: int,
    previous_open: bool,
    refusal: str | None,
) -> None:
    node = enclave(GOOD)
    request = key_request(node, version=asked)
    facts = versioned_facts(current, previous_open=previous_open)
    if refusal is not None:
        for g in gatekeepers:
            with pytest.raises(KeyRequestRefused, match=refusal):
                g.release_partial(request, facts, NOW)
        return
    releases = [g.release_partial(request, facts, NOW) for g in gatekeepers[:2]]
    group = gatekeepers[0].committee.get_active().public
    key = combine_for(node, releases, compute_key_id(CONTRACT_ID, asked), group)
    assert key == worker_key(gatekeepers, asked, versioned_facts(asked))


def test_a_worker_gets_no_next_version_even_while_a_rotation_is_pending(
    gatekeepers: list[Gatekeeper],
) -> None:
    facts = ChainFacts(
        install_binding=BINDING,
        worker_active=True,
        worker_assigned=True,
        key_published=True,
        key_version=1,
        rotation_pending=True,
        previous_version_open=True,
    )
    request = key_request(enclave(GOOD), version=2)
    with pytest.raises(KeyRequestRefused, match="not published"):
        gatekeepers[1].release_partial(request, facts, NOW)
    # nor a negative version
    with pytest.raises(KeyRequestRefused, match="negative"):
        gatekeepers[1].release_partial(key_request(enclave(GOOD), version=-1), facts, NOW)


def test_a_publisher_gets_the_next_version_only_while_a_rotation_is_pending(
    gatekeepers: list[Gatekeeper],
) -> None:
    publisher = own_enclave(gatekeepers[0])
    next_version = key_request(publisher, version=1)
    with pytest.raises(KeyRequestRefused, match="no rotation to key version 1 is pending"):
        gatekeepers[1].release_partial(next_version, rotation_facts(0, pending=False), NOW)
    release = gatekeepers[1].release_partial(next_version, rotation_facts(0), NOW)
    assert release.contract_id == compute_key_id(CONTRACT_ID, 1)
    assert release.worker_id == gatekeepers[0].identity_key
    # two ahead, the current one, or the one before: the publisher is no worker
    for asked, current in ((2, 0), (1, 1), (1, 2)):
        with pytest.raises(KeyRequestRefused, match="not an active registered worker"):
            gatekeepers[1].release_partial(
                key_request(publisher, version=asked),
                rotation_facts(current),
                NOW,
            )
    # version 0 stays refused once published, rotation pending or not
    with pytest.raises(KeyRequestRefused, match="already published"):
        gatekeepers[1].release_partial(key_request(publisher), rotation_facts(0), NOW)


def test_a_partial_of_one_version_does_not_combine_as_another(
    gatekeepers: list[Gatekeeper],
) -> None:
    node = enclave(GOOD)
    group = gatekeepers[0].committee.get_active().public
    facts = versioned_facts(1, previous_open=True)
    v1 = [g.release_partial(key_request(node, version=1), facts, NOW) for g in gatekeepers[:2]]
    v0 = [g.release_partial(key_request(node, version=0), facts, NOW) for g in gatekeepers[:2]]
    key1 = combine_for(node, v1, compute_key_id(CONTRACT_ID, 1), group)
    key0 = combine_for(node, v0, CONTRACT_ID, group)
    assert key0 != key1
    # as released: labelled for version 1's key id, refused as version 0
    with pytest.raises(BadRelease, match="another contract"):
        combine_for(node, v1, CONTRACT_ID, group)
    # relabelled: the associated data differs, so it does not decrypt
    relabelled = [msgspec.structs.replace(r, contract_id=CONTRACT_ID) for r in v1]
    with pytest.raises(BadRelease, match="does not decrypt"):
        combine_for(node, relabelled, CONTRACT_ID, group)
    # decrypted under its own label, the partial is a PRF share of version 1's input,
    # which does not verify against version 0's
    partials = open_partials(
        v1,
        node.decrypt_for_identity,
        contract_id=compute_key_id(CONTRACT_ID, 1),
        worker_id=node.identity.identity_key,
        binding=BINDING,
    )
    with pytest.raises(BadPartial, match="holder"):
        combine_contract_key(
            CONTRACT_ID,
            partials,
            threshold=group.threshold,
            group_public_key=group.group_public_key,
            public_shares=group.public_shares,
        )
    # one partial of each version does not make either key
    mixed = [v0[0], msgspec.structs.replace(v1[1], contract_id=CONTRACT_ID)]
    with pytest.raises(ThresholdError):
        combine_released_key(
            mixed,
            node.decrypt_for_identity,
            contract_id=CONTRACT_ID,
            worker_id=node.identity.identity_key,
            group=group,
            drop_bad=True,
        )
    # and the other way round: version 0's partials are not version 1's
    with pytest.raises(BadRelease, match="another contract"):
        combine_for(node, v0, compute_key_id(CONTRACT_ID, 1), group)


def test_a_share_of_an_era_the_chain_has_left_is_not_used(gatekeepers: list[Gatekeeper]) -> None:
    """A host that restores its enclave's committee state from before a rotation gets a
    share the committee retired; the era the chain names (read from a state proof by the
    enclave program) must be the share's, or nothing is released."""
    node = enclave(GOOD)
    current = gatekeepers[0].committee.current_era
    gatekeepers[0].release_partial(key_request(node), FACTS, NOW, committee_era=current)
    for era in (current + 1, current - 1):
        with pytest.raises(KeyRequestRefused, match="era"):
            gatekeepers[0].release_partial(key_request(node), FACTS, NOW, committee_era=era)


def test_a_worker_release_opens_only_under_the_install_facts_the_chain_records(
    gatekeepers: list[Gatekeeper],
) -> None:
    """The attack: a host anchors a fresh worker enclave on a chain of its own whose
    ContractDeployed names the host's code (or another executor set), so the install
    facts the enclave verifies are the host's. The gatekeepers bind each worker release
    to the facts they read from the chain: under any other facts it does not open."""
    node = enclave(GOOD)
    group = gatekeepers[0].committee.get_active().public
    releases = [g.release_partial(key_request(node), FACTS, NOW) for g in gatekeepers[:2]]
    assert combine_for(node, releases, CONTRACT_ID, group)
    for other in (
        compute_install_binding(b"\x66" * 32, b"\x05" * 32, INSTALL_WORKERS),  # host's code
        compute_install_binding(get_code_hash("token"), b"\x66" * 32, INSTALL_WORKERS),
        compute_install_binding(get_code_hash("token"), b"\x05" * 32, [node.identity.identity_key]),
        b"",
    ):
        with pytest.raises(BadRelease, match="does not decrypt"):
            combine_released_key(
                releases,
                node.decrypt_for_identity,
                contract_id=CONTRACT_ID,
                worker_id=node.identity.identity_key,
                group=group,
                binding=other,
            )
    # a gatekeeper that cannot read the facts (no such contract) releases nothing
    with pytest.raises(KeyRequestRefused, match="install facts"):
        gatekeepers[0].release_partial(
            key_request(node), msgspec.structs.replace(FACTS, install_binding=b""), NOW
        )
