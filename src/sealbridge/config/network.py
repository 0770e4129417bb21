"""Where a running network is: the devnet state file under a sealbridge home.

``sealbridge devnet up`` writes ``<home>/devnet/devnet.json`` (a :class:`DevnetState`:
the chain's RPC URL, the management contracts' addresses file, every node's URL and
identity); the client and the CLI read it with :func:`load_running`, which also checks
that the chain process is still alive.
"""

from __future__ import annotations

import os
from pathlib import Path

from sealbridge.config.node import DevnetState, load_devnet_state
from sealbridge.core.errors import LocalProtocolError


class DevnetNotRunning(LocalProtocolError):
    code = "devnet_not_running"


def get_devnet_dir(home: Path) -> Path:
    return home / "devnet"


def get_state_file(home: Path) -> Path:
    return get_devnet_dir(home) / "devnet.json"


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_running(home: Path) -> DevnetState:
    """The state of the running devnet under ``home``, or a clear error."""
    path = get_state_file(home)
    if not path.exists():
        raise DevnetNotRunning(
            f"no devnet is running under {home} (start one with `sealbridge devnet up`)"
        )
    state = load_devnet_state(path)
    if not is_alive(state.anvil_pid):
        raise DevnetNotRunning(
            f"the devnet under {home} is not running any more (its chain process is gone); "
            "run `sealbridge devnet down` then `sealbridge devnet up`"
        )
    return state
