"""The gatekeeper's chain facts, read by its enclave from state proofs at a header it verified.

Theory of operation
-------------------
A gatekeeper releases a contract key's partial only to a requester the chain entitles:
an active registered worker assigned to the contract once the key is published, or the
contract's own gatekeeper to publish it. Those facts live in the management contracts'
storage. The host used to read them and pass the answers in; now it passes
``eth_getProof`` proofs instead (:class:`FactsProof`), and the enclave reads the facts
itself:

1. **Which header.** The enclave follows the chain's headers from an anchor fixed at
   genesis (:class:`HeaderTrack`: each header must carry the next number and its
   parent's hash; the host feeds them with ``advance_headers``). Proofs must be at one
   of the last :data:`RECENT_HEADERS` headers it verified, no older than
   ``max_facts_age`` (sealed at genesis, default an hour) by the enclave's clock, and
   are read against that header's state root. The age bound keeps a host from answering
   with a view it held back (for example before the rotation that retired a share it
   restored); on a chain that mines only on transactions (the devnet) a key request
   after an idle hour needs a block first.
2. **Which accounts.** The management contracts' addresses are sealed at genesis
   (:class:`ManagementBinding`); a proof for another address is refused.
3. **Which slots.** The storage layout of the Vyper contracts is fixed here (the slot
   numbers below; a unit test compares them with the compiler's layout and with the
   contracts' view functions on a real node). :func:`get_fact_slots` names every slot a
   request needs; a proof that leaves one out is refused (``ProofInvalid``), and an
   absent slot is proven zero by the trie, never assumed.

Which proof backs which fact (``ChainFacts`` field <- storage read at the header):

* ``worker_active`` <- ``NodeRegistry.nodes[requester]``: ``active``, ``role`` ==
  worker, ``expiry`` > the header's timestamp (``NodeRegistry.is_active``).
* ``requester_is_publisher`` <- ``ContractRegistry.contracts[cid].gatekeeper_id`` ==
  requester, and the same node record with ``role`` == gatekeeper.
* ``worker_assigned`` <- ``ContractRegistry.assigned[cid][requester]``.
* ``key_published``, ``key_version``, ``rotation_pending`` <- the same-named members of
  ``ContractRegistry.contracts[cid]``.
* ``install_binding`` <- ``ContractRegistry.contracts[cid]``: ``code_hash``,
  ``deployer_commitment`` and ``workers`` (length, then elements): a worker's partial is
  bound to them, and opens only in an enclave whose own verified view of the contract
  names the same (so a worker fed a chain with the host's code gets no key).
* ``previous_version_open`` <- ``ExecutionLedger.checkpoints[cid].height`` <
  ``ContractRegistry.contracts[cid].rotated_at`` (no checkpoint under the current
  version yet).
* ``requester_keys_retired`` <- ``NodeRegistry.nodes[requester]``: ``active`` is set
  and its ``encryption_key`` or ``enclave_address`` is not the one the request's quote
  binds (keys a renewal over fresh keys retired get nothing).
* ``committee_era`` <- ``GatekeeperCommittee.current_era``: the enclave releases only
  with the share of the era the chain names (a share its committee retired is never
  used, even if its host restores it).

Trust argument: the facts are as true as the header. On a chain with a consensus light
client that is the chain's word; on the devnet (anvil has no consensus) the header chain
is the one the host fed from the genesis anchor, so a host can still hold the view back
or feed a fork of its own -- but it must now fabricate a whole linked chain and state
tries, and it takes ``t`` gatekeepers' hosts doing so to release a key.
"""

from __future__ import annotations

from sealbridge.chain.lightclient import HeaderFields, compute_header_hash
from sealbridge.chain.proofs import AccountProof, ProofInvalid, slot_of, verify_slots
from sealbridge.core.encoding import Message
from sealbridge.keyservice.messages import ChainFacts
from sealbridge.keyservice.threshold_messages import compute_install_binding
from sealbridge.tee.enclave import NodeKeys

RECENT_HEADERS = 256  # headers whose state roots proofs may be read against
DEFAULT_MAX_FACTS_AGE = 3600  # seconds a header may be behind the enclave clock
MAX_HEADERS_PER_CALL = 4096

ROLE_GATEKEEPER = 1  # NodeRegistry's role constants
ROLE_WORKER = 2

# storage layout (slots) of the management contracts; see tests/unit/test_chain_facts.py
NODE_REGISTRY_NODES = 3  # nodes: HashMap[bytes32, Node]
NODE_ROLE, NODE_EXPIRY, NODE_ACTIVE = 1, 8, 9  # Node member offsets
NODE_ENCRYPTION_KEY, NODE_ENCLAVE_ADDRESS = 3, 4
CONTRACT_REGISTRY_CONTRACTS = 2  # contracts: HashMap[bytes32, ContractInfo]
CONTRACT_REGISTRY_ASSIGNED = 3  # assigned: HashMap[bytes32, HashMap[bytes32, bool]]
INFO_CODE_HASH = 0  # ContractInfo member offsets (workers is a DynArray of 16: 17 slots,
INFO_GATEKEEPER_ID = 2  # its length first; wrapped_key a Bytes[256]: 9 slots)
INFO_WORKERS = 3
MAX_WORKERS = 16
INFO_DEPLOYER_COMMITMENT = 20
INFO_CONTRACT_KEY = 21  # contract_public_key
INFO_MESSAGE_KEY = 22
INFO_KEY_PUBLISHED = 32
INFO_KEY_VERSION = 33
INFO_ROTATED_AT = 34
INFO_ROTATION_PENDING = 35
LEDGER_CHECKPOINTS = 4  # checkpoints: HashMap[bytes32, Checkpoint]; height is member 0
COMMITTEE_CURRENT_ERA = 3


class ManagementBinding(Message, frozen=True):
    """The management contracts whose storage the enclave reads (20-byte addresses)."""

    node_registry: bytes
    contract_registry: bytes
    execution_ledger: bytes
    committee: bytes


class FactsProof(Message, frozen=True):
    """``eth_getProof`` answers for one key request, all at block ``number``."""

    number: int
    node_registry: AccountProof
    contract_registry: AccountProof
    execution_ledger: AccountProof
    committee: AccountProof


class VerifiedFacts(Message, frozen=True):
    facts: ChainFacts
    committee_era: int
    number: int  # the header the facts were read at


class HeadersRefused(ProofInvalid):
    code = "headers_refused"


class HeaderTip(Message, frozen=True):
    """The newest header the enclave verified (sealed by the host between restarts)."""

    number: int
    block_hash: bytes


class KnownHeader(Message, frozen=True):
    block_hash: bytes
    state_root: bytes
    timestamp: int


class HeaderTrack:
    """The enclave's chain of headers from its anchor (sans-I/O)."""

    def __init__(self, anchor: HeaderTip) -> None:
        self.tip = anchor
        self.recent: dict[int, KnownHeader] = {}

    def advance(self, headers: list[HeaderFields]) -> HeaderTip:
        """Take the next headers (each the child of the one before); on any break
        nothing moves."""
        if len(headers) > MAX_HEADERS_PER_CALL:
            raise HeadersRefused(f"at most {MAX_HEADERS_PER_CALL} headers per call")
        number, parent = self.tip.number, self.tip.block_hash
        taken: list[tuple[int, KnownHeader]] = []
        for header in headers:
            if header.number != number + 1 or header.parent_hash != parent:
                raise HeadersRefused(
                    f"header {header.number} does not follow block {number} of this enclave's chain"
                )
            parent = compute_header_hash(header)
            number = header.number
            taken.append(
                (
                    number,
                    KnownHeader(
                        block_hash=parent, state_root=header.state_root, timestamp=header.timestamp
                    ),
                )
            )
        for at, known in taken[-RECENT_HEADERS:]:
            self.recent[at] = known
        for old in [h for h in self.recent if h <= number - RECENT_HEADERS]:
            del self.recent[old]
        self.tip = HeaderTip(number=number, block_hash=parent)
        return self.tip

    def get(self, number: int) -> KnownHeader:
        known = self.recent.get(number)
        if known is None:
            raise ProofInvalid(
                f"block {number} is not among the last {RECENT_HEADERS} headers this "
                f"enclave verified (its newest is {self.tip.number}): advance its headers"
            )
        return known


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def get_key_slots(contract_id: bytes) -> list[int]:
    """The ContractRegistry slots of a contract's published keys: key published, command
    key, message key (what a worker's key proof covers)."""
    base = slot_of(CONTRACT_REGISTRY_CONTRACTS, contract_id)
    return [base + INFO_KEY_PUBLISHED, base + INFO_CONTRACT_KEY, base + INFO_MESSAGE_KEY]


def get_fact_slots(contract_id: bytes, requester: bytes) -> dict[str, list[int]]:
    """The storage slots a key request's facts are read from, per contract."""
    node = slot_of(NODE_REGISTRY_NODES, requester)
    info = slot_of(CONTRACT_REGISTRY_CONTRACTS, contract_id)
    return {
        "node_registry": [
            node + NODE_ROLE,
            node + NODE_EXPIRY,
            node + NODE_ACTIVE,
            node + NODE_ENCRYPTION_KEY,
            node + NODE_ENCLAVE_ADDRESS,
        ],
        "contract_registry": [
            info + INFO_GATEKEEPER_ID,
            info + INFO_KEY_PUBLISHED,
            info + INFO_KEY_VERSION,
            info + INFO_ROTATED_AT,
            info + INFO_ROTATION_PENDING,
            slot_of(CONTRACT_REGISTRY_ASSIGNED, contract_id, requester),
            info + INFO_CODE_HASH,
            info + INFO_DEPLOYER_COMMITMENT,
            info + INFO_WORKERS,
            *(info + INFO_WORKERS + 1 + i for i in range(MAX_WORKERS)),
        ],
        "execution_ledger": [slot_of(LEDGER_CHECKPOINTS, contract_id)],
        "committee": [COMMITTEE_CURRENT_ERA],
    }


def read_proven_slots(
    root: bytes, proof: AccountProof, address: bytes, slots: list[int], what: str
) -> list[int]:
    if proof.address != address:
        raise ProofInvalid(f"the {what} proof is for another address")
    values = verify_slots(root, proof)
    missing = [s for s in slots if s not in values]
    if missing:
        raise ProofInvalid(f"the {what} proof leaves out slot {missing[0]:#x}")
    return [values[s] for s in slots]


def read_chain_facts(
    binding: ManagementBinding,
    headers: HeaderTrack,
    proof: FactsProof,
    contract_id: bytes,
    requester: bytes,
    *,
    requester_keys: NodeKeys,
    now: int,
    max_age: int = DEFAULT_MAX_FACTS_AGE,
) -> VerifiedFacts:
    """The facts of a key request, read from ``proof`` at a header the enclave verified,
    no older than ``max_age`` seconds by the enclave's clock ``now``. ``requester_keys``:
    the node keys the request's quote binds (compared with the ones the registry names:
    keys a renewal retired get nothing)."""
    if len(contract_id) != 32 or len(requester) != 32:
        raise ProofInvalid("a key request names 32-byte contract and requester ids")
    header = headers.get(proof.number)
    if now - header.timestamp > max_age:
        raise ProofInvalid(
            f"block {proof.number} is {now - header.timestamp}s old by this enclave's clock "
            f"(at most {max_age}s): facts must be read at a recent block"
        )
    root = header.state_root
    slots = get_fact_slots(contract_id, requester)
    role, expiry, active, encryption_key, enclave_address = read_proven_slots(
        root, proof.node_registry, binding.node_registry, slots["node_registry"], "NodeRegistry"
    )
    keys_registered = _word(encryption_key) == requester_keys.encryption_key and (
        enclave_address == int.from_bytes(requester_keys.eth_address, "big")
    )
    info = read_proven_slots(
        root,
        proof.contract_registry,
        binding.contract_registry,
        slots["contract_registry"],
        "ContractRegistry",
    )
    gatekeeper_id, published, version, rotated_at, pending, assigned = info[:6]
    code_hash, commitment, count = info[6:9]
    if count > MAX_WORKERS:
        raise ProofInvalid(f"the contract names {count} workers (at most {MAX_WORKERS})")
    workers = [_word(w) for w in info[9 : 9 + count]]
    install_binding = (
        compute_install_binding(_word(code_hash), _word(commitment), workers) if code_hash else b""
    )
    (checkpoint_height,) = read_proven_slots(
        root,
        proof.execution_ledger,
        binding.execution_ledger,
        slots["execution_ledger"],
        "ExecutionLedger",
    )
    (era,) = read_proven_slots(
        root, proof.committee, binding.committee, slots["committee"], "GatekeeperCommittee"
    )
    registered = active != 0 and expiry > header.timestamp
    facts = ChainFacts(
        worker_active=registered and role == ROLE_WORKER,
        worker_assigned=assigned != 0,
        key_published=published != 0,
        requester_is_publisher=(
            registered and role == ROLE_GATEKEEPER and _word(gatekeeper_id) == requester
        ),
        key_version=version,
        rotation_pending=pending != 0,
        previous_version_open=version > 0 and checkpoint_height < rotated_at,
        install_binding=install_binding,
        requester_keys_retired=active != 0 and not keys_registered,
    )
    return VerifiedFacts(facts=facts, committee_era=era, number=proof.number)
