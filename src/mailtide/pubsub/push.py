"""The push endpoint: `POST /pubsub/gmail`, where a Pub/Sub push subscription delivers Gmail notifications.

Answers, in Pub/Sub's terms (2xx acknowledges, anything else means "deliver again later"):
- 401 no, malformed, unsigned, badly signed or expired token, wrong audience or issuer;
- 403 a valid token for another service account, or one whose email is not verified;
- 200 the history sync is durably enqueued, or the message is malformed / for an unknown account
  (logged: redelivering it would never help). A body over MAX_BODY_BYTES counts as malformed: it is
  read only up to the limit (the rest is discarded unread), and nesting too deep for the JSON parser too;
- 503 a transient failure (database, certificates): Pub/Sub redelivers with backoff.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailtide.config import Settings
from mailtide.pubsub.intake import NotificationIntake
from mailtide.pubsub.notification import MalformedNotification, parse_push_body
from mailtide.pubsub.oidc import CertificateSource, CertificatesUnavailable, PushAuthError, PushTokenVerifier

if TYPE_CHECKING:
    from mailtide.runtime import Runtime

logger = logging.getLogger(__name__)

PUSH_PATH = "/pubsub/gmail"
PUBLIC_PATHS = (PUSH_PATH,)  # authenticated by the OIDC token, not by the API token
MAX_BODY_BYTES = 256 * 1024


def push_verifier(settings: Settings) -> PushTokenVerifier | None:
    """The token check the settings ask for, or None when push authentication is not configured."""
    if settings.pubsub_push_audience is None or settings.pubsub_push_service_account is None:
        return None
    return PushTokenVerifier(
        audience=settings.pubsub_push_audience,
        service_account_email=settings.pubsub_push_service_account,
        certificates=CertificateSource(settings.pubsub_certs_url),
    )


def api_router(runtime: Runtime) -> APIRouter | None:
    """The seam `mailtide serve` mounts: the push endpoint when push authentication is configured."""
    verifier = push_verifier(runtime.settings)
    if verifier is None:
        return None
    return build_push_router(NotificationIntake(runtime.engine, runtime.queue), verifier)


def build_push_router(intake: NotificationIntake, verifier: PushTokenVerifier, *, path: str = PUSH_PATH) -> APIRouter:
    router = APIRouter(tags=["pubsub"])

    @router.post(path, name="pubsub.push.gmail", include_in_schema=False)
    async def receive_push(request: Request) -> JSONResponse:
        try:
            await verifier.verify(request.headers.get("authorization"))
        except PushAuthError as exc:
            logger.warning("pubsub.push.rejected status=%s reason=%s client=%s", exc.status, exc.reason, request.client)
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
            return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=headers)
        except CertificatesUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        body = b""
        try:
            body = await read_body(request, MAX_BODY_BYTES)
            envelope = parse_push_body(body)
        except MalformedNotification as exc:
            result = intake.malformed(exc, source="push", data=body)
            return JSONResponse({"result": result.outcome, "detail": result.detail})
        try:
            result = await intake.accept_data(envelope.data, source="push", message_id=envelope.message_id)
        except Exception as exc:  # the database or the queue: let Pub/Sub redeliver
            logger.exception("pubsub.push.enqueue_failed message_id=%s", envelope.message_id)
            return JSONResponse({"error": f"temporarily unable to accept: {type(exc).__name__}"}, status_code=503)
        return JSONResponse({"result": result.outcome, "detail": result.detail})

    return router


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk and given up on as soon as it passes `limit` bytes
    (a Gmail notification's envelope is well under 1 KB; a huge body must not be held in memory)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MalformedNotification(f"push body of {declared} bytes is larger than {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise MalformedNotification(f"push body is larger than {limit} bytes")
    return bytes(body)
