"""The matcher enclave's journal: a restarted matcher replays its sealed journal into the
same state (book, owners, offers, pool) with the same operator key; another identity, a
tampered blob or a matcher that is not fresh cannot take it. Runs under the in-process
sim backend with real vault enclaves (their manifests and owner bindings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.core.encoding import decode, encode
from sealbridge.keyrelease.matcher import MatcherPolicy, MatcherStatus
from sealbridge.keyrelease.matcher_program import (
    MATCHER_PROGRAM,
    Accept,
    AddChunks,
    MatchAnswer,
    MatcherCard,
    MatcherConfig,
    RegisterOwner,
    SealedJournal,
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
ETH = "ETH@31337"


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
    request = ChunkRequest(
        request_id="r1", requester="0x" + "ee" * 20, asset=ETH, usd_e8=200 * USD, contract="z"
    )
    answer = decode(call(matcher, "match", request), MatchAnswer)
    call(matcher, "accept", Accept(request_id="r1"))
    with pytest.raises(EnclaveCallError):  # refused: not journaled, changes nothing
        call(matcher, "accept", Accept(request_id="r1"))
    card = decode(call(matcher, "card"), MatcherCard)
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
        request_id="r2", requester="0x" + "ee" * 20, asset=ETH, usd_e8=400 * USD, contract="y"
    )
    offer = decode(call(restarted, "match", more), MatchAnswer).offer
    every = {compute_chunk_id(m.vault, k.index) for m in manifests for k in m.keys}
    assert {c.chunk_id for c in offer.chunks} == every - {c.chunk_id for c in answer.offer.chunks}
    for handle in handles[1:]:
        handle.close()
