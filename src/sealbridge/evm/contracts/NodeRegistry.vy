# pragma version ~=0.4.3
"""
@title NodeRegistry
@notice Registry of attested TEE nodes (gatekeepers, workers, storage, gateways) and
    their lifecycle. The deployer is the admin and bootstraps the first gatekeeper.
    Every other TEE node is admitted by an active gatekeeper's enclave, which signs the
    registration digest after verifying the node's quote off-chain. A node is
    identified by its Ed25519 identity key; its enclave's secp256k1 key
    (``enclave_address``) signs everything the node later puts on chain.

    Lifecycle (PODG's responsiveness monitoring). Registrations expire and are renewed
    with a fresh approval. The stake stays in this contract while the node serves and
    for ``unbonding_blocks`` after it leaves. Time is cut into eras of ``era_length``
    blocks counted from the deploy block, each of ``HEARTBEAT_SLOTS`` slots. A node's
    activity in an era is the number of heartbeats it sent (at most one per slot) plus
    what the ExecutionLedger reports (accepted outputs, counted storage confirmations),
    capped at ``ACTIVITY_CAP``. Once an era is over anyone closes it: every node that was
    registered for the whole era is judged against the most active node of its role,
    and the unresponsive lose ``slash_bps`` of their stake to the slashed pool and are
    deactivated.
"""

ROLE_GATEKEEPER: constant(uint8) = 1
ROLE_WORKER: constant(uint8) = 2
ROLE_STORAGE: constant(uint8) = 3
ROLE_GATEWAY: constant(uint8) = 4
STORAGE_ID_TAG: constant(Bytes[26]) = b"sealbridge/storage-node/v1"
STORAGE_REGISTRATION_TAG: constant(bytes32) = keccak256("sealbridge/storage-registration/v1")
HEARTBEAT_TAG: constant(bytes32) = keccak256("sealbridge/heartbeat/v1")
HEARTBEAT_SLOTS: constant(uint256) = 8
# A node that sends every heartbeat has 8; with the cap at 4 * 8 it is never below a
# quarter of the maximum, whatever activity the others pile up.
ACTIVITY_CAP: constant(uint256) = 32
MAX_NODES: constant(uint256) = 256
BPS: constant(uint256) = 10000
NOT_LEFT: constant(uint256) = max_value(uint256)


struct Node:
    owner: address
    role: uint8
    identity_key: bytes32
    encryption_key: bytes32
    enclave_address: address
    quote_hash: bytes32
    measurement: bytes32
    stake: uint256
    expiry: uint256
    active: bool


struct Tenure:
    joined_era: uint256  # the era in which the node (re-)registered
    left_era: uint256  # the era in which it left, or after the one it was slashed for
    unbond_at: uint256  # block from which the owner may withdraw the stake (0: serving)
    listed: bool  # in node_ids: judged when eras close, until the stake is withdrawn


event NodeRegistered:
    node_id: indexed(bytes32)
    role: uint8
    owner: address
    enclave_address: address
    quote_hash: bytes32
    measurement: bytes32
    expiry: uint256
    stake: uint256
    quote: Bytes[8192]


event NodeRenewed:
    node_id: indexed(bytes32)
    encryption_key: bytes32
    enclave_address: address
    expiry: uint256
    quote_hash: bytes32
    measurement: bytes32
    quote: Bytes[8192]


event Heartbeat:
    node_id: indexed(bytes32)
    era: uint256
    slot: uint256


event NodeUnregistered:
    node_id: indexed(bytes32)
    era: uint256
    unbond_at: uint256


event StakeWithdrawn:
    node_id: indexed(bytes32)
    owner: address
    amount: uint256


event NodeSlashed:
    node_id: indexed(bytes32)
    era: indexed(uint256)
    activity: uint256
    max_activity: uint256
    amount: uint256


event EraClosed:
    era: indexed(uint256)
    judged: uint256
    slashed: uint256
    amount: uint256
    max_gatekeeper: uint256
    max_worker: uint256
    max_storage: uint256
    max_gateway: uint256


event SlashedWithdrawn:
    to: address
    amount: uint256


admin: public(address)
min_stake: public(uint256)
node_count: public(uint256)  # nodes holding a registration (not unregistered or slashed)
nodes: HashMap[bytes32, Node]

era_length: public(immutable(uint256))
genesis_block: public(immutable(uint256))
slash_bps: public(immutable(uint256))
unbonding_blocks: public(immutable(uint256))
renewal_grace: public(immutable(uint256))

reporter: public(address)  # the ExecutionLedger: reports activity
next_era: public(uint256)  # the next era to close (eras close in order)
slashed_total: public(uint256)  # slashed stake held here (the insurance pool)
node_ids: public(DynArray[bytes32, MAX_NODES])
node_index: HashMap[bytes32, uint256]  # 1-based position in node_ids
joined_era: HashMap[bytes32, uint256]
left_era: HashMap[bytes32, uint256]  # NOT_LEFT while registered
# era -> node -> (activity << 8) | bitmap of the slots it sent a heartbeat for
activity_words: HashMap[uint256, HashMap[bytes32, uint256]]
# node -> key -> retired: the encryption keys and enclave addresses (as bytes32) a
# renewal replaced; they are never accepted for that node again (renewal or registration)
retired_keys: public(HashMap[bytes32, HashMap[bytes32, bool]])


@deploy
def __init__(
    min_stake: uint256,
    era_length_: uint256,
    slash_bps_: uint256,
    unbonding_blocks_: uint256,
    renewal_grace_: uint256,
):
    assert era_length_ >= HEARTBEAT_SLOTS, "era shorter than its heartbeat slots"
    assert slash_bps_ <= BPS, "slash above 100%"
    self.admin = msg.sender
    self.min_stake = min_stake
    era_length = era_length_
    genesis_block = block.number
    slash_bps = slash_bps_
    unbonding_blocks = unbonding_blocks_
    renewal_grace = renewal_grace_


# ----------------------------------------------------------------------------- internals


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
def _is_active(node_id: bytes32, role: uint8) -> bool:
    node: Node = self.nodes[node_id]
    return node.active and node.role == role and node.expiry > block.timestamp


@internal
@view
def _era() -> uint256:
    return (block.number - genesis_block) // era_length


@internal
@view
def _slot() -> uint256:
    return (block.number - genesis_block) % era_length * HEARTBEAT_SLOTS // era_length


@internal
@view
def _approval_digest(
    role: uint8,
    identity_key: bytes32,
    encryption_key: bytes32,
    enclave_address: address,
    quote_hash: bytes32,
    measurement: bytes32,
    expiry: uint256,
) -> bytes32:
    return keccak256(
        abi_encode(
            self,
            chain.id,
            role,
            identity_key,
            encryption_key,
            enclave_address,
            quote_hash,
            measurement,
            expiry,
        )
    )


@internal
@view
def _check_approval(attestor_id: bytes32, digest: bytes32, approval: Bytes[65]):
    assert self._is_active(attestor_id, ROLE_GATEKEEPER), "attestor is not an active gatekeeper"
    signer: address = self._recover(digest, approval)
    assert signer != empty(address), "invalid approval signature"
    assert signer == self.nodes[attestor_id].enclave_address, "approval not signed by attestor"


@internal
def _add_activity(node_id: bytes32, era: uint256, slot_bit: uint256):
    word: uint256 = self.activity_words[era][node_id]
    if word >> 8 < ACTIVITY_CAP:
        word += 1 << 8
    self.activity_words[era][node_id] = word | slot_bit


@internal
def _list(node_id: bytes32):
    if self.node_index[node_id] != 0:
        return
    assert len(self.node_ids) < MAX_NODES, "registry full"
    self.node_ids.append(node_id)
    self.node_index[node_id] = len(self.node_ids)


@internal
def _delist(node_id: bytes32):
    index: uint256 = self.node_index[node_id]
    if index == 0:
        return
    last: bytes32 = self.node_ids.pop()
    if last != node_id:
        self.node_ids[index - 1] = last
        self.node_index[last] = index
    self.node_index[node_id] = 0


@internal
@view
def _unbond_at(left_era: uint256) -> uint256:
    """The stake of a node that left in ``left_era`` unbonds ``unbonding_blocks`` after
    that era ends."""
    if left_era == NOT_LEFT:
        return 0
    return genesis_block + (left_era + 1) * era_length + unbonding_blocks


@internal
def _deactivate(node_id: bytes32, left_era: uint256):
    """Take the node out of service; judged for no era from ``left_era`` on."""
    self.nodes[node_id].active = False
    self.node_count -= 1
    self.left_era[node_id] = left_era


@internal
def _store(
    role: uint8,
    identity_key: bytes32,
    encryption_key: bytes32,
    enclave_address: address,
    quote_hash: bytes32,
    measurement: bytes32,
    expiry: uint256,
    quote: Bytes[8192],
    paid: uint256,
):
    assert role >= ROLE_GATEKEEPER and role <= ROLE_GATEWAY, "unknown role"
    assert identity_key != empty(bytes32), "empty identity key"
    assert enclave_address != empty(address), "empty enclave address"
    assert expiry > block.timestamp, "attestation expired"
    assert keccak256(quote) == quote_hash, "quote hash mismatch"
    assert not self.retired_keys[identity_key][encryption_key], "node keys were retired"
    assert not self.retired_keys[identity_key][convert(enclave_address, bytes32)], "node keys were retired"
    previous: Node = self.nodes[identity_key]
    assert not (previous.active and previous.expiry > block.timestamp), "node already active"
    # stake left with the registry belongs to the previous owner
    assert previous.stake == 0 or previous.owner == msg.sender, "node owned by another account"
    if not previous.active:
        # A new node, or one that left or was slashed: every era it served must be
        # judged before it starts again (so leaving cannot dodge a judgment).
        assert self.next_era >= self.left_era[identity_key], "previous eras not closed yet"
        self._list(identity_key)
        self.joined_era[identity_key] = self._era()
        self.left_era[identity_key] = NOT_LEFT
        self.node_count += 1
    # an expired node that never left keeps its tenure
    stake: uint256 = previous.stake + paid
    self.nodes[identity_key] = Node(
        owner=msg.sender,
        role=role,
        identity_key=identity_key,
        encryption_key=encryption_key,
        enclave_address=enclave_address,
        quote_hash=quote_hash,
        measurement=measurement,
        stake=stake,
        expiry=expiry,
        active=True,
    )
    log NodeRegistered(
        node_id=identity_key,
        role=role,
        owner=msg.sender,
        enclave_address=enclave_address,
        quote_hash=quote_hash,
        measurement=measurement,
        expiry=expiry,
        stake=stake,
        quote=quote,
    )


@internal
@view
def _check_renewable(node: Node, expiry: uint256):
    assert node.owner == msg.sender, "only the owner"
    assert node.active, "node is not active"
    assert block.timestamp < node.expiry + renewal_grace, "registration lapsed"
    assert expiry > node.expiry, "expiry not later"


# ----------------------------------------------------------------------------- registration


@external
@payable
def register_genesis_gatekeeper(
    identity_key: bytes32,
    encryption_key: bytes32,
    enclave_address: address,
    quote_hash: bytes32,
    measurement: bytes32,
    expiry: uint256,
    quote: Bytes[8192],
):
    assert msg.sender == self.admin, "only admin"
    self._store(
        ROLE_GATEKEEPER,
        identity_key,
        encryption_key,
        enclave_address,
        quote_hash,
        measurement,
        expiry,
        quote,
        msg.value,
    )


@external
@payable
def register(
    role: uint8,
    identity_key: bytes32,
    encryption_key: bytes32,
    enclave_address: address,
    quote_hash: bytes32,
    measurement: bytes32,
    expiry: uint256,
    attestor_id: bytes32,
    approval: Bytes[65],
    quote: Bytes[8192],
):
    assert msg.value >= self.min_stake, "stake below minimum"
    digest: bytes32 = self._approval_digest(
        role, identity_key, encryption_key, enclave_address, quote_hash, measurement, expiry
    )
    self._check_approval(attestor_id, digest, approval)
    self._store(
        role,
        identity_key,
        encryption_key,
        enclave_address,
        quote_hash,
        measurement,
        expiry,
        quote,
        msg.value,
    )


@external
@payable
def register_storage(node_id: bytes32, signer: address, expiry: uint256, proof: Bytes[65]):
    """A storage node keeps only ciphertext and is trusted for availability alone, so it
    registers without attestation: a stake, and a signing key that proves possession by
    signing (registry, chain, node id, owner, expiry). Its node id is derived from that
    key's address."""
    assert msg.value >= self.min_stake, "stake below minimum"
    assert signer != empty(address), "empty signer"
    assert node_id == keccak256(concat(STORAGE_ID_TAG, convert(signer, bytes20))), "node id does not match signer"
    digest: bytes32 = keccak256(abi_encode(self, chain.id, STORAGE_REGISTRATION_TAG, node_id, msg.sender, expiry))
    assert self._recover(digest, proof) == signer, "proof not signed by the storage key"
    self._store(
        ROLE_STORAGE,
        node_id,
        empty(bytes32),
        signer,
        keccak256(b""),
        empty(bytes32),
        expiry,
        b"",
        msg.value,
    )


@external
def renew(
    node_id: bytes32,
    encryption_key: bytes32,
    enclave_address: address,
    expiry: uint256,
    quote_hash: bytes32,
    measurement: bytes32,
    attestor_id: bytes32,
    approval: Bytes[65],
    quote: Bytes[8192],
):
    """Extend a TEE node's registration over fresh node keys (PODG's rule): the same
    identity key (the node id), a new encryption key and a new enclave address, a fresh
    quote binding them, a later expiry, and an active gatekeeper's approval over the
    registration digest (the node's own gatekeeper enclave may approve itself). From
    this transaction on, only the new keys count. Owner only, while the node is active
    or within ``renewal_grace`` seconds after its expiry."""
    node: Node = self.nodes[node_id]
    self._check_renewable(node, expiry)
    assert node.role != ROLE_STORAGE, "storage nodes renew with renew_storage"
    assert enclave_address != empty(address), "empty enclave address"
    assert encryption_key != empty(bytes32), "empty encryption key"
    assert (
        encryption_key != node.encryption_key and enclave_address != node.enclave_address
    ), "renewal needs fresh node keys"
    assert not self.retired_keys[node_id][encryption_key], "node keys were retired"
    assert not self.retired_keys[node_id][convert(enclave_address, bytes32)], "node keys were retired"
    assert keccak256(quote) == quote_hash, "quote hash mismatch"
    digest: bytes32 = self._approval_digest(
        node.role,
        node_id,
        encryption_key,
        enclave_address,
        quote_hash,
        measurement,
        expiry,
    )
    self._check_approval(attestor_id, digest, approval)
    self.retired_keys[node_id][node.encryption_key] = True
    self.retired_keys[node_id][convert(node.enclave_address, bytes32)] = True
    self.nodes[node_id].encryption_key = encryption_key
    self.nodes[node_id].enclave_address = enclave_address
    self.nodes[node_id].quote_hash = quote_hash
    self.nodes[node_id].measurement = measurement
    self.nodes[node_id].expiry = expiry
    log NodeRenewed(
        node_id=node_id,
        encryption_key=encryption_key,
        enclave_address=enclave_address,
        expiry=expiry,
        quote_hash=quote_hash,
        measurement=measurement,
        quote=quote,
    )


@external
def renew_storage(node_id: bytes32, expiry: uint256, proof: Bytes[65]):
    """Extend a storage node's registration: its signing key signs the registration
    digest again with the later expiry. Owner only, within the same window as renew."""
    node: Node = self.nodes[node_id]
    self._check_renewable(node, expiry)
    assert node.role == ROLE_STORAGE, "not a storage node"
    digest: bytes32 = keccak256(abi_encode(self, chain.id, STORAGE_REGISTRATION_TAG, node_id, msg.sender, expiry))
    assert self._recover(digest, proof) == node.enclave_address, "proof not signed by the storage key"
    self.nodes[node_id].expiry = expiry
    log NodeRenewed(
        node_id=node_id,
        encryption_key=node.encryption_key,
        enclave_address=node.enclave_address,
        expiry=expiry,
        quote_hash=node.quote_hash,
        measurement=node.measurement,
        quote=b"",
    )


# ----------------------------------------------------------------------------- activity


@external
def heartbeat(node_id: bytes32, era: uint256, slot: uint256, signature: Bytes[65]):
    """Anyone relays a node's heartbeat, signed by its enclave key (a storage node's
    signing key) over (registry, chain, HEARTBEAT_TAG, node id, era, slot). Only for the
    current era, the current slot or the one before, once per slot."""
    assert era == self._era(), "not the current era"
    assert slot < HEARTBEAT_SLOTS, "no such slot"
    current: uint256 = self._slot()
    assert slot <= current, "slot in the future"
    assert slot + 1 >= current, "slot too old"
    node: Node = self.nodes[node_id]
    assert node.active and node.expiry > block.timestamp, "node is not active"
    bit: uint256 = 1 << slot
    assert self.activity_words[era][node_id] & bit == 0, "heartbeat already counted"
    digest: bytes32 = keccak256(abi_encode(self, chain.id, HEARTBEAT_TAG, node_id, era, slot))
    signer: address = self._recover(digest, signature)
    assert signer != empty(address) and signer == node.enclave_address, "not signed by the node"
    self._add_activity(node_id, era, bit)
    log Heartbeat(node_id=node_id, era=era, slot=slot)


@external
def set_reporter(reporter: address):
    """Admin, once: the ExecutionLedger, whose accepted work counts as activity."""
    assert msg.sender == self.admin, "only admin"
    assert self.reporter == empty(address), "reporter already set"
    assert reporter != empty(address), "empty reporter"
    self.reporter = reporter


@external
def record_activity(node_id: bytes32):
    """The reporter (ExecutionLedger) counts one unit of work for the node this era."""
    assert msg.sender == self.reporter, "only the reporter"
    self._add_activity(node_id, self._era(), 0)


# ----------------------------------------------------------------------------- eras


@external
def close_era(era: uint256) -> uint256:
    """Judge a finished era (anyone; eras close in order, each once). Judged: the nodes
    registered for the whole era (joined before it, left or slashed after it). Per role,
    ``max`` is the highest activity among the judged; if it is 0 nobody of that role is
    judged. Unresponsive: activity * 4 < max (workers, storage, gateways) or
    activity * 4 < max * 3 (gatekeepers). Returns how many nodes were slashed."""
    assert era == self.next_era, "eras close in order"
    assert era < self._era(), "era is not over"
    self.next_era = era + 1
    ids: DynArray[bytes32, MAX_NODES] = []
    roles: DynArray[uint8, MAX_NODES] = []
    counts: DynArray[uint256, MAX_NODES] = []
    maxima: uint256[5] = empty(uint256[5])
    for node_id: bytes32 in self.node_ids:
        if self.joined_era[node_id] >= era or self.left_era[node_id] <= era:
            continue
        role: uint8 = self.nodes[node_id].role
        count: uint256 = self.activity_words[era][node_id] >> 8
        ids.append(node_id)
        roles.append(role)
        counts.append(count)
        if count > maxima[role]:
            maxima[role] = count
    slashed: uint256 = 0
    amount_total: uint256 = 0
    for i: uint256 in range(len(ids), bound=MAX_NODES):
        top: uint256 = maxima[roles[i]]
        limit: uint256 = top  # judged against a quarter of the maximum
        if roles[i] == ROLE_GATEKEEPER:
            limit = top * 3  # gatekeepers against three quarters
        if counts[i] * 4 >= limit:
            continue
        node_id: bytes32 = ids[i]
        amount: uint256 = self.nodes[node_id].stake * slash_bps // BPS
        self.nodes[node_id].stake -= amount
        if self.nodes[node_id].active:
            self._deactivate(node_id, era + 1)
        else:
            self.left_era[node_id] = era + 1  # had left already: unbonds sooner
        slashed += 1
        amount_total += amount
        log NodeSlashed(node_id=node_id, era=era, activity=counts[i], max_activity=top, amount=amount)
    self.slashed_total += amount_total
    log EraClosed(
        era=era,
        judged=len(ids),
        slashed=slashed,
        amount=amount_total,
        max_gatekeeper=maxima[1],
        max_worker=maxima[2],
        max_storage=maxima[3],
        max_gateway=maxima[4],
    )
    return slashed


# ----------------------------------------------------------------------------- leaving


@external
def unregister(node_id: bytes32):
    """Owner: leave. The node is inactive at once; the era it leaves in is not judged,
    earlier ones still are; the stake unbonds ``unbonding_blocks`` after this era."""
    assert self.nodes[node_id].owner == msg.sender, "only the owner"
    assert self.nodes[node_id].active, "node is not active"
    era: uint256 = self._era()
    self._deactivate(node_id, era)
    log NodeUnregistered(node_id=node_id, era=era, unbond_at=self._unbond_at(era))


@external
@nonreentrant
def withdraw_stake(node_id: bytes32):
    """Owner: take back what is left of the stake of an inactive node, once it has
    unbonded and every era it served in is closed. The node leaves the list."""
    node: Node = self.nodes[node_id]
    left: uint256 = self.left_era[node_id]
    assert node.owner == msg.sender, "only the owner"
    assert not node.active, "node is active"
    assert self.node_index[node_id] != 0, "nothing to withdraw"
    assert block.number >= self._unbond_at(left), "stake is unbonding"
    assert self.next_era >= left, "eras of the node not closed yet"
    self.nodes[node_id].stake = 0
    self._delist(node_id)
    if node.stake > 0:
        raw_call(msg.sender, b"", value=node.stake)
    log StakeWithdrawn(node_id=node_id, owner=msg.sender, amount=node.stake)


@external
@nonreentrant
def withdraw_slashed(to: address):
    """Admin: pay out the slashed pool (the insurance / treasury pool)."""
    assert msg.sender == self.admin, "only admin"
    assert to != empty(address), "empty recipient"
    amount: uint256 = self.slashed_total
    self.slashed_total = 0
    if amount > 0:
        raw_call(to, b"", value=amount)
    log SlashedWithdrawn(to=to, amount=amount)


# ----------------------------------------------------------------------------- views


@external
@view
def get_node(node_id: bytes32) -> Node:
    return self.nodes[node_id]


@external
@view
def get_tenure(node_id: bytes32) -> Tenure:
    if self.nodes[node_id].owner == empty(address):
        return empty(Tenure)  # never registered
    left: uint256 = self.left_era[node_id]
    return Tenure(
        joined_era=self.joined_era[node_id],
        left_era=left,
        unbond_at=self._unbond_at(left),
        listed=self.node_index[node_id] != 0,
    )


@external
@view
def is_active(node_id: bytes32, role: uint8) -> bool:
    return self._is_active(node_id, role)


@external
@view
def get_enclave_address(node_id: bytes32) -> address:
    return self.nodes[node_id].enclave_address


@external
@view
def current_era() -> uint256:
    return self._era()


@external
@view
def current_slot() -> uint256:
    return self._slot()


@external
@view
def get_activity(era: uint256, node_id: bytes32) -> uint256:
    return self.activity_words[era][node_id] >> 8


@external
@view
def get_heartbeat_slots(era: uint256, node_id: bytes32) -> uint256:
    """Bitmap of the slots of ``era`` the node sent a heartbeat for."""
    return self.activity_words[era][node_id] & 255


@external
@view
def get_node_ids() -> DynArray[bytes32, MAX_NODES]:
    return self.node_ids
