"""The ledger's SQLite schema: ordered migrations, the version table, and the store's typed errors.

A file's version is the highest ``version`` in its ``schema_version`` table (0 when the table is
absent: a new, empty file). Opening applies every migration above that version in order, each in
its own ``BEGIN IMMEDIATE`` transaction that re-reads the version first, so two processes opening
the same file at once apply each step exactly once. A file whose version is above
``SCHEMA_VERSION`` was written by a newer interlock and is refused with ``LedgerSchemaTooNew``:
an older program must not write rows into columns it does not know.

Migrations are history: never edit one that has shipped; append a new one instead. The columns
of ``requests``, ``attempts`` and ``breaker_transitions`` mirror the fields of ``RequestRecord``,
``AttemptRecord`` and ``BreakerRecord`` one to one (a test keeps them in step); ``begun`` holds
the latest ``BeginRecord`` of each request still open, with the ``session`` (one store's lifetime
in one process) that wrote it (the columns added by migration 8 come after ``session``). The
ledger holds no metadata blobs, so it can never hold a secret.
"""

from __future__ import annotations

import sqlite3
from typing import Final, final

from interlock._errors import ErrorClass, InterlockError
from interlock.adapters.stores._sqlite_migrate import Migration, apply_migrations
from interlock.adapters.stores._sqlite_migrate import read_version as _read_version


class LedgerStoreError(InterlockError):
    """The ledger file could not be opened, migrated, read or written; ``path`` and ``problem`` say why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"ledger {path}: {problem}", kind=ErrorClass.INTERNAL)
        self.path = path
        self.problem = problem


@final
class LedgerSchemaTooNew(LedgerStoreError):
    """The file's schema version is newer than this program knows; upgrade interlock to open it."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(path, f"schema version {found} is newer than the supported {supported}")
        self.found = found
        self.supported = supported


_REQUESTS_V1 = """
CREATE TABLE requests (
    request_id         TEXT    NOT NULL PRIMARY KEY,
    ts                 REAL    NOT NULL,
    tenant             TEXT    NOT NULL,
    caller             TEXT    NOT NULL,
    task               TEXT    NOT NULL,
    model_class        TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    outcome            TEXT    NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_cents         REAL    NOT NULL,
    ttft_ms            REAL,
    ttlt_ms            REAL,
    error              TEXT,
    error_detail       TEXT    NOT NULL,
    degraded           INTEGER NOT NULL,
    degraded_reason    TEXT,
    hedged             INTEGER NOT NULL,
    attempts           INTEGER NOT NULL,
    cache_hit          INTEGER NOT NULL,
    verdict            TEXT
)
"""

_ATTEMPTS_V1 = """
CREATE TABLE attempts (
    request_id         TEXT    NOT NULL,
    attempt            INTEGER NOT NULL,
    ts                 REAL    NOT NULL,
    tenant             TEXT    NOT NULL,
    caller             TEXT    NOT NULL,
    task               TEXT    NOT NULL,
    model_class        TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    outcome            TEXT    NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_cents         REAL    NOT NULL,
    ttft_ms            REAL,
    ttlt_ms            REAL,
    error              TEXT,
    error_detail       TEXT    NOT NULL,
    status             INTEGER,
    finish_reason      TEXT,
    hedge              INTEGER NOT NULL,
    cancel_reason      TEXT,
    cache_hit          INTEGER NOT NULL,
    verdict            TEXT,
    PRIMARY KEY (request_id, attempt)
)
"""

# What earlier dashboards added to the ledger file (now in the dashboard's own database: ``_summary``).
_OLD_DASHBOARD_INDEXES: Final = (
    "requests_ttft", "requests_ttlt", "requests_hour_ttft", "requests_day_ttft", "attempts_request", "requests_cost",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "requests and attempts tables, one column per record field",
        (
            "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, summary TEXT NOT NULL)",
            _REQUESTS_V1,
            _ATTEMPTS_V1,
        ),
    ),
    Migration(
        2,
        "indexes for the report's filters: time, task, tenant",
        (
            "CREATE INDEX requests_ts ON requests (ts)",
            "CREATE INDEX requests_task_ts ON requests (task, ts)",
            "CREATE INDEX requests_tenant_ts ON requests (tenant, ts)",
            "CREATE INDEX attempts_ts ON attempts (ts)",
            "CREATE INDEX attempts_task_ts ON attempts (task, ts)",
            "CREATE INDEX attempts_tenant_ts ON attempts (tenant, ts)",
        ),
    ),
    Migration(
        3,
        "classifier routing: the label, the features and the chosen chain of a request",
        (
            "ALTER TABLE requests ADD COLUMN route_label TEXT",
            "ALTER TABLE requests ADD COLUMN route_detail TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        4,
        "when each attempt ran: start offset from its request's start, and duration",
        (
            "ALTER TABLE attempts ADD COLUMN start_ms REAL",
            "ALTER TABLE attempts ADD COLUMN duration_ms REAL",
        ),
    ),
    Migration(
        5,
        "attempt usage estimated from the delivered text, and malformed stream events skipped",
        (
            "ALTER TABLE attempts ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE attempts ADD COLUMN skipped_events INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        6,
        "requests begun and not yet ended, by the session that began them",
        (
            """
            CREATE TABLE begun (
                request_id TEXT NOT NULL PRIMARY KEY,
                ts         REAL NOT NULL,
                tenant     TEXT NOT NULL,
                caller     TEXT NOT NULL,
                task       TEXT NOT NULL,
                session    TEXT NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        7,
        "circuit-breaker transitions",
        (
            """
            CREATE TABLE breaker_transitions (
                ts         REAL NOT NULL,
                provider   TEXT NOT NULL,
                from_state TEXT NOT NULL,
                to_state   TEXT NOT NULL,
                cause      TEXT NOT NULL,
                PRIMARY KEY (provider, ts, from_state, to_state)
            )
            """,
            "CREATE INDEX breaker_transitions_ts ON breaker_transitions (ts)",
        ),
    ),
    Migration(
        8,
        "what a begun request had started: its attempts, and the model and provider of the latest",
        (
            "ALTER TABLE begun ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE begun ADD COLUMN model_class TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE begun ADD COLUMN model TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE begun ADD COLUMN provider TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        9,
        "truthful answers: auxiliary calls' purpose, the model the provider says answered, the"
        " provider's own finish reason, the first choice, skipped candidates, estimated usage",
        (
            "ALTER TABLE attempts ADD COLUMN purpose TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE attempts ADD COLUMN served_model TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE attempts ADD COLUMN provider_finish_reason TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN first_choice TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN served_model TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN skipped TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE requests ADD COLUMN aux_cost_cents REAL NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        10,
        "the operation of each request and attempt: chat, or embed",
        (
            "ALTER TABLE requests ADD COLUMN operation TEXT NOT NULL DEFAULT 'chat'",
            "ALTER TABLE attempts ADD COLUMN operation TEXT NOT NULL DEFAULT 'chat'",
        ),
    ),
    Migration(
        11,
        "evidence: the provider batch an attempt went in, the PII detectors that fired on a request",
        (
            "ALTER TABLE attempts ADD COLUMN batch_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN pii_detected TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        12,
        "no dashboard index in the ledger: each cost every write a b-tree insert; the dashboard keeps its own",
        tuple(f"DROP INDEX IF EXISTS dashboard_{name}" for name in _OLD_DASHBOARD_INDEXES),
    ),
    Migration(
        13,
        "the time index alone on requests and attempts: the (task, ts) and (tenant, ts) ones cost every write"
        " a fifth of its time and served only filtered reports, which the time index serves too",
        tuple(
            f"DROP INDEX IF EXISTS {table}_{key}_ts" for table in ("requests", "attempts") for key in ("task", "tenant")
        ),
    ),
)

SCHEMA_VERSION: Final[int] = MIGRATIONS[-1].version


def read_version(conn: sqlite3.Connection) -> int:
    """The file's ledger schema version: the highest applied migration, 0 for a new file."""
    return _read_version(conn, "schema_version")


def migrate(conn: sqlite3.Connection, path: str, *, upto: int = SCHEMA_VERSION) -> int:
    """Apply every migration above the file's version up to ``upto``; return the version reached."""
    found = read_version(conn)
    if found > SCHEMA_VERSION:
        raise LedgerSchemaTooNew(path, found, SCHEMA_VERSION)
    return apply_migrations(conn, MIGRATIONS, "schema_version", upto)
