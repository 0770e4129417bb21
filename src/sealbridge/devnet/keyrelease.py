"""A key-release devnet: two anvil chains, a price oracle, an insurance pool, a matcher
enclave and one vault enclave per client, with the hosts' work in between.

Theory of operation
-------------------
This module is the *untrusted* side (wallets and hosts). Everything it decides that
matters is checked by an enclave or by a chain: a wallet funds an address only after the
vault's manifest attested it; a client accepts an offer only after the matcher's card
and signature, every vault's manifest and every chunk's balance on chain checked out; a
key moves only when the vault's contract machine releases it, encrypted to the
counterparty's attested key; a double-spend report is judged by the matcher enclave, and
the slash and the compensation are transactions signed inside it.

Layout: chain A (31337) carries ETH chunks, the PriceOracle and the InsurancePool; chain
B (31338) carries TKN, an ERC-20 token (DepositToken). Every chunk is worth
``chunk_usd_e8`` when funded, at the oracle price (a price older than ``max_price_age``
is refused). A TKN chunk also gets a native gas stipend so its receiver can sweep it.

Bitcoin: ``BTC@regtest`` chunks are P2WPKH outputs in :class:`UtxoLedger`, a local *model*
of a node's UTXO set (no bitcoind can be installed here): deposits are funding outputs,
and sweeps and withdrawals are real signed transactions it checks with the script
interpreter. Contract Z exchanges them (the escrow, and the requester's side of a swap);
the matcher does not book them, since it cannot prove a bitcoin balance (no bitcoin light
client here).

What the hosts decide is decided in sans-I/O cores; this module carries out their
effects against the enclaves, the chains and the pool: the swaps by
:class:`~sealbridge.keyrelease.swap_driver.SwapDriver` (:meth:`KeyReleaseDevnet.run_swap`),
the match, the accept, the offer, the reclaim and the double-spend report by the flows of
:mod:`sealbridge.keyrelease.operator`. Wallets, funding, sweeps, the escrow and the
processes stay here.

A compromised client (``compromised=...``) runs its vault on a platform declared broken
(``--simulate-compromise``): its host extracts a key it released and sweeps it first,
which is the double spend the matcher must catch.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from sealbridge.chain.anchor import get_anchor_slots
from sealbridge.config.node import write_atomic
from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    Report,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message, decode_canonical, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.crypto.signing import (
    generate_secp256k1_key,
    secp256k1_sign_hash,
    to_checksum_address,
)
from sealbridge.devnet.utxo_ledger import UtxoLedger
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.insurance import InsurancePool, deploy_insurance_pool
from sealbridge.evm.oracle import PriceOracle, compute_asset_key, deploy_price_oracle
from sealbridge.evm.state_anchor import StateAnchor, deploy_state_anchor
from sealbridge.evm.token import BALANCE_OF_SLOT, DepositToken, deploy_deposit_token
from sealbridge.keyrelease.auth import (
    ClientRefused,
    SignedRequest,
    normalize_client_name,
    sign_client_request,
    verify_client_request,
)
from sealbridge.keyrelease.balances import (
    AssetSource,
    BalanceProof,
    ChunkSources,
    FollowedChain,
    get_balance_slot,
)
from sealbridge.keyrelease.bitcoin import BitcoinError, Utxo, p2wpkh_address
from sealbridge.keyrelease.errors import InvalidRequest, OfferRefused
from sealbridge.keyrelease.freshness import (
    ANCHOR_STATUS,
    CHECK_RESTORED,
    PENDING_ANCHOR,
    TAKE_OUTPUT,
    AnchorBinding,
    AnchorProof,
    AnchorRequest,
    AnchorStatus,
    get_guarded,
)
from sealbridge.keyrelease.matcher import (
    MatcherPolicy,
    MatcherStatus,
)
from sealbridge.keyrelease.matcher_program import (
    JOURNALED_ECALLS,
    MATCHER_ADVANCE_HEADERS,
    MATCHER_ANCHORED_ECALLS,
    MATCHER_CARD,
    MATCHER_CHAIN_TIP,
    MATCHER_CONFIGURE,
    MATCHER_FEE_TIP,
    MATCHER_OBSERVE_BLOCKS,
    MATCHER_PROGRAM,
    MATCHER_REGISTER_OWNER,
    MATCHER_REGISTER_REQUESTER,
    MATCHER_REGISTER_SWEEP_ADDRESS,
    MATCHER_RESTORE,
    MATCHER_SEAL,
    MATCHER_SEAL_TAIL,
    MATCHER_SETTLE,
    MATCHER_STATUS,
    MAX_OBSERVED_BLOCKS,
    Accept,
    AcceptOrder,
    AdvanceChainHeaders,
    ChainTipQuery,
    FeeChain,
    MatchAnswer,
    MatcherCard,
    MatcherConfig,
    ObserveBlocks,
    RegisterOwner,
    RegisterRequester,
    SealedJournal,
    Settle,
    SweepAddress,
    usd_to_wei,
    verify_matcher_card,
)
from sealbridge.keyrelease.operator import (
    ACCEPT_MARGIN_S,
    AcceptFlow,
    BalanceProofQuery,
    BalanceProofsQuery,
    CallVault,
    ChunkBalanceQuery,
    FeeChainSynced,
    FeesPaidQuery,
    GasFeesQuery,
    MatcherOperator,
    MatchFlow,
    MatchStep,
    NonceQuery,
    OfferFlow,
    OperatorAnswer,
    OperatorEffect,
    OutflowsQuery,
    PayFee,
    PoolBalanceQuery,
    PriceQuery,
    RawTx,
    ReclaimFlow,
    ReportFlow,
    SyncFeeChain,
    TokenRecipientsQuery,
    TxInputQuery,
)
from sealbridge.keyrelease.swap_driver import (
    ROLE_OWNER,
    DeliverKey,
    OpenSide,
    OutgoingKey,
    ProceedSide,
    SideOutput,
    SwapAnswer,
    SwapDriver,
    SwapEffect,
    SweepChunk,
    SweepResult,
)
from sealbridge.keyrelease.types import (
    Asset,
    AssetKind,
    Chunk,
    ChunkRequest,
    compute_chunk_amount,
)
from sealbridge.keyrelease.vault import (
    ANCHORED_ECALLS,
    MAX_BTC_SWEEP_UTXOS,
    TOKEN_SWEEP_GAS,
    VAULT_ABORT,
    VAULT_BIND_OWNER,
    VAULT_CARD,
    VAULT_CONFIGURE,
    VAULT_CREATE_KEYS,
    VAULT_DELIVER,
    VAULT_LEAK,
    VAULT_OPEN_ESCROW,
    VAULT_OPEN_SWAP,
    VAULT_PROCEED,
    VAULT_PROGRAM,
    VAULT_RESTORE,
    VAULT_SEAL,
    VAULT_SIGN_BTC_SWEEP,
    VAULT_SIGN_SWEEP,
    VAULT_STATUS,
    VAULT_TICK,
    VAULT_WITHDRAW,
    VAULT_WITHDRAW_BTC,
    BtcSweepRequest,
    BtcWithdrawalRequest,
    ChunkRef,
    ContractRef,
    CreateKeys,
    Deliver,
    OpenEscrow,
    OpenSwap,
    OwnerRef,
    SealedState,
    SignedBtcSweep,
    SignedBtcWithdrawal,
    SignedSweep,
    SignedWithdrawal,
    SweepRequest,
    VaultConfig,
    VaultManifest,
    VaultStatus,
    WithdrawalRequest,
    compute_btc_withdrawal_digest,
    compute_withdrawal_digest,
    verify_manifest,
)
from sealbridge.keyservice.chainfacts import HeaderTip
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.ecall import NOTHING, Ecall
from sealbridge.tee.ecall import call as call_enclave
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import AttestationPolicy, devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import SimBackend

__all__ = [
    "ACCEPT_MARGIN_S",
    "CHAIN_A",
    "CHAIN_B",
    "Event",
    "KeyReleaseDevnet",
    "KeyReleaseDevnetError",
    "SwapOutcome",
]

CHAIN_A, CHAIN_B = 31337, 31338
USD = 10**8
ETHER = 10**18
MAX_CLIENTS = 8
WALLET_FUNDING_WEI = 500 * 10**18  # what each client's wallet gets on each chain
TKN_DECIMALS = 6  # a dollar-like token; chunk amounts must fit 64 bits
DEFAULT_PRICES = {"ETH": 3_000 * USD, "TKN": 1 * USD, "BTC": 60_000 * USD}
BTC_NETWORK = "regtest"
BTC_ASSET = f"BTC@{BTC_NETWORK}"
BTC_FEE_SAT_PER_VB = 5  # the fee rate of bitcoin sweeps and withdrawals
P2WPKH_INPUT_VBYTES = 68
Progress = Callable[["Event"], None]
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _btc_spend(held: Sequence[Utxo]) -> tuple[list[Utxo], int]:
    """The outputs a bitcoin sweep spends and its fee: those worth more than the fee of
    spending them (dust someone sent to the address is left), largest first, at most
    ``MAX_BTC_SWEEP_UTXOS``; the fee at ``BTC_FEE_SAT_PER_VB`` of an upper estimate of the
    size (68 vbytes per P2WPKH input, 11 of overhead, 43 for the widest output)."""
    worth = [u for u in held if u.amount_sat > P2WPKH_INPUT_VBYTES * BTC_FEE_SAT_PER_VB]
    utxos = sorted(worth, key=lambda u: (-u.amount_sat, u.txid, u.vout))[:MAX_BTC_SWEEP_UTXOS]
    return utxos, compute_btc_fee(len(utxos))


def compute_btc_fee(inputs: int) -> int:
    """The fee the devnet pays for a bitcoin sweep or withdrawal spending ``inputs``."""
    return BTC_FEE_SAT_PER_VB * (11 + P2WPKH_INPUT_VBYTES * inputs + 43)


class KeyReleaseDevnetError(LocalProtocolError):
    code = "keyrelease_devnet"


@contextmanager
def _as_devnet_errors() -> Iterator[None]:
    """A requester flow's refusal of a request or an offer, as the devnet's error."""
    try:
        yield
    except (InvalidRequest, OfferRefused) as exc:
        raise KeyReleaseDevnetError(exc.message) from exc


class Event(Message, frozen=True):
    """One step, as the CLI shows it (``at``: seconds since the devnet started)."""

    step: str
    at: float
    detail: dict[str, Any]


class SwapOutcome(Message, frozen=True):
    contract: str
    requester: str
    counterparties: dict[str, int]  # owner -> chunks it gave
    given: int  # chunks the requester released
    received: int  # chunks the requester received
    swept: int  # chunks the requester swept successfully
    double_spent: list[str]  # chunk ids found empty
    compensated_wei: int
    exposure_usd_e8: dict[str, int]  # per counterparty, the requester's exposure at the end
    latency_s: float
    transactions: int
    gas: int


class _Enclave:
    def __init__(self, handle: EnclaveHandle) -> None:
        self.handle = handle

    def call(self, spec: Ecall[Req, Resp], request: Req) -> Resp:
        return call_enclave(self.handle, spec, request)


# the vault ECALLs that change what it holds: after each, the host stores a sealed snapshot
_VAULT_MUTATING = frozenset(
    {
        "configure",
        "create_keys",
        "open_swap",
        "open_escrow",
        "deliver",
        "tick",
        "cancel_escrow",
        "abort",
        "proceed",
        "sign_sweep",
        "claim_loss",
        "bind_owner",
        "withdraw",
        "attest_unreleased",
        "sign_btc_sweep",
        "withdraw_btc",
    }
)


class _Sealed(_Enclave):
    """An enclave whose host stores its sealed state on disk after every change, so a
    crashed enclave process restarts with it (:meth:`KeyReleaseDevnet.restart_vault`,
    :meth:`KeyReleaseDevnet.restart_matcher`); each kind of enclave says how it seals
    (``persist``) and restores (``restore``)."""

    mutating: frozenset[str] = frozenset()

    def __init__(self, handle: EnclaveHandle, state_file: Path) -> None:
        super().__init__(handle)
        self.state_file = state_file

    def call(self, spec: Ecall[Req, Resp], request: Req) -> Resp:
        answer = super().call(spec, request)
        if spec.name in self.mutating:
            self.persist()
        return answer

    def persist(self) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError


class _Anchored(_Sealed):
    """A host whose enclave anchors its changes (:mod:`sealbridge.keyrelease.freshness`):
    after each change it seals the state (with the change's output held inside), relays
    the change's anchor to the StateAnchor contract, and hands the enclave the new
    headers and a proof of the anchor, which releases the output. The caller sees the
    output only."""

    anchored: frozenset[str] = frozenset()

    def __init__(
        self,
        handle: EnclaveHandle,
        state_file: Path,
        anchor: StateAnchor | None = None,
        sender_key: bytes = b"",
    ) -> None:
        super().__init__(handle, state_file)
        self.anchor = anchor
        self.sender_key = sender_key
        self.header_tip = 0  # the newest header handed to the enclave
        self.anchors = 0  # anchor transactions relayed
        self.on_gas: Callable[[int], None] = lambda _gas: None  # counts each anchor's gas

    def call(self, spec: Ecall[Req, Resp], request: Req) -> Resp:
        name = spec.name
        if self.anchor is None or name not in self.anchored or name not in self.mutating:
            return super().call(spec, request)
        guarded = call_enclave(self.handle, get_guarded(spec), request)
        self.persist()
        output = guarded.output if guarded.anchor is None else self.release(guarded.anchor)
        return spec.decode_response(output)

    def release(self, pending: AnchorRequest) -> bytes:
        """Relay ``pending`` and prove it: the change's output."""
        if self.anchor is None:
            raise KeyReleaseDevnetError("this enclave has no StateAnchor")
        receipt = self.anchor.advance(
            pending.version, pending.state_hash, pending.signature, self.sender_key
        )
        self.anchors += 1
        self.on_gas(receipt.gas_used)
        output = call_enclave(self.handle, TAKE_OUTPUT, self.get_anchor_proof())
        self.persist()
        return output

    def get_anchor_proof(self) -> AnchorProof:
        """The headers after the enclave's newest and a proof of its anchor at the tip."""
        if self.anchor is None:
            raise KeyReleaseDevnetError("this enclave has no StateAnchor")
        adapter = self.anchor.adapter
        tip = adapter.get_block_number()
        numbers = list(range(self.header_tip + 1, tip + 1))
        headers = adapter.get_header_fields(numbers) if numbers else []
        signer = to_checksum_address(self.get_signer())
        proof = adapter.get_proof(self.anchor.address, get_anchor_slots(signer), tip)
        self.header_tip = tip
        return AnchorProof(headers=headers, number=tip, proof=proof)

    def get_signer(self) -> bytes:
        return self.handle.node_keys.eth_address

    def get_anchor_status(self) -> AnchorStatus:
        return call_enclave(self.handle, ANCHOR_STATUS, NOTHING)

    def check_restored(self) -> None:
        """Prove to a freshly restored enclave that its state is the newest anchored one;
        relay a change's anchor it still waits for, or take the output of one whose
        anchor was mined."""
        if self.anchor is None:
            return
        status = self.get_anchor_status()
        if status.version < 0:
            return
        self.header_tip = status.tip
        call_enclave(self.handle, CHECK_RESTORED, self.get_anchor_proof())
        if not status.waiting:
            return
        anchored, _ = self.anchor.get_anchor(to_checksum_address(self.get_signer()))
        if anchored < status.version:  # its anchor was never mined: relay it
            self.release(call_enclave(self.handle, PENDING_ANCHOR, NOTHING))
        else:
            call_enclave(self.handle, TAKE_OUTPUT, self.get_anchor_proof())
            self.persist()


class _Vault(_Anchored):
    mutating = _VAULT_MUTATING
    anchored = frozenset(ANCHORED_ECALLS)

    def persist(self) -> None:
        write_atomic(self.state_file, call_enclave(self.handle, VAULT_SEAL, NOTHING).blob)

    def restore_checked(self, blob: bytes) -> None:
        """Restore a sealed state and prove that it is the newest anchored one."""
        call_enclave(self.handle, VAULT_RESTORE, SealedState(blob=blob))
        self.check_restored()

    def restore(self) -> None:
        self.restore_checked(self.state_file.read_bytes())


class _Matcher(_Anchored):
    """The matcher's host persists a sealed base (``seal``: a snapshot of the matcher's
    state) and, after each change, one sealed segment of the new entries (``seal_tail``)
    appended to ``<state>.segments``: the cost per change does not grow with the
    journal. Every ``COMPACT_EVERY`` segments it compacts: a new base, and the segments
    file emptied (a crash in between leaves segments the base already holds; restore
    skips them), so a restore replays at most that many segments."""

    mutating = frozenset(JOURNALED_ECALLS)
    anchored = frozenset(MATCHER_ANCHORED_ECALLS)
    COMPACT_EVERY = 1000

    def __init__(
        self,
        handle: EnclaveHandle,
        state_file: Path,
        anchor: StateAnchor | None = None,
        sender_key: bytes = b"",
    ) -> None:
        super().__init__(handle, state_file, anchor, sender_key)
        self.segments_file = state_file.with_name(state_file.name + ".segments")
        self._segments = 0

    def persist(self) -> None:
        if not self.state_file.exists() or self._segments >= self.COMPACT_EVERY:
            # a new base (a snapshot of the state), then no segments
            base = call_enclave(self.handle, MATCHER_SEAL, NOTHING).blob
            write_atomic(self.state_file, base)
            self.segments_file.write_bytes(b"")
            self._segments = 0
            return
        blob = call_enclave(self.handle, MATCHER_SEAL_TAIL, NOTHING).blob
        with self.segments_file.open("ab") as fh:
            fh.write(len(blob).to_bytes(4, "big") + blob)
            fh.flush()
            os.fsync(fh.fileno())
        self._segments += 1

    def read_segments(self) -> list[bytes]:
        """The sealed segments after the base, in order (a torn last frame, from a crash
        while appending, is left out: that change was not persisted)."""
        if not self.segments_file.exists():
            return []
        data = self.segments_file.read_bytes()
        segments, at = [], 0
        while at + 4 <= len(data):
            size = int.from_bytes(data[at : at + 4], "big")
            if at + 4 + size > len(data):
                break
            segments.append(data[at + 4 : at + 4 + size])
            at += 4 + size
        return segments

    def restore(self) -> None:
        journal = SealedJournal(blob=self.state_file.read_bytes(), segments=self.read_segments())
        call_enclave(self.handle, MATCHER_RESTORE, journal)
        self._segments = len(journal.segments)
        self.check_restored()


@dataclass
class KeyReleaseClient:
    name: str
    wallet_key: bytes  # a fresh random key, the same account on both chains
    account: str
    vault: _Vault
    card: AttestedCard
    manifest: VaultManifest
    compromised: bool = False
    next_key: int = 0
    chunks: list[Chunk] = field(default_factory=list)  # funded, not yet given away
    nonce: int = 0  # of the last request signed for this client in process

    def sign(self, service: bytes, action: str, body: bytes) -> SignedRequest:
        """Sign a request with the wallet key (the in-process client: demo and tests)."""
        self.nonce = max(self.nonce + 1, time.time_ns() // 1000)
        return sign_client_request(self.wallet_key, service, self.nonce, action, body)

    @property
    def vault_id(self) -> str:
        return self.card.identity_hex


class KeyReleaseDevnet:
    """Context manager; see the module docstring."""

    def __init__(
        self,
        *,
        clients: Sequence[str] = ("alice", "bob", "carol", "mallory"),
        compromised: Sequence[str] = ("mallory",),
        keys_per_vault: int = 32,
        chunk_usd_e8: int = 100 * USD,
        block_time: float | None = None,
        max_price_age: int = 3600,
        prices: dict[str, int] | None = None,
        policy: MatcherPolicy | None = None,
        progress: Progress | None = None,
        home: Path | None = None,
        confirm_sweeps: bool = True,
    ) -> None:
        if len(set(clients)) != len(clients) or len(clients) > MAX_CLIENTS:
            raise KeyReleaseDevnetError(f"need at most {MAX_CLIENTS} distinct client names")
        if not set(compromised) <= set(clients):
            raise KeyReleaseDevnetError("a compromised client must be one of the clients")
        if type(keys_per_vault) is not int or not 1 <= keys_per_vault <= 1024:
            raise KeyReleaseDevnetError("keys_per_vault must be in [1, 1024]")
        self.client_names = list(clients)
        self.compromised = set(compromised)
        self.keys_per_vault = keys_per_vault
        self.chunk_usd_e8 = chunk_usd_e8
        self.block_time = block_time
        self.max_price_age = max_price_age
        self.prices = {**DEFAULT_PRICES, **(prices or {})}
        self._policy = policy
        self.progress = progress
        self.home = home
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.nodes: list[AnvilNode] = []
        self.adapters: dict[int, ChainAdapter] = {}
        self.clients: dict[str, KeyReleaseClient] = {}
        self.assets: dict[str, Asset] = {}
        self.chunk_sources: ChunkSources | None = None  # what the matcher proves, per asset
        self.started = time.monotonic()
        self.tx_count = 0
        self.gas_used = 0
        self.matcher: _Matcher | None = None
        self.state_anchor: StateAnchor | None = None  # every vault's freshness anchor
        self.matcher_card: MatcherCard | None = None
        self.matcher_config: MatcherConfig | None = None
        self.vault_policy: AttestationPolicy | None = None
        self.deposit_blocks: dict[str, int] = {}  # chunk id -> block it was funded in
        self.btc = UtxoLedger(BTC_NETWORK)  # a local model of the bitcoin network, not a node
        self.operator = MatcherOperator()  # the requester flows' decisions
        self.swept_to: dict[str, str] = {}  # chunk id -> the sweep key it went to
        self._nonces: dict[str, int] = {}  # account (lowercase) -> last request nonce taken
        self.risk_policy: MatcherPolicy | None = None  # the matcher's, once started
        # True: wait for each sweep's receipt before the exchange goes on; False: send the
        # sweeps and confirm them at the end of the swap (the balance is checked first)
        self.confirm_sweeps = confirm_sweeps
        self._unconfirmed: list[tuple[ChainAdapter, bytes]] = []

    # -- progress -------------------------------------------------------------------------
    def _emit(self, step: str, **detail: Any) -> None:
        if self.progress is not None:
            at = round(time.monotonic() - self.started, 3)
            self.progress(Event(step=step, at=at, detail=detail))

    def _count(self, receipt_gas: int) -> None:
        self.tx_count += 1
        self.gas_used += receipt_gas

    # -- start and stop ---------------------------------------------------------------------
    def start(self) -> KeyReleaseDevnet:
        self.started = time.monotonic()
        if self.home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sealbridge-keyrelease-")
            self.home = Path(self._tmp.name)
        self.home.mkdir(parents=True, exist_ok=True)
        for chain_id in (CHAIN_A, CHAIN_B):
            node = AnvilNode(chain_id=chain_id, block_time=self.block_time).start()
            self.nodes.append(node)
            self.adapters[chain_id] = node.adapter()
        a, b = self.adapters[CHAIN_A], self.adapters[CHAIN_B]
        deployer = a.get_dev_key(0)
        reporter = a.get_dev_key(1)
        platform_key = self.home / "sim-platform.key"
        platform_pub = create_sim_platform(platform_key)
        # a manifest attests key generation once: its quote must stay checkable for as long
        # as the keys hold funds (a day here); cards are fetched fresh for each contract
        self.vault_policy = devnet_policy(
            platform_pub, [compute_sim_measurement(VAULT_PROGRAM)], max_quote_age_seconds=86_400
        )
        matcher_policy = devnet_policy(
            platform_pub, [compute_sim_measurement(MATCHER_PROGRAM)], max_quote_age_seconds=86_400
        )
        backend = SimBackend()
        # the matcher first: the pool names its operator key
        self.matcher = _Matcher(
            backend.launch(
                MATCHER_PROGRAM,
                platform_key_file=platform_key,
                sealed_identity_file=self.home / "matcher.identity",
            ),
            self.home / "matcher.sealed",
        )
        card = self.matcher.call(MATCHER_CARD, NOTHING)
        verify_matcher_card(card, matcher_policy, time.time())
        self.matcher_card = card
        self.oracle = PriceOracle(a, deploy_price_oracle(a, deployer, a.address_of(reporter)))
        self.pool = InsurancePool(
            a, deploy_insurance_pool(a, deployer, card.operator, unbonding_period_s=86_400)
        )
        self.token = DepositToken(
            b, deploy_deposit_token(b, b.get_dev_key(0), "Token", "TKN", TKN_DECIMALS)
        )
        a.fund(card.operator, ETHER)  # the operator pays gas for slashes and compensations
        self.assets = {
            "ETH@31337": Asset(symbol="ETH", chain_id=CHAIN_A, kind=AssetKind.NATIVE, decimals=18),
            "TKN@31338": Asset(
                symbol="TKN",
                chain_id=CHAIN_B,
                kind=AssetKind.ERC20,
                decimals=TKN_DECIMALS,
                token=self.token.address,
            ),
            BTC_ASSET: Asset(
                symbol="BTC", chain_id=0, kind=AssetKind.BTC, decimals=8, network=BTC_NETWORK
            ),
        }
        # the matcher follows chain A from here: it sees the prices set next
        head = self.adapters[CHAIN_A].get_block("latest")
        for asset_id, asset in self.assets.items():
            self.oracle.set_price(asset_id, self.prices[asset.symbol], reporter)
        policy = self._policy or MatcherPolicy(
            chunk_usd_e8={asset_id: self.chunk_usd_e8 for asset_id in self.assets},
            max_owner_share_bps=3400,  # a request of 6 chunks needs 3 owners
            max_vault_share_bps=3400,
        )
        self.risk_policy = policy
        fee_chain = FeeChain(
            chain_id=CHAIN_A,
            pool=bytes.fromhex(self.pool.address[2:]),
            oracle=bytes.fromhex(self.oracle.address[2:]),
            fee_asset_key=compute_asset_key("ETH@31337"),
            anchor_number=head.number,
            anchor_hash=head.hash,
        )
        # every change of the matcher is anchored (StateAnchor) before its output leaves;
        # dev account 0 relays the anchors (anyone may)
        self.state_anchor = StateAnchor(a, deploy_state_anchor(a, deployer))
        self.matcher.anchor, self.matcher.sender_key = self.state_anchor, deployer
        self.matcher.on_gas = self._count
        start = a.get_block("latest")
        self.matcher.header_tip = start.number
        # chunk balances are proven to the matcher: ETH on chain A (whose headers come
        # with the fee chain's blocks), TKN on chain B, followed by headers from here
        head_b = self.adapters[CHAIN_B].get_block("latest")
        self.chunk_sources = ChunkSources(
            assets=[
                AssetSource(
                    asset=asset_id,
                    chain_id=asset.chain_id,
                    kind=str(asset.kind),
                    token=bytes.fromhex(asset.token[2:]) if asset.token else b"",
                    balance_slot=BALANCE_OF_SLOT if asset.kind == AssetKind.ERC20 else 0,
                    decimals=asset.decimals,
                )
                for asset_id, asset in self.assets.items()
            ],
            chains=[
                FollowedChain(
                    chain_id=CHAIN_B,
                    tip=HeaderTip(number=head_b.number, block_hash=head_b.hash),
                )
            ],
        )
        self.matcher_config = MatcherConfig(
            policy=policy,
            vault_policy=self.vault_policy,
            fee_chain=fee_chain,
            chunk_sources=self.chunk_sources,
            anchor=AnchorBinding(
                chain_id=a.chain_id,
                contract=self.state_anchor.address,
                start=HeaderTip(number=start.number, block_hash=start.hash),
            ),
        )
        self.matcher.call(MATCHER_CONFIGURE, self.matcher_config)
        # the card now binds the configuration: clients check it is the one set up here
        configured = self.matcher.call(MATCHER_CARD, NOTHING)
        verify_matcher_card(configured, matcher_policy, time.time(), config=self.matcher_config)
        self.matcher_card = configured
        self._emit(
            "setup",
            chains={str(n.chain_id): n.url for n in self.nodes},
            oracle=self.oracle.address,
            pool=self.pool.address,
            token=self.token.address,
            matcher=card.node.identity_key.hex(),
            operator=card.operator,
            prices_usd={k: v / USD for k, v in self.prices.items()},
            chunk_usd=self.chunk_usd_e8 / USD,
        )
        self._backend = backend
        self._platform_key = platform_key
        for name in self.client_names:
            self.add_client(name, compromised=name in self.compromised)
        return self

    def add_client(self, name: str, *, compromised: bool = False) -> KeyReleaseClient:
        """A new client: its vault enclave (declared compromised or not) makes its deposit
        keys, and its wallet checks the manifest's quote."""
        name = normalize_client_name(name)  # a display label: NFKC-folded, unique
        if name in self.clients:
            raise KeyReleaseDevnetError(f"client {name!r} exists already")
        if len(self.clients) >= MAX_CLIENTS:
            raise KeyReleaseDevnetError(f"at most {MAX_CLIENTS} clients")
        # a wallet key of its own (not one of anvil's well-known dev accounts, whose keys
        # everyone has), funded from dev account 0 on both chains
        wallet_key = generate_secp256k1_key()
        account = ChainAdapter.address_of(wallet_key)
        for adapter in self.adapters.values():
            self._count(adapter.fund(account, WALLET_FUNDING_WEI).gas_used)
        vault = _Vault(
            self._launch_vault(name, compromised),
            self._vault_state_file(name),
            self._state_anchor(),
            wallet_key,  # the owner pays for its vault's anchors
        )
        vault.on_gas = self._count
        vault_policy = self._vault_policy()
        a = self.adapters[CHAIN_A]
        start = a.get_block("latest")
        vault.header_tip = start.number
        anchor = AnchorBinding(
            chain_id=a.chain_id,
            contract=self._state_anchor().address,
            start=HeaderTip(number=start.number, block_hash=start.hash),
        )
        vault.call(VAULT_CONFIGURE, VaultConfig(policy=vault_policy, anchor=anchor))
        # bound to its owner before it holds anything (nobody else may withdraw from it)
        vault.call(VAULT_BIND_OWNER, OwnerRef(account=account))
        card = vault.call(VAULT_CARD, NOTHING)
        manifest = vault.call(VAULT_CREATE_KEYS, CreateKeys(count=self.keys_per_vault))
        # the wallet checks the quote before it funds anything
        verify_manifest(manifest, vault_policy, time.time())
        account = ChainAdapter.address_of(wallet_key)
        client = KeyReleaseClient(
            name=name,
            wallet_key=wallet_key,
            account=account,
            vault=vault,
            card=card,
            manifest=manifest,
            compromised=compromised,
        )
        self._matcher().call(
            MATCHER_REGISTER_REQUESTER, RegisterRequester(account=account, card=card)
        )
        self.clients[name] = client
        if compromised:
            self.compromised.add(name)
        self._emit(
            "vault",
            client=name,
            vault=card.identity_hex[:16],
            keys=len(manifest.keys),
            first_address=manifest.keys[0].eth_address,
            first_btc_address=manifest.keys[0].btc_address,
            attested="manifest quote verified before funding",
            compromised=compromised,
        )
        return client

    def _state_anchor(self) -> StateAnchor:
        if self.state_anchor is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        return self.state_anchor

    def _vault_state_file(self, name: str) -> Path:
        if self.home is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        return self.home / f"vault-{name}.sealed"

    def _launch_vault(self, name: str, compromised: bool) -> EnclaveHandle:
        if self.home is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        return self._backend.launch(
            VAULT_PROGRAM,
            platform_key_file=self._platform_key,
            sealed_identity_file=self.home / f"vault-{name}.identity",
            simulate_compromise=compromised,
        )

    def restart_vault(self, name: str, blob: bytes | None = None) -> None:
        """Kill a client's vault process and start it again: the same sealed identity,
        then the last sealed state its host stored (keys, contracts, held releases), or
        ``blob`` (a host handing an older one back: the vault refuses it, since the
        StateAnchor holds a newer version, and stays unusable)."""
        client = self._client(name)
        client.vault.handle.close()
        handle = self._launch_vault(name, client.compromised)
        if blob is None:
            blob = client.vault.state_file.read_bytes()
        vault = _Vault(handle, client.vault.state_file, self._state_anchor(), client.wallet_key)
        vault.on_gas = self._count
        client.vault = vault  # whatever the restore says, this process is the vault now
        vault.restore_checked(blob)
        if vault.call(VAULT_CARD, NOTHING).node != client.card.node:
            raise KeyReleaseDevnetError(f"{name}'s vault came back with another identity")
        self._emit("vault-restart", client=name, restored="sealed keys and contracts")

    def _fresh_card(self, client: KeyReleaseClient) -> AttestedCard:
        """The client's card with a fresh quote (a peer checks the quote's age)."""
        card = client.vault.call(VAULT_CARD, NOTHING)
        if card.node != client.card.node:
            raise KeyReleaseDevnetError(f"{client.name}'s vault changed identity")
        return card

    @property
    def asset_kinds(self) -> dict[str, str]:
        """Asset id -> AssetKind value, as contract Z's machines take them."""
        return {asset_id: str(asset.kind) for asset_id, asset in self.assets.items()}

    def _client(self, name: str) -> KeyReleaseClient:
        client = self.clients.get(name)
        if client is None:
            raise KeyReleaseDevnetError(f"no client {name!r} (have: {', '.join(self.clients)})")
        return client

    def _vault_policy(self) -> AttestationPolicy:
        if self.vault_policy is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        return self.vault_policy

    def restart_matcher(self) -> None:
        """Kill the matcher's process and start it again: the same sealed identity (so
        clients' checks of its card still hold), then its sealed journal replayed -- the
        same book, owners, offers, pool books and operator key. The journal must be the
        newest the StateAnchor holds: an older one is refused and the matcher stays
        unusable."""
        matcher = self._matcher()
        matcher.handle.close()
        if self.home is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        handle = self._backend.launch(
            MATCHER_PROGRAM,
            platform_key_file=self._platform_key,
            sealed_identity_file=self.home / "matcher.identity",
        )
        restarted = _Matcher(handle, matcher.state_file, matcher.anchor, matcher.sender_key)
        restarted.on_gas = self._count
        self.matcher = restarted  # whatever the restore says, this process is the matcher
        restarted.restore()
        card = restarted.call(MATCHER_CARD, NOTHING)
        previous = self.matcher_card
        if previous is None or (card.node, card.operator, card.config_hash) != (
            previous.node,
            previous.operator,
            previous.config_hash,
        ):
            raise KeyReleaseDevnetError(
                "the matcher came back with another identity, operator or configuration"
            )
        self._emit("matcher-restart", restored="sealed journal replayed", operator=card.operator)

    def _matcher(self) -> _Matcher:
        if self.matcher is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        return self.matcher

    def stop(self) -> None:
        handles = [c.vault.handle for c in self.clients.values()]
        if self.matcher is not None:
            handles.append(self.matcher.handle)
        for handle in handles:
            try:
                handle.close()
            except SealbridgeError:
                pass
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> KeyReleaseDevnet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- owners: bonds, deposits, offers ----------------------------------------------------
    def price(self, asset_id: str) -> int:
        """The oracle's price (USD x 1e8); a stale one raises StalePrice."""
        return self.oracle.get_price(asset_id, self.max_price_age)

    def post_bond(self, name: str, usd_e8: int) -> int:
        """Post a sybil bond worth ``usd_e8`` in ETH on chain A and register with the
        matcher (which checks the vault's manifest). Returns the wei bonded."""
        client = self._client(name)
        price = self.price("ETH@31337")
        wei = usd_to_wei(usd_e8, price)
        receipt = self.pool.post_bond(wei, client.wallet_key)
        self._count(receipt.gas_used)
        bonded = self.pool.get_bond(client.account)
        bond_usd = bonded * price // ETHER
        binding = client.vault.call(VAULT_BIND_OWNER, OwnerRef(account=client.account))
        self.sync_fee_chain()  # the matcher books only the bond it saw posted
        self._matcher().call(
            MATCHER_REGISTER_OWNER,
            RegisterOwner(
                owner=client.account,
                bond_usd_e8=bond_usd,
                manifest=client.manifest,
                binding=binding,
            ),
        )
        self._emit("bond", client=name, wei=bonded, usd=bond_usd / USD)
        return bonded

    def deposit(self, name: str, asset_id: str, count: int) -> list[Chunk]:
        """Fund ``count`` fresh deposit keys of ``name``'s vault with one standard chunk
        of ``asset_id`` each (at the oracle price)."""
        client = self._client(name)
        asset = self.assets.get(asset_id)
        if asset is None:
            raise KeyReleaseDevnetError(f"unknown asset {asset_id!r}")
        if client.next_key + count > len(client.manifest.keys):
            raise KeyReleaseDevnetError(f"{name}'s vault has no {count} unused keys left")
        price = self.price(asset_id)
        amount = compute_chunk_amount(self.chunk_usd_e8, price, asset.decimals)
        if asset.kind == AssetKind.BTC:  # no chain adapter: the UTXO ledger model
            return self._deposit_btc(client, asset_id, count, amount, price)
        adapter = self.adapters[asset.chain_id]
        chunks = []
        for _ in range(count):
            key = client.manifest.keys[client.next_key]
            chunk_id = f"{client.vault_id}:{key.index}"
            client.next_key += 1
            if asset.kind == AssetKind.NATIVE:
                receipt = adapter.fund(key.eth_address, amount, sender_key=client.wallet_key)
                self._count(receipt.gas_used)
            else:
                receipt = self.token.transfer(key.eth_address, amount, _token_owner(self, name))
                self._count(receipt.gas_used)
                max_fee, _ = adapter.get_fees()
                stipend = TOKEN_SWEEP_GAS * max_fee * 4
                receipt = adapter.fund(key.eth_address, stipend, sender_key=client.wallet_key)
                self._count(receipt.gas_used)
            self.deposit_blocks[chunk_id] = receipt.block_number
            chunks.append(
                Chunk(
                    chunk_id=chunk_id,
                    owner=client.account,
                    vault=client.vault_id,
                    asset=asset_id,
                    address=key.eth_address,
                    amount=amount,
                    usd_e8=self.chunk_usd_e8,
                )
            )
        client.chunks += chunks
        self._emit(
            "deposit",
            client=name,
            asset=asset_id,
            chunks=count,
            amount_each=amount,
            price_usd=price / USD,
        )
        return chunks

    def _deposit_btc(
        self, client: KeyReleaseClient, asset_id: str, count: int, amount: int, price: int
    ) -> list[Chunk]:
        """``deposit`` for bitcoin: a funding output of ``amount`` sat at each fresh key's
        P2WPKH address in the ledger. The wallet re-derives the address from the attested
        public key before it funds it."""
        chunks = []
        for _ in range(count):
            key = client.manifest.keys[client.next_key]
            if (
                not key.btc_address
                or p2wpkh_address(key.public_key, BTC_NETWORK) != key.btc_address
            ):
                raise KeyReleaseDevnetError(f"key {key.index}: its P2WPKH address does not derive")
            client.next_key += 1
            funding = self.btc.fund(key.btc_address, amount)
            chunks.append(
                Chunk(
                    chunk_id=f"{client.vault_id}:{key.index}",
                    owner=client.account,
                    vault=client.vault_id,
                    asset=asset_id,
                    address=key.btc_address,
                    amount=amount,
                    usd_e8=self.chunk_usd_e8,
                )
            )
            self._emit("btc-fund", client=client.name, address=key.btc_address, txid=funding.txid)
        self.btc.mine()
        client.chunks += chunks
        self._emit(
            "deposit",
            client=client.name,
            asset=asset_id,
            chunks=count,
            amount_each=amount,
            price_usd=price / USD,
        )
        return chunks

    def offer(self, name: str, chunks: Sequence[Chunk]) -> None:
        """Put funded chunks in the matcher's book, each with a proof of its funds (an
        :class:`~sealbridge.keyrelease.operator.OfferFlow` decides; btc chunks are
        refused)."""
        unproven = {a for a, asset in self.assets.items() if asset.kind == AssetKind.BTC}
        with _as_devnet_errors():
            flow = self.operator.open_offer(name, list(chunks), unproven=unproven)
        client = self._client(name)
        self._run_flow(flow, flow.start(), client)
        offered = {c.chunk_id for c in chunks}
        client.chunks = [c for c in client.chunks if c.chunk_id not in offered]

    # -- requesters ---------------------------------------------------------------------------
    @property
    def service_id(self) -> bytes:
        """The matcher enclave's identity key: what client requests are signed for."""
        if self.matcher_card is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        return self.matcher_card.node.identity_key

    def request(self, name: str, asset_id: str, usd_e8: int, contract: str) -> MatchAnswer:
        """Ask the matcher for ``name`` (signed in process with its wallet key)."""
        client = self._client(name)
        body = ChunkRequest(
            request_id=os.urandom(16).hex(),  # fresh per request, whatever the contract is
            requester=client.account,
            asset=asset_id,
            usd_e8=usd_e8,
            contract=contract,
        )
        return self.request_signed(client.sign(self.service_id, "match", encode(body)))

    def check_client(self, signed: SignedRequest, action: str, account: str) -> KeyReleaseClient:
        """The client that signed ``signed`` (a fresh nonce, this service, ``action``),
        which must be the client of ``account``: checked before anything happens."""
        signer = verify_client_request(
            signed,
            service=self.service_id,
            action=action,
            last_nonce=lambda who: self._nonces.get(who.lower(), 0),
        )
        if not isinstance(account, str) or signer.lower() != account.lower():
            raise ClientRefused(f"the {action} request is signed by another account")
        return self.clients_by_account(signer)

    def took(self, signed: SignedRequest, client: KeyReleaseClient) -> None:
        self._nonces[client.account.lower()] = signed.request.nonce

    def request_signed(self, signed: SignedRequest) -> MatchAnswer:
        """Ask the matcher with a client's signed ``ChunkRequest`` (the matcher enclave
        checks the signature and the nonce too). A
        :class:`~sealbridge.keyrelease.operator.MatchFlow` decides (expire stale offers,
        ask, check the card, the signature, every vault's manifest and every chunk's
        balance on chain before answering yes); this host carries out its questions."""
        try:
            body = decode_canonical(signed.request.body, ChunkRequest)
        except SealbridgeError as exc:
            raise KeyReleaseDevnetError(f"the match request is malformed: {exc}") from exc
        client = self.check_client(signed, "match", body.requester)
        card = self.matcher_card
        if card is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        names = {c.account: c.name for c in self.clients.values()}
        with _as_devnet_errors():
            flow = self.operator.open_match(
                signed,
                body,
                label=client.name,
                card=card,
                vault_policy=self._vault_policy(),
                names=names,
            )
            self._run_flow(flow, flow.start(time.time()), client)
        if flow.result is None or flow.step is not MatchStep.DONE:  # pragma: no cover
            raise KeyReleaseDevnetError("the match flow did not finish")
        return flow.result

    def accept(self, name: str, answer: MatchAnswer) -> None:
        """Accept for ``name`` (signed in process with its wallet key)."""
        client = self._client(name)
        body = Accept(request_id=answer.offer.request_id, requester=client.account)
        self.accept_signed(answer, client.sign(self.service_id, "accept", encode(body)))

    def accept_signed(self, answer: MatchAnswer, signed: SignedRequest) -> None:
        """Accept ``answer``'s offer with the client's signed ``Accept``. An
        :class:`~sealbridge.keyrelease.operator.AcceptFlow` decides (every precondition,
        then the fee into the insurance pool once, then the accept: a refused accept pays
        nothing); this host carries out its questions."""
        with _as_devnet_errors():
            flow = self.operator.open_accept(answer, signed)
        client = self.check_client(signed, "accept", flow.requester)
        ttl = self.risk_policy.offer_ttl_s if self.risk_policy is not None else 0.0
        with _as_devnet_errors():
            effects = flow.start(label=client.name, account=client.account, offer_ttl_s=ttl)
            self._run_flow(flow, effects, client)

    def _run_flow(
        self,
        flow: MatchFlow | AcceptFlow | ReportFlow | OfferFlow | ReclaimFlow,
        effects: Sequence[OperatorEffect],
        client: KeyReleaseClient,
    ) -> None:
        """Carry out a requester flow's questions in order, handing each answer back."""
        queue = list(reversed(effects))
        while queue:
            answer = self._ask_for(queue.pop(), client)
            if answer is not None:
                queue.extend(reversed(flow.process(answer, time.time())))

    def _ask_for(self, effect: OperatorEffect, client: KeyReleaseClient) -> OperatorAnswer | None:
        """One question of a requester flow, against the matcher, a chain or the pool."""
        if isinstance(effect, Report):
            self._emit(effect.kind, **effect.data)
            return None
        if isinstance(effect, CallVault):
            vault = self._client(effect.party).vault
            return EnclaveAnswer(effect.tag, vault.call(effect.ecall, effect.request))
        if isinstance(effect, CallEnclave):
            response = self._matcher().call(effect.ecall, effect.request)
            # the matcher took the client's nonce once it answered a signed request
            if isinstance(effect.request, SignedRequest):
                self.took(effect.request, client)
            elif isinstance(effect.request, AcceptOrder):
                self.took(effect.request.signed, client)
            return EnclaveAnswer(effect.tag, response)
        if isinstance(effect, SyncFeeChain):
            return FeeChainSynced(effect.tag, self.sync_fee_chain())
        if isinstance(effect, SubmitTx):
            tx = effect.tx
            if isinstance(tx, PayFee):
                payer = self.clients_by_account(tx.payer)
                receipt = self.pool.pay_fee(tx.request_key, tx.amount_wei, payer.wallet_key)
            elif isinstance(tx, RawTx):
                chain = self.adapters[tx.chain_id]
                receipt = chain.wait_for_receipt(chain.send_raw_transaction(tx.raw))
            else:
                raise KeyReleaseDevnetError(f"no transaction {type(tx).__name__} here")
            self._count(receipt.gas_used)  # (a reverted one raised)
            return TxOutcome(effect.tag, "mined", receipt.block_number)
        return ChainRead(effect.tag, self._read_for(effect.query))

    def _read_for(self, query: object) -> Any:
        """One chain reading a flow asked for."""
        value: Any
        if isinstance(query, OutflowsQuery):
            outflows = self.adapters[query.chain_id].find_outgoing_transactions(
                query.address, query.since
            )
            value = [[to, tx_hash] for to, tx_hash in outflows]
        elif isinstance(query, TxInputQuery):
            value = self.adapters[query.chain_id].get_transaction_input(query.tx_hash)
        elif isinstance(query, TokenRecipientsQuery):
            value = self.token.get_transfer_recipients(query.address, query.since)
        elif isinstance(query, BalanceProofsQuery):
            value = self.prove_balances(query.chunks)
        elif isinstance(query, BalanceProofQuery):
            proofs = self.prove_balances([query.chunk])  # none for a btc chunk
            value = proofs[0] if proofs else None
        elif isinstance(query, GasFeesQuery):
            value = list(self.adapters[query.chain_id].get_fees())
        elif isinstance(query, NonceQuery):
            value = self.adapters[query.chain_id].get_nonce(query.account)
        elif isinstance(query, ChunkBalanceQuery):
            value = self._chunk_balance(query.chunk)
        elif isinstance(query, PriceQuery):
            value = self.price(query.asset)
        elif isinstance(query, FeesPaidQuery):
            value = self.pool.get_fees_paid(query.payer, query.request_key)
        elif isinstance(query, PoolBalanceQuery):
            value = self.pool.get_pool()
        else:
            raise KeyReleaseDevnetError(f"no question {type(query).__name__} here")
        return value

    def clients_by_account(self, account: str) -> KeyReleaseClient:
        for client in self.clients.values():
            if client.account.lower() == account.lower():
                return client
        raise KeyReleaseDevnetError(f"no client has the account {account}")

    def _name_of(self, account: str) -> str:
        for client in self.clients.values():
            if client.account == account:
                return client.name
        return account

    def _chunk_balance(self, chunk: Chunk) -> int:
        asset = self.assets[chunk.asset]
        if asset.kind == AssetKind.BTC:  # the ledger model's word: nothing proves it
            return self.btc.get_balance(chunk.address)
        if asset.kind == AssetKind.NATIVE:
            return self.adapters[asset.chain_id].balance(chunk.address)
        return self.token.balance_of(chunk.address)

    # -- contract Z: the tit-for-tat swap -------------------------------------------------------
    def run_swap(
        self,
        requester: str,
        answer: MatchAnswer,
        give_asset: str,
        *,
        deadline_s: float = 120.0,
        stop_after: dict[str, int] | None = None,
        requester_stops_after: int | None = None,
    ) -> SwapOutcome:
        """Swap the offer's chunks against the requester's chunks of ``give_asset``, one
        pairwise tit-for-tat exchange per owner, one pair after the other. A
        :class:`~sealbridge.keyrelease.swap_driver.SwapDriver` decides every step (what to
        deliver, sweep, abort or proceed); this host carries its decisions out against the
        vaults, the chains and the matcher (:meth:`_carry_out`). ``stop_after[owner] = s``:
        that owner's host stops delivering after ``s`` of its keys (it walks away);
        ``requester_stops_after``: the requester's host does, in each pair."""
        started = time.monotonic()
        tx_before, gas_before = self.tx_count, self.gas_used
        alice = self._client(requester)
        by_owner: dict[str, list[Chunk]] = {}
        for chunk in answer.offer.chunks:
            by_owner.setdefault(self._name_of(chunk.owner), []).append(chunk)
        needed = len(answer.offer.chunks)
        mine_all = [c for c in alice.chunks if c.asset == give_asset]
        if len(mine_all) < needed:
            mine_all += self.deposit(requester, give_asset, needed - len(mine_all))
            mine_all = [c for c in alice.chunks if c.asset == give_asset]
        kinds = self.asset_kinds
        deadline = time.time() + deadline_s
        contract = answer.offer.contract
        self._matcher().call(
            MATCHER_REGISTER_SWEEP_ADDRESS,
            SweepAddress(requester=alice.account, address=alice.account),
        )
        driver = SwapDriver()
        pairs: list[tuple[str, str]] = []  # (pairwise swap id, owner)
        for owner_name, theirs in sorted(by_owner.items()):
            mine = mine_all[: len(theirs)]
            mine_all = mine_all[len(theirs) :]
            alice.chunks = [c for c in alice.chunks if c not in mine]
            stalls = {} if requester_stops_after is None else {requester: requester_stops_after}
            if stop_after is not None and owner_name in stop_after:
                stalls[owner_name] = stop_after[owner_name]
            swap_id = f"{contract}/{owner_name}"
            pairs.append((swap_id, owner_name))
            opened = driver.open_pair(
                swap_id,
                requester=requester,
                owner=owner_name,
                requester_chunks=mine,
                owner_chunks=theirs,
                stall_after=stalls,
            )
            self._drive_swap(driver, opened, kinds, deadline)
            self._drive_swap(driver, driver.close_pair(swap_id), kinds, deadline)
        self._confirm_sweeps()
        ours = [driver.get_tally(swap_id, requester) for swap_id, _ in pairs]
        outcome = SwapOutcome(
            contract=contract,
            requester=requester,
            counterparties={k: len(v) for k, v in by_owner.items()},
            given=sum(len(driver.get_tally(s, owner).received) for s, owner in pairs),
            received=sum(len(tally.received) for tally in ours),
            swept=sum(len(tally.swept) for tally in ours),
            double_spent=[chunk_id for tally in ours for chunk_id in tally.double_spent],
            compensated_wei=sum(tally.compensated for tally in ours),
            exposure_usd_e8={
                owner: tally.exposure_usd_e8 for (_, owner), tally in zip(pairs, ours, strict=True)
            },
            latency_s=round(time.monotonic() - started, 3),
            transactions=self.tx_count - tx_before,
            gas=self.gas_used - gas_before,
        )
        self._emit("swap-done", **msgspec.structs.asdict(outcome))
        return outcome

    def _drive_swap(
        self,
        driver: SwapDriver,
        effects: Sequence[SwapEffect],
        kinds: dict[str, str],
        deadline: float,
    ) -> None:
        """Carry out the swap driver's decisions depth first: the decisions an answer
        brings before the next one, so a delivery, its sweeps and the proceed or abort
        after them come before the next delivery."""
        stack = list(reversed(effects))
        while stack:
            answer = self._carry_out(stack.pop(), kinds, deadline)
            if answer is not None:
                stack.extend(reversed(driver.process(answer)))

    def _carry_out(
        self, effect: SwapEffect, kinds: dict[str, str], deadline: float
    ) -> SwapAnswer | None:
        """One decision of the swap driver, against a vault, a chain or the matcher."""
        if isinstance(effect, Report):
            self._emit(effect.kind, **effect.data)
            return None
        if isinstance(effect, SweepChunk):
            client = self._client(effect.party)
            if effect.insured:  # the matcher booked it: settle it, or report the loss
                swept, paid = self._sweep_or_report(client, effect.chunk)
                return SweepResult(effect.tag, swept, paid)
            return SweepResult(effect.tag, self._sweep(client, effect.chunk))
        if isinstance(effect, OpenSide):
            request = OpenSwap(
                swap_id=effect.swap_id,
                role=effect.role,
                mine=list(effect.mine),
                theirs=list(effect.theirs),
                kinds=kinds,
                deadline=deadline,
                counterparty=self._fresh_card(self._client(effect.counterparty)),
            )
            out = self._client(effect.party).vault.call(VAULT_OPEN_SWAP, request)
        elif isinstance(effect, DeliverKey):
            sender = self._client(effect.sender)
            if effect.sender_role == ROLE_OWNER and sender.compromised:
                self._double_spend(sender, effect.chunk)
            receiver = self._client(effect.receiver)
            out = receiver.vault.call(VAULT_DELIVER, Deliver(envelope=effect.envelope))
        else:  # proceed (make the releases held for the sweeps) or abort
            ecall = VAULT_PROCEED if isinstance(effect, ProceedSide) else VAULT_ABORT
            out = self._client(effect.party).vault.call(ecall, ContractRef(contract=effect.swap_id))
        finished = out.finished[-1].outcome if out.finished else ""
        return SideOutput(
            tag=effect.tag,
            releases=tuple(OutgoingKey(e.chunk_id, e) for e in out.releases),
            sweeps=tuple(out.sweeps),
            finished=finished,
        )

    def tick(self, name: str, contract: str) -> list[str]:
        """Let a client's vault see the time pass for one contract; returns the outcomes
        of contracts that ended (e.g. a swap aborted after its deadline)."""
        out = self._client(name).vault.call(VAULT_TICK, ContractRef(contract=contract))
        return [f.outcome for f in out.finished]

    def reclaim(self, name: str, chunk_ids: Sequence[str]) -> None:
        """Give allocated chunks whose keys were never released back to the book (their
        contract ended without them): the owner's vault signs that each key is free (a
        :class:`~sealbridge.keyrelease.operator.ReclaimFlow` decides)."""
        client = self._client(name)
        flow = self.operator.open_reclaim(name, list(chunk_ids))
        self._run_flow(flow, flow.start(), client)

    def _double_spend(self, owner: KeyReleaseClient, chunk: Chunk) -> None:
        """The compromised owner's host: extract the key it is about to release and sweep
        the chunk to itself first (same key, released twice)."""
        secret = owner.vault.call(VAULT_LEAK, ChunkRef(chunk_id=chunk.chunk_id))
        asset = self.assets[chunk.asset]
        adapter = self.adapters[asset.chain_id]
        thief = owner.account
        if asset.kind == AssetKind.NATIVE:
            balance = adapter.balance(chunk.address)
            max_fee, _ = adapter.get_fees()
            value = balance - 21_000 * max_fee
            tx_hash = adapter.send_transaction(secret, to=thief, data=b"", value=value, gas=21_000)
        else:
            data = self.token.encode_transfer(thief, self.token.balance_of(chunk.address))
            tx_hash = adapter.send_transaction(
                secret, to=self.token.address, data=data, gas=TOKEN_SWEEP_GAS
            )
        receipt = adapter.wait_for_receipt(tx_hash)
        self._count(receipt.gas_used)
        self._emit(
            "double-spend",
            owner=owner.name,
            chunk=chunk.chunk_id[-6:],
            note="compromised vault leaked the key; its host swept the chunk first",
        )

    def sync_chunk_chains(self) -> dict[int, int]:
        """Bring the matcher's view of every chain chunks live on to the head: chain A's
        blocks (the fee chain) and chain B's headers. Returns the tip per chain."""
        tips = {CHAIN_A: self.sync_fee_chain()}
        for anchor in self.chunk_sources.chains if self.chunk_sources else []:
            adapter = self.adapters[anchor.chain_id]
            query = ChainTipQuery(chain_id=anchor.chain_id)
            tip = self._matcher().call(MATCHER_CHAIN_TIP, query).number
            head = adapter.get_block_number()
            while tip < head:
                numbers = list(range(tip + 1, min(head, tip + MAX_OBSERVED_BLOCKS) + 1))
                headers = adapter.get_header_fields(numbers)
                tip = (
                    self._matcher()
                    .call(
                        MATCHER_ADVANCE_HEADERS,
                        AdvanceChainHeaders(chain_id=anchor.chain_id, headers=headers),
                    )
                    .number
                )
            tips[anchor.chain_id] = tip
        return tips

    def prove_balances(self, chunks: Sequence[Chunk]) -> list[BalanceProof]:
        """``eth_getProof`` of each chunk's balance at the matcher's newest verified block
        of its chain (after bringing it to the head)."""
        if self.chunk_sources is None:
            return []
        sources = {source.asset: source for source in self.chunk_sources.assets}
        proven = [c for c in chunks if sources[c.asset].kind != AssetKind.BTC.value]
        if not proven:
            return []
        tips = self.sync_chunk_chains()
        proofs = []
        for chunk in proven:
            source = sources[chunk.asset]
            adapter = self.adapters[source.chain_id]
            if source.kind == AssetKind.ERC20.value:
                slot = get_balance_slot(source, chunk.address)
                proof = adapter.get_proof(self.token.address, [slot], tips[source.chain_id])
            else:
                proof = adapter.get_proof(chunk.address, [], tips[source.chain_id])
            proofs.append(
                BalanceProof(chunk_id=chunk.chunk_id, number=tips[source.chain_id], proof=proof)
            )
        return proofs

    def sync_fee_chain(self) -> int:
        """Feed the matcher every chain-A block it has not verified yet (headers and
        receipts); it counts the pool's ``FeePaid`` logs in them. Returns its tip."""
        a = self.adapters[CHAIN_A]
        tip = self._matcher().call(MATCHER_FEE_TIP, NOTHING).number
        head = a.get_block_number()
        while tip < head:
            numbers = list(range(tip + 1, min(head, tip + MAX_OBSERVED_BLOCKS) + 1))
            blocks = a.get_block_evidence(numbers)
            tip = self._matcher().call(MATCHER_OBSERVE_BLOCKS, ObserveBlocks(blocks=blocks)).number
        return tip

    def withdraw(self, name: str, chunk: Chunk, destination: str) -> SignedSweep:
        """Move what the client's vault swept of ``chunk`` to ``destination``: an order
        signed with the client's wallet key (the vault's bound owner), sent as the
        transaction the vault signs (every vault is bound to its client at creation)."""
        client = self._client(name)
        source = self.swept_to.get(chunk.chunk_id)
        if source is None:
            raise KeyReleaseDevnetError(f"{name} did not sweep chunk {chunk.chunk_id}")
        sweep = self._sweep_request(msgspec.structs.replace(chunk, address=source))
        request = WithdrawalRequest(vault=client.vault_id, destination=destination, sweep=sweep)
        signature = secp256k1_sign_hash(client.wallet_key, compute_withdrawal_digest(request))
        signed = client.vault.call(
            VAULT_WITHDRAW, SignedWithdrawal(request=request, signature=signature)
        )
        adapter = self.adapters[sweep.chain_id]
        self._count(adapter.wait_for_receipt(adapter.send_raw_transaction(signed.raw_tx)).gas_used)
        self._emit("withdraw", client=name, chunk=chunk.chunk_id[-6:], to=destination)
        return signed

    def withdraw_btc(self, name: str, chunk: Chunk, destination: str) -> SignedBtcSweep:
        """``withdraw`` for a btc chunk: the outputs at the chunk's sweep key go to
        ``destination`` (any address of the network), in an order signed with the client's
        wallet key; the ledger checks the transaction and it is mined."""
        client = self._client(name)
        source = self.swept_to.get(chunk.chunk_id)
        if source is None or self.assets[chunk.asset].kind != AssetKind.BTC:
            raise KeyReleaseDevnetError(f"{name} did not sweep btc chunk {chunk.chunk_id}")
        utxos, fee = _btc_spend(self.btc.get_utxos(source))
        sweep = BtcSweepRequest(
            chunk_id=chunk.chunk_id, utxos=utxos, fee_sat=fee, network=BTC_NETWORK
        )
        request = BtcWithdrawalRequest(vault=client.vault_id, destination=destination, sweep=sweep)
        signature = secp256k1_sign_hash(client.wallet_key, compute_btc_withdrawal_digest(request))
        signed = client.vault.call(
            VAULT_WITHDRAW_BTC, SignedBtcWithdrawal(request=request, signature=signature)
        )
        self.btc.broadcast(signed.raw_tx)
        self.btc.mine()
        self._emit("withdraw", client=name, chunk=chunk.chunk_id[-6:], to=destination)
        return signed

    def _sweep_btc(self, client: KeyReleaseClient, chunk: Chunk) -> bool:
        """``_sweep`` for a btc chunk: every output at the chunk's address goes to the
        P2WPKH address of its sweep key; False if they hold less than the chunk."""
        held = self.btc.get_utxos(chunk.address)
        if sum(utxo.amount_sat for utxo in held) < chunk.amount:
            return False
        utxos, fee = _btc_spend(held)
        request = BtcSweepRequest(
            chunk_id=chunk.chunk_id, utxos=utxos, fee_sat=fee, network=BTC_NETWORK
        )
        signed = client.vault.call(VAULT_SIGN_BTC_SWEEP, request)
        self.swept_to[chunk.chunk_id] = signed.destination
        try:
            self.btc.broadcast(signed.raw_tx)
        except BitcoinError as exc:
            # not swept (the vault may sign another version later): the swap does not go on
            self._emit(
                "sweep-refused", client=client.name, chunk=chunk.chunk_id[-6:], error=str(exc)
            )
            return False
        if self.confirm_sweeps:
            self.btc.mine()
        self._emit(
            "sweep",
            client=client.name,
            chunk=chunk.chunk_id[-6:],
            to=signed.destination,
            amount=signed.amount_sat,
        )
        return True

    def _sweep_request(self, chunk: Chunk) -> SweepRequest:
        asset = self.assets[chunk.asset]
        adapter = self.adapters[asset.chain_id]
        max_fee, tip = adapter.get_fees()
        return SweepRequest(
            chunk_id=chunk.chunk_id,
            chain_id=asset.chain_id,
            kind=str(asset.kind),
            nonce=adapter.get_nonce(chunk.address),
            balance=adapter.balance(chunk.address),
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
            token=asset.token,
            token_balance=self.token.balance_of(chunk.address)
            if asset.kind == AssetKind.ERC20
            else 0,
        )

    def _sweep(self, client: KeyReleaseClient, chunk: Chunk) -> bool:
        """Sweep a received chunk to its sweep key in the client's vault; False if the funds
        were gone (nothing signed)."""
        if self.assets[chunk.asset].kind == AssetKind.BTC:
            return self._sweep_btc(client, chunk)
        request = self._sweep_request(chunk)
        held = request.token_balance if request.kind == "erc20" else request.balance
        if held < chunk.amount:
            return False
        signed = client.vault.call(VAULT_SIGN_SWEEP, request)
        self.swept_to[chunk.chunk_id] = signed.destination
        adapter = self.adapters[request.chain_id]
        tx_hash = adapter.send_raw_transaction(signed.raw_tx)
        if self.confirm_sweeps:
            self._count(adapter.wait_for_receipt(tx_hash).gas_used)
        else:
            self._unconfirmed.append((adapter, tx_hash))
        self._emit(
            "sweep",
            client=client.name,
            chunk=chunk.chunk_id[-6:],
            to=signed.destination,
            amount=signed.amount,
        )
        return True

    def _confirm_sweeps(self) -> None:
        """Wait for the sweeps sent without waiting (``confirm_sweeps=False``)."""
        while self._unconfirmed:
            adapter, tx_hash = self._unconfirmed.pop(0)
            self._count(adapter.wait_for_receipt(tx_hash).gas_used)

    def _sweep_or_report(self, client: KeyReleaseClient, chunk: Chunk) -> tuple[bool, int]:
        if self._sweep(client, chunk):
            self._matcher().call(
                MATCHER_SETTLE, Settle(chunk_id=chunk.chunk_id, requester=client.account)
            )
            return True, 0
        return False, self.report_double_spend(client, chunk)

    def report_double_spend(self, victim: KeyReleaseClient, chunk: Chunk) -> int:
        """The victim reports; the matcher's host reads the chain; the matcher enclave
        judges and signs the slash and the compensation; the host submits them. A
        :class:`~sealbridge.keyrelease.operator.ReportFlow` decides what to read and
        what the readings say; this host carries out its questions. Returns the
        compensation in wei."""
        asset = self.assets[chunk.asset]
        card = self.matcher_card
        if card is None:
            raise KeyReleaseDevnetError("the devnet is not started")
        flow = self.operator.open_report(
            victim=victim.name,
            victim_account=victim.account,
            chunk=chunk,
            chain_id=asset.chain_id,
            token=self.token.address if asset.kind == AssetKind.ERC20 else "",
            since=self.deposit_blocks.get(chunk.chunk_id, 0),
            fee_chain_id=CHAIN_A,
            pool=self.pool.address,
            operator=card.operator,
            names={c.account: c.name for c in self.clients.values()},
        )
        self._run_flow(flow, flow.start(), victim)
        if flow.result is None:  # pragma: no cover -- the flow ends with its result
            raise KeyReleaseDevnetError("the report flow did not finish")
        return flow.result

    # -- contract Z: the time-locked escrow -----------------------------------------------------
    def run_escrow(
        self, depositor: str, beneficiary: str, asset_id: str, count: int, unlock_in_s: float
    ) -> int:
        """Lock ``count`` chunks of the depositor for the beneficiary until ``unlock_in_s``
        from now; returns how many the beneficiary swept."""
        dep, ben = self._client(depositor), self._client(beneficiary)
        chunks = [c for c in dep.chunks if c.asset == asset_id][:count]
        if len(chunks) < count:
            chunks += self.deposit(depositor, asset_id, count - len(chunks))
            chunks = [c for c in dep.chunks if c.asset == asset_id][:count]
        dep.chunks = [c for c in dep.chunks if c not in chunks]
        kinds = self.asset_kinds
        unlock_at = time.time() + unlock_in_s
        escrow_id = f"escrow:{depositor}:{beneficiary}:{int(unlock_at)}"
        for client, role, other in ((ben, "beneficiary", dep), (dep, "depositor", ben)):
            client.vault.call(
                VAULT_OPEN_ESCROW,
                OpenEscrow(
                    escrow_id=escrow_id,
                    role=role,
                    chunks=chunks,
                    kinds=kinds,
                    unlock_at=unlock_at,
                    counterparty=self._fresh_card(other),
                ),
            )
        self._emit(
            "escrow-open",
            depositor=depositor,
            beneficiary=beneficiary,
            chunks=count,
            unlock_in_s=unlock_in_s,
        )
        early = dep.vault.call(VAULT_TICK, ContractRef(contract=escrow_id))
        if early.releases:
            raise KeyReleaseDevnetError("the escrow released before its unlock time")
        time.sleep(max(0.0, unlock_at - time.time()) + 0.05)
        out = dep.vault.call(VAULT_TICK, ContractRef(contract=escrow_id))
        by_id = {c.chunk_id: c for c in chunks}
        swept = 0
        for envelope in out.releases:
            result = ben.vault.call(VAULT_DELIVER, Deliver(envelope=envelope))
            for chunk_id in result.sweeps:
                swept += int(self._sweep(ben, by_id[chunk_id]))
        self._emit("escrow-done", beneficiary=beneficiary, released=len(out.releases), swept=swept)
        return swept

    # -- status -----------------------------------------------------------------------------------
    def matcher_status(self) -> MatcherStatus:
        return self._matcher().call(MATCHER_STATUS, NOTHING)

    def vault_status(self, name: str) -> VaultStatus:
        return self._client(name).vault.call(VAULT_STATUS, NOTHING)


def _token_owner(devnet: KeyReleaseDevnet, name: str) -> bytes:
    """Mint the client's TKN on first use (the token's owner is chain B's dev account 0)
    and return the client's key, which then holds the tokens."""
    client = devnet.clients[name]
    if devnet.token.balance_of(client.account) < 10**15:
        receipt = devnet.token.mint(client.account, 10**24, devnet.adapters[CHAIN_B].get_dev_key(0))
        devnet._count(receipt.gas_used)
    return client.wallet_key


class DemoResult(Message, frozen=True):
    swap: SwapOutcome
    stalled: SwapOutcome
    escrow_swept: int
    pool_wei: int
    owners: dict[str, dict[str, Any]]  # name -> reputation, banned, bond, double spends
    honest_loss_usd_e8: int  # value the honest requester gave and did not get back
    compensation_usd_e8: int


def run_demo_scenario(devnet: KeyReleaseDevnet) -> DemoResult:
    """The whole story on a started devnet with clients alice, bob, carol, mallory
    (mallory compromised): owners bond and deposit ETH chunks, alice swaps TKN for them
    tit-for-tat, mallory double-spends and is caught, slashed and banned while alice is
    compensated; alice's vault and the matcher are killed and restarted from their sealed
    state;
    then carol walks away mid-swap (alice exposed by one chunk at most);
    then a time-locked escrow. (The default 34 % cap makes the 6-chunk request draw 2
    chunks from each owner, and the 2-chunk one 1 from each owner left.)"""
    for name in ("alice", "bob", "carol", "mallory"):
        devnet._client(name)
    for owner in ("bob", "carol", "mallory"):
        devnet.post_bond(owner, 500 * USD)
        devnet.offer(owner, devnet.deposit(owner, "ETH@31337", 4))
    answer = devnet.request("alice", "ETH@31337", 600 * USD, "swap:demo-1")
    devnet.accept("alice", answer)
    swap = devnet.run_swap("alice", answer, "TKN@31338")
    # alice's vault process dies; it comes back with its sealed keys and contracts, and
    # the rest of the story runs on keys it made before the crash
    devnet.restart_vault("alice")
    # so does the matcher's: its sealed journal replays the book, the bans and the pool
    devnet.restart_matcher()
    # carol walks away without releasing: alice is one chunk short, never more
    devnet.offer("carol", devnet.deposit("carol", "ETH@31337", 2))
    answer = devnet.request("alice", "ETH@31337", 200 * USD, "swap:demo-2")
    devnet.accept("alice", answer)
    stalled = devnet.run_swap(
        "alice", answer, "TKN@31338", deadline_s=30.0, stop_after={"carol": 0}
    )
    escrow = devnet.run_escrow("alice", "bob", "TKN@31338", 2, unlock_in_s=2.0)
    status = devnet.matcher_status()
    owners = {}
    for name, client in devnet.clients.items():
        entry = status.owners.get(client.account)
        if entry is not None:
            owners[name] = {
                "reputation": entry.reputation,
                "banned": entry.banned,
                "bond_usd": entry.bond_usd_e8 / USD,
                "double_spends": entry.double_spends,
            }
    chunk = devnet.chunk_usd_e8
    loss = (swap.given - swap.swept) * chunk + (stalled.given - stalled.swept) * chunk
    paid = status.compensation_paid.get(devnet._client("alice").account, 0)
    return DemoResult(
        swap=swap,
        stalled=stalled,
        escrow_swept=escrow,
        pool_wei=devnet.pool.get_pool(),
        owners=owners,
        honest_loss_usd_e8=loss,
        compensation_usd_e8=paid,
    )
