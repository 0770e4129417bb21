"""The matcher enclave's journal: a restarted matcher replays its sealed journal into the
same state (book, owners, offers, pool) with the same operator key; another identity, a
tampered blob or a matcher that is not fresh cannot take it. Runs under the in-process
sim backend with real vault enclaves (their manifests and owner bindings)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sealbridge.core.encoding import decode, encode
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.keyrelease.auth import sign_client_request
from sealbridge.keyrelease.errors import AttestationRefused
from sealbridge.keyrelease.matcher import MatcherPolicy, MatcherStatus
from sealbridge.keyrelease.matcher_program import (
    MATCHER_PROGRAM,
    Accept,
    AcceptOrder,
    AddChunks,
    MatchAnswer,
    MatcherCard,
    MatcherConfig,
    RegisterOwner,
    SealedJournal,
    compute_config_hash,
    verify_matcher_card,
)
from sealbridge.keyrelease.types import Chunk, ChunkRequest, compute_chunk_id
from sealbridge.keyrelease.vault import (
    VAULT_PROGRAM,
    CreateKeys,
    OwnerBinding,
    OwnerRef,
    VaultConfig,
    VaultManifest,
)
from sealbridge.tee.errors import EnclaveCallError
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend, InProcessEnclaveHandle

USD = 10**8
BPS = 10_000
ETH = "ETH@31337"
WALLET_KEY = bytes(31) + b"\x07"  # the requester's wallet key (its account signs requests)
REQUESTER = ChainAdapter.address_of(WALLET_KEY)


def signed(service: bytes, nonce: int, action: str, body: object, key: bytes = WALLET_KEY) -> Any:
    return sign_client_request(key, service, nonce, action, encode(body))


def call(handle: InProcessEnclaveHandle, name: str, request: object = None) -> bytes:
    return handle.ecall(name, encode(request) if request is not None else b"")


def test_a_restarted_matcher_replays_its_journal(tmp_path: Path) -> None:
    platform = tmp_path / "platform.key"
    pub = create_sim_platform(platform)
    vault_policy = devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)])
    backend = InProcessBackend()
    ident = tmp_path / "matcher.identity"
    matcher = backend.launch(
        MATCHER_PROGRAM, platform_key_file=platform, sealed_identity_file=ident
    )
    policy = MatcherPolicy(
        chunk_usd_e8={ETH: 100 * USD}, max_owner_share_bps=5000, max_vault_share_bps=5000
    )
    call(matcher, "configure", MatcherConfig(policy=policy, vault_policy=vault_policy))
    handles = [matcher]
    manifests: list[VaultManifest] = []
    for owner_index in range(2):
        vault = backend.launch(VAULT_PROGRAM, platform_key_file=platform)
        handles.append(vault)
        call(vault, "configure", VaultConfig(policy=vault_policy))
        manifest = decode(call(vault, "create_keys", CreateKeys(count=3)), VaultManifest)
        manifests.append(manifest)
        account = "0x" + f"{owner_index + 1:02x}" * 20
        binding = decode(call(vault, "bind_owner", OwnerRef(account=account)), OwnerBinding)
        call(
            matcher,
            "register_owner",
            RegisterOwner(
                owner=account, bond_usd_e8=1_000 * USD, manifest=manifest, binding=binding
            ),
        )
        chunks = [
            Chunk(
                chunk_id=compute_chunk_id(manifest.vault, key.index),
                owner=account,
                vault=manifest.vault,
                asset=ETH,
                address=key.eth_address,
                amount=10**16,
                usd_e8=100 * USD,
            )
            for key in manifest.keys
        ]
        call(matcher, "add_chunks", AddChunks(chunks=chunks))
    card = decode(call(matcher, "card"), MatcherCard)
    service = card.node.identity_key
    request = ChunkRequest(
        request_id="r1", requester=REQUESTER, asset=ETH, usd_e8=200 * USD, contract="z"
    )
    answer = decode(call(matcher, "match", signed(service, 1, "match", request)), MatchAnswer)
    accept = Accept(request_id="r1", requester=REQUESTER)
    call(matcher, "accept", AcceptOrder(signed=signed(service, 2, "accept", accept)))
    with pytest.raises(EnclaveCallError):  # refused: not journaled, changes nothing
        call(matcher, "accept", AcceptOrder(signed=signed(service, 3, "accept", accept)))
    status = decode(call(matcher, "status"), MatcherStatus)
    sealed = decode(call(matcher, "seal"), SealedJournal)
    matcher.close()

    stranger = backend.launch(MATCHER_PROGRAM, platform_key_file=platform)
    handles.append(stranger)
    with pytest.raises(EnclaveCallError, match="another matcher identity"):
        call(stranger, "restore", sealed)
    restarted = backend.launch(
        MATCHER_PROGRAM, platform_key_file=platform, sealed_identity_file=ident
    )
    handles.append(restarted)
    tampered = SealedJournal(blob=sealed.blob[:-1] + bytes([sealed.blob[-1] ^ 1]))
    with pytest.raises(EnclaveCallError, match="does not open"):
        call(restarted, "restore", tampered)
    call(restarted, "restore", sealed)
    with pytest.raises(EnclaveCallError, match="fresh matcher"):
        call(restarted, "restore", sealed)
    again = decode(call(restarted, "card"), MatcherCard)
    assert (again.node, again.operator) == (card.node, card.operator)
    assert decode(call(restarted, "status"), MatcherStatus) == status
    assert status.chunks["allocated"] == 2 and len(answer.offer.chunks) == 2
    # it goes on from there: the allocated chunks are not offered again
    # (all four chunks left: exactly those the replayed draw did not allocate)
    more = ChunkRequest(
        request_id="r2", requester=REQUESTER, asset=ETH, usd_e8=400 * USD, contract="y"
    )
    # the replayed journal remembers the requester's nonces: an old one is a replay
    with pytest.raises(EnclaveCallError, match="replayed"):
        call(restarted, "match", signed(service, 2, "match", more))
    offer = decode(call(restarted, "match", signed(service, 4, "match", more)), MatchAnswer).offer
    every = {compute_chunk_id(m.vault, k.index) for m in manifests for k in m.keys}
    assert {c.chunk_id for c in offer.chunks} == every - {c.chunk_id for c in answer.offer.chunks}
    for handle in handles[1:]:
        handle.close()


def test_only_the_signing_account_acts_and_only_once(tmp_path: Path) -> None:
    """Issue 15, item 1, inside the matcher enclave: a match or an accept is taken only
    when signed by the requester's own key, for this matcher, with a fresh nonce; a
    refusal changes nothing (the host cannot act for a client it does not hold the key
    of, nor replay what the client signed)."""
    platform = tmp_path / "platform.key"
    pub = create_sim_platform(platform)
    vault_policy = devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)])
    backend = InProcessBackend()
    matcher = backend.launch(MATCHER_PROGRAM, platform_key_file=platform)
    policy = MatcherPolicy(
        chunk_usd_e8={ETH: 100 * USD}, max_owner_share_bps=BPS, max_vault_share_bps=BPS
    )
    call(matcher, "configure", MatcherConfig(policy=policy, vault_policy=vault_policy))
    vault = backend.launch(VAULT_PROGRAM, platform_key_file=platform)
    call(vault, "configure", VaultConfig(policy=vault_policy))
    manifest = decode(call(vault, "create_keys", CreateKeys(count=4)), VaultManifest)
    owner = "0x" + "01" * 20
    binding = decode(call(vault, "bind_owner", OwnerRef(account=owner)), OwnerBinding)
    call(
        matcher,
        "register_owner",
        RegisterOwner(owner=owner, bond_usd_e8=1_000 * USD, manifest=manifest, binding=binding),
    )
    chunks = [
        Chunk(
            chunk_id=compute_chunk_id(manifest.vault, key.index),
            owner=owner,
            vault=manifest.vault,
            asset=ETH,
            address=key.eth_address,
            amount=10**16,
            usd_e8=100 * USD,
        )
        for key in manifest.keys
    ]
    call(matcher, "add_chunks", AddChunks(chunks=chunks))
    service = decode(call(matcher, "card"), MatcherCard).node.identity_key
    request = ChunkRequest(
        request_id="r1", requester=REQUESTER, asset=ETH, usd_e8=100 * USD, contract="z"
    )
    mallory = bytes(31) + b"\x09"
    before = decode(call(matcher, "status"), MatcherStatus)
    refusals = [
        (encode(request), "SignedRequest"),  # unsigned, as the old host sent it
        (encode(signed(service, 1, "match", request, key=mallory)), "another account"),
        (encode(signed(bytes(32), 1, "match", request)), "another service"),
        (encode(signed(service, 1, "accept", request)), "'accept', not 'match'"),
        (encode(signed(service, 0, "match", request)), "nonce"),
    ]
    for payload, reason in refusals:
        with pytest.raises(EnclaveCallError, match=reason):
            matcher.ecall("match", payload)
        assert decode(call(matcher, "status"), MatcherStatus) == before
    offer = decode(call(matcher, "match", signed(service, 5, "match", request)), MatchAnswer)
    with pytest.raises(EnclaveCallError, match="replayed"):
        call(matcher, "match", signed(service, 5, "match", request))
    # the offer is the requester's: mallory's signed accept (naming her or the requester)
    # is refused, and so is a replay of the requester's own
    for accept, key in (
        (Accept(request_id="r1", requester=REQUESTER), mallory),
        (Accept(request_id="r1", requester=ChainAdapter.address_of(mallory)), mallory),
    ):
        with pytest.raises(EnclaveCallError, match="another requester"):
            order = AcceptOrder(signed=signed(service, 6, "accept", accept, key=key))
            call(matcher, "accept", order)
    mine = AcceptOrder(
        signed=signed(service, 6, "accept", Accept(request_id="r1", requester=REQUESTER))
    )
    assert decode(call(matcher, "accept", mine), type(offer.offer)) == offer.offer
    with pytest.raises(EnclaveCallError, match="replayed"):
        call(matcher, "accept", mine)
    for handle in (matcher, vault):
        handle.close()


def test_the_journal_persists_in_sealed_segments_that_only_continue_it(tmp_path: Path) -> None:
    """Issue 15, item 5 (persisting cost): after a base (``seal``), each change is sealed
    as a segment of the new entries only (``seal_tail``). A restore takes the base and the
    segments in order; a segment left out in the middle, two swapped, or one of another
    matcher are refused; segments the base already holds (a compaction the host did not
    finish) are skipped."""
    platform = tmp_path / "platform.key"
    pub = create_sim_platform(platform)
    vault_policy = devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)])
    backend = InProcessBackend()
    ident = tmp_path / "matcher.identity"
    matcher = backend.launch(
        MATCHER_PROGRAM, platform_key_file=platform, sealed_identity_file=ident
    )
    # found by attacking the anchoring: a blob sealed before configure held the operator
    # key and no anchor record; restored and configured without an anchor, it signed the
    # pool's transactions. Nothing is sealed before configure now.
    for name in ("seal", "seal_tail"):
        with pytest.raises(EnclaveCallError, match="not configured"):
            call(matcher, name)
    policy = MatcherPolicy(chunk_usd_e8={ETH: 100 * USD})
    call(matcher, "configure", MatcherConfig(policy=policy, vault_policy=vault_policy))
    base = decode(call(matcher, "seal"), SealedJournal).blob
    segments = []
    for _ in range(4):
        call(matcher, "expire")  # a journaled change
        segments.append(decode(call(matcher, "seal_tail"), SealedJournal).blob)
    later_base = decode(call(matcher, "seal"), SealedJournal).blob  # covers all four
    status = decode(call(matcher, "status"), MatcherStatus)
    matcher.close()
    other = backend.launch(MATCHER_PROGRAM, platform_key_file=platform)
    call(other, "configure", MatcherConfig(policy=policy, vault_policy=vault_policy))
    call(other, "seal")
    call(other, "expire")
    foreign = decode(call(other, "seal_tail"), SealedJournal).blob
    other.close()

    def restore(blob: bytes, parts: list[bytes]) -> InProcessEnclaveHandle:
        handle = backend.launch(
            MATCHER_PROGRAM, platform_key_file=platform, sealed_identity_file=ident
        )
        call(handle, "restore", SealedJournal(blob=blob, segments=parts))
        return handle

    for parts, reason in (
        ([segments[0], segments[2], segments[3]], "does not continue"),
        ([segments[1], segments[0], *segments[2:]], "does not continue"),
        ([*segments[:2], foreign], "does not open|another matcher"),
    ):
        with pytest.raises(EnclaveCallError, match=reason):
            restore(base, parts)
    for blob, parts in ((base, segments), (later_base, segments), (later_base, [])):
        handle = restore(blob, parts)
        assert decode(call(handle, "status"), MatcherStatus) == status
        handle.close()
    # a dropped tail is a rollback the host can still do (no monotonic counter yet)
    # (the restored matcher is at entry 3, so its new base continues with the dropped two)
    handle = restore(base, segments[:2])
    older_base = decode(call(handle, "seal"), SealedJournal).blob
    handle.close()
    handle = restore(older_base, segments[2:])
    assert decode(call(handle, "status"), MatcherStatus) == status
    handle.close()
    with pytest.raises(EnclaveCallError, match="does not continue"):
        restore(older_base, segments[3:])


def test_the_card_binds_the_configuration(tmp_path: Path) -> None:
    """Found by attacking the proofs: the card attested only the node keys and the
    operator, so a host could configure the matcher to read its facts from chains,
    tokens or a pool of its own, and nobody could tell. The quote now binds the
    configuration's hash: a client that expects another configuration refuses it."""
    platform = tmp_path / "platform.key"
    pub = create_sim_platform(platform)
    matcher_policy = devnet_policy(pub, [compute_sim_measurement(MATCHER_PROGRAM)])
    vault_policy = devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)])
    matcher = InProcessBackend().launch(MATCHER_PROGRAM, platform_key_file=platform)
    early = decode(call(matcher, "card"), MatcherCard)
    expected = MatcherConfig(
        policy=MatcherPolicy(chunk_usd_e8={ETH: 100 * USD}), vault_policy=vault_policy
    )
    verify_matcher_card(early, matcher_policy, time.time())  # attests, unconfigured
    with pytest.raises(AttestationRefused, match="not configured yet"):
        verify_matcher_card(early, matcher_policy, time.time(), config=expected)
    hosts = msgspec.structs.replace(
        expected, policy=MatcherPolicy(chunk_usd_e8={ETH: 100 * USD}, slash_multiple_bps=1)
    )
    call(matcher, "configure", hosts)
    card = decode(call(matcher, "card"), MatcherCard)
    assert card.config_hash == compute_config_hash(hosts)
    verify_matcher_card(card, matcher_policy, time.time(), config=hosts)
    with pytest.raises(AttestationRefused, match="not configured as expected"):
        verify_matcher_card(card, matcher_policy, time.time(), config=expected)
    forged = msgspec.structs.replace(card, config_hash=compute_config_hash(expected))
    with pytest.raises(AttestationRefused, match="does not attest"):
        verify_matcher_card(forged, matcher_policy, time.time(), config=expected)
    matcher.close()
