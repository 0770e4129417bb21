"""Recovery by replay on a real devnet: a worker that lost its disk state comes back
from the newest checkpoint recorded on the ExecutionLedger.

One devnet of its own (anvil, a gatekeeper, two workers, three storage nodes, 2-of-3
storage confirmations). Order matters inside this module: one token, one history.

1. Commands, then empty blocks until the ledger records a checkpoint, then more commands.
2. worker-2 is killed with SIGKILL (host and enclave), its ``state/`` directory deleted
   (its sealed identity stays), and started again: it resumes from the checkpoint,
   replays the verified blocks after it and ends with worker-1's roots and counts.
3. The checkpoint blob is corrupted on one storage node, then on two: recovery still
   succeeds from a node that serves intact bytes (the host skips the tampered ones).
4. All copies corrupted: the recovering worker refuses to resume and says why (phase
   ``failed``, a ``BlobUnavailable`` error, no contract, no root, no answer to queries).
   Once an intact copy is back, the same worker recovers.

Stale and unconfirmed checkpoints are covered by ``tests/unit/test_runtime_chainview.py``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from sealbridge.chain.management import CheckpointRecord
from sealbridge.client.api import Client, Deployment
from sealbridge.core.encoding import decode
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.net.http import NodeRefused
from sealbridge.node.checkpoint_store import fetch_blob
from sealbridge.node.devnet import kill_node, start_devnet, start_node, stop_devnet
from sealbridge.runtime.messages import CheckpointBlob

pytestmark = pytest.mark.e2e

T = TypeVar("T")
USERS = ("alice", "bob", "carol")
DEADLINE = 90.0  # generous: two cores, several processes
QUIET = 1.5  # seconds without a new block before the devnet counts as settled
VICTIM = "worker-2"


# -- helpers --------------------------------------------------------------------------------
def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, NodeRefused) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(0.1)


def get_status(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/v1/status", timeout=5.0).json())


def get_entry(status: dict[str, Any], contract_id: bytes) -> dict[str, Any] | None:
    for entry in status["contracts"]:
        if entry["contract_id"] == to_hex(contract_id):
            return dict(entry)
    return None


@dataclass
class Scenario:
    """The devnet, the token and what the token's state must be."""

    home: Path
    client: Client
    token: Deployment
    balances: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USERS, 0))
    applied: int = 1  # the deploy command
    last_block: int = 0

    @property
    def token_id(self) -> str:
        return to_hex(self.token.contract_id)

    def url(self, name: str) -> str:
        (entry,) = [w for w in self.client.state.workers if w.name == name]
        return entry.url

    def worker_index(self, name: str) -> int:
        return [w.name for w in self.client.state.workers].index(name)

    def log_file(self, name: str) -> Path:
        (entry,) = [
            n for n in [*self.client.state.workers, *self.client.state.storage] if n.name == name
        ]
        return Path(entry.log_file)

    # commands whose effect on the balances we know
    def mint(self, to: str, amount: int) -> None:
        receipt = self.client.call(
            self.token_id, "mint", {"to": to, "amount": amount}, as_user="alice"
        )
        self.balances[to] += amount
        self.applied += 1
        self.last_block = receipt.block_number

    def transfer(self, sender: str, to: str, amount: int) -> None:
        assert self.balances[sender] >= amount, "the scenario must only send valid transfers"
        receipt = self.client.call(
            self.token_id, "transfer", {"to": to, "amount": amount}, as_user=sender
        )
        self.balances[sender] -= amount
        self.balances[to] += amount
        self.applied += 1
        self.last_block = receipt.block_number

    def wait_applied(self, names: list[str]) -> None:
        """Every named worker has applied the last command's block (others may be down)."""

        def done() -> bool:
            for name in names:
                entry = get_entry(get_status(self.url(name)), self.token.contract_id)
                if entry is None or entry["height"] < self.last_block:
                    return False
            return True

        wait_for(done, f"{', '.join(names)} to apply block {self.last_block}")

    def settle(self, names: list[str]) -> None:
        """Wait until the named workers are at the tip and no block came for QUIET seconds
        (no output submission in flight that could still record a checkpoint)."""
        chain = self.client.chain
        tip, since = chain.get_block_number(), time.monotonic()
        deadline = time.monotonic() + DEADLINE
        while True:
            now_tip = chain.get_block_number()
            if now_tip != tip:
                tip, since = now_tip, time.monotonic()
            heights = [get_status(self.url(n))["verified_height"] for n in names]
            if all(h == tip for h in heights) and time.monotonic() - since >= QUIET:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"devnet did not settle: tip {tip}, workers at {heights}")
            time.sleep(0.1)

    def ensure_commands_after_checkpoint(self) -> CheckpointRecord:
        """Settle; while the newest checkpoint already covers the last command (the
        commands' own blocks may have made one due), send one more command. Returns the
        newest checkpoint, older than the last command."""
        names = [w.name for w in self.client.state.workers]
        for _ in range(5):
            self.wait_applied(names)
            self.settle(names)
            record = self.checkpoint()
            if record is not None and record.height < self.last_block:
                return record
            self.transfer("alice", "carol", 1)
        pytest.fail("every command was followed by a checkpoint")

    def check_blob_matches_record(self, record: CheckpointRecord) -> None:
        """The blob stored under the recorded hash is a checkpoint of the recorded block
        (the ledger records it at the outputs' end: both must describe the same block)."""
        urls = [e.url for e in self.client.state.storage]
        blob = decode(fetch_blob(urls, record.blob_hash, timeout=10.0), CheckpointBlob)
        assert (blob.height, blob.block_hash) == (record.height, record.block_hash), (
            f"checkpoint blob at block {blob.height}, recorded by the ledger at {record.height}"
        )
        assert list(blob.states) == [self.token.contract_id.hex()]

    def checkpoint(self) -> CheckpointRecord | None:
        return self.client.mgmt.execution_ledger.get_checkpoint(self.token.contract_id)

    def blob_path(self, storage: str, record: CheckpointRecord) -> Path:
        return self.home / "devnet" / storage / "blobs" / record.blob_hash.hex()

    def balance(self, user: str, worker: str) -> int:
        answer = self.client.query(
            self.token_id,
            "balance",
            {"owner": user},
            as_user=user,
            worker=self.worker_index(worker),
        )
        return int(answer.answer.result)

    def wipe_and_start(self, name: str, *, wait: bool = True) -> int:
        """kill -9 the worker, delete its state (not its sealed identity), start it again;
        returns the size of its log before the start (to read what this start wrote)."""
        kill_node(self.home, name)
        node_home = self.home / "devnet" / name
        shutil.rmtree(node_home / "state", ignore_errors=True)
        assert (node_home / "identity.sealed").exists()
        log_file = self.log_file(name)
        offset = log_file.stat().st_size
        start_node(self.home, name, wait=wait)
        self.client.refresh_state()
        return offset

    def check_in_step(self) -> dict[str, Any]:
        """Both workers at the same height with the same root and count, as expected."""
        names = [w.name for w in self.client.state.workers]
        self.wait_applied(names)
        self.settle(names)
        statuses = {n: get_status(self.url(n)) for n in names}
        entries = {n: get_entry(s, self.token.contract_id) for n, s in statuses.items()}
        assert all(e is not None for e in entries.values()), entries
        roots = {n: (e["state_root"], e["commands_applied"]) for n, e in entries.items() if e}
        assert len(set(roots.values())) == 1, f"workers disagree: {roots}"
        assert next(iter(roots.values()))[1] == self.applied
        for name, status in statuses.items():
            assert status["diverged"] == {}, (name, status["diverged"])
            assert status["phase"] == "following", (name, status["error"])
        for name in names:
            for user in USERS:
                assert self.balance(user, name) == self.balances[user], (name, user)
        return statuses


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    home = tmp_path_factory.mktemp("recovery")
    start_devnet(home, workers=2)
    client = Client.from_home(home)
    try:
        token = client.deploy("token", as_user="alice")
        yield Scenario(home=home, client=client, token=token)
    finally:
        client.close()
        stop_devnet(home)


# -- tests ----------------------------------------------------------------------------------
def test_a_checkpoint_is_recorded_and_stored_on_the_storage_nodes(scenario: Scenario) -> None:
    s = scenario
    s.mint("alice", 1_000)
    s.transfer("alice", "bob", 100)
    s.transfer("alice", "carol", 50)
    s.transfer("bob", "carol", 10)
    s.wait_applied(["worker-1", "worker-2"])

    def recorded() -> CheckpointRecord | None:
        record = s.checkpoint()
        if record is None:
            s.client.chain.mine(5)  # empty blocks: a checkpoint is due every 20 blocks
        return record

    record = wait_for(recorded, "the ledger to record a checkpoint")
    print(f"checkpoint recorded at block {record.height} (in block {record.recorded_at})")
    assert not record.inline and record.size > 0
    s.check_blob_matches_record(record)
    assert record.recorded_at > record.height
    held = [s.blob_path(f"storage-{i}", record).exists() for i in range(1, 4)]
    assert sum(held) >= 2, held  # at least the ledger's threshold of storage nodes

    # more commands after the checkpoint: the recovering worker must replay them
    s.transfer("alice", "bob", 7)
    s.transfer("bob", "carol", 3)
    s.mint("bob", 20)
    s.ensure_commands_after_checkpoint()
    s.check_in_step()


def test_a_worker_that_lost_its_state_recovers_from_the_checkpoint(scenario: Scenario) -> None:
    s = scenario
    record = s.ensure_commands_after_checkpoint()
    print(f"newest checkpoint at block {record.height}, last command in block {s.last_block}")
    s.check_blob_matches_record(record)
    before = get_status(s.url("worker-1"))
    node_id = get_status(s.url(VICTIM))["node_id"]

    s.wipe_and_start(VICTIM)

    status = wait_for(
        lambda: (
            (st := get_status(s.url(VICTIM)))["verified_height"] >= before["verified_height"]
            and not st["awaiting_checkpoint_record"]
            and st
        ),
        "the recovered worker to replay to the tip and see its checkpoint's record",
    )
    print(
        f"{VICTIM} recovered from block {status['recovered_from']} and replayed to "
        f"{status['verified_height']}"
    )
    assert status["node_id"] == node_id  # same sealed enclave identity
    assert status["recovered_from"] == record.height
    assert status["anchor"] == record.height
    assert status["phase"] == "following"
    ours = get_entry(status, s.token.contract_id)
    theirs = get_entry(get_status(s.url("worker-1")), s.token.contract_id)
    assert ours is not None and theirs is not None
    assert (ours["state_root"], ours["commands_applied"]) == (
        theirs["state_root"],
        theirs["commands_applied"],
    )
    assert ours["commands_applied"] == s.applied
    for user in USERS:
        assert s.balance(user, VICTIM) == s.balances[user]
    answer = s.client.query(
        s.token_id, "balance", {"owner": "bob"}, as_user="bob", worker=s.worker_index(VICTIM)
    )
    assert answer.worker_key == from_hex(node_id)

    # new commands keep both workers in step, and the ledger agrees with them
    s.transfer("carol", "alice", 5)
    s.transfer("bob", "alice", 1)
    statuses = s.check_in_step()
    assert not statuses[VICTIM]["awaiting_checkpoint_record"]
    output = wait_for(
        lambda: (
            (o := s.client.mgmt.execution_ledger.get_output(s.token.contract_id))
            and o.commands_applied == s.applied
            and o
        ),
        "the ledger to accept an output with every command",
    )
    entry = get_entry(statuses[VICTIM], s.token.contract_id)
    assert entry is not None and to_hex(output.state_root) == entry["state_root"]


@pytest.mark.parametrize("corrupted", [1, 2], ids=["one-node-tampered", "two-nodes-tampered"])
def test_recovery_skips_tampered_copies_of_the_checkpoint(
    scenario: Scenario, corrupted: int
) -> None:
    s = scenario
    s.transfer("alice", "carol", 2)
    s.check_in_step()
    record = s.checkpoint()
    assert record is not None
    storage = [f"storage-{i}" for i in range(1, 4)]
    assert all(s.blob_path(n, record).exists() for n in storage)
    originals = {n: s.blob_path(n, record).read_bytes() for n in storage}
    tampered = storage[:corrupted]  # the host asks the nodes in order: these come first
    for i, name in enumerate(tampered):
        path, blob = s.blob_path(name, record), originals[name]
        if i == 0:
            path.write_bytes(bytes([blob[0] ^ 0x01]) + blob[1:])  # one bit flipped
        else:
            path.write_bytes(blob[: len(blob) // 2])  # truncated
    try:
        offset = s.wipe_and_start(VICTIM)
        status = wait_for(
            lambda: (st := get_status(s.url(VICTIM)))["awaiting_checkpoint_record"] is False and st,
            "the recovered worker to see its checkpoint's record",
        )
        assert status["recovered_from"] == record.height
        written = s.log_file(VICTIM).read_bytes()[offset:].decode(errors="replace")
        for name in tampered:
            (entry,) = [e for e in s.client.state.storage if e.name == name]
            assert f"storage node {entry.url} served" in written, written[-3000:]
        assert written.count("tampered, skipped") == corrupted
        s.check_in_step()
    finally:
        for name, blob in originals.items():
            s.blob_path(name, record).write_bytes(blob)


def test_no_intact_copy_means_a_clear_failure_not_a_wrong_state(scenario: Scenario) -> None:
    s = scenario
    s.transfer("carol", "bob", 4)
    s.check_in_step()
    record = s.checkpoint()
    assert record is not None
    storage = [f"storage-{i}" for i in range(1, 4)]
    originals = {n: s.blob_path(n, record).read_bytes() for n in storage}
    for name, blob in originals.items():
        s.blob_path(name, record).write_bytes(bytes([blob[0] ^ 0xFF]) + blob[1:])
    try:
        s.wipe_and_start(VICTIM, wait=False)
        status = wait_for(
            lambda: (st := get_status(s.url(VICTIM)))["phase"] == "failed" and st,
            "the recovering worker to fail",
        )
        print(f"{VICTIM} with no intact checkpoint copy: {status['error']}")
        assert "BlobUnavailable" in status["error"]
        assert "tampered bytes" in status["error"]
        assert status["contracts"] == []  # nothing installed: no root to report
        assert status["recovered_from"] is None
        assert status["outputs_accepted"] == 0
        with pytest.raises(NodeRefused):  # no answer rather than a wrong one
            s.balance("bob", VICTIM)
        # worker-1 keeps the contract alive meanwhile
        s.transfer("alice", "bob", 6)
        s.wait_applied(["worker-1"])
        assert s.balance("bob", "worker-1") == s.balances["bob"]
        assert get_status(s.url(VICTIM))["phase"] == "failed"
    finally:
        for name, blob in originals.items():
            s.blob_path(name, record).write_bytes(blob)

    # an intact copy is back: the same worker recovers and catches up
    s.settle(["worker-1"])
    latest = s.checkpoint()
    assert latest is not None
    s.wipe_and_start(VICTIM)
    status = wait_for(
        lambda: (st := get_status(s.url(VICTIM)))["awaiting_checkpoint_record"] is False and st,
        "the recovered worker to see its checkpoint's record",
    )
    assert status["recovered_from"] == latest.height
    s.transfer("bob", "carol", 1)
    s.check_in_step()
