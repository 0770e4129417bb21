# pragma version ~=0.4.3
"""
@title OutputRecords
@notice Outputs (state roots after a block) attested by assigned workers. Any host may
    relay a record; the enclave's signature over the digest authenticates it. The latest
    record per (contract, node) is stored; block numbers must strictly increase, so a
    signed record cannot be replayed or rolled back.
"""

ROLE_WORKER: constant(uint8) = 2


interface INodeRegistry:
    def is_active(node_id: bytes32, role: uint8) -> bool: view
    def get_enclave_address(node_id: bytes32) -> address: view


interface IContractRegistry:
    def is_assigned(contract_id: bytes32, worker_id: bytes32) -> bool: view


struct OutputInfo:
    block_number: uint256
    state_root: bytes32
    command_count: uint256
    recorded_at: uint256
    exists: bool


event OutputRecorded:
    contract_id: indexed(bytes32)
    node_id: indexed(bytes32)
    block_number: uint256
    state_root: bytes32
    command_count: uint256


node_registry: public(address)
contract_registry: public(address)
outputs: HashMap[bytes32, HashMap[bytes32, OutputInfo]]


@deploy
def __init__(node_registry: address, contract_registry: address):
    self.node_registry = node_registry
    self.contract_registry = contract_registry


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
def record(
    contract_id: bytes32,
    block_number: uint256,
    state_root: bytes32,
    command_count: uint256,
    node_id: bytes32,
    signature: Bytes[65],
):
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    assert staticcall registry.is_active(node_id, ROLE_WORKER), "node is not an active worker"
    assert staticcall IContractRegistry(self.contract_registry).is_assigned(contract_id, node_id), "worker not assigned to contract"
    digest: bytes32 = keccak256(
        abi_encode(self, chain.id, contract_id, block_number, state_root, command_count)
    )
    signer: address = self._recover(digest, signature)
    assert signer != empty(address), "invalid signature"
    assert signer == staticcall registry.get_enclave_address(node_id), "not signed by worker enclave"
    previous: OutputInfo = self.outputs[contract_id][node_id]
    assert not previous.exists or block_number > previous.block_number, "stale output"
    self.outputs[contract_id][node_id] = OutputInfo(
        block_number=block_number,
        state_root=state_root,
        command_count=command_count,
        recorded_at=block.number,
        exists=True,
    )
    log OutputRecorded(
        contract_id=contract_id,
        node_id=node_id,
        block_number=block_number,
        state_root=state_root,
        command_count=command_count,
    )


@external
@view
def get_output(contract_id: bytes32, node_id: bytes32) -> OutputInfo:
    return self.outputs[contract_id][node_id]
