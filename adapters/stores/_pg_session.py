"""The PostgreSQL ledger's write connection, its session, and the closing of requests nobody will end.

``PgWriter`` is used from one worker thread at a time (the store serializes its calls): a plain
psycopg connection, so a batch costs one trip to that thread and its encoding (binary COPY) never
runs on the event loop.

Each writer is one *session*, as in the SQLite ledger (``_ledger_writer``): a random id, held as
a session-level advisory lock on the write connection. The server drops the lock when that
connection ends, and the connection ends when the process dies (SIGKILL included), so a session
whose lock is free has no process left to end the requests it began. Opening a writer closes
those: each becomes an ``interrupted`` request row (tenant, caller, task, the attempts its latest
begin counted, that attempt's model and provider) and its begun rows are deleted, in one
transaction. A live session's begun rows are left alone.

One case differs from the file lock: a server restart cuts every connection, so for the moment
before a live writer reconnects (and takes its lock again) its session looks dead, and a store
opened in that moment would close its requests as ``interrupted``. Their real ends, when they come,
replace those rows (``_pg_rows``): the guess never outlives the answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Final

import psycopg

from interlock._records import LedgerRecord, RequestRecord
from interlock.adapters.stores._ledger_writer import INTERRUPTED_DETAIL
from interlock.adapters.stores._pg_rows import STAGING, write_batch, write_requests
from interlock.adapters.stores._pg_schema import migrate

CONNECT_TIMEOUT_S: Final = 5  # seconds: a server that does not answer is down, and the batch spools

_ORPHANS: Final = """
SELECT b.request_id, b.ts, b.tenant, b.caller, b.task, b.model_class, b.model, b.provider,
       GREATEST(b.attempts, (SELECT COUNT(*) FROM attempts a WHERE a.request_id = b.request_id))
FROM begun b LEFT JOIN requests r ON r.request_id = b.request_id
WHERE b.session = %s AND r.request_id IS NULL
ORDER BY b.ts, b.request_id
"""


def session_key(session: str) -> int:
    """The advisory lock key of ``session`` (16 hex digits), as PostgreSQL's signed bigint."""
    return int.from_bytes(bytes.fromhex(session), "big", signed=True)


def connect(url: str) -> psycopg.Connection[Any]:
    """A new connection to ``url``, in autocommit mode (transactions are opened explicitly)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="interlock-ledger")


class PgWriter:
    """The write connection of one open store, and its session; call from one thread at a time.

    ``shown`` is the password-free URL, for errors. The connection is made again on the first
    write after it broke (the server restarted): the session takes its lock again on it.
    """

    def __init__(self, url: str, shown: str, *, connect_now: bool = True) -> None:
        """Connect now (migrating the schema, claiming the session), or, with ``connect_now=False``,
        at the first call that needs the server: the session id is chosen here either way, so
        batches spooled before the server answered carry it.
        """
        self._url = url
        self._shown = shown
        self.session = secrets.token_hex(8)
        self.opened: set[str] = set()  # requests whose begun rows this writer committed, not yet ended
        self._conn: psycopg.Connection[Any] | None = None
        if connect_now:
            self.connection()  # migrates the schema on first use and claims the session
        self.recovered = 0

    def connection(self) -> psycopg.Connection[Any]:
        """The write connection, made (and the session's lock taken) when there is none or it broke."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = None
        if conn is not None:
            conn.close()
        conn = connect(self._url)
        try:
            migrate(conn, self._shown)
            for statement in STAGING:
                conn.execute(statement)
            # Claimed before looking for dead sessions: a writer opening at the same time sees this one alive.
            conn.execute("SELECT pg_advisory_lock(%s)", (session_key(self.session),))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def write(self, records: Sequence[LedgerRecord], session: str | None = None) -> None:
        """Write one batch in one committed transaction; its begins carry ``session`` (this one by default).

        A batch from the spool (``session`` given) deletes the begun row of every end it holds: its
        begins may have reached the server through another writer.
        """
        if session is None:
            write_batch(self.connection(), records, self.session, self.opened)
        else:
            mine = self.opened if session == self.session else None
            write_batch(self.connection(), records, session, mine, every_end=True)

    def close_dead_sessions(self) -> int:
        """Close the begun requests of every session whose process is gone; returns how many were closed."""
        conn = self.connection()
        sessions = [s for (s,) in conn.execute("SELECT DISTINCT session FROM begun").fetchall()]
        closed = sum(self._close_session(s) for s in sessions if s != self.session and not self._alive(s))
        self.recovered += closed
        return closed

    def close(self) -> None:
        """Close this session's own begun requests (no end can come now), then the connection (its lock with it)."""
        conn = self._conn
        if conn is None:
            return
        try:
            if not conn.closed and not conn.broken:
                self._close_session(self.session)
        finally:
            self._conn = None
            conn.close()

    def abandon(self) -> None:
        """Drop the connection without closing the session (the server is gone; the next opener closes it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _alive(self, session: str) -> bool:
        """Whether a connection still holds ``session``'s lock (a session id not of ours is never alive)."""
        if len(session) != 16 or any(c not in "0123456789abcdef" for c in session):
            return False
        conn = self.connection()
        key = session_key(session)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row is None or not row[0]:
            return True
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return False

    def _close_session(self, session: str) -> int:
        """Write an ``interrupted`` row for each begun request of ``session`` with no end; returns how many."""
        conn = self.connection()
        with conn.transaction():
            rows = [
                RequestRecord(
                    request_id=rid, ts=ts, tenant=tenant, caller=caller, task=task, model_class=model_class,
                    model=model, provider=provider, outcome="interrupted", error="interrupted",
                    error_detail=INTERRUPTED_DETAIL, attempts=int(attempts),
                )
                for rid, ts, tenant, caller, task, model_class, model, provider, attempts
                in conn.execute(_ORPHANS, (session,)).fetchall()
            ]  # fmt: skip
            write_requests(conn, rows)
            conn.execute("DELETE FROM begun WHERE session = %s", (session,))
        return len(rows)
