"""The poll claim on both databases: slices of the due parts, each part once, paused
deployments left out, and on PostgreSQL two open claims never wait for or share a part."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchyard.db import deployment_state, migrate, parts
from batchyard.domain.lifecycle import POLL_PART_STATUSES
from batchyard.emulator import EmulatorServer
from batchyard.services.container import Services, build_services
from batchyard.services.poll import send_poll_nudges
from tests.e2e.helpers import Nudges, fast_settings, fresh_pg_database, seed_parts_in_flight


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def svc(request: pytest.FixtureRequest, tmp_path: Path,
        emulator: EmulatorServer) -> Iterator[Services]:
    def build(url: str | None) -> Iterator[Services]:
        settings = fast_settings(tmp_path, emulator_url=emulator.base_url, database_url=url,
                                 poll_claim_size=4)
        migrate.upgrade(settings.effective_database_url)
        services = build_services(settings, nudge=Nudges())
        yield services
        services.close()

    if request.param == "sqlite":
        yield from build(None)
        return
    with fresh_pg_database(request.getfixturevalue("postgres_url")) as url:
        yield from build(url)


def _claim(conn: object, limit: int, *, skip_locked: bool = False) -> list[str]:
    rows = parts.claim_polls(conn, POLL_PART_STATUSES, now=time.time(),  # type: ignore[arg-type]
                             lease=60, limit=limit, skip_locked=skip_locked)
    assert all(row.cancel_requested is False for row in rows)
    return [row.id for row in rows]


def test_claims_take_each_due_part_once_in_slices(svc: Services,
                                                  emulator: EmulatorServer) -> None:
    seeded = {pid for pid, _ in seed_parts_in_flight(svc, emulator.emulator, 10)}
    taken: list[str] = []
    for expected in (4, 4, 2, 0):
        with svc.engine.begin() as conn:
            claim = _claim(conn, 4, skip_locked=svc.engine.dialect.name == "postgresql")
        assert len(claim) == expected
        taken += claim
    assert sorted(taken) == sorted(seeded)  # each once: the lease moved them out of reach


def test_the_tick_sends_one_poll_nudge_per_claim_size_of_due_parts(
        svc: Services, emulator: EmulatorServer) -> None:
    seed_parts_in_flight(svc, emulator.emulator, 10)
    assert send_poll_nudges(svc) == 3
    assert svc.nudge.sent == [("poll", "due")] * 3  # type: ignore[attr-defined]


def test_a_paused_deployment_is_neither_counted_nor_claimed(
        svc: Services, emulator: EmulatorServer) -> None:
    seed_parts_in_flight(svc, emulator.emulator, 5)
    deployment = svc.deployments.all()[0].id
    with svc.engine.begin() as conn:
        deployment_state.pause_polls(conn, deployment, time.time() + 60)
        deployment_state.pause_polls(conn, deployment, time.time() + 1)  # never shortened
        assert deployment_state.polls_paused(conn, time.time() + 30) == {
            deployment: pytest.approx(time.time() + 60, abs=5)}
    with svc.sessions() as session:
        assert parts.count_due_polls(session, POLL_PART_STATUSES, now=time.time()) == 0
    with svc.engine.begin() as conn:
        assert _claim(conn, 10) == []


@pytest.mark.postgres
# PostgreSQL only: SQLite has one writer, so a second claim waits for the first.
@pytest.mark.parametrize("svc", ["postgres"], indirect=True)
def test_two_open_claims_on_postgres_skip_each_others_parts(
        svc: Services, emulator: EmulatorServer) -> None:
    assert svc.engine.dialect.name == "postgresql"
    seeded = {pid for pid, _ in seed_parts_in_flight(svc, emulator.emulator, 10)}
    with svc.engine.connect() as first, svc.engine.connect() as second:
        with first.begin():
            mine = _claim(first, 6, skip_locked=True)
            with second.begin():  # the first still holds its rows: skipped, not waited for
                theirs = _claim(second, 10, skip_locked=True)
    assert len(mine) == 6 and len(theirs) == 4
    assert set(mine) | set(theirs) == seeded and not set(mine) & set(theirs)
