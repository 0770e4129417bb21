"""Workers with their real enclaves in the simulated devnet: the catch-up, follow and
submission host cores, unchanged, in front of WorkerProgram enclaves that verify every
block of a chain in the real formats and run the contracts (tokens) in their sandbox,
with contract keys released by the gatekeepers' committee from its simulated DKG."""

from __future__ import annotations

import msgspec

from sealbridge.chain.ledger import OutputSubmission
from sealbridge.core.effects import ChainRead, SubmitTx, TxOutcome
from sealbridge.runtime.chainview import COMMAND_TOPIC
from sealbridge.sim.devnet import CHAIN, SimDevnet, SimDevnetSpec

SPEC = SimDevnetSpec(
    storage_nodes=3,
    gatekeepers=3,
    workers=3,
    contracts=2,
    worker_enclaves=True,
    checkpoint_interval=10,
)
DEPLOYED = 30.0  # the gatekeepers' era is active by then, and the contracts deployed


def _devnet(seed: object, commands: int = 5, every: float = 3.0) -> SimDevnet:
    devnet = SimDevnet(seed=seed, spec=SPEC)
    devnet.elect(sorted(devnet.gatekeepers), 2)
    devnet.run(until=DEPLOYED)
    devnet.deploy_contracts()
    for i in range(commands):  # the deployer mints, alternating between the two tokens
        devnet.sim.call_at(DEPLOYED + 5.0 + every * i, lambda i=i: devnet.send_command(i % 2))
    return devnet


def test_every_enclave_runs_every_command_and_the_ledger_keeps_their_roots() -> None:
    devnet = _devnet(seed=3)
    devnet.run(until=DEPLOYED + 60.0)
    statuses = {a: w.get_status() for a, w in devnet.workers.items()}
    by_contract: dict[bytes, set[tuple[bytes, int]]] = {}
    for status in statuses.values():
        for contract in status:
            by_contract.setdefault(contract.contract_id, set()).add(
                (contract.state_root, contract.commands_applied)
            )
    # the deploy and the mints of each token: 1 + 3 and 1 + 2 commands, one state each
    counts = {cid: {n for _, n in states} for cid, states in by_contract.items()}
    assert sorted(counts.values(), key=min) == [{3}, {4}]
    assert all(len(states) == 1 for states in by_contract.values())
    # the ledger accepted outputs with those roots, ending at the chain's own blocks
    ledger = devnet.ledger
    for cid, states in by_contract.items():
        ((root, count),) = states
        assert ledger.get_accepted(cid).state_root == root
        assert ledger.get_accepted(cid).commands_applied == count
        assert ledger.get_accepted(cid).end >= DEPLOYED + 40
    assert ledger.accepts >= 10
    assert min(ledger.checkpoints.values()) >= DEPLOYED  # confirmed by the storage nodes
    assert devnet.evm is not None
    last_command = max(
        n
        for n, block in enumerate(devnet.evm.blocks)
        if any(log.topics[:1] == [COMMAND_TOPIC] for r in block.receipts for log in r.logs)
    )
    for worker in devnet.workers.values():
        assert worker.stopped == "" and worker.follow.failure is None
        assert worker.catchup.started and worker.catchup.failure is None
        assert sorted(worker.installed) == sorted(devnet.contract_ids)
        # the peers vouched for every block a state changed in: nothing is held back
        assert worker.follow.held == 0
        assert worker.follow.witnessed >= last_command
    # every refused output lost the race to the same range; none was malformed
    reasons = {r.data["reason"] for r in devnet.sim.get_reports("outputs_refused")}
    assert reasons <= {"range does not start at the last accepted end"}
    # the publishing gatekeepers published both keys (each with a peer's partial), and
    # each worker's keys came from the gatekeepers: t = 2 of 3 partials per contract
    assert {r.kind for r in devnet.sim.reports} >= {"key_published"}
    assert len(devnet.sim.get_reports("key_published")) == 2
    assert sum(g.released for g in devnet.gatekeepers.values()) >= 2 * 2 * 3 + 2
    assert all(g.refused == 0 for g in devnet.gatekeepers.values())


def test_the_ledger_refuses_an_output_whose_end_hash_is_not_the_chains() -> None:
    devnet = _devnet(seed="end hash", commands=1)
    sent: list[OutputSubmission] = []

    def keep(_time: float, _sender: int, _receiver: int, message: object) -> object:
        if isinstance(message, SubmitTx) and isinstance(message.tx, OutputSubmission):
            sent.append(message.tx)
        return message

    devnet.sim.add_filter(keep)
    devnet.run(until=DEPLOYED + 20.0)
    honest = sent[-1]
    worker_id = honest.node_id
    forged = msgspec.structs.replace(
        honest, end_hash=b"\x13" * 32, starts=[0] * len(honest.contract_ids)
    )
    ledger = devnet.ledger
    before = dict(ledger.accepted)
    reason = ledger.apply(worker_id, forged, devnet.chain.number, lambda *_: True)
    assert reason in {
        "end hash is not the chain's block hash",
        "range does not start at the last accepted end",
    }
    fresh = msgspec.structs.replace(
        forged, starts=[ledger.get_accepted(c).end for c in forged.contract_ids]
    )
    end = devnet.chain.number - 1
    fresh = msgspec.structs.replace(fresh, end=end)
    assert ledger.apply(worker_id, fresh, devnet.chain.number, lambda *_: True) == (
        "end hash is not the chain's block hash"
    )
    assert ledger.accepted == before


def test_a_host_that_alters_a_command_gets_its_enclave_to_refuse_and_stops() -> None:
    devnet = _devnet(seed="forger")
    forger = min(devnet.workers)

    def alter(_time: float, _sender: int, receiver: int, message: object) -> object:
        """The forger's RPC node flips a byte of every command it hands over."""
        if receiver != forger or not isinstance(message, ChainRead):
            return message
        if not isinstance(message.value, list):
            return message
        blocks = []
        for block in message.value:
            receipts = []
            for receipt in block.receipts:
                logs = [
                    msgspec.structs.replace(log, data=log.data[:-1] + b"\xff") if log.data else log
                    for log in receipt.logs
                ]
                receipts.append(msgspec.structs.replace(receipt, logs=logs))
            blocks.append(msgspec.structs.replace(block, receipts=receipts))
        return ChainRead(message.tag, blocks)

    devnet.sim.add_filter(alter)
    devnet.run(until=DEPLOYED + 40.0)
    stopped = devnet.workers[forger]
    assert "receipts root" in stopped.stopped
    assert stopped.installed == {}  # it never verified a deployment: nothing to run
    assert devnet.ledger.accepted_by.get(stopped.worker_id, 0) == 0
    others = [w for a, w in devnet.workers.items() if a != forger]
    for worker in others:
        assert worker.stopped == ""
        assert {s.commands_applied for s in worker.get_status()} == {3, 4}
    assert min(v.end for v in devnet.ledger.accepted.values()) >= DEPLOYED + 25


def test_the_same_seed_gives_the_same_trace_with_enclave_workers() -> None:
    def run() -> str:
        devnet = _devnet(seed=21, commands=3)
        devnet.run(until=DEPLOYED + 20.0)
        return devnet.sim.trace_digest()

    assert run() == run()


def test_a_restarted_worker_resumes_from_its_bundle_and_a_wiped_one_recovers() -> None:
    """Two workers crash; one comes back with its disk (it resumes from its state
    bundle), the other with an empty disk (it recovers from the newest checkpoint the
    storage nodes hold, checked against the ledger's record). Both catch up, and every
    enclave ends with the same state."""
    devnet = _devnet(seed="restart", commands=12, every=4.0)
    resumed, recovered = sorted(devnet.workers)[:2]
    devnet.sim.crash(resumed, at=DEPLOYED + 20.0)
    devnet.restart_worker(resumed, at=DEPLOYED + 30.0)
    devnet.sim.crash(recovered, at=DEPLOYED + 22.0)
    devnet.restart_worker(recovered, at=DEPLOYED + 40.0, wipe=True)
    devnet.run(until=DEPLOYED + 90.0)
    reports = {(r.node_id, r.kind) for r in devnet.sim.reports}
    assert (resumed, "catchup_resuming") in reports
    assert (resumed, "catchup_recovered") not in reports
    assert (recovered, "catchup_recovered") in reports
    assert devnet.workers[recovered].catchup.recovered_from is not None
    states = set()
    for worker in devnet.workers.values():
        assert worker.stopped == "" and worker.catchup.started
        states.add(
            tuple(
                sorted(
                    (s.contract_id, s.state_root, s.commands_applied) for s in worker.get_status()
                )
            )
        )
    assert len(states) == 1
    ((_, _, first), (_, _, second)) = states.pop()
    assert sorted([first, second]) == [7, 7]  # a deploy and six mints each


def test_a_worker_whose_chain_answers_are_lost_for_a_while_catches_up_after() -> None:
    """For 30 seconds the chain's answers to one worker's block reads and transactions are
    lost (its height polls still come through, so it keeps asking for the blocks); each
    effect it waits on is answered with a failure after the answer timeout (as the
    network driver answers a transport failure), it tries again, and once the answers
    come through again the worker catches up with the others."""
    devnet = _devnet(seed="lost answers", commands=8)
    cut = min(devnet.workers)
    lost = (DEPLOYED + 12.0, DEPLOYED + 42.0)

    def drop(now: float, sender: int, receiver: int, message: object) -> object:
        if sender != CHAIN or receiver != cut or not lost[0] <= now < lost[1]:
            return message
        if isinstance(message, TxOutcome):
            return None
        if isinstance(message, ChainRead) and isinstance(message.value, list):
            return None  # the blocks' evidence
        return message

    devnet.sim.add_filter(drop)
    devnet.run(until=DEPLOYED + 80.0)
    assert devnet.sim.answers_timed_out >= 1
    states = set()
    for worker in devnet.workers.values():
        assert worker.stopped == "" and worker.catchup.started
        states.add(tuple(sorted((s.contract_id, s.state_root) for s in worker.get_status())))
    assert len(states) == 1
    assert devnet.workers[cut].catchup.last_delivered >= DEPLOYED + 70
