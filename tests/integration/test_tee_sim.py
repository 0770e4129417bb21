"""The sim enclave backend: a real child process behind a narrow ECALL interface."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError
from sealbridge.crypto.ecies import encrypt_to
from sealbridge.crypto.signing import ed25519_verify
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.ecall import call
from sealbridge.tee.enclave import EnclaveContext, NodeKeys, compute_report_data
from sealbridge.tee.errors import (
    EnclaveCallError,
    EnclaveLaunchError,
    EnclaveUnavailable,
    MeasurementRefused,
    QuoteFormatError,
    QuoteSignatureError,
    ReportDataMismatch,
    SimulatedQuoteRefused,
    StaleQuote,
    UnknownEcall,
)
from sealbridge.tee.measurement import compute_sim_measurement
from sealbridge.tee.policy import default_policy, devnet_policy
from sealbridge.tee.quote import (
    SIM_QUOTE_MAGIC,
    compute_sim_quote,
    create_sim_platform,
    load_sim_platform_key,
    parse_sim_quote,
)
from sealbridge.tee.sim import InProcessBackend, SimBackend, SimEnclaveHandle
from sealbridge.tee.testing import ECHO_PROGRAM, INCREMENT, OTHER_PROGRAM


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("platform") / "platform.key"
    return path, create_sim_platform(path)


@pytest.fixture(scope="module")
def enclave(platform: tuple[Path, bytes]) -> Iterator[SimEnclaveHandle]:
    handle = SimBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0])
    yield handle
    handle.close()


def wait_exit(handle: SimEnclaveHandle, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while handle.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not handle.is_alive()


# --- ECALLs across the process boundary ---------------------------------------------------


def test_ecalls_work_in_a_child_process(enclave: SimEnclaveHandle) -> None:
    import os

    assert enclave.pid != os.getpid() and enclave.is_alive()
    assert enclave.ecall("echo", b"hello enclave") == b"hello enclave"
    assert enclave.ecall("echo", b"") == b""
    big = bytes(range(256)) * 4096
    assert enclave.ecall("echo", big) == big
    first = decode(enclave.ecall("increment", encode(5)), int)
    assert call(enclave, INCREMENT, 1) == first + 1  # the same bytes, declared once


def test_stdout_of_trusted_code_does_not_corrupt_frames(enclave: SimEnclaveHandle) -> None:
    assert enclave.ecall("print", b"x") == b"x"
    assert enclave.ecall("echo", b"still fine") == b"still fine"


def test_handle_is_thread_safe(enclave: SimEnclaveHandle) -> None:
    errors: list[BaseException] = []

    def worker(tag: bytes) -> None:
        try:
            for i in range(50):
                payload = tag + str(i).encode()
                if enclave.ecall("echo", payload) != payload:
                    raise AssertionError("crossed replies")
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(bytes([65 + n]),)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_exception_in_ecall_arrives_typed(enclave: SimEnclaveHandle) -> None:
    with pytest.raises(EnclaveCallError) as info:
        enclave.ecall("crash", b"")
    assert info.value.kind == "ZeroDivisionError"
    assert info.value.remote_code == "exception"
    with pytest.raises(EnclaveCallError) as info2:
        enclave.ecall("fail", b"nope")
    assert info2.value.kind == "ConfigError"
    assert info2.value.remote_code == "config"
    assert "refused: nope" in info2.value.message
    assert enclave.ecall("echo", b"alive") == b"alive"  # the enclave survives


def test_unknown_ecall_is_typed(enclave: SimEnclaveHandle) -> None:
    with pytest.raises(UnknownEcall):
        enclave.ecall("no_such_call", b"")
    assert "echo" in enclave.get_ecall_names() and "sb.get_quote" in enclave.get_ecall_names()


# --- identity and quotes --------------------------------------------------------------------


def test_keys_differ_between_enclaves(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes]
) -> None:
    with SimBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0]) as other:
        assert other.measurement == enclave.measurement
        a, b = enclave.node_keys, other.node_keys
        assert a.identity_key != b.identity_key
        assert a.encryption_key != b.encryption_key
        assert a.eth_address != b.eth_address
        assert (len(a.identity_key), len(a.encryption_key), len(a.eth_address)) == (32, 32, 20)


def test_measurement_is_computable_by_a_verifier(enclave: SimEnclaveHandle) -> None:
    assert enclave.measurement == compute_sim_measurement(ECHO_PROGRAM)
    assert compute_sim_measurement(OTHER_PROGRAM) != enclave.measurement
    assert len(enclave.measurement) == 32
    with pytest.raises(ConfigError):
        compute_sim_measurement("no colon here")


def test_quote_verifies_under_devnet_policy_and_binds_keys(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes]
) -> None:
    quote = enclave.get_quote()
    assert quote.startswith(SIM_QUOTE_MAGIC)
    policy = devnet_policy(platform[1], [compute_sim_measurement(ECHO_PROGRAM)])
    verdict = verify_quote(
        quote,
        policy=policy,
        now=int(time.time()),
        expected_report_data=compute_report_data(enclave.node_keys),
    )
    assert verdict.accepted
    assert (verdict.kind, verdict.status, verdict.advisories) == ("simulated", "UpToDate", [])
    assert verdict.measurement == enclave.measurement
    other_keys = NodeKeys(identity_key=bytes(32), encryption_key=bytes(32), eth_address=bytes(20))
    with pytest.raises(ReportDataMismatch):
        verify_quote(
            quote,
            policy=policy,
            now=int(time.time()),
            expected_report_data=compute_report_data(other_keys),
        )


def test_default_policy_refuses_simulated_quotes(enclave: SimEnclaveHandle) -> None:
    with pytest.raises(SimulatedQuoteRefused):
        verify_quote(
            enclave.get_quote(), policy=default_policy([enclave.measurement]), now=int(time.time())
        )


def test_forged_quote_from_another_platform_refused(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    create_sim_platform(tmp_path / "rogue.key")
    rogue = load_sim_platform_key(tmp_path / "rogue.key")
    now = int(time.time())
    forged = compute_sim_quote(
        rogue,
        measurement=enclave.measurement,
        report_data=compute_report_data(enclave.node_keys),
        timestamp=now,
    )
    policy = devnet_policy(platform[1], [enclave.measurement])
    with pytest.raises(QuoteSignatureError, match="untrusted platform"):
        verify_quote(forged, policy=policy, now=now)


def test_quote_with_swapped_platform_key_refused(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes], tmp_path: Path
) -> None:
    """Re-labelling a rogue quote with the trusted key breaks the signature."""
    create_sim_platform(tmp_path / "rogue.key")
    rogue = load_sim_platform_key(tmp_path / "rogue.key")
    now = int(time.time())
    forged = parse_sim_quote(
        compute_sim_quote(
            rogue, measurement=enclave.measurement, report_data=bytes(64), timestamp=now
        )
    )
    relabelled = forged.__class__(
        body=forged.body.__class__(
            version=forged.body.version,
            measurement=forged.body.measurement,
            report_data=forged.body.report_data,
            timestamp=forged.body.timestamp,
            platform_key=platform[1],
        ),
        signature=forged.signature,
    )
    with pytest.raises(QuoteSignatureError):
        verify_quote(
            SIM_QUOTE_MAGIC + encode(relabelled),
            policy=devnet_policy(platform[1], [enclave.measurement]),
            now=now,
        )


def test_tampered_quote_refused_at_every_byte(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes]
) -> None:
    quote = enclave.get_quote()
    now = int(time.time())
    policy = devnet_policy(platform[1], [enclave.measurement])
    verify_quote(quote, policy=policy, now=now)
    for index in range(len(quote)):
        for bit in (0, 7):
            bad = bytearray(quote)
            bad[index] ^= 1 << bit
            with pytest.raises((QuoteFormatError, QuoteSignatureError)):
                verify_quote(bytes(bad), policy=policy, now=now)


def test_wrong_measurement_refused(enclave: SimEnclaveHandle, platform: tuple[Path, bytes]) -> None:
    policy = devnet_policy(platform[1], [compute_sim_measurement(OTHER_PROGRAM)])
    with pytest.raises(MeasurementRefused):
        verify_quote(enclave.get_quote(), policy=policy, now=int(time.time()))
    with pytest.raises(MeasurementRefused):
        verify_quote(
            enclave.get_quote(), policy=devnet_policy(platform[1], []), now=int(time.time())
        )


def test_stale_and_future_quotes_refused(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes]
) -> None:
    quote = enclave.get_quote()
    issued = parse_sim_quote(quote).body.timestamp
    policy = devnet_policy(platform[1], [enclave.measurement], max_quote_age_seconds=300)
    assert verify_quote(quote, policy=policy, now=issued + 300).accepted
    with pytest.raises(StaleQuote):
        verify_quote(quote, policy=policy, now=issued + 301)
    with pytest.raises(StaleQuote, match="future"):
        verify_quote(quote, policy=policy, now=issued - 3600)


# --- sealing ---------------------------------------------------------------------------------


def test_sealing_round_trip_and_label_binding(enclave: SimEnclaveHandle) -> None:
    blob = enclave.ecall("seal", encode(("state", b"secret state")))
    assert b"secret state" not in blob
    assert enclave.ecall("unseal", encode(("state", blob))) == b"secret state"
    with pytest.raises(EnclaveCallError) as info:
        enclave.ecall("unseal", encode(("other-label", blob)))
    assert info.value.kind == "SealingError"


def test_other_program_cannot_unseal(
    enclave: SimEnclaveHandle, platform: tuple[Path, bytes]
) -> None:
    blob = enclave.ecall("seal", encode(("state", b"secret state")))
    with SimBackend().launch(OTHER_PROGRAM, platform_key_file=platform[0]) as other:
        assert other.measurement != enclave.measurement
        with pytest.raises(EnclaveCallError) as info:
            other.ecall("unseal", encode(("state", blob)))
        assert info.value.kind == "SealingError"


def test_other_platform_cannot_unseal(enclave: SimEnclaveHandle, tmp_path: Path) -> None:
    blob = enclave.ecall("seal", encode(("state", b"secret")))
    create_sim_platform(tmp_path / "p2.key")
    with InProcessBackend().launch(ECHO_PROGRAM, platform_key_file=tmp_path / "p2.key") as h:
        with pytest.raises(EnclaveCallError) as info:
            h.ecall("unseal", encode(("state", blob)))
        assert info.value.kind == "SealingError"


def test_sealed_identity_survives_restart(platform: tuple[Path, bytes], tmp_path: Path) -> None:
    sealed = tmp_path / "identity.sealed"
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as first:
        keys = first.node_keys
    assert sealed.exists() and keys.identity_key not in sealed.read_bytes()
    with SimBackend().launch(
        ECHO_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
    ) as second:
        assert second.node_keys == keys
    # another program (another measurement) cannot take over the identity
    with pytest.raises(EnclaveLaunchError, match="SealingError"):
        SimBackend().launch(
            OTHER_PROGRAM, platform_key_file=platform[0], sealed_identity_file=sealed
        )


def test_identity_signatures_and_decryption_inside(platform: tuple[Path, bytes]) -> None:
    ctx = EnclaveContext(
        program=ECHO_PROGRAM,
        measurement=bytes(32),
        platform_private_key=load_sim_platform_key(platform[0]),
    )
    ed25519_verify(ctx.identity.identity_key, b"msg", ctx.sign_identity(b"msg"))
    blob = encrypt_to(ctx.identity.encryption_key, b"for the enclave", b"aad")
    assert ctx.decrypt_for_identity(blob, b"aad") == b"for the enclave"
    from sealbridge.crypto.signing import secp256k1_recover_address

    digest = bytes(range(32))
    sig = ctx.sign_eth_digest(digest)
    assert secp256k1_recover_address(digest, sig) == ctx.identity.eth_address


# --- lifecycle and failures ------------------------------------------------------------------


def test_enclave_process_exits_when_closed(platform: tuple[Path, bytes]) -> None:
    handle = SimBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0])
    assert handle.is_alive()
    handle.close()
    assert wait_exit(handle)
    handle.close()  # idempotent
    with pytest.raises(EnclaveUnavailable):
        handle.ecall("echo", b"x")


def test_dead_enclave_gives_typed_error(platform: tuple[Path, bytes]) -> None:
    import os
    import signal

    handle = SimBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0])
    os.kill(handle.pid, signal.SIGKILL)
    assert wait_exit(handle)
    with pytest.raises(EnclaveUnavailable):
        handle.ecall("echo", b"x")
    with pytest.raises(EnclaveUnavailable):
        handle.ecall("echo", b"x")
    handle.close()


@pytest.mark.parametrize(
    "program",
    ["sealbridge.tee.testing:NoSuchProgram", "no.such.module:Program", "missing-colon"],
)
def test_bad_program_fails_to_launch(platform: tuple[Path, bytes], program: str) -> None:
    with pytest.raises(EnclaveLaunchError, match="ConfigError"):
        SimBackend().launch(program, platform_key_file=platform[0])


def test_missing_platform_key_fails_to_launch(tmp_path: Path) -> None:
    with pytest.raises(EnclaveLaunchError, match="platform key"):
        SimBackend().launch(ECHO_PROGRAM, platform_key_file=tmp_path / "absent.key")


def test_platform_key_file_is_private_and_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "p.key"
    create_sim_platform(path)
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        create_sim_platform(path)


def test_in_process_backend_behaves_the_same(platform: tuple[Path, bytes]) -> None:
    with InProcessBackend().launch(ECHO_PROGRAM, platform_key_file=platform[0]) as h:
        assert h.measurement == compute_sim_measurement(ECHO_PROGRAM)
        assert h.ecall("echo", b"x") == b"x"
        with pytest.raises(EnclaveCallError) as info:
            h.ecall("crash", b"")
        assert info.value.kind == "ZeroDivisionError"
        with pytest.raises(UnknownEcall):
            h.ecall("nope", b"")
        verdict = verify_quote(
            h.get_quote(),
            policy=devnet_policy(platform[1], [h.measurement]),
            now=int(time.time()),
            expected_report_data=compute_report_data(h.node_keys),
        )
        assert verdict.accepted
    with pytest.raises(EnclaveUnavailable):
        h.ecall("echo", b"x")


def test_sim_enclave_process_caps_its_memory() -> None:
    """The enclave process's address-space cap turns a runaway allocation into a
    MemoryError (which the executor reports as out_of_memory) instead of exhausting the
    machine."""
    import subprocess
    import sys

    script = (
        "from sealbridge.tee.sim_enclave import limit_memory\n"
        "limit_memory(512)\n"
        "try:\n"
        "    x = bytearray(1024 * 1024 * 1024)\n"
        "    print('allocated')\n"
        "except MemoryError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "refused"
