"""The emulator's Pub/Sub side: users.watch / users.stop through our Gmail client, the notifications
it publishes (rate, label filter, faults), and its gRPC API driven by the real google-cloud-pubsub."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from realtime_harness import CLIENT_ID, CLIENT_SECRET, EMAIL, PROJECT, REFRESH_TOKEN, TOPIC, PubSubEmulator, ham_raw

from mailtide.emulator.pubsub.faults import NotificationFaults
from mailtide.gmail.auth import OAuthTokenSource
from mailtide.gmail.client import GmailClient
from mailtide.gmail.errors import GmailError

SUBSCRIPTION = f"{PROJECT}/subscriptions/probe"


@pytest.fixture
async def gmail(pubsub_emulator: PubSubEmulator) -> AsyncIterator[GmailClient]:
    url = pubsub_emulator.server.url
    async with httpx.AsyncClient() as http:
        tokens = OAuthTokenSource(
            http, token_url=url + "/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
        )
        yield GmailClient(http, tokens, api_url=url)


@pytest.fixture
def probe(pubsub_emulator: PubSubEmulator) -> str:
    pubsub_emulator.pubsub.broker.create_subscription(SUBSCRIPTION, TOPIC)
    return SUBSCRIPTION


def published(emulator: PubSubEmulator, subscription: str, wait: float = 0.3) -> list[dict[str, object]]:
    """Everything that reached `subscription` within `wait` seconds (acknowledged on the way)."""
    broker = emulator.pubsub.broker
    found = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        deliveries = broker.pull(subscription, 100, wait=0.05)
        broker.acknowledge(subscription, [d.ack_id for d in deliveries])
        found.extend(json.loads(d.message.data) for d in deliveries)
    return found


async def test_watch_then_changes_publish_notifications_with_numeric_history_ids(
    pubsub_emulator: PubSubEmulator, gmail: GmailClient, probe: str
) -> None:
    started = time.time()
    response = await gmail.watch(TOPIC)
    assert response.history_id == pubsub_emulator.mailbox.history_id
    assert 6.9 * 86400 < response.expiration / 1000 - started < 7.1 * 86400
    # Gmail announces a new watch at once.
    assert published(pubsub_emulator, probe) == [{"emailAddress": EMAIL, "historyId": response.history_id}]
    pubsub_emulator.state.pubsub.notifier.interval = 0.0
    message_id = pubsub_emulator.mailbox.add_message(ham_raw(20))
    first = published(pubsub_emulator, probe)
    assert first == [{"emailAddress": EMAIL, "historyId": pubsub_emulator.mailbox.history_id}]
    assert isinstance(first[0]["historyId"], int)
    await gmail.stop()
    pubsub_emulator.mailbox.modify_labels(message_id, add=["STARRED"])
    assert published(pubsub_emulator, probe) == []


async def test_at_most_one_notification_per_second_and_the_last_change_is_announced(
    pubsub_emulator: PubSubEmulator, gmail: GmailClient, probe: str
) -> None:
    await gmail.watch(TOPIC)
    published(pubsub_emulator, probe)
    await asyncio.sleep(1.0)  # let the watch's own notification leave the one-second window
    ids = [pubsub_emulator.mailbox.add_message(ham_raw(30 + i)) for i in range(5)]
    immediate = published(pubsub_emulator, probe, wait=0.3)
    trailing = published(pubsub_emulator, probe, wait=1.2)
    assert len(immediate) == 1 and len(trailing) == 1
    assert trailing[0]["historyId"] == pubsub_emulator.mailbox.get_message(ids[-1]).history_id


@pytest.mark.parametrize("behavior", ["include", "INCLUDE", "exclude", "Exclude"])
async def test_label_filter_behaviour_in_either_case(
    pubsub_emulator: PubSubEmulator, probe: str, behavior: str
) -> None:
    mailbox = pubsub_emulator.mailbox
    token = pubsub_emulator.state.access_token_for(EMAIL)
    body = {"topicName": TOPIC, "labelIds": ["STARRED"], "labelFilterBehavior": behavior}
    async with httpx.AsyncClient(base_url=pubsub_emulator.server.url) as http:
        response = await http.post("/gmail/v1/users/me/watch", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    pubsub_emulator.pubsub.notifier.interval = 0.0
    published(pubsub_emulator, probe)
    inbox_only = mailbox.message_ids()[0]
    mailbox.modify_labels(inbox_only, add=["IMPORTANT"])
    on_inbox = published(pubsub_emulator, probe)
    mailbox.modify_labels(inbox_only, add=["STARRED"])
    on_starred = published(pubsub_emulator, probe)
    if behavior.lower() == "include":
        assert (len(on_inbox), len(on_starred)) == (0, 1)
    else:
        assert (len(on_inbox), len(on_starred)) == (1, 0)


async def test_watch_errors(pubsub_emulator: PubSubEmulator, gmail: GmailClient) -> None:
    with pytest.raises(GmailError) as missing:
        await gmail.watch(f"{PROJECT}/topics/nope")
    assert missing.value.status == 404
    with pytest.raises(GmailError) as malformed:
        await gmail.watch("my-topic")
    assert malformed.value.status == 400
    token = pubsub_emulator.state.access_token_for(EMAIL)
    for body in [{"topicName": TOPIC, "labelFilterBehavior": "sometimes"}, {"topicName": TOPIC, "labelIds": ["NOPE"]}]:
        async with httpx.AsyncClient(base_url=pubsub_emulator.server.url) as http:
            response = await http.post("/gmail/v1/users/me/watch", json=body,
                                       headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400, response.text
    assert pubsub_emulator.pubsub.notifier.watch_of(EMAIL) is None


async def test_fault_modes(pubsub_emulator: PubSubEmulator, gmail: GmailClient, probe: str) -> None:
    notifier = pubsub_emulator.pubsub.notifier
    await gmail.watch(TOPIC)
    published(pubsub_emulator, probe)
    notifier.interval = 0.0
    mailbox = pubsub_emulator.mailbox
    first = mailbox.message_ids()[0]

    notifier.faults = NotificationFaults(drop_rate=1.0)
    mailbox.modify_labels(first, add=["STARRED"])
    assert published(pubsub_emulator, probe) == []

    notifier.faults = NotificationFaults(duplicate_rate=1.0)
    mailbox.modify_labels(first, remove=["STARRED"])
    assert len(published(pubsub_emulator, probe)) == 2

    notifier.faults = NotificationFaults(delay_seconds=0.4)
    mailbox.modify_labels(first, add=["STARRED"])
    assert published(pubsub_emulator, probe, wait=0.2) == []
    assert len(published(pubsub_emulator, probe, wait=0.5)) == 1

    # Reorder: the first notification is held back, so the second overtakes it.
    notifier.faults = NotificationFaults(reorder_rate=1.0, reorder_seconds=0.3)
    mailbox.modify_labels(first, remove=["STARRED"])
    held = mailbox.history_id
    notifier.faults = NotificationFaults()
    mailbox.modify_labels(first, add=["STARRED"])
    order = [n["historyId"] for n in published(pubsub_emulator, probe, wait=0.8)]
    assert order == [mailbox.history_id, held]

    with pytest.raises(ValueError):
        NotificationFaults(drop_rate=1.5)
    async with httpx.AsyncClient(base_url=pubsub_emulator.server.url) as http:
        admin = await http.put("/_emulator/pubsub/faults", json={"dropRate": 0.25})
    assert admin.status_code == 200 and notifier.faults.drop_rate == 0.25


# ------------------------------------------------------------------ gRPC with the real client
@pytest.fixture
def emulator_host(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.grpc.address)
    yield os.environ["PUBSUB_EMULATOR_HOST"]


def test_google_cloud_pubsub_publish_streaming_pull_ack_and_nack(emulator_host: str) -> None:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, subscription = f"{PROJECT}/topics/grpc", f"{PROJECT}/subscriptions/grpc"
    publisher.create_topic(name=topic)
    with pytest.raises(gexc.AlreadyExists):
        publisher.create_topic(name=topic)
    created = subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)
    assert created.ack_deadline_seconds == 10 and subscriber.get_subscription(subscription=subscription).topic == topic
    with pytest.raises(gexc.NotFound):
        subscriber.get_subscription(subscription=f"{PROJECT}/subscriptions/none")

    deliveries: dict[bytes, int] = {}
    done = threading.Event()
    lock = threading.Lock()

    def callback(message: pubsub_v1.subscriber.message.Message) -> None:
        with lock:
            deliveries[message.data] = deliveries.get(message.data, 0) + 1
            first_time = deliveries[message.data] == 1
        if message.data == b"nack-once" and first_time:
            message.nack()  # must come back
            return
        message.ack()
        with lock:
            if len(deliveries) == 20 and deliveries.get(b"nack-once") == 2:
                done.set()

    future = subscriber.subscribe(subscription, callback)
    try:
        for index in range(19):
            publisher.publish(topic, f"m{index}".encode()).result(timeout=10)
        publisher.publish(topic, b"nack-once").result(timeout=10)
        assert done.wait(10), deliveries
    finally:
        future.cancel()
        future.result(timeout=10)
        subscriber.close()
    assert all(count == 1 for data, count in deliveries.items() if data != b"nack-once")
    # Everything acknowledged: a unary pull finds nothing left.
    leftover = pubsub_v1.SubscriberClient().pull(subscription=subscription, max_messages=10, timeout=10)
    assert leftover.received_messages == []


def test_unary_pull_modify_ack_deadline_and_expiry(emulator_host: str, pubsub_emulator: PubSubEmulator) -> None:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, subscription = f"{PROJECT}/topics/unary", f"{PROJECT}/subscriptions/unary"
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    publisher.publish(topic, b"hello").result(timeout=10)
    received = subscriber.pull(subscription=subscription, max_messages=5, timeout=10).received_messages
    assert [m.message.data for m in received] == [b"hello"]
    ack_id = received[0].ack_id
    subscriber.modify_ack_deadline(subscription=subscription, ack_ids=[ack_id], ack_deadline_seconds=0)
    again = subscriber.pull(subscription=subscription, max_messages=5, timeout=10).received_messages
    assert [m.message.data for m in again] == [b"hello"] and again[0].ack_id != ack_id
    subscriber.acknowledge(subscription=subscription, ack_ids=[again[0].ack_id])
    assert pubsub_emulator.pubsub.broker.backlog(subscription) == (0, 0)
