"""A two-chain devnet with a gateway committee, and one cross-chain transfer on it.

Theory of operation
-------------------
:class:`SwapDevnet` starts two anvil chains (prague, the same block time), a committee of
``m`` gateways -- each a sim-TEE enclave in its own OS process running
:class:`~sealbridge.interop.evm_gateway.GatewayProgram` -- and deploys a GatewayEscrow
on each chain with the committee's group key. This module is the gateways' *host*: it
moves bytes between the chains and the enclaves and relays transactions; the enclaves
verify every block they are given and decide what to sign.

A transfer (:meth:`SwapDevnet.run_transfer`) goes through InterTrust's phases, each
reported as a :class:`PhaseRecord` as it happens:

``setup``    the gateways attest each other, one deals the committee key in its enclave,
             the escrows are deployed with the group key (once per devnet)
``lock``     the sender locks value in the source escrow
``verify``   every gateway follows both chains; once the lock is ``confirmations``
             blocks deep, ``t`` gateways sign the release message; the host combines
             the partials and checks the signature against the group key
``release``  the destination escrow checks the signature on chain (hash to G2, pairing)
             and pays the recipient out of its pool
``commit``   the gateways verify the destination's ``Released`` event and sign the
             commit; the source escrow moves the locked value to its pool
``abort``    (instead of release and commit, when the destination does not release
             before the lock's deadline) the gateways sign an abort once the
             destination chain's clock passed the deadline; the source refunds

Every threshold signature is recorded with its exact message, the partials it came from
and the committee's group public key (compressed, IETF POP ciphersuite), so anyone can
check it with another BLS implementation.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sealbridge.chain.adapter import ChainAdapter, TxReceipt
from sealbridge.chain.anvil import AnvilNode
from sealbridge.chain.escrow import GatewayEscrow, LockedTransfer, deploy_gateway_escrow
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import to_hex
from sealbridge.crypto import bls
from sealbridge.interop.evm_gateway import (
    CommitteeSetup,
    Configure,
    DealRequest,
    FollowBlock,
    GatewayCard,
    GatewayStatus,
    Height,
    JoinRequest,
    SignedPartial,
    SignKind,
    SignRequest,
    Watch,
    WatchedChain,
)
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import SimBackend

GATEWAY_PROGRAM = "sealbridge.interop.evm_gateway:GatewayProgram"
CHAIN_A, CHAIN_B = 31337, 31338
ETHER = 10**18
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
    def __init__(self, name: str, handle: EnclaveHandle) -> None:
        self.name = name
        self.handle = handle
        self.followed: dict[int, int] = {}

    def call(self, name: str, request: Message | None = None) -> bytes:
        return self.handle.ecall(name, encode(request) if request is not None else b"")


class SwapDevnet:
    """Two anvil chains, ``members`` gateway enclaves (``threshold`` of them sign), and a
    GatewayEscrow on each chain; a context manager."""

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
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.home = home
        self.nodes: list[AnvilNode] = []
        self.gateways: list[_Gateway] = []
        self.setup: CommitteeSetup | None = None
        self.escrows: dict[int, GatewayEscrow] = {}
        self.setup_record: PhaseRecord | None = None

    # -- start and stop ------------------------------------------------------------------
    def start(self) -> PhaseRecord:
        started = time.monotonic()
        if self.home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sealbridge-swap-")
            self.home = Path(self._tmp.name)
        self.home.mkdir(parents=True, exist_ok=True)
        for chain_id in (CHAIN_A, CHAIN_B):
            self.nodes.append(AnvilNode(chain_id=chain_id, block_time=self.block_time).start())
        adapters = {node.chain_id: node.adapter() for node in self.nodes}
        platform_key = self.home / "sim-platform.key"
        if platform_key.exists():
            platform_key.unlink()
        platform_pub = create_sim_platform(platform_key)
        measurement = compute_sim_measurement(GATEWAY_PROGRAM)
        backend = SimBackend()
        for i in range(self.members):
            handle = backend.launch(GATEWAY_PROGRAM, platform_key_file=platform_key)
            self.gateways.append(_Gateway(f"gateway-{i + 1}", handle))
        deployer = adapters[CHAIN_A].get_dev_key(0)
        # the committee first: the escrows need its key
        policy = devnet_policy(platform_pub, [measurement])
        for gateway in self.gateways:
            gateway.call("configure", Configure(policy=policy, confirmations=self.confirmations))
        cards = [decode(g.call("card"), GatewayCard) for g in self.gateways]
        dealer = self.gateways[0]
        setup = decode(
            dealer.call("deal", DealRequest(cards=cards, threshold=self.threshold)),
            CommitteeSetup,
        )
        for gateway in self.gateways[1:]:
            gateway.call("join", JoinRequest(setup=setup, dealer=cards[0]))
        self.setup = setup
        for chain_id, adapter in adapters.items():
            address = deploy_gateway_escrow(
                adapter, deployer, setup.group_public_key, self.release_margin
            )
            escrow = GatewayEscrow(adapter, address)
            escrow.provide_liquidity(self.liquidity, deployer)
            self.escrows[chain_id] = escrow
        self._watch_all(adapters)
        self.setup_record = PhaseRecord(
            phase="setup",
            at=round(time.monotonic() - started, 3),
            detail={
                "chains": {str(node.chain_id): node.url for node in self.nodes},
                "block_time_s": self.block_time,
                "gateways": [
                    {"name": g.name, "identity_key": to_hex(c.node.identity_key)}
                    for g, c in zip(self.gateways, cards, strict=True)
                ],
                "measurement": to_hex(measurement),
                "threshold": setup.threshold,
                "members": len(setup.members),
                "group_public_key": to_hex(setup.group_public_key),
                "dealer": to_hex(setup.dealer),
                "escrows": {str(cid): e.address for cid, e in self.escrows.items()},
                "liquidity_wei": self.liquidity,
                "note": "each gateway checked the others' quotes (sim TEE, devnet policy); "
                "the dealer generated the key in its enclave and encrypted each share "
                "to its member's attested key",
            },
        )
        return self.setup_record

    def _watch_all(self, adapters: dict[int, ChainAdapter]) -> None:
        chains = []
        for chain_id, adapter in adapters.items():
            anchor = adapter.get_block("latest")
            chains.append(
                WatchedChain(
                    chain_id=chain_id,
                    escrow=self.escrows[chain_id].address,
                    anchor_number=anchor.number,
                    anchor_hash=anchor.hash,
                )
            )
        for gateway in self.gateways:
            gateway.call("watch", Watch(chains=chains))
            for chain in chains:
                gateway.followed[chain.chain_id] = chain.anchor_number

    def stop(self) -> None:
        for gateway in self.gateways:
            try:
                gateway.handle.close()
            except SealbridgeError:
                pass
        for node in self.nodes:
            node.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SwapDevnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the host's work -------------------------------------------------------------------
    def follow(self) -> None:
        """Hand every gateway enclave the blocks it has not seen (with their evidence)."""
        for chain_id, escrow in self.escrows.items():
            adapter = escrow.adapter
            tip = adapter.get_block_number()
            for gateway in self.gateways:
                first = gateway.followed[chain_id] + 1
                if first > tip:
                    continue
                for evidence in adapter.get_block_evidence(list(range(first, tip + 1))):
                    out = gateway.call("follow", FollowBlock(chain_id=chain_id, evidence=evidence))
                    gateway.followed[chain_id] = decode(out, Height).number

    def collect(self, kind: SignKind, transfer_id: bytes, timeout: float) -> SignatureRecord:
        """Ask the gateways for partials until ``t`` arrive (following the chains while
        they refuse, e.g. for too few confirmations); combine and check."""
        assert_setup = self.setup
        if assert_setup is None:
            raise SwapError("the devnet is not started")
        deadline = time.monotonic() + timeout
        partials: dict[int, SignedPartial] = {}
        last_refusal = ""
        while True:
            self.follow()
            for gateway in self.gateways:
                if len(partials) >= assert_setup.threshold:
                    break
                try:
                    signed = decode(
                        gateway.call("sign", SignRequest(kind=kind, transfer_id=transfer_id)),
                        SignedPartial,
                    )
                except SealbridgeError as exc:
                    last_refusal = f"{gateway.name}: {exc.message}"
                    continue
                partials.setdefault(signed.partial.index, signed)
            if len(partials) >= assert_setup.threshold:
                break
            if time.monotonic() > deadline:
                raise SwapError(
                    f"timed out collecting {kind.value} partials ({len(partials)} of "
                    f"{assert_setup.threshold}; last refusal: {last_refusal})"
                )
            time.sleep(self.block_time / 4)
        chosen = list(partials.values())[: assert_setup.threshold]
        messages = {s.message for s in chosen}
        if len(messages) != 1:
            raise SwapError("the gateways signed different messages")
        message = chosen[0].message
        signature = bls.combine([s.partial for s in chosen], assert_setup.threshold)
        if not bls.verify(assert_setup.group_public_key, message, signature):
            raise SwapError("the combined signature does not verify under the group key")
        return SignatureRecord(
            kind=kind.value,
            chain_id=chosen[0].chain_id,
            message=to_hex(message),
            signature=to_hex(signature),
            group_public_key=to_hex(assert_setup.group_public_key),
            ciphersuite=bls.CIPHERSUITE.decode(),
            partials=[
                {"index": s.partial.index, "signature": to_hex(s.partial.signature)} for s in chosen
            ],
        )

    def get_status(self) -> list[GatewayStatus]:
        return [decode(g.call("status"), GatewayStatus) for g in self.gateways]

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
