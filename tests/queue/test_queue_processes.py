"""Several real worker processes on one database (tests/queue/worker_process.py is the worker).

Each process records every handler start and end in its own file, so "exactly once" is checked on
what really ran, not on what the database says.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import jobs, schedule_slots
from mailtide.queue import JobQueue, JobSpec

HELPER = Path(__file__).with_name("worker_process.py")
RECORD = "record"


@dataclass
class Proc:
    """A child process whose stdout and stderr go to files (no pipe can fill up and block it)."""

    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @classmethod
    def start(cls, args: list[str], directory: Path, name: str, *, stdin: int | None = None,
              env: dict[str, str] | None = None) -> Proc:
        stdout, stderr = directory / f"{name}.out", directory / f"{name}.err"
        popen = subprocess.Popen(
            args, stdin=stdin, stdout=stdout.open("wb"), stderr=stderr.open("wb"),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        return cls(popen, stdout, stderr)

    def output(self) -> str:
        return self.stdout.read_text()

    def errors(self) -> str:
        return self.stderr.read_text()

    async def wait_for_output(self, text: str, timeout: float = 60) -> None:  # noqa: ASYNC109
        await wait_until(lambda: text in self.output() or self.popen.poll() is not None, timeout)
        if text not in self.output():
            raise AssertionError(f"process exited ({self.popen.returncode}) before {text!r}: {self.errors()}")

    async def stop(self, timeout: float = 30) -> int:  # noqa: ASYNC109
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        await wait_until(lambda: self.popen.poll() is not None, timeout)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


async def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.05) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(every)


@dataclass
class Processes:
    directory: Path
    started: list[Proc] = field(default_factory=list)

    def worker(self, url: str, name: str, **options: Any) -> Proc:
        args = [sys.executable, str(HELPER), "work", url, str(self.directory), "--worker-id", name]
        for option, value in options.items():
            args += [f"--{option.replace('_', '-')}", str(value)]
        proc = Proc.start(args, self.directory, name)
        self.started.append(proc)
        return proc

    def enqueuer(self, url: str, name: str, keys: list[str]) -> Proc:
        proc = Proc.start([sys.executable, str(HELPER), "enqueue", url, *keys], self.directory, name,
                          stdin=subprocess.PIPE)
        self.started.append(proc)
        return proc

    def records(self) -> list[dict[str, Any]]:
        lines = []
        for path in sorted(self.directory.glob("*.jsonl")):
            lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return lines


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        for proc in procs.started:
            proc.kill()


@pytest.fixture
async def queue_on(url_engine: AsyncEngine) -> AsyncIterator[JobQueue]:
    """A queue on the migrated database the child processes reach through `database_url`."""
    queue = JobQueue(url_engine)
    yield queue
    await queue.close()


async def wait_for_counts(queue: JobQueue, expected: dict[str, dict[str, int]], timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while (counts := await queue.counts()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"queue never reached {expected}: {counts}")
        await asyncio.sleep(0.2)


# PostgreSQL: 3 processes x concurrency 8 over 5,000 jobs; SQLite: 2 processes on one file.
SHAPES = {"postgresql": (3, 8, 5_000), "sqlite": (2, 4, 1_000)}


async def test_many_processes_run_every_job_exactly_once_and_respect_lanes(
    backend: str, database_url: str, queue_on: JobQueue, processes: Processes
) -> None:
    process_count, concurrency, job_count = SHAPES[backend]
    workers = [processes.worker(database_url, f"w{i}", concurrency=concurrency) for i in range(process_count)]
    for proc in workers:
        await proc.wait_for_output("ready")
    # Every tenth job is in one of 7 lanes and takes a little time, so that overlaps would show.
    specs = [
        JobSpec(RECORD, {"n": n, "sleep": [0.003]}, lane=f"lane-{n % 7}") if n % 10 == 0 else JobSpec(RECORD, {"n": n})
        for n in range(job_count)
    ]
    await queue_on.enqueue_many(specs)
    await wait_for_counts(queue_on, {"completed": {RECORD: job_count}}, timeout=180)
    exit_codes = [await proc.stop() for proc in workers]

    assert exit_codes == [0] * process_count
    for proc in workers:
        errors = proc.errors()
        assert "database is locked" not in errors and "Traceback" not in errors, errors
    records = processes.records()
    starts = Counter(r["job"] for r in records if r["event"] == "start")
    ends = Counter(r["job"] for r in records if r["event"] == "end")
    assert len(starts) == job_count and set(starts.values()) == {1}
    assert ends == starts
    assert {r["worker"] for r in records} == {f"w{i}" for i in range(process_count)}  # the work was shared

    by_lane: dict[str, list[tuple[float, float]]] = defaultdict(list)
    start_at = {(r["job"], r["attempt"]): r["at"] for r in records if r["event"] == "start"}
    for r in records:
        if r["event"] == "end" and r["lane"] is not None:
            by_lane[r["lane"]].append((start_at[(r["job"], r["attempt"])], r["at"]))
    assert len(by_lane) == 7 and sum(len(runs) for runs in by_lane.values()) == job_count // 10
    for lane, runs in by_lane.items():
        runs.sort()
        overlaps = [(a, b) for a, b in itertools.pairwise(runs) if b[0] < a[1]]
        assert overlaps == [], f"lane {lane} ran two jobs at once"

    async with queue_on.engine.connect() as conn:
        attempts = set((await conn.execute(sa.select(jobs.c.attempts).distinct())).scalars())
    assert attempts == {1}


async def test_kill_9_mid_job_the_job_completes_once_on_another_worker(
    database_url: str, queue_on: JobQueue, processes: Processes
) -> None:
    # Attempt 1 would take 60 s; the rescued attempt 2 takes 50 ms.
    job, _ = await queue_on.enqueue(JobSpec(RECORD, {"sleep": [60, 0.05]}, max_attempts=5))
    fast = {"heartbeat": 0.2, "stale_after": 1.0, "poll": 0.2}
    doomed = processes.worker(database_url, "doomed", **fast)
    await wait_until(lambda: any(r["event"] == "start" for r in processes.records()), timeout=60)
    doomed.popen.send_signal(signal.SIGKILL)
    assert await doomed.stop() == -signal.SIGKILL

    survivor = processes.worker(database_url, "survivor", **fast)
    await wait_for_counts(queue_on, {"completed": {RECORD: 1}}, timeout=60)
    assert await survivor.stop() == 0

    runs = [(r["worker"], r["event"], r["attempt"]) for r in processes.records()]
    assert sorted(runs) == [("doomed", "start", 1), ("survivor", "end", 2), ("survivor", "start", 2)]
    finished = await queue_on.get(job.id)
    assert (finished.state, finished.attempts) == ("completed", 2)
    assert "heartbeat lost" in finished.last_error and "doomed" in finished.last_error
    assert "Traceback" not in survivor.errors()


async def test_concurrent_enqueues_from_many_processes_create_one_job_per_key(
    database_url: str, queue_on: JobQueue, processes: Processes
) -> None:
    keys = [f"history:{n}" for n in range(4)]
    enqueuers = [processes.enqueuer(database_url, f"e{i}", keys) for i in range(6)]
    for proc in enqueuers:
        await proc.wait_for_output("ready")
    for proc in enqueuers:  # the start barrier: all are connected and waiting
        assert proc.popen.stdin is not None
        proc.popen.stdin.write(b"go\n")
        proc.popen.stdin.flush()
    for proc in enqueuers:
        await proc.wait_for_output("}")
    outcomes = [json.loads(proc.output().splitlines()[-1]) for proc in enqueuers]

    for key in keys:
        ids = {outcome[key][0] for outcome in outcomes}
        created = [outcome[key][1] for outcome in outcomes]
        assert len(ids) == 1, f"{key}: several jobs {ids}"
        assert created.count(True) == 1, f"{key}: created by {created.count(True)} callers"
    assert await queue_on.counts() == {"queued": {RECORD: len(keys)}}


async def test_mailtide_worker_command_schedules_periodic_jobs_and_stops_on_sigterm(
    database_url: str, queue_on: JobQueue, processes: Processes, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "mailtide", "--db", database_url, "worker", "--concurrency", "2"]
    worker = Proc.start(command, tmp_path, "mailtide-worker", env={"MAILTIDE_DATA_DIR": str(tmp_path / "data")})
    processes.started.append(worker)
    expected = {"history.poll.gmail", "labels.poll.gmail", "queue.prune"}  # (the sync engine may add more)

    async def scheduled_types() -> set[str]:
        async with queue_on.engine.connect() as conn:
            return set((await conn.execute(sa.select(schedule_slots.c.name))).scalars())

    async def completed_types() -> set[str]:
        return set((await queue_on.counts()).get("completed", {}))

    deadline = time.monotonic() + 90
    while not expected <= await completed_types():
        assert time.monotonic() < deadline, (
            f"scheduled: {await scheduled_types()}; jobs: {await queue_on.counts()}; {worker.errors()}"
        )
        await asyncio.sleep(0.2)
    assert expected <= await scheduled_types()
    assert await worker.stop() == 0
    assert "Traceback" not in worker.errors()
    counts = await queue_on.counts()
    assert all(counts["completed"][job_type] == 1 for job_type in expected)
    assert not any(job_type in counts.get("failed", {}) for job_type in expected)
