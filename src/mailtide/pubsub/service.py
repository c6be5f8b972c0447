"""Real-time sync inside `mailtide serve`: one background service that runs the supervised pull
listeners (one per configured subscription) and the scheduler of the real-time periodic jobs
(polling fallback, watch sweep). The push endpoint is mounted on the API by `pubsub.push.api_router`.

`background_service(runtime)` is the seam `mailtide serve` looks for (mailtide/service.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from mailtide.pubsub.intake import NotificationIntake
from mailtide.queue.periodic import Scheduler
from mailtide.sync.realtime_schedules import realtime_schedules

if TYPE_CHECKING:
    from mailtide.pubsub.pull import PullListener
    from mailtide.runtime import Runtime

logger = logging.getLogger(__name__)


class RealtimeService:
    name = "realtime"

    def __init__(self, runtime: Runtime, *, intake: NotificationIntake | None = None) -> None:
        self.settings = runtime.settings
        self.intake = intake or NotificationIntake(runtime.engine, runtime.queue)
        # Any number of processes may run these schedules: each run is enqueued once per slot.
        self.scheduler = Scheduler(runtime.queue, realtime_schedules(runtime.settings))
        self.listeners: list[PullListener] = []
        self._stop = asyncio.Event()

    def _make_listeners(self) -> list[PullListener]:
        if not self.settings.pubsub_subscriptions:
            return []
        from mailtide.pubsub.pull import PullListener, subscriber_factory  # google-cloud-pubsub loads slowly

        make_client = subscriber_factory(self.settings)
        return [
            PullListener(name, self.intake, make_client, max_messages=self.settings.pubsub_max_outstanding_messages)
            for name in dict.fromkeys(self.settings.pubsub_subscriptions)
        ]

    async def run(self) -> None:
        """Listen and schedule until stop() is called; a listener that fails restarts on its own."""
        self._stop.clear()
        self.listeners = self._make_listeners()
        tasks = [asyncio.create_task(listener.run(), name=f"pubsub-pull:{listener.subscription}")
                 for listener in self.listeners]
        tasks.append(asyncio.create_task(self.scheduler.run(), name="realtime-scheduler"))
        logger.info("realtime.started pull=%s schedules=%s", [listener.subscription for listener in self.listeners],
                    [s.name for s in self.scheduler.schedules])
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            logger.info("realtime.stopped")

    async def stop(self, grace_seconds: float = 0.0) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        return {
            "pull": [vars(listener.status) for listener in self.listeners],
            "notifications": dict(self.intake.outcomes),
        }


def background_service(runtime: Runtime) -> RealtimeService:
    """Always present: without Pub/Sub the polling fallback is how new mail arrives."""
    return RealtimeService(runtime)
