"""Polling helpers shared by the e2e tests that run a devnet of their own (recovery,
faults): wait for a condition, a node's status, the ledger's output."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

from sealbridge.client.api import Client
from sealbridge.core.ids import to_hex
from sealbridge.evm.management import AcceptedOutput
from sealbridge.net.http import NodeRefused

T = TypeVar("T")
DEADLINE = 90.0  # generous: two cores, a dozen processes


def wait_for(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except (httpx.HTTPError, NodeRefused) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(0.1)


def get_status(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/v1/status", timeout=5.0).json())


def wait_status(url: str, ready: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The node's status once ``ready`` holds for it."""

    def check() -> dict[str, Any] | None:
        status = get_status(url)
        return status if ready(status) else None

    return wait_for(check, what)


def wait_output(client: Client, contract_id: bytes, applied: int) -> AcceptedOutput:
    """The ledger's latest accepted output once it carries ``applied`` commands."""

    def check() -> AcceptedOutput | None:
        output = client.mgmt.execution_ledger.get_output(contract_id)
        return output if output is not None and output.commands_applied == applied else None

    return wait_for(check, f"the ledger to accept an output with all {applied} commands")


def get_entry(status: dict[str, Any], contract_id: bytes) -> dict[str, Any] | None:
    for entry in status["contracts"]:
        if entry["contract_id"] == to_hex(contract_id):
            return dict(entry)
    return None
