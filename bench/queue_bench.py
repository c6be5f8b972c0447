"""Job queue throughput: mailtide (SQLite and PostgreSQL) next to procrastinate and pgqueuer.

    .venv/bin/python bench/queue_bench.py [--jobs 10000] [--single 1000] [--concurrency 16] [--rounds 3]

Three workloads of no-op jobs, the same for every system:
- enqueue, single: one job per call, awaited one after the other;
- enqueue, bulk: batches of 500 jobs per call (mailtide enqueue_many, procrastinate
  batch_defer_async, pgqueuer's list form of enqueue);
- claim + complete: `--jobs` queued jobs run to the end by one worker with `--concurrency` slots,
  in this process (mailtide Worker.run_until_idle, procrastinate run_worker_async(wait=False),
  pgqueuer QueueManager.run in drain mode, capped at the same concurrency, and once more with its
  defaults: batches of 10 and no cap on concurrent jobs).

For mailtide it also measures the wake-up latency: an idle worker polling only every 30 s, a job
enqueued through another engine (as from another process), and the time until its handler starts
(PostgreSQL: LISTEN/NOTIFY; SQLite has no cross-process wake-up, so there it is the in-process one).

Every system gets a database of its own on the same PostgreSQL server, created and dropped here
(SQLite: a temporary file). Each round runs every system once; the table shows the median over the
rounds, in jobs per second, and mailtide-on-PostgreSQL's ratio to each peer. A benchmark prints
figures; nothing here is a pass/fail test. Needs the `bench` extra (procrastinate, pgqueuer,
psycopg); a peer that cannot be imported is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from mailtide.db import create_engine, migrate
from mailtide.queue import Job, JobContext, JobQueue, JobSpec, LocalWakeUp, Worker

BULK_BATCH = 500
PGQUEUER_DEFAULTS = "pgqueuer, no cap"
WAKEUP_SAMPLES = 20
WORKLOADS = ("enqueue single", "enqueue bulk", "claim+complete")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Results:
    """jobs/s per (system, workload), one value per round."""

    rates: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    wakeup_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, system: str, workload: str, jobs: int, seconds: float) -> None:
        self.rates.setdefault((system, workload), []).append(jobs / seconds)
        print(f"  {system:<22} {workload:<16} {jobs / seconds:>10,.0f} jobs/s", flush=True)

    def median(self, system: str, workload: str) -> float | None:
        values = self.rates.get((system, workload))
        return statistics.median(values) if values else None


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- databases


@asynccontextmanager
async def scratch_database(server_url: str, system: str) -> AsyncIterator[str]:
    """CREATE DATABASE mt_bench_<system>_<random> on the server; its URL; DROP on exit."""
    name = f"mt_bench_{system}_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(server_url)
    admin = await asyncpg.connect(
        host=admin_url.host, port=admin_url.port or 5432, user=admin_url.username,
        password=admin_url.password, database=admin_url.database,
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# ---------------------------------------------------------------------------- mailtide


async def bench_mailtide(system: str, database_url: str, args: argparse.Namespace, results: Results) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    queue = JobQueue(engine)

    async def noop(job: Job, ctx: JobContext) -> None:
        return None

    try:
        async def single() -> None:
            for _ in range(args.single):
                await queue.enqueue(JobSpec("noop"))

        results.add(system, "enqueue single", args.single, await timed(single))

        async def bulk() -> None:
            for start in range(0, args.jobs, BULK_BATCH):
                await queue.enqueue_many([JobSpec("noop")] * min(BULK_BATCH, args.jobs - start))

        results.add(system, "enqueue bulk", args.jobs, await timed(bulk))
        worker = Worker(queue, {"noop": noop}, concurrency=args.concurrency, poll_seconds=0.05)
        seconds = await timed(lambda: worker.run_until_idle(timeout=3600))
        assert worker.stats.completed == args.jobs + args.single, worker.stats
        results.add(system, "claim+complete", args.jobs + args.single, seconds)
    finally:
        await queue.close()
        await engine.dispose()
    await wakeup_latencies(system, database_url, results)


async def wakeup_latencies(system: str, database_url: str, results: Results) -> None:
    """Enqueue -> handler start, for a worker that would otherwise find the job only at its 30 s poll."""
    worker_engine, producer_engine = create_engine(database_url), create_engine(database_url)
    queue = JobQueue(worker_engine)
    # On PostgreSQL the producer is "another process": its own engine, no in-process wake-up.
    producer = queue if worker_engine.dialect.name == "sqlite" else JobQueue(producer_engine, wakeup=LocalWakeUp())
    started: asyncio.Queue[float] = asyncio.Queue()

    async def note(job: Job, ctx: JobContext) -> None:
        started.put_nowait(time.perf_counter())

    worker = Worker(queue, {"note": note}, poll_seconds=30)
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(1.0)  # listening, idle
        for _ in range(WAKEUP_SAMPLES):
            enqueued_at = time.perf_counter()
            await producer.enqueue(JobSpec("note"))
            started_at = await asyncio.wait_for(started.get(), 60)
            results.wakeup_ms.setdefault(system, []).append((started_at - enqueued_at) * 1000)
            await asyncio.sleep(0.05)
    finally:
        await worker.stop(5)
        await asyncio.gather(runner, return_exceptions=True)
        await queue.close()
        await producer.close()
        await worker_engine.dispose()
        await producer_engine.dispose()
    samples = sorted(results.wakeup_ms[system][-WAKEUP_SAMPLES:])
    print(f"  {system:<22} wake-up latency  median {statistics.median(samples):.1f} ms, "
          f"max {samples[-1]:.1f} ms", flush=True)


# ---------------------------------------------------------------------------- procrastinate


async def bench_procrastinate(database_url: str, args: argparse.Namespace, results: Results) -> None:
    import procrastinate

    url = make_url(database_url)
    conninfo = f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        async def single() -> None:
            for _ in range(args.single):
                await noop.defer_async()

        results.add("procrastinate", "enqueue single", args.single, await timed(single))

        async def bulk() -> None:
            for start in range(0, args.jobs, BULK_BATCH):
                await noop.batch_defer_async(*([{}] * min(BULK_BATCH, args.jobs - start)))

        results.add("procrastinate", "enqueue bulk", args.jobs, await timed(bulk))
        seconds = await timed(lambda: app.run_worker_async(
            concurrency=args.concurrency, wait=False, install_signal_handlers=False
        ))
        results.add("procrastinate", "claim+complete", args.jobs + args.single, seconds)


# ---------------------------------------------------------------------------- pgqueuer


async def bench_pgqueuer(database_url: str, args: argparse.Namespace, results: Results) -> None:
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.models import Job as PgqJob
    from pgqueuer.types import QueueExecutionMode

    url = make_url(database_url)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database=url.database)

    producer = await connect()
    consumer = await connect()
    try:
        queries = Queries(AsyncpgDriver(producer))
        await queries.install()

        async def single() -> None:
            for _ in range(args.single):
                await queries.enqueue("noop", None)

        results.add("pgqueuer", "enqueue single", args.single, await timed(single))

        async def bulk() -> None:
            for start in range(0, args.jobs, BULK_BATCH):
                size = min(BULK_BATCH, args.jobs - start)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)

        results.add("pgqueuer", "enqueue bulk", args.jobs, await timed(bulk))
        done = 0

        async def drain(**limits: int) -> float:
            nonlocal done
            done = 0
            manager = QueueManager(Queries(AsyncpgDriver(consumer)))

            @manager.entrypoint("noop")
            async def noop(job: PgqJob) -> None:
                nonlocal done
                done += 1

            return await timed(lambda: manager.run(mode=QueueExecutionMode.drain, **limits))

        # Same concurrency as the others: at most --concurrency jobs at once, fetched half a cap at a time.
        seconds = await drain(batch_size=max(1, args.concurrency // 2), max_concurrent_tasks=args.concurrency)
        assert done == args.jobs + args.single, done
        results.add("pgqueuer", "claim+complete", args.jobs + args.single, seconds)
        # And as it comes: batches of 10, no cap on jobs at once.
        await bulk()
        seconds = await drain()
        assert done == args.jobs, done
        results.add(PGQUEUER_DEFAULTS, "claim+complete", args.jobs, seconds)
    finally:
        await consumer.close()
        await producer.close()


# ---------------------------------------------------------------------------- the run


def print_table(results: Results, systems: list[str], args: argparse.Namespace) -> None:
    print()
    print(f"jobs={args.jobs} single={args.single} concurrency={args.concurrency} rounds={args.rounds} "
          "(median jobs/s; higher is better)")
    print()
    print("| system | " + " | ".join(WORKLOADS) + " |")
    print("|---" * (len(WORKLOADS) + 1) + "|")
    for system in systems:
        cells = [results.median(system, w) for w in WORKLOADS]
        print(f"| {system} | " + " | ".join("-" if c is None else f"{c:,.0f}" for c in cells) + " |")
    ours = "mailtide postgresql"
    for peer in ("pgqueuer", PGQUEUER_DEFAULTS, "procrastinate"):
        if peer not in systems or ours not in systems:
            continue
        ratios = []
        for workload in WORKLOADS:
            mine, theirs = results.median(ours, workload), results.median(peer, workload)
            ratios.append("-" if not mine or not theirs else f"{mine / theirs:.2f}x")
        print(f"| {ours} / {peer} | " + " | ".join(ratios) + " |")
    if results.wakeup_ms:
        print()
        print("| wake-up latency: enqueue -> handler start, idle worker polling every 30 s | median | max |")
        print("|---|---|---|")
        for system, samples in results.wakeup_ms.items():
            print(f"| {system} | {statistics.median(samples):.1f} ms | {max(samples):.1f} ms |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs for bulk enqueue and claim+complete")
    parser.add_argument("--single", type=int, default=1_000, help="jobs enqueued one at a time")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="a database on the server to use")
    parser.add_argument("--only", help="comma-separated systems: mailtide-sqlite,mailtide-postgresql,"
                        "procrastinate,pgqueuer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("procrastinate", "pgqueuer", "PgQueuer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    runners: dict[str, Callable[[], Awaitable[None]]] = {}
    results = Results()

    async def mailtide_sqlite() -> None:
        with tempfile.TemporaryDirectory() as directory:
            await bench_mailtide("mailtide sqlite", f"sqlite:///{Path(directory) / 'bench.db'}", args, results)

    async def mailtide_postgresql() -> None:
        async with scratch_database(args.postgres_url, "mailtide") as url:
            await bench_mailtide("mailtide postgresql", url, args, results)

    async def procrastinate_run() -> None:
        async with scratch_database(args.postgres_url, "procrastinate") as url:
            await bench_procrastinate(url, args, results)

    async def pgqueuer_run() -> None:
        async with scratch_database(args.postgres_url, "pgqueuer") as url:
            await bench_pgqueuer(url, args, results)

    runners = {
        "mailtide sqlite": mailtide_sqlite,
        "mailtide postgresql": mailtide_postgresql,
        "procrastinate": procrastinate_run,
        "pgqueuer": pgqueuer_run,
    }
    if args.only:
        wanted = {name.strip().replace("-", " ") for name in args.only.split(",")}
        runners = {name: run for name, run in runners.items() if name in wanted}
    for peer in ("procrastinate", "pgqueuer"):
        try:
            __import__(peer)
        except ImportError:
            print(f"{peer} is not installed (pip install -e '.[bench]'): skipped", file=sys.stderr)
            runners.pop(peer, None)
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}/{args.rounds}", flush=True)
        for run in runners.values():
            await run()
    systems = list(runners)
    if "pgqueuer" in systems:
        systems.append(PGQUEUER_DEFAULTS)
    print_table(results, systems, args)


if __name__ == "__main__":
    asyncio.run(main())
