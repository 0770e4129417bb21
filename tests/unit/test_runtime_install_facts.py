"""Install facts come from the chain, verified in the enclave (issue 14, item 1).

The attack: ``InstallContract`` carries a code hash, a deployer commitment and an
executor set from the worker's host. A host that names its own commitment and code gets
its code installed under the real contract key (the real deployer's deploy is refused);
its code then reads every later command's arguments. The runtime now takes these facts
only from the ``ContractDeployed`` and ``ContractKeyPublished`` events it read out of
verified blocks (or from the contract's own sealed state), and refuses anything else
with a typed error that changes nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sealbridge.contracts.executor import compute_code_hash
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime import errors
from sealbridge.runtime.enclave import UnverifiedWorkerProgram, WorkerProgram
from sealbridge.runtime.messages import DEPLOY_METHOD, InstallContract, compute_deployer_commitment
from sealbridge.runtime.worker import WorkerRuntime
from tests.unit.chain_builder import ChainBuilder, contract_deployed_log, key_published_log
from tests.unit.test_runtime_chainview import (
    ALICE_PUB,
    DOMAIN,
    EXECUTORS,
    TOKEN,
    Contract,
    feed,
    plain_block,
    snapshot,
)
from tests.unit.test_runtime_worker import make_enclave

replace = msgspec.structs.replace
MALLORY, MALLORY_PUB = ed25519_keypair(b"m" * 32)
# the host's code: any code but the deployer's (here the token under another name)
SPY = TOKEN.replace(b"class Token(", b"class Spy(")


def deployed_log(token: Contract, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "code_hash": compute_code_hash(token.code),
        "workers": token.workers,
        "deployer_commitment": compute_deployer_commitment(token.contract_id, ALICE_PUB),
    }
    fields.update(overrides)
    return contract_deployed_log(token.contract_id, **fields)


def published_log(token: Contract) -> Any:
    return key_published_log(
        token.contract_id, token.keys.command_public_key, token.keys.message_public_key
    )


def verified_worker(chain: ChainBuilder, index: int = 0) -> WorkerRuntime:
    worker = WorkerRuntime(EXECUTORS[index])
    worker.configure_chain(chain.config())
    return worker


def deploy_and_publish(chain: ChainBuilder, worker: WorkerRuntime, token: Contract) -> None:
    feed(worker, chain.next([deployed_log(token)], [published_log(token)]))


def deployed_and_sealed() -> tuple[ChainBuilder, Contract, bytes]:
    """A token installed, deployed and sealed by a verified worker."""
    chain, token = ChainBuilder(), Contract(1)
    worker = verified_worker(chain)
    deploy_and_publish(chain, worker, token)
    worker.install_contract(token.install_request(worker))
    out = feed(worker, chain.next([chain.command(token.contract_id, token.deploy())]))
    (sealed,) = [c.sealed_state for c in out.contracts]
    return chain, token, sealed


def resumed_at_head(chain: ChainBuilder, index: int) -> WorkerRuntime:
    """A fresh enclave whose verified view starts at the chain's head (as on a restart)."""
    resumed = WorkerRuntime(EXECUTORS[index])
    later = ChainBuilder(anchor_number=chain.number)
    resumed.configure_chain(replace(later.config(), anchor_hash=chain.head_hash))
    return resumed


def test_the_honest_install_applies_the_real_deploy() -> None:
    chain, token = ChainBuilder(), Contract(1)
    worker = verified_worker(chain)
    deploy_and_publish(chain, worker, token)
    worker.install_contract(token.install_request(worker))
    out = feed(worker, chain.next([chain.command(token.contract_id, token.deploy())]))
    assert [r.status for r in out.receipts] == ["applied"]
    assert worker.get_contract(token.contract_id).code == TOKEN


@pytest.mark.parametrize(
    "field",
    ["deployer_commitment", "code_hash", "both", "workers"],
)
def test_a_host_cannot_install_under_its_own_facts(field: str) -> None:
    """The reproduced attack: the host names its own deployer commitment (and code hash)
    for a real contract; before the fix the install succeeded, the real deploy was
    refused and the host's deploy installed its code under the real key."""
    chain, token = ChainBuilder(), Contract(1)
    worker = verified_worker(chain)
    deploy_and_publish(chain, worker, token)
    honest = token.install_request(worker)
    forged = {
        "deployer_commitment": {
            "deployer_commitment": compute_deployer_commitment(token.contract_id, MALLORY_PUB)
        },
        "code_hash": {"code_hash": compute_code_hash(SPY)},
        "both": {
            "deployer_commitment": compute_deployer_commitment(token.contract_id, MALLORY_PUB),
            "code_hash": compute_code_hash(SPY),
        },
        "workers": {"workers": [*token.workers, b"\x77" * 32]},
    }[field]
    before = snapshot(worker)
    with pytest.raises(errors.InstallFactsMismatch):
        worker.install_contract(replace(honest, **forged))
    assert snapshot(worker) == before and worker.contracts == {}
    # and the honest install still works afterwards
    worker.install_contract(honest)
    mallory_deploy = Contract(1, code=SPY).command(
        MALLORY, DEPLOY_METHOD, {"code": SPY, "init": {}}
    )
    out = feed(
        worker,
        chain.next(
            [chain.command(token.contract_id, mallory_deploy)],
            [chain.command(token.contract_id, token.deploy())],
        ),
    )
    assert [r.status for r in out.receipts] == ["applied", "applied"]
    assert worker.get_contract(token.contract_id).code == TOKEN  # alice's, not mallory's


def test_an_install_before_the_deploy_block_is_refused_until_it_is_verified() -> None:
    chain, token = ChainBuilder(), Contract(1)
    worker = verified_worker(chain)
    with pytest.raises(errors.InstallFactsUnverified, match="ContractDeployed"):
        worker.install_contract(token.install_request(worker))
    feed(worker, chain.next([deployed_log(token)]))  # deployed, key not yet published
    with pytest.raises(errors.InstallFactsUnverified, match="published"):
        worker.install_contract(token.install_request(worker))
    feed(worker, chain.next([published_log(token)]))
    worker.install_contract(token.install_request(worker))
    assert token.contract_id in worker.contracts


def test_a_deploy_event_from_another_address_is_not_a_fact() -> None:
    chain, token = ChainBuilder(), Contract(1)
    worker = verified_worker(chain)
    from tests.unit.chain_builder import STRANGER

    feed(worker, chain.next([deployed_log(token, address=STRANGER)], [published_log(token)]))
    with pytest.raises(errors.InstallFactsUnverified):
        worker.install_contract(token.install_request(worker))


def test_a_worker_outside_the_executor_set_is_refused() -> None:
    chain, token = ChainBuilder(), Contract(1, workers=DOMAIN[1:])
    worker = verified_worker(chain, index=0)  # EXECUTORS[0] is not in DOMAIN[1:]
    deploy_and_publish(chain, worker, token)
    with pytest.raises(errors.InstallFactsUnverified):  # the event does not name it
        worker.install_contract(token.install_request(worker))


def test_a_stale_key_version_is_refused() -> None:
    chain, token = ChainBuilder(), Contract(1)
    worker = verified_worker(chain)
    deploy_and_publish(chain, worker, token)
    with pytest.raises(errors.InstallFactsMismatch, match="key version"):
        worker.install_contract(replace(token.install_request(worker), key_version=1))


def test_a_sealed_state_keeps_its_facts() -> None:
    """Resuming from a sealed state, the facts sealed with it count: a host cannot resume
    the contract under another deployer commitment either."""
    chain, token, sealed = deployed_and_sealed()
    resumed = resumed_at_head(chain, 0)
    request = replace(
        token.install_request(resumed), sealed_state=sealed, resume_height=chain.number
    )
    forged = compute_deployer_commitment(token.contract_id, MALLORY_PUB)
    with pytest.raises(errors.InstallFactsMismatch, match="sealed state"):
        resumed.install_contract(replace(request, deployer_commitment=forged))
    status = resumed.install_contract(request)
    assert status.height == chain.number


def test_the_enclave_program_installs_only_with_a_verified_view() -> None:
    """A host cannot pick the unverified mode by never configuring the chain: the
    WorkerProgram refuses installs and blocks until the view exists."""
    program = WorkerProgram(make_enclave())
    token = Contract(1)
    request: InstallContract = token.install_request(program.runtime)
    with pytest.raises(errors.ChainNotConfigured):
        program.install_contract(request)
    with pytest.raises(errors.ChainNotConfigured):
        program.process_block(plain_block(1, (token, token.deploy())))
    assert program.runtime.contracts == {}
    # the labelled replay program (another measurement) offers the unverified mode
    replay = UnverifiedWorkerProgram(make_enclave())
    replay.install_contract(token.install_request(replay.runtime))
    assert token.contract_id in replay.runtime.contracts


def test_a_sealed_state_under_a_rotated_key_version_is_refused() -> None:
    """The host resumes a contract from a state sealed under key version 0 after the
    enclave has read, in a verified block, that the key rotated to version 1."""
    from tests.unit.test_runtime_rotation import rotated_log

    chain, token, sealed = deployed_and_sealed()
    resumed = resumed_at_head(chain, 1)
    fresh = b"\x42" * 32
    feed(resumed, chain.next([rotated_log(token.contract_id, 1, fresh, fresh)]))
    request = replace(token.install_request(resumed), sealed_state=sealed)
    with pytest.raises(errors.InstallFactsMismatch, match="key version 0, the chain 1"):
        resumed.install_contract(request)
    assert resumed.contracts == {}
