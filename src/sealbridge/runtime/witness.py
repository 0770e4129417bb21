"""The witness rule: a worker enclave releases nothing derived from a block until a
majority of the contract's executors vouched for that block.

Theory of operation
-------------------
A devnet chain has no consensus proof, so a worker's host can restart its enclave from
a sealed state (or feed a fresh one) and hand it a fork it made itself: real headers up
to the anchor, then blocks of its own that carry, say, its own bid and an early
``close()`` of a sealed-bid auction. Every header links and every receipts root checks
out; the enclave cannot tell. What it can tell is whether *other* enclaves saw the same
blocks, and a host cannot make another operator's enclave sign for its fork.

* **Witnesses.** Every worker enclave keeps the hashes of the last
  :data:`WITNESS_WINDOW` blocks it verified. On request it signs a
  :class:`~sealbridge.runtime.messages.WitnessBody` -- (chain id, command inbox, height,
  block hash) -- with its Ed25519 identity key, for a height it verified (its newest
  block if asked for one beyond it). Hosts fetch these from their peers
  (``POST /v1/witness``) and hand them to their own enclave.
* **Checking.** The enclave keeps a witness only if it is signed by the worker it names,
  binds this chain and inbox, is not its own, and names the hash the enclave itself
  verified at that height (a witness of another fork, or of a height it never saw, is
  ignored). For each worker it remembers the newest height so vouched for. Since headers
  link, a witness of height ``h`` vouches for every block up to ``h`` as well.
* **Coverage.** A contract with executor set ``W`` (from the verified deployment or the
  sealed state, never from the host) is *covered* up to height ``c``: the
  ``|W| // 2``-th highest height vouched for by the other members of ``W``. With the
  enclave itself that is a majority of ``W``. (With one executor nothing is required and
  nothing is protected: a single-executor contract has no one to compare forks with.)
* **Release.** Receipts with a sealed command result and outgoing messages of a block
  are held until their contract is covered up to that block (a receipt without one --
  a refusal, a delivered message -- says no more than its ciphertext and goes out at
  once); a query is answered only if the
  contract is covered up to the block its state was last changed at, and the answer is
  stated at the covered height. Sealed states and state roots go out at once: the former
  are readable only by enclaves, the latter commit to nothing a user can read, and the
  ExecutionLedger refuses an output whose end hash is not the chain's.

Trust argument: an answer, result or message derived from a fork requires a majority of
the contract's executor enclaves to have verified that fork, so it requires the hosts of
a majority of the executors to feed it to them. The devnet promises no more than this
(anvil has no consensus to check); a chain with a light client could add one.

The held backlog is bounded: past :data:`MAX_HELD_RECEIPTS` receipts the oldest are
dropped (counted; a sender can ask another executor), past :data:`MAX_HELD_ITEMS`
messages the runtime applies no more blocks (``ReleaseBacklogFull``; the host releases
what it can and retries) until witnesses arrive. Held items are not sealed:
an enclave restarted from its state bundle loses them, and the other executors, who hold
the same receipts and messages, serve and post them.
"""

from __future__ import annotations

from collections.abc import Callable

from sealbridge.core.encoding import decode_canonical, encode
from sealbridge.core.errors import EncodingError, InvalidSignature
from sealbridge.crypto.signing import ed25519_verify
from sealbridge.runtime.errors import ReleaseBacklogFull, WitnessUnavailable
from sealbridge.runtime.messages import (
    WITNESS_SIGN_TAG,
    BlockWitness,
    ChainConfig,
    HeldOutputs,
    OutgoingMessage,
    Receipt,
    WitnessBody,
)

WITNESS_WINDOW = 1024  # verified block hashes remembered (and witnessed)
MAX_HELD_ITEMS = 65_536  # messages waiting for witnesses (then no block is applied)
MAX_HELD_RECEIPTS = 65_536  # receipts waiting (then the oldest are dropped)
MAX_WITNESSES = 64  # witnesses taken per call

SignIdentity = Callable[[bytes], bytes]


def required_witnesses(workers: list[bytes]) -> int:
    """How many *other* executors must vouch: with the enclave, a majority of them."""
    return len(workers) // 2


class WitnessGate:
    """The sans-I/O state of the witness rule for one enclave."""

    def __init__(self, identity_key: bytes) -> None:
        self.identity_key = identity_key
        self.hashes: dict[int, bytes] = {}  # verified height -> block hash (recent)
        self.tip = 0
        self.vouched: dict[bytes, int] = {}  # worker -> newest height it vouched for
        self.held: list[HeldOutputs] = []
        self.held_items = 0
        self.held_receipts = 0
        self.dropped_receipts = 0  # held receipts dropped for room (their senders ask again)

    # -- the verified chain --------------------------------------------------------------
    def note_block(self, height: int, block_hash: bytes) -> None:
        """A block the enclave verified (or its anchor)."""
        self.hashes[height] = block_hash
        self.tip = max(self.tip, height)
        for old in [h for h in self.hashes if h <= self.tip - WITNESS_WINDOW]:
            del self.hashes[old]

    # -- witnessing ----------------------------------------------------------------------
    def sign(self, config: ChainConfig, height: int, sign: SignIdentity) -> BlockWitness:
        """This enclave's witness of block ``height`` (or of its newest block, if lower)."""
        if not self.hashes:
            raise WitnessUnavailable("this enclave has verified no block yet")
        if height < 0:
            raise WitnessUnavailable(f"block {height} does not exist")
        at = min(height, self.tip)
        block_hash = self.hashes.get(at)
        if block_hash is None:
            raise WitnessUnavailable(
                f"block {at} is older than the {WITNESS_WINDOW} blocks this enclave remembers"
            )
        body = encode(
            WitnessBody(
                chain_id=config.chain_id,
                command_inbox=config.command_inbox,
                height=at,
                block_hash=block_hash,
            )
        )
        return BlockWitness(
            worker=self.identity_key, body=body, signature=sign(WITNESS_SIGN_TAG + body)
        )

    def accept(
        self, config: ChainConfig, witnesses: list[BlockWitness], executors: set[bytes]
    ) -> int:
        """Keep the witnesses of ``executors`` (of our contracts) that vouch for blocks of
        *our* chain; ignore the rest (a host may relay a faulty or hostile peer's).
        Returns how many were kept."""
        kept = 0
        for witness in witnesses[:MAX_WITNESSES]:
            if witness.worker == self.identity_key or witness.worker not in executors:
                continue
            try:
                body = decode_canonical(witness.body, WitnessBody)
            except EncodingError:
                continue
            if (body.chain_id, body.command_inbox) != (config.chain_id, config.command_inbox):
                continue
            if self.hashes.get(body.height) != body.block_hash:
                continue  # another fork, or a height we do not know
            if body.height <= self.vouched.get(witness.worker, -1):
                continue
            try:
                ed25519_verify(witness.worker, WITNESS_SIGN_TAG + witness.body, witness.signature)
            except InvalidSignature:
                continue
            self.vouched[witness.worker] = body.height
            kept += 1
        return kept

    def covered(self, workers: list[bytes]) -> int:
        """The height up to which a majority of ``workers`` vouched for our chain."""
        need = required_witnesses(workers)
        if need == 0:
            return self.tip
        heights = sorted(
            (self.vouched.get(w, 0) for w in set(workers) if w != self.identity_key),
            reverse=True,
        )
        return heights[need - 1] if len(heights) >= need else 0

    # -- held outputs --------------------------------------------------------------------
    def check_room(self) -> None:
        held = self.held_items - self.held_receipts
        if held >= MAX_HELD_ITEMS:
            raise ReleaseBacklogFull(
                f"{held} messages wait for witnesses; no block is applied until peers "
                "vouch for the held ones"
            )

    def hold(self, block: HeldOutputs) -> HeldOutputs:
        """Hold what derives from the block's execution: receipts with a sealed result,
        and messages. A receipt without one (a refusal, or a delivered message) says no
        more than its ciphertext and goes out at once (returned)."""
        at_once = [r for r in block.receipts if not r.sealed_result]
        kept = HeldOutputs(
            number=block.number,
            receipts=[r for r in block.receipts if r.sealed_result],
            messages=block.messages,
        )
        count = len(kept.receipts) + len(kept.messages)
        if count:
            self.held.append(kept)
            self.held_items += count
            self.held_receipts += len(kept.receipts)
        if self.held_receipts > MAX_HELD_RECEIPTS:
            self._drop_receipts(self.held_receipts - MAX_HELD_RECEIPTS)
        return HeldOutputs(number=block.number, receipts=at_once)

    def _drop_receipts(self, count: int) -> None:
        """Drop the oldest held receipts (their senders can ask another executor, or
        ``command_result``), so that receipts alone never stop the worker."""
        blocks: list[HeldOutputs] = []
        for block in self.held:
            take = min(count, len(block.receipts))
            count -= take
            self.dropped_receipts += take
            rest = HeldOutputs(
                number=block.number, receipts=block.receipts[take:], messages=block.messages
            )
            if rest.receipts or rest.messages:
                blocks.append(rest)
        self.held = blocks
        self._recount()

    def _recount(self) -> None:
        self.held_receipts = sum(len(b.receipts) for b in self.held)
        self.held_items = self.held_receipts + sum(len(b.messages) for b in self.held)

    def release(self, covered_of: Callable[[bytes], int]) -> list[HeldOutputs]:
        """Take out the held items whose contract is covered up to their block."""
        released: list[HeldOutputs] = []
        kept: list[HeldOutputs] = []
        cache: dict[bytes, int] = {}

        def covered_of_cached(contract_id: bytes) -> int:
            found = cache.get(contract_id)
            if found is None:
                found = cache[contract_id] = covered_of(contract_id)
            return found

        if not self.held:
            return released
        for block in self.held:
            receipts: list[Receipt] = []
            messages: list[OutgoingMessage] = []
            stay_r: list[Receipt] = []
            stay_m: list[OutgoingMessage] = []
            for receipt in block.receipts:
                (receipts if covered_of(receipt.contract_id) >= block.number else stay_r).append(
                    receipt
                )
            for message in block.messages:
                (messages if covered_of(message.source) >= block.number else stay_m).append(message)
            if receipts or messages:
                released.append(
                    HeldOutputs(number=block.number, receipts=receipts, messages=messages)
                )
            if stay_r or stay_m:
                kept.append(HeldOutputs(number=block.number, receipts=stay_r, messages=stay_m))
        self.held = kept
        self._recount()
        return released
