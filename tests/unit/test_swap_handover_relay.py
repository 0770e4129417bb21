"""The relayer's collection of handover partials (``SwapDevnet._collect_handover``): the
public shares a gateway sends with its partial are its host's word, so one host cannot
make the honest partials look bad. (In process: real BLS, no chains.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec

from sealbridge.chain.bls_onchain import compute_key_rotation_message, encode_g1
from sealbridge.crypto import bls
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.devnet.swap import SwapDevnet
from sealbridge.interop.evm_gateway import HandoverPartial, HandoverRequest
from sealbridge.keyservice.committee import is_consistent_sharing

ESCROW = "0x" + "11" * 20
CHAIN = 31337
OLD = bls.deal_threshold_key(2, 3)  # the replaced era: t = 2 of 3
NEW_KEY = bls.keygen()[1]
OLD_GROUP = GroupPublicKeys.from_dict(
    2, OLD.group_public_key, {i + 1: p for i, p in enumerate(OLD.public_shares)}
)
MESSAGE = compute_key_rotation_message(
    escrow=ESCROW, chain_id=CHAIN, epoch=2, new_key=encode_g1(NEW_KEY)
)


class Escrow:
    address = ESCROW

    def get_group_public_key(self) -> bytes:
        return OLD.group_public_key

    def compute_key_rotation_message(self, key: bytes) -> bytes:
        return MESSAGE


class Gateway:
    def __init__(self, index: int) -> None:
        self.index, self.name = index, f"gateway-{index + 1}"

    def sign_handover(self, request: HandoverRequest) -> HandoverPartial:
        return HandoverPartial(
            chain_id=CHAIN,
            escrow=ESCROW,
            epoch=2,
            new_group_key=NEW_KEY,
            era=1,
            message=MESSAGE,
            partial=bls.partial_sign(OLD.shares[self.index], MESSAGE),
            group=OLD_GROUP,
        )


class Poisoner(Gateway):
    """A host that swaps in made-up public shares: a 1-of-1 "sharing" of the group key,
    which is consistent, so that only a full signature would verify under it."""

    def sign_handover(self, request: HandoverRequest) -> HandoverPartial:
        fake = GroupPublicKeys.from_dict(1, OLD.group_public_key, {1: OLD.group_public_key})
        assert is_consistent_sharing(fake)
        return msgspec.structs.replace(super().sign_handover(request), group=fake)


def collect(gateways: list[Any]) -> Any:
    relayer = SimpleNamespace(gateways=gateways, block_time=0.02)
    return SwapDevnet._collect_handover(relayer, CHAIN, Escrow(), NEW_KEY, timeout=5.0)  # type: ignore[arg-type]


def test_one_host_offering_made_up_shares_does_not_stall_the_handover() -> None:
    """Found by attacking the handover: the relayer pinned the shares of the first answer,
    so gateway-1's host made every honest partial fail and the handover time out (the
    escrows kept the old key; transfers stayed paused). Now it collects per offered set
    and takes the one whose t partials combine into a signature of the escrow's key."""
    honest = collect([Gateway(0), Gateway(1), Gateway(2)])
    poisoned = collect([Poisoner(0), Gateway(1), Gateway(2)])
    assert sorted(p["index"] for p in poisoned.partials) == [2, 3]
    for record in (honest, poisoned):
        assert bls.verify(OLD.group_public_key, MESSAGE, bytes.fromhex(record.signature[2:]))
