"""``sealbridge attest``: inspect and verify attestation quotes.

Theory of operation: ``verify`` reads a quote (DCAP SGX/TDX or simulated) and, for DCAP,
its collateral JSON, builds an :class:`AttestationPolicy` from the options and prints the
:class:`Verdict` of :func:`inspect_quote` -- a rich summary, or one JSON object with
``--json``. Exit codes: 0 accepted, 1 refused (the verdict is printed), 2 unusable input
(unreadable file, malformed collateral, unparseable quote, bad option), always as a
one-line message on stderr and never a traceback.

Policy decisions made by the CLI (the library's :class:`AttestationPolicy` stays
explicit):

* without ``--measurement`` the measurement is not checked (``any_measurement``), and the
  output says so; signatures, collateral and TCB status are always checked;
* ``--allow-advisory`` also allows the *advisory-only* statuses SWHardeningNeeded,
  ConfigurationNeeded and ConfigurationAndSWHardeningNeeded (the platform is patched;
  the residual risk is exactly the advisories the operator just accepted). It never allows
  OutOfDate* or Revoked: those need an explicit ``--allow-status``. Every advisory the
  quote reports must still be allowed;
* ``--at`` defaults to the current time; simulated quotes are accepted only with
  ``--trust-sim-platform``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sealbridge.core.encoding import to_json
from sealbridge.core.errors import SealbridgeError
from sealbridge.core.ids import from_hex
from sealbridge.tee.attestation import inspect_quote
from sealbridge.tee.dcap import load_collateral
from sealbridge.tee.policy import (
    ADVISORY_ONLY_STATUSES,
    UP_TO_DATE,
    AttestationPolicy,
    Verdict,
)
from sealbridge.tee.quote import is_sim_quote

app = typer.Typer(
    help="Verify SGX/TDX (DCAP) and simulated attestation quotes under an explicit policy.",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Attestation quotes: verify under an explicit policy."""


EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=EXIT_BAD_INPUT)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def compute_cli_policy(
    *,
    measurements: list[bytes],
    allow_statuses: list[str],
    allow_advisories: list[str],
    trust_sim_platforms: list[bytes],
    max_age: int,
) -> AttestationPolicy:
    """The policy the CLI options describe (see the module docstring)."""
    statuses = [UP_TO_DATE, *allow_statuses]
    if allow_advisories:
        statuses += list(ADVISORY_ONLY_STATUSES)
    return AttestationPolicy(
        allowed_measurements=measurements,
        any_measurement=not measurements,
        allowed_statuses=sorted(set(statuses)),
        allowed_advisories=sorted(set(allow_advisories)),
        accept_simulated=bool(trust_sim_platforms),
        trusted_sim_platform_keys=trust_sim_platforms,
        max_quote_age_seconds=max_age,
    )


def _print_verdict(verdict: Verdict, policy: AttestationPolicy, now: int) -> None:
    console = Console()
    table = Table(title="attestation verdict", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    style = "green" if verdict.accepted else "red"
    table.add_row("verdict", f"[{style}]{'ACCEPTED' if verdict.accepted else 'REFUSED'}[/]")
    table.add_row(
        "kind", verdict.kind + (" (not hardware evidence)" if verdict.kind == "simulated" else "")
    )
    table.add_row("TCB status", verdict.status)
    table.add_row("advisories", ", ".join(verdict.advisories) or "none")
    table.add_row("measurement", "0x" + verdict.measurement.hex())
    table.add_row("report data", "0x" + verdict.report_data.hex())
    table.add_row("checked at", str(now))
    table.add_row("allowed statuses", ", ".join(policy.allowed_statuses))
    table.add_row("allowed advisories", ", ".join(policy.allowed_advisories) or "none")
    table.add_row("reason", verdict.reason)
    console.print(table)
    if policy.any_measurement:
        console.print(
            "[yellow]measurement not checked: no --measurement given (inspection mode, "
            "any_measurement)[/]"
        )


@app.command("verify")
def verify(
    quote_file: Annotated[Path, typer.Argument(help="Raw quote bytes (DCAP or simulated).")],
    collateral: Annotated[
        Path | None,
        typer.Option("--collateral", help="Collateral JSON (dcap-qvl QuoteCollateralV3)."),
    ] = None,
    at: Annotated[
        int | None, typer.Option("--at", help="Unix time to verify at (default: now).")
    ] = None,
    allow_advisory: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-advisory",
            help="Allow an advisory ID (also allows the advisory-only statuses).",
        ),
    ] = None,
    allow_status: Annotated[
        list[str] | None, typer.Option("--allow-status", help="Allow a TCB status.")
    ] = None,
    measurement: Annotated[
        list[str] | None,
        typer.Option("--measurement", help="Allowed measurement (hex); repeatable."),
    ] = None,
    trust_sim_platform: Annotated[
        list[str] | None,
        typer.Option("--trust-sim-platform", help="Trusted sim platform public key (hex)."),
    ] = None,
    max_age: Annotated[
        int, typer.Option("--max-age", help="Max age of a simulated quote (seconds).")
    ] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify a quote and print the verdict (exit 0 accepted, 1 refused, 2 bad input)."""
    quote = _read(quote_file, "quote file")
    collateral_bytes = None if collateral is None else _read(collateral, "collateral file")
    try:
        measurements = [from_hex(m, what="measurement") for m in measurement or []]
        platforms = [
            from_hex(k, size=32, what="sim platform key") for k in trust_sim_platform or []
        ]
        if collateral_bytes is not None:
            load_collateral(collateral_bytes)
        elif not is_sim_quote(quote):
            raise _fail("a DCAP quote needs --collateral")
        policy = compute_cli_policy(
            measurements=measurements,
            allow_statuses=allow_status or [],
            allow_advisories=allow_advisory or [],
            trust_sim_platforms=platforms,
            max_age=max_age,
        )
        now = int(time.time()) if at is None else at
        verdict = inspect_quote(quote, policy=policy, now=now, collateral=collateral_bytes)
    except SealbridgeError as exc:
        raise _fail(f"{type(exc).__name__}: {exc.message}") from exc
    if as_json:
        typer.echo(to_json(verdict))
    else:
        _print_verdict(verdict, policy, now)
    if not verdict.accepted:
        raise typer.Exit(code=EXIT_REFUSED)
