"""The owner's host flows alone (offer, reclaim), with hand-written answers, some
hostile: no processes, no chain."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sealbridge.chain.proofs import AccountProof
from sealbridge.core.effects import CallEnclave, ChainRead, EnclaveAnswer, ReadChain, Report
from sealbridge.keyrelease.balances import BalanceProof
from sealbridge.keyrelease.errors import InvalidRequest, OperatorInputRefused
from sealbridge.keyrelease.matcher_program import (
    MATCHER_ADD_CHUNKS,
    MATCHER_RECLAIM,
    AddChunks,
    Reclaim,
)
from sealbridge.keyrelease.messages import Unreleased
from sealbridge.keyrelease.operator import (
    BalanceProofsQuery,
    CallVault,
    MatcherOperator,
    OfferFlow,
    OfferStep,
    ReclaimFlow,
    ReclaimStep,
)
from sealbridge.keyrelease.types import Chunk
from sealbridge.keyrelease.vault import VAULT_ATTEST_UNRELEASED, ChunkRef
from sealbridge.tee.ecall import NOTHING


def chunk(i: int, asset: str = "ETH@31337") -> Chunk:
    return Chunk(
        chunk_id=f"vault:{i}",
        owner="0x" + "01" * 20,
        vault="vault",
        asset=asset,
        address="0x" + f"{i:02x}" * 20,
        amount=10**16,
        usd_e8=100 * 10**8,
    )


def proof(i: int) -> BalanceProof:
    return BalanceProof(chunk_id=f"vault:{i}", number=3, proof=AccountProof(address=b"", proof=[]))


def snapshot(flow: OfferFlow | ReclaimFlow) -> Any:
    extra = flow.reclaimed if isinstance(flow, ReclaimFlow) else None
    return flow.step, flow.get_awaiting(), extra


def unchanged(flow: OfferFlow | ReclaimFlow, answer: object, match: str | None = None) -> None:
    before = snapshot(flow)
    with pytest.raises(OperatorInputRefused, match=match):
        flow.process(answer, 0.0)  # type: ignore[arg-type]
    assert snapshot(flow) == before


def test_an_offer_proves_every_balance_then_the_matcher_books_the_chunks() -> None:
    chunks = [chunk(1), chunk(2)]
    flow = MatcherOperator().open_offer("bob", chunks, unproven={"BTC@regtest"})
    (read,) = flow.start()
    assert isinstance(read, ReadChain) and read.query == BalanceProofsQuery(chunks=chunks)
    for bad in (
        [proof(3)],  # a proof of a chunk not offered
        [proof(1), proof(1)],  # twice
        ["proof"],
        None,
    ):
        unchanged(flow, ChainRead(read.tag, bad))
    unchanged(flow, ChainRead(read.tag, None, error="unreachable"))
    (add,) = flow.process(ChainRead(read.tag, [proof(1), proof(2)]), 0.0)
    assert isinstance(add, CallEnclave) and add.ecall is MATCHER_ADD_CHUNKS
    assert add.request == AddChunks(chunks=chunks, proofs=[proof(1), proof(2)])
    unchanged(flow, EnclaveAnswer(add.tag, None, error="keyrelease_invalid: short"), "refused")
    (report,) = flow.process(EnclaveAnswer(add.tag, NOTHING), 0.0)
    assert report == Report("offer", {"client": "bob", "chunks": 2})
    assert flow.step is OfferStep.DONE
    unchanged(flow, EnclaveAnswer(add.tag, NOTHING), "no question")


def test_btc_chunks_are_not_offered() -> None:
    with pytest.raises(InvalidRequest, match="does not book btc"):
        MatcherOperator().open_offer(
            "bob", [chunk(1), chunk(2, "BTC@regtest")], unproven={"BTC@regtest"}
        )


def test_a_reclaim_has_the_vault_vouch_for_each_key_then_the_matcher_takes_it() -> None:
    flow = MatcherOperator().open_reclaim("bob", ["vault:1", "vault:2"])
    (attest,) = flow.start()
    assert isinstance(attest, CallVault) and attest.party == "bob"
    assert attest.ecall is VAULT_ATTEST_UNRELEASED and attest.request == ChunkRef(
        chunk_id="vault:1"
    )
    statement = Unreleased(chunk_id="vault:1", vault=b"\x01" * 32, signature=b"s")
    other = msgspec.structs.replace(statement, chunk_id="vault:2")
    unchanged(flow, EnclaveAnswer(attest.tag, other), "another chunk")
    unchanged(flow, EnclaveAnswer(attest.tag, "free"))
    (reclaim,) = flow.process(EnclaveAnswer(attest.tag, statement), 0.0)
    assert reclaim.ecall is MATCHER_RECLAIM and reclaim.request == Reclaim(statement=statement)
    (attest,) = flow.process(EnclaveAnswer(reclaim.tag, NOTHING), 0.0)
    assert attest.request == ChunkRef(chunk_id="vault:2")
    (reclaim,) = flow.process(EnclaveAnswer(attest.tag, other), 0.0)
    (report,) = flow.process(EnclaveAnswer(reclaim.tag, NOTHING), 0.0)
    assert report == Report("reclaim", {"owner": "bob", "chunks": 2})
    assert flow.step is ReclaimStep.DONE and flow.reclaimed == 2
    (done,) = MatcherOperator().open_reclaim("bob", []).start()
    assert done == Report("reclaim", {"owner": "bob", "chunks": 0})


# --- hostile answers (attacker review) -------------------------------------------------------


def test_proofs_of_the_wrong_shape_are_refused() -> None:
    flow = MatcherOperator().open_offer("bob", [chunk(1), chunk(2)], unproven=set())
    (read,) = flow.start()
    unhashable = msgspec.structs.replace(proof(1), chunk_id=["vault:1"])
    unchanged(flow, ChainRead(read.tag, [unhashable]), "malformed")
    unchanged(flow, ChainRead(read.tag, [msgspec.structs.replace(proof(1), number=None)]))
    flow.process(ChainRead(read.tag, [proof(1), proof(2)]), 0.0)


def test_a_reclaim_naming_a_chunk_twice_is_refused_when_it_opens() -> None:
    with pytest.raises(InvalidRequest, match="twice"):
        MatcherOperator().open_reclaim("bob", ["vault:1", "vault:2", "vault:1"])
