# pragma version ~=0.4.3
"""
@title ContractRegistry
@notice Confidential contracts deployed on sealbridge. A deployer names a contract id,
    the hash of its code, one gatekeeper (which derives the contract key), the
    workers that execute it and a commitment to the deployer's identity key (only
    that key's signed deploy command may install the code; the key itself stays off
    chain). The gatekeeper's enclave then publishes the contract's public command and
    message keys, signed with its enclave key (workers get the contract key off chain,
    from the gatekeeper committee's threshold release; `wrapped_key` stays empty).
    Commands may only be sent once the key is published.
    Key rotation: the deployer asks for a new key version; the contract's gatekeeper
    derives it (version v of the contract key) and publishes its public keys, signed
    with its enclave key. The version, its public keys and the block of the switch
    (`rotated_at`) change together in that one transaction; workers switch to the new
    key after that block, and gatekeepers stop releasing the old version once a
    checkpoint at or after `rotated_at` is recorded.
"""

ROLE_GATEKEEPER: constant(uint8) = 1
ROLE_WORKER: constant(uint8) = 2
MAX_WORKERS: constant(uint256) = 16
ROTATION_TAG: constant(bytes32) = keccak256("sealbridge/contract-key-rotation/v1")


interface INodeRegistry:
    def is_active(node_id: bytes32, role: uint8) -> bool: view
    def get_enclave_address(node_id: bytes32) -> address: view


struct ContractInfo:
    code_hash: bytes32
    deployer: address
    gatekeeper_id: bytes32
    workers: DynArray[bytes32, MAX_WORKERS]
    deployer_commitment: bytes32
    contract_public_key: bytes32
    message_key: bytes32
    wrapped_key: Bytes[256]
    key_published: bool
    key_version: uint256
    rotated_at: uint256
    rotation_pending: bool


event ContractDeployed:
    contract_id: indexed(bytes32)
    deployer: address
    code_hash: bytes32
    gatekeeper_id: bytes32
    workers: DynArray[bytes32, MAX_WORKERS]
    deployer_commitment: bytes32


event ContractKeyPublished:
    contract_id: indexed(bytes32)
    contract_public_key: bytes32
    message_key: bytes32
    wrapped_key: Bytes[256]


event KeyRotationRequested:
    contract_id: indexed(bytes32)
    version: uint256


event ContractKeyRotated:
    contract_id: indexed(bytes32)
    version: uint256
    contract_public_key: bytes32
    message_key: bytes32


node_registry: public(address)
contract_count: public(uint256)
contracts: HashMap[bytes32, ContractInfo]
assigned: HashMap[bytes32, HashMap[bytes32, bool]]


@deploy
def __init__(node_registry: address):
    self.node_registry = node_registry


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


@external
def deploy(
    contract_id: bytes32,
    code_hash: bytes32,
    gatekeeper_id: bytes32,
    workers: DynArray[bytes32, MAX_WORKERS],
    deployer_commitment: bytes32,
):
    assert contract_id != empty(bytes32), "empty contract id"
    assert deployer_commitment != empty(bytes32), "empty deployer commitment"
    assert self.contracts[contract_id].deployer == empty(address), "contract id already used"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    assert staticcall registry.is_active(gatekeeper_id, ROLE_GATEKEEPER), "gatekeeper is not active"
    assert len(workers) >= 1, "no workers"
    for worker: bytes32 in workers:
        assert staticcall registry.is_active(worker, ROLE_WORKER), "worker is not active"
        assert not self.assigned[contract_id][worker], "duplicate worker"
        self.assigned[contract_id][worker] = True
    self.contracts[contract_id] = ContractInfo(
        code_hash=code_hash,
        deployer=msg.sender,
        gatekeeper_id=gatekeeper_id,
        workers=workers,
        deployer_commitment=deployer_commitment,
        contract_public_key=empty(bytes32),
        message_key=empty(bytes32),
        wrapped_key=b"",
        key_published=False,
        key_version=0,
        rotated_at=0,
        rotation_pending=False,
    )
    self.contract_count += 1
    log ContractDeployed(
        contract_id=contract_id,
        deployer=msg.sender,
        code_hash=code_hash,
        gatekeeper_id=gatekeeper_id,
        workers=workers,
        deployer_commitment=deployer_commitment,
    )


@external
def publish_contract_key(
    contract_id: bytes32,
    contract_public_key: bytes32,
    message_key: bytes32,
    wrapped_key: Bytes[256],
    signature: Bytes[65],
):
    info: ContractInfo = self.contracts[contract_id]
    assert info.deployer != empty(address), "unknown contract"
    assert not info.key_published, "key already published"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    assert staticcall registry.is_active(info.gatekeeper_id, ROLE_GATEKEEPER), "gatekeeper is not active"
    digest: bytes32 = keccak256(
        abi_encode(
            self, chain.id, contract_id, contract_public_key, message_key, keccak256(wrapped_key)
        )
    )
    signer: address = self._recover(digest, signature)
    assert signer != empty(address), "invalid signature"
    assert signer == staticcall registry.get_enclave_address(info.gatekeeper_id), "not signed by gatekeeper"
    self.contracts[contract_id].contract_public_key = contract_public_key
    self.contracts[contract_id].message_key = message_key
    self.contracts[contract_id].wrapped_key = wrapped_key
    self.contracts[contract_id].key_published = True
    log ContractKeyPublished(
        contract_id=contract_id,
        contract_public_key=contract_public_key,
        message_key=message_key,
        wrapped_key=wrapped_key,
    )


@external
def request_key_rotation(contract_id: bytes32):
    info: ContractInfo = self.contracts[contract_id]
    assert info.deployer != empty(address), "unknown contract"
    assert msg.sender == info.deployer, "only the deployer may rotate the key"
    assert info.key_published, "key not published yet"
    assert not info.rotation_pending, "a rotation is already pending"
    self.contracts[contract_id].rotation_pending = True
    log KeyRotationRequested(contract_id=contract_id, version=info.key_version + 1)


@external
def rotate_contract_key(
    contract_id: bytes32,
    version: uint256,
    contract_public_key: bytes32,
    message_key: bytes32,
    signature: Bytes[65],
):
    info: ContractInfo = self.contracts[contract_id]
    assert info.deployer != empty(address), "unknown contract"
    assert info.rotation_pending, "no rotation pending"
    assert version == info.key_version + 1, "not the next key version"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    assert staticcall registry.is_active(info.gatekeeper_id, ROLE_GATEKEEPER), "gatekeeper is not active"
    digest: bytes32 = keccak256(
        abi_encode(
            self, chain.id, ROTATION_TAG, contract_id, version, contract_public_key, message_key
        )
    )
    signer: address = self._recover(digest, signature)
    assert signer != empty(address), "invalid signature"
    assert signer == staticcall registry.get_enclave_address(info.gatekeeper_id), "not signed by gatekeeper"
    assert contract_public_key != info.contract_public_key, "the key did not change"
    self.contracts[contract_id].contract_public_key = contract_public_key
    self.contracts[contract_id].message_key = message_key
    self.contracts[contract_id].key_version = version
    self.contracts[contract_id].rotated_at = block.number
    self.contracts[contract_id].rotation_pending = False
    log ContractKeyRotated(
        contract_id=contract_id,
        version=version,
        contract_public_key=contract_public_key,
        message_key=message_key,
    )


@external
@view
def get_contract(contract_id: bytes32) -> ContractInfo:
    return self.contracts[contract_id]


@external
@view
def is_assigned(contract_id: bytes32, worker_id: bytes32) -> bool:
    return self.assigned[contract_id][worker_id]


@external
@view
def is_key_published(contract_id: bytes32) -> bool:
    return self.contracts[contract_id].key_published
