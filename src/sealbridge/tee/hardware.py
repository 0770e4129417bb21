"""Hardware quote providers: Intel TDX through Linux configfs-tsm, Intel SGX through Gramine.

Theory of operation
-------------------
Trusted code asks its platform for a quote over 64 bytes of report data it chose
(``EnclaveContext.get_quote``). The sim backend signs a simulated quote with its platform
key; on hardware the platform's own interface makes a DCAP quote:

* **tdx** -- Linux configfs-tsm (kernel 6.7+), under ``/sys/kernel/config/tsm/report``:
  ``mkdir`` a report entry (the kernel creates its attribute files), check that
  ``provider`` is ``tdx_guest``, read ``generation``, write the report data to
  ``inblob``, read the quote from ``outblob``, read ``generation`` again (it must have
  moved by exactly one: otherwise another writer raced us and the quote may not cover our
  data), ``rmdir`` the entry. A TDX guest has no sealing key: a node on TDX cannot seal
  its identity (it gets a fresh one at each start).
* **gramine-sgx** -- Gramine's pseudo-files under ``/dev/attestation``:
  ``attestation_type`` must be ``dcap``; write the report data to ``user_report_data``,
  read the quote from ``quote``. The sealing material is Gramine's MRENCLAVE-bound key
  ``keys/_sgx_mrenclave`` (only the same enclave on the same CPU derives it).

Every failure is typed: :class:`HardwareUnavailable` when the interface is absent or not
the expected one (with what to check), :class:`QuoteGenerationFailed` when it misbehaves.
Both providers check that the quote they read back carries the report data they wrote.

These providers follow the kernel's and Gramine's documented file protocols; their tests
run them against temporary directories laid out like those interfaces. They have not run
on TDX or SGX hardware here.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from sealbridge.core.errors import ConfigError, RemoteProtocolError
from sealbridge.tee.dcap import parse_dcap_quote
from sealbridge.tee.errors import AttestationError

REPORT_DATA_SIZE = 64
TSM_REPORT_DIR = Path("/sys/kernel/config/tsm/report")
GRAMINE_ATTESTATION_DIR = Path("/dev/attestation")
MAX_QUOTE_SIZE = 1 << 20  # a DCAP quote with its certification data is a few KiB
TEE_BACKENDS = ("sim", "tdx", "gramine-sgx")


class HardwareUnavailable(ConfigError):
    """The hardware interface a TEE backend needs is absent or not the expected one."""

    code = "tee_unavailable"


class QuoteGenerationFailed(RemoteProtocolError):
    """The platform's quote interface answered wrongly."""

    code = "quote_generation_failed"


class Quoter(Protocol):
    backend: str

    def get_quote(self, report_data: bytes) -> bytes: ...

    def get_sealing_material(self) -> bytes: ...


def _check_report_data(report_data: bytes) -> bytes:
    if not isinstance(report_data, bytes | bytearray) or len(report_data) != REPORT_DATA_SIZE:
        raise ConfigError(f"report data must be {REPORT_DATA_SIZE} bytes")
    return bytes(report_data)


def _check_quote(quote: bytes, report_data: bytes, kind: str) -> bytes:
    """The quote must parse as a DCAP quote of ``kind`` carrying our report data."""
    if not quote:
        raise QuoteGenerationFailed("the platform returned an empty quote")
    if len(quote) > MAX_QUOTE_SIZE:
        raise QuoteGenerationFailed(f"the platform returned a {len(quote)}-byte quote")
    try:
        info = parse_dcap_quote(quote)
    except AttestationError as exc:
        raise QuoteGenerationFailed(f"the platform's quote does not parse: {exc.message}") from exc
    if info.kind != kind:
        raise QuoteGenerationFailed(f"the platform made a {info.kind} quote, not {kind}")
    if info.report_data != report_data:
        raise QuoteGenerationFailed("the platform's quote does not carry our report data")
    return quote


class FileInterface:
    """The file operations a provider performs (real ones; tests may add the kernel's
    side effects in a subclass)."""

    def make_dir(self, path: Path) -> None:
        path.mkdir()

    def remove_dir(self, path: Path) -> None:
        path.rmdir()

    def read(self, path: Path, limit: int = MAX_QUOTE_SIZE) -> bytes:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise QuoteGenerationFailed(f"{path} holds more than {limit} bytes")
        return data

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb") as handle:
            handle.write(data)


class TdxQuoter:
    """Quotes from a TDX guest through configfs-tsm."""

    backend = "tdx"

    def __init__(self, root: Path = TSM_REPORT_DIR, files: FileInterface | None = None) -> None:
        self.root = Path(root)
        self.files = files or FileInterface()

    def check_available(self) -> None:
        if not self.root.is_dir():
            raise HardwareUnavailable(
                f"TDX quotes need Linux configfs-tsm at {self.root}, which does not exist: "
                "run inside a TDX guest (kernel 6.7 or later, configfs mounted at "
                "/sys/kernel/config), or choose the sim backend"
            )

    def get_quote(self, report_data: bytes) -> bytes:
        data = _check_report_data(report_data)
        self.check_available()
        entry = self.root / f"sealbridge-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            self.files.make_dir(entry)
        except OSError as exc:
            raise HardwareUnavailable(
                f"cannot create a report entry in {self.root}: {exc}"
            ) from exc
        try:
            provider = self._read_text(entry / "provider")
            if provider != "tdx_guest":
                raise HardwareUnavailable(
                    f"the configfs-tsm provider is {provider!r}, not 'tdx_guest'"
                )
            before = self._read_int(entry / "generation")
            self.files.write(entry / "inblob", data)
            quote = self.files.read(entry / "outblob")
            after = self._read_int(entry / "generation")
            if after != before + 1:
                raise QuoteGenerationFailed(
                    f"the report entry changed while the quote was made (generation {before} "
                    f"-> {after}); another writer used it"
                )
        except OSError as exc:
            raise QuoteGenerationFailed(f"configfs-tsm report failed: {exc}") from exc
        finally:
            try:
                self.files.remove_dir(entry)
            except OSError:
                pass  # the kernel removes nothing by itself, but a leftover entry is harmless
        return _check_quote(quote, data, "tdx")

    def get_sealing_material(self) -> bytes:
        raise HardwareUnavailable(
            "a TDX guest has no sealing key: run the TDX node without a sealed identity file "
            "(it gets fresh keys at each start and registers them)"
        )

    def _read_text(self, path: Path) -> str:
        return self.files.read(path, 4096).decode("ascii", "replace").strip()

    def _read_int(self, path: Path) -> int:
        text = self._read_text(path)
        if not text.isdigit():
            raise QuoteGenerationFailed(f"{path} holds {text!r}, not a number")
        return int(text)


class GramineSgxQuoter:
    """Quotes from an SGX enclave run by Gramine, through /dev/attestation."""

    backend = "gramine-sgx"

    def __init__(
        self, root: Path = GRAMINE_ATTESTATION_DIR, files: FileInterface | None = None
    ) -> None:
        self.root = Path(root)
        self.files = files or FileInterface()

    def check_available(self) -> None:
        if not (self.root / "attestation_type").is_file():
            raise HardwareUnavailable(
                f"SGX quotes need Gramine's {self.root}/attestation_type, which does not "
                "exist: run the enclave under gramine-sgx, or choose the sim backend"
            )
        kind = self.files.read(self.root / "attestation_type", 64).decode("ascii", "replace")
        if kind.strip() != "dcap":
            raise HardwareUnavailable(
                f"Gramine's attestation type is {kind.strip()!r}; sealbridge needs 'dcap' "
                '(set sgx.remote_attestation = "dcap" in the manifest)'
            )

    def get_quote(self, report_data: bytes) -> bytes:
        data = _check_report_data(report_data)
        self.check_available()
        try:
            self.files.write(self.root / "user_report_data", data)
            quote = self.files.read(self.root / "quote")
        except OSError as exc:
            raise QuoteGenerationFailed(f"Gramine quote failed: {exc}") from exc
        return _check_quote(quote, data, "sgx")

    def get_sealing_material(self) -> bytes:
        self.check_available()
        try:
            key = self.files.read(self.root / "keys" / "_sgx_mrenclave", 64)
        except OSError as exc:
            raise HardwareUnavailable(
                f"Gramine's MRENCLAVE sealing key is unreadable: {exc}"
            ) from exc
        if len(key) != 16:
            raise QuoteGenerationFailed(f"Gramine's sealing key has {len(key)} bytes, not 16")
        return key


def make_quoter(backend: str, root: Path | None = None) -> Quoter:
    """The quote provider of a hardware backend (``root``: the interface's directory)."""
    if backend == "tdx":
        return TdxQuoter(root or TSM_REPORT_DIR)
    if backend == "gramine-sgx":
        return GramineSgxQuoter(root or GRAMINE_ATTESTATION_DIR)
    raise ConfigError(f"TEE backend must be one of {', '.join(TEE_BACKENDS[1:])}, got {backend!r}")
