"""Ledger throughput and the group commit: producers telling records into a real LedgerActor on SQLite.

Run: ``python benchmarks/ledger.py``. ``--producers`` tasks (default 32) tell ``RequestRecord``s
with time-ordered ids (``new_request_id``) into a ``LedgerActor`` over a ``SqliteLedgerStore``
file in a temp dir, spawned with ``interlock.Runtime``. Each ``tell`` is timed: that is the wait
a producer feels (enqueue, plus backpressure when the mailbox is full). The producers take their
records from one shared sequence, so records arrive in the order of their ids, as a live ledger
sees them (a request takes its time-ordered id when it enters).

Four runs share the store's baseline. Each runs under the collector settings a door applies
while it is open (``GC_TUNING``), as a door's ledger does:

- flat out: producers tell as fast as they can; ``records_per_s`` is every record *written*
  (the clock stops when the last batch is on disk), i.e. the rate the ledger sustains;
- paced: producers offer ``--rate`` records/s (default 50,000) in 5 ms slices; its p99 tell
  wait is ``p99_enqueue_ms``, and it reports whether the ledger kept up (records pending at
  the end of the offered load, the drain time after it, and ``paced_kept_up``: the rate was
  offered and written to the end within 5%);
- durable flat out: ``--concurrency`` request loops (default 256) each do what a request does:
  tell its ``BeginRecord`` at entry, then its attempt and request rows with a commit slot, and
  wait for the commit (``tell_records`` / ``wait_committed``, the group commit a request's final
  event waits for); ``durable_records_per_s`` counts all three records;
- durable paced: the same requests offered at ``--durable-rate`` requests/s (default 2,000);
  the commit wait is what the final event of a stream gains: ``final_event_p50_ms`` /
  ``final_event_p99_ms``. Its baseline, in the same run and the same load, is the plain tell a
  request made before (no wait): ``baseline_final_event_p99_ms``.

Baseline: the same number of records written straight to the store in the actor's write size
(``4 x batch_size``), one batch after another: the store's own ceiling. Targets: >= 100,000
records/s flat out (tell and durable), p99 enqueue wait < 1 ms while the ledger keeps up, and the
final event's added p99 under 10 ms at the durable rate. The last line is one JSON object.

Also reported, beside the targets: CPU per record (this process, all threads: the store's worker
thread counts) of the store alone and of each run; and the paced run's event-loop lag, how late
a paced producer wakes from its sleep (p99, max). A ``tell`` with room in the mailbox does not
yield, so its wait cannot show the loop being held up (by the ledger's work on the loop or by its
worker thread holding the GIL); the lag does. ``--load N`` runs N CPU-burning processes meanwhile,
to see the figures on a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
from _common import percentile, temp_dir

from interlock import AttemptRecord, RealClock, RequestRecord, Runtime
from interlock._actor import ActorRef
from interlock._records import BeginRecord
from interlock.actors._ledger_actor import (
    Flush,
    LedgerActor,
    LedgerBuffer,
    LedgerMsg,
    Records,
    tell_records,
    wait_committed,
)
from interlock.actors._router_actor import new_request_id
from interlock.actors._tree import GC_TUNING
from interlock.adapters.stores._ledger_store import SqliteLedgerStore

TENANTS = ("acme", "globex", "initech", "umbrella")
TASKS = ("cheap_bulk", "default", "hard_reasoning", "review")
PACE_SLICE_S = 0.005  # a paced producer sleeps once it is this far ahead: few timers, small bursts


def make_records(n: int, clock: RealClock) -> list[RequestRecord]:
    """``n`` realistic request records with time-ordered ids (one millisecond apart at most)."""
    wall = clock.wall()
    return [
        RequestRecord(
            request_id=new_request_id(wall + i / 1_000_000),
            ts=wall + i / 1_000_000,
            tenant=TENANTS[i % 4],
            caller="bench",
            task=TASKS[i % 4],
            model_class="fast",
            model="mini",
            provider="sim_openai",
            input_tokens=120 + i % 50,
            output_tokens=20 + i % 30,
            cost_cents=0.0041,
            ttft_ms=38.5 + i % 7,
            ttlt_ms=92.0 + i % 11,
            attempts=1,
        )
        for i in range(n)
    ]


class Run(msgspec.Struct, frozen=True):
    """One ledger run: records, seconds until all were told and written, tell waits, pending, loop lags, CPU."""

    n: int
    produce_s: float
    written_s: float
    waits: list[float]
    pending: int
    lags: list[float]
    cpu_s: float

    def figures(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}records_per_s": self.n / self.written_s,
            f"{prefix}offered_per_s": self.n / self.produce_s,
            f"{prefix}p50_enqueue_ms": percentile(self.waits, 50) * 1000,
            f"{prefix}p99_enqueue_ms": percentile(self.waits, 99) * 1000,
            f"{prefix}max_enqueue_ms": max(self.waits) * 1000,
            f"{prefix}pending_at_end": float(self.pending),
            f"{prefix}drain_ms": (self.written_s - self.produce_s) * 1000,
            f"{prefix}cpu_us_per_record": self.cpu_s / self.n * 1e6,
            f"{prefix}p99_loop_lag_ms": percentile(self.lags, 99) * 1000,
            f"{prefix}max_loop_lag_ms": max(self.lags, default=0.0) * 1000,
        }


async def ledger_run(
    path: Path, records: Sequence[RequestRecord], producers: int, rate: float | None, batch: int, flush_s: float
) -> Run:
    """Tell ``records`` from ``producers`` tasks (paced at ``rate``/s if given) and wait until all are written."""
    GC_TUNING.enter()  # the collector as a door sets it, as in ``durable_run``: a door's ledger runs under it
    try:
        return await _ledger_run(path, records, producers, rate, batch, flush_s)
    finally:
        GC_TUNING.leave()


async def _ledger_run(
    path: Path, records: Sequence[RequestRecord], producers: int, rate: float | None, batch: int, flush_s: float
) -> Run:
    waits: list[float] = []
    lags: list[float] = []
    cpu = time.process_time()
    async with SqliteLedgerStore(path) as store, Runtime() as rt:
        buffer = LedgerBuffer()
        ledger = await rt.spawn(
            lambda: LedgerActor(store, buffer, batch_size=batch, flush_interval_s=flush_s), name="ledger",
            shutdown=60.0,
        )
        shared = enumerate(records)  # one sequence: records arrive in the order of their ids
        start = time.perf_counter()

        async def produce() -> None:
            for i, record in shared:
                if rate:
                    due = start + i / rate  # this record's slot in the offered load
                    ahead = due - time.perf_counter()
                    if ahead > PACE_SLICE_S:
                        await anyio.sleep(ahead)
                        lags.append(max(time.perf_counter() - due, 0.0))
                t0 = time.perf_counter()
                await ledger.tell(record)
                waits.append(time.perf_counter() - t0)

        async with anyio.create_task_group() as tg:
            for _ in range(producers):
                tg.start_soon(produce)
        produced = time.perf_counter()
        pending = buffer.statistics().pending
        await ledger.ask(Flush(), timeout=120.0)
        written = time.perf_counter()
        cpu = time.process_time() - cpu
        stats = buffer.statistics()
        if stats.written != len(records) or stats.pending:
            raise RuntimeError(f"the ledger lost records: {stats}")
    async with SqliteLedgerStore(path) as store:
        stored = await store.count_requests()
    if stored != len(records):
        raise RuntimeError(f"{stored} records in the file, {len(records)} told")
    return Run(len(records), produced - start, written - start, waits, pending, lags, cpu)


Request = tuple[BeginRecord, tuple[AttemptRecord, RequestRecord]]


def make_requests(n: int, clock: RealClock) -> list[Request]:
    """``n`` requests as a request records them: its begin, then its attempt and request rows."""
    out: list[Request] = []
    for r in make_records(n, clock):
        begin = BeginRecord(request_id=r.request_id, ts=r.ts, tenant=r.tenant, caller=r.caller, task=r.task)
        attempt = AttemptRecord(
            request_id=r.request_id, attempt=0, ts=r.ts, tenant=r.tenant, caller=r.caller, task=r.task,
            model_class=r.model_class, model=r.model, provider=r.provider, outcome="ok",
            input_tokens=r.input_tokens, output_tokens=r.output_tokens, cost_cents=r.cost_cents,
            ttft_ms=r.ttft_ms, ttlt_ms=r.ttlt_ms, start_ms=0.5, duration_ms=r.ttlt_ms,
        )  # fmt: skip
        out.append((begin, (attempt, r)))
    return out


class DurableRun(msgspec.Struct, frozen=True):
    """One run of request loops: records written, seconds until all were, and each request's end wait."""

    records: int
    seconds: float
    waits: list[float]


async def durable_run(
    path: Path, requests: Sequence[Request], concurrency: int, rate: float | None, request_s: float,
    settle: bool, batch: int, flush_s: float,
) -> DurableRun:
    """``concurrency`` loops each begin a request, let it run ``request_s``, then record its end.

    With ``settle`` the end waits for its commit, as a request's final event does; without, it
    is a plain tell (what a request did before the group commit). Each end's wait is timed.
    """
    waits: list[float] = []
    GC_TUNING.enter()  # the collector as a door sets it (the records made up front count as start-up objects)
    try:
        run = await _durable_run(path, requests, concurrency, rate, request_s, settle, batch, flush_s, waits)
    finally:
        GC_TUNING.leave()
    return run


async def _durable_run(
    path: Path, requests: Sequence[Request], concurrency: int, rate: float | None, request_s: float,
    settle: bool, batch: int, flush_s: float, waits: list[float],
) -> DurableRun:
    async with SqliteLedgerStore(path) as store, Runtime() as rt:
        buffer = LedgerBuffer()
        ledger: ActorRef[LedgerMsg] = await rt.spawn(
            lambda: LedgerActor(store, buffer, batch_size=batch, flush_interval_s=flush_s), name="ledger",
            shutdown=60.0,
        )
        shared = enumerate(requests)
        start = time.perf_counter()

        async def request_loop() -> None:
            for i, (begin, rows) in shared:
                if rate:
                    ahead = start + i / rate - time.perf_counter()
                    if ahead > 0:
                        await anyio.sleep(ahead)
                await ledger.tell(begin)
                if request_s:
                    await anyio.sleep(request_s)
                t0 = time.perf_counter()
                if settle:
                    await wait_committed(await tell_records(ledger, rows))
                else:
                    await ledger.tell(Records(rows))
                waits.append(time.perf_counter() - t0)
                if not request_s and not settle:
                    # A plain tell need not yield: let the other loops' requests interleave. (A
                    # commit wait always yields; a checkpoint after it was 3% of the run's CPU.)
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(request_loop)
        await ledger.ask(Flush(), timeout=120.0)
        elapsed = time.perf_counter() - start
    async with SqliteLedgerStore(path) as store:
        stored = await store.count_requests()
        begun = await store.count_begun()
    if stored != len(requests) or begun:
        raise RuntimeError(f"{stored} request rows and {begun} begun rows for {len(requests)} requests")
    return DurableRun(3 * len(requests), elapsed, waits)


async def store_run(path: Path, records: Sequence[RequestRecord], chunk: int) -> tuple[float, float]:
    """Write ``records`` straight to the store in chunks; returns records/s and CPU microseconds per record."""
    async with SqliteLedgerStore(path) as store:
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(records), chunk):
            await store.write(records[i : i + chunk])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if await store.count_requests() != len(records):
            raise RuntimeError("the store baseline lost records")
    return len(records) / elapsed, cpu / len(records) * 1e6


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[None]:
    """``processes`` CPU-burning child processes for the duration of the block."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    clock = RealClock()
    results: dict[str, Any] = {}
    with temp_dir() as workdir, background_load(args.load):
        baseline, store_cpu = 0.0, float("inf")
        flat: Run | None = None
        paced: Run | None = None
        durable: DurableRun | None = None
        finals: dict[bool, DurableRun] = {}
        for r in range(args.rounds):  # best of N; a fresh file and fresh ids each time
            records = make_records(args.records, clock)
            rate, cpu = await store_run(workdir / f"store-{r}.sqlite", records, 4 * args.batch)
            baseline, store_cpu = max(baseline, rate), min(store_cpu, cpu)
            records = make_records(args.records, clock)
            run = await ledger_run(
                workdir / f"flat-{r}.sqlite", records, args.producers, None, args.batch, args.flush_ms / 1000
            )
            flat = run if flat is None or run.written_s < flat.written_s else flat
            records = make_records(min(args.records, int(args.rate * args.paced_seconds)), clock)
            run = await ledger_run(
                workdir / f"paced-{r}.sqlite", records, args.producers, args.rate, args.batch, args.flush_ms / 1000
            )
            paced = run if paced is None or percentile(run.waits, 99) < percentile(paced.waits, 99) else paced
            run_d = await durable_run(
                workdir / f"durable-{r}.sqlite", make_requests(args.records // 3, clock), args.concurrency, None, 0.0,
                True, args.batch, args.flush_ms / 1000,
            )
            durable = run_d if durable is None or run_d.seconds < durable.seconds else durable
            n_paced = max(1, int(args.durable_rate * args.durable_seconds))
            for settle in (False, True):
                run_d = await durable_run(
                    workdir / f"final-{settle}-{r}.sqlite", make_requests(n_paced, clock), args.concurrency,
                    args.durable_rate, args.request_ms / 1000, settle, args.batch, args.flush_ms / 1000,
                )
                best = finals.get(settle)
                if best is None or percentile(run_d.waits, 99) < percentile(best.waits, 99):
                    finals[settle] = run_d
    assert flat is not None
    assert paced is not None
    assert durable is not None
    results.update(flat.figures(""))
    results["flat_out_p99_enqueue_ms"] = results.pop("p99_enqueue_ms")
    results.update(paced.figures("paced_"))
    results["p99_enqueue_ms"] = results["paced_p99_enqueue_ms"]
    results["store_records_per_s"] = baseline
    results["store_cpu_us_per_record"] = store_cpu
    results["ratio"] = results["records_per_s"] / baseline
    results["paced_rate"] = args.rate
    # Kept up: the producers offered the rate, and the ledger wrote (to the end) within 5% of it.
    offered, written = results["paced_offered_per_s"], results["paced_records_per_s"]
    results["paced_kept_up"] = offered >= 0.95 * args.rate and written >= 0.95 * offered
    results["durable_records_per_s"] = durable.records / durable.seconds
    results["durable_ratio"] = results["durable_records_per_s"] / baseline
    results["durable_p50_commit_ms"] = percentile(durable.waits, 50) * 1000
    results["durable_p99_commit_ms"] = percentile(durable.waits, 99) * 1000
    final, plain = finals[True], finals[False]
    results["final_event_p50_ms"] = percentile(final.waits, 50) * 1000
    results["final_event_p99_ms"] = percentile(final.waits, 99) * 1000
    results["final_event_max_ms"] = max(final.waits) * 1000
    results["baseline_final_event_p50_ms"] = percentile(plain.waits, 50) * 1000
    results["baseline_final_event_p99_ms"] = percentile(plain.waits, 99) * 1000
    results["final_event_added_p99_ms"] = results["final_event_p99_ms"] - results["baseline_final_event_p99_ms"]
    results["durable_rate"], results["concurrency"], results["request_ms"] = (
        args.durable_rate, args.concurrency, args.request_ms,
    )
    results["records"], results["producers"], results["batch_size"] = args.records, args.producers, args.batch
    results["background_load"] = args.load
    results["target_records_per_s"], results["target_p99_enqueue_ms"] = 100_000, 1.0
    results["target_final_event_added_p99_ms"] = 10.0
    return results


def report(r: dict[str, Any]) -> None:
    print(f"{r['records']:,} request records from {r['producers']} producers, batch_size {r['batch_size']}")
    print(f"flat out: {r['records_per_s']:>10,.0f} records/s written   store alone {r['store_records_per_s']:>10,.0f}"
          f"/s   ratio {r['ratio']:.2f}   CPU per record {r['cpu_us_per_record']:.1f} us "
          f"(store alone {r['store_cpu_us_per_record']:.1f} us)")
    print(f"          tell wait p50 {r['p50_enqueue_ms']:.3f} ms  p99 {r['flat_out_p99_enqueue_ms']:.3f} ms  "
          f"max {r['max_enqueue_ms']:.1f} ms; {r['pending_at_end']:,.0f} pending when producers stopped, "
          f"drained in {r['drain_ms']:.0f} ms")
    print(f"paced at {r['paced_rate']:,.0f}/s: offered {r['paced_offered_per_s']:,.0f}/s, "
          f"written {r['paced_records_per_s']:,.0f}/s; tell wait p50 {r['paced_p50_enqueue_ms']:.3f} ms "
          f"p99 {r['p99_enqueue_ms']:.3f} ms max {r['paced_max_enqueue_ms']:.1f} ms; "
          f"{r['paced_pending_at_end']:,.0f} pending at the end, drained in {r['paced_drain_ms']:.0f} ms")
    print(f"          event-loop lag p99 {r['paced_p99_loop_lag_ms']:.3f} ms max {r['paced_max_loop_lag_ms']:.1f} ms; "
          f"CPU per record {r['paced_cpu_us_per_record']:.1f} us; background load {r['background_load']} processes")
    print(f"durable flat out ({r['concurrency']} requests at once, each waiting for its commit): "
          f"{r['durable_records_per_s']:,.0f} records/s written (ratio {r['durable_ratio']:.2f}); "
          f"commit wait p50 {r['durable_p50_commit_ms']:.2f} ms p99 {r['durable_p99_commit_ms']:.2f} ms")
    print(f"final event at {r['durable_rate']:,.0f} requests/s ({r['request_ms']:.0f} ms each): "
          f"p50 {r['final_event_p50_ms']:.2f} ms p99 {r['final_event_p99_ms']:.2f} ms max "
          f"{r['final_event_max_ms']:.1f} ms; baseline (plain tell) p50 {r['baseline_final_event_p50_ms']:.3f} ms "
          f"p99 {r['baseline_final_event_p99_ms']:.3f} ms; added p99 {r['final_event_added_p99_ms']:.2f} ms")
    rate_ok = r["records_per_s"] >= r["target_records_per_s"]
    durable_ok = r["durable_records_per_s"] >= r["target_records_per_s"]
    final_ok = r["final_event_added_p99_ms"] < r["target_final_event_added_p99_ms"]
    wait_ok = r["p99_enqueue_ms"] < r["target_p99_enqueue_ms"]
    kept_up = r["paced_kept_up"]
    print(f"target >= {r['target_records_per_s']:,}/s flat out: {'met' if rate_ok else 'MISSED'}; "
          f"p99 tell wait < {r['target_p99_enqueue_ms']} ms at {r['paced_rate']:,.0f}/s: "
          f"{'met' if wait_ok else 'MISSED'}, ledger {'kept up' if kept_up else 'DID NOT keep up'}; "
          f"durable >= {r['target_records_per_s']:,}/s: {'met' if durable_ok else 'MISSED'}; final event added p99 "
          f"< {r['target_final_event_added_p99_ms']:g} ms: {'met' if final_ok else 'MISSED'}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per flat-out run and baseline")
    parser.add_argument("--producers", type=int, default=32, help="concurrent producer tasks")
    parser.add_argument("--rate", type=float, default=50_000, help="offered records/s of the paced run")
    parser.add_argument("--paced-seconds", type=float, default=2.0, help="length of the paced run")
    parser.add_argument("--batch", type=int, default=1024, help="the ledger actor's batch_size")
    parser.add_argument("--flush-ms", type=float, default=250, help="the ledger actor's flush interval")
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds")
    parser.add_argument("--load", type=int, default=0, help="CPU-burning processes running meanwhile")
    parser.add_argument("--concurrency", type=int, default=256, help="requests at once in the durable runs")
    parser.add_argument("--durable-rate", type=float, default=2_000, help="offered requests/s of the final-event run")
    parser.add_argument("--durable-seconds", type=float, default=2.0, help="length of the final-event run")
    parser.add_argument("--request-ms", type=float, default=50, help="how long each request runs (final-event run)")
    args = parser.parse_args()
    results = anyio.run(main, args)
    report(results)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    run()
