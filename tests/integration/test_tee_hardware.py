"""The hardware quote providers' file protocols, against temporary directories laid out
like Linux configfs-tsm and Gramine's /dev/attestation.

The real file operations run (mkdir, write, read, rmdir in a temporary directory); only
the platform's side effects -- the kernel creating a report entry's attribute files and
answering ``outblob``, Gramine answering ``quote`` -- are played by the fakes below, which
answer with the real DCAP sample quotes carrying the report data that was written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.core.errors import ConfigError
from sealbridge.tee.dcap import parse_dcap_quote
from sealbridge.tee.hardware import (
    FileInterface,
    GramineSgxQuoter,
    HardwareUnavailable,
    QuoteGenerationFailed,
    TdxQuoter,
    make_quoter,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "attestation"
REPORT = bytes(range(64))


def with_report_data(sample: str, report_data: bytes) -> bytes:
    """A sample quote with other report data (its signature no longer verifies, but it
    parses: what a platform's quote looks like to the provider)."""
    quote = (SAMPLES / sample).read_bytes()
    offset = quote.find(parse_dcap_quote(quote).report_data)
    return quote[:offset] + report_data + quote[offset + 64 :]


class FakeTsm(FileInterface):
    """configfs-tsm: mkdir creates the attribute files; writing inblob makes outblob and
    moves generation."""

    def __init__(self, provider: str = "tdx_guest", *, racer: bool = False) -> None:
        self.provider = provider
        self.racer = racer
        self.entries: list[Path] = []

    def make_dir(self, path: Path) -> None:
        super().make_dir(path)
        self.entries.append(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")

    def remove_dir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()  # configfs drops the attributes with the entry
        super().remove_dir(path)

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name == "inblob":
            (path.parent / "outblob").write_bytes(with_report_data("tdx_quote", data))
            bump = 2 if self.racer else 1
            (path.parent / "generation").write_text(f"{bump}\n")


class FakeGramine(FileInterface):
    def __init__(self, root: Path, kind: str = "dcap", sample: str = "sgx_quote") -> None:
        root.mkdir(exist_ok=True)
        (root / "attestation_type").write_text(kind)
        (root / "keys").mkdir(exist_ok=True)
        (root / "keys" / "_sgx_mrenclave").write_bytes(b"k" * 16)
        self.sample = sample

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name == "user_report_data":
            (path.parent / "quote").write_bytes(with_report_data(self.sample, data))


def test_tdx_quote_through_configfs_tsm(tmp_path: Path) -> None:
    fake = FakeTsm()
    quote = TdxQuoter(tmp_path, fake).get_quote(REPORT)
    info = parse_dcap_quote(quote)
    assert info.kind == "tdx" and info.report_data == REPORT
    assert len(fake.entries) == 1 and not fake.entries[0].exists()  # the entry is removed
    assert list(tmp_path.iterdir()) == []


def test_tdx_refuses_another_provider_a_race_and_a_wrong_quote(tmp_path: Path) -> None:
    with pytest.raises(HardwareUnavailable, match="sev_guest"):
        TdxQuoter(tmp_path, FakeTsm("sev_guest")).get_quote(REPORT)
    with pytest.raises(QuoteGenerationFailed, match="another writer"):
        TdxQuoter(tmp_path, FakeTsm(racer=True)).get_quote(REPORT)

    class WrongData(FakeTsm):
        def write(self, path: Path, data: bytes) -> None:
            super().write(path, data)
            if path.name == "inblob":  # a quote over other report data
                (path.parent / "outblob").write_bytes(with_report_data("tdx_quote", bytes(64)))

    with pytest.raises(QuoteGenerationFailed, match="our report data"):
        TdxQuoter(tmp_path, WrongData()).get_quote(REPORT)

    class SgxInstead(FakeTsm):
        def write(self, path: Path, data: bytes) -> None:
            super().write(path, data)
            if path.name == "inblob":
                (path.parent / "outblob").write_bytes(with_report_data("sgx_quote", data))

    with pytest.raises(QuoteGenerationFailed, match="sgx quote, not tdx"):
        TdxQuoter(tmp_path, SgxInstead()).get_quote(REPORT)
    assert list(tmp_path.iterdir()) == []  # every entry removed, even after a failure


def test_tdx_absent_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HardwareUnavailable, match="configfs-tsm .* does not exist"):
        TdxQuoter(tmp_path / "missing").get_quote(REPORT)
    with pytest.raises(HardwareUnavailable, match="no sealing key"):
        TdxQuoter(tmp_path).get_sealing_material()
    with pytest.raises(ConfigError, match="64 bytes"):
        TdxQuoter(tmp_path, FakeTsm()).get_quote(b"short")


def test_sgx_quote_and_sealing_key_through_gramine(tmp_path: Path) -> None:
    root = tmp_path / "attestation"
    quoter = GramineSgxQuoter(root, FakeGramine(root))
    info = parse_dcap_quote(quoter.get_quote(REPORT))
    assert info.kind == "sgx" and info.report_data == REPORT
    assert (root / "user_report_data").read_bytes() == REPORT
    assert quoter.get_sealing_material() == b"k" * 16


def test_gramine_refuses_epid_absence_and_a_tdx_quote(tmp_path: Path) -> None:
    root = tmp_path / "attestation"
    with pytest.raises(HardwareUnavailable, match="gramine-sgx"):
        GramineSgxQuoter(root).get_quote(REPORT)
    with pytest.raises(HardwareUnavailable, match="'epid'"):
        GramineSgxQuoter(root, FakeGramine(root, kind="epid")).get_quote(REPORT)
    with pytest.raises(QuoteGenerationFailed, match="tdx quote, not sgx"):
        GramineSgxQuoter(root, FakeGramine(root, sample="tdx_quote")).get_quote(REPORT)


def test_backends_are_chosen_by_name(tmp_path: Path) -> None:
    assert make_quoter("tdx", tmp_path).backend == "tdx"
    assert make_quoter("gramine-sgx", tmp_path).backend == "gramine-sgx"
    with pytest.raises(ConfigError, match="tdx, gramine-sgx"):
        make_quoter("sev", tmp_path)


def test_an_enclave_started_on_gramine_attests_and_seals_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start_enclave with the gramine-sgx backend: the measurement is the MRENCLAVE its
    own quote reports, identity quotes carry the node keys' report data, and the sealed
    identity opens again on the next start (the MRENCLAVE-bound sealing key)."""
    from sealbridge.tee import dispatch
    from sealbridge.tee.enclave import compute_report_data

    root = tmp_path / "attestation"
    fake = FakeGramine(root)
    monkeypatch.setattr(dispatch, "make_quoter", lambda _b, _r: GramineSgxQuoter(root, fake))
    sealed = tmp_path / "identity.sealed"
    started = dispatch.start_enclave(
        "sealbridge.tee.testing:EchoProgram",
        platform_key_file=None,
        sealed_identity_file=sealed,
        tee="gramine-sgx",
    )
    sample = parse_dcap_quote((SAMPLES / "sgx_quote").read_bytes())
    assert started.ctx.measurement == sample.measurement
    quote = parse_dcap_quote(started.ctx.get_identity_quote())
    assert quote.report_data == compute_report_data(started.ctx.identity)
    again = dispatch.start_enclave(
        "sealbridge.tee.testing:EchoProgram",
        platform_key_file=None,
        sealed_identity_file=sealed,
        tee="gramine-sgx",
    )
    assert again.ctx.identity == started.ctx.identity


def test_a_tdx_enclave_cannot_seal_and_the_sim_backend_needs_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealbridge.tee import dispatch

    monkeypatch.setattr(dispatch, "make_quoter", lambda _b, _r: TdxQuoter(tmp_path, FakeTsm()))
    started = dispatch.start_enclave(
        "sealbridge.tee.testing:EchoProgram", platform_key_file=None, tee="tdx"
    )
    assert parse_dcap_quote(started.ctx.get_identity_quote()).kind == "tdx"
    with pytest.raises(HardwareUnavailable, match="no sealing key"):
        dispatch.start_enclave(
            "sealbridge.tee.testing:EchoProgram",
            platform_key_file=None,
            sealed_identity_file=tmp_path / "identity.sealed",
            tee="tdx",
        )
    with pytest.raises(ConfigError, match="platform key file"):
        dispatch.start_enclave("sealbridge.tee.testing:EchoProgram", platform_key_file=None)


def test_the_enclave_process_reports_an_absent_device_clearly(tmp_path: Path) -> None:
    from sealbridge.tee.errors import EnclaveLaunchError
    from sealbridge.tee.sim import SimBackend

    with pytest.raises(EnclaveLaunchError, match="configfs-tsm"):
        SimBackend().launch(
            "sealbridge.tee.testing:EchoProgram",
            platform_key_file=None,
            tee="tdx",
            tee_root=tmp_path / "no-tsm-here",
        )
