"""The gatekeeper committee on a real devnet: a threshold root key no gatekeeper holds,
rotated to a new set by resharing (contract keys unchanged, retired shares erased), and a
rotation that times out, is restarted without the unresponsive member and penalizes it.

One devnet of its own (three gatekeepers, 2 of 3), so the rotations do not disturb the
session devnet the other e2e tests share. Each test starts from whatever era is active
(the genesis era, or one a test before it left), so they pass in any order.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbridge.client.api import Client
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.devnet.launcher import (
    kill_node,
    rotate_committee,
    start_devnet,
    start_node,
    stop_devnet,
)
from sealbridge.evm.committee import CommitteePhase, GatekeeperCommittee
from sealbridge.net.http import NodeClient, NodeRefused

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("committee")
    start_devnet(path, workers=2, gatekeepers=3, committee_threshold=2)
    try:
        yield path
    finally:
        stop_devnet(path)


def status(url: str) -> dict[str, Any]:
    return dict(NodeClient(url).get_json("/v1/status"))


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def roots(client: Client, contract_id: bytes) -> list[tuple[str, int]]:
    out = []
    for worker in client.state.workers:
        (entry,) = [
            c
            for c in status(worker.url)["contracts"]
            if c["contract_id"] == "0x" + contract_id.hex()
        ]
        out.append((str(entry["state_root"]), int(entry["commands_applied"])))
    return out


def test_rotation_keeps_contract_keys_and_erases_retired_shares(home: Path) -> None:
    client = Client.from_home(home)
    committee = GatekeeperCommittee(client.chain, client.state.committee_address)
    current = committee.get_current_era()
    active = committee.get_era(current)  # the genesis era when this test runs first
    assert active is not None and active.phase == CommitteePhase.ACTIVE
    # the new set: every gatekeeper but one member of the active era, which retires
    by_id = {from_hex(g.node_id, size=32): g for g in client.state.gatekeepers}
    retired = sorted((by_id[m] for m in active.members), key=lambda g: g.name)[0]
    members = [g for g in client.state.gatekeepers if g.name != retired.name]
    token = client.deploy("token", as_user="alice")
    token_id = to_hex(token.contract_id)
    published = client.mgmt.contract_registry.get_contract(token.contract_id)
    assert published is not None and published.wrapped_key == b""  # no key on chain
    r = client.call(token_id, "mint", {"to": "alice", "amount": 50}, as_user="alice")
    client.wait_applied(token.contract_id, r.block_number)

    record = rotate_committee(home, [g.name for g in members], 2)
    assert record.group_public_key == active.group_public_key
    # each host acts on RotationReady when it next reads the chain: wait for all of them
    for entry in client.state.gatekeepers:
        wait_for(
            lambda url=entry.url: status(url)["committee"]["current_era"] == record.era,
            f"{entry.name} to see era {record.era} active",
        )
    gone = status(retired.url)["committee"]
    assert not gone["holds_share"] and gone["eras"][str(current)] == "retired"
    for member in members:
        held = status(member.url)["committee"]
        assert held["holds_share"] and held["current_era"] == record.era
    # the retired gatekeeper releases nothing any more
    worker = client.state.workers[1]
    kill_node(home, worker.name)
    shutil.rmtree(Path(home) / "devnet" / worker.name / "state")
    # a worker that lost its state gets the same contract key from the new committee: it
    # installs (the key matches the public key published under the old one) and replays
    start_node(home, worker.name)
    client.refresh_state()
    wait_for(lambda: len(set(roots(client, token.contract_id))) == 1, "the workers to agree")
    assert status(client.state.workers[1].url)["diverged"] == {}
    answer = client.query(token_id, "balance", {"owner": "alice"}, as_user="alice", worker=1)
    assert answer.answer.result == 50
    # a contract deployed after the rotation is published by a current member
    second = client.deploy("token", as_user="bob")
    record2 = client.mgmt.contract_registry.get_contract(second.contract_id)
    assert record2 is not None
    assert record2.gatekeeper_id in {from_hex(m.node_id) for m in members}
    with NodeClient(retired.url) as gk, pytest.raises(NodeRefused) as refused:
        gk.post("/v1/group", b"")
    assert refused.value.remote_code == "committee_unavailable"


def test_a_rotation_that_times_out_is_restarted_without_the_unresponsive(home: Path) -> None:
    client = Client.from_home(home)
    committee = GatekeeperCommittee(client.chain, client.state.committee_address)
    current = committee.get_current_era()
    group = committee.get_era(current)
    assert group is not None
    absent = client.state.gatekeepers[0]  # elected into the new era, never answers
    kill_node(home, absent.name)
    absent_id = from_hex(absent.node_id, size=32)
    before = committee.get_penalties(absent_id)
    ids = [from_hex(g.node_id, size=32) for g in client.state.gatekeepers]
    admin = client.chain.get_dev_key(0)
    receipt = committee.elect(ids, 2, admin)
    (elected,) = [a for n, a in committee.decode_events(receipt) if n == "EraElected"]
    era = int(elected["era"])
    # the two live members deal and confirm; the third never does: the era cannot finish
    # both live members must have confirmed before the deadline is mined past: a
    # confirmation sent after it is refused, and the retry era keeps only confirmed members
    for index in (1, 2):
        wait_for(
            lambda i=index: committee.has_confirmed(era, ids[i]),
            f"gatekeeper-{index + 1} to confirm",
        )
    record = committee.get_era(era)
    assert record is not None and record.phase == CommitteePhase.ELECTED
    client.chain.mine(max(1, record.deadline - client.chain.get_block_number() + 1))
    # a live gatekeeper restarts it; the retry era has only the two live members
    wait_for(lambda: committee.get_current_era() > current, "the retry era to become active")
    retry = committee.get_era(committee.get_current_era())
    assert retry is not None and retry.previous_era == current
    assert set(retry.members) == set(ids[1:])
    assert retry.group_public_key == group.group_public_key
    assert committee.get_penalties(absent_id) > before
    failed = committee.get_era(era)
    assert failed is not None and failed.phase == CommitteePhase.FAILED
    start_node(home, absent.name)
    # back, it catches up with the eras it missed: the retry era's activation retires its
    # old share, so it serves no retired era's group keys to the workers (before the fix
    # it stayed in the old era and stalled the installs of every worker asking it first)
    client.refresh_state()
    back = next(g for g in client.state.gatekeepers if g.name == absent.name)
    wait_for(
        lambda: status(back.url)["committee"]["current_era"] == retry.era,
        f"{absent.name} to catch up with era {retry.era}",
    )
    assert not status(back.url)["committee"]["holds_share"]
    with NodeClient(back.url) as gk, pytest.raises(NodeRefused) as refused:
        gk.post("/v1/group", b"")
    assert refused.value.remote_code == "committee_unavailable"
