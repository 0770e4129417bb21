"""Chunk balances the matcher reads from state proofs, not from its host.

Theory of operation
-------------------
A double-spend report says "the funds of this chunk are gone". The matcher pays the
victim and slashes the owner on it, so it must not take its host's word for the balance.
:class:`ChunkBalances` lets the enclave read it itself:

1. **Which chains.** At configuration the matcher is told, per asset, where a chunk's
   funds live (:class:`AssetSource`): the chain, and for an ERC-20 the token contract and
   the storage slot of its ``balanceOf`` map. Each chain is followed from an anchor its
   host names then (trust on first use, like the fee chain's anchor): the fee chain's
   headers come with the blocks ``observe_blocks`` verifies, every other chain's through
   ``advance_headers`` (each header must carry the next number and its parent's hash).
2. **Which header.** A balance is read only at the newest header the enclave verified on
   the chunk's chain, from an ``eth_getProof`` answer checked against that header's state
   root (:func:`~sealbridge.chain.proofs.verify_account` and ``verify_slots``).
3. **Which fact.** A native chunk's balance is the ``balance`` of the chunk address's
   account; an ERC-20 chunk's is the slot ``balanceOf[chunk address]`` of the token's
   account (Vyper layout: ``keccak(slot ++ address)``).
4. **Funded, then short.** ``add_chunks`` takes a chunk only with a proof that its
   address holds at least its amount (the block is remembered); a report is judged on a
   proof at a *later* block. So a host that holds the enclave's view back, to a block
   before the owner funded the chunk, proves nothing: the proof must be newer than the
   funding it saw.

What is not proven: *where* the funds went. ``eth_getProof`` shows state, not the
transactions between two states. It does not need to: the victim's vault signs a
:class:`~sealbridge.keyrelease.vault.LossClaim` only for a key it never swept, and never
sweeps a key it claimed, so funds gone from a key the victim's vault alone was given can
only have been moved by someone else who had the key -- the owner's side. The host's list
of recipients is still checked against the victim's own sweep addresses (a report that
names one is refused), but it is no longer needed for safety.

Bitcoin chunks (kind ``btc``) have no light client here: their balances are the host's
reading, and the docs say so.

Errors: :class:`BalanceRefused` (``InvalidRequest``): no such asset or chain, a proof at
another block, of another account, or one that does not verify.
"""

from __future__ import annotations

from sealbridge.chain.lightclient import HeaderFields
from sealbridge.chain.proofs import AccountProof, slot_of, verify_account, verify_slots
from sealbridge.core.encoding import Message
from sealbridge.core.errors import SealbridgeError
from sealbridge.keyrelease.errors import InvalidRequest
from sealbridge.keyrelease.types import AssetKind, Chunk
from sealbridge.keyservice.chainfacts import HeaderTip, HeaderTrack, KnownHeader

__all__ = [
    "MAX_ASSET_SOURCES",
    "AssetSource",
    "BalanceProof",
    "BalanceRefused",
    "BalancesState",
    "ChunkBalances",
    "ChunkSources",
    "FollowedChain",
    "ProvenBalance",
    "get_balance_slot",
]

MAX_ASSET_SOURCES = 64


class BalanceRefused(InvalidRequest):
    """A chunk balance proof, or the configuration it is read under, is refused."""

    code = "keyrelease_balance_refused"


class AssetSource(Message, frozen=True):
    """Where the funds of an asset's chunks live."""

    asset: str
    chain_id: int
    kind: str  # an AssetKind value: "native", "erc20" or "btc" (btc: not proven)
    token: bytes = b""  # erc20: the token contract (20 bytes)
    balance_slot: int = 0  # erc20: the storage slot of its balanceOf HashMap
    decimals: int = 18  # base units per whole unit: a chunk's amount is checked at the price


class FollowedChain(Message, frozen=True):
    """A chain followed by its headers from ``tip`` (its host's choice at configure)."""

    chain_id: int
    tip: HeaderTip


class ChunkSources(Message, frozen=True):
    assets: list[AssetSource]
    # the chains followed by headers; the fee chain is not listed (its blocks carry them)
    chains: list[FollowedChain] = []


class BalanceProof(Message, frozen=True):
    """An ``eth_getProof`` answer for one chunk at block ``number`` of its chain: of the
    chunk address (native), or of the token with the chunk's ``balanceOf`` slot (erc20)."""

    chunk_id: str
    number: int
    proof: AccountProof


class TrackState(Message, frozen=True):
    """A followed chain in a snapshot: its tip and the tip's header (proofs are read
    at the tip only, so nothing older is kept)."""

    chain_id: int
    tip: HeaderTip
    header: KnownHeader | None  # None while the tip is the anchor itself


class BalancesState(Message, frozen=True):
    """Everything :class:`ChunkBalances` knows, for a matcher snapshot."""

    sources: ChunkSources
    fee_chain_id: int
    tracks: list[TrackState]
    funded_at: list[tuple[str, int]]  # in the order the chunks were taken


class ProvenBalance(Message, frozen=True):
    chunk_id: str
    number: int
    balance: int


def get_balance_slot(source: AssetSource, address: str) -> int:
    """The token storage slot holding ``address``'s balance."""
    return slot_of(source.balance_slot, bytes.fromhex(address.removeprefix("0x")))


def _address_bytes(address: str) -> bytes:
    try:
        raw = bytes.fromhex(address.removeprefix("0x"))
    except ValueError as exc:
        raise BalanceRefused(f"not an address: {address!r}") from exc
    if len(raw) != 20:
        raise BalanceRefused(f"not an address: {address!r}")
    return raw


class ChunkBalances:
    """The enclave's view of the chains chunks live on (sans-I/O)."""

    def __init__(self, sources: ChunkSources, fee_chain: FollowedChain | None) -> None:
        if not isinstance(sources, ChunkSources) or not isinstance(sources.assets, list):
            raise BalanceRefused("chunk sources must be a ChunkSources")
        if len(sources.assets) > MAX_ASSET_SOURCES or len(sources.chains) > MAX_ASSET_SOURCES:
            raise BalanceRefused(f"at most {MAX_ASSET_SOURCES} assets and chains")
        self.tracks: dict[int, HeaderTrack] = {}
        anchors = list(sources.chains) + ([fee_chain] if fee_chain is not None else [])
        for anchor in anchors:
            tip = anchor.tip
            if (
                type(anchor.chain_id) is not int
                or anchor.chain_id <= 0
                or type(tip.number) is not int
                or tip.number < 0
                or type(tip.block_hash) is not bytes
                or len(tip.block_hash) != 32
            ):
                raise BalanceRefused(f"bad chain anchor {anchor!r}")
            if anchor.chain_id in self.tracks:
                raise BalanceRefused(f"chain {anchor.chain_id} is anchored twice")
            self.tracks[anchor.chain_id] = HeaderTrack(tip)
        self.fee_chain_id = fee_chain.chain_id if fee_chain is not None else 0
        self._sources = sources
        self.sources: dict[str, AssetSource] = {}
        for source in sources.assets:
            if source.asset in self.sources:
                raise BalanceRefused(f"asset {source.asset!r} is configured twice")
            if source.kind == AssetKind.BTC.value:
                self.sources[source.asset] = source
                continue
            if source.kind not in (AssetKind.NATIVE.value, AssetKind.ERC20.value):
                raise BalanceRefused(f"asset {source.asset!r}: unknown kind {source.kind!r}")
            if source.chain_id not in self.tracks:
                raise BalanceRefused(
                    f"asset {source.asset!r}: chain {source.chain_id} is not followed"
                )
            if type(source.decimals) is not int or not 0 <= source.decimals <= 36:
                raise BalanceRefused(f"asset {source.asset!r}: decimals must be 0 to 36")
            if source.kind == AssetKind.ERC20.value and (
                type(source.token) is not bytes
                or len(source.token) != 20
                or type(source.balance_slot) is not int
                or not 0 <= source.balance_slot < 2**256
            ):
                raise BalanceRefused(f"asset {source.asset!r}: an erc20 needs token and slot")
            self.sources[source.asset] = source
        self.funded_at: dict[str, int] = {}  # chunk id -> the block its funding was proven

    # -- headers -------------------------------------------------------------------------
    def advance(self, chain_id: int, headers: list[HeaderFields]) -> HeaderTip:
        """Take the next headers of a followed chain (all or none)."""
        track = self.tracks.get(chain_id) if type(chain_id) is int else None
        if track is None:
            raise BalanceRefused(f"chain {chain_id!r} is not followed")
        if not isinstance(headers, list) or not all(isinstance(h, HeaderFields) for h in headers):
            raise BalanceRefused("headers must be a list of HeaderFields")
        try:
            return track.advance(headers)
        except SealbridgeError as exc:
            raise BalanceRefused(f"chain {chain_id}: {exc}") from exc

    def get_tip(self, chain_id: int) -> HeaderTip:
        track = self.tracks.get(chain_id)
        if track is None:
            raise BalanceRefused(f"chain {chain_id!r} is not followed")
        return track.tip

    # -- balances ------------------------------------------------------------------------
    def is_proven(self, chunk: Chunk) -> bool:
        """Whether the chunk's asset has balances the enclave proves (not btc)."""
        source = self.sources.get(chunk.asset)
        if source is None:
            raise BalanceRefused(f"asset {chunk.asset!r} is not one this matcher knows")
        return source.kind != AssetKind.BTC.value

    def read(self, chunk: Chunk, proof: BalanceProof) -> ProvenBalance:
        """The chunk's balance at the newest header of its chain, from ``proof``."""
        if not isinstance(proof, BalanceProof) or proof.chunk_id != chunk.chunk_id:
            raise BalanceRefused(f"the balance proof is not for chunk {chunk.chunk_id}")
        source = self.sources.get(chunk.asset)
        if source is None or source.kind == AssetKind.BTC.value:
            raise BalanceRefused(f"asset {chunk.asset!r} has no proven balances here")
        track = self.tracks[source.chain_id]
        if proof.number != track.tip.number:
            raise BalanceRefused(
                f"chunk {chunk.chunk_id}: the proof is at block {proof.number!r}, not at the "
                f"newest block this matcher verified on chain {source.chain_id} "
                f"({track.tip.number})"
            )
        try:
            root = track.get(proof.number).state_root
            if source.kind == AssetKind.NATIVE.value:
                if proof.proof.address != _address_bytes(chunk.address):
                    raise BalanceRefused(f"the proof is not of {chunk.address}")
                balance = verify_account(root, proof.proof).balance
            else:
                if proof.proof.address != source.token:
                    raise BalanceRefused(f"the proof is not of the {chunk.asset} token")
                slot = get_balance_slot(source, chunk.address)
                if [s.slot for s in proof.proof.slots] != [slot]:
                    raise BalanceRefused("the proof must cover exactly the chunk's balance slot")
                balance = verify_slots(root, proof.proof)[slot]
        except BalanceRefused:
            raise
        except SealbridgeError as exc:
            raise BalanceRefused(f"chunk {chunk.chunk_id}: {exc}") from exc
        return ProvenBalance(chunk_id=chunk.chunk_id, number=proof.number, balance=balance)

    def check_funded(self, chunk: Chunk, proof: BalanceProof) -> int:
        """The block at which the chunk holds its amount (raises if it does not); it is
        remembered by :meth:`note_funded` once the chunk is taken."""
        proven = self.read(chunk, proof)
        if proven.balance < chunk.amount:
            raise BalanceRefused(
                f"chunk {chunk.chunk_id} holds {proven.balance} at block {proven.number}, "
                f"less than its amount {chunk.amount}"
            )
        return proven.number

    # -- snapshots -----------------------------------------------------------------------
    def export_state(self) -> BalancesState:
        tracks = [
            TrackState(chain_id=chain_id, tip=track.tip, header=track.recent.get(track.tip.number))
            for chain_id, track in sorted(self.tracks.items())
        ]
        return BalancesState(
            sources=self._sources,
            fee_chain_id=self.fee_chain_id,
            tracks=tracks,
            funded_at=list(self.funded_at.items()),
        )

    @classmethod
    def from_state(cls, state: BalancesState) -> ChunkBalances:
        """Rebuild from a snapshot (checked like a configuration)."""
        anchors = [FollowedChain(chain_id=t.chain_id, tip=t.tip) for t in state.tracks]
        fee = [a for a in anchors if a.chain_id == state.fee_chain_id]
        others = [a for a in anchors if a.chain_id != state.fee_chain_id]
        if state.fee_chain_id and len(fee) != 1:
            raise BalanceRefused("the snapshot lacks the fee chain's track")
        sources = ChunkSources(assets=list(state.sources.assets), chains=others)
        balances = cls(sources, fee[0] if fee else None)
        balances._sources = state.sources
        for track_state in state.tracks:
            if track_state.header is not None:
                balances.tracks[track_state.chain_id].recent[track_state.tip.number] = (
                    track_state.header
                )
        for chunk_id, number in state.funded_at:
            if type(number) is not int or chunk_id in balances.funded_at:
                raise BalanceRefused("the snapshot's funded chunks are malformed")
            balances.funded_at[chunk_id] = number
        return balances

    def note_funded(self, chunk_id: str, number: int) -> None:
        self.funded_at[chunk_id] = number

    def read_after_funding(self, chunk: Chunk, proof: BalanceProof) -> int:
        """The chunk's balance at a block after the one its funding was proven at."""
        funded = self.funded_at.get(chunk.chunk_id)
        if funded is None:
            raise BalanceRefused(f"chunk {chunk.chunk_id} was never proven funded")
        proven = self.read(chunk, proof)
        if proven.number <= funded:
            raise BalanceRefused(
                f"chunk {chunk.chunk_id}: the proof must be newer than block {funded}, "
                f"where its funding was proven (the matcher is at {proven.number}: "
                f"advance its headers)"
            )
        return proven.balance
