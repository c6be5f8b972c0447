"""POST /pubsub/gmail served by uvicorn: OIDC tokens signed by the emulator's key and verified with
google-auth against the emulator's certificate endpoint; enqueues on a real database (both backends)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from realtime_harness import PUSH_AUDIENCE, PUSH_SERVICE_ACCOUNT, serve_routers
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.engine import create_engine
from mailtide.db.schema import STATUS_NORMAL, accounts, jobs
from mailtide.emulator.pubsub.signing import SigningKey
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.pubsub.intake import NotificationIntake
from mailtide.pubsub.oidc import CertificateSource, PushTokenVerifier
from mailtide.pubsub.push import MAX_BODY_BYTES, PUSH_PATH, build_push_router
from mailtide.queue.job_queue import JobQueue
from mailtide.store.accounts import create_account, update_account

EMAIL = "dave@mailtide.test"
CURSOR = 5000


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorState(seed=3)) as server:
        yield server


@dataclass
class Push:
    url: str
    engine: AsyncEngine
    signer: SigningKey
    account_id: int
    intake: NotificationIntake

    def token(self, **overrides: object) -> str:
        claims: dict[str, object] = {"audience": PUSH_AUDIENCE, "email": PUSH_SERVICE_ACCOUNT, **overrides}
        return self.signer.issue_token(**claims)  # type: ignore[arg-type]

    async def post(self, data: dict[str, object] | bytes, *, token: str | None = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        if raw is None:
            payload = data if isinstance(data, bytes) else json.dumps(data).encode()
            raw = json.dumps({"message": {"data": base64.b64encode(payload).decode(), "messageId": "1",
                                          "publishTime": "2026-05-01T00:00:00Z"},
                              "subscription": "projects/p/subscriptions/push"}).encode()
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient() as client:
            return await client.post(self.url + PUSH_PATH, content=raw, headers=sent)

    async def history_jobs(self) -> list[sa.Row]:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(jobs).where(jobs.c.type == "history.sync.gmail"))).all()


def verifier_for(certs_url: str) -> PushTokenVerifier:
    return PushTokenVerifier(
        audience=PUSH_AUDIENCE, service_account_email=PUSH_SERVICE_ACCOUNT, certificates=CertificateSource(certs_url)
    )


@pytest.fixture
async def push(engine: AsyncEngine, emulator: EmulatorServer) -> AsyncIterator[Push]:
    account_id = await create_account(engine, EMAIL, client_id="c", client_secret="s", refresh_token="r")
    await update_account(engine, account_id, status=STATUS_NORMAL, history_id=CURSOR)
    intake = NotificationIntake(engine, JobQueue(engine))
    router = build_push_router(intake, verifier_for(emulator.url + "/oauth2/v1/certs"))
    async with serve_routers(router) as url:
        yield Push(url, engine, emulator.state.pubsub.signing_key, account_id, intake)


def note(history_id: object = CURSOR + 10, email: str = EMAIL) -> dict[str, object]:
    return {"emailAddress": email, "historyId": history_id}


async def test_valid_token_enqueues_one_coalesced_history_sync(push: Push) -> None:
    first = await push.post(note(), token=push.token())
    assert first.status_code == 200, first.text
    assert first.json()["result"] == "enqueued"
    second = await push.post(note(str(CURSOR + 11)), token=push.token())  # historyId as a string this time
    assert second.status_code == 200
    queued = await push.history_jobs()
    assert len(queued) == 1 and queued[0].account_id == push.account_id and queued[0].state == "queued"
    async with push.engine.connect() as conn:
        heard = (await conn.execute(sa.select(accounts.c.last_notification_at))).scalar_one()
    assert heard is not None


@pytest.mark.parametrize(
    "claims, status",
    [
        ({"issued_at": 1_000_000_000}, 401),  # expired long ago
        ({"audience": "https://elsewhere.test/pubsub/gmail"}, 401),
        ({"issuer": "https://evil.test"}, 401),
        ({"email": "someone-else@mailtide-test.iam.gserviceaccount.com"}, 403),
        ({"email_verified": False}, 403),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "wrong-email", "email-not-verified"],
)
async def test_bad_tokens_are_refused_and_enqueue_nothing(push: Push, claims: dict[str, object], status: int) -> None:
    response = await push.post(note(), token=push.token(**claims))
    assert response.status_code == status, response.text
    assert await push.history_jobs() == []


async def test_unsigned_forged_and_missing_tokens_are_refused(push: Push) -> None:
    valid = push.token()
    header, payload, _signature = valid.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).decode().rstrip("=")
    forged = SigningKey().issue_token(audience=PUSH_AUDIENCE, email=PUSH_SERVICE_ACCOUNT)  # a key nobody published
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["email"] = PUSH_SERVICE_ACCOUNT.upper()
    tampered = ".".join([header, base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).decode().rstrip("="),
                         _signature])
    for token in [f"{header}.{payload}.", f"{none_header}.{payload}.", forged, tampered, "garbage"]:
        response = await push.post(note(), token=token)
        assert response.status_code == 401, (token[:30], response.text)
    assert (await push.post(note())).status_code == 401
    basic = await push.post(note(), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401
    assert await push.history_jobs() == []


async def test_malformed_payloads_and_unknown_accounts_are_acknowledged(push: Push) -> None:
    token = push.token()
    for raw in [b"not json", b'{"message": {}}', json.dumps({"message": {"data": "%%%"}}).encode()]:
        response = await push.post({}, token=token, raw=raw)
        assert response.status_code == 200 and response.json()["result"] == "malformed", response.text
    for payload in [b"garbage", json.dumps({"emailAddress": EMAIL, "historyId": "x"}).encode()]:
        response = await push.post(payload, token=token)
        assert response.status_code == 200 and response.json()["result"] == "malformed"
    unknown = await push.post(note(email="stranger@mailtide.test"), token=token)
    assert unknown.status_code == 200 and unknown.json()["result"] == "unknown_account"
    covered = await push.post(note(CURSOR), token=token)  # the stored cursor already includes it
    assert covered.status_code == 200 and covered.json()["result"] == "up_to_date"
    assert await push.history_jobs() == []
    assert push.intake.outcomes == {"malformed": 5, "unknown_account": 1, "up_to_date": 1}


async def test_deeply_nested_json_is_acknowledged_as_malformed(push: Push) -> None:
    # Python's JSON parser recurses once per level: this nesting used to escape as a RecursionError (500).
    depth = 5000
    nested_body = b'{"message":' * depth + b"{}" + b"}" * depth
    response = await push.post({}, token=push.token(), raw=nested_body)
    assert response.status_code == 200 and response.json()["result"] == "malformed", response.text
    assert "nested too deeply" in response.json()["detail"]
    nested_data = b"[" * 20_000 + b"]" * 20_000  # inside the base64 data, under its 64 KB limit
    response = await push.post(nested_data, token=push.token())
    assert response.status_code == 200 and response.json()["result"] == "malformed", response.text
    assert "nested too deeply" in response.json()["detail"]
    assert await push.history_jobs() == []


async def test_oversized_bodies_are_acknowledged_as_malformed(push: Push) -> None:
    # 2xx: Pub/Sub would redeliver anything else, and a body this size never becomes a notification.
    oversized = b"x" * (4 * MAX_BODY_BYTES)
    declared = await push.post({}, token=push.token(), raw=oversized)  # with a Content-Length
    assert declared.status_code == 200 and declared.json()["result"] == "malformed", declared.text
    assert f"larger than {MAX_BODY_BYTES}" in declared.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield b"x" * (MAX_BODY_BYTES // 4)

    async with httpx.AsyncClient() as client:  # chunked: the size is only known while reading
        streamed = await client.post(push.url + PUSH_PATH, content=chunks(),
                                     headers={"Authorization": f"Bearer {push.token()}"})
    assert streamed.status_code == 200 and streamed.json()["result"] == "malformed", streamed.text
    assert f"larger than {MAX_BODY_BYTES}" in streamed.json()["detail"]
    assert await push.history_jobs() == []


async def test_an_oversized_body_is_read_only_up_to_the_limit(push: Push, emulator: EmulatorServer) -> None:
    app = FastAPI()
    app.include_router(build_push_router(push.intake, verifier_for(emulator.url + "/oauth2/v1/certs")))
    chunk_size, chunks_offered = 65536, 320  # 20 MB, chunked (no Content-Length)
    chunks_read = 0

    async def receive() -> dict[str, object]:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * chunk_size, "more_body": chunks_read < chunks_offered}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": PUSH_PATH, "raw_path": PUSH_PATH.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"authorization", f"Bearer {push.token()}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["result"] == "malformed"  # type: ignore[arg-type]
    assert chunks_read * chunk_size <= MAX_BODY_BYTES + chunk_size


async def test_transient_failures_answer_503_so_pubsub_redelivers(
    push: Push, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # The database is unreachable: nothing can be durably enqueued.
    broken = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    try:
        intake = NotificationIntake(broken, JobQueue(broken))
        router = build_push_router(intake, verifier_for(emulator.url + "/oauth2/v1/certs"))
        async with serve_routers(router) as url:
            push_to_broken = Push(url, broken, push.signer, push.account_id, intake)
            response = await push_to_broken.post(note(), token=push.token())
            assert response.status_code == 503, response.text
    finally:
        await broken.dispose()
    # The certificates cannot be fetched: the token cannot be checked yet.
    router = build_push_router(push.intake, verifier_for("http://127.0.0.1:9/oauth2/v1/certs"))
    async with serve_routers(router) as url:
        response = await Push(url, push.engine, push.signer, push.account_id, push.intake).post(
            note(), token=push.token()
        )
        assert response.status_code == 503
    assert await push.history_jobs() == []


async def test_jwks_certificates_work_too(push: Push, emulator: EmulatorServer) -> None:
    router = build_push_router(push.intake, verifier_for(emulator.url + "/oauth2/v3/certs"))
    async with serve_routers(router) as url:
        response = await Push(url, push.engine, push.signer, push.account_id, push.intake).post(
            note(), token=push.token()
        )
    assert response.status_code == 200 and response.json()["result"] == "enqueued"
