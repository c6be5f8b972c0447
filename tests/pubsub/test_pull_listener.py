"""The pull listener's supervision and its ack/nack rule, with the real google-cloud-pubsub client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from realtime_harness import PULL_SUBSCRIPTION, TOPIC, PubSubEmulator, eventually
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.config import load_settings
from mailtide.db.engine import create_engine
from mailtide.db.migrate import migrate
from mailtide.db.schema import STATUS_NORMAL
from mailtide.pubsub.intake import NotificationIntake
from mailtide.pubsub.pull import PullListener, subscriber_factory
from mailtide.queue.job_queue import JobQueue
from mailtide.store.accounts import create_account, update_account

EMAIL = "erin@mailtide.test"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'pull.db'}")
    await migrate(engine)
    account_id = await create_account(engine, EMAIL, client_id="c", client_secret="s", refresh_token="r")
    await update_account(engine, account_id, status=STATUS_NORMAL, history_id=10)
    yield engine
    await engine.dispose()


def listener_for(emulator: PubSubEmulator, engine: AsyncEngine) -> PullListener:
    settings = load_settings(pubsub_emulator_host=emulator.grpc.address, pubsub_subscriptions=[PULL_SUBSCRIPTION])
    return PullListener(PULL_SUBSCRIPTION, NotificationIntake(engine, JobQueue(engine)), subscriber_factory(settings))


def notification(history_id: int = 20) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"emailAddress": EMAIL, "historyId": history_id}).encode(), {}


async def test_a_missing_subscription_is_retried_until_it_exists(
    pubsub_emulator: PubSubEmulator, engine: AsyncEngine
) -> None:
    listener = listener_for(pubsub_emulator, engine)
    task = asyncio.create_task(listener.run())
    try:
        async def backing_off() -> bool:
            return listener.status.state == "backing_off"

        await eventually(backing_off, what="a failed first stream")
        assert "NotFound" in (listener.status.last_error or "")
        broker = pubsub_emulator.pubsub.broker
        broker.create_subscription(PULL_SUBSCRIPTION, TOPIC)
        broker.publish(TOPIC, [notification()])

        async def acknowledged() -> bool:
            return listener.status.acked == 1 and broker.backlog(PULL_SUBSCRIPTION) == (0, 0)

        await eventually(acknowledged, what="the message handled after the restart")
        assert listener.status.state == "listening" and listener.status.restarts >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert listener.status.state == "stopped"


async def test_nack_when_the_enqueue_cannot_commit_so_nothing_is_lost(
    pubsub_emulator: PubSubEmulator, tmp_path: Path
) -> None:
    broken = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite'}")
    broker = pubsub_emulator.pubsub.broker
    broker.create_subscription(PULL_SUBSCRIPTION, TOPIC)
    listener = listener_for(pubsub_emulator, broken)
    task = asyncio.create_task(listener.run())
    try:
        broker.publish(TOPIC, [notification()])

        async def redelivered() -> bool:
            return listener.status.nacked >= 2

        await eventually(redelivered, what="a nacked message coming back")
        assert listener.status.acked == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await broken.dispose()
    ready, leased = broker.backlog(PULL_SUBSCRIPTION)
    assert ready + leased == 1  # still there for the next listener
