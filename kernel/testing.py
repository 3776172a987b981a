"""Helpers for testing code that calls through interlock, and for chaos-testing routing configs.

::

    from interlock.testing import FakeClock, RateLimit, StallFirstToken, read_ledger

    async with interlock.open("my-routing.toml", ledger_path=tmp / "l.sqlite") as door:
        door.simulator.script("sim-fast-1", [RateLimit(retry_after=1), StallFirstToken(5)])
        reply = await door.ask("hi", task="cheap_bulk")
        assert reply.route.degraded
    requests, attempts = await read_ledger(tmp / "l.sqlite")

Names resolve lazily, like the package face, so importing this module costs nothing.

This module is the kernel's one allowed reach into the rooms above it (with the package face,
``interlock/__init__.py``, which re-exports the door the same way): users' tests need the
simulator and the ledger from one import, so it re-exports the simulator and its fault types
from ``interlock.adapters.simulator._server``, and ``read_ledger`` imports the SQLite ledger
store inside the function. Both stay lazy: importing ``interlock.testing`` imports nothing above
the kernel (``tests/test_tree.py::test_importing_the_face_and_testing_loads_no_room`` holds
that), and the imports under ``TYPE_CHECKING`` are for type checkers only.
Nothing else in the kernel imports ``actors``, ``adapters`` or ``policies``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "FakeClock": "interlock._clock",
    "Simulator": "interlock.adapters.simulator._server",
    "SimConfig": "interlock.adapters.simulator._server",
    "Behaviour": "interlock.adapters.simulator._server",
    "Outage": "interlock.adapters.simulator._server",
    "Chance": "interlock.adapters.simulator._server",
    "Normal": "interlock.adapters.simulator._server",
    "RateLimit": "interlock.adapters.simulator._server",
    "ServerError": "interlock.adapters.simulator._server",
    "Unavailable": "interlock.adapters.simulator._server",
    "Overloaded": "interlock.adapters.simulator._server",
    "Reset": "interlock.adapters.simulator._server",
    "StallHeaders": "interlock.adapters.simulator._server",
    "StallFirstToken": "interlock.adapters.simulator._server",
    "Drop": "interlock.adapters.simulator._server",
    "Malformed": "interlock.adapters.simulator._server",
    "FAKE_CLI": "interlock.adapters.simulator._fake_cli",
}

__all__ = [*_EXPORTS, "read_ledger"]

if TYPE_CHECKING:
    from interlock._clock import FakeClock as FakeClock
    from interlock._records import AttemptRecord as AttemptRecord
    from interlock._records import RequestRecord as RequestRecord
    from interlock.adapters.simulator._fake_cli import FAKE_CLI as FAKE_CLI
    from interlock.adapters.simulator._server import (
        Behaviour as Behaviour,
    )
    from interlock.adapters.simulator._server import (
        Chance as Chance,
    )
    from interlock.adapters.simulator._server import (
        Drop as Drop,
    )
    from interlock.adapters.simulator._server import (
        Malformed as Malformed,
    )
    from interlock.adapters.simulator._server import (
        Normal as Normal,
    )
    from interlock.adapters.simulator._server import (
        Outage as Outage,
    )
    from interlock.adapters.simulator._server import (
        Overloaded as Overloaded,
    )
    from interlock.adapters.simulator._server import (
        RateLimit as RateLimit,
    )
    from interlock.adapters.simulator._server import (
        Reset as Reset,
    )
    from interlock.adapters.simulator._server import (
        ServerError as ServerError,
    )
    from interlock.adapters.simulator._server import (
        SimConfig as SimConfig,
    )
    from interlock.adapters.simulator._server import (
        Simulator as Simulator,
    )
    from interlock.adapters.simulator._server import (
        StallFirstToken as StallFirstToken,
    )
    from interlock.adapters.simulator._server import (
        StallHeaders as StallHeaders,
    )
    from interlock.adapters.simulator._server import (
        Unavailable as Unavailable,
    )


async def read_ledger(path: str | Path) -> tuple[list[RequestRecord], list[AttemptRecord]]:
    """Every request and attempt record in the ledger file at ``path``, oldest first."""
    from interlock.adapters.stores._ledger_store import SqliteLedgerStore

    async with SqliteLedgerStore(path) as store:
        return await store.fetch_requests(), await store.fetch_attempts()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interlock.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
