"""The /_emulator admin API and the request / quota counters."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import User, make_message

from mailtide.emulator import EmulatorState
from mailtide.gmail.quota import quota_profile


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture
def clean_counters(state: EmulatorState) -> Iterator[EmulatorState]:
    state.counters.reset()
    yield state
    state.counters.reset()


def test_create_user_then_use_it_end_to_end(http: httpx.Client) -> None:
    created = http.post("/_emulator/users", json={"email": "admin-made@example.test", "refresh_token": "1//admin-made"})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["refreshToken"] == "1//admin-made" and body["clientId"] == "mailtide-demo"
    assert body["historyId"].isdigit()
    assert "admin-made@example.test" in http.get("/_emulator/users").json()["users"]
    duplicate = http.post("/_emulator/users", json={"email": "admin-made@example.test"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == 409
    invalid = http.post("/_emulator/users", json={"email": "no-at-sign"})
    assert invalid.status_code == 400
    unknown_field = http.post("/_emulator/users", json={"email": "x@example.test", "colour": "red"})
    assert unknown_field.status_code == 400 and "colour" in unknown_field.json()["error"]["message"]

    grant = http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "mailtide-demo",
            "client_secret": "demo-secret",
            "refresh_token": "1//admin-made",
        },
    ).json()
    profile = http.get(
        "/gmail/v1/users/me/profile", headers={"Authorization": f"Bearer {grant['access_token']}"}
    ).json()
    assert profile["emailAddress"] == "admin-made@example.test" and profile["messagesTotal"] == 0


def test_message_admin_endpoints_and_snapshot(http: httpx.Client, user: User) -> None:
    base = f"/_emulator/users/{user.email}"
    raw = make_message("from admin", message_id="adm@x")
    added = http.post(f"{base}/messages", json={"raw": b64url(raw), "labelIds": ["INBOX"]}).json()
    assert user.mailbox.get_message(added["id"]).raw == raw
    assert added["historyId"] == str(user.mailbox.history_id)
    text = http.post(
        f"{base}/messages", json={"rawText": "Subject: Re: from admin\r\nIn-Reply-To: <adm@x>\r\n\r\nhi\r\n"}
    ).json()
    assert text["threadId"] == added["threadId"]
    assert user.mailbox.get_message(text["id"]).label_ids == ("INBOX", "UNREAD")  # default for new mail

    label = http.post(f"{base}/labels", json={"name": "Followup"}).json()
    assert label["type"] == "user" and label["name"] == "Followup"
    assert http.post(f"{base}/labels", json={"name": "followup"}).status_code == 409
    modified = http.post(
        f"{base}/messages/{added['id']}/modify", json={"addLabelIds": [label["id"]], "removeLabelIds": ["INBOX"]}
    ).json()
    assert modified["labelIds"] == [label["id"]]
    assert http.post(f"{base}/messages/{added['id']}/modify", json={"addLabelIds": ["Nope"]}).status_code == 400
    assert http.post(f"{base}/messages/ffffffffffffffff/modify", json={}).status_code == 404

    snapshot = http.get(f"{base}/snapshot").json()
    assert snapshot["historyId"] == str(user.mailbox.history_id)
    assert snapshot["messages"] == sorted(
        [
            {
                "id": added["id"],
                "threadId": added["threadId"],
                "labelIds": [label["id"]],
                "sha256": hashlib.sha256(raw).hexdigest(),
            },
            {
                "id": text["id"],
                "threadId": added["threadId"],
                "labelIds": ["INBOX", "UNREAD"],
                "sha256": hashlib.sha256(b"Subject: Re: from admin\r\nIn-Reply-To: <adm@x>\r\n\r\nhi\r\n").hexdigest(),
            },
        ],
        key=lambda m: m["id"],
    )

    start = user.mailbox.history_id
    assert http.delete(f"{base}/messages/{text['id']}").json() == {"historyId": str(user.mailbox.history_id)}
    assert http.delete(f"{base}/messages/{text['id']}").status_code == 404
    assert user.mailbox.history_id > start
    expired = http.post(f"{base}/expire-history").json()
    assert expired == {"historyId": str(user.mailbox.history_id)}
    assert user.api.get("/history", params={"startHistoryId": str(start)}).status_code == 404


def test_admin_input_errors(http: httpx.Client, user: User) -> None:
    base = f"/_emulator/users/{user.email}"
    assert http.post("/_emulator/users/ghost@example.test/messages", json={"rawText": "x"}).status_code == 404
    for body in (
        {},
        {"raw": "!!!"},
        {"raw": "YQ", "rawText": "a"},
        {"rawText": "a", "labelIds": ["NOPE"]},
        {"rawText": "a", "threadId": "not-hex"},
        {"rawText": "a", "internalDate": -1},
    ):
        response = http.post(f"{base}/messages", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert http.post(f"{base}/labels", json={"name": ""}).status_code == 400
    assert (
        http.post(f"{base}/messages", content=b"not json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )


def test_clock_endpoint(http: httpx.Client, state: EmulatorState) -> None:
    try:
        assert http.post("/_emulator/clock", json={"now": 1_000_000_000}).json() == {"now": 1_000_000_000}
        assert state.now() == 1_000_000_000
    finally:
        http.post("/_emulator/clock", json={"now": None})
    assert state.now() > 1_700_000_000


def test_counters_per_method_and_quota_units(http: httpx.Client, user: User, clean_counters: EmulatorState) -> None:
    message_id = user.mailbox.add_message(make_message("count me"))
    user.api.get("/profile")
    user.api.get("/labels")
    user.api.get("/messages")
    user.api.get(f"/messages/{message_id}")
    user.api.get("/messages/ffffffffffffffff")
    user.api.get("/history", params={"startHistoryId": str(user.mailbox.history_id)})
    user.api.get(f"/threads/{message_id}")
    http.get("/gmail/v1/users/me/profile")  # 401: counted, but no user to charge
    http.get("/_emulator/counters")  # admin calls are not counted

    counters = http.get("/_emulator/counters").json()
    methods = counters["methods"]
    assert methods["getProfile"] == {"requests": 2, "responses": {"200": 1, "401": 1}, "units": 1}
    assert methods["messages.get"] == {"requests": 2, "responses": {"200": 1, "404": 1}, "units": 40}
    assert methods["labels.list"]["requests"] == methods["messages.list"]["requests"] == 1
    assert methods["history.list"]["requests"] == methods["threads.get"]["requests"] == 1
    assert not any(name.startswith("_emulator") for name in methods)
    costs = clean_counters.quota_costs
    expected_units = (
        costs["getProfile"]
        + costs["labels.list"]
        + costs["messages.list"]
        + 2 * costs["messages.get"]
        + costs["history.list"]
        + costs["threads.get"]
    )
    assert counters["quotaUnits"] == {user.email: expected_units}
    assert expected_units == 1 + 1 + 5 + 40 + 2 + 10

    assert http.post("/_emulator/counters/reset").json() == {}
    assert http.get("/_emulator/counters").json() == {"methods": {}, "quotaUnits": {}}


def test_quota_profiles_are_configurable() -> None:
    legacy = EmulatorState(quota_profile="legacy")
    assert legacy.cost_of("messages.get") == 5
    custom = EmulatorState(quota_costs_override={"messages.get": 7})
    assert custom.cost_of("messages.get") == 7 and custom.cost_of("history.list") == 2
    custom.set_quota_profile(quota_profile("gmail-2026", costs={"history.list": 3}))
    assert custom.cost_of("history.list") == 3
    with pytest.raises(ValueError, match="unknown quota profile"):
        EmulatorState(quota_profile="2030")
