"""The whole foundation slice on a real anvil chain with real processes.

Every test sets up what it reads (a mint before a transfer, a command before its replay)
and compares balances before and after, so the tests pass in any order on the session's
shared devnet and token (``--reverse-order`` checks it). The leak scan over everything
the chain stored is in test_leak_scan.py.
"""

from __future__ import annotations

import time

import pytest

from sealbridge.chain.abi import Role
from sealbridge.client.api import Client, Deployment
from sealbridge.core.encoding import encode
from sealbridge.core.ids import from_hex, keccak
from sealbridge.crypto import ecies
from sealbridge.net.http import NodeClient, NodeRefused
from sealbridge.runtime.envelope import make_query, seal_command
from sealbridge.runtime.messages import command_aad
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.enclave import NodeKeys, compute_report_data
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy

pytestmark = pytest.mark.e2e

MINT = 1_234_567
TO_BOB = 345_678
TO_CAROL = 98_765


def balance(client: Client, token_id: str, user: str, worker: int = 0) -> int:
    return client.query(
        token_id, "balance", {"owner": user}, as_user=user, worker=worker
    ).answer.result


def fund(client: Client, token: Deployment, token_id: str, user: str, amount: int) -> None:
    """Mint ``amount`` to ``user`` (the deployer mints) and wait until both workers have
    it, so the test that calls this reads balances it set up itself."""
    r = client.call(token_id, "mint", {"to": user, "amount": amount}, as_user="alice")
    client.wait_applied(token.contract_id, r.block_number)


def get_worker_root(client: Client, token: Deployment, worker: int) -> str:
    status = NodeClient(client.state.workers[worker].url).get_json("/v1/status")
    (entry,) = [
        c for c in status["contracts"] if c["contract_id"] == "0x" + token.contract_id.hex()
    ]
    return str(entry["state_root"])


def test_nodes_registered_by_attestation(client: Client) -> None:
    registry = client.mgmt.node_registry
    platform = from_hex(client.state.platform_public_key, size=32)
    worker_measurement = compute_sim_measurement("sealbridge.runtime.enclave:WorkerProgram")
    gk = registry.get_node(from_hex(client.state.gatekeeper.node_id, size=32))
    assert gk is not None and gk.active and gk.role == Role.GATEKEEPER
    assert len(client.state.workers) == 2
    for entry in client.state.workers:
        record = registry.get_node(from_hex(entry.node_id, size=32))
        assert record is not None and record.active and record.role == Role.WORKER
        assert record.measurement == worker_measurement
        assert record.stake >= 10**18
    # The quote each worker registered with is on chain (event) and re-verifies.
    registered = client.mgmt.node_registry.codec.event_by_name("NodeRegistered").topic
    follower_events = client.chain.get_logs(
        0, client.chain.get_block_number(), [client.addresses.node_registry], [registered]
    )
    # every gatekeeper, every worker and every storage node (which stake too), once each;
    # other tests of the session register nodes of their own on this chain (renewals)
    nodes = [*client.state.gatekeepers, *client.state.workers, *client.state.storage]
    devnet_ids = {from_hex(n.node_id, size=32) for n in nodes}
    worker_ids = {from_hex(w.node_id, size=32) for w in client.state.workers}
    from sealbridge.evm.follower import BlockFollower

    registered_ids: list[bytes] = []
    seen = 0
    for block in BlockFollower(client.chain, client.addresses).poll_until_caught_up():
        for event in block.events:
            if event.name == "NodeRegistered":
                registered_ids.append(bytes(event.args["node_id"]))
            if event.name != "NodeRegistered" or event.args["role"] != Role.WORKER:
                continue
            if bytes(event.args["node_id"]) not in worker_ids:
                continue  # a node another test registered
            quote = bytes(event.args["quote"])
            assert keccak(quote) == event.args["quote_hash"]
            record = registry.get_node(bytes(event.args["node_id"]))
            assert record is not None
            keys = NodeKeys(
                identity_key=record.identity_key,
                encryption_key=record.encryption_key,
                eth_address=from_hex(record.enclave_address, size=20),
            )
            verdict = verify_quote(
                quote,
                policy=devnet_policy(platform, [worker_measurement], max_quote_age_seconds=3600),
                now=int(time.time()),
                expected_report_data=compute_report_data(keys),
            )
            assert verdict.accepted and verdict.kind == "simulated"
            seen += 1
    assert seen == 2
    assert len(registered_ids) == len(follower_events)  # the follower sees what the logs say
    assert sorted(i for i in registered_ids if i in devnet_ids) == sorted(devnet_ids)


def test_deploy_publishes_the_key_and_initializes(client: Client, token: Deployment) -> None:
    record = client.get_contract(token.contract_id)
    assert record.key_published
    assert record.contract_public_key == token.contract_public_key
    assert sorted(record.workers) == sorted(from_hex(w.node_id) for w in client.state.workers)
    assert record.wrapped_key == b""  # no root key exists to wrap the contract key under
    # the publisher is a member of the committee's active era
    members = {from_hex(g.node_id) for g in client.state.gatekeepers}
    assert record.gatekeeper_id in members


def test_encrypted_transfers_and_signed_queries(
    client: Client, token: Deployment, token_id: str
) -> None:
    # the session's token may hold balances from tests that ran before (any order)
    before = {
        user: client.query(token_id, "balance", {"owner": user}, as_user=user).answer.result
        for user in ("alice", "bob", "carol")
    }
    client.call(token_id, "mint", {"to": "alice", "amount": MINT}, as_user="alice")
    r = client.call(token_id, "transfer", {"to": "bob", "amount": TO_BOB}, as_user="alice")
    client.wait_applied(token.contract_id, r.block_number)
    r = client.call(token_id, "transfer", {"to": "carol", "amount": TO_CAROL}, as_user="bob")
    client.wait_applied(token.contract_id, r.block_number)
    change = {"alice": MINT - TO_BOB, "bob": TO_BOB - TO_CAROL, "carol": TO_CAROL}
    expected = {user: before[user] + amount for user, amount in change.items()}
    for worker in (0, 1):
        for user, amount in expected.items():
            answer = client.query(token_id, "balance", {"owner": user}, as_user=user, worker=worker)
            assert answer.answer.result == amount
            assert answer.answer.block_height >= r.block_number
            assert answer.worker_key == from_hex(client.state.workers[worker].node_id)
    # Both workers (separate processes) reached the same state root, and say so on chain.
    assert get_worker_root(client, token, 0) == get_worker_root(client, token, 1)
    # The workers race to put their enclave-signed root on chain; the ledger keeps the first
    # valid output for the range, and it is the root both computed.
    deadline = time.monotonic() + 30
    output = client.mgmt.execution_ledger.get_output(token.contract_id)
    while output is None or output.end < r.block_number:
        assert time.monotonic() < deadline, f"no output accepted up to {r.block_number}: {output}"
        time.sleep(0.1)
        output = client.mgmt.execution_ledger.get_output(token.contract_id)
    assert output.node_id in {from_hex(w.node_id) for w in client.state.workers}
    assert output.state_root == from_hex(get_worker_root(client, token, 0))
    assert output.end_hash == client.chain.get_block(output.end).hash


def test_only_the_owner_reads_a_balance(client: Client, token: Deployment, token_id: str) -> None:
    fund(client, token, token_id, "alice", 1)  # a supply to read, whatever ran before
    with pytest.raises(NodeRefused) as refused:
        client.query(token_id, "balance", {"owner": "alice"}, as_user="carol")
    assert refused.value.remote_code == "query_refused"
    assert "not_a_reader" in refused.value.message
    # total_supply is declared readable by anyone; a query the contract lacks is refused
    supply = client.query(token_id, "total_supply", {}, as_user="carol").answer.result
    assert isinstance(supply, int) and supply > 0
    with pytest.raises(NodeRefused) as refused:
        client.query(token_id, "balances", {}, as_user="alice")
    assert "unknown_method" in refused.value.message


def test_forged_query_signature_is_refused(client: Client, token_id: str) -> None:
    alice = client.get_user("alice")
    query, _ = make_query(
        contract_id=from_hex(token_id),
        caller_private_key=alice.identity_private_key,
        method="balance",
        args={"owner": alice.identity_key},
        issued_at=0,
    )
    forged = type(query)(body=query.body, signature=bytes(64))
    with NodeClient(client.state.workers[0].url) as node, pytest.raises(NodeRefused) as refused:
        node.post("/v1/query", encode(forged))
    assert refused.value.status == 400
    with NodeClient(client.state.workers[0].url) as node, pytest.raises(NodeRefused):
        node.post("/v1/query", b"\x93garbage")


@pytest.mark.parametrize("case", ["wrong_key", "replayed", "malformed"])
def test_bad_commands_on_chain_change_nothing(
    client: Client, token: Deployment, token_id: str, case: str
) -> None:
    alice = client.get_user("alice")
    # alice has a command on chain (the nonce "replayed" reuses) and a balance a transfer
    # of 1 would change, whatever ran before
    fund(client, token, token_id, "alice", 1)
    before_root = get_worker_root(client, token, 0)
    before_balance = balance(client, token_id, "alice")
    nonce = client.next_nonce(alice, token.contract_id)
    if case == "wrong_key":
        _, wrong_public = ecies.x25519_keypair()
        ciphertext = seal_command(
            contract_id=token.contract_id,
            contract_public_key=wrong_public,
            sender_private_key=alice.identity_private_key,
            nonce=nonce,
            method="transfer",
            args={"to": client.get_user("bob").identity_key, "amount": 1},
        )
    elif case == "replayed":
        ciphertext = seal_command(
            contract_id=token.contract_id,
            contract_public_key=token.contract_public_key,
            sender_private_key=alice.identity_private_key,
            nonce=nonce - 1,
            method="transfer",
            args={"to": client.get_user("bob").identity_key, "amount": 1},
        )
    else:
        ciphertext = ecies.encrypt_to(
            token.contract_public_key, b"\xc1\xc1not a command", command_aad(token.contract_id)
        )
    submitted = client.mgmt.command_inbox.submit(
        token.contract_id, ciphertext, alice.eth_private_key
    )
    client.wait_applied(token.contract_id, submitted.block_number)
    assert get_worker_root(client, token, 0) == before_root
    assert get_worker_root(client, token, 1) == before_root
    assert balance(client, token_id, "alice") == before_balance


def test_replaying_an_accepted_ciphertext_is_refused(
    client: Client, token: Deployment, token_id: str
) -> None:
    fund(client, token, token_id, "alice", 1)  # the transfer is covered, whatever ran before
    before = balance(client, token_id, "bob")
    r = client.call(token_id, "transfer", {"to": "bob", "amount": 1}, as_user="alice")
    client.wait_applied(token.contract_id, r.block_number)
    after_once = balance(client, token_id, "bob")
    assert after_once == before + 1  # applied once
    block = client.chain.web3.eth.get_transaction(r.tx_hash)
    alice = client.get_user("alice")
    # Submit the very same ciphertext again (copied from the chain).
    from sealbridge.evm.follower import BlockFollower

    (event,) = [
        e
        for b in BlockFollower(
            client.chain, client.addresses, start_block=r.block_number
        ).poll_until_caught_up()
        for e in b.events
        if e.name == "Command" and e.args["seq"] == r.seq
    ]
    again = client.mgmt.command_inbox.submit(
        token.contract_id, bytes(event.args["ciphertext"]), alice.eth_private_key
    )
    client.wait_applied(token.contract_id, again.block_number)
    assert balance(client, token_id, "bob") == after_once
    assert block is not None
