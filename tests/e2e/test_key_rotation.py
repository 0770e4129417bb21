"""Contract key rotation on a real devnet (PODG 4.7, second half).

One devnet of its own (anvil, three gatekeepers 2-of-3, two workers, three storage
nodes) and one token with one history: each step needs the rotations before it, so the
steps are one test (``test_key_rotation_scenario``) that runs them in order, never
relying on the order pytest runs tests in.

1. The deployer rotates the token's key with ``sealbridge rotate-key``'s client call: the
   gatekeeper publishes version 1, both workers switch after the rotation block (same new
   root, same balances), a checkpoint sealed under version 1 is recorded. A command
   encrypted to the old key is refused (``wrong_key``) and changes nothing; commands to
   the new key apply. Anybody but the deployer is refused before a transaction is sent.
2. The old key is gone: worker-2 is killed with its state bundle sealed under version 1,
   the key is rotated again to version 2 while it is down (worker-1 alone executes and
   checkpoints). On restart worker-2 asks the committee for version 1 to open its bundle,
   and every gatekeeper refuses it as retired. With its state wiped it recovers from the
   checkpoint under version 2 and ends with worker-1's root and the expected balances.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from sealbridge.client.api import Client, ClientError
from sealbridge.core.encoding import decode, encode
from sealbridge.core.ids import to_hex
from sealbridge.devnet.launcher import kill_node, start_devnet, start_node, stop_devnet
from sealbridge.node.worker import ResultRequest
from sealbridge.runtime.envelope import seal_command
from sealbridge.runtime.messages import Receipt
from tests.e2e.polling import DEADLINE, get_entry, get_status, wait_for
from tests.e2e.test_recovery import WORKERS, Scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    home = tmp_path_factory.mktemp("rotation")
    start_devnet(home, workers=2)
    client = Client.from_home(home)
    try:
        token = client.deploy("token", as_user="alice")
        yield Scenario(home=home, client=client, token=token)
    finally:
        stop_devnet(home)


def key_versions(s: Scenario) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in WORKERS:
        entry = get_entry(get_status(s.url(name)), s.token.contract_id)
        out[name] = -1 if entry is None else int(entry.get("key_version", 0))
    return out


def step_1_the_deployer_rotates_the_key_and_the_state_carries_over(s: Scenario) -> None:
    registry = s.client.mgmt.contract_registry
    s.mint("alice", 500)
    s.transfer("alice", "bob", 120)
    before = s.check_in_step()
    old = registry.get_contract(s.token.contract_id)
    assert old is not None and old.key_version == 0
    old_root = get_entry(before["worker-1"], s.token.contract_id)

    messages: list[str] = []
    rotation = s.client.rotate_key(s.token_id, as_user="alice", progress=messages.append)

    new = registry.get_contract(s.token.contract_id)
    assert new is not None
    assert (rotation.version, new.key_version, new.rotation_pending) == (1, 1, False)
    assert new.contract_public_key == rotation.contract_public_key != old.contract_public_key
    assert new.message_key != old.message_key
    assert new.rotated_at == rotation.rotated_at > s.last_block
    assert rotation.checkpoint_height >= rotation.rotated_at
    checkpoint = s.checkpoint()
    assert checkpoint is not None and checkpoint.height >= new.rotated_at
    assert any("retired" in m for m in messages), messages
    assert key_versions(s) == dict.fromkeys(WORKERS, 1)

    # the same state under a new salt: a new root, the same count and balances
    after = s.check_in_step()
    entry = get_entry(after["worker-1"], s.token.contract_id)
    assert old_root is not None and entry is not None
    assert entry["commands_applied"] == old_root["commands_applied"] == s.applied
    assert entry["state_root"] != old_root["state_root"]

    s.transfer("bob", "carol", 20)  # encrypted to the new key by the client
    s.check_in_step()


def step_2_a_command_to_the_old_key_is_refused_and_changes_nothing(s: Scenario) -> None:
    bob = s.client.get_user("bob")
    contract_id = s.token.contract_id
    old_key = s.token.contract_public_key  # the key at deployment: version 0
    assert old_key != s.client.get_contract(contract_id).contract_public_key
    ciphertext = seal_command(
        contract_id=contract_id,
        contract_public_key=old_key,
        sender_private_key=bob.identity_private_key,
        nonce=s.client.next_nonce(bob, contract_id),
        method="transfer",
        args=s.client.resolve_args({"to": "carol", "amount": 5}),
    )
    submitted = s.client.mgmt.command_inbox.submit(contract_id, ciphertext, bob.eth_private_key)
    s.last_block = submitted.block_number
    s.wait_applied()
    for name in WORKERS:
        request = encode(ResultRequest(contract_id=contract_id, seq=submitted.seq))
        receipt = decode(s.client.get_node(s.url(name)).post("/v1/result", request), Receipt)
        assert (receipt.status, receipt.sealed_result) == ("wrong_key", b""), name
    s.check_in_step()  # balances and command count unchanged

    with pytest.raises(ClientError, match="only its deployer"):
        s.client.rotate_key(s.token_id, as_user="bob")
    record = s.client.get_contract(contract_id)
    assert (record.key_version, record.rotation_pending) == (1, False)


def step_3_the_old_key_is_gone_and_a_wiped_worker_recovers_under_the_new_one(s: Scenario) -> None:
    registry = s.client.mgmt.contract_registry
    s.transfer("carol", "alice", 7)
    s.check_in_step()
    kill_node(s.home, "worker-2")  # its bundle stays, sealed under key version 1
    alice = s.client.get_user("alice")
    receipt = registry.request_key_rotation(s.token.contract_id, alice.eth_private_key)

    def rotated() -> int:
        record = registry.get_contract(s.token.contract_id)
        return record.rotated_at if record is not None and record.key_version == 2 else 0

    rotated_at = wait_for(rotated, "the gatekeeper to publish key version 2")
    assert rotated_at > receipt.block_number - 1

    def checkpointed() -> bool:
        record = s.checkpoint()
        return record is not None and record.height >= rotated_at

    wait_for(checkpointed, "worker-1 to record a checkpoint under key version 2")

    # worker-2 comes back with state sealed under version 1: the committee refuses it
    start_node(s.home, "worker-2", wait=False)
    s.client.refresh_state()

    def refused() -> str:
        try:
            error = str(get_status(s.url("worker-2")).get("error") or "")
        except httpx.HTTPError:
            return ""
        return error if "retired" in error else ""

    error = wait_for(refused, "worker-2 to report that key version 1 is refused")
    assert "key version 1 is retired" in error, error

    # with its state wiped it recovers from the checkpoint under version 2
    kill_node(s.home, "worker-2")
    node_home = s.home / "devnet" / "worker-2"
    shutil.rmtree(node_home / "state", ignore_errors=True)
    start_node(s.home, "worker-2", timeout=DEADLINE)
    s.client.refresh_state()
    status = get_status(s.url("worker-2"))
    assert status["recovered_from"] is not None and status["recovered_from"] >= rotated_at
    s.transfer("alice", "bob", 11)
    s.check_in_step()
    assert key_versions(s) == dict.fromkeys(WORKERS, 2)
    assert to_hex(s.client.get_contract(s.token.contract_id).contract_public_key) != to_hex(
        s.token.contract_public_key
    )


def test_key_rotation_scenario(scenario: Scenario) -> None:
    """The module's one history, step by step (each step starts from the one before)."""
    step_1_the_deployer_rotates_the_key_and_the_state_carries_over(scenario)
    step_2_a_command_to_the_old_key_is_refused_and_changes_nothing(scenario)
    step_3_the_old_key_is_gone_and_a_wiped_worker_recovers_under_the_new_one(scenario)
