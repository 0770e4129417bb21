"""The key-release devnet as a service: ``python -m sealbridge.devnet.keyrelease_service``.

Theory of operation: one process owns a :class:`~sealbridge.devnet.keyrelease.KeyReleaseDevnet`
(two anvil chains, the matcher enclave, the vault enclaves; all of them child processes)
and serves its steps over loopback HTTP with canonical msgpack bodies
(:mod:`sealbridge.net.http`), so the ``sealbridge keyrelease`` commands can run one step
each: create a vault, post a bond, deposit and offer chunks, request, accept (which runs
contract Z, the tit-for-tat swap), status. Every answer carries the events the step
produced. One lock serializes the steps (the devnet is one host driving its enclaves).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from sealbridge.core.encoding import Message, decode, encode, to_builtins
from sealbridge.core.errors import SealbridgeError
from sealbridge.devnet.keyrelease import (
    USD,
    Event,
    KeyReleaseDevnet,
    KeyReleaseDevnetError,
    SwapOutcome,
)
from sealbridge.keyrelease.auth import SignedRequest, normalize_client_name
from sealbridge.keyrelease.matcher_program import Accept, MatchAnswer
from sealbridge.keyrelease.types import AssetKind, ChunkRequest
from sealbridge.net.http import add_bytes_route, add_json_route, install_error_handler

__all__ = [
    "AcceptRequest",
    "DepositRequest",
    "StepResult",
    "VaultRequest",
    "build_app",
]


class VaultRequest(Message, frozen=True):
    """Create a client. The answer carries its wallet key, once: every later request of
    the client is signed with it (see ``keyrelease/auth.py``)."""

    name: str
    compromised: bool = False


class DepositRequest(Message, frozen=True):
    """The body of a signed ``deposit`` request."""

    name: str
    asset: str
    chunks: int
    bond_usd: int = 0  # post a bond first and register as an owner (once)
    offer: bool = True  # put the chunks in the matcher's book


class AcceptRequest(Message, frozen=True):
    signed: SignedRequest  # action "accept", body an ``Accept`` of the offer (and the
    # asset the requester gives in the swap: signed with the rest)


class StepResult(Message, frozen=True):
    events: list[Event]
    result: dict[str, Any] = {}


class KeyReleaseService:
    def __init__(self, devnet: KeyReleaseDevnet) -> None:
        self.devnet = devnet
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.answers: dict[str, MatchAnswer] = {}
        devnet.progress = self.events.append

    def _step(self, run: Callable[[], dict[str, Any]]) -> bytes:
        with self.lock:
            self.events.clear()
            result = run()
            return encode(StepResult(events=list(self.events), result=result))

    def on_vault(self, body: bytes) -> bytes:
        request = decode(body, VaultRequest)

        def run() -> dict[str, Any]:
            client = self.devnet.add_client(request.name, compromised=request.compromised)
            return {
                "name": client.name,
                "vault": client.vault_id,
                "account": client.account,
                "service": self.devnet.service_id.hex(),
                # the client's key, to the client that created it (a custodial devnet
                # wallet: the service sends the client's transactions with it)
                "wallet_key": client.wallet_key.hex(),
            }

        return self._step(run)

    def on_deposit(self, body: bytes) -> bytes:
        signed = decode(body, SignedRequest)
        request = decode(signed.request.body, DepositRequest)
        if not 1 <= request.chunks <= 64:
            raise KeyReleaseDevnetError("deposit 1 to 64 chunks at a time")
        if not 0 <= request.bond_usd <= 10**9:
            raise KeyReleaseDevnetError("bond_usd must be in [0, 1e9]")

        def run() -> dict[str, Any]:
            owner = self.devnet.clients.get(normalize_client_name(request.name))
            if owner is None:
                raise KeyReleaseDevnetError(f"no client {request.name!r}")
            client = self.devnet.check_client(signed, "deposit", owner.account)
            # everything that can be checked is, before money moves; the nonce is taken
            # now, so the same signed deposit cannot be sent twice even if a step fails
            asset = self.devnet.assets.get(request.asset)
            if asset is None:
                raise KeyReleaseDevnetError(f"unknown asset {request.asset!r}")
            if request.offer and asset.kind == AssetKind.BTC:
                raise KeyReleaseDevnetError(
                    "btc chunks are not offered: the matcher cannot prove a bitcoin balance"
                )
            owners = self.devnet.matcher_status().owners
            if request.offer and not request.bond_usd and client.account not in owners:
                raise KeyReleaseDevnetError(
                    f"{client.name} has no bond yet: post one (--bond) to offer chunks"
                )
            if request.bond_usd and client.account in owners:
                raise KeyReleaseDevnetError(
                    f"{client.name} posted its bond already (a bond is posted once, when "
                    "it registers as an owner): deposit without --bond"
                )
            self.devnet.took(signed, client)
            if request.bond_usd:
                self.devnet.post_bond(client.name, request.bond_usd * USD)
            chunks = self.devnet.deposit(client.name, request.asset, request.chunks)
            if request.offer:
                self.devnet.offer(client.name, chunks)
            return {"chunks": [c.chunk_id for c in chunks], "offered": request.offer}

        return self._step(run)

    def on_request(self, body: bytes) -> bytes:
        signed = decode(body, SignedRequest)
        request = decode(signed.request.body, ChunkRequest)
        if not 1 * USD <= request.usd_e8 <= 10**9 * USD:
            raise KeyReleaseDevnetError("usd must be in [1, 1e9]")
        for what, value in (("contract", request.contract), ("request id", request.request_id)):
            if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
                raise KeyReleaseDevnetError(f"{what}s are 1 to 64 printable characters")

        def run() -> dict[str, Any]:
            answer = self.devnet.request_signed(signed)
            self.answers[answer.offer.request_id] = answer
            return {
                "request_id": answer.offer.request_id,
                "contract": answer.offer.contract,
                "chunks": [c.chunk_id for c in answer.offer.chunks],
                "fee_usd": answer.offer.fee_e8 / USD,
            }

        return self._step(run)

    def on_accept(self, body: bytes) -> bytes:
        request = decode(body, AcceptRequest)
        accept = decode(request.signed.request.body, Accept)

        def run() -> dict[str, Any]:
            answer = self.answers.get(accept.request_id)
            if answer is None:
                raise KeyReleaseDevnetError(f"no offer {accept.request_id!r} to accept")
            if accept.give_asset not in self.devnet.assets:  # checked before the fee
                raise KeyReleaseDevnetError(f"unknown asset {accept.give_asset!r} to give")
            self.devnet.accept_signed(answer, request.signed)
            del self.answers[accept.request_id]
            name = self.devnet.clients_by_account(accept.requester).name
            outcome: SwapOutcome = self.devnet.run_swap(name, answer, accept.give_asset)
            result: dict[str, Any] = to_builtins(outcome)
            return result

        return self._step(run)

    def get_status(self) -> dict[str, Any]:
        with self.lock:
            devnet = self.devnet
            return {
                "chains": {str(n.chain_id): n.url for n in devnet.nodes},
                "pool_wei": devnet.pool.get_pool(),
                "matcher": to_builtins(devnet.matcher_status()),
                "vaults": {name: to_builtins(devnet.vault_status(name)) for name in devnet.clients},
                "open_offers": sorted(self.answers),
                "service": devnet.service_id.hex(),
            }


def build_app(service: KeyReleaseService) -> FastAPI:
    app = FastAPI(title="sealbridge key-release devnet")
    install_error_handler(app)
    add_bytes_route(app, "/v1/vaults", service.on_vault)
    add_bytes_route(app, "/v1/deposits", service.on_deposit)
    add_bytes_route(app, "/v1/requests", service.on_request)
    add_bytes_route(app, "/v1/accept", service.on_accept)
    add_json_route(app, "/v1/status", service.get_status)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sealbridge.devnet.keyrelease_service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(0)  # unwinds into the finally below: chains and enclaves stop

    signal.signal(signal.SIGTERM, on_term)
    devnet = KeyReleaseDevnet(clients=(), compromised=(), home=args.home)
    try:
        devnet.start()
        service = KeyReleaseService(devnet)
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(service), host="127.0.0.1", port=args.port, log_level="warning"
            )
        )
        args.ready_file.write_text(json.dumps({"port": args.port}))
        server.run()
    except SealbridgeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        devnet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
