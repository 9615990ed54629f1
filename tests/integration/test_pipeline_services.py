"""files and batches services on SQLite and PostgreSQL (schema from the migrations)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchyard.config import Settings
from batchyard.db import migrate
from batchyard.errors import NotFoundError, PayloadTooLargeError, StateConflictError
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from batchyard.services.container import Services, build_services
from tests.e2e.helpers import fresh_pg_database, jsonl, request_line


@pytest.fixture()
def nudges() -> list[tuple[str, str]]:
    return []


@pytest.fixture()
def svc(database_url: str, tmp_path: Path, nudges: list[tuple[str, str]]) -> Iterator[Services]:
    migrate.upgrade(database_url)
    services = build_services(Settings(data_dir=tmp_path, database_url=database_url),
                              nudge=lambda task, oid: nudges.append((task, oid)))
    yield services
    services.close()


def _upload(svc: Services, data: bytes, owner: str | None = None) -> str:
    return file_service.create_file(svc, owner=owner, filename="in.jsonl", purpose="batch",
                                    stream=io.BytesIO(data)).id


def test_an_upload_over_the_limit_leaves_no_row_and_no_bytes(svc: Services) -> None:
    with pytest.raises(PayloadTooLargeError):
        file_service.create_file(svc, owner=None, filename="big.jsonl", purpose="batch",
                                 stream=io.BytesIO(b"x" * 5000), max_bytes=4096)
    with svc.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM files")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM file_chunks")) == 0
    # On SQLite the chunks go to a file of their own (the store's chunk engine).
    with svc.store.chunk_engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.scalar(sa.text("SELECT count(*) FROM file_chunks")) == 0


def test_a_file_round_trips_and_is_visible_only_to_its_owner(svc: Services) -> None:
    data = jsonl([request_line("a"), request_line("b")]) * 1
    file_id = _upload(svc, data, owner="key_1")
    assert b"".join(file_service.iter_file_content(svc, file_id, owner="key_1")) == data
    assert file_service.get_file(svc, file_id, owner=None).bytes == len(data)
    with pytest.raises(NotFoundError):
        file_service.get_file(svc, file_id, owner="key_2")
    file_service.delete_file(svc, file_id, owner="key_1")
    with pytest.raises(NotFoundError):
        file_service.get_file(svc, file_id, owner="key_1")


def test_files_list_pages_with_the_after_cursor(svc: Services) -> None:
    ids = [_upload(svc, jsonl([request_line(str(i))])) for i in range(5)]
    first = file_service.list_files(svc, owner=None, limit=2)
    assert len(first.data) == 2 and first.has_more
    rest = file_service.list_files(svc, owner=None, limit=10, after=first.last_id)
    assert {f.id for f in first.data} | {f.id for f in rest.data} == set(ids)
    assert not rest.has_more


def test_create_batch_records_validating_and_only_nudges_prepare(
        svc: Services, nudges: list[tuple[str, str]]) -> None:
    file_id = _upload(svc, jsonl([request_line("a")]))
    batch = batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                       endpoint="/v1/chat/completions", metadata={"k": "v"})
    assert batch.status == "validating"
    assert batch.expires_at == batch.created_at + 86_400
    assert (batch.request_counts.total, batch.request_counts.completed) == (0, 0)
    assert batch.metadata == {"k": "v"}
    assert nudges == [("prepare", batch.id)]
    # What was written reads back as what create answered (metadata, defaults, flags).
    assert batch_service.get_batch(svc, batch.id, owner=None) == batch
    with svc.engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT priced_requests, unpriced_requests, failure_count, cancel_requested, "
            "stage FROM batches WHERE id = :b"), {"b": batch.id}).one() == (
            0, 0, 0, False, "accepted")
        assert conn.scalar(sa.text("SELECT count(*) FROM parts")) == 0
        assert conn.scalar(sa.text("SELECT to_status FROM events WHERE batch_id = :b"),
                           {"b": batch.id}) == "validating"


@pytest.fixture()
def pg_svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    with fresh_pg_database(request.getfixturevalue("postgres_url")) as url:
        migrate.upgrade(url)
        services = build_services(Settings(data_dir=tmp_path, database_url=url),
                                  nudge=lambda task, oid: None)
        yield services
        services.close()


@pytest.mark.postgres
def test_a_create_on_a_connection_that_died_fails_once_then_the_pool_reconnects(
        pg_svc: Services) -> None:
    # The PostgreSQL create runs on the driver connection, outside SQLAlchemy's execute.
    import psycopg

    svc = pg_svc
    file_id = _upload(svc, jsonl([request_line("a")]))
    with svc.engine.connect() as conn:  # the pool's one connection, used a moment ago
        pid = conn.scalar(sa.text("SELECT pg_backend_pid()"))
    with svc.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    admin = sa.create_engine(svc.engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()

    with pytest.raises(psycopg.OperationalError):
        batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                   endpoint="/v1/chat/completions")
    batch = batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                       endpoint="/v1/chat/completions")
    assert batch_service.get_batch(svc, batch.id, owner=None) == batch


def test_create_batch_refuses_an_unknown_input_file(svc: Services) -> None:
    with pytest.raises(NotFoundError):
        batch_service.create_batch(svc, owner=None, input_file_id="file-nope",
                                   endpoint="/v1/chat/completions")


def test_batches_list_newest_first_with_after_cursor(svc: Services) -> None:
    file_id = _upload(svc, jsonl([request_line("a")]))
    made = [batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                       endpoint="/v1/chat/completions").id for _ in range(4)]
    page = batch_service.list_batches(svc, owner=None, limit=3)
    rest = batch_service.list_batches(svc, owner=None, limit=3, after=page.last_id)
    listed = [b.id for b in page.data] + [b.id for b in rest.data]
    assert sorted(listed) == sorted(made) and len(listed) == 4
    assert page.has_more and not rest.has_more
    created = [b.created_at for b in page.data + rest.data]
    assert created == sorted(created, reverse=True)


def test_cancel_sets_cancelling_nudges_and_refuses_a_finished_batch(
        svc: Services, nudges: list[tuple[str, str]]) -> None:
    file_id = _upload(svc, jsonl([request_line("a")]))
    batch = batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                       endpoint="/v1/chat/completions")
    cancelled = batch_service.cancel_batch(svc, batch.id, owner=None)
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    assert ("cancel", batch.id) in nudges
    with svc.engine.begin() as conn:
        conn.execute(sa.text("UPDATE batches SET status = 'completed' WHERE id = :b"),
                     {"b": batch.id})
    other = batch_service.create_batch(svc, owner=None, input_file_id=file_id,
                                       endpoint="/v1/chat/completions")
    with svc.engine.begin() as conn:
        conn.execute(sa.text("UPDATE batches SET status = 'completed' WHERE id = :b"),
                     {"b": other.id})
    with pytest.raises(StateConflictError):
        batch_service.cancel_batch(svc, other.id, owner=None)
