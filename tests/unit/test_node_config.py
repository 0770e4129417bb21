"""Node and devnet configuration files: bad files give a ConfigError that names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.config.node import NodeConfig, load_node_config, save_json
from sealbridge.core.errors import ConfigError
from sealbridge.node.process import main


def config(**changes: object) -> NodeConfig:
    base = dict(
        role="worker",
        name="w",
        home="/tmp/x",
        rpc_url="http://127.0.0.1:1",
        addresses_file="/tmp/a.json",
        eth_private_key="00" * 32,
        port=1,
        platform_key_file="/tmp/p",
        platform_public_key="00" * 32,
        allowed_measurements=[],
    )
    base.update(changes)
    return NodeConfig(**base)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    save_json(path, config())
    assert load_node_config(path) == config()


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"role": "worker"}', b"[1,2]"])
def test_malformed_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        load_node_config(path)
    assert str(path) in refused.value.message


def test_unknown_role_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    save_json(path, config(role="miner"))
    with pytest.raises(ConfigError, match="role"):
        load_node_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_node_config(tmp_path / "absent.json")


def test_node_process_exits_2_on_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.json"
    path.write_text("{broken")
    assert main([str(path)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main([]) == 2
