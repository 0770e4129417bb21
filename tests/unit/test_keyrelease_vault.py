"""The key vault enclave: attested deposit keys, contracts run inside, envelopes, sweeps.

Vaults run under the in-process sim backend here (same program, same ECALL bytes as the
enclave process; the e2e tests use real enclave processes and anvil chains).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import rlp
from eth_account import Account

from sealbridge.core.encoding import decode, encode
from sealbridge.crypto.signing import (
    ed25519_verify,
    eth_address,
    secp256k1_public,
    secp256k1_sign_hash,
    to_checksum_address,
)
from sealbridge.keyrelease.errors import (
    AlreadyReleased,
    AttestationRefused,
    ExchangeViolation,
    InvalidRequest,
    KeyReleaseError,
    LossClaimed,
)
from sealbridge.keyrelease.types import Chunk, compute_chunk_id
from sealbridge.keyrelease.vault import (
    VAULT_PROGRAM,
    ChunkRef,
    ContractRef,
    CreateKeys,
    Deliver,
    LossClaim,
    OpenEscrow,
    OpenSwap,
    OwnerBinding,
    OwnerRef,
    SealedState,
    SignedSweep,
    SignedWithdrawal,
    SweepRequest,
    VaultConfig,
    VaultManifest,
    VaultOutput,
    VaultStatus,
    WithdrawalRequest,
    compute_withdrawal_digest,
    verify_manifest,
    verify_vault_card,
    verify_vault_statement,
)
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.errors import EnclaveCallError
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend, InProcessEnclaveHandle

USD = 10**8
PROBE_PROGRAM = "sealbridge.tee.testing:EchoProgram"
KINDS = {"ETH@31337": "native", "TKN@31338": "erc20"}
FAR = 4_000_000_000.0
OWNER_KEY = bytes(31) + b"\x05"  # every test vault's owner (its wallet key)
OWNER = to_checksum_address(eth_address(secp256k1_public(OWNER_KEY, compressed=False)))


class Vault:
    def __init__(self, handle: InProcessEnclaveHandle, policy_bytes: bytes) -> None:
        self.handle = handle
        self.call("configure", decode(policy_bytes, VaultConfig))
        self.card = decode(self.call("card"), AttestedCard)
        self.manifest = decode(self.call("create_keys", CreateKeys(count=6)), VaultManifest)
        self.call("bind_owner", OwnerRef(account=OWNER))

    def call(self, name: str, request: msgspec.Struct | None = None) -> bytes:
        return self.handle.ecall(name, encode(request) if request is not None else b"")

    def chunk(self, index: int, asset: str = "ETH@31337") -> Chunk:
        key = self.manifest.keys[index]
        return Chunk(
            chunk_id=compute_chunk_id(self.card.identity_hex, index),
            owner=key.eth_address,
            vault=self.card.identity_hex,
            asset=asset,
            address=key.eth_address,
            amount=10**16,
            usd_e8=100 * USD,
        )

    def status(self) -> VaultStatus:
        return decode(self.call("status"), VaultStatus)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("vault") / "platform.key"
    return path, create_sim_platform(path)


@pytest.fixture()
def vaults(platform: tuple[Path, bytes]) -> Iterator[tuple[Vault, Vault, Vault]]:
    path, pub = platform
    policy = devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)])
    config = encode(VaultConfig(policy=policy))
    backend = InProcessBackend()
    handles = [backend.launch(VAULT_PROGRAM, platform_key_file=path) for _ in range(2)]
    handles.append(backend.launch(VAULT_PROGRAM, platform_key_file=path, simulate_compromise=True))
    yield Vault(handles[0], config), Vault(handles[1], config), Vault(handles[2], config)
    for handle in handles:
        handle.close()


def test_manifest_binds_every_public_key(
    vaults: tuple[Vault, Vault, Vault], platform: tuple[Path, bytes]
) -> None:
    alice, _, _ = vaults
    policy = devnet_policy(platform[1], [compute_sim_measurement(VAULT_PROGRAM)])
    manifest = alice.manifest
    verify_manifest(manifest, policy, now=manifest_time())
    assert len(manifest.keys) == 6 and len({k.eth_address for k in manifest.keys}) == 6
    for key in manifest.keys:
        assert key.eth_address == to_checksum_address(eth_address(key.public_key))
        assert key.btc_address.startswith("bcrt1q")
    # swapping in another key (an address the enclave does not hold) breaks the binding
    other = secp256k1_public(b"\x07" * 32)
    forged_key = msgspec.structs.replace(
        manifest.keys[0],
        public_key=other,
        eth_address=to_checksum_address(eth_address(other)),
    )
    forged = msgspec.structs.replace(manifest, keys=[forged_key, *manifest.keys[1:]])
    with pytest.raises(AttestationRefused, match="does not attest"):
        verify_manifest(forged, policy, now=manifest_time())
    # an address that does not derive from its key is refused before the quote
    bad = msgspec.structs.replace(manifest.keys[1], eth_address=manifest.keys[2].eth_address)
    with pytest.raises(AttestationRefused, match="address does not match"):
        verify_manifest(msgspec.structs.replace(manifest, keys=[bad]), policy, manifest_time())
    # a quote from another program does not attest a vault
    other_policy = devnet_policy(platform[1], [compute_sim_measurement(PROBE_PROGRAM)])
    with pytest.raises(AttestationRefused):
        verify_manifest(manifest, other_policy, now=manifest_time())
    verify_vault_card(alice.card, policy, now=manifest_time())


def manifest_time() -> float:
    import time

    return time.time()


def _swap(a: Vault, b: Vault, k: int, swap_id: str = "swap:1") -> tuple[list[Chunk], list[Chunk]]:
    mine = [a.chunk(i) for i in range(k)]
    theirs = [b.chunk(i, "TKN@31338") for i in range(k)]
    return mine, theirs


def _open(a: Vault, b: Vault, k: int, swap_id: str = "swap:1") -> VaultOutput:
    a_chunks, b_chunks = _swap(a, b, k)
    out_b = decode(
        b.call(
            "open_swap",
            OpenSwap(
                swap_id=swap_id,
                role="B",
                mine=b_chunks,
                theirs=a_chunks,
                kinds=KINDS,
                deadline=FAR,
                counterparty=a.card,
            ),
        ),
        VaultOutput,
    )
    assert out_b.releases == []
    return decode(
        a.call(
            "open_swap",
            OpenSwap(
                swap_id=swap_id,
                role="A",
                mine=a_chunks,
                theirs=b_chunks,
                kinds=KINDS,
                deadline=FAR,
                counterparty=b.card,
            ),
        ),
        VaultOutput,
    )


def _sweep(vault: Vault, chunk_id: str) -> SignedSweep:
    request = SweepRequest(
        chunk_id=chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=10**9,
    )
    return decode(vault.call("sign_sweep", request), SignedSweep)


def test_a_swap_between_two_vaults_exchanges_every_key(vaults: tuple[Vault, Vault, Vault]) -> None:
    alice, bob, _ = vaults
    out = _open(alice, bob, 3)
    sweeps: dict[str, list[str]] = {"alice": [], "bob": []}
    turn, other = bob, alice
    names = {id(alice): "alice", id(bob): "bob"}
    first = True
    while out.releases:
        (envelope,) = out.releases
        out = decode(turn.call("deliver", Deliver(envelope=envelope)), VaultOutput)
        if out.sweeps:
            # the release for this key is held until the received chunk is swept
            assert out.releases == []
            if first:
                with pytest.raises(EnclaveCallError) as info:
                    turn.call("proceed", ContractRef(contract="swap:1"))
                assert "not swept yet" in str(info.value)
                first = False
            for chunk_id in out.sweeps:
                _sweep(turn, chunk_id)
            sweeps[names[id(turn)]] += out.sweeps
            out = decode(turn.call("proceed", ContractRef(contract="swap:1")), VaultOutput)
        turn, other = other, turn
    assert sweeps["bob"] == [alice.chunk(i).chunk_id for i in range(3)]
    assert sweeps["alice"] == [bob.chunk(i, "TKN@31338").chunk_id for i in range(3)]
    for vault in (alice, bob):
        (status,) = vault.status().contracts
        assert status.status == "completed" and status.given == status.received == 3
        assert status.exposure_usd_e8 == 0
        assert vault.status().keys == {"released": 3, "free": 3}


def test_a_held_release_is_never_made_after_an_abort(vaults: tuple[Vault, Vault, Vault]) -> None:
    """Bob receives a_1 and finds it empty: he aborts instead of sweeping; b_1 was held
    back, so it is never released and goes back to him; he can claim the loss."""
    alice, bob, _ = vaults
    out = _open(alice, bob, 2)
    (envelope,) = out.releases
    out = decode(bob.call("deliver", Deliver(envelope=envelope)), VaultOutput)
    assert out.sweeps == [alice.chunk(0).chunk_id] and out.releases == []
    (status,) = bob.status().contracts
    assert status.exposure_usd_e8 == -100 * USD  # received one, gave none
    claim = decode(bob.call("claim_loss", ChunkRef(chunk_id=alice.chunk(0).chunk_id)), LossClaim)
    ed25519_verify(bob.card.node.identity_key, claim.get_body(), claim.signature)
    assert claim.vault == bob.card.node.identity_key and claim.contract == "swap:1"
    decode(bob.call("abort", ContractRef(contract="swap:1")), VaultOutput)
    assert decode(bob.call("proceed", ContractRef(contract="swap:1")), VaultOutput).releases == []
    assert bob.status().keys == {"free": 6}
    # a claimed chunk is never swept (it would be paid twice), an unknown one is not
    # claimable (that a swept one is not either: test_a_swept_chunk_is_no_loss)
    with pytest.raises(EnclaveCallError) as info:
        _sweep(bob, alice.chunk(0).chunk_id)
    assert info.value.remote_code == LossClaimed.code
    with pytest.raises(EnclaveCallError) as info:
        bob.call("claim_loss", ChunkRef(chunk_id=alice.chunk(1).chunk_id))
    assert info.value.remote_code == InvalidRequest.code


def test_a_swept_chunk_is_no_loss(vaults: tuple[Vault, Vault, Vault]) -> None:
    alice, bob, _ = vaults
    out = _open(alice, bob, 2)
    out = decode(bob.call("deliver", Deliver(envelope=out.releases[0])), VaultOutput)
    (chunk_id,) = out.sweeps
    _sweep(bob, chunk_id)
    with pytest.raises(EnclaveCallError) as info:
        bob.call("claim_loss", ChunkRef(chunk_id=chunk_id))
    assert info.value.remote_code == InvalidRequest.code


def test_bad_envelopes_change_nothing(vaults: tuple[Vault, Vault, Vault]) -> None:
    alice, bob, carol = vaults
    out = _open(alice, bob, 2)
    (envelope,) = out.releases
    before = bob.status()
    forged = [
        msgspec.structs.replace(envelope, signature=bytes(64)),
        # (one bit flipped: setting the last byte to 0 left it intact one time in 256)
        msgspec.structs.replace(
            envelope, ciphertext=envelope.ciphertext[:-1] + bytes([envelope.ciphertext[-1] ^ 1])
        ),
        msgspec.structs.replace(envelope, recipient=carol.card.node.identity_key),
        msgspec.structs.replace(envelope, sender=carol.card.node.identity_key),
        msgspec.structs.replace(envelope, chunk_id=alice.chunk(1).chunk_id),
    ]
    for bad in forged:
        with pytest.raises(EnclaveCallError) as info:
            bob.call("deliver", Deliver(envelope=bad))
        assert info.value.remote_code == ExchangeViolation.code
    with pytest.raises(EnclaveCallError) as info:
        bob.call("deliver", Deliver(envelope=msgspec.structs.replace(envelope, contract="x")))
    assert info.value.remote_code == InvalidRequest.code
    assert bob.status() == before
    # the honest envelope still works afterwards, and only once
    decode(bob.call("deliver", Deliver(envelope=envelope)), VaultOutput)
    with pytest.raises(EnclaveCallError) as info:
        bob.call("deliver", Deliver(envelope=envelope))
    assert info.value.remote_code == ExchangeViolation.code


def test_a_bound_key_is_not_bound_twice_and_an_honest_vault_does_not_leak(
    vaults: tuple[Vault, Vault, Vault],
) -> None:
    alice, bob, _ = vaults
    _open(alice, bob, 2)
    with pytest.raises(EnclaveCallError) as info:
        _open(alice, bob, 2, swap_id="swap:2")  # bob's side opens, alice's keys are bound
    assert info.value.remote_code == AlreadyReleased.code
    with pytest.raises(EnclaveCallError) as info:
        alice.call("leak", ChunkRef(chunk_id=alice.chunk(0).chunk_id))
    assert info.value.remote_code == KeyReleaseError.code


def test_a_compromised_vault_leaks_its_keys(vaults: tuple[Vault, Vault, Vault]) -> None:
    _, _, mallory = vaults
    assert mallory.status().compromised
    secret = mallory.call("leak", ChunkRef(chunk_id=mallory.chunk(0).chunk_id))
    assert to_checksum_address(eth_address(secp256k1_public(secret))) == mallory.chunk(0).address


def test_sweeps_move_funds_to_a_fresh_key(vaults: tuple[Vault, Vault, Vault]) -> None:
    alice, _, _ = vaults
    chunk = alice.chunk(5)
    request = SweepRequest(
        chunk_id=chunk.chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=2 * 10**9,
        max_priority_fee_per_gas=10**9,
    )
    signed = decode(alice.call("sign_sweep", request), SignedSweep)
    assert Account.recover_transaction(signed.raw_tx) == chunk.address
    fields = rlp.decode(signed.raw_tx[1:])
    assert int.from_bytes(fields[6], "big") == signed.amount == 10**16 - 21_000 * 2 * 10**9
    assert to_checksum_address(bytes(fields[5])) == signed.destination != chunk.address
    with pytest.raises(EnclaveCallError) as info:  # swept once
        alice.call("sign_sweep", request)
    assert info.value.remote_code == AlreadyReleased.code
    token = alice.chunk(4, "TKN@31338")
    erc20 = msgspec.structs.replace(
        request,
        chunk_id=token.chunk_id,
        kind="erc20",
        token="0x" + "11" * 20,
        token_balance=5 * 10**18,
    )
    signed = decode(alice.call("sign_sweep", erc20), SignedSweep)
    fields = rlp.decode(signed.raw_tx[1:])
    assert bytes(fields[5]) == bytes.fromhex("11" * 20)
    assert bytes(fields[7])[:4] == bytes.fromhex("a9059cbb") and signed.amount == 5 * 10**18
    for bad in (
        msgspec.structs.replace(request, chunk_id=alice.chunk(3).chunk_id, balance=1000),
        msgspec.structs.replace(request, chunk_id=alice.chunk(3).chunk_id, kind="btc"),
        msgspec.structs.replace(request, chunk_id=alice.chunk(3).chunk_id, nonce=-1),
        # found by attacking the bitcoin sweeps (the same gap): a host-named fee that
        # pays most of the chunk to the block's builder (here 20 % of it)
        msgspec.structs.replace(
            request,
            chunk_id=alice.chunk(3).chunk_id,
            max_fee_per_gas=10**16 // 5 // 21_000,
            max_priority_fee_per_gas=10**9,
        ),
    ):
        with pytest.raises(EnclaveCallError) as info:
            alice.call("sign_sweep", bad)
        assert info.value.remote_code == InvalidRequest.code
    assert alice.chunk(3).chunk_id not in alice.status().swept


def test_an_escrow_releases_at_unlock_and_not_before(vaults: tuple[Vault, Vault, Vault]) -> None:
    alice, bob, _ = vaults
    import time

    chunks = [alice.chunk(0), alice.chunk(1)]
    unlock = time.time() + 0.5
    for vault, role, other in ((bob, "beneficiary", alice), (alice, "depositor", bob)):
        vault.call(
            "open_escrow",
            OpenEscrow(
                escrow_id="escrow:1",
                role=role,
                chunks=chunks,
                kinds=KINDS,
                unlock_at=unlock,
                counterparty=other.card,
            ),
        )
    early = decode(alice.call("tick", ContractRef(contract="escrow:1")), VaultOutput)
    assert early.releases == []
    time.sleep(max(0.0, unlock - time.time()) + 0.05)
    out = decode(alice.call("tick", ContractRef(contract="escrow:1")), VaultOutput)
    assert [e.chunk_id for e in out.releases] == [c.chunk_id for c in chunks]
    swept: list[str] = []
    for envelope in out.releases:
        swept += decode(bob.call("deliver", Deliver(envelope=envelope)), VaultOutput).sweeps
    assert swept == [c.chunk_id for c in chunks]
    with pytest.raises(EnclaveCallError):
        alice.call("cancel_escrow", ContractRef(contract="escrow:1"))


def test_a_vault_restarts_from_its_sealed_state_mid_swap(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    """Bob's vault is killed while it holds a received key and a held-back release; the
    same identity restores the sealed state, sweeps, proceeds, and the swap completes."""
    path, pub = platform
    config = encode(
        VaultConfig(policy=devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)]))
    )
    backend = InProcessBackend()
    ident = tmp_path / "bob.identity"
    alice = Vault(backend.launch(VAULT_PROGRAM, platform_key_file=path), config)
    bob = Vault(
        backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident), config
    )
    out = _open(alice, bob, 2)
    out = decode(bob.call("deliver", Deliver(envelope=out.releases[0])), VaultOutput)
    assert out.sweeps and not out.releases
    blob = decode(bob.call("seal"), SealedState)
    before = bob.status()
    bob.handle.close()
    # another identity cannot take the state, a tampered blob does not open
    stranger = backend.launch(VAULT_PROGRAM, platform_key_file=path)
    with pytest.raises(EnclaveCallError, match="another vault identity"):
        stranger.ecall("restore", encode(blob))
    restarted = backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident)
    bad = SealedState(blob=blob.blob[:-1] + bytes([blob.blob[-1] ^ 1]))
    with pytest.raises(EnclaveCallError, match="does not open"):
        restarted.ecall("restore", encode(bad))
    restarted.ecall("restore", encode(blob))
    with pytest.raises(EnclaveCallError, match="fresh vault"):
        restarted.ecall("restore", encode(blob))
    bob.handle = restarted
    assert bob.status() == before
    for chunk_id in out.sweeps:
        _sweep(bob, chunk_id)
    out = decode(bob.call("proceed", ContractRef(contract="swap:1")), VaultOutput)
    while out.releases:
        (envelope,) = out.releases
        target = alice if envelope.recipient == alice.card.node.identity_key else bob
        out = decode(target.call("deliver", Deliver(envelope=envelope)), VaultOutput)
        for chunk_id in out.sweeps:
            _sweep(target, chunk_id)
        if out.sweeps:
            out = decode(target.call("proceed", ContractRef(contract="swap:1")), VaultOutput)
    for vault in (alice, bob):
        (status,) = vault.status().contracts
        assert status.status == "completed" and status.given == status.received == 2
    for handle in (alice.handle, stranger, restarted):
        handle.close()


def test_a_vault_vouches_for_one_owner(vaults: tuple[Vault, Vault, Vault]) -> None:
    alice, _, _ = vaults
    account = OWNER  # (the test vaults are bound to it at creation)
    binding = decode(alice.call("bind_owner", OwnerRef(account=account)), OwnerBinding)
    verify_vault_statement(binding, alice.card.node.identity_key)
    assert binding.account == account
    alice.call("bind_owner", OwnerRef(account=account))  # the same owner again: fine
    with pytest.raises(EnclaveCallError) as info:
        alice.call("bind_owner", OwnerRef(account="0x" + "cd" * 20))
    assert info.value.remote_code == AlreadyReleased.code
    with pytest.raises(AttestationRefused):
        verify_vault_statement(
            msgspec.structs.replace(binding, account="0x" + "cd" * 20), alice.card.node.identity_key
        )


def test_a_claimed_chunk_is_never_swept(vaults: tuple[Vault, Vault, Vault]) -> None:
    """Found by attacking the insurance (issue 15): a vault signed a loss claim for a
    received chunk and its host then had it sweep that chunk anyway, to be paid twice.
    A claim now marks the key: no sweep of it is ever signed, and the claim names the
    one address the vault would ever sweep the chunk to."""
    alice, bob, _ = vaults
    out = _open(alice, bob, 2)
    out = decode(bob.call("deliver", Deliver(envelope=out.releases[0])), VaultOutput)
    (chunk_id,) = out.sweeps
    claim = decode(bob.call("claim_loss", ChunkRef(chunk_id=chunk_id)), LossClaim)
    ed25519_verify(bob.card.node.identity_key, claim.get_body(), claim.signature)
    request = SweepRequest(
        chunk_id=chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=2 * 10**9,
        max_priority_fee_per_gas=10**9,
    )
    with pytest.raises(EnclaveCallError) as info:
        bob.call("sign_sweep", request)
    assert info.value.remote_code == LossClaimed.code
    # claiming again gives the same word (a host that lost the first answer)
    again = decode(bob.call("claim_loss", ChunkRef(chunk_id=chunk_id)), LossClaim)
    assert again.get_body() == claim.get_body()
    # (the mark is sealed with the rest: see the rollback test below)


def test_a_sweep_made_before_a_rollback_is_named_by_the_later_claim(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    """The same attack through a rollback: the host seals bob's vault while it holds a
    received key, has it sweep the chunk, restores the older sealed state and claims the
    loss. The sweep went to the key derived for that chunk, and the claim names exactly
    that address, so the matcher sees the funds went to bob's own vault."""
    path, pub = platform
    config = encode(
        VaultConfig(policy=devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)]))
    )
    backend = InProcessBackend()
    ident = tmp_path / "bob.identity"
    alice = Vault(backend.launch(VAULT_PROGRAM, platform_key_file=path), config)
    bob = Vault(
        backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident), config
    )
    out = _open(alice, bob, 2)
    out = decode(bob.call("deliver", Deliver(envelope=out.releases[0])), VaultOutput)
    (chunk_id,) = out.sweeps
    older = decode(bob.call("seal"), SealedState)
    swept = _sweep(bob, chunk_id)
    bob.handle.close()
    rolled_back = backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident)
    rolled_back.ecall("restore", encode(older))
    claim = decode(rolled_back.ecall("claim_loss", encode(ChunkRef(chunk_id=chunk_id))), LossClaim)
    assert claim.sweep_address == swept.destination
    # and a claimed key stays claimed across a restart from the state sealed after it
    claimed = decode(rolled_back.ecall("seal", b""), SealedState)
    rolled_back.close()
    again = backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident)
    again.ecall("restore", encode(claimed))
    request = SweepRequest(
        chunk_id=chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=10**9,
    )
    with pytest.raises(EnclaveCallError) as info:
        again.ecall("sign_sweep", encode(request))
    assert info.value.remote_code == LossClaimed.code
    again.close()
    alice.handle.close()


def test_a_second_process_of_the_vault_sweeps_to_the_claimed_address(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    """Found by attacking the fix: the sweep seed was random per process, so a hostile
    host started a second process of bob's identity (no restore), delivered the same
    envelope there, swept the chunk to that process's own key and had the first one
    claim. The seed now comes from the sealed identity: every process sweeps a chunk to
    the same address, the one the claim names."""
    path, pub = platform
    config = encode(
        VaultConfig(policy=devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)]))
    )
    backend = InProcessBackend()
    ident = tmp_path / "bob.identity"
    alice = Vault(backend.launch(VAULT_PROGRAM, platform_key_file=path), config)
    bob = Vault(
        backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident), config
    )
    out = _open(alice, bob, 2)
    envelope = out.releases[0]
    (chunk_id,) = decode(bob.call("deliver", Deliver(envelope=envelope)), VaultOutput).sweeps
    twin = backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=ident)
    twin.ecall("configure", config)
    # the host binds the twin to an account of its own (the twin holds nothing yet)
    twin.ecall("bind_owner", encode(OwnerRef(account=to_checksum_address(b"\x66" * 20))))
    escrow = OpenEscrow(
        escrow_id="swap:1",
        role="beneficiary",
        chunks=[alice.chunk(0)],
        kinds=KINDS,
        unlock_at=FAR,
        counterparty=alice.card,
    )
    twin.ecall("open_escrow", encode(escrow))
    assert decode(twin.ecall("deliver", encode(Deliver(envelope=envelope))), VaultOutput).sweeps
    request = SweepRequest(
        chunk_id=chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=10**9,
    )
    swept = decode(twin.ecall("sign_sweep", encode(request)), SignedSweep)
    claim = decode(bob.call("claim_loss", ChunkRef(chunk_id=chunk_id)), LossClaim)
    assert claim.sweep_address == swept.destination
    # and a chunk is received once: a second envelope for it is refused before the
    # contract sees it (it would turn the claimed key back into a sweepable one)
    with pytest.raises(EnclaveCallError) as info:
        bob.call("deliver", Deliver(envelope=envelope))
    assert info.value.remote_code == ExchangeViolation.code
    for handle in (alice.handle, bob.handle, twin):
        handle.close()


def test_only_the_owner_withdraws_what_a_sweep_brought(vaults: tuple[Vault, Vault, Vault]) -> None:
    """Issue 15, item 6: swept funds sit at the chunk's sweep key; the vault signs their
    withdrawal to an address its bound owner names, signed by the owner's wallet key."""
    alice, bob, _ = vaults
    out = _open(alice, bob, 2)
    (chunk_id,) = decode(bob.call("deliver", Deliver(envelope=out.releases[0])), VaultOutput).sweeps
    swept = _sweep(bob, chunk_id)
    owner_key, stranger_key = bytes(31) + b"\x05", bytes(31) + b"\x06"
    destination = to_checksum_address(b"\x42" * 20)
    sweep = SweepRequest(
        chunk_id=chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**15,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=10**9,
    )
    order = WithdrawalRequest(vault=bob.card.identity_hex, destination=destination, sweep=sweep)

    def withdraw(request: WithdrawalRequest, key: bytes) -> bytes:
        signature = secp256k1_sign_hash(key, compute_withdrawal_digest(request))
        return bob.call("withdraw", SignedWithdrawal(request=request, signature=signature))

    # bob's vault is bound to its owner (at creation): nobody else may bind it now
    with pytest.raises(EnclaveCallError, match="bound to"):
        bob.call("bind_owner", OwnerRef(account=to_checksum_address(b"\x66" * 20)))
    refusals = [
        (order, stranger_key, "not signed by this vault's owner"),
        (msgspec.structs.replace(order, vault=alice.card.identity_hex), owner_key, "another vault"),
        (
            msgspec.structs.replace(
                order, sweep=msgspec.structs.replace(sweep, chunk_id=alice.chunk(1).chunk_id)
            ),
            owner_key,
            "not swept by this vault",
        ),
        (msgspec.structs.replace(order, destination="0x1234"), owner_key, "not an address"),
        (msgspec.structs.replace(order, destination="0x" + "00" * 20), owner_key, "not an"),
    ]
    for request, key, reason in refusals:
        with pytest.raises(EnclaveCallError, match=reason):
            withdraw(request, key)
    signed = decode(withdraw(order, owner_key), SignedSweep)
    assert Account.recover_transaction(signed.raw_tx) == swept.destination
    assert signed.destination == destination
    assert signed.amount == 10**15 - 21_000 * 10**9


def test_an_unbound_vault_moves_no_key(platform: tuple[Path, bytes]) -> None:
    """Found by attacking the withdrawal: a requester's vault was bound lazily, at the
    first withdrawal, so its host could bind its own account first and withdraw what the
    vault swept. Keys now move only in a bound vault (the devnet binds at creation)."""
    path, pub = platform
    config = encode(
        VaultConfig(policy=devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)]))
    )
    backend = InProcessBackend()
    alice = Vault(backend.launch(VAULT_PROGRAM, platform_key_file=path), config)
    bob = backend.launch(VAULT_PROGRAM, platform_key_file=path)
    bob.ecall("configure", config)
    bob.ecall("create_keys", encode(CreateKeys(count=2)))
    with pytest.raises(EnclaveCallError, match="not bound"):
        bob.ecall(
            "sign_sweep",
            encode(
                SweepRequest(
                    chunk_id=alice.chunk(0).chunk_id,
                    chain_id=31337,
                    kind="native",
                    nonce=0,
                    balance=10**16,
                    max_fee_per_gas=10**9,
                    max_priority_fee_per_gas=10**9,
                )
            ),
        )
    for handle in (alice.handle, bob):
        handle.close()
