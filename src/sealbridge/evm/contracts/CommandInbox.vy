# pragma version ~=0.4.3
"""
@title CommandInbox
@notice The canonical, ordered log of encrypted commands. Each command is one event
    carrying a global sequence number; the chain's order of events is the order in
    which every executor applies them. The inbox never sees plaintext.
"""

MAX_CIPHERTEXT: constant(uint256) = 32768  # a deploy command carries the contract's code
MAX_BATCH_CIPHERTEXT: constant(uint256) = 4096
MAX_BATCH: constant(uint256) = 64


interface IContractRegistry:
    def is_key_published(contract_id: bytes32) -> bool: view


event Command:
    contract_id: indexed(bytes32)
    seq: uint256
    sender: address
    ciphertext: Bytes[MAX_CIPHERTEXT]


contract_registry: public(address)
command_count: public(uint256)


@deploy
def __init__(contract_registry: address):
    self.contract_registry = contract_registry


@internal
def _submit(contract_id: bytes32, ciphertext: Bytes[MAX_CIPHERTEXT]) -> uint256:
    assert staticcall IContractRegistry(self.contract_registry).is_key_published(contract_id), "contract key not published"
    seq: uint256 = self.command_count
    self.command_count = seq + 1
    log Command(contract_id=contract_id, seq=seq, sender=msg.sender, ciphertext=ciphertext)
    return seq


@external
def submit(contract_id: bytes32, ciphertext: Bytes[MAX_CIPHERTEXT]) -> uint256:
    return self._submit(contract_id, ciphertext)


@external
def submit_batch(
    contract_ids: DynArray[bytes32, MAX_BATCH],
    ciphertexts: DynArray[Bytes[MAX_BATCH_CIPHERTEXT], MAX_BATCH],
) -> uint256:
    assert len(contract_ids) == len(ciphertexts), "length mismatch"
    assert len(contract_ids) >= 1, "empty batch"
    first: uint256 = self.command_count
    for i: uint256 in range(len(contract_ids), bound=MAX_BATCH):
        self._submit(contract_ids[i], ciphertexts[i])
    return first
