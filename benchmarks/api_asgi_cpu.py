"""CPU per call of the whole API app in one process (middleware, fast path, handler, JSON).

    .venv/bin/python benchmarks/api_asgi_cpu.py [--calls 5000]

Builds the app over a migrated SQLite database in a temp dir with one batch, then drives it
directly as ASGI (no HTTP server, no sockets) with ``GET /v1/batches/{id}`` and
``GET /v1/batches/{id}?x=1`` (a query string, which the input guard scans), and reports
process CPU microseconds per call. CPU time, unlike throughput, holds still on a busy machine,
so two source trees can be compared (``PYTHONPATH=<tree>/src`` picks the tree).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from batchyard.api.app import create_app
from batchyard.config import Settings
from batchyard.db import migrate
from batchyard.services import batches, files
from batchyard.services.container import build_services

LINE = (b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"m","messages":[]}}\n')


async def drive(app: Any, path: str, query: bytes, calls: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": query, "scheme": "http", "http_version": "1.1",
             "server": ("127.0.0.1", 4000), "client": ("127.0.0.1", 50000), "app": app,
             "headers": [(b"host", b"127.0.0.1:4000"), (b"user-agent", b"bench"),
                         (b"accept", b"*/*"), (b"authorization", b"Bearer sk-bench")]}
    started = time.process_time()
    for _ in range(calls):
        await app(dict(scope), receive, send)
    spent = time.process_time() - started
    assert set(statuses) == {200}, set(statuses)
    return spent / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), master_key=None)
        migrate.upgrade(settings.effective_database_url)
        services = build_services(settings, nudge=lambda task, object_id: None)
        try:
            file_id = files.create_file(services, owner=None, filename="a.jsonl",
                                        purpose="batch", stream=io.BytesIO(LINE)).id
            batch_id = batches.create_batch(
                services, owner=None, input_file_id=file_id, endpoint="/v1/chat/completions",
                completion_window="24h", metadata=None, model=None, provider=None).id
            app = create_app(settings, services)
            path = f"/v1/batches/{batch_id}"
            asyncio.run(drive(app, path, b"", 200))  # warm up
            plain = asyncio.run(drive(app, path, b"", args.calls))
            query = asyncio.run(drive(app, path, b"x=1&y=2", args.calls))
        finally:
            services.close()
    print(f"GET /v1/batches/{{id}}        {plain:7.1f} us CPU per call ({args.calls} calls)")
    print(f"GET /v1/batches/{{id}}?x=1&y=2 {query:7.1f} us CPU per call")


if __name__ == "__main__":
    main()
