"""Unit tests for Config.validate: good values pass, bad ones name the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from netcore.config.settings import Config, ConfigError


def config(tmp_path: Path, **over: object) -> Config:
    fields: dict[str, object] = {"data_dir": tmp_path, "name": "node-a"}
    fields.update(over)
    return Config(**fields)  # type: ignore[arg-type]


def rejects(cfg: Config, option: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    text = str(info.value)
    assert option in text, f"{text!r} does not name {option}"
    assert "\n" not in text
    return info.value


def test_defaults_are_valid(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.validate()
    assert cfg.network == "default"
    assert cfg.port == 0
    assert cfg.capacity >= 1, "capacity 0 means one per core"
    assert cfg.caps == ("infer",)


@pytest.mark.parametrize(
    "over",
    [
        {"interfaces": ("127.0.0.1",)},
        {"interfaces": ("10.231.0.2", "192.168.1.20")},
        {"port": 0},
        {"port": 1},
        {"port": 5555},
        {"port": 65535},
        {"network": "a"},
        {"network": "lab"},
        {"network": "Lab_1.test-x"},
        {"network": "9" + "x" * 62},
        {"name": "x" * 63},
        {"name": "é" * 31},
        {"evasive_after": 0.5, "expired_after": 0.6},
        {"caps": ()},
    ],
    ids=str,
)
def test_good_values(tmp_path: Path, over: dict[str, object]) -> None:
    config(tmp_path, **over).validate()


@pytest.mark.parametrize(
    "network",
    [
        "",
        "-lead",
        ".hidden",
        "_under",
        "a b",
        "tab\tx",
        "lab\n",
        "lab\r\n",
        "x" * 64,
        "ünï",
        "a/b",
        "a:b",
        "a;rm -rf",
        "name\x00",
    ],
    ids=repr,
)
def test_bad_network_names(tmp_path: Path, network: str) -> None:
    rejects(config(tmp_path, network=network), "--network")


@pytest.mark.parametrize(
    "iface",
    ["::1", "fe80::1", "2001:db8::1", "::ffff:127.0.0.1", "fe80::1%eth0"],
)
def test_ipv6_interfaces(tmp_path: Path, iface: str) -> None:
    err = rejects(config(tmp_path, interfaces=(iface,)), "--interface")
    assert "IPv4" in str(err)


@pytest.mark.parametrize(
    "iface",
    [
        "eth0",
        "localhost",
        "",
        "300.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "127.0.0.1/8",
        " 127.0.0.1",
        "127.0.0.1:80",
    ],
    ids=repr,
)
def test_garbage_interfaces(tmp_path: Path, iface: str) -> None:
    rejects(config(tmp_path, interfaces=(iface,)), "--interface")


def test_one_bad_interface_among_good_ones(tmp_path: Path) -> None:
    rejects(config(tmp_path, interfaces=("127.0.0.1", "::1")), "--interface")


@pytest.mark.parametrize("port", [-1, 65536, 70000, 2**31])
def test_bad_ports(tmp_path: Path, port: int) -> None:
    err = rejects(config(tmp_path, port=port), "--port")
    assert str(port) in str(err)


@pytest.mark.parametrize(
    "name", ["", "x" * 64, "é" * 32], ids=["empty", "64-ascii", "64-bytes-utf8"]
)
def test_bad_names(tmp_path: Path, name: str) -> None:
    rejects(config(tmp_path, name=name), "--name")


@pytest.mark.parametrize(
    "over",
    [
        {"evasive_after": 10.0, "expired_after": 10.0},
        {"evasive_after": 11.0, "expired_after": 10.0},
        {"evasive_after": 0.0},
        {"evasive_after": -1.0},
    ],
    ids=str,
)
def test_bad_liveness(tmp_path: Path, over: dict[str, object]) -> None:
    rejects(config(tmp_path, **over), "evasive_after")


@pytest.mark.parametrize("interval", [0.0, -1.0, 0.01, float("nan")], ids=str)
def test_ping_interval_must_be_at_least_50_ms(tmp_path: Path, interval: float) -> None:
    rejects(config(tmp_path, ping_interval=interval), "ping_interval")


@pytest.mark.parametrize("trust", ["everyone", "", "OPEN"])
def test_unsupported_trust(tmp_path: Path, trust: str) -> None:
    rejects(config(tmp_path, trust=trust), "--trust")


@pytest.mark.parametrize("trust", ["open", "allowlist"])
def test_supported_trust(tmp_path: Path, trust: str) -> None:
    config(tmp_path, trust=trust).validate()


def test_data_dir_expands_the_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = Config(data_dir="~/p2pai-data", name="n")  # type: ignore[arg-type]
    assert cfg.data_dir == tmp_path / "p2pai-data"


def test_serving_addresses_with_interfaces_are_deduplicated(tmp_path: Path) -> None:
    cfg = config(tmp_path, interfaces=("127.0.0.1", "10.0.0.1", "127.0.0.1"))
    assert cfg.serving_addresses() == ["127.0.0.1", "10.0.0.1"]


def test_session_trusted_keys_must_be_z85(tmp_path: Path) -> None:
    import zmq

    good = zmq.curve_keypair()[0].decode("ascii")
    Config(data_dir=tmp_path, trusted_keys=(good,)).validate()
    with pytest.raises(ConfigError, match="--trust-key"):
        Config(data_dir=tmp_path, trusted_keys=(good, "x" * 39)).validate()


@pytest.mark.parametrize("text,size", [("4GiB", 4 * 1024**3), ("512 MiB", 512 * 1024**2),
                                       ("500MB", 500 * 10**6), ("1.5G", 3 * 1024**3 // 2),
                                       ("65536", 65536), ("10k", 10240)])  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    from netcore.config.sizes import parse_size

    assert parse_size(text) == size


def test_model_quota_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--model-quota"):
        Config(data_dir=tmp_path, model_quota=0).validate()
