"""The gatekeeper's HTTP entry points refuse bad input with typed errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.core.encoding import encode
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.keyservice.messages import (
    KEY_REQUEST_SIGN_TAG,
    KeyRequest,
    KeyRequestBody,
    RegistrationRequest,
)
from sealbridge.net.http import NodeClient, NodeRefused, TransportError
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.quote import load_sim_platform_key

pytestmark = pytest.mark.e2e
WORKER_PROGRAM = "sealbridge.runtime.enclave:WorkerProgram"


def enclave(devnet_home: Path, *, trusted_platform: bool = True) -> EnclaveContext:
    """An enclave identity with the real worker measurement, on the devnet's sim platform
    (or on another one)."""
    platform = (
        load_sim_platform_key(devnet_home / "devnet" / "sim-platform.key")
        if trusted_platform
        else ed25519_keypair()[0]
    )
    return EnclaveContext(
        program=WORKER_PROGRAM,
        measurement=compute_sim_measurement(WORKER_PROGRAM),
        platform_private_key=platform,
    )


def registration(client: Client, node: EnclaveContext) -> RegistrationRequest:
    return RegistrationRequest(
        role=2,
        node=node.identity,
        quote=node.get_identity_quote(),
        expiry=int(time.time()) + 3600,
        chain_id=client.chain.chain_id,
        registry_address=client.addresses.node_registry,
    )


def status(client: Client) -> dict[str, Any]:
    return dict(NodeClient(client.state.gatekeeper.url).get_json("/v1/status"))


def test_garbage_is_refused(client: Client) -> None:
    with NodeClient(client.state.gatekeeper.url) as gk:
        for path in ("/v1/attest", "/v1/partial"):
            with pytest.raises(NodeRefused) as refused:
                gk.post(path, b"\x92not-a-request")
            assert refused.value.status == 400
            assert refused.value.remote_code == "encoding"


def test_quote_from_an_untrusted_platform_is_refused(client: Client, devnet_home: Path) -> None:
    before = status(client)["registrations_approved"]
    request = registration(client, enclave(devnet_home, trusted_platform=False))
    with NodeClient(client.state.gatekeeper.url) as gk, pytest.raises(NodeRefused) as refused:
        gk.post("/v1/attest", encode(request))
    assert refused.value.kind == "QuoteSignatureError"
    assert status(client)["registrations_approved"] == before


def test_an_attested_but_unregistered_node_gets_no_key(
    client: Client, devnet_home: Path, token: Deployment
) -> None:
    """Good quote, right measurement, trusted platform -- but not registered nor assigned."""
    node = enclave(devnet_home)
    # The gatekeeper would approve its registration (its quote is fine) ...
    with NodeClient(client.state.gatekeeper.url) as gk:
        gk.post("/v1/attest", encode(registration(client, node)))
    # ... but without registering and being assigned it gets no contract key.
    before = status(client)["partials_released"]
    body = encode(
        KeyRequestBody(
            contract_id=token.contract_id,
            worker_id=node.identity.identity_key,
            issued_at=int(time.time()),
        )
    )
    request = KeyRequest(
        body=body,
        signature=node.sign_identity(KEY_REQUEST_SIGN_TAG + body),
        node=node.identity,
        quote=node.get_identity_quote(),
    )
    with NodeClient(client.state.gatekeeper.url) as gk, pytest.raises(NodeRefused) as refused:
        gk.post("/v1/partial", encode(request))
    assert "not an active registered worker" in refused.value.message
    assert status(client)["partials_released"] == before


def test_the_committee_holds_the_root_key_as_shares(client: Client) -> None:
    """Every gatekeeper holds a share of the same group key; none holds the root key."""
    keys = set()
    for entry in client.state.gatekeepers:
        committee = NodeClient(entry.url).get_json("/v1/status")["committee"]
        assert committee["holds_share"] and committee["current_era"] >= 1
        keys.add(committee["group_public_key"])
    assert len(keys) == 1
    with NodeClient(client.state.gatekeeper.url) as gk, pytest.raises(TransportError) as gone:
        gk.post("/v1/keys", b"")
    assert "404" in gone.value.message  # there is no whole-key release any more
