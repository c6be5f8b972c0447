"""The README's "Using it" path: an emulator, `accounts add-token`, `sync`, `status`, as subprocesses."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState

TAKEOUT = Path(__file__).parents[1] / "src" / "mailtide" / "demo_data" / "takeout" / "takeout.mbox"
EMAIL = "me@mailtide.test"


def mailtide(db: Path, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILTIDE_GMAIL_API_URL": url, "MAILTIDE_TOKEN_URL": f"{url}/token", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mailtide", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def mirrored(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM messages WHERE NOT deleted").fetchone()[0]


def test_add_token_sync_status_and_an_unreachable_server(tmp_path: Path) -> None:
    state = EmulatorState(seed=2)
    mailbox = state.add_user(EMAIL, client_id="cid", client_secret="secret", refresh_token="rt")
    mailbox.load_path(TAKEOUT)
    db = tmp_path / "mirror.db"
    with EmulatorServer(state) as server:
        url = server.url
        added = mailtide(
            db, "accounts", "add-token", EMAIL, "--client-id", "cid", "--client-secret", "secret",
            "--refresh-token", "rt", url=url,
        )
        assert added.returncode == 0, added.stderr
        first = mailtide(db, "sync", EMAIL, url=url)
        assert first.returncode == 0, first.stdout + first.stderr
        assert mirrored(db) == len(mailbox.message_ids()) == 39
        assert "normal" in first.stdout

        mailbox.delete_message(sorted(mailbox.message_ids())[0])
        second = mailtide(db, "sync", EMAIL, url=url)
        assert second.returncode == 0, second.stdout + second.stderr
        assert mirrored(db) == 38

    # The server is gone: the sync says so and exits non-zero, and the work stays queued for later.
    mailbox.delete_message(sorted(mailbox.message_ids())[0])
    offline = mailtide(db, "sync", EMAIL, url=url)
    assert offline.returncode == 1
    assert "sync incomplete" in offline.stderr and "waiting to retry" in offline.stderr
    assert "Traceback" not in offline.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0] >= 1
