"""`mailtide serve` as a real process: from `accounts add` to a synced, monitored account; the API
bound to a non-loopback address needs the token; SIGTERM stops it in bounded time, no job left running."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import TypeVar

import httpx
import sqlalchemy as sa
from service_support import (
    API_TOKEN,
    EMAIL,
    Cli,
    Emulator,
    SlowGmail,
    add_account_via_consent,
    free_port,
    stop,
    wait_until_ready,
)

from mailtide.config import load_settings
from mailtide.db.schema import credentials, jobs
from mailtide.runtime import Runtime
from mailtide.secrets import PREFIX
from mailtide.store.accounts import create_account
from mailtide.sync import jobtypes

ACCOUNTS = 3
T = TypeVar("T")


def wait_for(condition, timeout: float = 60, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def test_from_accounts_add_to_a_synced_monitored_account(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli.for_gmail(tmp_path, emulator.server.url, MAILTIDE_API_TOKEN=API_TOKEN)
    add_account_via_consent(cli)
    port = free_port()
    server = cli.start("serve", "--host", "0.0.0.0", "--port", str(port))
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        wait_until_ready(base, auth)
        assert httpx.get(f"{base}/healthz").status_code == 200  # no token needed
        assert httpx.get(f"{base}/api/accounts").status_code == 401
        assert httpx.get(f"{base}/metrics").status_code == 401

        total = len(emulator.message_ids())

        def synced() -> dict | None:
            account = httpx.get(f"{base}/api/accounts/1", headers=auth).json()
            return account if account["status"] == "normal" and account["messages_mirrored"] == total else None

        account = wait_for(synced)
        assert account["email"] == EMAIL and account["backfill"]["progress"] == 1.0
        metrics = httpx.get(f"{base}/metrics", headers=auth).text
        assert f'mailtide_account_messages_mirrored{{account="1"}} {float(total)}' in metrics
        assert 'mailtide_jobs{state="completed",type="backfill.gmail"}' in metrics

        status = cli.run("status")
        assert status.returncode == 0 and EMAIL in status.stdout and "normal" in status.stdout
        assert f" {total} " in status.stdout and "done" in status.stdout
    finally:
        elapsed = stop(server)
    assert server.returncode == 0 and elapsed < 10, server.stderr.read() if server.stderr else ""


async def prepare_in_flight_jobs(cli: Cli, gmail_url: str) -> None:
    """Accounts stored the way older versions did (plain-text tokens), each with a labels sync queued."""
    settings = load_settings(database_url=cli.database_url, data_dir=Path(cli.env["MAILTIDE_DATA_DIR"]),
                             gmail_api_url=gmail_url, token_url=f"{gmail_url}/token")
    async with Runtime.open(settings) as rt:
        for n in range(ACCOUNTS):
            account_id = await create_account(rt.engine, f"user{n}@mailtide.test", client_id="c", client_secret="s",
                                              refresh_token=f"plain-refresh-token-{n}")
            await jobtypes.request_labels_sync(rt.queue, account_id)


def labels_jobs(cli: Cli) -> list[sa.Row]:
    engine = sa.create_engine(cli.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(jobs).where(jobs.c.type == jobtypes.LABELS_SYNC)))
    finally:
        engine.dispose()


def running_jobs(cli: Cli) -> int:
    engine = sa.create_engine(cli.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).where(jobs.c.state == "running")).scalar_one()
    finally:
        engine.dispose()


def test_sigterm_releases_jobs_still_running_after_the_grace_period(tmp_path: Path) -> None:
    with SlowGmail(delay=60) as gmail:
        cli = Cli.for_gmail(tmp_path, gmail.url, MAILTIDE_SHUTDOWN_GRACE_SECONDS="1")
        asyncio.run(prepare_in_flight_jobs(cli, gmail.url))
        server = cli.start("serve", "--port", str(free_port()))
        try:
            wait_for(lambda: all(j.state == "running" for j in labels_jobs(cli)), timeout=60)
        finally:
            elapsed = stop(server)
    err = server.stderr.read() if server.stderr else ""
    assert server.returncode == 0, err
    assert elapsed < 1 + 5, f"shutdown took {elapsed:.1f}s"  # grace + the service's margin
    assert running_jobs(cli) == 0
    assert [(j.state, j.attempts) for j in labels_jobs(cli)] == [("queued", 0)] * ACCOUNTS  # released, not charged
    engine = sa.create_engine(cli.database_url)
    with engine.connect() as conn:  # serve encrypted the plain-text tokens it found at start
        assert all(t.startswith(PREFIX) for t in conn.execute(sa.select(credentials.c.refresh_token)).scalars())
    engine.dispose()


def test_sigterm_lets_jobs_finish_within_the_grace_period(tmp_path: Path) -> None:
    with SlowGmail(delay=1.5) as gmail:
        cli = Cli.for_gmail(tmp_path, gmail.url, MAILTIDE_SHUTDOWN_GRACE_SECONDS="30")
        asyncio.run(prepare_in_flight_jobs(cli, gmail.url))
        server = cli.start("serve", "--port", str(free_port()))
        try:
            wait_for(lambda: all(j.state == "running" for j in labels_jobs(cli)), timeout=60, every=0.05)
        finally:
            elapsed = stop(server)
    assert server.returncode == 0
    assert elapsed < 10
    assert running_jobs(cli) == 0
    assert [j.state for j in labels_jobs(cli)] == ["completed"] * ACCOUNTS


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    with SlowGmail(delay=60) as gmail:
        cli = Cli.for_gmail(tmp_path, gmail.url, MAILTIDE_SHUTDOWN_GRACE_SECONDS="60")
        asyncio.run(prepare_in_flight_jobs(cli, gmail.url))
        server = cli.start("serve", "--port", str(free_port()))
        wait_for(lambda: all(j.state == "running" for j in labels_jobs(cli)), timeout=60)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        elapsed = stop(server, signal.SIGINT)
    assert server.returncode == 0 and elapsed < 5
    assert running_jobs(cli) == 0
    assert [j.state for j in labels_jobs(cli)] == ["queued"] * ACCOUNTS
