"""Secrets at rest: OAuth refresh tokens (and client secrets) encrypted with Fernet.

The key comes from `secret_key` (MAILTIDE_SECRET_KEY) or from a key file (`secret_key_file`,
default `<data_dir>/secret.key`) created with mode 0600 the first time something is encrypted.
Encrypted values carry the prefix `fernet:v1:` so rows written before encryption existed (plain
text) still read, and `mailtide serve` re-encrypts them at start.

The key is loaded lazily: opening a runtime never touches the key file unless a secret is
actually encrypted or an encrypted one read.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mailtide.config import ConfigError, Settings

logger = logging.getLogger(__name__)

PREFIX = "fernet:v1:"
KEY_FILE_NAME = "secret.key"
REDACTED = "**redacted**"


class SecretUnreadable(Exception):
    """An encrypted value cannot be decrypted with the configured key (wrong or changed key)."""


def is_encrypted(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def redact(value: object) -> str:
    """What a secret looks like in logs, API answers and `config show`."""
    return "" if value in (None, "") else REDACTED


class SecretBox:
    """Encrypts and decrypts short secrets; the key is resolved on first use."""

    def __init__(self, *, key: bytes | None = None, key_file: Path | None = None) -> None:
        if key is None and key_file is None:
            raise ValueError("SecretBox needs a key or a key file")
        self._key = key
        self._key_file = key_file
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secret_key is not None:
            return cls(key=settings.secret_key.get_secret_value().encode())
        return cls(key_file=settings.secret_key_file or settings.data_dir / KEY_FILE_NAME)

    @property
    def key_source(self) -> str:
        """Where the key comes from, for messages (never the key itself)."""
        return "secret_key (MAILTIDE_SECRET_KEY)" if self._key is not None else f"key file {self._key_file}"

    def encrypt(self, plaintext: str) -> str:
        if is_encrypted(plaintext):
            return plaintext  # never wrap twice
        return PREFIX + self._cipher().encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The plaintext of a stored value; a value without the prefix is returned as it is."""
        if not is_encrypted(stored):
            return stored
        try:
            return self._cipher().decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                f"a stored secret cannot be decrypted with the key from {self.key_source}: "
                "the key changed or belongs to another installation"
            ) from None

    def _cipher(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                key = self._key if self._key is not None else _load_or_create_key_file(self._key_file)
                self._fernet = Fernet(key)
            return self._fernet


def _load_or_create_key_file(path: Path | None) -> bytes:
    assert path is not None
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    # Written in full under a private name, then linked into place: the key file appears complete
    # or not at all (a reader never sees it half-written), and when processes start together
    # exactly one link succeeds; the others read the winner's key.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key + b"\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        draft.unlink(missing_ok=True)
    logger.warning("secrets.key_created path=%s (back it up: without it stored tokens cannot be read)", path)
    return key


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("secrets.key_file_permissions path=%s mode=%o (expected 0600)", path, stat.S_IMODE(mode))
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise ConfigError(f"secret_key_file: {path} does not hold a Fernet key") from None
    return key
