"""A process that opens a ledger store, begins requests, and waits to be killed (run by tests/test_ledger_contract.py).

``python tests/ledger_session_worker.py WHERE SPOOL N``: opens the ledger at ``WHERE`` (a SQLite
path or a ``postgresql://`` URL; the URL may also come from ``$INTERLOCK_LEDGER_URL`` when
``WHERE`` is ``-``), writes ``N`` begun requests ``k-0``.. (the first two with attempts sent)
and one finished request ``k-done``, prints ``ready``, and sleeps until the test SIGKILLs it.
"""

from __future__ import annotations

import os
import sys

import anyio

from interlock._records import BeginRecord, RequestRecord
from interlock.adapters.stores._ledger_open import open_ledger_store
from interlock.policies._store_url import LEDGER_KINDS, parse_store_url


async def main(where: str, spool: str, n: int) -> None:
    text = os.environ["INTERLOCK_LEDGER_URL"] if where == "-" else where
    url = parse_store_url(text, key="ledger", allowed=LEDGER_KINDS, from_env=True)
    async with open_ledger_store(url, spool=spool) as store:
        begins = [BeginRecord(request_id=f"k-{i}", ts=1.0 + i, tenant="acme", caller="w", task="t") for i in range(n)]
        sent = [
            BeginRecord(request_id=f"k-{i}", ts=1.0 + i, tenant="acme", caller="w", task="t2", attempts=2,
                        model_class="fast", model="m2", provider="p2")
            for i in range(min(n, 2))
        ]  # fmt: skip
        done = RequestRecord(request_id="k-done", ts=0.5, tenant="acme", caller="w", task="t")
        await store.write([*begins, BeginRecord(request_id="k-done", ts=0.5, tenant="acme", caller="w", task="t")])
        await store.write([*sent, done])
        print("ready", flush=True)
        await anyio.sleep(120)  # the test kills this process long before


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
