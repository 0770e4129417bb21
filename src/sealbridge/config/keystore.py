"""Named user keys on disk.

Each user (``alice``, ``bob`` …) has an Ed25519 key -- their identity inside contracts,
which signs commands and queries -- and a secp256k1 key for the Ethereum account that
pays gas for their transactions. The two are deliberately separate: the chain sees
which account relays a command, never which contract account wrote it.

Files are ``<home>/keys/<name>.json``, created with mode 0600.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sealbridge.core.encoding import Message
from sealbridge.core.errors import LocalProtocolError
from sealbridge.core.ids import from_hex
from sealbridge.crypto.signing import ed25519_public, eth_address, secp256k1_public

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class KeystoreError(LocalProtocolError):
    code = "keystore"


class UserKey(Message, frozen=True):
    name: str
    identity_private_key: bytes  # Ed25519 seed
    eth_private_key: bytes  # secp256k1

    @property
    def identity_key(self) -> bytes:
        return ed25519_public(self.identity_private_key)

    @property
    def eth_address(self) -> bytes:
        return eth_address(secp256k1_public(self.eth_private_key))


class Keystore:
    def __init__(self, home: Path) -> None:
        self.directory = home / "keys"

    def path_of(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise KeystoreError(
                f"invalid key name {name!r}: use lowercase letters, digits, '-' or '_'"
            )
        return self.directory / f"{name}.json"

    def create(self, name: str, *, identity_seed: bytes, eth_private_key: bytes) -> UserKey:
        path = self.path_of(name)
        if path.exists():
            raise KeystoreError(f"key {name!r} already exists at {path}")
        key = UserKey(
            name=name, identity_private_key=identity_seed, eth_private_key=eth_private_key
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "name": name,
                    "identity_private_key": identity_seed.hex(),
                    "eth_private_key": eth_private_key.hex(),
                },
                handle,
            )
        return key

    def get(self, name: str) -> UserKey:
        path = self.path_of(name)
        if not path.exists():
            known = ", ".join(self.list_names()) or "none"
            raise KeystoreError(f"no key named {name!r} (known keys: {known})")
        try:
            raw = json.loads(path.read_text())
            return UserKey(
                name=name,
                identity_private_key=from_hex(raw["identity_private_key"], size=32),
                eth_private_key=from_hex(raw["eth_private_key"], size=32),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KeystoreError(f"key file {path} is unreadable: {exc}") from exc

    def list_names(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def find_by_identity(self, identity_key: bytes) -> str | None:
        for name in self.list_names():
            if self.get(name).identity_key == identity_key:
                return name
        return None
