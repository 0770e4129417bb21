"""One attested-card type and one verifier (tee/card.py): a card's quote must bind its
keys (or the report data its role declares) under the verifier's policy, and, when the
verifier names one, come from the expected program."""

from __future__ import annotations

import msgspec
import pytest

from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.tee.card import AttestedCard, WrongProgram, verify_attested_card
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.errors import AttestationError
from sealbridge.tee.policy import devnet_policy

NOW = 1_700_000_000
PROGRAM = "sealbridge.tee.testing:EchoProgram"
MEASUREMENT = b"\x11" * 32
OTHER = b"\x22" * 32


def make_card(measurement: bytes = MEASUREMENT) -> tuple[AttestedCard, bytes]:
    private, public = ed25519_keypair(b"\x05" * 32)
    ctx = EnclaveContext(
        program=PROGRAM,
        measurement=measurement,
        platform_private_key=private,
        clock=lambda: float(NOW),
    )
    return AttestedCard(node=ctx.identity, quote=ctx.get_identity_quote()), public


def test_a_card_whose_quote_binds_its_keys_verifies() -> None:
    card, platform = make_card()
    policy = devnet_policy(platform, [MEASUREMENT, OTHER])
    verdict = verify_attested_card(card, policy=policy, now=NOW, measurement=MEASUREMENT)
    assert verdict.measurement == MEASUREMENT
    assert card.identity_hex == card.node.identity_key.hex()


def test_a_card_with_other_keys_or_report_data_is_refused() -> None:
    card, platform = make_card()
    policy = devnet_policy(platform, [MEASUREMENT])
    other_keys = msgspec.structs.replace(card.node, encryption_key=b"\x09" * 32)
    with pytest.raises(AttestationError):
        verify_attested_card(
            AttestedCard(node=other_keys, quote=card.quote), policy=policy, now=NOW
        )
    with pytest.raises(AttestationError):
        verify_attested_card(card, policy=policy, now=NOW, report_data=b"\x00" * 64)


def test_a_card_of_another_program_or_platform_is_refused() -> None:
    card, platform = make_card(measurement=OTHER)
    policy = devnet_policy(platform, [MEASUREMENT, OTHER])
    with pytest.raises(WrongProgram):
        verify_attested_card(card, policy=policy, now=NOW, measurement=MEASUREMENT)
    with pytest.raises(AttestationError):  # not an allowed measurement at all
        verify_attested_card(card, policy=devnet_policy(platform, [MEASUREMENT]), now=NOW)
    stranger = devnet_policy(ed25519_keypair(b"\x06" * 32)[1], [OTHER])
    with pytest.raises(AttestationError):  # signed by another platform
        verify_attested_card(card, policy=stranger, now=NOW)
    with pytest.raises(AttestationError):  # too old for the policy
        verify_attested_card(card, policy=policy, now=NOW + 10_000)
