"""Telling the running jobs of a worker that is gone from those of a live one (queue/stranded.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

from mailtide.queue import JobQueue
from mailtide.queue.jobs import JobSpec
from mailtide.queue.stranded import find_stranded, worker_process_gone
from mailtide.queue.worker import default_worker_id


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def running_job(queue: JobQueue, worker_id: str) -> int:
    await queue.enqueue(JobSpec(type="t", payload={"worker": worker_id}))
    [job] = await queue.claim(worker_id, limit=1)
    return job.id


def test_a_worker_process_is_gone_only_when_this_machine_says_so() -> None:
    host = socket.gethostname()
    assert worker_process_gone(f"{host}:{dead_pid()}:abc123")
    assert not worker_process_gone(default_worker_id())  # this very process
    assert not worker_process_gone(f"another-host:{dead_pid()}:abc123")
    assert not worker_process_gone("test-worker") and not worker_process_gone(None)


async def test_jobs_of_a_live_worker_are_not_stranded(queue: JobQueue) -> None:
    await running_job(queue, default_worker_id())
    assert await find_stranded(queue, heartbeat_seconds=5, rescue_after=30) is None


async def test_jobs_of_a_killed_or_silent_worker_are_stranded(queue: JobQueue, set_job_columns: Any) -> None:
    killed = await running_job(queue, f"{socket.gethostname()}:{dead_pid()}:k1")  # heartbeat fresh, process gone
    silent = await running_job(queue, "elsewhere:1234:s1")
    await set_job_columns(silent, heartbeat_at=time.time() - 20)

    stranded = await find_stranded(queue, heartbeat_seconds=5, rescue_after=30)
    assert stranded is not None and set(stranded.attempts) == {killed, silent}
    assert stranded.describe() == (
        "waiting for 2 job(s) of a stopped worker to be rescued (heartbeat 20 s old; rescued after 30 s)"
    )

