"""Batch gets: up to 50 messages per request, each id answered exactly once, inner failures retried for
just those ids, nothing dropped or counted twice, and the reply read part by part as it streams in."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter

import httpx
import pytest
from gmail_testkit import EMAIL, gmail_client

from mailtide.emulator.faults import MethodFaults
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.gmail import GmailError, QuotaLimiter
from mailtide.gmail.batch import MultipartReader, parse_part
from mailtide.gmail.models import Message
from mailtide.gmail.quota import quota_profile


def raw(n: int) -> bytes:
    return f"From: s{n}@example.com\r\nSubject: m{n}\r\nMessage-ID: <m{n}@x>\r\n\r\nbody {n}\r\n".encode()


def fill(state: EmulatorState, count: int) -> list[str]:
    mailbox = state.mailbox(EMAIL)
    return [mailbox.add_message(raw(n)) for n in range(count)]


async def collect(client, ids: list[str]) -> dict[str, Message | GmailError]:
    got: dict[str, Message | GmailError] = {}
    async for message_id, result in client.iter_messages(ids):
        assert message_id not in got, f"{message_id} answered twice"
        got[message_id] = result
    return got


async def test_batches_of_fifty_and_a_missing_id(emulator: EmulatorServer, state: EmulatorState, http) -> None:
    ids = fill(state, 120)
    client = gmail_client(http, emulator.url)
    got = await collect(client, [*ids, "ffffffffffffffff", ids[0]])  # a duplicate id is fetched once
    assert set(got) == {*ids, "ffffffffffffffff"}
    assert isinstance(got["ffffffffffffffff"], GmailError) and got["ffffffffffffffff"].is_not_found
    assert all(isinstance(got[i], Message) and got[i].raw == raw(n) for n, i in enumerate(ids))
    assert client.request_counts == {("batch", 200): 3, ("messages.get", 200): 120, ("messages.get", 404): 1}
    assert state.counters.requests("batch") == 3


async def test_inner_server_errors_are_retried_for_just_those_ids(emulator, state: EmulatorState, http) -> None:
    ids = fill(state, 80)
    state.faults.configure({"messages.get": MethodFaults(error500=0.1, error503=0.05)}, seed=11)
    client = gmail_client(http, emulator.url)
    got = await collect(client, ids)
    assert all(isinstance(result, Message) for result in got.values()) and len(got) == 80
    failed = state.counters.responses("messages.get", 500) + state.counters.responses("messages.get", 503)
    assert failed > 0
    assert state.counters.responses("messages.get", 200) == 80  # no message fetched twice
    assert state.counters.requests("messages.get") == 80 + failed


async def test_a_reply_cut_short_or_truncated_loses_nothing(emulator, state: EmulatorState, http) -> None:
    ids = fill(state, 60)
    state.faults.configure({"batch": MethodFaults(reset=0.3), "messages.get": MethodFaults(truncate=0.1)}, seed=4)
    client = gmail_client(http, emulator.url, max_retries=6)
    got = await collect(client, ids)
    assert all(isinstance(result, Message) for result in got.values()) and len(got) == 60
    assert client.request_counts.get(("batch", 0), 0) > 0  # some replies were cut mid-body


async def test_a_call_that_keeps_failing_is_reported_not_dropped(emulator, state: EmulatorState, http) -> None:
    ids = fill(state, 5)
    state.faults.configure({"messages.get": MethodFaults(error500=1.0)})
    client = gmail_client(http, emulator.url, max_retries=2)
    got = await collect(client, ids)
    assert set(got) == set(ids)
    assert all(isinstance(result, GmailError) and result.status == 500 for result in got.values())
    assert state.counters.requests("messages.get") == 5 * 3  # the first try and two retries, per id


async def test_inner_rate_limits_are_retried_and_batches_fit_the_bucket(http) -> None:
    custom = {"user_units_per_minute": 200, "time_scale": 60}
    state = EmulatorState(seed=3, quota_profile=quota_profile("gmail-2026", **custom))
    state.add_user(EMAIL, client_id="test-client", client_secret="test-secret", refresh_token="1//test-refresh-token")
    ids = fill(state, 30)
    with EmulatorServer(state) as server:
        unpaced = gmail_client(http, server.url, batch_size=50)
        got = await collect(unpaced, ids)  # 600 units against a 200-unit bucket: inner 429s, retried
        assert all(isinstance(result, Message) for result in got.values())
        assert state.counters.responses("messages.get", 429) > 0
        assert state.counters.responses("messages.get", 200) == 30

        state.counters.reset()
        state.quota.reset()  # a fresh allowance for the paced client, whose bucket starts full
        paced = gmail_client(http, server.url, limiter=QuotaLimiter(quota_profile("gmail-2026", **custom)))
        assert len(await collect(paced, ids)) == 30
        assert paced.request_counts[("batch", 200)] == 4  # 9 per batch: 180 units fit the bucket (194)
        assert state.counters.rejections() == 0


async def test_an_expired_token_inside_a_batch_is_refreshed_once(emulator, state: EmulatorState, http) -> None:
    ids = fill(state, 12)
    client = gmail_client(http, emulator.url)
    await client.get_profile()
    state.expire_access_tokens(EMAIL)
    got = await collect(client, ids)
    assert all(isinstance(result, Message) for result in got.values())
    assert client.request_counts[("messages.get", 401)] == 12
    assert state.counters.requests("oauth.token") == 2


def test_multipart_reader_handles_any_chunking_and_line_ends() -> None:
    body = b'preamble\r\n--b1\r\nContent-ID: <response-x+0>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{"a": "--b1 inside"}\r\n'
    body += (
        b"--b1\nContent-ID: <response-x+1>\n\nHTTP/1.1 404 Not Found\nContent-Type: application/json\n\n{}\n--b1--\r\n"
    )
    for size in (1, 3, 7, len(body)):
        reader = MultipartReader("b1")
        parts = []
        for start in range(0, len(body), size):
            parts += reader.feed(body[start : start + size])
        assert reader.finished
        first, second = (parse_part(part) for part in parts)
        assert (first.content_id, first.status, first.body) == ("x+0", 200, b'{"a": "--b1 inside"}')
        assert (second.content_id, second.status, second.content_type) == ("x+1", 404, "application/json")
    unfinished = MultipartReader("b1")
    unfinished.feed(body[:60])
    assert not unfinished.finished


async def test_messages_are_handed_on_while_the_reply_still_streams(http: httpx.AsyncClient) -> None:
    """A peer that sends the first part and then waits: the first message must arrive before the rest is sent."""
    release = asyncio.Event()

    def part(index: int, message_id: str) -> bytes:
        data = {
            "id": message_id,
            "threadId": "t",
            "historyId": "7",
            "raw": base64.urlsafe_b64encode(raw(index)).decode(),
        }
        return (
            f"--B\r\nContent-Type: application/http\r\nContent-ID: <response-{{cid}}+{index}>\r\n\r\n"
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{json.dumps(data)}\r\n"
        ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"POST /token"):
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))[15:])
            await reader.readexactly(length)
            token = b'{"access_token": "t", "expires_in": 3600}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(token), token))
            await writer.drain()
            writer.close()
            return
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))[15:])
        request = await reader.readexactly(length)
        cid = request.split(b"Content-ID: <", 1)[1].split(b"+", 1)[0].decode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        stream = part(0, "a").replace(b"{cid}", cid.encode()) + part(1, "b").replace(b"{cid}", cid.encode())
        stream += b"--B--\r\n"
        middle = stream.index(b"--B", 10) + 60  # part "a" and the start of part "b"
        writer.write(b"%x\r\n%s\r\n" % (middle, stream[:middle]))
        await writer.drain()
        await release.wait()
        rest = stream[middle:]
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        client = gmail_client(http, url)
        order: list[str] = []
        async for message_id, result in client.iter_messages(["a", "b"]):
            assert isinstance(result, Message)
            order.append(message_id)
            if message_id == "a":
                assert not release.is_set()  # the second part has not been sent yet
                release.set()
        assert order == ["a", "b"]
    finally:
        server.close()


@pytest.mark.parametrize("count", [1, 2])
async def test_small_fetches(emulator: EmulatorServer, state: EmulatorState, http, count: int) -> None:
    ids = fill(state, count)
    client = gmail_client(http, emulator.url)
    got = await collect(client, ids)
    assert all(isinstance(result, Message) for result in got.values()) and len(got) == count
    kinds = Counter(method for method, _ in client.request_counts)
    assert kinds["batch"] == (0 if count == 1 else 1)  # a single id needs no batch
