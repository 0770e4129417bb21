"""``sealbridge bench``: benchmarks that run in the simulator.

``sealbridge bench consensus --n N --f-ratio R --rounds K [--mode paper|safe]
[--link-ms 10] [--seed S] [--json]`` runs
:func:`sealbridge.sim.consensus_run.run_consensus_rounds`: K closed-loop rounds of N
replicas with real BLS operations charged to virtual time, and prints a table, or with
``--json`` exactly one JSON object (the run's result plus ``paper_ms``, ``target_ms`` and
``meets_target``). Bad input is a one-line error on stderr and exit code 2.

``--mode paper`` (default) is InterTrust's round: threshold f + 1, one certificate
round, three message delays -- a measurement mode, not safe across view changes.
``--mode safe`` is the safe protocol: threshold ceil((n + f + 1) / 2), prepare and commit
certificates, five message delays.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sealbridge.cli.output import console, fail, friendly_errors, print_json
from sealbridge.core.encoding import to_builtins

app = typer.Typer(
    help="Benchmarks run in the deterministic simulator (virtual time, real crypto).",
    no_args_is_help=True,
)

MODES = ("paper", "safe")
MAX_RATIO = 1 / 3


@app.callback()
def _group() -> None:
    """Benchmarks in the simulator."""


def check_consensus_options(
    n: int, f_ratio: float, rounds: int, mode: str, link_ms: float, seed: int
) -> None:
    """Fail with a one-line message on bad options (before any work is done)."""
    if n < 4:
        fail(f"--n must be at least 4 replicas, not {n}")
    if not math.isfinite(f_ratio) or not 0 < f_ratio <= MAX_RATIO + 1e-9:
        fail(f"--f-ratio must be in (0, 1/3], not {f_ratio:g}")
    if rounds < 1:
        fail(f"--rounds must be at least 1, not {rounds}")
    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not math.isfinite(link_ms) or link_ms < 0:
        fail(f"--link-ms must be a finite number of milliseconds >= 0, not {link_ms:g}")
    if seed < 0:
        fail(f"--seed must be >= 0, not {seed}")


@app.command("consensus")
def consensus(
    n: Annotated[int, typer.Option("--n", help="Replicas (at least 4).")] = 64,
    f_ratio: Annotated[
        float,
        typer.Option(
            "--f-ratio",
            help="f/n in (0, 1/3]; f = min(floor(n * ratio), floor((n - 3) / 3)).",
        ),
    ] = MAX_RATIO,
    rounds: Annotated[
        int, typer.Option("--rounds", help="Rounds; round 1 (cold) is reported apart.")
    ] = 5,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="paper: threshold f+1, one certificate (InterTrust; not safe across view "
            "changes); safe: safe quorum, two certificates.",
        ),
    ] = "paper",
    link_ms: Annotated[float, typer.Option("--link-ms", help="Link delay in ms.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the keys and the run.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Closed-loop consensus rounds of N replicas in the simulator, real BLS charged to
    virtual time (MeasuredCpu); prints the round time, messages per round and wall time."""
    check_consensus_options(n, f_ratio, rounds, mode, link_ms, seed)
    from sealbridge.sim.consensus_run import (
        compute_paper_round_ms,
        compute_target_round_ms,
        run_consensus_rounds,
    )

    link = link_ms / 1e3
    threshold: Literal["paper", "safe"] = "paper" if mode == "paper" else "safe"
    with friendly_errors():
        if as_json:
            result = run_consensus_rounds(
                n, f_ratio, rounds=rounds, threshold=threshold, link_delay=link, seed=seed
            )
        else:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=True) as progress:
                task = progress.add_task(f"n={n} {mode} mode: rounds", total=rounds)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done)

                result = run_consensus_rounds(
                    n,
                    f_ratio,
                    rounds=rounds,
                    threshold=threshold,
                    link_delay=link,
                    seed=seed,
                    progress=advance,
                )
    paper_ms, source = compute_paper_round_ms(n, f_ratio)
    target_ms = compute_target_round_ms(paper_ms, link)
    out: dict[str, Any] = to_builtins(result)
    out["paper_ms"] = round(paper_ms, 3)
    out["paper_source"] = source
    out["target_ms"] = round(target_ms, 3)
    out["meets_target"] = result.mean_round_ms <= target_ms
    if as_json:
        print_json(out)
        return
    _print_result(out)


def _print_result(out: dict[str, Any]) -> None:
    table = Table(title="consensus rounds in the simulator", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    path = out["critical_path"]
    met = "[green]yes[/]" if out["meets_target"] else "[red]no[/]"
    rows = [
        ("replicas n / faults f", f"{out['n']} / {out['f']}"),
        ("mode", f"{out['mode']} (threshold {out['threshold']}, {out['message_delays']} delays)"),
        ("link delay", f"{out['link_delay_ms']:g} ms (CPU: {out['cpu']})"),
        ("round 1 (cold)", f"{out['first_round_ms']:.2f} ms"),
        (
            "mean / p50 / p95",
            f"{out['mean_round_ms']:.2f} / {out['p50_round_ms']:.2f} / "
            f"{out['p95_round_ms']:.2f} ms over {out['measured_rounds']} rounds",
        ),
        (
            "floor (links only)",
            f"{out['floor_ms']:g} ms; crypto {out['crypto_overhead_ms']:.2f} ms",
        ),
        (
            "critical path",
            f"sign {path['replica_sign_ms']:.2f}, shares {path['collector_shares_ms']:.2f}, "
            f"combine+verify {path['collector_combine_ms']:.2f}, "
            f"cert verify {path['replica_commit_ms']:.2f}, other {path['other_ms']:.2f} ms",
        ),
        (
            "paper / target",
            f"{out['paper_ms']:g} ms ({out['paper_source']}) / {out['target_ms']:g} ms: met {met}",
        ),
        (
            "messages / round",
            f"{out['messages_per_round']:g} ({out['bytes_per_round']:,.0f} bytes)",
        ),
        (
            "CPU per round",
            f"collector {out['collector_cpu_ms_per_round']:.2f} ms, replica "
            f"{out['replica_cpu_ms_per_round']:.2f} ms",
        ),
        ("wall time", f"{out['wall_s']:.2f} s ({out['wall_s_per_round']:.3f} s per round)"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    if out["caveat"]:
        console.print(f"[yellow]{out['caveat']}[/]")
