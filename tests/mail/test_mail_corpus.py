"""Parse every message of the shared corpus (/work/shared/corpus): no exception may escape, and no
exception may even reach parse_message's last-resort handler. Prints clean / parse_error counts per
corpus folder (run with -s to see them).

About 6,000 messages, 50 MB; the files are spread over two processes to keep the wall time low.
"""

from __future__ import annotations

import concurrent.futures
import mailbox
import multiprocessing
import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from mailtide.mail import parse_message, snippet_of

CORPUS = Path(os.environ.get("MAILTIDE_CORPUS_DIR", "/work/shared/corpus"))
NOT_MESSAGES = (".md", ".json")
ADDRESS_LISTS = ("mailbox_valid.txt", "mailbox_invalid.txt")  # flanker's expected-result lists


def folder_of(path: Path) -> str:
    return "/".join(path.relative_to(CORPUS).parts[:2])


def is_mbox(path: Path) -> bool:
    return path.suffix == ".mbox" or re.fullmatch(r"mbox-\d+", path.name) is not None  # sisimai's mbox-0


def messages_in(path: Path) -> list[bytes]:
    if is_mbox(path):
        box = mailbox.mbox(path, create=False)
        try:
            found = [box.get_bytes(key) for key in box.iterkeys()]
        finally:
            box.close()
        if found:
            return found
    return [path.read_bytes()]


def parse_file(path_text: str) -> tuple[str, int, int, list[str]]:
    """(folder, clean count, parse_error count, problems worth failing the test for)."""
    path = Path(path_text)
    clean = flagged = 0
    failures: list[str] = []
    for index, raw in enumerate(messages_in(path)):
        try:
            parsed = parse_message(raw)
            snippet_of(parsed)
        except Exception as exc:  # the contract under test
            failures.append(f"{path}#{index}: raised {type(exc).__name__}: {exc}")
            continue
        if parsed.parse_error is None:
            clean += 1
        else:
            flagged += 1
            if "parser: failed" in parsed.parse_error:
                failures.append(f"{path}#{index}: {parsed.parse_error[:300]}")
    return folder_of(path), clean, flagged, failures


@pytest.mark.timeout(120)
def test_whole_corpus_parses_without_exceptions():
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not present at {CORPUS}")
    files = sorted(
        str(path)
        for path in CORPUS.rglob("*")
        if path.is_file() and not path.name.endswith(NOT_MESSAGES) and path.name not in ADDRESS_LISTS
    )
    started = time.perf_counter()
    totals: dict[str, Counter[str]] = {}
    failures: list[str] = []
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        for folder, clean, flagged, problems in pool.map(parse_file, files, chunksize=64):
            counts = totals.setdefault(folder, Counter())
            counts["clean"] += clean
            counts["parse_error"] += flagged
            failures.extend(problems)
    elapsed = time.perf_counter() - started

    print(f"\n{'corpus folder':42} {'clean':>7} {'parse_error':>12}")
    for folder, counts in sorted(totals.items()):
        print(f"{folder:42} {counts['clean']:7} {counts['parse_error']:12}")
    print(f"{len(files)} files, {sum(sum(c.values()) for c in totals.values())} messages in {elapsed:.1f} s")
    assert failures == []
    assert sum(counts["clean"] for counts in totals.values()) > 5000
