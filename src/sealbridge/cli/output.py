"""Shared CLI output: rich for people, JSON for scripts, one-line errors for both."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from sealbridge.core.encoding import to_json
from sealbridge.core.errors import SealbridgeError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, *, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(to_json(value, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn typed sealbridge errors into a one-line message and exit code 2."""
    try:
        yield
    except SealbridgeError as exc:
        fail(f"{exc.message} [{getattr(exc, 'remote_code', exc.code)}]")
    except KeyboardInterrupt:
        fail("interrupted", code=130)
