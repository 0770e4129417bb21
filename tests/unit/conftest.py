"""Unit tests drive cores directly: no processes, no anvil.

Every unit test's setup, call and teardown run with process creation refused (fixtures
of any scope included), so a test that needs a process -- an anvil node, an enclave
process, a second interpreter -- fails here with its name; it belongs in
``tests/integration`` (see ``tests/README.md``).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest


class ProcessInUnitTest(RuntimeError):
    pass


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise ProcessInUnitTest(
        "a unit test started a process; move it to tests/integration (see tests/README.md)"
    )


_GUARDED: list[tuple[Any, str]] = [
    (subprocess.Popen, "__init__"),
    (multiprocessing.Process, "start"),
    (os, "fork"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
]


@contextmanager
def no_processes() -> Iterator[None]:
    saved = [(owner, name, getattr(owner, name)) for owner, name in _GUARDED]
    for owner, name, _ in saved:
        setattr(owner, name, _refuse)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with no_processes():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with no_processes():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    with no_processes():
        return (yield)
