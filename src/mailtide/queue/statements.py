"""The SQL of the queue: SQLAlchemy Core statements portable between SQLite and PostgreSQL, and
the PostgreSQL claim, written out in SQL (see _POSTGRES_CLAIM_SQL for why)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mailtide.db.schema import ACTIVE_STATES, COMPLETED, QUEUED, RUNNING, jobs
from mailtide.queue.pg_listen import NOTIFY_EXPRESSION

# Must match the WHERE clause of the partial unique index uq_jobs_active_key, so that
# ON CONFLICT can name that index as its arbiter on both backends.
ACTIVE_KEY_PREDICATE = "state IN ('queued', 'running') AND idempotency_key IS NOT NULL"
RUNNING_LANE_INDEX = "uq_jobs_running_lane"
ANNOUNCED = "announced"  # the RETURNING column that carries the NOTIFY of an enqueue (PostgreSQL)
# The columns an enqueue writes (see records.row_from_spec); the others keep their defaults.
INSERT_COLUMNS = (
    "type", "payload", "priority", "state", "attempts", "max_attempts", "not_before",
    "idempotency_key", "lane", "account_id", "created_at", "cancel_requested",
)


@functools.lru_cache(maxsize=4)
def insert_batch_skipping_active_keys(dialect_name: str) -> sa.Executable:
    """INSERT many jobs in one statement; a row whose idempotency key is held by an active job is
    silently skipped. Run it with insert_batch_parameters(). RETURNING gives `id` and
    `idempotency_key` of the rows actually inserted, in no guaranteed order; on PostgreSQL also
    the NOTIFY of each (ANNOUNCED). The caller knows the rest of each row: it wrote it.

    PostgreSQL: the rows travel as one array per column, unnested by the server. The statement is
    short and prepared once whatever the batch size, and SQLAlchemy binds 12 parameters per
    batch instead of 12 per row (a multi-row VALUES, each one handled on its own).
    SQLite: a Core INSERT executed with a list of row dicts, which SQLAlchemy sends as one
    multi-row INSERT ("insertmanyvalues").
    """
    if dialect_name == "postgresql":
        return _postgres_insert_batch()
    if dialect_name == "sqlite":
        return sqlite.insert(jobs).on_conflict_do_nothing(
            index_elements=[jobs.c.idempotency_key], index_where=sa.text(ACTIVE_KEY_PREDICATE)
        ).returning(jobs.c.id, jobs.c.idempotency_key)
    raise NotImplementedError(f"job queue does not support {dialect_name}")


def insert_batch_parameters(dialect_name: str, rows: Sequence[dict[str, Any]]) -> Any:
    """The parameters of insert_batch_skipping_active_keys() for these rows (records.row_from_spec)."""
    if dialect_name == "postgresql":
        return {name: [row[name] for row in rows] for name in INSERT_COLUMNS}
    return rows


def _postgres_insert_batch() -> sa.TextClause:
    inserted = [column for column in jobs.c if column.name in INSERT_COLUMNS]
    names = ", ".join(column.name for column in inserted)
    pg = postgresql.dialect()
    arrays = ", ".join(f"CAST(:{column.name} AS {column.type.compile(dialect=pg)}[])" for column in inserted)
    sql = (
        f"INSERT INTO jobs ({names}) SELECT {names} FROM unnest({arrays}) AS batch({names}) "
        f"ON CONFLICT (idempotency_key) WHERE {ACTIVE_KEY_PREDICATE} DO NOTHING "
        f"RETURNING id, idempotency_key, {NOTIFY_EXPRESSION} AS {ANNOUNCED}"
    )
    return sa.text(sql).bindparams(*(sa.bindparam(c.name, type_=postgresql.ARRAY(c.type)) for c in inserted))


@functools.lru_cache(maxsize=2)
def insert_one_skipping_active_key(dialect_name: str) -> sa.TextualSelect:
    """The single-row form of insert_batch_skipping_active_keys(), as SQL both backends accept;
    RETURNING the new `id` (PostgreSQL: and ANNOUNCED).

    Dialect-specific INSERTs (needed for ON CONFLICT) are not cacheable in SQLAlchemy 2.0, so
    every execution recompiles them: for one row that is most of the cost of an enqueue. A
    text() statement with typed parameters and result columns compiles once.
    """
    inserted = [column for column in jobs.c if column.name in INSERT_COLUMNS]
    returned = ["id"]
    if dialect_name == "postgresql":
        returned.append(f"{NOTIFY_EXPRESSION} AS {ANNOUNCED}")
    sql = (
        f"INSERT INTO jobs ({', '.join(c.name for c in inserted)}) "
        f"VALUES ({', '.join(':' + c.name for c in inserted)}) "
        f"ON CONFLICT (idempotency_key) WHERE {ACTIVE_KEY_PREDICATE} DO NOTHING "
        f"RETURNING {', '.join(returned)}"
    )
    result_columns = [jobs.c.id, *(sa.column(ANNOUNCED) for _ in returned[1:])]
    return sa.text(sql).bindparams(*(sa.bindparam(c.name, type_=c.type) for c in inserted)).columns(*result_columns)


@functools.lru_cache(maxsize=1)
def complete_running() -> sa.Update:
    """Running jobs -> completed, each guarded on its (id, attempts); RETURNING the ids applied.

    Parameters: `finished` (a list of (id, attempts) pairs, expanded at execution) and
    `finished_at`. Built once: it runs for every group of completions.
    """
    attempt = sa.tuple_(jobs.c.id, jobs.c.attempts)
    return (
        sa.update(jobs)
        .where(_state_is(jobs, RUNNING), attempt.in_(sa.bindparam("finished", expanding=True)))
        .values(state=COMPLETED, finished_at=sa.bindparam("finished_at", type_=sa.Float), worker_id=None)
        .returning(jobs.c.id)
    )


def select_active_by_keys(keys: Sequence[str]) -> sa.Select[Any]:
    return sa.select(jobs).where(jobs.c.idempotency_key.in_(list(keys)), jobs.c.state.in_(ACTIVE_STATES))


def claim_window(limit: int) -> int:
    """How many candidates a claim of `limit` jobs looks at: a little more than `limit`, so that
    several jobs of one lane near the top do not starve the batch."""
    return limit * 2 + 8


def claim_parameters(
    *, worker_id: str, now: float, limit: int, types: Sequence[str] | None, min_priority: int | None = None
) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "claim_worker_id": worker_id,
        "claim_now": now,
        "claim_limit": limit,
        "claim_window": claim_window(limit),
    }
    if types is not None:
        parameters["claim_types"] = list(types)
    if min_priority is not None:
        parameters["claim_min_priority"] = min_priority
    return parameters


def claim(*, dialect_name: str, limit: int, filter_types: bool, filter_priority: bool = False) -> sa.Executable:
    """The statement that claims up to `limit` due jobs (priority desc, then oldest), at most one
    per lane, skipping lanes that have a running job; run it with claim_parameters().
    filter_priority: only jobs of priority >= claim_min_priority (a worker's reserved slots)."""
    if dialect_name == "postgresql":
        return _postgres_claim(filter_types=filter_types, filter_priority=filter_priority)
    return _portable_claim(limit=limit, filter_types=filter_types, filter_priority=filter_priority)


# PostgreSQL: walk the priority levels instead of sorting the queue.
#
# ORDER BY priority DESC, id ASC cannot be read off the (state, priority, id) index (mixed
# directions), so a plain top-N query sorts every queued job on every claim: milliseconds at a
# few thousand jobs, more with a deep backlog. Instead `levels` finds the distinct priorities of
# queued jobs from the top, one index probe each, and for each level the LATERAL subquery reads
# jobs in id order straight from the index, locking them FOR UPDATE SKIP LOCKED so that
# concurrent claimers take disjoint rows. The outer LIMIT stops the walk once the window is full,
# so a claim reads O(levels + window) rows whatever the backlog; with a minimum priority the walk
# stops at the last level that reaches it. Within the window only the
# first job of each lane is picked (jobs without a lane each count as a lane of their own).
# The picked ids reach the UPDATE as `id = ANY(ARRAY(...))`: computed once, then looked up by
# primary key (with `id IN (...)` a young table's "one row" statistics led the planner to scan
# every queued job per picked id: 50 ms per claim at 5,000 jobs). The rows are locked by this
# statement, so they are still queued when updated.
_POSTGRES_CLAIM_SQL = """
WITH RECURSIVE levels(priority) AS (
    (SELECT priority FROM jobs WHERE state = 'queued' {priority_filter} ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT below.priority FROM jobs AS below
            WHERE below.state = 'queued' AND below.priority < levels.priority {below_priority_filter}
            ORDER BY below.priority DESC LIMIT 1)
    FROM levels
    WHERE levels.priority IS NOT NULL
),
candidates AS (
    SELECT due.id, due.lane, due.priority
    FROM levels
    CROSS JOIN LATERAL (
        SELECT queued.id, queued.lane, queued.priority
        FROM jobs AS queued
        WHERE queued.state = 'queued'
          AND queued.priority = levels.priority
          AND queued.not_before <= :claim_now
          {type_filter}
          AND (queued.lane IS NULL OR NOT EXISTS (
                SELECT 1 FROM jobs AS running WHERE running.state = 'running' AND running.lane = queued.lane))
        ORDER BY queued.id
        LIMIT :claim_window
        FOR UPDATE SKIP LOCKED
    ) AS due
    LIMIT :claim_window
),
picked AS (
    SELECT id FROM (
        SELECT id, priority,
               row_number() OVER (PARTITION BY lane, CASE WHEN lane IS NULL THEN id END
                                  ORDER BY priority DESC, id) AS lane_rank
        FROM candidates
    ) AS ranked
    WHERE lane_rank = 1
    ORDER BY priority DESC, id
    LIMIT :claim_limit
)
UPDATE jobs
SET state = 'running', attempts = attempts + 1, started_at = :claim_now, heartbeat_at = :claim_now,
    worker_id = :claim_worker_id, finished_at = NULL
WHERE id = ANY(ARRAY(SELECT id FROM picked))
RETURNING {returning}
"""


@functools.lru_cache(maxsize=4)
def _postgres_claim(*, filter_types: bool, filter_priority: bool) -> sa.TextualSelect:
    sql = _POSTGRES_CLAIM_SQL.format(
        type_filter="AND queued.type = ANY(:claim_types)" if filter_types else "",
        priority_filter="AND priority >= :claim_min_priority" if filter_priority else "",
        below_priority_filter="AND below.priority >= :claim_min_priority" if filter_priority else "",
        returning=", ".join(f"jobs.{column.name}" for column in jobs.c),
    )
    binds = [
        sa.bindparam("claim_now", type_=sa.Float),
        sa.bindparam("claim_window", type_=sa.Integer),
        sa.bindparam("claim_limit", type_=sa.Integer),
        sa.bindparam("claim_worker_id", type_=sa.String),
    ]
    if filter_types:
        binds.append(sa.bindparam("claim_types", type_=postgresql.ARRAY(sa.String)))
    if filter_priority:
        binds.append(sa.bindparam("claim_min_priority", type_=sa.Integer))
    return sa.text(sql).bindparams(*binds).columns(*jobs.c)


def _state_is(table: sa.TableClause, state: str) -> sa.ColumnElement[bool]:
    """`state = '<state>'` with the state as an SQL literal, not a bind parameter, so that the
    planner can match partial indexes (e.g. uq_jobs_running_lane) also in generic plans."""
    return table.c.state == sa.literal_column(f"'{state}'")


@functools.lru_cache(maxsize=256)
def _portable_claim(*, limit: int, filter_types: bool, filter_priority: bool) -> sa.Update:
    """The claim in SQLAlchemy Core (used for SQLite), built once per (limit, filter_types,
    filter_priority): building it costs more than running it.

    Candidates are queued, due, and not in a lane that already has a running job, taken by
    priority then age, a window of claim_window(limit). Only the first job of each lane in the
    window is picked. SQLite sorts the queued jobs in process, which is cheap, and BEGIN
    IMMEDIATE serialises claims (FOR UPDATE is not rendered there).
    """
    now = sa.bindparam("claim_now", type_=sa.Float)
    running = jobs.alias("running_jobs")
    lane_busy = (
        sa.select(running.c.id).where(_state_is(running, RUNNING), running.c.lane == jobs.c.lane).exists()
    )
    conditions = [
        _state_is(jobs, QUEUED),
        jobs.c.not_before <= now,
        sa.or_(jobs.c.lane.is_(None), ~lane_busy),
    ]
    if filter_types:
        conditions.append(jobs.c.type.in_(sa.bindparam("claim_types", expanding=True)))
    if filter_priority:
        conditions.append(jobs.c.priority >= sa.bindparam("claim_min_priority", type_=sa.Integer))
    candidates = (
        sa.select(jobs.c.id, jobs.c.lane, jobs.c.priority)
        .where(*conditions)
        .order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(claim_window(limit))
        .with_for_update(skip_locked=True, of=jobs)
        .cte("claim_candidates")
    )
    # Jobs without a lane each get a partition of their own (lane NULL, id); NULL lanes are
    # equal in PARTITION BY, so a second key keeps them apart.
    lane_rank = (
        sa.func.row_number()
        .over(
            partition_by=[
                candidates.c.lane,
                sa.case((candidates.c.lane.is_(None), candidates.c.id), else_=sa.null()),
            ],
            order_by=[candidates.c.priority.desc(), candidates.c.id],
        )
        .label("lane_rank")
    )
    ranked = sa.select(candidates.c.id, candidates.c.priority, lane_rank).subquery("ranked")
    picked = (
        sa.select(ranked.c.id)
        .where(ranked.c.lane_rank == 1)
        .order_by(ranked.c.priority.desc(), ranked.c.id)
        .limit(limit)
    )
    return (
        sa.update(jobs)
        .where(jobs.c.id.in_(picked), _state_is(jobs, QUEUED))
        .values(
            state=RUNNING,
            attempts=jobs.c.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker_id=sa.bindparam("claim_worker_id", type_=sa.String),
            finished_at=None,
        )
        .returning(*jobs.c)
    )
