"""The gatekeeper committee: a threshold root key per era, generated, rotated and used.

Theory of operation
-------------------
No gatekeeper ever holds the root key. The root secret ``s`` exists only as Shamir
shares held by the members of the current *era*'s committee; the key of contract ``cid``
is derived from the unique BLS signature ``s·H(cid)`` (a threshold PRF), which a worker
combines from ``t`` partial signatures (see :mod:`sealbridge.keyservice.threshold`).

The chain (GatekeeperCommittee contract) is the broadcast channel and referee. Per era:

1. **Elected** (``EraElected``): members, threshold ``t``, dealers. At genesis the dealers
   are the members themselves (joint-Feldman key generation: a fresh ``s``); at a
   rotation they are the previous era's members, each dealing its own share as the
   constant term of a new polynomial (resharing: the same ``s``, so the group public key
   and every contract key stay the same).
2. **Dealing**: each dealer's enclave publishes a :class:`Dealing` -- Feldman commitments
   plus one share per member, ECIES-encrypted to that member's attested key and bound to
   (era, dealer, member) -- signed with its enclave's secp256k1 key over the digest the
   contract checks.
3. **Collecting**: each member decrypts its share of every dealing and checks it against
   the commitments (and, for a rotation, the constant term against the dealer's old
   public share). A bad dealing is a complaint and its dealer is left out.
4. **Ready**: with the qualified dealers the chain agreed on, each member computes its new
   share and the group key, and confirms on chain (:class:`ReadyConfirmation`). The share
   is *pending* until the chain's ``RotationReady`` event; then it becomes the active share
   and the previous era's share is erased (a retired gatekeeper erases its only share).
   A rotation that times out is restarted by the contract (the unresponsive are
   penalized); the pending state of the failed era is simply dropped.

**Fresh eras** (``EraInfo.fresh``; the contract's ``elect_fresh``, gateway committees
only). Instead of resharing, the new members run a new joint-Feldman key generation, as
at genesis: a new secret, a new group key, which the chain requires to differ from the
previous era's. Whoever trusts the old key (the gateways' escrows) must be told of the
new one by a signature of the old key, so when a fresh era becomes ready the previous
era's share is *not* erased: it moves to the ``HANDOVER`` phase (:meth:`get_handover`),
where it signs nothing but the handover of the key that this member computed itself
(a member of the fresh era) or saw become ready (a member leaving with the old era).
The program that holds the member erases it (:meth:`erase_handover`) once it has seen
the new key installed wherever the old one was trusted. The states of one era here::

    COLLECTING -> READY -> ACTIVE -> RETIRED            (genesis, resharing)
    COLLECTING -> READY -> ACTIVE -> HANDOVER -> RETIRED (an era followed by a fresh one)

Member facts come from the host, so they are checked here: every member's card carries
an attestation quote that must verify under the enclave's policy, with the gatekeeper's
own measurement and report data binding the card's keys -- so shares are only ever
encrypted to genuine gatekeeper enclaves. A dealing must be signed by the enclave key its
dealer's card attests.

The core is sans-I/O: randomness and time are inputs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from py_arkworks_bls12381 import G1Point, Scalar

from sealbridge.chain.abi import compute_dealing_digest, compute_ready_digest, recover_signer
from sealbridge.chain.errors import ChainError
from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import (
    DecryptionError,
    InvalidSignature,
    LocalProtocolError,
    RemoteProtocolError,
)
from sealbridge.crypto import ecies
from sealbridge.crypto.dkg import (
    Complaint,
    DealingCommitment,
    DkgParticipant,
    GroupPublicKeys,
    KeyShareResult,
    ReshareParticipant,
)
from sealbridge.crypto.shamir import lagrange_coefficients
from sealbridge.crypto.signing import to_checksum_address
from sealbridge.keyservice.threshold import ShareHolder
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.tee.card import AttestedCard, WrongProgram, verify_attested_card
from sealbridge.tee.enclave import EnclaveKeys, NodeKeys
from sealbridge.tee.policy import AttestationPolicy

RandomBytes = Callable[[int], bytes]
SHARE_AAD_TAG = b"sealbridge/committee-share/v1"


class CommitteeError(RemoteProtocolError):
    """Committee input (an era, a card, a dealing) that the enclave refuses."""

    code = "committee_refused"


class CommitteeStateError(LocalProtocolError):
    code = "committee_state"


class EraInfo(Message, frozen=True):
    """What the chain says of an era (EraElected): who holds shares and who deals."""

    era: int
    members: list[bytes]  # node ids; member i has share index i + 1
    threshold: int
    dealers: list[bytes]  # genesis and fresh: the members; resharing: the previous era's
    previous_era: int = 0  # 0: genesis
    fresh: bool = False  # a new key generation replacing previous_era's key (elect_fresh)

    @property
    def is_key_generation(self) -> bool:
        """Genesis or fresh: the members deal (a new secret), nobody reshares."""
        return self.previous_era == 0 or self.fresh


class ChainBinding(Message, frozen=True):
    """The committee contract the enclave signs for (fixed at genesis, sealed)."""

    chain_id: int
    committee_address: str


class Dealing(Message, frozen=True):
    """One dealer's dealing, exactly as GatekeeperCommittee.post_dealing carries it."""

    era: int
    dealer: bytes
    commitments: list[bytes]  # Feldman commitments, t compressed G1 points
    shares: list[bytes]  # share for member i, ECIES to member i's encryption key
    signature: bytes  # the dealer enclave's secp256k1 signature over the dealing digest


class ReadyConfirmation(Message, frozen=True):
    """What a member confirms on chain (GatekeeperCommittee.confirm_ready)."""

    era: int
    member: bytes
    group_public_key: bytes
    public_share: bytes
    qualified: list[bytes]  # dealer node ids whose dealings were combined
    signature: bytes  # the member enclave's secp256k1 signature over the ready digest


class EraShare(Message, frozen=True):
    era: int
    result: KeyShareResult


class EraPublic(Message, frozen=True):
    era: int
    members: list[bytes]
    public: GroupPublicKeys


class HandoverShare(Message, frozen=True):
    """The share of an era followed by a fresh one, kept to sign the new key's handover."""

    era: int  # the era whose share this is
    next_era: int  # the fresh era that replaced it
    next_group_key: bytes  # the only key this share may hand over to
    result: KeyShareResult


class CommitteeState(Message, frozen=True):
    """What a gatekeeper seals to its measurement: its shares (active, computed but not
    yet activated by the chain, and kept for a handover) and the public side of the eras
    it knows."""

    current_era: int
    active: list[EraShare]
    ready: list[EraShare]  # confirmed on chain, waiting for RotationReady
    ready_members: list[EraPublic]
    eras: list[EraPublic]
    handover: list[HandoverShare] = []
    ready_info: list[EraInfo] = []  # the elections of the ``ready`` eras


class EraPhase(enum.Enum):
    COLLECTING = "collecting"  # dealings arriving
    READY = "ready"  # own share computed, waiting for the chain's RotationReady
    ACTIVE = "active"  # the era's share serves key requests
    HANDOVER = "handover"  # a fresh era replaced it: the share signs only its handover
    RETIRED = "retired"  # erased


def is_consistent_sharing(public: GroupPublicKeys) -> bool:
    """True when every public share and the group key lie on one polynomial of degree
    ``threshold - 1`` in the exponent (checked by interpolating from the first
    ``threshold`` shares)."""
    shares = public.public_shares
    indices = sorted(shares)
    t = public.threshold
    if not 1 <= t <= len(indices):
        return False
    base = indices[:t]
    try:
        points = [G1Point.from_compressed_bytes(shares[i]) for i in base]
        for target in [0, *indices[t:]]:
            weights = lagrange_coefficients(base, at=target)
            value = G1Point.multiexp_unchecked(points, [Scalar(w) for w in weights])
            expected = public.group_public_key if target == 0 else shares[target]
            if value.to_compressed_bytes() != expected:
                return False
    except (ValueError, TypeError, RuntimeError):
        return False
    return True


def compute_share_aad(era: int, dealer: bytes, member: bytes) -> bytes:
    return SHARE_AAD_TAG + encode([era, dealer, member])


class _PendingEra:
    def __init__(
        self,
        info: EraInfo,
        participant: DkgParticipant | ReshareParticipant,
        cards: dict[bytes, NodeKeys] | None = None,
    ) -> None:
        self.info = info
        self.cards = cards or {}
        self.participant = participant
        self.result: KeyShareResult | None = None
        self.complaints: dict[bytes, Complaint] = {}
        self.phase = EraPhase.COLLECTING


class Handover:
    """An era's share kept after a fresh era replaced it (phase ``HANDOVER``)."""

    def __init__(self, era: int, holder: ShareHolder, next_era: int, next_group_key: bytes):
        self.era = era
        self.holder = holder
        self.next_era = next_era
        self.next_group_key = next_group_key

    def export(self) -> HandoverShare:
        return HandoverShare(
            era=self.era,
            next_era=self.next_era,
            next_group_key=self.next_group_key,
            result=self.holder.export_result(),
        )


class CommitteeMember:
    """A gatekeeper enclave's part in the committee (one object across eras)."""

    def __init__(
        self,
        *,
        enclave: EnclaveKeys,
        policy: AttestationPolicy,
        measurement: bytes,
        chain: ChainBinding | None = None,
    ):
        self.enclave = enclave
        self.chain = chain or ChainBinding(chain_id=0, committee_address="0x" + "00" * 20)
        self.node_id = enclave.identity.identity_key
        self.policy = policy
        self.measurement = measurement
        self.active: dict[int, ShareHolder] = {}  # era -> share (normally one)
        self.pending: dict[int, _PendingEra] = {}
        self.phases: dict[int, EraPhase] = {}
        self.era_members: dict[int, list[bytes]] = {}  # eras known active here
        self.publics: dict[int, GroupPublicKeys] = {}  # their public sides
        self.handover: dict[int, Handover] = {}  # era -> its share, kept for a handover
        self.current_era = 0

    # -- facts -------------------------------------------------------------------------
    def check_cards(
        self, info: EraInfo, cards: list[AttestedCard], now: int
    ) -> dict[bytes, NodeKeys]:
        """Verify every member's card: an attested gatekeeper enclave with these keys."""
        keys: dict[bytes, NodeKeys] = {}
        for card in cards:
            try:
                verify_attested_card(
                    card, policy=self.policy, now=now, measurement=self.measurement
                )
            except WrongProgram as exc:
                raise CommitteeError(
                    f"member 0x{card.node.identity_key.hex()[:12]}… is not an enclave of this "
                    "committee's program (another measurement)"
                ) from exc
            keys[card.node.identity_key] = card.node
        missing = [m for m in [*info.members, *info.dealers] if m not in keys]
        if missing:
            raise CommitteeError(f"no attested card for node 0x{missing[0].hex()[:12]}…")
        return keys

    @staticmethod
    def check_era(info: EraInfo) -> None:
        if len(set(info.members)) != len(info.members) or not info.members:
            raise CommitteeError("era members must be distinct and non-empty")
        if not 1 <= info.threshold <= len(info.members):
            raise CommitteeError(f"threshold {info.threshold} out of 1..{len(info.members)}")
        if len(set(info.dealers)) != len(info.dealers) or not info.dealers:
            raise CommitteeError("era dealers must be distinct and non-empty")

    # -- elected ----------------------------------------------------------------------
    def process_era_elected(
        self, info: EraInfo, cards: list[AttestedCard], now: int
    ) -> Dealing | None:
        """Join the era (if a member) and deal (if a dealer). Returns our dealing."""
        self.check_era(info)
        if info.era in self.phases:
            raise CommitteeStateError(f"era {info.era} was already processed")
        keys = self.check_cards(info, cards, now)
        indices = list(range(1, len(info.members) + 1))
        is_member = self.node_id in info.members
        is_dealer = self.node_id in info.dealers
        genesis = info.is_key_generation  # genesis or fresh: a new secret, members deal
        if genesis:
            if info.dealers != info.members:
                raise CommitteeError("in a key generation the dealers are the members")
        elif info.dealers != self.get_previous_members(info):
            raise CommitteeError("a rotation's dealers must be the previous era's members")
        pending: _PendingEra | None = None
        if is_member:
            my_index = info.members.index(self.node_id) + 1
            participant: DkgParticipant | ReshareParticipant
            if genesis:
                participant = DkgParticipant(my_index, info.threshold, indices)
            else:
                participant = ReshareParticipant(
                    my_index, info.threshold, indices, self.get_previous_public(info)
                )
            pending = _PendingEra(info, participant, keys)
        dealing: Dealing | None = None
        if is_dealer:
            randomness = self.enclave.random_bytes(32)
            if genesis:
                if pending is None:  # unreachable: genesis dealers are members
                    raise CommitteeError("a genesis dealer must be a member")
                participant_genesis = pending.participant
                if not isinstance(participant_genesis, DkgParticipant):
                    raise CommitteeStateError("genesis needs a key-generation participant")
                commitment, shares = participant_genesis.start(randomness)
            else:
                holder = self.active.get(info.previous_era)
                if holder is None:
                    raise CommitteeStateError(
                        f"no active share of era {info.previous_era} to deal from"
                    )
                commitment, shares = holder.deal_reshare(info.threshold, indices, randomness)
            dealing = self.seal_dealing(info, keys, commitment, shares)
            if pending is not None and not genesis:
                # our own dealing reaches us like anyone else's
                self.take_dealing(pending, info, dealing)
        if pending is not None:
            self.pending[info.era] = pending
            self.phases[info.era] = EraPhase.COLLECTING
        return dealing

    def get_previous_members(self, info: EraInfo) -> list[bytes]:
        known = self.era_members.get(info.previous_era)
        if known is None:
            raise CommitteeStateError(f"era {info.previous_era} is not known here")
        return known

    def get_previous_public(self, info: EraInfo) -> GroupPublicKeys:
        public = self.publics.get(info.previous_era)
        if public is None:
            raise CommitteeStateError(f"the public keys of era {info.previous_era} are unknown")
        return public

    def compute_dealing_digest(
        self, era: int, dealer: bytes, commitments: list[bytes], shares: list[bytes]
    ) -> bytes:
        return compute_dealing_digest(
            committee=self.chain.committee_address,
            chain_id=self.chain.chain_id,
            era=era,
            dealer_id=dealer,
            commitments=commitments,
            shares=shares,
        )

    def seal_dealing(
        self,
        info: EraInfo,
        keys: dict[bytes, NodeKeys],
        commitment: DealingCommitment,
        shares: dict[int, bytes],
    ) -> Dealing:
        sealed: list[bytes] = []
        for position, member in enumerate(info.members, start=1):
            share = shares.get(position)
            if share is None:  # our own genesis share stays inside the participant
                sealed.append(b"")
                continue
            sealed.append(
                ecies.encrypt_to(
                    keys[member].encryption_key,
                    share,
                    compute_share_aad(info.era, self.node_id, member),
                    ephemeral_seed=self.enclave.random_bytes(32),
                )
            )
        commitments = list(commitment.commitments)
        digest = self.compute_dealing_digest(info.era, self.node_id, commitments, sealed)
        return Dealing(
            era=info.era,
            dealer=self.node_id,
            commitments=commitments,
            shares=sealed,
            signature=self.enclave.sign_eth_digest(digest),
        )

    # -- collecting --------------------------------------------------------------------
    def process_dealing(self, dealing: Dealing) -> Complaint | None:
        """Take one dealing of a pending era (from the chain, relayed by the host)."""
        pending = self.pending.get(dealing.era)
        if pending is None or pending.phase is not EraPhase.COLLECTING:
            raise CommitteeStateError(f"era {dealing.era} is not collecting dealings here")
        return self.take_dealing(pending, pending.info, dealing)

    def take_dealing(
        self, pending: _PendingEra, info: EraInfo, dealing: Dealing
    ) -> Complaint | None:
        if dealing.dealer not in info.dealers:
            raise CommitteeError("the dealing's author is not a dealer of this era")
        card = pending.cards.get(dealing.dealer)
        if card is None:
            raise CommitteeError("no attested card for the dealer")
        digest = self.compute_dealing_digest(
            dealing.era, dealing.dealer, dealing.commitments, dealing.shares
        )
        try:
            signer = recover_signer(digest, dealing.signature)
        except (InvalidSignature, ChainError) as exc:
            raise CommitteeError("the dealing's signature does not verify") from exc
        if signer != to_checksum_address(card.eth_address):
            raise CommitteeError("the dealing is not signed by the dealer's enclave")
        dealer_index = info.dealers.index(dealing.dealer) + 1
        if info.is_key_generation and dealing.dealer == self.node_id:
            return None  # our own genesis dealing is already inside the participant
        if len(dealing.shares) != len(info.members):
            complaint = Complaint(
                complainer=pending.participant.index,
                dealer=dealer_index,
                reason="wrong number of shares",
            )
            pending.complaints[dealing.dealer] = complaint
            return complaint
        my_position = info.members.index(self.node_id)
        try:
            share = self.enclave.decrypt_for_identity(
                dealing.shares[my_position],
                compute_share_aad(info.era, dealing.dealer, self.node_id),
            )
        except DecryptionError:
            share = b""
        commitment = DealingCommitment(
            dealer=dealer_index, threshold=info.threshold, commitments=list(dealing.commitments)
        )
        complaint_or_none = pending.participant.on_dealing(dealer_index, commitment, share)
        if complaint_or_none is not None:
            pending.complaints[dealing.dealer] = complaint_or_none
        else:
            pending.complaints.pop(dealing.dealer, None)
        return complaint_or_none

    def get_acceptable_dealers(self, era: int) -> list[bytes]:
        """Dealers whose dealings checked out here (a proposal for the qualified set)."""
        pending = self.pending.get(era)
        if pending is None:
            return []
        accepted = pending.participant.accepted_dealers
        return [d for i, d in enumerate(pending.info.dealers, start=1) if i in accepted]

    def finish(self, era: int, qualified: list[bytes]) -> ReadyConfirmation:
        """Compute our share from the qualified dealers; confirm readiness."""
        pending = self.pending.get(era)
        if pending is None or pending.phase is not EraPhase.COLLECTING:
            raise CommitteeStateError(f"era {era} is not collecting dealings here")
        info = pending.info
        unknown = [d for d in qualified if d not in info.dealers]
        if unknown:
            raise CommitteeError("a qualified dealer is not a dealer of this era")
        indices = {info.dealers.index(d) + 1 for d in qualified}
        result = pending.participant.finish(indices)
        previous = self.publics.get(info.previous_era)
        if info.previous_era != 0 and not info.fresh:
            if previous is None or previous.group_public_key != result.group_public_key:
                raise CommitteeError("the rotation would change the group public key")
        if info.fresh and previous is not None:
            if previous.group_public_key == result.group_public_key:
                raise CommitteeError("the fresh era would keep the previous group key")
        pending.result = result
        pending.phase = EraPhase.READY
        self.phases[era] = EraPhase.READY
        ordered = sorted(qualified)  # the contract wants strictly increasing ids
        digest = compute_ready_digest(
            committee=self.chain.committee_address,
            chain_id=self.chain.chain_id,
            era=era,
            member_id=self.node_id,
            group_public_key=result.group_public_key,
            qualified=ordered,
        )
        return ReadyConfirmation(
            era=era,
            member=self.node_id,
            group_public_key=result.group_public_key,
            public_share=result.public_shares[result.index],
            qualified=ordered,
            signature=self.enclave.sign_eth_digest(digest),
        )

    # -- the chain's verdicts --------------------------------------------------------
    def process_rotation_ready(self, info: EraInfo, group_public_key: bytes) -> None:
        """The era is active: use its share; erase every older one (retired). When the
        era is fresh, the previous era's share is kept instead, for the handover of the
        new key (:meth:`get_handover`). Checked first: a refusal changes nothing."""
        pending = self.pending.get(info.era)
        result: KeyShareResult | None = None
        if pending is not None:
            result = pending.result
            if result is None or result.group_public_key != group_public_key:
                raise CommitteeError("the chain's group key is not the one computed here")
            elected = pending.info
            if elected.fresh != info.fresh or (
                info.fresh and elected.previous_era != info.previous_era
            ):
                raise CommitteeError("the era was not elected as the kind it is announced as")
        hand_over = info.fresh and info.previous_era != 0
        if hand_over and info.era <= info.previous_era:
            # a host naming an older era as the fresh one could point a handover back
            # to a retired key (found by attacking the handover)
            raise CommitteeError(f"era {info.era} cannot replace the later era {info.previous_era}")
        if hand_over:
            previous = self.publics.get(info.previous_era)
            if not group_public_key or (
                previous is not None and previous.group_public_key == group_public_key
            ):
                raise CommitteeError("a fresh era must come with a new group key")
        self.pending.pop(info.era, None)
        self.era_members[info.era] = list(info.members)
        if result is not None:
            self.active[info.era] = ShareHolder(result)
            self.publics[info.era] = result.public
            self.phases[info.era] = EraPhase.ACTIVE
        for era, holder in list(self.active.items()):
            if era == info.era:
                continue
            del self.active[era]
            if hand_over and era == info.previous_era:
                self.handover[era] = Handover(era, holder, info.era, group_public_key)
                self.phases[era] = EraPhase.HANDOVER
            else:
                holder.erase()
                self.phases[era] = EraPhase.RETIRED
        self.current_era = info.era

    def get_handover(self, next_group_key: bytes) -> Handover:
        """The kept share that may sign the handover to ``next_group_key``: the share of
        an era replaced by a fresh era whose group key this member computed itself or saw
        become ready. Any other key is refused."""
        for handover in self.handover.values():
            if handover.next_group_key == next_group_key and not handover.holder.is_erased:
                return handover
        raise CommitteeError(
            "no share kept here hands over to this key: it is not the group key of a fresh "
            "era seen ready"
        )

    def erase_handover(self, era: int) -> bool:
        """The old key is no longer trusted anywhere (the new one is installed): erase
        the share of ``era`` kept for the handover. False if none is kept."""
        handover = self.handover.pop(era, None)
        if handover is None:
            return False
        handover.holder.erase()
        self.phases[era] = EraPhase.RETIRED
        return True

    def learn_public(self, era: int, members: list[bytes], public: GroupPublicKeys) -> None:
        """Record an era's public side (a member learns it from its own result; a
        newcomer to a rotation gets it from its host). The public shares must lie on one
        polynomial of the era's degree whose value at 0 is the group key; every dealing
        of the rotation is then checked against them."""
        if len(public.shares) != len(members):
            raise CommitteeError("the era's public shares do not match its members")
        if not is_consistent_sharing(public):
            raise CommitteeError("the era's public shares are not a sharing of its group key")
        self.era_members[era] = list(members)
        self.publics[era] = public

    def process_era_failed(self, era: int) -> None:
        """The chain restarted a rotation: drop what was pending for that era."""
        self.pending.pop(era, None)
        self.phases[era] = EraPhase.RETIRED

    # -- serving ------------------------------------------------------------------------
    def get_active(self) -> ShareHolder:
        holder = self.active.get(self.current_era)
        if holder is None or holder.is_erased:
            raise CommitteeStateError("this gatekeeper holds no active share")
        return holder

    def release_partial(
        self,
        contract_id: bytes,
        requester: NodeKeys,
        random_bytes: RandomBytes,
        binding: bytes = b"",
    ) -> PartialKeyRelease:
        """Our partial of ``contract_id``'s key for an attested requester (the caller
        checked its quote, signature and chain facts), bound to ``binding``."""
        return self.get_active().release_partial(
            contract_id, requester.identity_key, requester.encryption_key, random_bytes, binding
        )

    # -- sealing ------------------------------------------------------------------------
    def export_state(self) -> CommitteeState:
        ready: list[EraShare] = []
        ready_members: list[EraPublic] = []
        ready_info: list[EraInfo] = []
        for era, pending in sorted(self.pending.items()):
            if pending.phase is EraPhase.READY and pending.result is not None:
                ready.append(EraShare(era=era, result=pending.result))
                ready_members.append(
                    EraPublic(era=era, members=pending.info.members, public=pending.result.public)
                )
                ready_info.append(pending.info)
        return CommitteeState(
            current_era=self.current_era,
            active=[
                EraShare(era=era, result=holder.export_result())
                for era, holder in sorted(self.active.items())
                if not holder.is_erased
            ],
            ready=ready,
            ready_members=ready_members,
            eras=[
                EraPublic(era=era, members=self.era_members[era], public=public)
                for era, public in sorted(self.publics.items())
                if era in self.era_members
            ],
            handover=[
                handover.export()
                for _, handover in sorted(self.handover.items())
                if not handover.holder.is_erased
            ],
            ready_info=ready_info,
        )

    def restore_state(self, state: CommitteeState) -> None:
        """Load a sealed state."""
        self.current_era = state.current_era
        for entry in state.eras:
            self.era_members[entry.era] = list(entry.members)
            self.publics[entry.era] = entry.public
        for share in state.active:
            self.active[share.era] = ShareHolder(share.result)
            self.phases[share.era] = EraPhase.ACTIVE
        for kept in state.handover:
            holder = ShareHolder(kept.result)
            self.handover[kept.era] = Handover(kept.era, holder, kept.next_era, kept.next_group_key)
            self.phases[kept.era] = EraPhase.HANDOVER
        members = {entry.era: entry.members for entry in state.ready_members}
        elections = {entry.era: entry for entry in state.ready_info}
        for share in state.ready:
            era_members = members.get(share.era)
            if era_members is None:
                continue
            info = elections.get(share.era) or EraInfo(
                era=share.era,
                members=list(era_members),
                threshold=share.result.threshold,
                dealers=list(era_members),
            )
            indices = list(range(1, len(era_members) + 1))
            pending = _PendingEra(info, DkgParticipant(share.result.index, info.threshold, indices))
            pending.result = share.result
            pending.phase = EraPhase.READY
            self.pending[share.era] = pending
            self.phases[share.era] = EraPhase.READY
