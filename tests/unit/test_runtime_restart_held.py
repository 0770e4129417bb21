"""A restarted enclave cannot be steered by its anchor (issue 14; found by attacking the
held messages): held messages left over by a full block run only in a block after the
contract's height, and an install may not resume beyond the verified chain."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sealbridge.runtime import errors
from sealbridge.runtime import worker as worker_module
from sealbridge.runtime.messages import DEPLOY_METHOD
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder, as_input
from tests.unit.test_runtime_chainview import (
    ALICE,
    EXECUTORS,
    Contract,
    ask,
    feed,
    new_worker,
    plain_block,
)
from tests.unit.test_runtime_install_facts import deployed_log, published_log
from tests.unit.test_runtime_interop import PINGER

replace = msgspec.structs.replace

TIMED = b"""
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, query

class Timed(Contract):
    seen = Value(list, default=[])

    @command
    def on_ping(self, n: int) -> int:
        s = self.seen
        s.append([n, self.env.block_number])
        self.seen = s
        return n

    @query(readers=ANYONE)
    def state(self) -> list:
        return self.seen
"""


def test_a_restart_anchored_below_the_sealed_height_runs_held_messages_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages 2 and 3 are held; 1 arrives in block H, where the block's budget is used
    up before 2 runs. A host restarts the enclave from the state sealed at H but anchors
    it at an earlier real block: before the fix the held messages ran in the first block
    after that anchor (a block number and seed the host chose) and the contract's height
    went back; now they run at H + 1, as on the worker that never stopped."""
    chain = ChainBuilder()
    ponger = Contract(2, code=TIMED)
    pinger = Contract(1, code=PINGER, workers=[b"\x01" * 32])
    source = new_worker(pinger)  # the pinger's own worker (unverified mode)
    deploy = pinger.command(
        ALICE, DEPLOY_METHOD, {"code": PINGER, "init": {"target": ponger.contract_id}}
    )
    source.process_block(plain_block(1, (pinger, deploy), directory=[ponger.entry]))
    out = source.process_block(
        plain_block(2, (pinger, pinger.command(ALICE, "ping", {"times": 3})))
    )
    m1, m2, m3 = [m.ciphertext for m in out.messages]

    worker = WorkerRuntime(EXECUTORS[0])
    worker.configure_chain(chain.config())
    feed(
        worker, chain.next([deployed_log(ponger)], [published_log(ponger)], [published_log(pinger)])
    )
    worker.install_contract(ponger.install_request(worker))
    feed(worker, chain.next([chain.command(ponger.contract_id, ponger.deploy())]))
    anchor = chain.number
    feed(
        worker,
        chain.next(
            [chain.command(ponger.contract_id, m2)], [chain.command(ponger.contract_id, m3)]
        ),
    )
    feed(worker, chain.next())
    original = worker_module.WorkerRuntime._is_over_budget
    checks = {"left": 1}

    def budget(self: Any, *args: Any) -> bool:
        checks["left"] -= 1
        return checks["left"] < 0 or original(self, *args)

    monkeypatch.setattr(worker_module.WorkerRuntime, "_is_over_budget", budget)
    out = feed(worker, chain.next([chain.command(ponger.contract_id, m1)]))
    monkeypatch.setattr(worker_module.WorkerRuntime, "_is_over_budget", original)
    height = chain.number
    (sealed,) = [c.sealed_state for c in out.contracts]
    feed(worker, chain.next())
    honest = worker.get_contract(ponger.contract_id)
    assert ask(worker, ponger, "state", {}) == [[1, height], [2, height + 1], [3, height + 1]]

    restarted = WorkerRuntime(EXECUTORS[0])
    restarted.configure_chain(
        replace(chain.config(), anchor_number=anchor, anchor_hash=chain.hashes[anchor])
    )
    request = replace(ponger.install_request(restarted), sealed_state=sealed)
    with pytest.raises(errors.InstallFactsMismatch, match="after the block"):
        restarted.install_contract(replace(request, resume_height=height + 1))
    restarted.install_contract(request)  # sealed at `height`: checked when reached
    assert restarted.claims == {ponger.contract_id: (height, chain.hashes[height])}
    for number in range(anchor + 1, height + 2):
        restarted.process_block(as_input(chain.blocks[number], directory=[pinger.entry]))
        assert restarted.get_contract(ponger.contract_id).height >= height  # never back
    assert ask(restarted, ponger, "state", {}) == ask(worker, ponger, "state", {})
    assert restarted.get_contract(ponger.contract_id).state_root == honest.state_root


def test_the_held_set_of_a_contract_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_runtime_interop import PONGER, Chain, install, make_worker

    monkeypatch.setattr(worker_module, "MAX_HELD_MESSAGES", 2)
    w1, w2 = make_worker(), make_worker()
    pinger = install(w1, 1, PINGER, [b"\x01" * 32])
    ponger = install(w2, 2, PONGER, [b"\x02" * 32])
    chain = Chain()
    w1.process_block(
        chain.block(
            [
                (
                    pinger.contract_id,
                    pinger.command(
                        DEPLOY_METHOD, {"code": PINGER, "init": {"target": ponger.contract_id}}
                    ),
                )
            ],
            [ponger.entry],
        )
    )
    w2.process_block(
        chain.block(
            [(ponger.contract_id, ponger.command(DEPLOY_METHOD, {"code": PONGER, "init": {}}))],
            [pinger.entry],
        )
    )
    out = w1.process_block(
        chain.block([(pinger.contract_id, pinger.command("ping", {"times": 4}))])
    )
    sent = [(ponger.contract_id, m.ciphertext) for m in out.messages]
    out = w2.process_block(chain.block(sent[1:]))
    assert [r.status for r in out.receipts] == ["held", "held", "message_too_early"]
    out = w2.process_block(chain.block([sent[0], sent[3]]))
    assert [r.status for r in out.receipts] == ["applied", "applied"]
