"""Real-time sync end to end on both backends: the emulator publishes Gmail notifications, the
real google-cloud-pubsub client pulls them (or the emulator pushes them to our endpoint), the
worker syncs, and the mirror equals the mailbox (verify's compare)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from realtime_harness import (
    PULL_SUBSCRIPTION,
    PUSH_AUDIENCE,
    PUSH_SERVICE_ACCOUNT,
    PUSH_SUBSCRIPTION,
    TOPIC,
    PubSubEmulator,
    Realtime,
    eventually,
    ham_raw,
    realtime_runtime,
    realtime_settings,
    running,
    serve_routers,
)

from mailtide.emulator.pubsub.broker import PushTarget
from mailtide.emulator.pubsub.faults import NotificationFaults
from mailtide.pubsub.push import PUSH_PATH, api_router
from mailtide.pubsub.service import PullListeners
from mailtide.store.accounts import get_account
from mailtide.sync.watch import request_watch


@pytest.fixture
async def realtime(pubsub_emulator: PubSubEmulator, database_url: str, tmp_path: Path) -> AsyncIterator[Realtime]:
    pubsub_emulator.pubsub.broker.create_subscription(PULL_SUBSCRIPTION, TOPIC)
    settings = realtime_settings(
        pubsub_emulator, database_url, tmp_path, pubsub_subscriptions=[PULL_SUBSCRIPTION],
        realtime_check_seconds=0.5,
    )
    async with realtime_runtime(settings, pubsub_emulator) as harness:
        yield harness


@pytest.fixture
async def live(realtime: Realtime) -> AsyncIterator[PullListeners]:
    """A worker and the pull listener running; the account watched."""
    worker = realtime.rt.worker()
    service = PullListeners(realtime.rt)
    async with running(worker.run, lambda: worker.stop(0)), running(service.run, service.stop):
        await request_watch(realtime.rt.queue, realtime.account_id)

        async def watch_announced() -> bool:  # Gmail's first notification after a watch has been handled
            return bool(service.listeners) and service.listeners[0].status.acked >= 1

        await eventually(watch_announced, what="the watch's notification")
        yield service


def change_mailbox(emulator: PubSubEmulator, rng: random.Random, count: int, first_ham: int = 40) -> None:
    mailbox = emulator.mailbox
    for step in range(count):
        ids = mailbox.message_ids()
        action = rng.choice(["add", "add", "label", "unlabel", "delete"])
        if action == "add":
            mailbox.add_message(ham_raw(first_ham + step))
        elif action == "label":
            mailbox.modify_labels(rng.choice(ids), add=["STARRED"], remove=["UNREAD"])
        elif action == "unlabel":
            mailbox.modify_labels(rng.choice(ids), remove=["INBOX"])
        else:
            mailbox.delete_message(rng.choice(ids))


async def test_pull_end_to_end(realtime: Realtime, live: PullListeners) -> None:
    emulator = realtime.emulator
    account = await get_account(realtime.rt.engine, realtime.account_id)
    change_mailbox(emulator, random.Random(1), 6)
    await realtime.converge(within=20)
    stored = await _watch_state(realtime)
    assert stored["watch_expiration"] is not None and stored["watch_error"] is None
    assert live.intake.outcomes["enqueued"] >= 1  # notifications, not the fallback (an hour away), did it
    assert live.listeners[0].status.state == "listening" and live.listeners[0].status.nacked == 0
    assert (await get_account(realtime.rt.engine, realtime.account_id)).history_id > account.history_id


async def test_push_end_to_end(
    pubsub_emulator: PubSubEmulator, database_url: str, tmp_path: Path
) -> None:
    settings = realtime_settings(pubsub_emulator, database_url, tmp_path)
    async with realtime_runtime(settings, pubsub_emulator) as realtime:
        router = api_router(realtime.rt)
        assert router is not None
        worker = realtime.rt.worker()
        async with serve_routers(router) as url, running(worker.run, lambda: worker.stop(0)):
            pubsub_emulator.pubsub.broker.create_subscription(
                PUSH_SUBSCRIPTION, TOPIC,
                push=PushTarget(url + PUSH_PATH, service_account_email=PUSH_SERVICE_ACCOUNT, audience=PUSH_AUDIENCE),
            )
            await request_watch(realtime.rt.queue, realtime.account_id)
            pushes = pubsub_emulator.pubsub.push

            async def watch_announced() -> bool:  # Gmail's first notification after a watch
                return pushes.stats.acknowledged == 1

            await eventually(watch_announced, what="the watch's notification")
            change_mailbox(pubsub_emulator, random.Random(2), 6)
            await realtime.converge(within=20)
        assert pushes.stats.acknowledged >= 2 and pushes.stats.rejected == 0  # the changes were pushed


@pytest.mark.parametrize(
    "faults",
    [
        NotificationFaults(drop_rate=1.0),  # nothing arrives: the polling fallback must catch up
        NotificationFaults(drop_rate=0.3, duplicate_rate=0.5, reorder_rate=0.5, reorder_seconds=0.4),
    ],
    ids=["all-dropped", "dropped-duplicated-reordered"],
)
async def test_faulty_notifications_still_converge(
    pubsub_emulator: PubSubEmulator, database_url: str, tmp_path: Path, faults: NotificationFaults
) -> None:
    pubsub_emulator.pubsub.broker.create_subscription(PULL_SUBSCRIPTION, TOPIC)
    settings = realtime_settings(
        pubsub_emulator, database_url, tmp_path, pubsub_subscriptions=[PULL_SUBSCRIPTION],
        history_poll_seconds=1.5, realtime_check_seconds=0.5,
    )
    notifier = pubsub_emulator.pubsub.notifier
    async with realtime_runtime(settings, pubsub_emulator) as realtime:
        worker, service = realtime.rt.worker(periodic=True), PullListeners(realtime.rt)  # periodic: the fallback
        async with running(worker.run, lambda: worker.stop(0)), running(service.run, service.stop):
            notifier.watch(pubsub_emulator.mailbox.email, TOPIC, history_id=pubsub_emulator.mailbox.history_id)
            notifier.interval = 0.0  # one notification per change: more for the faults to mangle
            notifier.faults = faults
            published_before, notified_before = notifier.stats.published, notifier.stats.notified
            rng = random.Random(3)
            for _ in range(4):
                change_mailbox(pubsub_emulator, rng, 4)
                await asyncio.sleep(0.2)
            await realtime.converge(within=30)
    stats = notifier.stats
    if faults.drop_rate == 1.0:  # nothing got through: the polling fallback did it all
        assert stats.published == published_before and stats.dropped == stats.notified - notified_before > 0
    else:  # every fault happened, and notifications arrived out of order
        published = list(stats.history_ids)[published_before:]
        assert stats.dropped > 0 and stats.duplicated > 0 and published != sorted(published)
    assert (await realtime.drift()).total == 0


async def test_a_burst_of_1000_notifications_makes_a_handful_of_history_syncs(
    realtime: Realtime, live: PullListeners
) -> None:
    emulator = realtime.emulator
    mailbox = emulator.mailbox
    emulator.pubsub.notifier.stop(mailbox.email)  # the changes below reach us only through the burst
    history_ids = []
    for index in range(25):  # real changes, so the burst carries real history ids
        starred = "STARRED" in mailbox.message_label_ids(mailbox.message_ids()[index % 10])
        mailbox.modify_labels(mailbox.message_ids()[index % 10], add=[] if starred else ["STARRED"],
                              remove=["STARRED"] if starred else [])
        history_ids.append(mailbox.history_id)
    assert (await realtime.drift()).total > 0
    syncs_before, acked_before = await realtime.history_syncs(), live.listeners[0].status.acked
    burst = [(json.dumps({"emailAddress": mailbox.email, "historyId": history_ids[i // 40]}).encode(), {})
             for i in range(1000)]
    emulator.pubsub.broker.publish(TOPIC, burst)

    async def all_handled() -> bool:
        acked = live.listeners[0].status.acked - acked_before
        return acked >= 1000 and emulator.pubsub.broker.backlog(PULL_SUBSCRIPTION) == (0, 0)

    await eventually(all_handled, within=60, what="1000 notifications acknowledged")
    await realtime.converge(within=20)
    made = await realtime.history_syncs() - syncs_before
    assert 1 <= made <= 5, f"{made} history syncs for a burst of 1000 notifications"
    assert live.intake.outcomes["up_to_date"] + live.intake.outcomes["enqueued"] >= 1000


async def test_malformed_and_unknown_pull_messages_are_acknowledged_once(
    realtime: Realtime, live: PullListeners
) -> None:
    broker = realtime.emulator.pubsub.broker
    listener = live.listeners[0].status
    received_before = listener.received
    broker.publish(TOPIC, [(b"not json at all", {}), (b'{"emailAddress": "x@y.test", "historyId": 5}', {})])

    async def settled() -> bool:
        return listener.received >= received_before + 2 and broker.backlog(PULL_SUBSCRIPTION) == (0, 0)

    await eventually(settled, what="both acknowledged")
    await asyncio.sleep(1.0)
    assert listener.received == received_before + 2  # acknowledged: never redelivered
    assert live.intake.outcomes["malformed"] == 1 and live.intake.outcomes["unknown_account"] == 1


async def _watch_state(realtime: Realtime) -> dict[str, object]:
    import sqlalchemy as sa

    from mailtide.db.schema import accounts

    async with realtime.rt.engine.connect() as conn:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.id == realtime.account_id))).one()
    return dict(row._mapping)
