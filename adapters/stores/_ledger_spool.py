"""The local spool of a server ledger: batches that could not reach the server, kept in a SQLite file until they can.

When PostgreSQL cannot take a batch (down, restarting, unreachable), the store appends the batch
to the spool, one row per batch, and ``append`` returns once that row is committed (WAL,
``synchronous=NORMAL``: durable against a process crash, as the embedded ledger is). So an
acknowledged answer is on disk either way. Each row keeps the session that wrote the batch, so
its begins stay that session's when replayed (by this process or, after it died, by the next
one to open a store on the same spool).

Replay takes the oldest row, writes it to the server, and deletes it only once the server has
committed it; a crash in between replays it again, and the server's natural keys skip what it
already holds: no row lost, none twice. Several processes may share one spool file (``serve
--workers N``): appends are serialized by SQLite's lock, and two replaying the same row write it
twice, harmlessly. Every method is blocking: call it from a worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from interlock._records import LedgerRecord

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS spooled ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, records BLOB NOT NULL)"
)
_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(list[LedgerRecord])


class SpooledBatch(msgspec.Struct, frozen=True):
    """One spooled batch: its place in the spool, the session that wrote it, its records."""

    seq: int
    session: str
    records: list[LedgerRecord]


class LedgerSpool:
    """The spool file at ``path``; the file is made on the first append, and left in place when it empties."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def append(self, records: Sequence[LedgerRecord], session: str) -> None:
        """Keep ``records`` (written by ``session``) as one batch; committed when this returns."""
        conn = self._connection(create=True)
        assert conn is not None
        conn.execute("INSERT INTO spooled (session, records) VALUES (?, ?)", (session, _encoder.encode(list(records))))

    def oldest(self) -> SpooledBatch | None:
        """The batch spooled first and not yet removed; None when the spool is empty."""
        conn = self._connection(create=False)
        if conn is None:
            return None
        row = conn.execute("SELECT seq, session, records FROM spooled ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        seq, session, blob = row
        return SpooledBatch(int(seq), str(session), _decoder.decode(blob))

    def remove(self, seq: int) -> None:
        """Forget batch ``seq``: the server has committed it."""
        conn = self._connection(create=False)
        if conn is not None:
            conn.execute("DELETE FROM spooled WHERE seq = ?", (seq,))

    def count(self) -> int:
        """How many batches wait in the spool."""
        conn = self._connection(create=False)
        if conn is None:
            return 0
        (n,) = conn.execute("SELECT COUNT(*) FROM spooled").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the file (what it holds stays for the next replay)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
