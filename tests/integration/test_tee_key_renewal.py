"""Renewal over fresh node keys (issue 14, item 5; PODG's rule), inside the enclave: the
enclave stages a new encryption key and a new secp256k1 key (the Ed25519 identity key is
the node's name and stays), quotes them, survives a crash with them staged, and after the
switch holds the new secrets only -- blobs sent to the retired encryption key no longer
open and its signatures are by the new address."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sealbridge.crypto.ecies import encrypt_to
from sealbridge.crypto.signing import secp256k1_recover_address
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.enclave import EnclaveContext, NodeKeys, compute_report_data
from sealbridge.tee.errors import EnclaveCallError, ReportDataMismatch, SealingError
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import create_sim_platform
from sealbridge.tee.sim import InProcessBackend, SimBackend
from sealbridge.tee.testing import ECHO_PROGRAM, OTHER_PROGRAM


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("platform") / "platform.key"
    return path, create_sim_platform(path)


def test_staged_keys_are_fresh_quoted_and_switched_to(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    sealed = tmp_path / "identity.sealed"
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as enclave:
        old = enclave.node_keys
        staged = enclave.stage_fresh_keys()
        new = staged.node_keys
        assert new.identity_key == old.identity_key  # the node's name stays
        assert new.encryption_key != old.encryption_key
        assert new.eth_address != old.eth_address
        assert enclave.stage_fresh_keys().node_keys == new  # staging again: the same keys
        assert enclave.node_keys == old  # nothing switched yet
        policy = devnet_policy(platform[1], [compute_sim_measurement(ECHO_PROGRAM)])
        verdict = verify_quote(
            staged.quote,
            policy=policy,
            now=int(time.time()),
            expected_report_data=compute_report_data(new),
        )
        assert verdict.measurement == enclave.measurement
        with pytest.raises(ReportDataMismatch):  # the quote binds the staged keys only
            verify_quote(
                staged.quote,
                policy=policy,
                now=int(time.time()),
                expected_report_data=compute_report_data(old),
            )
        # the host cannot switch the enclave to keys of its own choosing
        made_up = NodeKeys(
            identity_key=old.identity_key, encryption_key=bytes(32), eth_address=bytes(20)
        )
        with pytest.raises(EnclaveCallError, match="not the staged ones"):
            enclave.switch_keys(made_up)
        assert enclave.node_keys == old
        assert enclave.switch_keys(new) == new
        assert enclave.node_keys == new
        with pytest.raises(EnclaveCallError, match="no fresh keys are staged"):
            enclave.switch_keys(new)
    assert not sealed.with_name(sealed.name + ".next").exists()
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as restarted:
        assert restarted.node_keys == new  # the switch is sealed


def test_staged_keys_survive_a_crash_before_the_switch(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    sealed = tmp_path / "identity.sealed"
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as enclave:
        old = enclave.node_keys
        new = enclave.stage_fresh_keys().node_keys
    # killed after the renewal was sent: the restarted enclave still holds the staged
    # keys (the host adopts them once it sees them registered) and the old ones
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as restarted:
        assert restarted.node_keys == old
        assert restarted.stage_fresh_keys().node_keys == new
        restarted.switch_keys(new)
        assert restarted.node_keys == new
    # another program cannot open the staged keys either
    sealed.unlink()
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as fresh:
        fresh.stage_fresh_keys()
    with pytest.raises(Exception, match="SealingError"):
        SimBackend().launch(
            OTHER_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
        )


def test_staged_keys_of_another_identity_are_refused(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    """A host that swaps in another node's staged-keys file gets a typed error at start."""
    mine, theirs = tmp_path / "mine.sealed", tmp_path / "theirs.sealed"
    for path in (mine, theirs):
        with SimBackend().launch(
            ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=path
        ) as enclave:
            enclave.stage_fresh_keys()
    mine.with_name(mine.name + ".next").write_bytes(
        theirs.with_name(theirs.name + ".next").read_bytes()
    )
    with pytest.raises(Exception, match="SealingError"):
        SimBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=mine)


def test_retired_secrets_are_gone_after_the_switch(platform: tuple[Path, bytes]) -> None:
    from sealbridge.tee.quote import load_sim_platform_key

    ctx = EnclaveContext(
        program=ECHO_PROGRAM,
        measurement=bytes(32),
        platform_private_key=load_sim_platform_key(platform[0]),
    )
    old = ctx.identity
    to_old = encrypt_to(old.encryption_key, b"for the old key", b"aad")
    assert ctx.decrypt_for_identity(to_old, b"aad") == b"for the old key"
    new = ctx.stage_fresh_keys()
    ctx.switch_to_staged_keys(new)
    from sealbridge.core.errors import DecryptionError

    with pytest.raises(DecryptionError):
        ctx.decrypt_for_identity(to_old, b"aad")
    to_new = encrypt_to(new.encryption_key, b"for the new key", b"aad")
    assert ctx.decrypt_for_identity(to_new, b"aad") == b"for the new key"
    digest = bytes(range(32))
    assert secp256k1_recover_address(digest, ctx.sign_eth_digest(digest)) == new.eth_address
    assert ctx.staged_keys is None


def test_in_process_backend_renews_the_same_way(platform: tuple[Path, bytes]) -> None:
    with InProcessBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0]) as enclave:
        new = enclave.stage_fresh_keys().node_keys
        assert enclave.switch_keys(new) == enclave.node_keys == new


def test_sealing_error_is_typed(tmp_path: Path, platform: tuple[Path, bytes]) -> None:
    from sealbridge.tee.quote import load_sim_platform_key

    sealed = tmp_path / "identity.sealed"
    EnclaveContext(
        program=ECHO_PROGRAM,
        measurement=bytes(32),
        platform_private_key=load_sim_platform_key(platform[0]),
        sealed_identity_file=sealed,
    ).stage_fresh_keys()
    sealed.with_name(sealed.name + ".next").write_bytes(b"garbage")
    with pytest.raises(SealingError):
        EnclaveContext(
            program=ECHO_PROGRAM,
            measurement=bytes(32),
            platform_private_key=load_sim_platform_key(platform[0]),
            sealed_identity_file=sealed,
        )


def test_a_switch_interrupted_after_the_identity_was_replaced_does_not_stick(
    platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    """Found by attacking the renewal: a crash between replacing the sealed identity and
    removing the staged-keys file left the current keys "staged", so every later renewal
    named the current keys again and was refused for good."""
    from sealbridge.tee.quote import load_sim_platform_key

    sealed = tmp_path / "identity.sealed"
    staged_file = sealed.with_name(sealed.name + ".next")

    def start() -> EnclaveContext:
        return EnclaveContext(
            program=ECHO_PROGRAM,
            measurement=bytes(32),
            platform_private_key=load_sim_platform_key(platform[0]),
            sealed_identity_file=sealed,
        )

    ctx = start()
    new = ctx.stage_fresh_keys()
    kept = staged_file.read_bytes()
    ctx.switch_to_staged_keys(new)
    staged_file.write_bytes(kept)  # as if the unlink never happened
    restarted = start()
    assert restarted.identity == new
    assert restarted.staged_keys is None and not staged_file.exists()
    assert restarted.stage_fresh_keys() not in (new, None)
