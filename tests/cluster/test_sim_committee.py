"""Gatekeepers in the simulator: the committee host core -- the code the gatekeeper and
gateway processes run on the network -- with real committee enclaves, against the chain
model's GatekeeperCommittee rules, from a seed."""

from __future__ import annotations

from sealbridge.chain.eras import CommitteePhase
from sealbridge.sim.devnet import SimDevnet, SimDevnetSpec

GATEKEEPERS = SimDevnetSpec(storage_nodes=1, gatekeepers=3, rotation_timeout=20)


def start(seed: int | str) -> tuple[SimDevnet, list[int]]:
    devnet = SimDevnet(seed=seed, spec=GATEKEEPERS)
    addresses = sorted(devnet.gatekeepers)
    devnet.run(until=3.0)
    devnet.elect(addresses, 2)
    devnet.run(until=40.0)
    return devnet, addresses


def test_genesis_gives_every_gatekeeper_a_share_of_one_group_key() -> None:
    devnet, addresses = start(5)
    model = devnet.committee
    assert model.active == 1 and model.eras[1].record.phase == CommitteePhase.ACTIVE
    keys = set()
    for address in addresses:
        member = devnet.gatekeepers[address].member
        assert member.current_era == 1
        keys.add(member.get_active().public.group_public_key)
    assert keys == {model.eras[1].record.group_public_key}
    for address in addresses:
        core = devnet.gatekeepers[address].core
        assert core.dealings_posted == 1 and core.confirmations_posted == 1
        assert core.eras == {}  # every era it followed is done
        assert devnet.sim.get_disk(address)["committee"]  # the sealed state was persisted
    assert devnet.chain.admin_outcomes == [(devnet.chain.admin_outcomes[0][0], "")]


def test_a_resharing_keeps_the_group_key() -> None:
    devnet, addresses = start("reshare")
    group_key = devnet.committee.eras[1].record.group_public_key
    devnet.elect(addresses[1:], 2)
    devnet.run(until=80.0)
    model = devnet.committee
    assert model.active == 2 and model.eras[1].record.phase == CommitteePhase.RETIRED
    assert model.eras[2].record.group_public_key == group_key
    for address in addresses[1:]:
        assert devnet.gatekeepers[address].member.current_era == 2


def test_an_era_with_a_crashed_member_times_out_and_is_retried_without_it() -> None:
    devnet, addresses = start(9)
    group_key = devnet.committee.eras[1].record.group_public_key
    absent = addresses[0]
    devnet.sim.crash(absent, at=41.0)
    devnet.run(until=42.0)
    devnet.elect(addresses, 2)
    devnet.run(until=120.0)
    model = devnet.committee
    assert model.eras[2].record.phase == CommitteePhase.FAILED
    absent_id = devnet.gatekeepers[absent].committee_id
    assert model.penalties == {absent_id: 2}  # no dealing and no confirmation
    retry = model.eras[3].record
    assert retry.phase == CommitteePhase.ACTIVE and retry.previous_era == 1
    assert set(retry.members) == {devnet.gatekeepers[a].committee_id for a in addresses[1:]}
    assert retry.group_public_key == group_key
    restarts = sum(devnet.gatekeepers[a].core.restarts_sent for a in addresses[1:])
    assert restarts >= 1
    for address in addresses[1:]:
        assert devnet.gatekeepers[address].member.current_era == 3


def test_the_same_seed_gives_the_same_trace() -> None:
    digests = set()
    for _ in range(2):
        devnet, addresses = start(13)
        digests.add(devnet.sim.trace_digest())
    assert len(digests) == 1
