"""Asynchronous messages between contracts on a real devnet: a worker posts them to the
target's inbox, and every worker delivers them in a later block, once."""

from __future__ import annotations

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


def test_a_contract_messages_another_through_the_chain(client: Client, tmp_path: Path) -> None:
    ponger, pinger = deploy_pair(client, tmp_path)
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
    posted = [
        NodeClient(w.url).get_json("/v1/status")["messages_posted"] for w in client.state.workers
    ]
    assert sorted(posted) == [0, 3]  # only the first assigned worker posts


def sent_block(client: Client, contract_id: bytes) -> int:
    status = NodeClient(client.state.workers[0].url).get_json("/v1/status")
    (entry,) = [c for c in status["contracts"] if c["contract_id"] == to_hex(contract_id)]
    return int(entry["height"])


def test_a_dead_first_worker_delays_messages_but_does_not_lose_them(
    client: Client, tmp_path: Path
) -> None:
    """Only the source's first worker posts its messages. With that worker killed, the
    other worker of the source sees them missing from the inbox and posts them itself
    ``message_repost_blocks`` blocks later (before the fix they were never posted)."""
    from sealbridge.chain.adapter import ChainAdapter
    from sealbridge.node.devnet import kill_node, start_node

    ponger, pinger = deploy_pair(client, tmp_path)
    home = client.state_home
    kill_node(home, "worker-1")  # the first worker of both contracts
    try:
        client.call(to_hex(pinger.contract_id), "ping", {"times": 2}, as_user="alice")
        chain = ChainAdapter.rpc(client.state.rpc_url)
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
        assert status["messages_reposted"] >= 2
    finally:
        start_node(home, "worker-1")
    # the first worker comes back, replays the blocks it missed (its own late postings
    # of the same messages are refused as replays) and agrees with the other one
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
