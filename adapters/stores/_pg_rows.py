"""Ledger records as PostgreSQL rows: column types derived from the records, COPY, and a batch's one transaction.

The tables' columns are the record Structs' fields (``REQUEST_COLUMNS``, ``ATTEMPT_COLUMNS``,
``BEGUN_COLUMNS``, ``BREAKER_COLUMNS``, shared with the SQLite store), each typed from its field:
``str`` and ``Literal`` as ``text``, ``int`` as ``bigint``, ``float`` as ``double precision``,
``bool`` as ``boolean``; ``X | None`` is nullable, every other column ``NOT NULL``. ``pg_columns``
states that; the migrations in ``_pg_schema`` are written out by hand, and a test holds their
latest state equal to it (and prints the ``ALTER TABLE`` a new field needs).

``write_batch`` writes one batch in one transaction. Requests and attempts go in by binary
``COPY`` straight into their table, inside a savepoint; a key already stored (a replayed batch, a
spool replayed twice) fails that COPY, and the savepoint is rolled back and the rows go through a
staging table and ``INSERT ... ON CONFLICT``, which skips them. One exception to "the first copy
wins": a request's real end replaces an ``interrupted`` row, which was only a guess made when its
session looked dead (its server connection was cut, see ``_pg_session``). Begins are upserted
(the most ``attempts`` wins, as in SQLite) only for requests with no end on file; every end in the
batch deletes its request's begun row (of the ones this writer knows it wrote; a replay, all).
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import msgspec
import psycopg
from psycopg import sql

from interlock._records import AttemptRecord, BeginRecord, LedgerRecord, RequestRecord
from interlock.adapters.stores._ledger_rows import (
    ATTEMPT_COLUMNS,
    BEGUN_COLUMNS,
    BREAKER_COLUMNS,
    REQUEST_COLUMNS,
    Sorted,
)

_TYPES: Final[dict[type, str]] = {str: "text", int: "bigint", float: "double precision", bool: "boolean"}
# The binary COPY names of those types.
_COPY_TYPES: Final[dict[str, str]] = {"text": "text", "bigint": "int8", "double precision": "float8", "boolean": "bool"}


def _column_type(annotation: Any) -> tuple[str, bool]:
    """A field's PostgreSQL type and whether it may be NULL."""
    args = typing.get_args(annotation)
    nullable = type(None) in args
    base = next(a for a in args if a is not type(None)) if nullable else annotation
    if typing.get_origin(base) is Literal:
        base = type(typing.get_args(base)[0])
    return _TYPES[base], nullable


def pg_columns(kind: type[msgspec.Struct]) -> tuple[tuple[str, str, bool], ...]:
    """``(name, type, nullable)`` of each of ``kind``'s fields, in field order: what its table must hold."""
    return tuple((f.name, *_column_type(f.type)) for f in msgspec.structs.fields(kind))


def missing_ddl(table: str, kind: type[msgspec.Struct], found: dict[str, tuple[str, bool]]) -> list[str]:
    """The ``ALTER TABLE`` statements adding ``kind``'s fields absent from ``found`` (name -> (type, nullable))."""
    out = []
    for name, pg_type, nullable in pg_columns(kind):
        if name not in found:
            default = {"text": "''", "bigint": "0", "double precision": "0", "boolean": "false"}[pg_type]
            tail = "" if nullable else f" NOT NULL DEFAULT {default}"
            out.append(f"ALTER TABLE {table} ADD COLUMN {name} {pg_type}{tail}")
    return out


REQUEST_TYPES: Final = tuple(_COPY_TYPES[t] for _, t, _ in pg_columns(RequestRecord))
ATTEMPT_TYPES: Final = tuple(_COPY_TYPES[t] for _, t, _ in pg_columns(AttemptRecord))
BEGUN_TYPES: Final = (*(_COPY_TYPES[t] for _, t, _ in pg_columns(BeginRecord)), "text")

_request_row: Final[Callable[[Any], tuple[object, ...]]] = operator.attrgetter(*REQUEST_COLUMNS)
_attempt_row: Final[Callable[[Any], tuple[object, ...]]] = operator.attrgetter(*ATTEMPT_COLUMNS)
_begin_row: Final[Callable[[Any], tuple[object, ...]]] = operator.attrgetter(*BEGUN_COLUMNS[:-1])
_breaker_row: Final[Callable[[Any], tuple[object, ...]]] = operator.attrgetter(*BREAKER_COLUMNS)


def _names(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _copy(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), _names(columns))


def select_sql(table: str, columns: Sequence[str]) -> sql.Composed:
    """``SELECT`` of ``columns`` from ``table``, in that order."""
    return sql.SQL("SELECT {} FROM {}").format(_names(columns), sql.Identifier(table))


# Staging tables: one per table, per connection, emptied by each commit.
STAGING: Final = tuple(
    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
        sql.Identifier(f"staged_{table}"), sql.Identifier(table)
    )
    for table in ("requests", "attempts", "begun")
)
_COPY_REQUESTS: Final = _copy("requests", REQUEST_COLUMNS)
_COPY_ATTEMPTS: Final = _copy("attempts", ATTEMPT_COLUMNS)
_STAGE_REQUESTS: Final = _copy("staged_requests", REQUEST_COLUMNS)
_STAGE_ATTEMPTS: Final = _copy("staged_attempts", ATTEMPT_COLUMNS)
_STAGE_BEGUN: Final = _copy("staged_begun", BEGUN_COLUMNS)
_MERGE_REQUESTS: Final = sql.SQL(
    "INSERT INTO requests ({cols}) SELECT DISTINCT ON (request_id) {cols} FROM staged_requests"
    " ORDER BY request_id ON CONFLICT (request_id) DO UPDATE SET ({cols}) = ROW({excluded})"
    " WHERE requests.outcome = 'interrupted' AND excluded.outcome <> 'interrupted'"
).format(
    cols=_names(REQUEST_COLUMNS),
    excluded=sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in REQUEST_COLUMNS),
)
_MERGE_ATTEMPTS: Final = sql.SQL(
    "INSERT INTO attempts ({cols}) SELECT {cols} FROM staged_attempts ON CONFLICT (request_id, attempt) DO NOTHING"
).format(cols=_names(ATTEMPT_COLUMNS))
# A later begin (one more attempt sent) updates the row: count, latest model, the job as resolved.
_MERGE_BEGUN: Final = sql.SQL(
    "INSERT INTO begun ({cols}) SELECT {cols} FROM staged_begun s"
    " WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = s.request_id)"
    " ON CONFLICT (request_id) DO UPDATE SET attempts = excluded.attempts, task = excluded.task,"
    " model_class = excluded.model_class, model = excluded.model, provider = excluded.provider"
    " WHERE excluded.attempts > begun.attempts"
).format(cols=_names(BEGUN_COLUMNS))
_DELETE_BEGUN: Final = "DELETE FROM begun WHERE request_id = ANY(%s)"
_INSERT_BREAKER: Final = sql.SQL("INSERT INTO breaker_transitions ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
    _names(BREAKER_COLUMNS), sql.SQL(", ").join(sql.Placeholder() * len(BREAKER_COLUMNS))
)


def _copy_rows(cur: psycopg.Cursor[Any], statement: sql.Composed, types: Sequence[str], rows: Iterable[Any]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _insert(
    conn: psycopg.Connection[Any],
    cur: psycopg.Cursor[Any],
    rows: list[tuple[object, ...]],
    direct: sql.Composed,
    staged: sql.Composed,
    merge: sql.Composed,
    types: Sequence[str],
) -> None:
    """COPY ``rows`` into their table; when a key is already stored, merge them through the staging table."""
    try:
        with conn.transaction():  # a savepoint: a refused COPY leaves the batch's transaction usable
            _copy_rows(cur, direct, types, rows)
    except psycopg.errors.UniqueViolation:
        _copy_rows(cur, staged, types, rows)
        cur.execute(merge)


def latest_begins(begins: Iterable[BeginRecord], ended: set[str]) -> list[BeginRecord]:
    """One begin per request not ended in the batch: the one with the most attempts (the first among equals)."""
    latest: dict[str, BeginRecord] = {}
    for begin in begins:
        rid = begin.request_id
        if rid in ended:
            continue
        kept = latest.get(rid)
        if kept is None or begin.attempts > kept.attempts:
            latest[rid] = begin
    return list(latest.values())


def write_batch(
    conn: psycopg.Connection[Any], records: Sequence[LedgerRecord], session: str, opened: set[str] | None,
    *, every_end: bool = False,
) -> None:  # fmt: skip
    """Write ``records`` in one transaction that has committed when this returns (see the module docstring).

    ``opened`` holds the requests whose begun rows this writer committed and no end has deleted
    yet: only those ends delete a begun row (a batch of ends alone costs no delete), and it is
    kept up to date once the commit is in (None: the begins are another session's). With
    ``every_end`` (a replayed batch, whose begins another writer may have committed) every end
    deletes its begun row.
    """
    batch = Sorted(records)
    ended = {r.request_id for r in batch.requests}
    begins = latest_begins(batch.begins, ended)
    closing = list(ended if every_end or opened is None else ended & opened)
    with conn.transaction(), conn.cursor() as cur:
        if batch.requests:
            rows = list(map(_request_row, batch.requests))
            _insert(conn, cur, rows, _COPY_REQUESTS, _STAGE_REQUESTS, _MERGE_REQUESTS, REQUEST_TYPES)
        if closing:
            cur.execute(_DELETE_BEGUN, (closing,))
        if batch.attempts:
            rows = list(map(_attempt_row, batch.attempts))
            _insert(conn, cur, rows, _COPY_ATTEMPTS, _STAGE_ATTEMPTS, _MERGE_ATTEMPTS, ATTEMPT_TYPES)
        if begins:
            tail = (session,)
            _copy_rows(cur, _STAGE_BEGUN, BEGUN_TYPES, (_begin_row(b) + tail for b in begins))
            cur.execute(_MERGE_BEGUN)
        if batch.breakers:
            cur.executemany(_INSERT_BREAKER, list(map(_breaker_row, batch.breakers)))
    if opened is not None:  # only once committed: a rolled-back batch is written again, or spooled
        opened.difference_update(closing)
        opened.update(b.request_id for b in begins)


def write_requests(conn: psycopg.Connection[Any], requests: Sequence[RequestRecord]) -> None:
    """Insert request rows inside the caller's transaction, skipping keys already stored (``interrupted`` closes)."""
    if requests:
        with conn.cursor() as cur:
            _copy_rows(cur, _STAGE_REQUESTS, REQUEST_TYPES, map(_request_row, requests))
            cur.execute(_MERGE_REQUESTS)
