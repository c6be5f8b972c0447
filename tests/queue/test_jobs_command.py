"""`mailtide jobs ...` against a real database, and the queue statistics behind `jobs stats`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from mailtide.cli import app
from mailtide.queue import JobQueue, JobSpec
from mailtide.store.accounts import create_account

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so that no cell is folded across lines."""
    from mailtide.commands import jobs as jobs_command

    monkeypatch.setattr(jobs_command.console, "width", 200)


@dataclass
class Jobs:
    account_id: int
    queued: int
    running: int
    failed: int
    done: int
    later: int


@pytest.fixture
async def jobs_in_db(url_engine: AsyncEngine, set_job_columns_on_url: Any) -> Jobs:
    queue = JobQueue(url_engine)
    account_id = await create_account(url_engine, "me@x.test", client_id="c", client_secret=None, refresh_token="r")
    done, _ = await queue.enqueue(JobSpec("history.sync.gmail", {"account_id": account_id}, account_id=account_id))
    failed, _ = await queue.enqueue(JobSpec("ingest.gmail", {"ids": ["m1", "m2"]}, account_id=account_id))
    running, _ = await queue.enqueue(JobSpec("backfill.gmail", {"page": 2}, priority=-10))
    queued, _ = await queue.enqueue(JobSpec("ingest.gmail", {"ids": ["m3"]}, priority=-20))
    later, _ = await queue.enqueue(JobSpec("labels.sync.gmail", not_before=time.time() + 3600))
    [first] = await queue.claim("w")
    await queue.add_step(first, "history", {"records": 3})
    assert await queue.complete(first, "3 records")
    [second] = await queue.claim("w")
    await queue.add_step(second, "fetched", {"count": 1})
    await queue.fail(second, "Traceback (most recent call last):\n  ...\nGmailError: 500 backendError", retryable=False)
    [third] = await queue.claim("w")
    assert (first.id, second.id, third.id) == (done.id, failed.id, running.id)
    await set_job_columns_on_url(queued.id, created_at=time.time() - 120, not_before=time.time() - 90)
    await queue.close()
    return Jobs(account_id, queued.id, running.id, failed.id, done.id, later.id)


@pytest.fixture
def set_job_columns_on_url(url_engine: AsyncEngine) -> Any:
    import sqlalchemy as sa

    from mailtide.db.schema import jobs

    async def write(job_id: int, **values: Any) -> None:
        async with url_engine.begin() as conn:
            await conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))

    return write


def mailtide(database_url: str, *args: str) -> Any:
    return runner.invoke(app, ["--db", database_url, "jobs", *args], catch_exceptions=False)


def test_list_filters_and_shows_a_table(database_url: str, jobs_in_db: Jobs) -> None:
    everything = mailtide(database_url, "list", "--json")
    assert everything.exit_code == 0
    listed = json.loads(everything.stdout)
    assert [job["id"] for job in listed] == sorted(vars(jobs_in_db).values(), reverse=True)[:5]

    def ids(*filters: str) -> list[int]:
        result = mailtide(database_url, "list", "--json", *filters)
        assert result.exit_code == 0, result.output
        return [job["id"] for job in json.loads(result.stdout)]

    assert ids("--state", "failed") == [jobs_in_db.failed]
    assert ids("--type", "ingest.gmail") == [jobs_in_db.queued, jobs_in_db.failed]
    assert ids("--account", "me@x.test") == [jobs_in_db.failed, jobs_in_db.done]
    assert ids("--account", str(jobs_in_db.account_id), "--state", "completed") == [jobs_in_db.done]

    table = mailtide(database_url, "list", "--state", "failed")
    assert table.exit_code == 0
    assert "ingest.gmail" in table.stdout and "GmailError: 500 backendError" in table.stdout
    assert mailtide(database_url, "list", "--state", "bogus").exit_code == 2
    assert mailtide(database_url, "list", "--account", "nobody@x.test").exit_code == 2


def test_show_prints_payload_error_and_steps(database_url: str, jobs_in_db: Jobs) -> None:
    shown = mailtide(database_url, "show", str(jobs_in_db.failed))
    assert shown.exit_code == 0
    for text in ("ingest.gmail", '"m1"', "GmailError: 500 backendError", "fetched", '"count": 1', "1 of 10"):
        assert text in shown.stdout, text
    as_json = json.loads(mailtide(database_url, "show", str(jobs_in_db.done), "--json").stdout)
    assert as_json["state"] == "completed"
    assert [(s["name"], s["detail"]) for s in as_json["steps"]] == [
        ("history", {"records": 3}), ("result", {"note": "3 records"}),
    ]
    unknown = mailtide(database_url, "show", "999999")
    assert unknown.exit_code == 2 and "no job 999999" in unknown.output  # a bad argument, like an unknown account


def test_retry_and_cancel(database_url: str, jobs_in_db: Jobs) -> None:
    retried = mailtide(database_url, "retry", str(jobs_in_db.failed))
    assert retried.exit_code == 0 and "queued again" in retried.stdout
    again = mailtide(database_url, "retry", str(jobs_in_db.failed))
    assert again.exit_code == 1 and "is queued: only failed or canceled" in again.output
    assert mailtide(database_url, "retry", "999999").exit_code == 2
    assert mailtide(database_url, "retry").exit_code == 2
    assert mailtide(database_url, "retry", "1", "--failed").exit_code == 2

    canceled = mailtide(database_url, "cancel", str(jobs_in_db.queued))
    assert canceled.exit_code == 0 and "canceled" in canceled.stdout
    requested = mailtide(database_url, "cancel", str(jobs_in_db.running))
    assert requested.exit_code == 0 and "requested" in requested.stdout
    assert mailtide(database_url, "cancel", str(jobs_in_db.done)).exit_code == 1
    assert mailtide(database_url, "cancel", "999999").exit_code == 2

    states = {job["id"]: (job["state"], job["cancel_requested"])
              for job in json.loads(mailtide(database_url, "list", "--json").stdout)}
    assert states[jobs_in_db.queued] == ("canceled", False)
    assert states[jobs_in_db.running] == ("running", True)
    assert states[jobs_in_db.failed] == ("queued", False)

    assert json.loads(mailtide(database_url, "list", "--json", "--state", "failed").stdout) == []
    all_failed = mailtide(database_url, "retry", "--failed")
    assert all_failed.exit_code == 0 and "0 failed job(s)" in all_failed.stdout


def test_stats_counts_waits_and_throughput(database_url: str, jobs_in_db: Jobs) -> None:
    table = mailtide(database_url, "stats")
    assert table.exit_code == 0
    for text in ("ingest.gmail", "completed", "1 due now, 1 scheduled for later", "1 min"):
        assert text in table.stdout, text
    stats = json.loads(mailtide(database_url, "stats", "--json").stdout)
    assert stats["counts"] == {
        "completed": {"history.sync.gmail": 1}, "failed": {"ingest.gmail": 1},
        "running": {"backfill.gmail": 1}, "queued": {"ingest.gmail": 1, "labels.sync.gmail": 1},
    }
    assert (stats["due"], stats["scheduled"]) == (1, 1)
    assert 85 < stats["oldest_due_wait_seconds"] < 600
    assert stats["finished"]["1"] == {"completed": 1, "failed": 1}


async def test_stats_windows(queue: JobQueue, set_job_columns: Any) -> None:
    empty = await queue.stats()
    assert empty.counts == {} and empty.oldest_due_wait_seconds is None and empty.oldest_running_seconds is None
    jobs = await queue.enqueue_many([JobSpec("t", {"n": n}) for n in range(4)])
    for job in await queue.claim("w", limit=4):
        assert await queue.complete(job)
    now = time.time()
    for job, age in zip(jobs, (10, 200, 600, 3600), strict=True):  # finished 10 s .. 1 h ago
        await set_job_columns(job.id, finished_at=now - age)
    stats = await queue.stats()
    assert {m: by["completed"] for m, by in stats.finished.items()} == {1: 1, 5: 2, 15: 3}
    assert stats.completed_per_minute(5) == pytest.approx(0.4)
    assert stats.total("completed") == 4
