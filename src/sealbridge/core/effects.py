"""Effects: what a sans-I/O protocol core asks its driver to do.

Theory of operation
-------------------
A protocol core (a BFT replica, a gateway, ...) never touches a socket, a clock or a
global random source. Its driver -- the deterministic simulator (:mod:`sealbridge.sim`)
or a network driver -- calls one of three handlers of a :class:`ProtocolNode` with the
current time, and carries out the effects the handler returns, in order:

* :class:`Send` -- deliver ``message`` to each node in ``to`` (node ids of the driver's
  address space). The driver decides how long it takes and whether it arrives at all
  (link delays, partitions, crashes); a core must tolerate loss and reordering.
* :class:`SetTimer` -- call ``on_timer(name)`` after ``delay`` seconds of the node's
  time; setting a timer again under the same name replaces it.
* :class:`CancelTimer` -- forget the timer of that name (nothing if there is none).
* :class:`Report` -- an observation for whoever watches the run (a committed block, a
  finished transfer); it changes nothing in the protocol, and the simulator records it
  in its trace.

Time is a float of seconds from the start of the run. Randomness is given to a core when
it is built (a ``random_bytes`` callable or a seeded generator), never taken from the
process. Messages are frozen msgspec Structs; a driver may pass them by reference (the
simulator) or encode them canonically (the network).

Node effects
------------
A node's *host core* (the untrusted half of a worker, gatekeeper, storage node or
gateway, next to its protocol core) speaks the same vocabulary, plus what a node does
to the world outside its peers. Each asks the driver for one thing and names it with a
``tag``; the driver answers later with an input message carrying the same tag:

* :class:`SubmitTx` -- send the transaction ``tx`` (a typed description of one contract
  call, from the role's own vocabulary) from the node's gas account. Answer:
  :class:`TxOutcome` (mined, reverted with a reason, or not sent).
* :class:`ReadChain` -- read the chain's state: ``query`` is a typed question (for
  example "what does the NodeRegistry say about me?"). Answer: :class:`ChainRead`, or a
  :class:`ChainRead` with ``error`` set.
* :class:`CallEnclave` -- call the node's enclave: ``ecall`` is the ECALL's typed
  declaration (``tee.ecall``) and ``request`` its request. Answer:
  :class:`EnclaveAnswer` with the typed response, or the refusal's code and message.
* :class:`AskPeers` -- ask the role's peers, one after another, until ``needed`` of
  them answered ``request`` (a peer that fails or refuses is skipped). Answer:
  :class:`PeerAnswers` with the answers got (maybe fewer than ``needed``) and why the
  others gave none; the core checks every answer itself.
* :class:`Persist` -- replace the node-local record ``key`` with ``data`` atomically
  (sealed state, cursors, blobs); done before the driver handles the next input, so
  nothing the core says afterwards depends on a write that did not happen.
* :class:`StoreCheckpoint` -- put a checkpoint ``blob`` on the storage nodes and collect
  at least ``threshold`` of their signed confirmations. Answer:
  :class:`CheckpointStored` with the confirming nodes' ids and signatures (sorted by
  node id, as the ExecutionLedger wants them), or with ``error`` set when too few
  confirmed.

Inputs that are not answers arrive the same way, as messages: a verified block, a chain
event, a peer's request. The network driver (:mod:`sealbridge.node.driver`) executes
these effects against an EVM node, enclaves, HTTP peers, storage nodes and the disk,
with one retry policy for passing failures; the simulator (:mod:`sealbridge.sim.engine`)
routes ``SubmitTx`` and ``ReadChain`` to an in-process ledger model that is itself a
node (:mod:`sealbridge.sim.chain_model`), so link delays, crashes and partitions apply
to the chain too, and a whole devnet runs from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "AskPeers",
    "CallEnclave",
    "CancelTimer",
    "ChainRead",
    "CheckpointStored",
    "Effect",
    "EnclaveAnswer",
    "PeerAnswers",
    "Persist",
    "ProtocolNode",
    "ReadChain",
    "Report",
    "Send",
    "SetTimer",
    "StoreCheckpoint",
    "SubmitTx",
    "TxOutcome",
]


@dataclass(frozen=True, slots=True)
class Send:
    to: tuple[int, ...]
    message: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: str
    delay: float  # seconds from now


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Report:
    kind: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class SubmitTx:
    tag: str
    tx: Any  # a typed description of one contract call


@dataclass(frozen=True, slots=True)
class ReadChain:
    tag: str
    query: Any  # a typed question about the chain's state


@dataclass(frozen=True, slots=True)
class CallEnclave:
    tag: str
    ecall: Any  # the ECALL's declaration (``tee.ecall.Ecall``: name, request, response)
    request: Any


@dataclass(frozen=True, slots=True)
class AskPeers:
    tag: str
    request: Any  # a typed request the role's peers answer
    needed: int


@dataclass(frozen=True, slots=True)
class Persist:
    key: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoreCheckpoint:
    tag: str
    blob: bytes
    threshold: int  # confirmations needed (the ExecutionLedger's storage threshold)


Effect = (
    Send
    | SetTimer
    | CancelTimer
    | Report
    | SubmitTx
    | ReadChain
    | CallEnclave
    | AskPeers
    | Persist
    | StoreCheckpoint
)
NODE_EFFECTS = (SubmitTx, ReadChain, CallEnclave, AskPeers, Persist, StoreCheckpoint)


# -- answers (inputs a driver hands back to the core as messages) ---------------------


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """What became of a :class:`SubmitTx`: ``mined`` (with its block), ``sent`` (relayed
    without waiting for a receipt, as heartbeats are), ``reverted`` with the chain's
    reason, or ``failed`` (never sent: the chain unreachable after the driver's retries,
    a malformed call)."""

    tag: str
    status: str  # "mined" | "sent" | "reverted" | "failed"
    block_number: int = 0
    reason: str = ""

    @property
    def is_mined(self) -> bool:
        return self.status == "mined"


@dataclass(frozen=True, slots=True)
class ChainRead:
    tag: str
    value: Any = None
    error: str = ""  # set when the read failed (the value is then None)
    passing: bool = True  # the failure may pass (the chain unreachable), or it will not


@dataclass(frozen=True, slots=True)
class EnclaveAnswer:
    tag: str
    response: Any = None
    error: str = ""  # a typed refusal's code and message, when the enclave refused


@dataclass(frozen=True, slots=True)
class PeerAnswers:
    tag: str
    answers: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()  # why the peers asked without an answer gave none


@dataclass(frozen=True, slots=True)
class CheckpointStored:
    """What became of a :class:`StoreCheckpoint`: the storage nodes that confirmed the
    blob (ids and signatures, pairwise, sorted by node id), or ``error`` when fewer than
    the threshold did."""

    tag: str
    node_ids: tuple[bytes, ...] = ()
    signatures: tuple[bytes, ...] = ()
    error: str = ""


class ProtocolNode(Protocol):
    """What a driver needs of a sans-I/O core."""

    @property
    def node_id(self) -> int: ...

    def on_start(self, now: float) -> list[Effect]: ...

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]: ...

    def on_timer(self, name: str, now: float) -> list[Effect]: ...
