"""The mirror: search messages, read one (parsed or raw RFC 822), read a thread."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from mailtide.api.context import MAX_INT32, Ctx
from mailtide.api.errors import ERROR_RESPONSES, ApiError, not_found
from mailtide.api.mirror_queries import (
    Ambiguous,
    BadCursor,
    MessageFilter,
    get_attachments,
    get_message,
    get_thread,
    search_messages,
)
from mailtide.api.models import AttachmentOut, MessageDetail, MessagePage, MessageSummary, ThreadOut, from_epoch_ms
from mailtide.store.messages import decompress_raw

router = APIRouter(prefix="/api", tags=["mirror"], responses=ERROR_RESPONSES)

GMAIL_ID = r"^[A-Za-z0-9_\-]{1,64}$"
NO_NUL = r"^[^\x00]+$"
MessageId = Annotated[str, Path(pattern=GMAIL_ID, description="Gmail message id")]
ThreadId = Annotated[str, Path(pattern=GMAIL_ID, description="Gmail thread id")]
AccountFilter = Annotated[int | None, Query(ge=1, le=MAX_INT32, description="Only this account")]
_AMBIGUOUS = {409: ERROR_RESPONSES[404] | {"description": "The id exists in several accounts; give account_id"}}


def _epoch_ms(when: datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _summary(row: Any) -> MessageSummary:
    return MessageSummary(
        account_id=row.account_id, id=row.id, thread_id=row.thread_id, label_ids=list(row.label_ids or []),
        date=from_epoch_ms(row.internal_date), from_=row.from_addr, to=row.to_addrs, subject=row.subject,
        snippet=row.snippet, size_estimate=row.size_estimate,
    )


@router.get("/messages", response_model=MessagePage, summary="Search the mirror, newest first")
async def list_messages(
    ctx: Ctx,
    account_id: AccountFilter = None,
    label: Annotated[str | None, Query(max_length=255, pattern=NO_NUL, description="Label id or name")] = None,
    sender: Annotated[str | None, Query(alias="from", max_length=255, pattern=NO_NUL,
                                        description="Text in the From header (case-insensitive)")] = None,
    subject: Annotated[str | None, Query(max_length=255, pattern=NO_NUL,
                                         description="Text in the subject (case-insensitive)")] = None,
    after: Annotated[datetime | None, Query(description="Received at or after (ISO 8601 or Unix seconds)")] = None,
    before: Annotated[datetime | None, Query(description="Received before (ISO 8601 or Unix seconds)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_\-]+$",
                                        description="next_cursor of the previous page")] = None,
) -> MessagePage:
    where = MessageFilter(
        account_id=account_id, label=label, sender=sender, subject=subject,
        after_ms=_epoch_ms(after), before_ms=_epoch_ms(before),
    )
    try:
        rows, next_cursor = await search_messages(ctx.runtime.engine, where, limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return MessagePage(messages=[_summary(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/messages/{message_id}",
    response_model=MessageDetail,
    responses={**_AMBIGUOUS, 200: {"content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
                                   "description": "The parsed message, or with format=raw its RFC 822 bytes"}},
    summary="One message: parsed fields and attachments, or ?format=raw for the RFC 822 bytes",
)
async def message(
    ctx: Ctx,
    message_id: MessageId,
    account_id: AccountFilter = None,
    format: Annotated[Literal["parsed", "raw"], Query()] = "parsed",
) -> Any:
    try:
        row = await get_message(ctx.runtime.engine, message_id, account_id)
    except Ambiguous as exc:
        raise ApiError(409, "ambiguous", str(exc)) from None
    if row is None:
        raise not_found(f"no message {message_id} in the mirror")
    if format == "raw":
        if row.raw_compressed is None:
            raise not_found(f"the raw bytes of message {message_id} are not stored")
        return Response(
            decompress_raw(row.raw_compressed),
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="{row.id}.eml"'},
        )
    parts = await get_attachments(ctx.runtime.engine, row.account_id, row.id)
    return MessageDetail(
        **_summary(row).model_dump(by_alias=False),
        history_id=row.history_id, cc=row.cc_addrs, bcc=row.bcc_addrs, message_id_header=row.message_id_header,
        date_header=row.date_header, headers=[[str(v) for v in h] for h in (row.headers or [])],
        body_text=row.body_text, body_html=row.body_html, raw_size=row.raw_size, raw_sha256=row.raw_sha256,
        parse_error=row.parse_error,
        attachments=[
            AttachmentOut(part_path=a.part_path, filename=a.filename, content_type=a.content_type, size=a.size,
                          content_id=a.content_id, inline=bool(a.inline))
            for a in parts
        ],
    )


@router.get("/threads/{thread_id}", response_model=ThreadOut, responses=_AMBIGUOUS,
            summary="One thread with its messages, oldest first")
async def thread(ctx: Ctx, thread_id: ThreadId, account_id: AccountFilter = None) -> ThreadOut:
    try:
        found = await get_thread(ctx.runtime.engine, thread_id, account_id)
    except Ambiguous as exc:
        raise ApiError(409, "ambiguous", str(exc)) from None
    if found is None:
        raise not_found(f"no thread {thread_id} in the mirror")
    row, members = found
    return ThreadOut(
        account_id=row.account_id, id=row.id, subject=row.subject, snippet=row.snippet,
        message_count=row.message_count, label_ids=list(row.label_ids or []),
        last_message_at=from_epoch_ms(row.last_message_at), messages=[_summary(m) for m in members],
    )

