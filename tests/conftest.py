"""Fixtures shared by every test folder: the database backends.

Tests parametrised with `backend` run on a SQLite file and on PostgreSQL (127.0.0.1:5432, database
`test`, a fresh schema per test). Without a PostgreSQL server those skip, except under CI=true where
they fail: CI must exercise both backends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.testing import (
    DEFAULT_POSTGRES_TEST_URL,
    empty_database_url,
    migrated_engine,
    postgres_unavailable_reason,
)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("MAILTIDE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_TEST_URL)
    reason = asyncio.run(postgres_unavailable_reason(url))
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    return request.param


@pytest.fixture
def postgres_base_url(backend: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("postgres_url") if backend == "postgresql" else DEFAULT_POSTGRES_TEST_URL


@pytest.fixture
async def database_url(backend: str, postgres_base_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (not migrated) for tests that open several engines on it."""
    async with empty_database_url(backend, tmp_path, postgres_url=postgres_base_url) as url:
        yield url


@pytest.fixture
async def engine(backend: str, postgres_base_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(backend, tmp_path, postgres_url=postgres_base_url) as migrated:
        yield migrated
