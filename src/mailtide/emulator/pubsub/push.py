"""Push delivery: POST each message of a push subscription to its endpoint, as Pub/Sub does.

The body is Pub/Sub's push envelope; with an OIDC service account configured, the request carries
`Authorization: Bearer <ID token>` signed by the emulator's key. 102/200/201/202/204 acknowledge;
anything else (or no answer) is retried with exponential backoff until it is acknowledged or the
subscription is deleted.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from mailtide.emulator.pubsub.broker import Broker, NotFound, PubSubMessage, PushTarget, Subscription
from mailtide.emulator.pubsub.scheduler import Scheduler
from mailtide.emulator.pubsub.signing import SigningKey

logger = logging.getLogger(__name__)

ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
TOKEN_REUSE_SECONDS = 50 * 60  # tokens live an hour; Pub/Sub reuses one for a while too


def rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def push_envelope(subscription: str, message: PubSubMessage) -> dict[str, Any]:
    """Pub/Sub's push body, with both spellings of the id and time fields, as Pub/Sub sends them."""
    published = rfc3339(message.publish_time)
    body: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode("ascii"),
        "messageId": message.message_id,
        "message_id": message.message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if message.attributes:
        body["attributes"] = dict(message.attributes)
    return {"message": body, "subscription": subscription}


@dataclass
class PushStats:
    attempts: int = 0
    acknowledged: int = 0
    rejected: int = 0  # non-2xx answers
    unreachable: int = 0  # no answer at all


class PushDeliverer:
    def __init__(
        self, broker: Broker, scheduler: Scheduler, signer: SigningKey, *, max_workers: int = 8, timeout: float = 10.0
    ) -> None:
        self._broker = broker
        self._scheduler = scheduler
        self._signer = signer
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="mailtide-emulator-push")
        self._http = httpx.Client(timeout=timeout)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.stats = PushStats()

    def deliver(self, subscription: Subscription, message: PubSubMessage, attempt: int = 1) -> None:
        if self._closed:
            return
        try:
            self._executor.submit(self._attempt, subscription, message, attempt)
        except RuntimeError:  # shut down meanwhile
            pass

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def _attempt(self, subscription: Subscription, message: PubSubMessage, attempt: int) -> None:
        try:
            current = self._broker.subscription(subscription.name)
        except NotFound:
            return  # deleted: nothing left to deliver to
        target = current.push
        if target is None:
            return
        with self._lock:
            self.stats.attempts += 1
        headers = {"Content-Type": "application/json"}
        if target.service_account_email:
            headers["Authorization"] = f"Bearer {self._token(target)}"
        status: int | None = None
        try:
            response = self._http.post(target.endpoint, json=push_envelope(current.name, message), headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            logger.info("emulator.pubsub.push_unreachable endpoint=%s error=%s", target.endpoint, exc)
        if status in ACK_STATUSES:
            with self._lock:
                self.stats.acknowledged += 1
            return
        with self._lock:
            if status is None:
                self.stats.unreachable += 1
            else:
                self.stats.rejected += 1
        delay = min(current.max_backoff, current.min_backoff * 2 ** (attempt - 1))
        logger.info(
            "emulator.pubsub.push_retry subscription=%s message_id=%s status=%s attempt=%d delay=%.2f",
            current.name, message.message_id, status, attempt, delay,
        )
        if not self._closed:
            self._scheduler.call_later(delay, lambda: self.deliver(current, message, attempt + 1))

    def _token(self, target: PushTarget) -> str:
        assert target.service_account_email is not None
        audience = target.audience or target.endpoint
        key = (audience, target.service_account_email)
        now = time.time()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        token = self._signer.issue_token(audience=audience, email=target.service_account_email)
        with self._lock:
            self._tokens[key] = (token, now + TOKEN_REUSE_SECONDS)
        return token
