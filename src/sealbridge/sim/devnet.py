"""A devnet in the simulator: the host cores of real nodes, a chain model, one seed.

Theory of operation
-------------------
:class:`SimDevnet` builds, from a seed, the same host cores that node processes run on
the network (:mod:`sealbridge.node`), and runs them in the deterministic simulator
(:mod:`sealbridge.sim.engine`) against an in-process chain
(:class:`~sealbridge.sim.chain_model.ChainModel`). Keys are drawn from the seed, time
is virtual, and every effect a host core returns is carried out by the simulator:
transactions and reads go to the chain model over simulated links, ``Persist`` goes to
the node's simulated disk. Crashes, restarts and partitions are the simulator's.

Roles in the simulated devnet today:

* **storage nodes** (registration, renewal, heartbeats, blob storage with receipts);
* **gatekeepers** (:class:`~sealbridge.sim.committee.SimGatekeeper`): the committee host
  core with a real committee enclave in process, taking part in every era the admin
  elects (``elect``) on the chain model's GatekeeperCommittee rules -- genesis key
  generation, resharing, the deadline and the restart without the unresponsive.

* **workers**: every worker executes every contract, and workers are registered at
  genesis. By default (:class:`~sealbridge.sim.worker.SimWorker`) the output-submission
  host core races for each range on the chain model's ExecutionLedger rules,
  checkpoints offered to the simulated storage nodes and confirmed by their signed
  receipts, with a *modelled* enclave (:class:`~sealbridge.sim.worker.OutputsModel`).
  With ``worker_enclaves`` (:class:`~sealbridge.sim.enclave_worker.SimEnclaveWorker`)
  each worker runs its real enclave and its catch-up, follow and submission cores:
  the chain model's blocks are then in the real formats, with the management
  contracts' events; ``deploy_contracts`` (once the gatekeepers' era is active)
  deploys tokens under keys the committee derives, and each worker's catch-up core
  gets its keys from the gatekeepers' partial releases; ``send_command`` sends a real
  mint; ``restart_worker`` brings a crashed worker back from its state bundle, or from
  the newest checkpoint with a wiped disk.
* **gateways** (:class:`~sealbridge.sim.gateway.SimGateway`): the committee host core
  (the gateway committee, a second committee on the chain model, ``elect_gateways``)
  and the chain feed in front of a real gateway enclave in process, following bridged
  EVM chains whose blocks are in the real formats
  (:class:`~sealbridge.sim.bridged.BridgedChain`, with a GatewayEscrow model each);
  ``deploy_escrows`` installs the committee's key and names the escrows, and
  ``transfer`` starts a :class:`~sealbridge.sim.gateway.TransferRelayer` that locks,
  collects threshold signatures, releases and commits (or aborts after the deadline).

The same seed and options give the same trace digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sealbridge.chain.abi import Role, compute_address
from sealbridge.contracts.catalog import get_source
from sealbridge.contracts.executor import compute_code_hash
from sealbridge.core.effects import ReadChain, SubmitTx
from sealbridge.core.encoding import decode
from sealbridge.core.errors import ConfigError
from sealbridge.core.ids import keccak
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.interop.evm_gateway import ChainAnchor, EscrowRef, GatewaySetup
from sealbridge.keyservice.committee import ChainBinding
from sealbridge.runtime.catchup import StateBundle
from sealbridge.runtime.enclave import WorkerProgram
from sealbridge.runtime.envelope import seal_command
from sealbridge.runtime.follow import BUNDLE_KEY
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    ChainConfig,
    compute_deployer_commitment,
)
from sealbridge.sim.bridged import BridgedChain, InstallEscrowKey, LockFunds
from sealbridge.sim.chain_model import ChainModel, RegistryEntry
from sealbridge.sim.committee import CommitteeModel, Elect
from sealbridge.sim.delays import Uniform
from sealbridge.sim.enclave_worker import SimEnclaveWorker
from sealbridge.sim.engine import FixedCpu, Simulator
from sealbridge.sim.evm_blocks import EvmChain
from sealbridge.sim.gatekeeper import SimGatekeeper
from sealbridge.sim.gateway import NameEscrows, SimGateway, StartTransfer, TransferRelayer
from sealbridge.sim.worker import (
    Command,
    DeployContract,
    LedgerModel,
    ManagementEventSources,
    SimWorker,
)
from sealbridge.storage.host import StorageHostCore
from sealbridge.storage.node import StorageNode
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import devnet_policy

__all__ = ["CHAIN", "SimDevnet", "SimDevnetSpec"]

CHAIN = 0  # the chain model's address; nodes are 1..n
LEDGER = "0x" + "4c" * 20  # the ExecutionLedger address receipts are signed for
CHAIN_ID = 31337
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GATEKEEPER_MEASUREMENT = b"sim:gatekeeper".ljust(32, b"\0")
GATEWAY_MEASUREMENT = b"sim:gateway".ljust(32, b"\0")
WORKER_MEASUREMENT = b"sim:worker".ljust(32, b"\0")
MANAGEMENT = ManagementEventSources(
    command_inbox=keccak(b"sim/CommandInbox")[:20],
    contract_registry=keccak(b"sim/ContractRegistry")[:20],
    execution_ledger=bytes.fromhex(LEDGER[2:]),
    admin=keccak(b"sim/admin")[:20],
)
ANSWER_TIMEOUT = 10.0  # seconds before a lost chain answer is answered with a failure
PUBLISH_WAIT = 120  # blocks the deploy commands wait for the contracts' keys
GATEWAY_COMMITTEE = "0x" + "6c" * 20  # the gateway committee contract's address


@dataclass(frozen=True)
class SimDevnetSpec:
    storage_nodes: int = 4
    block_time: float = 1.0
    era_length: int = 64  # blocks
    registration_ttl: int = 600  # seconds
    heartbeats: bool = True
    tick: float = 1.0  # seconds between upkeep checks
    delay_low: float = 0.002  # every link's delay is drawn from [low, high] seconds
    delay_high: float = 0.050
    gatekeepers: int = 0
    rotation_timeout: int = 20  # blocks an era has to become ready
    follow_poll: float = 1.0  # seconds between a gatekeeper's looks at the chain's height
    workers: int = 0
    contracts: int = 2  # every worker executes every contract
    storage_threshold: int = 2  # storage confirmations a checkpoint needs
    checkpoint_interval: int = 10  # blocks between checkpoints
    gateways: int = 0
    bridged_chains: tuple[int, ...] = (31338, 31339)  # chain ids, when there are gateways
    escrow_pool: int = 10**21  # each escrow's liquidity at deployment
    release_confirmations: int = 2  # blocks on a lock before a gateway signs its release
    worker_enclaves: bool = False  # the workers' real enclaves (contracts run), not a model


def derive_key(seed: bytes, label: str) -> bytes:
    """A valid secp256k1 key drawn from ``seed`` (deterministic)."""
    counter = 0
    while True:
        key = hashlib.sha256(seed + label.encode() + counter.to_bytes(4, "big")).digest()
        if 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
            return key
        counter += 1


class SimDevnet:
    """A simulated devnet (see the module docstring)."""

    def __init__(self, seed: int | str, spec: SimDevnetSpec | None = None) -> None:
        self.spec = spec or SimDevnetSpec()
        if not 1 <= self.spec.storage_nodes <= 256:
            raise ConfigError("a simulated devnet has 1 to 256 storage nodes")
        self.seed = str(seed).encode()
        self.storage: dict[int, StorageHostCore] = {}
        for address in range(1, self.spec.storage_nodes + 1):
            key = derive_key(self.seed, f"storage/{address}")
            compute_address(key)  # refuses an invalid key (never, by construction)
            self.storage[address] = self._make_storage(address, key)
        if not 0 <= self.spec.gatekeepers <= 32:
            raise ConfigError("a simulated devnet has 0 to 32 gatekeepers")
        platform, platform_pub = ed25519_keypair(derive_key(self.seed, "platform"))
        # the gatekeepers attest each other (committee cards) and the workers (key requests)
        policy = devnet_policy(
            platform_pub,
            [GATEKEEPER_MEASUREMENT, WORKER_MEASUREMENT],
            max_quote_age_seconds=10**9,
        )
        self.gatekeepers: dict[int, SimGatekeeper] = {}
        first = self.spec.storage_nodes + 1
        gatekeeper_addresses = tuple(range(first, first + self.spec.gatekeepers))
        for address in gatekeeper_addresses:
            enclave = EnclaveContext(
                program="sim:gatekeeper",
                measurement=GATEKEEPER_MEASUREMENT,
                platform_private_key=platform,
                clock=self._now,
            )
            self.gatekeepers[address] = SimGatekeeper(
                address,
                chain=CHAIN,
                enclave=enclave,
                policy=policy,
                measurement=GATEKEEPER_MEASUREMENT,
                clock=self._now,
                poll=self.spec.follow_poll,
                peers=gatekeeper_addresses,
                chain_id=CHAIN_ID,
                # with real blocks, the gatekeepers publish the contracts' keys
                contract_registry=(
                    "0x" + MANAGEMENT.contract_registry.hex() if self.spec.worker_enclaves else ""
                ),
            )
        if not 0 <= self.spec.workers <= 32 or not 1 <= self.spec.contracts <= 64:
            raise ConfigError("a simulated devnet has 0 to 32 workers and 1 to 64 contracts")
        self.contract_ids = [
            hashlib.sha256(self.seed + f"contract/{i}".encode()).digest()
            for i in range(self.spec.contracts)
        ]
        first_worker = first + self.spec.gatekeepers
        self.evm: EvmChain | None = None
        self.workers: dict[int, SimWorker] = {}
        self._nonces: dict[bytes, int] = {}
        self.restarts: dict[int, int] = {}  # address -> restarts (the cores' incarnation)
        if self.spec.worker_enclaves:
            worker_ids = self._build_enclave_workers(first_worker, platform)
        else:
            worker_ids = self._build_modelled_workers(first_worker)
        if not 0 <= self.spec.gateways <= 16:
            raise ConfigError("a simulated devnet has 0 to 16 gateways")
        self.bridged = [
            BridgedChain(chain_id, pool=self.spec.escrow_pool)
            for chain_id in (self.spec.bridged_chains if self.spec.gateways else ())
        ]
        gateway_policy = devnet_policy(
            platform_pub, [GATEWAY_MEASUREMENT], max_quote_age_seconds=10**9
        )
        setup = GatewaySetup(
            policy=gateway_policy,
            committee=ChainBinding(chain_id=CHAIN_ID, committee_address=GATEWAY_COMMITTEE),
            anchors=[
                ChainAnchor(chain_id=b.chain_id, number=0, block_hash=b.chain.hashes[0])
                for b in self.bridged
            ],
            confirmations=self.spec.release_confirmations,
        )
        self.gateways: dict[int, SimGateway] = {}
        first_gateway = first + self.spec.gatekeepers + self.spec.workers
        for address in range(first_gateway, first_gateway + self.spec.gateways):
            enclave = EnclaveContext(
                program="sim:gateway",
                measurement=GATEWAY_MEASUREMENT,
                platform_private_key=platform,
                clock=self._now,
            )
            self.gateways[address] = SimGateway(
                address,
                chain=CHAIN,
                enclave=enclave,
                setup=setup,
                clock=self._now,
                poll=self.spec.follow_poll,
            )
        self.relayers: dict[int, TransferRelayer] = {}
        self._next_address = first_gateway + self.spec.gateways
        identities = {a: core.node.node_id for a, core in self.storage.items()}
        identities.update({a: g.committee_id for a, g in self.gatekeepers.items()})
        identities.update(worker_ids)
        identities.update({a: g.committee_id for a, g in self.gateways.items()})
        self.chain = ChainModel(
            CHAIN,
            identities,
            block_time=self.spec.block_time,
            era_length=self.spec.era_length,
            committee=CommitteeModel(
                rotation_timeout=self.spec.rotation_timeout,
                cards={g.committee_id: g.card for g in self.gatekeepers.values()},
            ),
            ledger=self.ledger,
            gateway_committee=CommitteeModel(
                rotation_timeout=self.spec.rotation_timeout,
                cards={g.committee_id: g.card for g in self.gateways.values()},
            ),
            bridged=self.bridged,
            evm=self.evm,
        )
        for worker_id in worker_ids.values():  # workers are registered at genesis here
            self.chain.registry[worker_id] = RegistryEntry(int(Role.WORKER), 2**62, 0)
        self.sim = Simulator(
            [
                self.chain,
                *self.storage.values(),
                *self.gatekeepers.values(),
                *self.workers.values(),
                *self.gateways.values(),
            ],
            seed=seed,
            cpu=FixedCpu(),
            delay=Uniform(self.spec.delay_low, self.spec.delay_high),
        )
        # an answer lost on a link is answered with a failure, as the network driver
        # answers a transport failure: no host core waits for ever
        self.sim.set_service(SubmitTx, CHAIN, answer_timeout=ANSWER_TIMEOUT)
        self.sim.set_service(ReadChain, CHAIN, answer_timeout=ANSWER_TIMEOUT)

    # -- workers ----------------------------------------------------------------------------
    def _build_modelled_workers(self, first: int) -> dict[int, bytes]:
        """Workers whose enclave is the outputs model (no contract runs)."""
        worker_ids = {
            first + i: hashlib.sha256(self.seed + f"worker/{i}".encode()).digest()
            for i in range(self.spec.workers)
        }
        self.ledger = LedgerModel(
            executors={cid: sorted(worker_ids.values()) for cid in self.contract_ids},
            storage_threshold=self.spec.storage_threshold,
            ledger_address=LEDGER,
            chain_id=CHAIN_ID,
        )
        storage_addresses = tuple(sorted(self.storage))
        for address, worker_id in worker_ids.items():
            self.workers[address] = SimWorker(
                address,
                chain=CHAIN,
                worker_id=worker_id,
                contracts=self.contract_ids,
                executors=[sorted(worker_ids.values())] * len(self.contract_ids),
                storage=storage_addresses,
                ledger=self.ledger,
                checkpoint_interval=self.spec.checkpoint_interval,
                poll=self.spec.follow_poll,
            )
        return worker_ids

    def _build_enclave_workers(self, first: int, platform: bytes) -> dict[int, bytes]:
        """Workers with their real enclaves, over a chain whose blocks are in the real
        formats; every worker will execute every contract (tokens, deployed by
        :meth:`deploy_contracts` once the gatekeepers' committee has a key)."""
        self.evm = evm = EvmChain(CHAIN_ID)
        self.worker_enclaves: dict[int, EnclaveContext] = {
            first + i: EnclaveContext(
                program="sim:worker",
                measurement=WORKER_MEASUREMENT,
                platform_private_key=platform,
                clock=self._now,
            )
            for i in range(self.spec.workers)
        }
        worker_ids = {a: ctx.identity.identity_key for a, ctx in self.worker_enclaves.items()}
        self.executors = sorted(worker_ids.values())

        def block_hash(number: int) -> bytes:
            return evm.hashes[number] if 0 <= number <= evm.number else b""

        self.ledger = LedgerModel(
            executors={cid: self.executors for cid in self.contract_ids},
            storage_threshold=self.spec.storage_threshold,
            ledger_address=LEDGER,
            chain_id=CHAIN_ID,
            addresses=MANAGEMENT,
            block_hash=block_hash,
        )
        self.deployer, self.deployer_pub = ed25519_keypair(derive_key(self.seed, "deployer"))
        self.chain_config = ChainConfig(
            chain_id=CHAIN_ID,
            command_inbox=MANAGEMENT.command_inbox,
            contract_registry=MANAGEMENT.contract_registry,
            execution_ledger=MANAGEMENT.execution_ledger,
            anchor_number=0,
            anchor_hash=evm.hashes[0],
        )
        for address in self.worker_enclaves:
            self.workers[address] = self._make_enclave_worker(address, StateBundle())
        return worker_ids

    def _make_enclave_worker(
        self, address: int, bundle: StateBundle, incarnation: int = 0
    ) -> SimEnclaveWorker:
        """A worker host and its enclave (a fresh enclave program over the enclave's
        sealed identity, as after a restart), starting from ``bundle``."""
        names = {a: f"worker-{a}" for a in self.worker_enclaves}
        ctx = self.worker_enclaves[address]
        return SimEnclaveWorker(
            address,
            chain=CHAIN,
            program=WorkerProgram(ctx, clock=self._now),
            chain_config=self.chain_config,
            start_block=1,
            contracts=self.contract_ids,
            peers={a: n for a, n in names.items() if a != address},
            gatekeepers=tuple(sorted(self.gatekeepers)),
            storage=tuple(sorted(self.storage)),
            ledger=self.ledger,
            checkpoint_interval=self.spec.checkpoint_interval,
            fetch_blob=self._fetch_blob,
            bundle=bundle,
            incarnation=incarnation,
            poll=self.spec.follow_poll,
        )

    def _fetch_blob(self, blob_hash: bytes) -> bytes | None:
        """A checkpoint blob from the first storage node that is up and holds it (the
        network worker's GET /v1/blobs: I/O, not a core's decision)."""
        for address in sorted(self.storage):
            if not self.sim.is_up(address):
                continue
            data = self.sim.get_disk(address).get(f"blob/{blob_hash.hex()}")
            if data is not None and keccak(data) == blob_hash:
                return data
        return None

    def deploy_contracts(self) -> None:
        """Deploy every contract (a token), each naming a publishing gatekeeper (in turn);
        the gatekeepers publish the keys their committee derives (their key publisher
        cores), and each deployer's deploy command is sent once its key is published."""
        if self.evm is None:
            raise ConfigError("contracts are deployed only with the workers' enclaves")
        if not self.gatekeepers:
            raise ConfigError("contracts need gatekeepers to publish their keys")
        publishers = [self.gatekeepers[a].committee_id for a in sorted(self.gatekeepers)]
        code = get_source("token")
        for i, cid in enumerate(self.contract_ids):
            self.chain.submit_admin(
                DeployContract(
                    contract_id=cid,
                    code_hash=compute_code_hash(code),
                    workers=self.executors,
                    deployer_commitment=compute_deployer_commitment(cid, self.deployer_pub),
                    gatekeeper_id=publishers[i % len(publishers)],
                )
            )
        self._deploy_when_published(PUBLISH_WAIT)

    def _deploy_when_published(self, tries: int) -> None:
        """Each deployer's deploy command, once every key is published (checked every
        block, ``tries`` times at most)."""
        if all(cid in self.ledger.published for cid in self.contract_ids):
            self._send_deploy_commands()
        elif tries > 0:
            self.sim.call_at(
                self.sim.now + self.spec.block_time,
                lambda: self._deploy_when_published(tries - 1),
            )

    def restart_worker(self, address: int, *, at: float | None = None, wipe: bool = False) -> None:
        """Restart a (crashed) enclave worker at ``at``: a fresh host and enclave program
        over the same sealed enclave identity, from the state bundle its disk holds then
        -- or, with ``wipe``, from an empty disk (it recovers from the newest checkpoint)."""

        def restart() -> None:
            disk = self.sim.get_disk(address)
            if wipe:
                disk.clear()
            raw = disk.get(BUNDLE_KEY)
            bundle = decode(raw, StateBundle) if raw is not None else StateBundle()
            self.restarts[address] = self.restarts.get(address, 0) + 1
            worker = self._make_enclave_worker(address, bundle, self.restarts[address])
            self.workers[address] = worker
            self.sim.restart(address, node=worker)

        self.sim.call_at(self.sim.now if at is None else at, restart)

    def _send_deploy_commands(self) -> None:
        code = get_source("token")
        for cid in self.contract_ids:
            self._send_sealed(cid, DEPLOY_METHOD, {"code": code, "init": {}})

    def _send_sealed(self, contract_id: bytes, method: str, args: dict[str, Any]) -> None:
        """The deployer's command, sealed to the contract's key (deterministic)."""
        nonce = self._nonces.get(contract_id, 0) + 1
        self._nonces[contract_id] = nonce
        published = self.ledger.published.get(contract_id)
        if published is None:
            raise ConfigError("the contract's key is not published yet")
        ciphertext = seal_command(
            contract_id=contract_id,
            contract_public_key=published.contract_public_key,
            sender_private_key=self.deployer,
            nonce=nonce,
            method=method,
            args=args,
            ephemeral_seed=hashlib.sha256(
                self.seed + contract_id + nonce.to_bytes(8, "big")
            ).digest(),
        )
        self.chain.submit_admin(Command(contract_id=contract_id, ciphertext=ciphertext))

    def _now(self) -> float:
        return self.sim.now if hasattr(self, "sim") else 0.0

    @property
    def committee(self) -> CommitteeModel:
        model = self.chain.committee
        if model is None:  # never: every simulated devnet has the committee's rules
            raise ConfigError("this chain model has no committee")
        return model

    def elect(self, addresses: list[int], threshold: int) -> None:
        """The admin elects the gatekeepers at ``addresses`` (applied with the next block;
        its outcome lands in ``chain.admin_outcomes``)."""
        members = [self.gatekeepers[a].committee_id for a in addresses]
        self.chain.submit_admin(Elect(members=members, threshold=threshold))

    def elect_gateways(self, addresses: list[int], threshold: int) -> None:
        """The admin elects the gateways at ``addresses`` to the gateway committee."""
        members = [self.gateways[a].committee_id for a in addresses]
        self.chain.submit_admin(Elect(members=members, threshold=threshold, committee="gateways"))

    @property
    def gateway_committee(self) -> CommitteeModel:
        model = self.chain.gateway_committee
        if model is None:  # never: built with the devnet
            raise ConfigError("this chain model has no gateway committee")
        return model

    def deploy_escrows(self) -> bytes:
        """Deploy every bridged chain's escrow with the gateway committee's active group
        key (applied with the next block) and name the escrows to every gateway; the
        key. A ConfigError before the committee has an active era."""
        model = self.gateway_committee
        era = model.eras.get(model.active)
        if era is None or not era.record.group_public_key:
            raise ConfigError("the gateway committee has no active era yet")
        key = era.record.group_public_key
        for chain in self.bridged:
            self.chain.submit_admin(InstallEscrowKey(chain_id=chain.chain_id, group_key=key))
        refs = [EscrowRef(chain_id=b.chain_id, escrow=b.escrow.address) for b in self.bridged]
        for address in self.gateways:
            if self.sim.is_up(address):
                self.sim.inject(address, NameEscrows(escrows=refs))
        return key

    def transfer(
        self,
        amount: int,
        *,
        deadline: int,
        salt: bytes = b"",
        at: float | None = None,
        source: int = 0,
        threshold: int | None = None,
    ) -> TransferRelayer:
        """A transfer of ``amount`` from bridged chain ``source`` (an index) to the other,
        relayed by a new relayer node started at ``at`` (now by default); ``deadline``
        is the lock's, in virtual seconds."""
        if len(self.bridged) < 2:
            raise ConfigError("a transfer needs two bridged chains (and gateways)")
        src, dest = self.bridged[source], self.bridged[1 - source]
        address = self._next_address
        self._next_address += 1
        lock = LockFunds(
            chain_id=src.chain_id,
            salt=(salt or address.to_bytes(4, "big")).rjust(32, b"\0")[:32],
            sender=compute_address(derive_key(self.seed, f"sender/{address}")),
            amount=amount,
            dest_chain_id=dest.chain_id,
            dest_escrow=dest.escrow.address,
            recipient=compute_address(derive_key(self.seed, f"recipient/{address}")),
            deadline=deadline,
        )
        relayer = TransferRelayer(
            address,
            chain=CHAIN,
            gateways=sorted(self.gateways),
            threshold=threshold or self._gateway_threshold(),
            lock=lock,
            source_escrow=src.escrow.address,
        )
        self.relayers[address] = relayer
        start = self.sim.now if at is None else at
        self.sim.add_node(relayer, at=start)
        self.sim.inject(address, StartTransfer(), at=start)
        return relayer

    def _gateway_threshold(self) -> int:
        model = self.gateway_committee
        era = model.eras.get(model.active)
        if era is None:
            raise ConfigError("the gateway committee has no active era yet")
        return era.record.threshold

    def send_command(self, contract_index: int, amount: int = 1) -> None:
        """The admin sends one command to a contract (applied with the next block); with
        the workers' enclaves, a real one: the deployer mints ``amount`` tokens to a
        recipient drawn from the seed."""
        contract_id = self.contract_ids[contract_index]
        if self.evm is None:
            self.chain.submit_admin(Command(contract_id=contract_id))
            return
        _, recipient = ed25519_keypair(derive_key(self.seed, "recipient"))
        self._send_sealed(contract_id, "mint", {"to": recipient, "amount": amount})

    def _make_storage(self, address: int, key: bytes) -> StorageHostCore:
        node = StorageNode(key, LEDGER, CHAIN_ID)

        def is_intact(blob_hash: bytes, size: int) -> bool:
            data = self.sim.get_disk(address).get(f"blob/{blob_hash.hex()}")
            return data is not None and len(data) == size

        return StorageHostCore(
            node,
            address=address,
            ttl=self.spec.registration_ttl,
            heartbeats=self.spec.heartbeats,
            tick=self.spec.tick,
            is_intact=is_intact,
        )

    def restart_storage(self, address: int, at: float | None = None) -> StorageHostCore:
        """Bring a crashed storage node back: a new host core over the same key and the
        blobs its disk holds (what a restarted process rebuilds)."""
        old = self.storage[address]
        disk = self.sim.get_disk(address)
        held = {
            bytes.fromhex(key.removeprefix("blob/")): len(data)
            for key, data in disk.items()
            if key.startswith("blob/")
        }
        core = self._make_storage(address, derive_key(self.seed, f"storage/{address}"))
        core.sizes = held
        core.stored = old.stored
        self.storage[address] = core
        self.sim.restart(address, at=at, node=core)
        return core

    def run(self, until: float) -> None:
        self.sim.run(until=until)
