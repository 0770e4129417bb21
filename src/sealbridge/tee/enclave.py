"""What trusted code sees: the enclave context, node keys and the program interface.

Theory of operation: an *enclave program* is a class named by import path
``"package.module:ClassName"``. The backend constructs it inside the enclave as
``Program(ctx)`` and asks it once for its ECALL table, ``get_ecalls() -> {name: fn}``;
each ECALL takes and returns bytes. Programs declare their ECALLs with typed
:class:`~sealbridge.tee.ecall.Ecall` specs and build the table with
:func:`~sealbridge.tee.ecall.get_ecall_table`. The host can reach the program only
through those names (plus the backend's built-in ``sb.*`` calls, e.g. quote generation).

The :class:`EnclaveContext` is what the (simulated) platform gives trusted code:

* randomness (``random_bytes``);
* the node identity, generated *inside* the enclave at start: an Ed25519 identity key,
  an X25519 encryption key and a secp256k1 key whose Ethereum address signs on-chain
  approvals. Only the public parts leave, as :class:`NodeKeys`; the private parts stay in
  the context and are used through ``sign_identity``, ``sign_eth_digest`` and
  ``decrypt_for_identity``;
* ``measurement`` and ``get_quote(report_data)``: a quote over 64 bytes chosen by trusted
  code. The host-facing quote ECALL always quotes :func:`compute_report_data` of the
  node's own keys, so the host cannot obtain a quote over data it picked;
* sealing: ``seal(data, label)`` / ``unseal(blob, label)`` with AES-256-GCM under a key
  derived from the platform key *and* the measurement, with the label as associated
  data: another program (another measurement) cannot unseal, and a blob sealed under one
  label does not open under another.

Identity persistence: given a sealed-identity file, the context unseals the identity from
it (a restarted enclave keeps its keys) or, when the file does not exist yet, generates a
fresh identity and seals it there. A file that does not unseal (other platform, other
code) is an error, never a silent key change.

Key renewal (PODG's rule: a registration is renewed over *fresh* node keys, so keys that
may have leaked stop counting when the old registration does): ``stage_fresh_keys``
draws a new encryption key and a new secp256k1 key -- the Ed25519 identity key stays, it
is the node's name on chain -- and seals them beside the identity (``<file>.next``), so a
crash between staging and the renewal transaction loses nothing; staging again returns
the same staged keys. ``switch_to_staged_keys`` makes them current and erases the old
secrets (the sealed identity is replaced). The host says when to switch; a host that
switches too early or never only stops its own node (the chain and the gatekeepers
accept the registered keys alone), it cannot make the enclave use retired keys again
except by restoring an old sealed identity, and the gatekeepers refuse those keys
(their facts proofs name the registered ones).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sealbridge.core.encoding import Message, decode_canonical, encode
from sealbridge.core.errors import ConfigError, DecryptionError, EncodingError
from sealbridge.crypto import aead
from sealbridge.crypto.ecies import decrypt_with, x25519_keypair
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.signing import (
    ed25519_keypair,
    ed25519_sign,
    eth_address,
    secp256k1_keypair,
    secp256k1_public,
    secp256k1_sign_hash,
)
from sealbridge.tee.errors import SealingError
from sealbridge.tee.quote import REPORT_DATA_SIZE, compute_sim_quote

if TYPE_CHECKING:
    from sealbridge.tee.hardware import Quoter

RawEcall = Callable[[bytes], bytes]  # an ECALL as the boundary sees it (tee/ecall.py types it)
BUILTIN_PREFIX = "sb."
_REPORT_DATA_TAG = b"sealbridge/tee/report-data/v1\x00"
_SEAL_INFO = "sealbridge/tee/sim/sealing-key/v1"
_IDENTITY_LABEL = "sealbridge/tee/identity/v1"
_NEXT_KEYS_LABEL = "sealbridge/tee/identity-next/v1"


class NodeKeys(Message, frozen=True):
    """The public keys of an enclave's identity (what a quote binds)."""

    identity_key: bytes  # Ed25519, 32
    encryption_key: bytes  # X25519, 32
    eth_address: bytes  # 20, address of the enclave's secp256k1 key


class _IdentitySecrets(Message, frozen=True):
    """Private parts of the identity; exists only inside the enclave (and sealed)."""

    identity_seed: bytes
    encryption_seed: bytes
    eth_private: bytes


def compute_report_data(keys: NodeKeys) -> bytes:
    """The 64-byte report data binding a quote to ``keys``: SHA-512 of tag || encode(keys)."""
    return hashlib.sha512(_REPORT_DATA_TAG + encode(keys)).digest()


def _fresh_identity() -> _IdentitySecrets:
    identity_seed, _ = ed25519_keypair()
    encryption_seed, _ = x25519_keypair()
    eth_private, _ = secp256k1_keypair()
    return _IdentitySecrets(
        identity_seed=identity_seed, encryption_seed=encryption_seed, eth_private=eth_private
    )


def _with_fresh_keys(secrets: _IdentitySecrets) -> _IdentitySecrets:
    """The same identity key with a fresh encryption key and a fresh secp256k1 key."""
    encryption_seed, _ = x25519_keypair()
    eth_private, _ = secp256k1_keypair()
    return _IdentitySecrets(
        identity_seed=secrets.identity_seed,
        encryption_seed=encryption_seed,
        eth_private=eth_private,
    )


def _public_keys(secrets: _IdentitySecrets) -> NodeKeys:
    return NodeKeys(
        identity_key=ed25519_keypair(secrets.identity_seed)[1],
        encryption_key=x25519_keypair(secrets.encryption_seed)[1],
        eth_address=eth_address(secp256k1_public(secrets.eth_private)),
    )


class EnclaveContext:
    """Platform services for trusted code (see the module docstring)."""

    def __init__(
        self,
        *,
        program: str,
        measurement: bytes,
        platform_private_key: bytes,
        sealed_identity_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        compromised: bool = False,
        quoter: Quoter | None = None,
    ) -> None:
        self._program = program
        self._compromised = bool(compromised)
        self._measurement = bytes(measurement)
        self._platform_private_key = bytes(platform_private_key)
        self._clock = clock
        # on hardware (``quoter``), quotes come from the platform's interface and the
        # sealing key from its sealing material; either way derived when first needed
        self._quoter = quoter
        self._sealing: bytes | None = None
        self._identity_file = None if sealed_identity_file is None else Path(sealed_identity_file)
        self._secrets = self._load_identity(self._identity_file)
        self._node_keys = _public_keys(self._secrets)
        self._staged = self._load_staged(self._identity_file)

    def _read_sealed(self, path: Path, label: str) -> _IdentitySecrets:
        blob = path.read_bytes()
        try:
            return decode_canonical(self.unseal(blob, label), _IdentitySecrets)
        except (EncodingError, ValueError) as exc:  # msgspec: UnicodeDecodeError
            raise SealingError(f"sealed identity {path} is malformed") from exc

    def _write_sealed(self, path: Path, secrets: _IdentitySecrets, label: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.seal(encode(secrets), label))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _load_identity(self, path: Path | None) -> _IdentitySecrets:
        if path is None:
            return _fresh_identity()
        if path.exists():
            return self._read_sealed(path, _IDENTITY_LABEL)
        secrets = _fresh_identity()
        self._write_sealed(path, secrets, _IDENTITY_LABEL)
        return secrets

    @staticmethod
    def _next_file(path: Path) -> Path:
        return path.with_name(path.name + ".next")

    def _load_staged(self, path: Path | None) -> _IdentitySecrets | None:
        if path is None or not self._next_file(path).exists():
            return None
        staged = self._read_sealed(self._next_file(path), _NEXT_KEYS_LABEL)
        if staged.identity_seed != self._secrets.identity_seed:
            raise SealingError(f"{self._next_file(path)} holds keys of another identity")
        if staged == self._secrets:  # a switch stopped after replacing the identity
            self._next_file(path).unlink(missing_ok=True)
            return None
        return staged

    # --- reads -----------------------------------------------------------------------------

    @property
    def program(self) -> str:
        return self._program

    @property
    def measurement(self) -> bytes:
        return self._measurement

    @property
    def compromised(self) -> bool:
        """True only in a declared adversary simulation (``--simulate-compromise``): the
        platform is broken -- same measurement, valid quotes -- so trusted code that
        checks this flag may misbehave the way extracted keys would let an attacker
        (e.g. a key vault that releases a key twice). Never set on a real backend."""
        return self._compromised

    @property
    def identity(self) -> NodeKeys:
        """Public parts of the node identity."""
        return self._node_keys

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ConfigError("random_bytes needs n >= 0")
        return os.urandom(n)

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """The platform's clock (seconds since the epoch): the one clock trusted code reads."""
        return float(self._clock())

    # --- attestation -----------------------------------------------------------------------

    def get_quote(self, report_data: bytes) -> bytes:
        """A simulated quote over 64 bytes of report data chosen by trusted code."""
        if not isinstance(report_data, bytes | bytearray) or len(report_data) != REPORT_DATA_SIZE:
            raise ConfigError(f"report data must be {REPORT_DATA_SIZE} bytes")
        if self._quoter is not None:
            return self._quoter.get_quote(bytes(report_data))
        return compute_sim_quote(
            self._platform_private_key,
            measurement=self._measurement,
            report_data=bytes(report_data),
            timestamp=int(self._clock()),
        )

    def get_identity_quote(self) -> bytes:
        """A quote binding this node's keys: report data = compute_report_data(identity)."""
        return self.get_quote(compute_report_data(self._node_keys))

    # --- sealing ---------------------------------------------------------------------------

    @property
    def _sealing_key(self) -> bytes:
        if self._sealing is None:
            material = (
                self._platform_private_key
                if self._quoter is None
                else self._quoter.get_sealing_material()
            )
            self._sealing = derive_key(material, _SEAL_INFO, salt=self._measurement)
        return self._sealing

    def seal(self, data: bytes, label: str) -> bytes:
        """Encrypt ``data`` so that only this program on this platform, with ``label``, opens it."""
        return aead.seal(self._sealing_key, bytes(data), aad=label.encode())

    def unseal(self, blob: bytes, label: str) -> bytes:
        """Open a blob made by :meth:`seal`; SealingError if it was not sealed here/with label."""
        try:
            return aead.open_sealed(self._sealing_key, bytes(blob), aad=label.encode())
        except DecryptionError as exc:
            raise SealingError(
                f"sealed blob does not open for label {label!r} under this enclave's sealing key"
            ) from exc

    # --- key renewal (see the module docstring) ---------------------------------------------

    @property
    def staged_keys(self) -> NodeKeys | None:
        """The public parts of the keys staged for a renewal, if any."""
        return None if self._staged is None else _public_keys(self._staged)

    def stage_fresh_keys(self) -> NodeKeys:
        """Stage fresh keys for a renewal (the same ones until they are switched to)."""
        if self._staged is None:
            staged = _with_fresh_keys(self._secrets)
            if self._identity_file is not None:
                self._write_sealed(self._next_file(self._identity_file), staged, _NEXT_KEYS_LABEL)
            self._staged = staged
        return _public_keys(self._staged)

    def get_staged_quote(self) -> bytes:
        """A quote binding the staged keys (what a renewal's approval checks)."""
        if self._staged is None:
            raise ConfigError("no fresh keys are staged for a renewal")
        return self.get_quote(compute_report_data(_public_keys(self._staged)))

    def switch_to_staged_keys(self, expected: NodeKeys) -> NodeKeys:
        """Make the staged keys current and forget the old secrets. ``expected``: the
        staged keys the caller registered (a mismatch changes nothing)."""
        if self._staged is None:
            raise ConfigError("no fresh keys are staged for a renewal")
        if _public_keys(self._staged) != expected:
            raise ConfigError("the keys to switch to are not the staged ones")
        if self._identity_file is not None:
            self._write_sealed(self._identity_file, self._staged, _IDENTITY_LABEL)
            self._next_file(self._identity_file).unlink(missing_ok=True)
        self._secrets, self._staged = self._staged, None
        self._node_keys = _public_keys(self._secrets)
        return self._node_keys

    def derive_secret(self, label: str) -> bytes:
        """A 32-byte secret that only this identity derives, the same in every process
        and across key renewals (from the sealed identity seed; ``label`` separates
        uses)."""
        if not isinstance(label, str) or not label:
            raise ConfigError("derive_secret needs a label")
        return derive_key(self._secrets.identity_seed, f"sealbridge/tee/derived/{label}")

    # --- identity key operations -----------------------------------------------------------

    def sign_identity(self, message: bytes) -> bytes:
        """Ed25519 signature of ``message`` with the identity key (64 bytes)."""
        return ed25519_sign(self._secrets.identity_seed, bytes(message))

    def sign_eth_digest(self, digest: bytes) -> bytes:
        """Ethereum-style ``r || s || v`` signature of a 32-byte digest (ecrecover-able)."""
        return secp256k1_sign_hash(self._secrets.eth_private, bytes(digest))

    def decrypt_for_identity(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Open an ECIES blob sent to ``identity.encryption_key``; DecryptionError if bad."""
        return decrypt_with(self._secrets.encryption_seed, bytes(blob), bytes(aad))


class EnclaveKeys(Protocol):
    """What the runtime needs from its enclave: key operations, never the private keys."""

    @property
    def identity(self) -> NodeKeys: ...

    def random_bytes(self, n: int) -> bytes: ...

    def sign_identity(self, message: bytes) -> bytes: ...

    def sign_eth_digest(self, digest: bytes) -> bytes: ...

    def decrypt_for_identity(self, blob: bytes, aad: bytes = b"") -> bytes: ...


class EnclaveProgram(Protocol):
    """Trusted code: constructed as ``Program(ctx)``, exports named ECALLs."""

    def __init__(self, ctx: EnclaveContext) -> None: ...

    def get_ecalls(self) -> Mapping[str, RawEcall]: ...


def split_program_path(program: str) -> tuple[str, str]:
    """Split ``"package.module:ClassName"``; ConfigError if malformed."""
    module, sep, name = program.partition(":")
    if not sep or not module or not name.isidentifier():
        raise ConfigError(f"program must be 'package.module:ClassName', got {program!r}")
    return module, name


def load_program_class(program: str) -> Callable[[EnclaveContext], EnclaveProgram]:
    """Import the program class named by ``program``."""
    module_name, class_name = split_program_path(program)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import enclave program module {module_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not callable(cls):
        raise ConfigError(f"{module_name} has no enclave program class {class_name!r}")
    return cls  # type: ignore[no-any-return]


def get_program_ecalls(program: EnclaveProgram) -> dict[str, RawEcall]:
    """The program's ECALL table, checked (names are strings, no reserved ``sb.`` prefix)."""
    table = dict(program.get_ecalls())
    for name, fn in table.items():
        if not isinstance(name, str) or not name or name.startswith(BUILTIN_PREFIX):
            raise ConfigError(f"invalid ECALL name {name!r} (the 'sb.' prefix is reserved)")
        if not callable(fn):
            raise ConfigError(f"ECALL {name!r} is not callable")
    return table
