"""Start and stop a real anvil (Foundry) node for the devnet and tests.

Theory of operation: :class:`AnvilNode` locates the binary (``$SEALBRIDGE_ANVIL``, then
``node_modules/.bin/anvil`` in the nearest ancestor of this package or of the current
directory, then ``PATH``), starts it on a fixed or free port with ``--hardfork prague``
and the standard test mnemonic, and polls ``eth_chainId`` until the RPC answers.
:meth:`AnvilNode.stop` terminates exactly the process it started (and kills it if it
does not exit); anvil runs in its own process group, so the npm wrapper script and the
native binary it spawns stop together, and nodes still running at interpreter exit are
stopped by an ``atexit`` hook. Port 0 picks a free port by binding a socket first; the tiny window
before anvil binds it is covered by retrying the start on another port.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO
from weakref import WeakSet

from sealbridge.chain.errors import AnvilError, AnvilNotFound, ChainConfigError
from sealbridge.evm.adapter import ANVIL_MNEMONIC, ChainAdapter

ANVIL_ENV = "SEALBRIDGE_ANVIL"
DEFAULT_CHAIN_ID = 31337

_RUNNING: WeakSet[AnvilNode] = WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for node in list(_RUNNING):
        node.stop()


def find_anvil() -> Path:
    """Path of the anvil binary, or raise :class:`AnvilNotFound` saying where we looked."""
    looked: list[str] = []
    env = os.environ.get(ANVIL_ENV)
    if env:
        path = Path(env)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise AnvilNotFound(f"${ANVIL_ENV}={env} is not an executable file")
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for directory in (start, *start.parents):
            candidate = directory / "node_modules" / ".bin" / "anvil"
            looked.append(str(candidate))
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    which = shutil.which("anvil")
    if which:
        return Path(which)
    raise AnvilNotFound(
        "anvil binary not found: set $SEALBRIDGE_ANVIL, run `npm install @foundry-rs/anvil` "
        f"in the repository, or put anvil on PATH (looked in {len(looked)} node_modules "
        "directories and PATH)"
    )


def get_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_anvil_argv(
    binary: Path,
    *,
    port: int,
    chain_id: int,
    accounts: int = 10,
    balance_ether: int = 10_000,
    block_time: float | None = None,
    silent: bool = True,
) -> list[str]:
    """The command line of an anvil dev node: loopback, prague, the standard dev mnemonic."""
    argv = [
        str(binary),
        "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
        "--hardfork", "prague", "--mnemonic", ANVIL_MNEMONIC, "--accounts", str(accounts),
        "--balance", str(balance_ether),
    ]  # fmt: skip
    if silent:
        argv.append("--silent")
    if block_time is not None:
        argv += ["--block-time", f"{block_time:g}"]
    return argv


class AnvilNode:
    """One anvil process; a context manager (``with AnvilNode() as node: ...``)."""

    def __init__(
        self,
        *,
        port: int = 0,
        chain_id: int = DEFAULT_CHAIN_ID,
        block_time: float | None = None,
        accounts: int = 10,
        balance_ether: int = 10_000,
        binary: Path | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if port < 0 or port > 65535:
            raise ChainConfigError(f"invalid port {port}")
        if chain_id <= 0:
            raise ChainConfigError(f"invalid chain id {chain_id}")
        if block_time is not None and block_time <= 0:
            raise ChainConfigError("block_time must be positive")
        self.requested_port = port
        self.port = port
        self.chain_id = chain_id
        self.block_time = block_time
        self.accounts = accounts
        self.balance_ether = balance_ether
        self.binary = binary
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self, binary: Path) -> list[str]:
        return (
            get_anvil_argv(
                binary,
                port=self.port,
                chain_id=self.chain_id,
                accounts=self.accounts,
                balance_ether=self.balance_ether,
                block_time=self.block_time,
            )
            + self.extra_args
        )

    def start(self) -> AnvilNode:
        """Start anvil and wait until its RPC answers."""
        if self.is_running():
            return self
        binary = self.binary or find_anvil()
        attempts = 3 if self.requested_port == 0 else 1
        last_error = ""
        for _ in range(attempts):
            self.port = self.requested_port or get_free_port()
            self._log = tempfile.TemporaryFile()
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _RUNNING.add(self)
            error = self._wait_ready()
            if error is None:
                return self
            last_error = error
            self.stop()
        raise AnvilError(f"anvil did not start: {last_error}")

    def _wait_ready(self) -> str | None:
        deadline = time.monotonic() + self.startup_timeout
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                return (
                    f"exited with code {process.returncode if process else None}: {self.read_log()}"
                )
            request = urllib.request.Request(
                self.url, data=body.encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=1.0) as response:  # noqa: S310
                    answer = json.loads(response.read())
                if int(answer["result"], 16) == self.chain_id:
                    return None
                return f"unexpected chain id {answer['result']}"
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                time.sleep(0.05)
        return f"no RPC answer within {self.startup_timeout}s: {self.read_log()}"

    def read_log(self) -> str:
        """What anvil printed so far (for error messages)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        """Terminate the process started by :meth:`start` (kill after 5 s)."""
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is not None:
            # the npm shim spawns the native binary: signal the whole process group
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
            self._signal_group(process, signal.SIGKILL)  # stragglers in the group
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)  # our own session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def adapter(self) -> ChainAdapter:
        """A :class:`ChainAdapter` connected to this node."""
        if not self.is_running():
            raise AnvilError("anvil is not running")
        return ChainAdapter.rpc(self.url)

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
