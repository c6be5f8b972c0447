"""CPU per message of parsing a message and of storing it in the mirror, measured apart from fetching.

    .venv/bin/python bench/store_bench.py                          # 2,000 messages, SQLite
    .venv/bin/python bench/store_bench.py --backend postgresql     # a fresh schema in 127.0.0.1:5432/test

The messages of sync_bench.py (SpamAssassin public corpus, else the bundled demo data) are parsed,
then stored as an ingest job stores them: --batch messages per transaction through
store.messages.upsert_messages, each message in a thread of its own. CPU is the process's (every
thread, so SQLite's work and the driver's count); with PostgreSQL the server's is not counted.
Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sync_bench import corpus_files

from mailtide.db.testing import DEFAULT_POSTGRES_TEST_URL, migrated_engine
from mailtide.gmail.models import Message
from mailtide.mail import ParsedMessage, parse_message
from mailtide.store.accounts import create_account
from mailtide.store.messages import upsert_messages


def read_raw(paths: list[Path]) -> list[bytes]:
    raws = []
    for path in paths:
        raw = path.read_bytes()
        if raw.startswith(b"From "):  # an mbox envelope line; Gmail never has it
            raw = raw.split(b"\n", 1)[1]
        raws.append(raw)
    return raws


def as_fetched(raws: list[bytes], parsed: list[ParsedMessage]) -> list[tuple[Message, ParsedMessage]]:
    return [
        (
            Message(
                id=f"{i:016x}",
                threadId=f"{i:016x}",
                labelIds=["INBOX", "UNREAD"],
                snippet=p.subject or "",
                historyId=1000 + i,
                internalDate=i,
                sizeEstimate=len(raw),
                raw=raw,
            ),
            p,
        )
        for i, (raw, p) in enumerate(zip(raws, parsed, strict=True))
    ]


async def store_all(
    backend: str, postgres_url: str, fetched: list[tuple[Message, ParsedMessage]], batch: int
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to store every message, `batch` per transaction."""
    with tempfile.TemporaryDirectory(prefix="mailtide-bench-") as tmp:
        async with migrated_engine(backend, Path(tmp), postgres_url=postgres_url) as engine:
            account_id = await create_account(
                engine, "bench@mailtide.test", client_id="c", client_secret="s", refresh_token="r"
            )
            cpu, wall = time.process_time(), time.perf_counter()
            for start in range(0, len(fetched), batch):
                async with engine.begin() as conn:
                    await upsert_messages(conn, account_id, fetched[start : start + batch])
            return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="how many messages (default 2000)")
    parser.add_argument("--batch", type=int, default=25, help="messages per transaction (default 25, as ingest)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_TEST_URL, help="used with --backend postgresql")
    args = parser.parse_args()
    paths, source = corpus_files(args.messages)
    print(f"store_bench: {len(paths)} messages from {source}; {args.backend}; Python {sys.version.split()[0]}")
    raws = read_raw(paths)
    cpu = time.process_time()
    parsed = [parse_message(raw) for raw in raws]
    parse_cpu = time.process_time() - cpu
    store_cpu, store_wall = asyncio.run(
        store_all(args.backend, args.postgres_url, as_fetched(raws, parsed), args.batch)
    )
    count = len(raws)
    print(f"    parse                   {parse_cpu / count * 1000:.2f} ms CPU per message")
    print(
        f"    store                   {store_cpu / count * 1000:.2f} ms CPU per message"
        f"  ({store_wall / count * 1000:.2f} ms wall, {args.batch} per transaction)"
    )


if __name__ == "__main__":
    main()
