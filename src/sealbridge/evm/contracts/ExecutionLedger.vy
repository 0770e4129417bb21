# pragma version ~=0.4.3
"""
@title ExecutionLedger
@notice Competitive execution (RaceTEE) and threshold-confirmed checkpoints.
    Every contract has one chain of accepted outputs. An output covers the block range
    (start, end]: it says "after the blocks up to `end`, whose hash is `end_hash`, the
    contract's state root is R and it has applied C commands". Any assigned worker may
    submit one, signed by its enclave; the ledger accepts the first valid output whose
    start equals the last accepted end and whose end hash is the chain's own
    `blockhash(end)`, and refuses every other (a slower worker's output for a range
    already covered, or an output computed from forged blocks).
    One submission may cover several contracts (a worker's domain) with a common end, and
    may carry a checkpoint: the encrypted states of those contracts at `end`. The
    checkpoint ciphertext lives on storage nodes; the ledger records its hash only with
    confirmations from `storage_threshold` distinct active storage nodes, each signing
    (ledger, chain, blob hash, size). A small checkpoint may instead go on chain inline.
    Every accepted submission counts as one unit of activity of its worker in the
    NodeRegistry's current era, and so does every storage confirmation counted for it.
"""

ROLE_WORKER: constant(uint8) = 2
ROLE_STORAGE: constant(uint8) = 3
MAX_BATCH: constant(uint256) = 16
MAX_STORAGE_SIGS: constant(uint256) = 16
MAX_INLINE: constant(uint256) = 8192
OUTPUT_TAG: constant(bytes32) = keccak256("sealbridge/execution-output/v1")
STORAGE_TAG: constant(bytes32) = keccak256("sealbridge/checkpoint-stored/v1")


interface INodeRegistry:
    def is_active(node_id: bytes32, role: uint8) -> bool: view
    def get_enclave_address(node_id: bytes32) -> address: view
    def record_activity(node_id: bytes32): nonpayable


interface IContractRegistry:
    def is_assigned(contract_id: bytes32, worker_id: bytes32) -> bool: view


struct Output:
    end: uint256
    end_hash: bytes32
    state_root: bytes32
    commands_applied: uint256
    node_id: bytes32
    accepted_at: uint256


struct Checkpoint:
    height: uint256
    block_hash: bytes32
    blob_hash: bytes32
    size: uint256
    state_root: bytes32
    inline: bool
    recorded_at: uint256


event OutputAccepted:
    contract_id: indexed(bytes32)
    node_id: indexed(bytes32)
    start: uint256
    end: uint256
    end_hash: bytes32
    state_root: bytes32
    commands_applied: uint256


event CheckpointRecorded:
    blob_hash: indexed(bytes32)
    node_id: indexed(bytes32)
    height: uint256
    block_hash: bytes32
    size: uint256
    contract_ids: DynArray[bytes32, MAX_BATCH]
    inline_blob: Bytes[MAX_INLINE]


node_registry: public(address)
contract_registry: public(address)
storage_threshold: public(uint256)
outputs: HashMap[bytes32, Output]
checkpoints: HashMap[bytes32, Checkpoint]
accepted_count: public(uint256)


@deploy
def __init__(node_registry: address, contract_registry: address, storage_threshold: uint256):
    assert storage_threshold >= 1, "storage threshold must be at least 1"
    self.node_registry = node_registry
    self.contract_registry = contract_registry
    self.storage_threshold = storage_threshold


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
def _count_confirmations(
    blob_hash: bytes32,
    size: uint256,
    storage_ids: DynArray[bytes32, MAX_STORAGE_SIGS],
    storage_sigs: DynArray[Bytes[65], MAX_STORAGE_SIGS],
) -> uint256:
    assert len(storage_ids) == len(storage_sigs), "storage ids and signatures differ in length"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    digest: bytes32 = keccak256(abi_encode(self, chain.id, STORAGE_TAG, blob_hash, size))
    previous: uint256 = 0
    valid: uint256 = 0
    for i: uint256 in range(len(storage_ids), bound=MAX_STORAGE_SIGS):
        sid: bytes32 = storage_ids[i]
        assert convert(sid, uint256) > previous, "storage ids must be strictly increasing"
        previous = convert(sid, uint256)
        if not staticcall registry.is_active(sid, ROLE_STORAGE):
            continue
        signer: address = self._recover(digest, storage_sigs[i])
        if signer != empty(address) and signer == staticcall registry.get_enclave_address(sid):
            valid += 1
            extcall registry.record_activity(sid)
    return valid


@external
def submit(
    contract_ids: DynArray[bytes32, MAX_BATCH],
    starts: DynArray[uint256, MAX_BATCH],
    end: uint256,
    end_hash: bytes32,
    state_roots: DynArray[bytes32, MAX_BATCH],
    commands_applied: DynArray[uint256, MAX_BATCH],
    checkpoint_hash: bytes32,
    checkpoint_size: uint256,
    node_id: bytes32,
    signature: Bytes[65],
    storage_ids: DynArray[bytes32, MAX_STORAGE_SIGS],
    storage_sigs: DynArray[Bytes[65], MAX_STORAGE_SIGS],
    inline_blob: Bytes[MAX_INLINE],
):
    count: uint256 = len(contract_ids)
    assert count > 0, "no contracts"
    assert len(starts) == count and len(state_roots) == count, "arrays differ in length"
    assert len(commands_applied) == count, "arrays differ in length"
    registry: INodeRegistry = INodeRegistry(self.node_registry)
    assert staticcall registry.is_active(node_id, ROLE_WORKER), "node is not an active worker"
    assert end < block.number, "end block is not in the past"
    assert end + 256 >= block.number, "end block is older than 256 blocks"
    assert blockhash(end) == end_hash, "end hash does not match the chain"
    digest: bytes32 = keccak256(
        abi_encode(
            self,
            chain.id,
            OUTPUT_TAG,
            contract_ids,
            starts,
            end,
            end_hash,
            state_roots,
            commands_applied,
            checkpoint_hash,
            checkpoint_size,
        )
    )
    signer: address = self._recover(digest, signature)
    assert signer != empty(address), "invalid signature"
    assert signer == staticcall registry.get_enclave_address(node_id), "not signed by worker enclave"
    contracts: IContractRegistry = IContractRegistry(self.contract_registry)
    for i: uint256 in range(count, bound=MAX_BATCH):
        cid: bytes32 = contract_ids[i]
        assert staticcall contracts.is_assigned(cid, node_id), "worker not assigned to contract"
        previous: Output = self.outputs[cid]
        assert starts[i] == previous.end, "range does not start at the last accepted end"
        assert end > starts[i], "empty range"
        assert commands_applied[i] >= previous.commands_applied, "command count went backwards"
        self.outputs[cid] = Output(
            end=end,
            end_hash=end_hash,
            state_root=state_roots[i],
            commands_applied=commands_applied[i],
            node_id=node_id,
            accepted_at=block.number,
        )
        log OutputAccepted(
            contract_id=cid,
            node_id=node_id,
            start=starts[i],
            end=end,
            end_hash=end_hash,
            state_root=state_roots[i],
            commands_applied=commands_applied[i],
        )
    self.accepted_count += count
    extcall registry.record_activity(node_id)
    if checkpoint_hash == empty(bytes32):
        assert len(inline_blob) == 0 and len(storage_ids) == 0, "checkpoint data without a hash"
        return
    inline: bool = len(inline_blob) > 0
    if inline:
        assert keccak256(inline_blob) == checkpoint_hash, "inline checkpoint hash mismatch"
        assert len(inline_blob) == checkpoint_size, "inline checkpoint size mismatch"
    else:
        confirmed: uint256 = self._count_confirmations(
            checkpoint_hash, checkpoint_size, storage_ids, storage_sigs
        )
        assert confirmed >= self.storage_threshold, "too few storage confirmations"
    for i: uint256 in range(count, bound=MAX_BATCH):
        self.checkpoints[contract_ids[i]] = Checkpoint(
            height=end,
            block_hash=end_hash,
            blob_hash=checkpoint_hash,
            size=checkpoint_size,
            state_root=state_roots[i],
            inline=inline,
            recorded_at=block.number,
        )
    log CheckpointRecorded(
        blob_hash=checkpoint_hash,
        node_id=node_id,
        height=end,
        block_hash=end_hash,
        size=checkpoint_size,
        contract_ids=contract_ids,
        inline_blob=inline_blob,
    )


@external
@view
def get_output(contract_id: bytes32) -> Output:
    return self.outputs[contract_id]


@external
@view
def get_checkpoint(contract_id: bytes32) -> Checkpoint:
    return self.checkpoints[contract_id]
