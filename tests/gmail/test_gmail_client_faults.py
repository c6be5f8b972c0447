"""GmailClient against misbehaving HTTP peers: junk bodies, HTML error pages, truncation, silence,
refused connections. The peer is a real socket server on loopback (conftest.RawPeer)."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import socket
import time

import httpx
import pytest
from gmail_testkit import gmail_client, http_response, token_source

from mailtide.gmail import GmailError

PROFILE = '{"emailAddress": "a@example.com", "historyId": "12345", "messagesTotal": 3}'
HTML_502 = (
    "<!DOCTYPE html><html><head><title>Error 502 (Server Error)!!1</title><style>body{margin:0}</style></head>"
    "<body><p><b>502.</b> <ins>That’s an error.</ins></p><p>The server encountered a temporary error.</p></body></html>"
)


def gmail_error_body(code: int, reason: str | None, message: str, status: str = "") -> str:
    error: dict[str, object] = {"code": code, "message": message}
    if reason:
        error["errors"] = [{"domain": "usageLimits", "reason": reason, "message": message}]
    if status:
        error["status"] = status
    return json.dumps({"error": error})


async def raises(call) -> GmailError:
    with pytest.raises(GmailError) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('["a", "b"]', "expected a JSON object, got list"),
        ('{"emailAddress": "a@example.com"}', "historyId"),
        ('{"emailAddress": "a@example.com", "historyId": "not-a-number"}', "historyId"),
    ],
)
async def test_well_formed_answers_of_the_wrong_shape_are_not_retried(raw_peer, http, body, fragment):
    peer = await raw_peer(lambda method, target: http_response(200, body))
    error = await raises(gmail_client(http, peer.url).get_profile())
    assert (error.status, error.reason) == (200, "malformedResponse")
    assert fragment in error.message
    assert not error.is_transient  # the same question would get the same answer
    assert len(peer.api_requests()) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"emailAddress": "a@example.com", "histo',  # cut short
        "<html><body>Service Unavailable</body></html>",
        "",
        b"\xff\xfe{not utf-8}",
    ],
)
async def test_unreadable_success_bodies_are_retried_then_reported_as_transient(raw_peer, http, body):
    peer = await raw_peer(lambda method, target: http_response(200, body))
    client = gmail_client(http, peer.url, max_retries=2)
    error = await raises(client.get_profile())
    assert (error.status, error.reason) == (200, "malformedResponse")
    assert "body is not JSON" in error.message
    assert error.unreadable_body and error.is_transient  # the job layer retries it later, never fails it
    assert len(peer.api_requests()) == 3
    assert client.request_counts == {("getProfile", 200): 3}


async def test_a_body_cut_short_once_is_asked_for_again(raw_peer, http):
    answers = iter([http_response(200, PROFILE[: len(PROFILE) // 2])])

    def respond(method: str, target: str) -> bytes:
        return next(answers, None) or http_response(200, PROFILE)

    peer = await raw_peer(respond)
    profile = await gmail_client(http, peer.url).get_profile()
    assert profile.history_id == 12345
    assert len(peer.api_requests()) == 2


async def test_history_page_without_history_key_is_fine(raw_peer, http):
    peer = await raw_peer(lambda method, target: http_response(200, '{"historyId": "987"}'))
    page = await gmail_client(http, peer.url).list_history(900)
    assert page.history == [] and page.history_id == 987 and page.next_page_token is None


async def test_malformed_labels_and_history_records(raw_peer, http):
    bodies = {
        "/gmail/v1/users/me/labels": '{"labels": [{"id": "INBOX", "name": "INBOX"}, {"name": "no id"}]}',
        "/gmail/v1/users/me/history": '{"historyId": "5", "history": [{"id": "x1"}]}',
    }
    peer = await raw_peer(lambda method, target: http_response(200, bodies[target.split("?")[0]]))
    client = gmail_client(http, peer.url)
    error = await raises(client.list_labels())
    assert error.reason == "malformedResponse" and "labels.1" in error.message and "id" in error.message
    error = await raises(client.list_history(1))
    assert error.reason == "malformedResponse" and "history.0.id" in error.message


async def test_raw_without_padding_and_with_junk(raw_peer, http):
    raw = b"Subject: hi\r\n\r\n\xfe\xff body?>"
    unpadded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    bodies = {
        "good": {"id": "good", "threadId": "t", "historyId": "9", "raw": unpadded},
        "junk": {"id": "junk", "threadId": "t", "historyId": "9", "raw": "not base64 at all!"},
        "none": {"id": "none", "threadId": "t", "historyId": "9"},
    }

    def respond(method: str, target: str) -> bytes:
        message_id = target.split("?")[0].rsplit("/", 1)[1]
        return http_response(200, json.dumps(bodies[message_id]))

    peer = await raw_peer(respond)
    client = gmail_client(http, peer.url)
    assert (await client.get_message("good")).raw == raw
    error = await raises(client.get_message("junk"))
    assert error.reason == "malformedResponse" and "'raw' is not base64url" in error.message
    error = await raises(client.get_message("none"))
    assert error.reason == "malformedResponse" and "no 'raw'" in error.message


async def test_html_error_page_is_retried_then_reported(raw_peer, http):
    peer = await raw_peer(lambda method, target: http_response(502, HTML_502, content_type="text/html"))
    client = gmail_client(http, peer.url, max_retries=2)
    error = await raises(client.get_profile())
    assert (error.status, error.reason) == (502, "backendError")
    assert error.is_transient
    assert "text/html" in error.message and "That’s an error." in error.message and "<" not in error.message
    assert len(peer.api_requests()) == 3
    assert client.request_counts == {("getProfile", 502): 3}


async def test_server_error_then_success(raw_peer, http):
    answers = iter([http_response(503, gmail_error_body(503, "backendError", "Backend Error")), None])

    def respond(method: str, target: str) -> bytes:
        return next(answers) or http_response(200, PROFILE)

    peer = await raw_peer(respond)
    client = gmail_client(http, peer.url)
    profile = await client.get_profile()
    assert profile.history_id == 12345
    assert client.request_counts == {("getProfile", 503): 1, ("getProfile", 200): 1}


async def test_gmail_error_envelope_and_retry_after_seconds(raw_peer, http):
    body = gmail_error_body(429, "rateLimitExceeded", "Too many concurrent requests for user", "RESOURCE_EXHAUSTED")
    peer = await raw_peer(lambda method, target: http_response(429, body, Retry_After="120"))
    client = gmail_client(http, peer.url)
    error = await raises(client.list_messages())
    assert (error.status, error.reason, error.retry_after) == (429, "rateLimitExceeded", 120.0)
    assert error.message == "Too many concurrent requests for user"
    assert error.is_transient and error.is_concurrency_limited
    assert len(peer.api_requests()) == 1  # a wait longer than a quota minute is left to the job layer


async def test_reason_falls_back_to_status_and_retry_after_date(raw_peer, http):
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    body = gmail_error_body(403, None, "Quota exceeded", "PERMISSION_DENIED")
    peer = await raw_peer(lambda method, target: http_response(403, body, Retry_After=later))
    error = await raises(gmail_client(http, peer.url).get_profile())
    assert (error.status, error.reason) == (403, "PERMISSION_DENIED")
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


async def test_long_retry_after_is_not_waited_inside_the_client(raw_peer, http):
    peer = await raw_peer(lambda method, target: http_response(503, "{}", Retry_After="120"))
    started = time.monotonic()
    error = await raises(gmail_client(http, peer.url).get_profile())
    assert time.monotonic() - started < 1.0
    assert (error.status, error.reason, error.retry_after) == (503, "backendError", 120.0)
    assert len(peer.api_requests()) == 1


async def test_truncated_body_is_a_connection_error(raw_peer, http):
    cut = http_response(200, PROFILE).replace(b"Content-Length: %d" % len(PROFILE), b"Content-Length: 500")
    peer = await raw_peer(lambda method, target: cut)
    client = gmail_client(http, peer.url, max_retries=1)
    error = await raises(client.get_profile())
    assert (error.status, error.reason) == (0, "connectionError")
    assert error.is_transient
    assert client.request_counts == {("getProfile", 0): 2}


async def test_silent_server_times_out(raw_peer):
    peer = await raw_peer(lambda method, target: None)
    async with httpx.AsyncClient(timeout=0.3) as http:
        error = await raises(gmail_client(http, peer.url, max_retries=0).get_profile())
    assert (error.status, error.reason) == (0, "connectionError")
    assert "Timeout" in error.message


async def test_connection_refused(raw_peer, http):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    error = await raises(token_source(http, url).access_token())
    assert (error.status, error.reason) == (0, "connectionError")

    token_peer = await raw_peer(lambda method, target: None)  # serves tokens only
    client = gmail_client(http, url, token_source(http, token_peer.url), max_retries=2)
    error = await raises(client.get_profile())
    assert (error.status, error.reason) == (0, "connectionError")
    assert client.request_counts == {("getProfile", 0): 3}


async def test_second_401_is_reported_after_one_reauthorization(raw_peer, http):
    unauthorized = gmail_error_body(401, "authError", "Invalid Credentials", "UNAUTHENTICATED")
    peer = await raw_peer(lambda method, target: http_response(401, unauthorized))
    client = gmail_client(http, peer.url)
    error = await raises(client.get_profile())
    assert (error.status, error.reason, error.message) == (401, "authError", "Invalid Credentials")
    assert peer.requests.count(("POST", "/token")) == 2
    assert len(peer.api_requests()) == 2


@pytest.mark.parametrize(
    ("answer", "status", "reason", "fragment"),
    [
        (
            http_response(400, '{"error": "invalid_grant", "error_description": "Bad Request"}'),
            400,
            "invalid_grant",
            "Bad Request",
        ),
        (http_response(400, '{"error": "invalid_scope"}'), 400, "invalid_scope", "invalid_scope"),
        (http_response(500, "<html><body>oops</body></html>", content_type="text/html"), 500, "backendError", "oops"),
        (
            http_response(503, '{"error": "temporarily_unavailable"}', Retry_After="1"),
            503,
            "temporarily_unavailable",
            "",
        ),
        (http_response(200, "<html>login page</html>", content_type="text/html"), 200, "malformedResponse", "not JSON"),
        (http_response(200, '{"token_type": "Bearer"}'), 200, "malformedResponse", "no access_token"),
        (http_response(200, '{"access_token": "x", "expires_in": "soon"}'), 200, "malformedResponse", "expires_in"),
    ],
)
async def test_token_endpoint_failures(raw_peer, http, answer, status, reason, fragment):
    peer = await raw_peer(lambda method, target: http_response(200, PROFILE), token=answer)
    tokens = token_source(http, peer.url)
    error = await raises(tokens.access_token())
    assert (error.status, error.reason) == (status, reason)
    assert fragment in error.message
    assert error.is_auth_revoked == (reason == "invalid_grant")
    # A body that is not JSON at all (cut short, or a page in its place) is worth asking for again.
    assert error.is_transient == (status >= 500 or fragment == "not JSON")
    assert "1//test-refresh-token" not in str(error)
    assert not peer.api_requests()


async def test_concurrency_is_capped(raw_peer, http):
    peer = await raw_peer(lambda method, target: http_response(200, PROFILE), delay=0.05)
    client = gmail_client(http, peer.url, max_concurrency=2)
    await asyncio.gather(*(client.get_profile() for _ in range(8)))
    assert peer.max_in_flight == 2
    assert client.request_counts == {("getProfile", 200): 8}
    assert peer.requests.count(("POST", "/token")) == 1
