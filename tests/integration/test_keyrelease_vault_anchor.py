"""A vault's (and the matcher's) sealed state against its own host (issue 15, item 5):
every change is anchored on chain (StateAnchor) before its output leaves the enclave, so
an older sealed blob is refused at restore and two copies of one state cannot both act.

Real parts: the vault program (in-process enclave handles sharing a sealed identity, as
a restarted process would), anvil, the StateAnchor contract, ``eth_getProof``, and the
devnet's vault host (``node.keyrelease._Vault``), which relays anchors and proofs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealbridge.chain.abi import sign_digest
from sealbridge.chain.anchor import compute_anchor_digest
from sealbridge.chain.errors import TransactionReverted
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import SealbridgeError
from sealbridge.crypto.signing import secp256k1_sign_hash
from sealbridge.devnet.keyrelease import _Vault
from sealbridge.devnet.utxo_ledger import UtxoLedger
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.state_anchor import StateAnchor, deploy_state_anchor
from sealbridge.keyrelease.bitcoin import derive_p2wpkh
from sealbridge.keyrelease.freshness import AnchorBinding, Guarded
from sealbridge.keyrelease.types import Chunk, compute_chunk_id
from sealbridge.keyrelease.vault import (
    VAULT_ATTEST_UNRELEASED,
    VAULT_BIND_OWNER,
    VAULT_CARD,
    VAULT_CONFIGURE,
    VAULT_CREATE_KEYS,
    VAULT_DELIVER,
    VAULT_OPEN_SWAP,
    VAULT_PROGRAM,
    VAULT_SIGN_SWEEP,
    VAULT_WITHDRAW_BTC,
    BtcSweepRequest,
    BtcWithdrawalRequest,
    ChunkRef,
    CreateKeys,
    Deliver,
    LossClaim,
    OpenSwap,
    OwnerRef,
    SignedBtcSweep,
    SignedBtcWithdrawal,
    SignedSweep,
    SweepRequest,
    VaultConfig,
    VaultManifest,
    compute_btc_withdrawal_digest,
)
from sealbridge.keyservice.chainfacts import HeaderTip
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.ecall import NOTHING
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend

USD = 10**8
KINDS = {"ETH@31337": "native", "TKN@31338": "erc20"}
FAR = 4_000_000_000.0


@dataclass
class Env:
    adapter: ChainAdapter
    anchor: StateAnchor
    platform: Path
    config: VaultConfig
    backend: InProcessBackend
    tmp: Path

    def launch(self, name: str) -> _Vault:
        """A vault process of identity ``name`` (its sealed identity file is kept)."""
        handle = self.backend.launch(
            VAULT_PROGRAM,
            platform_key_file=self.platform,
            sealed_identity_file=self.tmp / f"{name}.identity",
        )
        return _Vault(handle, self.tmp / f"{name}.sealed", self.anchor, self.adapter.get_dev_key(1))

    def new_vault(self, name: str) -> tuple[_Vault, VaultManifest, AttestedCard]:
        vault = self.launch(name)
        start = self.adapter.get_block("latest")
        vault.header_tip = start.number
        binding = AnchorBinding(
            chain_id=self.adapter.chain_id,
            contract=self.anchor.address,
            start=HeaderTip(number=start.number, block_hash=start.hash),
        )
        vault.call(VAULT_CONFIGURE, VaultConfig(policy=self.config.policy, anchor=binding))
        owner = ChainAdapter.address_of(self.adapter.get_dev_key(2))
        vault.call(VAULT_BIND_OWNER, OwnerRef(account=owner))
        manifest = vault.call(VAULT_CREATE_KEYS, CreateKeys(count=4))
        card = vault.call(VAULT_CARD, NOTHING)
        return vault, manifest, card


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("vault-anchor")
    node = AnvilNode(chain_id=31337).start()
    try:
        adapter = node.adapter()
        anchor = StateAnchor(adapter, deploy_state_anchor(adapter, adapter.get_dev_key(0)))
        platform = tmp / "platform.key"
        policy = devnet_policy(
            create_sim_platform(platform), [compute_sim_measurement(VAULT_PROGRAM)]
        )
        yield Env(adapter, anchor, platform, VaultConfig(policy=policy), InProcessBackend(), tmp)
    finally:
        node.stop()


def chunk(manifest: VaultManifest, card: AttestedCard, index: int, asset: str) -> Chunk:
    key = manifest.keys[index]
    return Chunk(
        chunk_id=compute_chunk_id(card.identity_hex, index),
        owner=key.eth_address,
        vault=card.identity_hex,
        asset=asset,
        address=key.eth_address,
        amount=10**16,
        usd_e8=100 * USD,
    )


def sweep_request(chunk_id: str) -> SweepRequest:
    return SweepRequest(
        chunk_id=chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=10**9,
    )


def test_a_change_leaves_the_enclave_only_once_its_anchor_is_on_chain(env: Env) -> None:
    vault, manifest, card = env.new_vault("solo")
    own = compute_chunk_id(card.identity_hex, 0)
    raw = vault.handle
    pending = decode(raw.ecall("sign_sweep", encode(sweep_request(own))), Guarded).anchor
    assert pending is not None
    status = vault.get_anchor_status()
    assert pending.version == status.version >= 3 and status.waiting  # bind, keys, this sweep
    # not anchored yet: the signed sweep stays inside, and no other change is taken
    with pytest.raises(SealbridgeError, match="not mined yet"):
        raw.ecall("take_output", encode(vault.get_anchor_proof()))
    with pytest.raises(SealbridgeError, match="waits for its anchor"):
        raw.ecall("sign_sweep", encode(sweep_request(compute_chunk_id(card.identity_hex, 1))))
    vault.persist()
    signed = decode(vault.release(pending), SignedSweep)
    assert signed.chunk_id == own
    signer = "0x" + vault.get_signer().hex()
    assert env.anchor.get_anchor(signer) == (pending.version, pending.state_hash)


def test_an_older_sealed_state_is_refused_and_the_vault_stays_unusable(env: Env) -> None:
    """The attack: the host keeps a sealed blob, lets the vault sign a sweep, then
    restarts it from the older blob to have the same chunk signed again (or claimed)."""
    vault, _, card = env.new_vault("rolled")
    older = vault.state_file.read_bytes()
    own = compute_chunk_id(card.identity_hex, 0)
    vault.call(VAULT_SIGN_SWEEP, sweep_request(own))
    vault.handle.close()
    restarted = env.launch("rolled")
    with pytest.raises(SealbridgeError, match="older"):
        restarted.restore_checked(older)
    for name, request in (
        ("sign_sweep", sweep_request(own)),
        ("attest_unreleased", ChunkRef(chunk_id=compute_chunk_id(card.identity_hex, 1))),
    ):
        with pytest.raises(SealbridgeError, match="not the newest|acts only after"):
            restarted.handle.ecall(name, encode(request))
    # the newest blob restores (and acts)
    again = env.launch("rolled")
    again.restore_checked(vault.state_file.read_bytes())
    again.call(VAULT_SIGN_SWEEP, sweep_request(compute_chunk_id(card.identity_hex, 2)))


def test_two_copies_of_one_state_cannot_both_act(env: Env) -> None:
    """A host runs two processes from one sealed blob and has each release something
    different: the first anchors; the second's anchor is refused on chain and its output
    never leaves."""
    vault, _, card = env.new_vault("twins")
    blob = vault.state_file.read_bytes()
    vault.handle.close()
    first, second = env.launch("twins"), env.launch("twins")
    first.restore_checked(blob)
    second.restore_checked(blob)
    first.call(VAULT_SIGN_SWEEP, sweep_request(compute_chunk_id(card.identity_hex, 0)))
    raw = second.handle
    pending = decode(
        raw.ecall("sign_sweep", encode(sweep_request(compute_chunk_id(card.identity_hex, 1)))),
        Guarded,
    ).anchor
    assert pending is not None
    with pytest.raises(TransactionReverted, match="version must follow"):
        env.anchor.advance(
            pending.version, pending.state_hash, pending.signature, env.adapter.get_dev_key(1)
        )
    with pytest.raises(SealbridgeError, match="anchored version .* first"):
        raw.ecall("take_output", encode(second.get_anchor_proof()))
    with pytest.raises(SealbridgeError, match="not the newest"):
        raw.ecall("sign_sweep", encode(sweep_request(compute_chunk_id(card.identity_hex, 2))))


def test_a_received_key_is_never_both_swept_and_claimed_across_a_rollback(env: Env) -> None:
    """Issue 15's double payout through a rollback: bob receives alice's key, the host
    seals, has bob sweep the chunk, restores the older blob and asks for a loss claim on
    the same chunk. The restore is refused, so no claim is ever signed."""
    alice, a_manifest, a_card = env.new_vault("alice")
    bob, b_manifest, b_card = env.new_vault("bob")
    mine = [chunk(a_manifest, a_card, i, "ETH@31337") for i in range(2)]
    theirs = [chunk(b_manifest, b_card, i, "TKN@31338") for i in range(2)]
    out_b = bob.call(
        VAULT_OPEN_SWAP,
        OpenSwap(
            swap_id="swap:rollback",
            role="B",
            mine=theirs,
            theirs=mine,
            kinds=KINDS,
            deadline=FAR,
            counterparty=a_card,
        ),
    )
    assert out_b.releases == []
    out = alice.call(
        VAULT_OPEN_SWAP,
        OpenSwap(
            swap_id="swap:rollback",
            role="A",
            mine=mine,
            theirs=theirs,
            kinds=KINDS,
            deadline=FAR,
            counterparty=b_card,
        ),
    )
    out = bob.call(VAULT_DELIVER, Deliver(envelope=out.releases[0]))
    (chunk_id,) = out.sweeps
    older = bob.state_file.read_bytes()  # holds the received key, not swept
    swept = bob.call(VAULT_SIGN_SWEEP, sweep_request(chunk_id))
    assert swept.chunk_id == chunk_id
    bob.handle.close()
    rolled_back = env.launch("bob")
    with pytest.raises(SealbridgeError, match="older"):
        rolled_back.restore_checked(older)
    with pytest.raises(SealbridgeError, match="not the newest"):
        decode(
            rolled_back.handle.ecall("claim_loss", encode(ChunkRef(chunk_id=chunk_id))),
            LossClaim,
        )


def test_the_state_anchor_takes_only_the_next_version_of_each_signer(env: Env) -> None:
    relayer = env.adapter.get_dev_key(3)
    key = bytes(31) + b"\x42"
    signer = ChainAdapter.address_of(key)

    def signed(version: int, state_hash: bytes, by: bytes = key) -> bytes:
        digest = compute_anchor_digest(
            contract=env.anchor.address,
            chain_id=env.adapter.chain_id,
            version=version,
            state_hash=state_hash,
        )
        return sign_digest(digest, by)

    first, second = b"\x01" * 32, b"\x02" * 32
    assert env.anchor.get_anchor(signer) == (0, bytes(32))
    with pytest.raises(TransactionReverted, match="version must follow"):
        env.anchor.advance(2, first, signed(2, first), relayer)  # skips version 1
    env.anchor.advance(1, first, signed(1, first), relayer)
    with pytest.raises(TransactionReverted, match="version must follow"):
        env.anchor.advance(1, second, signed(1, second), relayer)  # version 1 is taken
    # a signature over other fields recovers another signer, whose version 1 is free: it
    # never touches this signer's anchor
    env.anchor.advance(1, second, signed(1, first), relayer)
    with pytest.raises(TransactionReverted, match="bad signature"):
        env.anchor.advance(2, second, b"\x00" * 65, relayer)
    assert env.anchor.get_anchor(signer) == (1, first)


def test_another_process_of_the_identity_derives_other_sweep_keys(env: Env) -> None:
    """Found by attacking the first version: a second process of the vault's identity,
    configured with no anchor or another StateAnchor (or after a key switch, a fresh
    version space), re-bound its owner and withdrew what the real vault had swept, since
    sweep keys came from the identity alone. Now they also depend on the anchor binding
    and the signing key, so such a process signs only for sweep keys of its own."""
    vault, _, card = env.new_vault("original")
    chunk_id = compute_chunk_id(card.identity_hex, 0)
    real = vault.call(VAULT_SIGN_SWEEP, sweep_request(chunk_id)).destination
    other_anchor = StateAnchor(
        env.adapter, deploy_state_anchor(env.adapter, env.adapter.get_dev_key(0))
    )
    start = env.adapter.get_block("latest")
    for anchor in (None, other_anchor):
        rogue = env.launch("original")
        binding = (
            None
            if anchor is None
            else AnchorBinding(
                chain_id=env.adapter.chain_id,
                contract=anchor.address,
                start=HeaderTip(number=start.number, block_hash=start.hash),
            )
        )
        rogue.anchor = anchor
        rogue.header_tip = start.number
        rogue.call(VAULT_CONFIGURE, VaultConfig(policy=env.config.policy, anchor=binding))
        rogue.call(VAULT_BIND_OWNER, OwnerRef(account=ChainAdapter.address_of(bytes(31) + b"\x09")))
        rogue.call(VAULT_CREATE_KEYS, CreateKeys(count=1))
        destination = rogue.call(VAULT_SIGN_SWEEP, sweep_request(chunk_id))
        assert destination.destination != real
        # and configure happens once: no second policy or anchor on top of the first
        with pytest.raises(SealbridgeError, match="configured already"):
            rogue.handle.ecall("configure", encode(VaultConfig(policy=env.config.policy)))


def test_a_stale_copy_cannot_attest_a_key_unreleased(env: Env) -> None:
    """Found by attacking the first version: a copy restored while it was the newest
    signed ``Unreleased`` for a key the real vault had released since (the matcher then
    took the chunk back and the owner escaped its slash). The statement is now anchored
    like a release, so only the newest state can make it."""
    vault, _, card = env.new_vault("attester")
    blob = vault.state_file.read_bytes()
    twin = env.launch("attester")
    twin.restore_checked(blob)  # the newest state, for now
    vault.call(VAULT_SIGN_SWEEP, sweep_request(compute_chunk_id(card.identity_hex, 0)))
    with pytest.raises(TransactionReverted, match="version must follow"):
        twin.call(
            VAULT_ATTEST_UNRELEASED, ChunkRef(chunk_id=compute_chunk_id(card.identity_hex, 0))
        )
    with pytest.raises(SealbridgeError, match="anchored version .* first|not the newest"):
        twin.handle.ecall("take_output", encode(twin.get_anchor_proof()))


def test_a_bitcoin_sweep_and_withdrawal_leave_only_once_anchored(env: Env) -> None:
    """Issue 15, item 6: the bitcoin ECALLs are anchored like the EVM ones (and the
    devnet's host relays their anchors): the signed transaction stays in the enclave
    until the chain holds the change, and the ledger model then takes it."""
    vault, manifest, card = env.new_vault("bitcoin")
    ledger = UtxoLedger()
    own = compute_chunk_id(card.identity_hex, 0)
    funding = ledger.fund(manifest.keys[0].btc_address, 100_000)
    request = BtcSweepRequest(chunk_id=own, utxos=[funding], fee_sat=1_000)
    pending = decode(vault.handle.ecall("sign_btc_sweep", encode(request)), Guarded)
    assert pending.anchor is not None and pending.output == b""
    with pytest.raises(SealbridgeError, match="not mined yet"):
        vault.handle.ecall("take_output", encode(vault.get_anchor_proof()))
    vault.persist()
    swept = decode(vault.release(pending.anchor), SignedBtcSweep)
    ledger.broadcast(swept.raw_tx)
    # the owner (dev key 2, bound by new_vault) withdraws through the host
    target = derive_p2wpkh(b"\x07" * 32).address
    order = BtcWithdrawalRequest(
        vault=card.identity_hex,
        destination=target,
        sweep=BtcSweepRequest(
            chunk_id=own, utxos=ledger.get_utxos(swept.destination), fee_sat=1_000
        ),
    )
    signature = secp256k1_sign_hash(
        env.adapter.get_dev_key(2), compute_btc_withdrawal_digest(order)
    )
    signed = vault.call(VAULT_WITHDRAW_BTC, SignedBtcWithdrawal(request=order, signature=signature))
    ledger.broadcast(signed.raw_tx)
    assert ledger.get_balance(target) == 100_000 - 2 * 1_000
