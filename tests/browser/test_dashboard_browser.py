"""The dashboard in a real browser, over a real stack: ``batchyard serve`` and a Celery
worker on PostgreSQL + Redis, the emulator as the provider. A batch submitted through the
API is watched to completion on the list without a reload, then opened, downloaded; another
batch is cancelled from its page; a virtual key does not see the master's batches."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.db import migrate
from tests.e2e.helpers import fast_settings, jsonl, request_line, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

MASTER = "sk-browser-master"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture()
def stack(tmp_path: Path, emulator_factory: Any, pg_database: str, redis_url: str,
          unique_name: str) -> Iterator[dict[str, Any]]:
    """API (one process) + worker + emulator; yields the base URL and a database engine."""
    emulator = emulator_factory(validation_delay=1.0, request_latency=0.25)
    settings = fast_settings(tmp_path / "data", emulator_url=emulator.base_url,
                             database_url=pg_database, broker_url=redis_url, queue=unique_name)
    migrate.upgrade(settings.effective_database_url)
    env = {**settings_env(settings), "BATCHYARD_MASTER_KEY": MASTER}
    worker = start_worker_process(env, concurrency=4, beat=True, loglevel="INFO",
                                  log=tmp_path / "worker.log")
    port = _free_port()
    with (tmp_path / "api.log").open("ab") as log:
        api = subprocess.Popen([sys.executable, "-m", "batchyard", "serve", "--workers", "1",
                                "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    engine = sa.create_engine(pg_database)
    try:
        wait_for(lambda: _up(f"{base}/health/liveness"), timeout=60, message="API up")
        with httpx.Client(base_url=base, timeout=30,
                          headers={"authorization": f"Bearer {MASTER}"}) as client:
            yield {"base": base, "api": client, "engine": engine, "logs": tmp_path}
    finally:
        engine.dispose()
        stop_process(api)
        stop_process(worker)
        log_text = (tmp_path / "api.log").read_text(errors="replace")
        assert MASTER not in log_text  # the key never reaches a log line


def _submit(api: httpx.Client, n: int, tag: str) -> str:
    lines = [request_line(f"{tag}-{i}", f"question {i}") for i in range(n)]
    upload = api.post("/v1/files", files={"file": ("in.jsonl", jsonl(lines))},
                      data={"purpose": "batch"})
    assert upload.status_code == 200, upload.text
    created = api.post("/v1/batches", json={
        "input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h", "metadata": {"project": tag}})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    assert page.url.endswith("/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/batches")
    assert key not in page.url


def test_watch_open_download_cancel_and_scope(stack: dict[str, Any], chromium: Any,
                                             artifacts: Path) -> None:
    base, api = stack["base"], stack["api"]
    context = chromium.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    _sign_in(page, base, MASTER)
    cookie = next(c for c in context.cookies() if c["name"] == "batchyard_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read the key

    # Watch: the list page stays loaded while the batch goes through its statuses.
    page.evaluate("""() => { window.__same_page = true; window.__seen = [];
        new MutationObserver(() => document.querySelectorAll('tr[data-batch-id]').forEach(
          tr => { const s = tr.dataset.status;
                  if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s); }))
        .observe(document.getElementById('batch-list'), {childList: true, subtree: true}); }""")
    batch_id = _submit(api, 6, "watched")
    page.wait_for_selector(f'tr[data-batch-id="{batch_id}"]', timeout=30_000)
    first = page.get_attribute(f'tr[data-batch-id="{batch_id}"]', "data-status")
    assert first in ("validating", "in_progress")
    page.wait_for_selector(f'tr[data-batch-id="{batch_id}"][data-status="completed"]',
                           timeout=120_000)
    assert page.evaluate("window.__same_page") is True
    seen = page.evaluate("window.__seen")
    assert seen[0] in ("validating", "in_progress") and seen[-1] == "completed", seen
    page.screenshot(path=str(artifacts / "dashboard-list.png"), full_page=True)

    # Open its detail: parts with their provider batch ids, as stored.
    page.click(f'a[href="/ui/batches/{batch_id}"]')
    page.wait_for_selector("#batch-status")
    assert page.inner_text("#batch-status") == "completed"
    with stack["engine"].connect() as conn:
        provider_ids = conn.execute(sa.text(
            "SELECT provider_batch_id FROM parts WHERE batch_id = :b"), {"b": batch_id}
        ).scalars().all()
    parts_text = page.inner_text("table.parts")
    assert provider_ids and all(pid in parts_text for pid in provider_ids)
    page.screenshot(path=str(artifacts / "dashboard-detail.png"), full_page=True)

    # Download its results.
    with page.expect_download() as info:
        page.click("text=Results JSONL")
    saved = artifacts / "results.jsonl"
    info.value.save_as(saved)
    rows = [orjson.loads(line) for line in saved.read_bytes().splitlines()]
    assert sorted(r["custom_id"] for r in rows) == sorted(f"watched-{i}" for i in range(6))
    assert all(r["ok"] for r in rows)

    # Cancel another batch from its page.
    other = _submit(api, 16, "cancelled")
    page.goto(f"{base}/ui/batches/{other}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel batch')", timeout=30_000)
    page.wait_for_function(
        "['cancelling', 'cancelled'].includes(document.getElementById('batch-status')"
        ".textContent)", timeout=30_000)
    wait_for(lambda: api.get(f"/v1/batches/{other}").json()["status"] == "cancelled",
             timeout=90, message="cancelled")
    page.wait_for_selector('#batch-status:has-text("cancelled")', timeout=30_000)

    # Phone width: the list reflows into one column without a horizontal scroll.
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/ui/batches")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(artifacts / "dashboard-list-phone.png"), full_page=True)
    context.close()

    # A virtual key sees none of the master's batches.
    token = api.post("/admin/keys", json={"name": "team-b"}).json()["key"]
    mine = httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {token}"})
    with mine:
        own = _submit(mine, 1, "team-b")
    key_context = chromium.new_context(viewport=LAPTOP)
    key_page = key_context.new_page()
    _sign_in(key_page, base, token)
    key_page.wait_for_selector(f'tr[data-batch-id="{own}"]')
    listing = key_page.inner_text("#batch-list")
    assert batch_id not in listing and other not in listing
    assert key_page.goto(f"{base}/ui/batches/{batch_id}").status == 404
    key_context.close()
