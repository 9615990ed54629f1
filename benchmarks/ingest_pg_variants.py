"""What PostgreSQL spends taking 100,000 result rows, by table layout and COPY format.

    .venv/bin/python benchmarks/ingest_pg_variants.py

Builds the rows with the pipeline's own code (ingest_bench.py's output file, parsed and
turned into result tuples by ``services.ingest``), then COPYs them in one transaction into
a scratch table shaped like ``results`` with different indexes, in text and binary format,
twice each, and prints the backend's CPU (``/proc/<pid>/stat``: the server is on this host).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_bench as bench

from batchyard.config import Settings
from batchyard.db.models import BatchRow, PartRow
from batchyard.db.results import _PG_TYPES, RESULT_WRITE_COLUMNS
from batchyard.domain.jsonl import iter_output_lines
from batchyard.services import ingest
from batchyard.services.container import build_services

COLUMNS = """batch_id varchar(64) NOT NULL, custom_id varchar(512) NOT NULL,
 line_no int NOT NULL, part_id varchar(64), attempt int NOT NULL, ok bool NOT NULL,
 status_code int, provider_request_id varchar(100), response_body text,
 error_code varchar(100), error_message text, input_tokens int NOT NULL,
 output_tokens int NOT NULL, total_tokens int NOT NULL, rendered_bytes int NOT NULL,
 created_at bigint NOT NULL, model varchar(200), cached_tokens int NOT NULL DEFAULT 0,
 cost_pico bigint, cost_currency varchar(3), price_source varchar(100), unpriced_reason text"""
LAYOUTS = {
    "id BIGSERIAL pk + uq(batch,custom) + ix(batch,line) (before 0570)":
        ("id bigserial, " + COLUMNS, ["PRIMARY KEY (id)", "UNIQUE (batch_id, custom_id)",
                                      "INDEX (batch_id, line_no)"]),
    "pk(batch,line) + uq(batch,custom) (0570)":
        (COLUMNS, ["PRIMARY KEY (batch_id, line_no)", "UNIQUE (batch_id, custom_id)"]),
    "uq(batch,custom) only": (COLUMNS, ["UNIQUE (batch_id, custom_id)"]),
    "no index": (COLUMNS, []),
}


def result_rows(url: str, output: Path) -> list[tuple[Any, ...]]:
    svc = build_services(Settings(database_url=url, data_dir=Path(tempfile.gettempdir())),
                         nudge=lambda task, object_id: None)
    with svc.sessions() as session:
        part, batch = session.get(PartRow, bench.PART), session.get(BatchRow, bench.BATCH)
    assert part is not None and batch is not None
    writer = ingest._Writer(svc, part, batch, None)
    assert writer.index is not None
    with output.open("rb") as stream:
        rows = writer.rows(list(iter_output_lines([stream.read()])), writer.index)
    svc.close()
    return rows


def main() -> None:
    url, name = bench.fresh_pg()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            output = Path(tmp) / "output.jsonl"
            bench.write_output(output, 100_000, 200)
            bench.prepare_db(url, 100_000)
            rows = result_rows(url, output)
        conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]

        def cpu() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        columns = ", ".join(RESULT_WRITE_COLUMNS)
        for binary in (False, True):
            for label, (table, indexes) in LAYOUTS.items():
                spent = []
                for _ in range(2):
                    conn.execute("DROP TABLE IF EXISTS ingest_variant")
                    conn.execute(f"CREATE TABLE ingest_variant ({table})")
                    for index in indexes:
                        conn.execute(f"CREATE INDEX ON ingest_variant {index[5:]}"
                                     if index.startswith("INDEX")
                                     else f"ALTER TABLE ingest_variant ADD {index}")
                    start = cpu()
                    with conn.transaction(), conn.cursor() as cur, cur.copy(
                            f"COPY ingest_variant ({columns}) FROM STDIN"
                            + (" (FORMAT BINARY)" if binary else "")) as copy:
                        if binary:
                            copy.set_types(_PG_TYPES)
                        for row in rows:
                            copy.write_row(row)
                    spent.append(cpu() - start)
                print(f"{'binary' if binary else 'text':6} {label:66} backend CPU "
                      f"{min(spent):.2f} / {max(spent):.2f} s", flush=True)
        conn.execute("DROP TABLE IF EXISTS ingest_variant")
        conn.close()
    finally:
        bench.drop_pg(name)


if __name__ == "__main__":
    main()
