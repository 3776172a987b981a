"""The ledger's PostgreSQL schema: ordered migrations and the version table.

The same tables as the SQLite ledger (``_ledger_schema``), in PostgreSQL's types: the columns of
``requests``, ``attempts`` and ``breaker_transitions`` are the fields of ``RequestRecord``,
``AttemptRecord`` and ``BreakerRecord``; ``begun`` holds the latest ``BeginRecord`` of each
request still open and the ``session`` that wrote it. Migration 1 is the whole schema as SQLite's
migration 11 left it; a record field added later is a new migration here as well as there
(``tests/test_ledger_contract.py`` holds the latest state equal to the records, and its failure
prints the ``ALTER TABLE`` to append).

A database's version is the highest ``version`` in ``schema_version`` (0 when the table is
absent). Opening applies every migration above it in order, each in its own transaction under a
transaction-scoped advisory lock, re-reading the version first, so servers starting together
apply each step once. A version above ``SCHEMA_VERSION`` is refused (``LedgerSchemaTooNew``).
Migrations are history: never edit one that has shipped; append.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from interlock.adapters.stores._ledger_schema import LedgerSchemaTooNew
from interlock.adapters.stores._sqlite_migrate import Migration

# The advisory lock migrations take (one bigint key; sessions use theirs, see ``_pg_session``).
MIGRATION_LOCK: Final = 0x696E_746C_6B5F_6D67  # "intlk_mg"

_REQUESTS = """
CREATE TABLE requests (
    request_id         text             NOT NULL PRIMARY KEY,
    ts                 double precision NOT NULL,
    tenant             text             NOT NULL,
    caller             text             NOT NULL,
    task               text             NOT NULL,
    model_class        text             NOT NULL DEFAULT '',
    model              text             NOT NULL DEFAULT '',
    provider           text             NOT NULL DEFAULT '',
    outcome            text             NOT NULL,
    input_tokens       bigint           NOT NULL DEFAULT 0,
    output_tokens      bigint           NOT NULL DEFAULT 0,
    cache_read_tokens  bigint           NOT NULL DEFAULT 0,
    cache_write_tokens bigint           NOT NULL DEFAULT 0,
    cost_cents         double precision NOT NULL DEFAULT 0,
    ttft_ms            double precision,
    ttlt_ms            double precision,
    error              text,
    error_detail       text             NOT NULL DEFAULT '',
    degraded           boolean          NOT NULL DEFAULT false,
    degraded_reason    text,
    hedged             boolean          NOT NULL DEFAULT false,
    attempts           bigint           NOT NULL DEFAULT 0,
    cache_hit          boolean          NOT NULL DEFAULT false,
    verdict            text,
    route_label        text,
    route_detail       text             NOT NULL DEFAULT '',
    first_choice       text             NOT NULL DEFAULT '',
    served_model       text             NOT NULL DEFAULT '',
    skipped            text             NOT NULL DEFAULT '',
    usage_estimated    boolean          NOT NULL DEFAULT false,
    aux_cost_cents     double precision NOT NULL DEFAULT 0,
    operation          text             NOT NULL DEFAULT 'chat',
    pii_detected       text             NOT NULL DEFAULT ''
)
"""

_ATTEMPTS = """
CREATE TABLE attempts (
    request_id             text             NOT NULL,
    attempt                bigint           NOT NULL,
    ts                     double precision NOT NULL,
    tenant                 text             NOT NULL,
    caller                 text             NOT NULL,
    task                   text             NOT NULL,
    model_class            text             NOT NULL,
    model                  text             NOT NULL,
    provider               text             NOT NULL,
    outcome                text             NOT NULL,
    input_tokens           bigint           NOT NULL DEFAULT 0,
    output_tokens          bigint           NOT NULL DEFAULT 0,
    cache_read_tokens      bigint           NOT NULL DEFAULT 0,
    cache_write_tokens     bigint           NOT NULL DEFAULT 0,
    cost_cents             double precision NOT NULL DEFAULT 0,
    ttft_ms                double precision,
    ttlt_ms                double precision,
    error                  text,
    error_detail           text             NOT NULL DEFAULT '',
    status                 bigint,
    finish_reason          text,
    hedge                  boolean          NOT NULL DEFAULT false,
    cancel_reason          text,
    cache_hit              boolean          NOT NULL DEFAULT false,
    verdict                text,
    start_ms               double precision,
    duration_ms            double precision,
    usage_estimated        boolean          NOT NULL DEFAULT false,
    skipped_events         bigint           NOT NULL DEFAULT 0,
    purpose                text             NOT NULL DEFAULT '',
    served_model           text             NOT NULL DEFAULT '',
    provider_finish_reason text             NOT NULL DEFAULT '',
    operation              text             NOT NULL DEFAULT 'chat',
    batch_id               text             NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, attempt)
)
"""

_BEGUN = """
CREATE TABLE begun (
    request_id  text             NOT NULL PRIMARY KEY,
    ts          double precision NOT NULL,
    tenant      text             NOT NULL,
    caller      text             NOT NULL,
    task        text             NOT NULL,
    attempts    bigint           NOT NULL DEFAULT 0,
    model_class text             NOT NULL DEFAULT '',
    model       text             NOT NULL DEFAULT '',
    provider    text             NOT NULL DEFAULT '',
    session     text             NOT NULL
)
"""

_BREAKERS = """
CREATE TABLE breaker_transitions (
    ts         double precision NOT NULL,
    provider   text             NOT NULL,
    from_state text             NOT NULL,
    to_state   text             NOT NULL,
    cause      text             NOT NULL,
    PRIMARY KEY (provider, ts, from_state, to_state)
)
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "the ledger as SQLite's schema 11 holds it: requests, attempts, begun requests, breaker transitions",
        (
            "CREATE TABLE schema_version (version integer NOT NULL PRIMARY KEY, summary text NOT NULL)",
            _REQUESTS,
            _ATTEMPTS,
            _BEGUN,
            "CREATE INDEX begun_session ON begun (session)",
            _BREAKERS,
            "CREATE INDEX breaker_transitions_ts ON breaker_transitions (ts)",
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
)

SCHEMA_VERSION: Final[int] = MIGRATIONS[-1].version


def read_version(conn: psycopg.Connection[Any]) -> int:
    """The database's ledger schema version: the highest applied migration, 0 for a new database."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection[Any], shown: str, *, upto: int = SCHEMA_VERSION) -> int:
    """Apply every migration above the database's version up to ``upto``; return the version reached.

    ``shown`` (the password-free URL) names the database in a ``LedgerSchemaTooNew``.
    """
    found = read_version(conn)
    if found > SCHEMA_VERSION:
        raise LedgerSchemaTooNew(shown, found, SCHEMA_VERSION)
    for step in MIGRATIONS:
        if step.version > upto:
            break
        if step.version <= found:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            # Another server may have applied this step since the read above: re-check under the lock.
            if read_version(conn) < step.version:
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, summary) VALUES (%s, %s)", (step.version, step.summary)
                )
    return read_version(conn)
