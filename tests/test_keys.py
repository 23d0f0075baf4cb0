"""Trusted keys (netcore.trust.keys): the list on disk, key sources, selection, and their errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import zmq

from netcore.config.settings import Config, ConfigError
from netcore.net.identity import load_or_create
from netcore.trust.keys import (
    TrustError,
    TrustList,
    base_dir_of,
    changed_on_disk,
    local_keys,
    parse_key_source,
    read_key_file,
    trust_path,
)
from netcore.wire.addresses import peer_id_for


def new_key() -> str:
    return zmq.curve_keypair()[0].decode("ascii")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = trust_path(tmp_path / "base")
    trust = TrustList(path)
    a, b = new_key(), new_key()
    entry, created = trust.add(a, "laptop")
    assert created and entry.peer_id == peer_id_for(a) and entry.added > 0
    assert trust.add(a, "renamed") == (trust.get(a), False)
    assert trust.get(a).name == "renamed"  # type: ignore[union-attr]
    trust.add(b)
    trust.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1 and [k["key"] for k in data["keys"]] == [a, b]
    loaded = TrustList.load(path)
    assert loaded.keys() == {a, b}
    assert not changed_on_disk(loaded)
    os.utime(path, ns=(0, 1))
    assert changed_on_disk(loaded)


def test_a_missing_list_is_empty(tmp_path: Path) -> None:
    trust = TrustList.load(trust_path(tmp_path))
    assert trust.entries == [] and not changed_on_disk(trust)


def test_a_list_others_may_write_is_refused(tmp_path: Path) -> None:
    path = trust_path(tmp_path)
    trust = TrustList(path)
    trust.add(new_key())
    trust.save()
    path.chmod(0o666)
    with pytest.raises(TrustError) as err:
        TrustList.load(path)
    message = str(err.value)
    assert "writable by other users (mode 666)" in message and f"chmod 600 {path}" in message


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "expected an object"),
        ('{"keys": [{"key": "short"}]}', "entry 1 has no valid Z85 'key'"),
        ('{"keys": [42]}', "entry 1 has no valid Z85 'key'"),
    ],
)
def test_a_corrupt_list_is_one_clear_line(tmp_path: Path, content: str, why: str) -> None:
    path = trust_path(tmp_path)
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(TrustError) as err:
        TrustList.load(path)
    assert why in str(err.value) and "p2pai keys trust" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = trust_path(tmp_path)
    path.write_text('{"version": 2, "keys": []}')
    path.chmod(0o600)
    with pytest.raises(TrustError, match="upgrade p2pai"):
        TrustList.load(path)


def test_key_sources(tmp_path: Path) -> None:
    key = new_key()
    assert parse_key_source(key) == [(key, None)]
    assert parse_key_source(f"  {key}\n") == [(key, None)]

    # Another node's public identity file.
    ident = load_or_create(tmp_path / "other")
    assert parse_key_source(str(tmp_path / "other" / "identity.key")) == [(ident.public_text, None)]

    # The output of `p2pai keys show --export` (keys may hold '#' and '=').
    odd = "0#" + key[2:]  # a valid key (a key can never start with '#': it would overflow)
    assert peer_id_for(odd)
    exported = tmp_path / "laptop.keys"
    exported.write_text(f"# p2pai public keys of laptop\n{key} laptop\n{odd} laptop/client\n\n")
    exported.chmod(0o644)
    assert read_key_file(exported) == [(key, "laptop"), (odd, "laptop/client")]


@pytest.mark.parametrize(
    ("content", "mode", "why"),
    [
        ("", 0o644, "holds no public key"),
        ("not-a-key here\n", 0o644, "is not a Z85 public key"),
        ("KEY\n", 0o666, "writable by other users"),
        ('curve\n    secret-key = "x"\n', 0o600, "holds a secret key"),
        ('    public-key = "tooshort"\n', 0o644, "not a valid Z85 public key"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: str, mode: int, why: str) -> None:
    path = tmp_path / "key.txt"
    path.write_text(content.replace("KEY", new_key()))
    path.chmod(mode)
    with pytest.raises(TrustError) as err:
        parse_key_source(str(path))
    assert why in str(err.value) and "\n" not in str(err.value)


def test_the_secret_identity_file_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    with pytest.raises(TrustError, match="holds a secret key: never share it"):
        parse_key_source(str(tmp_path / "identity.key_secret"))


def test_neither_key_nor_file(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="neither a Z85 public key"):
        parse_key_source(str(tmp_path / "nope.key"))
    with pytest.raises(TrustError, match="not a valid Z85 public key"):
        parse_key_source("x" * 39 + "'")


def test_select_and_remove(tmp_path: Path) -> None:
    trust = TrustList(trust_path(tmp_path))
    a, b, c = new_key(), new_key(), new_key()
    trust.add(a, "laptop")
    trust.add(b, "laptop/client")
    trust.add(c, "Laptop/client")
    assert [e.key for e in trust.select(a)] == [a]
    assert [e.key for e in trust.select(peer_id_for(b))] == [b]
    assert [e.key for e in trust.select("LAPTOP/CLIENT")] == [b, c]  # every entry of that name
    assert [e.key for e in trust.select(peer_id_for(a)[:8])] == [a]
    assert trust.select("zz") == [] and trust.select("abc") == []  # too short for a prefix
    removed = trust.remove("laptop")
    assert [e.key for e in removed] == [a] and trust.keys() == {b, c}
    with pytest.raises(TrustError, match="no trusted key matches"):
        trust.remove("laptop")


def test_an_ambiguous_prefix_is_refused(tmp_path: Path) -> None:
    trust = TrustList(trust_path(tmp_path))
    by_prefix: dict[str, str] = {}
    while True:  # two keys whose peer ids share 4 characters (a few hundred tries)
        key = new_key()
        prefix = peer_id_for(key)[:4]
        if prefix in by_prefix:
            break
        by_prefix[prefix] = key
    trust.add(by_prefix[prefix])
    trust.add(key)
    with pytest.raises(TrustError, match="give more of the peer id"):
        trust.select(prefix)
    assert [e.key for e in trust.select(peer_id_for(key))] == [key]


def test_local_keys_and_base_dir(tmp_path: Path) -> None:
    assert local_keys(tmp_path) == set()
    node = load_or_create(tmp_path)
    client = load_or_create(tmp_path / "client")
    assert local_keys(tmp_path) == {node.public_text, client.public_text}
    config = Config(data_dir=tmp_path / "client", name="x")
    assert base_dir_of(config) == tmp_path / "client"
    config.base_dir = tmp_path
    assert base_dir_of(config) == tmp_path


def test_config_trust_values() -> None:
    Config(name="x", trust="allowlist").validate()
    with pytest.raises(ConfigError, match="use 'open' or 'allowlist'"):
        Config(name="x", trust="everyone").validate()
