"""Benchmark 4: the reference contracts, plain vs the WebAssembly VM vs the runtime vs end to end.

Four workloads (``bench/workloads.py``): token transfers; DEX swaps (two tokens and a
constant-product DEX, two synchronous token calls per swap); sealed-bid auction bids (one
synchronous ``transfer_from`` per bid); K-Means (parties contribute points, and now and
then one of them runs ``compute`` over all of them). Each runs, in this process, from the
same deploys and set-up (untimed) through the same timed blocks:

* **direct** -- the contract classes called as plain Python methods with a trivial
  context (storage in two dicts, a synchronous call is a method call): the floor;
* **plain** -- the same classes on the platform's executor as ordinary Python
  (``load_builtin(name, sandboxed=False)`` on ``Executor(metered=False)``): no VM, no
  fuel, no encryption. **The baseline every ratio is taken against**;
* **wasm** -- ``load_builtin(name)`` on ``Executor()``: the same source in CPython on
  WebAssembly (wasmtime, fuel = gas, storage and calls through host functions): the
  VM's own cost;
* **runtime** -- ``WorkerRuntime.process_block`` on commands sealed beforehand: ECIES
  decryption, decoding, Ed25519 verification, nonces, execution in the VM, state root,
  sealed state and sealed results.

Every variant must apply every command (every executor outcome ok; every runtime receipt
"applied" and every sealed result opened with its sender's key and ok) and all four must
end with exactly the same storage in every contract. Variants alternate within each
repeat; the best repeat counts.

For token transfers a **profile** splits the runtime's time per command into its stages
(each stage's function wrapped with a timer over the same blocks) and lists where the
time goes by code area and by function (cProfile).

**End to end** (one devnet on anvil, automine, one worker): every contract is deployed
with ``Client.deploy`` and set up, then each workload's commands are submitted to the
CommandInbox in batches of 64 (``submit_batch``, one transaction each, sequentially) and
timed until the worker applied them all (its ``commands_applied``, polled every 20 ms).
The plain baseline submits the same commands, as plaintext msgpack (not encrypted, not
signed), to the same inbox under the same contract ids, and a plain executor follows the
chain with a ``BlockFollower`` (same 50 ms idle poll as a worker) and applies them. It
runs in a forked child of the benchmark process (as a worker runs in a process of its
own, so it does not share the submitter's interpreter lock), and it reports the moment
it applied the last command. Meanwhile the worker processes are paused (SIGSTOP; resumed
afterwards and left to refuse the plaintext commands before the sealbridge part runs),
so the baseline does not pay for them. Plain and sealbridge alternate for three
repetitions (the auction bids higher, K-Means gets new points each time); each system's
best counts. Finally queries answered by the worker (signed, encrypted) must equal the
plain node's answers. "Lag after last" is measured from the moment the submitter saw the
last receipt (polled every 20 ms), so the plain node can be a few ms ahead of it.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import pstats
import signal
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from bench.common import (
    console,
    fmt,
    fmt_ratio,
    get_devnet_sizes,
    is_smoke,
    print_table,
    ratio,
    run_cli,
    temp_home,
    write_results,
)
from bench.workloads import (
    FIRST_TIMED_BLOCK,
    DirectWorld,
    ExecutorWorld,
    Op,
    RuntimeWorld,
    Scenario,
    SealedScenario,
    User,
    auction_bids,
    dex_swaps,
    kmeans_rounds,
    make_users,
    prepare_world,
    resolve,
    token_transfers,
)
from sealbridge.client.api import Client
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.crypto import ecies
from sealbridge.crypto.signing import secp256k1_keypair
from sealbridge.devnet.launcher import start_devnet, stop_devnet
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.follower import BlockFollower
from sealbridge.evm.management import MAX_BATCH
from sealbridge.runtime import worker as worker_module
from sealbridge.runtime.envelope import make_query, open_answer, seal_command

NAME = "contracts"
VARIANTS = ["direct", "plain", "wasm", "runtime"]
VARIANT_LABELS = {
    "direct": "direct Python calls (trivial context)",
    "plain": "plain executor (no VM, no gas, no crypto) = baseline",
    "wasm": "executor on the WebAssembly VM (fuel-metered)",
    "runtime": "WorkerRuntime.process_block (full runtime)",
}
E2E_WORKERS = 1
POLL_INTERVAL = 0.05  # the worker's idle chain poll (NodeConfig.poll_interval)
STATUS_POLL = 0.02
APPLY_TIMEOUT = 600.0
E2E_REPS = 3


class Sizes(NamedTuple):
    """A workload's builder and its sizes: in process (full, quick, smoke), end to end."""

    builder: Callable[..., Scenario]
    full: dict[str, int]
    quick: dict[str, int]
    smoke: dict[str, int]
    e2e: dict[str, int]
    e2e_quick: dict[str, int]
    e2e_smoke: dict[str, int]

    def in_process(self, quick: bool) -> dict[str, int]:
        return self.smoke if is_smoke() else self.quick if quick else self.full

    def end_to_end(self, quick: bool) -> dict[str, int]:
        return self.e2e_smoke if is_smoke() else self.e2e_quick if quick else self.e2e


SIZES: dict[str, Sizes] = {
    "token": Sizes(
        token_transfers,
        full={"blocks": 100},
        quick={"blocks": 10},
        smoke={"blocks": 2, "senders": 8},
        e2e={"blocks": 32, "senders": 64},
        e2e_quick={"blocks": 2, "senders": 64},
        e2e_smoke={"blocks": 1, "senders": 8},
    ),
    "dex": Sizes(
        dex_swaps,
        full={"blocks": 40},
        quick={"blocks": 6},
        smoke={"blocks": 2, "traders": 8},
        e2e={"blocks": 16, "traders": 64},
        e2e_quick={"blocks": 2, "traders": 64},
        e2e_smoke={"blocks": 1, "traders": 8},
    ),
    "auction": Sizes(
        auction_bids,
        full={"rounds": 40},
        quick={"rounds": 6},
        smoke={"rounds": 2, "bidders": 8},
        e2e={"rounds": 16, "bidders": 64},
        e2e_quick={"rounds": 2, "bidders": 64},
        e2e_smoke={"rounds": 1, "bidders": 8},
    ),
    "kmeans": Sizes(
        kmeans_rounds,
        full={"rounds": 20, "compute_every": 10},
        quick={"rounds": 10, "compute_every": 5},
        smoke={"rounds": 2, "compute_every": 2},
        e2e={"rounds": 10, "compute_every": 5},
        e2e_quick={"rounds": 5, "compute_every": 5},
        e2e_smoke={"rounds": 2, "compute_every": 2},
    ),
}


# --------------------------------------------------------------------------- in process


def time_direct_or_executor(world: DirectWorld | ExecutorWorld, scenario: Scenario) -> list[float]:
    """Deploy and set up (untimed), then run the timed blocks; each block's duration."""
    blocks = prepare_world(world, scenario)
    durations = []
    clock = time.perf_counter
    for number, block in enumerate(blocks, start=FIRST_TIMED_BLOCK):
        start = clock()
        world.run_block(number, block)
        durations.append(clock() - start)
    if isinstance(world, ExecutorWorld):
        world.raise_failures()
    return durations


def time_runtime(world: RuntimeWorld) -> list[float]:
    process = world.runtime.process_block
    outputs = []
    durations = []
    clock = time.perf_counter
    for block, _meta in world.sealed.blocks:
        start = clock()
        outputs.append(process(block))
        durations.append(clock() - start)
    world.check(outputs, open_results=True)
    return durations


def run_variant(kind: str, scenario: Scenario, sealed: SealedScenario) -> tuple[list[float], Any]:
    """One fresh run of one variant: block durations and the world (for its state)."""
    if kind == "runtime":
        runtime_world = RuntimeWorld(sealed)
        return time_runtime(runtime_world), runtime_world
    world: DirectWorld | ExecutorWorld = (
        DirectWorld() if kind == "direct" else ExecutorWorld(sandboxed=kind == "wasm")
    )
    return time_direct_or_executor(world, scenario), world


def final_state(world: Any, scenario: Scenario) -> dict[str, Any]:
    return {key: world.state(cid) for key, cid in scenario.ids.items()}


def measure_scenario(scenario: Scenario, repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    sealed = SealedScenario(scenario)
    seal_s = time.perf_counter() - t0
    console.print(
        f"[dim]  {scenario.label}: {scenario.commands} timed commands in {len(scenario.blocks)} "
        f"blocks; sealed {len(sealed.blocks) + 2} blocks in {seal_s:.2f}s[/]"
    )
    runs: dict[str, list[list[float]]] = {k: [] for k in VARIANTS}
    reference: dict[str, Any] | None = None
    for _ in range(repeats):
        for kind in VARIANTS:
            durations, world = run_variant(kind, scenario, sealed)
            runs[kind].append(durations)
            state = final_state(world, scenario)
            if reference is None:
                reference = state
            elif state != reference:
                differing = sorted(k for k in state if state[k] != reference.get(k))
                raise AssertionError(
                    f"{scenario.name}: {kind} ended in another state than direct ({differing})"
                )
    methods = scenario.block_methods()
    counts = scenario.count_by_method()
    variants: dict[str, Any] = {}
    for kind in VARIANTS:
        totals = [sum(d) for d in runs[kind]]
        best_index = min(range(len(totals)), key=totals.__getitem__)
        best = totals[best_index]
        by_method: dict[str, float] = defaultdict(float)
        for method, duration in zip(methods, runs[kind][best_index], strict=True):
            by_method[method] += duration
        variants[kind] = {
            "label": VARIANT_LABELS[kind],
            "runs_s": totals,
            "best_s": best,
            "median_s": statistics.median(totals),
            "commands_per_s": scenario.commands / best,
            "us_per_command": best / scenario.commands * 1e6,
            "by_method": {
                m: {
                    "total_s": t,
                    "commands": counts.get(m, 0),
                    "us_per_command": t / counts[m] * 1e6 if counts.get(m) else float("nan"),
                    "share": t / best,
                }
                for m, t in by_method.items()
            },
        }
    base = variants["plain"]["us_per_command"]
    direct = variants["direct"]["us_per_command"]
    for kind in VARIANTS:
        v = variants[kind]
        v["slowdown_vs_plain"] = ratio(v["us_per_command"], base)
        v["slowdown_vs_direct"] = ratio(v["us_per_command"], direct)
    return {
        "label": scenario.label,
        "config": scenario.config,
        "commands": scenario.commands,
        "blocks": len(scenario.blocks),
        "commands_by_method": counts,
        "seal_s": seal_s,
        "repeats": repeats,
        "variants": variants,
        "states_equal": True,
        "ratios": {
            "wasm_over_plain": variants["wasm"]["slowdown_vs_plain"],
            "runtime_over_plain": variants["runtime"]["slowdown_vs_plain"],
            "runtime_over_wasm": ratio(
                variants["runtime"]["us_per_command"], variants["wasm"]["us_per_command"]
            ),
            "plain_over_direct": variants["plain"]["slowdown_vs_direct"],
        },
    }


# --------------------------------------------------------------------------- profile

STAGES: list[tuple[str, str]] = [
    ("decrypt", "ECIES decrypt (X25519, HKDF, AES-GCM)"),
    ("decode", "decode SignedCommand + CommandBody"),
    ("verify", "Ed25519 signature verification"),
    ("execute", "execution in the VM (run_command)"),
    ("seal_result", "seal the result for the sender (AES-GCM)"),
    ("state_root", "state root (snapshot, encode, hash)"),
    ("seal_state", "seal the state (snapshot, encode, AES-GCM)"),
    ("other", "the rest: nonces, journal, receipts, seeds, outputs"),
]


NESTED_STAGES: set[str] = set()  # stages inside another stage: not added to the total


class StageTimer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        totals = self.totals
        calls = self.calls
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[stage] += clock() - start
                calls[stage] += 1

        return timed


@contextmanager
def instrumented(world: RuntimeWorld, timer: StageTimer) -> Iterator[list[str]]:
    """Wrap each stage's function with a timer (restored afterwards); yields the stages
    that could not be wrapped (a renamed function), which then count as "other"."""
    targets: list[tuple[Any, str, str]] = [
        (ecies.Recipient, "decrypt", "decrypt"),
        (worker_module, "decode_canonical", "decode"),
        (worker_module, "ed25519_verify", "verify"),
        (world.runtime.executor, "run_command", "execute"),
        (worker_module.ContractRuntime, "seal_result", "seal_result"),
        (worker_module.ContractRuntime, "compute_state_root", "state_root"),
        (worker_module.ContractRuntime, "seal_state", "seal_state"),
    ]
    saved: list[tuple[Any, str, Any]] = []  # (owner, attribute, original or None)
    missing = []
    try:
        for owner, attr, stage in targets:
            if not hasattr(owner, attr):
                missing.append(stage)
                continue
            saved.append((owner, attr, vars(owner).get(attr)))
            setattr(owner, attr, timer.wrap(stage, getattr(owner, attr)))
        yield missing
    finally:
        for owner, attr, original in reversed(saved):
            if original is None:
                delattr(owner, attr)  # an instance attribute shadowing the class's method
            else:
                setattr(owner, attr, original)


def profile_runtime(scenario: Scenario, repeats: int, profile_blocks: int) -> dict[str, Any]:
    """Per-stage times of the runtime over the scenario's timed blocks (best of
    ``repeats`` instrumented runs), then a cProfile of ``profile_blocks`` blocks."""
    sealed = SealedScenario(scenario)
    commands = scenario.commands
    best: tuple[float, dict[str, float], list[str]] | None = None
    for _ in range(repeats):
        world = RuntimeWorld(sealed)
        timer = StageTimer()
        process = world.runtime.process_block
        outputs = []
        total = 0.0
        with instrumented(world, timer) as missing:
            for block, _meta in sealed.blocks:
                start = time.perf_counter()
                outputs.append(process(block))
                total += time.perf_counter() - start
        world.check(outputs, open_results=False)
        if best is None or total < best[0]:
            best = (total, dict(timer.totals), missing)
    assert best is not None
    total, totals, missing = best
    totals["other"] = total - sum(v for k, v in totals.items() if k not in NESTED_STAGES)
    stages = []
    for key, label in STAGES:
        seconds = totals.get(key, 0.0)
        stages.append(
            {
                "stage": key,
                "label": label,
                "total_s": seconds,
                "us_per_command": seconds / commands * 1e6,
                "share": seconds / total,
                "instrumented": key not in missing,
                "nested": key in NESTED_STAGES,
            }
        )
    return {
        "workload": scenario.name,
        "commands": commands,
        "blocks": len(scenario.blocks),
        "method": "each stage's function wrapped with a perf_counter timer; the "
        f"instrumented run with the least total of {repeats}; 'other' = process_block "
        "total minus the (not nested) stages",
        "instrumented_total_s": total,
        "instrumented_us_per_command": total / commands * 1e6,
        "stages": stages,
        "not_instrumented": missing,
        "cprofile": cprofile_runtime(sealed, profile_blocks),
    }


CRYPTO = ("cryptography", "/crypto/", "_hashlib", "hashlib", "_blake2")
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("crypto (Ed25519, X25519, AES-GCM, HKDF, hashes)", CRYPTO),
    ("VM (wasmtime calls, guest work)", ("/wasmtime/",)),
    ("VM host side (engine, host functions)", ("/contracts/wasm/", "/contracts/executor.py")),
    ("SDK + storage", ("/contracts/sdk.py", "/contracts/storage.py")),
    ("executor", ("/contracts/executor.py",)),
    ("runtime (worker.py, messages)", ("/runtime/",)),
    ("encoding (msgspec)", ("msgspec", "/core/encoding.py", "/core/ids.py")),
]  # fmt: skip


def _area(filename: str, function: str) -> str:
    where = f"{filename} {function}"
    for area, needles in AREAS:
        if any(n in where for n in needles):
            return area
    return "Python built-ins and other"


def cprofile_runtime(sealed: SealedScenario, blocks: int) -> dict[str, Any]:
    world = RuntimeWorld(sealed)
    chosen = sealed.blocks[:blocks]
    commands = sum(len(b.commands) for b, _ in chosen)
    profiler = cProfile.Profile()
    profiler.enable()
    for block, _meta in chosen:
        world.runtime.process_block(block)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    by_area: dict[str, float] = defaultdict(float)
    functions = []
    root = str(Path(worker_module.__file__).resolve().parents[2])
    for (filename, line, function), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        by_area[_area(filename, function)] += tottime
        short = filename.replace(root + "/", "")
        functions.append(
            {
                "function": f"{short}:{line}({function})" if line else function,
                "ncalls": ncalls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
                "tottime_us_per_command": tottime / commands * 1e6,
                "share": tottime / total if total else 0.0,
            }
        )
    functions.sort(key=lambda f: -f["tottime_s"])
    return {
        "blocks": len(chosen),
        "commands": commands,
        "note": "cProfile's own overhead inflates Python-level code (host functions, storage) "
        "more than C-level crypto; read the shares, not the absolute times",
        "total_s": total,
        "by_area": [
            {"area": a, "tottime_s": t, "share": t / total if total else 0.0}
            for a, t in sorted(by_area.items(), key=lambda kv: -kv[1])
        ],
        "top_functions": functions[:25],
    }


# --------------------------------------------------------------------------- end to end


class PlainCommand(Message, frozen=True):
    """A command of the plain end-to-end baseline: plaintext, unsigned."""

    sender: bytes
    method: str
    args: dict[str, Any] = {}


def follow_plain(
    rpc_url: str,
    addresses: Any,
    start_block: int,
    world: ExecutorWorld,
    scenario: Scenario,
    conn: Connection,
) -> None:
    """The plain baseline's node (a forked child process, as a worker is a process of its
    own): follow the chain from ``start_block``, apply the plaintext commands addressed to
    the plain world's contracts until all of the scenario's are in, then report when that
    was and the answers of the scenario's probe queries."""
    try:
        follower = BlockFollower(ChainAdapter.rpc(rpc_url), addresses, start_block=start_block)
        contracts = world.executor.contracts
        run = world.executor.run_command
        applied = 0
        failures: list[str] = []
        conn.send({"ready": True})
        while applied + len(failures) < scenario.commands:
            blocks = follower.poll()
            if not blocks:
                time.sleep(POLL_INTERVAL)
                continue
            for block in blocks:
                for event in block.events:
                    cid = bytes(event.args.get("contract_id", b""))
                    if event.name != "Command" or cid not in contracts:
                        continue
                    command = decode(bytes(event.args["ciphertext"]), PlainCommand)
                    outcome = run(
                        cid,
                        command.method,
                        dict(command.args),
                        caller=command.sender,
                        block_number=block.number,
                        seed=block.hash,
                    )
                    if outcome.ok:
                        applied += 1
                    else:
                        failures.append(f"{command.method}: {outcome.error}: {outcome.message}")
        done_at = time.monotonic()
        answers = [
            world.query(scenario.ids[p.contract], p.method, p.args, scenario.users[p.caller].pub)
            for p in scenario.probes
        ]
        conn.send(
            {"done_at": done_at, "applied": applied, "failures": failures[:5], "answers": answers}
        )
    except BaseException as exc:  # reported by the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def run_plain_e2e(
    net: Devnet, scenario: Scenario, world: ExecutorWorld, items: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """Submit the plaintext commands; a forked plain node applies them. Times from the
    first submission until the node applied the last command."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(
        target=follow_plain,
        args=(
            net.client.state.rpc_url,
            net.client.addresses,
            net.chain.get_block_number() + 1,
            world,
            scenario,
            child,
        ),
        daemon=True,
    )
    process.start()
    try:
        if not parent.poll(60):
            raise TimeoutError("the plain node did not start")
        ready = parent.recv()
        if "ready" not in ready:
            raise AssertionError(f"the plain node did not start: {ready.get('error')}")
        start = time.monotonic()
        net.submit(items)
        sent = time.monotonic() - start
        if not parent.poll(APPLY_TIMEOUT):
            raise TimeoutError(f"the plain node did not apply {scenario.commands} commands")
        report = parent.recv()
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    if "error" in report:
        raise AssertionError(f"plain e2e {scenario.name}: {report['error']}")
    if report["failures"] or report["applied"] != scenario.commands:
        raise AssertionError(
            f"plain e2e {scenario.name}: {report['applied']}/{scenario.commands} applied, "
            f"failures: {report['failures']}"
        )
    done = report["done_at"] - start
    return {
        "submit_s": sent,
        "applied_s": done,
        "lag_after_last_submit_s": done - sent,
        "commands_per_s": scenario.commands / done,
        "payload_bytes_mean": statistics.fmean(len(p) for _c, p in items),
        "answers": report["answers"],
    }


class Devnet:
    """What the end-to-end part needs of the devnet."""

    def __init__(self, home: Path) -> None:
        self.client = Client.from_home(home)
        self.chain = self.client.chain
        self.inbox = self.client.mgmt.command_inbox
        alice = self.client.get_user("alice")
        self.alice = alice
        self.deployer = User(alice.identity_private_key, alice.identity_key)
        self.submitter, _pub = secp256k1_keypair()
        self.chain.fund(
            ChainAdapter.address_of(self.submitter),
            1000 * 10**18,
            sender_key=self.chain.get_dev_key(0),
        )
        self.nonces: dict[tuple[bytes, bytes], int] = {}

    def deploy(self, builder: Callable[..., Scenario], sizes: dict[str, int]) -> Scenario:
        """Deploy the workload's contracts with Client.deploy (in order: a contract's
        init may name those before it); the scenario with the chain's contract ids."""
        draft = builder(self.deployer, **sizes)
        ids: dict[str, bytes] = {}
        for d in draft.deploys:
            deployment = self.client.deploy(d.program, as_user="alice", init_args=d.init(ids))
            ids[d.key] = deployment.contract_id
            self.nonces[(deployment.contract_id, self.deployer.pub)] = (
                self.client.next_nonce(self.alice, deployment.contract_id) - 1
            )
        return builder(self.deployer, ids, **sizes)

    def seal(self, scenario: Scenario, ops: list[Op]) -> list[tuple[bytes, bytes]]:
        out = []
        keys: dict[bytes, bytes] = {}
        for op in ops:
            cid = scenario.ids[op.contract]
            if cid not in keys:
                keys[cid] = self.client.get_contract(cid).contract_public_key
            user = scenario.users[op.sender]
            nonce = self.nonces.get((cid, user.pub), 0) + 1
            self.nonces[(cid, user.pub)] = nonce
            ciphertext = seal_command(
                contract_id=cid,
                contract_public_key=keys[cid],
                sender_private_key=user.seed,
                nonce=nonce,
                method=op.method,
                args=op.args,
            )
            out.append((cid, ciphertext))
        return out

    @staticmethod
    def plaintext(scenario: Scenario, ops: list[Op]) -> list[tuple[bytes, bytes]]:
        return [
            (
                scenario.ids[op.contract],
                encode(
                    PlainCommand(
                        sender=scenario.users[op.sender].pub, method=op.method, args=op.args
                    )
                ),
            )
            for op in ops
        ]

    def submit(self, items: list[tuple[bytes, bytes]]) -> None:
        for start in range(0, len(items), MAX_BATCH):
            self.inbox.submit_batch(items[start : start + MAX_BATCH], self.submitter)

    def commands_applied(self) -> dict[bytes, int]:
        """Per contract, the least ``commands_applied`` over the workers."""
        out: dict[bytes, int] = {}
        for i, worker in enumerate(self.client.state.workers):
            status = self.client.get_node(worker.url).get_json("/v1/status")
            counts = {
                bytes.fromhex(c["contract_id"][2:]): int(c["commands_applied"])
                for c in status["contracts"]
            }
            out = counts if i == 0 else {k: min(v, counts.get(k, 0)) for k, v in out.items()}
        return out

    def wait_applied(self, targets: dict[bytes, int], timeout: float = APPLY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            applied = self.commands_applied()
            if all(applied.get(cid, 0) >= n for cid, n in targets.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not apply {targets} in {timeout:.0f}s")
            time.sleep(STATUS_POLL)

    def wait_caught_up(self, timeout: float = APPLY_TIMEOUT) -> None:
        """Until every worker has handled the chain tip (and stays there briefly)."""
        deadline = time.monotonic() + timeout
        while True:
            tip = self.chain.get_block_number()
            heights = [
                int(self.client.get_node(w.url).get_json("/v1/status")["height"])
                for w in self.client.state.workers
            ]
            if min(heights) >= tip:
                time.sleep(0.3)  # let a pending output transaction land, then re-check
                if self.chain.get_block_number() == tip:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not catch up with the chain")
            time.sleep(0.05)

    @contextmanager
    def workers_paused(self) -> Iterator[None]:
        """SIGSTOP the worker process groups this benchmark's devnet started; SIGCONT."""
        groups = [w.pid for w in self.client.state.workers]
        stopped = []
        try:
            for pid in groups:
                os.killpg(pid, signal.SIGSTOP)
                stopped.append(pid)
            yield
        finally:
            for pid in stopped:
                os.killpg(pid, signal.SIGCONT)

    def query(
        self, scenario: Scenario, contract: str, caller: int, method: str, args: dict[str, Any]
    ) -> Any:
        query, reply = make_query(
            contract_id=scenario.ids[contract],
            caller_private_key=scenario.users[caller].seed,
            method=method,
            args=args,
            issued_at=int(time.time()),
        )
        worker = self.client.state.workers[0]
        answer, _signed = open_answer(
            query, reply, self.client.get_node(worker.url).post("/v1/query", encode(query))
        )
        return answer.result


def run_e2e(quick: bool) -> dict[str, Any]:
    with temp_home("contracts") as home:
        start_devnet(
            home,
            **get_devnet_sizes(workers=E2E_WORKERS),
            progress=lambda m: console.print(f"[dim]  {m}[/]"),
        )
        try:
            return _run_e2e(home, quick)
        finally:
            stop_devnet(home)


def _run_e2e(home: Path, quick: bool) -> dict[str, Any]:
    net = Devnet(home)
    t0 = time.perf_counter()
    scenarios: dict[str, Scenario] = {}
    for name, sizes in SIZES.items():
        scenarios[name] = net.deploy(sizes.builder, sizes.end_to_end(quick))
    deploy_s = time.perf_counter() - t0
    console.print(f"[dim]  deployed {sum(len(s.ids) for s in scenarios.values())} contracts "
                  f"in {deploy_s:.1f}s[/]")  # fmt: skip

    # -- set-up (untimed): sealbridge through the chain, the plain worlds locally --------
    t0 = time.perf_counter()
    applied = net.commands_applied()
    targets: dict[bytes, int] = {}
    setup_items: list[tuple[bytes, bytes]] = []
    for scenario in scenarios.values():
        setup_items += net.seal(scenario, scenario.setup)
        for op in scenario.setup:
            cid = scenario.ids[op.contract]
            targets[cid] = targets.get(cid, applied.get(cid, 0)) + 1
    net.submit(setup_items)
    net.wait_applied(targets)
    plain_worlds: dict[str, ExecutorWorld] = {}
    for name, scenario in scenarios.items():
        plain_worlds[name] = ExecutorWorld(sandboxed=False)
        prepare_world(plain_worlds[name], scenario)
    console.print(f"[dim]  set-up: {len(setup_items)} commands applied in "
                  f"{time.perf_counter() - t0:.1f}s[/]")  # fmt: skip

    reps = 1 if quick else E2E_REPS
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {"plain": [], "sealbridge": []} for n in scenarios
    }
    plain_answers: dict[str, list[Any]] = {}
    for rep in range(reps):
        # the timed commands of this repetition, sealed and encoded before timing
        current = {
            n: SIZES[n].builder(net.deployer, s.ids, rep=rep, **SIZES[n].end_to_end(quick))
            for n, s in scenarios.items()
        }
        sealed_items = {n: net.seal(s, list(s.ops())) for n, s in current.items()}
        plain_items = {n: net.plaintext(s, list(s.ops())) for n, s in current.items()}

        # plain: the workers paused, a forked plain node follows the chain
        with net.workers_paused():
            for name, scenario in current.items():
                outcome = run_plain_e2e(net, scenario, plain_worlds[name], plain_items[name])
                plain_answers[name] = outcome.pop("answers")
                runs[name]["plain"].append(outcome)
                # the parent's copy of the plain world catches up (untimed), so the next
                # repetition's node starts from the state this one ended in
                world = plain_worlds[name]
                for number, block in enumerate(resolve(scenario, scenario.blocks)):
                    world.run_block(FIRST_TIMED_BLOCK + number, block)
                world.raise_failures()
        net.wait_caught_up()  # the resumed worker refuses the plaintext commands

        # sealbridge: the same commands, sealed, applied by the worker
        for name, scenario in current.items():
            applied = net.commands_applied()
            targets = {
                scenario.ids[key]: applied.get(scenario.ids[key], 0) + n
                for key, n in scenario.count_by_contract().items()
            }
            start = time.perf_counter()
            net.submit(sealed_items[name])
            sent = time.perf_counter() - start
            net.wait_applied(targets)
            done = time.perf_counter() - start
            runs[name]["sealbridge"].append(
                {
                    "submit_s": sent,
                    "applied_s": done,
                    "lag_after_last_submit_s": done - sent,
                    "commands_per_s": scenario.commands / done,
                    "ciphertext_bytes_mean": statistics.fmean(
                        len(c) for _c, c in sealed_items[name]
                    ),
                }
            )

    results: dict[str, Any] = {}
    for name, scenario in scenarios.items():
        plain = max(runs[name]["plain"], key=lambda r: r["commands_per_s"])
        sealed = max(runs[name]["sealbridge"], key=lambda r: r["commands_per_s"])
        per_rep = [
            ratio(p["commands_per_s"], q["commands_per_s"])
            for p, q in zip(runs[name]["plain"], runs[name]["sealbridge"], strict=True)
        ]
        results[name] = {
            "commands": scenario.commands,
            "repetitions": reps,
            "plain": {**plain, "runs": runs[name]["plain"]},
            "sealbridge": {**sealed, "runs": runs[name]["sealbridge"]},
            "slowdown_vs_plain": ratio(plain["commands_per_s"], sealed["commands_per_s"]),
            "slowdown_per_repetition": per_rep,
        }
        # cross-check: the worker's signed answers equal the plain node's
        checks = []
        for probe, expected in zip(scenario.probes, plain_answers[name], strict=True):
            got = net.query(scenario, probe.contract, probe.caller, probe.method, probe.args)
            if got != expected:
                raise AssertionError(
                    f"e2e {name}: {probe.method} answered {got!r}, plain {expected!r}"
                )
            checks.append(probe.method)
        results[name]["checked_queries"] = checks
    net.client.close()
    return {
        "config": {
            "workers": E2E_WORKERS,
            "chain": "anvil, automine (one block per transaction)",
            "submission": f"sequential submit_batch transactions of up to {MAX_BATCH} "
            "commands from one funded account (each waits for its receipt)",
            "plain": "plaintext msgpack PlainCommand to the same CommandInbox and contract "
            "ids; a plain executor in a forked child of the bench process follows the chain "
            f"(BlockFollower, {POLL_INTERVAL * 1000:.0f} ms idle poll) while the worker "
            "processes are paused (SIGSTOP)",
            "sealbridge": "sealed commands; done when the worker's commands_applied "
            f"(polled every {STATUS_POLL * 1000:.0f} ms) shows every command applied ok",
            "repetitions": reps,
            "statistic": "best of the repetitions for each system (commands/s); the "
            "repetitions alternate: plain, then sealbridge, for every workload",
            "deploy_s": deploy_s,
        },
        "workloads": results,
    }


# --------------------------------------------------------------------------- report


def run(quick: bool = False, *, e2e: bool = True) -> dict[str, Any]:
    repeats = 1 if is_smoke() else 2 if quick else 5
    profile_blocks = 2 if is_smoke() else 10 if quick else 20
    console.rule("[bold]benchmark 4: reference contracts -- plain, wasm, runtime, end to end")
    deployer = make_users(1, "deployer")[0]
    scenarios = {
        name: sizes.builder(deployer, **sizes.in_process(quick)) for name, sizes in SIZES.items()
    }
    workloads: dict[str, Any] = {}
    for name, scenario in scenarios.items():
        workloads[name] = measure_scenario(scenario, repeats)
    console.print("[dim]  profiling the runtime on token transfers[/]")
    profile = profile_runtime(scenarios["token"], repeats, profile_blocks=profile_blocks)
    profile["uninstrumented_us_per_command"] = workloads["token"]["variants"]["runtime"][
        "us_per_command"
    ]
    e2e_results = run_e2e(quick) if e2e else None

    print_in_process(workloads, repeats)
    print_kmeans(workloads["kmeans"])
    print_profile(profile)
    if e2e_results is not None:
        print_e2e(e2e_results)
    print_summary(workloads, e2e_results)
    payload: dict[str, Any] = {
        "quick": quick,
        "config": {
            "repeats": repeats,
            "statistic": "best of repeats (variants alternate within a repeat)",
            "baseline": "plain: load_builtin(name, sandboxed=False) on Executor(metered=False)",
            "second_baseline": "direct: the plain classes called directly, trivial context",
            "ratios": "slowdown = time per command / the baseline's time per command",
        },
        "workloads": workloads,
        "profile_token_runtime": profile,
        "e2e": e2e_results,
    }
    payload["results_file"] = str(write_results(NAME, payload))
    return payload


def print_in_process(workloads: dict[str, Any], repeats: int) -> None:
    rows = []
    for w in workloads.values():
        v = w["variants"]
        rows.append(
            [
                w["label"],
                str(w["commands"]),
                *(fmt(v[k]["commands_per_s"], 0) for k in VARIANTS),
                fmt_ratio(w["ratios"]["wasm_over_plain"]),
                fmt_ratio(w["ratios"]["runtime_over_plain"]),
                fmt_ratio(v["runtime"]["slowdown_vs_direct"]),
            ]
        )
    print_table(
        f"in process, commands/s (best of {repeats}); ratios = time per command vs the plain "
        "executor (and vs direct calls)",
        ["workload", "commands", "direct", "plain", "wasm", "runtime",
         "wasm ÷ plain", "runtime ÷ plain", "runtime ÷ direct"],
        rows,
    )  # fmt: skip
    rows = []
    for w in workloads.values():
        v = w["variants"]
        rows.append([w["label"], *(fmt(v[k]["us_per_command"], 1) for k in VARIANTS)])
    print_table("in process, µs per command", ["workload", *VARIANTS], rows)


def print_kmeans(w: dict[str, Any]) -> None:
    rows = []
    for method in ("contribute", "compute"):
        cells = []
        for kind in VARIANTS:
            m = w["variants"][kind]["by_method"].get(method)
            cells.append(
                "-"
                if m is None
                else f"{fmt(m['us_per_command'] / 1000, 2)} ms ({m['share'] * 100:.0f} %)"
            )
        rows.append([f"{method} ({w['commands_by_method'].get(method, 0)} commands)", *cells])
    c = w["config"]
    print_table(
        f"K-Means: {c['points']} points of {c['dims']} dims from {c['parties']} parties, "
        f"k={c['k']}, {c['iterations']} iterations; ms per command (share of the workload's time)",
        ["command", *VARIANTS],
        rows,
    )  # fmt: skip


def print_profile(profile: dict[str, Any]) -> None:
    rows = [
        [s["label"], fmt(s["us_per_command"], 1), f"{s['share'] * 100:.1f} %"]
        for s in profile["stages"]
    ]
    rows.append(["total (instrumented)", fmt(profile["instrumented_us_per_command"], 1), "100 %"])
    rows.append(
        [
            "total (same blocks, not instrumented)",
            fmt(profile["uninstrumented_us_per_command"], 1),
            "",
        ]
    )
    print_table(
        f"where a token transfer's time goes in WorkerRuntime.process_block "
        f"({profile['commands']} transfers, {profile['blocks']} blocks)",
        ["stage", "µs/command", "share"],
        rows,
    )  # fmt: skip
    cp = profile["cprofile"]
    print_table(
        f"cProfile of {cp['commands']} transfers by code area "
        "(own time; cProfile inflates Python code)",
        ["area", "share"],
        [[a["area"], f"{a['share'] * 100:.1f} %"] for a in cp["by_area"]],
    )  # fmt: skip
    print_table(
        "cProfile: top functions by own time",
        ["function", "calls", "µs/command", "share"],
        [
            [
                f["function"][-90:],
                str(f["ncalls"]),
                fmt(f["tottime_us_per_command"], 2),
                f"{f['share'] * 100:.1f} %",
            ]
            for f in cp["top_functions"][:12]
        ],
    )  # fmt: skip


def print_e2e(e2e: dict[str, Any]) -> None:
    rows = []
    for name, r in e2e["workloads"].items():
        for system in ("plain", "sealbridge"):
            x = r[system]
            size = x.get("payload_bytes_mean", x.get("ciphertext_bytes_mean", float("nan")))
            rows.append(
                [
                    name if system == "plain" else "",
                    system,
                    str(r["commands"]),
                    fmt(size, 0),
                    fmt(x["submit_s"], 2),
                    fmt(x["applied_s"], 2),
                    fmt(x["lag_after_last_submit_s"] * 1000, 0),
                    fmt(x["commands_per_s"], 0),
                    fmt_ratio(r["slowdown_vs_plain"]) if system == "sealbridge" else "",
                    _ratio_range(r["slowdown_per_repetition"]) if system == "sealbridge" else "",
                ]
            )
    c = e2e["config"]
    print_table(
        f"end to end on anvil ({c['workers']} worker): sequential submit_batch transactions "
        f"of up to {MAX_BATCH} commands, timed until every command is applied "
        f"(best of {c['repetitions']} for each system)",
        ["workload", "system", "commands", "bytes/command", "all sent (s)", "all applied (s)",
         "lag after last (ms)", "commands/s", "slowdown", "per repetition"],
        rows,
    )  # fmt: skip


def _ratio_range(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    return f"{min(values):.2f}-{max(values):.2f}×"


def print_summary(workloads: dict[str, Any], e2e: dict[str, Any] | None) -> None:
    rows = []
    for name, w in workloads.items():
        e = e2e["workloads"].get(name) if e2e else None
        rows.append(
            [
                w["label"],
                fmt_ratio(w["ratios"]["wasm_over_plain"]),
                fmt_ratio(w["ratios"]["runtime_over_plain"]),
                fmt_ratio(e["slowdown_vs_plain"]) if e else "-",
            ]
        )
    print_table(
        "slowdown against the same contract class run plainly (time per command; 1.00× = as fast)",
        ["workload", "wasm ÷ plain", "runtime ÷ plain", "e2e sealbridge ÷ e2e plain"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    run_cli(run, __doc__)
