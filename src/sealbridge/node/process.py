"""Entry point of a node process: ``python -m sealbridge.node <config.json>``.

Wires a role's host to its enclave (sim TEE backend: a child process), the chain (JSON-RPC)
and an HTTP API (FastAPI on uvicorn, loopback), and runs the chain follower in a thread.
A storage node has no enclave and no follower: its thread only registers it. A gateway
(:mod:`sealbridge.node.gateway`) follows the other chains it bridges from the same thread.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from sealbridge.config.node import (
    GATEKEEPER,
    GATEWAY,
    STORAGE,
    WORKER,
    NodeConfig,
    load_node_config,
)
from sealbridge.core.errors import SealbridgeError
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.net.http import (
    add_bytes_route,
    add_json_route,
    add_raw_get_route,
    add_raw_post_route,
    install_error_handler,
)
from sealbridge.node.storage import StorageHost

WORKER_PROGRAM = "sealbridge.runtime.enclave:WorkerProgram"
GATEKEEPER_PROGRAM = "sealbridge.keyservice.enclave:GatekeeperProgram"
GATEWAY_PROGRAM = "sealbridge.interop.evm_gateway:GatewayProgram"
PROGRAMS = {GATEKEEPER: GATEKEEPER_PROGRAM, WORKER: WORKER_PROGRAM, GATEWAY: GATEWAY_PROGRAM}


def build_storage_app(config: NodeConfig) -> tuple[FastAPI, threading.Thread, StorageHost]:
    """A storage node: blob routes and status; its thread registers it on chain."""
    host = StorageHost(config)
    app = FastAPI(title=f"sealbridge storage {config.name}")
    install_error_handler(app)
    add_raw_post_route(app, "/v1/blobs", host.on_store, max_body=config.max_blob_size)
    add_raw_get_route(app, "/v1/blobs/{blob_hash}", host.on_fetch, param="blob_hash")
    add_json_route(app, "/v1/status", host.get_status)
    thread = threading.Thread(target=host.run, name="storage-driver", daemon=True)
    return app, thread, host


def build_app(config: NodeConfig) -> tuple[FastAPI, threading.Thread, object]:
    home = Path(config.home)
    home.mkdir(parents=True, exist_ok=True)
    if config.role == STORAGE:
        return build_storage_app(config)
    # imported here so that a storage process does not load the TEE roles' code
    from sealbridge.node.gatekeeper import GatekeeperHost
    from sealbridge.node.gateway import GatewayHost
    from sealbridge.node.worker import WorkerHost
    from sealbridge.tee.sim import SimBackend

    chain = ChainAdapter.rpc(config.rpc_url)
    program = PROGRAMS[config.role]
    enclave = SimBackend().launch(
        program,
        platform_key_file=Path(config.platform_key_file) if config.platform_key_file else None,
        # a TDX guest has no sealing key: its node starts with fresh keys each time
        sealed_identity_file=None if config.tee_backend == "tdx" else home / "identity.sealed",
        tee=config.tee_backend,
    )
    app = FastAPI(title=f"sealbridge {config.role} {config.name}")
    install_error_handler(app)
    if config.role == GATEKEEPER:
        gk = GatekeeperHost(config, enclave, chain)
        add_bytes_route(app, "/v1/attest", gk.on_attest)
        add_bytes_route(app, "/v1/partial", gk.on_partial_request)
        add_bytes_route(app, "/v1/group", gk.on_group)
        add_json_route(app, "/v1/info", gk.get_info)
        add_json_route(app, "/v1/status", gk.get_status)
        host: GatekeeperHost | WorkerHost | GatewayHost = gk
    elif config.role == GATEWAY:
        gateway = GatewayHost(config, enclave, chain)
        add_bytes_route(app, "/v1/sign", gateway.on_sign)
        add_bytes_route(app, "/v1/handover", gateway.on_handover)
        add_bytes_route(app, "/v1/group", gateway.on_group)
        add_json_route(app, "/v1/info", gateway.get_info)
        add_json_route(app, "/v1/status", gateway.get_status)
        host = gateway
    else:
        worker = WorkerHost(config, enclave, chain)
        add_bytes_route(app, "/v1/query", worker.on_query)
        add_bytes_route(app, "/v1/result", worker.on_result)
        add_bytes_route(app, "/v1/witness", worker.on_witness)
        add_json_route(app, "/v1/status", worker.get_status)
        host = worker
    thread = threading.Thread(target=host.run, name=f"{config.role}-follower", daemon=True)
    return app, thread, host


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sealbridge.node <node-config.json>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_node_config(Path(args[0]))
        app, thread, host = build_app(config)
    except SealbridgeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    thread.start()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning")
    )
    server.run()
    stop = getattr(host, "stop", None)
    if callable(stop):
        stop()
    return 0
