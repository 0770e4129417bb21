"""GatekeeperCommittee against a REAL anvil node: genesis key generation and resharing
with the real DKG (dealings, encrypted shares and threshold signatures are real), every
refusal with its reason, the timeout/restart path, and the gas of dealings and
confirmations.

Anvil is required: if the binary is missing, the module fixture raises AnvilNotFound and
every test here fails with that message (nothing is skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from sealbridge.chain.abi import Role, compute_address, recover_signer, sign_digest
from sealbridge.chain.errors import ChainConfigError, TransactionReverted
from sealbridge.core.ids import keccak
from sealbridge.crypto import bls, dkg, ecies
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.committee import (
    DEALING_TAG,
    READY_TAG,
    CommitteePhase,
    GatekeeperCommittee,
    compute_array_hash,
    compute_dealing_digest,
    compute_ready_digest,
    deploy_committee,
)
from sealbridge.evm.management import ManagementContracts, deploy_management

MIN_STAKE = 10**15
MEASUREMENT = b"\x07" * 32
TIMEOUT = 500  # blocks; tests of the deadline deploy their own committee
FAKE_KEY = b"\xa1" * 48  # a group key where the cryptography is not the point
SHARE_SIZE = ecies.OVERHEAD + 32  # an ECIES-encrypted 32-byte scalar


@dataclass
class Gatekeeper:
    """A stand-in for a gatekeeper TEE: identity, X25519 encryption key, enclave key."""

    node_id: bytes = field(default_factory=lambda: os.urandom(32))
    enclave_key: bytes = field(default_factory=lambda: os.urandom(32))
    dh_keys: tuple[bytes, bytes] = field(default_factory=ecies.x25519_keypair)
    quote: bytes = field(default_factory=lambda: b"quote:" + os.urandom(64))

    @property
    def address(self) -> str:
        return compute_address(self.enclave_key)

    @property
    def encryption_key(self) -> bytes:
        return self.dh_keys[1]

    def sign(self, digest: bytes) -> bytes:
        return sign_digest(digest, self.enclave_key)


class Env:
    def __init__(self, adapter: ChainAdapter) -> None:
        self.adapter = adapter
        self.admin = adapter.dev_keys[0]
        self.host = adapter.dev_keys[1]
        self.relay = adapter.dev_keys[2]
        addresses = deploy_management(adapter, self.admin, MIN_STAKE)
        self.registry = ManagementContracts(adapter, addresses).node_registry
        self.attestor = Gatekeeper()
        self.registry.register_genesis_gatekeeper(
            self.attestor.node_id,
            self.attestor.encryption_key,
            self.attestor.address,
            MEASUREMENT,
            self.expiry(),
            self.attestor.quote,
            self.admin,
        )

    def expiry(self, delta: int = 7200) -> int:
        return self.adapter.get_block("latest").timestamp + delta

    def gatekeeper(self, *, role: int = Role.GATEKEEPER, lifetime: int = 7200) -> Gatekeeper:
        node = Gatekeeper()
        expiry = self.expiry(lifetime)
        approval = self.attestor.sign(
            self.registry.compute_registration_digest(
                role=role,
                identity_key=node.node_id,
                encryption_key=node.encryption_key,
                enclave_address=node.address,
                quote_hash=keccak(node.quote),
                measurement=MEASUREMENT,
                expiry=expiry,
            )
        )
        self.registry.register(
            role,
            node.node_id,
            node.encryption_key,
            node.address,
            MEASUREMENT,
            expiry,
            self.attestor.node_id,
            approval,
            node.quote,
            self.host,
            stake=MIN_STAKE,
        )
        return node

    def gatekeepers(self, count: int) -> list[Gatekeeper]:
        return [self.gatekeeper() for _ in range(count)]

    def committee(
        self, timeout: int = TIMEOUT, role: Role = Role.GATEKEEPER
    ) -> GatekeeperCommittee:
        address = deploy_committee(self.adapter, self.admin, self.registry.address, timeout, role)
        return GatekeeperCommittee(self.adapter, address)


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode(chain_id=31337)
    node.start()  # AnvilNotFound here fails every test with a clear message
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def env(anvil: AnvilNode) -> Env:
    return Env(anvil.adapter())


# ----------------------------------------------------------------------------- helpers


def ids(nodes: Sequence[Gatekeeper]) -> list[bytes]:
    return [n.node_id for n in nodes]


def sorted_ids(nodes: Sequence[Gatekeeper]) -> list[bytes]:
    return sorted(ids(nodes))


def names(events: Sequence[tuple[str, dict[str, object]]]) -> list[str]:
    return [name for name, _ in events]


def dummy_dealing(threshold: int, members: int) -> tuple[list[bytes], list[bytes]]:
    commitments = [os.urandom(48) for _ in range(threshold)]
    shares = [os.urandom(SHARE_SIZE) for _ in range(members)]
    return commitments, shares


def deal(
    env: Env,
    c: GatekeeperCommittee,
    era: int,
    dealer: Gatekeeper,
    commitments: Sequence[bytes],
    shares: Sequence[bytes],
    *,
    signer: Gatekeeper | None = None,
) -> TxReceipt:
    digest = c.compute_dealing_digest(era, dealer.node_id, commitments, shares)
    signature = (signer or dealer).sign(digest)
    return c.post_dealing(era, dealer.node_id, commitments, shares, signature, env.relay)


def deal_dummy(env: Env, c: GatekeeperCommittee, era: int, dealer: Gatekeeper) -> TxReceipt:
    record = c.get_era(era)
    assert record is not None
    commitments, shares = dummy_dealing(record.threshold, len(record.members))
    return deal(env, c, era, dealer, commitments, shares)


def confirm(
    env: Env,
    c: GatekeeperCommittee,
    era: int,
    member: Gatekeeper,
    key: bytes,
    qualified: Sequence[bytes],
    *,
    signer: Gatekeeper | None = None,
) -> TxReceipt:
    digest = c.compute_ready_digest(era, member.node_id, key, qualified)
    signature = (signer or member).sign(digest)
    return c.confirm_ready(era, member.node_id, key, qualified, signature, env.relay)


def activate_genesis(
    env: Env, c: GatekeeperCommittee, members: Sequence[Gatekeeper], threshold: int
) -> int:
    """Elect and key a genesis era with stand-in dealings (the first ``threshold``
    members deal, all confirm FAKE_KEY); return the era."""
    era = c.get_era_count() + 1
    c.elect(ids(members), threshold, env.admin)
    for dealer in members[:threshold]:
        deal_dummy(env, c, era, dealer)
    for member in members:
        confirm(env, c, era, member, FAKE_KEY, sorted_ids(members[:threshold]))
    assert c.get_current_era() == era
    return era


def reverts(expected: str, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    with pytest.raises(TransactionReverted) as info:
        fn(*args, **kwargs)
    assert info.value.reason == expected


def share_aad(c: GatekeeperCommittee, era: int, dealer_id: bytes, index: int) -> bytes:
    """Binds an encrypted share to its committee, era, dealer and recipient index."""
    return bytes.fromhex(c.address[2:]) + era.to_bytes(8, "big") + dealer_id + bytes([index])


# ----------------------------------------------------------------------------- deploy, digests


def test_deploy_and_initial_state(env: Env) -> None:
    c = env.committee()
    assert c.get_admin() == env.adapter.address_of(env.admin)
    assert c.get_node_registry() == env.registry.address
    assert c.get_rotation_timeout() == TIMEOUT
    assert (c.get_current_era(), c.get_pending_era(), c.get_era_count()) == (0, 0, 0)
    assert c.get_era(1) is None
    with pytest.raises(ChainConfigError):
        deploy_committee(env.adapter, env.admin, env.registry.address, 0)


def test_digests_are_bound_to_contract_and_chain(env: Env) -> None:
    c = env.committee()
    dealer = os.urandom(32)
    commitments, shares = dummy_dealing(3, 4)
    bound = c.compute_dealing_digest(7, dealer, commitments, shares)
    free = compute_dealing_digest(
        committee=c.address,
        chain_id=env.adapter.chain_id,
        era=7,
        dealer_id=dealer,
        commitments=commitments,
        shares=shares,
    )
    assert bound == free
    assert bound != compute_dealing_digest(
        committee=c.address,
        chain_id=env.adapter.chain_id + 1,
        era=7,
        dealer_id=dealer,
        commitments=commitments,
        shares=shares,
    )
    assert bound != c.compute_dealing_digest(7, dealer, commitments, shares[::-1])
    assert compute_array_hash([b"a", b"bc"]) != compute_array_hash([b"ab", b"c"])
    ready = compute_ready_digest(
        committee=c.address,
        chain_id=env.adapter.chain_id,
        era=7,
        member_id=dealer,
        group_public_key=FAKE_KEY,
        qualified=[b"\x01" * 32],
    )
    assert ready == c.compute_ready_digest(7, dealer, FAKE_KEY, [b"\x01" * 32])
    assert DEALING_TAG != READY_TAG
    gk = Gatekeeper()
    assert recover_signer(ready, gk.sign(ready)) == gk.address
    with pytest.raises(ChainConfigError):
        c.compute_ready_digest(7, b"short", FAKE_KEY, [])


# ----------------------------------------------------------------------------- real key lifecycle


def test_genesis_and_resharing_with_real_dkg(env: Env) -> None:
    c = env.committee()
    start = env.adapter.get_block_number() + 1
    old = env.gatekeepers(4)
    parts = [1, 2, 3, 4]
    receipt = c.elect(ids(old), 3, env.admin)
    [(name, elected)] = c.decode_events(receipt)
    assert name == "EraElected"
    assert elected["era"] == 1 and elected["members"] == ids(old) and elected["threshold"] == 3
    assert elected["dealers"] == ids(old) and elected["dealer_threshold"] == 0
    assert elected["previous_era"] == 0
    assert elected["deadline"] == receipt.block_number + TIMEOUT
    record = c.get_era(1)
    assert record is not None and record.phase == CommitteePhase.ELECTED and record.is_genesis
    assert c.get_pending_era() == 1 and c.get_current_era() == 0
    assert c.get_member_index(1, old[2].node_id) == 3

    # every member deals: Feldman commitments in clear, shares encrypted to each member
    seeds = {g.node_id: os.urandom(32) for g in old}
    for i, dealer in enumerate(old, 1):
        commitment, shares = dkg.compute_dealing(i, 3, parts, seeds[dealer.node_id])
        sealed = [
            ecies.encrypt_to(
                old[j - 1].encryption_key, shares[j], share_aad(c, 1, dealer.node_id, j)
            )
            for j in parts
        ]
        deal(env, c, 1, dealer, commitment.commitments, sealed)
        assert c.has_dealt(1, dealer.node_id)
        assert c.get_dealing_hash(1, dealer.node_id) == c.compute_dealing_digest(
            1, dealer.node_id, commitment.commitments, sealed
        )

    # each member reads the dealings from the chain, checks its share and finishes with
    # the qualified set {1, 2, 4} (dealer 3 dealt but is left out)
    posted = c.get_events(start, name="DealingPosted")
    assert len(posted) == 4
    qualified_indices = {1, 2, 4}
    qualified = sorted(old[i - 1].node_id for i in qualified_indices)
    results: dict[bytes, dkg.KeyShareResult] = {}
    for j, member in enumerate(old, 1):
        participant = dkg.DkgParticipant(j, 3, parts)
        participant.start(seeds[member.node_id])
        for _, ev in posted:
            i = record.get_dealer_index(ev["dealer_id"])
            if i == j:
                continue
            share = ecies.decrypt_with(
                member.dh_keys[0], ev["shares"][j - 1], share_aad(c, 1, ev["dealer_id"], j)
            )
            commitment = dkg.DealingCommitment(dealer=i, threshold=3, commitments=ev["commitments"])
            assert participant.on_dealing(i, commitment, share) is None
        results[member.node_id] = participant.finish(qualified_indices)
    group_key = results[old[0].node_id].group_public_key
    assert all(r.group_public_key == group_key for r in results.values())

    for member in old[:3]:
        receipt = confirm(env, c, 1, member, group_key, qualified)
        assert names(c.decode_events(receipt)) == ["ReadyConfirmed"]
        assert c.has_confirmed(1, member.node_id)
    assert c.get_current_era() == 0
    receipt = confirm(env, c, 1, old[3], group_key, qualified)
    events = c.decode_events(receipt)
    assert names(events) == ["ReadyConfirmed", "RotationReady"]
    ready = events[1][1]
    assert ready == {"era": 1, "group_public_key": group_key, "members": ids(old), "threshold": 3}
    assert (c.get_current_era(), c.get_pending_era()) == (1, 0)
    record = c.get_era(1)
    assert record is not None and record.phase == CommitteePhase.ACTIVE
    assert record.group_public_key == group_key and record.confirmation_count == 4

    message = b"contract-key request"
    partials = [bls.partial_sign(results[g.node_id].key_share, message) for g in old[1:]]
    assert bls.verify(group_key, message, bls.combine(partials, 3))

    # resharing to an overlapping set: old[1:] stay, two join; old[0..2] deal (3 = t)
    new = old[1:] + env.gatekeepers(2)
    new_parts = [1, 2, 3, 4, 5]
    start = env.adapter.get_block_number() + 1
    receipt = c.elect(ids(new), 3, env.admin)
    [(_, elected)] = c.decode_events(receipt)
    assert elected["era"] == 2 and elected["dealers"] == ids(old)
    assert elected["dealer_threshold"] == 3 and elected["previous_era"] == 1
    record2 = c.get_era(2)
    assert record2 is not None and not record2.is_genesis and record2.required_dealings == 3
    for dealer in old[:3]:
        i = record2.get_dealer_index(dealer.node_id)
        commitment, shares = dkg.compute_reshare_dealing(
            results[dealer.node_id].key_share, 3, new_parts, os.urandom(32)
        )
        assert commitment.dealer == i
        sealed = [
            ecies.encrypt_to(
                new[j - 1].encryption_key, shares[j], share_aad(c, 2, dealer.node_id, j)
            )
            for j in new_parts
        ]
        deal(env, c, 2, dealer, commitment.commitments, sealed)
    posted = c.get_events(start, name="DealingPosted")
    qualified = sorted_ids(old[:3])
    new_results: dict[bytes, dkg.KeyShareResult] = {}
    for j, member in enumerate(new, 1):
        resharer = dkg.ReshareParticipant(j, 3, new_parts, results[old[0].node_id].public)
        for _, ev in posted:
            i = record2.get_dealer_index(ev["dealer_id"])
            share = ecies.decrypt_with(
                member.dh_keys[0], ev["shares"][j - 1], share_aad(c, 2, ev["dealer_id"], j)
            )
            commitment = dkg.DealingCommitment(dealer=i, threshold=3, commitments=ev["commitments"])
            assert resharer.on_dealing(i, commitment, share) is None
        new_results[member.node_id] = resharer.finish({1, 2, 3})
        assert new_results[member.node_id].group_public_key == group_key

    # a different group key is refused, even with a valid signature
    reverts(
        "group key differs from the previous era's",
        confirm,
        env,
        c,
        2,
        new[0],
        bls.public_key(bls.keygen()[0]),
        qualified,
    )
    for member in new[:4]:
        confirm(env, c, 2, member, group_key, qualified)
    receipt = confirm(env, c, 2, new[4], group_key, qualified)
    events = c.decode_events(receipt)
    assert names(events) == ["ReadyConfirmed", "RotationReady", "EraRetired"]
    assert events[1][1]["members"] == ids(new) and events[1][1]["group_public_key"] == group_key
    assert events[2][1] == {"era": 1, "members": ids(old)}
    assert c.get_current_era() == 2
    retired = c.get_era(1)
    assert retired is not None and retired.phase == CommitteePhase.RETIRED
    record2 = c.get_era(2)
    assert record2 is not None and record2.phase == CommitteePhase.ACTIVE
    assert record2.group_public_key == group_key
    assert c.get_penalties(old[3].node_id) == 0  # a missing dealing is penalized only on restart

    partials = [bls.partial_sign(new_results[g.node_id].key_share, message) for g in new[2:]]
    assert bls.verify(group_key, message, bls.combine(partials, 3))
    reverts("era is not pending", confirm, env, c, 1, old[0], group_key, qualified)


# ----------------------------------------------------------------------------- refusals


def test_elect_refusals(env: Env) -> None:
    c = env.committee()
    gks = env.gatekeepers(3)
    worker = env.gatekeeper(role=Role.WORKER)
    reverts("only admin", c.elect, ids(gks), 2, env.host)
    reverts("no members", c.elect, [], 1, env.admin)
    reverts("threshold out of range", c.elect, ids(gks), 0, env.admin)
    reverts("threshold out of range", c.elect, ids(gks), 4, env.admin)
    unregistered = os.urandom(32)
    reverts(
        "member is not an active node of the role", c.elect, ids(gks) + [unregistered], 2, env.admin
    )
    reverts(
        "member is not an active node of the role",
        c.elect,
        ids(gks) + [worker.node_id],
        2,
        env.admin,
    )
    reverts("duplicate member", c.elect, ids(gks) + [gks[1].node_id], 2, env.admin)
    c.elect(ids(gks), 2, env.admin)
    reverts("a rotation is pending", c.elect, ids(gks), 2, env.admin)
    with pytest.raises(ChainConfigError):
        c.elect([os.urandom(32) for _ in range(33)], 2, env.admin)


def test_dealing_refusals(env: Env) -> None:
    c = env.committee()
    gks = env.gatekeepers(4)
    outsider = env.gatekeeper()
    c.elect(ids(gks), 3, env.admin)
    dealer = gks[0]
    commitments, shares = dummy_dealing(3, 4)

    reverts("unknown era", deal, env, c, 2, dealer, commitments, shares)
    reverts("not a dealer of the era", deal, env, c, 1, outsider, commitments, shares)
    reverts("wrong number of commitments", deal, env, c, 1, dealer, commitments[:2], shares)
    reverts(
        "wrong number of commitments",
        deal,
        env,
        c,
        1,
        dealer,
        commitments + [os.urandom(48)],
        shares,
    )
    reverts("wrong number of shares", deal, env, c, 1, dealer, commitments, shares[:3])
    reverts("wrong number of shares", deal, env, c, 1, dealer, commitments, shares + [b"x"])
    short = [commitments[0], commitments[1], commitments[2][:47]]
    reverts("commitment must be 48 bytes", deal, env, c, 1, dealer, short, shares)
    reverts("not signed by the dealer", deal, env, c, 1, dealer, commitments, shares, signer=gks[1])
    # a signature over the same dealing for another committee, or another era
    other = env.committee()
    digest = other.compute_dealing_digest(1, dealer.node_id, commitments, shares)
    reverts(
        "not signed by the dealer",
        c.post_dealing,
        1,
        dealer.node_id,
        commitments,
        shares,
        dealer.sign(digest),
        env.relay,
    )
    digest = c.compute_dealing_digest(2, dealer.node_id, commitments, shares)
    sig = dealer.sign(digest)
    reverts(
        "not signed by the dealer",
        c.post_dealing,
        1,
        dealer.node_id,
        commitments,
        shares,
        sig,
        env.relay,
    )
    reverts(
        "invalid signature",
        c.post_dealing,
        1,
        dealer.node_id,
        commitments,
        shares,
        b"\x00" * 65,
        env.relay,
    )
    reverts(
        "bad signature length",
        c.post_dealing,
        1,
        dealer.node_id,
        commitments,
        shares,
        b"\x01" * 64,
        env.relay,
    )
    assert not c.has_dealt(1, dealer.node_id)
    receipt = deal(env, c, 1, dealer, commitments, shares)
    [(name, posted)] = c.decode_events(receipt)
    assert name == "DealingPosted"
    assert posted == {
        "era": 1,
        "dealer_id": dealer.node_id,
        "commitments": commitments,
        "shares": shares,
    }
    reverts("dealer already dealt", deal, env, c, 1, dealer, commitments, shares)
    record = c.get_era(1)
    assert record is not None and record.dealing_count == 1


def test_confirm_refusals(env: Env) -> None:
    c = env.committee()
    gks = env.gatekeepers(4)
    outsider = env.gatekeeper()
    c.elect(ids(gks), 3, env.admin)
    for dealer in gks[:3]:
        deal_dummy(env, c, 1, dealer)
    qualified = sorted_ids(gks[:3])
    m = gks[0]

    reverts("unknown era", confirm, env, c, 5, m, FAKE_KEY, qualified)
    reverts("not a member of the era", confirm, env, c, 1, outsider, FAKE_KEY, qualified)
    reverts("group key must be 48 bytes", confirm, env, c, 1, m, FAKE_KEY[:47], qualified)
    reverts("not signed by the member", confirm, env, c, 1, m, FAKE_KEY, qualified, signer=gks[1])
    reverts("too few qualified dealers", confirm, env, c, 1, m, FAKE_KEY, qualified[:2])
    reverts(
        "qualified dealers must be strictly increasing",
        confirm,
        env,
        c,
        1,
        m,
        FAKE_KEY,
        qualified[::-1],
    )
    reverts(
        "qualified dealers must be strictly increasing",
        confirm,
        env,
        c,
        1,
        m,
        FAKE_KEY,
        [qualified[0], qualified[0], qualified[1]],
    )
    reverts("qualified dealer has not dealt", confirm, env, c, 1, m, FAKE_KEY, sorted_ids(gks[1:]))
    reverts(
        "qualified dealer has not dealt",
        confirm,
        env,
        c,
        1,
        m,
        FAKE_KEY,
        sorted(qualified + [outsider.node_id]),
    )
    # a signature over another qualified set than the one sent
    digest = c.compute_ready_digest(1, m.node_id, FAKE_KEY, qualified)
    sig = m.sign(digest)
    reverts(
        "not signed by the member",
        c.confirm_ready,
        1,
        m.node_id,
        FAKE_KEY,
        qualified[:2],
        sig,
        env.relay,
    )

    confirm(env, c, 1, m, FAKE_KEY, qualified)
    reverts("member already confirmed", confirm, env, c, 1, m, FAKE_KEY, qualified)
    other_key = b"\xb2" * 48
    reverts(
        "group key differs from other confirmations",
        confirm,
        env,
        c,
        1,
        gks[1],
        other_key,
        qualified,
    )
    deal_dummy(env, c, 1, gks[3])
    reverts(
        "qualified set differs from other confirmations",
        confirm,
        env,
        c,
        1,
        gks[1],
        FAKE_KEY,
        sorted_ids(gks),
    )
    reverts("deadline not reached", c.restart, 1, env.relay)
    reverts("unknown era", c.restart, 9, env.relay)
    for member in gks[1:]:
        confirm(env, c, 1, member, FAKE_KEY, qualified)
    assert c.get_current_era() == 1
    reverts("era is not pending", confirm, env, c, 1, gks[1], FAKE_KEY, qualified)
    reverts("era is not pending", c.restart, 1, env.relay)


def test_past_deadline_refused(env: Env) -> None:
    c = env.committee(timeout=4)
    gks = env.gatekeepers(3)
    c.elect(ids(gks), 2, env.admin)
    deal_dummy(env, c, 1, gks[0])
    deal_dummy(env, c, 1, gks[1])
    record = c.get_era(1)
    assert record is not None
    env.adapter.mine(record.deadline - env.adapter.get_block_number() + 1)
    reverts("era deadline passed", deal_dummy, env, c, 1, gks[2])
    reverts("era deadline passed", confirm, env, c, 1, gks[0], FAKE_KEY, sorted_ids(gks[:2]))


def test_expired_member_cannot_be_elected_or_confirm(env: Env) -> None:
    c = env.committee()
    short_lived = env.gatekeeper(lifetime=40)
    gks = [*env.gatekeepers(2), short_lived]
    c.elect(ids(gks), 2, env.admin)
    for dealer in gks:
        deal_dummy(env, c, 1, dealer)
    env.adapter.increase_time(60)
    qualified = sorted_ids(gks)
    reverts(
        "member is not an active node of the role",
        confirm,
        env,
        c,
        1,
        short_lived,
        FAKE_KEY,
        qualified,
    )
    confirm(env, c, 1, gks[0], FAKE_KEY, qualified)
    other = env.committee()
    reverts("member is not an active node of the role", other.elect, ids(gks), 2, env.admin)


def test_a_gateway_committee_elects_only_gateways(env: Env) -> None:
    """The same contract deployed for a gateway committee (issue 15): its members are
    registered gateways, never gatekeepers; an unknown role is refused at deploy."""
    c = env.committee(role=Role.GATEWAY)
    assert c.get_member_role() == int(Role.GATEWAY)
    assert env.committee().get_member_role() == int(Role.GATEKEEPER)
    gateways = [env.gatekeeper(role=Role.GATEWAY) for _ in range(3)]
    gks = env.gatekeepers(1)
    reverts("member is not an active node of the role", c.elect, ids(gks), 1, env.admin)
    reverts(
        "member is not an active node of the role",
        env.committee().elect,
        ids(gateways),
        2,
        env.admin,
    )
    c.elect(ids(gateways), 2, env.admin)
    for dealer in gateways:
        deal_dummy(env, c, 1, dealer)
    for member in gateways:
        confirm(env, c, 1, member, FAKE_KEY, sorted_ids(gateways))
    record = c.get_era(1)
    assert record is not None and record.phase == CommitteePhase.ACTIVE
    with pytest.raises(ChainConfigError, match="gatekeepers or gateways"):
        deploy_committee(env.adapter, env.admin, env.registry.address, TIMEOUT, Role.WORKER)


# ----------------------------------------------------------------------------- timeout


def test_genesis_timeout_penalizes_and_retries(env: Env) -> None:
    c = env.committee(timeout=20)
    a, b, cc, d, e = env.gatekeepers(5)
    members = [a, b, cc, d, e]
    c.elect(ids(members), 3, env.admin)
    for dealer in (a, b, cc, d):  # e never deals
        deal_dummy(env, c, 1, dealer)
    qualified = sorted_ids([a, b, cc])
    for member in (a, b, cc):  # d and e never confirm
        confirm(env, c, 1, member, FAKE_KEY, qualified)
    record = c.get_era(1)
    assert record is not None
    # restart goes with a fixed gas budget, so it runs in the next block: mine up to the
    # block before the deadline, and the attempt lands at the deadline itself
    env.adapter.mine(max(0, record.deadline - 1 - env.adapter.get_block_number()))
    reverts("deadline not reached", c.restart, 1, env.relay)
    env.adapter.mine(1)

    receipt = c.restart(1, env.adapter.dev_keys[7])  # anyone may restart
    events = c.decode_events(receipt)
    assert names(events) == [
        "GatekeeperPenalized",
        "GatekeeperPenalized",
        "GatekeeperPenalized",
        "RotationRestarted",
        "EraElected",
    ]
    assert [(ev["node_id"], ev["reason"], ev["era"]) for _, ev in events[:3]] == [
        (d.node_id, "no confirmation", 1),
        (e.node_id, "no confirmation", 1),
        (e.node_id, "no dealing", 1),
    ]
    assert events[3][1] == {
        "failed_era": 1,
        "new_era": 2,
        "excluded_members": ids([d, e]),
        "excluded_dealers": ids([d, e]),
    }
    retry = events[4][1]
    assert retry["era"] == 2 and retry["members"] == ids([a, b, cc])
    assert retry["dealers"] == ids([a, b, cc]) and retry["threshold"] == 3
    assert retry["dealer_threshold"] == 0 and retry["previous_era"] == 0
    assert [c.get_penalties(n.node_id) for n in members] == [0, 0, 0, 1, 2]
    failed = c.get_era(1)
    assert failed is not None and failed.phase == CommitteePhase.FAILED
    assert (c.get_pending_era(), c.get_current_era()) == (2, 0)
    reverts("era is not pending", c.restart, 1, env.relay)
    reverts("era is not pending", deal_dummy, env, c, 1, e)

    for dealer in (a, b, cc):
        deal_dummy(env, c, 2, dealer)
    for member in (a, b, cc):
        confirm(env, c, 2, member, FAKE_KEY, qualified)
    assert (c.get_current_era(), c.get_pending_era()) == (2, 0)


def test_rotation_timeout_keeps_active_era_and_retries(env: Env) -> None:
    c = env.committee(timeout=20)
    old = env.gatekeepers(4)
    assert activate_genesis(env, c, old, 3) == 1
    new = [old[0], old[1], *env.gatekeepers(2)]
    c.elect(ids(new), 3, env.admin)
    for dealer in old[:3]:  # old[3] never deals
        deal_dummy(env, c, 2, dealer)
    qualified = sorted_ids(old[:3])
    for member in new[:3]:  # new[3] never confirms
        confirm(env, c, 2, member, FAKE_KEY, qualified)
    record = c.get_era(2)
    assert record is not None
    env.adapter.mine(record.deadline - env.adapter.get_block_number() + 1)

    events = c.decode_events(c.restart(2, env.relay))
    assert names(events) == [
        "GatekeeperPenalized",
        "GatekeeperPenalized",
        "RotationRestarted",
        "EraElected",
    ]
    assert [(ev["node_id"], ev["reason"]) for _, ev in events[:2]] == [
        (new[3].node_id, "no confirmation"),
        (old[3].node_id, "no dealing"),
    ]
    assert events[2][1] == {
        "failed_era": 2,
        "new_era": 3,
        "excluded_members": [new[3].node_id],
        "excluded_dealers": [],
    }
    retry = c.get_era(3)
    assert retry is not None
    assert retry.members == ids(new[:3]) and retry.dealers == ids(old)
    assert (retry.threshold, retry.dealer_threshold, retry.previous_era) == (3, 3, 1)
    # the ACTIVE era keeps serving meanwhile
    active = c.get_era(1)
    assert active is not None and active.phase == CommitteePhase.ACTIVE
    assert (c.get_current_era(), c.get_pending_era()) == (1, 3)
    assert c.get_penalties(old[3].node_id) == 1 and c.get_penalties(new[3].node_id) == 1

    # the retry times out with no confirmation at all: too few remain, no new era
    deal_dummy(env, c, 3, old[0])
    env.adapter.mine(retry.deadline - env.adapter.get_block_number() + 1)
    events = c.decode_events(c.restart(3, env.relay))
    assert names(events) == ["GatekeeperPenalized"] * 6 + ["RotationRestarted"]
    assert events[-1][1] == {
        "failed_era": 3,
        "new_era": 0,
        "excluded_members": ids(new[:3]),
        "excluded_dealers": [],
    }
    no_dealing = [ev["node_id"] for _, ev in events if ev.get("reason") == "no dealing"]
    assert no_dealing == ids(old[1:])
    assert (c.get_current_era(), c.get_pending_era(), c.get_era_count()) == (1, 0, 3)
    assert c.get_penalties(old[3].node_id) == 2
    # the admin elects again; the ACTIVE era's members still deal
    receipt = c.elect(ids(new[:3]), 2, env.admin)
    [(_, elected)] = c.decode_events(receipt)
    assert elected["era"] == 4 and elected["dealers"] == ids(old) and elected["previous_era"] == 1


def test_genesis_timeout_with_too_few_left_opens_no_retry(env: Env) -> None:
    c = env.committee(timeout=6)
    gks = env.gatekeepers(3)
    c.elect(ids(gks), 2, env.admin)
    deal_dummy(env, c, 1, gks[0])
    env.adapter.mine(7)
    events = c.decode_events(c.restart(1, env.relay))
    assert events[-1] == (
        "RotationRestarted",
        {"failed_era": 1, "new_era": 0, "excluded_members": ids(gks), "excluded_dealers": ids(gks)},
    )
    assert [c.get_penalties(g.node_id) for g in gks] == [1, 2, 2]
    assert (c.get_current_era(), c.get_pending_era()) == (0, 0)
    c.elect(ids(gks), 2, env.admin)  # the genesis again
    record = c.get_era(2)
    assert record is not None and record.is_genesis and record.dealers == ids(gks)


# ----------------------------------------------------------------------------- fresh eras

NEW_KEY = b"\xb2" * 48  # the fresh era's group key, where the cryptography is not the point


def test_a_fresh_era_is_a_new_key_generation_that_retires_the_old_one(env: Env) -> None:
    """``elect_fresh`` (gateway committees): the new members deal among themselves as at
    genesis, the confirmed key must differ from the ACTIVE era's, and the old era is
    retired when the fresh one activates (its members keep their shares off chain until
    the key's handover)."""
    gatekeepers = env.committee()
    gks = env.gatekeepers(3)
    reverts(
        "fresh eras are for gateway committees", gatekeepers.elect_fresh, ids(gks), 2, env.admin
    )
    c = env.committee(role=Role.GATEWAY)
    old = [env.gatekeeper(role=Role.GATEWAY) for _ in range(3)]
    reverts("no active era to hand over from", c.elect_fresh, ids(old), 2, env.admin)
    reverts("only admin", c.elect_fresh, ids(old), 2, env.relay)
    assert activate_genesis(env, c, old, 2) == 1
    first = c.get_era(1)
    assert first is not None and not first.fresh and not first.is_resharing
    new = [old[1], old[2], env.gatekeeper(role=Role.GATEWAY)]
    receipt = c.elect_fresh(ids(new), 2, env.admin)
    [(name, elected)] = c.decode_events(receipt)
    assert name == "EraElected" and elected["fresh"] is True
    assert elected["dealers"] == ids(new) and elected["dealer_threshold"] == 0
    assert elected["previous_era"] == 1
    record = c.get_era(2)
    assert record is not None and record.fresh and not record.is_genesis
    assert not record.is_resharing and record.required_dealings == 2
    reverts("a rotation is pending", c.elect_fresh, ids(new), 2, env.admin)
    reverts("not a dealer of the era", deal_dummy, env, c, 2, old[0])  # the leaver
    for dealer in new[:2]:
        deal_dummy(env, c, 2, dealer)
    qualified = sorted_ids(new[:2])
    reverts("a fresh era needs a new group key", confirm, env, c, 2, new[0], FAKE_KEY, qualified)
    for member in new[:2]:
        confirm(env, c, 2, member, NEW_KEY, qualified)
    assert c.get_current_era() == 1  # the old era serves until the fresh one is ready
    events = c.decode_events(confirm(env, c, 2, new[2], NEW_KEY, qualified))
    assert names(events) == ["ReadyConfirmed", "RotationReady", "EraRetired"]
    assert events[1][1]["group_public_key"] == NEW_KEY
    assert events[2][1] == {"era": 1, "members": ids(old)}
    assert (c.get_current_era(), c.get_pending_era()) == (2, 0)
    retired, active = c.get_era(1), c.get_era(2)
    assert retired is not None and retired.phase == CommitteePhase.RETIRED
    assert retired.group_public_key == FAKE_KEY
    assert active is not None and active.phase == CommitteePhase.ACTIVE
    assert active.group_public_key == NEW_KEY
    # a reshare of the fresh era keeps the fresh key
    c.elect(ids(new[:2]), 2, env.admin)
    record = c.get_era(3)
    assert record is not None and record.is_resharing and record.dealers == ids(new)
    for dealer in new[:2]:
        deal_dummy(env, c, 3, dealer)
    reverts(
        "group key differs from the previous era's",
        confirm,
        env,
        c,
        3,
        new[0],
        FAKE_KEY,
        sorted_ids(new[:2]),
    )


def test_a_fresh_era_that_times_out_retries_as_a_key_generation(env: Env) -> None:
    c = env.committee(timeout=20, role=Role.GATEWAY)
    old = [env.gatekeeper(role=Role.GATEWAY) for _ in range(3)]
    assert activate_genesis(env, c, old, 2) == 1
    new = [env.gatekeeper(role=Role.GATEWAY) for _ in range(4)]
    c.elect_fresh(ids(new), 2, env.admin)
    for dealer in new[:3]:  # new[3] never deals
        deal_dummy(env, c, 2, dealer)
    qualified = sorted_ids(new[:2])
    for member in new[1:3]:  # new[0] and new[3] never confirm
        confirm(env, c, 2, member, NEW_KEY, qualified)
    record = c.get_era(2)
    assert record is not None
    env.adapter.mine(record.deadline - env.adapter.get_block_number() + 1)
    events = c.decode_events(c.restart(2, env.relay))
    assert events[-2][1] == {
        "failed_era": 2,
        "new_era": 3,
        "excluded_members": ids([new[0], new[3]]),
        "excluded_dealers": ids([new[0], new[3]]),
    }
    assert events[-1][0] == "EraElected" and events[-1][1]["fresh"] is True
    retry = c.get_era(3)
    assert retry is not None and retry.fresh and retry.previous_era == 1
    # as at genesis: the members that dealt and confirmed deal again, among themselves
    assert retry.members == ids(new[1:3]) and retry.dealers == ids(new[1:3])
    assert (retry.threshold, retry.dealer_threshold) == (2, 0)
    assert (c.get_current_era(), c.get_pending_era()) == (1, 3)


# ----------------------------------------------------------------------------- gas


@pytest.mark.parametrize("n", [4, 16])
def test_gas_of_dealing_and_confirmation(env: Env, n: int) -> None:
    c = env.committee()
    t = 2 * n // 3 + 1
    gks = env.gatekeepers(n)
    elect_gas = c.elect(ids(gks), t, env.admin).gas_used
    dealing_gas = [deal_dummy(env, c, 1, g).gas_used for g in gks]
    qualified = sorted_ids(gks)
    confirm_gas = [confirm(env, c, 1, g, FAKE_KEY, qualified).gas_used for g in gks]
    assert c.get_current_era() == 1
    print(
        f"\nGatekeeperCommittee gas, n={n} t={t} (share {SHARE_SIZE} B, qualified = all {n}):"
        f"\n  elect                 {elect_gas:>9,}"
        f"\n  post_dealing          first {dealing_gas[0]:,}  mean {sum(dealing_gas) // n:,}"
        f"  max {max(dealing_gas):,}"
        f"\n  confirm_ready         first {confirm_gas[0]:,}  middle {confirm_gas[n // 2]:,}"
        f"  last (activates) {confirm_gas[-1]:,}"
    )
    assert max(dealing_gas) < 1_500_000 and max(confirm_gas) < 1_000_000
