"""Benchmark 2: the worker runtime alone, replaying pre-built blocks of encrypted transfers.

The reference token is deployed (its deploy command carries the source) and the senders
minted in block 1; then the same ``blocks × per_block`` encrypted transfers (built and
sealed before timing) are replayed

* by the same token class run plainly -- ``load_builtin("token", sandboxed=False)`` on
  ``Executor(metered=False)`` -- on the decoded commands: no crypto, no nonces, no VM,
  no gas. This is the baseline; and in the WebAssembly VM (``load_builtin("token")`` on
  ``Executor()``), still without crypto;
* by ``WorkerRuntime.process_block`` in this process (no enclave IPC): decrypt, decode,
  verify the sender's signature, check the nonce, execute in the VM, state root, seal
  the state and every command's result;
* through a real sim enclave child process (``SimBackend``), the contract key released
  to it by a gatekeeper core that verified its quote, exactly as on a devnet: each block
  is one ``process_block`` ECALL.

Every variant starts from the same state (token deployed, senders minted) and must end
with the same balances (the sim enclave: with the same state root as the in-process
runtime, which holds the same contract key), every command applied.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    console,
    fmt,
    fmt_ratio,
    is_smoke,
    print_table,
    ratio,
    run_cli,
    write_results,
)
from sealbridge.contracts.catalog import get_code_hash, get_source, load_builtin
from sealbridge.contracts.executor import Executor
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.runtime.ecalls import (
    MAKE_KEY_REQUEST,
    WORKER_INSTALL_CONTRACT,
    WORKER_PROCESS_BLOCK,
    WORKER_STATUS,
    MakeKeyRequest,
)
from sealbridge.runtime.enclave import UnverifiedWorkerProgram
from sealbridge.runtime.envelope import seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    InboxCommand,
    InstallContract,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.ecall import NOTHING, call
from sealbridge.tee.enclave import EnclaveContext, compute_report_data
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform, load_sim_platform_key
from sealbridge.tee.sim import SimBackend

NAME = "runtime_replay"
# the labelled unverified program: this benchmark replays blocks without a chain view
WORKER_PROGRAM = "sealbridge.runtime.enclave:UnverifiedWorkerProgram"
CONTRACT_ID = bytes([0x5B]) * 32
CHAIN_ID = 31337
REGISTRY = "0x" + "22" * 20
MINT = 10**12
WORKERS = [bytes([0x44]) * 32]  # the executor set named in InstallContract

Plain = tuple[bytes, str, dict[str, Any]]  # (sender, method, args)


class Workload:
    """Pre-built blocks: setup (initialize + mints) then transfer blocks."""

    def __init__(self, contract_public_key: bytes, blocks: int, per_block: int) -> None:
        self.owner_seed, self.owner = ed25519_keypair(os.urandom(32))
        self.senders = [ed25519_keypair(os.urandom(32)) for _ in range(per_block)]
        self.receivers = [ed25519_keypair(os.urandom(32))[1] for _ in range(8)]
        self.public_key = contract_public_key
        nonces: dict[bytes, int] = {}

        def seal(seed: bytes, sender: bytes, method: str, args: dict[str, Any]) -> bytes:
            nonces[sender] = nonces.get(sender, 0) + 1
            return seal_command(
                contract_id=CONTRACT_ID,
                contract_public_key=contract_public_key,
                sender_private_key=seed,
                nonce=nonces[sender],
                method=method,
                args=args,
            )

        deploy = seal(
            self.owner_seed, self.owner, DEPLOY_METHOD, {"code": get_source("token"), "init": {}}
        )
        setup_plain: list[Plain] = [
            (self.owner, "mint", {"to": pub, "amount": MINT}) for _, pub in self.senders
        ]
        self.setup_plain = setup_plain
        self.setup = _block(
            1, [deploy, *(seal(self.owner_seed, s, m, a) for s, m, a in setup_plain)]
        )
        self.blocks: list[BlockInput] = []
        self.plain: list[list[Plain]] = []
        for b in range(blocks):
            plain_block: list[Plain] = []
            ciphertexts = []
            for i, (seed, pub) in enumerate(self.senders):
                args = {"to": self.receivers[(b + i) % len(self.receivers)], "amount": 1 + i % 7}
                plain_block.append((pub, "transfer", args))
                ciphertexts.append(seal(seed, pub, "transfer", args))
            self.plain.append(plain_block)
            self.blocks.append(_block(2 + b, ciphertexts))
        self.commands = blocks * per_block


def _block(number: int, ciphertexts: list[bytes]) -> BlockInput:
    return BlockInput(
        number=number,
        block_hash=number.to_bytes(32, "big"),
        commands=[
            InboxCommand(
                contract_id=CONTRACT_ID,
                seq=number * 1000 + i,
                tx_index=i,
                log_index=0,
                ciphertext=c,
            )
            for i, c in enumerate(ciphertexts)
        ],
    )


# --------------------------------------------------------------------------- variants


def run_executor(work: Workload, *, sandboxed: bool) -> dict[str, int]:
    """The token class on the executor, without crypto: plain (the baseline) or in the VM."""
    executor = Executor(metered=sandboxed)
    executor.add(CONTRACT_ID, load_builtin("token", sandboxed=sandboxed), deployer=work.owner)
    outcomes = [
        executor.run_command(
            CONTRACT_ID, "setup", {}, caller=work.owner, block_number=1, seed=b"", is_init=True
        )
    ]
    for sender, method, args in work.setup_plain:
        outcomes.append(
            executor.run_command(CONTRACT_ID, method, args, caller=sender, block_number=1, seed=b"")
        )
    _check_outcomes(outcomes, "setup")
    run = executor.run_command
    outcomes = []
    start = time.perf_counter()
    for number, block in enumerate(work.plain, start=2):
        for sender, method, args in block:
            outcomes.append(
                run(CONTRACT_ID, method, args, caller=sender, block_number=number, seed=b"")
            )
    _record(start)
    _check_outcomes(outcomes, "transfer")
    return _balances(executor.contracts[CONTRACT_ID].storage)


def _check_outcomes(outcomes: list[Any], what: str) -> None:
    bad = [f"{o.error}: {o.message}" for o in outcomes if not o.ok]
    if bad:
        raise AssertionError(f"{len(bad)} {what} commands failed, first: {bad[0]}")


def _balances(storage: Any) -> dict[str, int]:
    return {k.hex(): v for k, v in storage.maps.get("balances", {}).items()}


_LAST: list[float] = []


def _record(start: float) -> None:
    _LAST.append(time.perf_counter() - start)


class Keys:
    """A platform key and a contract key, released to a worker enclave after its quote
    verified under the devnet policy (what a gatekeeper committee checks before it
    releases; the committee's threshold protocol itself is benchmarked in bench_keys)."""

    def __init__(self, directory: Path) -> None:
        self.platform_file = directory / "platform.key"
        platform_pub = create_sim_platform(self.platform_file)
        self.policy = devnet_policy(platform_pub, [compute_sim_measurement(WORKER_PROGRAM)])
        self.contract_key = os.urandom(32)
        keys = compute_contract_keys(CONTRACT_ID, self.contract_key)
        self.contract_public_key = keys.command_public_key

    def install_request(self, request: KeyRequest, deployer: bytes) -> InstallContract:
        verify_quote(
            request.quote,
            policy=self.policy,
            now=int(time.time()),
            expected_report_data=compute_report_data(request.node),
        )
        wrapped = ecies.encrypt_to(
            request.node.encryption_key,
            self.contract_key,
            key_release_aad(CONTRACT_ID, request.node.identity_key),
        )
        return InstallContract(
            contract_id=CONTRACT_ID,
            code_hash=get_code_hash("token"),
            contract_public_key=self.contract_public_key,
            wrapped_key=wrapped,
            gatekeeper_key=bytes(32),
            deployer_commitment=compute_deployer_commitment(CONTRACT_ID, deployer),
            workers=WORKERS,
        )


def run_in_process(work: Workload, keys: Keys, roots: list[bytes]) -> dict[str, int]:
    ctx = EnclaveContext(
        program=WORKER_PROGRAM,
        measurement=compute_sim_measurement(WORKER_PROGRAM),
        platform_private_key=load_sim_platform_key(keys.platform_file),
    )
    program = UnverifiedWorkerProgram(
        ctx
    )  # used only to make a quoted key request, as a host would
    request = program.make_key_request(MakeKeyRequest(contract_id=CONTRACT_ID))
    runtime: WorkerRuntime = program.runtime
    runtime.install_contract(keys.install_request(request, work.owner))
    _check_ok(runtime.process_block(work.setup).receipts)
    outputs = []
    start = time.perf_counter()
    for block in work.blocks:
        outputs.append(runtime.process_block(block))
    _record(start)
    for out in outputs:
        _check_ok(out.receipts)
    contract = runtime.get_contract(CONTRACT_ID)
    if contract.commands_applied != len(work.setup.commands) + work.commands:
        raise AssertionError("the runtime did not apply every command")
    roots.append(contract.state_root)
    return _balances(contract.storage)


def run_sim_enclave(work: Workload, keys: Keys, roots: list[bytes]) -> dict[str, int]:
    handle = SimBackend().launch(WORKER_PROGRAM, platform_key_file=keys.platform_file)
    try:
        request = call(handle, MAKE_KEY_REQUEST, MakeKeyRequest(contract_id=CONTRACT_ID))
        call(handle, WORKER_INSTALL_CONTRACT, keys.install_request(request, work.owner))
        _check_ok(call(handle, WORKER_PROCESS_BLOCK, work.setup).receipts)
        outputs = []
        start = time.perf_counter()
        for block in work.blocks:
            outputs.append(call(handle, WORKER_PROCESS_BLOCK, block))
        _record(start)
        status = call(handle, WORKER_STATUS, NOTHING).contracts
    finally:
        handle.close()
    for out in outputs:
        _check_ok(out.receipts)
    if status[0].commands_applied != len(work.setup.commands) + work.commands:
        raise AssertionError("the enclave did not apply every command")
    if roots and status[0].state_root != roots[0]:
        raise AssertionError("the enclave ended with another state root than in process")
    return {}


def _check_ok(receipts: list[Any]) -> None:
    """Every receipt applied (the contract's own outcome is sealed for its sender; the
    plain variants' identical balances show that every transfer succeeded)."""
    bad = [r.status for r in receipts if r.status != "applied"]
    if bad:
        raise AssertionError(f"{len(bad)} commands refused, first: {bad[0]}")


def measure(fn: Callable[[], dict[str, int]], repeats: int) -> tuple[list[float], dict[str, int]]:
    _LAST.clear()
    result: dict[str, int] = {}
    for _ in range(repeats):
        result = fn()
    return list(_LAST), result


def run(quick: bool = False) -> dict[str, Any]:
    blocks = 20 if quick else 100
    per_block = 50
    repeats = 2 if quick else 3
    if is_smoke():
        blocks, per_block, repeats = 2, 10, 1
    console.rule(f"[bold]benchmark 2: runtime replay ({blocks} blocks × {per_block} commands)")
    with tempfile.TemporaryDirectory(prefix="sealbridge-bench-runtime-") as directory:
        keys = Keys(Path(directory))
        t0 = time.perf_counter()
        work = Workload(keys.contract_public_key, blocks, per_block)
        build_s = time.perf_counter() - t0
        console.print(f"[dim]  built and sealed {work.commands} commands in {build_s:.2f}s[/]")
        roots: list[bytes] = []
        variants: list[tuple[str, str, Callable[[], dict[str, int]]]] = [
            (
                "plain",
                "token class on Executor(metered=False) (baseline)",
                lambda: run_executor(work, sandboxed=False),
            ),
            (
                "wasm",
                "token in the WebAssembly VM on Executor(), no crypto",
                lambda: run_executor(work, sandboxed=True),
            ),
            (
                "in_process",
                "WorkerRuntime.process_block, in process",
                lambda: run_in_process(work, keys, roots),
            ),
            (
                "sim_enclave",
                "process_block ECALL, sim enclave process",
                lambda: run_sim_enclave(work, keys, roots),
            ),
        ]
        results: dict[str, Any] = {}
        reference: dict[str, int] | None = None
        for key, label, fn in variants:
            times, balances = measure(fn, repeats)
            if balances:
                if reference is None:
                    reference = balances
                elif balances != reference:
                    raise AssertionError(f"{key} ended with other balances than the baseline")
            best = min(times)
            results[key] = {
                "label": label,
                "runs_s": times,
                "best_s": best,
                "median_s": statistics.median(times),
                "commands_per_s": work.commands / best,
                "us_per_command": best / work.commands * 1e6,
                "ms_per_block": best / blocks * 1e3,
            }
    base = results["plain"]["commands_per_s"]
    rows = []
    for key, _label, _fn in variants:
        r = results[key]
        r["slowdown_vs_baseline"] = ratio(base, r["commands_per_s"])
        rows.append(
            [
                r["label"],
                fmt(r["commands_per_s"], 0),
                fmt(r["us_per_command"], 2),
                fmt(r["ms_per_block"], 3),
                fmt_ratio(r["slowdown_vs_baseline"]),
            ]
        )
    print_table(
        f"runtime replay: {blocks} blocks × {per_block} encrypted transfers "
        f"(best of {repeats} runs)",
        ["variant", "commands/s", "µs/command", "ms/block", "slowdown vs baseline"],
        rows,
    )
    payload: dict[str, Any] = {
        "quick": quick,
        "config": {
            "blocks": blocks,
            "commands_per_block": per_block,
            "commands": blocks * per_block,
            "senders": per_block,
            "repeats": repeats,
            "statistic": "best of repeats",
            "build_and_seal_s": build_s,
        },
        "variants": results,
    }
    payload["results_file"] = str(write_results(NAME, payload))
    return payload


if __name__ == "__main__":
    run_cli(run, __doc__)
