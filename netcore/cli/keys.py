"""``p2pai keys show|trust|revoke|list`` and ``p2pai reputation show|reset``.

Both work on the *base* data dir (``--data-dir``, where the node keeps its identity): the
trust list and the store are shared with the client commands, which run in
``<base>/client`` (see :mod:`netcore.trust.keys`). Registered on ``p2pai`` at the end of
:mod:`netcore.cli`.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import time
from pathlib import Path
from typing import Any

import click

from netcore.cli.common import CliError, data_dir_option
from netcore.config.settings import default_data_dir, default_name
from netcore.net.identity import IdentityError, load_or_create
from netcore.trust.keys import (
    CLIENT_DIR,
    TrustError,
    TrustList,
    local_keys,
    parse_key_source,
    trust_path,
)
from netcore.trust.reputation import FIELDS, describe_row
from netcore.trust.store import Store, StoreError, db_path
from netcore.wire.addresses import peer_id_for

_data_dir_option = data_dir_option("The base data dir")


KEY_ARGUMENT = {"ignore_unknown_options": True, "help_option_names": ["--help"]}
"""For commands whose argument may be a Z85 key: keys may start with '-' (then they are not
options), even with '-h' (so only --help asks for help here)."""


def _load_trust(base: Path) -> TrustList:
    try:
        return TrustList.load(trust_path(base))
    except TrustError as exc:
        raise CliError(str(exc)) from None


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix)) if unix else "-"


# --- keys ------------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """This machine's keys, and the keys it trusts (for --trust allowlist).

    A machine has two identities in its data dir: the node's (`p2pai node`, the console) and
    the client's (`p2pai submit`, `p2pai peers`, in <data-dir>/client). A node with
    `--trust allowlist` accepts connections only from keys in <data-dir>/trusted.json (and its
    own two), and sends tasks only to them. Running nodes pick up changes within a second.
    """


@keys.command("show")
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.option("--export", is_flag=True,
              help="Print only 'KEY NAME' lines: save them to a file and give it to "
              "`p2pai keys trust FILE` on another machine.")  # fmt: skip
@click.option("--name", default=None, help="Name to export under [default: the host name].")
def show(data_dir: Path | None, as_json: bool, export: bool, name: str | None) -> None:
    """Print this machine's peer ids and public keys, to share (creates them if needed)."""
    base = data_dir or default_data_dir()
    try:
        node_identity = load_or_create(base)
        client_identity = load_or_create(base / CLIENT_DIR)
    except IdentityError as exc:
        raise CliError(str(exc)) from None
    label = (name or default_name())[:56]
    rows = [
        ("node", node_identity.peer_id, node_identity.public_text, label),
        ("client", client_identity.peer_id, client_identity.public_text, f"{label}/client"),
    ]
    if export:
        click.echo(f"# p2pai public keys of {label}: `p2pai keys trust THIS-FILE`")
        for _, _, key, key_name in rows:
            click.echo(f"{key} {key_name}")
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "data_dir": str(base),
                    "identities": [
                        {"role": role, "peer_id": pid, "key": key, "name": key_name}
                        for role, pid, key, key_name in rows
                    ],
                }
            )
        )
        return
    for role, pid, key, _ in rows:
        click.echo(f"{role:<7} peer id {pid}  key {key}")
    click.echo(f"data dir: {base}")
    click.echo("To let another machine with --trust allowlist use this one, run there:")
    for _, _, key, key_name in rows:
        click.echo(f"  p2pai keys trust {shlex.quote(key)} --name {shlex.quote(key_name)}")
    click.echo("(or: p2pai keys show --export > this.keys; copy it; p2pai keys trust this.keys)")


@keys.command("trust", context_settings=KEY_ARGUMENT)
@click.argument("source")
@click.option(
    "--name", default="", help="A name to show and to revoke by [default: from the file]."
)
@_data_dir_option
def trust(source: str, name: str, data_dir: Path | None) -> None:
    """Trust a key: SOURCE is a Z85 public key (quote it) or a file of keys.

    A file may be another node's identity.key (it carries the name that node runs under, so
    `p2pai keys revoke NAME` finds it) or the output of `p2pai keys show --export`.
    A file other users may write, or one that holds a secret key, is refused.
    """
    base = data_dir or default_data_dir()
    try:
        found = parse_key_source(source)
    except TrustError as exc:
        raise CliError(str(exc)) from None
    trust_list = _load_trust(base)
    own = local_keys(base)
    lines = []
    for key, file_name in found:
        entry, created = trust_list.add(key, name or file_name or "")
        shown = f"{entry.peer_id} ({entry.name})" if entry.name else entry.peer_id
        note = " (one of this machine's own keys: always trusted anyway)" if key in own else ""
        if not entry.name and not note:
            note = " (no name in the file: add --name NAME to revoke it by name)"
        lines.append(f"{'trusted' if created else 'already trusted'} {shown}{note}")
    try:
        trust_list.save()
    except TrustError as exc:
        raise CliError(str(exc)) from None
    for line in lines:
        click.echo(line)


@keys.command("revoke", context_settings=KEY_ARGUMENT)
@click.argument("selector")
@_data_dir_option
def revoke(selector: str, data_dir: Path | None) -> None:
    """Stop trusting a key: give the key, its peer id (or a unique prefix) or its name."""
    base = data_dir or default_data_dir()
    trust_list = _load_trust(base)
    try:
        removed = trust_list.remove(selector)
        trust_list.save()
    except TrustError as exc:
        raise CliError(str(exc)) from None
    for entry in removed:
        shown = f"{entry.peer_id} ({entry.name})" if entry.name else entry.peer_id
        click.echo(f"revoked {shown}")
    click.echo("running nodes with --trust allowlist drop it within a second")


@keys.command("list")
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_keys(data_dir: Path | None, as_json: bool) -> None:
    """List the trusted keys."""
    base = data_dir or default_data_dir()
    trust_list = _load_trust(base)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in trust_list.entries]))
        return
    own = sorted(local_keys(base))
    if not trust_list.entries:
        click.echo(f"no trusted keys in {trust_list.path} (add one with `p2pai keys trust`)")
    else:
        click.echo(f"{'PEER ID':<20}  {'NAME':<20} {'ADDED':<16}  KEY")
        for e in trust_list.entries:
            click.echo(f"{e.peer_id:<20}  {e.name[:20] or '-':<20} {_when(e.added):<16}  {e.key}")
    if own:
        ids = ", ".join(peer_id_for(k) for k in own)
        click.echo(f"always trusted: this machine's own identities ({ids})")


# --- reputation ------------------------------------------------------------------------------


def _open_store(base: Path) -> Store:
    if not db_path(base).exists():
        raise CliError(f"no reputation recorded yet ({db_path(base)} does not exist)")
    try:
        return Store.open(db_path(base))
    except StoreError as exc:
        raise CliError(str(exc)) from None


@click.group()
def reputation() -> None:
    """What this machine's requesters saw of each worker (in <data-dir>/p2pai.db).

    Tasks done, failures, timeouts, corrupt results, votes won and lost (--redundancy),
    spot checks (--spot-check) and uptime give a score (recent evidence weighs more: half
    after a day); under 0.5, with enough evidence, the worker is quarantined: sent no task
    for 10 minutes, twice as long for each further offence, then on probation again (a
    bounded share of the work until it passes 3 blind checks).
    """


@reputation.command("show")
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def show_reputation(data_dir: Path | None, as_json: bool) -> None:
    """List every worker's counters, score and state."""
    base = data_dir or default_data_dir()
    store = _open_store(base)
    try:
        rows = store.load_reputation()
    except sqlite3.Error as exc:
        raise CliError(f"cannot read {store.path}: {exc}") from None
    finally:
        store.close()
    out: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: r.last_seen, reverse=True):
        out.append(
            {
                "peer_id": row.peer_id,
                "name": row.name,
                "key": row.key,
                **describe_row(row),  # score, state, reason, quarantined_at/_until, offences
                **{k: row.counts.get(k, 0) for k in FIELDS},
                "uptime_s": round(row.uptime_s, 1),
                "last_seen": row.last_seen,
            }
        )
    if as_json:
        click.echo(json.dumps(out))
        return
    if not out:
        click.echo("no reputation recorded yet")
        return
    click.echo(
        f"{'PEER ID':<20}  {'NAME':<14} {'SCORE':>5}  {'DONE':>6} {'FAIL':>5} {'T/O':>5} "
        f"{'VOTES +/-':>10} {'SPOT +/-':>9}  STATE"
    )
    for r in out:
        votes = f"{r['votes_won']}/{r['votes_lost']}"
        spots = f"{r['spot_passed']}/{r['spot_failed']}"
        state = str(r["state"])
        if r["reason"]:
            until = r["quarantined_until"]
            ends = f" until {_when(until)}" if until else ""
            state = f"quarantined{ends} (offence {r['offences']}): {r['reason']}"
        click.echo(
            f"{r['peer_id']:<20}  {r['name'][:14] or '-':<14} {r['score']:>5.2f}  "
            f"{r['tasks_ok']:>6} {r['failures'] + r['corrupt']:>5} {r['timeouts']:>5} "
            f"{votes:>10} {spots:>9}  {state}"
        )


@reputation.command("reset", context_settings=KEY_ARGUMENT)
@click.argument("selector", required=False)
@click.option("--all", "everyone", is_flag=True, help="Forget every worker's reputation.")
@_data_dir_option
def reset_reputation(selector: str | None, everyone: bool, data_dir: Path | None) -> None:
    """Forget a worker's reputation (lifting its quarantine): give its peer id (or a unique
    prefix), key or name."""
    if not selector and not everyone:
        raise CliError("give a peer id, key or name, or --all")
    base = data_dir or default_data_dir()
    store = _open_store(base)
    try:
        if everyone:
            removed = store.reset_reputation(None)
        else:
            assert selector is not None
            rows = store.load_reputation()
            text = selector.strip()
            chosen = [r for r in rows if text in (r.key, r.peer_id)]
            chosen = chosen or [r for r in rows if r.name and r.name.casefold() == text.casefold()]
            if not chosen and len(text) >= 4:
                chosen = [r for r in rows if r.peer_id.startswith(text.lower())]
                if len(chosen) > 1:
                    raise CliError(
                        f"{selector!r} matches {len(chosen)} peers: give more of the peer id"
                    )
            if not chosen:
                raise CliError(
                    f"no reputation recorded for {selector!r} (see `p2pai reputation show`)"
                )
            removed = store.reset_reputation([r.key for r in chosen])
    except sqlite3.Error as exc:
        raise CliError(f"cannot update {store.path}: {exc}") from None
    finally:
        store.close()
    click.echo(f"forgot the reputation of {removed} worker(s); running nodes follow within 2 s")
