"""The node's identity: one CURVE keypair kept in the data directory, and its ``peer_id``.

The secret key lives in ``<data_dir>/identity.key_secret`` in ZeroMQ's certificate format
(readable by ``zmq.auth.load_certificate``), mode 0600; the public half beside it in
``identity.key``. A damaged or foreign file is never overwritten: the user gets one line
saying what is wrong and how to fix it.

The public file also carries the node's name in its certificate metadata (``name = "w1"``),
so that ``p2pai keys trust w1/identity.key`` on another machine knows what to call the key
(and ``p2pai keys revoke w1`` finds it).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq

from netcore.wire.addresses import is_z85_key, peer_id_for

SECRET_FILE = "identity.key_secret"
PUBLIC_FILE = "identity.key"


class IdentityError(Exception):
    """The key files cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Identity:
    public_key: bytes
    """Z85 public key, 40 ASCII bytes."""
    secret_key: bytes
    """Z85 secret key, 40 ASCII bytes."""

    @property
    def peer_id(self) -> str:
        return peer_id_for(self.public_key)

    @property
    def public_text(self) -> str:
        return self.public_key.decode("ascii")


_BANNER = "#   ****  p2pai node identity: CURVE {kind} certificate  ****\n#   Do not share the secret file.\n"


def cert_name(name: str) -> str:
    """``name`` as it may stand in a certificate's metadata: printable, no quotes, ≤ 63 bytes."""
    clean = "".join(c for c in name if c.isprintable() and c not in "\"'\\").strip()
    return clean.encode("utf-8")[:63].decode("utf-8", errors="ignore")


def _write_cert(path: Path, public: bytes, secret: bytes | None, name: str | None = None) -> None:
    lines = [_BANNER.format(kind="secret" if secret else "public"), "metadata\n"]
    if name:
        lines.append(f'    name = "{cert_name(name)}"\n')
    lines.append("curve\n")
    lines.append(f'    public-key = "{public.decode("ascii")}"\n')
    if secret:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"\n')
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    if not secret:
        os.chmod(path, 0o644)


def _read_cert(path: Path) -> tuple[bytes | None, bytes | None, str | None]:
    public = secret = None
    name: str | None = None
    try:
        with open(path, "rb") as fh:
            for raw in fh.read(64 * 1024).splitlines():
                line = raw.strip()
                # partition, not split: a truncated line may have no '=' at all
                if line.startswith(b"public-key"):
                    public = line.partition(b"=")[2].strip(b" \t'\"")
                elif line.startswith(b"secret-key"):
                    secret = line.partition(b"=")[2].strip(b" \t'\"")
                elif line.startswith(b"name") and b"=" in line:
                    name = line.partition(b"=")[2].strip(b" \t'\"").decode("utf-8", "replace")
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
    return public, secret, name


def load_or_create(data_dir: Path, name: str | None = None) -> Identity:
    """Load the node's keypair from ``data_dir``, creating it (and the dir) on first start.

    With ``name``, the public file carries it (rewritten when the node's name changed).
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise IdentityError(
            f"cannot create data dir {data_dir}: {exc.strerror} (choose another with --data-dir)"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise IdentityError(
            f"data dir {data_dir} is not writable (fix its permissions or use --data-dir)"
        )
    secret_path = data_dir / SECRET_FILE
    if not secret_path.exists():
        public, secret = zmq.curve_keypair()
        _write_cert(secret_path, public, secret)
        _write_cert(data_dir / PUBLIC_FILE, public, None, name)
        return Identity(public, secret)
    ident = load(secret_path)
    public_path = data_dir / PUBLIC_FILE
    if not public_path.exists():  # a first start cut short: the public half derives from the secret
        _write_cert(public_path, ident.public_key, None, name)
        return ident
    written_public, _, written_name = _read_cert(public_path)
    if written_public != ident.public_key:
        raise IdentityError(
            f"key file {public_path} does not match {secret_path} (public key differs); "
            "move it away and it is written again from the secret key"
        )
    if name and written_name != cert_name(name):
        # The name is a convenience for `keys trust`: a read-only file keeps its old one.
        with contextlib.suppress(OSError):
            _write_cert(public_path, ident.public_key, None, name)
    return ident


def load(secret_path: Path) -> Identity:
    """Load and check a secret key file; raise :class:`IdentityError` with the fix."""
    try:
        mode = secret_path.stat().st_mode
    except OSError as exc:
        raise IdentityError(f"cannot read key file {secret_path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"key file {secret_path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {secret_path}"
        )
    public, secret, _ = _read_cert(secret_path)
    if not public or not secret or not is_z85_key(public) or not is_z85_key(secret):
        raise IdentityError(
            f"key file {secret_path} is corrupt (no valid CURVE keypair); move it away to "
            "create a new identity, or restore it from a backup"
        )
    try:
        derived = zmq.curve_public(secret)
    except Exception:
        derived = b""
    if derived != public:
        raise IdentityError(
            f"key file {secret_path} is corrupt (public key does not match the secret key); "
            "move it away to create a new identity, or restore it from a backup"
        )
    return Identity(public, secret)
