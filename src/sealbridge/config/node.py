"""Configuration of node processes and of a running devnet (JSON files on disk)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError

WORKER = "worker"
GATEKEEPER = "gatekeeper"
STORAGE = "storage"
GATEWAY = "gateway"
ROLES = (GATEKEEPER, WORKER, STORAGE, GATEWAY)
TEE_ROLES = (GATEKEEPER, WORKER, GATEWAY)
DEFAULT_MAX_BLOB_SIZE = 16 * 1024 * 1024


class NodeConfig(Message, frozen=True):
    """Everything a gatekeeper, worker, storage or gateway process needs to start.

    A storage node has no enclave: it leaves the three TEE fields empty."""

    role: str  # "gatekeeper" | "worker" | "storage" | "gateway"
    name: str
    home: str  # the node's own data directory
    rpc_url: str
    addresses_file: str
    eth_private_key: str  # hex; the host account that pays gas (not the enclave's key)
    port: int
    platform_key_file: str = ""  # the simulated platform key (sim TEE backend)
    tee_backend: str = "sim"  # sim | tdx | gramine-sgx (the enclave process attests with it)
    collateral_file: str = ""  # hardware: the DCAP collateral (PCS/PCCS JSON) sent to register
    platform_public_key: str = ""  # hex
    allowed_measurements: list[str] = []  # hex; the policy the gatekeeper fixes at genesis
    gatekeeper_url: str = ""
    confirmations: int = 0
    poll_interval: float = 0.05
    stake_wei: int = 10**18
    registration_ttl: int = 30 * 24 * 3600  # renewed when less than a quarter is left
    heartbeats: bool = True  # one NodeRegistry heartbeat per slot (responsiveness)
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE  # storage: the largest blob it accepts
    # worker: outputs and checkpoints (competitive execution)
    submit_outputs: bool = True
    checkpoint_interval: int = 20  # blocks between checkpoints (0: none)
    # a message its source's first worker should have posted, and that is not on chain
    # this many blocks later, is posted by any other worker of the source
    message_repost_blocks: int = 10
    # whether this worker posts messages at all (as first worker or as a late one); a
    # worker that does not still executes and vouches for blocks (the witness rule)
    post_messages: bool = True
    storage_urls: list[str] = []  # storage nodes the checkpoints go to
    inline_checkpoint_max: int = 0  # a checkpoint this small goes on chain instead
    # the gatekeeper committee (threshold root key)
    committee_address: str = ""  # the GatekeeperCommittee contract
    # gatekeeper: the other gatekeepers; worker: the other workers, whose enclaves vouch
    # for our blocks (the witness rule: nothing is released without them)
    peer_urls: list[str] = []
    gatekeeper_urls: list[str] = []  # worker: every gatekeeper it may ask for partials
    # gateway: the other chains it bridges (``rpc_url`` is the chain of its registry and
    # committee, and a bridged chain too), the operator's file naming the escrows
    # ({"<chain id>": "0x..."}), and the confirmations a lock needs before a release
    bridged_rpc_urls: list[str] = []
    escrows_file: str = ""
    release_confirmations: int = 1


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
    gatekeeper: NodeEntry  # the first gatekeeper (the genesis attestor)
    workers: list[NodeEntry]
    users: list[str]
    storage: list[NodeEntry] = []
    gatekeepers: list[NodeEntry] = []  # the whole committee, the first one included
    committee_address: str = ""
    storage_threshold: int = 0  # confirmations a checkpoint needs (0: older devnet file)


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
    if value.role not in ROLES:
        raise ConfigError(
            f"{path}: role must be 'worker', 'gatekeeper', 'storage' or 'gateway', "
            f"not {value.role!r}"
        )
    if value.role in TEE_ROLES and not (value.platform_key_file and value.platform_public_key):
        raise ConfigError(f"{path}: a {value.role} needs platform_key_file and platform_public_key")
    if value.max_blob_size < 1:
        raise ConfigError(f"{path}: max_blob_size must be positive, not {value.max_blob_size}")
    if value.stake_wei < 0 or value.registration_ttl < 1:
        raise ConfigError(f"{path}: stake_wei must be >= 0 and registration_ttl >= 1")
    return value


def load_devnet_state(path: Path) -> DevnetState:
    value = load_json(path, DevnetState)
    if not isinstance(value, DevnetState):  # pragma: no cover
        raise ConfigError(f"{path} is not a DevnetState")
    return value


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once (a crash leaves the old file or the new)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_json(path: Path, value: msgspec.Struct) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, msgspec.json.format(msgspec.json.encode(value), indent=2))
