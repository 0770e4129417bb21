# mypy: disable-error-code="type-arg"
"""K-Means clustering of points that several parties contribute privately.

A fixed group of parties pools points that none of them may see from the others; the
contract clusters the union and reveals only the result -- the centroids and the size of
each cluster -- and to each party the clusters of its own points.

The computation is deterministic (the same on every executor, and reproducible outside):
the dataset in *canonical order* is the parties' points, parties in the order given at
setup, each party's points in the order it contributed them. Lloyd's algorithm then
starts from the first ``k`` points of that dataset as centroids and runs exactly
``iterations`` rounds; a round assigns every point to the nearest centroid by squared
Euclidean distance (ties go to the lowest centroid index) and moves each centroid to the
mean of its points (a centroid without points stays where it is). The sizes and the
assignments reported are those of the last round, the ones the final centroids are the
means of.

Commands
--------
* ``setup(parties, k, iterations, dims)`` (init) -- ``parties``: 1 to 16 distinct 32-byte
  keys; ``k``: 1 to 32 clusters; ``iterations``: 1 to 100 rounds; ``dims``: 1 to 32
  coordinates per point.
* ``contribute(points)`` -- a party only: a non-empty list of points, each a list of
  ``dims`` numbers (ints or floats, finite, at most 1e100 in magnitude), stored as floats
  after the party's earlier points. At most 2000 points in all. Returns how many points
  the caller has contributed.
* ``compute()`` -- a party only, once at least ``k`` points are in: runs the clustering on
  every point contributed so far and stores the result (a later ``compute`` after more
  contributions replaces it). Returns the result, as ``result()`` does. Sandboxed, it
  costs about ``points * k * iterations * (2 * dims + 4)`` gas: large problems need a gas
  limit above the default (the executor accepts up to 50 million).

Queries and who may read them
-----------------------------
* ``result()`` -- the parties only (``not_computed`` before a compute):
  ``{"centroids": [[float] * dims] * k, "sizes": [int] * k, "points": n}``.
* ``my_assignments(party)`` -- only ``party``: the cluster index of each of its points, in
  its contribution order, from the last compute (so it covers only the points the party
  had contributed by then).
* ``contributed(party)`` -- only ``party``: how many points it has contributed.
* ``config()`` -- anyone: ``{"parties", "k", "iterations", "dims", "points"}``.

Errors: ``bad_arguments``, ``not_authorized``, ``too_many_points``,
``not_enough_points``, ``not_computed``, ``already_initialized``.
"""

from sealbridge.contracts.sdk import (
    ANYONE,
    Contract,
    Map,
    Value,
    arg,
    command,
    init,
    query,
    require,
)

ACCOUNT_SIZE = 32
MAX_PARTIES = 16
MAX_K = 32
MAX_ITERATIONS = 100
MAX_DIMS = 32
MAX_POINTS = 2000
MAX_MAGNITUDE = 1e100


def bounded_int(value: int, low: int, high: int, what: str) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        what + " must be an int from " + str(low) + " to " + str(high),
        "bad_arguments",
    )


def to_point(raw: list, dims: int) -> list:
    """One contributed point as a list of ``dims`` floats; refuse anything else."""
    require(
        isinstance(raw, list) and len(raw) == dims,
        "each point must be a list of " + str(dims) + " numbers",
        "bad_arguments",
    )
    point = []
    for value in raw:
        require(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            "coordinates must be numbers",
            "bad_arguments",
        )
        number = float(value)
        # NaN and the infinities fail ``x - x == 0``.
        require(
            number - number == 0.0 and abs(number) <= MAX_MAGNITUDE,
            "coordinates must be finite and at most 1e100 in magnitude",
            "bad_arguments",
        )
        point.append(number)
    return point


def nearest(point: list, centroids: list) -> int:
    """The index of the centroid nearest ``point`` (squared distance; ties: lowest)."""
    best = 0
    best_distance = -1.0
    for index, centroid in enumerate(centroids):
        distance = 0.0
        for d in range(len(point)):
            delta = point[d] - centroid[d]
            distance += delta * delta
        if best_distance < 0.0 or distance < best_distance:
            best = index
            best_distance = distance
    return best


def lloyd(points: list, k: int, iterations: int, dims: int) -> list:
    """Lloyd's algorithm from the first ``k`` points: ``[centroids, sizes, assignment]``."""
    centroids = [list(points[i]) for i in range(k)]
    sizes = [0] * k
    assignment = [0] * len(points)
    remaining = iterations
    while remaining > 0:
        remaining -= 1
        sums = [[0.0] * dims for j in range(k)]
        sizes = [0] * k
        position = 0
        for point in points:
            j = nearest(point, centroids)
            assignment[position] = j
            position += 1
            sizes[j] += 1
            total = sums[j]
            for d in range(dims):
                total[d] += point[d]
        for j in range(k):
            if sizes[j] > 0:
                centroids[j] = [value / sizes[j] for value in sums[j]]
    return [centroids, sizes, assignment]


class KMeans(Contract):
    """K-Means over the union of the parties' private points."""

    parties = Value(list, default=[])
    k = Value(int, default=0)
    iterations = Value(int, default=0)
    dims = Value(int, default=0)
    point_count = Value(int, default=0)
    points = Map(bytes, list, default=[])  # party -> its points, in contribution order
    assignments = Map(bytes, list, default=[])  # party -> cluster of each of its points
    centroids = Value(list, default=[])
    sizes = Value(list, default=[])
    computed_points = Value(int, default=0)

    def is_party(self, caller: bytes) -> bool:
        """The readers rule of ``result``: the parties, and only them."""
        return caller in self.parties

    @init
    def setup(self, parties: list, k: int, iterations: int, dims: int) -> None:
        require(self.k == 0, "the clustering is already set up", "already_initialized")
        require(
            isinstance(parties, list) and 1 <= len(parties) <= MAX_PARTIES,
            "parties must be a list of 1 to " + str(MAX_PARTIES) + " accounts",
            "bad_arguments",
        )
        seen = []
        for party in parties:
            require(
                isinstance(party, bytes) and len(party) == ACCOUNT_SIZE,
                "each party must be a 32-byte account",
                "bad_arguments",
            )
            require(party not in seen, "parties must be distinct", "bad_arguments")
            seen.append(party)
        bounded_int(k, 1, MAX_K, "k")
        bounded_int(iterations, 1, MAX_ITERATIONS, "iterations")
        bounded_int(dims, 1, MAX_DIMS, "dims")
        self.parties = seen
        self.k = k
        self.iterations = iterations
        self.dims = dims

    @command
    def contribute(self, points: list) -> int:
        caller = self.env.caller
        require(self.is_party(caller), "only a party may contribute", "not_authorized")
        require(
            isinstance(points, list) and len(points) > 0,
            "points must be a non-empty list",
            "bad_arguments",
        )
        total = self.point_count + len(points)
        require(
            total <= MAX_POINTS,
            "at most " + str(MAX_POINTS) + " points in all",
            "too_many_points",
        )
        dims = self.dims
        mine = list(self.points[caller])
        for raw in points:
            mine.append(to_point(raw, dims))
        self.points[caller] = mine
        self.point_count = total
        return len(mine)

    @command
    def compute(self) -> dict:
        require(self.is_party(self.env.caller), "only a party may compute", "not_authorized")
        k = self.k
        require(
            self.point_count >= k,
            "at least k = " + str(k) + " points are needed",
            "not_enough_points",
        )
        parties = self.parties
        dataset = []
        counts = []
        for party in parties:
            mine = self.points[party]
            dataset.extend(mine)
            counts.append(len(mine))
        found = lloyd(dataset, k, self.iterations, self.dims)
        assignment = found[2]
        start = 0
        for position, party in enumerate(parties):
            count = counts[position]
            if count > 0:
                self.assignments[party] = assignment[start : start + count]
            start += count
        self.centroids = found[0]
        self.sizes = found[1]
        self.computed_points = len(dataset)
        return self.result()

    @query(readers=is_party)
    def result(self) -> dict:
        require(self.computed_points > 0, "nothing computed yet", "not_computed")
        return {"centroids": self.centroids, "sizes": self.sizes, "points": self.computed_points}

    @query(readers=arg("party"))
    def my_assignments(self, party: bytes) -> list:
        return self.assignments[party]

    @query(readers=arg("party"))
    def contributed(self, party: bytes) -> int:
        return len(self.points[party])

    @query(readers=ANYONE)
    def config(self) -> dict:
        return {
            "parties": self.parties,
            "k": self.k,
            "iterations": self.iterations,
            "dims": self.dims,
            "points": self.point_count,
        }
