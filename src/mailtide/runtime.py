"""Wiring: settings -> migrated database, queue, Gmail clients, handlers and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.config import Settings
from mailtide.db.engine import create_engine
from mailtide.db.migrate import migrate
from mailtide.observability import Telemetry
from mailtide.queue.job_queue import JobQueue
from mailtide.queue.periodic import Scheduler
from mailtide.queue.worker import Worker
from mailtide.secrets import SecretBox
from mailtide.sync.handlers import build_handlers
from mailtide.sync.jobtypes import REALTIME_MIN_PRIORITY
from mailtide.sync.schedules import schedule_handlers, sync_schedules
from mailtide.sync.services import GmailClients, SyncServices


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    queue: JobQueue
    services: SyncServices
    telemetry: Telemetry = field(default_factory=Telemetry)
    secrets: SecretBox | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Runtime]:
        """Apply migrations, then yield the wired runtime; everything is closed on exit."""
        engine = create_engine(settings.database_url)
        await migrate(engine)
        queue = JobQueue(engine)
        telemetry = Telemetry.from_settings(settings)
        secrets = SecretBox.from_settings(settings)
        gmail = GmailClients(engine, settings, wrap_transport=telemetry.wrap_transport, secrets=secrets)
        try:
            services = SyncServices(engine, queue, settings, gmail)
            yield cls(settings, engine, queue, services, telemetry, secrets)
        finally:
            await gmail.aclose()
            await queue.close()  # PostgreSQL: its LISTEN connection, before the pool goes
            await engine.dispose()
            telemetry.shutdown()

    def scheduler(self) -> Scheduler:
        """Enqueues the periodic jobs (history poll fallback, labels refresh, pruning)."""
        return Scheduler(self.queue, sync_schedules(self.settings))

    def worker(self, *, periodic: bool = False) -> Worker:
        """A worker for every job type. periodic=True: it also schedules the periodic jobs, as
        long-running services should (`mailtide worker`, `mailtide serve`); runs to idle don't."""
        return Worker(
            self.queue,
            self.telemetry.instrument({**build_handlers(self.services), **schedule_handlers(self.services)}),
            scheduler=self.scheduler() if periodic else None,
            concurrency=self.settings.worker_concurrency,
            reserved_slots=min(self.settings.worker_reserved_slots, self.settings.worker_concurrency - 1),
            reserved_min_priority=REALTIME_MIN_PRIORITY,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            poll_seconds=self.settings.poll_seconds,
            shutdown_grace_seconds=self.settings.shutdown_grace_seconds,
        )
