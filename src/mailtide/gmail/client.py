"""The Gmail REST client: the handful of read methods mailtide needs, typed, with errors mapped once.

Every failure surfaces as a GmailError: HTTP errors with Gmail's reason, network failures as
status 0 "connectionError", and 2xx bodies that are not what Gmail promises as "malformedResponse".
Requests ride the quota (gmail/limiter.py); rate limits, 5xx, connection errors and 2xx bodies that
are not JSON at all (cut short on the way) are retried a bounded number of times inside the client,
and only then reach the caller (the job layer), which retries them later too (GmailError.is_transient).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from mailtide.config import GOOGLE_API_URL
from mailtide.gmail.auth import OAuthTokenSource
from mailtide.gmail.batch import (
    BatchFormatError,
    InnerRequest,
    MultipartReader,
    boundary_of,
    encode_batch,
    new_boundary,
    parse_part,
)
from mailtide.gmail.errors import GmailError
from mailtide.gmail.limiter import ConcurrencyCap, QuotaLimiter
from mailtide.gmail.models import HistoryPage, Label, Message, MessageList, Profile, WatchResponse
from mailtide.gmail.quota import RECOMMENDED_BATCH_CALLS
from mailtide.gmail.responses import (
    MALFORMED,
    excerpt,
    json_object,
    parse_json_object,
    parse_retry_after,
    retry_after_from_message,
)

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
MessageFormat = Literal["raw", "minimal"]

MAX_PAGE_SIZE = 500
BATCH_PATH = "/batch/gmail/v1"
RETRY_BASE_DELAY = 0.5
MAX_INLINE_WAIT = 2.0  # a longer Retry-After on a 5xx is left to the job layer's scheduling
MAX_RATE_RETRIES = 5
HISTORY_TYPES = frozenset({"messageAdded", "messageDeleted", "labelAdded", "labelRemoved"})

_BASE64URL = re.compile(r"[A-Za-z0-9_\-+/]*={0,2}")
_STATUS_REASONS = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "rateLimitExceeded",
}


def _clamp_page_size(max_results: int) -> int:
    return max(1, min(MAX_PAGE_SIZE, int(max_results)))


def decode_base64url(text: str) -> bytes:
    """Gmail's `raw`: base64url, padding optional. ValueError when it is not base64 at all."""
    compact = "".join(text.split())
    if not _BASE64URL.fullmatch(compact):
        raise ValueError("not base64url")
    compact = compact.rstrip("=")
    try:
        return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url ({exc})") from None


def error_from_parts(status: int, headers: Mapping[str, str], content: bytes) -> GmailError:
    """Map a non-2xx answer to a GmailError: reason from error.errors[0].reason, else error.status.
    `headers` must answer lower-case names (httpx headers do, and so do batch parts)."""
    reason: str | None = None
    message: str | None = None
    content_type = headers.get("content-type", "")
    try:
        data: dict[str, Any] = parse_json_object(status, content, content_type, "error body")
    except GmailError:
        data = {}
    error = data.get("error")
    if isinstance(error, dict):
        details = error.get("errors")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            first_reason = details[0].get("reason")
            reason = first_reason if isinstance(first_reason, str) and first_reason else None
        if reason is None and isinstance(error.get("status"), str) and error["status"]:
            reason = error["status"]
        if isinstance(error.get("message"), str) and error["message"]:
            message = error["message"]
    elif isinstance(error, str) and error:  # OAuth-style {"error": "...", "error_description": "..."}
        reason = error
        description = data.get("error_description")
        message = description if isinstance(description, str) and description else None
    if reason is None:
        reason = "backendError" if status >= 500 else _STATUS_REASONS.get(status, "httpError")
    if message is None:
        message = f"HTTP {status} ({content_type or 'no content type'}): {excerpt(content, content_type)!r}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None:
        retry_after = retry_after_from_message(message)
    return GmailError(status, reason, message, retry_after=retry_after)


def error_from_response(response: httpx.Response) -> GmailError:
    return error_from_parts(response.status_code, response.headers, response.content)


class _Budget:
    """Retries spent on one call (or one id of a batch): server errors, rate limits, re-authorisation."""

    __slots__ = ("rate", "reauthorized", "server")

    def __init__(self) -> None:
        self.server = 0
        self.rate = 0
        self.reauthorized = False


class GmailClient:
    """Gmail API v1 for one user.

    Every request first takes its quota units from `limiter` (which also pauses after a rate-limit
    reply); `max_concurrency` caps requests in flight (shrinking on "too many concurrent requests").
    Server errors and connection failures are retried up to `max_retries` times with jittered
    back-off, rate limits up to `max_rate_retries` times after the limiter's pause; only then does a
    GmailError reach the caller. `request_counts` counts every HTTP answer by (method, status),
    status 0 meaning no answer; the inner calls of a batch count under their own method.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: OAuthTokenSource,
        *,
        api_url: str = GOOGLE_API_URL,
        user_id: str = "me",
        max_concurrency: int = 8,
        max_retries: int = 3,
        retry_base_delay: float = RETRY_BASE_DELAY,
        limiter: QuotaLimiter | None = None,
        max_rate_retries: int = MAX_RATE_RETRIES,
        max_rate_wait: float | None = None,
        batch_size: int = RECOMMENDED_BATCH_CALLS,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if not user_id:
            raise ValueError("user_id must not be empty")
        self._http = http
        self._tokens = tokens
        root = api_url.rstrip("/")
        self._user_path = f"/gmail/v1/users/{quote(user_id, safe='@')}"
        self._base = root + self._user_path
        self._batch_url = root + BATCH_PATH
        self.limiter = limiter or QuotaLimiter()
        profile = self.limiter.profile
        if profile.max_concurrent_per_user is not None:
            max_concurrency = min(max_concurrency, profile.max_concurrent_per_user)
        self._concurrency = ConcurrencyCap(max_concurrency)
        self._max_retries = max(0, max_retries)
        self._retry_base_delay = max(0.0, retry_base_delay)
        self._max_rate_retries = max(0, max_rate_retries)
        self._max_rate_wait = profile.minute_seconds if max_rate_wait is None else max_rate_wait
        self._max_batch = max(1, min(batch_size, profile.max_batch_calls))
        self._batch_size = self._max_batch
        self._counts: Counter[tuple[str, int]] = Counter()

    @property
    def request_counts(self) -> dict[tuple[str, int], int]:
        return dict(self._counts)

    @property
    def concurrency_limit(self) -> int:
        return self._concurrency.limit

    # ------------------------------------------------------------------ methods
    async def get_profile(self) -> Profile:
        status, data = await self._get("getProfile", "/profile")
        return self._model(Profile, data, status, "getProfile")

    async def list_labels(self) -> list[Label]:
        status, data = await self._get("labels.list", "/labels")
        labels = data.get("labels", [])
        if not isinstance(labels, list):
            raise GmailError(status, MALFORMED, "labels.list: 'labels' is not a list")
        return [self._model(Label, item, status, f"labels.list labels.{index}") for index, item in enumerate(labels)]

    async def list_messages(
        self,
        *,
        q: str | None = None,
        label_ids: Sequence[str] | None = None,
        page_token: str | None = None,
        max_results: int = MAX_PAGE_SIZE,
        include_spam_trash: bool = False,
    ) -> MessageList:
        params: list[tuple[str, str]] = [("maxResults", str(_clamp_page_size(max_results)))]
        if q:
            params.append(("q", q))
        params.extend(("labelIds", label_id) for label_id in label_ids or ())
        if page_token:
            params.append(("pageToken", page_token))
        if include_spam_trash:
            params.append(("includeSpamTrash", "true"))
        status, data = await self._get("messages.list", "/messages", params)
        return self._model(MessageList, data, status, "messages.list")

    async def get_message(self, message_id: str, *, format: MessageFormat = "raw") -> Message:
        _check_format(format)
        if not message_id:
            raise ValueError("message_id must not be empty")
        status, data = await self._get("messages.get", _message_path(message_id), [("format", format)])
        return self._message(data, status, message_id, format)

    async def iter_messages(
        self, message_ids: Sequence[str], *, format: MessageFormat = "raw"
    ) -> AsyncIterator[tuple[str, Message | GmailError]]:
        """messages.get for many ids through batch requests; yields (id, Message or GmailError) once per id,
        as each inner answer arrives (so only one message at a time needs to be in memory).

        Transient inner failures (rate limits, 5xx, a reply cut short) are retried for just those ids
        within the retry budgets; what still fails is yielded as its GmailError, never dropped. A
        failure that concerns the whole account (401 after re-authorisation, 403 access denied) raises.
        Use with contextlib.aclosing() when the loop may stop early.
        """
        _check_format(format)
        pending: deque[str] = deque(dict.fromkeys(i for i in message_ids if i))
        budgets: dict[str, _Budget] = {}
        outer = _Budget()
        while pending:
            size = min(len(pending), self._batch_calls("messages.get"))
            chunk = [pending.popleft() for _ in range(size)]
            if size == 1 and not pending:
                yield chunk[0], await self._get_one(chunk[0], format)
                continue
            answered: set[str] = set()
            to_retry: list[GmailError] = []
            retry_ids: list[str] = []
            try:
                async with aclosing(self._batch_get(chunk, format)) as answers:
                    async for message_id, outcome in answers:
                        answered.add(message_id)
                        budget = budgets.setdefault(message_id, _Budget())
                        if isinstance(outcome, GmailError) and self._spend_inner_retry(outcome, budget):
                            retry_ids.append(message_id)
                            to_retry.append(outcome)
                        else:
                            yield message_id, outcome
            except GmailError as exc:
                unanswered = [i for i in chunk if i not in answered]
                pending.extendleft(reversed(retry_ids + unanswered))
                if exc.status == 401 and not outer.reauthorized:
                    outer.reauthorized = True
                    self._tokens.invalidate()
                    continue
                await self._before_retry("batch", exc, outer)  # raises when the budget is spent
                continue
            outer = _Budget()
            missing = [i for i in chunk if i not in answered]
            if missing:
                logger.warning("gmail.batch.incomplete missing=%s of=%s", len(missing), len(chunk))
                for message_id in missing:
                    gap = GmailError(0, MALFORMED, f"messages.get {message_id}: no answer in the batch reply")
                    if self._spend_inner_retry(gap, budgets.setdefault(message_id, _Budget())):
                        retry_ids.append(message_id)
                        to_retry.append(gap)
                    else:
                        yield message_id, gap
            if retry_ids:
                pending.extendleft(reversed(retry_ids))
                await self._after_inner_failures(to_retry, budgets[retry_ids[0]])
            elif self._batch_size < self._max_batch:
                self._batch_size += 1

    async def list_history(
        self,
        start_history_id: int,
        *,
        page_token: str | None = None,
        history_types: Sequence[str] | None = None,
        max_results: int = MAX_PAGE_SIZE,
        label_id: str | None = None,
    ) -> HistoryPage:
        if isinstance(start_history_id, bool) or not isinstance(start_history_id, int) or start_history_id < 0:
            raise ValueError(f"start_history_id must be a non-negative int, not {start_history_id!r}")
        unknown = set(history_types or ()) - HISTORY_TYPES
        if unknown:
            raise ValueError(f"unknown history types {sorted(unknown)}; known: {sorted(HISTORY_TYPES)}")
        params: list[tuple[str, str]] = [
            ("startHistoryId", str(start_history_id)),
            ("maxResults", str(_clamp_page_size(max_results))),
        ]
        if page_token:
            params.append(("pageToken", page_token))
        params.extend(("historyTypes", kind) for kind in history_types or ())
        if label_id:
            params.append(("labelId", label_id))
        status, data = await self._get("history.list", "/history", params)
        return self._model(HistoryPage, data, status, "history.list")

    async def watch(
        self,
        topic_name: str,
        label_ids: Sequence[str] | None = None,
        label_filter_behavior: Literal["include", "exclude"] | None = None,
    ) -> WatchResponse:
        """users.watch: Gmail publishes a notification to `topic_name` on mailbox changes until `expiration`."""
        if not topic_name:
            raise ValueError("topic_name must not be empty")
        body: dict[str, Any] = {"topicName": topic_name}
        if label_ids:
            body["labelIds"] = list(label_ids)
        if label_filter_behavior is not None:
            body["labelFilterBehavior"] = label_filter_behavior.lower()
        status, data = await self._get("watch", "/watch", json_body=body)
        return self._model(WatchResponse, data, status, "watch")

    async def stop(self) -> None:
        """users.stop: no more notifications for this mailbox."""
        await self._get("stop", "/stop", json_body={})

    # ----------------------------------------------------------------- plumbing
    @staticmethod
    def _model(model: type[ModelT], data: Any, status: int, what: str) -> ModelT:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5]
            )
            raise GmailError(status, MALFORMED, f"{what}: unexpected shape: {problems}") from None

    def _message(self, data: dict[str, Any], status: int, message_id: str, format: MessageFormat) -> Message:
        if format == "raw":
            raw = data.get("raw")
            if not isinstance(raw, str):
                raise GmailError(status, MALFORMED, f"messages.get {message_id}: no 'raw' in a format=raw answer")
            try:
                data = {**data, "raw": decode_base64url(raw)}
            except ValueError as exc:
                raise GmailError(status, MALFORMED, f"messages.get {message_id}: 'raw' is {exc}") from None
        else:
            data = {**data, "raw": None}
        return self._model(Message, data, status, f"messages.get {message_id}")

    async def _get_one(self, message_id: str, format: MessageFormat) -> Message | GmailError:
        """A single get in iter_messages: per-message failures are yielded, account-wide ones raised. An
        answer of the wrong shape is retried as in a batch (_get already retried rate limits, server
        errors and bodies cut short)."""
        budget = _Budget()
        while True:
            try:
                return await self.get_message(message_id, format=format)
            except GmailError as exc:
                if exc.status == 401 or exc.is_access_denied or exc.is_auth_revoked:
                    raise
                if exc.reason != MALFORMED or exc.unreadable_body or budget.server >= self._max_retries:
                    return exc
                budget.server += 1
                await self._backoff("messages.get", budget.server, exc)

    def _batch_calls(self, method: str) -> int:
        return max(1, min(self._batch_size, self.limiter.max_calls(method)))

    def _spend_inner_retry(self, error: GmailError, budget: _Budget) -> bool:
        """Whether this id's failure is worth another try, spending from its budget if so."""
        if error.status == 401:
            if budget.reauthorized:
                raise error  # the fresh token is refused too: the whole account is affected
            budget.reauthorized = True
            return True
        if error.is_access_denied:
            raise error
        if error.is_rate_limited:
            budget.rate += 1
            return budget.rate <= self._max_rate_retries
        if error.is_server_error or error.reason == MALFORMED:  # a 5xx, or a body cut short
            budget.server += 1
            return budget.server <= self._max_retries
        return False

    async def _after_inner_failures(self, errors: list[GmailError], budget: _Budget) -> None:
        """One reaction per batch reply, however many of its calls failed."""
        if any(e.status == 401 for e in errors):
            self._tokens.invalidate()
        limited = [e for e in errors if e.is_rate_limited]
        if limited:
            waits = [e.retry_after for e in limited if e.retry_after is not None]
            wait = max(waits) if waits else None
            if all(e.is_concurrency_limited for e in limited):
                self._batch_size = max(1, self._batch_size // 2)  # Gmail runs inner calls side by side
                logger.info("gmail.batch.shrunk size=%s", self._batch_size)
                self.limiter.on_concurrency_limited(wait)
            else:
                self.limiter.on_rate_limited(wait)
            return
        if any(e.is_server_error or e.reason == MALFORMED for e in errors):
            await self._backoff("batch", max(1, budget.server), errors[0])

    async def _before_retry(self, method: str, error: GmailError, budget: _Budget) -> None:
        """React to a failed attempt: wait as the error asks and return, or raise it when retrying is over."""
        if error.is_rate_limited:
            if error.is_concurrency_limited:
                self._concurrency.shrink()
                pause = self.limiter.on_concurrency_limited(error.retry_after)
            else:
                pause = self.limiter.on_rate_limited(error.retry_after)
            if budget.rate >= self._max_rate_retries or pause > self._max_rate_wait:
                error.retry_after = max(pause, error.retry_after or 0.0)
                raise error
            budget.rate += 1
            logger.info(
                "gmail.retry method=%s reason=%s pause=%.2f attempt=%s", method, error.reason, pause, budget.rate
            )
            return  # the limiter holds the next acquire() for the pause
        retry_soon = error.is_retried_like_server_error
        if retry_soon and budget.server < self._max_retries and self._may_wait(error.retry_after):
            budget.server += 1
            await self._backoff(method, budget.server, error)
            return
        raise error

    async def _get(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        *,
        json_body: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """GET (POST when given a JSON body) with quota pacing, auth, one re-auth on 401, and bounded
        retries of rate limits, 5xx and 2xx bodies cut short. An empty 2xx body (users.stop) reads as {}."""
        url = self._base + path
        units = self.limiter.profile.cost(method)
        budget = _Budget()
        while True:
            try:
                response, token = await self._send(method, url, params, json_body, units)
            except GmailError as exc:
                await self._before_retry(method, exc, budget)
                continue
            status = response.status_code
            if 200 <= status < 300:
                try:
                    data = {} if json_body is not None and not response.content else json_object(response, method)
                except GmailError as exc:
                    await self._before_retry(method, exc, budget)  # a body cut short is asked for again
                    continue
                self.limiter.on_success(units)
                await self._concurrency.note_success()
                return status, data
            error = error_from_response(response)
            if status == 401 and not budget.reauthorized:
                budget.reauthorized = True
                self._tokens.invalidate(token)
                logger.info("gmail.reauthorize method=%s", method)
                continue
            await self._before_retry(method, error, budget)

    async def _send(
        self,
        method: str,
        url: str,
        params: list[tuple[str, str]] | None,
        json_body: dict[str, Any] | None,
        units: int,
    ) -> tuple[httpx.Response, str]:
        await self._tokens.access_token()  # refresh first: a token costs no quota, waiting for one would
        async with self._concurrency:  # let Gmail count the units later than we did
            await self.limiter.acquire(units)
            token = await self._tokens.access_token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            started = time.perf_counter()
            try:
                verb = "GET" if json_body is None else "POST"
                response = await self._http.request(verb, url, params=params, json=json_body, headers=headers)
            except httpx.TransportError as exc:
                self._counts[(method, 0)] += 1
                logger.warning("gmail.request.failed method=%s error=%s", method, type(exc).__name__)
                raise GmailError(0, "connectionError", f"{method}: {type(exc).__name__}: {exc}") from exc
            except httpx.DecodingError as exc:
                self._counts[(method, 0)] += 1
                raise GmailError(0, MALFORMED, f"{method}: body could not be decoded: {exc}") from exc
        self._counts[(method, response.status_code)] += 1
        logger.debug(
            "gmail.request method=%s status=%s elapsed_ms=%.1f",
            method,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response, token

    async def _batch_get(
        self, message_ids: list[str], format: MessageFormat
    ) -> AsyncIterator[tuple[str, Message | GmailError]]:
        """One batch request of messages.get calls; yields each inner outcome as its part arrives."""
        units = self.limiter.profile.cost("messages.get") * len(message_ids)
        prefix = secrets.token_hex(6)
        calls = [
            InnerRequest(f"{prefix}+{index}", f"{self._user_path}{_message_path(mid)}?format={format}")
            for index, mid in enumerate(message_ids)
        ]
        by_content_id = {call.content_id: mid for call, mid in zip(calls, message_ids, strict=True)}
        boundary = new_boundary()
        await self._tokens.access_token()  # refresh before taking units (see _send)
        succeeded = 0
        async with self._concurrency:
            await self.limiter.acquire(units)
            headers = {
                "Authorization": f"Bearer {await self._tokens.access_token()}",
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                "Accept": "multipart/mixed",
            }
            try:
                async with self._http.stream(
                    "POST", self._batch_url, content=encode_batch(calls, boundary), headers=headers
                ) as response:
                    self._counts[("batch", response.status_code)] += 1
                    if not 200 <= response.status_code < 300:
                        await response.aread()
                        raise error_from_response(response)
                    try:
                        reader = MultipartReader(boundary_of(response.headers.get("content-type", "")))
                    except BatchFormatError as exc:
                        raise GmailError(response.status_code, MALFORMED, f"batch: {exc}") from None
                    async for data in response.aiter_bytes():
                        for raw_part in reader.feed(data):
                            outcome = self._inner_outcome(raw_part, by_content_id, format)
                            if outcome is None:
                                continue
                            message_id, result = outcome
                            if isinstance(result, Message):
                                succeeded += 1
                            yield message_id, result
                    if not reader.finished:
                        raise GmailError(0, "connectionError", "batch: the reply ended before its closing boundary")
            except httpx.TransportError as exc:
                self._counts[("batch", 0)] += 1
                logger.warning("gmail.request.failed method=batch error=%s", type(exc).__name__)
                raise GmailError(0, "connectionError", f"batch: {type(exc).__name__}: {exc}") from exc
            except httpx.DecodingError as exc:
                raise GmailError(0, MALFORMED, f"batch: body could not be decoded: {exc}") from exc
        self.limiter.on_success(succeeded * self.limiter.profile.cost("messages.get"))
        await self._concurrency.note_success()

    def _inner_outcome(
        self, raw_part: bytes, by_content_id: dict[str, str], format: MessageFormat
    ) -> tuple[str, Message | GmailError] | None:
        try:
            part = parse_part(raw_part)
        except BatchFormatError as exc:
            logger.warning("gmail.batch.bad_part error=%s", exc)
            return None  # its id stays unanswered and is retried
        message_id = by_content_id.get(part.content_id)
        if message_id is None:
            logger.warning("gmail.batch.unknown_part content_id=%s", part.content_id)
            return None
        self._counts[("messages.get", part.status)] += 1
        if not 200 <= part.status < 300:
            return message_id, error_from_parts(part.status, part.headers, part.body)
        try:
            data = parse_json_object(part.status, part.body, part.content_type, f"messages.get {message_id}")
            return message_id, self._message(data, part.status, message_id, format)
        except GmailError as exc:
            return message_id, exc

    def _may_wait(self, retry_after: float | None) -> bool:
        return retry_after is None or retry_after <= MAX_INLINE_WAIT

    async def _backoff(self, method: str, attempt: int, error: GmailError) -> None:
        delay = self._retry_base_delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        logger.info(
            "gmail.retry method=%s attempt=%s status=%s reason=%s delay=%.2f",
            method,
            attempt,
            error.status,
            error.reason,
            delay,
        )
        await asyncio.sleep(delay)


def _check_format(format: str) -> None:
    if format not in ("raw", "minimal"):
        raise ValueError(f"format must be 'raw' or 'minimal', not {format!r}")


def _message_path(message_id: str) -> str:
    return f"/messages/{quote(message_id, safe='')}"
