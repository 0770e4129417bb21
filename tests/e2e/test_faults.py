"""Seeded kill -9 faults on a real devnet while users keep sending token commands.

One devnet of its own (anvil, the gatekeeper(s), three workers, three storage nodes).
A fixed seed (``SEALBRIDGE_FAULT_SEED`` overrides it; it is printed) fixes the schedule:
which role is killed at each kill point, which node, how many transfers come just before
the kill (the victim is usually busy with them), how many come while it is down, and how
many empty blocks are mined. The kill is SIGKILL to the node's process group (host and
enclave at once). Then the node starts again from what its disk holds:

* a worker with its state kept resumes from its state bundle;
* a worker whose ``state/`` was deleted (sealed identity kept) recovers from the newest
  checkpoint recorded on the ExecutionLedger and replays the blocks after it;
* a worker whose host rolls it back (its state bundle replaced by an older copy, taken
  before the burst) replays the real blocks from the older height and must end exactly
  where the others are;
* a storage node comes back with its key and blobs (checkpoints made while it was down
  need only the other two);
* a gatekeeper comes back from its sealed key material, with the same identity; once,
  its host first puts back the sealed header tip and committee state it copied before
  the burst (a rollback attempt: the enclave follows the headers again from there).

At the end every worker must hold exactly the balances the mined commands imply (no
command lost, none applied twice), the same command count (the number of commands sent,
all valid) and the same root, with no divergence, and the ledger's latest accepted
output must carry that root and count.

Timing decides where a kill lands, never the outcome: waits poll with deadlines.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.config.node import NodeEntry
from sealbridge.core.ids import to_hex
from sealbridge.devnet.launcher import kill_node, start_devnet, start_node, stop_devnet
from tests.e2e.polling import DEADLINE, get_entry, get_status, wait_for, wait_output, wait_status

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("SEALBRIDGE_FAULT_SEED", "20240611"))
GATEKEEPER_BLOBS = ("chain-tip.sealed", "committee.sealed")
USERS = ("alice", "bob", "carol")
WORKERS = 3
# The kill points, shuffled by the seed: every role at least once.
PLAN = (
    "worker",
    "worker",
    "worker-wiped",
    "worker-wiped",
    "worker-rollback",
    "worker-rollback",
    "storage",
    "storage",
    "gatekeeper",
    "gatekeeper-rollback",
)


@dataclass(frozen=True)
class KillPoint:
    kind: str  # "worker", "worker-wiped", "worker-rollback", "storage", "gatekeeper",
    # "gatekeeper-rollback"
    target: str  # node name
    before: int  # transfers sent just before the kill
    during: int  # transfers sent while the node is down
    mine: int  # empty blocks mined while the node is down

    @property
    def role(self) -> str:
        return self.kind.split("-")[0]


def make_schedule(rng: random.Random, gatekeepers: list[str]) -> list[KillPoint]:
    kinds = list(PLAN)
    rng.shuffle(kinds)
    # a gatekeeper restart is proven by a later worker restart (which needs key releases)
    for kind in ("gatekeeper", "gatekeeper-rollback"):
        last_worker = max(i for i, k in enumerate(kinds) if k.startswith("worker"))
        if kinds.index(kind) > last_worker:
            kinds.remove(kind)
            kinds.insert(0, kind)
    # targets: each role's nodes in a seeded order, in turn (spread over the nodes)
    workers = rng.sample([f"worker-{i}" for i in range(1, WORKERS + 1)], WORKERS)
    storage = rng.sample([f"storage-{i}" for i in range(1, 4)], 3)
    keepers = rng.sample(gatekeepers, len(gatekeepers))
    turns: Counter[str] = Counter()
    points = []
    for kind in kinds:
        role = kind.split("-")[0]
        nodes = {"worker": workers, "storage": storage, "gatekeeper": keepers}[role]
        target = nodes[turns[role] % len(nodes)]
        turns[role] += 1
        mine = 20 if kind == "storage" else rng.choice([0, 0, 4, 10])
        points.append(KillPoint(kind, target, rng.randint(1, 4), rng.randint(1, 3), mine))
    return points


@dataclass
class Stream:
    """The token, the command stream and the balances it implies."""

    home: Path
    client: Client
    token: Deployment
    rng: random.Random
    balances: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USERS, 0))
    sent: int = 1  # commands sent and mined, the deploy included (all valid)
    last_block: int = 0

    @property
    def token_id(self) -> str:
        return to_hex(self.token.contract_id)

    def get_node(self, name: str) -> NodeEntry:
        state = self.client.state
        nodes = [state.gatekeeper, *state.gatekeepers, *state.workers, *state.storage]
        return {n.name: n for n in nodes}[name]

    def mint(self, to: str, amount: int) -> None:
        receipt = self.client.call(
            self.token_id, "mint", {"to": to, "amount": amount}, as_user="alice"
        )
        self.balances[to] += amount
        self.sent += 1
        self.last_block = receipt.block_number

    def transfer(self) -> None:
        """One random valid transfer between two users (known amount)."""
        sender = self.rng.choice([u for u in USERS if self.balances[u] > 0])
        to = self.rng.choice([u for u in USERS if u != sender])
        amount = self.rng.randint(1, min(self.balances[sender], 500))
        receipt = self.client.call(
            self.token_id, "transfer", {"to": to, "amount": amount}, as_user=sender
        )
        self.balances[sender] -= amount
        self.balances[to] += amount
        self.sent += 1
        self.last_block = receipt.block_number

    def workers(self, *, but: str = "") -> list[str]:
        return [w.name for w in self.client.state.workers if w.name != but]

    def wait_applied(self, names: list[str]) -> None:
        def done() -> bool:
            for name in names:
                entry = get_entry(get_status(self.get_node(name).url), self.token.contract_id)
                if entry is None or entry["height"] < self.last_block:
                    return False
            return True

        wait_for(done, f"{', '.join(names)} to apply block {self.last_block}")

    def checkpoint_height(self) -> int:
        record = self.client.mgmt.execution_ledger.get_checkpoint(self.token.contract_id)
        return 0 if record is None else record.height

    def wait_checkpoint_after(self, height: int) -> int:
        def newer() -> int:
            found = self.checkpoint_height()
            if found <= height:
                self.client.chain.mine(2)
            return found if found > height else 0

        return wait_for(newer, f"a checkpoint after block {height}")

    def wait_checkpoint_stored_without(self, storage: str) -> int:
        """A checkpoint recorded with the confirmations of the other storage nodes only:
        its blob is on them, not on ``storage`` (down). Returns its height."""

        def stored_without() -> int:
            record = self.client.mgmt.execution_ledger.get_checkpoint(self.token.contract_id)
            if record is not None:
                held = {
                    n: (self.home / "devnet" / n / "blobs" / record.blob_hash.hex()).exists()
                    for n in ("storage-1", "storage-2", "storage-3")
                }
                if not held.pop(storage) and all(held.values()):
                    return record.height
            self.client.chain.mine(2)
            return 0

        return wait_for(stored_without, f"a checkpoint stored while {storage} is down")

    def balance(self, user: str, worker: str) -> int:
        index = self.workers().index(worker)
        answer = self.client.query(
            self.token_id, "balance", {"owner": user}, as_user=user, worker=index
        )
        return int(answer.answer.result)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stream]:
    home = tmp_path_factory.mktemp("faults")
    start_devnet(home, workers=WORKERS)
    client = Client.from_home(home)
    try:
        token = client.deploy("token", as_user="alice")
        yield Stream(home=home, client=client, token=token, rng=random.Random(SEED + 1))
    finally:
        client.close()
        stop_devnet(home)


def run_kill_point(s: Stream, point: KillPoint, log: list[str]) -> None:
    bundle = s.home / "devnet" / point.target / "state" / "bundle.sealed"
    older = bundle.read_bytes() if point.kind == "worker-rollback" else b""
    # a gatekeeper's host keeps its sealed blobs of now (header tip, committee share)
    sealed_files = [s.home / "devnet" / point.target / f for f in GATEKEEPER_BLOBS]
    kept = (
        {f: f.read_bytes() if f.exists() else None for f in sealed_files}
        if point.kind == "gatekeeper-rollback"
        else {}
    )
    for _ in range(point.before):
        s.transfer()
    s.wait_applied([point.target] if point.role == "worker" else [])
    victim = s.get_node(point.target)
    status_before = get_status(victim.url)
    kill_node(s.home, point.target)  # the victim is usually still busy with the burst
    started = time.monotonic()

    # the others keep the contract alive meanwhile
    for _ in range(point.during):
        s.transfer()
    live = s.workers(but=point.target)
    s.wait_applied(live)
    if point.mine:
        s.client.chain.mine(point.mine)
    if point.role == "storage":
        # a checkpoint made now gets 2 of 3 confirmations: enough for the ledger
        s.wait_checkpoint_stored_without(point.target)
    checkpoint_before = 0
    if point.kind == "worker-rollback":
        assert older and bundle.read_bytes() != older  # the burst moved the state on
        bundle.write_bytes(older)  # the host restarts its enclave from the older blob
    for path, data in kept.items():  # ... and restarts its enclave from them
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)
    if point.kind == "worker-wiped":
        shutil.rmtree(s.home / "devnet" / point.target / "state")
        assert (s.home / "devnet" / point.target / "identity.sealed").exists()
        checkpoint_before = s.checkpoint_height()

    start_node(s.home, point.target, wait=True, timeout=DEADLINE)
    s.client.refresh_state()
    status = get_status(victim.url)
    note = ""
    if point.role == "worker":
        assert status["phase"] == "following", status["error"]
        assert status["node_id"] == status_before["node_id"]
        if point.kind == "worker-wiped":
            # it recovered from the checkpoint the ledger held (or a newer one)
            assert status["recovered_from"] is not None, status
            assert status["recovered_from"] >= checkpoint_before > 0
            note = f", recovered from block {status['recovered_from']}"
        else:
            assert status["recovered_from"] is None
            note = f", resumed from its bundle (anchor {status['anchor']})"
            if point.kind == "worker-rollback":
                note += ", rolled back by its host"
    elif point.role == "gatekeeper":
        assert status["node_id"] == status_before["node_id"]  # same sealed identity
        status = wait_status(
            victim.url,
            lambda st: st["phase"] == "following",
            "the gatekeeper to follow the chain again",
        )
        if point.kind == "gatekeeper-rollback":
            note = ", restarted from its older sealed header tip and committee state"
        committee = status.get("committee")
        if committee is not None:  # it unsealed its share of the root key: same group key
            assert committee["holds_share"], committee
            assert committee["group_public_key"] == status_before["committee"]["group_public_key"]
    else:
        assert status["registered"] and status["phase"] == "ready"
        assert status["node_id"] == status_before["node_id"]  # same key, same registration
    s.wait_applied(s.workers())
    log.append(
        f"{point.kind} {point.target}: {point.before} transfers before, {point.during} while "
        f"down, {point.mine} blocks mined; back in {time.monotonic() - started:.1f}s{note}"
    )


def test_seeded_kill_points_lose_and_duplicate_no_command(
    stream: Stream, record_property: Callable[[str, object], None]
) -> None:
    s = stream
    state = s.client.state
    gatekeepers = [g.name for g in (state.gatekeepers or [state.gatekeeper])]
    schedule = make_schedule(random.Random(SEED), gatekeepers)
    print(f"\nfault seed {SEED}; schedule: {[(p.kind, p.target) for p in schedule]}")

    # warm-up: funds for everyone, and a first checkpoint to recover from
    for user in USERS:
        s.mint(user, 5_000)
    s.transfer()
    s.wait_applied(s.workers())
    s.wait_checkpoint_after(0)

    log: list[str] = []
    for point in schedule:
        run_kill_point(s, point, log)
        print(log[-1])
    exercised = Counter(p.role for p in schedule)
    wiped = sum(1 for p in schedule if p.kind == "worker-wiped")
    rolled = sum(1 for p in schedule if p.kind == "worker-rollback")
    gk_rolled = sum(1 for p in schedule if p.kind == "gatekeeper-rollback")
    summary = (
        f"kill points exercised: {len(schedule)}: worker {exercised['worker']} ({wiped} with "
        f"wiped state, {rolled} rollback attempts from an older sealed bundle), storage "
        f"{exercised['storage']}, gatekeeper {exercised['gatekeeper']} ({gk_rolled} rollback "
        f"attempts from older sealed blobs); {s.sent} commands (seed {SEED})"
    )
    print(summary)
    record_property("kill_points", summary)
    record_property("fault_log", "; ".join(log))

    # the end: every worker holds what the mined commands imply, exactly once each
    s.transfer()
    names = s.workers()
    s.wait_applied(names)
    statuses = {n: get_status(s.get_node(n).url) for n in names}
    entries = {n: get_entry(st, s.token.contract_id) for n, st in statuses.items()}
    for name, status in statuses.items():
        assert status["phase"] == "following", (summary, name, status["error"])
        assert status["diverged"] == {}, (summary, name, status["diverged"])
        assert not status["awaiting_checkpoint_record"], (summary, name)
        entry = entries[name]
        assert entry is not None, (summary, name)
        assert entry["commands_applied"] == s.sent, (summary, name, entry, s.sent)
        for user in USERS:
            assert s.balance(user, name) == s.balances[user], (summary, name, user)
    roots = {n: e["state_root"] for n, e in entries.items() if e is not None}
    assert len(set(roots.values())) == 1, (summary, roots)
    total = s.client.query(s.token_id, "total_supply", {}, as_user="bob").answer.result
    assert total == sum(s.balances.values()) == 3 * 5_000, summary

    output = wait_output(s.client, s.token.contract_id, s.sent)
    assert to_hex(output.state_root) == next(iter(roots.values())), summary
    print(
        f"{s.sent} commands, every worker at root {output.state_root.hex()[:16]}…, "
        f"ledger output up to block {output.end}"
    )
