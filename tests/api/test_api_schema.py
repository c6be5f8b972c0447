"""Property-based requests from the served OpenAPI schema (schemathesis) against the whole service
(worker + API, uvicorn on loopback, a mirror with real mail): never a 5xx, answers as documented."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from api_support import API_TOKEN, CLIENT_ID, CLIENT_SECRET, EMAIL, REFRESH_TOKEN, load_small_mailbox
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mailtide.config import load_settings
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.runtime import Runtime
from mailtide.service import Service, bind_socket, build_service
from mailtide.store.accounts import create_account
from mailtide.sync.backfill import start_backfill

EXAMPLES_PER_OPERATION = 12
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ALL_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class LiveService:
    url: str
    loop: asyncio.AbstractEventLoop
    service: Service


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """`mailtide serve`'s parts in a thread of their own, on a SQLite mirror of a backfilled mailbox."""
    directory = tmp_path_factory.mktemp("schema")
    state = EmulatorState(seed=9)
    load_small_mailbox(
        state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN), directory
    )
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main(emulator_url: str) -> None:
        config = load_settings(
            database_url=f"sqlite:///{directory / 'mirror.db'}", data_dir=directory / "data",
            gmail_api_url=emulator_url, token_url=f"{emulator_url}/token", api_host="0.0.0.0",
            api_token=API_TOKEN, poll_seconds=0.05, shutdown_grace_seconds=2,
        )
        async with Runtime.open(config) as rt:
            account_id = await create_account(rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                              refresh_token=REFRESH_TOKEN, secrets=rt.secrets)
            await start_backfill(rt.services, account_id, recovery=False, reason="test")
            await rt.worker().run_until_idle(60)
            service, api, _ = build_service(rt, config, sock=bind_socket("127.0.0.1", 0))
            holder.update(url=api.url, loop=asyncio.get_running_loop(), service=service)
            ready.set()
            await service.run()

    with EmulatorServer(state) as emulator:
        thread = threading.Thread(target=lambda: asyncio.run(main(emulator.url)), daemon=True)
        thread.start()
        assert ready.wait(60), "the service did not start"
        live = LiveService(holder["url"], holder["loop"], holder["service"])  # type: ignore[arg-type]
        yield live
        live.loop.call_soon_threadsafe(live.service.request_stop)
        thread.join(30)
        assert not thread.is_alive()


# schemathesis' own pytest integration (`@schema.parametrize()` with a lazy fixture) does not run on
# pytest 9, so the operations are driven through their Hypothesis strategies, as its docs show.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_api_never_fails_and_answers_as_documented(live_service: LiveService, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live_service.url}/openapi.json", headers=AUTH)
    checks = [not_a_server_error] if mode is GenerationMode.NEGATIVE else ALL_CHECKS
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not any(operation.iter_parameters()):
            continue  # nothing to get wrong

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=checks, timeout=30)

        call()
