"""``sealbridge bench consensus``: one JSON object, or a one-line error on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sealbridge.cli.main import app

runner = CliRunner()
KEYS = {"n", "f", "mean_round_ms", "p95_round_ms", "messages_per_round", "wall_s"}


def test_json_output_has_the_keys_and_sane_values() -> None:
    result = runner.invoke(app, ["bench", "consensus", "--n", "4", "--rounds", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON object, nothing else on stdout
    assert isinstance(out, dict)
    assert KEYS | {"threshold", "mode", "target_ms"} <= set(out)
    assert (out["n"], out["f"], out["threshold"], out["mode"]) == (4, 0, 1, "paper")
    assert out["rounds"] == 2 and len(out["round_ms"]) == 2
    # Real crypto is charged: above the one-delay floor of threshold 1, but not absurdly.
    assert 10.0 < out["mean_round_ms"] <= out["p95_round_ms"] < 1000.0
    assert out["messages_per_round"] == 3 * 3 + 1
    assert out["wall_s"] > 0 and out["target_ms"] == 45.0
    assert "not safe across view changes" in out["caveat"]


def test_safe_mode_and_table_output() -> None:
    args = ["bench", "consensus", "--n", "7", "--rounds", "2", "--mode", "safe", "--json"]
    out = json.loads(runner.invoke(app, args).stdout)
    assert (out["mode"], out["f"], out["threshold"], out["message_delays"]) == ("safe", 1, 5, 5)
    assert out["mean_round_ms"] > 50.0
    table = runner.invoke(app, ["bench", "consensus", "--n", "7", "--rounds", "2"])
    assert table.exit_code == 0 and "consensus rounds in the simulator" in table.stdout
    assert "mean / p50 / p95" in table.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--n", "3"], "--n must be at least 4"),
        (["--n", "16", "--f-ratio", "0.5"], "--f-ratio must be in (0, 1/3]"),
        (["--n", "16", "--f-ratio", "0"], "--f-ratio must be in (0, 1/3]"),
        (["--n", "16", "--rounds", "0"], "--rounds must be at least 1"),
        (["--n", "16", "--mode", "fast"], "--mode must be one of paper, safe"),
        (["--n", "16", "--link-ms", "-1"], "--link-ms must be"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["bench", "consensus", *args, "--json"])
    assert result.exit_code == 2
    stderr: str = result.stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert fragment in stderr and "Traceback" not in stderr
    assert result.stdout == ""
