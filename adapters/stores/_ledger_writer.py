"""The ledger's write side: one connection, one session, and the closing of requests nobody will end.

``LedgerWriter`` is used from a worker thread only (the store serializes its calls): it owns a
plain ``sqlite3`` connection, so a batch costs one trip to that thread, not one per statement.

Each writer is one *session*: a random id, and an exclusive ``flock`` on a file named after it
in ``<ledger>-sessions/``, held until the writer closes. The kernel drops the lock when the
process dies, SIGKILL included, so a session whose file is unlocked (or gone) has no process left
to end the requests it began. Opening a writer closes those: each becomes an ``interrupted``
request row (with its tenant, caller, task, the attempts its latest begin counted, and that
attempt's model and provider) and its begun row is deleted, in one transaction. A live
session's begun rows are left alone, so a report, or a second server on the same file, never
closes requests still running. ``flock`` locks belong to an open file, not to a process: two
stores of one process see each other as alive too. POSIX only.

Writers of one ledger file take turns through one more ``flock``, on ``writes.flock`` in the same
folder, held for exactly one batch's transaction. SQLite's own lock would serialize them too, but
a writer that finds it taken sleeps in SQLite's busy handler, 1 ms, then 2, 5, 10... up to 100 ms
a try: with several processes committing small batches (``interlock serve --workers N``), those
sleeps were the final event's tail (p99 over a second with two workers, measured). Tried every
``LOCK_POLL_S`` instead, a waiting writer goes within a fraction of a millisecond of the lock's
release; it gives up as SQLite would, after the busy timeout, with SQLite's own "database is
locked".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from interlock._records import LedgerRecord, RequestRecord
from interlock.adapters.stores._ledger_rows import (
    INSERT_REQUESTS,
    OpenBegins,
    chunked,
    request_row,
    rollback,
    write_batch,
)

# Per-connection settings. NORMAL is durable across a process crash in WAL mode (only a power cut
# can lose the last commits). The larger page cache and checkpoint interval keep random-key index
# inserts (uuid4-like request ids) from rewriting the same pages on every batch; measured on this
# 2-core machine they roughly double throughput for such ids and cost nothing for time-ordered ones.
CONNECTION_PRAGMAS: Final = (
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-65536",  # KiB, i.e. 64 MiB
    "PRAGMA wal_autocheckpoint=4000",  # pages, i.e. a ~16 MiB WAL between checkpoints
)
# The write connection checkpoints only as a backstop: a checkpoint run by the commit that crosses
# the threshold makes that commit (and every request waiting on it) wait for the copy and its
# fsync, the final event's p99 tail (measured: 33 ms against 12 ms without; 100-200 ms at 2,000
# requests/s, where small commits reached it every second). The ledger actor checkpoints from a
# second connection instead, beside the writes (``SqliteLedgerStore.checkpoint``), often enough
# (by records and by commits) that this threshold is not reached while it runs.
_WRITER_PRAGMAS: Final = (*CONNECTION_PRAGMAS[:2], "PRAGMA wal_autocheckpoint=16000")  # ~64 MiB

INTERRUPTED_DETAIL: Final = "the process ended while the request ran"
WRITE_LOCK: Final = "writes.flock"  # in the sessions folder: one batch at a time across processes
LOCK_POLL_S: Final = 0.0002

# The attempts begun, as the latest begin counted them; attempt rows on file (none in practice: a
# request's rows are written with its end) can only add to that count, never lower it.
_ORPHANS = """
SELECT b.request_id, b.ts, b.tenant, b.caller, b.task, b.model_class, b.model, b.provider,
       MAX(b.attempts, (SELECT COUNT(*) FROM attempts a WHERE a.request_id = b.request_id))
FROM begun b LEFT JOIN requests r ON r.request_id = b.request_id
WHERE b.session = ? AND r.request_id IS NULL
ORDER BY b.ts, b.request_id
"""


def sessions_folder(ledger_path: str) -> Path:
    """Where the sessions of the ledger at ``ledger_path`` keep their lock files."""
    return Path(f"{ledger_path}-sessions")


class LedgerWriter:
    """The write connection of one open store, and its session; call from one thread at a time."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            for pragma in _WRITER_PRAGMAS:
                conn.execute(pragma)
            self._folder = sessions_folder(path)
            self._folder.mkdir(exist_ok=True)
            self._lock_file, self._fd = _claim(self._folder)
            self._write_fd = os.open(self._folder / WRITE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except BaseException:
            conn.close()
            raise
        self._lock_tries = max(1, int(busy_timeout / LOCK_POLL_S))
        self._conn = conn
        self.begins = OpenBegins(self._lock_file.stem)
        try:
            # Claimed before looking: a writer opening at the same time sees this one alive.
            self.recovered = self._close_dead_sessions()
        except BaseException:
            self._release()
            raise

    @property
    def session(self) -> str:
        """This writer's session id (the ``session`` column of the begun rows it writes)."""
        return self.begins.session

    def write(self, records: Sequence[LedgerRecord]) -> None:
        """Write one batch in one transaction (``write_batch``), holding the file's write turn."""
        self._take_turn()
        try:
            write_batch(self._conn, records, self.begins)
        finally:
            fcntl.flock(self._write_fd, fcntl.LOCK_UN)

    def _take_turn(self) -> None:
        fd = self._write_fd
        for _ in range(self._lock_tries):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(LOCK_POLL_S)  # a worker thread: the event loop runs meanwhile
        raise sqlite3.OperationalError("database is locked (another process held the ledger's write turn)")

    def close(self) -> None:
        """Close this session's own begun requests (no end can come now), drop its lock, close."""
        try:
            self._close_session(self.session)
        finally:
            self._release()

    def _release(self) -> None:
        # Unlinked before unlocking: whoever opened the file meanwhile finds the session dead, as it is.
        with contextlib.suppress(FileNotFoundError):
            self._lock_file.unlink()
        os.close(self._fd)
        os.close(self._write_fd)
        self._conn.close()

    def _close_dead_sessions(self) -> int:
        sessions = [s for (s,) in self._conn.execute("SELECT DISTINCT session FROM begun")]
        return sum(self._close_session(s) for s in sessions if s != self.session and not _alive(self._folder, s))

    def _close_session(self, session: str) -> int:
        """Write an ``interrupted`` row for each begun request of ``session`` with no end; returns how many."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = [
                RequestRecord(
                    request_id=rid, ts=ts, tenant=tenant, caller=caller, task=task, model_class=model_class,
                    model=model, provider=provider, outcome="interrupted", error="interrupted",
                    error_detail=INTERRUPTED_DETAIL, attempts=attempts,
                )
                for rid, ts, tenant, caller, task, model_class, model, provider, attempts
                in conn.execute(_ORPHANS, (session,))
            ]  # fmt: skip
            conn.executemany(INSERT_REQUESTS, chunked(rows, request_row))
            conn.execute("DELETE FROM begun WHERE session = ?", (session,))
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        return len(rows)


def _claim(folder: Path) -> tuple[Path, int]:
    """A new session's lock file, created and locked; returns it and the open descriptor that holds the lock."""
    path = folder / f"{secrets.token_hex(8)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return path, fd


def _alive(folder: Path, session: str) -> bool:
    """Whether a process still holds ``session``'s lock; a dead session's lock file is removed."""
    if not session.isalnum():  # not one of ours: no lock file can vouch for it
        return False
    path = folder / f"{session}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False
    finally:
        os.close(fd)


def checkpoint(path: str, busy_timeout: float) -> None:
    """Copy the WAL into the database without holding up writers (a PASSIVE checkpoint), on its own connection."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
