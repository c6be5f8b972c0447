"""A real OS process for the multi-process queue tests (run as a script, not collected by pytest).

    python worker_process.py work URL RECORD_DIR [--concurrency N] [--heartbeat S] [--stale-after S]
    python worker_process.py enqueue URL KEY...

`work` runs a Worker whose only handler, `record`, appends one JSON line per event to
RECORD_DIR/<worker id>.jsonl (flushed at once, so it survives kill -9): "start" when the handler
begins and "end" when it returns. The payload may ask it to sleep, per attempt:
{"sleep": [seconds for attempt 1, seconds for attempt 2, ...]} (the last value repeats).
It prints "ready" once the worker runs, and stops gracefully on SIGTERM.

`enqueue` connects, prints "ready", waits for a line on stdin (a start barrier shared by all the
processes of a test), enqueues one job per KEY (idempotency key) concurrently, and prints
{key: [job id, created]} as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mailtide.db import create_engine
from mailtide.queue import Job, JobContext, JobQueue, JobSpec, Worker

RECORD = "record"


class Recorder:
    def __init__(self, path: Path) -> None:
        self.file: TextIO = path.open("a", buffering=1)  # line-buffered: one write per event

    def write(self, event: str, job: Job, worker_id: str) -> None:
        line = {"event": event, "job": job.id, "attempt": job.attempts, "lane": job.lane,
                "worker": worker_id, "at": time.time()}
        self.file.write(json.dumps(line) + "\n")


def sleep_for(job: Job) -> float:
    plan: list[float] = job.payload.get("sleep") or [0.0]
    return plan[min(job.attempts, len(plan)) - 1]


async def work(args: argparse.Namespace) -> None:
    engine = create_engine(args.url)
    queue = JobQueue(engine)
    worker_id = args.worker_id or f"proc-{os.getpid()}"
    recorder = Recorder(Path(args.record_dir) / f"{worker_id}.jsonl")

    async def record(job: Job, ctx: JobContext) -> None:
        recorder.write("start", job, worker_id)
        pause = sleep_for(job)
        if pause:
            await asyncio.sleep(pause)
        recorder.write("end", job, worker_id)

    worker = Worker(
        queue, {RECORD: record}, concurrency=args.concurrency, heartbeat_seconds=args.heartbeat,
        stale_after_seconds=args.stale_after, poll_seconds=args.poll, worker_id=worker_id,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.request_stop, 5.0)
    runner = asyncio.create_task(worker.run())
    await asyncio.sleep(0)
    print("ready", flush=True)
    try:
        await runner
    finally:
        print(json.dumps({"stats": vars(worker.stats)}), flush=True)
        await queue.close()
        await engine.dispose()


async def enqueue(args: argparse.Namespace) -> None:
    engine = create_engine(args.url)
    queue = JobQueue(engine)
    try:
        async with engine.connect():
            pass  # connected before the barrier, so the race is about the enqueues alone
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await asyncio.gather(*(queue.enqueue(JobSpec(RECORD, idempotency_key=key)) for key in args.keys))
        outcome: dict[str, Any] = {
            key: [job.id, created] for key, (job, created) in zip(args.keys, results, strict=True)
        }
        print(json.dumps(outcome), flush=True)
    finally:
        await queue.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    work_parser = commands.add_parser("work")
    work_parser.add_argument("url")
    work_parser.add_argument("record_dir")
    work_parser.add_argument("--concurrency", type=int, default=8)
    work_parser.add_argument("--heartbeat", type=float, default=1.0)
    work_parser.add_argument("--stale-after", type=float, default=30.0)
    work_parser.add_argument("--poll", type=float, default=1.0)
    work_parser.add_argument("--worker-id")
    enqueue_parser = commands.add_parser("enqueue")
    enqueue_parser.add_argument("url")
    enqueue_parser.add_argument("keys", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(work(args) if args.command == "work" else enqueue(args))


if __name__ == "__main__":
    main()
