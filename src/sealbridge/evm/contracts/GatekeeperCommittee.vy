# pragma version ~=0.4.3
"""
@title GatekeeperCommittee
@notice Broadcast channel and referee of a TEE committee's key lifecycle: the
    gatekeepers' root key, or (deployed with ``member_role`` 4) the gateway committee's
    signing key. The key is a threshold key held as Shamir shares by an elected set of
    gatekeepers, one set per era. The first era runs a joint-Feldman key generation
    (every member deals); each later era ``elect``-ed is a resharing: the members of the
    ACTIVE era deal their shares to the new members, so the group public key stays the
    same. A gateway committee may instead ``elect_fresh``: a new joint-Feldman key
    generation among the new members (a new secret, a new group key), after which the
    previous era's members sign the key's handover to whoever trusts the old key (the
    GatewayEscrow's ``rotate_key``; see docs/evm-gateways.md). The gatekeepers' root key
    never changes (every contract key derives from it), so their committee has no fresh
    eras.

    Per era: ``elect`` opens it (phase ELECTED) with a deadline; dealers post their
    dealings (Feldman commitments in clear, one share per member encrypted to that
    member -- opaque here); every member checks them off chain and confirms, with its
    enclave key, the group public key it computed and the qualified set of dealers it
    used. All confirmations must name the same key and set (for a resharing, the key of
    the ACTIVE era). When every member has confirmed, the era becomes ACTIVE, the
    previous one RETIRED (its members erase their shares) and ``RotationReady`` resumes
    service. If the deadline passes first, anyone may ``restart``: the era FAILS, the
    unresponsive are penalized and a retry era is opened without them.

    Indexing: a member's share index is its 1-based position in the era's ``members``;
    a dealer's is its 1-based position in ``dealers`` (for a resharing, its index in the
    previous era). The contract cannot check the cryptography (commitments, shares, the
    group key are opaque bytes to it): the unanimity of the members is what vouches for
    the key; for a resharing equality with the previous key is enforced, for a fresh era
    inequality.

    Signatures are raw secp256k1 over (see docs/chain.md):
      dealing: keccak256(abi_encode(self, chain.id, DEALING_TAG, era, dealer_id,
                 keccak256(abi_encode(commitments)), keccak256(abi_encode(shares))))
      ready:   keccak256(abi_encode(self, chain.id, READY_TAG, era, member_id,
                 keccak256(group_public_key), qualified))
    where ``abi_encode(x)`` of one array is the ABI encoding of the 1-tuple ``(bytes[])``.
"""

ROLE_GATEKEEPER: constant(uint8) = 1
ROLE_GATEWAY: constant(uint8) = 4
MAX_MEMBERS: constant(uint256) = 32
MAX_SHARE: constant(uint256) = 256
KEY_SIZE: constant(uint256) = 48

PHASE_ELECTED: constant(uint8) = 1
PHASE_ACTIVE: constant(uint8) = 2
PHASE_FAILED: constant(uint8) = 3
PHASE_RETIRED: constant(uint8) = 4

DEALING_TAG: constant(bytes32) = keccak256("sealbridge/committee-dealing/v1")
READY_TAG: constant(bytes32) = keccak256("sealbridge/committee-ready/v1")


interface INodeRegistry:
    def is_active(node_id: bytes32, role: uint8) -> bool: view
    def get_enclave_address(node_id: bytes32) -> address: view


# What is stored per era (the member and dealer lists live in their own maps so that a
# dealing or a confirmation reads only the words it needs).
struct EraState:
    threshold: uint256
    dealer_threshold: uint256
    phase: uint8
    elected_at: uint256
    deadline: uint256
    previous_era: uint256
    dealing_count: uint256
    confirmation_count: uint256
    candidate_key_hash: bytes32
    candidate_qualified_hash: bytes32
    group_public_key: Bytes[KEY_SIZE]
    fresh: bool  # a new key generation (elect_fresh), not a resharing


# What get_era returns.
struct Era:
    members: DynArray[bytes32, MAX_MEMBERS]
    threshold: uint256
    dealers: DynArray[bytes32, MAX_MEMBERS]
    dealer_threshold: uint256
    group_public_key: Bytes[KEY_SIZE]
    phase: uint8
    elected_at: uint256
    deadline: uint256
    previous_era: uint256
    dealing_count: uint256
    confirmation_count: uint256
    fresh: bool


event EraElected:
    era: indexed(uint256)
    members: DynArray[bytes32, MAX_MEMBERS]
    threshold: uint256
    dealers: DynArray[bytes32, MAX_MEMBERS]
    dealer_threshold: uint256
    previous_era: uint256
    deadline: uint256
    fresh: bool


event DealingPosted:
    era: indexed(uint256)
    dealer_id: indexed(bytes32)
    commitments: DynArray[Bytes[KEY_SIZE], MAX_MEMBERS]
    shares: DynArray[Bytes[MAX_SHARE], MAX_MEMBERS]


event ReadyConfirmed:
    era: indexed(uint256)
    member_id: indexed(bytes32)


event RotationReady:
    era: indexed(uint256)
    group_public_key: Bytes[KEY_SIZE]
    members: DynArray[bytes32, MAX_MEMBERS]
    threshold: uint256


event EraRetired:
    era: indexed(uint256)
    members: DynArray[bytes32, MAX_MEMBERS]


event GatekeeperPenalized:
    era: indexed(uint256)
    node_id: indexed(bytes32)
    reason: String[16]


event RotationRestarted:
    failed_era: indexed(uint256)
    new_era: uint256
    excluded_members: DynArray[bytes32, MAX_MEMBERS]
    excluded_dealers: DynArray[bytes32, MAX_MEMBERS]


admin: public(address)
node_registry: public(address)
rotation_timeout: public(uint256)
current_era: public(uint256)
pending_era: public(uint256)
era_count: public(uint256)

eras: HashMap[uint256, EraState]
era_members: HashMap[uint256, DynArray[bytes32, MAX_MEMBERS]]
era_dealers: HashMap[uint256, DynArray[bytes32, MAX_MEMBERS]]
member_index: HashMap[uint256, HashMap[bytes32, uint256]]  # 1-based; 0: not a member
dealer_index: HashMap[uint256, HashMap[bytes32, uint256]]  # 1-based; 0: not a dealer
dealing_hash: HashMap[uint256, HashMap[bytes32, bytes32]]  # signed digest; empty: none
confirmed: HashMap[uint256, HashMap[bytes32, bool]]
penalties: HashMap[bytes32, uint256]
# last, so that the slots above (read by proofs: keyservice/chainfacts.py) stay put
member_role: public(uint8)  # the NodeRegistry role every member must hold


@deploy
def __init__(node_registry: address, rotation_timeout: uint256, member_role: uint8):
    """
    @param node_registry the NodeRegistry whose active nodes of ``member_role`` may be
        elected
    @param rotation_timeout blocks an era has, from its election, to become ready
    @param member_role ROLE_GATEKEEPER (1) or ROLE_GATEWAY (4)
    """
    assert node_registry != empty(address), "empty node registry"
    assert rotation_timeout > 0, "rotation timeout must be positive"
    assert member_role == ROLE_GATEKEEPER or member_role == ROLE_GATEWAY, "unknown member role"
    self.admin = msg.sender
    self.node_registry = node_registry
    self.member_role = member_role
    self.rotation_timeout = rotation_timeout


@internal
@view
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    assert len(signature) == 65, "bad signature length"
    r: bytes32 = extract32(signature, 0)
    s: bytes32 = extract32(signature, 32)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    if v < 27:
        v += 27
    return ecrecover(digest, v, r, s)


@internal
@view
def _check_signer(digest: bytes32, signature: Bytes[65], node_id: bytes32, who: String[16]):
    signer: address = self._recover(digest, signature)
    assert signer != empty(address), "invalid signature"
    expected: address = staticcall INodeRegistry(self.node_registry).get_enclave_address(node_id)
    assert signer == expected, concat("not signed by the ", who)


@internal
@view
def _check_pending(era: uint256):
    phase: uint8 = self.eras[era].phase
    assert phase != 0, "unknown era"
    assert phase == PHASE_ELECTED, "era is not pending"
    assert block.number <= self.eras[era].deadline, "era deadline passed"


@internal
def _open_era(
    members: DynArray[bytes32, MAX_MEMBERS],
    threshold: uint256,
    dealers: DynArray[bytes32, MAX_MEMBERS],
    dealer_threshold: uint256,
    previous_era: uint256,
    fresh: bool,
) -> uint256:
    era: uint256 = self.era_count + 1
    for i: uint256 in range(len(members), bound=MAX_MEMBERS):
        assert self.member_index[era][members[i]] == 0, "duplicate member"
        self.member_index[era][members[i]] = i + 1
    for i: uint256 in range(len(dealers), bound=MAX_MEMBERS):
        self.dealer_index[era][dealers[i]] = i + 1
    deadline: uint256 = block.number + self.rotation_timeout
    self.era_count = era
    self.pending_era = era
    self.era_members[era] = members
    self.era_dealers[era] = dealers
    self.eras[era] = EraState(
        threshold=threshold,
        dealer_threshold=dealer_threshold,
        phase=PHASE_ELECTED,
        elected_at=block.number,
        deadline=deadline,
        previous_era=previous_era,
        dealing_count=0,
        confirmation_count=0,
        candidate_key_hash=empty(bytes32),
        candidate_qualified_hash=empty(bytes32),
        group_public_key=b"",
        fresh=fresh,
    )
    log EraElected(
        era=era,
        members=members,
        threshold=threshold,
        dealers=dealers,
        dealer_threshold=dealer_threshold,
        previous_era=previous_era,
        deadline=deadline,
        fresh=fresh,
    )
    return era


@internal
def _penalize(era: uint256, node_id: bytes32, reason: String[16]):
    self.penalties[node_id] += 1
    log GatekeeperPenalized(era=era, node_id=node_id, reason=reason)


@internal
@view
def _check_election(members: DynArray[bytes32, MAX_MEMBERS], threshold: uint256):
    assert msg.sender == self.admin, "only admin"
    assert self.pending_era == 0, "a rotation is pending"
    assert len(members) > 0, "no members"
    assert threshold >= 1 and threshold <= len(members), "threshold out of range"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    for member: bytes32 in members:
        assert staticcall registry.is_active(member, self.member_role), "member is not an active node of the role"


@external
def elect(members: DynArray[bytes32, MAX_MEMBERS], threshold: uint256) -> uint256:
    """
    @notice The election. PODG elects the gatekeepers by stake and governance; here the
        registry admin stands in for it. Opens era ``era_count + 1``: the genesis key
        generation when no era is ACTIVE yet (dealers = the members, dealer_threshold 0:
        at least ``threshold`` dealings must be used), otherwise a resharing from the
        ACTIVE era (dealers = its members, dealer_threshold = its threshold).
    @return the new era's number
    """
    self._check_election(members, threshold)
    current: uint256 = self.current_era
    if current == 0:
        return self._open_era(members, threshold, members, 0, 0, False)
    return self._open_era(
        members, threshold, self.era_members[current], self.eras[current].threshold, current, False
    )


@external
def elect_fresh(members: DynArray[bytes32, MAX_MEMBERS], threshold: uint256) -> uint256:
    """
    @notice A gateway committee's election of a fresh key: opens era ``era_count + 1``
        as a new joint-Feldman key generation among ``members`` (dealers = the members,
        dealer_threshold 0, as at genesis) while the ACTIVE era keeps serving. Its
        ``previous_era`` is the ACTIVE era, which it retires when it becomes ACTIVE; the
        group key it confirms must differ from that era's. The retired era's members keep
        their shares until they have signed the new key's handover (off chain: the
        escrows' ``rotate_key``). Only with ``member_role`` ROLE_GATEWAY, and only once an
        era is ACTIVE.
    @return the new era's number
    """
    self._check_election(members, threshold)
    assert self.member_role == ROLE_GATEWAY, "fresh eras are for gateway committees"
    current: uint256 = self.current_era
    assert current != 0, "no active era to hand over from"
    return self._open_era(members, threshold, members, 0, current, True)


@external
def post_dealing(
    era: uint256,
    dealer_id: bytes32,
    commitments: DynArray[Bytes[KEY_SIZE], MAX_MEMBERS],
    shares: DynArray[Bytes[MAX_SHARE], MAX_MEMBERS],
    signature: Bytes[65],
):
    """
    @notice Broadcast a dealing: ``threshold`` Feldman commitments (48-byte G1 points)
        to the new polynomial and one encrypted share per member, in member order. Only
        the signed digest is stored; the data travels in ``DealingPosted``.
    """
    self._check_pending(era)
    assert self.dealer_index[era][dealer_id] != 0, "not a dealer of the era"
    assert self.dealing_hash[era][dealer_id] == empty(bytes32), "dealer already dealt"
    assert len(commitments) == self.eras[era].threshold, "wrong number of commitments"
    assert len(shares) == len(self.era_members[era]), "wrong number of shares"
    for commitment: Bytes[KEY_SIZE] in commitments:
        assert len(commitment) == KEY_SIZE, "commitment must be 48 bytes"
    digest: bytes32 = keccak256(
        abi_encode(
            self,
            chain.id,
            DEALING_TAG,
            era,
            dealer_id,
            keccak256(abi_encode(commitments)),
            keccak256(abi_encode(shares)),
        )
    )
    self._check_signer(digest, signature, dealer_id, "dealer")
    self.dealing_hash[era][dealer_id] = digest
    self.eras[era].dealing_count += 1
    log DealingPosted(era=era, dealer_id=dealer_id, commitments=commitments, shares=shares)


@internal
def _activate(era: uint256, group_public_key: Bytes[KEY_SIZE]):
    previous: uint256 = self.eras[era].previous_era
    self.eras[era].phase = PHASE_ACTIVE
    self.eras[era].group_public_key = group_public_key
    self.current_era = era
    self.pending_era = 0
    log RotationReady(
        era=era,
        group_public_key=group_public_key,
        members=self.era_members[era],
        threshold=self.eras[era].threshold,
    )
    if previous != 0:
        self.eras[previous].phase = PHASE_RETIRED
        log EraRetired(era=previous, members=self.era_members[previous])


@external
def confirm_ready(
    era: uint256,
    member_id: bytes32,
    group_public_key: Bytes[KEY_SIZE],
    qualified: DynArray[bytes32, MAX_MEMBERS],
    signature: Bytes[65],
):
    """
    @notice A member's enclave confirms it holds its share of ``group_public_key``,
        computed from the dealings of ``qualified`` (dealer ids, strictly increasing).
        The first confirmation fixes the era's candidate key and set; every other must
        repeat them. The last one activates the era.
    """
    self._check_pending(era)
    assert self.member_index[era][member_id] != 0, "not a member of the era"
    assert not self.confirmed[era][member_id], "member already confirmed"
    assert len(group_public_key) == KEY_SIZE, "group key must be 48 bytes"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    assert staticcall registry.is_active(member_id, self.member_role), "member is not an active node of the role"
    key_hash: bytes32 = keccak256(group_public_key)
    digest: bytes32 = keccak256(
        abi_encode(self, chain.id, READY_TAG, era, member_id, key_hash, qualified)
    )
    self._check_signer(digest, signature, member_id, "member")
    qualified_hash: bytes32 = keccak256(abi_encode(qualified))
    count: uint256 = self.eras[era].confirmation_count
    if count == 0:
        needed: uint256 = self.eras[era].dealer_threshold
        if needed == 0:
            needed = self.eras[era].threshold
        assert len(qualified) >= needed, "too few qualified dealers"
        last: uint256 = 0
        for dealer: bytes32 in qualified:
            assert convert(dealer, uint256) > last, "qualified dealers must be strictly increasing"
            last = convert(dealer, uint256)
            assert self.dealing_hash[era][dealer] != empty(bytes32), "qualified dealer has not dealt"
        previous: uint256 = self.eras[era].previous_era
        if previous != 0:
            previous_hash: bytes32 = keccak256(self.eras[previous].group_public_key)
            if self.eras[era].fresh:
                assert key_hash != previous_hash, "a fresh era needs a new group key"
            else:
                assert key_hash == previous_hash, "group key differs from the previous era's"
        self.eras[era].candidate_key_hash = key_hash
        self.eras[era].candidate_qualified_hash = qualified_hash
    else:
        assert key_hash == self.eras[era].candidate_key_hash, "group key differs from other confirmations"
        assert qualified_hash == self.eras[era].candidate_qualified_hash, "qualified set differs from other confirmations"
    self.confirmed[era][member_id] = True
    count += 1
    self.eras[era].confirmation_count = count
    log ReadyConfirmed(era=era, member_id=member_id)
    if count == len(self.era_members[era]):
        self._activate(era, group_public_key)


@external
def restart(era: uint256) -> uint256:
    """
    @notice Anyone, once a pending era's deadline has passed: the era FAILS; every
        member that did not confirm and every dealer that did not deal is penalized
        (``penalties[node_id] += 1``, one ``GatekeeperPenalized`` per failure; stake
        slashing for penalties is left to the NodeRegistry's responsiveness rules). A
        retry era is opened with the same threshold and the members that confirmed. Its
        dealers: for a resharing, the ACTIVE era's members again (that era keeps serving
        meanwhile); for the genesis or a fresh era, the retry members that dealt. If fewer
        than ``threshold`` members (or, at genesis or for a fresh era, dealers) remain, no
        retry is opened (``new_era`` 0) and the admin elects again.
    @return the retry era's number, or 0
    """
    phase: uint8 = self.eras[era].phase
    assert phase != 0, "unknown era"
    assert phase == PHASE_ELECTED, "era is not pending"
    assert block.number > self.eras[era].deadline, "deadline not reached"
    self.eras[era].phase = PHASE_FAILED
    self.pending_era = 0
    previous: uint256 = self.eras[era].previous_era
    fresh: bool = self.eras[era].fresh
    resharing: bool = previous != 0 and not fresh
    threshold: uint256 = self.eras[era].threshold

    members: DynArray[bytes32, MAX_MEMBERS] = self.era_members[era]
    kept_members: DynArray[bytes32, MAX_MEMBERS] = []
    excluded_members: DynArray[bytes32, MAX_MEMBERS] = []
    for member: bytes32 in members:
        if self.confirmed[era][member]:
            kept_members.append(member)
        else:
            excluded_members.append(member)
            self._penalize(era, member, "no confirmation")

    dealers: DynArray[bytes32, MAX_MEMBERS] = self.era_dealers[era]
    kept_dealers: DynArray[bytes32, MAX_MEMBERS] = []
    excluded_dealers: DynArray[bytes32, MAX_MEMBERS] = []
    for dealer: bytes32 in dealers:
        dealt: bool = self.dealing_hash[era][dealer] != empty(bytes32)
        if not dealt:
            self._penalize(era, dealer, "no dealing")
        if resharing or (dealt and self.confirmed[era][dealer]):
            kept_dealers.append(dealer)
        else:
            excluded_dealers.append(dealer)

    retry: bool = len(kept_members) >= threshold
    if not resharing:
        retry = retry and len(kept_dealers) >= threshold
    new_era: uint256 = 0
    if retry:
        new_era = self.era_count + 1
    log RotationRestarted(
        failed_era=era,
        new_era=new_era,
        excluded_members=excluded_members,
        excluded_dealers=excluded_dealers,
    )
    if retry:
        self._open_era(
            kept_members, threshold, kept_dealers, self.eras[era].dealer_threshold, previous, fresh
        )
    return new_era


@external
@view
def get_era(era: uint256) -> Era:
    state: EraState = self.eras[era]
    return Era(
        members=self.era_members[era],
        threshold=state.threshold,
        dealers=self.era_dealers[era],
        dealer_threshold=state.dealer_threshold,
        group_public_key=state.group_public_key,
        phase=state.phase,
        elected_at=state.elected_at,
        deadline=state.deadline,
        previous_era=state.previous_era,
        dealing_count=state.dealing_count,
        confirmation_count=state.confirmation_count,
        fresh=state.fresh,
    )


@external
@view
def get_members(era: uint256) -> DynArray[bytes32, MAX_MEMBERS]:
    return self.era_members[era]


@external
@view
def get_dealers(era: uint256) -> DynArray[bytes32, MAX_MEMBERS]:
    return self.era_dealers[era]


@external
@view
def get_member_index(era: uint256, node_id: bytes32) -> uint256:
    """@notice 1-based share index of a member in the era; 0 if not a member."""
    return self.member_index[era][node_id]


@external
@view
def get_dealer_index(era: uint256, node_id: bytes32) -> uint256:
    """@notice 1-based position of a dealer in the era's dealers; 0 if not a dealer."""
    return self.dealer_index[era][node_id]


@external
@view
def has_dealt(era: uint256, dealer_id: bytes32) -> bool:
    return self.dealing_hash[era][dealer_id] != empty(bytes32)


@external
@view
def get_dealing_hash(era: uint256, dealer_id: bytes32) -> bytes32:
    """@notice The dealing digest the dealer signed (empty: no dealing)."""
    return self.dealing_hash[era][dealer_id]


@external
@view
def has_confirmed(era: uint256, member_id: bytes32) -> bool:
    return self.confirmed[era][member_id]


@external
@view
def get_penalties(node_id: bytes32) -> uint256:
    return self.penalties[node_id]
