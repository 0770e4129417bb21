"""Benchmark: availability -- recovery, checkpoint cost, competitive execution, key rotation.

Four parts, each with a baseline measured in the same run:

1. **Recovery time against the blocks to replay** (a real devnet: anvil in automine, two
   workers, three storage nodes, k = 2). The token is deployed; the workers' checkpoint
   interval is set above the largest B, so that exactly one checkpoint is recorded per
   row: empty blocks are mined until one is due and the ledger records it at height h.
   Then B blocks, each with one encrypted transfer (anvil's automine off, one
   ``anvil_mine`` per block; the workers' output submissions land in the same blocks).
   Worker 1 is then killed (SIGKILL), its ``state/`` directory deleted and its process
   started again; *recovery time* = from the process start until its verified height
   reaches the tip and its state root equals worker 2's. Polled every 10 ms on
   ``/v1/status``: ``up`` (first answer), ``following`` (recovery done, the follower
   started; the worker's own log line gives the fetch + key release + restore part) and
   ``done``; replay = done - following. Baseline: the same kill and start with the
   state bundle kept (a plain restart), measured after blocks that changed the contract.
   **Checkpoint cost** (measured): gas of ledger submissions with and without a
   checkpoint (from their receipts), the recorded size, the bytes the storage nodes hold
   per recorded checkpoint, and the time to make (in process) and store one.
   **Interval tradeoff** (derived from those measurements): expected and worst-case
   recovery against checkpoint overhead per 1,000 blocks.
2. **Checkpoint size and time against state size** (in process): a token with S
   accounts; ``make_checkpoint``, ``restore_checkpoint`` in a fresh runtime, ``store_blob``
   to the devnet's three storage processes (k = 2) and ``fetch_blob``. Baseline: msgpack
   (msgspec) encoding of the plain storage snapshot, no encryption.
3. **Competitive execution with 1, 2 and 4 workers** (anvil with a block every second):
   latency = from submitting a transfer until the ledger's accepted output covers its
   block. Then the worker with most accepted outputs is killed (SIGKILL) and the latency
   measured again: the others take over. With one worker the contract stalls: that is
   the expected baseline, reported as such after a timeout.
4. **Contract-key rotation** (anvil with a block every second, two workers, three
   gatekeepers 2-of-3): a token with some state (mint, three transfers) has its key
   rotated N times, one after the other. For each rotation, from sending
   ``ContractRegistry.request_key_rotation``, in seconds and in blocks after the
   request's block: the key published (``ContractKeyRotated``, ``rotated_at``), every
   worker reporting the new ``key_version`` on ``/v1/status``, and a checkpoint at a
   height >= ``rotated_at`` recorded on the ledger (the old version is retired from
   then on). Baseline, interleaved in the same run: a fresh registration's first key
   publication (``ContractRegistry.deploy`` until ``key_published``, same gatekeeper),
   one threshold key derivation and one gatekeeper transaction as well. Checked: the
   balances answered by every worker are unchanged after all rotations, every worker is
   at version N, and a transfer encrypted to the latest key applies.

Run one part only: ``python -m bench.bench_availability [--quick] --part rotation`` (or
``SEALBRIDGE_BENCH_AVAILABILITY_PARTS=rotation python -m bench.run_all --only
availability``); a partial run writes ``availability_<parts>.json`` and no figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.common import (
    RESULTS_DIR,
    console,
    fmt,
    fmt_ratio,
    get_devnet_sizes,
    get_machine_info,
    is_smoke,
    percentile,
    print_table,
    ratio,
    summarize,
    temp_home,
    write_results,
)
from bench.workloads import make_enclave_context
from sealbridge.client.api import Client
from sealbridge.config.node import (
    NodeConfig,
    load_devnet_state,
    load_node_config,
    save_json,
)
from sealbridge.contracts.catalog import get_code_hash, get_source
from sealbridge.contracts.storage import PersistedStorage
from sealbridge.core.encoding import decode, encode
from sealbridge.core.ids import from_hex, keccak, to_hex
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair, secp256k1_keypair
from sealbridge.devnet.launcher import get_state_file, is_alive, start_devnet, stop_devnet
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.management import CheckpointRecord, ContractRecord
from sealbridge.node.checkpoint_store import fetch_blob, store_blob
from sealbridge.runtime.chainview import CHECKPOINT_RECORDED_TOPIC, OUTPUT_ACCEPTED_TOPIC
from sealbridge.runtime.envelope import seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    ChainConfig,
    InboxCommand,
    InstallContract,
    MakeCheckpoint,
    RestoreCheckpoint,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import WorkerRuntime

NAME = "availability"
VICTIM, SURVIVOR = "worker-1", "worker-2"
MINT = 10**12
POLL = 0.01  # status polling during a restart (s)
RECOVERY_TIMEOUT = 300.0
QUIET_FOR = 0.6  # the chain and both workers unchanged this long: nothing in flight
AGREED_FOR = 5.0  # or both at the moving tip with equal roots this long
STORE_TIMEOUT = 30.0
INTERVALS = (10, 20, 50, 100, 500)
BLOCK_TIME = 1.0  # part 3
CHAIN_ID = 31337
MINTS_PER_BLOCK = 1000  # part 2: mint commands per in-process block
Progress = Callable[[str], None]

RESTORING_ENCLAVE = make_enclave_context()  # restores checkpoints; an executor


def _say(message: str) -> None:
    console.print(f"[dim]  {message}[/]")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- processes


def _kill_group(pid: int) -> None:
    """SIGKILL a node's process group (the node and its enclave child) and reap it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)  # started by this process (start_devnet / _spawn_node)
    except ChildProcessError:
        deadline = time.monotonic() + 10
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _spawn_node(home: Path, name: str) -> subprocess.Popen[bytes]:
    """Start a devnet worker again from its config and record its new pid in devnet.json
    (so that ``stop_devnet`` ends it)."""
    state = load_devnet_state(get_state_file(home))
    entry = next(w for w in state.workers if w.name == name)
    with Path(entry.log_file).open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sealbridge.node", entry.config_file],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    fresh = msgspec.structs.replace(entry, pid=process.pid)
    workers = [fresh if w.name == name else w for w in state.workers]
    save_json(get_state_file(home), msgspec.structs.replace(state, workers=workers))
    return process


def _worker_pid(home: Path, name: str) -> int:
    state = load_devnet_state(get_state_file(home))
    return next(w.pid for w in state.workers if w.name == name)


def _get_status(http: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        response = http.get(url + "/v1/status", timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    data: dict[str, Any] = response.json()
    return data


def _contract_of(status: dict[str, Any] | None, cid_hex: str) -> dict[str, Any] | None:
    if status is None:
        return None
    for contract in status.get("contracts", []):
        if contract["contract_id"] == cid_hex:
            return dict(contract)
    return None


def _set_checkpoint_interval(home: Path, names: list[str], interval: int) -> None:
    state = load_devnet_state(get_state_file(home))
    for entry in state.workers:
        if entry.name in names:
            path = Path(entry.config_file)
            config: NodeConfig = load_node_config(path)
            save_json(path, msgspec.structs.replace(config, checkpoint_interval=interval))


# --------------------------------------------------------------------------- part 1

RECOVERED_LINE = re.compile(
    r"recovered (\d+) contracts from the checkpoint at block (\d+) \((\d+) bytes\) in ([\d.]+)s"
)


@dataclass
class Sender:
    """A contract identity (Ed25519) with its own funded gas account."""

    seed: bytes
    identity: bytes
    eth_key: bytes
    nonce: int = 0


class RecoveryWorld:
    """A 2-worker devnet with a token, driven block by block."""

    def __init__(self, home: Path, interval: int) -> None:
        self.home = home
        self.interval = interval
        self.http = httpx.Client()

    def setup(self) -> None:
        self.client = Client.from_home(self.home)
        self.chain = self.client.chain
        self.ledger = self.client.mgmt.execution_ledger
        self.urls = {w.name: w.url for w in self.client.state.workers}
        # the new interval takes effect on a restart; both workers at once
        _set_checkpoint_interval(self.home, [VICTIM, SURVIVOR], self.interval)
        tip = self.chain.get_block_number()
        for name in (VICTIM, SURVIVOR):
            _kill_group(_worker_pid(self.home, name))
        processes = {name: _spawn_node(self.home, name) for name in (VICTIM, SURVIVOR)}
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            statuses = {name: self.status(name) for name in processes}
            if all(
                s is not None and s["phase"] == "following" and s["verified_height"] >= tip
                for s in statuses.values()
            ):
                break
            for name, process in processes.items():
                status = statuses[name]
                if process.poll() is not None or (status and status["phase"] == "failed"):
                    raise RuntimeError(f"{name} did not come back: {self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workers did not come back: {statuses}")
            time.sleep(0.1)

        deployment = self.client.deploy("token", as_user="alice")
        self.cid = deployment.contract_id
        self.cid_hex = to_hex(self.cid)
        self.public_key = deployment.contract_public_key
        seed, identity = ed25519_keypair(os.urandom(32))
        eth_key, _ = secp256k1_keypair()
        self.chain.fund(ChainAdapter.address_of(eth_key), 100 * 10**18)
        self.sender = Sender(seed, identity, eth_key)
        self.receiver = self.client.get_user("bob").identity_key
        minted = self.client.call(
            self.cid_hex, "mint", {"to": to_hex(identity), "amount": MINT}, as_user="alice"
        )
        self.client.wait_applied(self.cid, minted.block_number)
        self.wait_quiet()

    def log_tail(self, name: str) -> str:
        state = load_devnet_state(get_state_file(self.home))
        entry = next(w for w in state.workers if w.name == name)
        return Path(entry.log_file).read_text(errors="replace")[-3000:]

    def status(self, name: str) -> dict[str, Any] | None:
        return _get_status(self.http, self.urls[name])

    def wait_quiet(self, timeout: float = 180.0) -> int:
        """Until both workers have verified the tip with equal roots and nothing moved for
        ``QUIET_FOR`` seconds (no submission in flight); returns the tip."""
        deadline = time.monotonic() + timeout
        last: tuple[int, str] | None = None
        since = agreed_since = time.monotonic()
        while True:
            tip = self.chain.get_block_number()
            statuses = [self.status(name) for name in (VICTIM, SURVIVOR)]
            contracts = [_contract_of(s, self.cid_hex) for s in statuses]
            caught_up = all(
                s is not None and s["phase"] == "following" and s["verified_height"] >= tip
                for s in statuses
            )
            roots = {(c["state_root"], c["commands_applied"]) if c else ("", 0) for c in contracts}
            root = roots.pop()[0] if len(roots) == 1 else ""
            key = (tip, root)
            now = time.monotonic()
            if not (caught_up and root):
                agreed_since = now
            if caught_up and root and key == last:
                if now - since >= QUIET_FOR:
                    return tip
            else:
                last, since = key, now
            # nodes' own transactions (heartbeats) may keep blocks coming: equal roots at
            # the tip for a while will do then
            if caught_up and root and now - agreed_since >= AGREED_FOR:
                return tip
            if now > deadline:
                raise TimeoutError(f"workers did not settle at block {tip}: {statuses}")
            time.sleep(0.05)

    def record_checkpoint(self, timeout: float = 180.0) -> CheckpointRecord:
        """Mine empty blocks until a checkpoint is due; wait for the ledger to record it."""
        before = self.ledger.get_checkpoint(self.cid)
        last = before.height if before is not None else 0
        tip = self.chain.get_block_number()
        self.chain.mine(max(1, last + self.interval - tip + 1))
        deadline = time.monotonic() + timeout
        while True:
            record = self.ledger.get_checkpoint(self.cid)
            if record is not None and record.height > last:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no checkpoint recorded after block {last}")
            time.sleep(0.05)
        self.wait_quiet()
        return record

    def transfer_blocks(self, count: int) -> None:
        """``count`` blocks with one encrypted transfer each (automine off meanwhile)."""
        if count == 0:
            return
        inbox = self.client.mgmt.command_inbox
        applied_before = self.commands_applied()
        self.chain.set_automine(False)
        try:
            for _ in range(count):
                self.sender.nonce += 1
                ciphertext = seal_command(
                    contract_id=self.cid,
                    contract_public_key=self.public_key,
                    sender_private_key=self.sender.seed,
                    nonce=self.sender.nonce,
                    method="transfer",
                    args={"to": self.receiver, "amount": 1},
                )
                inbox.send_submit(self.cid, ciphertext, self.sender.eth_key)
                self.chain.mine(1)
        finally:
            self.chain.set_automine(True)
            self.chain.mine(1)  # anything the workers sent after the last block
        self.wait_quiet(timeout=60.0 + count)
        applied = self.commands_applied()
        if applied != applied_before + count:
            raise AssertionError(f"{applied - applied_before} of {count} transfers applied")

    def commands_applied(self) -> int:
        contract = _contract_of(self.status(SURVIVOR), self.cid_hex)
        return int(contract["commands_applied"]) if contract else 0

    def restart_victim(self, *, wipe: bool) -> dict[str, Any]:
        """Kill worker 1, optionally delete its state, start it again; time it."""
        tip = self.wait_quiet()
        reference = _contract_of(self.status(SURVIVOR), self.cid_hex)
        assert reference is not None
        state = load_devnet_state(get_state_file(self.home))
        entry = next(w for w in state.workers if w.name == VICTIM)
        log_file = Path(entry.log_file)
        _kill_group(entry.pid)
        if wipe:
            shutil.rmtree(Path(load_node_config(Path(entry.config_file)).home) / "state")
        log_offset = log_file.stat().st_size
        start = time.perf_counter()
        process = _spawn_node(self.home, VICTIM)

        def text_after() -> str:
            return log_file.read_text(errors="replace")[log_offset:][-3000:]

        marks: dict[str, float] = {}
        anchor = 0
        deadline = start + RECOVERY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{VICTIM} exited: {log_file.read_text()[-2000:]}")
            status = self.status(VICTIM)
            now = time.perf_counter() - start
            if status is not None:
                marks.setdefault("up", now)
                if status["phase"] == "failed":
                    raise RuntimeError(f"{VICTIM} failed: {status['error']}\n{text_after()}")
                if status["phase"] == "following" and "following" not in marks:
                    marks["following"] = now
                    anchor = int(status["anchor"])
                contract = _contract_of(status, self.cid_hex)
                if (
                    contract is not None
                    and status["verified_height"] >= tip
                    and contract["state_root"] == reference["state_root"]
                ):
                    marks["done"] = now
                    final = status
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{VICTIM} did not catch up to {tip}: {status}\n{text_after()}")
            time.sleep(POLL)
        text = log_file.read_text(errors="replace")[log_offset:]
        found = RECOVERED_LINE.search(text)
        if wipe and (found is None or final["recovered_from"] is None):
            raise AssertionError(f"{VICTIM} did not recover from a checkpoint:\n{text[-2000:]}")
        if not wipe and "resuming from the state bundle" not in text:
            raise AssertionError(f"{VICTIM} did not resume from its bundle:\n{text[-2000:]}")
        blocks = tip - anchor
        following = marks.get("following", marks["done"])
        replay = marks["done"] - following
        return {
            "kind": "recovery" if wipe else "plain restart",
            "tip": tip,
            "anchor": anchor,
            "blocks_replayed": blocks,
            "up_s": marks.get("up", float("nan")),
            "following_s": following,
            "done_s": marks["done"],
            "replay_s": replay,
            "replay_ms_per_block": replay * 1e3 / blocks if blocks else float("nan"),
            "restore_log_s": float(found.group(4)) if found else float("nan"),
            "checkpoint_bytes": int(found.group(3)) if found else 0,
            "recovered_from": final["recovered_from"],
        }

    def storage_totals(self) -> tuple[int, int]:
        blobs = held = 0
        for entry in self.client.state.storage:
            status = _get_status(self.http, entry.url) or {}
            blobs += int(status.get("blobs", 0))
            held += int(status.get("bytes", 0))
        return blobs, held

    def ledger_gas(self) -> dict[str, Any]:
        """Gas of every accepted ledger submission, with and without a checkpoint."""
        ledger = self.client.addresses.execution_ledger
        logs = self.chain.get_logs(
            self.client.addresses.deployed_at_block, self.chain.get_block_number(), [ledger]
        )
        kinds: dict[bytes, set[bytes]] = {}
        for entry in logs:
            kinds.setdefault(entry.tx_hash, set()).add(entry.topics[0])
        with_checkpoint: list[int] = []
        outputs_only: list[int] = []
        for tx_hash, topics in kinds.items():
            if OUTPUT_ACCEPTED_TOPIC not in topics:
                continue
            gas = self.chain.wait_for_receipt(tx_hash, check=False).gas_used
            (with_checkpoint if CHECKPOINT_RECORDED_TOPIC in topics else outputs_only).append(gas)
        return {"with_checkpoint": with_checkpoint, "outputs_only": outputs_only}

    def close(self) -> None:
        self.http.close()


def run_recovery(home: Path, rows: list[int], reps: int, interval: int) -> dict[str, Any]:
    world = RecoveryWorld(home, interval)
    world.setup()
    _say(f"token deployed; checkpoint interval {interval} blocks on both workers")
    baselines = [world.restart_victim(wipe=False)]
    _say(f"plain restart: {baselines[0]['done_s']:.2f} s")
    results: list[dict[str, Any]] = []
    checkpoints: list[dict[str, Any]] = []
    for count in rows:
        record = world.record_checkpoint()
        checkpoints.append({"height": record.height, "size": record.size})
        world.transfer_blocks(count)
        if count > 0:  # a plain restart after blocks that changed the contract
            baselines.append(world.restart_victim(wipe=False))
            baseline = baselines[-1]
        else:
            baseline = baselines[0]
        samples = [world.restart_victim(wipe=True) for _ in range(reps)]
        for sample in samples:
            if sample["recovered_from"] != record.height:
                raise AssertionError(
                    f"recovered from {sample['recovered_from']}, not {record.height}"
                )
        results.append(
            {
                "commands": count,
                "checkpoint_height": record.height,
                "checkpoint_size": record.size,
                "samples": samples,
                "baseline": baseline,
                **{
                    k: _median([s[k] for s in samples])
                    for k in (
                        "blocks_replayed",
                        "up_s",
                        "following_s",
                        "restore_log_s",
                        "replay_s",
                        "replay_ms_per_block",
                        "done_s",
                    )
                },
            }
        )
        last = results[-1]
        _say(
            f"B={count}: {last['blocks_replayed']:.0f} blocks replayed, recovery "
            f"{last['done_s']:.2f} s (replay {last['replay_s']:.2f} s)"
        )
    gas = world.ledger_gas()
    blobs, held = world.storage_totals()
    recorded = len(gas["with_checkpoint"])
    world.close()
    return {
        "rows": results,
        "baseline_samples": baselines,
        "baseline": {
            k: _median([b[k] for b in baselines])
            for k in ("blocks_replayed", "up_s", "following_s", "replay_s", "done_s")
        },
        "checkpoints": checkpoints,
        "gas": gas,
        "storage": {
            "blobs": blobs,
            "bytes": held,
            "recorded_checkpoints": recorded,
            "storage_nodes": len(world.client.state.storage),
        },
        "storage_urls": [s.url for s in world.client.state.storage],
        "ledger": world.client.addresses.execution_ledger,
        "chain_id": world.chain.chain_id,
    }


# --------------------------------------------------------------------------- part 2


class TokenState:
    """An in-process runtime holding one token with ``accounts`` minted balances, its
    verified view anchored at the last block (so that it can make checkpoints)."""

    def __init__(self, accounts: int) -> None:
        self.contract_id = os.urandom(32)
        self.contract_key = os.urandom(32)
        self.keys = compute_contract_keys(self.contract_id, self.contract_key)
        self.owner_seed, self.owner = ed25519_keypair(os.urandom(32))
        self.runtime = self.new_runtime()
        self.runtime.install_contract(self.install_request(self.runtime))
        nonce = 0

        def seal(method: str, args: dict[str, Any]) -> bytes:
            nonlocal nonce
            nonce += 1
            return seal_command(
                contract_id=self.contract_id,
                contract_public_key=self.keys.command_public_key,
                sender_private_key=self.owner_seed,
                nonce=nonce,
                method=method,
                args=args,
            )

        ciphertexts = [seal(DEPLOY_METHOD, {"code": get_source("token"), "init": {}})]
        ciphertexts += [
            seal("mint", {"to": os.urandom(32), "amount": 1 + i}) for i in range(accounts)
        ]
        number = 0
        for low in range(0, len(ciphertexts), MINTS_PER_BLOCK):
            number += 1
            chunk = ciphertexts[low : low + MINTS_PER_BLOCK]
            out = self.runtime.process_block(
                BlockInput(
                    number=number,
                    block_hash=keccak(number.to_bytes(8, "big")),
                    commands=[
                        InboxCommand(
                            contract_id=self.contract_id,
                            seq=low + i,
                            tx_index=i,
                            log_index=0,
                            ciphertext=c,
                        )
                        for i, c in enumerate(chunk)
                    ],
                )
            )
            refused = [r.status for r in out.receipts if r.status != "applied"]
            if refused:
                raise AssertionError(f"{len(refused)} setup commands refused: {refused[0]}")
        self.chain = ChainConfig(
            chain_id=CHAIN_ID,
            command_inbox=keccak(b"bench/inbox")[:20],
            contract_registry=keccak(b"bench/registry")[:20],
            execution_ledger=keccak(b"bench/ledger")[:20],
            anchor_number=number,
            anchor_hash=keccak(number.to_bytes(8, "big")),
        )
        self.runtime.configure_chain(self.chain)

    @staticmethod
    def new_runtime() -> WorkerRuntime:
        # the restoring enclave must be one of the contract's executors (the runtime
        # checks the executor set sealed with the state): the same enclave identity
        return WorkerRuntime(RESTORING_ENCLAVE)

    def install_request(self, runtime: WorkerRuntime) -> InstallContract:
        identity = runtime.enclave.identity
        return InstallContract(
            contract_id=self.contract_id,
            code_hash=get_code_hash("token"),
            contract_public_key=self.keys.command_public_key,
            wrapped_key=ecies.encrypt_to(
                identity.encryption_key,
                self.contract_key,
                key_release_aad(self.contract_id, identity.identity_key),
            ),
            gatekeeper_key=bytes(32),
            deployer_commitment=compute_deployer_commitment(self.contract_id, self.owner),
            workers=[RESTORING_ENCLAVE.identity.identity_key],
        )

    def make(self) -> bytes:
        return self.runtime.make_checkpoint(MakeCheckpoint(contract_ids=[self.contract_id]))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run_state_sizes(
    sizes: list[int], reps: int, urls: list[str], ledger: str, chain_id: int
) -> list[dict[str, Any]]:
    rows = []
    for accounts in sizes:
        world, build_s = _timed(lambda a=accounts: TokenState(a))
        contract = world.runtime.get_contract(world.contract_id)
        root = contract.state_root
        # baseline: the plain storage, snapshot + msgpack, no encryption
        plain = encode(contract.storage.snapshot())
        base_reps = max(reps, 5)
        base_encode = [
            _timed(lambda c=contract: encode(c.storage.snapshot()))[1] for _ in range(base_reps)
        ]
        base_decode = [
            _timed(lambda p=plain: decode(p, PersistedStorage))[1] for _ in range(base_reps)
        ]
        make_s, restore_s, store_s, fetch_s, sizes_seen = [], [], [], [], []
        world.make()  # warm-up
        for _ in range(reps):
            blob, elapsed = _timed(world.make)
            make_s.append(elapsed)
            sizes_seen.append(len(blob))
            fresh = TokenState.new_runtime()
            request = RestoreCheckpoint(
                blob=blob, installs=[world.install_request(fresh)], chain=world.chain
            )
            (status,), elapsed = _timed(lambda f=fresh, r=request: f.restore_checkpoint(r))
            restore_s.append(elapsed)
            if status.state_root != root:
                raise AssertionError("the restored runtime has another state root")
            receipts, elapsed = _timed(
                lambda b=blob: store_blob(
                    urls,
                    b,
                    threshold=2,
                    ledger_address=ledger,
                    chain_id=chain_id,
                    timeout=STORE_TIMEOUT,
                )
            )
            store_s.append(elapsed)
            if len(receipts) < 2:
                raise AssertionError(f"only {len(receipts)} storage receipts")
            fetched, elapsed = _timed(
                lambda b=blob: fetch_blob(urls, keccak(b), timeout=STORE_TIMEOUT)
            )
            fetch_s.append(elapsed)
            if fetched != blob:
                raise AssertionError("fetched another blob")
        row = {
            "accounts": accounts,
            "build_s": build_s,
            "blob_bytes": int(_median([float(s) for s in sizes_seen])),
            "plain_bytes": len(plain),
            "make_ms": _median(make_s) * 1e3,
            "restore_ms": _median(restore_s) * 1e3,
            "store_ms": _median(store_s) * 1e3,
            "fetch_ms": _median(fetch_s) * 1e3,
            "plain_encode_ms": _median(base_encode) * 1e3,
            "plain_decode_ms": _median(base_decode) * 1e3,
            "reps": reps,
        }
        row["size_vs_plain"] = ratio(row["blob_bytes"], row["plain_bytes"])
        row["make_vs_plain"] = ratio(row["make_ms"], row["plain_encode_ms"])
        row["restore_vs_plain"] = ratio(row["restore_ms"], row["plain_decode_ms"])
        rows.append(row)
        _say(
            f"S={accounts}: blob {row['blob_bytes']:,} B, make {row['make_ms']:.1f} ms, "
            f"restore {row['restore_ms']:.1f} ms, store {row['store_ms']:.1f} ms "
            f"(state built in {build_s:.1f} s)"
        )
    return rows


# --------------------------------------------------------------------------- tradeoff


def derive_tradeoff(recovery: dict[str, Any], sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Expected recovery time against checkpoint overhead, from the measured figures."""
    samples = [s for row in recovery["rows"] for s in row["samples"] if s["blocks_replayed"] > 0]
    xs = [float(s["blocks_replayed"]) for s in samples]
    ys = [s["replay_s"] for s in samples]
    # replay time per block: least squares through the origin over every recovery sample
    slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs) if xs else 0.0
    fixed = _median([s["following_s"] for row in recovery["rows"] for s in row["samples"]])
    gas = recovery["gas"]
    gas_checkpoint = _median([float(g) for g in gas["with_checkpoint"]])
    gas_outputs = _median([float(g) for g in gas["outputs_only"]])
    marginal_gas = gas_checkpoint - gas_outputs
    storage = recovery["storage"]
    recorded = max(storage["recorded_checkpoints"], 1)
    bytes_per_checkpoint = storage["bytes"] / recorded
    smallest = min(sizes, key=lambda r: r["accounts"])
    make_store_s = (smallest["make_ms"] + smallest["store_ms"]) / 1e3
    rows = []
    for interval in INTERVALS:
        per_1000 = 1000 / interval
        rows.append(
            {
                "interval": interval,
                "checkpoints_per_1000_blocks": per_1000,
                "expected_replay_s": slope * interval / 2,
                "expected_recovery_s": fixed + slope * interval / 2,
                "worst_recovery_s": fixed + slope * interval,
                "gas_per_1000_blocks": per_1000 * marginal_gas,
                "submission_gas_per_1000_blocks": per_1000 * gas_checkpoint,
                "bytes_per_1000_blocks": per_1000 * bytes_per_checkpoint,
                "make_store_s_per_1000_blocks": per_1000 * make_store_s,
            }
        )
    return {
        "measured": {
            "replay_s_per_block": slope,
            "fixed_recovery_s": fixed,
            "gas_submission_with_checkpoint": gas_checkpoint,
            "gas_submission_outputs_only": gas_outputs,
            "gas_marginal_checkpoint": marginal_gas,
            "checkpoint_bytes_recorded": _median(
                [float(c["size"]) for c in recovery["checkpoints"]]
            ),
            "bytes_held_per_recorded_checkpoint": bytes_per_checkpoint,
            "make_plus_store_s": make_store_s,
            "make_store_state_accounts": smallest["accounts"],
        },
        "rows": rows,
    }


# --------------------------------------------------------------------------- part 3


def _output_sample(
    client: Client, cid: bytes, names: dict[str, str], timeout: float
) -> dict[str, Any]:
    """One transfer: submit until an accepted output covers its block (or the timeout)."""
    start = time.perf_counter()
    receipt = client.call(to_hex(cid), "transfer", {"to": "bob", "amount": 1}, as_user="alice")
    mined = time.perf_counter() - start
    ledger = client.mgmt.execution_ledger
    while True:
        output = ledger.get_output(cid)
        if output is not None and output.end >= receipt.block_number:
            return {
                "latency_s": time.perf_counter() - start,
                "mined_s": mined,
                "block": receipt.block_number,
                "accepted_at": output.accepted_at,
                "by": names.get(to_hex(output.node_id), "?"),
                "stalled": False,
            }
        if time.perf_counter() - start > timeout:
            return {
                "latency_s": float("nan"),
                "mined_s": mined,
                "block": receipt.block_number,
                "accepted_at": 0,
                "by": "",
                "stalled": True,
            }
        time.sleep(0.02)


def _counts(http: httpx.Client, client: Client, alive: set[str]) -> dict[str, dict[str, int]]:
    out = {}
    for w in client.state.workers:
        status = _get_status(http, w.url) if w.name in alive else None
        if status is not None:
            out[w.name] = {
                "accepted": int(status["outputs_accepted"]),
                "refused": int(status["outputs_refused"]),
                "skipped": int(status.get("outputs_skipped", 0)),
                "checkpoints": int(status["checkpoints_stored"]),
            }
    return out


def _delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        name: {k: v - before.get(name, {}).get(k, 0) for k, v in counts.items()}
        for name, counts in after.items()
    }


def _ledger_txs(client: Client, first: int, last: int, senders: dict[str, str]) -> dict[str, Any]:
    """Ledger submissions per worker in blocks [first, last]: accepted / refused, gas."""
    ledger = client.addresses.execution_ledger.lower()
    eth = client.chain.web3.eth
    out: dict[str, dict[str, int]] = {}
    for number in range(first, last + 1):
        block = eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if (tx.get("to") or "").lower() != ledger:
                continue
            receipt = eth.get_transaction_receipt(tx["hash"])
            name = senders.get(str(tx["from"]).lower(), str(tx["from"]))
            row = out.setdefault(
                name, {"accepted": 0, "refused": 0, "gas_accepted": 0, "gas_refused": 0}
            )
            kind = "accepted" if receipt["status"] == 1 else "refused"
            row[kind] += 1
            row[f"gas_{kind}"] += int(receipt["gasUsed"])
    return out


def run_competitive(
    workers: int, n_before: int, n_after: int, timeout: float, stall_timeout: float
) -> dict[str, Any]:
    with temp_home(f"avail-comp{workers}") as home:
        start_devnet(home, **get_devnet_sizes(workers=workers), block_time=BLOCK_TIME)
        http = httpx.Client()
        try:
            client = Client.from_home(home)
            deployment = client.deploy("token", as_user="alice")
            cid = deployment.contract_id
            names = {w.node_id: w.name for w in client.state.workers}
            senders = {}
            for w in client.state.workers:
                config = load_node_config(Path(w.config_file))
                address = ChainAdapter.address_of(from_hex(config.eth_private_key, size=32))
                senders[address.lower()] = w.name
            client.call(to_hex(cid), "mint", {"to": "alice", "amount": MINT}, as_user="alice")
            _output_sample(client, cid, names, timeout)  # warm-up: the first output
            alive = {w.name for w in client.state.workers}
            first_block = client.chain.get_block_number()
            counts_start = _counts(http, client, alive)
            before = [_output_sample(client, cid, names, timeout) for _ in range(n_before)]
            counts_mid = _counts(http, client, alive)
            kill_block = client.chain.get_block_number()
            won = _delta(counts_mid, counts_start)
            fastest = max(sorted(won), key=lambda n: won[n]["accepted"])
            _kill_group(_worker_pid(home, fastest))
            alive.discard(fastest)
            if alive:
                after = [_output_sample(client, cid, names, timeout) for _ in range(n_after)]
            else:
                after = [_output_sample(client, cid, names, stall_timeout)]
            counts_end = _counts(http, client, alive)
            last_block = client.chain.get_block_number()
            result = {
                "workers": workers,
                "killed": fastest,
                "before": {
                    "samples": before,
                    "summary": summarize([s["latency_s"] for s in before if not s["stalled"]]),
                    "stalled": sum(s["stalled"] for s in before),
                    "status_counts": won,
                    "ledger_txs": _ledger_txs(client, first_block + 1, kill_block, senders),
                },
                "after": {
                    "samples": after,
                    "summary": summarize([s["latency_s"] for s in after if not s["stalled"]]),
                    "stalled": sum(s["stalled"] for s in after),
                    "status_counts": _delta(counts_end, counts_mid),
                    "ledger_txs": _ledger_txs(client, kill_block + 1, last_block, senders),
                },
            }
        finally:
            http.close()
            stop_devnet(home)
    b, a = result["before"], result["after"]
    _say(
        f"{workers} worker(s): p50 {b['summary']['p50_ms']:.0f} ms before; killed {fastest}; "
        + (
            f"p50 {a['summary']['p50_ms']:.0f} ms after"
            if not a["stalled"]
            else f"stalls (no output after {stall_timeout:.0f} s)"
        )
    )
    return result


# --------------------------------------------------------------------------- part 4

ROTATION_TIMEOUT = 60.0  # per stage of one rotation or first publication (s)
ROTATION_POLL = 0.01  # chain and /v1/status polling during a rotation (s)
ROTATION_STAGES = ("published", "switched", "checkpoint")


def _registry_event_block(client: Client, event: str, cid: bytes, first: int) -> tuple[int, int]:
    """Block and gas of the registry transaction that logged ``event`` for ``cid``
    (from block ``first`` on)."""
    registry = client.mgmt.contract_registry
    topic = registry.codec.event_by_name(event).topic
    logs = client.chain.get_logs(first, client.chain.get_block_number(), [registry.address])
    for entry in logs:
        if entry.topics[:2] == [topic, cid]:
            gas = client.chain.wait_for_receipt(entry.tx_hash, check=False).gas_used
            return entry.block_number, gas
    raise AssertionError(f"no {event} for {to_hex(cid)} after block {first}")


def _first_publish_sample(client: Client, gatekeeper: bytes) -> dict[str, Any]:
    """A fresh registration of the token's code (the registry transaction only, as
    ``Client.deploy`` sends it): from sending it until its key is published."""
    registry = client.mgmt.contract_registry
    user = client.get_user("alice")
    cid = os.urandom(32)
    workers = [from_hex(w.node_id, size=32) for w in client.state.workers]
    commitment = compute_deployer_commitment(cid, user.identity_key, os.urandom(16))
    start = time.perf_counter()
    receipt = registry.deploy(
        cid, get_code_hash("token"), gatekeeper, workers, commitment, user.eth_private_key
    )
    mined = time.perf_counter() - start
    while True:
        record = registry.get_contract(cid)
        if record is not None and record.key_published:
            published = time.perf_counter() - start
            break
        if time.perf_counter() - start > ROTATION_TIMEOUT:
            raise TimeoutError(f"the key of {to_hex(cid)} was not published")
        time.sleep(ROTATION_POLL)
    block, gas = _registry_event_block(client, "ContractKeyPublished", cid, receipt.block_number)
    return {
        "contract_id": to_hex(cid),
        "request_block": receipt.block_number,
        "published_block": block,
        "mined_s": mined,
        "published_s": published,
        "published_blocks": block - receipt.block_number,
        "publish_gas": gas,
    }


def _rotation_sample(
    client: Client, http: httpx.Client, cid: bytes, version: int, applied: int
) -> dict[str, Any]:
    """One rotation to ``version``: from sending ``request_key_rotation`` until the key is
    published, every worker reports ``version`` and a checkpoint at or after the
    rotation block is recorded. Every stage is polled in the same loop."""
    registry = client.mgmt.contract_registry
    ledger = client.mgmt.execution_ledger
    cid_hex = to_hex(cid)
    urls = {w.name: w.url for w in client.state.workers}
    old = client.get_contract(cid)
    if old.key_version != version - 1 or old.rotation_pending:
        raise AssertionError(f"before rotation {version}: {old}")
    start = time.perf_counter()
    receipt = registry.request_key_rotation(cid, client.get_user("alice").eth_private_key)
    mined = time.perf_counter() - start
    request = receipt.block_number
    marks: dict[str, float] = {}
    blocks: dict[str, int] = {}
    record: ContractRecord | None = None
    checkpoint: CheckpointRecord | None = None
    contracts: dict[str, dict[str, Any] | None] = {}
    while True:
        now = time.perf_counter() - start
        if record is None:
            current = registry.get_contract(cid)
            if current is not None and current.key_version >= version:
                record = current
                marks["published"] = now
                blocks["published"] = current.rotated_at - request
        if "switched" not in marks:
            tip = client.chain.get_block_number()
            contracts = {n: _contract_of(_get_status(http, u), cid_hex) for n, u in urls.items()}
            if all(
                c is not None and c.get("key_version", 0) >= version for c in contracts.values()
            ):
                marks["switched"] = time.perf_counter() - start
                blocks["switched"] = tip - request  # the tip when all were seen switched
        if record is not None and checkpoint is None:
            found = ledger.get_checkpoint(cid)
            if found is not None and found.height >= record.rotated_at:
                checkpoint = found
                marks["checkpoint"] = time.perf_counter() - start
                blocks["checkpoint"] = found.recorded_at - request
        if len(marks) == len(ROTATION_STAGES):
            break
        if now > ROTATION_TIMEOUT:
            raise TimeoutError(
                f"rotation to version {version}: only {sorted(marks)} after {now:.0f} s"
            )
        time.sleep(ROTATION_POLL)
    assert record is not None and checkpoint is not None
    # correctness of this rotation
    if record.key_version != version or record.rotation_pending:
        raise AssertionError(f"registry after rotation {version}: {record}")
    if record.contract_public_key == old.contract_public_key:
        raise AssertionError(f"version {version} has the command key of version {version - 1}")
    for name, contract in contracts.items():
        assert contract is not None
        if int(contract["key_version"]) != version:
            raise AssertionError(f"{name} reports key version {contract['key_version']}")
        if int(contract["commands_applied"]) != applied:
            raise AssertionError(f"{name}: {contract['commands_applied']} commands, not {applied}")
    block, gas = _registry_event_block(client, "ContractKeyRotated", cid, request)
    if block != record.rotated_at:
        raise AssertionError(f"ContractKeyRotated in block {block}, rotated_at {record.rotated_at}")
    return {
        "version": version,
        "request_block": request,
        "rotated_at": record.rotated_at,
        "checkpoint_height": checkpoint.height,
        "checkpoint_recorded_at": checkpoint.recorded_at,
        "mined_s": mined,
        **{f"{stage}_s": marks[stage] for stage in ROTATION_STAGES},
        **{f"{stage}_blocks": blocks[stage] for stage in ROTATION_STAGES},
        "rotate_gas": gas,
    }


def _commands_applied(client: Client, http: httpx.Client, cid_hex: str) -> int:
    """The contract's applied command count, the same on every worker (else an error)."""
    counts = {
        w.name: int((_contract_of(_get_status(http, w.url), cid_hex) or {})["commands_applied"])
        for w in client.state.workers
    }
    if len(set(counts.values())) != 1:
        raise AssertionError(f"the workers disagree on the applied commands: {counts}")
    return counts[client.state.workers[0].name]


def _balances(client: Client, cid_hex: str, owners: list[str]) -> dict[str, list[Any]]:
    """Each owner's balance as answered (signed, verified) by every worker."""
    return {
        owner: [
            client.query(
                cid_hex, "balance", {"owner": owner}, as_user=owner, worker=i
            ).answer.result
            for i in range(len(client.state.workers))
        ]
        for owner in owners
    }


def run_rotation(home: Path, reps: int) -> dict[str, Any]:
    """``reps`` rotations of a token's key one after the other, each after a fresh
    registration's first key publication (the baseline), on one devnet."""
    start_devnet(home, **get_devnet_sizes(workers=2), block_time=BLOCK_TIME, progress=_say)
    http = httpx.Client()
    client = Client.from_home(home)
    try:
        deployment = client.deploy("token", as_user="alice")
        cid = deployment.contract_id
        cid_hex = to_hex(cid)
        client.call_and_wait(cid_hex, "mint", {"to": "alice", "amount": MINT}, as_user="alice")
        for to, amount, sender in (
            ("bob", 1200, "alice"),
            ("carol", 300, "bob"),
            ("carol", 45, "alice"),
        ):
            client.call_and_wait(cid_hex, "transfer", {"to": to, "amount": amount}, as_user=sender)
        applied = _commands_applied(client, http, cid_hex)
        owners = ["alice", "bob", "carol"]
        before = _balances(client, cid_hex, owners)
        expected = {"alice": MINT - 1245, "bob": 900, "carol": 345}
        if before != {o: [v] * len(client.state.workers) for o, v in expected.items()}:
            raise AssertionError(f"balances before the rotations: {before}")
        gatekeeper = client.get_contract(cid).gatekeeper_id
        _say(f"token deployed with {applied} commands applied; rotating its key {reps} times")
        first: list[dict[str, Any]] = []
        rotations: list[dict[str, Any]] = []
        for version in range(1, reps + 1):
            first.append(_first_publish_sample(client, gatekeeper))
            rotations.append(_rotation_sample(client, http, cid, version, applied))
            r, f = rotations[-1], first[-1]
            _say(
                f"v{version}: published {r['published_s']:.2f} s ({r['published_blocks']} blocks), "
                f"workers {r['switched_s']:.2f} s, checkpoint {r['checkpoint_s']:.2f} s "
                f"({r['checkpoint_blocks']} blocks); a first publication: "
                f"{f['published_s']:.2f} s ({f['published_blocks']} blocks)"
            )
        # the state carried over every rotation, and every worker holds the last version
        after = _balances(client, cid_hex, owners)
        if after != before:
            raise AssertionError(f"balances changed across {reps} rotations: {before} → {after}")
        versions = {
            w.name: (_contract_of(_get_status(http, w.url), cid_hex) or {}).get("key_version")
            for w in client.state.workers
        }
        if set(versions.values()) != {reps} or client.get_contract(cid).key_version != reps:
            raise AssertionError(f"key versions after {reps} rotations: {versions}")
        # and a command encrypted to the latest key applies
        client.call_and_wait(cid_hex, "transfer", {"to": "carol", "amount": 5}, as_user="bob")
        moved = _balances(client, cid_hex, ["bob", "carol"])
        if moved != {"bob": [895] * len(versions), "carol": [350] * len(versions)}:
            raise AssertionError(f"a transfer under key version {reps}: {moved}")
    finally:
        http.close()
        client.close()
        stop_devnet(home)
    medians = {
        f"rotation_{stage}_{unit}": _median([float(r[f"{stage}_{unit}"]) for r in rotations])
        for stage in ROTATION_STAGES
        for unit in ("s", "blocks")
    }
    medians["rotation_mined_s"] = _median([r["mined_s"] for r in rotations])
    medians["first_published_s"] = _median([f["published_s"] for f in first])
    medians["first_published_blocks"] = _median([float(f["published_blocks"]) for f in first])
    medians["first_mined_s"] = _median([f["mined_s"] for f in first])
    medians["rotate_gas"] = _median([float(r["rotate_gas"]) for r in rotations])
    medians["publish_gas"] = _median([float(f["publish_gas"]) for f in first])
    return {
        "reps": reps,
        "rotations": rotations,
        "first_publications": first,
        "medians": medians,
        "publish_ratio_s": ratio(medians["rotation_published_s"], medians["first_published_s"]),
        "publish_ratio_blocks": ratio(
            medians["rotation_published_blocks"], medians["first_published_blocks"]
        ),
        "checks": {
            "balances_before": before,
            "balances_after": after,
            "worker_key_versions": versions,
            "transfer_after_rotations": moved,
        },
    }


# --------------------------------------------------------------------------- report


def _print_recovery(rec: dict[str, Any]) -> None:
    base = rec["baseline"]
    rows = [
        [
            "plain restart, bundle kept (baseline)",
            "-",
            fmt(base["blocks_replayed"], 0),
            fmt(base["up_s"]),
            fmt(base["following_s"]),
            "-",
            fmt(base["replay_s"]),
            "-",
            fmt(base["done_s"]),
            fmt_ratio(1.0),
        ]
    ]
    for row in rec["rows"]:
        rows.append(
            [
                f"recovery from checkpoint at {row['checkpoint_height']}",
                str(row["commands"]),
                fmt(row["blocks_replayed"], 0),
                fmt(row["up_s"]),
                fmt(row["following_s"]),
                fmt(row["restore_log_s"]),
                fmt(row["replay_s"]),
                fmt(row["replay_ms_per_block"]),
                fmt(row["done_s"]),
                f"{fmt_ratio(ratio(row['done_s'], row['baseline']['done_s']))} "
                f"(of {fmt(row['baseline']['done_s'])})",
            ]
        )
    print_table(
        "1. recovery of a worker whose state was deleted (medians; s from process start; "
        "blocks include the nodes' own heartbeat and output transactions, one block each)",
        [
            "restart",
            "transfers after ckpt",
            "blocks replayed",
            "HTTP up",
            "following",
            "fetch+keys+restore (log)",
            "replay",
            "ms/block",
            "total",
            "vs plain restart of the same row",
        ],
        rows,
    )


def _print_cost(trade: dict[str, Any]) -> None:
    m = trade["measured"]
    print_table(
        "1. checkpoint cost (measured)",
        ["what", "value"],
        [
            [
                "gas: ledger submission, outputs only (median)",
                fmt(m["gas_submission_outputs_only"], 0),
            ],
            [
                "gas: ledger submission with a checkpoint (median)",
                fmt(m["gas_submission_with_checkpoint"], 0),
            ],
            ["gas: marginal cost of a checkpoint", fmt(m["gas_marginal_checkpoint"], 0)],
            ["checkpoint size recorded on chain (bytes)", fmt(m["checkpoint_bytes_recorded"], 0)],
            [
                "bytes held by all storage nodes per recorded checkpoint",
                fmt(m["bytes_held_per_recorded_checkpoint"], 0),
            ],
            [
                f"make (in process) + store (3 nodes, k=2), "
                f"S={m['make_store_state_accounts']} (ms)",
                fmt(m["make_plus_store_s"] * 1e3),
            ],
            [
                "replay cost per block, 1 transfer a block (ms; fit)",
                fmt(m["replay_s_per_block"] * 1e3),
            ],
            ["fixed recovery cost: start → following (s; median)", fmt(m["fixed_recovery_s"])],
        ],
    )
    rows = [
        [
            str(r["interval"]),
            fmt(r["checkpoints_per_1000_blocks"], 1),
            fmt(r["expected_replay_s"]),
            fmt(r["expected_recovery_s"]),
            fmt(r["worst_recovery_s"]),
            fmt(r["gas_per_1000_blocks"], 0),
            fmt(r["bytes_per_1000_blocks"] / 1024, 1),
            fmt(r["make_store_s_per_1000_blocks"], 3),
        ]
        for r in trade["rows"]
    ]
    print_table(
        "1. checkpoint interval tradeoff (DERIVED from the measured figures above: "
        "recovery = fixed + replay/block × interval/2 (expected) or × interval (worst))",
        [
            "interval (blocks)",
            "ckpts / 1000 blocks",
            "expected replay (s)",
            "expected recovery (s)",
            "worst recovery (s)",
            "extra gas / 1000 blocks",
            "KiB stored / 1000 blocks",
            "make+store s / 1000 blocks",
        ],
        rows,
    )


def _print_sizes(rows: list[dict[str, Any]]) -> None:
    print_table(
        "2. checkpoint size and time against state size (token with S accounts; medians)",
        [
            "S accounts",
            "blob (B)",
            "plain msgpack (B)",
            "size vs plain",
            "make (ms)",
            "plain encode (ms)",
            "make vs plain",
            "restore (ms)",
            "plain decode (ms)",
            "store 3 nodes k=2 (ms)",
            "fetch (ms)",
        ],
        [
            [
                f"{r['accounts']:,}",
                f"{r['blob_bytes']:,}",
                f"{r['plain_bytes']:,}",
                fmt_ratio(r["size_vs_plain"]),
                fmt(r["make_ms"]),
                fmt(r["plain_encode_ms"], 3),
                fmt_ratio(r["make_vs_plain"]),
                fmt(r["restore_ms"]),
                fmt(r["plain_decode_ms"], 3),
                fmt(r["store_ms"]),
                fmt(r["fetch_ms"]),
            ]
            for r in rows
        ],
    )


def _print_competitive(results: list[dict[str, Any]], stall_timeout: float) -> None:
    rows = []
    for res in results:
        for phase in ("before", "after"):
            part = res[phase]
            s = part["summary"]
            label = f"{res['workers']} worker(s), " + (
                "all up" if phase == "before" else f"{res['killed']} killed (-9)"
            )
            stalled = part["stalled"]
            mined = [x["mined_s"] * 1e3 for x in part["samples"]]
            if stalled and not s["n"]:
                cells = ["stalls"] * 3
            else:
                cells = [fmt(s["p50_ms"], 0), fmt(s["p95_ms"], 0), fmt(s["max_ms"], 0)]
            cells.append(fmt(percentile(mined, 50), 0))
            counts = part["status_counts"]
            won = ", ".join(
                f"{n}: {c['accepted']}/{c['refused']}/{c.get('skipped', 0)}"
                for n, c in sorted(counts.items())
            )
            rows.append(
                [
                    label,
                    str(len(part["samples"])),
                    *cells,
                    f"{stalled} (>{stall_timeout:.0f} s)" if stalled else "0",
                    won or "-",
                ]
            )
    print_table(
        f"3. competitive execution: transfer submitted → accepted output covers its block "
        f"(anvil, a block every {BLOCK_TIME:g} s)",
        [
            "configuration",
            "n",
            "p50 (ms)",
            "p95 (ms)",
            "max (ms)",
            "of which until mined, p50 (ms)",
            "stalled",
            "status: accepted/refused/skipped per worker",
        ],
        rows,
    )
    gas_rows = []
    for res in results:
        for phase in ("before", "after"):
            for name, row in sorted(res[phase]["ledger_txs"].items()):
                gas_rows.append(
                    [
                        f"{res['workers']} worker(s), {phase} kill",
                        name,
                        str(row["accepted"]),
                        str(row["refused"]),
                        fmt(row["gas_accepted"] / max(row["accepted"], 1), 0),
                        fmt(row["gas_refused"] / max(row["refused"], 1), 0)
                        if row["refused"]
                        else "-",
                    ]
                )
    print_table(
        "3. ledger submissions on chain per worker (accepted / refused transactions, mean gas)",
        [
            "configuration",
            "worker",
            "accepted txs",
            "refused txs",
            "gas / accepted",
            "gas / refused",
        ],
        gas_rows,
    )


def _print_rotation(rot: dict[str, Any]) -> None:
    m = rot["medians"]
    rows = []
    for r in rot["rotations"]:
        rows.append(
            [
                f"rotation to v{r['version']} (request in block {r['request_block']})",
                fmt(r["mined_s"]),
                fmt(r["published_s"]),
                str(r["published_blocks"]),
                fmt(r["switched_s"]),
                str(r["switched_blocks"]),
                fmt(r["checkpoint_s"]),
                str(r["checkpoint_blocks"]),
            ]
        )
    rows.append(
        [
            f"[bold]rotation: median of {rot['reps']}[/]",
            fmt(m["rotation_mined_s"]),
            fmt(m["rotation_published_s"]),
            fmt(m["rotation_published_blocks"], 1),
            fmt(m["rotation_switched_s"]),
            fmt(m["rotation_switched_blocks"], 1),
            fmt(m["rotation_checkpoint_s"]),
            fmt(m["rotation_checkpoint_blocks"], 1),
        ]
    )
    for i, f in enumerate(rot["first_publications"], 1):
        rows.append(
            [
                f"first publish #{i} (deploy in block {f['request_block']})",
                fmt(f["mined_s"]),
                fmt(f["published_s"]),
                str(f["published_blocks"]),
                "-",
                "-",
                "-",
                "-",
            ]
        )
    rows.append(
        [
            f"[bold]first publish (baseline): median of {len(rot['first_publications'])}[/]",
            fmt(m["first_mined_s"]),
            fmt(m["first_published_s"]),
            fmt(m["first_published_blocks"], 1),
            "-",
            "-",
            "-",
            "-",
        ]
    )
    rows.append(
        [
            "[bold]rotation / first publish (medians)[/]",
            "-",
            fmt_ratio(rot["publish_ratio_s"]),
            fmt_ratio(rot["publish_ratio_blocks"]),
            "-",
            "-",
            "-",
            "-",
        ]
    )
    print_table(
        f"4. contract-key rotation: s from sending the request, and blocks after its block, "
        f"until each stage (anvil, a block every {BLOCK_TIME:g} s; 2 workers; gatekeepers 2-of-3)",
        [
            "sample",
            "mined (s)",
            "key published (s)",
            "blocks",
            "all workers switched (s)",
            "blocks (tip)",
            "checkpoint recorded (s)",
            "blocks",
        ],
        rows,
    )
    checks = rot["checks"]
    console.print(
        f"[dim]  gas of the gatekeeper's transaction (median): rotate_contract_key "
        f"{m['rotate_gas']:,.0f}, publish_contract_key {m['publish_gas']:,.0f}; checked: "
        f"balances unchanged over {rot['reps']} rotations on every worker "
        f"({checks['balances_after']}), key version {rot['reps']} on every worker "
        f"({checks['worker_key_versions']}), a transfer under it applied[/]"
    )


def _plot(payload: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0][0]
    rec = payload["recovery"]
    points = [s for row in rec["rows"] for s in row["samples"]]
    xs_rec = [s["blocks_replayed"] for s in points]
    ax.scatter(xs_rec, [s["done_s"] for s in points], label="recovery, total")
    ax.scatter(
        xs_rec,
        [s["following_s"] for s in points],
        marker="x",
        label="of which start → following (process start, fetch, keys, restore)",
    )
    ax.scatter(
        xs_rec, [s["replay_s"] for s in points], marker="^", label="of which replay to the tip"
    )
    base = rec["baseline_samples"]
    ax.scatter(
        [b["blocks_replayed"] for b in base],
        [b["done_s"] for b in base],
        marker="s",
        color="grey",
        label="plain restart, bundle kept (baseline)",
    )
    trade = payload["tradeoff"]["measured"]
    top = max([*xs_rec, 1])
    ax.plot(
        [0, top],
        [0, trade["replay_s_per_block"] * top],
        linestyle="--",
        color="#2ca02c",
        label=f"replay fit: {trade['replay_s_per_block'] * 1e3:.1f} ms/block",
    )
    ax.set_xlabel("blocks to replay after the checkpoint")
    ax.set_ylabel("seconds from process start")
    ax.set_title("recovery time against blocks to replay", fontsize=10)
    ax.legend(fontsize=7)

    sizes = payload["state_sizes"]
    xs = [r["accounts"] for r in sizes]
    ax = axes[0][1]
    ax.plot(xs, [r["blob_bytes"] for r in sizes], marker="o", label="checkpoint blob")
    ax.plot(
        xs,
        [r["plain_bytes"] for r in sizes],
        marker="s",
        linestyle="--",
        label="plain msgpack (baseline)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("token accounts S")
    ax.set_ylabel("bytes")
    ax.set_title("checkpoint size against state size", fontsize=10)
    ax.legend(fontsize=7)

    ax = axes[1][0]
    for key, label in (
        ("make_ms", "make_checkpoint"),
        ("restore_ms", "restore_checkpoint (fresh runtime)"),
        ("store_ms", "store_blob (3 nodes, k=2)"),
        ("fetch_ms", "fetch_blob"),
        ("plain_encode_ms", "plain msgpack encode (baseline)"),
    ):
        ax.plot(xs, [r[key] for r in sizes], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("token accounts S")
    ax.set_ylabel("ms (median)")
    ax.set_title("checkpoint time against state size", fontsize=10)
    ax.legend(fontsize=7)

    ax = axes[1][1]
    comp = payload["competitive"]["results"]
    labels, p50s, p95s = [], [], []
    for res in comp:
        for phase in ("before", "after"):
            labels.append(f"{res['workers']}w {'up' if phase == 'before' else 'killed'}")
            s = res[phase]["summary"]
            p50s.append(0.0 if s["n"] == 0 else s["p50_ms"])
            p95s.append(0.0 if s["n"] == 0 else s["p95_ms"])
    pos = list(range(len(labels)))
    ax.bar([p - 0.2 for p in pos], p50s, width=0.4, label="p50")
    ax.bar([p + 0.2 for p in pos], p95s, width=0.4, label="p95")
    for p, value in zip(pos, p50s, strict=True):
        if value == 0.0:
            ax.text(p, 50, "stalls", ha="center", rotation=90, fontsize=8)
    ax.set_xticks(pos, labels, fontsize=8)
    ax.set_ylabel("submit → output accepted (ms)")
    ax.set_title("competitive execution before / after killing the fastest worker", fontsize=10)
    ax.legend(fontsize=7)

    m = get_machine_info()
    fig.suptitle(
        f"availability: recovery, checkpoints, competitive execution\n"
        f"{m['cpu_count']} CPUs, Python {m['python']}, {m['date'][:16]}",
        fontsize=10,
    )
    fig.tight_layout()
    path = RESULTS_DIR / f"{NAME}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    console.print(f"[dim]figure written to {path}[/]")
    return path


# --------------------------------------------------------------------------- run


PARTS = ("recovery", "competitive", "rotation")  # recovery: parts 1 and 2 (one devnet)
PARTS_ENV = "SEALBRIDGE_BENCH_AVAILABILITY_PARTS"  # e.g. "rotation" (comma-separated)


def _select_parts(parts: list[str] | None) -> list[str]:
    """The parts to run: ``parts``, else ``$SEALBRIDGE_BENCH_AVAILABILITY_PARTS``, else all."""
    if parts is None:
        raw = os.environ.get(PARTS_ENV, "")
        parts = [p.strip() for p in raw.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown availability parts {unknown}; choose from {list(PARTS)}")
    return [p for p in PARTS if p in parts] or list(PARTS)


def run(quick: bool = False, parts: list[str] | None = None) -> dict[str, Any]:
    selected = _select_parts(parts)
    rows = [0, 50] if quick else [0, 50, 200, 500]
    reps = 1 if quick else 2
    interval = max(rows) + 100
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 10_000]
    size_reps = 3 if quick else 5
    worker_counts = [1, 2] if quick else [1, 2, 4]
    n_before = 4 if quick else 20
    n_after = 4 if quick else 20
    stall_timeout = 8.0 if quick else 30.0
    rotation_reps = 2 if quick else 5
    if is_smoke():  # every part and kind of sample once, on the smallest devnets
        rows, sizes, size_reps = [0, 5], [10, 100], 1
        n_before = n_after = rotation_reps = 1
        stall_timeout = 3.0
        interval = max(rows) + 100
    described = {
        "recovery": f"recovery B={rows}, state S={sizes}",
        "competitive": f"workers {worker_counts}",
        "rotation": f"{rotation_reps} key rotations",
    }
    console.rule(f"[bold]benchmark: availability ({', '.join(described[p] for p in selected)})")
    wall: dict[str, float] = {}
    config: dict[str, Any] = {}
    payload: dict[str, Any] = {"quick": quick, "parts": selected, "config": config}
    if "recovery" in selected:
        start = time.perf_counter()
        with temp_home("avail") as home:
            start_devnet(
                home,
                **get_devnet_sizes(workers=2, storage_nodes=3, storage_threshold=2),
                progress=_say,
            )
            wall["devnet_start"] = time.perf_counter() - start
            try:
                start = time.perf_counter()
                recovery = run_recovery(home, rows, reps, interval)
                wall["recovery"] = time.perf_counter() - start
                start = time.perf_counter()
                state_sizes = run_state_sizes(
                    sizes,
                    size_reps,
                    recovery["storage_urls"],
                    recovery["ledger"],
                    recovery["chain_id"],
                )
                wall["state_sizes"] = time.perf_counter() - start
            finally:
                stop_devnet(home)
        tradeoff = derive_tradeoff(recovery, state_sizes)
        config["recovery"] = {
            "devnet": "anvil automine, 2 workers, 3 storage nodes (k=2), sim TEE",
            "transfers_after_checkpoint": rows,
            "repetitions": reps,
            "checkpoint_interval": interval,
            "blocks": "one encrypted transfer per block (automine off, anvil_mine per "
            "block); the workers' output submissions land in the same blocks",
            "timing": "from the restarted process's start; /v1/status polled every 10 ms",
            "baseline": "kill -9 and start again with the state bundle kept",
        }
        config["state_sizes"] = {
            "accounts": sizes,
            "repetitions": size_reps,
            "in_process": "WorkerRuntime in this process (no enclave IPC)",
            "storage": "the devnet's 3 storage node processes, k=2",
            "baseline": "encode(storage.snapshot()) (msgspec msgpack), no encryption",
        }
        config["tradeoff"] = "derived, not measured: see tradeoff.measured for the inputs"
        payload.update(recovery=recovery, tradeoff=tradeoff, state_sizes=state_sizes)
    if "competitive" in selected:
        competitive = []
        for n in worker_counts:
            start = time.perf_counter()
            competitive.append(run_competitive(n, n_before, n_after, 60.0, stall_timeout))
            wall[f"competitive_{n}_workers"] = time.perf_counter() - start
        config["competitive"] = {
            "workers": worker_counts,
            "block_time_s": BLOCK_TIME,
            "samples_before": n_before,
            "samples_after": n_after,
            "stall_timeout_s": stall_timeout,
            "latency": "client.call (waits for the command's block) then get_output polled "
            "every 20 ms until end >= the command's block",
            "killed": "the worker with most accepted outputs before the kill (kill -9 of "
            "its process group)",
        }
        payload["competitive"] = {"results": competitive}
    if "rotation" in selected:
        start = time.perf_counter()
        with temp_home("avail-rot") as home:
            rotation = run_rotation(home, rotation_reps)
        wall["rotation"] = time.perf_counter() - start
        config["rotation"] = {
            "devnet": f"anvil with a block every {BLOCK_TIME:g} s, 2 workers, 3 gatekeepers "
            "(2-of-3), 3 storage nodes (k=2), sim TEE",
            "repetitions": rotation_reps,
            "state": "token: deploy, mint, 3 transfers (alice, bob, carol)",
            "timing": "from sending ContractRegistry.request_key_rotation; the registry, "
            f"the ledger and both workers' /v1/status polled every {ROTATION_POLL * 1e3:g} ms "
            "in one loop",
            "blocks": "after the request's block: ContractKeyRotated's block (rotated_at); "
            "the tip when every worker was first seen at the new key_version; the block "
            "that recorded the checkpoint at height >= rotated_at (recorded_at)",
            "baseline": "a fresh registration of the token's code (ContractRegistry.deploy "
            "as Client.deploy sends it, same gatekeeper as the token) until its key is "
            "published (ContractKeyPublished's block); one before each rotation",
            "checks": "balances queried on every worker equal before and after all "
            "rotations; key_version == repetitions on every worker and in the registry; a "
            "transfer encrypted to the latest key applies",
        }
        payload["rotation"] = rotation
    if "recovery" in selected:
        _print_recovery(recovery)
        _print_cost(tradeoff)
        _print_sizes(state_sizes)
    if "competitive" in selected:
        _print_competitive(competitive, stall_timeout)
    if "rotation" in selected:
        _print_rotation(rotation)
    load = os.getloadavg()
    console.print(
        "[dim]wall time per part (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in wall.items())
        + f"; load average now {load[0]:.1f} on {os.cpu_count()} CPUs[/]"
    )
    payload["wall_time_s"] = wall
    # a partial run keeps the full run's files: availability_<parts>.json, no figure
    name = NAME if selected == list(PARTS) else "_".join([NAME, *selected])
    payload["results_file"] = str(write_results(name, payload))
    if "recovery" in selected and "competitive" in selected:
        payload["figure"] = str(_plot(payload))
    return payload


def _main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument(
        "--part",
        action="append",
        choices=PARTS,
        help=f"run only this part (repeatable; default: ${PARTS_ENV}, else all)",
    )
    args = parser.parse_args()
    run(args.quick, args.part)


if __name__ == "__main__":
    _main()
