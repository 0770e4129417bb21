"""``sealbridge keyrelease``: key-release contracts on a two-chain devnet.

``demo`` runs the whole story in one command. The other commands drive a devnet service
(``up`` starts it in the background, ``down`` stops it) one step at a time: ``vault``,
``deposit``, ``request``, ``accept``, ``status``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from sealbridge.cli.output import console, fail, friendly_errors
from sealbridge.core.encoding import Message, decode, encode, to_builtins

app = typer.Typer(
    help="Key-release contracts: TEE vaults, USD chunks, the matcher, tit-for-tat swaps.",
    no_args_is_help=True,
)

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home", envvar="SEALBRIDGE_HOME", help="Where the key-release service keeps state."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DEFAULT_HOME = Path(".sealbridge")
DEFAULT_PORT = 8645
START_TIMEOUT = 90.0


def _state_dir(home: Path) -> Path:
    return home / "keyrelease"


def _state_file(home: Path) -> Path:
    return _state_dir(home) / "service.json"


def _show_event(event: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(to_builtins(event)), flush=True)
        return
    detail = ", ".join(
        f"{k}={v}" for k, v in event.detail.items() if not isinstance(v, dict | list)
    )
    nested = {k: v for k, v in event.detail.items() if isinstance(v, dict)}
    extra = "".join(f" {k}={json.dumps(v)}" for k, v in nested.items())
    console.print(f"[bold]{event.step:13}[/] +{event.at:7.2f}s  {detail}{extra}", highlight=False)


# --- one command: the demo ---------------------------------------------------------------------


@app.command("demo")
def demo(as_json: JsonOption = False) -> None:
    """The whole story on a fresh devnet: attested vaults, bonded owners, ETH chunks at the
    oracle price, a tit-for-tat swap of TKN for ETH across two chains, a compromised owner
    caught double-spending (slashed, banned, the victim compensated from the pool), the
    requester's vault and the matcher killed and restarted from their sealed state, an
    owner walking away
    mid-swap (exposure one chunk), and a time-locked escrow."""
    from sealbridge.devnet.keyrelease import USD, KeyReleaseDevnet, run_demo_scenario

    with friendly_errors():
        devnet = KeyReleaseDevnet(progress=lambda e: _show_event(e, as_json))
        try:
            if not as_json:
                console.print("starting two anvil chains, the matcher and four vault enclaves…")
            devnet.start()
            result = run_demo_scenario(devnet)
        finally:
            devnet.stop()
    if as_json:
        print(json.dumps({"step": "result", **to_builtins(result)}), flush=True)
        return
    swap = result.swap
    console.print(
        f"[green]swap[/]: alice gave {swap.given} TKN chunks and swept {swap.swept} of "
        f"{swap.received} ETH chunks; {len(swap.double_spent)} double-spent, compensated "
        f"{swap.compensated_wei} wei from the pool"
    )
    console.print(
        f"[green]walk-away[/]: alice's exposure "
        f"{ {k: v / USD for k, v in result.stalled.exposure_usd_e8.items()} } USD "
        f"(at most one chunk, {100} USD)"
    )
    console.print(f"[green]escrow[/]: bob swept {result.escrow_swept} chunks after the unlock")
    console.print(f"owners: {json.dumps(result.owners)}")
    console.print(
        f"alice: {result.honest_loss_usd_e8 / USD:.2f} USD given and not received back "
        f"(a double-spent chunk and the walk-away's one chunk); "
        f"{result.compensation_usd_e8 / USD:.2f} USD compensated by the insurance pool"
    )


# --- the service -------------------------------------------------------------------------------


def _read_state(home: Path) -> dict[str, Any]:
    path = _state_file(home)
    if not path.exists():
        fail(f"no key-release service under {home} (start it: sealbridge keyrelease up)")
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        fail(f"{path} is unreadable; remove it and run 'sealbridge keyrelease up'")
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@app.command("up")
def up(
    home: HomeOption = DEFAULT_HOME,
    port: Annotated[int, typer.Option(help="Loopback port of the service.")] = DEFAULT_PORT,
) -> None:
    """Start the key-release devnet service in the background (two anvil chains, oracle,
    insurance pool, token, matcher enclave); add clients with 'vault'."""
    from sealbridge.net.waiting import WaitTimeout, wait_until  # tenacity: only when used

    if not 1024 <= port <= 65535:
        fail("--port must be in [1024, 65535]")
    state_dir = _state_dir(home)
    if _state_file(home).exists():
        state = json.loads(_state_file(home).read_text())
        if _alive(int(state.get("pid", 0))):
            fail(f"a key-release service is already running (port {state.get('port')})")
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / "ready.json"
    ready.unlink(missing_ok=True)
    log = open(state_dir / "service.log", "ab")  # noqa: SIM115 -- handed to the child
    argv = [
        sys.executable,
        "-m",
        "sealbridge.devnet.keyrelease_service",
        "--port",
        str(port),
        "--home",
        str(state_dir / "run"),
        "--ready-file",
        str(ready),
    ]
    process = subprocess.Popen(  # noqa: S603 -- fixed argv
        argv, stdout=log, stderr=log, start_new_session=True
    )

    def started() -> bool:
        if ready.exists():
            return True
        if process.poll() is not None:
            fail(f"the service exited (code {process.returncode}); see {state_dir}/service.log")
        return False

    try:
        wait_until(started, timeout=START_TIMEOUT, what="the service to start", interval=0.2)
    except WaitTimeout:
        os.killpg(process.pid, signal.SIGTERM)
        fail(f"the service did not start within {START_TIMEOUT:.0f}s")
    _state_file(home).write_text(json.dumps({"pid": process.pid, "port": port}))
    console.print(f"key-release devnet up on 127.0.0.1:{port}; state in {state_dir}")


@app.command("down")
def down(home: HomeOption = DEFAULT_HOME) -> None:
    """Stop the key-release service and its chains and enclaves."""
    from sealbridge.net.waiting import WaitTimeout, wait_until  # tenacity: only when used

    state = _read_state(home)
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)  # the service stops its chains and enclaves itself
    except ProcessLookupError:
        pass
    try:
        wait_until(lambda: not _alive(pid), timeout=20, what=f"the service (pid {pid}) to stop")
    except WaitTimeout:
        os.killpg(pid, signal.SIGKILL)
    _state_file(home).unlink(missing_ok=True)
    console.print("key-release devnet stopped")


def _post(home: Path, path: str, request: Message, as_json: bool) -> dict[str, Any]:
    from sealbridge.devnet.keyrelease_service import StepResult
    from sealbridge.net.http import NodeClient

    state = _read_state(home)
    with friendly_errors(), NodeClient(f"http://127.0.0.1:{state['port']}", timeout=300) as node:
        result = decode(node.post(path, encode(request)), StepResult)
    for event in result.events:
        _show_event(event, as_json)
    if as_json:
        shown = {k: v for k, v in result.result.items() if k != "wallet_key"}
        print(json.dumps({"step": "result", **shown}), flush=True)
    return result.result


# --- client keys: every request is signed with the client's wallet key -----------------------


def _no_key(name: str, path: Path) -> NoReturn:
    fail(f"no key for client {name} in {path} (create it: sealbridge keyrelease vault {name})")


def _key_file(home: Path, name: str) -> Path:
    return _state_dir(home) / "clients" / f"{name}.key"


def _save_key(home: Path, name: str, wallet_key_hex: str, service_hex: str) -> Path:
    """Keep a client's wallet key (mode 0600, in a 0700 directory) and the service it
    was made for: the CLI signs for that service only."""
    from sealbridge.keyrelease.auth import normalize_client_name

    with friendly_errors():
        name = normalize_client_name(name)  # (the service's answer: never a path)
        bytes.fromhex(wallet_key_hex)
        bytes.fromhex(service_hex)
    path = _key_file(home, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(wallet_key_hex + "\n" + service_hex + "\n")
    tmp.replace(path)
    return path


def _read_key(home: Path, name: str) -> tuple[str, bytes, bytes]:
    """(normalized name, wallet key, service id) of a client this CLI created."""
    from sealbridge.keyrelease.auth import normalize_client_name

    with friendly_errors():
        name = normalize_client_name(name)
    path = _key_file(home, name)
    try:
        key_hex, service_hex = path.read_text().split()
        return name, bytes.fromhex(key_hex), bytes.fromhex(service_hex)
    except (OSError, ValueError):
        _no_key(name, path)


def _sign(home: Path, name: str, action: str, body: Message) -> Any:
    """A request of client ``name``, signed with its key for the service it was made
    with (a service that names another identity gets nothing signed)."""
    from sealbridge.keyrelease.auth import sign_client_request
    from sealbridge.net.http import NodeClient

    name, key, service = _read_key(home, name)
    state = _read_state(home)
    with friendly_errors(), NodeClient(f"http://127.0.0.1:{state['port']}") as node:
        running = bytes.fromhex(node.get_json("/v1/status")["service"])
    if running != service:
        fail(
            f"the running key-release service is not the one {name} was created with "
            f"(its matcher is {running.hex()[:16]}…, not {service.hex()[:16]}…)"
        )
    return sign_client_request(key, service, time.time_ns() // 1000, action, encode(body))


def _account(home: Path, name: str) -> str:
    from sealbridge.evm.adapter import ChainAdapter

    return ChainAdapter.address_of(_read_key(home, name)[1])


@app.command("vault")
def vault(
    name: Annotated[str, typer.Argument(help="Client name (an identifier).")],
    compromised: Annotated[
        bool,
        typer.Option(help="Declared adversary: the vault's platform is broken (sim only)."),
    ] = False,
    home: HomeOption = DEFAULT_HOME,
    as_json: JsonOption = False,
) -> None:
    """Create a client: a vault enclave makes deposit keys; the wallet checks its quote."""
    from sealbridge.devnet.keyrelease_service import VaultRequest

    result = _post(home, "/v1/vaults", VaultRequest(name=name, compromised=compromised), as_json)
    path = _save_key(home, result["name"], result["wallet_key"], result["service"])
    if not as_json:
        console.print(
            f"vault {result['vault'][:16]}… for {result['name']} (account {result['account']}; "
            f"its key, which signs every request: {path})"
        )


@app.command("deposit")
def deposit(
    name: Annotated[str, typer.Argument(help="Client name.")],
    asset: Annotated[
        str, typer.Option(help="ETH@31337, TKN@31338 or BTC@regtest (btc: --no-offer).")
    ] = "ETH@31337",
    chunks: Annotated[int, typer.Option(help="Chunks to fund (1-64).")] = 4,
    bond: Annotated[int, typer.Option(help="USD of sybil bond to post first (0: none).")] = 0,
    offer: Annotated[bool, typer.Option(help="Put the chunks in the matcher's book.")] = True,
    home: HomeOption = DEFAULT_HOME,
    as_json: JsonOption = False,
) -> None:
    """Fund deposit keys with one standard USD chunk each, at the oracle's price."""
    from sealbridge.devnet.keyrelease_service import DepositRequest

    name = _read_key(home, name)[0]
    request = DepositRequest(name=name, asset=asset, chunks=chunks, bond_usd=bond, offer=offer)
    result = _post(home, "/v1/deposits", _sign(home, name, "deposit", request), as_json)
    if not as_json:
        console.print(f"{len(result['chunks'])} chunks funded (offered: {result['offered']})")


@app.command("request")
def request(
    name: Annotated[str, typer.Argument(help="Client name.")],
    usd: Annotated[int, typer.Option(help="USD worth to request.")],
    asset: Annotated[str, typer.Option(help="The asset wanted.")] = "ETH@31337",
    contract: Annotated[
        str, typer.Option(help="Contract that binds the chunks (default: a fresh swap:<id>).")
    ] = "",
    home: HomeOption = DEFAULT_HOME,
    as_json: JsonOption = False,
) -> None:
    """Ask the matcher for chunks; the offer is checked (attestations, balances on chain)."""
    from sealbridge.keyrelease.types import ChunkRequest

    if not 1 <= usd <= 10**9:
        fail("--usd must be in [1, 1e9]")
    body = ChunkRequest(
        request_id=os.urandom(16).hex(),
        requester=_account(home, name),
        asset=asset,
        usd_e8=usd * 10**8,
        contract=contract or f"swap:{os.urandom(4).hex()}",
    )
    result = _post(home, "/v1/requests", _sign(home, name, "match", body), as_json)
    if not as_json:
        console.print(
            f"offer {result['request_id']}: {len(result['chunks'])} chunks, fee "
            f"{result['fee_usd']} USD -- accept with: sealbridge keyrelease accept {name} "
            f"{result['request_id']}"
        )


@app.command("accept")
def accept(
    name: Annotated[str, typer.Argument(help="Client name.")],
    request_id: Annotated[str, typer.Argument(help="The offer to accept.")],
    give: Annotated[
        str, typer.Option(help="The asset given in exchange (BTC@regtest too).")
    ] = "TKN@31338",
    home: HomeOption = DEFAULT_HOME,
    as_json: JsonOption = False,
) -> None:
    """Accept an offer: pay the fee into the pool and run the tit-for-tat swap."""
    from sealbridge.devnet.keyrelease_service import AcceptRequest
    from sealbridge.keyrelease.matcher_program import Accept

    body = Accept(request_id=request_id, requester=_account(home, name), give_asset=give)
    signed = _sign(home, name, "accept", body)
    result = _post(home, "/v1/accept", AcceptRequest(signed=signed), as_json)
    if not as_json:
        console.print(
            f"swap {result['contract']}: gave {result['given']}, swept {result['swept']} of "
            f"{result['received']}; double-spent {len(result['double_spent'])}"
        )


@app.command("status")
def status(home: HomeOption = DEFAULT_HOME, as_json: JsonOption = False) -> None:
    """The matcher's book, bonds, reputations and pool; every vault's keys and contracts."""
    from sealbridge.net.http import NodeClient

    state = _read_state(home)
    with friendly_errors(), NodeClient(f"http://127.0.0.1:{state['port']}") as node:
        body = node.get_json("/v1/status")
    if as_json:
        print(json.dumps(body, indent=2))
        return
    matcher = body["matcher"]
    console.print(f"pool: {body['pool_wei']} wei; chunks: {matcher['chunks']}")
    for owner in matcher["owners"].values():
        console.print(
            f"  owner {owner['owner']}: reputation {owner['reputation']}, bond "
            f"{owner['bond_usd_e8'] / 1e8:.2f} USD, banned {owner['banned']}"
        )
    for name, vault_status in body["vaults"].items():
        console.print(
            f"  vault {name}: keys {vault_status['keys']}, contracts "
            f"{[c['contract'] + ':' + c['status'] for c in vault_status['contracts']]}"
        )
