"""Ledger records as SQLite rows: columns, generated row builders, and a batch's one transaction.

Everything here runs in the store's worker thread, on a plain ``sqlite3`` connection: the event
loop pays nothing per record. ``write_batch`` sorts a batch by record kind and writes it in one
``BEGIN IMMEDIATE`` transaction, with one ``executemany`` per table; rows go in with
``INSERT OR IGNORE`` on the natural keys (``request_id`` for requests, ``(request_id, attempt)``
for attempts, ``(provider, ts, from_state, to_state)`` for breaker transitions), so replaying a
batch after a crash adds nothing, and the first copy of a key wins.

A request's ``BeginRecord`` goes to ``begun`` only when its end is not in the same batch; an end
whose begin an earlier batch wrote deletes that begun row in its own transaction, so ``begun``
holds just the requests still open (``OpenBegins`` remembers which, per store). A request tells
a begin again as each attempt is sent: the begun row is upserted, and only a begin with more
``attempts`` than the row changes it (its count, its job as resolved, its latest model), so a
replay, or begins arriving in any order, leave the row with the most attempts begun.

Each statement inserts ``ROWS_PER_INSERT`` rows, so the per-statement work and the thread's
hand-offs of the GIL (one per statement) are shared by many rows, and every value binds on
sqlite3's fast path (see ``_row_builder``).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import msgspec

from interlock._records import AttemptRecord, BeginRecord, BreakerRecord, LedgerRecord, RequestRecord

_Row = tuple[object, ...]

REQUEST_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in msgspec.structs.fields(RequestRecord))
ATTEMPT_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in msgspec.structs.fields(AttemptRecord))
BEGUN_COLUMNS: Final[tuple[str, ...]] = (*(f.name for f in msgspec.structs.fields(BeginRecord)), "session")
BREAKER_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in msgspec.structs.fields(BreakerRecord))

# Rows per INSERT statement: 24 rows of the widest record (33 columns) stay under 999 parameters,
# the lowest limit SQLite builds have had; more rows per statement gain little and hold the GIL
# longer. (A test holds the product under the limit.)
ROWS_PER_INSERT: Final = 24


def _insert_sql(table: str, columns: tuple[str, ...], rows: int, *, upsert: str = "") -> str:
    """A ``rows``-row insert: a row whose key is stored is ignored, or, with ``upsert``, handled by that clause."""
    row = "(" + ", ".join("?" * len(columns)) + ")"
    verb, tail = ("INSERT", f" ON CONFLICT {upsert}") if upsert else ("INSERT OR IGNORE", "")
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}{tail}"


def select_sql(table: str, columns: tuple[str, ...]) -> str:
    """``SELECT`` of ``columns`` from ``table``, in that order."""
    return f"SELECT {', '.join(columns)} FROM {table}"


def _row_builder(kind: type[msgspec.Struct]) -> Callable[[Any], _Row]:
    """Compile ``record -> bind parameters`` for ``kind``, in its field order (the column order).

    sqlite3 binds an exact int, float or str directly, but sends ``None`` and ``bool`` through its
    adapter registry first, about three times the cost per value. So a bool becomes 0/1 (what
    sqlite3 would store anyway) and ``None`` becomes NaN, which SQLite binds as NULL. The function
    is generated from the Struct's fields: one expression per field, no loop, no per-value lookup.
    """
    parts: list[str] = []
    for field in msgspec.structs.fields(kind):
        get = f"r.{field.name}"
        if field.type is bool:
            parts.append(f"(1 if {get} else 0)")
        elif type(None) in typing.get_args(field.type):  # X | None
            parts.append(f"(_NULL if (v := {get}) is None else v)")
        else:
            parts.append(get)
    namespace: dict[str, Any] = {"_NULL": math.nan}
    exec(f"def build(r):\n    return ({', '.join(parts)},)\n", namespace)  # fields are our own identifiers
    build: Callable[[Any], _Row] = namespace["build"]
    return build


# Built once: column order is the Structs' field order, which is what the row builders yield.
INSERT_REQUESTS: Final = _insert_sql("requests", REQUEST_COLUMNS, ROWS_PER_INSERT)
_INSERT_ATTEMPTS: Final = _insert_sql("attempts", ATTEMPT_COLUMNS, ROWS_PER_INSERT)
# A later begin of a request (one more attempt sent) updates its row: the count, the latest model,
# and the job as resolved (the entry knows only the one asked for); session and entry time stay.
_BEGUN_UPDATE: Final = (
    "(request_id) DO UPDATE SET attempts = excluded.attempts, task = excluded.task,"
    " model_class = excluded.model_class, model = excluded.model, provider = excluded.provider"
    " WHERE excluded.attempts > begun.attempts"
)
_INSERT_BEGUN: Final = _insert_sql("begun", BEGUN_COLUMNS, ROWS_PER_INSERT, upsert=_BEGUN_UPDATE)
_INSERT_BREAKER: Final = _insert_sql("breaker_transitions", BREAKER_COLUMNS, 1)
_DELETE_BEGUN: Final = f"DELETE FROM begun WHERE request_id IN ({', '.join('?' * ROWS_PER_INSERT)})"
request_row: Final = _row_builder(RequestRecord)
attempt_row: Final = _row_builder(AttemptRecord)
_begin_row: Final = _row_builder(BeginRecord)
_breaker_row: Final = _row_builder(BreakerRecord)


def chunked(records: Iterable[Any], build: Callable[[Any], _Row]) -> Iterator[list[object]]:
    """Bind parameters of ``records``' rows, ``ROWS_PER_INSERT`` rows per list, pulled by ``executemany``.

    The last list is padded by repeating its last row: the copies are ignored as duplicates (or,
    for a delete by key, delete nothing more), so one statement serves every batch size.
    """
    params: list[object] = []
    rows = 0
    row: _Row = ()
    for record in records:
        row = build(record)
        params += row
        rows += 1
        if rows == ROWS_PER_INSERT:
            yield params
            params, rows = [], 0
    if rows:
        yield params + list(row) * (ROWS_PER_INSERT - rows)


def parameters(records: Iterable[object], requests: bool) -> Iterator[list[object]]:
    """Bind parameters of the request (or attempt) records among ``records``, as ``chunked`` gives them."""
    kind = RequestRecord if requests else AttemptRecord
    return chunked((r for r in records if type(r) is kind), request_row if requests else attempt_row)


class Sorted:
    """One batch sorted by record kind, in arrival order within each kind."""

    __slots__ = ("attempts", "begins", "breakers", "requests")

    def __init__(self, records: Iterable[object]) -> None:
        self.requests: list[RequestRecord] = []
        self.attempts: list[AttemptRecord] = []
        self.begins: list[BeginRecord] = []
        self.breakers: list[BreakerRecord] = []
        for record in records:
            if type(record) is RequestRecord:
                self.requests.append(record)
            elif type(record) is AttemptRecord:
                self.attempts.append(record)
            elif type(record) is BeginRecord:
                self.begins.append(record)
            elif type(record) is BreakerRecord:
                self.breakers.append(record)
            else:  # a stray object fails the whole write rather than vanishing from it
                raise sqlite3.InterfaceError(f"not a ledger record: {type(record).__name__}")


class OpenBegins:
    """The begun rows one store wrote and no end has deleted yet: which ends must delete one."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.ids: set[str] = set()


def write_batch(conn: sqlite3.Connection, records: Sequence[LedgerRecord], begins: OpenBegins) -> None:
    """Write ``records`` in one transaction (see the module docstring); all of them or, on error, none."""
    batch = Sorted(records)
    fresh: list[BeginRecord] = batch.begins
    closing: list[str] = []
    if batch.begins or begins.ids:
        ended = {r.request_id for r in batch.requests}
        fresh = [b for b in batch.begins if b.request_id not in ended]
        closing = [rid for rid in ended if rid in begins.ids]
    tail = (begins.session,)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(INSERT_REQUESTS, chunked(batch.requests, request_row))
        conn.executemany(_INSERT_ATTEMPTS, chunked(batch.attempts, attempt_row))
        if fresh:
            conn.executemany(_INSERT_BEGUN, chunked(fresh, lambda b: _begin_row(b) + tail))
        if closing:
            conn.executemany(_DELETE_BEGUN, chunked(closing, lambda rid: (rid,)))
        if batch.breakers:
            conn.executemany(_INSERT_BREAKER, map(_breaker_row, batch.breakers))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    # Only once committed: a rolled-back batch is written again, begins included.
    begins.ids.update(b.request_id for b in fresh)
    begins.ids.difference_update(closing)


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any is left open (SQLite may already have rolled it back)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("ROLLBACK")
