"""Everything Pub/Sub in one emulator: the broker, Gmail watches and notifications, push delivery
and the OIDC signing key. The gRPC server (PubSubGrpcServer) is started separately, when wanted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mailtide.emulator.history import HistoryRecord
from mailtide.emulator.pubsub.broker import Broker, PubSubMessage, Subscription
from mailtide.emulator.pubsub.gmail_watch import GmailNotifier
from mailtide.emulator.pubsub.push import PushDeliverer
from mailtide.emulator.pubsub.scheduler import Scheduler
from mailtide.emulator.pubsub.signing import SigningKey


class EmulatorPubSub:
    def __init__(self, *, clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        self.broker = Broker()
        self.scheduler = Scheduler()
        self.signing_key = SigningKey()
        self.notifier = GmailNotifier(self.broker, self.scheduler, clock=clock, seed=seed)
        self._push: PushDeliverer | None = None
        self._push_lock = threading.Lock()
        self.broker.push_listener = self._deliver_push

    def mailbox_changed(self, email: str, record: HistoryRecord) -> None:
        self.notifier.mailbox_changed(email, record)

    @property
    def push(self) -> PushDeliverer:
        """The push deliverer, made on first use (its HTTP client and threads cost a little)."""
        with self._push_lock:
            if self._push is None:
                self._push = PushDeliverer(self.broker, self.scheduler, self.signing_key)
            return self._push

    def _deliver_push(self, subscription: Subscription, message: PubSubMessage) -> None:
        self.push.deliver(subscription, message)

    def close(self) -> None:
        """Stop timers and push delivery (pending delayed notifications and retries are dropped)."""
        self.scheduler.stop()
        with self._push_lock:
            if self._push is not None:
                self._push.close()
                self._push = None
