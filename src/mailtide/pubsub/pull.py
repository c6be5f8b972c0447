"""The pull listener: a google-cloud-pubsub streaming pull on one subscription, for deployments
that cannot receive pushes (behind NAT). Messages are acknowledged only after the history sync is
durably enqueued (malformed ones and unknown accounts after logging); a failure nacks, so Pub/Sub
redelivers. The stream is supervised: when it ends with an error it is reopened with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.message import Message

from mailtide.config import Settings
from mailtide.pubsub.intake import NotificationIntake

logger = logging.getLogger(__name__)

HANDLER_TIMEOUT_SECONDS = 60.0
RESTART_BASE_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
HEALTHY_AFTER_SECONDS = 60.0  # a stream that ran this long resets the backoff
MAX_LEASE_SECONDS = 600.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0

SubscriberFactory = Callable[[], pubsub_v1.SubscriberClient]


def subscriber_factory(settings: Settings) -> SubscriberFactory:
    """How to build the subscriber client: an emulator (plain gRPC), a service account file, or
    the application default credentials (PUBSUB_EMULATOR_HOST in the environment also works)."""

    def make() -> pubsub_v1.SubscriberClient:
        if settings.pubsub_emulator_host:
            import grpc
            from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

            channel = grpc.insecure_channel(settings.pubsub_emulator_host)
            return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
        if settings.pubsub_credentials_file is not None:
            return pubsub_v1.SubscriberClient.from_service_account_file(str(settings.pubsub_credentials_file))
        return pubsub_v1.SubscriberClient()

    return make


@dataclass
class ListenerStatus:
    subscription: str
    state: str = "starting"  # starting | listening | backing_off | stopped
    received: int = 0
    acked: int = 0
    nacked: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_message_at: float | None = None


class PullListener:
    def __init__(
        self,
        subscription: str,
        intake: NotificationIntake,
        make_client: SubscriberFactory,
        *,
        max_messages: int = 100,
    ) -> None:
        self.subscription = subscription
        self.intake = intake
        self._make_client = make_client
        self._flow_control = pubsub_v1.types.FlowControl(
            max_messages=max_messages, max_bytes=10 * 1024 * 1024, max_lease_duration=MAX_LEASE_SECONDS
        )
        self.status = ListenerStatus(subscription)

    async def run(self) -> None:
        """Listen until cancelled; a stream that fails is reopened after a jittered, growing delay."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._listen_once(loop)
                error = "the stream ended"
            except asyncio.CancelledError:
                self.status.state = "stopped"
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            failures = 1 if time.monotonic() - started > HEALTHY_AFTER_SECONDS else failures + 1
            delay = min(RESTART_MAX_SECONDS, RESTART_BASE_SECONDS * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
            self.status.state, self.status.last_error = "backing_off", error
            self.status.restarts += 1
            logger.warning(
                "pubsub.pull.stream_failed subscription=%s error=%s restart_in=%.1fs", self.subscription, error, delay
            )
            await asyncio.sleep(delay)

    async def _listen_once(self, loop: asyncio.AbstractEventLoop) -> None:
        client = await asyncio.to_thread(self._make_client)
        future = None
        try:
            future = client.subscribe(
                self.subscription,
                callback=lambda message: self._on_message(loop, message),
                flow_control=self._flow_control,
                await_callbacks_on_shutdown=True,
            )
            self.status.state = "listening"
            logger.info("pubsub.pull.listening subscription=%s", self.subscription)
            await asyncio.shield(asyncio.wrap_future(future))
        finally:
            if future is not None and not future.done():
                future.cancel()  # stops the stream; in-flight callbacks finish (they may need this loop)
                await asyncio.to_thread(_wait_quietly, future)
            await asyncio.to_thread(client.close)

    def _on_message(self, loop: asyncio.AbstractEventLoop, message: Message) -> None:
        """Runs on the client's callback threads: hand over to the event loop, ack once it is safe."""
        self.status.received += 1
        self.status.last_message_at = time.time()
        try:
            accepted = asyncio.run_coroutine_threadsafe(
                self.intake.accept_data(message.data, source="pull", message_id=message.message_id), loop
            )
            accepted.result(timeout=HANDLER_TIMEOUT_SECONDS)
        except Exception as exc:  # database down, loop closing, timeout: let Pub/Sub redeliver
            self.status.nacked += 1
            logger.warning(
                "pubsub.pull.nack subscription=%s message_id=%s error=%s: %s",
                self.subscription, message.message_id, type(exc).__name__, exc,
            )
            message.nack()
            return
        self.status.acked += 1
        message.ack()


def _wait_quietly(future: Any) -> None:
    try:
        future.result(timeout=SHUTDOWN_TIMEOUT_SECONDS)
    except (FutureTimeout, Exception):
        pass
