"""The documentation runs as written: docs/tutorial.md step by step on a real devnet, and
the answer-verification script of docs/protocols.md on a real answer.

The tutorial is the test's script. Code blocks fenced as ```python title=NAME are saved
under NAME, exactly as a reader saves them. Every line of a ```sh block is run in order
from ``sealbridge devnet up`` on. A line ``VAR=<contract-id>`` (where the reader pastes the
id the last deploy printed) sets VAR to that id. An unlabelled block right after a ```sh
block is the documented output of that block's last command: each of its lines must
match a line of the real output, in order (``<...>`` stands for any text, table borders
are skipped), and the exit code must be the one the output implies (2 for ``error:``, 1
for a command the contract refused, else 0).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
PLACEHOLDER = re.compile(r"<[^<>]+>")
PASTE = re.compile(r"^(\w+)=<contract-id>$")
DEPLOYED = re.compile(r"contract id (0x[0-9a-f]{64})")
BOX_DRAWING = re.compile("[\u2500-\u257f]")


@dataclass
class Step:
    command: str
    output: list[str] | None = None  # the documented output, when the tutorial shows one


def get_blocks(path: Path, language: str) -> list[str]:
    return [body for info, body in FENCE.findall(path.read_text()) if info.strip() == language]


def read_tutorial(path: Path) -> tuple[dict[str, str], list[Step]]:
    """The files the tutorial asks the reader to save, and its shell steps in order."""
    text = path.read_text()
    files: dict[str, str] = {}
    steps: list[Step] = []
    last_shell_end = -1
    for match in FENCE.finditer(text):
        info, body = match.group(1).strip(), match.group(2)
        title = re.fullmatch(r"python title=(\S+)", info)
        if title:
            assert title.group(1) not in files, f"two blocks save {title.group(1)}"
            files[title.group(1)] = body
        elif info == "sh":
            steps.extend(Step(line) for line in body.splitlines() if line.strip())
            last_shell_end = match.end()
        elif info == "" and last_shell_end >= 0:
            between = text[last_shell_end : match.start()]
            assert not between.strip(), f"output block without its command: {body[:60]!r}"
            assert steps[-1].output is None
            steps[-1].output = body.splitlines()
            last_shell_end = -1
        else:
            last_shell_end = -1
    return files, steps


def squeeze(line: str) -> str:
    return " ".join(line.split())


def line_pattern(documented: str) -> re.Pattern[str]:
    """A documented output line as a pattern: placeholders match any text."""
    parts = PLACEHOLDER.split(squeeze(documented))
    return re.compile(".+?".join(re.escape(part) for part in parts))


def check_output(step: Step, actual: str) -> None:
    """Every documented line (but table borders and blanks) matches an actual line, in
    order."""
    assert step.output is not None
    lines = [squeeze(line) for line in actual.splitlines()]
    position = 0
    for documented in step.output:
        if not documented.strip() or BOX_DRAWING.search(documented):
            continue
        pattern = line_pattern(documented)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        assert position < len(lines), (
            f"{step.command}\nthe tutorial shows: {documented}\nbut the output is:\n{actual}"
        )
        position += 1


def expected_exit(step: Step) -> int:
    shown = step.output or []
    if any(line.startswith("error:") for line in shown):
        return 2
    if any("refused by the contract:" in line for line in shown):
        return 1
    return 0


def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    files, steps = read_tutorial(DOCS / "tutorial.md")
    assert {"poll.py", "lucky_poll.py", "poll_client.py"} <= set(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    commands = [s.command for s in steps]
    steps = steps[commands.index("sealbridge devnet up") :]  # after the set-up (make demo)
    assert steps[-1].command == "sealbridge devnet down"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "COLUMNS": "1000",  # rich wraps at 80 columns when not on a terminal
    }
    env.pop("SEALBRIDGE_HOME", None)
    deployed = ""
    exits: list[int] = []
    try:
        for step in steps:
            paste = PASTE.fullmatch(step.command)
            if paste:
                assert deployed, f"{step.command}: no deploy printed an id before"
                env[paste.group(1)] = deployed
                continue
            out = subprocess.run(
                ["bash", "-c", step.command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            shown = f"{step.command}\n{out.stdout}\n{out.stderr}"
            assert out.returncode == expected_exit(step), shown
            exits.append(out.returncode)
            if step.output is not None:
                check_output(step, out.stdout + out.stderr)
            if step.command.startswith("sealbridge deploy") and out.returncode == 0:
                match = DEPLOYED.search(out.stdout)
                assert match, shown
                deployed = match.group(1)
        # the story covers accepted, refused and erroring steps
        assert {0, 1, 2} <= set(exits)
        assert sum(1 for s in steps if s.output is not None) >= 20
        # The protocols doc's verification script accepts the saved answer ...
        (script,) = [b for b in get_blocks(DOCS / "protocols.md", "python") if "verify(" in b]
        (tmp_path / "verify.py").write_text(script)
        check = [sys.executable, "verify.py", "answer.json"]
        ok = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stderr
        # ... and rejects it once the signed payload is altered.
        answer = (tmp_path / "answer.json").read_text()
        tampered = re.sub(
            r'("signed_payload": "0x[0-9a-f]*?)([0-9a-f])"',
            lambda m: m.group(1) + ("0" if m.group(2) != "0" else "1") + '"',
            answer,
        )
        assert tampered != answer
        (tmp_path / "answer.json").write_text(tampered)
        bad = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert bad.returncode != 0 and "InvalidSignature" in bad.stderr
    finally:
        subprocess.run(
            ["bash", "-c", "sealbridge devnet down"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            check=False,
            timeout=60,
        )


def test_documented_output_is_checked() -> None:
    """The matcher refuses output that differs from the tutorial's (so the test can fail)."""
    step = Step("sealbridge query $POLL my_vote", ['my_vote = "oslo"  (block <n>, x)'])
    check_output(step, 'my_vote = "oslo"  (block 12, x)\n')
    with pytest.raises(AssertionError):
        check_output(step, 'my_vote = "kyoto"  (block 12, x)\n')
    with pytest.raises(AssertionError):
        check_output(step, "")
    assert expected_exit(Step("x", ["error: no"])) == 2
    assert expected_exit(Step("x", ["refused by the contract: code: why"])) == 1
    assert expected_exit(Step("x")) == 0
