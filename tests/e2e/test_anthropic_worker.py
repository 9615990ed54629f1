"""Crash safety with a REAL Celery worker on Redis + PostgreSQL, where the provider's list
lags behind its creates: an Anthropic deployment (no metadata: a lost create is found by
request count and time) and OpenAI (found by the part id in its metadata). A worker is
SIGKILLed right after the provider accepted the create, so its answer is lost."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services.container import Services
from tests.e2e.helpers import jsonl, request_line, results_by_custom_id, upload, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

KEY = "sk-ant-e2e"
#: The list hides a new batch this long: longer than a worker restart, so the look-up after
#: the crash really runs while the batch is missing from the list.
LIST_LAG = 8.0


def _submit(svc: Services, lines: list[dict[str, Any]]) -> str:
    batch = batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    return batch.id


def _claude_config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_key: {KEY}
      api_base: {base_url}
""")
    return path


def _run_with_crash(point: str, emulator: EmulatorServer, pipeline_env: Any, pg_database: str,
                    redis_url: str, lines: list[dict[str, Any]],
                    **settings: Any) -> tuple[Services, str]:
    _, workers, _svc = pipeline_env(emulator, database_url=pg_database, broker_url=redis_url,
                                    part_max_requests=4, ingest_batch_rows=2,
                                    provider_list_lag_seconds=LIST_LAG + 6)
    if settings:
        workers.settings = workers.settings.model_copy(update=settings)
    from batchyard.services.container import build_services

    svc = build_services(workers.settings)
    doomed = workers.start(crash_at=point)
    batch_id = _submit(svc, lines)
    assert doomed.wait(timeout=60) == -9  # it really died by SIGKILL at the crash point
    workers.start()
    try:
        final = wait_for(lambda: (b := batch_service.get_batch(svc, batch_id, owner=None))
                         .status in ("completed", "failed") and b, timeout=120,
                         message="batch done")
    except AssertionError as exc:
        with svc.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status, provider_batch_id, last_error "
                                        "FROM parts")).all()
        raise AssertionError(f"{exc}: parts {rows}, provider {emulator.emulator.stats()}, "
                             f"log {workers.log.read_text(errors='replace')[-3000:]}") from None
    assert final.status == "completed"
    return svc, batch_id


def _one_result_each(svc: Services, batch_id: str, ids: list[str]) -> None:
    results = results_by_custom_id(svc.engine, batch_id)
    assert sorted(results) == sorted(ids)
    assert all(len(rows) == 1 and rows[0]["ok"] for rows in results.values())


@pytest.mark.parametrize("point", ["after_create", "mid_ingest"])
def test_anthropic_part_gets_exactly_one_provider_batch_after_a_kill(
        point: str, tmp_path: Path, emulator_factory: Any, pipeline_env: Any,
        pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory(flavor="anthropic", api_keys=(KEY,), list_lag=LIST_LAG)
    ids = [f"k{i}" for i in range(8)]
    lines = [request_line(cid, model="claude") for cid in ids]
    svc, batch_id = _run_with_crash(point, emulator, pipeline_env, pg_database, redis_url,
                                    lines, config_file=_claude_config(tmp_path,
                                                                      emulator.base_url),
                                    openai_api_key=None)
    try:
        _one_result_each(svc, batch_id, ids)
        stats = emulator.emulator.stats()
        per_part = Counter(b["first_custom_id"] for b in stats["batches"])
        assert per_part == {"k0": 1, "k4": 1}, per_part  # exactly one provider batch per part
    finally:
        svc.close()


def test_openai_part_gets_exactly_one_batch_when_the_list_lags_after_a_kill(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory(list_lag=LIST_LAG)
    ids = [f"o{i}" for i in range(8)]
    svc, batch_id = _run_with_crash("after_create", emulator, pipeline_env, pg_database,
                                    redis_url, [request_line(cid) for cid in ids])
    try:
        _one_result_each(svc, batch_id, ids)
        stats = emulator.emulator.stats()
        per_part = Counter((b["metadata"] or {}).get("batchyard_part_id")
                           for b in stats["batches"])
        assert len(per_part) == 2 and set(per_part.values()) == {1}, per_part
    finally:
        svc.close()
