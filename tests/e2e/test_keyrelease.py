"""Key-release contracts end to end: two real anvil chains, the matcher and four vault
enclaves as sim-TEE processes (mallory's platform declared compromised), and the
``sealbridge keyrelease`` service driven through the CLI.

What is checked on chain, not only in the enclaves' reports: the fresh addresses hold
the swept funds, mallory's bond is slashed in the InsurancePool, alice's compensation
arrived, the pool's balance adds up, a stale oracle price funds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sealbridge.chain.lightclient import EventLog, ReceiptFields
from sealbridge.core.encoding import encode
from sealbridge.crypto.signing import secp256k1_sign_hash, to_checksum_address
from sealbridge.devnet.keyrelease import (
    CHAIN_A,
    USD,
    DemoResult,
    Event,
    KeyReleaseDevnet,
    KeyReleaseDevnetError,
    run_demo_scenario,
)
from sealbridge.evm.oracle import StalePrice
from sealbridge.keyrelease.errors import InsufficientLiquidity
from sealbridge.keyrelease.matcher import MatcherPolicy
from sealbridge.keyrelease.matcher_program import (
    FEE_PAID_TOPIC,
    MATCHER_ACCEPT,
    MATCHER_ADD_BOND,
    MATCHER_ADD_CHUNKS,
    MATCHER_OBSERVE_BLOCKS,
    MATCHER_REGISTER_OWNER,
    MATCHER_WITHDRAW,
    Accept,
    AcceptOrder,
    AddBond,
    AddChunks,
    ObserveBlocks,
    Reclaim,
    RegisterOwner,
    usd_to_wei,
)
from sealbridge.keyrelease.vault import (
    VAULT_ATTEST_UNRELEASED,
    VAULT_BIND_OWNER,
    VAULT_SIGN_SWEEP,
    VAULT_WITHDRAW,
    ChunkRef,
    OwnerRef,
    SignedWithdrawal,
    WithdrawalRequest,
    compute_withdrawal_digest,
)
from sealbridge.tee.ecall import Nothing
from sealbridge.tee.errors import EnclaveCallError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def story() -> Iterator[tuple[KeyReleaseDevnet, DemoResult, list[Event]]]:
    events: list[Event] = []
    devnet = KeyReleaseDevnet(progress=events.append)
    devnet.start()
    try:
        alice = devnet.clients["alice"].account
        a = devnet.adapters[CHAIN_A]
        before = a.balance(alice)
        result = run_demo_scenario(devnet)
        devnet.alice_gain = a.balance(alice) - before  # type: ignore[attr-defined]
        # the story's events only: the tests' own swaps report to ``events`` too (sweeps
        # that a later test withdraws from, vault restarts), in whatever order they run
        yield devnet, result, list(events)
    finally:
        devnet.stop()


def headroom_for_one_chunk(devnet: KeyReleaseDevnet, name: str) -> None:
    """Bond one more chunk's worth for ``name`` (on chain, then booked by the matcher,
    which checks it saw it posted): the tests that leave a chunk allocated would
    otherwise fill the owner's exposure limit, in an order the story's draws decide."""
    client = devnet.clients[name]
    price = devnet.price("ETH@31337")
    devnet.pool.post_bond(usd_to_wei(100 * USD, price) + 1, client.wallet_key)
    devnet.sync_fee_chain()
    devnet._matcher().call(MATCHER_ADD_BOND, AddBond(owner=client.account, usd_e8=100 * USD))


def test_every_vault_was_attested_before_funding(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, _, events = story
    vaults = [e for e in events if e.step == "vault"]
    assert {e.detail["client"] for e in vaults} == {"alice", "bob", "carol", "mallory"}
    assert all("quote verified" in e.detail["attested"] for e in vaults)
    assert [e.detail["client"] for e in vaults if e.detail["compromised"]] == ["mallory"]
    first_deposit = min(i for i, e in enumerate(events) if e.step == "deposit")
    assert max(i for i, e in enumerate(events) if e.step == "vault") < first_deposit


def test_the_swap_spreads_over_owners_and_the_double_spend_is_insured(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, result, events = story
    swap = result.swap
    assert sum(swap.counterparties.values()) == 6
    assert swap.counterparties == {"bob": 2, "carol": 2, "mallory": 2}  # the 34 % cap
    assert len(swap.counterparties) >= 2
    # mallory was matched, released a key it had emptied, and was caught at once
    assert swap.counterparties.get("mallory", 0) >= 1
    assert len(swap.double_spent) == 1
    assert swap.received - swap.swept == 1
    (penalty,) = [e for e in events if e.step == "penalty"]
    assert penalty.detail["offender"] == "mallory" and penalty.detail["victim"] == "alice"
    assert penalty.detail["uncovered_usd"] == 0
    # on chain: mallory slashed, alice paid, the pool holds fees + slashes - payouts
    mallory = devnet.clients["mallory"].account
    assert devnet.pool.is_slashed(mallory)
    assert devnet.pool.get_bond(mallory) < devnet.pool.get_bond(devnet.clients["bob"].account)
    assert swap.compensated_wei == penalty.detail["compensation_wei"] > 0
    assert result.compensation_usd_e8 == 100 * USD
    assert result.owners["mallory"]["banned"] and result.owners["mallory"]["reputation"] == 0
    assert not result.owners["bob"]["banned"] and result.owners["bob"]["reputation"] > 100


def test_sweeps_moved_the_funds_to_fresh_addresses(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, _, events = story
    sweeps = [e for e in events if e.step == "sweep"]
    assert sweeps
    for sweep in sweeps:
        client = devnet.clients[sweep.detail["client"]]
        own = {k.eth_address for k in client.manifest.keys}
        assert sweep.detail["to"] not in own  # a fresh key, not a deposit key
        if sweep.detail["amount"] > 10**12:  # ETH (wei); TKN amounts are 1e8 units
            assert devnet.adapters[CHAIN_A].balance(sweep.detail["to"]) == sweep.detail["amount"]
        else:
            assert devnet.token.balance_of(sweep.detail["to"]) == sweep.detail["amount"]


def test_a_restarted_vault_keeps_its_keys_and_contracts(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, result, events = story
    steps = [e.step for e in events]
    restart = steps.index("vault-restart")
    assert restart < steps.index("swap-open", restart)  # the second swap ran after it
    status = devnet.vault_status("alice")
    assert any(
        c.contract == "swap:demo-1/bob" and c.status == "completed" for c in status.contracts
    )
    assert result.escrow_swept == 2 and result.stalled.given >= 1  # keys made before the crash
    # the matcher came back from its journal: mallory is still banned and never drawn
    restart = steps.index("matcher-restart")
    assert restart < steps.index("match", restart)
    assert result.owners["mallory"]["banned"] and "mallory" not in result.stalled.counterparties
    assert devnet.pool.get_operator() == devnet.matcher_card.operator  # type: ignore[union-attr]


def test_a_walk_away_costs_at_most_one_chunk(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, result, _ = story
    stalled = result.stalled
    assert stalled.exposure_usd_e8["carol"] == devnet.chunk_usd_e8  # one chunk, not more
    assert all(v == 0 for k, v in stalled.exposure_usd_e8.items() if k != "carol")
    assert stalled.given - stalled.swept == 1
    status = devnet.vault_status("alice")
    (carol_swap,) = [c for c in status.contracts if c.contract == "swap:demo-2/carol"]
    assert carol_swap.given == 1 and carol_swap.received == 0
    # honest losses: one insured double spend + one walk-away chunk
    assert result.honest_loss_usd_e8 == 2 * devnet.chunk_usd_e8
    assert result.honest_loss_usd_e8 - result.compensation_usd_e8 <= devnet.chunk_usd_e8
    assert result.escrow_swept == 2


def test_bad_requests_are_refused_and_change_nothing(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, _, _ = story
    before = devnet.matcher_status()
    # more than the book holds within the caps
    with pytest.raises(EnclaveCallError) as info:
        devnet.request("alice", "ETH@31337", 10_000 * USD, "swap:too-big")
    assert info.value.remote_code == InsufficientLiquidity.code
    # not a multiple of the chunk size
    with pytest.raises(EnclaveCallError):
        devnet.request("alice", "ETH@31337", 150 * USD, "swap:odd")
    with pytest.raises(KeyReleaseDevnetError, match="no client"):
        devnet.deposit("nobody", "ETH@31337", 1)
    with pytest.raises(KeyReleaseDevnetError, match="unknown asset"):
        devnet.deposit("bob", "DOGE@1", 1)
    assert devnet.matcher_status() == before


def test_an_owner_reclaims_a_chunk_whose_requester_vanished(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Alice accepts one chunk and never delivers her key: the owner's swap aborts at its
    deadline, its key is still free, and its vault's signed word puts the chunk back in
    the book (exposure freed). A key that was released cannot be reclaimed."""
    devnet, _, _ = story
    answer = devnet.request("alice", "ETH@31337", 100 * USD, "swap:vanish")
    devnet.accept("alice", answer)
    (chunk,) = answer.offer.chunks
    owner = devnet._name_of(chunk.owner)
    devnet.run_swap("alice", answer, "TKN@31338", deadline_s=1.0, requester_stops_after=0)
    assert devnet.matcher_status().owners[chunk.owner].exposure_usd_e8 >= chunk.usd_e8
    import time

    time.sleep(1.2)
    assert devnet.tick(owner, f"swap:vanish/{owner}") == ["aborted"]
    before = devnet.matcher_status().owners[chunk.owner].exposure_usd_e8
    devnet.reclaim(owner, [chunk.chunk_id])
    after = devnet.matcher_status()
    assert after.owners[chunk.owner].exposure_usd_e8 == before - chunk.usd_e8
    assert after.chunks.get("available", 0) >= 1
    # a released key is not free: mallory's double-spent chunk cannot come back
    devnet_result = story[1]
    (emptied,) = devnet_result.swap.double_spent
    with pytest.raises(EnclaveCallError) as info:
        devnet.reclaim("mallory", [emptied])
    assert "not free" in str(info.value)


@pytest.mark.parametrize(
    ("asset", "give"), [("ETH@31337", "TKN@31338"), ("TKN@31338", "ETH@31337")]
)
def test_a_requester_is_never_paid_for_a_chunk_it_swept_itself(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
    asset: str,
    give: str,
) -> None:
    """Found by attacking the insurance (issue 15): alice's host keeps her vault's sealed
    state from when it held a received key, has the vault sweep the chunk (the funds go
    to alice's own sweep key), restores the older state and reports the emptied chunk as
    a double spend. Before: the matcher paid her and slashed the honest owner. After:
    the restarted vault refuses the older state (the StateAnchor holds a newer version of
    it), the newest state refuses to claim a loss on a chunk it swept, and nothing is
    paid or slashed. (Had the claim been signed, it would name the chunk's own sweep key,
    and the matcher would refuse it: ``tests/unit`` covers that rule.)"""
    devnet, _, _ = story
    headroom_for_one_chunk(devnet, "bob")
    devnet.offer("bob", devnet.deposit("bob", asset, 1))  # (the demo offers no TKN)
    answer = devnet.request("alice", asset, 100 * USD, f"swap:self-paid-{asset}")
    devnet.accept("alice", answer)
    (chunk,) = answer.offer.chunks
    pool = devnet.pool.get_pool()
    owner_bond = devnet.matcher_status().owners[chunk.owner].bond_usd_e8
    refusals: list[str] = []
    honest = devnet._sweep_or_report

    def hostile(client: Any, received: Any) -> tuple[bool, int]:
        if client.name != "alice" or received.chunk_id != chunk.chunk_id:
            return honest(client, received)
        older = client.vault.state_file.read_bytes()  # holds the key, not swept
        request = devnet._sweep_request(received)
        if asset == "ETH@31337":
            # found by attacking the first fix: a "token sweep" to a decoy address the
            # host names (it moves only gas), so that the chunk's *first* outgoing
            # transaction goes elsewhere
            request = msgspec.structs.replace(
                request,
                kind="erc20",
                token=to_checksum_address(b"\xee" * 20),
                token_balance=1,
            )
        sweep = client.vault.call(VAULT_SIGN_SWEEP, request)
        chain = devnet.adapters[devnet.assets[received.asset].chain_id]
        chain.wait_for_receipt(chain.send_raw_transaction(sweep.raw_tx))
        newest = client.vault.state_file.read_bytes()
        # the rollback: the vault restarts from the state that still holds the key
        client.vault.state_file.write_bytes(older)
        with pytest.raises(EnclaveCallError) as info:
            devnet.restart_vault("alice")
        refusals.append(info.value.remote_code)
        client.vault.state_file.write_bytes(newest)
        devnet.restart_vault("alice")  # the newest state restores and acts
        with pytest.raises(EnclaveCallError) as info:  # a swept key is never claimed
            devnet.report_double_spend(client, received)
        refusals.append(f"{info.value.remote_code}: {info.value}")
        return False, 0

    monkeypatch.setattr(devnet, "_sweep_or_report", hostile)
    devnet.run_swap("alice", answer, give)
    assert len(refusals) == 2, refusals
    assert refusals[0] == "vault_state_stale"  # the older sealed state is refused
    assert refusals[1].startswith("keyrelease_invalid") and "was swept" in refusals[1]
    assert devnet.pool.get_pool() == pool
    assert devnet.matcher_status().owners[chunk.owner].bond_usd_e8 == owner_bond


@pytest.mark.parametrize(
    ("asset", "give"), [("ETH@31337", "TKN@31338"), ("TKN@31338", "ETH@31337")]
)
def test_a_host_that_calls_a_funded_chunk_empty_gets_no_penalty(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
    monkeypatch: pytest.MonkeyPatch,
    asset: str,
    give: str,
) -> None:
    """Issue 15, item 3: alice's host (here also the matcher's) has her vault claim a loss
    on a chunk it received and reports it with the chunk's balance read as 0, though the
    funds are still there. Before: the matcher judged on the host's reading, paid alice
    and slashed the honest owner. After: it reads the balance from an ``eth_getProof``
    at the newest block it verified on the chunk's chain, sees the funds, and refuses;
    nothing is paid or slashed."""
    devnet, _, _ = story
    headroom_for_one_chunk(devnet, "bob")
    devnet.offer("bob", devnet.deposit("bob", asset, 1))
    answer = devnet.request("alice", asset, 100 * USD, f"swap:calls-empty-{asset}")
    devnet.accept("alice", answer)
    (chunk,) = answer.offer.chunks
    pool = devnet.pool.get_pool()
    owner_bond = devnet.matcher_status().owners[chunk.owner].bond_usd_e8
    refusals: list[str] = []
    honest = devnet._sweep_or_report

    def hostile(client: Any, received: Any) -> tuple[bool, int]:
        if client.name != "alice" or received.chunk_id != chunk.chunk_id:
            return honest(client, received)
        assert devnet._chunk_balance(received) >= received.amount  # the funds are there
        # a block after the funding proof (a report at the funding block proves nothing)
        devnet.adapters[devnet.assets[received.asset].chain_id].mine()
        monkeypatch.setattr(devnet, "_chunk_balance", lambda c: 0)
        with pytest.raises(EnclaveCallError) as info:
            devnet.report_double_spend(client, received)
        refusals.append(f"{info.value.remote_code}: {info.value}")
        return False, 0

    monkeypatch.setattr(devnet, "_sweep_or_report", hostile)
    devnet.run_swap("alice", answer, give)
    assert len(refusals) == 1, refusals
    assert "are still there" in refusals[0]
    assert devnet.pool.get_pool() == pool
    assert devnet.matcher_status().owners[chunk.owner].bond_usd_e8 == owner_bond


def test_a_chunk_that_was_never_funded_is_not_taken(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Issue 15, item 3: bob's host offers a chunk at a key of his vault that it never
    funded. Before: the matcher took the host's word and offered it to requesters. After:
    the funding proof shows nothing there and the chunk stays out of the book."""
    devnet, _, _ = story
    bob = devnet.clients["bob"]
    (funded,) = devnet.deposit("bob", "ETH@31337", 1)
    key = bob.manifest.keys[bob.next_key]
    bob.next_key += 1
    empty = msgspec.structs.replace(
        funded, chunk_id=f"{bob.vault_id}:{key.index}", address=key.eth_address
    )
    before = devnet.matcher_status().chunks.get("available", 0)
    with pytest.raises(EnclaveCallError) as info:
        devnet.offer("bob", [funded, empty])
    assert info.value.remote_code == "keyrelease_balance_refused"
    assert "less than its amount" in str(info.value)
    assert devnet.matcher_status().chunks.get("available", 0) == before  # all or none
    devnet.offer("bob", [funded])
    assert devnet.matcher_status().chunks.get("available", 0) == before + 1
    # found by attacking the proofs: the amount is the host's word, so a key holding 1
    # wei, booked as a 1-wei "100 USD" chunk, passed the funding proof; and an EVM key
    # labelled as a bitcoin chunk skipped the proofs altogether. Both are refused now.
    a = devnet.adapters[CHAIN_A]
    for index, (asset, amount) in enumerate((("ETH@31337", 1), ("BTC@regtest", 10**16))):
        key = bob.manifest.keys[bob.next_key]
        bob.next_key += 1
        a.fund(key.eth_address, amount, sender_key=bob.wallet_key)
        cheap = msgspec.structs.replace(
            funded,
            chunk_id=f"{bob.vault_id}:{key.index}",
            address=key.eth_address,
            asset=asset,
            amount=amount,
        )
        proofs = devnet.prove_balances([msgspec.structs.replace(cheap, asset="ETH@31337")])
        with pytest.raises(EnclaveCallError) as info:
            devnet._matcher().call(MATCHER_ADD_CHUNKS, AddChunks(chunks=[cheap], proofs=proofs))
        reason = ("not worth", "books only chunks whose funding it can prove")[index]
        assert reason in str(info.value)
    assert devnet.matcher_status().chunks.get("available", 0) == before + 1


def test_accepting_an_offer_made_to_another_pays_nothing(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Issue 15, item 2: bob accepting alice's offer is refused before any fee moves
    (before: the fee left and the swap ran before the mismatch was noticed); so is a
    forged answer that names bob, by the matcher enclave itself. Alice can still accept."""
    devnet, _, _ = story
    answer = devnet.request("alice", "ETH@31337", 100 * USD, "swap:not-bobs")
    a = devnet.adapters[CHAIN_A]
    bob = devnet.clients["bob"]
    pool, nonce = devnet.pool.get_pool(), a.get_nonce(bob.account)
    with pytest.raises(KeyReleaseDevnetError, match="another requester"):
        devnet.accept("bob", answer)
    forged = msgspec.structs.replace(
        answer, offer=msgspec.structs.replace(answer.offer, requester=bob.account)
    )
    with pytest.raises(EnclaveCallError, match="another requester"):
        devnet.accept("bob", forged)
    assert devnet.pool.get_pool() == pool and a.get_nonce(bob.account) == nonce
    devnet.accept("alice", answer)
    assert devnet.run_swap("alice", answer, "TKN@31338").swept == 1


def test_accepting_an_expired_offer_pays_nothing() -> None:
    """Issue 15, item 2: before, the fee was paid and then the matcher said the offer had
    expired (and every retry paid again). Now the matcher's preconditions come first."""
    devnet = KeyReleaseDevnet(
        clients=("alice", "bob"),
        compromised=(),
        keys_per_vault=4,
        policy=MatcherPolicy(
            chunk_usd_e8={"ETH@31337": 100 * USD, "TKN@31338": 100 * USD}, offer_ttl_s=2.0
        ),
    )
    devnet.start()
    try:
        devnet.post_bond("bob", 500 * USD)
        devnet.offer("bob", devnet.deposit("bob", "ETH@31337", 1))
        answer = devnet.request("alice", "ETH@31337", 100 * USD, "swap:late")
        a = devnet.adapters[CHAIN_A]
        alice = devnet.clients["alice"]
        pool, nonce = devnet.pool.get_pool(), a.get_nonce(alice.account)
        time.sleep(2.2)
        for _ in range(2):  # a retry pays nothing either
            with pytest.raises(EnclaveCallError, match="expired"):
                devnet.accept("alice", answer)
        assert devnet.pool.get_pool() == pool and a.get_nonce(alice.account) == nonce
        # a fresh request with another contract name goes through; the same name is refused
        with pytest.raises(KeyReleaseDevnetError, match="used before"):
            devnet.request("alice", "ETH@31337", 100 * USD, "swap:late")
        again = devnet.request("alice", "ETH@31337", 100 * USD, "swap:on-time")
        assert again.offer.request_id != answer.offer.request_id
        devnet.accept("alice", again)
        assert devnet.pool.get_pool() > pool
    finally:
        devnet.stop()


def test_swept_funds_are_withdrawn_to_where_the_owner_says(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Issue 15, item 6: what a vault swept sat in its sweep keys, which no ECALL could
    spend. Now the vault's owner orders a withdrawal with its wallet key, and only it."""
    devnet, _, _ = story
    answer = devnet.request("alice", "ETH@31337", 100 * USD, "swap:to-withdraw")
    devnet.accept("alice", answer)
    assert devnet.run_swap("alice", answer, "TKN@31338").swept == 1
    (chunk,) = answer.offer.chunks
    a = devnet.adapters[CHAIN_A]
    destination = to_checksum_address(os.urandom(20))
    alice = devnet.clients["alice"]
    # an order signed by anyone but alice is refused by her vault
    source = devnet.swept_to[chunk.chunk_id]
    sweep = devnet._sweep_request(msgspec.structs.replace(chunk, address=source))
    order = WithdrawalRequest(vault=alice.vault_id, destination=destination, sweep=sweep)
    alice.vault.call(VAULT_BIND_OWNER, OwnerRef(account=alice.account))
    forged = secp256k1_sign_hash(devnet.clients["bob"].wallet_key, compute_withdrawal_digest(order))
    with pytest.raises(EnclaveCallError, match="not signed by this vault's owner"):
        alice.vault.call(VAULT_WITHDRAW, SignedWithdrawal(request=order, signature=forged))
    held = a.balance(source)
    signed = devnet.withdraw("alice", chunk, destination)
    assert a.balance(destination) == signed.amount > 0
    assert a.balance(source) <= held - signed.amount  # what is left paid the gas


def test_the_matcher_credits_a_fee_only_once_it_saw_it_paid_on_chain(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Issue 15, item 2 (before: the matcher credited every fee on its host's word). The
    matcher follows chain A block by block (headers linked, receipts root checked) and
    accepts only once it saw the pool's FeePaid log for the offer, at the oracle price
    it saw there; a block with a made-up payment is refused."""
    devnet, _, _ = story
    answer = devnet.request("alice", "ETH@31337", 100 * USD, "swap:unpaid")
    alice = devnet.clients["alice"]
    body = encode(Accept(request_id=answer.offer.request_id, requester=alice.account))
    before = devnet.matcher_status().pool_usd_e8
    devnet.sync_fee_chain()
    unpaid = AcceptOrder(signed=alice.sign(devnet.service_id, "accept", body))
    with pytest.raises(EnclaveCallError, match="not paid on the fee chain"):
        devnet._matcher().call(MATCHER_ACCEPT, unpaid)
    # the host makes up the payment: a FeePaid receipt the block does not hold
    a = devnet.adapters[CHAIN_A]
    a.mine(1)
    (evidence,) = a.get_block_evidence([a.get_block_number()])
    payer = bytes(12) + bytes.fromhex(alice.account[2:])
    fee = hashlib.sha256(answer.offer.request_id.encode()).digest() + (10**18).to_bytes(32, "big")
    made_up = ReceiptFields(
        tx_type=2,
        status=1,
        cumulative_gas_used=21_000,
        logs_bloom=bytes(256),
        logs=[
            EventLog(
                address=bytes.fromhex(devnet.pool.address[2:]),
                topics=[FEE_PAID_TOPIC, payer],
                data=fee,
            )
        ],
    )
    forged = msgspec.structs.replace(evidence, receipts=[*evidence.receipts, made_up])
    with pytest.raises(EnclaveCallError, match="receipts root"):
        devnet._matcher().call(MATCHER_OBSERVE_BLOCKS, ObserveBlocks(blocks=[forged]))
    with pytest.raises(EnclaveCallError, match="not paid on the fee chain"):
        devnet._matcher().call(MATCHER_ACCEPT, unpaid)
    assert devnet.matcher_status().pool_usd_e8 == before
    devnet.accept("alice", answer)  # pays, the matcher sees it, then accepts
    assert devnet.matcher_status().pool_usd_e8 == before + answer.offer.fee_e8
    assert devnet.run_swap("alice", answer, "TKN@31338").swept == 1


def test_the_matcher_books_only_the_bond_it_saw_posted(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Issue 15, item 3 (bonds): before, the matcher booked whatever bond its host said
    an owner had. Now it follows the pool's BondPosted / Slashed / BondWithdrawn logs on
    chain A and refuses a registration above what it saw."""
    devnet, _, _ = story
    dave = devnet.add_client("dave")
    price = devnet.price("ETH@31337")
    wei = usd_to_wei(100 * USD, price)
    devnet.pool.post_bond(wei, dave.wallet_key)
    devnet.sync_fee_chain()
    binding = dave.vault.call(VAULT_BIND_OWNER, OwnerRef(account=dave.account))

    def register(usd_e8: int) -> Nothing:
        return devnet._matcher().call(
            MATCHER_REGISTER_OWNER,
            RegisterOwner(
                owner=dave.account, bond_usd_e8=usd_e8, manifest=dave.manifest, binding=binding
            ),
        )

    with pytest.raises(EnclaveCallError, match="more than the matcher saw"):
        register(10_000 * USD)
    assert dave.account not in devnet.matcher_status().owners
    register(wei * price // 10**18)
    assert devnet.matcher_status().owners[dave.account].bond_usd_e8 == wei * price // 10**18


def test_a_stale_price_funds_nothing(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    devnet, _, _ = story
    bob = devnet.clients["bob"]
    a = devnet.adapters[CHAIN_A]
    nonce = a.get_nonce(bob.account)
    next_key = bob.next_key
    a.increase_time(devnet.max_price_age + 10)
    try:
        with pytest.raises(StalePrice):
            devnet.deposit("bob", "ETH@31337", 1)
        assert a.get_nonce(bob.account) == nonce and bob.next_key == next_key
    finally:
        # fresh prices again: the tests that run after this one deposit and match
        reporter = a.get_dev_key(1)
        for asset_id, asset in devnet.assets.items():
            devnet.oracle.set_price(asset_id, devnet.prices[asset.symbol], reporter)


def test_a_penalty_is_priced_at_the_eth_price_the_matcher_verified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15, item 3: the matcher's host names an ETH price a thousand times too low
    when it reports mallory's double spend (so that the slash and the compensation, in
    wei, come out a thousand times too high). Before: the matcher converted at the
    host's price. After: it converts at the price the oracle set on chain A, read from
    blocks it verified; the host's figure is not used."""
    events: list[Event] = []
    devnet = KeyReleaseDevnet(progress=events.append)
    devnet.start()
    try:
        honest_price = devnet.price
        honest_report = devnet.report_double_spend

        def lying_report(*args: Any, **kwargs: Any) -> int:
            monkeypatch.setattr(devnet, "price", lambda asset: honest_price(asset) // 1000)
            try:
                return honest_report(*args, **kwargs)
            finally:
                monkeypatch.setattr(devnet, "price", honest_price)

        monkeypatch.setattr(devnet, "report_double_spend", lying_report)
        run_demo_scenario(devnet)
        (penalty,) = [e for e in events if e.step == "penalty"]
        eth = honest_price("ETH@31337")
        assert penalty.detail["compensation_wei"] == usd_to_wei(100 * USD, eth)
        assert penalty.detail["compensation_wei"] < usd_to_wei(100 * USD, eth // 1000)
    finally:
        devnet.stop()


# --- the service, through the CLI ------------------------------------------------------------


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealbridge.cli", "keyrelease", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def service(home: Path) -> Any:
    from sealbridge.net.http import NodeClient

    port = json.loads((home / "keyrelease" / "service.json").read_text())["port"]
    return NodeClient(f"http://127.0.0.1:{port}", timeout=300)


def key_of(home: Path, name: str) -> bytes:
    return bytes.fromhex((home / "keyrelease" / "clients" / f"{name}.key").read_text().split()[0])


def forged_requests_are_refused(home: Path) -> None:
    """Issue 15, item 1 (before: an anonymous POST naming alice was served): a request
    for alice signed by bob, an unsigned one, one for another service and a replay are
    all refused, and none of them changes anything."""
    from sealbridge.core.encoding import encode
    from sealbridge.evm.adapter import ChainAdapter
    from sealbridge.keyrelease.auth import sign_client_request
    from sealbridge.keyrelease.types import ChunkRequest
    from sealbridge.net.http import NodeRefused

    with service(home) as node:
        status = node.get_json("/v1/status")
        service_id = bytes.fromhex(status["service"])
        alice = ChainAdapter.address_of(key_of(home, "alice"))
        body = encode(
            ChunkRequest(
                request_id="aa" * 16,
                requester=alice,
                asset="ETH@31337",
                usd_e8=10**10,
                contract="swap:forged",
            )
        )
        nonce = time.time_ns() // 1000
        attempts = [
            body,  # unsigned
            encode(sign_client_request(key_of(home, "bob"), service_id, nonce, "match", body)),
            encode(sign_client_request(key_of(home, "alice"), bytes(32), nonce, "match", body)),
            encode(sign_client_request(key_of(home, "alice"), service_id, 5, "deposit", body)),
        ]
        for attempt in attempts:
            with pytest.raises(NodeRefused):
                node.post("/v1/requests", attempt)
        assert node.get_json("/v1/status") == status
        # alice's own signed request goes through once; its replay is refused
        good = encode(sign_client_request(key_of(home, "alice"), service_id, nonce, "match", body))
        node.post("/v1/requests", good)
        after = node.get_json("/v1/status")
        with pytest.raises(NodeRefused, match="replayed"):
            node.post("/v1/requests", good)
        assert node.get_json("/v1/status") == after


def forged_accepts_are_refused(home: Path, request_id: str) -> None:
    """Bob accepting alice's offer (signed by bob, naming alice or himself) is refused
    before any fee moves."""
    from sealbridge.core.encoding import encode
    from sealbridge.devnet.keyrelease_service import AcceptRequest
    from sealbridge.evm.adapter import ChainAdapter
    from sealbridge.keyrelease.auth import sign_client_request
    from sealbridge.keyrelease.matcher_program import Accept
    from sealbridge.net.http import NodeRefused

    with service(home) as node:
        status = node.get_json("/v1/status")
        service_id = bytes.fromhex(status["service"])
        bob_key = key_of(home, "bob")
        for requester in (ChainAdapter.address_of(key_of(home, "alice")), "bob"):
            if requester == "bob":
                requester = ChainAdapter.address_of(bob_key)
            body = encode(
                Accept(request_id=request_id, requester=requester, give_asset="TKN@31338")
            )
            signed = sign_client_request(
                bob_key, service_id, time.time_ns() // 1000, "accept", body
            )
            with pytest.raises(NodeRefused):
                node.post("/v1/accept", encode(AcceptRequest(signed=signed)))
        assert node.get_json("/v1/status") == status


def test_the_cli_drives_the_service_step_by_step(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = cli(home, "up", "--port", "18645")
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        for name in ("alice", "bob", "carol"):
            out = cli(home, "vault", name, "--json")
            assert out.returncode == 0, out.stdout + out.stderr
        out = cli(home, "vault", "alice")
        assert out.returncode == 2 and "exists already" in out.stderr
        for owner in ("bob", "carol"):
            out = cli(home, "deposit", owner, "--chunks", "2", "--bond", "300", "--json")
            assert out.returncode == 0, out.stdout + out.stderr
        # a second bond would move money the matcher then refuses to book: refused first
        with service(home) as node:
            before = node.get_json("/v1/status")
        out = cli(home, "deposit", "bob", "--chunks", "1", "--bond", "100")
        assert out.returncode == 2 and "posted its bond already" in out.stderr
        with service(home) as node:
            assert node.get_json("/v1/status") == before
        out = cli(home, "vault", "ａｌｉｃｅ")  # full-width: the same label as alice
        assert out.returncode == 2 and "exists already" in out.stderr
        assert "wallet_key" not in out.stdout
        forged_requests_are_refused(home)
        out = cli(home, "request", "alice", "--usd", "200", "--contract", "swap:cli", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        offer = json.loads(out.stdout.splitlines()[-1])
        assert len(offer["chunks"]) == 2
        out = cli(home, "accept", "alice", "nope")
        assert out.returncode == 2 and "no offer" in out.stderr
        forged_accepts_are_refused(home, offer["request_id"])
        out = cli(home, "accept", "alice", offer["request_id"], "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout.splitlines()[-1])
        assert result["swept"] == result["received"] == 2 and result["double_spent"] == []
        out = cli(home, "status", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        status = json.loads(out.stdout)
        assert status["matcher"]["chunks"]["spent"] == 2
        assert {c["status"] for c in status["vaults"]["alice"]["contracts"]} == {"completed"}
    finally:
        down = cli(home, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    out = cli(home, "status")
    assert out.returncode == 2 and "no key-release service" in out.stderr


def readme_flow() -> list[list[str]]:
    """The step-by-step key-release commands of the README, as written (optional parts
    in brackets and comments left out; the one-command demo too)."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    block = text.split("### Key-release contracts", 1)[1].split("```sh", 1)[1].split("```")[0]
    steps = []
    for line in block.strip().splitlines():
        command = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
        assert command[:2] == ["sealbridge", "keyrelease"], line
        if command[2] != "demo":
            steps.append(command[2:])
    return steps


def test_the_readme_flow_runs_as_written(tmp_path: Path) -> None:
    """Issue 15, item 8: the README's step-by-step flow works as written (before: the
    request could not be filled, and a second one reused the request id)."""
    home = tmp_path / "home"
    steps = readme_flow()
    assert steps[0] == ["up"] and steps[-1] == ["down"]
    offer = ""
    accepted = 0
    try:
        for step in steps:
            args = [offer if arg == "<request-id>" else arg for arg in step]
            if args == ["up"]:
                args += ["--port", "18646"]
            out = cli(home, *args)
            assert out.returncode == 0, (step, out.stdout + out.stderr)
            if step[0] == "request":
                (offer,) = re.findall(r"offer ([0-9a-f]{32})", out.stdout)
            if step[0] == "accept":
                accepted += 1
                assert "double-spent 0" in out.stdout, out.stdout
    finally:
        cli(home, "down")
    assert accepted == 2


def test_an_older_matcher_journal_is_refused(
    story: tuple[KeyReleaseDevnet, DemoResult, list[Event]],
) -> None:
    """Issue 15, item 5: the matcher's host keeps its sealed journal, lets it take a chunk
    off the book (an anchored change: its owner withdraws it), then restarts it from the
    older journal (so that the chunk is on the book again, to be offered after its owner
    took it back). Before: the older journal was replayed and the matcher went on from
    it. After: the StateAnchor holds a newer version, the restart is refused, and the
    stale matcher changes nothing; the newest journal restores, equal, and acts.
    (Withdrawing rather than matching keeps the test free of the owners' risk limits,
    which the story's earlier tests fill in an order their random draws decide.)"""
    devnet, _, _ = story
    matcher = devnet._matcher()
    bob = devnet.clients["bob"]

    def withdraw(chunk_id: str) -> None:
        statement = bob.vault.call(VAULT_ATTEST_UNRELEASED, ChunkRef(chunk_id=chunk_id))
        devnet._matcher().call(MATCHER_WITHDRAW, Reclaim(statement=statement))

    a = devnet.adapters[CHAIN_A]
    devnet.oracle.set_price("ETH@31337", devnet.prices["ETH"], a.get_dev_key(1))  # fresh
    first, second = devnet.deposit("bob", "ETH@31337", 2)
    devnet.offer("bob", [first, second])
    older = (matcher.state_file.read_bytes(), matcher.segments_file.read_bytes())
    withdraw(first.chunk_id)
    newest = (matcher.state_file.read_bytes(), matcher.segments_file.read_bytes())
    status = devnet.matcher_status()
    matcher.state_file.write_bytes(older[0])
    matcher.segments_file.write_bytes(older[1])
    with pytest.raises(EnclaveCallError) as info:
        devnet.restart_matcher()
    assert info.value.remote_code == "vault_state_stale"
    with pytest.raises(EnclaveCallError, match="not the newest|acts only after"):
        withdraw(second.chunk_id)
    matcher.state_file.write_bytes(newest[0])
    matcher.segments_file.write_bytes(newest[1])
    devnet.restart_matcher()
    assert devnet.matcher_status() == status
    withdraw(second.chunk_id)  # and it acts
    assert devnet.matcher_status().chunks.get("withdrawn", 0) == (
        status.chunks.get("withdrawn", 0) + 1
    )
