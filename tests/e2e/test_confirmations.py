"""Nodes act on a block only after the configured number of confirmations."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.client.api import Client
from sealbridge.core.ids import to_hex
from sealbridge.devnet.launcher import start_devnet, stop_devnet
from sealbridge.net.http import NodeClient

pytestmark = pytest.mark.e2e


def test_workers_trail_the_tip_by_the_confirmations(tmp_path: Path) -> None:
    start_devnet(tmp_path, workers=1, confirmations=2, block_time=0.5)
    try:
        client = Client.from_home(tmp_path)
        deployment = client.deploy("token", as_user="alice")
        cid = to_hex(deployment.contract_id)
        r = client.call(cid, "mint", {"to": "bob", "amount": 42}, as_user="alice")
        client.wait_applied(deployment.contract_id, r.block_number)
        status = NodeClient(client.state.workers[0].url).get_json("/v1/status")
        tip = client.chain.get_block_number()  # read after the status: it can only be higher
        assert status["height"] <= tip - 2  # never acts on a block with fewer confirmations
        assert tip >= r.block_number + 2
        assert client.query(cid, "balance", {"owner": "bob"}, as_user="bob").answer.result == 42
    finally:
        stop_devnet(tmp_path)


def test_bad_devnet_parameters_are_refused(tmp_path: Path) -> None:
    from sealbridge.devnet.launcher import DevnetError

    with pytest.raises(DevnetError):
        start_devnet(tmp_path, workers=0)
    with pytest.raises(DevnetError):
        start_devnet(tmp_path, confirmations=-1)
    with pytest.raises(DevnetError):
        start_devnet(tmp_path, block_time=0)
    assert not (tmp_path / "devnet" / "devnet.json").exists()
