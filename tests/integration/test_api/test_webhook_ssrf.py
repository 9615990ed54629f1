"""Webhooks cannot be aimed inside: refused at create, checked again (pinned) when sent."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from batchyard.config import ScheduleSettings, Settings
from batchyard.services import notifications
from tests.integration.test_api.conftest import MASTER, Api, auth
from tests.integration.test_schedules_fixtures import Receiver

pytestmark = [pytest.mark.postgres]

INTERNAL_URLS = ["http://127.0.0.1:8080/internal-admin", "http://localhost/hook",
                 "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/",
                 "http://[::1]:9000/hook", "http://[::ffff:127.0.0.1]/hook",
                 "https://loopback.test/hook", "http://0.0.0.0/", "http://224.0.0.1/"]


class FakeDns:
    """Names the tests control; anything else does not resolve."""

    def __init__(self, **names: str) -> None:
        self.names = {name.replace("_", "."): address for name, address in names.items()}

    def __call__(self, host: str, port: int) -> list[Any]:
        if host == "localhost":
            return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        if host not in self.names:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address(self.names[host])]


@pytest.fixture()
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns(loopback_test="127.0.0.1", public_test="93.184.216.34",
                   hooks_internal="127.0.0.1")
    monkeypatch.setattr(notifications, "resolve_addresses", fake)
    return fake


def batch_count(api: Api) -> int:
    with api.services.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM batches")).scalar() or 0)


@pytest.mark.usefixtures("dns")
@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_a_batch_webhook_aimed_inside_is_refused_at_create(api: Api, url: str) -> None:
    file_id = api.file_id()
    before = batch_count(api)
    response = api.create_batch(file_id=file_id, metadata={"webhook_url": url})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "webhook_url_not_allowed"
    assert response.json()["error"]["param"] == "metadata.webhook_url"
    assert batch_count(api) == before


@pytest.mark.usefixtures("dns")
@pytest.mark.parametrize("url", INTERNAL_URLS[:6])
def test_a_schedule_webhook_aimed_inside_is_refused_at_create(api: Api, url: str) -> None:
    response = api.client.post("/v1/schedules", headers=auth(MASTER), json={
        "cron": "0 * * * *", "source": {"kind": "file", "file_id": api.file_id()},
        "webhook_url": url})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "webhook_url_not_allowed"
    assert api.client.get("/v1/schedules", headers=auth(MASTER)).json()["data"] == []


@pytest.mark.usefixtures("dns")
def test_a_public_webhook_is_accepted(api: Api) -> None:
    response = api.create_batch(metadata={"webhook_url": "https://public.test/hook"})
    assert response.status_code == 200, response.text


def settings_allowing(*entries: str) -> Settings:
    return Settings(schedules=ScheduleSettings(webhook_allow=list(entries)))


def post(url: str, settings: Settings, client: httpx.Client | None = None,
         resolve: Callable[[str, int], list[Any]] | None = None) -> tuple[int | None, str | None]:
    with client or httpx.Client(timeout=5) as http:
        return notifications.post_event(http, url, b'{"id":"evt_1"}', event_id="evt_1",
                                        secret="s3cret", settings=settings, resolve=resolve)


def test_a_name_that_now_resolves_inside_is_refused_when_sending() -> None:
    # accepted while it pointed outside, then the name was re-pointed (DNS rebinding)
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]
        url = f"http://rebind.test:{port}/hook"
        assert notifications.check_webhook_url(
            settings_allowing(), url, resolve=FakeDns(rebind_test="93.184.216.34"))
        code, error = post(url, settings_allowing(), resolve=FakeDns(rebind_test="127.0.0.1"))
    assert code is None and error is not None and "internal" in error
    assert receiver.requests == []


def test_the_post_connects_to_the_checked_address_with_the_name_as_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    code, error = post("https://public.test:8443/hook", settings_allowing(), client,
                       resolve=FakeDns(public_test="93.184.216.34"))
    assert (code, error) == (204, None)
    assert str(seen[0].url) == "https://93.184.216.34:8443/hook"
    assert seen[0].headers["host"] == "public.test:8443"
    assert seen[0].extensions["sni_hostname"] == "public.test"


def test_a_redirect_to_loopback_is_not_followed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"location": "http://127.0.0.1:1/internal-admin"})

    client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)
    code, error = post("http://public.test/hook", settings_allowing(), client,
                       resolve=FakeDns(public_test="93.184.216.34"))
    assert (code, error) == (302, "HTTP 302")
    assert [str(r.url) for r in seen] == ["http://93.184.216.34/hook"]


def test_the_allow_setting_lets_a_named_internal_host_through() -> None:
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]
        url = f"http://hooks.internal:{port}/hook"
        resolve = FakeDns(hooks_internal="127.0.0.1")
        with pytest.raises(Exception, match="internal addresses"):
            notifications.check_webhook_url(settings_allowing(), url, resolve=resolve)
        # allowed by name: it is connected to by name (the test DNS is not asked)
        allowed = settings_allowing("hooks.internal")
        assert notifications.check_webhook_url(allowed, url, resolve=resolve) is None
        # allowed by network: the checked address is the one connected to
        code, error = post(url, settings_allowing("127.0.0.0/8"), resolve=resolve)
    assert (code, error) == (200, None)
    assert receiver.requests[0].headers["host"] == f"hooks.internal:{port}"
    assert json.loads(receiver.requests[0].body) == {"id": "evt_1"}


@pytest.fixture()
def allowing_api(make_settings: Callable[..., Settings]) -> Iterator[Api]:
    from batchyard.api.app import create_app
    from batchyard.services.container import build_services
    from tests.e2e.helpers import Nudges
    from tests.integration.test_api.conftest import local_client

    settings = make_settings(schedules=ScheduleSettings(webhook_allow=["hooks.internal"]))
    services = build_services(settings, nudge=Nudges())
    try:
        with local_client(create_app(settings, services)) as client:
            yield Api(client, services, Nudges())
    finally:
        services.close()


@pytest.mark.usefixtures("dns")
def test_an_allowed_internal_host_is_accepted_at_create(allowing_api: Api) -> None:
    response = allowing_api.create_batch(metadata={"webhook_url": "http://hooks.internal/h"})
    assert response.status_code == 200, response.text
    refused = allowing_api.create_batch(metadata={"webhook_url": "http://loopback.test/h"})
    assert refused.status_code == 400
