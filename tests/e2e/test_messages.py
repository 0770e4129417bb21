"""Asynchronous messages between contracts on a real devnet: a worker posts them to the
target's inbox, and every worker delivers them in a later block, once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.core.ids import to_hex
from sealbridge.net.http import NodeClient
from tests.unit.test_runtime_interop import PINGER, PONGER

pytestmark = pytest.mark.e2e


def deploy_pair(client: Client, tmp_path: Path) -> tuple[Deployment, Deployment]:
    """The ponger, and a pinger that messages it."""
    (tmp_path / "ponger.py").write_bytes(PONGER)
    (tmp_path / "pinger.py").write_bytes(PINGER)
    ponger = client.deploy(str(tmp_path / "ponger.py"), as_user="alice")
    pinger = client.deploy(
        str(tmp_path / "pinger.py"),
        as_user="alice",
        init_args={"target": to_hex(ponger.contract_id)},
    )
    return ponger, pinger


def posting_counts(client: Client, key: str) -> list[int]:
    """Each worker's count of messages posted (or reposted) since its process started:
    tests compare them before and after (other tests post, and restart workers)."""
    return [NodeClient(w.url).get_json("/v1/status")[key] for w in client.state.workers]


def test_a_contract_messages_another_through_the_chain(client: Client, tmp_path: Path) -> None:
    ponger, pinger = deploy_pair(client, tmp_path)
    posted_before = posting_counts(client, "messages_posted")
    sent = client.wait_result(
        client.call(to_hex(pinger.contract_id), "ping", {"times": 3}, as_user="alice"),
        as_user="alice",
    )
    assert sent.ok and sent.value == 3
    # delivered in a later block by both workers, from one posting of each message
    deadline = time.monotonic() + 60
    states = []
    while time.monotonic() < deadline:
        states = [
            client.query(to_hex(ponger.contract_id), "state", {}, as_user="bob", worker=w)
            for w in (0, 1)
        ]
        if all(s.answer.result["total"] == 6 for s in states):
            break
        time.sleep(0.2)
    assert [s.answer.result for s in states] == [{"total": 6, "seen": [1, 2, 3]}] * 2
    assert states[0].answer.state_root == states[1].answer.state_root
    assert states[0].answer.block_height > sent_block(client, pinger.contract_id)
    posted = posting_counts(client, "messages_posted")
    new = [after - before for after, before in zip(posted, posted_before, strict=True)]
    assert sorted(new) == [0, 3]  # only the first assigned worker posts


def sent_block(client: Client, contract_id: bytes, worker: int = 0) -> int:
    status = NodeClient(client.state.workers[worker].url).get_json("/v1/status")
    (entry,) = [c for c in status["contracts"] if c["contract_id"] == to_hex(contract_id)]
    return int(entry["height"])


def set_posting(home: Path, name: str, on: bool) -> None:
    """Restart a worker with its host posting messages, or not (a stalling host)."""
    from sealbridge.devnet.launcher import _find_node, kill_node, load_running, start_node

    entry = _find_node(load_running(home), name)
    config = json.loads(Path(entry.config_file).read_text())
    config["post_messages"] = on
    kill_node(home, name)
    Path(entry.config_file).write_text(json.dumps(config))
    start_node(home, name)


def test_a_stalling_first_worker_delays_messages_but_does_not_lose_them(
    client: Client, tmp_path: Path
) -> None:
    """Only the source's first worker posts its messages. With that worker's host not
    posting them (its enclave still executes and vouches for blocks, as the witness rule
    needs with two executors), the other worker of the source sees them missing from the
    inbox and posts them itself ``message_repost_blocks`` blocks later (before the fix
    they were never posted)."""
    from sealbridge.evm.adapter import ChainAdapter

    ponger, pinger = deploy_pair(client, tmp_path)
    home = client.state_home
    reposted_before = posting_counts(client, "messages_reposted")[1]
    set_posting(home, "worker-1", False)  # the first worker of both contracts
    chain = ChainAdapter.rpc(client.state.rpc_url)
    try:
        client.call(to_hex(pinger.contract_id), "ping", {"times": 2}, as_user="alice")
        deadline = time.monotonic() + 90
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            chain.mine(2)  # time passes on chain; nothing else happens
            answer = client.query(to_hex(ponger.contract_id), "state", {}, as_user="bob", worker=1)
            state = answer.answer.result
            if state["total"] == 3:
                break
            time.sleep(0.3)
        assert state == {"total": 3, "seen": [1, 2]}
        status = NodeClient(client.state.workers[1].url).get_json("/v1/status")
        assert status["messages_reposted"] - reposted_before >= 2
        first = NodeClient(client.state.workers[0].url).get_json("/v1/status")
        assert first["messages_posted"] == 0 and first["messages_reposted"] == 0
    finally:
        set_posting(home, "worker-1", True)
    # both workers agree on the state the reposted messages made
    deadline = time.monotonic() + 60
    answers = []
    while time.monotonic() < deadline:
        answers = [
            client.query(to_hex(ponger.contract_id), "state", {}, as_user="bob", worker=w)
            for w in (0, 1)
        ]
        roots = {a.answer.state_root for a in answers}
        if len(roots) == 1 and answers[0].answer.result == state:
            break
        chain.mine(1)
        time.sleep(0.3)
    assert [a.answer.result for a in answers] == [state, state]
    assert answers[0].answer.state_root == answers[1].answer.state_root


def test_with_one_of_two_executors_down_nothing_is_released_until_it_returns(
    client: Client, tmp_path: Path
) -> None:
    """The witness rule's price: with two executors, one is not a majority. With
    worker-1 down, worker-2 executes but releases no message and answers no query about
    the new state; worker-1 comes back, vouches, and the messages flow."""
    from sealbridge.devnet.launcher import kill_node, start_node
    from sealbridge.evm.adapter import ChainAdapter
    from sealbridge.net.http import NodeRefused

    ponger, pinger = deploy_pair(client, tmp_path)
    home = client.state_home
    chain = ChainAdapter.rpc(client.state.rpc_url)
    kill_node(home, "worker-1")
    try:
        receipt = client.call(to_hex(pinger.contract_id), "ping", {"times": 1}, as_user="alice")
        deadline = time.monotonic() + 30
        while sent_block(client, pinger.contract_id, worker=1) < receipt.block_number:
            assert time.monotonic() < deadline, "worker-2 did not apply the ping"
            time.sleep(0.2)
        chain.mine(3)
        time.sleep(2)
        with pytest.raises(NodeRefused) as refused:
            client.query_once(to_hex(pinger.contract_id), "count", {}, as_user="bob", worker=1)
        assert refused.value.remote_code == "not_witnessed"
        status = NodeClient(client.state.workers[1].url).get_json("/v1/status")
        assert status["held"] >= 1
    finally:
        start_node(home, "worker-1")
    deadline = time.monotonic() + 90
    state: dict[str, object] = {}
    while time.monotonic() < deadline:
        chain.mine(1)
        answer = client.query(to_hex(ponger.contract_id), "state", {}, as_user="bob", worker=1)
        state = answer.answer.result
        if state["total"] == 1:
            break
        time.sleep(0.3)
    assert state == {"total": 1, "seen": [1]}
