"""The faults that need the wire: a 200 whose JSON body is cut short, and a connection reset in the
middle of the body (the headers promise N bytes, half arrive, the connection closes).

The Gmail route decides (gmail_api.user_mailbox) and marks the request's scope; this ASGI layer
changes what is sent. A reset ends the app without completing the response, so uvicorn closes the
connection; its "returned without completing response" error line is silenced for those requests.
"""

from __future__ import annotations

import contextvars
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_SCOPE_KEY = "mailtide.fault"
WIRE_FAULTS = ("reset", "truncate")

_resetting: contextvars.ContextVar[bool] = contextvars.ContextVar("mailtide_emulator_resetting", default=False)


class _SilenceInjectedResets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_resetting.get() and "without completing response" in record.getMessage())


def silence_injected_resets() -> None:
    """Install (once) the filter that hides uvicorn's error line for resets we injected on purpose."""
    target = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _SilenceInjectedResets) for f in target.filters):
        target.addFilter(_SilenceInjectedResets())


def cut(body: bytes) -> bytes:
    return body[: len(body) // 2]


class FaultMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held_start: Message | None = None
        body = bytearray()
        mode: str | None = None

        async def faulty_send(message: Message) -> None:
            nonlocal held_start, mode
            if message["type"] == "http.response.start":
                fault = scope.get(FAULT_SCOPE_KEY)
                if fault not in WIRE_FAULTS:
                    await send(message)
                    return
                mode, held_start = fault, message
                return
            if mode is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert held_start is not None
            await _send_faulty(held_start, bytes(body), mode, send)

        await self.app(scope, receive, faulty_send)


async def _send_faulty(start: Message, body: bytes, mode: str, send: Send) -> None:
    partial = cut(body)
    if mode == "truncate":
        headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
        headers.append((b"content-length", str(len(partial)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": partial, "more_body": False})
        return
    _resetting.set(True)
    await send(start)  # still announcing the full Content-Length
    await send({"type": "http.response.body", "body": partial, "more_body": True})
