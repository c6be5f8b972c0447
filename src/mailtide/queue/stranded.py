"""Running jobs whose worker is gone (killed, say): they hold the queue until the rescuer hands them out
again (Worker: once their heartbeat is `stale_after_seconds` old), and a rescued job then waits out a
short backoff. Found here so a command that waits for the queue can say why it waits."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from mailtide.queue.job_queue import JobQueue

MAX_LISTED = 1000


@dataclass(frozen=True)
class Stranded:
    attempts: dict[int, int]  # job id -> its attempt number when found stranded
    oldest_heartbeat_age: float  # seconds
    rescue_after: float  # seconds of silence after which the rescuer takes a job back

    def describe(self) -> str:
        count = len(self.attempts)
        if self.oldest_heartbeat_age >= self.rescue_after:
            return f"rescuing {count} job(s) of a stopped worker (heartbeat {self.oldest_heartbeat_age:.0f} s old)"
        return (
            f"waiting for {count} job(s) of a stopped worker to be rescued "
            f"(heartbeat {self.oldest_heartbeat_age:.0f} s old; rescued after {self.rescue_after:.0f} s)"
        )


def worker_process_gone(worker_id: str | None) -> bool:
    """A worker of this machine whose process no longer exists (worker ids are `host:pid:suffix`).
    False whenever unsure: another host, an id of another shape, a process we may not signal."""
    host, _, rest = (worker_id or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


async def find_stranded(queue: JobQueue, *, heartbeat_seconds: float, rescue_after: float) -> Stranded | None:
    """Running jobs whose worker is gone: its process no longer exists, or its heartbeat is more than
    two intervals old (a live worker beats every interval)."""
    now = time.time()
    attempts: dict[int, int] = {}
    oldest = 0.0
    for job in await queue.list_jobs(state="running", limit=MAX_LISTED):
        age = max(0.0, now - (job.heartbeat_at or job.started_at or now))
        if age > 2 * heartbeat_seconds or worker_process_gone(job.worker_id):
            attempts[job.id] = job.attempts
            oldest = max(oldest, age)
    if not attempts:
        return None
    return Stranded(attempts, oldest, rescue_after)
