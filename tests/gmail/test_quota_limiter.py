"""The client rides the quota: a cost-aware token bucket (burst = one minute's allowance), adaptive
back-off on rate-limit replies that recovers gradually, and a concurrency cap that shrinks on "too many
concurrent requests". Pure parts on a fake clock; the rest against the emulator enforcing the same profile."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from gmail_testkit import EMAIL, FakeClock, gmail_client, http_response

from mailtide.emulator.faults import MethodFaults
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.gmail import GmailError, QuotaLimiter
from mailtide.gmail.limiter import TokenBucket, project_bucket
from mailtide.gmail.quota import PROFILES, quota_profile


class FakeTime(FakeClock):
    """A clock whose sleep advances it (so waits are exact and instant)."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(units_per_minute: int = 100, *, scale: float = 6.0, fake: FakeTime) -> QuotaLimiter:
    # 100 units per 10 s: a burst of 100, then 10 units/s.
    profile = quota_profile("gmail-2026", user_units_per_minute=units_per_minute, time_scale=scale)
    return QuotaLimiter(profile, clock=fake, sleep=fake.sleep)


def test_the_profiles_say_what_the_issue_says() -> None:
    new, legacy, unlimited = PROFILES["gmail-2026"], PROFILES["gmail-legacy"], PROFILES["unlimited"]
    assert (new.user_units_per_minute, new.project_units_per_minute) == (6000, 1_200_000)
    expected = {"messages.get": 20, "messages.list": 5, "history.list": 2, "getProfile": 1, "labels.list": 1}
    assert {m: new.cost(m) for m in expected} == expected
    assert (new.cost("watch"), new.cost("stop"), new.cost("messages.attachments.get")) == (100, 50, 20)
    assert (legacy.user_units_per_minute, legacy.cost("messages.get")) == (15_000, 5)
    assert not unlimited.limited and unlimited.cost("messages.get") == 20
    assert quota_profile("2026") is new and quota_profile("legacy") is legacy
    scaled = quota_profile("gmail-2026", time_scale=10)
    assert scaled.minute_seconds == 6 and scaled.user_units_per_second == 1000
    with pytest.raises(ValueError, match="unknown quota profile"):
        quota_profile("gmail-1999")


def test_token_bucket_bursts_then_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, 10, clock=clock)
    assert bucket.wait_time(100) == 0
    bucket.take(100)
    assert bucket.wait_time(20) == pytest.approx(2.0)
    clock.now += 1
    assert bucket.wait_time(20) == pytest.approx(1.0)
    assert bucket.wait_time(20, factor=0.5) == pytest.approx(2.0)
    clock.now += 60
    assert bucket.refill() == 100  # never more than one burst


async def test_acquire_waits_exactly_for_the_units() -> None:
    fake = FakeTime()
    pacing = limiter(fake=fake)
    await pacing.acquire(97)  # the burst: the allowance less a small reserve (HEADROOM, 3 %)
    assert fake.slept == []
    await pacing.acquire(20)
    assert sum(fake.slept) == pytest.approx(2.0)
    assert pacing.stats.units == 117 and pacing.stats.waited_seconds == pytest.approx(2.0)
    assert pacing.max_calls("messages.get") == 4  # a batch never costs more than a full bucket


async def test_a_rate_limit_reply_drains_halves_pauses_and_the_rate_recovers() -> None:
    fake = FakeTime()
    pacing = limiter(fake=fake)
    pause = pacing.on_rate_limited(retry_after=3.0)
    assert pause == 3.0 and pacing.rate_factor == 0.5
    await pacing.acquire(10)  # waits out the pause; the bucket was drained, but 3 s at 5 units/s refilled 15
    assert sum(fake.slept) == pytest.approx(3.0)
    pacing.on_rate_limited(retry_after=None)  # no Retry-After: back-off from 1 s x (minute/60), jittered
    assert pacing.rate_factor == 0.25
    spent = 0
    while pacing.rate_factor < 1.0:  # successes give the rate back in proportion to the units they spent
        await pacing.acquire(20)
        pacing.on_success(20)
        spent += 20
    assert 100 <= spent <= 400  # gradually: an allowance or more, not at the first success


async def test_the_project_bucket_is_shared_by_accounts() -> None:
    fake = FakeTime()
    profile = quota_profile("gmail-2026", project_units_per_minute=50)
    shared = project_bucket(profile, clock=fake)
    first, second = (QuotaLimiter(profile, project_bucket=shared, clock=fake, sleep=fake.sleep) for _ in range(2))
    await first.acquire(40)
    await second.acquire(20)  # its own allowance is full, the project's is not
    assert sum(fake.slept) == pytest.approx(10 / (50 / 60))


# ------------------------------------------------------------------ against the emulator
def emulator_with(profile_name: str = "gmail-2026", **custom: object) -> tuple[EmulatorState, EmulatorServer]:
    profile = quota_profile(profile_name, **custom)  # type: ignore[arg-type]
    state = EmulatorState(seed=3, quota_profile=profile)
    state.add_user(EMAIL, client_id="test-client", client_secret="test-secret", refresh_token="1//test-refresh-token")
    return state, EmulatorServer(state)


def fill(state: EmulatorState, count: int) -> list[str]:
    mailbox = state.mailbox(EMAIL)
    return [
        mailbox.add_message(f"Subject: m{n}\r\nMessage-ID: <m{n}@x>\r\n\r\nbody {n}\r\n".encode()) for n in range(count)
    ]


async def fetch_all(client, ids: list[str]) -> dict[str, object]:
    got: dict[str, object] = {}
    async for message_id, result in client.iter_messages(ids):
        assert message_id not in got
        got[message_id] = result
    return got


async def test_a_paced_client_is_never_refused(http: httpx.AsyncClient) -> None:
    custom = {"user_units_per_minute": 400, "time_scale": 30}  # 400 units per 2 s quota minute
    state, server = emulator_with(**custom)
    ids = fill(state, 36)
    with server:
        client = gmail_client(http, server.url, limiter=QuotaLimiter(quota_profile("gmail-2026", **custom)))
        got = await fetch_all(client, ids)  # 720 units: nearly twice the burst
        for _ in range(20):
            await client.get_profile()
    assert all(not isinstance(result, GmailError) for result in got.values()) and len(got) == 36
    assert state.counters.rejections() == 0
    assert client.limiter.stats.waited_seconds > 0  # it did have to wait for units
    assert client.request_counts[("batch", 200)] == 2  # 19 per batch: the bucket holds 388 units


async def test_rate_limit_replies_caused_by_another_client_are_absorbed(http: httpx.AsyncClient) -> None:
    custom = {"user_units_per_minute": 300, "time_scale": 60}
    state, server = emulator_with(**custom)
    ids = fill(state, 40)
    with server:
        ours = gmail_client(http, server.url, limiter=QuotaLimiter(quota_profile("gmail-2026", **custom)))
        rogue = gmail_client(http, server.url, max_rate_retries=50)  # unlimited pacing: spends the user's quota

        async def hog() -> None:
            for _ in range(30):
                await rogue.list_messages(max_results=1)

        got, _ = await asyncio.gather(fetch_all(ours, ids), hog())
    assert len(got) == 40 and all(not isinstance(r, GmailError) for r in got.values())
    assert state.counters.rejections() > 0
    assert ours.limiter.stats.rate_limited > 0


async def test_the_403_style_is_treated_like_a_429(http: httpx.AsyncClient) -> None:
    state, server = emulator_with(user_units_per_minute=20, time_scale=60)  # 20 units/s
    state.quota.rejection_style = "403"
    with server:
        client = gmail_client(http, server.url, max_rate_retries=20)  # no local pacing: learns from the replies
        await asyncio.gather(*(client.get_profile() for _ in range(50)))  # eight at a time, far above 20/s
    assert state.counters.responses("getProfile", 403) > 0
    assert state.counters.responses("getProfile", 200) == 50
    assert client.limiter.stats.rate_limited > 0


async def test_too_many_concurrent_requests_shrink_the_cap(http: httpx.AsyncClient) -> None:
    state, server = emulator_with(max_concurrent_per_user=2)
    state.faults.configure({"getProfile": MethodFaults(latency=0.05)})
    with server:
        client = gmail_client(http, server.url, max_concurrency=6, limiter=QuotaLimiter(quota_profile("unlimited")))
        profiles = await asyncio.gather(*(client.get_profile() for _ in range(24)))
    assert len(profiles) == 24
    assert state.counters.snapshot()["methods"]["getProfile"]["rejected"]["concurrency"] > 0
    assert client.concurrency_limit <= 3
    assert client.limiter.stats.concurrency_limited > 0


async def test_retry_after_is_honoured(raw_peer, http: httpx.AsyncClient) -> None:
    answers = iter([http_response(429, '{"error": {"code": 429, "message": "slow down"}}', Retry_After="1")])
    profile = '{"emailAddress": "a@example.com", "historyId": "5"}'
    seen: list[float] = []

    def respond(method: str, target: str) -> bytes:
        seen.append(time.monotonic())
        return next(answers, None) or http_response(200, profile)

    peer = await raw_peer(respond)
    client = gmail_client(http, peer.url)
    assert (await client.get_profile()).history_id == 5
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.95
    assert client.limiter.stats.rate_limited == 1


async def test_rate_limits_beyond_the_budget_reach_the_caller(raw_peer, http: httpx.AsyncClient) -> None:
    body = '{"error": {"code": 429, "message": "Quota", "errors": [{"reason": "rateLimitExceeded"}]}}'
    peer = await raw_peer(lambda method, target: http_response(429, body, Retry_After="0"))
    client = gmail_client(http, peer.url, max_rate_retries=2)
    with pytest.raises(GmailError) as caught:
        await client.get_profile()
    assert caught.value.is_rate_limited and caught.value.retry_after is not None
    assert len(peer.api_requests()) == 3
