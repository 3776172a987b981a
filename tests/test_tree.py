"""The tree behind the door: collector tuning is held while doors are open, and the face stays lazy."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys

from interlock.actors._tree import GcTuning


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
