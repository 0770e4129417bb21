# pragma version ~=0.4.3
"""
@title NodeRegistry
@notice Registry of attested TEE nodes (gatekeepers, workers, storage, gateways).
    The deployer is the admin and bootstraps the first gatekeeper. Every other node is
    admitted by an active gatekeeper's enclave, which signs the registration digest
    after verifying the node's quote off-chain. A node is identified by its Ed25519
    identity key; its enclave's secp256k1 key (``enclave_address``) signs everything
    the node later puts on chain.
"""

ROLE_GATEKEEPER: constant(uint8) = 1
ROLE_WORKER: constant(uint8) = 2
ROLE_STORAGE: constant(uint8) = 3
ROLE_GATEWAY: constant(uint8) = 4
STORAGE_ID_TAG: constant(Bytes[26]) = b"sealbridge/storage-node/v1"
STORAGE_REGISTRATION_TAG: constant(bytes32) = keccak256("sealbridge/storage-registration/v1")


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


admin: public(address)
min_stake: public(uint256)
node_count: public(uint256)
nodes: HashMap[bytes32, Node]


@deploy
def __init__(min_stake: uint256):
    self.admin = msg.sender
    self.min_stake = min_stake


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
    previous: Node = self.nodes[identity_key]
    assert not (previous.active and previous.expiry > block.timestamp), "node already active"
    stake: uint256 = previous.stake + paid
    if not previous.active:
        self.node_count += 1
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
    assert self._is_active(attestor_id, ROLE_GATEKEEPER), "attestor is not an active gatekeeper"
    digest: bytes32 = keccak256(
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
    signer: address = self._recover(digest, approval)
    assert signer != empty(address), "invalid approval signature"
    assert signer == self.nodes[attestor_id].enclave_address, "approval not signed by attestor"
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
@view
def get_node(node_id: bytes32) -> Node:
    return self.nodes[node_id]


@external
@view
def is_active(node_id: bytes32, role: uint8) -> bool:
    return self._is_active(node_id, role)


@external
@view
def get_enclave_address(node_id: bytes32) -> address:
    return self.nodes[node_id].enclave_address
