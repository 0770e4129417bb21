"""Options shared by every tier.

``--reverse-order`` runs the tests of each module in the reverse of the written order
(modules keep their order). No test may depend on another having run before it; running
a module reversed is how that is checked without a new dependency (see tests/README.md).
Tests marked ``runs_last`` stay last: ``tests/e2e/conftest.py`` moves them after
reordering.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse-order",
        action="store_true",
        default=False,
        help="run the tests of each module in reverse order (module order unchanged)",
    )


def reverse_within_modules(items: list[pytest.Item]) -> list[pytest.Item]:
    """The same items, each module's tests reversed, modules in their first-seen order."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    return [item for group in modules.values() for item in reversed(group)]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse-order"):
        items[:] = reverse_within_modules(items)
