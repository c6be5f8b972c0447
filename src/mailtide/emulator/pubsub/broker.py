"""An in-memory Pub/Sub broker: topics, subscriptions, publish, pull with leases, ack and nack.

Thread-safe (one lock and condition): the gRPC server's threads, the push deliverer and the Gmail
notifier all use it at once. Delivery is at least once, like Pub/Sub: a pulled message is leased
until its ack deadline; an expired or nacked lease puts it back in front of the queue.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

TOPIC_NAME = re.compile(r"^projects/[^/\s]+/topics/[^/\s]+$")
SUBSCRIPTION_NAME = re.compile(r"^projects/[^/\s]+/subscriptions/[^/\s]+$")
DEFAULT_ACK_DEADLINE = 10.0
MIN_ACK_DEADLINE, MAX_ACK_DEADLINE = 10, 600


class BrokerError(Exception):
    """Base of the broker's errors; `code` names the gRPC status the server answers with."""

    code = "INTERNAL"


class NotFound(BrokerError):
    code = "NOT_FOUND"


class AlreadyExists(BrokerError):
    code = "ALREADY_EXISTS"


class InvalidArgument(BrokerError):
    code = "INVALID_ARGUMENT"


@dataclass(frozen=True)
class PubSubMessage:
    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    publish_time: float


@dataclass(frozen=True)
class PushTarget:
    """Where and how a push subscription delivers: the endpoint and the OIDC token it attaches."""

    endpoint: str
    service_account_email: str | None = None  # None: no Authorization header
    audience: str | None = None  # None: the endpoint URL, as Pub/Sub does


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message: the ack id to acknowledge it with, and how often it was delivered."""

    ack_id: str
    message: PubSubMessage
    delivery_attempt: int


@dataclass
class _Lease:
    message: PubSubMessage
    attempt: int
    deadline: float


@dataclass
class Subscription:
    name: str
    topic: str
    ack_deadline_seconds: float = DEFAULT_ACK_DEADLINE
    push: PushTarget | None = None
    min_backoff: float = 0.1  # push retries (RetryPolicy); short defaults suit tests
    max_backoff: float = 10.0
    ready: deque[tuple[PubSubMessage, int]] = field(default_factory=deque)  # (message, deliveries so far)
    leases: dict[str, _Lease] = field(default_factory=dict)


class Broker:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._topics: dict[str, list[str]] = {}  # topic -> subscription names
        self._subscriptions: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._ack_ids = itertools.count(1)
        # Called (outside the lock) for each message published to a push subscription.
        self.push_listener: Callable[[Subscription, PubSubMessage], None] | None = None
        self.published = 0

    # ------------------------------------------------------------------ topics
    def create_topic(self, name: str) -> None:
        if not TOPIC_NAME.match(name):
            raise InvalidArgument(f"Invalid resource name given (name={name}). Refer to the naming documentation.")
        with self._lock:
            if name in self._topics:
                raise AlreadyExists("Topic already exists")
            self._topics[name] = []
        logger.info("emulator.pubsub.topic_created topic=%s", name)

    def ensure_topic(self, name: str) -> None:
        try:
            self.create_topic(name)
        except AlreadyExists:
            pass

    def has_topic(self, name: str) -> bool:
        with self._lock:
            return name in self._topics

    def topics(self) -> list[str]:
        with self._lock:
            return sorted(self._topics)

    def delete_topic(self, name: str) -> None:
        with self._lock:
            if self._topics.pop(name, None) is None:
                raise NotFound("Topic not found")

    # ----------------------------------------------------------- subscriptions
    def create_subscription(
        self,
        name: str,
        topic: str,
        *,
        ack_deadline_seconds: float | None = None,
        push: PushTarget | None = None,
        min_backoff: float | None = None,
        max_backoff: float | None = None,
    ) -> Subscription:
        if not SUBSCRIPTION_NAME.match(name):
            raise InvalidArgument(f"Invalid resource name given (name={name}). Refer to the naming documentation.")
        deadline = ack_deadline_seconds or DEFAULT_ACK_DEADLINE
        if not MIN_ACK_DEADLINE <= deadline <= MAX_ACK_DEADLINE:
            raise InvalidArgument(f"ack_deadline_seconds must be between {MIN_ACK_DEADLINE} and {MAX_ACK_DEADLINE}")
        with self._lock:
            if topic not in self._topics:
                raise NotFound("Topic not found")
            if name in self._subscriptions:
                raise AlreadyExists("Subscription already exists")
            subscription = Subscription(name, topic, deadline, push)
            if min_backoff:
                subscription.min_backoff = min_backoff
            if max_backoff:
                subscription.max_backoff = max(max_backoff, subscription.min_backoff)
            self._subscriptions[name] = subscription
            self._topics[topic].append(name)
        logger.info("emulator.pubsub.subscription_created subscription=%s topic=%s push=%s", name, topic, push)
        return subscription

    def subscription(self, name: str) -> Subscription:
        with self._lock:
            try:
                return self._subscriptions[name]
            except KeyError:
                raise NotFound("Subscription does not exist") from None

    def subscriptions(self, topic: str | None = None) -> list[Subscription]:
        with self._lock:
            return [s for s in self._subscriptions.values() if topic is None or s.topic == topic]

    def delete_subscription(self, name: str) -> None:
        with self._lock:
            subscription = self._subscriptions.pop(name, None)
            if subscription is None:
                raise NotFound("Subscription does not exist")
            names = self._topics.get(subscription.topic)
            if names is not None and name in names:
                names.remove(name)
            self._changed.notify_all()

    # ----------------------------------------------------------------- publish
    def publish(self, topic: str, messages: Iterable[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        """Store each (data, attributes) for every subscription of the topic; returns the message ids."""
        pushes: list[tuple[Subscription, PubSubMessage]] = []
        ids: list[str] = []
        with self._lock:
            if topic not in self._topics:
                raise NotFound("Topic not found")
            targets = [self._subscriptions[name] for name in self._topics[topic]]
            now = self._clock()
            for data, attributes in messages:
                message = PubSubMessage(str(next(self._ids)), bytes(data), dict(attributes), now)
                ids.append(message.message_id)
                self.published += 1
                for subscription in targets:
                    if subscription.push is not None:
                        pushes.append((subscription, message))
                    else:
                        subscription.ready.append((message, 0))
            self._changed.notify_all()
        listener = self.push_listener
        for subscription, message in pushes:
            if listener is None:
                logger.warning("emulator.pubsub.push_dropped subscription=%s: no push deliverer", subscription.name)
            else:
                listener(subscription, message)
        return ids

    # -------------------------------------------------------------------- pull
    def pull(
        self, name: str, max_messages: int, *, wait: float = 0.0, ack_deadline: float | None = None
    ) -> list[Delivery]:
        """Lease up to `max_messages` ready messages, waiting up to `wait` seconds for the first."""
        deadline_at = time.monotonic() + wait
        with self._lock:
            while True:
                subscription = self.subscription(name)
                self._expire_leases(subscription)
                if subscription.ready or max_messages <= 0:
                    break
                remaining = deadline_at - time.monotonic()
                if remaining <= 0:
                    return []
                # Wake up at least when the earliest lease expires, so redeliveries are not late.
                self._changed.wait(min(remaining, self._next_expiry(subscription)))
            leased: list[Delivery] = []
            seconds = ack_deadline or subscription.ack_deadline_seconds
            while subscription.ready and len(leased) < max_messages:
                message, attempts = subscription.ready.popleft()
                ack_id = f"{next(self._ack_ids)}-{message.message_id}"
                subscription.leases[ack_id] = _Lease(message, attempts + 1, self._clock() + seconds)
                leased.append(Delivery(ack_id, message, attempts + 1))
            return leased

    def acknowledge(self, name: str, ack_ids: Iterable[str]) -> int:
        """Forget leased messages; unknown or expired ack ids are ignored (as Pub/Sub does)."""
        with self._lock:
            subscription = self.subscription(name)
            return sum(subscription.leases.pop(ack_id, None) is not None for ack_id in ack_ids)

    def modify_ack_deadline(self, name: str, ack_ids: Iterable[str], seconds: float) -> None:
        """Extend leases; 0 seconds is a nack: the message is ready for redelivery at once."""
        with self._lock:
            subscription = self.subscription(name)
            for ack_id in ack_ids:
                lease = subscription.leases.get(ack_id)
                if lease is None:
                    continue
                if seconds <= 0:
                    del subscription.leases[ack_id]
                    subscription.ready.appendleft((lease.message, lease.attempt))
                else:
                    lease.deadline = self._clock() + seconds
            self._changed.notify_all()

    def still_leased(self, name: str, ack_ids: Iterable[str]) -> set[str]:
        """The ack ids among `ack_ids` whose lease is still held (not acked, nacked or expired)."""
        with self._lock:
            subscription = self._subscriptions.get(name)
            if subscription is None:
                return set()
            self._expire_leases(subscription)
            return {ack_id for ack_id in ack_ids if ack_id in subscription.leases}

    def backlog(self, name: str) -> tuple[int, int]:
        """(ready, leased) message counts of a subscription."""
        with self._lock:
            subscription = self.subscription(name)
            self._expire_leases(subscription)
            return len(subscription.ready), len(subscription.leases)

    def wake_all(self) -> None:
        with self._lock:
            self._changed.notify_all()

    def _expire_leases(self, subscription: Subscription) -> None:
        now = self._clock()
        expired = [ack_id for ack_id, lease in subscription.leases.items() if lease.deadline <= now]
        for ack_id in reversed(expired):
            lease = subscription.leases.pop(ack_id)
            subscription.ready.appendleft((lease.message, lease.attempt))

    def _next_expiry(self, subscription: Subscription) -> float:
        if not subscription.leases:
            return 1.0
        earliest = min(lease.deadline for lease in subscription.leases.values())
        return max(0.01, min(1.0, earliest - self._clock()))
