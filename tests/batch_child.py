"""A child process for the batch resumability test: ``python tests/batch_child.py LEDGER MODE``.

Both modes send the same ``INPUTS`` through ``door.batch`` on the embedded fleet and print the
batch id. ``hang`` then waits forever (the test SIGKILLs it while its batch runs); ``resume``
collects and prints one JSON line: each item's outcome, in input order.
"""

from __future__ import annotations

import sys

import anyio
import msgspec

import interlock
from interlock.policies._batch_poll import BatchPolling

INPUTS = [f"resumable batch item {n}" for n in range(5)]


async def main(ledger: str, mode: str) -> None:
    async with interlock.open(ledger_path=ledger) as door:
        run = door.batch(INPUTS, task="cheap_bulk", poll=BatchPolling(first_s=0.05, max_s=0.2, timeout_s=60))
        print(await run.submit(), flush=True)
        if mode == "hang":
            await anyio.sleep_forever()
        results = await run.collect()
        outcomes = ["ok" if isinstance(r, interlock.ChatResponse) else str(r) for r in results]
        print(msgspec.json.encode(outcomes).decode(), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
