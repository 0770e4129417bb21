"""The workloads of the contract benchmarks and the worlds that run them.

A :class:`Scenario` is one workload written as plain operations -- (contract, sender,
method, arguments) -- in blocks: the deploys (user 0 deploys every contract and runs its
``@init`` in block 1), untimed set-up commands (block 2) and the timed blocks (3 on). The
same scenario runs in every *world*:

* :class:`DirectWorld` -- the contract classes called as plain Python methods with a
  trivial context: storage is two dicts (no copies, no journal, no type checks), a
  synchronous call is a direct method call. The floor: the contract's own code only.
* :class:`ExecutorWorld` -- the platform's executor, either on the plain imported classes
  without metering (``load_builtin(name, sandboxed=False)`` on ``Executor(metered=False)``:
  argument checks, journaled canonical storage, no sandbox, no gas, no crypto) or on the
  same source loaded into the WebAssembly VM (``load_builtin(name)`` on ``Executor()``:
  CPython in wasmtime, fuel-metered, storage through host functions).
* :class:`RuntimeWorld` -- ``WorkerRuntime.process_block`` in this process on commands
  sealed beforehand (:class:`SealedScenario`): ECIES decryption, decoding, Ed25519
  verification, nonces, execution in the VM, state roots, sealed state and sealed
  results.

Every world reports its final storage in one form (:func:`canonical_state`), so a
benchmark can check that all of them ended in exactly the same state.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sealbridge.contracts.catalog import get_code_hash, get_source, load_builtin
from sealbridge.contracts.executor import CallOutcome, ContractProgram, Executor
from sealbridge.contracts.sdk import Contract, Env
from sealbridge.contracts.storage import Storage
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import ContractKeys, compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime.envelope import open_result, seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    BlockOutput,
    InboxCommand,
    InstallContract,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveContext

MAX_AMOUNT = 2**63 - 1
DOMAIN = b"bench-domain"
SEED = b"bench-seed"
WORKERS = [b"\x01" * 32]  # the executor set named in InstallContract (sets the domain)
DEPLOY_BLOCK = 1
SETUP_BLOCK = 2
FIRST_TIMED_BLOCK = 3


class User(NamedTuple):
    seed: bytes  # Ed25519 private seed
    pub: bytes  # Ed25519 public key: the account


class Op(NamedTuple):
    contract: str  # scenario key of the target contract
    sender: int  # index into Scenario.users
    method: str
    args: dict[str, Any]


class Deploy(NamedTuple):
    key: str  # scenario key ("token", "token_a", "dex", ...)
    program: str  # built-in contract name
    init: Callable[[dict[str, bytes]], dict[str, Any]]  # contract ids -> @init arguments


class Probe(NamedTuple):
    """A query whose answer must be the same everywhere (end-to-end cross-check)."""

    contract: str
    caller: int
    method: str
    args: dict[str, Any]


@dataclass
class Scenario:
    name: str
    label: str
    users: list[User]
    ids: dict[str, bytes]
    deploys: list[Deploy]
    setup: list[Op]
    blocks: list[list[Op]]
    probes: list[Probe] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def commands(self) -> int:
        return sum(len(b) for b in self.blocks)

    def ops(self) -> Iterator[Op]:
        for block in self.blocks:
            yield from block

    def count_by_contract(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops():
            out[op.contract] = out.get(op.contract, 0) + 1
        return out

    def count_by_method(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops():
            out[op.method] = out.get(op.method, 0) + 1
        return out

    def block_methods(self) -> list[str]:
        """The method of each timed block ("mixed" if a block has several)."""
        return [m.pop() if len(m := {op.method for op in b}) == 1 else "mixed" for b in self.blocks]

    def init_args(self, deploy: Deploy) -> dict[str, Any]:
        return deploy.init(self.ids)


Builder = Callable[..., Scenario]


def make_users(count: int, tag: str) -> list[User]:
    """``count`` deterministic Ed25519 identities."""
    out = []
    for i in range(count):
        seed = hashlib.sha256(f"sealbridge-bench/{tag}/{i}".encode()).digest()
        out.append(User(*ed25519_keypair(seed)))
    return out


def default_ids(keys: list[str]) -> dict[str, bytes]:
    return {k: hashlib.sha256(f"sealbridge-bench/contract/{k}".encode()).digest() for k in keys}


# --------------------------------------------------------------------------- scenarios


def token_transfers(
    deployer: User,
    ids: dict[str, bytes] | None = None,
    *,
    blocks: int,
    senders: int = 50,
    receivers: int = 8,
    rep: int = 0,
) -> Scenario:
    """``blocks`` blocks of one transfer from each of ``senders`` accounts (``rep``: a
    repetition of the timed part, the same transfers again)."""
    users = [deployer, *make_users(senders + receivers, "token")]
    first_receiver = 1 + senders
    setup = [
        Op("token", 0, "mint", {"to": users[1 + i].pub, "amount": 10**12}) for i in range(senders)
    ]
    timed = [
        [
            Op(
                "token",
                1 + i,
                "transfer",
                {"to": users[first_receiver + (b + i) % receivers].pub, "amount": 1 + i % 7},
            )
            for i in range(senders)
        ]
        for b in range(blocks)
    ]
    return Scenario(
        name="token",
        label="token transfers",
        users=users,
        ids=ids or default_ids(["token"]),
        deploys=[Deploy("token", "token", lambda _ids: {})],
        setup=setup,
        blocks=timed,
        probes=[
            Probe("token", first_receiver, "balance", {"owner": users[first_receiver].pub}),
            Probe("token", 1, "balance", {"owner": users[1].pub}),
        ],
        config={"blocks": blocks, "senders": senders, "receivers": receivers, "rep": rep},
    )


def dex_swaps(
    deployer: User,
    ids: dict[str, bytes] | None = None,
    *,
    blocks: int,
    traders: int = 50,
    rep: int = 0,
) -> Scenario:
    """Two tokens and a constant-product DEX; ``blocks`` blocks of one swap per trader,
    alternating direction. Every swap makes two synchronous token calls. (``rep``: a
    repetition of the timed part, the same swaps again.)"""
    users = [deployer, *make_users(1 + traders, "dex")]  # user 1 provides liquidity
    setup: list[Op] = []
    for index in range(1, len(users)):
        pub = users[index].pub
        for token in ("token_a", "token_b"):
            setup.append(Op(token, 0, "mint", {"to": pub, "amount": 10**13}))
    resolved = ids or default_ids(["token_a", "token_b", "dex"])
    for index in range(1, len(users)):
        for token in ("token_a", "token_b"):
            setup.append(
                Op(token, index, "approve", {"spender": resolved["dex"], "amount": MAX_AMOUNT})
            )
    setup.append(Op("dex", 1, "add_liquidity", {"amount_a": 10**12, "amount_b": 10**12}))
    timed = [
        [
            Op(
                "dex",
                2 + i,
                "swap",
                {
                    "token_in": resolved["token_a" if (b + i) % 2 == 0 else "token_b"],
                    "amount_in": 10_000 + 37 * i,
                    "min_out": 1,
                },
            )
            for i in range(traders)
        ]
        for b in range(blocks)
    ]
    return Scenario(
        name="dex",
        label="DEX swaps (2 tokens + DEX)",
        users=users,
        ids=resolved,
        deploys=[
            Deploy("token_a", "token", lambda _ids: {}),
            Deploy("token_b", "token", lambda _ids: {}),
            Deploy(
                "dex",
                "dex",
                lambda i: {"token_a": i["token_a"], "token_b": i["token_b"], "fee_bps": 30},
            ),
        ],
        setup=setup,
        blocks=timed,
        probes=[
            Probe("dex", 1, "reserves", {}),
            Probe("token_a", 2, "balance", {"owner": users[2].pub}),
        ],
        config={"blocks": blocks, "traders": traders, "sync_calls_per_swap": 2, "rep": rep},
    )


def auction_bids(
    deployer: User,
    ids: dict[str, bytes] | None = None,
    *,
    rounds: int,
    bidders: int = 50,
    rep: int = 0,
) -> Scenario:
    """A sealed-bid auction paid in a token: ``rounds`` blocks in which every bidder raises
    its bid (each bid escrows the raise with a synchronous ``transfer_from``). Repetition
    ``rep`` continues with higher bids."""
    users = [deployer, *make_users(bidders, "auction")]
    resolved = ids or default_ids(["pay_token", "auction"])
    setup = [
        Op("pay_token", 0, "mint", {"to": users[1 + i].pub, "amount": 10**12})
        for i in range(bidders)
    ]
    setup += [
        Op("pay_token", 1 + i, "approve", {"spender": resolved["auction"], "amount": MAX_AMOUNT})
        for i in range(bidders)
    ]
    timed = [
        [
            Op("auction", 1 + i, "bid", {"amount": 1000 * (rep * rounds + r + 1) + i})
            for i in range(bidders)
        ]
        for r in range(rounds)
    ]
    return Scenario(
        name="auction",
        label="sealed-bid auction bids",
        users=users,
        ids=resolved,
        deploys=[
            Deploy("pay_token", "token", lambda _ids: {}),
            Deploy(
                "auction",
                "auction",
                lambda i: {
                    "token": i["pay_token"],
                    "item": "a benchmark lot",
                    "close_block": 10**9,
                    "reserve_price": 1,
                },
            ),
        ],
        setup=setup,
        blocks=timed,
        probes=[
            Probe("auction", 1, "status", {}),
            Probe("auction", bidders, "my_bid", {"bidder": users[bidders].pub}),
        ],
        config={"rounds": rounds, "bidders": bidders, "sync_calls_per_bid": 1, "rep": rep},
    )


def kmeans_rounds(
    deployer: User,
    ids: dict[str, bytes] | None = None,
    *,
    rounds: int,
    parties: int = 4,
    points_per_command: int = 10,
    compute_every: int = 5,
    k: int = 5,
    iterations: int = 8,
    dims: int = 4,
    rep: int = 0,
) -> Scenario:
    """K-Means: each round every party contributes ``points_per_command`` points (one
    block); every ``compute_every`` rounds a party runs ``compute`` (its own block) over
    all the points so far. Repetition ``rep`` contributes other points (of the same
    clusters) after the earlier ones."""
    users = [deployer, *make_users(parties, "kmeans")]
    centers_rng = random.Random(20240611)
    centers = [[centers_rng.uniform(-100.0, 100.0) for _ in range(dims)] for _ in range(k)]
    rng = random.Random(20240611 + rep)

    def point() -> list[float]:
        center = centers[rng.randrange(k)]
        return [round(c + rng.gauss(0.0, 8.0), 3) for c in center]

    timed: list[list[Op]] = []
    computes = 0
    for r in range(rounds):
        timed.append(
            [
                Op(
                    "kmeans",
                    1 + p,
                    "contribute",
                    {"points": [point() for _ in range(points_per_command)]},
                )
                for p in range(parties)
            ]
        )
        if (r + 1) % compute_every == 0:
            timed.append([Op("kmeans", 1 + computes % parties, "compute", {})])
            computes += 1
    parties_keys = [u.pub for u in users[1:]]
    return Scenario(
        name="kmeans",
        label="K-Means (contribute + compute)",
        users=users,
        ids=ids or default_ids(["kmeans"]),
        deploys=[
            Deploy(
                "kmeans",
                "kmeans",
                lambda _ids: {
                    "parties": parties_keys,
                    "k": k,
                    "iterations": iterations,
                    "dims": dims,
                },
            )
        ],
        setup=[],
        blocks=timed,
        probes=[Probe("kmeans", 1, "result", {})],
        config={
            "rounds": rounds,
            "parties": parties,
            "points_per_command": points_per_command,
            "points": rounds * parties * points_per_command,
            "compute_every": compute_every,
            "computes": computes,
            "k": k,
            "iterations": iterations,
            "dims": dims,
            "rep": rep,
        },
    )


# --------------------------------------------------------------------------- worlds

_PROGRAMS: dict[tuple[str, bool], ContractProgram] = {}


def get_program(name: str, sandboxed: bool) -> ContractProgram:
    key = (name, sandboxed)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = load_builtin(name, sandboxed=sandboxed)
    return _PROGRAMS[key]


def get_init_method(program: ContractProgram) -> str:
    return next(n for n, s in program.methods.items() if s.kind == "init")


Resolved = list[list[tuple[bytes, str, dict[str, Any], bytes]]]  # (cid, method, args, caller)


def resolve(scenario: Scenario, ops: list[list[Op]]) -> Resolved:
    """Ops as (contract id, method, args, caller key), looked up before any timing."""
    return [
        [(scenario.ids[o.contract], o.method, o.args, scenario.users[o.sender].pub) for o in b]
        for b in ops
    ]


class DirectStorage:
    """Storage as two dicts: what the SDK's descriptors need, nothing more."""

    __slots__ = ("values", "maps")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.maps: dict[str, dict[Any, Any]] = {}

    def get_value(self, name: str, default: Any) -> Any:
        return self.values.get(name, default)

    def set_value(self, name: str, value: Any) -> None:
        self.values[name] = value

    def get_map(self, name: str) -> dict[Any, Any]:
        slots = self.maps.get(name)
        if slots is None:
            slots = self.maps[name] = {}
        return slots

    def get_item(self, name: str, key: Any, default: Any) -> Any:
        return self.get_map(name).get(key, default)

    def set_item(self, name: str, key: Any, value: Any) -> None:
        self.get_map(name)[key] = value

    def delete_item(self, name: str, key: Any) -> None:
        self.get_map(name).pop(key, None)

    def has_item(self, name: str, key: Any) -> bool:
        return key in self.get_map(name)

    def count_items(self, name: str) -> int:
        return len(self.get_map(name))

    def list_keys(self, name: str) -> list[Any]:
        return sorted(self.get_map(name))


class DirectContext:
    """The trivial context a directly called contract sees."""

    __slots__ = ("env", "storage", "world")

    def __init__(self, env: Env, storage: DirectStorage, world: DirectWorld) -> None:
        self.env = env
        self.storage = storage
        self.world = world

    def call(self, contract_id: bytes, method: str, args: dict[str, Any]) -> Any:
        env = self.env
        return self.world.invoke(contract_id, method, args, env.contract_id, True, env.block_number)

    def send(self, contract_id: bytes, method: str, args: dict[str, Any]) -> None:
        raise NotImplementedError("the reference workloads send no messages")


class DirectWorld:
    """The plain contract classes, called directly (a failure raises)."""

    kind = "direct"

    def __init__(self) -> None:
        self.contracts: dict[bytes, tuple[type[Contract], DirectStorage, bytes]] = {}

    def deploy(self, cid: bytes, name: str, deployer: bytes, init: dict[str, Any]) -> None:
        program = get_program(name, False)
        if program.plain_class is None:
            raise TypeError(f"{name}: not a plain program")
        self.contracts[cid] = (program.plain_class, DirectStorage(), deployer)
        self.invoke(cid, get_init_method(program), init, deployer, False, DEPLOY_BLOCK)

    def invoke(
        self,
        cid: bytes,
        method: str,
        args: dict[str, Any],
        caller: bytes,
        caller_is_contract: bool,
        number: int,
    ) -> Any:
        cls, storage, deployer = self.contracts[cid]
        env = Env(
            contract_id=cid,
            caller=caller,
            caller_is_contract=caller_is_contract,
            deployer=deployer,
            block_number=number,
            seed=SEED,
        )
        context: Any = DirectContext(env, storage, self)  # duck-typed sdk.Context
        return getattr(cls(context), method)(**args)

    def run_block(self, number: int, block: list[tuple[bytes, str, dict[str, Any], bytes]]) -> None:
        invoke = self.invoke
        for cid, method, args, caller in block:
            invoke(cid, method, args, caller, False, number)

    def query(self, cid: bytes, method: str, args: dict[str, Any], caller: bytes) -> Any:
        return self.invoke(cid, method, args, caller, False, 0)

    def state(self, cid: bytes) -> dict[str, Any]:
        storage = self.contracts[cid][1]
        return {
            "values": dict(storage.values),
            "maps": {n: sorted(s.items()) for n, s in sorted(storage.maps.items()) if s},
        }


class CommandFailed(AssertionError):
    pass


class ExecutorWorld:
    """The platform's executor, plain (the class as ordinary Python, no fuel) or in the
    WebAssembly VM (fuel-metered)."""

    def __init__(self, sandboxed: bool) -> None:
        self.sandboxed = sandboxed
        self.kind = "wasm" if sandboxed else "plain"
        self.executor = Executor(metered=sandboxed)
        self.failures: list[str] = []

    def deploy(self, cid: bytes, name: str, deployer: bytes, init: dict[str, Any]) -> None:
        program = get_program(name, self.sandboxed)
        self.executor.add(cid, program, deployer=deployer, domain=DOMAIN)
        outcome = self.executor.run_command(
            cid,
            get_init_method(program),
            init,
            caller=deployer,
            block_number=DEPLOY_BLOCK,
            seed=SEED,
            is_init=True,
        )
        self.check(outcome, f"{name}.init")

    def check(self, outcome: CallOutcome, what: str) -> None:
        if not outcome.ok:
            raise CommandFailed(f"{self.kind}: {what} failed: {outcome.error}: {outcome.message}")

    def run_block(self, number: int, block: list[tuple[bytes, str, dict[str, Any], bytes]]) -> None:
        run = self.executor.run_command
        failures = self.failures
        for cid, method, args, caller in block:
            outcome = run(cid, method, args, caller=caller, block_number=number, seed=SEED)
            if not outcome.ok:
                failures.append(f"{method}: {outcome.error}: {outcome.message}")

    def raise_failures(self) -> None:
        if self.failures:
            raise CommandFailed(
                f"{self.kind}: {len(self.failures)} commands failed, first: {self.failures[0]}"
            )

    def query(self, cid: bytes, method: str, args: dict[str, Any], caller: bytes) -> Any:
        outcome = self.executor.run_query(cid, method, args, caller=caller, block_number=0)
        self.check(outcome, f"query {method}")
        return outcome.value

    def state(self, cid: bytes) -> dict[str, Any]:
        return canonical_state(self.executor.contracts[cid].storage)


def canonical_state(storage: Storage) -> dict[str, Any]:
    snapshot = storage.snapshot()
    return {
        "values": dict(snapshot.values),
        "maps": {n: [tuple(p) for p in pairs] for n, pairs in snapshot.maps.items()},
    }


def prepare_world(world: DirectWorld | ExecutorWorld, scenario: Scenario) -> Resolved:
    """Deploy and set up (untimed); return the timed blocks, resolved."""
    deployer = scenario.users[0].pub
    for d in scenario.deploys:
        world.deploy(scenario.ids[d.key], d.program, deployer, scenario.init_args(d))
    (setup,) = resolve(scenario, [scenario.setup])
    world.run_block(SETUP_BLOCK, setup)
    if isinstance(world, ExecutorWorld):
        world.raise_failures()
    return resolve(scenario, scenario.blocks)


# --------------------------------------------------------------------------- runtime


class SealedCommand(NamedTuple):
    sender_seed: bytes
    contract_id: bytes
    nonce: int


class SealedScenario:
    """A scenario's commands sealed for the runtime (done once, before any timing)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.contract_keys = {
            key: hashlib.sha256(b"sealbridge-bench/contract-key/" + cid).digest()
            for key, cid in scenario.ids.items()
        }
        self.keys: dict[str, ContractKeys] = {
            key: compute_contract_keys(scenario.ids[key], ck)
            for key, ck in self.contract_keys.items()
        }
        self.programs = {d.key: d.program for d in scenario.deploys}
        self._nonces: dict[tuple[str, int], int] = {}
        self._seq = 0
        deployer = 0
        deploy_ops = [
            Op(
                d.key,
                deployer,
                DEPLOY_METHOD,
                {"code": get_source(d.program), "init": scenario.init_args(d)},
            )
            for d in scenario.deploys
        ]
        self.deploy_block = self._block(DEPLOY_BLOCK, deploy_ops)
        self.setup_block = self._block(SETUP_BLOCK, scenario.setup)
        self.blocks = [
            self._block(number, ops)
            for number, ops in enumerate(scenario.blocks, start=FIRST_TIMED_BLOCK)
        ]

    def _block(self, number: int, ops: list[Op]) -> tuple[BlockInput, list[SealedCommand]]:
        commands = []
        meta = []
        for index, op in enumerate(ops):
            user = self.scenario.users[op.sender]
            nonce = self._nonces.get((op.contract, op.sender), 0) + 1
            self._nonces[(op.contract, op.sender)] = nonce
            cid = self.scenario.ids[op.contract]
            ciphertext = seal_command(
                contract_id=cid,
                contract_public_key=self.keys[op.contract].command_public_key,
                sender_private_key=user.seed,
                nonce=nonce,
                method=op.method,
                args=op.args,
            )
            self._seq += 1
            commands.append(
                InboxCommand(
                    contract_id=cid,
                    seq=self._seq,
                    tx_index=index,
                    log_index=0,
                    ciphertext=ciphertext,
                )
            )
            meta.append(SealedCommand(user.seed, cid, nonce))
        block = BlockInput(number=number, block_hash=number.to_bytes(32, "big"), commands=commands)
        return block, meta


def make_enclave_context() -> EnclaveContext:
    """An in-process enclave context (fresh identity keys; no child process)."""
    return EnclaveContext(
        program="bench:Worker", measurement=bytes(32), platform_private_key=bytes([9]) * 32
    )


def check_output(out: BlockOutput, meta: list[SealedCommand], *, open_results: bool) -> None:
    """Every receipt says applied; with ``open_results`` every sealed result opens (with
    its sender's key) and says ok."""
    if len(out.receipts) != len(meta):
        raise CommandFailed(f"block {out.number}: {len(out.receipts)} receipts for {len(meta)}")
    refused = [r.status for r in out.receipts if r.status != "applied"]
    if refused:
        raise CommandFailed(f"block {out.number}: {len(refused)} refused, first: {refused[0]}")
    if not open_results:
        return
    for receipt, m in zip(out.receipts, meta, strict=True):
        result = open_result(
            sender_private_key=m.sender_seed,
            contract_id=m.contract_id,
            nonce=m.nonce,
            sealed_result=receipt.sealed_result,
        )
        if not result.ok:
            raise CommandFailed(f"block {out.number}: {result.error}: {result.message}")


class RuntimeWorld:
    """A fresh in-process WorkerRuntime holding the scenario's contracts, deployed and set
    up (the deploy commands carry the reference source, as ``Client.deploy`` sends it)."""

    kind = "runtime"

    def __init__(self, sealed: SealedScenario) -> None:
        self.sealed = sealed
        scenario = sealed.scenario
        self.runtime = WorkerRuntime(make_enclave_context())
        identity = self.runtime.enclave.identity
        deployer = scenario.users[0].pub
        for key, cid in scenario.ids.items():
            self.runtime.install_contract(
                InstallContract(
                    contract_id=cid,
                    code_hash=get_code_hash(sealed.programs[key]),
                    contract_public_key=sealed.keys[key].command_public_key,
                    wrapped_key=ecies.encrypt_to(
                        identity.encryption_key,
                        sealed.contract_keys[key],
                        key_release_aad(cid, identity.identity_key),
                    ),
                    gatekeeper_key=bytes(32),
                    deployer_commitment=compute_deployer_commitment(cid, deployer),
                    workers=WORKERS,
                )
            )
        for block, meta in (sealed.deploy_block, sealed.setup_block):
            check_output(self.runtime.process_block(block), meta, open_results=True)

    def run_blocks(self) -> list[BlockOutput]:
        process = self.runtime.process_block
        return [process(block) for block, _meta in self.sealed.blocks]

    def check(self, outputs: list[BlockOutput], *, open_results: bool) -> None:
        for out, (_block, meta) in zip(outputs, self.sealed.blocks, strict=True):
            check_output(out, meta, open_results=open_results)

    def state(self, cid: bytes) -> dict[str, Any]:
        return canonical_state(self.runtime.get_contract(cid).storage)
