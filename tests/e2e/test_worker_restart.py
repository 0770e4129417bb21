"""A worker killed with SIGKILL-like force comes back from its sealed identity and state."""

from __future__ import annotations

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.core.ids import from_hex
from sealbridge.devnet.launcher import restart_node
from sealbridge.net.http import NodeClient

pytestmark = pytest.mark.e2e


def get_contract_status(client: Client, worker: int, contract_id: bytes) -> dict[str, object]:
    status = NodeClient(client.state.workers[worker].url).get_json("/v1/status")
    (entry,) = [c for c in status["contracts"] if c["contract_id"] == "0x" + contract_id.hex()]
    return dict(entry)


def test_worker_restart_resumes_from_sealed_state(
    client: Client, token: Deployment, token_id: str
) -> None:
    client.call(token_id, "mint", {"to": "alice", "amount": 10}, as_user="alice")
    r = client.call(token_id, "transfer", {"to": "carol", "amount": 3}, as_user="alice")
    client.wait_applied(token.contract_id, r.block_number)
    before = get_contract_status(client, 1, token.contract_id)
    carol_before = client.query(token_id, "balance", {"owner": "carol"}, as_user="carol", worker=1)
    node_id = client.state.workers[1].node_id

    restart_node(client.state_home, "worker-2")
    client.refresh_state()

    after = get_contract_status(client, 1, token.contract_id)
    assert after["state_root"] == before["state_root"]
    assert after["commands_applied"] == before["commands_applied"]
    # the height says at which block the state is valid: the restart resumes at the state
    # bundle's block, which later blocks (an accepted output re-seals the state) may move
    assert after["height"] >= before["height"]
    assert client.state.workers[1].node_id == node_id  # same enclave identity, unsealed
    # It keeps executing new commands, in step with the worker that never stopped.
    r = client.call(token_id, "transfer", {"to": "carol", "amount": 2}, as_user="alice")
    client.wait_applied(token.contract_id, r.block_number)
    answer = client.query(token_id, "balance", {"owner": "carol"}, as_user="carol", worker=1)
    assert answer.answer.result == carol_before.answer.result + 2
    assert answer.worker_key == from_hex(node_id)
    assert (
        get_contract_status(client, 0, token.contract_id)["state_root"]
        == get_contract_status(client, 1, token.contract_id)["state_root"]
    )
