"""The consensus replica, driven directly by a tiny in-test message pump.

The pump delivers ``Send`` effects from one FIFO queue with zero latency and fires
timers in time order when the queue is empty; hooks drop, alter or capture messages, and
crashed nodes receive nothing. A test may also play a Byzantine primary itself: it
crashes replica 0, speaks with replica 0's node id, and combines the shares the honest
replicas send it with replica 0's key share. Real threshold BLS throughout; the replicas
of one test share a :class:`VerifyCache` (memoized pure verification), which keeps the
suite fast.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import pytest

from sealbridge.consensus import (
    Replica,
    Reply,
    Request,
    Status,
    Transfer,
    VerifyCache,
    build_cluster,
    deal_group_key,
    is_valid_commit_certificate,
)
from sealbridge.consensus.certs import (
    compute_batch_digest,
    compute_new_view_digest,
    compute_statement,
)
from sealbridge.consensus.config import ConsensusConfig, compute_safe_threshold
from sealbridge.consensus.errors import ConsensusConfigError, MalformedMessage
from sealbridge.consensus.messages import (
    Commit,
    CommittedBatch,
    FetchCommitted,
    NewView,
    Phase,
    Prepare,
    PrePrepare,
    SignShare,
    ViewChange,
    decode_message,
)
from sealbridge.core.effects import CancelTimer, Effect, Report, Send, SetTimer
from sealbridge.core.encoding import encode
from sealbridge.crypto import bls
from sealbridge.crypto.bls import KeyShare, PartialSignature, ThresholdKeySet

AS_ID = 7
CLIENT = 900
GENESIS = {"alice": 1_000, "bob": 1_000, "carol": 1_000}

Hook = Callable[[int, int, Any], Any]


class Pump:
    """Deliver effects between cores; FIFO, zero latency, timers in time order."""

    def __init__(self, replicas: Iterable[Replica]) -> None:
        self.nodes: dict[int, Replica] = {r.node_id: r for r in replicas}
        self.queue: deque[tuple[int, int, Any]] = deque()
        self.timers: dict[tuple[int, str], float] = {}
        self.now = 0.0
        self.reports: list[tuple[float, int, str, Any]] = []
        self.inbox: dict[int, list[tuple[int, Any]]] = defaultdict(list)
        self.crashed: set[int] = set()
        self.hooks: list[Hook] = []  # each returns the message (maybe altered) or None
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.on_start(self.now))

    def apply(self, node_id: int, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                for to in effect.to:
                    self.queue.append((node_id, to, effect.message))
            elif isinstance(effect, SetTimer):
                self.timers[(node_id, effect.name)] = self.now + effect.delay
            elif isinstance(effect, CancelTimer):
                self.timers.pop((node_id, effect.name), None)
            elif isinstance(effect, Report):
                self.reports.append((self.now, node_id, effect.kind, effect.data))

    def send(self, sender: int, to: Iterable[int], message: Any) -> None:
        for dest in to:
            self.queue.append((sender, dest, message))

    def step(self) -> None:
        sender, dest, message = self.queue.popleft()
        if dest in self.crashed:
            return
        for hook in self.hooks:
            message = hook(sender, dest, message)
            if message is None:
                return
        node = self.nodes.get(dest)
        if node is None:
            self.inbox[dest].append((sender, message))
            return
        self.apply(dest, node.on_message(sender, message, self.now))

    def fire_next_timer(self) -> bool:
        live = sorted((t, key) for key, t in self.timers.items() if key[0] not in self.crashed)
        if not live:
            return False
        when, key = live[0]
        del self.timers[key]
        self.now = max(self.now, when)
        self.apply(key[0], self.nodes[key[0]].on_timer(key[1], self.now))
        return True

    def run(
        self,
        until: Callable[[], bool] | None = None,
        *,
        max_time: float = 60.0,
        max_steps: int = 200_000,
    ) -> bool:
        for _ in range(max_steps):
            if until is not None and until():
                return True
            if self.queue:
                self.step()
                continue
            upcoming = [t for key, t in self.timers.items() if key[0] not in self.crashed]
            if not upcoming or min(upcoming) > max_time:
                return until() if until is not None else True
            self.fire_next_timer()
        raise AssertionError("pump did not settle")

    def drain(self) -> None:
        """Deliver everything in flight, firing no timer."""
        while self.queue:
            self.step()

    def get_reports(self, kind: str, node: int | None = None) -> list[tuple[float, int, Any]]:
        return [(t, n, d) for t, n, k, d in self.reports if k == kind and node in (None, n)]


def make_cluster(
    n: int,
    f: int,
    *,
    threshold: int | None = None,
    batch_size: int = 4,
    seed: bytes | None = None,
    single_phase: bool = False,
    speculative: bool = True,
) -> tuple[ConsensusConfig, list[Replica], ThresholdKeySet]:
    seed = seed or f"consensus-test-{n}-{f}-{threshold}".encode()
    key_set = deal_group_key(n, f=f, threshold=threshold, seed=seed)
    config = ConsensusConfig.create(
        AS_ID,
        [10 + i for i in range(n)],
        key_set,
        f=f,
        genesis=GENESIS,
        batch_size=batch_size,
        batch_timeout=0.01,
        view_change_timeout=1.0,
        single_phase=single_phase,
        speculative_certificates=speculative,
    )
    verifier = VerifyCache()
    replicas = [Replica(config, i, key_set.shares[i], verifier=verifier) for i in range(n)]
    return config, replicas, key_set


def transfer(client_seq: int, amount: int = 1, src: str = "alice", dst: str = "bob") -> Request:
    op = Transfer(src=src, dst=dst, amount=amount)
    return Request(as_id=AS_ID, client=CLIENT, client_seq=client_seq, operation=op)


def all_executed(replicas: Iterable[Replica], seq: int) -> Callable[[], bool]:
    group = list(replicas)
    return lambda: all(r.last_executed >= seq for r in group)


def assert_agree(replicas: Iterable[Replica]) -> None:
    """Same ledger and, wherever two replicas executed a sequence, the same batch."""
    group = list(replicas)
    digests = {r.ledger.compute_digest() for r in group}
    assert len(digests) == 1
    for seq in range(1, max(r.last_executed for r in group) + 1):
        assert len(get_executed_digests(group, seq)) <= 1, f"replicas disagree at seq {seq}"


def get_executed_digests(replicas: Iterable[Replica], seq: int) -> set[bytes]:
    """The digests the replicas executed at ``seq`` (those that did)."""
    found = (r.get_committed(seq) for r in replicas)
    return {committed.digest for committed in found if committed is not None}


def replies_for(pump: Pump, client_seq: int) -> list[Reply]:
    return [m for _, m in pump.inbox[CLIENT] if isinstance(m, Reply) and m.client_seq == client_seq]


# --- configuration ----------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    key_set = deal_group_key(4, f=1, seed=b"cfg")
    config = ConsensusConfig.create(AS_ID, [1, 2, 3, 4], key_set, f=1)
    assert config.threshold == compute_safe_threshold(4, 1) == 3
    assert config.view_change_quorum == 3 and config.is_safe_threshold
    assert config.get_primary_id(5) == 2 and config.get_index(3) == 2
    assert ConsensusConfig.create(AS_ID, range(7), deal_group_key(7, seed=b"x")).f == 1
    with pytest.raises(ConsensusConfigError):
        ConsensusConfig.create(AS_ID, [1, 2, 3], key_set, f=1)  # n < 3f + 1
    with pytest.raises(ConsensusConfigError):
        ConsensusConfig.create(AS_ID, [1, 1, 2, 3], key_set, f=1)  # duplicate ids
    assert config.speculative_certificates
    with pytest.raises(ConsensusConfigError, match="speculative_certificates"):
        ConsensusConfig.create(AS_ID, [1, 2, 3, 4], key_set, speculative_certificates=1)  # type: ignore[arg-type]
    with pytest.raises(ConsensusConfigError):
        deal_group_key(4, f=1, threshold=1)  # below f + 1
    low = deal_group_key(4, f=1, threshold=2, seed=b"low")
    assert not ConsensusConfig.create(AS_ID, [1, 2, 3, 4], low, f=1).is_safe_threshold
    with pytest.raises(ConsensusConfigError):
        Replica(config, 0, key_set.shares[1])  # share 2 is replica 1's
    other = deal_group_key(4, f=1, seed=b"other")
    with pytest.raises(ConsensusConfigError):
        Replica(config, 0, other.shares[0])  # not a share of this group key


def test_messages_round_trip_canonically() -> None:
    request = transfer(1)
    pp = PrePrepare(
        as_id=AS_ID, view=0, seq=1, digest=compute_batch_digest([request]), batch=[request]
    )
    assert decode_message(encode(pp)) == pp
    assert decode_message(encode(request)) == request
    with pytest.raises(MalformedMessage):
        decode_message(b"\x81\xa4type\xa4nope")
    with pytest.raises(MalformedMessage):
        decode_message(encode(pp)[:-3])


# --- normal case ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "f"), [(4, 1), (7, 2)])
def test_requests_commit_and_all_replicas_agree(n: int, f: int) -> None:
    config, replicas, key_set = make_cluster(n, f)
    pump = Pump(replicas)
    requests = [transfer(i, amount=10 + i) for i in range(6)]  # two batches of <= 4
    for request in requests:
        pump.send(CLIENT, [replicas[0].node_id], request)
    assert pump.run(all_executed(replicas, 2))
    pump.drain()
    assert_agree(replicas)
    for r in replicas:
        assert r.ledger.get_balance("alice") == 1_000 - sum(10 + i for i in range(6))
        assert r.view == 0 and r.status is Status.NORMAL
    # Every request got n equal replies; the batch carries a checkable certificate.
    for i in range(6):
        replies = replies_for(pump, i)
        assert len(replies) == n and len({encode(rep) for rep in replies}) == 1
        assert replies[0].outcome.is_ok
    committed = replicas[-1].get_committed(1)
    assert committed is not None
    assert is_valid_commit_certificate(
        key_set.group_public_key, AS_ID, 0, 1, committed.digest, committed.certificate
    )
    assert not is_valid_commit_certificate(
        key_set.group_public_key, AS_ID + 1, 0, 1, committed.digest, committed.certificate
    )
    # Reports: proposed at the primary, committed at every replica, same seqs.
    proposed = {d["seq"]: t for t, _, d in pump.get_reports("proposed")}
    assert set(proposed) == {1, 2}
    commits = pump.get_reports("committed")
    assert len(commits) == 2 * n
    assert all(t >= proposed[d["seq"]] for t, _, d in commits)
    assert sum(d["executed"] for _, _, d in commits) == 6 * n


@pytest.mark.parametrize(("n", "f"), [(4, 1), (7, 2)])
def test_single_phase_rounds_commit_with_one_certificate(n: int, f: int) -> None:
    """The paper's round: PrePrepare, COMMIT shares, Commit -- no prepare certificate."""
    config, replicas, key_set = make_cluster(n, f, single_phase=True)
    assert config.single_phase
    pump = Pump(replicas)
    seen: list[type] = []

    def record(sender: int, dest: int, message: Any) -> Any:
        seen.append(type(message))
        return message

    pump.hooks.append(record)
    for i in range(5):
        pump.send(CLIENT, [replicas[0].node_id], transfer(i, amount=3))
    assert pump.run(all_executed(replicas, 2))
    pump.drain()
    assert_agree(replicas)
    assert all(r.ledger.get_balance("alice") == 1_000 - 15 for r in replicas)
    assert Prepare not in seen and PrePrepare in seen and Commit in seen
    shares = [m for m in seen if m is SignShare]
    assert len(shares) == 2 * (n - 1)  # one round of shares per batch, none for PREPARE
    certified = {d["phase"] for _, _, d in pump.get_reports("certified")}
    assert certified == {"commit"}
    committed = replicas[1].get_committed(1)
    assert committed is not None
    assert is_valid_commit_certificate(
        key_set.group_public_key, AS_ID, 0, 1, committed.digest, committed.certificate
    )


def test_requests_to_a_backup_are_forwarded_and_the_batch_timer_flushes() -> None:
    _, replicas, _ = make_cluster(4, 1, batch_size=64)
    pump = Pump(replicas)
    pump.send(CLIENT, [replicas[2].node_id], transfer(1))
    assert pump.run(all_executed(replicas, 1))
    assert pump.now == pytest.approx(0.01)  # one batch timeout
    assert_agree(replicas)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda sig: bls.sign(b"\x01" * 32, b"something else"), id="wrong-message"),
        pytest.param(lambda sig: b"\x00" * 96, id="not-a-point"),
    ],
)
def test_invalid_shares_are_dropped_and_the_batch_still_commits(
    forge: Callable[[bytes], bytes],
) -> None:
    _, replicas, _ = make_cluster(4, 1)
    pump = Pump(replicas)
    liar = replicas[1]

    def corrupt(sender: int, dest: int, message: Any) -> Any:
        if sender == liar.node_id and isinstance(message, SignShare):
            bad = PartialSignature(index=message.share.index, signature=forge(b""))
            return msgspec.structs.replace(message, share=bad)
        return message

    pump.hooks.append(corrupt)
    for i in range(5):  # two batches
        pump.send(CLIENT, [r.node_id for r in replicas], transfer(i))
    assert pump.run(all_executed(replicas, 2))
    assert_agree(replicas)
    primary = replicas[0]
    assert primary.stats.bad_signers == {1}
    assert primary.stats.rejected["bad_share"] >= 2
    assert {d["signer"] for _, _, d in pump.get_reports("bad_share")} == {1}
    assert primary.view == 0  # no view change was needed


@pytest.mark.parametrize("single_phase", [False, True])
def test_a_collector_forwards_a_certificate_before_it_verifies_it(single_phase: bool) -> None:
    """Speculative certificates: the Commit leaves the collector while the collector itself
    has not yet verified (nor committed) it; the check runs right after, on a timer."""
    _, replicas, _ = make_cluster(4, 1, single_phase=single_phase)
    pump = Pump(replicas)
    primary = replicas[0]
    at_send: list[int] = []

    def watch(sender: int, dest: int, message: Any) -> Any:
        if sender == primary.node_id and isinstance(message, Commit):
            at_send.append(primary.last_executed)
        return message

    pump.hooks.append(watch)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(replicas, 1))
    assert_agree(replicas)
    assert at_send and at_send[0] == 0  # sent before the collector executed it
    assert primary.stats.rejected["bad_certificate"] == 0


def test_a_bad_speculative_certificate_is_refused_then_replaced() -> None:
    """One invalid share spoils the forwarded combination: every replica refuses it, the
    collector's check finds the liar, and the good certificate follows; nothing forks."""
    _, replicas, _ = make_cluster(4, 1, single_phase=True)
    pump = Pump(replicas)
    primary, liar = replicas[0], replicas[1]
    certificates: list[bytes] = []

    def corrupt(sender: int, dest: int, message: Any) -> Any:
        if sender == liar.node_id and isinstance(message, SignShare):
            bad = bls.partial_sign(KeyShare(index=message.share.index, secret=b"\x01" * 32), b"x")
            return msgspec.structs.replace(message, share=bad)
        if sender == primary.node_id and isinstance(message, Commit) and dest == 11:
            certificates.append(message.certificate)
        return message

    pump.hooks.append(corrupt)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(replicas, 1))
    assert_agree(replicas)
    assert len(certificates) == 2 and certificates[0] != certificates[1]
    assert all(r.stats.rejected["bad_certificate"] == 1 for r in replicas[1:])
    assert primary.stats.bad_signers == {1}
    assert primary.view == 0
    # the liar is checked before it counts from now on: the next batch forwards once
    certificates.clear()
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(2))
    assert pump.run(all_executed(replicas, 2))
    assert len(certificates) == 1


@pytest.mark.parametrize(("n", "f"), [(4, 1), (7, 2)])
def test_f_silent_replicas_do_not_stop_progress(n: int, f: int) -> None:
    _, replicas, _ = make_cluster(n, f)
    pump = Pump(replicas)
    pump.crashed = {r.node_id for r in replicas[-f:]}
    live = replicas[:-f]
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(live, 1))
    assert_agree(live)
    assert all(r.view == 0 for r in live)


def test_duplicate_requests_execute_once() -> None:
    _, replicas, _ = make_cluster(4, 1)
    pump = Pump(replicas)
    everyone = [r.node_id for r in replicas]
    request = transfer(1, amount=100)
    pump.send(CLIENT, everyone, request)
    pump.send(CLIENT, everyone, request)
    # Same key, different operation: still the same request.
    pump.send(
        CLIENT,
        everyone,
        msgspec.structs.replace(request, operation=Transfer(src="alice", dst="carol", amount=5)),
    )
    assert pump.run(all_executed(replicas, 1))
    pump.drain()
    pump.send(CLIENT, everyone, request)  # after it executed: answered again, not ordered
    pump.drain()
    for r in replicas:
        assert r.ledger.get_balance("alice") == 900
        assert r.ledger.get_balance("carol") == 1_000
        assert r.stats.executed_requests == 1
        assert r.last_executed == 1
    assert len(replies_for(pump, 1)) == 2 * 4  # one per replica, then again on the resend


# --- a test-driven Byzantine primary ----------------------------------------------------------


class ByzantinePrimary:
    """Replica 0's node id and key share in the hands of the test."""

    def __init__(self, pump: Pump, config: ConsensusConfig, key_set: ThresholdKeySet) -> None:
        self.pump = pump
        self.config = config
        self.key_set = key_set
        self.node_id = config.replica_ids[0]
        self.shares: dict[tuple[Phase, int, bytes], dict[int, PartialSignature]] = defaultdict(dict)
        del pump.nodes[self.node_id]  # what replica 0 is sent reaches the test
        pump.hooks.append(self._capture)

    def _capture(self, sender: int, dest: int, message: Any) -> Any:
        if dest == self.node_id and isinstance(message, SignShare):
            key = (message.phase, message.seq, message.digest)
            self.shares[key][message.share.index] = message.share
        return message

    def propose(self, to: Iterable[int], seq: int, batch: list[Request]) -> bytes:
        digest = compute_batch_digest(batch)
        pp = PrePrepare(as_id=AS_ID, view=0, seq=seq, digest=digest, batch=batch)
        self.pump.send(self.node_id, to, pp)
        return digest

    def own_share(self, phase: Phase, seq: int, digest: bytes) -> PartialSignature:
        message = compute_statement(phase, AS_ID, 0, seq, digest)
        return bls.partial_sign(self.key_set.shares[0], message)

    def certify(self, phase: Phase, seq: int, digest: bytes) -> bytes | None:
        """Combine what it holds (its own share included) if that reaches the threshold."""
        held = dict(self.shares[(phase, seq, digest)])
        held[1] = self.own_share(phase, seq, digest)
        if len(held) < self.config.threshold:
            return None
        return bls.combine(list(held.values()), self.config.threshold)


def test_a_byzantine_primary_cannot_execute_a_duplicate_twice() -> None:
    config, replicas, key_set = make_cluster(4, 1)
    pump = Pump(replicas)
    byz = ByzantinePrimary(pump, config, key_set)
    honest = [r.node_id for r in replicas[1:]]
    request = transfer(1, amount=50)
    digest = byz.propose(honest, 1, [request, request])
    pump.run()
    cert = byz.certify(Phase.PREPARE, 1, digest)
    assert cert is not None
    pump.send(
        byz.node_id, honest, Prepare(as_id=AS_ID, view=0, seq=1, digest=digest, certificate=cert)
    )
    pump.run()
    cert = byz.certify(Phase.COMMIT, 1, digest)
    assert cert is not None
    pump.send(
        byz.node_id, honest, Commit(as_id=AS_ID, view=0, seq=1, digest=digest, certificate=cert)
    )
    pump.run(all_executed(replicas[1:], 1))
    for r in replicas[1:]:
        assert r.ledger.get_balance("alice") == 950
        assert r.stats.duplicate_requests == 1


@pytest.mark.parametrize(("n", "f"), [(4, 1), (7, 2)])
def test_an_equivocating_primary_never_gets_two_batches_committed(n: int, f: int) -> None:
    config, replicas, key_set = make_cluster(n, f)
    pump = Pump(replicas)
    byz = ByzantinePrimary(pump, config, key_set)
    honest = replicas[1:]
    half = len(honest) // 2
    batch_a, batch_b = [transfer(1, 10)], [transfer(2, 20)]
    groups = {
        byz.propose([r.node_id for r in honest[:half]], 1, batch_a): honest[:half],
        byz.propose([r.node_id for r in honest[half:]], 1, batch_b): honest[half:],
    }
    pump.run(max_time=0.0)
    # Even with its own share on both sides, at most one digest gets a prepare
    # certificate (n = 4: the half of two; n = 7: neither).
    prepared = {d: byz.certify(Phase.PREPARE, 1, d) for d in groups}
    assert sum(c is not None for c in prepared.values()) == (1 if n == 4 else 0)
    withheld: dict[bytes, bytes] = {}
    for digest, cert in prepared.items():
        if cert is None:
            continue
        msg = Prepare(as_id=AS_ID, view=0, seq=1, digest=digest, certificate=cert)
        pump.send(byz.node_id, [r.node_id for r in groups[digest]], msg)
        pump.run(max_time=0.0)
        commit = byz.certify(Phase.COMMIT, 1, digest)
        assert commit is not None  # a valid commit certificate the primary keeps to itself
        withheld[digest] = commit
    # The requests are pending at every honest replica; the view changes and the new
    # primary orders them -- keeping the withheld commit at seq 1.
    for request in batch_a + batch_b:
        pump.send(CLIENT, [r.node_id for r in honest], request)
    pump.run(lambda: all(r.stats.executed_requests == 2 for r in honest), max_time=30.0)
    assert all(r.view >= 1 and r.stats.executed_requests == 2 for r in honest)
    assert_agree(honest)
    for digest, cert in withheld.items():
        assert all(r.get_committed(1).digest == digest for r in honest)  # type: ignore[union-attr]
        # Showing the withheld certificate now changes nothing either.
        late = Commit(as_id=AS_ID, view=0, seq=1, digest=digest, certificate=cert)
        pump.send(byz.node_id, [r.node_id for r in honest], late)
        pump.drain()
    assert not pump.get_reports("conflict")


def test_below_the_safe_threshold_two_certificates_are_possible() -> None:
    """The documented hazard of threshold f + 1: an equivocating primary and its own share
    make two commit certificates for one sequence."""
    config, replicas, key_set = make_cluster(4, 1, threshold=2)
    assert not config.is_safe_threshold
    pump = Pump(replicas)
    byz = ByzantinePrimary(pump, config, key_set)
    a = byz.propose([replicas[1].node_id], 1, [transfer(1, 10)])
    b = byz.propose([replicas[2].node_id, replicas[3].node_id], 1, [transfer(2, 20)])
    pump.run(max_time=0.0)
    certs = {}
    for digest, group in ((a, replicas[1:2]), (b, replicas[2:])):
        prepare = byz.certify(Phase.PREPARE, 1, digest)
        assert prepare is not None
        msg = Prepare(as_id=AS_ID, view=0, seq=1, digest=digest, certificate=prepare)
        pump.send(byz.node_id, [r.node_id for r in group], msg)
        pump.run(max_time=0.0)
        certs[digest] = byz.certify(Phase.COMMIT, 1, digest)
    assert all(
        c is not None and is_valid_commit_certificate(key_set.group_public_key, AS_ID, 0, 1, d, c)
        for d, c in certs.items()
    )


# --- view change ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "f"), [(4, 1), (7, 2)])
def test_a_crashed_primary_is_replaced_and_the_request_commits(n: int, f: int) -> None:
    _, replicas, _ = make_cluster(n, f)
    pump = Pump(replicas)
    pump.crashed.add(replicas[0].node_id)
    live = replicas[1:]
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(live, 1))
    assert_agree(live)
    assert all(r.view == 1 and r.status is Status.NORMAL for r in live)
    assert replicas[1].is_primary
    new_views = pump.get_reports("new_view")
    assert {n_ for _, n_, _ in new_views} == {r.node_id for r in live}
    assert pump.get_reports("committed")[0][2]["view"] == 1
    assert 1.0 <= pump.now < 2.0  # one view-change timeout


def test_a_batch_committed_only_at_the_old_primary_is_kept_by_the_new_view() -> None:
    """The commit certificate exists (at the crashed primary) but no Commit arrived: the
    new view must re-propose that very batch at that sequence. (The collector verifies
    before it forwards here, so it has committed when the Commit leaves.)"""
    _, replicas, _ = make_cluster(4, 1, speculative=False)
    pump = Pump(replicas)
    primary = replicas[0]

    def crash_before_commit(sender: int, dest: int, message: Any) -> Any:
        if sender == primary.node_id and isinstance(message, Commit):
            pump.crashed.add(primary.node_id)
            return None
        return message

    pump.hooks.append(crash_before_commit)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1, amount=77))
    live = replicas[1:]
    assert pump.run(all_executed(live, 1))
    old = primary.get_committed(1)
    assert old is not None and old.view == 0  # the crashed primary did commit it
    for r in live:
        new = r.get_committed(1)
        assert new is not None and new.view == 1 and new.digest == old.digest
        assert r.ledger.get_balance("alice") == 923
    assert_agree(replicas)
    reproposals = [d for _, _, d in pump.get_reports("proposed") if d["reproposal"]]
    assert [d["seq"] for d in reproposals] == [1]


def test_a_new_view_must_follow_its_signed_view_changes() -> None:
    """A Byzantine new primary cannot drop what an honest ViewChange reported, nor change
    a re-proposal, nor use fewer ViewChanges than the quorum."""
    config, replicas, key_set = make_cluster(4, 1)
    pump = Pump(replicas)
    seen: list[NewView] = []

    def crash_before_commit(sender: int, dest: int, message: Any) -> Any:
        if isinstance(message, NewView):
            seen.append(message)
        if sender == replicas[0].node_id and isinstance(message, Commit):
            pump.crashed.add(replicas[0].node_id)
            return None
        return message

    pump.hooks.append(crash_before_commit)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(replicas[1:], 1))
    genuine = seen[0]
    assert len(genuine.preprepares) == 1 and any(vc.entries for vc in genuine.view_changes)
    assert decode_message(encode(genuine)) == genuine  # the whole nested message round-trips
    primary_id = config.get_primary_id(1)

    def resign(vcs: list[ViewChange], pps: list[PrePrepare]) -> NewView:
        message = compute_new_view_digest(
            AS_ID, 1, [vc.signature for vc in vcs], [(pp.seq, pp.digest) for pp in pps]
        )
        signature = bls.partial_sign(key_set.shares[1], message).signature
        return NewView(as_id=AS_ID, view=1, view_changes=vcs, preprepares=pps, signature=signature)

    stripped = [msgspec.structs.replace(vc, entries=[]) for vc in genuine.view_changes]
    other = [transfer(5)]
    forged_pp = PrePrepare(
        as_id=AS_ID, view=1, seq=1, digest=compute_batch_digest(other), batch=other
    )
    forgeries = [
        resign(stripped, []),  # drops the prepared batch: honest signatures no longer match
        resign(list(genuine.view_changes), [forged_pp]),  # another batch at seq 1
        resign(list(genuine.view_changes[:2]), list(genuine.preprepares)),  # below quorum
        msgspec.structs.replace(genuine, signature=bls.sign(b"\x03" * 32, b"not the primary")),
    ]
    _, fresh, _ = make_cluster(4, 1)  # the same seed: the same keys, all still in view 0
    target = fresh[3]
    for forged in forgeries:
        assert target.on_message(primary_id, forged, 5.0) == []
        assert target.view == 0 and target.status is Status.NORMAL
    assert target.stats.rejected["bad_new_view"] == len(forgeries)
    effects = target.on_message(primary_id, genuine, 5.0)
    assert target.view == 1 and target.status is Status.NORMAL
    assert any(isinstance(e, Send) and isinstance(e.message, SignShare) for e in effects)


def test_the_f_plus_one_rule_makes_a_replica_join_a_higher_view() -> None:
    _, replicas, _ = make_cluster(4, 1)
    pump = Pump(replicas)
    pump.crashed.add(replicas[0].node_id)
    late = replicas[3]
    # Only replicas 1 and 2 see the request, so only they time out.
    pump.send(CLIENT, [replicas[1].node_id, replicas[2].node_id], transfer(1))
    held: list[tuple[int, int, Any]] = []

    def hold_second_view_change(sender: int, dest: int, message: Any) -> Any:
        if dest == late.node_id and isinstance(message, ViewChange) and not held:
            held.append((sender, dest, message))
            return None
        return message

    pump.hooks.append(hold_second_view_change)
    pump.run(lambda: bool(held) and not pump.queue, max_time=1.5)
    pump.run(max_time=0.0 + pump.now)
    # f = 1 ViewChange is not enough to follow...
    assert late.view == 0 and late.status is Status.NORMAL
    pump.hooks.clear()
    pump.queue.appendleft(held[0])
    # ... f + 1 = 2 are: it joins view 1 at once, which completes the quorum.
    assert pump.run(all_executed(replicas[1:], 1))
    joined = pump.get_reports("view_change", late.node_id)
    assert joined and joined[0][2] == {"view": 1, "from_view": 0, "reason": "f+1"}
    assert joined[0][0] < 2.0  # without waiting for a timeout of its own
    assert late.view == 1 and late.status is Status.NORMAL
    assert_agree(replicas[1:])


def test_a_replica_that_missed_the_new_view_asks_for_it() -> None:
    _, replicas, _ = make_cluster(4, 1)
    pump = Pump(replicas)
    pump.crashed.add(replicas[0].node_id)
    late = replicas[3]
    dropped: list[NewView] = []

    def drop_new_view(sender: int, dest: int, message: Any) -> Any:
        if dest == late.node_id and isinstance(message, NewView) and not dropped:
            dropped.append(message)
            return None
        return message

    pump.hooks.append(drop_new_view)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    # All three live replicas are needed (threshold 3): without the NewView replica 3
    # would stall view 1. The first message of view 1 it sees makes it ask the sender.
    assert pump.run(all_executed(replicas[1:], 1))
    assert dropped
    assert all(r.view == 1 for r in replicas[1:])
    assert pump.now < 2.0  # no second view change
    assert_agree(replicas[1:])


def test_a_lagging_replica_fetches_committed_batches() -> None:
    _, replicas, _ = make_cluster(4, 1, batch_size=1)
    pump = Pump(replicas)
    late = replicas[3]
    partitioned = [True]

    def partition(sender: int, dest: int, message: Any) -> Any:
        return None if partitioned[0] and late.node_id in (sender, dest) else message

    pump.hooks.append(partition)
    for i in range(3):
        pump.send(CLIENT, [replicas[0].node_id], transfer(i))
    assert pump.run(all_executed(replicas[:3], 3))
    assert late.last_executed == 0
    partitioned[0] = False
    pump.send(CLIENT, [replicas[0].node_id], transfer(3))
    assert pump.run(all_executed(replicas, 4))
    assert late.stats.fetches >= 1
    assert_agree(replicas)


def test_a_replica_that_lost_a_commit_probes_before_suspecting_the_primary() -> None:
    _, replicas, _ = make_cluster(4, 1)
    pump = Pump(replicas)
    late = replicas[3]

    def drop_commits_to_late(sender: int, dest: int, message: Any) -> Any:
        return None if dest == late.node_id and isinstance(message, Commit) else message

    pump.hooks.append(drop_commits_to_late)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(replicas, 1))
    # Its view-change timer expired, it asked f + 1 replicas for the next sequences
    # instead of starting a view change, and executed what they sent.
    assert 1.0 <= pump.now < 1.5
    assert late.stats.fetches == 1 and late.stats.view_changes == 0
    assert all(r.view == 0 for r in replicas)
    assert_agree(replicas)


def test_a_restarted_primary_arms_its_timers_again() -> None:
    """A driver forgets a crashed node's timers; on_start re-arms the batch timer, so the
    request the primary held when it went down is still proposed."""
    _, replicas, _ = make_cluster(4, 1, batch_size=64)
    pump = Pump(replicas)
    primary = replicas[0]
    pump.send(CLIENT, [primary.node_id], transfer(1))
    pump.drain()
    assert (primary.node_id, "consensus/batch") in pump.timers
    pump.timers.clear()  # crash and restart: the timers are gone, the state is kept
    pump.apply(primary.node_id, primary.on_start(pump.now))
    assert pump.run(all_executed(replicas, 1))
    assert primary.view == 0


# --- bad input changes nothing ----------------------------------------------------------------


def test_malformed_and_foreign_messages_change_nothing() -> None:
    config, replicas, key_set = make_cluster(4, 1)
    pump = Pump(replicas)
    pump.send(CLIENT, [r.node_id for r in replicas], transfer(1))
    assert pump.run(all_executed(replicas, 1))
    pump.drain()
    target = replicas[2]
    primary_id = replicas[0].node_id
    committed = target.get_committed(1)
    assert committed is not None
    req = transfer(2)
    batch = [req]
    digest = compute_batch_digest(batch)
    good_pp = PrePrepare(as_id=AS_ID, view=0, seq=2, digest=digest, batch=batch)
    cert = committed.certificate
    # for view 2, whose primary (replica 2, the target) checks ViewChanges completely
    unsigned_vc = ViewChange(as_id=AS_ID, new_view=2, replica=1, last_commit=None, entries=[])
    bad: list[tuple[int, Any, str]] = [
        (primary_id, msgspec.structs.replace(good_pp, view=1), "wrong_view"),
        (replicas[1].node_id, good_pp, "wrong_sender"),  # not the primary
        (CLIENT, good_pp, "wrong_sender"),  # not a replica at all
        (primary_id, msgspec.structs.replace(good_pp, as_id=AS_ID + 1), "foreign"),
        (primary_id, msgspec.structs.replace(good_pp, digest=b"\x00" * 32), "bad_digest"),
        (primary_id, msgspec.structs.replace(good_pp, seq=1), "out_of_window"),
        (primary_id, msgspec.structs.replace(good_pp, seq=1000), "out_of_window"),
        (primary_id, msgspec.structs.replace(good_pp, seq="2"), "malformed"),
        # a real certificate, claimed for another sequence / digest
        (
            primary_id,
            Commit(as_id=AS_ID, view=0, seq=2, digest=digest, certificate=cert),
            "bad_certificate",
        ),
        (
            primary_id,
            Commit(as_id=AS_ID, view=0, seq=2, digest=digest, certificate=b"x"),
            "bad_certificate",
        ),
        (
            primary_id,
            CommittedBatch(
                as_id=AS_ID, view=0, seq=2, digest=digest, certificate=cert, batch=batch
            ),
            "bad_certificate",
        ),
        (
            primary_id,
            Prepare(as_id=AS_ID, view=0, seq=2, digest=digest, certificate=cert),
            "not_expected",
        ),  # no PrePrepare for it
        (
            replicas[1].node_id,
            SignShare(
                as_id=AS_ID,
                phase=Phase.PREPARE,
                view=0,
                seq=2,
                digest=digest,
                share=PartialSignature(index=2, signature=b"\x00" * 96),
            ),
            "wrong_sender",
        ),  # replica 2 is not the collector
        (
            replicas[1].node_id,
            msgspec.structs.replace(unsigned_vc, signature=b"\x01" * 96),
            "bad_view_change",
        ),
        (replicas[3].node_id, unsigned_vc, "wrong_sender"),  # replica 1's ViewChange
        (
            primary_id,
            NewView(as_id=AS_ID, view=1, view_changes=[], preprepares=[], signature=b"\x01" * 96),
            "bad_new_view",
        ),
        (primary_id, FetchCommitted(as_id=AS_ID, seqs=list(range(1000))), "malformed"),
        (
            CLIENT,
            Request(as_id=AS_ID, client=CLIENT, client_seq=-1, operation=req.operation),
            "malformed",
        ),
        (CLIENT, Request(as_id=AS_ID, client=CLIENT, client_seq=3, operation="steal"), "malformed"),  # type: ignore[arg-type]
        (CLIENT, "hello", "malformed"),
        (
            primary_id,
            Reply(
                as_id=AS_ID,
                view=0,
                seq=1,
                client=CLIENT,
                client_seq=1,
                outcome=committed_outcome(target),
            ),
            "malformed",
        ),
    ]
    before = target.get_state_summary()
    for sender, message, code in bad:
        counts = dict(target.stats.rejected)
        assert target.on_message(sender, message, pump.now) == []
        assert target.get_state_summary() == before, code
        assert target.stats.rejected[code] == counts.get(code, 0) + 1, code
    assert target.ledger.get_balance("bob") == 1_001


def committed_outcome(replica: Replica) -> Any:
    reply = replica.get_reply(CLIENT, 1)
    assert reply is not None
    return reply.outcome


def test_build_cluster_is_deterministic_from_its_seed() -> None:
    config_a, replicas_a = build_cluster(1, [5, 6, 7, 8], f=1, seed=b"same", genesis=GENESIS)
    config_b, _ = build_cluster(1, [5, 6, 7, 8], f=1, seed=b"same", genesis=GENESIS)
    assert config_a.group_key == config_b.group_key
    assert [r.node_id for r in replicas_a] == [5, 6, 7, 8]
    assert replicas_a[0].ledger.get_balance("alice") == 1_000


# --- seeded random faults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "f", "seed"), [(4, 1, 1), (4, 1, 2), (4, 1, 3), (7, 2, 4), (7, 2, 5)]
)
def test_random_loss_reordering_and_a_lying_replica_never_diverge(
    n: int, f: int, seed: int
) -> None:
    """10% message loss for the first 8 s, local reordering, one replica that corrupts its
    shares, certificates and ViewChanges, the primary crashing at 2 s when f allows it, and
    a client that re-sends unanswered requests: replicas never disagree, supply is kept,
    and every request is executed everywhere in the end."""
    rng = random.Random(seed)
    _, replicas, _ = make_cluster(n, f, batch_size=2)
    pump = Pump(replicas)
    liar = replicas[-1]
    crashing = replicas[0] if f >= 2 else None
    honest = [r for r in replicas if r is not liar]
    live = [r for r in honest if r is not crashing]
    step = pump.step

    def reordering_step() -> None:
        pump.queue.rotate(-rng.randrange(min(len(pump.queue), 5)))
        step()

    def faults(sender: int, dest: int, message: Any) -> Any:
        if pump.now < 8.0 and rng.random() < 0.1 and not isinstance(message, Reply):
            return None
        if sender == liar.node_id and rng.random() < 0.6:
            if isinstance(message, SignShare):
                forged = bls.sign(b"\x02" * 32, b"junk")
                share = PartialSignature(index=message.share.index, signature=forged)
                return msgspec.structs.replace(message, share=share)
            if isinstance(message, ViewChange):
                return msgspec.structs.replace(message, new_view=message.new_view + 3)
            if isinstance(message, Commit | Prepare):
                return msgspec.structs.replace(message, seq=message.seq + 1)
        return message

    pump.step = reordering_step  # type: ignore[method-assign]
    pump.hooks.append(faults)
    total = 10

    def done() -> bool:
        return all(r.get_reply(CLIENT, i) is not None for r in live for i in range(total))

    for round_ in range(80):
        if round_ < 5:
            for i in range(2 * round_, 2 * round_ + 2):
                pump.send(CLIENT, [r.node_id for r in replicas], transfer(i))
        if crashing is not None and pump.now >= 2.0:
            pump.crashed.add(crashing.node_id)
        target = pump.now + 1.5
        pump.run(done, max_time=target)
        pump.now = max(pump.now, target)
        if done() and round_ >= 4:
            break
        for i in range(min(total, 2 * round_ + 2)):
            if any(r.get_reply(CLIENT, i) is None for r in live):
                pump.send(CLIENT, [r.node_id for r in replicas], transfer(i))
    assert done()
    assert_agree(live)
    for seq in range(1, max(r.last_executed for r in honest) + 1):
        assert len(get_executed_digests(honest, seq)) == 1
    assert all(r.ledger.get_total_supply() == 3_000 for r in honest)
    assert all(r.stats.executed_requests == total for r in live)
    assert not pump.get_reports("conflict")
