"""The tree behind the door: collector tuning, the breaker log's delivery, and a face that stays lazy."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
from pathlib import Path

import pytest

from interlock import Runtime
from interlock._records import BreakerRecord
from interlock.actors._breaker_log import BreakerLog
from interlock.actors._ledger_actor import Flush, LedgerActor, LedgerBuffer
from interlock.actors._tree import GcTuning
from interlock.adapters.stores._ledger_store import SqliteLedgerStore


def test_gc_tuning_holds_while_any_door_is_open_and_restores_after_the_last() -> None:
    """The first open door freezes and raises the young threshold; only the last close restores both."""
    saved = gc.get_threshold()
    tuning = GcTuning()
    try:
        gc.set_threshold(700, 10, 10)
        tuning.enter()
        tuning.enter()
        assert gc.get_threshold() == (GcTuning.YOUNG_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
        tuning.leave()
        assert gc.get_threshold()[0] == GcTuning.YOUNG_THRESHOLD  # one door is still open
        tuning.leave()
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def test_gc_tuning_never_lowers_a_higher_threshold() -> None:
    """A process that already raised the young threshold above the door's keeps its own."""
    saved = gc.get_threshold()
    tuning = GcTuning()
    try:
        gc.set_threshold(50_000, 10, 10)
        tuning.enter()
        assert gc.get_threshold()[0] == 50_000
        tuning.leave()
        assert gc.get_threshold()[0] == 50_000
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def test_importing_the_face_and_testing_loads_no_room() -> None:
    """``import interlock`` and ``interlock.testing`` import nothing of actors, adapters or policies."""
    code = (
        "import sys, interlock, interlock.testing;"
        "print(sorted(m for m in sys.modules if m.startswith('interlock')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert ast.literal_eval(out) == ["interlock", "interlock.testing"]


@pytest.mark.anyio
async def test_breaker_log_keeps_transitions_that_find_the_ledger_mailbox_full(tmp_path: Path) -> None:
    """Transitions told while the ledger's mailbox is full are kept and written by flush; none is lost."""
    path = tmp_path / "ledger.sqlite"
    records = [
        BreakerRecord(ts=1_700_000_000.0 + i, provider="p", from_state="closed", to_state="open", cause=f"c{i}")
        for i in range(3)
    ]
    async with SqliteLedgerStore(path) as store, Runtime() as rt:
        ledger = await rt.spawn(lambda: LedgerActor(store, LedgerBuffer()), name="ledger", mailbox_size=1)
        log = BreakerLog(ledger, None)
        for record in records:  # no await between them: the ledger cannot take one off its mailbox
            log(record)
        assert ledger.statistics().queued == 1  # the first went in; the others wait in the log
        await log.flush()
        await ledger.ask(Flush())
        rows = await store.breaker_transitions()
    assert sorted(r.cause for r in rows) == ["c0", "c1", "c2"]
    log(records[0])  # the ledger is gone for good: a late transition is dropped, never raised
