"""Batch requests at /batch/gmail/v1 and /batch: each inner call answered (and charged) on its own."""

from __future__ import annotations

import email.parser
import email.policy
import json

import httpx
import pytest
from limits_kit import FakeClock, Private, private_emulator

from mailtide.emulator.faults import MethodFaults
from mailtide.emulator.quota import QuotaEnforcer
from mailtide.gmail.quota import quota_profile


def batch_body(paths: list[str], boundary: str, *, newline: str = "\r\n", token: str | None = None) -> bytes:
    parts = []
    for index, path in enumerate(paths):
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            f"Content-ID: <req+{index}>",
            "",
            f"GET {path} HTTP/1.1",
        ]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        parts.append(newline.join([*lines, "", ""]))
    return ("".join(parts) + f"--{boundary}--{newline}").encode()


def post_batch(
    emu: Private,
    paths: list[str],
    *,
    url: str = "/batch/gmail/v1",
    newline: str = "\r\n",
    outer_token: str | None = "default",
    inner_token: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": 'multipart/mixed; boundary="xyzzy"'}
    token = emu.token if outer_token == "default" else outer_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return emu.admin.post(url, content=batch_body(paths, "xyzzy", newline=newline, token=inner_token), headers=headers)


def answers(response: httpx.Response) -> list[tuple[str, int, dict]]:
    """(Content-ID, inner status, inner JSON) per part, read with the standard library's MIME parser."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + response.content)
    found = []
    for part in message.get_payload():
        http_text = part.get_payload()
        status_line, rest = http_text.split("\r\n", 1)
        body = rest.split("\r\n\r\n", 1)[1]
        found.append((part["Content-ID"], int(status_line.split()[1]), json.loads(body)))
    return found


@pytest.mark.parametrize(("url", "newline"), [("/batch/gmail/v1", "\r\n"), ("/batch", "\n")])
def test_inner_calls_are_answered_in_order_and_charged_one_by_one(url: str, newline: str) -> None:
    with private_emulator() as emu:
        first, second = emu.fill(2)
        paths = [
            f"/gmail/v1/users/me/messages/{first}?format=minimal",
            f"/gmail/v1/users/me/messages/{second}",
            "/gmail/v1/users/me/messages/ffffffffffffffff",
            "/gmail/v1/users/me/profile",
        ]
        response = post_batch(emu, paths, url=url, newline=newline)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/mixed; boundary=")
        parts = answers(response)
        assert [cid for cid, _, _ in parts] == [f"<response-req+{i}>" for i in range(4)]
        assert [status for _, status, _ in parts] == [200, 200, 404, 200]
        assert parts[0][2]["id"] == first and "payload" not in parts[0][2]
        assert parts[1][2]["payload"]["mimeType"] == "text/plain"
        assert parts[2][2]["error"]["code"] == 404
        assert parts[3][2]["emailAddress"] == emu.email
        methods = emu.state.counters.snapshot()["methods"]
        assert methods["batch"]["requests"] == 1
        assert methods["messages.get"]["responses"] == {"200": 2, "404": 1}
        assert emu.state.counters.quota_units(emu.email) == 3 * 20 + 1


def test_more_than_fifty_calls_get_gmails_error_and_unlimited_allows_a_hundred() -> None:
    with private_emulator() as emu:
        refused = post_batch(emu, ["/gmail/v1/users/me/profile"] * 51)
        assert refused.status_code == 400
        assert refused.json() == {
            "error": {
                "code": 400,
                "message": "Inner request count exceeds the limit. Received: 51, Limit: 50",
                "status": "INVALID_ARGUMENT",
            }
        }
        assert emu.state.counters.quota_units(emu.email) == 0
        assert post_batch(emu, ["/gmail/v1/users/me/profile"] * 50).status_code == 200
    with private_emulator("unlimited") as emu:
        assert post_batch(emu, ["/gmail/v1/users/me/profile"] * 100).status_code == 200
        too_many = post_batch(emu, ["/gmail/v1/users/me/profile"] * 101)
        assert too_many.status_code == 400 and "Limit: 100" in too_many.json()["error"]["message"]


def test_auth_per_inner_call() -> None:
    with private_emulator() as emu:
        inner_only = answers(post_batch(emu, ["/gmail/v1/users/me/profile"], outer_token=None, inner_token=emu.token))
        assert inner_only[0][1] == 200
        nobody = post_batch(emu, ["/gmail/v1/users/me/profile"] * 2, outer_token=None)
        assert nobody.status_code == 200  # the batch itself is fine; each call is not
        assert [status for _, status, _ in answers(nobody)] == [401, 401]


def test_an_outer_200_carries_inner_rate_limits() -> None:
    with private_emulator() as emu:
        emu.state.quota = QuotaEnforcer(quota_profile("gmail-2026", user_units_per_minute=60), clock=FakeClock())
        ids = emu.fill(5)
        parts = answers(post_batch(emu, [f"/gmail/v1/users/me/messages/{i}" for i in ids]))
        assert [status for _, status, _ in parts] == [200, 200, 200, 429, 429]
        assert parts[3][2]["error"]["errors"][0]["reason"] == "rateLimitExceeded"
        assert emu.state.counters.quota_units(emu.email) == 60


def test_bad_batches_are_refused_clearly() -> None:
    with private_emulator() as emu:
        not_multipart = emu.admin.post("/batch", content=b"{}", headers={"Content-Type": "application/json"})
        assert not_multipart.status_code == 400 and "multipart/mixed" in not_multipart.json()["error"]["message"]
        empty = emu.admin.post("/batch", content=b"--b--\r\n", headers={"Content-Type": "multipart/mixed; boundary=b"})
        assert empty.status_code == 400
        elsewhere = answers(post_batch(emu, ["/_emulator/counters", "/batch"]))
        assert [status for _, status, _ in elsewhere] == [404, 404]


def test_inner_faults_and_a_reset_of_the_whole_reply() -> None:
    with private_emulator() as emu:
        ids = emu.fill(3)
        emu.state.faults.configure({"messages.get": MethodFaults(error500=1.0)})
        parts = answers(post_batch(emu, [f"/gmail/v1/users/me/messages/{i}" for i in ids]))
        assert {status for _, status, _ in parts} == {500}
        assert parts[0][2]["error"]["errors"][0]["reason"] == "backendError"

        emu.state.faults.configure({"messages.get": MethodFaults(reset=1.0)})
        with pytest.raises(httpx.RemoteProtocolError):
            post_batch(emu, [f"/gmail/v1/users/me/messages/{i}" for i in ids])
        emu.state.faults.configure({"batch": MethodFaults(error503=1.0)})
        assert post_batch(emu, [f"/gmail/v1/users/me/messages/{ids[0]}"]).status_code == 503
