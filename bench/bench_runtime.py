"""Benchmark 2: the worker runtime alone, replaying pre-built blocks of encrypted transfers.

The same ``blocks × per_block`` encrypted transfers (built and sealed before timing) are
replayed

* by the plain token transition -- ``token.execute`` + ``LiveToken.apply`` (what the
  runtime itself uses) and ``token.execute`` + the pure ``token.apply`` -- on the decoded
  commands: no crypto, no nonces, no sandbox. This is the baseline;
* by ``WorkerRuntime.process_block`` in this process (no enclave IPC): decrypt, decode,
  verify the sender's signature, check the nonce, execute, state root, seal the state;
* through a real sim enclave child process (``SimBackend``), the contract key released
  to it by a gatekeeper core that verified its quote, exactly as on a devnet: each block
  is one ``process_block`` ECALL (and, as the worker host does, one ``sign_output``).

Every variant starts from the same state (owner initialised, senders minted) and must end
with the same balances.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import console, fmt, fmt_ratio, print_table, ratio, run_cli, write_results
from sealbridge.contracts import token
from sealbridge.contracts.catalog import get_code_hash
from sealbridge.core.encoding import decode, encode
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.keyservice.gatekeeper import Gatekeeper
from sealbridge.keyservice.messages import ChainFacts, KeyRequest, PublishKeyRequest
from sealbridge.runtime.ecalls import MakeKeyRequest, WorkerEnclaveClient
from sealbridge.runtime.enclave import WorkerProgram
from sealbridge.runtime.envelope import seal_command
from sealbridge.runtime.messages import BlockInput, InboxCommand, InstallContract, SignOutput
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform, load_sim_platform_key
from sealbridge.tee.sim import SimBackend

NAME = "runtime_replay"
WORKER_PROGRAM = "sealbridge.runtime.enclave:WorkerProgram"
GATEKEEPER_PROGRAM = "sealbridge.keyservice.enclave:GatekeeperProgram"
CONTRACT_ID = bytes([0x5B]) * 32
CHAIN_ID = 31337
REGISTRY = "0x" + "22" * 20
OUTPUTS = bytes([0x33]) * 20
MINT = 10**12
FACTS = ChainFacts(worker_active=True, worker_assigned=True, key_published=True)

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

        setup_plain: list[Plain] = [(self.owner, "initialize", {})]
        setup_plain += [
            (self.owner, "mint", {"to": pub, "amount": MINT}) for _, pub in self.senders
        ]
        self.setup_plain = setup_plain
        self.setup = _block(1, [seal(self.owner_seed, s, m, a) for s, m, a in setup_plain])
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
        contract_id=CONTRACT_ID,
        number=number,
        block_hash=number.to_bytes(32, "big"),
        commands=[
            InboxCommand(seq=number * 1000 + i, tx_index=i, log_index=0, ciphertext=c)
            for i, c in enumerate(ciphertexts)
        ],
    )


# --------------------------------------------------------------------------- variants


def run_plain_live(work: Workload) -> dict[str, int]:
    ledger = token.LiveToken()
    for sender, method, args in work.setup_plain:
        ledger.apply(token.execute(ledger, method, dict(args), token.ExecEnv(1, sender)))
    start = time.perf_counter()
    for number, block in enumerate(work.plain, start=2):
        for sender, method, args in block:
            env = token.ExecEnv(block_number=number, caller=sender)
            ledger.apply(token.execute(ledger, method, dict(args), env))
    _record(start)
    return dict(ledger.balances)


def run_plain_pure(work: Workload) -> dict[str, int]:
    state = token.TokenState()
    for sender, method, args in work.setup_plain:
        state = token.apply(
            state, token.execute(state, method, dict(args), token.ExecEnv(1, sender))
        )
    start = time.perf_counter()
    for number, block in enumerate(work.plain, start=2):
        for sender, method, args in block:
            env = token.ExecEnv(block_number=number, caller=sender)
            state = token.apply(state, token.execute(state, method, dict(args), env))
    _record(start)
    return dict(state.balances)


_LAST: list[float] = []


def _record(start: float) -> None:
    _LAST.append(time.perf_counter() - start)


class Keys:
    """A platform key, a gatekeeper core with the devnet policy, a published contract key."""

    def __init__(self, directory: Path) -> None:
        self.platform_file = directory / "platform.key"
        platform_pub = create_sim_platform(self.platform_file)
        self.gatekeeper = Gatekeeper(
            root_key=os.urandom(32),
            enclave=EnclaveContext(
                program=GATEKEEPER_PROGRAM,
                measurement=compute_sim_measurement(GATEKEEPER_PROGRAM),
                platform_private_key=load_sim_platform_key(self.platform_file),
            ),
            policy=devnet_policy(platform_pub, [compute_sim_measurement(WORKER_PROGRAM)]),
        )
        published = self.gatekeeper.publish_contract_key(
            PublishKeyRequest(
                contract_id=CONTRACT_ID, chain_id=CHAIN_ID, contract_registry_address=REGISTRY
            )
        )
        self.contract_public_key = published.contract_public_key

    def install_request(self, request: KeyRequest) -> InstallContract:
        release = self.gatekeeper.release_contract_key(request, FACTS, int(time.time()))
        return InstallContract(
            contract_id=CONTRACT_ID,
            code_hash=get_code_hash("token"),
            contract_public_key=self.contract_public_key,
            wrapped_key=release.wrapped_key,
            gatekeeper_key=release.gatekeeper_key,
        )


def run_in_process(work: Workload, keys: Keys) -> dict[str, int]:
    from sealbridge.keyservice.messages import KeyRequest

    ctx = EnclaveContext(
        program=WORKER_PROGRAM,
        measurement=compute_sim_measurement(WORKER_PROGRAM),
        platform_private_key=load_sim_platform_key(keys.platform_file),
    )
    program = WorkerProgram(ctx)  # used only to make a quoted key request, as a host would
    request = decode(
        program.make_key_request(encode(MakeKeyRequest(contract_id=CONTRACT_ID))), KeyRequest
    )
    runtime: WorkerRuntime = program.runtime
    runtime.install_contract(keys.install_request(request))
    _check_ok(runtime.process_block(work.setup).receipts)
    start = time.perf_counter()
    for block in work.blocks:
        out = runtime.process_block(block)
        if not all(r.ok for r in out.receipts):
            raise AssertionError(f"refused commands in block {block.number}")
    _record(start)
    return dict(runtime.get_contract(CONTRACT_ID).ledger.balances)


def run_sim_enclave(work: Workload, keys: Keys, *, sign: bool) -> dict[str, int]:
    handle = SimBackend().launch(WORKER_PROGRAM, platform_key_file=keys.platform_file)
    try:
        calls = WorkerEnclaveClient(handle)
        calls.install_contract(keys.install_request(calls.make_key_request(CONTRACT_ID)))
        _check_ok(calls.process_block(work.setup).receipts)
        start = time.perf_counter()
        for block in work.blocks:
            out = calls.process_block(block)
            if sign:
                calls.sign_output(
                    SignOutput(
                        contract_id=CONTRACT_ID,
                        number=block.number,
                        chain_id=CHAIN_ID,
                        outputs_address=OUTPUTS,
                    )
                )
            if not all(r.ok for r in out.receipts):
                raise AssertionError(f"refused commands in block {block.number}")
        _record(start)
        status = calls.get_status()
    finally:
        handle.close()
    if status[0].commands_applied != len(work.setup.commands) + work.commands:
        raise AssertionError("the enclave did not apply every command")
    return {}


def _check_ok(receipts: list[Any]) -> None:
    bad = [r.error for r in receipts if not r.ok]
    if bad:
        raise AssertionError(f"setup commands refused: {bad}")


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
    console.rule(f"[bold]benchmark 2: runtime replay ({blocks} blocks × {per_block} commands)")
    with tempfile.TemporaryDirectory(prefix="sealbridge-bench-runtime-") as directory:
        keys = Keys(Path(directory))
        t0 = time.perf_counter()
        work = Workload(keys.contract_public_key, blocks, per_block)
        build_s = time.perf_counter() - t0
        console.print(f"[dim]  built and sealed {work.commands} commands in {build_s:.2f}s[/]")
        variants: list[tuple[str, str, Callable[[], dict[str, int]]]] = [
            (
                "plain_live",
                "token.execute + LiveToken.apply (baseline)",
                lambda: run_plain_live(work),
            ),
            (
                "plain_pure",
                "token.execute + token.apply (pure, copies state)",
                lambda: run_plain_pure(work),
            ),
            (
                "in_process",
                "WorkerRuntime.process_block, in process",
                lambda: run_in_process(work, keys),
            ),
            (
                "sim_enclave",
                "process_block ECALL, sim enclave process",
                lambda: run_sim_enclave(work, keys, sign=False),
            ),
            (
                "sim_enclave_sign",
                "  + sign_output ECALL per block (as the host)",
                lambda: run_sim_enclave(work, keys, sign=True),
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
    base = results["plain_live"]["commands_per_s"]
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
