"""Open the ledger store a ``StoreUrl`` names: the embedded SQLite file, or a PostgreSQL server.

``open_ledger_store`` is what a door opens (``actors/_tree.py``); ``report_ledger_url`` and
``open_ledger_for_report`` are what ``interlock report`` uses: the ``--ledger`` argument (a path
or a URL), else ``$INTERLOCK_LEDGER_URL``, else the config's ``[ledger] url``, else its path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from interlock._errors import ConfigError
from interlock.adapters.stores._ledger_store import LedgerStore, SqliteLedgerStore
from interlock.policies._store_url import LEDGER_ENV, LEDGER_KINDS, StoreUrl, parse_store_url, resolve_store_url

if TYPE_CHECKING:
    from interlock.adapters.stores._pg_ledger import PostgresLedgerStore

DEFAULT_SPOOL = "interlock.sqlite-spool"  # beside the default embedded ledger file, in the working directory


def postgres_store(where: StoreUrl, spool: str | Path | None) -> PostgresLedgerStore:
    """A ``PostgresLedgerStore`` for ``where``; psycopg is imported only now (it is the ``postgres`` extra)."""
    try:
        from interlock.adapters.stores._pg_ledger import PostgresLedgerStore
    except ImportError as exc:
        raise ConfigError(
            "ledger.url", f"a PostgreSQL ledger needs psycopg: pip install 'interlock[postgres]' ({exc})"
        ) from None
    return PostgresLedgerStore(where, spool=spool)


@contextlib.asynccontextmanager
async def open_ledger_store(where: StoreUrl, *, spool: str | Path | None = None) -> AsyncIterator[LedgerStore]:
    """The ledger store at ``where``, open for the block and closed after it (flushed first).

    For a PostgreSQL ledger, ``spool`` is the local SQLite file batches go to while the server is
    down (default ``interlock.sqlite-spool`` in the working directory).
    """
    if where.kind == "sqlite":
        async with SqliteLedgerStore(where.path) as store:
            yield store
        return
    if where.kind == "postgresql":
        async with postgres_store(where, DEFAULT_SPOOL if spool is None else spool) as pg:
            yield pg
        return
    raise ConfigError("ledger.url", f"no {where.kind} ledger store in this build")


def report_ledger_url(
    ledger: str | None, *, configured_url: str | None, configured_path: str | None, environ: Mapping[str, str]
) -> StoreUrl:
    """The ledger a report reads: ``ledger`` (``--ledger``, a path or URL), else ``$INTERLOCK_LEDGER_URL``,
    else the config's ``[ledger] url``, else its ``path``, else ``interlock.sqlite``.
    """
    if ledger is not None:
        return parse_store_url(ledger, key="--ledger", allowed=LEDGER_KINDS, from_env=True)
    found = resolve_store_url(
        configured_url=configured_url, configured_path=configured_path, environ=environ, env=LEDGER_ENV,
        key="ledger.url", allowed=LEDGER_KINDS,
    )  # fmt: skip
    return found or parse_store_url("interlock.sqlite", key="--ledger", allowed=("sqlite",))


@contextlib.asynccontextmanager
async def open_ledger_for_report(where: StoreUrl) -> AsyncIterator[LedgerStore]:
    """The ledger at ``where`` opened to be read: a PostgreSQL ledger without a spool (a report writes nothing)."""
    if where.kind == "postgresql":
        async with postgres_store(where, None) as store:
            yield store
        return
    async with open_ledger_store(where) as found:
        yield found
