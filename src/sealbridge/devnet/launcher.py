"""The embedded devnet: one anvil chain, a committee of gatekeepers, N workers, M storage
nodes, a few user keys.

Theory of operation
-------------------
``start_devnet`` brings everything up as separate OS processes (each in its own session so
they outlive the command that started them) and writes ``<home>/devnet/devnet.json``:

1. anvil (prague hardfork, the standard dev mnemonic) on a free loopback port;
2. the four management contracts, deployed by the admin account (the ExecutionLedger
   needs ``storage_threshold`` storage confirmations per checkpoint);
3. a simulated TEE platform key (the sim backend's stand-in for a CPU's fused key);
4. the gatekeeper processes. The operator (this function) verifies gatekeeper-1's quote
   under the devnet policy and registers it as the genesis attestor -- the one trust
   decision made outside an enclave; the others register by attestation, approved by
   gatekeeper-1. The admin then elects them as the committee's first era and they
   generate the root key as shares on chain (GatekeeperCommittee); no one holds it;
5. the worker processes, each registering itself with the gatekeeper's approval, and at
   the same time the storage processes, each registering itself with a stake (storage
   nodes hold only ciphertext: no enclave, no attestation); each storage node pays from
   its own funded anvil account (indexes 10 and up);
6. user keys (``alice``, ``bob``, ``carol``), each with a funded gas account.

``stop_devnet`` ends every process group and deletes the devnet directory (anvil keeps
its chain in memory, so nothing in it would be valid afterwards).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from sealbridge.chain.abi import Role
from sealbridge.config.keystore import Keystore
from sealbridge.config.network import (
    DevnetNotRunning,
    get_devnet_dir,
    get_state_file,
    is_alive,
    load_running,
)
from sealbridge.config.node import (
    GATEKEEPER,
    GATEWAY,
    STORAGE,
    WORKER,
    DevnetState,
    NodeConfig,
    NodeEntry,
    load_devnet_state,
    save_json,
)
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter, get_anvil_dev_keys
from sealbridge.evm.anvil import find_anvil, get_anvil_argv, get_free_port
from sealbridge.evm.committee import (
    CommitteePhase,
    EraRecord,
    GatekeeperCommittee,
    deploy_committee,
)
from sealbridge.evm.management import ManagementContracts, deploy_management
from sealbridge.net.waiting import WaitTimeout, wait_until
from sealbridge.node.process import GATEKEEPER_PROGRAM, GATEWAY_PROGRAM, WORKER_PROGRAM
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.enclave import NodeKeys, compute_report_data
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform

DEFAULT_USERS = ("alice", "bob", "carol")
MIN_STAKE = 10**18
BASE_ACCOUNTS = 10  # anvil's accounts 0..9: admin, gatekeeper, workers, users
MAX_STORAGE_NODES = 16  # the ExecutionLedger counts at most 16 confirmations
MAX_GATEKEEPERS = 16
ROTATION_TIMEOUT_BLOCKS = 40  # blocks a committee era has to become ready
Progress = Callable[[str], None]


class DevnetError(LocalProtocolError):
    code = "devnet"


def spawn_process(
    argv: list[str], log_file: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def wait_http(url: str, process: subprocess.Popen[bytes], log_file: Path, timeout: float) -> Any:
    """GET ``url`` until it answers 200 (its JSON body is returned); raise
    :class:`DevnetError` at once if ``process`` exits, or after ``timeout`` seconds."""

    def answer() -> Any:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-1500:]
            raise DevnetError(f"process {process.pid} exited ({process.returncode}):\n{tail}")
        response = httpx.get(url, timeout=1.0)
        return response.json() if response.status_code == 200 else None

    try:
        return wait_until(
            answer, timeout=timeout, what=f"{url} to answer", passing=(httpx.HTTPError,)
        )
    except WaitTimeout as exc:
        raise DevnetError(f"{url} did not answer within {timeout:.0f}s (log: {log_file})") from exc


def _wait_worker(url: str, process: subprocess.Popen[bytes], log_file: Path, timeout: float) -> Any:
    def following() -> Any:
        status = wait_http(url + "/v1/status", process, log_file, timeout)
        if status["phase"] == "failed":
            raise DevnetError(f"worker at {url} failed: {status['error']} (log: {log_file})")
        return status if status["phase"] == "following" else None

    try:
        return wait_until(following, timeout=timeout, what=f"worker at {url} to register")
    except WaitTimeout as exc:
        raise DevnetError(f"worker at {url} did not register within {timeout:.0f}s") from exc


def _wait_storage(
    url: str, process: subprocess.Popen[bytes], log_file: Path, timeout: float
) -> Any:
    def registered() -> Any:
        status = wait_http(url + "/v1/status", process, log_file, timeout)
        if status["registered"]:
            return status
        if status["phase"] == "failed":
            raise DevnetError(f"storage node at {url} failed: {status['error']} (log: {log_file})")
        return None

    try:
        return wait_until(registered, timeout=timeout, what=f"storage node at {url} to register")
    except WaitTimeout as exc:
        raise DevnetError(f"storage node at {url} did not register within {timeout:.0f}s") from exc


def start_devnet(
    home: Path,
    *,
    workers: int = 2,
    storage_nodes: int = 3,
    storage_threshold: int = 2,
    gatekeepers: int = 3,
    committee_threshold: int = 2,
    chain_id: int = 31337,
    confirmations: int = 0,
    block_time: float | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> DevnetState:
    say = progress or (lambda _msg: None)
    if confirmations < 0 or confirmations > 64:
        raise DevnetError("confirmations must be between 0 and 64")
    if block_time is not None and not 0 < block_time <= 60:
        raise DevnetError("block time must be in (0, 60] seconds")
    if confirmations and block_time is None:
        block_time = 1.0  # with confirmations, blocks must come even when no tx arrives
    if not (0 if storage_nodes == 0 else 1) <= workers <= 4:
        # no workers only for a chain without storage nodes: the gatekeepers alone (the
        # attestors of a gateway committee, see devnet/swap.py)
        raise DevnetError("a devnet has between 1 and 4 workers (0 only with no storage nodes)")
    if not (1 if workers else 0) <= storage_nodes <= MAX_STORAGE_NODES:
        raise DevnetError(
            f"a devnet with workers has between 1 and {MAX_STORAGE_NODES} storage nodes"
        )
    if not 1 <= storage_threshold <= max(storage_nodes, 1):
        raise DevnetError(
            f"the storage threshold must be between 1 and the number of storage nodes "
            f"({storage_nodes}), not {storage_threshold}"
        )
    if not 1 <= gatekeepers <= MAX_GATEKEEPERS:
        raise DevnetError(f"a devnet has between 1 and {MAX_GATEKEEPERS} gatekeepers")
    if not 1 <= committee_threshold <= gatekeepers:
        raise DevnetError(
            f"the committee threshold must be between 1 and the number of gatekeepers "
            f"({gatekeepers}), not {committee_threshold}"
        )
    directory = get_devnet_dir(home)
    if get_state_file(home).exists():
        state = load_devnet_state(get_state_file(home))
        if is_alive(state.anvil_pid):
            raise DevnetError(f"a devnet is already running under {home} (chain {state.rpc_url})")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pids: list[int] = []
    try:
        return _start(
            directory,
            home,
            workers,
            storage_nodes,
            storage_threshold,
            gatekeepers,
            committee_threshold,
            chain_id,
            confirmations,
            block_time,
            say,
            timeout,
            pids,
        )
    except BaseException:
        for pid in pids:
            kill_group(pid)
        raise


def _start(
    directory: Path,
    home: Path,
    workers: int,
    storage_nodes: int,
    storage_threshold: int,
    gatekeepers: int,
    committee_threshold: int,
    chain_id: int,
    confirmations: int,
    block_time: float | None,
    say: Progress,
    timeout: float,
    pids: list[int],
) -> DevnetState:
    port = get_free_port()
    rpc_url = f"http://127.0.0.1:{port}"
    anvil_argv = get_anvil_argv(
        find_anvil(),
        port=port,
        chain_id=chain_id,
        accounts=BASE_ACCOUNTS + storage_nodes + gatekeepers,
        block_time=block_time,
        silent=False,
    )
    anvil = spawn_process(anvil_argv, directory / "anvil.log")
    pids.append(anvil.pid)
    chain = _connect(rpc_url, anvil, directory / "anvil.log", timeout)
    mining = "automine" if block_time is None else f"a block every {block_time:g}s"
    say(
        f"chain {chain_id} (anvil, {mining}) at {rpc_url}; nodes wait {confirmations} confirmations"
    )

    dev_keys = get_anvil_dev_keys(BASE_ACCOUNTS + storage_nodes + gatekeepers)
    admin = dev_keys[0]
    addresses = deploy_management(chain, admin, MIN_STAKE, storage_threshold=storage_threshold)
    addresses_file = directory / "addresses.json"
    addresses.save(addresses_file)
    committee_address = deploy_committee(
        chain, admin, addresses.node_registry, ROTATION_TIMEOUT_BLOCKS
    )
    say(
        f"management contracts deployed (NodeRegistry {addresses.node_registry}, "
        f"GatekeeperCommittee {committee_address})"
    )
    gatekeeper_keys = [dev_keys[BASE_ACCOUNTS + storage_nodes + i] for i in range(gatekeepers)]
    gatekeeper_ports = [get_free_port() for _ in range(gatekeepers)]
    gatekeeper_urls = [f"http://127.0.0.1:{port}" for port in gatekeeper_ports]

    platform_key_file = directory / "sim-platform.key"
    platform_pub = create_sim_platform(platform_key_file)
    measurements = {
        GATEKEEPER: compute_sim_measurement(GATEKEEPER_PROGRAM),
        WORKER: compute_sim_measurement(WORKER_PROGRAM),
        GATEWAY: compute_sim_measurement(GATEWAY_PROGRAM),
    }

    def storage_config(name: str, eth_key: bytes) -> NodeConfig:
        return NodeConfig(
            role=STORAGE,
            name=name,
            home=str(directory / name),
            rpc_url=rpc_url,
            addresses_file=str(addresses_file),
            eth_private_key=eth_key.hex(),
            port=get_free_port(),
            stake_wei=MIN_STAKE,
        )

    storage_configs = [
        storage_config(f"storage-{i + 1}", dev_keys[BASE_ACCOUNTS + i])
        for i in range(storage_nodes)
    ]
    storage_urls = [f"http://127.0.0.1:{c.port}" for c in storage_configs]

    def node_config(role: str, name: str, eth_key: bytes, gatekeeper_url: str = "") -> NodeConfig:
        return NodeConfig(
            role=role,
            name=name,
            home=str(directory / name),
            rpc_url=rpc_url,
            addresses_file=str(addresses_file),
            eth_private_key=eth_key.hex(),
            port=get_free_port(),
            platform_key_file=str(platform_key_file),
            platform_public_key=platform_pub.hex(),
            allowed_measurements=[measurements[WORKER].hex(), measurements[GATEKEEPER].hex()],
            gatekeeper_url=gatekeeper_url,
            confirmations=confirmations,
            storage_urls=storage_urls if role == WORKER else [],
            committee_address=committee_address,
            gatekeeper_urls=gatekeeper_urls if role == WORKER else [],
        )

    def gatekeeper_config(index: int) -> NodeConfig:
        name = f"gatekeeper-{index + 1}"
        attestor = "" if index == 0 else gatekeeper_urls[0]
        config = node_config(GATEKEEPER, name, gatekeeper_keys[index], attestor)
        peers = [u for j, u in enumerate(gatekeeper_urls) if j != index]
        return msgspec.structs.replace(
            config,
            port=gatekeeper_ports[index],
            peer_urls=peers,
            # gatekeepers also admit gateways (cross-chain committees) by attestation
            allowed_measurements=[*config.allowed_measurements, measurements[GATEWAY].hex()],
        )

    def launch(config: NodeConfig) -> tuple[subprocess.Popen[bytes], NodeEntry]:
        config_file = directory / f"{config.name}.json"
        save_json(config_file, config)
        log_file = directory / f"{config.name}.log"
        process = spawn_process(
            [sys.executable, "-m", "sealbridge.node", str(config_file)], log_file
        )
        pids.append(process.pid)
        entry = NodeEntry(
            name=config.name,
            role=config.role,
            url=f"http://127.0.0.1:{config.port}",
            pid=process.pid,
            config_file=str(config_file),
            log_file=str(log_file),
        )
        return process, entry

    # Gatekeeper 1: set up inside its enclave, then the operator's genesis registration.
    gk_process, gk_entry = launch(gatekeeper_config(0))
    info = wait_http(gk_entry.url + "/v1/info", gk_process, Path(gk_entry.log_file), timeout)
    gk_keys = NodeKeys(
        identity_key=from_hex(info["identity_key"], size=32),
        encryption_key=from_hex(info["encryption_key"], size=32),
        eth_address=from_hex(info["eth_address"], size=20),
    )
    quote = from_hex(info["quote"])
    verdict = verify_quote(
        quote,
        policy=devnet_policy(platform_pub, [measurements[GATEKEEPER]]),
        now=int(time.time()),
        expected_report_data=compute_report_data(gk_keys),
    )
    mgmt = ManagementContracts(chain, addresses)
    mgmt.node_registry.register_genesis_gatekeeper(
        gk_keys.identity_key,
        gk_keys.encryption_key,
        to_hex(gk_keys.eth_address),
        verdict.measurement,
        int(time.time()) + 30 * 24 * 3600,
        quote,
        admin,
    )
    gk_entry = NodeEntry(**{**_fields(gk_entry), "node_id": to_hex(gk_keys.identity_key)})
    say(
        f"{gk_entry.name} {to_hex(gk_keys.identity_key)[:18]}… quote verified by the operator "
        f"({verdict.kind}, measurement {to_hex(verdict.measurement)[:18]}…) and registered"
    )
    # The other gatekeepers register by attestation, approved by gatekeeper 1.
    gatekeeper_entries = [gk_entry]
    others = [launch(gatekeeper_config(i)) for i in range(1, gatekeepers)]
    for process, entry in others:
        info = wait_http(entry.url + "/v1/info", process, Path(entry.log_file), timeout)
        node_id = from_hex(info["identity_key"], size=32)
        _wait_registered(mgmt, node_id, process, Path(entry.log_file), timeout)
        gatekeeper_entries.append(NodeEntry(**{**_fields(entry), "node_id": to_hex(node_id)}))
        say(f"{entry.name} {to_hex(node_id)[:18]}… registered by attestation")
    # The committee's first era: a key generation among all gatekeepers, on chain.
    committee = GatekeeperCommittee(chain, committee_address)
    members = [from_hex(e.node_id, size=32) for e in gatekeeper_entries]
    committee.elect(members, committee_threshold, admin)
    record = wait_era(committee, 1, timeout)
    say(
        f"root key generated as shares by the committee ({committee_threshold} of "
        f"{gatekeepers}; no gatekeeper holds it), group key "
        f"{to_hex(record.group_public_key)[:18]}…"
    )

    worker_entries: list[NodeEntry] = []
    started = []
    worker_configs = [
        node_config(WORKER, f"worker-{i + 1}", dev_keys[2 + i], gk_entry.url)
        for i in range(workers)
    ]
    worker_urls = [f"http://127.0.0.1:{c.port}" for c in worker_configs]
    for config in worker_configs:
        # each worker's enclave needs the others' witnesses to release anything
        peers = [u for u in worker_urls if not u.endswith(f":{config.port}")]
        started.append(launch(msgspec.structs.replace(config, peer_urls=peers)))
    # Storage nodes need neither the gatekeeper nor the workers: start them alongside.
    storage_started = [launch(config) for config in storage_configs]
    for process, entry in started:
        status = _wait_worker(entry.url, process, Path(entry.log_file), timeout)
        worker_entries.append(NodeEntry(**{**_fields(entry), "node_id": status["node_id"]}))
        say(
            f"{entry.name} {status['node_id'][:18]}… registered by attestation "
            f"(measurement {status['measurement'][:18]}…)"
        )
    storage_entries: list[NodeEntry] = []
    for process, entry in storage_started:
        status = _wait_storage(entry.url, process, Path(entry.log_file), timeout)
        storage_entries.append(NodeEntry(**{**_fields(entry), "node_id": status["node_id"]}))
        say(
            f"{entry.name} {status['node_id'][:18]}… registered with a stake "
            f"(signer {status['signer']})"
        )
    if storage_nodes:
        say(f"checkpoints need {storage_threshold} of {storage_nodes} storage confirmations")

    keystore = Keystore(directory)
    for offset, name in enumerate(DEFAULT_USERS):
        keystore.create(name, identity_seed=os.urandom(32), eth_private_key=dev_keys[6 + offset])
    say(f"user keys: {', '.join(DEFAULT_USERS)}")

    state = DevnetState(
        home=str(home),
        chain_id=chain_id,
        rpc_url=rpc_url,
        anvil_pid=anvil.pid,
        addresses_file=str(addresses_file),
        platform_public_key=platform_pub.hex(),
        measurements={k: v.hex() for k, v in measurements.items()},
        gatekeeper=gk_entry,
        gatekeepers=gatekeeper_entries,
        committee_address=committee_address,
        workers=worker_entries,
        users=list(DEFAULT_USERS),
        storage=storage_entries,
        storage_threshold=storage_threshold,
    )
    save_json(get_state_file(home), state)
    return state


def _wait_registered(
    mgmt: ManagementContracts,
    node_id: bytes,
    process: subprocess.Popen[bytes],
    log_file: Path,
    timeout: float,
) -> None:
    def active() -> bool:
        if mgmt.node_registry.is_active(node_id, Role.GATEKEEPER):
            return True
        if process.poll() is not None:
            raise DevnetError(
                f"{log_file.stem} exited: {log_file.read_text(errors='replace')[-1500:]}"
            )
        return False

    try:
        wait_until(active, timeout=timeout, what=f"{log_file.stem} to register")
    except WaitTimeout as exc:
        raise DevnetError(f"{log_file.stem} did not register within {timeout:.0f}s") from exc


def wait_era(committee: GatekeeperCommittee, era: int, timeout: float) -> EraRecord:
    """Wait until ``era`` is active (its rotation is ready)."""
    seen: list[EraRecord | None] = [None]  # the last record read, for the timeout message

    def active() -> EraRecord | None:
        record = seen[0] = committee.get_era(era)
        if record is not None and record.phase == CommitteePhase.FAILED:
            raise DevnetError(f"committee era {era} failed (timed out)")
        return record if record is not None and record.phase == CommitteePhase.ACTIVE else None

    try:
        return wait_until(active, timeout=timeout, what=f"committee era {era} to be active")
    except WaitTimeout as exc:
        record = seen[0]
        raise DevnetError(
            f"committee era {era} not ready within {timeout:.0f}s "
            f"(dealings {record.dealing_count if record else 0}, confirmations "
            f"{record.confirmation_count if record else 0}); see the gatekeeper logs"
        ) from exc


def rotate_committee(
    home: Path, members: list[str], threshold: int, *, timeout: float = 60.0
) -> EraRecord:
    """Elect a new committee era among the named gatekeepers and wait until the old
    members have reshared the root key to them (the group key does not change)."""
    state = load_running(home)
    by_name = {e.name: e for e in state.gatekeepers}
    unknown = [m for m in members if m not in by_name]
    if unknown:
        raise DevnetError(f"no gatekeeper named {', '.join(unknown)} (have {', '.join(by_name)})")
    chain = ChainAdapter.rpc(state.rpc_url)
    committee = GatekeeperCommittee(chain, state.committee_address)
    ids = [from_hex(by_name[m].node_id, size=32) for m in members]
    receipt = committee.elect(ids, threshold, get_anvil_dev_keys(1)[0])
    era = next(
        int(args["era"]) for name, args in committee.decode_events(receipt) if name == "EraElected"
    )
    return wait_era(committee, era, timeout)


def _fields(entry: NodeEntry) -> dict[str, Any]:
    return {f: getattr(entry, f) for f in entry.__struct_fields__}


def _connect(
    rpc_url: str, process: subprocess.Popen[bytes], log_file: Path, timeout: float
) -> ChainAdapter:
    def connected() -> ChainAdapter:
        if process.poll() is not None:
            raise DevnetError(f"anvil exited: {log_file.read_text(errors='replace')[-1500:]}")
        chain = ChainAdapter.rpc(rpc_url)
        chain.get_block_number()
        return chain

    # anvil not listening yet is a passing chain error; after the timeout, that error
    return wait_until(
        connected,
        timeout=timeout,
        what=f"anvil at {rpc_url}",
        passing=lambda exc: isinstance(exc, SealbridgeError) and not isinstance(exc, DevnetError),
        reraise=True,
    )


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        wait_until(lambda: _is_gone(pid), timeout=5, what=f"process {pid} to exit", interval=0.05)
    except WaitTimeout:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _is_gone(pid: int) -> bool:
    """Has ``pid`` exited? (Reap it first when we started it, or it stays a zombie.)"""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not is_alive(pid)


def stop_devnet(home: Path) -> list[str]:
    """Stop every process of the devnet under ``home`` and delete its directory."""
    path = get_state_file(home)
    if not path.exists():
        raise DevnetNotRunning(f"no devnet under {home}")
    state = load_devnet_state(path)
    stopped = []
    gatekeepers = state.gatekeepers or [state.gatekeeper]
    for entry in [*state.storage, *state.workers, *gatekeepers]:
        kill_group(entry.pid)
        stopped.append(entry.name)
    kill_group(state.anvil_pid)
    stopped.append("anvil")
    shutil.rmtree(get_devnet_dir(home), ignore_errors=True)
    return stopped


def _node_row(entry: NodeEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": entry.name,
        "role": entry.role,
        "url": entry.url,
        "pid": entry.pid,
        "alive": is_alive(entry.pid),
    }
    try:
        row.update(httpx.get(entry.url + "/v1/status", timeout=2.0).json())
    except (httpx.HTTPError, ValueError):
        row["phase"] = "unreachable"
    return row


def get_devnet_status(home: Path) -> dict[str, Any]:
    """The chain, the TEE nodes (``nodes``) and the storage nodes (``storage``)."""
    state = load_running(home)
    chain = ChainAdapter.rpc(state.rpc_url)
    return {
        "home": state.home,
        "chain_id": state.chain_id,
        "rpc_url": state.rpc_url,
        "block_number": chain.get_block_number(),
        "nodes": [
            _node_row(entry)
            for entry in [*(state.gatekeepers or [state.gatekeeper]), *state.workers]
        ],
        "storage": [_node_row(entry) for entry in state.storage],
        "storage_threshold": state.storage_threshold,
        "users": state.users,
    }


def _find_node(state: DevnetState, name: str) -> NodeEntry:
    entries = {
        e.name: e
        for e in [*(state.gatekeepers or [state.gatekeeper]), *state.workers, *state.storage]
    }
    if name not in entries:
        raise DevnetError(f"no node named {name!r} (nodes: {', '.join(entries)})")
    return entries[name]


def _spawn_again(home: Path, state: DevnetState, entry: NodeEntry) -> subprocess.Popen[bytes]:
    """Start ``entry``'s process from its config file and record its new pid at once."""
    process = spawn_process(
        [sys.executable, "-m", "sealbridge.node", entry.config_file], Path(entry.log_file)
    )
    fresh = NodeEntry(**{**_fields(entry), "pid": process.pid})

    def swap(entries: list[NodeEntry]) -> list[NodeEntry]:
        return [fresh if e.name == entry.name else e for e in entries]

    fields = {f: getattr(state, f) for f in state.__struct_fields__}
    fields.update(
        workers=swap(state.workers),
        storage=swap(state.storage),
        gatekeepers=swap(state.gatekeepers),
        gatekeeper=fresh if state.gatekeeper.name == entry.name else state.gatekeeper,
    )
    save_json(get_state_file(home), DevnetState(**fields))
    return process


def _wait_started(
    entry: NodeEntry, process: subprocess.Popen[bytes], tip: int, timeout: float
) -> None:
    """Wait until the node serves again (a worker: until it follows the chain to ``tip``)."""
    log_file = Path(entry.log_file)
    if entry.role == WORKER:

        def caught_up() -> bool:
            return bool(_wait_worker(entry.url, process, log_file, timeout)["height"] >= tip)

        try:
            wait_until(caught_up, timeout=timeout, what=f"{entry.name} to reach block {tip}")
        except WaitTimeout as exc:
            raise DevnetError(
                f"{entry.name} did not catch up to block {tip} within {timeout:.0f}s"
            ) from exc
    elif entry.role == STORAGE:
        _wait_storage(entry.url, process, log_file, timeout)
    else:
        wait_http(entry.url + "/v1/status", process, log_file, timeout)


def restart_node(home: Path, name: str, *, timeout: float = 60.0) -> NodeEntry:
    """Kill a node process (as a crash would) and start it again from its data directory.

    The enclave unseals its identity (same measurement, same platform), so the node keeps
    its registration; a worker reinstalls its contracts from their sealed state.
    """
    state = load_running(home)
    entry = _find_node(state, name)
    tip = ChainAdapter.rpc(state.rpc_url).get_block_number()
    kill_group(entry.pid)
    process = _spawn_again(home, state, entry)
    _wait_started(entry, process, tip, timeout)
    return NodeEntry(**{**_fields(entry), "pid": process.pid})


def kill_node(home: Path, name: str, *, timeout: float = 10.0) -> NodeEntry:
    """SIGKILL a node's whole process group (host and, for a TEE node, its enclave) at
    once, as a crash or ``kill -9`` would: no handler runs, nothing is flushed. Its data
    directory stays as it is; :func:`start_node` starts it again."""
    entry = _find_node(load_running(home), name)
    try:
        os.killpg(entry.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return entry
    with contextlib.suppress(WaitTimeout):  # as before: return even if it lingers
        wait_until(
            lambda: _is_gone(entry.pid),
            timeout=timeout,
            what=f"{name} (pid {entry.pid}) to exit",
            interval=0.02,
        )
    return entry


def start_node(home: Path, name: str, *, wait: bool = True, timeout: float = 60.0) -> NodeEntry:
    """Start a node that is not running (after :func:`kill_node`) from its config file
    and data directory. Its new pid is recorded in the devnet state at once, so that
    :func:`stop_devnet` ends it even when it fails to start. With ``wait``, wait as
    :func:`restart_node` does (a worker: until it follows the chain up to the tip of the
    moment it was started; a failed worker raises :class:`DevnetError`)."""
    state = load_running(home)
    entry = _find_node(state, name)
    if is_alive(entry.pid):
        try:
            os.waitpid(entry.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if is_alive(entry.pid):
            raise DevnetError(f"{name} is still running (pid {entry.pid})")
    tip = ChainAdapter.rpc(state.rpc_url).get_block_number()
    process = _spawn_again(home, state, entry)
    if wait:
        _wait_started(entry, process, tip, timeout)
    return NodeEntry(**{**_fields(entry), "pid": process.pid})
