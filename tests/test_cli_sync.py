"""The README's "Using it" path: an emulator, `accounts add-token`, `sync`, `status`, as subprocesses."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mailtide.emulator.faults import MethodFaults
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox

TAKEOUT = Path(__file__).parents[1] / "src" / "mailtide" / "demo_data" / "takeout" / "takeout.mbox"
EMAIL = "me@mailtide.test"


def cli_env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "MAILTIDE_GMAIL_API_URL": url, "MAILTIDE_TOKEN_URL": f"{url}/token", "COLUMNS": "200",
            **extra}


def mailtide(db: Path, *args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailtide", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(url, **env),
    )


def add_token(db: Path, url: str) -> None:
    added = mailtide(
        db, "accounts", "add-token", EMAIL, "--client-id", "cid", "--client-secret", "secret",
        "--refresh-token", "rt", url=url,
    )
    assert added.returncode == 0, added.stderr


def takeout_emulator() -> tuple[EmulatorState, Mailbox]:
    state = EmulatorState(seed=2)
    mailbox = state.add_user(EMAIL, client_id="cid", client_secret="secret", refresh_token="rt")
    mailbox.load_path(TAKEOUT)
    return state, mailbox


def running_jobs(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0]


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


def test_sync_of_an_account_that_needs_reauthorisation_says_what_to_run(tmp_path: Path) -> None:
    state, mailbox = takeout_emulator()
    db = tmp_path / "mirror.db"
    with EmulatorServer(state) as server:
        add_token(db, server.url)
        assert mailtide(db, "sync", EMAIL, url=server.url).returncode == 0
        state.revoke_refresh_token(EMAIL)
        mailbox.delete_message(sorted(mailbox.message_ids())[0])

        for attempt in ("meets the refused grant", "account already flagged"):
            result = mailtide(db, "sync", EMAIL, url=server.url)
            assert result.returncode == 1, (attempt, result.stdout, result.stderr)
            said = " ".join(result.stderr.split())  # rich wraps long lines
            assert f"account {EMAIL} needs re-authorisation: run `mailtide accounts reauth {EMAIL}`" in said
            assert f"accounts add-token {EMAIL} --replace" in said
            assert "waiting to retry" not in said and "again later" not in said, attempt


def test_sync_after_a_killed_sync_says_it_waits_for_the_rescue(tmp_path: Path) -> None:
    state, mailbox = takeout_emulator()
    db = tmp_path / "mirror.db"
    quick_rescue = {"MAILTIDE_HEARTBEAT_SECONDS": "2"}  # rescued after 6 missed beats: 12 s
    with EmulatorServer(state) as server:
        add_token(db, server.url)
        state.faults.configure({"*": MethodFaults(latency=0.5)})  # keeps jobs in flight
        first = subprocess.Popen(
            [sys.executable, "-m", "mailtide", "--db", str(db), "sync", EMAIL],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(server.url, **quick_rescue),
        )
        try:
            deadline = time.monotonic() + 60
            while not (db.exists() and running_jobs(db)):
                assert first.poll() is None and time.monotonic() < deadline, "no job ever ran"
                time.sleep(0.05)
        finally:
            first.kill()  # kill -9: its running job keeps state 'running'
            first.wait(10)
        assert running_jobs(db) >= 1
        state.faults.configure({})

        second = mailtide(db, "sync", EMAIL, url=server.url, **quick_rescue)
        assert second.returncode == 0, second.stdout + second.stderr
        said = " ".join(second.stderr.split())  # rich wraps long lines
        assert re.search(
            r"waiting for \d+ job\(s\) of a stopped worker to be rescued \(heartbeat \d+ s old; rescued after 12 s\)",
            said,
        ), second.stderr
        assert "sync incomplete" not in said  # the rescued job ran in this sync, after its backoff
        assert mirrored(db) == len(mailbox.message_ids())


def test_sync_waits_out_a_short_retry_instead_of_giving_up(tmp_path: Path) -> None:
    """Regression: a job waiting out a 2 s backoff (here after a cut-off messages.list reply) made
    `sync` exit 1 with "run `mailtide sync` again later" instead of running it when due."""
    state = EmulatorState(seed=4)
    mailbox = state.add_user(EMAIL, client_id="cid", client_secret="secret", refresh_token="rt")
    mailbox.load_path(TAKEOUT)
    db = tmp_path / "mirror.db"
    with EmulatorServer(state) as server:
        add_token(db, server.url)
        state.faults.configure({"messages.list": MethodFaults(truncate=1.0)})
        with subprocess.Popen(
            [sys.executable, "-m", "mailtide", "--db", str(db), "sync", EMAIL],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(server.url),
        ) as sync:
            deadline = time.monotonic() + 60
            while not _job_failed_once(db):  # the backfill page failed and waits out its backoff
                assert sync.poll() is None and time.monotonic() < deadline, "the page never failed"
                time.sleep(0.1)
            state.faults.configure({})
            out, err = sync.communicate(timeout=60)
    assert sync.returncode == 0, out + err
    assert "retrying backfill.gmail" in err and "malformedResponse" in err
    assert mirrored(db) == 39


def _job_failed_once(db: Path) -> bool:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT count(*) FROM jobs WHERE attempts = 1 AND state = 'queued' "
                               "AND last_error IS NOT NULL").fetchone()
    except sqlite3.OperationalError:  # not created yet, or busy: look again
        return False
    return bool(row[0])
