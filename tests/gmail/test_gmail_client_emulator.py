"""GmailClient and OAuthTokenSource against the emulator, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from gmail_testkit import EMAIL, FakeClock, gmail_client, token_source

from mailtide.config import Settings
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.gmail import GmailError, build_gmail_client

MIME_DATA = Path(__file__).resolve().parents[1] / "data" / "mime"


def simple_message(number: int, subject: str | None = None) -> bytes:
    return (
        f"From: Sender {number} <sender{number}@example.com>\r\n"
        f"To: {EMAIL}\r\n"
        f"Subject: {subject or f'message {number}'}\r\n"
        f"Date: Mon, {number + 1} Jun 2026 10:00:00 +0000\r\n"
        f"Message-ID: <m{number}@example.com>\r\n"
        "\r\n"
        f"Body {number}\r\n"
    ).encode()


async def test_get_profile(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    mailbox = state.mailbox(EMAIL)
    for number in range(3):
        mailbox.add_message(simple_message(number))
    profile = await gmail_client(http, emulator.url).get_profile()
    assert profile.email_address == EMAIL
    assert profile.messages_total == 3
    assert profile.history_id == mailbox.history_id
    assert isinstance(profile.history_id, int)


async def test_list_labels(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    label_id = state.mailbox(EMAIL).create_label("Receipts/2026")
    labels = await gmail_client(http, emulator.url).list_labels()
    by_id = {label.id: label for label in labels}
    assert by_id["INBOX"].type == "system"
    assert by_id[label_id].name == "Receipts/2026"
    assert by_id[label_id].type == "user"


async def test_list_messages_pages_through_everything(
    emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient
):
    mailbox = state.mailbox(EMAIL)
    added = {mailbox.add_message(simple_message(number)) for number in range(7)}
    client = gmail_client(http, emulator.url)
    seen: list[str] = []
    page_sizes: list[int] = []
    token: str | None = None
    while True:
        page = await client.list_messages(max_results=3, page_token=token)
        seen.extend(ref.id for ref in page.messages)
        page_sizes.append(len(page.messages))
        token = page.next_page_token
        if token is None:
            break
    assert page_sizes == [3, 3, 1]
    assert len(seen) == len(set(seen)) and set(seen) == added
    assert client.request_counts == {("messages.list", 200): 3}


async def test_list_messages_filters(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    mailbox = state.mailbox(EMAIL)
    label_id = mailbox.create_label("Work")
    work = mailbox.add_message(simple_message(1, "quarterly report"), label_ids=["INBOX", label_id])
    mailbox.add_message(simple_message(2, "lunch"))
    spam = mailbox.add_message(simple_message(3, "cheap pills"), label_ids=["SPAM"])
    client = gmail_client(http, emulator.url)

    assert [m.id for m in (await client.list_messages(label_ids=[label_id])).messages] == [work]
    assert [m.id for m in (await client.list_messages(q="subject:quarterly")).messages] == [work]
    assert spam not in {m.id for m in (await client.list_messages()).messages}
    assert spam in {m.id for m in (await client.list_messages(include_spam_trash=True)).messages}


async def test_max_results_is_clamped(emulator: EmulatorServer, state: EmulatorState):
    sent: list[httpx.URL] = []

    async def remember(request: httpx.Request) -> None:
        sent.append(request.url)

    mailbox = state.mailbox(EMAIL)
    for number in range(2):
        mailbox.add_message(simple_message(number))
    async with httpx.AsyncClient(event_hooks={"request": [remember]}) as http:
        client = gmail_client(http, emulator.url)
        assert len((await client.list_messages(max_results=0)).messages) == 1
        await client.list_messages(max_results=100_000)
        await client.list_history(mailbox.history_id, max_results=-5)
    api_urls = [url for url in sent if url.path != "/token"]
    assert [url.params["maxResults"] for url in api_urls] == ["1", "500", "1"]


async def test_raw_messages_are_byte_exact(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    mailbox = state.mailbox(EMAIL)
    originals = {}
    for path in sorted(MIME_DATA.glob("*.eml")):
        raw = path.read_bytes()
        originals[mailbox.add_message(raw)] = raw
    originals[mailbox.add_message(bytes(range(256)) + b"\r\n\r\n\x00\xff")] = bytes(range(256)) + b"\r\n\r\n\x00\xff"
    client = gmail_client(http, emulator.url)
    fetched = await asyncio.gather(*(client.get_message(message_id) for message_id in originals))
    for message in fetched:
        assert message.raw == originals[message.id]
        assert message.history_id > 0
        assert "INBOX" in message.label_ids


async def test_minimal_format_has_no_raw(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    message_id = state.mailbox(EMAIL).add_message(simple_message(1), label_ids=["INBOX", "STARRED"])
    message = await gmail_client(http, emulator.url).get_message(message_id, format="minimal")
    assert message.raw is None
    assert message.id == message_id
    assert set(message.label_ids) == {"INBOX", "STARRED"}
    with pytest.raises(ValueError, match="format"):
        await gmail_client(http, emulator.url).get_message(message_id, format="full")  # type: ignore[arg-type]


async def test_unknown_message_is_not_found(emulator: EmulatorServer, http: httpx.AsyncClient):
    client = gmail_client(http, emulator.url)
    with pytest.raises(GmailError) as caught:
        await client.get_message("0123456789abcdef")
    assert caught.value.status == 404
    assert caught.value.reason == "notFound"
    assert caught.value.is_not_found and not caught.value.is_transient
    assert client.request_counts == {("messages.get", 404): 1}  # no retry for a 404


async def test_history_records_and_paging(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    mailbox = state.mailbox(EMAIL)
    kept = mailbox.add_message(simple_message(0))
    start = mailbox.history_id
    added = mailbox.add_message(simple_message(1))
    mailbox.modify_labels(kept, add=["STARRED"], remove=["UNREAD"])
    mailbox.delete_message(added)
    client = gmail_client(http, emulator.url)

    records = []
    token: str | None = None
    while True:
        page = await client.list_history(start, max_results=1, page_token=token)
        records.extend(page.history)
        token = page.next_page_token
        if token is None:
            break
    assert page.history_id == mailbox.history_id
    assert [r.id for r in records] == sorted(r.id for r in records) and records[0].id > start
    assert [m.message.id for r in records for m in r.messages_added] == [added]
    assert [m.message.id for r in records for m in r.messages_deleted] == [added]
    assert [(c.message.id, c.label_ids) for r in records for c in r.labels_added] == [(kept, ["STARRED"])]
    assert [(c.message.id, c.label_ids) for r in records for c in r.labels_removed] == [(kept, ["UNREAD"])]

    only_deleted = await client.list_history(start, history_types=["messageDeleted"])
    assert [m.message.id for r in only_deleted.history for m in r.messages_deleted] == [added]
    assert not any(r.messages_added for r in only_deleted.history)

    quiet = await client.list_history(mailbox.history_id)
    assert quiet.history == [] and quiet.history_id == mailbox.history_id


async def test_history_404_after_expiry(emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient):
    mailbox = state.mailbox(EMAIL)
    start = mailbox.history_id
    mailbox.add_message(simple_message(1))
    mailbox.expire_history()
    with pytest.raises(GmailError) as caught:
        await gmail_client(http, emulator.url).list_history(start)
    assert caught.value.status == 404 and caught.value.reason == "notFound"


async def test_token_is_refreshed_before_it_expires(
    emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient
):
    state.access_token_lifetime = 100
    clock = FakeClock()
    tokens = token_source(http, emulator.url, refresh_margin_seconds=60, clock=clock)
    client = gmail_client(http, emulator.url, tokens)

    await client.get_profile()
    first = await tokens.access_token()
    clock.now += 39  # still more than the margin left
    assert await tokens.access_token() == first
    clock.now += 2  # 59 s left: inside the margin, refresh although the server would still accept it
    second = await tokens.access_token()
    assert second != first
    state.check_access_token(first)  # the old token had not expired at the server
    await client.get_profile()
    assert tokens.refresh_count == 2
    assert state.counters.requests("oauth.token") == 2
    assert client.request_counts == {("getProfile", 200): 2}


async def test_expired_token_at_server_is_refreshed_once_on_401(
    emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient
):
    state.access_token_lifetime = 2
    tokens = token_source(http, emulator.url, refresh_margin_seconds=0, clock=FakeClock())  # never expires locally
    client = gmail_client(http, emulator.url, tokens)
    await client.get_profile()
    state.set_now(time.time() + 5)  # the server's clock passes the 2 s lifetime
    profile = await client.get_profile()
    assert profile.email_address == EMAIL
    assert client.request_counts == {("getProfile", 200): 2, ("getProfile", 401): 1}
    assert tokens.refresh_count == 2


async def test_concurrent_callers_share_one_refresh(emulator: EmulatorServer, state: EmulatorState, http):
    tokens = token_source(http, emulator.url)
    results = await asyncio.gather(*(tokens.access_token() for _ in range(20)))
    assert len(set(results)) == 1
    assert state.counters.requests("oauth.token") == 1

    client = gmail_client(http, emulator.url, tokens)
    state.expire_access_tokens(EMAIL)  # every in-flight request now fails with the same token
    profiles = await asyncio.gather(*(client.get_profile() for _ in range(6)))
    assert {p.email_address for p in profiles} == {EMAIL}
    assert state.counters.requests("oauth.token") == 2  # one refresh for all six 401s


async def test_revoked_refresh_token_is_invalid_grant(
    emulator: EmulatorServer, state: EmulatorState, http: httpx.AsyncClient
):
    client = gmail_client(http, emulator.url)
    await client.get_profile()
    state.revoke_refresh_token(EMAIL)
    with pytest.raises(GmailError) as caught:
        await client.get_profile()
    assert caught.value.is_auth_revoked
    assert caught.value.status == 400 and caught.value.reason == "invalid_grant"
    assert not caught.value.is_transient
    assert "expired or revoked" in caught.value.message


async def test_unknown_client_is_invalid_client(emulator: EmulatorServer, http: httpx.AsyncClient):
    tokens = token_source(http, emulator.url, client_secret="wrong")
    with pytest.raises(GmailError) as caught:
        await tokens.access_token()
    assert (caught.value.status, caught.value.reason) == (401, "invalid_client")
    assert not caught.value.is_auth_revoked


async def test_explicit_user_id_and_delegation(emulator: EmulatorServer, http: httpx.AsyncClient):
    assert (await gmail_client(http, emulator.url, user_id=EMAIL).get_profile()).email_address == EMAIL
    with pytest.raises(GmailError) as caught:
        await gmail_client(http, emulator.url, user_id="bob@mailtide.test").get_profile()
    assert caught.value.status == 403


async def test_build_gmail_client_from_settings(emulator: EmulatorServer, state: EmulatorState, http):
    settings = Settings(gmail_api_url=emulator.url, token_url=emulator.token_url, gmail_concurrency=3)
    credentials = state.credentials(EMAIL)
    assert credentials.refresh_token is not None
    client = build_gmail_client(
        http,
        settings,
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        refresh_token=credentials.refresh_token,
    )
    assert (await client.get_profile()).email_address == EMAIL
