"""Gmail batch requests: POST /batch/gmail/v1 (the guide's path) and /batch (where Google's Python
client sends them: rootUrl + batchPath). A multipart/mixed body of application/http parts, each an
inner call answered individually: every inner call goes through the whole app (auth, faults,
counters, the in-flight count) exactly as if it had come alone, so an outer 200 may carry inner
429s or 404s.

Quota: the calls of a batch are charged, in order, the moment the batch arrives (Gmail runs them side
by side, not one after another); those over the allowance are answered with Gmail's rate-limit error.
Inner calls without their own Authorization header use the outer request's.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import http
import logging
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Message, Scope

from mailtide.emulator.admission import PREPAID_SCOPE_KEY, rejection_error
from mailtide.emulator.api_errors import backend_error, invalid_argument, service_unavailable
from mailtide.emulator.errors import InvalidAccessToken
from mailtide.emulator.fault_middleware import FAULT_SCOPE_KEY, WIRE_FAULTS
from mailtide.emulator.quota import QuotaRejection
from mailtide.emulator.state import EmulatorState
from mailtide.gmail.quota import MAX_BATCH_CALLS

logger = logging.getLogger(__name__)

router = APIRouter()
INNER_SCOPE_KEY = "mailtide.batch_inner"
GMAIL_PREFIX = "/gmail/v1/"
_DROPPED_INNER_HEADERS = frozenset({b"content-length", b"connection", b"transfer-encoding"})


@dataclass
class InnerCall:
    content_id: str
    method: str
    target: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class InnerAnswer:
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False


class BatchRequestError(ValueError):
    pass


def parse_batch_request(body: bytes, content_type: str) -> list[InnerCall]:
    """The application/http parts of a multipart/mixed batch body (LF or CRLF line ends)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    if not message.is_multipart():
        raise BatchRequestError("the batch body is not multipart/mixed with a boundary")
    calls = []
    for index, part in enumerate(message.get_payload(), start=1):
        payload = part.get_payload(decode=True) or b""
        calls.append(_parse_inner(payload, (part.get("Content-ID") or str(index)).strip().strip("<>")))
    return calls


def _parse_inner(payload: bytes, content_id: str) -> InnerCall:
    text = payload.lstrip(b"\r\n")
    head, sep, body = text.partition(b"\r\n\r\n")
    if not sep or b"\n\n" in head:
        head, _, body = text.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    request_line = lines[0].decode("latin-1").split()
    if len(request_line) < 2:
        raise BatchRequestError(f"part {content_id}: no request line")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return InnerCall(content_id, request_line[0].upper(), request_line[1], headers, body)


def oversized(received: int, limit: int) -> JSONResponse:
    message = f"Inner request count exceeds the limit. Received: {received}, Limit: {limit}"
    return JSONResponse({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}, status_code=400)


def _inner_scope(request: Request, call: InnerCall, outer_authorization: bytes | None) -> Scope:
    target = urlsplit(call.target)
    headers = list(call.headers)
    if outer_authorization is not None and not any(name == b"authorization" for name, _ in headers):
        headers.append((b"authorization", outer_authorization))
    outer = request.scope
    return {
        "type": "http",
        "asgi": outer.get("asgi", {"version": "3.0"}),
        "http_version": "1.1",
        "method": call.method,
        "scheme": outer.get("scheme", "http"),
        "path": unquote(target.path),
        "raw_path": target.path.encode("latin-1"),
        "query_string": target.query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": outer.get("client"),
        "server": outer.get("server"),
        "state": dict(outer.get("state", {})),
        INNER_SCOPE_KEY: True,
    }


def _not_found() -> InnerAnswer:
    answer = InnerAnswer(404, [(b"content-type", b"application/json; charset=UTF-8")], complete=True)
    answer.body += b'{"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}'
    return answer


def _routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every endpoint of the app, through included routers (the Gmail routers carry no prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _routes(included.routes)


def _prepay(request: Request, state: EmulatorState, scope: Scope) -> InnerAnswer | None:
    """Charge one inner call as the batch arrives: None when paid (or when the call itself will refuse it:
    no valid token, no such method), else Gmail's rate-limit answer for it."""
    scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").partition(" ")
    try:
        email = state.check_access_token(token.strip()) if scheme.lower() == "bearer" else None
    except InvalidAccessToken:
        email = None
    method = next((r.name for r in _routes(request.app.router.routes) if r.matches(scope)[0] == Match.FULL), None)
    if email is None or method is None:
        return None
    try:
        units = state.quota.charge(email, method)
    except QuotaRejection as rejection:
        state.counters.record_rejection(method, rejection.kind)
        state.counters.record_response(method, 429 if state.quota.rejection_style == "429" else 403)
        response = rejection_error(state, rejection).response()
        answer = InnerAnswer(response.status_code, list(response.raw_headers), complete=True)
        answer.headers = [(k, v) for k, v in answer.headers if k.lower() not in _DROPPED_INNER_HEADERS]
        answer.body += response.body
        return answer
    state.counters.charge(email, units, method)
    scope[PREPAID_SCOPE_KEY] = True
    return None


async def _dispatch(request: Request, scope: Scope, call: InnerCall) -> InnerAnswer:
    """Run one inner call through the whole app and collect its answer."""
    answer = InnerAnswer()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": call.body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED_INNER_HEADERS]
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            answer.complete = not message.get("more_body", False)

    await request.app(scope, receive, send)
    return answer


def _encode_answers(calls: list[InnerCall], answers: list[InnerAnswer], boundary: str) -> bytes:
    chunks: list[bytes] = []
    for call, answer in zip(calls, answers, strict=True):
        try:
            phrase = http.HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = "Unknown"
        head = [
            f"--{boundary}",
            "Content-Type: application/http",
            f"Content-ID: <response-{call.content_id}>",
            "",
            f"HTTP/1.1 {answer.status} {phrase}",
        ]
        head += [f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in answer.headers]
        chunks.append(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + bytes(answer.body) + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


async def _run_batch(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/mixed"):
        raise invalid_argument(f"A batch request must be multipart/mixed, not {content_type or 'nothing'}")
    try:
        calls = parse_batch_request(await request.body(), content_type)
    except (BatchRequestError, TypeError, ValueError) as exc:
        raise invalid_argument(f"Invalid batch request: {exc}") from None
    if not calls:
        raise invalid_argument("A batch request must contain at least one request")
    limit = min(MAX_BATCH_CALLS, state.quota.profile.max_batch_calls)
    if len(calls) > limit:
        return oversized(len(calls), limit)
    fault = state.faults.decide("batch")
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.kind == "error500":
        raise backend_error()
    if fault.kind == "error503":
        raise service_unavailable()
    authorization = request.headers.get("authorization")
    outer_auth = authorization.encode("latin-1") if authorization else None
    scopes = [_inner_scope(request, call, outer_auth) for call in calls]
    ready: list[InnerAnswer | None] = [
        _not_found() if not scope["path"].startswith(GMAIL_PREFIX) else _prepay(request, state, scope)
        for scope in scopes
    ]
    parallel = asyncio.Semaphore(max(1, state.batch_parallelism))

    async def one(call: InnerCall, scope: Scope, answer: InnerAnswer | None) -> InnerAnswer:
        if answer is not None:
            return answer
        async with parallel:
            return await _dispatch(request, scope, call)

    answers = list(await asyncio.gather(*(one(c, s, a) for c, s, a in zip(calls, scopes, ready, strict=True))))
    if fault.kind in WIRE_FAULTS:
        request.scope[FAULT_SCOPE_KEY] = fault.kind
    if any(not answer.complete for answer in answers):  # an inner call's connection "reset": the batch's does
        request.scope[FAULT_SCOPE_KEY] = "reset"
    boundary = "batch_" + secrets.token_urlsafe(12)
    return Response(_encode_answers(calls, answers, boundary), media_type=f"multipart/mixed; boundary={boundary}")


@router.post("/batch/gmail/v1", name="batch")
async def batch_gmail(request: Request) -> Response:
    return await _run_batch(request)


@router.post("/batch", name="batch")
async def batch_global(request: Request) -> Response:
    return await _run_batch(request)
