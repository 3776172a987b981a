"""Who holds a lease: this process's identity, and whether the process behind another identity still runs.

A lease row records its holder as ``(host, pid, start)``. ``host`` names the processes that can
judge each other's pids: on Linux the kernel's boot id and the pid namespace (two containers
sharing a state file on one kernel see different pids, so neither judges the other's); ``start``
is the process's start time in clock ticks since boot, so a pid reused by a later process is not
taken for the holder. A holder that no longer runs (gone, a zombie, or its pid reused) holds
nothing: its leases are free at once instead of after their TTL.

Without ``/proc`` (macOS, BSD) the host is the hostname and ``start`` is 0: a pid that no longer
exists is dead; a pid that exists counts as alive, so a reused pid only costs the old wait for
the TTL, never a slot taken twice. Identities from another host are never judged.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Final, final

import msgspec

_PROC: Final = "/proc"
_DEAD_STATES: Final = frozenset("ZXx")  # zombie, dead: exited, not yet reaped by its parent
_cache: dict[int, Holder] = {}  # by pid: a forked child computes its own


@final
class Holder(msgspec.Struct, frozen=True):
    """One process, as a lease row records it."""

    host: str
    pid: int
    start: int


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and start time (ticks since boot) of ``pid`` from ``/proc/<pid>/stat``."""
    text = _read(f"{_PROC}/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": split after the last.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (IndexError, ValueError):
        return None


def this_process() -> Holder:
    """The identity this process records on the leases it takes."""
    pid = os.getpid()
    found = _cache.get(pid)
    if found is None:
        found = _cache[pid] = _identify(pid)
    return found


def _identify(pid: int) -> Holder:
    boot = _read(f"{_PROC}/sys/kernel/random/boot_id")
    stat = _stat(pid)
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = os.readlink(f"{_PROC}/self/ns/pid")
    if boot is None or stat is None:
        return Holder(f"host:{socket.gethostname()}", pid, 0)
    return Holder(f"linux:{boot.strip()}:{namespace}", pid, stat[1])


def is_running(holder: Holder) -> bool:
    """Whether ``holder`` may still run; False only when it certainly does not (same host only)."""
    me = this_process()
    if holder.host != me.host or holder.host == "" or holder.pid <= 0:
        return True  # another host's (or an unknown) pid means nothing here
    if holder.pid == me.pid:
        return holder.start == me.start
    if me.start == 0:
        return _exists(holder.pid)
    stat = _stat(holder.pid)
    return stat is not None and stat[0] not in _DEAD_STATES and stat[1] == holder.start


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, under another user
    return True
