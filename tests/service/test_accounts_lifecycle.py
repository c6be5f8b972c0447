"""`accounts add-token` on an address that is already mirrored, and removing an account while one of
its jobs runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from service_support import CLIENT_ID, CLIENT_SECRET, EMAIL, Cli, Emulator

from mailtide.accounts.lifecycle import remove_account
from mailtide.config import load_settings
from mailtide.db.engine import create_engine
from mailtide.db.schema import accounts, jobs
from mailtide.queue import JobSpec
from mailtide.runtime import Runtime
from mailtide.secrets import SecretBox
from mailtide.store.accounts import create_account, find_account, get_credential


async def _credential_and_jobs(cli: Cli) -> tuple[str, list[str]]:
    engine = create_engine(cli.database_url)
    try:
        async with engine.connect() as conn:
            [account_id] = (await conn.execute(sa.select(accounts.c.id))).scalars().all()
            types = sorted((await conn.execute(sa.select(jobs.c.type))).scalars().all())

        box = SecretBox(key_file=cli.cwd / "data" / "secret.key")
        credential = await get_credential(engine, account_id, secrets=box)
        return credential.refresh_token, types
    finally:
        await engine.dispose()


def _add_token(cli: Cli, token: str, *extra: str, email: str = EMAIL) -> tuple[int, str]:
    done = cli.run("accounts", "add-token", email, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                   "--refresh-token", token, *extra)
    return done.returncode, done.stdout + done.stderr


async def test_add_token_checks_the_token_and_replaces_a_credential_only_when_asked(
    emulator: Emulator, tmp_path: Path
) -> None:
    cli = Cli.for_gmail(tmp_path, emulator.server.url)
    valid = emulator.state.credentials(EMAIL).refresh_token
    assert valid is not None

    code, out = _add_token(cli, "not-a-token")
    assert code == 1 and "the token does not work" in out and "invalid_grant" in out, out
    code, out = _add_token(cli, valid, email="someone.else@mailtide.test")
    assert code == 2 and f"the token belongs to {EMAIL}" in out, out

    code, out = _add_token(cli, "not-a-token", "--no-verify")  # e.g. added while Gmail is out of reach
    assert code == 0 and "backfill queued" in out, out

    code, out = _add_token(cli, valid)
    assert code == 2 and "already exists" in out and "--replace" in out, out
    assert await _credential_and_jobs(cli) == ("not-a-token", ["backfill.gmail"])

    code, out = _add_token(cli, valid, "--replace")
    assert code == 0 and "credential replaced" in out, out
    # The backfill already queued is the account's only one: replacing a credential starts no second.
    assert await _credential_and_jobs(cli) == (valid, ["backfill.gmail"])


async def test_remove_waits_for_a_running_job_to_stop(emulator: Emulator, tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'mirror.db'}", data_dir=str(tmp_path / "data"),
                             gmail_api_url=emulator.server.url, token_url=f"{emulator.server.url}/token")
    async with Runtime.open(settings) as rt:
        account_id = await create_account(rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                          refresh_token="token", secrets=rt.secrets)
        await rt.queue.enqueue(JobSpec("slow", account_id=account_id))
        [running] = await rt.queue.claim("test-worker")
        removal = asyncio.create_task(remove_account(rt, await find_account(rt.engine, EMAIL)))
        while not await rt.queue.is_cancel_requested(running):  # noqa: ASYNC110 - the flag is in the database
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not removal.done()  # still waiting for the running job
        assert await rt.queue.complete(running)  # the handler saw the cancellation and stopped
        await asyncio.wait_for(removal, 10)
        async with rt.engine.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(accounts))).scalar_one() == 0
