"""Compare-and-set status writes follow the lifecycle: legal moves land, illegal ones raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from batchyard.db import migrate
from batchyard.db.models import BatchRow, EventRow, FileRow, PartRow
from batchyard.db.transitions import transition_batch, transition_part
from batchyard.domain.lifecycle import BatchStatus, PartStatus
from batchyard.errors import IllegalTransitionError
from tests.e2e.helpers import fresh_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        yield from _sessions(f"sqlite:///{tmp_path / 'by.db'}")
        return
    with fresh_pg_database(request.getfixturevalue("postgres_url")) as url:
        yield from _sessions(url)


def _sessions(url: str) -> Iterator[sessionmaker[Session]]:
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    factory = sessionmaker(engine)
    now = time.time()
    with factory.begin() as session:
        session.add(FileRow(id="file_1", purpose="batch", filename="in.jsonl", bytes=1,
                            created_at=int(now), kind="input", status="processed"))
        session.flush()
        session.add(BatchRow(id="batch_1", endpoint="/v1/chat/completions",
                             input_file_id="file_1", status="in_progress", created_at=int(now),
                             stage="running", updated_at=now, due_at=now))
        session.flush()
        session.add(PartRow(id="part_1", batch_id="batch_1", seq=1, status="pending",
                            created_at=now, updated_at=now))
    yield factory
    engine.dispose()


def _state(factory: sessionmaker[Session]) -> tuple[str, str, list[tuple[str, str | None, str]]]:
    with factory() as session:
        batch = session.get(BatchRow, "batch_1")
        part = session.get(PartRow, "part_1")
        events = [(e.entity, e.from_status, e.to_status) for e in session.scalars(
            sa.select(EventRow).order_by(EventRow.id))]
        assert batch is not None and part is not None
        return batch.status, part.status, events


def test_a_legal_part_move_lands_with_its_event(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert transition_part(session, "part_1", PartStatus.PENDING, PartStatus.UPLOADING,
                               deployment="dep")
    assert _state(sessions) == ("in_progress", "uploading",
                                [("part", "pending", "uploading")])


def test_an_illegal_part_move_is_refused_and_writes_nothing(
        sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IllegalTransitionError, match="pending -> ingested"), \
            sessions.begin() as session:
        transition_part(session, "part_1", PartStatus.PENDING, PartStatus.INGESTED)
    assert _state(sessions) == ("in_progress", "pending", [])


def test_an_illegal_batch_move_is_refused_and_writes_nothing(
        sessions: sessionmaker[Session]) -> None:
    # in_progress -> completed would skip finalizing (counts and result files).
    with pytest.raises(IllegalTransitionError, match="in_progress -> completed"), \
            sessions.begin() as session:
        transition_batch(session, "batch_1", ("in_progress", "finalizing"),
                         BatchStatus.COMPLETED)
    assert _state(sessions) == ("in_progress", "pending", [])


def test_a_row_that_moved_on_is_a_quiet_no(sessions: sessionmaker[Session]) -> None:
    # Not where the caller expected: a lost race, not a bug (even if the move is illegal).
    with sessions.begin() as session:
        assert not transition_part(session, "part_1", PartStatus.SUBMITTED,
                                   PartStatus.INGESTING)
        assert not transition_batch(session, "batch_1", BatchStatus.CANCELLING,
                                    BatchStatus.CANCELLED)
    with sessions.begin() as session:
        assert transition_batch(session, "batch_1", BatchStatus.IN_PROGRESS,
                                BatchStatus.FINALIZING)
    assert _state(sessions) == ("finalizing", "pending",
                                [("batch", "in_progress", "finalizing")])


def test_an_unknown_status_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError), sessions.begin() as session:
        transition_part(session, "part_1", "pending", "waiting_quota")
    assert _state(sessions) == ("in_progress", "pending", [])


def test_a_batch_move_writes_its_stage_and_due_time_from_the_table(
        sessions: sessionmaker[Session]) -> None:
    before = time.time()
    with sessions.begin() as session:
        assert transition_batch(session, "batch_1", BatchStatus.IN_PROGRESS,
                                BatchStatus.FINALIZING)
    with sessions() as session:
        batch = session.get(BatchRow, "batch_1")
        assert batch is not None
        assert batch.stage == "finalizing" and before <= batch.due_at <= time.time()
    with sessions.begin() as session:
        assert transition_batch(session, "batch_1", BatchStatus.FINALIZING,
                                BatchStatus.COMPLETED)
    with sessions() as session:
        batch = session.get(BatchRow, "batch_1")
        assert batch is not None
        assert batch.stage == "finalized" and batch.due_at > time.time() + 86400 * 365


def test_a_caller_cannot_set_a_batch_stage_by_hand(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(TypeError), sessions.begin() as session:
        transition_batch(session, "batch_1", BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING,
                         stage="finalized")
    assert _state(sessions) == ("in_progress", "pending", [])
