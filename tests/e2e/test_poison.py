"""Poison commands and poison deploys among ordinary transfers, and a worker killed in the
middle: every worker keeps following the chain, and all of them agree.

Issue 13's attacks on a real devnet (anvil, worker processes with sim enclaves): runaway
loops, work done in C, memory bombs, oversized writes, deep recursion, state kept in a
closure, a query that never returns, and deploys whose module body runs away or fails.
Each poison command must come back as its own typed failure; the transfers around it
must apply; a worker killed with SIGKILL and restarted must end with the same state roots
as the worker that never stopped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.client.api import CallReceipt, Client, CommandFailed, Deployment
from sealbridge.core.errors import SealbridgeError
from sealbridge.devnet.launcher import restart_node
from sealbridge.net.http import NodeClient

pytestmark = pytest.mark.e2e

POISON = '''"""Commands that try to stall, crash or split the workers."""

from sealbridge.contracts.sdk import ANYONE, Contract, Map, Value, command, query


def remember(fn):
    seen = []

    def wrapped(self):
        seen.append(1)
        self.ticks = self.ticks + len(seen)
        return len(seen)

    return wrapped


class Poison(Contract):
    ticks = Value(int, default=0)
    blobs = Map(int, str, default="")

    @command
    def spin(self) -> int:
        while True:
            pass

    @command
    def in_range(self) -> bool:
        return 0.5 in range(10**18)

    @command
    def grow(self) -> int:
        x = []
        while True:
            x.append("y" * 10**6)

    @command
    def big_writes(self) -> int:
        for i in range(9):
            self.blobs[i] = "x" * (8 * 1024 * 1024)
        return 0

    @command
    def recurse(self, n: int) -> int:
        return self.recurse(n + 1)

    @command
    @remember
    def tick(self):
        return 0

    @query(readers=ANYONE)
    def total(self) -> int:
        return self.ticks

    @query(readers=ANYONE)
    def spin_query(self) -> int:
        while True:
            pass
'''

RUNAWAY_MODULE = """from sealbridge.contracts.sdk import Contract, Value, command


class Runaway(Contract):
    n = Value(int, default=sum(range(10**12)))

    @command
    def go(self) -> int:
        return 1
"""

FAILING_MODULE = """from sealbridge.contracts.sdk import Contract, Value, command


class Failing(Contract):
    n = Value(int, default=1 // 0)

    @command
    def go(self) -> int:
        return 1
"""

POISON_GAS = 1_000_000  # enough to show the runaway commands stop, cheap for both workers
# (method, args, expected error)
POISON_COMMANDS = [
    ("spin", {}, "out_of_gas"),
    ("in_range", {}, "out_of_gas"),
    ("grow", {}, "out_of_memory"),
    ("big_writes", {}, "too_large"),
    ("recurse", {"n": 0}, "call_depth_exceeded"),
]


def contract_entries(client: Client, contract_id: bytes) -> list[dict[str, object]]:
    entries = []
    for worker in client.state.workers:
        status = NodeClient(worker.url).get_json("/v1/status")
        (entry,) = [c for c in status["contracts"] if c["contract_id"] == "0x" + contract_id.hex()]
        entries.append(dict(entry))
    return entries


def write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def test_poison_among_transfers_with_a_worker_killed(
    client: Client, token: Deployment, token_id: str, tmp_path: Path
) -> None:
    poison = client.deploy(write(tmp_path, "poison.py", POISON), as_user="bob")
    poison_id = "0x" + poison.contract_id.hex()
    client.call_and_wait(token_id, "mint", {"to": "alice", "amount": 1000}, as_user="alice")
    carol_before = client.query(token_id, "balance", {"owner": "carol"}, as_user="carol")
    sent: list[CallReceipt] = []

    def transfer() -> None:
        sent.append(
            client.call(token_id, "transfer", {"to": "carol", "amount": 1}, as_user="alice")
        )

    # each poison command fails alone, with its own code, between working transfers
    for method, args, error in POISON_COMMANDS:
        transfer()
        receipt = client.call(poison_id, method, args, as_user="bob", gas_limit=POISON_GAS)
        result = client.wait_result(receipt, as_user="bob")
        assert not result.ok and result.error == error, (method, result)
    # a query that never returns is stopped by its fuel; the worker keeps answering
    with pytest.raises(SealbridgeError, match="out_of_gas"):
        client.query(poison_id, "spin_query", {}, as_user="carol")
    assert client.query(poison_id, "total", {}, as_user="carol").answer.result == 0

    # kill -9 the second worker in the middle of the stream and start it again
    for _ in range(3):
        transfer()
        client.call(poison_id, "tick", {}, as_user="bob")
    restart_node(client.state_home, "worker-2")
    client.refresh_state()
    last = None
    for method, args, _ in POISON_COMMANDS:
        transfer()
        client.call(poison_id, "tick", {}, as_user="bob")
        last = client.call(poison_id, method, args, as_user="bob", gas_limit=POISON_GAS)
    assert last is not None
    client.wait_applied(poison.contract_id, last.block_number, timeout=120)
    client.wait_applied(token.contract_id, sent[-1].block_number, timeout=120)

    # the transfers all applied, on both workers, and the workers agree on everything
    for worker in (0, 1):
        answer = client.query(
            token_id, "balance", {"owner": "carol"}, as_user="carol", worker=worker
        )
        assert answer.answer.result == carol_before.answer.result + len(sent)
    for contract_id in (token.contract_id, poison.contract_id):
        first, second = contract_entries(client, contract_id)
        assert first["state_root"] == second["state_root"], contract_id.hex()
        assert first["commands_applied"] == second["commands_applied"]
    ticks = [
        client.query(poison_id, "total", {}, as_user="carol", worker=w).answer.result
        for w in (0, 1)
    ]
    assert ticks[0] == ticks[1] > 0


@pytest.mark.parametrize(
    ("name", "source", "why"),
    [("runaway.py", RUNAWAY_MODULE, "out of gas"), ("failing.py", FAILING_MODULE, "ZeroDivision")],
)
def test_poison_deploys_are_refused_and_the_workers_go_on(
    client: Client,
    token: Deployment,
    token_id: str,
    tmp_path: Path,
    name: str,
    source: str,
    why: str,
) -> None:
    # the client's own check refuses it first
    with pytest.raises(SealbridgeError, match="code_rejected|refused"):
        client.deploy(write(tmp_path, name, source), as_user="bob")
    # sent anyway, every worker refuses it inside its enclave, and goes on
    with pytest.raises(CommandFailed) as refused:
        client.deploy(write(tmp_path, name, source), as_user="bob", precheck=False)
    assert refused.value.code == "code_rejected" and why in str(refused.value)
    # alice has what she sends, whatever ran before (the session's token is shared)
    client.call_and_wait(token_id, "mint", {"to": "alice", "amount": 1}, as_user="alice")
    result = client.call_and_wait(
        token_id, "transfer", {"to": "carol", "amount": 1}, as_user="alice"
    )
    assert result.ok
    first, second = contract_entries(client, token.contract_id)
    assert first["state_root"] == second["state_root"]
