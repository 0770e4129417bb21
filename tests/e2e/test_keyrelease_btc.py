"""Contract Z with bitcoin chunks, end to end (issue 15, item 6): the key-release devnet
(two anvil chains, the matcher and three vault enclaves as sim-TEE processes, every vault
change anchored on chain A) with its ``BTC@regtest`` asset backed by the local UTXO ledger
model (``devnet/utxo_ledger.py``; there is no bitcoind here, so this is a model of a
node's UTXO set, not a node).

What is checked in the ledger, not only in the vaults' reports: the BTC chunks' outputs
were spent to the receivers' fresh sweep keys (each transaction accepted by the ledger's
script-interpreter check), then on to the addresses the owners named, and nothing else
holds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from sealbridge.devnet.keyrelease import (
    BTC_ASSET,
    CHAIN_A,
    USD,
    Event,
    KeyReleaseDevnet,
    KeyReleaseDevnetError,
    compute_btc_fee,
)
from sealbridge.keyrelease.bitcoin import derive_p2wpkh
from sealbridge.keyrelease.types import Chunk
from sealbridge.tee.errors import EnclaveCallError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def devnet() -> Iterator[tuple[KeyReleaseDevnet, list[Event]]]:
    events: list[Event] = []
    devnet = KeyReleaseDevnet(
        clients=("alice", "bob", "carol"), compromised=(), keys_per_vault=8, progress=events.append
    )
    devnet.start()
    try:
        yield devnet, events
    finally:
        devnet.stop()


def cold_wallet(label: str) -> str:
    return derive_p2wpkh(hashlib.sha256(label.encode()).digest()).address


def fees_paid(devnet: KeyReleaseDevnet) -> int:
    """Sat funded in the ledger that no output holds: the fees of every transaction."""
    return devnet.btc.get_supply() - sum(u.amount_sat for u in devnet.btc.get_unspent())


def check_withdrawn(devnet: KeyReleaseDevnet, owner: str, chunk: Chunk) -> None:
    """The chunk's funds sit at the owner's sweep key; its withdrawal moves them on."""
    ledger = devnet.btc
    sweep_key = devnet.swept_to[chunk.chunk_id]
    assert sweep_key.startswith("bcrt1q") and sweep_key != chunk.address
    assert ledger.get_balance(chunk.address) == 0
    assert ledger.get_balance(sweep_key) == chunk.amount - compute_btc_fee(1)
    target = cold_wallet(f"{owner}:{chunk.chunk_id}")
    signed = devnet.withdraw_btc(owner, chunk, target)
    assert ledger.get_confirmations(signed.txid) == 1
    assert ledger.get_balance(sweep_key) == 0
    assert ledger.get_balance(target) == chunk.amount - 2 * compute_btc_fee(1)
    # nothing is left at the sweep key to withdraw again
    with pytest.raises(EnclaveCallError, match="spends 1 to"):
        devnet.withdraw_btc(owner, chunk, target)


def test_btc_chunks_are_exchanged_against_eth_tit_for_tat(
    devnet: tuple[KeyReleaseDevnet, list[Event]],
) -> None:
    """Alice gives BTC chunks for bob's and carol's ETH chunks (one pairwise swap each):
    each owner's vault receives a BTC key, sweeps it through the ledger before releasing
    its ETH key, and withdraws it to an address it names."""
    net, events = devnet
    fees = fees_paid(net)
    for owner in ("bob", "carol"):
        net.post_bond(owner, 500 * USD)
        net.offer(owner, net.deposit(owner, "ETH@31337", 1))
    given = net.deposit("alice", BTC_ASSET, 2)
    assert all(c.address.startswith("bcrt1q") for c in given)
    assert [net.btc.get_balance(c.address) for c in given] == [c.amount for c in given]
    # the matcher does not book btc chunks (it cannot prove a bitcoin balance)
    (spare,) = net.deposit("bob", BTC_ASSET, 1)
    with pytest.raises(KeyReleaseDevnetError, match="does not book btc"):
        net.offer("bob", [spare])
    with pytest.raises(KeyReleaseDevnetError, match="did not sweep"):
        net.withdraw_btc("bob", spare, cold_wallet("bob"))
    answer = net.request("alice", "ETH@31337", 200 * USD, "swap:btc-for-eth")
    net.accept("alice", answer)
    outcome = net.run_swap("alice", answer, BTC_ASSET)
    assert outcome.given == outcome.received == outcome.swept == 2
    assert outcome.double_spent == [] and set(outcome.counterparties) == {"bob", "carol"}
    a = net.adapters[CHAIN_A]
    for chunk in answer.offer.chunks:  # alice swept the ETH she received (less the gas)
        assert a.balance(net.swept_to[chunk.chunk_id]) > chunk.amount * 99 // 100
    receivers = {
        chunk.chunk_id: event.detail["client"]
        for event in events
        if event.step == "sweep"
        for chunk in given
        if chunk.chunk_id.endswith(event.detail["chunk"])
    }
    assert sorted(receivers.values()) == ["bob", "carol"]
    for chunk in given:
        owner = receivers[chunk.chunk_id]
        assert chunk.chunk_id in net.vault_status(owner).swept
        check_withdrawn(net, owner, chunk)
    assert net.btc.get_balance(spare.address) == spare.amount  # never exchanged
    assert fees_paid(net) - fees == 2 * 2 * compute_btc_fee(1)  # a sweep and a withdrawal each


def test_a_time_locked_escrow_of_btc_chunks(
    devnet: tuple[KeyReleaseDevnet, list[Event]],
) -> None:
    net, _ = devnet
    fees = fees_paid(net)
    chunks = net.deposit("alice", BTC_ASSET, 2)
    assert net.run_escrow("alice", "carol", BTC_ASSET, 2, unlock_in_s=1.0) == 2
    assert "escrow" in {c.kind for c in net.vault_status("carol").contracts}
    for chunk in chunks:
        assert chunk.chunk_id in net.vault_status("carol").swept
        check_withdrawn(net, "carol", chunk)
    assert fees_paid(net) - fees == 2 * 2 * compute_btc_fee(1)
