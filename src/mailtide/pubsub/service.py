"""Real-time sync inside `mailtide serve`: a background service running the supervised pull
listeners, one per configured subscription. The push endpoint is mounted on the API by
`pubsub.push.api_router`; watch renewal and the polling fallback are periodic jobs of the worker's
scheduler (sync/schedules.py).

`background_service(runtime)` is the seam `mailtide serve` looks for (mailtide/service.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from mailtide.pubsub.intake import NotificationIntake

if TYPE_CHECKING:
    from mailtide.pubsub.pull import PullListener
    from mailtide.runtime import Runtime

logger = logging.getLogger(__name__)


class PullListeners:
    name = "pubsub-pull"

    def __init__(self, runtime: Runtime, *, intake: NotificationIntake | None = None) -> None:
        self.settings = runtime.settings
        self.intake = intake or NotificationIntake(runtime.engine, runtime.queue)
        self.listeners: list[PullListener] = []
        self._stop = asyncio.Event()

    def _make_listeners(self) -> list[PullListener]:
        from mailtide.pubsub.pull import PullListener, subscriber_factory  # google-cloud-pubsub loads slowly

        make_client = subscriber_factory(self.settings)
        return [
            PullListener(name, self.intake, make_client, max_messages=self.settings.pubsub_max_outstanding_messages)
            for name in dict.fromkeys(self.settings.pubsub_subscriptions)
        ]

    async def run(self) -> None:
        """Listen until stop() is called; a listener whose stream fails reopens it on its own."""
        self._stop.clear()
        self.listeners = self._make_listeners()
        tasks = [asyncio.create_task(listener.run(), name=f"pubsub-pull:{listener.subscription}")
                 for listener in self.listeners]
        logger.info("pubsub.pull.started subscriptions=%s", [listener.subscription for listener in self.listeners])
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            logger.info("pubsub.pull.stopped")

    async def stop(self, grace_seconds: float = 0.0) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        return {
            "pull": [vars(listener.status) for listener in self.listeners],
            "notifications": dict(self.intake.outcomes),
        }


def background_service(runtime: Runtime) -> PullListeners | None:
    """The pull listeners when subscriptions are configured (push needs no background service)."""
    return PullListeners(runtime) if runtime.settings.pubsub_subscriptions else None
