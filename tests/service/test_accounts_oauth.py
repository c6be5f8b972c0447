"""`mailtide accounts add / reauth / remove` end to end: the installed-app OAuth flow (loopback
redirect, state, PKCE) against the emulator's consent page and token endpoint, tokens encrypted at rest."""

from __future__ import annotations

import base64
import hashlib
import secrets
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from service_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    CONSENT_URL,
    EMAIL,
    Cli,
    Emulator,
    LineReader,
    add_account_via_consent,
    consent,
)

from mailtide.accounts.scopes import GMAIL_MODIFY, GMAIL_READONLY
from mailtide.db.engine import create_engine
from mailtide.db.schema import accounts, credentials, jobs, messages
from mailtide.secrets import PREFIX, SecretBox


async def rows(cli: Cli, query: sa.Select) -> list[sa.Row]:
    engine = create_engine(cli.database_url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(query))
    finally:
        await engine.dispose()


async def test_accounts_add_consents_with_pkce_and_stores_the_token_encrypted(
    emulator: Emulator, tmp_path: Path
) -> None:
    cli = Cli.for_gmail(tmp_path, emulator.server.url, MAILTIDE_PUBSUB_TOPIC="projects/p/topics/gmail")
    url, out, _ = add_account_via_consent(cli)

    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["scope"] == [GMAIL_READONLY] and query["access_type"] == ["offline"]
    assert urlsplit(query["redirect_uri"][0]).hostname == "127.0.0.1"
    assert f"account {EMAIL} added (id 1); backfill queued, watch queued" in out

    [cred] = await rows(cli, sa.select(credentials))
    issued = emulator.state.credentials(EMAIL).refresh_token
    assert issued and cred.refresh_token.startswith(PREFIX) and cred.scopes == GMAIL_READONLY
    assert cred.client_id == CLIENT_ID and cred.client_secret.startswith(PREFIX)
    assert issued.encode() not in (tmp_path / "mirror.db").read_bytes()
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert SecretBox(key_file=key_file).decrypt(cred.refresh_token) == issued
    queued = {tuple(job) for job in await rows(cli, sa.select(jobs.c.type, jobs.c.state))}
    assert queued == {("backfill.gmail", "queued"), ("watch.renew.gmail", "queued")}

    listed = cli.run("accounts", "list")
    assert listed.returncode == 0 and EMAIL in listed.stdout and issued not in listed.stdout + listed.stderr


async def test_modify_scope_and_a_wrong_key_is_a_clear_error(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli.for_gmail(tmp_path, emulator.server.url)
    url, _, _ = add_account_via_consent(cli, "--scope", "modify", "--no-backfill")
    assert parse_qs(urlsplit(url).query)["scope"] == [GMAIL_MODIFY]
    [cred] = await rows(cli, sa.select(credentials.c.scopes))
    assert cred.scopes == GMAIL_MODIFY

    cli.env["MAILTIDE_SECRET_KEY"] = base64.urlsafe_b64encode(b"k" * 32).decode()  # not the key file's key
    served = cli.run("serve", "--port", "0", timeout=30)
    assert served.returncode == 2
    assert "secret_key" in served.stderr and "cannot be decrypted" in served.stderr


def test_a_tampered_state_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    cli = Cli.for_gmail(tmp_path, emulator.server.url)
    proc = cli.start("accounts", "add", "--no-browser")
    reader = LineReader(proc)
    url = reader.wait_for(CONSENT_URL).group(1)
    state = parse_qs(urlsplit(url).query)["state"][0]
    consent(url.replace(f"state={state}", "state=forged"))
    _, err = reader.rest()
    assert proc.returncode == 1 and "authorisation failed" in err and "State" in err
    assert not (tmp_path / "mirror.db").exists()  # nothing was stored


def test_the_emulator_checks_pkce_redirect_and_single_use_codes(emulator: Emulator) -> None:
    base = emulator.server.url
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect = "http://127.0.0.1:9/"
    authorize = httpx.get(f"{base}/o/oauth2/auth", params={
        "client_id": CLIENT_ID, "redirect_uri": redirect, "response_type": "code", "scope": GMAIL_READONLY,
        "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256",
    })
    assert authorize.status_code == 302
    back = parse_qs(urlsplit(authorize.headers["location"]).query)
    assert back["state"] == ["s1"]
    code = back["code"][0]

    def exchange(**changes: str) -> httpx.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code_verifier": verifier} | changes
        return httpx.post(f"{base}/token", data=form)

    wrong = exchange(code_verifier="x" * 50)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # A refused exchange burnt the code (single use), as it should: get a fresh one for the next checks.
    code = parse_qs(urlsplit(httpx.get(authorize.url).headers["location"]).query)["code"][0]
    assert exchange(redirect_uri="http://127.0.0.1:10/").json()["error"] == "redirect_uri_mismatch"
    code = parse_qs(urlsplit(httpx.get(authorize.url).headers["location"]).query)["code"][0]
    granted = exchange()
    assert granted.status_code == 200 and granted.json()["refresh_token"] and granted.json()["scope"] == GMAIL_READONLY
    assert exchange().json()["error"] == "invalid_grant"  # used already

    not_loopback = httpx.get(f"{base}/o/oauth2/auth", params={"client_id": CLIENT_ID,
                                                              "redirect_uri": "http://evil.example/"})
    assert not_loopback.status_code == 400 and not_loopback.json()["error"] == "redirect_uri_mismatch"
    unknown = httpx.get(f"{base}/o/oauth2/auth", params={"client_id": "nobody", "redirect_uri": redirect})
    assert unknown.status_code == 401


async def test_reauth_resumes_a_revoked_account_and_remove_deletes_the_mirror(
    emulator: Emulator, tmp_path: Path
) -> None:
    cli = Cli.for_gmail(tmp_path, emulator.server.url)
    add_account_via_consent(cli, "--no-backfill")
    emulator.state.revoke_refresh_token(EMAIL)

    synced = cli.run("sync", EMAIL)  # backfill: the token is refused, the job parks
    assert synced.returncode == 1, synced.stderr  # incomplete, and it says why
    assert "needs_reauth" in synced.stdout and f"mailtide accounts reauth {EMAIL}" in synced.stdout
    [account] = await rows(cli, sa.select(accounts.c.status, accounts.c.last_error))
    assert account.status == "needs_reauth" and "re-authorisation needed" in account.last_error

    proc = cli.start("accounts", "reauth", EMAIL, "--no-browser")
    reader = LineReader(proc)
    url = reader.wait_for(CONSENT_URL).group(1)
    assert parse_qs(urlsplit(url).query)["login_hint"] == [EMAIL]
    consent(url)
    out, err = reader.rest()
    assert proc.returncode == 0, err
    assert f"account {EMAIL} re-authorised" in out and "1 paused job(s) resumed" in out

    synced = cli.run("sync", EMAIL)
    assert synced.returncode == 0, synced.stderr
    mirrored = await rows(cli, sa.select(messages.c.id).where(messages.c.deleted.is_(False)))
    assert {r.id for r in mirrored} == emulator.message_ids()
    [account] = await rows(cli, sa.select(accounts.c.status))
    assert account.status == "normal"

    declined = cli.run("accounts", "remove", EMAIL, input="n\n")
    assert declined.returncode == 1 and len(await rows(cli, sa.select(messages.c.id))) == len(mirrored)
    removed = cli.run("accounts", "remove", EMAIL, "--yes")
    assert removed.returncode == 0 and f"account {EMAIL} removed" in removed.stdout
    for table in (accounts, credentials, messages, jobs):
        assert await rows(cli, sa.select(table)) == [], table.name


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MAILTIDE_API_PORT": "http"}, "api_port (MAILTIDE_API_PORT)"),
        ({"MAILTIDE_API_HOST": "0.0.0.0"}, "api_token (MAILTIDE_API_TOKEN) is required"),
        ({"MAILTIDE_SECRET_KEY": "not-a-key"}, "secret_key (MAILTIDE_SECRET_KEY): must be a Fernet key"),
        ({"MAILTIDE_LOG_FORMAT": "xml"}, "log_format (MAILTIDE_LOG_FORMAT)"),
    ],
)
def test_bad_configuration_fails_at_start_naming_the_key(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    cli = Cli.for_gmail(tmp_path, "http://127.0.0.1:9", **env)
    result = cli.run("config", "show")
    assert result.returncode == 2 and expected in result.stderr.replace("\n", " ")


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    key = base64.urlsafe_b64encode(b"s" * 32).decode()
    config_file = tmp_path / "mailtide.toml"
    config_file.write_text('worker_concurrency = 3\nlist_page_size = 100\napi_token = "toml-token-0123456789abc"\n')
    cli = Cli.for_gmail(tmp_path, "http://127.0.0.1:9", MAILTIDE_SECRET_KEY=key, MAILTIDE_LIST_PAGE_SIZE="200",
                        MAILTIDE_DATABASE_URL="postgresql://mt:hunter2-password@db.example/mirror")
    shown = cli.run("--config", str(config_file), "config", "show")
    assert shown.returncode == 0, shown.stderr
    for secret in (key, "toml-token-0123456789abc", "hunter2-password", CLIENT_SECRET):
        assert secret not in shown.stdout
    lines = dict(line.removeprefix("# ").split(" = ", 1) for line in shown.stdout.splitlines())
    assert lines["worker_concurrency"] == "3" and lines["api_token"] == "(set; redacted)"
    assert lines["list_page_size"] == "200"  # the environment overrides the file
    # Commented out, so that the output read back as a config file never turns a placeholder into a secret.
    assert lines["secret_key"] == lines["oauth_client_secret"] == "(set; redacted)"
    assert "# api_token = (set; redacted)" in shown.stdout.splitlines()
    assert "db.example/mirror" in lines["database_url"] and lines["oauth_client_id"] == f'"{CLIENT_ID}"'
    unknown = tmp_path / "typo.toml"
    unknown.write_text("worker_concurency = 3\n")
    result = cli.run("--config", str(unknown), "config", "show")
    assert result.returncode == 2 and "worker_concurency" in result.stderr
    assert "did you mean worker_concurrency?" in result.stderr and "MAILTIDE_WORKER_CONCURENCY" not in result.stderr
