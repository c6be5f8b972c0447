"""Secrets at rest: the key (environment or a 0600 key file made on first use), the stored format,
plain-text rows from older versions, a wrong key, and tokens masked in logs."""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mailtide.config import load_settings
from mailtide.observability.logs import RedactTokens
from mailtide.secrets import PREFIX, SecretBox, SecretUnreadable
from mailtide.store.accounts import (
    create_account,
    encrypt_stored_credentials,
    get_credential,
    load_account_credential,
)


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    box = SecretBox.from_settings(settings)
    assert not (tmp_path / "data").exists()  # nothing touches the disk before a secret is stored
    sealed = box.encrypt("1//refresh-token")
    key_file = tmp_path / "data" / "secret.key"
    assert sealed.startswith(PREFIX) and "refresh-token" not in sealed
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert SecretBox.from_settings(settings).decrypt(sealed) == "1//refresh-token"  # a new process reads it
    assert box.encrypt(sealed) == sealed  # never wrapped twice
    assert box.decrypt("plain-text-from-an-older-version") == "plain-text-from-an-older-version"


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    boxes = [SecretBox(key_file=tmp_path / "k" / "secret.key") for _ in range(8)]
    sealed: list[str] = []
    threads = [threading.Thread(target=lambda b=b: sealed.append(b.encrypt("x"))) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sealed) == len(boxes)  # no thread failed (e.g. on a key file read half-written)
    assert all(box.decrypt(s) == "x" for box in boxes for s in sealed)
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["secret.key"]  # no draft left behind


def test_a_key_from_the_environment_and_a_wrong_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("MAILTIDE_SECRET_KEY", key)
    box = SecretBox.from_settings(load_settings(data_dir=tmp_path))
    sealed = box.encrypt("secret")
    assert not list(tmp_path.iterdir())  # no key file when the key comes from the environment
    with pytest.raises(SecretUnreadable, match="key changed"):
        SecretBox(key=Fernet.generate_key()).decrypt(sealed)


async def test_credentials_are_encrypted_at_the_store_edge(engine, tmp_path: Path) -> None:
    box = SecretBox(key_file=tmp_path / "secret.key")
    old = await create_account(engine, "old@mailtide.test", client_id="c", client_secret="s", refresh_token="1//old")
    new = await create_account(engine, "new@mailtide.test", client_id="c", client_secret=None,
                               refresh_token="1//new", secrets=box)
    assert (await get_credential(engine, old, secrets=box)).refresh_token == "1//old"  # plain text still reads
    stored_new = await load_account_credential(engine, new, secrets=box)
    assert stored_new.credential.refresh_token == "1//new" and "1//new" not in repr(stored_new)
    with pytest.raises(SecretUnreadable):
        await get_credential(engine, new)  # encrypted, and no key given

    assert await encrypt_stored_credentials(engine, box) == 1  # the old row
    assert await encrypt_stored_credentials(engine, box) == 0
    assert (await get_credential(engine, old, secrets=box)).refresh_token == "1//old"
    with pytest.raises(SecretUnreadable, match=r"credential of (old|new)@mailtide\.test"):
        await encrypt_stored_credentials(engine, SecretBox(key=Fernet.generate_key()))


def test_tokens_are_masked_in_log_lines() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s then %s and Bearer %s", (
        "ya29.a0AfH6SMBx-secret", {"refresh_token": "1//0gLongRefreshToken"}, "abcdefghijkl"), None)
    RedactTokens().filter(record)
    line = record.getMessage()
    assert "a0AfH6SMBx" not in line and "0gLongRefreshToken" not in line and "abcdefghijkl" not in line
    assert line.count("[redacted]") == 3
