"""Building an InterTrust deployment: two ASes, their replicas, gateway pairs, keys.

Theory of operation
-------------------
:func:`build_deployment` turns an :class:`InteropSpec` (a seed and a few numbers) into
every core of a two-AS deployment, deterministically: the same spec gives the same keys,
the same nodes and -- under a deterministic simulator -- the same run.

* Each AS (ids :data:`AS_A`, :data:`AS_B`) is a consensus cluster
  (:class:`~sealbridge.consensus.replica.Replica`, trusted dealing of its consensus key as
  in :mod:`sealbridge.consensus.cluster`) of ``n`` replicas tolerating
  ``f = (n - 1) // 3`` faults unless given. Replica ``i`` of AS ``a`` has node id
  ``100 * a + i``; each also gets an X25519 encryption key (for its interop shares) and an
  Ed25519 attestation key, published in the AS's :class:`~.messages.AsProfile`.
* Genesis: every user of ``balances`` on both chains, and the bridge reserve ``@bridge``
  with ``reserve`` on each.
* ``pairs`` gateway pairs: gateway ``p`` of AS ``a`` has node id ``100 * a + 90 + p`` and
  is paired with gateway ``p`` of the other AS (its preferred peer); it attests to every
  gateway of the other AS. Gateways are :class:`~.gateway.Gateway` cores over a
  :class:`~.setup.SimGatewayTee` whose identity comes from a per-gateway seed (the sealed
  identity: :meth:`InteropDeployment.make_gateway` builds a restarted gateway with the
  same identity and a new incarnation) and whose enclave randomness is a seeded
  generator. The simulated platform key and the devnet policy (that platform key, the
  gateway program's measurement) come from the seed too. Each AS's ledger trusts the
  identity keys of its own gateways (``ConsensusConfig.gateway_keys``).
* ``byzantine`` maps replica node ids to a :class:`ByzantineMode`
  (:class:`ByzantineInteropReplica`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sealbridge.consensus.certs import VerifyCache
from sealbridge.consensus.cluster import deal_group_key
from sealbridge.consensus.config import ConsensusConfig
from sealbridge.consensus.ledger import (
    BRIDGE_ACCOUNT,
    CrossState,
    CrossTransfer,
    compute_attestation_message,
    compute_transfer_id,
)
from sealbridge.consensus.replica import Replica
from sealbridge.core.effects import Effect, ProtocolNode, Send
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.bls import PartialSignature
from sealbridge.crypto.signing import ed25519_public
from sealbridge.interop.errors import InteropConfigError
from sealbridge.interop.gateway import Gateway, GatewayConfig, GatewayTiming
from sealbridge.interop.messages import (
    AsProfile,
    AttestReply,
    AttestRequest,
    ScanReply,
    ScanRequest,
)
from sealbridge.interop.replica import InteropReplica
from sealbridge.interop.setup import (
    KeyMode,
    SimGatewayTee,
    derive_seed,
    get_gateway_measurement,
)
from sealbridge.tee.policy import AttestationPolicy, devnet_policy

__all__ = [
    "AS_A",
    "AS_B",
    "ByzantineInteropReplica",
    "ByzantineMode",
    "InteropDeployment",
    "InteropSpec",
    "build_deployment",
    "gateway_id",
    "replica_id",
]

AS_A = 1
AS_B = 2
MAX_REPLICAS = 90
MAX_PAIRS = 10


def replica_id(as_id: int, index: int) -> int:
    return 100 * as_id + index


def gateway_id(as_id: int, pair: int) -> int:
    return 100 * as_id + MAX_REPLICAS + pair


class ByzantineMode(StrEnum):
    SILENT = "silent"  # drops every message and timer (consensus too)
    FORGE = "forge"  # signs, with its real share, whatever claim would do harm; lies in scans
    GARBAGE = "garbage"  # answers attestations with invalid shares


class ByzantineInteropReplica(InteropReplica):
    """A Byzantine replica: honest in consensus (unless SILENT), lying on the interop side."""

    def __init__(self, *args: Any, mode: ByzantineMode, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode = mode

    def on_start(self, now: float) -> list[Effect]:
        return [] if self.mode is ByzantineMode.SILENT else super().on_start(now)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return [] if self.mode is ByzantineMode.SILENT else super().on_timer(name, now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if self.mode is ByzantineMode.SILENT:
            return []
        if type(message) is AttestRequest and sender in self.profile.gateway_ids:
            return self._lie_attest(sender, message)
        if type(message) is ScanRequest and sender in self.profile.gateway_ids:
            return self._lie_scan(sender, message)
        return super().on_message(sender, message, now)

    def _lie_attest(self, sender: int, msg: AttestRequest) -> list[Effect]:
        transfer = msg.transfer
        tid = compute_transfer_id(transfer)
        claim = CrossState.LOCKED if transfer.src_as == self.as_id else CrossState.PAID
        held = self.get_key(msg.key_id)
        if held is None:
            return []
        if self.mode is ByzantineMode.FORGE:
            message = compute_attestation_message(msg.key_id, self.as_id, tid, claim)
        else:
            message = b"garbage"
        share = bls.partial_sign(held.share, message)
        reply = AttestReply(
            as_id=self.as_id,
            transfer_id=tid,
            key_id=msg.key_id,
            state=claim,
            share=PartialSignature(index=share.index, signature=share.signature),
            missing_key=False,
        )
        return [Send((sender,), self.sign_reply(reply))]

    def _lie_scan(self, sender: int, msg: ScanRequest) -> list[Effect]:
        fake = CrossTransfer(
            src_as=self.as_id,
            dst_as=AS_B if self.as_id == AS_A else AS_A,
            sender="mallory",
            recipient="mallory",
            amount=1,
            salt=self.node_id.to_bytes(8, "big"),
            deadline=1.0,
        )
        transfers = self.scan() if self.mode is ByzantineMode.GARBAGE else [fake, *self.scan()]
        return [Send((sender,), ScanReply(as_id=self.as_id, nonce=msg.nonce, transfers=transfers))]


@dataclass(frozen=True)
class InteropSpec:
    """Everything that fixes a deployment (see the module docstring)."""

    seed: bytes = b"sealbridge-interop"
    n: tuple[int, int] = (4, 4)
    f: tuple[int | None, int | None] = (None, None)
    pairs: int = 1
    mode: KeyMode = KeyMode.EPOCH
    balances: Mapping[str, int] = field(default_factory=lambda: {"alice": 1_000, "bob": 1_000})
    reserve: int = 1_000_000
    byzantine: Mapping[int, ByzantineMode] = field(default_factory=dict)
    timing: GatewayTiming = GatewayTiming()
    view_change_timeout: float = 1.0
    batch_timeout: float = 0.005
    batch_size: int = 64
    share_verifier: bool = True  # one VerifyCache for all replicas (fine without MeasuredCpu)


@dataclass
class InteropDeployment:
    """The cores of a deployment and what is needed to restart or inspect them."""

    spec: InteropSpec
    policy: AttestationPolicy
    profiles: dict[int, AsProfile]
    consensus: dict[int, ConsensusConfig]
    replicas: dict[int, InteropReplica]
    gateways: dict[int, Gateway]
    gateway_configs: dict[int, GatewayConfig]
    seed: bytes
    platform_private_key: bytes
    cpu_clock: Callable[[], float] | None = None
    incarnations: dict[int, int] = field(default_factory=dict)
    all_gateways: list[Gateway] = field(default_factory=list)  # every object made, restarts too

    def get_nodes(self) -> list[ProtocolNode]:
        nodes: list[ProtocolNode] = [*self.replicas.values(), *self.gateways.values()]
        return nodes

    def get_pair(self, pair: int) -> tuple[int, int]:
        """(gateway of AS A, gateway of AS B) of pair ``pair``."""
        return gateway_id(AS_A, pair), gateway_id(AS_B, pair)

    def get_replicas(self, as_id: int, *, honest: bool = False) -> list[InteropReplica]:
        return [
            r
            for r in self.replicas.values()
            if r.as_id == as_id and not (honest and r.node_id in self.spec.byzantine)
        ]

    def make_gateway(self, node_id: int, incarnation: int | None = None) -> Gateway:
        """A fresh gateway object for ``node_id`` (same sealed identity); a restart uses a
        new incarnation so that its consensus request ids are fresh."""
        if incarnation is None:
            incarnation = self.incarnations.get(node_id, -1) + 1
        self.incarnations[node_id] = incarnation
        config = self.gateway_configs[node_id]
        rng = random.Random(derive_seed(self.seed, f"gateway/{node_id}/random/{incarnation}"))
        tee = SimGatewayTee(
            identity_seed=derive_seed(self.seed, f"gateway/{node_id}/identity"),
            platform_private_key=self.platform_private_key,
            measurement=get_gateway_measurement(),
            random_bytes=rng.randbytes,
        )
        gateway = Gateway(config, tee, incarnation=incarnation, cpu_clock=self.cpu_clock)
        self.all_gateways.append(gateway)
        return gateway

    def make_transfer(
        self,
        src_as: int,
        sender: str,
        recipient: str,
        amount: int,
        deadline: float,
        salt: bytes = b"",
    ) -> CrossTransfer:
        return CrossTransfer(
            src_as=src_as,
            dst_as=AS_B if src_as == AS_A else AS_A,
            sender=sender,
            recipient=recipient,
            amount=amount,
            salt=salt,
            deadline=float(deadline),
        )

    @property
    def bridge_account(self) -> str:
        return BRIDGE_ACCOUNT


def _as_seed(seed: bytes | int | str) -> bytes:
    if isinstance(seed, bytes):
        raw = seed
    elif isinstance(seed, int):
        raw = seed.to_bytes(16, "big", signed=True)
    else:
        raw = seed.encode()
    return hashlib.sha256(b"sealbridge/sim/interop_scenario/v1" + raw).digest()


def build_deployment(
    spec: InteropSpec, *, cpu_clock: Callable[[], float] | None = None
) -> InteropDeployment:
    """Every core of ``spec`` (see the module docstring)."""
    if not 1 <= spec.pairs <= MAX_PAIRS:
        raise InteropConfigError(f"pairs must be in [1, {MAX_PAIRS}]")
    seed = _as_seed(spec.seed)
    platform_private = derive_seed(seed, "platform")
    policy = devnet_policy(ed25519_public(platform_private), [get_gateway_measurement()])
    verifier = VerifyCache() if spec.share_verifier else None
    gateway_seed = {
        gateway_id(a, p): derive_seed(seed, f"gateway/{gateway_id(a, p)}/identity")
        for a in (AS_A, AS_B)
        for p in range(spec.pairs)
    }
    gateway_keys = {
        node: SimGatewayTee(
            identity_seed=identity,
            platform_private_key=platform_private,
            measurement=get_gateway_measurement(),
            random_bytes=random.Random(0).randbytes,
        ).identity_key
        for node, identity in gateway_seed.items()
    }
    genesis = {**spec.balances, BRIDGE_ACCOUNT: spec.reserve}
    profiles: dict[int, AsProfile] = {}
    consensus: dict[int, ConsensusConfig] = {}
    replicas: dict[int, InteropReplica] = {}
    for position, as_id in enumerate((AS_A, AS_B)):
        n = spec.n[position]
        if not 1 <= n <= MAX_REPLICAS:
            raise InteropConfigError(f"n must be in [1, {MAX_REPLICAS}]")
        f = spec.f[position]
        f = (n - 1) // 3 if f is None else f
        ids = [replica_id(as_id, i) for i in range(n)]
        encryption = [derive_seed(seed, f"replica/{node}/x25519") for node in ids]
        signing = [derive_seed(seed, f"replica/{node}/ed25519") for node in ids]
        own_gateways = [gateway_id(as_id, p) for p in range(spec.pairs)]
        profile = AsProfile(
            as_id=as_id,
            f=f,
            replica_ids=ids,
            replica_identity_keys=[ed25519_public(k) for k in signing],
            replica_encryption_keys=[ecies.x25519_public(k) for k in encryption],
            gateway_ids=own_gateways,
            gateway_keys=[gateway_keys[g] for g in own_gateways],
        )
        key_set = deal_group_key(n, f=f, seed=derive_seed(seed, f"consensus/{as_id}"))
        config = ConsensusConfig.create(
            as_id,
            ids,
            key_set,
            f=f,
            genesis=genesis,
            batch_size=spec.batch_size,
            batch_timeout=spec.batch_timeout,
            view_change_timeout=spec.view_change_timeout,
            gateway_keys=profile.gateway_keys,
        )
        profiles[as_id] = profile
        consensus[as_id] = config
        for i, node in enumerate(ids):
            replica = Replica(config, i, key_set.shares[i], verifier=verifier)
            mode = spec.byzantine.get(node)
            wrapped: InteropReplica
            if mode is None:
                wrapped = InteropReplica(
                    replica, profile, encryption_key=encryption[i], signing_key=signing[i]
                )
            else:
                wrapped = ByzantineInteropReplica(
                    replica,
                    profile,
                    encryption_key=encryption[i],
                    signing_key=signing[i],
                    mode=ByzantineMode(mode),
                )
            replicas[node] = wrapped
    gateway_configs: dict[int, GatewayConfig] = {}
    for as_id, peer_as in ((AS_A, AS_B), (AS_B, AS_A)):
        for p in range(spec.pairs):
            node = gateway_id(as_id, p)
            gateway_configs[node] = GatewayConfig(
                node_id=node,
                profile=profiles[as_id],
                peer_as=peer_as,
                peer_gateways=tuple(gateway_id(peer_as, q) for q in range(spec.pairs)),
                partner=gateway_id(peer_as, p),
                policy=policy,
                mode=spec.mode,
                timing=spec.timing,
            )
    deployment = InteropDeployment(
        spec=spec,
        policy=policy,
        profiles=profiles,
        consensus=consensus,
        replicas=replicas,
        gateways={},
        gateway_configs=gateway_configs,
        seed=seed,
        platform_private_key=platform_private,
        cpu_clock=cpu_clock,
    )
    for node in gateway_configs:
        deployment.gateways[node] = deployment.make_gateway(node, 0)
    return deployment
