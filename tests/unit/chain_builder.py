"""A synthetic chain in the real formats, for tests of the runtime's verified chain view.

No node runs: :class:`ChainBuilder` makes hash-linked Prague-style headers (every optional
field present, real field sizes) whose receipts root is the root of the receipts trie of
the block's receipts, and whose logs are encoded exactly as the Vyper management
contracts emit them (topic 0 is the keccak of the event signature, indexed arguments are
the next topics, the rest is ``eth_abi.encode`` of the non-indexed arguments). The
runtime cannot tell these blocks from a node's: it checks the same hashes and roots.

A block is built (:meth:`ChainBuilder.build`) without becoming part of the chain, so a
test can tamper with it first; :meth:`ChainBuilder.append` makes it the new head.
:meth:`ChainBuilder.fork` starts a sibling chain from an earlier block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec
import rlp
from eth_abi.abi import decode as abi_decode

from sealbridge.chain.lightclient import (
    BlockEvidence,
    EventLog,
    HeaderFields,
    ReceiptFields,
    compute_header_hash,
)
from sealbridge.chain.proofs import AccountProof, SlotProof, slot_key
from sealbridge.core.ids import keccak
from sealbridge.runtime.chainview import (
    COMMAND_TOPIC,
)
from sealbridge.runtime.messages import BlockInput, ChainConfig, InboxCommand
from sealbridge.sim import management_logs as logs
from sealbridge.sim.evm_blocks import make_header as sim_make_header
from sealbridge.sim.evm_blocks import make_receipts

replace = msgspec.structs.replace

CHAIN_ID = 31337
ANCHOR_NUMBER = 100
INBOX = keccak(b"test/CommandInbox")[:20]
REGISTRY = keccak(b"test/ContractRegistry")[:20]
LEDGER = keccak(b"test/ExecutionLedger")[:20]
STRANGER = keccak(b"test/some other contract")[:20]  # emits look-alike events
USER = keccak(b"test/user account")[:20]  # msg.sender of the inbox transactions
NODE_ID = keccak(b"test/worker node id")

GENESIS_TIME = 1_750_000_000
SLOT_SECONDS = 12


# ----------------------------------------------------------------------------- events


def command_log(
    contract_id: bytes,
    seq: int,
    ciphertext: bytes,
    *,
    sender: bytes = USER,
    address: bytes = INBOX,
) -> EventLog:
    """``CommandInbox.Command``, from the test inbox by default."""
    return logs.command_log(contract_id, seq, ciphertext, sender=sender, address=address)


def contract_deployed_log(
    contract_id: bytes,
    *,
    code_hash: bytes,
    workers: Sequence[bytes],
    deployer_commitment: bytes,
    gatekeeper_id: bytes = b"\x0b" * 32,
    deployer: bytes = USER,
    address: bytes = REGISTRY,
) -> EventLog:
    """``ContractRegistry.ContractDeployed``, from the test registry by default."""
    return logs.contract_deployed_log(
        contract_id,
        code_hash=code_hash,
        workers=workers,
        deployer_commitment=deployer_commitment,
        gatekeeper_id=gatekeeper_id,
        deployer=deployer,
        address=address,
    )


def key_published_log(
    contract_id: bytes,
    command_key: bytes,
    message_key: bytes,
    wrapped_key: bytes = b"",
    *,
    address: bytes = REGISTRY,
) -> EventLog:
    """``ContractRegistry.ContractKeyPublished``, from the test registry by default."""
    return logs.key_published_log(
        contract_id,
        command_key,
        message_key,
        wrapped_key or keccak(contract_id) * 3,
        address=address,
    )


def output_accepted_log(
    contract_id: bytes,
    *,
    start: int,
    end: int,
    end_hash: bytes,
    state_root: bytes,
    commands_applied: int,
    node_id: bytes = NODE_ID,
    address: bytes = LEDGER,
) -> EventLog:
    """``ExecutionLedger.OutputAccepted``, from the test ledger by default."""
    return logs.output_accepted_log(
        contract_id,
        start=start,
        end=end,
        end_hash=end_hash,
        state_root=state_root,
        commands_applied=commands_applied,
        node_id=node_id,
        address=address,
    )


def checkpoint_recorded_log(
    blob_hash: bytes,
    *,
    height: int,
    block_hash: bytes,
    size: int,
    contract_ids: Sequence[bytes],
    inline_blob: bytes = b"",
    node_id: bytes = NODE_ID,
    address: bytes = LEDGER,
) -> EventLog:
    """``ExecutionLedger.CheckpointRecorded``, from the test ledger by default."""
    return logs.checkpoint_recorded_log(
        blob_hash,
        height=height,
        block_hash=block_hash,
        size=size,
        contract_ids=contract_ids,
        inline_blob=inline_blob,
        node_id=node_id,
        address=address,
    )


# ----------------------------------------------------------------------------- blocks


def make_header(
    *, parent_hash: bytes, number: int, receipts: Sequence[ReceiptFields], salt: bytes = b""
) -> HeaderFields:
    """A Prague header over ``receipts`` (``salt`` tells sibling chains apart), one slot
    per block after ``GENESIS_TIME``."""
    return sim_make_header(
        parent_hash=parent_hash,
        number=number,
        receipts=receipts,
        timestamp=GENESIS_TIME + SLOT_SECONDS * number,
        salt=salt,
    )


def block_hash_of(evidence: BlockEvidence) -> bytes:
    return compute_header_hash(evidence.header)


def as_input(evidence: BlockEvidence, **fields: object) -> BlockInput:
    """The BlockInput a host sends for ``evidence`` (extra fields: what a host adds)."""
    return BlockInput(
        number=evidence.header.number,
        block_hash=block_hash_of(evidence),
        evidence=evidence,
        **fields,  # type: ignore[arg-type]
    )


def commands_in(evidence: BlockEvidence, inbox: bytes = INBOX) -> list[InboxCommand]:
    """The inbox's Command events of a block, decoded here independently of the runtime,
    with block-wide log indices: what a host would hand an unverified runtime."""
    commands: list[InboxCommand] = []
    log_index = 0
    for tx_index, receipt in enumerate(evidence.receipts):
        for log in receipt.logs:
            if log.address == inbox and log.topics and log.topics[0] == COMMAND_TOPIC:
                seq, _sender, ciphertext = abi_decode(["uint256", "address", "bytes"], log.data)
                commands.append(
                    InboxCommand(
                        contract_id=log.topics[1],
                        seq=seq,
                        tx_index=tx_index,
                        log_index=log_index,
                        ciphertext=ciphertext,
                    )
                )
            log_index += 1
    return commands


class ChainBuilder:
    """Hash-linked blocks from an anchor block, built one at a time."""

    def __init__(
        self,
        *,
        chain_id: int = CHAIN_ID,
        anchor_number: int = ANCHOR_NUMBER,
        salt: bytes = b"",
    ) -> None:
        self.chain_id = chain_id
        self.salt = salt
        self.seq = 0  # the inbox's command counter
        anchor = BlockEvidence(
            header=make_header(
                parent_hash=keccak(b"test/before the anchor"), number=anchor_number, receipts=[]
            ),
            receipts=[],
        )
        self.anchor_number = anchor_number
        self.blocks: dict[int, BlockEvidence] = {anchor_number: anchor}
        self.hashes: dict[int, bytes] = {anchor_number: block_hash_of(anchor)}
        self.number = anchor_number

    def config(self) -> ChainConfig:
        return ChainConfig(
            chain_id=self.chain_id,
            command_inbox=INBOX,
            contract_registry=REGISTRY,
            execution_ledger=LEDGER,
            anchor_number=self.anchor_number,
            anchor_hash=self.hashes[self.anchor_number],
        )

    @property
    def head_hash(self) -> bytes:
        return self.hashes[self.number]

    def command(self, contract_id: bytes, ciphertext: bytes, **kw: bytes) -> EventLog:
        """A Command log carrying the inbox's next sequence number."""
        log = command_log(contract_id, self.seq, ciphertext, **kw)
        self.seq += 1
        return log

    def build(self, *txs: Sequence[EventLog]) -> BlockEvidence:
        """The next block (one receipt per transaction), not yet part of the chain."""
        receipts = make_receipts(txs)
        header = make_header(
            parent_hash=self.head_hash, number=self.number + 1, receipts=receipts, salt=self.salt
        )
        return BlockEvidence(header=header, receipts=receipts)

    def append(self, evidence: BlockEvidence) -> BlockEvidence:
        header = evidence.header
        if header.number != self.number + 1 or header.parent_hash != self.head_hash:
            raise ValueError("the block does not extend this chain")
        self.number = header.number
        self.blocks[self.number] = evidence
        self.hashes[self.number] = block_hash_of(evidence)
        return evidence

    def next(self, *txs: Sequence[EventLog]) -> BlockEvidence:
        """Build the next block and make it the head."""
        return self.append(self.build(*txs))

    def next_with_state(self, state_root: bytes, *txs: Sequence[EventLog]) -> BlockEvidence:
        """The next block, with ``state_root`` in its header (see :func:`registry_state`)."""
        block = self.build(*txs)
        return self.append(replace(block, header=replace(block.header, state_root=state_root)))

    def fork(self, number: int, salt: bytes) -> ChainBuilder:
        """A sibling chain sharing blocks up to ``number``; its new blocks differ."""
        other = ChainBuilder(chain_id=self.chain_id, anchor_number=self.anchor_number, salt=salt)
        other.blocks = {n: e for n, e in self.blocks.items() if n <= number}
        other.hashes = {n: h for n, h in self.hashes.items() if n <= number}
        other.number = number
        other.seq = self.seq
        return other


def registry_state(
    records: dict[bytes, tuple[int, bytes, bytes]],
) -> tuple[bytes, Callable[..., AccountProof]]:
    """A state trie with the ContractRegistry account holding ``records`` (contract id ->
    (key published, command key, message key)): its root, and a maker of its state
    proofs for some contract ids (what ``eth_getProof`` would answer)."""
    from trie.hexary import HexaryTrie

    from sealbridge.keyservice import chainfacts as cf

    slots_of = cf.get_key_slots

    storage = HexaryTrie({})
    for cid, (published, command_key, message_key) in records.items():
        values = (published.to_bytes(32, "big"), command_key, message_key)
        for slot, value in zip(slots_of(cid), values, strict=True):
            if value.lstrip(b"\0"):
                storage[keccak(slot_key(slot))] = rlp.encode(value.lstrip(b"\0"))
    state = HexaryTrie({})
    state[keccak(REGISTRY)] = rlp.encode([0, 0, storage.root_hash, keccak(b"")])

    def prove(cids: list[bytes], address: bytes = REGISTRY) -> AccountProof:
        return AccountProof(
            address=address,
            proof=[rlp.encode(n) for n in state.get_proof(keccak(REGISTRY))],
            slots=[
                SlotProof(
                    key=slot_key(s),
                    proof=[rlp.encode(n) for n in storage.get_proof(keccak(slot_key(s)))],
                )
                for cid in cids
                for s in slots_of(cid)
            ],
        )

    return bytes(state.root_hash), prove
