"""The reference K-Means: private contributions, Lloyd's algorithm checked against NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.unit.contract_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    KMEANS,
    MINTER,
    MODE_IDS,
    MODES,
    STRANGER,
    World,
    account,
    contract_id,
    make_world,
)

PARTIES = [ALICE, BOB, CAROL]


@pytest.fixture(params=MODES, ids=MODE_IDS)
def world(request: pytest.FixtureRequest) -> World:
    return make_world(request.param)


def numpy_lloyd(
    data: np.ndarray, k: int, iterations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference Lloyd's algorithm: start from the first k points, fixed rounds, ties to
    the lowest index, an empty cluster keeps its centroid. (centroids, sizes, assignment)
    of the last round."""
    centroids = data[:k].copy()
    assignment = np.zeros(len(data), dtype=np.int64)
    for _ in range(iterations):
        distances = ((data[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        assignment = distances.argmin(axis=1)  # the first minimum: the lowest index
        for j in range(k):
            members = assignment == j
            if members.any():
                centroids[j] = data[members].mean(axis=0)
    sizes = np.bincount(assignment, minlength=k)
    return centroids, sizes, assignment


def blobs(rng: np.random.Generator, n: int, dims: int, centers: int) -> np.ndarray:
    middles = rng.uniform(-50.0, 50.0, size=(centers, dims))
    labels = rng.integers(0, centers, size=n)
    return middles[labels] + rng.normal(0.0, 3.0, size=(n, dims))


def run_clustering(
    world: World,
    cid: bytes,
    parties: list[bytes],
    shares: list[np.ndarray],
    batch: int,
) -> dict[str, Any]:
    """Each party contributes its share in batches; then the first party computes."""
    for party, share in zip(parties, shares, strict=True):
        rows = share.tolist()
        for start in range(0, len(rows), batch):
            world.ok(cid, "contribute", party, points=rows[start : start + batch])
    result = world.ok(cid, "compute", parties[0])
    assert result == world.read(cid, "result", parties[-1])
    return dict(result)


CASES = [
    # (seed, dims, centers, k, iterations, points per party)
    (1, 2, 3, 3, 10, [40, 25, 35]),
    (2, 3, 4, 4, 8, [60, 1, 20, 19]),
    (3, 2, 5, 6, 12, [30, 30]),
    (4, 3, 2, 5, 6, [10, 50, 5, 5, 30]),
    (5, 2, 4, 4, 1, [100]),
]


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-{c[1]}d" for c in CASES])
def test_matches_numpy(world: World, case: tuple[int, int, int, int, int, list[int]]) -> None:
    seed, dims, centers, k, iterations, counts = case
    rng = np.random.default_rng(seed)
    data = blobs(rng, sum(counts), dims, centers)
    parties = [account(100 + n) for n in range(len(counts))]
    cid = contract_id(f"kmeans-{seed}")
    setup = world.deploy(
        "kmeans", cid, MINTER, parties=parties, k=k, iterations=iterations, dims=dims
    )
    assert setup.ok, setup.message
    bounds = np.cumsum([0, *counts])
    shares = [data[bounds[i] : bounds[i + 1]] for i in range(len(counts))]
    # contribute in an order other than the canonical one: the dataset order must not care
    order = list(reversed(range(len(counts))))
    for i in order:
        run_rows = shares[i].tolist()
        for start in range(0, len(run_rows), 7):
            world.ok(cid, "contribute", parties[i], points=run_rows[start : start + 7])
    result = world.ok(cid, "compute", parties[0])
    assert result == world.read(cid, "result", parties[-1])

    centroids, sizes, assignment = numpy_lloyd(data, k, iterations)
    assert result["points"] == len(data)
    assert np.allclose(np.array(result["centroids"]), centroids, rtol=1e-9, atol=1e-12)
    assert result["sizes"] == sizes.tolist()
    for i, party in enumerate(parties):
        mine = world.read(cid, "my_assignments", party, party=party)
        assert mine == assignment[bounds[i] : bounds[i + 1]].tolist()
        assert world.read(cid, "contributed", party, party=party) == counts[i]


def test_an_empty_cluster_keeps_its_centroid(world: World) -> None:
    # The first two points coincide: centroid 1 starts on centroid 0 and every tie goes to
    # 0, so in the first round cluster 1 is empty and its centroid stays put.
    rng = np.random.default_rng(7)
    data = np.vstack([[[1.0, 2.0], [1.0, 2.0]], rng.normal(0.0, 5.0, size=(30, 2))])
    cid = contract_id("kmeans-empty")
    assert world.deploy("kmeans", cid, MINTER, parties=[DAVE], k=3, iterations=1, dims=2).ok
    result = run_clustering(world, cid, [DAVE], [data], batch=100)
    centroids, sizes, _ = numpy_lloyd(data, 3, 1)
    assert sizes[1] == 0
    assert result["sizes"] == sizes.tolist()
    assert result["centroids"][1] == [1.0, 2.0]
    assert np.allclose(np.array(result["centroids"]), centroids, rtol=1e-9, atol=1e-12)


def test_integer_coordinates_and_recompute(world: World) -> None:
    assert world.ok(KMEANS, "contribute", ALICE, points=[[0, 0], [10, 10]]) == 2
    stored = world.executor.contracts[KMEANS].storage.snapshot().maps["points"]
    assert stored == [(ALICE, [[0.0, 0.0], [10.0, 10.0]])]
    assert all(type(x) is float for point in stored[0][1] for x in point)
    world.ok(KMEANS, "contribute", BOB, points=[[1, 1], [9.5, 11]])
    first = world.ok(KMEANS, "compute", BOB)
    assert first == {"centroids": [[0.5, 0.5], [9.75, 10.5]], "sizes": [2, 2], "points": 4}
    assert world.read(KMEANS, "my_assignments", ALICE, party=ALICE) == [0, 1]
    assert world.read(KMEANS, "my_assignments", BOB, party=BOB) == [0, 1]
    # more points; the result moves only on the next compute
    world.ok(KMEANS, "contribute", CAROL, points=[[0, 2]])
    assert world.read(KMEANS, "result", CAROL) == first
    assert world.read(KMEANS, "my_assignments", CAROL, party=CAROL) == []
    second = world.ok(KMEANS, "compute", CAROL)
    assert second["points"] == 5
    assert second["sizes"] == [3, 2]
    assert world.read(KMEANS, "my_assignments", CAROL, party=CAROL) == [0]
    assert world.read(KMEANS, "config", STRANGER) == {
        "parties": PARTIES,
        "k": 2,
        "iterations": 5,
        "dims": 2,
        "points": 5,
    }


def test_setup_refusals(world: World) -> None:
    good: dict[str, Any] = {"parties": [ALICE, BOB], "k": 2, "iterations": 3, "dims": 2}
    bad_setups = [
        {**good, "parties": []},
        {**good, "parties": [ALICE, ALICE]},
        {**good, "parties": [ALICE, BOB[:31]]},
        {**good, "parties": [ALICE, "bob"]},
        {**good, "parties": [account(200 + n) for n in range(17)]},
        {**good, "parties": ALICE},
        {**good, "k": 0},
        {**good, "k": 33},
        {**good, "iterations": 0},
        {**good, "iterations": 101},
        {**good, "dims": 0},
        {**good, "dims": 33},
        {**good, "dims": 2.0},
    ]
    for n, args in enumerate(bad_setups):
        cid = contract_id(f"bad-kmeans-{n}")
        outcome = world.deploy("kmeans", cid, MINTER, **args)
        assert outcome.error == "bad_arguments", args
        assert world.executor.contracts[cid].storage.snapshot().values == {}
    before = world.snapshot()
    twice = world.executor.run_command(
        KMEANS, "setup", good, caller=MINTER, block_number=1, seed=b"s", is_init=True
    )
    assert twice.error == "already_initialized"
    assert world.snapshot() == before


def test_contribute_refusals(world: World) -> None:
    world.refused("not_authorized", KMEANS, "contribute", DAVE, points=[[1.0, 2.0]])
    world.refused("not_authorized", KMEANS, "contribute", MINTER, points=[[1.0, 2.0]])
    bad_points: list[Any] = [
        [],
        [[1.0]],
        [[1.0, 2.0, 3.0]],
        [[1.0, 2.0], [3.0]],
        [[1.0, "2"]],
        [[1.0, True]],
        [[1.0, None]],
        [[1.0, float("nan")]],
        [[float("inf"), 0.0]],
        [[-float("inf"), 0.0]],
        [[1e101, 0.0]],
        [{"x": 1.0}],
        "points",
    ]
    for points in bad_points:
        world.refused("bad_arguments", KMEANS, "contribute", ALICE, points=points)
    # arguments arrive in canonical form: a tuple is a list by then
    assert world.ok(KMEANS, "contribute", ALICE, points=[(1.0, 2.0)]) == 1
    assert world.read(KMEANS, "contributed", ALICE, party=ALICE) == 1


def test_point_cap(world: World) -> None:
    world.ok(KMEANS, "contribute", ALICE, points=[[float(n), 0.0] for n in range(1500)])
    world.refused("too_many_points", KMEANS, "contribute", BOB, points=[[0.0, 1.0]] * 501)
    world.ok(KMEANS, "contribute", BOB, points=[[0.0, 1.0]] * 500)
    world.refused("too_many_points", KMEANS, "contribute", CAROL, points=[[0.0, 1.0]])
    assert world.read(KMEANS, "config", STRANGER)["points"] == 2000


def test_compute_refusals_and_readers(world: World) -> None:
    world.denied("not_computed", KMEANS, "result", ALICE)
    world.ok(KMEANS, "contribute", ALICE, points=[[0.0, 0.0]])
    world.refused("not_enough_points", KMEANS, "compute", ALICE)
    world.ok(KMEANS, "contribute", BOB, points=[[5.0, 5.0]])
    world.refused("not_authorized", KMEANS, "compute", DAVE)
    world.ok(KMEANS, "compute", ALICE)
    world.denied("not_a_reader", KMEANS, "result", DAVE)
    world.denied("not_a_reader", KMEANS, "result", MINTER)
    world.denied("not_a_reader", KMEANS, "contributed", BOB, party=ALICE)
    world.denied("not_a_reader", KMEANS, "my_assignments", BOB, party=ALICE)
    assert world.read(KMEANS, "contributed", STRANGER, party=STRANGER) == 0
    assert world.read(KMEANS, "result", CAROL)["sizes"] == [1, 1]
