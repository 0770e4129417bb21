"""Configuration of node processes and of a running devnet (JSON files on disk)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError

WORKER = "worker"
GATEKEEPER = "gatekeeper"


class NodeConfig(Message, frozen=True):
    """Everything a gatekeeper or worker process needs to start."""

    role: str  # "gatekeeper" | "worker"
    name: str
    home: str  # the node's own data directory
    rpc_url: str
    addresses_file: str
    eth_private_key: str  # hex; the host account that pays gas (not the enclave's key)
    port: int
    platform_key_file: str  # the simulated platform key (sim TEE backend)
    platform_public_key: str  # hex
    allowed_measurements: list[str]  # hex; the policy the gatekeeper fixes at genesis
    gatekeeper_url: str = ""
    confirmations: int = 0
    poll_interval: float = 0.05
    stake_wei: int = 10**18
    registration_ttl: int = 30 * 24 * 3600


class NodeEntry(Message, frozen=True):
    name: str
    role: str
    url: str
    pid: int
    node_id: str = ""  # hex identity key, once registered
    config_file: str = ""
    log_file: str = ""


class DevnetState(Message, frozen=True):
    """What ``sealbridge devnet up`` started, so later commands can find it."""

    home: str
    chain_id: int
    rpc_url: str
    anvil_pid: int
    addresses_file: str
    platform_public_key: str
    measurements: dict[str, str]  # program -> hex measurement
    gatekeeper: NodeEntry
    workers: list[NodeEntry]
    users: list[str]


def load_json(path: Path, kind: type[msgspec.Struct]) -> msgspec.Struct:
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path} is not a valid {kind.__name__}: {exc}") from exc


def load_node_config(path: Path) -> NodeConfig:
    value = load_json(path, NodeConfig)
    if not isinstance(value, NodeConfig):  # pragma: no cover - msgspec guarantees it
        raise ConfigError(f"{path} is not a NodeConfig")
    if value.role not in {WORKER, GATEKEEPER}:
        raise ConfigError(f"{path}: role must be 'worker' or 'gatekeeper', not {value.role!r}")
    return value


def load_devnet_state(path: Path) -> DevnetState:
    value = load_json(path, DevnetState)
    if not isinstance(value, DevnetState):  # pragma: no cover
        raise ConfigError(f"{path} is not a DevnetState")
    return value


def save_json(path: Path, value: msgspec.Struct) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(value), indent=2))
    tmp.replace(path)
