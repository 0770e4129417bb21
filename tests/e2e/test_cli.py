"""The ``sealbridge`` command line against the running devnet (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

pytestmark = pytest.mark.e2e


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealbridge.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_token(devnet_home: Path) -> str:
    """A token deployed through the CLI (separate from the token other modules use)."""
    out = run("deploy", "token", "--as", "bob", "--json", home=devnet_home)
    assert out.returncode == 0, out.stderr
    deployment = json.loads(out.stdout)
    assert deployment["deployer"] == "bob"
    return str(deployment["contract_id"])


def test_status_json(devnet_home: Path) -> None:
    out = run("devnet", "status", "--json", home=devnet_home)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    phases = {n["name"]: n["phase"] for n in status["nodes"]}
    assert phases == {
        "gatekeeper-1": "following",
        "gatekeeper-2": "following",
        "gatekeeper-3": "following",
        "worker-1": "following",
        "worker-2": "following",
    }


def test_call_then_query_json_verifies_with_a_standard_library(
    devnet_home: Path, cli_token: str
) -> None:
    token_id = cli_token
    query = (
        "query",
        token_id,
        "balance",
        "--args",
        '{"owner": "carol"}',
        "--as",
        "carol",
        "--json",
    )
    before = run(*query, home=devnet_home)  # other tests of the module may have paid carol
    assert before.returncode == 0, before.stderr
    carol = json.loads(before.stdout)["answer"]["result"]
    mint = run(
        "call",
        token_id,
        "mint",
        "--args",
        '{"to": "carol", "amount": 5}',
        "--as",
        "bob",
        "--json",
        home=devnet_home,
    )
    assert mint.returncode == 0, mint.stderr
    assert json.loads(mint.stdout)["method"] == "mint"
    out = run(*query, home=devnet_home)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    payload = bytes.fromhex(record["signed_payload"][2:])
    prefix = bytes.fromhex(record["signed_message_prefix"][2:])
    signature = bytes.fromhex(record["signature"][2:])
    worker = Ed25519PublicKey.from_public_bytes(bytes.fromhex(record["worker_key"][2:]))
    worker.verify(signature, prefix + payload)  # raises if it does not verify
    answer = msgspec.msgpack.decode(payload)
    assert answer["result"] == record["answer"]["result"] == carol + 5
    with pytest.raises(Exception):  # noqa: B017 - any InvalidSignature
        worker.verify(signature, prefix + payload + b"x")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "0x" + "00" * 32, "mint", "--args", "{}", "--as", "alice"], "no contract"),
        (["call", "TOKEN", "mint", "--args", "{not json", "--as", "alice"], "not valid JSON"),
        (["call", "TOKEN", "mint", "--args", "[1]", "--as", "alice"], "JSON object"),
        (["call", "TOKEN", "mint", "--args", "{}", "--as", "mallory"], "no key named"),
        (["query", "0xzz", "balance", "--as", "alice"], "not valid hex"),
        (
            ["query", "TOKEN", "balance", "--args", '{"owner": "alice"}', "--as", "bob"],
            "only the account given as 'owner' may ask",
        ),
        (["deploy", "nosuch", "--as", "alice"], "neither a built-in contract"),
        (["rotate-key", "TOKEN", "--as", "alice"], "only its deployer"),
        (["rotate-key", "0x1234", "--as", "bob"], "contract"),
    ],
)
def test_bad_input_gets_one_line_and_nonzero_exit(
    devnet_home: Path, cli_token: str, args: list[str], message: str
) -> None:
    token_id = cli_token
    out = run(*[token_id if a == "TOKEN" else a for a in args], home=devnet_home)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) <= 3  # one message (rich may wrap it)


def test_no_devnet_running(tmp_path: Path) -> None:
    out = run("devnet", "status", home=tmp_path)
    assert out.returncode == 2
    assert "no devnet is running" in out.stderr
    assert "Traceback" not in out.stderr


def test_call_reports_the_contract_outcome(devnet_home: Path, cli_token: str) -> None:
    ok = run(  # carol gets what her transfer of 1 below needs, whatever ran before
        "call",
        cli_token,
        "mint",
        "--args",
        '{"to": "carol", "amount": 7}',
        "--as",
        "bob",
        home=devnet_home,
    )
    assert ok.returncode == 0, ok.stderr
    assert "accepted" in ok.stdout
    refused = run(
        "call",
        cli_token,
        "transfer",
        "--args",
        '{"to": "alice", "amount": 999999}',
        "--as",
        "carol",
        "--json",
        home=devnet_home,
    )
    assert refused.returncode == 1
    outcome = json.loads(refused.stdout)["outcome"]
    assert outcome["ok"] is False and outcome["error"] == "insufficient_balance"
    # The refused command used up carol's nonce, so her next command is accepted.
    again = run(
        "call",
        cli_token,
        "transfer",
        "--args",
        '{"to": "alice", "amount": 1}',
        "--as",
        "carol",
        "--json",
        home=devnet_home,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    outcome = json.loads(again.stdout)["outcome"]
    assert outcome["ok"] is True and outcome["gas_used"] > 0


def test_rotate_key_then_the_contract_keeps_working(devnet_home: Path, cli_token: str) -> None:
    """The deployer rotates the key; the state carries over and new commands apply (the
    client encrypts to the key now on chain)."""
    before = run(
        "query",
        cli_token,
        "balance",
        "--args",
        '{"owner": "bob"}',
        "--as",
        "bob",
        "--json",
        home=devnet_home,
    )
    assert before.returncode == 0, before.stderr
    out = run("rotate-key", cli_token, "--as", "bob", "--json", home=devnet_home)
    assert out.returncode == 0, out.stdout + out.stderr
    rotation = json.loads(out.stdout)
    assert rotation["version"] == 1
    assert rotation["checkpoint_height"] >= rotation["rotated_at"] > 0
    after = run(
        "query",
        cli_token,
        "balance",
        "--args",
        '{"owner": "bob"}',
        "--as",
        "bob",
        "--json",
        home=devnet_home,
    )
    assert after.returncode == 0, after.stderr
    assert (
        json.loads(after.stdout)["answer"]["result"]
        == json.loads(before.stdout)["answer"]["result"]
    )
    mint = run(
        "call",
        cli_token,
        "mint",
        "--args",
        '{"to": "bob", "amount": 3}',
        "--as",
        "bob",
        home=devnet_home,
    )
    assert mint.returncode == 0, mint.stdout + mint.stderr
    assert "accepted" in mint.stdout
