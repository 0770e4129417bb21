"""PNG figures beside the JSON results: ``python -m bench.plots`` (run_all calls it).

Each figure is drawn from the JSON a benchmark wrote, so it always shows the figures of
the same run, baseline included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from bench.common import RESULTS_DIR  # noqa: E402

RESULTS = RESULTS_DIR


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _subtitle(data: dict[str, Any]) -> str:
    m = data["machine"]
    return f"{m['cpu_count']} CPUs, Python {m['python']}, {m['date'][:16]}"


def plot_runtime(data: dict[str, Any]) -> Path:
    variants = data["variants"]
    labels = [v["label"].strip() for v in variants.values()]
    rates = [v["commands_per_s"] for v in variants.values()]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    bars = ax.barh(labels[::-1], rates[::-1], color="#4c72b0")
    ax.set_xscale("log")
    ax.set_xlabel("commands per second (log scale)")
    ax.set_title(f"runtime replay of recorded blocks\n{_subtitle(data)}", fontsize=10)
    for bar, rate in zip(bars, rates[::-1], strict=True):
        ax.text(rate, bar.get_y() + bar.get_height() / 2, f" {rate:,.0f}", va="center")
    return _save(fig, "runtime_replay")


def plot_query(data: dict[str, Any]) -> Path:
    variants = data["variants"]
    labels = [v["label"] for v in variants.values()]
    p50 = [v["p50_ms"] for v in variants.values()]
    p95 = [v["p95_ms"] for v in variants.values()]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    y = range(len(labels))
    ax.barh([i + 0.2 for i in y], p50[::-1], height=0.4, label="p50", color="#4c72b0")
    ax.barh([i - 0.2 for i in y], p95[::-1], height=0.4, label="p95", color="#dd8452")
    ax.set_yticks(list(y), labels[::-1], fontsize=8)
    ax.set_xlabel("latency (ms)")
    ax.legend()
    ax.set_title(f"signed query latency vs eth_call\n{_subtitle(data)}", fontsize=10)
    return _save(fig, "query_latency")


def plot_e2e(data: dict[str, Any]) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    throughput = data["throughput"]
    names = ["plain Vyper token", "sealbridge"]
    rates = [throughput["plain"]["tx_per_s"], throughput["sealbridge"]["tx_per_s"]]
    left.bar(names, rates, color=["#8c8c8c", "#4c72b0"])
    left.set_ylabel("transfers per second")
    left.set_title("throughput (same anvil, same run)", fontsize=10)
    samples = data["latency"].get("samples_ms", {})
    series = [samples.get("plain", []), samples.get("sealbridge", [])]
    if all(series):
        right.boxplot(series, tick_labels=names)
    right.set_ylabel("submit → visible to the receiver (ms)")
    right.set_title("latency", fontsize=10)
    fig.suptitle(f"encrypted transfers end to end\n{_subtitle(data)}", fontsize=10)
    return _save(fig, "e2e_transfers")


def plot_contracts(data: dict[str, Any]) -> Path:
    workloads = data["workloads"]
    names = [w["label"] for w in workloads.values()]
    kinds = [
        ("direct", "direct calls", "#c4c4c4"),
        ("plain", "plain executor (baseline)", "#8c8c8c"),
        ("wasm", "WebAssembly VM (fuel)", "#dd8452"),
        ("runtime", "full runtime", "#4c72b0"),
    ]
    e2e = (data.get("e2e") or {}).get("workloads", {})
    fig, axes = plt.subplots(1, 2 if e2e else 1, figsize=(12 if e2e else 8, 4.2), squeeze=False)
    left = axes[0][0]
    width = 0.8 / len(kinds)
    for i, (key, label, color) in enumerate(kinds):
        rates = [w["variants"][key]["commands_per_s"] for w in workloads.values()]
        xs = [x + (i - (len(kinds) - 1) / 2) * width for x in range(len(names))]
        left.bar(xs, rates, width=width, label=label, color=color)
    left.set_yscale("log")
    left.set_xticks(range(len(names)), [n.split(" (")[0] for n in names], fontsize=8)
    left.set_ylabel("commands per second (log scale)")
    left.set_title("in process", fontsize=10)
    left.legend(fontsize=7)
    if e2e:
        right = axes[0][1]
        keys = list(e2e)
        for i, (system, color) in enumerate((("plain", "#8c8c8c"), ("sealbridge", "#4c72b0"))):
            rates = [e2e[k][system]["commands_per_s"] for k in keys]
            xs = [x + (i - 0.5) * 0.4 for x in range(len(keys))]
            right.bar(xs, rates, width=0.4, color=color, label=f"{system} (until applied)")
        right.set_xticks(range(len(keys)), keys, fontsize=8)
        right.set_ylabel("commands per second")
        right.set_title("end to end on anvil (same run)", fontsize=10)
        right.legend(fontsize=7)
    fig.suptitle(f"reference contracts\n{_subtitle(data)}", fontsize=10)
    return _save(fig, "contracts")


def _save(fig: Any, name: str) -> Path:
    path = RESULTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> list[Path]:
    written = []
    for name, plot in (
        ("runtime_replay", plot_runtime),
        ("query_latency", plot_query),
        ("e2e_transfers", plot_e2e),
        ("contracts", plot_contracts),
    ):
        data = _load(name)
        if data is not None:
            written.append(plot(data))
    return written


if __name__ == "__main__":
    for path in main():
        print(path)
