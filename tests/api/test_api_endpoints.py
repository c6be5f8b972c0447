"""The HTTP API against a real database (SQLite and PostgreSQL) and the emulator over HTTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_support import API_TOKEN, EMAIL, Api, Emulator, assert_error, open_api, settings_for

from mailtide.config import ConfigError, load_settings
from mailtide.sync import jobtypes


async def test_health_and_readiness(api: Api, emulator: Emulator, database_url: str, tmp_path: Path) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"database": "ok", "migrations": "ok", "worker": "ok"}}
    settings = settings_for(emulator, database_url, tmp_path)
    async for stopped in open_api(settings, emulator, worker_running=False):
        not_ready = await stopped.http.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["worker"] == "not running"


async def test_accounts_show_backfill_progress_and_accept_work(api: Api) -> None:
    before = (await api.http.get(f"/api/accounts/{api.account_id}")).json()
    assert before["status"] == "needs_backfill" and before["messages_mirrored"] == 0

    queued = await api.http.post(f"/api/accounts/{api.account_id}/backfill")
    assert queued.status_code == 202 and queued.json()["job"]["type"] == jobtypes.BACKFILL
    assert_error(await api.http.post(f"/api/accounts/{api.account_id}/backfill"), 409, "backfill_active")
    total = len(api.emulator.message_ids())

    await api.run_one(jobtypes.BACKFILL)  # the first page: 10 ids listed, none fetched yet
    await api.run_one(jobtypes.INGEST)  # 10 messages mirrored
    halfway = (await api.http.get(f"/api/accounts/{api.account_id}")).json()
    assert halfway["status"] == "backfilling" and halfway["messages_mirrored"] == 10
    # ETA at the 2026 quota: 6,000 units a minute, 20 a message = 5 messages a second.
    assert halfway["backfill"] | {"started_at": None, "job_id": None} == {
        "state": "running", "job_id": None, "running": True, "listed": 10, "total": total, "mirrored": 10,
        "progress": 10 / total, "eta_seconds": (total - 10) / 5, "started_at": None, "finished_at": None,
    }
    assert halfway["ingest"] == {"jobs": 0, "messages": 0} and f"% of {total}, ETA " in halfway["summary"]
    await api.settle()

    [account] = (await api.http.get("/api/accounts")).json()["accounts"]
    assert account["email"] == EMAIL and account["status"] == "normal" and account["action"] is None
    assert account["messages_mirrored"] == total
    assert account["backfill"] | {"started_at": None, "finished_at": None, "job_id": None} == {
        "state": "done", "job_id": None, "running": False, "listed": total, "total": total, "mirrored": total,
        "progress": 1.0, "eta_seconds": None, "started_at": None, "finished_at": None,
    }
    assert account["ingest"] == {"jobs": 0, "messages": 0} and account["summary"].startswith("done ")
    assert account["history_id"] == api.emulator.mailbox.history_id
    assert account["last_sync_at"] is not None and account["lag_seconds"] == 0
    assert datetime.fromisoformat(account["created_at"]).utcoffset() == UTC.utcoffset(None)  # ISO 8601, UTC

    sync = await api.http.post(f"/api/accounts/{api.account_id}/sync")
    assert sync.status_code == 202 and sync.json()["job"]["type"] == jobtypes.HISTORY_SYNC
    assert_error(await api.http.get("/api/accounts/999"), 404, "not_found")
    assert_error(await api.http.post("/api/accounts/999/sync"), 404, "not_found")
    assert_error(await api.http.get("/api/accounts/abc"), 422, "invalid_request")


async def test_jobs_filter_paginate_cancel_and_retry(api: Api) -> None:
    await api.backfill()
    everything = (await api.http.get("/api/jobs", params={"limit": 500})).json()
    assert everything["next_cursor"] is None
    ids = [job["id"] for job in everything["jobs"]]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 4

    paged: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.http.get("/api/jobs", params=params)).json()
        paged += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == ids

    ingests = (await api.http.get("/api/jobs", params={"type": jobtypes.INGEST, "state": "completed"})).json()["jobs"]
    assert ingests and all(j["type"] == jobtypes.INGEST and j["state"] == "completed" for j in ingests)
    assert (await api.http.get("/api/jobs", params={"account_id": 999})).json()["jobs"] == []

    detail = (await api.http.get(f"/api/jobs/{ingests[0]['id']}")).json()
    assert [s["name"] for s in detail["steps"]] == ["ingested"] and detail["steps"][0]["detail"]["stored"] > 0
    assert_error(await api.http.post(f"/api/jobs/{ingests[0]['id']}/cancel"), 409, "already_finished")
    assert_error(await api.http.post(f"/api/jobs/{ingests[0]['id']}/retry"), 409, "not_retryable")

    queued = (await api.http.post(f"/api/accounts/{api.account_id}/sync")).json()["job"]
    canceled = await api.http.post(f"/api/jobs/{queued['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    retried = await api.http.post(f"/api/jobs/{queued['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "queued"
    assert_error(await api.http.get("/api/jobs/123456789"), 404, "not_found")
    assert_error(await api.http.get("/api/jobs", params={"state": "sleeping"}), 422, "invalid_request")


async def test_messages_search_read_raw_and_threads(api: Api) -> None:
    await api.backfill()
    total = len(api.emulator.message_ids())

    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = (await api.http.get("/api/messages", params=params)).json()
        seen += page["messages"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {m["id"] for m in seen} == api.emulator.message_ids() and len(seen) == total
    dates = [m["date"] for m in seen]
    assert dates == sorted(dates, reverse=True)  # newest first

    gmail_labels = {row["id"]: set(row["labelIds"]) for row in api.emulator.mailbox.snapshot()["messages"]}
    inbox = (await api.http.get("/api/messages", params={"label": "INBOX", "limit": 500})).json()["messages"]
    assert {m["id"] for m in inbox} == {i for i, labels in gmail_labels.items() if "INBOX" in labels}
    takeout_id = next(label.id for label in api.emulator.mailbox.labels() if label.name == "takeout")
    by_name = (await api.http.get("/api/messages", params={"label": "takeout", "limit": 500})).json()["messages"]
    assert {m["id"] for m in by_name} == {i for i, labels in gmail_labels.items() if takeout_id in labels}
    assert by_name and len(by_name) < total
    assert (await api.http.get("/api/messages", params={"label": "no such label"})).json()["messages"] == []

    sample = next(m for m in seen if m["from"] and m["subject"])
    sender = sample["from"].split("<")[-1].strip(">").upper()
    from_hits = (await api.http.get("/api/messages", params={"from": sender, "limit": 500})).json()["messages"]
    assert sample["id"] in {m["id"] for m in from_hits}
    assert all(sender.lower() in m["from"].lower() for m in from_hits)
    words = sample["subject"][:12].lower()
    subject_hits = (await api.http.get("/api/messages", params={"subject": words, "limit": 500})).json()["messages"]
    assert sample["id"] in {m["id"] for m in subject_hits}

    middle = datetime.fromisoformat(dates[total // 2])
    newer = (await api.http.get("/api/messages", params={"after": middle.isoformat(), "limit": 500})).json()
    older = (await api.http.get("/api/messages", params={"before": int(middle.timestamp()), "limit": 500})).json()
    assert len(newer["messages"]) + len(older["messages"]) == total
    assert all(datetime.fromisoformat(m["date"]) >= middle for m in newer["messages"])

    detail = (await api.http.get(f"/api/messages/{sample['id']}")).json()
    assert detail["subject"] == sample["subject"] and detail["from"] == sample["from"]
    assert detail["headers"] and (detail["body_text"] or detail["body_html"]) and detail["attachments"] == []
    raw = await api.http.get(f"/api/messages/{sample['id']}", params={"format": "raw"})
    assert raw.headers["content-type"] == "message/rfc822"
    expected = next(r["sha256"] for r in api.emulator.mailbox.snapshot()["messages"] if r["id"] == sample["id"])
    assert hashlib.sha256(raw.content).hexdigest() == expected == detail["raw_sha256"]

    thread = (await api.http.get(f"/api/threads/{sample['thread_id']}")).json()
    assert sample["id"] in [m["id"] for m in thread["messages"]] and thread["message_count"] == len(thread["messages"])

    assert_error(await api.http.get("/api/messages/ffffffffffffffff"), 404, "not_found")
    assert_error(await api.http.get("/api/threads/ffffffffffffffff"), 404, "not_found")
    assert_error(await api.http.get("/api/messages", params={"cursor": "bm90LWEtY3Vyc29y"}), 400, "invalid_cursor")
    assert_error(await api.http.get("/api/messages/bad%20id"), 422, "invalid_request")


async def test_metrics_cover_jobs_gmail_quota_and_accounts(api: Api) -> None:
    await api.backfill()
    total = len(api.emulator.message_ids())
    text = (await api.http.get("/metrics")).text
    account = f'account="{api.account_id}"'
    expected_lines = [
        f"mailtide_account_messages_mirrored{{{account}}} {float(total)}",
        f"mailtide_account_backfill_progress_ratio{{{account}}} 1.0",
        f"mailtide_account_sync_lag_seconds{{{account}}} 0.0",
        f'mailtide_account_info{{{account},email="{EMAIL}",status="normal"}} 1.0',
        f'mailtide_gmail_requests_total{{{account},method="messages.get",status="200"}} {float(total)}',
        f"mailtide_messages_mirrored {float(total)}",
        "mailtide_jobs_paused 0.0",
    ]
    for line in expected_lines:
        assert line in text, line
    units = next(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith(f"mailtide_gmail_quota_units_total{{{account}}}"))
    assert units >= 20 * total  # messages.get costs 20 units (2026 quota)
    again = (await api.http.get("/metrics")).text
    assert 'mailtide_api_requests_total{route="/metrics",status="200"} 1.0' in again
    for name in ("mailtide_job_duration_seconds_count", 'mailtide_jobs{state="completed",type="ingest.gmail"}',
                 "mailtide_account_last_sync_timestamp_seconds", "mailtide_queue_oldest_queued_age_seconds",
                 "mailtide_gmail_request_duration_seconds", f"mailtide_gmail_quota_wait_seconds_total{{{account}}}",
                 'mailtide_gmail_http_requests_total{method="batch",status="200"}'):
        assert name in text, name


async def test_api_token_guards_every_endpoint_but_healthz(emulator: Emulator, database_url: str,
                                                           tmp_path: Path) -> None:
    settings = settings_for(emulator, database_url, tmp_path, api_host="0.0.0.0", api_token=API_TOKEN)
    async for api in open_api(settings, emulator):
        assert (await api.http.get("/healthz")).status_code == 200
        for path in ("/readyz", "/metrics", "/api/accounts", "/api/jobs", "/api/messages", "/openapi.json", "/docs"):
            response = await api.http.get(path)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await api.http.get("/api/accounts", headers={"Authorization": "Bearer " + "x" * len(API_TOKEN)})
        assert_error(wrong, 401, "unauthorized")
        assert_error(await api.http.post(f"/api/accounts/{api.account_id}/sync"), 401, "unauthorized")
        good = {"Authorization": f"Bearer {API_TOKEN}"}
        assert (await api.http.get("/api/accounts", headers=good)).status_code == 200
        schema = (await api.http.get("/openapi.json", headers=good)).json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_an_exposed_api_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="api_token"):
        load_settings(api_host="0.0.0.0")
    with pytest.raises(ConfigError, match=r"api_token \(MAILTIDE_API_TOKEN\)"):
        load_settings(api_host="0.0.0.0", api_token="short")
    assert load_settings(api_host="::1").api_token is None  # loopback needs none

