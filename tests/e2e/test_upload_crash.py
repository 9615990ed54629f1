"""``batchyard serve`` killed with SIGKILL in the middle of a ``POST /v1/files``.

The upload is streamed by hand (a multipart body generated chunk by chunk) and the server is
killed once the file store is visibly writing it: an open transaction inserting chunk rows
(database store on PostgreSQL) or a started multipart upload (S3 store, moto's server). After
the kill no file row and no stored bytes may be visible, and a restarted server takes the
next upload normally.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MASTER = "sk-crash-master"
BOUNDARY = "crashtestboundary7d1e"
MB = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], env: dict[str, str], health: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(health, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"{args} did not come up")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def slow_body(stop_sending: threading.Event) -> Iterator[bytes]:
    """A multipart upload that keeps sending 1 MiB pieces of JSONL until told to stop."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
           f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"big.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n").encode()
    line = b'{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions"}\n'
    n = 0
    while not stop_sending.is_set() and n < 2000:
        yield b"".join(line % (n * 10000 + i) for i in range(MB // len(line)))
        n += 1
        time.sleep(0.01)


def upload_until_killed(base: str, stop_sending: threading.Event) -> threading.Thread:
    def send() -> None:
        try:
            httpx.post(f"{base}/v1/files", content=slow_body(stop_sending), timeout=60,
                       headers={"Authorization": f"Bearer {MASTER}",
                                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        except httpx.HTTPError:
            pass  # the server died under it: expected

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def small_upload(base: str) -> bytes:
    data = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    headers = {"Authorization": f"Bearer {MASTER}"}
    created = httpx.post(f"{base}/v1/files", headers=headers, data={"purpose": "batch"},
                         files={"file": ("a.jsonl", data)}, timeout=30)
    assert created.status_code == 200, created.text
    content = httpx.get(f"{base}/v1/files/{created.json()['id']}/content", headers=headers,
                        timeout=30)
    assert content.content == data
    return data


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def serve_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env.update(BATCHYARD_DATA_DIR=str(tmp_path), BATCHYARD_DATABASE_URL=database_url,
               BATCHYARD_MASTER_KEY=MASTER, BATCHYARD_PIPELINE__QUEUE=f"crash{uuid.uuid4().hex}",
               **extra)
    return env


def kill_mid_upload(env: dict[str, str], writing: Any) -> None:
    """Start serve, stream an upload, SIGKILL serve once ``writing()`` is true."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "batchyard", "serve", "--port", str(port), "--workers", "1"]
    proc = start(serve, env, f"{base}/health")
    stop_sending = threading.Event()
    try:
        sender = upload_until_killed(base, stop_sending)
        wait_for(writing, timeout=60, interval=0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop_sending.set()
        stop(proc)
    sender.join(timeout=60)
    proc = start(serve, env, f"{base}/health")
    try:
        small_upload(base)
    finally:
        stop(proc)


def test_kill_during_an_upload_into_postgres_leaves_no_file_and_no_chunks(
        pg_database: str, tmp_path: Path) -> None:
    env = serve_env(tmp_path, pg_database, BATCHYARD_STORAGE_BACKEND="database")
    engine = sa.create_engine(pg_database)
    name = pg_database.rsplit("/", 1)[1]

    def chunks_being_inserted() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND xact_start IS NOT NULL AND query ILIKE 'INSERT INTO file_chunks%'"),
                {"db": name}).scalar_one())

    try:
        kill_mid_upload(env, chunks_being_inserted)
        # Only the small upload made after the restart is there: one file, one chunk.
        assert count(engine, "files") == 1
        assert count(engine, "file_chunks") == 1
    finally:
        engine.dispose()


def test_kill_during_an_upload_into_sqlite_leaves_no_file_and_no_chunks(tmp_path: Path) -> None:
    """The embedded default: chunks go to ``batchyard-files.db`` (its own WAL) and the file row
    to ``batchyard.db``; killed while the chunk transaction is open, neither shows anything."""
    env = serve_env(tmp_path, f"sqlite:///{tmp_path / 'batchyard.db'}",
                    BATCHYARD_STORAGE_BACKEND="database")
    env.pop("BATCHYARD_BROKER_URL", None)  # the embedded SQLite broker
    side_wal = tmp_path / "batchyard-files.db-wal"

    def chunks_being_inserted() -> bool:
        # Several MiB of uncommitted frames in the side file's WAL: the put is under way.
        return side_wal.exists() and side_wal.stat().st_size > 8 * MB

    kill_mid_upload(env, chunks_being_inserted)
    main = sa.create_engine(f"sqlite:///{tmp_path / 'batchyard.db'}")
    side = sa.create_engine(f"sqlite:///{tmp_path / 'batchyard-files.db'}")
    try:
        # Only the small upload made after the restart is there: one file, one chunk.
        assert count(main, "files") == 1
        assert count(side, "file_chunks") == 1
        assert count(main, "file_chunks") == 0
    finally:
        main.dispose()
        side.dispose()


def test_kill_during_an_upload_into_s3_leaves_no_file_and_no_object(
        pg_database: str, tmp_path: Path) -> None:
    from batchyard.config import S3Settings
    from batchyard.storage.s3 import client_from_settings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    moto = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                 dict(os.environ), f"{url}/moto-api/")
    try:
        s3 = S3Settings(bucket="crash", endpoint_url=url, region="us-east-1",
                        access_key_id="k", secret_access_key="s")
        client = client_from_settings(s3)
        client.create_bucket(Bucket="crash")
        env = serve_env(tmp_path, pg_database, BATCHYARD_STORAGE_BACKEND="s3",
                        BATCHYARD_S3__BUCKET="crash", BATCHYARD_S3__ENDPOINT_URL=url,
                        BATCHYARD_S3__REGION="us-east-1", BATCHYARD_S3__ACCESS_KEY_ID="k",
                        BATCHYARD_S3__SECRET_ACCESS_KEY="s")

        def multipart_started() -> bool:
            return bool(client.list_multipart_uploads(Bucket="crash").get("Uploads"))

        kill_mid_upload(env, multipart_started)
        engine = sa.create_engine(pg_database)
        try:
            assert count(engine, "files") == 1
        finally:
            engine.dispose()
        # The one object is the small upload made after the restart; the killed upload's
        # parts stay in an incomplete multipart upload that no reader can see.
        assert len(client.list_objects_v2(Bucket="crash")["Contents"]) == 1
    finally:
        stop(moto)
