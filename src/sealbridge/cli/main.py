"""The ``sealbridge`` command line.

Every command takes ``--home`` (default ``.sealbridge``, or ``$SEALBRIDGE_HOME``) and
``--json`` for scripts. Errors are one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sealbridge.cli import attest, bench, keyrelease, swap
from sealbridge.cli.output import console, fail, friendly_errors, print_json
from sealbridge.contracts.gas import DEFAULT_GAS_LIMIT, MAX_GAS_LIMIT
from sealbridge.core.encoding import to_builtins
from sealbridge.core.ids import to_hex

app = typer.Typer(
    help="sealbridge: confidential smart contracts run in TEEs, ordered by an EVM chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
devnet_app = typer.Typer(help="Start, stop and inspect the embedded devnet.", no_args_is_help=True)
keys_app = typer.Typer(help="User keys of the devnet.", no_args_is_help=True)
app.add_typer(devnet_app, name="devnet")
app.add_typer(keys_app, name="keys")
app.add_typer(attest.app, name="attest")
app.add_typer(bench.app, name="bench")
app.add_typer(keyrelease.app, name="keyrelease")

HomeOption = Annotated[
    Path,
    typer.Option("--home", envvar="SEALBRIDGE_HOME", help="Where devnet state and keys live."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AsOption = Annotated[str, typer.Option("--as", help="Name of the user key to act as.")]
ArgsOption = Annotated[
    str, typer.Option("--args", help='Arguments as a JSON object, e.g. \'{"to": "bob"}\'.')
]
DEFAULT_HOME = Path(".sealbridge")


def parse_args_json(text: str, option: str = "--args") -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{option} is not valid JSON: {exc.msg} at position {exc.pos}")
    if not isinstance(value, dict):
        fail(f'{option} must be a JSON object, e.g. \'{{"to": "bob", "amount": 10}}\'')
    return value


def parse_gas(gas: int | None) -> int:
    """``--gas``: absent means the platform default (0 on the wire)."""
    if gas is None:
        return 0
    if not 1 <= gas <= MAX_GAS_LIMIT:
        fail(f"--gas must be from 1 to {MAX_GAS_LIMIT:_} (the platform's maximum), not {gas}")
    return gas


# -- devnet ---------------------------------------------------------------------------
@devnet_app.command("up")
def devnet_up(
    home: HomeOption = DEFAULT_HOME,
    workers: Annotated[int, typer.Option(help="Number of worker nodes (1-4).")] = 2,
    storage_nodes: Annotated[
        int, typer.Option("--storage-nodes", help="Number of storage nodes (1-16).")
    ] = 3,
    storage_threshold: Annotated[
        int,
        typer.Option(
            "--storage-threshold",
            help="Storage confirmations a checkpoint needs (1 to --storage-nodes).",
        ),
    ] = 2,
    gatekeepers: Annotated[int, typer.Option(help="Gatekeepers in the key committee (1-16).")] = 3,
    committee_threshold: Annotated[
        int,
        typer.Option(
            "--committee-threshold",
            help="Gatekeepers whose partials make a contract key (1 to --gatekeepers).",
        ),
    ] = 2,
    chain_id: Annotated[
        int, typer.Option("--chain-id", help="Chain id of the anvil chain.")
    ] = 31337,
    confirmations: Annotated[
        int, typer.Option(help="Blocks a node waits before acting on a block (0-64).")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Start anvil, the gatekeeper committee, workers and storage nodes as separate
    processes; register them; the committee generates the root key as shares."""
    from sealbridge.devnet.launcher import start_devnet

    with friendly_errors():
        if as_json:
            state = start_devnet(
                home,
                workers=workers,
                storage_nodes=storage_nodes,
                storage_threshold=storage_threshold,
                gatekeepers=gatekeepers,
                committee_threshold=committee_threshold,
                chain_id=chain_id,
                confirmations=confirmations,
            )
            print_json(state)
            return
        with console.status("starting the devnet…") as status:

            def show(message: str) -> None:
                console.print(f"[green]✓[/] {message}")
                status.update(message)

            state = start_devnet(
                home,
                workers=workers,
                storage_nodes=storage_nodes,
                storage_threshold=storage_threshold,
                gatekeepers=gatekeepers,
                committee_threshold=committee_threshold,
                chain_id=chain_id,
                confirmations=confirmations,
                progress=show,
            )
    console.print(f"devnet up: chain {state.chain_id} at {state.rpc_url}; state in {home}/devnet")


@devnet_app.command("rotate")
def devnet_rotate(
    members: Annotated[
        str, typer.Option(help="The new committee: gatekeeper names, comma-separated.")
    ],
    threshold: Annotated[int, typer.Option(help="The new committee's threshold.")],
    home: HomeOption = DEFAULT_HOME,
    as_json: JsonOption = False,
) -> None:
    """Elect a new key committee; the old members reshare the root key to it (every
    contract key stays the same) and then erase their shares."""
    from sealbridge.devnet.launcher import rotate_committee

    names = [m.strip() for m in members.split(",") if m.strip()]
    with friendly_errors(), console.status("resharing the root key…"):
        record = rotate_committee(home, names, threshold)
    if as_json:
        print_json(
            {
                "era": record.era,
                "members": [to_hex(m) for m in record.members],
                "threshold": record.threshold,
                "group_public_key": to_hex(record.group_public_key),
            }
        )
        return
    console.print(
        f"era {record.era} is active: {', '.join(names)} hold the root key as "
        f"{record.threshold}-of-{len(names)} shares; group key "
        f"{to_hex(record.group_public_key)[:18]}… (unchanged)"
    )


@devnet_app.command("down")
def devnet_down(home: HomeOption = DEFAULT_HOME, as_json: JsonOption = False) -> None:
    """Stop every devnet process and delete its state."""
    from sealbridge.devnet.launcher import stop_devnet

    with friendly_errors():
        stopped = stop_devnet(home)
    if as_json:
        print_json({"stopped": stopped})
    else:
        console.print(f"stopped {', '.join(stopped)}")


@devnet_app.command("status")
def devnet_status(home: HomeOption = DEFAULT_HOME, as_json: JsonOption = False) -> None:
    """Show the chain and every node's phase, height and contracts."""
    from sealbridge.devnet.launcher import get_devnet_status

    with friendly_errors():
        status = get_devnet_status(home)
    if as_json:
        print_json(status)
        return
    console.print(
        f"chain {status['chain_id']} at {status['rpc_url']}, block {status['block_number']}"
    )
    table = Table("node", "role", "phase", "height", "node id", "contracts")
    for node in status["nodes"]:
        contracts = node.get("contracts", [])
        table.add_row(
            node["name"],
            node["role"],
            str(node.get("phase")),
            str(node.get("height", "")),
            str(node.get("node_id", ""))[:18] + "…",
            ", ".join(f"{c['contract_id'][:10]}…@{c['height']}" for c in contracts) or "-",
        )
    console.print(table)
    storage = status.get("storage", [])
    if storage:
        threshold = status.get("storage_threshold") or "?"
        console.print(f"storage nodes (checkpoints need {threshold} of {len(storage)}):")
        storage_table = Table("node", "phase", "registered", "node id", "blobs", "bytes")
        for node in storage:
            storage_table.add_row(
                node["name"],
                str(node.get("phase")),
                "yes" if node.get("registered") else "no",
                str(node.get("node_id", ""))[:18] + "…",
                str(node.get("blobs", "")),
                str(node.get("bytes", "")),
            )
        console.print(storage_table)


@keys_app.command("list")
def keys_list(home: HomeOption = DEFAULT_HOME, as_json: JsonOption = False) -> None:
    """List user keys with their contract identities and gas accounts."""
    from sealbridge.config.keystore import Keystore
    from sealbridge.config.network import get_devnet_dir

    with friendly_errors():
        store = Keystore(get_devnet_dir(home))
        rows = [
            {
                "name": n,
                "identity_key": to_hex(store.get(n).identity_key),
                "eth_address": to_hex(store.get(n).eth_address),
            }
            for n in store.list_names()
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "identity key (in contracts)", "gas account")
    for row in rows:
        table.add_row(row["name"], row["identity_key"], row["eth_address"])
    console.print(table)


# -- contracts ------------------------------------------------------------------------
@app.command("deploy")
def deploy(
    contract: Annotated[
        str,
        typer.Argument(help="A built-in contract (token, dex, auction, kmeans) or a .py file."),
    ],
    home: HomeOption = DEFAULT_HOME,
    as_user: AsOption = "alice",
    init: Annotated[
        str, typer.Option("--init", help="Arguments of the contract's @init, as JSON.")
    ] = "{}",
    confidential: Annotated[
        bool, typer.Option(help="Keep the code secret: only executors and you can read it.")
    ] = False,
    gas: Annotated[
        int | None,
        typer.Option(
            "--gas",
            help=f"Gas limit of the contract's @init (1 to {MAX_GAS_LIMIT:_}; "
            f"default {DEFAULT_GAS_LIMIT:_}).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy a contract: the chain records its code hash, the gatekeeper publishes its
    key, and the code travels encrypted in the deploy command."""
    from sealbridge.client.api import Client

    init_args = parse_args_json(init, option="--init")
    gas_limit = parse_gas(gas)
    with friendly_errors():
        client = Client.from_home(home)
        if as_json:
            print_json(
                client.deploy(
                    contract,
                    as_user=as_user,
                    init_args=init_args,
                    confidential=confidential,
                    gas_limit=gas_limit,
                )
            )
            return
        with console.status(f"deploying {contract}…"):
            d = client.deploy(
                contract,
                as_user=as_user,
                init_args=init_args,
                confidential=confidential,
                gas_limit=gas_limit,
                progress=lambda m: console.print(f"  {m}"),
            )
    console.print(f"[bold]contract id[/] {to_hex(d.contract_id)}")


@app.command("rotate-key")
def rotate_key(
    contract_id: Annotated[str, typer.Argument(help="Contract id (0x-hex).")],
    home: HomeOption = DEFAULT_HOME,
    as_user: AsOption = "alice",
    wait_checkpoint: Annotated[
        bool,
        typer.Option(help="Wait for a checkpoint under the new key (the old one is retired)."),
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step.")] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Rotate a contract's key (its deployer only): the gatekeeper committee derives the
    next key version, the workers re-seal the state under it, the old version is retired."""
    from sealbridge.client.api import Client

    with friendly_errors():
        client = Client.from_home(home)
        if as_json:
            print_json(
                client.rotate_key(
                    contract_id,
                    as_user=as_user,
                    timeout=timeout,
                    wait_checkpoint=wait_checkpoint,
                )
            )
            return
        with console.status("rotating the contract key…"):
            r = client.rotate_key(
                contract_id,
                as_user=as_user,
                timeout=timeout,
                wait_checkpoint=wait_checkpoint,
                progress=lambda m: console.print(f"  {m}"),
            )
    console.print(
        f"[bold]key version {r.version}[/] of {to_hex(r.contract_id)} "
        f"(public key {to_hex(r.contract_public_key)[:18]}…) from block {r.rotated_at}"
    )


@app.command("call")
def call(
    contract_id: Annotated[str, typer.Argument(help="Contract id (0x-hex).")],
    command: Annotated[str, typer.Argument(help="Command name, e.g. transfer.")],
    args: ArgsOption = "{}",
    home: HomeOption = DEFAULT_HOME,
    as_user: AsOption = "alice",
    wait: Annotated[bool, typer.Option(help="Wait until the workers applied it.")] = True,
    gas: Annotated[
        int | None,
        typer.Option(
            "--gas",
            help=f"Gas limit of the command (1 to {MAX_GAS_LIMIT:_}; "
            f"default {DEFAULT_GAS_LIMIT:_}).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sign, encrypt and submit a command through the chain's command inbox."""
    from sealbridge.client.api import Client

    parsed = parse_args_json(args)
    gas_limit = parse_gas(gas)
    result = None
    with friendly_errors():
        client = Client.from_home(home)
        receipt = client.call(contract_id, command, parsed, as_user=as_user, gas_limit=gas_limit)
        if wait:
            result = client.wait_result(receipt, as_user=as_user)
    if as_json:
        out = to_builtins(receipt)
        out["outcome"] = None if result is None else to_builtins(result)
        print_json(out)
        if result is not None and not result.ok:
            raise typer.Exit(1)
        return
    console.print(
        f"{command} by {as_user}: encrypted command ({receipt.ciphertext_size} bytes) "
        f"in block {receipt.block_number}, inbox seq {receipt.seq}, tx {to_hex(receipt.tx_hash)}"
    )
    if result is None:
        return
    if result.ok:
        shown = "" if result.value is None else f", returned {render_value(result.value)}"
        console.print(f"[green]accepted[/] by the contract (gas {result.gas_used}{shown})")
    else:
        console.print(
            f"[red]refused by the contract:[/] {escape(result.error)}: {escape(result.message)} "
            "(its nonce is used up)"
        )
        raise typer.Exit(1)


def render_value(value: Any) -> str:
    return escape(json.dumps(to_builtins(value)))


@app.command("query")
def query(
    contract_id: Annotated[str, typer.Argument(help="Contract id (0x-hex).")],
    name: Annotated[str, typer.Argument(help="Query name, e.g. balance.")],
    args: ArgsOption = "{}",
    home: HomeOption = DEFAULT_HOME,
    as_user: AsOption = "alice",
    worker: Annotated[int, typer.Option(help="Which worker to ask (0-based).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Ask a worker; the signed answer is checked before it is shown."""
    from sealbridge.client.api import Client

    parsed = parse_args_json(args)
    with friendly_errors():
        client = Client.from_home(home)
        verified = client.query(contract_id, name, parsed, as_user=as_user, worker=worker)
    if as_json:
        out = to_builtins(verified)
        out["signature_scheme"] = "ed25519"
        out["how_to_verify"] = (
            "Ed25519 verify(worker_key, signed_message_prefix || signed_payload, signature); "
            "signed_payload is the msgpack QueryAnswer shown in 'answer'"
        )
        print_json(out)
        return
    a = verified.answer
    console.print(
        f"[bold]{name}[/] = [bold green]{render_value(a.result)}[/]  "
        f"(block {a.block_height}, state root "
        f"{to_hex(a.state_root)[:18]}…, signed by worker {to_hex(verified.worker_key)[:18]}…)"
    )


app.command("swap")(swap.swap)


@app.command("demo")
def demo(
    home: Annotated[
        Path, typer.Option("--home", help="Scratch directory for the demo devnet.")
    ] = Path(".sealbridge-demo"),
    keep: Annotated[bool, typer.Option(help="Leave the devnet running afterwards.")] = False,
) -> None:
    """Run the confidential-token story end to end on a fresh devnet."""
    from sealbridge.cli.demo import run_demo

    with friendly_errors():
        run_demo(home, keep=keep)


def main() -> None:
    app()
