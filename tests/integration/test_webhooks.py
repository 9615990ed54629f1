"""Webhook delivery to a real local receiver: signatures, retries after 500s, giving up, CLI."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from batchyard.cli.schedules import webhooks_app
from batchyard.domain.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    build_event,
    encode_event,
    verify_signature,
)
from batchyard.services import notifications
from tests.integration.test_schedules_fixtures import (
    LightServices,
    Receiver,
    light_services,
    sched_db_url,
    schedule_settings,
)

__all__ = ["sched_db_url"]  # the fixture is used by name below

pytestmark = pytest.mark.postgres
SECRET = "whsec_test_secret"


@pytest.fixture()
def svc(sched_db_url: str, tmp_path: Path) -> Iterator[LightServices]:
    services = light_services(schedule_settings(sched_db_url, tmp_path, webhook_secret=SECRET))
    try:
        yield services
    finally:
        services.close()


def _event(batch_id: str, status: str = "completed") -> dict[str, Any]:
    return build_event(batch_id=batch_id, status=status,
                       request_counts={"total": 2, "completed": 2, "failed": 0},
                       usage={"input_tokens": 10, "output_tokens": 4, "total_tokens": 14},
                       created_at=1_700_000_000)


def _drain(svc: LightServices, *, deadline: float = 20.0) -> None:
    """Tick deliveries until none is pending (retry delays are ~10 ms in these tests)."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        notifications.deliver_due(svc)
        attempts = notifications.list_deliveries(svc)
        if all(a.status not in ("pending", "sending") for a in attempts):
            return
        time.sleep(0.01)
    raise AssertionError("deliveries still pending at the deadline")


def _verified(received: Any, secret: str = SECRET) -> dict[str, Any]:
    assert verify_signature(secret, received.headers[SIGNATURE_HEADER], received.body,
                            now=time.time())
    return json.loads(received.body)  # type: ignore[no-any-return]


def test_an_event_is_posted_once_with_a_valid_signature(svc: LightServices) -> None:
    with Receiver([200]) as receiver:
        event = _event("batch_ok1")
        assert notifications.queue_event(svc, event, url=receiver.url, schedule_id=None)
        _drain(svc)
    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    body = _verified(got)
    assert body == event
    assert got.headers[EVENT_ID_HEADER] == event["id"]
    assert got.body == encode_event(event)
    attempts = notifications.list_deliveries(svc, event_id=event["id"])
    assert [(a.attempt, a.status, a.response_status) for a in attempts] == [(1, "delivered", 200)]


def test_500s_are_retried_with_backoff_until_delivered(svc: LightServices) -> None:
    with Receiver([500, 500, 200]) as receiver:
        event = _event("batch_retry1", "failed")
        notifications.queue_event(svc, event, url=receiver.url, schedule_id=None)
        _drain(svc)
    assert len(receiver.requests) == 3
    assert all(_verified(r)["id"] == event["id"] for r in receiver.requests)
    attempts = notifications.list_deliveries(svc, event_id=event["id"])
    assert [(a.attempt, a.status, a.response_status) for a in attempts] == [
        (1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
    # each retry was due only after the previous attempt finished plus a backoff
    for before, after in itertools.pairwise(attempts):
        assert before.finished_at is not None and after.created_at > before.finished_at


def test_delivery_gives_up_after_the_maximum_attempts(svc: LightServices) -> None:
    with Receiver(lambda _n: 503) as receiver:
        event = _event("batch_down1", "expired")
        notifications.queue_event(svc, event, url=receiver.url, schedule_id=None)
        _drain(svc)
    max_attempts = svc.settings.schedules.webhook_max_attempts
    assert len(receiver.requests) == max_attempts
    attempts = notifications.list_deliveries(svc, event_id=event["id"])
    assert [a.attempt for a in attempts] == list(range(1, max_attempts + 1))
    assert {a.status for a in attempts} == {"failed"}
    assert notifications.deliver_due(svc) == []


def test_an_unreachable_receiver_is_logged_as_a_failed_attempt(svc: LightServices) -> None:
    with Receiver([200]) as receiver:
        url = receiver.url
    event = _event("batch_gone1", "cancelled")
    notifications.queue_event(svc, event, url=url, schedule_id=None)
    first = notifications.deliver_due(svc)
    assert [(d.status, d.response_status) for d in first] == [("failed", None)]
    assert first[0].error and "Connect" in first[0].error


def test_queueing_the_same_event_twice_sends_it_once(svc: LightServices) -> None:
    with Receiver([200]) as receiver:
        event = _event("batch_twice1")
        assert notifications.queue_event(svc, event, url=receiver.url, schedule_id=None)
        assert not notifications.queue_event(svc, event, url=receiver.url, schedule_id=None)
        _drain(svc)
    assert len(receiver.requests) == 1


def test_without_a_secret_the_event_is_sent_unsigned(sched_db_url: str, tmp_path: Path) -> None:
    services = light_services(schedule_settings(sched_db_url, tmp_path))
    try:
        with Receiver([200]) as receiver:
            notifications.queue_event(services, _event("batch_unsigned1"), url=receiver.url,
                                      schedule_id=None)
            _drain(services)
    finally:
        services.close()
    assert SIGNATURE_HEADER not in receiver.requests[0].headers


@pytest.fixture()
def local_receivers_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads Settings from the environment: let it reach the 127.0.0.1 receivers."""
    monkeypatch.setenv("BATCHYARD_SCHEDULES__WEBHOOK_ALLOW", '["127.0.0.1"]')


@pytest.mark.usefixtures("local_receivers_allowed")
def test_cli_webhooks_test_sends_a_signed_sample() -> None:
    with Receiver([204]) as receiver:
        result = CliRunner().invoke(webhooks_app, ["test", receiver.url, "--secret", "abc"])
    assert result.exit_code == 0, result.output
    assert "HTTP 204" in result.output
    body = _verified(receiver.requests[0], "abc")
    assert body["type"] == "batch.completed" and body["data"]["status"] == "completed"


@pytest.mark.usefixtures("local_receivers_allowed")
def test_cli_webhooks_test_reports_a_failing_receiver() -> None:
    with Receiver([500]) as receiver:
        result = CliRunner().invoke(webhooks_app, ["test", receiver.url, "--secret", "abc"])
    assert result.exit_code == 1
    assert "HTTP 500" in result.output
