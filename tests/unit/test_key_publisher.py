"""The key publisher core alone: a gatekeeper host's contract-key decisions, driven by
hand-written answers, some of them hostile (from a peer, stale, malformed, too few)."""

from __future__ import annotations

from typing import Any

from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    PeerAnswers,
    ReadChain,
    Report,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.keyservice.ecalls import (
    COMMITTEE_STATUS,
    GATEKEEPER_PUBLISH_CONTRACT_KEY,
    MAKE_KEY_REQUEST,
    CommitteeStatus,
)
from sealbridge.keyservice.messages import KeyRequest, PublishedContractKey
from sealbridge.keyservice.publisher import (
    MAX_ATTEMPTS,
    ContractDeployedSeen,
    ContractKeyQuery,
    ContractKeyView,
    KeyPublishedQuery,
    KeyPublisherCore,
    KeyRotationRequestedSeen,
    PublishKeyOnChain,
    RotateKeyOnChain,
)
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.tee.enclave import NodeKeys

ME, OTHER = b"\x01" * 32, b"\x02" * 32
CID, CID2 = b"\x09" * 32, b"\x08" * 32
REGISTRY = "0x" + "22" * 20


def new_core() -> KeyPublisherCore:
    return KeyPublisherCore(ME, chain_id=31337, contract_registry=REGISTRY)


def io(effects: list[Any]) -> list[Any]:
    return [e for e in effects if isinstance(e, ReadChain | SubmitTx | CallEnclave | AskPeers)]


def one(effects: list[Any]) -> Any:
    (effect,) = io(effects)
    return effect


def status(threshold: int = 3) -> CommitteeStatus:
    group = GroupPublicKeys(threshold=threshold, group_public_key=b"g" * 48, shares=[])
    return CommitteeStatus(current_era=1, phases={}, group=group, acceptable={})


def partial(i: int) -> PartialKeyRelease:
    return PartialKeyRelease(contract_id=CID, worker_id=OTHER, index=i, ciphertext=bytes([i]))


def key_request() -> KeyRequest:
    node = NodeKeys(identity_key=ME, encryption_key=ME, eth_address=ME[:20])
    return KeyRequest(body=b"body", signature=b"sig", node=node, quote=b"quote")


PUBLISHED = PublishedContractKey(
    contract_id=CID, contract_public_key=b"p", message_key=b"m", wrapped_key=b"", signature=b"s"
)


def reply(core: KeyPublisherCore, effect: Any, value: Any = None, **kw: Any) -> list[Any]:
    if isinstance(effect, ReadChain):
        return core.on_message(0, ChainRead(effect.tag, value, **kw), 0.0)
    if isinstance(effect, CallEnclave):
        return core.on_message(0, EnclaveAnswer(effect.tag, value, **kw), 0.0)
    if isinstance(effect, AskPeers):
        return core.on_message(0, PeerAnswers(effect.tag, tuple(value or ())), 0.0)
    return core.on_message(0, TxOutcome(effect.tag, kw.get("status", "mined"), 7), 0.0)


def test_a_deployment_naming_this_gatekeeper_is_published() -> None:
    core = new_core()
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    assert check.query == KeyPublishedQuery(CID)
    st = one(reply(core, check, False))
    assert st.ecall is COMMITTEE_STATUS
    make = one(reply(core, st, status(3)))
    assert make.ecall is MAKE_KEY_REQUEST and make.request.version == 0
    ask = one(reply(core, make, key_request()))
    assert isinstance(ask, AskPeers) and ask.needed == 2
    combine = one(reply(core, ask, [partial(1), "junk", partial(2), partial(3)]))
    assert combine.ecall is GATEKEEPER_PUBLISH_CONTRACT_KEY
    assert combine.request.releases == [partial(1), partial(2)]  # only releases, t - 1
    assert combine.request.request.contract_registry_address == REGISTRY
    send = one(reply(core, combine, PUBLISHED))
    assert isinstance(send.tx, PublishKeyOnChain) and send.tx.contract_public_key == b"p"
    effects = reply(core, send)
    assert any(isinstance(e, Report) and e.kind == "key_published" for e in effects)
    assert core.published == 1 and core.job is None


def test_a_rotation_is_published_only_when_pending_at_that_version() -> None:
    core = new_core()
    check = one(core.on_message(0, KeyRotationRequestedSeen(contract_id=CID, version=2), 0.0))
    assert check.query == ContractKeyQuery(CID)
    # rotated meanwhile: the job ends without an enclave call
    view = ContractKeyView(gatekeeper_id=ME, key_version=2, rotation_pending=False)
    assert io(reply(core, check, view)) == [] and core.job is None
    check = one(core.on_message(0, KeyRotationRequestedSeen(contract_id=CID, version=2), 0.0))
    view = ContractKeyView(gatekeeper_id=ME, key_version=1, rotation_pending=True)
    st = one(reply(core, check, view))
    make = one(reply(core, st, status(1)))  # threshold 1: no peers to ask
    combine = one(reply(core, make, key_request()))
    assert combine.ecall is GATEKEEPER_PUBLISH_CONTRACT_KEY and combine.request.releases == []
    send = one(reply(core, combine, PUBLISHED))
    assert isinstance(send.tx, RotateKeyOnChain) and send.tx.version == 2
    reply(core, send)
    assert core.rotated == 1


def test_other_gatekeepers_deployments_and_peer_messages_are_ignored() -> None:
    core = new_core()
    assert core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=OTHER), 0.0) == []
    assert core.on_message(5, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0) == []
    assert core.on_message(0, KeyRotationRequestedSeen(contract_id=CID, version=0), 0.0) == []
    assert core.job is None and not core.backlog


def test_forged_stale_and_malformed_answers_change_nothing() -> None:
    core = new_core()
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    assert core.on_message(3, ChainRead(check.tag, False), 0.0) == []  # from a peer
    assert core.on_message(0, ChainRead("publisher:999", False), 0.0) == []  # wrong tag
    st = one(reply(core, check, False))
    assert core.on_message(0, ChainRead(check.tag, False), 0.0) == []  # replayed
    effects = reply(core, st, "not a status")
    assert io(effects) == [] and core.job is None
    assert any(isinstance(e, Report) and e.kind == "key_publish_refused" for e in effects)


def test_too_few_partials_wait_then_give_up_and_the_next_job_runs() -> None:
    core = new_core()
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    core.on_message(0, ContractDeployedSeen(contract_id=CID2, gatekeeper_id=ME), 0.0)
    st = one(reply(core, check, False))
    make = one(reply(core, st, status(3)))
    ask = one(reply(core, make, key_request()))
    for _ in range(MAX_ATTEMPTS - 1):
        effects = reply(core, ask, [partial(1)])
        assert SetTimer("retry", 2.0) in effects and io(effects) == []
        stale = ask
        ask = one(core.on_timer("retry", 0.0))
        assert isinstance(ask, AskPeers) and ask.tag != stale.tag
        assert reply(core, stale, [partial(1), partial(2)]) == []
    effects = reply(core, ask, [])
    assert any(isinstance(e, Report) and e.kind == "key_publish_gave_up" for e in effects)
    assert one(effects).query == KeyPublishedQuery(CID2) and core.gave_up == 1


def test_an_enclave_refusal_or_a_revert_ends_the_job() -> None:
    core = new_core()
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    st = one(reply(core, check, False))
    assert io(reply(core, st, error="committee_unavailable: no share")) == []
    assert core.job is None and core.published == 0
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    st = one(reply(core, check, False))
    make = one(reply(core, st, status(1)))
    combine = one(reply(core, make, key_request()))
    send = one(reply(core, combine, PUBLISHED))
    effects = reply(core, send, status="reverted")
    assert any(isinstance(e, Report) and e.kind == "key_publish_refused" for e in effects)
    assert core.published == 0 and core.job is None


def test_a_passing_chain_failure_is_read_again() -> None:
    core = new_core()
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    assert reply(core, check, error="rpc down", passing=True) == [SetTimer("retry", 2.0)]
    again = one(core.on_timer("retry", 0.0))
    assert again.query == KeyPublishedQuery(CID) and again.tag != check.tag
    assert io(reply(core, again, True)) == [] and core.job is None  # published already


def test_repeated_or_foreign_partials_are_not_counted() -> None:
    """A peer (or a host) that repeats one partial, or hands over a partial of another
    key, must not fill the t - 1: the enclave could not combine them and the job would
    end for good."""
    core = new_core()
    check = one(core.on_message(0, ContractDeployedSeen(contract_id=CID, gatekeeper_id=ME), 0.0))
    st = one(reply(core, check, False))
    make = one(reply(core, st, status(3)))
    ask = one(reply(core, make, key_request()))
    foreign = PartialKeyRelease(contract_id=CID2, worker_id=OTHER, index=3, ciphertext=b"f")
    effects = reply(core, ask, [partial(1), partial(1), foreign])
    assert io(effects) == [] and SetTimer("retry", 2.0) in effects
    ask = one(core.on_timer("retry", 0.0))
    combine = one(reply(core, ask, [partial(1), partial(1), foreign, partial(2)]))
    assert combine.ecall is GATEKEEPER_PUBLISH_CONTRACT_KEY
    assert combine.request.releases == [partial(1), partial(2)]
