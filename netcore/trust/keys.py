"""Trusted keys: the allowlist a node applies with ``--trust allowlist``.

Where things live (one *base* data dir per user and machine, ``--data-dir``):

* ``<base>/identity.key_secret`` + ``identity.key``: the node's identity (``p2pai node``,
  the console);
* ``<base>/client/``: the identity of the short-lived client commands (``submit``, ``peers``),
  kept apart so that a client can run beside the node without being its clone;
* ``<base>/trusted.json``: the trust list, shared by both. Client commands read it from their
  parent, the base dir (``Config.base_dir``);
* ``<base>/p2pai.db``: the SQLite store (reputation), also shared (:mod:`netcore.trust.store`).

A node always trusts its own key and the two identities of its own base dir, so that a
client on the same machine can use the local node under ``allowlist``.

The trust list is JSON, written atomically with mode 0600; a list that others may write,
or that does not parse, is refused with one line that says how to fix it. Key files given to
``p2pai keys trust`` are checked the same way, and a file holding a *secret* key is refused.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netcore.net.identity import PUBLIC_FILE, SECRET_FILE
from netcore.wire.addresses import is_z85_key, peer_id_for

TRUST_FILE = "trusted.json"
CLIENT_DIR = "client"
FORMAT_VERSION = 1
MAX_KEY_FILE = 64 * 1024
MIN_PREFIX = 4
"""A peer id prefix shorter than this never selects a key (too easy to hit by accident)."""


class TrustError(Exception):
    """The trust list or a key file cannot be used; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class TrustEntry:
    key: str
    """Z85 public key, 40 characters."""
    peer_id: str
    name: str = ""
    added: float = 0.0
    """Unix time it was trusted."""

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "peer_id": self.peer_id, "name": self.name, "added": self.added}


def base_dir_of(config: Any) -> Path:
    """The base data dir of a node's config: ``base_dir`` if set, else its ``data_dir``."""
    base = getattr(config, "base_dir", None)
    return Path(base) if base is not None else Path(config.data_dir)


def trust_path(base_dir: Path) -> Path:
    return Path(base_dir) / TRUST_FILE


def _check_not_writable_by_others(path: Path, st: os.stat_result, what: str, fix_mode: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise TrustError(f"{what} {path} is not a regular file")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TrustError(
            f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}), so "
            f"anyone could have changed it; check its contents, then run: chmod {fix_mode} {path}"
        )
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid not in (getuid(), 0):
        raise TrustError(
            f"{what} {path} belongs to another user (uid {st.st_uid}); check its contents, "
            f"then take it over: cp it to a new file of yours"
        )


# --- key sources -----------------------------------------------------------------------------


def read_key_file(path: Path) -> list[tuple[str, str | None]]:
    """Public keys in a file, each with the name written beside it (if any).

    Accepts a ZeroMQ certificate (``public-key = "..."``, e.g. another node's
    ``identity.key``) or text lines ``<z85 key> [name]`` (the output of
    ``p2pai keys show --export``); ``#`` starts a comment.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise TrustError(f"cannot read key file {path}: {exc.strerror}") from None
    _check_not_writable_by_others(path, st, "key file", "644")
    if st.st_size > MAX_KEY_FILE:
        raise TrustError(f"key file {path} is {st.st_size} bytes: not a key file (at most 64 KiB)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrustError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TrustError(f"key file {path} is not text: expected Z85 public keys") from None
    found: list[tuple[str, str | None]] = []
    cert_name: str | None = None  # a certificate's metadata `name = "w1"` (netcore.net.identity)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        lowered = stripped.lower()
        if lowered.startswith("name") and "=" in stripped and not is_z85_key(stripped[:40]):
            cert_name = _clean_name(stripped.partition("=")[2].strip().strip("'\""))
            continue
        if lowered.startswith("secret-key"):
            raise TrustError(
                f"key file {path} holds a secret key: never share it; give the public file "
                f"({PUBLIC_FILE}) or the output of `p2pai keys show --export` instead"
            )
        if lowered.startswith("public-key"):
            value = stripped.partition("=")[2].strip().strip("'\"")
            if not is_z85_key(value):
                raise TrustError(f"key file {path}, line {number}: not a valid Z85 public key")
            found.append((value, cert_name))
            continue
        token, _, rest = stripped.partition(" ")
        if not is_z85_key(token):
            # Z85 keys may hold '#' and '=': only a line that is not a key is a comment,
            # a certificate section or a metadata line.
            if stripped.startswith("#") or lowered in ("metadata", "curve") or "=" in stripped:
                continue
            raise TrustError(
                f"key file {path}, line {number}: {token[:48]!r} is not a Z85 public key "
                "(40 characters)"
            )
        found.append((token, _clean_name(rest.strip().lstrip("#"))))
    if not found:
        raise TrustError(
            f"key file {path} holds no public key (expected Z85 keys, one a line, "
            "or a ZeroMQ certificate)"
        )
    return found


def _clean_name(text: str) -> str | None:
    """A name from a key file, shown in lists: printable characters, at most 63."""
    clean = "".join(c for c in text if c.isprintable()).strip()
    return clean[:63] or None


def parse_key_source(source: str) -> list[tuple[str, str | None]]:
    """A Z85 key given on the command line, or a file of keys (see :func:`read_key_file`)."""
    text = source.strip()
    if is_z85_key(text):
        return [(text, None)]
    path = Path(source).expanduser()
    if path.exists():
        return read_key_file(path)
    if len(text) == 40:
        raise TrustError(f"{text!r} is not a valid Z85 public key (and no such file)")
    raise TrustError(
        f"{source!r} is neither a Z85 public key (40 characters) nor an existing key file"
    )


def public_key_of(data_dir: Path) -> str | None:
    """The public key of the identity in ``data_dir`` (from its public file), if it has one."""
    path = Path(data_dir) / PUBLIC_FILE
    if not (Path(data_dir) / SECRET_FILE).exists():
        return None
    try:
        for line in path.read_text("ascii", errors="replace").splitlines():
            stripped = line.strip()
            if stripped.startswith("public-key"):
                value = stripped.partition("=")[2].strip().strip("'\"")
                return value if is_z85_key(value) else None
    except OSError:
        return None
    return None


def local_keys(base_dir: Path) -> set[str]:
    """The keys of the node and client identities of this base dir (always trusted)."""
    found = set()
    for directory in (Path(base_dir), Path(base_dir) / CLIENT_DIR):
        key = public_key_of(directory)
        if key:
            found.add(key)
    return found


# --- the list --------------------------------------------------------------------------------


class TrustList:
    """The trusted keys of one base dir, in ``<base>/trusted.json``."""

    def __init__(self, path: Path, entries: Iterable[TrustEntry] = ()) -> None:
        self.path = path
        self.entries: list[TrustEntry] = list(entries)
        self.mtime_ns = 0

    @classmethod
    def load(cls, path: Path) -> TrustList:
        """Read the list (an absent file is an empty list); raise :class:`TrustError`."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise TrustError(f"cannot read trust list {path}: {exc.strerror}") from None
        _check_not_writable_by_others(path, st, "trust list", "600")
        corrupt = (
            f"trust list {path} is corrupt ({{why}}); fix it, or move it away and trust the "
            "keys again with `p2pai keys trust`"
        )
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise TrustError(f"cannot read trust list {path}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise TrustError(corrupt.format(why=f"not JSON: {exc}")) from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise TrustError(corrupt.format(why="expected an object with a 'keys' list"))
        if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise TrustError(
                f"trust list {path} has format version {data.get('version')!r}; this p2pai "
                f"reads version {FORMAT_VERSION}: upgrade p2pai"
            )
        entries = []
        for index, item in enumerate(data["keys"]):
            key = item.get("key") if isinstance(item, dict) else None
            if not isinstance(key, str) or not is_z85_key(key):
                raise TrustError(corrupt.format(why=f"entry {index + 1} has no valid Z85 'key'"))
            name = item.get("name", "")
            added = item.get("added", 0.0)
            entries.append(
                TrustEntry(
                    key=key,
                    peer_id=peer_id_for(key),
                    name=name[:63] if isinstance(name, str) else "",
                    added=float(added) if isinstance(added, (int, float)) else 0.0,
                )
            )
        trust = cls(path, entries)
        trust.mtime_ns = st.st_mtime_ns
        return trust

    def save(self) -> None:
        """Write atomically, mode 0600 (creating the base dir if needed)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            data = {"version": FORMAT_VERSION, "keys": [e.to_json() for e in self.entries]}
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            self.mtime_ns = self.path.stat().st_mtime_ns
        except OSError as exc:
            raise TrustError(f"cannot write trust list {self.path}: {exc.strerror}") from None

    def keys(self) -> set[str]:
        return {e.key for e in self.entries}

    def get(self, key: str) -> TrustEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def add(self, key: str, name: str = "") -> tuple[TrustEntry, bool]:
        """Trust ``key`` (or rename it); returns the entry and whether it is new."""
        if not is_z85_key(key):
            raise TrustError(f"{key!r} is not a valid Z85 public key")
        name = name[:63]
        for index, entry in enumerate(self.entries):
            if entry.key == key:
                if name and name != entry.name:
                    entry = TrustEntry(entry.key, entry.peer_id, name, entry.added)
                    self.entries[index] = entry
                return entry, False
        entry = TrustEntry(key, peer_id_for(key), name, round(time.time(), 3))
        self.entries.append(entry)
        return entry, True

    def select(self, selector: str) -> list[TrustEntry]:
        """Entries a user means by ``selector``: a key, a peer id (or a unique prefix of at
        least 4 characters) or a name (every entry with that name)."""
        text = selector.strip()
        exact = [e for e in self.entries if text in (e.key, e.peer_id)]
        if exact:
            return exact
        named = [e for e in self.entries if e.name and e.name.casefold() == text.casefold()]
        if named:
            return named
        if len(text) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in text.lower()):
            prefixed = [e for e in self.entries if e.peer_id.startswith(text.lower())]
            if len(prefixed) > 1:
                ids = ", ".join(e.peer_id for e in prefixed[:5])
                raise TrustError(
                    f"{selector!r} matches {len(prefixed)} trusted keys ({ids}): give more of the peer id"
                )
            return prefixed
        return []

    def remove(self, selector: str) -> list[TrustEntry]:
        """Remove what :meth:`select` finds; raise :class:`TrustError` if nothing matches."""
        chosen = self.select(selector)
        if not chosen:
            raise TrustError(
                f"no trusted key matches {selector!r} (give a key, a peer id or a name; "
                "see `p2pai keys list`)"
            )
        gone = {e.key for e in chosen}
        self.entries = [e for e in self.entries if e.key not in gone]
        return chosen


def changed_on_disk(trust: TrustList) -> bool:
    """True when the file's mtime differs from the loaded one (it was edited or removed)."""
    try:
        return trust.path.stat().st_mtime_ns != trust.mtime_ns
    except FileNotFoundError:
        return trust.mtime_ns != 0
    except OSError:
        return False
