"""Chunk balances the matcher proves itself (``keyrelease/balances.py``): a chunk is taken
only with a proof that it is funded at the newest header its enclave verified, and a
double spend is judged on a proof at a later header -- never on its host's reading.

The chains are synthetic (``chain_builder``): real header hashes and links, and state
roots of real Merkle-Patricia tries holding the accounts, so the enclave checks exactly
what it checks against anvil's ``eth_getProof`` (the e2e test does that)."""

from __future__ import annotations

import msgspec
import pytest
import rlp
from trie.hexary import HexaryTrie

from sealbridge.chain.proofs import AccountProof, SlotProof, slot_key
from sealbridge.core.encoding import encode
from sealbridge.core.ids import keccak
from sealbridge.crypto.signing import to_checksum_address
from sealbridge.keyrelease.balances import (
    AssetSource,
    BalanceProof,
    BalanceRefused,
    ChunkBalances,
    ChunkSources,
    FollowedChain,
    get_balance_slot,
)
from sealbridge.keyrelease.errors import InvalidRequest
from sealbridge.keyrelease.types import Chunk, parse_chunk_id
from sealbridge.keyservice.chainfacts import HeaderTip
from tests.unit.chain_builder import ChainBuilder

CHAIN_A, CHAIN_B = 31337, 31338
TOKEN = bytes.fromhex("70" * 20)
SLOT = 7
AMOUNT = 10**16
CHUNK_ADDRESS = to_checksum_address(bytes.fromhex("c1" * 20))
OTHER_ADDRESS = to_checksum_address(bytes.fromhex("c2" * 20))


class World:
    """Two chains whose blocks carry the state roots of tries a test fills."""

    def __init__(self) -> None:
        self.a = ChainBuilder(chain_id=CHAIN_A, anchor_number=10, salt=b"a")
        self.b = ChainBuilder(chain_id=CHAIN_B, anchor_number=20, salt=b"b")
        self.eth: dict[bytes, int] = {}  # address -> wei on chain A
        self.tkn: dict[bytes, int] = {}  # holder -> token balance on chain B
        self.balances = ChunkBalances(
            ChunkSources(
                assets=[
                    AssetSource(asset="ETH@31337", chain_id=CHAIN_A, kind="native"),
                    AssetSource(
                        asset="TKN@31338",
                        chain_id=CHAIN_B,
                        kind="erc20",
                        token=TOKEN,
                        balance_slot=SLOT,
                    ),
                    AssetSource(asset="BTC@regtest", chain_id=0, kind="btc"),
                ],
                chains=[FollowedChain(chain_id=CHAIN_B, tip=self._tip(self.b))],
            ),
            FollowedChain(chain_id=CHAIN_A, tip=self._tip(self.a)),
        )

    @staticmethod
    def _tip(chain: ChainBuilder) -> HeaderTip:
        return HeaderTip(number=chain.number, block_hash=chain.head_hash)

    def _state_a(self) -> HexaryTrie:
        state = HexaryTrie({})
        for address, wei in self.eth.items():
            state[keccak(address)] = rlp.encode(
                [0, wei, bytes(HexaryTrie.BLANK_NODE_HASH), keccak(b"")]
            )
        return state

    def _state_b(self) -> tuple[HexaryTrie, HexaryTrie]:
        storage = HexaryTrie({})
        for holder, amount in self.tkn.items():
            slot = get_balance_slot(self.source("TKN@31338"), "0x" + holder.hex())
            if amount:
                storage[keccak(slot_key(slot))] = rlp.encode(amount)
        state = HexaryTrie({})
        state[keccak(TOKEN)] = rlp.encode([1, 0, storage.root_hash, keccak(b"token code")])
        return state, storage

    def source(self, asset: str) -> AssetSource:
        return self.balances.sources[asset]

    def mine_a(self) -> int:
        """A chain-A block with the current balances; the matcher takes its header."""
        block = self.a.next_with_state(bytes(self._state_a().root_hash))
        self.balances.advance(CHAIN_A, [block.header])
        return self.a.number

    def mine_b(self) -> int:
        state, _ = self._state_b()
        block = self.b.next_with_state(bytes(state.root_hash))
        self.balances.advance(CHAIN_B, [block.header])
        return self.b.number

    def prove_eth(self, chunk: Chunk, number: int, address: str = "") -> BalanceProof:
        raw = bytes.fromhex((address or chunk.address)[2:])
        nodes = self._state_a().get_proof(keccak(raw))
        proof = AccountProof(address=raw, proof=[rlp.encode(n) for n in nodes])
        return BalanceProof(chunk_id=chunk.chunk_id, number=number, proof=proof)

    def prove_tkn(self, chunk: Chunk, number: int, slot: int | None = None) -> BalanceProof:
        state, storage = self._state_b()
        if slot is None:
            slot = get_balance_slot(self.source("TKN@31338"), chunk.address)
        proof = AccountProof(
            address=TOKEN,
            proof=[rlp.encode(n) for n in state.get_proof(keccak(TOKEN))],
            slots=[
                SlotProof(
                    key=slot_key(slot),
                    proof=[rlp.encode(n) for n in storage.get_proof(keccak(slot_key(slot)))],
                )
            ],
        )
        return BalanceProof(chunk_id=chunk.chunk_id, number=number, proof=proof)


def chunk(asset: str = "ETH@31337", address: str = CHUNK_ADDRESS) -> Chunk:
    return Chunk(
        chunk_id=f"{'ab' * 32}:{0 if asset.startswith('ETH') else 1}",
        owner=to_checksum_address(bytes.fromhex("0e" * 20)),
        vault="ab" * 32,
        asset=asset,
        address=address,
        amount=AMOUNT,
        usd_e8=100 * 10**8,
    )


def raw(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def test_a_funded_native_chunk_is_taken_and_a_later_shortfall_is_proven() -> None:
    world, eth = World(), chunk()
    world.eth[raw(eth.address)] = AMOUNT
    funded = world.mine_a()
    assert world.balances.check_funded(eth, world.prove_eth(eth, funded)) == funded
    world.balances.note_funded(eth.chunk_id, funded)
    world.eth[raw(eth.address)] = 0  # someone with the key swept it
    later = world.mine_a()
    assert world.balances.read_after_funding(eth, world.prove_eth(eth, later)) == 0


def test_an_unfunded_chunk_is_refused() -> None:
    world, eth = World(), chunk()
    world.eth[raw(eth.address)] = AMOUNT - 1
    number = world.mine_a()
    with pytest.raises(BalanceRefused, match="less than its amount"):
        world.balances.check_funded(eth, world.prove_eth(eth, number))


def test_a_proof_of_another_account_or_at_another_block_is_refused() -> None:
    world, eth = World(), chunk()
    world.eth[raw(eth.address)] = AMOUNT
    world.eth[raw(OTHER_ADDRESS)] = AMOUNT
    first = world.mine_a()
    old_proof = world.prove_eth(eth, first)
    second = world.mine_a()
    with pytest.raises(BalanceRefused, match="not at the newest block"):
        world.balances.check_funded(eth, old_proof)  # a view the host held back
    with pytest.raises(BalanceRefused, match="not of"):
        world.balances.check_funded(eth, world.prove_eth(eth, second, address=OTHER_ADDRESS))
    with pytest.raises(BalanceRefused, match="not for chunk"):
        world.balances.check_funded(eth, msgspec.structs.replace(old_proof, chunk_id="x:0"))


def test_a_forged_balance_does_not_verify_against_the_header() -> None:
    world, eth = World(), chunk()
    world.eth[raw(eth.address)] = 0
    number = world.mine_a()
    honest = world.prove_eth(eth, number)
    world.eth[raw(eth.address)] = AMOUNT  # the host's story: the chunk is funded
    forged = world.prove_eth(eth, number)  # a proof of a state no header commits to
    assert forged.proof.proof != honest.proof.proof
    with pytest.raises(BalanceRefused, match="does not verify"):
        world.balances.check_funded(eth, forged)


def test_a_shortfall_before_the_funding_block_proves_nothing() -> None:
    """A host that kept the matcher's view before the funding cannot use it in a report:
    the report's proof must be newer than the funding proof."""
    world, eth = World(), chunk()
    world.eth[raw(eth.address)] = AMOUNT
    funded = world.mine_a()
    world.balances.note_funded(eth.chunk_id, funded)
    with pytest.raises(BalanceRefused, match="newer than block"):
        world.balances.read_after_funding(eth, world.prove_eth(eth, funded))
    never = msgspec.structs.replace(chunk(address=OTHER_ADDRESS), chunk_id=f"{'ab' * 32}:9")
    with pytest.raises(BalanceRefused, match="never proven funded"):
        world.balances.read_after_funding(never, world.prove_eth(never, funded))


def test_a_token_chunk_is_read_from_its_balance_slot() -> None:
    world, tkn = World(), chunk("TKN@31338")
    world.tkn[raw(tkn.address)] = AMOUNT
    world.tkn[raw(OTHER_ADDRESS)] = 5 * AMOUNT
    number = world.mine_b()
    assert world.balances.read(tkn, world.prove_tkn(tkn, number)).balance == AMOUNT
    other_slot = get_balance_slot(world.source("TKN@31338"), OTHER_ADDRESS)
    with pytest.raises(BalanceRefused, match="exactly the chunk's balance slot"):
        world.balances.read(tkn, world.prove_tkn(tkn, number, slot=other_slot))
    world.tkn[raw(tkn.address)] = 0
    later = world.mine_b()
    world.balances.note_funded(tkn.chunk_id, number)
    assert world.balances.read_after_funding(tkn, world.prove_tkn(tkn, later)) == 0


def test_headers_must_link_and_chains_must_be_known() -> None:
    world = World()
    block = world.b.build()
    broken = msgspec.structs.replace(block.header, parent_hash=bytes(32))
    with pytest.raises(BalanceRefused, match="does not follow"):
        world.balances.advance(CHAIN_B, [broken])
    assert world.balances.get_tip(CHAIN_B).number == world.b.number  # nothing moved
    with pytest.raises(BalanceRefused, match="not followed"):
        world.balances.advance(1, [block.header])


def test_bitcoin_chunks_are_not_proven() -> None:
    world = World()
    btc = chunk("BTC@regtest", address="bcrt1q" + "q" * 38)
    assert not world.balances.is_proven(btc)
    assert world.balances.is_proven(chunk())
    with pytest.raises(BalanceRefused, match="no proven balances"):
        world.balances.read(
            btc,
            BalanceProof(
                chunk_id=btc.chunk_id, number=0, proof=AccountProof(address=bytes(20), proof=[])
            ),
        )


@pytest.mark.parametrize(
    "sources",
    [
        ChunkSources(assets=[AssetSource(asset="X", chain_id=CHAIN_B, kind="native")]),
        ChunkSources(assets=[AssetSource(asset="X", chain_id=CHAIN_A, kind="erc20")]),
        ChunkSources(assets=[AssetSource(asset="X", chain_id=CHAIN_A, kind="other")]),
        ChunkSources(
            assets=[
                AssetSource(asset="X", chain_id=CHAIN_A, kind="native"),
                AssetSource(asset="X", chain_id=CHAIN_A, kind="native"),
            ]
        ),
    ],
)
def test_bad_sources_are_refused(sources: ChunkSources) -> None:
    anchor = FollowedChain(chain_id=CHAIN_A, tip=HeaderTip(number=1, block_hash=bytes(32)))
    with pytest.raises(BalanceRefused):
        ChunkBalances(sources, anchor)


def test_a_snapshot_restores_the_same_view() -> None:
    world, eth = World(), chunk()
    world.eth[raw(eth.address)] = AMOUNT
    funded = world.mine_a()
    world.mine_b()
    world.balances.note_funded(
        eth.chunk_id, world.balances.check_funded(eth, world.prove_eth(eth, funded))
    )
    state = world.balances.export_state()
    restored = ChunkBalances.from_state(state)
    assert encode(restored.export_state()) == encode(state)
    world.eth[raw(eth.address)] = 0
    later = world.a.next_with_state(bytes(world._state_a().root_hash))
    for balances in (world.balances, restored):
        balances.advance(CHAIN_A, [later.header])
        proof = world.prove_eth(eth, later.header.number)
        assert balances.read_after_funding(eth, proof) == 0
    broken = msgspec.structs.replace(state, funded_at=[(eth.chunk_id, 1), (eth.chunk_id, 2)])
    with pytest.raises(BalanceRefused):
        ChunkBalances.from_state(broken)
    with pytest.raises(BalanceRefused):
        ChunkBalances.from_state(msgspec.structs.replace(state, tracks=state.tracks[1:]))


def test_a_deeply_nested_proof_node_is_refused_not_crashed() -> None:
    """Found by attacking the proofs: a 4 KB node of nested RLP lists overflowed the
    decoder's recursion and escaped as a RecursionError; now it is a typed refusal.
    (Which refusal depends on the interpreter's recursion limit, which other tests in
    the same process may raise: "nested too deeply" at the default, "not RLP" above.)"""
    world, eth = World(), chunk()
    number = world.mine_a()
    deep = AccountProof(address=raw(eth.address), proof=[b"\xc1" * 2000 + b"\xc0"])
    with pytest.raises(BalanceRefused, match="nested too deeply|not RLP"):
        world.balances.read(eth, BalanceProof(chunk_id=eth.chunk_id, number=number, proof=deep))


@pytest.mark.parametrize("index", ["01", "00", "\u0663", "+1", " 1", "1" * 11])
def test_a_chunk_id_has_one_spelling(index: str) -> None:
    """Found by attacking the bitcoin sweeps: ``v:01`` or ``v:٣`` named a key again under
    another id, which "received once" checks compare as strings."""
    with pytest.raises(InvalidRequest, match="not a chunk id"):
        parse_chunk_id(f"{'ab' * 32}:{index}")
    with pytest.raises(InvalidRequest, match="not a chunk id"):
        parse_chunk_id(f"{'AB' * 32}:1")
    assert parse_chunk_id(f"{'ab' * 32}:10") == ("ab" * 32, 10)
