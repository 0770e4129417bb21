"""Recovery by replay on a real devnet: a worker that lost its disk state comes back
from the newest checkpoint recorded on the ExecutionLedger.

One devnet of its own (anvil, the gatekeepers, two workers, three storage nodes, 2-of-3
storage confirmations) and one token, whose balances the scenario object tracks. Each test
sets up what it needs (funds for the transfers it sends, a recorded checkpoint) and checks
against the tracked balances, so the tests pass in any order (``--reverse-order``):

1. Commands, then empty blocks until the ledger records a checkpoint, then more commands.
2. worker-2 is killed with SIGKILL (host and enclave), its ``state/`` directory deleted
   (its sealed identity stays), and started again: it resumes from the checkpoint,
   replays the verified blocks after it and ends with worker-1's roots and counts.
3. The checkpoint blob is corrupted on one storage node, then on two: recovery still
   succeeds from a node that serves intact bytes (the host skips the tampered ones).
4. All copies corrupted: the recovering worker refuses to resume and says why (phase
   ``failed``, a ``BlobUnavailable`` error, no contract, no root, no answer to queries).
   Once an intact copy is back, the same worker recovers.

The chain never stands still (heartbeats, outputs), and every worker may record a new
checkpoint every 20 blocks. To know which checkpoint a recovery must use, both workers
are paused (SIGSTOP, as a frozen VM would be) while the ledger's newest checkpoint is
read and the victim is killed and recovers; worker-1 continues afterwards.

Stale and unconfirmed checkpoints are covered by ``tests/unit/test_runtime_chainview.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.config.node import NodeEntry
from sealbridge.core.encoding import decode
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.devnet.launcher import kill_node, start_devnet, start_node, stop_devnet
from sealbridge.evm.management import CheckpointRecord
from sealbridge.net.http import NodeRefused
from sealbridge.node.checkpoint_store import fetch_blob
from sealbridge.runtime.messages import CheckpointBlob
from tests.e2e.polling import DEADLINE, get_entry, get_status, wait_for, wait_output, wait_status

pytestmark = pytest.mark.e2e

USERS = ("alice", "bob", "carol")
VICTIM = "worker-2"
WORKERS = ("worker-1", "worker-2")
STORAGE = ("storage-1", "storage-2", "storage-3")


# -- helpers --------------------------------------------------------------------------------


def signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # gone already (killed meanwhile)


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

    def node(self, name: str) -> NodeEntry:
        state = self.client.state
        return {n.name: n for n in [*state.workers, *state.storage]}[name]

    def url(self, name: str) -> str:
        return self.node(name).url

    def worker_index(self, name: str) -> int:
        return [w.name for w in self.client.state.workers].index(name)

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

    def fund(self, **amounts: int) -> None:
        """Mint to each user what it lacks of ``amount`` (the transfers a test sends must
        be valid whatever ran before it)."""
        for user, amount in amounts.items():
            if self.balances[user] < amount:
                self.mint(user, amount - self.balances[user])

    def ensure_checkpoint(self) -> CheckpointRecord:
        """The ledger's newest checkpoint; if there is none yet, empty blocks until one is
        recorded (a checkpoint is due every 20 blocks)."""

        def recorded() -> CheckpointRecord | None:
            record = self.checkpoint()
            if record is None:
                self.client.chain.mine(5)
            return record

        return wait_for(recorded, "the ledger to record a checkpoint")

    def wait_applied(self, names: tuple[str, ...] = WORKERS) -> None:
        """Every named worker has applied the last command's block (others may be down)."""

        def done() -> bool:
            for name in names:
                entry = get_entry(get_status(self.url(name)), self.token.contract_id)
                if entry is None or entry["height"] < self.last_block:
                    return False
            return True

        wait_for(done, f"{', '.join(names)} to apply block {self.last_block}")

    def checkpoint(self) -> CheckpointRecord | None:
        return self.client.mgmt.execution_ledger.get_checkpoint(self.token.contract_id)

    def check_blob_matches_record(self, record: CheckpointRecord) -> None:
        """The blob stored under the recorded hash is a checkpoint of the recorded block
        (the ledger records it at the outputs' end: both must describe the same block)."""
        urls = [self.url(name) for name in STORAGE]
        blob = decode(fetch_blob(urls, record.blob_hash, timeout=10.0), CheckpointBlob)
        assert (blob.height, blob.block_hash) == (record.height, record.block_hash), (
            f"checkpoint blob at block {blob.height}, recorded by the ledger at {record.height}"
        )
        assert list(blob.states) == [self.token.contract_id.hex()]

    def blob_path(self, storage: str, record: CheckpointRecord) -> Path:
        return self.home / "devnet" / storage / "blobs" / record.blob_hash.hex()

    @contextmanager
    def frozen_checkpoint(self, *, before_last_command: bool = False) -> Iterator[CheckpointRecord]:
        """Pause both workers (SIGSTOP to their process groups): no output, hence no new
        checkpoint, can reach the ledger until the block ends and worker-1 continues.
        Yields the ledger's newest checkpoint, which stays the newest meanwhile; with
        ``before_last_command`` one older than the last command (sending one more command
        while it is not)."""
        for _ in range(5):
            self.client.refresh_state()
            pids = [self.node(name).pid for name in WORKERS]
            for pid in pids:
                signal_group(pid, signal.SIGSTOP)
            try:
                record = self.checkpoint()
                if record is not None and not (
                    before_last_command and record.height >= self.last_block
                ):
                    yield record
                    return
            finally:
                for pid in pids:
                    signal_group(pid, signal.SIGCONT)
            self.transfer("alice", "carol", 1)  # the newest checkpoint covers every command
            self.wait_applied()
        pytest.fail("every command was followed by a checkpoint")

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
        offset = Path(self.node(name).log_file).stat().st_size
        start_node(self.home, name, wait=wait, timeout=DEADLINE)
        self.client.refresh_state()
        return offset

    def read_log(self, name: str, offset: int) -> str:
        return Path(self.node(name).log_file).read_bytes()[offset:].decode(errors="replace")

    def check_in_step(self) -> dict[str, dict[str, Any]]:
        """Both workers applied every command: same root and count, the expected balances."""
        self.wait_applied()
        statuses = {n: get_status(self.url(n)) for n in WORKERS}
        entries = {n: get_entry(s, self.token.contract_id) for n, s in statuses.items()}
        # (a recovered contract's height is its checkpoint's block until a command comes,
        # the other's the block of its last command: both hold the state after it)
        states = {
            n: (e["state_root"], e["commands_applied"]) for n, e in entries.items() if e is not None
        }
        assert len(states) == len(WORKERS) and len(set(states.values())) == 1, states
        assert states[VICTIM][1] == self.applied
        for name, status in statuses.items():
            assert status["diverged"] == {}, (name, status["diverged"])
            assert status["phase"] == "following", (name, status["error"])
        for name in WORKERS:
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
    s.wait_applied()
    before = s.checkpoint()

    def recorded() -> CheckpointRecord | None:
        record = s.checkpoint()
        if record is None or (before is not None and record.height <= before.height):
            s.client.chain.mine(5)  # empty blocks: a checkpoint is due every 20 blocks
            return None
        return record

    # a checkpoint after these commands (a test that ran before may have recorded others)
    record = wait_for(recorded, "the ledger to record a checkpoint")
    print(f"\ncheckpoint recorded at block {record.height} (in block {record.recorded_at})")
    assert not record.inline and record.size > 0
    assert record.recorded_at > record.height
    held = [s.blob_path(name, record).exists() for name in STORAGE]
    assert sum(held) >= 2, held  # at least the ledger's threshold of storage nodes
    s.check_blob_matches_record(record)

    # more commands after the checkpoint: the recovering worker must replay them
    s.transfer("alice", "bob", 7)
    s.transfer("bob", "carol", 3)
    s.mint("bob", 20)
    s.check_in_step()


def test_a_worker_that_lost_its_state_recovers_from_the_checkpoint(scenario: Scenario) -> None:
    s = scenario
    s.fund(alice=10, bob=10, carol=10)  # the transfers below and frozen_checkpoint's
    s.ensure_checkpoint()
    node_id = get_status(s.url(VICTIM))["node_id"]
    with s.frozen_checkpoint(before_last_command=True) as record:
        print(f"\nnewest checkpoint at block {record.height}, last command in {s.last_block}")
        s.check_blob_matches_record(record)
        s.wipe_and_start(VICTIM)  # worker-1 stays paused until it is back
        status = get_status(s.url(VICTIM))
    assert status["recovered_from"] == record.height
    assert status["anchor"] == record.height
    assert status["node_id"] == node_id  # same sealed enclave identity

    tip = s.client.chain.get_block_number()
    status = wait_status(
        s.url(VICTIM),
        lambda st: st["verified_height"] >= tip and not st["awaiting_checkpoint_record"],
        "the recovered worker to replay to the tip and see its checkpoint's record",
    )
    print(
        f"{VICTIM} recovered from block {status['recovered_from']} and replayed to "
        f"{status['verified_height']}"
    )
    assert status["phase"] == "following"
    s.check_in_step()  # same root and count as worker-1, the right balances
    answer = s.client.query(
        s.token_id, "balance", {"owner": "bob"}, as_user="bob", worker=s.worker_index(VICTIM)
    )
    assert answer.worker_key == from_hex(node_id)
    assert answer.answer.result == s.balances["bob"]

    # new commands keep both workers in step, and the ledger agrees with them
    s.transfer("carol", "alice", 5)
    s.transfer("bob", "alice", 1)
    statuses = s.check_in_step()
    assert not statuses[VICTIM]["awaiting_checkpoint_record"]
    output = wait_output(s.client, s.token.contract_id, s.applied)
    entry = get_entry(get_status(s.url(VICTIM)), s.token.contract_id)
    assert entry is not None and to_hex(output.state_root) == entry["state_root"]


@pytest.mark.parametrize("corrupted", [1, 2], ids=["one-node-tampered", "two-nodes-tampered"])
def test_recovery_skips_tampered_copies_of_the_checkpoint(
    scenario: Scenario, corrupted: int
) -> None:
    s = scenario
    s.fund(alice=10)  # the transfer below and frozen_checkpoint's
    s.ensure_checkpoint()
    s.transfer("alice", "carol", 2)
    s.check_in_step()
    tampered = STORAGE[:corrupted]  # the host asks the nodes in order: these come first
    with s.frozen_checkpoint() as record:
        assert all(s.blob_path(n, record).exists() for n in STORAGE)
        originals = {n: s.blob_path(n, record).read_bytes() for n in STORAGE}
        try:
            for i, name in enumerate(tampered):
                path, blob = s.blob_path(name, record), originals[name]
                if i == 0:
                    path.write_bytes(bytes([blob[0] ^ 0x01]) + blob[1:])  # one bit flipped
                else:
                    path.write_bytes(blob[: len(blob) // 2])  # truncated
            offset = s.wipe_and_start(VICTIM)
        finally:
            for name, blob in originals.items():
                s.blob_path(name, record).write_bytes(blob)
        status = get_status(s.url(VICTIM))
    assert status["recovered_from"] == record.height
    written = s.read_log(VICTIM, offset)
    for name in tampered:
        assert f"storage node {s.url(name)} served" in written, written[-3000:]
    assert written.count("tampered, skipped") == corrupted
    wait_status(
        s.url(VICTIM),
        lambda st: st["awaiting_checkpoint_record"] is False,
        "the recovered worker to see its checkpoint's record",
    )
    s.check_in_step()


def test_no_intact_copy_means_a_clear_failure_not_a_wrong_state(scenario: Scenario) -> None:
    s = scenario
    s.fund(alice=20, bob=10, carol=10)  # the transfers below and frozen_checkpoint's
    s.ensure_checkpoint()
    s.transfer("carol", "bob", 4)
    s.check_in_step()
    with s.frozen_checkpoint() as record:
        originals = {n: s.blob_path(n, record).read_bytes() for n in STORAGE}
        try:
            for name, blob in originals.items():
                s.blob_path(name, record).write_bytes(bytes([blob[0] ^ 0xFF]) + blob[1:])
            s.wipe_and_start(VICTIM, wait=False)
            status = wait_status(
                s.url(VICTIM), lambda st: st["phase"] == "failed", "the recovering worker to fail"
            )
        except BaseException:
            for name, blob in originals.items():
                s.blob_path(name, record).write_bytes(blob)
            raise
    try:
        print(f"\n{VICTIM} with no intact checkpoint copy: {status['error']}")
        assert "BlobUnavailable" in status["error"]
        assert status["error"].count("tampered bytes") == len(STORAGE)
        assert status["contracts"] == []  # nothing installed: no root to report
        assert status["recovered_from"] is None
        assert status["outputs_accepted"] == 0
        with pytest.raises(NodeRefused):  # no answer rather than a wrong one
            s.balance("bob", VICTIM)
        # worker-1 executes meanwhile, but with one of two executors down it releases
        # nothing about the new state (the witness rule: no majority vouched for it)
        s.transfer("alice", "bob", 6)
        s.wait_applied(("worker-1",))
        with pytest.raises(NodeRefused) as refused:
            s.client.query_once(
                to_hex(s.token.contract_id), "balance", {"owner": "bob"}, as_user="bob", worker=0
            )
        assert refused.value.remote_code == "not_witnessed"
        assert get_status(s.url(VICTIM))["phase"] == "failed"
    finally:
        for name, blob in originals.items():
            s.blob_path(name, record).write_bytes(blob)

    # an intact copy is back: the same worker recovers and catches up
    with s.frozen_checkpoint() as latest:
        s.wipe_and_start(VICTIM)
        status = get_status(s.url(VICTIM))
    assert status["recovered_from"] == latest.height >= record.height
    s.transfer("bob", "carol", 1)
    s.check_in_step()


def test_outputs_resume_after_every_worker_restarts_from_its_bundle(scenario: Scenario) -> None:
    """Last in the module as written: while it fails, the contract's outputs stay stalled
    (so a failure here cannot make the others fail); it passes in any position.

    Two storage nodes down (below the 2-of-3 threshold) and a checkpoint due: no output can
    be submitted. A command lands; both workers apply it (their bundles move past the last
    OutputAccepted event) and crash. Storage comes back, both workers restart from their
    bundles: outputs must resume."""
    s = scenario
    ledger = s.client.mgmt.execution_ledger
    s.fund(alice=10, carol=10)  # the transfers below
    s.transfer("alice", "bob", 3)
    s.check_in_step()
    wait_output(s.client, s.token.contract_id, s.applied)
    for name in STORAGE[1:]:
        kill_node(s.home, name)
    try:
        s.client.chain.mine(25)  # a checkpoint is due; it cannot be stored: outputs wait
        s.transfer("carol", "alice", 2)
        s.wait_applied()
        for name in WORKERS:
            kill_node(s.home, name)
    finally:
        for name in STORAGE[1:]:
            start_node(s.home, name, timeout=DEADLINE)
    for name in WORKERS:
        start_node(s.home, name, timeout=DEADLINE)
    s.client.refresh_state()
    s.check_in_step()  # the state itself is right

    deadline = time.monotonic() + 15.0
    output = ledger.get_output(s.token.contract_id)
    while time.monotonic() < deadline:
        output = ledger.get_output(s.token.contract_id)
        if output is not None and output.commands_applied == s.applied:
            break
        s.client.chain.mine(1)
        time.sleep(0.5)
    assert output is not None and output.commands_applied == s.applied, (
        f"outputs stalled at {output.commands_applied if output else 0} of {s.applied} "
        "commands after every worker restarted from its bundle"
    )
