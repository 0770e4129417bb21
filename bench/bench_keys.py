"""Benchmark: contract-key derivation by t-of-n gatekeepers (threshold PRF) vs one gatekeeper.

For ``n`` in {4, 7, 16, 31} gatekeepers and ``t = n//2 + 1`` (also ``t = n//3 + 1``), a
dealer-free key generation (:mod:`sealbridge.crypto.dkg`) makes the key shares; then, for
fresh contract ids,

* each of ``t`` holders signs the contract's PRF message with its share and ECIES-encrypts
  the partial to the worker (:meth:`ShareHolder.release_partial`) -- holders run in
  parallel, so the critical path counts the slowest of them;
* the worker decrypts the ``t`` releases, verifies each partial under its public share,
  combines them, verifies the result under the group key and derives the key with HKDF
  (:func:`combine_released_key`); also in the optimistic mode (combine, then one check);
* total = slowest holder + worker.

Baseline, in the same run: a single gatekeeper holding the whole root key (the design
before the committee), HKDF of the root key
(HKDF of the root key) + ``ecies.encrypt_to`` + the worker's decrypt. Also measured: the
whole key generation (all ``n`` participants, computed in this one process) and a
resharing of the same secret to a fresh committee of the same size and threshold.
Statistics: median and p95 over repetitions (fewer in quick mode).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    RESULTS_DIR,
    console,
    fmt,
    fmt_ratio,
    is_smoke,
    percentile,
    print_table,
    ratio,
    run_cli,
    write_results,
)
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.dkg import DkgParticipant, KeyShareResult, ReshareParticipant
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.keyschedule import key_release_aad
from sealbridge.crypto.threshold_prf import (
    combine_contract_key,
    compute_prf_message,
    derive_contract_key_from_signature,
    is_valid_contract_partial,
)
from sealbridge.keyservice.threshold import ShareHolder, combine_released_key, open_partials

NAME = "keys"
SIZES = (4, 7, 16, 31)
SMOKE_SIZES = (4, 7)  # the smoke run: the two smallest committees
WORKER_ID = bytes([0x77]) * 32
BASELINE_INNER = 5  # baseline samples per repetition (it is ~100x faster)


def single_root_contract_key(root_key: bytes, contract_id: bytes) -> bytes:
    """The baseline: a contract key derived by one holder of the whole root key (HKDF)."""
    return derive_key(root_key, "sealbridge/contract-key/v1", salt=contract_id)


def _thresholds(n: int) -> list[tuple[str, int]]:
    return [("majority", n // 2 + 1), ("third", n // 3 + 1)]


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in samples_s]
    return {"median_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "n": float(len(ms))}


def _random_bytes(n: int) -> bytes:
    return os.urandom(n)


# --------------------------------------------------------------------------- DKG, resharing


def run_dkg(participants: list[int], threshold: int) -> tuple[dict[int, KeyShareResult], float]:
    """An honest joint-Feldman run; returns the results and the busiest participant's time."""
    busy = dict.fromkeys(participants, 0.0)
    nodes = {i: DkgParticipant(i, threshold, participants) for i in participants}
    dealt = {}
    for i in participants:
        start = time.perf_counter()
        dealt[i] = nodes[i].start(os.urandom(32))
        busy[i] += time.perf_counter() - start
    for dealer, (commitment, shares) in dealt.items():
        for j, share in shares.items():
            start = time.perf_counter()
            complaint = nodes[j].on_dealing(dealer, commitment, share)
            busy[j] += time.perf_counter() - start
            if complaint is not None:
                raise AssertionError(f"honest DKG produced a complaint: {complaint}")
    results = {}
    for i in participants:
        start = time.perf_counter()
        results[i] = nodes[i].finish(set(participants))
        busy[i] += time.perf_counter() - start
    return results, max(busy.values())


def run_reshare(
    old: dict[int, KeyShareResult], threshold: int, count: int
) -> tuple[dict[int, KeyShareResult], float]:
    """Reshare to a fresh committee of ``count`` (threshold ``threshold``) from the minimal
    qualified set (the first ``t_old`` old members); returns the busiest member's time."""
    public = next(iter(old.values())).public
    qualified = sorted(old)[: public.threshold]
    new_members = list(range(1, count + 1))
    busy: dict[str, float] = {}
    nodes = {j: ReshareParticipant(j, threshold, new_members, public) for j in new_members}
    dealt = {}
    for i in qualified:
        start = time.perf_counter()
        dealt[i] = ShareHolder(old[i]).deal_reshare(threshold, new_members, os.urandom(32))
        busy[f"old{i}"] = time.perf_counter() - start
    for j in new_members:
        busy[f"new{j}"] = 0.0
    for dealer, (commitment, shares) in dealt.items():
        for j, share in shares.items():
            start = time.perf_counter()
            complaint = nodes[j].on_dealing(dealer, commitment, share)
            busy[f"new{j}"] += time.perf_counter() - start
            if complaint is not None:
                raise AssertionError(f"honest resharing produced a complaint: {complaint}")
    results = {}
    for j in new_members:
        start = time.perf_counter()
        results[j] = nodes[j].finish(set(qualified))
        busy[f"new{j}"] += time.perf_counter() - start
    if results[1].group_public_key != public.group_public_key:
        raise AssertionError("resharing changed the group public key")
    return results, max(busy.values())


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _verify_all(public_shares: dict[int, bytes], cid: bytes, partials: list[Any]) -> bool:
    return all(is_valid_contract_partial(public_shares[p.index], cid, p) for p in partials)


# --------------------------------------------------------------------------- key derivation


_SAMPLE_KEYS = (
    "holder",
    "holder_slowest",
    "worker",
    "worker_optimistic",
    "total",
    "total_optimistic",
    "decrypt",
    "verify_partials",
    "combine",
    "verify_combined",
    "hkdf",
)


class ThresholdCase:
    """One ``t``-of-``n`` committee; :meth:`derive_once` times one contract-key derivation."""

    def __init__(self, results: dict[int, KeyShareResult], worker: ecies.Recipient) -> None:
        self.holders = {i: ShareHolder(r) for i, r in results.items()}
        self.public = self.holders[1].public
        self.worker = worker
        self.samples: dict[str, list[float]] = {k: [] for k in _SAMPLE_KEYS}

    def derive_once(self, rep: int, *, record: bool = True) -> None:
        public, worker = self.public, self.worker
        t = public.threshold
        indices = sorted(self.holders)
        cid = hashlib.sha256(b"bench contract %d" % rep).digest()
        chosen = [indices[(rep + k) % len(indices)] for k in range(t)]  # rotate the subset
        releases, holder_times = [], []
        for i in chosen:
            release, elapsed = _timed(
                self.holders[i].release_partial, cid, WORKER_ID, worker.public_key, _random_bytes
            )
            releases.append(release)
            holder_times.append(elapsed)
        opened = {"contract_id": cid, "worker_id": WORKER_ID}
        key, worker_s = _timed(
            combine_released_key, releases, worker.decrypt, group=public, **opened
        )
        key_opt, worker_opt_s = _timed(
            combine_released_key,
            releases,
            worker.decrypt,
            group=public,
            optimistic=True,
            **opened,
        )
        if key != key_opt:
            raise AssertionError("optimistic and verified combination disagree")
        # The same worker path, step by step, for the breakdown.
        partials, decrypt_s = _timed(open_partials, releases, worker.decrypt, **opened)
        ok, verify_s = _timed(_verify_all, public.public_shares, cid, partials)
        signature, combine_s = _timed(bls.combine, partials, t)
        message = compute_prf_message(cid)
        valid, verify_combined_s = _timed(bls.verify, public.group_public_key, message, signature)
        derived, hkdf_s = _timed(derive_contract_key_from_signature, cid, signature)
        if not (ok and valid and derived == key):
            raise AssertionError("step-by-step derivation disagrees with combine_released_key")
        if not record:
            return
        slowest = max(holder_times)
        samples = self.samples
        samples["holder"].extend(holder_times)
        samples["holder_slowest"].append(slowest)
        samples["worker"].append(worker_s)
        samples["worker_optimistic"].append(worker_opt_s)
        samples["total"].append(slowest + worker_s)
        samples["total_optimistic"].append(slowest + worker_opt_s)
        samples["decrypt"].append(decrypt_s)
        samples["verify_partials"].append(verify_s)
        samples["combine"].append(combine_s)
        samples["verify_combined"].append(verify_combined_s)
        samples["hkdf"].append(hkdf_s)

    def check_subsets_agree(self) -> None:
        """Two different subsets of holders derive the same key."""
        t, indices = self.public.threshold, sorted(self.holders)
        cid = b"bench subset check"
        keys = {
            combine_contract_key(
                cid,
                [self.holders[i].compute_partial(cid) for i in subset],
                threshold=t,
                group_public_key=self.public.group_public_key,
                public_shares=self.public.public_shares,
            )
            for subset in (indices[:t], indices[-t:])
        }
        if len(keys) != 1:
            raise AssertionError("two subsets of holders derived different keys")

    def summary(self) -> dict[str, Any]:
        return {k: _stats(v) for k, v in self.samples.items()}


class BaselineCase:
    """Today's path: one gatekeeper, HKDF of the root key, ECIES release, worker decrypt."""

    def __init__(self, worker: ecies.Recipient) -> None:
        self.root = os.urandom(32)
        self.worker = worker
        self.samples: dict[str, list[float]] = {"holder": [], "worker": [], "total": []}

    def derive_once(self, rep: int, *, record: bool = True) -> None:
        cid = hashlib.sha256(b"bench contract %d" % rep).digest()
        aad = key_release_aad(cid, WORKER_ID)
        start = time.perf_counter()
        blob = ecies.encrypt_to(
            self.worker.public_key, single_root_contract_key(self.root, cid), aad
        )
        middle = time.perf_counter()
        key = self.worker.decrypt(blob, aad)
        end = time.perf_counter()
        if key != single_root_contract_key(self.root, cid):
            raise AssertionError("baseline release did not round-trip")
        if record:
            self.samples["holder"].append(middle - start)
            self.samples["worker"].append(end - middle)
            self.samples["total"].append(end - start)

    def summary(self) -> dict[str, Any]:
        return {k: _stats(v) for k, v in self.samples.items()}


# --------------------------------------------------------------------------- run


def run(quick: bool = False) -> dict[str, Any]:
    reps = 8 if quick else 60
    setup_reps = 1 if quick else 3
    sizes: tuple[int, ...] = SIZES
    if is_smoke():
        reps, sizes = 2, SMOKE_SIZES
    console.rule(f"[bold]benchmark: contract keys from t-of-n gatekeepers ({reps} repetitions)")
    worker = ecies.Recipient(ecies.x25519_keypair()[0])
    configs: list[dict[str, Any]] = []
    cases: list[ThresholdCase] = []
    for n in sizes:
        participants = list(range(1, n + 1))
        for kind, t in _thresholds(n):
            dkg_total, dkg_busiest, reshare_total, reshare_busiest = [], [], [], []
            results: dict[int, KeyShareResult] = {}
            for _ in range(setup_reps):
                (results, busiest), elapsed = _timed(run_dkg, participants, t)
                dkg_total.append(elapsed)
                dkg_busiest.append(busiest)
                (_, r_busiest), r_elapsed = _timed(run_reshare, results, t, n)
                reshare_total.append(r_elapsed)
                reshare_busiest.append(r_busiest)
            case = ThresholdCase(results, worker)
            case.check_subsets_agree()
            cases.append(case)
            configs.append(
                {
                    "n": n,
                    "t": t,
                    "threshold_kind": kind,
                    "dkg_all_participants": _stats(dkg_total),
                    "dkg_busiest_participant": _stats(dkg_busiest),
                    "reshare_all_members": _stats(reshare_total),
                    "reshare_busiest_member": _stats(reshare_busiest),
                }
            )
            console.print(
                f"[dim]  n={n:>2} t={t:>2} ({kind}): DKG {statistics.median(dkg_total):.2f} s, "
                f"resharing {statistics.median(reshare_total):.2f} s[/]"
            )
    # Derivations: repetitions interleaved across configurations (and the baseline), so
    # that a burst of load on the machine spreads over all of them; repetition 0 warms up.
    base_case = BaselineCase(worker)
    everything: list[ThresholdCase | BaselineCase] = [base_case, *cases]
    for rep in range(reps + 1):
        for each in everything:
            for _ in range(BASELINE_INNER if each is base_case else 1):
                each.derive_once(rep, record=rep > 0)
    baseline = base_case.summary()
    base_total = baseline["total"]["median_ms"]
    for config, case in zip(configs, cases, strict=True):
        latency = case.summary()
        config["latency"] = latency
        config["total_vs_baseline"] = ratio(latency["total"]["median_ms"], base_total)
        config["total_optimistic_vs_baseline"] = ratio(
            latency["total_optimistic"]["median_ms"], base_total
        )
    _print(configs, baseline, reps, setup_reps)
    payload: dict[str, Any] = {
        "quick": quick,
        "config": {
            "sizes": list(sizes),
            "thresholds": "majority: n//2 + 1; third: n//3 + 1",
            "repetitions": reps,
            "setup_repetitions": setup_reps,
            "statistic": "median and p95 over repetitions (first repetition discarded); "
            "repetitions interleaved across configurations",
            "total": "slowest of the t holders (they run in parallel) + worker",
            "dkg": "all n participants computed in one process; busiest = max per-node CPU",
        },
        "baseline": {
            "label": "single gatekeeper: HKDF(root) + ECIES encrypt + worker decrypt",
            **baseline,
        },
        "configs": configs,
    }
    payload["results_file"] = str(write_results(NAME, payload))
    _plot(payload)
    return payload


def _print(
    configs: list[dict[str, Any]], baseline: dict[str, Any], reps: int, setup_reps: int
) -> None:
    rows = []
    for c in configs:
        lat = c["latency"]
        rows.append(
            [
                f"{c['t']}-of-{c['n']} ({c['threshold_kind']})",
                f"{fmt(lat['holder']['median_ms'], 3)} / {fmt(lat['holder']['p95_ms'], 3)}",
                f"{fmt(lat['worker']['median_ms'])} / {fmt(lat['worker']['p95_ms'])}",
                f"{fmt(lat['total']['median_ms'])} / {fmt(lat['total']['p95_ms'])}",
                fmt_ratio(c["total_vs_baseline"]),
                f"{fmt(lat['total_optimistic']['median_ms'])} / "
                f"{fmt(lat['total_optimistic']['p95_ms'])}",
                fmt(c["dkg_all_participants"]["median_ms"], 1),
                fmt(c["dkg_busiest_participant"]["median_ms"], 1),
                fmt(c["reshare_all_members"]["median_ms"], 1),
            ]
        )
    rows.append(
        [
            "1 gatekeeper, HKDF (baseline)",
            f"{fmt(baseline['holder']['median_ms'], 3)} / {fmt(baseline['holder']['p95_ms'], 3)}",
            f"{fmt(baseline['worker']['median_ms'], 3)} / {fmt(baseline['worker']['p95_ms'], 3)}",
            f"{fmt(baseline['total']['median_ms'], 3)} / {fmt(baseline['total']['p95_ms'], 3)}",
            "1.00×",
            "-",
            "-",
            "-",
            "-",
        ]
    )
    print_table(
        f"contract-key derivation, ms as p50 / p95 ({reps} keys; DKG and resharing: "
        f"median of {setup_reps})",
        [
            "gatekeepers",
            "holder: sign+ECIES",
            "worker: verified",
            "total",
            "total vs baseline",
            "total, optimistic",
            "DKG all n (ms)",
            "DKG per node (ms)",
            "reshare (ms)",
        ],
        rows,
    )
    breakdown = []
    for c in configs:
        lat = c["latency"]
        breakdown.append(
            [
                f"{c['t']}-of-{c['n']}",
                *(
                    fmt(lat[k]["median_ms"], 3)
                    for k in ("decrypt", "verify_partials", "combine", "verify_combined", "hkdf")
                ),
            ]
        )
    print_table(
        "worker side, step by step (p50 ms)",
        ["gatekeepers", "decrypt t", "verify t partials", "combine", "verify combined", "HKDF"],
        breakdown,
    )


def _plot(payload: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for kind, marker in (("majority", "o"), ("third", "s")):
        cs = [c for c in payload["configs"] if c["threshold_kind"] == kind]
        ns = [c["n"] for c in cs]
        ax.plot(
            ns,
            [c["latency"]["total"]["median_ms"] for c in cs],
            marker=marker,
            label=f"t = n//{2 if kind == 'majority' else 3} + 1, verified",
        )
        ax.plot(
            ns,
            [c["latency"]["total_optimistic"]["median_ms"] for c in cs],
            marker=marker,
            linestyle="--",
            label=f"t = n//{2 if kind == 'majority' else 3} + 1, optimistic",
        )
    ax.axhline(
        payload["baseline"]["total"]["median_ms"],
        color="grey",
        linestyle=":",
        label="1 gatekeeper, HKDF (baseline)",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = payload["config"]["sizes"]
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("gatekeepers n")
    ax.set_ylabel("contract-key derivation p50 (ms)")
    ax.set_title("threshold contract keys: slowest holder + worker combine", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = RESULTS_DIR / f"{NAME}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    console.print(f"[dim]figure written to {path}[/]")


if __name__ == "__main__":
    run_cli(run, __doc__)
