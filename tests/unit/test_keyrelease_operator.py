"""The requester's host flows alone (match, accept), driven by hand-written answers, some
hostile: no processes, no chain. The offers are signed with a matcher key held here and
their chunks sit at keys of a real vault enclave's attested manifest (in process), so
``verify_answer`` runs for real."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    ReadChain,
    Report,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import SealbridgeError
from sealbridge.crypto.signing import ed25519_keypair, ed25519_sign
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.keyrelease.auth import SignedRequest, sign_client_request
from sealbridge.keyrelease.errors import (
    AttestationRefused,
    FeeNotPaid,
    InvalidRequest,
    OfferRefused,
    OperatorInputRefused,
)
from sealbridge.keyrelease.matcher_program import (
    MATCHER_ACCEPT,
    MATCHER_CHECK_ACCEPT,
    MATCHER_EXPIRE,
    MATCHER_MATCH,
    Accept,
    AcceptOrder,
    Expired,
    MatchAnswer,
    MatcherCard,
    usd_to_wei,
)
from sealbridge.keyrelease.operator import (
    ACCEPT_MARGIN_S,
    FEE_ASSET,
    AcceptFlow,
    AcceptStep,
    ChunkBalanceQuery,
    FeeChainSynced,
    FeesPaidQuery,
    MatcherOperator,
    MatchFlow,
    MatchStep,
    PayFee,
    PoolBalanceQuery,
    PriceQuery,
    SyncFeeChain,
    compute_fee_key,
)
from sealbridge.keyrelease.types import Chunk, ChunkRequest, Offer, compute_chunk_id
from sealbridge.keyrelease.vault import VAULT_PROGRAM, CreateKeys, VaultConfig, VaultManifest
from sealbridge.tee.enclave import NodeKeys
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import AttestationPolicy, devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend

USD = 10**8
ETH = "ETH@31337"
NOW = time.time() + 3600  # a fixed input, later than any quote the fixtures make this run
# (they are made when a test first asks, maybe minutes after import; the policy admits old
# quotes, never ones from the future)
ALICE_KEY = bytes(31) + b"\x07"
ALICE = ChainAdapter.address_of(ALICE_KEY)
BOB = ChainAdapter.address_of(bytes(31) + b"\x08")
OWNER = "0x" + "01" * 20
AMOUNT = 10**16
PRICE = 3_000 * USD
MATCHER_SECRET, MATCHER_PUB = ed25519_keypair(b"\x05" * 32)
CARD = MatcherCard(
    node=NodeKeys(identity_key=MATCHER_PUB, encryption_key=bytes(32), eth_address=bytes(20)),
    quote=b"",
    operator="0x" + "02" * 20,
)
SERVICE = MATCHER_PUB


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AttestationPolicy, Any]]:
    """A vault enclave's attested manifest (in process) and the policy it verifies under."""
    home: Path = tmp_path_factory.mktemp("operator")
    platform = home / "platform.key"
    policy = devnet_policy(
        create_sim_platform(platform),
        [compute_sim_measurement(VAULT_PROGRAM)],
        max_quote_age_seconds=10**9,
    )
    handle = InProcessBackend().launch(VAULT_PROGRAM, platform_key_file=platform)
    try:
        handle.ecall("configure", encode(VaultConfig(policy=policy)))
        manifest = decode(handle.ecall("create_keys", encode(CreateKeys(count=3))), VaultManifest)
        yield policy, manifest
    finally:
        handle.close()


def make_chunks(manifest: VaultManifest, k: int = 2) -> list[Chunk]:
    return [
        Chunk(
            chunk_id=compute_chunk_id(manifest.vault, key.index),
            owner=OWNER,
            vault=manifest.vault,
            asset=ETH,
            address=key.eth_address,
            amount=AMOUNT,
            usd_e8=100 * USD,
        )
        for key in manifest.keys[:k]
    ]


def sign_answer(offer: Offer, manifest: VaultManifest, secret: bytes = MATCHER_SECRET) -> Any:
    answer = MatchAnswer(offer=offer, manifests=[manifest])
    return msgspec.structs.replace(answer, signature=ed25519_sign(secret, answer.get_body()))


def client_signed(action: str, body: object, nonce: int = 1) -> SignedRequest:
    return sign_client_request(ALICE_KEY, SERVICE, nonce, action, encode(body))


REQUEST = ChunkRequest(request_id="r1", requester=ALICE, asset=ETH, usd_e8=200 * USD, contract="z")


def make_offer(manifest: VaultManifest, **changes: Any) -> Offer:
    offer = Offer(
        request_id="r1",
        requester=ALICE,
        contract="z",
        asset=ETH,
        chunks=make_chunks(manifest),
        fee_e8=2 * USD,
    )
    return msgspec.structs.replace(offer, **changes)


def one(effects: list[Any], kind: type) -> Any:
    (effect,) = [e for e in effects if isinstance(e, kind)]
    return effect


def snapshot(operator: MatcherOperator, flow: MatchFlow | AcceptFlow) -> Any:
    """Everything a refused answer must leave as it was."""
    extra = (
        (flow.result, flow._checked) if isinstance(flow, MatchFlow) else (flow.fee_wei, flow.label)
    )
    return flow.step, flow.get_awaiting(), sorted(operator.contracts), extra


def unchanged(
    operator: MatcherOperator,
    flow: MatchFlow | AcceptFlow,
    error: type[SealbridgeError],
    act: Callable[[], object],
    match: str | None = None,
) -> None:
    before = snapshot(operator, flow)
    with pytest.raises(error, match=match):
        act()
    assert snapshot(operator, flow) == before


# --- match -----------------------------------------------------------------------------------


def open_match(
    policy: AttestationPolicy, operator: MatcherOperator | None = None
) -> tuple[MatcherOperator, MatchFlow, CallEnclave]:
    operator = operator or MatcherOperator()
    flow = operator.open_match(
        client_signed("match", REQUEST),
        REQUEST,
        label="alice",
        card=CARD,
        vault_policy=policy,
        names={OWNER: "bob"},
    )
    expire = one(flow.start(NOW), CallEnclave)
    assert expire.ecall is MATCHER_EXPIRE
    return operator, flow, expire


def to_balances(
    vault: tuple[AttestationPolicy, VaultManifest], answer: MatchAnswer | None = None
) -> tuple[MatcherOperator, MatchFlow, ReadChain]:
    policy, manifest = vault
    operator, flow, expire = open_match(policy)
    effects = flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW)
    assert not [e for e in effects if isinstance(e, Report)]
    match = one(effects, CallEnclave)
    assert match.ecall is MATCHER_MATCH and match.request == flow.signed
    answer = answer or sign_answer(make_offer(manifest), manifest)
    read = one(flow.process(EnclaveAnswer(match.tag, answer), NOW + 0.1), ReadChain)
    return operator, flow, read


def test_a_match_is_checked_and_every_chunk_balance_read(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    policy, manifest = vault
    operator, flow, expire = open_match(policy)
    effects = flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=["a", "b"])), NOW)
    assert one(effects, Report) == Report("expire", {"offers": 2})
    match = one(effects, CallEnclave)
    answer = sign_answer(make_offer(manifest), manifest)
    read = one(flow.process(EnclaveAnswer(match.tag, answer), NOW), ReadChain)
    assert operator.contracts == {"z"}  # taken once the answer checked out
    chunks = answer.offer.chunks
    assert read.query == ChunkBalanceQuery(chunk=chunks[0])
    read = one(flow.process(ChainRead(read.tag, AMOUNT), NOW), ReadChain)
    assert read.query == ChunkBalanceQuery(chunk=chunks[1])
    report = one(flow.process(ChainRead(read.tag, AMOUNT + 1), NOW + 0.25), Report)
    assert report.kind == "match" and flow.step is MatchStep.DONE and flow.result == answer
    assert report.data["owners"] == {"bob": 2} and report.data["ms"] == 250.0
    assert report.data["client"] == "alice" and report.data["chunks"] == 2
    assert flow.get_awaiting() == []
    # late and repeated answers are refused, and a reused contract name too
    unchanged(
        operator, flow, OperatorInputRefused, lambda: flow.process(ChainRead(read.tag, 1), NOW)
    )
    with pytest.raises(InvalidRequest, match="used before"):
        open_match(policy, operator)


def test_answers_not_asked_for_are_refused(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    policy, manifest = vault
    operator, flow, expire = open_match(policy)
    _, other, other_expire = open_match(policy, operator)  # numbered by the same operator
    refused: list[object] = [
        EnclaveAnswer("match-9/expire/1", Expired(request_ids=[])),  # never asked
        EnclaveAnswer(other_expire.tag, Expired(request_ids=[])),  # another flow's
        EnclaveAnswer(expire.tag, MatchAnswer(offer=make_offer(manifest), manifests=[])),
        EnclaveAnswer(expire.tag, None, error="keyrelease_invalid: no"),  # a refusal
        EnclaveAnswer(expire.tag, Expired(request_ids=[]), error="keyrelease_invalid: no"),
        Report("expire", {}),  # not an answer at all
    ]
    for answer in refused:
        unchanged(operator, flow, OperatorInputRefused, lambda a=answer: flow.process(a, NOW))  # type: ignore[misc]
    for wrong_kind in (ChainRead(expire.tag, 0), TxOutcome(expire.tag, "mined")):
        unchanged(
            operator,
            flow,
            OperatorInputRefused,
            lambda a=wrong_kind: flow.process(a, NOW),  # type: ignore[misc]
            "is not answered by",
        )
    flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW)
    # answered already: a replay is refused
    unchanged(
        operator,
        flow,
        OperatorInputRefused,
        lambda: flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW),
    )
    with pytest.raises(InvalidRequest, match="started already"):
        flow.start(NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"requester": BOB}, "another request"),
        ({"request_id": "r2"}, "another request"),
        ({"contract": "y"}, "another request"),
        ({"asset": "TKN@31338"}, "another request"),
        ({"chunks": []}, "no chunk"),
    ],
)
def test_an_offer_for_another_request_is_refused(
    vault: tuple[AttestationPolicy, VaultManifest], change: dict[str, Any], reason: str
) -> None:
    """Signed by the matcher, attested chunks, and still not the requester's answer."""
    policy, manifest = vault
    operator, flow, expire = open_match(policy)
    match = one(flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW), CallEnclave)
    forged = sign_answer(make_offer(manifest, **change), manifest)
    unchanged(
        operator,
        flow,
        OfferRefused,
        lambda: flow.process(EnclaveAnswer(match.tag, forged), NOW),
        reason,
    )
    assert operator.contracts == set()
    # the honest answer still goes through
    good = sign_answer(make_offer(manifest), manifest)
    one(flow.process(EnclaveAnswer(match.tag, good), NOW), ReadChain)


def test_an_offer_not_signed_by_the_matcher_or_off_the_manifest_is_refused(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    policy, manifest = vault
    operator, flow, expire = open_match(policy)
    match = one(flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW), CallEnclave)
    other_secret, _ = ed25519_keypair(b"\x06" * 32)
    offer = make_offer(manifest)
    moved = msgspec.structs.replace(offer.chunks[0], address="0x" + "33" * 20)
    for forged in (
        sign_answer(offer, manifest, other_secret),
        sign_answer(make_offer(manifest, chunks=[moved]), manifest),
    ):
        unchanged(
            operator,
            flow,
            AttestationRefused,
            lambda f=forged: flow.process(EnclaveAnswer(match.tag, f), NOW),  # type: ignore[misc]
        )


def test_a_chunk_below_its_amount_refuses_the_offer(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    operator, flow, read = to_balances(vault)
    short = ChainRead(read.tag, AMOUNT - 1)
    unchanged(operator, flow, OfferRefused, lambda: flow.process(short, NOW), "holds")
    for bad in (-1, "lots", True, None):
        unchanged(
            operator,
            flow,
            OperatorInputRefused,
            lambda b=bad: flow.process(ChainRead(read.tag, b), NOW),  # type: ignore[misc]
        )
    failed = ChainRead(read.tag, None, error="unreachable")
    unchanged(operator, flow, OperatorInputRefused, lambda: flow.process(failed, NOW))
    assert flow.step is MatchStep.BALANCES and operator.contracts == {"z"}


# --- accept ----------------------------------------------------------------------------------


def open_accept(
    manifest: VaultManifest, *, requester: str = ALICE, account: str = ALICE
) -> tuple[MatcherOperator, AcceptFlow, CallEnclave]:
    operator = MatcherOperator()
    answer = sign_answer(make_offer(manifest), manifest)
    body = Accept(request_id="r1", requester=requester)
    flow = operator.open_accept(answer, client_signed("accept", body, nonce=2))
    assert flow.requester == requester
    check = one(flow.start(label="alice", account=account, offer_ttl_s=120.0), CallEnclave)
    return operator, flow, check


def run_accept(
    flow: AcceptFlow, check: CallEnclave, *, paid: int
) -> tuple[list[Any], list[object]]:
    """An honest driver: every question asked and the answer given."""
    asked: list[Any] = [check]
    answers: dict[type, Callable[[Any], object]] = {
        CallEnclave: lambda e: EnclaveAnswer(e.tag, flow.offer),
        SubmitTx: lambda e: TxOutcome(e.tag, "mined", 7),
        SyncFeeChain: lambda e: FeeChainSynced(e.tag, 7),
    }
    reads: dict[type, object] = {PriceQuery: PRICE, FeesPaidQuery: paid, PoolBalanceQuery: 10**18}
    reports: list[object] = []
    pending = [check]
    while pending:
        effect = pending.pop(0)
        if isinstance(effect, ReadChain):
            answer: Any = ChainRead(effect.tag, reads[type(effect.query)])
        else:
            answer = answers[type(effect)](effect)
        for nxt in flow.process(answer, NOW):
            if isinstance(nxt, Report):
                reports.append(nxt)
            else:
                asked.append(nxt)
                pending.append(nxt)
    return asked, reports


def test_an_accept_checks_then_pays_the_fee_once_then_accepts(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    _, manifest = vault
    _, flow, check = open_accept(manifest)
    assert check.ecall is MATCHER_CHECK_ACCEPT
    assert check.request == Accept(request_id="r1", requester=ALICE, margin_s=ACCEPT_MARGIN_S)
    asked, reports = run_accept(flow, check, paid=0)
    fee = usd_to_wei(2 * USD, PRICE)
    key = compute_fee_key("r1")
    kinds = [type(e.query if isinstance(e, ReadChain) else e).__name__ for e in asked]
    assert kinds == [
        "CallEnclave",
        "PriceQuery",
        "FeesPaidQuery",
        "SubmitTx",
        "SyncFeeChain",
        "CallEnclave",
        "PoolBalanceQuery",
    ]
    assert asked[1].query == PriceQuery(asset=FEE_ASSET)
    assert asked[3].tx == PayFee(payer=ALICE, request_key=key, amount_wei=fee)
    assert asked[5].ecall is MATCHER_ACCEPT and asked[5].request == AcceptOrder(signed=flow.signed)
    assert reports == [Report("accept", {"client": "alice", "fee_wei": fee, "pool_wei": 10**18})]
    assert flow.step is AcceptStep.DONE and flow.get_awaiting() == []
    # paid already (a retry after a failure past the payment): nothing is paid again
    _, again, check = open_accept(manifest)
    asked, _ = run_accept(again, check, paid=fee)
    assert not [e for e in asked if isinstance(e, SubmitTx)]
    # a short margin: a quarter of a short time to live
    flow = MatcherOperator().open_accept(
        sign_answer(make_offer(manifest), manifest),
        client_signed("accept", Accept(request_id="r1", requester=ALICE)),
    )
    check = one(flow.start(label="alice", account=ALICE, offer_ttl_s=2.0), CallEnclave)
    assert check.request.margin_s == 0.5


def test_an_accept_by_another_requester_or_of_another_offer_pays_nothing(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    _, manifest = vault
    operator = MatcherOperator()
    answer = sign_answer(make_offer(manifest), manifest)
    flow = operator.open_accept(answer, client_signed("accept", Accept(request_id="r1")))
    # bob signs (the driver checked it is bob), alice's offer: refused before anything
    before = snapshot(operator, flow)
    with pytest.raises(InvalidRequest, match="another requester, not bob"):
        flow.start(label="bob", account=BOB, offer_ttl_s=120.0)
    assert snapshot(operator, flow) == before and flow.step is AcceptStep.NEW
    with pytest.raises(InvalidRequest, match="names another offer"):
        operator.open_accept(answer, client_signed("accept", Accept(request_id="r2")))
    with pytest.raises(InvalidRequest, match="malformed"):
        operator.open_accept(answer, client_signed("accept", REQUEST))


def test_check_accept_must_return_the_same_offer(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    _, manifest = vault
    operator, flow, check = open_accept(manifest)
    offer = flow.offer
    for other in (
        msgspec.structs.replace(offer, fee_e8=0),
        msgspec.structs.replace(offer, requester=BOB),
        msgspec.structs.replace(offer, chunks=offer.chunks[:1]),
    ):
        unchanged(
            operator,
            flow,
            OfferRefused,
            lambda o=other: flow.process(EnclaveAnswer(check.tag, o), NOW),  # type: ignore[misc]
            "not the one the matcher made",
        )
    for hostile in (
        EnclaveAnswer(check.tag, None, error="keyrelease_invalid: offer r1 expired"),
        EnclaveAnswer(check.tag, "an offer"),
        ChainRead(check.tag, offer),
        FeeChainSynced(check.tag, 3),
    ):
        unchanged(
            operator,
            flow,
            OperatorInputRefused,
            lambda h=hostile: flow.process(h, NOW),  # type: ignore[misc]
        )
    assert flow.step is AcceptStep.CHECKING


def test_a_fee_not_mined_accepts_nothing(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    _, manifest = vault
    operator, flow, check = open_accept(manifest)
    price = one(flow.process(EnclaveAnswer(check.tag, flow.offer), NOW), ReadChain)
    unchanged(
        operator, flow, OperatorInputRefused, lambda: flow.process(ChainRead(price.tag, 0), NOW)
    )
    paid = one(flow.process(ChainRead(price.tag, PRICE), NOW), ReadChain)
    pay = one(flow.process(ChainRead(paid.tag, 0), NOW), SubmitTx)
    for status in ("reverted", "failed", "sent"):
        outcome = TxOutcome(pay.tag, status, reason="out of gas")
        unchanged(operator, flow, FeeNotPaid, lambda o=outcome: flow.process(o, NOW))  # type: ignore[misc]
    assert flow.step is AcceptStep.PAYING
    # the fee was not paid, so the matcher is never asked to accept; a mined outcome goes on
    sync = one(flow.process(TxOutcome(pay.tag, "mined", 9), NOW), SyncFeeChain)
    unchanged(
        operator,
        flow,
        OperatorInputRefused,
        lambda: flow.process(FeeChainSynced(sync.tag, -1), NOW),
    )
    accept = one(flow.process(FeeChainSynced(sync.tag, 9), NOW), CallEnclave)
    assert accept.ecall is MATCHER_ACCEPT
    # a late outcome of the fee's transaction is not taken again
    unchanged(
        operator,
        flow,
        OperatorInputRefused,
        lambda: flow.process(TxOutcome(pay.tag, "mined", 9), NOW),
    )


# --- hostile answers (attacker review) -------------------------------------------------------


def test_answers_of_the_wrong_shape_are_refused(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    """Structs built by hand with fields of any type: a typed refusal, nothing changed."""
    policy, manifest = vault
    operator, flow, expire = open_match(policy)
    for bad in (Expired(request_ids=5), Expired(request_ids=[None])):  # type: ignore[arg-type]
        unchanged(
            operator,
            flow,
            OperatorInputRefused,
            lambda b=bad: flow.process(EnclaveAnswer(expire.tag, b), NOW),  # type: ignore[misc]
            "malformed",
        )
    match = one(flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW), CallEnclave)
    good = sign_answer(make_offer(manifest), manifest)
    for bad in (
        msgspec.structs.replace(good, offer=None),
        msgspec.structs.replace(good, manifests=None),
        msgspec.structs.replace(good, offer=make_offer(manifest, chunks=[None])),
    ):
        unchanged(
            operator,
            flow,
            OperatorInputRefused,
            lambda b=bad: flow.process(EnclaveAnswer(match.tag, b), NOW),  # type: ignore[misc]
            "malformed",
        )
    assert operator.contracts == set()
    one(flow.process(EnclaveAnswer(match.tag, good), NOW), ReadChain)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), -float("inf"), True, "now"])
def test_a_time_that_is_no_finite_number_is_refused(
    vault: tuple[AttestationPolicy, VaultManifest], now: Any
) -> None:
    """The quotes are checked against ``now``: NaN or infinity checks nothing (or
    crashes the manifest check)."""
    policy, manifest = vault
    with pytest.raises(OperatorInputRefused, match="time"):
        MatcherOperator().open_match(
            client_signed("match", REQUEST),
            REQUEST,
            label="alice",
            card=CARD,
            vault_policy=policy,
        ).start(now)
    operator, flow, expire = open_match(policy)
    match = one(flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW), CallEnclave)
    answer = EnclaveAnswer(match.tag, sign_answer(make_offer(manifest), manifest))
    unchanged(operator, flow, OperatorInputRefused, lambda: flow.process(answer, now), "time")


def test_a_contract_name_is_taken_once_by_flows_opened_together(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    """Two matches for the same contract opened before either checked out: the second
    signed offer is refused (a name is used once); a refused match takes no name."""
    policy, manifest = vault
    operator, first, first_expire = open_match(policy)
    _, second, second_expire = open_match(policy, operator)
    answer = sign_answer(make_offer(manifest), manifest)
    matches = [
        one(flow.process(EnclaveAnswer(expire.tag, Expired(request_ids=[])), NOW), CallEnclave)
        for flow, expire in ((first, first_expire), (second, second_expire))
    ]
    one(first.process(EnclaveAnswer(matches[0].tag, answer), NOW), ReadChain)
    unchanged(
        operator,
        second,
        InvalidRequest,
        lambda: second.process(EnclaveAnswer(matches[1].tag, answer), NOW),
        "used before",
    )
    assert operator.contracts == {"z"}


def test_a_partial_fee_paid_is_topped_up_not_paid_again(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    """The matcher adds up every FeePaid of the offer: what the pool credits already is
    not paid a second time (an earlier payment at an older price, say)."""
    _, manifest = vault
    fee = usd_to_wei(2 * USD, PRICE)
    _, flow, check = open_accept(manifest)
    asked, _ = run_accept(flow, check, paid=fee // 3)
    (pay,) = [e for e in asked if isinstance(e, SubmitTx)]
    assert pay.tx.amount_wei == fee - fee // 3
    assert flow.fee_wei == fee


def test_a_price_that_makes_a_due_fee_0_wei_is_refused(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    """A node answering an absurd price would have the requester skip the fee."""
    _, manifest = vault
    operator, flow, check = open_accept(manifest)
    price = one(flow.process(EnclaveAnswer(check.tag, flow.offer), NOW), ReadChain)
    huge = ChainRead(price.tag, 10**40)
    unchanged(operator, flow, OperatorInputRefused, lambda: flow.process(huge, NOW), "0 wei")
    assert flow.step is AcceptStep.PRICING


def test_matcher_accept_must_return_the_same_offer(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    _, manifest = vault
    operator, flow, check = open_accept(manifest)
    price = one(flow.process(EnclaveAnswer(check.tag, flow.offer), NOW), ReadChain)
    paid = one(flow.process(ChainRead(price.tag, PRICE), NOW), ReadChain)
    sync = one(flow.process(ChainRead(paid.tag, 10**18), NOW), SyncFeeChain)
    accept = one(flow.process(FeeChainSynced(sync.tag, 9), NOW), CallEnclave)
    other = msgspec.structs.replace(flow.offer, request_id="r2")
    unchanged(
        operator,
        flow,
        OfferRefused,
        lambda: flow.process(EnclaveAnswer(accept.tag, other), NOW),
        "not the one",
    )
    one(flow.process(EnclaveAnswer(accept.tag, flow.offer), NOW), ReadChain)


def test_a_refused_open_changes_nothing(
    vault: tuple[AttestationPolicy, VaultManifest],
) -> None:
    """A refused open takes no flow number and raises no foreign exception."""
    _, manifest = vault
    operator = MatcherOperator()
    answer = sign_answer(make_offer(manifest), manifest)
    signed = client_signed("accept", Accept(request_id="r1", requester=ALICE))
    for bad_answer, bad_signed in (
        (answer, client_signed("accept", REQUEST)),  # malformed body
        (answer, client_signed("accept", Accept(request_id="r2"))),  # another offer
        (answer, None),
        (answer, msgspec.structs.replace(signed, request=None)),
        (msgspec.structs.replace(answer, offer=None), signed),
    ):
        with pytest.raises(InvalidRequest):
            operator.open_accept(bad_answer, bad_signed)  # type: ignore[arg-type]
    assert operator.open_accept(answer, signed).flow_id == "accept-1"
