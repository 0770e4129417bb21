"""Registration renewal over fresh node keys (issue 14, item 5; PODG's rule), on the
devnet's real chain and gatekeeper: a worker host renews, the registry then names the
enclave's new encryption key and address, and a key request from the retired keys (a
host that kept the old sealed identity and restarts its enclave from it) is refused for
exactly that reason by the gatekeeper, which reads the registered keys from state
proofs. A renewal mined just before the host died is finished at the next start."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from sealbridge.chain.errors import TransactionReverted
from sealbridge.client.api import Client, Deployment
from sealbridge.config.node import NodeConfig
from sealbridge.core.encoding import encode
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.keyservice.messages import make_key_request
from sealbridge.net.http import NodeClient, NodeRefused
from sealbridge.node.host import NodeHost
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.quote import load_sim_platform_key
from sealbridge.tee.sim import SimBackend

pytestmark = pytest.mark.e2e
WORKER_PROGRAM = "sealbridge.runtime.enclave:WorkerProgram"


def platform_key_file(devnet_home: Path) -> Path:
    return devnet_home / "devnet" / "sim-platform.key"


def worker_host(client: Client, home: Path, enclave: SimBackend | object) -> NodeHost:
    """An out-of-devnet worker host with a funded account of its own."""
    key_file = home / "eth.key"
    if not key_file.exists():
        key_file.write_text(to_hex(os.urandom(32)))
        client.chain.fund(ChainAdapter.address_of(from_hex(key_file.read_text())), 5 * 10**18)
    config = NodeConfig(
        role="worker",
        name="renewer",
        home=str(home),
        rpc_url=client.state.rpc_url,
        addresses_file=client.state.addresses_file,
        eth_private_key=key_file.read_text(),
        port=0,
        gatekeeper_url=client.state.gatekeeper.url,
        registration_ttl=3600,
        heartbeats=False,
    )
    return NodeHost(config, enclave, client.chain)  # type: ignore[arg-type]


def registered(client: Client, node_id: bytes) -> tuple[bytes, bytes]:
    record = client.mgmt.node_registry.get_node(node_id)
    assert record is not None and record.active
    return record.encryption_key, from_hex(record.enclave_address, size=20)


def key_request_refusal(client: Client, devnet_home: Path, sealed: Path, cid: bytes) -> str:
    """What the gatekeeper says to a key request of the enclave restored from ``sealed``."""
    ctx = EnclaveContext(
        program=WORKER_PROGRAM,
        measurement=compute_sim_measurement(WORKER_PROGRAM),
        platform_private_key=load_sim_platform_key(platform_key_file(devnet_home)),
        sealed_identity_file=sealed,
    )
    request = make_key_request(ctx, cid, int(time.time()))
    with NodeClient(client.state.gatekeeper.url) as gk, pytest.raises(NodeRefused) as refused:
        gk.post("/v1/partial", encode(request))
    return refused.value.message


def test_a_renewal_switches_to_fresh_keys_and_retired_keys_get_nothing(
    client: Client, devnet_home: Path, token: Deployment, tmp_path: Path
) -> None:
    sealed = tmp_path / "identity.sealed"
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=sealed,
    ) as enclave:
        host = worker_host(client, tmp_path, enclave)
        host.register()
        old = enclave.node_keys
        assert registered(client, host.node_id) == (old.encryption_key, old.eth_address)
        kept = tmp_path / "kept.sealed"  # a hostile host keeps the old sealed identity
        shutil.copy(sealed, kept)
        expiry = client.mgmt.node_registry.get_node(host.node_id).expiry  # type: ignore[union-attr]
        host.renew_registration()
        new = enclave.node_keys
    assert new.identity_key == old.identity_key == host.node_id
    assert new.encryption_key != old.encryption_key and new.eth_address != old.eth_address
    assert registered(client, host.node_id) == (new.encryption_key, new.eth_address)
    assert client.mgmt.node_registry.get_node(host.node_id).expiry >= expiry  # type: ignore[union-attr]
    # the gatekeeper reads the registered keys from its proofs: the retired ones get
    # nothing, the new ones pass that check (and are refused later, for not being
    # assigned to the token)
    cid = token.contract_id
    assert "retired by a renewal" in key_request_refusal(client, devnet_home, kept, cid)
    assert "not assigned" in key_request_refusal(client, devnet_home, sealed, cid)
    # the host restarts an enclave from the old sealed identity and tries to renew back
    # to the retired keys: the registry refuses them for good
    kept_copy = tmp_path / "kept-copy.sealed"
    shutil.copy(kept, kept_copy)
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=kept_copy,
    ) as rolled_back:
        assert rolled_back.node_keys == old
        host = worker_host(client, tmp_path, rolled_back)
        quote, approval = host.request_approval(expiry + 7200)  # the gatekeeper approves
        with pytest.raises(TransactionReverted, match="node keys were retired"):
            client.mgmt.node_registry.renew(
                host.node_id,
                old.encryption_key,
                to_hex(old.eth_address),
                approval.expiry,
                approval.measurement,
                approval.attestor_id,
                approval.signature,
                quote,
                host.eth_key,
            )
    assert registered(client, host.node_id) == (new.encryption_key, new.eth_address)
    # renewing again needs fresh keys again: the enclave stages new ones every time
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=sealed,
    ) as enclave:
        assert enclave.node_keys == new
        again = worker_host(client, tmp_path, enclave)
        again.register()  # already active: learns the expiry
        again.renew_registration()
        assert enclave.node_keys not in (new, old)


def test_a_renewal_mined_before_a_crash_is_finished_at_the_next_start(
    client: Client, devnet_home: Path, tmp_path: Path
) -> None:
    sealed = tmp_path / "identity.sealed"
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=sealed,
    ) as enclave:
        host = worker_host(client, tmp_path, enclave)
        host.register()
        old = enclave.node_keys
        # the renewal's steps, stopped before the enclave switched (the host died)
        staged, _, _ = host.send_renewal()  # mined, and the host stops before the switch
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=sealed,
    ) as restarted:
        assert restarted.node_keys == old
        worker_host(client, tmp_path, restarted).register()  # already active: adopts
        assert restarted.node_keys == staged.node_keys
    assert registered(client, old.identity_key) == (
        staged.node_keys.encryption_key,
        staged.node_keys.eth_address,
    )


def test_a_node_whose_staged_keys_were_lost_renews_at_once(
    client: Client, devnet_home: Path, tmp_path: Path
) -> None:
    """The renewal was mined, then the staged-keys file was lost: the registry names keys
    no enclave holds. At the next start the host renews over fresh keys at once instead
    of staying unusable until the next renewal is due."""
    sealed = tmp_path / "identity.sealed"
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=sealed,
    ) as enclave:
        host = worker_host(client, tmp_path, enclave)
        host.register()
        staged, _, _ = host.send_renewal()  # mined, and the host stops before the switch
    sealed.with_name(sealed.name + ".next").unlink()
    with SimBackend().launch(
        WORKER_PROGRAM,
        platform_key_file=platform_key_file(devnet_home),
        sealed_identity_file=sealed,
    ) as restarted:
        worker_host(client, tmp_path, restarted).register()
        now = restarted.node_keys
    assert now.encryption_key != staged.node_keys.encryption_key
    assert registered(client, now.identity_key) == (now.encryption_key, now.eth_address)
