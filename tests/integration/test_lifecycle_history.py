"""The pipeline's recorded history agrees with the lifecycle, replayed event by event.

Batches run through the pipeline services (no Celery) against the emulator; afterwards every
event row must be a legal move of the lifecycle's tables, and every batch status written
must be what :func:`derive_batch_status` derives from the parts as they stood at that moment.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from batchyard.domain.lifecycle import (
    TERMINAL_BATCH_STATUSES,
    TERMINAL_PART_STATUSES,
    BatchStatus,
    PartStatus,
    can_transition_batch,
    can_transition_part,
    derive_batch_status,
)
from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload


def _scalar(driver: InlineDriver, sql: str) -> Any:
    with driver.svc.engine.connect() as conn:
        return conn.scalar(sa.text(sql))


def _start(driver: InlineDriver, n: int, text: str = "question") -> str:
    lines = [request_line(f"q{i}", f"{text} {i}") for i in range(n)]
    return batch_service.create_batch(driver.svc, owner=None,
                                      input_file_id=upload(driver.svc, jsonl(lines)),
                                      endpoint="/v1/chat/completions").id


def _finish(driver: InlineDriver, batch_id: str) -> str:
    return str(driver.run_until(lambda: (s := batch_service.get_batch(
        driver.svc, batch_id, owner=None).status) in TERMINAL_BATCH_STATUSES and s))


def _replay(driver: InlineDriver, batch_id: str) -> list[str]:
    """Check every event of the batch against the lifecycle; returns the batch's path."""
    with driver.svc.engine.connect() as conn:
        events = conn.execute(sa.text(
            "SELECT entity, part_id, from_status, to_status FROM events "
            "WHERE batch_id = :b ORDER BY id"), {"b": batch_id}).all()
    parts: dict[str, PartStatus] = {}
    path: list[str] = []
    for entity, part_id, src, dst in events:
        if entity == "part":
            if src is None:
                assert dst == "pending"
            else:
                assert parts[part_id] == src and can_transition_part(src, dst), (src, dst)
            parts[part_id] = PartStatus(dst)
            continue
        if src is None:
            assert dst == "validating"
        else:
            assert path[-1] == src and can_transition_batch(src, dst), (src, dst)
            cancel = dst in (BatchStatus.CANCELLING, BatchStatus.CANCELLED)
            derived = derive_batch_status(src, parts.values(), cancel_requested=cancel,
                                          prepared=bool(parts), validation_failed=False,
                                          finalized=dst in TERMINAL_BATCH_STATUSES)
            assert derived == dst, (src, dst, sorted(parts.values()))
        path.append(dst)
    assert all(status in TERMINAL_PART_STATUSES for status in parts.values())
    return path


def test_a_retried_batch_history_is_lawful(driver: InlineDriver,
                                           emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(no_output_file_next=1)
    batch_id = _start(driver, 3)
    assert _finish(driver, batch_id) == "completed"
    assert _replay(driver, batch_id) == ["validating", "in_progress", "finalizing",
                                         "completed"]
    assert _scalar(driver, "SELECT count(*) FROM parts") == 2  # the retry part


def test_a_rejected_batch_history_is_lawful(driver: InlineDriver,
                                            emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(fail_validation_next=5, fail_validation_code="invalid_request")
    batch_id = _start(driver, 3)
    assert _finish(driver, batch_id) == "failed"
    assert _replay(driver, batch_id) == ["validating", "in_progress", "finalizing", "failed"]


def test_a_requeued_batch_history_is_lawful(driver: InlineDriver,
                                            emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(enqueued_token_quota=1)
    batch_id = _start(driver, 3, "a long enough question " * 5)
    driver.run_until(lambda: _scalar(driver, "SELECT count(*) FROM parts "
                                             "WHERE status = 'requeued'"))
    emulator.emulator.set_faults(enqueued_token_quota=None)
    assert _finish(driver, batch_id) == "completed"
    assert _replay(driver, batch_id)[-1] == "completed"


def test_a_cancelled_batch_history_is_lawful(driver: InlineDriver) -> None:
    batch_id = _start(driver, 3)
    driver.run_until(lambda: _scalar(driver, "SELECT count(*) FROM parts "
                                             "WHERE status = 'submitted'"))
    batch_service.cancel_batch(driver.svc, batch_id, owner=None)
    assert _finish(driver, batch_id) == "cancelled"
    assert _replay(driver, batch_id) == ["validating", "in_progress", "cancelling",
                                         "cancelled"]
    assert _scalar(driver, "SELECT count(*) FROM events WHERE to_status = 'cancelling' "
                           "AND entity = 'part'") == 1
