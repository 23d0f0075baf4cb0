"""The config file: precedence (flag > env > file > default), tables, errors in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import zmq
from click.testing import CliRunner

from netcore.cli.config_file import default_config_path
from netcore.cli.root import cli
from netcore.config.peers import parse_static_peer
from netcore.config.settings import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("P2PAI_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def key() -> str:
    return zmq.curve_keypair()[0].decode("ascii")


def show(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["config", "show", "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    settings: dict[str, Any] = json.loads(result.output)["settings"]
    return settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml", 'network = "filenet"\nexpired_after = 12.0\nname = "from-file"\n'
    )
    base = show("--config", str(cfg))
    assert base["network"] == {"value": "filenet", "source": "file"}
    assert base["expired_after"] == {"value": 12.0, "source": "file"}
    assert base["evasive_after"] == {"value": 3.0, "source": "default"}

    env = {"P2PAI_NETWORK": "envnet", "P2PAI_EXPIRED_AFTER": "20", "P2PAI_NAME": "from-env"}
    with_env = show("--config", str(cfg), env=env)
    assert with_env["network"] == {"value": "envnet", "source": "env"}
    assert with_env["expired_after"] == {"value": 20.0, "source": "env"}
    assert with_env["name"] == {"value": "from-env", "source": "env"}

    flags = show("--config", str(cfg), "--network", "flagnet", "--name", "from-flag", env=env)
    assert flags["network"] == {"value": "flagnet", "source": "flag"}
    assert flags["name"] == {"value": "from-flag", "source": "flag"}
    assert flags["expired_after"]["source"] == "env"


def test_every_option_and_setting_is_listed(tmp_path: Path) -> None:
    settings = show()
    for expected in ("interface", "port", "network", "data_dir", "name", "peer", "metrics_port",
                     "metrics_host", "mdns", "capacity", "queue_limit", "ping_interval",
                     "evasive_after", "expired_after", "max_attempts", "share_peers",
                     "log_level", "log_format"):  # fmt: skip
        assert expected in settings, expected


def test_command_tables_override_the_top_level(tmp_path: Path) -> None:
    static = f"tcp://127.0.0.1:7000#{key()}"
    cfg = write(
        tmp_path / "c.toml",
        f'capacity = 2\npeer = ["{static}"]\nmetrics_port = 9464\n[node]\ncapacity = 3\n',
    )
    settings = show("--config", str(cfg))
    assert settings["capacity"] == {"value": 3, "source": "file"}
    assert settings["peer"] == {"value": [static], "source": "file"}
    assert settings["metrics_port"] == {"value": 9464, "source": "file"}
    # --peer on the command line replaces the file's list; P2PAI_CAPACITY beats the file.
    other = f"tcp://127.0.0.1:7001#{key()}"
    settings = show("--config", str(cfg), "--peer", other, env={"P2PAI_CAPACITY": "5"})
    assert settings["peer"] == {"value": [other], "source": "flag"}
    assert settings["capacity"] == {"value": 5, "source": "env"}


def test_default_path_and_p2pai_config(tmp_path: Path) -> None:
    default = default_config_path()
    assert default == tmp_path / "xdg" / "p2pai" / "config.toml"
    assert show()["network"]["source"] == "default"  # no file: fine
    default.parent.mkdir(parents=True)
    write(default, 'network = "dflt"\n')
    assert show()["network"] == {"value": "dflt", "source": "file"}
    other = write(tmp_path / "other.toml", 'network = "viaenv"\n')
    assert show(env={"P2PAI_CONFIG": str(other)})["network"]["value"] == "viaenv"
    group = CliRunner().invoke(cli, ["--config", str(other), "config", "show", "--json"])
    assert json.loads(group.output)["settings"]["network"]["value"] == "viaenv"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("netwrok = 'x'\n", "unknown setting 'netwrok'"),
        ("[nodes]\ncapacity = 1\n", "unknown table [nodes]"),
        ("port = 'abc'\n", "port = 'abc'"),
        ("port = 70000\n", "port = 70000"),
        ("expired_after = 'soon'\n", "expired_after"),
        ("peer = ['tcp://1.2.3.4:5']\n", "key is missing"),
        ("network = \n", "not valid TOML"),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = write(tmp_path / "c.toml", text)
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("p2pai: error: "), result.output
    assert needle in lines[0]


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "no such file" in result.output and len(result.output.strip().splitlines()) == 1


def test_serve_port_only_from_its_table(tmp_path: Path) -> None:
    from netcore.cli.config_file import TABLE_ONLY

    assert "port" in TABLE_ONLY["serve"]


def test_show_prints_a_loadable_file(tmp_path: Path) -> None:
    import tomllib

    cfg = write(tmp_path / "c.toml", 'network = "lab"\n[node]\nqueue_limit = 9\n')
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    parsed = tomllib.loads(result.output)
    assert parsed["network"] == "lab" and parsed["queue_limit"] == 9
    again = write(tmp_path / "again.toml", result.output)
    assert show("--config", str(again))["queue_limit"]["value"] == 9


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:7000#K",
        "tcp://127.0.0.1:7000",
        "tcp://127.0.0.1#K",
        "tcp://127.0.0.1:0#K",
        "tcp://127.0.0.1:70000#K",
        "tcp://127.0.0.1:7000#short",
        "tcp://[::1]:7000#K",
        "tcp://bad_host!:7000#K",
    ],
)
def test_bad_static_peers(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_static_peer(text.replace("#K", f"#{key()}"))
    assert "--peer" in str(info.value) and "\n" not in str(info.value)


def test_good_static_peers() -> None:
    k = key()
    peer = parse_static_peer(f"tcp://10.231.2.2:7000#{k}")
    assert (peer.host, peer.port, peer.key, peer.endpoint) == (
        "10.231.2.2",
        7000,
        k,
        "tcp://10.231.2.2:7000",
    )
    assert parse_static_peer(f"tcp://node-b.lan:7000#{k}").host == "node-b.lan"


def test_reach_modules_import_no_textual_or_rich() -> None:
    """The new core modules keep the line between core and UI (ARCHITECTURE.md)."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import netcore.observe.metrics, netcore.doctor, netcore.net.reach, netcore.cli.config_file\n"
        "import netcore.observe.logs, netcore.cli.reach, netcore.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_model_quota_from_flag_env_and_file_with_units(tmp_path: Path) -> None:
    assert show()["model_quota"] == {"value": 4 * 1024**3, "source": "default"}
    cfg = write(tmp_path / "c.toml", 'model_quota = "1GiB"\n')
    assert show("--config", str(cfg))["model_quota"] == {"value": 1024**3, "source": "file"}
    env = {"P2PAI_MODEL_QUOTA": "500MB"}
    assert show("--config", str(cfg), env=env)["model_quota"] == {
        "value": 500 * 10**6,
        "source": "env",
    }


@pytest.mark.parametrize("value", ['"lots"', '"-3GiB"', '"4 parsecs"'])
def test_a_bad_model_quota_fails_in_one_line(tmp_path: Path, value: str) -> None:
    cfg = write(tmp_path / "c.toml", f"model_quota = {value}\n")
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "model_quota" in lines[0] and "4GiB" in lines[0], result.output


def test_a_bad_trust_key_fails_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["node", "--interface", "127.0.0.1", "--network", "tk-bad", "--data-dir",
         str(tmp_path / "d"), "--trust-key", "not-a-key"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["p2pai: error: --trust-key 'not-a-key': not a Z85 public key (40 characters)"]
