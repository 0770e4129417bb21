"""A two-chain devnet with a gateway committee, and one cross-chain transfer on it.

Theory of operation
-------------------
:class:`SwapDevnet` starts two anvil chains (prague, the same block time) and a committee
of ``m`` gateways, each its own node process (:mod:`sealbridge.node.gateway`) with its
own sim-TEE enclave (a child of that process) and its own account on both chains, the
way ``m`` operators would run them. Chain A also carries the management contracts and a
gatekeeper (:func:`~sealbridge.devnet.launcher.start_devnet` with no workers), which admits
the gateways to the NodeRegistry by attestation. This module plays the *operator* who
elects the committee and deploys the escrows, and the *relayer* who asks the gateways
for partial signatures over HTTP and submits transactions; it holds no key of the
committee and runs no gateway code.

A transfer (:meth:`SwapDevnet.run_transfer`) goes through InterTrust's phases, each
reported as a :class:`PhaseRecord` as it happens:

``setup``    each gateway registers by attestation; the operator elects them on the
             gateway committee contract (chain A) and they generate the committee key
             by the dealer-free DKG on chain; the escrows are deployed with the group
             key and named to the gateways (once per devnet)
``lock``     the sender locks value in the source escrow
``verify``   every gateway follows both chains from the anchors sealed at its setup;
             once the lock is ``confirmations`` blocks deep, ``t`` gateways sign the
             release message; the relayer combines the partials and checks the
             signature against the group key
``release``  the destination escrow checks the signature on chain (hash to G2, pairing)
             and pays the recipient out of its pool
``commit``   the gateways verify the destination's ``Released`` event and sign the
             commit; the source escrow moves the locked value to its pool
``abort``    (instead of release and commit, when the destination does not release
             before the lock's deadline) the gateways sign an abort once the
             destination chain's clock passed the deadline; the source refunds

:meth:`SwapDevnet.rotate_committee` elects a new committee. By default it is a reshare:
the same group key, so the escrows need no new key. With ``fresh=True`` the new members
generate a new key (``elect_fresh``), and the relayer then hands it over
(:meth:`SwapDevnet.hand_over`): it asks the gateways of the replaced era for partial
signatures of each escrow's key rotation (``POST /v1/handover``), checks each against
that era's public shares, combines ``t`` of them and sends ``rotate_key`` on both
escrows; the gateways erase the old shares once they have verified both ``KeyRotated``
events. Every threshold signature is recorded with its exact message, the partials it
came from and the committee's group public key (compressed, IETF POP ciphersuite), so
anyone can check it with another BLS implementation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.config.network import get_devnet_dir
from sealbridge.config.node import GATEWAY, DevnetState, NodeConfig, save_json, write_atomic
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.crypto import bls
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.crypto.signing import generate_secp256k1_key
from sealbridge.devnet.launcher import (
    MIN_STAKE,
    ROTATION_TIMEOUT_BLOCKS,
    kill_group,
    spawn_process,
    start_devnet,
    stop_devnet,
    wait_era,
    wait_http,
)
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.anvil import AnvilNode, get_free_port
from sealbridge.evm.committee import EraRecord, GatekeeperCommittee, deploy_committee
from sealbridge.evm.escrow import GatewayEscrow, LockedTransfer, deploy_gateway_escrow
from sealbridge.evm.management import ManagementAddresses
from sealbridge.interop.evm_gateway import (
    HandoverPartial,
    HandoverRequest,
    SignedPartial,
    SignKind,
    SignRequest,
)
from sealbridge.keyservice.committee import is_consistent_sharing
from sealbridge.net.http import NodeClient
from sealbridge.net.waiting import WaitTimeout, wait_until
from sealbridge.node.process import GATEWAY_PROGRAM
from sealbridge.tee.measurement import compute_sim_measurement

CHAIN_A, CHAIN_B = 31337, 31338
ETHER = 10**18
GATEWAY_FUNDING_WEI = 100 * ETHER  # each gateway's own account, on each chain
SIGN_TIMEOUT_S = 30.0
Progress = Callable[["PhaseRecord"], None]


class SwapError(LocalProtocolError):
    code = "swap_error"


class SignatureRecord(Message, frozen=True):
    """One threshold signature, checkable by anyone."""

    kind: str
    chain_id: int  # the chain whose escrow verifies it
    message: str  # hex of exactly the bytes hashed to G2
    signature: str  # hex, 96 bytes compressed G2
    group_public_key: str  # hex, 48 bytes compressed G1
    ciphersuite: str
    partials: list[dict[str, Any]]  # {"index", "signature"} of the t partials combined


class PhaseRecord(Message, frozen=True):
    phase: str
    at: float  # seconds since the transfer started (setup: since the devnet started)
    detail: dict[str, Any]
    signatures: list[SignatureRecord] = []


class SwapResult(Message, frozen=True):
    outcome: str  # "committed" | "aborted"
    transfer_id: str
    phases: list[PhaseRecord]
    latency_s: float
    transactions: int
    gas: dict[str, int]


class _Gateway:
    """What the relayer knows of one gateway node: its API and its process."""

    def __init__(self, name: str, url: str, process: subprocess.Popen[bytes], log_file: Path):
        self.name = name
        self.url = url
        self.process = process
        self.log_file = log_file
        self.node_id = b""
        self.account = ""

    def sign(self, request: SignRequest) -> SignedPartial:
        with NodeClient(self.url, timeout=SIGN_TIMEOUT_S) as client:
            return decode(client.post("/v1/sign", encode(request)), SignedPartial)

    def sign_handover(self, request: HandoverRequest) -> HandoverPartial:
        with NodeClient(self.url, timeout=SIGN_TIMEOUT_S) as client:
            return decode(client.post("/v1/handover", encode(request)), HandoverPartial)

    def get_status(self) -> dict[str, Any]:
        with NodeClient(self.url) as client:
            status: dict[str, Any] = client.get_json("/v1/status")
            return status

    def wait_status(
        self, is_ready: Callable[[dict[str, Any]], bool], *, timeout: float, failure: str
    ) -> dict[str, Any]:
        """Ask for the status until ``is_ready`` holds; raise SwapError ``failure`` if the
        process exits first or ``timeout`` seconds pass."""

        def ready() -> dict[str, Any] | None:
            status = self.get_status()
            if is_ready(status):
                return status
            if self.process.poll() is not None:
                raise SwapError(failure)
            return None

        try:
            return wait_until(ready, timeout=max(timeout, 0.0), what=f"{self.name}'s status")
        except WaitTimeout as exc:
            raise SwapError(failure) from exc


class SwapDevnet:
    """Two anvil chains, ``members`` gateway node processes (``threshold`` of them
    sign), and a GatewayEscrow on each chain; a context manager."""

    def __init__(
        self,
        *,
        members: int = 3,
        threshold: int = 2,
        block_time: float = 1.0,
        confirmations: int = 1,
        release_margin: int = 10,
        liquidity_eth: int = 100,
        home: Path | None = None,
        timeout: float = 90.0,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not 1 <= threshold <= members <= 16:
            raise SwapError("need 1 <= threshold <= members <= 16")
        if block_time <= 0:
            raise SwapError("block time must be positive")
        self.members = members
        self.threshold = threshold
        self.block_time = block_time
        self.confirmations = confirmations
        self.release_margin = release_margin
        self.liquidity = liquidity_eth * ETHER
        self.timeout = timeout
        self.say = progress or (lambda _msg: None)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.home = home
        self.devnet: DevnetState | None = None
        self.nodes: list[AnvilNode] = []
        self.adapters: dict[int, ChainAdapter] = {}
        self.urls: dict[int, str] = {}
        self.gateways: list[_Gateway] = []
        self.committee: GatekeeperCommittee | None = None
        self.group_public_key = b""
        self.escrows: dict[int, GatewayEscrow] = {}
        self.setup_record: PhaseRecord | None = None
        self._shares: dict[int, bytes] = {}
        self._shares_era = 0

    # -- start and stop ------------------------------------------------------------------
    def start(self) -> PhaseRecord:
        started = time.monotonic()
        if self.home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sealbridge-swap-")
            self.home = Path(self._tmp.name)
        self.home.mkdir(parents=True, exist_ok=True)
        # chain A: management contracts and one gatekeeper (the gateways' attestor)
        self.devnet = start_devnet(
            self.home,
            workers=0,
            storage_nodes=0,
            storage_threshold=1,
            gatekeepers=1,
            committee_threshold=1,
            chain_id=CHAIN_A,
            block_time=self.block_time,
            progress=self.say,
            timeout=self.timeout,
        )
        chain_a = ChainAdapter.rpc(self.devnet.rpc_url)
        self.nodes.append(AnvilNode(chain_id=CHAIN_B, block_time=self.block_time).start())
        self.adapters = {CHAIN_A: chain_a, CHAIN_B: self.nodes[0].adapter()}
        self.urls = {CHAIN_A: self.devnet.rpc_url, CHAIN_B: self.nodes[0].url}
        admin = chain_a.get_dev_key(0)
        addresses = ManagementAddresses.load(Path(self.devnet.addresses_file))
        committee_address = deploy_committee(
            chain_a, admin, addresses.node_registry, ROTATION_TIMEOUT_BLOCKS, Role.GATEWAY
        )
        self.committee = GatekeeperCommittee(chain_a, committee_address)
        self.say(f"gateway committee contract {committee_address} (members: gateways)")
        self._launch_gateways(addresses.node_registry, committee_address)
        record = self._elect(admin, [g.node_id for g in self.gateways])
        self.group_public_key = record.group_public_key
        for chain_id, adapter in self.adapters.items():
            deployer = adapter.get_dev_key(0)
            address = deploy_gateway_escrow(
                adapter, deployer, self.group_public_key, self.release_margin
            )
            escrow = GatewayEscrow(adapter, address)
            escrow.provide_liquidity(self.liquidity, deployer)
            self.escrows[chain_id] = escrow
        self._name_escrows()
        measurement = compute_sim_measurement(GATEWAY_PROGRAM)
        self.setup_record = PhaseRecord(
            phase="setup",
            at=round(time.monotonic() - started, 3),
            detail={
                "chains": {str(cid): url for cid, url in self.urls.items()},
                "block_time_s": self.block_time,
                "gateways": [
                    {
                        "name": g.name,
                        "url": g.url,
                        "identity_key": to_hex(g.node_id),
                        "account": g.account,
                    }
                    for g in self.gateways
                ],
                "measurement": to_hex(measurement),
                "threshold": record.threshold,
                "members": len(record.members),
                "group_public_key": to_hex(self.group_public_key),
                "committee": committee_address,
                "era": 1,
                "escrows": {str(cid): e.address for cid, e in self.escrows.items()},
                "liquidity_wei": self.liquidity,
                "note": "each gateway is its own process with its own account; a gatekeeper "
                "enclave checked its quote before the registry admitted it; the committee "
                "key was generated by the gateways' joint-Feldman DKG on chain (no dealer "
                "holds it); each light client starts from an anchor sealed at its setup",
            },
        )
        return self.setup_record

    def _launch_gateways(self, node_registry: str, committee_address: str) -> None:
        if self.devnet is None or self.home is None:
            raise SwapError("the devnet is not started")
        devnet = self.devnet
        directory = get_devnet_dir(self.home)
        ports = [get_free_port() for _ in range(self.members)]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        escrows_file = directory / "escrows.json"
        measurement = compute_sim_measurement(GATEWAY_PROGRAM)
        for i in range(self.members):
            name = f"gateway-{i + 1}"
            account_key = generate_secp256k1_key()
            for adapter in self.adapters.values():
                adapter.fund(ChainAdapter.address_of(account_key), GATEWAY_FUNDING_WEI)
            config = NodeConfig(
                role=GATEWAY,
                name=name,
                home=str(directory / name),
                rpc_url=devnet.rpc_url,
                addresses_file=devnet.addresses_file,
                eth_private_key=account_key.hex(),
                port=ports[i],
                platform_key_file=str(directory / "sim-platform.key"),
                platform_public_key=devnet.platform_public_key,
                allowed_measurements=[measurement.hex()],
                gatekeeper_url=devnet.gatekeeper.url,
                committee_address=committee_address,
                peer_urls=[u for j, u in enumerate(urls) if j != i],
                bridged_rpc_urls=[self.urls[CHAIN_B]],
                escrows_file=str(escrows_file),
                release_confirmations=max(self.confirmations, 1),
                stake_wei=MIN_STAKE,
            )
            config_file = directory / f"{name}.json"
            save_json(config_file, config)
            log_file = directory / f"{name}.log"
            process = spawn_process(
                [sys.executable, "-m", "sealbridge.node", str(config_file)], log_file
            )
            gateway = _Gateway(name, urls[i], process, log_file)
            gateway.account = ChainAdapter.address_of(account_key)
            self.gateways.append(gateway)
        registry = self.adapters[CHAIN_A]
        deadline = time.monotonic() + self.timeout
        for gateway in self.gateways:
            info = wait_http(gateway.url + "/v1/info", gateway.process, gateway.log_file, 60)
            gateway.node_id = from_hex(info["node_id"], size=32)
            gateway.wait_status(
                lambda status: bool(status["registered"]),
                timeout=deadline - time.monotonic(),  # one budget for all the gateways
                failure=f"{gateway.name} did not register (see {gateway.log_file})",
            )
            self.say(
                f"{gateway.name} {to_hex(gateway.node_id)[:18]}… registered by attestation "
                f"(account {gateway.account}, registry {node_registry} on chain "
                f"{registry.chain_id})"
            )

    def _elect(self, admin: bytes, members: list[bytes]) -> EraRecord:
        committee = self._committee()
        committee.elect(members, self.threshold, admin)
        era = committee.get_pending_era()
        record = wait_era(committee, era, self.timeout)
        self.say(
            f"committee era {era}: {record.threshold} of {len(record.members)} gateways, key "
            f"generated on chain by the gateways (group key "
            f"{to_hex(record.group_public_key)[:18]}…)"
        )
        return record

    def _committee(self) -> GatekeeperCommittee:
        if self.committee is None:
            raise SwapError("the devnet is not started")
        return self.committee

    def _name_escrows(self) -> None:
        if self.home is None:
            raise SwapError("the devnet is not started")
        escrows_file = get_devnet_dir(self.home) / "escrows.json"
        listed = {str(cid): e.address for cid, e in self.escrows.items()}
        write_atomic(escrows_file, json.dumps(listed).encode())
        deadline = time.monotonic() + self.timeout
        for gateway in self.gateways:
            # each gateway has its share active (RotationReady handed over) and the escrows
            gateway.wait_status(
                lambda status: (
                    len(status["escrows"]) >= len(self.escrows) and bool(status["member"])
                ),
                timeout=deadline - time.monotonic(),  # one budget for all the gateways
                failure=f"{gateway.name} did not take its share and the escrows",
            )

    def rotate_committee(self, members: list[int], *, fresh: bool = False) -> EraRecord:
        """Elect the gateways at positions ``members`` (0-based) as the next era.

        Default: they reshare the same key (the escrows keep theirs), the others erase
        their shares. ``fresh``: they generate a new key, which the replaced era's
        gateways then hand over to both escrows (:meth:`hand_over`); the old shares are
        erased once the gateways have seen both escrows install the new key."""
        admin = self.adapters[CHAIN_A].get_dev_key(0)
        node_ids = [self.gateways[i].node_id for i in members]
        if not fresh:
            record = self._elect(admin, node_ids)
            if record.group_public_key != self.group_public_key:
                raise SwapError("the reshare changed the committee's group key")
            return record
        committee = self._committee()
        committee.elect_fresh(node_ids, self.threshold, admin)
        era = committee.get_pending_era()
        record = wait_era(committee, era, self.timeout)
        if record.group_public_key == self.group_public_key:
            raise SwapError("the fresh era kept the committee's group key")
        self.say(
            f"committee era {era}: {record.threshold} of {len(record.members)} gateways, a "
            f"fresh key generated on chain (group key {to_hex(record.group_public_key)[:18]}…)"
        )
        self.hand_over(record.group_public_key, self.timeout)
        return record

    def hand_over(self, new_group_key: bytes, timeout: float) -> list[SignatureRecord]:
        """Install a fresh era's group key on every escrow: for each, collect ``t``
        partials of its ``rotate_key`` message from the replaced era's gateways, each
        checked against that era's public shares (accepted only as a consistent sharing
        of the key the escrow holds now), combine, verify and send the transaction."""
        records: list[SignatureRecord] = []
        for chain_id, escrow in sorted(self.escrows.items()):
            record = self._collect_handover(chain_id, escrow, new_group_key, timeout)
            relayer_key = escrow.adapter.get_dev_key(3)
            escrow.rotate_key(new_group_key, bytes.fromhex(record.signature[2:]), relayer_key)
            if escrow.get_group_public_key() != new_group_key:
                raise SwapError(f"the escrow on chain {chain_id} did not install the key")
            self.say(
                f"chain {chain_id}: escrow key epoch {escrow.get_key_epoch()}, group key "
                f"{to_hex(new_group_key)[:18]}… (signed by the replaced era's partials "
                f"{[p['index'] for p in record.partials]})"
            )
            records.append(record)
        self.group_public_key = new_group_key
        self._shares_era = 0  # the next era's public shares are fetched again
        return records

    def _collect_handover(
        self, chain_id: int, escrow: GatewayEscrow, new_group_key: bytes, timeout: float
    ) -> SignatureRecord:
        current = escrow.get_group_public_key()
        expected = escrow.compute_key_rotation_message(new_group_key)
        request = HandoverRequest(
            chain_id=chain_id, escrow=escrow.address, new_group_key=new_group_key
        )
        # the public shares each partial comes with are its gateway's word: partials are
        # collected per offered set, and a set counts only once t of its partials combine
        # into a signature the escrow's current key verifies (one host offering made-up
        # shares first used to make every honest partial look bad, and the handover stall)
        candidates: dict[bytes, tuple[GroupPublicKeys, dict[int, HandoverPartial]]] = {}
        refused: set[bytes] = set()
        last_refusal = ""

        def ask_round() -> tuple[GroupPublicKeys, list[HandoverPartial], bytes] | None:
            """Ask every gateway once; the first offered set whose t partials combine."""
            nonlocal last_refusal
            for gateway in self.gateways:
                try:
                    signed = gateway.sign_handover(request)
                except SealbridgeError as exc:
                    last_refusal = f"{gateway.name}: {exc.message}"
                    continue
                offered = signed.group
                key = encode(offered)
                if key in refused:
                    continue
                if offered.group_public_key != current or not is_consistent_sharing(offered):
                    last_refusal = f"{gateway.name}: public shares of another key"
                    continue
                group, partials = candidates.setdefault(key, (offered, {}))
                share = group.public_shares.get(signed.partial.index)
                if (
                    signed.message != expected
                    or share is None
                    or not bls.is_valid_partial(share, signed.message, signed.partial)
                ):
                    last_refusal = f"{gateway.name}: a partial that does not verify"
                    continue
                partials.setdefault(signed.partial.index, signed)
                if len(partials) < group.threshold:
                    continue
                chosen = list(partials.values())[: group.threshold]
                signature = bls.combine([c.partial for c in chosen], group.threshold)
                if bls.verify(current, expected, signature):
                    return group, chosen, signature
                refused.add(key)  # shares that do not make the escrow's key
                del candidates[key]
                last_refusal = f"{gateway.name}: public shares that do not combine to the key"
            return None

        try:
            group, chosen, signature = wait_until(
                ask_round,
                timeout=timeout,
                what=f"handover partials for chain {chain_id}",
                interval=self.block_time / 4,
            )
        except WaitTimeout as exc:
            collected = max((len(p) for _, p in candidates.values()), default=0)
            raise SwapError(
                f"timed out collecting handover partials for chain {chain_id} "
                f"({collected}; last refusal: {last_refusal})"
            ) from exc
        return SignatureRecord(
            kind="key_rotation",
            chain_id=chain_id,
            message=to_hex(expected),
            signature=to_hex(signature),
            group_public_key=to_hex(current),
            ciphersuite=bls.CIPHERSUITE.decode(),
            partials=[
                {"index": s.partial.index, "signature": to_hex(s.partial.signature)} for s in chosen
            ],
        )

    def stop(self) -> None:
        for gateway in self.gateways:
            kill_group(gateway.process.pid)
        if self.home is not None and self.devnet is not None:
            try:
                stop_devnet(self.home)
            except SealbridgeError:
                pass
        for node in self.nodes:
            node.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SwapDevnet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the relayer's work ----------------------------------------------------------------
    def collect(self, kind: SignKind, transfer_id: bytes, timeout: float) -> SignatureRecord:
        """Ask the gateways for partials until ``t`` arrive (asking again while they
        refuse, e.g. for too few confirmations); combine and check."""
        shares = self.get_public_shares()
        by_message: dict[bytes, dict[int, SignedPartial]] = {}
        last_refusal = ""

        def ask_round() -> list[SignedPartial] | None:
            """Ask every gateway once; the first t valid partials of one message."""
            nonlocal last_refusal
            for gateway in self.gateways:
                try:
                    signed = gateway.sign(SignRequest(kind=kind, transfer_id=transfer_id))
                except SealbridgeError as exc:
                    last_refusal = f"{gateway.name}: {exc.message}"
                    continue
                share = shares.get(signed.partial.index)
                if share is None or not bls.is_valid_partial(share, signed.message, signed.partial):
                    last_refusal = f"{gateway.name}: a partial that does not verify"
                    continue
                partials = by_message.setdefault(signed.message, {})
                partials.setdefault(signed.partial.index, signed)
                if len(partials) >= self.threshold:
                    return list(partials.values())[: self.threshold]
            return None

        try:
            chosen = wait_until(
                ask_round,
                timeout=timeout,
                what=f"{kind.value} partials",
                interval=self.block_time / 4,
            )
        except WaitTimeout as exc:
            most = max((len(p) for p in by_message.values()), default=0)
            raise SwapError(
                f"timed out collecting {kind.value} partials ({most} of "
                f"{self.threshold}; last refusal: {last_refusal})"
            ) from exc
        message = chosen[0].message
        signature = bls.combine([s.partial for s in chosen], self.threshold)
        if not bls.verify(self.group_public_key, message, signature):
            raise SwapError("the combined signature does not verify under the group key")
        return SignatureRecord(
            kind=kind.value,
            chain_id=chosen[0].chain_id,
            message=to_hex(message),
            signature=to_hex(signature),
            group_public_key=to_hex(self.group_public_key),
            ciphersuite=bls.CIPHERSUITE.decode(),
            partials=[
                {"index": s.partial.index, "signature": to_hex(s.partial.signature)} for s in chosen
            ],
        )

    def get_status(self) -> list[dict[str, Any]]:
        return [g.get_status() for g in self.gateways]

    def get_public_shares(self) -> dict[int, bytes]:
        """The current era's public shares, from any gateway that gives a consistent
        sharing of the group key the chain recorded (cached per era)."""
        era = self._committee().get_current_era()
        if self._shares_era == era:
            return self._shares
        for gateway in self.gateways:
            try:
                with NodeClient(gateway.url) as client:
                    group = decode(client.post("/v1/group", b""), GroupPublicKeys)
            except SealbridgeError:
                continue
            if group.group_public_key == self.group_public_key and is_consistent_sharing(group):
                self._shares, self._shares_era = group.public_shares, era
                return self._shares
        raise SwapError("no gateway gave the committee's public shares")

    # -- one transfer ----------------------------------------------------------------------
    def run_transfer(
        self,
        *,
        amount: int,
        abort: bool = False,
        deadline_s: int = 120,
        progress: Progress | None = None,
        timeout: float = 90.0,
        reverse: bool = False,
    ) -> SwapResult:
        """Move ``amount`` wei from dev account 1 on chain A to dev account 2 on chain B
        (``reverse``: from dev account 2 on B to dev account 1 on A; with ``abort``, the
        destination never releases and the sender is refunded after the deadline)."""
        if amount <= 0:
            raise SwapError("amount must be positive")
        source, dest = self.escrows[CHAIN_A], self.escrows[CHAIN_B]
        sender_index, recipient_index = 1, 2
        if reverse:
            source, dest = dest, source
            sender_index, recipient_index = 2, 1
        sender_key = source.adapter.get_dev_key(sender_index)
        relayer_key = source.adapter.get_dev_key(3)
        recipient = ChainAdapter.address_of(dest.adapter.get_dev_key(recipient_index))
        started = time.monotonic()
        phases: list[PhaseRecord] = []
        gas: dict[str, int] = {}

        def emit(phase: str, detail: dict[str, Any], sigs: list[SignatureRecord]) -> None:
            record = PhaseRecord(
                phase=phase,
                at=round(time.monotonic() - started, 3),
                detail=detail,
                signatures=sigs,
            )
            phases.append(record)
            if progress is not None:
                progress(record)

        def tx(name: str, receipt: TxReceipt, chain_id: int) -> dict[str, Any]:
            gas[name] = receipt.gas_used
            return {
                "chain_id": chain_id,
                "tx": to_hex(receipt.tx_hash),
                "block": receipt.block_number,
                "gas": receipt.gas_used,
            }

        recipient_before = dest.adapter.balance(recipient)
        deadline = source.adapter.get_block("latest").timestamp + (
            max(deadline_s, self.release_margin + 2) if not abort else self.release_margin + 3
        )
        transfer, lock_receipt = source.lock(
            os.urandom(32), dest.chain_id, dest.address, recipient, deadline, amount, sender_key
        )
        emit(
            "lock",
            {
                **tx("lock", lock_receipt, source.chain_id),
                "transfer_id": to_hex(transfer.transfer_id),
                "amount_wei": amount,
                "sender": transfer.sender,
                "recipient": recipient,
                "deadline": deadline,
                "lock_ref": to_hex(transfer.lock_ref),
            },
            [],
        )
        if abort:
            return self._abort(
                source, dest, transfer, relayer_key, emit, tx, phases, gas, started, timeout
            )
        release_sig = self.collect(SignKind.RELEASE, transfer.transfer_id, timeout)
        emit(
            "verify",
            {
                "confirmations": self.confirmations,
                "signers": [p["index"] for p in release_sig.partials],
                "verified_locally": True,
            },
            [release_sig],
        )
        release = dest.release(transfer, bytes.fromhex(release_sig.signature[2:]), relayer_key)
        paid = dest.adapter.balance(recipient) - recipient_before
        emit(
            "release",
            {**tx("release", release, dest.chain_id), "recipient_received_wei": paid},
            [],
        )
        commit_sig = self.collect(SignKind.COMMIT, transfer.transfer_id, timeout)
        commit = source.commit(
            transfer.transfer_id, bytes.fromhex(commit_sig.signature[2:]), relayer_key
        )
        lock = source.get_lock(transfer.transfer_id)
        emit(
            "commit",
            {
                **tx("commit", commit, source.chain_id),
                "source_state": lock.state.name if lock is not None else "?",
            },
            [commit_sig],
        )
        return SwapResult(
            outcome="committed",
            transfer_id=to_hex(transfer.transfer_id),
            phases=phases,
            latency_s=round(time.monotonic() - started, 3),
            transactions=len(gas),
            gas=gas,
        )

    def _abort(
        self,
        source: GatewayEscrow,
        dest: GatewayEscrow,
        transfer: LockedTransfer,
        relayer_key: bytes,
        emit: Callable[[str, dict[str, Any], list[SignatureRecord]], None],
        tx: Callable[[str, TxReceipt, int], dict[str, Any]],
        phases: list[PhaseRecord],
        gas: dict[str, int],
        started: float,
        timeout: float,
    ) -> SwapResult:
        sender_before = source.adapter.balance(transfer.sender)
        abort_sig = self.collect(SignKind.ABORT, transfer.transfer_id, timeout)
        receipt = source.abort(
            transfer.transfer_id, bytes.fromhex(abort_sig.signature[2:]), relayer_key
        )
        lock = source.get_lock(transfer.transfer_id)
        emit(
            "abort",
            {
                **tx("abort", receipt, source.chain_id),
                "reason": "no release before the deadline on the destination chain",
                "sender_refunded_wei": source.adapter.balance(transfer.sender) - sender_before,
                "source_state": lock.state.name if lock is not None else "?",
                "released_on_destination": dest.is_released(transfer.transfer_id),
            },
            [abort_sig],
        )
        return SwapResult(
            outcome="aborted",
            transfer_id=to_hex(transfer.transfer_id),
            phases=phases,
            latency_s=round(time.monotonic() - started, 3),
            transactions=len(gas),
            gas=gas,
        )


@contextmanager
def swap_devnet(**kwargs: Any) -> Iterator[SwapDevnet]:
    devnet = SwapDevnet(**kwargs)
    try:
        devnet.start()
        yield devnet
    finally:
        devnet.stop()
