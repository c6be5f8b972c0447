"""Gmail's side of push notifications: users.watch / users.stop, and a notification published to
the watched topic on every mailbox change, at most one per second per user (as Gmail does).

Gmail drops notifications above that rate; the emulator instead folds them into one trailing
notification with the latest history id, so a burst costs latency, never the last change (a lost
notification is what the `drop` fault mode is for).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailtide.emulator.history import HistoryRecord
from mailtide.emulator.pubsub.broker import TOPIC_NAME, Broker, BrokerError, InvalidArgument, NotFound
from mailtide.emulator.pubsub.faults import NotificationFaults
from mailtide.emulator.pubsub.scheduler import Scheduler

logger = logging.getLogger(__name__)

WATCH_LIFETIME_SECONDS = 7 * 24 * 3600
DEFAULT_INTERVAL_SECONDS = 1.0
FilterBehavior = Literal["include", "exclude"]


@dataclass(frozen=True)
class GmailWatch:
    email: str
    topic: str
    label_ids: tuple[str, ...]
    behavior: FilterBehavior
    expiration: float  # epoch seconds

    def covers(self, record: HistoryRecord) -> bool:
        """Whether a change is announced under this watch's label filter."""
        if not self.label_ids:
            return True
        wanted = set(self.label_ids)
        entries = [entry for entries in record.changes.values() for entry in entries]
        touched = [set(e["message"].get("labelIds", ())) | set(e.get("labelIds", ())) for e in entries]
        if self.behavior == "include":
            return any(labels & wanted for labels in touched)
        return any(not labels & wanted for labels in touched)


@dataclass
class _Pace:
    last_sent: float = float("-inf")  # monotonic
    trailing: bool = False
    latest: int = 0


@dataclass
class NotifierStats:
    notified: int = 0  # notifications Gmail decided to send
    coalesced: int = 0  # changes folded into a pending trailing notification
    dropped: int = 0
    duplicated: int = 0
    published: int = 0
    failed: int = 0  # the topic vanished
    history_ids: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))  # published, in order


class GmailNotifier:
    def __init__(
        self,
        broker: Broker,
        scheduler: Scheduler,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        seed: int | None = None,
    ) -> None:
        self._broker = broker
        self._scheduler = scheduler
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._watches: dict[str, GmailWatch] = {}
        self._pace: dict[str, _Pace] = {}
        self.interval = interval
        self.faults = NotificationFaults()
        self.stats = NotifierStats()

    # ----------------------------------------------------------------- watches
    def watch(
        self,
        email: str,
        topic: str,
        *,
        label_ids: Sequence[str] = (),
        behavior: FilterBehavior = "include",
        history_id: int,
    ) -> GmailWatch:
        """Create or replace the user's watch; a notification follows at once, as with Gmail."""
        if not TOPIC_NAME.match(topic or ""):
            raise InvalidArgument("Invalid topicName does not match projects/SOME-PROJECT/topics/*")
        if not self._broker.has_topic(topic):
            raise NotFound(f"Resource not found (resource={topic}).")
        watch = GmailWatch(email, topic, tuple(label_ids), behavior, self._clock() + WATCH_LIFETIME_SECONDS)
        with self._lock:
            self._watches[email.lower()] = watch
        logger.info("emulator.gmail.watch email=%s topic=%s labels=%s behavior=%s", email, topic, label_ids, behavior)
        self.notify(email, history_id)
        return watch

    def stop(self, email: str) -> bool:
        with self._lock:
            stopped = self._watches.pop(email.lower(), None) is not None
        logger.info("emulator.gmail.stop email=%s had_watch=%s", email, stopped)
        return stopped

    def watch_of(self, email: str) -> GmailWatch | None:
        with self._lock:
            watch = self._watches.get(email.lower())
        if watch is not None and watch.expiration <= self._clock():
            return None
        return watch

    # ----------------------------------------------------------- notifications
    def mailbox_changed(self, email: str, record: HistoryRecord) -> None:
        """The mailbox hook: called (under the mailbox lock) after each history record; must be quick."""
        watch = self.watch_of(email)
        if watch is not None and watch.covers(record):
            self.notify(email, record.id)

    def notify(self, email: str, history_id: int) -> None:
        """Send a notification now, or fold it into the trailing one if the user's second is used."""
        now = time.monotonic()
        with self._lock:
            pace = self._pace.setdefault(email.lower(), _Pace())
            pace.latest = max(pace.latest, history_id)
            if pace.trailing:
                self.stats.coalesced += 1
                return
            wait = pace.last_sent + self.interval - now
            if wait > 0:
                pace.trailing = True
                self.stats.coalesced += 1
                self._scheduler.call_later(wait, lambda: self._send_trailing(email))
                return
            pace.last_sent = now
        self._send(email, history_id)

    def _send_trailing(self, email: str) -> None:
        with self._lock:
            pace = self._pace[email.lower()]
            pace.trailing = False
            pace.last_sent = time.monotonic()
            history_id = pace.latest
        self._send(email, history_id)

    def _send(self, email: str, history_id: int) -> None:
        watch = self.watch_of(email)
        if watch is None:
            return
        with self._lock:
            delays = self.faults.plan(self._rng)
            self.stats.notified += 1
            self.stats.dropped += not delays
            self.stats.duplicated += len(delays) > 1
        if not delays:
            logger.info("emulator.gmail.notification_dropped email=%s history_id=%s (fault)", email, history_id)
            return
        data = json.dumps({"emailAddress": watch.email, "historyId": history_id}).encode()
        for delay in delays:
            if delay > 0:
                self._scheduler.call_later(delay, lambda: self._publish(watch.topic, data, history_id))
            else:
                self._publish(watch.topic, data, history_id)

    def _publish(self, topic: str, data: bytes, history_id: int) -> None:
        try:
            self._broker.publish(topic, [(data, {})])
        except BrokerError as exc:
            with self._lock:
                self.stats.failed += 1
            logger.warning("emulator.gmail.notification_failed topic=%s error=%s", topic, exc)
            return
        with self._lock:
            self.stats.published += 1
            self.stats.history_ids.append(history_id)
