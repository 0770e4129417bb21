"""The key-release wire messages: what crosses a vault's or the matcher's enclave boundary.

Each ECALL of a vault (``vault.py``, ``VAULT_*``) and of the matcher
(``matcher_program.py``, ``MATCHER_*``) is declared with a request and an answer type;
those types are here, with the signed statements they carry (released keys, owner
bindings, unreleased-key statements, loss claims, match answers) and the domain tags
their signatures are made under. They are frozen msgspec Structs with one canonical
encoding, used for hashing, signing and the wire. ``vault.py`` and ``matcher_program.py``
re-export every name they used to define, so older imports keep working.

Not here: the protocol cores' own types that these messages carry (``types.Chunk`` and
``Offer``, ``matcher.MatcherPolicy`` and the report types, ``balances.BalanceProof``,
``freshness.AnchorBinding``, ``auth.SignedRequest``), the exchange machines' effects and
snapshots (``exchange.py``), the vault's snapshot inside a ``SealedState``
(``vault.VaultSnapshot``), and the sealed state of the matcher's journal
(``matcher_program.SealedJournal`` and its parts).
"""

from __future__ import annotations

from sealbridge.chain.lightclient import BlockEvidence, HeaderFields
from sealbridge.core.encoding import Message, encode
from sealbridge.keyrelease import bitcoin
from sealbridge.keyrelease.auth import SignedRequest
from sealbridge.keyrelease.balances import BalanceProof, ChunkSources
from sealbridge.keyrelease.freshness import AnchorBinding
from sealbridge.keyrelease.matcher import (
    ChainObservation,
    DoubleSpendReport,
    MatcherPolicy,
    Penalty,
)
from sealbridge.keyrelease.types import Chunk, Offer
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.enclave import NodeKeys
from sealbridge.tee.policy import AttestationPolicy

RELEASE_TAG = b"sealbridge/keyrelease/release/v1"
LOSS_TAG = b"sealbridge/keyrelease/loss-claim/v1"
OWNER_TAG = b"sealbridge/keyrelease/owner-binding/v1"
UNRELEASED_TAG = b"sealbridge/keyrelease/unreleased/v1"


# --- vault ECALLs ---------------------------------------------------------------------------


class DepositKey(Message, frozen=True):
    index: int
    public_key: bytes  # 33, compressed secp256k1
    eth_address: str  # EIP-55
    btc_address: str  # P2WPKH (bech32), "" when not derived


class VaultManifest(Message, frozen=True):
    """The public keys of a vault's deposit keys, bound by a quote."""

    node: NodeKeys
    keys: list[DepositKey]
    quote: bytes

    @property
    def vault(self) -> str:
        return self.node.identity_key.hex()


class ReleasedKey(Message, frozen=True):
    """A deposit key on its way to the counterparty's vault."""

    contract: str
    chunk_id: str
    sender: bytes  # identity key of the releasing vault
    recipient: bytes  # identity key of the receiving vault
    ciphertext: bytes  # ECIES to the recipient's encryption key
    signature: bytes = b""  # Ed25519 of the sender over RELEASE_TAG + the body

    def get_body(self) -> bytes:
        return RELEASE_TAG + encode(
            ReleasedKey(
                contract=self.contract,
                chunk_id=self.chunk_id,
                sender=self.sender,
                recipient=self.recipient,
                ciphertext=self.ciphertext,
            )
        )


class SweepRequest(Message, frozen=True):
    """What the host read on chain for a sweep, and the fees it will pay."""

    chunk_id: str
    chain_id: int
    kind: str  # "native" | "erc20"
    nonce: int
    balance: int  # native balance of the chunk's address (wei)
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    token: str = ""  # ERC-20 contract
    token_balance: int = 0


class WithdrawalRequest(Message, frozen=True):
    """The owner's order: move what the sweep of ``sweep.chunk_id`` brought to this
    vault's sweep key to ``destination``. ``sweep`` carries the host's reading of that
    address (as for a sweep; ``chunk_id`` names the key)."""

    vault: str  # the vault's id (hex identity key): an order for one vault only
    destination: str
    sweep: SweepRequest


class SignedWithdrawal(Message, frozen=True):
    request: WithdrawalRequest
    signature: bytes  # the owner's wallet key over compute_withdrawal_digest(request)


class SignedSweep(Message, frozen=True):
    chunk_id: str
    raw_tx: bytes
    tx_hash: bytes
    destination: str  # the fresh address (EIP-55)
    amount: int  # wei (native) or token units (erc20) moved


class BtcSweepRequest(Message, frozen=True):
    """What the host read off the bitcoin network for a btc key, and the fee it pays.

    ``utxos`` are the outputs the host says pay the key's P2WPKH script, unspent. The
    vault checks that each pays that script and signs for exactly those amounts (BIP143
    commits to them), but it cannot know that they exist or are unspent: the network
    refuses a transaction that spends anything else."""

    chunk_id: str
    utxos: list[bitcoin.Utxo]
    fee_sat: int
    network: str = "regtest"


class SignedBtcSweep(Message, frozen=True):
    chunk_id: str
    raw_tx: bytes  # segwit serialization, verified by the script interpreter
    txid: str  # display byte order
    destination: str  # the sweep key's P2WPKH address, or the owner's address
    amount_sat: int
    fee_sat: int


class BtcWithdrawalRequest(Message, frozen=True):
    """The owner's order: spend the outputs of ``sweep.chunk_id``'s sweep key (the ones
    ``sweep`` names) to ``destination``, any address of ``sweep.network``."""

    vault: str  # the vault's id (hex identity key): an order for one vault only
    destination: str
    sweep: BtcSweepRequest


class SignedBtcWithdrawal(Message, frozen=True):
    request: BtcWithdrawalRequest
    signature: bytes  # the owner's wallet key over compute_btc_withdrawal_digest(request)


class VaultConfig(Message, frozen=True):
    policy: AttestationPolicy
    # the StateAnchor every change is anchored in before its effects leave (rollback
    # protection, :mod:`sealbridge.keyrelease.freshness`); None: no protection (the
    # in-process unit tests of the contracts only; the devnet always anchors)
    anchor: AnchorBinding | None = None


class CreateKeys(Message, frozen=True):
    count: int


class OpenSwap(Message, frozen=True):
    swap_id: str
    role: str  # "A" (moves first) | "B"
    mine: list[Chunk]
    theirs: list[Chunk]
    kinds: dict[str, str]  # asset id -> AssetKind value
    deadline: float
    counterparty: AttestedCard


class OpenEscrow(Message, frozen=True):
    escrow_id: str
    role: str  # "depositor" | "beneficiary"
    chunks: list[Chunk]
    kinds: dict[str, str]
    unlock_at: float
    counterparty: AttestedCard


class ContractRef(Message, frozen=True):
    contract: str


class ChunkRef(Message, frozen=True):
    chunk_id: str


class Deliver(Message, frozen=True):
    envelope: ReleasedKey


class Finished(Message, frozen=True):
    """A contract reached its end (from the machine's SwapFinished / EscrowFinished)."""

    contract: str
    outcome: str  # "completed" | "aborted" | "released" | "cancelled"
    given: int
    received: int
    reason: str = ""


class OwnerRef(Message, frozen=True):
    account: str


class OwnerBinding(Message, frozen=True):
    """A vault's signed word that ``account`` is its owner (the account bonds and is
    paid; a matcher accepts the vault's chunks only under that owner)."""

    account: str
    vault: bytes  # identity key
    signature: bytes = b""  # Ed25519 over OWNER_TAG + the body

    def get_body(self) -> bytes:
        return OWNER_TAG + encode(OwnerBinding(account=self.account, vault=self.vault))


class Unreleased(Message, frozen=True):
    """A vault's signed word that its own key ``chunk_id`` is free: bound to no contract,
    never released, never swept (so the matcher may offer, or withdraw, it again)."""

    chunk_id: str
    vault: bytes
    signature: bytes = b""

    def get_body(self) -> bytes:
        return UNRELEASED_TAG + encode(Unreleased(chunk_id=self.chunk_id, vault=self.vault))


class SealedState(Message, frozen=True):
    blob: bytes


class LossClaim(Message, frozen=True):
    """A vault's signed word that it received a chunk's key, never swept it and never
    will (the key is marked claimed), and that the one address it would ever sweep the
    chunk to is ``sweep_address``: funds that went there are the victim's own."""

    chunk_id: str
    contract: str
    vault: bytes  # identity key of the claiming vault
    sweep_address: str = ""  # EIP-55
    signature: bytes = b""  # Ed25519 over LOSS_TAG + the body

    def get_body(self) -> bytes:
        body = LossClaim(
            chunk_id=self.chunk_id,
            contract=self.contract,
            vault=self.vault,
            sweep_address=self.sweep_address,
        )
        return LOSS_TAG + encode(body)


class VaultOutput(Message, frozen=True):
    """What the host must do after an ECALL: send these envelopes, sweep these chunks."""

    releases: list[ReleasedKey] = []
    sweeps: list[str] = []  # chunk ids received and to be swept now
    finished: list[Finished] = []


class VaultContractStatus(Message, frozen=True):
    contract: str
    kind: str  # "swap" | "escrow"
    role: str
    status: str
    given: int
    received: int
    exposure_usd_e8: int


class VaultStatus(Message, frozen=True):
    vault: str
    keys: dict[str, int]  # state -> count (own keys)
    received: list[str]
    swept: list[str]
    contracts: list[VaultContractStatus]
    compromised: bool


# --- matcher ECALLs -------------------------------------------------------------------------

ANSWER_TAG = b"sealbridge/keyrelease/match-answer/v1"


class FeeChain(Message, frozen=True):
    """The chain the fees are paid on, as the matcher follows it: from an anchor block its
    host names at configuration (trust on first use, like a gatekeeper's genesis), every
    later block is verified (parent link, receipts root) before its ``FeePaid`` logs of
    ``pool`` count."""

    chain_id: int
    pool: bytes  # the InsurancePool's address (20 bytes)
    oracle: bytes  # the PriceOracle's address (20 bytes): its PriceSet logs give the price
    fee_asset_key: bytes  # the oracle's key of the asset fees are paid in (ETH)
    anchor_number: int
    anchor_hash: bytes


class MatcherConfig(Message, frozen=True):
    policy: MatcherPolicy
    vault_policy: AttestationPolicy  # what a vault's manifest must attest under
    # None: fees are credited on accept without a look at the chain (unit tests, the
    # simulator); the devnet always names its chain A
    fee_chain: FeeChain | None = None
    # the StateAnchor its changes are anchored in before their outputs leave (rollback
    # protection, keyrelease/freshness.py); None: none (unit tests; the devnet anchors)
    anchor: AnchorBinding | None = None
    # where each asset's chunks hold their funds: chunks are taken, and double spends
    # judged, on balances proven at verified headers (keyrelease/balances.py); None: the
    # host's readings (unit tests, the simulator; the devnet names its chains)
    chunk_sources: ChunkSources | None = None


class ObserveBlocks(Message, frozen=True):
    blocks: list[BlockEvidence]  # the next blocks of the fee chain, in order


class FeeTip(Message, frozen=True):
    number: int  # the newest fee-chain block the matcher verified (0: no fee chain)


class AdvanceChainHeaders(Message, frozen=True):
    """The next headers of a chain chunks live on (not the fee chain)."""

    chain_id: int
    headers: list[HeaderFields]


class ChainTipQuery(Message, frozen=True):
    chain_id: int


class AcceptOrder(Message, frozen=True):
    """A requester's signed ``Accept`` (with a fee chain, the fee must have been paid
    there, at the price the oracle last set there, both seen by the matcher)."""

    signed: SignedRequest


class MatcherCard(AttestedCard, frozen=True):
    """The matcher's attested card: its quote also binds its operator and, once
    configured, its configuration (:func:`compute_matcher_report_data`)."""

    operator: str  # EIP-55 address of the operator key (the InsurancePool's operator)
    # compute_config_hash of its configuration once configured (b"" before): the quote
    # binds it, so a client sees which chains, pool, oracle and sources it trusts
    config_hash: bytes = b""


class RegisterOwner(Message, frozen=True):
    owner: str
    bond_usd_e8: int  # the host's reading of the owner's bond, at the oracle price
    manifest: VaultManifest
    binding: OwnerBinding  # the vault vouches that ``owner`` is its owner


class RegisterRequester(Message, frozen=True):
    account: str
    card: AttestedCard  # the requester's vault: its loss claims must be signed by it


class AddChunks(Message, frozen=True):
    chunks: list[Chunk]
    # with chunk sources: for every chunk of a proven asset, a proof that it holds its
    # amount at the newest block the matcher verified on its chain
    proofs: list[BalanceProof] = []


class AddBond(Message, frozen=True):
    owner: str
    usd_e8: int  # the host's reading of the bond added on chain, at the oracle price


class Reclaim(Message, frozen=True):
    statement: Unreleased  # the owner's vault: the chunk's key is free


class Accept(Message, frozen=True):
    request_id: str
    requester: str = ""  # the account accepting: it must be the one the offer was made to
    give_asset: str = ""  # what the requester gives in the swap (its service runs it)
    margin_s: float = 0.0  # check_accept: the offer must stay open this much longer


class Settle(Message, frozen=True):
    chunk_id: str
    requester: str


class SweepAddress(Message, frozen=True):
    requester: str
    address: str


class MatchAnswer(Message, frozen=True):
    offer: Offer
    manifests: list[VaultManifest]
    signature: bytes = b""  # Ed25519 of the matcher over ANSWER_TAG + the body

    def get_body(self) -> bytes:
        return ANSWER_TAG + encode(MatchAnswer(offer=self.offer, manifests=self.manifests))


class Expired(Message, frozen=True):
    request_ids: list[str]  # offers past their TTL, whose reservations were released


class OperatorTx(Message, frozen=True):
    """The facts the enclave needs to sign one InsurancePool transaction."""

    chain_id: int
    pool: str  # InsurancePool address
    nonce: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class LossReport(Message, frozen=True):
    """A victim's report of a double spend (``report`` ECALL): the matcher checks it and
    answers with the :class:`PenaltyOutcome` transactions."""

    report: DoubleSpendReport
    claim: LossClaim  # signed by the victim's registered vault
    observation: ChainObservation
    # USD x 1e8 per ETH of the pool's chain, for the wei amounts; used only by a matcher
    # that follows no fee chain (one that does uses the oracle price it verified there)
    price_e8: int
    tx: OperatorTx  # nonce of the first transaction; the second uses nonce + 1
    owner_account: str  # the owner's bond account on the pool's chain
    # with chunk sources: the chunk's balance at the newest block the matcher verified on
    # its chain, after the one its funding was proven at (``observation.balance`` unused)
    balance: BalanceProof | None = None


class PenaltyOutcome(Message, frozen=True):
    penalty: Penalty
    # 32-byte big-endian wei amounts (a slash can exceed the 64-bit integers canonical
    # messages carry); get_slash_wei / get_compensation_wei read them
    slash_wei: bytes
    compensation_wei: bytes
    transactions: list[bytes]  # signed raw transactions, in nonce order

    def get_slash_wei(self) -> int:
        return int.from_bytes(self.slash_wei, "big")

    def get_compensation_wei(self) -> int:
        return int.from_bytes(self.compensation_wei, "big")
