"""The operator's double-spend report flow alone: what it reads, what it makes of the
readings, what it hands the matcher and what it submits, with hand-written answers
(some hostile). No processes, no chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from eth_account import Account

from sealbridge.chain.proofs import AccountProof
from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    ReadChain,
    Report,
    SubmitTx,
    TxOutcome,
)
from sealbridge.crypto.signing import to_checksum_address
from sealbridge.keyrelease.balances import BalanceProof
from sealbridge.keyrelease.errors import InvalidRequest, OperatorInputRefused
from sealbridge.keyrelease.matcher import ChainObservation, DoubleSpendReport, Penalty
from sealbridge.keyrelease.matcher_program import (
    MATCHER_REPORT,
    LossClaim,
    LossReport,
    OperatorTx,
    PenaltyOutcome,
)
from sealbridge.keyrelease.operator import (
    FEE_ASSET,
    MAX_OUTFLOWS,
    BalanceProofQuery,
    CallVault,
    ChunkBalanceQuery,
    GasFeesQuery,
    MatcherOperator,
    NonceQuery,
    OutflowsQuery,
    PoolBalanceQuery,
    PriceQuery,
    RawTx,
    ReportFlow,
    ReportStep,
    TokenRecipientsQuery,
    TxInputQuery,
)
from sealbridge.keyrelease.types import Chunk
from sealbridge.keyrelease.vault import ERC20_TRANSFER_SELECTOR, VAULT_CLAIM_LOSS, ChunkRef

ALICE = "0x" + "0a" * 20
MALLORY = "0x" + "0b" * 20
THIEF = to_checksum_address(b"\x0c" * 20)
OTHER = to_checksum_address(b"\x0d" * 20)
TOKEN = to_checksum_address(b"\x70" * 20)
POOL = "0x" + "50" * 20
OPERATOR_KEY = bytes(31) + b"\x0e"
OPERATOR = Account.from_key(OPERATOR_KEY).address
CHUNK = Chunk(
    chunk_id="vault:3",
    owner=MALLORY,
    vault="vault",
    asset="ETH@31337",
    address="0x" + "ad" * 20,
    amount=10**16,
    usd_e8=100 * 10**8,
)
CLAIM = LossClaim(chunk_id="vault:3", contract="swap:1/mallory", vault=b"\x01" * 32)
PROOF = BalanceProof(
    chunk_id="vault:3", number=9, proof=AccountProof(address=b"\xad" * 20, proof=[])
)
PENALTY = Penalty(
    owner=MALLORY,
    chunk_id="vault:3",
    victim=ALICE,
    slashed_usd_e8=200 * 10**8,
    compensation_usd_e8=100 * 10**8,
    uncovered_usd_e8=0,
    claim_id=bytes(32),
)


def sign_tx(nonce: int, data: bytes, key: bytes = OPERATOR_KEY, **changes: Any) -> bytes:
    """A pool transaction as the matcher signs it (its operator key; the fee chain)."""
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": nonce,
        "to": to_checksum_address(bytes.fromhex(POOL[2:])),
        "value": 0,
        "data": data,
        "gas": 200_000,
        "maxFeePerGas": 30,
        "maxPriorityFeePerGas": 2,
    } | changes
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


SLASH_TX = sign_tx(4, b"slash")
COMPENSATE_TX = sign_tx(5, b"compensate")
OUTCOME = PenaltyOutcome(
    penalty=PENALTY,
    slash_wei=(7 * 10**16).to_bytes(32, "big"),
    compensation_wei=(3 * 10**16).to_bytes(32, "big"),
    transactions=[SLASH_TX, COMPENSATE_TX],
)


def open_report(chunk: Chunk = CHUNK, token: str = "") -> ReportFlow:
    return MatcherOperator().open_report(
        victim="alice",
        victim_account=ALICE,
        chunk=chunk,
        chain_id=31337 if not token else 31338,
        token=token,
        since=5,
        fee_chain_id=31337,
        pool=POOL,
        operator=OPERATOR,
        names={MALLORY: "mallory"},
    )


def transfer_call(to: str) -> bytes:
    return ERC20_TRANSFER_SELECTOR + bytes(12) + bytes.fromhex(to[2:]) + (5).to_bytes(32, "big")


class Host:
    """Answers every question from ``reads`` (query type -> value, or a function of the
    query) and the enclaves' fixed answers; records what was asked."""

    def __init__(self, flow: ReportFlow, reads: dict[type, Any]) -> None:
        self.flow = flow
        self.reads = reads
        self.asked: list[Any] = []
        self.reports: list[Report] = []

    def answer(self, effect: Any) -> Any:
        if isinstance(effect, ReadChain):
            value = self.reads[type(effect.query)]
            return ChainRead(effect.tag, value(effect.query) if callable(value) else value)
        if isinstance(effect, CallVault):
            return EnclaveAnswer(effect.tag, CLAIM)
        if isinstance(effect, CallEnclave):
            return EnclaveAnswer(effect.tag, OUTCOME)
        return TxOutcome(effect.tag, "mined", 11)

    def run(self, until: Callable[[Any], bool] = lambda e: False) -> Any:
        """Run until the flow is done, or until the first question ``until`` picks (which
        is returned unanswered)."""
        pending = self.flow.start()
        while pending:
            effect = pending.pop(0)
            if isinstance(effect, Report):
                self.reports.append(effect)
                continue
            self.asked.append(effect)
            if until(effect):
                return effect
            pending += self.flow.process(self.answer(effect), 0.0)
        return None


def snapshot(flow: ReportFlow) -> Any:
    return flow.step, flow.get_awaiting(), flow.result, list(flow._recipients), flow._submitted


def unchanged(flow: ReportFlow, act: Callable[[], object], match: str | None = None) -> None:
    before = snapshot(flow)
    with pytest.raises(OperatorInputRefused, match=match):
        act()
    assert snapshot(flow) == before


NATIVE_READS: dict[type, Any] = {
    OutflowsQuery: [[THIEF, b"\x01" * 32], [OTHER, b"\x02" * 32]],
    BalanceProofQuery: PROOF,
    ChunkBalanceQuery: 0,
    GasFeesQuery: [30, 2],
    PriceQuery: 3_000 * 10**8,
    NonceQuery: 4,
    PoolBalanceQuery: 10**18,
}


def test_a_report_reads_the_chain_then_the_matcher_judges_and_its_transactions_go_out() -> None:
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    assert host.run() is None
    asked = [type(e.query if isinstance(e, ReadChain) else e).__name__ for e in host.asked]
    assert asked == [
        "OutflowsQuery",
        "BalanceProofQuery",
        "ChunkBalanceQuery",
        "GasFeesQuery",
        "CallVault",
        "PriceQuery",
        "NonceQuery",
        "CallEnclave",
        "SubmitTx",
        "SubmitTx",
        "PoolBalanceQuery",
    ]
    assert host.asked[0].query == OutflowsQuery(chain_id=31337, address=CHUNK.address, since=5)
    claim = host.asked[4]
    assert claim.party == "alice" and claim.ecall is VAULT_CLAIM_LOSS
    assert claim.request == ChunkRef(chunk_id="vault:3")
    assert host.asked[5].query == PriceQuery(asset=FEE_ASSET)
    assert host.asked[6].query == NonceQuery(chain_id=31337, account=OPERATOR)
    judge = host.asked[7]
    assert judge.ecall is MATCHER_REPORT
    assert judge.request == LossReport(
        report=DoubleSpendReport(chunk_id="vault:3", victim=ALICE),
        claim=CLAIM,
        observation=ChainObservation(
            balance=0,
            outflow_to=THIEF,
            outflow_tx=(b"\x01" * 32).hex(),
            address=CHUNK.address,
            outflows_to=[THIEF, OTHER],
        ),
        price_e8=3_000 * 10**8,
        tx=OperatorTx(
            chain_id=31337, pool=POOL, nonce=4, max_fee_per_gas=30, max_priority_fee_per_gas=2
        ),
        owner_account=MALLORY,
        balance=PROOF,
    )
    assert [e.tx for e in host.asked[8:10]] == [
        RawTx(chain_id=31337, raw=SLASH_TX),
        RawTx(chain_id=31337, raw=COMPENSATE_TX),
    ]
    (report,) = host.reports
    assert report == Report(
        "penalty",
        {
            "victim": "alice",
            "offender": "mallory",
            "chunk": "ault:3",
            "slashed_wei": 7 * 10**16,
            "compensation_wei": 3 * 10**16,
            "uncovered_usd": 0.0,
            "pool_wei": 10**18,
        },
    )
    assert flow.result == 3 * 10**16 and flow.step is ReportStep.DONE
    last = host.asked[-1]
    unchanged(flow, lambda: flow.process(ChainRead(last.tag, 1), 0.0), "no question")
    with pytest.raises(InvalidRequest, match="started already"):
        flow.start()


def test_a_token_chunk_names_the_recipients_of_its_transfers() -> None:
    """Value leaves a token chunk by a call to the token: the recipient is in the calldata
    of ``transfer``, and in the Transfer events for ``transferFrom``."""
    calls = {b"\x01" * 32: transfer_call(THIEF), b"\x03" * 32: b"\x23\xb8\x72\xdd" + bytes(96)}
    reads = dict(NATIVE_READS)
    reads[OutflowsQuery] = [[TOKEN, b"\x01" * 32], [OTHER, b"\x02" * 32], [TOKEN, b"\x03" * 32]]
    reads[TxInputQuery] = lambda query: calls[query.tx_hash]
    reads[TokenRecipientsQuery] = [OTHER]
    host = Host(open_report(token=TOKEN), reads)
    judge = host.run(lambda e: isinstance(e, CallEnclave))
    inputs = [
        e.query.tx_hash
        for e in host.asked
        if isinstance(e.query if isinstance(e, ReadChain) else None, TxInputQuery)
    ]
    assert inputs == [b"\x01" * 32, b"\x03" * 32]  # only the calls to the token
    assert judge.request.observation.outflows_to == [THIEF, OTHER, TOKEN, OTHER]
    assert judge.request.observation.outflow_to == THIEF


def test_the_observation_carries_at_most_max_outflows_recipients() -> None:
    reads = dict(NATIVE_READS)
    reads[OutflowsQuery] = [[OTHER, bytes([i % 256]) * 32] for i in range(MAX_OUTFLOWS + 5)]
    host = Host(open_report(), reads)
    judge = host.run(lambda e: isinstance(e, CallEnclave))
    assert len(judge.request.observation.outflows_to) == MAX_OUTFLOWS


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        (OutflowsQuery, "not a list"),
        (OutflowsQuery, [[THIEF]]),
        (OutflowsQuery, [[THIEF, "0xhash"]]),
        (BalanceProofQuery, msgspec.structs.replace(PROOF, chunk_id="vault:4")),  # another chunk
        (BalanceProofQuery, "a proof"),
        (ChunkBalanceQuery, -1),
        (GasFeesQuery, [30]),
        (GasFeesQuery, [30, -2]),
        (NonceQuery, "4"),
        (PoolBalanceQuery, None),
    ],
)
def test_malformed_readings_are_refused(query: type, bad: Any) -> None:
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    effect = host.run(lambda e: isinstance(e, ReadChain) and isinstance(e.query, query))
    unchanged(flow, lambda: flow.process(ChainRead(effect.tag, bad), 0.0))
    unchanged(flow, lambda: flow.process(ChainRead(effect.tag, None, error="unreachable"), 0.0))
    # the good reading still goes through
    flow.process(host.answer(effect), 0.0)


def test_a_claim_or_a_penalty_for_another_chunk_is_refused() -> None:
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    claim = host.run(lambda e: isinstance(e, CallVault))
    other_claim = msgspec.structs.replace(CLAIM, chunk_id="vault:4")
    unchanged(flow, lambda: flow.process(EnclaveAnswer(claim.tag, other_claim), 0.0), "another")
    unchanged(flow, lambda: flow.process(EnclaveAnswer(claim.tag, OUTCOME), 0.0))
    unchanged(flow, lambda: flow.process(ChainRead(claim.tag, CLAIM), 0.0), "not answered by")

    flow = open_report()
    host = Host(flow, NATIVE_READS)
    judge = host.run(lambda e: isinstance(e, CallEnclave))
    other = msgspec.structs.replace(
        OUTCOME, penalty=msgspec.structs.replace(PENALTY, chunk_id="vault:4")
    )
    unchanged(flow, lambda: flow.process(EnclaveAnswer(judge.tag, other), 0.0), "another chunk")
    unsigned = msgspec.structs.replace(OUTCOME, transactions=[SLASH_TX, b""])
    unchanged(flow, lambda: flow.process(EnclaveAnswer(judge.tag, unsigned), 0.0), "signed")
    refused = EnclaveAnswer(judge.tag, OUTCOME, error="keyrelease_invalid: was swept")
    unchanged(flow, lambda: flow.process(refused, 0.0), "refused")


def test_a_transaction_not_mined_stops_the_report_until_it_is() -> None:
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    submit = host.run(lambda e: isinstance(e, SubmitTx))
    assert submit.tx == RawTx(chain_id=31337, raw=SLASH_TX)
    for status in ("reverted", "failed"):
        unchanged(flow, lambda s=status: flow.process(TxOutcome(submit.tag, s), 0.0), "not mined")  # type: ignore[misc]
    (second,) = flow.process(TxOutcome(submit.tag, "mined", 3), 0.0)
    assert isinstance(second, SubmitTx) and second.tx.raw == COMPENSATE_TX
    unchanged(flow, lambda: flow.process(TxOutcome(submit.tag, "mined", 3), 0.0), "no question")


# --- hostile answers (attacker review) -------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"penalty": None},
        {"transactions": None},
        {"transactions": "slash"},
        {"slash_wei": None},  # would only blow up once the transactions were out
        {"compensation_wei": 7},
        {"penalty": msgspec.structs.replace(PENALTY, owner=["mallory"])},
        {"penalty": msgspec.structs.replace(PENALTY, uncovered_usd_e8="0")},
    ],
)
def test_a_penalty_outcome_of_the_wrong_shape_is_refused(change: dict[str, Any]) -> None:
    """A struct built by hand, fields of any type: refused before anything goes out."""
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    judge = host.run(lambda e: isinstance(e, CallEnclave))
    bad = msgspec.structs.replace(OUTCOME, **change)
    unchanged(flow, lambda: flow.process(EnclaveAnswer(judge.tag, bad), 0.0), "malformed")
    assert flow.step is ReportStep.JUDGING


def test_a_claim_or_proof_of_the_wrong_shape_is_refused() -> None:
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    proof = host.run(lambda e: isinstance(e, ReadChain) and isinstance(e.query, BalanceProofQuery))
    bad_proof = msgspec.structs.replace(PROOF, number="9")
    unchanged(flow, lambda: flow.process(ChainRead(proof.tag, bad_proof), 0.0), "malformed")
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    claim = host.run(lambda e: isinstance(e, CallVault))
    bad_claim = msgspec.structs.replace(CLAIM, sweep_address=None)
    unchanged(flow, lambda: flow.process(EnclaveAnswer(claim.tag, bad_claim), 0.0), "malformed")


@pytest.mark.parametrize(
    ("transactions", "reason"),
    [
        ([sign_tx(4, b"slash", key=bytes(31) + b"\x0f"), COMPENSATE_TX], "operator"),
        ([SLASH_TX, sign_tx(5, b"compensate", chainId=1)], "fee chain"),
        ([sign_tx(4, b"slash", to=OTHER), COMPENSATE_TX], "pool"),
        ([SLASH_TX, sign_tx(9, b"compensate")], "nonce"),
        ([COMPENSATE_TX, SLASH_TX], "nonce"),  # out of order
        ([SLASH_TX, SLASH_TX], "nonce"),  # twice
        ([sign_tx(4, b"slash", value=1), COMPENSATE_TX], "value"),
        ([SLASH_TX, COMPENSATE_TX, sign_tx(6, b"more")], "at most"),
        ([b"\x02not a transaction"], "signed"),
        ([SLASH_TX[:-3]], "signed"),
    ],
)
def test_only_the_operators_transactions_to_the_pool_are_submitted(
    transactions: list[bytes], reason: str
) -> None:
    """The matcher signs the slash and the compensation with its operator key, for the
    pool on the fee chain, at the nonce it was given and the next: nothing else goes out."""
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    judge = host.run(lambda e: isinstance(e, CallEnclave))
    bad = msgspec.structs.replace(OUTCOME, transactions=transactions)
    unchanged(flow, lambda: flow.process(EnclaveAnswer(judge.tag, bad), 0.0), reason)
    # the honest outcome still goes through; one transaction alone too
    (submit,) = flow.process(EnclaveAnswer(judge.tag, OUTCOME), 0.0)
    assert isinstance(submit, SubmitTx) and submit.tx.raw == SLASH_TX
    flow = open_report()
    judge = Host(flow, NATIVE_READS).run(lambda e: isinstance(e, CallEnclave))
    alone = msgspec.structs.replace(OUTCOME, transactions=[SLASH_TX])
    (submit,) = flow.process(EnclaveAnswer(judge.tag, alone), 0.0)
    assert submit.tx.raw == SLASH_TX


def test_a_price_of_0_is_refused_before_the_matcher_judges() -> None:
    flow = open_report()
    host = Host(flow, NATIVE_READS)
    price = host.run(lambda e: isinstance(e, ReadChain) and isinstance(e.query, PriceQuery))
    unchanged(flow, lambda: flow.process(ChainRead(price.tag, 0), 0.0), "price")


def test_huge_outflows_are_read_no_further_than_the_observation_needs() -> None:
    """A hostile node lists many calls to the token and many Transfer recipients: only
    the first MAX_OUTFLOWS are read or kept (the observation carries no more)."""
    many = MAX_OUTFLOWS * 4
    calls = {i.to_bytes(32, "big"): transfer_call(THIEF) for i in range(many)}
    reads = dict(NATIVE_READS)
    reads[OutflowsQuery] = [[TOKEN, tx_hash] for tx_hash in calls]
    reads[TxInputQuery] = lambda query: calls[query.tx_hash]
    reads[TokenRecipientsQuery] = [OTHER] * 100_000
    flow = open_report(token=TOKEN)
    host = Host(flow, reads)
    judge = host.run(lambda e: isinstance(e, CallEnclave))
    inputs = [
        e for e in host.asked if isinstance(e, ReadChain) and isinstance(e.query, TxInputQuery)
    ]
    assert len(inputs) == MAX_OUTFLOWS
    assert len(flow._outflows) <= MAX_OUTFLOWS and len(flow._recipients) <= MAX_OUTFLOWS
    assert judge.request.observation.outflows_to == [THIEF] * MAX_OUTFLOWS
    assert judge.request.observation.outflow_tx == bytes(32).hex()
