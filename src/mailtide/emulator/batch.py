"""Gmail batch requests: POST /batch/gmail/v1 (the guide's path) and /batch (where Google's Python
client sends them: rootUrl + batchPath). A multipart/mixed body of application/http parts, each an
inner call answered individually: every inner call goes through the whole app (auth, quota charge,
faults, counters) exactly as if it had come alone, so an outer 200 may carry inner 429s or 404s.

Inner calls without their own Authorization header use the outer request's.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import http
import logging
import secrets
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Message

from mailtide.emulator.api_errors import backend_error, invalid_argument, service_unavailable
from mailtide.emulator.fault_middleware import FAULT_SCOPE_KEY, WIRE_FAULTS
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


async def _dispatch(request: Request, call: InnerCall, outer_authorization: bytes | None) -> InnerAnswer:
    """Run one inner call through the whole app and collect its answer."""
    target = urlsplit(call.target)
    answer = InnerAnswer()
    if not target.path.startswith(GMAIL_PREFIX):
        answer.status, answer.complete = 404, True
        answer.headers = [(b"content-type", b"application/json; charset=UTF-8")]
        answer.body += b'{"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}'
        return answer
    headers = list(call.headers)
    if outer_authorization is not None and not any(name == b"authorization" for name, _ in headers):
        headers.append((b"authorization", outer_authorization))
    outer = request.scope
    scope = {
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
    parallel = asyncio.Semaphore(max(1, state.batch_parallelism))

    async def one(call: InnerCall) -> InnerAnswer:
        async with parallel:
            return await _dispatch(request, call, outer_auth)

    answers = list(await asyncio.gather(*(one(call) for call in calls)))
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
