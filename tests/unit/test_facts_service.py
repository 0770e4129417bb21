"""The gatekeeper's key-request service core alone: headers, proofs, the release, and
the re-read of a stale proof, driven by hand-written answers (some hostile)."""

from __future__ import annotations

from typing import Any

import pytest

from sealbridge.chain.proofs import AccountProof
from sealbridge.core.effects import CallEnclave, ChainRead, EnclaveAnswer, Persist, ReadChain
from sealbridge.keyservice.chainfacts import FactsProof, HeaderTip
from sealbridge.keyservice.ecalls import (
    GATEKEEPER_ADVANCE_HEADERS,
    GATEKEEPER_RELEASE_PARTIAL,
    ChainTip,
)
from sealbridge.keyservice.facts_service import (
    HEADER_BATCH,
    PROOF_ATTEMPTS,
    FactsProofQuery,
    FactsServiceCore,
    FinalBlockQuery,
    HeaderFieldsQuery,
    ServeKeyRequest,
    ServiceBusy,
)
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.tee.enclave import NodeKeys

CID, WORKER = b"\x07" * 32, b"\x08" * 32
NODE = NodeKeys(identity_key=WORKER, encryption_key=WORKER, eth_address=WORKER[:20])
ORDER = ServeKeyRequest(
    request=KeyRequest(body=b"b", signature=b"s", node=NODE, quote=b"q"),
    contract_id=CID,
    worker_id=WORKER,
)
RELEASE = PartialKeyRelease(contract_id=CID, worker_id=WORKER, index=1, ciphertext=b"c")


def account(address: str) -> AccountProof:
    fields: dict[str, Any] = {}
    for name in AccountProof.__struct_fields__:
        fields[name] = address if name == "address" else ([] if name in ("proof", "slots") else 0)
    return AccountProof(**fields)


def facts_proof(number: int) -> FactsProof:
    a = account("0x" + "11" * 20)
    return FactsProof(
        number=number, node_registry=a, contract_registry=a, execution_ledger=a, committee=a
    )


def tip(number: int, sealed: bytes = b"sealed") -> ChainTip:
    return ChainTip(tip=HeaderTip(number=number, block_hash=bytes(32)), sealed=sealed)


def one(effects: list[Any]) -> Any:
    (effect,) = [e for e in effects if isinstance(e, ReadChain | CallEnclave)]
    return effect


def read(core: FactsServiceCore, effect: ReadChain, value: Any = None, **kw: Any) -> list[Any]:
    return core.on_message(0, ChainRead(effect.tag, value, **kw), 0.0)


def ecall(core: FactsServiceCore, effect: CallEnclave, value: Any = None, **kw: Any) -> list[Any]:
    return core.on_message(0, EnclaveAnswer(effect.tag, value, **kw), 0.0)


def to_release(core: FactsServiceCore, final: int, enclave_tip: int) -> CallEnclave:
    final_read = one(core.on_message(0, ORDER, 0.0))
    assert final_read.query == FinalBlockQuery()
    get_tip = one(read(core, final_read, final))
    assert get_tip.ecall is GATEKEEPER_ADVANCE_HEADERS and get_tip.request.headers == []
    effect = one(ecall(core, get_tip, tip(enclave_tip)))
    while isinstance(effect.query if isinstance(effect, ReadChain) else None, HeaderFieldsQuery):
        numbers = effect.query.numbers
        advance = one(read(core, effect, [f"h{n}" for n in numbers]))
        effects = ecall(core, advance, tip(numbers[-1], b"t%d" % numbers[-1]))
        assert Persist("chain-tip", b"t%d" % numbers[-1]) in effects
        effect = one(effects)
    assert effect.query == FactsProofQuery(CID, WORKER, final)
    release = one(read(core, effect, facts_proof(final)))
    assert release.ecall is GATEKEEPER_RELEASE_PARTIAL
    return release


def test_headers_are_brought_up_to_the_final_block_then_the_facts_are_proved() -> None:
    core = FactsServiceCore()
    release = to_release(core, final=10 + HEADER_BATCH + 5, enclave_tip=10)
    assert release.request.proof.number == 10 + HEADER_BATCH + 5
    ecall(core, release, RELEASE)
    assert core.result == RELEASE and core.released == 1 and core.serving is None


def test_a_stale_proof_is_read_again_only_while_the_chain_moves() -> None:
    core = FactsServiceCore()
    release = to_release(core, final=20, enclave_tip=20)
    check = one(ecall(core, release, error="proof_invalid: root mismatch"))
    assert check.query == FinalBlockQuery()
    assert read(core, check, 20) == []  # the chain did not move: the refusal stands
    assert core.result == "enclave: proof_invalid: root mismatch" and core.refetched == 0
    release = to_release(core, final=20, enclave_tip=20)
    for attempt in range(1, PROOF_ATTEMPTS):
        check = one(ecall(core, release, error="proof_invalid: root mismatch"))
        final_read = one(read(core, check, 20 + attempt))
        get_tip = one(read(core, final_read, 20 + attempt))
        proof = one(ecall(core, get_tip, tip(20 + attempt)))
        release = one(read(core, proof, facts_proof(20 + attempt)))
    assert ecall(core, release, error="proof_invalid: again") == []
    assert core.result == "enclave: proof_invalid: again"
    assert core.refetched == PROOF_ATTEMPTS - 1


def test_other_refusals_and_failed_reads_end_the_request() -> None:
    core = FactsServiceCore()
    release = to_release(core, final=5, enclave_tip=5)
    assert ecall(core, release, error="not_assigned: not an active registered worker") == []
    assert core.result == "enclave: not_assigned: not an active registered worker"
    final_read = one(core.on_message(0, ORDER, 0.0))
    assert read(core, final_read, error="rpc down", passing=True) == []
    assert core.result == "chain: rpc down" and core.serving is None


def test_forged_stale_and_malformed_answers_change_nothing() -> None:
    core = FactsServiceCore()
    final_read = one(core.on_message(0, ORDER, 0.0))
    assert core.on_message(3, ChainRead(final_read.tag, 99), 0.0) == []  # a peer's answer
    assert core.on_message(0, ChainRead("facts:999", 99), 0.0) == []
    with pytest.raises(ServiceBusy):
        core.on_message(0, ORDER, 0.0)
    get_tip = one(read(core, final_read, 5))
    assert read(core, final_read, 5) == []  # replayed
    assert ecall(core, get_tip, "not a tip") == []
    assert core.result == "enclave: not a chain tip" and core.serving is None


def test_an_answer_of_another_kind_with_the_awaited_tag_changes_nothing() -> None:
    core = FactsServiceCore()
    final_read = one(core.on_message(0, ORDER, 0.0))
    assert core.on_message(0, EnclaveAnswer(final_read.tag, error="forged: x"), 0.0) == []
    assert core.serving is not None and core.result is None
    get_tip = one(read(core, final_read, 5))
    assert core.on_message(0, ChainRead(get_tip.tag, 5), 0.0) == []
    assert core.serving is not None and core.result is None
    assert isinstance(one(ecall(core, get_tip, tip(5))), ReadChain)


def test_more_headers_than_the_numbers_asked_for_end_the_request() -> None:
    core = FactsServiceCore()
    final_read = one(core.on_message(0, ORDER, 0.0))
    get_tip = one(read(core, final_read, 3))
    headers = one(ecall(core, get_tip, tip(1)))
    assert headers.query == HeaderFieldsQuery([2, 3])
    assert read(core, headers, [f"h{n}" for n in range(2, 10_000)]) == []
    assert core.serving is None and isinstance(core.result, str) and "header" in core.result
