"""Where one ingest's worker CPU goes, by thread and step (PostgreSQL).

    .venv/bin/python benchmarks/ingest_breakdown.py            # 100,000 lines, 3 runs

Same file and database as ingest_bench.py (fresh PostgreSQL database each run), the same
``services.ingest.ingest_stream``, in this process, with CPU clocks (``time.thread_time``)
around its steps: the part's custom_id index, building the result rows, the per-part sums,
the garbage collector's passes on the parsing thread, and the writer threads (COPY and its
transactions). What is left of the parsing thread is reading, splitting and parsing lines.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_bench as bench

from batchyard.config import Settings
from batchyard.db.models import BatchRow, PartRow
from batchyard.services import ingest
from batchyard.services.container import build_services


def _timed(owner: Any, name: str, key: str, acc: dict[str, float]) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            acc[key] = acc.get(key, 0.0) + time.thread_time() - start

    setattr(owner, name, timed)


def run_once(output: Path, lines: int) -> str:
    url, name = bench.fresh_pg()
    bench.prepare_db(url, lines)
    svc = build_services(Settings(database_url=url, data_dir=Path(tempfile.gettempdir())),
                         nudge=lambda task, object_id: None)
    with svc.sessions() as session:
        part, batch = session.get(PartRow, bench.PART), session.get(BatchRow, bench.BATCH)
    assert part is not None and batch is not None
    svc.prices.warm(wait=True)
    acc: dict[str, float] = {}
    _timed(ingest._Writer, "_run", "writer threads", acc)
    _timed(ingest._Writer, "rows", "rows", acc)
    _timed(ingest, "_part_index", "index", acc)
    _timed(ingest, "row_totals", "sums", acc)
    gc_start: list[float] = [0.0]

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if phase == "start":
            gc_start[0] = time.thread_time()
        else:
            acc["gc"] = acc.get("gc", 0.0) + time.thread_time() - gc_start[0]

    wall, process, main = time.perf_counter(), time.process_time(), time.thread_time()
    gc.callbacks.append(on_gc)
    try:
        with output.open("rb") as stream:
            rows = ingest.ingest_stream(svc, part, batch, stream)
    finally:
        gc.callbacks.remove(on_gc)
    wall, process = time.perf_counter() - wall, time.process_time() - process
    main = time.thread_time() - main
    svc.close()
    bench.drop_pg(name)
    rest = main - sum(acc.get(k, 0.0) for k in ("rows", "index", "sums", "gc"))
    return (f"{rows:,} rows in {wall:.2f} s; worker CPU {process:.2f} s = parsing thread "
            f"{main:.2f} (read+split+parse {rest:.2f}, rows {acc.get('rows', 0):.2f}, "
            f"index {acc.get('index', 0):.2f}, sums {acc.get('sums', 0):.2f}, "
            f"gc {acc.get('gc', 0):.2f}) + writer threads {acc.get('writer threads', 0):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "output.jsonl"
        bench.write_output(output, args.lines, 200)
        for _ in range(args.runs):
            print(run_once(output, args.lines), flush=True)


if __name__ == "__main__":
    main()
