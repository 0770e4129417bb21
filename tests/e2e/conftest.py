"""A real devnet (anvil + gatekeeper + two workers as OS processes) shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.core.ids import to_hex
from sealbridge.devnet.launcher import start_devnet, stop_devnet


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``runs_last`` (the leak scan) run after every other test of the
    session, so they see what the others wrote to the shared devnet; each still passes
    on its own. This runs after any reordering (``--reverse-order`` in tests/conftest.py),
    so they stay last whatever the order asked for. The order is a benefit, not a need:
    the scan makes confidential writes of its own and passes when run alone or first."""
    last = [item for item in items if item.get_closest_marker("runs_last")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("runs_last")] + last


@pytest.fixture(scope="session")
def devnet_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("devnet")
    start_devnet(home, workers=2)
    try:
        yield home
    finally:
        stop_devnet(home)


@pytest.fixture(scope="session")
def client(devnet_home: Path) -> Client:
    return Client.from_home(devnet_home)


@pytest.fixture(scope="session")
def token(client: Client) -> Deployment:
    return client.deploy("token", as_user="alice")


@pytest.fixture(scope="session")
def token_id(token: Deployment) -> str:
    return to_hex(token.contract_id)
