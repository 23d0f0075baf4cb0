"""Unit tests for the node identity: key files in the data dir, peer_id, and every bad file."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from netcore.net import identity
from netcore.net.identity import Identity, IdentityError, load, load_or_create
from netcore.wire.addresses import peer_id_for

Z85_ALPHABET = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def z85_decode(text: str | bytes) -> bytes:
    """ZeroMQ RFC 32 Z85, written here so peer_id is checked against an independent decoder."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    assert len(text) % 5 == 0
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for ch in text[i : i + 5]:
            value = value * 85 + Z85_ALPHABET.index(ch)
        out += value.to_bytes(4, "big")
    return bytes(out)


def test_reference_z85_decoder_matches_rfc_32() -> None:
    assert z85_decode("HelloWorld") == bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "data"


@pytest.fixture
def made(data_dir: Path) -> Identity:
    return load_or_create(data_dir)


def secret_file(data_dir: Path) -> Path:
    return data_dir / identity.SECRET_FILE


def public_file(data_dir: Path) -> Path:
    return data_dir / identity.PUBLIC_FILE


def assert_one_line_naming(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    assert str(path) in text, f"{text!r} does not name {path}"


# --- first start and reload -----------------------------------------------------------------


def test_first_start_creates_the_key_files(data_dir: Path, made: Identity) -> None:
    secret, public = secret_file(data_dir), public_file(data_dir)
    assert secret.is_file() and public.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    mode = stat.S_IMODE(public.stat().st_mode)
    assert mode & 0o077 == 0o044 or mode == 0o644
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0, "the data dir is private"
    assert len(made.public_key) == 40 and len(made.secret_key) == 40
    assert zmq.curve_public(made.secret_key) == made.public_key
    assert made.public_text == made.public_key.decode("ascii")
    # No temporary files left behind.
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(
        [identity.SECRET_FILE, identity.PUBLIC_FILE]
    )


def test_key_files_are_zeromq_certificates(data_dir: Path, made: Identity) -> None:
    public, secret = zmq.auth.load_certificate(str(secret_file(data_dir)))
    assert (public, secret) == (made.public_key, made.secret_key)
    public_only, no_secret = zmq.auth.load_certificate(str(public_file(data_dir)))
    assert public_only == made.public_key
    assert no_secret is None
    assert made.secret_key.decode() not in public_file(data_dir).read_text()


def test_reload_gives_the_same_identity(data_dir: Path, made: Identity) -> None:
    before = secret_file(data_dir).read_bytes()
    again = load_or_create(data_dir)
    assert again == made
    assert again.peer_id == made.peer_id
    assert secret_file(data_dir).read_bytes() == before, "the key file is not rewritten"
    assert load(secret_file(data_dir)) == made


def test_each_data_dir_gets_its_own_identity(tmp_path: Path) -> None:
    a = load_or_create(tmp_path / "a")
    b = load_or_create(tmp_path / "b")
    assert a.peer_id != b.peer_id


def test_peer_id_is_the_first_20_hex_of_sha256_of_the_raw_key(made: Identity) -> None:
    raw = z85_decode(made.public_key)
    assert len(raw) == 32
    expected = hashlib.sha256(raw).hexdigest()[:20]
    assert made.peer_id == expected
    assert len(made.peer_id) == 20
    assert made.peer_id == made.peer_id.lower()
    assert peer_id_for(made.public_key) == expected
    assert peer_id_for(made.public_text) == expected


def test_peer_id_for_known_keys() -> None:
    for _ in range(5):
        public, _secret = zmq.curve_keypair()
        assert peer_id_for(public) == hashlib.sha256(z85_decode(public)).hexdigest()[:20]


def test_peer_id_for_a_key_that_is_not_32_bytes() -> None:
    with pytest.raises(ValueError):
        peer_id_for("HelloWorld")


def test_is_z85_key() -> None:
    public, _ = zmq.curve_keypair()
    assert identity.is_z85_key(public)
    assert identity.is_z85_key(public.decode())
    assert not identity.is_z85_key(public[:-1])
    assert not identity.is_z85_key("x" * 39 + "~")  # '~' is not in the Z85 alphabet
    assert not identity.is_z85_key("é" * 40)
    assert not identity.is_z85_key("")


# --- bad key files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xff\xfe garbage \x80\n\x01", id="binary"),
        pytest.param(b"not a certificate at all\n", id="text"),
        pytest.param(b'curve\n    public-key = "abc"\n    secret-key = "def"\n', id="short-keys"),
        pytest.param(b"curve\n    public-key\n    secret-key\n", id="no-values"),
        pytest.param(b"curve\n    public-key =\n    secret-key =\n", id="empty-values"),
        pytest.param(b'curve\n    secret-key = "' + b"~" * 40 + b'"\n', id="not-z85"),
    ],
)
def test_corrupt_secret_file(data_dir: Path, made: Identity, content: bytes) -> None:
    path = secret_file(data_dir)
    path.write_bytes(content)
    with pytest.raises(IdentityError) as info:
        load_or_create(data_dir)
    assert_one_line_naming(info.value, path)
    assert "corrupt" in str(info.value)
    assert path.read_bytes() == content, "a damaged file is never overwritten"


def test_secret_file_missing_its_public_key(data_dir: Path, made: Identity) -> None:
    path = secret_file(data_dir)
    lines = [line for line in path.read_text().splitlines() if "public-key" not in line]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IdentityError) as info:
        load_or_create(data_dir)
    assert_one_line_naming(info.value, path)


def test_truncated_secret_file_at_every_length(data_dir: Path, made: Identity) -> None:
    path = secret_file(data_dir)
    full = path.read_bytes()
    # Once the secret key's 40 characters are all there (closing quote and newline or not),
    # the file is complete; any shorter prefix is damaged.
    complete_from = full.rindex(b'"')
    for length in range(len(full)):
        path.write_bytes(full[:length])
        if length >= complete_from:
            assert load(path) == made
            continue
        with pytest.raises(IdentityError) as info:
            load(path)
        assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o004])
def test_secret_file_readable_by_others(data_dir: Path, made: Identity, mode: int) -> None:
    path = secret_file(data_dir)
    os.chmod(path, mode)
    with pytest.raises(IdentityError) as info:
        load_or_create(data_dir)
    assert_one_line_naming(info.value, path)
    assert "chmod 600" in str(info.value)
    assert stat.S_IMODE(path.stat().st_mode) == mode, "the file is left as it was"


def test_owner_only_modes_are_accepted(data_dir: Path, made: Identity) -> None:
    os.chmod(secret_file(data_dir), 0o400)
    assert load_or_create(data_dir) == made


def test_public_key_in_the_secret_file_that_does_not_match(data_dir: Path, made: Identity) -> None:
    path = secret_file(data_dir)
    other_public, _ = zmq.curve_keypair()
    path.write_text(path.read_text().replace(made.public_text, other_public.decode()))
    with pytest.raises(IdentityError) as info:
        load_or_create(data_dir)
    assert_one_line_naming(info.value, path)
    assert "does not match" in str(info.value)


def test_public_key_file_that_does_not_match(data_dir: Path, made: Identity) -> None:
    path = public_file(data_dir)
    other_public, _ = zmq.curve_keypair()
    path.write_text(path.read_text().replace(made.public_text, other_public.decode()))
    with pytest.raises(IdentityError) as info:
        load_or_create(data_dir)
    assert_one_line_naming(info.value, path)
    assert "does not match" in str(info.value)


def test_missing_public_key_file_is_written_again(data_dir: Path, made: Identity) -> None:
    public_file(data_dir).unlink()
    assert load_or_create(data_dir) == made
    public, secret = zmq.auth.load_certificate(str(public_file(data_dir)))
    assert public == made.public_key and secret is None


# --- bad data dirs ---------------------------------------------------------------------------


def test_data_dir_that_is_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("I am a file")
    with pytest.raises(IdentityError) as info:
        load_or_create(path)
    assert_one_line_naming(info.value, path)
    assert path.read_text() == "I am a file"


def test_data_dir_below_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = blocker / "data"
    with pytest.raises(IdentityError) as info:
        load_or_create(path)
    assert_one_line_naming(info.value, path)


def test_unwritable_data_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions; the regular-file cases cover root")
    path = tmp_path / "data"
    path.mkdir()
    os.chmod(path, 0o500)
    try:
        with pytest.raises(IdentityError) as info:
            load_or_create(path)
        assert_one_line_naming(info.value, path)
    finally:
        os.chmod(path, 0o700)


def test_unwritable_parent_of_the_data_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions; the regular-file cases cover root")
    parent = tmp_path / "locked"
    parent.mkdir()
    os.chmod(parent, 0o500)
    path = parent / "data"
    try:
        with pytest.raises(IdentityError) as info:
            load_or_create(path)
        assert_one_line_naming(info.value, path)
    finally:
        os.chmod(parent, 0o700)


def test_secret_file_that_is_a_directory(data_dir: Path) -> None:
    secret = secret_file(data_dir)
    secret.mkdir(parents=True, mode=0o700)
    with pytest.raises(IdentityError) as info:
        load_or_create(data_dir)
    assert_one_line_naming(info.value, secret)


def test_key_checks_are_memoised_only_for_key_sized_strings() -> None:
    from netcore.wire.addresses import _decodes_to_32, is_z85_key

    before = _decodes_to_32.cache_info().currsize
    assert not is_z85_key("x" * 1_000_000)  # a peer's huge "key" never reaches the memo
    assert not is_z85_key(None)  # type: ignore[arg-type]
    assert _decodes_to_32.cache_info().currsize == before
