"""Bitcoin chunks in the key vault (issue 15, item 6): contract Z releases P2WPKH keys, the
receiving vault sweeps them to a P2WPKH address of its own sweep key and its owner
withdraws them -- every transaction checked by the local UTXO ledger model
(``devnet/utxo_ledger.py``, not a node) -- under the EVM sweep's key states: a
claimed key is never swept, a swept key never claimed, a key swept once.

Vaults run under the in-process sim backend (same program and ECALL bytes as the enclave
process); the anchored variant is in test_keyrelease_vault_anchor.py and the devnet's
in tests/e2e/test_keyrelease_btc.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from sealbridge.core.encoding import decode, encode
from sealbridge.crypto.signing import (
    eth_address,
    secp256k1_public,
    secp256k1_sign_hash,
    to_checksum_address,
)
from sealbridge.devnet.utxo_ledger import UnknownOutput, UtxoLedger
from sealbridge.keyrelease.bitcoin import (
    BitcoinError,
    InvalidAddress,
    InvalidUtxo,
    SweepInvalid,
    SweepRefused,
    Utxo,
    derive_p2wpkh,
    get_address_script,
)
from sealbridge.keyrelease.errors import InvalidRequest, LossClaimed
from sealbridge.keyrelease.types import Chunk, compute_chunk_id
from sealbridge.keyrelease.vault import (
    ANCHORED_ECALLS,
    MAX_BTC_SWEEP_UTXOS,
    VAULT_PROGRAM,
    BtcSweepRequest,
    BtcWithdrawalRequest,
    ChunkRef,
    ContractRef,
    CreateKeys,
    Deliver,
    LossClaim,
    OpenEscrow,
    OwnerRef,
    SealedState,
    SignedBtcSweep,
    SignedBtcWithdrawal,
    SweepRequest,
    VaultConfig,
    VaultManifest,
    VaultOutput,
    VaultStatus,
    compute_btc_withdrawal_digest,
)
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.errors import EnclaveCallError
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend, InProcessEnclaveHandle

USD = 10**8
BTC = "BTC@regtest"
KINDS = {"ETH@31337": "native", BTC: "btc"}
AMOUNT = 166_666  # sat: 100 USD at 60,000 USD/BTC
FEE = 1_000
OWNER_KEY = bytes(31) + b"\x05"
STRANGER_KEY = bytes(31) + b"\x06"
OWNER = to_checksum_address(eth_address(secp256k1_public(OWNER_KEY, compressed=False)))


class Vault:
    def __init__(self, handle: InProcessEnclaveHandle, config: bytes) -> None:
        self.handle = handle
        self.call("configure", decode(config, VaultConfig))
        self.card = decode(self.call("card"), AttestedCard)
        self.manifest = decode(self.call("create_keys", CreateKeys(count=6)), VaultManifest)
        self.call("bind_owner", OwnerRef(account=OWNER))

    def call(self, name: str, request: msgspec.Struct | None = None) -> bytes:
        return self.handle.ecall(name, encode(request) if request is not None else b"")

    def chunk(self, index: int, asset: str = BTC) -> Chunk:
        key = self.manifest.keys[index]
        return Chunk(
            chunk_id=compute_chunk_id(self.card.identity_hex, index),
            owner=OWNER,
            vault=self.card.identity_hex,
            asset=asset,
            address=key.btc_address if asset == BTC else key.eth_address,
            amount=AMOUNT if asset == BTC else 10**16,
            usd_e8=100 * USD,
        )

    def status(self) -> VaultStatus:
        return decode(self.call("status"), VaultStatus)

    def sweep(self, chunk_id: str, utxos: list[Utxo], fee: int = FEE) -> SignedBtcSweep:
        request = BtcSweepRequest(chunk_id=chunk_id, utxos=utxos, fee_sat=fee)
        return decode(self.call("sign_btc_sweep", request), SignedBtcSweep)


def refused(code: str, call: object, *args: object) -> EnclaveCallError:
    with pytest.raises(EnclaveCallError) as info:
        call(*args)  # type: ignore[operator]
    assert info.value.remote_code == code, info.value
    return info.value


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("vault-btc") / "platform.key"
    pub = create_sim_platform(path)
    return path, encode(
        VaultConfig(policy=devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)]))
    )


@pytest.fixture()
def vaults(config: tuple[Path, bytes], tmp_path: Path) -> Iterator[tuple[Vault, Vault]]:
    path, policy = config
    backend = InProcessBackend()
    handles = [
        backend.launch(VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=tmp_path / n)
        for n in ("alice.identity", "bob.identity")
    ]
    yield Vault(handles[0], policy), Vault(handles[1], policy)
    for handle in handles:
        handle.close()


def escrow(
    alice: Vault, bob: Vault, ledger: UtxoLedger, indices: list[int], name: str = "escrow:btc"
) -> list[Chunk]:
    """Alice funds her keys ``indices`` in the ledger and escrows them to bob, unlocked
    already; bob's vault receives every key. Returns the chunks."""
    chunks = [alice.chunk(i) for i in indices]
    for chunk in chunks:
        ledger.fund(chunk.address, AMOUNT)
    ledger.mine()
    for vault, role, other in ((bob, "beneficiary", alice), (alice, "depositor", bob)):
        vault.call(
            "open_escrow",
            OpenEscrow(
                escrow_id=name,
                role=role,
                chunks=chunks,
                kinds=KINDS,
                unlock_at=1.0,
                counterparty=other.card,
            ),
        )
    out = decode(alice.call("tick", ContractRef(contract=name)), VaultOutput)
    swept: list[str] = []
    for envelope in out.releases:
        swept += decode(bob.call("deliver", Deliver(envelope=envelope)), VaultOutput).sweeps
    assert swept == [c.chunk_id for c in chunks]
    return chunks


def withdrawal(bob: Vault, order: BtcWithdrawalRequest, key: bytes = OWNER_KEY) -> bytes:
    signature = secp256k1_sign_hash(key, compute_btc_withdrawal_digest(order))
    return bob.call("withdraw_btc", SignedBtcWithdrawal(request=order, signature=signature))


def test_btc_chunks_are_swept_through_the_ledger_and_withdrawn_by_the_owner(
    vaults: tuple[Vault, Vault],
) -> None:
    alice, bob = vaults
    ledger = UtxoLedger()
    chunks = escrow(alice, bob, ledger, [0, 1])
    assert {"sign_btc_sweep", "withdraw_btc"} <= set(ANCHORED_ECALLS)
    destinations = []
    for chunk in chunks:
        signed = bob.sweep(chunk.chunk_id, ledger.get_utxos(chunk.address))
        # to a P2WPKH address of bob's vault (the chunk's sweep key), not the chunk's own
        assert signed.destination.startswith("bcrt1q") and signed.destination != chunk.address
        assert signed.amount_sat == AMOUNT - FEE and signed.fee_sat == FEE
        assert ledger.broadcast(signed.raw_tx) == signed.txid
        destinations.append(signed.destination)
    ledger.mine()
    assert [ledger.get_balance(c.address) for c in chunks] == [0, 0]
    assert [ledger.get_balance(d) for d in destinations] == [AMOUNT - FEE] * 2
    assert set(bob.status().swept) == {c.chunk_id for c in chunks}
    # the owner orders the first chunk's funds to an address of its own
    target = derive_p2wpkh(hashlib.sha256(b"bob's cold wallet").digest()).address
    sweep = BtcSweepRequest(
        chunk_id=chunks[0].chunk_id, utxos=ledger.get_utxos(destinations[0]), fee_sat=FEE
    )
    order = BtcWithdrawalRequest(vault=bob.card.identity_hex, destination=target, sweep=sweep)
    mainnet = derive_p2wpkh(OWNER_KEY, "mainnet").address
    foreign = BtcSweepRequest(
        chunk_id=chunks[0].chunk_id, utxos=ledger.get_utxos(destinations[1]), fee_sat=FEE
    )
    for request, key, code, reason in (
        (order, STRANGER_KEY, InvalidRequest.code, "not signed by this vault's owner"),
        (
            msgspec.structs.replace(order, vault=alice.card.identity_hex),
            OWNER_KEY,
            InvalidRequest.code,
            "another vault",
        ),
        (
            msgspec.structs.replace(
                order, sweep=msgspec.structs.replace(sweep, chunk_id=alice.chunk(2).chunk_id)
            ),
            OWNER_KEY,
            InvalidRequest.code,
            "not swept by this vault",
        ),
        (
            msgspec.structs.replace(order, destination=mainnet),
            OWNER_KEY,
            InvalidAddress.code,
            "regtest",
        ),
        # the second sweep key's outputs named as the first's: not paid to that key
        (msgspec.structs.replace(order, sweep=foreign), OWNER_KEY, InvalidUtxo.code, "not paid"),
    ):
        error = refused(code, withdrawal, bob, request, key)
        assert reason in str(error)
    signed = decode(withdrawal(bob, order), SignedBtcSweep)
    assert signed.destination == target and signed.amount_sat == AMOUNT - 2 * FEE
    ledger.broadcast(signed.raw_tx)
    ledger.mine()
    assert ledger.get_balance(target) == AMOUNT - 2 * FEE
    assert ledger.get_balance(destinations[0]) == 0
    # a replayed order is the same transaction: the ledger spends those outputs once
    again = decode(withdrawal(bob, order), SignedBtcSweep)
    assert again.raw_tx == signed.raw_tx and ledger.broadcast(again.raw_tx) == signed.txid
    assert ledger.get_balance(target) == AMOUNT - 2 * FEE


def test_a_claimed_btc_key_is_never_swept_and_a_swept_one_never_claimed(
    vaults: tuple[Vault, Vault],
) -> None:
    alice, bob = vaults
    ledger = UtxoLedger()
    first, second = escrow(alice, bob, ledger, [0, 1])
    claim = decode(bob.call("claim_loss", ChunkRef(chunk_id=first.chunk_id)), LossClaim)
    assert claim.chunk_id == first.chunk_id
    before = bob.status()
    refused(LossClaimed.code, bob.sweep, first.chunk_id, ledger.get_utxos(first.address))
    assert bob.status() == before and ledger.get_balance(first.address) == AMOUNT
    # swept once: then never claimed; swept again only to the same sweep key (found by
    # attacking the first version: a sweep the ledger refused -- dust sent to the key made
    # its fee too low -- left the key SWEPT and its funds stranded for good)
    first_sweep = bob.sweep(second.chunk_id, ledger.get_utxos(second.address))
    ledger.broadcast(first_sweep.raw_tx)
    error = refused(InvalidRequest.code, bob.call, "claim_loss", ChunkRef(chunk_id=second.chunk_id))
    assert "swept" in str(error)
    fresh = ledger.fund(second.address, AMOUNT)  # more money at the old key
    again = bob.sweep(second.chunk_id, [fresh])
    assert again.destination == first_sweep.destination
    ledger.broadcast(again.raw_tx)
    assert ledger.get_balance(first_sweep.destination) == 2 * (AMOUNT - FEE)
    refused(InvalidRequest.code, bob.call, "claim_loss", ChunkRef(chunk_id=second.chunk_id))


def test_the_vault_checks_the_outputs_it_signs_for_and_the_ledger_the_rest(
    vaults: tuple[Vault, Vault],
) -> None:
    """The host names the outputs. The vault refuses any that does not pay the key's own
    P2WPKH script (nothing changes); it cannot know whether one exists or is unspent, or
    its real amount: the ledger refuses those transactions."""
    alice, bob = vaults
    ledger = UtxoLedger()
    (chunk,) = escrow(alice, bob, ledger, [0])
    (utxo,) = ledger.get_utxos(chunk.address)
    elsewhere = ledger.fund(alice.chunk(3).address, AMOUNT)  # alice's other key's output
    before = bob.status()
    error = refused(InvalidUtxo.code, bob.sweep, chunk.chunk_id, [utxo, elsewhere])
    assert "not paid to this key" in str(error)
    for bad in (
        BtcSweepRequest(chunk_id=chunk.chunk_id, utxos=[utxo], fee_sat=0),
        BtcSweepRequest(chunk_id=chunk.chunk_id, utxos=[], fee_sat=FEE),
        BtcSweepRequest(
            chunk_id=chunk.chunk_id, utxos=[utxo] * (MAX_BTC_SWEEP_UTXOS + 1), fee_sat=FEE
        ),
        BtcSweepRequest(chunk_id=chunk.chunk_id, utxos=[utxo], fee_sat=FEE, network="signet"),
        BtcSweepRequest(chunk_id=chunk.chunk_id, utxos=[utxo], fee_sat=AMOUNT),  # all fee
    ):
        with pytest.raises(EnclaveCallError):
            bob.call("sign_btc_sweep", bad)
    # a btc key is never swept as an EVM one (the vault remembers the chunk's kind)
    evm = SweepRequest(
        chunk_id=chunk.chunk_id,
        chain_id=31337,
        kind="native",
        nonce=0,
        balance=10**16,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=10**9,
    )
    error = refused(InvalidRequest.code, bob.call, "sign_sweep", evm)
    assert "btc chunk" in str(error)
    assert bob.status() == before
    # an amount the host lied about: signed (BIP143 commits to it), refused by the ledger
    lied = msgspec.structs.replace(utxo, amount_sat=utxo.amount_sat - 5_000)
    signed = bob.sweep(chunk.chunk_id, [lied])
    with pytest.raises(SweepInvalid, match="script verification"):
        ledger.broadcast(signed.raw_tx)
    assert ledger.get_balance(chunk.address) == AMOUNT  # and the key is swept: see the docs
    # bob's own free key, with an output that does not exist: the ledger refuses
    own = bob.chunk(4)
    made_up = Utxo(
        txid="ab" * 32,
        vout=0,
        amount_sat=AMOUNT,
        script_pubkey=derive_p2wpkh(b"\x00" * 31 + b"\x01").script_pubkey,
    )
    refused(InvalidUtxo.code, bob.sweep, own.chunk_id, [made_up])  # another key's script
    script = bob.manifest.keys[4].btc_address
    ghost = msgspec.structs.replace(made_up, script_pubkey=get_address_script(script))
    with pytest.raises(UnknownOutput):
        ledger.broadcast(bob.sweep(own.chunk_id, [ghost]).raw_tx)


def test_an_evm_key_is_not_swept_as_bitcoin_and_the_kind_survives_a_restart(
    vaults: tuple[Vault, Vault], config: tuple[Path, bytes], tmp_path: Path
) -> None:
    alice, bob = vaults
    ledger = UtxoLedger()
    (btc_chunk,) = escrow(alice, bob, ledger, [0])
    eth_chunk = alice.chunk(1, "ETH@31337")
    for vault, role, other in ((bob, "beneficiary", alice), (alice, "depositor", bob)):
        vault.call(
            "open_escrow",
            OpenEscrow(
                escrow_id="escrow:eth",
                role=role,
                chunks=[eth_chunk],
                kinds=KINDS,
                unlock_at=1.0,
                counterparty=other.card,
            ),
        )
    (envelope,) = decode(
        alice.call("tick", ContractRef(contract="escrow:eth")), VaultOutput
    ).releases
    bob.call("deliver", Deliver(envelope=envelope))
    # the host restarts bob's vault from its sealed state
    blob = decode(bob.call("seal"), SealedState)
    bob.handle.close()
    path, _ = config
    bob.handle = InProcessBackend().launch(
        VAULT_PROGRAM, platform_key_file=path, sealed_identity_file=tmp_path / "bob.identity"
    )
    bob.call("restore", blob)
    script = get_address_script(alice.manifest.keys[1].btc_address)  # the ETH chunk's key
    fake = Utxo(txid="cd" * 32, vout=0, amount_sat=AMOUNT, script_pubkey=script)
    error = refused(InvalidRequest.code, bob.sweep, eth_chunk.chunk_id, [fake])
    assert "native chunk" in str(error)
    # and a depositor's btc chunk must be at its key's P2WPKH address, not its EVM one
    wrong = msgspec.structs.replace(alice.chunk(2), address=alice.manifest.keys[2].eth_address)
    with pytest.raises(EnclaveCallError, match="not this vault's key"):
        alice.call(
            "open_escrow",
            OpenEscrow(
                escrow_id="escrow:wrong",
                role="depositor",
                chunks=[wrong],
                kinds=KINDS,
                unlock_at=1.0,
                counterparty=bob.card,
            ),
        )
    signed = bob.sweep(btc_chunk.chunk_id, ledger.get_utxos(btc_chunk.address))
    ledger.broadcast(signed.raw_tx)
    assert ledger.get_balance(signed.destination) == AMOUNT - FEE


def test_the_host_cannot_pay_the_chunk_to_a_miner(vaults: tuple[Vault, Vault]) -> None:
    """Found by attacking the first version: the host names the fee, and a fee of all but
    the dust limit was signed -- 99.8 % of the chunk to a miner the host works with, and
    the key marked swept. Now the fee must be 1 to 200 sat/vB of the transaction the vault
    builds and at most 5 % of what it spends; a refusal changes nothing."""
    alice, bob = vaults
    ledger = UtxoLedger()
    (chunk,) = escrow(alice, bob, ledger, [0])
    utxos = ledger.get_utxos(chunk.address)
    before = bob.status()
    for fee, reason in ((AMOUNT - 294, "sat/vB"), (AMOUNT // 10, "of the inputs"), (50, "sat/vB")):
        error = refused(SweepRefused.code, bob.sweep, chunk.chunk_id, utxos, fee)
        assert reason in str(error)
        assert bob.status() == before
    signed = bob.sweep(chunk.chunk_id, utxos)  # an honest fee
    ledger.broadcast(signed.raw_tx)
    assert signed.amount_sat == AMOUNT - FEE


def test_dust_sent_to_a_received_key_does_not_strand_it(vaults: tuple[Vault, Vault]) -> None:
    """Found by attacking the first version: anyone sent 14 outputs of 294 sat to a
    chunk's address; the devnet swept every output at a fixed fee, the ledger refused the
    transaction (below the relay minimum for 15 inputs), the key was marked swept and the
    chunk stranded for good. Now the host leaves dust out and pays by size, and a vault
    signs a swept bitcoin key again (to the same sweep key) if its sweep did not land."""
    from sealbridge.devnet.keyrelease import _btc_spend, compute_btc_fee

    alice, bob = vaults
    ledger = UtxoLedger()
    (chunk,) = escrow(alice, bob, ledger, [0])
    for _ in range(14):
        ledger.fund(chunk.address, 294)
    held = ledger.get_utxos(chunk.address)
    before = bob.status()
    refused(SweepRefused.code, bob.sweep, chunk.chunk_id, held, 1_000)  # the old host's fee
    assert bob.status() == before
    # a sweep the ledger refuses (an output the host made up) leaves the key sweepable
    made_up = msgspec.structs.replace(held[0], txid="ee" * 32)
    stranded = bob.sweep(chunk.chunk_id, [made_up], compute_btc_fee(1))
    with pytest.raises(BitcoinError, match="never existed"):
        ledger.broadcast(stranded.raw_tx)
    utxos, fee = _btc_spend(held)
    assert [u.amount_sat for u in utxos] == [AMOUNT]
    signed = bob.sweep(chunk.chunk_id, utxos, fee)
    assert signed.destination == stranded.destination
    ledger.broadcast(signed.raw_tx)
    assert ledger.get_balance(signed.destination) == AMOUNT - fee
