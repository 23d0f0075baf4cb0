"""``p2pai keys`` and ``p2pai reputation`` from the shell (click's runner, no network)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import zmq
from click.testing import CliRunner, Result

from netcore.cli.root import cli
from netcore.trust.store import ReputationDelta, Store, db_path
from netcore.wire.addresses import peer_id_for


def p2pai(*args: str) -> Result:
    env = {"P2PAI_DATA_DIR": "", "P2PAI_CONFIG": ""}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_error_line(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p2pai: error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_show_trust_list_revoke_between_two_machines(tmp_path: Path) -> None:
    laptop, server = tmp_path / "laptop", tmp_path / "server"
    shown = p2pai("keys", "show", "--data-dir", str(laptop), "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    roles = {i["role"]: i for i in data["identities"]}
    assert set(roles) == {"node", "client"}
    for ident in roles.values():
        assert ident["peer_id"] == peer_id_for(ident["key"])
    assert (laptop / "identity.key_secret").exists() and (
        laptop / "client" / "identity.key"
    ).exists()

    text = p2pai("keys", "show", "--data-dir", str(laptop))
    assert roles["node"]["peer_id"] in text.stdout and "p2pai keys trust" in text.stdout

    exported = p2pai("keys", "show", "--data-dir", str(laptop), "--export", "--name", "laptop")
    keyfile = tmp_path / "laptop.keys"
    keyfile.write_text(exported.stdout)
    keyfile.chmod(0o644)
    trusted = p2pai("keys", "trust", str(keyfile), "--data-dir", str(server))
    assert trusted.exit_code == 0, trusted.output
    assert trusted.stdout.count("trusted ") == 2 and "(laptop/client)" in trusted.stdout
    again = p2pai("keys", "trust", roles["node"]["key"], "--data-dir", str(server))
    assert again.stdout.startswith("already trusted")

    listed = json.loads(p2pai("keys", "list", "--data-dir", str(server), "--json").stdout)
    assert {e["name"] for e in listed} == {"laptop", "laptop/client"}
    table = p2pai("keys", "list", "--data-dir", str(server)).stdout
    assert "PEER ID" in table and roles["client"]["peer_id"] in table

    revoked = p2pai("keys", "revoke", "laptop/client", "--data-dir", str(server))
    assert revoked.exit_code == 0 and roles["client"]["peer_id"] in revoked.stdout
    listed = json.loads(p2pai("keys", "list", "--data-dir", str(server), "--json").stdout)
    assert [e["name"] for e in listed] == ["laptop"]


def test_trust_by_key_with_a_name_and_own_keys(tmp_path: Path) -> None:
    key = zmq.curve_keypair()[0].decode()
    done = p2pai("keys", "trust", key, "--name", "pi-4", "--data-dir", str(tmp_path))
    assert done.exit_code == 0 and f"trusted {peer_id_for(key)} (pi-4)" in done.stdout
    own = json.loads(p2pai("keys", "show", "--data-dir", str(tmp_path), "--json").stdout)
    mine = own["identities"][0]["key"]
    note = p2pai("keys", "trust", mine, "--data-dir", str(tmp_path))
    assert "always trusted anyway" in note.stdout
    table = p2pai("keys", "list", "--data-dir", str(tmp_path)).stdout
    assert "always trusted: this machine's own identities" in table


def test_keys_that_look_like_options(tmp_path: Path) -> None:
    key = "-" + zmq.curve_keypair()[0].decode()[1:]  # Z85 keys may start with '-'
    done = p2pai("keys", "trust", key, "--name", "dash", "--data-dir", str(tmp_path))
    assert done.exit_code == 0, done.output
    assert p2pai("keys", "revoke", key, "--data-dir", str(tmp_path)).exit_code == 0
    # One key in 7,225 starts with "-h", click's short help option (seen once in CI).
    key = "-h" + zmq.curve_keypair()[0].decode()[2:]
    done = p2pai("keys", "trust", key, "--name", "dash-h", "--data-dir", str(tmp_path))
    assert done.exit_code == 0 and f"trusted {peer_id_for(key)} (dash-h)" in done.stdout
    assert p2pai("keys", "revoke", key, "--data-dir", str(tmp_path)).exit_code == 0


def test_errors_are_one_line(tmp_path: Path) -> None:
    one_error_line(p2pai("keys", "trust", "not-a-key", "--data-dir", str(tmp_path)), "neither")
    one_error_line(
        p2pai("keys", "revoke", "nobody", "--data-dir", str(tmp_path)), "no trusted key matches"
    )
    secret = tmp_path / "s"
    p2pai("keys", "show", "--data-dir", str(secret))
    one_error_line(
        p2pai("keys", "trust", str(secret / "identity.key_secret"), "--data-dir", str(tmp_path)),
        "holds a secret key",
    )
    (tmp_path / "trusted.json").write_text("{}")
    (tmp_path / "trusted.json").chmod(0o666)
    one_error_line(p2pai("keys", "list", "--data-dir", str(tmp_path)), "writable by other users")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a dir should be")
    one_error_line(p2pai("keys", "show", "--data-dir", str(blocked / "sub")), str(blocked))


def test_reputation_show_and_reset(tmp_path: Path) -> None:
    one_error_line(
        p2pai("reputation", "show", "--data-dir", str(tmp_path)), "no reputation recorded"
    )
    liar_key, good_key, new_key = (zmq.curve_keypair()[0].decode() for _ in range(3))
    liar, good, new = peer_id_for(liar_key), peer_id_for(good_key), peer_id_for(new_key)
    store = Store.open(db_path(tmp_path))
    store.add_reputation(
        {
            liar_key: ReputationDelta(liar, "liar", {"tasks_ok": 3, "votes_lost": 3}),
            good_key: ReputationDelta(
                good, "good", {"tasks_ok": 50, "votes_won": 20, "spot_passed": 3}, 7200.0
            ),
            new_key: ReputationDelta(new, "new", {"tasks_ok": 5}),
        }
    )
    store.close()
    rows = {r["peer_id"]: r for r in json.loads(
        p2pai("reputation", "show", "--data-dir", str(tmp_path), "--json").stdout
    )}  # fmt: skip
    assert rows[liar]["state"] == "quarantined" and "lost 3 of 3 votes" in rows[liar]["reason"]
    assert rows[liar]["offences"] == 1 and rows[liar]["quarantined_until"] > time.time()
    assert rows[good]["state"] == "ok" and rows[good]["score"] > 0.9
    assert rows[new]["state"] == "probation", "no blind check passed yet"
    table = p2pai("reputation", "show", "--data-dir", str(tmp_path)).stdout
    assert "quarantined until " in table and "(offence 1): score" in table
    assert "3/0" not in table.split(good)[0]

    one_error_line(p2pai("reputation", "reset", "--data-dir", str(tmp_path)), "--all")
    one_error_line(p2pai("reputation", "reset", "nobody", "--data-dir", str(tmp_path)), "nobody")
    done = p2pai("reputation", "reset", liar[:8], "--data-dir", str(tmp_path))
    assert done.exit_code == 0 and "forgot the reputation of 1 worker" in done.stdout
    rows = {r["peer_id"]: r for r in json.loads(
        p2pai("reputation", "show", "--data-dir", str(tmp_path), "--json").stdout
    )}  # fmt: skip
    assert set(rows) == {good, new}
    assert (
        "of 2 worker" in p2pai("reputation", "reset", "--all", "--data-dir", str(tmp_path)).stdout
    )


def test_trust_a_node_key_file_by_its_name_and_revoke_by_name(tmp_path: Path) -> None:
    """`keys trust w1/identity.key` stores the name the node w1 runs under (issue 15, item 11)."""
    import asyncio

    from model_helpers import loopback_config, unique_network

    from netcore.node import Node

    async def start_and_stop() -> None:
        node = Node(loopback_config(tmp_path, "w1", unique_network("keyname")))
        await node.start()
        await node.stop()

    asyncio.run(start_and_stop())
    server = tmp_path / "server"
    trusted = p2pai(
        "keys", "trust", str(tmp_path / "w1" / "identity.key"), "--data-dir", str(server)
    )
    assert trusted.exit_code == 0 and "(w1)" in trusted.stdout, trusted.output
    revoked = p2pai("keys", "revoke", "w1", "--data-dir", str(server))
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout, revoked.output
    assert json.loads(p2pai("keys", "list", "--data-dir", str(server), "--json").stdout) == []
    # An old certificate without a name: trusted, with a hint how to name it.
    bare = tmp_path / "bare.key"
    key = zmq.curve_keypair()[0].decode()
    bare.write_text(f'metadata\ncurve\n    public-key = "{key}"\n')
    bare.chmod(0o644)
    hinted = p2pai("keys", "trust", str(bare), "--data-dir", str(server))
    assert hinted.exit_code == 0 and "--name" in hinted.stdout, hinted.output


def test_a_renamed_node_rewrites_the_name_in_its_public_key_file(tmp_path: Path) -> None:
    from netcore.net.identity import load_or_create
    from netcore.trust.keys import read_key_file

    first = load_or_create(tmp_path, "w1")
    assert read_key_file(tmp_path / "identity.key") == [(first.public_text, "w1")]
    again = load_or_create(tmp_path, 'w"2\x07')
    assert again == first
    assert read_key_file(tmp_path / "identity.key") == [(first.public_text, "w2")]
    assert load_or_create(tmp_path) == first  # no name given: the file keeps its name
    assert read_key_file(tmp_path / "identity.key") == [(first.public_text, "w2")]
