"""The emulator enforces Gmail's usage limits: a rolling per-user quota, a per-project quota and a per-user
cap on requests in flight, answering as Gmail does. The quota clock is a fake one where time matters."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from limits_kit import FakeClock, private_emulator

from mailtide.emulator.faults import MethodFaults
from mailtide.emulator.quota import QuotaEnforcer, QuotaRejection
from mailtide.gmail.quota import quota_profile


def small_profile(**overrides: int):
    # 100 units per 10 s quota minute: 10 units/s, five messages.get in a burst.
    return quota_profile("gmail-2026", user_units_per_minute=100, time_scale=6, **overrides)


def test_rolling_user_quota_refuses_like_gmail_and_recovers() -> None:
    clock = FakeClock()
    with private_emulator() as emu:
        emu.state.quota = QuotaEnforcer(small_profile(), clock=clock)
        [message_id] = emu.fill(1)
        for _ in range(5):
            assert emu.api.get(f"/messages/{message_id}").status_code == 200
        refused = emu.api.get(f"/messages/{message_id}")
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert error["errors"][0]["reason"] == "rateLimitExceeded"
        assert error["errors"][0]["domain"] == "usageLimits"
        assert error["message"].startswith("User-rate limit exceeded.  Retry after ")
        retry_at = datetime.fromisoformat(error["message"].rsplit(" ", 1)[1].replace("Z", "+00:00"))
        assert retry_at.tzinfo is not None
        assert refused.headers["Retry-After"] == "2"  # 20 units at 10 units/s
        assert emu.api.get("/profile").status_code == 429  # even 1 unit: the allowance is spent

        clock.now += 1.0  # 10 units back: a profile call (1) fits, a get (20) does not yet
        assert emu.api.get("/profile").status_code == 200
        assert emu.api.get(f"/messages/{message_id}").status_code == 429
        clock.now += 2.0
        assert emu.api.get(f"/messages/{message_id}").status_code == 200

        counters = emu.admin.get("/_emulator/counters").json()
        gets = counters["methods"]["messages.get"]
        assert gets["responses"] == {"200": 6, "429": 2}
        assert gets["units"] == 6 * 20  # refusals are not charged
        assert gets["rejected"] == {"user": 2}
        assert counters["quotaUnits"] == {emu.email: 6 * 20 + 1}


def test_the_older_403_answer_is_selectable() -> None:
    with private_emulator() as emu:
        emu.state.quota = QuotaEnforcer(small_profile(), rejection_style="403", clock=FakeClock())
        for _ in range(120):  # 1 unit each: the 101st is refused
            answer = emu.api.get("/profile")
            if answer.status_code != 200:
                break
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert (error["errors"][0]["reason"], error["errors"][0]["domain"]) == ("userRateLimitExceeded", "usageLimits")
        assert error["status"] == "PERMISSION_DENIED"
        assert int(answer.headers["Retry-After"]) >= 1


def test_requests_in_flight_per_user_are_capped() -> None:
    profile = quota_profile("gmail-2026", max_concurrent_per_user=2)
    with private_emulator(profile) as emu:
        emu.state.faults.configure({"getProfile": MethodFaults(latency=0.4)})
        statuses: list[int] = []
        start = threading.Barrier(5)

        def call() -> None:
            start.wait()
            statuses.append(emu.api.get("/profile").status_code)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        assert emu.state.quota.in_flight(emu.email) == 0
        refused = emu.state.counters.snapshot()["methods"]["getProfile"]["rejected"]
        assert refused == {"concurrency": 3}
        emu.state.faults.configure({})
        answer = emu.api.get("/profile")
        assert answer.status_code == 200


def test_the_per_project_quota_spans_users() -> None:
    profile = quota_profile("gmail-2026", project_units_per_minute=50)
    with private_emulator(profile) as emu:
        emu.state.quota = QuotaEnforcer(profile, clock=FakeClock())
        [message_id] = emu.fill(1)
        assert emu.api.get(f"/messages/{message_id}").status_code == 200
        assert emu.api.get(f"/messages/{message_id}").status_code == 200
        with emu.user("other@example.test") as other:  # a fresh user, but the project has spent 40 of 50
            assert other.get("/profile").status_code == 200  # 41
            assert other.get("/messages").status_code == 200  # 46
            refused = other.get("/messages")  # 51: over the project's allowance
        assert refused.status_code == 429
        assert "Queries per minute" in refused.json()["error"]["message"]
        assert emu.state.counters.snapshot()["methods"]["messages.list"]["rejected"] == {"project": 1}


def test_unlimited_counts_units_and_never_refuses() -> None:
    with private_emulator("unlimited") as emu:
        [message_id] = emu.fill(1)
        for _ in range(30):
            assert emu.api.get(f"/messages/{message_id}").status_code == 200
        assert emu.state.counters.quota_units(emu.email) == 30 * 20


def test_a_call_dearer_than_the_allowance_fits_an_empty_bucket_only() -> None:
    clock = FakeClock()
    enforcer = QuotaEnforcer(quota_profile("gmail-2026", user_units_per_minute=10), clock=clock)
    assert enforcer.admit("a@x", "messages.get") == 20
    enforcer.release("a@x")
    with pytest.raises(QuotaRejection) as refused:
        enforcer.admit("a@x", "getProfile")
    assert refused.value.kind == "user"
    assert refused.value.retry_after == pytest.approx(66.0)  # 11 units over, at 10 units per 60 s
    clock.now += 120
    assert enforcer.usage("a@x") == 0


def test_the_admin_api_switches_profiles() -> None:
    with private_emulator() as emu:
        shown = emu.admin.get("/_emulator/quota").json()
        assert shown["profile"]["name"] == "gmail-2026"
        assert shown["profile"]["userUnitsPerMinute"] == 6000
        assert shown["profile"]["costs"]["messages.get"] == 20
        assert shown["rejectionStyle"] == "429"

        changed = emu.admin.put(
            "/_emulator/quota",
            json={"profile": "gmail-legacy", "timeScale": 10, "rejectionStyle": "403", "batchParallelism": 3},
        ).json()
        assert changed["profile"]["costs"]["messages.get"] == 5
        assert changed["profile"]["minuteSeconds"] == 6
        assert (changed["rejectionStyle"], changed["batchParallelism"]) == ("403", 3)
        assert emu.state.cost_of("messages.get") == 5

        custom = emu.admin.put("/_emulator/quota", json={"userUnitsPerMinute": 50, "costs": {"history.list": 3}})
        assert custom.json()["profile"]["name"] == "gmail-legacy (custom)"
        assert emu.state.cost_of("history.list") == 3 and emu.state.quota.profile.user_units_per_minute == 50

        bad = emu.admin.put("/_emulator/quota", json={"profile": "gmail-1999"})
        assert bad.status_code == 400 and "unknown quota profile" in bad.json()["error"]["message"]
        assert emu.admin.put("/_emulator/quota", json={"timeScale": 0}).status_code == 400
