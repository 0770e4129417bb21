"""Executors on several threads share the process's VM without mixing up their calls.

A host function answers the innermost running guest call; if two threads' calls
interleaved, one contract's storage reads and writes would reach another's executor.
"""

from __future__ import annotations

import threading

from sealbridge.contracts.catalog import load_builtin
from sealbridge.contracts.executor import Executor

OWNER = b"o" * 32
MINTED = 10**9
TRANSFERS = 150


def run_token(index: int, failures: list[object]) -> None:
    try:
        check_token(index, failures)
    except Exception as exc:  # noqa: BLE001 -- a thread's crash is a failure too
        failures.append(exc)


def check_token(index: int, failures: list[object]) -> None:
    program = load_builtin("token")
    executor = Executor()
    cid = bytes([index + 1]) * 32
    executor.add(cid, program, deployer=OWNER)
    executor.run_command(cid, "setup", {}, caller=OWNER, block_number=1, seed=b"s", is_init=True)
    executor.run_command(
        cid, "mint", {"to": OWNER, "amount": MINTED}, caller=OWNER, block_number=1, seed=b"s"
    )
    for i in range(TRANSFERS):
        outcome = executor.run_command(
            cid,
            "transfer",
            {"to": b"x" * 32, "amount": 1},
            caller=OWNER,
            block_number=2 + i // 50,
            seed=b"s",
        )
        if not outcome.ok or outcome.value != MINTED - i - 1:
            failures.append(outcome)
    answer = executor.run_query(cid, "balance", {"owner": OWNER}, caller=OWNER, block_number=9)
    if answer.value != MINTED - TRANSFERS:
        failures.append(answer)


def test_threads_do_not_mix_their_calls() -> None:
    failures: list[object] = []
    threads = [threading.Thread(target=run_token, args=(k, failures)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
