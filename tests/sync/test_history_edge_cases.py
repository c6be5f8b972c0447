"""History replay edge cases that broke other Gmail sync tools (GMAIL_FACTS.md). Answers the
emulator never gives are produced by a real HTTP proxy in front of it (http_proxy.py). Every test
ends with `verify` through the Gmail API."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from fidelity_kit import assert_no_drift, backfill, dated_emulator, harness_via, jobs_of
from http_proxy import RewritingProxy, small_pages
from sync_harness import Harness, ham_files, raw_of

from mailtide.db.schema import STATUS_NORMAL, labels, messages
from mailtide.store.accounts import get_account, update_account
from mailtide.sync import jobtypes

GAP = "gap:"  # page tokens the proxy invents


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    """Overrides the folder's harness with 12 real messages: these tests are about order, not volume."""
    with dated_emulator(12) as emulator:
        async with harness_via(emulator, database_url) as h:
            yield h


async def labels_of(h: Harness, message_id: str) -> list[str]:
    async with h.rt.engine.connect() as conn:
        return list(
            (await conn.execute(sa.select(messages.c.label_ids).where(messages.c.id == message_id))).scalar_one()
        )


async def sync_history(h: Harness) -> None:
    await jobtypes.request_history_sync(h.rt.queue, h.account_id)
    await h.settle()


def make_changes(h: Harness, *, relabels: int, deletes: int, adds: int, skip: int) -> None:
    mailbox = h.emulator.mailbox
    ids = sorted(mailbox.message_ids())
    for mid in ids[:relabels]:
        mailbox.modify_labels(mid, add=["STARRED"], remove=["UNREAD"])
    for mid in ids[relabels : relabels + deletes]:
        mailbox.delete_message(mid)
    for path in ham_files(adds, skip=skip):
        mailbox.add_message(raw_of(path))


class PagesWithoutHistory:
    """After each page carrying a nextPageToken, and after the last page, insert a page with no
    `history` key (the reported Gmail behaviour); the inserted page carries the original token on."""

    def __init__(self) -> None:
        self.inserted = 0
        self.last_history_id = "0"

    def __call__(self, params: dict[str, str], answer: dict[str, Any] | None) -> dict[str, Any]:
        token = params.get("pageToken", "")
        if answer is None:  # a page the proxy invented
            self.inserted += 1
            following = token.removeprefix(GAP)
            return {"historyId": self.last_history_id, **({"nextPageToken": following} if following else {})}
        self.last_history_id = answer["historyId"]
        if "history" not in answer:
            return answer
        return {**answer, "nextPageToken": GAP + answer.get("nextPageToken", "")}

    @staticmethod
    def params(params: dict[str, str]) -> dict[str, str] | None:
        if params.get("pageToken", "").startswith(GAP):
            return None  # answered by the proxy alone
        return small_pages(4)(params)


async def test_a_page_with_a_token_then_a_page_without_history_loses_nothing(database_url: str) -> None:
    with dated_emulator(14) as emulator:
        rewrite = PagesWithoutHistory()
        with RewritingProxy(emulator.server.url, history_params=rewrite.params, history_answer=rewrite) as proxy:
            async with harness_via(emulator, database_url, proxy.url) as h:
                await backfill(h)
                make_changes(h, relabels=6, deletes=2, adds=3, skip=120)  # 11 records: 3 pages of 4
                await sync_history(h)

                answers = [call.answer for call in proxy.history_calls]
                empty_then_more = [a for a in answers if "history" not in a and "nextPageToken" in a]
                assert len(empty_then_more) >= 2 and rewrite.inserted >= 3
                assert sum(len(a.get("history", ())) for a in answers) == 11
                account = await get_account(h.rt.engine, h.account_id)
                assert account.history_id == emulator.mailbox.history_id
                await assert_no_drift(h)


async def test_more_history_records_than_one_page(database_url: str) -> None:
    with dated_emulator(12) as emulator, RewritingProxy(emulator.server.url, history_params=small_pages(3)) as proxy:
        async with harness_via(emulator, database_url, proxy.url) as h:
            await backfill(h)
            mailbox = emulator.mailbox
            for change in ({"add": ["STARRED"]}, {"remove": ["STARRED"]}, {"add": ["IMPORTANT"]}):
                for mid in sorted(mailbox.message_ids()):
                    mailbox.modify_labels(mid, **change)
            calls_before = len(proxy.history_calls)
            await sync_history(h)
            pages = proxy.history_calls[calls_before:]
            assert len(pages) == 12  # 36 records, 3 per page
            assert sum(len(p.answer.get("history", ())) for p in pages) == 36
            await assert_no_drift(h)


async def test_messages_added_for_a_message_deleted_since(harness: Harness) -> None:
    """history.list announces a message; it is deleted before messages.get fetches it (404)."""
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    new_id = mailbox.add_message(raw_of(ham_files(1, skip=140)[0]))
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.run_one(jobtypes.HISTORY_SYNC)  # asks for an ingest of new_id
    mailbox.delete_message(new_id)
    ingest = await harness.run_one(jobtypes.INGEST)
    steps = await harness.rt.queue.steps(ingest.id)
    assert steps[-1].detail == {"stored": 0, "gone": 1, "failed": 0}

    await sync_history(harness)  # the messagesDeleted record leaves a tombstone
    async with harness.rt.engine.connect() as conn:
        row = (await conn.execute(sa.select(messages.c.deleted).where(messages.c.id == new_id))).first()
    assert row is not None and row.deleted
    assert all(j.state == "completed" for j in await jobs_of(harness, jobtypes.INGEST))
    await assert_no_drift(harness)


async def test_a_label_that_labels_list_does_not_return(harness: Harness) -> None:
    """Messages keep carrying a label id labels.list no longer (or never) returned: placeholders,
    never a crash, and no recovery strips it."""
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    listed_once = mailbox.create_label("Projects/old")
    await jobtypes.request_labels_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    mirrored = sorted(mailbox.message_ids())[:2]
    for mid in mirrored:
        mailbox.modify_labels(mid, add=[listed_once])
    never_listed = mailbox.create_label("hidden")
    arrived = mailbox.add_message(raw_of(ham_files(1, skip=150)[0]), label_ids=["INBOX", never_listed])
    mailbox.delete_label(listed_once, keep_on_messages=True)
    mailbox.delete_label(never_listed, keep_on_messages=True)

    await sync_history(harness)
    await jobtypes.request_labels_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    async with harness.rt.engine.connect() as conn:
        query = sa.select(labels).where(labels.c.id.in_([listed_once, never_listed]))
        rows = {r.id: r for r in await conn.execute(query)}
    assert rows[listed_once].placeholder and rows[listed_once].name == "Projects/old"  # last known name kept
    assert rows[never_listed].placeholder and rows[never_listed].name == never_listed
    assert never_listed in await labels_of(harness, arrived)
    await assert_no_drift(harness)

    # A recovery compares label membership by listing labels; it must not strip the unlisted ones.
    mailbox.modify_labels(mirrored[0], add=["STARRED"])
    mailbox.expire_history()
    await sync_history(harness)
    assert listed_once in await labels_of(harness, mirrored[0])
    assert [j.state for j in await jobs_of(harness, jobtypes.RECONCILE)] == ["completed"]
    await assert_no_drift(harness)


async def test_a_label_deleted_in_gmail_leaves_the_mirror(harness: Harness) -> None:
    """Gmail's labels.delete takes the label off every message (labelsRemoved records)."""
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    doomed = mailbox.create_label("Doomed")
    carriers = sorted(mailbox.message_ids())[:3]
    for mid in carriers:
        mailbox.modify_labels(mid, add=[doomed])
    await sync_history(harness)
    mailbox.delete_label(doomed)
    await sync_history(harness)
    await jobtypes.request_labels_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    for mid in carriers:
        assert doomed not in await labels_of(harness, mid)
    async with harness.rt.engine.connect() as conn:
        assert (await conn.execute(sa.select(labels.c.id).where(labels.c.id == doomed))).first() is None
    await assert_no_drift(harness)


async def test_inbox_removed_readded_then_archived_in_one_window(harness: Harness) -> None:
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    target = sorted(mailbox.message_ids())[3]
    mailbox.modify_labels(target, remove=["INBOX"])
    mailbox.modify_labels(target, add=["INBOX"])
    mailbox.modify_labels(target, remove=["INBOX"], add=["STARRED"])
    fresh = mailbox.add_message(raw_of(ham_files(1, skip=160)[0]))  # the same, on a message not yet mirrored
    for change in ({"remove": ["INBOX"]}, {"add": ["INBOX"]}, {"remove": ["INBOX"]}):
        mailbox.modify_labels(fresh, **change)
    await sync_history(harness)
    assert "INBOX" not in await labels_of(harness, target)
    assert "INBOX" not in await labels_of(harness, fresh)
    await assert_no_drift(harness)


async def test_the_same_change_replayed_twice(database_url: str) -> None:
    """Every history record arrives twice in the same page, and then the whole window is replayed."""

    def twice(_params: dict[str, str], answer: dict[str, Any] | None) -> dict[str, Any]:
        assert answer is not None
        if "history" in answer:
            answer = {**answer, "history": [record for record in answer["history"] for _ in range(2)]}
        return answer

    with dated_emulator(12) as emulator, RewritingProxy(emulator.server.url, history_answer=twice) as proxy:
        async with harness_via(emulator, database_url, proxy.url) as h:
            await backfill(h)
            start = emulator.mailbox.history_id
            make_changes(h, relabels=3, deletes=2, adds=2, skip=170)
            gets = emulator.state.counters.requests("messages.get")
            calls_before = len(proxy.history_calls)
            await sync_history(h)
            await update_account(h.rt.engine, h.account_id, history_id=start)
            await sync_history(h)
            replays = proxy.history_calls[calls_before:]
            assert [len(call.answer["history"]) for call in replays] == [14, 14]  # 7 records, each twice
            assert emulator.state.counters.requests("messages.get") - gets == 2  # each new message once
            await assert_no_drift(h)


async def test_notifications_out_of_order_and_the_cursor_rules(harness: Harness) -> None:
    """A notification for an older history id after a newer one changes nothing: history sync reads
    from the stored cursor, which never moves back."""
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    make_changes(harness, relabels=2, deletes=1, adds=1, skip=180)
    older = mailbox.history_id
    make_changes(harness, relabels=2, deletes=1, adds=1, skip=181)
    newer = mailbox.history_id
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)  # "historyId": newer
    await harness.run_one(jobtypes.HISTORY_SYNC)
    assert (await get_account(harness.rt.engine, harness.account_id)).history_id == newer
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)  # "historyId": older, late
    await harness.settle()
    assert older < newer == (await get_account(harness.rt.engine, harness.account_id)).history_id
    await assert_no_drift(harness)


async def test_chaos_notifications_in_any_order_while_mail_changes(harness: Harness) -> None:
    """A running worker, mail changing all the time, history syncs requested at random moments
    (as notifications, polls and retries would): the cursor only moves forward and the mirror
    converges."""
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    rng = random.Random(41)
    worker = harness.rt.worker()
    running = asyncio.create_task(worker.run())
    cursors: list[int] = []
    try:
        for round_no in range(25):
            ids = sorted(mailbox.message_ids())
            action = rng.choice(["add", "delete", "relabel", "relabel"])
            if action == "add":
                mailbox.add_message(raw_of(ham_files(1, skip=190 + round_no)[0]))
            elif action == "delete":
                mailbox.delete_message(rng.choice(ids))
            else:
                add = rng.sample(["STARRED", "IMPORTANT", "INBOX", "UNREAD"], 2)
                mailbox.modify_labels(rng.choice(ids), add=add[:1], remove=add[1:])
            for _ in range(rng.randint(0, 2)):
                await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
            await asyncio.sleep(rng.uniform(0, 0.05))
            cursors.append((await get_account(harness.rt.engine, harness.account_id)).history_id or 0)
        await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
        await _until_idle(harness)
    finally:
        await worker.stop(grace_seconds=5)
        await asyncio.gather(running, return_exceptions=True)
    assert cursors == sorted(cursors)
    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.status == STATUS_NORMAL and account.history_id == mailbox.history_id
    await assert_no_drift(harness)


async def _until_idle(h: Harness) -> None:
    for _ in range(1200):
        if await h.rt.queue.is_idle():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("queue not idle after 60 s")



async def test_recovery_after_a_history_gap_converges_at_a_fraction_of_the_quota(database_url: str) -> None:
    """History expires; meanwhile 5 % of the mail is deleted, 10 % relabelled and 5 % added. The
    recovery converges (verify through the API) and costs far less than fetching everything again."""
    with dated_emulator(60) as emulator:
        async with harness_via(emulator, database_url) as h:
            await backfill(h)
            mailbox = emulator.mailbox
            rng = random.Random(3)
            for mid in rng.sample(sorted(mailbox.message_ids()), 3):
                mailbox.delete_message(mid)
            for mid in rng.sample(sorted(mailbox.message_ids()), 6):
                mailbox.modify_labels(mid, add=["STARRED", "IMPORTANT"], remove=["INBOX"])
            for path in ham_files(3, skip=220):
                mailbox.add_message(raw_of(path))
            mailbox.expire_history()
            units_before = emulator.units()
            gets_before = emulator.state.counters.requests("messages.get")

            await sync_history(h)

            recovery_units = emulator.units() - units_before
            refetch_units = len(mailbox.message_ids()) * emulator.state.cost_of("messages.get")
            ratio = recovery_units / refetch_units
            print(f"\nrecovery: {recovery_units} quota units; refetching all {len(mailbox.message_ids())} "
                  f"messages: {refetch_units}; ratio {ratio:.3f}")
            assert emulator.state.counters.requests("messages.get") - gets_before == 3  # only the new mail
            assert ratio < 0.2
            await assert_no_drift(h)
