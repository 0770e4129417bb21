"""Key-release contracts: the matcher's latency and risk quality on large chunk books.

``python -m bench.bench_keyrelease [--quick] [--part matching|swap|persist|all]``

Part ``matching`` (:func:`run_matching`): a :class:`~sealbridge.keyrelease.matcher.
MatcherCore` with 1,000 owners (1-3 enclaves each, bonds of 2-40 chunks, a few of them
cheats) is filled with 10,000 and 100,000 chunks of one asset. A warm-up history of
matched, accepted and settled requests spreads the owners' reputations (the cheats'
double spends are reported, proven and punished on the way). Then a few hundred requests
of 10 chunks are matched and timed; each is accepted (and settled some requests later, so
owners carry open exposure) or declined, which keeps the book's size stable. Reported:
the build time of the book, match latency (mean, p50, p95), and quality -- distinct owners
per request, the largest share of one request from one owner and from one enclave against
the policy caps, the largest open exposure of an owner relative to its bond, and chunks
handed out from banned owners (must be 0).

Part ``swap`` (:func:`run_swap`): on two anvil chains with 1 s blocks, a 10-chunk
key-release swap (alice's TKN chunks for ETH chunks of two owners, tit-for-tat, every
chunk swept to a fresh key) against an HTLC swap of the same value; key release with each
sweep confirmed before the exchange goes on, and with sweeps pipelined.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.common import console, fmt, is_smoke, print_table, summarize, write_results
from sealbridge.keyrelease.errors import InsufficientLiquidity
from sealbridge.keyrelease.matcher import (
    ChainObservation,
    DoubleSpendReport,
    MatcherCore,
    MatcherPolicy,
)
from sealbridge.keyrelease.types import Chunk, ChunkRequest, compute_chunk_id

USD = 10**8
ASSET = "ETH@31337"
CHUNK_USD = 100 * USD
CHUNK_AMOUNT = 4 * 10**16  # base units per chunk (0.04 ETH at 2,500 USD)
CHUNKS_PER_REQUEST = 10
OWNERS = 1_000
CHEAT_FRACTION = 0.01
WARMUP_REQUESTS = 1_000  # history that spreads the reputations before measuring
SETTLE_LAG = 50  # an accepted request is settled this many requests later
ACCEPT_RATE = 0.85
REQUESTERS = [f"0x{0xC0FFEE << 136 | i:040x}" for i in range(20)]


def _policy() -> MatcherPolicy:
    return MatcherPolicy(
        chunk_usd_e8={ASSET: CHUNK_USD},
        fee_bps=30,
        max_owner_share_bps=2500,
        max_vault_share_bps=2500,
        exposure_per_bond=1,
        reputation_gain=10,
        offer_ttl_s=60.0,
    )


def _build_chunks(
    n_chunks: int, rng: random.Random
) -> tuple[list[tuple[str, int]], list[list[Chunk]], int]:
    """Owners with bonds, and each owner's chunks spread over its 1-3 enclaves."""
    owners = [(f"0x{0xB0B << 148 | i:040x}", rng.randint(2, 40) * CHUNK_USD) for i in range(OWNERS)]
    # chunks per owner: uneven (some owners deposit much more than others)
    weights = [rng.paretovariate(1.5) for _ in owners]
    scale = n_chunks / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    counts[-1] += n_chunks - sum(counts)
    if counts[-1] < 1:
        raise RuntimeError("chunk distribution left an owner empty")
    per_owner: list[list[Chunk]] = []
    address = 0
    vault_total = 0
    for index, ((owner, _), count) in enumerate(zip(owners, counts, strict=True)):
        vaults = [
            hashlib.sha256(f"bench/vault/{index}/{v}".encode()).hexdigest()
            for v in range(rng.randint(1, 3))
        ]
        vault_total += len(vaults)
        chunks = []
        for key in range(count):
            vault = vaults[key % len(vaults)]
            address += 1
            chunks.append(
                Chunk(
                    chunk_id=compute_chunk_id(vault, key // len(vaults)),
                    owner=owner,
                    vault=vault,
                    asset=ASSET,
                    address=f"0x{0xDE << 152 | address:040x}",
                    amount=CHUNK_AMOUNT,
                    usd_e8=CHUNK_USD,
                )
            )
        per_owner.append(chunks)
    return owners, per_owner, vault_total


def _request(request_id: str, rng: random.Random) -> ChunkRequest:
    return ChunkRequest(
        request_id=request_id,
        requester=rng.choice(REQUESTERS),
        asset=ASSET,
        usd_e8=CHUNKS_PER_REQUEST * CHUNK_USD,
        contract=f"swap:{request_id}",
    )


class _Driver:
    """Feeds requests to the core and keeps the book stable (accept+settle, or decline)."""

    def __init__(
        self, core: MatcherCore, cheats: set[str], rng: random.Random, next_key: dict[str, int]
    ) -> None:
        self.core = core
        self.cheats = cheats
        self.rng = rng
        self.next_key = next_key  # vault -> next free key index (for refills)
        self.refills = 0
        self.pending: deque[tuple[int, list[tuple[str, str, str]]]] = deque()
        self.step = 0
        self.reports = 0
        self.failures = 0

    def one(self, on_offer: Callable[[Any, float], None] | None = None) -> None:
        request = _request(f"req-{self.step}", self.rng)
        now = float(self.step)
        start = time.perf_counter()
        try:
            offer = self.core.match(request, seed=self.step.to_bytes(8, "big"), now=now)
        except InsufficientLiquidity:
            self.failures += 1
            self.step += 1
            return
        elapsed = time.perf_counter() - start
        if on_offer is not None:
            on_offer(offer, elapsed)
        if self.rng.random() < ACCEPT_RATE:
            self.core.accept(request.request_id, now)
            held = [(c.chunk_id, c.owner, request.requester) for c in offer.chunks]
            self.pending.append((self.step, held))
        else:
            self.core.decline(request.request_id)
        self.step += 1
        while self.pending and self.pending[0][0] <= self.step - SETTLE_LAG:
            self._finish(self.pending.popleft()[1])

    def _finish(self, held: list[tuple[str, str, str]]) -> None:
        for chunk_id, owner, requester in held:
            if owner in self.cheats and not self.core.get_owner(owner).banned:
                report = DoubleSpendReport(chunk_id=chunk_id, victim=requester)
                self.core.report_double_spend(report, ChainObservation(balance=0))
                self.reports += 1
            elif self.core.get_chunk(chunk_id).state == "allocated":
                self.core.settle(chunk_id, requester)
                self._refill(self.core.get_chunk(chunk_id).chunk)

    def _refill(self, spent: Chunk) -> None:
        """The owner deposits a fresh chunk in the same enclave for the one swept."""
        if self.core.get_owner(spent.owner).banned:
            return
        key = self.next_key[spent.vault]
        self.next_key[spent.vault] = key + 1
        self.refills += 1
        fresh = msgspec.structs.replace(
            spent,
            chunk_id=compute_chunk_id(spent.vault, key),
            address=f"0x{0xDF << 152 | self.refills:040x}",
        )
        self.core.add_chunks([fresh])

    def drain(self) -> None:
        while self.pending:
            self._finish(self.pending.popleft()[1])


def _measure(n_chunks: int, requests: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + n_chunks)
    owners, per_owner, vault_total = _build_chunks(n_chunks, rng)
    core = MatcherCore(_policy())
    start = time.perf_counter()
    for (owner, bond), chunks in zip(owners, per_owner, strict=True):
        core.register_owner(owner, bond)
        core.add_chunks(chunks)
    build_s = time.perf_counter() - start
    cheats = {owner for owner, _ in rng.sample(owners, int(OWNERS * CHEAT_FRACTION))}
    next_key: Counter[str] = Counter()
    for chunks in per_owner:
        next_key.update(c.vault for c in chunks)
    driver = _Driver(core, cheats, rng, dict(next_key))

    warmup = WARMUP_REQUESTS
    start = time.perf_counter()
    for _ in range(warmup):
        driver.one()
    warmup_s = time.perf_counter() - start
    status = core.get_status()
    reputations = sorted(o.reputation for o in status.owners.values() if not o.banned)
    banned = {name for name, o in status.owners.items() if o.banned}

    latencies: list[float] = []
    owners_per_request: list[int] = []
    owner_share = 0.0
    vault_share = 0.0
    exposure_ratio = 0.0
    banned_picks = 0

    def on_offer(offer: Any, elapsed: float) -> None:
        nonlocal owner_share, vault_share, exposure_ratio, banned_picks
        latencies.append(elapsed)
        by_owner = Counter(c.owner for c in offer.chunks)
        by_vault = Counter(c.vault for c in offer.chunks)
        owners_per_request.append(len(by_owner))
        owner_share = max(owner_share, max(by_owner.values()) / len(offer.chunks))
        vault_share = max(vault_share, max(by_vault.values()) / len(offer.chunks))
        banned_picks += sum(n for owner, n in by_owner.items() if owner in banned)
        for owner in by_owner:
            info = core.get_owner(owner)
            exposure_ratio = max(exposure_ratio, info.exposure_usd_e8 / info.bond_usd_e8)

    failures_before = driver.failures
    for _ in range(requests):
        driver.one(on_offer)
    driver.drain()
    final = core.get_status()
    return {
        "chunks": n_chunks,
        "owners": OWNERS,
        "vaults": vault_total,
        "requests": requests,
        "chunks_per_request": CHUNKS_PER_REQUEST,
        "build_s": build_s,
        "warmup_requests": warmup,
        "available_before_after": [n_chunks, final.available_by_asset[ASSET]],
        "warmup_s": warmup_s,
        "match": summarize(latencies),
        "liquidity_failures": driver.failures - failures_before,
        "owners_per_request_mean": statistics.fmean(owners_per_request),
        "owners_per_request_min": min(owners_per_request),
        "max_owner_share": owner_share,
        "owner_share_cap": _policy().max_owner_share_bps / 10_000,
        "max_vault_share": vault_share,
        "vault_share_cap": _policy().max_vault_share_bps / 10_000,
        "max_exposure_over_bond": exposure_ratio,
        "exposure_cap_over_bond": float(_policy().exposure_per_bond),
        "banned_owners": len(banned),
        "banned_picks": banned_picks,
        "reputation_min_p50_max": [
            reputations[0],
            reputations[len(reputations) // 2],
            reputations[-1],
        ],
        "double_spends_reported": driver.reports,
        "pool_usd": final.pool_usd_e8 / USD,
        "compensated_usd": final.compensated_usd_e8 / USD,
        "chunks_by_state": final.chunks,
    }


def run_matching(
    sizes: Sequence[int] = (10_000, 100_000), requests: int = 300, seed: int = 7
) -> dict[str, Any]:
    """Build books of ``sizes`` chunks, time ``requests`` 10-chunk matches on each."""
    console.rule("[bold]Key-release matcher: latency and risk quality")
    results = [_measure(n, requests, seed) for n in sizes]
    rows = []
    for r in results:
        match = r["match"]
        rep = r["reputation_min_p50_max"]
        rows.append(
            [
                f"{r['chunks']:,}",
                f"{r['owners']:,}/{r['vaults']:,}",
                fmt(r["build_s"], 2),
                fmt(match["mean_ms"], 3),
                fmt(match["p50_ms"], 3),
                fmt(match["p95_ms"], 3),
                f"{r['owners_per_request_mean']:.2f}, min {r['owners_per_request_min']}",
                f"{r['max_owner_share']:.0%} ({r['owner_share_cap']:.0%})",
                f"{r['max_vault_share']:.0%} ({r['vault_share_cap']:.0%})",
                f"{r['max_exposure_over_bond']:.2f} ({r['exposure_cap_over_bond']:.0f})",
                f"{rep[0]}/{rep[1]}/{rep[2]}",
                f"{r['banned_owners']}/{r['banned_picks']}",
                str(r["liquidity_failures"]),
            ]
        )
    print_table(
        f"{requests} requests of {CHUNKS_PER_REQUEST} chunks per book (accept + settle "
        f"{SETTLE_LAG} requests later, or decline); max shares and exposure with the caps in "
        "parentheses; reputation min/p50/max after the warm-up",
        [
            "chunks",
            "owners/vaults",
            "build s",
            "mean ms",
            "p50 ms",
            "p95 ms",
            "owners/req",
            "owner share",
            "vault share",
            "exp./bond",
            "reputation",
            "banned/picks",
            "unfilled",
        ],
        rows,
    )
    path = write_results(
        "keyrelease_matching",
        {"sizes": list(sizes), "requests": requests, "seed": seed, "results": results},
    )
    return {"results_file": str(path), "results": results}


SWAP_CHUNKS = 10
SMOKE_SWAP_CHUNKS = 2
SWAP_BLOCK_TIME = 1.0


def _key_release_swap(devnet: Any, index: int, chunks: int) -> dict[str, Any]:
    """One timed swap of ``chunks`` chunks: request, accept (fee), tit-for-tat with sweeps."""
    from sealbridge.devnet.keyrelease import USD

    started = time.monotonic()
    tx_before, gas_before = devnet.tx_count, devnet.gas_used
    answer = devnet.request("alice", "ETH@31337", chunks * 100 * USD, f"swap:bench-{index}")
    matched = time.monotonic()
    devnet.accept("alice", answer)
    outcome = devnet.run_swap("alice", answer, "TKN@31338")
    if outcome.swept != chunks or outcome.given != chunks:
        raise RuntimeError(f"swap {index} did not complete: {outcome}")
    return {
        "latency_s": time.monotonic() - started,
        "match_s": matched - started,
        "transactions": devnet.tx_count - tx_before,
        "gas": devnet.gas_used - gas_before,
        "owners": len(outcome.counterparties),
    }


def _htlc_baseline(devnet: Any, value_wei: int) -> dict[str, Any]:
    from sealbridge.devnet.keyrelease import CHAIN_A, CHAIN_B
    from sealbridge.evm.htlc import HTLC, deploy_htlc, run_htlc_swap

    a, b = devnet.adapters[CHAIN_A], devnet.adapters[CHAIN_B]
    htlc_a = HTLC(a, deploy_htlc(a, a.get_dev_key(0)))
    htlc_b = HTLC(b, deploy_htlc(b, b.get_dev_key(0)))
    started = time.monotonic()
    result = run_htlc_swap(
        htlc_a,
        htlc_b,
        alice_key=a.get_dev_key(1),
        bob_key=b.get_dev_key(8),
        amount_a=value_wei,
        amount_b=value_wei,
    )
    return {
        "latency_s": time.monotonic() - started,
        "transactions": len(result.steps),
        "gas": result.total_gas,
    }


def run_swap(quick: bool = False) -> dict[str, Any]:
    """A 10-chunk key-release swap (TKN on chain B for ETH chunks on chain A from two
    owners) against an HTLC swap of the same value on the same two anvil chains, 1 s
    blocks. Key release is timed with each sweep confirmed before the exchange goes on,
    and with sweeps pipelined (sent at once, confirmed at the end)."""
    from sealbridge.devnet.keyrelease import USD, KeyReleaseDevnet
    from sealbridge.keyrelease.matcher import MatcherPolicy

    rounds = 1 if quick else 3
    # the smoke run: one chunk from each of the two owners (each chunk is a few transactions)
    chunks = SMOKE_SWAP_CHUNKS if is_smoke() else SWAP_CHUNKS
    samples: dict[str, list[dict[str, Any]]] = {"confirmed": [], "pipelined": [], "htlc": []}
    policy = MatcherPolicy(
        chunk_usd_e8={"ETH@31337": 100 * USD, "TKN@31338": 100 * USD},
        max_owner_share_bps=5000,
        max_vault_share_bps=5000,
    )
    started = time.monotonic()
    with KeyReleaseDevnet(
        clients=("alice", "bob", "carol"),
        compromised=(),
        keys_per_vault=8 * chunks * rounds,
        block_time=SWAP_BLOCK_TIME,
        policy=policy,
    ) as devnet:
        setup_s = time.monotonic() - started
        for owner in ("bob", "carol"):
            devnet.post_bond(owner, 4 * chunks * rounds * 100 * USD)
        for index in range(2 * rounds):
            mode = "confirmed" if index % 2 == 0 else "pipelined"
            devnet.confirm_sweeps = mode == "confirmed"
            for owner in ("bob", "carol"):
                devnet.offer(owner, devnet.deposit(owner, "ETH@31337", chunks // 2))
            devnet.deposit("alice", "TKN@31338", chunks)
            samples[mode].append(_key_release_swap(devnet, index, chunks))
            console.print(
                f"  key release ({mode}) {index // 2 + 1}/{rounds}: "
                f"{samples[mode][-1]['latency_s']:.2f} s"
            )
        value = chunks * 100 * USD * 10**18 // devnet.price("ETH@31337")
        for index in range(rounds):
            samples["htlc"].append(_htlc_baseline(devnet, value))
            console.print(f"  htlc {index + 1}/{rounds}: {samples['htlc'][-1]['latency_s']:.2f} s")
    results: dict[str, Any] = {}
    for mode, rows in samples.items():
        results[mode] = {
            "latency": summarize([r["latency_s"] for r in rows]),
            "latency_median_s": statistics.median(r["latency_s"] for r in rows),
            "transactions": rows[0]["transactions"],
            "gas": rows[0]["gas"],
        }
        if mode != "htlc":
            results[mode]["match"] = summarize([r["match_s"] for r in rows])
            results[mode]["owners"] = rows[0]["owners"]
    baseline = results["htlc"]["latency_median_s"]
    print_table(
        f"{chunks}-chunk key-release swap vs HTLC swap of the same value "
        f"(two anvil chains, {SWAP_BLOCK_TIME:.0f} s blocks, {rounds} runs each)",
        ["swap", "latency s (median)", "vs HTLC", "transactions", "gas"],
        [
            [
                {
                    "confirmed": "key release, sweep confirmed per chunk",
                    "pipelined": "key release, sweeps pipelined",
                    "htlc": "HTLC (baseline)",
                }[mode],
                fmt(r["latency_median_s"], 2),
                fmt(r["latency_median_s"] / baseline, 2) + "x",
                str(r["transactions"]),
                f"{r['gas']:,}",
            ]
            for mode, r in results.items()
        ],
    )
    path = write_results(
        "keyrelease_swap",
        {
            "chunks": chunks,
            "chunk_usd": 100,
            "block_time_s": SWAP_BLOCK_TIME,
            "rounds": rounds,
            "setup_s": setup_s,
            "results": results,
            "note": f"key-release transactions: the fee payment, {chunks} sweeps by alice, "
            f"{chunks} by the owners (each chunk moved to a fresh key); deposits are made "
            "before the timer. HTLC: lock A, lock B, claim B, claim A.",
        },
    )
    return {"results_file": str(path), "results": results}


BOOK_CHUNKS = 1_000  # the persist part's book: one vault's keys, in batches of 100


def _persist_costs(entries: int, samples: int) -> dict[str, Any]:
    """A matcher enclave (in process) with a book of ``BOOK_CHUNKS`` chunks and a journal
    grown to ``entries`` entries (the rest are ``expire`` calls, which its host makes
    before every request): the time to persist one more change (``seal_tail``), to
    compact (``seal``: a snapshot of the state), and to restore from a compacted base
    plus one segment against replaying the whole journal (the restore before snapshots)."""
    from sealbridge.keyrelease.matcher_program import (
        MATCHER_ADD_CHUNKS,
        MATCHER_CONFIGURE,
        MATCHER_EXPIRE,
        MATCHER_PROGRAM,
        MATCHER_REGISTER_OWNER,
        MATCHER_RESTORE,
        MATCHER_SEAL,
        MATCHER_SEAL_TAIL,
        AddChunks,
        MatcherConfig,
        RegisterOwner,
        SealedJournal,
    )
    from sealbridge.keyrelease.vault import (
        VAULT_BIND_OWNER,
        VAULT_CONFIGURE,
        VAULT_CREATE_KEYS,
        VAULT_PROGRAM,
        CreateKeys,
        OwnerRef,
        VaultConfig,
    )
    from sealbridge.tee.ecall import NOTHING, call
    from sealbridge.tee.measurement import compute_sim_measurement
    from sealbridge.tee.policy import devnet_policy
    from sealbridge.tee.quote import create_sim_platform
    from sealbridge.tee.sim import InProcessBackend

    with tempfile.TemporaryDirectory() as tmp:
        key, ident = Path(tmp) / "platform.key", Path(tmp) / "matcher.identity"
        pub = create_sim_platform(key)
        backend = InProcessBackend()
        vault_policy = devnet_policy(pub, [compute_sim_measurement(VAULT_PROGRAM)])
        vault = backend.launch(VAULT_PROGRAM, platform_key_file=key)
        call(vault, VAULT_CONFIGURE, VaultConfig(policy=vault_policy))
        book = min(BOOK_CHUNKS, entries // 2)
        manifest = call(vault, VAULT_CREATE_KEYS, CreateKeys(count=book))
        owner = "0x" + "0e" * 20
        binding = call(vault, VAULT_BIND_OWNER, OwnerRef(account=owner))
        vault.close()

        def launch() -> Any:
            return backend.launch(
                MATCHER_PROGRAM, platform_key_file=key, sealed_identity_file=ident
            )

        handle = launch()
        config = MatcherConfig(policy=_policy(), vault_policy=vault_policy)
        call(handle, MATCHER_CONFIGURE, config)
        first_base = call(handle, MATCHER_SEAL, NOTHING).blob
        bond = book * CHUNK_USD
        call(
            handle,
            MATCHER_REGISTER_OWNER,
            RegisterOwner(owner=owner, bond_usd_e8=bond, manifest=manifest, binding=binding),
        )
        chunks = [
            Chunk(
                chunk_id=compute_chunk_id(manifest.vault, k.index),
                owner=owner,
                vault=manifest.vault,
                asset=ASSET,
                address=k.eth_address,
                amount=10**16,
                usd_e8=CHUNK_USD,
            )
            for k in manifest.keys
        ]
        for at in range(0, len(chunks), 100):
            call(handle, MATCHER_ADD_CHUNKS, AddChunks(chunks=chunks[at : at + 100]))
        done = 2 + (len(chunks) + 99) // 100  # configure, register_owner, add_chunks
        for _ in range(entries - done):
            call(handle, MATCHER_EXPIRE, NOTHING)
        # everything since the first base, as one segment: what a restore replayed before
        history = call(handle, MATCHER_SEAL_TAIL, NOTHING).blob
        tail, snap, size_tail, size_snap = [], [], 0, 0
        for _ in range(samples):
            call(handle, MATCHER_EXPIRE, NOTHING)
            started = time.perf_counter()
            blob = call(handle, MATCHER_SEAL_TAIL, NOTHING).blob
            tail.append(time.perf_counter() - started)
            size_tail = len(blob)
            started = time.perf_counter()
            base = call(handle, MATCHER_SEAL, NOTHING).blob
            snap.append(time.perf_counter() - started)
            size_snap = len(base)
        call(handle, MATCHER_EXPIRE, NOTHING)
        last = call(handle, MATCHER_SEAL_TAIL, NOTHING).blob
        handle.close()
        restores = []
        for parts in ((base, [last]), (first_base, [history])):
            started = time.perf_counter()
            handle = launch()
            call(handle, MATCHER_RESTORE, SealedJournal(blob=parts[0], segments=parts[1]))
            restores.append(time.perf_counter() - started)
            handle.close()
    return {
        "entries": entries,
        "book_chunks": book,
        "seal_tail_ms": statistics.median(tail) * 1e3,
        "seal_tail_bytes": size_tail,
        "snapshot_ms": statistics.median(snap) * 1e3,
        "snapshot_bytes": size_snap,
        "restore_snapshot_ms": restores[0] * 1e3,
        "replay_all_ms": restores[1] * 1e3,
        "history_bytes": len(history),
    }


def run_persist(quick: bool = False) -> dict[str, Any]:
    """Persisting the matcher per change, and restoring it, as its journal grows (issue
    15, item 5): segments per change, snapshots to compact."""
    console.rule("[bold]Key-release matcher: persisting cost per change")
    sizes = (100, 1_000) if is_smoke() else (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    results = [_persist_costs(n, 3 if is_smoke() else 10) for n in sizes]
    print_table(
        f"median time and size to persist one change (seal_tail), to compact (seal: a "
        f"snapshot of the state, a book of up to {BOOK_CHUNKS:,} chunks), and to restore "
        f"from a snapshot plus a segment against replaying the whole journal (before)",
        [
            "journal entries",
            "book chunks",
            "seal_tail ms",
            "bytes",
            "snapshot ms",
            "bytes",
            "restore ms",
            "replay all ms",
            "journal bytes",
        ],
        [
            [
                f"{r['entries']:,}",
                f"{r['book_chunks']:,}",
                fmt(r["seal_tail_ms"], 3),
                f"{r['seal_tail_bytes']:,}",
                fmt(r["snapshot_ms"], 2),
                f"{r['snapshot_bytes']:,}",
                fmt(r["restore_snapshot_ms"], 1),
                fmt(r["replay_all_ms"], 1),
                f"{r['history_bytes']:,}",
            ]
            for r in results
        ],
    )
    path = write_results("keyrelease_persist", {"sizes": list(sizes), "results": results})
    return {"results_file": str(path), "results": results}


PARTS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "matching": lambda quick: run_matching(
        sizes=(10_000,) if quick else (10_000, 100_000), requests=100 if quick else 300
    ),
    "swap": run_swap,
    "persist": run_persist,
}


def run(quick: bool = False, parts: Sequence[str] = ("matching",)) -> dict[str, Any]:
    """Run the selected parts; ``run_all`` style (``results_file`` of the last part)."""
    out: dict[str, Any] = {}
    for part in parts:
        out[part] = PARTS[part](quick)
    last = out[parts[-1]] if parts else {}
    return {"results_file": last.get("results_file", ""), "parts": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument(
        "--part",
        choices=[*PARTS, "all"],
        default="all",
        help="which part to run (default: all)",
    )
    args = parser.parse_args(argv)
    parts = list(PARTS) if args.part == "all" else [args.part]
    try:
        run(args.quick, parts)
    except NotImplementedError as exc:
        parser.exit(2, f"bench_keyrelease: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
